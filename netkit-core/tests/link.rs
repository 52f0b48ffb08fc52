//! Links on the real kernel: every link is created through the handle of a
//! namespace made by the test (never in the root namespace), and checked both
//! through netkit and through iproute2's view (`ip -d link show`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use netkit_core::link::{
    AddrGenMode, Bridge, BridgePort, Dummy, EnsureAction, EnsurePolicy, Geneve, IpIp, Ipvlan, IpvlanMode, Macvlan,
    MacvlanMode, TunTap, TunTapMode, Veth, Vrf, Vxlan, Wireguard,
};
use netkit_core::{Link, LinkError, LinkKind, LinkSpec};
use netkit_test_support::lit::mac;
use netkit_test_support::{report_skip, wait_for_async, wait_until_async, TestNs};
use netlink_packet_route::link::{BridgeStpState, InfoBridge, InfoBridgePort, InfoVxlan};

/// `ip -d link show NAME` inside the test namespace.
fn ip_d(t: &TestNs, name: &str) -> String {
    t.sh(&format!("ip -d link show {name}"))
}

fn assert_contains(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "expected {n:?} in:\n{text}");
    }
}

fn vni_of(l: &Link) -> Option<u32> {
    l.vxlan_info().iter().find_map(|i| match i {
        InfoVxlan::Id(v) => Some(*v),
        _ => None,
    })
}

/// Create `spec` in `t`. When the kernel lacks the kind, check the error is
/// exactly `Unsupported` naming the kind, link and namespace, print a skip
/// line and return `None`. Any other error fails the test.
async fn add_or_skip<S: LinkSpec>(t: &TestNs, test: &str, spec: &S) -> Option<Link> {
    match t.h.link_add(spec).await {
        Ok(l) => Some(l),
        Err(e) if e.is_unsupported() => {
            match &e {
                LinkError::Unsupported { kind, link, netns } => {
                    assert_eq!(kind, spec.kind());
                    assert_eq!(link, spec.name());
                    assert!(netns.contains(t.ns.name().unwrap()), "{e}");
                }
                other => panic!("is_unsupported() on {other:?}"),
            }
            assert_eq!(e.errno(), Some(libc::EOPNOTSUPP));
            let text = e.to_string();
            assert!(text.contains(spec.kind()) && text.contains(spec.name()), "{text}");
            // Nothing was left behind.
            assert!(t.h.link_get(spec.name()).await.unwrap_err().is_not_found());
            report_skip(
                &format!("link::{test}"),
                &format!("{} not supported by this kernel", spec.kind()),
            );
            None
        }
        Err(e) => panic!("creating {} {}: {e}", spec.kind(), spec.name()),
    }
}

/// Delete `name` and check it is gone, and that deleting again is fine.
async fn del_and_check(t: &TestNs, name: &str) {
    t.h.link_del(name).await.unwrap();
    assert!(t.h.link_get(name).await.unwrap_err().is_not_found());
    t.h.link_del(name).await.unwrap();
}

// ---------------------------------------------------------------- veth

#[tokio::test]
async fn veth_peer_born_in_other_netns() {
    let a = TestNs::new("va").await;
    let b = TestNs::new("vb").await;
    let (m1, m2) = (mac("02:00:00:00:aa:01"), mac("02:00:00:00:bb:02"));
    let spec = Veth::new("vhost0", "eth0")
        .peer_netns(&b.ns)
        .mtu(1400)
        .mac(m1)
        .peer_mac(m2)
        .up();
    assert_eq!(spec.peer_name(), "eth0");
    let host = a.h.link_add(&spec).await.unwrap();
    assert_eq!(host.name, "vhost0");
    assert_eq!(host.kind, LinkKind::Veth);
    assert!(host.up, "host end should be up at creation");
    assert_eq!(host.mtu, Some(1400));
    assert_eq!(host.mac, Some(m1));
    assert!(
        host.link_netnsid.is_some(),
        "host end must say its peer is in another netns"
    );

    let peer = b.h.link_get("eth0").await.unwrap();
    assert_eq!(peer.kind, LinkKind::Veth);
    assert_eq!(peer.mtu, Some(1400));
    assert_eq!(peer.mac, Some(m2));
    assert!(!peer.up);
    assert!(peer.link_netnsid.is_some());
    // Each end's IFLA_LINK is the other's index (in the other namespace).
    assert_eq!(host.parent, Some(peer.index));
    assert_eq!(peer.parent, Some(host.index));

    // The peer exists only in b, under its final name.
    assert!(a.h.link_get("eth0").await.unwrap_err().is_not_found());
    assert!(!a
        .h
        .link_list()
        .await
        .unwrap()
        .iter()
        .any(|l| l.index != host.index && l.kind == LinkKind::Veth));
    assert!(b.h.link_get("vhost0").await.unwrap_err().is_not_found());
    let shown = b.sh("ip -o link show eth0");
    assert_contains(&shown, &["eth0@", "mtu 1400", "02:00:00:00:bb:02"]);
    let shown = a.sh("ip -o link show vhost0");
    assert_contains(
        &shown,
        &["vhost0@", "mtu 1400", "02:00:00:00:aa:01", "UP", "link-netns"],
    );

    // The peer can be brought up in its own namespace; then both are oper-up.
    b.h.link_set_up("eth0").await.unwrap();
    wait_until_async(Duration::from_secs(5), "carrier on vhost0", async || {
        a.h.link_get("vhost0").await.unwrap().oper_up
    })
    .await;

    // Deleting one end removes the peer in the other namespace too.
    a.h.link_del("vhost0").await.unwrap();
    assert!(b.h.link_get("eth0").await.unwrap_err().is_not_found());
    a.h.link_del("vhost0").await.unwrap();
    b.h.link_del("eth0").await.unwrap();
}

#[tokio::test]
async fn veth_in_one_netns_and_defaults() {
    let t = TestNs::new("v1").await;
    let l = t.h.link_add(&Veth::new("va", "vb")).await.unwrap();
    assert!(!l.up);
    assert_eq!(l.link_netnsid, None);
    assert_eq!(l.mtu, Some(1500));
    let p = t.h.link_get("vb").await.unwrap();
    assert_eq!(l.parent, Some(p.index));
    assert_eq!(p.parent, Some(l.index));
    assert!(l.mac.is_some() && p.mac.is_some() && l.mac != p.mac);
    // Deleting the peer end deletes the pair.
    t.h.link_del("vb").await.unwrap();
    assert!(t.h.link_get("va").await.unwrap_err().is_not_found());
}

