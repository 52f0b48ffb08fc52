//! Network policy in nftables: one table, `inet netkit-policy`, whose rules never change; every
//! pod, peer and port is an element of its sets, so neither the cost of a packet nor the cost
//! of a change grows with the number of policies. [`PolicyFirewall::apply`] sends the
//! difference between what the kernel holds and a new [`NodePolicy`] as element deletions and
//! additions, one nf_tables transaction.
//!
//! ```text
//!                  pod ──veth── host ──(routed mode: routed)──────────────┐
//!                                 └──(bridge mode: cni0, bridged; the      │
//!                                     bridge has nf_call_iptables and      │
//!                                     nf_call_ip6tables on, so br_netfilter│
//!                                     runs the inet hooks and conntrack)   │
//!                                                                          ▼
//! forward (filter):  ct state established,related accept     ◄── replies, then the rest of
//!                    jump egress                                 an allowed connection
//!                    jump ingress
//! input (filter):    ct state established,related accept     ◄── pod to the node itself
//!                    jump egress
//! (output: nothing)                                           ◄── node to its pods (probes)
//!
//! egress:   ip saddr . ip daddr . meta l4proto . th dport @exact_out4 return
//!           ip6 saddr . ip6 daddr . meta l4proto . th dport @exact_out6 return
//!           ip saddr . ip daddr . meta l4proto . th dport @allow_out4 return
//!           ip6 saddr . ip6 daddr . meta l4proto . th dport @allow_out6 return
//!           ip saddr @isolated_out4 drop
//!           ip6 saddr @isolated_out6 drop
//! ingress:  ip daddr . ip saddr . meta l4proto . th dport @exact_in4 return
//!           ip6 daddr . ip6 saddr . meta l4proto . th dport @exact_in6 return
//!           ip daddr . ip saddr . meta l4proto . th dport @allow_in4 return
//!           ip6 daddr . ip6 saddr . meta l4proto . th dport @allow_in6 return
//!           ip daddr @isolated_in4 drop
//!           ip6 daddr @isolated_in6 drop
//!
//! isolated_in4/out4 { ipv4_addr }              the local pods a policy isolates
//! exact_in4/out4 { ipv4_addr . ipv4_addr . inet_proto . inet_service }   (a hash set)
//!                   pod . peer . protocol . port: an allowed box of one address, protocol, port
//! allow_in4/out4 { ipv4_addr . ipv4_addr . inet_proto . inet_service; flags interval }
//!                   pod . peer range . protocol range . destination port range: the other boxes
//!
//! Removing an element from a large interval set (pipapo) costs the kernel time that grows with
//! the set (28 ms at 11,000 elements, see BENCHMARKS.md); single-address single-port boxes —
//! what pod selectors and /32 peers on a port make — go to the hash sets, whose changes cost
//! the same at any size.
//! (and the same with ipv6_addr)
//! ```
//!
//! A new connection passes the egress check of its source and the ingress check of its
//! destination (each only for a local pod isolated in that direction), wherever it is
//! forwarded: between two pods of this node (bridged or routed), to or from other nodes'
//! pods, through the gateway. The allow lookup comes before the isolation lookup, so a packet
//! whose ports cannot be read (`th dport` fails and the rule does not match) is dropped for an
//! isolated pod, not let through. The allowed boxes of a pod are disjoint (the kernel's
//! interval sets refuse overlapping elements), see [`super::compile()`].
//!
//! **Bridged traffic.** The bridge family has connection tracking only with
//! `nf_conntrack_bridge` (`CONFIG_NF_CONNTRACK_BRIDGE`); without it, a `ct` expression in a
//! bridge table is refused with EPROTO (this is so on the 6.18 kernel netkit is tested on),
//! and a stateless bridge filter cannot tell replies from new connections. So the bridge family
//! is not used: traffic between pods of one bridge goes through the same inet `forward` chain,
//! via `br_netfilter` (`CONFIG_BRIDGE_NETFILTER`), which [`PolicyFirewall::apply`] turns on for
//! each bridge a local pod's interface is a port of ([`NodePolicy::interfaces`]: every local
//! pod, isolated or not), with the bridge's own
//! `nf_call_iptables`/`nf_call_ip6tables` options (so the machine-wide
//! `net.bridge.bridge-nf-call-*` sysctls need not be on). A namespace without `br_netfilter`
//! makes the apply fail with [`PolicyError::Unsupported`] instead of leaving bridged traffic
//! unchecked. Apply when a pod is attached, before a policy selects it: a connection that
//! started while its bridge bypassed conntrack is seen mid-stream as new when a policy comes,
//! and an isolated pod's side of it is then dropped. A side effect, as on any Kubernetes node: bridged IPv4/IPv6 traffic of those
//! bridges also passes the other inet/ip tables and iptables chains of the namespace.
//!
//! **The kernel's state.** The firewall remembers the elements it sent. The first apply after
//! [`PolicyFirewall::open`] (whose table may hold anything: another process's, an older one's)
//! replaces every element in one libnftables transaction (flush the sets, add the elements);
//! the applies after it send only the difference, as one nf_tables netlink batch. When a batch
//! fails (someone deleted the table or flushed a set) the next step is again the full
//! replacement, the table made afresh if it is missing. [`PolicyFirewall::apply`] finds the
//! difference by comparing every element of the new policy with the known ones (its cost
//! grows with the node's elements); [`PolicyFirewall::apply_changes`] takes it from a
//! [`NodeCompiler`](super::NodeCompiler)'s [`NodeChanges`] (the elements of the changed pods
//! only) when the firewall holds the output those changes start from, and is `apply` otherwise.
//! Each known element is counted by the pods (and addresses) that need it, and goes only when
//! none needs it any more. Pods sharing an address with different
//! rules cannot both be enforced (their interval elements would overlap, which the kernel
//! refuses); [`PolicyController`](super::PolicyController) enforces only the newest local
//! record of an address.
//!
//! iptables is not supported: [`PolicyFirewall::open`] with [`Driver::Iptables`] fails with
//! "network policy needs nftables".

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;

