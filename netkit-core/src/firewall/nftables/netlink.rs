//! A small synchronous nf_tables client that speaks netlink directly, for the
//! firewall's set and map elements: add, create and destroy *elements* of
//! existing sets and maps of an `inet` table, and read a table's comment.
//!
//! `nft` and libnftables fetch a cache of the whole ruleset for every command,
//! so their cost grows with the ruleset. Here one [`Batch`] is one `sendmsg`
//! of an nfnetlink batch (`NFNL_MSG_BATCH_BEGIN`, one message per set
//! operation, `NFNL_MSG_BATCH_END`) and one `recv` per acknowledgement, and the
//! cost of adding or removing an element does not depend on how many exist.
//! Tables, chains, rules and set definitions are made elsewhere (nft text).
//! Messages are laid out and read with [`crate::netlink::wire`].
//!
//! The kernel applies a batch all or nothing: when any operation fails, none
//! takes effect, and [`NftError::Element`] says which operation, set and
//! element failed, with the errno and the namespace.
//!
//! Keys and values are built with [`Data`], which lays fields out as nftables
//! registers want them: each field of a concatenation padded to 4 bytes,
//! integers in the byte order of their nftables type.
//!
//! ```text
//! let sock = NftSocket::open(&ns)?;
//! let mut batch = Batch::new();
//! batch.add("t", "pm4", [Element::new(Data::new().inet_proto(6).inet_service(8080))
//!     .value(Data::new().ipv4_addr([10, 88, 0, 2].into()).inet_service(80))
//!     .comment("container abc")]);
//! sock.send(&batch)?;
//! ```
//!
//! The API is blocking (one `sendmsg`, then `recv` until every ack is in): an
//! async caller wraps it in `spawn_blocking`. The socket is opened inside a
//! namespace and keeps it; any thread may use it afterwards. Calls on one
//! [`NftSocket`] are serialized by a mutex, so its acks never mix.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};

use crate::netlink::nfnl::{error_of, NfnlSocket};
use crate::netlink::wire::{self, NLA_MAX_LEN};
use crate::netlink::NetlinkError;
use crate::netns::NetNs;

// Numbers from the kernel's include/uapi/linux/netfilter/nfnetlink.h and
// nf_tables.h. They are ABI and never change.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
/// NFPROTO_INET: the family of netkit's table (`inet`: IPv4 and IPv6).
const NFPROTO_INET: u8 = 1;

const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
/// Kernel 6.3+: like DELSETELEM, but a missing element is not an error.
const NFT_MSG_DESTROYSETELEM: u16 = 30;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTNL_UDATA_TABLE_COMMENT: u8 = 0;
const NFT_MSG_NEWTABLE: u16 = 0;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;

const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
/// The element ends an interval (rbtree sets).
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
/// 10, not 9 (9 is NFTA_SET_ELEM_OBJREF).
const NFTA_SET_ELEM_KEY_END: u16 = 10;

const NFTA_DATA_VALUE: u16 = 1;

/// libnftnl's udata type for an element comment (`nft list` shows `comment "…"`).
const NFTNL_UDATA_SET_ELEM_COMMENT: u8 = 0;
/// NFT_USERDATA_MAX: the kernel's limit on NFTA_SET_ELEM_USERDATA.
const NFT_USERDATA_MAX: usize = 256;
/// NFT_DATA_VALUE_MAXLEN: 16 registers of 4 bytes.
const NFT_DATA_VALUE_MAXLEN: usize = 64;
/// NFT_NAME_MAXLEN (table, set), with the NUL.
const NFT_NAME_MAXLEN: usize = 256;
const IFNAMSIZ: usize = 16;

/// Rounds of the legacy destroy (see [`NftSocket::send`]).
const MAX_ROUNDS: usize = 4;

/// One field of a key or value, typed like the nftables datatype it stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Field {
    /// `ipv4_addr`: 4 bytes, network order.
    V4(Ipv4Addr),
    /// `ipv6_addr`: 16 bytes, network order.
    V6(Ipv6Addr),
    /// `inet_proto`: 1 byte.
    Proto(u8),
    /// `inet_service`: 2 bytes, big-endian.
    Service(u16),
    /// `ifname`: 16 bytes, NUL padded.
    Ifname(String),
    /// A 32-bit integer in network order: the key of an interval map on an integer
    /// (`typeof numgen random mod N`), which nft converts to network order before the lookup.
    U32Be(u32),
}

