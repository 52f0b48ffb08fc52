//! A simulated cluster of BIRDs: `n` nodes on one segment of a test-support [`Cluster`], each
//! running the real BIRD 2 in its namespace ([`Bird`], own control socket in the lab's
//! directory) with a [`BirdConfig`] as the bgp backend makes it — one block of its own, iBGP
//! in AS 64512, connect retry 1 s, BGP's default hold time (90 s) — peering as a full mesh or
//! through route reflectors ([`Topology`]; the reflectors are the first nodes, as
//! `netkit-core/tests/overlay_bird.rs` sets them up).
//!
//! Dropping the lab kills the BIRDs first (field order), then deletes the namespaces.

use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use netkit_core::overlay::bird::{Bird, BirdConfig, BirdPeer, BIRDC};
use netkit_core::NetNs;
use netkit_test_support::cluster::{Cluster, Node};

use super::harness::{stopped, Res};

/// The cluster's AS (Calico's default).
pub const ASN: u32 = 64512;
/// `proto bird` in the kernel's route table (iproute2's rt_protos: 12).
pub const RTPROT_BIRD: u8 = 12;

/// Who peers with whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Every node with every other: n(n−1)/2 sessions.
    FullMesh,
    /// The first `r` nodes reflect: each peers with every other node (the other reflectors as
    /// plain iBGP peers, the rest as its route-reflector clients); the others peer with the
    /// reflectors only. r(n−r) + r(r−1)/2 sessions.
    Reflectors(usize),
}

impl Topology {
    /// Whether node `i` is a reflector.
    pub fn reflects(self, i: usize) -> bool {
        matches!(self, Topology::Reflectors(r) if i < r)
    }

    /// Whether nodes `i` and `j` peer.
    pub fn peers(self, i: usize, j: usize) -> bool {
        i != j && (self == Topology::FullMesh || self.reflects(i) || self.reflects(j))
    }

    /// The sessions the design has among `n` nodes, each counted once.
    pub fn sessions(self, n: usize) -> usize {
        match self {
            Topology::FullMesh => n * (n - 1) / 2,
            Topology::Reflectors(r) => r * (n - r) + r * (r.saturating_sub(1)) / 2,
        }
    }

    /// `full mesh`, `2 reflectors`.
    pub fn label(self) -> String {
        match self {
            Topology::FullMesh => "full mesh".into(),
            Topology::Reflectors(r) => format!("{r} reflector{}", if r == 1 { "" } else { "s" }),
        }
    }
}

/// Node `i`'s own first block: 10.250.(i+1).0/26.
pub fn home_block(i: usize) -> IpNetwork {
    format!("10.250.{}.0/26", i + 1).parse().expect("a valid block")
}

/// The `k`-th new block of a run (`base` tells runs apart): 10.`base`.(k/4).(64·(k%4))/26.
pub fn new_block(base: u8, k: usize) -> IpNetwork {
    format!("10.{base}.{}.{}/26", k / 4, 64 * (k % 4))
        .parse()
        .expect("a valid block")
}

/// The lab: BIRDs (killed first), their nodes, the cluster.
pub struct BirdLab {
    /// Node `i`'s BIRD.
    pub birds: Vec<Bird>,
    /// Node `i`'s configuration as BIRD has it now.
    pub configs: Vec<BirdConfig>,
    /// The nodes (namespaces).
    pub nodes: Vec<Node>,
    /// How they peer.
    pub topology: Topology,
    cluster: Cluster,
}

impl BirdLab {
    /// `n` nodes peering as `topology`, every BIRD started (not yet Established); the time it
    /// took to start them all.
    pub fn start(tag: &str, n: usize, topology: Topology) -> Res<(BirdLab, Duration)> {
        let cluster = Cluster::new(tag, 1);
        let nodes: Vec<Node> = (0..n)
            .map(|i| cluster.node(&format!("b{}", i + 1), 0, (i + 1) as u8))
            .collect();
        let configs: Vec<BirdConfig> = (0..n).map(|i| config(&nodes, topology, i)).collect();
        let t0 = Instant::now();
        let mut birds = Vec::new();
        for (i, (node, cfg)) in nodes.iter().zip(&configs).enumerate() {
            if stopped() {
                return Err("interrupted".into());
            }
            let ns = NetNs::open(node.name())?;
            birds.push(Bird::start(&ns, &cluster.dir().join(format!("bird{i}")), cfg)?);
        }
        let took = t0.elapsed();
        Ok((
            BirdLab {
                birds,
                configs,
                nodes,
                topology,
                cluster,
            },
            took,
        ))
    }

    /// BIRD's directory of node `i` (its control socket is `bird.ctl` there).
    pub fn dir(&self, i: usize) -> std::path::PathBuf {
        self.cluster.dir().join(format!("bird{i}"))
    }

    /// `birdc -s DIR/bird.ctl ARGS…` for node `i`'s BIRD (a process of its own, as the agent
    /// runs it): its output.
    pub fn birdc(&self, i: usize, args: &[&str]) -> Res<String> {
        let out = std::process::Command::new(BIRDC)
            .arg("-s")
            .arg(self.dir(i).join("bird.ctl"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "birdc {} on b{}: {}",
                args.join(" "),
                i + 1,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The number of peers node `i` has in the design.
    pub fn peers_of(&self, i: usize) -> usize {
        (0..self.nodes.len()).filter(|&j| self.topology.peers(i, j)).count()
    }

    /// Established sessions over all nodes, each seen from both ends (so twice each), polled
    /// every 50 ms until every node has all of its sessions Established or `within` passed.
    pub fn wait_established(&self, within: Duration) -> Res<usize> {
        let end = Instant::now() + within;
        loop {
            let mut up = 0;
            let mut all = true;
            for (i, b) in self.birds.iter().enumerate() {
                let s = b.sessions()?;
                let e = s.iter().filter(|x| x.established()).count();
                up += e;
                all &= e == self.peers_of(i);
            }
            if all || Instant::now() >= end || stopped() {
                return Ok(up);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Poll (every 50 ms, at most `within`) until every node has a `proto bird` kernel route
    /// to every other node's blocks; whether it came.
    pub fn wait_routes(&self, within: Duration) -> bool {
        let end = Instant::now() + within;
        loop {
            let done = self.nodes.iter().enumerate().all(|(i, n)| {
                let r = netkit_test_support::ip(&["-n", n.name(), "route", "show", "proto", "bird"]);
                self.configs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .flat_map(|(_, c)| &c.blocks)
                    .all(|b| r.lines().any(|l| l.starts_with(&format!("{b} via"))))
            });
            if done {
                return true;
            }
            if Instant::now() >= end || stopped() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Node `i`'s configuration: its home block, its peers by `topology`, named `n<j+1>`.
fn config(nodes: &[Node], topology: Topology, i: usize) -> BirdConfig {
    let mut c = BirdConfig::new(nodes[i].ip, ASN);
    // As the agent's bgp backend sets it.
    c.connect_retry = 1;
    c.blocks.push(home_block(i));
    for (j, m) in nodes.iter().enumerate() {
        if topology.peers(i, j) {
            c.peers.push(BirdPeer {
                name: format!("n{}", j + 1),
                ip: m.ip,
                asn: ASN,
                rr_client: topology.reflects(i) && !topology.reflects(j),
                multihop: false,
            });
        }
    }
    c
}
