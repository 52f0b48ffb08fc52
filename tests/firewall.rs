//! The firewall (netkit_core::firewall) end to end, with real traffic between private
//! namespaces: a "host" H with container bridges, "containers" behind them and an "outside"
//! namespace O that only NAT lets reach the containers (see `netkit_tests::fwlab`).
//!
//! Every scenario is written once and run with each driver: `<scenario>::nftables` and
//! `<scenario>::iptables` (run one driver with `cargo test --test firewall nftables`).
//! Run as root; nothing outside the test's own namespaces is touched.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netkit_core::firewall::{
    AnyFirewall, Driver, Endpoint, Firewall, FirewallError, Isolation, Masquerade, Network, PortMapping, Protocol,
    Rules, Service, TrafficPolicy, MAX_PORT_RANGE,
};
use netkit_core::NetNs;
use netkit_examples::probe::{ping, ping_retry};
use netkit_test_support::lit::ip;
use netkit_test_support::{report_skip, tempdir};
use netkit_tests::fwlab::dump::{self, mapping_entries, ruleset, ruleset_plain, service_snapshot};
use netkit_tests::fwlab::echo::{
    self, sctp, tally, tcp, tcp_many, tcp_refused, tcp_server, udp, udp_refused, udp_server,
};
use netkit_tests::fwlab::{
    cip, cip6, sa, subnet, subnet1, subnet6, Lab, LabSpec, BR0, BR1, D1, EXT, EXT2, EXT6, GW, GW6, OUT, OUT6,
    REMOTE_EP, RLINK,
};

/// One `#[tokio::test]` per driver for each scenario `async fn NAME(driver, test_name)`:
/// `NAME::nftables` and `NAME::iptables`.
macro_rules! per_driver {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use netkit_core::firewall::Driver;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nftables() {
                super::$scenario(Driver::Nftables, concat!(stringify!($scenario), "::nftables")).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn iptables() {
                super::$scenario(Driver::Iptables, concat!(stringify!($scenario), "::iptables")).await
            }
        }
    )*};
}

per_driver!(
    port_mapping_tcp,
    port_mapping_udp,
    port_mapping_sctp,
    port_mapping_ipv6,
    cluster_ip,
    service_affinity,
    no_endpoints_reject,
    external_traffic_policy,
    masquerade,
    masquerade_source_conflict,
    shared_masquerade_is_reasserted,
    isolation,
    teardown_restores_ruleset,
    gc_removes_exactly_the_others,
    reconcile_after_flush,
    network_shared_by_two_owners,
    concurrent_processes,
    bad_input_is_refused_and_changes_nothing,
    bad_input_overlap_same_owner,
    state_dirs_never_share_kernel_objects,
    services_in_one_transaction,
    endpoint_changes,
);

const ANY4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const ANY6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn mappings(m: Vec<PortMapping>) -> Rules {
    Rules {
        port_mappings: m,
        ..Default::default()
    }
}

fn tcp_map(host_port: u16, ip: IpAddr, port: u16) -> PortMapping {
    PortMapping::new(Protocol::Tcp, host_port, ip, port)
}

// ---------------------------------------------------------------------------------------------
// 1. Port mappings
// ---------------------------------------------------------------------------------------------

/// Host port 8080 -> C1:80 from outside, from another container and from C1 itself (hairpin,
/// both host addresses) and from the host itself (127.0.0.1, masqueraded to the bridge address,
/// and its own address); a host-IP-specific mapping; a range.
async fn port_mapping_tcp(d: Driver, _test: &str) {
    let lab = Lab::build("pmt", LabSpec::containers(3)).await;
    let _c1 = tcp_server(lab.c(1), "C1", sa(ANY4, 80)).await;
    let _c2 = tcp_server(lab.c(2), "C2", sa(ANY4, 80)).await;
    let mut _c3 = Vec::new();
    for p in 7000..7005 {
        _c3.push(tcp_server(lab.c(3), "C3", sa(ANY4, p)).await);
    }
    let fw = lab.firewall(d).await;
    let o = &lab.outside;

    assert!(
        tcp(o, sa(EXT, 8080)).await.is_err(),
        "nothing is mapped yet, yet O reached 192.0.2.1:8080"
    );
    let c1_rules = Rules {
        networks: vec![lab.network()],
        port_mappings: vec![tcp_map(8080, cip(1), 80)],
        ..Default::default()
    };
    fw.add("c1:eth0", &c1_rules).await.expect("add C1's mapping");

    let h = tcp(o, sa(EXT, 8080)).await.expect("O -> 192.0.2.1:8080");
    assert_eq!(h.name, "C1");
    assert_eq!(
        h.peer.ip(),
        OUT,
        "an outside client's address reaches the container unchanged"
    );
    for (who, c) in [("C2", 2), ("C1", 1)] {
        for dst in [GW, EXT] {
            let h = tcp(lab.c(c), sa(dst, 8080))
                .await
                .unwrap_or_else(|e| panic!("hairpin {who} -> {dst}:8080: {e}"));
            assert_eq!(h.name, "C1", "hairpin {who} -> {dst}:8080");
            assert_eq!(
                h.peer.ip(),
                GW,
                "hairpin {who} -> {dst}:8080 is masqueraded to the bridge address"
            );
        }
    }
    for dst in [LOCALHOST, EXT] {
        let h = tcp(&lab.host, sa(dst, 8080))
            .await
            .unwrap_or_else(|e| panic!("H -> {dst}:8080: {e}"));
        assert_eq!(h.name, "C1", "H -> {dst}:8080");
        if dst == LOCALHOST {
            assert_eq!(
                h.peer.ip(),
                GW,
                "H -> 127.0.0.1:8080 is masqueraded to the bridge address"
            );
        }
    }

    // Only on 192.0.2.1, not on H's other address.
    fw.add("c2:eth0", &mappings(vec![tcp_map(8081, cip(2), 80).host_ip(EXT)]))
        .await
        .expect("add the host-IP-specific mapping");
    let h = tcp(o, sa(EXT, 8081)).await.expect("O -> 192.0.2.1:8081");
    assert_eq!(h.name, "C2");
    assert!(
        tcp(o, sa(EXT2, 8081)).await.is_err(),
        "a mapping on 192.0.2.1 answered on 192.0.2.3"
    );

    // A range maps port by port.
    fw.add("c3:eth0", &mappings(vec![tcp_map(9000, cip(3), 7000).range_end(9004)]))
        .await
        .expect("add the range");
    for i in 0..5u16 {
        let h = tcp(o, sa(EXT, 9000 + i))
            .await
            .unwrap_or_else(|e| panic!("O -> 192.0.2.1:{}: {e}", 9000 + i));
        assert_eq!(
            (h.name.as_str(), h.local.port()),
            ("C3", 7000 + i),
            "host port {} maps to container port {}",
            9000 + i,
            7000 + i
        );
    }
    assert!(tcp(o, sa(EXT, 9005)).await.is_err(), "the range ends at 9004");

    // Teardown takes C1's port only.
    assert_eq!(fw.teardown("c1:eth0").await.expect("teardown"), c1_rules);
    assert!(
        tcp(o, sa(EXT, 8080)).await.is_err(),
        "8080 still answers after teardown"
    );
    assert_eq!(
        tcp(o, sa(EXT, 8081)).await.expect("8081 after C1's teardown").name,
        "C2"
    );
    assert_eq!(
        tcp(o, sa(EXT, 9002)).await.expect("9002 after C1's teardown").name,
        "C3"
    );
}

/// UDP host port 5353 -> C1:53 from outside.
async fn port_mapping_udp(d: Driver, _test: &str) {
    let lab = Lab::build("pmu", LabSpec::containers(1)).await;
    let _c1 = udp_server(lab.c(1), "C1", sa(ANY4, 53)).await;
    let fw = lab.firewall(d).await;
    let o = &lab.outside;
    assert!(udp(o, sa(EXT, 5353)).await.is_err(), "nothing is mapped yet");
    let m = PortMapping::new(Protocol::Udp, 5353, cip(1), 53);
    fw.add("c1:eth0", &mappings(vec![m])).await.expect("add UDP mapping");
    let h = udp(o, sa(EXT, 5353)).await.expect("O -> udp 192.0.2.1:5353");
    assert_eq!((h.name.as_str(), h.peer.ip()), ("C1", OUT));
    // A TCP mapping of the same number is another mapping: nothing answers there.
    assert!(tcp(o, sa(EXT, 5353)).await.is_err(), "UDP mapping answered TCP");
    fw.teardown("c1:eth0").await.expect("teardown");
    assert!(
        udp(o, sa(EXT, 5353)).await.is_err(),
        "UDP 5353 still mapped after teardown"
    );
}

