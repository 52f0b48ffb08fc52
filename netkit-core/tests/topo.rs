//! Topology files applied to the real kernel: the lab's host side lives in a namespace the test
//! makes (never the root one), its nodes are namespaces named after the lab, and the lab is
//! destroyed when the test ends, also on panic.

use netkit_core::topo::{self, Format, Lab, TopoOptions};
use netkit_core::NetNs;
use netkit_test_support::{in_ns, snapshot, tempdir, unique, TestNs};

/// Two hosts on a bridge, a router between the bridge and a third host: addresses, routes,
/// forwarding and an `exec` line, in netkit's format.
fn lab_text(name: &str) -> String {
    format!(
        r#"
name: {name}
topology:
  nodes:
    h1:
      addresses: {{eth1: [10.61.0.1/24]}}
      routes: [{{dst: default, via: 10.61.0.254}}]
    h2:
      addresses: {{eth1: [10.61.0.2/24]}}
      routes: [{{dst: default, via: 10.61.0.254}}]
    r1:
      addresses: {{eth1: [10.61.0.254/24], eth2: [10.62.0.1/30]}}
      sysctls: {{net.ipv4.ip_forward: 1}}
      exec: ["touch /tmp/{name}-exec-ran"]
    h3:
      addresses: {{eth1: [10.62.0.2/30]}}
      routes: [{{dst: 10.61.0.0/24, via: 10.62.0.1}}]
    {name}br: {{kind: bridge}}
  links:
    - endpoints: ["h1:eth1", "{name}br:{name}h1"]
    - endpoints: ["h2:eth1", "{name}br:{name}h2"]
    - endpoints: ["r1:eth1", "{name}br:{name}r1"]
    - endpoints: ["r1:eth2", "h3:eth1"]
"#
    )
}

/// The lab, destroyed on drop (and its exec marker removed).
struct Lab1 {
    lab: Lab,
    opts: TopoOptions,
    _state: tempfile::TempDir,
    host: TestNs,
}

impl Lab1 {
    async fn new(text: &str) -> Self {
        let host = TestNs::new("th").await;
        let state = tempdir("topo");
        let lab = topo::parse(text, Format::Netkit).expect("a valid lab");
        let mut opts = TopoOptions::new(netkit_core::NetNs::clone(&host.ns));
        opts.state_dir = state.path().to_path_buf();
        Lab1 {
            lab,
            opts,
            _state: state,
            host,
        }
    }

    fn ns(&self, node: &str) -> String {
        self.lab.netns_of(node)
    }

    fn ping(&self, from: &str, to: &str) -> bool {
        in_ns(&self.ns(from), &["ping", "-c1", "-W2", "-q", to])
            .status
            .success()
    }
}

impl Drop for Lab1 {
    fn drop(&mut self) {
        for n in self.lab.nodes.keys() {
            let _ = NetNs::delete(&self.lab.netns_of(n));
        }
        let _ = std::fs::remove_file(format!("/tmp/{}-exec-ran", self.lab.name));
    }
}

