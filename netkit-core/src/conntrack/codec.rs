//! ctnetlink messages: the dump request, the delete request, and the reading of one entry of a
//! dump. Laid out and walked with [`crate::netlink::wire`]; numbers from the kernel's
//! include/uapi/linux/netfilter/nfnetlink_conntrack.h (ABI: they never change).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

use super::{Entry, Protocol, Status, Tuple};
use crate::netlink::wire::{self, NLA_F_NESTED};
use crate::route::IpFamily;

/// `NFNL_SUBSYS_CTNETLINK`: the conntrack table's nfnetlink subsystem.
pub(super) const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// `IPCTNL_MSG_CT_NEW`: an entry (events use it; some kernels answer dumps with it).
const IPCTNL_MSG_CT_NEW: u16 = 0;
/// `IPCTNL_MSG_CT_GET`: with `NLM_F_DUMP`, the whole table; dump entries carry this type.
const IPCTNL_MSG_CT_GET: u16 = 1;
/// `IPCTNL_MSG_CT_DELETE`: delete the entry of a tuple (without one: flush the table).
const IPCTNL_MSG_CT_DELETE: u16 = 2;

// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;

// enum ctattr_tuple
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;

// enum ctattr_ip
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;

// enum ctattr_l4proto
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// `AF_INET` / `AF_INET6` as `nfgenmsg.nfgen_family` holds them (`AF_UNSPEC`, 0: every family).
fn af(family: Option<IpFamily>) -> u8 {
    match family {
        None => 0,
        Some(IpFamily::V4) => libc::AF_INET as u8,
        Some(IpFamily::V6) => libc::AF_INET6 as u8,
    }
}

/// `(NFNL_SUBSYS_CTNETLINK << 8) | msg`.
const fn ct_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_CTNETLINK << 8) | msg
}

/// Whether a message of type `ty` is a conntrack entry (of a dump, `NEW` or `GET`).
pub(super) fn is_entry(ty: u16) -> bool {
    ty == ct_type(IPCTNL_MSG_CT_GET) || ty == ct_type(IPCTNL_MSG_CT_NEW)
}

/// The request for a dump of the table: entries of `family`, or of every family.
pub(super) fn dump_request(family: Option<IpFamily>, seq: u32) -> Vec<u8> {
    let mut b = wire::Builder::new();
    let m = b.begin(ct_type(IPCTNL_MSG_CT_GET), NLM_F_REQUEST | NLM_F_DUMP, seq);
    b.nfgenmsg(af(family), 0);
    b.finish(m);
    b.into_bytes()
}

/// Append a request deleting `entry` exactly: its original tuple as the kernel sent it, its zone,
/// and its id, so that an entry that has since been replaced by another of the same tuple is
/// left alone (`ENOENT`). Never a message without a tuple: that would flush the table.
pub(super) fn delete_request(b: &mut wire::Builder, entry: &Entry, seq: u32) {
    debug_assert!(!entry.orig_attr.is_empty(), "an entry has a tuple");
    let m = b.begin(ct_type(IPCTNL_MSG_CT_DELETE), NLM_F_REQUEST | NLM_F_ACK, seq);
    b.nfgenmsg(af(Some(entry.family)), 0);
    b.attr_with(CTA_TUPLE_ORIG | NLA_F_NESTED, |out| {
        out.extend_from_slice(&entry.orig_attr)
    });
    if entry.zone != 0 {
        b.attr_with(CTA_ZONE, |out| out.extend_from_slice(&entry.zone.to_be_bytes()));
    }
    if let Some(id) = entry.id {
        b.attr_with(CTA_ID, |out| out.extend_from_slice(&id.to_be_bytes()));
    }
    b.finish(m);
}

