//! The pod's record in the cluster store (`clusterStore`): its addresses, node, host-side
//! interface and labels, which network policy selects it by (see
//! [`policy::catalog`](crate::policy::catalog)). ADD writes it last (an ADD that cannot record
//! the pod fails and is undone: a pod the store does not know would escape every policy), DEL
//! removes it.
//!
//! The pod is named by the runtime's arguments `K8S_POD_NAMESPACE` and `K8S_POD_NAME` (what
//! Kubernetes' runtimes pass), its labels come from `runtimeConfig.labels` (the `labels`
//! capability), its node from the configuration's `nodeName` (default: the host name).

use std::net::IpAddr;

use super::{AttachError, Attachment, ErrorKind, NetworkConfig};
use crate::policy::catalog::{self, PodRecord};
use crate::policy::Labels;
use crate::store::{AnyObjectStore, StoreLocation};

/// Which pod an attachment is, when the configuration records pods.
pub(crate) struct PodIdentity {
    /// `<namespace>/<name>`.
    id: String,
    labels: Labels,
    location: StoreLocation,
    prefix: String,
    node: String,
}

/// The pod `att` is, if `conf` has a `clusterStore`; an error when it has one but the
/// runtime did not name the pod.
pub(crate) fn identity(conf: &NetworkConfig, att: &Attachment) -> Result<Option<PodIdentity>, AttachError> {
    let Some(location) = &conf.cluster_store else {
        return Ok(None);
    };
    let (Some(ns), Some(name)) = (att.arg_value("K8S_POD_NAMESPACE"), att.arg_value("K8S_POD_NAME")) else {
        return Err(AttachError::new(
            ErrorKind::InvalidAttachment,
            "clusterStore records pods: CNI_ARGS K8S_POD_NAMESPACE and K8S_POD_NAME must name the pod",
        ));
    };
    let node = match &conf.node_name {
        Some(n) => n.clone(),
        None => crate::sysctl::hostname().map_err(AttachError::io)?,
    };
    Ok(Some(PodIdentity {
        id: format!("{ns}/{name}"),
        labels: conf.labels.clone(),
        location: location.clone(),
        prefix: conf.cluster_store_prefix.clone(),
        node,
    }))
}

impl PodIdentity {
    async fn store(&self) -> Result<AnyObjectStore, AttachError> {
        AnyObjectStore::open(&self.location, &self.prefix)
            .await
            .map_err(|e| AttachError::new(ErrorKind::NotAvailable, format!("clusterStore {}: {e}", self.location)))
    }

    /// Write the record: `ips` on `interface` (the host side).
    pub(crate) async fn record(&self, ips: Vec<IpAddr>, interface: &str) -> Result<(), AttachError> {
        let record = PodRecord {
            ips,
            node: self.node.clone(),
            interface: interface.to_string(),
            labels: self.labels.clone(),
        };
        catalog::put_pod(&self.store().await?, &self.id, &record)
            .await
            .map_err(|e| AttachError::new(ErrorKind::NotAvailable, format!("record pod {}: {e}", self.id)))
    }

    /// Remove the record (a missing one is fine).
    pub(crate) async fn forget(&self) -> Result<(), AttachError> {
        catalog::delete_pod(&self.store().await?, &self.id)
            .await
            .map(drop)
            .map_err(|e| AttachError::new(ErrorKind::NotAvailable, format!("forget pod {}: {e}", self.id)))
    }
}
