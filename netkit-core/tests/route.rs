use netkit_test_support::lit::{ip, net};
use netkit_test_support::TestNs;

use netkit_core::link::Veth;
use netkit_core::route::{protocol, IpFamily, NextHop, Route, RouteKind, RouteScope, TABLE_MAIN};

/// One namespace with two veth pairs (v0/v1, w0/w1), all up, and addresses
/// 10.1.0.1/24 + fd00:1::1/64 on v0, 10.2.0.1/24 + fd00:2::1/64 on w0.
async fn setup(tag: &str) -> TestNs {
    let t = TestNs::new(tag).await;
    for (a, b) in [("v0", "v1"), ("w0", "w1")] {
        t.h.link_add(&Veth::new(a, b).up()).await.unwrap();
        t.h.link_set_up(b).await.unwrap();
    }
    t.h.addr_add("v0", net("10.1.0.1/24")).await.unwrap();
    t.h.addr_add("w0", net("10.2.0.1/24")).await.unwrap();
    t.h.addr_add("v0", net("fd00:1::1/64")).nodad().await.unwrap();
    t.h.addr_add("w0", net("fd00:2::1/64")).nodad().await.unwrap();
    t
}

#[tokio::test]
async fn gateway_route_v4_and_v6() {
    let t = setup("gw").await;
    let v0 = t.h.link_index("v0").await.unwrap();
    t.h.route_add(&Route::new(net("192.168.10.0/24")).gateway(ip("10.1.0.254")))
        .await
        .unwrap();
    t.h.route_add(&Route::new(net("fd00:10::/48")).gateway(ip("fd00:1::fe")).dev("v0"))
        .await
        .unwrap();

    let shown = t.sh("ip route show 192.168.10.0/24");
    assert!(
        shown.contains("192.168.10.0/24 via 10.1.0.254 dev v0 proto static"),
        "{shown}"
    );
    let shown = t.sh("ip -6 route show fd00:10::/48");
    assert!(
        shown.contains("fd00:10::/48 via fd00:1::fe dev v0 proto static"),
        "{shown}"
    );

    let v4 = t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN)).await.unwrap();
    let r = v4
        .iter()
        .find(|r| r.dst == Some(net("192.168.10.0/24")))
        .expect("listed");
    assert_eq!(r.gateway, Some(ip("10.1.0.254")));
    assert_eq!(r.oif, Some(v0));
    assert_eq!(r.table, TABLE_MAIN);
    assert_eq!(r.protocol, protocol::STATIC);
    assert_eq!(r.scope, RouteScope::Universe);
    assert_eq!(r.kind, RouteKind::Unicast);
    assert!(v4.iter().all(|r| r.family == IpFamily::V4));
    // The kernel's own prefix route is there too, with link scope.
    let pfx = v4.iter().find(|r| r.dst == Some(net("10.1.0.0/24"))).unwrap();
    assert_eq!((pfx.scope, pfx.protocol), (RouteScope::Link, protocol::KERNEL));

    let v6 = t.h.route_list(Some(IpFamily::V6), None).await.unwrap();
    let r = v6
        .iter()
        .find(|r| r.dst == Some(net("fd00:10::/48")))
        .expect("listed v6");
    assert_eq!(r.gateway, Some(ip("fd00:1::fe")));
    assert_eq!(r.oif, Some(v0));

    // Both families together.
    let all = t.h.route_list(None, Some(TABLE_MAIN)).await.unwrap();
    assert!(all.iter().any(|r| r.family == IpFamily::V4) && all.iter().any(|r| r.family == IpFamily::V6));
}

