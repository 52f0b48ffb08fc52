//! The udp backend's data path: a TUN device (`flannel0`) and user-space encapsulation of each
//! IP packet in one UDP datagram to the peer node's port 8285, as Flannel's udp backend does,
//! but with a queue per core and batched system calls.
//!
//! * The TUN device is multi-queue; each queue has its own pair of threads and its own UDP
//!   socket bound with `SO_REUSEPORT` to the backend's port, so the kernel spreads both
//!   directions over the cores by flow.
//! * Sending (TUN → UDP): the thread waits for the TUN queue, reads every packet already queued
//!   (up to [`BATCH`]) into preallocated buffers, looks each destination up in the peer table
//!   (a hash of node subnets) and sends them all with one `sendmmsg`.
//! * Receiving (UDP → TUN): one `recvmmsg` takes up to [`BATCH`] datagrams; each, from a known
//!   peer's address, is written to the TUN queue (TUN takes one packet per `write`).
//! * Nothing is allocated per packet: each thread owns its buffers.
//! * [`UdpBackendConfig::single`](super::UdpBackendConfig::single) makes it move one packet
//!   per system call each way (Flannel's own design), to measure what batching is worth.
//!
//! * Offloads, where the kernel has them (see [`super::offload`]): the TUN queues carry a
//!   virtio-net header and hand out TCP and UDP super-packets (`TUNSETOFFLOAD` TSO4, USO4),
//!   which are cut into MTU-sized segments or datagrams in user space and sent with one
//!   `sendmsg` each (`UDP_SEGMENT`);
//!   the sockets receive with `UDP_GRO`, and consecutive segments of one TCP flow are joined
//!   back into a super-packet for one `write` to the TUN device. Without them (an older
//!   kernel), packets move one MTU each, batched as above.
//!
//! The threads stop when the data path is dropped with the agent's backend (an eventfd wakes
//! them).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use ipnetwork::Ipv4Network;

use super::offload::{
    finish_csum, segment_tcp, segment_udp, Coalescer, VnetHdr, GSO_NONE, GSO_TCPV4, GSO_UDP_L4, NEEDS_CSUM,
    VNET_HDR_LEN,
};

/// Packets moved per system call at most.
pub const BATCH: usize = 64;
/// Room for one packet (the largest IPv4 packet a TUN of MTU ≤ 65535 gives).
const BUF: usize = 65536;

/// The peers as the data path sees them: node subnet → the node's UDP endpoint. All subnets
/// of a cluster have one prefix length, so a lookup is one masked hash probe.
#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    prefix: u8,
    by_subnet: HashMap<u32, SocketAddrV4>,
    /// Underlay addresses datagrams are accepted from.
    senders: HashMap<Ipv4Addr, ()>,
}

impl PeerTable {
    fn lookup(&self, dst: Ipv4Addr) -> Option<SocketAddrV4> {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        self.by_subnet.get(&(u32::from(dst) & mask)).copied()
    }
}

/// Counters of one data path (all queues).
#[derive(Debug, Default)]
pub struct UdpCounters {
    /// Packets read from the TUN device and sent.
    pub tx_packets: AtomicU64,
    /// Packets read from the TUN device for which no peer is known (dropped).
    pub tx_no_peer: AtomicU64,
    /// Datagrams received and written to the TUN device.
    pub rx_packets: AtomicU64,
    /// Datagrams from an address that is no peer's (dropped).
    pub rx_unknown: AtomicU64,
    /// System calls that moved packets (reads, writes, sends, receives).
    pub syscalls: AtomicU64,
    /// TCP super-packets read from the TUN device and cut into segments (TSO).
    pub tso_cut: AtomicU64,
    /// UDP super-packets read from the TUN device and cut into datagrams (USO).
    pub uso_cut: AtomicU64,
    /// Whether the TUN device accepted USO (Linux 6.2+).
    pub uso: std::sync::atomic::AtomicBool,
}

