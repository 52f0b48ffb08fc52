//! What the cluster store holds for a Service and its endpoints: the JSON schema, Kubernetes'
//! field names, each value checked by `validate`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ServiceError;
use crate::firewall::Protocol;

/// The lowest node port [`ServiceSpec`]s get when they ask for one without naming it
/// (Kubernetes' default range, 30000–32767).
pub const NODE_PORT_MIN: u16 = 30000;
/// The highest automatically chosen node port.
pub const NODE_PORT_MAX: u16 = 32767;
/// Session affinity's default timeout (Kubernetes': 3 hours).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10_800;
/// Session affinity's longest timeout (Kubernetes': one day).
pub const MAX_AFFINITY_SECONDS: u32 = 86_400;
/// The most ports one service may have.
pub const MAX_PORTS: usize = 100;
/// The most endpoints one service may have (Kubernetes caps an Endpoints object at 1000).
pub const MAX_ENDPOINTS: usize = 1000;

/// How a service is exposed (Kubernetes' `type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceType {
    /// The cluster IP only.
    #[default]
    ClusterIP,
    /// And a node port on every node's addresses.
    NodePort,
    /// And node ports, and its `externalIPs` announced to the outside (by BGP or ARP).
    LoadBalancer,
}

impl FromStr for ServiceType {
    type Err = ServiceError;
    fn from_str(s: &str) -> Result<Self, ServiceError> {
        match s.to_ascii_lowercase().as_str() {
            "clusterip" => Ok(Self::ClusterIP),
            "nodeport" => Ok(Self::NodePort),
            "loadbalancer" => Ok(Self::LoadBalancer),
            _ => Err(ServiceError::invalid(format!(
                "service type {s:?}: ClusterIP, NodePort or LoadBalancer"
            ))),
        }
    }
}

/// Which endpoints connections from outside the cluster (node ports, external IPs) go to
/// (Kubernetes' `externalTrafficPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExternalTrafficPolicy {
    /// Any endpoint on any node; the connection is masqueraded to the node's address so the
    /// reply comes back through it (the client's address is lost).
    #[default]
    Cluster,
    /// Only endpoints on the node the connection arrived at, with the client's address kept; a
    /// node without one drops the connection.
    Local,
}

impl FromStr for ExternalTrafficPolicy {
    type Err = ServiceError;
    fn from_str(s: &str) -> Result<Self, ServiceError> {
        match s.to_ascii_lowercase().as_str() {
            "cluster" => Ok(Self::Cluster),
            "local" => Ok(Self::Local),
            _ => Err(ServiceError::invalid(format!(
                "external traffic policy {s:?}: Cluster or Local"
            ))),
        }
    }
}

/// Client-address session affinity (Kubernetes' `sessionAffinity`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionAffinity {
    /// Each new connection picks an endpoint at random.
    #[default]
    None,
    /// A client address keeps its endpoint until it has made no new connection for
    /// `sessionAffinityTimeoutSeconds`.
    ClientIP,
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// The port's name (`http`); required when the service has several ports. Lower-case
    /// letters, digits and `-`, at most 15 characters (an IANA service name, as Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TCP` (default), `UDP` or `SCTP` (any case).
    #[serde(default = "tcp", with = "crate::firewall::model::kubernetes_name")]
    pub protocol: Protocol,
    /// The port on the cluster IP (and external IPs).
    pub port: u16,
    /// The endpoints' port (default: `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
    /// The port on every node's addresses (NodePort and LoadBalancer services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

impl ServicePort {
    /// A TCP port whose endpoints listen on the same port.
    pub fn new(port: u16) -> Self {
        Self {
            name: None,
            protocol: Protocol::Tcp,
            port,
            target_port: None,
            node_port: None,
        }
    }

    /// Named.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// With this protocol.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Endpoints listen on `port`.
    pub fn target_port(mut self, port: u16) -> Self {
        self.target_port = Some(port);
        self
    }

    /// On every node's addresses at `port`.
    pub fn node_port(mut self, port: u16) -> Self {
        self.node_port = Some(port);
        self
    }

