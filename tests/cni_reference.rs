//! The CNI lab (`netkit_tests::cnilab`) with Debian's reference plugins: bridge + host-local +
//! portmap, driven through libcni (cnictl) the way a runtime drives them. This proves the
//! harness; netkit's own plugins are tested with the same calls and another `type`.
//!
//! The network is dual-stack: portmap 1.1.1's CHECK looks for its IPv6 chain even when the
//! container has no IPv6 address (containernetworking/plugins#819).
//!
//! Run as root; plugins only change the test's own namespaces.

use std::net::IpAddr;
use std::path::PathBuf;

use netkit_examples::probe::ping_retry;
use netkit_tests::cnilab::{conflist, dir_names, result_ips, Host, REFERENCE_PLUGINS};
use serde_json::json;

const SUBNET: &str = "10.250.0.0/24";
const SUBNET6: &str = "fd00:250::/64";

/// The per-container DNAT chains portmap made in the host's nat table (`iptables` or
/// `ip6tables`).
fn portmap_chains(host: &Host, iptables: &str) -> Vec<String> {
    host.run(iptables, ["-t", "nat", "-S"])
        .lines()
        .filter_map(|l| l.strip_prefix("-N CNI-DN-").map(str::to_string))
        .collect()
}

/// The leases host-local holds for network `refnet`.
fn leases(host: &Host) -> Vec<String> {
    dir_names(&host.ipam_dir().join("refnet"))
        .into_iter()
        .filter(|f| f.parse::<IpAddr>().is_ok())
        .collect()
}

/// A dual-stack bridge + host-local + portmap network in `host`.
fn reference_conflist(host: &Host) -> PathBuf {
    host.write_conflist(
        "refnet",
        &conflist(
            "refnet",
            "1.0.0",
            vec![
                json!({
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": host.ipam_dir(),
                        "ranges": [[{"subnet": SUBNET}], [{"subnet": SUBNET6}]],
                        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
                    }
                }),
                json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
            ],
        ),
    )
}

