//! The two namespaces of an ADD or CHECK and a netlink handle in each.

use super::attachment::Attachment;
use super::error::{AttachError, ErrorKind};
use crate::{Handle, NetNs};

/// The host side ([`Host::netns`](super::Host::netns)) and the container's namespace.
pub(crate) struct Sides {
    pub(crate) host_ns: NetNs,
    pub(crate) host: Handle,
    pub(crate) ctr_ns: NetNs,
    pub(crate) ctr: Handle,
    /// The container's namespace path as given.
    pub(crate) path: String,
}

impl Sides {
    /// Open the container's namespace: it must be a network namespace (a FIFO or a plain file
    /// is refused without waiting on it) and not the host side's (an ADD there would replace
    /// the host's own default route).
    pub(crate) async fn open(att: &Attachment) -> Result<Sides, AttachError> {
        let path = att.netns.clone().unwrap_or_default();
        let ctr_ns = NetNs::open_path(&path)
            .map_err(|e| AttachError::new(ErrorKind::UnknownContainer, format!("container netns: {e}")))?;
        let host_ns = att.host.open().map_err(AttachError::io)?;
        if ctr_ns.id().map_err(AttachError::io)? == host_ns.id().map_err(AttachError::io)? {
            return Err(AttachError::new(
                ErrorKind::InvalidAttachment,
                format!("CNI_NETNS {path:?} is the network namespace the plugin runs in, not a container's"),
            ));
        }
        let host = host_handle(&att.host).await?;
        let ctr = ctr_ns.handle().await.map_err(AttachError::io)?;
        Ok(Sides {
            host_ns,
            host,
            ctr_ns,
            ctr,
            path,
        })
    }
}

/// A handle in the host namespace (the calling thread's: opened without a trip to another
/// thread).
pub(crate) async fn host_handle(host: &super::Host) -> Result<Handle, AttachError> {
    match &host.netns {
        Some(ns) => ns.handle().await.map_err(AttachError::io),
        None => Handle::current().map_err(AttachError::io),
    }
}
