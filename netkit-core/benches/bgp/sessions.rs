//! Phase `sessions`: what a bigger cluster costs in sessions, BIRD memory and reloads, full mesh
//! against reflectors.
//!
//! For each topology a [`BirdLab`] of `mesh_nodes` nodes (full mesh: n(n−1)/2 sessions; with
//! `reflectors` reflectors: r(n−r) + r(r−1)/2):
//!
//! * **sessions**: BGP sessions Established over all nodes (`birdc show protocols` on every
//!   node; each session is seen from both ends and counted once), and the time from the last
//!   BIRD started to every session Established (polled every 50 ms);
//! * **memory**, once every node has every other node's block as a kernel route: each BIRD's
//!   `VmRSS` (/proc/PID/status; min / median / max, and the total over the nodes) and the
//!   `Total` line of `birdc show memory` (BIRD's own accounting of its allocations);
//! * **regenerate and reload**, on a node with all peers (every other node: a full-mesh node
//!   or a reflector) and on a reflector client (the reflectors only): the time of
//!   [`BirdConfig::render`] (median of 200 renders) and of [`Bird::reconfigure`] — the file
//!   written and `birdc configure` answered — median over `reloads` reloads, each adding or
//!   removing one block (what the agent does when a block or a peer changes).
//!
//! [`BirdConfig::render`]: netkit_core::overlay::bird::BirdConfig::render
//! [`Bird::reconfigure`]: netkit_core::overlay::bird::Bird::reconfigure

use std::time::{Duration, Instant};

use super::harness::{check_stop, Report, Res};
use super::lab::{new_block, BirdLab, Topology};
use super::measure::{percentile, status_kib};
use super::Config;

/// Run the phase: full mesh, then reflectors.
pub async fn run(cfg: &Config, report: &mut Report) -> Res<()> {
    for t in [Topology::FullMesh, Topology::Reflectors(cfg.reflectors)] {
        check_stop()?;
        tokio::task::block_in_place(|| one_topology(cfg, t, report))?;
    }
    Ok(())
}

fn one_topology(cfg: &Config, topology: Topology, report: &mut Report) -> Res<()> {
    let n = cfg.mesh_nodes;
    let what = format!("{n} nodes, {}", topology.label());
    eprintln!("sessions: {what}");
    let (lab, started) = BirdLab::start("bgs", n, topology)?;
    let t0 = Instant::now();
    let ends = lab.wait_established(Duration::from_secs(90))?;
    let established = t0.elapsed();
    let design = topology.sessions(n);
    eprintln!(
        "  {} sessions Established ({design} by design), {established:.1?} after {n} BIRDs started in {started:.1?}",
        ends / 2
    );
    report.row(
        &format!("BGP sessions Established ({what}; each counted once)"),
        format!(
            "{} (design {design}); all up {:.1} s after the last BIRD started",
            ends / 2,
            established.as_secs_f64()
        ),
    );
    report.target(
        &format!("check: sessions as designed ({what})"),
        ends == 2 * design,
        format!("{} session ends Established, {} expected", ends, 2 * design),
    );
    if !lab.wait_routes(Duration::from_secs(30)) {
        report.target(
            &format!("check: every block on every node ({what})"),
            false,
            "not within 30 s".into(),
        );
    }

    // Memory.
    let mut rss = Vec::new();
    let mut own = Vec::new();
    for (i, b) in lab.birds.iter().enumerate() {
        rss.push(status_kib(b.pid(), "VmRSS")?);
        if let Some(k) = lab
            .birdc(i, &["show", "memory"])
            .ok()
            .as_deref()
            .and_then(memory_total_kib)
        {
            own.push(k);
        }
    }
    report.row(
        &format!("BIRD RSS per node, min / median / max; total ({what})"),
        kib_spread(&rss),
    );
    report.row(
        &format!("`birdc show memory` total per node, min / median / max; total ({what})"),
        if own.len() == n {
            kib_spread(&own)
        } else {
            format!("read on {} of {n} nodes", own.len())
        },
    );

    // Regenerate and reload.
    let mut probes = vec![(n - 1, "")];
    if topology != Topology::FullMesh {
        probes = vec![(0, " (a reflector)"), (n - 1, " (a client)")];
    }
    for (i, role) in probes {
        check_stop()?;
        let peers = lab.peers_of(i);
        let mut c = lab.configs[i].clone();
        let mut renders = Vec::new();
        let mut bytes = 0;
        for _ in 0..200 {
            let t = Instant::now();
            bytes = std::hint::black_box(c.render()).len();
            renders.push(t.elapsed());
        }
        let extra = new_block(253, i);
        let mut reloads = Vec::new();
        for r in 0..cfg.reloads {
            if r % 2 == 0 {
                c.blocks.push(extra);
            } else {
                c.blocks.retain(|b| *b != extra);
            }
            let t = Instant::now();
            lab.birds[i].reconfigure(&c)?;
            reloads.push(t.elapsed());
        }
        let med = |v: &[Duration]| percentile(v, 50.0).unwrap_or_default();
        let (render, reload) = (med(&renders), med(&reloads));
        eprintln!(
            "  node b{} with {peers} peers{role}: render {:.1} µs ({bytes} bytes), reconfigure {:.1} ms (median of {}, max {:.1} ms)",
            i + 1,
            render.as_secs_f64() * 1e6,
            reload.as_secs_f64() * 1e3,
            reloads.len(),
            percentile(&reloads, 100.0).unwrap_or_default().as_secs_f64() * 1e3
        );
        report.row(
            &format!("regenerate + reload, node with {peers} peers{role} ({what}): `render`, median of 200; `reconfigure`, median of {}", cfg.reloads),
            format!(
                "{:.1} µs ({bytes} bytes); {:.1} ms",
                render.as_secs_f64() * 1e6,
                reload.as_secs_f64() * 1e3
            ),
        );
        // Every session is still up after the reloads.
        let up: usize = lab.birds[i].sessions()?.iter().filter(|s| s.established()).count();
        report.target(
            &format!(
                "check: no session dropped by {} reloads (b{}, {what})",
                cfg.reloads,
                i + 1
            ),
            up == peers,
            format!("{up} of {peers} Established"),
        );
    }
    Ok(())
}

/// `min / median / max; total` of KiB figures, in MiB.
fn kib_spread(v: &[u64]) -> String {
    let mut s = v.to_vec();
    s.sort_unstable();
    let mib = |k: u64| k as f64 / 1024.0;
    match (s.first(), s.last()) {
        (Some(&lo), Some(&hi)) => format!(
            "{:.1} / {:.1} / {:.1} MiB; {:.1} MiB",
            mib(lo),
            mib(s[s.len() / 2]),
            mib(hi),
            mib(s.iter().sum())
        ),
        _ => "–".into(),
    }
}

/// The `Total:` line of `birdc show memory` (BIRD's allocations, its first figure) in KiB.
fn memory_total_kib(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.trim_start().starts_with("Total:"))?;
    let mut f = line.split_whitespace().skip(1);
    let value: f64 = f.next()?.parse().ok()?;
    let factor = match f.next()? {
        "B" => 1.0 / 1024.0,
        "kB" => 1.0,
        "MB" => 1024.0,
        "GB" => 1024.0 * 1024.0,
        _ => return None,
    };
    Some((value * factor).round() as u64)
}