/// The running data path (threads stop on drop).
pub(crate) struct DataPath {
    peers: Arc<RwLock<PeerTable>>,
    counters: Arc<UdpCounters>,
    stop: OwnedFd,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPath")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl DataPath {
    /// Start two threads per queue: each `(tun, udp)` pair is one TUN queue and one UDP
    /// socket bound to the backend's port (made in the node's namespace). `single`: one
    /// packet per system call.
    /// `offload`: the TUN queues were opened with a virtio-net header (and the data path then
    /// tries TSO on them and GSO/GRO on the sockets).
    pub(crate) fn start(
        queues: Vec<(OwnedFd, OwnedFd)>,
        prefix: u8,
        single: bool,
        offload: bool,
    ) -> io::Result<DataPath> {
        // SAFETY: eventfd(2) with valid flags; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor this code owns alone.
        let stop = unsafe { OwnedFd::from_raw_fd(efd) };
        let peers = Arc::new(RwLock::new(PeerTable {
            prefix,
            ..Default::default()
        }));
        let counters = Arc::new(UdpCounters::default());
        let mut threads = Vec::new();
        for (q, (tun, udp)) in queues.into_iter().enumerate() {
            set_nonblocking(tun.as_raw_fd())?;
            set_nonblocking(udp.as_raw_fd())?;
            if offload {
                use crate::link::tun_offload::{CSUM, TSO4, TSO_ECN, USO4, USO6};
                // USO needs Linux 6.2, and the kernel takes USO4 only with USO6 (no IPv6 is
                // routed to the device); refused altogether (an older kernel still), the header
                // stays and packets come unsegmented.
                if crate::link::tun_set_offload(&tun, CSUM | TSO4 | TSO_ECN | USO4 | USO6).is_ok() {
                    counters.uso.store(true, Ordering::Relaxed);
                } else {
                    let _ = crate::link::tun_set_offload(&tun, CSUM | TSO4 | TSO_ECN);
                }
                let one: libc::c_int = 1;
                // SAFETY: setsockopt with a live c_int; failure leaves GRO off.
                unsafe {
                    libc::setsockopt(
                        udp.as_raw_fd(),
                        libc::SOL_UDP,
                        UDP_GRO,
                        (&one as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
            }
            let (tun, udp) = (Arc::new(tun), Arc::new(udp));
            let ctx = Ctx {
                tun: tun.clone(),
                udp: udp.clone(),
                stop: stop.as_raw_fd(),
                peers: peers.clone(),
                counters: counters.clone(),
                single,
                offload,
            };
            let ctx2 = ctx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("netkit-udp-tx{q}"))
                    .spawn(move || ctx.send_loop())?,
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("netkit-udp-rx{q}"))
                    .spawn(move || ctx2.recv_loop())?,
            );
        }
        Ok(DataPath {
            peers,
            counters,
            stop,
            threads,
        })
    }

    /// Send to `subnet`'s node at `endpoint` from now on.
    pub(crate) fn set_peer(&self, subnet: Ipv4Network, endpoint: SocketAddrV4) {
        let mut t = self.peers.write().unwrap_or_else(|p| p.into_inner());
        t.by_subnet.insert(u32::from(subnet.network()), endpoint);
        let senders: HashMap<Ipv4Addr, ()> = t.by_subnet.values().map(|e| (*e.ip(), ())).collect();
        t.senders = senders;
    }

    /// Forget `subnet`'s node.
    pub(crate) fn remove_peer(&self, subnet: Ipv4Network) {
        let mut t = self.peers.write().unwrap_or_else(|p| p.into_inner());
        t.by_subnet.remove(&u32::from(subnet.network()));
        let senders: HashMap<Ipv4Addr, ()> = t.by_subnet.values().map(|e| (*e.ip(), ())).collect();
        t.senders = senders;
    }

    /// The counters.
    pub(crate) fn counters(&self) -> &UdpCounters {
        &self.counters
    }
}

