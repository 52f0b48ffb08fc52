//! What the overlay agent reports about itself: its lease, its peers and how each is reached,
//! what it has programmed, and the store's health. Published on a `tokio::sync::watch`
//! channel for an embedding program, and written as JSON to a file for `netkit agent status`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::backend::PeerMode;

/// The agent's state, as `netkit agent status --json` prints it (stable keys).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentStatus {
    /// This node's name.
    pub node: String,
    /// `starting`, `running` or `stopped`.
    pub state: String,
    /// The backend (`vxlan`, `host-gw`).
    pub backend: String,
    /// The underlay device.
    pub iface: String,
    /// This node's underlay address.
    pub public_ip: Option<IpAddr>,
    /// The MTU written for pods.
    pub mtu: u32,
    /// This node's lease, once it has one.
    pub lease: Option<LeaseStatus>,
    /// With block affinity: the node's blocks (the lease's first) and how full they are.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub blocks: Vec<BlockStatus>,
    /// With block affinity: why no more block could be claimed, while that lasts.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub block_error: Option<String>,
    /// With block affinity: single addresses borrowed from or lent to other nodes (see
    /// [`super::borrow`]).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub loans: Vec<LoanStatus>,
    /// Whether the last operation on the lease store worked.
    pub store_ok: bool,
    /// The store's last error, while it fails.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub store_error: Option<String>,
    /// The other nodes, by subnet.
    pub peers: Vec<PeerStatus>,
    /// Kernel entries (routes, neighbour and FDB entries) the agent keeps.
    pub entries: usize,
    /// Kernel changes made since the agent started (installs and removals).
    pub changes: u64,
    /// Full comparisons with the kernel made since the agent started.
    pub reconciles: u64,
    /// bgp: BIRD died and is not running again yet — why (the agent retries: 1 s, doubling, at
    /// most 30 s).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bird_error: Option<String>,
    /// BIRD's directory (bgp only): where [`AgentStatus::refresh_bgp`] asks BIRD.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bird_dir: Option<PathBuf>,
    /// BIRD's BGP sessions (bgp only), as `birdc show protocols` gave them when the status was
    /// made (asked every second until all are Established, then every 30 s and after every
    /// reload; [`AgentStatus::refresh_bgp`] asks again).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bgp: Option<Vec<BgpSessionStatus>>,
    /// The udp backend's data path counters (udp only), as of `updated_ms`: the status is
    /// made when something changes, not on a timer.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub udp: Option<UdpStatus>,
    /// When this status was made, in milliseconds since the Unix epoch.
    pub updated_ms: u64,
}

/// This node's lease.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LeaseStatus {
    /// The node's subnet.
    pub subnet: IpNetwork,
    /// When it ends unless renewed, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// One of the node's blocks (block affinity).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockStatus {
    /// The block.
    pub subnet: IpNetwork,
    /// Addresses of it held by pods.
    pub held: u64,
    /// Addresses of it pods can get.
    pub capacity: u64,
}

/// One address lent by one node to another.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoanStatus {
    /// The address.
    pub address: IpAddr,
    /// The node whose block it belongs to.
    pub lender: String,
    /// The node whose pod may use it.
    pub borrower: String,
}

/// One BGP session of the node's BIRD (as `calicoctl node status` shows them).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BgpSessionStatus {
    /// BIRD's protocol name (`peer_<node>`).
    pub name: String,
    /// The peer node.
    #[serde(default)]
    pub peer: String,
    /// The peer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// `mesh` (full mesh), `reflector` (the peer reflects routes to this node) or `client`
    /// (this node reflects routes to the peer).
    #[serde(default)]
    pub kind: String,
    /// BIRD's state (`up`, `start`).
    pub state: String,
    /// When the state last changed, as BIRD prints it.
    #[serde(default)]
    pub since: String,
    /// BGP's state (`Established`, `Active`, …).
    pub info: String,
}

/// The udp data path's counters since the agent started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UdpStatus {
    /// Packets read from the TUN device and sent to a peer.
    pub tx_packets: u64,
    /// Packets read from the TUN device for no known peer (dropped).
    pub tx_no_peer: u64,
    /// Datagrams from peers written to the TUN device.
    pub rx_packets: u64,
    /// Datagrams from addresses that are no peer's (dropped).
    pub rx_unknown: u64,
    /// System calls that moved packets.
    pub syscalls: u64,
    /// TCP super-packets from the TUN device cut into segments (TSO).
    #[serde(default)]
    pub tso_cut: u64,
    /// UDP super-packets from the TUN device cut into datagrams (USO).
    #[serde(default)]
    pub uso_cut: u64,
    /// Whether the TUN device takes UDP super-packets (USO, Linux 6.2+).
    #[serde(default)]
    pub uso: bool,
}

/// One other node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Its name.
    pub node: String,
    /// Its pod subnet.
    pub subnet: IpNetwork,
    /// Its underlay address.
    pub public_ip: IpAddr,
    /// How it is reached.
    pub mode: PeerMode,
    /// Why it is unreachable (mode `unreachable`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl AgentStatus {
    /// Read a status file the agent wrote.
    pub fn read(path: &Path) -> Result<Self, StatusError> {
        let text = std::fs::read_to_string(path).map_err(|cause| StatusError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        serde_json::from_str(&text).map_err(|e| StatusError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Ask the node's BIRD ([`AgentStatus::bird_dir`]) for its sessions now and update the
    /// state, since and info of [`AgentStatus::bgp`] (`netkit agent status` does, as
    /// `calicoctl node status` asks BIRD). Fails when BIRD does not answer; the recorded
    /// sessions stay then.
    pub fn refresh_bgp(&mut self) -> Result<(), super::bird::BirdError> {
        let (Some(dir), Some(recorded)) = (&self.bird_dir, &mut self.bgp) else {
            return Ok(());
        };
        let live = super::bird::BirdControl::new(self.node.clone(), dir).sessions()?;
        for r in recorded.iter_mut() {
            match live.iter().find(|l| l.name == r.name) {
                Some(l) => (r.state, r.since, r.info) = (l.state.clone(), l.since.clone(), l.info.clone()),
                None => (r.state, r.info) = ("gone".into(), "not configured in BIRD now".into()),
            }
        }
        Ok(())
    }

    /// Write the status file atomically (a temporary file renamed over it), 0644.
    pub(crate) fn write(&self, path: &Path) -> Result<(), StatusError> {
        let io = |cause| StatusError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| StatusError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        crate::fsutil::write_replacing(path, &(text + "\n")).map_err(io)
    }
}

/// A failure to read or write the status file.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The file could not be read or written.
    #[error("agent status {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The file is not an agent status.
    #[error("agent status {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