impl Field {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::V4(a) => out.extend_from_slice(&a.octets()),
            Self::V6(a) => out.extend_from_slice(&a.octets()),
            Self::Proto(p) => out.push(*p),
            Self::Service(port) => out.extend_from_slice(&port.to_be_bytes()),
            Self::Ifname(name) => {
                let start = out.len();
                out.extend_from_slice(name.as_bytes());
                out.resize(start + IFNAMSIZ, 0);
            }
            Self::U32Be(v) => out.extend_from_slice(&v.to_be_bytes()),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(a) => a.fmt(f),
            Self::V6(a) => a.fmt(f),
            Self::Proto(p) => match p {
                1 => f.write_str("icmp"),
                6 => f.write_str("tcp"),
                17 => f.write_str("udp"),
                33 => f.write_str("dccp"),
                58 => f.write_str("ipv6-icmp"),
                132 => f.write_str("sctp"),
                136 => f.write_str("udplite"),
                p => p.fmt(f),
            },
            Self::Service(p) => p.fmt(f),
            Self::Ifname(n) => write!(f, "{n:?}"),
            Self::U32Be(v) => v.fmt(f),
        }
    }
}

/// A set key or map value: one field, or a concatenation (`a . b . c`).
///
/// Laid out as nftables registers want it: a single field takes its natural
/// size (`inet_service` is 2 bytes), while each field of a concatenation is
/// padded with zeros to a multiple of 4 bytes, so `tcp . 8080` is
/// `06 00 00 00 1f 90 00 00`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Data {
    fields: Vec<Field>,
}

impl Data {
    /// An empty key; add fields in the order of the set's `type a . b . c`.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn with(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }

    /// An `ipv4_addr` field.
    pub(crate) fn ipv4_addr(self, addr: Ipv4Addr) -> Self {
        self.with(Field::V4(addr))
    }

    /// An `ipv6_addr` field.
    pub(crate) fn ipv6_addr(self, addr: Ipv6Addr) -> Self {
        self.with(Field::V6(addr))
    }

    /// An `ipv4_addr` or `ipv6_addr` field, as the address is.
    pub(crate) fn ip_addr(self, addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => self.ipv4_addr(a),
            IpAddr::V6(a) => self.ipv6_addr(a),
        }
    }

    /// An `inet_proto` field (6 = tcp, 17 = udp, 132 = sctp, …).
    pub(crate) fn inet_proto(self, proto: u8) -> Self {
        self.with(Field::Proto(proto))
    }

    /// An `inet_service` field: a port, big-endian.
    pub(crate) fn inet_service(self, port: u16) -> Self {
        self.with(Field::Service(port))
    }

    /// A 32-bit integer field in network order (see [`Element::interval_end`]).
    pub(crate) fn u32_be(self, v: u32) -> Self {
        self.with(Field::U32Be(v))
    }

    /// An `ifname` field: an interface name, NUL padded to IFNAMSIZ (16).
    /// Fails for a name that is empty, longer than 15 bytes or holds a NUL.
    pub(crate) fn ifname(self, name: &str) -> Result<Self, NftError> {
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(NftError::Invalid(format!(
                "interface name {name:?} must be 1-15 bytes without NUL"
            )));
        }
        Ok(self.with(Field::Ifname(name.to_owned())))
    }

    /// The bytes sent to the kernel.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.fields.len() * 4);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        let concat = self.fields.len() > 1;
        for field in &self.fields {
            field.write(out);
            if concat {
                out.resize(out.len().next_multiple_of(4), 0);
            }
        }
    }

    /// The encoded length, without building it.
    fn len(&self) -> usize {
        self.to_bytes().len()
    }
}

impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(" . ")?;
            }
            field.fmt(f)?;
        }
        Ok(())
    }
}

/// One element of a set or map: a key (or a key range for interval sets),
/// and for maps a value; optionally a comment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Element {
    key: Data,
    key_end: Option<Data>,
    value: Option<Data>,
    comment: Option<String>,
    interval_end: bool,
}

impl Element {
    /// An element with this key.
    pub(crate) fn new(key: Data) -> Self {
        Self {
            key,
            key_end: None,
            value: None,
            comment: None,
            interval_end: false,
        }
    }

    /// The end of an interval of a one-field interval set (the rbtree backend): the first key
    /// past the interval, flagged `NFT_SET_ELEM_INTERVAL_END`. An interval `[a, b]` is the
    /// element `a` (with the map's value) and the end element `b + 1`; deleting it takes both.
    pub(crate) fn interval_end(key: Data) -> Self {
        Self {
            interval_end: true,
            ..Self::new(key)
        }
    }

    /// An element of an interval set with concatenations (`flags interval`
    /// and `type a . b`, the pipapo backend): every key from `start` to `end`,
    /// inclusive, field by field. `"br0" . 10.88.0.0/16` is
    /// `start = "br0" . 10.88.0.0`, `end = "br0" . 10.88.255.255`.
    /// Deleting such an element needs the same `start` and `end`.
    pub(crate) fn range(start: Data, end: Data) -> Self {
        Self {
            key_end: Some(end),
            ..Self::new(start)
        }
    }

    /// The map value (for a map `: type . type`).
    pub(crate) fn value(mut self, value: Data) -> Self {
        self.value = Some(value);
        self
    }

