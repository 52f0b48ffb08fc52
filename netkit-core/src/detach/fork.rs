//! The double fork and the two jobs a detached process can do.
//!
//! Everything the children use is prepared here before the first `clone` ([`Plan`]: plain
//! integers, descriptor numbers and borrowed memory). After it, the children only make raw,
//! async-signal-safe system calls on that memory and their own stack (no allocation, no locks,
//! no stdio, nothing that can panic) and leave with `_exit`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use libc::{c_int, c_long};

use crate::netlink::wire;

/// What a detached process does. Only these jobs exist.
pub(super) enum Job<'a> {
    /// Open a netlink socket of `protocol` (after entering `netns`, if given), send `request`,
    /// wait at most `recv_timeout` for the kernel's ack and write its errno (0: done; a timeout
    /// is `ETIMEDOUT`) as a native-endian `i32` to `answer`.
    Netlink {
        request: &'a [u8],
        protocol: c_int,
        netns: Option<BorrowedFd<'a>>,
        recv_timeout: Duration,
        answer: BorrowedFd<'a>,
    },
    /// Keep `fd` open until `signal` (a pipe's read end) reads EOF or `max` has passed, then
    /// close it.
    Hold {
        fd: BorrowedFd<'a>,
        signal: BorrowedFd<'a>,
        max: Duration,
    },
}

/// The most descriptors a job keeps.
const MAX_KEEP: usize = 2;

/// A job as the children see it: the descriptors they keep are renumbered `0..nkeep`.
#[derive(Clone, Copy)]
enum Work<'a> {
    /// 0: the answer pipe; 1: the namespace to enter, when `in_ns`.
    Netlink {
        request: &'a [u8],
        protocol: c_int,
        seq: u32,
        timeout_ms: i64,
        in_ns: bool,
    },
    /// 0: the held descriptor; 1: the signal pipe.
    Hold { timeout_ms: i64 },
}

/// Everything the two children use, computed before the fork.
struct Plan<'a> {
    /// Descriptors to keep, in their new order (`-1` past `nkeep`).
    keep: [RawFd; MAX_KEEP],
    nkeep: usize,
    /// Where closing one descriptor at a time stops when `close_range` is missing: the soft
    /// `RLIMIT_NOFILE`, above which no descriptor can exist.
    fd_limit: RawFd,
    /// Write end of the pipe the intermediate child reports the grandchild's pid on.
    pid_tx: RawFd,
    work: Work<'a>,
}

/// Start `job` in a detached grandchild and return its pid once the intermediate child has
/// exited and been reaped (the grandchild then belongs to this process's reaper).
///
/// The wait for the intermediate child is bounded by construction: it only forks, writes the
/// grandchild's pid to a pipe and exits.
pub(super) fn spawn(job: &Job<'_>) -> io::Result<libc::pid_t> {
    let mut keep = [-1; MAX_KEEP];
    let (nkeep, work) = match *job {
        Job::Netlink {
            request,
            protocol,
            netns,
            recv_timeout,
            answer,
        } => {
            keep[0] = answer.as_raw_fd();
            if let Some(ns) = netns {
                keep[1] = ns.as_raw_fd();
            }
            let seq = wire::Header::parse(request).map_or(0, |h| h.seq);
            let work = Work::Netlink {
                request,
                protocol,
                seq,
                timeout_ms: millis(recv_timeout),
                in_ns: netns.is_some(),
            };
            (1 + usize::from(netns.is_some()), work)
        }
        Job::Hold { fd, signal, max } => {
            keep = [fd.as_raw_fd(), signal.as_raw_fd()];
            (
                2,
                Work::Hold {
                    timeout_ms: millis(max),
                },
            )
        }
    };
    let (pid_rx, pid_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    let plan = Plan {
        keep,
        nkeep,
        fd_limit: fd_limit(),
        pid_tx: pid_tx.as_raw_fd(),
        work,
    };
    // SAFETY: the child runs `intermediate`, which only makes async-signal-safe system calls on
    // `plan` (prepared above, and a copy in the child) and never returns.
    let child = unsafe { raw_fork() };
    if child == 0 {
        intermediate(&plan);
    }
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(pid_tx);
    reap(child)?;
    // The intermediate child wrote the pid before exiting, if it forked; nothing blocks here
    // (O_NONBLOCK), whoever else still holds the write end.
    let mut pid = [0u8; 4];
    match nix::unistd::read(&pid_rx, &mut pid) {
        Ok(4) => Ok(libc::pid_t::from_ne_bytes(pid)),
        _ => Err(io::Error::other("the intermediate child could not fork")),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The soft `RLIMIT_NOFILE` (no descriptor is numbered at or above it).
fn fd_limit() -> RawFd {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        RawFd::try_from(lim.rlim_cur).unwrap_or(RawFd::MAX)
    } else {
        // Not expected; the kernel's default nr_open.
        1 << 20
    }
}

/// Wait for the intermediate child (EINTR-safe).
fn reap(child: libc::pid_t) -> io::Result<()> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child into a valid c_int.
        if unsafe { libc::waitpid(child, &mut status, 0) } == child {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // This process ignores SIGCHLD (the kernel reaped the child), or someone else
            // reaped it: it is gone either way.
            Some(libc::ECHILD) => return Ok(()),
            _ => return Err(e),
        }
    }
}

