//! Pods across nodes, end to end, as a cluster runs them: a real etcd (Debian's etcd-server)
//! inside the lab namespace on the underlay, one `netkit agent` process per node running inside
//! the node's namespace with `--store etcd=…`, and pods attached by the real `netkit-cni`
//! binary (the CNI protocol: environment and stdin) inside their node's namespace, reading the
//! agent's subnet file. Real packets; each of Flannel's backends (vxlan, host-gw, udp), and
//! Calico's way (the bgp backend: the real BIRD 2 in every node, block affinity, pods in
//! netkit-cni's routed mode; full mesh, route reflectors, a node leaving, BIRD killed, a block
//! filling up, two segments joined by a router that reflects routes, VXLAN and IPIP across).
//!
//! The binaries are this package's builds of netkit-cli's and netkit-cni's mains
//! (`cluster-netkit`, `cnilab-netkit-cni`), so `cargo test` runs the current code.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use netkit_core::{NetNs, NetNsGuard};
use netkit_test_support::cluster::{Cluster, Node};
use netkit_test_support::etcd::Etcd;
use netkit_test_support::{ping, wait_for, KillOnDrop};
use serde_json::{json, Value};

const NETKIT: &str = env!("CARGO_BIN_EXE_cluster-netkit");
const NETKIT_CNI: &str = env!("CARGO_BIN_EXE_cnilab-netkit-cni");
/// The store's address on the underlay (the lab's bridge).
const STORE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 100);

/// `netkit agent --backend BACKEND` inside `node`, its files in `dir`.
fn agent(node: &Node, dir: &Path, backend: &str) -> KillOnDrop {
    agent_with(node, dir, &["--backend", backend])
}