    /// The endpoints' port.
    pub fn target(&self) -> u16 {
        self.target_port.unwrap_or(self.port)
    }

    /// The port's name, or `PORT-PROTOCOL` (`53-udp`) for an unnamed one: unique in its
    /// service, used to name its firewall objects.
    pub fn id(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("{}-{}", self.port, self.protocol),
        }
    }
}

/// A Service as the cluster store holds it, at `services/<namespace>/<name>`:
///
/// ```json
/// {
///   "type": "NodePort",
///   "clusterIP": "10.96.0.10",
///   "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}],
///   "sessionAffinity": "ClientIP",
///   "sessionAffinityTimeoutSeconds": 600,
///   "externalTrafficPolicy": "Local",
///   "externalIPs": ["192.0.2.10"]
/// }
/// ```
///
/// Every field but `clusterIP` and `ports` may be left out (defaults: `ClusterIP`, no
/// affinity, `Cluster`, no external IPs). Field names and values are Kubernetes'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// How it is exposed.
    #[serde(default, rename = "type")]
    pub kind: ServiceType,
    /// The virtual address every node translates.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: IpAddr,
    /// Its ports (at least one).
    pub ports: Vec<ServicePort>,
    /// Client-address affinity.
    #[serde(default)]
    pub session_affinity: SessionAffinity,
    /// The affinity's timeout (default [`DEFAULT_AFFINITY_SECONDS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_timeout_seconds: Option<u32>,
    /// Where connections from outside the cluster go.
    #[serde(default)]
    pub external_traffic_policy: ExternalTrafficPolicy,
    /// Addresses outside the cluster network that reach the service too (a LoadBalancer's
    /// addresses), at each port's `port`.
    #[serde(default, rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<IpAddr>,
}

impl ServiceSpec {
    /// A ClusterIP service with these ports.
    pub fn new(cluster_ip: IpAddr, ports: Vec<ServicePort>) -> Self {
        Self {
            kind: ServiceType::ClusterIP,
            cluster_ip,
            ports,
            session_affinity: SessionAffinity::None,
            session_affinity_timeout_seconds: None,
            external_traffic_policy: ExternalTrafficPolicy::Cluster,
            external_ips: Vec::new(),
        }
    }

    /// The affinity timeout when affinity is on.
    pub fn affinity_seconds(&self) -> Option<u32> {
        (self.session_affinity == SessionAffinity::ClientIP).then(|| {
            self.session_affinity_timeout_seconds
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        })
    }

    /// True when its ports are exposed on the nodes' addresses too.
    pub fn has_node_ports(&self) -> bool {
        self.kind != ServiceType::ClusterIP
    }

