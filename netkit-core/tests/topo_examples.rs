//! Every topology file in `examples/topologies` is applied (its host side in a namespace the
//! test makes, its lab name made unique), checked with real pings, re-applied (zero changes)
//! and destroyed.

use std::path::PathBuf;

use netkit_core::topo::{self, Format, Lab, TopoOptions};
use netkit_core::NetNs;
use netkit_test_support::{in_ns, tempdir, unique, TestNs};

fn example(file: &str) -> (String, Format) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/topologies")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (text, Format::of_path(&path))
}

/// Apply `file` under a unique lab name; returns the lab, its options and guards.
struct Applied {
    lab: Lab,
    opts: TopoOptions,
    _host: TestNs,
    _state: tempfile::TempDir,
}

impl Drop for Applied {
    fn drop(&mut self) {
        for n in self.lab.nodes.keys() {
            let _ = NetNs::delete(&self.lab.netns_of(n));
        }
    }
}

async fn apply(file: &str) -> Applied {
    let (text, format) = example(file);
    let name_line = text
        .lines()
        .find(|l| l.starts_with("name: "))
        .expect("a name line")
        .to_string();
    let text = text.replacen(&name_line, &format!("name: {}", unique("ex")), 1);
    let lab = topo::parse(&text, format).unwrap_or_else(|e| panic!("{file}: {e}"));
    let host = TestNs::new("eh").await;
    let state = tempdir("topo");
    let mut opts = TopoOptions::new(NetNs::clone(&host.ns));
    opts.state_dir = state.path().to_path_buf();
    let a = Applied {
        lab,
        opts,
        _host: host,
        _state: state,
    };
    topo::apply(&a.lab, &a.opts)
        .await
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let again = topo::apply(&a.lab, &a.opts).await.unwrap();
    assert_eq!(again.changes, Vec::<String>::new(), "{file}: re-apply changes nothing");
    a
}

/// The pings of the lab's matrix that failed, as `from->addr`.
fn unreachable(lab: &Lab) -> Vec<String> {
    topo::ping_matrix(lab)
        .unwrap()
        .into_iter()
        .filter(|p| !p.ok)
        .map(|p| format!("{}->{}", p.from, p.addr))
        .collect()
}

async fn destroy(a: &Applied) {
    topo::destroy(&a.lab, &a.opts).await.expect("destroy");
    let left = NetNs::list().unwrap();
    assert!(a.lab.nodes.keys().all(|n| !left.contains(&a.lab.netns_of(n))));
}

#[tokio::test]
async fn routers_in_a_line_reach_everything() {
    let a = apply("routers.yml").await;
    assert_eq!(unreachable(&a.lab), Vec::<String>::new());
    destroy(&a).await;
}

#[tokio::test]
async fn pods_behind_nat_reach_out_and_out_reaches_only_the_mapped_port() {
    let a = apply("pods-nat.yml").await;
    // `out` has no route to the pods: only NAT brings it in (the port mapping).
    let mut down = unreachable(&a.lab);
    down.sort();
    assert_eq!(down, ["out->10.70.0.2", "out->10.70.0.3"]);
    use netkit_test_support::echo::{tcp_hello_from, Server};
    let pod1 = NetNs::open(&a.lab.netns_of("pod1")).unwrap();
    let out = NetNs::open(&a.lab.netns_of("out")).unwrap();
    let _web = Server::tcp(&pod1, "POD1", "0.0.0.0:80".parse().unwrap());
    let hello = tcp_hello_from(&out, "192.0.2.1:8080".parse().unwrap()).expect("out -> host:8080 -> pod1");
    assert_eq!(
        (hello.name.as_str(), hello.peer.ip().to_string()),
        ("POD1", "192.0.2.2".into())
    );
    destroy(&a).await;
}

#[tokio::test]
async fn pods_of_two_nodes_share_a_segment_over_vxlan() {
    let a = apply("vxlan-overlay.yml").await;
    // Pods reach pods (over the overlay) and nodes reach nodes (over the underlay); the two
    // networks are separate, so nothing else answers.
    let mut down = unreachable(&a.lab);
    down.sort();
    assert_eq!(
        down,
        [
            "node1->10.244.0.2",
            "node1->10.244.0.3",
            "node2->10.244.0.2",
            "node2->10.244.0.3",
            "pa->192.168.50.1",
            "pa->192.168.50.2",
            "pb->192.168.50.1",
            "pb->192.168.50.2"
        ]
    );
    // The pods' traffic crosses the underlay inside VXLAN: node1 sees pb's MAC behind vx0.
    let fdb = in_ns(&a.lab.netns_of("node1"), &["bridge", "fdb", "show", "dev", "vx0"]);
    assert!(String::from_utf8_lossy(&fdb.stdout).contains("master cni0"), "{fdb:?}");
    destroy(&a).await;
}

#[tokio::test]
async fn a_containerlab_file_of_hosts_on_a_bridge() {
    let a = apply("hosts-bridge.clab.yml").await;
    assert!(a.lab.netns_of("client1").starts_with("clab-"));
    assert_eq!(
        a.lab.warnings,
        ["topology.kinds.linux.image: ignored (a container setting; netkit nodes are namespaces)"]
    );
    let ok = in_ns(
        &a.lab.netns_of("client1"),
        &["ping", "-c1", "-W2", "-q", "172.20.20.12"],
    );
    assert!(
        ok.status.success(),
        "client1 -> client2 through br-clab (addresses from exec)"
    );
    destroy(&a).await;
}

#[test]
fn every_example_reads_and_draws() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/topologies");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if !matches!(path.extension().and_then(|x| x.to_str()), Some("yml" | "yaml")) {
            continue;
        }
        let lab = topo::read_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(topo::graph::dot(&lab).contains("--"), "{}", path.display());
        assert!(topo::graph::mermaid(&lab).contains("---"), "{}", path.display());
        n += 1;
    }
    assert_eq!(n, 4, "the four example topologies");
}
