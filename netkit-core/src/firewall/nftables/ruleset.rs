//! The nft text netkit writes: the table's fixed part (sets, maps, base chains), and the chains
//! of one service.
//!
//! ```text
//! prerouting / output (nat, dstnat) ─ jump services
//! services:   daddr . l4proto . dport  vmap @service4/6   ─► goto svc-<id>
//!             fib daddr type local jump hostports
//! hostports:  l4proto . dport vmap @nodeport4/6           ─► goto svc-<id>
//!             dnat to daddr . l4proto . dport map @hostipport4/6
//!             dnat to l4proto . dport map @hostport4/6
//! svc-<id>:   [mark for masquerade] [affinity: saddr @aff-<id>-<n> goto ep-<id>-<n>]
//!             numgen random mod N vmap { 0 : goto ep-<id>-0, … }
//! ep-<id>-<n>: [saddr == endpoint: mark] [update @aff-<id>-<n>] dnat to endpoint
//! postrouting (nat, srcnat): hairpin and 127.0.0.1 masquerade of DNATed traffic, marked
//!             traffic, then saddr . daddr @masqskip return, saddr . daddr @masq masquerade
//! forward (filter): iifname . oifname @isolation drop
//! input (filter): traffic to 127.0.0.0/8 from outside lo that no DNAT sent there: drop
//! ```
//!
//! The `input` rule is kube-proxy's answer to CVE-2020-8558: an interface that needs
//! `route_localnet` (a port mapping answering on 127.0.0.1 DNATs from there to a container)
//! would otherwise let a neighbour on that interface reach the host's loopback services by
//! sending packets to 127.0.0.1. The firewall sets `route_localnet` only on such interfaces, and
//! only while this rule is in the kernel.

use std::fmt::Write;

use crate::firewall::model::Service;

/// The table's comment: it names the state directory the table belongs to (see [`state_of`]).
fn comment(state_id: &str) -> String {
    format!("managed by netkit (state {state_id}): container port mappings, masquerade, services")
}

/// The table's fixed part, as one `table … { … }` block (create it only when the table is
/// missing: nft appends rules when the block is applied again; [`create`] makes sure of it).
pub(crate) fn skeleton(table: &str, mark: u32, state_id: &str) -> String {
    let comment = comment(state_id);
    format!(
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
    )
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
    let (id, _) = rest.split_once(')')?;
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

fn endpoint_target(svc: &Service, n: usize) -> String {
    let ep = svc.endpoints[n];
    ep.to_string()
}

/// Commands that remove a service's chains, sets and map elements (`old` as it was applied).
pub(crate) fn remove_service(table: &str, old: &Service) -> String {
    let id = service_id(&old.name);
    let (_, _, v) = family(old);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "delete element inet {table} service{v} {{ {} . {} . {} }}",
        old.vip, old.protocol, old.port
    );
    if let Some(np) = old.node_port {
        let _ = writeln!(
            s,
            "delete element inet {table} nodeport{v} {{ {} . {np} }}",
            old.protocol
        );
    }
    let _ = writeln!(s, "flush chain inet {table} svc-{id}");
    for n in 0..old.endpoints.len() {
        let _ = writeln!(s, "flush chain inet {table} ep-{id}-{n}");
    }
    let _ = writeln!(s, "delete chain inet {table} svc-{id}");
    for n in 0..old.endpoints.len() {
        let _ = writeln!(s, "delete chain inet {table} ep-{id}-{n}");
        if old.affinity.is_some() {
            let _ = writeln!(s, "delete set inet {table} aff-{id}-{n}");
        }
    }
    s
}

