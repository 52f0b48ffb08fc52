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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::model::Protocol;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn ips(a: &str, b: &str) -> Vec<Field> {
        vec![Field::Ip(ip(a)), Field::Ip(ip(b))]
    }

    #[test]
    fn port_mappings_go_to_the_map_of_their_family_and_host_address() {
        let m = PortMapping::new(Protocol::Tcp, 8080, ip("10.88.0.2"), 80);
        assert_eq!(
            port_mapping(&m, "ctr1:eth0"),
            [Element {
                set: "hostport4",
                key: vec![Field::Proto(6), Field::Port(8080)],
                key_end: None,
                data: Some(Data::Value(vec![Field::Ip(ip("10.88.0.2")), Field::Port(80)])),
                comment: "ctr1:eth0".into(),
            }]
        );
        let on_host = PortMapping::new(Protocol::Udp, 53, ip("10.88.0.2"), 5353).host_ip(ip("192.0.2.1"));
        let e = &port_mapping(&on_host, "o")[0];
        assert_eq!(e.set, "hostipport4");
        assert_eq!(e.key, [Field::Ip(ip("192.0.2.1")), Field::Proto(17), Field::Port(53)]);
        let v6 = PortMapping::new(Protocol::Sctp, 9, ip("fd00::2"), 9);
        assert_eq!(port_mapping(&v6, "o")[0].set, "hostport6");
        assert_eq!(port_mapping(&v6, "o")[0].key[0], Field::Proto(132));
        let v6_host = v6.clone().host_ip(ip("2001:db8::1"));
        assert_eq!(port_mapping(&v6_host, "o")[0].set, "hostipport6");
    }

    #[test]
    fn a_port_range_is_one_element_per_port() {
        let m = PortMapping::new(Protocol::Tcp, 8000, ip("10.88.0.2"), 9000).range_end(8002);
        let got = port_mapping(&m, "o");
        let pairs: Vec<_> = got
            .iter()
            .map(|e| match (&e.key[1], &e.data) {
                (Field::Port(h), Some(Data::Value(v))) => (*h, v[1].clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            pairs,
            [
                (8000, Field::Port(9000)),
                (8001, Field::Port(9001)),
                (8002, Field::Port(9002))
            ]
        );
        assert!(got.iter().all(|e| e.comment == "o" && e.key_end.is_none()));
    }

    #[test]
    fn a_masquerade_is_a_keep_range_and_a_masquerade_range() {
        let m = Masquerade::subnet(net("10.88.0.0/16"));
        let got = masquerade(&m, "ctr1");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].set, "masqskip4");
        assert_eq!(got[0].key, ips("10.88.0.0", "10.88.0.0"));
        assert_eq!(got[0].key_end, Some(ips("10.88.255.255", "10.88.255.255")));
        assert_eq!(got[0].comment, "masquerade 10.88.0.0/16 keep 10.88.0.0/16");
        assert_eq!(got[1].set, "masq4");
        assert_eq!(got[1].key, ips("10.88.0.0", "0.0.0.0"));
        assert_eq!(got[1].key_end, Some(ips("10.88.255.255", "255.255.255.255")));
        // The comment names the masquerade, not the owner (several owners share it).
        assert_eq!(got[1].comment, "masquerade 10.88.0.0/16");
        assert!(got.iter().all(|e| e.data.is_none()));
        assert_eq!(masquerade(&m, "another owner"), got);
    }

    #[test]
    fn subnet_ranges_at_the_edges() {
        // /32 and /128: a range of one address.
        let one = masquerade(&Masquerade::address(ip("10.88.0.5"), net("10.88.0.0/16")), "o");
        assert_eq!(one[0].key, ips("10.88.0.5", "10.88.0.0"));
        assert_eq!(one[0].key_end, Some(ips("10.88.0.5", "10.88.255.255")));
        let one6 = masquerade(&Masquerade::address(ip("fd00::5"), net("fd00::/64")), "o");
        assert_eq!(one6[0].set, "masqskip6");
        assert_eq!(one6[0].key, ips("fd00::5", "fd00::"));
        assert_eq!(one6[0].key_end, Some(ips("fd00::5", "fd00::ffff:ffff:ffff:ffff")));
        assert_eq!(one6[1].set, "masq6");
        // /0: everything, in both families.
        let all4 = masquerade(&Masquerade::subnet(net("0.0.0.0/0")), "o");
        assert_eq!(all4[0].key, ips("0.0.0.0", "0.0.0.0"));
        assert_eq!(all4[0].key_end, Some(ips("255.255.255.255", "255.255.255.255")));
        let all6 = masquerade(&Masquerade::subnet(net("::/0")), "o");
        let max = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        assert_eq!(all6[1].key, ips("::", "::"));
        assert_eq!(all6[1].key_end, Some(ips(max, max)));
        // A network of one /128 and of one /32.
        let n = network(&Network::new("br0", net("fd00::1/128")), "o");
        assert_eq!(n[0].key[1], Field::Ip(ip("fd00::1")));
        assert_eq!(n[0].key_end.as_ref().unwrap()[1], Field::Ip(ip("fd00::1")));
        let n = network(&Network::new("br0", net("10.0.0.1/32")), "o");
        assert_eq!(n[0].key_end.as_ref().unwrap()[1], Field::Ip(ip("10.0.0.1")));
    }

    #[test]
    fn networks_and_isolations() {
        let got = network(&Network::new("cni0", net("10.88.0.0/16")), "o");
        assert_eq!(
            got,
            [Element {
                set: "localnet4",
                key: vec![Field::Ifname("cni0".into()), Field::Ip(ip("10.88.0.0"))],
                key_end: Some(vec![Field::Ifname("cni0".into()), Field::Ip(ip("10.88.255.255"))]),
                data: None,
                comment: "network cni0 10.88.0.0/16".into(),
            }]
        );
        assert_eq!(
            network(&Network::new("cni0", net("fd88::/64")), "o")[0].set,
            "localnet6"
        );
        let got = isolation(&Isolation::new("br0", "br1"), "o");
        let keys: Vec<_> = got.iter().map(|e| (e.set, e.key.clone())).collect();
        assert_eq!(
            keys,
            [
                (
                    "isolation",
                    vec![Field::Ifname("br0".into()), Field::Ifname("br1".into())]
                ),
                (
                    "isolation",
                    vec![Field::Ifname("br1".into()), Field::Ifname("br0".into())]
                ),
            ]
        );
        assert!(got
            .iter()
            .all(|e| e.comment == "isolation br0 br1" && e.key_end.is_none()));
    }

    #[test]
    fn of_rules_lists_every_object_but_services() {
        let rules = Rules {
            port_mappings: vec![PortMapping::new(Protocol::Tcp, 8080, ip("10.88.0.2"), 80)],
            masquerades: vec![Masquerade::subnet(net("10.88.0.0/16"))],
            networks: vec![Network::new("cni0", net("10.88.0.0/16"))],
            isolations: vec![Isolation::new("cni0", "cni1")],
            services: vec![crate::firewall::Service::new("s", Protocol::Tcp, ip("10.96.0.1"), 80)],
        };
        let sets: Vec<_> = of_rules(&rules, "o").iter().map(|e| e.set).collect();
        assert_eq!(
            sets,
            ["hostport4", "masqskip4", "masq4", "localnet4", "isolation", "isolation"]
        );
        assert!(of_rules(&Rules::default(), "o").is_empty());
    }

    #[test]
    fn to_netlink_keeps_keys_ranges_values_and_comments() {
        let m = PortMapping::new(Protocol::Tcp, 8080, ip("10.88.0.2"), 80);
        let e = to_netlink(&port_mapping(&m, "ctr1")[0]).unwrap();
        assert_eq!(e.to_string(), "tcp . 8080 comment \"ctr1\" : 10.88.0.2 . 80");
        let n = to_netlink(&network(&Network::new("cni0", net("10.88.0.0/16")), "o")[0]).unwrap();
        assert_eq!(
            n.to_string(),
            "\"cni0\" . 10.88.0.0-\"cni0\" . 10.88.255.255 comment \"network cni0 10.88.0.0/16\""
        );
        // An interface name the kernel cannot hold is refused before anything is sent.
        let long = isolation(&Isolation::new("a-very-long-name0", "b"), "o");
        assert!(to_netlink(&long[0]).is_err());
    }
}
