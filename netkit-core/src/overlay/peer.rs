//! Another node as the agent sees it: what its lease says.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::ipam::lease::Lease;
use crate::MacAddr;

/// The key of a VXLAN node's MAC in its lease's backend data (Flannel's name, so a lease
/// written by Flannel reads the same).
pub const VTEP_MAC_KEY: &str = "VtepMAC";

/// The key of a node's VTEP address in its lease's backend data, when the node holds several
/// blocks (the bgp backend with VXLAN): every block of the node is reached through the VTEP
/// on its first block. Without it the VTEP is the lease's own subnet's network address.
pub const VTEP_IP_KEY: &str = "VtepIP";

/// A remote node: its pod subnet, how to reach it and what its backend published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The node's name.
    pub node: String,
    /// The node's pod subnet.
    pub subnet: IpNetwork,
    /// The node's underlay address.
    pub public_ip: IpAddr,
    /// The backend the node runs (`vxlan`, `host-gw`, `udp`).
    pub backend: String,
    /// The node's VXLAN device MAC (`VtepMAC` in the backend data), when it published one.
    pub vtep_mac: Option<MacAddr>,
    /// The node's VTEP address (`VtepIP`), when it published one.
    pub vtep_addr: Option<IpAddr>,
    /// Which of the node's leases this is (0: its first; more with block affinity).
    pub slot: u32,
    /// Addresses of other nodes' blocks this node uses (borrowed, announced as /32s; from its
    /// first lease's `Borrow`, see [`super::borrow`]).
    pub borrowed: std::collections::BTreeSet<IpAddr>,
}

impl Peer {
    /// The peer a lease describes.
    pub fn from_lease(lease: &Lease) -> Self {
        let vtep_mac = lease
            .meta
            .backend_data
            .get(VTEP_MAC_KEY)
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok());
        let vtep_addr = lease
            .meta
            .backend_data
            .get(VTEP_IP_KEY)
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok());
        Self {
            node: lease.meta.node.clone(),
            subnet: lease.subnet,
            public_ip: lease.meta.public_ip,
            backend: lease.meta.backend_type.clone(),
            vtep_mac,
            vtep_addr,
            slot: lease.slot,
            borrowed: match lease.slot {
                0 => super::borrow::LeaseLoans::parse(&lease.meta.backend_data)
                    .borrow
                    .values()
                    .flat_map(|a| a.have.iter().copied())
                    .collect(),
                _ => Default::default(),
            },
        }
    }

    /// The peer's VXLAN endpoint address on the overlay: the published `VtepIP` of a node's
    /// later block, else its subnet's network address.
    pub fn vtep_ip(&self) -> IpAddr {
        match (self.slot, self.vtep_addr) {
            (1.., Some(a)) => a,
            _ => self.subnet.network(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::ipam::lease::NodeMeta;

    #[test]
    fn peer_of_a_flannel_lease() {
        let lease = Lease {
            subnet: "10.244.3.0/24".parse().unwrap(),
            meta: NodeMeta {
                node: "n3".into(),
                public_ip: "192.168.0.3".parse().unwrap(),
                backend_type: "vxlan".into(),
                backend_data: serde_json::json!({"VNI": 1, "VtepMAC": "02:aa:bb:cc:dd:ee"}),
            },
            slot: 0,
            ttl: Duration::from_secs(60),
            expires_at: SystemTime::now(),
        };
        let p = Peer::from_lease(&lease);
        assert_eq!(p.vtep_mac, Some("02:aa:bb:cc:dd:ee".parse().unwrap()));
        assert_eq!(p.vtep_ip(), "10.244.3.0".parse::<IpAddr>().unwrap());
        // A later block of a node points at the VTEP on its first block.
        let mut later = lease.clone();
        later.slot = 2;
        later.subnet = "10.244.9.0/24".parse().unwrap();
        later.meta.backend_data["VtepIP"] = "10.244.3.0".into();
        assert_eq!(
            Peer::from_lease(&later).vtep_ip(),
            "10.244.3.0".parse::<IpAddr>().unwrap()
        );
        // What the node borrowed, from its first lease only.
        let mut first = lease.clone();
        first.meta.backend_data["Borrow"] = serde_json::json!({"y": {"want": 1, "have": ["10.244.8.9"]}});
        assert_eq!(Peer::from_lease(&first).borrowed.len(), 1);
        later.meta.backend_data["Borrow"] = first.meta.backend_data["Borrow"].clone();
        assert!(Peer::from_lease(&later).borrowed.is_empty());
        let mut host_gw = lease;
        host_gw.meta.backend_data = serde_json::Value::Null;
        assert_eq!(Peer::from_lease(&host_gw).vtep_mac, None);
    }
}
