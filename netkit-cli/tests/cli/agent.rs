//! `netkit agent`: one agent process per node of a simulated cluster (test-support's
//! `cluster`), each run inside its node's namespace with a lease directory they share; `netkit
//! agent status` read while they run; SIGTERM stops an agent cleanly and leaves its data path.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use netkit_core::NetNs;
use netkit_test_support::cluster::{Cluster, Node};
use netkit_test_support::{ip, ping, wait_for, KillOnDrop};
use serde_json::Value;

use crate::common::{fails, ok};

/// `netkit agent …` started inside `node`'s namespace, its files in `dir`.
fn start(node: &Node, dir: &Path, backend: &str) -> KillOnDrop {
    let ns = NetNs::open(node.name()).unwrap();
    let status = dir.join(format!("{}.json", node.name()));
    let subnet = dir.join(format!("{}.env", node.name()));
    let leases = format!("file={}", dir.join("leases").display());
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_netkit"));
    cmd.args([
        "agent",
        "--store",
        &leases,
        "--network",
        "10.244.0.0/16",
        "--backend",
        backend,
    ])
    .args(["--iface", "eth0", "--node", node.name(), "--watch-interval", "50ms"])
    .arg("--status-file")
    .arg(&status)
    .arg("--subnet-file")
    .arg(&subnet)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    KillOnDrop::new(cmd.spawn().expect("start netkit agent"))
}

/// `netkit -j agent status` of `node` once it shows `peers` reachable peers.
fn status(node: &Node, dir: &Path, peers: usize) -> Value {
    let file = dir.join(format!("{}.json", node.name()));
    let file = file.to_str().unwrap();
    wait_for(Duration::from_secs(20), "the agent's status to show its peers", || {
        if !Path::new(file).exists() {
            return Err(Value::Null);
        }
        let s: Value = serde_json::from_str(&ok(&["-j", "agent", "status", "--status-file", file])).unwrap();
        let reachable = s["peers"]
            .as_array()
            .map_or(0, |p| p.iter().filter(|p| p["mode"] != "unreachable").count());
        if s["state"] == "running" && reachable == peers {
            Ok(s)
        } else {
            Err(s)
        }
    })
}

#[test]
fn agents_join_nodes_and_stop_cleanly() {
    for backend in ["host-gw", "vxlan"] {
        let cluster = Cluster::new("cag", 1);
        let dir = cluster.dir();
        let nodes = [cluster.node("n1", 0, 1), cluster.node("n2", 0, 2)];
        let mut agents: Vec<KillOnDrop> = nodes.iter().map(|n| start(n, dir, backend)).collect();
        let s1 = status(&nodes[0], dir, 1);
        let s2 = status(&nodes[1], dir, 1);
        assert_eq!(s1["backend"], backend);
        let (sub1, sub2) = (
            s1["lease"]["subnet"].as_str().unwrap(),
            s2["lease"]["subnet"].as_str().unwrap(),
        );
        assert_ne!(sub1, sub2);
        assert_eq!(s1["peers"][0]["subnet"], sub2);
        let text = ok(&[
            "agent",
            "status",
            "--status-file",
            dir.join(format!("{}.json", nodes[0].name())).to_str().unwrap(),
        ]);
        assert!(text.contains(&format!("lease {sub1}")) && text.contains(sub2), "{text}");
        // Node 1 reaches node 2's subnet's gateway address once node 2 has one: give node 2
        // a bridge with it, as netkit-cni would.
        let gw2 = sub2.replace(".0/24", ".1");
        ip(&["-n", nodes[1].name(), "link", "add", "cni0", "type", "bridge"]);
        ip(&["-n", nodes[1].name(), "link", "set", "cni0", "up"]);
        ip(&[
            "-n",
            nodes[1].name(),
            "addr",
            "add",
            &format!("{gw2}/24"),
            "dev",
            "cni0",
        ]);
        assert!(
            ping(nodes[0].name(), &gw2),
            "{backend}: node 1 reaches node 2's pod subnet"
        );
        // SIGTERM: a clean exit, the route stays.
        let a1 = agents.remove(0).into_inner();
        let killed = Command::new("kill")
            .args(["-TERM", &a1.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let out = a1.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{backend}: agent exit {:?}: {log}", out.status);
        assert!(log.contains("stopped; the data path stays"), "{log}");
        assert!(log.contains(&format!("leased {sub1}")), "one line per change: {log}");
        let routes = ip(&["-n", nodes[0].name(), "route", "show", sub2]);
        assert!(!routes.trim().is_empty(), "{backend}: the route stays after SIGTERM");
        assert!(ping(nodes[0].name(), &gw2));
    }
}

#[test]
fn agent_usage_errors() {
    let e = fails(&["agent", "--network", "10.244.0.0/16"], 2);
    assert!(e.contains("--store"), "{e}");
    let e = fails(&["agent", "--store", "nfs=/x", "--network", "10.244.0.0/16"], 2);
    assert!(e.contains("etcd=URL"), "{e}");
    let e = fails(
        &[
            "agent",
            "--store",
            "file=/tmp/x",
            "--network",
            "10.244.0.0/16",
            "--ttl",
            "5y",
        ],
        2,
    );
    assert!(e.contains("5y"), "{e}");
    let base = ["agent", "--store", "file=/nonexistent/x", "--network", "10.244.0.0/16"];
    let e = fails(&[&base[..], &["--lb-bgp"]].concat(), 2);
    assert!(e.contains("add --services"), "{e}");
    let e = fails(&[&base[..], &["--services", "--lb-bgp"]].concat(), 2);
    assert!(e.contains("add --lb-pool"), "{e}");
    let e = fails(
        &[
            &base[..],
            &["--services", "--lb-iface", "a/b", "--lb-pool", "192.0.2.0/28"],
        ]
        .concat(),
        2,
    );
    assert!(e.contains("--lb-iface"), "{e}");
    let e = fails(
        &[
            &base[..],
            &[
                "--services",
                "--lb-bgp",
                "--lb-pool",
                "192.0.2.0/28",
                "--backend",
                "vxlan",
            ],
        ]
        .concat(),
        2,
    );
    assert!(e.contains("needs --backend bgp, not vxlan"), "{e}");
    let e = fails(&["agent", "status", "--status-file", "/nonexistent/agent.json"], 1);
    assert!(e.contains("agent.json"), "{e}");
}
