//! Kubernetes NetworkPolicy (networking.k8s.io/v1) as serde types, with Kubernetes' JSON field
//! names, label selectors that match, and validation.
//!
//! A [`NetworkPolicy`] here is the object's `spec`: its namespace comes from its id
//! (`<namespace>/<name>`, see [`super::compile::PolicyId`]), not from a field. Differences from
//! Kubernetes: named ports (`port: "http"`) are refused when read (netkit needs port numbers).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Deserializer, Serialize};

pub use crate::firewall::Protocol;

use super::PolicyError;

/// Labels of a pod or namespace.
pub type Labels = BTreeMap<String, String>;

/// The direction a policy isolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    /// Traffic to the selected pods.
    Ingress,
    /// Traffic from the selected pods.
    Egress,
}

/// A NetworkPolicy's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    /// The pods of the policy's namespace it applies to (empty: all of them).
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// The directions it isolates. Empty means Kubernetes' default, see
    /// [`NetworkPolicy::effective_types`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_types: Vec<PolicyType>,
    /// What may reach the selected pods (with Ingress isolation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressRule>,
    /// What the selected pods may reach (with Egress isolation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressRule>,
}

/// One ingress rule: traffic from any of `from` (empty: from anywhere) to any of `ports`
/// (empty: every port and protocol).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// The sources (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Peer>,
    /// The destination ports of the selected pod (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PolicyPort>,
}

/// One egress rule: traffic to any of `to` (empty: anywhere) on any of `ports` (empty: every
/// port and protocol).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// The destinations (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Peer>,
    /// The destination ports (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PolicyPort>,
}

/// A peer, as Kubernetes reads it: `ipBlock` alone; `podSelector` alone (pods of the policy's
/// namespace); `namespaceSelector` alone (every pod of the matching namespaces); both (the
/// matching pods of the matching namespaces).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Pods by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Addresses (pod addresses too: Kubernetes leaves that open, netkit matches them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

/// A CIDR minus some CIDRs inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpBlock {
    /// The block.
    pub cidr: IpNetwork,
    /// Parts of it that are not in the peer (each inside `cidr`, same family).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<IpNetwork>,
}

/// Ports of one protocol: `port` alone, `port..=end_port`, or every port (`port` absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPort {
    /// The protocol (TCP when absent; Kubernetes' upper-case names, read in any case).
    #[serde(default, with = "crate::firewall::model::kubernetes_name")]
    pub protocol: Protocol,
    /// The port (absent: all ports of the protocol). Numbers only: a named port is refused
    /// when read.
    #[serde(default, deserialize_with = "port_number", skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The last port of a range starting at `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

impl PolicyPort {
    /// The ports, as an inclusive range.
    pub fn range(&self) -> (u16, u16) {
        match (self.port, self.end_port) {
            (None, _) => (0, u16::MAX),
            (Some(p), None) => (p, p),
            (Some(p), Some(e)) => (p, e),
        }
    }
}

/// `port`: a number; a name (Kubernetes' IntOrString) is refused with a clear message.
fn port_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrString {
        Int(u64),
        Str(String),
    }
    match Option::<IntOrString>::deserialize(d)? {
        None => Ok(None),
        Some(IntOrString::Int(n)) => u16::try_from(n)
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("port {n} is out of range (1-65535)"))),
        Some(IntOrString::Str(s)) => Err(serde::de::Error::custom(format!(
            "named port {s:?} is not supported by netkit's network policy: give the port number"
        ))),
    }
}

