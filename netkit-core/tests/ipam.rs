//! Integration tests of `netkit_core::ipam` on real files: every test works in its own temporary
//! directory, compares what the allocator reports with what is on disk, and the host-local tests
//! run the real reference plugin (`/usr/lib/cni/host-local`, Debian's containernetworking-plugins).
//!
//! The property test of the allocator against a model, with simulated crashes, lives in
//! `src/ipam/tests.rs`; these tests cover what it does not: the public API end to end, error
//! messages, persistence across reopen, damaged files, threads and processes sharing one store,
//! and migration from a directory host-local itself wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};

use netkit_core::ipam::{Dns, Ipam, IpamConfig, IpamError, Owner, Pool, PoolRoute, StoreCheck, StoreOptions};
use netkit_test_support::lit::ip;
use netkit_test_support::tempdir;
use serde_json::json;

fn owner(id: &str, ifname: &str) -> Owner {
    Owner::new(id, ifname).unwrap_or_else(|e| panic!("owner {id}/{ifname}: {e}"))
}

/// A pool from host-local's `ipam` JSON.
fn pool(name: &str, ipam: serde_json::Value) -> Pool {
    IpamConfig::from_json(&ipam.to_string())
        .expect("config parses")
        .pool(name)
        .expect("config validates")
}

fn open(pool: &Pool, data_dir: &Path) -> Ipam {
    Ipam::open(pool.clone(), data_dir, StoreOptions::default()).expect("open store")
}

/// Every file and directory under `dir` (relative path → contents, `None` for a directory).
fn snapshot(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// [`snapshot`] of a store without its lock shards (`lock/<n>`): empty files created the first
/// time an owner of that shard takes its lock; they carry no record.
fn records_snapshot(store_dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut s = snapshot(store_dir);
    // Not records: empty lock files, and spare files (released records kept for reuse as
    // scratch files; a refused call may park the scratch file it wrote there).
    s.retain(|k, _| !k.starts_with("lock/") && !k.starts_with("spare/"));
    s
}

/// The single address of each set an allocation holds, as text with its prefix.
fn addrs(a: &netkit_core::ipam::Allocation) -> Vec<String> {
    a.ips.iter().map(|i| i.address.to_string()).collect()
}

fn assert_clean(ipam: &Ipam, held: usize, owners: usize) {
    let check = ipam.check().expect("check reads the store");
    assert_eq!(
        check,
        StoreCheck {
            held,
            owners,
            stale_intents: 0,
            problems: Vec::new(),
        }
    );
}

/// Join every thread, then re-raise the first panic: no thread outlives a failing test and its
/// temporary directory.
fn join_all<T>(handles: Vec<std::thread::JoinHandle<T>>) -> Vec<T> {
    let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        .collect()
}

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

/// Run the reference host-local plugin as CNI runs an IPAM plugin; returns its JSON result
/// (`Null` for DEL, which prints nothing). Panics when the binary is missing or fails.
fn host_local(command: &str, data_dir: &Path, net: &str, container: &str, ifname: &str) -> serde_json::Value {
    assert!(
        Path::new(HOST_LOCAL).is_file(),
        "{HOST_LOCAL} is missing: this test needs the reference host-local plugin \
         (Debian package containernetworking-plugins, which .ci/run installs)"
    );
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": net,
        "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": "10.77.0.0/24"}]]},
    });
    let mut child = Command::new(HOST_LOCAL)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", "/var/run/netns/netkit-ipam-test")
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {HOST_LOCAL}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "host-local {command} {container}/{ifname} failed ({}): {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout.trim().is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("host-local printed {stdout:?}: {e}"))
}

// 1.
#[test]
fn dual_stack_pool_gives_one_address_per_family_with_prefix_gateway_routes_and_dns() {
    let dir = tempdir("dualstack");
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "# written by the test\nnameserver 10.61.0.53\nnameserver fd61::53\ndomain cluster.local\n\
         search ns1.svc.cluster.local svc.cluster.local\noptions ndots:5 edns0\n",
    )
    .unwrap();
    let cfg = IpamConfig::from_json(
        &json!({
            "ranges": [
                [{"subnet": "10.61.0.0/24", "gateway": "10.61.0.254"}],
                [{"subnet": "fd61::/64"}],
            ],
            "routes": [
                {"dst": "0.0.0.0/0"},
                {"dst": "192.168.0.0/16", "gw": "10.61.0.254"},
                {"dst": "::/0", "gw": "fd61::1"},
            ],
            "dataDir": dir.path().join("data"),
            "resolvConf": resolv,
        })
        .to_string(),
    )
    .unwrap();
    let pool = cfg.pool("dual").unwrap();
    let ipam = Ipam::open(pool, cfg.data_dir.as_deref().unwrap(), StoreOptions::default())
        .unwrap()
        .with_dns(cfg.dns().unwrap());

    let got = ipam.allocate(&owner("dual1", "eth0"), &[]).unwrap();
    // The v4 set starts at network + 1 (the gateway is elsewhere), the v6 set skips its gateway.
    assert_eq!(addrs(&got), ["10.61.0.1/24", "fd61::2/64"]);
    assert_eq!(got.ips[0].gateway, ip("10.61.0.254"));
    assert_eq!(got.ips[1].gateway, ip("fd61::1"));
    assert_eq!(got.ips.iter().map(|i| i.set).collect::<Vec<_>>(), [0, 1]);
    assert!(got.ips[0].address.is_ipv4() && got.ips[1].address.is_ipv6());
    assert_eq!(
        got.routes,
        [
            PoolRoute {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: None
            },
            PoolRoute {
                dst: "192.168.0.0/16".parse().unwrap(),
                gw: Some(ip("10.61.0.254"))
            },
            PoolRoute {
                dst: "::/0".parse().unwrap(),
                gw: Some(ip("fd61::1"))
            },
        ]
    );
    assert_eq!(
        got.dns,
        Some(Dns {
            nameservers: vec!["10.61.0.53".into(), "fd61::53".into()],
            domain: Some("cluster.local".into()),
            search: vec!["ns1.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into(), "edns0".into()],
        })
    );
    // The store agrees: the owner holds exactly these two.
    let mut held = ipam.lookup(&owner("dual1", "eth0")).unwrap();
    held.sort();
    assert_eq!(held, [ip("10.61.0.1"), ip("fd61::2")]);
    assert_clean(&ipam, 2, 1);
}

