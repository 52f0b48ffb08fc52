//! The etcd key layout of one store, and reading leases back from key-values.
//!
//! ```text
//! PREFIX/config                   the plan: {"network": "10.244.0.0/16", "subnet_prefix": 24}
//! PREFIX/subnets/10.244.1.0-24    the lease (JSON), attached to the node's etcd lease
//! PREFIX/nodes/node-a             "10.244.1.0/24", attached to the same etcd lease
//! PREFIX/nodes/node-a/2           the subnet of node-a's lease in slot 2, likewise
//! ```
//!
//! Both keys of a node are created in one transaction, only if both are absent, and share one
//! etcd lease: they expire, are revoked or move to a new etcd lease together.

use etcd_client::KeyValue;
use ipnetwork::IpNetwork;

use super::super::record::{parse_subnet_key, subnet_key};
use super::super::{Lease, LeaseError, SubnetPlan};

/// The keys of one store.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    /// The prefix without a trailing `/`.
    prefix: String,
    /// The endpoints, for error messages.
    pub(super) endpoint: String,
}

impl Keys {
    pub(super) fn new(prefix: &str, endpoint: String) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_string(),
            endpoint,
        }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn config(&self) -> String {
        format!("{}/config", self.prefix)
    }

    /// The prefix of every subnet key (with its trailing `/`).
    pub(super) fn subnets(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    pub(super) fn subnet(&self, subnet: IpNetwork) -> String {
        format!("{}{}", self.subnets(), subnet_key(subnet))
    }

    /// The node key of `node`'s lease in `slot`: `nodes/NODE` for slot 0 (a node's one lease,
    /// as before slots existed), `nodes/NODE/SLOT` for the others (a node name has no `/`).
    pub(super) fn node(&self, node: &str, slot: u32) -> String {
        match slot {
            0 => format!("{}/nodes/{node}", self.prefix),
            _ => format!("{}/nodes/{node}/{slot}", self.prefix),
        }
    }

    /// Where a key lives, for error messages: `key K at ENDPOINT`.
    pub(super) fn location(&self, key: &[u8]) -> String {
        format!("key {} at etcd {}", String::from_utf8_lossy(key), self.endpoint)
    }

    /// A [`LeaseError::Etcd`] for `op`.
    pub(super) fn error(
        &self,
        op: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> LeaseError {
        LeaseError::Etcd {
            op: op.into(),
            endpoint: self.endpoint.clone(),
            cause: Box::new(source),
        }
    }

    /// The subnet a subnet key names, checked against `plan`, with its number.
    pub(super) fn subnet_of(&self, key: &[u8], plan: &SubnetPlan) -> Result<(u128, IpNetwork), LeaseError> {
        let corrupt = |reason: String| LeaseError::Corrupt {
            location: self.location(key),
            reason,
        };
        let name = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(&self.subnets()))
            .ok_or_else(|| corrupt("not a subnet key".to_string()))?;
        let subnet = parse_subnet_key(name).ok_or_else(|| corrupt("the key does not name a subnet".to_string()))?;
        let index = plan
            .index_of(subnet)
            .ok_or_else(|| corrupt(format!("{subnet} is not a subnet of {plan}")))?;
        Ok((index, subnet))
    }

    /// The lease stored in a subnet key-value, checked against its key and `plan`.
    pub(super) fn decode(&self, kv: &KeyValue, plan: &SubnetPlan) -> Result<(u128, Lease), LeaseError> {
        let (index, subnet) = self.subnet_of(kv.key(), plan)?;
        let location = self.location(kv.key());
        let lease = Lease::from_json(kv.value(), &location)?;
        if lease.subnet != subnet {
            return Err(LeaseError::Corrupt {
                location,
                reason: format!("the key is named for {subnet} but holds {}", lease.subnet),
            });
        }
        Ok((index, lease))
    }

    /// The subnet stored in a node key-value.
    pub(super) fn decode_node(&self, kv: &KeyValue, plan: &SubnetPlan) -> Result<IpNetwork, LeaseError> {
        let corrupt = |reason: String| LeaseError::Corrupt {
            location: self.location(kv.key()),
            reason,
        };
        let text = std::str::from_utf8(kv.value()).map_err(|e| corrupt(e.to_string()))?;
        let subnet: IpNetwork = text
            .parse()
            .map_err(|e| corrupt(format!("{text:?} is not a subnet: {e}")))?;
        plan.index_of(subnet)
            .ok_or_else(|| corrupt(format!("{subnet} is not a subnet of {plan}")))?;
        Ok(subnet)
    }
}