/// A label selector: every `match_labels` pair and every expression must hold. An empty
/// selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: Labels,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// The label.
    pub key: String,
    /// How `values` is used.
    pub operator: Operator,
    /// The values (non-empty for In and NotIn, empty for Exists and DoesNotExist).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A [`LabelSelectorRequirement`]'s operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// The label is present with one of the values.
    In,
    /// The label is absent, or present with none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl LabelSelector {
    /// A selector of these `key=value` pairs.
    pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        LabelSelector {
            match_labels: pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            match_expressions: Vec::new(),
        }
    }

    /// True when it selects nothing in particular (matches every label set).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// True when `labels` satisfy every pair and every expression.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator {
                    Operator::In => value.is_some_and(|v| e.values.contains(v)),
                    Operator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// Kubernetes' rules: keys non-empty; In/NotIn with values, Exists/DoesNotExist without.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |reason: String| PolicyError::invalid("label selector", reason);
        if self.match_labels.keys().any(|k| k.is_empty()) {
            return Err(bad("an empty key in matchLabels".into()));
        }
        for e in &self.match_expressions {
            if e.key.is_empty() {
                return Err(bad("an empty key in matchExpressions".into()));
            }
            match (e.operator, e.values.is_empty()) {
                (Operator::In | Operator::NotIn, true) => {
                    return Err(bad(format!("{:?} on {:?} needs values", e.operator, e.key)))
                }
                (Operator::Exists | Operator::DoesNotExist, false) => {
                    return Err(bad(format!("{:?} on {:?} takes no values", e.operator, e.key)))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl IpBlock {
    /// A block without exceptions.
    pub fn new(cidr: IpNetwork) -> Self {
        IpBlock {
            cidr,
            except: Vec::new(),
        }
    }

    /// Every exception is inside `cidr` and of its family.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for e in &self.except {
            let inside = e.is_ipv4() == self.cidr.is_ipv4()
                && e.prefix() > self.cidr.prefix()
                && self.cidr.contains(e.network());
            if !inside {
                return Err(PolicyError::invalid(
                    "ipBlock",
                    format!("except {e} is not strictly inside cidr {}", self.cidr),
                ));
            }
        }
        Ok(())
    }

    /// True when `ip` is in the block and in none of its exceptions.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|e| e.contains(ip))
    }
}

impl Peer {
    /// Kubernetes' rules: at least one field; `ipBlock` alone.
    pub fn validate(&self) -> Result<(), PolicyError> {
        match (&self.pod_selector, &self.namespace_selector, &self.ip_block) {
            (None, None, None) => Err(PolicyError::invalid("peer", "names no pods, namespaces or ipBlock")),
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => Err(PolicyError::invalid(
                "peer",
                "ipBlock cannot be combined with podSelector or namespaceSelector",
            )),
            (p, n, b) => {
                for s in [p, n].into_iter().flatten() {
                    s.validate()?;
                }
                b.as_ref().map_or(Ok(()), IpBlock::validate)
            }
        }
    }
}

impl PolicyPort {
    /// Kubernetes' rules: ports 1-65535; `endPort` only with `port`, and not below it.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |reason: String| PolicyError::invalid("port", reason);
        match (self.port, self.end_port) {
            (Some(0), _) => Err(bad("port 0".into())),
            (None, Some(e)) => Err(bad(format!("endPort {e} without port"))),
            (Some(p), Some(e)) if e < p => Err(bad(format!("endPort {e} below port {p}"))),
            _ => Ok(()),
        }
    }
}

impl NetworkPolicy {
    /// The directions it isolates: `policyTypes`, or Kubernetes' default when it is empty
    /// (Ingress, plus Egress when there are egress rules).
    pub fn effective_types(&self) -> Vec<PolicyType> {
        if !self.policy_types.is_empty() {
            let mut t = self.policy_types.clone();
            t.sort();
            t.dedup();
            return t;
        }
        let mut t = vec![PolicyType::Ingress];
        if !self.egress.is_empty() {
            t.push(PolicyType::Egress);
        }
        t
    }

    /// True when it isolates `t`.
    pub fn isolates(&self, t: PolicyType) -> bool {
        self.effective_types().contains(&t)
    }

