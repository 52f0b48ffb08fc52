//! Network policy bench (issue 17 §4, policy): netkit's policy firewall (one nftables table
//! whose rules never change, everything else set elements) against the same policy as per-pod
//! iptables chains, at R = 10 and R = 10,000 rules, in one run.
//!
//! ```sh
//! sudo cargo bench -p netkit-core --bench policy
//! NETKIT_BENCH_QUICK=1 sudo -E cargo bench -p netkit-core --bench policy   # smoke
//! ```
//!
//! **The policy.** `PODS` pods (`default/pod-<i>`, label `pod=pod-<i>`), all local to one
//! node; pod 0 is the client (10.210.0.2) and the last pod the server (10.210.1.2), both real
//! namespaces behind routed veths of the host namespace (host 10.210.0.1 and 10.210.1.1, IP
//! forwarding on); the others are addresses only (10.211.0.0 + i) whose host interfaces
//! (`fake<i>`) do not exist, so `PolicyFirewall::apply` looks each up and skips it, as it
//! does a real routed pod's (`NodePolicy::interfaces` matters only for bridge ports). Each pod
//! has its own policy (`default/pol-<i>`, selecting it, `policyTypes: [Ingress]`), so every pod
//! is isolated; R ingress rules are dealt out over those policies from the last pod backwards
//! (rule j to pod `PODS-1 - j mod PODS`): rule j allows one /32 peer (10.220.0.0 + 2j: no two
//! adjacent, so no two merge) on TCP port 1000 + j mod 20,000. The server's last rule allows the
//! client on 8080 instead. A policy without rules denies all ingress (at R = 10, 990 of them).
//! So the element count is `PODS` isolated addresses + R allowed boxes.
//!
//! For each R of `LEVELS` (default `10,10000`):
//!
//! 1. **netkit**: a fresh host with its client and server; first-packet latency without any
//!    policy (the floor); `PolicyFirewall::open` (makes the table), `compile()` of the whole
//!    cluster (the reference compiler, timed for comparison), `NodeCompiler::from_cluster`
//!    (the controller's full compile at start) and the first `apply_changes` (full load: one
//!    libnftables transaction); a check that a port the policy does not allow is dropped (a
//!    connection to 8081 times out instead of being refused); `CONNS` first packets (TCP
//!    connect + one byte echoed, a new connection each, after 5 not counted) client → server,
//!    routed through the host's `forward` hook; `CHANGES` rule changes, the controller's path:
//!    the first rule of pod `PODS-2`'s policy switches its port (1001 ↔ 31001), the new policy
//!    goes to the `NodeCompiler` (`set_policy`, then `changes()`: the recompile of what the
//!    change touches) and `PolicyFirewall::apply_changes` sends the difference (one element
//!    removed and one added, one nf_tables batch; checked) — compile, apply, and both, timed;
//!    the compiler's output is checked against `compile()` of the final cluster. Then, through
//!    the whole-policy `apply` (which compares every element), `CHANGES` applies of the same
//!    change with `NodePolicy::interfaces` emptied (the nf_tables batch without the `PODS`
//!    interface lookups), and `CHANGES` times a rule more in that policy (one element added
//!    alone) and that rule less (one element removed alone), each timed, without the
//!    interface lookups.
//! 2. **iptables** (`policy/iptables.rs`): per `RESTORES` program (`iptables-restore`, nf_tables
//!    backend, and `iptables-legacy-restore` when the kernel has the legacy tables; skipped by
//!    name otherwise), a fresh host with the same pods: the whole policy in one
//!    `iptables-restore --noflush` (FORWARD: conntrack ESTABLISHED,RELATED first, then one jump
//!    per pod in pod order, so the server's last; each pod's chain its allowed (peer, port)
//!    ACCEPTs in rule order, so the client's last in the server's chain, then DROP); the same
//!    dropped-port check; `CONNS` first packets; `IPT_CHANGES` rule changes (pod `PODS-2`'s chain
//!    rewritten with `--noflush`).
//!
//! Knobs `NETKIT_BENCH_POL_*` (defaults; `NETKIT_BENCH_QUICK=1` in brackets): `PODS` 1000
//! [200], `LEVELS` `10,10000` [`10,1000`], `CHANGES` 50 [10], `CONNS` 300 [100], `IPT_CHANGES`
//! 20 [5], `IPT_LIMIT` 120 [30] (seconds one iptables-restore may take before it is killed),
//! `RESTORES` `iptables-restore,iptables-legacy-restore`.
//!
//! Prints a markdown table with each level's figures side by side and the ratio of the largest
//! R to the smallest, then the targets (met / MISSED). Needs root. Everything lives in
//! namespaces this program makes (names `nk<pid>x…`), deleted on exit, error, panic or
//! Ctrl-C, and those of an earlier run that was killed at start.