#[tokio::test]
async fn default_routes_and_route_get() {
    let t = setup("def").await;
    let v0 = t.h.link_index("v0").await.unwrap();
    let w0 = t.h.link_index("w0").await.unwrap();
    t.h.route_add(&Route::default_v4().gateway(ip("10.1.0.254")))
        .await
        .unwrap();
    t.h.route_add(&Route::default_v6().gateway(ip("fd00:2::fe")).dev("w0"))
        .await
        .unwrap();
    assert!(t.sh("ip route show default").contains("default via 10.1.0.254 dev v0"));

    let d =
        t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.is_default())
            .unwrap();
    assert_eq!(d.dst, None);
    assert_eq!(d.destination(), net("0.0.0.0/0"));

    let g = t.h.route_get(ip("8.8.8.8")).await.unwrap();
    assert_eq!(g.oif, Some(v0));
    assert_eq!(g.gateway, Some(ip("10.1.0.254")));
    assert_eq!(g.prefsrc, Some(ip("10.1.0.1")));
    let g = t.h.route_get(ip("10.2.0.7")).await.unwrap();
    assert_eq!(g.oif, Some(w0));
    assert_eq!(g.gateway, None);
    let g = t.h.route_get(ip("2001:db8::1")).await.unwrap();
    assert_eq!(g.oif, Some(w0));
    assert_eq!(g.gateway, Some(ip("fd00:2::fe")));

    // Without a default route there is nothing to reach.
    t.h.route_del(&Route::default_v4()).await.unwrap();
    let err = t.h.route_get(ip("8.8.8.8")).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().contains(t.ns.name().unwrap()), "{err}");
}

#[tokio::test]
async fn onlink_gateway_outside_connected_subnets() {
    let t = setup("onl").await;
    let v0 = t.h.link_index("v0").await.unwrap();
    // 172.31.0.1 is in no connected subnet: refused without onlink...
    let plain = Route::new(net("192.168.20.0/24")).gateway(ip("172.31.0.1")).dev("v0");
    let err = t.h.route_add(&plain).await.unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENETUNREACH), "{err}");
    // ...accepted with it.
    t.h.route_add(&plain.clone().onlink()).await.unwrap();
    let shown = t.sh("ip route show 192.168.20.0/24");
    assert!(
        shown.contains("via 172.31.0.1 dev v0") && shown.contains("onlink"),
        "{shown}"
    );
    let r =
        t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.dst == Some(net("192.168.20.0/24")))
            .unwrap();
    assert!(r.onlink);
    assert_eq!(r.oif, Some(v0));
    assert_eq!(
        t.h.route_get(ip("192.168.20.5")).await.unwrap().gateway,
        Some(ip("172.31.0.1"))
    );
}

#[tokio::test]
async fn tables_small_and_large() {
    let t = setup("tbl").await;
    for table in [100u32, 1000, 100_000] {
        t.h.route_add(&Route::new(net("10.50.0.0/16")).gateway(ip("10.1.0.254")).table(table))
            .await
            .unwrap();
        let shown = t.sh(&format!("ip route show table {table}"));
        assert!(
            shown.contains("10.50.0.0/16 via 10.1.0.254 dev v0"),
            "table {table}: {shown}"
        );
        let listed = t.h.route_list(Some(IpFamily::V4), Some(table)).await.unwrap();
        assert_eq!(listed.len(), 1, "table {table}: {listed:?}");
        assert_eq!(listed[0].table, table);
        // Not in main.
        assert!(!t.sh("ip route show").contains("10.50.0.0/16"));
    }
    // IPv6 in a large table too.
    t.h.route_add(&Route::new(net("fd00:50::/48")).dev("v0").table(70_000))
        .await
        .unwrap();
    assert!(t.sh("ip -6 route show table 70000").contains("fd00:50::/48 dev v0"));
    // All tables: every one of them shows up.
    let all = t.h.route_list(None, None).await.unwrap();
    for table in [
        100u32,
        1000,
        100_000,
        70_000,
        TABLE_MAIN,
        netkit_core::route::TABLE_LOCAL,
    ] {
        assert!(all.iter().any(|r| r.table == table), "table {table} missing");
    }
    // Deleting from the large table leaves the others.
    t.h.route_del(&Route::new(net("10.50.0.0/16")).table(100_000))
        .await
        .unwrap();
    assert!(t.h.route_list(None, Some(100_000)).await.unwrap().is_empty());
    assert_eq!(t.h.route_list(None, Some(1000)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn metric_scope_protocol() {
    let t = setup("msp").await;
    // Same prefix, two metrics: both can coexist, the lower one wins.
    let dst = net("192.168.30.0/24");
    t.h.route_add(&Route::new(dst).gateway(ip("10.1.0.254")).metric(200))
        .await
        .unwrap();
    t.h.route_add(&Route::new(dst).gateway(ip("10.2.0.254")).metric(100))
        .await
        .unwrap();
    let shown = t.sh("ip route show 192.168.30.0/24");
    assert!(
        shown.contains("via 10.1.0.254 dev v0 proto static metric 200"),
        "{shown}"
    );
    assert!(
        shown.contains("via 10.2.0.254 dev w0 proto static metric 100"),
        "{shown}"
    );
    assert_eq!(
        t.h.route_get(ip("192.168.30.1")).await.unwrap().gateway,
        Some(ip("10.2.0.254"))
    );
    let metrics: Vec<_> =
        t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN))
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.dst == Some(dst))
            .map(|r| r.metric)
            .collect();
    assert!(
        metrics.contains(&Some(100)) && metrics.contains(&Some(200)),
        "{metrics:?}"
    );
    // Deleting by metric removes only that one.
    t.h.route_del(&Route::new(dst).metric(100)).await.unwrap();
    assert_eq!(
        t.h.route_get(ip("192.168.30.1")).await.unwrap().gateway,
        Some(ip("10.1.0.254"))
    );

    // Device route: link scope by default; explicit scope and protocol are kept.
    t.h.route_add(&Route::new(net("192.168.31.0/24")).dev("w0"))
        .await
        .unwrap();
    t.h.route_add(
        &Route::new(net("192.168.32.0/24"))
            .dev("w0")
            .scope(RouteScope::Universe)
            .protocol(protocol::DHCP),
    )
    .await
    .unwrap();
    t.h.route_add(&Route::new(net("192.168.33.0/24")).dev("w0").protocol(200))
        .await
        .unwrap();
    let listed = t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN)).await.unwrap();
    let get = |d: &str| listed.iter().find(|r| r.dst == Some(net(d))).unwrap();
    assert_eq!(get("192.168.31.0/24").scope, RouteScope::Link);
    assert_eq!(get("192.168.31.0/24").protocol, protocol::STATIC);
    assert_eq!(get("192.168.32.0/24").scope, RouteScope::Universe);
    assert_eq!(get("192.168.32.0/24").protocol, protocol::DHCP);
    assert_eq!(get("192.168.33.0/24").protocol, 200);
    let shown = t.sh("ip route show dev w0");
    assert!(shown.contains("192.168.31.0/24 proto static scope link"), "{shown}");
    assert!(shown.contains("192.168.32.0/24 proto dhcp"), "{shown}");
    assert!(!shown.contains("192.168.32.0/24 proto dhcp scope link"), "{shown}");
    assert!(shown.contains("192.168.33.0/24 proto 200"), "{shown}");
}