use super::compile::{Allowed, Direction, NodeChanges, NodePolicy, PodPolicy, Revision};
use super::PolicyError;
use crate::firewall::nftables::elements::{self, Field};
use crate::firewall::nftables::{libnft, netlink};
use crate::firewall::Driver;
use crate::{Handle, NetNs};

/// The default table name.
pub const DEFAULT_TABLE: &str = "netkit-policy";

/// The table's comment; a table with another one (an older layout) is made afresh.
const COMMENT: &str = "managed by netkit: network policy (layout 2: exact sets)";

/// How to open a [`PolicyFirewall`].
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// The `inet` table's name (default [`DEFAULT_TABLE`]).
    pub table: String,
    /// The firewall driver the node uses (`None`: nftables). Only nftables can enforce policy.
    pub driver: Option<Driver>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            table: DEFAULT_TABLE.to_string(),
            driver: None,
        }
    }
}

/// What one [`PolicyFirewall::apply`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Elements added.
    pub added: usize,
    /// Elements removed (for a full replacement: the elements netkit knew of, 0 after open).
    pub removed: usize,
    /// Every element was replaced (the first apply, or after a failed batch), not a diff.
    pub replaced: bool,
    /// Bridges whose `nf_call_iptables`/`nf_call_ip6tables` were turned on.
    pub bridges_enabled: usize,
}

/// One element of the table's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Elem {
    /// A pod address isolated in a direction.
    Isolated(Direction, IpAddr),
    /// An allowed box.
    Allow(Direction, Allowed),
}

impl Elem {
    fn set(&self) -> &'static str {
        use Direction::{Egress, Ingress};
        match *self {
            Elem::Isolated(Ingress, ip) => pick(ip, "isolated_in4", "isolated_in6"),
            Elem::Isolated(Egress, ip) => pick(ip, "isolated_out4", "isolated_out6"),
            Elem::Allow(Ingress, a) if a.is_exact() => pick(a.pod, "exact_in4", "exact_in6"),
            Elem::Allow(Egress, a) if a.is_exact() => pick(a.pod, "exact_out4", "exact_out6"),
            Elem::Allow(Ingress, a) => pick(a.pod, "allow_in4", "allow_in6"),
            Elem::Allow(Egress, a) => pick(a.pod, "allow_out4", "allow_out6"),
        }
    }

    fn to_element(self) -> elements::Element {
        let (key, key_end) = match self {
            Elem::Isolated(_, ip) => (vec![Field::Ip(ip)], None),
            Elem::Allow(_, a) if a.is_exact() => (
                vec![
                    Field::Ip(a.pod),
                    Field::Ip(a.peer.0),
                    Field::Proto(a.proto.0),
                    Field::Port(a.port.0),
                ],
                None,
            ),
            Elem::Allow(_, a) => (
                vec![
                    Field::Ip(a.pod),
                    Field::Ip(a.peer.0),
                    Field::Proto(a.proto.0),
                    Field::Port(a.port.0),
                ],
                Some(vec![
                    Field::Ip(a.pod),
                    Field::Ip(a.peer.1),
                    Field::Proto(a.proto.1),
                    Field::Port(a.port.1),
                ]),
            ),
        };
        elements::Element {
            set: self.set(),
            key,
            key_end,
            data: None,
            comment: String::new(),
        }
    }

    /// The element in nft syntax (ranges as `a-b`).
    fn to_nft(self) -> String {
        match self {
            Elem::Isolated(_, ip) => ip.to_string(),
            Elem::Allow(_, a) if a.is_exact() => format!("{} . {} . {} . {}", a.pod, a.peer.0, a.proto.0, a.port.0),
            Elem::Allow(_, a) => format!(
                "{} . {}-{} . {}-{} . {}-{}",
                a.pod, a.peer.0, a.peer.1, a.proto.0, a.proto.1, a.port.0, a.port.1
            ),
        }
    }
}

