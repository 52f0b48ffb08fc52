//! Sysctls on the real kernel, only ever written inside throwaway namespaces.
//! The test process's own namespace is only read, never written.

use netkit_core::link::Veth;
use netkit_core::sysctl::{self, Family};
use netkit_test_support::TestNs;

/// The caller's own value, read directly (never written).
fn own_ns_value(path: &str) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

fn sysctl_n(t: &TestNs, key: &str) -> String {
    t.sh(&format!("sysctl -n {key}")).trim().to_string()
}

#[tokio::test]
async fn ip_forward_is_per_netns() {
    let before = own_ns_value("/proc/sys/net/ipv4/ip_forward");
    let t = TestNs::new("sf").await;
    t.h.ip_forward(true).await.unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv4.ip_forward"), "1");
    assert_eq!(t.h.sysctl_get("net.ipv4.ip_forward").await.unwrap(), "1");
    assert_eq!(own_ns_value("/proc/sys/net/ipv4/ip_forward"), before);

    t.h.ip_forward(false).await.unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv4.ip_forward"), "0");
    assert_eq!(own_ns_value("/proc/sys/net/ipv4/ip_forward"), before);
}

#[tokio::test]
async fn ipv6_forwarding_is_per_netns() {
    let before = own_ns_value("/proc/sys/net/ipv6/conf/all/forwarding");
    let t = TestNs::new("s6").await;
    t.h.ipv6_forwarding(true).await.unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv6.conf.all.forwarding"), "1");
    assert_eq!(own_ns_value("/proc/sys/net/ipv6/conf/all/forwarding"), before);
}

