//! Services bench (issue 17 §4, services): netkit's service proxy across a simulated cluster on a
//! real etcd, against kube-proxy's iptables mode with the same services, in one run.
//!
//! ```sh
//! sudo cargo bench -p netkit-core --features etcd --bench services
//! NETKIT_BENCH_QUICK=1 sudo -E cargo bench -p netkit-core --features etcd --bench services   # smoke
//! ```
//!
//! For each service count S of `NETKIT_BENCH_SVC_LEVELS` (default `10,1000`), a fresh lab
//! (test-support's `cluster`: a lab namespace whose bridge is the underlay) with a real etcd
//! (Debian's `etcd-server`) on 192.168.50.250 inside it, and:
//!
//! 1. **Store and sync**: S ClusterIP services (`default/svc-<i>`, 10.96.0.10 + i, TCP 80 →
//!    8080) with 10 endpoints each written by `catalog::put_service`/`put_endpoints` (fake
//!    addresses, except the probed service's, the last one), then three nodes (namespaces on
//!    the underlay), each with a [`ServiceProxy`] in this process on a runtime inside the node
//!    (so its etcd connection is the node's), an `EtcdObjectStore` and the node's nftables
//!    firewall (`firewall::open` with a state directory of this bench). The proxies are started
//!    one after another; each is timed from its start (store connection and firewall open
//!    included) to its status saying `synced`.
//! 2. **Endpoint changes**: `CHANGES` single-endpoint changes (`catalog::add_endpoint`, then
//!    `remove_endpoint` of the same address, on a random service other than the probed one),
//!    each timed from the store write returning (stamped on the writer's runtime) to
//!    `ProxyStatus::applied` having grown on every node (the status handles polled every
//!    ~100 µs by a thread of the bench); p50 and p99, and the write's own time. The three
//!    proxies share this process, so their libnftables transactions run one after another on
//!    netkit's single libnftables thread (separate processes would run them side by side).
//! 3. **First packet**: `CONNS` new TCP connections (after 5 not counted), each connect + one
//!    byte echoed, from a client namespace on the underlay to the probed service's cluster IP,
//!    routed through node 1, whose nftables DNAT sends them to a real server in a pod behind
//!    node 1 (the probed service's 10 endpoints are 10 addresses of that pod); p50 and p99.
//! 4. **Floor**: the firewall operation alone for one service change (a second handle on node
//!    1's firewall, same state directory: one owner's service replaced with 11, then 10
//!    endpoints), `FLOOR` times; then 10 more under `strace -f -T` (when installed) for the
//!    time spent inside the kernel's netlink calls: `sendmsg` (nf_tables transactions, validated
//!    and committed inside the call) and `recvmsg` (answers, and the dumps libnftables reads
//!    its cache from).
//! 5. **kube-proxy** (`services/kube_proxy.rs`): the same S services in kube-proxy's iptables
//!    layout in a separate node namespace (with its own pod and client): one
//!    `iptables-restore --noflush --counters` of the whole table (the probed service last in
//!    `KUBE-SERVICES`), first-packet latency, a second full restore with the probed service in
//!    the middle and its latency, `KP_CHANGES` partial syncs for one endpoint change, and an
//!    empty `--noflush` restore (the fixed cost of one iptables-restore with that table
//!    loaded). With `iptables-restore` (nf_tables backend) and `iptables-legacy-restore` where
//!    the kernel has the legacy tables (otherwise skipped, saying so).
//!
//! Then for each S of `NETKIT_BENCH_SVC_FW_LEVELS` (default none) a **firewall-only** level:
//! no etcd and no proxies. Node 1's firewall is loaded directly with exactly the firewall
//! services the proxy makes for those services (`service::firewall_services`), 1,000 per
//! transaction; then 3, 4 and 5 as above. (It was the only way to reach 10,000 services while
//! the proxy's sync was one transaction per service; the proxy now reconciles in batches.)
//!
//! Knobs `NETKIT_BENCH_SVC_*` (defaults; `NETKIT_BENCH_QUICK=1` in brackets): `LEVELS`
//! `10,1000,10000` [`10,200`], `FW_LEVELS` none [none] (either may be empty, not both), `CHANGES` 50 [10],
//! `CONNS` 300 [100], `KP_CHANGES` 5 [3], `FLOOR` 20 [10],
//! `RESTORES` `iptables-restore,iptables-legacy-restore`.
//!
//! Prints a markdown table with each level's figure side by side and the ratio of the largest
//! S to the smallest, the kube-proxy peers, and the targets (met / MISSED). Needs root.
//! Everything lives in namespaces this program makes (names `nk<pid>x…`); they are deleted
//! (etcd killed first) on exit, error, panic or Ctrl-C, and those of an earlier run that was
//! killed (with the etcd inside) at start.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use netkit_core::firewall::{self, Driver, Endpoint, Firewall, FirewallOptions, Protocol, Rules, Service};
use netkit_core::service::{
    catalog, EndpointSpec, EndpointsSpec, ProxyConfig, ProxyStatus, ServicePort, ServiceProxy, ServiceSpec,
};
use netkit_core::store::EtcdObjectStore;
use netkit_core::{NetNs, NetNsGuard};
use netkit_test_support::cluster::{Cluster, Node};
use netkit_test_support::etcd::Etcd;
use netkit_test_support::overlay::NsRuntime;
use tokio::sync::oneshot;

#[path = "common/echo.rs"]
mod echo;
#[path = "common/harness.rs"]
mod harness;
#[path = "services/kube_proxy.rs"]
mod kube_proxy;
// Only the percentiles and formatting are used here (the rest serves the overlay agent benches).
#[allow(dead_code)]
#[path = "common/measure.rs"]
mod measure;

use echo::{first_packets, EchoServer};
use harness::{check_stop, delete_namespaces, signals, stopped, Cleanup, Report, Res};
use measure::percentile;

