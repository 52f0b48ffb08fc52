//! IP address management: pools of address ranges, a crash-safe on-disk allocator shared by many
//! processes, garbage collection, import from host-local, and per-node subnet leases.
//!
//! * [`IpamConfig`] reads host-local's keys (`ranges`, `routes`, `dataDir`, `resolvConf`) and
//!   validates them into a [`Pool`];
//! * [`Ipam`] hands one address per range set to an [`Owner`] (container ID, interface), keeps
//!   the records in a [`Store`] directory that many processes share, and offers
//!   [`Ipam::release`], [`Ipam::lookup`], [`Ipam::gc`], [`Ipam::check`] and
//!   [`Ipam::import_host_local`];
//! * [`lease`] carves a cluster network into per-node subnets (Flannel / Calico style), and
//!   [`SubnetFile`] is how a node agent tells the CNI plugin its node's subnet and MTU;
//! * [`blocks`] tells how full a node's blocks are and fences an empty one off before the
//!   agent gives it back.
//!
//! Differences from host-local, on purpose: lookups and releases by owner read one record
//! instead of every file; owners are locked on 64 shards instead of one lock for the pool; a
//! claim is one atomic rename, so no record is ever seen half written; GC exists; a gateway
//! outside its subnet and overlapping ranges are refused.

mod allocator;
pub mod blocks;
mod config;
mod error;
mod gc;
mod import;
pub mod lease;
mod owner;
mod range;
pub mod store;
pub mod subnet_file;
#[cfg(test)]
mod tests;

pub use allocator::{AllocatedIp, Allocation, Ipam};
pub use config::{ConfigError, Dns, IpamConfig, Pool, PoolRoute, RangeConfig, RouteConfig};
pub use error::IpamError;
pub use gc::{GcReport, StoreCheck};
pub use import::ImportReport;
pub use owner::Owner;
pub use range::{IpRange, RangeSet};
pub use store::{Store, StoreOptions};
pub use subnet_file::{SubnetFile, SubnetFileError};

/// Where pool stores live when a configuration names no `dataDir`: `/var/lib/cni/netkit` (each
/// pool in `<dir>/<network name>`). Not host-local's `/var/lib/cni/networks`, so the two never
/// share a directory. The `netkit-ipam` plugin and `netkit ipam` both default to it.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/netkit";
