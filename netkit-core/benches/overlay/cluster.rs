//! Phases `converge` and `expiry`: a cluster on etcd (etcd inside the lab, on the underlay),
//! every node's agent in this process inside the node's namespace, vxlan.
//!
//! * **converge**: `nodes − 1` nodes run (one pod each); `joins` times a new node joins (the
//!   cluster then has `nodes` nodes), is timed, checked and leaves again (its agent stops and
//!   releases its lease; its namespace is deleted). Time 0 is when the lease was written: the
//!   store's stamp (its `expires_at` minus the TTL), read from the new agent's status when it
//!   first shows the lease (which it does only after setting its node up, a few ms later). *Programmed*: every other agent's status lists the new node, reachable
//!   by vxlan. *Reached*: additionally an ICMP echo from the pod on every other node to the new
//!   node's VTEP address (its subnet's first address, on `flannel.1`) was answered — the answer
//!   needs the new node's routes back too. Probes go every 2 ms from raw sockets in the pods
//!   (test-support's `icmp::Pinger`). Untimed, the new node then gets a pod, which every other
//!   pod must reach; and after its agent stopped (lease released), the time until every
//!   other agent removed it is recorded too.
//! * **expiry**: `expire` of the running nodes stop without releasing their leases (TTL
//!   `ttl`); for each, from its lease's `expires_at` (as its agent last renewed it) to every
//!   remaining agent's status no longer listing it (its entries removed), by the wall clock.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netkit_core::ipam::lease::{LeaseError, LeaseEvent, LeaseStore};
use netkit_core::overlay::{AgentStatus, PeerMode};
use netkit_core::NetNsGuard;
use netkit_test_support::icmp::Pinger;
use netkit_test_support::overlay::{wait_peers, AgentTask, ClusterNode, NsRuntime};

use super::measure::{fmt_ms, ms, percentile, when};
use super::{check_stop, etcd_store, stopped, vxlan, Config, EtcdLab, Phase, Report, Res};

/// The key prefix of this phase's leases.
const PREFIX: &str = "/bench/cluster";
/// The longest a join may take to converge before it counts as failed.
const WAIT: Duration = Duration::from_secs(10);

/// One join's figures.
struct Join {
    programmed: Duration,
    reached: Duration,
    released: Option<Duration>,
    /// Pods that did not reach the new node's pod (untimed check).
    pod_failures: usize,
}

/// Run the `converge` and/or `expiry` phases (they share the cluster).
pub async fn run(cfg: &Config, report: &mut Report) -> Res<()> {
    let lab = EtcdLab::new("ovc").await?;
    let plan = netkit_test_support::lease::flannel();
    let running = cfg.nodes - 1;
    eprintln!("cluster: {running} nodes on etcd, vxlan, TTL {:?}", cfg.ttl);
    let nodes: Vec<ClusterNode> = (1..=running)
        .map(|i| ClusterNode::new(&lab.cluster, &format!("s{i}"), 0, i as u8))
        .collect();
    let mut agents = Vec::new();
    for n in &nodes {
        let store = etcd_store(&lab.endpoint, PREFIX, plan);
        agents.push(n.start(n.config(vxlan(), cfg.ttl), store).await);
    }
    for a in &agents {
        wait_peers(a, running - 1).await;
    }
    let mut pods = Vec::new();
    let mut pingers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let (ns, ip) = n.pod(&lab.cluster, &format!("s{}p", i + 1)).await;
        pingers.push(Pinger::new(&ns)?);
        pods.push((ns, ip));
    }
    if cfg.phases.contains(&Phase::Converge) {
        let mut joins = Vec::new();
        let mut failed = Vec::new();
        for j in 0..cfg.joins {
            check_stop()?;
            match join(&lab, plan, cfg, j, &agents, &mut pingers).await? {
                Ok(s) => {
                    eprintln!(
                        "  join {:>2}: programmed {:>6.1} ms, reached {:>6.1} ms, released → removed {}",
                        j + 1,
                        ms(s.programmed),
                        ms(s.reached),
                        fmt_ms(s.released)
                    );
                    joins.push(s);
                }
                Err(why) => {
                    eprintln!("  join {:>2}: FAILED: {why}", j + 1);
                    failed.push(why);
                }
            }
        }
        converge_report(cfg, report, &joins, &failed);
    }
    if cfg.phases.contains(&Phase::Expiry) {
        check_stop()?;
        expiry(&lab, cfg, report, &nodes, agents).await?;
    }
    drop(pods);
    Ok(())
}

