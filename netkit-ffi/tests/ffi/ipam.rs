//! IPAM through the ABI: a pool opened from its JSON configuration in a temp store, allocate /
//! lookup / release round trips, requested addresses, exhaustion, GC, and 8 threads allocating
//! at once (on one shared pool object and on pools of their own over the same store) never
//! getting the same address.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::net::IpAddr;

use netkit::conv::*;
use netkit::error::*;
use netkit::ipam::*;

use crate::common::{cs, fails, ok, Failure};
use crate::routes::{ip, prefix};

/// A pool of the test, closed on drop.
struct Pool(*mut netkit_ipam);

// SAFETY: the library's objects are thread-safe (the header's conventions).
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

impl Pool {
    fn open(json: &str, network: &str, dir: &std::path::Path) -> Pool {
        let (json, network, dir) = (cs(json), cs(network), cs(dir.to_str().unwrap()));
        let mut p = std::ptr::null_mut();
        // SAFETY: valid arguments.
        ok(|e| unsafe { netkit_ipam_open(json.as_ptr(), network.as_ptr(), dir.as_ptr(), &mut p, e) });
        Pool(p)
    }

    /// Allocate to `id`/eth0; (addresses with prefix, gateways, sets, routes, held_before).
    fn allocate(&self, id: &str, requested: &[netkit_ip]) -> Result<Allocated, Failure> {
        let (id, eth0) = (cs(id), cs("eth0"));
        let mut a = std::ptr::null_mut();
        // SAFETY: valid arguments; the allocation is read, then freed once.
        crate::common::call(|e| unsafe {
            netkit_ipam_allocate(
                self.0,
                id.as_ptr(),
                eth0.as_ptr(),
                if requested.is_empty() {
                    std::ptr::null()
                } else {
                    requested.as_ptr()
                },
                requested.len(),
                &mut a,
                e,
            )
        })?;
        // SAFETY: a live allocation with its arrays.
        unsafe {
            let r = &*a;
            let ips = slice(r.ips, r.ips_len).to_vec();
            let routes = slice(r.routes, r.routes_len).to_vec();
            let strings = |p: *mut *mut std::ffi::c_char, n: usize| -> Vec<String> {
                slice(p, n).iter().map(|s| text(*s).unwrap()).collect()
            };
            let out = Allocated {
                ips,
                routes,
                held_before: r.held_before,
                dns: (
                    strings(r.dns_nameservers, r.dns_nameservers_len),
                    text(r.dns_domain),
                    strings(r.dns_search, r.dns_search_len),
                    strings(r.dns_options, r.dns_options_len),
                ),
            };
            netkit_ipam_allocation_free(a);
            Ok(out)
        }
    }