#[tokio::test]
async fn reject_routes() {
    let t = setup("rej").await;
    let cases = [
        ("10.60.0.0/16", RouteKind::Blackhole, "blackhole"),
        ("10.61.0.0/16", RouteKind::Unreachable, "unreachable"),
        ("10.62.0.0/16", RouteKind::Prohibit, "prohibit"),
        ("fd00:60::/48", RouteKind::Blackhole, "blackhole"),
        ("fd00:61::/48", RouteKind::Unreachable, "unreachable"),
        ("fd00:62::/48", RouteKind::Prohibit, "prohibit"),
    ];
    for (dst, kind, word) in cases {
        t.h.route_add(&Route::new(net(dst)).kind(kind)).await.unwrap();
        let shown = t.sh(&format!(
            "ip -{} route show {dst}",
            if dst.contains(':') { 6 } else { 4 }
        ));
        assert!(shown.starts_with(&format!("{word} {dst}")), "{dst}: {shown:?}");
        let fam = Some(IpFamily::of(net(dst).ip()));
        let r =
            t.h.route_list(fam, Some(TABLE_MAIN))
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.dst == Some(net(dst)))
                .unwrap();
        assert_eq!(r.kind, kind, "{dst}");
    }
    // Packets to them really are refused, and the kernel says why.
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", t.ns.name().unwrap(), "ping", "-c1", "-W1", "10.62.0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = t.h.route_get(ip("10.61.0.1")).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    let err = t.h.route_get(ip("10.62.0.1")).await.unwrap_err();
    assert_eq!(err.errno(), Some(libc::EACCES), "{err}");
    // A reject route with a device is refused before anything is sent.
    let err =
        t.h.route_add(&Route::new(net("10.63.0.0/16")).kind(RouteKind::Blackhole).dev("v0"))
            .await
            .unwrap_err();
    assert!(err.to_string().contains("blackhole"), "{err}");
    // Deleting without giving the type works, like `ip route del`.
    for (dst, _, _) in cases {
        t.h.route_del(&Route::new(net(dst))).await.unwrap();
        let shown = t.sh(&format!(
            "ip -{} route show {dst}",
            if dst.contains(':') { 6 } else { 4 }
        ));
        assert!(shown.trim().is_empty(), "{dst} still there: {shown}");
    }
}

