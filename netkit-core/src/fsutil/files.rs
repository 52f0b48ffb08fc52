//! The few file operations record stores (IPAM, firewall state) are built from, each atomic on
//! its own:
//! a whole file appears at its name or nothing does (write to `tmp/`, then rename), and an
//! address is claimed by one rename that refuses to replace (`RENAME_NOREPLACE`, or `link(2)` on
//! file systems without it). A process killed between two of these leaves only whole files.
//!
//! Every operation works relative to directory descriptors ([`Dir`]) and never follows a
//! symbolic link (see [`super::dir`]); files are created 0600.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::RenameFlags;
use nix::sys::stat;
use nix::sys::time::TimeSpec;

pub(crate) use super::dir::Dir;
pub(crate) use super::{lock, Lock};

/// Where a store's scratch files come from and go to.
///
/// Creating an inode is the dearest step of a record write (about 1 ms on some virtual disks,
/// against tens of µs for a rename), so records the store lets go of are not unlinked but
/// renamed into `spare/`, and new scratch files are taken from there first. Taking a spare is
/// itself a rename (to a name in `tmp/` only this process uses), so two processes never get
/// the same one; the taken file's times are set to now at once, so a scratch cleaner (which
/// removes `tmp/` files by age) does not take a long-released spare for an abandoned scratch
/// file. A spare's old content is overwritten before it is renamed anywhere visible.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    pub(crate) tmp: Arc<Dir>,
    pub(crate) spare: Arc<Dir>,
    pub(crate) sync: bool,
}

/// How many directory entries of `spare/` a writer tries before creating a new file.
const SPARE_TRIES: usize = 4;
/// How often a write starts over when a scratch cleaner removed its scratch file under it.
const SCRATCH_TRIES: usize = 3;

/// A scratch file name only this process uses: `<pid>.<token>.<counter>`.
pub(crate) fn tmp_name() -> String {
    super::unique_token()
}

impl Files {
    /// A scratch file in `tmp/` holding exactly `content` (fsynced when `sync`); returns its
    /// name in `tmp/`.
    pub(crate) fn scratch(&self, content: &str) -> io::Result<String> {
        crash_point()?;
        let name = tmp_name();
        let mut f = match self.take_spare(&name)? {
            Some(f) => f,
            None => self.tmp.create_new(&name)?,
        };
        // Write, then cut to length: cheaper than O_TRUNC, which frees the blocks first.
        f.write_all(content.as_bytes())?;
        f.set_len(content.len() as u64)?;
        if self.sync {
            f.sync_all()?;
        }
        Ok(name)
    }