#[test]
fn bridge_host_local_portmap() {
    let host = Host::new("cniref").with_cni_path(REFERENCE_PLUGINS);
    let conf = reference_conflist(&host);
    let version = host
        .cnictl([std::ffi::OsStr::new("version"), conf.as_os_str()])
        .expect("VERSION");
    for p in version["plugins"].as_array().expect("plugins") {
        assert_eq!(p["supportsConflistVersion"], true, "{p}");
    }

    let c1 = host.container("c1");
    let c2 = host.container("c2");
    let ports = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}).to_string();
    let r1 = host
        .attach("add", &conf, &c1, "eth0", &["--capability-args", ports.as_str()])
        .unwrap_or_else(|e| panic!("ADD c1: {e}\n{}", e.stderr));
    let r2 = host
        .add(&conf, &c2)
        .unwrap_or_else(|e| panic!("ADD c2: {e}\n{}", e.stderr));
    assert_eq!(r1["cniVersion"], "1.0.0", "{r1}");
    let (ip1, ip2) = (result_ips(&r1), result_ips(&r2));
    assert_eq!(ip1.len(), 2, "{r1}");
    assert_eq!(ip2.len(), 2, "{r2}");
    for (i, subnet) in [SUBNET, SUBNET6].into_iter().enumerate() {
        let subnet: ipnetwork::IpNetwork = subnet.parse().expect("subnet");
        assert!(
            subnet.contains(ip1[i].ip()) && subnet.contains(ip2[i].ip()),
            "{ip1:?} {ip2:?}"
        );
        assert_ne!(ip1[i].ip(), ip2[i].ip());
    }
    // The result names the container's interface with its sandbox; it is there.
    let sandbox = r1["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|i| i["sandbox"].is_string())
        .expect("an interface in the sandbox");
    assert_eq!(sandbox["name"], "eth0");
    assert_eq!(sandbox["sandbox"], c1.path().to_str().expect("utf-8 path"));
    assert!(c1.links().contains(&"eth0".to_string()));
    assert_eq!(host.veths().len(), 2, "{:?}", host.veths());
    assert_eq!(host.cached_results().len(), 2, "{:?}", host.cached_results());
    // One container has port mappings: one DNAT chain per IP family.
    assert_eq!(portmap_chains(&host, "iptables").len(), 1);
    assert_eq!(portmap_chains(&host, "ip6tables").len(), 1);

    // Traffic between the two containers, and to the gateway (the bridge in the host).
    let gw: IpAddr = "10.250.0.1".parse().expect("gateway");
    for i in 0..2 {
        assert!(ping_retry(c1.ns(), ip2[i].ip(), 3), "c1 -> c2 {}", ip2[i]);
        assert!(ping_retry(c2.ns(), ip1[i].ip(), 3), "c2 -> c1 {}", ip1[i]);
    }
    assert!(ping_retry(c1.ns(), gw, 3), "c1 -> gateway");

    // CHECK passes (libcni hands the cached result to every plugin as prevResult). A runtime
    // gives CHECK and DEL the capability arguments it gave ADD; so does this test.
    host.check(&conf, &c2)
        .unwrap_or_else(|e| panic!("CHECK c2: {e}\n{}", e.stderr));
    let c1_caps = ["--capability-args", ports.as_str()];
    match host.attach("check", &conf, &c1, "eth0", &c1_caps) {
        Ok(_) => {}
        // portmap 1.1.1 checks its IPv6 chain against the IPv4 rules (or, on an IPv4-only
        // network, a chain it never made: containernetworking/plugins#819). bridge and
        // host-local passed their CHECK before portmap ran.
        Err(e) if e.msg.starts_with("could not check ipv6 dnat") => {}
        Err(e) => panic!("CHECK c1: {e}\n{}", e.stderr),
    }
    // A CHECK that must fail: the container's interface is gone.
    c2.run("ip", ["link", "del", "eth0"]);
    let err = host.check(&conf, &c2).expect_err("CHECK after eth0 was deleted");
    assert!(err.msg.contains("eth0"), "{err}");

    // DEL both: no veth left in the host, nothing cached, no lease, no port mapping.
    host.attach("del", &conf, &c1, "eth0", &c1_caps)
        .unwrap_or_else(|e| panic!("DEL c1: {e}\n{}", e.stderr));
    host.del(&conf, &c2)
        .unwrap_or_else(|e| panic!("DEL c2: {e}\n{}", e.stderr));
    assert_eq!(host.veths(), Vec::<String>::new());
    assert_eq!(host.cached_results(), Vec::<String>::new());
    assert_eq!(leases(&host), Vec::<String>::new());
    assert_eq!(portmap_chains(&host, "iptables"), Vec::<String>::new());
    assert_eq!(portmap_chains(&host, "ip6tables"), Vec::<String>::new());
    // DEL is idempotent.
    host.del(&conf, &c1).expect("second DEL");
}