    /// A comment, shown by `nft list` as `comment "…"` (at most 253 bytes).
    pub(crate) fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    fn validate(&self) -> Result<(), NftError> {
        let check = |what: &str, d: &Data| {
            let len = d.len();
            if len == 0 || len > NFT_DATA_VALUE_MAXLEN {
                return Err(NftError::Invalid(format!(
                    "{what} {d} of element {self} is {len} bytes; 1-{NFT_DATA_VALUE_MAXLEN} allowed"
                )));
            }
            Ok(())
        };
        check("key", &self.key)?;
        if let Some(end) = &self.key_end {
            check("key end", end)?;
        }
        if let Some(value) = &self.value {
            check("value", value)?;
        }
        if let Some(c) = &self.comment {
            // type, length, text, NUL
            if c.len() + 3 > NFT_USERDATA_MAX || c.contains('\0') {
                return Err(NftError::Invalid(format!(
                    "comment of element {} is {} bytes or holds a NUL; at most {} bytes",
                    self.key,
                    c.len(),
                    NFT_USERDATA_MAX - 3
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key.fmt(f)?;
        if let Some(end) = &self.key_end {
            write!(f, "-{end}")?;
        }
        if self.interval_end {
            f.write_str(" (interval end)")?;
        }
        if let Some(c) = &self.comment {
            write!(f, " comment {c:?}")?;
        }
        match &self.value {
            Some(d) => write!(f, " : {d}"),
            None => Ok(()),
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<(), NftError> {
    if name.is_empty() || name.len() >= NFT_NAME_MAXLEN || name.contains('\0') {
        return Err(NftError::Invalid(format!(
            "{what} name {name:?} must be 1-{} bytes without NUL",
            NFT_NAME_MAXLEN - 1
        )));
    }
    Ok(())
}

/// What an operation does to its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OpKind {
    /// `nft add element`: NEWSETELEM with NLM_F_CREATE. Adding an element
    /// that exists with the same value is not an error (its comment is left
    /// as it was); with a different value the kernel answers `EEXIST`.
    Add,
    /// `nft create element`: NEWSETELEM with NLM_F_CREATE | NLM_F_EXCL; an
    /// existing key fails with `EEXIST`.
    Create,
    /// `nft destroy element`: delete, and a missing element is not an error
    /// (DESTROYSETELEM, kernel 6.3+; see [`NftSocket::send`] for older kernels).
    Destroy,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Add => "add",
            Self::Create => "create",
            Self::Destroy => "destroy",
        })
    }
}

/// One operation of a batch: the same kind of change to elements of one set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Op {
    /// What is done.
    pub(crate) kind: OpKind,
    /// The table's name (family `inet`).
    pub(crate) table: String,
    /// The set's or map's name.
    pub(crate) set: String,
    /// The elements (for deletes only keys and key ends matter).
    pub(crate) elements: Vec<Element>,
}

/// Element operations on one or more sets, applied by the kernel all or
/// nothing by [`NftSocket::send`]. Operations are applied in order.
///
/// An operation without elements is skipped (an empty DELSETELEM would flush
/// the whole set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn op(&mut self, kind: OpKind, table: &str, set: &str, elements: impl IntoIterator<Item = Element>) -> &mut Self {
        self.ops.push(Op {
            kind,
            table: table.to_owned(),
            set: set.to_owned(),
            elements: elements.into_iter().collect(),
        });
        self
    }

    /// Add elements to the set or map `set` of table `inet table` ([`OpKind::Add`]).
    pub(crate) fn add(&mut self, table: &str, set: &str, elements: impl IntoIterator<Item = Element>) -> &mut Self {
        self.op(OpKind::Add, table, set, elements)
    }

    /// Create elements, failing with `EEXIST` if a key exists ([`OpKind::Create`]).
    pub(crate) fn create(&mut self, table: &str, set: &str, elements: impl IntoIterator<Item = Element>) -> &mut Self {
        self.op(OpKind::Create, table, set, elements)
    }

    /// Delete elements, ignoring missing ones ([`OpKind::Destroy`]).
    pub(crate) fn destroy(&mut self, table: &str, set: &str, elements: impl IntoIterator<Item = Element>) -> &mut Self {
        self.op(OpKind::Destroy, table, set, elements)
    }

    /// True when there is no element to send.
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.iter().all(|op| op.elements.is_empty())
    }
}

