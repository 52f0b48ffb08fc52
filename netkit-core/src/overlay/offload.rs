//! Segmentation and coalescing for the udp backend's offloads: what lets a user-space data
//! path move 64 KiB per system call instead of one packet.
//!
//! With `IFF_VNET_HDR` and `TUNSETOFFLOAD` the TUN device hands out TCP "super-packets" (one IP
//! header, up to 64 KiB of payload, a [`VnetHdr`] saying how to cut it) and takes them back.
//! Each UDP datagram of the overlay must carry one whole inner packet that fits the underlay,
//! so on the way out a super-packet is cut into MSS-sized TCP segments ([`segment_tcp`]) that
//! one `sendmsg` sends with `UDP_SEGMENT` (the kernel cuts the buffer into datagrams); on the
//! way in, `UDP_GRO` hands many datagrams in one buffer and consecutive segments of one TCP
//! flow are joined back into one super-packet ([`Coalescer`]) written to the TUN device with
//! one `write`. WireGuard's and Tailscale's user-space data paths work the same way.
//!
//! IPv4 only, as the udp backend.

/// `struct virtio_net_hdr` (10 bytes, little-endian as the TUN device uses it on x86 and arm).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM` (1): the checksum at `csum_start + csum_offset` holds only
    /// the pseudo-header sum and must be completed.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_NONE` (0), `_TCPV4` (1), `_UDP` (3), `_TCPV6` (4); `_ECN` (0x80).
    pub gso_type: u8,
    /// Length of the headers (IP + TCP).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed part starts.
    pub csum_start: u16,
    /// Where in it the checksum field is.
    pub csum_offset: u16,
}

/// The header's size.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO: a UDP payload to cut into datagrams of `gso_size`).
pub const GSO_UDP_L4: u8 = 5;
const GSO_ECN: u8 = 0x80;

impl VnetHdr {
    /// Read the header at the start of `b` (at least [`VNET_HDR_LEN`] bytes).
    pub fn read(b: &[u8]) -> VnetHdr {
        let u16le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16le(2),
            gso_size: u16le(4),
            csum_start: u16le(6),
            csum_offset: u16le(8),
        }
    }

    /// Write the header into the first [`VNET_HDR_LEN`] bytes of `b`.
    pub fn write(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }
}

/// The one's-complement sum of `data` (RFC 1071) added to `sum`, not folded.
pub fn sum16(data: &[u8], mut sum: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// Fold a sum to 16 bits.
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `data` (RFC 1071): what goes into an IPv4, ICMP, TCP or UDP header.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum16(data, 0))
}

/// The IPv4 pseudo-header sum for a TCP segment of `len` bytes (header and payload).
fn pseudo_sum(ip: &[u8], len: usize) -> u64 {
    let mut s = sum16(&ip[12..20], 0);
    s += 6; // protocol TCP
    s += len as u64;
    s
}

