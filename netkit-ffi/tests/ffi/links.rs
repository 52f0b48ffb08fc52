//! Links through the ABI, compared with what `ip -j` sees; namespaces listed and named;
//! ownership round trips and double frees.

use std::ffi::{c_char, CStr};

use netkit::link::*;
use netkit::netns::*;
use netkit::own::{netkit_string_free, netkit_strings_free};
use netkit_test_support::ipj;

use crate::common::{cs, ok, Ns};
use crate::kinds::veth;

/// The string a struct field points to.
fn s(p: *const c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: a NUL-terminated string owned by a live struct.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
}

/// Get a link by name and copy out (name, kind, mtu, up, master, mac); the struct is freed.
fn get(t: &Ns, name: &str) -> (String, String, u32, bool, u32, [u8; 6], u32) {
    let c = cs(name);
    let mut l = std::ptr::null_mut();
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_link_get(t.h, c.as_ptr(), &mut l, e) });
    // SAFETY: `l` is a live link; read, then freed (twice: the second is ignored).
    unsafe {
        let r = &*l;
        let out = (s(r.name), s(r.kind), r.mtu, r.up, r.master, r.mac, r.index);
        netkit_link_free(l);
        netkit_link_free(l);
        out
    }
}

#[test]
fn veth_with_peer_in_another_namespace() {
    let a = Ns::new("fva");
    let b = Ns::new("fvb");
    let (n, p) = (cs("eth0"), cs("peer0"));
    let mut cfg = veth(&n, &p);
    cfg.peer_netns = b.ns;
    cfg.mtu = 1400;
    cfg.set_mac = true;
    cfg.mac = [0x02, 0, 0, 0, 0, 0x0a];
    cfg.up = true;
    let mut link = std::ptr::null_mut();
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_link_add_veth(a.h, &cfg, &mut link, e) });
    // SAFETY: live link, read then freed.
    let (index, parent) = unsafe { ((*link).index, (*link).parent) };
    // SAFETY: freed once.
    unsafe { netkit_link_free(link) };
    let (name, kind, mtu, up, _, mac, idx) = get(&a, "eth0");
    assert_eq!(
        (name.as_str(), kind.as_str(), mtu, up, mac, idx),
        ("eth0", "veth", 1400, true, cfg.mac, index)
    );
    // The peer lives in b with the index the creation reported.
    let j = ipj(b.name(), &["link", "show", "peer0"]).expect("peer0 in b")[0].clone();
    assert_eq!(j["ifindex"].as_u64(), Some(parent as u64), "{j}");
    assert_eq!(j["mtu"].as_u64(), Some(1400));
    // The list of a: lo and eth0, with the attributes ip sees.
    let mut links = std::ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_link_list(a.h, &mut links, &mut len, e) });
    // SAFETY: `len` links at `links`.
    let list = unsafe { std::slice::from_raw_parts(links, len) };
    let names: Vec<String> = list.iter().map(|l| s(l.name)).collect();
    assert_eq!(names, ["lo", "eth0"]);
    let eth0 = &list[1];
    let ip = ipj(a.name(), &["link", "show", "eth0"]).unwrap()[0].clone();
    assert_eq!(s(eth0.operstate), ip["operstate"].as_str().unwrap());
    assert_eq!(eth0.flags & libc::IFF_UP as u32, libc::IFF_UP as u32);
    assert!(eth0.netnsid >= 0, "the peer is in another namespace: link-netnsid set");
    assert_eq!(Some(eth0.netnsid as i64), ip["link_netnsid"].as_i64());
    assert!(list[0].alias.is_null());
    // A wrong length is ignored (nothing freed), the right one frees.
    // SAFETY: the library checks the length against its record before touching anything.
    unsafe {
        netkit_link_list_free(links, len + 1);
        netkit_link_list_free(links, len);
        netkit_link_list_free(links, len);
    }
}