fn pick(ip: IpAddr, v4: &'static str, v6: &'static str) -> &'static str {
    if ip.is_ipv4() {
        v4
    } else {
        v6
    }
}

/// The sets of the table.
const SETS: [&str; 12] = [
    "isolated_in4",
    "isolated_out4",
    "isolated_in6",
    "isolated_out6",
    "exact_in4",
    "exact_out4",
    "exact_in6",
    "exact_out6",
    "allow_in4",
    "allow_out4",
    "allow_in6",
    "allow_out6",
];

impl Allowed {
    /// One peer address, one protocol, one port: an element of a hash set (`exact_*`), whose
    /// changes cost the same whatever its size, rather than of the interval set.
    fn is_exact(&self) -> bool {
        self.peer.0 == self.peer.1 && self.proto.0 == self.proto.1 && self.port.0 == self.port.1
    }
}

/// The elements one pod's policy needs (an element may come twice when two of its
/// addresses are equal).
fn pod_elements(p: &PodPolicy) -> impl Iterator<Item = Elem> + '_ {
    [
        (Direction::Ingress, p.ingress_isolated, &p.ingress),
        (Direction::Egress, p.egress_isolated, &p.egress),
    ]
    .into_iter()
    .filter(|(_, isolated, _)| *isolated)
    .flat_map(move |(dir, _, allowed)| {
        p.ips
            .iter()
            .map(move |ip| Elem::Isolated(dir, *ip))
            .chain(allowed.iter().map(move |a| Elem::Allow(dir, *a)))
    })
}

/// Every element `policy` needs, each with the number of pods (and addresses) that need it:
/// two pods may share an address, and an element goes only when none needs it any more.
fn elements_of(policy: &NodePolicy) -> BTreeMap<Elem, u32> {
    let mut out = BTreeMap::new();
    for p in policy.pods.values() {
        for e in pod_elements(p) {
            *out.entry(e).or_insert(0) += 1;
        }
    }
    out
}

/// Record the new `counts` of changed elements in `known` (a count of 0: gone).
fn settle(known: &mut BTreeMap<Elem, u32>, counts: Vec<(Elem, u32)>) {
    for (e, n) in counts {
        if n == 0 {
            known.remove(&e);
        } else {
            known.insert(e, n);
        }
    }
}

/// The elements to add and to remove, and the new counts of the changed elements, when the
/// kernel holds `known` and the counts change by `delta`; `None` when `delta` removes what
/// `known` lacks (it was not computed from what the kernel holds).
#[allow(clippy::type_complexity)]
fn diff_counts(
    known: &BTreeMap<Elem, u32>,
    delta: BTreeMap<Elem, i64>,
) -> Option<(Vec<Elem>, Vec<Elem>, Vec<(Elem, u32)>)> {
    let (mut added, mut removed, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for (e, d) in delta {
        if d == 0 {
            continue;
        }
        let was = i64::from(known.get(&e).copied().unwrap_or(0));
        let now = u32::try_from(was + d).ok()?;
        if was == 0 && now > 0 {
            added.push(e);
        } else if was > 0 && now == 0 {
            removed.push(e);
        }
        counts.push((e, now));
    }
    Some((added, removed, counts))
}

/// The elements of `wanted` not in `known` and those of `known` not in `wanted`, both sorted
/// (one pass over the two sorted sequences).
fn sorted_difference<'a>(
    wanted: impl Iterator<Item = &'a Elem>,
    known: impl Iterator<Item = &'a Elem>,
) -> (Vec<Elem>, Vec<Elem>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut w, mut k) = (wanted.peekable(), known.peekable());
    loop {
        match (w.peek(), k.peek()) {
            (Some(a), Some(b)) if a == b => {
                w.next();
                k.next();
            }
            (Some(a), Some(b)) if a < b => {
                added.push(**a);
                w.next();
            }
            (_, Some(b)) => {
                removed.push(**b);
                k.next();
            }
            (Some(a), None) => {
                added.push(**a);
                w.next();
            }
            (None, None) => return (added, removed),
        }
    }
}

