//! What the commands print: `ip`-like text lines, or JSON with the keys of `ip -j`.
//!
//! The JSON of a `show` command is one array on one line, as `ip -j` prints it: links
//! (`ifindex`, `ifname`, `flags`, `mtu`, `qdisc`, `master`, `operstate`, `group`, `txqlen`,
//! `link_type`, `address`, `broadcast`, `link` or `link_index` + `link_netnsid` for a peer,
//! `linkinfo.info_kind` for a link of a kind), the same with `addr_info` (`family`, `local`,
//! `prefixlen`, `broadcast`, `scope`, `label`, flags as `true` keys) for addresses, and routes
//! (`type`, `dst`, `gateway`, `dev`, `table`, `protocol`, `scope`, `prefsrc`, `metric`, `flags`,
//! `metrics`, `pref`, `nexthops`). Keys come in alphabetical order; values are spelled as `ip -j`
//! spells them (`"dst": "default"`, `"table": "100"`, `"protocol": "static"`).

use std::collections::HashMap;
use std::io::Write;

use ipnetwork::IpNetwork;
use netkit_core::addr::{
    Address, IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_NODAD, IFA_F_NOPREFIXROUTE, IFA_F_OPTIMISTIC, IFA_F_SECONDARY,
    IFA_F_TENTATIVE,
};
use netkit_core::route::{protocol, RouteKind, RouteScope, TABLE_DEFAULT, TABLE_LOCAL, TABLE_MAIN};
use netkit_core::{IpFamily, Link, LinkKind, RouteInfo};
use serde_json::{json, Map, Value};

use crate::cli::Global;

/// Where and how a command prints.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// `-j`: JSON instead of text.
    pub json: bool,
    /// `-q`: no notes.
    pub quiet: bool,
}

impl Output {
    /// The output the global options ask for.
    pub fn new(global: &Global) -> Self {
        Self {
            json: global.json,
            quiet: global.quiet,
        }
    }

    /// Print `value` as one line of JSON on stdout.
    pub fn json(&self, value: &Value) {
        self.text(&value.to_string());
    }

    /// Print `text` and a newline on stdout (a closed pipe is not an error worth a message).
    pub fn text(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// A listing: with `-j` one JSON array of `items`, else `lines`, one per line (a `show`
    /// verb passes the one it needs and an empty one for the other). Both are consumed as they
    /// are written, through one buffered writer: a listing of a thousand links never holds
    /// its whole text, nor every item at once when `items` is a lazy iterator.
    pub fn list<J, T>(&self, items: J, lines: T)
    where
        J: IntoIterator,
        J::Item: serde::Serialize,
        T: IntoIterator<Item = String>,
    {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        // A closed pipe is not an error worth a message: the first failed write ends it.
        let _ = if self.json {
            write_json_array(&mut out, items)
        } else {
            lines.into_iter().try_for_each(|l| writeln!(out, "{l}"))
        }
        .and_then(|()| out.flush());
    }

    /// A note on stderr (`netkit: note: …`), unless `-q`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("netkit: note: {text}");
        }
    }
}

/// Write `items` as one JSON array and a newline, each item serialized as it comes.
fn write_json_array<I>(out: &mut impl Write, items: I) -> std::io::Result<()>
where
    I: IntoIterator,
    I::Item: serde::Serialize,
{
    out.write_all(b"[")?;
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, &item)?;
    }
    out.write_all(b"]\n")
}

/// Interface names (and whether each is up) by index, to print `dev`, `master` and peers by
/// name as `ip` does.
#[derive(Debug, Default, Clone)]
pub struct IfNames(HashMap<u32, (String, bool)>);

impl IfNames {
    /// The names of these links.
    pub fn of(links: &[Link]) -> Self {
        Self(links.iter().map(|l| (l.index, (l.name.clone(), l.up))).collect())
    }

    /// The name of link `index`, or `ifINDEX` as `ip` prints an unknown one.
    pub fn name(&self, index: u32) -> String {
        self.0
            .get(&index)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| format!("if{index}"))
    }

    /// Learn (or update) the name and state of `l` (a link a monitor just saw).
    pub fn learn(&mut self, l: &Link) {
        self.0.insert(l.index, (l.name.clone(), l.up));
    }

    /// True when link `index` is known.
    pub fn knows(&self, index: u32) -> bool {
        self.0.contains_key(&index)
    }

    /// True when link `index` is known and administratively up.
    pub fn is_up(&self, index: u32) -> bool {
        self.0.get(&index).is_some_and(|(_, up)| *up)
    }
}

