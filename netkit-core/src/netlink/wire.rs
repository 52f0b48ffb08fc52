//! Netlink framing by hand: the one place netkit lays out and reads raw netlink messages.
//!
//! Requests of the route family go through `netlink-packet-*`; a few paths speak netlink
//! themselves: the nf_tables element client (`firewall::nftables::netlink`), the conntrack
//! client ([`crate::conntrack`]; both over the socket of `super::nfnl`), the reading of the
//! kernel's extended ack in [`NetlinkError`](super::NetlinkError), and the ack reader of a
//! detached process (`crate::detach`). They all use this module:
//!
//! * [`Builder`] writes messages: the `nlmsghdr`, the `nfgenmsg` of nfnetlink, attributes and
//!   nested attributes, each padded to 4 bytes, in native byte order as netlink wants.
//! * [`messages`] walks a receive buffer message by message, [`attrs`] walks attributes, and
//!   [`parse_ack`] / [`ext_ack`] read an `NLMSG_ERROR`: the errno, and the extended ack's text
//!   (`NLMSGERR_ATTR_MSG`) and offset of the refused attribute (`NLMSGERR_ATTR_OFFS`), with the
//!   request echoed whole or capped to its header (`NLM_F_CAPPED`).
//!
//! Reading never panics and never allocates, whatever the bytes: a header or an attribute whose
//! length is too small ends the walk, and one whose length runs past the end of the buffer ends
//! it too (a message cut short by a small receive buffer is still handed out, marked
//! [`truncated`](Message::truncated), so its errno can be read). That makes it fit for the
//! forked child of `crate::detach`, which may only make async-signal-safe calls.

