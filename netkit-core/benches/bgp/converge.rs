//! Phase `converge`: route convergence through BIRD, full mesh and with reflectors.
//!
//! `nodes` nodes ([`BirdLab`]) peer as a full mesh, then (a new lab) through `reflectors`
//! reflectors. Once every session is Established and every node has a route to every other
//! node's home block, `blocks` new blocks are added one at a time, each on one node (node
//! `k mod nodes` for block `k`, so the reflectors take their turn too): that node's
//! [`BirdConfig`] gets one more block and [`Bird::reconfigure`] writes it and runs `birdc
//! configure` — what the agent's bgp backend does when its node claims a block.
//!
//! Time 0 is just before the reconfigure; the block has converged when a kernel route for it
//! (`proto bird`) is present on every other node. The routes are watched, not polled: every
//! node's namespace has a netlink subscription (`Handle::subscribe(&[EventKind::Route])`) whose
//! task stamps each `RTM_NEWROUTE` from BIRD as it arrives; the reconfigure runs meanwhile on a
//! thread taken out of the runtime (`block_in_place`), so the watchers keep running. After each
//! block the route table of every other node is read once to confirm the route is there.
//!
//! The blocks follow each other as soon as the previous one has converged, unless `gap` (knob
//! `GAP_MS`) spaces them: BIRD's BGP sockets have Nagle's algorithm on (BIRD 2.0.12 sets no
//! `TCP_NODELAY`), so an update sent on a connection whose previous update the peer has not
//! yet acknowledged (Linux delays an ACK up to 40 ms) waits for that ACK. Back-to-back blocks
//! through reflectors (the same reflector → client connections every time) look like they hit
//! it: their p99 was ≈ 30 ms, ≈ 8 ms with the blocks 100 ms apart (see BENCHMARKS.md).
//!
//! [`Bird::reconfigure`]: netkit_core::overlay::bird::Bird::reconfigure

use std::time::{Duration, Instant};

use futures::StreamExt;
use ipnetwork::IpNetwork;
use netkit_core::events::{Event, EventKind};
use netkit_core::{Handle, NetNs};
use tokio::sync::mpsc;

use super::harness::{check_stop, Report, Res};
use super::lab::{new_block, BirdLab, Topology, RTPROT_BIRD};
use super::measure::{fmt_ms, ms, percentile};
use super::Config;

/// The longest a block may take to reach every node before it counts as failed.
const WAIT: Duration = Duration::from_secs(10);

/// What a node's watcher saw.
enum Seen {
    /// A `proto bird` route to `dst` in node `node`, at that instant.
    Route { node: usize, dst: IpNetwork, at: Instant },
    /// Node `node`'s subscription overflowed: events were lost.
    Overrun { node: usize },
}

/// One block's figures.
struct Block {
    /// The route on the first other node.
    first: Duration,
    /// The route on every other node: the convergence time.
    last: Duration,
    /// `Bird::reconfigure` (write the file, `birdc configure`) returned.
    reload: Duration,
}