/// The flags `ip link` prints for `l`: netkit-core's [`Link::flag_names`], then `M-DOWN` when
/// the link's peer or parent in the same namespace is down (as iproute2 adds it).
pub fn link_flags(l: &Link, names: &IfNames) -> Vec<String> {
    let mut flags = l.flag_names();
    if let (Some(p), None) = (l.parent.filter(|p| *p != 0), l.link_netnsid) {
        if !names.is_up(p) {
            flags.push("M-DOWN".into());
        }
    }
    flags
}

/// `ip -j link show`'s object for one link, with its keys in `ip`'s order: written as it is by
/// `link show` (no map per link), and the base of [`link_json`].
#[derive(Debug, serde::Serialize)]
pub struct LinkJson<'a> {
    ifindex: u32,
    ifname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link_netnsid: Option<i32>,
    flags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    qdisc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    master: Option<String>,
    operstate: String,
    group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    txqlen: Option<u32>,
    link_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    broadcast: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifalias: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    linkinfo: Option<LinkInfoJson<'a>>,
}

/// `linkinfo` of [`LinkJson`].
#[derive(Debug, serde::Serialize)]
struct LinkInfoJson<'a> {
    info_kind: &'a str,
}

impl<'a> LinkJson<'a> {
    /// The object for `l`, peers and masters named through `names`.
    pub fn of(l: &'a Link, names: &IfNames) -> Self {
        let parent = l.parent.filter(|p| *p != 0);
        let (link, link_index, link_netnsid) = match (parent, l.link_netnsid) {
            (Some(p), None) => (Some(names.name(p)), None, None),
            (Some(p), Some(id)) => (None, Some(p), Some(id)),
            (None, _) => (None, None, None),
        };
        Self {
            ifindex: l.index,
            ifname: &l.name,
            link,
            link_index,
            link_netnsid,
            flags: link_flags(l, names),
            mtu: l.mtu,
            qdisc: l.qdisc(),
            master: l.master.map(|m| names.name(m)),
            operstate: l.operstate(),
            group: group_name(l.group),
            txqlen: l.txqlen(),
            link_type: l.link_type(),
            address: l.mac.map(|m| m.to_string()),
            broadcast: l.broadcast().map(|b| b.to_string()),
            ifalias: l.alias.as_deref(),
            linkinfo: (l.kind != LinkKind::Device).then(|| LinkInfoJson {
                info_kind: l.kind.as_str(),
            }),
        }
    }
}

/// `ip -j link show`'s object for one link, as a map (for objects that add keys to it:
/// `addr show`, `monitor`).
pub fn link_json(l: &Link, names: &IfNames) -> Map<String, Value> {
    match serde_json::to_value(LinkJson::of(l, names)) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(), // a struct of plain fields always serializes to an object
    }
}

fn group_name(group: u32) -> String {
    if group == 0 {
        "default".into()
    } else {
        group.to_string()
    }
}

/// `ip link show`'s two lines for one link.
pub fn link_text(l: &Link, names: &IfNames) -> String {
    let peer = match (l.parent.filter(|p| *p != 0), l.link_netnsid) {
        (Some(p), Some(_)) => format!("@if{p}"),
        (Some(p), None) => format!("@{}", names.name(p)),
        (None, _) => String::new(),
    };
    let mut first = format!("{}: {}{peer}: <{}>", l.index, l.name, link_flags(l, names).join(","));
    if let Some(mtu) = l.mtu {
        first += &format!(" mtu {mtu}");
    }
    if let Some(q) = l.qdisc() {
        first += &format!(" qdisc {q}");
    }
    if let Some(master) = l.master {
        first += &format!(" master {}", names.name(master));
    }
    first += &format!(" state {} group {}", l.operstate(), group_name(l.group));
    if let Some(q) = l.txqlen() {
        first += &format!(" qlen {q}");
    }
    let mut second = format!("    link/{}", l.link_type());
    if let Some(mac) = l.mac {
        second += &format!(" {mac}");
    }
    if let Some(brd) = l.broadcast() {
        second += &format!(" brd {brd}");
    }
    if let Some(id) = l.link_netnsid {
        second += &format!(" link-netnsid {id}");
    }
    if let Some(alias) = &l.alias {
        second += &format!("\n    alias {alias}");
    }
    format!("{first}\n{second}")
}

