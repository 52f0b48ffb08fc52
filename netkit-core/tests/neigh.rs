//! Neighbours and FDB entries on the real kernel, inside throwaway namespaces.

use std::time::Duration;

use netkit_core::link::{Bridge, Veth, Vxlan};
use netkit_core::neigh::{Family, FdbEntry, NeighState, Neighbour};
use netkit_core::MacAddr;
use netkit_test_support::lit::{ip, mac};
use netkit_test_support::{report_skip, TestNs};

#[tokio::test]
async fn permanent_arp_entry_v4() {
    let t = TestNs::with_veth("n4").await;
    let a = ip("10.1.0.2");
    t.h.neigh_add(&Neighbour::new("v0", a, mac("02:00:00:00:00:02")))
        .await
        .unwrap();
    let shown = t.sh("ip neigh show dev v0");
    assert!(shown.contains("10.1.0.2 lladdr 02:00:00:00:00:02 PERMANENT"), "{shown}");
    let idx = t.h.link_index("v0").await.unwrap();
    let list = t.h.neigh_list(Some("v0"), Some(Family::V4)).await.unwrap();
    let n = list.iter().find(|n| n.ip == a).expect("entry listed");
    assert_eq!(n.index, idx);
    assert_eq!(n.state, NeighState::Permanent);
    assert_eq!(n.mac, Some(mac("02:00:00:00:00:02")));
    assert!(!n.proxy);
    // Family filter excludes it.
    let v6 = t.h.neigh_list(Some("v0"), Some(Family::V6)).await.unwrap();
    assert!(v6.iter().all(|n| n.ip != a));
}

#[tokio::test]
async fn permanent_ndp_entry_v6_by_index() {
    let t = TestNs::with_veth("n6").await;
    let a = ip("fd00:1::2");
    let idx = t.h.link_index("v0").await.unwrap();
    t.h.neigh_add(&Neighbour::with_index(idx, a, mac("02:00:00:00:00:06")).router())
        .await
        .unwrap();
    let shown = t.sh("ip -6 neigh show dev v0");
    assert!(
        shown.contains("fd00:1::2 lladdr 02:00:00:00:00:06 router PERMANENT"),
        "{shown}"
    );
    let list = t.h.neigh_list(None, Some(Family::V6)).await.unwrap();
    let n = list.iter().find(|n| n.ip == a).expect("entry listed");
    assert_eq!((n.index, n.state, n.router), (idx, NeighState::Permanent, true));
    assert!(list.iter().all(|n| n.ip.is_ipv6()));
}

#[tokio::test]
async fn replace_changes_mac_and_add_twice_is_exists() {
    let t = TestNs::with_veth("nr").await;
    let a = ip("10.1.0.3");
    let n1 = Neighbour::new("v0", a, mac("02:00:00:00:00:03"));
    t.h.neigh_add(&n1).await.unwrap();
    let e = t.h.neigh_add(&n1).await.unwrap_err();
    assert!(e.is_exists(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("10.1.0.3") && msg.contains("v0") && msg.contains(t.ns.name().unwrap()),
        "{msg}"
    );

    t.h.neigh_replace(&Neighbour::new("v0", a, mac("02:00:00:00:00:33")))
        .await
        .unwrap();
    assert!(t.sh("ip neigh show 10.1.0.3 dev v0").contains("02:00:00:00:00:33"));
    let list = t.h.neigh_list(Some("v0"), None).await.unwrap();
    assert_eq!(
        list.iter().find(|n| n.ip == a).unwrap().mac,
        Some(mac("02:00:00:00:00:33"))
    );
    // Replace also creates.
    let b = ip("fd00:1::3");
    t.h.neigh_replace(&Neighbour::new("v0", b, mac("02:00:00:00:00:34")).state(NeighState::Noarp))
        .await
        .unwrap();
    let list = t.h.neigh_list(Some("v0"), None).await.unwrap();
    assert_eq!(list.iter().find(|n| n.ip == b).unwrap().state, NeighState::Noarp);
}

#[tokio::test]
async fn delete_is_idempotent() {
    let t = TestNs::with_veth("nd").await;
    let a = ip("10.1.0.4");
    t.h.neigh_add(&Neighbour::new("v0", a, mac("02:00:00:00:00:04")))
        .await
        .unwrap();
    t.h.neigh_del("v0", a).await.unwrap();
    assert!(!t.sh("ip neigh show dev v0").contains("10.1.0.4"));
    t.h.neigh_del("v0", a).await.unwrap();
    t.h.neigh_del("v0", ip("fd00:1::4")).await.unwrap();
    t.h.neigh_del("nosuchdev", a).await.unwrap();
    assert!(t
        .h
        .neigh_list(Some("v0"), None)
        .await
        .unwrap()
        .iter()
        .all(|n| n.ip != a));
}

#[tokio::test]
async fn missing_device_is_not_found() {
    let t = TestNs::new("nm").await;
    let e =
        t.h.neigh_add(&Neighbour::new("nosuchdev", ip("10.1.0.5"), mac("02:00:00:00:00:05")))
            .await
            .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("nosuchdev"), "{e}");
}

