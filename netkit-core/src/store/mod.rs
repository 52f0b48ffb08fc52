//! A generic object store: JSON objects by key, with compare-and-swap updates and watches that
//! miss nothing — the one place where cluster state (services, endpoints, policies, …) is kept.
//!
//! * [`ObjectStore`] is the interface; [`FileObjectStore`] keeps the objects in a directory of
//!   one host, `EtcdObjectStore` (feature `etcd`) in etcd, shared by a cluster. Both behave
//!   the same, down to the compare-and-swap errors.
//! * An [`Object`] is a key, a JSON value and a revision that grows with every change of the
//!   key; [`update`](ObjectStore::update) and [`delete_if`](ObjectStore::delete_if) take the
//!   revision read and fail with [`StoreError::Conflict`] when someone changed the object
//!   meanwhile (read again and retry).
//! * [`watch`](ObjectStore::watch) returns an [`ObjectWatch`]: a snapshot of the objects below
//!   a prefix and a stream of [`ObjectEvent`]s after it.
//! * Every failure is a [`StoreError`] naming the key (or file) and the store.
//!
//! # Keys
//!
//! A key is one or more `/`-separated segments of `[A-Za-z0-9._-]`, none empty, `.` or `..`, at
//! most [`MAX_KEY_LEN`] (255) bytes in all ([`validate_key`]): `services/default/web`. A prefix
//! (of [`list`](ObjectStore::list) and [`watch`](ObjectStore::watch)) is `""` (every key) or
//! a key, meaning the keys *below* it: `services` covers `services/default/web`, never
//! `services` itself nor `services-old/x`.
//!
//! # The file store's layout
//!
//! ```text
//! DIR/lock                           empty; flock(2)ed by every writer
//! DIR/revision                       the store's revision, in decimal: +1 on every change
//! DIR/objects/services+default+web   {"revision": 7, "value": {...}}
//! DIR/tmp/.tmp-PID-N                 a write in progress, or left by a writer that died
//! ```
//!
//! One file per key in `objects/`, named after the key with each `/` written as `+` (keys
//! never hold `+`, so the name decodes back), holding the object's revision and value.
//! See [`FileObjectStore`] for how writes, revisions and watches work there.
//!
//! # The etcd store's layout
//!
//! The object at key `K` is the etcd key `PREFIX/K` (default prefix `/netkit/objects`) holding
//! its value as JSON; its revision is the etcd key's `mod_revision`. A list or watch of prefix
//! `P` reads `PREFIX/P/` (`PREFIX/` for `""`). See `EtcdObjectStore`.
//!
//! # Example
//!
//! ```no_run
//! # use netkit_core::store::{FileObjectStore, ObjectStore, StoreError};
//! # use serde_json::json;
//! # async fn f() -> Result<(), StoreError> {
//! let store = FileObjectStore::open("/var/lib/netkit/objects").await?;
//! store.create("services/default/web", &json!({"port": 80})).await?;
//! // Read, change, write back only if nobody changed it meanwhile.
//! loop {
//!     let web = store.get("services/default/web").await?.expect("created above");
//!     let mut value = web.value.clone();
//!     value["port"] = json!(8080);
//!     match store.update(&web.key, &value, web.revision).await {
//!         Err(e) if e.is_conflict() => continue,
//!         other => break other.map(drop)?,
//!     }
//! }
//! # Ok(()) }
//! ```

mod any;
mod api;
mod error;
#[cfg(feature = "etcd")]
pub(crate) mod etcd;
mod file;
mod key;
mod object;
mod watch;

pub use any::{AnyObjectStore, StoreLocation, DEFAULT_ETCD_PREFIX};
pub use api::ObjectStore;
pub use error::StoreError;
#[cfg(feature = "etcd")]
pub use etcd::EtcdObjectStore;
pub use file::FileObjectStore;
pub use key::{normalize_prefix, validate_key, MAX_KEY_LEN};
pub use object::{Object, ObjectEvent};
pub use watch::ObjectWatch;