/// The prefix of this bench's knobs.
const KNOBS: &str = "NETKIT_BENCH_SVC_";
/// Endpoints per service.
const EPS: usize = 10;
/// The address of etcd on the lab's underlay.
const ETCD_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 250);
/// The pod behind a DNAT node: its gateway (the node) and its first of `EPS` addresses.
const POD_GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const POD_FIRST: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
/// The service port and the endpoints' port.
const PORT: u16 = 80;
const TARGET: u16 = 8080;
/// The longest a proxy may take to sync, and an endpoint change to reach every node.
const SYNC_WAIT: Duration = Duration::from_secs(180);
const CHANGE_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Configuration

struct Config {
    quick: bool,
    levels: Vec<usize>,
    fw_levels: Vec<usize>,
    changes: usize,
    conns: usize,
    kp_changes: usize,
    floor: usize,
    restores: Vec<String>,
    restore_limit: Duration,
}

fn config() -> Res<Config> {
    let quick = harness::quick();
    let q = |full: usize, small: usize| if quick { small } else { full };
    let numbers = |name: &str, default: &str| -> Res<Vec<usize>> {
        let mut v = Vec::new();
        // Set but blank: no level of this kind.
        if std::env::var(name).is_ok_and(|v| v.trim().is_empty()) {
            return Ok(v);
        }
        for l in harness::list(name, default) {
            match l.parse::<usize>() {
                Ok(n) if (2..=20_000).contains(&n) => v.push(n),
                _ => return Err(format!("{name}: {l:?} is not a number from 2 to 20000").into()),
            }
        }
        Ok(v)
    };
    let levels = numbers(
        "NETKIT_BENCH_SVC_LEVELS",
        if quick { "10,200" } else { "10,1000,10000" },
    )?;
    let fw_levels = numbers("NETKIT_BENCH_SVC_FW_LEVELS", "")?;
    if levels.is_empty() && fw_levels.is_empty() {
        return Err("NETKIT_BENCH_SVC_LEVELS and _FW_LEVELS: no level".into());
    }
    Ok(Config {
        quick,
        levels,
        fw_levels,
        changes: harness::knob(KNOBS, "CHANGES", q(50, 10), 2..=1000)?,
        conns: harness::knob(KNOBS, "CONNS", q(300, 100), 10..=100_000)?,
        kp_changes: harness::knob(KNOBS, "KP_CHANGES", q(5, 3), 1..=100)?,
        floor: harness::knob(KNOBS, "FLOOR", q(20, 10), 2..=10_000)?,
        restore_limit: Duration::from_secs(harness::knob(KNOBS, "KP_LIMIT", q(120, 30), 1..=3600)? as u64),
        restores: harness::list("NETKIT_BENCH_SVC_RESTORES", "iptables-restore,iptables-legacy-restore"),
    })
}

// ---------------------------------------------------------------------------
// The service set

/// Service `i`'s id.
fn id(i: usize) -> String {
    format!("default/svc-{i}")
}

/// Service `i`'s cluster IP: 10.96.0.10 + i.
fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + i as u32)
}

/// The `EPS` endpoint addresses of service `i` of `s`: the probed one (the last) has the pod's,
/// the others fake ones from 10.248.0.1 on.
fn endpoints(i: usize, s: usize) -> Vec<Ipv4Addr> {
    let base = if i == s - 1 {
        u32::from(POD_FIRST)
    } else {
        u32::from(Ipv4Addr::new(10, 248, 0, 1)) + (i * EPS) as u32
    };
    (0..EPS as u32).map(|j| Ipv4Addr::from(base + j)).collect()
}

/// The node name endpoint `j` of service `i` runs on (the probed service's: node-1).
fn ep_node(i: usize, s: usize, j: usize) -> String {
    if i == s - 1 {
        "node-1".into()
    } else {
        format!("node-{}", 1 + (i + j) % 3)
    }
}

/// The extra endpoint of change `k` (10.252.0.1 + k).
fn extra(k: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 252, 0, 1)) + k as u32)
}