// ---------------------------------------------------------------- bridge

#[tokio::test]
async fn bridge_vlan_filtering_and_stp_off() {
    let t = TestNs::new("br").await;
    let spec = Bridge::new("br0").vlan_filtering(true).mtu(1400).up();
    let br = match t.h.link_add(&spec).await {
        Ok(br) => {
            let d = ip_d(&t, "br0");
            assert_contains(&d, &["vlan_filtering 1", "stp_state 0", "forward_delay 0"]);
            assert!(br.bridge_info().contains(&InfoBridge::VlanFiltering(true)));
            br
        }
        // Kernels built without CONFIG_BRIDGE_VLAN_FILTERING refuse the
        // attribute; that is not "bridge unsupported".
        Err(e) => {
            assert!(
                !e.is_unsupported(),
                "bridges exist here; only vlan_filtering is missing: {e}"
            );
            assert_eq!(e.errno(), Some(libc::EOPNOTSUPP), "{e}");
            assert!(t.h.link_get("br0").await.unwrap_err().is_not_found());
            report_skip(
                "link::bridge_vlan_filtering_and_stp_off",
                "bridge vlan_filtering not supported by this kernel; checking stp only",
            );
            t.h.link_add(&Bridge::new("br0").mtu(1400).up()).await.unwrap()
        }
    };
    assert_eq!(br.kind, LinkKind::Bridge);
    assert!(br.up);
    assert_eq!(br.mtu, Some(1400));
    let d = ip_d(&t, "br0");
    assert_contains(&d, &["bridge ", "stp_state 0", "forward_delay 0"]);
    assert!(br
        .bridge_info()
        .iter()
        .any(|i| matches!(i, InfoBridge::StpState(BridgeStpState::Disabled))));

    // STP on when asked.
    t.h.link_add(&Bridge::new("br1").stp(true)).await.unwrap();
    assert_contains(&ip_d(&t, "br1"), &["stp_state 1"]);
    // A fixed MAC.
    let m = mac("02:00:00:00:00:b1");
    assert_eq!(t.h.link_add(&Bridge::new("br2").mac(m)).await.unwrap().mac, Some(m));
}

#[tokio::test]
async fn bridge_ports_attach_detach_and_settings() {
    let t = TestNs::new("bp").await;
    let br = t.h.link_add(&Bridge::new("br0").up()).await.unwrap();
    t.h.link_add(&Veth::new("p0", "p0x")).await.unwrap();
    t.h.link_add(&Veth::new("p1", "p1x")).await.unwrap();

    t.h.bridge_attach("br0", "p0").await.unwrap();
    t.h.bridge_attach("br0", "p1").await.unwrap();
    assert_eq!(t.h.link_get("p0").await.unwrap().master, Some(br.index));
    assert_eq!(t.h.link_get("p1").await.unwrap().master, Some(br.index));
    assert_contains(&t.sh("ip -o link show p0"), &["master br0"]);
    assert_eq!(t.h.link_get("p0x").await.unwrap().master, None);

    t.h.bridge_port_set("p0", &BridgePort::new().hairpin(true).learning(false))
        .await
        .unwrap();
    let d = ip_d(&t, "p0");
    assert_contains(&d, &["bridge_slave", "hairpin on", "learning off"]);
    let port = t.h.link_get("p0").await.unwrap();
    assert!(port.bridge_port_info().contains(&InfoBridgePort::HairpinMode(true)));
    assert!(port.bridge_port_info().contains(&InfoBridgePort::Learning(false)));
    // The other port is untouched.
    assert_contains(&ip_d(&t, "p1"), &["hairpin off", "learning on"]);

    t.h.bridge_port_set("p1", &BridgePort::new().flood(false).isolated(true))
        .await
        .unwrap();
    assert_contains(&ip_d(&t, "p1"), &["flood off", "isolated on"]);
    t.h.bridge_port_set("p0", &BridgePort::new().hairpin(false))
        .await
        .unwrap();
    assert_contains(&ip_d(&t, "p0"), &["hairpin off", "learning off"]);

    t.h.bridge_detach("p0").await.unwrap();
    assert_eq!(t.h.link_get("p0").await.unwrap().master, None);
    assert!(!t.sh("ip -o link show p0").contains("master"));
    // Port settings need a bridge port.
    let e =
        t.h.bridge_port_set("p0", &BridgePort::new().hairpin(true))
            .await
            .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("p0") && text.contains(t.ns.name().unwrap()), "{text}");
    // Attaching to a missing bridge names the missing device.
    let e = t.h.bridge_attach("nobr", "p0").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("nobr"), "{e}");
}

// ---------------------------------------------------------------- vxlan

#[tokio::test]
async fn vxlan_attributes() {
    let t = TestNs::new("vx").await;
    let under = t.h.link_add(&Veth::new("under0", "under1")).await.unwrap();
    let m = mac("02:00:00:00:00:0a");
    let spec = Vxlan::new("vx0", 4242)
        .port(8472)
        .local("10.1.2.3".parse().unwrap())
        .parent("under0")
        .learning(false)
        .ttl(17)
        .mtu(1400)
        .mac(m)
        .up();
    let l = t.h.link_add(&spec).await.unwrap();
    assert_eq!(l.kind, LinkKind::Vxlan);
    assert_eq!(l.mtu, Some(1400));
    assert_eq!(l.mac, Some(m));
    assert!(l.up);
    assert_eq!(vni_of(&l), Some(4242));
    let info = l.vxlan_info();
    assert!(info.contains(&InfoVxlan::Port(8472)), "{info:?}");
    assert!(info.contains(&InfoVxlan::Learning(false)), "{info:?}");
    assert!(info.contains(&InfoVxlan::Ttl(17)), "{info:?}");
    assert!(info.contains(&InfoVxlan::Link(under.index)), "{info:?}");
    assert!(
        info.contains(&InfoVxlan::Local("10.1.2.3".parse().unwrap())),
        "{info:?}"
    );
    let d = ip_d(&t, "vx0");
    assert_contains(
        &d,
        &[
            "vxlan id 4242 ",
            "local 10.1.2.3",
            "dev under0",
            "dstport 8472",
            "nolearning",
            "ttl 17",
            "mtu 1400",
        ],
    );

    // Defaults: IANA port, learning on; a unicast remote.
    t.h.link_add(&Vxlan::new("vx1", 7).remote(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9))))
        .await
        .unwrap();
    let d = ip_d(&t, "vx1");
    assert_contains(&d, &["vxlan id 7 ", "remote 192.0.2.9", "dstport 4789"]);
    assert!(!d.contains("nolearning"), "{d}");

    // Out-of-range VNI is refused before the kernel sees it.
    match t.h.link_add(&Vxlan::new("vx2", 1 << 24)).await {
        Err(LinkError::Invalid { what, .. }) => assert_eq!(what, "vni"),
        other => panic!("vni 2^24: {other:?}"),
    }
    // A missing parent is reported as not found, naming the parent.
    let e = t.h.link_add(&Vxlan::new("vx3", 3).parent("nodev")).await.unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains("nodev"), "{e}");
    assert!(t.h.link_get("vx3").await.unwrap_err().is_not_found());
}

