//! `netkit agent`: runs netkit-core's overlay agent ([`netkit_core::overlay::Agent`]) for
//! this node until SIGTERM or SIGINT, and `netkit agent status` prints what it wrote.
//!
//! The agent programs the namespace of `-n NODE` (or the current one) and reaches the lease
//! store from the namespace the process runs in: run it inside the node
//! (`ip netns exec NODE netkit agent …`) when the store is on the node's underlay.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use ipnetwork::IpNetwork;
use netkit_core::ipam::lease::{FileLeaseStore, LeaseStore, SubnetPlan};
use netkit_core::overlay::{
    Agent, AgentConfig, AgentStatus, BackendConfig, BgpBackendConfig, BgpEncap, BlockPolicy, UdpBackendConfig,
    VxlanBackendConfig,
};

use netkit_core::firewall::FirewallOptions;
use netkit_core::policy::{ControllerConfig, PolicyController, PolicyFirewall, PolicyOptions};
use netkit_core::service::{ProxyConfig, ServiceProxy};
use netkit_core::store::{AnyObjectStore, StoreError, StoreLocation};
use netkit_core::NetNs;

use crate::cli::Global;
use crate::error::CliError;
use crate::output::Output;

/// Where the agent writes its status by default (and `status` reads it).
pub const DEFAULT_STATUS_FILE: &str = "/run/netkit/agent.json";
/// Where the agent writes the subnet file for netkit-cni by default.
pub const DEFAULT_SUBNET_FILE: &str = "/run/netkit/subnet.env";

/// `netkit agent [OPTIONS]` runs; `netkit agent status` reports.
#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    /// `status`; none: run the agent.
    #[command(subcommand)]
    pub verb: Option<AgentVerb>,
    /// How to run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// What to ask a running agent.
#[derive(Subcommand, Debug, Clone)]
pub enum AgentVerb {
    /// Print the agent's lease, blocks, BGP sessions (asked from BIRD now, as `calicoctl node
    /// status` does), peers and what it programmed (`-j`: the status as JSON).
    Status {
        /// The status file the agent writes.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_STATUS_FILE)]
        status_file: PathBuf,
    },
}

/// The backends.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendArg {
    /// VXLAN (Flannel's default).
    Vxlan,
    /// Routes via the other nodes' addresses (one L2 segment).
    HostGw,
    /// A TUN device and user-space UDP encapsulation (Flannel's udp).
    Udp,
    /// BGP through BIRD 2 (Calico's way): the node's subnet is its block, BIRD routes the others.
    Bgp,
}

/// The bgp backend's encapsulations.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncapArg {
    /// Plain BGP routes.
    None,
    /// IPv4 in IPv4 (tunl0).
    Ipip,
    /// VXLAN (vxlan.calico).
    Vxlan,
}

/// Log levels.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// And warnings.
    Warn,
    /// And one line per change.
    Info,
    /// Everything.
    Debug,
}

