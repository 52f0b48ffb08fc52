//! The two jobs on the real kernel, each in a namespace of its own (deleted on drop).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::link::Veth;
use crate::netlink::wire;
use crate::{Handle, NetNsGuard};

/// A fresh namespace with a veth pair `a0`/`a1`; returns it, a handle in it and `a0`'s index.
async fn ns_with_veth(tag: &str) -> (NetNsGuard, Handle, u32) {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("nkdt{}x{}{tag}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let ns = NetNsGuard::create(&name).expect("create test netns");
    let h = ns.handle().await.expect("handle in test netns");
    h.link_add(&Veth::new("a0", "a1")).await.expect("veth a0/a1");
    let index = h.link_index("a0").await.expect("index of a0");
    (ns, h, index)
}

/// `RTM_DELLINK` for `index`, acked: a 16-byte nlmsghdr and a 16-byte ifinfomsg.
fn dellink(index: u32, seq: u32) -> Vec<u8> {
    let mut b = wire::Builder::new();
    let start = b.begin(libc::RTM_DELLINK, (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16, seq);
    // struct ifinfomsg: family, pad, type, index, flags, change.
    b.fixed(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    b.fixed(&index.to_ne_bytes());
    b.fixed(&[0; 8]);
    b.finish(start);
    b.into_bytes()
}

/// `NLMSG_NOOP` without `NLM_F_ACK`: the kernel accepts it and never answers.
fn unanswered() -> Vec<u8> {
    let mut b = wire::Builder::new();
    let start = b.begin(libc::NLMSG_NOOP as u16, libc::NLM_F_REQUEST as u16, 1);
    b.finish(start);
    b.into_bytes()
}

fn route<'a>(bytes: &'a [u8], netns: Option<BorrowedFd<'a>>, recv_timeout: Duration) -> NetlinkRequest<'a> {
    NetlinkRequest {
        bytes,
        protocol: libc::NETLINK_ROUTE,
        netns,
        recv_timeout,
    }
}

/// The detached process's answer, waiting at most 10 s.
async fn answer(a: Answer) -> i32 {
    tokio::time::timeout(Duration::from_secs(10), a.errno())
        .await
        .expect("an answer within 10 s")
        .expect("the detached process answered")
}

/// Whether `fd` (a pipe's read end) reads EOF within `limit`.
fn eof_within(fd: BorrowedFd<'_>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if n > 0 {
            let mut b = [0u8; 1];
            return nix::unistd::read(fd, &mut b) == Ok(0);
        }
        if n == 0 || left.is_zero() {
            return false;
        }
    }
}

#[tokio::test]
async fn netlink_job_deletes_a_link_and_reports_0() {
    let (ns, h, index) = ns_with_veth("del").await;
    let req = dellink(index, 7);
    let a = send_netlink(&route(&req, Some(ns.as_fd()), RECV_TIMEOUT)).expect("detached");
    assert_eq!(answer(a).await, 0);
    assert!(h.link_get("a0").await.unwrap_err().is_not_found());
    assert!(h.link_get("a1").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn netlink_job_reports_the_kernels_errno() {
    let (ns, h, _) = ns_with_veth("enodev").await;
    let req = dellink(999_999, 7);
    let a = send_netlink(&route(&req, Some(ns.as_fd()), RECV_TIMEOUT)).expect("detached");
    assert_eq!(answer(a).await, libc::ENODEV);
    assert!(h.link_get("a0").await.is_ok(), "nothing else deleted");
}

/// A request the kernel never answers: the detached process gives up after its receive
/// timeout and says so.
#[tokio::test]
async fn netlink_job_gives_up_when_no_answer_comes() {
    let (ns, _h, _) = ns_with_veth("noack").await;
    let req = unanswered();
    let start = Instant::now();
    let a = send_netlink(&route(&req, Some(ns.as_fd()), Duration::from_millis(200))).expect("detached");
    assert_eq!(answer(a).await, libc::ETIMEDOUT);
    assert!(start.elapsed() >= Duration::from_millis(200), "{:?}", start.elapsed());
}

/// The detached process closes every descriptor it was not given: a pipe's write end held by
/// this process across the spawn reads EOF once this process closes its copy, while the
/// detached process is still there (holding another descriptor).
#[test]
fn detached_process_keeps_no_other_descriptor() {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let (held_r, held_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let signal = hold(held_w.as_fd(), HOLD_TIMEOUT).expect("detached");
    drop(held_w);
    drop(w);
    assert!(
        eof_within(r.as_fd(), Duration::from_secs(10)),
        "the detached process kept a descriptor it was not given"
    );
    assert!(!eof_within(held_r.as_fd(), Duration::ZERO), "it is still there");
    drop(signal);
}

/// The held descriptor stays open until the caller signals, and is closed then.
#[test]
fn held_descriptor_is_closed_when_the_caller_signals() {
    let (held_r, held_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let signal = close_later(held_w.as_fd()).expect("detached");
    drop(held_w);
    assert!(
        !eof_within(held_r.as_fd(), Duration::ZERO),
        "held by the detached process"
    );
    drop(signal);
    assert!(
        eof_within(held_r.as_fd(), Duration::from_secs(10)),
        "closed once the caller signalled"
    );
}

/// Without a signal, the held descriptor is closed after the hold's timeout (not before).
#[test]
fn held_descriptor_is_closed_after_the_timeout() {
    let (held_r, held_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let start = Instant::now();
    let signal = hold(held_w.as_fd(), Duration::from_millis(200)).expect("detached");
    drop(held_w);
    assert!(
        eof_within(held_r.as_fd(), Duration::from_secs(10)),
        "closed after the timeout"
    );
    assert!(start.elapsed() >= Duration::from_millis(200), "{:?}", start.elapsed());
    drop(signal);
}