// 2.
#[test]
fn network_broadcast_and_gateway_are_never_handed_out_and_exhaustion_names_pool_and_set() {
    let dir = tempdir("exhaust");
    // 10.62.0.0/29: network .0, broadcast .7, gateway .4 in the middle.
    let pool = pool(
        "exhaust-net",
        json!({"ranges": [[{"subnet": "10.62.0.0/29", "gateway": "10.62.0.4"}]]}),
    );
    let ipam = open(&pool, dir.path());
    let mut handed = Vec::new();
    for i in 0..5 {
        let got = ipam.allocate(&owner(&format!("ex{i}"), "eth0"), &[]).unwrap();
        assert_eq!(got.ips.len(), 1);
        assert_eq!(got.ips[0].address.prefix(), 29);
        assert_eq!(got.ips[0].gateway, ip("10.62.0.4"));
        handed.push(got.ips[0].address.ip());
    }
    // Host-local order from the start of the range, skipping the gateway.
    assert_eq!(
        handed,
        ["10.62.0.1", "10.62.0.2", "10.62.0.3", "10.62.0.5", "10.62.0.6"].map(ip)
    );
    for reserved in ["10.62.0.0", "10.62.0.4", "10.62.0.7"] {
        assert_eq!(ipam.holder(ip(reserved)).unwrap(), None, "{reserved} was handed out");
    }

    let store_dir = dir.path().join("exhaust-net");
    let before = records_snapshot(&store_dir);
    let err = ipam.allocate(&owner("ex5", "eth0"), &[]).unwrap_err();
    match &err {
        IpamError::Exhausted { pool, set } => {
            assert_eq!(pool, "exhaust-net");
            assert_eq!(set, "10.62.0.1-10.62.0.6");
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert!(err.is_exhausted());
    let msg = err.to_string();
    assert!(
        msg.contains("\"exhaust-net\"") && msg.contains("10.62.0.1-10.62.0.6"),
        "{msg}"
    );
    assert!(ipam.lookup(&owner("ex5", "eth0")).unwrap().is_empty());
    assert_eq!(
        records_snapshot(&store_dir),
        before,
        "a failed allocation changed the store"
    );

    // The pool recovers: the one released address is the only one left to hand out.
    assert_eq!(ipam.release(&owner("ex2", "eth0")).unwrap(), [ip("10.62.0.3")]);
    let got = ipam.allocate(&owner("ex5", "eth0"), &[]).unwrap();
    assert_eq!(addrs(&got), ["10.62.0.3/29"]);
    assert_clean(&ipam, 5, 5);
}

// 3.
#[test]
fn same_owner_gets_same_addresses_and_each_interface_is_its_own_owner() {
    let dir = tempdir("sameowner");
    let pool = pool(
        "same",
        json!({"ranges": [[{"subnet": "10.63.0.0/24"}], [{"subnet": "fd63::/120"}]]}),
    );
    let ipam = open(&pool, dir.path());
    let eth0 = owner("ctr-same", "eth0");
    let first = ipam.allocate(&eth0, &[]).unwrap();
    assert!(first.held_before.is_empty(), "the first allocation claimed everything");
    let again = ipam.allocate(&eth0, &[]).unwrap();
    assert_eq!(first.ips, again.ips);
    // The second call says the owner held them already: a caller undoing a failed second
    // request (a duplicate CNI ADD) must not release them.
    let held: Vec<IpAddr> = first.ips.iter().map(|i| i.address.ip()).collect();
    assert_eq!(again.held_before, held);
    // Through another instance too (another process would do the same).
    assert_eq!(open(&pool, dir.path()).allocate(&eth0, &[]).unwrap().ips, first.ips);
    assert_eq!(
        ipam.list().unwrap().len(),
        2,
        "a repeated ADD must not take more addresses"
    );

    let net1 = owner("ctr-same", "net1");
    let second_if = ipam.allocate(&net1, &[]).unwrap();
    for (a, b) in first.ips.iter().zip(&second_if.ips) {
        assert_ne!(a.address, b.address, "two interfaces of one container share an address");
    }
    let lookup = |o: &Owner| {
        let mut v = ipam.lookup(o).unwrap();
        v.sort();
        v
    };
    let mut want0: Vec<IpAddr> = first.ips.iter().map(|i| i.address.ip()).collect();
    let mut want1: Vec<IpAddr> = second_if.ips.iter().map(|i| i.address.ip()).collect();
    want0.sort();
    want1.sort();
    assert_eq!(lookup(&eth0), want0);
    assert_eq!(lookup(&net1), want1);
    // Releasing one interface leaves the other's addresses alone.
    ipam.release(&net1).unwrap();
    assert_eq!(lookup(&eth0), want0);
    assert!(lookup(&net1).is_empty());
    assert_eq!(ipam.allocate(&eth0, &[]).unwrap().ips, first.ips);
    assert_clean(&ipam, 2, 1);
}

// 4.
#[test]
fn records_and_round_robin_position_survive_reopen() {
    let dir = tempdir("persist");
    let pool = pool("persist", json!({"ranges": [[{"subnet": "10.64.0.0/24"}]]}));
    let (a, b, c, d) = (
        owner("pa", "eth0"),
        owner("pb", "eth0"),
        owner("pc", "eth0"),
        owner("pd", "eth0"),
    );
    {
        let ipam = open(&pool, dir.path());
        for (o, want) in [(&a, "10.64.0.2/24"), (&b, "10.64.0.3/24"), (&c, "10.64.0.4/24")] {
            assert_eq!(addrs(&ipam.allocate(o, &[]).unwrap()), [want]);
        }
    }
    let listed;
    {
        let ipam = open(&pool, dir.path());
        assert_eq!(ipam.lookup(&a).unwrap(), [ip("10.64.0.2")]);
        assert_eq!(ipam.lookup(&b).unwrap(), [ip("10.64.0.3")]);
        assert_eq!(ipam.lookup(&c).unwrap(), [ip("10.64.0.4")]);
        assert_eq!(ipam.holder(ip("10.64.0.3")).unwrap(), Some(b.clone()));
        assert_eq!(ipam.holder(ip("10.64.0.5")).unwrap(), None);
        // Release the last address handed out.
        assert_eq!(ipam.release(&c).unwrap(), [ip("10.64.0.4")]);
        listed = ipam.list().unwrap();
        assert_eq!(listed, [(ip("10.64.0.2"), a.clone()), (ip("10.64.0.3"), b.clone())]);
    }
    let ipam = open(&pool, dir.path());
    assert_eq!(ipam.list().unwrap(), listed);
    // Round robin goes on after 10.64.0.4 instead of reusing it (nor the low free addresses).
    assert_eq!(addrs(&ipam.allocate(&d, &[]).unwrap()), ["10.64.0.5/24"]);
    assert_eq!(addrs(&ipam.allocate(&c, &[]).unwrap()), ["10.64.0.6/24"]);
    assert_clean(&ipam, 4, 4);
}

// 5.
#[test]
fn static_requests_are_granted_or_refused_with_the_right_error_and_no_change() {
    let dir = tempdir("static");
    let pool = pool(
        "static",
        json!({"ranges": [
            [{"subnet": "10.65.0.0/24", "rangeStart": "10.65.0.10", "rangeEnd": "10.65.0.20", "gateway": "10.65.0.15"}],
            [{"subnet": "fd65::/120"}],
        ]}),
    );
    let ipam = open(&pool, dir.path());
    let store_dir = dir.path().join("static");
    let (a, b) = (owner("sa", "eth0"), owner("sb", "eth0"));

    // Granted: free and in range; the other set hands out its next address.
    let got = ipam.allocate(&a, &[ip("10.65.0.12")]).unwrap();
    assert_eq!(addrs(&got), ["10.65.0.12/24", "fd65::2/120"]);
    assert_eq!(ipam.holder(ip("10.65.0.12")).unwrap(), Some(a.clone()));
    // Asking again for what one holds is granted and changes nothing.
    assert_eq!(
        ipam.allocate(&a, &[ip("10.65.0.12"), ip("fd65::2")]).unwrap().ips,
        got.ips
    );

    let expect_unchanged = |what: &str, requested: &[IpAddr], who: &Owner| -> IpamError {
        let list = ipam.list().unwrap();
        let files = records_snapshot(&store_dir);
        let err = ipam.allocate(who, requested).expect_err(what);
        assert_eq!(ipam.list().unwrap(), list, "{what}: held addresses changed");
        assert_eq!(records_snapshot(&store_dir), files, "{what}: store files changed");
        err
    };

    // Held by another owner: InUse, naming the holder.
    let err = expect_unchanged("in use", &[ip("10.65.0.12")], &b);
    match &err {
        IpamError::InUse { ip: i, pool, holder } => {
            assert_eq!(
                (*i, pool.as_str(), holder.as_ref()),
                (ip("10.65.0.12"), "static", Some(&a))
            );
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    assert!(err.to_string().contains("container sa interface eth0"), "{err}");
    // The same, when the other request of the call had been granted first: it is rolled back.
    let err = expect_unchanged("in use after a grant", &[ip("fd65::9"), ip("10.65.0.12")], &b);
    assert!(matches!(err, IpamError::InUse { .. }), "{err:?}");
    assert_eq!(ipam.holder(ip("fd65::9")).unwrap(), None);
    assert!(ipam.lookup(&b).unwrap().is_empty());

    // Outside every range: below rangeStart, above rangeEnd, another subnet.
    for outside in ["10.65.0.9", "10.65.0.21", "10.99.0.1", "fd66::1"] {
        match expect_unchanged("outside", &[ip(outside)], &b) {
            IpamError::OutsidePool { ip: i, pool } => assert_eq!((i, pool.as_str()), (ip(outside), "static")),
            other => panic!("{outside}: expected OutsidePool, got {other:?}"),
        }
    }

    // The gateway lies inside the range: Reserved.
    for reserved in ["10.65.0.15", "fd65::1"] {
        match expect_unchanged("gateway", &[ip(reserved)], &b) {
            IpamError::Reserved { ip: i, pool } => assert_eq!((i, pool.as_str()), (ip(reserved), "static")),
            other => panic!("{reserved}: expected Reserved, got {other:?}"),
        }
    }

    // Two requests in one set.
    match expect_unchanged("same set", &[ip("10.65.0.11"), ip("10.65.0.13")], &b) {
        IpamError::SameSet { a: x, b: y, set, pool } => {
            assert_eq!((x, y), (ip("10.65.0.11"), ip("10.65.0.13")));
            assert_eq!((set.as_str(), pool.as_str()), ("10.65.0.10-10.65.0.20", "static"));
        }
        other => panic!("expected SameSet, got {other:?}"),
    }

    // The owner already holds another address of that set.
    match expect_unchanged("already holds", &[ip("10.65.0.13")], &a) {
        IpamError::AlreadyHolds {
            owner: o,
            held,
            asked,
            pool,
        } => {
            assert_eq!(o, a);
            assert_eq!(
                (held, asked, pool.as_str()),
                (ip("10.65.0.12"), ip("10.65.0.13"), "static")
            );
        }
        other => panic!("expected AlreadyHolds, got {other:?}"),
    }
    assert_eq!(ipam.lookup(&a).unwrap(), [ip("10.65.0.12"), ip("fd65::2")]);
    assert!(ipam.lookup(&b).unwrap().is_empty());
    assert_clean(&ipam, 2, 1);
}

// 5, continued: what `IpamError::Reserved` documents ("a network, broadcast or gateway address").
#[test]
fn static_request_for_network_or_broadcast_address_is_reserved() {
    let dir = tempdir("static-netbcast");
    let pool = pool(
        "netbcast",
        json!({"ranges": [[{"subnet": "10.69.0.0/24"}], [{"subnet": "fd69::/120"}]]}),
    );
    let ipam = open(&pool, dir.path());
    let store_dir = dir.path().join("netbcast");
    ipam.allocate(&owner("nb0", "eth0"), &[]).unwrap();
    let who = owner("nb1", "eth0");
    for reserved in ["10.69.0.0", "10.69.0.255", "fd69::"] {
        let files = records_snapshot(&store_dir);
        let err = ipam.allocate(&who, &[ip(reserved)]).unwrap_err();
        assert_eq!(records_snapshot(&store_dir), files, "{reserved}: store changed");
        assert!(
            matches!(&err, IpamError::Reserved { ip: i, .. } if *i == ip(reserved)),
            "{reserved} is the network or broadcast address of the pool's subnet: expected Reserved, got {err:?} ({err})"
        );
    }
}

// 6.
#[test]
fn failed_allocation_in_one_set_releases_what_other_sets_claimed() {
    let dir = tempdir("allornothing");
    // The v6 set is listed first, so a v6 address is claimed before the v4 set (one free
    // address: 10.66.0.2; .1 is the gateway) runs dry.
    let pool = pool(
        "aon",
        json!({"ranges": [[{"subnet": "fd66::/120"}], [{"subnet": "10.66.0.0/30"}]]}),
    );
    let ipam = open(&pool, dir.path());
    let (a, b) = (owner("aon-a", "eth0"), owner("aon-b", "eth0"));
    assert_eq!(addrs(&ipam.allocate(&a, &[]).unwrap()), ["fd66::2/120", "10.66.0.2/30"]);

    let err = ipam.allocate(&b, &[]).unwrap_err();
    match &err {
        IpamError::Exhausted { pool, set } => assert_eq!((pool.as_str(), set.as_str()), ("aon", "10.66.0.1-10.66.0.2")),
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert!(ipam.lookup(&b).unwrap().is_empty());
    // The v6 address b got before the v4 set failed is free again, on disk too.
    assert_eq!(ipam.holder(ip("fd66::3")).unwrap(), None);
    let store_dir = dir.path().join("aon");
    assert!(!store_dir.join("ip/fd66::3").exists());
    assert!(!store_dir.join("owner/aon-b:eth0").exists());
    assert_eq!(
        ipam.list().unwrap(),
        [(ip("10.66.0.2"), a.clone()), (ip("fd66::2"), a.clone())]
    );
    assert_clean(&ipam, 2, 1);

    // Once a releases, b gets a full pair.
    ipam.release(&a).unwrap();
    let got = ipam.allocate(&b, &[]).unwrap();
    assert_eq!(got.ips.len(), 2);
    assert_eq!(got.ips[1].address.to_string(), "10.66.0.2/30");
    assert_clean(&ipam, 2, 1);
}

/// 32 threads, each with its own `Ipam` over the same directory, allocate for 8 owners each.
fn allocate_from_threads(pool: &Pool, data_dir: &Path) -> Vec<(Owner, Result<IpAddr, IpamError>)> {
    const THREADS: usize = 32;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, dir, barrier) = (pool.clone(), data_dir.to_path_buf(), barrier.clone());
            std::thread::spawn(move || {
                let ipam = Ipam::open(pool, &dir, StoreOptions::default()).unwrap();
                barrier.wait();
                (0..8)
                    .map(|k| {
                        let o = owner(&format!("thr{t}-{k}"), "eth0");
                        let r = ipam.allocate(&o, &[]).map(|a| {
                            assert_eq!(a.ips.len(), 1);
                            a.ips[0].address.ip()
                        });
                        (o, r)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    join_all(handles).into_iter().flatten().collect()
}

// 7.
#[test]
fn threads_with_separate_instances_get_distinct_addresses_and_release_everything() {
    let dir = tempdir("threads");
    // 256 owners need more than a /24 (253 assignable): a /23 has 509.
    let pool = pool("threads", json!({"ranges": [[{"subnet": "10.67.0.0/23"}]]}));
    let ipam = open(&pool, dir.path());
    let got: Vec<(Owner, IpAddr)> = allocate_from_threads(&pool, dir.path())
        .into_iter()
        .map(|(o, r)| {
            let ip = r.unwrap_or_else(|e| panic!("{o}: {e}"));
            (o, ip)
        })
        .collect();
    assert_eq!(got.len(), 256);
    let distinct: BTreeSet<IpAddr> = got.iter().map(|(_, ip)| *ip).collect();
    assert_eq!(distinct.len(), 256, "an address was handed out twice");
    let set = &ipam.pool().sets()[0];
    for ip in &distinct {
        assert!(set.assignable(*ip), "{ip} is not assignable");
    }
    let mut want: Vec<(IpAddr, Owner)> = got.iter().map(|(o, ip)| (*ip, o.clone())).collect();
    want.sort();
    assert_eq!(ipam.list().unwrap(), want);
    for (o, ip) in &got {
        assert_eq!(ipam.lookup(o).unwrap(), [*ip]);
    }
    assert_clean(&ipam, 256, 256);

    // Concurrent releases, again through separate instances.
    let got = Arc::new(got);
    let handles: Vec<_> = (0..32)
        .map(|t| {
            let (pool, dir, got) = (pool.clone(), dir.path().to_path_buf(), got.clone());
            std::thread::spawn(move || {
                let ipam = Ipam::open(pool, &dir, StoreOptions::default()).unwrap();
                for (o, ip) in got.iter().skip(t * 8).take(8) {
                    assert_eq!(ipam.release(o).unwrap(), [*ip], "{o}");
                }
            })
        })
        .collect();
    join_all(handles);
    assert!(ipam.list().unwrap().is_empty());
    assert_clean(&ipam, 0, 0);
    assert!(std::fs::read_dir(dir.path().join("threads/tmp"))
        .unwrap()
        .next()
        .is_none());
}

// 7, at the limit: more owners than addresses, all at once.
#[test]
fn threads_racing_for_a_full_24_get_all_253_addresses_and_the_rest_exhausted() {
    let dir = tempdir("threads-full");
    let pool = pool("full24", json!({"ranges": [[{"subnet": "10.68.0.0/24"}]]}));
    let ipam = open(&pool, dir.path());
    let results = allocate_from_threads(&pool, dir.path());
    let mut won = BTreeMap::new();
    let mut lost = Vec::new();
    for (o, r) in results {
        match r {
            Ok(ip) => assert!(won.insert(ip, o).is_none(), "{ip} handed out twice"),
            Err(e) if e.is_exhausted() => lost.push(o),
            Err(e) => panic!("{o}: {e}"),
        }
    }
    assert_eq!(won.len(), 253, "every assignable address of the /24 is handed out");
    assert_eq!(lost.len(), 3);
    let all: BTreeSet<IpAddr> = (2..=254).map(|i| ip(&format!("10.68.0.{i}"))).collect();
    assert_eq!(won.keys().copied().collect::<BTreeSet<_>>(), all);
    for o in &lost {
        assert!(ipam.lookup(o).unwrap().is_empty(), "{o} failed but holds something");
    }
    assert_eq!(ipam.list().unwrap(), won.into_iter().collect::<Vec<_>>());
    assert_clean(&ipam, 253, 253);
}

// 7, across processes: this test runs itself as 4 child processes (the same test binary,
// this test only) that allocate beside the parent, each with its own pid in scratch names.
#[test]
fn processes_sharing_one_store_get_distinct_addresses() {
    const CHILD: &str = "NETKIT_IPAM_IT_CHILD";
    let pool = pool(
        "procs",
        json!({"ranges": [[{"subnet": "10.76.0.0/24"}], [{"subnet": "fd76::/120"}]]}),
    );
    let alloc = |ipam: &Ipam, tag: &str| -> Vec<(Owner, Vec<IpAddr>)> {
        (0..24)
            .map(|k| {
                let o = owner(&format!("{tag}-{k}"), "eth0");
                let got = ipam.allocate(&o, &[]).unwrap_or_else(|e| panic!("{o}: {e}"));
                (o, got.ips.iter().map(|i| i.address.ip()).collect())
            })
            .collect()
    };
    if let Ok(spec) = std::env::var(CHILD) {
        let (data, tag) = spec.rsplit_once('|').expect("child spec");
        for (o, ips) in alloc(&open(&pool, Path::new(data)), tag) {
            let ips: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
            println!("NKIPAM {} {}", o.container_id(), ips.join(","));
        }
        return;
    }
    let dir = tempdir("procs");
    let ipam = open(&pool, dir.path()); // the store exists before the children start
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|c| {
            Command::new(&exe)
                .args(["--exact", "processes_sharing_one_store_get_distinct_addresses"])
                .args(["--nocapture", "--test-threads=1"])
                .env(CHILD, format!("{}|proc{c}", dir.path().display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a child test process")
        })
        .collect();
    let mut got: BTreeMap<String, Vec<IpAddr>> = alloc(&ipam, "parent")
        .into_iter()
        .map(|(o, ips)| (o.container_id().to_string(), ips))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libtest prints "test <name> ... " before the first line, without a newline.
        for line in stdout.lines().filter_map(|l| l.split_once("NKIPAM ").map(|(_, r)| r)) {
            let (id, ips) = line.split_once(' ').unwrap();
            got.insert(id.to_string(), ips.split(',').map(ip).collect());
        }
    }
    assert_eq!(got.len(), 5 * 24, "every owner of every process reported");
    let all: BTreeSet<IpAddr> = got.values().flatten().copied().collect();
    assert_eq!(all.len(), 2 * 5 * 24, "an address was handed out twice");
    for (id, ips) in &got {
        assert_eq!(ips.len(), 2);
        let mut held = ipam.lookup(&owner(id, "eth0")).unwrap();
        held.sort();
        let mut ips = ips.clone();
        ips.sort();
        assert_eq!(held, ips, "{id}");
    }
    assert_clean(&ipam, 2 * 5 * 24, 5 * 24);
}

// 8 (a).
/// Files in the store's `quarantine/` whose name ends with `name`, with their contents.
fn quarantined(store_dir: &Path, name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for (rel, content) in snapshot(&store_dir.join("quarantine")) {
        if let Some(bytes) = content {
            if rel.ends_with(&format!("/{name}")) {
                out.push((store_dir.join("quarantine").join(rel), bytes));
            }
        }
    }
    out
}

#[test]
fn truncated_owner_file_is_quarantined_and_the_owner_still_released() {
    let dir = tempdir("corrupt-owner");
    let pool = pool(
        "corrupt",
        json!({"ranges": [[{"subnet": "10.71.0.0/24"}], [{"subnet": "fd71::/120"}]]}),
    );
    let ipam = open(&pool, dir.path());
    let (bad, good, again) = (
        owner("c-bad", "eth0"),
        owner("c-good", "eth0"),
        owner("c-again", "eth0"),
    );
    let mut bad_ips: Vec<IpAddr> = ipam
        .allocate(&bad, &[])
        .unwrap()
        .ips
        .iter()
        .map(|i| i.address.ip())
        .collect();
    bad_ips.sort();
    let good_got = ipam.allocate(&good, &[]).unwrap();
    let again_got = ipam.allocate(&again, &[]).unwrap();

    // A power cut leaves an owner file cut short.
    let store_dir = dir.path().join("corrupt");
    let path = store_dir.join("owner").join("c-bad:eth0");
    let bytes = std::fs::read(&path).expect("the owner file is where the docs say");
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();

    // Release goes on: the damaged file is moved aside and what the owner holds (its address
    // files name it) is released.
    let mut released = ipam.release(&bad).expect("release of an owner with a damaged record");
    released.sort();
    assert_eq!(released, bad_ips);
    assert!(!path.exists(), "the damaged record is still in place");
    let q = quarantined(&store_dir, "c-bad:eth0");
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(
        q[0].1,
        &bytes[..bytes.len() - 3],
        "the quarantined file is the damaged one"
    );
    for ip in &bad_ips {
        assert_eq!(ipam.holder(*ip).unwrap(), None);
    }
    assert!(
        ipam.release(&bad).unwrap().is_empty(),
        "a second release has nothing left"
    );

    // An empty record (the other common leftover of a power cut): the owner keeps what it
    // holds, an allocation gives the same addresses back, and the record is whole again.
    let path = store_dir.join("owner").join("c-again:eth0");
    std::fs::write(&path, "").unwrap();
    assert_eq!(ipam.allocate(&again, &[]).unwrap().ips, again_got.ips);
    assert_eq!(quarantined(&store_dir, "c-again:eth0").len(), 1);
    assert_eq!(ipam.allocate(&good, &[]).unwrap().ips, good_got.ips);
    assert_clean(&ipam, 4, 2);
}

// 8 (b).
#[test]
fn garbage_address_file_is_quarantined_and_gc_goes_on() {
    let dir = tempdir("corrupt-ip");
    let pool = pool("corrupt-ip", json!({"ranges": [[{"subnet": "10.72.0.0/24"}]]}));
    let ipam = open(&pool, dir.path());
    let (x, y, z) = (owner("cx", "eth0"), owner("cy", "eth0"), owner("cz", "eth0"));
    for o in [&x, &y, &z] {
        ipam.allocate(o, &[]).unwrap();
    }
    let store_dir = dir.path().join("corrupt-ip");
    let path = store_dir.join("ip").join("10.72.0.3"); // y's address
    assert!(path.is_file());
    std::fs::write(&path, "this is not a record\n").unwrap();
    // A file whose name is no address at all.
    std::fs::write(store_dir.join("ip").join("not-an-address"), "junk\n").unwrap();

    // GC with only x valid releases z (and y, whose address record is gone) and goes on past
    // the damaged files.
    let report = ipam
        .gc(std::slice::from_ref(&x))
        .expect("gc goes on past damaged records");
    assert_eq!(report.released_ips(), [ip("10.72.0.4")]);
    assert!(!path.exists());
    let q = quarantined(&store_dir, "10.72.0.3");
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].1, b"this is not a record\n");
    let junk = quarantined(&store_dir, "not-an-address");
    assert_eq!(junk.len(), 1);
    let mut reported = report.quarantined.clone();
    reported.sort();
    let mut want = vec![q[0].0.clone(), junk[0].0.clone()];
    want.sort();
    assert_eq!(reported, want, "GC reports where each damaged file went");
    assert_eq!(ipam.lookup(&x).unwrap(), [ip("10.72.0.2")]);
    assert!(ipam.lookup(&y).unwrap().is_empty() && ipam.lookup(&z).unwrap().is_empty());
    assert_clean(&ipam, 1, 1);
    // The damaged address is free again.
    assert_eq!(ipam.holder(ip("10.72.0.3")).unwrap(), None);
    let got = ipam.allocate(&owner("cv", "eth0"), &[ip("10.72.0.3")]).unwrap();
    assert_eq!(addrs(&got), ["10.72.0.3/24"]);
}

// 9.
#[test]
fn open_refuses_a_host_local_directory_and_a_foreign_marker() {
    let dir = tempdir("notastore");
    host_local("ADD", dir.path(), "hlnet", "nas1", "eth0");
    let hl_dir = dir.path().join("hlnet");
    let before = snapshot(&hl_dir);
    assert!(before.contains_key("10.77.0.2"), "host-local wrote {:?}", before.keys());
    let pool = pool("hlnet", json!({"ranges": [[{"subnet": "10.77.0.0/24"}]]}));
    match Ipam::open(pool.clone(), dir.path(), StoreOptions::default()) {
        Err(IpamError::NotAStore { dir: d, reason }) => {
            assert_eq!(d, hl_dir);
            assert!(reason.contains("host-local"), "{reason}");
        }
        other => panic!("expected NotAStore, got {other:?}"),
    }
    assert_eq!(snapshot(&hl_dir), before, "open wrote into a foreign directory");

    // A marker of another version is refused too.
    let other = tempdir("notastore-marker");
    let store = other.path().join("hlnet");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("netkit-ipam"), "nk2\n").unwrap();
    match Ipam::open(pool, other.path(), StoreOptions::default()) {
        Err(IpamError::NotAStore { dir: d, reason }) => {
            assert_eq!(d, store);
            assert!(reason.contains("nk2"), "{reason}");
        }
        other => panic!("expected NotAStore, got {other:?}"),
    }
    assert_eq!(snapshot(&store).len(), 1);
}

// 9, the other side: a new store opened by several processes at once is a netkit store for
// every one of them, whatever the first of them already did with it.
#[test]
fn concurrent_first_opens_of_a_new_store_all_succeed() {
    // A race: one round rarely hits it, so run rounds (fresh directory each) for a while.
    let pool = pool("firstopen", json!({"ranges": [[{"subnet": "10.75.0.0/24"}]]}));
    let start = std::time::Instant::now();
    let mut round = 0;
    while round < 600 && start.elapsed() < std::time::Duration::from_secs(8) {
        let dir = tempdir("firstopen");
        let barrier = Arc::new(Barrier::new(9));
        let handles: Vec<_> = (0..9)
            .map(|t| {
                let (pool, data, barrier) = (pool.clone(), dir.path().to_path_buf(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let ipam = Ipam::open(pool, &data, StoreOptions::default())?;
                    ipam.allocate(&owner(&format!("fo{t}"), "eth0"), &[])
                })
            })
            .collect();
        for r in join_all(handles) {
            if let Err(e) = r {
                panic!("round {round}: Ipam::open or allocate of a store being created by others failed: {e}");
            }
        }
        assert_clean(&open(&pool, dir.path()), 9, 9);
        round += 1;
    }
}

// 10.
#[test]
fn import_from_a_real_host_local_directory() {
    let dir = tempdir("import");
    let hl_data = dir.path().join("hostlocal");
    let net = "impnet";
    let containers = [
        ("imp1", "eth0"),
        ("imp2", "eth0"),
        ("imp3", "net1"),
        ("imp4", "eth0"),
        ("imp5", "eth0"),
    ];
    for (i, (id, ifname)) in containers.iter().enumerate() {
        let res = host_local("ADD", &hl_data, net, id, ifname);
        assert_eq!(res["ips"][0]["address"], format!("10.77.0.{}/24", i + 2), "{res}");
    }
    // imp2 leaves: host-local removes its file but remembers 10.77.0.6 as the last handed out.
    host_local("DEL", &hl_data, net, "imp2", "eth0");
    let hl_dir = hl_data.join(net);
    assert!(!hl_dir.join("10.77.0.3").exists());
    assert_eq!(
        std::fs::read_to_string(hl_dir.join("last_reserved_ip.0")).unwrap(),
        "10.77.0.6"
    );
    // A record of an old host-local: the container ID alone.
    std::fs::write(hl_dir.join("10.77.0.200"), "oldctr").unwrap();
    // Files that are not records.
    std::fs::write(hl_dir.join("NOTES"), "moved here from node 3\n").unwrap();
    std::fs::write(hl_dir.join("10.77.0.201"), "-not a container id!\r\neth0").unwrap();
    let hl_before = snapshot(&hl_dir);

    let pool = pool(net, json!({"ranges": [[{"subnet": "10.77.0.0/24"}]]}));
    let nk_data = dir.path().join("netkit");
    let ipam = open(&pool, &nk_data);
    // Before the import, netkit already gave imp4's address to someone else.
    let squatter = owner("squatter", "eth0");
    ipam.allocate(&squatter, &[ip("10.77.0.5")]).unwrap();

    let report = ipam.import_host_local(&hl_dir, "eth0").unwrap();
    assert_eq!(
        snapshot(&hl_dir),
        hl_before,
        "the import changed host-local's directory"
    );
    let mut imported = report.imported.clone();
    imported.sort();
    let want = [
        (ip("10.77.0.2"), owner("imp1", "eth0")),
        (ip("10.77.0.4"), owner("imp3", "net1")),
        (ip("10.77.0.6"), owner("imp5", "eth0")),
        (ip("10.77.0.200"), owner("oldctr", "eth0")),
    ];
    assert_eq!(imported, want);
    assert_eq!(report.already_held, 0);
    assert_eq!(
        report.conflicts,
        [(ip("10.77.0.5"), squatter.clone(), owner("imp4", "eth0"))]
    );
    assert_eq!(report.last_reserved, [(0, ip("10.77.0.6"))]);
    let skipped: BTreeSet<String> = report
        .skipped
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        skipped,
        BTreeSet::from(["NOTES".to_string(), "10.77.0.201".to_string()])
    );
    for (ip, o) in &want {
        assert_eq!(ipam.lookup(o).unwrap(), [*ip], "{o}");
        assert_eq!(ipam.holder(*ip).unwrap().as_ref(), Some(o));
    }
    assert!(ipam.lookup(&owner("imp4", "eth0")).unwrap().is_empty());
    assert_eq!(ipam.holder(ip("10.77.0.5")).unwrap(), Some(squatter.clone()));
    assert_clean(&ipam, 5, 5);

    // Importing again finds everything in place and changes nothing.
    let store_dir = nk_data.join(net);
    let store_before = records_snapshot(&store_dir);
    let again = ipam.import_host_local(&hl_dir, "eth0").unwrap();
    assert!(again.imported.is_empty(), "{:?}", again.imported);
    assert_eq!(again.already_held, 4);
    assert_eq!(again.conflicts, report.conflicts);
    assert_eq!(records_snapshot(&store_dir), store_before);

    // An imported container's repeated ADD gets its host-local address back...
    assert_eq!(
        addrs(&ipam.allocate(&owner("imp3", "net1"), &[]).unwrap()),
        ["10.77.0.4/24"]
    );
    assert_eq!(
        addrs(&ipam.allocate(&owner("oldctr", "eth0"), &[]).unwrap()),
        ["10.77.0.200/24"]
    );
    // ...and a new one continues after host-local's last address, not in the hole at .3.
    assert_eq!(
        addrs(&ipam.allocate(&owner("imp6", "eth0"), &[]).unwrap()),
        ["10.77.0.7/24"]
    );
    assert_clean(&ipam, 6, 6);
}

// 11.
#[test]
fn gc_releases_exactly_the_invalid_owners_and_removes_dead_scratch_files() {
    let dir = tempdir("gc");
    let pool = pool(
        "gcnet",
        json!({"ranges": [[{"subnet": "10.73.0.0/24"}], [{"subnet": "fd73::/120"}]]}),
    );
    let ipam = open(&pool, dir.path());
    let (a, b, c) = (owner("gca", "eth0"), owner("gcb", "eth0"), owner("gcc", "net1"));
    let held = |o: &Owner| {
        let mut v = ipam.lookup(o).unwrap();
        v.sort();
        v
    };
    for o in [&a, &b, &c] {
        ipam.allocate(o, &[]).unwrap();
    }
    let (a_ips, b_ips, c_ips) = (held(&a), held(&b), held(&c));
    assert_eq!(a_ips.len(), 2);

    // A scratch file a killed process left long ago, and one being written right now. GC goes
    // by age, not by pid: plugins in other PID namespaces share the directory.
    let tmp = dir.path().join("gcnet/tmp");
    let dead = tmp.join("4242.00000000deadbeef.0");
    let alive = tmp.join(format!("{}.0000000000000001.999999", std::process::id()));
    std::fs::write(&dead, "left by a killed process").unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&dead)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    std::fs::write(&alive, "being written right now").unwrap();

    let report = ipam.gc(std::slice::from_ref(&a)).unwrap();
    let mut released = report.released.clone();
    for (_, ips) in &mut released {
        ips.sort();
    }
    released.sort();
    assert_eq!(released, [(b.clone(), b_ips.clone()), (c.clone(), c_ips.clone())]);
    let mut both: Vec<IpAddr> = b_ips.iter().chain(&c_ips).copied().collect();
    both.sort();
    assert_eq!(report.released_ips(), both);
    assert!(report.orphans_released.is_empty() && report.orphans_adopted.is_empty());
    assert_eq!(report.stale_intents, 0);
    assert_eq!(report.scratch_removed, 1);
    assert!(!dead.exists(), "the dead process's scratch file is still there");
    assert!(alive.exists(), "a live process's scratch file was removed");

    assert_eq!(held(&a), a_ips);
    assert!(held(&b).is_empty() && held(&c).is_empty());
    for ip in &both {
        assert_eq!(ipam.holder(*ip).unwrap(), None);
    }
    assert_clean(&ipam, 2, 1);
    // A second GC has nothing left to do (the live scratch file stays).
    let again = ipam.gc(std::slice::from_ref(&a)).unwrap();
    assert!(again.released.is_empty() && again.scratch_removed == 0, "{again:?}");
    std::fs::remove_file(&alive).unwrap();
}

// 11, beside allocations: GC's docs say it runs safely while owners allocate and release,
// and never releases an owner in the valid list.
#[test]
fn gc_running_beside_allocations_never_releases_a_valid_owner() {
    let dir = tempdir("gc-concurrent");
    let pool = pool(
        "gcc",
        json!({"ranges": [[{"subnet": "10.78.0.0/24"}], [{"subnet": "fd78::/120"}]]}),
    );
    let ipam = open(&pool, dir.path());
    let valid: Vec<Owner> = (0..32).map(|i| owner(&format!("gcv{i}"), "eth0")).collect();
    let invalid: Vec<Owner> = (0..16).map(|i| owner(&format!("gci{i}"), "eth0")).collect();
    for o in &invalid {
        ipam.allocate(o, &[]).unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc = {
        let (pool, data, valid, stop) = (pool.clone(), dir.path().to_path_buf(), valid.clone(), stop.clone());
        std::thread::spawn(move || {
            let ipam = open(&pool, &data);
            let mut released = BTreeSet::new();
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) || runs == 0 {
                let report = ipam.gc(&valid).unwrap_or_else(|e| panic!("gc run {runs}: {e}"));
                for (o, _) in &report.released {
                    assert!(!valid.contains(o), "gc released valid {o}");
                    released.insert(o.clone());
                }
                for (ip, o) in &report.orphans_released {
                    assert!(!valid.contains(o), "gc released {ip} of valid {o}");
                    released.insert(o.clone());
                }
                runs += 1;
            }
            (released, runs)
        })
    };
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (pool, data, valid) = (pool.clone(), dir.path().to_path_buf(), valid.clone());
            std::thread::spawn(move || {
                let ipam = open(&pool, &data);
                let mine: Vec<&Owner> = valid.iter().skip(w * 8).take(8).collect();
                for round in 0..30 {
                    if round > 0 {
                        for o in &mine {
                            assert_eq!(ipam.release(o).unwrap().len(), 2, "{o}");
                        }
                    }
                    for o in &mine {
                        let got = ipam.allocate(o, &[]).unwrap_or_else(|e| panic!("{o}: {e}"));
                        assert_eq!(got.ips.len(), 2);
                        let mut want: Vec<IpAddr> = got.ips.iter().map(|i| i.address.ip()).collect();
                        let mut held = ipam.lookup(o).unwrap();
                        want.sort();
                        held.sort();
                        assert_eq!(held, want, "{o} lost an address while gc ran");
                    }
                }
            })
        })
        .collect();
    let workers: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
    stop.store(true, Ordering::Relaxed);
    let (released, runs) = join_all(vec![gc]).pop().unwrap();
    for w in workers {
        w.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    }
    assert!(runs > 0);
    // Every invalid owner was released by some run (the first run, in fact).
    assert_eq!(released, invalid.iter().cloned().collect::<BTreeSet<_>>());
    for o in &invalid {
        assert!(ipam.lookup(o).unwrap().is_empty());
    }
    for o in &valid {
        assert_eq!(ipam.lookup(o).unwrap().len(), 2, "{o}");
    }
    assert_clean(&ipam, 64, 32);
}

// 11, damaged stores: address files their owner's record does not list.
#[test]
fn gc_adopts_orphans_of_valid_owners_and_releases_those_of_others() {
    let dir = tempdir("gc-orphans");
    let pool = pool("orphans", json!({"ranges": [[{"subnet": "10.74.0.0/24"}]]}));
    let ipam = open(&pool, dir.path());
    let (keep, gone) = (owner("orph-keep", "eth0"), owner("orph-gone", "eth0"));
    ipam.allocate(&keep, &[]).unwrap();
    ipam.allocate(&gone, &[]).unwrap();
    let owner_dir = dir.path().join("orphans/owner");
    std::fs::remove_file(owner_dir.join("orph-keep:eth0")).unwrap();
    std::fs::remove_file(owner_dir.join("orph-gone:eth0")).unwrap();
    let check = ipam.check().unwrap();
    assert_eq!(check.problems.len(), 2, "{check:?}");

    let report = ipam.gc(std::slice::from_ref(&keep)).unwrap();
    assert_eq!(report.orphans_adopted, [(ip("10.74.0.2"), keep.clone())]);
    assert_eq!(report.orphans_released, [(ip("10.74.0.3"), gone.clone())]);
    assert_eq!(report.released_ips(), [ip("10.74.0.3")]);
    assert_eq!(ipam.lookup(&keep).unwrap(), [ip("10.74.0.2")]);
    assert_eq!(ipam.holder(ip("10.74.0.3")).unwrap(), None);
    assert_clean(&ipam, 1, 1);
}

// 12.
#[test]
fn bad_owner_input_is_refused_with_bad_owner() {
    let cases: [(&str, &str, &str); 7] = [
        ("", "eth0", "container ID"),
        ("abc/def", "eth0", "container ID"),
        ("abc def", "eth0", "container ID"),
        ("-leading-dash", "eth0", "container ID"),
        ("ctr", "a234567890123456", "interface name"),
        ("ctr", "eth/0", "interface name"),
        ("ctr", "", "interface name"),
    ];
    for (id, ifname, want) in cases {
        match Owner::new(id, ifname) {
            Err(ref e @ IpamError::BadOwner { what, ref value, .. }) => {
                assert_eq!(what, want, "{id:?}/{ifname:?}");
                let bad = if want == "container ID" { id } else { ifname };
                assert_eq!(value, bad);
                assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
            }
            other => panic!("{id:?}/{ifname:?}: expected BadOwner, got {other:?}"),
        }
    }
    // The limits themselves are accepted.
    let o = Owner::new("a.b_c-9", "a23456789012345").unwrap();
    assert_eq!((o.container_id(), o.ifname()), ("a.b_c-9", "a23456789012345"));
}

// Hardening: symbolic links planted in a store are never followed, neither to read a record
// nor to write one; the files they point to stay exactly as they were.
#[test]
fn symlinks_planted_in_a_store_are_never_followed() {
    use std::os::unix::fs::symlink;
    let dir = tempdir("symlinks");
    let outside = tempdir("symlinks-outside");
    let pool = pool("links", json!({"ranges": [[{"subnet": "10.76.0.0/24"}]]}));
    let ipam = open(&pool, dir.path());
    let store_dir = dir.path().join("links");
    let (a, evil) = (owner("ln-a", "eth0"), owner("ln-evil", "eth0"));
    ipam.allocate(&a, &[]).unwrap();
    // Genuine records of `evil`, copied outside the store, then released.
    ipam.allocate(&evil, &[ip("10.76.0.9")]).unwrap();
    let owner_copy = outside.path().join("owner-record");
    let ip_copy = outside.path().join("ip-record");
    std::fs::copy(store_dir.join("owner/ln-evil:eth0"), &owner_copy).unwrap();
    std::fs::copy(store_dir.join("ip/10.76.0.9"), &ip_copy).unwrap();
    ipam.release(&evil).unwrap();

    // The round-robin hint, a record of each kind and a few spares point outside.
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::remove_file(store_dir.join("last.0")).unwrap();
    symlink(&victim, store_dir.join("last.0")).unwrap();
    symlink(&owner_copy, store_dir.join("owner/ln-evil:eth0")).unwrap();
    symlink(&ip_copy, store_dir.join("ip/10.76.0.9")).unwrap();
    for i in 0..6 {
        symlink(&victim, store_dir.join(format!("spare/0.planted.{i}"))).unwrap();
    }
    let before = snapshot(outside.path());

    // Nothing is read through a link...
    assert!(ipam.lookup(&evil).unwrap().is_empty(), "read through a planted link");
    assert_eq!(ipam.holder(ip("10.76.0.9")).unwrap(), None);
    // ...and nothing written through one: allocations write the hint and take spares.
    for i in 0..4 {
        ipam.allocate(&owner(&format!("ln-b{i}"), "eth0"), &[]).unwrap();
    }
    ipam.release(&a).unwrap();
    ipam.gc(&[]).unwrap();
    assert_eq!(snapshot(outside.path()), before, "a file outside the store changed");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

    // A subdirectory replaced by a link to a directory outside: the store is refused rather
    // than written through it.
    std::fs::remove_dir_all(store_dir.join("spare")).unwrap();
    let elsewhere = outside.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    symlink(&elsewhere, store_dir.join("spare")).unwrap();
    let reopened = Ipam::open(pool.clone(), dir.path(), StoreOptions::default());
    if let Ok(ipam) = reopened {
        let _ = ipam.allocate(&owner("ln-c", "eth0"), &[]);
        let _ = ipam.release(&owner("ln-c", "eth0"));
        panic!("a store whose spare/ is a symbolic link was opened");
    }
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "written through a link"
    );
}