/// Errors of this module. Each names the namespace; element errors name the
/// operation, the set and (when the kernel pointed at it) the element.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NftError {
    /// The kernel refused an element operation; the whole batch was rolled back.
    #[error(transparent)]
    Element(Box<ElementError>),
    /// The batch as a whole failed (rejected, commit failed, or the socket
    /// failed); nothing was applied, unless `source` says acks were lost.
    #[error("nft batch in netns {netns}: {source}")]
    Batch {
        /// The namespace.
        netns: String,
        /// What happened.
        #[source]
        source: NetlinkError,
    },
    /// Looking up a table failed with something other than "no such table".
    #[error("nft get table inet {table} in netns {netns}: {source}")]
    Table {
        /// The table.
        table: String,
        /// The namespace.
        netns: String,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
    /// The nf_tables socket could not be opened.
    #[error("open nf_tables netlink socket in netns {netns}: {reason}")]
    Open {
        /// The namespace.
        netns: String,
        /// Why.
        reason: String,
        /// The errno, if the failure had one.
        errno: Option<i32>,
    },
    /// A name, key, value or comment cannot be encoded; nothing was sent.
    #[error("invalid nft request: {0}")]
    Invalid(String),
}

impl NftError {
    /// Whether the batch failed because table `inet <table>` does not exist: `Some(true)` for
    /// `ENOENT` the kernel pinned on the table's name, `Some(false)` for `ENOENT` pinned on
    /// nothing (a kernel that reports no offsets: the set may be the one missing, so whoever
    /// acts on it must check, see [`super::ruleset::create`]), `None` otherwise.
    pub(crate) fn table_missing(&self) -> Option<bool> {
        match self {
            Self::Element(e) if e.source.errno == Some(libc::ENOENT) => match e.pinned {
                Pinned::Table => Some(true),
                Pinned::Nothing => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// The errno of the failure, when there is one.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            Self::Element(e) => e.source.errno,
            Self::Batch { source, .. } | Self::Table { source, .. } => source.errno,
            Self::Open { errno, .. } => *errno,
            Self::Invalid(_) => Some(libc::EINVAL),
        }
    }
}

/// What the kernel pointed at when it refused an element message (its `NLMSGERR_ATTR_OFFS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pinned {
    /// The table's name: no such table (`ENOENT`).
    Table,
    /// The set's name: no such set in the table (`ENOENT`).
    Set,
    /// One of the elements (named in [`ElementError::element`]).
    Element,
    /// Another part of the message.
    Other,
    /// Nothing: the kernel sent no offset (kernels before 4.12, or errors it reports without one).
    Nothing,
}

/// ` { ELEMENT }`, or nothing when the error is not about one element.
fn braced(element: &Option<String>) -> String {
    element.as_ref().map(|e| format!(" {{ {e} }}")).unwrap_or_default()
}

/// The kernel refused an element operation of a batch; nothing of the batch
/// took effect.
#[derive(Debug, thiserror::Error)]
#[error(
    "nft {op} element inet {table} {set}{} in netns {netns}: {source} (batch rolled back)",
    braced(.element)
)]
pub(crate) struct ElementError {
    /// The operation's kind.
    pub(crate) op: OpKind,
    /// The table.
    pub(crate) table: String,
    /// The set or map.
    pub(crate) set: String,
    /// The failing element, as `nft` would write it, when the kernel said
    /// which one (it points at the attribute it refused); `None` when it
    /// refused the table or set name.
    pub(crate) element: Option<String>,
    /// What the kernel pointed at.
    pub(crate) pinned: Pinned,
    /// The namespace.
    pub(crate) netns: String,
    /// The kernel's answer (errno and extended-ack text).
    #[source]
    pub(crate) source: NetlinkError,
}

/// Whether the kernel knows NFT_MSG_DESTROYSETELEM.
const DESTROY_UNKNOWN: u8 = 0;
const DESTROY_SUPPORTED: u8 = 1;
const DESTROY_LEGACY: u8 = 2;

/// A NETLINK_NETFILTER socket inside one namespace, for nf_tables element
/// batches. Share it (e.g. in an `Arc`); calls are serialized internally.
#[derive(Debug)]
pub(crate) struct NftSocket {
    inner: Mutex<Inner>,
    netns: String,
    destroy: AtomicU8,
    /// NFT_MSG_DESTROYSETELEM; tests set a type no kernel knows to play an
    /// old kernel.
    destroy_msg: u16,
    /// Close the socket in a detached process (see [`NftSocket::set_detached_close`]).
    detached_close: bool,
    /// A batch removed something: closing the socket will wait.
    removed: std::sync::atomic::AtomicBool,
    /// Set on drop when the close is handed over; dropped after `inner` (fields drop in
    /// declaration order), which lets the detached process close the last copy.
    close_guard: Option<std::os::fd::OwnedFd>,
}

impl Drop for NftSocket {
    fn drop(&mut self) {
        if self.detached_close && self.removed.load(Ordering::Relaxed) {
            let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
            use std::os::fd::AsFd;
            self.close_guard = crate::detach::close_later(inner.socket.as_fd()).ok();
        }
    }
}

#[derive(Debug)]
struct Inner {
    socket: NfnlSocket,
    /// Next sequence number. Every batch takes fresh ones, so an ack left
    /// over from an earlier (failed) call is never taken for a current one.
    seq: u32,
}