/// Aborts the watcher tasks when dropped (also on error or Ctrl-C).
struct Watchers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Watchers {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Run the phase: full mesh, then reflectors.
pub async fn run(cfg: &Config, report: &mut Report) -> Res<()> {
    for (t, base) in [(Topology::FullMesh, 251u8), (Topology::Reflectors(cfg.reflectors), 252)] {
        check_stop()?;
        one_topology(cfg, t, base, report).await?;
    }
    Ok(())
}

async fn one_topology(cfg: &Config, topology: Topology, base: u8, report: &mut Report) -> Res<()> {
    let n = cfg.nodes;
    eprintln!("converge: {n} nodes, {}, {} new blocks", topology.label(), cfg.blocks);
    let (mut lab, _) = tokio::task::block_in_place(|| BirdLab::start("bgc", n, topology))?;
    let up = tokio::task::block_in_place(|| lab.wait_established(Duration::from_secs(60)))?;
    let want = 2 * topology.sessions(n);
    if up != want {
        return Err(format!(
            "{}: {up} of {want} session ends Established after 60 s",
            topology.label()
        )
        .into());
    }
    if !tokio::task::block_in_place(|| lab.wait_routes(Duration::from_secs(30))) {
        return Err(format!(
            "{}: the home blocks did not reach every node within 30 s",
            topology.label()
        )
        .into());
    }
    // What one `birdc` costs without any change: a process, the socket, a reply.
    let mut noop = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        tokio::task::block_in_place(|| lab.birdc(0, &["show", "status"]))?;
        noop.push(t.elapsed());
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watchers = Watchers(Vec::new());
    for (i, node) in lab.nodes.iter().enumerate() {
        let h = Handle::new(&NetNs::open(node.name())?).await?;
        let mut events = h.subscribe(&[EventKind::Route]).await?;
        let tx = tx.clone();
        watchers.0.push(tokio::spawn(async move {
            let _h = h;
            while let Some(ev) = events.next().await {
                let at = Instant::now();
                let seen = match ev {
                    Event::NewRoute(r) if r.protocol == RTPROT_BIRD => match r.dst {
                        Some(dst) => Seen::Route { node: i, dst, at },
                        None => continue,
                    },
                    Event::Overrun => Seen::Overrun { node: i },
                    _ => continue,
                };
                if tx.send(seen).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);

    let mut blocks = Vec::new();
    let mut failed = Vec::new();
    for k in 0..cfg.blocks {
        check_stop()?;
        if k > 0 && !cfg.gap.is_zero() {
            // The workload's pace (NETKIT_BENCH_BGP_GAP_MS), not a wait for anything.
            tokio::time::sleep(cfg.gap).await;
        }
        let origin = k % n;
        let block = new_block(base, k);
        let mut bcfg = lab.configs[origin].clone();
        bcfg.blocks.push(block);
        // Whatever the watchers reported before belongs to earlier blocks.
        while rx.try_recv().is_ok() {}
        let t0 = Instant::now();
        let bird = &lab.birds[origin];
        tokio::task::block_in_place(|| bird.reconfigure(&bcfg))?;
        let reload = t0.elapsed();
        lab.configs[origin] = bcfg;
        let mut at: Vec<Option<Instant>> = vec![None; n];
        at[origin] = Some(t0);
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut lost = None;
        while at.iter().any(Option::is_none) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Seen::Route { node, dst, at: t })) => {
                    if dst == block && at[node].is_none() {
                        at[node] = Some(t);
                    }
                }
                Ok(Some(Seen::Overrun { node })) => lost = Some(node),
                Ok(None) | Err(_) => break,
            }
        }
        let role = if topology.reflects(origin) { "reflector" } else { "node" };
        let missing: Vec<String> = (0..n)
            .filter(|&i| at[i].is_none())
            .map(|i| format!("b{}", i + 1))
            .collect();
        if !missing.is_empty() {
            let why = format!(
                "block {block} on b{} ({role}): no route on {} within {WAIT:?}{}",
                origin + 1,
                missing.join(", "),
                lost.map_or_else(String::new, |i| format!(" (events lost on b{})", i + 1))
            );
            eprintln!("  {why}");
            failed.push(why);
            continue;
        }
        // The kernel agrees: the route is in every other node's table.
        let absent: Vec<String> = tokio::task::block_in_place(|| {
            lab.nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != origin)
                .filter(|(_, node)| {
                    netkit_test_support::ip(&["-n", node.name(), "route", "show", &block.to_string(), "proto", "bird"])
                        .trim()
                        .is_empty()
                })
                .map(|(_, node)| node.name().to_string())
                .collect()
        });
        if !absent.is_empty() {
            let why = format!("block {block}: announced, then gone from {}", absent.join(", "));
            eprintln!("  {why}");
            failed.push(why);
            continue;
        }
        let others = || {
            at.iter()
                .enumerate()
                .filter(move |(i, _)| *i != origin)
                .filter_map(|(_, t)| *t)
        };
        let first = others().min().unwrap_or(t0).saturating_duration_since(t0);
        let last = others().max().unwrap_or(t0).saturating_duration_since(t0);
        let last_node = (0..n)
            .filter(|&i| i != origin)
            .max_by_key(|&i| at[i])
            .map_or(0, |i| i + 1);
        eprintln!(
            "  block {k:>2} {block} on b{} ({role}): reload {:>5.1} ms, first node {:>5.1} ms, every node {:>5.1} ms (last b{last_node})",
            origin + 1,
            ms(reload),
            ms(first),
            ms(last)
        );
        blocks.push(Block { first, last, reload });
    }
    drop(watchers);
    drop(lab);
    converge_report(cfg, topology, report, &blocks, &failed);
    report.row(
        &format!(
            "… for comparison: `birdc show status` round trip, no change ({} nodes, {}), p50 of 20",
            cfg.nodes,
            topology.label()
        ),
        fmt_ms(percentile(&noop, 50.0)),
    );
    Ok(())
}

fn converge_report(cfg: &Config, topology: Topology, report: &mut Report, blocks: &[Block], failed: &[String]) {
    let pick = |f: fn(&Block) -> Duration| blocks.iter().map(f).collect::<Vec<_>>();
    let (last, first, reload) = (pick(|b| b.last), pick(|b| b.first), pick(|b| b.reload));
    let gap = if cfg.gap.is_zero() {
        String::new()
    } else {
        format!(", {} ms apart", cfg.gap.as_millis())
    };
    let what = format!("{} nodes, {}, {} blocks{gap}", cfg.nodes, topology.label(), cfg.blocks);
    report.row(
        &format!("new block → kernel route on every other node ({what}), p50 / p99"),
        format!(
            "{} / {}",
            fmt_ms(percentile(&last, 50.0)),
            fmt_ms(percentile(&last, 99.0))
        ),
    );
    report.row(
        &format!("… on the first other node ({what}), p50 / p99"),
        format!(
            "{} / {}",
            fmt_ms(percentile(&first, 50.0)),
            fmt_ms(percentile(&first, 99.0))
        ),
    );
    report.row(
        &format!("… `Bird::reconfigure` on the owner: file written, `birdc configure` answered ({what}), p50 / p99"),
        format!(
            "{} / {}",
            fmt_ms(percentile(&reload, 50.0)),
            fmt_ms(percentile(&reload, 99.0))
        ),
    );
    report.target(
        &format!("check: every new block reached every node ({})", topology.label()),
        failed.is_empty(),
        if failed.is_empty() {
            format!("{} of {}", blocks.len(), cfg.blocks)
        } else {
            format!("{} failed: {}", failed.len(), failed.join("; "))
        },
    );
}
