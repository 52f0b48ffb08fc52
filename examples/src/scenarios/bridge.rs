//! Scenario b: "containers" on a bridge inside a "host" namespace.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use netkit_core::link::{Bridge, Veth};
use netkit_core::route::Route;
use netkit_core::NetNsGuard;

use crate::Error;

/// The host namespace with bridge `br0` (10.10.0.1/24) and the containers.
pub struct BridgeLab {
    /// The "host".
    pub host: NetNsGuard,
    /// Containers; container i has eth0 = 10.10.0.(i+2)/24.
    pub containers: Vec<NetNsGuard>,
}

impl BridgeLab {
    /// The bridge's address (the containers' gateway).
    pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);

    /// Address of container `i`.
    pub fn container_ip(i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 10, 0, 2 + i as u8))
    }
}

/// Build a host with a bridge and `n` containers attached by veth pairs.
pub async fn build(prefix: &str, n: usize) -> Result<BridgeLab, Error> {
    assert!(n <= 250, "one /24");
    let host = NetNsGuard::create(&format!("{prefix}-host"))?;
    let hh = host.handle().await?;
    hh.link_set_up("lo").await?;
    hh.link_add(&Bridge::new("br0").up()).await?;
    hh.addr_add("br0", IpNetwork::new(IpAddr::V4(BridgeLab::GATEWAY), 24)?)
        .await?;
    let mut containers = Vec::new();
    for i in 0..n {
        let c = NetNsGuard::create(&format!("{prefix}-c{i}"))?;
        let hc = c.handle().await?;
        let host_end = format!("veth{i}");
        hh.link_add(&Veth::new(&host_end, "eth0").peer_netns(&c)).await?;
        hh.link_set(&host_end).master("br0").up().apply().await?;
        hc.link_set_up("lo").await?;
        hc.link_set_up("eth0").await?;
        hc.addr_add("eth0", IpNetwork::new(BridgeLab::container_ip(i), 24)?)
            .await?;
        hc.route_add(&Route::default_v4().gateway(IpAddr::V4(BridgeLab::GATEWAY)))
            .await?;
        containers.push(c);
    }
    Ok(BridgeLab { host, containers })
}
