//! What a firewall holds, independent of the driver: port mappings, masquerades, container
//! networks, isolation between networks, and services. Every value validates itself.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::FirewallError;

/// The most ports one mapping may cover (a range maps port by port).
pub const MAX_PORT_RANGE: u16 = 1024;

/// Transport protocols that port mappings and services accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// The lower-case name nft and iptables use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = FirewallError;
    fn from_str(s: &str) -> Result<Self, FirewallError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(FirewallError::invalid(format!(
                "unknown protocol {s:?} (tcp, udp or sctp)"
            ))),
        }
    }
}

/// [`Protocol`] as Kubernetes writes it (`TCP`, `UDP`, `SCTP`), read in any case: for
/// `#[serde(with = "…")]` on the fields of objects in Kubernetes' shape (services, policies).
pub(crate) mod kubernetes_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Protocol;

    pub fn serialize<S: Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.as_str().to_ascii_uppercase())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn check_port(what: &str, port: u16) -> Result<(), FirewallError> {
    if port == 0 {
        return Err(FirewallError::invalid(format!("{what} 0 is not a port")));
    }
    Ok(())
}

fn check_unicast(what: &str, ip: IpAddr) -> Result<(), FirewallError> {
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() || ip == IpAddr::from([255, 255, 255, 255]) {
        return Err(FirewallError::invalid(format!(
            "{what} {ip} is not a unicast host address"
        )));
    }
    Ok(())
}

/// `hostPort` (or a range of host ports) on the host's addresses, forwarded to
/// `containerIP:containerPort` — Docker's `-p`, CNI's `portMappings`.
///
/// Reachable from outside the host, from containers on the host (hairpin: register their
/// [`Network`]) and from the host itself, 127.0.0.1 included (IPv4; register the [`Network`]).
///
/// ```
/// use netkit_core::firewall::{PortMapping, Protocol};
/// let web = PortMapping::new(Protocol::Tcp, 8080, "10.88.0.5".parse()?, 80);
/// let dns = PortMapping::new(Protocol::Udp, 5353, "10.88.0.6".parse()?, 53).host_ip("192.0.2.10".parse()?);
/// let range = PortMapping::new(Protocol::Tcp, 9000, "10.88.0.7".parse()?, 9000).range_end(9009); // 10 ports
/// # for m in [web, dns, range] { m.validate()?; }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// Protocol.
    pub protocol: Protocol,
    /// Only connections to this host address (`None`: every local address).
    pub host_ip: Option<IpAddr>,
    /// First host port.
    pub host_port: u16,
    /// Last host port of a range (equal to `host_port` for one port).
    pub host_port_end: u16,
    /// The container's address.
    pub container_ip: IpAddr,
    /// The container port `host_port` maps to; a range maps port by port.
    pub container_port: u16,
}

impl PortMapping {
    /// One port.
    pub fn new(protocol: Protocol, host_port: u16, container_ip: IpAddr, container_port: u16) -> Self {
        Self {
            protocol,
            host_ip: None,
            host_port,
            host_port_end: host_port,
            container_ip,
            container_port,
        }
    }

    /// Only on this host address (`0.0.0.0` / `::` mean every address).
    pub fn host_ip(mut self, ip: IpAddr) -> Self {
        self.host_ip = (!ip.is_unspecified()).then_some(ip);
        self
    }

    /// Map `host_port..=end` to `container_port..`.
    pub fn range_end(mut self, end: u16) -> Self {
        self.host_port_end = end;
        self
    }

    /// Number of ports covered.
    pub fn len(&self) -> u16 {
        self.host_port_end.saturating_sub(self.host_port) + 1
    }

    /// Never empty: a mapping covers at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True for an IPv4 mapping.
    pub fn is_ipv4(&self) -> bool {
        self.container_ip.is_ipv4()
    }

    /// Every `(host port, container port)` pair.
    pub fn ports(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (0..self.len()).map(|i| (self.host_port + i, self.container_port + i))
    }