/// The agent's options.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The lease store: `etcd=URL[,URL…]` or `file=DIR` (a directory the nodes share).
    #[arg(long, value_name = "etcd=URL[,URL…]|file=DIR")]
    pub store: Option<String>,
    /// The cluster network, carved into one subnet per node.
    #[arg(long, value_name = "CIDR")]
    pub network: Option<IpNetwork>,
    /// The prefix length of each node's subnet.
    #[arg(long, value_name = "LEN", default_value_t = 24)]
    pub subnet_len: u8,
    /// The backend.
    #[arg(long, value_enum, default_value = "vxlan")]
    pub backend: BackendArg,
    /// vxlan: plain routes to nodes on this node's L2 segment, VXLAN to the others.
    #[arg(long)]
    pub direct_routing: bool,
    /// vxlan: the VNI.
    #[arg(long, default_value_t = 1)]
    pub vni: u32,
    /// vxlan: the UDP port.
    #[arg(long, default_value_t = 8472)]
    pub port: u16,
    /// vxlan: the device name.
    #[arg(long, value_name = "NAME", default_value = "flannel.1")]
    pub vxlan_dev: String,
    /// udp: the UDP port.
    #[arg(long, value_name = "PORT", default_value_t = 8285)]
    pub udp_port: u16,
    /// udp: the TUN device name.
    #[arg(long, value_name = "NAME", default_value = "flannel0")]
    pub tun_dev: String,
    /// udp: TUN queues, each with two threads and a socket (0: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub queues: usize,
    /// udp: move one packet per system call (Flannel's own data path), for comparison.
    #[arg(long)]
    pub single_packet: bool,
    /// udp: do not use the TUN and UDP offloads (TSO, UDP GSO/GRO), for comparison.
    #[arg(long)]
    pub no_offload: bool,
    /// bgp: the cluster's AS.
    #[arg(long, value_name = "AS", default_value_t = 64512)]
    pub asn: u32,
    /// bgp: BIRD's directory (configuration, control socket, log).
    #[arg(long, value_name = "DIR", default_value = "/run/netkit/bird")]
    pub bird_dir: PathBuf,
    /// bgp: a route reflector — a node's name, or the IPv4 address of a router running BGP
    /// (a top-of-rack router reflecting for its segments); repeat for several; none: a full
    /// mesh.
    #[arg(long, value_name = "NODE|IP")]
    pub reflector: Vec<String>,
    /// bgp: encapsulation to other nodes' blocks (Calico's ipipMode/vxlanMode): none (plain
    /// BGP routes), ipip (tunl0), vxlan (vxlan.calico, VNI 4096, port 4789).
    #[arg(long, value_enum, default_value = "none")]
    pub encap: EncapArg,
    /// bgp with --encap: encapsulate only to nodes behind a router (Calico's CrossSubnet);
    /// default: to every node (Always).
    #[arg(long)]
    pub cross_subnet: bool,
    /// bgp: the BGP hold time in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 90)]
    pub hold_time: u16,
    /// bgp: block affinity — the netkit-ipam pool store the node's pods get addresses from
    /// (`dataDir/NETWORK`, e.g. /var/lib/cni/netkit/podnet); with it the node claims another
    /// block (a /LEN of --network) when its blocks run low and gives empty ones back.
    #[arg(long, value_name = "DIR")]
    pub ipam_store: Option<PathBuf>,
    /// bgp with --ipam-store: claim another block when fewer addresses than this are free.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub min_free: u64,
    /// bgp with --ipam-store: hold at most this many blocks.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_blocks: u32,
    /// The underlay device (default: the one with --public-ip, else the default route's).
    #[arg(long, value_name = "DEV")]
    pub iface: Option<String>,
    /// This node's underlay address (default: the underlay device's first IPv4 address).
    #[arg(long, value_name = "IP")]
    pub public_ip: Option<IpAddr>,
    /// This node's name in the store (default: the -n namespace's name, else the host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Where to write the subnet file netkit-cni reads (`ipam.subnetFile`).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_SUBNET_FILE)]
    pub subnet_file: PathBuf,
    /// Where to write the status `netkit agent status` reads.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
    /// The lease's time to live (`90s`, `10m`, `24h`); renewed at a third of it.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Write FLANNEL_IPMASQ=true into the subnet file.
    #[arg(long)]
    pub ip_masq: bool,
    /// Release the lease on shutdown (a node leaving for good).
    #[arg(long)]
    pub release_on_shutdown: bool,
    /// etcd: the key prefix of the leases.
    #[arg(long, value_name = "PREFIX", default_value = "/netkit/leases")]
    pub etcd_prefix: String,
    /// file store: how often the directory is read for changes.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_duration)]
    pub watch_interval: Duration,
    /// Also run the service proxy (kube-proxy's job): follow the Services and endpoints of the
    /// cluster store (the same --store; see `netkit service`) and program this node's firewall.
    #[arg(long)]
    pub services: bool,
    /// Also run the policy controller: enforce the cluster store's network policies (see
    /// `netkit policy`) for this node's pods, with nftables.
    #[arg(long)]
    pub policy: bool,
    /// With --services: answer ARP (IPv4) and neighbour solicitations (IPv6) on this interface
    /// for LoadBalancer services' external addresses (MetalLB's layer-2 mode: one node per
    /// address, chosen alike by every node among those with a ready endpoint); none: not by
    /// layer 2.
    #[arg(long, value_name = "DEV")]
    pub lb_iface: Option<String>,
    /// With --services and --backend bgp: announce LoadBalancer services' external IPv4
    /// addresses as /32s through this node's BIRD (MetalLB's BGP mode: every node while the
    /// service has a ready endpoint, only nodes with a local one under
    /// externalTrafficPolicy Local).
    #[arg(long)]
    pub lb_bgp: bool,
    /// With --services: the LoadBalancer address pools (repeatable); only addresses inside one
    /// are announced (needed by --lb-iface and --lb-bgp).
    #[arg(long, value_name = "CIDR")]
    pub lb_pool: Vec<IpNetwork>,
    /// etcd: the key prefix of the cluster objects (Services, endpoints).
    #[arg(long, value_name = "PREFIX", default_value = netkit_core::store::DEFAULT_ETCD_PREFIX)]
    pub objects_prefix: String,
    /// What to log on stderr.
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,
}