/// SCTP host port 8132 -> C1:132 from outside, when the kernel has SCTP sockets (the mapping
/// itself is added and checked in the ruleset either way).
async fn port_mapping_sctp(d: Driver, test: &str) {
    let lab = Lab::build("pms", LabSpec::containers(1)).await;
    let fw = lab.firewall(d).await;
    let m = PortMapping::new(Protocol::Sctp, 8132, cip(1), 132);
    fw.add("c1:eth0", &mappings(vec![m])).await.expect("add SCTP mapping");
    let rs = ruleset_plain(&lab.host, d);
    assert_eq!(
        mapping_entries(&rs, d, 8132),
        1,
        "the SCTP mapping in the ruleset:\n{rs}"
    );
    if !(sctp::supported(lab.c(1)).await && sctp::supported(&lab.outside).await) {
        report_skip(
            test,
            "no SCTP sockets in this kernel (socket(IPPROTO_SCTP): protocol not supported); \
             the mapping was added and found in the ruleset, no SCTP traffic was sent",
        );
        return;
    }
    let _c1 = sctp::server(lab.c(1), "C1", sa(ANY4, 132)).await;
    let h = sctp::hello(&lab.outside, sa(EXT, 8132))
        .await
        .expect("O -> sctp 192.0.2.1:8132");
    assert_eq!((h.name.as_str(), h.peer.ip()), ("C1", OUT));
    fw.teardown("c1:eth0").await.expect("teardown");
    assert!(sctp::hello(&lab.outside, sa(EXT, 8132)).await.is_err());
}

/// An IPv6 mapping [::]:8080 -> [fd88::2]:80 from outside and hairpin; IPv4 8080 stays unmapped.
async fn port_mapping_ipv6(d: Driver, _test: &str) {
    let lab = Lab::build(
        "pm6",
        LabSpec {
            containers: 2,
            ipv6: true,
            ..Default::default()
        },
    )
    .await;
    let _c1 = tcp_server(lab.c(1), "C1", sa(ANY6, 80)).await;
    let fw = lab.firewall(d).await;
    let o = &lab.outside;
    assert!(tcp(o, sa(EXT6, 8080)).await.is_err(), "nothing is mapped yet");
    let rules = Rules {
        networks: vec![Network::new(BR0, subnet6())],
        port_mappings: vec![tcp_map(8080, cip6(1), 80)],
        ..Default::default()
    };
    fw.add("c1:eth0", &rules).await.expect("add IPv6 mapping");
    let h = tcp(o, sa(EXT6, 8080)).await.expect("O -> [2001:db8::1]:8080");
    assert_eq!((h.name.as_str(), h.peer.ip()), ("C1", OUT6));
    let h = tcp(lab.c(2), sa(GW6, 8080))
        .await
        .expect("hairpin C2 -> [fd88::1]:8080");
    assert_eq!(
        (h.name.as_str(), h.peer.ip()),
        ("C1", GW6),
        "IPv6 hairpin is masqueraded"
    );
    assert!(tcp(o, sa(EXT, 8080)).await.is_err(), "an IPv6 mapping answered on IPv4");
    fw.teardown("c1:eth0").await.expect("teardown");
    assert!(tcp(o, sa(EXT6, 8080)).await.is_err(), "still mapped after teardown");
}

// ---------------------------------------------------------------------------------------------
// 2. Services
// ---------------------------------------------------------------------------------------------

const VIP: &str = "10.96.0.10";
const VIP2: &str = "10.96.0.11";
const VIP3: &str = "10.96.0.12";
const VIP4: &str = "10.96.0.13";

fn three_endpoints(svc: Service) -> Service {
    (1..=3).fold(svc, |s, i| s.endpoint(Endpoint::new(cip(i), 80)))
}

async fn echo_containers(lab: &Lab, n: usize) -> Vec<echo::Server> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.push(tcp_server(lab.c(i), &format!("C{i}"), sa(ANY4, 80)).await);
    }
    out
}

fn share_check(counts: &std::collections::BTreeMap<String, usize>, total: usize, names: &[&str]) {
    let seen: Vec<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(seen, names, "endpoints reached: {counts:?}");
    for (name, n) in counts {
        let pct = 100.0 * *n as f64 / total as f64;
        assert!(
            (20.0..=46.0).contains(&pct),
            "{name} got {n} of {total} connections ({pct:.0}%), outside 20-46%: {counts:?}"
        );
    }
}

/// A ClusterIP spread over three endpoints; one endpoint removed; another service untouched by
/// that; NodePort from outside; a masquerading service reached from its own endpoints' network;
/// a service without masquerade keeps an outside client's address, and is masqueraded when its
/// endpoint reaches itself through it.
async fn cluster_ip(d: Driver, _test: &str) {
    let lab = Lab::build("cip", LabSpec::containers(3)).await;
    let _servers = echo_containers(&lab, 3).await;
    lab.outside_route("10.96.0.0/16").await;
    let fw = lab.firewall(d).await;
    let (h, o) = (&lab.host, &lab.outside);
    assert!(
        tcp(h, sa(ip(VIP), 80)).await.is_err(),
        "no service yet, yet the VIP answered"
    );

    let web = three_endpoints(Service::new("default/web", Protocol::Tcp, ip(VIP), 80).node_port(30080));
    let web2 = Service::new("default/web2", Protocol::Tcp, ip(VIP2), 80)
        .masquerade(true)
        .endpoint(Endpoint::new(cip(1), 80))
        .endpoint(Endpoint::new(cip(2), 80));
    let solo = Service::new("default/solo", Protocol::Tcp, ip(VIP4), 80).endpoint(Endpoint::new(cip(1), 80));
    for (owner, svc) in [
        ("svc/default/web", &web),
        ("svc/default/web2", &web2),
        ("svc/default/solo", &solo),
    ] {
        let rules = Rules {
            services: vec![svc.clone()],
            ..Default::default()
        };
        fw.add(owner, &rules)
            .await
            .unwrap_or_else(|e| panic!("add {owner}: {e}"));
    }

    let counts = tally(&tcp_many(h, sa(ip(VIP), 80), 300).await);
    share_check(&counts, 300, &["C1", "C2", "C3"]);
    let from_o = tally(&tcp_many(o, sa(ip(VIP), 80), 30).await);
    assert!(
        from_o.len() >= 2,
        "30 connections from O all hit one endpoint: {from_o:?}"
    );
    let node_port = tally(&tcp_many(o, sa(EXT, 30080), 30).await);
    assert!(
        node_port.len() >= 2,
        "30 NodePort connections from O all hit one endpoint: {node_port:?}"
    );
    // web2 masquerades: C1 reaches it whether the pick is C1 itself or its neighbour C2.
    let inside = tcp_many(lab.c(1), sa(ip(VIP2), 80), 30).await;
    let names = tally(&inside);
    assert_eq!(
        names.keys().map(String::as_str).collect::<Vec<_>>(),
        ["C1", "C2"],
        "C1 -> web2: {names:?}"
    );
    for a in inside.iter().flatten() {
        assert_eq!(a.peer.ip(), GW, "web2 (masquerade) is reached from the bridge address");
    }
    // solo does not masquerade: O's address reaches C1 unchanged; C1 reaching itself through
    // it is masqueraded all the same (else its own reply would never go back through H).
    let got = tcp(o, sa(ip(VIP4), 80)).await.expect("O -> solo");
    assert_eq!(
        (got.name.as_str(), got.peer.ip()),
        ("C1", OUT),
        "O -> solo keeps O's address"
    );
    let got = tcp(lab.c(1), sa(ip(VIP4), 80)).await.expect("C1 -> solo (itself)");
    assert_eq!(
        (got.name.as_str(), got.peer.ip()),
        ("C1", GW),
        "C1 -> solo -> C1 is masqueraded"
    );

    let web2_before = service_snapshot(h, d, VIP2);
    assert!(!web2_before.is_empty(), "found nothing of web2 in the ruleset");
    fw.remove_endpoint("default/web", Endpoint::new(cip(3), 80))
        .await
        .expect("remove C3 from web");
    let after = tally(&tcp_many(h, sa(ip(VIP), 80), 100).await);
    assert!(
        !after.contains_key("C3"),
        "a removed endpoint was still reached: {after:?}"
    );
    assert_eq!(after.len(), 2, "100 connections after the removal: {after:?}");
    let node_port = tally(&tcp_many(o, sa(EXT, 30080), 20).await);
    assert!(
        !node_port.contains_key("C3"),
        "NodePort still reached C3: {node_port:?}"
    );
    assert_eq!(
        service_snapshot(h, d, VIP2),
        web2_before,
        "removing an endpoint of web touched web2"
    );
    let web2_now = tally(&tcp_many(h, sa(ip(VIP2), 80), 20).await);
    assert!(web2_now.keys().all(|n| n == "C1" || n == "C2"), "{web2_now:?}");
    let held = fw.rules("svc/default/web").await.expect("rules");
    assert_eq!(
        held.services[0].endpoints.len(),
        2,
        "the state keeps the removal: {held:?}"
    );
}