// ---------------------------------------------------------------- macvlan

#[tokio::test]
async fn macvlan_modes() {
    let t = TestNs::new("mv").await;
    let parent = t.h.link_add(&Veth::new("mvp", "mvpx")).await.unwrap();
    for (mode, text) in [
        (MacvlanMode::Bridge, "mode bridge"),
        (MacvlanMode::Private, "mode private"),
        (MacvlanMode::Vepa, "mode vepa"),
        (MacvlanMode::Passthru, "mode passthru"),
        (MacvlanMode::Source, "mode source"),
    ] {
        let l =
            t.h.link_add(&Macvlan::new("mv0", "mvp").mode(mode).mtu(1400))
                .await
                .unwrap();
        assert_eq!(l.kind, LinkKind::Macvlan, "{mode:?}");
        assert_eq!(l.parent, Some(parent.index), "{mode:?}");
        assert_eq!(l.mtu, Some(1400), "{mode:?}");
        assert_contains(&ip_d(&t, "mv0"), &["macvlan", text, "mv0@mvp"]);
        // Same spec: ensure finds it identical; another mode: a difference.
        let e =
            t.h.link_ensure(&Macvlan::new("mv0", "mvp").mode(mode), EnsurePolicy::Report)
                .await;
        assert_eq!(e.unwrap().action, EnsureAction::Existing, "{mode:?}");
        let other = if mode == MacvlanMode::Bridge {
            MacvlanMode::Private
        } else {
            MacvlanMode::Bridge
        };
        let e =
            t.h.link_ensure(&Macvlan::new("mv0", "mvp").mode(other), EnsurePolicy::Report)
                .await;
        assert!(
            matches!(e, Err(LinkError::Mismatch { ref differences, .. }) if differences.iter().any(|d| d.starts_with("mode"))),
            "{e:?}"
        );
        del_and_check(&t, "mv0").await;
    }
    // A missing parent.
    let e = t.h.link_add(&Macvlan::new("mv1", "nodev")).await.unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains("nodev"), "{e}");
}

// ---------------------------------------------------------------- tun/tap

#[tokio::test]
async fn tun_and_tap_persistent_with_owner() {
    let t = TestNs::new("tt").await;
    for (name, mode, is_tap) in [("tun0", TunTapMode::Tun, false), ("tap0", TunTapMode::Tap, true)] {
        let l =
            t.h.tuntap_add(&TunTap::new(name, mode).owner(4242).group(4343))
                .await
                .unwrap();
        assert_eq!(l.kind, LinkKind::Tun);
        assert_eq!(l.tun_is_tap(), Some(is_tap), "{name}");
        // tap devices have an Ethernet address, tun devices none.
        assert_eq!(l.mac.is_some(), is_tap, "{name}: {:?}", l.mac);
        let d = ip_d(&t, name);
        let ty = if is_tap { "tun type tap" } else { "tun type tun" };
        assert_contains(&d, &[ty, "persist on", "user 4242", "group 4343", "pi off"]);
        // It survives the creating descriptor (persistent) ...
        assert!(t.h.link_get(name).await.is_ok());
        // Adding it again fails (no silent attach), as with `ip tuntap add`.
        let e = t.h.tuntap_add(&TunTap::new(name, mode)).await.unwrap_err();
        assert!(e.is_exists(), "{e}");
        assert!(
            e.to_string().contains(name) && e.to_string().contains(t.ns.name().unwrap()),
            "{e}"
        );
        // ... until deleted.
        del_and_check(&t, name).await;
    }
    // Not a tun device: no answer.
    let v = t.h.link_add(&Veth::new("vt0", "vt1")).await.unwrap();
    assert_eq!(v.tun_is_tap(), None);
    // Options show up too.
    t.h.tuntap_add(&TunTap::new("tun1", TunTapMode::Tun).packet_info(true).multi_queue(true))
        .await
        .unwrap();
    assert_contains(&ip_d(&t, "tun1"), &["pi on", "multi_queue numqueues"]);
}

#[tokio::test]
async fn tuntap_open_is_gone_when_the_fd_closes() {
    let t = TestNs::new("to").await;
    for (name, mode) in [("tun9", TunTapMode::Tun), ("tap9", TunTapMode::Tap)] {
        let (fd, l) = t.h.tuntap_open(&TunTap::new(name, mode)).await.unwrap();
        assert_eq!(l.name, name);
        assert_eq!(l.tun_is_tap(), Some(mode == TunTapMode::Tap));
        assert_contains(&ip_d(&t, name), &["persist off"]);
        drop(fd);
        wait_until_async(
            Duration::from_secs(5),
            &format!("{name} to go with its fd"),
            async || match t.h.link_get(name).await {
                Err(e) if e.is_not_found() => true,
                Err(e) => panic!("{e}"),
                Ok(_) => false,
            },
        )
        .await;
    }
}

// ---------------------------------------------------------------- common operations

