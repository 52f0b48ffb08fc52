//! netkit's helper thread (short jobs inside namespaces) takes its home namespace from the
//! process, not from the thread that first needs it: a first job asked for from inside
//! `NetNs::run` must not make the helper keep that namespace, and so keep it alive after it is
//! deleted. One test in this binary, and its namespaces are made with `ip netns`, not netkit:
//! netkit's first job in this process must be the one the test makes from inside A.

use std::process::Command;
use std::time::{Duration, Instant};

use netkit_core::NetNs;

/// A namespace made and deleted with `ip netns` (deleted on drop, also on panic).
struct IpNetns(String);

impl IpNetns {
    fn add(tag: &str) -> IpNetns {
        let name = format!("nkw{}{tag}", std::process::id());
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        IpNetns(name)
    }
}

impl Drop for IpNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn links_of(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_deleted_namespace_is_not_kept_alive_by_the_helper_thread() {
    let (a, b, c) = (IpNetns::add("a"), IpNetns::add("b"), IpNetns::add("c"));
    // A veth between A and C: its end in C lives exactly as long as namespace A does.
    let ok = Command::new("ip")
        .args([
            "-n", &a.0, "link", "add", "wka", "type", "veth", "peer", "name", "wkc", "netns", &c.0,
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    // The process's first netkit job (opening a netlink socket in B) is asked for from a
    // thread inside A.
    let a_ns = NetNs::open(&a.0).unwrap();
    let b_ns = NetNs::open(&b.0).unwrap();
    a_ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { b_ns.handle().await.map(drop) })
    })
    .unwrap()
    .unwrap();
    drop(a_ns);
    drop(a);
    // Generous: the kernel frees deleted namespaces from a work queue, which a machine that just
    // deleted thousands (a benchmark, other tests) works through for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    while links_of(&c.0).contains("wkc") {
        assert!(
            Instant::now() < deadline,
            "namespace A outlived its deletion by 60 s: something (the helper thread) keeps it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
