//! What a topology file declares, checked and normalized: nodes (namespaces), bridges, links,
//! and per node its addresses, routes, sysctls and commands.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// A lab: everything one topology file declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lab {
    /// The lab's name (`name:` in the file).
    pub name: String,
    /// How node namespaces are named: `<prefix>-<node>` (`clab-<lab>` for containerlab files,
    /// `<lab>` for netkit's own, or the file's `prefix:`).
    pub prefix: String,
    /// Nodes that become network namespaces, by node name.
    pub nodes: BTreeMap<String, Node>,
    /// Nodes of `kind: bridge`: bridges in the host namespace, by name.
    pub bridges: Vec<String>,
    /// The node of `kind: host`, if any: the lab's host namespace itself (`netkit -n HOST`),
    /// with the settings the file gives it (addresses, routes, sysctls, NAT).
    pub host: Option<(String, Node)>,
    /// Links, in file order.
    pub links: Vec<LinkDef>,
    /// Address pools (`pools: {pods: {subnet: 10.70.0.0/24}}`), by name.
    pub pools: BTreeMap<String, PoolDef>,
    /// Interfaces that take an address from a pool (`addresses: {eth0: [pool:pods]}`):
    /// `(node, interface, pool)`. [`crate::topo::resolve`] turns them into addresses.
    pub pool_addresses: Vec<(String, String, String)>,
    /// Warnings met while reading the file (settings netkit ignores), one line each.
    pub warnings: Vec<String>,
}

/// An address pool of a lab (netkit's IPAM: addresses handed out once per interface and kept
/// across applies, released by destroy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolDef {
    /// The subnet.
    pub subnet: IpNetwork,
    /// First address handed out (default: the subnet's second).
    pub start: Option<IpAddr>,
    /// Last address handed out (default: the subnet's last but one).
    pub end: Option<IpAddr>,
    /// The gateway, never handed out (default: the subnet's first address).
    pub gateway: Option<IpAddr>,
}

impl Lab {
    /// Is `node` on the host side (a bridge, or the `kind: host` node)? Link ends there are
    /// made in the host namespace.
    pub fn is_host_side(&self, node: &str) -> bool {
        self.bridges.iter().any(|b| b == node) || self.host.as_ref().is_some_and(|(h, _)| h == node)
    }

    /// The namespace of node `node`.
    pub fn netns_of(&self, node: &str) -> String {
        if self.prefix.is_empty() {
            node.to_string()
        } else {
            format!("{}-{node}", self.prefix)
        }
    }
}

/// A node that becomes a network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// Addresses per interface (`addresses: {eth1: [10.0.0.1/24]}`).
    pub addresses: BTreeMap<String, Vec<IpNetwork>>,
    /// Routes, in file order.
    pub routes: Vec<RouteDef>,
    /// Sysctls (`net.ipv4.ip_forward: 1`), set in the node's namespace.
    pub sysctls: BTreeMap<String, String>,
    /// Commands run inside the node (`sh -c`) after its links are up, when apply creates it.
    pub exec: Vec<String>,
    /// Masquerades and port mappings in the node's namespace.
    pub nat: Nat,
    /// VXLAN devices inside the node, by name.
    pub vxlan: BTreeMap<String, VxlanDef>,
    /// Bridges inside the node, by name, each with the node's interfaces that are its ports
    /// (link ends, VXLAN devices).
    pub bridges: BTreeMap<String, Vec<String>>,
    /// `(interface, pool)` while the file is read (moved to [`Lab::pool_addresses`]).
    pub(crate) pooled: Vec<(String, String)>,
}

/// A VXLAN device of a node (`vxlan: {vx0: {id: 42, remote: 192.0.2.2, dev: eth1}}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanDef {
    /// The VNI.
    pub id: u32,
    /// The remote VTEP (point to point), if any.
    pub remote: Option<IpAddr>,
    /// The local address, if any.
    pub local: Option<IpAddr>,
    /// The underlay device, if any.
    pub dev: Option<String>,
    /// UDP port (4789 when not given).
    pub dstport: u16,
}

/// NAT of a node (`nat: {masquerade: [10.70.0.0/24], ports: [{proto: tcp, port: 8080, to:
/// "10.70.0.2:80"}]}`), made with netkit's firewall in the node's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nat {
    /// Subnets whose traffic leaving the node is masqueraded.
    pub masquerade: Vec<IpNetwork>,
    /// Port mappings: connections to a port of the node go to an address behind it.
    pub ports: Vec<crate::firewall::PortMapping>,
}

impl Nat {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.masquerade.is_empty() && self.ports.is_empty()
    }

    /// As firewall rules.
    pub fn rules(&self) -> crate::firewall::Rules {
        crate::firewall::Rules {
            masquerades: self
                .masquerade
                .iter()
                .map(|n| crate::firewall::Masquerade::subnet(*n))
                .collect(),
            port_mappings: self.ports.clone(),
            ..Default::default()
        }
    }
}

/// One end of a link.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// The node (or bridge) name.
    pub node: String,
    /// The interface: inside the node's namespace, or, for a bridge, the name of the port in
    /// the host namespace.
    pub ifname: String,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.node, self.ifname)
    }
}

/// A veth pair between two endpoints (`endpoints: ["a:eth1", "b:eth1"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkDef {
    /// The two ends; at most one is a bridge (then it is `b`).
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// MTU of both ends, if given.
    pub mtu: Option<u32>,
}

/// A route of a node (`routes: [{dst: default, via: 10.0.0.254}]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDef {
    /// Destination (`default` is 0.0.0.0/0, or ::/0 with an IPv6 gateway).
    pub dst: IpNetwork,
    /// Gateway, if any.
    pub via: Option<IpAddr>,
    /// Output interface, if any.
    pub dev: Option<String>,
}

impl std::fmt::Display for RouteDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(v) = self.via {
            write!(f, " via {v}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        Ok(())
    }
}