#[tokio::test]
async fn get_list_and_set() {
    let t = TestNs::new("ops").await;
    let v = t.h.link_add(&Veth::new("ops0", "ops1")).await.unwrap();
    let br = t.h.link_add(&Bridge::new("obr")).await.unwrap();

    // By name and by index agree.
    let by_idx = t.h.link_get_by_index(v.index).await.unwrap();
    assert_eq!(by_idx.name, "ops0");
    assert_eq!(t.h.link_index("ops0").await.unwrap(), v.index);

    // The listing has every link with its kind.
    let list = t.h.link_list().await.unwrap();
    let find = |n: &str| {
        list.iter()
            .find(|l| l.name == n)
            .unwrap_or_else(|| panic!("{n} not listed"))
    };
    assert_eq!(find("lo").kind, LinkKind::Device);
    assert_eq!(find("ops0").kind, LinkKind::Veth);
    assert_eq!(find("ops1").kind, LinkKind::Veth);
    assert_eq!(find("obr").kind, LinkKind::Bridge);
    assert_eq!(find("ops0").index, v.index);
    assert_eq!(find("ops0").parent, Some(find("ops1").index));
    assert_eq!(list.len(), 4, "{:?}", list.iter().map(|l| &l.name).collect::<Vec<_>>());

    // up / down
    t.h.link_set_up("ops0").await.unwrap();
    assert!(t.h.link_get("ops0").await.unwrap().up);
    assert_contains(&t.sh("ip -o link show ops0"), &[",UP"]);
    t.h.link_set_down("ops0").await.unwrap();
    assert!(!t.h.link_get("ops0").await.unwrap().up);

    // MTU and MAC in one request, by index.
    let m = mac("02:12:34:56:78:9a");
    t.h.link_set_by_index(v.index).mtu(1280).mac(m).apply().await.unwrap();
    let l = t.h.link_get("ops0").await.unwrap();
    assert_eq!(l.mtu, Some(1280));
    assert_eq!(l.mac, Some(m));
    assert_contains(&t.sh("ip -o link show ops0"), &["mtu 1280", "02:12:34:56:78:9a"]);

    // Rename (down first); the index stays.
    t.h.link_set("ops0").name("renamed0").apply().await.unwrap();
    assert!(t.h.link_get("ops0").await.unwrap_err().is_not_found());
    assert_eq!(t.h.link_get("renamed0").await.unwrap().index, v.index);
    // Renaming onto a taken name is refused, with the kernel's errno.
    let e = t.h.link_set("renamed0").name("ops1").apply().await.unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert!(
        e.to_string().contains("name ops1") && e.to_string().contains("renamed0"),
        "{e}"
    );
    // Renaming a missing link names it.
    let e = t.h.link_set("nosuch0").name("x0").apply().await.unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains("nosuch0"), "{e}");
    t.h.link_set("renamed0").down().name("ops0").apply().await.unwrap();
    assert_eq!(t.h.link_get("ops0").await.unwrap().index, v.index);

    // master / nomaster through link_set, by name and by index.
    t.h.link_set("ops0").master("obr").up().apply().await.unwrap();
    let l = t.h.link_get("ops0").await.unwrap();
    assert_eq!(l.master, Some(br.index));
    assert!(l.up);
    t.h.link_set("ops0").nomaster().apply().await.unwrap();
    assert_eq!(t.h.link_get("ops0").await.unwrap().master, None);
    t.h.link_set("ops1").master_index(br.index).apply().await.unwrap();
    assert_eq!(t.h.link_get("ops1").await.unwrap().master, Some(br.index));
    assert_contains(&t.sh("ip -o link show ops1"), &["master obr"]);

    // Alias: set, read back (also by `ip`), removed with an empty text; too long is refused.
    t.h.link_set("ops0").alias("nk:podnet/ctr1:eth0").apply().await.unwrap();
    assert_eq!(
        t.h.link_get("ops0").await.unwrap().alias.as_deref(),
        Some("nk:podnet/ctr1:eth0")
    );
    assert_contains(&t.sh("ip -d link show ops0"), &["alias nk:podnet/ctr1:eth0"]);
    t.h.link_set("ops0").alias("").apply().await.unwrap();
    assert_eq!(t.h.link_get("ops0").await.unwrap().alias, None);
    let e = t.h.link_set("ops0").alias(&"x".repeat(256)).apply().await.unwrap_err();
    assert!(matches!(e, LinkError::Invalid { what: "alias", .. }), "{e}");

    // Delete by index, idempotent.
    t.h.link_del_by_index(br.index).await.unwrap();
    t.h.link_del_by_index(br.index).await.unwrap();
    assert!(t.h.link_get("obr").await.unwrap_err().is_not_found());
    assert_eq!(t.h.link_get("ops1").await.unwrap().master, None);
}

#[tokio::test]
async fn move_to_another_netns() {
    let a = TestNs::new("ma").await;
    let b = TestNs::new("mb").await;
    a.h.link_add(&Veth::new("mv0", "mv1")).await.unwrap();
    a.h.link_set("mv1").netns(&b.ns).apply().await.unwrap();
    assert!(a.h.link_get("mv1").await.unwrap_err().is_not_found());
    let moved = b.h.link_get("mv1").await.unwrap();
    assert_eq!(moved.kind, LinkKind::Veth);
    assert!(moved.link_netnsid.is_some());
    assert!(a.h.link_get("mv0").await.unwrap().link_netnsid.is_some());
    assert!(b.sh("ip -o link show mv1").contains("mv1@"));
    // Move and rename in one go, back into a.
    b.h.link_set("mv1").netns(&a.ns).name("mv2").apply().await.unwrap();
    assert!(b.h.link_get("mv1").await.unwrap_err().is_not_found());
    let back = a.h.link_get("mv2").await.unwrap();
    assert_eq!(back.link_netnsid, None);
    assert_eq!(a.h.link_get("mv0").await.unwrap().parent, Some(back.index));
    // Deleting removes both ends wherever they are.
    del_and_check(&a, "mv0").await;
    assert!(a.h.link_get("mv2").await.unwrap_err().is_not_found());
}

// ---------------------------------------------------------------- errors

