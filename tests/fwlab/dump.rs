//! Looking at (and disturbing) the ruleset of a lab namespace with the system tools: `nft` for
//! the nftables driver, `iptables-save`/`ip6tables-save` for the iptables driver. Every command
//! runs inside the given namespace (`NetNs::command`), never in the test's own.

use std::collections::{BTreeSet, VecDeque};

use netkit_core::firewall::Driver;
use netkit_core::NetNs;
use netkit_test_support::iptables::normalize_save;
use netkit_test_support::sh;
use serde_json::Value;

/// The ruleset the driver writes to, for exact before/after comparisons.
///
/// * nftables: `nft -a list ruleset` (with handles, so a delete-and-re-add shows up too);
/// * iptables: `iptables-save` then `ip6tables-save`, each as
///   `normalize_save` (netkit-test-support) has it (no comments, no
///   counters, no tables that hold nothing).
pub fn ruleset(ns: &NetNs, driver: Driver) -> String {
    match driver {
        Driver::Nftables => sh(ns, "nft -a list ruleset"),
        Driver::Iptables => iptables_dump(ns),
    }
}

/// Like [`ruleset`] but without nft handles: for searching port numbers and owner names.
pub fn ruleset_plain(ns: &NetNs, driver: Driver) -> String {
    match driver {
        Driver::Nftables => sh(ns, "nft list ruleset"),
        Driver::Iptables => iptables_dump(ns),
    }
}

fn iptables_dump(ns: &NetNs) -> String {
    let v4 = normalize_save(&sh(ns, "iptables-save"));
    let v6 = normalize_save(&sh(ns, "ip6tables-save"));
    let mut out = String::new();
    for l in v4.lines() {
        out += &format!("ip4 {l}\n");
    }
    for l in v6.lines() {
        out += &format!("ip6 {l}\n");
    }
    out
}

/// Put rules of "someone else" into `ns` (a table or rules netkit must leave alone).
pub fn add_foreign_rules(ns: &NetNs, driver: Driver) {
    match driver {
        Driver::Nftables => {
            sh(
                ns,
                "nft 'add table inet foreign; \
                 add chain inet foreign keepfwd { type filter hook forward priority 10; policy accept; }; \
                 add rule inet foreign keepfwd ip saddr 198.51.100.0/24 accept; \
                 add chain inet foreign keepnat { type nat hook postrouting priority 110; policy accept; }; \
                 add rule inet foreign keepnat ip saddr 198.51.100.0/24 return'",
            );
        }
        Driver::Iptables => {
            sh(
                ns,
                "iptables -A FORWARD -s 198.51.100.0/24 -j ACCEPT && \
                 iptables -t nat -A POSTROUTING -s 198.51.100.0/24 -j RETURN && \
                 ip6tables -A FORWARD -s 2001:db8:ff::/48 -j ACCEPT",
            );
        }
    }
}

/// Throw the driver's rules away behind netkit's back (a firewall reload, an admin's flush).
pub fn flush(ns: &NetNs, driver: Driver) {
    match driver {
        Driver::Nftables => {
            sh(ns, "nft flush ruleset");
        }
        Driver::Iptables => {
            for tool in ["iptables", "ip6tables"] {
                for table in ["nat", "filter", "mangle"] {
                    sh(ns, &format!("{tool} -t {table} -F && {tool} -t {table} -X"));
                }
            }
        }
    }
}

/// How often `n` occurs in `text` as a whole number (not part of a longer digit string).
pub fn count_number(text: &str, n: u32) -> usize {
    let needle = n.to_string();
    let bytes = text.as_bytes();
    text.match_indices(&needle)
        .filter(|(i, _)| {
            let before = *i == 0 || !bytes[i - 1].is_ascii_digit();
            let after = i + needle.len() >= bytes.len() || !bytes[i + needle.len()].is_ascii_digit();
            before && after
        })
        .count()
}

/// How many entries of the dump map host port `port` (of the given driver): nftables lists one
/// map element per port (the port appears once); iptables writes one DNAT rule per port.
pub fn mapping_entries(dump: &str, driver: Driver, port: u16) -> usize {
    match driver {
        Driver::Nftables => count_number(dump, port.into()),
        Driver::Iptables => dump
            .lines()
            .filter(|l| l.contains("DNAT") && count_number(l, port.into()) > 0)
            .count(),
    }
}

/// Everything the ruleset holds for the service at `vip`: the map elements or rules that match
/// the address, every chain reachable from them (and its rules, in order), and the elements or
/// rules that lead into those chains (a node port). Comparing two snapshots tells whether the
/// service was touched; for nftables the rule handles are included, so a rewrite with equal
/// content shows up as well.
pub fn service_snapshot(ns: &NetNs, driver: Driver, vip: &str) -> String {
    match driver {
        Driver::Nftables => nft_service_snapshot(&sh(ns, "nft -j list ruleset"), vip),
        Driver::Iptables => iptables_service_snapshot(&iptables_dump(ns), vip),
    }
}

fn jump_targets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "goto" || k == "jump" {
                    if let Some(t) = x.get("target").and_then(Value::as_str) {
                        out.push(t.to_string());
                    }
                }
                jump_targets(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| jump_targets(x, out)),
        _ => {}
    }
}

