//! From the cluster's policies, pods and namespaces to what this node enforces: a pure
//! function ([`compile`]).
//!
//! Kubernetes' semantics: a pod selected by any policy (of its namespace) that isolates a
//! direction denies every new connection in that direction except what one of those
//! policies' rules allows (policies add up, they never take away). Replies to allowed
//! connections pass (the firewall's conntrack does that, not this), and so does traffic from
//! the node itself to its pods (kubelet's probes: the firewall checks forwarded traffic only).
//!
//! The allowed traffic of a pod address is a union of boxes `peer range × protocol range ×
//! port range`; [`compile`] turns it into disjoint boxes, in a canonical form (the maximal
//! runs of peers with the same protocol/port cross-section, and so on down), so the same
//! allowed traffic always gives the same elements, and a change to one rule changes only the
//! elements of the pods it selects, around the addresses and ports it names.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use super::model::{Labels, NetworkPolicy, PolicyPort, PolicyType};
use super::PolicyError;

/// The label Kubernetes puts on every namespace, with the namespace's name as its value;
/// [`compile`] adds it when the caller's namespace labels lack it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A policy's id, `<namespace>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    /// The namespace (the pods it selects are in it).
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl PolicyId {
    /// Read `<namespace>/<name>` (both non-empty, one slash).
    pub fn parse(id: &str) -> Result<PolicyId, PolicyError> {
        match id.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => Ok(PolicyId {
                namespace: ns.to_string(),
                name: name.to_string(),
            }),
            _ => Err(PolicyError::invalid(
                format!("policy id {id:?}"),
                "expected <namespace>/<name>",
            )),
        }
    }
}

/// A pod of the cluster (on any node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its addresses (none yet: it matches no peer).
    pub ips: Vec<IpAddr>,
    /// Its labels.
    pub labels: Labels,
}

/// A pod attached to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPod {
    /// Its namespace.
    pub namespace: String,
    /// Its name (with the namespace, it names a [`PodInfo`]).
    pub name: String,
    /// The host side of its interface (a bridge port in bridge mode, the routed veth in
    /// routed mode).
    pub interface: String,
}

/// What the cluster holds that policy depends on.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Every policy, by id `<namespace>/<name>`.
    pub policies: BTreeMap<String, NetworkPolicy>,
    /// Every pod of the cluster.
    pub pods: Vec<PodInfo>,
    /// Namespace labels by namespace (a namespace missing here has only
    /// [`NAMESPACE_NAME_LABEL`]).
    pub namespaces: BTreeMap<String, Labels>,
}

/// A direction of traffic, seen from a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// To the pod.
    Ingress,
    /// From the pod.
    Egress,
}

/// An allowed box for one pod address: new connections between `pod` and any peer address in
/// `peer` (inclusive), of an IP protocol in `proto`, to a destination port in `port`
/// (inclusive). Peers are of the pod address's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Allowed {
    /// The local pod's address.
    pub pod: IpAddr,
    /// The first and last peer address.
    pub peer: (IpAddr, IpAddr),
    /// The first and last IP protocol number.
    pub proto: (u8, u8),
    /// The first and last destination port.
    pub port: (u16, u16),
}

/// What one local pod enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodPolicy {
    /// The host side of its interface.
    pub interface: String,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
    /// Some policy isolates it for ingress.
    pub ingress_isolated: bool,
    /// Some policy isolates it for egress.
    pub egress_isolated: bool,
    /// With ingress isolation: what may connect to it (disjoint, canonical).
    pub ingress: Vec<Allowed>,
    /// With egress isolation: what it may connect to (disjoint, canonical).
    pub egress: Vec<Allowed>,
}

/// What this node enforces: its pods (by `<namespace>/<name>`) that some policy selects, and
/// the host-side interfaces of every local pod (isolated or not: the firewall must see and
/// track their traffic before a policy comes, so that connections opened before it are
/// known as established).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePolicy {
    /// The isolated local pods.
    pub pods: BTreeMap<String, PodPolicy>,
    /// The host-side interfaces of every local pod.
    pub interfaces: BTreeSet<String>,
}

