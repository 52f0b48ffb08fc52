//! TCP identity servers and their client, with real sockets inside a test's namespaces.
//!
//! A server answers every connection with one line `NAME LOCAL PEER`: who it is, the address the
//! connection reached and the address it came from; a test then tells which endpoint was
//! reached and which source address it saw (NAT or not). Sockets are made on a thread inside
//! the namespace and then used from anywhere (a socket keeps the namespace it was made in).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netkit_core::NetNs;

/// How long a client waits for a connection, and then for the answer.
pub const TIMEOUT: Duration = Duration::from_millis(1500);

/// What a server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The server's name ("C1", …).
    pub name: String,
    /// The address the server's socket was reached at (0.0.0.0:port for UDP).
    pub local: SocketAddr,
    /// The client address the server saw.
    pub peer: SocketAddr,
}

impl Hello {
    /// Read a server's line `NAME LOCAL PEER`.
    pub fn parse(line: &str) -> Result<Hello, String> {
        let mut f = line.split_whitespace();
        let (Some(name), Some(local), Some(peer), None) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(format!("malformed answer {line:?}"));
        };
        Ok(Hello {
            name: name.to_string(),
            local: local.parse().map_err(|_| format!("bad local address in {line:?}"))?,
            peer: peer.parse().map_err(|_| format!("bad peer address in {line:?}"))?,
        })
    }

    /// The line a server sends.
    pub fn line(name: &str, local: SocketAddr, peer: SocketAddr) -> String {
        format!("{name} {local} {peer}\n")
    }
}

/// A running identity server on a thread of its own (no async runtime needed); stopped when
/// dropped.
pub struct Server {
    listener: Arc<TcpListener>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// A TCP server named `name` listening on `addr` inside `ns`.
    #[track_caller]
    pub fn tcp(ns: &NetNs, name: &str, addr: SocketAddr) -> Server {
        let listener = ns
            .run(move || TcpListener::bind(addr))
            .expect("enter netns")
            .unwrap_or_else(|e| panic!("bind {addr} in {ns}: {e}"));
        Server::serve(listener, name)
    }