#[tokio::test]
async fn apply_makes_a_working_lab_reapply_changes_nothing_and_destroy_removes_it() {
    let name = unique("t");
    let l = Lab1::new(&lab_text(&name)).await;

    let first = topo::apply(&l.lab, &l.opts).await.expect("apply");
    assert!(
        first
            .changes
            .iter()
            .any(|c| c == &format!("create netns {}", l.ns("h1"))),
        "{first:?}"
    );
    // Real packets: across the bridge, and through the router.
    assert!(
        l.ping("h1", "10.61.0.2"),
        "h1 -> h2 over the bridge\nhost: {}\nh1: {}\nh2: {}",
        l.host.sh("ip -br link; bridge link; ip -br addr"),
        String::from_utf8_lossy(&in_ns(&l.ns("h1"), &["ip", "-br", "addr"]).stdout),
        String::from_utf8_lossy(&in_ns(&l.ns("h2"), &["ip", "-br", "addr"]).stdout)
    );
    assert!(l.ping("h1", "10.62.0.2"), "h1 -> r1 -> h3");
    assert!(l.ping("h3", "10.61.0.1"), "h3 -> r1 -> h1");
    assert!(
        std::path::Path::new(&format!("/tmp/{name}-exec-ran")).exists(),
        "exec ran"
    );
    // The host side is in the test's host namespace: the bridge and its three ports.
    let host_links = snapshot::link_names(l.host.name());
    for want in [format!("{name}br"), format!("{name}h1"), format!("{name}r1")] {
        assert!(host_links.contains(&want), "{want} in {host_links:?}");
    }

    // Every declared address from every other node: all reachable (h3's only route back is to
    // 10.61.0.0/24, and the router answers from both sides).
    let matrix = topo::ping_matrix(&l.lab).unwrap();
    // h1, h2 and h3 each ping the 4 addresses of the others (r1 has 2), r1 pings 3.
    assert_eq!(matrix.len(), 3 * 4 + 3, "{matrix:?}");
    let failed: Vec<_> = matrix.iter().filter(|p| !p.ok).collect();
    assert!(failed.is_empty(), "unreachable: {failed:?}");

    // status: in sync; a link someone adds inside a node is reported as extra, and left alone.
    assert_eq!(topo::status(&l.lab, &l.opts).await.unwrap(), topo::Status::default());
    in_ns(
        &l.ns("h2"),
        &["ip", "link", "add", "side0", "type", "veth", "peer", "name", "side1"],
    );
    let st = topo::status(&l.lab, &l.opts).await.unwrap();
    assert!(st.in_sync());
    assert_eq!(st.extra, ["h2:side0", "h2:side1"]);

    let again = topo::apply(&l.lab, &l.opts).await.expect("re-apply");
    assert_eq!(again.changes, Vec::<String>::new(), "re-apply changes nothing");

    // Drift: someone deletes a route and one end of a link; status (dry run) names both, apply
    // repairs exactly those.
    in_ns(&l.ns("h3"), &["ip", "route", "del", "10.61.0.0/24"]);
    in_ns(&l.ns("h2"), &["ip", "link", "del", "eth1"]);
    let mut dry = l.opts.clone();
    dry.dry_run = true;
    let drift = topo::apply(&l.lab, &dry).await.unwrap().changes;
    assert!(
        drift.iter().any(|c| c.starts_with("add route 10.61.0.0/24")),
        "{drift:?}"
    );
    assert!(drift.iter().any(|c| c.contains("create link h2:eth1")), "{drift:?}");
    assert!(!l.ping("h3", "10.61.0.1"), "the drift is real");
    let down: Vec<String> = topo::ping_matrix(&l.lab)
        .unwrap()
        .into_iter()
        .filter(|p| !p.ok)
        .map(|p| format!("{}->{}", p.from, p.addr))
        .collect();
    assert!(down.contains(&"h3->10.61.0.1".to_string()), "{down:?}");
    assert!(down.contains(&"h1->10.61.0.2".to_string()), "{down:?}");
    let repaired = topo::apply(&l.lab, &l.opts).await.unwrap().changes;
    assert_eq!(
        repaired.len(),
        drift.len(),
        "apply does what the plan said: {repaired:?} vs {drift:?}"
    );
    assert!(l.ping("h3", "10.61.0.1"));
    // h2's eth1 is a new device with the old one's (stable) MAC: h1's neighbour entry for it
    // is still right, so traffic resumes at once.
    assert!(l.ping("h1", "10.61.0.2"), "h1 reaches the remade h2");

    topo::destroy(&l.lab, &l.opts).await.expect("destroy");
    let left = NetNs::list().unwrap();
    assert!(l.lab.nodes.keys().all(|n| !left.contains(&l.ns(n))), "namespaces gone");
    let host_links = snapshot::link_names(l.host.name());
    assert!(
        host_links.iter().all(|n| !n.starts_with(&name)),
        "host side gone: {host_links:?}"
    );
    assert!(
        std::fs::read_dir(&l.opts.state_dir).unwrap().next().is_none(),
        "record removed"
    );
    topo::destroy(&l.lab, &l.opts).await.expect("destroy is idempotent");
}