/// Read one entry from the payload of a dump message (`nfgenmsg`, then attributes). `None` when
/// it is not an IPv4 or IPv6 entry with both tuples (the kernel always sends them).
pub(super) fn parse_entry(payload: &[u8]) -> Option<Entry> {
    let family = match i32::from(*payload.first()?) {
        libc::AF_INET => IpFamily::V4,
        libc::AF_INET6 => IpFamily::V6,
        _ => return None,
    };
    let mut orig = None;
    let mut reply = None;
    let mut orig_attr = None;
    let mut entry_status = Status::default();
    let mut mark = 0;
    let mut timeout = None;
    let mut id = None;
    let mut zone = 0;
    for a in wire::attrs(payload.get(4..)?) {
        match a.ty {
            CTA_TUPLE_ORIG => {
                orig = parse_tuple(a.value);
                orig_attr = Some(a.value);
            }
            CTA_TUPLE_REPLY => reply = parse_tuple(a.value),
            CTA_STATUS => entry_status = Status(a.u32_be()?),
            CTA_MARK => mark = a.u32_be()?,
            CTA_TIMEOUT => timeout = Some(Duration::from_secs(a.u32_be()?.into())),
            CTA_ID => id = Some(a.u32_be()?),
            CTA_ZONE => zone = a.u16_be()?,
            _ => {}
        }
    }
    let (orig, reply) = (orig?, reply?);
    if IpFamily::of(orig.src) != family || IpFamily::of(reply.src) != family {
        return None;
    }
    Some(Entry {
        family,
        orig,
        reply,
        status: entry_status,
        mark,
        timeout,
        id,
        zone,
        orig_attr: orig_attr?.to_vec(),
    })
}

