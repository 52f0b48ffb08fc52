//! From the cluster's policies, pods and namespaces to what this node enforces: a pure
//! function ([`compile`], the reference), and an incremental compiler ([`NodeCompiler`])
//! that gives the same result and, after a change, recompiles only the local pods the change
//! touches, returning the difference ([`NodeChanges`]) that
//! [`PolicyFirewall::apply_changes`](super::PolicyFirewall::apply_changes) sends as it is.
//!
//! **Why incremental.** `compile()` matches every policy's selector against every local pod
//! and recompiles every pod on every change: at 1,000 isolated pods it cost 16 ms with 10
//! rules and 24 ms with 10,000, most of one rule change's cost (BENCHMARKS.md, "Network
//! policy"). The compiler keeps the view and, per local pod, the policies that select it
//! (and per policy, the pods it selects), so that one rule change recompiles the pods of that
//! policy only; see [`NodeCompiler`] for what each kind of change touches. It recompiles a
//! whole pod (both directions, every selecting policy) rather than one rule: a pod's boxes
//! are a canonical union over all its rules, and a pod has few rules, so finer caches would
//! cost more code than time. A test runs random sequences of changes through it and checks
//! each output against `compile()` of the same view.
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use super::model::{Labels, NetworkPolicy, Peer, PolicyPort, PolicyType};
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
///
/// This is the reference: it compiles every local pod against every policy each time.
/// [`NodeCompiler`] gives the same [`NodePolicy`] and, after a change, recompiles only the
/// pods the change touches.
pub fn compile(cluster: &Cluster, local: &[LocalPod]) -> Result<NodePolicy, PolicyError> {
    let mut policies = Vec::new();
    for (id, p) in &cluster.policies {
        policies.push((checked_policy(id, p)?, p));
    }
    let ns_labels = |ns: &str| effective_labels(ns, cluster.namespaces.get(ns));
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
            .map(|(id, p)| (id.namespace.as_str(), *p))
            .collect();
        if let Some(pp) = compile_pod(pod, &lp.interface, &selecting, &|| cluster.pods.iter(), &ns_labels) {
            out.pods.insert(key, pp);
        }
    }
    Ok(out)
}

/// The id of policy `id`, once the id and the policy are checked.
fn checked_policy(id: &str, p: &NetworkPolicy) -> Result<PolicyId, PolicyError> {
    let pid = PolicyId::parse(id)?;
    p.validate().map_err(|e| match e {
        PolicyError::Invalid { what, reason } => PolicyError::invalid(format!("policy {id}: {what}"), reason),
        e => e,
    })?;
    Ok(pid)
}

/// Namespace `ns`'s labels with [`NAMESPACE_NAME_LABEL`] added when missing.
fn effective_labels(ns: &str, labels: Option<&Labels>) -> Labels {
    let mut l = labels.cloned().unwrap_or_default();
    l.entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| ns.to_string());
    l
}

/// What the local pod `pod` (host-side interface `interface`) enforces, given the policies
/// of its namespace that select it (`selecting`: each with its namespace), every pod of the
/// cluster (`pods`) and the namespaces' labels (`ns_labels`); `None` when no policy isolates
/// it in any direction.
fn compile_pod<'a, I: Iterator<Item = &'a PodInfo>>(
    pod: &PodInfo,
    interface: &str,
    selecting: &[(&str, &NetworkPolicy)],
    pods: &dyn Fn() -> I,
    ns_labels: &dyn Fn(&str) -> Labels,
) -> Option<PodPolicy> {
    let mut pp = PodPolicy {
        interface: interface.to_string(),
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
        for (policy_ns, p) in isolating {
            let rules: Vec<(&[Peer], &[PolicyPort])> = match dir {
                Direction::Ingress => p.ingress.iter().map(|r| (&r.from[..], &r.ports[..])).collect(),
                Direction::Egress => p.egress.iter().map(|r| (&r.to[..], &r.ports[..])).collect(),
            };
            for (peers, ports) in rules {
                let (peers4, peers6) = peer_ranges(pods, ns_labels, policy_ns, peers);
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
    (pp.ingress_isolated || pp.egress_isolated).then_some(pp)
}

/// One local pod's change in a [`NodeChanges`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodChange {
    /// The pod, `<namespace>/<name>`.
    pub key: String,
    /// What it enforced before (`None`: it was not isolated, or not local).
    pub before: Option<PodPolicy>,
    /// What it enforces now (`None`: it is not isolated, or not local any more).
    pub after: Option<PodPolicy>,
}

/// Where a [`NodeChanges`] starts or ends: one output of one [`NodeCompiler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Revision {
    /// The compiler (unique in the process).
    pub(crate) compiler: u64,
    /// Its outputs so far.
    pub(crate) number: u64,
}

/// The difference between two successive outputs of a [`NodeCompiler`] (see
/// [`NodeCompiler::changes`]): the local pods whose [`PodPolicy`] changed, and the
/// interfaces that came to or left [`NodePolicy::interfaces`]. A
/// [`PolicyFirewall`](super::PolicyFirewall) that enforces the first output applies it as
/// it is ([`PolicyFirewall::apply_changes`](super::PolicyFirewall::apply_changes)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeChanges {
    pub(crate) from: Revision,
    pub(crate) to: Revision,
    /// The pods whose policy changed, in key order.
    pub pods: Vec<PodChange>,
    /// Interfaces now in [`NodePolicy::interfaces`] that were not.
    pub interfaces_added: Vec<String>,
    /// Interfaces no longer in [`NodePolicy::interfaces`].
    pub interfaces_removed: Vec<String>,
}

