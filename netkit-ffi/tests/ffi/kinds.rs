//! Every error kind from the real kernel where this machine can produce it (root has every
//! permission, so NETKIT_E_PERMISSION and NETKIT_E_BUSY are covered by the mapping's unit
//! tests in src/error.rs, as are NETKIT_E_INTERNAL for a panic and NETKIT_E_EXHAUSTED).

use netkit::error::*;
use netkit::link::*;
use netkit::netns::*;
use netkit_test_support::{report_skip, unique};

use crate::common::{cs, fails, ok, Ns};

/// A zeroed veth config named `name` / `peer`.
pub fn veth(name: &std::ffi::CString, peer: &std::ffi::CString) -> netkit_veth_config {
    netkit_veth_config {
        name: name.as_ptr(),
        peer_name: peer.as_ptr(),
        peer_netns: std::ptr::null(),
        mtu: 0,
        set_mac: false,
        mac: [0; 6],
        set_peer_mac: false,
        peer_mac: [0; 6],
        master_index: 0,
        up: false,
    }
}

#[test]
fn not_found_and_exists_for_namespaces() {
    let name = cs(&unique("fkind"));
    let mut ns = std::ptr::null_mut();
    // SAFETY: valid arguments throughout.
    let f = fails(NETKIT_E_NOT_FOUND, |e| unsafe {
        netkit_netns_open(name.as_ptr(), &mut ns, e)
    });
    assert_eq!(f.errno, libc::ENOENT, "{f:?}");
    // Deleting a name that does not exist is success (idempotent).
    // SAFETY: as above.
    ok(|e| unsafe { netkit_netns_delete(name.as_ptr(), e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_netns_create(name.as_ptr(), &mut ns, e) });
    let mut again = std::ptr::null_mut();
    // SAFETY: as above.
    let f = fails(NETKIT_E_EXISTS, |e| unsafe {
        netkit_netns_create(name.as_ptr(), &mut again, e)
    });
    assert!(f.message.contains("already exists"), "{f:?}");
    assert!(again.is_null());
    // SAFETY: as above.
    ok(|e| unsafe { netkit_netns_delete(name.as_ptr(), e) });
    // SAFETY: live object, freed once.
    unsafe { netkit_netns_free(ns) };
    // A name with '/' is invalid before anything happens.
    let bad = cs("a/b");
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_netns_create(bad.as_ptr(), &mut ns, e)
    });
    // A file that is no namespace: invalid; a path under a file: an I/O error (ENOTDIR).
    let path = cs("/proc/self/status");
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_netns_open_path(path.as_ptr(), &mut ns, e)
    });
    let path = cs("/proc/self/status/x");
    // SAFETY: as above.
    let f = fails(NETKIT_E_IO, |e| unsafe {
        netkit_netns_open_path(path.as_ptr(), &mut ns, e)
    });
    assert_eq!(f.errno, libc::ENOTDIR, "{f:?}");
}

#[test]
fn link_kinds_from_the_kernel() {
    let t = Ns::new("flkind");
    let (v0, v1, nope) = (cs("v0"), cs("v1"), cs("nope0"));
    let mut link = std::ptr::null_mut();
    // SAFETY: valid arguments throughout.
    let f = fails(NETKIT_E_NOT_FOUND, |e| unsafe {
        netkit_link_get(t.h, nope.as_ptr(), &mut link, e)
    });
    assert_eq!(f.errno, libc::ENODEV, "{f:?}");
    assert!(
        f.message.contains("nope0") && f.message.contains(t.name()),
        "names link and netns: {f:?}"
    );
    let cfg = veth(&v0, &v1);
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_add_veth(t.h, &cfg, std::ptr::null_mut(), e) });
    // SAFETY: as above.
    let f = fails(NETKIT_E_EXISTS, |e| unsafe {
        netkit_link_add_veth(t.h, &cfg, std::ptr::null_mut(), e)
    });
    assert_eq!(f.errno, libc::EEXIST);
    // The kernel's EINVAL: an MTU below the minimum.
    // SAFETY: as above.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_link_set_mtu(t.h, v0.as_ptr(), 10, e)
    });
    assert_eq!(f.errno, libc::EINVAL);
    // A name too long is refused before the kernel.
    let long = cs("abcdefghijklmnopq");
    let cfg = veth(&long, &v1);
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_link_add_veth(t.h, &cfg, std::ptr::null_mut(), e)
    });
    // Macvlan on a parent that does not exist.
    let mv = netkit_macvlan_config {
        name: cs("mv0").into_raw(),
        parent: nope.as_ptr(),
        mode: 0,
        mtu: 0,
    };
    // SAFETY: as above.
    fails(NETKIT_E_NOT_FOUND, |e| unsafe {
        netkit_link_add_macvlan(t.h, &mv, std::ptr::null_mut(), e)
    });
    // SAFETY: from `into_raw` above, freed once.
    drop(unsafe { std::ffi::CString::from_raw(mv.name as *mut _) });
}

#[test]
fn ipip_is_unsupported_on_this_kernel() {
    let t = Ns::new("fipip");
    let name = cs("tun9");
    let cfg = netkit_ipip_config {
        name: name.as_ptr(),
        local: std::net::IpAddr::from([10, 0, 0, 1]).into(),
        remote: std::net::IpAddr::from([10, 0, 0, 2]).into(),
        parent: std::ptr::null(),
        ttl: 0,
        mtu: 0,
    };
    // SAFETY: valid arguments.
    match crate::common::call(|e| unsafe { netkit_link_add_ipip(t.h, &cfg, std::ptr::null_mut(), e) }) {
        Ok(()) => report_skip("ipip_is_unsupported_on_this_kernel", "this kernel has the ipip driver"),
        Err(f) => {
            assert_eq!(f.status, NETKIT_E_UNSUPPORTED, "{f:?}");
            assert_eq!(f.errno, libc::EOPNOTSUPP);
            assert!(f.message.contains("ipip"), "{f:?}");
        }
    }
    // An IPv6 endpoint for an IPv4 tunnel: invalid, whatever the kernel.
    let cfg = netkit_ipip_config {
        local: "fd00::1".parse::<std::net::IpAddr>().unwrap().into(),
        ..cfg
    };
    // SAFETY: valid arguments.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_link_add_ipip(t.h, &cfg, std::ptr::null_mut(), e)
    });
}
