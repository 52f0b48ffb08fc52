//! From a service and its endpoints to what one node's firewall holds: a firewall
//! [`Service`](crate::firewall::Service) per port, owned by the service.

use std::time::Duration;

use super::spec::{EndpointsSpec, ExternalTrafficPolicy, ServiceSpec};
use crate::firewall::{self, Endpoint, TrafficPolicy};

/// The prefix of every firewall owner the service proxy creates: `svc/<namespace>/<name>`.
pub const OWNER_PREFIX: &str = "svc/";

/// The firewall owner of service `id` (`<namespace>/<name>`).
pub fn owner(id: &str) -> String {
    format!("{OWNER_PREFIX}{id}")
}

/// The service id (`<namespace>/<name>`) of a firewall owner the proxy made.
pub fn id_of_owner(owner: &str) -> Option<&str> {
    owner.strip_prefix(OWNER_PREFIX)
}

/// What node `node`'s firewall holds for service `id` (`<namespace>/<name>`): one firewall
/// service per port, named `<namespace>/<name>/<port id>`, whose endpoints are the ready
/// endpoints of the cluster IP's family at the port's target port (marked local when they run
/// on `node`). Node ports and external IPs follow the external traffic policy; ClusterIP
/// connections keep the client's address (pod networks are routed, so replies come back
/// through the client's node) except a pod reaching itself (hairpin), which the firewall
/// masquerades.
pub fn firewall_services(
    id: &str,
    spec: &ServiceSpec,
    endpoints: Option<&EndpointsSpec>,
    node: &str,
) -> Vec<firewall::Service> {
    let mut ready: Vec<_> = endpoints
        .map(|e| e.endpoints.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|e| e.ready && e.ip.is_ipv4() == spec.cluster_ip.is_ipv4())
        .collect();
    ready.sort();
    ready.dedup_by(|a, b| a.ip == b.ip);
    let policy = match spec.external_traffic_policy {
        ExternalTrafficPolicy::Cluster => TrafficPolicy::Cluster,
        ExternalTrafficPolicy::Local => TrafficPolicy::Local,
    };
    spec.ports
        .iter()
        .map(|p| {
            let mut s = firewall::Service::new(&format!("{id}/{}", p.id()), p.protocol, spec.cluster_ip, p.port);
            if spec.has_node_ports() {
                if let Some(np) = p.node_port {
                    s = s.node_port(np);
                }
            }
            if let Some(t) = spec.affinity_seconds() {
                s = s.affinity(Duration::from_secs(u64::from(t)));
            }
            s.external_ips = spec.external_ips.clone();
            if s.node_port.is_some() || !s.external_ips.is_empty() {
                s.external_policy = Some(policy);
            }
            s.endpoints = ready
                .iter()
                .map(|e| Endpoint::new(e.ip, p.target()).local(e.node == node))
                .collect();
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::Protocol;
    use crate::service::spec::{EndpointSpec, ServicePort, ServiceType, SessionAffinity};

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_firewall_service_per_port_with_the_nodes_local_endpoints_marked() {
        let mut spec = ServiceSpec::new(
            ip("10.96.0.10"),
            vec![
                ServicePort::new(80).named("http").target_port(8080).node_port(30080),
                ServicePort::new(53).named("dns").protocol(Protocol::Udp),
            ],
        );
        spec.kind = ServiceType::NodePort;
        spec.session_affinity = SessionAffinity::ClientIP;
        spec.external_traffic_policy = ExternalTrafficPolicy::Local;
        let eps = EndpointsSpec {
            endpoints: vec![
                EndpointSpec::new(ip("10.244.2.7"), "n2"),
                EndpointSpec::new(ip("10.244.1.5"), "n1"),
                EndpointSpec {
                    ready: false,
                    ..EndpointSpec::new(ip("10.244.1.6"), "n1")
                },
                EndpointSpec::new(ip("fd00::5"), "n1"),
            ],
        };
        let fw = firewall_services("default/web", &spec, Some(&eps), "n1");
        assert_eq!(fw.len(), 2);
        let http = &fw[0];
        assert_eq!(http.name, "default/web/http");
        assert_eq!(
            (http.protocol, http.vip, http.port, http.node_port),
            (Protocol::Tcp, ip("10.96.0.10"), 80, Some(30080))
        );
        assert_eq!(http.affinity, Some(Duration::from_secs(10_800)));
        assert_eq!(http.external_policy, Some(TrafficPolicy::Local));
        assert_eq!(
            http.endpoints,
            vec![
                Endpoint::new(ip("10.244.1.5"), 8080).local(true),
                Endpoint::new(ip("10.244.2.7"), 8080)
            ]
        );
        let dns = &fw[1];
        assert_eq!(
            (dns.name.as_str(), dns.protocol, dns.port, dns.node_port),
            ("default/web/dns", Protocol::Udp, 53, None)
        );
        assert_eq!(
            dns.external_policy, None,
            "no node port, no external IP: no external path"
        );
        for s in &fw {
            s.validate().unwrap();
        }
        // Without endpoints: the services are there, empty (they reject).
        assert!(firewall_services("default/web", &spec, None, "n1")
            .iter()
            .all(|s| s.endpoints.is_empty()));
        assert_eq!(owner("default/web"), "svc/default/web");
        assert_eq!(id_of_owner("svc/default/web"), Some("default/web"));
    }
}
