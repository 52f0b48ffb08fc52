//! 100,000 calls leave the process's memory flat: gets, lists and failing calls (with error
//! objects) after a warm-up, resident set size compared before and after. Its own test binary,
//! so that no other test allocates in the process meanwhile.

// Shared with the ffi tests; this binary uses only part of it.
#[allow(dead_code)]
#[path = "ffi/common.rs"]
mod common;

use netkit::link::*;

#[path = "support/flat.rs"]
mod flat;

use common::{call, cs, ok, Ns};
use flat::assert_memory_flat;

/// A zeroed veth config named `name` / `peer`.
fn veth(name: &std::ffi::CString, peer: &std::ffi::CString) -> netkit_veth_config {
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
fn hundred_thousand_calls_leave_memory_flat() {
    let t = Ns::new("fmem");
    let (v0, v1, nope) = (cs("v0"), cs("v1"), cs("nope"));
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_link_add_veth(t.h, &veth(&v0, &v1), std::ptr::null_mut(), e) });
    let round = |i: usize| match i % 4 {
        0 | 1 => {
            let mut l = std::ptr::null_mut();
            // SAFETY: valid arguments; the link is freed once.
            ok(|e| unsafe { netkit_link_get(t.h, v0.as_ptr(), &mut l, e) });
            // SAFETY: as above.
            unsafe { netkit_link_free(l) };
        }
        2 => {
            let (mut links, mut len) = (std::ptr::null_mut(), 0usize);
            // SAFETY: valid arguments; the array is freed once.
            ok(|e| unsafe { netkit_link_list(t.h, &mut links, &mut len, e) });
            // SAFETY: as above.
            unsafe { netkit_link_list_free(links, len) };
        }
        _ => {
            let mut l = std::ptr::null_mut();
            // SAFETY: valid arguments; `call` frees the error object.
            assert!(call(|e| unsafe { netkit_link_get(t.h, nope.as_ptr(), &mut l, e) }).is_err());
        }
    };
    assert_memory_flat(5_000, round);
}
