//! Overlay networks across nodes, built from the primitives.
//!
//! * [`VxlanOverlay`]: the VXLAN recipe Flannel and Calico use to join pod subnets across
//!   nodes (one device per node; per remote node an ARP entry, an FDB entry and a route).
//! * [`Agent`]: Flannel's node daemon as a library loop. It leases this node's subnet from a
//!   [`LeaseStore`](crate::ipam::lease::LeaseStore) (file or etcd), programs a backend
//!   ([`BackendConfig`]: vxlan, host-gw, udp) for every other node, repairs drift against the
//!   kernel, and writes the [`SubnetFile`](crate::ipam::SubnetFile) the CNI plugin reads.
//!   `netkit agent` runs it; other runtimes can embed it.
//! * [`bird`]: BGP through BIRD 2 (Calico's way of spreading pod routes): a node's
//!   configuration, the daemon in the node's namespace, reloads and session states.
//! * [`blocks`]: Calico's block affinity — the agent claims blocks as pods fill them and
//!   gives empty ones back; [`borrow`]: single addresses borrowed from other nodes' blocks
//!   when the pool has no block left.

pub mod agent;
pub mod backend;
pub mod bird;
pub mod blocks;
pub mod borrow;
pub mod offload;
mod peer;
mod program;
pub mod status;
pub mod udp;
mod vxlan;

pub use agent::{Agent, AgentConfig, AgentError};
pub use backend::{BackendConfig, BgpBackendConfig, BgpEncap, PeerMode, UdpBackendConfig, VxlanBackendConfig};
pub use blocks::BlockPolicy;
pub use peer::{Peer, VTEP_IP_KEY, VTEP_MAC_KEY};
pub use program::PROTO_OVERLAY;
pub use status::{
    AgentStatus, BgpSessionStatus, BlockStatus, LeaseStatus, LoanStatus, PeerStatus, StatusError, UdpStatus,
};
pub use vxlan::{OverlayError, VxlanOverlay, VxlanOverlayConfig, VxlanPeer};
