//! The file store: objects in a local directory, one file per key, shared by the threads and
//! processes of one host.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::key::{is_below, normalize_prefix, validate_key};
use super::{Object, ObjectEvent, ObjectStore, ObjectWatch, StoreError};
use crate::fsutil::paths::{self, PathError};
use crate::fsutil::watch::DirWatch;

/// Objects kept as files in one directory: for a single host, or for tests. Safe across
/// threads and processes (writers serialize on an `flock(2)`ed lock file) and across crashes
/// (every file is replaced by write-temp, fsync, rename, fsync of the directory; a `kill -9`
/// leaves the old or the new object, never a torn one).
///
/// Layout of the directory:
///
/// ```text
/// DIR/lock                           empty; flock(2)ed by every writer
/// DIR/revision                       the store's revision, in decimal ("42\n")
/// DIR/objects/services+default+web   {"revision": 7, "value": {...}}
/// DIR/tmp/.tmp-PID-N                 a write in progress, or left by a writer that died
/// ```
///
/// * **Files**: the object at key `K` is the file `DIR/objects/K` with each `/` written as
///   `+` (keys only hold `[A-Za-z0-9._-]` and `/`, so the name decodes back, and a key's
///   [`MAX_KEY_LEN`](super::MAX_KEY_LEN) of 255 bytes is a file name's limit). Nothing else
///   lives in `objects/`: temporary files are written in `DIR/tmp/` (same file system) and
///   renamed into place; the temporary files of a writer that died are removed by the next
///   write. A file in `objects/` whose name is not an encoded key, or whose content is not
///   `{"revision": N, "value": …}`, is reported as [`StoreError::Corrupt`] naming its path by
///   the reads that meet it ([`get`](ObjectStore::get) of its key, [`list`](ObjectStore::list)
///   and [`watch`](ObjectStore::watch) of a prefix above it); [`delete`](ObjectStore::delete)
///   and [`put`](ObjectStore::put) replace it without reading it.
/// * **Revisions**: every change (put, create, update, delete of an existing key) takes the
///   lock, adds one to `DIR/revision` (written crash-safely before the object), and stores
///   the new number in the object's file. So revisions are store-wide and growing, as etcd's
///   are, and compare-and-swap ([`update`](ObjectStore::update),
///   [`delete_if`](ObjectStore::delete_if)) compares the file's revision under the lock, with
///   the same answers as the etcd store. Readers take no lock.
/// * **Watch**: an inotify watch on `DIR/objects/` (no timer) is armed first,
///   then the objects below the prefix are read (the snapshot), so a change made while the
///   snapshot is read still wakes the watch. Each wake re-reads the objects and reports the
///   difference by (key, revision): a new or changed object is a [`Put`](ObjectEvent::Put)
///   (these in revision order), a missing one a [`Deleted`](ObjectEvent::Deleted) carrying
///   the store's revision read after the re-read. Changes faster than a re-read merge (see
///   [`ObjectWatch`]).
///
/// The blocking file work runs on tokio's blocking thread pool.
#[derive(Clone, Debug)]
pub struct FileObjectStore {
    layout: Arc<Layout>,
}

impl FileObjectStore {
    /// Open (creating it if needed) the store in `dir`.
    ///
    /// Fails with [`StoreError::Io`] naming the path when the directories cannot be created or
    /// locked, [`StoreError::Corrupt`] when `DIR/revision` does not hold a number.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        let layout = Arc::new(Layout {
            name: format!("file object store {}", dir.display()),
            dir,
        });
        let l = layout.clone();
        blocking(&layout, move || l.init()).await?;
        Ok(Self { layout })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// Run `work` on the layout, off the async threads.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Layout) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let layout = self.layout.clone();
        blocking(&self.layout, move || work(&layout)).await
    }
}

