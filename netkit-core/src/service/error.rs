//! The one error type of the service module.

use crate::firewall::FirewallError;
use crate::store::StoreError;

/// What can go wrong with services: a bad value, the cluster store, the node's firewall or its
/// connection tracking. Each names the service when there is one.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A service, its endpoints or a name breaks the schema's rules.
    #[error("invalid service: {0}")]
    Invalid(String),
    /// The named service is not in the store.
    #[error("service {0} does not exist")]
    NotFound(String),
    /// A node port another service holds.
    #[error("node port {port}/{protocol} is held by service {holder}")]
    NodePortTaken {
        /// The port.
        port: u16,
        /// Its protocol.
        protocol: crate::firewall::Protocol,
        /// The service holding it.
        holder: String,
    },
    /// A LoadBalancer address is held by another service.
    #[error("LoadBalancer address {ip} is held by service {holder}")]
    AddressTaken {
        /// The address.
        ip: std::net::IpAddr,
        /// The service holding it.
        holder: String,
    },
    /// A LoadBalancer service has no address and no pool has a free one of its family.
    #[error("no free {family} LoadBalancer address in the pools [{pools}]")]
    PoolExhausted {
        /// The pools, comma-separated.
        pools: String,
        /// The family wanted.
        family: &'static str,
    },
    /// Every port of the node-port range is held.
    #[error("no free node port left in {min}-{max} for {protocol}")]
    NodePortsExhausted {
        /// The range's start.
        min: u16,
        /// Its end.
        max: u16,
        /// The protocol.
        protocol: crate::firewall::Protocol,
    },
    /// The cluster store failed (or a watch broke).
    #[error("service store: {0}")]
    Store(#[from] StoreError),
    /// The node's firewall refused or failed a change of `service`.
    #[error("firewall, service {service}: {cause}")]
    Firewall {
        /// The service (`<namespace>/<name>`), or `*` for the whole set.
        service: String,
        /// The firewall's error.
        cause: Box<FirewallError>,
    },
    /// Dropping the connection-tracking entries of a removed endpoint failed.
    #[error("conntrack, service {service}: {cause}")]
    Conntrack {
        /// The service.
        service: String,
        /// The conntrack error.
        cause: Box<crate::conntrack::ConntrackError>,
    },
}

impl ServiceError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
}
