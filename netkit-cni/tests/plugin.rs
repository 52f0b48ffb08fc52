//! The `netkit-cni` binary driven as container runtimes drive it: one process per call, the
//! `CNI_*` variables in its environment and the network configuration on stdin.
//!
//! Every test builds its own lab and never touches the namespace the tests run in:
//!
//! ```text
//!   C1 eth0 ─┐
//!   C2 eth0 ─┼─ cni0 (made by the plugin) ─ H ─ ext0 192.0.2.1/24 ── eth0 192.0.2.2/24 O
//!   …        ┘
//! ```
//!
//! H is the "host" namespace the plugin runs in (as a runtime on a node would run it), O an
//! "outside" machine with no route to the pod networks, C1…Cn the containers. All of them are
//! named namespaces deleted when the [`Lab`] drops, also on panic; the IPAM `dataDir` and the
//! firewall `firewallStateDir` live in a temp directory removed with it.
//!
//! The checks use independent oracles where they can: `ip -j` for links, addresses and routes,
//! `nft list ruleset` for the firewall, real pings and TCP connections for connectivity.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netkit_core::ipam::Ipam;
use netkit_core::{NetNs, NetNsGuard};
use netkit_test_support::echo::tcp_hello_from;
use netkit_test_support::iperf;
use netkit_test_support::snapshot::{default_route, global_addrs, mac_of, LinkRow};
use netkit_test_support::{in_ns, ip, ipj, poll_for, report_skip, wait_until, HostNs, KillOnDrop, Rng};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_netkit-cni");
const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const BRIDGE: &str = "cni0";
const POOL: &str = "podnet";
/// H's address towards O.
const EXT: &str = "192.0.2.1";
/// O's address.
const OUT: &str = "192.0.2.2";

const V4_NET: &str = "10.201.0.0/24";
const V4_GW: &str = "10.201.0.1";
const V6_NET: &str = "fd01:201::/64";
const V6_GW: &str = "fd01:201::1";

fn v4() -> Value {
    json!([[{ "subnet": V4_NET }]])
}

fn v6() -> Value {
    json!([[{ "subnet": V6_NET }]])
}

fn dual() -> Value {
    json!([[{ "subnet": V4_NET }], [{ "subnet": V6_NET }]])
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// At most `n` characters of `s` (for messages about huge inputs).
fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &s[..end], s.len())
    }
}

/// One ping answered (netkit-test-support's, shared with netkit-core's attach tests).
use netkit_test_support::ping;

// ---------------------------------------------------------------------------------------------
// TCP identity servers
// ---------------------------------------------------------------------------------------------

/// netkit-test-support's identity server: answers every connection with `NAME LOCAL PEER`.
use netkit_test_support::echo::Server as Echo;

/// What a server answered: (its name, the address it was reached at, the peer it saw).
type Hello = (String, SocketAddr, SocketAddr);

