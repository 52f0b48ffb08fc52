//! The policy controller: Felix's job on one node, fed from the cluster store.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::catalog::{id_of_key, NamespaceRecord, PodRecord, NAMESPACES, PODS, POLICIES};
use super::{Cluster, LocalPod, NetworkPolicy, NodeCompiler, PodInfo, PolicyError, PolicyFirewall, PolicyId};
use crate::store::{Object, ObjectEvent, ObjectStore, ObjectWatch, StoreError};

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This node's name, as pod records name their node.
    pub node: String,
    /// The first pause after a failure; doubled up to 5 s.
    pub retry: Duration,
    /// Where to write the [`ControllerStatus`] (JSON) when it changes; `None`: nowhere.
    pub status_file: Option<PathBuf>,
}

impl ControllerConfig {
    /// For node `node`.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_string(),
            retry: Duration::from_millis(200),
            status_file: None,
        }
    }
}

/// What the controller has done, for `netkit agent status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerStatus {
    /// Policies in the store.
    pub policies: usize,
    /// Pods of this node in the store.
    pub local_pods: usize,
    /// Of them, those some policy isolates.
    pub isolated_pods: usize,
    /// True once the firewall holds what the store says (until a watch breaks or an apply
    /// fails).
    pub synced: bool,
    /// Applies that changed the firewall.
    pub applied: u64,
    /// Set elements added and removed in all.
    pub elements_changed: u64,
    /// The last failure, while it lasts.
    pub error: Option<String>,
}

/// Follows `policies/`, `pods/` and `namespaces/` in the cluster store (see
/// [`catalog`](super::catalog)) and keeps this node's [`PolicyFirewall`] equal to what they
/// say for the node's pods. The view lives in a [`NodeCompiler`], made from the watches'
/// snapshots (a full compile); after each change (a burst of changes at once is one) it
/// recompiles only the local pods the changes touch
/// ([`NodeCompiler::changes`]) and the firewall gets their difference
/// ([`PolicyFirewall::apply_changes`]: a few set elements, one transaction; the rules
/// themselves never change). The firewall keeps its state while the store is unreachable; a
/// broken watch is watched again after a pause and the node's view rebuilt from the new
/// snapshots. Two local pod records with one address (a record that outlived its pod, the
/// address handed out again) are not both enforced: the newest record is, the other is
/// treated as a pod of another node and logged.
pub struct PolicyController<S> {
    store: S,
    fw: PolicyFirewall,
    config: ControllerConfig,
    status: Arc<Mutex<ControllerStatus>>,
}

#[derive(Default)]
struct View {
    policies: BTreeMap<String, NetworkPolicy>,
    pods: BTreeMap<String, PodRecord>,
    namespaces: BTreeMap<String, NamespaceRecord>,
}

/// This node's pod records, by id, with their store revisions. Two local pods claiming one
/// address cannot both be enforced (their rules would be two sets of elements for one
/// address): that happens when a pod's record outlives the pod and its address is handed out
/// again. Then the newest record (highest revision; on a tie, the smaller id) is enforced on
/// this node and the other is treated as a pod of no node here (it still counts as a peer for
/// selectors), with a warning; when the newer one goes, the older is enforced again.
#[derive(Default)]
struct Locals {
    pods: BTreeMap<String, (u64, PodRecord)>,
}