/// Join number `j`: `Ok(Err(why))` when it did not converge within [`WAIT`].
async fn join(
    lab: &EtcdLab,
    plan: netkit_core::ipam::lease::SubnetPlan,
    cfg: &Config,
    j: usize,
    agents: &[AgentTask],
    pingers: &mut Vec<Pinger>,
) -> Res<Result<Join, String>> {
    let node = ClusterNode::new(&lab.cluster, &format!("j{j}"), 0, (100 + j) as u8);
    let name = node.name().to_string();
    // Every other agent's watcher is in place before the new node exists.
    let programmed: Vec<_> = agents
        .iter()
        .map(|a| {
            let n = name.clone();
            tokio::spawn(when(a.status(), WAIT, move |s| {
                s.peers
                    .iter()
                    .any(|p| p.node == n && p.error.is_none() && p.mode == PeerMode::Vxlan)
            }))
        })
        .collect();
    let mut jcfg = node.config(vxlan(), cfg.ttl);
    jcfg.release_on_shutdown = true;
    let agent = node.start(jcfg, etcd_store(&lab.endpoint, PREFIX, plan)).await;
    let Some((seen, seen_wall)) = when(agent.status(), WAIT, |s| s.lease.is_some()).await else {
        return Ok(Err(format!("{name} got no lease within {WAIT:?}")));
    };
    let Some(lease) = agent.now().lease else {
        return Err(format!("{name}: its lease went away").into());
    };
    let IpAddr::V4(vtep) = lease.subnet.network() else {
        return Err(format!("{name}: {} is no IPv4 subnet", lease.subnet).into());
    };
    // The lease was written when the store stamped it: its expiry minus the TTL (etcd grants
    // the TTL asked for, whole seconds of at least its 1 s minimum). The agent shows it in its
    // status only after setting its node up, a few milliseconds later; other agents may
    // program it before that.
    let written_wall = UNIX_EPOCH + Duration::from_millis(lease.expires_ms) - cfg.ttl;
    let t0 = seen - seen_wall.duration_since(written_wall).unwrap_or_default();
    let replies = probe_all(pingers, vtep, WAIT).await?;
    let mut prog_at = Vec::new();
    for w in programmed {
        prog_at.push(w.await?.map(|(t, _)| t));
    }
    if let Some(i) = prog_at.iter().position(Option::is_none) {
        return Ok(Err(format!("node s{} did not program {name} within {WAIT:?}", i + 1)));
    }
    if let Some(i) = replies.iter().position(Option::is_none) {
        return Ok(Err(format!(
            "the pod on s{} got no answer from {vtep} within {WAIT:?}",
            i + 1
        )));
    }
    let last_programmed = prog_at.iter().flatten().max().copied().unwrap_or(t0);
    let last_reply = replies.iter().flatten().max().copied().unwrap_or(t0);
    let programmed = last_programmed.saturating_duration_since(t0);
    let reached = last_programmed.max(last_reply).saturating_duration_since(t0);

    // Untimed: a pod on the new node, reached from every other pod.
    let (pod, pod_ip): (NetNsGuard, Ipv4Addr) = node.pod(&lab.cluster, &format!("j{j}p")).await;
    let pod_failures = probe_all(pingers, pod_ip, Duration::from_secs(3))
        .await?
        .iter()
        .filter(|r| r.is_none())
        .count();

    // It leaves: its agent releases the lease; every other agent removes it.
    let removed: Vec<_> = agents
        .iter()
        .map(|a| {
            let n = name.clone();
            tokio::spawn(when(a.status(), WAIT, move |s| !s.peers.iter().any(|p| p.node == n)))
        })
        .collect();
    let t_stop = Instant::now();
    agent.stop().await?;
    let mut released = Some(Duration::ZERO);
    for w in removed {
        released = match (released, w.await?) {
            (Some(r), Some((t, _))) => Some(r.max(t.saturating_duration_since(t_stop))),
            _ => None,
        };
    }
    drop(pod);
    drop(node);
    Ok(Ok(Join {
        programmed,
        reached,
        released,
        pod_failures,
    }))
}