#[tokio::test]
async fn proxy_entry() {
    let t = TestNs::with_veth("np").await;
    let a = ip("10.1.0.9");
    t.h.neigh_add(&Neighbour::new_proxy("v0", a)).await.unwrap();
    let shown = t.sh("ip neigh show proxy");
    assert!(shown.contains("10.1.0.9 dev v0 proxy"), "{shown}");
    let list = t.h.neigh_list(Some("v0"), None).await.unwrap();
    let n = list.iter().find(|n| n.ip == a).expect("proxy listed");
    assert!(n.proxy);
    assert_eq!(n.mac, None);
    // The kernel accepts a second add of a proxy entry (no EEXIST for proxies).
    t.h.neigh_add(&Neighbour::new_proxy("v0", a)).await.unwrap();
    assert_eq!(t.sh("ip neigh show proxy").matches("10.1.0.9 ").count(), 1);
    t.h.neigh_del_proxy("v0", a).await.unwrap();
    assert!(!t.sh("ip neigh show proxy").contains("10.1.0.9"));
    t.h.neigh_del_proxy("v0", a).await.unwrap();
}

#[tokio::test]
async fn fdb_master_static_on_bridge_port() {
    let t = TestNs::with_veth("fb").await;
    t.h.link_add(&Bridge::new("br0").up()).await.unwrap();
    t.h.bridge_attach("br0", "v0").await.unwrap();
    let m = mac("02:00:00:00:0b:01");
    let e = FdbEntry::new("v0", m).master().static_();
    t.h.fdb_add(&e).await.unwrap();
    let shown = t.sh("bridge fdb show");
    assert!(shown.contains("02:00:00:00:0b:01 dev v0 master br0 static"), "{shown}");

    let err = t.h.fdb_add(&e).await.unwrap_err();
    assert!(err.is_exists(), "{err}");
    let br = t.h.link_index("br0").await.unwrap();
    let v0 = t.h.link_index("v0").await.unwrap();
    let list = t.h.fdb_list(Some("v0")).await.unwrap();
    let f = list.iter().find(|f| f.mac == m).expect("entry listed");
    assert_eq!((f.index, f.master, f.permanent), (v0, Some(br), false));
    assert!(list.iter().all(|f| f.index == v0));

    t.h.fdb_del(&FdbEntry::new("v0", m).master()).await.unwrap();
    assert!(!t.sh("bridge fdb show").contains("02:00:00:00:0b:01"));
    t.h.fdb_del(&FdbEntry::new("v0", m).master()).await.unwrap();
}

#[tokio::test]
async fn fdb_master_with_vlan() {
    let t = TestNs::with_veth("fv").await;
    match t.h.link_add(&Bridge::new("br0").vlan_filtering(true).up()).await {
        Ok(_) => {}
        Err(e) if e.errno() == Some(libc::EOPNOTSUPP) && !e.is_unsupported() => {
            // The bridge driver is there, its VLAN filtering option is not
            // (CONFIG_BRIDGE_VLAN_FILTERING=n): report the skip by name.
            report_skip(
                "neigh::fdb_master_with_vlan",
                &format!("bridge vlan_filtering not supported by this kernel ({e})"),
            );
            return;
        }
        Err(e) => panic!("{e}"),
    }
    t.h.bridge_attach("br0", "v0").await.unwrap();
    let m = mac("02:00:00:00:0b:02");
    t.h.fdb_add(&FdbEntry::new("v0", m).master().vlan(1)).await.unwrap();
    let shown = t.sh("bridge fdb show dev v0");
    assert!(shown.contains("02:00:00:00:0b:02 vlan 1 master br0 static"), "{shown}");
    let list = t.h.fdb_list(Some("v0")).await.unwrap();
    assert_eq!(list.iter().find(|f| f.mac == m).unwrap().vlan, Some(1));
    t.h.fdb_del(&FdbEntry::new("v0", m).master().vlan(1)).await.unwrap();
    assert!(!t.sh("bridge fdb show dev v0").contains("02:00:00:00:0b:02"));
}