/// `clone` with fork semantics (no flags but SIGCHLD as the exit signal, no new stack), made as
/// a raw system call: `fork(3)` would run the atfork handlers libraries registered, which are
/// not async-signal-safe. Returns 0 in the child, the child's pid in the parent, -1 on error.
///
/// # Safety
/// The process may be multithreaded: the child (return value 0) has only the calling thread,
/// and locks other threads held stay held forever. It may only make async-signal-safe calls on
/// memory prepared before the call, must not allocate, panic or unwind, and must leave with
/// `_exit`.
unsafe fn raw_fork() -> libc::pid_t {
    let sigchld = libc::SIGCHLD as c_long;
    // SAFETY: clone(SIGCHLD, stack 0, …) duplicates the process like fork(2); the caller's
    // contract covers what the child does next.
    #[cfg(not(target_arch = "s390x"))]
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            sigchld,
            0 as c_long,
            0 as c_long,
            0 as c_long,
            0 as c_long,
        )
    };
    // s390x takes the stack before the flags.
    // SAFETY: as above.
    #[cfg(target_arch = "s390x")]
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            0 as c_long,
            sigchld,
            0 as c_long,
            0 as c_long,
            0 as c_long,
        )
    };
    r as libc::pid_t
}

// ---------------------------------------------------------------- after the fork
//
// Everything below runs in the children: raw system calls only, on `Plan` and stack buffers.

/// The intermediate child: fork the grandchild, report its pid, exit at once.
fn intermediate(plan: &Plan<'_>) -> ! {
    // SAFETY: the grandchild runs `grandchild`, which keeps to the contract (raw system calls
    // on `plan` and its stack, `_exit`).
    let pid = unsafe { raw_fork() };
    if pid == 0 {
        grandchild(plan);
    }
    if pid > 0 {
        let bytes = pid.to_ne_bytes();
        // SAFETY: write from a stack buffer to the pipe descriptor in `plan`; a 4-byte write to
        // an empty pipe is whole.
        unsafe { libc::write(plan.pid_tx, bytes.as_ptr().cast(), bytes.len()) };
    }
    // SAFETY: _exit leaves without running Rust or libc exit handlers.
    unsafe { libc::_exit(if pid > 0 { 0 } else { 1 }) }
}

/// The detached process: take the kept descriptors, close the rest, do the job, exit.
fn grandchild(plan: &Plan<'_>) -> ! {
    let code = if take_descriptors(plan) {
        match plan.work {
            Work::Netlink {
                request,
                protocol,
                seq,
                timeout_ms,
                in_ns,
            } => netlink_job(request, protocol, seq, timeout_ms, in_ns),
            Work::Hold { timeout_ms } => hold_job(timeout_ms),
        }
    } else {
        111
    };
    // SAFETY: as in `intermediate`.
    unsafe { libc::_exit(code) }
}

/// Renumber the kept descriptors to `0..nkeep` and close every other one (stdio included), so
/// the locks, pipes and sockets the caller holds do not live on here.
fn take_descriptors(plan: &Plan<'_>) -> bool {
    let k = plan.nkeep as RawFd;
    let mut ok = true;
    let mut parked = [-1 as RawFd; MAX_KEEP];
    // SAFETY (this block): descriptor-table operations on this process's own table; the
    // numbers come from `plan`, and a wrong one only makes a call fail.
    unsafe {
        // Copies first, all numbered k or above (the lowest free number ≥ k), so renumbering
        // them to 0..k below never overwrites one still to be moved.
        for (p, fd) in parked.iter_mut().zip(plan.keep).take(plan.nkeep) {
            *p = libc::fcntl(fd, libc::F_DUPFD, k);
            ok &= *p >= 0;
        }
        for (i, p) in parked.iter().take(plan.nkeep).enumerate() {
            ok &= libc::dup2(*p, i as RawFd) == i as RawFd;
        }
        // Everything from k up (the parked copies too). close_range is Linux 5.9+.
        let closed = libc::syscall(
            libc::SYS_close_range,
            k as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
        if closed != 0 {
            let mut fd = k;
            while fd < plan.fd_limit {
                libc::close(fd);
                fd += 1;
            }
        }
    }
    ok
}

fn errno() -> c_int {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// CLOCK_MONOTONIC in milliseconds.
#[allow(clippy::unnecessary_cast)] // time_t and c_long are i32 on some 32-bit targets.
fn now_ms() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime (async-signal-safe) into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as i64)
        .saturating_mul(1000)
        .saturating_add(ts.tv_nsec as i64 / 1_000_000)
}