    /// Check it: unicast addresses of the cluster IP's family, 1–[`MAX_PORTS`] ports with
    /// unique names (required when several) and unique `port`/protocol pairs, node ports only
    /// on NodePort and LoadBalancer services and unique, an affinity timeout of 1 s – 1 day.
    pub fn validate(&self) -> Result<(), ServiceError> {
        let unicast = |what: &str, ip: &IpAddr| {
            if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() || *ip == IpAddr::from([255, 255, 255, 255])
            {
                Err(ServiceError::invalid(format!("{what} {ip} is not a unicast address")))
            } else {
                Ok(())
            }
        };
        unicast("clusterIP", &self.cluster_ip)?;
        for ip in &self.external_ips {
            unicast("external IP", ip)?;
            if ip.is_ipv4() != self.cluster_ip.is_ipv4() {
                return Err(ServiceError::invalid(format!(
                    "external IP {ip} is not of the clusterIP's family ({})",
                    self.cluster_ip
                )));
            }
        }
        if self.ports.is_empty() || self.ports.len() > MAX_PORTS {
            return Err(ServiceError::invalid(format!(
                "a service has 1 to {MAX_PORTS} ports, not {}",
                self.ports.len()
            )));
        }
        let (mut names, mut ports, mut node_ports) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for p in &self.ports {
            match &p.name {
                Some(n) => {
                    check_port_name(n)?;
                    if !names.insert(n.as_str()) {
                        return Err(ServiceError::invalid(format!("port name {n:?} is used twice")));
                    }
                }
                None if self.ports.len() > 1 => {
                    return Err(ServiceError::invalid(format!(
                        "port {} has no name: a service with several ports names each",
                        p.port
                    )))
                }
                None => {}
            }
            for (what, v) in [
                ("port", Some(p.port)),
                ("targetPort", p.target_port),
                ("nodePort", p.node_port),
            ] {
                if v == Some(0) {
                    return Err(ServiceError::invalid(format!("{what} 0 is not a port")));
                }
            }
            if !ports.insert((p.port, p.protocol)) {
                return Err(ServiceError::invalid(format!(
                    "port {}/{} is listed twice",
                    p.port, p.protocol
                )));
            }
            if let Some(np) = p.node_port {
                if !self.has_node_ports() {
                    return Err(ServiceError::invalid(format!(
                        "nodePort {np} on a ClusterIP service (type NodePort or LoadBalancer has node ports)"
                    )));
                }
                if !node_ports.insert((np, p.protocol)) {
                    return Err(ServiceError::invalid(format!(
                        "nodePort {np}/{} is listed twice",
                        p.protocol
                    )));
                }
            }
        }
        if let Some(t) = self.session_affinity_timeout_seconds {
            if t == 0 || t > MAX_AFFINITY_SECONDS {
                return Err(ServiceError::invalid(format!(
                    "sessionAffinityTimeoutSeconds {t}: 1 to {MAX_AFFINITY_SECONDS}"
                )));
            }
        }
        Ok(())
    }
}

/// Port names: 1–15 of `a-z 0-9 -`, with a letter, not starting or ending with `-`.
fn check_port_name(n: &str) -> Result<(), ServiceError> {
    let ok = !n.is_empty()
        && n.len() <= 15
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && n.bytes().any(|b| b.is_ascii_lowercase())
        && !n.starts_with('-')
        && !n.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "port name {n:?}: 1-15 of a-z, 0-9 and '-', with a letter, not starting or ending with '-'"
        )))
    }
}

/// One endpoint of a service: a pod's address, the node it runs on, and whether it takes
/// connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSpec {
    /// The pod's address.
    pub ip: IpAddr,
    /// The node the pod runs on (its name in the lease store), which makes it local there.
    pub node: String,
    /// False while the pod is not ready: it gets no new connections (default true).
    #[serde(default = "yes")]
    pub ready: bool,
}

fn yes() -> bool {
    true
}

impl EndpointSpec {
    /// A ready endpoint.
    pub fn new(ip: IpAddr, node: &str) -> Self {
        Self {
            ip,
            node: node.to_string(),
            ready: true,
        }
    }
}

/// A service's endpoints as the cluster store holds them, at `endpoints/<namespace>/<name>`
/// (the service's own key under `endpoints/`), apart from the service so that a pod coming or
/// going rewrites this small object only:
///
/// ```json
/// {"endpoints": [{"ip": "10.244.1.5", "node": "node-1"}, {"ip": "10.244.2.7", "node": "node-2", "ready": false}]}
/// ```
///
/// Each endpoint serves every port of the service at the port's `targetPort`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsSpec {
    /// The endpoints.
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
}