/// Client-IP affinity: every connection of one client hits one endpoint, also after another
/// owner's change rewrote the ruleset (iptables: the `recent` lists of the endpoints are kept
/// as they were); without it, the same service spreads.
async fn service_affinity(d: Driver, _test: &str) {
    let lab = Lab::build("aff", LabSpec::containers(3)).await;
    let _servers = echo_containers(&lab, 3).await;
    lab.outside_route("10.96.0.0/16").await;
    let fw = lab.firewall(d).await;
    let sticky =
        three_endpoints(Service::new("default/sticky", Protocol::Tcp, ip(VIP3), 80)).affinity(Duration::from_secs(60));
    fw.add(
        "svc/default/sticky",
        &Rules {
            services: vec![sticky.clone()],
            ..Default::default()
        },
    )
    .await
    .expect("add sticky service");
    let mut stuck = Vec::new();
    for (who, ns) in [("H", &*lab.host), ("O", &*lab.outside)] {
        let counts = tally(&tcp_many(ns, sa(ip(VIP3), 80), 50).await);
        assert_eq!(counts.len(), 1, "50 connections from {who} with affinity: {counts:?}");
        stuck.push(counts);
    }
    // Both clients are remembered (iptables: in the `recent` lists of the endpoint chains).
    let recent = (d == Driver::Iptables).then(|| {
        let lists = affinity_lists(&lab.host, VIP3);
        for src in [EXT, OUT] {
            assert!(lists.contains(&format!("src={src} ")), "{src} not remembered:\n{lists}");
        }
        lists
    });
    // Another owner's change (the iptables driver rewrites every chain) forgets no client.
    let other = mappings(vec![PortMapping::new(Protocol::Udp, 9999, cip(3), 53)]);
    fw.add("other", &other).await.expect("another owner's mapping");
    if let Some(before) = &recent {
        assert_eq!(&affinity_lists(&lab.host, VIP3), before, "the affinity lists changed");
    }
    for ((who, ns), before) in [("H", &*lab.host), ("O", &*lab.outside)].into_iter().zip(&stuck) {
        let counts = tally(&tcp_many(ns, sa(ip(VIP3), 80), 20).await);
        assert_eq!(
            counts.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "{who}'s endpoint after another owner's change"
        );
    }
    fw.teardown("other").await.expect("teardown of the other owner");
    // The same service without affinity (replaces it: same owner, same name) spreads.
    let mut loose = sticky;
    loose.affinity = None;
    fw.add(
        "svc/default/sticky",
        &Rules {
            services: vec![loose],
            ..Default::default()
        },
    )
    .await
    .expect("replace with a service without affinity");
    let counts = tally(&tcp_many(&lab.host, sa(ip(VIP3), 80), 50).await);
    assert!(
        counts.len() >= 2,
        "without affinity 50 connections hit one endpoint: {counts:?}"
    );
}

/// An external IP of services (LoadBalancer address): not H's, O routes it through H.
const EXTIP: &str = "203.0.113.80";

/// A refusal comes at once (a reset or an ICMP error), not after a timeout.
const QUICK: Duration = Duration::from_secs(1);

fn assert_refused(got: Result<Duration, String>, what: &str) {
    match got {
        Ok(t) => assert!(t < QUICK, "{what}: refused, but only after {t:?}"),
        Err(e) => panic!("{what}: {e}"),
    }
}

fn one_service(svc: &Service) -> Rules {
    Rules {
        services: vec![svc.clone()],
        ..Default::default()
    }
}

/// Services without endpoints refuse connections to their address, external IP and node port
/// (TCP: ECONNREFUSED, UDP: a connected socket's recv gets ECONNREFUSED), from a pod (D1 on
/// the second bridge), from outside (O) and from the node itself (H); with an endpoint they
/// answer; without it again they refuse again.
async fn no_endpoints_reject(d: Driver, _test: &str) {
    let spec = LabSpec {
        containers: 1,
        second_bridge: true,
        ipv6: false,
    };
    let lab = Lab::build("rej", spec).await;
    let _web = tcp_server(lab.c(1), "C1", sa(ANY4, 80)).await;
    let _dns = udp_server(lab.c(1), "C1", sa(ANY4, 53)).await;
    lab.outside_route("10.96.0.0/16").await;
    lab.outside_route(&format!("{EXTIP}/32")).await;
    let fw = lab.firewall(d).await;
    // O routes the service addresses through H, and H its default back through O. The
    // iptables driver refuses in FORWARD, after routing: H would send O redirects, and each
    // redirect to O restarts the kernel's ICMP rate limit towards O (a redirect and an ICMP
    // error share it), so the port unreachable would not be sent. (nftables refuses in
    // prerouting, before routing, and needs none of this.)
    lab.hh
        .sysctl_set_many(&[
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.ext0.send_redirects", "0"),
        ])
        .await
        .expect("no redirects from H");
    let web = Service::new("default/web", Protocol::Tcp, ip(VIP), 80)
        .node_port(30080)
        .external_ip(ip(EXTIP));
    let dns = Service::new("default/dns", Protocol::Udp, ip(VIP2), 53)
        .node_port(30053)
        .external_ip(ip(EXTIP));
    fw.add("svc/default/web", &one_service(&web)).await.expect("add web");
    fw.add("svc/default/dns", &one_service(&dns)).await.expect("add dns");
    let clients = [("pod D1", lab.d1()), ("O", &*lab.outside), ("H", &*lab.host)];
    let tcp_targets = [sa(ip(VIP), 80), sa(ip(EXTIP), 80), sa(EXT, 30080)];
    let udp_targets = [sa(ip(VIP2), 53), sa(ip(EXTIP), 53), sa(EXT, 30053)];
    let refused_everywhere = async || {
        for (who, ns) in clients {
            for t in tcp_targets {
                assert_refused(tcp_refused(ns, t).await, &format!("{who} -> tcp {t}"));
            }
            for t in udp_targets {
                assert_refused(udp_refused(ns, t).await, &format!("{who} -> udp {t}"));
            }
        }
    };
    refused_everywhere().await;

    // An endpoint each: every address answers (C1).
    fw.add_endpoint("default/web", Endpoint::new(cip(1), 80))
        .await
        .expect("add web's endpoint");
    fw.add_endpoint("default/dns", Endpoint::new(cip(1), 53))
        .await
        .expect("add dns's endpoint");
    for (who, ns) in clients {
        for t in tcp_targets {
            let got = tcp(ns, t).await.unwrap_or_else(|e| panic!("{who} -> tcp {t}: {e}"));
            assert_eq!(got.name, "C1", "{who} -> tcp {t}");
        }
        for t in udp_targets {
            let got = udp(ns, t).await.unwrap_or_else(|e| panic!("{who} -> udp {t}: {e}"));
            assert_eq!(got.name, "C1", "{who} -> udp {t}");
        }
    }

    // The last endpoint gone: refused again.
    fw.remove_endpoint("default/web", Endpoint::new(cip(1), 80))
        .await
        .expect("remove web's endpoint");
    fw.remove_endpoint("default/dns", Endpoint::new(cip(1), 53))
        .await
        .expect("remove dns's endpoint");
    refused_everywhere().await;
    fw.teardown("svc/default/web").await.expect("teardown web");
    fw.teardown("svc/default/dns").await.expect("teardown dns");
}

/// `n` connections from `ns` to `addr`: which endpoints answered, and the source address each
/// saw (every connection must succeed).
async fn reached(
    ns: &NetNs,
    addr: std::net::SocketAddr,
    n: usize,
) -> std::collections::BTreeMap<String, BTreeSet<IpAddr>> {
    let mut out: std::collections::BTreeMap<String, BTreeSet<IpAddr>> = Default::default();
    for (i, a) in tcp_many(ns, addr, n).await.into_iter().enumerate() {
        let h = a.unwrap_or_else(|e| panic!("connection {i} of {n} to {addr} failed: {e}"));
        out.entry(h.name).or_default().insert(h.peer.ip());
    }
    out
}

fn seen(pairs: &[(&str, IpAddr)]) -> std::collections::BTreeMap<String, BTreeSet<IpAddr>> {
    pairs
        .iter()
        .map(|(n, ip)| (n.to_string(), BTreeSet::from([*ip])))
        .collect()
}