impl Drop for DataPath {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What each thread of a queue shares.
#[derive(Clone)]
struct Ctx {
    tun: Arc<OwnedFd>,
    udp: Arc<OwnedFd>,
    stop: RawFd,
    peers: Arc<RwLock<PeerTable>>,
    counters: Arc<UdpCounters>,
    single: bool,
    offload: bool,
}

/// `UDP_SEGMENT` and `UDP_GRO` (linux/udp.h).
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// The largest UDP payload one `UDP_SEGMENT` send may carry (the IP length limit, with room).
const GSO_MAX: usize = 65000;

impl Ctx {
    /// Wait until `fd` is readable (true) or the data path stops (false).
    fn wait(&self, fd: RawFd) -> bool {
        let mut fds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: two valid pollfd structs, length 2.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return false;
            }
            if fds[1].revents != 0 {
                return false;
            }
            if fds[0].revents != 0 {
                return true;
            }
        }
    }

    /// TUN → UDP.
    fn send_loop(self) {
        if self.offload {
            return self.send_offload();
        }
        let mut bufs = vec![[0u8; BUF]; if self.single { 1 } else { BATCH }];
        let mut lens = [0usize; BATCH];
        let mut dests: Vec<libc::sockaddr_in> = vec![sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); BATCH];
        let tun = self.tun.as_raw_fd();
        let udp = self.udp.as_raw_fd();
        while self.wait(tun) {
            // Read what is queued, up to the batch.
            let mut n = 0;
            while n < bufs.len() {
                // SAFETY: reading into a live buffer of BUF bytes.
                let r = unsafe { libc::read(tun, bufs[n].as_mut_ptr().cast(), BUF) };
                if r <= 0 {
                    break;
                }
                self.counters.syscalls.fetch_add(1, Ordering::Relaxed);
                lens[n] = r as usize;
                n += 1;
            }
            if n == 0 {
                continue;
            }
            // Look the destinations up; packets without a peer are dropped (compacted out).
            let mut out = 0;
            {
                let peers = self.peers.read().unwrap_or_else(|p| p.into_inner());
                for i in 0..n {
                    let pkt = &bufs[i][..lens[i]];
                    let Some(dst) = ipv4_dst(pkt).and_then(|d| peers.lookup(d)) else {
                        self.counters.tx_no_peer.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if out != i {
                        let (a, b) = bufs.split_at_mut(i);
                        a[out][..lens[i]].copy_from_slice(&b[0][..lens[i]]);
                        lens[out] = lens[i];
                    }
                    dests[out] = sockaddr_in(dst);
                    out += 1;
                }
            }
            self.send(udp, &bufs, &lens[..out], &dests[..out]);
        }
    }

    /// Send `lens.len()` packets with one `sendmmsg` (one `sendto` each when single).
    fn send(&self, udp: RawFd, bufs: &[[u8; BUF]], lens: &[usize], dests: &[libc::sockaddr_in]) {
        let n = lens.len();
        if n == 0 {
            return;
        }
        let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: an all-zero mmsghdr is a valid empty header.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..n {
            iovs[i] = libc::iovec {
                iov_base: bufs[i].as_ptr() as *mut libc::c_void,
                iov_len: lens[i],
            };
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &dests[i] as *const libc::sockaddr_in as *mut libc::c_void;
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: msgs[sent..n] point at live iovecs, buffers and addresses of this frame.
            let r = unsafe { libc::sendmmsg(udp, msgs[sent..].as_mut_ptr(), (n - sent) as libc::c_uint, 0) };
            self.counters.syscalls.fetch_add(1, Ordering::Relaxed);
            if r <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock && self.wait_writable(udp) {
                    continue;
                }
                break; // a full socket buffer or an unreachable peer: drop the rest, as IP may
            }
            sent += r as usize;
        }
        self.counters.tx_packets.fetch_add(sent as u64, Ordering::Relaxed);
    }

    fn wait_writable(&self, fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 100) > 0 }
    }

    /// UDP → TUN.
    fn recv_loop(self) {
        if self.offload {
            return self.recv_offload();
        }
        let batch = if self.single { 1 } else { BATCH };
        let mut bufs = vec![[0u8; BUF]; batch];
        let tun = self.tun.as_raw_fd();
        let udp = self.udp.as_raw_fd();
        // SAFETY: all-zero sockaddr_in, iovec and mmsghdr values are valid; pointers are set below.
        let mut froms: Vec<libc::sockaddr_in> = vec![unsafe { std::mem::zeroed() }; batch];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: BUF,
            })
            .collect();
        // SAFETY: as above.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; batch];
        while self.wait(udp) {
            for i in 0..batch {
                msgs[i].msg_hdr.msg_iov = &mut iovs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_name = (&mut froms[i] as *mut libc::sockaddr_in).cast();
                msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                msgs[i].msg_len = 0;
            }
            loop {
                // SAFETY: `batch` headers pointing at live buffers and addresses.
                let r =
                    unsafe { libc::recvmmsg(udp, msgs.as_mut_ptr(), batch as libc::c_uint, 0, std::ptr::null_mut()) };
                if r <= 0 {
                    break;
                }
                self.counters.syscalls.fetch_add(1, Ordering::Relaxed);
                let peers = self.peers.read().unwrap_or_else(|p| p.into_inner());
                for i in 0..r as usize {
                    let from = Ipv4Addr::from(u32::from_be(froms[i].sin_addr.s_addr));
                    if !peers.senders.contains_key(&from) {
                        self.counters.rx_unknown.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let len = msgs[i].msg_len as usize;
                    // SAFETY: writing `len` received bytes from a live buffer.
                    let w = unsafe { libc::write(tun, bufs[i].as_ptr().cast(), len) };
                    self.counters.syscalls.fetch_add(1, Ordering::Relaxed);
                    if w > 0 {
                        self.counters.rx_packets.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(peers);
                for m in msgs.iter_mut().take(r as usize) {
                    m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                }
                if (r as usize) < batch {
                    break;
                }
            }
        }
    }
}

impl Ctx {
    /// TUN → UDP with a virtio-net header on the TUN queue: super-packets are cut into
    /// segments and sent with `UDP_SEGMENT`, up to [`BATCH`] reads per `sendmmsg`.
    fn send_offload(self) {
        let tun = self.tun.as_raw_fd();
        let udp = self.udp.as_raw_fd();
        let mut rbuf = vec![0u8; VNET_HDR_LEN + BUF];
        let mut slots: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(2 * BUF)).collect();
        // One read may need two sends (a super-packet larger than GSO_MAX once cut).
        let mut metas: Vec<Meta> = Vec::with_capacity(2 * BATCH);
        let mut gso_ok = true;
        while self.wait(tun) {
            metas.clear();
            let mut used = 0;
            while used < BATCH {
                // SAFETY: reading into a live buffer of its length.
                let r = unsafe { libc::read(tun, rbuf.as_mut_ptr().cast(), rbuf.len()) };
                if r <= VNET_HDR_LEN as isize {
                    break;
                }
                self.counters.syscalls.fetch_add(1, Ordering::Relaxed);
                let hdr = VnetHdr::read(&rbuf);
                let pkt = &mut rbuf[VNET_HDR_LEN..r as usize];
                let dst = {
                    let peers = self.peers.read().unwrap_or_else(|p| p.into_inner());
                    ipv4_dst(pkt).and_then(|d| peers.lookup(d))
                };
                let Some(dst) = dst else {
                    self.counters.tx_no_peer.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let slot = &mut slots[used];
                slot.clear();
                match hdr.gso_type & 0x7f {
                    GSO_NONE => {
                        if hdr.flags & NEEDS_CSUM != 0
                            && !finish_csum(pkt, usize::from(hdr.csum_start), usize::from(hdr.csum_offset))
                        {
                            continue;
                        }
                        slot.extend_from_slice(pkt);
                        metas.push(Meta {
                            slot: used,
                            start: 0,
                            len: slot.len(),
                            gso: 0,
                            dst,
                        });
                    }
                    GSO_TCPV4 | GSO_UDP_L4 => {
                        let tcp = hdr.gso_type & 0x7f == GSO_TCPV4;
                        let (cut, cuts): (Cut, _) = if tcp {
                            (segment_tcp, &self.counters.tso_cut)
                        } else {
                            (segment_udp, &self.counters.uso_cut)
                        };
                        cuts.fetch_add(1, Ordering::Relaxed);
                        let Some((size, n)) = cut(pkt, usize::from(hdr.gso_size), slot) else {
                            continue;
                        };
                        let per_send = if gso_ok { (GSO_MAX / size).clamp(1, 64) } else { 1 };
                        let total = slot.len();
                        let mut off = 0;
                        while off < total {
                            let len = (per_send * size).min(total - off);
                            let gso = if len > size { size as u16 } else { 0 };
                            metas.push(Meta {
                                slot: used,
                                start: off,
                                len,
                                gso,
                                dst,
                            });
                            off += len;
                        }
                        self.counters.tx_packets.fetch_add(n as u64 - 1, Ordering::Relaxed);
                    }
                    _ => continue, // IPv6 super-packets: the backend carries IPv4 only
                }
                used += 1;
            }
            if !metas.is_empty() && !self.send_metas(udp, &slots, &metas) {
                // The kernel refused UDP_SEGMENT: one datagram per segment from now on.
                gso_ok = false;
            }
        }
    }

    /// Send `metas` with `sendmmsg`, `UDP_SEGMENT` where set; false when GSO was refused.
    fn send_metas(&self, udp: RawFd, slots: &[Vec<u8>], metas: &[Meta]) -> bool {
        let n = metas.len();
        let space = cmsg_space(std::mem::size_of::<u16>());
        let mut ctrl = vec![0u8; n * space];
        let mut iovs: Vec<libc::iovec> = Vec::with_capacity(n);
        let mut addrs: Vec<libc::sockaddr_in> = Vec::with_capacity(n);
        for m in metas {
            iovs.push(libc::iovec {
                iov_base: slots[m.slot][m.start..].as_ptr() as *mut libc::c_void,
                iov_len: m.len,
            });
            addrs.push(sockaddr_in(m.dst));
        }
        // SAFETY: all-zero headers are valid; every pointer set below stays live for the call.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; n];
        for (i, m) in metas.iter().enumerate() {
            let h = &mut msgs[i].msg_hdr;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if m.gso > 0 {
                h.msg_control = ctrl[i * space..].as_mut_ptr().cast();
                h.msg_controllen = space as _;
                // SAFETY: the control buffer has room for one cmsg of a u16 (cmsg_space).
                unsafe {
                    let cm = libc::CMSG_FIRSTHDR(h);
                    (*cm).cmsg_level = libc::SOL_UDP;
                    (*cm).cmsg_type = UDP_SEGMENT;
                    (*cm).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cm).cast::<u16>(), m.gso);
                }
            }
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: msgs[sent..] point at live iovecs, buffers, addresses and control data.
            let r = unsafe { libc::sendmmsg(udp, msgs[sent..].as_mut_ptr(), (n - sent) as libc::c_uint, 0) };
            self.counters.syscalls.fetch_add(1, Ordering::Relaxed);
            if r <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock && self.wait_writable(udp) {
                    continue;
                }
                if metas[sent].gso > 0 && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT))
                {
                    return false;
                }
                break;
            }
            sent += r as usize;
        }
        self.counters.tx_packets.fetch_add(sent as u64, Ordering::Relaxed);
        true
    }

    /// UDP → TUN with `UDP_GRO` on the socket and a virtio-net header on the TUN queue:
    /// consecutive segments of a flow are written as one super-packet.
    fn recv_offload(self) {
        let tun = self.tun.as_raw_fd();
        let udp = self.udp.as_raw_fd();
        let space = cmsg_space(std::mem::size_of::<libc::c_int>());
        let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; BUF]).collect();
        let mut ctrl = vec![0u8; BATCH * space];
        // SAFETY: all-zero sockaddr_in values are valid.
        let mut froms: Vec<libc::sockaddr_in> = vec![unsafe { std::mem::zeroed() }; BATCH];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: BUF,
            })
            .collect();
        // SAFETY: as above.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
        let mut coalescer = Coalescer::new();
        let counters = self.counters.clone();
        let mut write = |b: &[u8]| {
            // SAFETY: writing a live buffer (virtio-net header and packet).
            let w = unsafe { libc::write(tun, b.as_ptr().cast(), b.len()) };
            counters.syscalls.fetch_add(1, Ordering::Relaxed);
            if w > 0 {
                counters.rx_packets.fetch_add(1, Ordering::Relaxed);
            }
        };
        while self.wait(udp) {
            loop {
                for i in 0..BATCH {
                    let h = &mut msgs[i].msg_hdr;
                    h.msg_iov = &mut iovs[i];
                    h.msg_iovlen = 1;
                    h.msg_name = (&mut froms[i] as *mut libc::sockaddr_in).cast();
                    h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                    h.msg_control = ctrl[i * space..].as_mut_ptr().cast();
                    h.msg_controllen = space as _;
                    msgs[i].msg_len = 0;
                }
                // SAFETY: BATCH headers pointing at live buffers, addresses and control data.
                let r =
                    unsafe { libc::recvmmsg(udp, msgs.as_mut_ptr(), BATCH as libc::c_uint, 0, std::ptr::null_mut()) };
                if r <= 0 {
                    break;
                }
                self.counters.syscalls.fetch_add(1, Ordering::Relaxed);
                let peers = self.peers.read().unwrap_or_else(|p| p.into_inner());
                for i in 0..r as usize {
                    let from = Ipv4Addr::from(u32::from_be(froms[i].sin_addr.s_addr));
                    if !peers.senders.contains_key(&from) {
                        self.counters.rx_unknown.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let len = msgs[i].msg_len as usize;
                    // SAFETY: the kernel filled this header's control data (or left it empty).
                    let seg = unsafe { gro_size(&msgs[i].msg_hdr) }.unwrap_or(len).max(1);
                    for d in bufs[i][..len].chunks(seg) {
                        coalescer.push(d, &mut write);
                    }
                }
                drop(peers);
                coalescer.flush(&mut write);
                if (r as usize) < BATCH {
                    break;
                }
            }
        }
    }
}