#[test]
fn bridge_ports_and_link_changes() {
    let t = Ns::new("fbr");
    let br = cs("br0");
    let bcfg = netkit_bridge_config {
        name: br.as_ptr(),
        mtu: 0,
        set_mac: false,
        mac: [0; 6],
        stp: false,
        up: true,
    };
    // SAFETY: valid arguments throughout.
    ok(|e| unsafe { netkit_link_add_bridge(t.h, &bcfg, std::ptr::null_mut(), e) });
    let (v0, v1) = (cs("v0"), cs("v1"));
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_add_veth(t.h, &veth(&v0, &v1), std::ptr::null_mut(), e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_set_master(t.h, v0.as_ptr(), br.as_ptr(), e) });
    let (_, kind, _, up, _, _, br_index) = get(&t, "br0");
    assert_eq!((kind.as_str(), up), ("bridge", true));
    assert_eq!(get(&t, "v0").4, br_index, "v0 is a port of br0");
    assert_eq!(
        ipj(t.name(), &["link", "show", "v0"]).unwrap()[0]["master"].as_str(),
        Some("br0")
    );
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_set_nomaster(t.h, v0.as_ptr(), e) });
    assert_eq!(get(&t, "v0").4, 0);
    // mtu, mac, up/down, rename.
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_set_mtu(t.h, v0.as_ptr(), 1280, e) });
    let mac = [0x02u8, 0x11, 0x22, 0x33, 0x44, 0x55];
    // SAFETY: as above; `mac` is 6 bytes.
    ok(|e| unsafe { netkit_link_set_mac(t.h, v0.as_ptr(), mac.as_ptr(), e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_set_up(t.h, v0.as_ptr(), e) });
    let (_, _, mtu, up, _, got_mac, _) = get(&t, "v0");
    assert_eq!((mtu, up, got_mac), (1280, true, mac));
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_set_down(t.h, v0.as_ptr(), e) });
    assert!(!get(&t, "v0").3);
    let renamed = cs("v0new");
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_set_name(t.h, v0.as_ptr(), renamed.as_ptr(), e) });
    assert_eq!(get(&t, "v0new").0, "v0new");
    // Move v1 to another namespace; then delete v0new (which deletes the pair), idempotently.
    let other = Ns::new("fbr2");
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_set_netns(t.h, v1.as_ptr(), other.ns, e) });
    assert!(ipj(other.name(), &["link", "show", "v1"]).is_some());
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_del(t.h, renamed.as_ptr(), e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_del(t.h, renamed.as_ptr(), e) });
    assert!(ipj(t.name(), &["link", "show", "v0new"]).is_none());
}

