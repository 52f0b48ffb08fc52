//! The firewall through the ABI: an owner's port mapping and masquerade carry real TCP between
//! namespaces the test makes, then teardown and GC remove them; conflicts and bad input. Once
//! per driver.
//!
//! ```text
//!  C eth0 10.88.0.2/24 ── vc0 ─ br0 10.88.0.1/24   H   ext0 192.0.2.1/24 ── eth0 192.0.2.2/24 O
//! ```
//!
//! H forwards; O has no route to 10.88.0.0/24, so only the port mapping (DNAT) lets O reach C,
//! and only the masquerade lets C reach O.

use std::ffi::CStr;
use std::net::SocketAddr;

use netkit::error::*;
use netkit::fw::*;
use netkit::netns::{netkit_netns_free, netkit_netns_open};
use netkit_test_support::echo::tcp_hello_from;
use netkit_test_support::natlab::NatLab;
use netkit_test_support::report_skip;

use crate::common::{call, cs, fails, ok};
use crate::routes::{ip, prefix};

/// H (host), C (container), O (outside): netkit-test-support's NAT lab.
type Lab = NatLab;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The lab's firewall with `driver`, or `None` (skip reported) when it cannot run here.
fn open(lab: &Lab, driver: u32, test: &str) -> Option<*mut netkit_fw> {
    let name = cs(lab.host.name());
    let dir = cs(lab.host.fw_dir().to_str().unwrap());
    let mut ns = std::ptr::null_mut();
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_netns_open(name.as_ptr(), &mut ns, e) });
    let mut fw = std::ptr::null_mut();
    // SAFETY: valid arguments; the namespace object is freed after (the firewall keeps its own).
    let opened = call(|e| unsafe { netkit_fw_open(ns, driver, dir.as_ptr(), &mut fw, e) });
    // SAFETY: live, freed once.
    unsafe { netkit_netns_free(ns) };
    match opened {
        Ok(()) => Some(fw),
        Err(f) if f.status == NETKIT_E_UNSUPPORTED => {
            report_skip(test, &f.message);
            None
        }
        Err(f) => panic!("open the firewall: {f:?}"),
    }
}

fn mapping(host_port: u16) -> netkit_port_mapping {
    netkit_port_mapping {
        protocol: NETKIT_PROTO_TCP,
        host_ip: Default::default(),
        host_port,
        host_port_end: 0,
        container_ip: ip("10.88.0.2"),
        container_port: 80,
    }
}

/// Rules holding these arrays (the rest empty).
fn rules(maps: &[netkit_port_mapping], masqs: &[netkit_masquerade], nets: &[netkit_fw_network]) -> netkit_fw_rules {
    netkit_fw_rules {
        port_mappings: maps.as_ptr(),
        port_mappings_len: maps.len(),
        masquerades: masqs.as_ptr(),
        masquerades_len: masqs.len(),
        networks: nets.as_ptr(),
        networks_len: nets.len(),
        isolations: std::ptr::null(),
        isolations_len: 0,
        services: std::ptr::null(),
        services_len: 0,
    }
}

/// The owners the firewall records.
fn owners(fw: *mut netkit_fw) -> Vec<String> {
    let (mut list, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: valid arguments; the strings are copied, then the array freed once.
    unsafe {
        ok(|e| netkit_fw_owners(fw, &mut list, &mut len, e));
        let out = if len == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(list, len)
                .iter()
                .map(|s| CStr::from_ptr(*s).to_str().unwrap().to_string())
                .collect()
        };
        netkit::own::netkit_strings_free(list, len);
        out
    }
}