/// Descriptor 0: the answer pipe; 1 (when `in_ns`): the namespace. Returns the exit code.
fn netlink_job(request: &[u8], protocol: c_int, seq: u32, timeout_ms: i64, in_ns: bool) -> c_int {
    let mut err = 0;
    if in_ns {
        // SAFETY: setns and close on descriptor 1, which this process owns.
        unsafe {
            if libc::setns(1, libc::CLONE_NEWNET) != 0 {
                err = errno();
            }
            libc::close(1);
        }
    }
    if err == 0 {
        err = send_and_wait(request, protocol, seq, timeout_ms);
    }
    let bytes = err.to_ne_bytes();
    loop {
        // SAFETY: write from a stack buffer to descriptor 0, the answer pipe; 4 bytes to a pipe
        // are written whole or not at all.
        let n = unsafe { libc::write(0, bytes.as_ptr().cast(), bytes.len()) };
        if n >= 0 || errno() != libc::EINTR {
            return 0;
        }
    }
}

/// Receive timeout of `s`: `ms` milliseconds (more than 0).
fn set_recv_timeout(s: c_int, ms: i64) -> bool {
    let tv = libc::timeval {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_usec: ((ms % 1000) * 1000) as libc::suseconds_t,
    };
    // SAFETY: setsockopt reads a valid timeval of the given size.
    unsafe {
        libc::setsockopt(
            s,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        ) == 0
    }
}

