//! Overlay agents on a simulated cluster ([`crate::cluster`]), in this process: what the
//! overlay tests, the runnable cluster example and the overlay bench share.
//!
//! * [`AgentTask`]: a [`netkit_core::overlay::Agent`] running inside its node's namespace, on a
//!   thread and runtime of its own ([`NsRuntime`]), so every socket it makes — the lease store's
//!   connection to an etcd on the underlay included — belongs to the node, as in a real
//!   cluster; its status channel; a clean stop.
//! * [`ClusterNode`]: a node of the [`Cluster`] with a directory for its files (subnet file,
//!   status, IPAM state), the agent configuration every user of this module starts from, and
//!   pods attached by netkit's attach code (what netkit-cni runs) inside the node's namespace,
//!   addressed from the agent's subnet file.
//! * [`backend`]: a backend from its name (`vxlan`, `vxlan-direct`, `host-gw`), as the
//!   example's and the bench's command lines spell it.
//! * [`wait_peers`] and [`reachability`]: bounded waits for an agent's peers, and every pod
//!   pinging every other pod and every node.

use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use netkit_core::attach::{self, Attachment, Host, NetworkConfig};
use netkit_core::ipam::lease::{FileLeaseStore, LeaseError, LeaseStore};
use netkit_core::overlay::{
    Agent, AgentConfig, AgentError, AgentStatus, BackendConfig, UdpBackendConfig, VxlanBackendConfig,
};
use netkit_core::{Handle, NetNs, NetNsGuard};
use tokio::sync::{oneshot, watch};

use crate::cluster::{Cluster, Node};
use crate::{ping, wait_for_async};

/// The backend names [`backend`] knows.
pub const BACKENDS: &[&str] = &["vxlan", "vxlan-direct", "host-gw", "udp", "udp-batched", "udp-single"];

/// The backend called `name`: `vxlan` (Flannel's defaults), `vxlan-direct` (vxlan with
/// `DirectRouting`), `host-gw`, `udp` (with the offloads), `udp-batched` (batched, no
/// offloads), `udp-single` (one packet per system call); `None` for any other name.
pub fn backend(name: &str) -> Option<BackendConfig> {
    let udp = |offload, single| {
        Some(BackendConfig::Udp(UdpBackendConfig {
            offload,
            single,
            ..Default::default()
        }))
    };
    match name {
        "udp" => udp(true, false),
        "udp-batched" => udp(false, false),
        "udp-single" => udp(false, true),
        "vxlan" => Some(BackendConfig::Vxlan(VxlanBackendConfig::default())),
        "vxlan-direct" => Some(BackendConfig::Vxlan(VxlanBackendConfig {
            direct_routing: true,
            ..Default::default()
        })),
        "host-gw" => Some(BackendConfig::HostGw),
        _ => None,
    }
}

/// A single-threaded tokio runtime on a thread of its own that has entered a namespace: what
/// it runs makes its sockets there. Stopped (its tasks dropped) when this drops.
#[derive(Debug)]
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    /// A runtime inside `ns`.
    pub fn new(ns: &NetNs) -> std::io::Result<NsRuntime> {
        let fd = ns.as_fd().try_clone_to_owned()?;
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("ns-{}", ns.name().unwrap_or("?")))
            .spawn(move || {
                // SAFETY: setns(2) on a namespace descriptor this thread owns; only this
                // thread changes namespace.
                if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let _ = handle_tx.send(Err(std::io::Error::last_os_error()));
                    return;
                }
                drop(fd);
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stopped.await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|_| std::io::Error::other("the namespace's runtime thread ended"))??;
        Ok(NsRuntime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Run `fut` on this runtime (inside the namespace); its join handle.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut)
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An overlay agent running inside its node's namespace (see the [module docs](self)).
/// [`AgentTask::stop`] stops it cleanly; dropping it stops its runtime (the agent's task is
/// dropped at its next await).
pub struct AgentTask {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), AgentError>>>,
    status: watch::Receiver<AgentStatus>,
    // Dropped last: the agent's task is dropped with it.
    _rt: NsRuntime,
}

