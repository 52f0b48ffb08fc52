//! A store chosen at run time: where a frontend's `--store etcd=URL,…|file=DIR` points.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde_json::Value;

#[cfg(feature = "etcd")]
use super::EtcdObjectStore;
use super::{FileObjectStore, Object, ObjectStore, ObjectWatch, StoreError};

/// The etcd key prefix of cluster objects unless told otherwise.
pub const DEFAULT_ETCD_PREFIX: &str = "/netkit/objects";

/// Where the cluster store is, as frontends write it: `etcd=URL[,URL…]` or `file=DIR`.
///
/// With `file=DIR` the objects live in `DIR/cluster` (a [`FileObjectStore`]), so that one
/// directory can hold the nodes' lease store (`DIR/leases`, `DIR/lock`, …) and the objects side
/// by side, as one `--store` names both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// etcd at these endpoints.
    Etcd(Vec<String>),
    /// A directory on this host.
    File(PathBuf),
}

impl FromStr for StoreLocation {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidKey {
            key: s.to_string(),
            reason: format!("a store is etcd=URL[,URL…] or file=DIR: {reason}"),
        };
        match s.split_once('=') {
            Some(("etcd", urls)) => {
                let urls: Vec<String> = urls.split(',').filter(|u| !u.is_empty()).map(str::to_string).collect();
                if urls.is_empty() {
                    return Err(invalid("no URL"));
                }
                Ok(Self::Etcd(urls))
            }
            Some(("file", dir)) if !dir.is_empty() => Ok(Self::File(dir.into())),
            Some(("file", _)) => Err(invalid("no directory")),
            _ => Err(invalid("neither etcd= nor file=")),
        }
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Etcd(urls) => write!(f, "etcd={}", urls.join(",")),
            Self::File(dir) => write!(f, "file={}", dir.display()),
        }
    }
}

/// A file or etcd object store, picked at run time (the [`ObjectStore`] trait is not
/// dyn-compatible, so frontends hold this instead of a boxed store).
#[derive(Debug, Clone)]
pub enum AnyObjectStore {
    /// A directory on this host.
    File(FileObjectStore),
    /// etcd (feature `etcd`); boxed, its client is large.
    #[cfg(feature = "etcd")]
    Etcd(Box<EtcdObjectStore>),
}

impl AnyObjectStore {
    /// Open the store at `location`; etcd keys go under `etcd_prefix`
    /// ([`DEFAULT_ETCD_PREFIX`] unless the user said otherwise). Without the `etcd` feature an
    /// etcd location is a [`StoreError::Etcd`] saying so.
    pub async fn open(location: &StoreLocation, etcd_prefix: &str) -> Result<Self, StoreError> {
        match location {
            StoreLocation::File(dir) => Ok(Self::File(FileObjectStore::open(dir.join("cluster")).await?)),
            #[cfg(feature = "etcd")]
            StoreLocation::Etcd(urls) => Ok(Self::Etcd(Box::new(EtcdObjectStore::connect(urls, etcd_prefix).await?))),
            #[cfg(not(feature = "etcd"))]
            StoreLocation::Etcd(urls) => {
                let _ = etcd_prefix;
                Err(StoreError::Etcd {
                    store: urls.join(","),
                    op: "connect".into(),
                    cause: "netkit-core was built without its `etcd` feature".into(),
                })
            }
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyObjectStore::File($s) => $e,
            #[cfg(feature = "etcd")]
            AnyObjectStore::Etcd($s) => $e,
        }
    };
}

impl ObjectStore for AnyObjectStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        each!(self, s => s.get(key).await)
    }
    async fn put(&self, key: &str, value: &Value) -> Result<u64, StoreError> {
        each!(self, s => s.put(key, value).await)
    }
    async fn create(&self, key: &str, value: &Value) -> Result<u64, StoreError> {
        each!(self, s => s.create(key, value).await)
    }
    async fn update(&self, key: &str, value: &Value, expected_revision: u64) -> Result<u64, StoreError> {
        each!(self, s => s.update(key, value, expected_revision).await)
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        each!(self, s => s.delete(key).await)
    }
    async fn delete_if(&self, key: &str, expected_revision: u64) -> Result<(), StoreError> {
        each!(self, s => s.delete_if(key, expected_revision).await)
    }
    async fn list(&self, prefix: &str) -> Result<Vec<Object>, StoreError> {
        each!(self, s => s.list(prefix).await)
    }
    async fn watch(&self, prefix: &str) -> Result<ObjectWatch, StoreError> {
        each!(self, s => s.watch(prefix).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_print() {
        let e: StoreLocation = "etcd=http://a:2379,http://b:2379".parse().unwrap();
        assert_eq!(
            e,
            StoreLocation::Etcd(vec!["http://a:2379".into(), "http://b:2379".into()])
        );
        assert_eq!(e.to_string(), "etcd=http://a:2379,http://b:2379");
        assert_eq!(
            "file=/x".parse::<StoreLocation>().unwrap(),
            StoreLocation::File("/x".into())
        );
        for bad in ["", "etcd=", "file=", "zk=x", "/x"] {
            assert!(bad.parse::<StoreLocation>().is_err(), "{bad}");
        }
    }
}