/// `netkit agent ARGS…` inside `node` on the lab's etcd, its files in `dir`.
fn agent_with(node: &Node, dir: &Path, args: &[&str]) -> KillOnDrop {
    let ns = NetNs::open(node.name()).unwrap();
    let mut cmd = ns.command(NETKIT);
    cmd.args(["agent", "--store", &format!("etcd=http://{STORE_IP}:2379")])
        .args(["--network", "10.244.0.0/16", "--iface", "eth0"])
        .args(args)
        .args(["--node", node.name(), "--ttl", "30s"])
        .arg("--status-file")
        .arg(dir.join(format!("{}.json", node.name())))
        .arg("--subnet-file")
        .arg(dir.join(format!("{}.env", node.name())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{}.log", node.name()))).unwrap());
    KillOnDrop::new(cmd.spawn().expect("start netkit agent"))
}

/// The status `node`'s agent wrote.
fn status(node: &Node, dir: &Path) -> Value {
    std::fs::read_to_string(dir.join(format!("{}.json", node.name())))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// How an agent of `backend` reaches peers on its segment (the status's `mode`).
fn mode_of(backend: &str) -> &'static str {
    match backend {
        "vxlan" => "vxlan",
        "host-gw" => "direct",
        _ => "udp",
    }
}

/// Wait until `node`'s agent runs with `peers` peers reached through `backend`.
fn wait_peers(node: &Node, dir: &Path, backend: &str, peers: usize) -> Value {
    wait_for(Duration::from_secs(30), "the agent to program its peers", || {
        let s = status(node, dir);
        let ok = s["peers"]
            .as_array()
            .map_or(0, |p| p.iter().filter(|p| p["mode"] == mode_of(backend)).count());
        if s["state"] == "running" && ok == peers {
            Ok(s)
        } else {
            Err(s)
        }
    })
}

/// ADD of a pod by the netkit-cni binary, run in `node`'s namespace as a runtime runs it; its
/// address.
fn attach(node: &Node, dir: &Path, pod: &NetNsGuard, id: &str) -> Ipv4Addr {
    attach_in(node, dir, pod, id, "bridge")
}

/// ADD as [`attach`] does, in netkit-cni's `mode` (`bridge`, `routed`).
fn attach_in(node: &Node, dir: &Path, pod: &NetNsGuard, id: &str, mode: &str) -> Ipv4Addr {
    attach_full(node, dir, pod, id, mode, None).0
}

/// A pod as Kubernetes names it for netkit-cni's `clusterStore`: namespace, name, labels.
struct K8sPod<'a> {
    namespace: &'a str,
    name: &'a str,
    labels: Value,
}

/// ADD as [`attach_in`] does (with `k8s`, the configuration records the pod in the lab's etcd:
/// `clusterStore`, `nodeName`, the `labels` capability, `K8S_POD_*` arguments); the pod's
/// address and the host side of its interface.
fn attach_full(
    node: &Node,
    dir: &Path,
    pod: &NetNsGuard,
    id: &str,
    mode: &str,
    k8s: Option<K8sPod>,
) -> (Ipv4Addr, String) {
    let mut conf = json!({
        "cniVersion": "1.0.0",
        "name": "podnet",
        "type": "netkit-cni",
        "mode": mode,
        "bridge": "cni0",
        "isDefaultGateway": true,
        "ipam": {
            "type": "netkit-ipam",
            "dataDir": dir.join(format!("{}-ipam", node.name())),
            "subnetFile": dir.join(format!("{}.env", node.name())),
        }
    });
    let mut args = String::new();
    if let Some(k) = &k8s {
        conf["clusterStore"] = format!("etcd=http://{STORE_IP}:2379").into();
        conf["nodeName"] = node.name().into();
        conf["runtimeConfig"] = json!({"labels": k.labels});
        args = format!("K8S_POD_NAMESPACE={};K8S_POD_NAME={}", k.namespace, k.name);
    }
    let ns = NetNs::open(node.name()).unwrap();
    let mut child = ns
        .command(NETKIT_CNI)
        .env("CNI_ARGS", args)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netkit-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "netkit-cni ADD: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("a CNI result");
    let ip = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ifaces = r["interfaces"].as_array().expect("interfaces in the result");
    let host_end = ifaces[ifaces.len() - 2]["name"].as_str().unwrap().to_string();
    (ip, host_end)
}

/// Every pod pings every other; the failures.
fn unreachable(pods: &[(NetNsGuard, Ipv4Addr)]) -> Vec<String> {
    let mut failed = Vec::new();
    for (from, a) in pods {
        for (_, b) in pods.iter().filter(|(_, b)| b != a) {
            if !ping(from.name().unwrap(), &b.to_string()) {
                failed.push(format!("{a} -> {b}"));
            }
        }
    }
    failed
}

#[test]
fn agents_on_etcd_carry_pods_and_ride_out_an_etcd_outage() {
    for backend in ["vxlan", "host-gw", "udp"] {
        one_backend(backend);
    }
}

/// Three nodes with two pods each, an etcd outage, a fourth node after it, with `backend`.
fn one_backend(backend: &str) {
    let cluster = Cluster::new("e2e", 1);
    let dir: PathBuf = cluster.dir().to_path_buf();
    cluster
        .lab()
        .ip(&["addr", "add", &format!("{STORE_IP}/24"), "dev", "ul0"]);
    let mut etcd = Etcd::start_in(cluster.lab().ns(), IpAddr::V4(STORE_IP));
    let nodes: Vec<Node> = (1..=3).map(|i| cluster.node(&format!("n{i}"), 0, i)).collect();
    let mut agents: Vec<KillOnDrop> = nodes.iter().map(|n| agent(n, &dir, backend)).collect();
    for n in &nodes {
        wait_peers(n, &dir, backend, 2);
    }
    let mut pods = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..2 {
            let pod = cluster.pod(&format!("p{i}{k}"));
            let ip = attach(n, &dir, &pod, &format!("pod{i}{k}"));
            pods.push((pod, ip));
        }
    }
    assert_eq!(unreachable(&pods), Vec::<String>::new(), "{backend}");

    // etcd goes away: every agent notices, and the pods keep talking.
    etcd.stop();
    for n in &nodes {
        wait_for(Duration::from_secs(30), "the agent to notice the outage", || {
            let s = status(n, &dir);
            if s["store_ok"] == false {
                Ok(())
            } else {
                Err(s)
            }
        });
    }
    assert_eq!(
        unreachable(&pods),
        Vec::<String>::new(),
        "{backend}: traffic during the outage"
    );

    // etcd comes back: a new node joins, and everyone reaches its pod.
    etcd.resume();
    let n4 = cluster.node("n4", 0, 4);
    agents.push(agent(&n4, &dir, backend));
    wait_peers(&n4, &dir, backend, 3);
    for n in &nodes {
        wait_peers(n, &dir, backend, 3);
    }
    let pod = cluster.pod("p40");
    let ip = attach(&n4, &dir, &pod, "pod40");
    pods.push((pod, ip));
    assert_eq!(
        unreachable(&pods),
        Vec::<String>::new(),
        "after etcd returned, with node 4"
    );
    drop(agents);
}

// ---------------------------------------------------------------- Calico's way: bgp

/// A lab with `segments` segments and etcd on the first (reachable from the second through the
/// router); the scratch directory.
fn lab_with_etcd(tag: &str, segments: u8) -> (Cluster, Etcd, PathBuf) {
    let cluster = Cluster::new(tag, segments);
    let dir = cluster.dir().to_path_buf();
    let lab = cluster.lab();
    lab.ip(&["addr", "add", &format!("{STORE_IP}/24"), "dev", "ul0"]);
    if segments == 2 {
        lab.ip(&["route", "add", "192.168.60.0/24", "via", "192.168.50.254"]);
    }
    let etcd = Etcd::start_in(lab.ns(), IpAddr::V4(STORE_IP));
    (cluster, etcd, dir)
}

