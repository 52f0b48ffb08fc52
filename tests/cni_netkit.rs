//! netkit's CNI plugins (`netkit-cni`, `netkit-ipam`) driven through libcni (tools/cnictl), the
//! way container runtimes drive them: the runtime's environment, stdin, result cache and
//! `prevResult` chaining are libcni's own.
//!
//! * bridge and routed modes, IPv4, IPv6 and dual-stack: ADD, CHECK, traffic, DEL leaves nothing;
//! * the bridge keeps its MAC address as ports come and go, and the result names it (each
//!   also run with the reference bridge plugin, which passes);
//! * netkit-cni chained with the reference portmap, bandwidth and tuning plugins;
//! * netkit-ipam under the reference bridge plugin;
//! * the reference test's conflist with only `type` changed to `netkit-cni`;
//! * GC through libcni (1.0.0 list: DEL of cached attachments; 1.1.0 list: the GC verb).
//!
//! The plugins are netkit-cni's mains built as bins of this package (`cnilab-netkit-cni`,
//! `cnilab-netkit-ipam`), so `cargo test` runs the current code; `Host::with_netkit_plugins`
//! links them into the host's plugin directory under their real names.
//!
//! Run as root; plugins only change the test's own namespaces. Bandwidth shaping needs tc's tbf,
//! ingress, ifb and mirred: without them the chain runs without bandwidth and reports a skip
//! by name (`NETKIT_SKIP_LOG`).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use ipnetwork::IpNetwork;
use netkit_core::ipam::{Ipam, IpamConfig, StoreOptions};
use netkit_examples::probe::ping_retry;
use netkit_test_support::cmd::ipj_list;
use netkit_test_support::{report_skip, try_sh, wait_until};
use netkit_tests::cnilab::{conflist, reference, result_ips, Container, Host};
use serde_json::{json, Value};

const SUBNET4: &str = "10.251.0.0/24";
const SUBNET6: &str = "fd00:251::/64";
/// netkit-ipam's default gateways: the first address of each subnet.
const GW4: &str = "10.251.0.1";
const GW6: &str = "fd00:251::1";
/// Routed mode's gateways, as the container sees them.
const ROUTED_GW4: &str = "169.254.1.1";
const ROUTED_GW6: &str = "fe80::ecee:eeff:feee:eeee";
const ROUTED_HOST_MAC: &str = "ee:ee:ee:ee:ee:ee";

/// A host namespace whose plugin path starts with netkit's plugins.
fn host(tag: &str) -> Host {
    Host::new(tag).with_netkit_plugins(
        env!("CARGO_BIN_EXE_cnilab-netkit-cni"),
        env!("CARGO_BIN_EXE_cnilab-netkit-ipam"),
    )
}

/// The address families of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    V4,
    V6,
    Dual,
}

impl Stack {
    fn subnets(self) -> Vec<&'static str> {
        match self {
            Stack::V4 => vec![SUBNET4],
            Stack::V6 => vec![SUBNET6],
            Stack::Dual => vec![SUBNET4, SUBNET6],
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Stack::V4 => "4",
            Stack::V6 => "6",
            Stack::Dual => "46",
        }
    }
}

/// host-local-style `ranges`, one range set per subnet.
fn ranges(subnets: &[&str]) -> Value {
    Value::Array(subnets.iter().map(|s| json!([{ "subnet": s }])).collect())
}

/// netkit-ipam, its store in the host's temp dir.
fn netkit_ipam(host: &Host, subnets: &[&str]) -> Value {
    json!({"type": "netkit-ipam", "dataDir": host.ipam_dir(), "ranges": ranges(subnets)})
}

/// A netkit-cni plugin entry: `mode`, gateway and default routes, masquerade, netkit-ipam.
fn netkit_cni(host: &Host, mode: &str, subnets: &[&str]) -> Value {
    json!({
        "type": "netkit-cni",
        "mode": mode,
        "bridge": "nk0",
        "isGateway": true,
        "isDefaultGateway": true,
        "ipMasq": true,
        "hairpinMode": true,
        "firewallStateDir": host.fw_dir(),
        "ipam": netkit_ipam(host, subnets),
    })
}

/// The addresses netkit-ipam's store holds for `network`, with their container IDs.
fn held(host: &Host, network: &str, subnets: &[&str]) -> Vec<(IpAddr, String)> {
    let cfg = IpamConfig::from_json(&json!({ "ranges": ranges(subnets) }).to_string()).expect("ranges");
    let ipam = Ipam::open(
        cfg.pool(network).expect("pool"),
        &host.ipam_dir(),
        StoreOptions::default(),
    )
    .expect("open netkit-ipam's store");
    let check = ipam.check().expect("check the store");
    assert!(check.problems.is_empty(), "store problems: {:?}", check.problems);
    ipam.list()
        .expect("list the store")
        .into_iter()
        .map(|(ip, o)| (ip, o.container_id().to_string()))
        .collect()
}