impl NodePolicy {
    /// The isolated local pod with address `ip`, if any.
    pub fn pod_of(&self, ip: IpAddr) -> Option<&PodPolicy> {
        self.pods.values().find(|p| p.ips.contains(&ip))
    }

    /// Whether a new connection is allowed in `dir` of the local pod address `pod` with
    /// `peer`, protocol `proto`, destination port `port` (what the firewall decides; a pod
    /// not isolated in `dir` allows everything).
    pub fn allows(&self, pod: IpAddr, dir: Direction, peer: IpAddr, proto: u8, port: u16) -> bool {
        let Some(p) = self.pod_of(pod) else { return true };
        let (isolated, allowed) = match dir {
            Direction::Ingress => (p.ingress_isolated, &p.ingress),
            Direction::Egress => (p.egress_isolated, &p.egress),
        };
        !isolated
            || allowed.iter().any(|a| {
                a.pod == pod
                    && (a.peer.0..=a.peer.1).contains(&peer)
                    && (a.proto.0..=a.proto.1).contains(&proto)
                    && (a.port.0..=a.port.1).contains(&port)
            })
    }

    /// The number of allowed boxes (set elements) of every pod and direction.
    pub fn allowed_count(&self) -> usize {
        self.pods.values().map(|p| p.ingress.len() + p.egress.len()).sum()
    }
}

/// An inclusive range of one dimension (addresses as u128, protocols, ports).
type Range = (u128, u128);

/// Compile `cluster`'s policies for the `local` pods of this node (see the module docs).
/// Refuses an invalid policy or id, and a local pod the cluster does not list.
pub fn compile(cluster: &Cluster, local: &[LocalPod]) -> Result<NodePolicy, PolicyError> {
    let mut policies = Vec::new();
    for (id, p) in &cluster.policies {
        let pid = PolicyId::parse(id)?;
        p.validate().map_err(|e| match e {
            PolicyError::Invalid { what, reason } => PolicyError::invalid(format!("policy {id}: {what}"), reason),
            e => e,
        })?;
        policies.push((pid, p));
    }
    let ns_labels = |ns: &str| -> Labels {
        let mut l = cluster.namespaces.get(ns).cloned().unwrap_or_default();
        l.entry(NAMESPACE_NAME_LABEL.to_string())
            .or_insert_with(|| ns.to_string());
        l
    };
    let mut out = NodePolicy::default();
    for lp in local {
        out.interfaces.insert(lp.interface.clone());
        let key = format!("{}/{}", lp.namespace, lp.name);
        let pod = cluster
            .pods
            .iter()
            .find(|p| p.namespace == lp.namespace && p.name == lp.name)
            .ok_or_else(|| PolicyError::invalid(format!("local pod {key}"), "not among the cluster's pods"))?;
        let selecting: Vec<_> = policies
            .iter()
            .filter(|(id, p)| id.namespace == pod.namespace && p.pod_selector.matches(&pod.labels))
            .collect();
        let mut pp = PodPolicy {
            interface: lp.interface.clone(),
            ips: pod.ips.clone(),
            ..Default::default()
        };
        for dir in [Direction::Ingress, Direction::Egress] {
            let ty = match dir {
                Direction::Ingress => PolicyType::Ingress,
                Direction::Egress => PolicyType::Egress,
            };
            let isolating: Vec<_> = selecting.iter().filter(|(_, p)| p.isolates(ty)).collect();
            if isolating.is_empty() {
                continue;
            }
            // Every rule of every isolating policy, as (peers, ports).
            let mut boxes4: Vec<Vec<Range>> = Vec::new();
            let mut boxes6: Vec<Vec<Range>> = Vec::new();
            for (id, p) in isolating {
                let rules: Vec<(&[super::model::Peer], &[PolicyPort])> = match dir {
                    Direction::Ingress => p.ingress.iter().map(|r| (&r.from[..], &r.ports[..])).collect(),
                    Direction::Egress => p.egress.iter().map(|r| (&r.to[..], &r.ports[..])).collect(),
                };
                for (peers, ports) in rules {
                    let (peers4, peers6) = peer_ranges(cluster, &ns_labels, &id.namespace, peers);
                    let ports = port_ranges(ports);
                    for (peers, boxes) in [(&peers4, &mut boxes4), (&peers6, &mut boxes6)] {
                        for peer in peers {
                            for (proto, port) in &ports {
                                boxes.push(vec![*peer, *proto, *port]);
                            }
                        }
                    }
                }
            }
            let (c4, c6) = (canonical(boxes4), canonical(boxes6));
            let mut allowed = Vec::new();
            for ip in &pod.ips {
                let boxes = if ip.is_ipv4() { &c4 } else { &c6 };
                allowed.extend(boxes.iter().map(|b| Allowed {
                    pod: *ip,
                    peer: (addr(b[0].0, ip.is_ipv4()), addr(b[0].1, ip.is_ipv4())),
                    proto: (b[1].0 as u8, b[1].1 as u8),
                    port: (b[2].0 as u16, b[2].1 as u16),
                }));
            }
            match dir {
                Direction::Ingress => (pp.ingress_isolated, pp.ingress) = (true, allowed),
                Direction::Egress => (pp.egress_isolated, pp.egress) = (true, allowed),
            }
        }
        if pp.ingress_isolated || pp.egress_isolated {
            out.pods.insert(key, pp);
        }
    }
    Ok(out)
}