/// The table (its fixed part, sets empty) as one nft block, for a table that does not exist.
pub fn ruleset(table: &str) -> String {
    let mut s = format!("table inet {table} {{\n    comment \"{COMMENT}\"\n");
    for v in ["4", "6"] {
        let addr = if v == "4" { "ipv4_addr" } else { "ipv6_addr" };
        for dir in ["in", "out"] {
            let _ = writeln!(s, "    set isolated_{dir}{v} {{ type {addr}; }}");
            let _ = writeln!(
                s,
                "    set exact_{dir}{v} {{ type {addr} . {addr} . inet_proto . inet_service; }}"
            );
            let _ = writeln!(
                s,
                "    set allow_{dir}{v} {{ type {addr} . {addr} . inet_proto . inet_service; flags interval; }}"
            );
        }
    }
    s.push_str(
        r#"    chain egress {
        ip saddr . ip daddr . meta l4proto . th dport @exact_out4 return
        ip6 saddr . ip6 daddr . meta l4proto . th dport @exact_out6 return
        ip saddr . ip daddr . meta l4proto . th dport @allow_out4 return
        ip6 saddr . ip6 daddr . meta l4proto . th dport @allow_out6 return
        ip saddr @isolated_out4 drop comment "egress denied by network policy"
        ip6 saddr @isolated_out6 drop comment "egress denied by network policy"
    }
    chain ingress {
        ip daddr . ip saddr . meta l4proto . th dport @exact_in4 return
        ip6 daddr . ip6 saddr . meta l4proto . th dport @exact_in6 return
        ip daddr . ip saddr . meta l4proto . th dport @allow_in4 return
        ip6 daddr . ip6 saddr . meta l4proto . th dport @allow_in6 return
        ip daddr @isolated_in4 drop comment "ingress denied by network policy"
        ip6 daddr @isolated_in6 drop comment "ingress denied by network policy"
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state established,related accept
        jump egress
        jump ingress
    }
    chain input {
        type filter hook input priority filter; policy accept;
        ct state established,related accept
        jump egress
    }
}
"#,
    );
    s
}

/// The enforcement of [`NodePolicy`]s in one namespace (see the [module docs](self)).
/// Cheap to clone; applies are serialized.
#[derive(Clone)]
pub struct PolicyFirewall {
    inner: Arc<Inner>,
}

struct Inner {
    ns: NetNs,
    table: String,
    socket: netlink::NftSocket,
    handle: Handle,
    /// What the kernel holds, as far as this firewall knows (`None`: unknown, replace all).
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The elements the kernel holds, with the number of pods that need each.
    known: Option<BTreeMap<Elem, u32>>,
    /// The [`NodeCompiler`](super::NodeCompiler) output the kernel holds, when the last
    /// apply was [`PolicyFirewall::apply_changes`] and it succeeded.
    applied: Option<Revision>,
    /// Bridges already given br_netfilter.
    bridges: HashSet<u32>,
    /// Pod interfaces already looked at (their bridge, if any, is in `bridges`): an apply
    /// looks up only interfaces that are new, not every local pod's each time.
    seen: HashSet<String>,
    /// Pod interfaces that did not exist when looked at: every apply looks them up again.
    missing: BTreeSet<String>,
}

impl PolicyFirewall {
    /// Open the policy firewall of `ns`: make its table when missing (or of another layout).
    /// Refuses the iptables driver and a namespace without nftables
    /// ([`PolicyError::Unsupported`]).
    pub async fn open(ns: &NetNs, options: PolicyOptions) -> Result<PolicyFirewall, PolicyError> {
        if options.driver == Some(Driver::Iptables) {
            return Err(PolicyError::Unsupported(
                "network policy needs nftables (the firewall driver is iptables)".into(),
            ));
        }
        // The name goes into nft text: letters, digits, '_' and '-' only.
        let t = &options.table;
        if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(PolicyError::invalid(
                format!("policy table {t:?}"),
                "1-64 letters, digits, '_' or '-'",
            ));
        }
        let unsupported = |why: String| PolicyError::Unsupported(format!("network policy needs nftables: {why}"));
        libnft::available().map_err(unsupported)?;
        let (ns2, table) = (ns.clone(), options.table.clone());
        let socket = tokio::task::spawn_blocking(move || -> Result<_, PolicyError> {
            let socket = netlink::NftSocket::open(&ns2).map_err(|e| unsupported(e.to_string()))?;
            let found = socket.table_comment(&table).map_err(|e| unsupported(e.to_string()))?;
            let mut text = String::new();
            match found {
                Some(Some(c)) if c == COMMENT => {}
                Some(_) => {
                    let _ = writeln!(text, "delete table inet {table}");
                    text.push_str(&ruleset(&table));
                }
                None => text.push_str(&ruleset(&table)),
            }
            if !text.is_empty() {
                libnft::run(&ns2, &text).map_err(|reason| kernel(&ns2, "create table", reason))?;
            }
            Ok(socket)
        })
        .await
        .map_err(|e| PolicyError::Aborted(e.to_string()))??;
        let handle = Handle::new(ns).await.map_err(|source| PolicyError::Netlink {
            netns: ns.to_string(),
            source,
        })?;
        Ok(PolicyFirewall {
            inner: Arc::new(Inner {
                ns: ns.clone(),
                table: options.table,
                socket,
                handle,
                state: tokio::sync::Mutex::new(State::default()),
            }),
        })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// Enforce `policy` (replacing what the last apply enforced): the element difference in
    /// one transaction (see the [module docs](self)), after turning br_netfilter on for the
    /// bridges of the node's pods' interfaces. It compares every element of `policy` with
    /// what the kernel holds; [`apply_changes`](Self::apply_changes) sends a
    /// [`NodeCompiler`](super::NodeCompiler)'s changes without that.
    pub async fn apply(&self, policy: &NodePolicy) -> Result<ApplyStats, PolicyError> {
        let mut state = self.inner.state.lock().await;
        self.apply_all(&mut state, policy, None).await
    }

