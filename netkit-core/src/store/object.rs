//! What a store holds, and the changes a watch reports.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::StoreError;

/// One stored object: its key, its JSON value and its revision.
///
/// The revision grows on every change of the key (etcd's `mod_revision` in the etcd store):
/// compare it to order two versions of one object, and pass it to
/// [`update`](super::ObjectStore::update) or [`delete_if`](super::ObjectStore::delete_if) to
/// change the object only if nobody else did meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// The key (`services/default/web`).
    pub key: String,
    /// The value.
    pub value: Value,
    /// The revision of the last change of this key.
    pub revision: u64,
}

impl Object {
    /// The value as a `T`; [`StoreError::Corrupt`] naming the key and `store` when it is not
    /// one.
    pub fn decode<T: DeserializeOwned>(&self, store: &str) -> Result<T, StoreError> {
        T::deserialize(&self.value).map_err(|e| StoreError::Corrupt {
            store: store.to_string(),
            location: self.key.clone(),
            reason: format!("not a {}: {e}", std::any::type_name::<T>()),
        })
    }
}

/// One change reported by an [`ObjectWatch`](super::ObjectWatch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectEvent {
    /// An object was created or changed: this is it now.
    Put(Object),
    /// An object was deleted.
    Deleted {
        /// The key.
        key: String,
        /// The etcd store: the revision of the delete. The file store: the store's revision
        /// when the re-read found the object gone (at or after the delete, above every
        /// revision the object had).
        revision: u64,
    },
}

impl ObjectEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            Self::Put(o) => &o.key,
            Self::Deleted { key, .. } => key,
        }
    }
}