/// netkit's firewall objects in the host: the nftables table, or iptables chains.
fn netkit_firewall(host: &Host) -> Vec<String> {
    let mut out: Vec<String> = host
        .run("nft", ["list", "tables"])
        .lines()
        .filter(|l| l.contains("netkit"))
        .map(str::to_string)
        .collect();
    for ipt in ["iptables", "ip6tables"] {
        for table in ["nat", "filter"] {
            out.extend(
                host.run(ipt, ["-t", table, "-S"])
                    .lines()
                    .filter(|l| l.contains("NETKIT"))
                    .map(|l| format!("{ipt} -t {table} {l}")),
            );
        }
    }
    out
}

fn add(host: &Host, conf: &Path, c: &Container) -> Value {
    host.add(conf, c)
        .unwrap_or_else(|e| panic!("ADD {}: {e}\n{}", c.id(), e.stderr))
}

fn add_with(host: &Host, conf: &Path, c: &Container, caps: &str) -> Value {
    host.attach("add", conf, c, "eth0", &["--capability-args", caps])
        .unwrap_or_else(|e| panic!("ADD {}: {e}\n{}", c.id(), e.stderr))
}

fn check(host: &Host, conf: &Path, c: &Container) {
    host.check(conf, c)
        .unwrap_or_else(|e| panic!("CHECK {}: {e}\n{}", c.id(), e.stderr));
}

fn del(host: &Host, conf: &Path, c: &Container) {
    host.del(conf, c)
        .unwrap_or_else(|e| panic!("DEL {}: {e}\n{}", c.id(), e.stderr));
}

/// The result's interfaces as (name, sandbox).
fn interfaces(result: &Value) -> Vec<(String, Option<String>)> {
    result["interfaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no interfaces: {result}"))
        .iter()
        .map(|i| {
            (
                i["name"].as_str().expect("name").to_string(),
                i["sandbox"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The host end of the container's veth, as the result names it.
fn host_end(result: &Value) -> String {
    interfaces(result)
        .into_iter()
        .find(|(n, sb)| sb.is_none() && n.starts_with("veth"))
        .unwrap_or_else(|| panic!("no host veth in {result}"))
        .0
}

/// The container's default routes' gateways (IPv4 then IPv6).
fn default_gateways(c: &Container) -> Vec<String> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        for r in ipj_list(c.name(), &[fam, "route", "show", "default"]) {
            out.push(r["gateway"].as_str().unwrap_or("-").to_string());
        }
    }
    out
}

/// The addresses (with prefix) on `dev` in the container, link-local ones left out.
fn addresses(c: &Container, dev: &str) -> Vec<IpNetwork> {
    ipj_list(c.name(), &["addr", "show", "dev", dev])
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["scope"] != "link")
        .map(|a| {
            format!("{}/{}", a["local"].as_str().expect("local"), a["prefixlen"])
                .parse()
                .expect("address")
        })
        .collect()
}

/// Every route of the host mentioning `ip` (both families).
fn host_routes_to(host: &Host, ip: IpAddr) -> Vec<String> {
    let fam = if ip.is_ipv4() { "-4" } else { "-6" };
    host.run("ip", [fam, "route", "show", "table", "all"])
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|d| d.split('/').next() == Some(&ip.to_string()))
        })
        .map(str::to_string)
        .collect()
}

/// Everything a network's attachments leave in the host after DEL.
fn assert_nothing_left(host: &Host, network: &str, subnets: &[&str]) {
    assert_eq!(host.veths(), Vec::<String>::new(), "veths left");
    assert_eq!(host.cached_results(), Vec::<String>::new(), "libcni cache left");
    assert_eq!(held(host, network, subnets), vec![], "addresses still held");
    assert_eq!(netkit_firewall(host), Vec::<String>::new(), "firewall objects left");
}

