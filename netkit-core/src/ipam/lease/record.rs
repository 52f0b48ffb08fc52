//! A lease, and the JSON form in which both stores keep leases and plans.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::{LeaseError, NodeMeta, SubnetPlan};

/// One subnet leased to one node until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The node's subnet.
    pub subnet: IpNetwork,
    /// The node holding it, and how to reach it.
    pub meta: NodeMeta,
    /// The time to live the store granted: what was asked for, except that etcd rounds up to
    /// whole seconds and to its minimum lease TTL.
    pub ttl: Duration,
    /// When the lease ends unless renewed, by the writer's wall clock. The etcd store's
    /// authority is etcd's own lease; this is what the writer expected.
    pub expires_at: SystemTime,
}

impl Lease {
    /// A lease of `subnet` to `meta.node` for `ttl` from `now`, at the millisecond precision
    /// of the stored form (so a lease read back equals the one written).
    pub(crate) fn new(subnet: IpNetwork, meta: NodeMeta, ttl: Duration, now: SystemTime) -> Self {
        let mut lease = Self {
            subnet,
            meta,
            ttl: Duration::from_millis(ttl.as_millis() as u64),
            expires_at: now,
        };
        lease.extend_from(now);
        lease
    }

    /// Set `expires_at` to `now + ttl`, in whole milliseconds.
    pub(crate) fn extend_from(&mut self, now: SystemTime) {
        self.expires_at = UNIX_EPOCH + Duration::from_millis(unix_ms(now + self.ttl));
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.meta.node
    }

    /// True when `expires_at` has passed.
    pub fn is_expired(&self) -> bool {
        self.expires_at <= SystemTime::now()
    }

    /// Time left until `expires_at` (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }

    /// The stored JSON form.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let stored = StoredLease {
            subnet: self.subnet,
            meta: self.meta.clone(),
            ttl_ms: self.ttl.as_millis() as u64,
            expires_at_ms: unix_ms(self.expires_at),
        };
        serde_json::to_vec_pretty(&stored).expect("a lease always serializes")
    }

    /// Parse the stored JSON form; `location` names the file or key for errors.
    pub(crate) fn from_json(bytes: &[u8], location: &str) -> Result<Self, LeaseError> {
        let stored: StoredLease = serde_json::from_slice(bytes).map_err(|e| LeaseError::Corrupt {
            location: location.to_string(),
            reason: format!("not a lease record: {e}"),
        })?;
        Ok(Self {
            subnet: stored.subnet,
            meta: stored.meta,
            ttl: Duration::from_millis(stored.ttl_ms),
            expires_at: UNIX_EPOCH + Duration::from_millis(stored.expires_at_ms),
        })
    }
}

/// A lease as stored: `{"subnet": "10.244.1.0/24", "node": …, "public_ip": …,
/// "backend_type": …, "backend_data": …, "ttl_ms": …, "expires_at_ms": …}`.
#[derive(Serialize, Deserialize)]
struct StoredLease {
    #[serde(with = "as_text")]
    subnet: IpNetwork,
    #[serde(flatten)]
    meta: NodeMeta,
    ttl_ms: u64,
    expires_at_ms: u64,
}

/// A plan as stored: `{"network": "10.244.0.0/16", "subnet_prefix": 24}`.
#[derive(Serialize, Deserialize)]
struct StoredPlan {
    #[serde(with = "as_text")]
    network: IpNetwork,
    subnet_prefix: u8,
}

/// The stored JSON form of a plan.
pub(crate) fn plan_to_json(plan: &SubnetPlan) -> Vec<u8> {
    let stored = StoredPlan {
        network: plan.network(),
        subnet_prefix: plan.subnet_prefix(),
    };
    serde_json::to_vec_pretty(&stored).expect("a plan always serializes")
}

/// Check that the stored plan at `location` is `plan`.
pub(crate) fn check_stored_plan(bytes: &[u8], plan: &SubnetPlan, location: &str) -> Result<(), LeaseError> {
    let corrupt = |reason: String| LeaseError::Corrupt {
        location: location.to_string(),
        reason,
    };
    let stored: StoredPlan = serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not a subnet plan: {e}")))?;
    let stored = SubnetPlan::new(stored.network, stored.subnet_prefix).map_err(|e| corrupt(e.to_string()))?;
    if stored != *plan {
        return Err(LeaseError::PlanMismatch {
            location: location.to_string(),
            stored: stored.to_string(),
            requested: plan.to_string(),
        });
    }
    Ok(())
}

/// The name of a subnet in file names and etcd keys: `10.244.1.0-24`, `fd00:0:0:1::-64`.
pub(crate) fn subnet_key(subnet: IpNetwork) -> String {
    format!("{}-{}", subnet.ip(), subnet.prefix())
}

/// The subnet a [`subnet_key`] names.
pub(crate) fn parse_subnet_key(key: &str) -> Option<IpNetwork> {
    let (ip, prefix) = key.rsplit_once('-')?;
    IpNetwork::new(ip.parse().ok()?, prefix.parse().ok()?).ok()
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// (De)serialize a network as its text form, `10.244.1.0/24` (ipnetwork's own serde support is
/// an optional feature this crate does not turn on).
mod as_text {
    use ipnetwork::IpNetwork;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(net: &IpNetwork, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(net)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNetwork, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}
