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
    /// Which of the node's leases this is (see [`LeaseRequest::slot`](super::LeaseRequest::slot)).
    pub slot: u32,
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
    pub(crate) fn new(subnet: IpNetwork, meta: NodeMeta, slot: u32, ttl: Duration, now: SystemTime) -> Self {
        let mut lease = Self {
            subnet,
            meta,
            slot,
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
            slot: self.slot,
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
            slot: stored.slot,
            ttl: Duration::from_millis(stored.ttl_ms),
            expires_at: UNIX_EPOCH + Duration::from_millis(stored.expires_at_ms),
        })
    }
}

/// A lease as stored: `{"subnet": "10.244.1.0/24", "node": …, "public_ip": …,
/// "backend_type": …, "backend_data": …, "ttl_ms": …, "expires_at_ms": …}`, and `"slot": N`
/// when the slot is not 0 (so a node's one lease reads as Flannel-era records did).
#[derive(Serialize, Deserialize)]
struct StoredLease {
    #[serde(with = "as_text")]
    subnet: IpNetwork,
    #[serde(flatten)]
    meta: NodeMeta,
    #[serde(default, skip_serializing_if = "is_zero")]
    slot: u32,
    ttl_ms: u64,
    expires_at_ms: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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

#[cfg(test)]
mod fuzz {
    //! The stored JSON forms and the subnet keys: arbitrary bytes never panic (and give
    //! `Corrupt`, never a lease); what `to_json`, `plan_to_json` and `subnet_key` write is read
    //! back unchanged.

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::collection::vec;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn network() -> impl Strategy<Value = IpNetwork> {
        prop_oneof![
            (any::<u32>(), 0u8..=32)
                .prop_map(|(a, p)| IpNetwork::new(IpAddr::V4(Ipv4Addr::from(a)), p).expect("prefix")),
            (any::<u128>(), 0u8..=128)
                .prop_map(|(a, p)| IpNetwork::new(IpAddr::V6(Ipv6Addr::from(a)), p).expect("prefix")),
        ]
    }

    fn lease() -> impl Strategy<Value = Lease> {
        let data = prop_oneof![
            Just(serde_json::Value::Null),
            "[0-9a-f:]{0,17}".prop_map(|m| json!({"VtepMAC": m})),
            ("\\PC{0,20}", any::<i64>(), any::<bool>())
                .prop_map(|(s, n, b)| json!({"s": s, "n": n, "b": b, "l": [n, s]})),
        ];
        (
            network(),
            "[A-Za-z0-9_-][A-Za-z0-9._-]{0,40}",
            any::<u32>(),
            "[a-z-]{1,10}",
            data,
            (0u64..(1 << 40), 0u64..(1 << 45), prop_oneof![Just(0u32), 1u32..=1023]),
        )
            .prop_map(
                |(subnet, node, ip, backend_type, backend_data, (ttl_ms, expires_at_ms, slot))| Lease {
                    subnet,
                    slot,
                    meta: NodeMeta {
                        node,
                        public_ip: IpAddr::V4(Ipv4Addr::from(ip)),
                        backend_type,
                        backend_data,
                    },
                    ttl: Duration::from_millis(ttl_ms),
                    expires_at: UNIX_EPOCH + Duration::from_millis(expires_at_ms),
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200), key in "\\PC{0,50}") {
            if let Err(e) = Lease::from_json(&bytes, "leases/x.json") {
                prop_assert!(matches!(e, LeaseError::Corrupt { ref location, .. } if location == "leases/x.json"), "{:?}", e);
            }
            let plan = SubnetPlan::flannel("10.244.0.0/16".parse().expect("literal")).expect("plan");
            let _ = check_stored_plan(&bytes, &plan, "config");
            let _ = parse_subnet_key(&key);
            let _ = parse_subnet_key(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn json_shaped_garbage_never_panics(
            subnet in "\\PC{0,20}",
            ttl in any::<i128>(),
            expires in any::<i128>(),
            extra in proptest::option::of("[a-z_]{1,12}"),
        ) {
            let mut v = json!({"subnet": subnet, "node": "n", "public_ip": "192.0.2.1", "backend_type": "vxlan",
                "backend_data": null, "ttl_ms": ttl.to_string().parse::<serde_json::Number>().ok(),
                "expires_at_ms": expires.to_string().parse::<serde_json::Number>().ok()});
            if let Some(k) = extra {
                v[k] = json!(1);
            }
            let _ = Lease::from_json(v.to_string().as_bytes(), "x");
        }

        #[test]
        fn leases_round_trip(l in lease()) {
            prop_assert_eq!(Lease::from_json(&l.to_json(), "x").expect("a stored lease reads back"), l);
        }

        #[test]
        fn subnet_keys_round_trip(net in network()) {
            prop_assert_eq!(parse_subnet_key(&subnet_key(net)), Some(net));
        }

        #[test]
        fn plans_round_trip(addr in any::<u32>(), prefix in 8u8..=24, extra in 1u8..=8) {
            let network = IpNetwork::new(IpAddr::V4(Ipv4Addr::from(addr)), prefix).expect("prefix");
            let network = IpNetwork::new(network.network(), prefix).expect("prefix");
            if let Ok(plan) = SubnetPlan::new(network, prefix + extra) {
                let stored = plan_to_json(&plan);
                prop_assert!(check_stored_plan(&stored, &plan, "config").is_ok());
                // Another split of the same network is refused.
                let other = if extra > 1 { prefix + extra - 1 } else { prefix + extra + 1 };
                let other = SubnetPlan::new(network, other).expect("another valid split");
                let mismatch = matches!(check_stored_plan(&stored, &other, "config"), Err(LeaseError::PlanMismatch { .. }));
                prop_assert!(mismatch);
            }
        }
    }
}
