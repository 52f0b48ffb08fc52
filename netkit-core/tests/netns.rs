//! Network namespaces: naming, opening, identity, running work inside, guards.
//!
//! Every namespace here is made by the test with a unique name and deleted when
//! the test ends; nothing in the root namespace is changed.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use netkit_core::link::Veth;
use netkit_core::{NetNs, NetNsGuard, NetnsError};
use netkit_test_support::{unique, wait_until, KillOnDrop, TestNs};
use nix::net::if_::InterfaceFlags;

/// Inode of the calling thread's network namespace.
fn thread_netns_ino() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

/// `ip netns list`, one name per entry (iproute2 appends " (id: N)" to some).
fn ip_netns_list() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        out.status.success(),
        "ip netns list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Interfaces seen by the calling thread: (name, flags), deduplicated by name.
fn interfaces() -> Vec<(String, InterfaceFlags)> {
    let mut v: Vec<(String, InterfaceFlags)> = nix::ifaddrs::getifaddrs()
        .unwrap()
        .map(|i| (i.interface_name, i.flags))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

#[test]
fn create_is_visible_to_iproute2_and_list() {
    let name = unique("vis");
    {
        let ns = NetNsGuard::create(&name).unwrap();
        assert_eq!(ns.name(), Some(name.as_str()));
        assert_eq!(ns.path(), std::path::Path::new("/run/netns").join(&name));
        assert!(ip_netns_list().contains(&name), "ip netns list lacks {name}");
        assert!(NetNs::list().unwrap().contains(&name), "NetNs::list lacks {name}");
        let out = Command::new("ip")
            .args(["netns", "exec", &name, "ip", "-o", "link"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip netns exec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        // A fresh namespace holds exactly the loopback device, still down.
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("lo:") && !text.contains("UP"), "{text}");
    }
    assert!(!ip_netns_list().contains(&name), "{name} still listed by ip after drop");
    assert!(
        !NetNs::list().unwrap().contains(&name),
        "{name} still listed after drop"
    );
}

#[test]
fn list_is_sorted() {
    let a = NetNsGuard::create(&unique("zz")).unwrap();
    let b = NetNsGuard::create(&unique("aa")).unwrap();
    let list = NetNs::list().unwrap();
    let mut sorted = list.clone();
    sorted.sort();
    assert_eq!(list, sorted);
    assert!(list.iter().any(|n| Some(n.as_str()) == a.name()));
    assert!(list.iter().any(|n| Some(n.as_str()) == b.name()));
}

#[test]
fn create_twice_is_exists() {
    let name = unique("dup");
    let first = NetNsGuard::create(&name).unwrap();
    let id = first.id().unwrap();
    match NetNs::create(&name) {
        Err(NetnsError::Exists(n)) => assert_eq!(n, name),
        other => panic!("second create of {name}: {other:?}"),
    }
    let e = NetNs::create(&name).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EEXIST));
    assert!(e.to_string().contains(&name), "{e}");
    // The failed attempt must not have replaced or removed the original.
    assert_eq!(NetNs::open(&name).unwrap().id().unwrap(), id);
}

#[test]
fn delete_is_idempotent() {
    let name = unique("del");
    let ns = NetNs::create(&name).unwrap();
    let id = ns.id().unwrap();
    NetNs::delete(&name).unwrap();
    NetNs::delete(&name).unwrap();
    assert!(!NetNs::list().unwrap().contains(&name));
    assert!(!std::path::Path::new("/run/netns").join(&name).exists());
    match NetNs::open(&name) {
        Err(e @ NetnsError::Io { .. }) => {
            assert_eq!(e.errno(), Some(libc::ENOENT), "{e}");
            assert!(e.to_string().contains(&name), "{e}");
        }
        other => panic!("open after delete: {other:?}"),
    }
    // The open value keeps the namespace alive and usable after the name is gone.
    assert_eq!(ns.id().unwrap(), id);
    let ifs = ns.run(interfaces).unwrap();
    assert_eq!(ifs.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(), ["lo"]);
    // And the name can be taken again, by a new namespace.
    let again = NetNsGuard::create(&name).unwrap();
    assert_ne!(again.id().unwrap(), id);
}

