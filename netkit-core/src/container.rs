//! A container's network in one call, and many containers at once.
//!
//! What a runtime or a test lab does for each container: a named namespace; a veth pair whose
//! inside end is born in that namespace (no move) and whose host end comes up in the same
//! request; an address on each end; `lo` and the inside end up; a default route through the
//! host end. [`setup`] does it in the fewest trips to the kernel that netkit knows: one helper
//! trip for the namespace and its netlink socket ([`Handle::create_netns`]), one request for
//! the pair, one for the host address, and one system call for everything inside
//! ([`crate::Batch`]: `lo` up, the inside end up, its address and its route). A failure rolls
//! back what was made (the pair, then the namespace).
//!
//! [`setup_many`] prepares many containers concurrently, on as many tasks as asked (each with
//! its own host socket); [`teardown_many`] removes many in one wait for the kernel
//! ([`Handle::link_del_many`]) where one by one costs a wait each.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use netkit_core::container::{self, ContainerSpec};
//! let host = netkit_core::NetNs::open("lab-host")?.handle().await?;
//! let spec = ContainerSpec::new("ctr1", "vctr1")
//!     .host_addr("10.200.0.1/30".parse()?)
//!     .addr("10.200.0.2/30".parse()?)
//!     .gateway("10.200.0.1".parse()?);
//! let c = container::setup(&host, &spec).await?;
//! container::teardown_many(&host, &[c]).await?;
//! # Ok(()) }
//! ```

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ipnetwork::IpNetwork;

use crate::link::Veth;
use crate::{Handle, NetNs, Route};

/// What one container gets (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The namespace to create, by name (`/run/netns/NAME`).
    pub netns: String,
    /// The host end of the veth pair.
    pub host_if: String,
    /// The inside end (default `eth0`).
    pub ifname: String,
    /// The host end's address, if any.
    pub host_addr: Option<IpNetwork>,
    /// The inside end's address, if any.
    pub addr: Option<IpNetwork>,
    /// The default route's gateway inside, if any (through the inside end).
    pub gateway: Option<IpAddr>,
    /// The pair's MTU (the kernel's default when `None`).
    pub mtu: Option<u32>,
}

impl ContainerSpec {
    /// A container in namespace `netns`, whose host end is `host_if` and inside end `eth0`;
    /// no addresses, no route.
    pub fn new(netns: impl Into<String>, host_if: impl Into<String>) -> Self {
        Self {
            netns: netns.into(),
            host_if: host_if.into(),
            ifname: "eth0".into(),
            host_addr: None,
            addr: None,
            gateway: None,
            mtu: None,
        }
    }

    /// Name the inside end.
    pub fn ifname(mut self, name: impl Into<String>) -> Self {
        self.ifname = name.into();
        self
    }

    /// Address of the host end.
    pub fn host_addr(mut self, prefix: IpNetwork) -> Self {
        self.host_addr = Some(prefix);
        self
    }

    /// Address of the inside end.
    pub fn addr(mut self, prefix: IpNetwork) -> Self {
        self.addr = Some(prefix);
        self
    }

    /// Default route inside, through this gateway.
    pub fn gateway(mut self, gw: IpAddr) -> Self {
        self.gateway = Some(gw);
        self
    }

    /// MTU of both ends.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
}

/// A container [`setup`] made: names and indexes only (no descriptors are held, so a
/// thousand of them cost nothing but memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The namespace's name.
    pub netns: String,
    /// The host end's name.
    pub host_if: String,
    /// The host end's index (in the host namespace).
    pub host_index: u32,
    /// The inside end's index (in the container's namespace).
    pub index: u32,
}

/// What went wrong, with the container and the step.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A step of [`setup`] failed; what it had made was removed (`rollback` lists what could
    /// not be).
    #[error("container {netns}: {step}: {cause}{}", rollback_note(rollback))]
    Setup {
        /// The container's namespace.
        netns: String,
        /// The step: "create namespace", "add veth", "add host address", "set up inside".
        step: &'static str,
        /// Why.
        cause: Box<dyn std::error::Error + Send + Sync>,
        /// Rollback steps that failed, each with its error.
        rollback: Vec<String>,
    },
    /// [`teardown_many`] (or [`teardown`]) could not remove everything; it went on past each
    /// failure and lists them all.
    #[error("teardown: {}", failures.join("; "))]
    Teardown {
        /// One entry per failure, naming what it was.
        failures: Vec<String>,
    },
    /// A setup task of [`setup_many`] ended without an answer (it panicked).
    #[error("container {netns}: its setup task ended without an answer: {reason}")]
    Task {
        /// The container's namespace.
        netns: String,
        /// The join error.
        reason: String,
    },
}

fn rollback_note(failures: &[String]) -> String {
    if failures.is_empty() {
        String::new()
    } else {
        format!(" (rollback failed: {})", failures.join("; "))
    }
}