/// External traffic policies with one local endpoint (C1) and one on another node (R, routed
/// through H): node port and external IP reached from O go to C1 only with O's own address
/// (Local), to both masqueraded to H's address on the way (Cluster), to both with O's address
/// (no policy); the ClusterIP from a pod (D1) reaches both with D1's address whatever the
/// policy; affinity holds on both paths; Local without a local endpoint drops.
async fn external_traffic_policy(d: Driver, _test: &str) {
    let spec = LabSpec {
        containers: 1,
        second_bridge: true,
        ipv6: false,
    };
    let lab = Lab::build("etp", spec).await;
    let remote = lab.remote_node().await;
    let _servers = (
        tcp_server(lab.c(1), "C1", sa(ANY4, 80)).await,
        tcp_server(&remote, "R", sa(ANY4, 80)).await,
    );
    lab.outside_route(&format!("{EXTIP}/32")).await;
    let fw = lab.firewall(d).await;
    let (o, pod) = (&*lab.outside, lab.d1());
    let base = Service::new("default/web", Protocol::Tcp, ip(VIP), 80)
        .node_port(30080)
        .external_ip(ip(EXTIP))
        .endpoint(Endpoint::new(cip(1), 80).local(true))
        .endpoint(Endpoint::new(REMOTE_EP, 80));
    let external = [sa(EXT, 30080), sa(ip(EXTIP), 80)];
    let owner = "svc/default/web";
    let cluster_ip_keeps_the_pod = async || {
        assert_eq!(
            reached(pod, sa(ip(VIP), 80), 30).await,
            seen(&[("C1", D1), ("R", D1)]),
            "pod D1 -> ClusterIP"
        );
    };

    fw.add(owner, &one_service(&base.clone().external_policy(TrafficPolicy::Local)))
        .await
        .expect("add Local");
    for t in external {
        assert_eq!(reached(o, t, 20).await, seen(&[("C1", OUT)]), "Local: O -> {t}");
    }
    cluster_ip_keeps_the_pod().await;

    fw.add(
        owner,
        &one_service(&base.clone().external_policy(TrafficPolicy::Cluster)),
    )
    .await
    .expect("add Cluster");
    for t in external {
        assert_eq!(
            reached(o, t, 30).await,
            seen(&[("C1", GW), ("R", RLINK)]),
            "Cluster: O -> {t} (masqueraded)"
        );
    }
    cluster_ip_keeps_the_pod().await;

    // No policy: as the ClusterIP (no masquerade; R answers through H all the same).
    fw.add(owner, &one_service(&base)).await.expect("add without policy");
    for t in external {
        assert_eq!(
            reached(o, t, 30).await,
            seen(&[("C1", OUT), ("R", OUT)]),
            "None: O -> {t}"
        );
    }

    // Affinity on both paths: Cluster sticks O to one endpoint, node port and external IP
    // alike; Local still only to C1.
    let sticky = base.clone().affinity(Duration::from_secs(60));
    fw.add(
        owner,
        &one_service(&sticky.clone().external_policy(TrafficPolicy::Cluster)),
    )
    .await
    .expect("add Cluster with affinity");
    let first = reached(o, external[0], 20).await;
    assert_eq!(first.len(), 1, "Cluster with affinity: {first:?}");
    assert_eq!(
        reached(o, external[1], 20).await,
        first,
        "the external IP keeps O's endpoint"
    );
    fw.add(
        owner,
        &one_service(&sticky.clone().external_policy(TrafficPolicy::Local)),
    )
    .await
    .expect("add Local with affinity");
    for t in external {
        assert_eq!(
            reached(o, t, 10).await,
            seen(&[("C1", OUT)]),
            "Local with affinity: O -> {t}"
        );
    }

    // Local, the local endpoint no longer local: node port and external IP drop (a timeout,
    // not a refusal); the ClusterIP still reaches both.
    fw.add(owner, &one_service(&base.clone().external_policy(TrafficPolicy::Local)))
        .await
        .expect("add Local without affinity");
    fw.add_endpoint("default/web", Endpoint::new(cip(1), 80))
        .await
        .expect("C1 no longer local");
    let held = fw.rules(owner).await.expect("rules");
    assert_eq!(held.services[0].endpoints.len(), 2, "replaced, not added: {held:?}");
    for t in external {
        let got = tcp_refused(o, t).await;
        let e = got.expect_err("dropped, not refused");
        assert!(e.contains("timed out"), "Local without local endpoint: O -> {t}: {e}");
    }
    cluster_ip_keeps_the_pod().await;
    // And the pod's source is kept on the ClusterIP, reached from H too.
    let from_h = reached(&lab.host, sa(ip(VIP), 80), 20).await;
    assert!(
        from_h.keys().all(|n| n == "C1" || n == "R"),
        "H -> ClusterIP: {from_h:?}"
    );
    fw.teardown(owner).await.expect("teardown");
}

/// The iptables driver's affinity lists (`/proc/net/xt_recent`) of the service at `vip`, all
/// endpoints', as `cat` shows them.
fn affinity_lists(host: &NetNs, vip: &str) -> String {
    let rs = ruleset_plain(host, Driver::Iptables);
    let svc = rs
        .lines()
        .filter(|l| l.starts_with("ip4 -A NETKIT-SERVICES ") && l.contains(&format!("-d {vip}/32 ")))
        .find_map(|l| l.rsplit(' ').next().filter(|t| t.starts_with("NETKIT-SVC-")))
        .unwrap_or_else(|| panic!("no service chain for {vip}:\n{rs}"))
        .to_string();
    let lists = svc.replace("-SVC-", "-SEP-");
    netkit_test_support::sh(host, &format!("cat /proc/net/xt_recent/{lists}-*"))
}

// ---------------------------------------------------------------------------------------------
// 3. Masquerade
// ---------------------------------------------------------------------------------------------

/// C1 -> O is masqueraded to 192.0.2.1; without it O cannot answer; C1 -> C2 keeps its source;
/// another container is not masqueraded by C1's entry.
async fn masquerade(d: Driver, _test: &str) {
    let lab = Lab::build("msq", LabSpec::containers(2)).await;
    let _o = tcp_server(&lab.outside, "O", sa(ANY4, 7777)).await;
    let _c2 = tcp_server(lab.c(2), "C2", sa(ANY4, 80)).await;
    let fw = lab.firewall(d).await;
    let out = sa(OUT, 7777);
    assert!(
        tcp(lab.c(1), out).await.is_err(),
        "C1 reached O without masquerade (O has no route back to 10.88.0.0/24)"
    );
    let rules = Rules {
        masquerades: vec![Masquerade::address(cip(1), subnet())],
        ..Default::default()
    };
    fw.add("c1:eth0", &rules).await.expect("add masquerade");
    let h = tcp(lab.c(1), out).await.expect("C1 -> O with masquerade");
    assert_eq!((h.name.as_str(), h.peer.ip()), ("O", EXT), "O sees H's address");
    let h = tcp(lab.c(1), sa(cip(2), 80)).await.expect("C1 -> C2");
    assert_eq!(h.peer.ip(), cip(1), "traffic within the network keeps its source");
    assert!(tcp(lab.c(2), out).await.is_err(), "C2 was masqueraded by C1's entry");
    fw.teardown("c1:eth0").await.expect("teardown");
    assert!(tcp(lab.c(1), out).await.is_err(), "still masqueraded after teardown");
}

/// The same masquerade source for a second owner: `FirewallError::Conflict` (its docs name "a
/// masquerade source"), and nothing changes.
async fn masquerade_source_conflict(d: Driver, _test: &str) {
    let lab = Lab::build("msc", LabSpec::containers(1)).await;
    let fw = lab.firewall(d).await;
    let rules = Rules {
        masquerades: vec![Masquerade::address(cip(1), subnet())],
        ..Default::default()
    };
    fw.add("c1:eth0", &rules).await.expect("add masquerade");
    let before = ruleset(&lab.host, d);
    // The same source with another network: a real conflict, nothing changes.
    let other_net = Rules {
        masquerades: vec![Masquerade::address(cip(1), "10.88.0.0/16".parse().unwrap())],
        ..Default::default()
    };
    match fw.add("intruder", &other_net).await {
        Err(e) => assert_eq!(kind(&e), "Conflict", "same source, other network: {e}"),
        Ok(()) => panic!("a masquerade source was given to a second owner with another network"),
    }
    assert_eq!(
        ruleset(&lab.host, d),
        before,
        "a refused masquerade changed the ruleset"
    );
    assert_eq!(fw.owners().await.expect("owners"), ["c1:eth0"]);
    // The identical masquerade is shared (an address reused before the old owner's DEL ran):
    // the kernel holds it once, and it stays until its last holder goes.
    fw.add("newcomer", &rules)
        .await
        .expect("identical masquerade is shared");
    assert_eq!(ruleset(&lab.host, d), before, "a shared masquerade was added twice");
    fw.teardown("c1:eth0").await.expect("teardown first holder");
    assert_eq!(
        ruleset(&lab.host, d),
        before,
        "the masquerade went with its first holder"
    );
    fw.teardown("newcomer").await.expect("teardown last holder");
    assert_ne!(ruleset(&lab.host, d), before, "the masquerade outlived its last holder");
}