    /// Check ports (1–65535, ranges of at most [`MAX_PORT_RANGE`] that fit), addresses (unicast,
    /// one family).
    pub fn validate(&self) -> Result<(), FirewallError> {
        check_port("host port", self.host_port)?;
        check_port("host port range end", self.host_port_end)?;
        check_port("container port", self.container_port)?;
        if self.host_port_end < self.host_port {
            return Err(FirewallError::invalid(format!(
                "host port range {}-{} ends before it starts",
                self.host_port, self.host_port_end
            )));
        }
        if self.len() > MAX_PORT_RANGE {
            return Err(FirewallError::invalid(format!(
                "host port range {}-{} covers more than {MAX_PORT_RANGE} ports",
                self.host_port, self.host_port_end
            )));
        }
        if u32::from(self.container_port) + u32::from(self.len()) - 1 > 65535 {
            return Err(FirewallError::invalid(format!(
                "container ports {}+{} run past 65535",
                self.container_port,
                self.len() - 1
            )));
        }
        check_unicast("container address", self.container_ip)?;
        if let Some(h) = self.host_ip {
            if h.is_ipv4() != self.container_ip.is_ipv4() {
                return Err(FirewallError::invalid(format!(
                    "host address {h} and container address {} are of different families",
                    self.container_ip
                )));
            }
            if h.is_multicast() {
                return Err(FirewallError::invalid(format!("host address {h} is multicast")));
            }
        }
        Ok(())
    }

    /// True when both would catch the same packet: same protocol and family, overlapping host
    /// ports, and host addresses that are equal or at least one unset.
    pub fn overlaps(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.is_ipv4() == other.is_ipv4()
            && self.host_port <= other.host_port_end
            && other.host_port <= self.host_port_end
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host_ip.map(|h| h.to_string()).unwrap_or_else(|| "*".into());
        write!(f, "{}/{host}:{}", self.protocol, self.host_port)?;
        if self.host_port_end != self.host_port {
            write!(f, "-{}", self.host_port_end)?;
        }
        write!(f, " -> {}:{}", self.container_ip, self.container_port)
    }
}

/// Masquerade (SNAT to the outgoing interface's address, fully random ports) traffic from
/// `source` to every destination outside `network` — CNI's `ipMasq`.
///
/// ```
/// use netkit_core::firewall::Masquerade;
/// let pod = Masquerade::address("10.88.0.5".parse()?, "10.88.0.0/16".parse()?);   // one container
/// let all = Masquerade::subnet("10.88.0.0/16".parse()?);                           // a whole network
/// # pod.validate()?; all.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Masquerade {
    /// The address or subnet whose traffic is masqueraded.
    pub source: IpNetwork,
    /// Destinations inside this network keep the source address (traffic within the network).
    pub network: IpNetwork,
}

impl Masquerade {
    /// One container's address; traffic to its own network is left alone.
    pub fn address(ip: IpAddr, network: IpNetwork) -> Self {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Self {
            source: IpNetwork::new(ip, prefix).expect("full-length prefix"),
            network,
        }
    }

    /// A whole subnet; traffic within it is left alone. Host bits are cleared
    /// (`10.88.0.7/16` means `10.88.0.0/16`).
    pub fn subnet(subnet: IpNetwork) -> Self {
        let subnet = IpNetwork::new(subnet.network(), subnet.prefix()).expect("same prefix");
        Self {
            source: subnet,
            network: subnet,
        }
    }

    /// The source must lie inside the network, both of one family.
    pub fn validate(&self) -> Result<(), FirewallError> {
        if self.source.is_ipv4() != self.network.is_ipv4() {
            return Err(FirewallError::invalid(format!(
                "masquerade source {} and network {} are of different families",
                self.source, self.network
            )));
        }
        if !self.network.contains(self.source.network()) || self.source.prefix() < self.network.prefix() {
            return Err(FirewallError::invalid(format!(
                "masquerade source {} is not inside network {}",
                self.source, self.network
            )));
        }
        Ok(())
    }
}

/// A container network on the host: `subnet` behind `interface` (a bridge, usually).
///
/// Registering it makes DNATed traffic that leaves through `interface` towards its own subnet
/// masqueraded (hairpin: one container reaching another through a host port). When the same
/// owner also maps a host port on 127.0.0.1 (no host address, or a loopback one) to an IPv4
/// address of the subnet, `route_localnet` is turned on for `interface` so the mapping answers
/// on 127.0.0.1 — only then, and only while the firewall's rule that drops other traffic to
/// 127.0.0.0/8 from outside `lo` is in place (it goes off again with the last such mapping).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Network {
    /// The host-side interface the subnet lives behind.
    pub interface: String,
    /// The subnet.
    pub subnet: IpNetwork,
}

