//! Waiting for a directory's entries to change (inotify), on tokio: an agent that follows a
//! store wakes when a file comes or goes, not on a timer.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

/// The inotify descriptor, as tokio registers it.
struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Entries created, removed or renamed in one directory (not its subdirectories).
pub struct DirWatch {
    fd: AsyncFd<Fd>,
    dir: PathBuf,
}

impl std::fmt::Debug for DirWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatch")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DirWatch {
    /// Watch `dir` (it must exist). Needs a tokio runtime with I/O enabled.
    pub fn new(dir: &Path) -> io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        inotify
            .add_watch(dir, mask)
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("watch {}: {e}", dir.display())))?;
        // SAFETY: the descriptor is owned by the `Inotify` moved into the AsyncFd, so it stays
        // open exactly as long as the registration (both end when the AsyncFd drops).
        let fd = unsafe { AsyncFd::register(Fd(inotify)) }.map_err(|e| e.into_parts().1)?;
        Ok(Self {
            fd,
            dir: dir.to_path_buf(),
        })
    }

    /// Wait until something changed since the last call, then drain every pending event (a
    /// burst of changes is one wake-up). An overflow of the kernel's queue counts as a change.
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.get_inner().0.read_events() {
                Ok(events) if !events.is_empty() => {
                    // Drain what else is queued: one wake-up per burst.
                    while let Ok(more) = ready.get_inner().0.read_events() {
                        if more.is_empty() {
                            break;
                        }
                    }
                    ready.clear_ready();
                    return Ok(());
                }
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_on_create_and_remove_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DirWatch::new(dir.path()).unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(50), w.changed()).await;
        assert!(quiet.is_err(), "nothing changed yet");
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        std::fs::write(dir.path().join("b"), b"x").unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("a create wakes the watch")
            .unwrap();
        std::fs::remove_file(dir.path().join("a")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("a removal wakes the watch")
            .unwrap();
        assert!(DirWatch::new(&dir.path().join("missing")).is_err());
    }
}
