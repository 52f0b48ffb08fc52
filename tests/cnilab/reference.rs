//! The reference test's network and checks, shared by `cni_reference` (Debian's bridge plugin)
//! and `cni_netkit` (the same list with `"type": "netkit-cni"`): a conflist written for the
//! reference bridge must work, unchanged but for the type, with netkit-cni.
//!
//! The network is dual-stack: portmap 1.1.1's CHECK looks for its IPv6 chain even when the
//! container has no IPv6 address (containernetworking/plugins#819).

use std::net::IpAddr;
use std::path::Path;

use netkit_examples::probe::ping_retry;
use serde_json::{json, Value};

use netkit_test_support::snapshot::dir_names;

use super::{conflist, result_ips, Host};

/// The network's name (and conflist file name).
pub const NETWORK: &str = "refnet";
/// Its IPv4 subnet.
pub const SUBNET: &str = "10.250.0.0/24";
/// Its IPv6 subnet.
pub const SUBNET6: &str = "fd00:250::/64";
/// The bridge's IPv4 address (host-local's default gateway, `isGateway`).
pub const GATEWAY: &str = "10.250.0.1";

/// The per-container DNAT chains portmap made in the host's nat table (`iptables` or
/// `ip6tables`).
pub fn portmap_chains(host: &Host, iptables: &str) -> Vec<String> {
    host.run(iptables, ["-t", "nat", "-S"])
        .lines()
        .filter_map(|l| l.strip_prefix("-N CNI-DN-").map(str::to_string))
        .collect()
}

/// The leases host-local holds for the network.
pub fn leases(host: &Host) -> Vec<String> {
    dir_names(&host.ipam_dir().join(NETWORK))
        .into_iter()
        .filter(|f| f.parse::<IpAddr>().is_ok())
        .collect()
}

/// A dual-stack bridge + host-local + portmap network in `host` (cniVersion 1.0.0), as a
/// reference-plugin user writes it.
pub fn reference_conflist(host: &Host) -> Value {
    conflist(
        NETWORK,
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
    )
}

/// The reference test, on the list at `conf` (written by [`Host::write_conflist`] from
/// [`reference_conflist`], its first plugin's type possibly changed): VERSION; ADD two
/// containers (one with a port mapping); the results, links, cache and portmap chains; pings
/// both ways in both families and to the gateway; CHECK; a CHECK that must fail; DEL of both
/// leaves nothing; DEL again succeeds.
pub fn reference_checks(host: &Host, conf: &Path) {
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
        .attach("add", conf, &c1, "eth0", &["--capability-args", ports.as_str()])
        .unwrap_or_else(|e| panic!("ADD c1: {e}\n{}", e.stderr));
    let r2 = host
        .add(conf, &c2)
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
    assert_eq!(portmap_chains(host, "iptables").len(), 1);
    assert_eq!(portmap_chains(host, "ip6tables").len(), 1);

    // Traffic between the two containers, and to the gateway (the bridge in the host).
    let gw: IpAddr = GATEWAY.parse().expect("gateway");
    for i in 0..2 {
        assert!(ping_retry(c1.ns(), ip2[i].ip(), 3), "c1 -> c2 {}", ip2[i]);
        assert!(ping_retry(c2.ns(), ip1[i].ip(), 3), "c2 -> c1 {}", ip1[i]);
    }
    assert!(ping_retry(c1.ns(), gw, 3), "c1 -> gateway");

    // CHECK passes (libcni hands the cached result to every plugin as prevResult). A runtime
    // gives CHECK and DEL the capability arguments it gave ADD; so does this test.
    host.check(conf, &c2)
        .unwrap_or_else(|e| panic!("CHECK c2: {e}\n{}", e.stderr));
    let c1_caps = ["--capability-args", ports.as_str()];
    match host.attach("check", conf, &c1, "eth0", &c1_caps) {
        Ok(_) => {}
        // portmap 1.1.1 checks its IPv6 chain against the IPv4 rules (or, on an IPv4-only
        // network, a chain it never made: containernetworking/plugins#819). The plugins before
        // portmap passed their CHECK before it ran.
        Err(e) if e.msg.starts_with("could not check ipv6 dnat") => {}
        Err(e) => panic!("CHECK c1: {e}\n{}", e.stderr),
    }
    // A CHECK that must fail: the container's interface is gone.
    c2.run("ip", ["link", "del", "eth0"]);
    let err = host.check(conf, &c2).expect_err("CHECK after eth0 was deleted");
    assert!(err.msg.contains("eth0"), "{err}");

    // DEL both: no veth left in the host, nothing cached, no lease, no port mapping.
    host.attach("del", conf, &c1, "eth0", &c1_caps)
        .unwrap_or_else(|e| panic!("DEL c1: {e}\n{}", e.stderr));
    host.del(conf, &c2)
        .unwrap_or_else(|e| panic!("DEL c2: {e}\n{}", e.stderr));
    assert_eq!(host.veths(), Vec::<String>::new());
    assert_eq!(host.cached_results(), Vec::<String>::new());
    assert_eq!(leases(host), Vec::<String>::new());
    assert_eq!(portmap_chains(host, "iptables"), Vec::<String>::new());
    assert_eq!(portmap_chains(host, "ip6tables"), Vec::<String>::new());
    // DEL is idempotent.
    host.del(conf, &c1).expect("second DEL");
}
