//! ICMP echo from inside a namespace, in this process: a raw socket made on a thread inside the
//! namespace (a socket keeps the namespace it was made in) and then used from any thread. For
//! timing *when* an address becomes reachable — a new node's pods, say — without starting a
//! `ping` process per try: [`Pinger::first_reply`] sends an echo request every few
//! milliseconds and returns the instant the first reply arrived.
//!
//! Also the Internet checksum ([`checksum`], RFC 1071) that hand-made IPv4 and ICMP headers need.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use netkit_core::NetNs;

/// The Internet checksum (RFC 1071), netkit-core's (the udp backend's data path uses it).
pub use netkit_core::overlay::offload::checksum;

/// A raw ICMP socket inside one namespace, sending echo requests with an identifier of its
/// own (see the [module docs](self)). Needs `CAP_NET_RAW`.
#[derive(Debug)]
pub struct Pinger {
    fd: OwnedFd,
    id: u16,
    seq: u16,
}

impl Pinger {
    /// A pinger whose packets leave from inside `ns`.
    pub fn new(ns: &NetNs) -> io::Result<Pinger> {
        let fd = ns
            .run(|| {
                // SAFETY: plain socket(2); the descriptor is owned by an OwnedFd at once.
                let fd =
                    unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            })
            .map_err(io::Error::other)??;
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let id = (std::process::id() as u16) ^ NEXT.fetch_add(0x101, Ordering::Relaxed);
        Ok(Pinger { fd, id, seq: 0 })
    }

    /// Send an echo request to `dst` every `every` until a reply from `dst` to one of them
    /// arrives: the instant it was read. `None` when none came within `within`, or when
    /// `stop()` said to give up (it is asked between two sends).
    pub fn first_reply(
        &mut self,
        dst: Ipv4Addr,
        every: Duration,
        within: Duration,
        stop: impl Fn() -> bool,
    ) -> Option<Instant> {
        let end = Instant::now() + within;
        // Replies to the requests of an earlier call are not this call's.
        let first_seq = self.seq;
        let mut next_send = Instant::now();
        loop {
            let now = Instant::now();
            if now >= end || stop() {
                return None;
            }
            if now >= next_send {
                // A failed send (no route yet, say) is one more try that got no answer.
                let _ = self.send(dst);
                next_send = now + every;
            }
            let wait = next_send.min(end).saturating_duration_since(Instant::now());
            if let Some(t) = self.recv_reply(dst, first_seq, wait) {
                return Some(t);
            }
        }
    }

    fn send(&mut self, dst: Ipv4Addr) -> io::Result<()> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut pkt = [0u8; 16];
        pkt[0] = 8; // echo request, code 0
        pkt[4..6].copy_from_slice(&self.id.to_be_bytes());
        pkt[6..8].copy_from_slice(&seq.to_be_bytes());
        pkt[8..16].copy_from_slice(b"netkit!!");
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        // SAFETY: an all-zero sockaddr_in is valid; family and address are set below.
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as libc::sa_family_t;
        to.sin_addr.s_addr = u32::from(dst).to_be();
        // SAFETY: `pkt` and `to` are valid for the lengths given; the descriptor is ours.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                libc::MSG_DONTWAIT,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `wait` for an echo reply from `dst` to one of our requests numbered from
    /// `first_seq` on; other packets are skipped.
    fn recv_reply(&self, dst: Ipv4Addr, first_seq: u16, wait: Duration) -> Option<Instant> {
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
            if ready <= 0 {
                return None;
            }
            let mut buf = [0u8; 1500];
            // SAFETY: `buf` is valid for its length; the descriptor is ours.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            let at = Instant::now();
            if n > 0 && self.is_reply(&buf[..n as usize], dst, first_seq) {
                return Some(at);
            }
            if Instant::now() >= end {
                return None;
            }
        }
    }

    /// An IPv4 packet (a raw socket reads the IP header too) carrying an echo reply from `dst`
    /// with our identifier and a sequence number of this call.
    fn is_reply(&self, pkt: &[u8], dst: Ipv4Addr, first_seq: u16) -> bool {
        let Some(&vihl) = pkt.first() else { return false };
        let ihl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || pkt.len() < ihl + 8 || pkt.len() < 20 {
            return false;
        }
        let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
        let icmp = &pkt[ihl..];
        let id = u16::from_be_bytes([icmp[4], icmp[5]]);
        let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
        src == dst
            && icmp[0] == 0
            && icmp[1] == 0
            && id == self.id
            && seq.wrapping_sub(first_seq) < self.seq.wrapping_sub(first_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pinger_times_a_reply_and_gives_up_without_one() {
        let t = crate::TestNs::new("icmp").await;
        let mut p = Pinger::new(&t.ns).unwrap();
        let before = Instant::now();
        let at = p.first_reply(
            Ipv4Addr::LOCALHOST,
            Duration::from_millis(10),
            Duration::from_secs(5),
            || false,
        );
        assert!(at.is_some_and(|at| at >= before), "loopback answers");
        // Nobody has 192.0.2.1 (no route at all): no reply, and the call ends on time.
        let t0 = Instant::now();
        let none = p.first_reply(
            Ipv4Addr::new(192, 0, 2, 1),
            Duration::from_millis(10),
            Duration::from_millis(200),
            || false,
        );
        assert_eq!(none, None);
        assert!(t0.elapsed() < Duration::from_secs(2));
        // `stop` ends it at once.
        assert_eq!(
            p.first_reply(
                Ipv4Addr::new(192, 0, 2, 1),
                Duration::from_millis(10),
                Duration::from_secs(60),
                || true
            ),
            None
        );
    }
}