// Hardening: what the store creates is for root only (directories 0700, files 0600).
#[test]
fn store_directories_are_0700_and_files_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("modes");
    let pool = pool("modes", json!({"ranges": [[{"subnet": "10.79.0.0/24"}]]}));
    let ipam = open(&pool, dir.path());
    let o = owner("md-a", "eth0");
    ipam.allocate(&o, &[]).unwrap();
    ipam.allocate(&owner("md-b", "eth0"), &[]).unwrap();
    ipam.release(&o).unwrap(); // leaves a spare
    let store_dir = dir.path().join("modes");
    let mut seen = 0;
    for (rel, content) in snapshot(&store_dir) {
        let mode = std::fs::symlink_metadata(store_dir.join(&rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        let want = if content.is_none() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{rel}: mode {mode:o}");
        seen += 1;
    }
    let root = std::fs::metadata(&store_dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(root, 0o700, "the store directory: mode {root:o}");
    assert!(seen > 10, "{seen} entries");
}

// Hardening: a lock held too long (a hung process) is an error after the configured wait, not
// a wait forever.
#[test]
fn a_lock_held_too_long_fails_after_the_lock_timeout() {
    use std::time::{Duration, Instant};
    let dir = tempdir("locktimeout");
    let pool = pool("locks", json!({"ranges": [[{"subnet": "10.80.0.0/24"}]]}));
    let options = StoreOptions {
        lock_timeout: Duration::from_millis(100),
        ..StoreOptions::default()
    };
    let ipam = Ipam::open(pool.clone(), dir.path(), options).unwrap();
    let o = owner("lt-a", "eth0");
    ipam.allocate(&o, &[]).unwrap(); // makes its lock shard
                                     // The test holds every shard as another process would (its own open file descriptions).
    let lock_dir = dir.path().join("locks/lock");
    let held: Vec<_> = std::fs::read_dir(&lock_dir)
        .unwrap()
        .map(|e| {
            let f = std::fs::File::open(e.unwrap().path()).unwrap();
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).unwrap()
        })
        .collect();
    let start = Instant::now();
    match ipam.release(&o) {
        Err(IpamError::LockTimeout { path, waited }) => {
            assert!(path.starts_with(&lock_dir), "{}", path.display());
            assert_eq!(waited, Duration::from_millis(100));
        }
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    let msg = ipam
        .lookup(&o)
        .map(drop)
        .and_then(|()| ipam.release(&o).map(drop))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("lock") && msg.contains("100ms"), "{msg}");
    assert_eq!(StoreOptions::default().lock_timeout, Duration::from_secs(30));
    drop(held);
    assert_eq!(ipam.release(&o).unwrap().len(), 1);
}