impl NftSocket {
    /// Open a socket inside `ns` (on netkit's helper thread; the caller's
    /// thread never changes namespace).
    pub(crate) fn open(ns: &NetNs) -> Result<Self, NftError> {
        let netns = ns.to_string();
        let socket = NfnlSocket::open(ns).map_err(|e| NftError::Open {
            netns: netns.clone(),
            reason: e.message.clone().unwrap_or_else(|| e.to_string()),
            errno: e.errno,
        })?;
        Ok(Self::from_socket(socket, netns))
    }

    fn from_socket(socket: NfnlSocket, netns: String) -> Self {
        Self {
            inner: Mutex::new(Inner { socket, seq: 1 }),
            netns,
            destroy: AtomicU8::new(DESTROY_UNKNOWN),
            destroy_msg: NFT_MSG_DESTROYSETELEM,
            detached_close: false,
            removed: std::sync::atomic::AtomicBool::new(false),
            close_guard: None,
        }
    }

    /// Hand the final close to a detached process when a batch removed something. Closing a
    /// NETLINK_NETFILTER socket makes the closing thread wait for nf_tables' deferred cleanup
    /// of removals (every removal anywhere on the machine, an RCU grace period: 3–25 ms on a
    /// loaded machine); a short-lived process (a CNI plugin) should not wait for it.
    pub(crate) fn set_detached_close(&mut self, on: bool) {
        self.detached_close = on;
    }

    /// Send `batch` and wait until the kernel has acked every message.
    ///
    /// Either every operation took effect, or none did and the error names
    /// the first failing operation, set and element (the kernel reports the
    /// attribute it refused, which maps to one element) with the errno:
    /// `EEXIST` for a create of an existing key or an add whose key exists
    /// with another value (or an interval that overlaps one), `ENOENT` for a
    /// missing table or set (see [`NftError::table_missing`]), `EINVAL` for a
    /// key or value of the wrong size.
    ///
    /// **Destroy on kernels before 6.3**, which answer `EINVAL` to
    /// NFT_MSG_DESTROYSETELEM: the socket switches for good to sending each
    /// element of a destroy as its own DELSETELEM message. When the only
    /// failures are `ENOENT` for such elements (the kernel reports every
    /// failing message of a batch), those elements are dropped and the batch
    /// is sent again, so the batch stays all or nothing and missing elements
    /// are ignored, at the cost of a second round trip. An `ENOENT` that the
    /// kernel pins on the table or set name is still an error.
    pub(crate) fn send(&self, batch: &Batch) -> Result<(), NftError> {
        for op in &batch.ops {
            check_name("table", &op.table)?;
            check_name("set", &op.set)?;
            op.elements.iter().try_for_each(Element::validate)?;
        }
        if batch
            .ops
            .iter()
            .any(|op| !matches!(op.kind, OpKind::Add | OpKind::Create))
        {
            self.removed.store(true, Ordering::Relaxed);
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut skip: Vec<(usize, usize)> = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let legacy = self.destroy.load(Ordering::Relaxed) == DESTROY_LEGACY;
            let plan = encode_batch(&batch.ops, legacy.then_some(&skip[..]), self.destroy_msg, inner.seq);
            if plan.msgs.is_empty() {
                return Ok(());
            }
            inner.seq = plan.end_seq.wrapping_add(1);
            let failures = match inner.exchange(&plan) {
                Ok(f) => f,
                Err(source) => {
                    return Err(NftError::Batch {
                        netns: self.netns.clone(),
                        source,
                    })
                }
            };
            if failures.is_empty() {
                if !legacy && plan.msgs.iter().any(|m| m.ty == self.destroy_msg) {
                    self.destroy.store(DESTROY_SUPPORTED, Ordering::Relaxed);
                }
                return Ok(());
            }
            // A kernel without DESTROYSETELEM: EINVAL/EOPNOTSUPP not pinned
            // on an attribute (a new kernel pins element errors on the element).
            if self.destroy.load(Ordering::Relaxed) == DESTROY_UNKNOWN
                && failures.iter().any(|f| {
                    plan.msgs[f.msg].ty == self.destroy_msg
                        && matches!(f.error.errno, Some(libc::EINVAL) | Some(libc::EOPNOTSUPP))
                        && f.offset.is_none()
                })
            {
                self.destroy.store(DESTROY_LEGACY, Ordering::Relaxed);
                continue;
            }
            // Legacy destroy: drop missing elements and try again.
            if legacy {
                let missing: Vec<_> = failures.iter().filter_map(|f| plan.legacy_missing(f)).collect();
                if missing.len() == failures.len() {
                    skip.extend(missing);
                    continue;
                }
            }
            let first = failures
                .iter()
                .find(|f| !legacy || plan.legacy_missing(f).is_none())
                .unwrap_or(&failures[0]);
            return Err(self.element_error(&batch.ops, &plan, first));
        }
        Err(NftError::Batch {
            netns: self.netns.clone(),
            source: NetlinkError::local(format!(
                "legacy destroy: elements kept appearing and disappearing over {MAX_ROUNDS} tries"
            )),
        })
    }