impl AgentTask {
    /// Start an agent with `cfg` in `ns`; `store` makes its lease store there (so a store that
    /// connects somewhere connects from the node). Fails with the agent's error when the store
    /// cannot be made or the agent stops before it runs.
    pub async fn spawn<S, F, Fut>(ns: &NetNs, cfg: AgentConfig, store: F) -> Result<AgentTask, AgentError>
    where
        S: LeaseStore + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<S, LeaseError>> + Send + 'static,
    {
        let node = cfg.node.clone();
        let config_error = |reason: String| AgentError::Config {
            node: node.clone(),
            reason,
        };
        let rt = NsRuntime::new(ns).map_err(|e| config_error(format!("a runtime in {ns}: {e}")))?;
        let h = Handle::new(ns)
            .await
            .map_err(|e| config_error(format!("a netlink handle in {ns}: {e}")))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (status_tx, status_rx) = oneshot::channel();
        let task = rt.spawn(async move {
            let store = store().await.map_err(|cause| AgentError::Lease {
                node: cfg.node.clone(),
                cause,
            })?;
            let agent = Agent::new(cfg, h, store);
            let _ = status_tx.send(agent.status());
            agent
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        match status_rx.await {
            Ok(status) => Ok(AgentTask {
                stop: Some(stop),
                task: Some(task),
                status,
                _rt: rt,
            }),
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(config_error("the agent stopped before it ran".into())),
                Err(e) => Err(config_error(format!("the agent's task failed: {e}"))),
            },
        }
    }

    /// Wait (at most 30 s) until the agent runs (it set its data path up and holds a lease);
    /// the agent's error when it stopped instead (a backend this kernel cannot run, say).
    pub async fn running(mut self) -> Result<AgentTask, AgentError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.status.borrow_and_update().state == "running" {
                return Ok(self);
            }
            if self.task.as_ref().is_some_and(|t| t.is_finished()) {
                return Err(self.stop().await.err().unwrap_or_else(|| AgentError::Config {
                    node: String::new(),
                    reason: "the agent stopped before it ran".into(),
                }));
            }
            // Status changes wake us; a task that ends does not change the status, so look again
            // at least every 50 ms.
            if tokio::time::Instant::now() > deadline {
                return Err(AgentError::Config {
                    node: self.now().node,
                    reason: "not running within 30 s".into(),
                });
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), self.status.changed()).await;
        }
    }

    /// Stop the agent (as SIGTERM stops `netkit agent`: the data path stays, the lease is
    /// released only if its configuration says so) and wait for it; its result.
    pub async fn stop(mut self) -> Result<(), AgentError> {
        drop(self.stop.take());
        let node = self.status.borrow().node.clone();
        match self.task.take() {
            Some(task) => match task.await {
                Ok(result) => result,
                Err(e) => Err(AgentError::Config {
                    node,
                    reason: format!("the agent's task failed: {e}"),
                }),
            },
            None => Ok(()),
        }
    }

    /// The agent's current status.
    pub fn now(&self) -> AgentStatus {
        self.status.borrow().clone()
    }

    /// A receiver of the agent's status channel.
    pub fn status(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }
}

/// One node of a cluster with an agent: its namespace and underlay address ([`Node`]) and a
/// directory for its files.
pub struct ClusterNode {
    /// The node.
    pub node: Node,
    /// Its files: `subnet.env`, `status.json`, `ipam/`.
    pub dir: PathBuf,
}

impl ClusterNode {
    /// Node `tag` of `cluster` on `segment` with host number `host` (see [`Cluster::node`]).
    pub fn new(cluster: &Cluster, tag: &str, segment: u8, host: u8) -> ClusterNode {
        let node = cluster.node(tag, segment, host);
        let dir = cluster.dir().join(tag);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        ClusterNode { node, dir }
    }

    /// The node's (and its namespace's) name.
    pub fn name(&self) -> &str {
        self.node.name()
    }

    /// The subnet file its agent writes and its pods' IPAM reads.
    pub fn subnet_file(&self) -> PathBuf {
        self.dir.join("subnet.env")
    }

    /// The node's agent configuration: underlay `eth0`, the subnet file, a status file in the
    /// node's directory, `ttl`.
    pub fn config(&self, backend: BackendConfig, ttl: Duration) -> AgentConfig {
        let mut cfg = AgentConfig::new(self.name(), backend);
        cfg.iface = Some("eth0".into());
        cfg.subnet_file = Some(self.subnet_file());
        cfg.status_file = Some(self.dir.join("status.json"));
        cfg.ttl = ttl;
        cfg
    }

    /// Start the node's agent with `cfg` and the store `store` makes (inside the node).
    pub async fn start<S, F, Fut>(&self, cfg: AgentConfig, store: F) -> AgentTask
    where
        S: LeaseStore + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<S, LeaseError>> + Send + 'static,
    {
        let ns = NetNs::open(self.name()).unwrap_or_else(|e| panic!("open {}: {e}", self.name()));
        AgentTask::spawn(&ns, cfg, store)
            .await
            .unwrap_or_else(|e| panic!("start the agent of {}: {e}", self.name()))
    }

    /// Start the node's agent on the file store in `store_dir` (Flannel's plan, the directory
    /// read every 50 ms).
    pub async fn start_file(&self, store_dir: &Path, backend: BackendConfig, ttl: Duration) -> AgentTask {
        let dir = store_dir.to_path_buf();
        self.start(self.config(backend, ttl), move || async move {
            Ok(FileLeaseStore::open(dir, crate::lease::flannel())
                .await?
                .with_watch_interval(Duration::from_millis(50)))
        })
        .await
    }

