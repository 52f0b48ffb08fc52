//! The backends of the `iperf` phase, by name (`NETKIT_BENCH_BGP_BACKENDS`): how each sets up
//! its two nodes for the shared iperf phase (`common/iperf.rs`).
//!
//! * `host-gw`: the issue-15 bench's reference — Flannel's host-gw, pods on a bridge (`cni0`).
//! * `bgp`: the agent's bgp backend (BIRD in each node, full mesh of two, BGP's default hold
//!   time), pods attached in netkit-cni's `routed` mode (a /32 route per pod, as Calico has
//!   it), both nodes on one segment: BGP-learned routes, no encapsulation.
//!
//! * `bgp-vxlan`: the bgp backend with VXLAN crossSubnet, the two nodes on two segments joined
//!   by the cluster's router (`segments: [0, 1]`): their BGP session runs multihop through the
//!   router, and pod traffic is encapsulated.
//!
//! A new backend is one more arm of [`backend`] and its name in [`NAMES`].

use netkit_core::overlay::{BackendConfig, BgpBackendConfig, BgpEncap};
use netkit_test_support::overlay::ClusterNode;

use super::iperf::{IperfBackend, NodeBackend};

/// The names [`backend`] knows.
pub const NAMES: &[&str] = &["host-gw", "bgp", "bgp-vxlan"];

/// The backend called `name`, `None` for a name it does not know.
pub fn backend(name: &str) -> Option<IperfBackend> {
    let (config, segments, pod_mode): (NodeBackend, [u8; 2], &'static str) = match name {
        "host-gw" => (Box::new(|_| BackendConfig::HostGw), [0, 0], "bridge"),
        "bgp" => (
            Box::new(|n: &ClusterNode| {
                BackendConfig::Bgp(BgpBackendConfig {
                    dir: n.dir.join("bird"),
                    ..Default::default()
                })
            }),
            [0, 0],
            "routed",
        ),
        "bgp-vxlan" => (
            Box::new(|n: &ClusterNode| {
                BackendConfig::Bgp(BgpBackendConfig {
                    dir: n.dir.join("bird"),
                    encap: BgpEncap::Vxlan,
                    cross_subnet: true,
                    ..Default::default()
                })
            }),
            [0, 1],
            "routed",
        ),
        _ => return None,
    };
    Some(IperfBackend {
        name: name.to_string(),
        config,
        segments,
        pod_mode,
    })
}
