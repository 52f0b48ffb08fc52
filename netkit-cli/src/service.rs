//! `netkit service add|del|list|endpoints`: Services and their endpoints in the cluster store
//! ([`netkit_core::service::catalog`]), which every node's `netkit agent --services` follows.
//!
//! The store is `--store etcd=URL[,URL…]` (keys under `--etcd-prefix`, default
//! `/netkit/objects`) or `--store file=DIR` (one host; the agent's `--store file=DIR` keeps the
//! objects in `DIR/objects`, so give the same DIR). The schema is netkit-core's
//! [`service`](netkit_core::service) module's: Kubernetes' field names.
//!
//! ```text
//! netkit service --store etcd=http://10.0.0.1:2379 add default/web --cluster-ip 10.96.0.10 \
//!     --type NodePort --port http=80:8080/tcp@30080 --affinity 600 --external-policy Local
//! netkit service --store … endpoints default/web add 10.244.1.5@node-1 10.244.2.7@node-2
//! netkit service --store … endpoints default/web del 10.244.1.5
//! netkit service --store … list
//! netkit service --store … del default/web
//! ```
//!
//! `--port [NAME=]PORT[:TARGETPORT][/tcp|udp|sctp][@NODEPORT]`: a NodePort or LoadBalancer
//! port without `@NODEPORT` gets a free one from 30000–32767 (printed); a LoadBalancer
//! without `--external-ip` gets a free address of `--lb-pool CIDR` (printed). An endpoint is
//! `IP@NODE` (the node's name in the lease store); `--not-ready` adds it not ready.

use std::net::IpAddr;

use clap::{Args, Subcommand};
use ipnetwork::IpNetwork;
use netkit_core::firewall::Protocol;
use netkit_core::service::{
    catalog, EndpointSpec, EndpointsSpec, ExternalTrafficPolicy, ServicePort, ServiceSpec, ServiceType, SessionAffinity,
};
use netkit_core::store::{AnyObjectStore, StoreLocation};
use serde_json::json;

use crate::error::CliError;
use crate::output::Output;

/// The store (the options of `netkit service`, before the verb).
#[derive(Args, Debug, Clone, Default)]
pub struct ServiceOpts {
    /// The cluster store: `etcd=URL[,URL…]` or `file=DIR` (also from NETKIT_STORE).
    #[arg(long, value_name = "etcd=URL[,URL…]|file=DIR", env = "NETKIT_STORE")]
    pub store: Option<String>,
    /// etcd: the key prefix of the objects.
    #[arg(long, value_name = "PREFIX", default_value = netkit_core::store::DEFAULT_ETCD_PREFIX)]
    pub etcd_prefix: String,
}

impl ServiceOpts {
    /// Open the store `--store` names; errors say `what` command asked (`service`, `policy`).
    pub async fn open(&self, what: &str) -> Result<AnyObjectStore, CliError> {
        let location = self.store.as_deref().ok_or_else(|| {
            CliError::usage(format!(
                "{what}: --store etcd=URL[,URL…]|file=DIR is required (or NETKIT_STORE)"
            ))
        })?;
        let location: StoreLocation = location
            .parse()
            .map_err(|e: netkit_core::store::StoreError| CliError::usage(format!("{what}: --store: {e}")))?;
        AnyObjectStore::open(&location, &self.etcd_prefix)
            .await
            .map_err(|e| CliError::Io {
                what: format!("{what}: open the store {location}"),
                cause: std::io::Error::other(e.to_string()),
            })
    }
}

/// `netkit service …`
#[derive(Subcommand, Debug, Clone)]
pub enum ServiceVerb {
    /// Create or replace a service.
    Add(AddArgs),
    /// Delete a service, its endpoints and its node ports (a missing one is not an error).
    Del {
        /// NAMESPACE/NAME.
        id: String,
    },
    /// List the services (`-j`: the stored objects with their ids).
    List,
    /// Print a service's endpoints, or change them (`add IP@NODE…`, `del IP…`, `set IP@NODE…`).
    Endpoints {
        /// NAMESPACE/NAME.
        id: String,
        /// The change (none: print them).
        #[command(subcommand)]
        verb: Option<EndpointsVerb>,
    },
}

/// `netkit service endpoints ID …`
#[derive(Subcommand, Debug, Clone)]
pub enum EndpointsVerb {
    /// Add endpoints (or replace those with the same address).
    Add {
        /// IP@NODE, one or more.
        #[arg(required = true)]
        endpoints: Vec<String>,
        /// Add them not ready (they get no new connections).
        #[arg(long)]
        not_ready: bool,
    },
    /// Remove endpoints by address (absent ones are ignored).
    Del {
        /// The addresses.
        #[arg(required = true)]
        ips: Vec<IpAddr>,
    },
    /// Replace every endpoint with these (none: no endpoints).
    Set {
        /// IP@NODE, zero or more.
        endpoints: Vec<String>,
        /// Set them not ready.
        #[arg(long)]
        not_ready: bool,
    },
}

