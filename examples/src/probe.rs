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
