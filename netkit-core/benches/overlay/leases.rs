//! Phases `leases` and `agent`: one agent facing many nodes that exist only as leases.
//!
//! The other nodes are leases written straight into the store (`LeaseRequest`s of nodes
//! `sim<i>`, backend vxlan with a `VtepMAC`, public IPs 172.20.x.y — on the agent's segment: its
//! `eth0` also holds 172.20.255.254/16), by a writer in the lab namespace (a store connection of
//! its own). The agent's node is a namespace on the lab's underlay; what it programs stays in
//! it.
//!
//! * **leases** (agent in this process, etcd): from the agent's start until its status shows
//!   every lease programmed (`entries` = 3 per peer); then `changes` times one new lease, timed
//!   from the writer's acquire returning (the lease is written) until the agent's status shows
//!   it programmed; with `leases` leases present and with `few` present, each with and without
//!   the status file an agent writes for `netkit agent status` (a JSON file of every peer,
//!   rewritten at every change).
//! * **agent** (`netkit agent` processes): RSS with `leases` peers (etcd store, and the file
//!   store in a directory), and the CPU time (/proc/PID/stat utime + stime) used over `idle` of
//!   idling afterwards.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use netkit_core::ipam::lease::{EtcdLeaseStore, FileLeaseStore, Lease, LeaseRequest, LeaseStore, SubnetPlan};
use netkit_core::NetNs;
use netkit_test_support::overlay::{ClusterNode, NsRuntime};
use netkit_test_support::KillOnDrop;

use super::measure::{clk_tck, fmt_ms, ms, percentile, process_ticks, quiet, status_kib, when};
use super::{check_stop, etcd_store, vxlan, Config, EtcdLab, Phase, Report, Res};

/// The cluster network of these phases: room for 16384 /24 subnets.
const NETWORK: &str = "10.64.0.0/10";
/// The key prefixes of the large and the small store.
const MANY: &str = "/bench/many";
const FEW: &str = "/bench/few";
/// The longest the agent may take to program everything before the phase fails.
const WAIT: Duration = Duration::from_secs(60);

fn plan() -> SubnetPlan {
    SubnetPlan::new(NETWORK.parse().expect("a network literal"), 24).expect("a /10 in /24s")
}

/// Simulated node `i`: its name, a public IP on 172.20.0.0/16 and a VTEP MAC.
fn sim(i: usize) -> LeaseRequest {
    let public = std::net::Ipv4Addr::new(172, 20, (i / 250) as u8, (i % 250 + 1) as u8);
    let mac = format!(
        "0a:58:00:{:02x}:{:02x}:{:02x}",
        (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8
    );
    LeaseRequest::new(format!("sim{i}"), public.into(), "vxlan")
        .backend_data(serde_json::json!({"VNI": 1, "VtepMAC": mac}))
        .ttl(Duration::from_secs(3600))
}

/// The lab: etcd, and a writer (a runtime in the lab namespace with a store per prefix).
struct Lab {
    lab: EtcdLab,
    writer: NsRuntime,
    many: EtcdLeaseStore,
    few: EtcdLeaseStore,
    hosts: std::ops::RangeFrom<u8>,
}

impl Lab {
    async fn new(cfg: &Config) -> Res<Lab> {
        let lab = EtcdLab::new("ovl").await?;
        let writer = NsRuntime::new(lab.cluster.lab().ns())?;
        let connect = |prefix: &'static str| {
            let ep = lab.endpoint.clone();
            writer.spawn(async move { EtcdLeaseStore::connect(&[ep], prefix, plan()).await })
        };
        let many = connect(MANY).await??;
        let few = connect(FEW).await??;
        let me = Lab {
            lab,
            writer,
            many,
            few,
            hosts: 1..,
        };
        let t = Instant::now();
        me.populate(&me.many, cfg.leases).await?;
        me.populate(&me.few, cfg.few).await?;
        eprintln!(
            "leases: {} + {} simulated nodes written in {:.1?}",
            cfg.leases,
            cfg.few,
            t.elapsed()
        );
        Ok(me)
    }

    /// Write `n` simulated nodes' leases into `store` (16 at a time).
    async fn populate(&self, store: &EtcdLeaseStore, n: usize) -> Res<Vec<Lease>> {
        let store = store.clone();
        let leases = self
            .writer
            .spawn(async move {
                futures::stream::iter(0..n)
                    .map(|i| {
                        let s = store.clone();
                        async move { s.acquire(&sim(i)).await }
                    })
                    .buffer_unordered(16)
                    .try_collect::<Vec<Lease>>()
                    .await
            })
            .await??;
        Ok(leases)
    }

    /// Write one lease; the instant the store confirmed it.
    async fn write(&self, store: &EtcdLeaseStore, req: LeaseRequest) -> Res<(Instant, Lease)> {
        let store = store.clone();
        Ok(self
            .writer
            .spawn(async move {
                let l = store.acquire(&req).await?;
                Ok::<_, netkit_core::ipam::lease::LeaseError>((Instant::now(), l))
            })
            .await??)
    }

    async fn release(&self, store: &EtcdLeaseStore, leases: Vec<Lease>) -> Res<()> {
        let store = store.clone();
        self.writer
            .spawn(async move {
                for l in &leases {
                    store.release(l).await?;
                }
                Ok::<_, netkit_core::ipam::lease::LeaseError>(())
            })
            .await??;
        Ok(())
    }

    /// A fresh agent node with 172.20.255.254/16 on its `eth0` besides its underlay address.
    fn node(&mut self, tag: &str) -> Res<ClusterNode> {
        let host = self.hosts.next().filter(|h| *h < 250).ok_or("out of node addresses")?;
        let node = ClusterNode::new(&self.lab.cluster, &format!("{tag}{host}"), 0, host);
        netkit_test_support::ip(&["-n", node.name(), "addr", "add", "172.20.255.254/16", "dev", "eth0"]);
        Ok(node)
    }
}

