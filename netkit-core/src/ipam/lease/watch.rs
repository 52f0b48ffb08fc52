//! Lease change events, delivered as an async stream.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

use super::{Lease, LeaseError};

/// One change to the leases of a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A node leased a subnet.
    Added(Lease),
    /// A lease was renewed, or its node's metadata changed (same node, same subnet).
    Changed(Lease),
    /// A lease ended: released, or expired. Carries the lease as last seen.
    Removed(Lease),
}

impl LeaseEvent {
    /// The lease the event is about.
    pub fn lease(&self) -> &Lease {
        match self {
            Self::Added(l) | Self::Changed(l) | Self::Removed(l) => l,
        }
    }
}

/// What [`LeaseStore::watch`](super::LeaseStore::watch) returns: a snapshot of the live leases
/// ([`snapshot`](Self::snapshot)) and a stream of the changes made after that snapshot, in
/// order. Together they miss nothing: applying the events, in order, to the snapshot tracks the
/// store (an `Added` or `Changed` sets the lease of its subnet, a `Removed` clears it).
///
/// ```no_run
/// # use std::collections::BTreeMap;
/// # use netkit_core::ipam::lease::{LeaseEvent, LeaseStore};
/// # async fn f(store: impl LeaseStore) -> Result<(), netkit_core::ipam::lease::LeaseError> {
/// let mut watch = store.watch().await?;
/// let mut routes: BTreeMap<_, _> = watch.snapshot().iter().map(|l| (l.subnet, l.clone())).collect();
/// while let Some(event) = watch.next_event().await {
///     match event? {
///         LeaseEvent::Added(l) | LeaseEvent::Changed(l) => { routes.insert(l.subnet, l); }
///         LeaseEvent::Removed(l) => { routes.remove(&l.subnet); }
///     }
/// }
/// # Ok(()) }
/// ```
///
/// The etcd store reports every change: its snapshot is read at one etcd revision and its
/// watch starts at the next one. The file store reports the difference between two polls of
/// its directory (the first poll compared with the snapshot), so changes faster than its poll
/// interval are merged (a lease added and released in between is not seen at all), but the
/// view built from the snapshot and the events still ends equal to the directory.
///
/// An `Err` item reports a failed poll or a broken watch; the file store's stream keeps
/// polling after one, the etcd stream ends after a broken watch (connection lost, or etcd
/// compacted away the revisions the watch still had to send). Then call `watch` again and
/// reconcile with its new snapshot: the changes made while no watch was open show only there.
/// Dropping the stream stops watching.
pub struct LeaseWatch {
    snapshot: Vec<Lease>,
    inner: Pin<Box<dyn Stream<Item = Result<LeaseEvent, LeaseError>> + Send>>,
}

impl LeaseWatch {
    /// `snapshot`: the live leases, ordered by subnet; `stream`: the changes after them.
    pub(crate) fn new(
        snapshot: Vec<Lease>,
        stream: impl Stream<Item = Result<LeaseEvent, LeaseError>> + Send + 'static,
    ) -> Self {
        Self {
            snapshot,
            inner: Box::pin(stream),
        }
    }

    /// The live leases when the watch started, ordered by subnet: the state the stream's first
    /// event applies to. Use it rather than an earlier [`list`](super::LeaseStore::list), whose
    /// result the first events may not follow on from.
    pub fn snapshot(&self) -> &[Lease] {
        &self.snapshot
    }

    /// The next event, or `None` once the stream has ended: `StreamExt::next` without
    /// importing `futures`.
    pub async fn next_event(&mut self) -> Option<Result<LeaseEvent, LeaseError>> {
        std::future::poll_fn(|cx| self.inner.as_mut().poll_next(cx)).await
    }
}

impl Stream for LeaseWatch {
    type Item = Result<LeaseEvent, LeaseError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for LeaseWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseWatch")
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}