impl Network {
    /// A network.
    pub fn new(interface: &str, subnet: IpNetwork) -> Self {
        Self {
            interface: interface.to_string(),
            subnet,
        }
    }

    /// The interface name must be a valid device name.
    pub fn validate(&self) -> Result<(), FirewallError> {
        check_ifname(&self.interface)
    }
}

/// No forwarding between two interfaces (either direction); each keeps its other traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Isolation {
    /// One interface (bridge).
    pub a: String,
    /// The other.
    pub b: String,
}

impl Isolation {
    /// Isolate `a` from `b`.
    pub fn new(a: &str, b: &str) -> Self {
        Self {
            a: a.to_string(),
            b: b.to_string(),
        }
    }

    /// Two valid, different interface names.
    pub fn validate(&self) -> Result<(), FirewallError> {
        check_ifname(&self.a)?;
        check_ifname(&self.b)?;
        if self.a == self.b {
            return Err(FirewallError::invalid(format!("cannot isolate {} from itself", self.a)));
        }
        Ok(())
    }
}

fn check_ifname(name: &str) -> Result<(), FirewallError> {
    crate::ifname::check(name).map_err(|e| FirewallError::invalid(e.to_string()))
}

/// One backend of a service.
///
/// Two endpoints are the same backend when address and port agree (see
/// [`Endpoint::same_backend`]); `local` is a property of that backend, not part of its
/// identity: a service may not list one address and port twice, and
/// [`Firewall::add_endpoint`](super::Firewall::add_endpoint) with another `local` replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    /// Address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
    /// The endpoint runs on this node: the only kind a service with
    /// [`TrafficPolicy::Local`] sends node-port and external-IP connections to. Default `false`
    /// (state files written before the field existed load with `false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
}

impl Endpoint {
    /// An endpoint (not [`local`](Self::local)).
    pub fn new(ip: IpAddr, port: u16) -> Self {
        Self { ip, port, local: false }
    }

    /// Mark it as running on this node (or not).
    pub fn local(mut self, on: bool) -> Self {
        self.local = on;
        self
    }

    /// True when both name the same backend: the same address and port, whatever `local` says.
    pub fn same_backend(&self, other: &Endpoint) -> bool {
        (self.ip, self.port) == (other.ip, other.port)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// Where a service sends connections that reach it from outside the cluster network: at its
/// node port or at one of its external IPs (Kubernetes' `externalTrafficPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficPolicy {
    /// To any endpoint, masqueraded (to the address of the interface towards the endpoint), so
    /// that replies come back through this node even from an endpoint on another node.
    Cluster,
    /// Only to [`local`](Endpoint::local) endpoints, with the client's own source address.
    /// A service that has endpoints but none local drops these connections (as kube-proxy
    /// does); its ClusterIP still reaches every endpoint.
    Local,
}

impl TrafficPolicy {
    /// "cluster" or "local".
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficPolicy::Cluster => "cluster",
            TrafficPolicy::Local => "local",
        }
    }
}

impl fmt::Display for TrafficPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrafficPolicy {
    type Err = FirewallError;
    fn from_str(s: &str) -> Result<Self, FirewallError> {
        match s.to_ascii_lowercase().as_str() {
            "cluster" => Ok(TrafficPolicy::Cluster),
            "local" => Ok(TrafficPolicy::Local),
            _ => Err(FirewallError::invalid(format!(
                "unknown traffic policy {s:?} (cluster or local)"
            ))),
        }
    }
}