    fn element_error(&self, ops: &[Op], plan: &Plan, f: &Failure) -> NftError {
        let msg = &plan.msgs[f.msg];
        let op = &ops[msg.op];
        // The kernel points at the attribute it refused: the table's name, the
        // set's name, or one element.
        let pinned = match f.offset {
            None => Pinned::Nothing,
            Some(off) if off == msg.table_at => Pinned::Table,
            Some(off) if off == msg.set_at => Pinned::Set,
            Some(off) if msg.elements_at.0 <= off && off < msg.elements_at.1 => Pinned::Element,
            Some(_) => Pinned::Other,
        };
        let element = match f.offset {
            Some(off) => msg.elems.iter().find(|e| e.start <= off && off < e.end),
            None if msg.elems.len() == 1 => Some(&msg.elems[0]),
            None => None,
        }
        .map(|e| op.elements[e.index].to_string());
        NftError::Element(Box::new(ElementError {
            op: op.kind,
            table: op.table.clone(),
            set: op.set.clone(),
            element,
            pinned,
            netns: self.netns.clone(),
            source: f.error.clone(),
        }))
    }

    /// The comment of table `inet name`: `None` when there is no such table, `Some(None)`
    /// when it has no comment (NFT_MSG_GETTABLE; the comment is the userdata TLV nft writes).
    pub(crate) fn table_comment(&self, name: &str) -> Result<Option<Option<String>>, NftError> {
        check_name("table", name)?;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seq = inner.seq;
        inner.seq = seq.wrapping_add(1);
        let mut b = wire::Builder::new();
        let start = b.begin(nft_type(NFT_MSG_GETTABLE), NLM_F_REQUEST | NLM_F_ACK, seq);
        b.nfgenmsg(NFPROTO_INET, 0);
        b.attr_str(NFTA_TABLE_NAME, name);
        b.finish(start);
        let err = |source| NftError::Table {
            table: name.to_owned(),
            netns: self.netns.clone(),
            source,
        };
        inner.socket.drain();
        inner.socket.send(b.as_bytes()).map_err(err)?;
        let mut comment = None;
        loop {
            let mut ack = None;
            inner
                .socket
                .recv(|m| {
                    // The reply (NFT_MSG_NEWTABLE) comes first, then the ack.
                    if m.header.seq == seq && m.header.ty == nft_type(NFT_MSG_NEWTABLE) {
                        comment = table_userdata_comment(m.payload);
                    }
                    if m.header.seq == seq && m.header.ty == wire::NLMSG_ERROR {
                        ack = Some(error_of(m));
                    }
                })
                .map_err(err)?;
            match ack {
                None => continue,
                Some(None) => return Ok(Some(comment)),
                Some(Some((e, _))) if e.errno == Some(libc::ENOENT) => return Ok(None),
                Some(Some((e, _))) => return Err(err(e)),
            }
        }
    }
}

/// `(NFNL_SUBSYS_NFTABLES << 8) | msg`.
fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// NFTA_DATA_VALUE inside a nest of type `ty`.
fn put_data(b: &mut wire::Builder, ty: u16, data: &Data) {
    let n = b.nest(ty);
    b.attr_with(NFTA_DATA_VALUE, |out| data.write(out));
    b.nest_end(n);
}

/// One NFTA_LIST_ELEM. Deletes send only what identifies the element.
fn put_element(b: &mut wire::Builder, e: &Element, delete: bool) {
    let n = b.nest(NFTA_LIST_ELEM);
    put_data(b, NFTA_SET_ELEM_KEY, &e.key);
    if let Some(end) = &e.key_end {
        put_data(b, NFTA_SET_ELEM_KEY_END, end);
    }
    if e.interval_end {
        b.attr_with(NFTA_SET_ELEM_FLAGS, |out| {
            out.extend_from_slice(&NFT_SET_ELEM_INTERVAL_END.to_be_bytes())
        });
    }
    if !delete {
        if let Some(value) = &e.value {
            put_data(b, NFTA_SET_ELEM_DATA, value);
        }
        if let Some(c) = &e.comment {
            // One libnftnl udata TLV: type, length (text and NUL; `validate` keeps it < 256).
            b.attr_with(NFTA_SET_ELEM_USERDATA, |out| {
                out.push(NFTNL_UDATA_SET_ELEM_COMMENT);
                out.push((c.len() + 1) as u8);
                out.extend_from_slice(c.as_bytes());
                out.push(0);
            });
        }
    }
    b.nest_end(n);
}

