//! What a node asks for: its metadata, a time to live and maybe a preferred subnet.

use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::LeaseError;

/// The longest TTL a lease may have: one year.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The highest lease slot: a node holds at most `MAX_SLOT + 1` subnets at once.
pub const MAX_SLOT: u32 = 1023;

/// Flannel's lease TTL (24 hours); the default of [`LeaseRequest::new`].
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a lease says about the node holding it, as Flannel publishes it: how other nodes
/// reach the node and which overlay backend it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// The node's name; at most 253 characters of `[A-Za-z0-9._-]`, not starting with a dot.
    pub node: String,
    /// The node's address on the underlay (Flannel's `PublicIP`).
    pub public_ip: IpAddr,
    /// The overlay backend: `"vxlan"`, `"udp"`, `"host-gw"`, …
    pub backend_type: String,
    /// Backend-specific data, e.g. `{"VtepMAC": "52:54:00:12:34:56"}`; `null` when none.
    pub backend_data: serde_json::Value,
}

/// A request to lease a subnet to one node.
///
/// ```
/// use std::time::Duration;
/// use netkit_core::ipam::lease::LeaseRequest;
/// let req = LeaseRequest::new("node-a", "192.0.2.10".parse()?, "vxlan")
///     .backend_data(serde_json::json!({"VtepMAC": "52:54:00:12:34:56"}))
///     .ttl(Duration::from_secs(3600))
///     .preferred("10.244.7.0/24".parse()?);
/// assert_eq!(req.meta.node, "node-a");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The node and what the lease should say about it.
    pub meta: NodeMeta,
    /// How long the lease lives unless renewed; [`DEFAULT_TTL`] unless set.
    pub ttl: Duration,
    /// A subnet to take if the node holds none and it is free (e.g. the one it held before a
    /// restart). When it is taken, the node gets another free subnet.
    pub preferred: Option<IpNetwork>,
    /// Which of the node's leases this is (0, the default: its one subnet, as Flannel has it).
    /// A node holds one lease per slot, so a node that needs more subnets — Calico's block
    /// affinity: a new block when its blocks are full — asks with slots 1, 2, …; every
    /// slot's lease is acquired, renewed, expires and is released on its own. At most
    /// [`MAX_SLOT`].
    pub slot: u32,
}

impl LeaseRequest {
    /// A request for `node`, reachable at `public_ip`, running `backend_type`; no backend
    /// data, a TTL of [`DEFAULT_TTL`] and no preferred subnet.
    pub fn new(node: impl Into<String>, public_ip: IpAddr, backend_type: impl Into<String>) -> Self {
        Self {
            meta: NodeMeta {
                node: node.into(),
                public_ip,
                backend_type: backend_type.into(),
                backend_data: serde_json::Value::Null,
            },
            ttl: DEFAULT_TTL,
            preferred: None,
            slot: 0,
        }
    }

    /// Set the backend data.
    pub fn backend_data(mut self, data: serde_json::Value) -> Self {
        self.meta.backend_data = data;
        self
    }

    /// Set the time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Set the preferred subnet.
    pub fn preferred(mut self, subnet: IpNetwork) -> Self {
        self.preferred = Some(subnet);
        self
    }

    /// Set the slot (see [`LeaseRequest::slot`]).
    pub fn slot(mut self, slot: u32) -> Self {
        self.slot = slot;
        self
    }

    /// Check the node name, the slot and the TTL.
    pub(crate) fn validate(&self) -> Result<(), LeaseError> {
        validate_node(&self.meta.node)?;
        validate_slot(&self.meta.node, self.slot)?;
        let bad = |reason| LeaseError::InvalidTtl {
            node: self.meta.node.clone(),
            ttl: self.ttl,
            reason,
        };
        if self.ttl < Duration::from_millis(1) {
            return Err(bad("a TTL is at least 1 ms"));
        }
        if self.ttl > MAX_TTL {
            return Err(bad("a TTL is at most one year"));
        }
        Ok(())
    }
}

/// Check a slot number (see [`LeaseRequest::slot`]).
pub(crate) fn validate_slot(node: &str, slot: u32) -> Result<(), LeaseError> {
    if slot > MAX_SLOT {
        return Err(LeaseError::InvalidNode {
            node: node.to_string(),
            reason: "a lease slot is at most 1023",
        });
    }
    Ok(())
}

/// Check a node name: it becomes part of an etcd key, so it must be a plain word.
pub(crate) fn validate_node(node: &str) -> Result<(), LeaseError> {
    let bad = |reason| LeaseError::InvalidNode {
        node: node.to_string(),
        reason,
    };
    if node.is_empty() {
        return Err(bad("it is empty"));
    }
    if node.len() > 253 {
        return Err(bad("it is longer than 253 characters"));
    }
    if node.starts_with('.') {
        return Err(bad("it starts with a dot"));
    }
    if !node
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad("only letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}