fn port_mapping_with_real_tcp(driver: u32, test: &str) {
    if driver == NETKIT_FW_IPTABLES && !std::path::Path::new("/usr/sbin/iptables-restore").exists() {
        report_skip(test, "iptables-restore is not installed");
        return;
    }
    let lab = Lab::build("ffw");
    let Some(fw) = open(&lab, driver, test) else { return };
    let mut d = 0;
    // SAFETY: a live firewall, valid out-pointer.
    ok(|e| unsafe { netkit_fw_driver(fw, &mut d, e) });
    assert_eq!(d, driver);

    let br0 = cs("br0");
    let maps = [mapping(8080)];
    let masqs = [netkit_masquerade {
        source: prefix("10.88.0.0/24"),
        network: Default::default(),
    }];
    let nets = [netkit_fw_network {
        interface: br0.as_ptr(),
        subnet: prefix("10.88.0.0/24"),
    }];
    let r = rules(&maps, &masqs, &nets);
    let owner = cs("c1:eth0");
    // SAFETY: valid arguments throughout.
    ok(|e| unsafe { netkit_fw_add(fw, owner.as_ptr(), &r, e) });
    // Again: idempotent.
    // SAFETY: as above.
    ok(|e| unsafe { netkit_fw_add(fw, owner.as_ptr(), &r, e) });

    let h = lab.o_to_mapped().expect("O -> 192.0.2.1:8080 through the mapping");
    assert_eq!(h.name, "C");
    assert_eq!(
        h.peer.ip().to_string(),
        "192.0.2.2",
        "the client's address arrives unchanged"
    );
    let h = lab.c_to_outside().expect("C -> O with masquerade");
    assert_eq!(h.name, "O");
    assert_eq!(h.peer.ip().to_string(), "192.0.2.1", "O sees H's address (masquerade)");
    assert_eq!(owners(fw), ["c1:eth0"]);

    // Another owner cannot take the host port.
    let other = cs("c2:eth0");
    let taken = rules(&maps, &[], &[]);
    // SAFETY: as above.
    let f = fails(NETKIT_E_EXISTS, |e| unsafe {
        netkit_fw_add(fw, other.as_ptr(), &taken, e)
    });
    assert!(f.message.contains("conflicts with"), "{f:?}");

    // GC keeps the valid owner and removes the others.
    let extra = [mapping(9090)];
    let r3 = rules(&extra, &[], &[]);
    let c3 = cs("c3:eth0");
    // SAFETY: as above.
    ok(|e| unsafe { netkit_fw_add(fw, c3.as_ptr(), &r3, e) });
    assert!(
        tcp_hello_from(&lab.o, sa("192.0.2.1:9090")).is_ok(),
        "the second mapping works"
    );
    let valid = [owner.as_ptr()];
    let (mut removed, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as above; the removed names are read, then freed once.
    unsafe {
        ok(|e| netkit_fw_gc(fw, valid.as_ptr(), 1, &mut removed, &mut len, e));
        let names: Vec<&str> = std::slice::from_raw_parts(removed, len)
            .iter()
            .map(|s| CStr::from_ptr(*s).to_str().unwrap())
            .collect();
        assert_eq!(names, ["c3:eth0"]);
        netkit::own::netkit_strings_free(removed, len);
    }
    assert!(
        tcp_hello_from(&lab.o, sa("192.0.2.1:9090")).is_err(),
        "9090 gone after gc"
    );
    assert!(lab.o_to_mapped().is_ok(), "gc kept the valid owner");

    // Teardown: the mapping and the masquerade are gone; again is no error.
    // SAFETY: as above.
    ok(|e| unsafe { netkit_fw_teardown(fw, owner.as_ptr(), e) });
    assert!(lab.o_to_mapped().is_err(), "8080 still mapped after teardown");
    assert!(lab.c_to_outside().is_err(), "still masqueraded after teardown");
    // SAFETY: as above.
    ok(|e| unsafe { netkit_fw_teardown(fw, owner.as_ptr(), e) });
    assert!(owners(fw).is_empty());
    let ruleset = match driver {
        NETKIT_FW_NFTABLES => netkit_test_support::cmd::sh(&lab.host, "nft list ruleset"),
        _ => netkit_test_support::cmd::sh(&lab.host, "iptables-save"),
    };
    assert!(
        !ruleset.contains("netkit") && !ruleset.contains("NETKIT"),
        "netkit's rules outlived their last owner: {ruleset}"
    );
    // SAFETY: closed once, then again (ignored).
    unsafe {
        netkit_fw_close(fw);
        netkit_fw_close(fw);
    }
}

#[test]
fn port_mapping_with_real_tcp_nftables() {
    port_mapping_with_real_tcp(NETKIT_FW_NFTABLES, "fw::port_mapping_with_real_tcp_nftables");
}

#[test]
fn port_mapping_with_real_tcp_iptables() {
    port_mapping_with_real_tcp(NETKIT_FW_IPTABLES, "fw::port_mapping_with_real_tcp_iptables");
}

#[test]
fn firewall_input_is_checked() {
    let lab = Lab::build("ffwbad");
    let Some(fw) = open(&lab, NETKIT_FW_AUTO, "fw::firewall_input_is_checked") else {
        return;
    };
    let owner = cs("c1:eth0");
    let mut bad = mapping(8080);
    bad.protocol = 99;
    let maps = [bad];
    let r = rules(&maps, &[], &[]);
    // SAFETY: valid pointers; the values are what is tested.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_fw_add(fw, owner.as_ptr(), &r, e)
    });
    assert!(f.message.contains("rules.port_mappings[0].protocol"), "{f:?}");
    let maps = [mapping(0)];
    let r = rules(&maps, &[], &[]);
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_fw_add(fw, owner.as_ptr(), &r, e)
    });
    let bad_owner = cs("no spaces");
    let r = rules(&[], &[], &[]);
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_fw_add(fw, bad_owner.as_ptr(), &r, e)
    });
    let mut r = rules(&[], &[], &[]);
    r.services_len = 1;
    // SAFETY: a NULL array with a length.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_fw_add(fw, owner.as_ptr(), &r, e)
    });
    assert!(f.message.contains("`rules.services` is NULL"), "{f:?}");
    // A masquerade whose source is outside its network.
    let masqs = [netkit_masquerade {
        source: prefix("10.1.0.0/24"),
        network: prefix("10.88.0.0/24"),
    }];
    let r = rules(&[], &masqs, &[]);
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_fw_add(fw, owner.as_ptr(), &r, e)
    });
    assert!(owners(fw).is_empty(), "nothing was added");
    let mut other = std::ptr::null_mut();
    let dir = cs(lab.host.fw_dir().to_str().unwrap());
    // SAFETY: a NULL namespace.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_fw_open(std::ptr::null(), 0, dir.as_ptr(), &mut other, e)
    });
    let name = cs(lab.host.name());
    let mut ns = std::ptr::null_mut();
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_netns_open(name.as_ptr(), &mut ns, e) });
    // SAFETY: an unknown driver; then the namespace object freed once.
    unsafe {
        let f = fails(NETKIT_E_INVALID, |e| netkit_fw_open(ns, 7, dir.as_ptr(), &mut other, e));
        assert!(f.message.contains("driver"), "{f:?}");
        netkit_netns_free(ns);
    }
    // SAFETY: live firewall, closed once.
    unsafe { netkit_fw_close(fw) };
}