/// [`segment_tcp`] or [`segment_udp`].
type Cut = fn(&[u8], usize, &mut Vec<u8>) -> Option<(usize, usize)>;

/// One datagram (or `UDP_SEGMENT` train) to send: bytes `start..start + len` of a slot.
#[derive(Clone, Copy)]
struct Meta {
    slot: usize,
    start: usize,
    len: usize,
    /// `UDP_SEGMENT` size; 0: one datagram.
    gso: u16,
    dst: SocketAddrV4,
}

/// `CMSG_SPACE(len)`.
fn cmsg_space(len: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes.
    unsafe { libc::CMSG_SPACE(len as u32) as usize }
}

/// The `UDP_GRO` segment size in a received message's control data, if any.
///
/// # Safety
/// `h`'s control pointer and length describe control data the kernel filled in.
unsafe fn gro_size(h: &libc::msghdr) -> Option<usize> {
    if h.msg_controllen == 0 {
        return None;
    }
    // SAFETY: the caller's contract; CMSG_FIRSTHDR/NXTHDR stay inside msg_controllen.
    unsafe {
        let mut cm = libc::CMSG_FIRSTHDR(h);
        while !cm.is_null() {
            if (*cm).cmsg_level == libc::SOL_UDP && (*cm).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast::<libc::c_int>());
                return usize::try_from(v).ok().filter(|v| *v > 0);
            }
            cm = libc::CMSG_NXTHDR(h, cm);
        }
    }
    None
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor this code owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// The destination of an IPv4 packet.
fn ipv4_dst(pkt: &[u8]) -> Option<Ipv4Addr> {
    (pkt.len() >= 20 && pkt[0] >> 4 == 4).then(|| Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]))
}