/// The IFA_F_* flags `ip -j addr` prints as `"name": true` keys (and after the scope in text).
const ADDR_FLAGS: [(u32, &str); 7] = [
    (IFA_F_SECONDARY, "secondary"),
    (IFA_F_TENTATIVE, "tentative"),
    (IFA_F_DEPRECATED, "deprecated"),
    (IFA_F_NODAD, "nodad"),
    (IFA_F_OPTIMISTIC, "optimistic"),
    (IFA_F_DADFAILED, "dadfailed"),
    (IFA_F_NOPREFIXROUTE, "noprefixroute"),
];

fn family_name(ip: &IpNetwork) -> &'static str {
    if ip.is_ipv4() {
        "inet"
    } else {
        "inet6"
    }
}

/// One entry of `addr_info` in `ip -j addr show`.
pub fn addr_json(a: &Address) -> Value {
    let mut m = Map::new();
    m.insert("family".into(), json!(family_name(&a.prefix)));
    m.insert("local".into(), json!(a.ip().to_string()));
    if let Some(peer) = a.peer {
        m.insert("address".into(), json!(peer.to_string()));
    }
    m.insert("prefixlen".into(), json!(a.prefix.prefix()));
    if let Some(brd) = a.broadcast {
        m.insert("broadcast".into(), json!(brd.to_string()));
    }
    m.insert("scope".into(), json!(a.scope.to_string()));
    if !a.permanent {
        m.insert("dynamic".into(), json!(true));
    }
    for (bit, name) in ADDR_FLAGS {
        if a.flags & bit != 0 {
            m.insert(name.into(), json!(true));
        }
    }
    if let Some(label) = &a.label {
        m.insert("label".into(), json!(label));
    }
    Value::Object(m)
}

/// `ip addr show`'s line for one address.
pub fn addr_text(a: &Address) -> String {
    let mut s = format!("    {} {}", family_name(&a.prefix), a.ip());
    if let Some(peer) = a.peer {
        s += &format!(" peer {peer}");
    }
    s += &format!("/{}", a.prefix.prefix());
    if let Some(brd) = a.broadcast {
        s += &format!(" brd {brd}");
    }
    s += &format!(" scope {}", a.scope);
    if !a.permanent {
        s += " dynamic";
    }
    for (bit, name) in ADDR_FLAGS {
        if a.flags & bit != 0 {
            s += &format!(" {name}");
        }
    }
    if let Some(label) = &a.label {
        s += &format!(" {label}");
    }
    s
}

/// A route table as `ip` names it: `main`, `local`, `default` or the number.
pub fn table_name(table: u32) -> String {
    match table {
        TABLE_MAIN => "main".into(),
        TABLE_LOCAL => "local".into(),
        TABLE_DEFAULT => "default".into(),
        n => n.to_string(),
    }
}

/// A route protocol as `ip` names it (`/etc/iproute2/rt_protos`), or the number.
pub fn protocol_name(p: u8) -> String {
    match p {
        protocol::REDIRECT => "redirect".into(),
        protocol::KERNEL => "kernel".into(),
        protocol::BOOT => "boot".into(),
        protocol::STATIC => "static".into(),
        protocol::RA => "ra".into(),
        protocol::DHCP => "dhcp".into(),
        n => n.to_string(),
    }
}

/// A destination as `ip route` prints it: `default`, a host address without its length, or a
/// prefix.
pub fn dst_text(r: &RouteInfo) -> String {
    let d = r.destination();
    let host = if r.family == IpFamily::V4 { 32 } else { 128 };
    if d.prefix() == 0 {
        "default".into()
    } else if d.prefix() == host {
        d.ip().to_string()
    } else {
        d.to_string()
    }
}

/// A route type as `ip` names it (`local`, `broadcast`, `blackhole`, …).
pub fn kind_name(kind: RouteKind) -> String {
    match kind {
        RouteKind::Other(n) => match n {
            1 => "unicast".into(),
            2 => "local".into(),
            3 => "broadcast".into(),
            4 => "anycast".into(),
            5 => "multicast".into(),
            6 => "blackhole".into(),
            7 => "unreachable".into(),
            8 => "prohibit".into(),
            9 => "throw".into(),
            10 => "nat".into(),
            11 => "xresolve".into(),
            n => n.to_string(),
        },
        k => k.to_string(),
    }
}

/// A route's flags as `ip route` prints them, in its order.
fn route_flags(r: &RouteInfo) -> Vec<&'static str> {
    [(r.dead, "dead"), (r.onlink, "onlink"), (r.linkdown, "linkdown")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
}

