//! The interface both stores implement.

use std::future::Future;

use serde_json::Value;

use super::{Object, ObjectWatch, StoreError};

/// A place where the cluster keeps JSON objects by key: [`FileObjectStore`](super::FileObjectStore)
/// on one host, `EtcdObjectStore` (feature `etcd`) across a cluster.
///
/// Keys are checked by [`validate_key`](super::validate_key); prefixes (of `list` and `watch`)
/// are `""` (every key) or a key, meaning the keys below it (`services` → `services/…`, never
/// `services` itself nor `services-old/…`).
///
/// The methods return `impl Future + Send` (native async functions in traits, no boxing, no
/// `async-trait` macro), so generic code can `tokio::spawn` them. The price: the trait is not
/// dyn-compatible; write code generic over `S: ObjectStore`. Implementations may write the
/// methods as plain `async fn`.
pub trait ObjectStore: Send + Sync {
    /// The object at `key`, if any.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Object>, StoreError>> + Send;

    /// Set `key` to `value`, creating or replacing it; returns the new revision.
    fn put(&self, key: &str, value: &Value) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Create `key` holding `value`, only if it does not exist; returns the new revision.
    /// [`StoreError::AlreadyExists`] when it does.
    fn create(&self, key: &str, value: &Value) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Set `key` to `value` only if it is at `expected_revision` (compare-and-swap); returns the
    /// new revision. [`StoreError::Conflict`] when the object is at another revision or gone.
    fn update(
        &self,
        key: &str,
        value: &Value,
        expected_revision: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Delete `key`: `true` when it was there. Idempotent: deleting a missing key is `Ok(false)`.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Delete `key` only if it is at `expected_revision`. [`StoreError::Conflict`] when the
    /// object is at another revision or gone.
    fn delete_if(&self, key: &str, expected_revision: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The objects below `prefix`, sorted by key.
    ///
    /// For a one-off look. To follow the objects, use [`watch`](Self::watch) alone: a `list`
    /// followed by a `watch` loses the changes made between the two calls.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<Object>, StoreError>> + Send;

    /// Watch the objects below `prefix`: an [`ObjectWatch`] holding a snapshot of them and a
    /// stream of the changes made after it, none missed in between. The way to follow them:
    ///
    /// 1. `let mut w = store.watch(prefix).await?;` and set things up for `w.snapshot()`;
    /// 2. apply each event of `w` as it comes;
    /// 3. when the stream reports a broken watch or ends, `watch` again and reconcile what is
    ///    set up with the new snapshot (add what it has, remove what it lacks).
    fn watch(&self, prefix: &str) -> impl Future<Output = Result<ObjectWatch, StoreError>> + Send;
}