#[tokio::test]
async fn local_route_in_table_local() {
    let t = setup("loc").await;
    t.h.route_add(
        &Route::new(net("10.70.0.1/32"))
            .kind(RouteKind::Local)
            .dev("lo")
            .table(netkit_core::route::TABLE_LOCAL),
    )
    .await
    .unwrap();
    let shown = t.sh("ip route show table local 10.70.0.1");
    assert!(
        shown.contains("local 10.70.0.1 dev lo") && shown.contains("scope host"),
        "{shown}"
    );
    let g = t.h.route_get(ip("10.70.0.1")).await.unwrap();
    assert_eq!(g.kind, RouteKind::Local);
    let r =
        t.h.route_list(Some(IpFamily::V4), Some(netkit_core::route::TABLE_LOCAL))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.dst == Some(net("10.70.0.1/32")))
            .unwrap();
    assert_eq!((r.kind, r.scope), (RouteKind::Local, RouteScope::Host));
    // The host now answers on that address.
    assert!(t.try_sh("ping -c1 -W1 10.70.0.1"));
}

#[tokio::test]
async fn mtu_and_prefsrc() {
    let t = setup("mtu").await;
    t.h.route_add(
        &Route::new(net("192.168.40.0/24"))
            .gateway(ip("10.1.0.254"))
            .mtu(1400)
            .prefsrc(ip("10.2.0.1")),
    )
    .await
    .unwrap();
    let shown = t.sh("ip route show 192.168.40.0/24");
    assert!(shown.contains("src 10.2.0.1") && shown.contains("mtu 1400"), "{shown}");
    let r =
        t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.dst == Some(net("192.168.40.0/24")))
            .unwrap();
    assert_eq!(r.mtu, Some(1400));
    assert_eq!(r.prefsrc, Some(ip("10.2.0.1")));
    let g = t.h.route_get(ip("192.168.40.9")).await.unwrap();
    assert_eq!(g.prefsrc, Some(ip("10.2.0.1")));
    assert_eq!(g.mtu, Some(1400));

    // IPv6 mtu too.
    t.h.route_add(&Route::new(net("fd00:40::/48")).dev("v0").mtu(1300))
        .await
        .unwrap();
    assert!(t.sh("ip -6 route show fd00:40::/48").contains("mtu 1300"));

    // A prefsrc that is not local is refused by the kernel, with context.
    let err =
        t.h.route_add(&Route::new(net("192.168.41.0/24")).dev("v0").prefsrc(ip("10.99.0.1")))
            .await
            .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EINVAL), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("add route 192.168.41.0/24") && text.contains("src 10.99.0.1"),
        "{text}"
    );
}

