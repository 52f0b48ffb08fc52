//! The chains netkit wants, for one family, from every owner's rules; written in the exact
//! form `iptables-save` prints them back (so a test can look for each line verbatim).
//!
//! ```text
//! nat
//!   PREROUTING  ─► P-PREROUTING ─► P-SERVICES
//!   OUTPUT      ─► P-OUTPUT     ─► P-SERVICES
//!   P-SERVICES:   -d vip -p proto --dport port          ─► P-SVC-<id>     (one per service)
//!                 -d extip -p proto --dport port        ─► P-EXT-<id>     (P-SVC-<id> without
//!                                                                          external policy)
//!                 -m addrtype --dst-type LOCAL          ─► P-NODEPORTS
//!                 -m addrtype --dst-type LOCAL          ─► P-HOSTPORTS
//!   P-NODEPORTS:  -p proto --dport nodeport             ─► P-EXT-<id> (or P-SVC-<id>, as above)
//!   P-HOSTPORTS:  -d hostip -p proto --dport port  DNAT  (mappings on one host address first)
//!                 -p proto --dport port            DNAT  (then mappings on every address)
//!   P-SVC-<id>:   [MARK masquerade] [-m recent --rcheck ─► P-SEP-<id>-<n>]…
//!                 -m statistic --probability 1/(N-n)    ─► P-SEP-<id>-<n>  (last: unconditional)
//!                 (no endpoints: no rule, the packet goes on un-NATed to filter P-SERVICES)
//!   P-EXT-<id>:   Cluster: MARK masquerade, ─► P-SVC-<id>
//!                 Local: as P-SVC-<id> over the local endpoints only, no MARK (none local: no
//!                 rule, filter P-SERVICES drops)
//!   P-SEP-<id>-<n>: [-s endpoint MARK] [-m recent --set] DNAT to endpoint
//!   POSTROUTING ─► P-POSTROUTING: hairpin (ctstate DNAT, -o network -s subnet) MASQUERADE,
//!                 [IPv4: -s 127.0.0.0/8 ctstate DNAT MASQUERADE], mark MASQUERADE,
//!                 multicast RETURN, masquerade "network" RETURN, masquerade source MASQUERADE
//! filter
//!   FORWARD     ─► P-FORWARD: isolated pairs DROP (both ways), then ─► P-SERVICES
//!   INPUT       ─► P-INPUT: [IPv4] traffic to 127.0.0.0/8 from outside lo, not DNATed: DROP
//!                 (CVE-2020-8558, as kube-proxy), then ─► P-SERVICES
//!   INPUT (via P-INPUT), OUTPUT ─► P-SERVICES: services without endpoints REJECT (vip,
//!                 external IPs, nodeport on a local address; TCP: tcp-reset, else ICMP port
//!                 unreachable); Local services with endpoints but none local DROP (external
//!                 IPs, nodeport); iptables refuses DROP and REJECT in the nat table
//! ```

use std::fmt::Write;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::firewall::model::{Isolation, Masquerade, Network, PortMapping, Protocol, Rules, Service, TrafficPolicy};
use crate::firewall::nftables::ruleset::service_id;
use crate::firewall::FirewallError;

/// The longest chain name iptables accepts.
pub(crate) const MAX_CHAIN_NAME: usize = 28;

/// The longest chain prefix accepted (so every fixed and per-service chain name fits).
pub(crate) const MAX_PREFIX: usize = 8;

/// An address family: which pair of tools programs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// iptables.
    V4,
    /// ip6tables.
    V6,
}

impl Family {
    /// Both, IPv4 first.
    pub(crate) const ALL: [Family; 2] = [Family::V4, Family::V6];

    fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn of_net(net: IpNetwork) -> Family {
        Family::of(net.ip())
    }

    /// `iptables-save` / `ip6tables-save`.
    pub(crate) fn save_tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    /// `iptables-restore` / `ip6tables-restore`.
    pub(crate) fn restore_tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    fn host(self, ip: IpAddr) -> String {
        match self {
            Family::V4 => format!("{ip}/32"),
            Family::V6 => format!("{ip}/128"),
        }
    }

    fn recent_mask(self) -> &'static str {
        match self {
            Family::V4 => "255.255.255.255",
            Family::V6 => "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        }
    }

