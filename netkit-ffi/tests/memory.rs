//! 100,000 calls leave the process's memory flat: gets, lists and failing calls (with error
//! objects) after a warm-up, resident set size compared before and after. Its own test binary,
//! so that no other test allocates in the process meanwhile.

// Shared with the ffi tests; this binary uses only part of it.
#[allow(dead_code)]
#[path = "ffi/common.rs"]
mod common;

use netkit::link::*;

use common::{call, cs, ok, Ns};

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

/// Resident set size in KiB, from /proc/self/statm.
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page / 1024
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
    for i in 0..5_000 {
        round(i);
    }
    let before = rss_kib();
    for i in 0..100_000 {
        round(i);
    }
    let after = rss_kib();
    let grown = after.saturating_sub(before);
    // A leak of even 40 bytes a call would be 4 MB.
    assert!(
        grown < 2048,
        "RSS grew by {grown} KiB over 100,000 calls ({before} -> {after} KiB)"
    );
}