/// `sizeof(struct nlmsghdr)`.
pub(crate) const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct nlattr)`.
pub(crate) const NLA_HDRLEN: usize = 4;
/// The largest attribute, header included (`nla_len` is a `u16`).
pub(crate) const NLA_MAX_LEN: usize = u16::MAX as usize;
/// The attribute holds attributes.
pub(crate) const NLA_F_NESTED: u16 = 1 << 15;
/// The attribute's payload is in network byte order.
pub(crate) const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
/// The type bits of `nla_type`.
pub(crate) const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
/// The kernel's answer to a request (an error, or with errno 0 an ack).
pub(crate) const NLMSG_ERROR: u16 = 2;
/// The end of a dump (its payload: an `int`, the dump's error, 0 when it went through).
pub(crate) const NLMSG_DONE: u16 = 3;
/// `NLMSG_ERROR` flag: the request is echoed as its header only.
pub(crate) const NLM_F_CAPPED: u16 = 0x100;
/// `NLMSG_ERROR` flag: extended-ack attributes follow the echoed request.
pub(crate) const NLM_F_ACK_TLVS: u16 = 0x200;
/// Extended ack: the kernel's error text (a NUL-terminated string).
pub(crate) const NLMSGERR_ATTR_MSG: u16 = 1;
/// Extended ack: the offset, in the request, of the attribute the kernel refused (`u32`).
pub(crate) const NLMSGERR_ATTR_OFFS: u16 = 2;
/// `nfgenmsg.version`.
const NFNETLINK_V0: u8 = 0;

/// `len` rounded up to netlink's 4-byte alignment (saturating, so it cannot overflow).
pub(crate) const fn align(len: usize) -> usize {
    len.saturating_add(3) & !3
}

// ---------------------------------------------------------------- writing

/// A buffer of netlink messages being written: one or more messages back to back (an
/// nfnetlink batch is several), each started with [`begin`](Self::begin) and closed with
/// [`finish`](Self::finish).
#[derive(Debug, Default, Clone)]
pub(crate) struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// An empty buffer.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Start a message: its `nlmsghdr` (length filled in by [`finish`](Self::finish), port id
    /// 0: to the kernel). Returns the message's offset, for `finish` and for offsets the
    /// kernel reports relative to the message.
    pub(crate) fn begin(&mut self, ty: u16, flags: u16, seq: u32) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        start
    }

    /// A family's fixed header (`ifinfomsg`, the errno of an `NLMSG_ERROR`, …) as these bytes
    /// (a multiple of 4 long, as every such header is).
    pub(crate) fn fixed(&mut self, header: &[u8]) {
        self.buf.extend_from_slice(header);
    }

    /// The `nfgenmsg` that starts every nfnetlink payload: the address family (`NFPROTO_*`),
    /// version 0, and the resource id (big-endian; the subsystem for batch messages).
    pub(crate) fn nfgenmsg(&mut self, family: u8, res_id: u16) {
        let [hi, lo] = res_id.to_be_bytes();
        self.fixed(&[family, NFNETLINK_V0, hi, lo]);
    }

    /// Close the message started at `start`: write its length.
    pub(crate) fn finish(&mut self, start: usize) {
        let len = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// An attribute whose payload `write` appends.
    pub(crate) fn attr_with(&mut self, ty: u16, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.open(ty);
        write(&mut self.buf);
        self.close(start);
    }

    /// A NUL-terminated string attribute.
    pub(crate) fn attr_str(&mut self, ty: u16, s: &str) {
        self.attr_with(ty, |b| {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        });
    }

    /// Open a nested attribute (`NLA_F_NESTED`); close it with [`nest_end`](Self::nest_end).
    pub(crate) fn nest(&mut self, ty: u16) -> usize {
        self.open(ty | NLA_F_NESTED)
    }

    /// Close the nest opened at `start`.
    pub(crate) fn nest_end(&mut self, start: usize) {
        self.close(start);
    }

    fn open(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        start
    }

    /// Write the length of the attribute at `start` and pad to 4 bytes. The caller keeps
    /// attributes within [`NLA_MAX_LEN`] (a longer one would be refused by the kernel anyway).
    fn close(&mut self, start: usize) {
        let len = self.buf.len() - start;
        debug_assert!(len <= NLA_MAX_LEN, "netlink attribute of {len} bytes");
        let len = u16::try_from(len).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.buf.resize(align(self.buf.len()), 0);
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Drop everything after the first `len` bytes (an attribute that did not fit).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// The bytes written.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes written, as a vector.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

// ---------------------------------------------------------------- reading

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// A `struct nlmsghdr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// `nlmsg_len`: the whole message, header included.
    pub(crate) len: u32,
    /// `nlmsg_type`.
    pub(crate) ty: u16,
    /// `nlmsg_flags`.
    pub(crate) flags: u16,
    /// `nlmsg_seq`.
    pub(crate) seq: u32,
    /// `nlmsg_pid`.
    pub(crate) pid: u32,
}

impl Header {
    /// The header at the start of `buf` (`None` when `buf` is shorter than one).
    pub(crate) fn parse(buf: &[u8]) -> Option<Self> {
        Some(Self {
            len: u32_at(buf, 0)?,
            ty: u16_at(buf, 4)?,
            flags: u16_at(buf, 6)?,
            seq: u32_at(buf, 8)?,
            pid: u32_at(buf, 12)?,
        })
    }
}

/// One message of a receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    /// Its header.
    pub(crate) header: Header,
    /// What follows the header: `nlmsg_len - 16` bytes, or fewer when [`truncated`](Self::truncated).
    pub(crate) payload: &'a [u8],
    /// The buffer ended before `nlmsg_len` (the datagram was larger than the receive buffer):
    /// `payload` is the part that arrived. Always the last message of the walk.
    pub(crate) truncated: bool,
    /// The whole message as it arrived: header, then payload.
    pub(crate) raw: &'a [u8],
}

impl<'a> Message<'a> {
    /// The kernel's answer when this is an `NLMSG_ERROR` that holds at least its errno.
    pub(crate) fn ack(&self) -> Option<Ack<'a>> {
        (self.header.ty == NLMSG_ERROR)
            .then(|| parse_ack(self.payload, self.header.flags))
            .flatten()
    }
}