/// `netkit service add`.
#[derive(Args, Debug, Clone)]
pub struct AddArgs {
    /// NAMESPACE/NAME (lower-case DNS labels).
    pub id: String,
    /// The virtual address.
    #[arg(long, value_name = "IP")]
    pub cluster_ip: IpAddr,
    /// A port, `[NAME=]PORT[:TARGETPORT][/tcp|udp|sctp][@NODEPORT]`; repeat for several (each named).
    #[arg(long = "port", value_name = "SPEC", required = true)]
    pub ports: Vec<String>,
    /// ClusterIP, NodePort or LoadBalancer.
    #[arg(long = "type", value_name = "TYPE", default_value = "ClusterIP")]
    pub kind: String,
    /// Client-address affinity with this timeout in seconds (1–86400).
    #[arg(long, value_name = "SECONDS")]
    pub affinity: Option<u32>,
    /// Where connections to node ports and external IPs go: Cluster (any endpoint,
    /// masqueraded) or Local (this node's endpoints, the client's address kept).
    #[arg(long, value_name = "POLICY", default_value = "Cluster")]
    pub external_policy: String,
    /// An external address of the service (repeat for several); a LoadBalancer's is claimed
    /// (no other service may hold it).
    #[arg(long = "external-ip", value_name = "IP")]
    pub external_ips: Vec<IpAddr>,
    /// A LoadBalancer service without --external-ip gets the first free address of these
    /// pools (repeatable; printed).
    #[arg(long = "lb-pool", value_name = "CIDR")]
    pub lb_pools: Vec<IpNetwork>,
}

/// Parse `[NAME=]PORT[:TARGETPORT][/PROTO][@NODEPORT]`.
pub fn parse_port(spec: &str) -> Result<ServicePort, CliError> {
    let bad = |why: &str| {
        CliError::usage(format!(
            "service: --port {spec:?}: {why} ([NAME=]PORT[:TARGET][/PROTO][@NODEPORT])"
        ))
    };
    let (name, rest) = match spec.split_once('=') {
        Some((n, r)) => (Some(n), r),
        None => (None, spec),
    };
    let (rest, node_port) = match rest.split_once('@') {
        Some((r, n)) => (
            r,
            Some(n.parse::<u16>().map_err(|_| bad("the node port is not a port"))?),
        ),
        None => (rest, None),
    };
    let (rest, protocol) = match rest.split_once('/') {
        Some((r, p)) => (
            r,
            p.parse::<Protocol>()
                .map_err(|_| bad("the protocol is tcp, udp or sctp"))?,
        ),
        None => (rest, Protocol::Tcp),
    };
    let (port, target) = match rest.split_once(':') {
        Some((p, t)) => (
            p,
            Some(t.parse::<u16>().map_err(|_| bad("the target port is not a port"))?),
        ),
        None => (rest, None),
    };
    let mut p = ServicePort::new(port.parse().map_err(|_| bad("the port is not a port"))?).protocol(protocol);
    p.name = name.map(str::to_string);
    p.target_port = target;
    p.node_port = node_port;
    Ok(p)
}

/// Parse `IP@NODE`.
pub fn parse_endpoint(s: &str, ready: bool) -> Result<EndpointSpec, CliError> {
    let (ip, node) = s
        .split_once('@')
        .ok_or_else(|| CliError::usage(format!("service: endpoint {s:?}: IP@NODE")))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| CliError::usage(format!("service: endpoint {s:?}: {ip:?} is not an address")))?;
    Ok(EndpointSpec {
        ready,
        ..EndpointSpec::new(ip, node)
    })
}

fn svc_err(e: netkit_core::service::ServiceError) -> CliError {
    match e {
        netkit_core::service::ServiceError::Invalid(_) => CliError::usage(format!("service: {e}")),
        e => CliError::Io {
            what: "service".into(),
            cause: std::io::Error::other(e.to_string()),
        },
    }
}

/// Run `netkit service …`.
pub async fn run(out: &Output, opts: &ServiceOpts, verb: ServiceVerb) -> Result<(), CliError> {
    let store = opts.open("service").await?;
    match verb {
        ServiceVerb::Add(a) => add(out, &store, a).await,
        ServiceVerb::Del { id } => {
            let existed = catalog::delete_service(&store, &id).await.map_err(svc_err)?;
            if out.json {
                out.json(&json!({"deleted": existed}));
            } else if !existed {
                out.note(&format!("service {id} did not exist"));
            }
            Ok(())
        }
        ServiceVerb::List => list(out, &store).await,
        ServiceVerb::Endpoints { id, verb } => {
            let eps = match verb {
                None => catalog::get_endpoints(&store, &id).await.map_err(svc_err)?,
                Some(EndpointsVerb::Add { endpoints, not_ready }) => {
                    let eps: Vec<_> = endpoints
                        .iter()
                        .map(|e| parse_endpoint(e, !not_ready))
                        .collect::<Result<_, _>>()?;
                    catalog::update_endpoints(&store, &id, |cur| {
                        for e in &eps {
                            cur.endpoints.retain(|c| c.ip != e.ip);
                            cur.endpoints.push(e.clone());
                        }
                        cur.endpoints.sort();
                    })
                    .await
                    .map_err(svc_err)?
                }
                Some(EndpointsVerb::Del { ips }) => catalog::update_endpoints(&store, &id, |cur| {
                    cur.endpoints.retain(|c| !ips.contains(&c.ip));
                })
                .await
                .map_err(svc_err)?,
                Some(EndpointsVerb::Set { endpoints, not_ready }) => {
                    let mut eps = EndpointsSpec {
                        endpoints: endpoints
                            .iter()
                            .map(|e| parse_endpoint(e, !not_ready))
                            .collect::<Result<_, _>>()?,
                    };
                    eps.endpoints.sort();
                    catalog::put_endpoints(&store, &id, &eps).await.map_err(svc_err)?;
                    eps
                }
            };
            if out.json {
                out.json(&serde_json::to_value(&eps).unwrap_or_default());
            } else {
                for e in &eps.endpoints {
                    out.text(&format!(
                        "{}@{}{}",
                        e.ip,
                        e.node,
                        if e.ready { "" } else { " not-ready" }
                    ));
                }
            }
            Ok(())
        }
    }
}

