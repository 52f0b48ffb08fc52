//! What an attach step reports when it fails: a kind a frontend maps to its own codes (the CNI
//! plugin maps each to one CNI error code), a message and optional details.

/// The kinds of [`AttachError`]. Each names what went wrong, not a protocol's number; the
/// `netkit-cni` plugin maps them one to one onto CNI error codes (given with each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration's `cniVersion` is not one netkit speaks (CNI code 1).
    IncompatibleVersion,
    /// The container's namespace cannot be opened (CNI code 3).
    UnknownContainer,
    /// The attachment is invalid: container ID, interface name, namespace or arguments
    /// (CNI code 4).
    InvalidAttachment,
    /// An I/O or kernel failure (CNI code 5).
    Io,
    /// Input that cannot be decoded: not JSON, a malformed result (CNI code 6).
    Decode,
    /// The network configuration is invalid (CNI code 7).
    InvalidConfig,
    /// Try again later: a lock held too long (CNI code 11).
    TryAgainLater,
    /// The network is not usable now: its IPAM store or firewall (CNI code 50).
    NotAvailable,
    /// No free address left in a pool (CNI code 100).
    PoolExhausted,
    /// A requested address cannot be granted: in use, reserved, outside the pool, or routed
    /// elsewhere already (CNI code 101).
    AddressUnavailable,
    /// CHECK found the attachment differs from what ADD made (CNI code 102).
    CheckFailed,
    /// Something the configuration asks for is not supported by this kernel (CNI code 103).
    KernelUnsupported,
    /// A delegated IPAM plugin failed with this CNI error code of its own.
    Plugin(u32),
}

/// A failed attach step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", details.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct AttachError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Short message: names the object and, for kernel failures, the kernel's message.
    pub msg: String,
    /// Longer explanation (for ADD: what its undo could not remove).
    pub details: Option<String>,
}

impl AttachError {
    /// An error with a message.
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Self {
            kind,
            msg: msg.into(),
            details: None,
        }
    }

    /// An I/O or kernel failure ([`ErrorKind::Io`]), its message the error's text.
    pub fn io(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Io, what.to_string())
    }

    /// Add details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }
}

/// An invalid network configuration ([`ErrorKind::InvalidConfig`]).
pub(crate) fn bad_config(msg: impl Into<String>) -> AttachError {
    AttachError::new(ErrorKind::InvalidConfig, msg)
}
