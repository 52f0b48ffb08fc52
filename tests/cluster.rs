//! Pods across nodes, end to end, as a cluster runs them: a real etcd (Debian's etcd-server)
//! inside the lab namespace on the underlay, one `netkit agent` process per node running inside
//! the node's namespace with `--store etcd=…`, and pods attached by the real `netkit-cni`
//! binary (the CNI protocol: environment and stdin) inside their node's namespace, reading the
//! agent's subnet file. Real packets; each backend (vxlan, host-gw, udp).
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
    let ns = NetNs::open(node.name()).unwrap();
    let mut cmd = ns.command(NETKIT);
    cmd.args(["agent", "--store", &format!("etcd=http://{STORE_IP}:2379")])
        .args(["--network", "10.244.0.0/16", "--backend", backend, "--iface", "eth0"])
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
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "podnet",
        "type": "netkit-cni",
        "bridge": "cni0",
        "isDefaultGateway": true,
        "ipam": {
            "type": "netkit-ipam",
            "dataDir": dir.join(format!("{}-ipam", node.name())),
            "subnetFile": dir.join(format!("{}.env", node.name())),
        }
    });
    let ns = NetNs::open(node.name()).unwrap();
    let mut child = ns
        .command(NETKIT_CNI)
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
    r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
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
