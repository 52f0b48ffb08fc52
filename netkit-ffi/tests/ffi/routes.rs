//! Addresses and routes through the ABI (single path, onlink, table, metric, multipath,
//! replace), compared with `ip -j`.

use std::net::IpAddr;

use netkit::addr::*;
use netkit::conv::*;
use netkit::error::*;
use netkit::route::*;
use netkit_test_support::cmd::ipj_list;

use crate::args::route_config;
use crate::common::{cs, fails, ok, Ns};
use crate::kinds::veth;

pub fn prefix(text: &str) -> netkit_prefix {
    let mut p = netkit_prefix::default();
    let c = cs(text);
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_prefix_parse(c.as_ptr(), &mut p, e) });
    p
}

pub fn ip(text: &str) -> netkit_ip {
    text.parse::<IpAddr>().unwrap().into()
}

/// A namespace with v0/v1 up, 10.1.0.1/24 on v0.
pub fn setup(tag: &str) -> Ns {
    let t = Ns::new(tag);
    let (v0, v1) = (cs("v0"), cs("v1"));
    let mut cfg = veth(&v0, &v1);
    cfg.up = true;
    // SAFETY: valid arguments throughout.
    ok(|e| unsafe { netkit::link::netkit_link_add_veth(t.h, &cfg, std::ptr::null_mut(), e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit::link::netkit_link_set_up(t.h, v1.as_ptr(), e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_addr_add(t.h, v0.as_ptr(), &prefix("10.1.0.1/24"), 0, e) });
    t
}

#[test]
fn addresses_add_list_delete() {
    let t = setup("faddr");
    let v0 = cs("v0");
    let p6 = prefix("fd01::1/64");
    // SAFETY: valid arguments throughout.
    ok(|e| unsafe { netkit_addr_add(t.h, v0.as_ptr(), &p6, NETKIT_ADDR_NODAD, e) });
    // SAFETY: as above.
    fails(NETKIT_E_EXISTS, |e| unsafe {
        netkit_addr_add(t.h, v0.as_ptr(), &p6, NETKIT_ADDR_NODAD, e)
    });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_addr_add(t.h, v0.as_ptr(), &p6, NETKIT_ADDR_NODAD | NETKIT_ADDR_REPLACE, e) });
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_addr_add(t.h, v0.as_ptr(), &p6, 1 << 20, e)
    });
    let (mut addrs, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as above.
    ok(|e| unsafe { netkit_addr_list(t.h, v0.as_ptr(), &mut addrs, &mut len, e) });
    // SAFETY: `len` addresses at `addrs`.
    let list = unsafe { std::slice::from_raw_parts(addrs, len) };
    let global: Vec<(netkit_prefix, bool)> = list
        .iter()
        .filter(|a| a.scope == 0)
        .map(|a| (a.prefix, a.tentative))
        .collect();
    assert_eq!(global, [(prefix("10.1.0.1/24"), false), (p6, false)]);
    let v4 = list.iter().find(|a| a.prefix.ip.family == NETKIT_AF_INET).unwrap();
    assert_eq!(v4.broadcast, ip("10.1.0.255"));
    // SAFETY: the library's array with its length.
    unsafe { netkit_addr_list_free(addrs, len) };
    // By index: the address lands on v0; index 0 is invalid, an unknown index not found.
    let mut link = std::ptr::null_mut();
    // SAFETY: as above.
    ok(|e| unsafe { netkit::link::netkit_link_get(t.h, v0.as_ptr(), &mut link, e) });
    // SAFETY: the library's link, read then freed once.
    let index = unsafe { (*link).index };
    // SAFETY: as above.
    unsafe { netkit::link::netkit_link_free(link) };
    // SAFETY: as above.
    ok(|e| unsafe { netkit_addr_add_index(t.h, index, &prefix("10.9.0.1/24"), 0, e) });
    let shown = ipj_list(t.name(), &["-4", "addr", "show", "dev", "v0"]);
    assert!(format!("{shown:?}").contains("10.9.0.1"), "{shown:?}");
    // SAFETY: as above.
    fails(NETKIT_E_EXISTS, |e| unsafe {
        netkit_addr_add_index(t.h, index, &prefix("10.9.0.1/24"), 0, e)
    });
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_addr_add_index(t.h, 0, &prefix("10.9.0.2/24"), 0, e)
    });
    // SAFETY: as above.
    fails(NETKIT_E_NOT_FOUND, |e| unsafe {
        netkit_addr_add_index(t.h, 999_999, &prefix("10.9.0.2/24"), 0, e)
    });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_addr_del(t.h, v0.as_ptr(), &prefix("10.9.0.1/24"), e) });
    // A device that does not exist.
    let nope = cs("nope");
    // SAFETY: as above.
    fails(NETKIT_E_NOT_FOUND, |e| unsafe {
        netkit_addr_list(t.h, nope.as_ptr(), &mut addrs, &mut len, e)
    });
    // Delete, twice (idempotent); ip agrees.
    // SAFETY: as above.
    ok(|e| unsafe { netkit_addr_del(t.h, v0.as_ptr(), &p6, e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_addr_del(t.h, v0.as_ptr(), &p6, e) });
    let shown = ipj_list(t.name(), &["-6", "addr", "show", "dev", "v0", "scope", "global"]);
    assert!(
        shown
            .iter()
            .all(|l| l["addr_info"].as_array().is_none_or(|a| a.is_empty())),
        "{shown:?}"
    );
    // Formatting round trip.
    let mut text = std::ptr::null_mut();
    // SAFETY: as above.
    ok(|e| unsafe { netkit_prefix_format(&p6, &mut text, e) });
    // SAFETY: a string from the library, read then freed.
    unsafe {
        assert_eq!(std::ffi::CStr::from_ptr(text).to_str().unwrap(), "fd01::1/64");
        netkit::own::netkit_string_free(text);
    }
    let bad = cs("10.0.0.1/33");
    let mut p = netkit_prefix::default();
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_prefix_parse(bad.as_ptr(), &mut p, e)
    });
    let odd = netkit_ip {
        family: 7,
        addr: [0; 16],
    };
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe { netkit_ip_format(&odd, &mut text, e) });
}

