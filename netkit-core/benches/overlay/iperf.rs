//! Phase `iperf`: iperf3 TCP from a pod on one node to a pod on another, per backend, with 1
//! and with 4 streams, and the machine's CPU use per Gbit/s.
//!
//! Per backend a fresh two-node cluster (file store, agents in this process), one pod per node
//! attached from the subnet file. The client runs `iperf3 -c POD -t SECS [-P 4] -J`; the rate is
//! what the receiver got (`end.sum_received`). CPU: the machine's busy time from /proc/stat
//! (user, nice, system, irq, softirq, steal over every CPU) from just before the client starts
//! until it ends, in cores (CPU seconds per second), divided by the rate in Gbit/s — the sender,
//! the receiver and the overlay all run on this machine, so this is the whole path's cost.

use std::time::{Duration, Instant};

use netkit_test_support::cluster::Cluster;
use netkit_test_support::iperf::{self, Iperf3Server};
use netkit_test_support::overlay::{backend, wait_peers, ClusterNode};

use super::measure::{clk_tck, machine_busy_ticks};
use super::{check_stop, Config, Report, Res};

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

/// The ratios the issue asks for: (backend, reference, at least).
const RATIOS: &[(&str, &str, f64)] = &[
    ("vxlan", "host-gw", 0.8),
    ("udp", "vxlan", 0.5),
    ("udp", "udp-single", 4.0),
];

/// Run the phase for every backend of `cfg.backends`.
pub async fn run(cfg: &Config, report: &mut Report) -> Res<()> {
    let mut rates = Vec::new();
    for name in &cfg.backends {
        check_stop()?;
        rates.extend(one_backend(cfg, name).await?);
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
    for &(a, b, min) in RATIOS {
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

async fn one_backend(cfg: &Config, name: &str) -> Res<Vec<Rate>> {
    let bcfg =
        backend(name).ok_or_else(|| format!("backend {name:?} is not known to test-support's overlay::backend"))?;
    let cluster = Cluster::new("ovi", 1);
    let store = cluster.dir().join("leases");
    let nodes = [
        ClusterNode::new(&cluster, "i1", 0, 1),
        ClusterNode::new(&cluster, "i2", 0, 2),
    ];
    let mut agents = Vec::new();
    for n in &nodes {
        agents.push(n.start_file(&store, bcfg.clone(), Duration::from_secs(3600)).await);
    }
    for a in &agents {
        wait_peers(a, 1).await;
    }
    let (client, _) = nodes[0].pod(&cluster, "i1p").await;
    let (server, server_ip) = nodes[1].pod(&cluster, "i2p").await;
    let _srv = Iperf3Server::start(&server, server_ip, 5201);
    let mut out = Vec::new();
    for streams in [1u32, 4] {
        check_stop()?;
        let secs = cfg.iperf_secs.to_string();
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
