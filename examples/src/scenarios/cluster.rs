//! Scenario d: a simulated cluster running the overlay agent, as `cargo run --example cluster`
//! shows it. The underlay is test-support's [`Cluster`] (a lab namespace whose bridge is the
//! nodes' L2 segment, 192.168.50.0/24); every node is a namespace with `eth0` on it and its own
//! [`netkit_core::overlay::Agent`] in this process (on a thread inside the node's namespace),
//! all sharing a file lease store in the lab's temporary directory; pods are namespaces
//! attached by netkit's attach code (what netkit-cni runs) inside their node, addressed from
//! the subnet file the node's agent wrote. Dropping the lab stops the agents and deletes every
//! namespace and file.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use netkit_core::overlay::{AgentStatus, BackendConfig, PeerMode};
use netkit_core::NetNsGuard;
use netkit_test_support::cluster::Cluster;
use netkit_test_support::overlay::{wait_peers, AgentTask, ClusterNode};

use crate::probe::ping_retry;
use crate::Error;

/// The lease TTL of the lab's agents (renewed at a third of it).
pub const TTL: Duration = Duration::from_secs(60);

/// One pod: its namespace, address and node.
pub struct Pod {
    /// The pod's namespace.
    pub ns: NetNsGuard,
    /// Its address (from its node's subnet).
    pub ip: Ipv4Addr,
    /// The index of its node in [`ClusterLab::nodes`].
    pub node: usize,
    /// A short name: `n<node>p<k>`.
    pub name: String,
}

/// The running cluster. Fields drop in order: pods, agents, nodes, then the lab.
pub struct ClusterLab {
    /// The pods, node by node.
    pub pods: Vec<Pod>,
    /// The agents, one per node (same order as `nodes`).
    pub agents: Vec<AgentTask>,
    /// The nodes `n1`, `n2`, … (underlay 192.168.50.1, .2, …).
    pub nodes: Vec<ClusterNode>,
    /// How long the agents took to converge: from the first agent's start until every agent
    /// had programmed every other node.
    pub converged_in: Duration,
    cluster: Cluster,
}

/// Build a cluster (namespaces named after a unique prefix made from `tag`) of `nodes` nodes
/// (1..=200) running `backend`, with `pods` pods on each;
/// returns once every agent has programmed every other node (or fails when one has not within
/// 20 s).
pub async fn build(tag: &str, backend: BackendConfig, nodes: usize, pods: usize) -> Result<ClusterLab, Error> {
    if !(1..=200).contains(&nodes) {
        return Err(format!("{nodes} nodes: 1 to 200").into());
    }
    let cluster = Cluster::new(tag, 1);
    let store = cluster.dir().join("leases");
    let nodes: Vec<ClusterNode> = (1..=nodes)
        .map(|i| ClusterNode::new(&cluster, &format!("n{i}"), 0, i as u8))
        .collect();
    let started = Instant::now();
    let mut agents = Vec::new();
    for n in &nodes {
        agents.push(n.start_file(&store, backend.clone(), TTL).await);
    }
    for a in &agents {
        wait_peers(a, nodes.len() - 1).await;
    }
    let converged_in = started.elapsed();
    let mut all = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..pods {
            let name = format!("n{}p{k}", i + 1);
            let (ns, ip) = n.pod(&cluster, &name).await;
            all.push(Pod { ns, ip, node: i, name });
        }
    }
    Ok(ClusterLab {
        pods: all,
        agents,
        nodes,
        converged_in,
        cluster,
    })
}

impl ClusterLab {
    /// The lab (underlay) namespace's name.
    pub fn lab_name(&self) -> &str {
        self.cluster.lab().name()
    }

    /// Ping from every pod to every other pod (up to 3 tries of 1 s; one thread per source
    /// pod): `matrix[i][j]` says whether pod `i` reached pod `j` (`true` on the diagonal).
    pub fn matrix(&self) -> Vec<Vec<bool>> {
        std::thread::scope(|s| {
            let rows: Vec<_> = self
                .pods
                .iter()
                .enumerate()
                .map(|(i, from)| {
                    s.spawn(move || {
                        self.pods
                            .iter()
                            .enumerate()
                            .map(|(j, to)| i == j || ping_retry(&from.ns, IpAddr::V4(to.ip), 3))
                            .collect::<Vec<bool>>()
                    })
                })
                .collect();
            rows.into_iter().map(|r| r.join().unwrap_or_default()).collect()
        })
    }

    /// The reachability matrix as text: one row per source pod, `✓` reached, `✗` not, `·` itself.
    pub fn render(&self, matrix: &[Vec<bool>]) -> String {
        let label = |p: &Pod| format!("{} {}", p.name, p.ip);
        let width = self.pods.iter().map(|p| label(p).len()).max().unwrap_or(0);
        let mut out = format!("{:width$}  ", "from \\ to");
        for j in 0..self.pods.len() {
            let _ = write!(out, "{:>3}", j + 1);
        }
        out.push('\n');
        for (i, p) in self.pods.iter().enumerate() {
            let _ = write!(out, "{:width$}  ", format!("{:>2} {}", i + 1, label(p)));
            for j in 0..self.pods.len() {
                let mark = match matrix.get(i).and_then(|r| r.get(j)) {
                    _ if i == j => "·",
                    Some(true) => "✓",
                    _ => "✗",
                };
                let _ = write!(out, "{mark:>3}");
            }
            out.push('\n');
        }
        out
    }

    /// One line per agent: its lease, backend, peers (how each is reached) and what it keeps in
    /// the kernel.
    pub fn statuses(&self) -> String {
        let mut out = String::new();
        for (n, a) in self.nodes.iter().zip(&self.agents) {
            let _ = writeln!(out, "{}", summary(&short(n.name()), &a.now()));
        }
        out
    }
}

/// A node's short name (`n1`): its namespace name without the lab's unique prefix.
fn short(node: &str) -> String {
    node.rsplit('-').next().unwrap_or(node).to_string()
}

/// A status in one line.
fn summary(name: &str, s: &AgentStatus) -> String {
    let lease = s
        .lease
        .as_ref()
        .map_or_else(|| "no lease".to_string(), |l| l.subnet.to_string());
    let peers: Vec<String> = s
        .peers
        .iter()
        .map(|p| {
            let how = match (&p.mode, &p.error) {
                (_, Some(e)) => format!("unreachable: {e}"),
                (PeerMode::Vxlan, None) => "vxlan".into(),
                (PeerMode::Direct, None) => "route".into(),
                (PeerMode::Udp, None) => "udp".into(),
                (PeerMode::Bgp, None) => "bgp".into(),
                (PeerMode::Ipip, None) => "ipip".into(),
                (PeerMode::Unreachable, None) => "unreachable".into(),
            };
            format!("{} {} ({how})", short(&p.node), p.subnet)
        })
        .collect();
    format!(
        "{name} [{}] {lease} via {} {} (MTU {}), {} backend; peers: {}; {} entries, {} changes, {} reconciles{}",
        s.state,
        s.iface,
        s.public_ip.map(|i| i.to_string()).unwrap_or_default(),
        s.mtu,
        s.backend,
        if peers.is_empty() {
            "none".into()
        } else {
            peers.join(", ")
        },
        s.entries,
        s.changes,
        s.reconciles,
        if s.store_ok { "" } else { "; STORE FAILING" }
    )
}