#[test]
fn errors_carry_the_cni_code() {
    let host = Host::new("cnierr").with_cni_path(REFERENCE_PLUGINS);
    let c = host.container("c");
    // host-local refuses an invalid range; bridge passes its error on (Go plugins say 999 for
    // errors of their own).
    let bad = host.write_conflist(
        "bad",
        &conflist(
            "bad",
            "1.0.0",
            vec![json!({
                "type": "bridge",
                "bridge": "cni1",
                "ipam": {"type": "host-local", "dataDir": host.ipam_dir(),
                         "ranges": [[{"subnet": "10.251.0.0/24", "rangeStart": "10.99.0.5"}]]}
            })],
        ),
    );
    let err = host.add(&bad, &c).expect_err("ADD with a bad range");
    assert_eq!(err.code, 999, "{err}");
    assert!(err.msg.contains("RangeStart 10.99.0.5"), "{err}");
    assert!(err.msg.starts_with("plugin type=\"bridge\" failed (add)"), "{err}");

    // A cniVersion no plugin speaks: the plugin answers 1 (incompatible CNI version).
    let future = host.write_conflist(
        "future",
        &conflist("future", "9.0.0", vec![json!({"type": "loopback"})]),
    );
    let err = host.add(&future, &c).expect_err("ADD with cniVersion 9.0.0");
    assert_eq!(err.code, 1, "{err}");

    // A plugin that is not on the path: libcni's own error, code 0.
    let missing = host.write_conflist(
        "missing",
        &conflist("missing", "1.0.0", vec![json!({"type": "no-such-plugin"})]),
    );
    let err = host.add(&missing, &c).expect_err("ADD with a missing plugin");
    assert_eq!(err.code, 0, "{err}");
    assert!(err.msg.contains("no-such-plugin"), "{err}");

    // A bad container ID: libcni refuses before any plugin runs (4: invalid environment).
    let ok = host.write_conflist("ok", &conflist("ok", "1.0.0", vec![json!({"type": "loopback"})]));
    let netns = c.path().to_string_lossy().into_owned();
    let conf = ok.to_string_lossy().into_owned();
    let err = host
        .cnictl(["add", &conf, &netns, "bad/id", "eth0"])
        .expect_err("ADD with a bad container ID");
    assert_eq!(err.code, 4, "{err}");
    assert!(host.cached_results().is_empty());
}

#[test]
fn gc_dels_what_is_not_valid() {
    let host = Host::new("cnigc").with_cni_path(REFERENCE_PLUGINS);
    let conf = reference_conflist(&host);
    let c1 = host.container("c1");
    let c2 = host.container("c2");
    host.add(&conf, &c1).expect("ADD c1");
    host.add(&conf, &c2).expect("ADD c2");
    assert_eq!(leases(&host).len(), 4, "two families, two containers");

    // c1 is no longer valid: GC DELs it from libcni's cache (without its netns, as a runtime
    // would after losing the container: bridge then releases the addresses only). A 1.0.0
    // list sends no GC verb to the plugins.
    host.gc(&conf, &[(c2.id(), "eth0")]).expect("GC");
    assert_eq!(host.cached_results(), vec![format!("refnet-{}-eth0", c2.id())]);
    assert_eq!(leases(&host).len(), 2, "c1's addresses are released");
    host.status(&conf).expect("STATUS (a no-op before cniVersion 1.1.0)");

    // Nothing valid: c2 goes too.
    host.gc(&conf, &[]).expect("GC of everything");
    assert_eq!(host.cached_results(), Vec::<String>::new());
    assert_eq!(leases(&host), Vec::<String>::new());
}

#[test]
fn bench_adds_and_dels() {
    let host = Host::new("cnibench").with_cni_path(REFERENCE_PLUGINS);
    let conf = reference_conflist(&host);
    let prefix = format!("{}-b", host.prefix());
    let conf_arg = conf.to_string_lossy().into_owned();
    let report = host
        .cnictl(["bench", &conf_arg, "3", &prefix])
        .unwrap_or_else(|e| panic!("bench: {e}\n{}", e.stderr));
    assert_eq!(report["n"], 3, "{report}");
    for phase in ["add", "del"] {
        let total = report[phase]["total_s"].as_f64().expect("total_s");
        let median = report[phase]["median_s"].as_f64().expect("median_s");
        assert!(total > 0.0 && median > 0.0 && median <= total, "{report}");
    }
    // bench deleted its namespaces, and DEL cleaned up after every container.
    let left: Vec<String> = dir_names(std::path::Path::new("/run/netns"))
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(host.veths(), Vec::<String>::new());
    assert_eq!(host.cached_results(), Vec::<String>::new());
    assert_eq!(leases(&host), Vec::<String>::new());
}