#[tokio::test]
async fn an_edited_file_changes_only_what_was_edited() {
    let name = unique("t");
    let l = Lab1::new(&lab_text(&name)).await;
    topo::apply(&l.lab, &l.opts).await.expect("apply");
    // Edit: h2 leaves, h1 gets another address, h3's route goes.
    let edited = lab_text(&name)
        .replace(
            "    h2:\n      addresses: {eth1: [10.61.0.2/24]}\n      routes: [{dst: default, via: 10.61.0.254}]\n",
            "",
        )
        .replace(&format!("    - endpoints: [\"h2:eth1\", \"{name}br:{name}h2\"]\n"), "")
        .replace("{eth1: [10.61.0.1/24]}", "{eth1: [10.61.0.1/24, 10.61.0.11/24]}")
        .replace("      routes: [{dst: 10.61.0.0/24, via: 10.62.0.1}]\n", "");
    let lab2 = topo::parse(&edited, Format::Netkit).expect("edited lab");
    let plan = {
        let mut dry = l.opts.clone();
        dry.dry_run = true;
        topo::apply(&lab2, &dry).await.unwrap().changes
    };
    let mut want = vec![
        format!("delete link {name}h2"),
        format!("delete netns {}", l.ns("h2")),
        format!("add address 10.61.0.11/24 to h1:eth1"),
        format!("delete route 10.61.0.0/24 in h3"),
    ];
    want.sort();
    let mut got = plan.clone();
    got.sort();
    assert_eq!(got, want);
    let done = topo::apply(&lab2, &l.opts).await.unwrap().changes;
    assert_eq!(done, plan);
    assert!(!NetNs::list().unwrap().contains(&l.ns("h2")));
    assert!(!snapshot::link_names(l.host.name()).contains(&format!("{name}h2")));
    assert!(in_ns(&l.ns("h1"), &["ip", "-o", "addr", "show", "eth1"])
        .status
        .success());
    assert!(!l.ping("h3", "10.61.0.1"), "h3's route is gone");
    assert_eq!(topo::apply(&lab2, &l.opts).await.unwrap().changes, Vec::<String>::new());
    topo::destroy(&lab2, &l.opts).await.expect("destroy");
}

#[tokio::test]
async fn a_containerlab_file_applies_as_it_is() {
    let name = unique("c");
    let text = format!(
        r#"
name: {name}
topology:
  kinds:
    linux: {{image: alpine:3}}
  nodes:
    n1: {{kind: linux, exec: ["ip addr add 192.168.90.1/24 dev eth1"]}}
    n2: {{kind: linux, exec: ["ip addr add 192.168.90.2/24 dev eth1"]}}
    {name}b: {{kind: bridge}}
  links:
    - endpoints: ["n1:eth1", "{name}b:{name}1"]
    - endpoints: ["n2:eth1", "{name}b:{name}2"]
"#
    );
    let host = TestNs::new("ch").await;
    let state = tempdir("topo");
    let lab = topo::parse(&text, Format::Containerlab).unwrap();
    assert_eq!(lab.netns_of("n1"), format!("clab-{name}-n1"));
    assert_eq!(lab.warnings.len(), 1, "{:?}", lab.warnings);
    let mut opts = TopoOptions::new(netkit_core::NetNs::clone(&host.ns));
    opts.state_dir = state.path().to_path_buf();
    struct Gone(Vec<String>);
    impl Drop for Gone {
        fn drop(&mut self) {
            for n in &self.0 {
                let _ = NetNs::delete(n);
            }
        }
    }
    let _gone = Gone(vec![lab.netns_of("n1"), lab.netns_of("n2")]);
    topo::apply(&lab, &opts).await.expect("apply");
    let ok = in_ns(&lab.netns_of("n1"), &["ping", "-c1", "-W2", "-q", "192.168.90.2"]);
    assert!(ok.status.success(), "n1 -> n2 through the bridge, addresses from exec");
    topo::destroy(&lab, &opts).await.unwrap();
    assert!(!NetNs::list().unwrap().contains(&lab.netns_of("n1")));
}

