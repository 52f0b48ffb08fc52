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
//! **A reaper that does not reap.** Under a runtime at PID 1 that does not reap orphans, or a
//! subreaper that reaps only its own children, every detached process would stay a zombie.
//! netkit records the last detached process started under each reaper (in
//! `/run/netkit/detach/<PID namespace inode>/<reaper pid>`); once the one recorded for the
//! caller's reaper has been seen a zombie for longer than a grace period (5 s, for inits that
//! reap by polling every few seconds), the caller does the work itself and waits, instead of
//! adding a zombie per call. [`reaper_reaps`] tells which case holds. A reaper slower than the
//! grace period is taken for one that does not reap until it has reaped, which costs a wait per
//! call meanwhile and nothing else; under one that never reaps, the detached processes started
//! during the grace period stay zombies too, and after it no more are started.
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
mod reaper;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use fork::Job;
use reaper::Reaper;
pub(crate) use reaper::Unreaped;

/// How long a netlink job waits for the kernel's answer once its request is sent.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a held descriptor is kept at most when the caller does not signal.
pub(crate) const HOLD_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the detached processes netkit would start now are reaped, as far as it can tell.
///
/// `false` when the detached process netkit last recorded under this process's reaper (its
/// nearest ancestor that is a child subreaper, or init of its PID namespace) has been a zombie
/// child of that reaper for longer than a grace period (5 s): the reaper does not reap, and
/// netkit then does the work in the caller (waiting for the kernel) rather than start another
/// detached process. `true` otherwise, including when nothing is known yet (no detached process
/// started under this reaper, or no record could be kept) and while the grace period runs.
///
/// It reads a few small files under `/proc` and `/run/netkit/detach/`, and notes in the record
/// when its process was first seen a zombie (the grace period starts then).
pub fn reaper_reaps() -> bool {
    !matches!(reaper::check(), Reaper::DoesNotReap(_))
}

/// Whether to start a detached process, and whether to record it (see [`reaper`]).
fn may_detach() -> Result<Reaper, NotDetached> {
    match reaper::check() {
        Reaper::DoesNotReap(u) => Err(NotDetached::Unreaped(u)),
        r => Ok(r),
    }
}

/// Why a job was not handed to a detached process. The caller does the work itself.
#[derive(Debug)]
pub(crate) enum NotDetached {
    /// The detached process recorded under this process's reaper has been a zombie for longer
    /// than the grace period: the reaper does not reap.
    Unreaped(Unreaped),
    /// The fork or its preparation failed.
    Failed(io::Error),
}

impl std::fmt::Display for NotDetached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreaped(u) => write!(
                f,
                "the reaper does not reap: detached process {} has long been a zombie child of {}",
                u.pid, u.reaper
            ),
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
/// Unless the reaper does not reap or the fork fails: then nothing was sent.
pub(crate) fn send_netlink(req: &NetlinkRequest<'_>) -> Result<Answer, NotDetached> {
    let verdict = may_detach()?;
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
    reaper::record(pid, verdict);
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
    let verdict = may_detach()?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let pid = fork::spawn(&Job::Hold {
        fd,
        signal: r.as_fd(),
        max,
    })?;
    drop(r);
    reaper::record(pid, verdict);
    Ok(w)
}