#[path = "common/echo.rs"]
mod echo;
#[path = "common/harness.rs"]
mod harness;
#[path = "policy/iptables.rs"]
mod iptables;
// Only the percentiles and the CPU figures are used here.
#[allow(dead_code)]
#[path = "common/measure.rs"]
mod measure;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use netkit_core::policy::{
    compile, Cluster, IngressRule, IpBlock, LabelSelector, LocalPod, NetworkPolicy, NodeCompiler, NodePolicy, Peer,
    PodInfo, PolicyFirewall, PolicyOptions, PolicyPort, PolicyType, Protocol,
};
use netkit_core::NetNsGuard;
use netkit_test_support::{ip, unique};

use echo::{first_packets, EchoServer};
use harness::{check_stop, delete_namespaces, signals, stopped, Cleanup, Report, Res};
use measure::percentile;

/// The prefix of this bench's knobs.
const KNOBS: &str = "NETKIT_BENCH_POL_";
/// The client pod and its gateway (the host).
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 210, 0, 2);
const CLIENT_GW: Ipv4Addr = Ipv4Addr::new(10, 210, 0, 1);
/// The server pod and its gateway.
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 210, 1, 2);
const SERVER_GW: Ipv4Addr = Ipv4Addr::new(10, 210, 1, 1);
/// The echo port (allowed) and a port the policy does not allow.
const PORT: u16 = 8080;
const DENIED_PORT: u16 = 8081;
/// The changed rule's port, and the port it switches to.
const CHANGE_PORT: u16 = 1001;
const CHANGE_PORT2: u16 = 31001;
/// The peer and port of the rule added and removed (the add-only and remove-only applies).
const EXTRA_PEER: Ipv4Addr = Ipv4Addr::new(10, 230, 0, 1);
const EXTRA_PORT: u16 = 5000;

// ---------------------------------------------------------------------------
// Configuration

struct Config {
    quick: bool,
    pods: usize,
    levels: Vec<usize>,
    changes: usize,
    conns: usize,
    ipt_changes: usize,
    ipt_limit: Duration,
    restores: Vec<String>,
}

fn config() -> Res<Config> {
    let quick = harness::quick();
    let q = |full: usize, small: usize| if quick { small } else { full };
    let mut levels = Vec::new();
    let name = format!("{KNOBS}LEVELS");
    for l in harness::list(&name, if quick { "10,1000" } else { "10,10000" }) {
        match l.parse::<usize>() {
            Ok(n) if (2..=50_000).contains(&n) => levels.push(n),
            _ => return Err(format!("{name}: {l:?} is not a number from 2 to 50000").into()),
        }
    }
    if levels.is_empty() {
        return Err(format!("{name}: no level").into());
    }
    Ok(Config {
        quick,
        pods: harness::knob(KNOBS, "PODS", q(1000, 200), 3..=60_000)?,
        levels,
        changes: harness::knob(KNOBS, "CHANGES", q(50, 10), 2..=10_000)?,
        conns: harness::knob(KNOBS, "CONNS", q(300, 100), 10..=100_000)?,
        ipt_changes: harness::knob(KNOBS, "IPT_CHANGES", q(20, 5), 1..=1000)?,
        ipt_limit: Duration::from_secs(harness::knob(KNOBS, "IPT_LIMIT", q(120, 30), 1..=3600)? as u64),
        restores: harness::list(&format!("{KNOBS}RESTORES"), "iptables-restore,iptables-legacy-restore"),
    })
}