    /// Every selector, peer and port is valid (see theirs).
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.pod_selector.validate()?;
        let rules = self
            .ingress
            .iter()
            .map(|r| (&r.from, &r.ports))
            .chain(self.egress.iter().map(|r| (&r.to, &r.ports)));
        for (peers, ports) in rules {
            for p in peers {
                p.validate()?;
            }
            for p in ports {
                p.validate()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_kubernetes_json() {
        let p: NetworkPolicy = serde_json::from_str(
            r#"{"podSelector": {"matchLabels": {"app": "db"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                                      {"namespaceSelector": {"matchLabels": {"project": "p"}}},
                                      {"podSelector": {"matchLabels": {"role": "frontend"}}}],
                             "ports": [{"protocol": "TCP", "port": 6379}]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                            "ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}, {"port": 53, "protocol": "UDP"}]}]}"#,
        )
        .unwrap();
        p.validate().unwrap();
        assert_eq!(p.pod_selector, LabelSelector::labels([("app", "db")]));
        assert_eq!(p.ingress[0].from.len(), 3);
        assert_eq!(p.ingress[0].from[0].ip_block.as_ref().unwrap().except.len(), 1);
        assert_eq!(p.egress[0].ports[0].range(), (32000, 32768));
        assert_eq!(p.egress[0].ports[1].protocol, Protocol::Udp);
        // Written back with the same names.
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["egress"][0]["ports"][0]["endPort"], 32768);
        assert_eq!(
            v["ingress"][0]["from"][1]["namespaceSelector"]["matchLabels"]["project"],
            "p"
        );
        assert_eq!(serde_json::from_value::<NetworkPolicy>(v).unwrap(), p);
        // Defaults: TCP, every port; the empty selector.
        let d: NetworkPolicy = serde_json::from_str(r#"{"podSelector": {}, "ingress": [{"ports": [{}]}]}"#).unwrap();
        assert_eq!(d.ingress[0].ports[0], PolicyPort::default());
        assert_eq!(d.ingress[0].ports[0].range(), (0, 65535));
        assert!(d.pod_selector.is_empty());
    }

    #[test]
    fn named_ports_are_refused_clearly() {
        let e = serde_json::from_str::<PolicyPort>(r#"{"port": "http"}"#).unwrap_err();
        assert!(e.to_string().contains("named port \"http\" is not supported"), "{e}");
        assert!(serde_json::from_str::<PolicyPort>(r#"{"port": 70000}"#).is_err());
    }

    #[test]
    fn policy_types_default_as_kubernetes() {
        let mut p = NetworkPolicy::default();
        assert_eq!(p.effective_types(), [PolicyType::Ingress]);
        p.egress.push(EgressRule::default());
        assert_eq!(p.effective_types(), [PolicyType::Ingress, PolicyType::Egress]);
        p.policy_types = vec![PolicyType::Egress];
        assert_eq!(p.effective_types(), [PolicyType::Egress]);
        assert!(!p.isolates(PolicyType::Ingress));
    }

    #[test]
    fn selectors_match() {
        use Operator::*;
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let expr = |key: &str, operator, values: &[&str]| LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: key.into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        };
        let cases: &[(LabelSelector, bool)] = &[
            (LabelSelector::default(), true),
            (LabelSelector::labels([("app", "web")]), true),
            (LabelSelector::labels([("app", "web"), ("tier", "back")]), false),
            (LabelSelector::labels([("missing", "x")]), false),
            (expr("app", In, &["db", "web"]), true),
            (expr("app", In, &["db"]), false),
            (expr("missing", In, &["db"]), false),
            (expr("app", NotIn, &["db"]), true),
            (expr("app", NotIn, &["web"]), false),
            (expr("missing", NotIn, &["web"]), true),
            (expr("tier", Exists, &[]), true),
            (expr("missing", Exists, &[]), false),
            (expr("missing", DoesNotExist, &[]), true),
            (expr("tier", DoesNotExist, &[]), false),
        ];
        for (i, (s, want)) in cases.iter().enumerate() {
            assert_eq!(s.matches(&pod), *want, "case {i}: {s:?}");
        }
        assert!(LabelSelector::default().matches(&Labels::new()));
    }

    #[test]
    fn validation_follows_kubernetes() {
        let bad_selector = LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: Operator::In,
                values: vec![],
            }],
        };
        assert!(bad_selector.validate().is_err());
        let mut exists = bad_selector.clone();
        exists.match_expressions[0].operator = Operator::Exists;
        assert!(exists.validate().is_ok());
        exists.match_expressions[0].values = vec!["x".into()];
        assert!(exists.validate().is_err());

        assert!(Peer::default().validate().is_err());
        let block = IpBlock::new("10.0.0.0/8".parse().unwrap());
        let both = Peer {
            pod_selector: Some(LabelSelector::default()),
            ip_block: Some(block.clone()),
            ..Default::default()
        };
        assert!(both.validate().is_err());
        let mut outside = block.clone();
        outside.except = vec!["192.168.0.0/24".parse().unwrap()];
        assert!(outside.validate().is_err());
        outside.except = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(outside.validate().is_err(), "except equal to cidr");
        outside.except = vec!["fd00::/64".parse().unwrap()];
        assert!(outside.validate().is_err(), "other family");
        outside.except = vec!["10.1.0.0/16".parse().unwrap()];
        assert!(outside.validate().is_ok());
        assert!(outside.contains("10.2.0.1".parse().unwrap()));
        assert!(!outside.contains("10.1.0.1".parse().unwrap()));

        let port = |port, end_port| PolicyPort {
            protocol: Protocol::Tcp,
            port,
            end_port,
        };
        assert!(port(Some(0), None).validate().is_err());
        assert!(port(None, Some(80)).validate().is_err());
        assert!(port(Some(90), Some(80)).validate().is_err());
        assert!(port(Some(80), Some(80)).validate().is_ok());
        let mut p = NetworkPolicy::default();
        p.egress.push(EgressRule {
            to: vec![],
            ports: vec![port(Some(90), Some(80))],
        });
        assert!(p.validate().is_err());
    }
}