/// Set up one container from the host namespace's handle `host` (see the
/// [module docs](self)). On failure nothing of it is left (or the error lists what is).
pub async fn setup(host: &Handle, spec: &ContainerSpec) -> Result<Container, ContainerError> {
    let fail = |step, cause: Box<dyn std::error::Error + Send + Sync>, rollback| ContainerError::Setup {
        netns: spec.netns.clone(),
        step,
        cause,
        rollback,
    };
    let inside = Handle::create_netns(&spec.netns)
        .await
        .map_err(|e| fail("create namespace", e.into(), Vec::new()))?;
    let mut veth = Veth::new(&spec.host_if, &spec.ifname).peer_netns(inside.netns()).up();
    if let Some(mtu) = spec.mtu {
        veth = veth.mtu(mtu);
    }
    let host_end = match host.link_add(&veth).await {
        Ok(l) => l,
        Err(e) => return Err(fail("add veth", e.into(), remove_netns(&spec.netns))),
    };
    // The host end's IFLA_LINK is the inside end's index in the container: no lookup.
    let index = host_end.parent.unwrap_or(0);
    let rest = async {
        if index == 0 {
            return Err(("add veth", "the kernel did not say the peer's index".into()));
        }
        if let Some(p) = spec.host_addr {
            let mut req = host.addr_add_index(host_end.index, p);
            if p.is_ipv6() {
                req = req.nodad();
            }
            req.await.map_err(|e| ("add host address", Box::new(e) as _))?;
        }
        let mut b = inside.batch();
        // lo is interface 1 in every namespace.
        b.link_up(1).link_up(index);
        if let Some(p) = spec.addr {
            b.addr_add(index, p);
        }
        if let Some(gw) = spec.gateway {
            let route = match gw {
                IpAddr::V4(_) => Route::default_v4(),
                IpAddr::V6(_) => Route::default_v6(),
            };
            b.route_add(&route.gateway(gw).dev_index(index))
                .await
                .map_err(|e| ("set up inside", Box::new(e) as _))?;
        }
        b.send().await.map_err(|e| ("set up inside", Box::new(e) as _))
    };
    match rest.await {
        Ok(()) => Ok(Container {
            netns: spec.netns.clone(),
            host_if: spec.host_if.clone(),
            host_index: host_end.index,
            index,
        }),
        Err((step, cause)) => {
            let mut rollback = Vec::new();
            if let Err(e) = host.link_del_by_index(host_end.index).await {
                rollback.push(format!("delete veth {}: {e}", spec.host_if));
            }
            rollback.extend(remove_netns(&spec.netns));
            Err(fail(step, cause, rollback))
        }
    }
}

fn remove_netns(name: &str) -> Vec<String> {
    match NetNs::delete(name) {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("delete namespace {name}: {e}")],
    }
}

/// What [`setup`] gives for one container.
pub type SetupResult = Result<Container, ContainerError>;

/// Set up every container of `specs` from the namespace `host_ns`, `parallel` at a time (0:
/// one per core), and return one result per spec, in order. Each task opens its own socket
/// in `host_ns` (a socket takes one request at a time). On a multi-thread tokio runtime the
/// tasks run on its worker threads; on a current-thread runtime they take turns on one.
/// The kernel serializes much of this work (the rtnl lock, namespace creation): see
/// BENCHMARKS.md for what parallelism buys on a given machine.
pub async fn setup_many(
    host_ns: &NetNs,
    specs: Vec<ContainerSpec>,
    parallel: usize,
) -> Vec<Result<Container, ContainerError>> {
    let n = specs.len();
    let parallel = match parallel {
        0 => std::thread::available_parallelism().map_or(1, |p| p.get()),
        p => p,
    }
    .min(n.max(1));
    let specs = Arc::new(specs);
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Option<SetupResult>>>> = Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let (host_ns, specs, next, results) = (host_ns.clone(), specs.clone(), next.clone(), results.clone());
        tasks.spawn(async move {
            let host = host_ns.handle().await;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = specs.get(i) else { break };
                let r = match &host {
                    Ok(h) => setup(h, spec).await,
                    Err(e) => Err(ContainerError::Setup {
                        netns: spec.netns.clone(),
                        step: "open a handle in the host namespace",
                        cause: e.to_string().into(),
                        rollback: Vec::new(),
                    }),
                };
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            }
        });
    }
    let mut panicked = None;
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            panicked.get_or_insert(e.to_string());
        }
    }
    let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
    std::mem::take(&mut *results)
        .into_iter()
        .zip(specs.iter())
        .map(|(r, spec)| {
            r.unwrap_or_else(|| {
                Err(ContainerError::Task {
                    netns: spec.netns.clone(),
                    reason: panicked.clone().unwrap_or_else(|| "no result".into()),
                })
            })
        })
        .collect()
}

/// Remove one container: its veth pair (from the host end, by index) and its namespace's name.
/// Idempotent; goes on past a failure and reports all.
pub async fn teardown(host: &Handle, c: &Container) -> Result<(), ContainerError> {
    let mut failures = Vec::new();
    if let Err(e) = host.link_del_by_index(c.host_index).await {
        failures.push(format!("delete veth {}: {e}", c.host_if));
    }
    failures.extend(remove_netns(&c.netns));
    finish(failures)
}

/// Remove many containers: every veth pair in one request ([`Handle::link_del_many_by_index`]:
/// one wait for the kernel instead of one per pair), then every namespace's name. The kernel
/// frees a namespace itself once nothing uses it. Idempotent; goes on past a failure and
/// reports all.
pub async fn teardown_many(host: &Handle, containers: &[Container]) -> Result<(), ContainerError> {
    let mut failures = Vec::new();
    let indexes: Vec<u32> = containers.iter().map(|c| c.host_index).collect();
    if let Err(e) = host.link_del_many_by_index(&indexes).await {
        failures.push(format!("delete {} veth pairs: {e}", indexes.len()));
    }
    for c in containers {
        failures.extend(remove_netns(&c.netns));
    }
    finish(failures)
}

fn finish(failures: Vec<String>) -> Result<(), ContainerError> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ContainerError::Teardown { failures })
    }
}