async fn add(out: &Output, store: &AnyObjectStore, a: AddArgs) -> Result<(), CliError> {
    let mut spec = ServiceSpec::new(
        a.cluster_ip,
        a.ports.iter().map(|p| parse_port(p)).collect::<Result<_, _>>()?,
    );
    spec.kind = a.kind.parse::<ServiceType>().map_err(svc_err)?;
    spec.external_traffic_policy = a.external_policy.parse::<ExternalTrafficPolicy>().map_err(svc_err)?;
    spec.external_ips = a.external_ips;
    if let Some(t) = a.affinity {
        spec.session_affinity = SessionAffinity::ClientIP;
        spec.session_affinity_timeout_seconds = Some(t);
    }
    let stored = catalog::put_service_in_pools(store, &a.id, &spec, &a.lb_pools)
        .await
        .map_err(svc_err)?;
    if out.json {
        out.json(&serde_json::to_value(&stored).unwrap_or_default());
    } else {
        for p in stored.ports.iter().filter(|p| p.node_port.is_some()) {
            if !spec
                .ports
                .iter()
                .any(|q| q.port == p.port && q.protocol == p.protocol && q.node_port.is_some())
            {
                out.text(&format!(
                    "{} {}/{}: node port {}",
                    a.id,
                    p.port,
                    p.protocol,
                    p.node_port.unwrap_or_default()
                ));
            }
        }
        if spec.external_ips.is_empty() {
            for ip in &stored.external_ips {
                out.text(&format!("{} LoadBalancer address: {ip}", a.id));
            }
        }
    }
    Ok(())
}

/// `kubectl get services`' columns: NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) ENDPOINTS.
async fn list(out: &Output, store: &AnyObjectStore) -> Result<(), CliError> {
    let services = catalog::list_services(store).await.map_err(svc_err)?;
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for (id, spec) in &services {
        let eps = catalog::get_endpoints(store, id).await.map_err(svc_err)?;
        let ready = eps.endpoints.iter().filter(|e| e.ready).count();
        let ports: Vec<String> = spec
            .ports
            .iter()
            .map(|p| match p.node_port {
                Some(n) => format!("{}:{n}/{}", p.port, p.protocol.as_str().to_ascii_uppercase()),
                None => format!("{}/{}", p.port, p.protocol.as_str().to_ascii_uppercase()),
            })
            .collect();
        let external = if spec.external_ips.is_empty() {
            "<none>".to_string()
        } else {
            spec.external_ips
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        rows.push(format!(
            "{id:<32} {:<12} {:<15} {external:<15} {:<20} {ready}/{}",
            format!("{:?}", spec.kind),
            spec.cluster_ip,
            ports.join(","),
            eps.endpoints.len()
        ));
        items.push(json!({"id": id, "service": spec, "endpoints": eps}));
    }
    if out.json {
        out.json(&serde_json::Value::Array(items));
    } else {
        out.text(&format!(
            "{:<32} {:<12} {:<15} {:<15} {:<20} ENDPOINTS (ready/all)",
            "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"
        ));
        for r in rows {
            out.text(&r);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_and_endpoint_words() {
        let p = parse_port("http=80:8080/tcp@30080").unwrap();
        assert_eq!(
            (p.name.as_deref(), p.port, p.target_port, p.protocol, p.node_port),
            (Some("http"), 80, Some(8080), Protocol::Tcp, Some(30080))
        );
        let p = parse_port("53/udp").unwrap();
        assert_eq!(
            (p.name, p.port, p.target_port, p.protocol, p.node_port),
            (None, 53, None, Protocol::Udp, None)
        );
        for bad in ["", "x", "80:y", "80/icmp", "80@z", "a=b"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        let e = parse_endpoint("10.244.1.5@node-1", true).unwrap();
        assert_eq!(
            (e.ip.to_string(), e.node.as_str(), e.ready),
            ("10.244.1.5".into(), "node-1", true)
        );
        assert!(parse_endpoint("10.244.1.5", true).is_err());
        assert!(parse_endpoint("x@n", true).is_err());
    }
}