/// A bgp agent process and its BIRD: stopped with SIGTERM (the agent stops its BIRD) when
/// dropped, and its BIRD killed if it is still there (an agent killed hard leaves BIRD
/// running, announcing the node's blocks, by design).
struct BgpAgent {
    proc: Option<KillOnDrop>,
    bird_dir: PathBuf,
}

impl BgpAgent {
    /// `netkit agent --backend bgp` in `node`: /28 blocks (13 addresses) claimed as pods fill
    /// them (fewer than 2 free), hold time 3 s, `extra` options.
    fn start(node: &Node, dir: &Path, extra: &[&str]) -> BgpAgent {
        let bird_dir = dir.join(format!("{}-bird", node.name()));
        let store = dir.join(format!("{}-ipam", node.name())).join("podnet");
        let mut args = vec![
            "--backend",
            "bgp",
            "--subnet-len",
            "28",
            "--hold-time",
            "3",
            "--min-free",
            "2",
        ];
        let (b, s) = (bird_dir.display().to_string(), store.display().to_string());
        args.extend(["--bird-dir", &b, "--ipam-store", &s]);
        args.extend(extra);
        BgpAgent {
            proc: Some(agent_with(node, dir, &args)),
            bird_dir,
        }
    }

    /// BIRD's pid, from its pid file.
    fn bird_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.bird_dir.join("bird.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGTERM, and wait (at most 10 s) for the agent to stop.
    fn stop(&mut self) {
        let Some(mut p) = self.proc.take() else { return };
        // SAFETY: kill(2) with a pid and a signal touches no memory.
        unsafe { libc::kill(p.id() as i32, libc::SIGTERM) };
        // Not wait_for: this runs in Drop, where a panic would abort. KillOnDrop kills an
        // agent that did not stop in time.
        let stopped = netkit_test_support::poll_for(Duration::from_secs(10), || match p.try_wait() {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        });
        if let Err(e) = stopped {
            eprintln!("the bgp agent did not stop on SIGTERM within 10 s: {e}");
        }
    }
}

impl Drop for BgpAgent {
    fn drop(&mut self) {
        self.stop();
        if let Some(pid) = self.bird_pid() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "bird" {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The peer nodes of `node`'s agent in `mode` (a node with several blocks counts once), and its
/// Established BGP sessions.
fn bgp_view(node: &Node, dir: &Path, mode: &str) -> (usize, usize) {
    let s = status(node, dir);
    let peers = s["peers"].as_array().map_or(0, |p| {
        let names: std::collections::BTreeSet<&str> = p
            .iter()
            .filter(|p| p["mode"] == mode)
            .filter_map(|p| p["node"].as_str())
            .collect();
        names.len()
    });
    let up = s["bgp"].as_array().map_or(0, |b| {
        b.iter()
            .filter(|b| b["info"].as_str().is_some_and(|i| i.starts_with("Established")))
            .count()
    });
    (peers, up)
}

/// Wait until `node`'s agent has `peers` peers in `mode` and `sessions` sessions Established.
fn wait_bgp(node: &Node, dir: &Path, mode: &str, peers: usize, sessions: usize) {
    wait_for(
        Duration::from_secs(30),
        "the bgp agent's peers and sessions",
        || match bgp_view(node, dir, mode) {
            v if v == (peers, sessions) => Ok(()),
            v => Err((v, status(node, dir))),
        },
    );
}

/// Every block of `owners` (node, block) other than `node`'s own is a BIRD route via its owner.
fn wait_bird_routes(node: &Node, owners: &[(&Node, String)]) {
    wait_for(Duration::from_secs(30), "every other node's blocks from BGP", || {
        let r = netkit_test_support::ip(&["-n", node.name(), "route", "show", "proto", "bird"]);
        let missing: Vec<&String> = owners
            .iter()
            .filter(|(n, _)| n.name() != node.name())
            .filter(|(n, b)| !r.contains(&format!("{b} via {} dev eth0", n.ip)))
            .map(|(_, b)| b)
            .collect();
        match missing.is_empty() {
            true => Ok(()),
            false => Err((missing.into_iter().cloned().collect::<Vec<_>>(), r)),
        }
    });
}

/// The node's blocks, from its agent's status (its lease first).
fn blocks_of(node: &Node, dir: &Path) -> Vec<String> {
    let s = status(node, dir);
    let mut v: Vec<String> = s["lease"]["subnet"].as_str().map(str::to_string).into_iter().collect();
    for b in s["blocks"].as_array().into_iter().flatten().skip(1) {
        v.push(b["subnet"].as_str().unwrap_or_default().to_string());
    }
    v
}

/// TCP from every pod to every other: each answers, and saw the client pod's own address.
fn tcp_all(pods: &[(NetNsGuard, Ipv4Addr)]) -> Vec<String> {
    use netkit_test_support::echo::{tcp_hello_from, Server};
    let servers: Vec<Server> = pods
        .iter()
        .map(|(ns, ip)| Server::tcp(ns, &ip.to_string(), std::net::SocketAddr::new(IpAddr::V4(*ip), 7000)))
        .collect();
    let mut failed = Vec::new();
    for (from, a) in pods {
        for (_, b) in pods.iter().filter(|(_, b)| b != a) {
            match tcp_hello_from(from, std::net::SocketAddr::new(IpAddr::V4(*b), 7000)) {
                Ok(h) if h.peer.ip() == IpAddr::V4(*a) => {}
                Ok(h) => failed.push(format!("{a} -> {b}: the server saw {}", h.peer)),
                Err(e) => failed.push(format!("{a} -> {b}: {e}")),
            }
        }
    }
    drop(servers);
    failed
}

#[test]
fn bgp_full_mesh_of_four_blocks_fill_bird_dies_a_node_leaves() {
    if !Path::new(netkit_core::overlay::bird::BIRD).exists() {
        netkit_test_support::report_skip("cluster::bgp_full_mesh", "no /usr/sbin/bird (apt-get install bird2)");
        return;
    }
    let (cluster, _etcd, dir) = lab_with_etcd("e2b", 1);
    let nodes: Vec<Node> = (1..=4).map(|i| cluster.node(&format!("m{i}"), 0, i)).collect();
    let mut agents: Vec<BgpAgent> = nodes.iter().map(|n| BgpAgent::start(n, &dir, &[])).collect();
    // Full mesh: 3 sessions per node, 6 in all.
    for n in &nodes {
        wait_bgp(n, &dir, "bgp", 3, 3);
    }
    let owners: Vec<(&Node, String)> = nodes.iter().map(|n| (n, blocks_of(n, &dir)[0].clone())).collect();
    for n in &nodes {
        wait_bird_routes(n, &owners);
    }
    let mut pods = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let pod = cluster.pod(&format!("q{i}"));
        let ip = attach_in(n, &dir, &pod, &format!("pod{i}"), "routed");
        pods.push((pod, ip));
    }
    assert_eq!(unreachable(&pods), Vec::<String>::new());
    assert_eq!(tcp_all(&pods), Vec::<String>::new(), "TCP, without NAT");

    // `netkit agent status` shows the sessions as BIRD has them now.
    let out = std::process::Command::new(NETKIT)
        .args(["agent", "status", "--status-file"])
        .arg(dir.join(format!("{}.json", nodes[0].name())))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("BGP sessions (from BIRD now)"), "{text}");
    assert_eq!(text.matches("Established").count(), 3, "{text}");

    // Node 1's block fills up (13 addresses, its pod holds one): it claims a second block,
    // which every node learns, and the pod that gets an address of it is reachable.
    let mut fill = Vec::new();
    for k in 0..11 {
        let pod = cluster.pod(&format!("f{k}"));
        let ip = attach_in(&nodes[0], &dir, &pod, &format!("fill{k}"), "routed");
        fill.push((pod, ip));
    }
    wait_for(
        Duration::from_secs(20),
        "node 1 claims a second block",
        || match blocks_of(&nodes[0], &dir) {
            b if b.len() == 2 => Ok(b),
            b => Err(b),
        },
    );
    let second = blocks_of(&nodes[0], &dir)[1].clone();
    let owners2: Vec<(&Node, String)> = vec![(&nodes[0], second.clone())];
    for n in &nodes[1..] {
        wait_bird_routes(n, &owners2);
    }
    let pod = cluster.pod("f11");
    let _last = attach_in(&nodes[0], &dir, &pod, "fill11", "routed");
    let pod2 = cluster.pod("f12");
    let ip2 = attach_in(&nodes[0], &dir, &pod2, "fill12", "routed");
    let block2: ipnetwork::IpNetwork = second.parse().unwrap();
    assert!(block2.contains(IpAddr::V4(ip2)), "{ip2} in the new block {second}");
    assert!(
        ping(pods[3].0.name().unwrap(), &ip2.to_string()),
        "node 4's pod reaches {ip2}"
    );

    // BIRD killed on node 2: its agent starts it again; sessions and routes come back.
    let old = agents[1].bird_pid().expect("bird's pid");
    // SAFETY: kill(2) with a pid and a signal touches no memory.
    unsafe { libc::kill(old, libc::SIGKILL) };
    wait_for(
        Duration::from_secs(30),
        "node 2's bird started again",
        || match agents[1].bird_pid() {
            Some(p) if p != old => Ok(()),
            p => Err(p),
        },
    );
    wait_bgp(&nodes[1], &dir, "bgp", 3, 3);
    for n in &nodes {
        wait_bird_routes(n, &owners);
    }
    assert_eq!(unreachable(&pods), Vec::<String>::new(), "after bird's restart");

    // Node 4 leaves (agent and BIRD stopped): its block is withdrawn within the hold time.
    let gone = owners[3].1.clone();
    agents[3].stop();
    for n in &nodes[..3] {
        wait_for(Duration::from_secs(10), "node 4's block withdrawn", || {
            let r = netkit_test_support::ip(&["-n", n.name(), "route", "show", "proto", "bird"]);
            match r.contains(&gone) {
                true => Err(r),
                false => Ok(()),
            }
        });
    }
    drop(agents);
}

#[test]
fn bgp_two_reflectors_among_six_nodes() {
    if !Path::new(netkit_core::overlay::bird::BIRD).exists() {
        netkit_test_support::report_skip("cluster::bgp_reflectors", "no /usr/sbin/bird (apt-get install bird2)");
        return;
    }
    let (cluster, _etcd, dir) = lab_with_etcd("e2r", 1);
    let nodes: Vec<Node> = (1..=6).map(|i| cluster.node(&format!("r{i}"), 0, i)).collect();
    let rr: Vec<String> = nodes[..2].iter().map(|n| n.name().to_string()).collect();
    let extra = [
        "--reflector",
        &rr[0],
        "--reflector",
        &rr[1],
        "--services",
        "--lb-bgp",
        "--lb-pool",
        "203.0.113.0/24",
    ];
    let agents: Vec<BgpAgent> = nodes.iter().map(|n| BgpAgent::start(n, &dir, &extra)).collect();
    // Reflectors peer with everyone (5 sessions), clients with the reflectors (2): 9 sessions
    // instead of a full mesh's 15.
    for (i, n) in nodes.iter().enumerate() {
        wait_bgp(n, &dir, "bgp", 5, if i < 2 { 5 } else { 2 });
    }
    let owners: Vec<(&Node, String)> = nodes.iter().map(|n| (n, blocks_of(n, &dir)[0].clone())).collect();
    for n in &nodes {
        wait_bird_routes(n, &owners);
    }
    let mut pods = Vec::new();
    for (i, n) in nodes.iter().enumerate().skip(2).take(3) {
        let pod = cluster.pod(&format!("w{i}"));
        let ip = attach_in(n, &dir, &pod, &format!("pod{i}"), "routed");
        pods.push((pod, ip));
    }
    assert_eq!(
        unreachable(&pods),
        Vec::<String>::new(),
        "clients' pods through reflected routes"
    );
    // A LoadBalancer service from the pool, with one endpoint: every node's agent announces
    // its address through its BIRD (--lb-bgp), so a reflector learns it from the others.
    let out = service(
        &cluster,
        &[
            "add",
            "default/lb",
            "--cluster-ip",
            "10.96.0.40",
            "--port",
            "80:8080",
            "--type",
            "LoadBalancer",
            "--lb-pool",
            "203.0.113.0/24",
        ],
    );
    assert!(out.contains("LoadBalancer address: 203.0.113.1"), "{out}");
    let ep = format!("{}@{}", pods[0].1, nodes[2].name());
    service(&cluster, &["endpoints", "default/lb", "add", &ep]);
    let bird_dir = dir.join(format!("{}-bird", nodes[0].name()));
    wait_for(
        Duration::from_secs(30),
        "the reflector to learn the address from the others",
        || {
            let out = std::process::Command::new(netkit_core::overlay::bird::BIRDC)
                .arg("-s")
                .arg(bird_dir.join("bird.ctl"))
                .args(["show", "route", "203.0.113.1/32"])
                .output()
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let via: std::collections::BTreeSet<&str> = text
                .split_whitespace()
                .filter(|w| w.starts_with("192.168.50."))
                .collect();
            (via.len() >= 5).then_some(()).ok_or(text)
        },
    );
    let st = services_status(&nodes[5], &dir);
    assert_eq!(st["bgp_announced"], serde_json::json!(["203.0.113.1"]), "{st}");
    drop(agents);
}

/// Two segments joined by a router that runs BIRD as the reflector of both; `encap` across
/// subnets. `false` when this kernel cannot run it (the agent exits saying so).
fn bgp_two_segments(tag: &str, encap: &str) -> bool {
    use netkit_core::overlay::bird::{Bird, BirdConfig, BirdPeer};
    let (cluster, _etcd, dir) = lab_with_etcd(tag, 2);
    let nodes: Vec<Node> = [(0, 1), (0, 2), (1, 1), (1, 2)]
        .iter()
        .map(|(seg, host)| cluster.node(&format!("s{seg}{host}"), *seg, *host))
        .collect();
    let mut rr = BirdConfig::new(Ipv4Addr::new(192, 168, 50, 254), 64512);
    (rr.hold_time, rr.connect_retry) = (3, 1);
    for n in &nodes {
        rr.peers.push(BirdPeer {
            name: n.name().to_string(),
            ip: n.ip,
            asn: 64512,
            rr_client: true,
            multihop: false,
        });
    }
    let _rr = Bird::start(cluster.router().unwrap(), &dir.join("rr"), &rr).expect("the router's bird");
    let mut agents = Vec::new();
    for n in &nodes {
        let reflector = format!("192.168.{}.254", 50 + 10 * n.segment);
        let mut a = BgpAgent::start(
            n,
            &dir,
            &["--reflector", &reflector, "--encap", encap, "--cross-subnet"],
        );
        if encap == "ipip" {
            let exited = wait_for(Duration::from_secs(20), "the agent to run or to exit", || {
                if status(n, &dir)["state"] == "running" {
                    return Ok(false);
                }
                match a.proc.as_mut().unwrap().try_wait() {
                    Ok(Some(_)) => Ok(true),
                    other => Err(format!("{other:?}")),
                }
            });
            if exited {
                let log = std::fs::read_to_string(dir.join(format!("{}.log", n.name()))).unwrap_or_default();
                assert!(log.contains("not supported by this kernel"), "{log}");
                return false;
            }
        }
        agents.push(a);
    }
    let far = if encap == "ipip" { "ipip" } else { "vxlan" };
    for n in &nodes {
        wait_for(
            Duration::from_secs(30),
            "plain BGP on the segment, encapsulation across",
            || {
                let s = status(n, &dir);
                let ok = s["peers"].as_array().is_some_and(|p| {
                    p.len() == 3
                        && p.iter().all(|p| {
                            let same = nodes.iter().any(|m| m.name() == p["node"] && m.segment == n.segment);
                            p["mode"] == if same { "bgp" } else { far }
                        })
                });
                match ok && bgp_view(n, &dir, "bgp").1 == 1 {
                    true => Ok(()),
                    false => Err(s),
                }
            },
        );
    }
    let mut pods = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let pod = cluster.pod(&format!("t{i}"));
        let ip = attach_in(n, &dir, &pod, &format!("pod{i}"), "routed");
        pods.push((pod, ip));
    }
    assert_eq!(unreachable(&pods), Vec::<String>::new(), "{encap} crossSubnet");
    assert_eq!(tcp_all(&pods), Vec::<String>::new(), "{encap} crossSubnet, TCP");
    drop(agents);
    true
}

#[test]
fn bgp_two_segments_vxlan_cross_subnet() {
    if !Path::new(netkit_core::overlay::bird::BIRD).exists() {
        netkit_test_support::report_skip(
            "cluster::bgp_two_segments_vxlan",
            "no /usr/sbin/bird (apt-get install bird2)",
        );
        return;
    }
    assert!(bgp_two_segments("e2v", "vxlan"), "vxlan runs on this kernel");
}

#[test]
fn bgp_two_segments_ipip_cross_subnet() {
    if !Path::new(netkit_core::overlay::bird::BIRD).exists() {
        netkit_test_support::report_skip(
            "cluster::bgp_two_segments_ipip",
            "no /usr/sbin/bird (apt-get install bird2)",
        );
        return;
    }
    if !bgp_two_segments("e2i", "ipip") {
        netkit_test_support::report_skip(
            "cluster::bgp_two_segments_ipip",
            "ipip is not supported by this kernel (the agent exited saying so)",
        );
    }
}

// ---------------------------------------------------------------- Services (kube-proxy's job)

/// `netkit ARGS…` from the lab (where etcd is); its stdout, or the failure.
fn netkit_in_lab(cluster: &Cluster, args: &[&str]) -> Result<String, String> {
    let out = cluster
        .lab()
        .ns()
        .command(NETKIT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("netkit {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `netkit service --store etcd=… ARGS…` from the lab; panics on failure.
fn service(cluster: &Cluster, args: &[&str]) -> String {
    let store = format!("etcd=http://{STORE_IP}:2379");
    let mut full = vec!["service", "--store", &store];
    full.extend(args);
    netkit_in_lab(cluster, &full).unwrap_or_else(|e| panic!("{e}"))
}

/// The service proxy's status `node`'s agent wrote (`--services`).
fn services_status(node: &Node, dir: &Path) -> Value {
    std::fs::read_to_string(dir.join(format!("{}.services.json", node.name())))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Who answers `n` TCP connections from `from` to `addr` (server names), or the first failure.
fn answers(from: &NetNs, addr: std::net::SocketAddr, n: usize) -> Result<Vec<String>, String> {
    (0..n)
        .map(|_| netkit_test_support::echo::tcp_hello_from(from, addr).map(|h| h.name))
        .collect()
}

#[test]
fn services_from_the_command_through_etcd_an_outage_and_an_agent_restart() {
    use std::net::SocketAddr;

    use netkit_test_support::echo::Server;

    let (cluster, mut etcd, dir) = lab_with_etcd("esv", 1);
    let nodes: Vec<Node> = (1..=2).map(|i| cluster.node(&format!("n{i}"), 0, i)).collect();
    let start = |n: &Node| agent_with(n, &dir, &["--backend", "host-gw", "--services", "--policy"]);
    let mut agents: Vec<KillOnDrop> = nodes.iter().map(start).collect();
    for n in &nodes {
        wait_peers(n, &dir, "host-gw", 1);
    }
    // A server pod on each node, a client pod on node 1.
    let mut servers = Vec::new();
    let mut eps = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let pod = cluster.pod(&format!("e{}", i + 1));
        let (name, app) = (format!("e{}", i + 1), ["batch", "api"][i]);
        let k8s = K8sPod {
            namespace: "default",
            name: &name,
            labels: json!({ "app": app }),
        };
        let (ip, iface) = attach_full(n, &dir, &pod, &name, "bridge", Some(k8s));
        servers.push(Server::tcp(
            &pod,
            &format!("e{}", i + 1),
            SocketAddr::from(([0, 0, 0, 0], 8080)),
        ));
        eps.push((pod, ip, n.name().to_string(), iface));
    }
    let client = cluster.pod("c1");
    let k8s = K8sPod {
        namespace: "default",
        name: "c1",
        labels: json!({"app": "web"}),
    };
    let (client_ip, client_iface) = attach_full(&nodes[0], &dir, &client, "c1", "bridge", Some(k8s));
    let outside = cluster.node("out", 0, 200);

    // The service and its endpoints, written by the command.
    service(
        &cluster,
        &[
            "add",
            "default/web",
            "--cluster-ip",
            "10.96.0.10",
            "--type",
            "NodePort",
            "--port",
            "http=80:8080@30080",
        ],
    );
    let (ep1, ep2) = (
        format!("{}@{}", eps[0].1, eps[0].2),
        format!("{}@{}", eps[1].1, eps[1].2),
    );
    service(&cluster, &["endpoints", "default/web", "add", &ep1, &ep2]);
    let listed: Value = serde_json::from_str(
        &netkit_in_lab(
            &cluster,
            &[
                "-j",
                "service",
                "--store",
                &format!("etcd=http://{STORE_IP}:2379"),
                "list",
            ],
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(listed[0]["id"], "default/web", "{listed}");
    assert_eq!(listed[0]["service"]["ports"][0]["nodePort"], 30080, "{listed}");
    assert_eq!(
        listed[0]["endpoints"]["endpoints"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    let vip = SocketAddr::from(([10, 96, 0, 10], 80));
    wait_for(Duration::from_secs(30), "the cluster IP over both endpoints", || {
        let names: std::collections::BTreeSet<_> = answers(&client, vip, 16)?.into_iter().collect();
        (names.len() == 2).then_some(()).ok_or(format!("{names:?}"))
    });
    for n in &nodes {
        let port = SocketAddr::new(IpAddr::V4(n.ip), 30080);
        wait_for(Duration::from_secs(30), "the node port from outside", || {
            answers(&outside.ns, port, 4)
        });
        let s = services_status(n, &dir);
        assert_eq!(
            (s["services"].as_u64(), s["synced"].as_bool()),
            (Some(1), Some(true)),
            "{s}"
        );
    }

    // etcd goes away: the proxies say so, and the service keeps working. Node 1's agent is
    // restarted meanwhile: its rules stay while it waits for etcd.
    etcd.stop();
    for n in &nodes {
        wait_for(Duration::from_secs(30), "the proxy to notice the outage", || {
            let s = services_status(n, &dir);
            (s["synced"] == false && s["store_error"].is_string())
                .then_some(())
                .ok_or(s)
        });
    }
    drop(agents.remove(0));
    agents.insert(0, start(&nodes[0]));
    assert_eq!(
        answers(&client, vip, 8).map(|v| v.len()),
        Ok(8),
        "rules stay through the outage and the restart"
    );

    // etcd is back: a change made now reaches every node, the restarted one too.
    etcd.resume();
    service(&cluster, &["endpoints", "default/web", "del", &eps[0].1.to_string()]);
    let status_file = dir.join(format!("{}.json", nodes[0].name())).display().to_string();
    let status_out = wait_for(Duration::from_secs(30), "the restarted agent's proxy in sync", || {
        let out = netkit_in_lab(&cluster, &["agent", "status", "--status-file", &status_file])?;
        out.contains("services: 1 with 1 ready endpoints, in sync")
            .then_some(out.clone())
            .ok_or(out)
    });
    assert!(status_out.contains("lease 10.244."), "{status_out}");
    // 32 connections, all to e2 (by chance with two endpoints: 1 in 4 billion).
    let names: std::collections::BTreeSet<_> = answers(&client, vip, 32).unwrap().into_iter().collect();
    assert_eq!(names, std::collections::BTreeSet::from(["e2".to_string()]));

    // Network policy, from the command: e2 (app=api) takes connections only from app=web pods;
    // c1 is app=web, e1 is not.
    let store = format!("etcd=http://{STORE_IP}:2379");
    let policy = |args: &[&str]| {
        let mut full = vec!["policy", "--store", &store];
        full.extend(args);
        netkit_in_lab(&cluster, &full).unwrap_or_else(|e| panic!("{e}"))
    };
    // netkit-cni recorded the pods it attached (clusterStore): addresses, node, interface, labels.
    let pods: Value =
        serde_json::from_str(&netkit_in_lab(&cluster, &["-j", "policy", "--store", &store, "pod", "list"]).unwrap())
            .unwrap();
    let recorded: Vec<(String, String, String)> = pods
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["pod"]["node"].as_str().unwrap().to_string(),
                p["pod"]["interface"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        vec![
            (
                "default/c1".to_string(),
                nodes[0].name().to_string(),
                client_iface.clone()
            ),
            ("default/e1".to_string(), nodes[0].name().to_string(), eps[0].3.clone()),
            ("default/e2".to_string(), nodes[1].name().to_string(), eps[1].3.clone()),
        ],
        "{pods}"
    );
    assert_eq!(pods[2]["pod"]["labels"]["app"], "api", "{pods}");
    assert_eq!(pods[0]["pod"]["ips"][0], client_ip.to_string(), "{pods}");
    let file = dir.join("api-from-web.json");
    std::fs::write(
        &file,
        json!({"kind": "NetworkPolicy", "spec": {
            "podSelector": {"matchLabels": {"app": "api"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080}]}]
        }})
        .to_string(),
    )
    .unwrap();
    policy(&["add", "default/api-from-web", "-f", &file.display().to_string()]);
    let e2_addr = SocketAddr::new(IpAddr::V4(eps[1].1), 8080);
    wait_for(Duration::from_secs(30), "e1 denied, c1 allowed", || {
        let denied = netkit_test_support::echo::tcp_hello_from(&eps[0].0, e2_addr).is_err();
        let allowed = netkit_test_support::echo::tcp_hello_from(&client, e2_addr).is_ok();
        (denied && allowed)
            .then_some(())
            .ok_or(format!("e1 denied {denied}, c1 allowed {allowed}"))
    });
    // e1 relabelled by the command: now allowed.
    let e1_ip = eps[0].1.to_string();
    policy(&[
        "pod",
        "set",
        "default/e1",
        "--ip",
        &e1_ip,
        "--node",
        nodes[0].name(),
        "--iface",
        &eps[0].3,
        "--label",
        "app=web",
    ]);
    wait_for(Duration::from_secs(30), "e1 relabelled app=web: allowed", || {
        netkit_test_support::echo::tcp_hello_from(&eps[0].0, e2_addr).map(|_| ())
    });
    let listed = policy(&["list"]);
    assert!(listed.contains("default/api-from-web"), "{listed}");
    let status_out = netkit_in_lab(&cluster, &["agent", "status", "--status-file", &status_file]).unwrap();
    assert!(
        status_out.contains("policy: 1 policies, 2 local pods (0 isolated), in sync"),
        "{status_out}"
    );
    policy(&[
        "pod",
        "set",
        "default/e1",
        "--ip",
        &e1_ip,
        "--node",
        nodes[0].name(),
        "--iface",
        &eps[0].3,
        "--label",
        "app=batch",
    ]);
    wait_for(Duration::from_secs(30), "e1 back to app=batch: denied", || {
        netkit_test_support::echo::tcp_hello_from(&eps[0].0, e2_addr)
            .is_err()
            .then_some(())
            .ok_or("allowed")
    });
    policy(&["del", "default/api-from-web"]);
    wait_for(Duration::from_secs(30), "e1 allowed again", || {
        netkit_test_support::echo::tcp_hello_from(&eps[0].0, e2_addr).map(|_| ())
    });

    // Deleted: gone from every node's firewall.
    service(&cluster, &["del", "default/web"]);
    for n in &nodes {
        wait_for(Duration::from_secs(30), "the service gone", || {
            let s = services_status(n, &dir);
            (s["services"] == 0 && s["synced"] == true).then_some(()).ok_or(s)
        });
        let fw = NetNs::open(n.name()).unwrap();
        let options = netkit_core::firewall::FirewallOptions::default();
        let owners = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(netkit_core::firewall::recorded_owners(&fw, &options))
            .unwrap();
        assert!(
            !owners.iter().any(|o| o.starts_with("svc/")),
            "{}: {owners:?}",
            n.name()
        );
    }
    assert!(answers(&client, vip, 1).is_err(), "a deleted service answers no more");
    drop(agents);
}