    /// Enforce `node`, the output of a [`NodeCompiler`](super::NodeCompiler), whose last
    /// [`changes`](super::NodeCompiler::changes) are `changes`. When this firewall enforces
    /// the output those changes start from (its last apply was `apply_changes` with the same
    /// compiler's previous changes, and it succeeded), only the elements of the changed pods
    /// are compared and sent, and only new interfaces (and those missing so far) are looked
    /// up: the cost follows the change, not the node. Otherwise (the first apply, another
    /// compiler, a skipped output, a failed apply) it is [`apply`](Self::apply) of `node`.
    pub async fn apply_changes(&self, node: &NodePolicy, changes: &NodeChanges) -> Result<ApplyStats, PolicyError> {
        let mut state = self.inner.state.lock().await;
        let applied = state.applied.take();
        if state.known.is_none() || applied != Some(changes.from) {
            return self.apply_all(&mut state, node, Some(changes.to)).await;
        }
        // The element difference of the changed pods, checked against what the kernel holds.
        let mut delta: BTreeMap<Elem, i64> = BTreeMap::new();
        for c in &changes.pods {
            for e in c.before.iter().flat_map(pod_elements) {
                *delta.entry(e).or_insert(0) -= 1;
            }
            for e in c.after.iter().flat_map(pod_elements) {
                *delta.entry(e).or_insert(0) += 1;
            }
        }
        let Some((added, removed, counts)) = state.known.as_ref().and_then(|known| diff_counts(known, delta)) else {
            // Not what this firewall sent: compare everything instead.
            return self.apply_all(&mut state, node, Some(changes.to)).await;
        };
        // Taken while anything may fail or be cancelled (an await): a failure or a dropped
        // future leaves no known state, so the next apply replaces everything.
        let Some(mut known) = state.known.take() else {
            return self.apply_all(&mut state, node, Some(changes.to)).await;
        };
        let State {
            bridges, seen, missing, ..
        } = &mut *state;
        for name in &changes.interfaces_removed {
            seen.remove(name);
            missing.remove(name);
        }
        let candidates: BTreeSet<String> = changes
            .interfaces_added
            .iter()
            .filter(|n| !seen.contains(*n))
            .chain(missing.iter())
            .cloned()
            .collect();
        let mut stats = ApplyStats {
            bridges_enabled: self.enable_bridges(candidates, bridges, seen, missing).await?,
            ..Default::default()
        };
        if added.is_empty() && removed.is_empty() {
            // Only counts changed (an element another pod needs too): nothing to send, but
            // the counts must follow, or a later removal would take an element still needed.
            settle(&mut known, counts);
            state.known = Some(known);
            state.applied = Some(changes.to);
            return Ok(stats);
        }
        let inner = self.inner.clone();
        let (a, r) = (added.len(), removed.len());
        let sent = tokio::task::spawn_blocking(move || inner.send_diff(&added, &removed))
            .await
            .map_err(|e| PolicyError::Aborted(e.to_string()))?;
        match sent {
            Ok(true) => {
                settle(&mut known, counts);
                state.known = Some(known);
                state.applied = Some(changes.to);
                (stats.added, stats.removed) = (a, r);
                Ok(stats)
            }
            // The table or a set went: replace everything.
            Ok(false) => {
                let full = self.apply_all(&mut state, node, Some(changes.to)).await?;
                stats.added = full.added;
                stats.removed = full.removed;
                stats.replaced = full.replaced;
                stats.bridges_enabled += full.bridges_enabled;
                Ok(stats)
            }
            Err(e) => Err(e),
        }
    }

