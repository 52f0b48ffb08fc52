//! A snapshot of the objects under a prefix and the changes after it, as an async stream.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

use super::{Object, ObjectEvent, StoreError};

/// What [`ObjectStore::watch`](super::ObjectStore::watch) returns: the objects under a prefix
/// at one point ([`snapshot`](Self::snapshot), sorted by key) and a stream of the changes made
/// after that point, in order. Together they miss nothing: applying the events in order to the
/// snapshot (a [`Put`](ObjectEvent::Put) sets the key's object, a
/// [`Deleted`](ObjectEvent::Deleted) removes it) tracks the store — the contract of
/// [`LeaseWatch`](crate::ipam::lease::LeaseWatch).
///
/// ```no_run
/// # use std::collections::BTreeMap;
/// # use netkit_core::store::{ObjectEvent, ObjectStore, StoreError};
/// # async fn f(store: impl ObjectStore) -> Result<(), StoreError> {
/// let mut watch = store.watch("services").await?;
/// let mut services: BTreeMap<_, _> =
///     watch.snapshot().iter().map(|o| (o.key.clone(), o.value.clone())).collect();
/// while let Some(event) = watch.next_event().await {
///     match event? {
///         ObjectEvent::Put(o) => { services.insert(o.key, o.value); }
///         ObjectEvent::Deleted { key, .. } => { services.remove(&key); }
///     }
/// }
/// // The stream broke (or ended): watch again and reconcile with the new snapshot.
/// # Ok(()) }
/// ```
///
/// The etcd store reports every change: its snapshot is read at one etcd revision and its
/// watch starts at the next one. The file store reports the difference between two reads of
/// its directory, re-read each time a change wakes it, so changes that come faster than a
/// re-read are merged (an object put and deleted in between is not seen at all, two updates
/// may show as one), but the view built from the snapshot and the events still ends equal to
/// the directory.
///
/// An `Err` item reports a broken watch (connection lost, etcd compacted the revisions the
/// watch still had to send, the directory cannot be read or watched, an object under the
/// prefix is [corrupt](StoreError::Corrupt)) and is the stream's last item. Then call `watch` again and reconcile with its new snapshot: the changes made while
/// no watch was open show only there. Dropping the stream stops watching.
pub struct ObjectWatch {
    snapshot: Vec<Object>,
    inner: Pin<Box<dyn Stream<Item = Result<ObjectEvent, StoreError>> + Send>>,
}

impl ObjectWatch {
    /// `snapshot`: the objects, sorted by key; `stream`: the changes after them.
    pub(crate) fn new(
        snapshot: Vec<Object>,
        stream: impl Stream<Item = Result<ObjectEvent, StoreError>> + Send + 'static,
    ) -> Self {
        Self {
            snapshot,
            inner: Box::pin(stream),
        }
    }

    /// The objects under the prefix when the watch started, sorted by key: the state the
    /// stream's first event applies to.
    pub fn snapshot(&self) -> &[Object] {
        &self.snapshot
    }

    /// The next event, or `None` once the stream has ended: `StreamExt::next` without
    /// importing `futures`.
    pub async fn next_event(&mut self) -> Option<Result<ObjectEvent, StoreError>> {
        std::future::poll_fn(|cx| self.inner.as_mut().poll_next(cx)).await
    }
}

impl Stream for ObjectWatch {
    type Item = Result<ObjectEvent, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for ObjectWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectWatch")
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}