/// Write `s` services with their endpoints, 64 writes in flight.
async fn load(store: EtcdObjectStore, s: usize) -> Res<()> {
    let results: Vec<Res<()>> = futures::stream::iter(0..s)
        .map(|i| {
            let store = store.clone();
            async move {
                let spec = ServiceSpec::new(IpAddr::V4(vip(i)), vec![ServicePort::new(PORT).target_port(TARGET)]);
                catalog::put_service(&store, &id(i), &spec).await?;
                let eps = EndpointsSpec {
                    endpoints: endpoints(i, s)
                        .into_iter()
                        .enumerate()
                        .map(|(j, ip)| EndpointSpec::new(IpAddr::V4(ip), &ep_node(i, s, j)))
                        .collect(),
                };
                catalog::put_endpoints(&store, &id(i), &eps).await?;
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

// ---------------------------------------------------------------------------
// The lab

/// A service proxy on its node's runtime; stopped (rules left) when dropped.
struct NodeProxy {
    status: Arc<Mutex<ProxyStatus>>,
    stop: Option<oneshot::Sender<()>>,
    // Dropped last: the proxy's task goes with it.
    _rt: NsRuntime,
}

impl NodeProxy {
    /// Start node `name`'s proxy in `ns` on the etcd at `endpoint`, its firewall state in
    /// `state`.
    async fn start(ns: &NetNs, name: &str, endpoint: &str, state: PathBuf) -> Res<NodeProxy> {
        let rt = NsRuntime::new(ns)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (tx, rx) = oneshot::channel::<Result<Arc<Mutex<ProxyStatus>>, String>>();
        let (ns, name, endpoint) = (ns.clone(), name.to_string(), endpoint.to_string());
        rt.spawn(async move {
            let store = match EtcdObjectStore::connect(&[&endpoint], EtcdObjectStore::DEFAULT_PREFIX).await {
                Ok(s) => s,
                Err(e) => return drop(tx.send(Err(format!("{name}: etcd: {e}")))),
            };
            let options = FirewallOptions::default().driver(Driver::Nftables).state_dir(state);
            let fw = match firewall::open(&ns, options).await {
                Ok(f) => f,
                Err(e) => return drop(tx.send(Err(format!("{name}: firewall: {e}")))),
            };
            let proxy = ServiceProxy::new(store, fw, ns, ProxyConfig::new(&name));
            let _ = tx.send(Ok(proxy.status()));
            proxy
                .run(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let status = rx.await.map_err(|_| "the proxy's runtime ended")??;
        Ok(NodeProxy {
            status,
            stop: Some(stop),
            _rt: rt,
        })
    }

    fn status(&self) -> ProxyStatus {
        self.status.lock().expect("status lock").clone()
    }
}

impl Drop for NodeProxy {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

/// A node that translates service addresses for a client: the node, a pod behind it (10.244.1.2–11,
/// gateway 10.244.1.1 on the node) with an echo server, and a client namespace on the underlay
/// routing 10.96.0.0/12 through the node.
struct Site {
    server: EchoServer,
    client: Node,
    _pod: NetNsGuard,
}

impl Site {
    fn new(cluster: &Cluster, node: &Node, tag: &str, client_host: u8) -> Res<Site> {
        use netkit_test_support::ip;
        let pod = cluster.pod(&format!("{tag}pod"));
        let (n, p) = (node.name().to_string(), pod.name().ok_or("unnamed pod")?.to_string());
        ip(&[
            "-n", &n, "link", "add", "pod0", "type", "veth", "peer", "name", "eth0", "netns", &p,
        ]);
        ip(&["-n", &n, "addr", "add", &format!("{POD_GW}/24"), "dev", "pod0"]);
        ip(&["-n", &n, "link", "set", "pod0", "up"]);
        ip(&["-n", &p, "link", "set", "eth0", "up"]);
        for j in 0..EPS as u32 {
            let a = Ipv4Addr::from(u32::from(POD_FIRST) + j);
            ip(&["-n", &p, "addr", "add", &format!("{a}/24"), "dev", "eth0"]);
        }
        ip(&["-n", &p, "route", "add", "default", "via", &POD_GW.to_string()]);
        netkit_core::sysctl::set(&node.ns, "net.ipv4.ip_forward", "1")?;
        let client = cluster.node(&format!("{tag}cl"), 0, client_host);
        ip(&[
            "-n",
            client.name(),
            "route",
            "add",
            "10.96.0.0/12",
            "via",
            &node.ip.to_string(),
        ]);
        let server = EchoServer::start(&pod, TARGET)?;
        Ok(Site {
            server,
            client,
            _pod: pod,
        })
    }

    /// `n` new connections to `to` from the client (see [`first_packets`]).
    fn first_packets(&self, to: SocketAddr, n: usize) -> Res<Vec<Duration>> {
        let _ = &self.server;
        first_packets(&self.client.ns, to, n)
    }
}

/// One level's lab. Fields drop in order: proxies and the writer first, etcd and the lab last.
struct Lab {
    proxies: Vec<NodeProxy>,
    store: EtcdObjectStore,
    writer: NsRuntime,
    site: Site,
    nodes: Vec<Node>,
    endpoint: String,
    state: tempfile::TempDir,
    _etcd: Etcd,
    cluster: Cluster,
}

impl Lab {
    async fn new(s: usize) -> Res<Lab> {
        let cluster = Cluster::new(&format!("sv{s}"), 1);
        cluster
            .lab()
            .ip(&["addr", "add", &format!("{ETCD_IP}/24"), "dev", "ul0"]);
        let lab = cluster.lab().ns().clone();
        let etcd = tokio::task::spawn_blocking(move || Etcd::start_in(&lab, IpAddr::V4(ETCD_IP))).await?;
        let endpoint = etcd.endpoint();
        let writer = NsRuntime::new(cluster.lab().ns())?;
        let ep = endpoint.clone();
        let store = writer
            .spawn(async move { EtcdObjectStore::connect(&[ep], EtcdObjectStore::DEFAULT_PREFIX).await })
            .await??;
        let nodes: Vec<Node> = (1..=3).map(|k| cluster.node(&format!("n{k}"), 0, k)).collect();
        let site = Site::new(&cluster, &nodes[0], "s", 200)?;
        let state = tempfile::Builder::new().prefix("netkit-bench-svc-").tempdir()?;
        Ok(Lab {
            proxies: Vec::new(),
            store,
            writer,
            site,
            nodes,
            endpoint,
            state,
            _etcd: etcd,
            cluster,
        })
    }

    /// Node `k`'s firewall options (its own state directory).
    fn fw_options(&self, k: usize) -> FirewallOptions {
        FirewallOptions::default()
            .driver(Driver::Nftables)
            .state_dir(self.state.path().join(format!("fw-node-{}", k + 1)))
    }
}

// ---------------------------------------------------------------------------
// One level

/// The figures of one level.
#[derive(Default)]
struct Level {
    s: usize,
    /// Whether proxies ran (else the firewall was loaded directly).
    proxy: bool,
    kernel: Option<KernelSplit>,
    load: Duration,
    sync: Vec<Duration>,
    change: Vec<Duration>,
    write: Vec<Duration>,
    first: Vec<Duration>,
    floor: Vec<Duration>,
    kp: Vec<KpFigures>,
}

/// kube-proxy's figures with one `iptables-restore` binary.
#[derive(Default)]
struct KpFigures {
    restore: String,
    skipped: Option<String>,
    /// `None`: killed after the time limit.
    full: Option<Duration>,
    rules: usize,
    first_last: Vec<Duration>,
    first_middle: Vec<Duration>,
    partial: Vec<Duration>,
    empty: Option<Duration>,
}

async fn level(cfg: &Config, s: usize) -> Res<Level> {
    let mut fig = Level {
        s,
        proxy: true,
        ..Default::default()
    };
    eprintln!("S={s}: lab, etcd");
    let mut lab = Lab::new(s).await?;

    // 1. The store, then the proxies one by one.
    eprintln!("S={s}: writing {s} services × {EPS} endpoints");
    let t = Instant::now();
    lab.writer.spawn(load(lab.store.clone(), s)).await??;
    fig.load = t.elapsed();
    for k in 0..3 {
        check_stop()?;
        let node = format!("node-{}", k + 1);
        let state = lab.state.path().join(format!("fw-node-{}", k + 1));
        let t = Instant::now();
        let proxy = NodeProxy::start(&lab.nodes[k].ns, &node, &lab.endpoint, state).await?;
        loop {
            let st = proxy.status();
            if st.synced {
                fig.sync.push(t.elapsed());
                if st.services != s || st.endpoints != s * EPS || !st.failed.is_empty() {
                    return Err(format!(
                        "{node} synced to {} services, {} endpoints, failed {:?}",
                        st.services, st.endpoints, st.failed
                    )
                    .into());
                }
                break;
            }
            if t.elapsed() > SYNC_WAIT {
                return Err(format!("{node} not synced after {SYNC_WAIT:?}: {st:?}").into());
            }
            check_stop()?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        eprintln!("S={s}: {node} synced in {:.0?}", fig.sync[k]);
        lab.proxies.push(proxy);
    }

    // 2. Endpoint changes.
    eprintln!("S={s}: {} endpoint changes", cfg.changes);
    let mut rng = netkit_test_support::Rng::with_seed(0x5e5 + s as u64);
    let mut target = 0;
    for k in 0..cfg.changes {
        check_stop()?;
        let add = k.is_multiple_of(2);
        if add {
            target = rng.below((s - 1) as u64) as usize;
        }
        let ep = IpAddr::V4(extra(k / 2));
        let before: Vec<u64> = lab.proxies.iter().map(|p| p.status().applied).collect();
        let handles: Vec<_> = lab.proxies.iter().map(|p| p.status.clone()).collect();
        let poll = tokio::task::spawn_blocking(move || {
            let end = Instant::now() + CHANGE_WAIT;
            let mut seen: Vec<Option<Instant>> = vec![None; handles.len()];
            while seen.iter().any(Option::is_none) && Instant::now() < end {
                for (i, h) in handles.iter().enumerate() {
                    if seen[i].is_none() && h.lock().expect("status lock").applied > before[i] {
                        seen[i] = Some(Instant::now());
                    }
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            seen
        });
        let store = lab.store.clone();
        let sid = id(target);
        let written = lab
            .writer
            .spawn(async move {
                let t0 = Instant::now();
                let r = if add {
                    catalog::add_endpoint(&store, &sid, EndpointSpec::new(ep, "node-2")).await
                } else {
                    catalog::remove_endpoint(&store, &sid, ep).await
                };
                r.map(|_| (t0, Instant::now()))
            })
            .await??;
        let seen = poll.await?;
        let Some(last) = seen.iter().copied().collect::<Option<Vec<Instant>>>() else {
            return Err(format!(
                "change {k} ({}) not applied on every node within {CHANGE_WAIT:?}: {seen:?}",
                id(target)
            )
            .into());
        };
        let last = last.into_iter().max().expect("three nodes");
        fig.write.push(written.1 - written.0);
        fig.change.push(last.saturating_duration_since(written.1));
    }
    for p in &lab.proxies {
        let st = p.status();
        if !st.failed.is_empty() || st.store_error.is_some() {
            return Err(format!("a proxy reports failures: {st:?}").into());
        }
    }

    // 3. First packets through node 1.
    eprintln!("S={s}: {} connections through node-1", cfg.conns);
    let to = SocketAddr::new(IpAddr::V4(vip(s - 1)), PORT);
    fig.first = lab.site.first_packets(to, cfg.conns)?;

    // 4. The firewall operation alone, on node 1's firewall.
    eprintln!("S={s}: floor");
    (fig.floor, fig.kernel) = floor(cfg, &lab.nodes[0].ns, lab.fw_options(0)).await?;

    // 5. kube-proxy.
    for (r, restore) in cfg.restores.iter().enumerate() {
        check_stop()?;
        eprintln!("S={s}: kube-proxy layout, {restore}");
        fig.kp.push(kube(cfg, &lab.cluster, s, restore, r).await?);
    }
    Ok(fig)
}

/// A level without proxies (their sync would take too long, see the docs): node 1's firewall
/// loaded directly with exactly the firewall services the proxy makes for the same `s`
/// services (`service::firewall_services`), 1,000 services per owner; then the floor, the
/// first packets and kube-proxy as in [`level`].
async fn fw_level(cfg: &Config, s: usize) -> Res<Level> {
    let mut fig = Level {
        s,
        ..Default::default()
    };
    eprintln!("S={s} (firewall loaded directly): lab");
    let cluster = Cluster::new(&format!("sf{s}"), 1);
    let node = cluster.node("n1", 0, 1);
    let site = Site::new(&cluster, &node, "s", 200)?;
    let state = tempfile::Builder::new().prefix("netkit-bench-svc-").tempdir()?;
    let options = FirewallOptions::default()
        .driver(Driver::Nftables)
        .state_dir(state.path().join("fw-node-1"));
    let fw = firewall::open(&node.ns, options.clone()).await?;
    eprintln!("S={s}: loading the firewall");
    let t = Instant::now();
    for chunk in (0..s).collect::<Vec<_>>().chunks(1000) {
        check_stop()?;
        let mut rules = Rules::default();
        for &i in chunk {
            let spec = ServiceSpec::new(IpAddr::V4(vip(i)), vec![ServicePort::new(PORT).target_port(TARGET)]);
            let eps = EndpointsSpec {
                endpoints: endpoints(i, s)
                    .into_iter()
                    .enumerate()
                    .map(|(j, ip)| EndpointSpec::new(IpAddr::V4(ip), &ep_node(i, s, j)))
                    .collect(),
            };
            rules.services.extend(netkit_core::service::firewall_services(
                &id(i),
                &spec,
                Some(&eps),
                "node-1",
            ));
        }
        fw.add(&format!("preload/{}", chunk[0]), &rules).await?;
    }
    fig.load = t.elapsed();
    eprintln!(
        "S={s}: firewall loaded in {:.0?}; {} connections through node-1",
        fig.load, cfg.conns
    );
    let to = SocketAddr::new(IpAddr::V4(vip(s - 1)), PORT);
    fig.first = site.first_packets(to, cfg.conns)?;
    eprintln!("S={s}: floor");
    (fig.floor, fig.kernel) = floor(cfg, &node.ns, options).await?;
    for (r, restore) in cfg.restores.iter().enumerate() {
        check_stop()?;
        eprintln!("S={s}: kube-proxy layout, {restore}");
        fig.kp.push(kube(cfg, &cluster, s, restore, r).await?);
    }
    drop(site);
    drop(node);
    Ok(fig)
}

/// What the kernel did during traced floor operations, per operation (strace -T of the
/// process's netlink system calls: `sendmsg` carries a transaction, which the kernel
/// validates and commits inside the call; `recvmsg`/`recvfrom` carry answers and the dumps
/// libnftables reads its cache from; `sendto` dump requests).
#[derive(Default, Clone)]
struct KernelSplit {
    ops: usize,
    send: Duration,
    recv: Duration,
    calls: usize,
    /// fsync/fdatasync (the state directory's records).
    sync: Duration,
    /// close of netlink sockets: after a transaction that removed something the kernel makes
    /// the closing thread wait for its deferred clean-up (an RCU grace period).
    close: Duration,
}

/// `cfg.floor` single-service changes on the firewall of `ns` (a second handle, same state
/// directory): one owner's service replaced with 11, then 10 endpoints; each timed. Then,
/// when `strace` is there, 10 more traced for the kernel's share.
async fn floor(cfg: &Config, ns: &NetNs, options: FirewallOptions) -> Res<(Vec<Duration>, Option<KernelSplit>)> {
    let fw = firewall::open(ns, options).await?;
    let floor_vip = IpAddr::V4(Ipv4Addr::new(10, 100, 200, 1));
    let rules = |k: usize| {
        let n = if k.is_multiple_of(2) { EPS + 1 } else { EPS };
        let mut svc = Service::new("bench/floor/80", Protocol::Tcp, floor_vip, PORT);
        svc.endpoints = (0..n)
            .map(|j| {
                Endpoint::new(
                    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 253, 0, 1)) + j as u32)),
                    TARGET,
                )
            })
            .collect();
        Rules {
            services: vec![svc],
            ..Default::default()
        }
    };
    let mut times = Vec::new();
    for k in 0..cfg.floor {
        check_stop()?;
        let r = rules(k);
        let t = Instant::now();
        fw.add("bench/floor", &r).await?;
        times.push(t.elapsed());
    }
    let split = match Strace::attach() {
        Ok(tracer) => {
            let traced = 10;
            for k in 0..traced {
                fw.add("bench/floor", &rules(cfg.floor + k)).await?;
            }
            Some(tracer.finish(traced)?)
        }
        Err(e) => {
            eprintln!("no kernel split: {e}");
            None
        }
    };
    fw.teardown("bench/floor").await?;
    Ok((times, split))
}

/// `strace -f -T` attached to every thread of this process, writing to a temp file.
struct Strace {
    child: netkit_test_support::KillOnDrop,
    out: tempfile::NamedTempFile,
}

impl Strace {
    fn attach() -> Res<Strace> {
        let out = tempfile::NamedTempFile::new()?;
        let me = std::process::id();
        let mut cmd = std::process::Command::new("strace");
        cmd.args([
            "-f",
            "-T",
            "-yy",
            "-qq",
            "-e",
            "trace=sendmsg,recvmsg,sendto,recvfrom,fsync,fdatasync,close",
        ])
        .args(["-e", "verbose=none", "-e", "abbrev=all", "-s", "0", "-o"])
        .arg(out.path());
        for t in std::fs::read_dir(format!("/proc/{me}/task"))? {
            cmd.arg("-p").arg(t?.file_name());
        }
        let child = netkit_test_support::KillOnDrop::new(
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| format!("strace: {e}"))?,
        );
        // Attached once every thread that was there has a tracer (bounded poll).
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let mut traced = true;
            for t in std::fs::read_dir(format!("/proc/{me}/task"))? {
                let status = std::fs::read_to_string(t?.path().join("status")).unwrap_or_default();
                traced &= status
                    .lines()
                    .find_map(|l| l.strip_prefix("TracerPid:"))
                    .is_some_and(|v| v.trim() != "0");
            }
            if traced {
                break;
            }
            if Instant::now() > end {
                return Err("strace did not attach within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Strace { child, out })
    }

    /// Detach and add up the netlink calls of `ops` operations.
    fn finish(mut self, ops: usize) -> Res<KernelSplit> {
        // SIGINT: strace detaches cleanly and flushes its output.
        // SAFETY: kill(2) on the pid of the strace child this value owns; no memory is touched.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let text = std::fs::read_to_string(self.out.path())?;
        let mut split = KernelSplit {
            ops,
            ..Default::default()
        };
        for line in text.lines() {
            let Some(secs) = line
                .rsplit_once('<')
                .and_then(|(_, t)| t.trim_end_matches('>').parse::<f64>().ok())
            else {
                continue;
            };
            let d = Duration::from_secs_f64(secs);
            // `PID syscall(args…) = result <secs>`
            let call = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.split_once('('))
                .map_or("", |(c, _)| c);
            match call {
                "fsync" | "fdatasync" => split.sync += d,
                "close" if line.contains("NETLINK") => split.close += d,
                "sendmsg" if line.contains("NETLINK") => {
                    split.calls += 1;
                    split.send += d;
                }
                _ if line.contains("NETLINK") => {
                    split.calls += 1;
                    split.recv += d;
                }
                _ => {}
            }
        }
        Ok(split)
    }
}

/// kube-proxy's figures with `restore` on a node of its own (`r`: its index, for addresses).
async fn kube(cfg: &Config, cluster: &Cluster, s: usize, restore: &str, r: usize) -> Res<KpFigures> {
    let mut fig = KpFigures {
        restore: restore.to_string(),
        ..Default::default()
    };
    let host = 10 + r as u8;
    let node = cluster.node(&format!("kp{r}"), 0, host);
    let site = Site::new(cluster, &node, &format!("k{r}"), 210 + r as u8)?;
    let limit = cfg.restore_limit;
    // The legacy tables may be missing from the kernel: a first restore says.
    if let Err(e) = kube_proxy::restore(&node.ns, restore, &kube_proxy::setup(), limit) {
        fig.skipped = Some(e.to_string());
        eprintln!("SKIP kube-proxy with {restore}: {e}");
        return Ok(fig);
    }
    let mut svcs: Vec<kube_proxy::Svc> = (0..s)
        .map(|i| kube_proxy::Svc {
            id: id(i),
            vip: vip(i),
            port: PORT,
            eps: endpoints(i, s),
            target: TARGET,
        })
        .collect();
    let probed = s - 1;
    // The probed service last, then in the middle.
    let last: Vec<usize> = (0..s).collect();
    let mut middle: Vec<usize> = (0..s - 1).collect();
    middle.insert((s - 1) / 2, probed);
    let to = SocketAddr::new(IpAddr::V4(vip(probed)), PORT);

    let input = kube_proxy::full(&svcs, &last);
    fig.rules = input.lines().filter(|l| l.starts_with("-A ")).count();
    fig.full = kube_proxy::restore(&node.ns, restore, &input, limit)?;
    if fig.full.is_none() {
        eprintln!(
            "S={s}: {restore}: the full restore did not end within {limit:?}; killed, nothing else measured with it"
        );
        return Ok(fig);
    }
    fig.first_last = site.first_packets(to, cfg.conns)?;
    check_stop()?;
    // The probed service to the middle of KUBE-SERVICES: a partial sync (every sync rewrites
    // KUBE-SERVICES whole; not counted).
    kube_proxy::restore(
        &node.ns,
        restore,
        &kube_proxy::partial(&svcs, &middle, probed, &[]),
        limit,
    )?
    .ok_or("the reordering restore did not end in time")?;
    fig.first_middle = site.first_packets(to, cfg.conns)?;

    // Partial syncs: an endpoint added to a random service, then removed.
    let mut rng = netkit_test_support::Rng::with_seed(0xc0be + s as u64);
    let mut target = 0;
    for k in 0..cfg.kp_changes {
        check_stop()?;
        let mut stale = Vec::new();
        if k.is_multiple_of(2) {
            target = rng.below((s - 1) as u64) as usize;
            svcs[target].eps.push(extra(k / 2));
        } else {
            let ep = svcs[target].eps.pop().expect("added before");
            stale.push(svcs[target].sep_chain(ep));
        }
        let input = kube_proxy::partial(&svcs, &middle, target, &stale);
        fig.partial.push(
            kube_proxy::restore(&node.ns, restore, &input, limit)?.ok_or("a partial restore did not end in time")?,
        );
    }
    fig.empty = kube_proxy::restore(&node.ns, restore, "*nat\nCOMMIT\n", limit)?;
    drop(site);
    drop(node);
    Ok(fig)
}

// ---------------------------------------------------------------------------
// The report

fn us(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".into(), |d| format!("{:.0} µs", d.as_secs_f64() * 1e6))
}

fn msf(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1e3))
}

fn p(v: &[Duration], q: f64) -> Option<Duration> {
    percentile(v, q)
}

fn ratio(hi: Option<Duration>, lo: Option<Duration>) -> Option<f64> {
    match (hi, lo) {
        (Some(h), Some(l)) if !l.is_zero() => Some(h.as_secs_f64() / l.as_secs_f64()),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The figures of every level side by side, the ratio of the largest level that has the
/// figure to the smallest, the peers, and the targets.
fn print(levels: &[Level], limit: Duration, report: &mut Report) {
    let heads: Vec<String> = levels
        .iter()
        .map(|l| format!("S={}{}", l.s, if l.proxy { "" } else { " (firewall only)" }))
        .collect();
    println!("| measurement | {} | largest ÷ smallest S |", heads.join(" | "));
    println!("|---|{}---:|", "---:|".repeat(levels.len()));
    // A row: each level's figure (None: not measured), shown by `show`.
    let row = |what: &str, figs: Vec<Option<Duration>>, show: fn(Option<Duration>) -> String| {
        let cells: Vec<String> = figs.iter().map(|f| show(*f)).collect();
        let have: Vec<Duration> = figs.iter().flatten().copied().collect();
        let r = if have.len() >= 2 {
            ratio(have.last().copied(), have.first().copied())
        } else {
            None
        };
        println!("| {what} | {} | {} |", cells.join(" | "), fmt_ratio(r));
    };
    let px = |l: &Level, v: Option<Duration>| if l.proxy { v } else { None };
    row(
        "store load: services + endpoints written, 64 writes in flight",
        levels.iter().map(|l| px(l, Some(l.load))).collect(),
        msf,
    );
    row(
        "firewall-only levels: the firewall loaded directly, 1,000 services per transaction",
        levels
            .iter()
            .map(|l| if l.proxy { None } else { Some(l.load) })
            .collect(),
        msf,
    );
    for k in 0..3 {
        row(
            &format!("netkit proxy full sync, node-{}", k + 1),
            levels.iter().map(|l| px(l, l.sync.get(k).copied())).collect(),
            msf,
        );
    }
    for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
        row(
            &format!("netkit endpoint change → applied on all 3 nodes, {name}"),
            levels.iter().map(|l| px(l, p(&l.change, q))).collect(),
            msf,
        );
    }
    row(
        "  the store write itself (catalog::add/remove_endpoint: get + compare-and-swap), p50",
        levels.iter().map(|l| px(l, p(&l.write, 50.0))).collect(),
        msf,
    );
    row(
        "  floor: the firewall operation alone for one service change, p50",
        levels.iter().map(|l| p(&l.floor, 50.0)).collect(),
        msf,
    );
    row(
        "    of which in the kernel: nf_tables transactions (sendmsg), per change",
        levels
            .iter()
            .map(|l| l.kernel.as_ref().map(|k| k.send / k.ops as u32))
            .collect(),
        msf,
    );
    row(
        "    of which in the kernel: reading answers and dumps (recvmsg), per change",
        levels
            .iter()
            .map(|l| l.kernel.as_ref().map(|k| k.recv / k.ops as u32))
            .collect(),
        msf,
    );
    row(
        "    in the kernel: closing netlink sockets (waits for the clean-up of removed rules), per change",
        levels
            .iter()
            .map(|l| l.kernel.as_ref().map(|k| k.close / k.ops as u32))
            .collect(),
        msf,
    );
    row(
        "    the state directory's fsync/fdatasync, per change",
        levels
            .iter()
            .map(|l| l.kernel.as_ref().map(|k| k.sync / k.ops as u32))
            .collect(),
        msf,
    );
    for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
        row(
            &format!("netkit (nftables) first packet, {name}"),
            levels.iter().map(|l| p(&l.first, q)).collect(),
            us,
        );
    }
    let kp_names: Vec<String> = levels
        .first()
        .map(|l| l.kp.iter().map(|k| k.restore.clone()).collect())
        .unwrap_or_default();
    for (i, name) in kp_names.iter().enumerate() {
        let kps: Vec<Option<&KpFigures>> = levels
            .iter()
            .map(|l| l.kp.get(i).filter(|k| k.skipped.is_none()))
            .collect();
        if let Some(why) = levels.iter().find_map(|l| l.kp.get(i)?.skipped.clone()) {
            println!(
                "| kube-proxy via {name}: skipped ({why}) | {}– |",
                "– | ".repeat(levels.len())
            );
            continue;
        }
        let f = |g: fn(&KpFigures) -> Option<Duration>| kps.iter().map(|k| k.and_then(g)).collect::<Vec<_>>();
        let rules: Vec<String> = kps
            .iter()
            .map(|k| k.map_or("–".into(), |k| k.rules.to_string()))
            .collect();
        println!(
            "| kube-proxy via {name}: rules in the nat table (-A lines) | {} | |",
            rules.join(" | ")
        );
        let full: Vec<String> = kps
            .iter()
            .map(|k| match k {
                None => "–".into(),
                Some(k) => k
                    .full
                    .map_or_else(|| format!("> {:.0} s (killed)", limit.as_secs_f64()), |d| msf(Some(d))),
            })
            .collect();
        // The ratio of the largest level with a figure to the smallest; a lower bound when
        // the largest level's restore was killed.
        let done: Vec<Duration> = kps.iter().filter_map(|k| k.and_then(|k| k.full)).collect();
        let killed_last = kps.last().is_some_and(|k| k.is_some_and(|k| k.full.is_none()));
        let full_ratio = match (done.first(), done.last()) {
            (Some(lo), _) if killed_last => format!("> {:.0}×", limit.as_secs_f64() / lo.as_secs_f64()),
            (Some(lo), Some(hi)) if done.len() >= 2 => fmt_ratio(ratio(Some(*hi), Some(*lo))),
            _ => "–".into(),
        };
        println!(
            "| kube-proxy via {name}: full restore (empty table) | {} | {full_ratio} |",
            full.join(" | ")
        );
        row(
            &format!("kube-proxy via {name}: partial sync for one endpoint change, p50"),
            f(|k| p(&k.partial, 50.0)),
            msf,
        );
        row(
            &format!("kube-proxy via {name}:   floor: an empty --noflush restore"),
            f(|k| k.empty),
            msf,
        );
        for (qn, g) in [
            (
                "probed service last, p50",
                (|k: &KpFigures| p(&k.first_last, 50.0)) as fn(&KpFigures) -> Option<Duration>,
            ),
            ("probed service last, p99", |k: &KpFigures| p(&k.first_last, 99.0)),
            ("probed service in the middle, p50", |k: &KpFigures| {
                p(&k.first_middle, 50.0)
            }),
            ("probed service in the middle, p99", |k: &KpFigures| {
                p(&k.first_middle, 99.0)
            }),
        ] {
            row(&format!("kube-proxy via {name}: first packet, {qn}"), f(g), us);
        }
    }
    println!();
    let Some(top) = levels.last() else { return };
    println!("Peers at S={}, kube-proxy ÷ netkit:", top.s);
    println!();
    let big_proxy = levels.iter().rev().find(|l| l.proxy);
    for kh in top.kp.iter().filter(|k| k.skipped.is_none()) {
        let name = &kh.restore;
        report.row(
            &format!(
                "one service change: {name} partial sync p50 vs netkit's firewall operation alone p50 (one node each)"
            ),
            format!(
                "{} vs {}: {}",
                msf(p(&kh.partial, 50.0)),
                msf(p(&top.floor, 50.0)),
                fmt_ratio(ratio(p(&kh.partial, 50.0), p(&top.floor, 50.0)))
            ),
        );
        report.row(
            &format!("first packet p50, probed service last: {name} vs netkit"),
            format!(
                "{} vs {}: {}",
                us(p(&kh.first_last, 50.0)),
                us(p(&top.first, 50.0)),
                fmt_ratio(ratio(p(&kh.first_last, 50.0), p(&top.first, 50.0)))
            ),
        );
        report.row(
            &format!("first packet p99, probed service last: {name} vs netkit"),
            format!(
                "{} vs {}: {}",
                us(p(&kh.first_last, 99.0)),
                us(p(&top.first, 99.0)),
                fmt_ratio(ratio(p(&kh.first_last, 99.0), p(&top.first, 99.0)))
            ),
        );
    }
    if let Some(bp) = big_proxy {
        for kh in bp.kp.iter().filter(|k| k.skipped.is_none()) {
            report.row(
                &format!(
                    "full sync at S={}: {name} full restore vs netkit node-1's proxy sync (store read included)",
                    bp.s,
                    name = kh.restore
                ),
                format!(
                    "{} vs {}: {}",
                    msf(kh.full),
                    msf(bp.sync.first().copied()),
                    fmt_ratio(ratio(kh.full, bp.sync.first().copied()))
                ),
            );
        }
    }
    let proxied: Vec<&Level> = levels.iter().filter(|l| l.proxy).collect();
    if let (Some(lo), Some(hi)) = (proxied.first(), proxied.last()) {
        if lo.s != hi.s {
            for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
                let r = ratio(p(&hi.change, q), p(&lo.change, q));
                report.target(
                    &format!(
                        "endpoint change → all nodes flat from S={} to S={}, {name} ≤ 1.25×",
                        lo.s, hi.s
                    ),
                    r.is_some_and(|r| r <= 1.25),
                    format!(
                        "{} → {}, {}",
                        msf(p(&lo.change, q)),
                        msf(p(&hi.change, q)),
                        fmt_ratio(r)
                    ),
                );
            }
        }
    }
    let (lo, hi) = (&levels[0], top);
    if lo.s != hi.s {
        for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
            let r = ratio(p(&hi.first, q), p(&lo.first, q));
            report.target(
                &format!(
                    "first-packet latency flat from S={} to S={}, {name} ≤ 1.25×",
                    lo.s, hi.s
                ),
                r.is_some_and(|r| r <= 1.25),
                format!("{} → {}, {}", us(p(&lo.first, q)), us(p(&hi.first, q)), fmt_ratio(r)),
            );
        }
        let r = ratio(p(&hi.floor, 50.0), p(&lo.floor, 50.0));
        report.target(
            &format!(
                "one service change in the firewall (the floor of an endpoint change) flat from S={} to S={}, p50 ≤ 1.25×",
                lo.s, hi.s
            ),
            r.is_some_and(|r| r <= 1.25),
            format!("{} → {}, {}", msf(p(&lo.floor, 50.0)), msf(p(&hi.floor, 50.0)), fmt_ratio(r)),
        );
    }
}

async fn bench(cfg: &Config, levels: &mut Vec<Level>) -> Res<()> {
    for &s in &cfg.levels {
        check_stop()?;
        levels.push(level(cfg, s).await?);
    }
    for &s in &cfg.fw_levels {
        check_stop()?;
        levels.push(fw_level(cfg, s).await?);
    }
    Ok(())
}

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the services bench needs root (namespaces, firewalls)".into());
    }
    let cfg = config()?;
    let stale = delete_namespaces(None, &["etcd"]);
    if stale > 0 {
        eprintln!("removed {stale} namespaces left by an earlier, killed run");
    }
    let _cleanup = Cleanup;
    let facts = format!(
        "nproc {}, kernel {}, {}, {}",
        harness::first_line("nproc", &[], "?"),
        harness::first_line("uname", &["-r"], "?"),
        harness::first_line("etcd", &["--version"], "etcd ?"),
        harness::first_line("iptables", &["--version"], "iptables ?"),
    );
    let load_before = loadavg();
    eprintln!(
        "services bench{}: levels {:?}; {facts}; load {load_before}",
        if cfg.quick { " (quick)" } else { "" },
        cfg.levels
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let busy0 = measure::machine_busy_ticks().ok();
    let mut levels = Vec::new();
    let result = rt.block_on(async {
        tokio::select! {
            r = bench(&cfg, &mut levels) => r,
            r = signals() => r.and(Err("interrupted".into())),
        }
    });
    drop(rt);
    let wall = started.elapsed();
    let busy = busy0.and_then(|b| Some(measure::machine_busy_ticks().ok()? - b));
    println!("Machine: {facts}");
    println!(
        "Load average before {load_before}, after {}; machine CPU busy during the run {} of {} CPU-seconds",
        loadavg(),
        busy.map_or_else(|| "?".into(), |b| format!("{:.0} s", b as f64 / measure::clk_tck())),
        wall.as_secs_f64().round() as u64 * harness::first_line("nproc", &[], "1").parse::<u64>().unwrap_or(1)
    );
    println!(
        "Run: {}{:.0?}; levels {:?}, changes {}, connections {}, kube-proxy partial syncs {}, floor {}",
        if cfg.quick { "NETKIT_BENCH_QUICK=1, " } else { "" },
        wall,
        cfg.levels,
        cfg.changes,
        cfg.conns,
        cfg.kp_changes,
        cfg.floor
    );
    println!();
    let mut report = Report::default();
    if !levels.is_empty() {
        print(&levels, cfg.restore_limit, &mut report);
    }
    report.print();
    result
}
