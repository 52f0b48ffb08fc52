//! The interface both stores implement.

use std::future::Future;

use super::{Lease, LeaseError, LeaseRequest, LeaseWatch, SubnetPlan};

/// A place where nodes lease subnets of one [`SubnetPlan`]: [`FileLeaseStore`](super::FileLeaseStore)
/// on one host, `EtcdLeaseStore` (feature `etcd`) across a cluster.
///
/// The methods return `impl Future + Send` (native async functions in traits, no boxing, no
/// `async-trait` macro), so generic code can `tokio::spawn` them. The price: the trait is not
/// dyn-compatible; write code generic over `S: LeaseStore`, or match on an enum of stores.
/// Implementations may write the methods as plain `async fn`.
pub trait LeaseStore: Send + Sync {
    /// The plan whose subnets this store leases.
    fn plan(&self) -> &SubnetPlan;

    /// Lease a subnet to `request.meta.node`.
    ///
    /// Idempotent per node: a node that holds a live lease gets the same subnet back, renewed
    /// for `request.ttl`, with the request's metadata stored. Otherwise the node gets
    /// `request.preferred` if that subnet is free, else the lowest free subnet.
    ///
    /// Errors: [`LeaseError::InvalidNode`], [`LeaseError::InvalidTtl`],
    /// [`LeaseError::SubnetNotInPlan`] (a preferred subnet outside the plan),
    /// [`LeaseError::PoolExhausted`], and the store's I/O or etcd errors.
    fn acquire(&self, request: &LeaseRequest) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Extend `lease` by its TTL, from now. Fails with [`LeaseError::LeaseLost`] when the node
    /// no longer holds the subnet (the lease expired or was released, and maybe another node
    /// took the subnet); acquire again then.
    fn renew(&self, lease: &Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// End `lease`, freeing its subnet. Idempotent: a lease that is already gone (released,
    /// expired, or its subnet now held by another node) is a success, and another node's lease
    /// is never touched.
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Every live lease, ordered by subnet.
    fn list(&self) -> impl Future<Output = Result<Vec<Lease>, LeaseError>> + Send;

    /// Watch the leases: a stream of the changes made after this returns (take a
    /// [`list`](Self::list) first for the current state).
    fn watch(&self) -> impl Future<Output = Result<LeaseWatch, LeaseError>> + Send;
}
