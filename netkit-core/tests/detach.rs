//! Detached processes under a reaper that does not reap.
//!
//! This test binary makes its own process a child subreaper (`PR_SET_CHILD_SUBREAPER`) that never
//! reaps what it adopts: the detached processes `Handle::link_del_detached` starts are reparented
//! to it and stay zombies, as under a runtime at PID 1 that does not reap orphans. The flag is
//! process-wide, so this binary holds this one test and nothing else that forks. It takes about
//! 5 s: netkit's grace period for reapers that reap late.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use netkit_core::link::Veth;
use netkit_test_support::{wait_until, TestNs};

/// The child processes of this process (any state), by scanning `/proc/*/stat` for ppid = self.
fn children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut kids: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|(_, ppid)| ppid == me))
        .collect();
    kids.sort_unstable();
    kids
}

/// State letter and ppid of `pid` (`None` once it is gone).
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// Wait until `pid` has exited (it is a zombie then, since nobody reaps it), at most `limit`.
fn wait_exit(pid: i32, limit: Duration) {
    // SAFETY: pidfd_open with plain integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(fd >= 0, "pidfd_open({pid}): {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if n > 0 {
            return;
        }
        let interrupted = n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
        assert!(
            interrupted && !left.is_zero(),
            "process {pid} did not exit within {limit:?}"
        );
    }
}

/// Under a reaper that does not reap, the first detached deletion leaves a zombie; once netkit
/// has noticed it (after its grace period), the next call deletes in the caller and starts no
/// other process. (Without the check, every call adds a zombie.)
#[tokio::test]
async fn a_reaper_that_does_not_reap_gets_one_zombie_not_one_per_call() {
    // SAFETY: prctl with integer arguments; it changes only this test process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER: {}", std::io::Error::last_os_error());
    let t = TestNs::new("dzz").await;
    t.h.link_add(&Veth::new("a0", "a1")).await.unwrap();
    t.h.link_add(&Veth::new("b0", "b1")).await.unwrap();
    assert_eq!(children(), Vec::<i32>::new(), "children before the test");

    assert!(t.h.link_del_detached("a0").await.unwrap());
    assert!(t.h.link_get("a1").await.unwrap_err().is_not_found());
    // The detached process was adopted by this process (its reaper, which will not reap it).
    let first = children();
    assert_eq!(first.len(), 1, "one detached process: {first:?}");
    wait_exit(first[0], Duration::from_secs(10));
    assert_eq!(stat(first[0]).map(|s| s.0), Some('Z'), "a zombie now");
    // netkit gives a reaper a grace period (5 s) before it takes a zombie for one that does not
    // reap; the first look starts it. Wait for the verdict, at most 15 s.
    wait_until(Duration::from_secs(15), "netkit to notice the zombie", || {
        !netkit_core::detach::reaper_reaps()
    });
    assert_eq!(children(), first, "looking starts no process");

    assert!(t.h.link_del_detached("b0").await.unwrap());
    assert!(t.h.link_get("b0").await.unwrap_err().is_not_found());
    assert!(t.h.link_get("b1").await.unwrap_err().is_not_found());
    assert_eq!(
        children(),
        first,
        "the second call started another detached process under a reaper that does not reap"
    );
}
