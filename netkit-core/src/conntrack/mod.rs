//! The kernel's connection tracking table of a namespace, listed and cleaned over ctnetlink
//! (`NETLINK_NETFILTER`, subsystem `NFNL_SUBSYS_CTNETLINK`): what `conntrack -L` and
//! `conntrack -D` do, without the tool.
//!
//! The use it is made for: a service proxy that DNATs a UDP virtual IP to endpoints must drop
//! the conntrack entries that point at an endpoint that went away. UDP has no connection to
//! close, so as long as a client keeps sending from the same port its entry stays alive and
//! keeps steering the datagrams to the old endpoint, whatever the NAT rules say now. kube-proxy
//! runs `conntrack -D -p udp --orig-dst VIP --reply-src ENDPOINT` for it; here that is
//!
//! ```no_run
//! # fn demo(ns: &netkit_core::NetNs) -> Result<(), netkit_core::conntrack::ConntrackError> {
//! use netkit_core::conntrack::{Conntrack, Filter, Protocol};
//! let ct = Conntrack::open(ns)?;
//! let vip = "10.96.0.10".parse().unwrap();
//! let gone = "10.244.1.7".parse().unwrap();
//! let deleted = ct.delete(&Filter::new().protocol(Protocol::UDP).orig_dst(vip).reply_src(gone))?;
//! # let _ = deleted; Ok(()) }
//! ```
//!
//! [`Conntrack::list`] dumps the table ([`Entry`]: both [`Tuple`]s, [`Status`] flags, mark,
//! timeout, id); [`Conntrack::delete`] deletes the entries a [`Filter`] matches, one delete
//! request per entry naming its original tuple and its id (so an entry replaced meanwhile by a
//! new one of the same tuple is left alone), up to 512 requests in one system call.
//!
//! The API is blocking (a dump is a few `recv`s, a delete one `sendmsg` and the acks): an async
//! caller wraps it in `spawn_blocking`. The socket is opened inside the namespace and keeps it;
//! any thread may use a [`Conntrack`] afterwards, calls on one are serialized.
//!
//! The table only has entries once something in the namespace uses conntrack (a NAT rule, a
//! `ct state` match); listing an empty table is not an error.

mod codec;

use std::fmt;
use std::net::IpAddr;
use std::ops::BitOr;
use std::sync::Mutex;
use std::time::Duration;

use crate::netlink::nfnl::{error_of, NfnlSocket};
use crate::netlink::{wire, NetlinkError};
use crate::netns::NetNs;
use crate::route::IpFamily;

/// How many delete requests go in one `sendmsg` (each is about 100 bytes).
const DELETES_PER_SEND: usize = 512;

/// An IP protocol number (`-p` of conntrack(8)): [`Protocol::UDP`], [`Protocol::TCP`], …
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(pub u8);

impl Protocol {
    /// ICMP (1).
    pub const ICMP: Protocol = Protocol(1);
    /// TCP (6).
    pub const TCP: Protocol = Protocol(6);
    /// UDP (17).
    pub const UDP: Protocol = Protocol(17);
    /// ICMPv6 (58).
    pub const ICMPV6: Protocol = Protocol(58);
    /// SCTP (132).
    pub const SCTP: Protocol = Protocol(132);
}

impl fmt::Display for Protocol {
    /// The name conntrack(8) shows (`udp`, `tcp`, …), else the number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("icmp"),
            6 => f.write_str("tcp"),
            17 => f.write_str("udp"),
            33 => f.write_str("dccp"),
            47 => f.write_str("gre"),
            58 => f.write_str("ipv6-icmp"),
            132 => f.write_str("sctp"),
            136 => f.write_str("udplite"),
            n => n.fmt(f),
        }
    }
}

/// One direction of a connection: addresses, protocol and, for protocols that have them (TCP,
/// UDP, SCTP, …), ports.
///
/// An entry's original tuple is the packet as it came in (a client to a service's virtual IP);
/// its reply tuple is what an answer looks like after NAT, so after DNAT the reply's source is
/// the endpoint the connection was steered to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The IP protocol.
    pub protocol: Protocol,
    /// Source port, for protocols with ports.
    pub src_port: Option<u16>,
    /// Destination port, for protocols with ports.
    pub dst_port: Option<u16>,
}

impl fmt::Display for Tuple {
    /// As conntrack(8) writes a tuple: `src=… dst=… sport=… dport=…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "src={} dst={}", self.src, self.dst)?;
        if let Some(p) = self.src_port {
            write!(f, " sport={p}")?;
        }
        if let Some(p) = self.dst_port {
            write!(f, " dport={p}")?;
        }
        Ok(())
    }
}

