//! Identity servers and their clients, with real sockets inside the lab's namespaces.
//!
//! A server answers every connection (or datagram) with one line `NAME LOCAL PEER`: who it is,
//! the address the connection reached (TCP, SCTP) and the address it came from. A test can
//! then tell which endpoint was reached and what source address it saw (NAT or not).
//!
//! Sockets are created on a thread inside the namespace and then served or used from anywhere
//! (a socket keeps the namespace it was created in). The TCP server and `Hello` are
//! netkit-test-support's (netkit-cni's plugin tests use them too).

use std::net::{SocketAddr, UdpSocket};

use netkit_core::NetNs;

pub use netkit_test_support::echo::{tcp_hello, Hello, Server, UdpServer, TIMEOUT};

/// A TCP server named `name` listening on `addr` inside `ns` (netkit-test-support's identity
/// server).
pub async fn tcp_server(ns: &NetNs, name: &str, addr: SocketAddr) -> Server {
    Server::tcp(ns, name, addr)
}

/// A UDP server named `name` bound to `addr` inside `ns` (netkit-test-support's identity
/// server); stopped when dropped.
pub async fn udp_server(ns: &NetNs, name: &str, addr: SocketAddr) -> UdpServer {
    UdpServer::bind(ns, name, addr)
}

/// One TCP connection from inside `from` to `addr`.
pub async fn tcp(from: &NetNs, addr: SocketAddr) -> Result<Hello, String> {
    from.exec(move || tcp_hello(addr)).await.map_err(|e| e.to_string())?
}

/// `n` TCP connections, one after the other, from inside `from` to `addr`.
pub async fn tcp_many(from: &NetNs, addr: SocketAddr, n: usize) -> Vec<Result<Hello, String>> {
    from.exec(move || (0..n).map(|_| tcp_hello(addr)).collect())
        .await
        .expect("enter netns")
}

/// How many answers came from each server name; panics on a failed connection.
pub fn tally(answers: &[Result<Hello, String>]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for (i, a) in answers.iter().enumerate() {
        match a {
            Ok(h) => *out.entry(h.name.clone()).or_default() += 1,
            Err(e) => panic!("connection {i} of {} failed: {e}", answers.len()),
        }
    }
    out
}

