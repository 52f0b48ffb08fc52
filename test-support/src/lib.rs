//! What netkit's tests share, written once: a simulated cluster's underlay ([`cluster`]), overlay
//! agents and pods on it ([`overlay`]), a real etcd ([`etcd`]), ICMP echo timed in-process
//! ([`icmp`]), names unique to a test process ([`unique`]), skips
//! that show in plain `cargo test` output ([`report_skip`]), bounded waits instead of sleeps
//! ([`wait_until`], [`wait_for`] and their async forms), temp dirs ([`tempdir`]), namespaces
//! deleted even when a test panics ([`ns`]), what an attachment may change in a host
//! ([`hoststate`]), identity servers for traffic checks ([`echo`]), iperf3 runs ([`iperf`]), `ip` / `ip -j` and shell wrappers ([`cmd`]), views
//! of a namespace's links and addresses ([`snapshot`]) and of `iptables-save` output
//! ([`iptables`]), literals ([`lit`]), what the lease store tests share ([`lease`]), the object stores' conformance check ([`store`]), golden files
//! compared with a test's text and rewritten on request ([`golden`]) and a seeded generator for
//! randomized tests ([`Rng`]).
//!
//! Nothing here touches the namespace the tests run in: every command takes the namespace it
//! runs in.

pub mod cluster;
pub mod cmd;
pub mod echo;
pub mod etcd;
pub mod golden;
pub mod hoststate;
pub mod icmp;
pub mod iperf;
pub mod iptables;
pub mod lease;
pub mod lit;
pub mod natlab;
pub mod ns;
pub mod overlay;
mod rng;
pub mod service;
pub mod snapshot;
pub mod store;
mod wait;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

pub use cmd::{in_ns, ip, ipj, ping, run_in, sh, try_sh};
pub use hoststate::HostState;
pub use ns::{HostNs, TestNs};
pub use rng::Rng;
pub use wait::{poll_for, poll_for_async, wait_for, wait_for_async, wait_until, wait_until_async};

/// A name unique to this process and call, `nk<pid>x<counter><tag>`: for namespaces, temp dirs,
/// anything two tests (or two test processes) running at once must not share.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("nk{}x{}{tag}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A child process killed (SIGKILL) and reaped when this drops, also when the test panics;
/// derefs to the [`Child`](std::process::Child).
#[derive(Debug)]
pub struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    /// Guard `child`.
    pub fn new(child: std::process::Child) -> Self {
        KillOnDrop(Some(child))
    }

    /// The child, no longer guarded (to wait for its output, say).
    pub fn into_inner(mut self) -> std::process::Child {
        self.0.take().expect("guarded until now")
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;

    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("guarded until now")
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("guarded until now")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A fresh empty directory (`netkit-<tag>-…` under the system temp dir), removed with its content
/// when the value drops, also when the test panics.
pub fn tempdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("netkit-{tag}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("create a temp dir for {tag}: {e}"))
}

/// Report that `test` (its name as the suite shows it, e.g. `link::vrf_device`) was skipped, and
/// why.
///
/// The line `SKIP <test>: <why>` goes straight to the process's stderr (file descriptor 2),
/// around the test harness's output capture, so a plain `cargo test` shows it although the test
/// counts as passed; and it is appended to the file named by `NETKIT_SKIP_LOG`, if set, which
/// `scripts/test.sh` counts and lists at the end.
pub fn report_skip(test: &str, why: &str) {
    let line = format!("SKIP {test}: {why}\n");
    write_fd2(line.as_bytes());
    if let Some(path) = std::env::var_os("NETKIT_SKIP_LOG") {
        if let Err(e) = append_line(Path::new(&path), &line) {
            write_fd2(format!("NETKIT_SKIP_LOG {}: {e}\n", path.to_string_lossy()).as_bytes());
        }
    }
}

/// Append `line` to the file at `path` (created if need be) in one write to an `O_APPEND`
/// file, so the lines of tests running at once do not interleave.
fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

/// Write all of `bytes` to file descriptor 2 (not through `eprint!`, which the test harness
/// captures).
fn write_fd2(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: write(2) from a live buffer of the length given; descriptor 2 is this
        // process's stderr (a failed write is only reported by the return value).
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if n == 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        let (a, b) = (unique("x"), unique("x"));
        assert_ne!(a, b);
        assert!(
            a.starts_with(&format!("nk{}x", std::process::id())) && a.ends_with('x'),
            "{a}"
        );
    }

    #[test]
    fn skip_lines_are_appended_whole() {
        let dir = tempdir("skiplog");
        let log = dir.path().join("skipped");
        append_line(&log, "SKIP support::a: why a\n").unwrap();
        append_line(&log, "SKIP support::b: why b\n").unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text, "SKIP support::a: why a\nSKIP support::b: why b\n");
    }

    #[test]
    fn tempdirs_go_on_drop() {
        let d = tempdir("drop");
        let p = d.path().to_path_buf();
        std::fs::write(p.join("f"), "x").unwrap();
        drop(d);
        assert!(!p.exists());
    }
}