#[tokio::test]
async fn ecmp_multipath() {
    let t = setup("ecmp").await;
    let v0 = t.h.link_index("v0").await.unwrap();
    let w0 = t.h.link_index("w0").await.unwrap();
    t.h.route_add(
        &Route::new(net("192.168.50.0/24"))
            .nexthop(NextHop::new().gateway(ip("10.1.0.254")).dev("v0"))
            .nexthop(NextHop::new().gateway(ip("10.2.0.254")).dev_index(w0).weight(3)),
    )
    .await
    .unwrap();
    let shown = t.sh("ip route show 192.168.50.0/24");
    assert!(shown.contains("nexthop via 10.1.0.254 dev v0 weight 1"), "{shown}");
    assert!(shown.contains("nexthop via 10.2.0.254 dev w0 weight 3"), "{shown}");

    let r =
        t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.dst == Some(net("192.168.50.0/24")))
            .unwrap();
    assert_eq!(r.nexthops.len(), 2, "{r:?}");
    assert_eq!(r.gateway, None);
    assert_eq!(r.nexthops[0].gateway, Some(ip("10.1.0.254")));
    assert_eq!(r.nexthops[0].oif, v0);
    assert_eq!(r.nexthops[0].weight, 1);
    assert_eq!(r.nexthops[1].gateway, Some(ip("10.2.0.254")));
    assert_eq!(r.nexthops[1].oif, w0);
    assert_eq!(r.nexthops[1].weight, 3);

    // IPv6 multipath, with an onlink path.
    t.h.route_add(
        &Route::new(net("fd00:50::/48"))
            .nexthop(NextHop::new().gateway(ip("fd00:1::fe")).dev("v0"))
            .nexthop(NextHop::new().gateway(ip("fd00:2::fe")).dev("w0")),
    )
    .await
    .unwrap();
    let shown = t.sh("ip -6 route show fd00:50::/48");
    assert!(
        shown.contains("via fd00:1::fe dev v0") && shown.contains("via fd00:2::fe dev w0"),
        "{shown}"
    );
    let r6 =
        t.h.route_list(Some(IpFamily::V6), Some(TABLE_MAIN))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.dst == Some(net("fd00:50::/48")))
            .unwrap();
    assert_eq!(r6.nexthops.len(), 2, "{r6:?}");

    t.h.route_add(
        &Route::new(net("192.168.51.0/24"))
            .nexthop(NextHop::new().gateway(ip("172.31.0.1")).dev("v0").onlink())
            .nexthop(NextHop::new().gateway(ip("10.2.0.254")).dev("w0")),
    )
    .await
    .unwrap();
    let r =
        t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.dst == Some(net("192.168.51.0/24")))
            .unwrap();
    assert!(r.nexthops[0].onlink && !r.nexthops[1].onlink, "{r:?}");

    // Mixing nexthops with a route-level gateway is refused locally.
    let err =
        t.h.route_add(
            &Route::new(net("192.168.52.0/24"))
                .gateway(ip("10.1.0.254"))
                .nexthop(NextHop::new().gateway(ip("10.2.0.254"))),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, netkit_core::route::RouteError::Invalid { .. }), "{err}");
}

#[tokio::test]
async fn replace_changes_the_gateway() {
    let t = setup("repl").await;
    let w0 = t.h.link_index("w0").await.unwrap();
    let dst = net("192.168.60.0/24");
    // Replace creates when missing.
    t.h.route_replace(&Route::new(dst).gateway(ip("10.1.0.254")))
        .await
        .unwrap();
    t.h.route_replace(&Route::new(dst).gateway(ip("10.2.0.254")))
        .await
        .unwrap();
    let matching: Vec<_> =
        t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN))
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.dst == Some(dst))
            .collect();
    assert_eq!(matching.len(), 1, "{matching:?}");
    assert_eq!(matching[0].gateway, Some(ip("10.2.0.254")));
    let g = t.h.route_get(ip("192.168.60.1")).await.unwrap();
    assert_eq!(g.oif, Some(w0));
    assert!(t.sh("ip route show 192.168.60.0/24").contains("via 10.2.0.254 dev w0"));

    // IPv6 as well.
    let dst6 = net("fd00:60::/48");
    t.h.route_replace(&Route::new(dst6).gateway(ip("fd00:1::fe")))
        .await
        .unwrap();
    t.h.route_replace(&Route::new(dst6).gateway(ip("fd00:2::fe")))
        .await
        .unwrap();
    let shown = t.sh("ip -6 route show fd00:60::/48");
    assert!(
        shown.contains("via fd00:2::fe dev w0") && !shown.contains("fd00:1::fe"),
        "{shown}"
    );
}

#[tokio::test]
async fn add_twice_exists_delete_twice_ok() {
    let t = setup("twice").await;
    for r in [
        Route::new(net("192.168.70.0/24")).gateway(ip("10.1.0.254")).table(100),
        Route::new(net("fd00:70::/48")).gateway(ip("fd00:1::fe")).table(100),
    ] {
        t.h.route_add(&r).await.unwrap();
        let err = t.h.route_add(&r).await.unwrap_err();
        assert!(err.is_exists(), "{err}");
        let text = err.to_string();
        assert!(text.starts_with("add route"), "{text}");
        assert!(
            text.contains(&r.dst().to_string()) && text.contains("table 100"),
            "{text}"
        );
        assert!(text.contains(t.ns.name().unwrap()), "{text}");
        t.h.route_del(&r).await.unwrap();
        assert!(t.h.route_list(None, Some(100)).await.unwrap().is_empty());
        t.h.route_del(&r).await.unwrap();
    }
    // A missing device is a not-found error on add, and nothing to do on delete.
    let r = Route::new(net("192.168.71.0/24")).dev("nope0");
    let err = t.h.route_add(&r).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("nope0"), "{err}");
    t.h.route_del(&r).await.unwrap();
}