/// One UDP request from inside `from` to `addr` (two tries: a first datagram may be lost while
/// neighbours resolve).
pub async fn udp(from: &NetNs, addr: SocketAddr) -> Result<Hello, String> {
    from.exec(move || {
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        s.connect(addr).map_err(|e| format!("connect udp {addr}: {e}"))?;
        s.set_read_timeout(Some(TIMEOUT / 2)).map_err(|e| e.to_string())?;
        let mut last = String::new();
        for _ in 0..2 {
            s.send(b"hello").map_err(|e| format!("send to {addr}: {e}"))?;
            let mut buf = [0u8; 512];
            match s.recv(&mut buf) {
                Ok(n) => return Hello::parse(String::from_utf8_lossy(&buf[..n]).trim()),
                Err(e) => last = format!("udp {addr}: {e}"),
            }
        }
        Err(last)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A TCP connection from inside `from` to `addr` that must be refused: how long the refusal
/// took, or what happened instead (an answer, another error, a timeout after [`TIMEOUT`]).
pub async fn tcp_refused(from: &NetNs, addr: SocketAddr) -> Result<std::time::Duration, String> {
    from.exec(move || {
        let start = std::time::Instant::now();
        match std::net::TcpStream::connect_timeout(&addr, TIMEOUT) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(start.elapsed()),
            Err(e) => Err(format!("connect {addr}: {e} after {:?}, not refused", start.elapsed())),
            Ok(_) => Err(format!("connect {addr}: connected, not refused")),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A UDP request from inside `from` to `addr` that must be refused: a connected socket's
/// `recv` returns ECONNREFUSED (an ICMP port unreachable came back). Two tries, like [`udp`].
/// A send refused by the sender's own firewall (EPERM: the node itself) still needs the
/// ECONNREFUSED.
/// How long it took, or what happened instead.
pub async fn udp_refused(from: &NetNs, addr: SocketAddr) -> Result<std::time::Duration, String> {
    from.exec(move || {
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let start = std::time::Instant::now();
        let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        s.connect(addr).map_err(|e| format!("connect udp {addr}: {e}"))?;
        s.set_read_timeout(Some(TIMEOUT / 2)).map_err(|e| e.to_string())?;
        let mut last = String::new();
        for _ in 0..2 {
            match s.send(b"hello") {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(start.elapsed()),
                // Refused in the sender's own output hook: the send fails (EPERM), and the ICMP
                // error comes to the socket all the same.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
                Err(e) => return Err(format!("send to {addr}: {e}")),
                Ok(_) => {}
            }
            let mut buf = [0u8; 512];
            match s.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(start.elapsed()),
                Err(e) => last = format!("udp {addr}: {e}, not refused"),
                Ok(n) => return Err(format!("udp {addr} answered {:?}", String::from_utf8_lossy(&buf[..n]))),
            }
        }
        Err(last)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// SCTP (one-to-one style sockets through libc: Rust's std has no SCTP).
pub mod sctp {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::{FromRawFd, OwnedFd};

    use netkit_core::NetNs;

    use netkit_test_support::echo::read_answer;

    use super::{Hello, Server, TIMEOUT};

    fn socket(v4: bool) -> std::io::Result<OwnedFd> {
        let family = if v4 { libc::AF_INET } else { libc::AF_INET6 };
        // SAFETY: plain socket(2) call; the descriptor is owned by the OwnedFd on success.
        let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, libc::IPPROTO_SCTP) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn raw_addr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_in fits in sockaddr_storage, which is suitably aligned.
                unsafe { std::ptr::write(std::ptr::addr_of_mut!(st).cast::<libc::sockaddr_in>(), sin) };
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: 0,
                };
                // SAFETY: sockaddr_in6 fits in sockaddr_storage, which is suitably aligned.
                unsafe { std::ptr::write(std::ptr::addr_of_mut!(st).cast::<libc::sockaddr_in6>(), sin6) };
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        (st, len as libc::socklen_t)
    }

    fn check(rc: libc::c_int) -> std::io::Result<()> {
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// True when the kernel of `ns` gives out SCTP sockets.
    pub async fn supported(ns: &NetNs) -> bool {
        ns.exec(|| socket(true).is_ok()).await.unwrap_or(false)
    }

    /// An SCTP server named `name` on `addr` inside `ns` (same answer as the TCP server).
    pub async fn server(ns: &NetNs, name: &str, addr: SocketAddr) -> Server {
        let listener = ns
            .exec(move || -> std::io::Result<TcpListener> {
                use std::os::fd::AsRawFd;
                let fd = socket(addr.is_ipv4())?;
                let (st, len) = raw_addr(addr);
                // SAFETY: fd is valid; st holds a sockaddr of length len.
                check(unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(st).cast(), len) })?;
                // SAFETY: fd is a bound socket.
                check(unsafe { libc::listen(fd.as_raw_fd(), 64) })?;
                // An SCTP one-to-one socket accepts, reads and writes like a TCP one.
                let l = TcpListener::from(fd);
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .await
            .expect("enter netns")
            .unwrap_or_else(|e| panic!("sctp listen {addr} in {ns}: {e}"));
        Server::serve(listener, name)
    }

    /// One SCTP association from inside `from` to `addr`.
    pub async fn hello(from: &NetNs, addr: SocketAddr) -> Result<Hello, String> {
        from.exec(move || -> Result<Hello, String> {
            use std::os::fd::AsRawFd;
            let fd = socket(addr.is_ipv4()).map_err(|e| e.to_string())?;
            let tv = libc::timeval {
                tv_sec: TIMEOUT.as_secs() as libc::time_t,
                tv_usec: TIMEOUT.subsec_micros() as libc::suseconds_t,
            };
            // SAFETY: valid fd; tv is a timeval of the size given. SO_SNDTIMEO bounds connect.
            check(unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_SNDTIMEO,
                    std::ptr::addr_of!(tv).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            })
            .map_err(|e| e.to_string())?;
            let (st, len) = raw_addr(addr);
            // SAFETY: valid fd; st holds a sockaddr of length len.
            check(unsafe { libc::connect(fd.as_raw_fd(), std::ptr::addr_of!(st).cast(), len) })
                .map_err(|e| format!("sctp connect {addr}: {e}"))?;
            let mut s = TcpStream::from(fd);
            read_answer(&mut s, addr)
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
