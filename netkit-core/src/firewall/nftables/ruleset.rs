//! The nft text netkit writes: the table's fixed part (sets, maps, base chains), and the chains
//! of one service.
//!
//! ```text
//! prerouting / output (nat, dstnat) ─ jump services
//! services:   daddr . l4proto . dport  vmap @service4/6   ─► goto svc-<id>   (service address)
//!                                                         ─► goto ext-<id>   (external IP; or
//!                                                             svc-<id> without external policy)
//!             fib daddr type local jump hostports
//! hostports:  l4proto . dport vmap @nodeport4/6           ─► goto ext-<id> (or svc-<id>, as above)
//!             dnat to daddr . l4proto . dport map @hostipport4/6
//!             dnat to l4proto . dport map @hostport4/6
//! svc-<id>, a service without affinity or Local policy ("mapped": its rules never change with
//!             its endpoints, see below):
//!             [mark for masquerade]
//!             meta l4proto P dnat to numgen random mod 65536 map @eps-<id>
//!             (no endpoints: the map is empty, the packet goes on un-NATed to the filter
//!             checks below)
//! eps-<id>:   map: typeof numgen random mod 65536 : daddr . P dport, flags interval; endpoint
//!             i of N holds the interval [i·65536/N, (i+1)·65536/N − 1] (equal shares)
//! svc-<id>, a service with affinity or Local policy (chains per endpoint):
//!             [mark for masquerade] [affinity: saddr @aff-<id>-<n> goto ep-<id>-<n>]
//!             numgen random mod N vmap { 0 : goto ep-<id>-0, … }
//!             (no endpoints: no rule, the packet goes on un-NATed to the filter checks below)
//! ext-<id>:   Cluster: mark for masquerade, goto svc-<id>
//!             Local:   [affinity, local endpoints only] numgen random mod L vmap
//!                      { 0 : goto ep-<id>-<first local>, … }; no local endpoint: drop
//!             (no endpoints: no rule)
//! ep-<id>-<n>: [saddr == endpoint: mark] [update @aff-<id>-<n>] dnat to endpoint
//! hairpin (nat, srcnat − 1): ct status dnat, saddr . daddr @hairpin4/6 masquerade — a mapped
//!             service's endpoint `e` puts `e . e` there: a pod reaching itself through a
//!             service is masqueraded (the pairs are only added; a stale one is harmless, it
//!             can only match such a hairpin)
//! postrouting (nat, srcnat): hairpin and 127.0.0.1 masquerade of DNATed traffic, marked
//!             traffic, then saddr . daddr @masqskip return, saddr . daddr @masq masquerade
//! forward (filter): iifname . oifname @isolation drop
//! input (filter): traffic to 127.0.0.0/8 from outside lo that no DNAT sent there: drop
//!
//! services without endpoints (filter, new connections only; `reject` is not allowed in nat
//! chains, so the nat chains above let the packet through and these refuse it):
//! check-prerouting (priority dstnat + 10, right after the DNAT; before the routing decision,
//!                so a node without a route to the service address still refuses):
//!                jump endpoints-check
//!                fib daddr type local, l4proto . dport @noendpointports4/6 ─► goto reject-noendpoints
//! check-output:  jump endpoints-check
//! endpoints-check: daddr . l4proto . dport @noendpoints4/6 ─► goto reject-noendpoints
//! reject-noendpoints: tcp: reject with tcp reset; else reject (ICMP port unreachable)
//! ```
//!
//! **Endpoint changes of a mapped service** (the same service with other endpoints) are set
//! element changes only, sent as one nf_tables netlink batch by the driver (the intervals of
//! `eps-<id>`, the `noendpoints` elements when the count goes 0 ↔ n, hairpin pairs): no
//! libnftables run (whose cache fetch grows with the whole ruleset) and no rule change (which
//! makes the kernel validate the table's whole jump graph), so their cost does not grow with
//! the number of services. Everything else about a service goes through the nft text below.
//!
//! `noendpoints4/6` hold the address and external IPs (`addr . proto . port`) and
//! `noendpointports4/6` the node port (`proto . port`) of every service that has no endpoint;
//! a service's elements come and go with its chains, when its endpoint count goes 0 ↔ n.
//! These sets and chains are written as commands that can be run again on a table that has
//! them (see `checks`): a table made by a netkit without them gets them with the next service
//! change that needs them.
//!
//! The `input` rule is kube-proxy's answer to CVE-2020-8558: an interface that needs
//! `route_localnet` (a port mapping answering on 127.0.0.1 DNATs from there to a container)
//! would otherwise let a neighbour on that interface reach the host's loopback services by
//! sending packets to 127.0.0.1. The firewall sets `route_localnet` only on such interfaces, and
//! only while this rule is in the kernel.

use std::fmt::Write;

use std::net::IpAddr;

use crate::firewall::model::{Protocol, Service, TrafficPolicy};

/// The table's comment: it names the state directory the table belongs to (see [`state_of`]).
fn comment(state_id: &str) -> String {
    format!("managed by netkit (state {state_id}, layout {LAYOUT}): container port mappings, masquerade, services")
}

/// The version of the table's layout this netkit writes. 2: services without affinity or
/// `Local` policy keep their endpoints in a map (`eps-<id>`), hairpin pairs in a set. A table
/// of an older layout is rebuilt from the state directory when the firewall is opened (see
/// [`layout_of`]).
pub(crate) const LAYOUT: u32 = 2;

