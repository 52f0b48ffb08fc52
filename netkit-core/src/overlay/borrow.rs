//! Borrowed addresses, Calico's way of using the last free addresses of a full pool: a node
//! whose blocks are full when no block is left to claim gets single addresses of another
//! node's block, and announces each as a /32 (longer than the lender's block, so traffic for
//! it goes to the borrower).
//!
//! A node's allocations live in its own IPAM store, so a loan needs the lender's consent. The
//! two agents agree through the lease store, in their first lease's backend data (the agent
//! rewrites its lease's metadata with an idempotent acquire; every node watches the leases):
//!
//! ```text
//! borrower X:  "Borrow": {"Y": {"want": 3, "have": ["10.244.0.70"], "returned": []}}
//! lender   Y:  "Lent":   {"X": ["10.244.0.70", "10.244.0.71", "10.244.0.72"]}
//! ```
//!
//! * X asks when a block claim fails because the pool is exhausted and fewer than
//!   `min_free` addresses are free: `want` grows by what is missing. It asks one lender at a
//!   time, the next node by name after itself; a lender that has lent nothing more within 3 s
//!   is passed over for the next.
//! * Y lends while it keeps at least twice `min_free` addresses free itself: it claims each
//!   lent address in its own IPAM store (owner `netkit-lend-…`, so none of its pods gets it)
//!   and lists it under `Lent`.
//! * X hands out what `Lent` lists for it (the subnet file's `NETKIT_BORROWED`) and its BIRD
//!   announces each as a /32; `have` says which X uses.
//! * X gives an address back once it has twice `min_free` free without it: it claims it in
//!   its own store first (so no pod of its gets it meanwhile), takes it out of the subnet
//!   file and BIRD, lists it under `returned`; Y releases it and drops it from `Lent`; X then
//!   releases its claim and forgets it.
//! * X's lease ends: Y releases everything it lent X. Y's lease ends: X keeps using what it
//!   has (its pods are there); a node that later claims that block claims the addresses some
//!   node's `have` lists in it before handing out any, and lists them as lent to that node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::Value;

/// The key of a borrower's requests in its lease's backend data.
pub const BORROW_KEY: &str = "Borrow";
/// The key of a lender's loans in its lease's backend data.
pub const LENT_KEY: &str = "Lent";

/// One borrower's request to one lender.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ask {
    /// How many addresses the borrower wants from this lender in all.
    pub(crate) want: usize,
    /// The lender's addresses the borrower uses.
    pub(crate) have: BTreeSet<IpAddr>,
    /// Addresses the borrower gives back.
    pub(crate) returned: BTreeSet<IpAddr>,
}

/// What one lease says about loans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaseLoans {
    /// Its requests, by lender.
    pub(crate) borrow: BTreeMap<String, Ask>,
    /// Its loans, by borrower.
    pub(crate) lent: BTreeMap<String, BTreeSet<IpAddr>>,
}

fn ips(v: &Value) -> BTreeSet<IpAddr> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str()?.parse().ok())
        .collect()
}

fn ip_list(s: &BTreeSet<IpAddr>) -> Value {
    s.iter().map(|ip| Value::String(ip.to_string())).collect()
}

impl LeaseLoans {
    /// Read a lease's backend data (unknown or malformed parts read as nothing).
    pub(crate) fn parse(data: &Value) -> Self {
        let mut out = Self::default();
        for (lender, ask) in data.get(BORROW_KEY).and_then(Value::as_object).into_iter().flatten() {
            out.borrow.insert(
                lender.clone(),
                Ask {
                    want: (ask.get("want").and_then(Value::as_u64).unwrap_or(0) as usize).min(MAX_WANT),
                    have: ask.get("have").map(ips).unwrap_or_default(),
                    returned: ask.get("returned").map(ips).unwrap_or_default(),
                },
            );
        }
        for (borrower, list) in data.get(LENT_KEY).and_then(Value::as_object).into_iter().flatten() {
            out.lent.insert(borrower.clone(), ips(list));
        }
        out
    }

    /// Write into backend data (the keys are left out when empty).
    pub(crate) fn write(&self, data: &mut Value) {
        if !data.is_object() {
            *data = Value::Object(Default::default());
        }
        let obj = data.as_object_mut().expect("made an object above");
        let borrow: serde_json::Map<String, Value> = self
            .borrow
            .iter()
            .filter(|(_, a)| a.want > 0 || !a.have.is_empty() || !a.returned.is_empty())
            .map(|(l, a)| {
                let v = serde_json::json!({"want": a.want, "have": ip_list(&a.have), "returned": ip_list(&a.returned)});
                (l.clone(), v)
            })
            .collect();
        let lent: serde_json::Map<String, Value> = self
            .lent
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(b, s)| (b.clone(), ip_list(s)))
            .collect();
        if !borrow.is_empty() {
            obj.insert(BORROW_KEY.into(), Value::Object(borrow));
        }
        if !lent.is_empty() {
            obj.insert(LENT_KEY.into(), Value::Object(lent));
        }
    }
}

