//! The etcd object store: objects shared by a cluster through etcd.

pub(crate) mod changes;

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, Event, EventType, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use futures::StreamExt;
use serde_json::Value;

use super::key::{normalize_prefix, validate_key};
use super::{Object, ObjectEvent, ObjectStore, ObjectWatch, StoreError};

/// Objects kept in etcd under a key prefix, shared by every node of a cluster (feature `etcd`).
///
/// The object at key `K` is the etcd key `PREFIX/K` holding its value as JSON; its revision is
/// the etcd key's `mod_revision` (so revisions are etcd's: store-wide, growing on every change).
/// With the default prefix [`DEFAULT_PREFIX`](Self::DEFAULT_PREFIX):
///
/// ```text
/// /netkit/objects/services/default/web   {"ports": [80], ...}
/// ```
///
/// * **create** is one transaction putting the key only if it has never been created
///   (`create_revision == 0`);
/// * **update** and **delete_if** are one transaction each, comparing the key's `mod_revision`
///   with the expected revision (and that it exists);
/// * **watch** reads the keys under the prefix at one etcd revision (the snapshot) and
///   watches from the next revision, so no change falls in between: every put is a
///   [`Put`](ObjectEvent::Put), every delete a [`Deleted`](ObjectEvent::Deleted) carrying the
///   delete's revision. The stream ends with an error when the watch breaks (connection lost,
///   or etcd compacted away revisions it still had to send).
#[derive(Clone)]
pub struct EtcdObjectStore {
    client: Client,
    /// The prefix without a trailing `/`.
    prefix: String,
    /// The endpoints and prefix, for error messages.
    name: String,
}

impl std::fmt::Debug for EtcdObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdObjectStore")
            .field("store", &self.name)
            .finish_non_exhaustive()
    }
}

impl EtcdObjectStore {
    /// The default key prefix, `/netkit/objects` (the same as
    /// [`DEFAULT_ETCD_PREFIX`](crate::store::DEFAULT_ETCD_PREFIX)).
    pub const DEFAULT_PREFIX: &'static str = crate::store::DEFAULT_ETCD_PREFIX;

