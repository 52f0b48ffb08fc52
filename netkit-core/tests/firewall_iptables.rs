//! The iptables firewall driver, checked through the exact text of `iptables-save` /
//! `ip6tables-save` run inside namespaces the tests create (never the machine's own firewall).
//! What the rules do to real traffic, for this driver and the nftables one alike, is checked
//! end to end in `tests/firewall.rs` (the netkit-tests package).

use std::time::Duration;

use netkit_core::firewall::{
    Endpoint, Firewall, FirewallError, FirewallOptions, Iptables, Isolation, Masquerade, Network, PortMapping,
    Protocol, Rules, Service,
};
use netkit_test_support::iptables::{chain, save_text, table, without_empty_tables};
use netkit_test_support::lit::ip;
use netkit_test_support::{report_skip, tempdir, TestNs};

/// True when the test can run (root, iptables tools); otherwise reports the skip.
fn usable(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        report_skip(&format!("firewall_iptables::{test}"), "needs root");
        return false;
    }
    let found = ["/usr/sbin/iptables-restore", "/sbin/iptables-restore"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if !found {
        report_skip(
            &format!("firewall_iptables::{test}"),
            "iptables-restore is not installed",
        );
        return false;
    }
    true
}

/// A namespace with an iptables firewall in it and a private state directory.
struct Fw {
    t: TestNs,
    fw: Iptables,
    dir: tempfile::TempDir,
}

impl Fw {
    async fn new(tag: &str) -> Self {
        let t = TestNs::new(tag).await;
        Self::in_ns(t).await
    }

    async fn in_ns(t: TestNs) -> Self {
        let dir = tempdir("iptstate");
        let fw = Iptables::open(&t.ns, FirewallOptions::default().state_dir(dir.path()))
            .await
            .expect("open the iptables firewall");
        Fw { t, fw, dir }
    }

    /// `-m comment --comment "netkit state <id>"`: the comment of our jumps, naming the state
    /// directory that owns the chains.
    fn jump_comment(&self) -> String {
        let id = std::fs::read_to_string(self.dir.path().join("id")).expect("the state directory's id");
        format!("-m comment --comment \"netkit state {}\"", id.trim())
    }

    /// `iptables-save` (or `ip6tables-save`) in the namespace, without the timestamp comments
    /// and counters (`save_text`).
    fn save(&self, v6: bool) -> String {
        let tool = if v6 { "ip6tables-save" } else { "iptables-save" };
        save_text(&self.t.sh(tool))
    }

    fn save4(&self) -> String {
        self.save(false)
    }

    fn save6(&self) -> String {
        self.save(true)
    }
}

/// The chain a rule of `chain` whose text contains `needle` jumps to.
fn jump_target(save: &str, from: &str, needle: &str) -> String {
    let rule = chain(save, from)
        .into_iter()
        .find(|r| r.contains(needle))
        .unwrap_or_else(|| panic!("no rule with {needle:?} in {from}:\n{save}"));
    rule.rsplit(' ').next().unwrap().to_string()
}

fn assert_has(save: &str, lines: &[&str]) {
    for l in lines {
        assert!(save.lines().any(|x| x == *l), "missing line\n  {l}\nin\n{save}");
    }
}

/// The jumps from built-in chains, commented with the firewall's name and its state
/// directory's id.
fn jumps_v4(f: &Fw) -> Vec<String> {
    let c = f.jump_comment();
    vec![
        format!("-A PREROUTING {c} -j NETKIT-PREROUTING"),
        format!("-A OUTPUT {c} -j NETKIT-OUTPUT"),
        format!("-A POSTROUTING {c} -j NETKIT-POSTROUTING"),
        format!("-A FORWARD {c} -j NETKIT-FORWARD"),
        format!("-A INPUT {c} -j NETKIT-INPUT"),
        format!("-A OUTPUT {c} -j NETKIT-SERVICES"),
    ]
}