/// The most addresses one borrower asks of one lender (a lease asking for more is read as
/// asking for this many).
pub(crate) const MAX_WANT: usize = 256;

/// How long a borrower waits for a lender to lend more before asking the next node.
pub(crate) const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// This node's loans, both ways, and what the other nodes' leases say about them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Loans {
    /// As borrower: its requests, by lender (published as `Borrow`).
    pub(crate) asks: BTreeMap<String, Ask>,
    /// As borrower: what each lender lists as lent to this node (its `Lent[me]`). Kept when
    /// the lender's lease ends: the addresses stay in use.
    pub(crate) lent_to_me: BTreeMap<String, BTreeSet<IpAddr>>,
    /// As borrower: the lender asked now, and since when.
    pub(crate) asking: Option<(String, tokio::time::Instant)>,
    /// As lender: what it lent, by borrower (claimed in its IPAM store; published as `Lent`).
    pub(crate) lent: BTreeMap<String, BTreeSet<IpAddr>>,
    /// As lender: each borrower's request to this node.
    pub(crate) asked_of_me: BTreeMap<String, Ask>,
    /// Every node's borrowed addresses in use (its `Borrow[*].have`), by node.
    pub(crate) in_use_by: BTreeMap<String, BTreeSet<IpAddr>>,
}

impl Loans {
    /// The addresses this node may hand out, with their lenders: lent to it, not being given
    /// back, and `valid` (the agent checks an address against the cluster network, its own
    /// blocks and the lender's: another node's lease is input, not trusted).
    pub(crate) fn usable(&self, valid: impl Fn(&str, IpAddr) -> bool) -> BTreeMap<IpAddr, String> {
        let mut out = BTreeMap::new();
        for (lender, ips) in &self.lent_to_me {
            let returned = self.asks.get(lender).map(|a| &a.returned);
            for ip in ips.iter().filter(|ip| !returned.is_some_and(|r| r.contains(ip))) {
                if valid(lender, *ip) {
                    out.insert(*ip, lender.clone());
                }
            }
        }
        out
    }

    /// What this node publishes (its `Borrow` and `Lent`).
    pub(crate) fn published(&self) -> LeaseLoans {
        LeaseLoans {
            borrow: self.asks.clone(),
            lent: self.lent.clone(),
        }
    }

    /// Another node's first lease says `data`; whether anything that concerns this node
    /// (`me`) changed.
    pub(crate) fn observe(&mut self, me: &str, node: &str, data: &Value) -> bool {
        let l = LeaseLoans::parse(data);
        let ask = l.borrow.get(me).cloned();
        let lent = l.lent.get(me).cloned();
        let in_use: BTreeSet<IpAddr> = l.borrow.values().flat_map(|a| a.have.iter().copied()).collect();
        let mut changed = false;
        // An address has one lender: the node that lists it now (a block that changed hands
        // takes its loans with it).
        for ip in lent.iter().flatten() {
            for (lender, ips) in self.lent_to_me.iter_mut().filter(|(l, _)| l.as_str() != node) {
                if ips.remove(ip) {
                    changed = true;
                    if let Some(a) = self.asks.get_mut(lender) {
                        a.have.remove(ip);
                        a.returned.remove(ip);
                    }
                }
            }
        }
        self.lent_to_me.retain(|_, ips| !ips.is_empty());
        changed |= set(&mut self.asked_of_me, node, ask);
        changed |= set(&mut self.lent_to_me, node, lent);
        changed |= set(&mut self.in_use_by, node, Some(in_use).filter(|s| !s.is_empty()));
        changed
    }

    /// This node's own first lease, read back after a restart: its requests and loans are
    /// taken up again.
    pub(crate) fn adopt(&mut self, data: &Value) {
        let l = LeaseLoans::parse(data);
        if self.asks.is_empty() {
            self.asks = l.borrow;
        }
        if self.lent.is_empty() {
            self.lent = l.lent;
        }
    }

    /// `node`'s lease ended: the addresses lent to it, to be released (and forgotten here).
    /// What it lent this node stays in use.
    pub(crate) fn node_gone(&mut self, node: &str) -> BTreeSet<IpAddr> {
        self.asked_of_me.remove(node);
        self.in_use_by.remove(node);
        if self.asking.as_ref().is_some_and(|(l, _)| l == node) {
            self.asking = None;
        }
        self.lent.remove(node).unwrap_or_default()
    }
}