    fn multicast(self) -> &'static str {
        match self {
            Family::V4 => "224.0.0.0/4",
            Family::V6 => "ff00::/8",
        }
    }
}

/// A user-defined chain and its rules (each rule without the leading `-A CHAIN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    pub(crate) name: String,
    pub(crate) rules: Vec<String>,
}

impl Chain {
    fn new(name: String) -> Self {
        Self {
            name,
            rules: Vec::new(),
        }
    }
}

/// What netkit wants in one family: its chains in the nat and filter tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ruleset {
    pub(crate) nat: Vec<Chain>,
    pub(crate) filter: Vec<Chain>,
}

impl Ruleset {
    /// The chains of `table` ("nat" or "filter").
    pub(crate) fn table(&self, table: &str) -> &[Chain] {
        match table {
            "nat" => &self.nat,
            _ => &self.filter,
        }
    }
}

/// Chain names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    /// `prefix` is already upper-cased and checked ([`check_prefix`]).
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// `PREFIX-suffix`.
    pub(crate) fn chain(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// True for a chain name of ours (`PREFIX-…`).
    pub(crate) fn is_ours(&self, chain: &str) -> bool {
        chain
            .strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('-'))
    }

    fn svc(&self, svc: &Service) -> String {
        self.chain(&format!("SVC-{}", service_id(&svc.name)))
    }

    fn ext(&self, svc: &Service) -> String {
        self.chain(&format!("EXT-{}", service_id(&svc.name)))
    }

    fn sep(&self, svc: &Service, n: usize) -> Result<String, FirewallError> {
        let name = self.chain(&format!("SEP-{}-{n}", service_id(&svc.name)));
        if name.len() > MAX_CHAIN_NAME {
            return Err(FirewallError::invalid(format!(
                "service {} has too many endpoints for the iptables driver: chain name {name} is longer than {MAX_CHAIN_NAME}",
                svc.name
            )));
        }
        Ok(name)
    }

    /// The jumps from built-in chains: `(table, built-in chain, our chain)`, in the order
    /// they are inserted.
    pub(crate) fn jumps(&self) -> Vec<(&'static str, &'static str, String)> {
        vec![
            ("nat", "PREROUTING", self.chain("PREROUTING")),
            ("nat", "OUTPUT", self.chain("OUTPUT")),
            ("nat", "POSTROUTING", self.chain("POSTROUTING")),
            ("filter", "FORWARD", self.chain("FORWARD")),
            ("filter", "INPUT", self.chain("INPUT")),
            ("filter", "OUTPUT", self.chain("SERVICES")),
        ]
    }
}

/// Check an upper-cased chain prefix: 1–[`MAX_PREFIX`] of `A-Z 0-9 _`.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), FirewallError> {
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX
        || !prefix
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(FirewallError::invalid(format!(
            "iptables chain prefix {prefix:?} (the firewall name, upper-cased): 1-{MAX_PREFIX} of letters, digits, '_'"
        )));
    }
    Ok(())
}

fn net_text(net: IpNetwork) -> String {
    // iptables prints the network address (host bits cleared) with its prefix.
    let clean = IpNetwork::new(net.network(), net.prefix()).expect("same prefix");
    clean.to_string()
}

fn proto_port(p: Protocol, port: u16) -> String {
    format!("-p {p} -m {p} --dport {port}")
}

fn comment(owner: &str) -> String {
    format!("-m comment --comment {}", save_string(owner))
}

/// A string argument as `iptables-save` prints it: bare when made of letters, digits, `_`
/// and `-` only, else in double quotes (the strings netkit writes hold no quote or backslash).
pub(crate) fn save_string(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        s.to_string()
    } else {
        format!("\"{s}\"")
    }
}

fn dnat_target(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(ip) => format!("{ip}:{port}"),
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
    }
}

/// The probability as `iptables-save` prints it: the kernel keeps `p · 2³¹` as an integer.
pub(crate) fn probability(p: f64) -> String {
    let q = (p * 2147483648.0).round();
    format!("{:.11}", q / 2147483648.0)
}