#[tokio::test]
async fn port_mappings_add_and_remove() {
    if !usable("port_mappings_add_and_remove") {
        return;
    }
    let f = Fw::new("iptpm").await;
    let (before4, before6) = (f.save4(), f.save6());
    let web = PortMapping::new(Protocol::Tcp, 8080, ip("10.88.0.5"), 80);
    let dns = PortMapping::new(Protocol::Udp, 5353, ip("10.88.0.6"), 53).host_ip(ip("192.0.2.10"));
    let range = PortMapping::new(Protocol::Sctp, 9000, ip("10.88.0.7"), 7000).range_end(9002);
    let web6 = PortMapping::new(Protocol::Tcp, 8080, ip("fd00::5"), 80);
    let all = Rules {
        port_mappings: vec![web.clone(), dns, range.clone(), web6.clone()],
        ..Default::default()
    };
    f.fw.add("c1:eth0", &all).await.unwrap();

    let s4 = f.save4();
    assert_has(&s4, &jumps_v4(&f).iter().map(String::as_str).collect::<Vec<_>>());
    // Traffic to 127.0.0.0/8 from outside lo that no DNAT sent there is dropped (IPv4 only).
    assert_eq!(
        chain(&s4, "NETKIT-INPUT"),
        [
            "-A NETKIT-INPUT ! -s 127.0.0.0/8 -d 127.0.0.0/8 ! -i lo -m conntrack ! --ctstate DNAT -m comment --comment \"localhost is not reachable from outside lo\" -j DROP",
            "-A NETKIT-INPUT -j NETKIT-SERVICES",
        ]
    );
    assert_eq!(
        chain(&f.save6(), "NETKIT-INPUT"),
        ["-A NETKIT-INPUT -j NETKIT-SERVICES"]
    );
    assert_has(
        &s4,
        &[
            "-A NETKIT-PREROUTING -j NETKIT-SERVICES",
            "-A NETKIT-OUTPUT -j NETKIT-SERVICES",
            "-A NETKIT-SERVICES -m addrtype --dst-type LOCAL -j NETKIT-NODEPORTS",
            "-A NETKIT-SERVICES -m addrtype --dst-type LOCAL -j NETKIT-HOSTPORTS",
            "-A NETKIT-POSTROUTING -s 127.0.0.0/8 -m conntrack --ctstate DNAT -j MASQUERADE",
            "-A NETKIT-POSTROUTING -m mark --mark 0x2000/0x2000 -j MASQUERADE",
            "-A NETKIT-FORWARD -j NETKIT-SERVICES",
        ],
    );
    // Mappings on one host address come before those on every address.
    assert_eq!(
        chain(&s4, "NETKIT-HOSTPORTS"),
        [
            "-A NETKIT-HOSTPORTS -d 192.0.2.10/32 -p udp -m udp --dport 5353 -m comment --comment \"c1:eth0\" -j DNAT --to-destination 10.88.0.6:53",
            "-A NETKIT-HOSTPORTS -p tcp -m tcp --dport 8080 -m comment --comment \"c1:eth0\" -j DNAT --to-destination 10.88.0.5:80",
            "-A NETKIT-HOSTPORTS -p sctp -m sctp --dport 9000 -m comment --comment \"c1:eth0\" -j DNAT --to-destination 10.88.0.7:7000",
            "-A NETKIT-HOSTPORTS -p sctp -m sctp --dport 9001 -m comment --comment \"c1:eth0\" -j DNAT --to-destination 10.88.0.7:7001",
            "-A NETKIT-HOSTPORTS -p sctp -m sctp --dport 9002 -m comment --comment \"c1:eth0\" -j DNAT --to-destination 10.88.0.7:7002",
        ]
    );
    let s6 = f.save6();
    assert_eq!(
        chain(&s6, "NETKIT-HOSTPORTS"),
        ["-A NETKIT-HOSTPORTS -p tcp -m tcp --dport 8080 -m comment --comment \"c1:eth0\" -j DNAT --to-destination [fd00::5]:80"]
    );
    assert!(!s6.contains("127.0.0.0/8"), "no localhost rule in IPv6:\n{s6}");
    assert_has(
        &s6,
        &["-A NETKIT-POSTROUTING -m mark --mark 0x2000/0x2000 -j MASQUERADE"],
    );

    // Removing the only IPv6 object removes every IPv6 chain and jump.
    f.fw.remove(
        "c1:eth0",
        &Rules {
            port_mappings: vec![web6],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let s6 = f.save6();
    assert!(!s6.contains("NETKIT"), "{s6}");
    assert_eq!(without_empty_tables(&s6), without_empty_tables(&before6));
    assert_eq!(f.save4(), s4, "the IPv4 rules did not change");

    // Removing the range takes its three rules only.
    f.fw.remove(
        "c1:eth0",
        &Rules {
            port_mappings: vec![range],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let s4b = f.save4();
    assert_eq!(chain(&s4b, "NETKIT-HOSTPORTS").len(), 2);
    let gone: Vec<&str> = s4.lines().filter(|l| !s4b.lines().any(|x| x == *l)).collect();
    assert_eq!(gone.len(), 3, "{gone:#?}");
    assert!(gone.iter().all(|l| l.contains("--dport 900")));

    let held = f.fw.teardown("c1:eth0").await.unwrap();
    assert_eq!(held.port_mappings.len(), 2);
    assert!(!f.save4().contains("NETKIT"));
    assert_eq!(without_empty_tables(&f.save4()), without_empty_tables(&before4));
    assert!(f.fw.owners().await.unwrap().is_empty());
}

#[tokio::test]
async fn masquerades_networks_and_isolation() {
    if !usable("masquerades_networks_and_isolation") {
        return;
    }
    let f = Fw::new("iptmasq").await;
    f.t.sh("ip link add cni0 type bridge && ip link add cni6 type bridge");
    let rules = Rules {
        networks: vec![
            Network::new("cni0", "10.88.0.0/16".parse().unwrap()),
            Network::new("cni6", "fd00::/64".parse().unwrap()),
        ],
        masquerades: vec![
            Masquerade::address(ip("10.88.0.5"), "10.88.0.0/16".parse().unwrap()),
            Masquerade::subnet("10.77.0.9/24".parse().unwrap()),
            Masquerade::address(ip("fd00::5"), "fd00::/64".parse().unwrap()),
        ],
        isolations: vec![Isolation::new("br0", "br1")],
        ..Default::default()
    };
    f.fw.add("net1", &rules).await.unwrap();
    // No port mapping answers on 127.0.0.1 here: route_localnet stays off.
    assert_eq!(f.t.sh("cat /proc/sys/net/ipv4/conf/cni0/route_localnet").trim(), "0");

    let c = "-m comment --comment net1";
    let s4 = f.save4();
    assert_eq!(
        chain(&s4, "NETKIT-POSTROUTING"),
        [
            format!("-A NETKIT-POSTROUTING -s 10.88.0.0/16 -o cni0 -m conntrack --ctstate DNAT {c} -j MASQUERADE"),
            "-A NETKIT-POSTROUTING -s 127.0.0.0/8 -m conntrack --ctstate DNAT -j MASQUERADE".into(),
            "-A NETKIT-POSTROUTING -m mark --mark 0x2000/0x2000 -j MASQUERADE".into(),
            "-A NETKIT-POSTROUTING -d 224.0.0.0/4 -j RETURN".into(),
            format!("-A NETKIT-POSTROUTING -s 10.88.0.5/32 -d 10.88.0.0/16 {c} -j RETURN"),
            format!("-A NETKIT-POSTROUTING -s 10.77.0.0/24 -d 10.77.0.0/24 {c} -j RETURN"),
            format!("-A NETKIT-POSTROUTING -s 10.88.0.5/32 {c} -j MASQUERADE --random-fully"),
            format!("-A NETKIT-POSTROUTING -s 10.77.0.0/24 {c} -j MASQUERADE --random-fully"),
        ]
    );
    let s6 = f.save6();
    assert_eq!(
        chain(&s6, "NETKIT-POSTROUTING"),
        [
            format!("-A NETKIT-POSTROUTING -s fd00::/64 -o cni6 -m conntrack --ctstate DNAT {c} -j MASQUERADE"),
            "-A NETKIT-POSTROUTING -m mark --mark 0x2000/0x2000 -j MASQUERADE".into(),
            "-A NETKIT-POSTROUTING -d ff00::/8 -j RETURN".into(),
            format!("-A NETKIT-POSTROUTING -s fd00::5/128 -d fd00::/64 {c} -j RETURN"),
            format!("-A NETKIT-POSTROUTING -s fd00::5/128 {c} -j MASQUERADE --random-fully"),
        ]
    );
    let forward = [
        format!("-A NETKIT-FORWARD -i br0 -o br1 {c} -j DROP"),
        format!("-A NETKIT-FORWARD -i br1 -o br0 {c} -j DROP"),
        "-A NETKIT-FORWARD -j NETKIT-SERVICES".into(),
    ];
    assert_eq!(chain(&s4, "NETKIT-FORWARD"), forward);
    assert_eq!(chain(&s6, "NETKIT-FORWARD"), forward);

    // Isolation lives in both families; removing it changes both FORWARD chains only.
    f.fw.remove(
        "net1",
        &Rules {
            isolations: vec![Isolation::new("br0", "br1")],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (t4, t6) = (f.save4(), f.save6());
    assert_eq!(chain(&t4, "NETKIT-FORWARD"), ["-A NETKIT-FORWARD -j NETKIT-SERVICES"]);
    assert_eq!(chain(&t6, "NETKIT-FORWARD"), ["-A NETKIT-FORWARD -j NETKIT-SERVICES"]);
    assert_eq!(chain(&t4, "NETKIT-POSTROUTING"), chain(&s4, "NETKIT-POSTROUTING"));

    // Another owner's masquerade goes after this one's (owners in name order), and leaves
    // with its owner.
    let other = Rules {
        masquerades: vec![Masquerade::address(ip("10.99.0.2"), "10.99.0.0/16".parse().unwrap())],
        ..Default::default()
    };
    f.fw.add("net2", &other).await.unwrap();
    let u4 = chain(&f.save4(), "NETKIT-POSTROUTING");
    assert_eq!(u4.len(), 10);
    assert!(u4[9].contains("-s 10.99.0.2/32 -m comment --comment net2 -j MASQUERADE"));
    f.fw.teardown("net2").await.unwrap();
    assert_eq!(
        chain(&f.save4(), "NETKIT-POSTROUTING"),
        chain(&s4, "NETKIT-POSTROUTING")
    );

    f.fw.teardown("net1").await.unwrap();
    assert!(!f.save4().contains("NETKIT") && !f.save6().contains("NETKIT"));
}

/// The rules of every chain of the service behind `vip` (its SVC chain and endpoint chains).
fn service_chains(save: &str, svc_chain: &str) -> Vec<String> {
    let id = svc_chain.trim_start_matches("NETKIT-SVC-");
    save.lines()
        .filter(|l| l.contains(&format!("-SVC-{id}")) || l.contains(&format!("-SEP-{id}-")))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn services_and_endpoints() {
    if !usable("services_and_endpoints") {
        return;
    }
    let f = Fw::new("iptsvc").await;
    let web = Service::new("default/web", Protocol::Tcp, ip("10.96.0.10"), 80)
        .node_port(30080)
        .affinity(Duration::from_secs(600))
        .masquerade(true)
        .endpoint(Endpoint::new(ip("10.88.0.5"), 8080))
        .endpoint(Endpoint::new(ip("10.88.0.6"), 8080));
    let db =
        Service::new("default/db", Protocol::Udp, ip("10.96.0.11"), 53).endpoint(Endpoint::new(ip("10.88.0.9"), 5353));
    let web6 = Service::new("default/web6", Protocol::Tcp, ip("fd00:96::10"), 80)
        .affinity(Duration::from_secs(5))
        .endpoint(Endpoint::new(ip("fd00::5"), 8080));
    f.fw.add(
        "svc:web",
        &Rules {
            services: vec![web.clone(), web6],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    f.fw.add(
        "svc:db",
        &Rules {
            services: vec![db],
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let s = f.save4();
    let c = "-m comment --comment \"svc:web\"";
    let svc = jump_target(&s, "NETKIT-SERVICES", "-d 10.96.0.10/32");
    assert!(svc.starts_with("NETKIT-SVC-") && svc.len() <= 28, "{svc}");
    let id = &svc["NETKIT-SVC-".len()..];
    let (sep0, sep1) = (format!("NETKIT-SEP-{id}-0"), format!("NETKIT-SEP-{id}-1"));
    assert_has(
        &s,
        &[
            &format!("-A NETKIT-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 {c} -j {svc}"),
            &format!("-A NETKIT-NODEPORTS -p tcp -m tcp --dport 30080 {c} -j {svc}"),
        ],
    );
    let m = "--mask 255.255.255.255 --rsource";
    assert_eq!(
        chain(&s, &svc),
        [
            format!("-A {svc} {c} -j MARK --set-xmark 0x2000/0x2000"),
            format!("-A {svc} -m recent --rcheck --seconds 600 --reap --name {sep0} {m} {c} -j {sep0}"),
            format!("-A {svc} -m recent --rcheck --seconds 600 --reap --name {sep1} {m} {c} -j {sep1}"),
            format!("-A {svc} -m statistic --mode random --probability 0.50000000000 {c} -j {sep0}"),
            format!("-A {svc} {c} -j {sep1}"),
        ]
    );
    assert_eq!(
        chain(&s, &sep0),
        [
            format!("-A {sep0} -s 10.88.0.5/32 {c} -j MARK --set-xmark 0x2000/0x2000"),
            format!("-A {sep0} -m recent --set --name {sep0} {m} {c}"),
            format!("-A {sep0} -p tcp {c} -j DNAT --to-destination 10.88.0.5:8080"),
        ]
    );
    let dbsvc = jump_target(&s, "NETKIT-SERVICES", "-d 10.96.0.11/32");
    let dbsep = dbsvc.replace("-SVC-", "-SEP-") + "-0";
    let cdb = "-m comment --comment \"svc:db\"";
    assert_eq!(chain(&s, &dbsvc), [format!("-A {dbsvc} {cdb} -j {dbsep}")]);
    assert_eq!(
        chain(&s, &dbsep),
        [
            format!("-A {dbsep} -s 10.88.0.9/32 {cdb} -j MARK --set-xmark 0x2000/0x2000"),
            format!("-A {dbsep} -p udp {cdb} -j DNAT --to-destination 10.88.0.9:5353"),
        ]
    );
    // Services come before the local-address chains.
    let services = chain(&s, "NETKIT-SERVICES");
    assert_eq!(services.len(), 4);
    assert!(services[2].contains("NETKIT-NODEPORTS") && services[3].contains("NETKIT-HOSTPORTS"));
    assert!(chain(&s, "NETKIT-SERVICES").iter().all(|r| !r.contains("DROP")));

    let s6 = f.save6();
    let svc6 = jump_target(&s6, "NETKIT-SERVICES", "-d fd00:96::10/128");
    let sep6 = svc6.replace("-SVC-", "-SEP-") + "-0";
    assert_has(
        &s6,
        &[
            &format!("-A {sep6} -s fd00::5/128 {c} -j MARK --set-xmark 0x2000/0x2000"),
            &format!(
                "-A {sep6} -m recent --set --name {sep6} --mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource {c}"
            ),
            &format!("-A {sep6} -p tcp {c} -j DNAT --to-destination [fd00::5]:8080"),
        ],
    );

    // A third endpoint: only web's chains change.
    let third = Endpoint::new(ip("10.88.0.7"), 8080);
    f.fw.add_endpoint("default/web", third).await.unwrap();
    let t = f.save4();
    let outside = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.contains(&format!("-SVC-{id}")) && !l.contains(&format!("-SEP-{id}-")))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(outside(&t), outside(&s), "only the service's chains change");
    assert_eq!(f.save6(), s6);
    let sep2 = format!("NETKIT-SEP-{id}-2");
    let rules = chain(&t, &svc);
    assert_eq!(rules.len(), 1 + 3 + 3);
    assert!(rules[4].contains(&format!("--probability 0.33333333349 {c} -j {sep0}")));
    assert!(rules[5].contains(&format!("--probability 0.50000000000 {c} -j {sep1}")));
    assert_eq!(rules[6], format!("-A {svc} {c} -j {sep2}"));
    assert_has(
        &t,
        &[&format!("-A {sep2} -p tcp {c} -j DNAT --to-destination 10.88.0.7:8080")],
    );

    // Back to two: the same rules as before, the third chain gone.
    f.fw.remove_endpoint("default/web", third).await.unwrap();
    assert_eq!(f.save4(), s);

    // No endpoints: the service's connections are rejected (in filter: nat refuses REJECT);
    // its nat chain lets them through (no masquerade mark either).
    for ep in &web.endpoints {
        f.fw.remove_endpoint("default/web", *ep).await.unwrap();
    }
    let u = f.save4();
    assert!(chain(&u, &svc).is_empty(), "{u}");
    assert!(!u.contains(&format!("-SEP-{id}-")), "{u}");
    assert_eq!(
        chain(&u, "NETKIT-SERVICES")
            .into_iter()
            .filter(|r| r.contains("REJECT"))
            .collect::<Vec<_>>(),
        [
            format!("-A NETKIT-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 {c} -j REJECT --reject-with tcp-reset"),
            format!(
                "-A NETKIT-SERVICES -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 30080 {c} -j REJECT --reject-with tcp-reset"
            ),
        ]
    );
    assert_eq!(service_chains(&u, &dbsvc), service_chains(&s, &dbsvc));

    // An unknown service is NotFound.
    let e = f.fw.add_endpoint("default/none", third).await.unwrap_err();
    assert!(matches!(e, FirewallError::NotFound(_)), "{e}");

    f.fw.teardown("svc:web").await.unwrap();
    let v = f.save4();
    assert!(
        !v.contains(&format!("-SVC-{id}")) && chain(&v, "NETKIT-SERVICES").iter().all(|r| !r.contains("REJECT")),
        "{v}"
    );
    assert!(!f.save6().contains("NETKIT"));
    assert_eq!(service_chains(&v, &dbsvc), service_chains(&s, &dbsvc));
    f.fw.teardown("svc:db").await.unwrap();
    assert!(!f.save4().contains("NETKIT"));
}

/// Rules of other programs in every table of both families.
fn foreign_rules(t: &TestNs) {
    t.sh(
        "iptables -t nat -N DOCKER && iptables -t nat -A DOCKER -i docker0 -j RETURN && \
         iptables -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER && \
         iptables -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE && \
         iptables -P FORWARD DROP && iptables -N DOCKER-USER && iptables -A DOCKER-USER -j RETURN && \
         iptables -A FORWARD -j DOCKER-USER && iptables -A INPUT -i lo -j ACCEPT && \
         iptables -t mangle -A PREROUTING -j MARK --set-mark 1 && \
         ip6tables -t nat -A POSTROUTING -s fd17::/64 -j MASQUERADE && \
         ip6tables -A FORWARD -p icmpv6 -j ACCEPT && ip6tables -A OUTPUT -o lo -j ACCEPT",
    );
}

fn everything(n: u8) -> Rules {
    let v4 = |s: &str| ip(&s.replace('N', &n.to_string()));
    Rules {
        port_mappings: vec![
            PortMapping::new(Protocol::Tcp, 8000 + u16::from(n), v4("10.88.0.N"), 80),
            PortMapping::new(Protocol::Udp, 7000 + u16::from(n), ip(&format!("fd00::{n}")), 53),
        ],
        masquerades: vec![
            Masquerade::address(v4("10.88.0.N"), "10.88.0.0/16".parse().unwrap()),
            Masquerade::address(ip(&format!("fd00::{n}")), "fd00::/64".parse().unwrap()),
        ],
        networks: vec![
            Network::new("cni0", "10.88.0.0/16".parse().unwrap()),
            Network::new("cni0", "fd00::/64".parse().unwrap()),
        ],
        isolations: vec![Isolation::new("cni0", &format!("br{n}"))],
        services: vec![
            Service::new(&format!("ns/s{n}"), Protocol::Tcp, v4("10.96.0.N"), 80)
                .node_port(30000 + u16::from(n))
                .affinity(Duration::from_secs(60))
                .endpoint(Endpoint::new(v4("10.88.0.N"), 80)),
            Service::new(&format!("ns/e{n}"), Protocol::Tcp, ip(&format!("fd00:96::{n}")), 80),
        ],
    }
}

#[tokio::test]
async fn teardown_of_every_owner_restores_the_original_ruleset() {
    if !usable("teardown_of_every_owner_restores_the_original_ruleset") {
        return;
    }
    let t = TestNs::new("iptorig").await;
    t.sh("ip link add cni0 type bridge");
    foreign_rules(&t);
    let f = Fw::in_ns(t).await;
    let (before4, before6) = (f.save4(), f.save6());
    assert!(before4.contains("DOCKER-USER") && before6.contains("fd17::/64"));

    for n in 1..=3 {
        f.fw.add(&format!("ctr{n}:eth0"), &everything(n)).await.unwrap();
    }
    let s4 = f.save4();
    // Our jumps come first; the other rules stay, in their order.
    let pre = chain(&table(&s4, "nat"), "PREROUTING");
    assert_eq!(
        pre,
        [
            format!("-A PREROUTING {} -j NETKIT-PREROUTING", f.jump_comment()),
            "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER".to_string(),
        ]
    );
    assert_has(
        &s4,
        &[
            ":FORWARD DROP",
            "-A FORWARD -j DOCKER-USER",
            "-A DOCKER -i docker0 -j RETURN",
        ],
    );
    assert_eq!(chain(&s4, "NETKIT-HOSTPORTS").len(), 3);

    // Adding the same again changes nothing.
    f.fw.add("ctr2:eth0", &everything(2)).await.unwrap();
    assert_eq!(f.save4(), s4);

    f.fw.teardown("ctr2:eth0").await.unwrap();
    let mid = f.save4();
    assert_eq!(chain(&mid, "NETKIT-HOSTPORTS").len(), 2);
    assert!(!mid.contains("ctr2:eth0"));
    assert_eq!(f.fw.gc(&["ctr3:eth0".to_string()]).await.unwrap(), ["ctr1:eth0"]);
    f.fw.teardown("ctr3:eth0").await.unwrap();

    assert_eq!(f.save4(), before4);
    assert_eq!(f.save6(), before6);

    // Idempotent: tearing down again (or an owner that never was) changes nothing.
    assert_eq!(f.fw.teardown("ctr3:eth0").await.unwrap(), Rules::default());
    assert_eq!(f.fw.teardown("never").await.unwrap(), Rules::default());
    f.fw.reconcile().await.unwrap();
    assert_eq!(f.save4(), before4);
    assert_eq!(f.save6(), before6);
}

#[tokio::test]
async fn fresh_namespace_keeps_only_empty_tables() {
    if !usable("fresh_namespace_keeps_only_empty_tables") {
        return;
    }
    let f = Fw::new("iptfresh").await;
    f.t.sh("ip link add cni0 type bridge");
    let (before4, before6) = (f.save4(), f.save6());
    f.fw.add("a", &everything(1)).await.unwrap();
    f.fw.add("b", &everything(2)).await.unwrap();
    f.fw.teardown("a").await.unwrap();
    f.fw.teardown("b").await.unwrap();
    let (after4, after6) = (f.save4(), f.save6());
    assert!(!after4.contains("NETKIT") && !after6.contains("NETKIT"));
    assert!(!after4.contains("-A ") && !after6.contains("-A "), "{after4}\n{after6}");
    assert_eq!(without_empty_tables(&after4), without_empty_tables(&before4));
    assert_eq!(without_empty_tables(&after6), without_empty_tables(&before6));
}

#[tokio::test]
async fn reconcile_restores_flushed_rules() {
    if !usable("reconcile_restores_flushed_rules") {
        return;
    }
    let t = TestNs::new("iptrec").await;
    t.sh("ip link add cni0 type bridge");
    foreign_rules(&t);
    let f = Fw::in_ns(t).await;
    f.fw.add("a", &everything(1)).await.unwrap();
    f.fw.add("b", &everything(2)).await.unwrap();
    let (s4, s6) = (f.save4(), f.save6());

    f.t.sh("iptables -t nat -F");
    assert!(!f.save4().contains("-j NETKIT-PREROUTING"));
    f.fw.reconcile().await.unwrap();
    // The flush took the other program's nat rules too; ours are back, jumps first.
    let r4 = f.save4();
    assert_eq!(
        chain(&table(&r4, "nat"), "PREROUTING"),
        [format!("-A PREROUTING {} -j NETKIT-PREROUTING", f.jump_comment())]
    );
    let ours = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("NETKIT"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(ours(&r4), ours(&s4));
    assert_eq!(f.save6(), s6);

    // Flushed and deleted chains, both families, and a stray chain of ours: all put right.
    f.t.sh(
        "iptables -t nat -F && iptables -t nat -X && iptables -F && iptables -X NETKIT-FORWARD && \
         iptables -t nat -N NETKIT-SVC-0123456789ab && ip6tables -t nat -F && ip6tables -F FORWARD",
    );
    f.fw.reconcile().await.unwrap();
    assert_eq!(ours(&f.save4()), ours(&s4));
    assert_eq!(ours(&f.save6()), ours(&s6));

    // A change after the reconcile finds everything in place.
    f.fw.teardown("a").await.unwrap();
    f.fw.teardown("b").await.unwrap();
    assert!(!f.save4().contains("NETKIT") && !f.save6().contains("NETKIT"));
}

/// Kernel errors keep the tool's words and the owner; firewall names make chain prefixes, and
/// the chains of one name belong to one state directory. (A host port another owner maps is a
/// `Conflict` that changes nothing: `bad_input_is_refused_and_changes_nothing::iptables` in
/// tests/firewall.rs checks that, with the whole ruleset of both families.)
#[tokio::test]
async fn kernel_errors_and_chain_prefixes() {
    if !usable("kernel_errors_and_chain_prefixes") {
        return;
    }
    let f = Fw::new("ipterr").await;
    let m = PortMapping::new(Protocol::Tcp, 8080, ip("10.88.0.5"), 80);
    let one = Rules {
        port_mappings: vec![m],
        ..Default::default()
    };
    f.fw.add("a", &one).await.unwrap();

    // Another program jumps into one of our chains: deleting it fails, with the tool's words.
    f.t.sh("iptables -t nat -N OTHER && iptables -t nat -A OTHER -j NETKIT-HOSTPORTS");
    let e = f.fw.teardown("a").await.unwrap_err();
    match &e {
        FirewallError::Kernel { driver, op, reason, .. } => {
            assert_eq!(*driver, "iptables");
            assert_eq!(op, "iptables-restore");
            assert!(reason.contains("NETKIT-HOSTPORTS"), "{reason}");
        }
        other => panic!("expected a kernel error, got {other}"),
    }
    // The owner is still recorded, so the teardown can be repeated once the jump is gone.
    assert_eq!(f.fw.owners().await.unwrap(), ["a"]);
    f.t.sh("iptables -t nat -F OTHER && iptables -t nat -X OTHER");
    f.fw.teardown("a").await.unwrap();
    assert!(!f.save4().contains("NETKIT"));

    // A name that makes no chain prefix.
    let bad = Iptables::open(
        &f.t.ns,
        FirewallOptions::default().name("much-too-long").state_dir(f.dir.path()),
    )
    .await;
    assert!(matches!(bad, Err(FirewallError::Invalid { .. })));
    // A custom prefix.
    let dir = tempdir("iptstate");
    let kube = Iptables::open(&f.t.ns, FirewallOptions::default().name("kn").state_dir(dir.path()))
        .await
        .unwrap();
    kube.add("a", &one).await.unwrap();
    let k = f.save4();
    let kn_id = std::fs::read_to_string(dir.path().join("id")).unwrap();
    assert_has(
        &k,
        &[&format!(
            "-A PREROUTING -m comment --comment \"kn state {}\" -j KN-PREROUTING",
            kn_id.trim()
        )],
    );
    assert!(!k.contains("NETKIT"));
    // The KN- chains belong to `dir`: a firewall of the same name with another state directory
    // is refused, and changes nothing.
    let other = tempdir("iptstate");
    match Iptables::open(&f.t.ns, FirewallOptions::default().name("kn").state_dir(other.path())).await {
        Err(FirewallError::Foreign { theirs, .. }) => assert_eq!(theirs, kn_id.trim()),
        Err(e) => panic!("a second state directory for the KN- chains: {e}"),
        Ok(_) => panic!("a second state directory for the KN- chains was accepted"),
    }
    assert_eq!(f.save4(), k);
    kube.teardown("a").await.unwrap();
    assert!(!f.save4().contains("KN-"));
}