/// A virtual `vip:port` spread over endpoints with equal probability (a Kubernetes ClusterIP),
/// optionally also on every local address at `node_port` (NodePort) and at `external_ips`
/// (LoadBalancer addresses, `externalIPs`), optionally sticky per client address for
/// `affinity`.
///
/// Node-port and external-IP connections follow `external_policy` (Kubernetes'
/// `externalTrafficPolicy`):
///
/// * `None` (the default): as ClusterIP connections (every endpoint; masqueraded only with
///   `masquerade`).
/// * [`TrafficPolicy::Cluster`]: every endpoint, always masqueraded.
/// * [`TrafficPolicy::Local`]: [`local`](Endpoint::local) endpoints only, source kept; none
///   local (but some elsewhere): dropped.
///
/// A service without endpoints rejects new connections to its address, node port and external
/// IPs (TCP reset, ICMP port unreachable for UDP and SCTP), from containers, from outside and
/// from the host itself.
///
/// ```
/// use netkit_core::firewall::{Endpoint, Protocol, Service, TrafficPolicy};
/// let svc = Service::new("default/web", Protocol::Tcp, "10.96.0.10".parse()?, 80)
///     .node_port(30080)
///     .external_ip("192.0.2.80".parse()?)
///     .external_policy(TrafficPolicy::Local)
///     .endpoint(Endpoint::new("10.88.0.5".parse()?, 8080).local(true))
///     .endpoint(Endpoint::new("10.77.0.6".parse()?, 8080));
/// # svc.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Unique name (`namespace/name` in Kubernetes terms): letters, digits, `_ . - /`, ≤ 100.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The virtual address.
    pub vip: IpAddr,
    /// The virtual port.
    pub port: u16,
    /// Also answer on every local address at this port.
    pub node_port: Option<u16>,
    /// Client-IP session affinity: a client keeps its endpoint for this long after its last
    /// new connection.
    pub affinity: Option<Duration>,
    /// Masquerade connections to the endpoints (needed when a client may sit on an endpoint's
    /// own network, or when endpoints live on other nodes). Node-port and external-IP
    /// connections of a service with [`TrafficPolicy::Local`] keep their source all the same.
    pub masquerade: bool,
    /// The endpoints; an empty service rejects connections.
    pub endpoints: Vec<Endpoint>,
    /// How node-port and external-IP connections are handled (`None`: as ClusterIP ones).
    /// A policy without node port or external IP changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_policy: Option<TrafficPolicy>,
    /// More addresses the service answers on at `port` (LoadBalancer addresses, Kubernetes'
    /// `externalIPs`): connections to them are handled like node-port ones. Unicast, of the
    /// family of `vip`. Traffic to them must be routed to this node (or they are its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<IpAddr>,
}

impl Service {
    /// A service with no endpoints yet.
    pub fn new(name: &str, protocol: Protocol, vip: IpAddr, port: u16) -> Self {
        Self {
            name: name.to_string(),
            protocol,
            vip,
            port,
            node_port: None,
            affinity: None,
            masquerade: false,
            endpoints: Vec::new(),
            external_policy: None,
            external_ips: Vec::new(),
        }
    }

    /// Also expose it on every local address at `port`.
    pub fn node_port(mut self, port: u16) -> Self {
        self.node_port = Some(port);
        self
    }

    /// Client-IP session affinity.
    pub fn affinity(mut self, timeout: Duration) -> Self {
        self.affinity = Some(timeout);
        self
    }

    /// Masquerade connections to endpoints.
    pub fn masquerade(mut self, on: bool) -> Self {
        self.masquerade = on;
        self
    }

    /// Add an endpoint.
    pub fn endpoint(mut self, ep: Endpoint) -> Self {
        self.endpoints.push(ep);
        self
    }

    /// Handle node-port and external-IP connections by `policy`.
    pub fn external_policy(mut self, policy: TrafficPolicy) -> Self {
        self.external_policy = Some(policy);
        self
    }

    /// Also answer on `ip` at the service port (handled like the node port).
    pub fn external_ip(mut self, ip: IpAddr) -> Self {
        self.external_ips.push(ip);
        self
    }

    /// The endpoints node-port and external-IP connections may go to, by index into
    /// `endpoints`: the local ones with [`TrafficPolicy::Local`], every one otherwise.
    pub fn external_endpoints(&self) -> Vec<usize> {
        (0..self.endpoints.len())
            .filter(|&i| self.external_policy != Some(TrafficPolicy::Local) || self.endpoints[i].local)
            .collect()
    }