impl NodeChanges {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.interfaces_added.is_empty() && self.interfaces_removed.is_empty()
    }
}

/// The incremental compiler: this node's view of the cluster (policies, pods, namespaces),
/// the [`NodePolicy`] compiled from it, and indexes that tell which local pods a change
/// touches, so that a change recompiles only those pods and the result is the same as
/// [`compile()`] of the whole view.
///
/// **Design.** The view changes through `set_*`/`remove_*`, each of which only records what
/// it touches (the local pods to recompile); [`changes`](Self::changes) recompiles those
/// pods and returns the difference from its previous output. What a change touches:
///
/// - a policy: the local pods of its namespace it selects, before and after (when its pod
///   selector is unchanged — a rule change — the pods it selected, from an index; otherwise
///   its namespace's local pods are matched against the new selector);
/// - a pod's labels or addresses (any node's): the local pods selected by a policy one of
///   whose pod or namespace selector peers selects that pod before or after the change
///   (only policies with such peers are looked at, from an index); a local pod also itself
///   (its selecting policies found again when its labels change);
/// - a namespace's labels: the local pods selected by a policy with a namespace selector
///   peer that matches the namespace's labels before or after.
///
/// Recompiling one pod costs what [`compile()`] spends on it (its selecting policies' rules;
/// a pod or namespace selector peer looks at every pod of the cluster), so a rule change
/// costs the same whatever the number of other rules and policies; a pod's or namespace's
/// change grows with the policies that have selector peers (each is matched against it).
/// `compile()` stays the reference: a test checks that random sequences of changes give
/// what it gives for the final view.
#[derive(Debug)]
pub struct NodeCompiler {
    id: u64,
    revision: u64,
    /// Every (valid) policy by id, with its parsed id.
    policies: BTreeMap<String, (PolicyId, NetworkPolicy)>,
    /// The policies with a pod or namespace selector peer.
    peer_policies: BTreeSet<String>,
    /// Every pod, by `<namespace>/<name>`.
    pods: BTreeMap<String, PodInfo>,
    /// The local pods: their host-side interface.
    local: BTreeMap<String, String>,
    /// Namespace labels, as given.
    namespaces: BTreeMap<String, Labels>,
    /// For each local pod, the policies that select it.
    selecting: BTreeMap<String, BTreeSet<String>>,
    /// For each policy, the local pods it selects.
    selected: BTreeMap<String, BTreeSet<String>>,
    /// Local pods by interface name (an interface is in the output while it has one).
    interface_pods: BTreeMap<String, usize>,
    /// The output as of the last [`changes`](Self::changes).
    node: NodePolicy,
    /// Local pods (or former local pods) to recompile.
    dirty: BTreeSet<String>,
    /// Interfaces whose presence may have changed.
    dirty_interfaces: BTreeSet<String>,
}

