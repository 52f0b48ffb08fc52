//! Small file primitives shared by the stores that keep state on disk (IPAM, leases, objects,
//! firewall): directories held as descriptors and never a symbolic link followed ([`dir`]),
//! whole files replaced atomically with recycled inodes ([`files`]) or by path under a lock
//! file ([`paths`]), bounded `flock` waits, quarantine of damaged records, a stable hash, and
//! waiting for a directory to change ([`watch`]).

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, RenameFlags};

pub(crate) mod dir;
pub(crate) mod files;
pub(crate) mod paths;
pub(crate) mod watch;

use dir::Dir;

/// How long a store waits for a lock by default before giving up with an error.
pub(crate) const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// The first pause between two tries of a taken lock; it doubles up to [`LOCK_PAUSE_MAX`].
const LOCK_PAUSE_MIN: Duration = Duration::from_micros(100);
const LOCK_PAUSE_MAX: Duration = Duration::from_millis(5);

/// A name no other writer uses: `<pid>.<token>.<counter>`. The random per-process token keeps
/// names apart across PID namespaces (two containers' plugins can share a pid).
pub(crate) fn unique_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static TOKEN: OnceLock<u64> = OnceLock::new();
    let token = TOKEN.get_or_init(crate::random::u64);
    format!(
        "{}.{token:016x}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

thread_local! {
    /// The lock files (device, inode) this thread holds: taking one again nests.
    static HELD: RefCell<Vec<(u64, u64)>> = const { RefCell::new(Vec::new()) };
}

/// An exclusive `flock`, released on drop (or when the process dies). Each call opens the file
/// anew, so threads of one process exclude each other as processes do; a thread that already
/// holds the lock gets a nested guard instead of waiting for itself. Not `Send`: the guard
/// belongs to the thread that took it.
pub(crate) struct Lock {
    flock: Option<Flock<File>>,
    key: (u64, u64),
    _thread: PhantomData<*const ()>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.flock.is_some() {
            HELD.with(|h| {
                let mut h = h.borrow_mut();
                if let Some(i) = h.iter().rposition(|k| *k == self.key) {
                    h.swap_remove(i);
                }
            });
        }
    }
}

/// Take an exclusive lock on `dir/name`, creating the file (0600) if needed, waiting at most
/// `timeout`: the lock is tried without blocking (`LOCK_NB`) and tried again after a pause
/// that starts at 100 µs and doubles up to 5 ms. After `timeout` the error is
/// [`io::ErrorKind::TimedOut`], naming the file and the wait.
pub(crate) fn lock(dir: &Dir, name: &str, timeout: Duration) -> io::Result<Lock> {
    let mut f = dir.open_or_create(name)?;
    let st = nix::sys::stat::fstat(&f).map_err(io::Error::from)?;
    let key = (st.st_dev, st.st_ino);
    if HELD.with(|h| h.borrow().contains(&key)) {
        return Ok(Lock {
            flock: None,
            key,
            _thread: PhantomData,
        });
    }
    let deadline = Instant::now() + timeout;
    let mut pause = LOCK_PAUSE_MIN;
    loop {
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => {
                HELD.with(|h| h.borrow_mut().push(key));
                return Ok(Lock {
                    flock: Some(l),
                    key,
                    _thread: PhantomData,
                });
            }
            Err((back, Errno::EWOULDBLOCK | Errno::EINTR)) => {
                f = back;
                let now = Instant::now();
                if now >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "lock {} is still held by another process or thread after waiting {timeout:?}",
                            dir.join(name).display()
                        ),
                    ));
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(LOCK_PAUSE_MAX);
            }
            Err((_, e)) => return Err(io::Error::from(e)),
        }
    }
}

thread_local! {
    /// Where [`quarantine`] reports what it moved, while a [`Collector`] of this thread lives.
    static COLLECTED: RefCell<Option<Vec<PathBuf>>> = const { RefCell::new(None) };
}

/// Collects the paths this thread quarantines while it lives (for reports such as GC's).
pub(crate) struct Collector(PhantomData<*const ()>);

impl Collector {
    /// Start collecting.
    pub(crate) fn start() -> Self {
        COLLECTED.with(|c| *c.borrow_mut() = Some(Vec::new()));
        Collector(PhantomData)
    }

    /// What was quarantined since the start.
    pub(crate) fn take(&self) -> Vec<PathBuf> {
        COLLECTED.with(|c| c.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        COLLECTED.with(|c| *c.borrow_mut() = None);
    }
}

/// A file moved into a store's `quarantine/`.
#[derive(Debug)]
pub(crate) struct Quarantined {
    dir: Dir,
    name: OsString,
}

impl Quarantined {
    /// Where it is now.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// Its content (at most `max` bytes; more is an error).
    pub(crate) fn read(&self, max: u64) -> io::Result<Vec<u8>> {
        Ok(self.dir.read(&self.name, max)?.unwrap_or_default())
    }