impl ObjectStore for FileObjectStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        validate_key(key)?;
        let key = key.to_string();
        self.run(move |l| l.read_object(&key)).await
    }

    async fn put(&self, key: &str, value: &Value) -> Result<u64, StoreError> {
        validate_key(key)?;
        let (key, value) = (key.to_string(), value.clone());
        self.run(move |l| {
            let _lock = l.lock()?;
            l.write_object(&key, &value)
        })
        .await
    }

    async fn create(&self, key: &str, value: &Value) -> Result<u64, StoreError> {
        validate_key(key)?;
        let (key, value) = (key.to_string(), value.clone());
        self.run(move |l| {
            let _lock = l.lock()?;
            if let Some(found) = l.read_object(&key)? {
                return Err(StoreError::AlreadyExists {
                    store: l.name.clone(),
                    key,
                    revision: found.revision,
                });
            }
            l.write_object(&key, &value)
        })
        .await
    }

    async fn update(&self, key: &str, value: &Value, expected_revision: u64) -> Result<u64, StoreError> {
        validate_key(key)?;
        let (key, value) = (key.to_string(), value.clone());
        self.run(move |l| {
            let _lock = l.lock()?;
            l.check_revision(&key, expected_revision)?;
            l.write_object(&key, &value)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        validate_key(key)?;
        let key = key.to_string();
        self.run(move |l| {
            let _lock = l.lock()?;
            let path = l.object_path(&key);
            match fs::symlink_metadata(&path) {
                Ok(_) => l.remove_object(&key).map(|()| true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(l.io(PathError::new("look up", path, e))),
            }
        })
        .await
    }

    async fn delete_if(&self, key: &str, expected_revision: u64) -> Result<(), StoreError> {
        validate_key(key)?;
        let key = key.to_string();
        self.run(move |l| {
            let _lock = l.lock()?;
            l.check_revision(&key, expected_revision)?;
            l.remove_object(&key)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Object>, StoreError> {
        let prefix = normalize_prefix(prefix)?.to_string();
        self.run(move |l| Ok(l.read_below(&prefix)?.into_values().collect()))
            .await
    }

    async fn watch(&self, prefix: &str) -> Result<ObjectWatch, StoreError> {
        let prefix = normalize_prefix(prefix)?.to_string();
        // Armed before the snapshot is read: a change made meanwhile wakes it.
        let objects = self.layout.objects_dir();
        let dir_watch = DirWatch::new(&objects).map_err(|e| self.layout.io(PathError::new("watch", objects, e)))?;
        let p = prefix.clone();
        let view = self.run(move |l| l.read_below(&p)).await?;
        let snapshot = view.values().cloned().collect();
        let state = WatchState {
            store: self.clone(),
            prefix,
            dir_watch,
            view,
            pending: VecDeque::new(),
            done: false,
        };
        Ok(ObjectWatch::new(
            snapshot,
            futures::stream::unfold(state, |mut st| async move {
                loop {
                    if let Some(item) = st.pending.pop_front() {
                        return Some((item, st));
                    }
                    if st.done {
                        return None;
                    }
                    st.wake().await;
                }
            }),
        ))
    }
}

/// A running watch of the file store.
struct WatchState {
    store: FileObjectStore,
    /// The normalized prefix.
    prefix: String,
    dir_watch: DirWatch,
    /// The objects as the events so far leave them.
    view: BTreeMap<String, Object>,
    pending: VecDeque<Result<ObjectEvent, StoreError>>,
    /// An error was queued: it is the last item.
    done: bool,
}

impl WatchState {
    /// Wait for a change of the directory, re-read it, and queue the differences (or the
    /// error, as the last item).
    async fn wake(&mut self) {
        if let Err(e) = self.dir_watch.changed().await {
            let path = self.store.layout.objects_dir();
            return self.fail(self.store.layout.io(PathError::new("watch", path, e)));
        }
        let prefix = self.prefix.clone();
        let read = self
            .store
            .run(move |l| {
                let objects = l.read_below(&prefix)?;
                // Read after the objects: at or after every delete the read found.
                let revision = l.read_revision()?;
                Ok((objects, revision))
            })
            .await;
        let (now, revision) = match read {
            Ok(read) => read,
            Err(e) => return self.fail(e),
        };
        let mut puts: Vec<&Object> = now
            .values()
            .filter(|o| self.view.get(&o.key).map(|v| v.revision) != Some(o.revision))
            .collect();
        puts.sort_by_key(|o| o.revision);
        self.pending
            .extend(puts.into_iter().map(|o| Ok(ObjectEvent::Put(o.clone()))));
        self.pending
            .extend(self.view.keys().filter(|k| !now.contains_key(*k)).map(|key| {
                Ok(ObjectEvent::Deleted {
                    key: key.clone(),
                    revision,
                })
            }));
        self.view = now;
    }

    fn fail(&mut self, e: StoreError) {
        self.done = true;
        self.pending.push_back(Err(e));
    }
}

/// What an object's file holds.
#[derive(Serialize, Deserialize)]
struct Record {
    revision: u64,
    value: Value,
}

/// The paths of one store directory, and the file work on them (blocking).
#[derive(Debug)]
struct Layout {
    dir: PathBuf,
    /// The store in errors.
    name: String,
}

impl Layout {
    fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }

    fn revision_file(&self) -> PathBuf {
        self.dir.join("revision")
    }

    fn objects_dir(&self) -> PathBuf {
        self.dir.join("objects")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// The file of the (valid) `key`.
    fn object_path(&self, key: &str) -> PathBuf {
        self.objects_dir().join(key.replace('/', "+"))
    }

    fn io(&self, e: PathError) -> StoreError {
        StoreError::Io {
            store: self.name.clone(),
            op: e.op,
            path: e.path,
            cause: e.cause,
        }
    }

    fn corrupt(&self, path: &Path, reason: String) -> StoreError {
        StoreError::Corrupt {
            store: self.name.clone(),
            location: path.display().to_string(),
            reason,
        }
    }

    /// Create the directories, remove stale temporary files, check the revision file.
    fn init(&self) -> Result<(), StoreError> {
        for dir in [self.objects_dir(), self.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(|e| self.io(PathError::new("create directory", dir, e)))?;
        }
        let _lock = self.lock()?;
        paths::remove_stale_temps(&self.tmp_dir()).map_err(|e| self.io(e))?;
        self.read_revision().map(drop)
    }

    /// Take the writers' lock: released when the guard drops (or the process dies).
    fn lock(&self) -> Result<Flock<File>, StoreError> {
        paths::lock(&self.lock_file()).map_err(|e| self.io(e))
    }

    /// The store's revision: 0 before the first change.
    fn read_revision(&self) -> Result<u64, StoreError> {
        let path = self.revision_file();
        match paths::read(&path).map_err(|e| self.io(e))? {
            None => Ok(0),
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| self.corrupt(&path, "not a decimal number".to_string())),
        }
    }

    /// Add one to the store's revision and return it. With the lock held; removes the
    /// temporary files of writers that died first (none is writing now).
    fn next_revision(&self) -> Result<u64, StoreError> {
        paths::remove_stale_temps(&self.tmp_dir()).map_err(|e| self.io(e))?;
        let next = self.read_revision()? + 1;
        paths::write_atomic(&self.tmp_dir(), &self.revision_file(), format!("{next}\n").as_bytes())
            .map_err(|e| self.io(e))?;
        Ok(next)
    }

    /// Store `value` at `key` under a new revision (with the lock held); returns it.
    fn write_object(&self, key: &str, value: &Value) -> Result<u64, StoreError> {
        let revision = self.next_revision()?;
        let record = Record {
            revision,
            value: value.clone(),
        };
        let bytes = serde_json::to_vec(&record).expect("a JSON value serializes");
        paths::write_atomic(&self.tmp_dir(), &self.object_path(key), &bytes).map_err(|e| self.io(e))?;
        Ok(revision)
    }

    /// Remove the object at `key` durably, under a new revision (with the lock held).
    fn remove_object(&self, key: &str) -> Result<(), StoreError> {
        self.next_revision()?;
        paths::remove_durably(&self.object_path(key))
            .map(drop)
            .map_err(|e| self.io(e))
    }

    /// [`StoreError::Conflict`] unless the object at `key` is at `expected` (with the lock
    /// held).
    fn check_revision(&self, key: &str, expected: u64) -> Result<(), StoreError> {
        let current = self.read_object(key)?.map(|o| o.revision);
        if current == Some(expected) {
            return Ok(());
        }
        Err(StoreError::Conflict {
            store: self.name.clone(),
            key: key.to_string(),
            expected,
            current,
        })
    }

    /// The object at `key`, if its file exists.
    fn read_object(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.read_file(key, &self.object_path(key))
    }

    fn read_file(&self, key: &str, path: &Path) -> Result<Option<Object>, StoreError> {
        let Some(bytes) = paths::read(path).map_err(|e| self.io(e))? else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| self.corrupt(path, format!("not {{\"revision\": N, \"value\": ...}}: {e}")))?;
        Ok(Some(Object {
            key: key.to_string(),
            value: record.value,
            revision: record.revision,
        }))
    }

    /// The objects below the normalized `prefix`, by key. A file removed while the directory
    /// is read is skipped.
    fn read_below(&self, prefix: &str) -> Result<BTreeMap<String, Object>, StoreError> {
        let mut objects = BTreeMap::new();
        for entry in paths::read_dir(&self.objects_dir()).map_err(|e| self.io(e))? {
            let path = entry.path();
            let name = entry.file_name();
            let key = name.to_str().map(|n| n.replace('+', "/"));
            let key = match key {
                Some(key) if validate_key(&key).is_ok() => key,
                _ => return Err(self.corrupt(&path, "the file name is not a key ('/' written as '+')".to_string())),
            };
            if !is_below(&key, prefix) {
                continue;
            }
            if let Some(object) = self.read_file(&key, &path)? {
                objects.insert(key, object);
            }
        }
        Ok(objects)
    }
}

/// Run blocking file work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    layout: &Layout,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(layout.io(PathError::new("run file work in", &layout.dir, io::Error::other(e)))),
    }
}