impl EndpointsSpec {
    /// Check it: at most [`MAX_ENDPOINTS`], each address unicast and listed once, node names
    /// valid store key segments.
    pub fn validate(&self) -> Result<(), ServiceError> {
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(ServiceError::invalid(format!(
                "{} endpoints: at most {MAX_ENDPOINTS}",
                self.endpoints.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for e in &self.endpoints {
            if e.ip.is_unspecified() || e.ip.is_multicast() || e.ip.is_loopback() {
                return Err(ServiceError::invalid(format!(
                    "endpoint {} is not a unicast address",
                    e.ip
                )));
            }
            if !seen.insert(e.ip) {
                return Err(ServiceError::invalid(format!("endpoint {} is listed twice", e.ip)));
            }
            crate::store::validate_key(&e.node)
                .ok()
                .filter(|_| !e.node.contains('/'))
                .ok_or_else(|| ServiceError::invalid(format!("endpoint {}: node name {:?}", e.ip, e.node)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_reads_and_checks() {
        let s: ServiceSpec = serde_json::from_str(
            r#"{"type": "NodePort", "clusterIP": "10.96.0.10",
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}],
                "sessionAffinity": "ClientIP", "sessionAffinityTimeoutSeconds": 600,
                "externalTrafficPolicy": "Local", "externalIPs": ["192.0.2.10"]}"#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.affinity_seconds(), Some(600));
        assert_eq!(s.ports[0].target(), 8080);
        let minimal: ServiceSpec =
            serde_json::from_str(r#"{"clusterIP": "10.96.0.11", "ports": [{"port": 53, "protocol": "udp"}]}"#).unwrap();
        minimal.validate().unwrap();
        assert_eq!(minimal.ports[0].id(), "53-udp");
        assert_eq!(minimal.kind, ServiceType::ClusterIP);
        // Written back in Kubernetes' spelling, and read again unchanged.
        let text = serde_json::to_string(&minimal).unwrap();
        assert!(text.contains(r#""protocol":"UDP""#), "{text}");
        assert_eq!(serde_json::from_str::<ServiceSpec>(&text).unwrap(), minimal);
        let e: EndpointsSpec =
            serde_json::from_str(r#"{"endpoints": [{"ip": "10.244.1.5", "node": "n1"}, {"ip": "10.244.2.7", "node": "n2", "ready": false}]}"#)
                .unwrap();
        e.validate().unwrap();
        assert!(e.endpoints[0].ready && !e.endpoints[1].ready);
    }

    #[test]
    fn bad_services_are_refused_with_the_reason() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let base = ServiceSpec::new(ip("10.96.0.10"), vec![ServicePort::new(80)]);
        let cases: Vec<(ServiceSpec, &str)> = vec![
            (
                ServiceSpec {
                    ports: vec![],
                    ..base.clone()
                },
                "1 to 100 ports",
            ),
            (
                ServiceSpec {
                    cluster_ip: ip("0.0.0.0"),
                    ..base.clone()
                },
                "not a unicast",
            ),
            (
                ServiceSpec {
                    ports: vec![ServicePort::new(80), ServicePort::new(81)],
                    ..base.clone()
                },
                "has no name",
            ),
            (
                ServiceSpec {
                    ports: vec![ServicePort::new(80).named("a"), ServicePort::new(80).named("b")],
                    ..base.clone()
                },
                "listed twice",
            ),
            (
                ServiceSpec {
                    ports: vec![ServicePort::new(80).node_port(30080)],
                    ..base.clone()
                },
                "on a ClusterIP service",
            ),
            (
                ServiceSpec {
                    ports: vec![ServicePort::new(80).named("Http")],
                    ..base.clone()
                },
                "port name",
            ),
            (
                ServiceSpec {
                    external_ips: vec![ip("fd00::1")],
                    ..base.clone()
                },
                "family",
            ),
            (
                ServiceSpec {
                    session_affinity_timeout_seconds: Some(0),
                    ..base.clone()
                },
                "sessionAffinityTimeoutSeconds",
            ),
            (
                ServiceSpec {
                    ports: vec![ServicePort::new(0)],
                    ..base.clone()
                },
                "0 is not a port",
            ),
        ];
        for (spec, want) in cases {
            let err = spec.validate().expect_err(want).to_string();
            assert!(err.contains(want), "{err} (wanted {want})");
        }
        assert!(serde_json::from_str::<ServiceSpec>(r#"{"clusterIP": "10.96.0.1", "ports": [], "bogus": 1}"#).is_err());
        let twice = EndpointsSpec {
            endpoints: vec![EndpointSpec::new(ip("10.0.0.1"), "n"); 2],
        };
        assert!(twice.validate().unwrap_err().to_string().contains("twice"));
        let bad_node = EndpointsSpec {
            endpoints: vec![EndpointSpec::new(ip("10.0.0.1"), "a/b")],
        };
        assert!(bad_node.validate().is_err());
    }
}