/// A pod network: two pods on a bridge in the host namespace, the host (`kind: host`) the
/// gateway with NAT and a port mapping, and an outside node on a link to the host.
fn pods_text(name: &str) -> String {
    format!(
        r#"
name: {name}
topology:
  nodes:
    host:
      kind: host
      addresses: {{{name}br: [10.70.0.1/24], {name}x: [192.0.2.1/24]}}
      sysctls: {{net.ipv4.ip_forward: 1}}
      nat:
        masquerade: [10.70.0.0/24]
        ports: [{{proto: tcp, port: 8080, to: "10.70.0.2:80"}}]
    pod1:
      addresses: {{eth0: [10.70.0.2/24]}}
      routes: [{{dst: default, via: 10.70.0.1}}]
    pod2:
      addresses: {{eth0: [10.70.0.3/24]}}
      routes: [{{dst: default, via: 10.70.0.1}}]
    out:
      addresses: {{eth0: [192.0.2.2/24]}}
    {name}br: {{kind: bridge}}
  links:
    - endpoints: ["pod1:eth0", "{name}br:{name}p1"]
    - endpoints: ["pod2:eth0", "{name}br:{name}p2"]
    - endpoints: ["out:eth0", "host:{name}x"]
"#
    )
}

#[tokio::test]
async fn the_host_node_gets_addresses_nat_and_port_mappings() {
    use netkit_test_support::echo::{tcp_hello_from, Server};
    let name = unique("p");
    let l = Lab1::new(&pods_text(&name)).await;
    let first = topo::apply(&l.lab, &l.opts).await.expect("apply");
    assert!(
        first.changes.iter().any(|c| c.starts_with("add port mapping tcp 8080")),
        "{first:?}"
    );
    // The host side: its addresses are on the bridge and on the link to `out`.
    assert!(l.host.sh("ip -o addr").contains("10.70.0.1/24"));
    assert!(l.host.sh("ip -o addr").contains("192.0.2.1/24"));
    // pod1 -> out is masqueraded: out sees the host's address.
    let out_ns = NetNs::open(&l.ns("out")).unwrap();
    let _srv = Server::tcp(&out_ns, "OUT", "192.0.2.2:9000".parse().unwrap());
    let pod1 = NetNs::open(&l.ns("pod1")).unwrap();
    let hello = tcp_hello_from(&pod1, "192.0.2.2:9000".parse().unwrap()).expect("pod1 -> out");
    assert_eq!(hello.peer.ip().to_string(), "192.0.2.1", "masqueraded");
    // out -> host:8080 reaches pod1:80.
    let _web = Server::tcp(&pod1, "POD1", "0.0.0.0:80".parse().unwrap());
    let hello = tcp_hello_from(&out_ns, "192.0.2.1:8080".parse().unwrap()).expect("out -> host:8080 -> pod1");
    assert_eq!(hello.name, "POD1");
    assert_eq!(
        topo::apply(&l.lab, &l.opts).await.unwrap().changes,
        Vec::<String>::new()
    );

    // The mapping moves to pod2: exactly one mapping goes and one comes.
    let moved = topo::parse(
        &pods_text(&name).replace("10.70.0.2:80", "10.70.0.3:80"),
        Format::Netkit,
    )
    .unwrap();
    let changes = topo::apply(&moved, &l.opts).await.unwrap().changes;
    assert_eq!(
        changes,
        [
            "add port mapping tcp 8080 -> 10.70.0.3:80 in host",
            "delete port mapping tcp 8080 -> 10.70.0.2:80 in host"
        ]
    );
    let pod2 = NetNs::open(&l.ns("pod2")).unwrap();
    let _web2 = Server::tcp(&pod2, "POD2", "0.0.0.0:80".parse().unwrap());
    let hello = tcp_hello_from(&out_ns, "192.0.2.1:8080".parse().unwrap()).expect("out -> host:8080 -> pod2");
    assert_eq!(hello.name, "POD2");

    topo::destroy(&moved, &l.opts).await.expect("destroy");
    assert!(!l.host.sh("nft list ruleset").contains("8080"), "the mapping is gone");
    assert!(
        !l.host.sh("ip -o addr").contains("10.70.0.1"),
        "the bridge and its address are gone"
    );
    assert!(
        std::fs::read_dir(&l.opts.state_dir).unwrap().next().is_none(),
        "no state left"
    );
}