/// Commands that make the kernel hold `svc`, replacing `old` (the same service as applied
/// before, if any). Only this service's chains, sets and map elements are touched.
pub(crate) fn apply_service(table: &str, mark: u32, old: Option<&Service>, svc: &Service) -> String {
    let id = service_id(&svc.name);
    let (ipk, addr_type, v) = family(svc);
    let mut s = String::new();
    // Drop map elements the new version does not keep (address, port or node port changed).
    if let Some(o) = old {
        if (o.vip, o.protocol, o.port) != (svc.vip, svc.protocol, svc.port) {
            let _ = writeln!(
                s,
                "delete element inet {table} service{} {{ {} . {} . {} }}",
                family(o).2,
                o.vip,
                o.protocol,
                o.port
            );
        }
        if let Some(np) = o.node_port {
            if o.node_port != svc.node_port || o.protocol != svc.protocol || family(o).2 != v {
                let _ = writeln!(
                    s,
                    "delete element inet {table} nodeport{} {{ {} . {np} }}",
                    family(o).2,
                    o.protocol
                );
            }
        }
    }
    let _ = writeln!(s, "add chain inet {table} svc-{id}");
    let _ = writeln!(s, "flush chain inet {table} svc-{id}");
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
    if svc.masquerade {
        let _ = writeln!(s, "add rule inet {table} svc-{id} meta mark set meta mark or {mark:#x}");
    }
    if n == 0 {
        let _ = writeln!(s, "add rule inet {table} svc-{id} drop");
    } else {
        if svc.affinity.is_some() {
            for i in 0..n {
                let _ = writeln!(
                    s,
                    "add rule inet {table} svc-{id} {ipk} saddr @aff-{id}-{i} goto ep-{id}-{i}"
                );
            }
        }
        let arms: Vec<String> = (0..n).map(|i| format!("{i} : goto ep-{id}-{i}")).collect();
        let _ = writeln!(
            s,
            "add rule inet {table} svc-{id} numgen random mod {n} vmap {{ {} }}",
            arms.join(", ")
        );
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
    let _ = writeln!(
        s,
        "add element inet {table} service{v} {{ {} . {} . {} comment \"{}\" : goto svc-{id} }}",
        svc.vip, svc.protocol, svc.port, svc.name
    );
    if let Some(np) = svc.node_port {
        let _ = writeln!(
            s,
            "add element inet {table} nodeport{v} {{ {} . {np} comment \"{}\" : goto svc-{id} }}",
            svc.protocol, svc.name
        );
    }
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
            "create table inet t { comment \"managed by netkit (state ab): container port mappings, masquerade, services\"; }"
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

    #[test]
    fn apply_service_for_a_new_service() {
        let svc = web(&["10.88.0.2", "10.88.0.3"]).node_port(30080);
        let id = service_id(&svc.name);
        let s = apply_service("t", 0x2000, None, &svc);
        assert!(lines(&s, "delete").is_empty(), "{s}");
        assert_eq!(
            lines(&s, "add chain"),
            [
                format!("add chain inet t svc-{id}"),
                format!("add chain inet t ep-{id}-0"),
                format!("add chain inet t ep-{id}-1")
            ]
        );
        assert_eq!(lines(&s, "flush chain").len(), 3, "{s}");
        assert!(s.contains(&format!(
            "add rule inet t svc-{id} numgen random mod 2 vmap {{ 0 : goto ep-{id}-0, 1 : goto ep-{id}-1 }}"
        )));
        assert!(s.contains(&format!(
            "add rule inet t ep-{id}-1 meta l4proto tcp dnat ip to 10.88.0.3:8080"
        )));
        assert!(s.contains(&format!(
            "add rule inet t ep-{id}-0 ip saddr 10.88.0.2 meta mark set meta mark or 0x2000"
        )));
        assert!(s.contains(&format!(
            "add element inet t service4 {{ 10.96.0.1 . tcp . 80 comment \"default/web\" : goto svc-{id} }}"
        )));
        assert!(s.contains(&format!(
            "add element inet t nodeport4 {{ tcp . 30080 comment \"default/web\" : goto svc-{id} }}"
        )));
        // No masquerade mark on the service chain, no affinity.
        assert!(!s.contains(&format!("add rule inet t svc-{id} meta mark")), "{s}");
        assert!(!s.contains("aff-"), "{s}");
        // Without endpoints: a drop rule; with masquerade: the mark first.
        let empty = apply_service("t", 0x2000, None, &web(&[]).masquerade(true));
        assert_eq!(
            lines(&empty, "add rule"),
            [
                format!("add rule inet t svc-{id} meta mark set meta mark or 0x2000"),
                format!("add rule inet t svc-{id} drop")
            ]
        );
        // IPv6.
        let v6 = Service::new("v6", Protocol::Udp, ip("fd96::1"), 53).endpoint(Endpoint::new(ip("fd00::2"), 53));
        let s = apply_service("t", 1, None, &v6);
        assert!(s.contains("add element inet t service6 { fd96::1 . udp . 53"), "{s}");
        assert!(s.contains("dnat ip6 to [fd00::2]:53"), "{s}");
    }

    #[test]
    fn apply_service_when_endpoints_change() {
        let old = web(&["10.88.0.2", "10.88.0.3", "10.88.0.4"]);
        let new = web(&["10.88.0.2", "10.88.0.5"]);
        let id = service_id(&new.name);
        let s = apply_service("t", 1, Some(&old), &new);
        // The map element stays (same address and port); the third endpoint's chain goes.
        assert!(lines(&s, "delete element").is_empty(), "{s}");
        assert_eq!(lines(&s, "delete chain"), [format!("delete chain inet t ep-{id}-2")]);
        assert!(s.contains(&format!("flush chain inet t ep-{id}-2\ndelete chain inet t ep-{id}-2")));
        assert!(s.contains("dnat ip to 10.88.0.5:8080"), "{s}");
        assert!(!s.contains("10.88.0.3"), "{s}");
        assert!(s.contains("numgen random mod 2 "), "{s}");
        // More endpoints than before: nothing is deleted.
        let s = apply_service("t", 1, Some(&new), &old);
        assert!(lines(&s, "delete").is_empty(), "{s}");
        // Another address or port: the old map element goes.
        let mut moved = new.clone();
        moved.vip = ip("10.96.0.9");
        let s = apply_service("t", 1, Some(&new), &moved);
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
        let on = apply_service("t", 1, Some(&plain), &sticky);
        assert_eq!(
            lines(&on, "add set"),
            [
                format!("add set inet t aff-{id}-0 {{ type ipv4_addr; flags dynamic,timeout; timeout 600s; }}"),
                format!("add set inet t aff-{id}-1 {{ type ipv4_addr; flags dynamic,timeout; timeout 600s; }}")
            ]
        );
        assert!(on.contains(&format!("add rule inet t svc-{id} ip saddr @aff-{id}-1 goto ep-{id}-1")));
        assert!(on.contains(&format!("add rule inet t ep-{id}-0 update @aff-{id}-0 {{ ip saddr }}")));
        assert!(lines(&on, "delete").is_empty(), "{on}");
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
            web(&["10.88.0.2", "10.88.0.3"]).node_port(30080),
            web(&["10.88.0.2", "10.88.0.3"])
                .node_port(30080)
                .affinity(Duration::from_secs(60)),
            web(&["10.88.0.3"]).node_port(30081).affinity(Duration::from_secs(60)),
            web(&["10.88.0.3"]).masquerade(true),
            web(&[]),
        ];
        let mut before: Option<&Service> = None;
        for svc in &steps {
            run(&apply_service("t", 0x2000, before, svc));
            before = Some(svc);
        }
        run(&remove_service("t", before.unwrap()));
        let left = run("list table inet t\n");
        assert!(
            !left.contains("svc-") && !left.contains("ep-") && !left.contains("aff-"),
            "{left}"
        );
        // The table is there: create refuses it rather than add its rules twice.
        let err = super::super::libnft::run(&ns, &create("t", 0x2000, "ab")).unwrap_err();
        assert_eq!(super::super::libnft::errno_of(&err), Some(libc::EEXIST), "{err}");
    }
}
