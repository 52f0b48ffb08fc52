//! The firewall's error type.

use std::path::PathBuf;

/// Why a firewall operation failed. Each variant names the object, owner, driver or file.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// Bad input (a port of 0, an unknown protocol, a bad address, …). Nothing was changed.
    #[error("firewall: invalid input: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The object collides with one another owner holds (a host port, a service name, a
    /// masquerade source). Nothing was changed.
    #[error("firewall: {what} conflicts with {other} held by owner {owner:?}")]
    Conflict {
        /// The object asked for.
        what: String,
        /// The object in the way.
        other: String,
        /// Its owner.
        owner: String,
    },
    /// The chosen driver cannot run here.
    #[error("firewall: the {driver} driver is unavailable: {reason}")]
    Unavailable {
        /// "nftables" or "iptables".
        driver: &'static str,
        /// Why.
        reason: String,
    },
    /// The kernel objects of this firewall's name (the nftables table, the iptables chains)
    /// belong to another state directory. Nothing was changed.
    #[error(
        "firewall ({driver}) in netns {netns}: {objects} belong to another state directory (id {theirs}, this one is {ours}); \
         use that state directory, or give this firewall another name"
    )]
    Foreign {
        /// The driver.
        driver: &'static str,
        /// The namespace.
        netns: String,
        /// The objects ("table inet netkit", "chains NETKIT-…").
        objects: String,
        /// The id they carry.
        theirs: String,
        /// This state directory's id.
        ours: String,
    },
    /// The kernel refused a change.
    #[error("firewall ({driver}) in netns {netns}: {op}: {reason}")]
    Kernel {
        /// The driver.
        driver: &'static str,
        /// The namespace.
        netns: String,
        /// What was being done.
        op: String,
        /// The kernel's (or the tool's) answer.
        reason: String,
        /// The errno the kernel answered, when it is known (nftables: always for its netlink
        /// element batches, and for libnftables when its message names one; iptables: never).
        errno: Option<i32>,
    },
    /// The state directory could not be read or written.
    #[error("firewall state: {op} {path}: {source}")]
    State {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The state directory's lock stayed taken for longer than the lock wait allows (another
    /// process or thread holds it: a hung or very slow one). Nothing was changed.
    #[error("firewall state: gave up waiting for lock {path} after {waited:?} (another process or thread holds it)")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long the operation waited.
        waited: std::time::Duration,
    },
    /// A state file does not hold what netkit wrote. (The state directory itself no longer
    /// fails with this: such files are quarantined and treated as absent.)
    #[error("firewall state: corrupt {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An object to change does not exist (an endpoint of an unknown service, say).
    #[error("firewall: {0} does not exist")]
    NotFound(String),
    /// The worker running the change panicked or was cancelled.
    #[error("firewall: the operation did not complete: {0}")]
    Aborted(String),
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] crate::NetnsError),
    /// A sysctl (route_localnet) could not be set.
    #[error(transparent)]
    Sysctl(#[from] crate::sysctl::SysctlError),
}

impl FirewallError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        FirewallError::Invalid { reason: reason.into() }
    }

    pub(crate) fn state<'a>(op: &'static str, path: &'a std::path::Path) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| FirewallError::State {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, FirewallError>;