    /// [`apply`](Self::apply) with the state locked; `to`: the compiler output `policy` is,
    /// if it is one.
    async fn apply_all(
        &self,
        state: &mut State,
        policy: &NodePolicy,
        to: Option<Revision>,
    ) -> Result<ApplyStats, PolicyError> {
        state.applied = None;
        let State {
            bridges, seen, missing, ..
        } = state;
        seen.retain(|name| policy.interfaces.contains(name));
        let candidates = policy
            .interfaces
            .iter()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        let mut stats = ApplyStats {
            bridges_enabled: self.enable_bridges(candidates, bridges, seen, missing).await?,
            ..Default::default()
        };
        let wanted = elements_of(policy);
        let inner = self.inner.clone();
        let known = state.known.take();
        let (result, known) = tokio::task::spawn_blocking(move || {
            let r = inner.apply_blocking(known.as_ref(), &wanted);
            let known = match &r {
                Ok(_) => Some(wanted),
                // A failed diff: the kernel is as before (the batch is all or nothing), but
                // the next apply replaces everything, in case the table went.
                Err(_) => None,
            };
            (r, known)
        })
        .await
        .map_err(|e| PolicyError::Aborted(e.to_string()))?;
        state.known = known;
        let (added, removed, replaced) = result?;
        (stats.added, stats.removed, stats.replaced) = (added, removed, replaced);
        state.applied = to;
        Ok(stats)
    }

    /// Remove the table (no pod is isolated any more). The next apply makes it again.
    pub async fn clear(&self) -> Result<(), PolicyError> {
        let mut state = self.inner.state.lock().await;
        state.known = None;
        let (ns, t) = (self.inner.ns.clone(), self.inner.table.clone());
        tokio::task::spawn_blocking(move || {
            libnft::run(&ns, &format!("add table inet {t}\ndelete table inet {t}\n"))
                .map(drop)
                .map_err(|reason| kernel(&ns, "remove table", reason))
        })
        .await
        .map_err(|e| PolicyError::Aborted(e.to_string()))?
    }

    /// Turn on `nf_call_iptables` and `nf_call_ip6tables` of every bridge one of the pod
    /// interfaces `candidates` is a port of (see the module docs); the count of bridges
    /// changed. Each candidate is looked up, and goes to `seen` (not asked about again) or,
    /// when it does not exist yet (a pod being made or deleted), to `missing`, which holds
    /// exactly the candidates that were missing.
    async fn enable_bridges(
        &self,
        candidates: BTreeSet<String>,
        done: &mut HashSet<u32>,
        seen: &mut HashSet<String>,
        missing: &mut BTreeSet<String>,
    ) -> Result<usize, PolicyError> {
        use netlink_packet_route::link::{InfoBridge, InfoData, InfoKind, LinkAttribute, LinkInfo, LinkMessage};
        use netlink_packet_route::RouteNetlinkMessage;
        let h = &self.inner.handle;
        let netns = self.inner.ns.to_string();
        let fail = |op: String, reason: String| PolicyError::Kernel {
            netns: netns.clone(),
            op,
            reason,
            errno: None,
        };
        let mut count = 0;
        missing.clear();
        for name in &candidates {
            if seen.contains(name) {
                continue;
            }
            let link = match h.link_get(name).await {
                Ok(link) => link,
                Err(e) if e.errno() == Some(libc::ENODEV) => {
                    missing.insert(name.clone());
                    continue;
                }
                Err(e) => return Err(fail(format!("look up pod interface {name}"), e.to_string())),
            };
            let Some(master) = link.master else {
                seen.insert(name.clone());
                continue;
            };
            if done.contains(&master) {
                seen.insert(name.clone());
                continue;
            }
            let bridge = h
                .link_get_by_index(master)
                .await
                .map_err(|e| fail(format!("look up the master of {name}"), e.to_string()))?;
            if bridge.kind != crate::LinkKind::Bridge {
                seen.insert(name.clone());
                continue;
            }
            // br_netfilter: its sysctls exist in a namespace only with it.
            let ns = self.inner.ns.clone();
            let br_netfilter = tokio::task::spawn_blocking(move || {
                crate::sysctl::get(&ns, "net.bridge.bridge-nf-call-iptables").is_ok()
            })
            .await
            .map_err(|e| PolicyError::Aborted(e.to_string()))?;
            if !br_netfilter {
                return Err(PolicyError::Unsupported(format!(
                    "pods on bridge {} need br_netfilter (CONFIG_BRIDGE_NETFILTER) for network policy: \
                     the kernel has no bridge connection tracking of its own here",
                    bridge.name
                )));
            }
            let mut msg = LinkMessage::default();
            msg.header.index = master;
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![
                    InfoBridge::NfCallIpTables(true),
                    InfoBridge::NfCallIp6Tables(true),
                ])),
            ]));
            h.ack(RouteNetlinkMessage::NewLink(msg), 0)
                .await
                .map_err(|e| fail(format!("set nf_call_iptables of bridge {}", bridge.name), e.to_string()))?;
            done.insert(master);
            seen.insert(name.clone());
            count += 1;
        }
        Ok(count)
    }
}

