//! The few file operations record stores (IPAM, firewall state) are built from, each atomic on
//! its own:
//! a whole file appears at its name or nothing does (write to `tmp/`, then rename), and an
//! address is claimed by one rename that refuses to replace (`RENAME_NOREPLACE`, or `link(2)` on
//! file systems without it). A process killed between two of these leaves only whole files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

/// A unique scratch file name in `tmp`.
pub(crate) use super::unique_name as tmp_name;
pub(crate) use super::{lock, read, Lock};

/// Where a store's scratch files come from and go to.
///
/// Creating an inode is the dearest step of a record write (about 1 ms on some virtual disks,
/// against tens of µs for a rename), so records the store lets go of are not unlinked but
/// renamed into `spare/`, and new scratch files are taken from there first. Taking a spare is
/// itself a rename (to a name in `tmp/` only this process uses), so two processes never get
/// the same one. A spare's old content is overwritten before it is renamed anywhere visible.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    pub(crate) tmp: PathBuf,
    pub(crate) spare: PathBuf,
    pub(crate) sync: bool,
}

/// How many directory entries of `spare/` a writer tries before creating a new file.
const SPARE_TRIES: usize = 4;

impl Files {
    /// A scratch file in `tmp/` holding exactly `content` (fsynced when `sync`).
    pub(crate) fn scratch(&self, content: &str) -> io::Result<PathBuf> {
        crash_point()?;
        let path = tmp_name(&self.tmp);
        let mut f = match self.take_spare(&path)? {
            true => OpenOptions::new().write(true).open(&path)?,
            false => OpenOptions::new().write(true).create_new(true).open(&path)?,
        };
        // Write, then cut to length: cheaper than O_TRUNC, which frees the blocks first.
        f.write_all(content.as_bytes())?;
        f.set_len(content.len() as u64)?;
        if self.sync {
            f.sync_all()?;
        }
        Ok(path)
    }

    /// Move one spare file to `to`: `false` when there is none to take. Reads the spare
    /// directory a few entries at a time (it may hold thousands).
    fn take_spare(&self, to: &Path) -> io::Result<bool> {
        let (mut tries, mut taken) = (0, Ok(false));
        super::dir::each_entry(&self.spare, |name| {
            tries += 1;
            // NOREPLACE: never clobber a file at `to`, whoever put it there.
            match renameat2(
                AT_FDCWD,
                &self.spare.join(name),
                AT_FDCWD,
                to,
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => {
                    taken = Ok(true);
                    true
                }
                // Another process took it first.
                Err(Errno::ENOENT) => tries >= SPARE_TRIES,
                Err(e) => {
                    taken = Err(io::Error::from(e));
                    true
                }
            }
        })?;
        taken
    }

    /// Replace `dst` by `content` atomically.
    pub(crate) fn replace(&self, dst: &Path, content: &str) -> io::Result<()> {
        let scratch = self.scratch(content)?;
        crash_point()?;
        fs::rename(&scratch, dst).inspect_err(|_| {
            let _ = fs::remove_file(&scratch);
        })?;
        sync_parent(dst, self.sync)
    }

    /// Create `dst` holding `content` unless it exists: `Ok(false)` when it did.
    pub(crate) fn create_exclusive(&self, dst: &Path, content: &str) -> io::Result<bool> {
        let scratch = self.scratch(content)?;
        crash_point()?;
        let moved = match renameat2(AT_FDCWD, &scratch, AT_FDCWD, dst, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return sync_parent(dst, self.sync).map(|()| true),
            Err(Errno::EEXIST) => false,
            // File systems without RENAME_NOREPLACE: link(2) also refuses to replace.
            Err(Errno::EINVAL | Errno::ENOSYS) => match fs::hard_link(&scratch, dst) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(io::Error::from(e)),
        };
        if moved {
            // link(2) left a second name: drop the scratch one (the inode is now the record).
            fs::remove_file(&scratch)?;
            return sync_parent(dst, self.sync).map(|()| true);
        }
        self.retire(&scratch)?;
        Ok(false)
    }

    /// Take `path` out of its directory into `spare/`; "already gone" is success (`Ok(false)`).
    pub(crate) fn retire(&self, path: &Path) -> io::Result<bool> {
        crash_point()?;
        match fs::rename(path, tmp_name(&self.spare)) {
            Ok(()) => sync_parent(path, self.sync).map(|()| true),
            // Gone already, unless it is `spare/` that is missing.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !path.exists() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Overwrite `path` in place (created if missing). Not atomic: only for hints that may be lost.
pub(crate) fn overwrite(path: &Path, content: &str, sync: bool) -> io::Result<()> {
    crash_point()?;
    let mut f = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    f.write_all(content.as_bytes())?;
    f.set_len(content.len() as u64)?;
    if sync {
        f.sync_all()?;
    }
    Ok(())
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

/// True when `path` exists (one `stat`, no read).
pub(crate) fn exists(path: &Path) -> io::Result<bool> {
    path.try_exists()
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