    /// Check name, ports, addresses (one family; external IPs unicast, not the VIP, listed
    /// once), no endpoint address and port listed twice, affinity 1 s – 1 day.
    pub fn validate(&self) -> Result<(), FirewallError> {
        if self.name.is_empty()
            || self.name.len() > 100
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
        {
            return Err(FirewallError::invalid(format!(
                "service name {:?}: 1-100 of letters, digits, '_', '.', '-', '/'",
                self.name
            )));
        }
        check_port("service port", self.port)?;
        if let Some(p) = self.node_port {
            check_port("node port", p)?;
        }
        check_unicast("service address", self.vip)?;
        for (i, ep) in self.endpoints.iter().enumerate() {
            check_port("endpoint port", ep.port)?;
            check_unicast("endpoint address", ep.ip)?;
            if ep.ip.is_ipv4() != self.vip.is_ipv4() {
                return Err(FirewallError::invalid(format!(
                    "endpoint {ep} and service address {} are of different families",
                    self.vip
                )));
            }
            if self.endpoints[..i].iter().any(|e| e.same_backend(ep)) {
                return Err(FirewallError::invalid(format!("endpoint {ep} is listed twice")));
            }
        }
        for (i, ip) in self.external_ips.iter().enumerate() {
            check_unicast("external address", *ip)?;
            if ip.is_ipv4() != self.vip.is_ipv4() {
                return Err(FirewallError::invalid(format!(
                    "external address {ip} and service address {} are of different families",
                    self.vip
                )));
            }
            if *ip == self.vip {
                return Err(FirewallError::invalid(format!(
                    "external address {ip} is the service address"
                )));
            }
            if self.external_ips[..i].contains(ip) {
                return Err(FirewallError::invalid(format!("external address {ip} is listed twice")));
            }
        }
        if let Some(t) = self.affinity {
            if t < Duration::from_secs(1) || t > Duration::from_secs(86400) {
                return Err(FirewallError::invalid("affinity timeout must be between 1 s and 1 day"));
            }
        }
        Ok(())
    }
}

/// Everything one owner holds. Adding and removing works object by object; an owner's objects
/// are removed together by `teardown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// Port mappings.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Masquerades.
    #[serde(default)]
    pub masquerades: Vec<Masquerade>,
    /// Container networks (hairpin, localhost port mappings).
    #[serde(default)]
    pub networks: Vec<Network>,
    /// Isolated interface pairs.
    #[serde(default)]
    pub isolations: Vec<Isolation>,
    /// Services.
    #[serde(default)]
    pub services: Vec<Service>,
}

impl Rules {
    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.port_mappings.is_empty()
            && self.masquerades.is_empty()
            && self.networks.is_empty()
            && self.isolations.is_empty()
            && self.services.is_empty()
    }

    /// Everything in `self` plus everything in `other` (a service of `other` replaces the
    /// service of the same name).
    pub fn union(&self, other: &Rules) -> Rules {
        fn merge<T: Clone + PartialEq>(a: &[T], b: &[T]) -> Vec<T> {
            let mut out = a.to_vec();
            out.extend(b.iter().filter(|x| !a.contains(x)).cloned());
            out
        }
        let mut services: Vec<Service> = self
            .services
            .iter()
            .filter(|s| !other.services.iter().any(|o| o.name == s.name))
            .cloned()
            .collect();
        services.extend(other.services.iter().cloned());
        Rules {
            port_mappings: merge(&self.port_mappings, &other.port_mappings),
            masquerades: merge(&self.masquerades, &other.masquerades),
            networks: merge(&self.networks, &other.networks),
            isolations: merge(&self.isolations, &other.isolations),
            services,
        }
    }

    /// Everything in `self` that is not in `other` (services compared by name).
    pub fn minus(&self, other: &Rules) -> Rules {
        fn keep<T: Clone + PartialEq>(a: &[T], b: &[T]) -> Vec<T> {
            a.iter().filter(|x| !b.contains(x)).cloned().collect()
        }
        Rules {
            port_mappings: keep(&self.port_mappings, &other.port_mappings),
            masquerades: keep(&self.masquerades, &other.masquerades),
            networks: keep(&self.networks, &other.networks),
            isolations: keep(&self.isolations, &other.isolations),
            services: self
                .services
                .iter()
                .filter(|s| !other.services.iter().any(|o| o.name == s.name))
                .cloned()
                .collect(),
        }
    }

    /// Two different port mappings of the set that would catch the same packet.
    pub fn overlap(&self) -> Option<(&PortMapping, &PortMapping)> {
        self.port_mappings.iter().enumerate().find_map(|(i, m)| {
            self.port_mappings[..i]
                .iter()
                .find(|o| o.overlaps(m) && *o != m)
                .map(|o| (o, m))
        })
    }

    /// The same rules with each isolated pair in one canonical order (`a` < `b`).
    pub fn normalized(&self) -> Rules {
        let mut r = self.clone();
        for i in &mut r.isolations {
            if i.a > i.b {
                std::mem::swap(&mut i.a, &mut i.b);
            }
        }
        r
    }

    /// Validate every object (overlaps between objects are the firewall's to judge: see
    /// [`Rules::overlap`]).
    pub fn validate(&self) -> Result<(), FirewallError> {
        for m in &self.port_mappings {
            m.validate()?;
        }
        self.masquerades.iter().try_for_each(Masquerade::validate)?;
        self.networks.iter().try_for_each(Network::validate)?;
        self.isolations.iter().try_for_each(Isolation::validate)?;
        for (i, s) in self.services.iter().enumerate() {
            s.validate()?;
            if self.services[..i].iter().any(|o| o.name == s.name) {
                return Err(FirewallError::invalid(format!("service {} is listed twice", s.name)));
            }
        }
        Ok(())
    }
}