#[tokio::test]
async fn errors_name_op_link_and_netns() {
    let t = TestNs::new("err").await;
    let ns = t.ns.name().unwrap().to_string();
    t.h.link_add(&Veth::new("dup0", "dup1")).await.unwrap();

    let e = t.h.link_add(&Veth::new("dup0", "dupx")).await.unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert!(!e.is_not_found() && !e.is_unsupported());
    let text = e.to_string();
    assert_contains(&text, &["add veth", "dup0", &ns]);
    // The failed add left nothing half-made.
    assert!(t.h.link_get("dupx").await.unwrap_err().is_not_found());
    let e = t.h.link_add(&Bridge::new("dup1")).await.unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert_contains(&e.to_string(), &["add bridge", "dup1", &ns]);

    let e = t.h.link_get("missing0").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(!e.is_exists());
    assert_contains(&e.to_string(), &["get", "missing0", &ns]);
    match &e {
        LinkError::Netlink {
            op,
            link,
            netns,
            cause: source,
        } => {
            assert_eq!(op, "get");
            assert_eq!(link, "missing0");
            assert!(netns.contains(&ns));
            assert_eq!(source.errno, Some(libc::ENODEV));
        }
        other => panic!("{other:?}"),
    }
    let e = t.h.link_get_by_index(999_999).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("#999999"), "{e}");

    let e = t.h.link_set("missing0").mtu(1400).up().apply().await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_contains(&e.to_string(), &["set up mtu 1400", "missing0", &ns]);

    // Deleting what is not there is fine.
    t.h.link_del("missing0").await.unwrap();
    t.h.link_del_by_index(999_999).await.unwrap();
}

#[tokio::test]
async fn invalid_names_never_reach_the_kernel() {
    let t = TestNs::new("inv").await;
    let before = t.h.link_list().await.unwrap().len();
    let long = "abcdefghijklmnop"; // 16 bytes
    assert_eq!(long.len(), 16);
    // What the kernel refuses, and what netkit refuses on top: a name that would change the
    // meaning of a firewall rule or command text (`eth+` is an iptables wildcard).
    for bad in [
        long, "a/b", "", "a b", "a:b", ".", "..", "eth+", "a\"b", "a\\b", "a'b", "a\u{7}b", "é0",
    ] {
        let check = |r: Result<Link, LinkError>, what: &str| match r {
            Err(LinkError::Invalid { link, what: w, .. }) => {
                assert_eq!(link, bad, "{what}");
                assert_eq!(w, "name", "{what}");
            }
            other => panic!("{what} with name {bad:?}: {other:?}"),
        };
        check(t.h.link_add(&Veth::new(bad, "okpeer")).await, "veth");
        check(t.h.link_add(&Veth::new("okname", bad)).await, "veth peer");
        check(t.h.link_add(&Bridge::new(bad)).await, "bridge");
        check(t.h.link_add(&Vxlan::new(bad, 1)).await, "vxlan");
        check(t.h.tuntap_add(&TunTap::new(bad, TunTapMode::Tap)).await, "tuntap_add");
        check(
            t.h.tuntap_open(&TunTap::new(bad, TunTapMode::Tun))
                .await
                .map(|(_, l)| l),
            "tuntap_open",
        );
        check(
            t.h.link_ensure(&Bridge::new(bad), EnsurePolicy::Recreate)
                .await
                .map(|e| e.link),
            "ensure",
        );
    }
    // A rename to an invalid name is refused too.
    t.h.link_add(&Veth::new("okname", "okpeer")).await.unwrap();
    match t.h.link_set("okname").name(long).apply().await {
        Err(LinkError::Invalid { what: "name", .. }) => {}
        other => panic!("rename to {long}: {other:?}"),
    }
    assert_eq!(t.h.link_list().await.unwrap().len(), before + 2);
    // 15 bytes is fine.
    let max = "abcdefghijklmno";
    assert_eq!(t.h.link_add(&Bridge::new(max)).await.unwrap().name, max);
}

// ---------------------------------------------------------------- ensure

