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