impl Default for NodeCompiler {
    fn default() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NodeCompiler {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            revision: 0,
            policies: BTreeMap::new(),
            peer_policies: BTreeSet::new(),
            pods: BTreeMap::new(),
            local: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            selecting: BTreeMap::new(),
            selected: BTreeMap::new(),
            interface_pods: BTreeMap::new(),
            node: NodePolicy::default(),
            dirty: BTreeSet::new(),
            dirty_interfaces: BTreeSet::new(),
        }
    }
}

/// True when a rule of `p` has a pod or namespace selector peer.
fn has_selector_peer(p: &NetworkPolicy) -> bool {
    selector_peers(p).next().is_some()
}

/// The entries of `map` (keyed `<namespace>/<name>`) of namespace `ns`: a range of the map.
fn in_namespace<'a, V>(map: &'a BTreeMap<String, V>, ns: &str) -> impl Iterator<Item = (&'a String, &'a V)> {
    let prefix = format!("{ns}/");
    map.range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
}

/// Every selector peer of `p`.
fn selector_peers(p: &NetworkPolicy) -> impl Iterator<Item = &Peer> {
    p.ingress
        .iter()
        .flat_map(|r| &r.from)
        .chain(p.egress.iter().flat_map(|r| &r.to))
        .filter(|peer| peer.ip_block.is_none())
}

impl NodeCompiler {
    /// An empty view: no policy, pod or namespace; its output is the empty [`NodePolicy`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The view of `cluster` with the `local` pods of this node, compiled in full (the same
    /// [`NodePolicy`] as [`compile()`], see [`node`](Self::node)); the first
    /// [`changes`](Self::changes) is relative to it. Refuses what `compile()` refuses, and a
    /// pod the cluster lists twice.
    pub fn from_cluster(cluster: &Cluster, local: &[LocalPod]) -> Result<Self, PolicyError> {
        let mut c = Self::new();
        for (id, p) in &cluster.policies {
            let pid = checked_policy(id, p)?;
            c.index_policy(id, p);
            c.policies.insert(id.clone(), (pid, p.clone()));
        }
        for pod in &cluster.pods {
            let key = format!("{}/{}", pod.namespace, pod.name);
            if c.pods.insert(key.clone(), pod.clone()).is_some() {
                return Err(PolicyError::invalid(format!("pod {key}"), "listed twice"));
            }
        }
        c.namespaces = cluster.namespaces.clone();
        for lp in local {
            let key = format!("{}/{}", lp.namespace, lp.name);
            if !c.pods.contains_key(&key) {
                return Err(PolicyError::invalid(
                    format!("local pod {key}"),
                    "not among the cluster's pods",
                ));
            }
            c.set_local(&key, Some(lp.interface.clone()), true);
        }
        c.changes();
        Ok(c)
    }

    /// The output as of the last [`changes`](Self::changes) (or of
    /// [`from_cluster`](Self::from_cluster)).
    pub fn node(&self) -> &NodePolicy {
        &self.node
    }

    /// The number of policies in the view.
    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// The number of local pods in the view.
    pub fn local_count(&self) -> usize {
        self.local.len()
    }

    /// Add or replace policy `id` (`<namespace>/<name>`). Refuses an invalid id or policy
    /// (as [`compile()`] does), leaving the view as it was.
    pub fn set_policy(&mut self, id: &str, policy: NetworkPolicy) -> Result<(), PolicyError> {
        let pid = checked_policy(id, &policy)?;
        let same_selector = match self.policies.get(id) {
            Some((_, old)) if *old == policy => return Ok(()),
            Some((_, old)) => old.pod_selector == policy.pod_selector,
            None => false,
        };
        self.index_policy(id, &policy);
        if same_selector {
            // The same pods: only they change.
            if let Some(sel) = self.selected.get(id) {
                self.dirty.extend(sel.iter().cloned());
            }
        } else {
            let locals: Vec<String> = in_namespace(&self.local, &pid.namespace)
                .map(|(k, _)| k.clone())
                .collect();
            let mut now = BTreeSet::new();
            for key in locals {
                let Some(pod) = self.pods.get(&key).filter(|p| p.namespace == pid.namespace) else {
                    continue;
                };
                if policy.pod_selector.matches(&pod.labels) {
                    self.selecting.entry(key.clone()).or_default().insert(id.to_string());
                    now.insert(key);
                } else if let Some(s) = self.selecting.get_mut(&key) {
                    s.remove(id);
                }
            }
            let before = self.selected.insert(id.to_string(), now.clone()).unwrap_or_default();
            self.dirty.extend(before.union(&now).cloned());
        }
        self.policies.insert(id.to_string(), (pid, policy));
        Ok(())
    }