#[tokio::test]
async fn ensure_create_existing_report_keep_recreate() {
    let t = TestNs::new("ens").await;
    let spec = Vxlan::new("vxe", 100).learning(false).mtu(1400);
    let e = t.h.link_ensure(&spec, EnsurePolicy::Report).await.unwrap();
    assert_eq!(e.action, EnsureAction::Created);
    assert!(e.differences.is_empty());
    assert_eq!(vni_of(&e.link), Some(100));
    let index = e.link.index;

    let e = t.h.link_ensure(&spec, EnsurePolicy::Report).await.unwrap();
    assert_eq!(e.action, EnsureAction::Existing);
    assert!(e.differences.is_empty(), "{:?}", e.differences);
    assert_eq!(e.link.index, index);

    // Report: lists the VNI, changes nothing.
    let other = Vxlan::new("vxe", 200).learning(false).mtu(1400);
    match t.h.link_ensure(&other, EnsurePolicy::Report).await {
        Err(LinkError::Mismatch {
            link,
            kind,
            netns,
            differences,
        }) => {
            assert_eq!(link, "vxe");
            assert_eq!(kind, "vxlan");
            assert!(netns.contains(t.ns.name().unwrap()));
            assert_eq!(differences, vec!["vni: have 100, want 200".to_string()]);
        }
        other => panic!("report: {other:?}"),
    }
    let l = t.h.link_get("vxe").await.unwrap();
    assert_eq!((l.index, vni_of(&l)), (index, Some(100)));

    // Keep: returns the old link with the differences.
    let e = t.h.link_ensure(&other, EnsurePolicy::Keep).await.unwrap();
    assert_eq!(e.action, EnsureAction::KeptDifferent);
    assert_eq!(e.link.index, index);
    assert_eq!(vni_of(&e.link), Some(100));
    assert_eq!(e.differences, vec!["vni: have 100, want 200".to_string()]);

    // Several differences are all listed.
    let many = Vxlan::new("vxe", 300).learning(true).mtu(1300).port(8472);
    let e = t.h.link_ensure(&many, EnsurePolicy::Keep).await.unwrap();
    for what in ["vni:", "mtu:", "learning:", "port:"] {
        assert!(
            e.differences.iter().any(|d| d.starts_with(what)),
            "{what} in {:?}",
            e.differences
        );
    }

    // Recreate: the new VNI is in place.
    let e = t.h.link_ensure(&other, EnsurePolicy::Recreate).await.unwrap();
    assert_eq!(e.action, EnsureAction::Recreated);
    assert_eq!(e.differences, vec!["vni: have 100, want 200".to_string()]);
    assert_eq!(vni_of(&e.link), Some(200));
    assert_contains(&ip_d(&t, "vxe"), &["vxlan id 200 ", "nolearning", "mtu 1400"]);
    let e = t.h.link_ensure(&other, EnsurePolicy::Report).await.unwrap();
    assert_eq!(e.action, EnsureAction::Existing);

    // The remote is part of a VXLAN device's identity too.
    let r1 = Vxlan::new("vxr", 5).remote("192.0.2.1".parse().unwrap());
    let r2 = Vxlan::new("vxr", 5).remote("192.0.2.2".parse().unwrap());
    t.h.link_add(&r1).await.unwrap();
    assert_eq!(
        t.h.link_ensure(&r1, EnsurePolicy::Report).await.unwrap().action,
        EnsureAction::Existing
    );
    let e = t.h.link_ensure(&r2, EnsurePolicy::Keep).await.unwrap();
    assert_eq!(e.action, EnsureAction::KeptDifferent);
    assert_eq!(
        e.differences,
        vec!["remote: have 192.0.2.1, want 192.0.2.2".to_string()]
    );
    let e = t.h.link_ensure(&r2, EnsurePolicy::Recreate).await.unwrap();
    assert_eq!(e.action, EnsureAction::Recreated);
    assert_contains(&ip_d(&t, "vxr"), &["remote 192.0.2.2"]);

    // A link of another kind under the wanted name.
    t.h.link_add(&Veth::new("kindx", "kindy")).await.unwrap();
    match t.h.link_ensure(&Bridge::new("kindx"), EnsurePolicy::Report).await {
        Err(LinkError::Mismatch { differences, .. }) => {
            assert!(
                differences.iter().any(|d| d == "kind: have veth, want bridge"),
                "{differences:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    let e =
        t.h.link_ensure(&Bridge::new("kindx"), EnsurePolicy::Recreate)
            .await
            .unwrap();
    assert_eq!(e.link.kind, LinkKind::Bridge);
    assert!(t.h.link_get("kindy").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn ensure_compares_bridge_and_veth() {
    let t = TestNs::new("enb").await;
    let e =
        t.h.link_ensure(&Bridge::new("br0").mtu(1400), EnsurePolicy::Report)
            .await
            .unwrap();
    assert_eq!(e.action, EnsureAction::Created);
    let e =
        t.h.link_ensure(&Bridge::new("br0").mtu(1400), EnsurePolicy::Report)
            .await
            .unwrap();
    assert_eq!(e.action, EnsureAction::Existing);
    let e =
        t.h.link_ensure(&Bridge::new("br0").stp(true), EnsurePolicy::Keep)
            .await
            .unwrap();
    assert_eq!(e.action, EnsureAction::KeptDifferent);
    assert!(
        e.differences.iter().any(|d| d.starts_with("stp:")),
        "{:?}",
        e.differences
    );

    let v = Veth::new("ve0", "ve1").up();
    assert_eq!(
        t.h.link_ensure(&v, EnsurePolicy::Report).await.unwrap().action,
        EnsureAction::Created
    );
    assert_eq!(
        t.h.link_ensure(&v, EnsurePolicy::Report).await.unwrap().action,
        EnsureAction::Existing
    );
    t.h.link_set_down("ve0").await.unwrap();
    let e = t.h.link_ensure(&v, EnsurePolicy::Keep).await.unwrap();
    assert_eq!(e.differences, vec!["state: have down, want up".to_string()]);
}

// ---------------------------------------------------------------- kinds this kernel may lack

#[tokio::test]
async fn ipip_tunnel() {
    let t = TestNs::new("ipip").await;
    t.h.link_add(&Veth::new("u0", "u1")).await.unwrap();
    let spec = IpIp::new("tun1")
        .local(Ipv4Addr::new(10, 0, 0, 1))
        .remote(Ipv4Addr::new(10, 0, 0, 2))
        .parent("u0")
        .ttl(64)
        .mtu(1400);
    let Some(l) = add_or_skip(&t, "ipip_tunnel", &spec).await else {
        return;
    };
    assert_eq!(l.kind, LinkKind::IpIp);
    assert_eq!(l.mtu, Some(1400));
    assert_contains(
        &ip_d(&t, "tun1"),
        &["ipip", "remote 10.0.0.2", "local 10.0.0.1", "dev u0", "ttl 64"],
    );
    assert_eq!(
        t.h.link_ensure(&spec, EnsurePolicy::Report).await.unwrap().action,
        EnsureAction::Existing
    );
    del_and_check(&t, "tun1").await;
}

#[tokio::test]
async fn dummy_device() {
    let t = TestNs::new("dum").await;
    let Some(l) = add_or_skip(&t, "dummy_device", &Dummy::new("dum0")).await else {
        return;
    };
    assert_eq!(l.kind, LinkKind::Dummy);
    assert_contains(&ip_d(&t, "dum0"), &["dummy"]);
    del_and_check(&t, "dum0").await;
}

#[tokio::test]
async fn geneve_tunnel() {
    let t = TestNs::new("gen").await;
    let spec = Geneve::new("gen0", 77).remote(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    let Some(l) = add_or_skip(&t, "geneve_tunnel", &spec).await else {
        return;
    };
    assert_eq!(l.kind, LinkKind::Geneve);
    assert_contains(&ip_d(&t, "gen0"), &["geneve id 77", "remote 192.0.2.7"]);
    del_and_check(&t, "gen0").await;
}

#[tokio::test]
async fn ipvlan_device() {
    let t = TestNs::new("ipv").await;
    let parent = t.h.link_add(&Veth::new("ipvp", "ipvq")).await.unwrap();
    let spec = Ipvlan::new("ipv0", "ipvp").mode(IpvlanMode::L3);
    let Some(l) = add_or_skip(&t, "ipvlan_device", &spec).await else {
        return;
    };
    assert_eq!(l.kind, LinkKind::Ipvlan);
    assert_eq!(l.parent, Some(parent.index));
    assert_contains(&ip_d(&t, "ipv0"), &["ipvlan", "mode l3 "]);
    del_and_check(&t, "ipv0").await;
}

#[tokio::test]
async fn vrf_device() {
    let t = TestNs::new("vrf").await;
    let Some(l) = add_or_skip(&t, "vrf_device", &Vrf::new("vrf0", 1234)).await else {
        return;
    };
    assert_eq!(l.kind, LinkKind::Vrf);
    assert_contains(&ip_d(&t, "vrf0"), &["vrf table 1234"]);
    del_and_check(&t, "vrf0").await;
}

#[tokio::test]
async fn wireguard_device() {
    let t = TestNs::new("wg").await;
    let Some(l) = add_or_skip(&t, "wireguard_device", &Wireguard::new("wg0")).await else {
        return;
    };
    assert_eq!(l.kind, LinkKind::Wireguard);
    assert_contains(&ip_d(&t, "wg0"), &["wireguard"]);
    del_and_check(&t, "wg0").await;
}

// ---------------------------------------------------------------- concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_list_is_consistent_under_churn() {
    let t = TestNs::new("churn").await;
    // Enough links that one dump spans several netlink messages, so the
    // kernel can flag it interrupted when the table changes in between.
    for i in 0..60 {
        t.h.link_add(&Veth::new(&format!("s{i}"), &format!("s{i}p")))
            .await
            .unwrap();
    }
    let static_names: Vec<String> = (0..60).flat_map(|i| [format!("s{i}"), format!("s{i}p")]).collect();

    // Churn until the lister is done; the lister takes at least 50 listings, and goes on (up
    // to a deadline) until the kernel has flagged one interrupted, so the retry path runs
    // however fast a listing is (a quick reader leaves the kernel little time between the
    // parts of a dump).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn_h = t.ns.handle().await.unwrap();
    let churn = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (a, b) = (format!("c{}", i % 1000), format!("c{}p", i % 1000));
                churn_h.link_add(&Veth::new(&a, &b)).await.unwrap();
                churn_h.link_del(&a).await.unwrap();
                i += 1;
            }
        })
    };
    let list_h = t.ns.handle().await.unwrap();
    let lister = tokio::spawn(async move {
        let mut sizes = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while sizes.len() < 50 || (list_h.dump_restarts() == 0 && std::time::Instant::now() < deadline) {
            let list = list_h.link_list().await.expect("list under churn");
            let mut idx: Vec<u32> = list.iter().map(|l| l.index).collect();
            idx.sort_unstable();
            let n = idx.len();
            idx.dedup();
            assert_eq!(idx.len(), n, "duplicate indexes in one listing");
            let mut names: Vec<&str> = list.iter().map(|l| l.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "duplicate names in one listing");
            for s in &static_names {
                assert!(list.iter().any(|l| &l.name == s), "{s} missing from a listing");
            }
            sizes.push(n);
            tokio::task::yield_now().await;
        }
        (sizes, list_h.dump_restarts())
    });
    let (sizes, restarts) = lister.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.await.unwrap();
    println!(
        "dumps restarted after NLM_F_DUMP_INTR: {restarts} in {} listings",
        sizes.len()
    );
    // The kernel did flag dumps interrupted, and every listing above was still complete: the
    // retry path was exercised.
    assert!(
        restarts > 0,
        "no dump was interrupted: the test did not exercise the retry path"
    );
    assert!(sizes.len() >= 50);
    assert_eq!(t.h.link_list().await.unwrap().len(), 121);
    assert_eq!(t.h.link_list().await.unwrap().len(), 121);
}

/// `link_del_detached`: the pair is gone from both namespaces (names free, off the bridge)
/// when the call returns; a second call finds nothing; the kernel's error comes back.
#[tokio::test]
async fn detached_delete_returns_once_the_pair_is_gone() {
    let a = TestNs::new("dda").await;
    let b = TestNs::new("ddb").await;
    a.h.link_add(&Bridge::new("br0").up()).await.unwrap();
    a.h.link_add(&Veth::new("vh", "eth0").peer_netns(&b.ns)).await.unwrap();
    // A bridge port: the kernel also sends an AF_BRIDGE RTM_DELLINK for it, before the device
    // is gone; the call must not take that one for the deletion.
    a.h.link_set("vh").master("br0").up().apply().await.unwrap();
    b.h.link_set_up("eth0").await.unwrap();

    assert!(a.h.link_del_detached("vh").await.unwrap(), "the link existed");
    assert!(a.h.link_get("vh").await.unwrap_err().is_not_found());
    assert!(
        b.h.link_get("eth0").await.unwrap_err().is_not_found(),
        "the peer goes too"
    );
    assert!(!a.sh("bridge link show").contains("vh"), "the port left the bridge");
    // Both names are free at once.
    a.h.link_add(&Veth::new("vh", "eth0").peer_netns(&b.ns)).await.unwrap();
    assert!(a.h.link_del_detached("vh").await.unwrap());
    assert!(!a.h.link_del_detached("vh").await.unwrap(), "already gone: Ok(false)");

    // A link the kernel refuses to delete: its error, not a silent success.
    let err = a.h.link_del_detached("lo").await.unwrap_err();
    assert!(err.errno().is_some(), "{err}");
    assert!(a.h.link_get("lo").await.is_ok());
}

/// The detached deletion works for a handle opened on another namespace (the detached
/// process enters it) as for one in the caller's own.
#[tokio::test]
async fn detached_delete_in_another_namespace_leaves_no_zombie() {
    let t = TestNs::new("ddn").await;
    t.h.link_add(&Veth::new("x0", "x1")).await.unwrap();
    assert!(t.h.link_del_detached("x0").await.unwrap());
    assert!(t.h.link_get("x1").await.unwrap_err().is_not_found());
    // The intermediate child was reaped; the detached one is not our child: no zombie of ours.
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        if fields.len() > 2 && fields[1] == me {
            assert_ne!(fields[0], "Z", "a zombie child of the test process: {stat}");
        }
    }
}