    /// Put it back at its name in `to` unless something is there by now (then it stays here).
    pub(crate) fn restore(self, to: &Dir) -> io::Result<bool> {
        match self.dir.rename_noreplace(&self.name, to, &self.name) {
            Ok(()) => {
                let path = self.path();
                COLLECTED.with(|c| {
                    if let Some(v) = c.borrow_mut().as_mut() {
                        v.retain(|p| *p != path);
                    }
                });
                Ok(true)
            }
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// Move `from/name` into `root/quarantine/<unique>.<label>/<name>` (the original name kept;
/// `label` names the directory it came from, `/` written as `+`): `None` when it is gone
/// already. Directories are 0700. The caller holds whatever lock keeps writers off the name.
pub(crate) fn quarantine(root: &Dir, from: &Dir, label: &str, name: &OsStr) -> io::Result<Option<Quarantined>> {
    let q = root.sub("quarantine", true)?;
    let label: String = label.replace('/', "+").chars().take(160).collect();
    let sub_name = format!("{}.{label}", unique_token());
    q.mkdir(&sub_name).map_err(io::Error::from)?;
    let sub = q.sub(&sub_name, false)?;
    // `sub` is new and only ours: a plain rename replaces nothing.
    match from.rename(name, &sub, name, RenameFlags::empty()) {
        Ok(()) => {}
        Err(e) => {
            let _ = q.rmdir(&sub_name);
            return match e {
                Errno::ENOENT => Ok(None),
                e => Err(io::Error::from(e)),
            };
        }
    }
    let moved = Quarantined {
        dir: sub,
        name: name.to_os_string(),
    };
    let path = moved.path();
    COLLECTED.with(|c| {
        if let Some(v) = c.borrow_mut().as_mut() {
            v.push(path);
        }
    });
    Ok(Some(moved))
}

/// FNV-1a, 64 bit: cheap, stable across builds and processes (unlike std's `DefaultHasher`), so
/// names and checksums derived from it on disk or in the kernel stay the same for every binary.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Test-only: the log lines this thread wrote (a process-wide logger that keeps each thread's
/// lines apart, so tests running in parallel see only their own).
#[cfg(test)]
pub(crate) mod testlog {
    use std::cell::RefCell;

    thread_local!(static LINES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) });

    struct ThreadLog;

    impl log::Log for ThreadLog {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            LINES.with(|l| l.borrow_mut().push(format!("{} {}", record.level(), record.args())));
        }
        fn flush(&self) {}
    }

    /// Install the logger (once per process) and forget this thread's earlier lines.
    pub(crate) fn start() {
        static LOGGER: ThreadLog = ThreadLog;
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Trace);
        LINES.with(|l| l.borrow_mut().clear());
    }

    /// The lines this thread wrote since [`start`].
    pub(crate) fn lines() -> Vec<String> {
        LINES.with(|l| l.borrow().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_waits_are_bounded_and_nest_on_one_thread() {
        let d = tempfile::tempdir().unwrap();
        let root = Dir::root(d.path(), false).unwrap();
        let held = lock(&root, "lock", DEFAULT_LOCK_TIMEOUT).unwrap();
        // The same thread again: nested, no wait.
        let nested = lock(&root, "lock", Duration::from_millis(1)).unwrap();
        drop(nested);
        let path = root.join("lock");
        let waiter = std::thread::spawn(move || {
            let root = Dir::root(path.parent().unwrap(), false).unwrap();
            let start = Instant::now();
            let err = lock(&root, "lock", Duration::from_millis(50))
                .err()
                .expect("the lock is held");
            (err, start.elapsed())
        });
        let (err, waited) = waiter.join().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let msg = err.to_string();
        assert!(
            msg.contains(&root.join("lock").display().to_string()) && msg.contains("50ms"),
            "{msg}"
        );
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        drop(held);
        let path = root.join("lock");
        std::thread::spawn(move || {
            let root = Dir::root(path.parent().unwrap(), false).unwrap();
            lock(&root, "lock", Duration::from_millis(50)).map(drop)
        })
        .join()
        .unwrap()
        .expect("free again");
    }
}

/// Write `text` to `path` atomically for readers: a temporary file next to it, renamed over it
/// (0644 under the usual umask; the parent directories are created). For status files that
/// other processes read while they change; not durable across a power cut (no fsync).
pub(crate) fn write_replacing(path: &Path, text: &str) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map_or_else(|| "status".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