/// One in-process agent's figures.
struct Run {
    startup: Duration,
    /// From the start until the agent last published before going quiet.
    settled: Duration,
    changes: Vec<Duration>,
    /// Changes the agent showed before the writer's acquire returned (counted as 0).
    early: usize,
}

/// Run the `leases` and/or `agent` phases.
pub async fn run(cfg: &Config, report: &mut Report) -> Res<()> {
    let mut lab = Lab::new(cfg).await?;
    if cfg.phases.contains(&Phase::Leases) {
        let mut runs = Vec::new();
        for (n, which) in [(cfg.leases, MANY), (cfg.few, FEW)] {
            for status_file in [true, false] {
                check_stop()?;
                let r = one_agent(&mut lab, cfg, n, which, status_file).await?;
                eprintln!(
                    "  {n:>5} leases, status file {:<3}: all programmed in {:>7.1} ms, quiet after {:>7.1} ms; one change: median {}",
                    if status_file { "yes" } else { "no" },
                    ms(r.startup),
                    ms(r.settled),
                    fmt_ms(percentile(&r.changes, 50.0))
                );
                runs.push((n, status_file, r));
            }
        }
        leases_report(cfg, report, &runs);
    }
    if cfg.phases.contains(&Phase::Process) {
        let bin = super::netkit_binary(cfg)?;
        let dir = lab.lab.cluster.dir().join("file-store");
        let t = Instant::now();
        let store = FileLeaseStore::open(&dir, plan()).await?;
        for i in 0..cfg.leases {
            check_stop()?;
            store.acquire(&sim(i)).await?;
        }
        eprintln!(
            "agent: {} leases written to the file store in {:.1?}",
            cfg.leases,
            t.elapsed()
        );
        let mut figures = Vec::new();
        for kind in ["etcd", "file"] {
            check_stop()?;
            let store = match kind {
                "etcd" => format!("etcd={}", lab.lab.endpoint),
                _ => format!("file={}", dir.display()),
            };
            let f = process(&mut lab, cfg, &bin, &store).await?;
            eprintln!(
                "  netkit agent, {kind} store: RSS {:.1} MiB (peak {:.1}), {} ticks of CPU in {:?} idle",
                f.rss_kib as f64 / 1024.0,
                f.hwm_kib as f64 / 1024.0,
                f.idle_ticks,
                cfg.idle
            );
            figures.push((kind, f));
        }
        process_report(cfg, report, &figures);
    }
    Ok(())
}