/// The messages of a receive buffer, in order (see [`Messages`]).
pub(crate) fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { rest: buf }
}

/// Iterator over the messages of a buffer. Ends at the end of the buffer, at a header shorter
/// than 16 bytes or claiming less than 16, and after a message that runs past the end.
#[derive(Clone, Debug)]
pub(crate) struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        let rest = std::mem::take(&mut self.rest);
        let header = Header::parse(rest)?;
        let len = usize::try_from(header.len).ok()?;
        if len < NLMSG_HDRLEN {
            return None;
        }
        match rest.get(NLMSG_HDRLEN..len) {
            Some(payload) => {
                self.rest = rest.get(align(len)..).unwrap_or_default();
                Some(Message {
                    header,
                    payload,
                    truncated: false,
                    raw: &rest[..len],
                })
            }
            None => Some(Message {
                header,
                payload: rest.get(NLMSG_HDRLEN..).unwrap_or_default(),
                truncated: true,
                raw: rest,
            }),
        }
    }
}

/// One attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attr<'a> {
    /// The type, without the nested and byte-order flags.
    pub(crate) ty: u16,
    /// `NLA_F_NESTED` was set: `value` holds attributes (walk them with [`attrs`]).
    pub(crate) nested: bool,
    /// The payload (without padding).
    pub(crate) value: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The payload as a native-endian `u32` (`None` when it is shorter than 4 bytes).
    pub(crate) fn u32_ne(&self) -> Option<u32> {
        u32_at(self.value, 0)
    }

    /// The payload as a big-endian (network order) `u16` (`None` when shorter than 2 bytes).
    pub(crate) fn u16_be(&self) -> Option<u16> {
        Some(u16::from_be_bytes(self.value.get(..2)?.try_into().ok()?))
    }

    /// The payload as a big-endian (network order) `u32` (`None` when shorter than 4 bytes).
    pub(crate) fn u32_be(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.value.get(..4)?.try_into().ok()?))
    }

    /// The payload up to its first NUL (a C string, terminator or not).
    pub(crate) fn c_str(&self) -> &'a [u8] {
        self.value.split(|b| *b == 0).next().unwrap_or_default()
    }
}

/// The attributes of `buf`, in order (see [`Attrs`]).
pub(crate) fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs { rest: buf }
}

/// Iterator over attributes. Ends at the end of the buffer, at an attribute claiming less than
/// its own 4-byte header, and at one that runs past the end.
#[derive(Clone, Debug)]
pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Attr<'a>;

    fn next(&mut self) -> Option<Attr<'a>> {
        let rest = std::mem::take(&mut self.rest);
        let len = usize::from(u16_at(rest, 0)?);
        let ty = u16_at(rest, 2)?;
        let value = rest.get(NLA_HDRLEN..len)?;
        self.rest = rest.get(align(len)..).unwrap_or_default();
        Some(Attr {
            ty: ty & NLA_TYPE_MASK,
            nested: ty & NLA_F_NESTED != 0,
            value,
        })
    }
}

/// The extended ack of an `NLMSG_ERROR` (with `NETLINK_EXT_ACK` on the socket).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExtAck<'a> {
    /// `NLMSGERR_ATTR_MSG`: the kernel's text, without its NUL.
    pub(crate) message: Option<&'a [u8]>,
    /// `NLMSGERR_ATTR_OFFS`: where, counted from the start of the request message, the
    /// attribute the kernel refused begins.
    pub(crate) offset: Option<u32>,
}

impl ExtAck<'_> {
    /// The kernel's text as a string (invalid UTF-8 replaced).
    pub(crate) fn message_lossy(&self) -> Option<String> {
        self.message.map(|m| String::from_utf8_lossy(m).into_owned())
    }
}

/// The kernel's answer in an `NLMSG_ERROR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ack<'a> {
    /// The positive errno; 0 for an ack (success).
    pub(crate) errno: i32,
    /// The extended ack, when the kernel sent one.
    pub(crate) ext: ExtAck<'a>,
}

