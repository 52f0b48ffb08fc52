//! The overlay agent: Flannel's node daemon as a library loop.
//!
//! [`Agent::run`] does, in one task:
//!
//! 1. finds the underlay (the device and address the node talks to other nodes through);
//! 2. leases this node's subnet from the [`LeaseStore`] (file or etcd), publishing its
//!    underlay address and the backend's data (for vxlan, the VTEP MAC), and retries while the
//!    store is unreachable;
//! 3. sets the backend up for the subnet, writes the [`SubnetFile`](crate::ipam::SubnetFile) for the CNI plugin and
//!    turns on IPv4 forwarding in its namespace (the node forwards pod traffic);
//! 4. watches the leases and programs the backend for every other node, one peer at a time
//!    (a lease added, changed or ended changes only that peer's entries);
//! 5. watches the kernel: a route, neighbour or FDB entry of its own deleted by someone else is
//!    put back at once, its overlay device deleted is made again; when kernel events were lost,
//!    when the lease watch was re-established and when it starts, it compares everything it
//!    wants with a kernel dump and fixes the differences (so a restarted agent changes nothing
//!    that is right);
//! 6. renews the lease at a third of its TTL; a lost lease is acquired again (the same subnet
//!    if still free);
//! 7. on shutdown leaves the data path in place (pods keep talking) and releases the lease
//!    only if asked to ([`AgentConfig::release_on_shutdown`]).
//!
//! With the bgp backend it also:
//!
//! * follows the CNI plugin's IPAM store with inotify and claims and gives back blocks
//!   ([`AgentConfig::blocks`], see [`super::blocks`]); the claimed blocks' leases (slots 1, 2,
//!   …) are renewed with the lease, and adopted again after a restart;
//! * follows BIRD with a pidfd and starts it again when it dies (1 s, doubling, at most 30 s
//!   while it will not start), with the same blocks and peers; BIRD itself outlives an agent
//!   killed hard (it keeps announcing the node's blocks), and the next agent replaces it;
//! * asks BIRD for its sessions every second until all are Established, then every 30 s, and
//!   after every reload (for the status; `netkit agent status` asks BIRD itself).
//!
//! It polls nothing while nothing changes: it sleeps on the lease watch (etcd's watch; the file
//! store polls its directory, see [`FileLeaseStore`](crate::ipam::lease::FileLeaseStore)), on
//! kernel events, on the IPAM store's inotify watch and on the renewal timer (bgp adds the
//! 30 s session look). An unreachable store leaves the data path as it is:
//! the agent retries (1 s, doubling, at most 30 s) and reconciles when the store is back.
//!
//! Every change is one log line (`log` crate, target `netkit::overlay`); [`Agent::status`]
//! gives a channel of [`AgentStatus`], also written to [`AgentConfig::status_file`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use ipnetwork::IpNetwork;
use tokio::sync::watch;
use tokio::time::Instant;

mod blocks;
mod loans;

use super::backend::{Backend, BackendConfig, PeerMode, Underlay};
use super::blocks::BlockPolicy;
use super::peer::Peer;
use super::program::{Entry, Key, Wanted, PROTO_OVERLAY};
use super::status::{unix_ms, AgentStatus, BlockStatus, LeaseStatus, PeerStatus, UdpStatus};
use super::OverlayError;
use crate::events::{Event, EventKind, EventStream};
use crate::fsutil::watch::DirWatch;
use crate::ipam::blocks::BlockUse;
use crate::ipam::lease::{Lease, LeaseError, LeaseEvent, LeaseRequest, LeaseStore, LeaseWatch};
use crate::route::IpFamily;
use crate::Handle;

const TARGET: &str = "netkit::overlay";

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This node's name (its lease is held under it).
    pub node: String,
    /// The backend.
    pub backend: BackendConfig,
    /// The underlay device; `None`: the device holding `public_ip`, or the default route's.
    pub iface: Option<String>,
    /// This node's underlay address; `None`: the first IPv4 address of the underlay device.
    pub public_ip: Option<IpAddr>,
    /// The cluster network (for the subnet file); `None`: the lease store's plan.
    pub network: Option<IpNetwork>,
    /// Where to write the subnet file for the CNI plugin; `None`: not written.
    pub subnet_file: Option<PathBuf>,
    /// `FLANNEL_IPMASQ` in the subnet file.
    pub ip_masq: bool,
    /// Where to write the status as JSON; `None`: not written.
    pub status_file: Option<PathBuf>,
    /// The lease's time to live (renewed at a third of it).
    pub ttl: Duration,
    /// Release the lease when the agent stops (a node leaving for good); default keep it
    /// until it expires, so a restarted agent gets the same subnet.
    pub release_on_shutdown: bool,
    /// Calico's block affinity (bgp backend only): claim more blocks as the node's pods fill
    /// them, give empty ones back (see [`super::blocks`]); `None`: one block, the lease's.
    pub blocks: Option<BlockPolicy>,
    /// Addresses this node announces by BGP besides its blocks, as they change (bgp backend
    /// only): what [`ServiceProxy`](crate::service::ServiceProxy) decides for LoadBalancer
    /// addresses ([`ProxyConfig::announce_bgp`](crate::service::ProxyConfig::announce_bgp)).
    /// Each change is one BIRD reload. `None`: only the blocks.
    pub announce: Option<watch::Receiver<BTreeSet<IpAddr>>>,
}

