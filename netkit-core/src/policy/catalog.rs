//! Policies, pods and namespaces in the cluster store: written by `netkit policy …`,
//! `netkit pod …` and the library, read by every node's [`PolicyController`](super::PolicyController).
//!
//! ```text
//! policies/<namespace>/<name>   a NetworkPolicy (Kubernetes' spec, its JSON field names)
//! pods/<namespace>/<name>       a PodRecord: {"ips": [...], "node": "n1", "interface": "veth…", "labels": {...}}
//! namespaces/<name>             a NamespaceRecord: {"labels": {...}}
//! ```
//!
//! A pod's record says where it runs (`node`, and the host side of its interface there, which
//! the node's firewall matches) and carries its labels; whoever attaches the pod (a runtime's
//! integration, `netkit pod set`) writes it, and removes it when the pod goes.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Labels, NetworkPolicy, PolicyError, PolicyId};
use crate::store::ObjectStore;

/// The key prefix of policies.
pub const POLICIES: &str = "policies";
/// The key prefix of pods.
pub const PODS: &str = "pods";
/// The key prefix of namespaces.
pub const NAMESPACES: &str = "namespaces";

/// A pod as the cluster store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodRecord {
    /// Its addresses.
    pub ips: Vec<IpAddr>,
    /// The node it runs on (its name in the lease store).
    pub node: String,
    /// The host side of its interface on that node (a bridge port, or the routed veth).
    pub interface: String,
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
}

impl PodRecord {
    /// Check the interface name, the node name (as the lease store names nodes) and that every
    /// address is unicast.
    pub fn validate(&self, id: &str) -> Result<(), PolicyError> {
        let bad = |what: String| PolicyError::invalid(format!("pod {id}"), what);
        crate::ifname::check(&self.interface).map_err(|e| bad(e.to_string()))?;
        crate::ipam::lease::request::validate_node(&self.node).map_err(|e| bad(e.to_string()))?;
        // Its addresses become set elements: unicast ones only.
        for ip in &self.ips {
            let broadcast = *ip == std::net::IpAddr::from([255, 255, 255, 255]);
            if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || broadcast {
                return Err(bad(format!("address {ip} is not a unicast address")));
            }
        }
        Ok(())
    }
}

/// A namespace as the cluster store holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceRecord {
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
}

fn id_key(prefix: &str, id: &str) -> Result<String, PolicyError> {
    let parsed = PolicyId::parse(id)?;
    let key = format!("{prefix}/{}/{}", parsed.namespace, parsed.name);
    crate::store::validate_key(&key).map_err(|e| PolicyError::invalid(format!("{prefix} {id}"), e.to_string()))?;
    Ok(key)
}

/// The `<namespace>/<name>` of a key under `prefix`, if it has that shape.
pub fn id_of_key<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let id = key.strip_prefix(prefix)?.strip_prefix('/')?;
    (id.split('/').count() == 2).then_some(id)
}

/// Write policy `id` (`<namespace>/<name>`), creating or replacing it.
pub async fn put_policy<S: ObjectStore>(store: &S, id: &str, policy: &NetworkPolicy) -> Result<(), PolicyError> {
    policy.validate()?;
    let value = serde_json::to_value(policy).expect("a policy is JSON");
    store.put(&id_key(POLICIES, id)?, &value).await?;
    Ok(())
}

/// Delete policy `id`; `false` when it did not exist.
pub async fn delete_policy<S: ObjectStore>(store: &S, id: &str) -> Result<bool, PolicyError> {
    Ok(store.delete(&id_key(POLICIES, id)?).await?)
}

/// Every policy, by id (objects that do not decode are left out).
pub async fn list_policies<S: ObjectStore>(store: &S) -> Result<Vec<(String, NetworkPolicy)>, PolicyError> {
    Ok(store
        .list(POLICIES)
        .await?
        .iter()
        .filter_map(|o| Some((id_of_key(POLICIES, &o.key)?.to_string(), o.decode("policy store").ok()?)))
        .collect())
}

/// Record pod `id` (`<namespace>/<name>`).
pub async fn put_pod<S: ObjectStore>(store: &S, id: &str, pod: &PodRecord) -> Result<(), PolicyError> {
    pod.validate(id)?;
    let value = serde_json::to_value(pod).expect("a pod is JSON");
    store.put(&id_key(PODS, id)?, &value).await?;
    Ok(())
}

/// Forget pod `id`; `false` when it was not recorded.
pub async fn delete_pod<S: ObjectStore>(store: &S, id: &str) -> Result<bool, PolicyError> {
    Ok(store.delete(&id_key(PODS, id)?).await?)
}

/// Every recorded pod, by id.
pub async fn list_pods<S: ObjectStore>(store: &S) -> Result<Vec<(String, PodRecord)>, PolicyError> {
    Ok(store
        .list(PODS)
        .await?
        .iter()
        .filter_map(|o| Some((id_of_key(PODS, &o.key)?.to_string(), o.decode("policy store").ok()?)))
        .collect())
}

/// Set namespace `name`'s labels.
pub async fn put_namespace<S: ObjectStore>(store: &S, name: &str, ns: &NamespaceRecord) -> Result<(), PolicyError> {
    let key = format!("{NAMESPACES}/{name}");
    if name.contains('/') {
        return Err(PolicyError::invalid(
            format!("namespace {name:?}"),
            "a namespace name has no '/'",
        ));
    }
    crate::store::validate_key(&key).map_err(|e| PolicyError::invalid(format!("namespace {name:?}"), e.to_string()))?;
    store
        .put(&key, &serde_json::to_value(ns).expect("labels are JSON"))
        .await?;
    Ok(())
}
