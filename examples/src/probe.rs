//! Connectivity probes with real packets: ping (the system `ping`, run
//! inside a namespace) and a TCP exchange between two namespaces.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use netkit_core::NetNs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Ping `dst` once from inside `from` (1 s timeout). True when a reply came.
pub fn ping(from: &NetNs, dst: IpAddr) -> bool {
    let name = from.name().expect("probes need named namespaces");
    Command::new("ip")
        .args(["netns", "exec", name, "ping", "-c1", "-W1", "-q", &dst.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Ping until one reply comes or `tries` attempts failed (the first packets
/// of a fresh path may be spent on neighbour resolution).
pub fn ping_retry(from: &NetNs, dst: IpAddr, tries: usize) -> bool {
    (0..tries).any(|_| ping(from, dst))
}

/// Error of a TCP exchange.
pub type ProbeError = Box<dyn std::error::Error + Send + Sync>;

/// Listen on `addr` inside `server`, connect from inside `client`, send a
/// message and read it back echoed. Returns the peer address the server saw.
pub async fn tcp_exchange(server: &NetNs, client: &NetNs, addr: SocketAddr) -> Result<SocketAddr, ProbeError> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let srv = server.run_async(move || async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let _ = ready_tx.send(());
        let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        let (mut sock, peer) = accepted.map_err(|_| "no connection within 5 s")??;
        let mut buf = [0u8; 64];
        let n = sock.read(&mut buf).await?;
        sock.write_all(&buf[..n]).await?;
        Ok::<SocketAddr, ProbeError>(peer)
    });
    let cli = async {
        ready_rx.await.map_err(|_| "server failed to start")?;
        client
            .run_async(move || async move {
                let connect = tokio::net::TcpStream::connect(addr);
                let mut s = tokio::time::timeout(Duration::from_secs(3), connect)
                    .await
                    .map_err(|_| "connect timed out")??;
                s.write_all(b"netkit").await?;
                let mut buf = [0u8; 6];
                tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf))
                    .await
                    .map_err(|_| "read timed out")??;
                if &buf != b"netkit" {
                    return Err::<(), ProbeError>("echo mismatch".into());
                }
                Ok(())
            })
            .await?
    };
    let (srv, cli) = tokio::join!(srv, cli);
    cli?;
    srv?
}

/// One IPv4 UDP datagram written straight onto a link as an Ethernet frame: what a hostile
/// container can send whatever its routes say (any source, any destination, 127.0.0.1
/// included), used to prove that the host drops what it must.
#[derive(Debug, Clone)]
pub struct RawUdp4 {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC (e.g. the container's gateway).
    pub dst_mac: [u8; 6],
    /// Source address and port.
    pub src: std::net::SocketAddrV4,
    /// Destination address and port.
    pub dst: std::net::SocketAddrV4,
    /// Payload.
    pub payload: Vec<u8>,
}

impl RawUdp4 {
    /// The frame: Ethernet, IPv4 (TTL 64, checksummed), UDP (no checksum, allowed for IPv4).
    pub fn frame(&self) -> Vec<u8> {
        let udp_len = 8 + self.payload.len();
        let ip_len = 20 + udp_len;
        let mut f = Vec::with_capacity(14 + ip_len);
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&self.src.ip().octets());
        ip[16..20].copy_from_slice(&self.dst.ip().octets());
        let sum = netkit_test_support::icmp::checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&self.src.port().to_be_bytes());
        f.extend_from_slice(&self.dst.port().to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&self.payload);
        f
    }

    /// Send the frame out of link `dev` of namespace `ns` (an `AF_PACKET` socket opened there).
    pub fn send(&self, ns: &NetNs, dev: &str) -> std::io::Result<()> {
        let frame = self.frame();
        let dev = std::ffi::CString::new(dev).map_err(std::io::Error::other)?;
        let dst_mac = self.dst_mac;
        ns.run(move || {
            // SAFETY: plain socket(2); the descriptor is closed below on every path.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: `fd` is ours and open; it is closed exactly once, when `_close` drops.
            let _close = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            // SAFETY: `dev` is a valid NUL-terminated string.
            let index = unsafe { libc::if_nametoindex(dev.as_ptr()) };
            if index == 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
            let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            to.sll_family = libc::AF_PACKET as u16;
            to.sll_protocol = 0x0800u16.to_be();
            to.sll_ifindex = index as i32;
            to.sll_halen = 6;
            to.sll_addr[..6].copy_from_slice(&dst_mac);
            // SAFETY: `frame` and `to` are valid for the lengths given.
            let sent = unsafe {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&to as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if sent < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
        .map_err(std::io::Error::other)?
    }
}