/// `addrgenmode none`, set in the same request as `up`: no IPv6 link-local address, on
/// either end of a pair (one end up before the other, or after).
#[tokio::test]
async fn addr_gen_mode_none_gives_no_link_local() {
    let a = TestNs::new("agm").await;
    let b = TestNs::new("agn").await;
    a.h.link_add(&Veth::new("va", "vb").peer_netns(&b.ns)).await.unwrap();
    b.h.link_set("vb")
        .addr_gen_mode(AddrGenMode::None)
        .up()
        .apply()
        .await
        .unwrap();
    a.h.link_set("va")
        .addr_gen_mode(AddrGenMode::None)
        .up()
        .apply()
        .await
        .unwrap();
    a.h.link_add(&Veth::new("wa", "wb")).await.unwrap();
    a.h.link_set_up("wb").await.unwrap();
    a.h.link_set_up("wa").await.unwrap();
    // Carrier comes asynchronously; addresses follow it.
    wait_until_async(
        Duration::from_secs(5),
        "the control link's carrier and link-local address",
        async || a.h.link_get("wa").await.unwrap().oper_up && !a.h.addr_list(Some("wa")).await.unwrap().is_empty(),
    )
    .await;
    assert!(a.sh("ip -d link show va").contains("addrgenmode none"));
    assert!(
        a.h.addr_list(Some("va")).await.unwrap().is_empty(),
        "{}",
        a.sh("ip -d addr show; ip -d link show")
    );
    assert!(b.h.addr_list(Some("vb")).await.unwrap().is_empty());
}