fn nft_service_snapshot(json: &str, vip: &str) -> String {
    let v: Value = serde_json::from_str(json).expect("nft -j output");
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    let quoted = format!("\"{vip}\"");
    let mut elements: Vec<(String, Value)> = Vec::new();
    for it in &items {
        if let Some(m) = it.get("map") {
            let name = m["name"].as_str().unwrap_or("").to_string();
            for e in m.get("elem").and_then(Value::as_array).into_iter().flatten() {
                elements.push((name.clone(), e.clone()));
            }
        }
    }
    let mut reached = BTreeSet::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    for (_, e) in elements.iter().filter(|(_, e)| e.to_string().contains(&quoted)) {
        let mut t = Vec::new();
        jump_targets(e, &mut t);
        queue.extend(t);
    }
    let mut chains = Vec::new();
    while let Some(c) = queue.pop_front() {
        if !reached.insert(c.clone()) {
            continue;
        }
        chains.push(c.clone());
        for it in &items {
            if let Some(r) = it.get("rule") {
                if r["chain"].as_str() == Some(c.as_str()) {
                    let mut t = Vec::new();
                    jump_targets(r, &mut t);
                    queue.extend(t);
                }
            }
        }
    }
    let mut out = String::new();
    for (map, e) in &elements {
        let mut t = Vec::new();
        jump_targets(e, &mut t);
        if e.to_string().contains(&quoted) || t.iter().any(|x| reached.contains(x)) {
            out += &format!("element {map} {e}\n");
        }
    }
    for c in &chains {
        for it in &items {
            if let Some(ch) = it.get("chain") {
                if ch["name"].as_str() == Some(c.as_str()) {
                    out += &format!("chain {ch}\n");
                }
            }
            if let Some(r) = it.get("rule") {
                if r["chain"].as_str() == Some(c.as_str()) {
                    out += &format!("rule {r}\n");
                }
            }
        }
    }
    out
}

fn iptables_service_snapshot(dump: &str, vip: &str) -> String {
    let rules: Vec<(&str, &str)> = dump
        .lines()
        .filter_map(|l| {
            let (fam, rest) = l.split_once(' ')?;
            rest.starts_with("-A ").then_some((fam, rest))
        })
        .collect();
    let chain_of = |r: &str| r.split_whitespace().nth(1).unwrap_or("").to_string();
    let target_of = |r: &str| {
        let mut f = r.split_whitespace();
        while let Some(x) = f.next() {
            if x == "-j" || x == "-g" {
                return f.next().map(str::to_string);
            }
        }
        None
    };
    let mentions_vip = |r: &str| {
        r.split_whitespace()
            .any(|w| w == vip || w.strip_suffix("/32") == Some(vip) || w.strip_suffix("/128") == Some(vip))
    };
    let mut reached = BTreeSet::new();
    let mut queue: VecDeque<String> = rules
        .iter()
        .filter(|(_, r)| mentions_vip(r))
        .filter_map(|(_, r)| target_of(r))
        .collect();
    while let Some(c) = queue.pop_front() {
        if [
            "ACCEPT",
            "DROP",
            "RETURN",
            "DNAT",
            "SNAT",
            "MASQUERADE",
            "MARK",
            "REJECT",
        ]
        .contains(&c.as_str())
        {
            continue;
        }
        if !reached.insert(c.clone()) {
            continue;
        }
        queue.extend(
            rules
                .iter()
                .filter(|(_, r)| chain_of(r) == c)
                .filter_map(|(_, r)| target_of(r)),
        );
    }
    let mut out = String::new();
    for (fam, r) in &rules {
        let into = target_of(r).is_some_and(|t| reached.contains(&t));
        if mentions_vip(r) || into || reached.contains(&chain_of(r)) {
            out += &format!("{fam} {r}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_counted_whole() {
        assert_eq!(count_number("tcp . 20003 : 10.88.0.2 . 80, tcp . 200030", 20003), 1);
        assert_eq!(count_number("80", 80), 1);
        assert_eq!(count_number("8080 180", 80), 0);
    }

    #[test]
    fn iptables_snapshot_follows_jumps() {
        let dump = "ip4 -A NETKIT-SERVICES -d 10.96.0.11/32 -p tcp --dport 80 -j NETKIT-SVC-B\n\
                    ip4 -A NETKIT-SERVICES -d 10.96.0.10/32 -p tcp --dport 80 -j NETKIT-SVC-A\n\
                    ip4 -A NETKIT-NODEPORTS -p tcp --dport 30081 -j NETKIT-SVC-B\n\
                    ip4 -A NETKIT-SVC-B -j NETKIT-SEP-B0\n\
                    ip4 -A NETKIT-SVC-A -j NETKIT-SEP-A0\n\
                    ip4 -A NETKIT-SEP-B0 -p tcp -j DNAT --to-destination 10.88.0.2:80\n";
        let s = iptables_service_snapshot(dump, "10.96.0.11");
        assert_eq!(s.lines().count(), 4, "{s}");
        assert!(!s.contains("SVC-A"));
    }
}