/// Read the payload of an `NLMSG_ERROR` whose header had `flags`: the negative errno (`None`
/// when the payload is too short for it), then the echoed request, then the extended ack.
pub(crate) fn parse_ack(payload: &[u8], flags: u16) -> Option<Ack<'_>> {
    let code = i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
    Some(Ack {
        errno: code.wrapping_neg(),
        ext: ext_ack(payload.get(4..).unwrap_or_default(), flags),
    })
}

/// The extended ack in `after_errno`, what follows the errno of an `NLMSG_ERROR` whose header
/// had `flags` (`netlink-packet-core`'s `ErrorMessage::header`): the echoed request (its header
/// alone with `NLM_F_CAPPED`, else the whole message), then, with `NLM_F_ACK_TLVS`, attributes.
pub(crate) fn ext_ack(after_errno: &[u8], flags: u16) -> ExtAck<'_> {
    let mut ext = ExtAck::default();
    if flags & NLM_F_ACK_TLVS == 0 {
        return ext;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        match u32_at(after_errno, 0).and_then(|l| usize::try_from(l).ok()) {
            Some(len) => align(len.max(NLMSG_HDRLEN)),
            None => return ext,
        }
    };
    for a in attrs(after_errno.get(echoed..).unwrap_or_default()) {
        match a.ty {
            NLMSGERR_ATTR_MSG => ext.message = Some(a.c_str()),
            NLMSGERR_ATTR_OFFS => ext.offset = a.u32_ne().or(ext.offset),
            _ => {}
        }
    }
    ext
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attribute with this payload.
    fn attr(b: &mut Builder, ty: u16, payload: &[u8]) {
        b.attr_with(ty, |out| out.extend_from_slice(payload));
    }

    /// An `NLMSG_ERROR` for a request of `req_len` bytes with sequence `seq`: errno, the echoed
    /// request (its header only when `capped`), then `tlvs` as extended-ack attributes.
    fn error_msg(seq: u32, errno: i32, capped: bool, req_len: usize, tlvs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut b = Builder::new();
        let mut flags = if capped { NLM_F_CAPPED } else { 0 };
        if !tlvs.is_empty() {
            flags |= NLM_F_ACK_TLVS;
        }
        let start = b.begin(NLMSG_ERROR, flags, seq);
        b.fixed(&(-errno).to_ne_bytes());
        let mut req = Builder::new();
        let r = req.begin(0x0a0c, 0x5, seq);
        attr(&mut req, 1, &vec![7; req_len.saturating_sub(NLMSG_HDRLEN + NLA_HDRLEN)]);
        req.finish(r);
        let req = req.into_bytes();
        b.fixed(if capped { &req[..NLMSG_HDRLEN] } else { &req });
        for (ty, v) in tlvs {
            attr(&mut b, *ty, v);
        }
        b.finish(start);
        b.into_bytes()
    }

    #[test]
    fn builder_lays_out_headers_attributes_and_nests() {
        let mut b = Builder::new();
        let m = b.begin(0x0a0c, 0x0305, 77);
        b.nfgenmsg(1, 10);
        b.attr_str(1, "tbl");
        attr(&mut b, 2, &[1, 2, 3, 4]);
        let n = b.nest(3);
        attr(&mut b, 1, &[9, 9, 9, 9, 9]);
        b.nest_end(n);
        b.finish(m);
        let bytes = b.as_bytes();
        assert_eq!(bytes.len() % 4, 0);
        let msgs: Vec<_> = messages(bytes).collect();
        assert_eq!(msgs.len(), 1);
        let h = msgs[0].header;
        assert_eq!(
            (h.len as usize, h.ty, h.flags, h.seq, h.pid),
            (bytes.len(), 0x0a0c, 0x0305, 77, 0)
        );
        assert!(!msgs[0].truncated);
        // nfgenmsg: family, version 0, res_id big-endian.
        assert_eq!(&msgs[0].payload[..4], [1, 0, 0, 10]);
        let top: Vec<_> = attrs(&msgs[0].payload[4..]).collect();
        assert_eq!(top.len(), 3);
        assert_eq!((top[0].ty, top[0].nested, top[0].value), (1, false, &b"tbl\0"[..]));
        assert_eq!(top[0].c_str(), b"tbl");
        assert_eq!(top[1].value, [1, 2, 3, 4]);
        assert_eq!((top[2].ty, top[2].nested), (3, true));
        let inner: Vec<_> = attrs(top[2].value).collect();
        assert_eq!(inner.len(), 1);
        assert_eq!(inner[0].value, [9, 9, 9, 9, 9], "padding is not part of the value");
        // The nest's length covers the padded inner attribute.
        assert_eq!(top[2].value.len(), 12);
    }

    #[test]
    fn several_messages_and_truncate() {
        let mut b = Builder::new();
        for seq in 1..=3 {
            let m = b.begin(16, 0, seq);
            attr(&mut b, 1, &[seq as u8]);
            b.finish(m);
        }
        let at = b.len();
        attr(&mut b, 9, &[0; 8]);
        b.truncate(at);
        let seqs: Vec<_> = messages(b.as_bytes()).map(|m| m.header.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(align(0), 0);
        assert_eq!(align(5), 8);
        assert_eq!(align(usize::MAX), usize::MAX & !3);
    }

    #[test]
    fn acks_capped_and_uncapped_with_text_and_offset() {
        let offs = 44u32.to_ne_bytes();
        let tlvs: [(u16, &[u8]); 3] = [(NLMSGERR_ATTR_MSG, b"boom\0"), (99, b"x"), (NLMSGERR_ATTR_OFFS, &offs)];
        for capped in [true, false] {
            let buf = error_msg(5, libc::EEXIST, capped, 40, &tlvs);
            let m = messages(&buf).next().unwrap();
            let ack = m.ack().unwrap();
            assert_eq!(ack.errno, libc::EEXIST, "capped {capped}");
            assert_eq!(ack.ext.message, Some(&b"boom"[..]), "capped {capped}");
            assert_eq!(ack.ext.message_lossy().as_deref(), Some("boom"));
            assert_eq!(ack.ext.offset, Some(44), "capped {capped}");
            // ext_ack on what follows the errno (netlink-packet-core's ErrorMessage::header).
            assert_eq!(ext_ack(&m.payload[4..], m.header.flags), ack.ext);
        }
        // A plain ack, and an error without NLM_F_ACK_TLVS.
        let ok = error_msg(6, 0, true, 20, &[]);
        assert_eq!(
            messages(&ok).next().unwrap().ack(),
            Some(Ack {
                errno: 0,
                ext: ExtAck::default()
            })
        );
        let bare = error_msg(6, libc::ENOENT, false, 64, &[]);
        let ack = messages(&bare).next().unwrap().ack().unwrap();
        assert_eq!((ack.errno, ack.ext), (libc::ENOENT, ExtAck::default()));
        // Another message type is no ack.
        let mut b = Builder::new();
        let m = b.begin(16, 0, 1);
        attr(&mut b, 1, &[0; 4]);
        b.finish(m);
        assert_eq!(messages(b.as_bytes()).next().unwrap().ack(), None);
    }

    #[test]
    fn a_message_cut_short_still_gives_its_errno() {
        let buf = error_msg(7, libc::ENODEV, false, 200, &[(NLMSGERR_ATTR_MSG, b"long\0")]);
        let cut = &buf[..40];
        let all: Vec<_> = messages(cut).collect();
        assert_eq!(all.len(), 1);
        assert!(all[0].truncated);
        assert_eq!(all[0].header.seq, 7);
        let ack = all[0].ack().unwrap();
        assert_eq!(ack.errno, libc::ENODEV);
        assert_eq!(ack.ext.message, None, "the text was cut off");
        // A header cut short is no message at all.
        assert_eq!(messages(&buf[..12]).count(), 0);
        // An error cut before its errno is no ack.
        assert_eq!(messages(&buf[..18]).next().unwrap().ack(), None);
    }

    #[test]
    fn lengths_below_the_header_end_the_walk() {
        // nlmsg_len 0, 15: not a message; nothing after it is read.
        for len in [0u32, 1, 15] {
            let mut buf = len.to_ne_bytes().to_vec();
            buf.extend_from_slice(&[2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
            buf.extend_from_slice(&error_msg(1, libc::EPERM, true, 20, &[]));
            assert_eq!(messages(&buf).count(), 0, "nlmsg_len {len}");
        }
        // nla_len 0..3 ends an attribute walk; a length past the end too.
        for len in 0u16..4 {
            let mut buf = len.to_ne_bytes().to_vec();
            buf.extend_from_slice(&[1, 0, 5, 0, 1, 0, 0, 0]);
            assert_eq!(attrs(&buf).count(), 0, "nla_len {len}");
        }
        let mut buf = 9u16.to_ne_bytes().to_vec();
        buf.extend_from_slice(&[1, 0, 1, 2, 3]);
        assert_eq!(attrs(&buf).count(), 0, "nla_len past the end");
        // An attribute of exactly its header is fine (empty value), and the walk goes on.
        let mut buf = 4u16.to_ne_bytes().to_vec();
        buf.extend_from_slice(&1u16.to_ne_bytes());
        buf.extend_from_slice(&8u16.to_ne_bytes());
        buf.extend_from_slice(&(2 | NLA_F_NESTED | NLA_F_NET_BYTEORDER).to_ne_bytes());
        buf.extend_from_slice(&[1, 2, 3, 4]);
        let got: Vec<_> = attrs(&buf).collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].ty, got[0].value.len()), (1, 0));
        assert_eq!(
            (got[1].ty, got[1].nested, got[1].u32_ne()),
            (2, true, Some(u32::from_ne_bytes([1, 2, 3, 4])))
        );
        assert_eq!((got[1].u32_be(), got[1].u16_be()), (Some(0x0102_0304), Some(0x0102)));
        // Short integer payloads read as nothing.
        assert_eq!((got[0].u32_ne(), got[0].u32_be(), got[0].u16_be()), (None, None, None));
    }

    #[test]
    fn ext_ack_survives_hostile_echo_lengths() {
        // The echoed request claims 0, a huge length, or u32::MAX.
        for claimed in [0u32, 3, 17, 10_000, u32::MAX] {
            let mut after = claimed.to_ne_bytes().to_vec();
            after.extend_from_slice(&[0; 12]);
            after.extend_from_slice(&9u16.to_ne_bytes());
            after.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
            after.extend_from_slice(b"hello");
            let _ = ext_ack(&after, NLM_F_ACK_TLVS);
        }
        assert_eq!(ext_ack(&[], NLM_F_ACK_TLVS), ExtAck::default());
        assert_eq!(ext_ack(&[1, 2], NLM_F_ACK_TLVS | NLM_F_CAPPED), ExtAck::default());
    }

    /// Every parser on every prefix of valid input and on pseudo-random bytes: no panic, and
    /// every walk ends.
    #[test]
    fn garbage_never_panics() {
        let offs = 1u32.to_ne_bytes();
        let mut valid = error_msg(
            1,
            libc::EINVAL,
            false,
            60,
            &[(NLMSGERR_ATTR_MSG, b"x\0"), (NLMSGERR_ATTR_OFFS, &offs)],
        );
        valid.extend(error_msg(2, 0, true, 20, &[]));
        let walk = |buf: &[u8]| {
            for m in messages(buf) {
                let _ = m.ack();
                for a in attrs(m.payload) {
                    let _ = (a.u32_ne(), a.c_str());
                    attrs(a.value).for_each(drop);
                }
                for flags in [0, NLM_F_ACK_TLVS, NLM_F_ACK_TLVS | NLM_F_CAPPED] {
                    let _ = parse_ack(m.payload, flags);
                    let _ = ext_ack(m.payload, flags);
                }
            }
            attrs(buf).for_each(drop);
            let _ = Header::parse(buf);
        };
        for end in 0..=valid.len() {
            walk(&valid[..end]);
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..512 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            walk(&junk);
            // Small lengths where the walk looks for them, to get past the first header.
            let mut j = junk.clone();
            if j.len() >= 20 {
                let n = j.len() as u32;
                j[..4].copy_from_slice(&n.to_ne_bytes());
                j[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
                j[6..8].copy_from_slice(&(NLM_F_ACK_TLVS | (x as u16 & NLM_F_CAPPED)).to_ne_bytes());
                walk(&j);
            }
        }
    }
}

