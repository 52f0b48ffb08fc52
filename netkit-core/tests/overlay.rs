//! The VXLAN overlay recipe (`VxlanOverlay`) on the real kernel, one node per
//! throwaway namespace. The two-node data path is covered by the scenario
//! tests; these check the kernel state each call leaves behind.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netkit_core::link::Veth;
use netkit_core::neigh::Family;
use netkit_core::overlay::{OverlayError, VxlanOverlay, VxlanOverlayConfig, VxlanPeer};
use netkit_core::route::{IpFamily, TABLE_MAIN};
use netkit_test_support::lit::ip;
use netkit_test_support::TestNs;

const DEV: &str = "flannel.1";

/// A node: underlay `eth0` (192.168.0.1/24, peer end `eth0p`) and the
/// Flannel config for subnet 10.244.1.0/24 on it, MTU 1450.
async fn node(tag: &str) -> (TestNs, VxlanOverlayConfig) {
    let t = TestNs::new(tag).await;
    t.h.link_add(&Veth::new("eth0", "eth0p").up()).await.unwrap();
    t.h.link_set_up("eth0p").await.unwrap();
    t.h.addr_add("eth0", "192.168.0.1/24".parse().unwrap()).await.unwrap();
    let mut cfg = VxlanOverlayConfig::flannel(ip("192.168.0.1"), "10.244.1.0/24".parse().unwrap());
    cfg.parent = Some("eth0".into());
    cfg.mtu = Some(1450);
    (t, cfg)
}

fn peer() -> VxlanPeer {
    VxlanPeer {
        subnet: "10.244.2.0/24".parse().unwrap(),
        vtep_mac: "02:00:00:00:02:01".parse().unwrap(),
        public_ip: ip("192.168.0.2"),
    }
}

/// What the kernel holds for `p` on the overlay device: (ARP lines, FDB
/// lines, route lines), as iproute2 prints them.
fn state(t: &TestNs, p: &VxlanPeer) -> (Vec<String>, Vec<String>, Vec<String>) {
    let lines = |s: String, needle: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.contains(needle))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let mac = p.vtep_mac.to_string();
    (
        lines(
            t.sh(&format!("ip -4 neigh show dev {DEV}")),
            &format!("{} ", p.vtep_ip()),
        ),
        lines(t.sh(&format!("bridge fdb show dev {DEV}")), &mac),
        lines(t.sh("ip -4 route show"), &format!("{} ", p.subnet)),
    )
}

async fn assert_programmed(t: &TestNs, p: &VxlanPeer) {
    let (arp, fdb, route) = state(t, p);
    assert_eq!(arp.len(), 1, "{arp:?}");
    assert!(
        arp[0].starts_with(&format!("{} lladdr {}", p.vtep_ip(), p.vtep_mac)) && arp[0].ends_with("PERMANENT"),
        "{arp:?}"
    );
    assert_eq!(fdb.len(), 1, "{fdb:?}");
    assert!(
        fdb[0].contains(&format!("{} dst {} self permanent", p.vtep_mac, p.public_ip)),
        "{fdb:?}"
    );
    assert_eq!(route.len(), 1, "{route:?}");
    assert!(
        route[0].starts_with(&format!("{} via {} dev {DEV} ", p.subnet, p.vtep_ip())) && route[0].contains(" onlink"),
        "{route:?}"
    );
    // The same through the library's own listings.
    let n = t.h.neigh_list(Some(DEV), Some(Family::V4)).await.unwrap();
    assert_eq!(n.iter().filter(|n| n.ip == IpAddr::V4(p.vtep_ip())).count(), 1);
    let f = t.h.fdb_list(Some(DEV)).await.unwrap();
    assert_eq!(f.iter().filter(|f| f.mac == p.vtep_mac).count(), 1);
    let r = t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN)).await.unwrap();
    let r: Vec<_> = r.iter().filter(|r| r.dst == Some(IpNetwork::V4(p.subnet))).collect();
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].onlink, "{r:?}");
}

fn assert_absent(t: &TestNs, p: &VxlanPeer) {
    let (arp, fdb, route) = state(t, p);
    assert!(
        arp.is_empty() && fdb.is_empty() && route.is_empty(),
        "{arp:?} {fdb:?} {route:?}"
    );
}

#[tokio::test]
async fn setup_builds_the_flannel_device() {
    let (t, cfg) = node("ovs").await;
    let o = VxlanOverlay::setup(&t.h, cfg.clone()).await.unwrap();
    assert_eq!(o.dev(), DEV);

    let d = t.sh(&format!("ip -d link show {DEV}"));
    assert!(d.contains("mtu 1450"), "{d}");
    assert!(d.contains(",UP"), "{d}");
    assert!(d.contains(&format!("link/ether {}", o.vtep_mac())), "{d}");
    for want in [
        "vxlan id 1 ",
        "local 192.168.0.1 ",
        "dev eth0 ",
        "dstport 8472 ",
        "nolearning",
    ] {
        assert!(d.contains(want), "no `{want}` in {d}");
    }
    let a = t.sh(&format!("ip -4 addr show dev {DEV}"));
    assert!(a.contains("inet 10.244.1.0/32 "), "{a}");
    assert_eq!(a.matches("inet ").count(), 1, "{a}");

    // open() finds the same device and MAC.
    let o2 = VxlanOverlay::open(&t.h, DEV).await.unwrap();
    assert_eq!(o2.vtep_mac(), o.vtep_mac());
    let e = VxlanOverlay::open(&t.h, "nope.1").await.unwrap_err();
    assert!(matches!(e, OverlayError::Link { .. }), "{e}");
    assert!(e.to_string().contains("nope.1"), "{e}");
}