#[tokio::test]
async fn routes_carry_real_traffic() {
    // a (10.80.1.1) -- veth -- b (router) -- veth -- c (10.80.2.2):
    // a and c only know each other through routes added with netkit.
    let a = TestNs::new("ra").await;
    let b = TestNs::new("rb").await;
    let c = TestNs::new("rc").await;
    a.h.link_add(&Veth::new("eth0", "ba").peer_netns(&b.ns).up())
        .await
        .unwrap();
    c.h.link_add(&Veth::new("eth0", "bc").peer_netns(&b.ns).up())
        .await
        .unwrap();
    b.h.link_set_up("ba").await.unwrap();
    b.h.link_set_up("bc").await.unwrap();
    a.h.addr_add("eth0", net("10.80.1.1/24")).await.unwrap();
    b.h.addr_add("ba", net("10.80.1.254/24")).await.unwrap();
    b.h.addr_add("bc", net("10.80.2.254/24")).await.unwrap();
    c.h.addr_add("eth0", net("10.80.2.2/24")).await.unwrap();
    b.sh("sysctl -qw net.ipv4.ip_forward=1");

    assert!(!a.try_sh("ping -c1 -W1 10.80.2.2"), "reachable before any route");
    a.h.route_add(&Route::default_v4().gateway(ip("10.80.1.254")))
        .await
        .unwrap();
    // c gets a specific route, through an onlink gateway on its device.
    c.h.route_add(
        &Route::new(net("10.80.1.0/24"))
            .gateway(ip("10.80.2.254"))
            .dev("eth0")
            .onlink(),
    )
    .await
    .unwrap();
    assert!(a.try_sh("ping -c1 -W1 10.80.2.2"), "routed ping failed");
    // A blackhole in the router cuts it.
    b.h.route_add(&Route::new(net("10.80.2.2/32")).kind(RouteKind::Blackhole))
        .await
        .unwrap();
    assert!(!a.try_sh("ping -c1 -W1 10.80.2.2"), "blackhole did not drop");
}

/// IPv6 routes carry the router preference `ip -6 route` prints (`pref medium`); IPv4 routes
/// none.
#[tokio::test]
async fn ipv6_route_preference() {
    let t = setup("rpref").await;
    t.h.route_add(&Route::new(net("fd00:9::/64")).gateway(ip("fd00:1::fe")))
        .await
        .unwrap();
    let shown = netkit_test_support::cmd::ipj_list(t.name(), &["-6", "route", "show"]);
    let routes = t.h.route_list(Some(IpFamily::V6), Some(TABLE_MAIN)).await.unwrap();
    let r = routes
        .iter()
        .find(|r| r.destination() == net("fd00:9::/64"))
        .expect("the route is listed");
    assert_eq!(r.pref, Some(0));
    assert_eq!(r.pref_name().as_deref(), Some("medium"));
    let ip = shown.iter().find(|j| j["dst"] == "fd00:9::/64").expect("ip lists it");
    assert_eq!(r.pref_name().as_deref(), ip["pref"].as_str());
    let v4 = t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN)).await.unwrap();
    assert!(v4.iter().all(|r| r.pref.is_none() && r.pref_name().is_none()));
}

/// A route whose device has no carrier is flagged `linkdown`, as `ip route` shows it; with
/// carrier it is not.
#[tokio::test]
async fn linkdown_flag_follows_the_carrier() {
    let t = TestNs::new("rldown").await;
    t.h.link_add(&Veth::new("d0", "d1").up()).await.unwrap();
    t.h.addr_add("d0", net("10.3.0.1/24")).await.unwrap();
    let prefix = async || {
        t.h.route_list(Some(IpFamily::V4), Some(TABLE_MAIN))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.destination() == net("10.3.0.0/24"))
            .expect("the prefix route")
    };
    // d1 is down: d0 has no carrier.
    let r = prefix().await;
    assert!(r.linkdown && !r.dead, "{r:?}");
    assert!(t.sh("ip route show 10.3.0.0/24").contains("linkdown"));
    t.h.link_set_up("d1").await.unwrap();
    // The kernel clears the flag when it handles the carrier change (linkwatch, asynchronous).
    netkit_test_support::wait_until_async(std::time::Duration::from_secs(10), "linkdown cleared", async || {
        !prefix().await.linkdown
    })
    .await;
    assert!(!t.sh("ip route show 10.3.0.0/24").contains("linkdown"));
}