    /// How long connecting (and the first request) may take before failing.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Connect to etcd at `endpoints` (`http://127.0.0.1:2379`, …) and keep the objects under
    /// `prefix` (`/netkit/objects`; a trailing `/` is dropped).
    ///
    /// Fails with [`StoreError::Etcd`] naming the endpoints when etcd does not answer a first
    /// request within [`CONNECT_TIMEOUT`](Self::CONNECT_TIMEOUT).
    pub async fn connect<E: AsRef<str>>(endpoints: &[E], prefix: &str) -> Result<Self, StoreError> {
        let endpoint = endpoints.iter().map(|e| e.as_ref()).collect::<Vec<_>>().join(",");
        let name = store_name(&endpoint, trim_prefix(prefix));
        let fail = |op: &str, cause: Box<dyn std::error::Error + Send + Sync>| StoreError::Etcd {
            store: name.clone(),
            op: op.to_string(),
            cause,
        };
        let options = ConnectOptions::new().with_connect_timeout(Self::CONNECT_TIMEOUT);
        let connecting = Client::connect(endpoints, Some(options));
        let client = match tokio::time::timeout(Self::CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(fail("connect", e.into())),
            Err(e) => return Err(fail("connect (no answer)", e.into())),
        };
        let store = Self::with_client(client, endpoint, prefix);
        // A first request: fail here, naming the endpoints, rather than at the first use.
        let mut kv = store.client.kv_client();
        let first = kv.get(store.range(""), Some(GetOptions::new().with_count_only()));
        match tokio::time::timeout(Self::CONNECT_TIMEOUT, first).await {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(e)) => Err(fail("connect", e.into())),
            Err(e) => Err(fail("connect (no answer)", e.into())),
        }
    }

    /// Use an already connected client (for TLS or authentication set up by the caller);
    /// `endpoint` names it in errors. Nothing is sent to etcd until the first request.
    pub fn with_client(client: Client, endpoint: impl Into<String>, prefix: &str) -> Self {
        let prefix = trim_prefix(prefix).to_string();
        Self {
            client,
            name: store_name(&endpoint.into(), &prefix),
            prefix,
        }
    }

    /// The key prefix, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The etcd key of the (valid) `key`: `PREFIX/key`.
    fn etcd_key(&self, key: &str) -> String {
        format!("{}/{key}", self.prefix)
    }

    /// The etcd key prefix of the (normalized) `prefix`: `PREFIX/prefix/`, or `PREFIX/` for `""`.
    fn range(&self, prefix: &str) -> String {
        if prefix.is_empty() {
            format!("{}/", self.prefix)
        } else {
            format!("{}/{prefix}/", self.prefix)
        }
    }

    fn error(&self, op: impl Into<String>, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError::Etcd {
            store: self.name.clone(),
            op: op.into(),
            cause: cause.into(),
        }
    }

    fn corrupt(&self, etcd_key: &[u8], reason: String) -> StoreError {
        StoreError::Corrupt {
            store: self.name.clone(),
            location: String::from_utf8_lossy(etcd_key).into_owned(),
            reason,
        }
    }

    /// The store's key of an etcd key under the prefix.
    fn key_of(&self, etcd_key: &[u8]) -> Result<String, StoreError> {
        let key = std::str::from_utf8(etcd_key)
            .ok()
            .and_then(|k| k.strip_prefix(self.prefix.as_str()))
            .and_then(|k| k.strip_prefix('/'))
            .ok_or_else(|| self.corrupt(etcd_key, format!("not a key under {}/", self.prefix)))?;
        validate_key(key).map_err(|e| self.corrupt(etcd_key, e.to_string()))?;
        Ok(key.to_string())
    }

    /// The object an etcd key-value holds: [`StoreError::Corrupt`] naming the etcd key when
    /// its value is not JSON (or the key not a valid one).
    fn object(&self, kv: &KeyValue) -> Result<Object, StoreError> {
        let key = self.key_of(kv.key())?;
        let value = serde_json::from_slice(kv.value())
            .map_err(|e| self.corrupt(kv.key(), format!("the value is not JSON: {e}")))?;
        Ok(Object {
            key,
            value,
            revision: revision(kv.mod_revision()),
        })
    }

    /// The object event of one etcd event.
    fn event(&self, event: &Event) -> Result<ObjectEvent, StoreError> {
        let Some(kv) = event.kv() else {
            return Err(self.error(
                "watch",
                etcd_client::Error::WatchError("etcd sent an event without its key".to_string()),
            ));
        };
        match event.event_type() {
            EventType::Put => self.object(kv).map(ObjectEvent::Put),
            EventType::Delete => Ok(ObjectEvent::Deleted {
                key: self.key_of(kv.key())?,
                revision: revision(kv.mod_revision()),
            }),
        }
    }

    async fn txn(&self, txn: Txn, op: impl FnOnce() -> String) -> Result<TxnResponse, StoreError> {
        self.client.kv_client().txn(txn).await.map_err(|e| self.error(op(), e))
    }

    /// A transaction's revision: the revision of its change when it succeeded.
    fn header_revision(&self, header: Option<&etcd_client::ResponseHeader>, op: &str) -> Result<u64, StoreError> {
        match header {
            Some(h) => Ok(revision(h.revision())),
            None => Err(self.error(
                op,
                etcd_client::Error::InvalidArgs("etcd answered without a response header".to_string()),
            )),
        }
    }

    /// Put `key` if it still is at `expected` (`None`: if it never existed), else the
    /// revision found (`Some(None)`: missing). The put's revision on success.
    async fn put_if(
        &self,
        key: &str,
        value: &Value,
        expected: Option<u64>,
        op: &str,
    ) -> Result<Result<u64, Option<u64>>, StoreError> {
        let ek = self.etcd_key(key);
        let txn = Txn::new()
            .when(guard(&ek, expected))
            .and_then([TxnOp::put(ek.clone(), value.to_string(), None)])
            .or_else([TxnOp::get(ek.clone(), None)]);
        self.finish_if(txn, op).await
    }

    /// Run a guarded transaction (see [`put_if`](Self::put_if)).
    async fn finish_if(&self, txn: Txn, op: &str) -> Result<Result<u64, Option<u64>>, StoreError> {
        let resp = self.txn(txn, || op.to_string()).await?;
        if resp.succeeded() {
            return self.header_revision(resp.header(), op).map(Ok);
        }
        let found = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| revision(kv.mod_revision())),
            _ => None,
        });
        Ok(Err(found))
    }

    fn conflict(&self, key: &str, expected: u64, current: Option<u64>) -> StoreError {
        StoreError::Conflict {
            store: self.name.clone(),
            key: key.to_string(),
            expected,
            current,
        }
    }
}

/// The guard of a conditional change of the etcd key `ek`: it is at revision `expected` (and
/// exists: a missing key's `mod_revision` is 0), or it has never been created (`None`).
fn guard(ek: &str, expected: Option<u64>) -> Vec<Compare> {
    match expected {
        None => vec![Compare::create_revision(ek, CompareOp::Equal, 0)],
        Some(rev) => vec![
            Compare::version(ek, CompareOp::Greater, 0),
            Compare::mod_revision(ek, CompareOp::Equal, i64::try_from(rev).unwrap_or(i64::MAX)),
        ],
    }
}