    /// Remove policy `id` (nothing when it is not in the view).
    pub fn remove_policy(&mut self, id: &str) {
        if self.policies.remove(id).is_none() {
            return;
        }
        self.peer_policies.remove(id);
        for key in self.selected.remove(id).unwrap_or_default() {
            if let Some(s) = self.selecting.get_mut(&key) {
                s.remove(id);
            }
            self.dirty.insert(key);
        }
    }

    /// Add or replace a pod of the cluster; `interface`: it runs on this node, with this
    /// host-side interface (`None`: on another node).
    pub fn set_pod(&mut self, pod: PodInfo, interface: Option<String>) {
        let key = format!("{}/{}", pod.namespace, pod.name);
        let old = self.pods.insert(key.clone(), pod);
        let new = &self.pods[&key];
        let peer_same = old.as_ref().is_some_and(|o| o.labels == new.labels && o.ips == new.ips);
        if !peer_same {
            let new = new.clone();
            self.touch_peer(old.as_ref());
            self.touch_peer(Some(&new));
        }
        let labels_same = old.as_ref().is_some_and(|o| o.labels == self.pods[&key].labels);
        let was_local = self.local.contains_key(&key);
        if interface.is_some() || was_local {
            if !peer_same || self.local.get(&key) != interface.as_ref() {
                self.dirty.insert(key.clone());
            }
            self.set_local(&key, interface, !labels_same || !was_local);
        }
    }

