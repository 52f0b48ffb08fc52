//! Argument checks: NULL pointers name the argument, invalid UTF-8 is refused, NULL `err` is
//! allowed, the accessors accept NULL.

use std::ffi::c_char;

use netkit::error::*;
use netkit::link::*;
use netkit::netns::*;
use netkit::route::*;

use crate::common::{cs, fails, Ns};

#[test]
fn null_arguments_name_the_argument() {
    let mut ns = std::ptr::null_mut();
    // SAFETY: NULL is what is tested; out-pointers valid.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_netns_create(std::ptr::null(), &mut ns, e)
    });
    assert!(f.message.contains("`name` is NULL"), "{f:?}");
    let name = cs("x");
    // SAFETY: NULL out-pointer is what is tested.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_netns_create(name.as_ptr(), std::ptr::null_mut(), e)
    });
    assert!(f.message.contains("`out` is NULL"), "{f:?}");
    let mut link = std::ptr::null_mut();
    // SAFETY: NULL handle is what is tested.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_link_get(std::ptr::null(), name.as_ptr(), &mut link, e)
    });
    assert!(f.message.contains("`h` is NULL"), "{f:?}");
    assert!(link.is_null());

    let t = Ns::new("fnull");
    // SAFETY: NULL config.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_link_add_veth(t.h, std::ptr::null(), std::ptr::null_mut(), e)
    });
    assert!(f.message.contains("`cfg` is NULL"), "{f:?}");
    let cfg = netkit_veth_config {
        name: name.as_ptr(),
        peer_name: std::ptr::null(),
        peer_netns: std::ptr::null(),
        mtu: 0,
        set_mac: false,
        mac: [0; 6],
        set_peer_mac: false,
        peer_mac: [0; 6],
        master_index: 0,
        up: false,
    };
    // SAFETY: a config with a NULL required string.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_link_add_veth(t.h, &cfg, std::ptr::null_mut(), e)
    });
    assert!(f.message.contains("`cfg.peer_name` is NULL"), "{f:?}");
    // A multipath route whose array is NULL with a length.
    let mut r = route_config();
    r.nexthops_len = 2;
    // SAFETY: nexthops NULL with a length: refused before reading.
    let f = fails(NETKIT_E_INVALID, |e| unsafe { netkit_route_add(t.h, &r, e) });
    assert!(f.message.contains("`cfg.nexthops` is NULL"), "{f:?}");
    // Nothing was created.
    assert!(!t.host.ip(&["link"]).contains("x@"));
}

/// A zeroed route config with dst 10.9.0.0/16.
pub fn route_config() -> netkit_route_config {
    netkit_route_config {
        dst: netkit::conv::netkit_prefix {
            ip: std::net::IpAddr::from([10, 9, 0, 0]).into(),
            len: 16,
        },
        gateway: Default::default(),
        dev: std::ptr::null(),
        dev_index: 0,
        onlink: false,
        table: 0,
        metric: 0,
        scope: 0,
        set_scope: false,
        kind: 0,
        mtu: 0,
        prefsrc: Default::default(),
        protocol: 0,
        nexthops: std::ptr::null(),
        nexthops_len: 0,
    }
}

#[test]
fn invalid_utf8_is_refused() {
    let bad = b"ns\xff\xfe\0";
    let mut ns = std::ptr::null_mut();
    // SAFETY: a NUL-terminated byte string that is not UTF-8.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_netns_create(bad.as_ptr() as *const c_char, &mut ns, e)
    });
    assert!(f.message.contains("`name` is not valid UTF-8"), "{f:?}");
    let t = Ns::new("futf8");
    // SAFETY: as above.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_link_set_up(t.h, bad.as_ptr() as *const c_char, e)
    });
    assert!(f.message.contains("`name` is not valid UTF-8"), "{f:?}");
}

#[test]
fn null_err_is_allowed_and_accessors_take_null() {
    let mut ns = std::ptr::null_mut();
    let name = cs("does-not-exist-ffi");
    // SAFETY: valid string and out-pointer; err NULL.
    let st = unsafe { netkit_netns_open(name.as_ptr(), &mut ns, std::ptr::null_mut()) };
    assert_eq!(st, NETKIT_E_NOT_FOUND);
    // SAFETY: NULL is accepted by every accessor and free function.
    unsafe {
        assert!(netkit_error_message(std::ptr::null()).is_null());
        assert_eq!(netkit_error_kind(std::ptr::null()), NETKIT_E_INVALID);
        assert_eq!(netkit_error_errno(std::ptr::null()), 0);
        netkit_error_free(std::ptr::null_mut());
        netkit_netns_free(std::ptr::null_mut());
        netkit_link_list_free(std::ptr::null_mut(), 3);
        netkit::own::netkit_string_free(std::ptr::null_mut());
    }
}

#[test]
fn version_and_status_names() {
    assert_eq!(netkit::netkit_version(), netkit::NETKIT_ABI_VERSION);
    // SAFETY: static NUL-terminated strings.
    let name = |s| {
        unsafe { std::ffi::CStr::from_ptr(netkit_status_name(s)) }
            .to_str()
            .unwrap()
    };
    assert_eq!(name(NETKIT_E_NOT_FOUND), "NETKIT_E_NOT_FOUND");
    assert_eq!(name(-1000), "NETKIT_E_UNKNOWN");
    // SAFETY: static string.
    let v = unsafe { std::ffi::CStr::from_ptr(netkit::netkit_version_string()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn calling_from_inside_a_tokio_runtime_is_an_error_not_a_panic() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let name = cs("whatever");
    let st = rt.block_on(async {
        let mut ns = std::ptr::null_mut();
        // SAFETY: valid arguments.
        crate::common::call(|e| unsafe { netkit::netns::netkit_netns_open(name.as_ptr(), &mut ns, e) })
    });
    // Opening by name does not need the runtime; opening a handle does.
    let _ = st;
    let t = Ns::new("frt");
    let st = rt.block_on(async {
        let mut h = std::ptr::null_mut();
        // SAFETY: valid arguments.
        crate::common::call(|e| unsafe { netkit::handle::netkit_handle_open(t.ns, &mut h, e) })
    });
    let f = st.expect_err("must refuse");
    assert_eq!(f.status, NETKIT_E_INVALID);
    assert!(f.message.contains("outside any tokio runtime"), "{f:?}");
}