/// An entry's status bits (the kernel's `enum ip_conntrack_status`, `IPS_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Status(pub u32);

/// Names of the status bits, in bit order, as the kernel's `IPS_*_BIT` (without the prefix).
const STATUS_NAMES: [&str; 16] = [
    "EXPECTED",
    "SEEN_REPLY",
    "ASSURED",
    "CONFIRMED",
    "SRC_NAT",
    "DST_NAT",
    "SEQ_ADJUST",
    "SRC_NAT_DONE",
    "DST_NAT_DONE",
    "DYING",
    "FIXED_TIMEOUT",
    "TEMPLATE",
    "NAT_CLASH",
    "HELPER",
    "OFFLOAD",
    "HW_OFFLOAD",
];

impl Status {
    /// The connection is expected by a helper (`IPS_EXPECTED`).
    pub const EXPECTED: Status = Status(1 << 0);
    /// Packets went both ways (`IPS_SEEN_REPLY`); without it conntrack(8) shows `[UNREPLIED]`.
    pub const SEEN_REPLY: Status = Status(1 << 1);
    /// The connection is established enough not to be dropped early (`IPS_ASSURED`).
    pub const ASSURED: Status = Status(1 << 2);
    /// The entry is in the table (`IPS_CONFIRMED`).
    pub const CONFIRMED: Status = Status(1 << 3);
    /// The source is translated (SNAT, masquerade) (`IPS_SRC_NAT`).
    pub const SRC_NAT: Status = Status(1 << 4);
    /// The destination is translated (DNAT) (`IPS_DST_NAT`).
    pub const DST_NAT: Status = Status(1 << 5);
    /// Source NAT has been set up (`IPS_SRC_NAT_DONE`).
    pub const SRC_NAT_DONE: Status = Status(1 << 7);
    /// Destination NAT has been set up (`IPS_DST_NAT_DONE`).
    pub const DST_NAT_DONE: Status = Status(1 << 8);
    /// The entry is being destroyed (`IPS_DYING`).
    pub const DYING: Status = Status(1 << 9);
    /// The timeout is fixed (`IPS_FIXED_TIMEOUT`).
    pub const FIXED_TIMEOUT: Status = Status(1 << 10);
    /// The flow is offloaded to a flowtable (`IPS_OFFLOAD`).
    pub const OFFLOAD: Status = Status(1 << 14);

    /// The raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Every bit of `other` is set.
    pub fn contains(self, other: Status) -> bool {
        self.0 & other.0 == other.0
    }

    /// The destination is translated (DNAT: a service's virtual IP to an endpoint).
    pub fn dst_nat(self) -> bool {
        self.contains(Self::DST_NAT)
    }

    /// The source is translated (SNAT or masquerade).
    pub fn src_nat(self) -> bool {
        self.contains(Self::SRC_NAT)
    }

    /// An answer came back.
    pub fn seen_reply(self) -> bool {
        self.contains(Self::SEEN_REPLY)
    }

    /// The connection is assured.
    pub fn assured(self) -> bool {
        self.contains(Self::ASSURED)
    }
}

impl BitOr for Status {
    type Output = Status;

    fn bitor(self, rhs: Status) -> Status {
        Status(self.0 | rhs.0)
    }
}

impl fmt::Display for Status {
    /// The names of the bits set, `|`-separated (`CONFIRMED|DST_NAT`), unknown bits in hex;
    /// `0` when none is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { "|" };
            first = false;
            f.write_str(s)
        };
        for (bit, name) in STATUS_NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                sep(f)?;
                f.write_str(name)?;
            }
        }
        let unknown = self.0 & !((1u32 << STATUS_NAMES.len()) - 1);
        if unknown != 0 {
            sep(f)?;
            write!(f, "{unknown:#x}")?;
        }
        if self.0 == 0 {
            f.write_str("0")?;
        }
        Ok(())
    }
}

/// One entry of the conntrack table, as [`Conntrack::list`] read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// IPv4 or IPv6.
    pub family: IpFamily,
    /// The original direction: the packet that made the entry, before NAT.
    pub orig: Tuple,
    /// The reply direction: what an answer looks like (after DNAT, its source is the endpoint).
    pub reply: Tuple,
    /// Status bits (NAT, replied, assured, …).
    pub status: Status,
    /// The connection mark (`ct mark`), 0 when unset.
    pub mark: u32,
    /// Time left before the entry expires, in whole seconds, when the kernel said.
    pub timeout: Option<Duration>,
    /// The kernel's id of the entry (`CTA_ID`), when it said.
    pub id: Option<u32>,
    /// The conntrack zone (0: the default one).
    pub zone: u16,
    /// The original tuple as the kernel sent it (`CTA_TUPLE_ORIG`'s payload), sent back as is to
    /// delete the entry: exact for every protocol (ICMP ids, GRE keys, per-direction zones).
    orig_attr: Vec<u8>,
}