#[tokio::test]
async fn setup_again_keeps_an_identical_device_and_its_peers() {
    let (t, cfg) = node("ovk").await;
    let o = VxlanOverlay::setup(&t.h, cfg.clone()).await.unwrap();
    let idx = t.h.link_index(DEV).await.unwrap();
    o.add_peer(&peer()).await.unwrap();
    // Same config (no fixed MAC): nothing to change, so nothing is torn down.
    let o2 = VxlanOverlay::setup(&t.h, cfg).await.unwrap();
    assert_eq!(t.h.link_index(DEV).await.unwrap(), idx, "device was recreated");
    assert_eq!(o2.vtep_mac(), o.vtep_mac());
    assert_programmed(&t, &peer()).await;
}

#[tokio::test]
async fn setup_with_another_vni_recreates_the_device() {
    let (t, cfg) = node("ovr").await;
    VxlanOverlay::setup(&t.h, cfg.clone()).await.unwrap();
    let idx = t.h.link_index(DEV).await.unwrap();
    let mut cfg2 = cfg.clone();
    cfg2.vni = 42;
    cfg2.mac = Some("02:00:00:00:01:01".parse().unwrap());
    let o = VxlanOverlay::setup(&t.h, cfg2).await.unwrap();
    assert_ne!(t.h.link_index(DEV).await.unwrap(), idx, "device was not recreated");
    assert_eq!(o.vtep_mac().to_string(), "02:00:00:00:01:01");
    let d = t.sh(&format!("ip -d link show {DEV}"));
    assert!(
        d.contains("vxlan id 42 ") && d.contains("dstport 8472 ") && d.contains("nolearning"),
        "{d}"
    );
    assert!(d.contains("link/ether 02:00:00:00:01:01"), "{d}");
    let a = t.sh(&format!("ip -4 addr show dev {DEV}"));
    assert!(a.contains("inet 10.244.1.0/32 "), "{a}");
    assert_eq!(t.sh("ip -d link show type vxlan").matches("vxlan id").count(), 1);
}

#[tokio::test]
async fn setup_with_another_subnet_moves_the_vtep_address() {
    let (t, cfg) = node("ova").await;
    VxlanOverlay::setup(&t.h, cfg.clone()).await.unwrap();
    let idx = t.h.link_index(DEV).await.unwrap();
    let mut cfg2 = cfg;
    cfg2.subnet = "10.244.9.0/24".parse().unwrap();
    VxlanOverlay::setup(&t.h, cfg2).await.unwrap();
    assert_eq!(t.h.link_index(DEV).await.unwrap(), idx);
    let a = t.sh(&format!("ip -4 addr show dev {DEV}"));
    assert!(a.contains("inet 10.244.9.0/32 "), "{a}");
    assert!(!a.contains("10.244.1.0"), "old VTEP address left behind: {a}");
}

#[tokio::test]
async fn add_peer_programs_arp_fdb_and_route_idempotently() {
    let (t, cfg) = node("ovp").await;
    let o = VxlanOverlay::setup(&t.h, cfg).await.unwrap();
    let p = peer();
    assert_absent(&t, &p);
    o.add_peer(&p).await.unwrap();
    assert_programmed(&t, &p).await;
    o.add_peer(&p).await.unwrap();
    assert_programmed(&t, &p).await;

    // The peer's node moved to another underlay address: entries follow.
    let moved = VxlanPeer {
        public_ip: ip("192.168.0.3"),
        ..p
    };
    o.add_peer(&moved).await.unwrap();
    assert_programmed(&t, &moved).await;

    // A second peer does not disturb the first.
    let p3 = VxlanPeer {
        subnet: "10.244.3.0/24".parse().unwrap(),
        vtep_mac: "02:00:00:00:03:01".parse().unwrap(),
        public_ip: ip("192.168.0.4"),
    };
    o.add_peer(&p3).await.unwrap();
    assert_programmed(&t, &p3).await;
    assert_programmed(&t, &moved).await;

    o.remove_peer(&moved).await.unwrap();
    assert_absent(&t, &moved);
    assert_programmed(&t, &p3).await;
    // Removing again is fine.
    o.remove_peer(&moved).await.unwrap();
    assert_absent(&t, &moved);
    assert_programmed(&t, &p3).await;
}

