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

/// `pid/tid (comm)` of every thread whose network namespace has inode `inode`.
fn threads_in(inode: u64) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if std::fs::metadata(t.path().join("ns/net")).is_ok_and(|m| m.ino() == inode) {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                found.push(format!(
                    "{}/{} ({})",
                    p.file_name().to_string_lossy(),
                    t.file_name().to_string_lossy(),
                    comm.trim()
                ));
            }
        }
    }
    found
}

/// `(tid, netns inode)` of this process's threads named `name`.
fn threads_named(name: &str) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| {
            let ino = std::fs::metadata(t.path().join("ns/net")).ok()?.ino();
            Some((t.file_name().to_string_lossy().into_owned(), ino))
        })
        .collect()
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
    use std::os::unix::fs::MetadataExt;
    let a_inode = std::fs::metadata(format!("/run/netns/{}", a.0)).unwrap().ino();
    drop(a_ns);
    // Nothing of this process keeps A: no thread is in it (the helper that the job started went
    // home to the process's namespace) and no descriptor names it. Checked here rather than by
    // waiting for the kernel to free A after `ip netns del`: the kernel frees namespaces from
    // one work queue, which other tests' teardowns can keep busy for a long while.
    let kept = threads_in(a_inode);
    assert!(kept.is_empty(), "threads of this process still in A: {kept:?}");
    let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| *l == format!("net:[{a_inode}]"))
        .collect();
    assert!(fds.is_empty(), "descriptors of this process still name A: {fds:?}");
    // And a helper exists (the job ran on one), at home.
    let home = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    let helpers = threads_named("netkit-netns");
    assert!(!helpers.is_empty(), "the job ran on a helper thread");
    for (tid, ino) in helpers {
        assert_eq!(ino, home, "helper thread {tid} is not in the process's namespace");
    }
    // The kernel frees A once it is deleted (best effort, not asserted: see above).
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    while links_of(&c.0).contains("wkc") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}
