//! Shared helpers for netkit-core's integration tests: unique names and
//! namespaces that are deleted when the test ends, even on panic.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use netkit_core::{Handle, NetNsGuard};

/// A name unique to this process and call: `nk<pid><counter><tag>`.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("nk{}x{}{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), tag)
}

/// A fresh namespace (deleted on drop) with loopback up, and a handle in it.
pub struct TestNs {
    pub ns: NetNsGuard,
    pub h: Handle,
}

impl TestNs {
    pub async fn new(tag: &str) -> Self {
        let ns = NetNsGuard::create(&unique(tag)).expect("create test netns");
        let h = ns.handle().await.expect("handle in test netns");
        h.link_set_up("lo").await.expect("lo up");
        Self { ns, h }
    }

    /// A fresh namespace with a veth pair `v0`/`v1` inside it, both up.
    pub async fn with_veth(tag: &str) -> Self {
        let t = Self::new(tag).await;
        t.h.link_add(&netkit_core::link::Veth::new("v0", "v1").up())
            .await
            .expect("veth v0/v1");
        t.h.link_set_up("v1").await.expect("v1 up");
        t
    }

    /// Run a command inside this namespace (`ip netns exec`), returning stdout;
    /// panics with stderr when it fails.
    pub fn sh(&self, cmd: &str) -> String {
        let name = self.ns.name().unwrap();
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", name, "sh", "-c", cmd])
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "`{cmd}` in {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like `sh` but returns whether the command succeeded.
    pub fn try_sh(&self, cmd: &str) -> bool {
        let name = self.ns.name().unwrap();
        std::process::Command::new("ip")
            .args(["netns", "exec", name, "sh", "-c", cmd])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

/// Report a test skipped by name: printed, and appended to the file named by
/// `NETKIT_SKIP_LOG` so the test script lists every skip at the end (cargo
/// hides the output of passing tests).
pub fn report_skip(test: &str, why: &str) {
    let line = format!("SKIP {test}: {why}");
    println!("{line}");
    eprintln!("{line}");
    if let Ok(path) = std::env::var("NETKIT_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}