#[tokio::test]
async fn a_failed_apply_is_undone_with_atomic_and_finished_by_destroy_without() {
    let name = unique("a");
    // r1's exec fails after everything else was made.
    let text = lab_text(&name).replace(&format!("touch /tmp/{name}-exec-ran"), "exit 3");
    let mut l = Lab1::new(&text).await;
    let before_host = snapshot::link_names(l.host.name());

    l.opts.atomic = true;
    let err = topo::apply(&l.lab, &l.opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("exec \"exit 3\""), "{msg}");
    assert!(
        matches!(err, topo::TopoError::RolledBack { undone, .. } if undone == 9),
        "{msg}"
    ); // 4 namespaces, the bridge, 4 links
    let left = NetNs::list().unwrap();
    assert!(
        l.lab.nodes.keys().all(|n| !left.contains(&l.ns(n))),
        "namespaces undone"
    );
    assert_eq!(
        snapshot::link_names(l.host.name()),
        before_host,
        "host side undone: {msg}"
    );

    // Without --atomic the lab stays as far as it got; destroy removes all of it.
    l.opts.atomic = false;
    topo::apply(&l.lab, &l.opts).await.unwrap_err();
    assert!(NetNs::list().unwrap().contains(&l.ns("h1")));
    topo::destroy(&l.lab, &l.opts).await.expect("destroy");
    let left = NetNs::list().unwrap();
    assert!(l.lab.nodes.keys().all(|n| !left.contains(&l.ns(n))));
    assert_eq!(snapshot::link_names(l.host.name()), before_host);
}

#[tokio::test]
async fn addresses_from_a_pool_are_stable_across_applies_and_given_back_by_destroy() {
    let name = unique("q");
    let text = format!(
        r#"
name: {name}
pools:
  lan: {{subnet: 10.66.0.0/24, range_start: 10.66.0.10, gateway: 10.66.0.1}}
topology:
  nodes:
    host: {{kind: host, addresses: {{{name}br: [10.66.0.1/24]}}}}
    a: {{addresses: {{eth0: ["pool:lan"]}}}}
    b: {{addresses: {{eth0: ["pool:lan"]}}}}
    {name}br: {{kind: bridge}}
  links:
    - endpoints: ["a:eth0", "{name}br:{name}a"]
    - endpoints: ["b:eth0", "{name}br:{name}b"]
"#
    );
    let l = Lab1::new(&text).await;
    let mut dry = l.opts.clone();
    dry.dry_run = true;
    let plan = topo::apply(&l.lab, &dry).await.unwrap().changes;
    assert!(
        plan.contains(&"allocate an address from pool lan for a:eth0".to_string()),
        "{plan:?}"
    );
    let first = topo::apply(&l.lab, &l.opts).await.unwrap().changes;
    // From range_start on; never the gateway.
    assert!(
        first.contains(&"add address 10.66.0.10/24 to a:eth0".to_string()),
        "{first:?}"
    );
    assert!(
        first.contains(&"add address 10.66.0.11/24 to b:eth0".to_string()),
        "{first:?}"
    );
    assert_eq!(
        topo::apply(&l.lab, &l.opts).await.unwrap().changes,
        Vec::<String>::new()
    );
    let (resolved, pending) = topo::resolve(&l.lab, &l.opts).unwrap();
    assert!(pending.is_empty());
    let a = resolved.nodes["a"].addresses["eth0"][0];
    let b = resolved.nodes["b"].addresses["eth0"][0];
    assert_ne!(a, b);
    assert!(l
        .host
        .sh(&format!("ip netns exec {} ip -o addr show eth0", l.ns("a")))
        .contains(&a.to_string()));
    assert!(topo::ping_matrix(&resolved).unwrap().iter().all(|p| p.ok));
    topo::destroy(&l.lab, &l.opts).await.unwrap();
    assert!(
        std::fs::read_dir(&l.opts.state_dir).unwrap().next().is_none(),
        "the pool store is gone"
    );
}