    /// A pod `tag` on this node, attached as netkit-cni would (bridge cni0, addresses from the
    /// agent's subnet file, IPAM state in the node's directory); its address.
    pub async fn pod(&self, cluster: &Cluster, tag: &str) -> (NetNsGuard, Ipv4Addr) {
        self.pod_in_mode(cluster, tag, "bridge").await
    }

    /// A pod as [`ClusterNode::pod`] attaches it, in netkit-cni's `mode` (`bridge`, or `routed`:
    /// a /32 route per pod on the node, as Calico has it).
    pub async fn pod_in_mode(&self, cluster: &Cluster, tag: &str, mode: &str) -> (NetNsGuard, Ipv4Addr) {
        let (pod, ip, _) = self.pod_attached(cluster, tag, mode).await;
        (pod, ip)
    }

    /// A pod as [`ClusterNode::pod_in_mode`] attaches it; also the host side of its interface
    /// (the bridge port, or the routed veth).
    pub async fn pod_attached(&self, cluster: &Cluster, tag: &str, mode: &str) -> (NetNsGuard, Ipv4Addr, String) {
        let pod = cluster.pod(tag);
        let (conf, att) = self.attachment(&pod, tag, mode);
        let r = attach::add(&conf, &att)
            .await
            .unwrap_or_else(|e| panic!("attach pod {tag} on {}: {e}", self.name()));
        let n = r.result.interfaces.len();
        let host_end = r.result.interfaces[n - 2].name.clone();
        let r = r.to_json();
        let ip = r["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("pod {tag}: no IPv4 address in the result {r}"));
        (pod, ip, host_end)
    }
}

impl ClusterNode {
    /// The IPAM store its pods get addresses from (the network `podnet` under `ipam/`).
    pub fn ipam_store(&self) -> PathBuf {
        self.dir.join("ipam").join("podnet")
    }

    /// Detach pod `tag` (attached in `mode`), releasing its address.
    pub async fn remove_pod(&self, pod: &NetNsGuard, tag: &str, mode: &str) {
        let (conf, att) = self.attachment(pod, tag, mode);
        attach::del(&conf, &att)
            .await
            .unwrap_or_else(|e| panic!("detach pod {tag} from {}: {e}", self.name()));
    }

    /// netkit-cni's configuration and the attachment of pod `tag` in `mode`.
    fn attachment(&self, pod: &NetNsGuard, tag: &str, mode: &str) -> (NetworkConfig, Attachment) {
        let mut conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "podnet",
            "type": "netkit-cni",
            "mode": mode,
            "bridge": "cni0",
            "isDefaultGateway": true,
            "waitLinkFree": true,
            "ipam": {"type": "netkit-ipam", "dataDir": self.dir.join("ipam"), "subnetFile": self.subnet_file()}
        });
        if mode == "bridge" {
            // As Flannel's default configuration: a pod reaching itself through a service
            // (hairpin) comes back out of the bridge port it came in by.
            conf["hairpinMode"] = true.into();
        }
        let conf = NetworkConfig::parse(conf.to_string().as_bytes()).expect("a valid network configuration");
        let host = NetNs::open(self.name()).unwrap_or_else(|e| panic!("open {}: {e}", self.name()));
        let att = Attachment::new(pod.path().display().to_string(), tag, "eth0").host(Host::in_netns(host));
        (conf, att)
    }
}

/// Wait (at most 20 s) until `agent` runs with `peers` other nodes, every one of them
/// reachable; its status then.
pub async fn wait_peers(agent: &AgentTask, peers: usize) -> AgentStatus {
    let mut rx = agent.status();
    wait_for_async(Duration::from_secs(20), "the agent to program its peers", async || {
        let s = rx.borrow_and_update().clone();
        if s.state == "running" && s.peers.len() == peers && s.peers.iter().all(|p| p.error.is_none()) {
            Ok(s)
        } else {
            Err(s)
        }
    })
    .await
}

/// Every pod pings every other pod and every node (see [`crate::ping`]); the failures, as
/// `FROM -> pod TO` and `FROM -> node NAME IP`.
pub fn reachability(pods: &[(&NetNsGuard, Ipv4Addr)], nodes: &[&ClusterNode]) -> Vec<String> {
    let mut failed = Vec::new();
    for (from, from_ip) in pods {
        let name = from.name().expect("pods are named");
        for (_, to_ip) in pods.iter().filter(|(_, ip)| ip != from_ip) {
            if !ping(name, &to_ip.to_string()) {
                failed.push(format!("{from_ip} -> pod {to_ip}"));
            }
        }
        for n in nodes {
            if !ping(name, &n.node.ip.to_string()) {
                failed.push(format!("{from_ip} -> node {} {}", n.name(), n.node.ip));
            }
        }
    }
    failed
}
