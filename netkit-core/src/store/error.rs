//! The one error type of the object store.

use std::path::PathBuf;

/// Everything that can go wrong in an [`ObjectStore`](super::ObjectStore). Each variant names
/// the key (or prefix) and the store: the file store's directory or the etcd endpoint and key
/// prefix.
///
/// The variants are the same with or without the `etcd` feature, so enabling it never breaks
/// a `match`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key or prefix breaks the key rules (see [`validate_key`](super::validate_key)).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it was rejected.
        reason: String,
    },
    /// [`create`](super::ObjectStore::create) found the key already there.
    #[error("{store}: key {key} already exists (revision {revision})")]
    AlreadyExists {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// The revision of the object found.
        revision: u64,
    },
    /// A compare-and-swap ([`update`](super::ObjectStore::update),
    /// [`delete_if`](super::ObjectStore::delete_if)) found another revision than expected:
    /// someone changed or deleted the object meanwhile. Read it again and retry.
    #[error("{store}: key {key} is not at revision {expected}: {}", found(.current))]
    Conflict {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: u64,
        /// The object's revision now; `None` when it does not exist.
        current: Option<u64>,
    },
    /// A stored object cannot be read back (not JSON, or not what its name says).
    #[error("{store}: corrupt object {location}: {reason}")]
    Corrupt {
        /// The store.
        store: String,
        /// The file path, or the etcd key.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file-system operation of the file store failed.
    #[error("{store}: cannot {op} {}: {cause}", path.display())]
    Io {
        /// The store.
        store: String,
        /// What was being done ("lock", "write", "rename into place", "watch", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error, with its errno.
        cause: std::io::Error,
    },
    /// A request to etcd failed (connection, transaction, watch), or a watch broke.
    #[error("{store}: etcd {op} failed: {cause}")]
    Etcd {
        /// The store (etcd endpoints and key prefix).
        store: String,
        /// What was being done, naming the key or prefix ("put services/web", "watch …").
        op: String,
        /// The etcd client's error.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn found(current: &Option<u64>) -> String {
    match current {
        Some(r) => format!("it is at revision {r}"),
        None => "it does not exist".to_string(),
    }
}

impl StoreError {
    /// True for [`StoreError::Conflict`]: re-read and retry.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// True for [`StoreError::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }

    /// True for [`StoreError::InvalidKey`].
    pub fn is_invalid_key(&self) -> bool {
        matches!(self, Self::InvalidKey { .. })
    }
}