#[test]
fn vxlan_macvlan_and_tap() {
    let t = Ns::new("fkinds");
    let (v0, v1) = (cs("v0"), cs("v1"));
    // SAFETY: valid arguments throughout.
    ok(|e| unsafe { netkit_link_add_veth(t.h, &veth(&v0, &v1), std::ptr::null_mut(), e) });
    let vx = cs("vx0");
    let cfg = netkit_vxlan_config {
        name: vx.as_ptr(),
        vni: 42,
        port: 8472,
        local: std::net::IpAddr::from([192, 0, 2, 1]).into(),
        remote: Default::default(),
        parent: v0.as_ptr(),
        nolearning: true,
        ttl: 0,
        mtu: 1450,
        set_mac: false,
        mac: [0; 6],
        up: false,
    };
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_add_vxlan(t.h, &cfg, std::ptr::null_mut(), e) });
    let j = ipj(t.name(), &["link", "show", "vx0"]).unwrap()[0].clone();
    let info = &j["linkinfo"]["info_data"];
    assert_eq!(
        (info["id"].as_u64(), info["port"].as_u64()),
        (Some(42), Some(8472)),
        "{j}"
    );
    assert_eq!(info["learning"].as_bool(), Some(false), "{j}");
    assert_eq!(get(&t, "vx0").2, 1450);

    let mv = cs("mv0");
    let cfg = netkit_macvlan_config {
        name: mv.as_ptr(),
        parent: v0.as_ptr(),
        mode: NETKIT_MACVLAN_PRIVATE,
        mtu: 0,
    };
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_add_macvlan(t.h, &cfg, std::ptr::null_mut(), e) });
    let j = ipj(t.name(), &["link", "show", "mv0"]).unwrap()[0].clone();
    assert_eq!(j["linkinfo"]["info_data"]["mode"].as_str(), Some("private"), "{j}");

    let tap = cs("tap0");
    let cfg = netkit_tuntap_config {
        name: tap.as_ptr(),
        mode: NETKIT_TUNTAP_TAP,
        set_owner: true,
        owner: 1000,
        set_group: false,
        group: 0,
        packet_info: false,
        multi_queue: false,
    };
    let mut link = std::ptr::null_mut();
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_add_tuntap(t.h, &cfg, &mut link, e) });
    // SAFETY: a live link, read then freed.
    unsafe {
        assert_eq!(s((*link).kind), "tun");
        netkit_link_free(link);
    }
    let j = ipj(t.name(), &["link", "show", "tap0"]).unwrap()[0].clone();
    assert_eq!(j["linkinfo"]["info_data"]["type"].as_str(), Some("tap"), "{j}");
    // A mode that is neither tun nor tap.
    let bad = netkit_tuntap_config { mode: 7, ..cfg };
    // SAFETY: as above.
    crate::common::fails(netkit::error::NETKIT_E_INVALID, |e| unsafe {
        netkit_link_add_tuntap(t.h, &bad, std::ptr::null_mut(), e)
    });
}

#[test]
fn namespaces_listed_named_and_identified() {
    let t = Ns::new("fnsl");
    let mut names = std::ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: valid out-pointers.
    ok(|e| unsafe { netkit_netns_list(&mut names, &mut len, e) });
    // SAFETY: `len` strings at `names`.
    let list: Vec<String> = unsafe { std::slice::from_raw_parts(names, len) }
        .iter()
        .map(|p| s(*p))
        .collect();
    assert!(list.iter().any(|n| n == t.name()), "{list:?}");
    // SAFETY: freed once; the second free is ignored.
    unsafe {
        netkit_strings_free(names, len);
        netkit_strings_free(names, len);
    }
    let mut name = std::ptr::null_mut();
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_netns_name(t.ns, &mut name, e) });
    assert_eq!(s(name), t.name());
    // SAFETY: freed once, second ignored.
    unsafe {
        netkit_string_free(name);
        netkit_string_free(name);
    }
    // Opened by path: same inode, no name.
    let path = cs(&format!("/run/netns/{}", t.name()));
    let mut by_path = std::ptr::null_mut();
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_netns_open_path(path.as_ptr(), &mut by_path, e) });
    let (mut i1, mut i2) = (0u64, 0u64);
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_netns_inode(t.ns, &mut i1, e) });
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_netns_inode(by_path, &mut i2, e) });
    assert_eq!(i1, i2);
    let mut none = std::ptr::dangling_mut::<c_char>();
    // SAFETY: valid arguments; `none` is overwritten with NULL.
    ok(|e| unsafe { netkit_netns_name(by_path, &mut none, e) });
    assert!(none.is_null());
    // The namespace of this process (by pid): a different inode than the test's.
    let mut own = std::ptr::null_mut();
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_netns_open_pid(std::process::id(), &mut own, e) });
    let mut i3 = 0u64;
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_netns_inode(own, &mut i3, e) });
    assert_ne!(i3, i1);
    // The handle's namespace is t's.
    let mut hns = std::ptr::null_mut();
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit::handle::netkit_handle_netns(t.h, &mut hns, e) });
    let mut i4 = 0u64;
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_netns_inode(hns, &mut i4, e) });
    assert_eq!(i4, i1);
    // SAFETY: live objects, each freed once (then once more: ignored).
    unsafe {
        for p in [by_path, own, hns] {
            netkit_netns_free(p);
            netkit_netns_free(p);
        }
    }
}