impl Locals {
    /// The local pods enforced: those that hold every one of their addresses.
    fn winners(&self) -> BTreeSet<String> {
        let mut best: BTreeMap<IpAddr, (u64, &str)> = BTreeMap::new();
        for (id, (rev, p)) in &self.pods {
            for ip in &p.ips {
                let e = best.entry(*ip).or_insert((*rev, id));
                if *rev > e.0 || (*rev == e.0 && id.as_str() < e.1) {
                    *e = (*rev, id);
                }
            }
        }
        self.pods
            .iter()
            .filter(|(id, (_, p))| p.ips.iter().all(|ip| best.get(ip).is_some_and(|b| b.1 == id.as_str())))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl<S: ObjectStore> PolicyController<S> {
    /// A controller programming `fw` (the node's policy firewall) from `store`.
    pub fn new(store: S, fw: PolicyFirewall, config: ControllerConfig) -> Self {
        Self {
            store,
            fw,
            config,
            status: Arc::default(),
        }
    }

    /// What it has done so far.
    pub fn status(&self) -> Arc<Mutex<ControllerStatus>> {
        self.status.clone()
    }

    /// Run until `shutdown` completes; failures are retried and reported in the status. The
    /// firewall keeps its state on shutdown.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut pause = self.config.retry;
        loop {
            let err = tokio::select! {
                _ = &mut shutdown => return,
                e = self.follow(&mut pause) => e,
            };
            log::warn!(
                "node {}: policy controller: {err}; again in {pause:?}",
                self.config.node
            );
            {
                let mut st = self.status.lock().expect("status lock");
                st.synced = false;
                st.error = Some(err.to_string());
            }
            self.write_status();
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    async fn follow(&self, pause: &mut Duration) -> PolicyError {
        let watches = tokio::try_join!(
            self.store.watch(POLICIES),
            self.store.watch(PODS),
            self.store.watch(NAMESPACES)
        );
        let (mut pw, mut dw, mut nw) = match watches {
            Ok(w) => w,
            Err(e) => return e.into(),
        };
        let view = View {
            policies: decode_all(pw.snapshot(), POLICIES, 2),
            pods: decode_all(dw.snapshot(), PODS, 2),
            namespaces: decode_all(nw.snapshot(), NAMESPACES, 1),
        };
        let mut locals = Locals::default();
        for o in dw.snapshot() {
            let Some(id) = id_of(PODS, &o.key, 2) else { continue };
            if let Some(p) = view.pods.get(&id).filter(|p| p.node == self.config.node) {
                locals.pods.insert(id, (o.revision, p.clone()));
            }
        }
        let enforced = locals.winners();
        for id in locals.pods.keys().filter(|id| !enforced.contains(*id)) {
            log::warn!(
                "node {}: policy controller: pod {id} shares an address with a newer local pod: not enforced here",
                self.config.node
            );
        }
        let mut compiler = match self.compiler_of(&view, &enforced) {
            Ok(c) => c,
            Err(e) => return e,
        };
        drop(view);
        loop {
            if let Err(e) = self.apply(&mut compiler).await {
                return e;
            }
            *pause = self.config.retry;
            // Wait for a change, then take every change already there before compiling again.
            let mut first = true;
            loop {
                let event = if first {
                    first = false;
                    tokio::select! {
                        e = pw.next_event() => Some((POLICIES, e)),
                        e = dw.next_event() => Some((PODS, e)),
                        e = nw.next_event() => Some((NAMESPACES, e)),
                    }
                } else {
                    ready(&mut pw, POLICIES)
                        .or_else(|| ready(&mut dw, PODS))
                        .or_else(|| ready(&mut nw, NAMESPACES))
                };
                let Some((prefix, event)) = event else { break };
                let event = match event {
                    Some(Ok(e)) => e,
                    Some(Err(e)) => return e.into(),
                    None => {
                        return StoreError::Etcd {
                            store: prefix.into(),
                            op: format!("watch {prefix}"),
                            cause: "the watch ended".into(),
                        }
                        .into()
                    }
                };
                self.apply_event(&mut compiler, &mut locals, prefix, event);
            }
        }
    }

    /// The compiler of the view from the snapshots (a full compile for this node), the local
    /// pods limited to `enforced` (see [`Locals`]).
    fn compiler_of(&self, view: &View, enforced: &BTreeSet<String>) -> Result<NodeCompiler, PolicyError> {
        let cluster = Cluster {
            policies: view.policies.clone(),
            pods: view
                .pods
                .iter()
                .filter_map(|(id, p)| {
                    let (ns, name) = id.split_once('/')?;
                    Some(PodInfo {
                        namespace: ns.to_string(),
                        name: name.to_string(),
                        ips: p.ips.clone(),
                        labels: p.labels.clone(),
                    })
                })
                .collect(),
            namespaces: view
                .namespaces
                .iter()
                .map(|(n, r)| (n.clone(), r.labels.clone()))
                .collect(),
        };
        let local: Vec<LocalPod> = view
            .pods
            .iter()
            .filter(|(id, p)| p.node == self.config.node && enforced.contains(*id))
            .filter_map(|(id, p)| {
                let (ns, name) = id.split_once('/')?;
                Some(LocalPod {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    interface: p.interface.clone(),
                })
            })
            .collect();
        NodeCompiler::from_cluster(&cluster, &local)
    }

    /// One event of the store into the compiler's view (an object that does not decode or
    /// check is left out: as if it were gone).
    fn apply_event(&self, compiler: &mut NodeCompiler, locals: &mut Locals, prefix: &str, event: ObjectEvent) {
        let (key, object) = match event {
            ObjectEvent::Put(o) => (o.key.clone(), Some(o)),
            ObjectEvent::Deleted { key, .. } => (key, None),
        };
        match prefix {
            POLICIES => {
                let Some(id) = id_of(POLICIES, &key, 2) else { return };
                match object.and_then(|o| decode::<NetworkPolicy>(&o, &id)) {
                    Some(p) => {
                        if let Err(e) = compiler.set_policy(&id, p) {
                            log::warn!("policy controller: ignoring {key}: {e}");
                            compiler.remove_policy(&id);
                        }
                    }
                    None => compiler.remove_policy(&id),
                }
            }
            PODS => {
                let Some(id) = id_of(PODS, &key, 2) else { return };
                let before = locals.winners();
                let revision = object.as_ref().map_or(0, |o| o.revision);
                let record = object.and_then(|o| decode::<PodRecord>(&o, &id));
                match &record {
                    Some(p) if p.node == self.config.node => {
                        locals.pods.insert(id.clone(), (revision, p.clone()));
                    }
                    _ => {
                        locals.pods.remove(&id);
                    }
                }
                let after = locals.winners();
                match record {
                    Some(p) => self.set_pod(compiler, &id, p, &after),
                    None => {
                        if let Some((ns, name)) = id.split_once('/') {
                            compiler.remove_pod(ns, name);
                        }
                    }
                }
                // Local pods this change made (or stopped being) shadowed by another.
                for other in before.symmetric_difference(&after).filter(|o| **o != id) {
                    if let Some((_, p)) = locals.pods.get(other) {
                        if !after.contains(other) {
                            log::warn!(
                                "node {}: policy controller: pod {other} shares an address with a newer local pod: not enforced here",
                                self.config.node
                            );
                        }
                        self.set_pod(compiler, other, p.clone(), &after);
                    }
                }
            }
            _ => {
                let Some(id) = id_of(NAMESPACES, &key, 1) else { return };
                match object.and_then(|o| decode::<NamespaceRecord>(&o, &id)) {
                    Some(n) => compiler.set_namespace(&id, n.labels),
                    None => compiler.remove_namespace(&id),
                }
            }
        }
    }

    /// Pod `id` into the compiler: local (with its interface) when it is on this node and in
    /// `enforced`.
    fn set_pod(&self, compiler: &mut NodeCompiler, id: &str, p: PodRecord, enforced: &BTreeSet<String>) {
        let Some((ns, name)) = id.split_once('/') else { return };
        let local = (p.node == self.config.node && enforced.contains(id)).then_some(p.interface);
        let info = PodInfo {
            namespace: ns.to_string(),
            name: name.to_string(),
            ips: p.ips,
            labels: p.labels,
        };
        compiler.set_pod(info, local);
    }

    /// Recompile what the changes since the last call touched and apply the difference.
    async fn apply(&self, compiler: &mut NodeCompiler) -> Result<(), PolicyError> {
        let changes = compiler.changes();
        let stats = self.fw.apply_changes(compiler.node(), &changes).await?;
        {
            let mut st = self.status.lock().expect("status lock");
            st.policies = compiler.policy_count();
            st.local_pods = compiler.local_count();
            st.isolated_pods = compiler.node().pods.len();
            st.synced = true;
            st.error = None;
            let changed = (stats.added + stats.removed) as u64;
            if changed > 0 || stats.replaced {
                st.applied += 1;
                st.elements_changed += changed;
            }
        }
        self.write_status();
        Ok(())
    }

    fn write_status(&self) {
        let Some(path) = &self.config.status_file else { return };
        let text = serde_json::to_string_pretty(&*self.status.lock().expect("status lock")).expect("a status is JSON");
        if let Err(e) = crate::fsutil::write_replacing(path, &(text + "\n")) {
            log::warn!("node {}: policy status {}: {e}", self.config.node, path.display());
        }
    }
}

/// An event the watch has ready now, without waiting.
fn ready(w: &mut ObjectWatch, prefix: &'static str) -> Option<(&'static str, Option<Result<ObjectEvent, StoreError>>)> {
    use futures::FutureExt;
    w.next_event().now_or_never().map(|e| (prefix, e))
}

/// The id of `key` under `prefix` with `segments` segments (`ns/name`: 2, a namespace: 1).
fn id_of(prefix: &str, key: &str, segments: usize) -> Option<String> {
    if segments == 2 {
        return id_of_key(prefix, key).map(str::to_string);
    }
    let id = key.strip_prefix(prefix)?.strip_prefix('/')?;
    (!id.contains('/')).then(|| id.to_string())
}

/// What the controller checks of an object from the store before it uses it: one invalid
/// object is left out (and logged), it never stops the node's enforcement of the others, and
/// nothing unchecked (an interface name, an address) reaches the kernel.
trait Checked: DeserializeOwned {
    fn check(&self, id: &str) -> Result<(), PolicyError>;
}

impl Checked for NetworkPolicy {
    fn check(&self, id: &str) -> Result<(), PolicyError> {
        PolicyId::parse(id)?;
        self.validate()
    }
}

impl Checked for PodRecord {
    fn check(&self, id: &str) -> Result<(), PolicyError> {
        PolicyId::parse(id)?;
        self.validate(id)
    }
}

impl Checked for NamespaceRecord {
    fn check(&self, _id: &str) -> Result<(), PolicyError> {
        Ok(())
    }
}

fn decode<T: Checked>(o: &Object, id: &str) -> Option<T> {
    let checked = o
        .decode::<T>("policy store")
        .map_err(PolicyError::from)
        .and_then(|v| v.check(id).map(|()| v));
    match checked {
        Ok(v) => Some(v),
        Err(e) => {
            log::warn!("policy controller: ignoring {}: {e}", o.key);
            None
        }
    }
}

fn decode_all<T: Checked>(objects: &[Object], prefix: &str, segments: usize) -> BTreeMap<String, T> {
    objects
        .iter()
        .filter_map(|o| {
            let id = id_of(prefix, &o.key, segments)?;
            let v = decode(o, &id)?;
            Some((id, v))
        })
        .collect()
}
