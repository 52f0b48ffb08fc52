//! 100,000 calls of the rule, neighbour, FDB, event and IPAM functions leave the process's
//! memory flat: lists, events read and freed (a link's MTU changed to make them), allocations
//! and releases, failing calls with error objects; resident set size compared before and after
//! a warm-up. Its own test binary, so that no other test allocates in the process meanwhile.

// Shared with the ffi tests; this binary uses only part of it.
#[allow(dead_code)]
#[path = "ffi/common.rs"]
mod common;

use netkit::events::*;
use netkit::ipam::*;
use netkit::link::*;
use netkit::neigh::*;
use netkit::rule::*;

#[path = "support/flat.rs"]
mod flat;

use common::{call, cs, ok, Ns};
use flat::assert_memory_flat;

#[test]
fn hundred_thousand_calls_of_the_newer_areas_leave_memory_flat() {
    let t = Ns::new("fmem2");
    let (v0, v1, nope) = (cs("v0"), cs("v1"), cs("nope"));
    let cfg = netkit_veth_config {
        name: v0.as_ptr(),
        peer_name: v1.as_ptr(),
        peer_netns: std::ptr::null(),
        mtu: 0,
        set_mac: false,
        mac: [0; 6],
        set_peer_mac: false,
        peer_mac: [0; 6],
        master_index: 0,
        up: false,
    };
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_link_add_veth(t.h, &cfg, std::ptr::null_mut(), e) });
    let mut sub = std::ptr::null_mut();
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_events_subscribe(t.h, NETKIT_EVENTS_LINK, &mut sub, e) });
    let dir = netkit_test_support::tempdir("fmem2");
    let (json, net, store) = (
        cs(r#"{"ranges": [[{"subnet": "10.44.0.0/24"}]]}"#),
        cs("mem"),
        cs(dir.path().to_str().unwrap()),
    );
    let mut ipam = std::ptr::null_mut();
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_ipam_open(json.as_ptr(), net.as_ptr(), store.as_ptr(), &mut ipam, e) });
    let (id, eth0) = (cs("c1"), cs("eth0"));
    let mut events = 0usize;
    let mut round = |i: usize| match i % 8 {
        0 => {
            let (mut rules, mut len) = (std::ptr::null_mut(), 0usize);
            // SAFETY: valid arguments; the array is freed once.
            unsafe {
                ok(|e| netkit_rule_list(t.h, 0, &mut rules, &mut len, e));
                netkit_rule_list_free(rules, len);
            }
        }
        1 => {
            let (mut list, mut len) = (std::ptr::null_mut(), 0usize);
            // SAFETY: valid arguments; the array is freed once.
            unsafe {
                ok(|e| netkit_neigh_list(t.h, std::ptr::null(), 0, &mut list, &mut len, e));
                netkit_neigh_list_free(list, len);
            }
        }
        2 => {
            let (mut list, mut len) = (std::ptr::null_mut(), 0usize);
            // SAFETY: valid arguments; the array is freed once.
            unsafe {
                ok(|e| netkit_fdb_list(t.h, std::ptr::null(), &mut list, &mut len, e));
                netkit_fdb_list_free(list, len);
            }
        }
        3 => {
            // A change, so that the next round has an event to read.
            let mtu = 1400 + (i % 64) as u32;
            // SAFETY: valid arguments.
            ok(|e| unsafe { netkit_link_set_mtu(t.h, v0.as_ptr(), mtu, e) });
        }
        4 => loop {
            let mut ev = std::ptr::null_mut();
            // SAFETY: valid arguments; each event is freed once.
            ok(|e| unsafe { netkit_events_next(sub, &mut ev, e) });
            if ev.is_null() {
                break;
            }
            events += 1;
            // SAFETY: as above.
            unsafe { netkit_event_free(ev) };
        },
        5 => {
            let mut a = std::ptr::null_mut();
            // SAFETY: valid arguments; the allocation is freed once.
            unsafe {
                ok(|e| netkit_ipam_allocate(ipam, id.as_ptr(), eth0.as_ptr(), std::ptr::null(), 0, &mut a, e));
                netkit_ipam_allocation_free(a);
            }
        }
        6 => {
            let (mut ips, mut len) = (std::ptr::null_mut(), 0usize);
            // SAFETY: valid arguments; the array is freed once.
            unsafe {
                ok(|e| netkit_ipam_release(ipam, id.as_ptr(), eth0.as_ptr(), &mut ips, &mut len, e));
                netkit_ip_list_free(ips, len);
            }
        }
        _ => {
            let (mut list, mut len) = (std::ptr::null_mut(), 0usize);
            // SAFETY: valid arguments; `call` frees the error object.
            assert!(call(|e| unsafe { netkit_neigh_list(t.h, nope.as_ptr(), 0, &mut list, &mut len, e) }).is_err());
        }
    };
    assert_memory_flat(8_000, &mut round);
    assert!(events >= 100_000 / 8, "the MTU changes made events: {events}");
    // SAFETY: live objects, closed once.
    unsafe {
        netkit_events_close(sub);
        netkit_ipam_close(ipam);
    }
}