impl fmt::Display for Entry {
    /// Close to a line of `conntrack -L`: protocol, seconds left, original tuple,
    /// `[UNREPLIED]` when no answer came, reply tuple, then mark, zone, id and status.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.orig.protocol)?;
        if let Some(t) = self.timeout {
            write!(f, " {}", t.as_secs())?;
        }
        write!(f, " {}", self.orig)?;
        if !self.status.seen_reply() {
            f.write_str(" [UNREPLIED]")?;
        }
        write!(f, " {} mark={}", self.reply, self.mark)?;
        if self.zone != 0 {
            write!(f, " zone={}", self.zone)?;
        }
        if let Some(id) = self.id {
            write!(f, " id={id}")?;
        }
        write!(f, " status={}", self.status)
    }
}

/// Which entries to delete, named after conntrack(8)'s options; every field set must match
/// (they are ANDed), an unset one matches anything, and [`Filter::new`] (nothing set) matches
/// every entry.
///
/// `Filter::new().protocol(Protocol::UDP).orig_dst(vip).reply_src(endpoint)` is
/// `conntrack -D -p udp --orig-dst VIP --reply-src ENDPOINT`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `-p`: the protocol of the original tuple.
    pub protocol: Option<Protocol>,
    /// `--orig-dst`: the original destination (a service's virtual IP).
    pub orig_dst: Option<IpAddr>,
    /// `--orig-port-dst`: the original destination port (the service's port).
    pub orig_port_dst: Option<u16>,
    /// `--reply-src`: the reply's source, which after DNAT is the endpoint.
    pub reply_src: Option<IpAddr>,
    /// `--reply-port-src`: the reply's source port (the endpoint's port).
    pub reply_port_src: Option<u16>,
}

impl Filter {
    /// A filter that matches everything; narrow it with the other methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only entries of this protocol (`-p`).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Only entries whose original destination is `ip` (`--orig-dst`).
    pub fn orig_dst(mut self, ip: IpAddr) -> Self {
        self.orig_dst = Some(ip);
        self
    }

    /// Only entries whose original destination port is `port` (`--orig-port-dst`).
    pub fn orig_port_dst(mut self, port: u16) -> Self {
        self.orig_port_dst = Some(port);
        self
    }

    /// Only entries whose reply comes from `ip` (`--reply-src`: the DNAT target).
    pub fn reply_src(mut self, ip: IpAddr) -> Self {
        self.reply_src = Some(ip);
        self
    }

    /// Only entries whose reply comes from port `port` (`--reply-port-src`).
    pub fn reply_port_src(mut self, port: u16) -> Self {
        self.reply_port_src = Some(port);
        self
    }

    /// Whether `entry` matches every field set.
    pub fn matches(&self, entry: &Entry) -> bool {
        fn ok<T: PartialEq>(want: Option<T>, have: T) -> bool {
            want.is_none_or(|w| w == have)
        }
        ok(self.protocol, entry.orig.protocol)
            && ok(self.orig_dst, entry.orig.dst)
            && ok(self.orig_port_dst.map(Some), entry.orig.dst_port)
            && ok(self.reply_src, entry.reply.src)
            && ok(self.reply_port_src.map(Some), entry.reply.src_port)
    }

    /// The family the addresses set imply: `Ok(None)` for any, `Err(())` when they disagree
    /// (no entry can match).
    fn family(&self) -> Result<Option<IpFamily>, ()> {
        let fams = [self.orig_dst, self.reply_src].map(|a| a.map(IpFamily::of));
        match fams {
            [Some(a), Some(b)] if a != b => Err(()),
            [a, b] => Ok(a.or(b)),
        }
    }
}

