//! Whole files replaced crash-safely by path, under an `flock`ed lock file: what the stores
//! that keep one JSON file per record by name share (the lease store's `leases/`, the object
//! store's `objects/`).
//!
//! Every file is written to a temporary name (`.tmp-PID-N`, in a directory of the caller's
//! choice on the same file system), fsynced, renamed over its final name and the final
//! directory fsynced, so a reader (or a writer after `kill -9`) sees the old content or the
//! new, never a mix. Readers take no lock. Errors are [`PathError`]s naming the operation and
//! the path; each store wraps them into its own error type.
//!
//! Unlike [`super::dir`], these helpers name files by path: the stores using them live in a
//! directory only their writers (root) can write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The prefix of temporary files.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// A failed file-system operation: what was done, on which path, and the error.
#[derive(Debug)]
pub(crate) struct PathError {
    /// What was being done ("create", "write", "rename into place", …).
    pub(crate) op: &'static str,
    /// The file or directory.
    pub(crate) path: PathBuf,
    /// The underlying error, with its errno.
    pub(crate) cause: io::Error,
}

impl PathError {
    pub(crate) fn new(op: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        Self {
            op,
            path: path.into(),
            cause,
        }
    }
}

/// Take an exclusive lock on the file `path` (created if needed), waiting as long as it takes;
/// it is released when the guard drops (or the process dies). Each call opens the file anew,
/// so threads of one process exclude each other as processes do.
pub(crate) fn lock(path: &Path) -> Result<Flock<File>, PathError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| PathError::new("open lock file", path, e))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => return Err(PathError::new("lock", path, errno.into())),
        }
    }
}

/// Remove the temporary files in `dir` left by writers that died mid-write. Call with the
/// lock held: then no write is in progress.
pub(crate) fn remove_stale_temps(dir: &Path) -> Result<(), PathError> {
    for entry in read_dir(dir)? {
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

/// Replace `path` with `bytes`: write a temporary file in `tmp_dir` (on the same file system
/// as `path`), fsync it, rename it over `path`, fsync the directory of `path`.
pub(crate) fn write_atomic(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), PathError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = tmp_dir.join(format!(
        "{TMP_PREFIX}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| PathError::new("create", &tmp, e))?;
        file.write_all(bytes).map_err(|e| PathError::new("write", &tmp, e))?;
        file.sync_all().map_err(|e| PathError::new("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| PathError::new("rename into place", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(path.parent().unwrap_or(tmp_dir))
}

/// The content of the file `path`; `None` when it does not exist.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>, PathError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PathError::new("read", path, e)),
    }
}

/// Remove the file `path` and make the removal durable; a missing file is fine.
pub(crate) fn remove_durably(path: &Path) -> Result<bool, PathError> {
    let removed = remove(path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Make a directory's entries (renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PathError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PathError::new("fsync directory", dir, e))
}

/// The entries of `dir`.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, PathError> {
    fs::read_dir(dir)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PathError::new("read directory", dir, e))
}

/// Remove the file `path`: `Ok(false)` when it was not there.
pub(crate) fn remove(path: &Path) -> Result<bool, PathError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(PathError::new("remove", path, e)),
    }
}