fn kernel(ns: &NetNs, op: &str, reason: String) -> PolicyError {
    PolicyError::Kernel {
        netns: ns.to_string(),
        op: op.to_string(),
        errno: libnft::errno_of(&reason),
        reason: reason.trim().to_string(),
    }
}

impl Inner {
    /// The diff as one netlink batch when the kernel's elements are `known`, else (or when
    /// the batch fails) everything replaced. (added, removed, replaced).
    fn apply_blocking(
        &self,
        known: Option<&BTreeMap<Elem, u32>>,
        wanted: &BTreeMap<Elem, u32>,
    ) -> Result<(usize, usize, bool), PolicyError> {
        let Some(known) = known else {
            return self.replace(wanted).map(|n| (n, 0, true));
        };
        let (added, removed) = sorted_difference(wanted.keys(), known.keys());
        if self.send_diff(&added, &removed)? {
            Ok((added.len(), removed.len(), false))
        } else {
            // The table or a set went (or holds what this firewall did not put there):
            // replace everything, which makes the table again when it is missing.
            self.replace(wanted).map(|n| (n, known.len(), true))
        }
    }

    /// Remove `removed` and add `added`, one netlink batch; `false` when the kernel refused it
    /// because the table or a set is missing or holds other elements (ENOENT, EEXIST: the
    /// caller replaces everything).
    fn send_diff(&self, added: &[Elem], removed: &[Elem]) -> Result<bool, PolicyError> {
        let mut batch = netlink::Batch::new();
        self.push(&mut batch, netlink::OpKind::Destroy, removed)?;
        self.push(&mut batch, netlink::OpKind::Create, added)?;
        if batch.is_empty() {
            return Ok(true);
        }
        match self.socket.send(&batch) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.errno(), Some(libc::ENOENT) | Some(libc::EEXIST)) => Ok(false),
            Err(e) => Err(PolicyError::Kernel {
                netns: self.ns.to_string(),
                op: "apply".into(),
                errno: e.errno(),
                reason: e.to_string(),
            }),
        }
    }

    /// Append `elems` as `kind` operations, one per set.
    fn push(&self, batch: &mut netlink::Batch, kind: netlink::OpKind, elems: &[Elem]) -> Result<(), PolicyError> {
        for set in SETS {
            let els = elems
                .iter()
                .filter(|e| e.set() == set)
                .map(|e| elements::to_netlink(&e.to_element()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PolicyError::invalid("element", e.to_string()))?;
            if els.is_empty() {
                continue;
            }
            match kind {
                netlink::OpKind::Add => batch.add(&self.table, set, els),
                netlink::OpKind::Create => batch.create(&self.table, set, els),
                netlink::OpKind::Destroy => batch.destroy(&self.table, set, els),
            };
        }
        Ok(())
    }

    /// Every set flushed and refilled with `wanted`, one libnftables transaction (the table
    /// made first when it is missing). The number of elements added.
    fn replace(&self, wanted: &BTreeMap<Elem, u32>) -> Result<usize, PolicyError> {
        let t = &self.table;
        let mut text = String::new();
        let found = self.socket.table_comment(t).map_err(|e| PolicyError::Kernel {
            netns: self.ns.to_string(),
            op: "look up table".into(),
            errno: e.errno(),
            reason: e.to_string(),
        })?;
        match found {
            Some(Some(c)) if c == COMMENT => {
                for set in SETS {
                    let _ = writeln!(text, "flush set inet {t} {set}");
                }
            }
            Some(_) => {
                let _ = writeln!(text, "delete table inet {t}");
                text.push_str(&ruleset(t));
            }
            None => text.push_str(&ruleset(t)),
        }
        for set in SETS {
            let mut els = wanted.keys().filter(|e| e.set() == set).map(|e| e.to_nft()).peekable();
            if els.peek().is_none() {
                continue;
            }
            let _ = write!(text, "add element inet {t} {set} {{ ");
            for (i, e) in els.enumerate() {
                if i > 0 {
                    text.push_str(", ");
                }
                text.push_str(&e);
            }
            text.push_str(" }\n");
        }
        libnft::run(&self.ns, &text).map_err(|reason| kernel(&self.ns, "replace elements", reason))?;
        Ok(wanted.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile::PodPolicy;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn elements_of_isolated_directions_only() {
        let a = Allowed {
            pod: ip("10.0.0.1"),
            peer: (ip("10.1.0.0"), ip("10.1.0.255")),
            proto: (6, 6),
            port: (80, 90),
        };
        let mut np = NodePolicy::default();
        np.pods.insert(
            "a/web".into(),
            PodPolicy {
                interface: "veth0".into(),
                ips: vec![ip("10.0.0.1")],
                ingress_isolated: true,
                egress_isolated: false,
                ingress: vec![a],
                egress: vec![],
            },
        );
        let e: Vec<_> = elements_of(&np).into_keys().collect();
        assert_eq!(
            e,
            [
                Elem::Isolated(Direction::Ingress, ip("10.0.0.1")),
                Elem::Allow(Direction::Ingress, a)
            ]
        );
        assert_eq!(e[1].set(), "allow_in4");
        assert_eq!(e[1].to_nft(), "10.0.0.1 . 10.1.0.0-10.1.0.255 . 6-6 . 80-90");
        let nl = elements::to_netlink(&e[1].to_element()).unwrap();
        assert!(nl.to_string().contains("10.0.0.1"), "{nl}");
    }

    #[test]
    fn single_address_port_boxes_go_to_the_hash_sets() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let exact = Allowed {
            pod: ip("10.0.0.1"),
            peer: (ip("10.1.0.7"), ip("10.1.0.7")),
            proto: (6, 6),
            port: (8080, 8080),
        };
        let e = Elem::Allow(Direction::Ingress, exact);
        assert_eq!(e.set(), "exact_in4");
        assert_eq!(e.to_nft(), "10.0.0.1 . 10.1.0.7 . 6 . 8080");
        assert!(e.to_element().key_end.is_none());
        let ranged = Allowed {
            port: (8080, 8081),
            ..exact
        };
        assert_eq!(Elem::Allow(Direction::Egress, ranged).set(), "allow_out4");
    }

    #[test]
    fn sorted_difference_both_ways() {
        let e = |s: &str| Elem::Isolated(Direction::Ingress, ip(s));
        let wanted = [e("10.0.0.1"), e("10.0.0.3"), e("10.0.0.4")];
        let known = [e("10.0.0.2"), e("10.0.0.3"), e("10.0.0.5")];
        assert_eq!(
            sorted_difference(wanted.iter(), known.iter()),
            (vec![e("10.0.0.1"), e("10.0.0.4")], vec![e("10.0.0.2"), e("10.0.0.5")])
        );
        assert_eq!(sorted_difference([].iter(), known.iter()), (vec![], known.to_vec()));
    }

    #[test]
    fn counted_elements_go_when_no_pod_needs_them() {
        let e = Elem::Isolated(Direction::Ingress, ip("10.0.0.1"));
        let f = Elem::Isolated(Direction::Ingress, ip("10.0.0.2"));
        let known: BTreeMap<Elem, u32> = [(e, 2)].into();
        // One of two pods with the address goes: the element stays.
        assert_eq!(
            diff_counts(&known, [(e, -1)].into()),
            Some((vec![], vec![], vec![(e, 1)]))
        );
        assert_eq!(
            diff_counts(&known, [(e, -2), (f, 1)].into()),
            Some((vec![f], vec![e], vec![(e, 0), (f, 1)]))
        );
        // Removing what the kernel does not hold: not a diff of this state.
        assert_eq!(diff_counts(&known, [(f, -1)].into()), None);
        // A second pod with the address comes (nothing sent), then the first goes: the
        // element stays, because the count followed the first change.
        let mut known: BTreeMap<Elem, u32> = [(e, 1)].into();
        let (added, removed, counts) = diff_counts(&known, [(e, 1)].into()).unwrap();
        assert!(added.is_empty() && removed.is_empty());
        settle(&mut known, counts);
        let (_, removed, counts) = diff_counts(&known, [(e, -1)].into()).unwrap();
        assert!(removed.is_empty(), "still needed by the second pod");
        settle(&mut known, counts);
        assert_eq!(known.get(&e), Some(&1));
    }

    #[test]
    fn the_ruleset_has_every_set_and_fixed_chains() {
        let r = ruleset("t");
        for set in SETS {
            assert!(r.contains(&format!("set {set} ")), "{set}");
        }
        assert!(r.contains("hook forward") && r.contains("hook input") && !r.contains("hook output"));
    }
}