/// A UDP socket bound to `0.0.0.0:port` with `SO_REUSEPORT` (one per queue), in the calling
/// thread's namespace.
pub(crate) fn bind_socket(port: u16) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for opt in [libc::SO_REUSEPORT, libc::SO_REUSEADDR] {
        // SAFETY: setsockopt with a live c_int.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // Room for bursts: 4 MiB each way (capped by net.core.*mem_max).
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: as above; failure only leaves the default size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    let addr = sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    // SAFETY: binding a live sockaddr_in of its size.
    let r = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// The IPv4 address of a peer as the data path's endpoint.
pub(crate) fn endpoint(ip: IpAddr, port: u16) -> Option<SocketAddrV4> {
    match ip {
        IpAddr::V4(a) => Some(SocketAddrV4::new(a, port)),
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_masks_the_destination_to_the_subnet() {
        let mut t = PeerTable {
            prefix: 24,
            ..Default::default()
        };
        let e = SocketAddrV4::new(Ipv4Addr::new(192, 168, 50, 2), 8285);
        t.by_subnet.insert(u32::from(Ipv4Addr::new(10, 244, 1, 0)), e);
        assert_eq!(t.lookup(Ipv4Addr::new(10, 244, 1, 77)), Some(e));
        assert_eq!(t.lookup(Ipv4Addr::new(10, 244, 2, 77)), None);
        let pkt = [0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 244, 0, 2, 10, 244, 1, 77];
        assert_eq!(ipv4_dst(&pkt), Some(Ipv4Addr::new(10, 244, 1, 77)));
        assert_eq!(ipv4_dst(&pkt[..10]), None);
    }
}