// ---------------------------------------------------------------------------
// The pods and the policy

/// Pod `i`'s address of `n` pods: the client first, the server last, fake ones between.
fn pod_addr(i: usize, n: usize) -> Ipv4Addr {
    if i == 0 {
        CLIENT
    } else if i == n - 1 {
        SERVER
    } else {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 211, 0, 0)) + i as u32)
    }
}

/// Pod `i`'s host-side interface.
fn pod_if(i: usize, n: usize) -> String {
    if i == 0 {
        "vcl".into()
    } else if i == n - 1 {
        "vsv".into()
    } else {
        format!("fake{i}")
    }
}

/// The allowed (peer, port) of every pod, in rule order (see the module docs).
fn allows(n: usize, r: usize) -> Vec<Vec<iptables::Allow>> {
    let mut out = vec![Vec::new(); n];
    let server_last = (0..r).filter(|j| j % n == 0).max();
    for j in 0..r {
        let pod = n - 1 - j % n;
        let allow = if Some(j) == server_last {
            (CLIENT, PORT)
        } else {
            (
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 220, 0, 0)) + 2 * j as u32),
                1000 + (j % 20_000) as u16,
            )
        };
        out[pod].push(allow);
    }
    out
}

/// Pod `i`'s policy from its allowed list.
fn policy_of(i: usize, allowed: &[iptables::Allow]) -> NetworkPolicy {
    NetworkPolicy {
        pod_selector: LabelSelector::labels([("pod", format!("pod-{i}").as_str())]),
        policy_types: vec![PolicyType::Ingress],
        ingress: allowed
            .iter()
            .map(|(peer, port)| IngressRule {
                from: vec![Peer {
                    ip_block: Some(IpBlock::new(IpAddr::V4(*peer).into())),
                    ..Default::default()
                }],
                ports: vec![PolicyPort {
                    protocol: Protocol::Tcp,
                    port: Some(*port),
                    end_port: None,
                }],
            })
            .collect(),
        egress: Vec::new(),
    }
}

/// The cluster and this node's pods for `n` pods and `allows`.
fn cluster(n: usize, allows: &[Vec<iptables::Allow>]) -> (Cluster, Vec<LocalPod>) {
    let mut c = Cluster::default();
    let mut local = Vec::with_capacity(n);
    for (i, allowed) in allows.iter().enumerate() {
        let name = format!("pod-{i}");
        c.pods.push(PodInfo {
            namespace: "default".into(),
            name: name.clone(),
            ips: vec![IpAddr::V4(pod_addr(i, n))],
            labels: [("pod".to_string(), name.clone())].into_iter().collect(),
        });
        local.push(LocalPod {
            namespace: "default".into(),
            name,
            interface: pod_if(i, n),
        });
        c.policies.insert(format!("default/pol-{i}"), policy_of(i, allowed));
    }
    c.namespaces = BTreeMap::new();
    (c, local)
}

// ---------------------------------------------------------------------------
// The host with its client and server

/// A host namespace routing between a client and a server pod (fields drop in order: the
/// server stops before the namespaces go).
struct Host {
    _server: EchoServer,
    client: NetNsGuard,
    _server_ns: NetNsGuard,
    host: NetNsGuard,
}

