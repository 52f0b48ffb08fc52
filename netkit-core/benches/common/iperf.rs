//! The iperf phase of the cluster benches (`overlay`, `bgp`): iperf3 TCP from a pod on one node
//! to a pod on another, per backend, with 1 and with 4 streams, and the machine's CPU use per
//! Gbit/s.
//!
//! Per backend a fresh two-node cluster (file store, agents in this process), one pod per node
//! attached from the subnet file in the backend's pod mode ([`IperfBackend`]: netkit-cni's
//! `bridge`, or `routed` as Calico attaches pods), the nodes on the segments the backend asks
//! for (two segments are joined by the cluster's router). The run starts once the client pod
//! answers pings from the server pod's address (so a backend whose routes come later, as BGP's
//! do, is measured converged). The client runs `iperf3 -c POD -t SECS [-P 4] -J`; the rate is
//! what the receiver got (`end.sum_received`). CPU: the machine's busy time from /proc/stat
//! (user, nice, system, irq, softirq, steal over every CPU) from just before the client starts
//! until it ends, in cores (CPU seconds per second), divided by the rate in Gbit/s — the sender,
//! the receiver and the overlay all run on this machine, so this is the whole path's cost.

use std::time::{Duration, Instant};

use netkit_core::overlay::BackendConfig;
use netkit_test_support::cluster::Cluster;
use netkit_test_support::iperf::{self, Iperf3Server};
use netkit_test_support::overlay::{wait_peers, ClusterNode};

use super::harness::{check_stop, Report, Res};
use super::measure::{clk_tck, machine_busy_ticks};

/// A backend's agent configuration for a node.
pub type NodeBackend = Box<dyn Fn(&ClusterNode) -> BackendConfig + Send + Sync>;

/// How one backend runs the two nodes of the phase.
pub struct IperfBackend {
    /// Its name (table rows, ratios, the bench's knob).
    pub name: String,
    /// The agent's backend on a node (from the node: a backend may keep files in its
    /// directory, as BIRD does).
    pub config: NodeBackend,
    /// The segments of the client's and the server's node (0 or 1; `[0, 1]` puts the cluster's
    /// router between them).
    pub segments: [u8; 2],
    /// netkit-cni's mode for the pods: `bridge` or `routed`.
    pub pod_mode: &'static str,
}

/// One run's figures.
pub struct Rate {
    /// Backend name.
    pub backend: String,
    /// Parallel streams.
    pub streams: u32,
    /// Received Gbit/s.
    pub gbps: f64,
    /// Busy cores over the run.
    pub cores: f64,
}

/// Run the phase for every backend of `backends`, `secs` seconds per run, in clusters tagged
/// `tag`; report each rate and the `ratios` asked for: (backend, reference, at least).
pub async fn run(
    tag: &str,
    backends: &[IperfBackend],
    secs: u32,
    ratios: &[(&str, &str, f64)],
    report: &mut Report,
) -> Res<()> {
    let mut rates = Vec::new();
    for b in backends {
        check_stop()?;
        rates.extend(one_backend(tag, b, secs).await?);
    }
    for r in &rates {
        report.row(
            &format!(
                "iperf3 pod → pod across nodes, {}, {} stream{}",
                r.backend,
                r.streams,
                if r.streams > 1 { "s" } else { "" }
            ),
            format!(
                "{:.2} Gbit/s, {:.2} cores busy = {:.3} cores per Gbit/s",
                r.gbps,
                r.cores,
                r.cores / r.gbps.max(1e-9)
            ),
        );
    }
    for &(a, b, min) in ratios {
        for streams in [1, 4] {
            let find = |n: &str| rates.iter().find(|r| r.backend == n && r.streams == streams);
            if let (Some(x), Some(y)) = (find(a), find(b)) {
                let ratio = x.gbps / y.gbps.max(1e-9);
                let what = if min >= 1.0 {
                    format!(
                        "{a} ≥ {min}× {b} ({streams} stream{})",
                        if streams > 1 { "s" } else { "" }
                    )
                } else {
                    format!(
                        "{a} ≥ {:.0} % of {b} ({streams} stream{})",
                        min * 100.0,
                        if streams > 1 { "s" } else { "" }
                    )
                };
                report.target(
                    &what,
                    ratio >= min,
                    format!("{:.0} % ({:.2} vs {:.2} Gbit/s)", ratio * 100.0, x.gbps, y.gbps),
                );
            }
        }
    }
    Ok(())
}

async fn one_backend(tag: &str, b: &IperfBackend, secs: u32) -> Res<Vec<Rate>> {
    let name = b.name.as_str();
    let segments = b.segments.iter().max().copied().unwrap_or(0) + 1;
    let cluster = Cluster::new(tag, segments);
    let store = cluster.dir().join("leases");
    let nodes = [
        ClusterNode::new(&cluster, "i1", b.segments[0], 1),
        ClusterNode::new(&cluster, "i2", b.segments[1], 2),
    ];
    let mut agents = Vec::new();
    for n in &nodes {
        agents.push(n.start_file(&store, (b.config)(n), Duration::from_secs(3600)).await);
    }
    for a in &agents {
        wait_peers(a, 1).await;
    }
    let (client, client_ip) = nodes[0].pod_in_mode(&cluster, "i1p", b.pod_mode).await;
    let (server, server_ip) = nodes[1].pod_in_mode(&cluster, "i2p", b.pod_mode).await;
    // Converged: the server's pod reaches the client's (routes both ways).
    let server_name = server.name().ok_or("an unnamed pod")?.to_string();
    let to = client_ip.to_string();
    let t_ready = Instant::now();
    tokio::task::spawn_blocking(move || {
        netkit_test_support::poll_for(Duration::from_secs(30), || {
            if netkit_test_support::ping(&server_name, &to) {
                Ok(())
            } else {
                Err(())
            }
        })
    })
    .await?
    .map_err(|()| format!("{name}: the pods do not reach each other within 30 s"))?;
    eprintln!(
        "  iperf3 {name}: pods reach each other ({:.0?} after attaching)",
        t_ready.elapsed()
    );
    let _srv = Iperf3Server::start(&server, server_ip, 5201);
    let mut out = Vec::new();
    for streams in [1u32, 4] {
        check_stop()?;
        let secs = secs.to_string();
        let p = streams.to_string();
        let client_ns = netkit_core::NetNs::open(client.name().ok_or("an unnamed pod")?)?;
        let busy0 = machine_busy_ticks()?;
        let t0 = Instant::now();
        let report =
            tokio::task::spawn_blocking(move || iperf::client(&client_ns, server_ip, 5201, &["-t", &secs, "-P", &p]))
                .await??;
        let wall = t0.elapsed().as_secs_f64();
        let busy = (machine_busy_ticks()? - busy0) as f64 / clk_tck();
        let bps = iperf::received_bps(&report).ok_or("iperf3 reported no received rate")?;
        let r = Rate {
            backend: name.to_string(),
            streams,
            gbps: bps / 1e9,
            cores: busy / wall,
        };
        eprintln!(
            "  iperf3 {name:<8} {streams} stream(s): {:.2} Gbit/s, {:.2} cores busy",
            r.gbps, r.cores
        );
        out.push(r);
    }
    Ok(out)
}