/// The layout version in a table comment [`skeleton`] wrote: 1 when it names none (written
/// before layouts were numbered).
pub(crate) fn layout_of(comment: &str) -> u32 {
    comment
        .split_once(", layout ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(1)
}

/// The table's fixed part: one `table … { … }` block, then [`checks`] (create it only when the
/// table is missing: nft appends the block's rules when it is applied again; [`create`] makes
/// sure of it).
pub(crate) fn skeleton(table: &str, mark: u32, state_id: &str) -> String {
    let comment = comment(state_id);
    let block = format!(
        r#"table inet {table} {{
    comment "{comment}"
    map hostport4 {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
    map hostport6 {{ type inet_proto . inet_service : ipv6_addr . inet_service; }}
    map hostipport4 {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
    map hostipport6 {{ type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }}
    map service4 {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
    map service6 {{ type ipv6_addr . inet_proto . inet_service : verdict; }}
    map nodeport4 {{ type inet_proto . inet_service : verdict; }}
    map nodeport6 {{ type inet_proto . inet_service : verdict; }}
    set localnet4 {{ type ifname . ipv4_addr; flags interval; }}
    set localnet6 {{ type ifname . ipv6_addr; flags interval; }}
    set masqskip4 {{ type ipv4_addr . ipv4_addr; flags interval; }}
    set masqskip6 {{ type ipv6_addr . ipv6_addr; flags interval; }}
    set masq4 {{ type ipv4_addr . ipv4_addr; flags interval; }}
    set masq6 {{ type ipv6_addr . ipv6_addr; flags interval; }}
    set isolation {{ type ifname . ifname; }}
    chain services {{
        ip daddr . meta l4proto . th dport vmap @service4
        ip6 daddr . meta l4proto . th dport vmap @service6
        fib daddr type local jump hostports
    }}
    chain hostports {{
        meta nfproto ipv4 meta l4proto . th dport vmap @nodeport4
        meta nfproto ipv6 meta l4proto . th dport vmap @nodeport6
        meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @hostipport4
        meta nfproto ipv6 dnat ip6 to ip6 daddr . meta l4proto . th dport map @hostipport6
        meta nfproto ipv4 dnat ip to meta l4proto . th dport map @hostport4
        meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @hostport6
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        jump services
    }}
    chain output {{
        type nat hook output priority -100; policy accept;
        jump services
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ct status dnat oifname . ip saddr @localnet4 masquerade
        ct status dnat oifname . ip6 saddr @localnet6 masquerade
        ct status dnat ip saddr 127.0.0.0/8 masquerade
        meta mark and {mark:#x} == {mark:#x} masquerade
        ip daddr 224.0.0.0/4 return
        ip6 daddr ff00::/8 return
        ip saddr . ip daddr @masqskip4 return
        ip6 saddr . ip6 daddr @masqskip6 return
        ip saddr . ip daddr @masq4 masquerade fully-random
        ip6 saddr . ip6 daddr @masq6 masquerade fully-random
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname . oifname @isolation drop
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname != "lo" ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct status ! dnat drop comment "localhost is not reachable from outside lo"
    }}
}}
"#
    );
    block + &checks(table)
}

/// The sets and filter chains that make services without endpoints reject (see the module
/// docs), as commands that run again on a table that has them (sets are declared, chains
/// declared, flushed and refilled), so that an older table (made without them) gets them.
pub(crate) fn checks(table: &str) -> String {
    let mut s = String::new();
    for (set, ty) in [
        ("noendpoints4", "ipv4_addr . inet_proto . inet_service"),
        ("noendpoints6", "ipv6_addr . inet_proto . inet_service"),
        ("noendpointports4", "inet_proto . inet_service"),
        ("noendpointports6", "inet_proto . inet_service"),
        ("hairpin4", "ipv4_addr . ipv4_addr"),
        ("hairpin6", "ipv6_addr . ipv6_addr"),
    ] {
        let _ = writeln!(s, "add set inet {table} {set} {{ type {ty}; }}");
    }
    let chains: [(&str, Option<&str>, &[&str]); 5] = [
        (
            "reject-noendpoints",
            None,
            &[
                "meta l4proto tcp reject with tcp reset comment \"service without endpoints\"",
                "reject comment \"service without endpoints\"",
            ],
        ),
        (
            "endpoints-check",
            None,
            &[
                "ip daddr . meta l4proto . th dport @noendpoints4 goto reject-noendpoints",
                "ip6 daddr . meta l4proto . th dport @noendpoints6 goto reject-noendpoints",
            ],
        ),
        (
            "check-prerouting",
            Some("prerouting priority dstnat + 10"),
            &[
                "ct state new jump endpoints-check",
                "ct state new fib daddr type local meta nfproto ipv4 meta l4proto . th dport @noendpointports4 goto reject-noendpoints",
                "ct state new fib daddr type local meta nfproto ipv6 meta l4proto . th dport @noendpointports6 goto reject-noendpoints",
            ],
        ),
        ("check-output", Some("output"), &["ct state new jump endpoints-check"]),
        (
            "hairpin",
            Some("nat postrouting priority srcnat - 1"),
            &[
                "ct status dnat ip saddr . ip daddr @hairpin4 masquerade",
                "ct status dnat ip6 saddr . ip6 daddr @hairpin6 masquerade",
            ],
        ),
    ];
    for (chain, hook, _) in &chains {
        match hook {
            Some(h) => {
                // `prerouting priority …` names its own priority, `nat …` its type too; the
                // others are filter chains at filter's priority.
                let (ty, hook) = match h.strip_prefix("nat ") {
                    Some(h) => ("nat", h.to_string()),
                    None if h.contains("priority") => ("filter", h.to_string()),
                    None => ("filter", format!("{h} priority filter")),
                };
                let _ = writeln!(
                    s,
                    "add chain inet {table} {chain} {{ type {ty} hook {hook}; policy accept; }}"
                );
            }
            None => {
                let _ = writeln!(s, "add chain inet {table} {chain}");
            }
        }
        let _ = writeln!(s, "flush chain inet {table} {chain}");
    }
    for (chain, _, rules) in &chains {
        for r in *rules {
            let _ = writeln!(s, "add rule inet {table} {chain} {r}");
        }
    }
    s
}

/// [`skeleton`], for a table that must not exist yet: a `create table` first (with the comment,
/// which only the command that makes a table can set), so that the transaction fails with
/// `EEXIST` rather than append the fixed part's rules a second time when the table is there.
pub(crate) fn create(table: &str, mark: u32, state_id: &str) -> String {
    format!(
        "create table inet {table} {{ comment \"{}\"; }}\n{}",
        comment(state_id),
        skeleton(table, mark, state_id)
    )
}

/// The state directory id in a table comment [`skeleton`] wrote (`None`: a table made before
/// 0.2, or not by netkit).
pub(crate) fn state_of(comment: &str) -> Option<&str> {
    let rest = comment.strip_prefix("managed by netkit (state ")?;
    let end = rest.find([')', ','])?;
    let id = &rest[..end];
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// A stable short id for a service name: chain and set names derive from it.
pub(crate) fn service_id(name: &str) -> String {
    let h = crate::fsutil::fnv1a(name.as_bytes());
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

fn family(svc: &Service) -> (&'static str, &'static str, u8) {
    if svc.vip.is_ipv4() {
        ("ip", "ipv4_addr", 4)
    } else {
        ("ip6", "ipv6_addr", 6)
    }
}

/// Whether `svc` is laid out with its endpoints in a map (see the module docs): every service
/// but those with client affinity or the `Local` external policy.
pub(crate) fn mapped(svc: &Service) -> bool {
    svc.affinity.is_none() && svc.external_policy != Some(TrafficPolicy::Local)
}

/// Whether `old` and `new` differ in their endpoints only, both mapped: the change is set
/// elements only.
pub(crate) fn endpoints_only(old: &Service, new: &Service) -> bool {
    mapped(old) && mapped(new) && old.endpoints != new.endpoints && {
        let mut o = old.clone();
        o.endpoints.clone_from(&new.endpoints);
        o == *new
    }
}

/// The interval of `numgen random mod 65536` values endpoint `i` of `n` gets, `(first, last)`;
/// `None` for endpoints past the 65,536th (they get none).
pub(crate) fn eps_interval(i: usize, n: usize) -> Option<(u32, u32)> {
    let first = (i as u64 * 65536 / n as u64) as u32;
    let next = ((i as u64 + 1) * 65536 / n as u64) as u32;
    (next > first).then(|| (first, next - 1))
}

/// The endpoints map of a mapped service: `eps-<id>`.
pub(crate) fn eps_map(svc: &Service) -> String {
    format!("eps-{}", service_id(&svc.name))
}

fn endpoint_target(svc: &Service, n: usize) -> String {
    let ep = svc.endpoints[n];
    ep.to_string()
}

/// The verdict-map elements of a service, `(map, key, verdict)`: its address, its external
/// IPs and its node port, to `svc-<id>`, or (node port and external IPs of a service with an
/// external policy) to `ext-<id>`.
fn map_elements(svc: &Service) -> Vec<(String, String, String)> {
    let id = service_id(&svc.name);
    let (_, _, v) = family(svc);
    let (p, port) = (svc.protocol, svc.port);
    let external = if svc.external_policy.is_some() {
        format!("goto ext-{id}")
    } else {
        format!("goto svc-{id}")
    };
    let mut out = vec![(
        format!("service{v}"),
        format!("{} . {p} . {port}", svc.vip),
        format!("goto svc-{id}"),
    )];
    for ip in &svc.external_ips {
        out.push((format!("service{v}"), format!("{ip} . {p} . {port}"), external.clone()));
    }
    if let Some(np) = svc.node_port {
        out.push((format!("nodeport{v}"), format!("{p} . {np}"), external));
    }
    out
}

/// The elements of the filter sets that make a service without endpoints reject, `(set, key)`:
/// its address and external IPs (`noendpoints4/6`), its node port (`noendpointports4/6`).
/// None when it has endpoints.
fn reject_elements(svc: &Service) -> Vec<(String, String)> {
    if !svc.endpoints.is_empty() {
        return Vec::new();
    }
    reject_keys(svc)
        .into_iter()
        .map(|(set, ip, p, port)| match ip {
            Some(ip) => (set, format!("{ip} . {p} . {port}")),
            None => (set, format!("{p} . {port}")),
        })
        .collect()
}

/// The keys a service without endpoints puts in the reject sets, `(set, address, protocol,
/// port)`: `address . protocol . port` in `noendpoints4/6` for its address and external IPs,
/// `protocol . node port` (no address) in `noendpointports4/6`. Whatever its endpoints.
pub(crate) fn reject_keys(svc: &Service) -> Vec<(String, Option<IpAddr>, Protocol, u16)> {
    let (_, _, v) = family(svc);
    let mut out: Vec<_> = std::iter::once(svc.vip)
        .chain(svc.external_ips.iter().copied())
        .map(|ip| (format!("noendpoints{v}"), Some(ip), svc.protocol, svc.port))
        .collect();
    if let Some(np) = svc.node_port {
        out.push((format!("noendpointports{v}"), None, svc.protocol, np));
    }
    out
}

/// Commands that delete `old`'s map and set elements that `new` does not have (`new`: `None`
/// when the service goes). An element whose verdict changes goes too (the kernel refuses to
/// overwrite a map element with other data); it is added back with the new verdict.
fn delete_elements(table: &str, old: &Service, new: Option<&Service>, s: &mut String) {
    let (keep_map, keep_set) = new.map(|n| (map_elements(n), reject_elements(n))).unwrap_or_default();
    for e in map_elements(old).into_iter().filter(|e| !keep_map.contains(e)) {
        let _ = writeln!(s, "delete element inet {table} {} {{ {} }}", e.0, e.1);
    }
    for e in reject_elements(old).into_iter().filter(|e| !keep_set.contains(e)) {
        let _ = writeln!(s, "delete element inet {table} {} {{ {} }}", e.0, e.1);
    }
}

/// Commands that remove a service's chains, sets and map elements (`old` as it was applied).
pub(crate) fn remove_service(table: &str, old: &Service) -> String {
    let id = service_id(&old.name);
    let mut s = String::new();
    delete_elements(table, old, None, &mut s);
    if mapped(old) {
        let _ = writeln!(s, "flush chain inet {table} svc-{id}");
        if old.external_policy.is_some() {
            let _ = writeln!(s, "flush chain inet {table} ext-{id}");
            let _ = writeln!(s, "delete chain inet {table} ext-{id}");
        }
        let _ = writeln!(s, "delete chain inet {table} svc-{id}");
        let _ = writeln!(s, "delete map inet {table} eps-{id}");
        return s;
    }
    let _ = writeln!(s, "flush chain inet {table} svc-{id}");
    if old.external_policy.is_some() {
        let _ = writeln!(s, "flush chain inet {table} ext-{id}");
    }
    for n in 0..old.endpoints.len() {
        let _ = writeln!(s, "flush chain inet {table} ep-{id}-{n}");
    }
    let _ = writeln!(s, "delete chain inet {table} svc-{id}");
    if old.external_policy.is_some() {
        let _ = writeln!(s, "delete chain inet {table} ext-{id}");
    }
    for n in 0..old.endpoints.len() {
        let _ = writeln!(s, "delete chain inet {table} ep-{id}-{n}");
        if old.affinity.is_some() {
            let _ = writeln!(s, "delete set inet {table} aff-{id}-{n}");
        }
    }
    s
}

/// The rules that pick one of `picks` (indices of endpoints): affinity first (a client seen
/// lately goes to the endpoint it went to), then one at random.
fn pick_rules(table: &str, chain: &str, svc: &Service, picks: &[usize], s: &mut String) {
    let id = service_id(&svc.name);
    let (ipk, _, _) = family(svc);
    if svc.affinity.is_some() {
        for i in picks {
            let _ = writeln!(
                s,
                "add rule inet {table} {chain} {ipk} saddr @aff-{id}-{i} goto ep-{id}-{i}"
            );
        }
    }
    let arms: Vec<String> = picks
        .iter()
        .enumerate()
        .map(|(k, i)| format!("{k} : goto ep-{id}-{i}"))
        .collect();
    let _ = writeln!(
        s,
        "add rule inet {table} {chain} numgen random mod {} vmap {{ {} }}",
        picks.len(),
        arms.join(", ")
    );
}

/// Commands that make the kernel hold `svc`, replacing `old` (the same service as applied
/// before, if any). Only this service's chains, sets and elements are touched.
pub(crate) fn apply_service(table: &str, mark: u32, old: Option<&Service>, svc: &Service) -> String {
    // From one layout to the other: the old one goes whole, the new one comes whole.
    if let Some(o) = old.filter(|o| mapped(o) != mapped(svc)) {
        return remove_service(table, o) + &apply_service(table, mark, None, svc);
    }
    if mapped(svc) {
        return apply_mapped(table, mark, old, svc);
    }
    let id = service_id(&svc.name);
    let (ipk, addr_type, _) = family(svc);
    let mut s = String::new();
    // Drop elements the new version does not keep (address, port, external IPs, node port or
    // their verdicts changed; endpoints came to a service that had none).
    if let Some(o) = old {
        delete_elements(table, o, Some(svc), &mut s);
    }
    let had_ext = old.is_some_and(|o| o.external_policy.is_some());
    let has_ext = svc.external_policy.is_some();
    let _ = writeln!(s, "add chain inet {table} svc-{id}");
    let _ = writeln!(s, "flush chain inet {table} svc-{id}");
    if has_ext || had_ext {
        let _ = writeln!(s, "add chain inet {table} ext-{id}");
        let _ = writeln!(s, "flush chain inet {table} ext-{id}");
    }
    let n = svc.endpoints.len();
    for i in 0..n {
        let _ = writeln!(s, "add chain inet {table} ep-{id}-{i}");
        let _ = writeln!(s, "flush chain inet {table} ep-{id}-{i}");
        if let Some(t) = svc.affinity {
            let _ = writeln!(
                s,
                "add set inet {table} aff-{id}-{i} {{ type {addr_type}; flags dynamic,timeout; timeout {}s; }}",
                t.as_secs()
            );
        }
    }
    // Chains and sets of endpoints the old version had beyond the new count.
    if let Some(o) = old {
        for i in n..o.endpoints.len() {
            let _ = writeln!(s, "flush chain inet {table} ep-{id}-{i}");
            let _ = writeln!(s, "delete chain inet {table} ep-{id}-{i}");
        }
        if o.affinity.is_some() {
            let from = if svc.affinity.is_some() { n } else { 0 };
            for i in from..o.endpoints.len() {
                let _ = writeln!(s, "delete set inet {table} aff-{id}-{i}");
            }
        }
    }
    if had_ext && !has_ext {
        let _ = writeln!(s, "delete chain inet {table} ext-{id}");
    }
    // Without endpoints the chains are empty: the packet goes on un-NATed, and the filter
    // chains reject it (see `reject_elements`).
    if n > 0 {
        if svc.masquerade {
            let _ = writeln!(s, "add rule inet {table} svc-{id} meta mark set meta mark or {mark:#x}");
        }
        let all: Vec<usize> = (0..n).collect();
        pick_rules(table, &format!("svc-{id}"), svc, &all, &mut s);
        match svc.external_policy {
            None => {}
            Some(TrafficPolicy::Cluster) => {
                let _ = writeln!(s, "add rule inet {table} ext-{id} meta mark set meta mark or {mark:#x}");
                let _ = writeln!(s, "add rule inet {table} ext-{id} goto svc-{id}");
            }
            Some(TrafficPolicy::Local) => {
                let local = svc.external_endpoints();
                if local.is_empty() {
                    let _ = writeln!(s, "add rule inet {table} ext-{id} drop comment \"no local endpoint\"");
                } else {
                    pick_rules(table, &format!("ext-{id}"), svc, &local, &mut s);
                }
            }
        }
    }
    for i in 0..n {
        let ep = svc.endpoints[i];
        let _ = writeln!(
            s,
            "add rule inet {table} ep-{id}-{i} {ipk} saddr {} meta mark set meta mark or {mark:#x}",
            ep.ip
        );
        if svc.affinity.is_some() {
            let _ = writeln!(
                s,
                "add rule inet {table} ep-{id}-{i} update @aff-{id}-{i} {{ {ipk} saddr }}"
            );
        }
        let _ = writeln!(
            s,
            "add rule inet {table} ep-{id}-{i} meta l4proto {} dnat {ipk} to {}",
            svc.protocol,
            endpoint_target(svc, i)
        );
    }
    add_elements(table, svc, &mut s);
    s
}

/// Commands that add `svc`'s verdict-map elements (address, external IPs, node port) and, when
/// it has no endpoints, its reject elements.
fn add_elements(table: &str, svc: &Service, s: &mut String) {
    for (map, key, verdict) in map_elements(svc) {
        let _ = writeln!(
            s,
            "add element inet {table} {map} {{ {key} comment \"{}\" : {verdict} }}",
            svc.name
        );
    }
    for (set, key) in reject_elements(svc) {
        let _ = writeln!(s, "add element inet {table} {set} {{ {key} comment \"{}\" }}", svc.name);
    }
}

/// [`apply_service`] for a mapped service (`old`, if any, mapped too): its endpoints map
/// refilled, its chains rewritten.
fn apply_mapped(table: &str, mark: u32, old: Option<&Service>, svc: &Service) -> String {
    let id = service_id(&svc.name);
    let (ipk, _, v) = family(svc);
    let p = svc.protocol;
    let mut s = String::new();
    if let Some(o) = old {
        delete_elements(table, o, Some(svc), &mut s);
    }
    let had_ext = old.is_some_and(|o| o.external_policy.is_some());
    let has_ext = svc.external_policy.is_some();
    let _ = writeln!(
        s,
        "add map inet {table} eps-{id} {{ typeof numgen random mod 65536 : {ipk} daddr . {p} dport; flags interval; }}"
    );
    let _ = writeln!(s, "flush map inet {table} eps-{id}");
    let _ = writeln!(s, "add chain inet {table} svc-{id}");
    let _ = writeln!(s, "flush chain inet {table} svc-{id}");
    if has_ext || had_ext {
        let _ = writeln!(s, "add chain inet {table} ext-{id}");
        let _ = writeln!(s, "flush chain inet {table} ext-{id}");
    }
    if had_ext && !has_ext {
        let _ = writeln!(s, "delete chain inet {table} ext-{id}");
    }
    if svc.masquerade {
        let _ = writeln!(s, "add rule inet {table} svc-{id} meta mark set meta mark or {mark:#x}");
    }
    let _ = writeln!(
        s,
        "add rule inet {table} svc-{id} meta l4proto {p} dnat {ipk} to numgen random mod 65536 map @eps-{id}"
    );
    if has_ext {
        // Cluster (Local services are not mapped).
        let _ = writeln!(s, "add rule inet {table} ext-{id} meta mark set meta mark or {mark:#x}");
        let _ = writeln!(s, "add rule inet {table} ext-{id} goto svc-{id}");
    }
    let n = svc.endpoints.len();
    let intervals: Vec<String> = (0..n)
        .filter_map(|i| {
            let (a, b) = eps_interval(i, n)?;
            Some(format!("{a}-{b} : {} . {}", svc.endpoints[i].ip, svc.endpoints[i].port))
        })
        .collect();
    if !intervals.is_empty() {
        let _ = writeln!(s, "add element inet {table} eps-{id} {{ {} }}", intervals.join(", "));
        let pairs: Vec<String> = svc.endpoints.iter().map(|e| format!("{} . {}", e.ip, e.ip)).collect();
        let _ = writeln!(s, "add element inet {table} hairpin{v} {{ {} }}", pairs.join(", "));
    }
    add_elements(table, svc, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;
    use crate::firewall::model::{Endpoint, Isolation, Masquerade, Network, PortMapping, Protocol, Rules};
    use crate::firewall::nftables::elements;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn web(endpoints: &[&str]) -> Service {
        endpoints.iter().fold(
            Service::new("default/web", Protocol::Tcp, ip("10.96.0.1"), 80),
            |s, e| s.endpoint(Endpoint::new(ip(e), 8080)),
        )
    }

    /// The lines of `text` that start with `prefix`.
    fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn skeleton_holds_every_set_the_elements_go_to() {
        let s = skeleton("netkit", 0x2000, "00ff");
        let mut rules = Rules::default();
        for (c, h) in [
            ("10.88.0.2", None),
            ("fd00::2", None),
            ("10.88.0.2", Some("192.0.2.1")),
            ("fd00::2", Some("2001:db8::1")),
        ] {
            let mut m = PortMapping::new(Protocol::Tcp, 8080, ip(c), 80);
            if let Some(h) = h {
                m = m.host_ip(ip(h));
            }
            rules.port_mappings.push(m);
        }
        for n in ["10.88.0.0/16", "fd00::/64"] {
            rules.masquerades.push(Masquerade::subnet(n.parse().unwrap()));
            rules.networks.push(Network::new("cni0", n.parse().unwrap()));
        }
        rules.isolations.push(Isolation::new("cni0", "cni1"));
        let mut sets: Vec<_> = elements::of_rules(&rules, "o").iter().map(|e| e.set).collect();
        sets.sort();
        sets.dedup();
        assert_eq!(sets.len(), 11, "{sets:?}");
        for set in sets {
            assert!(
                s.contains(&format!("    map {set} {{")) || s.contains(&format!("    set {set} {{")),
                "no {set} in the skeleton"
            );
        }
        // The maps services use, the chains they jump from, and what holds it together.
        for name in ["map service4 {", "map service6 {", "map nodeport4 {", "map nodeport6 {"] {
            assert!(s.contains(name), "{name}");
        }
        for chain in [
            "services",
            "hostports",
            "prerouting",
            "output",
            "postrouting",
            "forward",
            "input",
        ] {
            assert_eq!(s.matches(&format!("    chain {chain} {{")).count(), 1, "{chain}");
        }
        assert!(s.contains("meta mark and 0x2000 == 0x2000 masquerade"), "{s}");
        assert!(s.starts_with("table inet netkit {\n"));
        // The comment names the state directory.
        let comment = s.lines().nth(1).unwrap().trim();
        let text = comment.strip_prefix("comment \"").unwrap().strip_suffix('"').unwrap();
        assert_eq!(state_of(text), Some("00ff"));
    }

    #[test]
    fn create_refuses_an_existing_table_before_the_skeleton() {
        let c = create("t", 1, "ab");
        let (first, rest) = c.split_once('\n').unwrap();
        assert_eq!(
            first,
            "create table inet t { comment \"managed by netkit (state ab, layout 2): container port mappings, masquerade, services\"; }"
        );
        assert_eq!(rest, skeleton("t", 1, "ab"));
    }

    #[test]
    fn state_of_reads_only_netkit_comments() {
        assert_eq!(state_of(&comment("0123abcd")), Some("0123abcd"));
        assert_eq!(state_of("managed by netkit (state ABCdef)"), Some("ABCdef"));
        assert_eq!(state_of("managed by netkit (state )"), None);
        assert_eq!(state_of("managed by netkit (state xyz)"), None);
        assert_eq!(state_of("managed by netkit (state 12"), None);
        assert_eq!(
            state_of("managed by netkit: container port mappings"),
            None,
            "before 0.2"
        );
        assert_eq!(state_of("somebody else's table"), None);
        // Layouts: numbered since 2; a comment without one is layout 1.
        assert_eq!(state_of(&comment("00ff")), Some("00ff"));
        assert_eq!(layout_of(&comment("00ff")), LAYOUT);
        assert_eq!(layout_of("managed by netkit (state 00ff): container port mappings"), 1);
        assert_eq!(layout_of("managed by netkit (state 00ff, layout 7): x"), 7);
        assert_eq!(state_of(""), None);
    }

    #[test]
    fn service_ids_are_stable_and_short() {
        let id = service_id("default/web");
        assert_eq!(id.len(), 12);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, service_id("default/web"));
        assert_ne!(id, service_id("default/web2"));
    }

    /// A service with affinity: laid out with chains per endpoint.
    fn sticky(endpoints: &[&str]) -> Service {
        web(endpoints).affinity(Duration::from_secs(600))
    }

    #[test]
    fn apply_service_for_a_new_service() {
        let svc = web(&["10.88.0.2", "10.88.0.3"]).node_port(30080);
        let id = service_id(&svc.name);
        let s = apply_service("t", 0x2000, None, &svc);
        assert!(lines(&s, "delete").is_empty(), "{s}");
        assert_eq!(lines(&s, "add chain"), [format!("add chain inet t svc-{id}")]);
        assert!(s.contains(&format!(
            "add map inet t eps-{id} {{ typeof numgen random mod 65536 : ip daddr . tcp dport; flags interval; }}"
        )));
        assert!(s.contains(&format!(
            "add rule inet t svc-{id} meta l4proto tcp dnat ip to numgen random mod 65536 map @eps-{id}"
        )));
        assert!(s.contains(&format!(
            "add element inet t eps-{id} {{ 0-32767 : 10.88.0.2 . 8080, 32768-65535 : 10.88.0.3 . 8080 }}"
        )));
        assert!(s.contains("add element inet t hairpin4 { 10.88.0.2 . 10.88.0.2, 10.88.0.3 . 10.88.0.3 }"));
        assert!(s.contains(&format!(
            "add element inet t service4 {{ 10.96.0.1 . tcp . 80 comment \"default/web\" : goto svc-{id} }}"
        )));
        assert!(s.contains(&format!(
            "add element inet t nodeport4 {{ tcp . 30080 comment \"default/web\" : goto svc-{id} }}"
        )));
        // No masquerade mark on the service chain, no affinity, no endpoint chains.
        assert!(!s.contains(&format!("add rule inet t svc-{id} meta mark")), "{s}");
        assert!(!s.contains("aff-") && !s.contains("ep-"), "{s}");
        assert!(!s.contains("noendpoint"), "{s}");
        // Without endpoints: the same rules (an empty map matches nothing: the packet goes on
        // to the filter checks), the filter sets hold its address and node port.
        let empty = apply_service("t", 0x2000, None, &web(&[]).masquerade(true).node_port(30080));
        assert_eq!(lines(&empty, "add rule").len(), 2, "{empty}");
        assert!(!empty.contains(&format!("add element inet t eps-{id}")), "{empty}");
        assert_eq!(
            lines(&empty, "add element inet t noendpoint"),
            [
                "add element inet t noendpoints4 { 10.96.0.1 . tcp . 80 comment \"default/web\" }",
                "add element inet t noendpointports4 { tcp . 30080 comment \"default/web\" }"
            ]
        );
        // IPv6.
        let v6 = Service::new("v6", Protocol::Udp, ip("fd96::1"), 53).endpoint(Endpoint::new(ip("fd00::2"), 53));
        let s = apply_service("t", 1, None, &v6);
        assert!(s.contains("add element inet t service6 { fd96::1 . udp . 53"), "{s}");
        assert!(s.contains("ip6 daddr . udp dport; flags interval;"), "{s}");
        assert!(s.contains("dnat ip6 to numgen random mod 65536 map @eps-"), "{s}");
        assert!(s.contains("{ 0-65535 : fd00::2 . 53 }"), "{s}");
        // With affinity: chains per endpoint.
        let svc = sticky(&["10.88.0.2", "10.88.0.3"]);
        let s = apply_service("t", 0x2000, None, &svc);
        assert!(s.contains(&format!(
            "add rule inet t svc-{id} numgen random mod 2 vmap {{ 0 : goto ep-{id}-0, 1 : goto ep-{id}-1 }}"
        )));
        assert!(s.contains(&format!(
            "add rule inet t ep-{id}-1 meta l4proto tcp dnat ip to 10.88.0.3:8080"
        )));
        assert!(s.contains(&format!(
            "add rule inet t ep-{id}-0 ip saddr 10.88.0.2 meta mark set meta mark or 0x2000"
        )));
        assert!(!s.contains("eps-"), "{s}");
    }

    #[test]
    fn apply_service_when_endpoints_change() {
        // Mapped: the map is refilled, nothing else but the hairpin pairs changes (the driver
        // sends such a change as elements, without this text; see `endpoints`).
        let (old, new) = (
            web(&["10.88.0.2", "10.88.0.3", "10.88.0.4"]),
            web(&["10.88.0.2", "10.88.0.5"]),
        );
        assert!(endpoints_only(&old, &new));
        let id = service_id(&new.name);
        let s = apply_service("t", 1, Some(&old), &new);
        assert!(lines(&s, "delete").is_empty(), "{s}");
        assert!(s.contains(&format!("flush map inet t eps-{id}\n")), "{s}");
        assert!(
            s.contains("0-32767 : 10.88.0.2 . 8080, 32768-65535 : 10.88.0.5 . 8080"),
            "{s}"
        );
        assert!(!s.contains("10.88.0.3"), "{s}");
        // Chains per endpoint (affinity): the third endpoint's chain goes.
        let (old, new) = (
            sticky(&["10.88.0.2", "10.88.0.3", "10.88.0.4"]),
            sticky(&["10.88.0.2", "10.88.0.5"]),
        );
        assert!(!endpoints_only(&old, &new));
        let s = apply_service("t", 1, Some(&old), &new);
        assert!(lines(&s, "delete element").is_empty(), "{s}");
        assert_eq!(lines(&s, "delete chain"), [format!("delete chain inet t ep-{id}-2")]);
        assert!(s.contains(&format!("flush chain inet t ep-{id}-2\ndelete chain inet t ep-{id}-2")));
        assert!(s.contains("dnat ip to 10.88.0.5:8080"), "{s}");
        assert!(!s.contains("10.88.0.3"), "{s}");
        assert!(s.contains("numgen random mod 2 "), "{s}");
        // More endpoints than before: nothing is deleted but the old affinity sets' surplus.
        let s = apply_service("t", 1, Some(&new), &old);
        assert!(
            lines(&s, "delete chain").is_empty() && lines(&s, "delete element").is_empty(),
            "{s}"
        );
        // Another address or port: the old map element goes.
        let (a, mut moved) = (web(&["10.88.0.2"]), web(&["10.88.0.2"]));
        moved.vip = ip("10.96.0.9");
        assert!(!endpoints_only(&a, &moved));
        let s = apply_service("t", 1, Some(&a), &moved);
        assert_eq!(
            lines(&s, "delete element"),
            ["delete element inet t service4 { 10.96.0.1 . tcp . 80 }"]
        );
        assert!(s.contains("add element inet t service4 { 10.96.0.9 . tcp . 80"), "{s}");
    }

    #[test]
    fn apply_service_turns_affinity_on_and_off() {
        let plain = web(&["10.88.0.2", "10.88.0.3"]);
        let sticky = plain.clone().affinity(Duration::from_secs(600));
        let id = service_id(&plain.name);
        // On: the mapped layout goes whole (map, chain, elements), the chains come.
        let on = apply_service("t", 1, Some(&plain), &sticky);
        assert!(on.contains(&format!("delete map inet t eps-{id}\n")), "{on}");
        assert!(on.find("delete map").unwrap() < on.find("add set").unwrap(), "{on}");
        assert_eq!(
            lines(&on, "add set"),
            [
                format!("add set inet t aff-{id}-0 {{ type ipv4_addr; flags dynamic,timeout; timeout 600s; }}"),
                format!("add set inet t aff-{id}-1 {{ type ipv4_addr; flags dynamic,timeout; timeout 600s; }}")
            ]
        );
        assert!(on.contains(&format!("add rule inet t svc-{id} ip saddr @aff-{id}-1 goto ep-{id}-1")));
        assert!(on.contains(&format!("add rule inet t ep-{id}-0 update @aff-{id}-0 {{ ip saddr }}")));
        // Off: the chains and sets go, the map comes.
        let off = apply_service("t", 1, Some(&sticky), &plain);
        assert!(lines(&off, "add set").is_empty(), "{off}");
        assert!(!off.contains("@aff-"), "{off}");
        assert_eq!(
            lines(&off, "delete set"),
            [
                format!("delete set inet t aff-{id}-0"),
                format!("delete set inet t aff-{id}-1")
            ]
        );
        assert!(off.contains(&format!("add map inet t eps-{id} ")), "{off}");
        // Still on, one endpoint fewer: only the last set goes.
        let fewer = web(&["10.88.0.2"]).affinity(Duration::from_secs(600));
        let s = apply_service("t", 1, Some(&sticky), &fewer);
        assert_eq!(lines(&s, "delete set"), [format!("delete set inet t aff-{id}-1")]);
    }

    #[test]
    fn apply_service_when_the_node_port_changes() {
        let a = web(&["10.88.0.2"]).node_port(30080);
        let b = web(&["10.88.0.2"]).node_port(30081);
        let s = apply_service("t", 1, Some(&a), &b);
        assert_eq!(
            lines(&s, "delete element"),
            ["delete element inet t nodeport4 { tcp . 30080 }"]
        );
        assert!(s.contains("add element inet t nodeport4 { tcp . 30081 "), "{s}");
        // Dropped: only the delete; added: only the add; unchanged: neither delete.
        let none = web(&["10.88.0.2"]);
        let s = apply_service("t", 1, Some(&a), &none);
        assert_eq!(
            lines(&s, "delete element"),
            ["delete element inet t nodeport4 { tcp . 30080 }"]
        );
        assert!(!s.contains("add element inet t nodeport4"), "{s}");
        let s = apply_service("t", 1, Some(&none), &a);
        assert!(lines(&s, "delete").is_empty(), "{s}");
        assert!(s.contains("add element inet t nodeport4 { tcp . 30080 "), "{s}");
        let s = apply_service("t", 1, Some(&a), &a.clone().endpoint(Endpoint::new(ip("10.88.0.3"), 1)));
        assert!(lines(&s, "delete element").is_empty(), "{s}");
        // Another protocol: the old node port element goes too.
        let mut udp = a.clone();
        udp.protocol = Protocol::Udp;
        let s = apply_service("t", 1, Some(&a), &udp);
        assert!(s.contains("delete element inet t nodeport4 { tcp . 30080 }"), "{s}");
    }

    #[test]
    fn endpoints_coming_and_going_move_the_reject_elements() {
        let empty = web(&[]).node_port(30080).external_ip(ip("192.0.2.80"));
        let one = web(&["10.88.0.2"]).node_port(30080).external_ip(ip("192.0.2.80"));
        let s = apply_service("t", 1, Some(&empty), &one);
        assert_eq!(
            lines(&s, "delete element"),
            [
                "delete element inet t noendpoints4 { 10.96.0.1 . tcp . 80 }",
                "delete element inet t noendpoints4 { 192.0.2.80 . tcp . 80 }",
                "delete element inet t noendpointports4 { tcp . 30080 }"
            ]
        );
        assert!(!s.contains("add element inet t noendpoint"), "{s}");
        let s = apply_service("t", 1, Some(&one), &empty);
        assert!(lines(&s, "delete element").is_empty(), "{s}");
        assert_eq!(lines(&s, "add element inet t noendpoint").len(), 3, "{s}");
        assert!(lines(&s, "delete chain").is_empty(), "{s}");
        // Gone while empty: its elements go.
        let s = remove_service("t", &empty);
        assert_eq!(lines(&s, "delete element inet t noendpoint").len(), 3, "{s}");
    }

    #[test]
    fn external_policies_and_ips() {
        let id = service_id("default/web");
        let base = web(&["10.88.0.2", "10.88.0.3"])
            .node_port(30080)
            .external_ip(ip("192.0.2.80"));
        // No policy: external IP and node port go to the service chain, no external chain.
        let s = apply_service("t", 0x2000, None, &base);
        assert!(s.contains(&format!(
            "add element inet t service4 {{ 192.0.2.80 . tcp . 80 comment \"default/web\" : goto svc-{id} }}"
        )));
        assert!(s.contains(&format!(
            "add element inet t nodeport4 {{ tcp . 30080 comment \"default/web\" : goto svc-{id} }}"
        )));
        assert!(!s.contains("ext-"), "{s}");
        // Cluster: both to ext-<id>, which marks then goes to the service chain; the VIP stays.
        let cluster = base.clone().external_policy(TrafficPolicy::Cluster);
        let s = apply_service("t", 0x2000, Some(&base), &cluster);
        assert_eq!(
            lines(&s, "delete element"),
            [
                "delete element inet t service4 { 192.0.2.80 . tcp . 80 }",
                "delete element inet t nodeport4 { tcp . 30080 }"
            ]
        );
        assert_eq!(
            lines(&s, &format!("add rule inet t ext-{id}")),
            [
                format!("add rule inet t ext-{id} meta mark set meta mark or 0x2000"),
                format!("add rule inet t ext-{id} goto svc-{id}")
            ]
        );
        assert!(s.contains(&format!(
            "192.0.2.80 . tcp . 80 comment \"default/web\" : goto ext-{id} }}"
        )));
        assert!(s.contains(&format!("tcp . 30080 comment \"default/web\" : goto ext-{id} }}")));
        assert!(s.contains(&format!(
            "10.96.0.1 . tcp . 80 comment \"default/web\" : goto svc-{id} }}"
        )));
        // Local: only the local endpoint (index 1), affinity included, no mark.
        let mut local = base
            .clone()
            .external_policy(TrafficPolicy::Local)
            .affinity(Duration::from_secs(60));
        local.endpoints[1].local = true;
        let s = apply_service("t", 0x2000, Some(&cluster), &local);
        // (From the mapped layout to chains per endpoint: the old one goes whole first.)
        assert!(s.contains(&format!("delete map inet t eps-{id}\n")), "{s}");
        assert_eq!(
            lines(&s, &format!("add rule inet t ext-{id}")),
            [
                format!("add rule inet t ext-{id} ip saddr @aff-{id}-1 goto ep-{id}-1"),
                format!("add rule inet t ext-{id} numgen random mod 1 vmap {{ 0 : goto ep-{id}-1 }}")
            ]
        );
        // Local without a local endpoint: drop.
        let mut none = local.clone();
        none.endpoints[1].local = false;
        let s = apply_service("t", 0x2000, Some(&local), &none);
        assert_eq!(
            lines(&s, &format!("add rule inet t ext-{id}")),
            [format!("add rule inet t ext-{id} drop comment \"no local endpoint\"")]
        );
        // Back to no policy: elements back to svc-<id>, the external chain goes after them.
        let s = apply_service(
            "t",
            0x2000,
            Some(&none),
            &base.clone().affinity(Duration::from_secs(60)),
        );
        assert_eq!(lines(&s, "delete element").len(), 2, "{s}");
        assert_eq!(lines(&s, "delete chain"), [format!("delete chain inet t ext-{id}")]);
        assert!(s.find("delete element").unwrap() < s.find("delete chain").unwrap());
        let s = remove_service("t", &local);
        assert_eq!(lines(&s, "delete element").len(), 3, "{s}");
        assert!(s.contains(&format!("flush chain inet t ext-{id}\n")), "{s}");
        assert!(s.contains(&format!("delete chain inet t ext-{id}\n")), "{s}");
    }

    #[test]
    fn checks_are_commands_that_run_again() {
        let c = checks("t");
        for set in [
            "noendpoints4",
            "noendpoints6",
            "noendpointports4",
            "noendpointports6",
            "hairpin4",
            "hairpin6",
        ] {
            assert_eq!(lines(&c, &format!("add set inet t {set} ")).len(), 1, "{set}");
        }
        assert!(
            c.contains("add chain inet t hairpin { type nat hook postrouting priority srcnat - 1; policy accept; }")
        );
        for chain in [
            "reject-noendpoints",
            "endpoints-check",
            "check-prerouting",
            "check-output",
            "hairpin",
        ] {
            assert!(c.contains(&format!("flush chain inet t {chain}\n")), "{chain}");
        }
        assert!(c.contains("add chain inet t check-output { type filter hook output priority filter; policy accept; }"));
        assert!(c.contains(
            "add chain inet t check-prerouting { type filter hook prerouting priority dstnat + 10; policy accept; }"
        ));
        assert!(c.contains("add rule inet t reject-noendpoints meta l4proto tcp reject with tcp reset"));
        // Every chain is flushed before any rule is added.
        assert!(c.rfind("flush chain").unwrap() < c.find("add rule").unwrap());
        assert!(skeleton("t", 1, "ab").ends_with(&c));
    }

    #[test]
    fn remove_service_takes_everything_it_made() {
        let svc = web(&["10.88.0.2", "10.88.0.3"])
            .node_port(30080)
            .affinity(Duration::from_secs(60));
        let id = service_id(&svc.name);
        let s = remove_service("t", &svc);
        assert_eq!(
            lines(&s, "delete element"),
            [
                "delete element inet t service4 { 10.96.0.1 . tcp . 80 }",
                "delete element inet t nodeport4 { tcp . 30080 }"
            ]
        );
        assert_eq!(lines(&s, "flush chain").len(), 3);
        assert_eq!(lines(&s, "delete chain").len(), 3);
        assert_eq!(
            lines(&s, "delete set"),
            [
                format!("delete set inet t aff-{id}-0"),
                format!("delete set inet t aff-{id}-1")
            ]
        );
        // Chains are flushed before any is deleted (jumps between them go first).
        let last_flush = s.rfind("flush chain").unwrap();
        assert!(s.find("delete chain").unwrap() > last_flush);
        let plain = remove_service("t", &web(&["10.88.0.2"]));
        assert!(lines(&plain, "delete set").is_empty());
        assert_eq!(lines(&plain, "delete element").len(), 1);
    }

    /// libnftables takes every text above, in the order a service lives through.
    #[test]
    fn libnftables_accepts_the_text() {
        use std::sync::atomic::{AtomicU32, Ordering};
        if super::super::libnft::available().is_err() {
            return;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("nkruleset{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let ns = crate::netns::NetNsGuard::create(&name).unwrap();
        let run = |text: &str| super::super::libnft::run(&ns, text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        run(&create("t", 0x2000, "ab"));
        let steps = [
            web(&["10.88.0.2"]),
            web(&["10.88.0.2", "10.88.0.4", "10.88.0.5"]),
            web(&["10.88.0.2", "10.88.0.3"]).node_port(30080),
            web(&["10.88.0.2", "10.88.0.3"])
                .node_port(30080)
                .affinity(Duration::from_secs(60)),
            web(&["10.88.0.3"]).node_port(30081).affinity(Duration::from_secs(60)),
            web(&["10.88.0.3"]).masquerade(true),
            web(&[]),
            web(&[]).node_port(30080).external_ip(ip("192.0.2.80")),
            web(&["10.88.0.2", "10.88.0.3"])
                .node_port(30080)
                .external_ip(ip("192.0.2.80"))
                .external_policy(TrafficPolicy::Cluster),
            web(&["10.88.0.2", "10.88.0.3"])
                .node_port(30080)
                .external_ip(ip("192.0.2.81"))
                .external_policy(TrafficPolicy::Local)
                .affinity(Duration::from_secs(60)),
            web(&["10.88.0.2"])
                .endpoint(Endpoint::new(ip("10.88.0.3"), 8080).local(true))
                .node_port(30080)
                .external_ip(ip("192.0.2.81"))
                .external_policy(TrafficPolicy::Local)
                .affinity(Duration::from_secs(60)),
            web(&[]).node_port(30080).external_policy(TrafficPolicy::Local),
            web(&["10.88.0.2"]).node_port(30081),
        ];
        let mut before: Option<&Service> = None;
        for svc in &steps {
            run(&apply_service("t", 0x2000, before, svc));
            before = Some(svc);
        }
        run(&remove_service("t", before.unwrap()));
        let left = run("list table inet t\n");
        assert!(
            !left.contains("svc-") && !left.contains("ep-") && !left.contains("aff-") && !left.contains("ext-"),
            "{left}"
        );
        // Mapped services of the other protocols and IPv6.
        for svc in [
            Service::new("u", Protocol::Udp, ip("10.96.0.53"), 53).endpoint(Endpoint::new(ip("10.88.0.9"), 53)),
            Service::new("s6", Protocol::Sctp, ip("fd96::1"), 9).endpoint(Endpoint::new(ip("fd00::9"), 9)),
        ] {
            run(&apply_service("t", 0x2000, None, &svc));
            run(&remove_service("t", &svc));
        }
        let left = run("list table inet t\n");
        assert!(!left.contains("eps-") && !left.contains("svc-"), "{left}");
        // The checks run again on a table that has them; a table without them (an older
        // netkit's) gets them.
        run(&checks("t"));
        run("delete chain inet t check-prerouting\nflush chain inet t endpoints-check\ndelete set inet t noendpoints4\n");
        run(&checks("t"));
        run(&apply_service("t", 0x2000, None, &web(&[])));
        let listed = run("list table inet t\n");
        assert_eq!(listed.matches("jump endpoints-check").count(), 2, "{listed}");
        // The table is there: create refuses it rather than add its rules twice.
        let err = super::super::libnft::run(&ns, &create("t", 0x2000, "ab")).unwrap_err();
        assert_eq!(super::super::libnft::errno_of(&err), Some(libc::EEXIST), "{err}");
    }
}