impl AgentConfig {
    /// An agent for `node` with `backend`, everything else default: underlay from the
    /// default route, no files, a TTL of 24 h (Flannel's), the lease kept on shutdown.
    pub fn new(node: impl Into<String>, backend: BackendConfig) -> Self {
        Self {
            node: node.into(),
            backend,
            iface: None,
            public_ip: None,
            network: None,
            subnet_file: None,
            ip_masq: false,
            status_file: None,
            ttl: Duration::from_secs(24 * 3600),
            release_on_shutdown: false,
            blocks: None,
            announce: None,
        }
    }
}

/// Why the agent stopped with an error (only failures it cannot wait out: a bad
/// configuration, an underlay that cannot be found, a backend that cannot be set up).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration cannot work.
    #[error("overlay agent {node}: {reason}")]
    Config {
        /// The node.
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// The backend could not be set up.
    #[error("overlay agent {node}: {cause}")]
    Backend {
        /// The node.
        node: String,
        /// The backend's error.
        cause: OverlayError,
    },
    /// The lease store refused the lease for a reason waiting will not fix.
    #[error("overlay agent {node}: {cause}")]
    Lease {
        /// The node.
        node: String,
        /// The store's error.
        cause: LeaseError,
    },
}

/// A node's overlay agent (see the [module docs](self)).
pub struct Agent<S: LeaseStore> {
    cfg: AgentConfig,
    h: Handle,
    store: S,
    status_tx: watch::Sender<AgentStatus>,
}

/// The first retry delay after a store failure; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

impl<S: LeaseStore> Agent<S> {
    /// An agent working in `h`'s namespace (the node's) with `store`.
    pub fn new(cfg: AgentConfig, h: Handle, store: S) -> Self {
        let status = AgentStatus {
            node: cfg.node.clone(),
            state: "starting".into(),
            backend: cfg.backend.name().into(),
            ..Default::default()
        };
        Self {
            status_tx: watch::Sender::new(status),
            cfg,
            h,
            store,
        }
    }

    /// A channel with the agent's current status.
    pub fn status(&self) -> watch::Receiver<AgentStatus> {
        self.status_tx.subscribe()
    }

