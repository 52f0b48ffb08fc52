//! Network namespaces: named ones compatible with `ip netns`, by path, by pid,
//! the current one; and running code inside one without moving a tokio worker.
//!
//! A [`NetNs`] is an open file descriptor on a namespace (`/run/netns/NAME`,
//! `/proc/PID/ns/net`, …) plus a description used in error messages. It stays
//! valid even after the name is deleted, as long as the value lives.
//!
//! Entering a namespace is a per-thread property (`setns(2)`), so netkit never
//! calls `setns` on the caller's thread. Two kinds of work run inside a namespace:
//!
//! * **your code**: [`NetNs::run`], [`NetNs::exec`] and [`NetNs::run_async`] run it on a fresh
//!   OS thread that enters the namespace and ends with the work (it may block for as long as
//!   it likes, and leaves nothing behind on a shared thread);
//! * **netkit's own short jobs** (opening a netlink or event socket in a namespace, a sysctl,
//!   a tun ioctl, reading a namespace cookie): run right on the caller's thread when that
//!   thread is already in the namespace, else on one of netkit's long-lived helper threads (one per core) that enters the
//!   namespace, runs the job and goes back to its home (the process's namespace) before the
//!   next one. libnftables transactions have a thread of their own.
//!
//! A [`crate::Handle`] keeps its namespace open and does all its work there, from whatever
//! thread uses it; so does a [`std::process::Command`] made by [`NetNs::command`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use netkit_core::NetNs;
//! let ns = NetNs::create("blue")?;            // like `ip netns add blue`
//! let lo_mtu = ns.run(|| std::fs::read_to_string("/sys/class/net/lo/mtu"))??;
//! let handle = ns.handle().await?;             // netlink socket inside "blue"
//! # drop((lo_mtu, handle));
//! NetNs::delete("blue")?;                      // idempotent
//! # Ok(()) }
//! ```

mod exec;
mod fds;
mod named;
pub(crate) mod worker;

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use fds::reserve_descriptors;
pub use named::{NetNsGuard, NETNS_RUN_DIR};

/// Errors from namespace operations. Each names the operation and the namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A system call failed; `source` keeps the errno.
    #[error("{op} netns {netns}: {cause}")]
    Io {
        /// What was being done ("create", "open", "enter", …).
        op: &'static str,
        /// The namespace's name or path.
        netns: String,
        /// The underlying failure with its errno.
        cause: std::io::Error,
    },
    /// `create` found a namespace with that name already.
    #[error("create netns {0}: a namespace with this name already exists")]
    Exists(String),
    /// The name cannot be used as a file name under the netns run directory.
    #[error("invalid netns name {0:?}: must be 1-255 bytes, no '/', not '.' or '..'")]
    InvalidName(String),
    /// The work run inside the namespace panicked.
    #[error("work running inside netns {0} panicked")]
    Panicked(String),
}

impl NetnsError {
    pub(crate) fn io(op: &'static str, netns: impl fmt::Display, source: impl Into<std::io::Error>) -> Self {
        Self::Io {
            op,
            netns: netns.to_string(),
            cause: source.into(),
        }
    }

    /// The errno behind this error, when it came from a system call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            // A file that is no network namespace (see `NetNs::open_path`).
            Self::Io { cause: source, .. } if source.kind() == std::io::ErrorKind::InvalidInput => {
                Some(source.raw_os_error().unwrap_or(libc::EINVAL))
            }
            Self::Io { cause: source, .. } => source.raw_os_error(),
            Self::Exists(_) => Some(libc::EEXIST),
            _ => None,
        }
    }
}

/// An open network namespace.
///
/// Cheap to clone (the descriptor is shared). Two values refer to the same
/// namespace when [`NetNs::id`] is equal.
#[derive(Clone)]
pub struct NetNs {
    inner: Arc<Inner>,
}

struct Inner {
    fd: OwnedFd,
    /// `Some(name)` for namespaces opened or created by name.
    name: Option<String>,
    path: PathBuf,
}

/// Identity of a namespace: the (device, inode) pair of its nsfs file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetnsId {
    /// Device number of the nsfs file.
    pub dev: u64,
    /// Inode number, the same number `ip netns identify` and `/proc/PID/ns/net` show.
    pub ino: u64,
}

impl NetNs {
    fn from_parts(fd: OwnedFd, name: Option<String>, path: PathBuf) -> Self {
        Self {
            inner: Arc::new(Inner { fd, name, path }),
        }
    }

    /// Open the namespace at `path` (a bind mount such as `/run/netns/x`, or
    /// `/proc/PID/ns/net`). Anything else at `path` (a regular file, a FIFO, another kind of
    /// namespace) is refused with `EINVAL` and never waited on.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self, NetnsError> {
        let path = path.as_ref();
        let fd = open_ns_file(path).map_err(|e| NetnsError::io("open", path.display(), e))?;
        Ok(Self::from_parts(fd, None, path.to_path_buf()))
    }

    /// Open the namespace of process `pid`.
    pub fn from_pid(pid: u32) -> Result<Self, NetnsError> {
        Self::open_path(format!("/proc/{pid}/ns/net"))
    }

    /// The namespace of the calling thread (at the time of the call: the value keeps it open,
    /// wherever it is used later). Shown as `(current)` in messages.
    pub fn current() -> Result<Self, NetnsError> {
        Self::open_path(CURRENT)
    }

    /// The name this namespace was opened or created by, if any.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Identity (device and inode) of the namespace.
    pub fn id(&self) -> Result<NetnsId, NetnsError> {
        let st = nix::sys::stat::fstat(self.as_fd()).map_err(|e| NetnsError::io("stat", self, e))?;
        Ok(NetnsId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// Open a netlink [`crate::Handle`] whose socket lives inside this namespace.
    pub async fn handle(&self) -> Result<crate::Handle, crate::NetlinkError> {
        crate::Handle::new(self).await
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.fd.as_raw_fd()
    }
}

/// Where [`NetNs::current`] opens the calling thread's namespace.
const CURRENT: &str = "/proc/thread-self/ns/net";

impl fmt::Display for NetNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.name {
            Some(n) => write!(f, "{n:?}"),
            None if self.inner.path.as_os_str() == CURRENT => f.write_str("(current)"),
            None => write!(f, "{}", self.inner.path.display()),
        }
    }
}

impl fmt::Debug for NetNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetNs")
            .field("name", &self.inner.name)
            .field("path", &self.inner.path)
            .field("fd", &self.inner.fd.as_raw_fd())
            .finish()
    }
}

/// Open `path` and check it is a network namespace. `O_NONBLOCK`: opening a FIFO (or another
/// special file) planted where a namespace should be must fail the check, not hang the caller.
fn open_ns_file(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let fd: OwnedFd = file.into();
    // NS_GET_NSTYPE (_IO(0xb7, 0x3), Linux 4.11): the namespace type of an nsfs file; any
    // other file answers ENOTTY (or EINVAL).
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: an ioctl without argument on a descriptor we own.
    let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind != libc::CLONE_NEWNET {
        let why = if kind < 0 {
            std::io::Error::last_os_error().to_string()
        } else {
            format!("namespace type {kind:#x}")
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a network namespace ({why})"),
        ));
    }
    Ok(fd)
}