fn addr(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

fn num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The first and last address of `net`, as numbers.
fn net_range(net: IpNetwork) -> Range {
    let (bits, v) = match net {
        IpNetwork::V4(n) => (32, u128::from(u32::from(n.network()))),
        IpNetwork::V6(n) => (128, u128::from(n.network())),
    };
    let host = bits - u32::from(net.prefix());
    let mask = if host == 128 { u128::MAX } else { (1u128 << host) - 1 };
    (v, v | mask)
}

/// The peer address ranges of a rule's peers (IPv4, IPv6); no peers: every address.
fn peer_ranges(
    cluster: &Cluster,
    ns_labels: &dyn Fn(&str) -> Labels,
    policy_ns: &str,
    peers: &[super::model::Peer],
) -> (Vec<Range>, Vec<Range>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    if peers.is_empty() {
        return (vec![(0, u128::from(u32::MAX))], vec![(0, u128::MAX)]);
    }
    for peer in peers {
        if let Some(b) = &peer.ip_block {
            let list = if b.cidr.is_ipv4() { &mut v4 } else { &mut v6 };
            list.extend(subtract(net_range(b.cidr), b.except.iter().map(|e| net_range(*e))));
            continue;
        }
        for pod in &cluster.pods {
            let ns_ok = match &peer.namespace_selector {
                None => pod.namespace == policy_ns,
                Some(s) => s.matches(&ns_labels(&pod.namespace)),
            };
            let pod_ok = peer.pod_selector.as_ref().is_none_or(|s| s.matches(&pod.labels));
            if ns_ok && pod_ok {
                for ip in &pod.ips {
                    let list = if ip.is_ipv4() { &mut v4 } else { &mut v6 };
                    list.push((num(*ip), num(*ip)));
                }
            }
        }
    }
    (v4, v6)
}

/// `whole` minus the `holes`, as disjoint ranges in order.
fn subtract(whole: Range, holes: impl Iterator<Item = Range>) -> Vec<Range> {
    let mut holes: Vec<Range> = holes.collect();
    holes.sort();
    let mut out = Vec::new();
    let mut next = Some(whole.0);
    for (lo, hi) in holes {
        let Some(start) = next else { break };
        if hi < start {
            continue;
        }
        if lo > start {
            out.push((start, lo - 1));
        }
        next = hi.checked_add(1).filter(|n| *n <= whole.1);
    }
    if let Some(start) = next {
        if start <= whole.1 {
            out.push((start, whole.1));
        }
    }
    out
}

/// The (protocol, port) ranges of a rule's ports; none: every protocol and port.
fn port_ranges(ports: &[PolicyPort]) -> Vec<(Range, Range)> {
    if ports.is_empty() {
        return vec![((0, 255), (0, u128::from(u16::MAX)))];
    }
    ports
        .iter()
        .map(|p| {
            let n = u128::from(p.protocol.number());
            let (lo, hi) = p.range();
            ((n, n), (u128::from(lo), u128::from(hi)))
        })
        .collect()
}

/// The union of `boxes` (all of one dimension count) as disjoint boxes in canonical form:
/// along the first dimension, the maximal runs with the same cross-section (itself canonical);
/// along the last, merged intervals. Sorted.
fn canonical(boxes: Vec<Vec<Range>>) -> Vec<Vec<Range>> {
    let Some(dims) = boxes.first().map(Vec::len) else {
        return Vec::new();
    };
    if dims == 1 {
        let mut r: Vec<Range> = boxes.into_iter().map(|b| b[0]).collect();
        r.sort();
        let mut out: Vec<Range> = Vec::new();
        for (lo, hi) in r {
            match out.last_mut() {
                Some(last) if last.1 == u128::MAX || lo <= last.1 + 1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        return out.into_iter().map(|r| vec![r]).collect();
    }
    // Breakpoints: every start and every end + 1 (None: past u128::MAX), in order.
    let mut points: BTreeSet<(bool, u128)> = BTreeSet::new();
    for b in &boxes {
        points.insert((false, b[0].0));
        points.insert(match b[0].1.checked_add(1) {
            Some(n) => (false, n),
            None => (true, 0),
        });
    }
    let points: Vec<_> = points.into_iter().collect();
    let mut by_start: Vec<&Vec<Range>> = boxes.iter().collect();
    by_start.sort_by_key(|b| b[0].0);
    let mut next = 0;
    let mut active: Vec<&Vec<Range>> = Vec::new();
    // The current run: (first, last, cross-section).
    let mut run: Option<(u128, u128, Vec<Vec<Range>>)> = None;
    let mut out = Vec::new();
    let flush = |run: Option<(u128, u128, Vec<Vec<Range>>)>, out: &mut Vec<Vec<Range>>| {
        if let Some((lo, hi, cross)) = run {
            for c in cross {
                let mut b = vec![(lo, hi)];
                b.extend(c);
                out.push(b);
            }
        }
    };
    for w in points.windows(2) {
        let ((_, s), e) = (w[0], w[1]);
        let e = if e.0 { u128::MAX } else { e.1 - 1 };
        while next < by_start.len() && by_start[next][0].0 <= s {
            active.push(by_start[next]);
            next += 1;
        }
        active.retain(|b| b[0].1 >= s);
        let cross = if active.is_empty() {
            Vec::new()
        } else {
            canonical(active.iter().map(|b| b[1..].to_vec()).collect())
        };
        match &mut run {
            Some((_, hi, c)) if !cross.is_empty() && *c == cross && hi.checked_add(1) == Some(s) => *hi = e,
            _ => {
                flush(run.take(), &mut out);
                if !cross.is_empty() {
                    run = Some((s, e, cross));
                }
            }
        }
    }
    flush(run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::super::model::{EgressRule, IngressRule, IpBlock, LabelSelector, Peer, Protocol};
    use super::*;

    const TCP: u8 = 6;
    const UDP: u8 = 17;

    fn pod(ns: &str, name: &str, ip: &str, labels: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            namespace: ns.into(),
            name: name.into(),
            ips: vec![ip.parse().unwrap()],
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector::labels(pairs.iter().copied())
    }

    fn tcp(port: u16) -> PolicyPort {
        PolicyPort {
            protocol: Protocol::Tcp,
            port: Some(port),
            end_port: None,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The cluster of the table: namespace "a" (team=blue) with web 10.0.0.1, db 10.0.0.2
    /// (both local) and client 10.0.1.1 (remote); namespace "b" (team=red) with client
    /// 10.0.2.1 and other 10.0.2.2; namespace "c" (team=blue) with client 10.0.3.1.
    fn cluster(policies: &[(&str, NetworkPolicy)]) -> (Cluster, Vec<LocalPod>) {
        let mut namespaces = BTreeMap::new();
        for (ns, team) in [("a", "blue"), ("b", "red"), ("c", "blue")] {
            namespaces.insert(ns.to_string(), [("team".to_string(), team.to_string())].into());
        }
        let c = Cluster {
            policies: policies.iter().map(|(id, p)| (id.to_string(), p.clone())).collect(),
            pods: vec![
                pod("a", "web", "10.0.0.1", &[("app", "web")]),
                pod("a", "db", "10.0.0.2", &[("app", "db")]),
                pod("a", "client", "10.0.1.1", &[("app", "client")]),
                pod("b", "client", "10.0.2.1", &[("app", "client")]),
                pod("b", "other", "10.0.2.2", &[("app", "other")]),
                pod("c", "client", "10.0.3.1", &[("app", "client")]),
            ],
            namespaces,
        };
        let local = ["web", "db"]
            .iter()
            .map(|n| LocalPod {
                namespace: "a".into(),
                name: n.to_string(),
                interface: format!("veth-{n}"),
            })
            .collect();
        (c, local)
    }

    fn ingress(selector: LabelSelector, rules: Vec<IngressRule>) -> NetworkPolicy {
        NetworkPolicy {
            pod_selector: selector,
            policy_types: vec![PolicyType::Ingress],
            ingress: rules,
            egress: vec![],
        }
    }

    fn from(peers: Vec<Peer>, ports: Vec<PolicyPort>) -> IngressRule {
        IngressRule { from: peers, ports }
    }

    fn pods(s: &[(&str, &str)]) -> Peer {
        Peer {
            pod_selector: Some(sel(s)),
            ..Default::default()
        }
    }

    fn namespaces(s: &[(&str, &str)]) -> Peer {
        Peer {
            namespace_selector: Some(sel(s)),
            ..Default::default()
        }
    }

    fn block(cidr: &str, except: &[&str]) -> Peer {
        Peer {
            ip_block: Some(IpBlock {
                cidr: cidr.parse().unwrap(),
                except: except.iter().map(|e| e.parse().unwrap()).collect(),
            }),
            ..Default::default()
        }
    }

    /// (local pod, direction, peer, protocol, port, allowed?)
    type Probe = (&'static str, Direction, &'static str, u8, u16, bool);

    /// (name, policies by id, probes)
    type Case = (&'static str, Vec<(&'static str, NetworkPolicy)>, Vec<Probe>);

    fn check(name: &str, policies: &[(&str, NetworkPolicy)], probes: &[Probe]) {
        let (c, local) = cluster(policies);
        let np = compile(&c, &local).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, (pod, dir, peer, proto, port, want)) in probes.iter().enumerate() {
            let got = np.allows(ip(pod), *dir, ip(peer), *proto, *port);
            assert_eq!(
                got, *want,
                "{name}, probe {i}: {pod} {dir:?} {peer} {proto}/{port}\n{np:#?}"
            );
        }
        // Every pod's boxes are disjoint (the kernel's interval sets refuse overlaps).
        for p in np.pods.values() {
            for list in [&p.ingress, &p.egress] {
                for (i, a) in list.iter().enumerate() {
                    for b in &list[i + 1..] {
                        let meet = |x: (u128, u128), y: (u128, u128)| x.0 <= y.1 && y.0 <= x.1;
                        let overlap = a.pod == b.pod
                            && meet((num(a.peer.0), num(a.peer.1)), (num(b.peer.0), num(b.peer.1)))
                            && meet(
                                (a.proto.0.into(), a.proto.1.into()),
                                (b.proto.0.into(), b.proto.1.into()),
                            )
                            && meet((a.port.0.into(), a.port.1.into()), (b.port.0.into(), b.port.1.into()));
                        assert!(!overlap, "{name}: {a:?} overlaps {b:?}");
                    }
                }
            }
        }
    }

    use Direction::{Egress as Out, Ingress as In};

    #[test]
    fn semantics_table() {
        let web = || sel(&[("app", "web")]);
        let cases: Vec<Case> = vec![
            (
                "no policy: everything allowed",
                vec![],
                vec![
                    ("10.0.0.1", In, "192.0.2.9", TCP, 80, true),
                    ("10.0.0.1", Out, "192.0.2.9", UDP, 53, true),
                ],
            ),
            (
                "deny all ingress of the namespace",
                vec![("a/deny", ingress(LabelSelector::default(), vec![]))],
                vec![
                    ("10.0.0.1", In, "10.0.1.1", TCP, 80, false),
                    ("10.0.0.2", In, "10.0.0.1", TCP, 5432, false),
                    ("10.0.0.1", Out, "10.0.1.1", TCP, 80, true),
                ],
            ),
            (
                "a policy of another namespace selects nothing here",
                vec![("b/deny", ingress(LabelSelector::default(), vec![]))],
                vec![("10.0.0.1", In, "10.0.1.1", TCP, 80, true)],
            ),
            (
                "podSelector alone: same namespace only",
                vec![(
                    "a/web",
                    ingress(web(), vec![from(vec![pods(&[("app", "client")])], vec![tcp(80)])]),
                )],
                vec![
                    ("10.0.0.1", In, "10.0.1.1", TCP, 80, true),
                    ("10.0.0.1", In, "10.0.1.1", TCP, 81, false),
                    ("10.0.0.1", In, "10.0.1.1", UDP, 80, false),
                    ("10.0.0.1", In, "10.0.2.1", TCP, 80, false),
                    // db is not selected.
                    ("10.0.0.2", In, "10.0.2.1", TCP, 80, true),
                ],
            ),
            (
                "namespaceSelector alone: every pod of the matching namespaces",
                vec![(
                    "a/web",
                    ingress(web(), vec![from(vec![namespaces(&[("team", "blue")])], vec![])]),
                )],
                vec![
                    ("10.0.0.1", In, "10.0.1.1", TCP, 80, true),
                    ("10.0.0.1", In, "10.0.3.1", UDP, 9, true),
                    ("10.0.0.1", In, "10.0.2.1", TCP, 80, false),
                ],
            ),
            (
                "namespace name label is implicit",
                vec![(
                    "a/web",
                    ingress(
                        web(),
                        vec![from(vec![namespaces(&[(NAMESPACE_NAME_LABEL, "b")])], vec![])],
                    ),
                )],
                vec![
                    ("10.0.0.1", In, "10.0.2.1", TCP, 80, true),
                    ("10.0.0.1", In, "10.0.1.1", TCP, 80, false),
                ],
            ),
            (
                "both selectors: matching pods of matching namespaces",
                vec![(
                    "a/web",
                    ingress(
                        web(),
                        vec![from(
                            vec![Peer {
                                pod_selector: Some(sel(&[("app", "client")])),
                                namespace_selector: Some(sel(&[("team", "red")])),
                                ip_block: None,
                            }],
                            vec![],
                        )],
                    ),
                )],
                vec![
                    ("10.0.0.1", In, "10.0.2.1", TCP, 80, true),
                    ("10.0.0.1", In, "10.0.2.2", TCP, 80, false),
                    ("10.0.0.1", In, "10.0.1.1", TCP, 80, false),
                ],
            ),
            (
                "empty from: any source, on the ports",
                vec![("a/web", ingress(web(), vec![from(vec![], vec![tcp(443)])]))],
                vec![
                    ("10.0.0.1", In, "203.0.113.5", TCP, 443, true),
                    ("10.0.0.1", In, "203.0.113.5", TCP, 80, false),
                ],
            ),
            (
                "ipBlock with except",
                vec![(
                    "a/web",
                    ingress(
                        web(),
                        vec![from(
                            vec![block("172.16.0.0/16", &["172.16.1.0/24", "172.16.3.0/24"])],
                            vec![],
                        )],
                    ),
                )],
                vec![
                    ("10.0.0.1", In, "172.16.0.255", TCP, 80, true),
                    ("10.0.0.1", In, "172.16.1.0", TCP, 80, false),
                    ("10.0.0.1", In, "172.16.1.255", TCP, 80, false),
                    ("10.0.0.1", In, "172.16.2.7", TCP, 80, true),
                    ("10.0.0.1", In, "172.16.3.7", TCP, 80, false),
                    ("10.0.0.1", In, "172.16.255.255", TCP, 80, true),
                    ("10.0.0.1", In, "172.17.0.0", TCP, 80, false),
                ],
            ),
            (
                "port ranges",
                vec![(
                    "a/web",
                    ingress(
                        web(),
                        vec![from(
                            vec![],
                            vec![PolicyPort {
                                protocol: Protocol::Udp,
                                port: Some(3000),
                                end_port: Some(3100),
                            }],
                        )],
                    ),
                )],
                vec![
                    ("10.0.0.1", In, "10.9.9.9", UDP, 2999, false),
                    ("10.0.0.1", In, "10.9.9.9", UDP, 3000, true),
                    ("10.0.0.1", In, "10.9.9.9", UDP, 3100, true),
                    ("10.0.0.1", In, "10.9.9.9", UDP, 3101, false),
                    ("10.0.0.1", In, "10.9.9.9", TCP, 3050, false),
                ],
            ),
            (
                "policies add up",
                vec![
                    (
                        "a/one",
                        ingress(web(), vec![from(vec![pods(&[("app", "client")])], vec![tcp(80)])]),
                    ),
                    (
                        "a/two",
                        ingress(web(), vec![from(vec![block("10.0.2.0/24", &[])], vec![tcp(81)])]),
                    ),
                    ("a/deny", ingress(LabelSelector::default(), vec![])),
                ],
                vec![
                    ("10.0.0.1", In, "10.0.1.1", TCP, 80, true),
                    ("10.0.0.1", In, "10.0.2.1", TCP, 81, true),
                    ("10.0.0.1", In, "10.0.2.1", TCP, 80, false),
                    ("10.0.0.1", In, "10.0.1.1", TCP, 81, false),
                    ("10.0.0.2", In, "10.0.1.1", TCP, 80, false),
                ],
            ),
            (
                "egress with DNS allowed",
                vec![(
                    "a/web",
                    NetworkPolicy {
                        pod_selector: web(),
                        policy_types: vec![PolicyType::Egress],
                        ingress: vec![],
                        egress: vec![
                            EgressRule {
                                to: vec![],
                                ports: vec![PolicyPort {
                                    protocol: Protocol::Udp,
                                    port: Some(53),
                                    end_port: None,
                                }],
                            },
                            EgressRule {
                                to: vec![pods(&[("app", "db")])],
                                ports: vec![tcp(5432)],
                            },
                        ],
                    },
                )],
                vec![
                    ("10.0.0.1", Out, "10.96.0.10", UDP, 53, true),
                    ("10.0.0.1", Out, "10.96.0.10", TCP, 53, false),
                    ("10.0.0.1", Out, "10.0.0.2", TCP, 5432, true),
                    ("10.0.0.1", Out, "10.0.1.1", TCP, 5432, false),
                    ("10.0.0.1", In, "10.0.1.1", TCP, 80, true),
                ],
            ),
            (
                "egress rules without the Egress type are ignored",
                vec![(
                    "a/web",
                    NetworkPolicy {
                        pod_selector: web(),
                        policy_types: vec![PolicyType::Ingress],
                        ingress: vec![],
                        egress: vec![EgressRule::default()],
                    },
                )],
                vec![
                    ("10.0.0.1", Out, "10.0.1.1", TCP, 80, true),
                    ("10.0.0.1", In, "10.0.1.1", TCP, 80, false),
                ],
            ),
            (
                "an empty rule allows everything",
                vec![("a/web", ingress(web(), vec![IngressRule::default()]))],
                vec![
                    ("10.0.0.1", In, "198.51.100.1", 1, 0, true),
                    ("10.0.0.1", In, "10.0.2.2", UDP, 9, true),
                ],
            ),
        ];
        for (name, policies, probes) in cases {
            check(name, &policies, &probes);
        }
    }

    #[test]
    fn overlapping_rules_give_disjoint_canonical_boxes() {
        let web = sel(&[("app", "web")]);
        let p = ingress(
            web.clone(),
            vec![
                from(vec![block("10.0.0.0/8", &[])], vec![]),
                from(vec![block("10.1.0.0/16", &[])], vec![tcp(80)]),
                from(vec![block("11.0.0.0/8", &[])], vec![tcp(80)]),
            ],
        );
        let (c, local) = cluster(&[("a/web", p)]);
        let np = compile(&c, &local).unwrap();
        let web = &np.pods["a/web"];
        let show: Vec<_> = web
            .ingress
            .iter()
            .map(|a| format!("{}-{} {:?} {:?}", a.peer.0, a.peer.1, a.proto, a.port))
            .collect();
        assert_eq!(
            show,
            [
                "10.0.0.0-10.255.255.255 (0, 255) (0, 65535)",
                "11.0.0.0-11.255.255.255 (6, 6) (80, 80)"
            ]
        );
        // Adjacent blocks with the same ports merge; the same union from other rules gives
        // the same boxes.
        let q = ingress(
            sel(&[("app", "web")]),
            vec![
                from(
                    vec![block("11.0.0.0/9", &[]), block("11.128.0.0/9", &[])],
                    vec![tcp(80)],
                ),
                from(vec![block("10.0.0.0/8", &[])], vec![]),
            ],
        );
        let (c, local) = cluster(&[("a/web", q)]);
        assert_eq!(compile(&c, &local).unwrap().pods["a/web"].ingress, web.ingress);
    }

    #[test]
    fn a_pod_outside_the_cluster_or_a_bad_id_is_refused() {
        let (c, mut local) = cluster(&[]);
        local[0].name = "ghost".into();
        assert!(compile(&c, &local).is_err());
        let (c, local) = cluster(&[("no-slash", NetworkPolicy::default())]);
        assert!(compile(&c, &local).is_err());
        assert!(PolicyId::parse("a/b/c").is_err());
        assert_eq!(PolicyId::parse("a/b").unwrap().name, "b");
    }

    #[test]
    fn ipv6_pods_get_ipv6_peers() {
        let (mut c, local) = cluster(&[(
            "a/web",
            ingress(
                sel(&[("app", "web")]),
                vec![from(
                    vec![block("fd00::/64", &["fd00::/80"]), block("10.0.0.0/8", &[])],
                    vec![],
                )],
            ),
        )]);
        c.pods[0].ips.push(ip("fd00:1::1"));
        let np = compile(&c, &local).unwrap();
        assert!(np.allows(ip("fd00:1::1"), In, ip("fd00::1:0:0:1"), TCP, 1));
        assert!(!np.allows(ip("fd00:1::1"), In, ip("fd00::1"), TCP, 1));
        assert!(np.allows(ip("10.0.0.1"), In, ip("10.2.3.4"), TCP, 1));
        assert!(np.pods["a/web"]
            .ingress
            .iter()
            .all(|a| a.pod.is_ipv4() == a.peer.0.is_ipv4()));
    }

    #[test]
    fn subtract_and_canonical_edges() {
        assert_eq!(subtract((0, 10), [(0, 10)].into_iter()), vec![]);
        assert_eq!(subtract((0, 10), [(0, 2), (8, 10)].into_iter()), vec![(3, 7)]);
        assert_eq!(subtract((0, u128::MAX), [(5, u128::MAX)].into_iter()), vec![(0, 4)]);
        let all = vec![vec![(0, u128::MAX), (0, 255)]];
        assert_eq!(canonical(all.clone()), all);
        assert_eq!(
            canonical(vec![vec![(0, 5), (1, 1)], vec![(6, 9), (1, 1)], vec![(3, 7), (2, 2)]]),
            vec![vec![(0, 2), (1, 1)], vec![(3, 7), (1, 2)], vec![(8, 9), (1, 1)]]
        );
    }
}