#[test]
fn open_by_name_path_and_pid_agree() {
    let ns = NetNsGuard::create(&unique("open")).unwrap();
    let name = ns.name().unwrap().to_string();
    let id = ns.id().unwrap();

    let by_name = NetNs::open(&name).unwrap();
    assert_eq!(by_name.id().unwrap(), id);
    assert_eq!(by_name.name(), Some(name.as_str()));

    let path = format!("/run/netns/{name}");
    let by_path = NetNs::open_path(&path).unwrap();
    assert_eq!(by_path.id().unwrap(), id);
    assert_eq!(by_path.name(), None);
    assert_eq!(by_path.path(), std::path::Path::new(&path));

    // A process started inside the namespace by iproute2.
    let mut child = Command::new("ip")
        .args(["netns", "exec", &name, "sleep", "30"])
        .spawn()
        .unwrap();
    let pid = child.id();
    // `ip netns exec` enters the namespace, then execs sleep in the same process.
    wait_until(Duration::from_secs(10), "the child to exec sleep", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            == "sleep"
    });
    let by_pid = NetNs::from_pid(pid);
    let _ = child.kill();
    let _ = child.wait();
    let by_pid = by_pid.unwrap();
    assert_eq!(by_pid.id().unwrap(), id);
    assert_eq!(by_pid.path(), std::path::Path::new(&format!("/proc/{pid}/ns/net")));

    // The id is the inode `ip netns identify` and /proc show.
    let ino = std::fs::metadata(&path).unwrap().ino();
    assert_eq!(id.ino, ino);

    // Errors name what failed.
    let e = NetNs::open_path("/nonexistent/netns/file").unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOENT));
    assert!(e.to_string().contains("/nonexistent/netns/file"), "{e}");
    assert!(NetNs::from_pid(u32::MAX).is_err());
}

#[test]
fn identify_names_the_namespace_of_a_process() {
    let a = NetNsGuard::create(&unique("ida")).unwrap();
    let b = NetNsGuard::create(&unique("idb")).unwrap();
    let name = a.name().unwrap().to_string();
    // `NetNs::command` enters the namespace before exec: once spawned, the child is in it.
    let child = KillOnDrop::new(a.command("sleep").arg("60").spawn().unwrap());
    let pid = child.id();
    assert_eq!(NetNs::identify(pid).unwrap(), [name.as_str()]);
    // iproute2 agrees.
    let ip = Command::new("ip")
        .args(["netns", "identify", &pid.to_string()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ip.stdout).trim(), name);
    // Neither this process nor its namespace is a test namespace's.
    let ours = NetNs::identify(std::process::id()).unwrap();
    assert!(
        !ours.contains(&name) && !ours.iter().any(|n| Some(n.as_str()) == b.name()),
        "{ours:?}"
    );
    // A process that does not exist (above any pid_max): ENOENT, naming the pid.
    let e = NetNs::identify(i32::MAX as u32).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOENT));
    assert!(e.to_string().contains(&(i32::MAX).to_string()), "{e}");
    drop(child);
}

#[test]
fn current_differs_from_created() {
    let ns = NetNsGuard::create(&unique("cur")).unwrap();
    let cur = NetNs::current().unwrap();
    assert_ne!(cur.id().unwrap(), ns.id().unwrap());
    // The calling thread is in the process's namespace; nothing moved it.
    assert_eq!(
        cur.id().unwrap(),
        NetNs::from_pid(std::process::id()).unwrap().id().unwrap()
    );
    assert_eq!(cur.id().unwrap().ino, thread_netns_ino());
    // Clones share the descriptor and identity.
    let clone = (*ns).clone();
    assert_eq!(clone.id().unwrap(), ns.id().unwrap());
}

#[test]
fn run_sees_the_namespace() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ns = NetNsGuard::create(&unique("run")).unwrap();
    let before = thread_netns_ino();
    let ns_ino = ns.id().unwrap().ino;

    // Inside: only lo, and it is down (iproute2 leaves it down), so nothing
    // can be sent to 127.0.0.1 yet.
    let (ifs, self_ino, bind) = ns
        .run(|| {
            (
                interfaces(),
                thread_netns_ino(),
                std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"x", s.local_addr()?)),
            )
        })
        .unwrap();
    assert_eq!(thread_netns_ino(), before, "run moved the calling thread");
    assert_eq!(self_ino, ns_ino);
    assert_eq!(ifs.len(), 1, "{ifs:?}");
    assert_eq!(ifs[0].0, "lo");
    assert!(!ifs[0].1.contains(InterfaceFlags::IFF_UP), "{ifs:?}");
    assert_eq!(bind.unwrap_err().raw_os_error(), Some(libc::ENETUNREACH));

    // Bring lo up and add a veth through a handle; `run` sees both.
    let veth = unique("r");
    let veth = &veth[veth.len().saturating_sub(12)..];
    let peer = format!("{veth}p");
    rt.block_on(async {
        let h = ns.handle().await.unwrap();
        h.link_set_up("lo").await.unwrap();
        h.link_add(&Veth::new(veth, &peer)).await.unwrap();
    });
    let (ifs, bind) = ns
        .run(|| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = s.local_addr().unwrap();
            s.send_to(b"ping", to).unwrap();
            let mut buf = [0u8; 8];
            let n = s.recv(&mut buf).unwrap();
            (interfaces(), buf[..n].to_vec())
        })
        .unwrap();
    assert_eq!(bind, b"ping");
    let names: Vec<&str> = ifs.iter().map(|i| i.0.as_str()).collect();
    assert!(names.contains(&veth) && names.contains(&peer.as_str()), "{names:?}");
    let lo = ifs.iter().find(|i| i.0 == "lo").unwrap();
    assert!(lo.1.contains(InterfaceFlags::IFF_UP), "{ifs:?}");
    assert_eq!(thread_netns_ino(), before);
    // The test's own namespace does not have the veth.
    assert!(!interfaces().iter().any(|i| i.0 == veth));

    // A panic inside is reported, not propagated.
    match ns.run(|| -> u32 { panic!("boom inside netns") }) {
        Err(NetnsError::Panicked(n)) => assert!(n.contains(ns.name().unwrap()), "{n}"),
        other => panic!("panicking run: {other:?}"),
    }
    assert_eq!(thread_netns_ino(), before);
}