#[tokio::test]
async fn free_functions_act_inside_the_namespace() {
    let before = own_ns_value("/proc/sys/net/ipv4/ip_forward");
    let t = TestNs::new("sn").await;
    let ns: &netkit_core::NetNs = &t.ns;
    sysctl::set(ns, "net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(sysctl::get(ns, "net.ipv4.ip_forward").unwrap(), "1");
    assert_eq!(sysctl_n(&t, "net.ipv4.ip_forward"), "1");
    sysctl::set_many(
        ns,
        &[("net.ipv4.ip_forward", "0"), ("net.ipv4.conf.all.rp_filter", "2")],
    )
    .unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv4.ip_forward"), "0");
    assert_eq!(sysctl_n(&t, "net.ipv4.conf.all.rp_filter"), "2");
    sysctl::set_iface(ns, Family::V4, "lo", "route_localnet", "1").unwrap();
    assert_eq!(sysctl::get_iface(ns, Family::V4, "lo", "route_localnet").unwrap(), "1");
    assert_eq!(own_ns_value("/proc/sys/net/ipv4/ip_forward"), before);
}

#[tokio::test]
async fn per_interface_settings() {
    let t = TestNs::with_veth("si").await;
    let h = &t.h;
    h.proxy_arp("v0", true).await.unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv4.conf.v0.proxy_arp"), "1");
    assert_eq!(sysctl_n(&t, "net.ipv4.conf.v1.proxy_arp"), "0");

    for mode in [2, 1, 0] {
        h.rp_filter("v0", mode).await.unwrap();
        assert_eq!(sysctl_n(&t, "net.ipv4.conf.v0.rp_filter"), mode.to_string());
    }
    let e = h.rp_filter("v0", 3).await.unwrap_err();
    assert!(e.is_invalid(), "{e}");

    h.route_localnet("v0", true).await.unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv4.conf.v0.route_localnet"), "1");

    h.accept_dad("v0", 0).await.unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv6.conf.v0.accept_dad"), "0");
    h.accept_dad("v0", 2).await.unwrap();
    assert_eq!(h.iface_sysctl_get(Family::V6, "v0", "accept_dad").await.unwrap(), "2");

    h.accept_ra("v0", 2).await.unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv6.conf.v0.accept_ra"), "2");
    assert!(h.accept_ra("v0", 3).await.unwrap_err().is_invalid());

    h.forwarding("v0", Family::V4, true).await.unwrap();
    h.forwarding("v0", Family::V6, true).await.unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv4.conf.v0.forwarding"), "1");
    assert_eq!(sysctl_n(&t, "net.ipv6.conf.v0.forwarding"), "1");
    assert_eq!(sysctl_n(&t, "net.ipv6.conf.v1.forwarding"), "0");

    h.proxy_delay("v0", 0).await.unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv4.neigh.v0.proxy_delay"), "0");
    h.proxy_delay("v0", 500).await.unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv4.neigh.v0.proxy_delay"), "50");

    h.iface_sysctl_set(Family::V4, "v0", "arp_ignore", "1").await.unwrap();
    assert_eq!(h.sysctl_get("net.ipv4.conf.v0.arp_ignore").await.unwrap(), "1");
}

#[tokio::test]
async fn interface_names_with_dots() {
    let t = TestNs::new("sd").await;
    t.h.link_add(&Veth::new("v0.5", "v1.5")).await.unwrap();
    t.h.proxy_arp("v0.5", true).await.unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv4.conf.v0/5.proxy_arp"), "1");
    assert_eq!(t.h.sysctl_get("net.ipv4.conf.v0/5.proxy_arp").await.unwrap(), "1");
    assert_eq!(
        t.h.iface_sysctl_get(Family::V4, "v0.5", "proxy_arp").await.unwrap(),
        "1"
    );
    // Without the escape the key names a different (missing) directory.
    let e = t.h.sysctl_get("net.ipv4.conf.v0.5.proxy_arp").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test]
async fn set_many_in_one_hop() {
    let t = TestNs::with_veth("sm").await;
    t.h.sysctl_set_many(&[
        ("net.ipv4.conf.v0.proxy_arp", "1"),
        ("net.ipv4.conf.v0.forwarding", "1"),
        ("net.ipv4.neigh.v0.proxy_delay", "0"),
    ])
    .await
    .unwrap();
    assert_eq!(sysctl_n(&t, "net.ipv4.conf.v0.proxy_arp"), "1");
    assert_eq!(sysctl_n(&t, "net.ipv4.conf.v0.forwarding"), "1");
    // One bad key: nothing is written.
    let e =
        t.h.sysctl_set_many(&[("net.ipv4.conf.v0.proxy_arp", "0"), ("net..bad", "1")])
            .await
            .unwrap_err();
    assert!(e.is_invalid(), "{e}");
    assert_eq!(sysctl_n(&t, "net.ipv4.conf.v0.proxy_arp"), "1");
}

#[tokio::test]
async fn invalid_keys_are_rejected() {
    let t = TestNs::new("sk").await;
    for key in [
        "",
        "kernel.hostname",
        "vm.swappiness",
        "net..ipv4.ip_forward",
        "net.ipv4.ip_forward.",
        "net.ipv4.conf./.forwarding",
        "net.ipv4.conf.//.forwarding",
        "net.ipv4",
    ] {
        let e = t.h.sysctl_set(key, "1").await.unwrap_err();
        assert!(e.is_invalid(), "{key:?}: {e}");
        assert!(e.to_string().contains("invalid sysctl key"), "{e}");
        let e = sysctl::get(&t.ns, key).unwrap_err();
        assert!(e.is_invalid(), "{key:?}: {e}");
    }
    let e = t.h.proxy_arp("../../ipv4", true).await.unwrap_err();
    assert!(e.is_invalid(), "{e}");
    let e =
        t.h.iface_sysctl_set(Family::V4, "lo", "../forwarding", "1")
            .await
            .unwrap_err();
    assert!(e.is_invalid(), "{e}");
}

#[tokio::test]
async fn missing_key_is_enoent_with_netns_name() {
    let t = TestNs::new("se").await;
    let name = t.ns.name().unwrap().to_string();
    let e = t.h.sysctl_get("net.ipv4.no_such_setting").await.unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOENT), "{e}");
    assert!(e.is_not_found());
    let msg = e.to_string();
    assert!(msg.contains(&name) && msg.contains("net.ipv4.no_such_setting"), "{msg}");

    let e = t.h.proxy_arp("nosuchdev", true).await.unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOENT), "{e}");
    assert!(e.to_string().contains(&name), "{e}");

    let e = sysctl::set(&t.ns, "net.ipv4.no_such_setting", "1").unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOENT), "{e}");
    assert!(e.to_string().contains(&name), "{e}");
}

#[tokio::test]
async fn rejected_value_keeps_errno() {
    let t = TestNs::new("sv").await;
    let e = t.h.sysctl_set("net.ipv4.ip_forward", "banana").await.unwrap_err();
    assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
    assert_eq!(sysctl_n(&t, "net.ipv4.ip_forward"), "0");
}