    /// Remove pod `<namespace>/<name>` (nothing when it is not in the view).
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let key = format!("{namespace}/{name}");
        let Some(old) = self.pods.remove(&key) else { return };
        self.touch_peer(Some(&old));
        if self.local.contains_key(&key) {
            self.set_local(&key, None, false);
        }
    }

    /// Set namespace `name`'s labels ([`NAMESPACE_NAME_LABEL`] is added when missing).
    pub fn set_namespace(&mut self, name: &str, labels: Labels) {
        let before = effective_labels(name, self.namespaces.get(name));
        self.namespaces.insert(name.to_string(), labels);
        self.touch_namespace(name, before);
    }

    /// Remove namespace `name`'s labels (it keeps [`NAMESPACE_NAME_LABEL`]).
    pub fn remove_namespace(&mut self, name: &str) {
        let before = effective_labels(name, self.namespaces.get(name));
        if self.namespaces.remove(name).is_some() {
            self.touch_namespace(name, before);
        }
    }

    /// Recompile the local pods the changes since the last call touched, and return the
    /// difference between the output before and after ([`node`](Self::node) is the after).
    pub fn changes(&mut self) -> NodeChanges {
        let from = Revision {
            compiler: self.id,
            number: self.revision,
        };
        self.revision += 1;
        let mut out = NodeChanges {
            from,
            to: Revision {
                compiler: self.id,
                number: self.revision,
            },
            pods: Vec::new(),
            interfaces_added: Vec::new(),
            interfaces_removed: Vec::new(),
        };
        for key in std::mem::take(&mut self.dirty) {
            let after = self.compile_local(&key);
            let before = self.node.pods.get(&key);
            if before == after.as_ref() {
                continue;
            }
            let before = match &after {
                Some(a) => self.node.pods.insert(key.clone(), a.clone()),
                None => self.node.pods.remove(&key),
            };
            out.pods.push(PodChange { key, before, after });
        }
        for name in std::mem::take(&mut self.dirty_interfaces) {
            let now = self.interface_pods.contains_key(&name);
            if now && self.node.interfaces.insert(name.clone()) {
                out.interfaces_added.push(name);
            } else if !now && self.node.interfaces.remove(&name) {
                out.interfaces_removed.push(name);
            }
        }
        out
    }

    /// What the local pod `key` enforces now (`None`: not isolated, or not local).
    fn compile_local(&self, key: &str) -> Option<PodPolicy> {
        let interface = self.local.get(key)?;
        let pod = self.pods.get(key)?;
        let selecting: Vec<(&str, &NetworkPolicy)> = self
            .selecting
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.policies.get(id))
            .map(|(pid, p)| (pid.namespace.as_str(), p))
            .collect();
        let ns_labels = |ns: &str| effective_labels(ns, self.namespaces.get(ns));
        compile_pod(pod, interface, &selecting, &|| self.pods.values(), &ns_labels)
    }

    /// Index policy `id` by its selector peers (replacing its old entry).
    fn index_policy(&mut self, id: &str, p: &NetworkPolicy) {
        if has_selector_peer(p) {
            self.peer_policies.insert(id.to_string());
        } else {
            self.peer_policies.remove(id);
        }
    }

    /// Make pod `key` local with `interface`, or not local (`None`); `reselect`: find the
    /// policies that select it again (it is new here, or its labels changed).
    fn set_local(&mut self, key: &str, interface: Option<String>, reselect: bool) {
        let old = match &interface {
            Some(i) => self.local.insert(key.to_string(), i.clone()),
            None => self.local.remove(key),
        };
        if old == interface {
            if !reselect {
                return;
            }
        } else {
            self.dirty.insert(key.to_string());
            if let Some(o) = old {
                if let Some(n) = self.interface_pods.get_mut(&o) {
                    *n -= 1;
                    if *n == 0 {
                        self.interface_pods.remove(&o);
                    }
                }
                self.dirty_interfaces.insert(o);
            }
            if let Some(i) = &interface {
                *self.interface_pods.entry(i.clone()).or_default() += 1;
                self.dirty_interfaces.insert(i.clone());
            }
        }
        // The policies that selected it, and those that select it now.
        for id in self.selecting.remove(key).unwrap_or_default() {
            if let Some(s) = self.selected.get_mut(&id) {
                s.remove(key);
            }
        }
        if interface.is_none() {
            return;
        }
        let Some(pod) = self.pods.get(key) else { return };
        let mut now = BTreeSet::new();
        for (id, (pid, p)) in in_namespace(&self.policies, &pod.namespace) {
            if pid.namespace == pod.namespace && p.pod_selector.matches(&pod.labels) {
                now.insert(id.clone());
                self.selected.entry(id.clone()).or_default().insert(key.to_string());
            }
        }
        self.selecting.insert(key.to_string(), now);
        self.dirty.insert(key.to_string());
    }

    /// Mark the local pods whose compiled peers may include `pod` (as it was or is).
    fn touch_peer(&mut self, pod: Option<&PodInfo>) {
        let Some(pod) = pod else { return };
        let pod_ns = effective_labels(&pod.namespace, self.namespaces.get(&pod.namespace));
        for id in &self.peer_policies {
            let Some((pid, p)) = self.policies.get(id) else {
                continue;
            };
            if selector_peers(p).any(|peer| peer_selects(peer, &pid.namespace, pod, &pod_ns)) {
                if let Some(sel) = self.selected.get(id) {
                    self.dirty.extend(sel.iter().cloned());
                }
            }
        }
    }

    /// Mark the local pods whose compiled peers depend on namespace `name`'s labels, which
    /// were `before` (effective).
    fn touch_namespace(&mut self, name: &str, before: Labels) {
        let after = effective_labels(name, self.namespaces.get(name));
        if before == after {
            return;
        }
        for id in &self.peer_policies {
            let Some((_, p)) = self.policies.get(id) else { continue };
            let hit = selector_peers(p).any(|peer| {
                peer.namespace_selector
                    .as_ref()
                    .is_some_and(|s| s.matches(&before) || s.matches(&after))
            });
            if hit {
                if let Some(sel) = self.selected.get(id) {
                    self.dirty.extend(sel.iter().cloned());
                }
            }
        }
    }
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
fn peer_ranges<'a, I: Iterator<Item = &'a PodInfo>>(
    pods: &dyn Fn() -> I,
    ns_labels: &dyn Fn(&str) -> Labels,
    policy_ns: &str,
    peers: &[Peer],
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
        // Whether the namespace selector matches, by namespace (asked once each).
        let mut ns_match: HashMap<&str, bool> = HashMap::new();
        for pod in pods() {
            let ns_ok = match &peer.namespace_selector {
                None => pod.namespace == policy_ns,
                Some(s) => *ns_match
                    .entry(pod.namespace.as_str())
                    .or_insert_with(|| s.matches(&ns_labels(&pod.namespace))),
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

/// Whether `peer` (of a policy of namespace `policy_ns`) selects `pod`, whose namespace has
/// the labels `pod_ns_labels` (with [`NAMESPACE_NAME_LABEL`]); an ipBlock selects no pod by
/// name (its addresses do not depend on the pods).
fn peer_selects(peer: &Peer, policy_ns: &str, pod: &PodInfo, pod_ns_labels: &Labels) -> bool {
    if peer.ip_block.is_some() {
        return false;
    }
    let ns_ok = match &peer.namespace_selector {
        None => pod.namespace == policy_ns,
        Some(s) => s.matches(pod_ns_labels),
    };
    ns_ok && peer.pod_selector.as_ref().is_none_or(|s| s.matches(&pod.labels))
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

    /// A small deterministic generator (xorshift) for the random change sequences.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
            of[self.below(of.len())]
        }
    }

    fn random_labels(r: &mut Rng) -> Labels {
        let mut l = Labels::new();
        for key in ["app", "team"] {
            if r.below(3) > 0 {
                l.insert(key.into(), r.pick(&["x", "y", "z"]).into());
            }
        }
        l
    }

    fn random_selector(r: &mut Rng) -> LabelSelector {
        use super::super::model::{LabelSelectorRequirement, Operator};
        let mut s = LabelSelector::default();
        match r.below(4) {
            0 => {}
            1 => {
                s.match_labels
                    .insert(r.pick(&["app", "team"]).into(), r.pick(&["x", "y", "z"]).into());
            }
            2 => s.match_expressions.push(LabelSelectorRequirement {
                key: r.pick(&["app", "team"]).into(),
                operator: Operator::NotIn,
                values: vec![r.pick(&["x", "y"]).into()],
            }),
            _ => {
                s.match_labels
                    .insert(NAMESPACE_NAME_LABEL.into(), r.pick(&["a", "b", "c"]).into());
            }
        }
        s
    }

    fn random_peer(r: &mut Rng) -> Peer {
        match r.below(4) {
            0 => Peer {
                pod_selector: Some(random_selector(r)),
                ..Default::default()
            },
            1 => Peer {
                namespace_selector: Some(random_selector(r)),
                ..Default::default()
            },
            2 => Peer {
                pod_selector: Some(random_selector(r)),
                namespace_selector: Some(random_selector(r)),
                ip_block: None,
            },
            _ => block(r.pick(&["10.0.0.0/30", "10.0.0.0/24", "fd00::/126"]), &[]),
        }
    }

    fn random_policy(r: &mut Rng) -> NetworkPolicy {
        let rule = |r: &mut Rng| {
            let peers = (0..r.below(3)).map(|_| random_peer(r)).collect();
            let ports = (0..r.below(2)).map(|_| tcp(80 + r.below(3) as u16)).collect();
            (peers, ports)
        };
        let mut p = NetworkPolicy {
            pod_selector: random_selector(r),
            ..Default::default()
        };
        for _ in 0..r.below(3) {
            let (from, ports) = rule(r);
            p.ingress.push(IngressRule { from, ports });
        }
        for _ in 0..r.below(3) {
            let (to, ports) = rule(r);
            p.egress.push(EgressRule { to, ports });
        }
        p.policy_types = match r.below(4) {
            0 => vec![],
            1 => vec![PolicyType::Ingress],
            2 => vec![PolicyType::Egress],
            _ => vec![PolicyType::Ingress, PolicyType::Egress],
        };
        p
    }

    /// The incremental compiler's view as a [`Cluster`] and local pods (for [`compile`]).
    fn reference(pods: &BTreeMap<String, (PodInfo, Option<String>)>, c: &Cluster) -> NodePolicy {
        let mut cluster = c.clone();
        cluster.pods = pods.values().map(|(p, _)| p.clone()).collect();
        let local: Vec<LocalPod> = pods
            .values()
            .filter_map(|(p, i)| {
                Some(LocalPod {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    interface: i.clone()?,
                })
            })
            .collect();
        compile(&cluster, &local).unwrap()
    }

    #[test]
    fn random_changes_through_the_node_compiler_give_what_compile_gives() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..150 {
            let mut nc = NodeCompiler::new();
            let mut view = Cluster::default();
            let mut pods: BTreeMap<String, (PodInfo, Option<String>)> = BTreeMap::new();
            let mut last = NodePolicy::default();
            for step in 0..40 {
                match r.below(9) {
                    0 | 1 => {
                        let id = format!("{}/p{}", r.pick(&["a", "b"]), r.below(4));
                        let p = random_policy(&mut r);
                        nc.set_policy(&id, p.clone()).unwrap();
                        view.policies.insert(id, p);
                    }
                    2 => {
                        let id = format!("{}/p{}", r.pick(&["a", "b"]), r.below(4));
                        nc.remove_policy(&id);
                        view.policies.remove(&id);
                    }
                    3..=5 => {
                        let (ns, name) = (r.pick(&["a", "b", "c"]), format!("q{}", r.below(5)));
                        let ips = match r.below(4) {
                            0 => vec![],
                            1 => vec![ip("fd00::1")],
                            // Addresses may be shared by two pods.
                            _ => vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, r.below(4) as u8))],
                        };
                        let pod = PodInfo {
                            namespace: ns.into(),
                            name,
                            ips,
                            labels: random_labels(&mut r),
                        };
                        let local = (r.below(2) == 0).then(|| format!("veth{}", r.below(4)));
                        nc.set_pod(pod.clone(), local.clone());
                        pods.insert(format!("{}/{}", pod.namespace, pod.name), (pod, local));
                    }
                    6 => {
                        let (ns, name) = (r.pick(&["a", "b", "c"]), format!("q{}", r.below(5)));
                        nc.remove_pod(ns, &name);
                        pods.remove(&format!("{ns}/{name}"));
                    }
                    7 => {
                        let ns = r.pick(&["a", "b", "c"]);
                        let l = random_labels(&mut r);
                        nc.set_namespace(ns, l.clone());
                        view.namespaces.insert(ns.into(), l);
                    }
                    _ => {
                        let ns = r.pick(&["a", "b", "c"]);
                        nc.remove_namespace(ns);
                        view.namespaces.remove(ns);
                    }
                }
                if r.below(3) == 0 {
                    continue; // a burst: several changes before the output is asked for
                }
                let changes = nc.changes();
                let want = reference(&pods, &view);
                assert_eq!(nc.node(), &want, "round {round}, step {step}");
                // The changes take the previous output to this one.
                let mut replayed = last.clone();
                for c in &changes.pods {
                    assert_eq!(
                        replayed.pods.get(&c.key),
                        c.before.as_ref(),
                        "round {round}, step {step}"
                    );
                    match &c.after {
                        Some(a) => replayed.pods.insert(c.key.clone(), a.clone()),
                        None => replayed.pods.remove(&c.key),
                    };
                }
                for i in &changes.interfaces_added {
                    assert!(replayed.interfaces.insert(i.clone()));
                }
                for i in &changes.interfaces_removed {
                    assert!(replayed.interfaces.remove(i));
                }
                assert_eq!(replayed, want, "round {round}, step {step}");
                // A full compile of the same view gives the same.
                let mut cluster = view.clone();
                cluster.pods = pods.values().map(|(p, _)| p.clone()).collect();
                let local: Vec<LocalPod> = pods
                    .values()
                    .filter_map(|(p, i)| {
                        Some(LocalPod {
                            namespace: p.namespace.clone(),
                            name: p.name.clone(),
                            interface: i.clone()?,
                        })
                    })
                    .collect();
                assert_eq!(NodeCompiler::from_cluster(&cluster, &local).unwrap().node(), &want);
                last = want;
            }
        }
    }

    #[test]
    fn the_node_compiler_refuses_what_compile_refuses() {
        let mut nc = NodeCompiler::new();
        assert!(nc.set_policy("no-slash", NetworkPolicy::default()).is_err());
        let mut bad = NetworkPolicy::default();
        bad.ingress.push(IngressRule {
            from: vec![Peer::default()],
            ports: vec![],
        });
        assert!(nc.set_policy("a/bad", bad).is_err());
        assert_eq!(nc.policy_count(), 0);
        let (mut c, local) = cluster(&[]);
        let twice = c.pods[0].clone();
        c.pods.push(twice);
        assert!(NodeCompiler::from_cluster(&c, &local).is_err());
        let (c, mut local) = cluster(&[]);
        local[0].name = "ghost".into();
        assert!(NodeCompiler::from_cluster(&c, &local).is_err());
        // Nothing changed, nothing to do.
        assert!(nc.changes().is_empty());
    }
}