    fn lookup(&self, id: &str) -> Vec<netkit_ip> {
        let (id, eth0) = (cs(id), cs("eth0"));
        let (mut ips, mut len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: valid arguments; the array is copied, then freed once.
        unsafe {
            ok(|e| netkit_ipam_lookup(self.0, id.as_ptr(), eth0.as_ptr(), &mut ips, &mut len, e));
            let out = slice(ips, len).to_vec();
            netkit_ip_list_free(ips, len);
            out
        }
    }

    fn release(&self, id: &str) -> Vec<netkit_ip> {
        let (id, eth0) = (cs(id), cs("eth0"));
        let (mut ips, mut len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: valid arguments; the array is copied, then freed once.
        unsafe {
            ok(|e| netkit_ipam_release(self.0, id.as_ptr(), eth0.as_ptr(), &mut ips, &mut len, e));
            let out = slice(ips, len).to_vec();
            netkit_ip_list_free(ips, len);
            out
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the test's live pool, closed once.
        unsafe { netkit_ipam_close(self.0) };
    }
}

#[derive(Debug)]
struct Allocated {
    ips: Vec<netkit_ipam_ip>,
    routes: Vec<netkit_ipam_route>,
    held_before: bool,
    /// Nameservers, domain, search, options.
    dns: (Vec<String>, Option<String>, Vec<String>, Vec<String>),
}

/// A C string of the library as a Rust string; `None` for NULL.
///
/// # Safety
/// `p` is NULL or a valid C string.
unsafe fn text(p: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: the function's contract.
    (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_str().unwrap().to_string())
}

/// `len` elements at `p` (an empty slice for NULL).
///
/// # Safety
/// `p` is NULL or points to `len` readable elements.
unsafe fn slice<'a, T>(p: *const T, len: usize) -> &'a [T] {
    if p.is_null() {
        &[]
    } else {
        // SAFETY: the function's contract.
        unsafe { std::slice::from_raw_parts(p, len) }
    }
}

fn addr(p: &netkit_prefix) -> IpAddr {
    p.ip.required("ip").unwrap()
}

const DUAL: &str = r#"{
    "ranges": [[{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}], [{"subnet": "fd77::/64"}]],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16", "gw": "10.77.0.254"}]
}"#;

#[test]
fn allocate_lookup_release_round_trip() {
    let dir = netkit_test_support::tempdir("fipam");
    let pool = Pool::open(DUAL, "fnet", dir.path());
    assert!(dir.path().join("fnet").is_dir(), "the store is <dir>/<network>");

    let a = pool.allocate("c1", &[]).expect("allocate");
    assert_eq!(a.ips.len(), 2, "one address per range set: {a:?}");
    assert!(!a.held_before);
    let (v4, v6) = (a.ips[0], a.ips[1]);
    assert_eq!((v4.set, v6.set), (0, 1));
    assert_eq!(v4.address.len, 24);
    assert_eq!(v4.gateway, ip("10.77.0.1"));
    let IpAddr::V4(a4) = addr(&v4.address) else {
        panic!("set 0 is IPv4: {v4:?}")
    };
    assert!(a4.octets()[..3] == [10, 77, 0] && a4.octets()[3] > 1, "{a4}");
    assert_eq!(v6.address.len, 64);
    assert!(matches!(addr(&v6.address), IpAddr::V6(a) if a.segments()[0] == 0xfd77));
    assert_eq!(a.routes.len(), 2);
    assert_eq!(
        (
            a.routes[0].dst,
            a.routes[0].gateway,
            a.routes[1].dst,
            a.routes[1].gateway
        ),
        (
            prefix("0.0.0.0/0"),
            netkit_ip::default(),
            prefix("10.99.0.0/16"),
            ip("10.77.0.254")
        )
    );

    // Lookup returns what was given; allocating again returns the same, held before.
    let held: BTreeSet<IpAddr> = pool.lookup("c1").iter().map(|i| i.required("ip").unwrap()).collect();
    assert_eq!(held, BTreeSet::from([addr(&v4.address), addr(&v6.address)]));
    let again = pool.allocate("c1", &[]).expect("allocate again");
    assert!(again.held_before);
    assert_eq!(
        again.ips.iter().map(|i| i.address).collect::<Vec<_>>(),
        [v4.address, v6.address]
    );

    // A requested address; another owner asking for it is refused.
    let b = pool.allocate("c2", &[ip("10.77.0.50")]).expect("requested");
    assert_eq!(b.ips[0].address, prefix("10.77.0.50/24"));
    let f = pool.allocate("c3", &[ip("10.77.0.50")]).unwrap_err();
    assert_eq!(f.status, NETKIT_E_EXISTS, "{f:?}");
    assert!(f.message.contains("10.77.0.50"), "{f:?}");
    let f = pool.allocate("c3", &[ip("10.78.0.5")]).unwrap_err();
    assert_eq!(f.status, NETKIT_E_INVALID, "outside the pool: {f:?}");
    assert!(pool.lookup("c3").is_empty(), "a refused allocation leaves nothing");

    // Release returns what the owner held; again: nothing, no error.
    let gone: BTreeSet<IpAddr> = pool.release("c1").iter().map(|i| i.required("ip").unwrap()).collect();
    assert_eq!(gone, held);
    assert!(pool.lookup("c1").is_empty());
    assert!(pool.release("c1").is_empty());

    // GC: every owner but c2 goes.
    pool.allocate("c4", &[]).expect("c4");
    let (c2, eth0) = (cs("c2"), cs("eth0"));
    let valid = [netkit_ipam_owner {
        container_id: c2.as_ptr(),
        ifname: eth0.as_ptr(),
    }];
    let (mut ips, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: valid arguments; the array is read, then freed once.
    let released = unsafe {
        ok(|e| netkit_ipam_gc(pool.0, valid.as_ptr(), 1, &mut ips, &mut len, e));
        let out = slice(ips, len).to_vec();
        netkit_ip_list_free(ips, len);
        out
    };
    assert_eq!(released.len(), 2, "c4's two addresses: {released:?}");
    assert!(pool.lookup("c4").is_empty());
    assert_eq!(pool.lookup("c2").len(), 2);
    // SAFETY: the released list not wanted (NULL), no valid owner: everything goes.
    ok(|e| unsafe {
        netkit_ipam_gc(
            pool.0,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            e,
        )
    });
    assert!(pool.lookup("c2").is_empty());
}

#[test]
fn exhaustion_and_bad_input() {
    let dir = netkit_test_support::tempdir("fipamx");
    let tiny = r#"{"ranges": [[{"subnet": "10.66.0.0/29", "rangeStart": "10.66.0.2", "rangeEnd": "10.66.0.3"}]]}"#;
    let pool = Pool::open(tiny, "tiny", dir.path());
    pool.allocate("a", &[]).expect("first");
    pool.allocate("b", &[]).expect("second");
    let f = pool.allocate("c", &[]).unwrap_err();
    assert_eq!(f.status, NETKIT_E_EXHAUSTED, "{f:?}");
    pool.release("a");
    pool.allocate("c", &[]).expect("a released address is free again");

    // Owners that are not valid; NULL arguments.
    let f = pool.allocate("bad id", &[]).unwrap_err();
    assert_eq!(f.status, NETKIT_E_INVALID, "{f:?}");
    let (id, eth0) = (cs("x"), cs("eth0"));
    let mut a = std::ptr::null_mut();
    // SAFETY: a NULL `requested` with a length is what is tested.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_ipam_allocate(pool.0, id.as_ptr(), eth0.as_ptr(), std::ptr::null(), 1, &mut a, e)
    });
    assert!(f.message.contains("`requested` is NULL"), "{f:?}");
    // SAFETY: a NULL ifname.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_ipam_allocate(pool.0, id.as_ptr(), std::ptr::null(), std::ptr::null(), 0, &mut a, e)
    });
    // SAFETY: wanting the released list without its length.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_ipam_release(
            pool.0,
            id.as_ptr(),
            eth0.as_ptr(),
            &mut std::ptr::null_mut(),
            std::ptr::null_mut(),
            e,
        )
    });

    // Configurations that are not valid.
    let net = cs("n");
    let d = cs(dir.path().to_str().unwrap());
    for json in [
        "not json",
        r#"{"ranges": [[{"subnet": "10.0.0.0/33"}]]}"#,
        r#"{"routes": []}"#,
        r#"{"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.128/25"}]]}"#,
    ] {
        let j = CString::new(json).unwrap();
        let mut p = std::ptr::null_mut();
        // SAFETY: valid arguments.
        let f = fails(NETKIT_E_INVALID, |e| unsafe {
            netkit_ipam_open(j.as_ptr(), net.as_ptr(), d.as_ptr(), &mut p, e)
        });
        assert!(f.message.contains("ipam"), "{json}: {f:?}");
        assert!(p.is_null());
    }
    // A whole conflist names its network itself; a bare ipam object with no network is refused.
    let list = cs(r#"{"name": "fromlist", "plugins": [{"type": "netkit-cni", "ipam": {"subnet": "10.77.0.0/24"}}]}"#);
    let mut p = std::ptr::null_mut();
    // SAFETY: valid arguments (NULL network).
    ok(|e| unsafe { netkit_ipam_open(list.as_ptr(), std::ptr::null(), d.as_ptr(), &mut p, e) });
    assert!(
        dir.path().join("fromlist").is_dir(),
        "the store is named after the conflist"
    );
    // SAFETY: a live pool, closed once.
    unsafe { netkit_ipam_close(p) };
    let bare = cs(r#"{"subnet": "10.77.0.0/24"}"#);
    let mut p = std::ptr::null_mut();
    // SAFETY: valid arguments (NULL network).
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_ipam_open(bare.as_ptr(), std::ptr::null(), d.as_ptr(), &mut p, e)
    });
    assert!(f.message.contains("network"), "{f:?}");
    // SAFETY: NULL and double closes are ignored.
    unsafe {
        netkit_ipam_close(std::ptr::null_mut());
        netkit_ipam_allocation_free(std::ptr::null_mut());
    }
}

