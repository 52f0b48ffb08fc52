//! The policy engine's error type.

/// Why a policy operation failed. Each variant names the object and, for the kernel, the
/// namespace.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy, selector, peer or port that Kubernetes would refuse, or that netkit does not
    /// support (named ports). Nothing was changed.
    #[error("network policy: invalid {what}: {reason}")]
    Invalid {
        /// The object ("policy ns/name", "pod ns/name", …).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Network policy cannot be enforced with this firewall driver or kernel.
    #[error("network policy: unsupported: {0}")]
    Unsupported(String),
    /// The kernel refused a change (nftables, or a bridge setting).
    #[error("network policy in netns {netns}: {op}: {reason}")]
    Kernel {
        /// The namespace.
        netns: String,
        /// What was being done.
        op: String,
        /// The kernel's (or libnftables') answer.
        reason: String,
        /// The errno, when known.
        errno: Option<i32>,
    },
    /// Opening a netlink connection or entering the namespace failed.
    #[error("network policy in netns {netns}: {source}")]
    Netlink {
        /// The namespace.
        netns: String,
        /// The error.
        #[source]
        source: crate::NetlinkError,
    },
    /// The cluster store failed (or a watch broke).
    #[error("network policy store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The worker running the change panicked or was cancelled.
    #[error("network policy: the operation did not complete: {0}")]
    Aborted(String),
}

impl PolicyError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        PolicyError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