/// True when `rules` has an object that lives in `family`'s tables (isolation lives in both).
pub(crate) fn touches(rules: &Rules, family: Family) -> bool {
    !rules.isolations.is_empty() || has_objects_of(rules, family)
}

/// True when `rules` has an address-bearing object of `family` (isolation excluded).
pub(crate) fn has_objects_of(rules: &Rules, family: Family) -> bool {
    rules.port_mappings.iter().any(|m| Family::of(m.container_ip) == family)
        || rules.masquerades.iter().any(|m| Family::of_net(m.source) == family)
        || rules.networks.iter().any(|n| Family::of_net(n.subnet) == family)
        || rules.services.iter().any(|s| Family::of(s.vip) == family)
}

/// What netkit wants in `family`, from every owner's rules (in this order); `None` when no
/// owner has anything there (then none of netkit's chains should exist).
pub(crate) fn render(
    names: &Names,
    mark: u32,
    family: Family,
    all: &[(String, Rules)],
) -> Result<Option<Ruleset>, FirewallError> {
    if !all.iter().any(|(_, r)| touches(r, family)) {
        return Ok(None);
    }
    let c = |s: &str| names.chain(s);
    let mut prerouting = Chain::new(c("PREROUTING"));
    let mut output = Chain::new(c("OUTPUT"));
    let mut services = Chain::new(c("SERVICES"));
    let mut nodeports = Chain::new(c("NODEPORTS"));
    let mut hostports = Chain::new(c("HOSTPORTS"));
    let mut postrouting = Chain::new(c("POSTROUTING"));
    let mut per_service: Vec<Chain> = Vec::new();
    let mut forward = Chain::new(c("FORWARD"));
    let mut input = Chain::new(c("INPUT"));
    let mut filter_services = Chain::new(c("SERVICES"));

    prerouting.rules.push(format!("-j {}", services.name));
    output.rules.push(format!("-j {}", services.name));

    let mine = |ip: IpAddr| Family::of(ip) == family;
    let mut wildcard_ports = Vec::new();
    let mut hairpin = Vec::new();
    let mut masq_skip = Vec::new();
    let mut masq = Vec::new();
    // Objects several owners hold (a bridge network, an isolated pair, an identical
    // masquerade) are rendered once, under the first owner that holds them.
    let mut seen_nets = std::collections::HashSet::new();
    let mut seen_masq = std::collections::HashSet::new();
    let mut seen_iso = std::collections::HashSet::new();
    for (owner, rules) in all {
        let cm = comment(owner);
        for m in rules.port_mappings.iter().filter(|m| mine(m.container_ip)) {
            let out = if m.host_ip.is_some() {
                &mut hostports.rules
            } else {
                &mut wildcard_ports
            };
            port_mapping(family, m, &cm, out);
        }
        for n in rules
            .networks
            .iter()
            .filter(|n| mine(n.subnet.ip()) && seen_nets.insert(*n))
        {
            hairpin.push(network(n, &cm));
        }
        for m in rules
            .masquerades
            .iter()
            .filter(|m| mine(m.source.ip()) && seen_masq.insert(*m))
        {
            let (skip, on) = masquerade(m, &cm);
            masq_skip.push(skip);
            masq.push(on);
        }
        for i in rules.isolations.iter().filter(|i| seen_iso.insert(*i)) {
            forward.rules.extend(isolation(i, &cm));
        }
        for s in rules.services.iter().filter(|s| mine(s.vip)) {
            let svc_chain = names.svc(s);
            // Node-port and external-IP connections: through the external chain when the
            // service has an external policy.
            let ext_chain = match s.external_policy {
                Some(_) => names.ext(s),
                None => svc_chain.clone(),
            };
            let (p, port) = (s.protocol, s.port);
            services.rules.push(format!(
                "-d {} {} {cm} -j {svc_chain}",
                family.host(s.vip),
                proto_port(p, port)
            ));
            for ip in &s.external_ips {
                services.rules.push(format!(
                    "-d {} {} {cm} -j {ext_chain}",
                    family.host(*ip),
                    proto_port(p, port)
                ));
            }
            if let Some(np) = s.node_port {
                nodeports
                    .rules
                    .push(format!("{} {cm} -j {ext_chain}", proto_port(p, np)));
            }
            // iptables refuses DROP and REJECT in the nat table: a service without endpoints
            // (rejected), or whose external connections have no local endpoint to go to
            // (dropped), is let through un-NATed by its chains and refused here.
            let refusal = if s.endpoints.is_empty() {
                Some(reject(family, p))
            } else if s.external_endpoints().is_empty() {
                Some("-j DROP".to_string())
            } else {
                None
            };
            if let Some(verdict) = refusal {
                if s.endpoints.is_empty() {
                    filter_services.rules.push(format!(
                        "-d {} {} {cm} {verdict}",
                        family.host(s.vip),
                        proto_port(p, port)
                    ));
                }
                for ip in &s.external_ips {
                    filter_services.rules.push(format!(
                        "-d {} {} {cm} {verdict}",
                        family.host(*ip),
                        proto_port(p, port)
                    ));
                }
                if let Some(np) = s.node_port {
                    filter_services.rules.push(format!(
                        "-p {p} -m addrtype --dst-type LOCAL -m {p} --dport {np} {cm} {verdict}"
                    ));
                }
            }
            per_service.extend(service(names, family, mark, s, &cm)?);
        }
    }
    services
        .rules
        .push(format!("-m addrtype --dst-type LOCAL -j {}", nodeports.name));
    services
        .rules
        .push(format!("-m addrtype --dst-type LOCAL -j {}", hostports.name));
    hostports.rules.extend(wildcard_ports);

    postrouting.rules.extend(hairpin);
    if family == Family::V4 {
        postrouting
            .rules
            .push("-s 127.0.0.0/8 -m conntrack --ctstate DNAT -j MASQUERADE".into());
    }
    postrouting
        .rules
        .push(format!("-m mark --mark {mark:#x}/{mark:#x} -j MASQUERADE"));
    postrouting.rules.push(format!("-d {} -j RETURN", family.multicast()));
    postrouting.rules.extend(masq_skip);
    postrouting.rules.extend(masq);

    forward.rules.push(format!("-j {}", filter_services.name));
    if family == Family::V4 {
        input.rules.push(LOCALHOST_DROP.into());
    }
    input.rules.push(format!("-j {}", filter_services.name));

    let mut nat = vec![prerouting, output, services, nodeports, hostports, postrouting];
    nat.extend(per_service);
    Ok(Some(Ruleset {
        nat,
        filter: vec![forward, input, filter_services],
    }))
}