/// The routes of table `table` as `ip -j route show table T` prints them.
fn ip_routes(t: &Ns, table: &str) -> Vec<serde_json::Value> {
    ipj_list(t.name(), &["route", "show", "table", table])
}

#[test]
fn routes_single_path_table_metric_onlink_replace() {
    let t = setup("froute");
    let v0 = cs("v0");
    let mut r = route_config();
    r.gateway = ip("10.1.0.2");
    r.dev = v0.as_ptr();
    r.table = 100;
    r.metric = 7;
    // SAFETY: valid arguments throughout.
    ok(|e| unsafe { netkit_route_add(t.h, &r, e) });
    // SAFETY: as above.
    fails(NETKIT_E_EXISTS, |e| unsafe { netkit_route_add(t.h, &r, e) });
    let shown = ip_routes(&t, "100");
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["dst"].as_str(), Some("10.9.0.0/16"));
    assert_eq!(shown[0]["gateway"].as_str(), Some("10.1.0.2"));
    assert_eq!(shown[0]["metric"].as_u64(), Some(7));
    // Listed by the ABI.
    let (mut routes, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as above.
    ok(|e| unsafe { netkit_route_list(t.h, NETKIT_AF_INET, 100, &mut routes, &mut len, e) });
    // SAFETY: `len` routes at `routes`.
    let list = unsafe { std::slice::from_raw_parts(routes, len) };
    assert_eq!(list.len(), 1);
    let got = &list[0];
    assert_eq!(
        (got.dst, got.gateway, got.table, got.has_metric, got.metric),
        (prefix("10.9.0.0/16"), ip("10.1.0.2"), 100, true, 7)
    );
    assert!(!got.is_default && got.nexthops.is_null() && got.kind == NETKIT_ROUTE_UNICAST);
    // SAFETY: the library's array.
    unsafe { netkit_route_list_free(routes, len) };
    // Replace: another gateway, onlink (not covered by a connected subnet).
    r.gateway = ip("192.0.2.1");
    // Without onlink the kernel refuses it: ENETUNREACH, an I/O error with its errno.
    // SAFETY: as above.
    let f = fails(NETKIT_E_IO, |e| unsafe { netkit_route_replace(t.h, &r, e) });
    assert_eq!(f.errno, libc::ENETUNREACH, "{f:?}");
    r.onlink = true;
    // SAFETY: as above.
    ok(|e| unsafe { netkit_route_replace(t.h, &r, e) });
    let shown = ip_routes(&t, "100");
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["gateway"].as_str(), Some("192.0.2.1"));
    assert!(
        shown[0]["flags"].as_array().unwrap().iter().any(|f| f == "onlink"),
        "{shown:?}"
    );
    // Delete, twice (idempotent, as netkit-core).
    // SAFETY: as above.
    ok(|e| unsafe { netkit_route_del(t.h, &r, e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_route_del(t.h, &r, e) });
    assert!(ip_routes(&t, "100").is_empty());
    // A blackhole default route in main, listed as default.
    let mut bh = route_config();
    bh.dst = prefix("0.0.0.0/0");
    bh.kind = NETKIT_ROUTE_BLACKHOLE;
    // SAFETY: as above.
    ok(|e| unsafe { netkit_route_add(t.h, &bh, e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_route_list(t.h, 0, 254, &mut routes, &mut len, e) });
    // SAFETY: `len` routes at `routes`.
    let list = unsafe { std::slice::from_raw_parts(routes, len) };
    assert!(
        list.iter().any(|r| r.is_default && r.kind == NETKIT_ROUTE_BLACKHOLE),
        "{list:?}"
    );
    // SAFETY: the library's array.
    unsafe { netkit_route_list_free(routes, len) };
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_route_list(t.h, 3, 0, &mut routes, &mut len, e)
    });
}