impl Host {
    fn new(tag: &str) -> Res<Host> {
        let host = NetNsGuard::create(&unique(&format!("{tag}h")))?;
        let client = NetNsGuard::create(&unique(&format!("{tag}c")))?;
        let server_ns = NetNsGuard::create(&unique(&format!("{tag}s")))?;
        let h = host.name().ok_or("unnamed namespace")?.to_string();
        for (ns, hostif, gw, addr) in [
            (&client, "vcl", CLIENT_GW, CLIENT),
            (&server_ns, "vsv", SERVER_GW, SERVER),
        ] {
            let p = ns.name().ok_or("unnamed namespace")?.to_string();
            ip(&[
                "-n", &h, "link", "add", hostif, "type", "veth", "peer", "name", "eth0", "netns", &p,
            ]);
            ip(&["-n", &h, "addr", "add", &format!("{gw}/24"), "dev", hostif]);
            ip(&["-n", &h, "link", "set", hostif, "up"]);
            ip(&["-n", &p, "link", "set", "lo", "up"]);
            ip(&["-n", &p, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            ip(&["-n", &p, "link", "set", "eth0", "up"]);
            ip(&["-n", &p, "route", "add", "default", "via", &gw.to_string()]);
        }
        ip(&["-n", &h, "link", "set", "lo", "up"]);
        netkit_core::sysctl::set(&host, "net.ipv4.ip_forward", "1")?;
        let server = EchoServer::start(&server_ns, PORT)?;
        Ok(Host {
            _server: server,
            client,
            _server_ns: server_ns,
            host,
        })
    }

    /// `n` new connections client → server:8080 (see [`first_packets`]).
    fn first_packets(&self, n: usize) -> Res<Vec<Duration>> {
        first_packets(&self.client, SocketAddr::new(IpAddr::V4(SERVER), PORT), n)
    }

    /// Whether a connection to a port the policy does not allow is dropped (times out) rather
    /// than refused by the server's kernel (which it is without policy: nothing listens).
    fn denied_port_dropped(&self) -> Res<bool> {
        let to = SocketAddr::new(IpAddr::V4(SERVER), DENIED_PORT);
        let r = self
            .client
            .run(move || TcpStream::connect_timeout(&to, Duration::from_millis(300)))?;
        Ok(matches!(r, Err(e) if e.kind() == std::io::ErrorKind::TimedOut))
    }
}

// ---------------------------------------------------------------------------
// The measurements

#[derive(Default)]
struct NetkitFigures {
    elements: usize,
    baseline: Vec<Duration>,
    open: Duration,
    compile_full: Duration,
    compiler_full: Duration,
    first_apply: Duration,
    dropped: bool,
    first: Vec<Duration>,
    compile: Vec<Duration>,
    apply: Vec<Duration>,
    change: Vec<Duration>,
    changed_elements: usize,
    apply_bare: Vec<Duration>,
    add_only: Vec<Duration>,
    remove_only: Vec<Duration>,
}

#[derive(Default)]
struct IptFigures {
    restore: String,
    skipped: Option<String>,
    rules: usize,
    full: Option<Duration>,
    dropped: bool,
    first: Vec<Duration>,
    change: Vec<Duration>,
}

struct Level {
    r: usize,
    netkit: NetkitFigures,
    ipt: Vec<IptFigures>,
}

/// Change `k`: the changed rule's port switches (1001 ↔ 31001) in `allows`; the new port.
fn toggle(allows: &mut [Vec<iptables::Allow>], n: usize, k: usize) -> u16 {
    let port = if k.is_multiple_of(2) { CHANGE_PORT2 } else { CHANGE_PORT };
    allows[n - 2][0].1 = port;
    port
}

/// Change `k` in `allows` and the cluster's policy of that pod; the policy's id.
fn change_rule(c: &mut Cluster, allows: &mut [Vec<iptables::Allow>], n: usize, k: usize) -> String {
    let port = toggle(allows, n, k);
    let id = format!("default/pol-{}", n - 2);
    let p = c.policies.get_mut(&id).expect("the changed policy");
    p.ingress[0].ports[0].port = Some(port);
    id
}

async fn netkit(cfg: &Config, r: usize) -> Res<NetkitFigures> {
    let n = cfg.pods;
    let mut allows = allows(n, r);
    assert_eq!(allows[n - 2][0].1, CHANGE_PORT, "the changed rule");
    let (mut c, local) = cluster(n, &allows);
    let host = Host::new("nk")?;
    let mut f = NetkitFigures {
        baseline: host.first_packets(cfg.conns)?,
        ..Default::default()
    };
    check_stop()?;
    let t = Instant::now();
    let fw = PolicyFirewall::open(&host.host, PolicyOptions::default()).await?;
    f.open = t.elapsed();
    let t = Instant::now();
    let node = compile(&c, &local)?;
    f.compile_full = t.elapsed();
    f.elements = node.pods.values().map(|p| p.ips.len()).sum::<usize>() + node.allowed_count();
    // The controller's path from here: a NodeCompiler made from the whole cluster, then its
    // changes applied.
    let t = Instant::now();
    let mut nc = NodeCompiler::from_cluster(&c, &local)?;
    f.compiler_full = t.elapsed();
    if *nc.node() != node {
        return Err("NodeCompiler::from_cluster differs from compile()".into());
    }
    let t = Instant::now();
    let changes = nc.changes();
    let stats = fw.apply_changes(nc.node(), &changes).await?;
    f.first_apply = t.elapsed();
    if !stats.replaced || stats.added != f.elements {
        return Err(format!("first apply: {stats:?}, {} elements expected", f.elements).into());
    }
    f.dropped = host.denied_port_dropped()?;
    f.first = host.first_packets(cfg.conns)?;
    for k in 0..cfg.changes {
        check_stop()?;
        let id = change_rule(&mut c, &mut allows, n, k);
        let t0 = Instant::now();
        nc.set_policy(&id, c.policies[&id].clone())?;
        let changes = nc.changes();
        let t1 = Instant::now();
        let stats = fw.apply_changes(nc.node(), &changes).await?;
        let t2 = Instant::now();
        f.compile.push(t1 - t0);
        f.apply.push(t2 - t1);
        f.change.push(t2 - t0);
        f.changed_elements = stats.added + stats.removed;
        if stats.replaced || f.changed_elements != 2 {
            return Err(format!("rule change {k}: {stats:?}, one element out and one in expected").into());
        }
    }
    if *nc.node() != compile(&c, &local)? {
        return Err("after the changes, the NodeCompiler's output differs from compile()".into());
    }
    let mut bare: Vec<NodePolicy> = Vec::with_capacity(2);
    for k in 0..2 {
        change_rule(&mut c, &mut allows, n, cfg.changes + k);
        let mut node = compile(&c, &local)?;
        node.interfaces.clear();
        bare.push(node);
    }
    for k in 0..cfg.changes {
        check_stop()?;
        let t = Instant::now();
        fw.apply(&bare[k % 2]).await?;
        f.apply_bare.push(t.elapsed());
    }
    // One element added (a rule more in pod PODS-2's policy), then removed, each alone.
    let (with, without) = {
        let key = format!("default/pol-{}", n - 2);
        let mut without = compile(&c, &local)?;
        without.interfaces.clear();
        let saved = c.policies[&key].clone();
        let mut extra = saved.clone();
        extra
            .ingress
            .extend(policy_of(n - 2, &[(EXTRA_PEER, EXTRA_PORT)]).ingress);
        c.policies.insert(key.clone(), extra);
        let mut with = compile(&c, &local)?;
        with.interfaces.clear();
        c.policies.insert(key, saved);
        (with, without)
    };
    fw.apply(&without).await?;
    for _ in 0..cfg.changes {
        check_stop()?;
        let t = Instant::now();
        let added = fw.apply(&with).await?;
        f.add_only.push(t.elapsed());
        let t = Instant::now();
        let removed = fw.apply(&without).await?;
        f.remove_only.push(t.elapsed());
        if (added.added, added.removed, removed.added, removed.removed) != (1, 0, 0, 1) {
            return Err(format!("one element in, then out expected: {added:?}, {removed:?}").into());
        }
    }
    // Still enforced after the changes.
    f.dropped &= host.denied_port_dropped()?;
    fw.clear().await?;
    Ok(f)
}

fn ipt(cfg: &Config, r: usize, restore: &str, tag: usize) -> Res<IptFigures> {
    let n = cfg.pods;
    let mut f = IptFigures {
        restore: restore.to_string(),
        ..Default::default()
    };
    let host = Host::new(&format!("ip{tag}"))?;
    // The legacy tables may be missing from the kernel: an empty restore says.
    if let Err(e) = iptables::restore(&host.host, restore, "*filter\nCOMMIT\n", cfg.ipt_limit) {
        eprintln!("SKIP {restore}: {e}");
        f.skipped = Some(e.to_string());
        return Ok(f);
    }
    let mut allows = allows(n, r);
    let pods: Vec<(Ipv4Addr, Vec<iptables::Allow>)> = (0..n).map(|i| (pod_addr(i, n), allows[i].clone())).collect();
    let input = iptables::full(&pods);
    f.rules = input.lines().filter(|l| l.starts_with("-A ")).count();
    f.full = iptables::restore(&host.host, restore, &input, cfg.ipt_limit)?;
    if f.full.is_none() {
        eprintln!("R={r}: {restore}: the full load did not end within {:?}", cfg.ipt_limit);
        return Ok(f);
    }
    f.dropped = host.denied_port_dropped()?;
    f.first = host.first_packets(cfg.conns)?;
    for k in 0..cfg.ipt_changes {
        check_stop()?;
        toggle(&mut allows, n, k);
        let input = iptables::one(n - 2, &allows[n - 2]);
        f.change.push(
            iptables::restore(&host.host, restore, &input, cfg.ipt_limit)?
                .ok_or("a rule change did not end in time")?,
        );
    }
    f.dropped &= host.denied_port_dropped()?;
    Ok(f)
}

async fn bench(cfg: &Config, levels: &mut Vec<Level>) -> Res<()> {
    for (li, &r) in cfg.levels.iter().enumerate() {
        eprintln!("R={r}: netkit");
        let nk = netkit(cfg, r).await?;
        let mut ipts = Vec::new();
        for (k, restore) in cfg.restores.iter().enumerate() {
            check_stop()?;
            eprintln!("R={r}: {restore}");
            let f = tokio::task::block_in_place(|| ipt(cfg, r, restore, li * 10 + k))?;
            ipts.push(f);
        }
        levels.push(Level {
            r,
            netkit: nk,
            ipt: ipts,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The report

fn us(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".into(), |d| format!("{:.0} µs", d.as_secs_f64() * 1e6))
}

fn msf(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1e3))
}

fn p(v: &[Duration], q: f64) -> Option<Duration> {
    percentile(v, q)
}

fn ratio(hi: Option<Duration>, lo: Option<Duration>) -> Option<f64> {
    match (hi, lo) {
        (Some(h), Some(l)) if !l.is_zero() => Some(h.as_secs_f64() / l.as_secs_f64()),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Level `l`'s figures of restore `k`, unless skipped.
fn ipt_of(l: &Level, k: usize) -> Option<&IptFigures> {
    l.ipt.get(k).filter(|f| f.skipped.is_none())
}

fn print(levels: &[Level], report: &mut Report) {
    let heads: Vec<String> = levels.iter().map(|l| format!("R={}", l.r)).collect();
    println!("| measurement | {} | largest ÷ smallest R |", heads.join(" | "));
    println!("|---|{}---:|", "---:|".repeat(levels.len()));
    let row = |what: &str, figs: Vec<Option<Duration>>, show: fn(Option<Duration>) -> String| -> Option<f64> {
        let cells: Vec<String> = figs.iter().map(|f| show(*f)).collect();
        let r = if figs.len() >= 2 {
            ratio(*figs.last().unwrap(), figs[0])
        } else {
            None
        };
        println!("| {what} | {} | {} |", cells.join(" | "), fmt_ratio(r));
        r
    };
    let count = |what: &str, figs: Vec<Option<usize>>| {
        let cells: Vec<String> = figs
            .iter()
            .map(|f| f.map_or_else(|| "–".into(), |n| n.to_string()))
            .collect();
        println!("| {what} | {} | |", cells.join(" | "));
    };
    let nk = |f: fn(&NetkitFigures) -> Option<Duration>| levels.iter().map(|l| f(&l.netkit)).collect::<Vec<_>>();
    count(
        "netkit: set elements (isolated pod addresses + allowed boxes)",
        levels.iter().map(|l| Some(l.netkit.elements)).collect(),
    );
    row("netkit: open (the table made)", nk(|f| Some(f.open)), msf);
    row(
        "netkit: compile() of the whole cluster (the reference compiler)",
        nk(|f| Some(f.compile_full)),
        msf,
    );
    row(
        "netkit: NodeCompiler::from_cluster (the controller's full compile)",
        nk(|f| Some(f.compiler_full)),
        msf,
    );
    row(
        "netkit: first apply_changes (full load, one libnftables transaction)",
        nk(|f| Some(f.first_apply)),
        msf,
    );
    let (mut targets, mut others) = (Vec::new(), Vec::new());
    for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
        let r = row(
            &format!("netkit: one rule change, NodeCompiler + apply_changes, {name}"),
            levels.iter().map(|l| p(&l.netkit.change, q)).collect(),
            msf,
        );
        targets.push((format!("netkit rule change {name}"), r));
    }
    row(
        "  NodeCompiler alone (set_policy + changes), p50",
        levels.iter().map(|l| p(&l.netkit.compile, 50.0)).collect(),
        msf,
    );
    for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
        row(
            &format!("  apply_changes alone (2 elements changed), {name}"),
            levels.iter().map(|l| p(&l.netkit.apply, q)).collect(),
            msf,
        );
    }
    row(
        "  whole-policy apply without the pods' interface lookups, p50",
        levels.iter().map(|l| p(&l.netkit.apply_bare, 50.0)).collect(),
        msf,
    );
    row(
        "    one element added alone (a rule more), p50",
        levels.iter().map(|l| p(&l.netkit.add_only, 50.0)).collect(),
        msf,
    );
    row(
        "    one element removed alone (that rule less), p50",
        levels.iter().map(|l| p(&l.netkit.remove_only, 50.0)).collect(),
        msf,
    );
    for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
        row(
            &format!("first packet, no policy (floor), {name}"),
            levels.iter().map(|l| p(&l.netkit.baseline, q)).collect(),
            us,
        );
    }
    for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
        let r = row(
            &format!("netkit: first packet, {name}"),
            levels.iter().map(|l| p(&l.netkit.first, q)).collect(),
            us,
        );
        targets.push((format!("netkit first packet {name}"), r));
    }
    let restores: Vec<String> = levels
        .first()
        .map(|l| l.ipt.iter().map(|f| f.restore.clone()).collect())
        .unwrap_or_default();
    for (k, restore) in restores.iter().enumerate() {
        if levels.iter().all(|l| ipt_of(l, k).is_none()) {
            let why = levels
                .iter()
                .find_map(|l| l.ipt.get(k).and_then(|f| f.skipped.clone()))
                .unwrap_or_default();
            println!(
                "| {restore}: skipped ({}) | {}|",
                why.replace('\n', " "),
                "– | ".repeat(levels.len())
            );
            continue;
        }
        count(
            &format!("{restore}: rules"),
            levels.iter().map(|l| ipt_of(l, k).map(|f| f.rules)).collect(),
        );
        row(
            &format!("{restore}: full load (one restore)"),
            levels.iter().map(|l| ipt_of(l, k).and_then(|f| f.full)).collect(),
            msf,
        );
        for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
            let r = row(
                &format!("{restore}: one rule change (the pod's chain rewritten, --noflush), {name}"),
                levels
                    .iter()
                    .map(|l| ipt_of(l, k).and_then(|f| p(&f.change, q)))
                    .collect(),
                msf,
            );
            others.push((format!("{restore} rule change {name}"), r));
        }
        for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
            let r = row(
                &format!("{restore}: first packet (server last in FORWARD, client last in its chain), {name}"),
                levels
                    .iter()
                    .map(|l| ipt_of(l, k).and_then(|f| p(&f.first, q)))
                    .collect(),
                us,
            );
            others.push((format!("{restore} first packet {name}"), r));
        }
    }
    println!();
    let span = match (levels.first(), levels.last()) {
        (Some(a), Some(b)) => format!("R={} ÷ R={}", b.r, a.r),
        _ => String::new(),
    };
    for (what, r) in targets.iter().chain(&others) {
        report.row(&format!("{what}, {span}"), fmt_ratio(*r));
    }
    for (what, r) in targets {
        report.target(
            &format!("{what} flat (largest ÷ smallest R ≤ 1.25×)"),
            r.is_some_and(|r| r <= 1.25),
            fmt_ratio(r),
        );
    }
    for l in levels {
        report.target(
            &format!("R={}: netkit drops a port the policy does not allow", l.r),
            l.netkit.dropped,
            "connection to 8081 timed out".into(),
        );
        for f in l.ipt.iter().filter(|f| f.skipped.is_none() && f.full.is_some()) {
            report.target(
                &format!("R={}: {} drops a port the policy does not allow", l.r, f.restore),
                f.dropped,
                "connection to 8081 timed out".into(),
            );
        }
    }
}

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the policy bench needs root (namespaces, firewalls)".into());
    }
    let cfg = config()?;
    let stale = delete_namespaces(None, &[]);
    if stale > 0 {
        eprintln!("removed {stale} namespaces left by an earlier, killed run");
    }
    let _cleanup = Cleanup;
    let facts = format!(
        "nproc {}, kernel {}, {}, {}",
        harness::first_line("nproc", &[], "?"),
        harness::first_line("uname", &["-r"], "?"),
        harness::first_line("nft", &["--version"], "nft ?"),
        harness::first_line("iptables", &["--version"], "iptables ?"),
    );
    let load_before = loadavg();
    eprintln!(
        "policy bench{}: {} pods, levels {:?}; {facts}; load {load_before}",
        if cfg.quick { " (quick)" } else { "" },
        cfg.pods,
        cfg.levels
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let busy0 = measure::machine_busy_ticks().ok();
    let mut levels = Vec::new();
    let result = rt.block_on(async {
        tokio::select! {
            r = bench(&cfg, &mut levels) => r,
            r = signals() => r.and(Err("interrupted".into())),
        }
    });
    drop(rt);
    let wall = started.elapsed();
    let busy = busy0.and_then(|b| Some(measure::machine_busy_ticks().ok()? - b));
    println!("Machine: {facts}");
    println!(
        "Load average before {load_before}, after {}; machine CPU busy during the run {} of {} CPU-seconds",
        loadavg(),
        busy.map_or_else(|| "?".into(), |b| format!("{:.0} s", b as f64 / measure::clk_tck())),
        wall.as_secs_f64().round() as u64 * harness::first_line("nproc", &[], "1").parse::<u64>().unwrap_or(1)
    );
    println!(
        "Run: {}{:.0?}; {} pods, levels {:?}, changes {}, connections {}, iptables changes {}",
        if cfg.quick { "NETKIT_BENCH_QUICK=1, " } else { "" },
        wall,
        cfg.pods,
        cfg.levels,
        cfg.changes,
        cfg.conns,
        cfg.ipt_changes
    );
    println!();
    let mut report = Report::default();
    if !levels.is_empty() {
        print(&levels, &mut report);
    }
    report.print();
    result
}