/// Traffic to 127.0.0.0/8 that arrives from outside `lo` and that no DNAT sent there is dropped
/// (kube-proxy's rule against CVE-2020-8558): `route_localnet`, which port mappings on
/// 127.0.0.1 need, would otherwise let a container reach the host's loopback services.
pub(crate) const LOCALHOST_DROP: &str = "! -s 127.0.0.0/8 -d 127.0.0.0/8 ! -i lo -m conntrack ! --ctstate DNAT -m comment --comment \"localhost is not reachable from outside lo\" -j DROP";

fn port_mapping(family: Family, m: &PortMapping, cm: &str, out: &mut Vec<String>) {
    let dst = m.host_ip.map(|h| format!("-d {} ", family.host(h))).unwrap_or_default();
    for (host, ctr) in m.ports() {
        out.push(format!(
            "{dst}{} {cm} -j DNAT --to-destination {}",
            proto_port(m.protocol, host),
            dnat_target(m.container_ip, ctr)
        ));
    }
}

fn network(n: &Network, cm: &str) -> String {
    format!(
        "-s {} -o {} -m conntrack --ctstate DNAT {cm} -j MASQUERADE",
        net_text(n.subnet),
        n.interface
    )
}

fn masquerade(m: &Masquerade, cm: &str) -> (String, String) {
    let src = net_text(m.source);
    (
        format!("-s {src} -d {} {cm} -j RETURN", net_text(m.network)),
        format!("-s {src} {cm} -j MASQUERADE --random-fully"),
    )
}

/// The REJECT target as `iptables-save` prints it: a TCP reset for TCP, else ICMP port
/// unreachable.
fn reject(family: Family, p: Protocol) -> String {
    match (p, family) {
        (Protocol::Tcp, _) => "-j REJECT --reject-with tcp-reset".into(),
        (_, Family::V4) => "-j REJECT --reject-with icmp-port-unreachable".into(),
        (_, Family::V6) => "-j REJECT --reject-with icmp6-port-unreachable".into(),
    }
}

