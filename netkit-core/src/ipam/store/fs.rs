//! The few file operations the store is built from, each atomic on its own:
//! a whole file appears at its name or nothing does (write to `tmp/`, then rename), and an
//! address is claimed by one rename that refuses to replace (`RENAME_NOREPLACE`, or `link(2)` on
//! file systems without it). A process killed between two of these leaves only whole files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{renameat2, Flock, FlockArg, RenameFlags, AT_FDCWD};

/// A unique scratch file name in `tmp`: `<pid>.<counter>`; [`tmp_owner_pid`] reads the pid back
/// so garbage collection can remove scratch files of dead processes.
pub(crate) fn tmp_name(tmp: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    tmp.join(format!(
        "{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The pid a scratch file name was made by.
pub(crate) fn tmp_owner_pid(name: &str) -> Option<i32> {
    name.split_once('.')?.0.parse().ok()
}

/// Write `content` to a fresh scratch file (fsynced when `sync`), returning its path.
pub(crate) fn write_scratch(tmp: &Path, content: &str, sync: bool) -> io::Result<PathBuf> {
    crash_point()?;
    let path = tmp_name(tmp);
    let mut f = OpenOptions::new().write(true).create_new(true).open(&path)?;
    f.write_all(content.as_bytes())?;
    if sync {
        f.sync_all()?;
    }
    Ok(path)
}

/// Replace `dst` by `content` atomically.
pub(crate) fn replace(tmp: &Path, dst: &Path, content: &str, sync: bool) -> io::Result<()> {
    let scratch = write_scratch(tmp, content, sync)?;
    crash_point()?;
    fs::rename(&scratch, dst).inspect_err(|_| {
        let _ = fs::remove_file(&scratch);
    })?;
    sync_parent(dst, sync)
}

/// Create `dst` holding `content` unless it exists: `Ok(false)` when it did.
pub(crate) fn create_exclusive(tmp: &Path, dst: &Path, content: &str, sync: bool) -> io::Result<bool> {
    let scratch = write_scratch(tmp, content, sync)?;
    crash_point()?;
    let moved = match renameat2(AT_FDCWD, &scratch, AT_FDCWD, dst, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        // File systems without RENAME_NOREPLACE: link(2) also refuses to replace.
        Err(Errno::EINVAL | Errno::ENOSYS) => match fs::hard_link(&scratch, dst) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        },
        Err(e) => Err(io::Error::from(e)),
    };
    // Gone already after a successful rename; there after EEXIST or link(2).
    let _ = fs::remove_file(&scratch);
    if moved? {
        sync_parent(dst, sync)?;
        return Ok(true);
    }
    Ok(false)
}

/// Remove a file; "already gone" is success (`Ok(false)`).
pub(crate) fn remove(path: &Path, sync: bool) -> io::Result<bool> {
    crash_point()?;
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path, sync).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Read a whole file; `None` when it does not exist.
pub(crate) fn read(path: &Path) -> io::Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// True when `path` exists (one `stat`, no read).
pub(crate) fn exists(path: &Path) -> io::Result<bool> {
    path.try_exists()
}

/// An exclusive `flock` on a lock file, released on drop (or when the process dies).
pub(crate) struct Lock(#[allow(dead_code)] Flock<File>);

/// Take an exclusive lock on `path`, creating the file if needed.
pub(crate) fn lock(path: &Path) -> io::Result<Lock> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map(Lock)
        .map_err(|(_, e)| io::Error::from(e))
}

fn sync_parent(path: &Path, sync: bool) -> io::Result<()> {
    if sync {
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

#[cfg(not(test))]
#[inline(always)]
fn crash_point() -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) use crash::{crash_after, crash_point};

/// Test-only crash simulation: after N more steps every file operation of this thread fails
/// before touching the disk, which leaves the store exactly as a SIGKILL at that instant would
/// (the store keeps no state in memory, and any clean-up the failing call attempts fails too).
#[cfg(test)]
mod crash {
    use std::cell::Cell;
    use std::io;

    thread_local!(static BUDGET: Cell<Option<u32>> = const { Cell::new(None) });

    /// Crash after `steps` more file operations (`None`: never).
    pub(crate) fn crash_after(steps: Option<u32>) {
        BUDGET.with(|b| b.set(steps));
    }

    pub(crate) fn crash_point() -> io::Result<()> {
        BUDGET.with(|b| match b.get() {
            Some(0) => Err(io::Error::other("simulated crash")),
            Some(n) => {
                b.set(Some(n - 1));
                Ok(())
            }
            None => Ok(()),
        })
    }
}
