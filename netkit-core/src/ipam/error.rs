//! The error type of the allocator and its store.

use std::net::IpAddr;
use std::path::PathBuf;

use super::{ConfigError, Owner};

/// Why an IPAM operation failed. Every variant names the pool, address, owner or file involved.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The pool configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A container ID or interface name cannot be an owner.
    #[error("ipam: {what} {value:?} is not valid: {reason}")]
    BadOwner {
        /// "container ID" or "interface name".
        what: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A file operation on the store failed.
    #[error("ipam store: {op} {path}: {cause}")]
    Io {
        /// What was being done ("create", "read", "rename", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// A store file does not hold a valid record (truncated, edited, damaged).
    ///
    /// The store itself no longer fails with this: damaged records are moved to the store's
    /// `quarantine/` and the operation goes on without them (see
    /// [`store`](super::store#damaged-records)). Kept so code matching on it keeps compiling.
    #[error("ipam store: corrupt record {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A lock of the store stayed taken for longer than
    /// [`StoreOptions::lock_timeout`](super::StoreOptions::lock_timeout) (another process or
    /// thread holds it: a hung or very slow one). Nothing was changed.
    #[error("ipam store: gave up waiting for lock {path} after {waited:?} (another process or thread holds it)")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long the operation waited.
        waited: std::time::Duration,
    },
    /// The directory exists but is not a netkit store (for example a host-local data directory:
    /// import it with [`Ipam::import_host_local`](super::Ipam::import_host_local)).
    #[error("ipam store: {dir} is not a netkit IPAM store: {reason}")]
    NotAStore {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// No free address is left in a range set.
    #[error("ipam: pool {pool:?} exhausted: no free address in range set {set}")]
    Exhausted {
        /// The pool (network) name.
        pool: String,
        /// The range set, as `start-end[,start-end…]`.
        set: String,
    },
    /// A requested address is in none of the pool's ranges.
    #[error("ipam: requested address {ip} is outside every range of pool {pool:?}")]
    OutsidePool {
        /// The address.
        ip: IpAddr,
        /// The pool.
        pool: String,
    },
    /// A requested address is a network, broadcast or gateway address.
    #[error("ipam: requested address {ip} is reserved in pool {pool:?} (network, broadcast or gateway)")]
    Reserved {
        /// The address.
        ip: IpAddr,
        /// The pool.
        pool: String,
    },
    /// A requested address is held by another owner.
    #[error("ipam: requested address {ip} of pool {pool:?} is already held by {}",
        .holder.as_ref().map_or("another owner".to_string(), Owner::to_string))]
    InUse {
        /// The address.
        ip: IpAddr,
        /// The pool.
        pool: String,
        /// Who holds it (`None` if it changed hands while we looked).
        holder: Option<Owner>,
    },
    /// The owner already holds another address in the set a requested address belongs to.
    #[error("ipam: {owner} already holds {held} in pool {pool:?}; it asked for {asked}")]
    AlreadyHolds {
        /// The owner.
        owner: Owner,
        /// What it holds.
        held: IpAddr,
        /// What it asked for.
        asked: IpAddr,
        /// The pool.
        pool: String,
    },
    /// Two requested addresses fall into the same range set (one address per set).
    #[error("ipam: requested addresses {a} and {b} are both in range set {set} of pool {pool:?}")]
    SameSet {
        /// One address.
        a: IpAddr,
        /// The other.
        b: IpAddr,
        /// The set.
        set: String,
        /// The pool.
        pool: String,
    },
}

impl IpamError {
    /// True for [`IpamError::Exhausted`].
    pub fn is_exhausted(&self) -> bool {
        matches!(self, IpamError::Exhausted { .. })
    }
}

pub(crate) type Result<T> = std::result::Result<T, IpamError>;