/// A TCP connection from `client` to `to` reaches a listener on `listen` in `server` (through
/// whatever NAT lies between); the server sees the bytes sent.
fn tcp_reaches(server: &Container, listen: SocketAddr, client: &Host, to: SocketAddr) -> Result<(), String> {
    let listener = server
        .ns()
        .run(move || TcpListener::bind(listen))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("bind {listen}: {e}"))?;
    listener.set_nonblocking(false).map_err(|e| e.to_string())?;
    let accept = std::thread::spawn(move || -> Result<Vec<u8>, String> {
        let (mut s, _) = listener.accept().map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    });
    let sent = client
        .ns()
        .run(move || -> Result<(), String> {
            let mut s =
                TcpStream::connect_timeout(&to, Duration::from_secs(3)).map_err(|e| format!("connect {to}: {e}"))?;
            s.write_all(b"netkit").map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())?;
    if let Err(e) = sent {
        // Unblock the accept so the thread ends.
        let _ = server
            .ns()
            .run(move || TcpStream::connect_timeout(&listen, Duration::from_secs(1)));
        let _ = accept.join();
        return Err(e);
    }
    let got = accept.join().map_err(|_| "accept thread panicked".to_string())??;
    if got != b"netkit" {
        return Err(format!("the server got {got:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Bridge mode.

fn bridge_mode(stack: Stack) {
    let host = host(&format!("cnkbr{}", stack.tag()));
    let subnets = stack.subnets();
    let net = "nkbr";
    let conf = host.write_conflist(
        net,
        &conflist(net, "1.0.0", vec![netkit_cni(&host, "bridge", &subnets)]),
    );
    let c1 = host.container("c1");
    let c2 = host.container("c2");
    let r1 = add(&host, &conf, &c1);
    let r2 = add(&host, &conf, &c2);
    assert_eq!(r1["cniVersion"], "1.0.0", "{r1}");

    // The result: one address per family, in its subnet, on the container's interface (the
    // third: bridge, host end, container end), with the subnet's first address as gateway.
    let (ip1, ip2) = (result_ips(&r1), result_ips(&r2));
    assert_eq!(ip1.len(), subnets.len(), "{r1}");
    assert_eq!(ip2.len(), subnets.len(), "{r2}");
    let gws: Vec<IpAddr> = subnets
        .iter()
        .map(|s| if s.contains(':') { GW6 } else { GW4 }.parse().expect("gateway"))
        .collect();
    for (i, s) in subnets.iter().enumerate() {
        let subnet: IpNetwork = s.parse().expect("subnet");
        for ip in [ip1[i], ip2[i]] {
            assert!(subnet.contains(ip.ip()), "{ip} not in {subnet}");
            assert_eq!(ip.prefix(), subnet.prefix(), "{ip}");
        }
        assert_ne!(ip1[i], ip2[i]);
        assert_eq!(r1["ips"][i]["gateway"], gws[i].to_string(), "{r1}");
        assert_eq!(r1["ips"][i]["interface"], 2, "{r1}");
    }
    let ifs = interfaces(&r1);
    assert_eq!(ifs.len(), 3, "{r1}");
    assert_eq!(ifs[0], ("nk0".to_string(), None), "{r1}");
    assert!(ifs[1].0.starts_with("veth") && ifs[1].1.is_none(), "{r1}");
    assert_eq!(
        ifs[2],
        ("eth0".to_string(), Some(c1.path().display().to_string())),
        "{r1}"
    );

    // What is really there: the addresses in the container, default routes through the
    // gateway, the host ends on the bridge, the gateway addresses on the bridge.
    assert_eq!(addresses(&c1, "eth0"), ip1);
    assert_eq!(
        default_gateways(&c1),
        gws.iter().map(IpAddr::to_string).collect::<Vec<_>>()
    );
    let mut ends = vec![host_end(&r1), host_end(&r2)];
    ends.sort();
    let mut veths = host.veths();
    veths.sort();
    assert_eq!(veths, ends);
    for end in &ends {
        let l = ipj_list(host.name(), &["link", "show", "dev", end]);
        assert_eq!(l[0]["master"], "nk0", "{l:?}");
        assert!(l[0]["flags"].to_string().contains("\"UP\""), "{l:?}");
    }
    let bridge_addrs: Vec<String> = ipj_list(host.name(), &["addr", "show", "dev", "nk0"])[0]["addr_info"]
        .as_array()
        .expect("addr_info")
        .iter()
        .filter_map(|a| a["local"].as_str().map(str::to_string))
        .collect();
    for gw in &gws {
        assert!(
            bridge_addrs.contains(&gw.to_string()),
            "{gw} not on nk0: {bridge_addrs:?}"
        );
    }
    let holders = held(&host, net, &subnets);
    assert_eq!(holders.len(), 2 * subnets.len(), "{holders:?}");
    assert_eq!(host.cached_results().len(), 2);

    check(&host, &conf, &c1);
    check(&host, &conf, &c2);

    // Traffic: container to container (every family), containers and host to the gateway.
    for i in 0..subnets.len() {
        assert!(ping_retry(c1.ns(), ip2[i].ip(), 3), "c1 -> c2 {}", ip2[i]);
        assert!(ping_retry(c2.ns(), ip1[i].ip(), 3), "c2 -> c1 {}", ip1[i]);
        assert!(ping_retry(c1.ns(), gws[i], 3), "c1 -> gateway {}", gws[i]);
        assert!(ping_retry(c2.ns(), gws[i], 3), "c2 -> gateway {}", gws[i]);
        assert!(ping_retry(host.ns(), ip1[i].ip(), 3), "host -> c1 {}", ip1[i]);
    }

    // A CHECK that must fail: an address was taken from the container.
    c2.run("ip", ["addr", "del", &ip2[0].to_string(), "dev", "eth0"]);
    let err = host.check(&conf, &c2).expect_err("CHECK without the address");
    assert!(err.msg.contains(&ip2[0].to_string()), "{err}");

    // DEL c1: its end goes, c2 keeps working (the bridge and its gateway address stay). The
    // neighbour cache is flushed first: the bridge may have changed its MAC address with c1's
    // port gone (bridge_keeps_its_mac_when_a_port_goes).
    del(&host, &conf, &c1);
    assert_eq!(c1.links(), vec!["lo".to_string()]);
    assert_eq!(host.veths(), vec![host_end(&r2)]);
    assert_eq!(held(&host, net, &subnets).len(), subnets.len());
    if subnets.len() == 2 {
        c2.run("ip", ["neigh", "flush", "dev", "eth0"]);
        assert!(ping_retry(c2.ns(), gws[1], 3), "c2 -> gateway after DEL c1");
    }
    del(&host, &conf, &c2);
    assert_nothing_left(&host, net, &subnets);
    // DEL is idempotent (and needs no cached result).
    del(&host, &conf, &c1);
    del(&host, &conf, &c2);
}

#[test]
fn bridge_ipv4() {
    bridge_mode(Stack::V4);
}

#[test]
fn bridge_ipv6() {
    bridge_mode(Stack::V6);
}

#[test]
fn bridge_dual_stack() {
    bridge_mode(Stack::Dual);
}

/// The MAC address of `dev` in the host.
fn host_mac(host: &Host, dev: &str) -> String {
    ipj_list(host.name(), &["link", "show", "dev", dev])[0]["address"]
        .as_str()
        .expect("address")
        .to_string()
}

/// A dual-stack bridge network with the reference bridge's keys, host-local as IPAM, for a
/// plugin of type `kind` ("bridge" or "netkit-cni").
fn mac_test_conflist(host: &Host, net: &str, kind: &str) -> Value {
    conflist(
        net,
        "1.0.0",
        vec![json!({
            "type": kind, "bridge": "nk0", "isGateway": true,
            "firewallStateDir": host.fw_dir(),
            "ipam": {"type": "host-local", "dataDir": host.ipam_dir(),
                     "ranges": ranges(&[SUBNET4, SUBNET6])}
        })],
    )
}

/// A bridge plugin of type `kind` (the reference `bridge` or `netkit-cni`, same keys) must
/// keep the bridge's MAC address when a port leaves: containers hold the gateway's MAC in
/// their neighbour caches (REACHABLE for up to 45 s, then probed by unicast), so a bridge
/// that changes its MAC cuts every container off its gateway, its default route and its port
/// mappings until their entries expire. A Linux bridge whose MAC was never set wears its
/// lowest port's MAC and changes it when that port goes; the reference plugin sets it.
fn bridge_keeps_its_mac(kind: &str) {
    let host = host(&format!("cnkmac{}", &kind[..3]));
    let net = "nkmac";
    let conf = host.write_conflist(net, &mac_test_conflist(&host, net, kind));
    let c1 = host.container("c1");
    let c2 = host.container("c2");
    add(&host, &conf, &c1);
    let r2 = add(&host, &conf, &c2);
    let gws: [IpAddr; 2] = [GW4.parse().expect("gw"), GW6.parse().expect("gw")];
    for c in [&c1, &c2] {
        for gw in gws {
            assert!(ping_retry(c.ns(), gw, 3), "{} -> gateway {gw}", c.id());
        }
    }
    let mac = host_mac(&host, "nk0");

    // DEL the container whose host end's MAC the bridge wears, if either does.
    let (gone, stays) = if host_mac(&host, &host_end(&r2)) == mac {
        (&c2, &c1)
    } else {
        (&c1, &c2)
    };
    del(&host, &conf, gone);
    let mac_after = host_mac(&host, "nk0");
    let reachable: Vec<bool> = gws.iter().map(|gw| ping_retry(stays.ns(), *gw, 3)).collect();
    assert_eq!(
        (mac_after.as_str(), reachable.as_slice()),
        (mac.as_str(), [true, true].as_slice()),
        "{kind}: the bridge changed its MAC when {}'s port left; {} lost its gateway \
         (reachable [v4, v6])",
        gone.id(),
        stays.id()
    );
    del(&host, &conf, stays);
}

/// The ADD result of a bridge plugin of type `kind` names the bridge with the MAC it has.
fn bridge_result_names_its_mac(kind: &str) {
    let host = host(&format!("cnkrmac{}", &kind[..3]));
    let conf = host.write_conflist("nkrmac", &mac_test_conflist(&host, "nkrmac", kind));
    let c1 = host.container("c1");
    let c2 = host.container("c2");
    // The first ADD makes the bridge, the second finds it.
    for c in [&c1, &c2] {
        let r = add(&host, &conf, c);
        assert_eq!(r["interfaces"][0]["name"], "nk0", "{r}");
        assert_eq!(
            r["interfaces"][0]["mac"].as_str().unwrap_or_default(),
            host_mac(&host, "nk0"),
            "{kind}: ADD {} names a MAC the bridge does not have: {r}",
            c.id()
        );
    }
    del(&host, &conf, &c1);
    del(&host, &conf, &c2);
}

#[test]
fn bridge_result_names_the_bridge_mac() {
    bridge_result_names_its_mac("netkit-cni");
}

#[test]
fn reference_bridge_result_names_the_bridge_mac() {
    bridge_result_names_its_mac("bridge");
}

#[test]
fn bridge_keeps_its_mac_when_a_port_goes() {
    bridge_keeps_its_mac("netkit-cni");
}

#[test]
fn reference_bridge_keeps_its_mac_when_a_port_goes() {
    bridge_keeps_its_mac("bridge");
}

// ---------------------------------------------------------------------------------------------
// 2. Routed mode.

fn routed_mode(stack: Stack) {
    let host = host(&format!("cnkrt{}", stack.tag()));
    let subnets = stack.subnets();
    let net = "nkrt";
    let conf = host.write_conflist(
        net,
        &conflist(net, "1.0.0", vec![netkit_cni(&host, "routed", &subnets)]),
    );
    let c1 = host.container("c1");
    let c2 = host.container("c2");
    let r1 = add(&host, &conf, &c1);
    let r2 = add(&host, &conf, &c2);

    // The result: full-length addresses, the routed gateways, no bridge.
    let (ip1, ip2) = (result_ips(&r1), result_ips(&r2));
    assert_eq!(ip1.len(), subnets.len(), "{r1}");
    let gws: Vec<&str> = subnets
        .iter()
        .map(|s| if s.contains(':') { ROUTED_GW6 } else { ROUTED_GW4 })
        .collect();
    for (i, s) in subnets.iter().enumerate() {
        let subnet: IpNetwork = s.parse().expect("subnet");
        for ip in [ip1[i], ip2[i]] {
            assert!(subnet.contains(ip.ip()), "{ip} not in {subnet}");
            assert_eq!(ip.prefix(), if ip.is_ipv4() { 32 } else { 128 }, "{ip}");
        }
        assert_eq!(r1["ips"][i]["gateway"], gws[i], "{r1}");
    }
    let ifs = interfaces(&r1);
    assert_eq!(ifs.len(), 2, "{r1}");
    assert_eq!(
        ifs[1],
        ("eth0".to_string(), Some(c1.path().display().to_string())),
        "{r1}"
    );
    assert!(
        !host.run("ip", ["-j", "link", "show"]).contains("\"nk0\""),
        "routed mode made a bridge"
    );

    // Inside: the addresses, default routes through the routed gateways.
    assert_eq!(addresses(&c1, "eth0"), ip1);
    assert_eq!(default_gateways(&c1), gws);

    // The host: its ends have the fixed MAC and no address of their own (IPv4 or global
    // IPv6); one host route per container address, through the container's end.
    for (r, ips) in [(&r1, &ip1), (&r2, &ip2)] {
        let end = host_end(r);
        let link = &ipj_list(host.name(), &["addr", "show", "dev", &end])[0];
        assert_eq!(link["address"], ROUTED_HOST_MAC, "{link}");
        for a in link["addr_info"].as_array().expect("addr_info") {
            assert_eq!(a["scope"], "link", "the host end has an address: {link}");
        }
        for ip in ips.iter() {
            let routes = host_routes_to(&host, ip.ip());
            assert_eq!(routes.len(), 1, "{routes:?}");
            assert!(routes[0].contains(&format!("dev {end}")), "{routes:?}");
        }
        if ips.iter().any(|i| i.is_ipv4()) {
            let proxy_arp = host.run("sysctl", ["-n", &format!("net.ipv4.conf.{end}.proxy_arp")]);
            assert_eq!(proxy_arp.trim(), "1");
        }
    }
    assert_eq!(held(&host, net, &subnets).len(), 2 * subnets.len());

    check(&host, &conf, &c1);
    check(&host, &conf, &c2);

    // Container to container, through the host's routes.
    for i in 0..subnets.len() {
        assert!(ping_retry(c1.ns(), ip2[i].ip(), 3), "c1 -> c2 {}", ip2[i]);
        assert!(ping_retry(c2.ns(), ip1[i].ip(), 3), "c2 -> c1 {}", ip1[i]);
    }
    // Host to container and back: the host's ends have no address, so the host gets one on
    // another link (loopback) to talk from.
    let host_addrs: Vec<IpAddr> = subnets
        .iter()
        .map(|s| {
            if s.contains(':') { "fd00:ffff::1" } else { "192.0.2.1" }
                .parse()
                .expect("literal")
        })
        .collect();
    for a in &host_addrs {
        let len = if a.is_ipv4() { "32" } else { "128" };
        host.run("ip", ["addr", "add", &format!("{a}/{len}"), "dev", "lo"]);
    }
    for i in 0..subnets.len() {
        assert!(ping_retry(host.ns(), ip1[i].ip(), 3), "host -> c1 {}", ip1[i]);
        assert!(ping_retry(c2.ns(), host_addrs[i], 3), "c2 -> host {}", host_addrs[i]);
    }

    // A CHECK that must fail: the host route to c2 is gone.
    host.run("ip", ["route", "del", &ip2[0].to_string()]);
    let err = host.check(&conf, &c2).expect_err("CHECK without the host route");
    assert!(err.msg.contains(&ip2[0].ip().to_string()), "{err}");

    del(&host, &conf, &c1);
    del(&host, &conf, &c2);
    for ip in ip1.iter().chain(&ip2) {
        assert_eq!(
            host_routes_to(&host, ip.ip()),
            Vec::<String>::new(),
            "route to {ip} left"
        );
    }
    assert_eq!(c1.links(), vec!["lo".to_string()]);
    assert_nothing_left(&host, net, &subnets);
    del(&host, &conf, &c1);
}

#[test]
fn routed_ipv4() {
    routed_mode(Stack::V4);
}

#[test]
fn routed_ipv6() {
    routed_mode(Stack::V6);
}

#[test]
fn routed_dual_stack() {
    routed_mode(Stack::Dual);
}

// ---------------------------------------------------------------------------------------------
// 3. Chaining: netkit-cni, then portmap, bandwidth and tuning (reference plugins), each given
// the previous one's result.

/// Whether this kernel has what the bandwidth plugin uses: tbf (ingress shaping), the ingress
/// qdisc, ifb links and the mirred action (egress shaping). Probed on a veth pair in `host`.
fn tc_support(host: &Host) -> Result<(), String> {
    let sh = |cmd: &str| try_sh(host.ns(), cmd).map(drop);
    sh("ip link add tcprobe0 type veth peer name tcprobe1 && ip link set tcprobe0 up")?;
    let r = (|| {
        sh("tc qdisc add dev tcprobe0 root tbf rate 1mbit burst 32kbit latency 25ms")?;
        sh("tc qdisc add dev tcprobe0 ingress")?;
        sh("ip link add tcprobe2 type ifb")?;
        sh(
            "tc filter add dev tcprobe0 parent ffff: protocol all u32 match u32 0 0 \
            action mirred egress redirect dev tcprobe2",
        )
    })();
    let _ = sh("ip link del tcprobe2");
    sh("ip link del tcprobe0")?;
    r
}

/// The host's ifb links (bandwidth's egress shaping).
fn ifbs(host: &Host) -> Vec<String> {
    ipj_list(host.name(), &["link", "show", "type", "ifb"])
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn chain_portmap_bandwidth_tuning() {
    const NAME: &str = "cni_netkit::chain_portmap_bandwidth_tuning";
    let host = host("cnkchain");
    let bandwidth = tc_support(&host);
    if let Err(why) = &bandwidth {
        report_skip(
            &format!("{NAME} (bandwidth)"),
            &format!("tc cannot shape here ({why}); the chain runs without bandwidth"),
        );
    }
    let subnets = Stack::Dual.subnets();
    let net = "nkchain";
    let mut plugins = vec![
        netkit_cni(&host, "bridge", &subnets),
        json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
    ];
    if bandwidth.is_ok() {
        plugins.push(json!({
            "type": "bandwidth",
            "ingressRate": 8_000_000, "ingressBurst": 800_000,
            "egressRate": 4_000_000, "egressBurst": 400_000
        }));
    }
    plugins.push(json!({
        "type": "tuning",
        "mtu": 1400,
        "sysctl": {"net.ipv4.conf.eth0.arp_ignore": "1", "net.ipv6.conf.eth0.hop_limit": "42"},
        "dataDir": host.dir().join("tuning")
    }));
    let conf = host.write_conflist(net, &conflist(net, "1.0.0", plugins));
    let c1 = host.container("c1");
    let c2 = host.container("c2");
    let caps = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}).to_string();
    let r1 = add_with(&host, &conf, &c1, &caps);
    let r2 = add(&host, &conf, &c2);
    let (ip1, ip2) = (result_ips(&r1), result_ips(&r2));
    assert_eq!(ip1.len(), 2, "{r1}");
    let end1 = host_end(&r1);

    // portmap: one DNAT chain per family for c1, and the mapping works: the host connects to
    // its own gateway address's port 8080 and reaches c1's port 80.
    assert_eq!(reference::portmap_chains(&host, "iptables").len(), 1);
    assert_eq!(reference::portmap_chains(&host, "ip6tables").len(), 1);
    let gw4: IpAddr = GW4.parse().expect("gateway");
    tcp_reaches(
        &c1,
        SocketAddr::new("0.0.0.0".parse().expect("any"), 80),
        &host,
        SocketAddr::new(gw4, 8080),
    )
    .unwrap_or_else(|e| panic!("host -> {gw4}:8080 -> c1:80 through portmap: {e}"));

    // tuning: the MTU and the sysctls, inside the container.
    for c in [&c1, &c2] {
        let link = &ipj_list(c.name(), &["link", "show", "dev", "eth0"])[0];
        assert_eq!(link["mtu"], 1400, "{link}");
        let sysctl = |k: &str| c.run("sysctl", ["-n", k]).trim().to_string();
        assert_eq!(sysctl("net.ipv4.conf.eth0.arp_ignore"), "1");
        assert_eq!(sysctl("net.ipv6.conf.eth0.hop_limit"), "42");
    }

    // bandwidth: tbf on the host end (traffic to the container), an ifb with tbf for
    // traffic from it, redirected from the host end's ingress.
    if bandwidth.is_ok() {
        let qdiscs = host.run("tc", ["qdisc", "show", "dev", &end1]);
        assert!(qdiscs.contains("qdisc tbf"), "no tbf on {end1}: {qdiscs}");
        assert!(qdiscs.contains("qdisc ingress"), "no ingress qdisc on {end1}: {qdiscs}");
        let ifb = ifbs(&host);
        assert_eq!(ifb.len(), 2, "one ifb per container: {ifb:?}");
        for i in &ifb {
            let q = host.run("tc", ["qdisc", "show", "dev", i]);
            assert!(q.contains("qdisc tbf"), "no tbf on {i}: {q}");
        }
    }

    // Traffic still flows.
    for i in 0..2 {
        assert!(ping_retry(c1.ns(), ip2[i].ip(), 3), "c1 -> c2 {}", ip2[i]);
        assert!(ping_retry(c2.ns(), ip1[i].ip(), 3), "c2 -> c1 {}", ip1[i]);
    }

    // CHECK: every plugin checks with the cached result as prevResult.
    check(&host, &conf, &c2);
    match host.attach("check", &conf, &c1, "eth0", &["--capability-args", &caps]) {
        Ok(_) => {}
        // portmap 1.1.1's IPv6 CHECK bug (see cni_reference); the plugins before it passed.
        Err(e) if e.msg.starts_with("could not check ipv6 dnat") => {}
        Err(e) => panic!("CHECK c1: {e}\n{}", e.stderr),
    }

    // DEL removes everything every plugin made.
    host.attach("del", &conf, &c1, "eth0", &["--capability-args", &caps])
        .unwrap_or_else(|e| panic!("DEL c1: {e}\n{}", e.stderr));
    del(&host, &conf, &c2);
    assert_nothing_left(&host, net, &subnets);
    assert_eq!(reference::portmap_chains(&host, "iptables"), Vec::<String>::new());
    assert_eq!(reference::portmap_chains(&host, "ip6tables"), Vec::<String>::new());
    assert_eq!(ifbs(&host), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// 4. netkit-ipam under the reference bridge plugin.

#[test]
fn netkit_ipam_under_reference_bridge() {
    let host = host("cnkipam");
    let subnets = Stack::Dual.subnets();
    let net = "nkipam";
    let mut ipam = netkit_ipam(&host, &subnets);
    ipam["routes"] = json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]);
    let conf = host.write_conflist(
        net,
        &conflist(
            net,
            "1.0.0",
            vec![json!({"type": "bridge", "bridge": "cni0", "isGateway": true, "ipam": ipam})],
        ),
    );
    let c1 = host.container("c1");
    let c2 = host.container("c2");
    let r1 = add(&host, &conf, &c1);
    let r2 = add(&host, &conf, &c2);
    let (ip1, ip2) = (result_ips(&r1), result_ips(&r2));
    assert_eq!(ip1.len(), 2, "{r1}");
    assert_eq!(ip2.len(), 2, "{r2}");
    assert_eq!(addresses(&c1, "eth0"), ip1);
    let mut holders = held(&host, net, &subnets);
    holders.sort();
    let mut want: Vec<(IpAddr, String)> = ip1
        .iter()
        .map(|i| (i.ip(), c1.id().to_string()))
        .chain(ip2.iter().map(|i| (i.ip(), c2.id().to_string())))
        .collect();
    want.sort();
    assert_eq!(holders, want);

    check(&host, &conf, &c1);
    check(&host, &conf, &c2);
    let gws: [IpAddr; 2] = [GW4.parse().expect("gw"), GW6.parse().expect("gw")];
    for i in 0..2 {
        assert!(ping_retry(c1.ns(), ip2[i].ip(), 3), "c1 -> c2 {}", ip2[i]);
        assert!(ping_retry(c2.ns(), ip1[i].ip(), 3), "c2 -> c1 {}", ip1[i]);
        assert!(ping_retry(c1.ns(), gws[i], 3), "c1 -> gateway {}", gws[i]);
    }

    // DEL releases through netkit-ipam: c1's addresses first, then c2's.
    del(&host, &conf, &c1);
    assert_eq!(held(&host, net, &subnets).len(), 2);
    del(&host, &conf, &c2);
    assert_eq!(held(&host, net, &subnets), vec![]);
    assert_eq!(host.veths(), Vec::<String>::new());
    assert_eq!(host.cached_results(), Vec::<String>::new());
    del(&host, &conf, &c2);
}

// ---------------------------------------------------------------------------------------------
// 5. The reference bridge's conflist with only the type changed.

#[test]
fn reference_conflist_with_netkit_cni_type() {
    let host = host("cnkref");
    let mut list = reference::reference_conflist(&host);
    assert_eq!(list["plugins"][0]["type"], "bridge");
    list["plugins"][0]["type"] = json!("netkit-cni");
    let conf = host.write_conflist(reference::NETWORK, &list);
    reference::reference_checks(&host, &conf);
    // netkit-cni's masquerade (ipMasq) went with the containers.
    assert_eq!(netkit_firewall(&host), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// 6. GC through libcni.

#[test]
fn gc_releases_what_is_not_valid() {
    let host = host("cnkgc");
    let subnets = Stack::Dual.subnets();
    let net = "nkgc";
    let mut plugin = netkit_cni(&host, "bridge", &subnets);
    plugin["capabilities"] = json!({"portMappings": true});
    // ADD, CHECK and DEL through the 1.0.0 list; GC and STATUS exist from 1.1.0 on: the same
    // network (same name: libcni's cache is per network) as a 1.1.0 list.
    let conf = host.write_conflist(net, &conflist(net, "1.0.0", vec![plugin.clone()]));
    let conf11 = host.write_conflist("nkgc-1.1", &conflist(net, "1.1.0", vec![plugin]));
    host.status(&conf11)
        .unwrap_or_else(|e| panic!("STATUS: {e}\n{}", e.stderr));

    let c1 = host.container("c1");
    let c2 = host.container("c2");
    let c3 = host.container("c3");
    let port = |p: u16| json!({"portMappings": [{"hostPort": p, "containerPort": 80}]}).to_string();
    let r1 = add_with(&host, &conf, &c1, &port(8081));
    let r2 = add_with(&host, &conf, &c2, &port(8082));
    let r3 = add_with(&host, &conf, &c3, &port(8083));
    assert_eq!(held(&host, net, &subnets).len(), 6);
    let ruleset = host.nft_ruleset();
    for p in ["8081", "8082", "8083"] {
        assert!(ruleset.contains(p), "no mapping of port {p}: {ruleset}");
    }

    // 1.0.0 list: GC DELs the cached attachments that are not valid (c1); no GC verb is sent.
    host.gc(&conf, &[(c2.id(), "eth0"), (c3.id(), "eth0")])
        .unwrap_or_else(|e| panic!("GC (1.0.0): {e}\n{}", e.stderr));
    assert_eq!(
        host.cached_results(),
        vec![format!("{net}-{}-eth0", c2.id()), format!("{net}-{}-eth0", c3.id())]
    );
    assert!(!host.veths().contains(&host_end(&r1)));
    assert_eq!(c1.links(), vec!["lo".to_string()], "GC's DEL had c1's netns");
    let holders = held(&host, net, &subnets);
    assert_eq!(holders.len(), 4, "{holders:?}");
    assert!(holders.iter().all(|(_, id)| id != c1.id()), "{holders:?}");
    assert!(!host.nft_ruleset().contains("8081"), "c1's mapping is left");

    // c3 is lost to the runtime: its container is gone and so is its cache entry (a runtime
    // restarted without its state). Only the GC verb can find what it held: the 1.1.0 list,
    // c2 valid.
    let c3_id = c3.id().to_string();
    drop(c3);
    std::fs::remove_file(host.cache_dir().join("results").join(format!("{net}-{c3_id}-eth0")))
        .expect("remove c3's cache entry");
    // The kernel destroys a namespace (and the pair with it) asynchronously.
    let end3 = host_end(&r3);
    wait_until(Duration::from_secs(5), "the pair to go with c3's netns", || {
        !host.veths().contains(&end3)
    });
    assert!(held(&host, net, &subnets).iter().any(|(_, id)| *id == c3_id));
    assert!(host.nft_ruleset().contains("8083"));
    host.gc(&conf11, &[(c2.id(), "eth0")])
        .unwrap_or_else(|e| panic!("GC (1.1.0): {e}\n{}", e.stderr));
    let holders = held(&host, net, &subnets);
    assert_eq!(
        holders.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(),
        vec![c2.id(), c2.id()],
        "GC keeps exactly the valid attachment's addresses"
    );
    let ruleset = host.nft_ruleset();
    assert!(!ruleset.contains("8083"), "GC left c3's port mapping: {ruleset}");
    assert!(
        ruleset.contains("8082"),
        "GC removed valid c2's port mapping: {ruleset}"
    );

    // c2 is untouched and still works (its neighbour cache flushed: the bridge may have
    // changed its MAC address as ports went, see bridge_keeps_its_mac_when_a_port_goes).
    check(&host, &conf, &c2);
    let ip2 = result_ips(&r2);
    c2.run("ip", ["neigh", "flush", "dev", "eth0"]);
    assert!(
        ping_retry(c2.ns(), GW4.parse().expect("gw"), 3),
        "c2 -> gateway after GC"
    );
    assert_eq!(host.veths(), vec![host_end(&r2)]);
    assert_eq!(addresses(&c2, "eth0"), ip2);
    host.status(&conf11)
        .unwrap_or_else(|e| panic!("STATUS: {e}\n{}", e.stderr));

    // DEL c2 (1.0.0, it was cached by a 1.0.0 ADD); a GC of nothing then finds nothing.
    host.attach("del", &conf, &c2, "eth0", &["--capability-args", &port(8082)])
        .unwrap_or_else(|e| panic!("DEL c2: {e}\n{}", e.stderr));
    host.gc(&conf11, &[])
        .unwrap_or_else(|e| panic!("GC (1.1.0, nothing valid): {e}\n{}", e.stderr));
    assert_nothing_left(&host, net, &subnets);
}
