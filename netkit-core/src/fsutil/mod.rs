//! Small file primitives shared by the stores that keep state on disk (IPAM, firewall): whole
//! files replaced atomically with recycled inodes ([`files`]), `flock` locks, reads where
//! "missing" is an answer, a stable hash.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use nix::fcntl::{Flock, FlockArg};

pub(crate) mod dir;
pub(crate) mod files;

/// A name no other writer uses: `<dir>/<pid>.<token>.<counter>`. The random per-process token
/// keeps names apart across PID namespaces (two containers' plugins can share a pid).
pub(crate) fn unique_name(dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static TOKEN: OnceLock<u64> = OnceLock::new();
    let token = TOKEN.get_or_init(random_u64);
    dir.join(format!(
        "{}.{token:016x}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// 64 random bits from the kernel (falling back to time and address bits if getrandom fails).
fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most `buf.len()` bytes into the valid buffer.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 8 {
        return u64::from_ne_bytes(buf);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (&buf as *const _ as u64).rotate_left(32)
}

/// Read a whole file as text; `None` when it does not exist.
pub(crate) fn read(path: &Path) -> io::Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// An exclusive `flock`, released on drop (or when the process dies). Each call opens the file
/// anew, so threads of one process exclude each other as processes do.
pub(crate) struct Lock(#[allow(dead_code)] Flock<File>);

/// Take an exclusive lock on `path`, creating the file if needed.
pub(crate) fn lock(path: &Path) -> io::Result<Lock> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    loop {
        match Flock::lock(f, FlockArg::LockExclusive) {
            Ok(l) => return Ok(Lock(l)),
            // A signal interrupted the wait: wait again.
            Err((back, nix::errno::Errno::EINTR)) => f = back,
            Err((_, e)) => return Err(io::Error::from(e)),
        }
    }
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
