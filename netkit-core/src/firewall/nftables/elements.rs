//! The firewall's objects as nftables set and map elements, sent as nf_tables netlink batches
//! ([`to_netlink`]). Services are not here: their map elements come with their chains (nft
//! text, see [`super::ruleset`]).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::netlink;
use crate::firewall::model::{Isolation, Masquerade, Network, PortMapping, Rules};

/// One field of a concatenated key or value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    /// An address (ipv4_addr or ipv6_addr).
    Ip(IpAddr),
    /// A transport protocol number (inet_proto).
    Proto(u8),
    /// A port (inet_service).
    Port(u16),
    /// An interface name (ifname).
    Ifname(String),
}

/// An element's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    /// A concatenated value (a DNAT target).
    Value(Vec<Field>),
}

/// One element of one set: `key` (to `key_end` for intervals), with optional data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) set: &'static str,
    pub(crate) key: Vec<Field>,
    pub(crate) key_end: Option<Vec<Field>>,
    pub(crate) data: Option<Data>,
    pub(crate) comment: String,
}

fn fam(v4: bool, base: &'static str, base6: &'static str) -> &'static str {
    if v4 {
        base
    } else {
        base6
    }
}

fn first_last(net: IpNetwork) -> (Field, Field) {
    let last = match net {
        IpNetwork::V4(n) => IpAddr::V4(n.broadcast()),
        IpNetwork::V6(n) => {
            let host = 128 - u32::from(n.prefix());
            let mask = if host == 128 { u128::MAX } else { (1u128 << host) - 1 };
            IpAddr::V6((u128::from(n.network()) | mask).into())
        }
    };
    (Field::Ip(net.network()), Field::Ip(last))
}

/// The elements a port mapping is made of (one per port of a range).
pub(crate) fn port_mapping(m: &PortMapping, owner: &str) -> Vec<Element> {
    let v4 = m.is_ipv4();
    m.ports()
        .map(|(host, ctr)| {
            let mut key = Vec::new();
            if let Some(h) = m.host_ip {
                key.push(Field::Ip(h));
            }
            key.extend([Field::Proto(m.protocol.number()), Field::Port(host)]);
            let set = match m.host_ip {
                Some(_) => fam(v4, "hostipport4", "hostipport6"),
                None => fam(v4, "hostport4", "hostport6"),
            };
            Element {
                set,
                key,
                key_end: None,
                data: Some(Data::Value(vec![Field::Ip(m.container_ip), Field::Port(ctr)])),
                comment: owner.to_string(),
            }
        })
        .collect()
}

/// A masquerade: "keep within the network" and "masquerade the rest". Several owners may hold
/// the same masquerade (every container of a network), so the elements name the masquerade,
/// not the owner that came first.
pub(crate) fn masquerade(m: &Masquerade, _owner: &str) -> Vec<Element> {
    let v4 = m.source.is_ipv4();
    let (s0, s1) = first_last(m.source);
    let (n0, n1) = first_last(m.network);
    let all: IpNetwork = if v4 { "0.0.0.0/0".parse() } else { "::/0".parse() }.expect("literal");
    let (a0, a1) = first_last(all);
    vec![
        Element {
            set: fam(v4, "masqskip4", "masqskip6"),
            key: vec![s0.clone(), n0],
            key_end: Some(vec![s1.clone(), n1]),
            data: None,
            comment: format!("masquerade {} keep {}", m.source, m.network),
        },
        Element {
            set: fam(v4, "masq4", "masq6"),
            key: vec![s0, a0],
            key_end: Some(vec![s1, a1]),
            data: None,
            comment: format!("masquerade {}", m.source),
        },
    ]
}

/// A container network: `interface . subnet` for hairpin masquerading. Networks are shared by
/// every container on them, so the element names the network, not the owner that came first.
pub(crate) fn network(n: &Network, _owner: &str) -> Vec<Element> {
    let (a, b) = first_last(n.subnet);
    vec![Element {
        set: fam(n.subnet.is_ipv4(), "localnet4", "localnet6"),
        key: vec![Field::Ifname(n.interface.clone()), a],
        key_end: Some(vec![Field::Ifname(n.interface.clone()), b]),
        data: None,
        comment: format!("network {} {}", n.interface, n.subnet),
    }]
}

/// An isolated pair, both directions (shared like networks: labelled by the pair).
pub(crate) fn isolation(i: &Isolation, _owner: &str) -> Vec<Element> {
    [(&i.a, &i.b), (&i.b, &i.a)]
        .into_iter()
        .map(|(x, y)| Element {
            set: "isolation",
            key: vec![Field::Ifname(x.clone()), Field::Ifname(y.clone())],
            key_end: None,
            data: None,
            comment: format!("isolation {} {}", i.a, i.b),
        })
        .collect()
}

/// Every element of `rules` except services' (which come with their chains).
pub(crate) fn of_rules(rules: &Rules, owner: &str) -> Vec<Element> {
    let mut out = Vec::new();
    for m in &rules.port_mappings {
        out.extend(port_mapping(m, owner));
    }
    for m in &rules.masquerades {
        out.extend(masquerade(m, owner));
    }
    for n in &rules.networks {
        out.extend(network(n, owner));
    }
    for i in &rules.isolations {
        out.extend(isolation(i, owner));
    }
    out
}

fn to_data(fields: &[Field]) -> Result<netlink::Data, netlink::NftError> {
    let mut d = netlink::Data::new();
    for f in fields {
        d = match f {
            Field::Ip(ip) => d.ip_addr(*ip),
            Field::Proto(p) => d.inet_proto(*p),
            Field::Port(p) => d.inet_service(*p),
            Field::Ifname(n) => d.ifname(n)?,
        };
    }
    Ok(d)
}

/// The element for a netlink batch.
pub(crate) fn to_netlink(e: &Element) -> Result<netlink::Element, netlink::NftError> {
    let mut el = match &e.key_end {
        None => netlink::Element::new(to_data(&e.key)?),
        Some(end) => netlink::Element::range(to_data(&e.key)?, to_data(end)?),
    };
    if let Some(Data::Value(v)) = &e.data {
        el = el.value(to_data(v)?);
    }
    Ok(el.comment(e.comment.clone()))
}
