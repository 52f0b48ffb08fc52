//! Detached processes, for kernel waits a short-lived caller should not sit through.
//!
//! Some kernel operations make the calling thread wait after the work that matters is done:
//! deleting a device waits for an RCU barrier before the kernel frees it (15–25 ms on a busy
//! machine), and closing an nf_tables netlink socket waits for nf_tables' deferred cleanup of
//! earlier transactions. A CNI plugin's caller waits for the plugin to exit, so these waits end
//! up in every DEL. netkit hands them to a detached process: a grandchild (double fork; the
//! intermediate child exits at once and is reaped by the caller), which belongs to the caller's
//! reaper (init of the PID namespace, or the nearest ancestor that is a child subreaper) and
//! outlives the caller by that long.
//!
//! A detached process does one of two fixed jobs, nothing else:
//! * send one netlink request and report the kernel's answer (what
//!   [`Handle::link_del_detached`](crate::Handle::link_del_detached) uses);
//! * hold one descriptor until the caller has closed its own copy, then close it (what the
//!   nf_tables driver uses with `FirewallOptions::detached_close`).
//!
//! Both fork stages are raw `clone` system calls with fork semantics, so no `fork(3)` atfork
//! handler runs. Everything the children touch is prepared before the fork; after it they only
//! make async-signal-safe system calls. The detached process keeps the descriptors its job
//! needs and closes every other one (stdio included), so locks, pipes and sockets of the caller
//! do not live on in it.
//!
//! **Bounded waits.** The caller's wait for the intermediate child is bounded by construction
//! (it forks and exits). A netlink job waits at most 30 s for the kernel's answer after its
//! request went out (`SO_RCVTIMEO`) and then reports `ETIMEDOUT`; a held descriptor is closed
//! after 60 s even if the caller never signals. What cannot be bounded: the kernel does the
//! requested work inside the sending thread's `sendmsg`, so a kernel that hangs there (in
//! `unregister_netdevice`, say) keeps the detached process stuck, as it would any caller that
//! sent the request itself. The caller's own waits have deadlines (see
//! [`Handle::link_del_detached`](crate::Handle::link_del_detached)).

mod fork;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use fork::Job;

/// How long a netlink job waits for the kernel's answer once its request is sent.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a held descriptor is kept at most when the caller does not signal.
pub(crate) const HOLD_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a job was not handed to a detached process. The caller does the work itself.
#[derive(Debug)]
pub(crate) enum NotDetached {
    /// The fork or its preparation failed.
    Failed(io::Error),
}

impl std::fmt::Display for NotDetached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(e) => write!(f, "starting a detached process: {e}"),
        }
    }
}

impl std::error::Error for NotDetached {}

impl From<io::Error> for NotDetached {
    fn from(e: io::Error) -> Self {
        Self::Failed(e)
    }
}

impl From<nix::errno::Errno> for NotDetached {
    fn from(e: nix::errno::Errno) -> Self {
        Self::Failed(e.into())
    }
}

/// One netlink request for a detached process to send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NetlinkRequest<'a> {
    /// The whole message (header included), as the kernel is to receive it. It should ask for an
    /// ack (`NLM_F_ACK`), or the job waits `recv_timeout` and reports `ETIMEDOUT`.
    pub(crate) bytes: &'a [u8],
    /// The netlink protocol: `libc::NETLINK_ROUTE`, …
    pub(crate) protocol: libc::c_int,
    /// The network namespace to send it in (`setns` first); `None`: the caller's.
    pub(crate) netns: Option<BorrowedFd<'a>>,
    /// How long to wait for the answer once the request is sent ([`RECV_TIMEOUT`]).
    pub(crate) recv_timeout: Duration,
}

/// The answer a detached process will give: the kernel's errno for its request.
#[derive(Debug)]
pub(crate) struct Answer {
    rx: OwnedFd,
    pid: i32,
}

impl Answer {
    /// The detached process's pid, for messages.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Wait for the answer: the kernel's errno (0: done; `ETIMEDOUT`: no answer from the kernel
    /// within the job's `recv_timeout`). An error when the process ended without answering (it
    /// could not set itself up). Needs a tokio runtime; has no deadline of its own.
    pub(crate) async fn errno(self) -> io::Result<i32> {
        use tokio::io::AsyncReadExt;
        let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(self.rx)?;
        let mut buf = [0u8; 4];
        rx.read_exact(&mut buf).await?;
        Ok(i32::from_ne_bytes(buf))
    }
}

/// Send `req` from a detached process, which reports the kernel's answer (see [`Answer`]).
/// Unless the fork fails: then nothing was sent.
pub(crate) fn send_netlink(req: &NetlinkRequest<'_>) -> Result<Answer, NotDetached> {
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let pid = fork::spawn(&Job::Netlink {
        request: req.bytes,
        protocol: req.protocol,
        netns: req.netns,
        recv_timeout: req.recv_timeout,
        answer: tx.as_fd(),
    })?;
    // Only the detached process holds the write end now: EOF if it ends without answering.
    drop(tx);
    Ok(Answer { rx, pid })
}

/// Close `fd` in a detached process once the caller has closed its own copy, so the release
/// work the kernel does on the last close happens there. The caller must close `fd` right after
/// this returns, then drop the returned descriptor (the detached process waits for that, at
/// most [`HOLD_TIMEOUT`]). With an error nothing was started: the caller's close does the work.
pub(crate) fn close_later(fd: BorrowedFd<'_>) -> Result<OwnedFd, NotDetached> {
    hold(fd, HOLD_TIMEOUT)
}

/// [`close_later`], giving up the wait for the caller after `max`.
fn hold(fd: BorrowedFd<'_>, max: Duration) -> Result<OwnedFd, NotDetached> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    fork::spawn(&Job::Hold {
        fd,
        signal: r.as_fd(),
        max,
    })?;
    drop(r);
    Ok(w)
}