#[test]
fn eight_threads_allocating_never_share_an_address() {
    let dir = netkit_test_support::tempdir("fipam8");
    let json = r#"{"ranges": [[{"subnet": "10.55.0.0/24"}]]}"#;
    let shared = Pool::open(json, "busy", dir.path());
    const PER_THREAD: usize = 20;
    let got: Vec<Vec<IpAddr>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let shared = &shared;
                let path = dir.path();
                s.spawn(move || {
                    // Even threads share one pool object; odd ones open their own on the same
                    // store (as separate processes would).
                    let own = (t % 2 == 1).then(|| Pool::open(json, "busy", path));
                    let pool = own.as_ref().unwrap_or(shared);
                    (0..PER_THREAD)
                        .map(|i| {
                            let a = pool.allocate(&format!("t{t}c{i}"), &[]).expect("allocate");
                            assert_eq!(a.ips.len(), 1);
                            addr(&a.ips[0].address)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("thread")).collect()
    });
    let all: Vec<IpAddr> = got.into_iter().flatten().collect();
    let unique: BTreeSet<IpAddr> = all.iter().copied().collect();
    assert_eq!(all.len(), 8 * PER_THREAD);
    assert_eq!(unique.len(), all.len(), "an address was given twice: {all:?}");
    // Each owner holds exactly what it was given.
    for t in 0..8 {
        for i in 0..PER_THREAD {
            assert_eq!(shared.lookup(&format!("t{t}c{i}")).len(), 1);
        }
    }
}

#[test]
fn dns_from_resolv_conf_comes_with_each_allocation() {
    let dir = netkit_test_support::tempdir("fipamdns");
    let conf = dir.path().join("resolv.conf");
    std::fs::write(
        &conf,
        "nameserver 10.0.0.53\nnameserver fd00::53\ndomain example.test\nsearch a.test b.test\noptions ndots:2\n",
    )
    .unwrap();
    let json = format!(
        r#"{{"subnet": "10.33.0.0/24", "resolvConf": {}}}"#,
        serde_json::to_string(conf.to_str().unwrap()).unwrap()
    );
    let pool = Pool::open(&json, "dns", dir.path());
    let a = pool.allocate("c1", &[]).expect("allocate");
    assert_eq!(
        a.dns,
        (
            vec!["10.0.0.53".to_string(), "fd00::53".to_string()],
            Some("example.test".to_string()),
            vec!["a.test".to_string(), "b.test".to_string()],
            vec!["ndots:2".to_string()],
        )
    );
    // Without resolvConf: no DNS.
    let plain = Pool::open(r#"{"subnet": "10.34.0.0/24"}"#, "plain", dir.path());
    let b = plain.allocate("c1", &[]).expect("allocate");
    assert_eq!(b.dns, (vec![], None, vec![], vec![]));
    // A resolvConf that does not exist: the pool is not opened.
    let missing = cs(r#"{"subnet": "10.35.0.0/24", "resolvConf": "/nonexistent/resolv.conf"}"#);
    let (net, d) = (cs("missing"), cs(dir.path().to_str().unwrap()));
    let mut p = std::ptr::null_mut();
    // SAFETY: valid arguments.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_ipam_open(missing.as_ptr(), net.as_ptr(), d.as_ptr(), &mut p, e)
    });
    assert!(f.message.contains("/nonexistent/resolv.conf"), "{f:?}");
}