/// A peer claiming this node's own subnet: its VTEP IP (10.244.1.0) is a
/// local address, and the kernel rejects an onlink route via a local
/// address (EINVAL). The ARP and FDB entries made first must be undone.
#[tokio::test]
async fn route_failure_rolls_back_arp_and_fdb() {
    let (t, cfg) = node("ovf").await;
    let o = VxlanOverlay::setup(&t.h, cfg.clone()).await.unwrap();
    let bad = VxlanPeer {
        subnet: cfg.subnet,
        vtep_mac: "02:00:00:00:0f:01".parse().unwrap(),
        public_ip: ip("192.168.0.9"),
    };
    let e = o.add_peer(&bad).await.unwrap_err();
    match &e {
        OverlayError::Peer { step, subnet, .. } => {
            assert_eq!((*step, *subnet), ("route", cfg.subnet), "{e}");
        }
        other => panic!("wrong error: {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("route") && msg.contains("10.244.1.0/24") && msg.contains(DEV),
        "{msg}"
    );
    assert_absent(&t, &bad);
    // The device's own address is untouched.
    assert!(t
        .sh(&format!("ip -4 addr show dev {DEV}"))
        .contains("inet 10.244.1.0/32 "));
}

/// A failed re-add of a peer that was programmed before must not take the
/// earlier entries with it: the rollback only removes what the call made and
/// restores the ARP entry it overwrote.
#[tokio::test]
async fn failed_readd_keeps_the_earlier_entries() {
    let (t, cfg) = node("ovr").await;
    let o = VxlanOverlay::setup(&t.h, cfg).await.unwrap();
    let p = peer();
    o.add_peer(&p).await.unwrap();
    assert_programmed(&t, &p).await;
    // Make the route step fail for the same peer: its VTEP address becomes
    // local, and the kernel refuses an onlink route through a local address.
    t.h.addr_add("eth0p", "10.244.2.0/32".parse().unwrap()).await.unwrap();
    let moved = VxlanPeer {
        vtep_mac: "02:00:00:00:02:99".parse().unwrap(),
        ..p
    };
    let e = o.add_peer(&moved).await.unwrap_err();
    assert!(matches!(&e, OverlayError::Peer { step: "route", .. }), "{e}");
    t.h.addr_del("eth0p", "10.244.2.0/32".parse().unwrap()).await.unwrap();
    // The first call's ARP entry is back with its MAC, its FDB entry stayed,
    // and the failed call's FDB entry is gone.
    assert_programmed(&t, &p).await;
    let (_, fdb, _) = state(&t, &moved);
    assert!(fdb.is_empty(), "{fdb:?}");
}

/// An IPv6 underlay address on an IPv4 VXLAN device: the kernel refuses the
/// FDB entry (EAFNOSUPPORT); the ARP entry made first must be undone.
#[tokio::test]
async fn fdb_failure_rolls_back_arp() {
    let (t, cfg) = node("ovb").await;
    let o = VxlanOverlay::setup(&t.h, cfg).await.unwrap();
    let bad = VxlanPeer {
        public_ip: ip("fd00::2"),
        ..peer()
    };
    let e = o.add_peer(&bad).await.unwrap_err();
    match &e {
        OverlayError::Peer { step, subnet, .. } => {
            assert_eq!((*step, *subnet), ("FDB entry", bad.subnet), "{e}");
        }
        other => panic!("wrong error: {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("FDB entry") && msg.contains("10.244.2.0/24") && msg.contains("fd00::2"),
        "{msg}"
    );
    assert_absent(&t, &bad);
}

/// Deleting what is already gone counts as success in every step (the
/// underlying deletes are idempotent, a missing device included), so
/// removing a peer after the device vanished is `Ok`.
#[tokio::test]
async fn remove_peer_after_the_device_is_gone_is_ok() {
    let (t, cfg) = node("ovg").await;
    let o = VxlanOverlay::setup(&t.h, cfg).await.unwrap();
    o.add_peer(&peer()).await.unwrap();
    t.h.link_del(DEV).await.unwrap();
    o.remove_peer(&peer()).await.unwrap();
    // And a peer was never added at all.
    let o2 = VxlanOverlay::open(&t.h, "eth0").await.unwrap();
    o2.remove_peer(&peer()).await.unwrap();
}

/// Adding a peer on a device that no longer exists fails at the first step
/// and leaves nothing behind.
#[tokio::test]
async fn add_peer_without_device_fails_at_arp() {
    let (t, cfg) = node("ovn").await;
    let o = VxlanOverlay::setup(&t.h, cfg).await.unwrap();
    t.h.link_del(DEV).await.unwrap();
    let e = o.add_peer(&peer()).await.unwrap_err();
    assert!(matches!(&e, OverlayError::Peer { step: "ARP entry", .. }), "{e}");
    assert!(e.to_string().contains("10.244.2.0/24"), "{e}");
    let r = t.sh("ip -4 route show");
    assert!(!r.contains("10.244.2.0"), "{r}");
}
