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

/// The stream returned by [`LeaseStore::watch`](super::LeaseStore::watch): the changes made
/// after `watch` returned, in order. The etcd store reports every change; the file store
/// reports the difference between two polls of its directory, so changes faster than its poll
/// interval are merged (a lease added and released in between is not seen at all).
///
/// An `Err` item reports a failed poll or a broken watch; the file store's stream keeps
/// polling after one, the etcd stream ends after one. Dropping the stream stops watching.
pub struct LeaseWatch {
    inner: Pin<Box<dyn Stream<Item = Result<LeaseEvent, LeaseError>> + Send>>,
}

impl LeaseWatch {
    pub(crate) fn new(stream: impl Stream<Item = Result<LeaseEvent, LeaseError>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(stream),
        }
    }
}

impl LeaseWatch {
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
        f.debug_struct("LeaseWatch").finish_non_exhaustive()
    }
}
