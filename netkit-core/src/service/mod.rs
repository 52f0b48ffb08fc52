//! Services across the cluster: kube-proxy's job, fed from the cluster store.
//!
//! A Service is a virtual address (its cluster IP) and ports that every node translates to one
//! of the service's endpoints (pods, on any node). The cluster store (an
//! [`ObjectStore`](crate::store::ObjectStore): etcd across nodes, or a directory on one host)
//! holds services and endpoints apart, as Kubernetes' Service and EndpointSlice objects do;
//! [`catalog`] writes and reads them, and each node runs a [`ServiceProxy`] that follows them
//! and programs the node's [`firewall`](crate::firewall) service by service.
//!
//! # The schema
//!
//! | key | value |
//! |---|---|
//! | `services/<namespace>/<name>` | a [`ServiceSpec`] |
//! | `endpoints/<namespace>/<name>` | its [`EndpointsSpec`] |
//! | `nodeports/<protocol>-<port>` | `{"service": "<namespace>/<name>"}`: the node port's holder |
//! | `lbaddresses/<address>` | `{"service": "<namespace>/<name>"}`: a LoadBalancer address's holder (`:` written `-`) |
//!
//! Namespaces and names are lower-case DNS labels. Field names and values are Kubernetes':
//!
//! ```json
//! services/default/web:
//! {"type": "NodePort", "clusterIP": "10.96.0.10",
//!  "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}],
//!  "sessionAffinity": "ClientIP", "sessionAffinityTimeoutSeconds": 600,
//!  "externalTrafficPolicy": "Local", "externalIPs": ["192.0.2.10"]}
//!
//! endpoints/default/web:
//! {"endpoints": [{"ip": "10.244.1.5", "node": "node-1"}, {"ip": "10.244.2.7", "node": "node-2", "ready": false}]}
//! ```
//!
//! # What a node does with them
//!
//! * **ClusterIP** (TCP, UDP, SCTP where the kernel has it): connections to `clusterIP:port`
//!   from pods and from the node go to a ready endpoint at its `targetPort`, chosen at random
//!   (or kept per client address for `sessionAffinityTimeoutSeconds` with `ClientIP`
//!   affinity), the client's address kept. A pod reaching itself through its service
//!   (hairpin) is masqueraded so the reply comes back through the node; in netkit-cni's
//!   bridge mode that needs `"hairpinMode": true` (as Flannel's default configuration has it):
//!   the connection leaves the bridge by the port it came in by.
//! * **NodePort** and **external IPs**: the same at `nodeIP:nodePort` on every node and at
//!   `externalIP:port`. With `externalTrafficPolicy: Cluster` any endpoint, masqueraded to the
//!   node's address; with `Local` only the node's own endpoints, the client's address kept
//!   (a node without one drops the connection).
//! * **LoadBalancer**: its external addresses come from configured pools (given when the
//!   service is written, [`catalog::put_service_in_pools`], or named and claimed), and the
//!   nodes announce those inside their pools ([`ProxyConfig::lb_pools`]) in one or both ways:
//!   - layer 2 ([`ProxyConfig::announce_iface`], MetalLB's layer-2 mode): each address is held
//!     by one node with a ready endpoint (chosen alike by every node), which answers ARP (IPv4)
//!     or neighbour solicitations (IPv6) for it and sends a gratuitous ARP or an unsolicited
//!     neighbour advertisement when it takes it over;
//!   - BGP ([`ProxyConfig::announce_bgp`] into the overlay agent's BIRD, MetalLB's BGP mode and
//!     Calico's service address advertisement): IPv4 addresses as /32s from every node while
//!     the service has a ready endpoint (`Cluster`), or only from nodes with a ready local one
//!     (`Local`).
//! * **No endpoints**: connections are refused (TCP reset, ICMP port unreachable), not dropped.
//! * **An endpoint removed from a UDP service**: the node's connection-tracking entries NATed to
//!   it are deleted, so the flow moves to a live endpoint.
//!
//! Endpoints of the other address family than the cluster IP's are ignored.

mod announce;
pub mod catalog;
mod error;
mod proxy;
mod render;
mod spec;

pub use announce::PROTO_LB;
pub use error::ServiceError;
pub use proxy::{ProxyConfig, ProxyStatus, ServiceProxy, SYNC_BATCH};
pub use render::{firewall_services, id_of_owner, owner, OWNER_PREFIX};
pub use spec::{
    EndpointSpec, EndpointsSpec, ExternalTrafficPolicy, ServicePort, ServiceSpec, ServiceType, SessionAffinity,
    DEFAULT_AFFINITY_SECONDS, MAX_AFFINITY_SECONDS, MAX_ENDPOINTS, MAX_PORTS, NODE_PORT_MAX, NODE_PORT_MIN,
};