/// Set `map[key]` to `value` (removing it for `None`); whether that changed it.
fn set<V: PartialEq>(map: &mut BTreeMap<String, V>, key: &str, value: Option<V>) -> bool {
    match value {
        Some(v) if map.get(key) != Some(&v) => {
            map.insert(key.to_string(), v);
            true
        }
        Some(_) => false,
        None => map.remove(key).is_some(),
    }
}

/// The lender to ask after `current` (or first): the next node by name after `me` among
/// `nodes`, wrapping around, skipping `me` and `current`.
pub(crate) fn next_lender<'a>(me: &str, current: Option<&str>, nodes: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut all: Vec<&str> = nodes.filter(|n| *n != me).collect();
    all.sort_unstable();
    all.dedup();
    let after = current.unwrap_or(me);
    let next = all.iter().find(|n| **n > after).or_else(|| all.first()).copied()?;
    (Some(next) != current || all.len() == 1).then(|| next.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lease_data_round_trips_and_bad_data_reads_as_nothing() {
        let mut l = LeaseLoans::default();
        l.borrow.insert(
            "y".into(),
            Ask {
                want: 2,
                have: [ip("10.0.0.70")].into(),
                returned: [ip("10.0.0.71")].into(),
            },
        );
        l.lent.insert("z".into(), [ip("10.0.1.5")].into());
        let mut data = json!({"VtepMAC": "02:00:00:00:00:01"});
        l.write(&mut data);
        assert_eq!(data["VtepMAC"], "02:00:00:00:00:01", "other keys stay");
        assert_eq!(LeaseLoans::parse(&data), l);
        assert_eq!(
            LeaseLoans::parse(&json!({"Borrow": 7, "Lent": {"x": "nope"}}))
                .borrow
                .len(),
            0
        );
        let mut null = Value::Null;
        LeaseLoans::default().write(&mut null);
        assert_eq!(null, json!({}));
    }

    #[test]
    fn a_loan_seen_from_both_sides() {
        // X asks Y; Y lends two; X gives one back.
        let (mut x, mut y) = (Loans::default(), Loans::default());
        x.asks.insert(
            "y".into(),
            Ask {
                want: 2,
                ..Default::default()
            },
        );
        let mut xdata = json!({});
        x.published().write(&mut xdata);
        assert!(y.observe("y", "x", &xdata));
        assert_eq!(y.asked_of_me["x"].want, 2);
        y.lent.insert("x".into(), [ip("10.0.1.5"), ip("10.0.1.6")].into());
        let mut ydata = json!({});
        y.published().write(&mut ydata);
        assert!(x.observe("x", "y", &ydata));
        assert!(!x.observe("x", "y", &ydata), "nothing new");
        let all = |_: &str, _: IpAddr| true;
        assert_eq!(x.usable(all).len(), 2);
        assert_eq!(
            x.usable(|_, a| a != ip("10.0.1.6")).len(),
            1,
            "the agent's check applies"
        );
        x.asks.get_mut("y").unwrap().returned.insert(ip("10.0.1.6"));
        assert_eq!(x.usable(all).keys().copied().collect::<Vec<_>>(), [ip("10.0.1.5")]);
        // X's lease ends: Y releases both.
        assert_eq!(y.node_gone("x").len(), 2);
        // Y's lease ends: X keeps what it has.
        x.node_gone("y");
        assert_eq!(x.usable(all).len(), 1);
        // Z took Y's block and lists the address as lent to X: it is Z's loan now, once.
        assert!(x.observe("x", "z", &json!({"Lent": {"x": ["10.0.1.5"]}})));
        assert_eq!(
            x.usable(all).into_iter().collect::<Vec<_>>(),
            [(ip("10.0.1.5"), "z".to_string())]
        );
        assert!(!x.lent_to_me["y"].contains(&ip("10.0.1.5")), "no longer y's");
        // A huge want reads as MAX_WANT.
        assert!(y.observe("y", "q", &json!({"Borrow": {"y": {"want": u64::MAX}}})));
        assert_eq!(y.asked_of_me["q"].want, MAX_WANT);
    }

    #[test]
    fn lenders_in_turn() {
        let nodes = ["a", "b", "c", "d"];
        assert_eq!(next_lender("b", None, nodes.iter().copied()), Some("c".into()));
        assert_eq!(next_lender("b", Some("c"), nodes.iter().copied()), Some("d".into()));
        assert_eq!(next_lender("b", Some("d"), nodes.iter().copied()), Some("a".into()));
        assert_eq!(next_lender("d", None, nodes.iter().copied()), Some("a".into()));
        assert_eq!(next_lender("a", None, ["a"].into_iter()), None);
        assert_eq!(
            next_lender("a", Some("b"), ["a", "b"].into_iter()),
            Some("b".into()),
            "the only one, again"
        );
    }
}
