//! Neighbours and the bridge FDB through the ABI, compared with `ip -j neigh show` and
//! `bridge -j fdb show`.

use std::net::IpAddr;

use netkit::conv::*;
use netkit::error::*;
use netkit::neigh::*;
use netkit_test_support::cmd::{bridgej, ipj_list};
use serde_json::Value;

use crate::common::{cs, fails, ok, Ns, Zeroed};
use crate::routes::{ip, setup};

const MAC1: [u8; 6] = [2, 0, 0, 0, 0x60, 2];
const MAC2: [u8; 6] = [2, 0, 0, 0, 0x60, 0x22];

/// The neighbours the ABI lists (dev NULL or `dev`, family), copied out.
fn neighbours(t: &Ns, dev: Option<&str>, family: u8) -> Vec<netkit_neigh> {
    let dev = dev.map(cs);
    let (mut list, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: valid arguments; `len` entries at `list`, copied, then freed once.
    unsafe {
        ok(|e| {
            netkit_neigh_list(
                t.h,
                dev.as_ref().map_or(std::ptr::null(), |d| d.as_ptr()),
                family,
                &mut list,
                &mut len,
                e,
            )
        });
        let out = if len == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(list, len).to_vec()
        };
        netkit_neigh_list_free(list, len);
        out
    }
}

fn find(list: &[netkit_neigh], addr: &str) -> Option<netkit_neigh> {
    list.iter().copied().find(|n| n.ip == ip(addr))
}

/// `ip -j neigh show ARGS` entry for `dst`.
fn ip_neigh(t: &Ns, args: &[&str], dst: &str) -> Option<Value> {
    let mut all = vec!["neigh", "show"];
    all.extend_from_slice(args);
    ipj_list(t.name(), &all).into_iter().find(|n| n["dst"] == dst)
}