/// Connect from namespace `ns` to `to` and read the server's line, trying for up to 8 s (the
/// first packets can be lost to neighbour resolution).
fn hello(ns: &NetNs, to: SocketAddr) -> Result<Hello, String> {
    poll_for(Duration::from_secs(8), || tcp_hello_from(ns, to))
        .map(|h| (h.name, h.local, h.peer))
        .map_err(|e| format!("no answer from {to} within 8 s: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Plugin invocations
// ---------------------------------------------------------------------------------------------

/// A finished plugin process.
#[derive(Debug)]
struct Out {
    ok: bool,
    /// stdout as JSON (`Null` when empty or not JSON).
    v: Value,
    stdout: String,
    stderr: String,
}

impl Out {
    fn of(child: Child) -> Out {
        let out = child.wait_with_output().expect("wait for netkit-cni");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        Out {
            ok: out.status.success(),
            v,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "exit {}, stdout {}, stderr {}",
            if self.ok { "0" } else { "≠0" },
            clip(&self.stdout, 2000),
            clip(&self.stderr, 2000)
        )
    }

    /// Success; returns the printed result.
    #[track_caller]
    fn success(&self, what: &str) -> Value {
        assert!(self.ok, "{what} failed: {}", self.describe());
        self.v.clone()
    }

    /// Success with nothing printed (DEL, CHECK, GC, STATUS).
    #[track_caller]
    fn silent(&self, what: &str) {
        assert!(self.ok && self.stdout.trim().is_empty(), "{what}: {}", self.describe());
    }

    /// A CNI error with this code (and a message, in the spec's error shape).
    #[track_caller]
    fn error(&self, code: u64, what: &str) {
        assert!(!self.ok, "{what} succeeded: {}", self.describe());
        assert_eq!(self.v["code"], code, "{what}: {}", self.describe());
        self.well_formed_error(what);
    }

    #[track_caller]
    fn well_formed_error(&self, what: &str) {
        assert!(
            self.v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: error without msg: {}",
            self.describe()
        );
        assert!(
            self.v["cniVersion"].is_string(),
            "{what}: error without cniVersion: {}",
            self.describe()
        );
    }

    fn code(&self) -> u64 {
        self.v["code"].as_u64().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------------

/// A container: its namespace (None once deleted), the namespace's path and its container ID.
struct Ctr {
    ns: Option<NetNsGuard>,
    name: String,
    path: String,
    id: String,
}

impl Ctr {
    fn ns(&self) -> &NetNs {
        self.ns.as_ref().expect("container namespace still exists")
    }
}

/// Everything a test made. Fields drop in order: containers, O, H, then the temp directory.
struct Lab {
    ctrs: Vec<Ctr>,
    outside: Option<NetNsGuard>,
    /// H and the temp dir (IPAM `dataDir`, `firewallStateDir`, …): the host cnilab's libcni
    /// tests run plugins in too.
    host: HostNs,
}

impl Lab {
    /// H with loopback up.
    fn new(tag: &str) -> Lab {
        Lab {
            ctrs: Vec::new(),
            outside: None,
            host: HostNs::new(tag),
        }
    }

    /// H and O linked by a veth: H ext0 192.0.2.1/24, O eth0 192.0.2.2/24, O without a route to
    /// the pod networks.
    fn with_outside(tag: &str) -> Lab {
        let mut lab = Lab::new(tag);
        let o = lab.host.container("o");
        let on = o.name().unwrap().to_string();
        lab.outside = Some(o);
        let h = lab.h().to_string();
        ip(&[
            "-n", &h, "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", &on,
        ]);
        ip(&["-n", &h, "addr", "add", &format!("{EXT}/24"), "dev", "ext0"]);
        ip(&["-n", &on, "addr", "add", &format!("{OUT}/24"), "dev", "eth0"]);
        ip(&["-n", &h, "link", "set", "ext0", "up"]);
        ip(&["-n", &on, "link", "set", "eth0", "up"]);
        lab
    }

    fn h(&self) -> &str {
        self.host.name()
    }

    /// `ip -n H ARGS`.
    fn ip_in_h(&self, args: &[&str]) -> String {
        self.host.ip(args)
    }

    fn o(&self) -> &NetNs {
        self.outside.as_ref().expect("lab with outside")
    }

    /// A new container namespace (loopback up); returns its index.
    fn container(&mut self) -> usize {
        let i = self.ctrs.len();
        let ns = self.host.container(&format!("c{i}"));
        let name = ns.name().expect("named").to_string();
        let path = ns.path().display().to_string();
        self.ctrs.push(Ctr {
            ns: Some(ns),
            name,
            path,
            id: format!("ctr{i}"),
        });
        i
    }

    /// Delete container `i`'s namespace (as a runtime does when the sandbox goes away).
    fn remove_container(&mut self, i: usize) {
        self.ctrs[i].ns = None;
    }

    fn ipam_dir(&self) -> PathBuf {
        self.host.ipam_dir()
    }

    fn fw_dir(&self) -> PathBuf {
        self.host.fw_dir()
    }

    /// The network configuration: bridge mode, the bridge as default gateway, netkit IPAM.
    fn conf(&self, version: &str, ranges: Value) -> Value {
        json!({
            "cniVersion": version,
            "name": POOL,
            "type": "netkit-cni",
            "bridge": BRIDGE,
            "isGateway": true,
            "isDefaultGateway": true,
            "firewallBackend": "nftables",
            "firewallStateDir": self.fw_dir(),
            "ipam": {"type": "netkit-ipam", "dataDir": self.ipam_dir(), "ranges": ranges}
        })
    }

    /// Spawn the plugin inside H with exactly this environment (plus PATH) and stdin.
    fn spawn_raw(&self, env: &[(&str, String)], stdin: &[u8]) -> Child {
        let mut cmd = self.host.command(BIN);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn netkit-cni in H");
        let mut pipe = child.stdin.take().unwrap();
        // A plugin may refuse input and exit before reading it all: a broken pipe is its answer.
        let _ = pipe.write_all(stdin);
        drop(pipe);
        child
    }

    /// The environment a runtime sets for `verb` on container `i` (interface eth0).
    fn env(&self, verb: &str, i: usize) -> Vec<(&'static str, String)> {
        let c = &self.ctrs[i];
        vec![
            ("CNI_COMMAND", verb.to_string()),
            ("CNI_CONTAINERID", c.id.clone()),
            ("CNI_NETNS", c.path.clone()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", "/usr/lib/cni".to_string()),
        ]
    }

    fn spawn(&self, verb: &str, i: usize, conf: &Value) -> Child {
        self.spawn_raw(&self.env(verb, i), conf.to_string().as_bytes())
    }

    fn call(&self, verb: &str, i: usize, conf: &Value) -> Out {
        Out::of(self.spawn(verb, i, conf))
    }

    /// A verb without an attachment (GC, STATUS).
    fn call_global(&self, verb: &str, conf: &Value) -> Out {
        let env = vec![
            ("CNI_COMMAND", verb.to_string()),
            ("CNI_PATH", "/usr/lib/cni".to_string()),
        ];
        Out::of(self.spawn_raw(&env, conf.to_string().as_bytes()))
    }

    /// ADD that must succeed; returns the result.
    #[track_caller]
    fn add(&self, i: usize, conf: &Value) -> Value {
        self.call("ADD", i, conf)
            .success(&format!("ADD of {}", self.ctrs[i].id))
    }

    // --- what is in the lab -------------------------------------------------------------------

    /// H's links: (name, kind, master).
    fn links(&self) -> Vec<LinkRow> {
        self.host.links()
    }

    /// Names of the veths in H that the plugin made (everything but ext0).
    fn veths(&self) -> Vec<String> {
        self.links()
            .into_iter()
            .filter(|(n, k, _)| k == "veth" && n != "ext0")
            .map(|(n, _, _)| n)
            .collect()
    }

    /// H's global addresses: "ifname address/prefix".
    fn addrs(&self) -> Vec<String> {
        self.host.global_addrs()
    }

    /// `nft list ruleset` in H.
    fn nft(&self) -> String {
        self.host.nft_ruleset()
    }

    /// The IPAM store of the pool (opened as netkit's library does).
    fn ipam(&self) -> Ipam {
        self.host.ipam_store(POOL)
    }

    /// Every reservation: "address containerID:ifname".
    fn held(&self) -> Vec<String> {
        self.host.ipam_held(POOL)
    }

    /// Owners in the firewall's state directory.
    fn fw_owners(&self) -> Vec<String> {
        self.host.fw_owners()
    }

    /// Everything a plugin call may change in H and in the stores.
    fn snapshot(&self) -> Snapshot {
        self.host.state(POOL)
    }

    /// Assert that nothing of attachment `i` is left: no eth0 in its namespace (if it still
    /// exists), no reservation, no firewall owner or nft element.
    #[track_caller]
    fn assert_gone(&self, i: usize) {
        let c = &self.ctrs[i];
        let owner = format!("{POOL}/{}:eth0", c.id);
        if c.ns.is_some() {
            assert!(
                ipj(&c.name, &["link", "show", "eth0"]).is_none(),
                "{}: eth0 left in the container",
                c.id
            );
        }
        let held: Vec<String> = self.held().into_iter().filter(|h| h.ends_with(&owner)).collect();
        assert!(held.is_empty(), "{owner}: reservations left: {held:?}");
        assert!(!self.fw_owners().contains(&owner), "{owner}: still a firewall owner");
        // Its own elements only: a shared one (the pod network in localnet4/6) stays while
        // other attachments need it, whatever its comment says (see
        // `a_shared_network_element_is_not_left_labelled_with_a_departed_owner`).
        let nft = self.nft();
        let left = nft_elements_of(&nft, &owner, false);
        assert!(left.is_empty(), "{owner}: nft elements left: {left:?}\n{nft}");
    }

    /// Assert H is back to its pre-state: no veth, no reservation, no firewall owner, an empty
    /// ruleset.
    #[track_caller]
    fn assert_clean(&self) {
        assert_eq!(self.veths(), Vec::<String>::new(), "veths left in H");
        assert_eq!(self.held(), Vec::<String>::new(), "IPAM reservations left");
        let check = self.ipam().check().unwrap();
        assert!(check.problems.is_empty(), "IPAM store problems: {:?}", check.problems);
        assert_eq!(self.fw_owners(), Vec::<String>::new(), "firewall owners left");
        let nft = self.nft();
        assert!(nft.trim().is_empty(), "nft ruleset of H not empty:\n{nft}");
    }
}

/// The lines of `nft list ruleset` output with an element commented with `owner`, as
/// "set: line"; without `shared`, the sets of shared elements (localnet4/6) are skipped.
fn nft_elements_of(nft: &str, owner: &str, shared: bool) -> Vec<String> {
    let mut set = "";
    let mut out = Vec::new();
    for line in nft.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("set ").or_else(|| t.strip_prefix("map ")) {
            set = rest.split_whitespace().next().unwrap_or_default();
        }
        if line.contains(&format!("comment \"{owner}\"")) && (shared || !set.starts_with("localnet")) {
            out.push(format!("{set}: {t}"));
        }
    }
    out
}

/// What a plugin call may change (netkit-test-support's, shared with netkit-core's attach tests).
type Snapshot = netkit_test_support::HostState;

/// The addresses ("a/p") of a result.
fn result_addrs(r: &Value) -> Vec<String> {
    r["ips"]
        .as_array()
        .map(|ips| ips.iter().map(|i| i["address"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The address (no prefix) of family v4/v6 in a result.
fn result_ip(r: &Value, want_v4: bool) -> IpAddr {
    result_addrs(r)
        .iter()
        .map(|a| a.split('/').next().unwrap().parse::<IpAddr>().unwrap())
        .find(|a| a.is_ipv4() == want_v4)
        .unwrap_or_else(|| panic!("no {} address in {r}", if want_v4 { "IPv4" } else { "IPv6" }))
}

// ---------------------------------------------------------------------------------------------
// 1. ADD / CHECK / DEL in every version
// ---------------------------------------------------------------------------------------------

/// ADD, verify the result and the container, CHECK with prevResult, DEL, in every version.
fn add_check_del_in_every_version(tag: &str, ranges: Value, want_v4: bool, want_v6: bool) {
    let mut lab = Lab::new(tag);
    for version in VERSIONS {
        let c = lab.container();
        let conf = lab.conf(version, ranges.clone());
        let r = lab.add(c, &conf);
        let ctr = &lab.ctrs[c];
        let ctx = format!("{version} {tag}: {r}");

        // The result, in the config's version.
        assert_eq!(r["cniVersion"], version, "{ctx}");
        let ifs = r["interfaces"]
            .as_array()
            .unwrap_or_else(|| panic!("no interfaces: {ctx}"));
        assert_eq!(ifs.len(), 3, "{ctx}");
        assert_eq!(ifs[0]["name"], BRIDGE, "{ctx}");
        assert!(ifs[0]["sandbox"].is_null(), "{ctx}");
        let host_end = ifs[1]["name"].as_str().unwrap().to_string();
        assert!(ifs[1]["sandbox"].is_null(), "{ctx}");
        assert_eq!(ifs[2]["name"], "eth0", "{ctx}");
        assert_eq!(ifs[2]["sandbox"], ctr.path.as_str(), "{ctx}");
        assert_eq!(ifs[1]["mac"], mac_of(lab.h(), &host_end).as_str(), "{ctx}");
        assert_eq!(ifs[2]["mac"], mac_of(&ctr.name, "eth0").as_str(), "{ctx}");
        let host_link = ipj(lab.h(), &["link", "show", &host_end]).unwrap_or_else(|| panic!("no {host_end} in H"));
        assert_eq!(host_link[0]["master"], BRIDGE, "{ctx}");
        assert_eq!(host_link[0]["linkinfo"]["info_kind"], "veth", "{ctx}");

        let ips = r["ips"].as_array().unwrap();
        assert_eq!(ips.len(), usize::from(want_v4) + usize::from(want_v6), "{ctx}");
        for ipr in ips {
            assert_eq!(ipr["interface"], 2, "{ctx}");
            let addr: ipnetwork::IpNetwork = ipr["address"].as_str().unwrap().parse().unwrap();
            let fam = if addr.is_ipv4() { "4" } else { "6" };
            if version.starts_with("0.") {
                assert_eq!(ipr["version"], fam, "{ctx}");
            } else {
                assert!(ipr.get("version").is_none(), "{ctx}");
            }
            let gw = if addr.is_ipv4() { V4_GW } else { V6_GW };
            assert_eq!(ipr["gateway"], gw, "{ctx}");
        }

        // The container really has them: addresses on eth0, eth0 up, default routes through
        // the bridge's gateway addresses, which H really has on the bridge.
        let mut in_ctr: Vec<String> = global_addrs(&ctr.name);
        in_ctr.sort();
        let mut want: Vec<String> = result_addrs(&r).iter().map(|a| format!("eth0 {a}")).collect();
        want.sort();
        assert_eq!(in_ctr, want, "{ctx}");
        let eth0 = ipj(&ctr.name, &["link", "show", "eth0"]).unwrap();
        assert!(
            eth0[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
            "eth0 is not up: {eth0}"
        );
        let br_addrs = global_addrs(lab.h());
        let routes = r["routes"].as_array().cloned().unwrap_or_default();
        for (fam_v4, gw) in [(true, V4_GW), (false, V6_GW)] {
            let wanted = if fam_v4 { want_v4 } else { want_v6 };
            let dr = default_route(&ctr.name, !fam_v4);
            let dst = if fam_v4 { "0.0.0.0/0" } else { "::/0" };
            if wanted {
                assert_eq!(dr, Some((gw.to_string(), "eth0".to_string())), "{ctx}");
                assert!(
                    routes.iter().any(|x| x["dst"] == dst && x["gw"] == gw),
                    "route {dst} via {gw} missing from the result: {ctx}"
                );
                let prefix = if fam_v4 { 24 } else { 64 };
                assert!(
                    br_addrs.contains(&format!("{BRIDGE} {gw}/{prefix}")),
                    "{gw} is not on the bridge: {br_addrs:?}"
                );
            } else {
                assert_eq!(dr, None, "{ctx}");
                assert!(!routes.iter().any(|x| x["dst"] == dst), "{ctx}");
            }
        }
        assert_eq!(
            lab.fw_owners(),
            Vec::<String>::new(),
            "no ipMasq, no mappings: no rules"
        );

        // CHECK with prevResult = the ADD result (CHECK exists from 0.4.0).
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = r.clone();
        let out = lab.call("CHECK", c, &with_prev);
        if version.starts_with("0.3") {
            out.error(1, &format!("CHECK in {version}"));
        } else {
            out.silent(&format!("CHECK in {version}"));
        }

        // DEL (with prevResult, as runtimes send it).
        lab.call("DEL", c, &with_prev).silent(&format!("DEL in {version}"));
        lab.assert_gone(c);
        assert!(
            ipj(lab.h(), &["link", "show", &host_end]).is_none(),
            "{host_end} left in H"
        );
    }
    lab.assert_clean();
}

#[test]
fn add_check_del_ipv4_in_every_version() {
    add_check_del_in_every_version("v4", v4(), true, false);
}

#[test]
fn add_check_del_ipv6_in_every_version() {
    add_check_del_in_every_version("v6", v6(), false, true);
}

#[test]
fn add_check_del_dual_stack_in_every_version() {
    add_check_del_in_every_version("ds", dual(), true, true);
}

/// The result's bridge entry is the bridge as it is after the ADD: a Linux bridge takes the
/// lowest MAC of its ports when the first one joins, so a MAC read before attaching the veth is
/// stale (the reference plugin re-reads the bridge for this reason).
#[test]
fn result_reports_the_bridge_mac_as_it_is_after_the_add() {
    let mut lab = Lab::new("brmac");
    let conf = lab.conf("1.0.0", v4());
    for _ in 0..3 {
        let c = lab.container();
        let r = lab.add(c, &conf);
        let actual = mac_of(lab.h(), BRIDGE);
        assert_eq!(
            r["interfaces"][0]["mac"],
            actual.as_str(),
            "ADD of {}: the result reports a bridge MAC that is not the bridge's: {r}",
            lab.ctrs[c].id
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Connectivity
// ---------------------------------------------------------------------------------------------

#[test]
fn containers_reach_each_other_the_host_and_the_outside_and_port_mappings_reach_them() {
    let mut lab = Lab::with_outside("conn");
    let mut conf = lab.conf("1.1.0", dual());
    conf["ipMasq"] = json!(true);
    conf["capabilities"] = json!({"portMappings": true});
    let (c1, c2) = (lab.container(), lab.container());
    let mut conf1 = conf.clone();
    conf1["runtimeConfig"] = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let r1 = lab.add(c1, &conf1);
    let r2 = lab.add(c2, &conf);
    let (a1, a2) = (result_ip(&r1, true), result_ip(&r2, true));
    let (b1, b2) = (result_ip(&r1, false), result_ip(&r2, false));
    let (n1, n2) = (lab.ctrs[c1].name.clone(), lab.ctrs[c2].name.clone());

    // Ping: container ↔ container (both families), container → the bridge gateway.
    for (from, to) in [
        (&n1, a2.to_string()),
        (&n2, a1.to_string()),
        (&n1, b2.to_string()),
        (&n2, b1.to_string()),
        (&n1, V4_GW.to_string()),
        (&n2, V6_GW.to_string()),
    ] {
        assert!(ping(from, &to), "no ping from {from} to {to}");
    }
    // Host → containers, through the bridge.
    for to in [a1, b1, a2, b2] {
        assert!(ping(lab.h(), &to.to_string()), "no ping from H to {to}");
    }

    // TCP container → container, both families, sources unchanged.
    let s4 = Echo::tcp(lab.ctrs[c2].ns(), "C2", SocketAddr::new(a2, 7000));
    let s6 = Echo::tcp(lab.ctrs[c2].ns(), "C2", SocketAddr::new(b2, 7000));
    let (name, _, peer) = hello(lab.ctrs[c1].ns(), SocketAddr::new(a2, 7000)).unwrap();
    assert_eq!((name.as_str(), peer.ip()), ("C2", a1));
    let (name, _, peer) = hello(lab.ctrs[c1].ns(), SocketAddr::new(b2, 7000)).unwrap();
    assert_eq!((name.as_str(), peer.ip()), ("C2", b1));
    drop((s4, s6));

    // TCP container → O: masqueraded to H's address towards O.
    let out: IpAddr = OUT.parse().unwrap();
    let _so = Echo::tcp(lab.o(), "O", SocketAddr::new(out, 9000));
    for c in [c1, c2] {
        let (name, _, peer) = hello(lab.ctrs[c].ns(), SocketAddr::new(out, 9000))
            .unwrap_or_else(|e| panic!("{} cannot reach O: {e}", lab.ctrs[c].id));
        assert_eq!(name, "O");
        assert_eq!(peer.ip().to_string(), EXT, "O must see H's address (masquerade)");
    }

    // O → H:8080 → C1:80 through the port mapping; C1 sees O's own address.
    let _sc = Echo::tcp(lab.ctrs[c1].ns(), "C1", "0.0.0.0:80".parse().unwrap());
    let (name, local, peer) =
        hello(lab.o(), format!("{EXT}:8080").parse().unwrap()).expect("O reaches C1 through hostPort 8080");
    assert_eq!(name, "C1");
    assert_eq!(local, SocketAddr::new(a1, 80), "DNAT to C1's address and port");
    assert_eq!(peer.ip(), out);

    // After DEL of C1, its mapping is gone: O no longer reaches anything on 8080.
    lab.call("DEL", c1, &conf1).silent("DEL C1");
    let gone = lab
        .o()
        .run(|| TcpStream::connect_timeout(&format!("{EXT}:8080").parse().unwrap(), Duration::from_secs(1)));
    assert!(!matches!(gone, Ok(Ok(_))), "hostPort 8080 still answers after DEL");
    lab.call("DEL", c2, &conf).silent("DEL C2");
    lab.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// 3. DEL without the container, DEL twice, CHECK finding differences
// ---------------------------------------------------------------------------------------------

#[test]
fn del_after_the_container_namespace_is_gone_releases_everything() {
    let mut lab = Lab::new("delgone");
    let mut conf = lab.conf("1.0.0", v4());
    conf["ipMasq"] = json!(true);
    conf["capabilities"] = json!({"portMappings": true, "ips": true});
    conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": 8081, "containerPort": 80}]});
    let c = lab.container();
    let r = lab.add(c, &conf);
    let addr = result_ip(&r, true);
    let host_end = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    assert!(!nft_elements_of(&lab.nft(), "podnet/ctr0:eth0", false).is_empty());

    lab.remove_container(c);
    lab.call("DEL", c, &conf).silent("DEL with the netns deleted");
    lab.assert_gone(c);
    let nft = lab.nft();
    assert!(
        nft.trim().is_empty(),
        "the only attachment is gone, the ruleset is not:\n{nft}"
    );
    // The kernel destroys the pair with the namespace asynchronously; the plugin deletes the host
    // end by name in any case, so it must be gone right after DEL.
    assert!(
        ipj(lab.h(), &["link", "show", &host_end]).is_none(),
        "{host_end} still in H after DEL"
    );
    // DEL again: still fine.
    lab.call("DEL", c, &conf).silent("second DEL");

    // The address and the host port are free again: another container gets exactly them.
    let c2 = lab.container();
    let mut again = conf.clone();
    again["runtimeConfig"]["ips"] = json!([format!("{addr}/24")]);
    let r2 = lab.add(c2, &again);
    assert_eq!(
        result_ip(&r2, true),
        addr,
        "the released address is granted again: {r2}"
    );
    lab.call("DEL", c2, &again).silent("DEL c2");
    lab.assert_clean();
}

/// DEL without CNI_NETNS (allowed by the spec) while the container still exists: the pair goes
/// through its host end, found by name.
#[test]
fn del_without_cni_netns_removes_the_pair_through_the_host_end() {
    let mut lab = Lab::new("delnons");
    let conf = lab.conf("1.0.0", v4());
    let c = lab.container();
    let r = lab.add(c, &conf);
    let host_end = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let env: Vec<(&str, String)> = lab
        .env("DEL", c)
        .into_iter()
        .filter(|(k, _)| *k != "CNI_NETNS")
        .collect();
    Out::of(lab.spawn_raw(&env, conf.to_string().as_bytes())).silent("DEL without CNI_NETNS");
    assert!(ipj(lab.h(), &["link", "show", &host_end]).is_none());
    assert!(
        ipj(&lab.ctrs[c].name, &["link", "show", "eth0"]).is_none(),
        "the container end goes with its peer"
    );
    lab.assert_gone(c);
    lab.assert_clean();
}

#[test]
fn del_twice_and_del_of_an_attachment_that_never_existed_succeed() {
    let mut lab = Lab::new("deltwice");
    let mut conf = lab.conf("1.1.0", dual());
    conf["ipMasq"] = json!(true);
    let (c1, c2) = (lab.container(), lab.container());
    lab.add(c1, &conf);
    lab.call("DEL", c1, &conf).silent("first DEL");
    lab.call("DEL", c1, &conf).silent("second DEL");
    lab.call("DEL", c2, &conf).silent("DEL of an attachment never added");
    lab.assert_gone(c1);
    lab.assert_clean();
}

#[test]
fn check_detects_a_deleted_address_route_and_bridge_port() {
    let mut lab = Lab::new("check");
    let conf = lab.conf("1.0.0", v4());
    let c = lab.container();
    let r = lab.add(c, &conf);
    let mut chk = conf.clone();
    chk["prevResult"] = r.clone();
    let n = lab.ctrs[c].name.clone();
    let addr = result_addrs(&r)[0].clone();
    let host_end = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    lab.call("CHECK", c, &chk).silent("CHECK of an intact attachment");

    ip(&["-n", &n, "addr", "del", &addr, "dev", "eth0"]);
    lab.call("CHECK", c, &chk).error(102, "CHECK with the address deleted");
    ip(&["-n", &n, "addr", "add", &addr, "dev", "eth0"]);
    ip(&["-n", &n, "route", "replace", "default", "via", V4_GW, "dev", "eth0"]);
    lab.call("CHECK", c, &chk).silent("CHECK with the address restored");

    ip(&["-n", &n, "route", "del", "default"]);
    lab.call("CHECK", c, &chk)
        .error(102, "CHECK with the default route deleted");
    ip(&["-n", &n, "route", "add", "default", "via", V4_GW, "dev", "eth0"]);
    lab.call("CHECK", c, &chk).silent("CHECK with the route restored");

    ip(&["-n", lab.h(), "link", "set", &host_end, "nomaster"]);
    lab.call("CHECK", c, &chk)
        .error(102, "CHECK with the host end off the bridge");
    ip(&["-n", lab.h(), "link", "set", &host_end, "master", BRIDGE]);
    lab.call("CHECK", c, &chk).silent("CHECK with the port restored");

    // The reservation released behind the plugin's back.
    lab.ipam()
        .release(&netkit_core::ipam::Owner::new("ctr0", "eth0").unwrap())
        .unwrap();
    lab.call("CHECK", c, &chk).error(102, "CHECK with the reservation gone");
}

/// Dual-stack: deleting only the IPv4 default route (or only the IPv6 one) must fail CHECK;
/// the other family's default route is not a substitute.
#[test]
fn check_detects_a_deleted_default_route_of_one_family_in_dual_stack() {
    let mut lab = Lab::new("check6");
    let conf = lab.conf("1.0.0", dual());
    let c = lab.container();
    let r = lab.add(c, &conf);
    let mut chk = conf.clone();
    chk["prevResult"] = r.clone();
    let n = lab.ctrs[c].name.clone();
    lab.call("CHECK", c, &chk).silent("CHECK of an intact attachment");

    ip(&["-n", &n, "-4", "route", "del", "default"]);
    assert_eq!(default_route(&n, false), None);
    lab.call("CHECK", c, &chk).error(
        102,
        "CHECK with the IPv4 default route deleted (IPv6 default still there)",
    );
    ip(&["-n", &n, "-4", "route", "add", "default", "via", V4_GW, "dev", "eth0"]);
    lab.call("CHECK", c, &chk).silent("CHECK with the IPv4 route restored");

    ip(&["-n", &n, "-6", "route", "del", "default"]);
    lab.call("CHECK", c, &chk).error(
        102,
        "CHECK with the IPv6 default route deleted (IPv4 default still there)",
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Fifty at once
// ---------------------------------------------------------------------------------------------

#[test]
fn fifty_parallel_adds_then_fifty_parallel_dels() {
    let mut lab = Lab::new("par50");
    let mut conf = lab.conf("1.1.0", dual());
    conf["ipMasq"] = json!(true);
    let ctrs: Vec<usize> = (0..50).map(|_| lab.container()).collect();

    let t = Instant::now();
    let children: Vec<(usize, Child)> = ctrs.iter().map(|&c| (c, lab.spawn("ADD", c, &conf))).collect();
    let mut results = Vec::new();
    for (c, child) in children {
        let out = Out::of(child);
        results.push((c, out.success(&format!("parallel ADD of {}", lab.ctrs[c].id))));
    }
    println!("50 parallel ADDs: {:?}", t.elapsed());
    let (mut v4s, mut v6s, mut ends) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (c, r) in &results {
        v4s.insert(result_ip(r, true));
        v6s.insert(result_ip(r, false));
        ends.insert(r["interfaces"][1]["name"].as_str().unwrap().to_string());
        let want: BTreeSet<String> = result_addrs(r).iter().map(|a| format!("eth0 {a}")).collect();
        let have: BTreeSet<String> = global_addrs(&lab.ctrs[*c].name).into_iter().collect();
        assert_eq!(have, want, "{}", lab.ctrs[*c].id);
    }
    assert_eq!(
        (v4s.len(), v6s.len(), ends.len()),
        (50, 50, 50),
        "addresses or host ends shared"
    );
    let links = lab.links();
    let ports = links
        .iter()
        .filter(|(n, k, m)| k == "veth" && m == BRIDGE && ends.contains(n))
        .count();
    assert_eq!(ports, 50, "{links:?}");
    assert_eq!(lab.held().len(), 100);
    assert_eq!(lab.fw_owners().len(), 50);
    let check = lab.ipam().check().unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);

    let t = Instant::now();
    let children: Vec<(usize, Child)> = ctrs.iter().map(|&c| (c, lab.spawn("DEL", c, &conf))).collect();
    for (c, child) in children {
        Out::of(child).silent(&format!("parallel DEL of {}", lab.ctrs[c].id));
    }
    println!("50 parallel DELs: {:?}", t.elapsed());
    for &c in &ctrs {
        lab.assert_gone(c);
    }
    lab.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// 5. SIGKILL during ADD
// ---------------------------------------------------------------------------------------------

/// The configuration of the kill tests: dual-stack, masquerade, one host port per container.
fn kill_conf(lab: &Lab, i: usize) -> Value {
    let mut conf = lab.conf("1.1.0", dual());
    conf["ipMasq"] = json!(true);
    conf["capabilities"] = json!({"portMappings": true});
    conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": 20000 + i, "containerPort": 80}]});
    conf
}

/// Rounds of ADDs (several at once) each killed with SIGKILL after a random delay within about
/// three times one ADD's duration. Returns the containers whose ADD completed and those killed.
fn kill_rounds(lab: &mut Lab, rng: &mut Rng, rounds: usize, per_round: usize) -> (Vec<usize>, Vec<usize>) {
    // Calibrate: how long does one ADD take here?
    let c = lab.container();
    let t = Instant::now();
    lab.add(c, &kill_conf(lab, c));
    let took = t.elapsed();
    // Five at once on a small machine each take longer than one alone: kill within 3× of it.
    let span = (took.as_micros() as u64 * 3).max(2000);
    lab.call("DEL", c, &kill_conf(lab, c)).silent("calibration DEL");
    println!("one ADD: {took:?}; kills within {span} µs of the start of each round");
    let (mut done, mut killed) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Each process gets its own kill time, measured from the start of the round.
        let ids: Vec<usize> = (0..per_round).map(|_| lab.container()).collect();
        let start = Instant::now();
        let mut batch: Vec<(Duration, usize, Child)> = ids
            .into_iter()
            .map(|c| {
                let at = Duration::from_micros(rng.below(span));
                (at, c, lab.spawn("ADD", c, &kill_conf(lab, c)))
            })
            .collect();
        batch.sort_by_key(|(at, _, _)| *at);
        for (at, c, mut child) in batch {
            std::thread::sleep(at.saturating_sub(start.elapsed()));
            let _ = child.kill(); // SIGKILL
            let out = Out::of(child);
            if out.ok {
                done.push(c);
            } else {
                killed.push(c);
            }
        }
    }
    println!("{} killed, {} completed", killed.len(), done.len());
    assert!(!killed.is_empty(), "no ADD was killed mid-way: the test proved nothing");
    (done, killed)
}

#[test]
fn sigkill_during_add_then_del_leaves_nothing() {
    let mut lab = Lab::new("killdel");
    let mut rng = Rng::seeded();
    let (done, killed) = kill_rounds(&mut lab, &mut rng, 8, 5);
    // How many killed ADDs left something behind (else the DELs below prove little).
    let (held, owners, veths) = (lab.held().join(" "), lab.fw_owners(), lab.veths());
    let left = killed
        .iter()
        .filter(|&&c| {
            let owner = format!("{POOL}/{}:eth0", lab.ctrs[c].id);
            held.contains(&owner)
                || owners.contains(&owner)
                || ipj(&lab.ctrs[c].name, &["link", "show", "eth0"]).is_some()
        })
        .count();
    println!(
        "{left} killed ADDs left reservations, rules or links ({} veths in H)",
        veths.len()
    );
    assert!(
        left > 0,
        "every kill landed before the plugin changed anything: the test proved nothing"
    );
    for &c in done.iter().chain(&killed) {
        lab.call("DEL", c, &kill_conf(&lab, c))
            .silent(&format!("DEL of {}", lab.ctrs[c].id));
    }
    for &c in done.iter().chain(&killed) {
        lab.assert_gone(c);
    }
    lab.assert_clean();
}

#[test]
fn sigkill_during_add_then_gc_leaves_nothing_of_the_killed() {
    let mut lab = Lab::new("killgc");
    let mut rng = Rng::seeded();
    let (done, killed) = kill_rounds(&mut lab, &mut rng, 8, 5);
    // The runtime forgets the killed attachments: their sandboxes go, then GC with the list of
    // those it keeps.
    for &c in &killed {
        lab.remove_container(c);
    }
    let mut gc = lab.conf("1.1.0", dual());
    gc["ipMasq"] = json!(true);
    gc["cni.dev/valid-attachments"] = done
        .iter()
        .map(|&c| json!({"containerID": lab.ctrs[c].id, "ifname": "eth0"}))
        .collect();
    lab.call_global("GC", &gc).silent("GC");
    for &c in &killed {
        lab.assert_gone(c);
    }
    // The kept attachments are intact.
    let mut want_owners: Vec<String> = done
        .iter()
        .map(|&c| format!("{POOL}/{}:eth0", lab.ctrs[c].id))
        .collect();
    want_owners.sort();
    assert_eq!(lab.fw_owners(), want_owners);
    assert_eq!(lab.held().len(), done.len() * 2);
    // Veths of the killed ones went with their namespaces (the kernel does that asynchronously).
    wait_until(Duration::from_secs(10), "the killed ones' veths to go", || {
        lab.veths().len() <= done.len()
    });
    assert_eq!(lab.veths().len(), done.len(), "{:?}", lab.veths());
    // GC with nothing valid empties everything.
    gc["cni.dev/valid-attachments"] = json!([]);
    for &c in &done {
        lab.remove_container(c);
    }
    lab.call_global("GC", &gc).silent("GC of everything");
    wait_until(Duration::from_secs(10), "every veth to go with its namespace", || {
        lab.veths().is_empty()
    });
    lab.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// 6. Rollback of a failed ADD
// ---------------------------------------------------------------------------------------------

/// ADD of container `c` fails; afterwards H and the stores are exactly as before and the
/// container has no eth0 from the plugin.
#[track_caller]
/// ADD of container `c` fails (with `code`, or any well-formed error when `None`), and the host,
/// the stores and the container are as before.
fn add_fails_and_changes_nothing(lab: &Lab, c: usize, conf: &Value, code: Option<u64>, what: &str) -> Out {
    let before = lab.snapshot();
    let out = lab.call("ADD", c, conf);
    match code {
        Some(code) => out.error(code, what),
        None => {
            assert!(!out.ok, "{what} succeeded: {}", out.describe());
            out.well_formed_error(what);
        }
    }
    let after = lab.snapshot();
    assert_eq!(
        before,
        after,
        "{what}: the failed ADD left changes: {}",
        before.diff(&after)
    );
    lab.assert_gone(c);
    out
}

#[test]
fn failed_add_rolls_back_a_host_port_conflict() {
    let mut lab = Lab::new("rbport");
    let mut conf = lab.conf("1.0.0", dual());
    conf["ipMasq"] = json!(true);
    conf["capabilities"] = json!({"portMappings": true});
    conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let (c1, c2) = (lab.container(), lab.container());
    lab.add(c1, &conf);
    let out = add_fails_and_changes_nothing(&lab, c2, &conf, Some(7), "ADD of a host port C1 maps");
    assert!(out.v["msg"].as_str().unwrap().contains("8080"), "{}", out.describe());
    // C1 keeps its mapping.
    assert!(lab.nft().contains("8080 comment \"podnet/ctr0:eth0\""), "{}", lab.nft());
    lab.call("DEL", c1, &conf).silent("DEL C1");
    lab.assert_clean();
}

#[test]
fn failed_add_rolls_back_when_the_pool_is_exhausted() {
    let mut lab = Lab::new("rbpool");
    let mut conf = lab.conf(
        "1.0.0",
        json!([[{"subnet": V4_NET, "rangeStart": "10.201.0.10", "rangeEnd": "10.201.0.10"}]]),
    );
    conf["ipMasq"] = json!(true);
    let (c1, c2) = (lab.container(), lab.container());
    lab.add(c1, &conf);
    add_fails_and_changes_nothing(&lab, c2, &conf, Some(100), "ADD with the pool exhausted");
    lab.call("DEL", c1, &conf).silent("DEL C1");
    lab.assert_clean();
}

/// A failure after IPAM and the veth: the container has IPv6 disabled, so its IPv6 address
/// cannot be added.
#[test]
fn failed_add_rolls_back_after_the_veth_was_made() {
    let mut lab = Lab::new("rbveth");
    let mut conf = lab.conf("1.0.0", dual());
    conf["ipMasq"] = json!(true);
    let (c1, c2) = (lab.container(), lab.container());
    lab.add(c1, &conf);
    let n2 = lab.ctrs[c2].name.clone();
    let out = in_ns(&n2, &["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"]);
    assert!(out.status.success());
    add_fails_and_changes_nothing(&lab, c2, &conf, None, "ADD into a container without IPv6");
    lab.call("DEL", c1, &conf).silent("DEL C1");
    lab.assert_clean();
}

/// The container already has an eth0: the veth cannot be made; the reservation is released and
/// the container's own eth0 (a veth of its own) is left alone.
#[test]
fn failed_add_rolls_back_when_the_interface_name_is_taken() {
    let mut lab = Lab::new("rbname");
    let mut conf = lab.conf("1.0.0", v4());
    conf["ipMasq"] = json!(true);
    let (c1, c2) = (lab.container(), lab.container());
    lab.add(c1, &conf);
    let n2 = lab.ctrs[c2].name.clone();
    ip(&[
        "-n", &n2, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer",
    ]);
    // assert_gone does not apply: the container keeps its own eth0.
    let before = lab.snapshot();
    let out = lab.call("ADD", c2, &conf);
    assert!(!out.ok, "ADD over an existing eth0 succeeded: {}", out.describe());
    out.well_formed_error("ADD over an existing eth0");
    let after = lab.snapshot();
    assert_eq!(before, after, "the failed ADD left changes: {}", before.diff(&after));
    let eth0 = ipj(&n2, &["link", "show", "eth0"]).expect("the container's own eth0 is still there");
    assert_eq!(eth0[0]["linkinfo"]["info_kind"], "veth");
    assert!(ipj(&n2, &["link", "show", "eth0peer"]).is_some());
    lab.call("DEL", c1, &conf).silent("DEL C1");
    lab.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// 7. GC and STATUS
// ---------------------------------------------------------------------------------------------

#[test]
fn gc_releases_reservations_and_rules_of_attachments_not_listed() {
    let mut lab = Lab::new("gc");
    let conf_of = |lab: &Lab, port: u16| {
        let mut conf = lab.conf("1.1.0", dual());
        conf["ipMasq"] = json!(true);
        conf["capabilities"] = json!({"portMappings": true});
        conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": port, "containerPort": 80}]});
        conf
    };
    let cs: Vec<usize> = (0..3).map(|_| lab.container()).collect();
    let mut results = Vec::new();
    for (k, &c) in cs.iter().enumerate() {
        results.push(lab.add(c, &conf_of(&lab, 8000 + k as u16)));
    }
    let mut gc = lab.conf("1.1.0", dual());
    gc["ipMasq"] = json!(true);

    // Without a valid list, or in a version without GC: refused, nothing released.
    let before = lab.snapshot();
    lab.call_global("GC", &gc)
        .error(7, "GC without cni.dev/valid-attachments");
    let mut old = gc.clone();
    old["cniVersion"] = json!("1.0.0");
    old["cni.dev/valid-attachments"] = json!([]);
    lab.call_global("GC", &old).error(1, "GC in 1.0.0");
    assert_eq!(before, lab.snapshot(), "a refused GC changed something");

    // Keep ctr0 only.
    lab.remove_container(cs[1]);
    lab.remove_container(cs[2]);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr0", "ifname": "eth0"}]);
    lab.call_global("GC", &gc).silent("GC keeping ctr0");
    lab.assert_gone(cs[1]);
    lab.assert_gone(cs[2]);
    assert_eq!(lab.fw_owners(), ["podnet/ctr0:eth0"]);
    let mut held: Vec<String> = lab.held();
    held.sort();
    let mut want: Vec<String> = result_addrs(&results[0])
        .iter()
        .map(|a| format!("{} ctr0:eth0", a.split('/').next().unwrap()))
        .collect();
    want.sort();
    assert_eq!(held, want);
    let nft = lab.nft();
    assert!(
        nft.contains("\"podnet/ctr0:eth0\"") && !nft.contains("ctr1") && !nft.contains("ctr2"),
        "{nft}"
    );
    // ctr0 is intact: CHECK passes, and the ports of the others can be mapped again.
    let mut chk = conf_of(&lab, 8000);
    chk["prevResult"] = results[0].clone();
    lab.call("CHECK", cs[0], &chk).silent("CHECK of the kept attachment");
    let c = lab.container();
    lab.add(c, &conf_of(&lab, 8001));
    lab.call("DEL", c, &conf_of(&lab, 8001)).silent("DEL");
    lab.call("DEL", cs[0], &conf_of(&lab, 8000)).silent("DEL ctr0");
    lab.assert_clean();
}

#[test]
fn status_is_0_normally_and_50_when_the_ipam_data_dir_is_unusable() {
    let lab = Lab::new("status");
    let conf = lab.conf("1.1.0", v4());
    lab.call_global("STATUS", &conf).silent("STATUS");
    let file = lab.host.dir().join("a-regular-file");
    std::fs::write(&file, "not a directory").unwrap();
    let mut bad = conf.clone();
    bad["ipam"]["dataDir"] = json!(file);
    lab.call_global("STATUS", &bad)
        .error(50, "STATUS with dataDir a regular file");
    // VERSION answers whatever the config.
    let out = lab.call_global("VERSION", &json!({"cniVersion": "0.4.0"}));
    let v = out.success("VERSION");
    assert_eq!(v["cniVersion"], "0.4.0");
    assert_eq!(v["supportedVersions"], json!(VERSIONS));
}

// ---------------------------------------------------------------------------------------------
// 8. Bad input
// ---------------------------------------------------------------------------------------------

/// The environment of a plugin call.
type Env = Vec<(&'static str, String)>;

/// A bad-input case: what it is, the environment, stdin, the expected code (`None`: any).
type BadCase = (String, Env, Vec<u8>, Option<u64>);

/// Run each case as an ADD in a fresh H (no bridge yet), expect its code and H, the stores and
/// the container unchanged; restore H between cases so each is judged alone. All failures are
/// reported together.
fn bad_cases(lab: &Lab, c: usize, cases: Vec<BadCase>) {
    let ctr_before = lab.ctrs[c].name.clone();
    let links_in_ctr = || {
        ipj(&ctr_before, &["link", "show"])
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let ctr_links = links_in_ctr();
    let before = lab.snapshot();
    let mut failures = Vec::new();
    for (what, env, stdin, code) in cases {
        let out = Out::of(lab.spawn_raw(&env, &stdin));
        if out.ok {
            failures.push(format!("{what}: accepted ({})", clip(&out.stdout, 300)));
        } else {
            match code {
                Some(code) if out.code() != code => failures.push(format!(
                    "{what}: code {} instead of {code}: {}",
                    out.code(),
                    out.describe()
                )),
                None if out.code() == 0 => failures.push(format!("{what}: no CNI error: {}", out.describe())),
                _ => {}
            }
            let msg = out.v["msg"].as_str().unwrap_or_default();
            if msg.is_empty() {
                failures.push(format!("{what}: no message: {}", out.describe()));
            } else if msg.len() > 4096 {
                failures.push(format!("{what}: a {} byte message: {}", msg.len(), clip(msg, 200)));
            }
        }
        let after = lab.snapshot();
        if after != before {
            failures.push(format!("{what}: changed H: {}", before.diff(&after)));
            // Undo, so the next case is judged alone.
            let _ = Command::new("ip").args(["-n", lab.h(), "link", "del", BRIDGE]).output();
            assert_eq!(lab.snapshot(), before, "cannot restore H after {what}");
        }
        if links_in_ctr() != ctr_links {
            failures.push(format!("{what}: changed the container's links: {:?}", links_in_ctr()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad inputs misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn bad_configs_get_the_right_code_and_change_nothing() {
    let mut lab = Lab::new("badconf");
    let c = lab.container();
    let good = lab.conf("1.0.0", v4());
    let env = lab.env("ADD", c);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string().into_bytes()
    };
    let ranges = |r: Value| with(&move |v: &mut Value| v["ipam"]["ranges"] = r.clone());
    let mut cases: Vec<(&str, Vec<u8>, Option<u64>)> = vec![
        ("not JSON", b"not json".to_vec(), Some(6)),
        ("empty stdin", Vec::new(), Some(6)),
        ("a JSON array", b"[1,2]".to_vec(), Some(6)),
        ("cniVersion 0.2.0", with(&|v| v["cniVersion"] = json!("0.2.0")), Some(1)),
        ("cniVersion 9.9.9", with(&|v| v["cniVersion"] = json!("9.9.9")), Some(1)),
        (
            "no cniVersion",
            with(&|v| {
                v.as_object_mut().unwrap().remove("cniVersion");
            }),
            Some(7),
        ),
        (
            "no name",
            with(&|v| {
                v.as_object_mut().unwrap().remove("name");
            }),
            Some(7),
        ),
        (
            "no ipam",
            with(&|v| {
                v.as_object_mut().unwrap().remove("ipam");
            }),
            Some(7),
        ),
        (
            "no ipam.type",
            with(&|v| {
                v["ipam"].as_object_mut().unwrap().remove("type");
            }),
            Some(7),
        ),
        ("subnet /33", ranges(json!([[{"subnet": "10.201.0.0/33"}]])), Some(7)),
        ("subnet banana", ranges(json!([[{"subnet": "banana"}]])), Some(7)),
        (
            "gateway outside the subnet",
            ranges(json!([[{"subnet": V4_NET, "gateway": "10.99.0.1"}]])),
            Some(7),
        ),
        (
            "rangeStart after rangeEnd",
            ranges(json!([[{"subnet": V4_NET, "rangeStart": "10.201.0.9", "rangeEnd": "10.201.0.3"}]])),
            Some(7),
        ),
        (
            "overlapping range sets",
            ranges(json!([[{"subnet": V4_NET}], [{"subnet": "10.201.0.0/25"}]])),
            Some(7),
        ),
        ("no ranges", ranges(json!([])), Some(7)),
        ("mtu 10", with(&|v| v["mtu"] = json!(10)), Some(7)),
        (
            "bridge name with a slash",
            with(&|v| v["bridge"] = json!("br/0")),
            Some(7),
        ),
        (
            "firewallBackend pf",
            with(&|v| v["firewallBackend"] = json!("pf")),
            Some(7),
        ),
        (
            "runtimeConfig.mac zz",
            with(&|v| v["runtimeConfig"] = json!({"mac": "zz"})),
            Some(7),
        ),
        (
            "hostPort 70000",
            with(&|v| v["runtimeConfig"] = json!({"portMappings": [{"hostPort": 70000, "containerPort": 80}]})),
            Some(7),
        ),
        (
            "portMappings protocol icmp",
            with(&|v| {
                v["runtimeConfig"] =
                    json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "icmp"}]})
            }),
            Some(7),
        ),
    ];
    // 10 MB inputs: a 10 MB network name, and 10 MB of nesting.
    let huge_name = "n".repeat(10 << 20);
    cases.push(("a 10 MB name", with(&|v| v["name"] = json!(huge_name)), None));
    let mut nested = br#"{"cniVersion":"1.0.0","name":"podnet","deep":"#.to_vec();
    nested.extend(std::iter::repeat_n(b'[', 5 << 20));
    nested.extend(std::iter::repeat_n(b']', 5 << 20));
    nested.push(b'}');
    cases.push(("10 MB of nesting", nested, None));
    let mut padded = good.to_string().into_bytes();
    padded.pop();
    padded.extend(format!(",\"pad\":\"{}\"}}", "x".repeat(17 << 20)).bytes());
    cases.push(("a 17 MB config", padded, Some(6)));

    let cases = cases
        .into_iter()
        .map(|(what, stdin, code)| (what.to_string(), env.clone(), stdin, code))
        .collect();
    bad_cases(&lab, c, cases);
}

#[test]
fn bad_environments_get_the_right_code_and_change_nothing() {
    let mut lab = Lab::new("badenv");
    let c = lab.container();
    let good = lab.conf("1.0.0", v4()).to_string().into_bytes();
    let env = lab.env("ADD", c);
    let without = |k: &str| env.iter().filter(|(x, _)| *x != k).cloned().collect::<Vec<_>>();
    let replaced = |k: &'static str, val: &str| {
        let mut e = without(k);
        e.push((k, val.to_string()));
        e
    };
    let cases: Vec<(&str, Env, Option<u64>)> = vec![
        ("no CNI_COMMAND", without("CNI_COMMAND"), Some(4)),
        ("CNI_COMMAND FROB", replaced("CNI_COMMAND", "FROB"), Some(4)),
        ("no CNI_CONTAINERID", without("CNI_CONTAINERID"), Some(4)),
        ("no CNI_NETNS", without("CNI_NETNS"), Some(4)),
        ("no CNI_IFNAME", without("CNI_IFNAME"), Some(4)),
        ("CNI_IFNAME with a slash", replaced("CNI_IFNAME", "eth/0"), Some(4)),
        (
            "CNI_IFNAME of 16 bytes",
            replaced("CNI_IFNAME", "eth0123456789abc"),
            Some(4),
        ),
        (
            "CNI_CONTAINERID starting with '-'",
            replaced("CNI_CONTAINERID", "-ctr"),
            Some(4),
        ),
        (
            "CNI_CONTAINERID with a space",
            replaced("CNI_CONTAINERID", "ctr 1"),
            Some(4),
        ),
        ("CNI_ARGS not KEY=VALUE", replaced("CNI_ARGS", "novalue"), Some(4)),
        (
            "CNI_ARGS with an unknown key",
            replaced("CNI_ARGS", "NOT_A_KEY=x"),
            Some(2),
        ),
        ("CNI_ARGS IP not an address", replaced("CNI_ARGS", "IP=banana"), Some(4)),
        (
            "CNI_NETNS that does not exist",
            replaced("CNI_NETNS", "/run/netns/nkcni-no-such-ns"),
            Some(3),
        ),
    ];
    let cases = cases
        .into_iter()
        .map(|(what, env, code)| (what.to_string(), env, good.clone(), code))
        .collect();
    bad_cases(&lab, c, cases);
}

// ---------------------------------------------------------------------------------------------
// 9. Delegated IPAM
// ---------------------------------------------------------------------------------------------

/// Addresses host-local holds in its data directory (files named by address).
fn host_local_held(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join(POOL))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<IpAddr>().is_ok())
        .collect();
    out.sort();
    out
}

#[test]
fn delegated_host_local_ipam_add_check_del() {
    let host_local = Path::new("/usr/lib/cni/host-local");
    assert!(
        host_local.is_file(),
        "{} is missing (Debian package containernetworking-plugins)",
        host_local.display()
    );
    let mut lab = Lab::new("hostlocal");
    let hl_dir = lab.host.dir().join("host-local");
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let mut conf = lab.conf(version, json!(null));
        conf["ipMasq"] = json!(true);
        conf["ipam"] = json!({"type": "host-local", "dataDir": hl_dir, "ranges": dual()});
        let (c1, c2) = (lab.container(), lab.container());
        let r1 = lab.add(c1, &conf);
        let r2 = lab.add(c2, &conf);
        for (c, r) in [(c1, &r1), (c2, &r2)] {
            assert_eq!(r["cniVersion"], version);
            assert_eq!(r["interfaces"].as_array().map(Vec::len), Some(3), "{r}");
            let want: BTreeSet<String> = result_addrs(r).iter().map(|a| format!("eth0 {a}")).collect();
            let have: BTreeSet<String> = global_addrs(&lab.ctrs[c].name).into_iter().collect();
            assert_eq!(have, want, "{version}: {r}");
            assert_eq!(want.len(), 2);
        }
        let mut held = host_local_held(&hl_dir);
        let mut want: Vec<String> = [&r1, &r2]
            .iter()
            .flat_map(|r| result_addrs(r))
            .map(|a| a.split('/').next().unwrap().to_string())
            .collect();
        held.sort();
        want.sort();
        assert_eq!(held, want, "host-local's reservations");
        assert!(ping(&lab.ctrs[c1].name, &result_ip(&r2, true).to_string()));
        assert!(ping(&lab.ctrs[c2].name, &result_ip(&r1, false).to_string()));
        if version != "0.3.1" {
            let mut chk = conf.clone();
            chk["prevResult"] = r1.clone();
            lab.call("CHECK", c1, &chk)
                .silent(&format!("CHECK in {version} with host-local"));
        }
        for c in [c1, c2] {
            lab.call("DEL", c, &conf)
                .silent(&format!("DEL in {version} with host-local"));
            lab.call("DEL", c, &conf)
                .silent(&format!("second DEL in {version} with host-local"));
        }
        assert_eq!(host_local_held(&hl_dir), Vec::<String>::new(), "{version}");
        assert_eq!(lab.veths(), Vec::<String>::new());
        assert_eq!(lab.fw_owners(), Vec::<String>::new());
        assert!(lab.nft().trim().is_empty());
    }
    // netkit's own store was never used.
    assert!(!lab.ipam_dir().exists(), "the in-process IPAM store was created");
}

// ---------------------------------------------------------------------------------------------
// Beyond the list: CHECK against the reference plugin's checks, the other configuration keys,
// runtime requests, the iptables backend
// ---------------------------------------------------------------------------------------------

/// CHECK compares routes with prevResult's, next hop included (the reference plugins'
/// `ValidateExpectedRoute` checks destination, gateway and device).
#[test]
fn check_detects_a_default_route_through_another_gateway() {
    let mut lab = Lab::new("checkgw");
    let conf = lab.conf("1.0.0", v4());
    let c = lab.container();
    let r = lab.add(c, &conf);
    let mut chk = conf.clone();
    chk["prevResult"] = r.clone();
    let n = lab.ctrs[c].name.clone();
    lab.call("CHECK", c, &chk).silent("CHECK of an intact attachment");
    ip(&[
        "-n",
        &n,
        "route",
        "replace",
        "default",
        "via",
        "10.201.0.99",
        "dev",
        "eth0",
    ]);
    assert_eq!(
        default_route(&n, false),
        Some(("10.201.0.99".to_string(), "eth0".to_string()))
    );
    lab.call("CHECK", c, &chk).error(
        102,
        "CHECK with the default route through 10.201.0.99 instead of 10.201.0.1",
    );
}

/// CHECK compares the container interface's MAC with prevResult's (as the reference bridge
/// plugin does).
#[test]
fn check_detects_a_changed_container_mac() {
    let mut lab = Lab::new("checkmac");
    let conf = lab.conf("1.0.0", v4());
    let c = lab.container();
    let r = lab.add(c, &conf);
    let mut chk = conf.clone();
    chk["prevResult"] = r.clone();
    let n = lab.ctrs[c].name.clone();
    lab.call("CHECK", c, &chk).silent("CHECK of an intact attachment");
    ip(&["-n", &n, "link", "set", "eth0", "address", "02:00:00:00:be:ef"]);
    lab.call("CHECK", c, &chk)
        .error(102, "CHECK with eth0's MAC changed from prevResult's");
}

/// `CNI_ARGS` `IP=` and `runtimeConfig.mac` (the `mac` capability) are applied to the container.
#[test]
fn a_requested_address_and_mac_are_applied() {
    let mut lab = Lab::new("ipmac");
    let mut conf = lab.conf("1.1.0", v4());
    conf["capabilities"] = json!({"mac": true});
    conf["runtimeConfig"] = json!({"mac": "02:42:0a:c9:00:32"});
    let c = lab.container();
    let mut env = lab.env("ADD", c);
    env.push(("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.201.0.50".into()));
    let r = Out::of(lab.spawn_raw(&env, conf.to_string().as_bytes())).success("ADD with IP= and mac");
    assert_eq!(result_addrs(&r), ["10.201.0.50/24"], "{r}");
    assert_eq!(r["interfaces"][2]["mac"], "02:42:0a:c9:00:32", "{r}");
    let n = &lab.ctrs[c].name;
    assert_eq!(mac_of(n, "eth0"), "02:42:0a:c9:00:32");
    assert_eq!(global_addrs(n), ["eth0 10.201.0.50/24"]);
    lab.call("DEL", c, &conf).silent("DEL");
    lab.assert_clean();
}

/// `mtu`, `hairpinMode`, `promiscMode` reach the links; `vlan` makes the port an access port
/// of that VLAN, or, on a kernel without bridge VLAN filtering, is refused with code 103 before
/// anything is made (reported as a skip).
#[test]
fn bridge_keys_mtu_hairpin_promisc_and_vlan() {
    let mut lab = Lab::new("keys");
    let mut conf = lab.conf("1.0.0", v4());
    conf["mtu"] = json!(1400);
    conf["hairpinMode"] = json!(true);
    conf["promiscMode"] = json!(true);
    let c = lab.container();
    let r = lab.add(c, &conf);
    let host_end = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let br = &ipj(lab.h(), &["link", "show", BRIDGE]).unwrap()[0];
    let port = &ipj(lab.h(), &["link", "show", &host_end]).unwrap()[0];
    let eth0 = &ipj(&lab.ctrs[c].name, &["link", "show", "eth0"]).unwrap()[0];
    assert_eq!(
        (br["mtu"].as_u64(), port["mtu"].as_u64(), eth0["mtu"].as_u64()),
        (Some(1400), Some(1400), Some(1400))
    );
    assert!(
        br["promiscuity"].as_u64().unwrap_or(0) > 0,
        "bridge not promiscuous: {br}"
    );
    assert_eq!(port["linkinfo"]["info_slave_data"]["hairpin"], true, "{port}");
    lab.call("DEL", c, &conf).silent("DEL");

    let mut vlan = conf.clone();
    vlan["vlan"] = json!(100);
    let c2 = lab.container();
    let before = lab.snapshot();
    let out = lab.call("ADD", c2, &vlan);
    if !out.ok {
        // A kernel without bridge VLAN filtering: code 103, nothing changed.
        out.well_formed_error("vlan");
        assert_eq!(out.v["code"], json!(103), "{}", out.describe());
        let msg = out.v["msg"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains("not supported by this kernel"), "{msg}");
        assert_eq!(before, lab.snapshot());
        lab.assert_gone(c2);
        report_skip("plugin::bridge_keys_mtu_hairpin_promisc_and_vlan (vlan part)", &msg);
        return;
    }
    let r2 = out.success("ADD with vlan 100");
    let port2 = r2["interfaces"][1]["name"].as_str().unwrap().to_string();
    let shown =
        String::from_utf8_lossy(&in_ns(lab.h(), &["bridge", "-j", "vlan", "show", "dev", &port2]).stdout).into_owned();
    let vlans: Value = serde_json::from_str(&shown).expect("bridge -j vlan show");
    let list = vlans[0]["vlans"].as_array().cloned().unwrap_or_default();
    assert!(
        list.iter().any(|v| v["vlan"] == json!(100)
            && v["flags"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("PVID")) && f.contains(&json!("Egress Untagged")))),
        "{shown}"
    );
    assert!(!list.iter().any(|v| v["vlan"] == json!(1)), "still in vlan 1: {shown}");
    lab.call("DEL", c2, &vlan).silent("DEL vlan");
    lab.assert_gone(c2);
}

/// `isGateway: false`: the bridge gets no address and the container no default route.
#[test]
fn without_is_gateway_the_bridge_has_no_address_and_the_container_no_default_route() {
    let mut lab = Lab::new("nogw");
    let mut conf = lab.conf("1.0.0", dual());
    conf["isGateway"] = json!(false);
    conf["isDefaultGateway"] = json!(false);
    let c = lab.container();
    lab.add(c, &conf);
    assert_eq!(lab.addrs(), Vec::<String>::new());
    let n = &lab.ctrs[c].name;
    assert_eq!(default_route(n, false), None);
    assert_eq!(default_route(n, true), None);
    lab.call("DEL", c, &conf).silent("DEL");
    lab.assert_clean();
}

/// The iptables backend: masquerade and a port mapping work, and DEL leaves no netkit chain.
#[test]
fn iptables_backend_masquerades_maps_ports_and_cleans_up() {
    let mut lab = Lab::with_outside("ipt");
    let mut conf = lab.conf("1.0.0", v4());
    conf["firewallBackend"] = json!("iptables");
    conf["ipMasq"] = json!(true);
    conf["capabilities"] = json!({"portMappings": true});
    conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}]});
    let c = lab.container();
    let r = lab.add(c, &conf);
    let a = result_ip(&r, true);
    let out: IpAddr = OUT.parse().unwrap();
    let _so = Echo::tcp(lab.o(), "O", SocketAddr::new(out, 9000));
    let (_, _, peer) = hello(lab.ctrs[c].ns(), SocketAddr::new(out, 9000)).expect("container reaches O");
    assert_eq!(peer.ip().to_string(), EXT, "masquerade");
    let _sc = Echo::tcp(lab.ctrs[c].ns(), "C", "0.0.0.0:80".parse().unwrap());
    let (name, local, _) = hello(lab.o(), format!("{EXT}:8080").parse().unwrap()).expect("port mapping");
    assert_eq!((name.as_str(), local), ("C", SocketAddr::new(a, 80)));
    let save = |lab: &Lab| {
        let o = in_ns(lab.h(), &["iptables-save"]);
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(save(&lab).contains("NETKIT"), "{}", save(&lab));
    lab.call("DEL", c, &conf).silent("DEL");
    let after = save(&lab);
    assert!(!after.contains("NETKIT") && !after.contains(&a.to_string()), "{after}");
    let o6 = in_ns(lab.h(), &["ip6tables-save"]);
    assert!(!String::from_utf8_lossy(&o6.stdout).contains("NETKIT"));
    assert_eq!(lab.veths(), Vec::<String>::new());
    assert_eq!(lab.held(), Vec::<String>::new());
}

/// A delegated IPAM plugin that fails (host-local's pool exhausted): the ADD fails with
/// host-local's error and leaves nothing.
#[test]
fn delegated_ipam_failure_rolls_back() {
    let mut lab = Lab::new("hlfail");
    let hl_dir = lab.host.dir().join("host-local");
    let mut conf = lab.conf("1.0.0", json!(null));
    conf["ipMasq"] = json!(true);
    conf["ipam"] = json!({"type": "host-local", "dataDir": hl_dir,
        "ranges": [[{"subnet": V4_NET, "rangeStart": "10.201.0.10", "rangeEnd": "10.201.0.10"}]]});
    let (c1, c2) = (lab.container(), lab.container());
    lab.add(c1, &conf);
    let out = add_fails_and_changes_nothing(&lab, c2, &conf, None, "ADD with host-local exhausted");
    assert!(
        out.v["msg"].as_str().unwrap().contains("host-local"),
        "{}",
        out.describe()
    );
    assert_eq!(host_local_held(&hl_dir), ["10.201.0.10"]);
    lab.call("DEL", c1, &conf).silent("DEL");
    assert_eq!(host_local_held(&hl_dir), Vec::<String>::new());
}

/// An element several attachments share (the pod network in `localnet4`/`localnet6`) carries
/// the comment of the first one that added it, and keeps it after that attachment is gone: the
/// ruleset then names a deleted container as the owner of a live element.
#[test]
fn a_shared_network_element_is_not_left_labelled_with_a_departed_owner() {
    let mut lab = Lab::new("shared");
    let mut conf = lab.conf("1.0.0", v4());
    conf["ipMasq"] = json!(true);
    let (c1, c2) = (lab.container(), lab.container());
    lab.add(c1, &conf);
    lab.add(c2, &conf);
    lab.call("DEL", c1, &conf).silent("DEL C1");
    let nft = lab.nft();
    let left = nft_elements_of(&nft, "podnet/ctr0:eth0", true);
    assert!(
        left.is_empty(),
        "after DEL of ctr0 the ruleset still names it: {left:?}\n{nft}"
    );
}

/// IPv6 addresses of `dev` in namespace `ns` ("ip -6 -o addr show dev DEV", one per line).
fn v6_addrs(ns: &str, dev: &str) -> Vec<String> {
    let out = in_ns(ns, &["ip", "-6", "-o", "addr", "show", "dev", dev]);
    assert!(out.status.success(), "ip -6 addr show dev {dev} in {ns}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Bridge mode: bridge ports get no IPv6 address, nor do containers without an IPv6 address
/// (unless `ipv6LinkLocal`), so no IPv6 chatter is flooded over the bridge; dual-stack
/// containers keep theirs. DEL (detached by default, or `waitLinkFree`) returns with the pair
/// already gone.
#[test]
fn ipv4_only_containers_and_bridge_ports_get_no_ipv6_link_local() {
    let mut lab = Lab::new("ll6");
    let conf = lab.conf("1.0.0", v4());
    let mut keep_ll = conf.clone();
    keep_ll["ipv6LinkLocal"] = json!(true);
    let dual_conf = lab.conf("1.0.0", dual());
    let (c0, c1, c2) = (lab.container(), lab.container(), lab.container());
    lab.add(c0, &conf);
    lab.add(c1, &keep_ll);
    lab.add(c2, &dual_conf);
    // Addresses follow the carrier, which comes asynchronously: wait for the ones that must
    // appear, then check the ones that must not.
    let has_ll = |i: usize| v6_addrs(&lab.ctrs[i].name, "eth0").iter().any(|a| a.contains("fe80::"));
    wait_until(
        Duration::from_secs(10),
        "IPv6 link-local addresses on c1 and c2",
        || has_ll(c1) && has_ll(c2),
    );
    assert_eq!(
        v6_addrs(&lab.ctrs[c0].name, "eth0"),
        Vec::<String>::new(),
        "c0 (IPv4 only)"
    );
    let shown =
        String::from_utf8_lossy(&in_ns(&lab.ctrs[c0].name, &["ip", "-d", "link", "show", "eth0"]).stdout).into_owned();
    assert!(shown.contains("addrgenmode none"), "{shown}");
    let veths = lab.veths();
    assert_eq!(veths.len(), 3, "{veths:?}");
    for v in &veths {
        assert_eq!(v6_addrs(lab.h(), v), Vec::<String>::new(), "bridge port {v}");
    }

    let mut wait = conf.clone();
    wait["waitLinkFree"] = json!(true);
    lab.call("DEL", c0, &wait).silent("DEL c0 (waitLinkFree)");
    lab.assert_gone(c0);
    lab.call("DEL", c1, &keep_ll).silent("DEL c1");
    lab.assert_gone(c1);
    lab.call("DEL", c2, &dual_conf).silent("DEL c2");
    lab.assert_gone(c2);
    assert_eq!(lab.veths(), Vec::<String>::new());
    // DEL again: nothing there, still success.
    lab.call("DEL", c1, &keep_ll).silent("DEL c1 twice");
}

/// TCP throughput (bit/s) of a 2-second iperf3 run from container `i` to H's bridge address
/// (`reverse`: from H to the container).
fn iperf(lab: &Lab, i: usize, reverse: bool) -> f64 {
    let gw = V4_GW.parse().unwrap();
    let _server = iperf::Iperf3Server::start(&lab.host, gw, 5201);
    let ctr = NetNs::open(&lab.ctrs[i].name).unwrap();
    let extra: &[&str] = if reverse { &["-t", "2", "-R"] } else { &["-t", "2"] };
    let report = iperf::client(&ctr, gw, 5201, extra).unwrap_or_else(|e| panic!("{e}"));
    iperf::received_bps(&report).expect("iperf3 reported no received rate")
}

/// The bandwidth capability: a token bucket on the host end for traffic to the container, an
/// ifb with a token bucket for traffic from it; iperf3 sees both limits; DEL removes the ifb,
/// GC removes one whose attachment is gone. Skipped by name on a kernel without tbf/ifb/u32.
#[test]
fn bandwidth_limits_traffic_both_ways() {
    let mut lab = Lab::new("bw");
    let mut conf = lab.conf("1.1.0", v4());
    conf["capabilities"] = json!({"bandwidth": true});
    let mut limited = conf.clone();
    // 8 Mbit/s to the container, 4 Mbit/s from it.
    limited["runtimeConfig"] = json!({"bandwidth": {
        "ingressRate": 8_000_000, "ingressBurst": 400_000,
        "egressRate": 4_000_000, "egressBurst": 400_000}});
    let (c0, c1) = (lab.container(), lab.container());
    let out = lab.call("ADD", c0, &limited);
    if !out.ok && out.v["code"] == json!(103) {
        report_skip(
            "plugin::bandwidth_limits_traffic_both_ways",
            out.v["msg"].as_str().unwrap_or("not supported by this kernel"),
        );
        return;
    }
    let r0 = out.success("ADD with bandwidth limits");
    lab.add(c1, &conf);
    let ifb = lab
        .links()
        .into_iter()
        .find(|(n, k, _)| n.starts_with("nkbw") && k == "ifb")
        .map(|(n, _, _)| n)
        .expect("an ifb device for the egress limit");
    let qdiscs = String::from_utf8_lossy(&in_ns(lab.h(), &["tc", "qdisc", "show"]).stdout).into_owned();
    assert_eq!(qdiscs.matches("qdisc tbf").count(), 2, "{qdiscs}");
    assert!(qdiscs.contains(&format!("dev {ifb}")), "{qdiscs}");
    assert!(qdiscs.contains("qdisc ingress"), "{qdiscs}");
    let mut chk = limited.clone();
    chk["prevResult"] = r0;
    lab.call("CHECK", c0, &chk).silent("CHECK");

    let (up, down) = (iperf(&lab, c0, false), iperf(&lab, c0, true));
    eprintln!("bandwidth: from the container {up:.0} bit/s (limit 4 Mbit/s), to it {down:.0} bit/s (limit 8 Mbit/s)");
    assert!(
        up < 4_000_000.0 * 1.3 && up > 4_000_000.0 * 0.3,
        "from the container: {up} bit/s, limit 4 Mbit/s"
    );
    assert!(
        down < 8_000_000.0 * 1.3 && down > 8_000_000.0 * 0.3,
        "to the container: {down} bit/s, limit 8 Mbit/s"
    );
    // The unlimited neighbour is far faster: the limits are the plugin's doing.
    let free = iperf(&lab, c1, false);
    eprintln!("bandwidth: unlimited neighbour {free:.0} bit/s");
    assert!(free > 10.0 * up, "unlimited {free} bit/s vs limited {up} bit/s");

    lab.call("DEL", c0, &limited).silent("DEL c0");
    lab.assert_gone(c0);
    assert!(!lab.links().iter().any(|(n, _, _)| *n == ifb), "DEL left {ifb}");

    // GC keeps the ifb (and veth) of an attachment it is told is valid, and removes those of
    // one it is not told about (the sandbox deleted, its DEL never sent): both carry this
    // network's tag.
    let c2 = lab.container();
    lab.add(c2, &limited);
    let nkbw = |lab: &Lab| lab.links().iter().any(|(n, k, _)| k == "ifb" && n.starts_with("nkbw"));
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] =
        json!([{"containerID": "ctr1", "ifname": "eth0"}, {"containerID": "ctr2", "ifname": "eth0"}]);
    lab.call_global("GC", &gc).silent("GC with ctr2 valid");
    assert!(nkbw(&lab), "{:?}", lab.links());
    assert_eq!(lab.veths().len(), 2, "{:?}", lab.links());
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr1", "ifname": "eth0"}]);
    lab.call_global("GC", &gc).silent("GC");
    assert!(!nkbw(&lab), "{:?}", lab.links());
    assert_eq!(
        lab.veths().len(),
        1,
        "GC removes ctr2's host end too: {:?}",
        lab.links()
    );
    lab.call("DEL", c2, &limited).silent("DEL c2");
    lab.call("DEL", c1, &conf).silent("DEL c1");
}

/// The `ipRanges` capability alone (no ranges in the configuration) supplies netkit-ipam's pool,
/// in-process as in the `netkit-ipam` binary: validation and the masquerade use it too.
#[test]
fn ip_ranges_capability_supplies_the_pool() {
    let mut lab = Lab::new("iprg");
    let mut conf = lab.conf("1.0.0", json!(null));
    conf["ipMasq"] = json!(true);
    conf["capabilities"] = json!({"ipRanges": true});
    conf["runtimeConfig"] = json!({"ipRanges": [[{"subnet": V4_NET}]]});
    let c = lab.container();
    let r = lab.add(c, &conf);
    let addr = r["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(addr.starts_with("10.201.0."), "{r}");
    let nft = lab.nft();
    assert!(nft.contains(&format!("masquerade {V4_NET}")), "{nft}");
    lab.call("DEL", c, &conf).silent("DEL");
    lab.assert_gone(c);
}

// ---------------------------------------------------------------------------------------------
// Security: what a hostile container must not reach or break
// ---------------------------------------------------------------------------------------------

fn mac_bytes(mac: &str) -> [u8; 6] {
    let v: Vec<u8> = mac.split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    v.try_into().unwrap_or_else(|_| panic!("bad MAC {mac}"))
}

/// The host's sysctl `net.ipv4.conf.DEV.route_localnet` in H.
fn route_localnet(lab: &Lab, dev: &str) -> String {
    let out = in_ns(
        lab.h(),
        &["cat", &format!("/proc/sys/net/ipv4/conf/{dev}/route_localnet")],
    );
    assert!(out.status.success(), "read route_localnet of {dev}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A container sends UDP datagrams as raw frames to its gateway's MAC: one to 127.0.0.1:9999,
/// then one to the gateway's own address (the oracle: it takes the same path, so once it has
/// arrived the first one would have too). A socket on H's 127.0.0.1:9999 must get nothing.
fn localhost_is_unreachable_from_a_container(backend: &str, with_mapping: bool) {
    let mut lab = Lab::new(&format!("lo{}", &backend[..3]));
    let mut conf = lab.conf("1.1.0", v4());
    conf["ipMasq"] = json!(true);
    conf["firewallBackend"] = json!(backend);
    if with_mapping {
        conf["capabilities"] = json!({"portMappings": true});
        conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}]});
    }
    let c = lab.container();
    let r = lab.add(c, &conf);
    let ctr_ip = match result_ip(&r, true) {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!(),
    };
    let bridge_mac = mac_bytes(r["interfaces"][0]["mac"].as_str().unwrap());
    let ctr_mac = mac_bytes(&mac_of(&lab.ctrs[c].name, "eth0"));
    let gw: std::net::Ipv4Addr = V4_GW.parse().unwrap();
    let bind = |addr: std::net::SocketAddrV4| {
        let s = lab
            .host
            .run(move || std::net::UdpSocket::bind(addr))
            .unwrap()
            .unwrap_or_else(|e| panic!("bind {addr} in H: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let victim = bind(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9999));
    let oracle = bind(std::net::SocketAddrV4::new(gw, 9998));
    let frame = |dst: std::net::SocketAddrV4, payload: &[u8]| netkit_examples::probe::RawUdp4 {
        src_mac: ctr_mac,
        dst_mac: bridge_mac,
        src: std::net::SocketAddrV4::new(ctr_ip, 5555),
        dst,
        payload: payload.to_vec(),
    };
    let ns = lab.ctrs[c].ns();
    frame(
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9999),
        b"attack",
    )
    .send(ns, "eth0")
    .expect("send the frame to 127.0.0.1");
    frame(std::net::SocketAddrV4::new(gw, 9998), b"oracle")
        .send(ns, "eth0")
        .expect("send the oracle frame");
    let mut buf = [0u8; 64];
    let (n, _) = oracle
        .recv_from(&mut buf)
        .expect("the oracle datagram reaches H's gateway address (the path works)");
    assert_eq!(&buf[..n], b"oracle");
    victim.set_nonblocking(true).unwrap();
    match victim.recv_from(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("{backend}, mapping {with_mapping}: a container reached H's 127.0.0.1:9999: {other:?}"),
    }
    assert_eq!(
        route_localnet(&lab, BRIDGE),
        if with_mapping { "1" } else { "0" },
        "route_localnet only where a mapping on 127.0.0.1 needs it"
    );
    if with_mapping {
        // The mapping itself still answers on H's 127.0.0.1.
        let _sc = Echo::tcp(lab.ctrs[c].ns(), "C", "0.0.0.0:80".parse().unwrap());
        let (name, _, _) = hello(&lab.host, "127.0.0.1:8080".parse().unwrap()).expect("H -> 127.0.0.1:8080");
        assert_eq!(name, "C");
    }
    lab.call("DEL", c, &conf).silent("DEL");
    assert_eq!(
        route_localnet(&lab, BRIDGE),
        "0",
        "route_localnet goes with the last mapping"
    );
}

#[test]
fn a_container_cannot_reach_the_hosts_localhost_nftables() {
    localhost_is_unreachable_from_a_container("nftables", false);
    localhost_is_unreachable_from_a_container("nftables", true);
}

#[test]
fn a_container_cannot_reach_the_hosts_localhost_iptables() {
    localhost_is_unreachable_from_a_container("iptables", false);
    localhost_is_unreachable_from_a_container("iptables", true);
}

/// Issue 10.2: GC of one network touches only its own attachments. Networks A and B (two
/// bridges, `ipMasq`, one port mapping each) share H and the firewall state directory; a GC of A
/// that lists A's only attachment as valid leaves B's mapping and masquerade working.
#[test]
fn gc_of_one_network_leaves_another_networks_rules() {
    let mut lab = Lab::with_outside("gcnet");
    let net = |name: &str, bridge: &str, subnet: &str, port: u16| {
        let mut c = lab.conf("1.1.0", json!([[{ "subnet": subnet }]]));
        c["name"] = json!(name);
        c["bridge"] = json!(bridge);
        c["ipMasq"] = json!(true);
        c["capabilities"] = json!({"portMappings": true});
        c["runtimeConfig"] = json!({"portMappings": [{"hostPort": port, "containerPort": 80}]});
        c
    };
    let (a, b) = (
        net("neta", "cnia", "10.211.0.0/24", 8081),
        net("netb", "cnib", "10.212.0.0/24", 8082),
    );
    let (ca, cb) = (lab.container(), lab.container());
    lab.add(ca, &a);
    let rb = lab.add(cb, &b);
    let b_ip = result_ip(&rb, true);
    let mut gc = a.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": lab.ctrs[ca].id, "ifname": "eth0"}]);
    lab.call_global("GC", &gc).silent("GC of neta");
    assert_eq!(
        lab.fw_owners(),
        [
            format!("neta/{}:eth0", lab.ctrs[ca].id),
            format!("netb/{}:eth0", lab.ctrs[cb].id)
        ]
    );
    let nft = lab.nft();
    assert!(
        nft.contains("10.212.0.0/24") && nft.contains("8082"),
        "netb's rules are gone:\n{nft}"
    );
    // netb still works: O reaches B through its mapping, B reaches O masqueraded.
    let _sb = Echo::tcp(lab.ctrs[cb].ns(), "B", "0.0.0.0:80".parse().unwrap());
    let (name, local, _) = hello(lab.o(), format!("{EXT}:8082").parse().unwrap()).expect("O -> H:8082 -> B");
    assert_eq!((name.as_str(), local), ("B", SocketAddr::new(b_ip, 80)));
    let out: IpAddr = OUT.parse().unwrap();
    let _so = Echo::tcp(lab.o(), "O", SocketAddr::new(out, 9000));
    let (_, _, peer) = hello(lab.ctrs[cb].ns(), SocketAddr::new(out, 9000)).expect("B -> O");
    assert_eq!(peer.ip().to_string(), EXT, "B is masqueraded");
    // A GC of netb that lists nothing removes netb's attachment only.
    let mut gc_b = b.clone();
    gc_b["cni.dev/valid-attachments"] = json!([]);
    lab.call_global("GC", &gc_b).silent("GC of netb");
    assert_eq!(lab.fw_owners(), [format!("neta/{}:eth0", lab.ctrs[ca].id)]);
    lab.call("DEL", ca, &a).silent("DEL A");
    lab.call("DEL", cb, &b).silent("DEL B");
}

/// Issue 10.3: a second ADD of a live attachment fails and leaves the first one whole: its
/// addresses stay held (netkit-ipam in-process, and a delegated host-local), it still works.
#[test]
fn a_failed_duplicate_add_leaves_the_live_attachment_alone() {
    let mut lab = Lab::new("dupadd");
    let hl_dir = lab.host.dir().join("host-local");
    let mut delegated = lab.conf("1.0.0", json!(null));
    delegated["ipam"] = json!({"type": "host-local", "dataDir": hl_dir, "ranges": [[{"subnet": "10.213.0.0/24"}]]});
    delegated["bridge"] = json!("cnid");
    for conf in [lab.conf("1.0.0", v4()), delegated] {
        let c = lab.container();
        let r = lab.add(c, &conf);
        let ip = result_ip(&r, true);
        let held_before = (lab.held(), host_local_held(&hl_dir));
        let again = lab.call("ADD", c, &conf);
        assert!(
            !again.ok,
            "a second ADD of a live attachment succeeded: {}",
            again.describe()
        );
        assert_eq!(
            (lab.held(), host_local_held(&hl_dir)),
            held_before,
            "the live attachment's addresses were released"
        );
        let gw = r["ips"][0]["gateway"].as_str().unwrap().to_string();
        assert!(ping(&lab.ctrs[c].name, &gw), "{ip} no longer reaches its gateway");
        lab.call("DEL", c, &conf).silent("DEL");
    }
}

/// Issue 10.6: every verb checks an attachment the same way. An interface name ADD accepts
/// (`net@1`) and a 130-character container ID are deleted too, with and without `ipMasq`.
#[test]
fn del_succeeds_for_every_attachment_add_accepted() {
    let mut lab = Lab::new("delsame");
    for masq in [false, true] {
        let mut conf = lab.conf("1.1.0", v4());
        conf["ipMasq"] = json!(masq);
        for (id, ifname) in [("ctrat".to_string(), "net@1"), ("c".repeat(130), "eth0")] {
            let c = lab.container();
            lab.ctrs[c].id = id.clone();
            let mut env = lab.env("ADD", c);
            env.retain(|(k, _)| *k != "CNI_IFNAME");
            env.push(("CNI_IFNAME", ifname.to_string()));
            Out::of(lab.spawn_raw(&env, conf.to_string().as_bytes())).success(&format!("ADD {ifname} masq {masq}"));
            env[0].1 = "DEL".into();
            Out::of(lab.spawn_raw(&env, conf.to_string().as_bytes())).silent(&format!("DEL {ifname} masq {masq}"));
            assert!(
                lab.held().is_empty() && lab.fw_owners().is_empty(),
                "{id}/{ifname} left state"
            );
        }
    }
    // DEL of an attachment ADD would refuse has nothing to delete, and succeeds.
    let c = lab.container();
    let mut env = lab.env("DEL", c);
    env[1].1 = "-not/an id".into();
    Out::of(lab.spawn_raw(&env, lab.conf("1.1.0", v4()).to_string().as_bytes())).silent("DEL of an invalid attachment");
    lab.assert_clean();
}

/// Run the plugin in H where neither nftables (libnftables) nor iptables (the xtables tools)
/// can be used: a private mount namespace with /dev/null over them.
fn call_without_firewall_tools(lab: &Lab, env: &[(&str, String)], conf: &Value) -> Out {
    let hide = [
        "/usr/lib/x86_64-linux-gnu/libnftables.so.1.1.0",
        "/usr/sbin/xtables-nft-multi",
        "/usr/sbin/xtables-legacy-multi",
    ];
    let script = r#"for f in "$@"; do [ -e "$f" ] && mount --bind /dev/null "$f"; done; exec "$NK_PLUGIN""#;
    let mut cmd = lab.host.command("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .args(hide)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("NK_PLUGIN", BIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn the plugin without firewall tools");
    let _ = child.stdin.take().unwrap().write_all(conf.to_string().as_bytes());
    Out::of(child)
}

/// Issue 10.6: a network without `ipMasq` or port mappings never needs a firewall: on a host
/// without nftables and iptables its ADD, DEL, GC and STATUS all succeed.
#[test]
fn a_network_without_firewall_rules_works_without_nftables_and_iptables() {
    let mut lab = Lab::new("nofw");
    let conf = lab.conf("1.1.0", v4());
    let c = lab.container();
    // The tools are really gone in there: a network that masquerades cannot be attached.
    let mut masq = conf.clone();
    masq["ipMasq"] = json!(true);
    masq["firewallBackend"] = Value::Null;
    let out = call_without_firewall_tools(&lab, &lab.env("ADD", c), &masq);
    assert!(
        !out.ok,
        "ADD with ipMasq succeeded without a firewall: {}",
        out.describe()
    );
    call_without_firewall_tools(&lab, &lab.env("ADD", c), &conf).success("ADD without firewall tools");
    call_without_firewall_tools(&lab, &lab.env("DEL", c), &conf).silent("DEL without firewall tools");
    let global = vec![
        ("CNI_COMMAND", "STATUS".to_string()),
        ("CNI_PATH", "/usr/lib/cni".to_string()),
    ];
    call_without_firewall_tools(&lab, &global, &conf).silent("STATUS without firewall tools");
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    let gc_env = vec![
        ("CNI_COMMAND", "GC".to_string()),
        ("CNI_PATH", "/usr/lib/cni".to_string()),
    ];
    call_without_firewall_tools(&lab, &gc_env, &gc).silent("GC without firewall tools");
    lab.assert_clean();
}

/// Issue 10.7: routed mode routes only addresses of the configured pool, and never takes over
/// a route the host already has. The reference `static` IPAM hands out whatever it is told.
#[test]
fn routed_mode_routes_only_pool_addresses_and_never_replaces_a_route() {
    let mut lab = Lab::new("rtchk");
    lab.ip_in_h(&["link", "add", "rtdummy", "type", "bridge"]);
    lab.ip_in_h(&["link", "set", "rtdummy", "up"]);
    lab.ip_in_h(&["route", "add", "10.201.0.50/32", "dev", "rtdummy"]);
    let routes_before = ipj(lab.h(), &["route", "show"]);
    let base = lab.conf("1.0.0", json!(null));
    let conf_for = |addr: &str| {
        let mut c = base.clone();
        c["mode"] = json!("routed");
        c["ipam"] = json!({"type": "static", "addresses": [{"address": addr}], "ranges": [[{"subnet": V4_NET}]]});
        c
    };
    for (addr, code) in [("169.254.169.254/32", 101), ("10.201.0.50/24", 101)] {
        let c = lab.container();
        let out = lab.call("ADD", c, &conf_for(addr));
        out.error(code, &format!("routed ADD of {addr}"));
        assert_eq!(
            ipj(lab.h(), &["route", "show"]),
            routes_before,
            "{addr}: H's routes changed"
        );
        assert!(lab.veths().is_empty(), "{addr}: a veth was left behind");
    }
    // Without host-local keys the delegated addresses cannot be checked: refused.
    let c = lab.container();
    let mut c_conf = conf_for("10.201.0.7/24");
    c_conf["ipam"].as_object_mut().unwrap().remove("ranges");
    lab.call("ADD", c, &c_conf)
        .error(7, "routed ADD with an uncheckable IPAM");
    // An address of the pool is routed as before.
    let ok = conf_for("10.201.0.7/24");
    lab.add(c, &ok);
    lab.call("DEL", c, &ok).silent("DEL");
}

/// Issue 10.8: host-side links carry their attachment's tag, and DEL deletes a link by its
/// hashed name only when the tag is its own (another attachment's colliding link stays).
#[test]
fn del_deletes_only_links_tagged_for_its_attachment() {
    let mut lab = Lab::new("tag");
    let conf = lab.conf("1.1.0", v4());
    let c = lab.container();
    lab.add(c, &conf);
    let veth = lab.veths().pop().expect("the host end");
    assert_eq!(veth.len(), 15, "veth + 11 hex digits");
    let shown = ip(&["-n", lab.h(), "-d", "link", "show", &veth]);
    assert!(shown.contains(&format!("alias nk:{POOL}/ctr0:eth0")), "{shown}");
    lab.call("DEL", c, &conf).silent("DEL");
    // Another attachment's link under the same name (a hash collision): DEL leaves it.
    lab.ip_in_h(&["link", "add", &veth, "type", "veth", "peer", "name", "collide1"]);
    lab.ip_in_h(&["link", "set", &veth, "alias", &format!("nk:{POOL}/someone:eth0")]);
    lab.call("DEL", c, &conf).silent("DEL with a colliding link");
    assert!(lab.veths().contains(&veth), "DEL deleted another attachment's link");
    lab.ip_in_h(&["link", "del", &veth]);
}

/// Issue 10.11: bad input that would change the host is refused before anything changes: a
/// bridge name with a quote, a FIFO as CNI_NETNS (no hang), the plugin's own namespace.
#[test]
fn bad_input_never_changes_the_host() {
    let mut lab = Lab::new("badin");
    let c = lab.container();
    let before = lab.snapshot();
    let mut conf = lab.conf("1.0.0", v4());
    conf["bridge"] = json!("br\"x");
    conf["ipMasq"] = json!(true);
    lab.call("ADD", c, &conf).error(7, "bridge with a quote");
    assert_eq!(before.diff(&lab.snapshot()), "", "a refused bridge name changed H");

    let conf = lab.conf("1.0.0", v4());
    let fifo = lab.host.dir().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut env = lab.env("ADD", c);
    env[2].1 = fifo.display().to_string();
    let mut child = KillOnDrop::new(lab.spawn_raw(&env, conf.to_string().as_bytes()));
    // The refusal, not a hang: the plugin exits by itself (killed on the way out otherwise).
    wait_until(Duration::from_secs(20), "ADD with a FIFO as CNI_NETNS to exit", || {
        child.try_wait().unwrap().is_some()
    });
    Out::of(child.into_inner()).error(3, "FIFO as CNI_NETNS");

    let routes_before = ipj(lab.h(), &["route", "show"]);
    env[2].1 = lab.host.path().display().to_string();
    Out::of(lab.spawn_raw(&env, conf.to_string().as_bytes())).error(4, "the plugin's own namespace as CNI_NETNS");
    assert_eq!(ipj(lab.h(), &["route", "show"]), routes_before);
    assert_eq!(before.diff(&lab.snapshot()), "", "refused input changed H");
}

/// Issue 10.12: unbounded input is refused: thousands of port mappings, an IPAM plugin that is
/// the plugin itself (it would run itself without end).
#[test]
fn unbounded_input_is_refused() {
    let mut lab = Lab::new("unbound");
    let c = lab.container();
    let before = lab.snapshot();
    let mut conf = lab.conf("1.0.0", v4());
    conf["capabilities"] = json!({"portMappings": true});
    let many: Vec<Value> = (0..2000)
        .map(|p| json!({"hostPort": 10000 + p, "containerPort": 80}))
        .collect();
    conf["runtimeConfig"] = json!({ "portMappings": many });
    lab.call("ADD", c, &conf).error(7, "2000 port mappings");
    // netkit-cni as its own IPAM, found in CNI_PATH under that name.
    let bin_dir = lab.host.dir().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.join("netkit-cni")).unwrap();
    let mut conf = lab.conf("1.0.0", v4());
    conf["ipam"] = json!({"type": "netkit-cni"});
    let mut env = lab.env("ADD", c);
    env[4].1 = bin_dir.display().to_string();
    Out::of(lab.spawn_raw(&env, conf.to_string().as_bytes())).error(7, "ipam.type naming the plugin itself");
    assert_eq!(before.diff(&lab.snapshot()), "");
}

/// Issue 10.4: a network with its own `firewallStateDir` cannot use the table another state
/// directory owns (the last owner of either would delete it under the other); with its own
/// `firewallName` both work, and one network's last DEL leaves the other's rules.
#[test]
fn networks_with_their_own_state_dirs_need_their_own_firewall_names() {
    let mut lab = Lab::new("fwname");
    let mut a = lab.conf("1.1.0", json!([[{ "subnet": "10.214.0.0/24" }]]));
    a["name"] = json!("neta");
    a["bridge"] = json!("cnia");
    a["ipMasq"] = json!(true);
    let mut b = a.clone();
    b["name"] = json!("netb");
    b["bridge"] = json!("cnib");
    b["ipam"]["ranges"] = json!([[{ "subnet": "10.215.0.0/24" }]]);
    b["firewallStateDir"] = json!(lab.host.dir().join("fw-b"));
    let (ca, cb) = (lab.container(), lab.container());
    lab.add(ca, &a);
    let (veths, held, nft) = (lab.veths(), lab.held(), lab.nft());
    lab.call("ADD", cb, &b)
        .error(7, "a second state directory for table inet netkit");
    // Undone (the bridge, shared by design, stays).
    assert_eq!(
        (lab.veths(), lab.held(), lab.nft()),
        (veths, held, nft),
        "the refused ADD was not undone"
    );
    b["firewallName"] = json!("netkitb");
    lab.add(cb, &b);
    lab.call("DEL", ca, &a).silent("DEL of neta's last attachment");
    let nft = lab.nft();
    assert!(
        !nft.contains("table inet netkit {") && nft.contains("table inet netkitb") && nft.contains("10.215.0.0/24"),
        "{nft}"
    );
    lab.call("DEL", cb, &b).silent("DEL of netb's last attachment");
    assert!(lab.nft().trim().is_empty(), "{}", lab.nft());
}

/// `forceAddress`: with it, an old address of the gateway's subnet on the bridge is replaced by
/// the gateway; without it, the gateway is added beside it.
#[test]
fn force_address_replaces_an_old_gateway_address() {
    let mut lab = Lab::new("force");
    lab.ip_in_h(&["link", "add", BRIDGE, "type", "bridge"]);
    lab.ip_in_h(&["addr", "add", "10.201.0.254/24", "dev", BRIDGE]);
    let conf = lab.conf("1.0.0", v4());
    let c = lab.container();
    lab.add(c, &conf);
    assert_eq!(
        lab.addrs(),
        ["cni0 10.201.0.1/24", "cni0 10.201.0.254/24"],
        "beside, without forceAddress"
    );
    lab.call("DEL", c, &conf).silent("DEL");
    let mut forced = conf.clone();
    forced["forceAddress"] = json!(true);
    lab.ip_in_h(&["addr", "del", "10.201.0.1/24", "dev", BRIDGE]);
    lab.add(c, &forced);
    assert_eq!(
        lab.addrs(),
        ["cni0 10.201.0.1/24"],
        "forceAddress replaces the old address"
    );
    lab.call("DEL", c, &forced).silent("DEL");
}
