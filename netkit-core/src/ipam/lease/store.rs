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
    ///
    /// For a one-off look. To follow the leases, use [`watch`](Self::watch) alone: a `list`
    /// followed by a `watch` loses the changes made between the two calls.
    fn list(&self) -> impl Future<Output = Result<Vec<Lease>, LeaseError>> + Send;

    /// Watch the leases: a [`LeaseWatch`] holding a snapshot of the live leases
    /// ([`LeaseWatch::snapshot`], ordered by subnet) and a stream of the changes made after
    /// that snapshot, none missed in between. Apply the events in order to the snapshot to
    /// track the store, as a Flannel-style daemon does to keep its routes:
    ///
    /// 1. `let mut w = store.watch().await?;` and set things up for `w.snapshot()`;
    /// 2. apply each event of `w` as it comes;
    /// 3. when the stream reports a broken watch or ends, `watch` again and reconcile what
    ///    is set up with the new snapshot (add what it has, remove what it lacks): changes
    ///    made while no watch was open show only there.
    ///
    /// The etcd store reads the snapshot at one revision and watches from the next; the file
    /// store polls its directory, comparing the first poll with the snapshot (see
    /// [`LeaseWatch`] for how each reports).
    fn watch(&self) -> impl Future<Output = Result<LeaseWatch, LeaseError>> + Send;
}