/// What failed, in which namespace, with the kernel's errno (in `source`).
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The ctnetlink socket could not be opened in the namespace.
    #[error("open ctnetlink socket in netns {netns}: {source}")]
    Open {
        /// The namespace.
        netns: String,
        /// The failure (its errno is the system call's).
        #[source]
        source: NetlinkError,
    },
    /// Dumping the table failed (`conntrack -L`).
    #[error("conntrack -L{} in netns {netns}: {source}", family_arg(.family))]
    List {
        /// The namespace.
        netns: String,
        /// The family listed (`None`: both).
        family: Option<IpFamily>,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
    /// The kernel refused to delete an entry (an entry already gone is not an error), or the
    /// socket failed while deleting (then `entry` says how many were being deleted). Entries
    /// before it in the same call may have been deleted.
    #[error("conntrack -D {entry} in netns {netns}: {source}")]
    Delete {
        /// The namespace.
        netns: String,
        /// The entry, as [`Entry`]'s `Display` writes it (or `(N entries)`, see above).
        entry: String,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
}

fn family_arg(family: &Option<IpFamily>) -> &'static str {
    match family {
        None => "",
        Some(IpFamily::V4) => " -f ipv4",
        Some(IpFamily::V6) => " -f ipv6",
    }
}

impl ConntrackError {
    /// The errno of the failure, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Open { source, .. } | Self::List { source, .. } | Self::Delete { source, .. } => source.errno,
        }
    }
}

crate::netlink::errno_predicates!(ConntrackError);

/// The conntrack table of one namespace, through a ctnetlink socket opened inside it.
#[derive(Debug)]
pub struct Conntrack {
    inner: Mutex<Inner>,
    netns: String,
}

#[derive(Debug)]
struct Inner {
    socket: NfnlSocket,
    /// Next sequence number; every request takes a fresh one, so an answer left over from an
    /// earlier call that gave up is never taken for a current one.
    seq: u32,
}

impl Inner {
    fn take_seq(&mut self, n: usize) -> u32 {
        let first = self.seq;
        self.seq = self.seq.wrapping_add(n as u32);
        first
    }
}

impl Conntrack {
    /// Open a ctnetlink socket inside `ns` (on netkit's helper thread: the caller's thread
    /// never changes namespace).
    pub fn open(ns: &NetNs) -> Result<Self, ConntrackError> {
        let netns = ns.to_string();
        let socket = NfnlSocket::open(ns).map_err(|source| ConntrackError::Open {
            netns: netns.clone(),
            source,
        })?;
        Ok(Self {
            inner: Mutex::new(Inner { socket, seq: 1 }),
            netns,
        })
    }