/// `90s`, `10m`, `24h`, `500ms`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: a number with ms, s, m or h"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: a number with ms, s, m or h")),
    };
    if d.is_zero() {
        return Err(format!("{s:?}: more than zero"));
    }
    Ok(d)
}

/// Run `netkit agent …`.
pub async fn run(session: &mut crate::Session, global: &Global, out: &Output, args: AgentArgs) -> Result<(), CliError> {
    match args.verb {
        Some(AgentVerb::Status { status_file }) => status(out, &status_file),
        None => run_agent(session, global, args.run).await,
    }
}

fn status(out: &Output, path: &std::path::Path) -> Result<(), CliError> {
    let mut s = AgentStatus::read(path).map_err(|e| CliError::Io {
        what: "read the agent's status".into(),
        cause: std::io::Error::other(e.to_string()),
    })?;
    // Live from BIRD when it answers; otherwise the sessions the agent recorded.
    let live = s.refresh_bgp().is_ok();
    // The service proxy's, when it runs (`--services`).
    let services: Option<serde_json::Value> = std::fs::read(services_status_file(path))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    // The policy controller's, when it runs (`--policy`).
    let policy: Option<serde_json::Value> = std::fs::read(path.with_extension("policy.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if out.json {
        let mut v = serde_json::to_value(&s).unwrap_or_default();
        if let (Some(obj), Some(svc)) = (v.as_object_mut(), &services) {
            obj.insert("services".into(), svc.clone());
        }
        if let (Some(obj), Some(pol)) = (v.as_object_mut(), &policy) {
            obj.insert("policy".into(), pol.clone());
        }
        out.json(&v);
        return Ok(());
    }
    let lease = s
        .lease
        .as_ref()
        .map_or_else(|| "none".to_string(), |l| l.subnet.to_string());
    out.text(&format!(
        "node {} ({}): {} backend {}, underlay {} {}, MTU {}, lease {lease}",
        s.node,
        s.state,
        if s.store_ok { "store ok," } else { "STORE FAILING," },
        s.backend,
        s.iface,
        s.public_ip.map(|i| i.to_string()).unwrap_or_default(),
        s.mtu
    ));
    if let Some(e) = &s.store_error {
        out.text(&format!("  store: {e}"));
    }
    for b in &s.blocks {
        out.text(&format!(
            "  block {} {}/{} addresses held",
            b.subnet, b.held, b.capacity
        ));
    }
    if let Some(e) = &s.block_error {
        out.text(&format!("  blocks: {e}"));
    }
    for l in &s.loans {
        match l.borrower == s.node {
            true => out.text(&format!("  borrowed {} from {}", l.address, l.lender)),
            false => out.text(&format!("  lent {} to {}", l.address, l.borrower)),
        }
    }
    if let Some(e) = &s.bird_error {
        out.text(&format!("  BIRD NOT RUNNING: {e}"));
    }
    if let Some(sessions) = &s.bgp {
        out.text(&format!(
            "  BGP sessions ({}):",
            if live {
                "from BIRD now"
            } else {
                "as the agent last saw them; BIRD did not answer"
            }
        ));
        let mut rows = vec![[
            "PEER".to_string(),
            "ADDRESS".into(),
            "TYPE".into(),
            "STATE".into(),
            "SINCE".into(),
            "INFO".into(),
        ]];
        for b in sessions {
            rows.push([
                b.peer.clone(),
                b.address.map(|a| a.to_string()).unwrap_or_default(),
                b.kind.clone(),
                b.state.clone(),
                b.since.clone(),
                b.info.clone(),
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        for r in rows {
            let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            out.text(&format!("    {}", line.join("  ").trim_end()));
        }
    }
    for p in &s.peers {
        let mode = serde_json::to_value(&p.mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.text(&format!(
            "  {} {} at {}: {mode}{}",
            p.node,
            p.subnet,
            p.public_ip,
            p.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
        ));
    }
    out.text(&format!(
        "  {} entries kept, {} changes, {} reconciles",
        s.entries, s.changes, s.reconciles
    ));
    if let Some(v) = services {
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        out.text(&format!(
            "  services: {} with {} ready endpoints, {}, {} changes applied",
            n("services"),
            n("endpoints"),
            if v.get("synced").and_then(serde_json::Value::as_bool) == Some(true) {
                "in sync"
            } else {
                "NOT IN SYNC"
            },
            n("applied")
        ));
        if let Some(e) = v.get("store_error").and_then(serde_json::Value::as_str) {
            out.text(&format!("    store: {e}"));
        }
        let list = |key: &str| -> Vec<&str> {
            v.get(key)
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(serde_json::Value::as_str)
                .collect()
        };
        for (key, what) in [
            ("announced", "answering ARP/NDP for"),
            ("bgp_announced", "announcing by BGP"),
            ("outside_pools", "in no LoadBalancer pool, not announced"),
        ] {
            let ips = list(key);
            if !ips.is_empty() {
                out.text(&format!("    {what} {}", ips.join(", ")));
            }
        }
        if let Some(e) = v.get("announce_error").and_then(serde_json::Value::as_str) {
            out.text(&format!("    LoadBalancer addresses: {e}"));
        }
        for (id, e) in v
            .get("failed")
            .and_then(serde_json::Value::as_object)
            .into_iter()
            .flatten()
        {
            out.text(&format!("    {id}: {}", e.as_str().unwrap_or_default()));
        }
    }
    if let Some(v) = policy {
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        out.text(&format!(
            "  policy: {} policies, {} local pods ({} isolated), {}, {} changes applied",
            n("policies"),
            n("local_pods"),
            n("isolated_pods"),
            if v.get("synced").and_then(serde_json::Value::as_bool) == Some(true) {
                "in sync"
            } else {
                "NOT IN SYNC"
            },
            n("applied")
        ));
        if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
            out.text(&format!("    {e}"));
        }
    }
    Ok(())
}

async fn run_agent(session: &mut crate::Session, global: &Global, a: RunArgs) -> Result<(), CliError> {
    let store = a
        .store
        .clone()
        .ok_or_else(|| CliError::usage("agent: --store etcd=URL[,URL…]|file=DIR is required"))?;
    let network = a
        .network
        .ok_or_else(|| CliError::usage("agent: --network CIDR is required"))?;
    let plan = SubnetPlan::new(network, a.subnet_len).map_err(|e| CliError::usage(format!("agent: {e}")))?;
    let node = match (&a.node, &global.netns) {
        (Some(n), _) => n.clone(),
        (None, Some(ns)) => ns.clone(),
        (None, None) => hostname()?,
    };
    crate::log::init(match a.log_level {
        LogLevel::Error => ::log::LevelFilter::Error,
        LogLevel::Warn => ::log::LevelFilter::Warn,
        LogLevel::Info => ::log::LevelFilter::Info,
        LogLevel::Debug => ::log::LevelFilter::Debug,
    });
    let backend = match a.backend {
        BackendArg::Vxlan => BackendConfig::Vxlan(VxlanBackendConfig {
            dev: a.vxlan_dev.clone(),
            vni: a.vni,
            port: a.port,
            direct_routing: a.direct_routing,
        }),
        BackendArg::HostGw => BackendConfig::HostGw,
        BackendArg::Udp => BackendConfig::Udp(UdpBackendConfig {
            dev: a.tun_dev.clone(),
            port: a.udp_port,
            queues: a.queues,
            single: a.single_packet,
            offload: !a.no_offload,
        }),
        BackendArg::Bgp => BackendConfig::Bgp(BgpBackendConfig {
            asn: a.asn,
            dir: a.bird_dir.clone(),
            hold_time: a.hold_time,
            reflectors: a.reflector.clone(),
            encap: match a.encap {
                EncapArg::None => BgpEncap::None,
                EncapArg::Ipip => BgpEncap::Ipip,
                EncapArg::Vxlan => BgpEncap::Vxlan,
            },
            cross_subnet: a.cross_subnet,
            ..Default::default()
        }),
    };
    check_lb_flags(&a, &backend)?;
    let location: StoreLocation = store
        .parse()
        .map_err(|e: StoreError| CliError::usage(format!("agent: --store: {e}")))?;
    let node_name = node.clone();
    let mut cfg = AgentConfig::new(node, backend);
    cfg.iface = a.iface.clone();
    cfg.public_ip = a.public_ip;
    cfg.network = Some(network);
    cfg.subnet_file = Some(a.subnet_file.clone());
    cfg.status_file = Some(a.status_file.clone());
    cfg.ttl = a.ttl;
    cfg.ip_masq = a.ip_masq;
    cfg.release_on_shutdown = a.release_on_shutdown;
    if let Some(dir) = &a.ipam_store {
        let mut policy = BlockPolicy::new(dir);
        policy.min_free = a.min_free;
        policy.max_blocks = a.max_blocks;
        cfg.blocks = Some(policy);
    }
    let h = session.handle(global.netns.as_deref()).await?;
    let store_err = |e: netkit_core::ipam::lease::LeaseError| CliError::Io {
        what: format!("agent: lease store {store}"),
        cause: std::io::Error::other(e.to_string()),
    };
    match store.split_once('=') {
        Some(("file", dir)) => {
            let s = FileLeaseStore::open(dir, plan)
                .await
                .map_err(store_err)?
                .with_watch_interval(a.watch_interval);
            let proxy = service_proxy(global, &a, &location, &node_name, &mut cfg).await?;
            let policy = policy_controller(global, &a, &location, &node_name).await?;
            drive(cfg, h, s, proxy, policy).await
        }
        Some(("etcd", urls)) => {
            let urls: Vec<&str> = urls.split(',').filter(|u| !u.is_empty()).collect();
            let s = connect_etcd(&urls, &a.etcd_prefix, plan).await.map_err(store_err)?;
            let proxy = service_proxy(global, &a, &location, &node_name, &mut cfg).await?;
            let policy = policy_controller(global, &a, &location, &node_name).await?;
            drive(cfg, h, s, proxy, policy).await
        }
        _ => Err(CliError::usage(format!(
            "agent: --store {store:?}: etcd=URL[,URL…] or file=DIR"
        ))),
    }
}

/// Connect to etcd, retrying while it is not up yet (an agent may start before etcd).
async fn connect_etcd(
    urls: &[&str],
    prefix: &str,
    plan: SubnetPlan,
) -> Result<netkit_core::ipam::lease::EtcdLeaseStore, netkit_core::ipam::lease::LeaseError> {
    use netkit_core::ipam::lease::{EtcdLeaseStore, LeaseError};
    netkit_core::retry::until_up(
        "etcd (leases)",
        || EtcdLeaseStore::connect(urls, prefix, plan),
        |e| matches!(e, LeaseError::Etcd { .. }),
    )
    .await
}

/// Run the agent (and with `--services` the service proxy) until SIGTERM or SIGINT.
async fn drive<S: LeaseStore + 'static>(
    cfg: AgentConfig,
    h: netkit_core::Handle,
    store: S,
    proxy: Option<Proxy>,
    policy: Option<PolicyController<AnyObjectStore>>,
) -> Result<(), CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let io = |cause| CliError::Io {
        what: "agent: signal handlers".into(),
        cause,
    };
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let proxy_task = proxy.map(|p| {
        let rx = stop_rx.clone();
        tokio::spawn(async move { p.run(stopped(rx)).await })
    });
    let policy_task = policy.map(|c| {
        let rx = stop_rx.clone();
        tokio::spawn(async move { c.run(stopped(rx)).await })
    });
    let agent = Agent::new(cfg, h, store).run(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let result = agent.await;
    for t in [proxy_task, policy_task].into_iter().flatten() {
        let _ = t.await;
    }
    result.map_err(|e| CliError::Io {
        what: "agent".into(),
        cause: std::io::Error::other(e.to_string()),
    })
}

/// The cluster store at `location`, retried while etcd is not up yet.
async fn object_store(location: &StoreLocation, prefix: &str) -> Result<AnyObjectStore, CliError> {
    netkit_core::retry::until_up(
        "etcd (cluster objects)",
        || AnyObjectStore::open(location, prefix),
        |e| matches!(e, StoreError::Etcd { .. }),
    )
    .await
    .map_err(|e| CliError::Io {
        what: format!("agent: cluster store {location}"),
        cause: std::io::Error::other(e.to_string()),
    })
}

/// The namespace of `-n` (or the current one): the node's.
fn node_ns(global: &Global) -> Result<NetNs, CliError> {
    match &global.netns {
        Some(name) => NetNs::open(name),
        None => NetNs::current(),
    }
    .map_err(|e| CliError::Io {
        what: "agent: the node's namespace".into(),
        cause: std::io::Error::other(e.to_string()),
    })
}

/// The policy controller of `--policy`: the object store at the lease store's place, the
/// node's nftables.
async fn policy_controller(
    global: &Global,
    a: &RunArgs,
    location: &StoreLocation,
    node: &str,
) -> Result<Option<PolicyController<AnyObjectStore>>, CliError> {
    if !a.policy {
        return Ok(None);
    }
    let ns = node_ns(global)?;
    let store = object_store(location, &a.objects_prefix).await?;
    let fw = PolicyFirewall::open(&ns, PolicyOptions::default())
        .await
        .map_err(|e| CliError::Io {
            what: "agent: the node's policy firewall".into(),
            cause: std::io::Error::other(e.to_string()),
        })?;
    let mut config = ControllerConfig::new(node);
    config.status_file = Some(a.status_file.with_extension("policy.json"));
    Ok(Some(PolicyController::new(store, fw, config)))
}

/// The service proxy on the cluster store, with the node's firewall.
type Proxy = ServiceProxy<AnyObjectStore, netkit_core::firewall::AnyFirewall>;

/// The service proxy of `--services`: the object store at the lease store's place, the
/// firewall of the node's namespace (netkit-cni's default state directory, so pods' port
/// mappings and services share one table).
async fn service_proxy(
    global: &Global,
    a: &RunArgs,
    location: &StoreLocation,
    node: &str,
    agent: &mut AgentConfig,
) -> Result<Option<Proxy>, CliError> {
    if !a.services {
        return Ok(None);
    }
    let io = |what: String, e: &dyn std::fmt::Display| CliError::Io {
        what,
        cause: std::io::Error::other(e.to_string()),
    };
    let ns = node_ns(global)?;
    let store = object_store(location, &a.objects_prefix).await?;
    let fw = netkit_core::firewall::open(&ns, FirewallOptions::default())
        .await
        .map_err(|e| io("agent: the node's firewall".into(), &e))?;
    let mut config = ProxyConfig::new(node);
    config.status_file = Some(services_status_file(&a.status_file));
    config.announce_iface = a.lb_iface.clone();
    config.lb_pools = a.lb_pool.clone();
    if a.lb_bgp {
        let (tx, rx) = tokio::sync::watch::channel(Default::default());
        config.announce_bgp = Some(tx);
        agent.announce = Some(rx);
    }
    Ok(Some(ServiceProxy::new(store, fw, ns, config)))
}

/// The LoadBalancer flags need the service proxy, and `--lb-bgp` the bgp backend.
fn check_lb_flags(a: &RunArgs, backend: &BackendConfig) -> Result<(), CliError> {
    if !a.services && (a.lb_bgp || a.lb_iface.is_some() || !a.lb_pool.is_empty()) {
        return Err(CliError::usage(
            "agent: --lb-iface, --lb-bgp and --lb-pool are for the service proxy: add --services",
        ));
    }
    if (a.lb_bgp || a.lb_iface.is_some()) && a.lb_pool.is_empty() {
        return Err(CliError::usage(
            "agent: --lb-iface and --lb-bgp announce only addresses of the LoadBalancer pools: add --lb-pool CIDR",
        ));
    }
    if let Some(dev) = &a.lb_iface {
        netkit_core::ifname::check(dev).map_err(|e| CliError::usage(format!("agent: --lb-iface: {e}")))?;
    }
    if a.lb_bgp && !matches!(backend, BackendConfig::Bgp(_)) {
        return Err(CliError::usage(format!(
            "agent: --lb-bgp announces through BIRD: it needs --backend bgp, not {}",
            backend.name()
        )));
    }
    Ok(())
}

/// Where the service proxy writes its status: next to the agent's (`agent.json` →
/// `agent.services.json`).
fn services_status_file(agent_status: &std::path::Path) -> PathBuf {
    agent_status.with_extension("services.json")
}

fn hostname() -> Result<String, CliError> {
    netkit_core::sysctl::hostname().map_err(|cause| CliError::Io {
        what: "read the host name".into(),
        cause,
    })
}