/// Complete a partial checksum (`NEEDS_CSUM`): sum from `start` to the end, the field at
/// `start + offset` already holding the pseudo-header sum.
pub fn finish_csum(pkt: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start + offset;
    if at + 2 > pkt.len() || start > pkt.len() {
        return false;
    }
    let c = checksum(&pkt[start..]);
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// The IPv4 header length and TCP header length of a TCP/IPv4 packet; `None` if it is not one.
fn tcp4_headers(pkt: &[u8]) -> Option<(usize, usize)> {
    if pkt.len() < 40 || pkt[0] >> 4 != 4 || pkt[9] != 6 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    if ihl < 20 || pkt.len() < ihl + 20 {
        return None;
    }
    let thl = usize::from(pkt[ihl + 12] >> 4) * 4;
    if thl < 20 || pkt.len() < ihl + thl {
        return None;
    }
    Some((ihl, thl))
}

/// Cut a TCP/IPv4 super-packet `pkt` into segments of `mss` payload bytes, written one after
/// the other into `out` (cleared first), each with its own IP header (total length, ID + i,
/// checksum) and TCP header (sequence number, FIN and PSH only on the last, CWR only on the
/// first, full checksum). Returns the size of each segment but the last (the `UDP_SEGMENT`
/// size) and the count; `None` when `pkt` is no TCP/IPv4 packet or `mss` is 0.
pub fn segment_tcp(pkt: &[u8], mss: usize, out: &mut Vec<u8>) -> Option<(usize, usize)> {
    let (ihl, thl) = tcp4_headers(pkt)?;
    if mss == 0 {
        return None;
    }
    let hdr = ihl + thl;
    let payload = &pkt[hdr..];
    out.clear();
    let id = u16::from_be_bytes([pkt[4], pkt[5]]);
    let seq = u32::from_be_bytes([pkt[ihl + 4], pkt[ihl + 5], pkt[ihl + 6], pkt[ihl + 7]]);
    let flags = pkt[ihl + 13];
    let n = payload.len().div_ceil(mss).max(1);
    for i in 0..n {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        let start = out.len();
        out.extend_from_slice(&pkt[..hdr]);
        out.extend_from_slice(chunk);
        let seg = &mut out[start..];
        let total = (hdr + chunk.len()) as u16;
        seg[2..4].copy_from_slice(&total.to_be_bytes());
        seg[4..6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
        seg[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&seg[..ihl]);
        seg[10..12].copy_from_slice(&c.to_be_bytes());
        let t = &mut seg[ihl..];
        t[4..8].copy_from_slice(&seq.wrapping_add((i * mss) as u32).to_be_bytes());
        let mut f = flags;
        if i + 1 < n {
            f &= !(0x01 | 0x08); // FIN, PSH: last segment only
        }
        if i > 0 {
            f &= !0x80; // CWR: first segment only
        }
        t[13] = f;
        t[16..18].copy_from_slice(&[0, 0]);
        let sum = pseudo_sum(seg, thl + chunk.len());
        let c = !fold(sum16(&seg[ihl..], sum));
        seg[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
    }
    Some((hdr + mss.min(payload.len().max(1)), n))
}

/// Cut a UDP/IPv4 super-packet `pkt` (USO: one UDP header, a payload to send as datagrams of
/// `size` bytes) into datagrams written one after the other into `out` (cleared first), each
/// with its own IP header (total length, ID + i, checksum) and UDP header (length, checksum).
/// Returns the size of each datagram but the last and the count; `None` when `pkt` is no
/// UDP/IPv4 packet or `size` is 0.
pub fn segment_udp(pkt: &[u8], size: usize, out: &mut Vec<u8>) -> Option<(usize, usize)> {
    if pkt.len() < 28 || pkt[0] >> 4 != 4 || pkt[9] != 17 || size == 0 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    if ihl < 20 || pkt.len() < ihl + 8 {
        return None;
    }
    let hdr = ihl + 8;
    let payload = &pkt[hdr..];
    out.clear();
    let id = u16::from_be_bytes([pkt[4], pkt[5]]);
    let n = payload.len().div_ceil(size).max(1);
    for i in 0..n {
        let chunk = &payload[(i * size).min(payload.len())..((i + 1) * size).min(payload.len())];
        let start = out.len();
        out.extend_from_slice(&pkt[..hdr]);
        out.extend_from_slice(chunk);
        let d = &mut out[start..];
        d[2..4].copy_from_slice(&((hdr + chunk.len()) as u16).to_be_bytes());
        d[4..6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
        d[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&d[..ihl]);
        d[10..12].copy_from_slice(&c.to_be_bytes());
        let ulen = (8 + chunk.len()) as u16;
        d[ihl + 4..ihl + 6].copy_from_slice(&ulen.to_be_bytes());
        d[ihl + 6..ihl + 8].copy_from_slice(&[0, 0]);
        let mut sum = sum16(&d[12..20], 0) + 17 + u64::from(ulen);
        sum = sum16(&d[ihl..], sum);
        let c = match !fold(sum) {
            0 => 0xffff, // UDP sends a computed zero as all ones
            c => c,
        };
        d[ihl + 6..ihl + 8].copy_from_slice(&c.to_be_bytes());
    }
    Some((hdr + size.min(payload.len().max(1)), n))
}

/// Joins consecutive TCP/IPv4 segments of one flow into super-packets for the TUN device (see
/// the [module docs](self)). Feed packets with [`Coalescer::push`]; it calls the writer with
/// each finished packet (a [`VnetHdr`] and the bytes after it are in the buffer it passes).
pub struct Coalescer {
    buf: Vec<u8>,
    /// The pending super-packet: (IP header length, TCP header length, MSS, next sequence
    /// number, segments) when `buf` holds one.
    pending: Option<Pending>,
    max: usize,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    ihl: usize,
    thl: usize,
    mss: usize,
    next_seq: u32,
    segments: usize,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl Coalescer {
    /// An empty coalescer (super-packets of at most 64 KiB − 1).
    pub fn new() -> Self {
        Coalescer {
            buf: Vec::with_capacity(VNET_HDR_LEN + 65535),
            pending: None,
            max: 65535,
        }
    }

    /// Take `pkt` (one inner packet). When it cannot join the pending super-packet, the pending
    /// one goes to `write` first. A packet that is no plain TCP segment goes to `write` as it
    /// is (with an empty header).
    pub fn push(&mut self, pkt: &[u8], write: &mut impl FnMut(&[u8])) {
        if let Some(p) = self.pending {
            if self.joins(&p, pkt) {
                let hdr = p.ihl + p.thl;
                let payload = &pkt[hdr..];
                self.buf.extend_from_slice(payload);
                let flags = pkt[p.ihl + 13];
                let at = VNET_HDR_LEN + p.ihl + 13;
                self.buf[at] |= flags & 0x08; // PSH of the last segment
                self.pending = Some(Pending {
                    next_seq: p.next_seq.wrapping_add(payload.len() as u32),
                    segments: p.segments + 1,
                    ..p
                });
                // A segment shorter than the MSS ends the train.
                if payload.len() < p.mss {
                    self.flush(write);
                }
                return;
            }
            self.flush(write);
        }
        match tcp4_headers(pkt) {
            Some((ihl, thl))
                if pkt.len() > ihl + thl
                    && usize::from(u16::from_be_bytes([pkt[2], pkt[3]])) == pkt.len()
                    && pkt[6] & 0x3f == 0 && pkt[7] == 0 // not a fragment
                    && pkt[ihl + 13] & !(0x10 | 0x08) == 0 =>
            {
                // A data segment with ACK (and maybe PSH) only: it may start a train.
                let mss = pkt.len() - ihl - thl;
                let seq = u32::from_be_bytes([pkt[ihl + 4], pkt[ihl + 5], pkt[ihl + 6], pkt[ihl + 7]]);
                self.buf.clear();
                self.buf.resize(VNET_HDR_LEN, 0);
                self.buf.extend_from_slice(pkt);
                self.pending = Some(Pending {
                    ihl,
                    thl,
                    mss,
                    next_seq: seq.wrapping_add(mss as u32),
                    segments: 1,
                });
                if pkt[ihl + 13] & 0x08 != 0 {
                    self.flush(write);
                }
            }
            _ => {
                self.buf.clear();
                self.buf.resize(VNET_HDR_LEN, 0);
                self.buf.extend_from_slice(pkt);
                write(&self.buf);
            }
        }
    }

    /// Whether `pkt` continues the pending train: same addresses, ports and header bytes but
    /// sequence number, length, ID and checksums; the next sequence number; ACK (and PSH) only;
    /// no longer than the MSS; room left.
    fn joins(&self, p: &Pending, pkt: &[u8]) -> bool {
        let Some((ihl, thl)) = tcp4_headers(pkt) else {
            return false;
        };
        if ihl != p.ihl || thl != p.thl || p.segments >= 64 {
            return false;
        }
        let payload = pkt.len() - ihl - thl;
        if payload == 0 || payload > p.mss || self.buf.len() + payload > VNET_HDR_LEN + self.max {
            return false;
        }
        if usize::from(u16::from_be_bytes([pkt[2], pkt[3]])) != pkt.len() || pkt[6] & 0x3f != 0 || pkt[7] != 0 {
            return false;
        }
        let first = &self.buf[VNET_HDR_LEN..];
        // IP: version/IHL/TOS, flags, TTL, protocol, addresses equal.
        if pkt[0..2] != first[0..2] || pkt[6] != first[6] || pkt[8..10] != first[8..10] || pkt[12..20] != first[12..20]
        {
            return false;
        }
        let (t, ft) = (&pkt[ihl..], &first[ihl..]);
        // Ports, ACK number, window, options equal; the next sequence number; ACK|PSH only.
        t[0..4] == ft[0..4]
            && t[8..12] == ft[8..12]
            && t[14..16] == ft[14..16]
            && t[20..thl] == ft[20..thl]
            && u32::from_be_bytes([t[4], t[5], t[6], t[7]]) == p.next_seq
            && t[13] & !(0x10 | 0x08) == 0
    }

    /// Write the pending packet (a super-packet with its header, or the lone segment).
    pub fn flush(&mut self, write: &mut impl FnMut(&[u8])) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let total = self.buf.len() - VNET_HDR_LEN;
        let ip = &mut self.buf[VNET_HDR_LEN..];
        if p.segments > 1 {
            ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            ip[10..12].copy_from_slice(&[0, 0]);
            let c = checksum(&ip[..p.ihl]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            // The TCP checksum holds the pseudo-header sum: the kernel completes it.
            let ps = fold(pseudo_sum(ip, total - p.ihl));
            ip[p.ihl + 16..p.ihl + 18].copy_from_slice(&ps.to_be_bytes());
            let ecn = if ip[p.ihl + 13] & 0x40 != 0 { GSO_ECN } else { 0 };
            VnetHdr {
                flags: NEEDS_CSUM,
                gso_type: GSO_TCPV4 | ecn,
                hdr_len: (p.ihl + p.thl) as u16,
                gso_size: p.mss as u16,
                csum_start: p.ihl as u16,
                csum_offset: 16,
            }
            .write(&mut self.buf);
        } else {
            VnetHdr::default().write(&mut self.buf);
        }
        write(&self.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/IPv4 packet 10.0.0.1:1000 → 10.0.0.2:2000 with `payload`, seq, flags, valid
    /// checksums.
    fn tcp(payload: &[u8], seq: u32, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&7u16.to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&1000u16.to_be_bytes());
        p[22..24].copy_from_slice(&2000u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&99u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&64000u16.to_be_bytes());
        p.extend_from_slice(payload);
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let c = !fold(sum16(&p[20..], pseudo_sum(&p, 20 + payload.len())));
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn valid(p: &[u8]) -> bool {
        let (ihl, _) = tcp4_headers(p).unwrap();
        checksum(&p[..ihl]) == 0 && fold(sum16(&p[ihl..], pseudo_sum(p, p.len() - ihl))) == 0xffff
    }

    #[test]
    fn checksum_of_rfc1071_example_and_odd_lengths() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is its complement.
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
        // An odd last byte counts as its high half.
        assert_eq!(checksum(&[0x12]), !0x1200);
        // A header with its checksum in place sums to zero.
        let mut h = [0x45u8, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn a_super_packet_cut_into_valid_segments() {
        let data: Vec<u8> = (0..3500u32).map(|i| i as u8).collect();
        let sup = tcp(&data, 5000, 0x18 | 0x01); // ACK PSH FIN
        let mut out = Vec::new();
        let (size, n) = segment_tcp(&sup, 1448, &mut out).unwrap();
        assert_eq!((size, n), (40 + 1448, 3));
        let segs: Vec<&[u8]> = vec![&out[..size], &out[size..2 * size], &out[2 * size..]];
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(valid(s), "segment {i} checksums");
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 5000 + 1448 * i as u32);
            assert_eq!(u16::from_be_bytes([s[2], s[3]]) as usize, s.len());
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), 7 + i as u16);
            let last = i == 2;
            assert_eq!(s[33] & 0x09 != 0, last, "FIN/PSH on the last only");
            joined.extend_from_slice(&s[40..]);
        }
        assert_eq!(joined, data);
        assert!(segment_tcp(&sup[..30], 1448, &mut out).is_none());
    }

    #[test]
    fn a_udp_super_packet_cut_into_valid_datagrams() {
        let data: Vec<u8> = (0..2500u32).map(|i| (i * 3) as u8).collect();
        let mut sup = vec![0u8; 28];
        sup[0] = 0x45;
        sup[2..4].copy_from_slice(&((28 + data.len()) as u16).to_be_bytes());
        sup[8] = 64;
        sup[9] = 17;
        sup[12..16].copy_from_slice(&[10, 0, 0, 1]);
        sup[16..20].copy_from_slice(&[10, 0, 0, 2]);
        sup[20..22].copy_from_slice(&5000u16.to_be_bytes());
        sup[22..24].copy_from_slice(&6000u16.to_be_bytes());
        sup.extend_from_slice(&data);
        let mut out = Vec::new();
        let (size, n) = segment_udp(&sup, 1000, &mut out).unwrap();
        assert_eq!((size, n), (1028, 3));
        let mut joined = Vec::new();
        let mut off = 0;
        for i in 0..n {
            let len = if i + 1 < n { size } else { out.len() - off };
            let d = &out[off..off + len];
            assert_eq!(checksum(&d[..20]), 0, "datagram {i}: IP checksum");
            let ulen = u16::from_be_bytes([d[24], d[25]]);
            assert_eq!(usize::from(ulen), len - 20);
            let sum = sum16(&d[20..], sum16(&d[12..20], 0) + 17 + u64::from(ulen));
            assert_eq!(fold(sum), 0xffff, "datagram {i}: UDP checksum");
            joined.extend_from_slice(&d[28..]);
            off += len;
        }
        assert_eq!(joined, data);
        assert!(segment_udp(&sup[..20], 1000, &mut out).is_none());
    }

    #[test]
    fn a_train_of_segments_joined_into_one_super_packet() {
        let data: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
        let sup = tcp(&data, 1, 0x18);
        let mut segs = Vec::new();
        let (size, _) = segment_tcp(&sup, 1000, &mut segs).unwrap();
        let mut c = Coalescer::new();
        let mut written: Vec<Vec<u8>> = Vec::new();
        for s in segs.chunks(size) {
            c.push(s, &mut |b| written.push(b.to_vec()));
        }
        c.flush(&mut |b| written.push(b.to_vec()));
        assert_eq!(written.len(), 1, "one super-packet");
        let w = &written[0];
        let h = VnetHdr::read(w);
        assert_eq!(
            (h.flags, h.gso_type, h.gso_size, h.hdr_len, h.csum_start, h.csum_offset),
            (1, 1, 1000, 40, 20, 16)
        );
        let ip = &w[VNET_HDR_LEN..];
        assert_eq!(&ip[40..], &data[..]);
        assert_eq!(checksum(&ip[..20]), 0);
        // Completing the partial checksum gives the checksum of the whole segment.
        let mut full = ip.to_vec();
        assert!(finish_csum(&mut full, 20, 16));
        assert!(valid(&full));
        // A gap, another flow or a SYN ends the train.
        let mut written = Vec::new();
        let a = tcp(&[1; 100], 1, 0x10);
        let gap = tcp(&[2; 100], 500, 0x10);
        let syn = tcp(&[], 9, 0x02);
        for p in [&a, &gap, &syn] {
            c.push(p, &mut |b| written.push(b.to_vec()));
        }
        c.flush(&mut |b| written.push(b.to_vec()));
        assert_eq!(written.len(), 3);
        assert!(written.iter().all(|w| VnetHdr::read(w).gso_type == GSO_NONE));
        assert_eq!(&written[2][VNET_HDR_LEN..], &syn[..]);
    }
}