/// Where one element sits in its message (offsets from the message start, as
/// the kernel's NLMSGERR_ATTR_OFFS counts).
#[derive(Debug)]
struct ElemPos {
    index: usize,
    start: u32,
    end: u32,
}

/// One element message of an encoded batch; its seq is `first_seq + position`.
#[derive(Debug)]
struct MsgInfo {
    op: usize,
    ty: u16,
    /// Sent as legacy per-element DELSETELEM for a destroy.
    legacy_destroy: bool,
    /// Offsets of the NFTA_SET_ELEM_LIST_TABLE and NFTA_SET_ELEM_LIST_SET attributes.
    table_at: u32,
    set_at: u32,
    /// Offset range of the NFTA_SET_ELEM_LIST_ELEMENTS attribute.
    elements_at: (u32, u32),
    elems: Vec<ElemPos>,
}

/// An encoded batch.
#[derive(Debug)]
struct Plan {
    buf: Vec<u8>,
    begin_seq: u32,
    end_seq: u32,
    msgs: Vec<MsgInfo>,
}

/// A message the kernel refused.
#[derive(Debug)]
struct Failure {
    msg: usize,
    error: NetlinkError,
    offset: Option<u32>,
}

impl Plan {
    fn first_seq(&self) -> u32 {
        self.begin_seq.wrapping_add(1)
    }

    /// For a legacy destroy message refused with ENOENT for its element (not
    /// its table or set): the (op, element) to leave out next time.
    fn legacy_missing(&self, f: &Failure) -> Option<(usize, usize)> {
        let msg = &self.msgs[f.msg];
        let on_element = match f.offset {
            None => true,
            Some(off) => msg.elements_at.0 <= off && off < msg.elements_at.1,
        };
        (msg.legacy_destroy && f.error.errno == Some(libc::ENOENT) && on_element).then(|| (msg.op, msg.elems[0].index))
    }
}

/// Encode `ops` as one nfnetlink batch with sequence numbers from `seq` on.
/// `legacy`: send destroys as one DELSETELEM per element, leaving out the
/// listed (op, element) pairs; else as `destroy_msg` (NFT_MSG_DESTROYSETELEM).
fn encode_batch(ops: &[Op], legacy: Option<&[(usize, usize)]>, destroy_msg: u16, seq: u32) -> Plan {
    let skip = legacy.unwrap_or_default();
    let legacy = legacy.is_some();
    let mut b = wire::Builder::new();
    let mut next = seq;
    let mut take_seq = || {
        let s = next;
        next = next.wrapping_add(1);
        s
    };
    let begin_seq = take_seq();
    let s = b.begin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, begin_seq);
    b.nfgenmsg(0, NFNL_SUBSYS_NFTABLES);
    b.finish(s);
    let mut msgs = Vec::new();
    for (oi, op) in ops.iter().enumerate() {
        let (ty, flags) = match op.kind {
            OpKind::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE),
            OpKind::Create => (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL),
            OpKind::Destroy if legacy => (NFT_MSG_DELSETELEM, 0),
            OpKind::Destroy => (destroy_msg, 0),
        };
        let legacy_destroy = legacy && op.kind == OpKind::Destroy;
        let delete = ty != NFT_MSG_NEWSETELEM;
        let mut elems = op
            .elements
            .iter()
            .enumerate()
            .filter(|(ei, _)| !(legacy_destroy && skip.contains(&(oi, *ei))))
            .peekable();
        while elems.peek().is_some() {
            let start = b.begin(nft_type(ty), NLM_F_REQUEST | NLM_F_ACK | flags, take_seq());
            b.nfgenmsg(NFPROTO_INET, 0);
            let table_at = (b.len() - start) as u32;
            b.attr_str(NFTA_SET_ELEM_LIST_TABLE, &op.table);
            let set_at = (b.len() - start) as u32;
            b.attr_str(NFTA_SET_ELEM_LIST_SET, &op.set);
            let list = b.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            let mut info = MsgInfo {
                op: oi,
                ty,
                legacy_destroy,
                table_at,
                set_at,
                elements_at: ((list - start) as u32, 0),
                elems: Vec::new(),
            };
            // Fill the message until the element list would outgrow its
            // u16 length (always at least one element; a legacy destroy
            // exactly one, so its ENOENT names it).
            while let Some(&(ei, e)) = elems.peek() {
                let at = b.len();
                put_element(&mut b, e, delete);
                if !info.elems.is_empty() && b.len() - list > NLA_MAX_LEN {
                    b.truncate(at);
                    break;
                }
                info.elems.push(ElemPos {
                    index: ei,
                    start: (at - start) as u32,
                    end: (b.len() - start) as u32,
                });
                elems.next();
                if legacy_destroy {
                    break;
                }
            }
            b.nest_end(list);
            info.elements_at.1 = (b.len() - start) as u32;
            b.finish(start);
            msgs.push(info);
        }
    }
    let end_seq = take_seq();
    let s = b.begin(NFNL_MSG_BATCH_END, NLM_F_REQUEST, end_seq);
    b.nfgenmsg(0, NFNL_SUBSYS_NFTABLES);
    b.finish(s);
    Plan {
        buf: b.into_bytes(),
        begin_seq,
        end_seq,
        msgs,
    }
}