#[tokio::test]
async fn exec_and_run_async_stay_off_the_caller() {
    let t = TestNs::new("exec").await;
    let before = thread_netns_ino();
    let ns_ino = t.ns.id().unwrap().ino;
    let veth = unique("e");
    let veth = veth[veth.len().saturating_sub(12)..].to_string();
    t.h.link_add(&Veth::new(&veth, &format!("{veth}p"))).await.unwrap();

    let (ino, ifs) = t.ns.exec(|| (thread_netns_ino(), interfaces())).await.unwrap();
    assert_eq!(ino, ns_ino);
    assert!(ifs.iter().any(|i| i.0 == veth), "{ifs:?}");
    assert_eq!(thread_netns_ino(), before, "exec moved the calling thread");

    match t.ns.exec(|| -> u32 { panic!("boom in exec") }).await {
        Err(NetnsError::Panicked(_)) => {}
        other => panic!("panicking exec: {other:?}"),
    }

    // A TCP echo on 127.0.0.1 entirely inside the namespace.
    let want_veth = veth.clone();
    let (ino, echoed, saw_veth) =
        t.ns.run_async(move || async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            });
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"hello").await.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).await.unwrap();
            server.await.unwrap();
            let saw = interfaces().iter().any(|i| i.0 == want_veth);
            (thread_netns_ino(), buf.to_vec(), saw)
        })
        .await
        .unwrap();
    assert_eq!(ino, ns_ino);
    assert_eq!(echoed, b"hello");
    assert!(saw_veth, "run_async did not see {veth}");
    assert_eq!(thread_netns_ino(), before, "run_async moved the calling thread");

    let boom = || async {
        if thread_netns_ino() != 0 {
            panic!("boom in run_async");
        }
        0u32
    };
    match t.ns.run_async(boom).await {
        Err(NetnsError::Panicked(_)) => {}
        other => panic!("panicking run_async: {other:?}"),
    }
    assert_eq!(thread_netns_ino(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_leaves_tokio_workers_alone() {
    let t = TestNs::new("wrk").await;
    let root = NetNs::current().unwrap().id().unwrap().ino;
    for _ in 0..20 {
        let got = t.ns.exec(thread_netns_ino).await.unwrap();
        assert_eq!(got, t.ns.id().unwrap().ino);
        // Whatever worker resumes us must still be in the original namespace.
        assert_eq!(thread_netns_ino(), root);
        tokio::task::yield_now().await;
    }
    let workers: Vec<u64> = futures::future::join_all((0..8).map(|_| tokio::spawn(async { thread_netns_ino() })))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(workers.iter().all(|i| *i == root), "{workers:?}");
}

#[test]
fn invalid_names_are_rejected() {
    let long = "x".repeat(256);
    for bad in ["", "a/b", "/", "..", ".", "a\0b", long.as_str()] {
        assert!(
            matches!(NetNs::create(bad), Err(NetnsError::InvalidName(ref n)) if n == bad),
            "create {bad:?}"
        );
        assert!(
            matches!(NetNs::open(bad), Err(NetnsError::InvalidName(_))),
            "open {bad:?}"
        );
        assert!(
            matches!(NetNs::delete(bad), Err(NetnsError::InvalidName(_))),
            "delete {bad:?}"
        );
        assert!(
            matches!(NetNsGuard::create(bad), Err(NetnsError::InvalidName(_))),
            "guard {bad:?}"
        );
    }
    // 255 bytes is the longest file name and is accepted.
    let max = format!("{}{}", unique("m"), "y".repeat(255));
    let max = &max[..255];
    let g = NetNsGuard::create(max).unwrap();
    assert!(NetNs::list().unwrap().iter().any(|n| n == max));
    drop(g);
    assert!(!NetNs::list().unwrap().iter().any(|n| n == max));
}

#[test]
fn guard_deletes_on_drop_and_on_panic() {
    let name = unique("gd");
    let g = NetNsGuard::create(&name).unwrap();
    assert!(std::path::Path::new("/run/netns").join(&name).exists());
    drop(g);
    assert!(!std::path::Path::new("/run/netns").join(&name).exists());
    assert!(!ip_netns_list().contains(&name));

    let name2 = unique("gp");
    let n2 = name2.clone();
    let joined = std::thread::spawn(move || {
        let _g = NetNsGuard::create(&n2).unwrap();
        assert!(NetNs::list().unwrap().contains(&n2));
        panic!("test panic while holding a guard");
    })
    .join();
    assert!(joined.is_err());
    assert!(!NetNs::list().unwrap().contains(&name2), "{name2} leaked after panic");

    let name3 = unique("gc");
    let r = std::panic::catch_unwind(|| {
        let _g = NetNsGuard::create(&name3).unwrap();
        panic!("caught");
    });
    assert!(r.is_err());
    assert!(
        !NetNs::list().unwrap().contains(&name3),
        "{name3} leaked after caught panic"
    );
}

#[test]
fn guard_recreate_replaces_a_leftover() {
    let name = unique("rc");
    let leftover = NetNs::create(&name).unwrap();
    let old = leftover.id().unwrap();
    let g = NetNsGuard::recreate(&name).unwrap();
    assert_ne!(g.id().unwrap(), old);
    assert_eq!(NetNs::open(&name).unwrap().id().unwrap(), g.id().unwrap());
    drop(g);
    assert!(!NetNs::list().unwrap().contains(&name));
    // Recreate of a name that does not exist just creates.
    let g = NetNsGuard::recreate(&name).unwrap();
    assert!(NetNs::list().unwrap().contains(&name));
    drop(g);
}

#[tokio::test]
async fn handle_acts_only_in_its_namespace() {
    let a = TestNs::new("ha").await;
    let b = TestNs::new("hb").await;
    assert_eq!(a.h.netns().id().unwrap(), a.ns.id().unwrap());
    assert_eq!(b.h.netns().id().unwrap(), b.ns.id().unwrap());

    let name = unique("h");
    let name = &name[name.len().saturating_sub(12)..];
    let peer = format!("{name}p");
    a.h.link_add(&Veth::new(name, &peer)).await.unwrap();

    assert!(a.h.link_get(name).await.is_ok());
    assert!(a.sh(&format!("ip -o link show {name}")).contains(name));
    let e = b.h.link_get(name).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(!b.try_sh(&format!("ip link show {name}")));
    assert!(!b
        .h
        .link_list()
        .await
        .unwrap()
        .iter()
        .any(|l| l.name == *name || l.name == peer));
    // Nor in the test process's own namespace (checked without changing it).
    assert!(!interfaces().iter().any(|i| i.0 == name));

    // A second handle on the same namespace sees the same links.
    let a2 = a.ns.handle().await.unwrap();
    assert_eq!(a2.link_index(name).await.unwrap(), a.h.link_index(name).await.unwrap());
}

#[test]
fn concurrent_create_of_one_name_has_one_winner() {
    let name = unique("race");
    let results: Vec<Result<NetNs, NetnsError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| NetNs::create(&name))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&NetNs> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let losers = results
        .iter()
        .filter(|r| matches!(r, Err(NetnsError::Exists(_))))
        .count();
    NetNs::delete(&name).unwrap();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(losers, 7, "{results:?}");
}

/// A path that is no network namespace is refused (EINVAL), a FIFO without hanging: CNI_NETNS
/// comes from a runtime, and a FIFO planted there must not block a plugin forever.
#[test]
fn open_path_refuses_what_is_no_network_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let probe = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(NetNs::open_path(&probe).map(drop).map_err(|e| e.errno()));
    });
    let fifo_result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("opening a FIFO as a namespace hangs");
    assert_eq!(fifo_result, Err(Some(libc::EINVAL)), "FIFO");
    for path in [file.as_path(), "/proc/self/ns/uts".as_ref(), "/dev/null".as_ref()] {
        let e = NetNs::open_path(path).map(drop).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL), "{}: {e}", path.display());
        assert!(e.to_string().contains("not a network namespace"), "{e}");
    }
    let g = NetNsGuard::create(&unique("nsok")).unwrap();
    assert_eq!(NetNs::open_path(g.path()).unwrap().id().unwrap(), g.id().unwrap());
}