#[tokio::test]
async fn fdb_self_permanent_on_vxlan() {
    let t = TestNs::new("fx").await;
    t.h.link_add(&Vxlan::new("vx0", 42).learning(false).up()).await.unwrap();
    let m = mac("02:00:00:00:0c:01");
    let remote = ip("192.0.2.10");
    t.h.fdb_add(&FdbEntry::new("vx0", m).dst(remote).self_().permanent())
        .await
        .unwrap();
    let shown = t.sh("bridge fdb show dev vx0");
    assert!(
        shown.contains("02:00:00:00:0c:01 dst 192.0.2.10 self permanent"),
        "{shown}"
    );

    let list = t.h.fdb_list(Some("vx0")).await.unwrap();
    let f = list.iter().find(|f| f.mac == m).expect("entry listed");
    assert_eq!(
        (f.dst, f.is_self, f.permanent, f.master),
        (Some(remote), true, true, None)
    );

    // Replace moves the MAC to another VTEP.
    t.h.fdb_replace(&FdbEntry::new("vx0", m).dst(ip("192.0.2.11")).self_().permanent())
        .await
        .unwrap();
    let shown = t.sh("bridge fdb show dev vx0");
    assert!(
        shown.contains("02:00:00:00:0c:01 dst 192.0.2.11 self permanent"),
        "{shown}"
    );
    assert!(!shown.contains("192.0.2.10"), "{shown}");

    // VNI and port of the remote.
    let m2 = mac("02:00:00:00:0c:02");
    t.h.fdb_add(
        &FdbEntry::new("vx0", m2)
            .dst(ip("192.0.2.30"))
            .vni(77)
            .port(8472)
            .self_()
            .permanent(),
    )
    .await
    .unwrap();
    let list = t.h.fdb_list(Some("vx0")).await.unwrap();
    let f = list.iter().find(|f| f.mac == m2).unwrap();
    assert_eq!((f.dst, f.vni), (Some(ip("192.0.2.30")), Some(77)));
    assert!(t
        .sh("bridge fdb show dev vx0")
        .contains("dst 192.0.2.30 port 8472 vni 77 self permanent"));

    t.h.fdb_del(&FdbEntry::new("vx0", m).self_()).await.unwrap();
    t.h.fdb_del(&FdbEntry::new("vx0", m).self_()).await.unwrap();
    assert!(!t.sh("bridge fdb show dev vx0").contains("02:00:00:00:0c:01"));
}

#[tokio::test]
async fn fdb_append_two_flood_remotes() {
    let t = TestNs::new("fa").await;
    t.h.link_add(&Vxlan::new("vx0", 42).learning(false)).await.unwrap();
    let zero = MacAddr::default();
    for r in ["192.0.2.21", "192.0.2.22"] {
        t.h.fdb_append(&FdbEntry::new("vx0", zero).dst(ip(r)).self_().permanent())
            .await
            .unwrap();
    }
    let shown = t.sh("bridge fdb show dev vx0");
    for r in ["192.0.2.21", "192.0.2.22"] {
        assert!(
            shown.contains(&format!("00:00:00:00:00:00 dst {r} self permanent")),
            "{shown}"
        );
    }
    let dsts: Vec<_> =
        t.h.fdb_list(Some("vx0"))
            .await
            .unwrap()
            .into_iter()
            .filter(|f| f.mac == zero)
            .map(|f| f.dst)
            .collect();
    assert_eq!(dsts.len(), 2, "{dsts:?}");

    // Deleting with dst removes only that remote; twice is fine.
    let one = FdbEntry::new("vx0", zero).dst(ip("192.0.2.21")).self_();
    t.h.fdb_del(&one).await.unwrap();
    t.h.fdb_del(&one).await.unwrap();
    let shown = t.sh("bridge fdb show dev vx0");
    assert!(!shown.contains("192.0.2.21") && shown.contains("192.0.2.22"), "{shown}");
    t.h.fdb_del(&FdbEntry::new("vx0", zero).self_()).await.unwrap();
    assert!(!t.sh("bridge fdb show dev vx0").contains("00:00:00:00:00:00"));
    t.h.fdb_del(&FdbEntry::new("gone0", zero).self_()).await.unwrap();
}