/// Send `request` on a new netlink socket of `protocol` and return the errno of the kernel's
/// answer to `seq` (0: done), or `ETIMEDOUT` if none came within `timeout_ms`.
fn send_and_wait(request: &[u8], protocol: c_int, seq: u32, timeout_ms: i64) -> c_int {
    let deadline = now_ms().saturating_add(timeout_ms);
    // SAFETY: plain socket(2).
    let s = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if s < 0 {
        return errno();
    }
    // Acks without a copy of the request, so they fit the buffer below (older kernels lack
    // it: the answer is then truncated, which leaves its header and errno intact).
    let one: c_int = 1;
    // SAFETY: setsockopt reads a valid c_int.
    unsafe {
        libc::setsockopt(
            s,
            libc::SOL_NETLINK,
            libc::NETLINK_CAP_ACK,
            (&one as *const c_int).cast(),
            std::mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if timeout_ms <= 0 || !set_recv_timeout(s, timeout_ms) {
        return libc::EINVAL;
    }
    // SAFETY: an all-zero sockaddr_nl is valid; with nl_pid 0 the kernel is the destination.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    loop {
        // SAFETY: `request` is a valid buffer of its length; `addr` a valid sockaddr_nl.
        let sent = unsafe {
            libc::sendto(
                s,
                request.as_ptr().cast(),
                request.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent >= 0 {
            break;
        }
        if errno() != libc::EINTR {
            return errno();
        }
    }
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is a valid, writable buffer of its length.
        let n = unsafe { libc::recv(s, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            match errno() {
                libc::EAGAIN => return libc::ETIMEDOUT,
                // A signal handler ran: wait only for what is left of the timeout.
                libc::EINTR => {
                    let left = deadline.saturating_sub(now_ms());
                    if left <= 0 || !set_recv_timeout(s, left) {
                        return libc::ETIMEDOUT;
                    }
                    continue;
                }
                e => return e,
            }
        }
        let got = buf.get(..n as usize).unwrap_or(&[]);
        if let Some(e) = ack_errno(got, seq) {
            return e;
        }
    }
}

/// The errno of the `NLMSG_ERROR` for `seq` among the messages in `buf`, if there is one.
/// [`wire`]'s readers neither allocate nor panic, so this is safe after the fork.
fn ack_errno(buf: &[u8], seq: u32) -> Option<c_int> {
    wire::messages(buf)
        .filter(|m| m.header.seq == seq)
        .find_map(|m| m.ack())
        .map(|a| a.errno)
}

/// Descriptor 0: the held descriptor; 1: the signal pipe. Wait for EOF on 1 (at most
/// `timeout_ms`), then close 0.
fn hold_job(timeout_ms: i64) -> c_int {
    let deadline = now_ms().saturating_add(timeout_ms);
    let mut buf = [0u8; 16];
    loop {
        let left = deadline.saturating_sub(now_ms());
        if left <= 0 {
            break;
        }
        let mut pfd = libc::pollfd {
            fd: 1,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd on the stack.
        let r = unsafe { libc::poll(&mut pfd, 1, left.min(c_int::MAX as i64) as c_int) };
        if r == 0 {
            break;
        }
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            break;
        }
        // SAFETY: read into a stack buffer of its length from descriptor 1.
        let n = unsafe { libc::read(1, buf.as_mut_ptr().cast(), buf.len()) };
        // EOF: the caller signalled. An error other than EINTR: give up waiting.
        if n == 0 || (n < 0 && errno() != libc::EINTR) {
            break;
        }
    }
    // SAFETY: close this process's own descriptor 0.
    unsafe { libc::close(0) };
    0
}

#[cfg(test)]
mod tests {
    use super::{ack_errno, wire};

    /// A message of type `kind` whose payload is `-errno`, as an `NLMSG_ERROR` has it.
    fn msg(kind: u16, seq: u32, errno: i32) -> Vec<u8> {
        let mut b = wire::Builder::new();
        let start = b.begin(kind, 0, seq);
        b.fixed(&(-errno).to_ne_bytes());
        b.finish(start);
        b.into_bytes()
    }

    #[test]
    fn ack_errno_reads_the_answer_to_its_request_only() {
        assert_eq!(ack_errno(&msg(2, 7, 0), 7), Some(0));
        assert_eq!(ack_errno(&msg(2, 7, libc::ENODEV), 7), Some(libc::ENODEV));
        assert_eq!(ack_errno(&msg(2, 6, libc::ENODEV), 7), None, "another sequence number");
        let mut two = msg(16, 7, 0);
        two.extend(msg(2, 7, libc::EPERM));
        assert_eq!(ack_errno(&two, 7), Some(libc::EPERM), "after another message");
        assert_eq!(ack_errno(&msg(2, 7, 1)[..12], 7), None, "truncated");
        assert_eq!(ack_errno(&[], 7), None);
        // An uncapped answer to a big request cut short by the buffer keeps its errno.
        let mut long = msg(2, 7, libc::EBUSY);
        long[..4].copy_from_slice(&9000u32.to_ne_bytes());
        long.extend([0u8; 100]);
        assert_eq!(ack_errno(&long, 7), Some(libc::EBUSY), "cut short");
        // A length below the header ends the walk rather than looping or panicking.
        let mut zero = msg(2, 7, 0);
        zero[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(ack_errno(&zero, 7), None);
        for len in 0..64usize {
            let junk: Vec<u8> = (0..len).map(|i| (i * 73 % 256) as u8).collect();
            let _ = ack_errno(&junk, 7);
        }
    }
}

#[cfg(test)]
mod fuzz {
    //! The ack reader of the detached netlink job, fed arbitrary bytes (never panics) and
    //! datagrams of well-formed messages (finds the answer to its request, only that one).

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::ack_errno;

    /// One message: nlmsghdr, then (for NLMSG_ERROR) the negative errno, then `extra` bytes.
    fn msg(kind: u16, seq: u32, errno: i32, extra: &[u8]) -> Vec<u8> {
        let len = 20 + extra.len();
        let mut m = (len as u32).to_ne_bytes().to_vec();
        m.extend(kind.to_ne_bytes());
        m.extend(0u16.to_ne_bytes());
        m.extend(seq.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend((-errno).to_ne_bytes());
        m.extend_from_slice(extra);
        m.resize(len.next_multiple_of(4), 0);
        m
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200), seq in any::<u32>()) {
            let _ = ack_errno(&bytes, seq);
        }

        #[test]
        fn the_first_answer_to_the_request_is_found(
            msgs in vec((prop_oneof![Just(2u16), 3u16..40], 0u32..4, 0i32..200, vec(any::<u8>(), 0..9)), 0..6),
            seq in 0u32..4,
        ) {
            let buf: Vec<u8> = msgs.iter().flat_map(|(k, s, e, x)| msg(*k, *s, *e, x)).collect();
            let want = msgs
                .iter()
                .find(|(k, s, _, _)| *k == libc::NLMSG_ERROR as u16 && *s == seq)
                .map(|(_, _, e, _)| *e);
            prop_assert_eq!(ack_errno(&buf, seq), want);
        }
    }
}