/// An etcd revision (never negative) as ours.
fn revision(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

fn trim_prefix(prefix: &str) -> &str {
    prefix.strip_suffix('/').unwrap_or(prefix)
}

fn store_name(endpoint: &str, prefix: &str) -> String {
    format!("etcd object store {prefix}/ at {endpoint}")
}

impl ObjectStore for EtcdObjectStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        validate_key(key)?;
        let ek = self.etcd_key(key);
        let resp = self
            .client
            .kv_client()
            .get(ek, None)
            .await
            .map_err(|e| self.error(format!("get {key}"), e))?;
        resp.kvs().first().map(|kv| self.object(kv)).transpose()
    }

    async fn put(&self, key: &str, value: &Value) -> Result<u64, StoreError> {
        validate_key(key)?;
        let op = || format!("put {key}");
        let resp = self
            .client
            .kv_client()
            .put(self.etcd_key(key), value.to_string(), None)
            .await
            .map_err(|e| self.error(op(), e))?;
        self.header_revision(resp.header(), &op())
    }

    async fn create(&self, key: &str, value: &Value) -> Result<u64, StoreError> {
        validate_key(key)?;
        match self.put_if(key, value, None, &format!("create {key}")).await? {
            Ok(rev) => Ok(rev),
            Err(found) => Err(StoreError::AlreadyExists {
                store: self.name.clone(),
                key: key.to_string(),
                revision: found.unwrap_or(0),
            }),
        }
    }

    async fn update(&self, key: &str, value: &Value, expected_revision: u64) -> Result<u64, StoreError> {
        validate_key(key)?;
        let op = format!("update {key} at revision {expected_revision}");
        self.put_if(key, value, Some(expected_revision), &op)
            .await?
            .map_err(|found| self.conflict(key, expected_revision, found))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        validate_key(key)?;
        let resp = self
            .client
            .kv_client()
            .delete(self.etcd_key(key), None)
            .await
            .map_err(|e| self.error(format!("delete {key}"), e))?;
        Ok(resp.deleted() > 0)
    }

    async fn delete_if(&self, key: &str, expected_revision: u64) -> Result<(), StoreError> {
        validate_key(key)?;
        let ek = self.etcd_key(key);
        let txn = Txn::new()
            .when(guard(&ek, Some(expected_revision)))
            .and_then([TxnOp::delete(ek.clone(), None)])
            .or_else([TxnOp::get(ek.clone(), None)]);
        let op = format!("delete {key} at revision {expected_revision}");
        self.finish_if(txn, &op)
            .await?
            .map(drop)
            .map_err(|found| self.conflict(key, expected_revision, found))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Object>, StoreError> {
        let prefix = normalize_prefix(prefix)?;
        let range = self.range(prefix);
        let (kvs, _) = changes::get_prefix(&self.client, &range, GetOptions::new())
            .await
            .map_err(|e| self.error(format!("list {range}"), e))?;
        self.objects(&kvs)
    }

    async fn watch(&self, prefix: &str) -> Result<ObjectWatch, StoreError> {
        let prefix = normalize_prefix(prefix)?;
        let range = self.range(prefix);
        let (kvs, rev) = changes::get_prefix(&self.client, &range, GetOptions::new())
            .await
            .map_err(|e| self.error(format!("list {range}"), e))?;
        let snapshot = self.objects(&kvs)?;
        let events = changes::watch_from(&self.client, &range, rev + 1)
            .await
            .map_err(|e| self.error(format!("watch {range} from revision {}", rev + 1), e))?;
        let store = self.clone();
        let events = Box::pin(events.map(move |item| match item {
            Ok(event) => store.event(&event),
            Err(e) => Err(store.error(format!("watch {range}"), e)),
        }));
        // An error is the last item: the view is not to be trusted past it.
        let events = futures::stream::unfold(Some(events), |events| async move {
            let mut events = events?;
            let item = events.next().await?;
            let rest = if item.is_ok() { Some(events) } else { None };
            Some((item, rest))
        });
        Ok(ObjectWatch::new(snapshot, events))
    }
}

impl EtcdObjectStore {
    /// The objects of key-values read under a prefix, sorted by key.
    fn objects(&self, kvs: &[KeyValue]) -> Result<Vec<Object>, StoreError> {
        let mut objects = kvs.iter().map(|kv| self.object(kv)).collect::<Result<Vec<_>, _>>()?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}