    /// Run until `shutdown` completes (see the [module docs](self)). Returns `Ok` after a
    /// clean shutdown, with the data path left in place.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        tokio::pin!(shutdown);
        if self.cfg.blocks.is_some() && !matches!(self.cfg.backend, BackendConfig::Bgp(_)) {
            return Err(AgentError::Config {
                node: self.cfg.node.clone(),
                reason: format!(
                    "block affinity (several blocks per node) needs the bgp backend, not {}",
                    self.cfg.backend.name()
                ),
            });
        }
        let underlay = self.underlay().await?;
        log::info!(
            target: TARGET,
            "{}: backend {}, underlay {} ({}, MTU {})",
            self.cfg.node,
            self.cfg.backend.name(),
            underlay.iface,
            underlay.public_ip,
            underlay.mtu
        );
        let backend = Backend::new(self.cfg.backend.clone(), underlay, &self.cfg.node);
        let mut run = Running {
            wanted: Wanted::default(),
            peers: BTreeMap::new(),
            problems: BTreeMap::new(),
            lease: None,
            extra: BTreeMap::new(),
            block_use: Vec::new(),
            block_error: None,
            bird_error: None,
            loans: Default::default(),
            borrowed_applied: Default::default(),
            loans_recheck: None,
            loans_published: None,
            loans_unpublished: false,
            moved_lease: None,
            renew_now: false,
            backend,
            changes: 0,
            reconciles: 0,
            store_error: None,
            agent: &self,
        };
        // A restarted agent takes up the loans its first lease records before the acquire
        // below rewrites the lease's data.
        run.adopt_own_loans_from_store().await;
        let Some(lease) = run.acquire(None, &mut shutdown).await? else {
            return Ok(());
        };
        run.use_lease(lease).await?;
        if let Err(e) = self.h.sysctl_set("net.ipv4.ip_forward", "1").await {
            log::warn!(target: TARGET, "{}: turning on IPv4 forwarding: {e}", self.cfg.node);
        }
        let mut kernel = self.subscribe().await;
        let mut ipam = run.watch_ipam().await;
        let mut leases: Option<LeaseWatch> = None;
        let mut rewatch_at = Some(Instant::now());
        let mut retry = RETRY_MIN;
        let mut renew_at = Instant::now() + self.cfg.ttl / 3;
        // bgp: BIRD is followed with a pidfd and started again when it dies (with back-off when
        // it will not start); its sessions are asked for every second until all are
        // Established, then every 30 s (and after every reload) for the status.
        let mut bird_exit = run.backend.bird_exit();
        let mut bird_retry_at: Option<Instant> = None;
        let mut bird_retry = RETRY_MIN;
        let mut sessions_at = bird_exit.as_ref().map(|_| Instant::now() + Duration::from_secs(1));
        let mut announce = self.cfg.announce.clone();
        if let Some(rx) = &mut announce {
            let want = rx.borrow_and_update().clone();
            run.backend.set_announce(&want);
            run.sync_backend().await;
        }
        // No reconcile before the first watch's snapshot: with no peers known yet it would
        // take every entry of a running data path for stale.
        run.publish("running");
        loop {
            if let Some(lease) = run.moved_lease.take() {
                run.use_lease(lease).await?;
                run.publish("running");
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = sleep_until(rewatch_at) => {
                    match self.store.watch().await {
                        Ok(w) => {
                            run.store_ok();
                            run.snapshot(w.snapshot()).await;
                            run.reconcile().await;
                            leases = Some(w);
                            rewatch_at = None;
                            retry = RETRY_MIN;
                        }
                        Err(e) => {
                            run.store_failed(&e);
                            rewatch_at = Some(Instant::now() + retry);
                            retry = (retry * 2).min(RETRY_MAX);
                        }
                    }
                    run.publish("running");
                }
                ev = next_lease_event(&mut leases) => {
                    let changed = match ev {
                        Some(Ok(ev)) => run.lease_event(ev).await,
                        Some(Err(e)) => {
                            // The file store keeps polling after a failed poll; etcd's stream ends.
                            run.store_failed(&e);
                            true
                        }
                        None => {
                            log::warn!(target: TARGET, "{}: the lease watch ended; watching again", self.cfg.node);
                            leases = None;
                            rewatch_at = Some(Instant::now() + retry);
                            true
                        }
                    };
                    if std::mem::take(&mut run.renew_now) {
                        renew_at = Instant::now();
                    }
                    if changed {
                        run.publish("running");
                    }
                }
                r = next_dir_change(&mut ipam) => {
                    if let Err(e) = r {
                        log::warn!(target: TARGET, "{}: watching the IPAM store: {e}", self.cfg.node);
                        ipam = None;
                    }
                    if run.check_blocks().await {
                        run.publish("running");
                    }
                }
                pid = bird_exited(&bird_exit) => {
                    if run.backend.bird_pid() == Some(pid) {
                        log::warn!(target: TARGET, "{}: bird (pid {pid}) exited; starting it again", self.cfg.node);
                        run.bird_error = Some(format!("bird (pid {pid}) exited"));
                        bird_exit = None;
                        bird_retry_at = Some(Instant::now());
                    } else {
                        // An earlier BIRD, replaced on purpose: follow the current one.
                        bird_exit = run.backend.bird_exit();
                    }
                }
                () = sleep_until(bird_retry_at) => {
                    match run.backend.restart_bird(&self.h).await {
                        Ok(()) => {
                            log::info!(target: TARGET, "{}: bird runs again (pid {:?})", self.cfg.node, run.backend.bird_pid());
                            bird_exit = run.backend.bird_exit();
                            run.bird_error = None;
                            (bird_retry_at, bird_retry) = (None, RETRY_MIN);
                            sessions_at = Some(Instant::now() + Duration::from_secs(1));
                        }
                        Err(e) => {
                            log::error!(target: TARGET, "{}: starting bird again: {e}; next try in {bird_retry:?}", self.cfg.node);
                            run.bird_error = Some(format!("starting bird again: {e}; next try in {bird_retry:?}"));
                            bird_retry_at = Some(Instant::now() + bird_retry);
                            bird_retry = (bird_retry * 2).min(RETRY_MAX);
                        }
                    }
                    run.publish("running");
                }
                () = sleep_until(sessions_at) => {
                    let before = run.backend.bgp_sessions();
                    run.backend.refresh_sessions().await;
                    let now = run.backend.bgp_sessions();
                    let all_up = now
                        .as_ref()
                        .is_some_and(|v| !v.is_empty() && v.iter().all(|s| s.info.starts_with("Established")));
                    let every = if all_up { Duration::from_secs(30) } else { Duration::from_secs(1) };
                    sessions_at = Some(Instant::now() + every);
                    if before != now {
                        run.publish("running");
                    }
                }
                r = announce_changed(&mut announce) => {
                    match r {
                        Some(want) => {
                            run.backend.set_announce(&want);
                            run.sync_backend().await;
                        }
                        // The proxy is gone: what it asked for last stays announced.
                        None => announce = None,
                    }
                }
                () = sleep_until(run.loans_recheck) => {
                    run.loans_recheck = None;
                    if run.loans_unpublished {
                        run.publish_loans().await;
                    }
                    if run.check_blocks().await {
                        run.publish("running");
                    }
                }
                ev = next_kernel_event(&mut kernel) => {
                    let changed = match ev {
                        Some(ev) => run.kernel_event(ev).await,
                        None => {
                            log::warn!(target: TARGET, "{}: kernel events ended; subscribing again", self.cfg.node);
                            kernel = self.subscribe().await;
                            run.reconcile().await;
                            true
                        }
                    };
                    if changed {
                        run.publish("running");
                    }
                }
                () = tokio::time::sleep_until(renew_at) => {
                    match run.renew(&mut shutdown).await? {
                        Some(next) => renew_at = next,
                        None => break,
                    }
                    run.renew_blocks().await;
                    // Also a safety net for the IPAM watch (an overflowed or failed one).
                    if ipam.is_none() {
                        ipam = run.watch_ipam().await;
                    }
                    run.check_blocks().await;
                    // The store answers again while the watch is down: watch again now
                    // rather than at the end of the back-off.
                    if leases.is_none() && run.store_error.is_none() {
                        rewatch_at = Some(Instant::now());
                        retry = RETRY_MIN;
                    }
                    run.publish("running");
                }
            }
        }
        if self.cfg.release_on_shutdown {
            for lease in run.lease.iter().chain(run.extra.values()) {
                match self.store.release(lease).await {
                    Ok(()) => log::info!(target: TARGET, "{}: released {}", self.cfg.node, lease.subnet),
                    Err(e) => log::warn!(target: TARGET, "{}: releasing {}: {e}", self.cfg.node, lease.subnet),
                }
            }
        }
        run.publish("stopped");
        log::info!(target: TARGET, "{}: stopped; the data path stays", self.cfg.node);
        Ok(())
    }

    /// The underlay device, address and MTU (see [`AgentConfig::iface`]).
    async fn underlay(&self) -> Result<Underlay, AgentError> {
        let fail = |reason: String| AgentError::Config {
            node: self.cfg.node.clone(),
            reason,
        };
        let addrs = self
            .h
            .addr_list(None)
            .await
            .map_err(|e| fail(format!("listing addresses: {e}")))?;
        let index = match (&self.cfg.iface, self.cfg.public_ip) {
            (Some(name), _) => {
                self.h
                    .link_get(name)
                    .await
                    .map_err(|e| fail(format!("underlay device {name}: {e}")))?
                    .index
            }
            (None, Some(ip)) => {
                addrs
                    .iter()
                    .find(|a| a.prefix.ip() == ip)
                    .ok_or_else(|| fail(format!("no device has the address {ip}")))?
                    .index
            }
            (None, None) => {
                let default = self
                    .h
                    .route_list(Some(IpFamily::V4), Some(crate::route::TABLE_MAIN))
                    .await
                    .map_err(|e| fail(format!("listing routes: {e}")))?
                    .into_iter()
                    .find(|r| r.dst.is_none())
                    .and_then(|r| r.oif)
                    .ok_or_else(|| fail("no --iface, no public IP and no default route to find the underlay".into()))?;
                default
            }
        };
        let link = self
            .h
            .link_get_by_index(index)
            .await
            .map_err(|e| fail(format!("underlay device #{index}: {e}")))?;
        let public_ip = match self.cfg.public_ip {
            Some(ip) => ip,
            None => addrs
                .iter()
                .find(|a| a.index == index && a.prefix.is_ipv4() && a.scope == crate::addr::Scope::Universe)
                .map(|a| a.prefix.ip())
                .ok_or_else(|| fail(format!("the underlay device {} has no IPv4 address", link.name)))?,
        };
        Ok(Underlay {
            iface: link.name.clone(),
            index,
            public_ip,
            mtu: link.mtu.unwrap_or(1500),
        })
    }

    /// Kernel events of the node's namespace (`None` if the subscription fails: the agent then
    /// runs without drift repair, and says so).
    async fn subscribe(&self) -> Option<EventStream> {
        match self
            .h
            .subscribe(&[EventKind::Route, EventKind::Neighbour, EventKind::Link])
            .await
        {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!(target: TARGET, "{}: no kernel events ({e}): drift is not repaired", self.cfg.node);
                None
            }
        }
    }
}

