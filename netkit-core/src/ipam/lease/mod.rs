//! Node subnet leases: a cluster network carved into per-node subnets (Flannel and Calico style).
//!
//! * [`SubnetPlan`] carves a network (`10.244.0.0/16`, `fd00:10:244::/56`, …) into equal
//!   subnets: /24 per node as Flannel does ([`SubnetPlan::flannel`]), /26 blocks as Calico
//!   does ([`SubnetPlan::calico`]), or any length ([`SubnetPlan::new`]).
//! * A [`LeaseStore`] leases one subnet to each node for a TTL, with the node's metadata
//!   ([`NodeMeta`]: public IP, backend type, backend data), and renews, releases, lists and
//!   watches leases. Acquiring is idempotent per node, expired leases free their subnet. A
//!   watch ([`LeaseWatch`]) starts with a snapshot of the live leases and then streams every
//!   change after it, so a node can follow the others without missing one.
//! * Two stores: [`FileLeaseStore`], a directory shared by the threads and processes of one
//!   host, and `EtcdLeaseStore` (feature `etcd`), shared by a cluster through etcd.
//! * Every failure is a [`LeaseError`] naming the subnet, node, file or etcd endpoint.
//!
//! The store methods are native `async fn`s in a trait returning `impl Future + Send` (see
//! [`LeaseStore`] for why), and need a tokio runtime.
//!
//! ```no_run
//! use std::time::Duration;
//! use futures::StreamExt;
//! use netkit_core::ipam::lease::{FileLeaseStore, LeaseRequest, LeaseStore, SubnetPlan};
//!
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let plan = SubnetPlan::flannel("10.244.0.0/16".parse()?)?;
//! let store = FileLeaseStore::open("/var/lib/netkit/leases", plan).await?;
//! // The leases now, then every change after them: nothing falls in between.
//! let mut events = store.watch().await?;
//! for lease in events.snapshot() {
//!     println!("{} is at {}", lease.subnet, lease.meta.public_ip);
//! }
//!
//! let req = LeaseRequest::new("node-a", "192.0.2.10".parse()?, "vxlan")
//!     .backend_data(serde_json::json!({"VtepMAC": "52:54:00:12:34:56"}))
//!     .ttl(Duration::from_secs(60));
//! let lease = store.acquire(&req).await?;
//! println!("node-a has {}", lease.subnet); // 10.244.0.0/24
//! assert_eq!(store.acquire(&req).await?.subnet, lease.subnet); // idempotent
//!
//! let lease = match store.renew(&lease).await {
//!     Ok(renewed) => renewed,
//!     // Expired and maybe taken: ask again, preferring the old subnet.
//!     Err(e) if e.is_lost() => store.acquire(&req.clone().preferred(lease.subnet)).await?,
//!     Err(e) => return Err(e.into()),
//! };
//! println!("{:?}", events.next().await); // Some(Ok(Added(Lease { subnet: 10.244.0.0/24, .. })))
//! store.release(&lease).await?;
//! # Ok(()) }
//! ```
//!
//! With etcd (feature `etcd`), only the store changes:
//!
#![cfg_attr(feature = "etcd", doc = "```no_run")]
#![cfg_attr(not(feature = "etcd"), doc = "```ignore")]
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use netkit_core::ipam::lease::{EtcdLeaseStore, LeaseRequest, LeaseStore, SubnetPlan};
//! let plan = SubnetPlan::calico("10.244.0.0/16".parse()?)?;
//! let store = EtcdLeaseStore::connect(&["http://127.0.0.1:2379"], "/netkit/leases", plan).await?;
//! let lease = store.acquire(&LeaseRequest::new("node-a", "192.0.2.10".parse()?, "host-gw")).await?;
//! println!("node-a has {}", lease.subnet); // 10.244.0.0/26
//! # Ok(()) }
//! ```

mod alloc;
mod error;
#[cfg(feature = "etcd")]
mod etcd;
mod file;
mod plan;
mod record;
pub(crate) mod request;
mod store;
mod watch;

pub use error::LeaseError;
#[cfg(feature = "etcd")]
pub use etcd::EtcdLeaseStore;
pub use file::FileLeaseStore;
pub use plan::SubnetPlan;
pub use record::Lease;
pub use request::{LeaseRequest, NodeMeta, DEFAULT_TTL, MAX_SLOT, MAX_TTL};
pub use store::LeaseStore;
pub use watch::{LeaseEvent, LeaseWatch};