fn isolation(i: &Isolation, cm: &str) -> [String; 2] {
    [
        format!("-i {} -o {} {cm} -j DROP", i.a, i.b),
        format!("-i {} -o {} {cm} -j DROP", i.b, i.a),
    ]
}

/// Rules of `chain` that send a connection to one of `seps` (endpoint chains): affinity first
/// (a client seen lately goes where it went), then at random with equal chances.
fn pick(chain: &mut Chain, family: Family, s: &Service, seps: &[&String], cm: &str) {
    let mask = family.recent_mask();
    if let Some(t) = s.affinity {
        for sep in seps {
            chain.rules.push(format!(
                "-m recent --rcheck --seconds {} --reap --name {sep} --mask {mask} --rsource {cm} -j {sep}",
                t.as_secs()
            ));
        }
    }
    let n = seps.len();
    for (i, sep) in seps.iter().enumerate() {
        if i + 1 < n {
            let p = probability(1.0 / (n - i) as f64);
            chain
                .rules
                .push(format!("-m statistic --mode random --probability {p} {cm} -j {sep}"));
        } else {
            chain.rules.push(format!("{cm} -j {sep}"));
        }
    }
}

/// The chains of one service: `P-SVC-<id>`, `P-EXT-<id>` with an external policy, and one
/// `P-SEP-<id>-<n>` per endpoint.
fn service(names: &Names, family: Family, mark: u32, s: &Service, cm: &str) -> Result<Vec<Chain>, FirewallError> {
    let mut svc = Chain::new(names.svc(s));
    let setmark = format!("-j MARK --set-xmark {mark:#x}/{mark:#x}");
    let n = s.endpoints.len();
    if s.masquerade && n > 0 {
        svc.rules.push(format!("{cm} {setmark}"));
    }
    let seps: Vec<String> = (0..n).map(|i| names.sep(s, i)).collect::<Result<_, _>>()?;
    let mask = family.recent_mask();
    pick(&mut svc, family, s, &seps.iter().collect::<Vec<_>>(), cm);
    let ext = s.external_policy.map(|policy| {
        let mut ext = Chain::new(names.ext(s));
        match policy {
            _ if n == 0 => {}
            TrafficPolicy::Cluster => {
                ext.rules.push(format!("{cm} {setmark}"));
                ext.rules.push(format!("{cm} -j {}", svc.name));
            }
            TrafficPolicy::Local => {
                let local: Vec<&String> = s.external_endpoints().into_iter().map(|i| &seps[i]).collect();
                // None local: nothing here, the filter table drops it.
                pick(&mut ext, family, s, &local, cm);
            }
        }
        ext
    });
    let mut out = Vec::with_capacity(n + 2);
    out.extend(ext);
    for (ep, sep) in s.endpoints.iter().zip(&seps) {
        let mut chain = Chain::new(sep.clone());
        chain.rules.push(format!("-s {} {cm} {setmark}", family.host(ep.ip)));
        if s.affinity.is_some() {
            chain
                .rules
                .push(format!("-m recent --set --name {sep} --mask {mask} --rsource {cm}"));
        }
        chain.rules.push(format!(
            "-p {} {cm} -j DNAT --to-destination {}",
            s.protocol,
            dnat_target(ep.ip, ep.port)
        ));
        out.push(chain);
    }
    let mut chains = vec![svc];
    chains.extend(out);
    Ok(chains)
}