/// A masquerade several owners hold (one per network, as netkit-cni sets it), lost from the
/// kernel while its first holder is recorded (a flush here; a process killed between recording
/// itself as a holder and changing the kernel has the same effect): the next owner that takes
/// it on puts it back rather than trusting the record.
async fn shared_masquerade_is_reasserted(d: Driver, _test: &str) {
    let lab = Lab::build("msr", LabSpec::containers(1)).await;
    let _o = tcp_server(&lab.outside, "O", sa(ANY4, 7777)).await;
    let fw = lab.firewall(d).await;
    let out = sa(OUT, 7777);
    let rules = Rules {
        masquerades: vec![Masquerade::subnet(subnet())],
        ..Default::default()
    };
    fw.add("c1:eth0", &rules).await.expect("first holder");
    tcp(lab.c(1), out).await.expect("C1 -> O with the network's masquerade");
    dump::flush(&lab.host, d);
    assert!(tcp(lab.c(1), out).await.is_err(), "still masqueraded after the flush");
    fw.add("c2:eth0", &rules).await.expect("second holder");
    let h = tcp(lab.c(1), out)
        .await
        .expect("the second holder put the masquerade back");
    assert_eq!(h.peer.ip(), EXT, "O sees H's address");
    fw.teardown("c1:eth0").await.expect("teardown first holder");
    tcp(lab.c(1), out)
        .await
        .expect("the masquerade stays with its other holder");
    fw.teardown("c2:eth0").await.expect("teardown last holder");
    assert!(
        tcp(lab.c(1), out).await.is_err(),
        "the masquerade outlived its last holder"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Isolation
// ---------------------------------------------------------------------------------------------

/// Two bridges isolated from each other: their containers cannot talk, each still reaches O.
async fn isolation(d: Driver, _test: &str) {
    let lab = Lab::build(
        "iso",
        LabSpec {
            containers: 1,
            second_bridge: true,
            ..Default::default()
        },
    )
    .await;
    let (c1, d1) = (lab.c(1), lab.d1());
    let _s = [
        tcp_server(c1, "C1", sa(ANY4, 80)).await,
        tcp_server(d1, "D1", sa(ANY4, 80)).await,
        tcp_server(&lab.outside, "O", sa(ANY4, 7777)).await,
    ];
    // Before: the host routes between its bridges.
    assert!(
        ping_retry(c1, D1, 5) && ping_retry(d1, cip(1), 5),
        "the bridges should route to each other before isolation"
    );
    assert_eq!(tcp(c1, sa(D1, 80)).await.expect("C1 -> D1 before isolation").name, "D1");

    let fw = lab.firewall(d).await;
    for (owner, br, net) in [("net:nkbr0", BR0, subnet()), ("net:nkbr1", BR1, subnet1())] {
        let rules = Rules {
            networks: vec![Network::new(br, net)],
            masquerades: vec![Masquerade::subnet(net)],
            ..Default::default()
        };
        fw.add(owner, &rules)
            .await
            .unwrap_or_else(|e| panic!("add {owner}: {e}"));
    }
    let iso = Rules {
        isolations: vec![Isolation::new(BR0, BR1)],
        ..Default::default()
    };
    fw.add("isolate", &iso).await.expect("add isolation");
    assert!(!ping(c1, D1), "C1 pings D1 through the isolation");
    assert!(!ping(d1, cip(1)), "D1 pings C1 through the isolation");
    assert!(tcp(c1, sa(D1, 80)).await.is_err(), "C1 -> D1 TCP through the isolation");
    assert!(
        tcp(d1, sa(cip(1), 80)).await.is_err(),
        "D1 -> C1 TCP through the isolation"
    );
    for (who, ns) in [("C1", c1), ("D1", d1)] {
        let h = tcp(ns, sa(OUT, 7777))
            .await
            .unwrap_or_else(|e| panic!("{who} -> O with isolation on: {e}"));
        assert_eq!(h.peer.ip(), EXT, "{who} -> O is masqueraded");
    }
    fw.teardown("isolate").await.expect("teardown isolation");
    assert_eq!(tcp(c1, sa(D1, 80)).await.expect("C1 -> D1 after teardown").name, "D1");
}

// ---------------------------------------------------------------------------------------------
// 5. Teardown, GC, reconcile
// ---------------------------------------------------------------------------------------------

/// Owners holding every kind of object, IPv4 and IPv6.
fn every_kind() -> Vec<(&'static str, Rules)> {
    let a = Rules {
        networks: vec![Network::new(BR0, subnet()), Network::new(BR0, subnet6())],
        masquerades: vec![
            Masquerade::address(cip(1), subnet()),
            Masquerade::address(cip6(1), subnet6()),
        ],
        port_mappings: vec![
            tcp_map(8080, cip(1), 80),
            PortMapping::new(Protocol::Udp, 5353, cip(1), 53),
            PortMapping::new(Protocol::Sctp, 8132, cip(1), 132),
            tcp_map(9000, cip(1), 7000).range_end(9004),
            tcp_map(8081, cip(1), 81).host_ip(EXT),
            tcp_map(8080, cip6(1), 80),
        ],
        ..Default::default()
    };
    let b = Rules {
        masquerades: vec![Masquerade::address(cip(2), subnet())],
        port_mappings: vec![tcp_map(8082, cip(2), 80)],
        isolations: vec![Isolation::new(BR0, BR1)],
        ..Default::default()
    };
    let web = three_endpoints(Service::new("default/web", Protocol::Tcp, ip(VIP), 80))
        .node_port(30080)
        .affinity(Duration::from_secs(30))
        .masquerade(true);
    let web6 = Service::new("default/web6", Protocol::Tcp, "fd96::10".parse().expect("literal"), 80)
        .endpoint(Endpoint::new(cip6(2), 80));
    let dns = Service::new("default/dns", Protocol::Udp, ip("10.96.0.53"), 53)
        .node_port(30053)
        .endpoint(Endpoint::new(cip(1), 53))
        .endpoint(Endpoint::new(cip(2), 53));
    let empty = Service::new("default/empty", Protocol::Tcp, ip("10.96.0.99"), 80);
    vec![
        ("ctr-a:eth0", a),
        ("ctr-b:eth0", b),
        (
            "svc/default/web",
            Rules {
                services: vec![web, web6],
                ..Default::default()
            },
        ),
        (
            "svc/default/dns",
            Rules {
                services: vec![dns, empty],
                ..Default::default()
            },
        ),
    ]
}

fn state_owner_files(lab: &Lab) -> Vec<String> {
    let dir = lab.state.path().join("owner");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Adding owners with every kind of object and tearing each down (twice) gives back the
/// ruleset as it was, someone else's rules included.
async fn teardown_restores_ruleset(d: Driver, _test: &str) {
    let lab = Lab::build("tdn", LabSpec::containers(3)).await;
    dump::add_foreign_rules(&lab.host, d);
    let before = ruleset(&lab.host, d);
    let fw = lab.firewall(d).await;
    let owners = every_kind();
    for (owner, rules) in &owners {
        fw.add(owner, rules)
            .await
            .unwrap_or_else(|e| panic!("add {owner}: {e}"));
    }
    // Endpoint changes are part of the state teardown must undo too.
    fw.remove_endpoint("default/web", Endpoint::new(cip(3), 80))
        .await
        .expect("remove endpoint");
    fw.add_endpoint("default/web", Endpoint::new(cip(3), 80))
        .await
        .expect("add endpoint back");
    let full = ruleset(&lab.host, d);
    assert_ne!(
        full, before,
        "adding every kind of object changed nothing in the ruleset"
    );
    assert!(
        full.contains("198.51.100.0/24"),
        "someone else's rules vanished:\n{full}"
    );

    for (owner, rules) in &owners {
        let held = fw
            .teardown(owner)
            .await
            .unwrap_or_else(|e| panic!("teardown {owner}: {e}"));
        assert_eq!(&held, rules, "teardown {owner} returns what it held");
        let again = fw
            .teardown(owner)
            .await
            .unwrap_or_else(|e| panic!("second teardown {owner}: {e}"));
        assert!(again.is_empty(), "second teardown of {owner} found {again:?}");
    }
    assert_eq!(ruleset(&lab.host, d), before, "the ruleset after every teardown");
    assert!(fw.owners().await.expect("owners").is_empty());
    assert!(state_owner_files(&lab).is_empty(), "owner files left in the state dir");
}

/// GC with a list of valid owners removes exactly the others, and nothing of theirs is left.
async fn gc_removes_exactly_the_others(d: Driver, _test: &str) {
    let lab = Lab::build("gcx", LabSpec::containers(1)).await;
    let _c1 = tcp_server(lab.c(1), "C1", sa(ANY4, 80)).await;
    let before = ruleset(&lab.host, d);
    let fw = lab.firewall(d).await;
    let all = [("gc-a", 18001), ("gc-b", 18002), ("gc-c", 18003), ("gc-d", 18004)];
    for (owner, port) in all {
        fw.add(owner, &mappings(vec![tcp_map(port, cip(1), 80)]))
            .await
            .unwrap_or_else(|e| panic!("add {owner}: {e}"));
    }
    let valid = vec!["gc-a".to_string(), "gc-c".to_string()];
    let mut removed = fw.gc(&valid).await.expect("gc");
    removed.sort();
    assert_eq!(removed, ["gc-b", "gc-d"]);
    assert_eq!(fw.owners().await.expect("owners"), valid);
    let rs = ruleset_plain(&lab.host, d);
    for (owner, port) in all {
        let keep = valid.iter().any(|v| v == owner);
        assert_eq!(
            mapping_entries(&rs, d, port),
            usize::from(keep),
            "port {port} of {owner} after gc:\n{rs}"
        );
        if !keep {
            assert!(!rs.contains(owner), "{owner} still named in the ruleset:\n{rs}");
        }
        let reached = tcp(&lab.outside, sa(EXT, port)).await;
        assert_eq!(reached.is_ok(), keep, "O -> {port} ({owner}) after gc: {reached:?}");
    }
    assert!(
        fw.gc(&valid).await.expect("gc again").is_empty(),
        "a second gc removed more"
    );
    fw.gc(&[]).await.expect("gc of everything");
    assert_eq!(ruleset(&lab.host, d), before, "the ruleset after gc of every owner");
}

/// After someone flushes the ruleset, reconcile brings the port mapping and the service back
/// (once: a second reconcile duplicates nothing).
async fn reconcile_after_flush(d: Driver, _test: &str) {
    let lab = Lab::build("rec", LabSpec::containers(2)).await;
    let _c1 = tcp_server(lab.c(1), "C1", sa(ANY4, 80)).await;
    let fw = lab.firewall(d).await;
    let rules = Rules {
        networks: vec![lab.network()],
        port_mappings: vec![tcp_map(8080, cip(1), 80)],
        services: vec![Service::new("default/web", Protocol::Tcp, ip(VIP), 80).endpoint(Endpoint::new(cip(1), 80))],
        ..Default::default()
    };
    fw.add("c1:eth0", &rules).await.expect("add");
    let (h, o) = (&lab.host, &lab.outside);
    tcp(o, sa(EXT, 8080)).await.expect("O -> 8080 before the flush");
    tcp(h, sa(ip(VIP), 80)).await.expect("H -> VIP before the flush");

    dump::flush(h, d);
    assert!(
        tcp(o, sa(EXT, 8080)).await.is_err(),
        "8080 still mapped after the flush"
    );
    assert!(
        tcp(h, sa(ip(VIP), 80)).await.is_err(),
        "VIP still answers after the flush"
    );

    for round in 1..=2 {
        fw.reconcile()
            .await
            .unwrap_or_else(|e| panic!("reconcile #{round}: {e}"));
        let got = tcp(o, sa(EXT, 8080)).await;
        assert_eq!(got.expect("O -> 8080 after reconcile").name, "C1");
        let got = tcp(lab.c(2), sa(GW, 8080))
            .await
            .expect("hairpin C2 -> 8080 after reconcile");
        assert_eq!((got.name.as_str(), got.peer.ip()), ("C1", GW), "hairpin, masqueraded");
        let got = tcp(h, sa(ip(VIP), 80)).await;
        assert_eq!(got.expect("H -> VIP after reconcile").name, "C1");
        let rs = ruleset_plain(h, d);
        assert_eq!(mapping_entries(&rs, d, 8080), 1, "after reconcile #{round}:\n{rs}");
    }
    assert_eq!(fw.rules("c1:eth0").await.expect("rules"), rules);
}

/// Two containers on one bridge each register the bridge's network, one owner per container
/// attachment as in the firewall module's example: both are accepted, and tearing one down
/// leaves the other's hairpin working.
async fn network_shared_by_two_owners(d: Driver, _test: &str) {
    let lab = Lab::build("shn", LabSpec::containers(3)).await;
    let _servers = echo_containers(&lab, 2).await;
    let fw = lab.firewall(d).await;
    for (i, port) in [(1, 8080), (2, 8081)] {
        let owner = format!("c{i}:eth0");
        let rules = Rules {
            networks: vec![lab.network()],
            port_mappings: vec![tcp_map(port, cip(i), 80)],
            ..Default::default()
        };
        fw.add(&owner, &rules)
            .await
            .unwrap_or_else(|e| panic!("add {owner} (the network again, as a second owner): {e}"));
    }
    for (port, name) in [(8080, "C1"), (8081, "C2")] {
        let h = tcp(lab.c(3), sa(GW, port)).await.expect("hairpin from C3");
        assert_eq!((h.name.as_str(), h.peer.ip()), (name, GW), "hairpin C3 -> {port}");
    }
    fw.teardown("c1:eth0").await.expect("teardown c1");
    let h = tcp(lab.c(3), sa(GW, 8081))
        .await
        .expect("hairpin to C2 after C1's teardown (C2 still registers the network)");
    assert_eq!((h.name.as_str(), h.peer.ip()), ("C2", GW));
}

// ---------------------------------------------------------------------------------------------
// 6. Concurrency
// ---------------------------------------------------------------------------------------------

fn fwctl(lab: &Lab, d: Driver, args: &[String]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_netkit-fwctl"))
        .arg(lab.host_name())
        .arg(d.as_str())
        .arg(lab.state.path())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn netkit-fwctl")
}

fn wait_all(children: Vec<(String, std::process::Child)>) {
    let mut failed = Vec::new();
    for (what, child) in children {
        let out = child.wait_with_output().expect("wait for netkit-fwctl");
        if !out.status.success() {
            failed.push(format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} processes failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// 50 owners add their mappings in 50 parallel processes; then half tear down while the other
/// half add a second mapping, all at once. The state and the ruleset hold exactly the rest.
async fn concurrent_processes(d: Driver, _test: &str) {
    let lab = Lab::build("cc", LabSpec::containers(1)).await;
    let _c1 = tcp_server(lab.c(1), "C1", sa(ANY4, 80)).await;
    let before = ruleset(&lab.host, d);
    let owner = |i: u16| format!("own-{i:02}");
    let json = |port: u16| serde_json::to_string(&mappings(vec![tcp_map(port, cip(1), 80)])).expect("json");

    let adds = (0..50u16)
        .map(|i| {
            let args = vec!["add".into(), owner(i), json(20000 + i)];
            (format!("add {}", owner(i)), fwctl(&lab, d, &args))
        })
        .collect();
    wait_all(adds);
    let fw = lab.firewall(d).await;
    assert_eq!(
        fw.owners().await.expect("owners").len(),
        50,
        "owners after 50 parallel adds"
    );

    let mixed = (0..50u16)
        .map(|i| {
            let args = if i % 2 == 0 {
                vec!["teardown".into(), owner(i)]
            } else {
                vec!["add".into(), owner(i), json(21000 + i)]
            };
            (format!("{} {}", args[0], owner(i)), fwctl(&lab, d, &args))
        })
        .collect();
    wait_all(mixed);

    let kept: Vec<u16> = (0..50).filter(|i| i % 2 == 1).collect();
    let want: Vec<String> = kept.iter().map(|&i| owner(i)).collect();
    assert_eq!(fw.owners().await.expect("owners"), want, "owners in the state");
    let files: BTreeSet<String> = state_owner_files(&lab).into_iter().collect();
    let want_files: BTreeSet<String> = want.iter().map(|o| format!("{}.json", o.replace('/', "+"))).collect();
    assert_eq!(files, want_files, "owner files in the state dir");

    let rs = ruleset_plain(&lab.host, d);
    for i in 0..50u16 {
        if i % 2 == 1 {
            for port in [20000 + i, 21000 + i] {
                assert_eq!(mapping_entries(&rs, d, port), 1, "port {port} of {}:\n{rs}", owner(i));
            }
        } else {
            assert_eq!(
                mapping_entries(&rs, d, 20000 + i),
                0,
                "port of removed {}:\n{rs}",
                owner(i)
            );
            assert!(
                !rs.contains(&owner(i)),
                "removed {} still named in the ruleset",
                owner(i)
            );
        }
    }
    let o = &lab.outside;
    for &i in &kept {
        for port in [20000 + i, 21000 + i] {
            let got = tcp(o, sa(EXT, port)).await;
            assert_eq!(got.expect("O -> a kept owner's port").name, "C1", "port {port}");
        }
    }
    for i in (0..50u16).filter(|i| i % 2 == 0) {
        assert!(
            tcp(o, sa(EXT, 20000 + i)).await.is_err(),
            "removed {}'s port answers",
            owner(i)
        );
    }
    // No stale claim: a removed owner's port is free for someone else.
    fw.add("newcomer", &mappings(vec![tcp_map(20000, cip(1), 80)]))
        .await
        .expect("map a removed owner's port");
    fw.gc(&[]).await.expect("gc everything");
    assert_eq!(ruleset(&lab.host, d), before, "the ruleset after removing every owner");
}

// ---------------------------------------------------------------------------------------------
// 7. Bad input
// ---------------------------------------------------------------------------------------------

fn kind(e: &FirewallError) -> &'static str {
    match e {
        FirewallError::Invalid { .. } => "Invalid",
        FirewallError::Conflict { .. } => "Conflict",
        FirewallError::NotFound(_) => "NotFound",
        FirewallError::Unavailable { .. } => "Unavailable",
        FirewallError::Kernel { .. } => "Kernel",
        _ => "other",
    }
}

/// Checks that a refused call changed nothing: the ruleset, the owners and the base owner's rules.
struct Unchanged<'a> {
    fw: &'a AnyFirewall,
    host: &'a NetNs,
    driver: Driver,
    ruleset: String,
    base: Rules,
}

impl Unchanged<'_> {
    async fn refused<T: std::fmt::Debug>(&self, what: &str, got: Result<T, FirewallError>, want: &str) {
        match got {
            Ok(v) => panic!("{what}: accepted ({v:?}), want {want}"),
            Err(e) => {
                assert_eq!(kind(&e), want, "{what}: wrong error: {e}");
                println!("{what}: {e}");
            }
        }
        assert_eq!(
            ruleset(self.host, self.driver),
            self.ruleset,
            "{what}: the ruleset changed"
        );
        assert_eq!(
            self.fw.owners().await.expect("owners"),
            ["base"],
            "{what}: owners changed"
        );
        assert_eq!(
            self.fw.rules("base").await.expect("rules"),
            self.base,
            "{what}: base changed"
        );
    }
}

async fn base_firewall(lab: &Lab, d: Driver) -> (AnyFirewall, Rules) {
    let fw = lab.firewall(d).await;
    let base = Rules {
        networks: vec![lab.network()],
        port_mappings: vec![tcp_map(8080, cip(1), 80)],
        services: vec![
            Service::new("default/base", Protocol::Tcp, ip("10.96.0.20"), 80).endpoint(Endpoint::new(cip(1), 80))
        ],
        ..Default::default()
    };
    fw.add("base", &base).await.expect("add the base owner");
    (fw, base)
}

/// Every kind of bad input gets a clear error and changes nothing (ruleset, owners, state).
async fn bad_input_is_refused_and_changes_nothing(d: Driver, _test: &str) {
    let lab = Lab::build("bad", LabSpec::containers(2)).await;
    let (fw, base) = base_firewall(&lab, d).await;
    let u = Unchanged {
        fw: &fw,
        host: &lab.host,
        driver: d,
        ruleset: ruleset(&lab.host, d),
        base,
    };
    let one = |m: PortMapping| mappings(vec![m]);
    let svc = |s: Service| Rules {
        services: vec![s],
        ..Default::default()
    };
    let web = || Service::new("default/other", Protocol::Tcp, ip(VIP), 80);

    // Ports.
    for (what, m) in [
        ("host port 0", tcp_map(0, cip(2), 80)),
        ("container port 0", tcp_map(8090, cip(2), 0)),
        (
            "range ending before it starts",
            tcp_map(9010, cip(2), 80).range_end(9000),
        ),
        (
            "container ports past 65535",
            tcp_map(1000, cip(2), 65535).range_end(1001),
        ),
        (
            "range wider than MAX_PORT_RANGE",
            tcp_map(1, cip(2), 1).range_end(1 + MAX_PORT_RANGE),
        ),
    ] {
        u.refused(what, fw.add("bad", &one(m)).await, "Invalid").await;
    }
    // Ports above 65535 cannot be built (u16); the only parser is serde: JSON refuses them.
    let json = |host_port: &str, proto: &str| {
        format!(
            r#"{{"port_mappings":[{{"protocol":"{proto}","host_ip":null,"host_port":{host_port},"host_port_end":{host_port},"container_ip":"10.88.0.3","container_port":80}}]}}"#
        )
    };
    let e = serde_json::from_str::<Rules>(&json("65536", "tcp")).expect_err("port 65536 from JSON");
    assert!(e.to_string().contains("65536"), "JSON port 65536: {e}");
    let zero: Rules = serde_json::from_str(&json("0", "tcp")).expect("port 0 parses; validation refuses it");
    u.refused("host port 0 from JSON", fw.add("bad", &zero).await, "Invalid")
        .await;
    assert!(
        serde_json::from_str::<Rules>(&json("8090", "icmp")).is_err(),
        "JSON protocol icmp"
    );
    // Protocols.
    let e = "icmp".parse::<Protocol>().expect_err("icmp is no transport protocol");
    assert_eq!(kind(&e), "Invalid", "{e}");
    assert!(e.to_string().contains("icmp"), "{e}");

    // Addresses.
    for (what, m) in [
        ("unspecified container address", tcp_map(8090, ip("0.0.0.0"), 80)),
        ("unspecified IPv6 container address", tcp_map(8090, ANY6, 80)),
        ("multicast container address", tcp_map(8090, ip("224.0.0.1"), 80)),
        ("multicast IPv6 container address", tcp_map(8090, ip("ff02::1"), 80)),
        ("broadcast container address", tcp_map(8090, ip("255.255.255.255"), 80)),
        (
            "multicast host address",
            tcp_map(8090, cip(2), 80).host_ip(ip("224.0.0.1")),
        ),
        (
            "host and container of different families",
            tcp_map(8090, cip(2), 80).host_ip(ip("fd88::1")),
        ),
    ] {
        u.refused(what, fw.add("bad", &one(m)).await, "Invalid").await;
    }
    let masq = |m: Masquerade| Rules {
        masquerades: vec![m],
        ..Default::default()
    };
    let mixed = Masquerade {
        source: "fd88::2/128".parse().expect("literal"),
        network: subnet(),
    };
    u.refused(
        "masquerade of mixed families",
        fw.add("bad", &masq(mixed)).await,
        "Invalid",
    )
    .await;
    let outside_net = Masquerade::address(ip("10.89.0.5"), subnet());
    u.refused(
        "masquerade source outside its network",
        fw.add("bad", &masq(outside_net)).await,
        "Invalid",
    )
    .await;

    // Interfaces.
    for (what, r) in [
        (
            "interface name with a space",
            Rules {
                networks: vec![Network::new("nk br0", subnet())],
                ..Default::default()
            },
        ),
        (
            "interface name of 16 characters",
            Rules {
                networks: vec![Network::new("nkbr0123456789ab", subnet())],
                ..Default::default()
            },
        ),
        (
            "isolating a bridge from itself",
            Rules {
                isolations: vec![Isolation::new(BR0, BR0)],
                ..Default::default()
            },
        ),
    ] {
        u.refused(what, fw.add("bad", &r).await, "Invalid").await;
    }

    // Services.
    let dup = web()
        .endpoint(Endpoint::new(cip(1), 80))
        .endpoint(Endpoint::new(cip(1), 80));
    for (what, s) in [
        ("service with a duplicate endpoint", dup),
        ("endpoint of another family", web().endpoint(Endpoint::new(cip6(1), 80))),
        (
            "multicast service address",
            Service::new("default/other", Protocol::Tcp, ip("239.1.1.1"), 80),
        ),
        (
            "service port 0",
            Service::new("default/other", Protocol::Tcp, ip(VIP), 0),
        ),
        ("node port 0", web().node_port(0)),
        ("endpoint port 0", web().endpoint(Endpoint::new(cip(1), 0))),
        (
            "service name with a space",
            Service::new("default/a b", Protocol::Tcp, ip(VIP), 80),
        ),
        ("affinity of 0 s", web().affinity(Duration::ZERO)),
    ] {
        u.refused(what, fw.add("bad", &svc(s)).await, "Invalid").await;
    }
    u.refused(
        "endpoint of another family (add_endpoint)",
        fw.add_endpoint("default/base", Endpoint::new(cip6(1), 80)).await,
        "Invalid",
    )
    .await;
    u.refused(
        "endpoint port 0 (add_endpoint)",
        fw.add_endpoint("default/base", Endpoint::new(cip(2), 0)).await,
        "Invalid",
    )
    .await;
    u.refused(
        "endpoint of an unknown service",
        fw.remove_endpoint("default/nosuch", Endpoint::new(cip(1), 80)).await,
        "NotFound",
    )
    .await;

    // Owner names.
    let good = one(tcp_map(8090, cip(2), 80));
    let long = "x".repeat(netkit_core::firewall::MAX_OWNER_LEN + 1);
    for owner in [
        "",
        "a b",
        "a;b",
        "a\"b",
        "ctr\n1",
        "ctr\u{e9}",
        "$(reboot)",
        long.as_str(),
    ] {
        u.refused(&format!("owner {owner:?}"), fw.add(owner, &good).await, "Invalid")
            .await;
        u.refused(
            &format!("teardown of owner {owner:?}"),
            fw.teardown(owner).await,
            "Invalid",
        )
        .await;
    }

    // Conflicts with another owner.
    for (what, m) in [
        ("the same host port as another owner", tcp_map(8080, cip(2), 80)),
        (
            "a range over another owner's port",
            tcp_map(8075, cip(2), 80).range_end(8085),
        ),
        (
            "one host address over another owner's wildcard",
            tcp_map(8080, cip(2), 80).host_ip(EXT),
        ),
    ] {
        u.refused(what, fw.add("other", &one(m)).await, "Conflict").await;
    }
    let taken = Service::new("default/base", Protocol::Tcp, ip(VIP), 80).endpoint(Endpoint::new(cip(2), 80));
    u.refused(
        "a service name another owner has",
        fw.add("other", &svc(taken)).await,
        "Conflict",
    )
    .await;

    // One bad object refuses the whole set: its good objects are not added either.
    let partly_bad = mappings(vec![tcp_map(8091, cip(2), 80), tcp_map(0, cip(2), 80)]);
    u.refused(
        "a set with one bad mapping",
        fw.add("other", &partly_bad).await,
        "Invalid",
    )
    .await;
    let partly_taken = mappings(vec![tcp_map(8092, cip(2), 80), tcp_map(8080, cip(2), 80)]);
    u.refused(
        "a set with one taken port",
        fw.add("other", &partly_taken).await,
        "Conflict",
    )
    .await;

    // Control: the same number in another protocol or family is no conflict.
    let udp_same = PortMapping::new(Protocol::Udp, 8080, cip(2), 80);
    fw.add("other", &one(udp_same)).await.expect("udp 8080 beside tcp 8080");
    fw.add("other6", &one(tcp_map(8080, cip6(2), 80)))
        .await
        .expect("IPv6 tcp 8080 beside IPv4 tcp 8080");
}

/// Overlapping host ports of one owner: the issue asks for `FirewallError::Conflict`, as across
/// owners; nothing may change.
async fn bad_input_overlap_same_owner(d: Driver, _test: &str) {
    let lab = Lab::build("ovl", LabSpec::containers(2)).await;
    let (fw, base) = base_firewall(&lab, d).await;
    let u = Unchanged {
        fw: &fw,
        host: &lab.host,
        driver: d,
        ruleset: ruleset(&lab.host, d),
        base,
    };
    // Across two calls: base already maps 8080.
    let over = mappings(vec![tcp_map(8075, cip(2), 80).range_end(8085)]);
    u.refused(
        "a range over the owner's own port",
        fw.add("base", &over).await,
        "Conflict",
    )
    .await;
    let other_target = mappings(vec![tcp_map(8080, cip(2), 80)]);
    u.refused(
        "the owner's own port to another container",
        fw.add("base", &other_target).await,
        "Conflict",
    )
    .await;
    // Within one call.
    let twice = mappings(vec![
        tcp_map(8070, cip(2), 80).range_end(8079),
        tcp_map(8075, cip(2), 81),
    ]);
    u.refused(
        "two overlapping mappings in one call",
        fw.add("base", &twice).await,
        "Conflict",
    )
    .await;
}

/// Issue 10.4: the kernel objects of one firewall name belong to one state directory. A second
/// directory with the same name is refused (it would share the table, and the last owner of
/// either would delete the other's rules); with its own name it works side by side, and the
/// first one's last owner leaving takes nothing of the second's.
async fn state_dirs_never_share_kernel_objects(d: Driver, test: &str) {
    let lab = Lab::build("sdir", LabSpec::containers(2)).await;
    let _c1 = tcp_server(lab.c(1), "C1", sa(ANY4, 80)).await;
    let _c2 = tcp_server(lab.c(2), "C2", sa(ANY4, 80)).await;
    let fw = lab.firewall(d).await;
    let first = Rules {
        networks: vec![lab.network()],
        port_mappings: vec![tcp_map(8080, cip(1), 80)],
        ..Default::default()
    };
    fw.add("c1:eth0", &first).await.expect("first state directory");
    let before = ruleset(&lab.host, d);
    let other = tempdir(&format!("sdir-{}", d.as_str()));
    let opts = lab.options(d).state_dir(other.path());
    match netkit_core::firewall::open(&lab.host, opts.clone()).await {
        Err(FirewallError::Foreign { .. }) => {}
        Err(e) => panic!("{test}: a second state directory for one name: {e}"),
        Ok(_) => panic!("{test}: a second state directory for one name was accepted"),
    }
    assert_eq!(ruleset(&lab.host, d), before, "the refused open changed the ruleset");
    let fw2 = netkit_core::firewall::open(&lab.host, opts.name("other"))
        .await
        .expect("a second state directory under its own name");
    fw2.add(
        "c2:eth0",
        &Rules {
            networks: vec![lab.network()],
            port_mappings: vec![tcp_map(8082, cip(2), 80)],
            ..Default::default()
        },
    )
    .await
    .expect("second firewall");
    fw.teardown("c1:eth0")
        .await
        .expect("teardown of the first's last owner");
    let o = &lab.outside;
    assert_eq!(
        tcp(o, sa(EXT, 8082))
            .await
            .expect("O -> 8082 after the first firewall emptied")
            .name,
        "C2"
    );
    assert!(
        tcp(o, sa(EXT, 8080)).await.is_err(),
        "the first firewall's mapping outlived its owner"
    );
    fw2.teardown("c2:eth0").await.expect("teardown of the second");
}

/// `set_services` for several owners at once (the service proxy's batched sync): every
/// service answers, a changed one moves to its new endpoints and a dropped one stops, the
/// owner left with nothing is gone; a name another owner has is refused and changes nothing.
async fn services_in_one_transaction(d: Driver, _test: &str) {
    let lab = Lab::build("sbat", LabSpec::containers(3)).await;
    let _servers = echo_containers(&lab, 3).await;
    let fw = lab.firewall(d).await;
    let h = &lab.host;
    let svc = |name: &str, vip: &str, eps: &[usize]| {
        eps.iter().fold(Service::new(name, Protocol::Tcp, ip(vip), 80), |s, i| {
            s.endpoint(Endpoint::new(cip(*i), 80))
        })
    };
    let first = vec![
        ("svc/a".to_string(), vec![svc("a", VIP, &[1])]),
        ("svc/b".to_string(), vec![svc("b", VIP2, &[2])]),
        ("svc/c".to_string(), vec![svc("c", VIP3, &[3])]),
    ];
    fw.set_services(&first).await.unwrap();
    for (vip, want) in [(VIP, "C1"), (VIP2, "C2"), (VIP3, "C3")] {
        let got = tally(&tcp_many(h, sa(ip(vip), 80), 3).await);
        assert_eq!(got.keys().collect::<Vec<_>>(), vec![want], "{vip}: {got:?}");
    }
    // A name held by an owner outside the batch: refused, nothing changed.
    fw.add(
        "other",
        &Rules {
            services: vec![svc("x", VIP4, &[1])],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let clash = fw
        .set_services(&[
            ("svc/a".to_string(), vec![svc("a", VIP, &[2])]),
            ("svc/y".to_string(), vec![svc("x", VIP4, &[3])]),
        ])
        .await;
    assert!(matches!(clash, Err(FirewallError::Conflict { .. })), "{clash:?}");
    let got = tally(&tcp_many(h, sa(ip(VIP), 80), 3).await);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["C1"], "a unchanged: {got:?}");
    // a moves to C2, b is dropped (its owner is gone), c stays.
    fw.set_services(&[
        ("svc/a".to_string(), vec![svc("a", VIP, &[2])]),
        ("svc/b".to_string(), vec![]),
    ])
    .await
    .unwrap();
    let got = tally(&tcp_many(h, sa(ip(VIP), 80), 3).await);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["C2"], "a moved: {got:?}");
    assert!(tcp(h, sa(ip(VIP2), 80)).await.is_err(), "b is gone");
    let got = tally(&tcp_many(h, sa(ip(VIP3), 80), 3).await);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["C3"], "c stays: {got:?}");
    let owners = fw.owners().await.unwrap();
    assert!(!owners.contains(&"svc/b".to_string()), "{owners:?}");
    assert_eq!(fw.rules("svc/a").await.unwrap().services, vec![svc("a", VIP, &[2])]);
    // c moves to another owner in one batch, the new owner named first: it keeps answering,
    // and the new owner holds it.
    fw.set_services(&[
        ("svc/d".to_string(), vec![svc("c", VIP3, &[3])]),
        ("svc/c".to_string(), vec![]),
    ])
    .await
    .unwrap();
    let got = tally(&tcp_many(h, sa(ip(VIP3), 80), 3).await);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["C3"], "c moved owners: {got:?}");
    assert_eq!(fw.rules("svc/d").await.unwrap().services, vec![svc("c", VIP3, &[3])]);
    let taken = fw
        .add(
            "svc/e",
            &Rules {
                services: vec![svc("c", VIP3, &[1])],
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(taken, Err(FirewallError::Conflict { ref owner, .. }) if owner == "svc/d"),
        "{taken:?}"
    );
    // One owner named twice: refused.
    let twice = fw
        .set_services(&[("svc/a".to_string(), vec![]), ("svc/a".to_string(), vec![])])
        .await;
    assert!(matches!(twice, Err(FirewallError::Invalid { .. })), "{twice:?}");
}

/// A service's endpoints change one by one (the service proxy's everyday work): traffic
/// follows each change, an emptied service refuses, one endpoint back is reached again, and an
/// endpoint reaching itself through the service is masqueraded (hairpin). With nftables the
/// changes are set elements only: no rule of the table is rewritten (the rule handles stay).
async fn endpoint_changes(d: Driver, _test: &str) {
    let lab = Lab::build("epch", LabSpec::containers(3)).await;
    let _servers = echo_containers(&lab, 3).await;
    let fw = lab.firewall(d).await;
    let h = &lab.host;
    let web = Service::new("default/web", Protocol::Tcp, ip(VIP), 80).endpoint(Endpoint::new(cip(1), 80));
    fw.add(
        "svc/web",
        &Rules {
            services: vec![web],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let got = tally(&tcp_many(h, sa(ip(VIP), 80), 3).await);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["C1"], "{got:?}");
    // The rules with their handles (nftables), to see that none is rewritten below.
    let handles = || -> Vec<String> {
        match d {
            Driver::Nftables => ruleset(h, d)
                .lines()
                .filter(|l| l.contains("# handle"))
                .map(str::to_string)
                .collect(),
            Driver::Iptables => Vec::new(),
        }
    };
    let before = handles();
    for c in [2, 3] {
        fw.add_endpoint("default/web", Endpoint::new(cip(c), 80)).await.unwrap();
    }
    let got = tally(&tcp_many(h, sa(ip(VIP), 80), 60).await);
    share_check(&got, 60, &["C1", "C2", "C3"]);
    for c in [1, 2, 3] {
        fw.remove_endpoint("default/web", Endpoint::new(cip(c), 80))
            .await
            .unwrap();
    }
    assert_refused(tcp_refused(h, sa(ip(VIP), 80)).await, "the emptied service");
    fw.add_endpoint("default/web", Endpoint::new(cip(2), 80)).await.unwrap();
    let got = tally(&tcp_many(h, sa(ip(VIP), 80), 3).await);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["C2"], "{got:?}");
    // C2 through its own service: hairpin, masqueraded to the bridge address.
    let hello = tcp(lab.c(2), sa(ip(VIP), 80)).await.expect("hairpin C2 -> VIP");
    assert_eq!(
        (hello.name.as_str(), hello.peer.ip()),
        ("C2", GW),
        "hairpin, masqueraded"
    );
    assert_eq!(handles(), before, "an endpoint change rewrote rules");
}
