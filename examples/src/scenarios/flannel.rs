//! Scenario c: two "hosts" joined by an underlay veth, each with a bridge, a
//! "pod" behind it, and Flannel's VXLAN recipe between them.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv4Network};
use netkit_core::link::{Bridge, Veth};
use netkit_core::overlay::{VxlanOverlay, VxlanOverlayConfig, VxlanPeer};
use netkit_core::route::Route;
use netkit_core::{Handle, NetNsGuard};

use crate::Error;

/// One node: its namespace, its pod, its overlay and what peers need to know.
pub struct Node {
    /// The node ("host") namespace.
    pub host: NetNsGuard,
    /// The pod namespace behind the node's bridge.
    pub pod: NetNsGuard,
    /// The node's VXLAN overlay.
    pub overlay: VxlanOverlay,
    /// How other nodes see this one.
    pub as_peer: VxlanPeer,
    /// The pod's address.
    pub pod_ip: Ipv4Addr,
}

/// Two nodes on one underlay link.
pub struct FlannelLab {
    /// Node 1 (underlay 192.168.50.1, pods 10.244.1.0/24).
    pub n1: Node,
    /// Node 2 (underlay 192.168.50.2, pods 10.244.2.0/24).
    pub n2: Node,
}

impl FlannelLab {
    /// Program each node with the other (ARP, FDB, onlink route).
    pub async fn connect(&self) -> Result<(), Error> {
        self.n1.overlay.add_peer(&self.n2.as_peer).await?;
        self.n2.overlay.add_peer(&self.n1.as_peer).await?;
        Ok(())
    }
}

async fn node(prefix: &str, i: u8, underlay: &Handle, host: NetNsGuard) -> Result<Node, Error> {
    let h = underlay;
    let public_ip = Ipv4Addr::new(192, 168, 50, i);
    let subnet = Ipv4Network::new(Ipv4Addr::new(10, 244, i, 0), 24)?;
    let gw = Ipv4Addr::new(10, 244, i, 1);
    let pod_ip = Ipv4Addr::new(10, 244, i, 2);
    h.link_set_up("lo").await?;
    h.ip_forward(true).await?;
    h.addr_add("eth0", IpNetwork::new(IpAddr::V4(public_ip), 24)?).await?;
    // cni0 with the pod behind it.
    h.link_add(&Bridge::new("cni0").up()).await?;
    h.addr_add("cni0", IpNetwork::new(IpAddr::V4(gw), 24)?).await?;
    let pod = NetNsGuard::create(&format!("{prefix}-pod{i}"))?;
    let hp = pod.handle().await?;
    h.link_add(&Veth::new("vethpod", "eth0").peer_netns(&pod)).await?;
    h.link_set("vethpod").master("cni0").up().apply().await?;
    hp.link_set_up("lo").await?;
    hp.link_set_up("eth0").await?;
    hp.addr_add("eth0", IpNetwork::new(IpAddr::V4(pod_ip), 24)?).await?;
    hp.route_add(&Route::default_v4().gateway(IpAddr::V4(gw))).await?;
    // flannel.1: VNI 1, port 8472, learning off, MTU = 1500 - 50.
    let mut cfg = VxlanOverlayConfig::flannel(IpAddr::V4(public_ip), subnet);
    cfg.parent = Some("eth0".into());
    cfg.mtu = Some(1450);
    let overlay = VxlanOverlay::setup(h, cfg).await?;
    let as_peer = VxlanPeer {
        subnet,
        vtep_mac: overlay.vtep_mac(),
        public_ip: IpAddr::V4(public_ip),
    };
    Ok(Node {
        host,
        pod,
        overlay,
        as_peer,
        pod_ip,
    })
}

/// Build both nodes and the underlay; the overlay peers are not programmed
/// yet (call [`FlannelLab::connect`]).
pub async fn build(prefix: &str) -> Result<FlannelLab, Error> {
    let host1 = NetNsGuard::create(&format!("{prefix}-node1"))?;
    let host2 = NetNsGuard::create(&format!("{prefix}-node2"))?;
    let h1 = host1.handle().await?;
    let h2 = host2.handle().await?;
    // The underlay: eth0 in node1 <-> eth0 in node2.
    h1.link_add(&Veth::new("eth0", "eth0").peer_netns(&host2).up()).await?;
    h2.link_set_up("eth0").await?;
    let n1 = node(prefix, 1, &h1, host1).await?;
    let n2 = node(prefix, 2, &h2, host2).await?;
    Ok(FlannelLab { n1, n2 })
}