/// The `iptables-restore --noflush` input for one table, or `None` when nothing is to change.
///
/// `desired`: netkit's chains in this table (`None`: none should exist). `saved`: what
/// `iptables-save` showed. Each desired chain is declared (`:C - [0:0]` creates it or flushes
/// it) and filled; chains of ours that are no longer wanted are flushed and deleted; jumps from
/// built-in chains are inserted when missing, and every other rule of a built-in chain that
/// jumps to one of our chains (a duplicate, a jump to a chain going away) is deleted.
pub(crate) fn restore_input(
    names: &Names,
    table: &str,
    label: &str,
    desired: Option<&[Chain]>,
    saved: &super::save::Table,
) -> Option<String> {
    let jumps: Vec<(&str, String)> = match desired {
        Some(_) => names
            .jumps()
            .into_iter()
            .filter(|(t, _, _)| *t == table)
            .map(|(_, b, c)| (b, c))
            .collect(),
        None => Vec::new(),
    };
    let existing: Vec<&str> = saved
        .chains
        .iter()
        .filter(|c| names.is_ours(c))
        .map(String::as_str)
        .collect();
    let mut text = String::new();
    // Jumps into our chains from built-in chains: keep the first wanted one of each kind.
    let mut kept: Vec<(&str, &str)> = Vec::new();
    for rule in &saved.rules {
        let Some(target) = rule.target.as_deref() else { continue };
        if !names.is_ours(target) || !saved.builtin.contains(&rule.chain) {
            continue;
        }
        let wanted = jumps.iter().any(|(b, c)| *b == rule.chain && c == target);
        if wanted && !kept.contains(&(rule.chain.as_str(), target)) {
            kept.push((rule.chain.as_str(), target));
        } else {
            let _ = writeln!(text, "-D {} {}", rule.chain, rule.spec);
        }
    }
    let wanted_chains: Vec<&Chain> = desired.unwrap_or_default().iter().collect();
    let stale: Vec<&str> = existing
        .iter()
        .copied()
        .filter(|c| !wanted_chains.iter().any(|w| w.name == *c))
        .collect();
    if desired.is_none() && stale.is_empty() && text.is_empty() {
        return None;
    }
    for c in &wanted_chains {
        let _ = writeln!(text, ":{} - [0:0]", c.name);
    }
    for c in &stale {
        let _ = writeln!(text, ":{c} - [0:0]");
    }
    for c in &wanted_chains {
        for r in &c.rules {
            let _ = writeln!(text, "-A {} {r}", c.name);
        }
    }
    for c in &stale {
        let _ = writeln!(text, "-X {c}");
    }
    for (b, c) in &jumps {
        if !kept.contains(&(*b, c.as_str())) {
            let _ = writeln!(text, "-I {b} 1 -m comment --comment {} -j {c}", save_string(label));
        }
    }
    Some(format!("*{table}\n{text}COMMIT\n"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::firewall::iptables::save;
    use crate::firewall::model::{Endpoint, TrafficPolicy};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn probabilities_print_like_iptables_save() {
        assert_eq!(probability(1.0 / 3.0), "0.33333333349");
        assert_eq!(probability(0.5), "0.50000000000");
        assert_eq!(probability(0.25), "0.25000000000");
    }

    #[test]
    fn prefix_and_names() {
        assert!(check_prefix("NETKIT").is_ok());
        assert!(check_prefix("NET-KIT").is_err());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("ABCDEFGHI").is_err());
        let n = Names::new("NETKIT");
        assert!(n.is_ours("NETKIT-SVC-x") && !n.is_ours("NETKITX-A") && !n.is_ours("PREROUTING"));
        // The longest names with the longest prefix still fit.
        let long = Names::new("ABCDEFGH");
        let s = Service::new("a", Protocol::Tcp, ip("10.96.0.1"), 80);
        assert!(long.svc(&s).len() <= MAX_CHAIN_NAME);
        assert!(long.sep(&s, 99).is_ok());
        assert!(long.sep(&s, 100).is_err());
        assert!(Names::new("NETKIT").sep(&s, 9999).is_ok());
    }

    #[test]
    fn nothing_renders_nothing() {
        let n = Names::new("NETKIT");
        assert_eq!(render(&n, 0x2000, Family::V4, &[]).unwrap(), None);
        let v6only = Rules {
            port_mappings: vec![PortMapping::new(Protocol::Tcp, 80, ip("fd00::2"), 80)],
            ..Default::default()
        };
        assert_eq!(
            render(&n, 0x2000, Family::V4, &[("o".into(), v6only.clone())]).unwrap(),
            None
        );
        assert!(render(&n, 0x2000, Family::V6, &[("o".into(), v6only)])
            .unwrap()
            .is_some());
        let iso = Rules {
            isolations: vec![Isolation::new("a", "b")],
            ..Default::default()
        };
        for f in Family::ALL {
            let r = render(&n, 0x2000, f, &[("o".into(), iso.clone())]).unwrap().unwrap();
            assert_eq!(r.filter[0].rules.len(), 3);
        }
    }

    #[test]
    fn service_spreads_equally() {
        let n = Names::new("NETKIT");
        let s = Service::new("ns/web", Protocol::Tcp, ip("10.96.0.10"), 80)
            .affinity(Duration::from_secs(60))
            .masquerade(true)
            .endpoint(Endpoint::new(ip("10.88.0.5"), 8080))
            .endpoint(Endpoint::new(ip("10.88.0.6"), 8080))
            .endpoint(Endpoint::new(ip("10.88.0.7"), 8080));
        let chains = service(&n, Family::V4, 0x2000, &s, "-m comment --comment \"o\"").unwrap();
        assert_eq!(chains.len(), 4);
        let svc = &chains[0].rules;
        assert!(svc[0].ends_with("-j MARK --set-xmark 0x2000/0x2000"));
        assert!(svc[1].starts_with("-m recent --rcheck --seconds 60 --reap --name NETKIT-SEP-"));
        assert!(svc[4].contains("--probability 0.33333333349"));
        assert!(svc[5].contains("--probability 0.50000000000"));
        assert!(!svc[6].contains("statistic"));
        assert!(chains[3].rules[2].ends_with("-j DNAT --to-destination 10.88.0.7:8080"));
    }

    fn svc_rules(svc: Service, family: Family) -> Ruleset {
        let rules = Rules {
            services: vec![svc],
            ..Default::default()
        };
        render(&Names::new("NETKIT"), 0x2000, family, &[("o".into(), rules)])
            .unwrap()
            .unwrap()
    }

    fn chain<'a>(chains: &'a [Chain], suffix: &str) -> &'a [String] {
        let name = format!("NETKIT-{suffix}");
        &chains
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .rules
    }

    #[test]
    fn services_without_endpoints_reject_in_filter() {
        let s = Service::new("ns/web", Protocol::Tcp, ip("10.96.0.10"), 80)
            .node_port(30080)
            .external_ip(ip("192.0.2.80"));
        let r = svc_rules(s.clone(), Family::V4);
        assert_eq!(
            chain(&r.filter, "SERVICES"),
            [
                "-d 10.96.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment o -j REJECT --reject-with tcp-reset",
                "-d 192.0.2.80/32 -p tcp -m tcp --dport 80 -m comment --comment o -j REJECT --reject-with tcp-reset",
                "-p tcp -m addrtype --dst-type LOCAL -m tcp --dport 30080 -m comment --comment o -j REJECT --reject-with tcp-reset",
            ]
        );
        let id = service_id("ns/web");
        assert!(chain(&r.nat, &format!("SVC-{id}")).is_empty());
        let mut udp = Service::new("ns/dns", Protocol::Udp, ip("fd96::10"), 53);
        udp.masquerade = true;
        let r = svc_rules(udp, Family::V6);
        assert_eq!(
            chain(&r.filter, "SERVICES"),
            ["-d fd96::10/128 -p udp -m udp --dport 53 -m comment --comment o -j REJECT --reject-with icmp6-port-unreachable"]
        );
        // With an endpoint: nothing in filter.
        let r = svc_rules(s.endpoint(Endpoint::new(ip("10.88.0.5"), 80)), Family::V4);
        assert!(chain(&r.filter, "SERVICES").is_empty());
    }

    #[test]
    fn external_policies() {
        let id = service_id("ns/web");
        let cm = "-m comment --comment o";
        let base = Service::new("ns/web", Protocol::Tcp, ip("10.96.0.10"), 80)
            .node_port(30080)
            .external_ip(ip("192.0.2.80"))
            .endpoint(Endpoint::new(ip("10.88.0.5"), 80))
            .endpoint(Endpoint::new(ip("10.77.0.6"), 80));
        // No policy: external IP and node port to the service chain.
        let r = svc_rules(base.clone(), Family::V4);
        assert!(chain(&r.nat, "SERVICES").contains(&format!(
            "-d 192.0.2.80/32 -p tcp -m tcp --dport 80 {cm} -j NETKIT-SVC-{id}"
        )));
        assert_eq!(
            chain(&r.nat, "NODEPORTS"),
            [format!("-p tcp -m tcp --dport 30080 {cm} -j NETKIT-SVC-{id}")]
        );
        assert!(!r.nat.iter().any(|c| c.name.contains("-EXT-")));
        // Cluster: through the external chain, which marks.
        let r = svc_rules(base.clone().external_policy(TrafficPolicy::Cluster), Family::V4);
        assert_eq!(
            chain(&r.nat, "NODEPORTS"),
            [format!("-p tcp -m tcp --dport 30080 {cm} -j NETKIT-EXT-{id}")]
        );
        assert_eq!(
            chain(&r.nat, &format!("EXT-{id}")),
            [
                format!("{cm} -j MARK --set-xmark 0x2000/0x2000"),
                format!("{cm} -j NETKIT-SVC-{id}")
            ]
        );
        // Local: only the local endpoint, with affinity; none local: DROP in filter.
        let mut local = base
            .clone()
            .external_policy(TrafficPolicy::Local)
            .affinity(Duration::from_secs(9));
        local.endpoints[1].local = true;
        let r = svc_rules(local.clone(), Family::V4);
        let sep = format!("NETKIT-SEP-{id}-1");
        assert_eq!(
            chain(&r.nat, &format!("EXT-{id}")),
            [
                format!(
                    "-m recent --rcheck --seconds 9 --reap --name {sep} --mask 255.255.255.255 --rsource {cm} -j {sep}"
                ),
                format!("{cm} -j {sep}")
            ]
        );
        assert!(chain(&r.filter, "SERVICES").is_empty());
        local.endpoints[1].local = false;
        let r = svc_rules(local, Family::V4);
        assert!(chain(&r.nat, &format!("EXT-{id}")).is_empty());
        assert_eq!(
            chain(&r.filter, "SERVICES"),
            [
                format!("-d 192.0.2.80/32 -p tcp -m tcp --dport 80 {cm} -j DROP"),
                format!("-p tcp -m addrtype --dst-type LOCAL -m tcp --dport 30080 {cm} -j DROP"),
            ]
        );
    }

    #[test]
    fn restore_input_adds_jumps_and_removes_stale_chains() {
        let n = Names::new("NETKIT");
        let saved = save::parse(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
             :NETKIT-PREROUTING - [0:0]\n:NETKIT-SVC-old - [0:0]\n:OTHER - [0:0]\n\
             -A PREROUTING -m comment --comment netkit -j NETKIT-PREROUTING\n\
             -A PREROUTING -m comment --comment netkit -j NETKIT-PREROUTING\n\
             -A OUTPUT -j NETKIT-SVC-old\nCOMMIT\n",
        );
        let nat = saved.table("nat");
        let want = vec![Chain {
            name: "NETKIT-PREROUTING".into(),
            rules: vec!["-j RETURN".into()],
        }];
        let text = restore_input(&n, "nat", "netkit", Some(&want), &nat).unwrap();
        let expect = "*nat\n\
            -D PREROUTING -m comment --comment netkit -j NETKIT-PREROUTING\n\
            -D OUTPUT -j NETKIT-SVC-old\n\
            :NETKIT-PREROUTING - [0:0]\n\
            :NETKIT-SVC-old - [0:0]\n\
            -A NETKIT-PREROUTING -j RETURN\n\
            -X NETKIT-SVC-old\n\
            -I OUTPUT 1 -m comment --comment netkit -j NETKIT-OUTPUT\n\
            -I POSTROUTING 1 -m comment --comment netkit -j NETKIT-POSTROUTING\n\
            COMMIT\n";
        assert_eq!(text, expect);
        let clear = restore_input(&n, "nat", "netkit", None, &nat).unwrap();
        assert!(clear.contains("-X NETKIT-PREROUTING\n-X NETKIT-SVC-old\n"), "{clear}");
        assert_eq!(clear.matches("-D ").count(), 3);
        assert_eq!(restore_input(&n, "nat", "netkit", None, &save::Table::default()), None);
    }
}