    /// Serve connections of `listener` (a TCP one, or any stream socket that accepts like one,
    /// e.g. SCTP one-to-one), answering each as `name`.
    pub fn serve(listener: TcpListener, name: &str) -> Server {
        listener.set_nonblocking(false).expect("blocking listener");
        let listener = Arc::new(listener);
        let stop = Arc::new(AtomicBool::new(false));
        let (l, flag, name) = (listener.clone(), stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || loop {
            let accepted = l.accept();
            if flag.load(Ordering::SeqCst) {
                return;
            }
            match accepted {
                Ok((mut sock, peer)) => {
                    let Ok(local) = sock.local_addr() else { continue };
                    let _ = sock.set_write_timeout(Some(TIMEOUT));
                    let _ = sock.write_all(Hello::line(&name, local, peer).as_bytes());
                    let _ = sock.shutdown(Shutdown::Write);
                }
                Err(e) if transient(&e) => {}
                // Anything else (no descriptor left, …) ends the server; its clients fail.
                Err(_) => return,
            }
        });
        Server {
            listener,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // shutdown(2) on a listening socket wakes the thread blocked in accept(2).
        // SAFETY: shutdown on the listener's own descriptor, which `self.listener` keeps open.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP server that echoes back every line of every connection until the client closes it
/// (one thread per connection): a long-lived connection a test can use again and again.
/// Stopped when dropped (open connections end when their client closes them).
pub struct LineEcho {
    listener: Arc<TcpListener>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LineEcho {
    /// A line echo server listening on `addr` inside `ns`.
    #[track_caller]
    pub fn tcp(ns: &NetNs, addr: SocketAddr) -> LineEcho {
        let listener = ns
            .run(move || TcpListener::bind(addr))
            .expect("enter netns")
            .unwrap_or_else(|e| panic!("bind {addr} in {ns}: {e}"));
        let listener = Arc::new(listener);
        let stop = Arc::new(AtomicBool::new(false));
        let (l, flag) = (listener.clone(), stop.clone());
        let thread = std::thread::spawn(move || loop {
            let accepted = l.accept();
            if flag.load(Ordering::SeqCst) {
                return;
            }
            match accepted {
                Ok((sock, _)) => {
                    std::thread::spawn(move || {
                        let mut reader = std::io::BufReader::new(match sock.try_clone() {
                            Ok(s) => s,
                            Err(_) => return,
                        });
                        let mut sock = sock;
                        let mut line = String::new();
                        while matches!(std::io::BufRead::read_line(&mut reader, &mut line), Ok(n) if n > 0) {
                            if sock.write_all(line.as_bytes()).is_err() {
                                return;
                            }
                            line.clear();
                        }
                    });
                }
                Err(e) if transient(&e) => {}
                Err(_) => return,
            }
        });
        LineEcho {
            listener,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LineEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // SAFETY: shutdown on the listener's own descriptor, which `self.listener` keeps open.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A connection made inside `from` to a [`LineEcho`] at `addr` (connect and read time out
/// after [`TIMEOUT`]).
pub fn echo_connect(from: &NetNs, addr: SocketAddr) -> Result<TcpStream, String> {
    let s = from
        .run(move || TcpStream::connect_timeout(&addr, TIMEOUT))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    Ok(s)
}

/// Send `line` on a [`LineEcho`] connection and read it back.
pub fn echo_line(s: &mut TcpStream, line: &str) -> Result<(), String> {
    s.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut got = vec![0u8; line.len() + 1];
    s.read_exact(&mut got).map_err(|e| format!("read: {e}"))?;
    if got == format!("{line}\n").as_bytes() {
        Ok(())
    } else {
        Err(format!("echoed {:?}", String::from_utf8_lossy(&got)))
    }
}

/// An error of one connection (a peer that went away), after which a server goes on.
pub fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// Connect to `addr` (blocking, from the calling thread's namespace) and read the answer.
pub fn tcp_hello(addr: SocketAddr) -> Result<Hello, String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    read_answer(&mut s, addr)
}

/// One TCP connection from inside `from` to `addr`.
pub fn tcp_hello_from(from: &NetNs, addr: SocketAddr) -> Result<Hello, String> {
    from.run(move || tcp_hello(addr)).map_err(|e| e.to_string())?
}

/// Read a server's answer from `s` (the whole stream, up to [`TIMEOUT`]).
pub fn read_answer(s: &mut TcpStream, addr: SocketAddr) -> Result<Hello, String> {
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| format!("{addr}: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    Hello::parse(text.trim())
}

/// A UDP identity server: answers every datagram with the line of [`Hello`] (its name, the
/// address it is bound to, the sender's address); stopped when dropped.
pub struct UdpServer {
    socket: Arc<std::net::UdpSocket>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpServer {
    /// A server named `name` bound to `addr` inside `ns`.
    #[track_caller]
    pub fn bind(ns: &NetNs, name: &str, addr: SocketAddr) -> UdpServer {
        let socket = ns
            .run(move || std::net::UdpSocket::bind(addr))
            .expect("enter netns")
            .unwrap_or_else(|e| panic!("bind udp {addr} in {ns}: {e}"));
        let socket = Arc::new(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let (s, flag, name) = (socket.clone(), stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let local = s.local_addr().expect("a bound socket");
            while let Ok((_, peer)) = s.recv_from(&mut buf) {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let _ = s.send_to(Hello::line(&name, local, peer).as_bytes(), peer);
            }
        });
        UdpServer {
            socket,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // shutdown(2) wakes the thread blocked in recvfrom(2).
        // SAFETY: shutdown on the socket's own descriptor, which `self.socket` keeps open.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP client socket made inside `from`, connected to `addr`: every [`udp_hello`] on it comes
/// from the same source port (one flow, as conntrack sees it).
pub fn udp_client(from: &NetNs, addr: SocketAddr) -> std::net::UdpSocket {
    let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("an address");
    let s = from
        .run(move || std::net::UdpSocket::bind(bind))
        .expect("enter netns")
        .expect("bind a UDP client");
    s.connect(addr).expect("connect a UDP socket");
    s.set_read_timeout(Some(TIMEOUT)).expect("a read timeout");
    s
}

/// One datagram on `s` and the answer (an `Err` on no answer within [`TIMEOUT`] or an ICMP
/// error, e.g. `Connection refused` for port unreachable).
pub fn udp_hello(s: &std::net::UdpSocket) -> Result<Hello, String> {
    s.send(b"hello").map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 512];
    let n = s.recv(&mut buf).map_err(|e| format!("recv: {e}"))?;
    Hello::parse(std::str::from_utf8(&buf[..n]).map_err(|e| e.to_string())?.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_local_and_peer_and_stops_on_drop() {
        let ns = NetNs::current().unwrap();
        let server = Server::tcp(&ns, "S", "127.0.0.1:0".parse().unwrap());
        let addr = server.listener.local_addr().unwrap();
        for _ in 0..3 {
            let h = tcp_hello(addr).unwrap();
            assert_eq!((h.name.as_str(), h.local), ("S", addr));
            assert!(h.peer.ip().is_loopback());
        }
        drop(server);
        assert!(tcp_hello(addr).is_err(), "a dropped server still answers");
    }

    #[test]
    fn parse_refuses_what_is_no_answer() {
        assert!(Hello::parse("C1 10.0.0.1:80 10.0.0.2:4000").is_ok());
        for bad in [
            "",
            "C1",
            "C1 10.0.0.1:80",
            "C1 x 10.0.0.2:1",
            "C1 10.0.0.1:80 10.0.0.2:1 more",
        ] {
            assert!(Hello::parse(bad).is_err(), "{bad:?}");
        }
    }
}