/// Which keys a route listing leaves out, as `ip route show` does for what it filtered on
/// (`table N`: no table; `dev D`: no device).
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteFilter {
    /// Listing one table: its routes are printed without `table`.
    pub table: bool,
    /// Listing one device: its routes are printed without `dev`.
    pub dev: bool,
}

/// `ip -j route show`'s object for one route.
pub fn route_json(r: &RouteInfo, names: &IfNames, filter: RouteFilter) -> Value {
    let mut m = Map::new();
    if r.kind != RouteKind::Unicast {
        m.insert("type".into(), json!(kind_name(r.kind)));
    }
    m.insert("dst".into(), json!(dst_text(r)));
    if let Some(gw) = r.gateway {
        m.insert("gateway".into(), json!(gw.to_string()));
    }
    if let Some(oif) = r.oif.filter(|_| !filter.dev) {
        m.insert("dev".into(), json!(names.name(oif)));
    }
    if r.table != TABLE_MAIN && !filter.table {
        m.insert("table".into(), json!(table_name(r.table)));
    }
    if r.protocol != protocol::BOOT {
        m.insert("protocol".into(), json!(protocol_name(r.protocol)));
    }
    if r.scope != RouteScope::Universe {
        m.insert("scope".into(), json!(r.scope.to_string()));
    }
    if let Some(src) = r.prefsrc {
        m.insert("prefsrc".into(), json!(src.to_string()));
    }
    if let Some(metric) = r.metric {
        m.insert("metric".into(), json!(metric));
    }
    m.insert("flags".into(), json!(route_flags(r)));
    if let Some(mtu) = r.mtu {
        m.insert("metrics".into(), json!([{ "mtu": mtu }]));
    }
    if let Some(pref) = r.pref_name() {
        m.insert("pref".into(), json!(pref));
    }
    if !r.nexthops.is_empty() {
        let hops: Vec<Value> = r
            .nexthops
            .iter()
            .map(|nh| {
                let mut h = Map::new();
                if let Some(gw) = nh.gateway {
                    h.insert("gateway".into(), json!(gw.to_string()));
                }
                h.insert("dev".into(), json!(names.name(nh.oif)));
                h.insert("weight".into(), json!(nh.weight));
                h.insert("flags".into(), json!(if nh.onlink { vec!["onlink"] } else { vec![] }));
                Value::Object(h)
            })
            .collect();
        m.insert("nexthops".into(), json!(hops));
    }
    Value::Object(m)
}

/// `ip route show`'s line for one route.
pub fn route_text(r: &RouteInfo, names: &IfNames, filter: RouteFilter) -> String {
    let mut s = String::new();
    if r.kind != RouteKind::Unicast {
        s += &format!("{} ", kind_name(r.kind));
    }
    s += &dst_text(r);
    if let Some(gw) = r.gateway {
        s += &format!(" via {gw}");
    }
    if let Some(oif) = r.oif.filter(|_| !filter.dev) {
        s += &format!(" dev {}", names.name(oif));
    }
    if r.table != TABLE_MAIN && !filter.table {
        s += &format!(" table {}", table_name(r.table));
    }
    if r.protocol != protocol::BOOT {
        s += &format!(" proto {}", protocol_name(r.protocol));
    }
    if r.scope != RouteScope::Universe {
        s += &format!(" scope {}", r.scope);
    }
    if let Some(src) = r.prefsrc {
        s += &format!(" src {src}");
    }
    if let Some(metric) = r.metric {
        s += &format!(" metric {metric}");
    }
    if let Some(mtu) = r.mtu {
        s += &format!(" mtu {mtu}");
    }
    for f in route_flags(r) {
        s += &format!(" {f}");
    }
    if let Some(pref) = r.pref_name() {
        s += &format!(" pref {pref}");
    }
    for nh in &r.nexthops {
        s += "\n\tnexthop";
        if let Some(gw) = nh.gateway {
            s += &format!(" via {gw}");
        }
        s += &format!(" dev {} weight {}", names.name(nh.oif), nh.weight);
        if nh.onlink {
            s += " onlink";
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(table_name(254), "main");
        assert_eq!(table_name(100), "100");
        assert_eq!(protocol_name(4), "static");
        assert_eq!(protocol_name(200), "200");
        assert_eq!(group_name(0), "default");
        assert_eq!(kind_name(RouteKind::Other(3)), "broadcast");
        assert_eq!(kind_name(RouteKind::Local), "local");
        let names = IfNames::default();
        assert_eq!(names.name(7), "if7");
    }
}