/// Ping `dst` from every pod at once (one blocking thread each, an echo every 2 ms): the
/// instant each first answer came, `None` for none within `within`.
async fn probe_all(pingers: &mut Vec<Pinger>, dst: Ipv4Addr, within: Duration) -> Res<Vec<Option<Instant>>> {
    let tasks: Vec<_> = pingers
        .drain(..)
        .map(|mut p| {
            tokio::task::spawn_blocking(move || {
                let t = p.first_reply(dst, Duration::from_millis(2), within, stopped);
                (p, t)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        let (p, at) = t.await?;
        pingers.push(p);
        out.push(at);
    }
    Ok(out)
}

fn converge_report(cfg: &Config, report: &mut Report, joins: &[Join], failed: &[String]) {
    let programmed: Vec<Duration> = joins.iter().map(|j| j.programmed).collect();
    let reached: Vec<Duration> = joins.iter().map(|j| j.reached).collect();
    let released: Vec<Duration> = joins.iter().filter_map(|j| j.released).collect();
    let pod_failures: usize = joins.iter().map(|j| j.pod_failures).sum();
    let what = format!("{} nodes, {} joins", cfg.nodes, cfg.joins);
    let (p50, p99) = (percentile(&reached, 50.0), percentile(&reached, 99.0));
    report.row(
        &format!("join: lease → programmed by every other agent ({what}), p50 / p99"),
        format!(
            "{} / {}",
            fmt_ms(percentile(&programmed, 50.0)),
            fmt_ms(percentile(&programmed, 99.0))
        ),
    );
    report.row(
        &format!("join: lease → reached by ping from a pod on every other node ({what}), p50 / p99"),
        format!("{} / {}", fmt_ms(p50), fmt_ms(p99)),
    );
    report.row(
        "leave: agent stopped, lease released → removed by every other agent, p50 / max",
        format!(
            "{} / {}",
            fmt_ms(percentile(&released, 50.0)),
            fmt_ms(percentile(&released, 100.0))
        ),
    );
    report.row(
        "the new node's pod reached from every other pod (untimed check)",
        format!("{} of {} probes failed", pod_failures, joins.len() * (cfg.nodes - 1)),
    );
    let ok = failed.is_empty();
    let note = if ok {
        String::new()
    } else {
        format!(
            "; {} of {} joins failed: {}",
            failed.len(),
            cfg.joins,
            failed.join("; ")
        )
    };
    report.target(
        "convergence p50 ≤ 200 ms",
        ok && p50.is_some_and(|d| d <= Duration::from_millis(200)),
        format!("{}{note}", fmt_ms(p50)),
    );
    report.target(
        "convergence p99 ≤ 1 s",
        ok && p99.is_some_and(|d| d <= Duration::from_secs(1)),
        format!("{}{note}", fmt_ms(p99)),
    );
    report.target(
        "every pod reaches the new node's pod",
        ok && pod_failures == 0,
        format!("{pod_failures} failed probes"),
    );
}

/// Signed milliseconds from `from` to `t`.
fn lag_of(t: SystemTime, from: SystemTime) -> f64 {
    match t.duration_since(from) {
        Ok(d) => ms(d),
        Err(e) => -ms(e.duration()),
    }
}

/// Stop `expire` agents without releasing their leases; time from each lease's expiry to its
/// removal by every remaining agent.
async fn expiry(
    lab: &EtcdLab,
    cfg: &Config,
    report: &mut Report,
    nodes: &[ClusterNode],
    mut agents: Vec<AgentTask>,
) -> Res<()> {
    let k = cfg.expire.min(agents.len().saturating_sub(1));
    if k == 0 {
        return Err("expiry needs at least two running nodes (NETKIT_BENCH_OVERLAY_NODES ≥ 3)".into());
    }
    let victims = agents.split_off(agents.len() - k);
    eprintln!(
        "expiry: stopping {k} nodes (TTL {:?}) without releasing their leases",
        cfg.ttl
    );
    let bound = cfg.ttl + Duration::from_secs(10);
    // The store's own view, from the lab: when etcd deleted each lease (its watch's event).
    let store_rt = NsRuntime::new(lab.cluster.lab().ns())?;
    let (gone_tx, mut gone_rx) = tokio::sync::mpsc::unbounded_channel::<(String, SystemTime)>();
    let connect = etcd_store(&lab.endpoint, PREFIX, netkit_test_support::lease::flannel());
    let mut store_watch = store_rt.spawn(async move {
        let store = connect().await?;
        let mut w = store.watch().await?;
        while let Some(ev) = w.next_event().await {
            if let LeaseEvent::Removed(l) = ev? {
                let _ = gone_tx.send((l.meta.node, SystemTime::now()));
            }
        }
        Ok::<(), LeaseError>(())
    });
    let mut watchers = Vec::new();
    for v in &victims {
        let name = v.now().node;
        let per_observer: Vec<_> = agents
            .iter()
            .map(|a| {
                let n = name.clone();
                tokio::spawn(when(a.status(), bound, move |s: &AgentStatus| {
                    !s.peers.iter().any(|p| p.node == n)
                }))
            })
            .collect();
        watchers.push((name, per_observer));
    }
    let mut expires = Vec::new();
    for v in victims {
        let rx = v.status();
        v.stop().await?;
        let s = rx.borrow().clone();
        let lease = s.lease.ok_or_else(|| format!("{} had no lease", s.node))?;
        expires.push((lease.subnet, UNIX_EPOCH + Duration::from_millis(lease.expires_ms)));
    }
    let mut store_gone = std::collections::BTreeMap::new();
    while store_gone.len() < k {
        tokio::select! {
            got = gone_rx.recv() => match got {
                Some((node, at)) => {
                    if watchers.iter().any(|(victim, _)| *victim == node) {
                        store_gone.entry(node).or_insert(at);
                    }
                }
                None => break,
            },
            r = &mut store_watch => {
                return Err(format!("the lab's watch of the store ended: {r:?}").into());
            }
            () = tokio::time::sleep(bound) => break,
        }
    }
    store_watch.abort();
    let mut lags_ms = Vec::new();
    let mut store_lags_ms = Vec::new();
    let mut failed = Vec::new();
    for ((name, per_observer), (subnet, expires_at)) in watchers.into_iter().zip(expires) {
        let mut last: Option<SystemTime> = Some(UNIX_EPOCH);
        for w in per_observer {
            last = match (last, w.await?) {
                (Some(l), Some((_, wall))) => Some(l.max(wall)),
                _ => None,
            };
        }
        match last {
            Some(t) => {
                let lag = lag_of(t, expires_at);
                let store_lag = store_gone.get(&name).map(|s| lag_of(*s, expires_at));
                if let Some(l) = store_lag {
                    store_lags_ms.push(l);
                }
                // The kernel agrees: the first remaining node has no route to it any more.
                let routes = netkit_test_support::ip(&["-n", nodes[0].name(), "route", "show", &subnet.to_string()]);
                if !routes.trim().is_empty() {
                    failed.push(format!("{name}: route still there: {}", routes.trim()));
                }
                eprintln!(
                    "  {name}: etcd deleted its lease {} ms, every agent removed it {lag:+.0} ms after it expired",
                    store_lag.map_or_else(|| "?".into(), |l| format!("{l:+.0}"))
                );
                lags_ms.push(lag);
            }
            None => failed.push(format!("{name}: not removed within TTL + 10 s")),
        }
    }
    store_lags_ms.sort_by(f64::total_cmp);
    lags_ms.sort_by(f64::total_cmp);
    let median = lags_ms.get(lags_ms.len() / 2).copied();
    let max = lags_ms.last().copied();
    let fmt = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:+.0} ms"));
    report.row(
        &format!(
            "lease expiry → removed by every other agent ({k} nodes, TTL {:?}), median / max after expires_at",
            cfg.ttl
        ),
        format!("{} / {}", fmt(median), fmt(max)),
    );
    report.row(
        "… of which etcd's own expiry: lease expires_at → key deleted (the lab's watch), median / max",
        format!(
            "{} / {}",
            fmt(store_lags_ms.get(store_lags_ms.len() / 2).copied()),
            fmt(store_lags_ms.last().copied())
        ),
    );
    let note = if failed.is_empty() {
        String::new()
    } else {
        format!("; {}", failed.join("; "))
    };
    report.target(
        "lease expiry to clean-up within TTL + 1 s",
        failed.is_empty() && max.is_some_and(|m| m <= 1000.0),
        format!("max {}{note}", fmt(max)),
    );
    Ok(())
}