#[test]
fn multipath_route() {
    let t = setup("fmpath");
    let v0 = cs("v0");
    let hops = [
        netkit_nexthop_config {
            gateway: ip("10.1.0.2"),
            dev: v0.as_ptr(),
            dev_index: 0,
            weight: 1,
            onlink: false,
        },
        netkit_nexthop_config {
            gateway: ip("10.1.0.3"),
            dev: v0.as_ptr(),
            dev_index: 0,
            weight: 3,
            onlink: false,
        },
    ];
    let mut r = route_config();
    r.nexthops = hops.as_ptr();
    r.nexthops_len = hops.len();
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_route_add(t.h, &r, e) });
    let shown = ip_routes(&t, "main");
    let mp = shown
        .iter()
        .find(|r| r["dst"] == "10.9.0.0/16")
        .expect("the multipath route");
    let gws: Vec<&str> = mp["nexthops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["gateway"].as_str().unwrap())
        .collect();
    assert_eq!(gws, ["10.1.0.2", "10.1.0.3"], "{mp}");
    let (mut routes, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_route_list(t.h, NETKIT_AF_INET, 254, &mut routes, &mut len, e) });
    // SAFETY: `len` routes; each route's `nexthops_len` hops.
    unsafe {
        let list = std::slice::from_raw_parts(routes, len);
        let got = list.iter().find(|r| r.dst == prefix("10.9.0.0/16")).expect("listed");
        let hops = std::slice::from_raw_parts(got.nexthops, got.nexthops_len);
        let pairs: Vec<(netkit_ip, u16)> = hops.iter().map(|h| (h.gateway, h.weight)).collect();
        assert_eq!(pairs, [(ip("10.1.0.2"), 1), (ip("10.1.0.3"), 3)]);
        netkit_route_list_free(routes, len);
    }
}