/// The agent's state while it runs.
struct Running<'a, S: LeaseStore> {
    agent: &'a Agent<S>,
    backend: Backend,
    wanted: Wanted,
    /// Every other node's lease, by subnet.
    peers: BTreeMap<IpNetwork, Peer>,
    /// Peers that cannot be programmed, and why.
    problems: BTreeMap<IpNetwork, String>,
    lease: Option<Lease>,
    /// The blocks claimed beyond the lease (block affinity), by lease slot.
    extra: BTreeMap<u32, Lease>,
    /// How full the blocks were when last counted.
    block_use: Vec<BlockUse>,
    /// Why no block could be claimed, while that lasts.
    block_error: Option<String>,
    /// BIRD died and is not running again yet: why.
    bird_error: Option<String>,
    /// Borrowed addresses, both ways (see [`super::borrow`]).
    loans: super::borrow::Loans,
    /// The borrowed addresses last written to the subnet file and BIRD.
    borrowed_applied: std::collections::BTreeSet<IpAddr>,
    /// When to look at the blocks and loans again (a lender that does not answer, a
    /// publication that failed).
    loans_recheck: Option<Instant>,
    /// The loans last published in the lease (so an unchanged state is not written again).
    loans_published: Option<super::borrow::LeaseLoans>,
    /// Publishing the loans failed: try again at `loans_recheck`.
    loans_unpublished: bool,
    /// A lease acquired elsewhere than the node's own (its lease was lost meanwhile), to be
    /// taken up by the main loop.
    moved_lease: Option<Lease>,
    /// The watch showed this node's own lease ending: renew (and acquire again) at once.
    renew_now: bool,
    changes: u64,
    reconciles: u64,
    store_error: Option<String>,
}