/// The longest owner name, in bytes. State files are named by the owner (`/` written as `+`)
/// plus `.json`, and a file name holds at most 255 bytes. A CNI attachment
/// (`<64-hex container ID>:<ifname>`) is at most 80; a Kubernetes-style
/// `<namespace>/<pod>@<uid>:<ifname>` fits too.
pub const MAX_OWNER_LEN: usize = 250;

/// Owner names: 1–[`MAX_OWNER_LEN`] bytes of ASCII letters, digits and `_ . : / @ % -`,
/// starting with a letter or a digit (a container ID with its interface, a service name, …).
pub fn check_owner(owner: &str) -> Result<(), FirewallError> {
    if owner.is_empty()
        || owner.len() > MAX_OWNER_LEN
        || !owner.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:/@%-".contains(c))
    {
        // A huge name must not make a huge message.
        let shown: String = owner.chars().take(64).collect();
        let shown = if shown.len() < owner.len() {
            format!("{shown:?}… ({} bytes)", owner.len())
        } else {
            format!("{shown:?}")
        };
        return Err(FirewallError::invalid(format!(
            "owner {shown}: 1-{MAX_OWNER_LEN} bytes of letters, digits, '_', '.', ':', '/', '@', '%', '-', \
             starting with a letter or a digit"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn old_state_loads_and_new_fields_stay_out_of_old_json() {
        // A service as state files held it before external policies and local endpoints.
        let old = r#"{"name":"ns/web","protocol":"tcp","vip":"10.96.0.1","port":80,"node_port":30080,
            "affinity":null,"masquerade":false,"endpoints":[{"ip":"10.88.0.5","port":8080}]}"#;
        let svc: Service = serde_json::from_str(old).unwrap();
        assert_eq!(svc.external_policy, None);
        assert!(svc.external_ips.is_empty() && !svc.endpoints[0].local);
        // Defaults are not written: such a service reads back as before.
        let json = serde_json::to_string(&svc).unwrap();
        assert!(!json.contains("local") && !json.contains("external"), "{json}");
        let new = svc
            .external_policy(TrafficPolicy::Local)
            .external_ip(ip("192.0.2.80"))
            .endpoint(Endpoint::new(ip("10.88.0.6"), 8080).local(true));
        let json = serde_json::to_string(&new).unwrap();
        assert!(
            json.contains(r#""external_policy":"local""#) && json.contains(r#""local":true"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Service>(&json).unwrap(), new);
    }

    #[test]
    fn port_mapping_validation() {
        let ok = PortMapping::new(Protocol::Tcp, 8080, ip("10.0.0.2"), 80);
        assert!(ok.validate().is_ok());
        let bad = [
            PortMapping::new(Protocol::Tcp, 0, ip("10.0.0.2"), 80),
            PortMapping::new(Protocol::Tcp, 80, ip("10.0.0.2"), 0),
            PortMapping::new(Protocol::Tcp, 80, ip("0.0.0.0"), 80),
            PortMapping::new(Protocol::Tcp, 80, ip("224.0.0.1"), 80),
            PortMapping::new(Protocol::Tcp, 80, ip("10.0.0.2"), 80).host_ip(ip("fd00::1")),
            PortMapping::new(Protocol::Tcp, 90, ip("10.0.0.2"), 80).range_end(89),
            PortMapping::new(Protocol::Tcp, 1000, ip("10.0.0.2"), 65535).range_end(1001),
            PortMapping::new(Protocol::Tcp, 1, ip("10.0.0.2"), 1).range_end(2000),
        ];
        for m in bad {
            assert!(m.validate().is_err(), "{m}");
        }
        assert!("icmp".parse::<Protocol>().is_err());
        assert_eq!("SCTP".parse::<Protocol>().unwrap(), Protocol::Sctp);
    }

    #[test]
    fn overlap_rules() {
        let a = PortMapping::new(Protocol::Tcp, 8000, ip("10.0.0.2"), 80).range_end(8010);
        let b = PortMapping::new(Protocol::Tcp, 8010, ip("10.0.0.3"), 80);
        let c = PortMapping::new(Protocol::Udp, 8010, ip("10.0.0.3"), 80);
        let d = PortMapping::new(Protocol::Tcp, 8010, ip("10.0.0.3"), 80).host_ip(ip("192.0.2.1"));
        let e = PortMapping::new(Protocol::Tcp, 8010, ip("10.0.0.3"), 80).host_ip(ip("192.0.2.2"));
        assert!(a.overlaps(&b) && !a.overlaps(&c) && a.overlaps(&d) && !d.overlaps(&e));
        let rules = Rules {
            port_mappings: vec![a.clone(), b.clone()],
            ..Default::default()
        };
        assert_eq!(rules.overlap(), Some((&a, &b)));
    }

    #[test]
    fn masquerade_and_service_validation() {
        assert!(Masquerade::address(ip("10.88.0.5"), "10.88.0.0/16".parse().unwrap())
            .validate()
            .is_ok());
        assert!(Masquerade::address(ip("10.89.0.5"), "10.88.0.0/16".parse().unwrap())
            .validate()
            .is_err());
        let s = Service::new("ns/web", Protocol::Tcp, ip("10.96.0.1"), 80).endpoint(Endpoint::new(ip("fd00::1"), 80));
        assert!(s.validate().is_err());
        assert!(Service::new("bad name", Protocol::Tcp, ip("10.96.0.1"), 80)
            .validate()
            .is_err());
        // External IPs: unicast, of the VIP's family, not the VIP, once each.
        let base = || Service::new("ns/web", Protocol::Tcp, ip("10.96.0.1"), 80);
        assert!(base().external_ip(ip("192.0.2.80")).validate().is_ok());
        for bad in ["fd00::80", "224.0.0.1", "0.0.0.0", "127.0.0.1", "10.96.0.1"] {
            assert!(base().external_ip(ip(bad)).validate().is_err(), "{bad}");
        }
        let twice = base().external_ip(ip("192.0.2.80")).external_ip(ip("192.0.2.80"));
        assert!(twice.validate().is_err());
        // Local without node port or external IP is allowed (it changes nothing).
        assert!(base().external_policy(TrafficPolicy::Local).validate().is_ok());
        // One address and port once, whatever `local` says.
        let ep = Endpoint::new(ip("10.88.0.5"), 80);
        assert!(base().endpoint(ep).endpoint(ep.local(true)).validate().is_err());
        assert!(ep.same_backend(&ep.local(true)) && !ep.same_backend(&Endpoint::new(ip("10.88.0.5"), 81)));
        assert_eq!("Local".parse::<TrafficPolicy>().unwrap(), TrafficPolicy::Local);
        assert!("nodes".parse::<TrafficPolicy>().is_err());
        assert!(check_owner("abc:eth0").is_ok() && check_owner("a b").is_err());
        for ok in ["default/web@1%2:eth0", "9x", &"a".repeat(MAX_OWNER_LEN)] {
            assert!(check_owner(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "/x",
            ".x",
            "a+b",
            "a\"b",
            "a\nb",
            "é",
            &"a".repeat(MAX_OWNER_LEN + 1),
        ] {
            assert!(check_owner(bad).is_err(), "{bad:?}");
        }
    }
}