    /// Move one spare file to `tmp/<to>` and open it: `None` when there is none to take. Reads
    /// the spare directory a few entries at a time (it may hold thousands). Whatever is not a
    /// regular file (a link planted there, say) is removed, never opened through.
    fn take_spare(&self, to: &str) -> io::Result<Option<File>> {
        let (mut tries, mut taken) = (0, Ok(None));
        self.spare.each_entry(|name| {
            tries += 1;
            // NOREPLACE: never clobber a file at `to`, whoever put it there.
            match self.spare.rename(name, &self.tmp, to, RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => match self.tmp.open_write(to) {
                    Ok(f) => {
                        // Fresh times before anything else: see the type's docs.
                        taken = stat::futimens(&f, &TimeSpec::UTIME_NOW, &TimeSpec::UTIME_NOW)
                            .map(|()| Some(f))
                            .map_err(io::Error::from);
                        true
                    }
                    // Not a regular file: drop the entry itself and go on.
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        let _ = self.tmp.unlink(to);
                        tries >= SPARE_TRIES
                    }
                    // A scratch cleaner removed it between the rename and the open.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => tries >= SPARE_TRIES,
                    Err(e) => {
                        taken = Err(e);
                        true
                    }
                },
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

    /// Write a scratch file and move it to `dir/name` with `flags`; `Ok(false)` when the move
    /// was refused with `EEXIST` (the scratch file is still there, its name returned in `Err`
    /// of the inner result). Starts over when a scratch cleaner removed the scratch file.
    fn place(
        &self,
        dir: &Dir,
        name: &str,
        content: &str,
        flags: RenameFlags,
    ) -> io::Result<Result<(), (String, Errno)>> {
        let mut tries = 0;
        loop {
            let scratch = self.scratch(content)?;
            crash_point()?;
            match self.tmp.rename(&scratch, dir, name, flags) {
                Ok(()) => return Ok(Ok(())),
                Err(Errno::ENOENT) if tries + 1 < SCRATCH_TRIES && self.tmp.stat(&scratch)?.is_none() => {
                    tries += 1;
                }
                Err(e) => return Ok(Err((scratch, e))),
            }
        }
    }

    /// Replace `dir/name` by `content` atomically (a link at that name is replaced, not
    /// followed).
    pub(crate) fn replace(&self, dir: &Dir, name: &str, content: &str) -> io::Result<()> {
        match self.place(dir, name, content, RenameFlags::empty())? {
            Ok(()) => sync_dir(dir, self.sync),
            Err((scratch, e)) => {
                let _ = self.tmp.unlink(&scratch);
                Err(io::Error::from(e))
            }
        }
    }

    /// Create `dir/name` holding `content` unless it exists: `Ok(false)` when it did.
    pub(crate) fn create_exclusive(&self, dir: &Dir, name: &str, content: &str) -> io::Result<bool> {
        let (scratch, moved) = match self.place(dir, name, content, RenameFlags::RENAME_NOREPLACE)? {
            Ok(()) => return sync_dir(dir, self.sync).map(|()| true),
            Err((scratch, Errno::EEXIST)) => (scratch, false),
            // File systems without RENAME_NOREPLACE: link(2) also refuses to replace.
            Err((scratch, Errno::EINVAL | Errno::ENOSYS)) => match self.tmp.link(&scratch, dir, name) {
                Ok(()) => (scratch, true),
                Err(Errno::EEXIST) => (scratch, false),
                Err(e) => {
                    let _ = self.tmp.unlink(&scratch);
                    return Err(io::Error::from(e));
                }
            },
            Err((scratch, e)) => {
                let _ = self.tmp.unlink(&scratch);
                return Err(io::Error::from(e));
            }
        };
        if moved {
            // link(2) left a second name: drop the scratch one (the inode is now the record).
            self.tmp.unlink(&scratch).map_err(io::Error::from)?;
            return sync_dir(dir, self.sync).map(|()| true);
        }
        self.retire(&self.tmp, &scratch)?;
        Ok(false)
    }

    /// Take `dir/name` out of its directory into `spare/`; "already gone" is success
    /// (`Ok(false)`).
    pub(crate) fn retire(&self, dir: &Dir, name: &str) -> io::Result<bool> {
        crash_point()?;
        // A name only this process uses: a plain rename replaces nothing.
        match dir.rename(name, &self.spare, tmp_name(), RenameFlags::empty()) {
            Ok(()) => sync_dir(dir, self.sync).map(|()| true),
            // Gone already, unless it is `spare/` that is missing.
            Err(Errno::ENOENT) if dir.stat(name)?.is_none() => Ok(false),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Overwrite `dir/name` in place (created 0600 if missing). Not atomic: only for hints
    /// that may be lost. Anything at the name that is not a regular file (a planted link) is
    /// replaced by a rename instead, never written through.
    pub(crate) fn overwrite(&self, dir: &Dir, name: &str, content: &str) -> io::Result<()> {
        crash_point()?;
        let mut f = match dir.open_or_create(name) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return self.replace(dir, name, content),
            Err(e) => return Err(e),
        };
        f.write_all(content.as_bytes())?;
        f.set_len(content.len() as u64)?;
        if self.sync {
            f.sync_all()?;
        }
        Ok(())
    }
}

/// Remove `dir/name` (a link itself, never its target); "already gone" is success
/// (`Ok(false)`).
pub(crate) fn remove(dir: &Dir, name: &str, sync: bool) -> io::Result<bool> {
    crash_point()?;
    match dir.unlink(name) {
        Ok(()) => sync_dir(dir, sync).map(|()| true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// True when `dir/name` exists (one `fstatat`, no read; a link counts, unfollowed).
pub(crate) fn exists(dir: &Dir, name: &str) -> io::Result<bool> {
    Ok(dir.stat(name)?.is_some())
}

fn sync_dir(dir: &Dir, sync: bool) -> io::Result<()> {
    if sync {
        dir.sync()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::time::{Duration, SystemTime};

    fn files(root: &Dir) -> Files {
        Files {
            tmp: Arc::new(root.sub("tmp", true).unwrap()),
            spare: Arc::new(root.sub("spare", true).unwrap()),
            sync: false,
        }
    }

    #[test]
    fn a_taken_spare_is_touched() {
        let d = tempfile::tempdir().unwrap();
        let root = Dir::root(d.path(), false).unwrap();
        let files = files(&root);
        let spare = files.spare.join("old");
        std::fs::write(&spare, "released record").unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&spare)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        assert!(files.take_spare("mine").unwrap().is_some());
        assert!(!spare.exists());
        // Right after the take, before anything is written: a scratch cleaner looking now
        // sees a fresh file.
        let age = std::fs::metadata(files.tmp.join("mine"))
            .unwrap()
            .modified()
            .unwrap()
            .elapsed()
            .unwrap_or_default();
        assert!(age < Duration::from_secs(5), "{age:?}");
    }

    #[test]
    fn overwrite_never_truncates_through_a_planted_link() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "precious, and longer than the hint\n").unwrap();
        let root = Dir::root(&d.path().join("store"), true).unwrap();
        let files = files(&root);
        symlink(&victim, root.join("last.0")).unwrap();
        files.overwrite(&root, "last.0", "10.0.0.2\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "precious, and longer than the hint\n"
        );
        // The link was replaced by a regular file holding the hint.
        assert_eq!(root.read("last.0", 64).unwrap().unwrap(), b"10.0.0.2\n");
        files.overwrite(&root, "last.0", "10.0.0.3\n").unwrap();
        assert_eq!(root.read("last.0", 64).unwrap().unwrap(), b"10.0.0.3\n");

        // Links in spare/ are dropped, not written through; records replace links in place.
        for i in 0..3 {
            symlink(&victim, files.spare.join(format!("planted.{i}"))).unwrap();
        }
        symlink(&victim, root.join("record")).unwrap();
        files.replace(&root, "record", "content\n").unwrap();
        assert!(!files.create_exclusive(&root, "record", "other\n").unwrap());
        assert_eq!(root.read("record", 64).unwrap().unwrap(), b"content\n");
        assert!(files.retire(&root, "record").unwrap());
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "precious, and longer than the hint\n"
        );
        // What is left in spare/ are regular files: the retired record and the refused
        // scratch file of `create_exclusive`.
        let spares = files.spare.names().unwrap();
        assert_eq!(spares.len(), 2, "{spares:?}");
        for n in spares {
            assert!(super::super::dir::is_regular(&files.spare.stat(&n).unwrap().unwrap()));
        }
    }
}