impl<S: LeaseStore> Running<'_, S> {
    fn node(&self) -> &str {
        &self.agent.cfg.node
    }

    fn request(&self, preferred: Option<IpNetwork>) -> LeaseRequest {
        let mut req = LeaseRequest::new(
            self.node(),
            self.backend.underlay().public_ip,
            self.backend.config().name(),
        )
        .backend_data(self.lease_data())
        .ttl(self.agent.cfg.ttl);
        if let Some(p) = preferred {
            req = req.preferred(p);
        }
        req
    }

    /// What this node's first lease carries: the backend's data, and its loans (borrowed
    /// addresses, both ways) when it has any.
    fn lease_data(&self) -> serde_json::Value {
        let mut data = self.backend.lease_data();
        let loans = self.loans.published();
        if !loans.borrow.is_empty() || !loans.lent.is_empty() {
            loans.write(&mut data);
        }
        data
    }

    /// Acquire a lease, retrying while the store fails; `None` when shut down meanwhile.
    async fn acquire(
        &mut self,
        preferred: Option<IpNetwork>,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<Option<Lease>, AgentError> {
        let mut retry = RETRY_MIN;
        loop {
            match self.agent.store.acquire(&self.request(preferred)).await {
                Ok(lease) => {
                    self.store_ok();
                    return Ok(Some(lease));
                }
                Err(e) if permanent(&e) => {
                    return Err(AgentError::Lease {
                        node: self.node().into(),
                        cause: e,
                    })
                }
                Err(e) => {
                    self.store_failed(&e);
                    self.publish("starting");
                }
            }
            tokio::select! {
                () = &mut *shutdown => return Ok(None),
                () = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
    }

    /// Take `lease` as this node's: set the backend up for its subnet and write the subnet
    /// file. A new subnet (a lost lease acquired again elsewhere) reprograms every peer.
    async fn use_lease(&mut self, lease: Lease) -> Result<(), AgentError> {
        let changed = self.lease.as_ref().map(|l| l.subnet) != Some(lease.subnet);
        if changed {
            log::info!(target: TARGET, "{}: leased {}", self.node(), lease.subnet);
            self.backend
                .configure(&self.agent.h, lease.subnet)
                .await
                .map_err(|cause| AgentError::Backend {
                    node: self.node().into(),
                    cause,
                })?;
            let network = self
                .agent
                .cfg
                .network
                .unwrap_or_else(|| self.agent.store.plan().network());
            let own = self.backend.own_entries(network);
            if !own.is_empty() {
                let (_, errors) = self.wanted.set_peer(&self.agent.h, network, own).await;
                for e in errors {
                    log::error!(target: TARGET, "{}: {e}", self.node());
                }
            }
        }
        self.lease = Some(lease);
        if changed {
            let block = self.lease.as_ref().map(|l| l.subnet);
            if let Some(block) = block {
                self.adopt_loans_in(block).await;
            }
            self.apply_blocks().await;
        }
        if changed {
            let peers: Vec<Peer> = self.peers.values().cloned().collect();
            for p in peers {
                self.program(p).await;
            }
        }
        Ok(())
    }

    /// The cluster network the subnet file names.
    fn network(&self) -> IpNetwork {
        self.agent
            .cfg
            .network
            .unwrap_or_else(|| self.agent.store.plan().network())
    }

    /// This node's blocks: the lease's subnet, then the claimed ones by slot.
    fn blocks(&self) -> Vec<IpNetwork> {
        self.lease.iter().chain(self.extra.values()).map(|l| l.subnet).collect()
    }

    /// Whether `subnet` is one of this node's blocks.
    fn own_block(&self, subnet: IpNetwork) -> bool {
        self.lease.iter().chain(self.extra.values()).any(|l| l.subnet == subnet)
    }

    /// Renew the lease (or acquire it again when lost); the next renewal time, or `None`
    /// when shut down while waiting for the store.
    async fn renew(
        &mut self,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<Option<Instant>, AgentError> {
        let ttl = self.agent.cfg.ttl;
        let Some(lease) = self.lease.clone() else {
            return Ok(Some(Instant::now() + ttl / 3));
        };
        match self.agent.store.renew(&lease).await {
            Ok(renewed) => {
                self.store_ok();
                self.lease = Some(renewed);
                Ok(Some(Instant::now() + ttl / 3))
            }
            Err(e) if e.is_lost() => {
                log::warn!(target: TARGET, "{}: lost the lease of {}; acquiring again", self.node(), lease.subnet);
                match self.acquire(Some(lease.subnet), shutdown).await? {
                    Some(new) => {
                        self.use_lease(new).await?;
                        Ok(Some(Instant::now() + ttl / 3))
                    }
                    None => Ok(None),
                }
            }
            Err(e) => {
                self.store_failed(&e);
                // Try again well before the lease can expire.
                Ok(Some(
                    Instant::now() + (ttl / 10).clamp(Duration::from_millis(200), RETRY_MAX),
                ))
            }
        }
    }

    /// The peers of a new watch's snapshot become the wanted state, without touching the
    /// kernel: the reconcile that follows installs only what is missing or different and
    /// removes what is stale, so an agent restarted over a right data path changes nothing.
    async fn snapshot(&mut self, leases: &[Lease]) {
        let mut now: BTreeMap<IpNetwork, Peer> = BTreeMap::new();
        for l in leases.iter().filter(|l| l.meta.node != self.node()) {
            now.insert(l.subnet, Peer::from_lease(l));
        }
        // Loans: what the other nodes' first leases say, and this node's own after a restart.
        let me = self.node().to_string();
        let mut loans = false;
        for l in leases.iter().filter(|l| l.slot == 0) {
            match l.meta.node == me {
                true => self.adopt_own_loans(l),
                false => loans |= self.loans.observe(&me, &l.meta.node, &l.meta.backend_data),
            }
        }
        let alive: std::collections::BTreeSet<&str> = leases.iter().map(|l| l.node()).collect();
        let gone: Vec<String> = self
            .loans
            .asked_of_me
            .keys()
            .chain(self.loans.lent.keys())
            .filter(|n| !alive.contains(n.as_str()))
            .cloned()
            .collect();
        for n in gone {
            self.loans_node_gone(&n).await;
        }
        // Blocks this node claimed before a restart: its again (renewed from now on).
        let mut adopted = false;
        if self.agent.cfg.blocks.is_some() {
            let me = self.node().to_string();
            for l in leases.iter().filter(|l| l.meta.node == me && l.slot > 0) {
                if !self.extra.contains_key(&l.slot) {
                    log::info!(target: TARGET, "{}: block {} (slot {}) is this node's", self.node(), l.subnet, l.slot);
                    self.extra.insert(l.slot, l.clone());
                    adopted = true;
                }
            }
        }
        if adopted {
            self.apply_blocks().await;
        }
        if loans || adopted {
            self.settle_loans().await;
        }
        let gone: Vec<IpNetwork> = self.peers.keys().filter(|s| !now.contains_key(s)).copied().collect();
        for subnet in gone {
            if let Some(peer) = self.peers.remove(&subnet) {
                log::info!(target: TARGET, "{}: node {} {} is gone", self.node(), peer.node, subnet);
            }
            self.backend.peer_gone(subnet);
            self.problems.remove(&subnet);
            self.wanted.forget(subnet);
        }
        for (subnet, peer) in now {
            if self.peers.get(&subnet) != Some(&peer) {
                let entries = self.entries(&peer).await;
                self.wanted.want(subnet, entries);
                self.peers.insert(subnet, peer);
            }
        }
        self.sync_backend().await;
    }

    /// A lease event; whether it changed anything (a renewal of another node's lease, the
    /// most common event, changes nothing).
    async fn lease_event(&mut self, ev: LeaseEvent) -> bool {
        match ev {
            LeaseEvent::Added(l) | LeaseEvent::Changed(l) if l.meta.node != self.node() => {
                let me = self.node().to_string();
                let loans = l.slot == 0 && self.loans.observe(&me, &l.meta.node, &l.meta.backend_data);
                if loans {
                    self.settle_loans().await;
                }
                let peer = Peer::from_lease(&l);
                if self.peers.get(&l.subnet) == Some(&peer) {
                    return loans;
                }
                self.program(peer).await;
                true
            }
            LeaseEvent::Removed(l)
                if l.meta.node != self.node() && self.peers.get(&l.subnet).is_some_and(|p| p.node == l.meta.node) =>
            {
                if l.slot == 0 {
                    self.loans_node_gone(&l.meta.node).await;
                }
                self.forget(l.subnet).await;
                true
            }
            LeaseEvent::Removed(l) if self.extra.get(&l.slot).is_some_and(|mine| mine.subnet == l.subnet) => {
                log::warn!(target: TARGET, "{}: the store ended this node's block {}", self.node(), l.subnet);
                self.renew_now = true;
                true
            }
            LeaseEvent::Removed(l) if self.lease.as_ref().is_some_and(|mine| mine.subnet == l.subnet) => {
                log::warn!(target: TARGET, "{}: the store ended this node's lease of {}", self.node(), l.subnet);
                // Renewal finds it lost and acquires again.
                self.renew_now = true;
                true
            }
            _ => false,
        }
    }

    /// Bring the backend's own peer state (BIRD's configuration) up to date, once per change.
    async fn sync_backend(&mut self) {
        if let Err(e) = self.backend.sync().await {
            log::error!(target: TARGET, "{}: reloading bird: {e}", self.node());
        }
    }

    /// Program one peer (its entries replace whatever it had).
    async fn program(&mut self, peer: Peer) {
        let subnet = peer.subnet;
        if self.own_block(subnet) {
            return;
        }
        let entries = self.entries(&peer).await;
        let (changes, errors) = self.wanted.set_peer(&self.agent.h, subnet, entries).await;
        self.changes += (changes.installed + changes.removed) as u64;
        for e in &errors {
            log::error!(target: TARGET, "{}: programming node {}: {e}", self.node(), peer.node);
        }
        if !errors.is_empty() {
            self.problems.insert(subnet, errors.join("; "));
        }
        self.peers.insert(subnet, peer);
        self.sync_backend().await;
    }

    /// The entries that reach `peer` (none when it cannot be reached: the reason is kept for
    /// the status and logged).
    async fn entries(&mut self, peer: &Peer) -> Vec<Entry> {
        let subnet = peer.subnet;
        let (entries, problem) = match self.backend.entries_for(&self.agent.h, peer).await {
            Ok((mode, entries)) => {
                log::info!(
                    target: TARGET,
                    "{}: node {} {} at {} ({})",
                    self.node(),
                    peer.node,
                    subnet,
                    peer.public_ip,
                    match mode {
                        PeerMode::Vxlan => "vxlan",
                        PeerMode::Direct => "direct route",
                        PeerMode::Udp => "udp",
                        PeerMode::Bgp => "bgp",
                        PeerMode::Ipip => "ipip",
                        PeerMode::Unreachable => "unreachable",
                    }
                );
                (entries, None)
            }
            Err(why) => {
                log::error!(target: TARGET, "{}: {why}", self.node());
                (Vec::new(), Some(why))
            }
        };
        match problem {
            Some(p) => self.problems.insert(subnet, p),
            None => self.problems.remove(&subnet),
        };
        entries
    }

    /// Forget a peer whose lease ended: remove its entries.
    async fn forget(&mut self, subnet: IpNetwork) {
        let Some(peer) = self.peers.remove(&subnet) else {
            return;
        };
        self.problems.remove(&subnet);
        self.backend.peer_gone(subnet);
        let (changes, errors) = self.wanted.set_peer(&self.agent.h, subnet, Vec::new()).await;
        self.changes += (changes.installed + changes.removed) as u64;
        log::info!(target: TARGET, "{}: node {} {} is gone; its routes removed", self.node(), peer.node, subnet);
        for e in errors {
            log::error!(target: TARGET, "{}: removing node {}: {e}", self.node(), peer.node);
        }
        self.sync_backend().await;
    }

    /// Compare everything with the kernel and fix the differences.
    async fn reconcile(&mut self) {
        self.reconciles += 1;
        match self
            .wanted
            .reconcile(&self.agent.h, IpFamily::V4, self.backend.overlay_dev())
            .await
        {
            Ok((changes, errors)) => {
                let n = changes.installed + changes.removed;
                if n > 0 {
                    log::info!(
                        target: TARGET,
                        "{}: reconciled: {} entries put back, {} stale removed",
                        self.node(),
                        changes.installed,
                        changes.removed
                    );
                }
                self.changes += n as u64;
                for e in errors {
                    log::error!(target: TARGET, "{}: reconcile: {e}", self.node());
                }
            }
            Err(e) => log::error!(target: TARGET, "{}: reconcile: reading the kernel: {e}", self.node()),
        }
    }

    /// A kernel event: one of the agent's entries deleted is put back; its overlay device
    /// deleted is made again; lost events make a full reconcile.
    /// A kernel event; whether the agent changed anything for it (most events are the echoes
    /// of its own changes, or others' business).
    async fn kernel_event(&mut self, ev: Event) -> bool {
        let key = match &ev {
            Event::DelRoute(r) if r.protocol == PROTO_OVERLAY => r.dst.map(Key::Route),
            Event::DelNeighbour(n) => Some(Key::Neigh(n.index, n.ip)),
            Event::DelFdb(f) => Some(Key::Fdb(f.index, f.mac)),
            Event::DelLink(l) if self.backend.overlay_dev().is_some_and(|(i, _)| i == l.index) => {
                log::warn!(target: TARGET, "{}: the overlay device {} was deleted; making it again", self.node(), l.name);
                if let Some(lease) = self.lease.take() {
                    if let Err(e) = self.use_lease(lease).await {
                        log::error!(target: TARGET, "{}: {e}", self.node());
                    }
                }
                self.reconcile().await;
                return true;
            }
            Event::Overrun => {
                log::warn!(target: TARGET, "{}: kernel events were lost; comparing with the kernel", self.node());
                self.reconcile().await;
                return true;
            }
            _ => None,
        };
        let Some(entry) = key.and_then(|k| self.wanted.get(&k)).cloned() else {
            return false;
        };
        match entry.install(&self.agent.h).await {
            Ok(()) => {
                self.changes += 1;
                log::info!(target: TARGET, "{}: put back {}", self.node(), describe(&entry));
            }
            Err(e) => log::error!(target: TARGET, "{}: putting back {}: {e}", self.node(), describe(&entry)),
        }
        true
    }

    fn store_ok(&mut self) {
        if let Some(e) = self.store_error.take() {
            log::info!(target: TARGET, "{}: the lease store works again (after: {e})", self.node());
        }
    }

    fn store_failed(&mut self, e: &LeaseError) {
        let msg = e.to_string();
        if self.store_error.as_deref() != Some(msg.as_str()) {
            log::warn!(target: TARGET, "{}: lease store: {msg}; the data path stays as it is", self.node());
        }
        self.store_error = Some(msg);
    }

    /// Publish the status (channel and file).
    fn publish(&self, state: &str) {
        let underlay = self.backend.underlay();
        let status = AgentStatus {
            node: self.node().into(),
            state: state.into(),
            backend: self.backend.config().name().into(),
            iface: underlay.iface.clone(),
            public_ip: Some(underlay.public_ip),
            mtu: self.backend.pod_mtu(),
            lease: self.lease.as_ref().map(|l| LeaseStatus {
                subnet: l.subnet,
                expires_ms: unix_ms(l.expires_at),
            }),
            blocks: self
                .block_use
                .iter()
                .map(|u| BlockStatus {
                    subnet: u.block,
                    held: u.held,
                    capacity: u.capacity,
                })
                .collect(),
            block_error: self.block_error.clone(),
            loans: self.loan_status(),
            store_ok: self.store_error.is_none(),
            store_error: self.store_error.clone(),
            peers: self
                .peers
                .values()
                .map(|p| {
                    let error = self.problems.get(&p.subnet).cloned();
                    let mode = match (&error, self.wanted_mode(p)) {
                        (Some(_), _) => PeerMode::Unreachable,
                        (None, m) => m,
                    };
                    PeerStatus {
                        node: p.node.clone(),
                        subnet: p.subnet,
                        public_ip: p.public_ip,
                        mode,
                        error,
                    }
                })
                .collect(),
            entries: self.wanted.entries(),
            changes: self.changes,
            reconciles: self.reconciles,
            bird_dir: self.backend.bird_dir().map(|d| d.to_path_buf()),
            bird_error: self.bird_error.clone(),
            bgp: self.backend.bgp_sessions(),
            udp: self.backend.udp_counters().map(|c| UdpStatus {
                tx_packets: c.tx_packets.load(Ordering::Relaxed),
                tx_no_peer: c.tx_no_peer.load(Ordering::Relaxed),
                rx_packets: c.rx_packets.load(Ordering::Relaxed),
                rx_unknown: c.rx_unknown.load(Ordering::Relaxed),
                syscalls: c.syscalls.load(Ordering::Relaxed),
                tso_cut: c.tso_cut.load(Ordering::Relaxed),
                uso_cut: c.uso_cut.load(Ordering::Relaxed),
                uso: c.uso.load(Ordering::Relaxed),
            }),
            updated_ms: unix_ms(std::time::SystemTime::now()),
        };
        if let Some(path) = &self.agent.cfg.status_file {
            if let Err(e) = status.write(path) {
                log::warn!(target: TARGET, "{}: {e}", self.node());
            }
        }
        self.agent.status_tx.send_replace(status);
    }

    /// The loans for the status: borrowed, then lent.
    fn loan_status(&self) -> Vec<super::status::LoanStatus> {
        let me = self.node();
        let borrowed = self
            .usable_loans()
            .into_iter()
            .map(|(ip, lender)| super::status::LoanStatus {
                address: ip,
                lender,
                borrower: me.to_string(),
            });
        let lent = self.loans.lent.iter().flat_map(|(b, ips)| {
            ips.iter().map(move |ip| super::status::LoanStatus {
                address: *ip,
                lender: me.to_string(),
                borrower: b.clone(),
            })
        });
        borrowed.chain(lent).collect()
    }

    /// How a programmed peer is reached, from its route (udp: through the data path).
    fn wanted_mode(&self, p: &Peer) -> PeerMode {
        let bgp_encap = match self.backend.config() {
            BackendConfig::Udp(_) => return PeerMode::Udp,
            BackendConfig::Bgp(b) => Some(b.encap),
            _ => None,
        };
        match (bgp_encap, self.wanted.get(&Key::Route(p.subnet))) {
            // BIRD's route: nothing of the agent's.
            (Some(_), None) => return PeerMode::Bgp,
            (Some(super::backend::BgpEncap::Ipip), Some(_)) => return PeerMode::Ipip,
            _ => {}
        }
        match self.wanted.get(&Key::Route(p.subnet)) {
            Some(Entry::Route { onlink: true, .. }) => PeerMode::Vxlan,
            Some(_) => PeerMode::Direct,
            None => PeerMode::Unreachable,
        }
    }
}

/// An entry as a log line names it.
fn describe(e: &Entry) -> String {
    match e {
        Entry::Route { dst, via, onlink, .. } => {
            format!("route {dst} via {via}{}", if *onlink { " onlink" } else { "" })
        }
        Entry::Neigh { dev_name, ip, mac, .. } => format!("neighbour {ip} lladdr {mac} dev {dev_name}"),
        Entry::Fdb { mac, dst, .. } => format!("fdb {mac} dst {dst}"),
        Entry::DevRoute { dst, .. } => format!("route {dst} dev"),
    }
}

/// Lease errors that retrying will not fix.
fn permanent(e: &LeaseError) -> bool {
    matches!(
        e,
        LeaseError::InvalidNode { .. }
            | LeaseError::InvalidTtl { .. }
            | LeaseError::SubnetNotInPlan { .. }
            | LeaseError::PlanMismatch { .. }
            | LeaseError::InvalidPlan { .. }
    )
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_lease_event(w: &mut Option<LeaseWatch>) -> Option<Result<LeaseEvent, LeaseError>> {
    match w {
        Some(w) => w.next_event().await,
        None => std::future::pending().await,
    }
}

/// The pid of the BIRD `w` follows, once it has exited.
/// The next addresses to announce; `None` when the sender is gone (pending without one).
async fn announce_changed(rx: &mut Option<watch::Receiver<BTreeSet<IpAddr>>>) -> Option<BTreeSet<IpAddr>> {
    match rx {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

async fn bird_exited(w: &Option<super::bird::BirdExit>) -> u32 {
    match w {
        Some(w) => {
            w.exited().await;
            w.pid()
        }
        None => std::future::pending().await,
    }
}

async fn next_dir_change(w: &mut Option<DirWatch>) -> std::io::Result<()> {
    match w {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

async fn next_kernel_event(s: &mut Option<EventStream>) -> Option<Event> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