/// An in-process agent facing the `n` leases under `prefix`: its start, then `changes` new
/// leases one at a time.
async fn one_agent(lab: &mut Lab, cfg: &Config, n: usize, prefix: &'static str, status_file: bool) -> Res<Run> {
    let node = lab.node("a")?;
    let mut acfg = node.config(vxlan(), Duration::from_secs(3600));
    acfg.public_ip = Some(node.node.ip.into());
    acfg.release_on_shutdown = true;
    if !status_file {
        acfg.status_file = None;
    }
    let store = if prefix == MANY {
        lab.many.clone()
    } else {
        lab.few.clone()
    };
    let t0 = Instant::now();
    let agent = node.start(acfg, etcd_store(&lab.lab.endpoint, prefix, plan())).await;
    let all = when(agent.status(), WAIT, move |s| {
        s.peers.len() == n && s.entries == 3 * n && s.peers.iter().all(|p| p.error.is_none())
    })
    .await
    .ok_or_else(|| {
        format!(
            "{n} leases not all programmed within {WAIT:?}: {:?}",
            agent.now().entries
        )
    })?;
    let startup = all.0.saturating_duration_since(t0);
    // Before timing single changes, let the agent finish what its own programming set off
    // (kernel events for every entry it installed): quiet means no status published for
    // 300 ms.
    let quiet = quiet(agent.status(), Duration::from_millis(300), WAIT)
        .await
        .ok_or_else(|| format!("the agent with {n} peers did not go quiet within {WAIT:?}"))?;
    let settled = quiet.saturating_duration_since(t0);
    let routes = netkit_test_support::ip(&["-n", node.name(), "route", "show", "proto", "78"]);
    if routes.lines().count() != n {
        return Err(format!("{} routes in the kernel for {n} peers", routes.lines().count()).into());
    }
    let mut changes = Vec::new();
    let mut added = Vec::new();
    let mut early = 0;
    for k in 0..cfg.changes {
        check_stop()?;
        let want = n + k + 1;
        let w = tokio::spawn(when(agent.status(), Duration::from_secs(10), move |s| {
            s.peers.len() == want && s.entries == 3 * want
        }));
        let (written, lease) = lab.write(&store, sim(n + k)).await?;
        added.push(lease);
        let Some((programmed, _)) = w.await? else {
            let s = agent.now();
            let errors: Vec<_> = s.peers.iter().filter_map(|p| p.error.clone()).take(3).collect();
            return Err(format!(
                "the lease of sim{} was not programmed within 10 s: {} peers, {} entries, errors {errors:?}",
                n + k,
                s.peers.len(),
                s.entries
            )
            .into());
        };
        if programmed < written {
            early += 1;
        }
        changes.push(programmed.saturating_duration_since(written));
    }
    agent.stop().await?;
    lab.release(&store, added).await?;
    drop(node);
    Ok(Run {
        startup,
        settled,
        changes,
        early,
    })
}

fn leases_report(cfg: &Config, report: &mut Report, runs: &[(usize, bool, Run)]) {
    let find = |n: usize, sf: bool| runs.iter().find(|(m, s, _)| *m == n && *s == sf).map(|(_, _, r)| r);
    for sf in [true, false] {
        let label = if sf {
            "with the status file"
        } else {
            "without the status file"
        };
        let (Some(big), Some(small)) = (find(cfg.leases, sf), find(cfg.few, sf)) else {
            continue;
        };
        report.row(
            &format!("{} leases, one agent {label}: start → all programmed", cfg.leases),
            fmt_ms(Some(big.startup)),
        );
        let (mb, ms_) = (percentile(&big.changes, 50.0), percentile(&small.changes, 50.0));
        report.row(
            &format!(
                "one lease added → programmed, median of {} ({label}): among {} / among {}",
                cfg.changes, cfg.leases, cfg.few
            ),
            format!(
                "{} / {}{}",
                fmt_ms(mb),
                fmt_ms(ms_),
                if big.early + small.early > 0 {
                    format!(
                        " ({} changes seen before the write returned, counted as 0)",
                        big.early + small.early
                    )
                } else {
                    String::new()
                }
            ),
        );
        report.target(
            &format!("{} leases programmed ≤ 2 s ({label})", cfg.leases),
            big.startup <= Duration::from_secs(2),
            fmt_ms(Some(big.startup)),
        );
        // "No more": the median among many within 20 % (+1 ms of scheduling noise) of the
        // median among few.
        let met = match (mb, ms_) {
            (Some(b), Some(s)) => ms(b) <= 1.2 * ms(s) + 1.0,
            _ => false,
        };
        report.target(
            &format!(
                "one change among {} costs no more than among {} (median within 20 % + 1 ms; {label})",
                cfg.leases, cfg.few
            ),
            met,
            format!("{} vs {}", fmt_ms(mb), fmt_ms(ms_)),
        );
    }
}

/// A `netkit agent` process's figures.
struct Process {
    startup: Duration,
    /// From the start until its status file last changed before going quiet.
    settled: Duration,
    /// CPU ticks used from its start until quiet.
    settle_ticks: u64,
    rss_kib: u64,
    hwm_kib: u64,
    idle_ticks: u64,
}