/// The comment of an NFT_MSG_NEWTABLE payload (nfgenmsg, then attributes): the
/// NFTNL_UDATA_TABLE_COMMENT entry of NFTA_TABLE_USERDATA, a NUL-terminated string.
fn table_userdata_comment(payload: &[u8]) -> Option<String> {
    let ud = wire::attrs(payload.get(4..)?).find(|a| a.ty == NFTA_TABLE_USERDATA)?;
    // libnftnl udata TLVs: u8 type, u8 length, value.
    let mut ud = ud.value;
    while let [t, l, rest @ ..] = ud {
        let value = rest.get(..usize::from(*l))?;
        if *t == NFTNL_UDATA_TABLE_COMMENT {
            let text = value.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        ud = &rest[value.len()..];
    }
    None
}

impl Inner {
    /// Send a batch and collect one ack per element message. `Ok` holds the
    /// messages the kernel refused (empty: the batch was applied); `Err` a
    /// failure of the batch as a whole.
    fn exchange(&mut self, plan: &Plan) -> Result<Vec<Failure>, NetlinkError> {
        self.socket.drain();
        self.socket.send(&plan.buf)?;
        let first = plan.first_seq();
        let count = plan.msgs.len();
        let mut acked = vec![false; count];
        let mut pending = count;
        let mut failures = Vec::new();
        let mut whole = None;
        while pending > 0 && whole.is_none() {
            self.socket.recv(|m| {
                if m.header.ty != wire::NLMSG_ERROR {
                    return;
                }
                let seq = m.header.seq;
                let i = seq.wrapping_sub(first) as usize;
                if i < count {
                    if !acked[i] {
                        acked[i] = true;
                        pending -= 1;
                        if let Some((error, offset)) = error_of(m) {
                            failures.push(Failure { msg: i, error, offset });
                        }
                    }
                } else if seq == plan.begin_seq || seq == plan.end_seq {
                    // The batch itself was refused, or its commit failed:
                    // the kernel sends this one answer and no per-message acks.
                    if let Some((e, _)) = error_of(m) {
                        whole = Some(e);
                    }
                }
            })?;
        }
        if let Some(e) = whole {
            return Err(e);
        }
        failures.sort_by_key(|f| f.msg);
        Ok(failures)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz {
    //! The reader of what the kernel sends back about a table, fed arbitrary bytes (it must
    //! never panic) and well-formed messages built here the way the kernel lays them out (it
    //! must read back what was put in): `table_userdata_comment` (NFT_MSG_NEWTABLE's
    //! NFTA_TABLE_USERDATA). Errors and acks are read by `netlink::wire` (fuzzed there); netkit
    //! decodes no set elements (it only sends them), so there is no element reader to fuzz.

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    use crate::netlink::wire::testing::tlv;

    fn nul_terminated(text: &str) -> Vec<u8> {
        let mut v = text.as_bytes().to_vec();
        v.push(0);
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn table_userdata_comment_never_panics(bytes in vec(any::<u8>(), 0..200)) {
            let _ = table_userdata_comment(&bytes);
        }

        #[test]
        fn table_userdata_comment_reads_the_comment(
            nfgen in any::<[u8; 4]>(),
            name in "[a-z][a-z0-9_]{0,20}",
            others in vec((2u16..6, vec(any::<u8>(), 0..12)), 0..3),
            udata_before in vec((1u8..8, vec(any::<u8>(), 0..10)), 0..3),
            // At most 60 characters: up to 240 bytes and the NUL, within the u8 length of a udata TLV.
            comment in proptest::option::of("[^\u{0}]{0,60}"),
        ) {
            let mut payload = nfgen.to_vec();
            payload.extend_from_slice(&tlv(1, &nul_terminated(&name))); // NFTA_TABLE_NAME
            for (k, v) in &others {
                payload.extend_from_slice(&tlv(*k, v));
            }
            // nftnl_udata TLVs: u8 type, u8 length, value.
            let mut udata = Vec::new();
            for (t, v) in &udata_before {
                udata.push(*t);
                udata.push(v.len() as u8);
                udata.extend_from_slice(v);
            }
            if let Some(c) = &comment {
                let v = nul_terminated(c);
                udata.push(NFTNL_UDATA_TABLE_COMMENT);
                udata.push(v.len() as u8);
                udata.extend_from_slice(&v);
            }
            payload.extend_from_slice(&tlv(NFTA_TABLE_USERDATA, &udata));
            prop_assert_eq!(table_userdata_comment(&payload), comment);
        }
    }
}