#[tokio::test]
async fn two_ends_that_are_not_one_pair_are_remade() {
    let name = unique("m");
    let l = Lab1::new(&lab_text(&name)).await;
    topo::apply(&l.lab, &l.opts).await.unwrap();
    // Someone replaces the r1-h3 pair by two pairs of their own, with the same end names.
    let (r1, h3) = (l.ns("r1"), l.ns("h3"));
    in_ns(&r1, &["ip", "link", "del", "eth2"]);
    in_ns(
        &r1,
        &["ip", "link", "add", "eth2", "type", "veth", "peer", "name", "stray"],
    );
    in_ns(
        &h3,
        &["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "stray"],
    );
    let plan = {
        let mut dry = l.opts.clone();
        dry.dry_run = true;
        topo::apply(&l.lab, &dry).await.unwrap().changes
    };
    assert!(
        plan.iter()
            .any(|c| c.contains("r1:eth2") && c.contains("not one veth pair")),
        "{plan:?}"
    );
    topo::apply(&l.lab, &l.opts).await.unwrap();
    assert!(l.ping("h3", "10.61.0.1"), "h3 reaches h1 through the remade pair");
    topo::destroy(&l.lab, &l.opts).await.unwrap();
}

#[tokio::test]
async fn a_record_that_names_what_the_lab_cannot_have_made_is_refused() {
    let name = unique("r");
    let l = Lab1::new(&lab_text(&name)).await;
    topo::apply(&l.lab, &l.opts).await.unwrap();
    let record = l.opts.state_dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&record).unwrap();
    // Someone plants the test's own host namespace in the record.
    let planted = text.replacen("\"netns\": [", &format!("\"netns\": [\n    \"{}\",", l.host.name()), 1);
    assert_ne!(planted, text);
    std::fs::write(&record, planted).unwrap();
    let err = topo::destroy(&l.lab, &l.opts).await.unwrap_err().to_string();
    assert!(
        err.contains("not something lab") && err.contains(l.host.name()),
        "{err}"
    );
    assert!(NetNs::open(l.host.name()).is_ok(), "the planted namespace is untouched");
    std::fs::write(&record, text).unwrap();
    topo::destroy(&l.lab, &l.opts).await.unwrap();
}

#[tokio::test]
async fn host_sysctls_go_back_when_the_file_drops_them_and_on_destroy() {
    let name = unique("hs");
    let with = |sysctls: &str| {
        format!(
            "name: {name}\ntopology:\n  nodes:\n    host: {{kind: host, sysctls: {{{sysctls}}}}}\n    a: {{addresses: {{eth0: [10.73.0.2/24]}}}}\n    {name}br: {{kind: bridge}}\n  links:\n    - endpoints: [\"a:eth0\", \"{name}br:{name}a\"]\n"
        )
    };
    let l = Lab1::new(&with("net.ipv4.ip_forward: 1, net.ipv4.conf.all.rp_filter: 2")).await;
    let read = |key: &str| l.host.sh(&format!("sysctl -n {key}")).trim().to_string();
    // A new namespace starts with forwarding off and rp_filter 0.
    assert_eq!(
        (read("net.ipv4.ip_forward"), read("net.ipv4.conf.all.rp_filter")),
        ("0".into(), "0".into())
    );
    topo::apply(&l.lab, &l.opts).await.unwrap();
    assert_eq!(
        (read("net.ipv4.ip_forward"), read("net.ipv4.conf.all.rp_filter")),
        ("1".into(), "2".into())
    );
    // The file no longer sets rp_filter: it goes back; forwarding stays.
    let edited = topo::parse(&with("net.ipv4.ip_forward: 1"), Format::Netkit).unwrap();
    let report = topo::apply(&edited, &l.opts).await.unwrap();
    assert_eq!(report.changes, ["restore sysctl net.ipv4.conf.all.rp_filter=0 in host"]);
    assert_eq!(
        (read("net.ipv4.ip_forward"), read("net.ipv4.conf.all.rp_filter")),
        ("1".into(), "0".into())
    );
    assert!(topo::apply(&edited, &l.opts).await.unwrap().changes.is_empty());
    // Destroy puts forwarding back as it was before the lab.
    topo::destroy(&edited, &l.opts).await.unwrap();
    assert_eq!(read("net.ipv4.ip_forward"), "0");
    assert!(!l.opts.state_dir.join(format!("{name}.json")).exists());
}