/// Send one UDP datagram from `a` to `to` and report whether `b`'s socket got it.
async fn udp_delivered(a: &TestNs, b: &TestNs, to: &str, port: u16) -> bool {
    let rx =
        b.ns.run(move || {
            let s = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
            s
        })
        .unwrap();
    let to: std::net::SocketAddr = format!("{to}:{port}").parse().unwrap();
    a.ns.run(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"hello", to).unwrap();
    })
    .unwrap();
    tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 16];
        matches!(rx.recv_from(&mut buf), Ok((5, _)))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn permanent_arp_entry_carries_packets_when_arp_is_off() {
    let a = TestNs::new("pa").await;
    let b = TestNs::new("pb").await;
    a.h.link_add(&Veth::new("v0", "v1").peer_netns(&b.ns).up())
        .await
        .unwrap();
    b.h.link_set_up("v1").await.unwrap();
    a.sh("ip addr add 10.77.0.1/24 dev v0");
    b.sh("ip addr add 10.77.0.2/24 dev v1 && ip link set dev v1 arp off");
    let v1_mac = b.h.link_get("v1").await.unwrap().mac.unwrap();
    let to = ip("10.77.0.2");

    // b ignores ARP: without a static entry nothing gets through.
    assert!(
        !udp_delivered(&a, &b, "10.77.0.2", 7001).await,
        "delivered without an ARP entry"
    );
    a.h.neigh_del("v0", to).await.unwrap();

    a.h.neigh_add(&Neighbour::new("v0", to, v1_mac)).await.unwrap();
    assert!(udp_delivered(&a, &b, "10.77.0.2", 7002).await, "static entry not used");

    a.h.neigh_del("v0", to).await.unwrap();
    assert!(
        !udp_delivered(&a, &b, "10.77.0.2", 7003).await,
        "delivered after the entry was removed"
    );
}

#[tokio::test]
async fn get_finds_one_entry_without_a_dump() {
    let t = TestNs::with_veth("ng").await;
    let (a, m) = (ip("10.1.0.7"), mac("02:00:00:00:00:07"));
    assert!(t.h.neigh_get("v0", a).await.unwrap().is_none());
    t.h.neigh_add(&Neighbour::new("v0", a, m)).await.unwrap();
    let n = t.h.neigh_get("v0", a).await.unwrap().expect("entry just added");
    assert_eq!((n.ip, n.mac, n.state), (a, Some(m), NeighState::Permanent));
    t.h.neigh_del("v0", a).await.unwrap();
    assert!(t.h.neigh_get("v0", a).await.unwrap().is_none());
    let e = t.h.neigh_get("nosuchdev", a).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test]
async fn remove_says_whether_an_entry_went() {
    let t = TestNs::with_veth("nrm").await;
    let a = ip("10.1.0.7");
    t.h.neigh_add(&Neighbour::new("v0", a, mac("02:00:00:00:00:07")))
        .await
        .unwrap();
    assert!(t.h.neigh_remove("v0", a, false).await.unwrap());
    assert!(!t.h.neigh_remove("v0", a, false).await.unwrap());
    assert!(!t.h.neigh_remove("nosuchdev", a, false).await.unwrap());
    t.h.neigh_add(&Neighbour::new_proxy("v0", a)).await.unwrap();
    assert!(t.h.neigh_remove("v0", a, true).await.unwrap());
    assert!(!t.h.neigh_remove("v0", a, true).await.unwrap());

    // FDB: a port's remote, then nothing; the listing has the state and port the kernel has.
    t.h.link_add(&Vxlan::new("vx0", 42).learning(false)).await.unwrap();
    let m = mac("02:00:00:00:0d:01");
    t.h.fdb_add(
        &FdbEntry::new("vx0", m)
            .dst(ip("192.0.2.40"))
            .port(4790)
            .self_()
            .static_(),
    )
    .await
    .unwrap();
    let list = t.h.fdb_list(Some("vx0")).await.unwrap();
    let f = list.iter().find(|f| f.mac == m).unwrap();
    assert_eq!(f.port, Some(4790));
    assert_eq!(f.state, NeighState::Other(0x40 | 0x02), "NOARP|REACHABLE: static");
    assert!(!f.permanent && !f.extern_learn && !f.sticky);
    // A remote the MAC does not have: the kernel says success, fdb_remove says false.
    let other = FdbEntry::new("vx0", m).dst(ip("192.0.2.41")).self_();
    assert!(!t.h.fdb_remove(&other).await.unwrap());
    assert!(t.sh("bridge fdb show dev vx0").contains("192.0.2.40"));
    let e = FdbEntry::new("vx0", m).self_();
    assert!(t.h.fdb_remove(&e).await.unwrap());
    assert!(!t.h.fdb_remove(&e).await.unwrap());
    assert!(!t.h.fdb_remove(&FdbEntry::new("gone0", m)).await.unwrap());
}