/// Raw attributes for the tests of every reader, written by hand (independent of [`Builder`]).
#[cfg(test)]
pub(crate) mod testing {
    /// One netlink attribute, padded to 4 bytes.
    pub(crate) fn tlv(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }
}

#[cfg(test)]
mod fuzz {
    //! The readers of what the kernel sends back, fed arbitrary bytes (they must never panic)
    //! and well-formed `NLMSG_ERROR` payloads built the way the kernel lays them out (they must
    //! read back the errno, the message and the offset that were put in).

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::testing::tlv;
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn readers_never_panic(bytes in vec(any::<u8>(), 0..200), flags in any::<u16>()) {
            let _ = parse_ack(&bytes, flags);
            let _ = ext_ack(&bytes, flags);
            for m in messages(&bytes) {
                let _ = m.ack();
            }
            for a in attrs(&bytes) {
                let _ = (a.u32_ne(), a.c_str());
            }
        }

        #[test]
        fn parse_ack_reads_errno_message_and_offset(
            errno in 1i32..4096,
            capped in any::<bool>(),
            request in vec(any::<u8>(), 0..40),
            others in vec((3u16..8, vec(any::<u8>(), 0..12)), 0..3),
            text in proptest::option::of("[^\u{0}]{0,60}"),
            offset in proptest::option::of(any::<u32>()),
        ) {
            let mut payload = (-errno).to_ne_bytes().to_vec();
            payload.extend_from_slice(&((NLMSG_HDRLEN + request.len()) as u32).to_ne_bytes());
            payload.extend_from_slice(&[0; NLMSG_HDRLEN - 4]);
            if !capped {
                payload.extend_from_slice(&request);
                payload.resize(4 + (NLMSG_HDRLEN + request.len()).next_multiple_of(4), 0);
            }
            for (k, v) in &others {
                payload.extend_from_slice(&tlv(*k, v));
            }
            if let Some(t) = &text {
                let mut v = t.as_bytes().to_vec();
                v.push(0);
                payload.extend_from_slice(&tlv(NLMSGERR_ATTR_MSG, &v));
            }
            if let Some(o) = offset {
                payload.extend_from_slice(&tlv(NLMSGERR_ATTR_OFFS, &o.to_ne_bytes()));
            }
            let flags = NLM_F_ACK_TLVS | if capped { NLM_F_CAPPED } else { 0 };
            let ack = parse_ack(&payload, flags).expect("long enough for an errno");
            prop_assert_eq!(ack.errno, errno);
            prop_assert_eq!(ack.ext.message_lossy(), text);
            prop_assert_eq!(ack.ext.offset, offset);
        }

        #[test]
        fn an_ack_has_errno_zero(rest in vec(any::<u8>(), 0..40), flags in any::<u16>()) {
            let mut payload = 0i32.to_ne_bytes().to_vec();
            payload.extend_from_slice(&rest);
            prop_assert_eq!(parse_ack(&payload, flags).map(|a| a.errno), Some(0));
        }
    }

    /// `-code` overflows for i32::MIN (no errno is that large, but the bytes come from
    /// outside): the reader wraps instead of panicking.
    #[test]
    fn a_code_of_i32_min_is_read_without_panic() {
        assert!(parse_ack(&i32::MIN.to_ne_bytes(), 0).is_some());
        assert_eq!(parse_ack(&[1, 2, 3], 0), None);
    }
}