#[test]
fn neighbours_add_replace_list_delete() {
    let t = setup("fneigh");
    let v0 = cs("v0");
    let mut n = netkit_neigh_config::zeroed();
    n.dev = v0.as_ptr();
    n.ip = ip("10.1.0.2");
    n.mac = MAC1;
    // SAFETY: valid arguments throughout.
    ok(|e| unsafe { netkit_neigh_add(t.h, &n, e) });
    // SAFETY: as above.
    fails(NETKIT_E_EXISTS, |e| unsafe { netkit_neigh_add(t.h, &n, e) });
    let shown = ip_neigh(&t, &[], "10.1.0.2").expect("ip shows it");
    assert_eq!(shown["lladdr"], "02:00:00:00:60:02", "{shown}");
    assert_eq!(shown["state"], serde_json::json!(["PERMANENT"]), "{shown}");

    // An IPv6 router entry by device index, a proxy entry.
    let mut link = std::ptr::null_mut();
    // SAFETY: as above.
    ok(|e| unsafe { netkit::link::netkit_link_get(t.h, v0.as_ptr(), &mut link, e) });
    // SAFETY: a live link, read then freed.
    let index = unsafe {
        let i = (*link).index;
        netkit::link::netkit_link_free(link);
        i
    };
    let mut r6 = netkit_neigh_config::zeroed();
    r6.dev_index = index;
    r6.ip = ip("fd01::2");
    r6.mac = MAC2;
    r6.router = true;
    // SAFETY: as above.
    ok(|e| unsafe { netkit_neigh_add(t.h, &r6, e) });
    let mut p = netkit_neigh_config::zeroed();
    p.dev = v0.as_ptr();
    p.ip = ip("10.1.0.9");
    p.proxy = true;
    // SAFETY: as above.
    ok(|e| unsafe { netkit_neigh_add(t.h, &p, e) });
    assert!(ip_neigh(&t, &["proxy"], "10.1.0.9").is_some());

    let all = neighbours(&t, Some("v0"), 0);
    let a = find(&all, "10.1.0.2").expect("listed");
    assert_eq!(
        (a.index, a.has_mac, a.mac, a.state, a.proxy),
        (index, true, MAC1, NETKIT_NUD_PERMANENT, false)
    );
    let r = find(&all, "fd01::2").expect("the IPv6 entry");
    assert!(r.router && r.mac == MAC2, "{r:?}");
    let px = find(&all, "10.1.0.9").expect("the proxy entry");
    assert!(px.proxy && !px.has_mac, "{px:?}");
    // Get one entry; one that does not exist.
    let mut got = neighbours(&t, None, 0)[0];
    let a2 = ip("10.1.0.2");
    // SAFETY: valid arguments; `got` is plain storage.
    ok(|e| unsafe { netkit_neigh_get(t.h, v0.as_ptr(), &a2, &mut got, e) });
    assert_eq!((got.ip, got.mac, got.index), (a2, MAC1, index));
    let a7 = ip("10.1.0.7");
    // SAFETY: as above.
    fails(NETKIT_E_NOT_FOUND, |e| unsafe {
        netkit_neigh_get(t.h, v0.as_ptr(), &a7, &mut got, e)
    });
    let v6 = neighbours(&t, None, NETKIT_AF_INET6);
    assert!(find(&v6, "fd01::2").is_some() && find(&v6, "10.1.0.2").is_none());

    // Replace: another MAC, state reachable.
    n.mac = MAC2;
    n.state = NETKIT_NUD_REACHABLE;
    // SAFETY: as above.
    ok(|e| unsafe { netkit_neigh_replace(t.h, &n, e) });
    let shown = ip_neigh(&t, &[], "10.1.0.2").expect("still there");
    assert_eq!(shown["lladdr"], "02:00:00:00:60:22", "{shown}");
    assert_eq!(
        find(&neighbours(&t, None, NETKIT_AF_INET), "10.1.0.2").unwrap().mac,
        MAC2
    );

    // Delete, twice (idempotent); the proxy entry with proxy = true; an unknown device too.
    let (addr, proxy_addr) = (ip("10.1.0.2"), ip("10.1.0.9"));
    // SAFETY: as above.
    ok(|e| unsafe { netkit_neigh_del(t.h, v0.as_ptr(), &addr, false, e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_neigh_del(t.h, v0.as_ptr(), &addr, false, e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_neigh_del(t.h, v0.as_ptr(), &proxy_addr, true, e) });
    let nosuch = cs("nosuch0");
    // SAFETY: as above.
    ok(|e| unsafe { netkit_neigh_del(t.h, nosuch.as_ptr(), &addr, false, e) });
    assert!(ip_neigh(&t, &[], "10.1.0.2").is_none());
    assert!(ip_neigh(&t, &["proxy"], "10.1.0.9").is_none());

    // Errors: no device, an unset address, a device that does not exist for a listing.
    let mut bad = netkit_neigh_config::zeroed();
    bad.ip = ip("10.1.0.3");
    // SAFETY: as above.
    let f = fails(NETKIT_E_INVALID, |e| unsafe { netkit_neigh_add(t.h, &bad, e) });
    assert!(f.message.contains("no device"), "{f:?}");
    bad.dev = v0.as_ptr();
    bad.ip = netkit_ip::default();
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe { netkit_neigh_add(t.h, &bad, e) });
    bad.dev = nosuch.as_ptr();
    bad.ip = ip("10.1.0.3");
    // SAFETY: as above.
    fails(NETKIT_E_NOT_FOUND, |e| unsafe { netkit_neigh_add(t.h, &bad, e) });
    let (mut list, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as above.
    fails(NETKIT_E_NOT_FOUND, |e| unsafe {
        netkit_neigh_list(t.h, nosuch.as_ptr(), 0, &mut list, &mut len, e)
    });
}

/// The FDB entries the ABI lists for `dev`, copied out.
fn fdb(t: &Ns, dev: &str) -> Vec<netkit_fdb> {
    let dev = cs(dev);
    let (mut list, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: valid arguments; `len` entries at `list`, copied, then freed once.
    unsafe {
        ok(|e| netkit_fdb_list(t.h, dev.as_ptr(), &mut list, &mut len, e));
        let out = if len == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(list, len).to_vec()
        };
        netkit_fdb_list_free(list, len);
        out
    }
}

/// `bridge -j fdb show dev DEV`.
fn bridge_fdb(t: &Ns, dev: &str) -> Vec<Value> {
    match bridgej(t.name(), &["fdb", "show", "dev", dev]) {
        Some(Value::Array(a)) => a,
        other => panic!("bridge fdb show dev {dev}: {other:?}"),
    }
}

#[test]
fn fdb_vxlan_flood_list_and_bridge_port_entries() {
    let t = setup("ffdb");
    netkit_test_support::cmd::ip(&[
        "-n",
        t.name(),
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "dstport",
        "4789",
        "local",
        "10.1.0.1",
        "dev",
        "v0",
        "nolearning",
    ]);
    let vx0 = cs("vx0");
    // Flannel's flood list: the all-zero MAC appended once per remote VTEP.
    for remote in ["10.1.0.2", "10.1.0.3"] {
        let mut f = netkit_fdb_config::zeroed();
        f.dev = vx0.as_ptr();
        f.dst = ip(remote);
        f.is_self = true;
        f.permanent = true;
        // SAFETY: valid arguments.
        ok(|e| unsafe { netkit_fdb_append(t.h, &f, e) });
    }
    let mut one = netkit_fdb_config::zeroed();
    one.dev = vx0.as_ptr();
    one.mac = MAC1;
    one.dst = ip("10.1.0.4");
    one.set_vni = true;
    one.vni = 100;
    one.port = 4790;
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_fdb_add(t.h, &one, e) });
    // SAFETY: as above.
    fails(NETKIT_E_EXISTS, |e| unsafe { netkit_fdb_add(t.h, &one, e) });

    let shown = bridge_fdb(&t, "vx0");
    let flood: Vec<&str> = shown
        .iter()
        .filter(|e| e["mac"] == "00:00:00:00:00:00")
        .map(|e| e["dst"].as_str().unwrap())
        .collect();
    assert_eq!(flood, ["10.1.0.2", "10.1.0.3"], "{shown:?}");
    let ours = fdb(&t, "vx0");
    let zero: Vec<IpAddr> = ours
        .iter()
        .filter(|e| e.mac == [0; 6])
        .map(|e| e.dst.required("dst").unwrap())
        .collect();
    assert_eq!(zero, [ip_addr("10.1.0.2"), ip_addr("10.1.0.3")]);
    assert!(ours
        .iter()
        .filter(|e| e.mac == [0; 6])
        .all(|e| e.permanent && e.is_self));
    let e = ours.iter().find(|e| e.mac == MAC1).expect("the unicast entry");
    assert_eq!(
        (e.dst, e.has_vni, e.vni, e.port, e.permanent),
        (ip("10.1.0.4"), true, 100, 4790, false)
    );
    assert_eq!(ours.len(), shown.len(), "ours {ours:?}\nbridge {shown:?}");

    // Replace moves the entry to another VTEP; delete one flood destination by dst.
    one.dst = ip("10.1.0.5");
    // SAFETY: as above.
    ok(|e| unsafe { netkit_fdb_replace(t.h, &one, e) });
    let mut gone = netkit_fdb_config::zeroed();
    gone.dev = vx0.as_ptr();
    gone.dst = ip("10.1.0.2");
    gone.is_self = true;
    // SAFETY: as above; twice: idempotent.
    ok(|e| unsafe { netkit_fdb_del(t.h, &gone, e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_fdb_del(t.h, &gone, e) });
    let shown = bridge_fdb(&t, "vx0");
    let dsts: Vec<(&str, &str)> = shown
        .iter()
        .map(|e| (e["mac"].as_str().unwrap(), e["dst"].as_str().unwrap_or("")))
        .collect();
    assert!(dsts.contains(&("02:00:00:00:60:02", "10.1.0.5")), "{shown:?}");
    assert!(dsts.contains(&("00:00:00:00:00:00", "10.1.0.3")), "{shown:?}");
    assert!(
        !dsts.iter().any(|d| d.1 == "10.1.0.2" || d.1 == "10.1.0.4"),
        "{shown:?}"
    );

    // A bridge port's static entry in the bridge's table (`master`).
    netkit_test_support::cmd::ip(&["-n", t.name(), "link", "add", "br0", "type", "bridge"]);
    netkit_test_support::cmd::ip(&["-n", t.name(), "link", "set", "v1", "master", "br0"]);
    let v1 = cs("v1");
    let mut port = netkit_fdb_config::zeroed();
    port.dev = v1.as_ptr();
    port.mac = MAC2;
    port.master = true;
    // SAFETY: as above.
    ok(|e| unsafe { netkit_fdb_add(t.h, &port, e) });
    let shown = bridge_fdb(&t, "v1");
    let entry = shown
        .iter()
        .find(|e| e["mac"] == "02:00:00:00:60:22")
        .expect("bridge shows the port entry");
    assert_eq!(entry["master"], "br0", "{entry}");
    assert_eq!(entry["state"], "static", "{entry}");
    let mut br = std::ptr::null_mut();
    let br0 = cs("br0");
    // SAFETY: as above.
    ok(|e| unsafe { netkit::link::netkit_link_get(t.h, br0.as_ptr(), &mut br, e) });
    // SAFETY: a live link, read then freed.
    let br_index = unsafe {
        let i = (*br).index;
        netkit::link::netkit_link_free(br);
        i
    };
    let listed = fdb(&t, "v1");
    let ours = listed.iter().find(|e| e.mac == MAC2).expect("listed by the ABI");
    assert_eq!((ours.master, ours.permanent, ours.is_self), (br_index, false, false));

    // Errors: a device that does not exist, no device at all.
    let nosuch = cs("nosuch0");
    port.dev = nosuch.as_ptr();
    // SAFETY: as above.
    fails(NETKIT_E_NOT_FOUND, |e| unsafe { netkit_fdb_add(t.h, &port, e) });
    // Deleting on a missing device is success (idempotent).
    // SAFETY: as above.
    ok(|e| unsafe { netkit_fdb_del(t.h, &port, e) });
    port.dev = std::ptr::null();
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe { netkit_fdb_add(t.h, &port, e) });
}

fn ip_addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}