/// A `CTA_TUPLE_ORIG` / `CTA_TUPLE_REPLY` payload: addresses of one family, a protocol, and
/// ports for the protocols that have them.
fn parse_tuple(buf: &[u8]) -> Option<Tuple> {
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut src_port, mut dst_port) = (None, None);
    for a in wire::attrs(buf) {
        match a.ty {
            CTA_TUPLE_IP => {
                for ip in wire::attrs(a.value) {
                    let v4 = || Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip.value).ok()?)));
                    let v6 = || Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip.value).ok()?)));
                    match ip.ty {
                        CTA_IP_V4_SRC => src = v4(),
                        CTA_IP_V4_DST => dst = v4(),
                        CTA_IP_V6_SRC => src = v6(),
                        CTA_IP_V6_DST => dst = v6(),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for p in wire::attrs(a.value) {
                    match p.ty {
                        CTA_PROTO_NUM => proto = p.value.first().copied(),
                        CTA_PROTO_SRC_PORT => src_port = p.u16_be(),
                        CTA_PROTO_DST_PORT => dst_port = p.u16_be(),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let (src, dst) = (src?, dst?);
    if IpFamily::of(src) != IpFamily::of(dst) {
        return None;
    }
    Some(Tuple {
        src,
        dst,
        protocol: Protocol(proto?),
        src_port,
        dst_port,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::netlink::wire::testing::tlv;

    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(kind | NLA_F_NESTED, &parts.concat())
    }

    /// A tuple as the kernel lays it out (ports only when given).
    pub(crate) fn tuple_attr(kind: u16, src: IpAddr, dst: IpAddr, proto: u8, ports: Option<(u16, u16)>) -> Vec<u8> {
        let ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => vec![tlv(CTA_IP_V4_SRC, &s.octets()), tlv(CTA_IP_V4_DST, &d.octets())],
            (IpAddr::V6(s), IpAddr::V6(d)) => vec![tlv(CTA_IP_V6_SRC, &s.octets()), tlv(CTA_IP_V6_DST, &d.octets())],
            _ => panic!("mixed families"),
        };
        let mut l4 = vec![tlv(CTA_PROTO_NUM, &[proto])];
        if let Some((sp, dp)) = ports {
            l4.push(tlv(CTA_PROTO_SRC_PORT, &sp.to_be_bytes()));
            l4.push(tlv(CTA_PROTO_DST_PORT, &dp.to_be_bytes()));
        }
        nested(kind, &[nested(CTA_TUPLE_IP, &ip), nested(CTA_TUPLE_PROTO, &l4)])
    }

    /// The payload of a dump message for a DNATed UDP flow 10.0.0.1:40000 → 10.96.0.10:53,
    /// answered by 10.0.1.5:5353.
    pub(crate) fn udp_dnat_payload() -> Vec<u8> {
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        let vip: IpAddr = "10.96.0.10".parse().unwrap();
        let ep: IpAddr = "10.0.1.5".parse().unwrap();
        let mut p = vec![libc::AF_INET as u8, 0, 0, 0];
        p.extend(tuple_attr(CTA_TUPLE_ORIG, c, vip, 17, Some((40000, 53))));
        p.extend(tuple_attr(CTA_TUPLE_REPLY, ep, c, 17, Some((5353, 40000))));
        p.extend(tlv(CTA_STATUS, &((1u32 << 3) | (1 << 5) | (1 << 8)).to_be_bytes()));
        p.extend(tlv(CTA_MARK, &7u32.to_be_bytes()));
        p.extend(tlv(CTA_TIMEOUT, &29u32.to_be_bytes()));
        p.extend(tlv(CTA_ID, &0xdead_beefu32.to_be_bytes()));
        p.extend(tlv(99, b"ignored"));
        p
    }

    #[test]
    fn reads_a_dnat_entry() {
        let e = parse_entry(&udp_dnat_payload()).expect("an entry");
        assert_eq!(e.family, IpFamily::V4);
        assert_eq!(e.orig.to_string(), "src=10.0.0.1 dst=10.96.0.10 sport=40000 dport=53");
        assert_eq!(e.reply.to_string(), "src=10.0.1.5 dst=10.0.0.1 sport=5353 dport=40000");
        assert_eq!((e.orig.protocol, e.reply.protocol), (Protocol::UDP, Protocol::UDP));
        assert!(e.status.dst_nat() && !e.status.src_nat() && !e.status.seen_reply());
        assert!(e.status.contains(Status::CONFIRMED | Status::DST_NAT_DONE));
        assert_eq!(
            (e.mark, e.timeout, e.id, e.zone),
            (7, Some(Duration::from_secs(29)), Some(0xdead_beef), 0)
        );
        assert_eq!(
            e.to_string(),
            "udp 29 src=10.0.0.1 dst=10.96.0.10 sport=40000 dport=53 [UNREPLIED] \
             src=10.0.1.5 dst=10.0.0.1 sport=5353 dport=40000 mark=7 id=3735928559 \
             status=CONFIRMED|DST_NAT|DST_NAT_DONE"
        );
    }

    #[test]
    fn reads_v6_and_portless_tuples() {
        let a: IpAddr = "fd00::1".parse().unwrap();
        let b: IpAddr = "fd00::2".parse().unwrap();
        let mut p = vec![libc::AF_INET6 as u8, 0, 0, 0];
        p.extend(tuple_attr(CTA_TUPLE_ORIG, a, b, 58, None));
        p.extend(tuple_attr(CTA_TUPLE_REPLY, b, a, 58, None));
        p.extend(tlv(CTA_ZONE, &3u16.to_be_bytes()));
        let e = parse_entry(&p).expect("an entry");
        assert_eq!(e.family, IpFamily::V6);
        assert_eq!((e.orig.src, e.orig.dst, e.orig.src_port), (a, b, None));
        assert_eq!(
            (e.orig.protocol.to_string(), e.zone, e.id, e.timeout),
            ("ipv6-icmp".into(), 3, None, None)
        );
    }

    #[test]
    fn refuses_what_is_not_a_whole_entry() {
        let full = udp_dnat_payload();
        // Another family, a missing reply tuple, a tuple of the wrong family.
        let mut other = full.clone();
        other[0] = 7;
        assert!(parse_entry(&other).is_none());
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        let mut no_reply = vec![libc::AF_INET as u8, 0, 0, 0];
        no_reply.extend(tuple_attr(CTA_TUPLE_ORIG, c, c, 17, Some((1, 2))));
        assert!(parse_entry(&no_reply).is_none());
        let mut v4_as_v6 = full.clone();
        v4_as_v6[0] = libc::AF_INET6 as u8;
        assert!(parse_entry(&v4_as_v6).is_none());
        // A status too short to be a u32.
        let mut short = full[..4].to_vec();
        short.extend(tuple_attr(CTA_TUPLE_ORIG, c, c, 17, None));
        short.extend(tuple_attr(CTA_TUPLE_REPLY, c, c, 17, None));
        short.extend(tlv(CTA_STATUS, &[1, 2]));
        assert!(parse_entry(&short).is_none());
        assert!(parse_entry(&[]).is_none());
    }

    #[test]
    fn delete_sends_the_tuple_zone_and_id() {
        let mut e = parse_entry(&udp_dnat_payload()).unwrap();
        e.zone = 5;
        let mut b = wire::Builder::new();
        delete_request(&mut b, &e, 42);
        let msgs: Vec<_> = wire::messages(b.as_bytes()).collect();
        assert_eq!(msgs.len(), 1);
        let h = msgs[0].header;
        assert_eq!((h.ty, h.flags, h.seq), (0x102, NLM_F_REQUEST | NLM_F_ACK, 42));
        assert_eq!(msgs[0].payload[..4], [libc::AF_INET as u8, 0, 0, 0]);
        let top: Vec<_> = wire::attrs(&msgs[0].payload[4..]).collect();
        let tys: Vec<_> = top.iter().map(|a| (a.ty, a.nested)).collect();
        assert_eq!(tys, [(CTA_TUPLE_ORIG, true), (CTA_ZONE, false), (CTA_ID, false)]);
        assert_eq!(parse_tuple(top[0].value).unwrap(), e.orig);
        assert_eq!((top[1].u16_be(), top[2].u32_be()), (Some(5), Some(0xdead_beef)));
        // The default zone and an unknown id are left out.
        e.zone = 0;
        e.id = None;
        let mut b = wire::Builder::new();
        delete_request(&mut b, &e, 1);
        let m = wire::messages(b.as_bytes()).next().unwrap();
        assert_eq!(wire::attrs(&m.payload[4..]).count(), 1);
    }

    #[test]
    fn dump_request_layout() {
        for (family, af) in [(None, 0), (Some(IpFamily::V4), 2), (Some(IpFamily::V6), 10)] {
            let buf = dump_request(family, 9);
            let m = wire::messages(&buf).next().unwrap();
            assert_eq!(
                (m.header.ty, m.header.flags, m.header.seq),
                (0x101, NLM_F_REQUEST | NLM_F_DUMP, 9)
            );
            assert_eq!(m.payload, [af, 0, 0, 0]);
        }
        assert!(is_entry(0x101) && is_entry(0x100) && !is_entry(0x102) && !is_entry(wire::NLMSG_DONE));
    }
}

#[cfg(test)]
mod fuzz {
    //! The reader of what the kernel sends, fed arbitrary bytes and damaged entries: it must
    //! never panic, and whatever it reads back from a well-formed entry is what was put in.

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::tests::{tuple_attr, udp_dnat_payload};
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn parse_entry_never_panics(bytes in vec(any::<u8>(), 0..300)) {
            let _ = parse_entry(&bytes);
            let _ = parse_tuple(&bytes);
        }

        #[test]
        fn damaged_entries_never_panic(at in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
            let mut p = udp_dnat_payload();
            let at = at % p.len();
            p[at] = byte;
            p.truncate(cut.max(4));
            let _ = parse_entry(&p);
        }

        #[test]
        fn tuples_read_back(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), v6 in any::<bool>(),
            proto in any::<u8>(), ports in proptest::option::of(any::<(u16, u16)>()),
            status in any::<u32>(), id in any::<u32>(),
        ) {
            let (s, d): (IpAddr, IpAddr) = if v6 {
                (Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into())
            } else {
                (Ipv4Addr::from(<[u8; 4]>::try_from(&src[..4]).unwrap()).into(),
                 Ipv4Addr::from(<[u8; 4]>::try_from(&dst[..4]).unwrap()).into())
            };
            let mut p = vec![if v6 { libc::AF_INET6 as u8 } else { libc::AF_INET as u8 }, 0, 0, 0];
            p.extend(tuple_attr(CTA_TUPLE_ORIG, s, d, proto, ports));
            p.extend(tuple_attr(CTA_TUPLE_REPLY, d, s, proto, ports.map(|(a, b)| (b, a))));
            p.extend(crate::netlink::wire::testing::tlv(CTA_STATUS, &status.to_be_bytes()));
            p.extend(crate::netlink::wire::testing::tlv(CTA_ID, &id.to_be_bytes()));
            let e = parse_entry(&p).expect("a well-formed entry");
            prop_assert_eq!((e.orig.src, e.orig.dst, e.reply.src, e.reply.dst), (s, d, d, s));
            prop_assert_eq!(e.orig.protocol, Protocol(proto));
            prop_assert_eq!((e.orig.src_port, e.orig.dst_port), (ports.map(|p| p.0), ports.map(|p| p.1)));
            prop_assert_eq!((e.status.bits(), e.id), (status, Some(id)));
        }
    }
}