/// Run `netkit agent` with `store` in a fresh node until it has programmed every lease; its RSS,
/// then its CPU time over `cfg.idle`.
async fn process(lab: &mut Lab, cfg: &Config, bin: &Path, store: &str) -> Res<Process> {
    let node = lab.node("p")?;
    let status_file = node.dir.join("status.json");
    let ns = NetNs::open(node.name())?;
    let log = std::fs::File::create(node.dir.join("agent.log"))?;
    let t0 = Instant::now();
    let mut child = KillOnDrop::new(
        ns.command(bin)
            .args(["agent", "--store", store, "--etcd-prefix", MANY, "--network", NETWORK])
            .args(["--subnet-len", "24", "--backend", "vxlan", "--iface", "eth0"])
            .args(["--public-ip", &node.node.ip.to_string(), "--node", node.name()])
            .args(["--ttl", "1h", "--log-level", "warn", "--release-on-shutdown"])
            .arg("--status-file")
            .arg(&status_file)
            .arg("--subnet-file")
            .arg(node.subnet_file())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?,
    );
    let pid = child.id();
    let n = cfg.leases;
    let ready = tokio::task::block_in_place(|| {
        netkit_test_support::poll_for(WAIT, || {
            if super::stopped() {
                return Ok(false);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("netkit agent exited ({status})"));
            }
            let s = netkit_core::overlay::AgentStatus::read(&status_file).ok();
            match s {
                Some(s) if s.state == "running" && s.entries == 3 * n => Ok(true),
                other => Err(format!("entries {:?}", other.map(|s| s.entries))),
            }
        })
    });
    match ready {
        Ok(true) => {}
        Ok(false) => return Err("interrupted".into()),
        Err(why) => {
            let log = std::fs::read_to_string(node.dir.join("agent.log")).unwrap_or_default();
            return Err(
                format!("netkit agent ({store}) did not program {n} peers within {WAIT:?}: {why}\n{log}").into(),
            );
        }
    }
    let startup = t0.elapsed();
    // Idle means after the agent has dealt with what its own programming set off (the kernel
    // events of every entry it installed): its status file unchanged for 500 ms.
    let mut last = (0u64, Instant::now());
    let quiet = tokio::task::block_in_place(|| {
        netkit_test_support::poll_for(WAIT, || {
            if super::stopped() {
                return Ok(false);
            }
            let updated = netkit_core::overlay::AgentStatus::read(&status_file).map_or(0, |s| s.updated_ms);
            if updated != last.0 {
                last = (updated, Instant::now());
            }
            if last.1.elapsed() >= Duration::from_millis(500) {
                Ok(true)
            } else {
                Err(updated)
            }
        })
    });
    match quiet {
        Ok(true) => {}
        Ok(false) => return Err("interrupted".into()),
        Err(_) => return Err(format!("netkit agent ({store}) did not go quiet within {WAIT:?}").into()),
    }
    let settled = last.1.saturating_duration_since(t0);
    let settle_ticks = process_ticks(pid)?;
    let rss_kib = status_kib(pid, "VmRSS")?;
    let hwm_kib = status_kib(pid, "VmHWM")?;
    let before = process_ticks(pid)?;
    // The measurement window itself (nothing is awaited here).
    tokio::time::sleep(cfg.idle).await;
    let idle_ticks = process_ticks(pid)? - before;
    check_stop()?;
    // SIGTERM: a clean stop (it releases its lease), awaited at most 10 s.
    // SAFETY: kill(2) on our own child's pid, which it keeps until we reap it.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = tokio::task::block_in_place(|| {
        netkit_test_support::poll_for(Duration::from_secs(10), || match child.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => Err(()),
        })
    });
    drop(child);
    drop(node);
    Ok(Process {
        startup,
        settled,
        settle_ticks,
        rss_kib,
        hwm_kib,
        idle_ticks,
    })
}

fn process_report(cfg: &Config, report: &mut Report, figures: &[(&str, Process)]) {
    let tck = clk_tck();
    for (kind, f) in figures {
        report.row(
            &format!("`netkit agent` ({kind} store) with {} peers: RSS (peak)", cfg.leases),
            format!(
                "{:.1} MiB ({:.1} MiB); programmed all in {:.2} s, quiet after {:.2} s ({:.2} s of CPU)",
                f.rss_kib as f64 / 1024.0,
                f.hwm_kib as f64 / 1024.0,
                f.startup.as_secs_f64(),
                f.settled.as_secs_f64(),
                f.settle_ticks as f64 / tck
            ),
        );
        report.row(
            &format!(
                "`netkit agent` ({kind} store): CPU over {:?} of idle (once quiet)",
                cfg.idle
            ),
            format!(
                "{} ticks ({:.0} ms, {:.2} % of a core)",
                f.idle_ticks,
                f.idle_ticks as f64 * 1e3 / tck,
                f.idle_ticks as f64 / tck / cfg.idle.as_secs_f64() * 100.0
            ),
        );
    }
    if let Some((_, f)) = figures.iter().find(|(k, _)| *k == "etcd") {
        // ~0: at most one tick (10 ms) per 10 s of idle — a renewal or a stray wake-up.
        let allowed = (cfg.idle.as_secs_f64() / 10.0).ceil().max(1.0) as u64;
        report.target(
            "event-driven: ~0 CPU ticks while idle on etcd",
            f.idle_ticks <= allowed,
            format!("{} ticks in {:?}", f.idle_ticks, cfg.idle),
        );
    }
}