/// An access VLAN on a bridge port (`bridge vlan add … pvid untagged`, out of VLAN 1), the
/// bridge device too; skipped by name on a kernel without bridge VLAN filtering.
#[tokio::test]
async fn bridge_access_vlan_on_a_port() {
    let t = TestNs::new("bvl").await;
    t.h.link_add(&Bridge::new("br0").up()).await.unwrap();
    t.h.link_add(&Veth::new("p0", "p1")).await.unwrap();
    t.h.link_set("p0").master("br0").up().apply().await.unwrap();
    match t.h.bridge_vlan_filtering("br0", true).await {
        Err(e) if e.is_unsupported() => {
            assert!(e.to_string().contains("not supported by this kernel"), "{e}");
            let e2 = t.h.bridge_vlan_access("p0", 10, true).await.unwrap_err();
            assert!(e2.is_unsupported(), "{e2}");
            report_skip("link::bridge_access_vlan_on_a_port", &e.to_string());
            return;
        }
        other => other.unwrap(),
    }
    t.h.bridge_vlan_access("p0", 10, true).await.unwrap();
    let shown = t.sh("bridge -j vlan show");
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    for dev in ["p0", "br0"] {
        let entry = v.as_array().unwrap().iter().find(|e| e["ifname"] == dev).expect(dev);
        let vlans = entry["vlans"].as_array().unwrap();
        assert!(vlans.iter().any(|x| x["vlan"] == 10), "{dev}: {shown}");
        assert!(!vlans.iter().any(|x| x["vlan"] == 1), "{dev} still in vlan 1: {shown}");
    }
    assert!(t.h.bridge_vlan_access("p0", 4095, false).await.is_err());
}

#[tokio::test]
async fn veth_born_as_a_bridge_port() {
    let t = TestNs::new("vm").await;
    let br = t.h.link_add(&Bridge::new("br0").up()).await.unwrap();
    let added =
        t.h.link_add(&Veth::new("p0", "p1").master_index(br.index).up())
            .await
            .unwrap();
    // The kernel's echo predates the enslaving (same request): link_add reads it again.
    assert_eq!(added.master, Some(br.index), "link_add returns the link as it is now");
    let end = t.h.link_get("p0").await.unwrap();
    assert_eq!(end.master, Some(br.index), "the new end is a port in the same request");
    assert_contains(&ip_d(&t, "p0"), &["master br0"]);
    assert!(!ip_d(&t, "p1").contains("master"), "the peer is not");
}

/// `flag_names`, `operstate`, `link_type`, `broadcast`, `qdisc` and `txqlen` read as
/// `ip -j link show` prints them, for loopback, a veth pair (one end up, its peer down: no
/// carrier), a bridge and a tun device.
#[tokio::test]
async fn flags_state_and_type_read_like_ip_json() {
    let t = TestNs::new("lnames").await;
    t.h.link_add(&Veth::new("v0", "v1").up()).await.unwrap();
    t.h.link_add(&Bridge::new("br0")).await.unwrap();
    let tun = t.h.tuntap_add(&TunTap::new("tun0", TunTapMode::Tun)).await.is_ok();
    // The kernel settles operational states asynchronously (linkwatch): compare until both
    // views agree, within a bound.
    let compared = wait_for_async(Duration::from_secs(10), "netkit and ip -j to agree", async || {
        let shown = netkit_test_support::cmd::ipj_list(t.name(), &["link", "show"]);
        let mut n = 0;
        for l in t.h.link_list().await.unwrap() {
            let Some(ip) = shown.iter().find(|j| j["ifname"] == l.name.as_str()) else {
                return Err(format!("{} not in ip -j link show", l.name));
            };
            // ip adds M-DOWN when the link's peer is down: a fact about the peer, not this link.
            let flags: Vec<String> = ip["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
                .filter(|f| f != "M-DOWN")
                .collect();
            let ours = (
                l.flag_names(),
                l.operstate(),
                l.link_type(),
                l.qdisc().map(str::to_string),
                l.txqlen(),
            );
            let theirs = (
                flags,
                ip["operstate"].as_str().unwrap_or_default().to_string(),
                ip["link_type"].as_str().unwrap_or_default().to_string(),
                ip["qdisc"].as_str().map(str::to_string),
                ip["txqlen"].as_u64().map(|q| q as u32),
            );
            if ours != theirs {
                return Err(format!("{}: netkit {ours:?}, ip {theirs:?}", l.name));
            }
            if l.link_type() == "ether" && l.broadcast().map(|b| b.to_string()).as_deref() != ip["broadcast"].as_str() {
                return Err(format!(
                    "{}: broadcast {:?}, ip {}",
                    l.name,
                    l.broadcast(),
                    ip["broadcast"]
                ));
            }
            n += 1;
        }
        Ok(n)
    })
    .await;
    assert_eq!(compared, if tun { 5 } else { 4 });
    let v0 = t.h.link_get("v0").await.unwrap();
    assert_eq!(v0.flag_names(), ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]);
    assert_eq!(t.h.link_get("lo").await.unwrap().link_type(), "loopback");
    if tun {
        assert_eq!(t.h.link_get("tun0").await.unwrap().link_type(), "none");
    }
}
