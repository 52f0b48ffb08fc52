//! The first-packet measurement the services and policy benches share: a one-byte TCP echo
//! server in a pod, and new connections to it, each timed from `connect` to the echoed byte.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netkit_core::NetNs;

use super::harness::{stopped, Res};

/// A one-byte echo server on `0.0.0.0:PORT` in a pod; stops when dropped.
pub struct EchoServer {
    pod: NetNs,
    port: u16,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Listen on `port` inside `pod`.
    pub fn start(pod: &NetNs, port: u16) -> Res<EchoServer> {
        let listener = pod.run(move || TcpListener::bind(("0.0.0.0", port)))??;
        let thread = std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).is_ok() {
                    if b[0] == b'q' {
                        return;
                    }
                    let _ = s.write_all(&b);
                }
            }
        });
        Ok(EchoServer {
            pod: pod.clone(),
            port,
            thread: Some(thread),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let port = self.port;
        let _ = self
            .pod
            .run(move || TcpStream::connect((Ipv4Addr::LOCALHOST, port)).and_then(|mut s| s.write_all(b"q")));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// From inside `client`: 5 connections to `to` not counted (neighbour entries and the first
/// route lookups are not what is measured), then `n` new ones (connect, one byte each way),
/// each one's time.
pub fn first_packets(client: &NetNs, to: SocketAddr, n: usize) -> Res<Vec<Duration>> {
    let times = client.run(move || -> Result<Vec<Duration>, String> {
        let one = |k: usize| -> Result<Duration, String> {
            let t = Instant::now();
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))
                .map_err(|e| format!("connection {k} to {to}: {e}"))?;
            s.write_all(b"x").map_err(|e| format!("send to {to}: {e}"))?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).map_err(|e| format!("echo from {to}: {e}"))?;
            Ok(t.elapsed())
        };
        for k in 0..5 {
            one(k)?;
        }
        let mut v = Vec::with_capacity(n);
        for k in 0..n {
            if stopped() {
                return Err("interrupted".into());
            }
            v.push(one(k)?);
        }
        Ok(v)
    })??;
    Ok(times)
}
