//! The one error type of the lease module.

use std::path::PathBuf;
use std::time::Duration;

use ipnetwork::IpNetwork;

/// Everything that can go wrong while planning, leasing, renewing, releasing, listing or
/// watching node subnets. Each variant names the object it failed on: the network or
/// subnet, the node, the file (for [`FileLeaseStore`](super::FileLeaseStore)) or the etcd
/// endpoint and key (for `EtcdLeaseStore`).
///
/// The variants are the same with or without the `etcd` feature, so enabling it never breaks
/// a `match`.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The cluster network or the subnet length cannot be carved as asked.
    #[error("invalid subnet plan: cannot carve {network} into /{subnet_prefix} subnets: {reason}")]
    InvalidPlan {
        /// The cluster network as given.
        network: IpNetwork,
        /// The requested per-node subnet length.
        subnet_prefix: u8,
        /// Why it was rejected.
        reason: String,
    },
    /// A subnet named by the caller (a preferred subnet) is not one of the plan's subnets.
    #[error("subnet {subnet} is not a /{subnet_prefix} subnet of {network}")]
    SubnetNotInPlan {
        /// The subnet as given.
        subnet: IpNetwork,
        /// The cluster network.
        network: IpNetwork,
        /// The plan's subnet length.
        subnet_prefix: u8,
    },
    /// The node name cannot be used (empty, too long, or a character outside `[A-Za-z0-9._-]`).
    #[error("invalid node name {node:?}: {reason}")]
    InvalidNode {
        /// The name as given.
        node: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The requested time to live cannot be used.
    #[error("invalid lease TTL {ttl:?} for node {node}: {reason}")]
    InvalidTtl {
        /// The node that asked.
        node: String,
        /// The TTL as given.
        ttl: Duration,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Every subnet of the network is leased to a live node.
    #[error(
        "subnet pool exhausted: all {count} /{subnet_prefix} subnets of {network} are leased \
         (node {node} got none)"
    )]
    PoolExhausted {
        /// The cluster network.
        network: IpNetwork,
        /// The plan's subnet length.
        subnet_prefix: u8,
        /// How many subnets the network has.
        count: u128,
        /// The node that asked.
        node: String,
    },
    /// Renewing failed because the node no longer holds the subnet: its lease expired (or was
    /// released) and, when `holder` is set, another node has leased the subnet since.
    /// Acquire again (with the old subnet as preferred) to get a subnet back.
    #[error("lease of {subnet} by node {node} is lost: {}", lost_reason(.holder))]
    LeaseLost {
        /// The subnet the node held.
        subnet: IpNetwork,
        /// The node that held it.
        node: String,
        /// The node holding the subnet now, if any.
        holder: Option<String>,
    },
    /// The store was set up for another plan (network or subnet length) than the one given.
    #[error("{location} holds leases for {stored}, not for {requested}")]
    PlanMismatch {
        /// The store's directory or etcd endpoint and key.
        location: String,
        /// The plan the store holds, as `network/len`.
        stored: String,
        /// The plan given, as `network/len`.
        requested: String,
    },
    /// A stored record (lease or plan) cannot be read back.
    #[error("corrupt lease store record {location}: {reason}")]
    Corrupt {
        /// The file path, or the etcd endpoint and key.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file-system operation of the file store failed.
    #[error("lease store: cannot {op} {}: {cause}", path.display())]
    Io {
        /// What was being done ("create directory", "lock", "write", "rename", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error, with its errno.
        cause: std::io::Error,
    },
    /// A request to etcd failed (connection, transaction, lease or watch).
    #[error("etcd {op} at {endpoint} failed: {cause}")]
    Etcd {
        /// What was being done ("connect", "grant lease", "claim subnet txn", …).
        op: String,
        /// The etcd endpoint(s), comma separated.
        endpoint: String,
        /// The etcd client's error.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Acquiring kept losing races to other writers and gave up.
    #[error("gave up leasing a subnet of {network} for node {node} after {attempts} conflicting attempts")]
    Conflict {
        /// The cluster network.
        network: IpNetwork,
        /// The node that asked.
        node: String,
        /// How many attempts were made.
        attempts: u32,
    },
}

fn lost_reason(holder: &Option<String>) -> String {
    match holder {
        Some(h) => format!("it expired and node {h} holds the subnet now"),
        None => "it expired or was released".to_string(),
    }
}

impl LeaseError {
    /// True for [`LeaseError::LeaseLost`]: the caller should acquire a subnet again.
    pub fn is_lost(&self) -> bool {
        matches!(self, Self::LeaseLost { .. })
    }

    /// True for [`LeaseError::PoolExhausted`].
    pub fn is_exhausted(&self) -> bool {
        matches!(self, Self::PoolExhausted { .. })
    }

    /// A failed file operation of the shared file helpers.
    pub(crate) fn from_path(e: crate::fsutil::paths::PathError) -> Self {
        Self::io(e.op, e.path, e.cause)
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            cause: source,
        }
    }
}