    /// Every entry of the table of `family`, or of both families for `None` (`conntrack -L`).
    /// Entries come and go while the kernel dumps: one created or destroyed meanwhile may or
    /// may not be in the list.
    pub fn list(&self, family: Option<IpFamily>) -> Result<Vec<Entry>, ConntrackError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seq = inner.take_seq(1);
        let err = |source| ConntrackError::List {
            netns: self.netns.clone(),
            family,
            source,
        };
        inner.socket.drain();
        inner.socket.send(&codec::dump_request(family, seq)).map_err(err)?;
        let mut entries = Vec::new();
        loop {
            let mut end = None;
            inner
                .socket
                .recv(|m| {
                    if m.header.seq != seq || end.is_some() {
                        return;
                    }
                    match m.header.ty {
                        wire::NLMSG_DONE => end = Some(Ok(())),
                        wire::NLMSG_ERROR => end = Some(error_of(m).map_or(Ok(()), |(e, _)| Err(e))),
                        ty if codec::is_entry(ty) => entries.extend(codec::parse_entry(m.payload)),
                        _ => {}
                    }
                })
                .map_err(err)?;
            match end {
                None => continue,
                Some(Ok(())) => return Ok(entries),
                Some(Err(e)) => return Err(err(e)),
            }
        }
    }

    /// Delete every entry `filter` matches and return how many were deleted
    /// (`conntrack -D …`). The table is listed (only the family of the filter's addresses,
    /// when it has some) and each matching entry deleted by its original tuple and id; an
    /// entry that expired or was replaced between the two is not counted and is no error.
    pub fn delete(&self, filter: &Filter) -> Result<usize, ConntrackError> {
        let Ok(family) = filter.family() else {
            return Ok(0);
        };
        let matching: Vec<Entry> = self.list(family)?.into_iter().filter(|e| filter.matches(e)).collect();
        self.delete_entries(&matching)
    }

    /// Delete these entries (from [`list`](Self::list)) and return how many were deleted; one
    /// already gone (expired, deleted by someone else, replaced by a new entry of the same
    /// tuple) is not counted and is no error. On an error, entries before the one it names may
    /// have been deleted.
    pub fn delete_entries(&self, entries: &[Entry]) -> Result<usize, ConntrackError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut deleted = 0;
        for chunk in entries.chunks(DELETES_PER_SEND) {
            let first = inner.take_seq(chunk.len());
            let mut b = wire::Builder::new();
            for (i, e) in chunk.iter().enumerate() {
                codec::delete_request(&mut b, e, first.wrapping_add(i as u32));
            }
            let whole = |source| ConntrackError::Delete {
                netns: self.netns.clone(),
                entry: format!("({} entries)", chunk.len()),
                source,
            };
            inner.socket.drain();
            inner.socket.send(b.as_bytes()).map_err(whole)?;
            let mut acked = vec![false; chunk.len()];
            let mut pending = chunk.len();
            let mut failed: Option<(usize, NetlinkError)> = None;
            while pending > 0 {
                inner
                    .socket
                    .recv(|m| {
                        if m.header.ty != wire::NLMSG_ERROR {
                            return;
                        }
                        let i = m.header.seq.wrapping_sub(first) as usize;
                        if i >= chunk.len() || acked[i] {
                            return;
                        }
                        acked[i] = true;
                        pending -= 1;
                        match error_of(m) {
                            None => deleted += 1,
                            Some((e, _)) if e.errno == Some(libc::ENOENT) => {}
                            Some((e, _)) => {
                                if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                                    failed = Some((i, e));
                                }
                            }
                        }
                    })
                    .map_err(whole)?;
            }
            if let Some((i, source)) = failed {
                return Err(ConntrackError::Delete {
                    netns: self.netns.clone(),
                    entry: chunk[i].to_string(),
                    source,
                });
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        codec::parse_entry(&codec::tests::udp_dnat_payload()).unwrap()
    }

    #[test]
    fn filters_and_their_fields() {
        let e = entry();
        let vip: IpAddr = "10.96.0.10".parse().unwrap();
        let ep: IpAddr = "10.0.1.5".parse().unwrap();
        let other: IpAddr = "10.0.1.6".parse().unwrap();
        assert!(Filter::new().matches(&e));
        let f = Filter::new()
            .protocol(Protocol::UDP)
            .orig_dst(vip)
            .orig_port_dst(53)
            .reply_src(ep)
            .reply_port_src(5353);
        assert!(f.matches(&e));
        for miss in [
            f.clone().protocol(Protocol::TCP),
            f.clone().orig_dst(ep),
            f.clone().orig_port_dst(54),
            f.clone().reply_src(other),
            f.clone().reply_port_src(53),
        ] {
            assert!(!miss.matches(&e), "{miss:?}");
        }
        // A port filter never matches a portless tuple.
        let mut icmp = e.clone();
        icmp.orig.dst_port = None;
        assert!(!Filter::new().orig_port_dst(53).matches(&icmp));
        // Families.
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(Filter::new().family(), Ok(None));
        assert_eq!(Filter::new().reply_src(v6).family(), Ok(Some(IpFamily::V6)));
        assert_eq!(Filter::new().orig_dst(vip).family(), Ok(Some(IpFamily::V4)));
        assert_eq!(Filter::new().orig_dst(vip).reply_src(v6).family(), Err(()));
    }

    #[test]
    fn status_and_protocol_text() {
        assert_eq!(Status::default().to_string(), "0");
        assert_eq!(
            (Status::SEEN_REPLY | Status::ASSURED | Status(1 << 20)).to_string(),
            "SEEN_REPLY|ASSURED|0x100000"
        );
        assert_eq!(Status(1 << 15).to_string(), "HW_OFFLOAD");
        assert!(Status(0b110).assured() && Status(0b110).seen_reply());
        assert_eq!(
            [Protocol::UDP, Protocol::TCP, Protocol::SCTP, Protocol(200)].map(|p| p.to_string()),
            ["udp", "tcp", "sctp", "200"]
        );
    }

    #[test]
    fn errors_name_operation_namespace_and_errno() {
        let e = ConntrackError::List {
            netns: "ns1".into(),
            family: Some(IpFamily::V6),
            source: NetlinkError::from_errno(libc::EPERM),
        };
        assert_eq!(
            e.to_string(),
            "conntrack -L -f ipv6 in netns ns1: Operation not permitted (EPERM)"
        );
        assert_eq!(e.errno(), Some(libc::EPERM));
        let e = ConntrackError::Delete {
            netns: "ns1".into(),
            entry: entry().to_string(),
            source: NetlinkError::from_errno(libc::ENOENT),
        };
        assert!(e.is_not_found());
        assert!(e
            .to_string()
            .starts_with("conntrack -D udp 29 src=10.0.0.1 dst=10.96.0.10"));
    }
}
