//! Firewall and NAT for containers: masquerade, port mappings, services (ClusterIP, NodePort
//! and external IPs, with optional client affinity and kube-proxy's external traffic policies),
//! isolation between networks.
//!
//! Services follow kube-proxy's semantics (see [`Service`]): a service without endpoints
//! rejects new connections (TCP reset, ICMP port unreachable otherwise) to its address, node
//! port and external IPs, whether they come from containers, from outside or from the host;
//! with [`TrafficPolicy::Cluster`] node-port and external-IP connections go to every endpoint,
//! masqueraded; with [`TrafficPolicy::Local`] only to [`Endpoint::local`] ones, with the
//! client's address (none local: dropped). Both drivers implement all of it; the C API
//! (netkit-ffi) does not expose the policy, external IPs and `local` yet.
//!
//! A [`Firewall`] lives in one network namespace (the caller names it; never implicitly the
//! machine's own) and has two drivers:
//!
//! * [`Nftables`] (the default): one table, `inet netkit`. Port mappings, masquerade sources,
//!   container networks, isolated pairs and service addresses are elements of sets and verdict
//!   maps, so a packet costs one hash lookup and a change one small netlink transaction
//!   whatever the number of objects. Element changes are sent as nf_tables netlink batches by
//!   netkit itself; the table, chains and per-service chains are written in nft syntax and run
//!   through libnftables in-process (no `nft` process).
//! * [`Iptables`], for hosts without nftables: netkit's own chains (`NETKIT-…`) in the nat and
//!   filter tables, rewritten with one `iptables-restore --noflush` per change (atomic; its cost
//!   grows with the number of rules, as iptables' does).
//!
//! [`open`] picks nftables when libnftables loads and the kernel accepts an nftables table, and
//! iptables otherwise; [`FirewallOptions::driver`] overrides.
//!
//! Every object belongs to an owner (a container attachment, a service): [`Firewall::teardown`]
//! removes exactly one owner's objects and is idempotent, [`Firewall::gc`] removes owners not in
//! a list, [`Firewall::reconcile`] re-applies the wanted state (kept in a state directory) after
//! someone flushed the ruleset. When the last owner goes, netkit's table or chains go too, so
//! the ruleset is what it was before.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use netkit_core::firewall::{self, Firewall, FirewallOptions, Masquerade, Network, PortMapping, Protocol, Rules};
//! use netkit_core::NetNs;
//!
//! let host = NetNs::open("host")?;
//! let fw = firewall::open(&host, FirewallOptions::default()).await?;
//! fw.add("ctr1:eth0", &Rules {
//!     networks: vec![Network::new("cni0", "10.88.0.0/16".parse()?)],
//!     masquerades: vec![Masquerade::address("10.88.0.5".parse()?, "10.88.0.0/16".parse()?)],
//!     port_mappings: vec![PortMapping::new(Protocol::Tcp, 8080, "10.88.0.5".parse()?, 80)],
//!     ..Default::default()
//! }).await?;
//! fw.teardown("ctr1:eth0").await?;
//! # Ok(()) }
//! ```

mod engine;
mod error;
pub mod iptables;
pub(crate) mod model;
pub mod nftables;
mod state;

use std::future::Future;
use std::path::PathBuf;

pub use engine::default_state_dir;
pub use error::FirewallError;
pub use iptables::Iptables;
pub use model::{
    check_owner, Endpoint, Isolation, Masquerade, Network, PortMapping, Protocol, Rules, Service, TrafficPolicy,
    MAX_OWNER_LEN, MAX_PORT_RANGE,
};
pub use nftables::Nftables;

use crate::NetNs;

/// Which kernel interface programs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// nftables (sets and verdict maps; netlink batches).
    Nftables,
    /// iptables (iptables-restore batches).
    Iptables,
}

impl Driver {
    /// "nftables" or "iptables".
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Nftables => "nftables",
            Driver::Iptables => "iptables",
        }
    }
}

/// How to open a firewall.
#[derive(Debug, Clone)]
pub struct FirewallOptions {
    /// Force a driver (`None`: nftables when usable, else iptables).
    pub driver: Option<Driver>,
    /// Where the wanted state lives (default: `/run/netkit/firewall/<netns cookie>`). Every process
    /// working on the same namespace and [`name`](Self::name) must use the same directory: the
    /// kernel objects carry the directory's id, and a firewall opened with another directory and
    /// the same name is refused ([`FirewallError::Foreign`]).
    pub state_dir: Option<PathBuf>,
    /// The nftables table name, and the iptables chain prefix (upper-cased). Default `netkit`.
    pub name: String,
    /// The packet-mark bit that asks for masquerading (services with `masquerade`, a service
    /// endpoint reaching itself). Default `0x2000`.
    pub masquerade_mark: u32,
    /// nftables: close the nf_tables socket in a detached process after a change that removed
    /// something. The kernel makes the closing thread wait for its deferred cleanup of removals
    /// (an RCU grace period, 3–25 ms on a loaded machine); a short-lived process whose caller
    /// waits for it to exit (a CNI plugin) should set this. Default `false`.
    pub detached_close: bool,
    /// The longest wait for the state directory's lock before a change fails with
    /// [`FirewallError::LockTimeout`]. Default 30 s.
    pub lock_timeout: std::time::Duration,
}

impl Default for FirewallOptions {
    fn default() -> Self {
        Self {
            driver: None,
            state_dir: None,
            name: "netkit".into(),
            masquerade_mark: 0x2000,
            detached_close: false,
            lock_timeout: std::time::Duration::from_secs(30),
        }
    }
}

impl FirewallOptions {
    /// Use this driver.
    pub fn driver(mut self, driver: Driver) -> Self {
        self.driver = Some(driver);
        self
    }

    /// Keep the state here.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Name the table (nftables) / prefix the chains (iptables).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// See [`FirewallOptions::detached_close`].
    pub fn detached_close(mut self, on: bool) -> Self {
        self.detached_close = on;
        self
    }
}

/// The operations both drivers offer. Every change is atomic in the kernel and recorded in the
/// state directory first, so a process killed mid-way leaves nothing `teardown` or `gc` cannot
/// find.
///
/// The futures are `Send`; the work runs on tokio's blocking pool.
pub trait Firewall: Send + Sync {
    /// The driver.
    fn driver(&self) -> Driver;

    /// Give `owner` these objects as well (idempotent; a service replaces the owner's service of
    /// the same name). A host port another owner maps, or a service name another owner has,
    /// is a [`FirewallError::Conflict`] and changes nothing.
    fn add(&self, owner: &str, rules: &Rules) -> impl Future<Output = Result<(), FirewallError>> + Send;

    /// Take these objects from `owner` (those it does not hold are ignored).
    fn remove(&self, owner: &str, rules: &Rules) -> impl Future<Output = Result<(), FirewallError>> + Send;

    /// Remove everything `owner` holds; returns what it held. Idempotent.
    fn teardown(&self, owner: &str) -> impl Future<Output = Result<Rules, FirewallError>> + Send;

    /// Add one endpoint to a service, touching no other service. An endpoint of the same
    /// address and port with another [`Endpoint::local`] is replaced.
    fn add_endpoint(&self, service: &str, ep: Endpoint) -> impl Future<Output = Result<(), FirewallError>> + Send;

    /// Remove one endpoint (by address and port: `local` does not matter) from a service
    /// (absent: no change).
    fn remove_endpoint(&self, service: &str, ep: Endpoint) -> impl Future<Output = Result<(), FirewallError>> + Send;

    /// What `owner` holds.
    fn rules(&self, owner: &str) -> impl Future<Output = Result<Rules, FirewallError>> + Send;

    /// Every owner holding something.
    fn owners(&self) -> impl Future<Output = Result<Vec<String>, FirewallError>> + Send;

    /// Tear down every owner not in `valid`; returns the owners removed.
    fn gc(&self, valid: &[String]) -> impl Future<Output = Result<Vec<String>, FirewallError>> + Send;

    /// Tear down every owner whose name starts with `scope` and is not in `valid`; owners
    /// outside the scope are left alone. Returns the owners removed. A CNI network's GC uses
    /// its own prefix (`<network>/`), so it never touches another network's owners that share
    /// the namespace and the state directory.
    fn gc_scope(
        &self,
        scope: &str,
        valid: &[String],
    ) -> impl Future<Output = Result<Vec<String>, FirewallError>> + Send;

    /// Re-apply the whole wanted state (after a flush of the ruleset or a firewall reload).
    fn reconcile(&self) -> impl Future<Output = Result<(), FirewallError>> + Send;

    /// Make each owner of `changes` hold exactly its list of services (what else it holds
    /// stays; an owner left with nothing is gone), for many owners at once: the nftables
    /// driver applies them all in one transaction (a service proxy's first sync of thousands
    /// of services is one kernel transaction, not thousands), the iptables driver one owner
    /// after another. A service name another owner (not in `changes`) has, or one named twice,
    /// is a [`FirewallError::Conflict`] and changes nothing. When the one transaction fails,
    /// nothing changed and the error says why; apply owner by owner to find the culprit.
    fn set_services(
        &self,
        changes: &[(String, Vec<Service>)],
    ) -> impl Future<Output = Result<(), FirewallError>> + Send;
}

/// A firewall with the driver chosen at run time.
#[derive(Clone)]
pub enum AnyFirewall {
    /// nftables.
    Nftables(Nftables),
    /// iptables.
    Iptables(Iptables),
}

/// Open the firewall of namespace `ns`, choosing the driver (see [`FirewallOptions::driver`]).
pub async fn open(ns: &NetNs, options: FirewallOptions) -> Result<AnyFirewall, FirewallError> {
    match options.driver {
        Some(Driver::Nftables) => Ok(AnyFirewall::Nftables(Nftables::open(ns, options).await?)),
        Some(Driver::Iptables) => Ok(AnyFirewall::Iptables(Iptables::open(ns, options).await?)),
        None => match Nftables::open(ns, options.clone()).await {
            Ok(nft) => Ok(AnyFirewall::Nftables(nft)),
            Err(FirewallError::Unavailable { .. }) => Ok(AnyFirewall::Iptables(Iptables::open(ns, options).await?)),
            Err(e) => Err(e),
        },
    }
}

/// What the state directory of `options` records for `owner`, read without opening a driver:
/// it works on a host without nftables and iptables, and creates nothing when the directory
/// does not exist (then nobody holds anything). A caller that only has to clean up (a CNI DEL)
/// asks this first and opens the firewall only when there is something to remove.
pub async fn recorded(ns: &NetNs, options: &FirewallOptions, owner: &str) -> Result<Rules, FirewallError> {
    check_owner(owner)?;
    let (ns, options, owner) = (ns.clone(), options.clone(), owner.to_string());
    engine::blocking(move || match engine::existing_state(&ns, &options)? {
        Some(state) => state.rules(&owner),
        None => Ok(Rules::default()),
    })
    .await
}

/// Every owner the state directory of `options` records, read without opening a driver (see
/// [`recorded`]).
pub async fn recorded_owners(ns: &NetNs, options: &FirewallOptions) -> Result<Vec<String>, FirewallError> {
    let (ns, options) = (ns.clone(), options.clone());
    engine::blocking(move || match engine::existing_state(&ns, &options)? {
        Some(state) => state.owners(),
        None => Ok(Vec::new()),
    })
    .await
}

macro_rules! dispatch {
    ($self:ident, $fw:ident => $e:expr) => {
        match $self {
            AnyFirewall::Nftables($fw) => $e,
            AnyFirewall::Iptables($fw) => $e,
        }
    };
}

impl Firewall for AnyFirewall {
    fn driver(&self) -> Driver {
        dispatch!(self, fw => fw.driver())
    }
    async fn add(&self, owner: &str, rules: &Rules) -> Result<(), FirewallError> {
        dispatch!(self, fw => fw.add(owner, rules).await)
    }
    async fn remove(&self, owner: &str, rules: &Rules) -> Result<(), FirewallError> {
        dispatch!(self, fw => fw.remove(owner, rules).await)
    }
    async fn teardown(&self, owner: &str) -> Result<Rules, FirewallError> {
        dispatch!(self, fw => fw.teardown(owner).await)
    }
    async fn add_endpoint(&self, service: &str, ep: Endpoint) -> Result<(), FirewallError> {
        dispatch!(self, fw => fw.add_endpoint(service, ep).await)
    }
    async fn remove_endpoint(&self, service: &str, ep: Endpoint) -> Result<(), FirewallError> {
        dispatch!(self, fw => fw.remove_endpoint(service, ep).await)
    }
    async fn rules(&self, owner: &str) -> Result<Rules, FirewallError> {
        dispatch!(self, fw => fw.rules(owner).await)
    }
    async fn owners(&self) -> Result<Vec<String>, FirewallError> {
        dispatch!(self, fw => fw.owners().await)
    }
    async fn gc(&self, valid: &[String]) -> Result<Vec<String>, FirewallError> {
        dispatch!(self, fw => fw.gc(valid).await)
    }
    async fn gc_scope(&self, scope: &str, valid: &[String]) -> Result<Vec<String>, FirewallError> {
        dispatch!(self, fw => fw.gc_scope(scope, valid).await)
    }
    async fn reconcile(&self) -> Result<(), FirewallError> {
        dispatch!(self, fw => fw.reconcile().await)
    }
    async fn set_services(&self, changes: &[(String, Vec<Service>)]) -> Result<(), FirewallError> {
        dispatch!(self, fw => fw.set_services(changes).await)
    }
}

/// Implement [`Firewall`] for a driver type wrapping an `Engine` in field `0`.
macro_rules! firewall_via_engine {
    ($ty:ty, $driver:expr) => {
        impl $crate::firewall::Firewall for $ty {
            fn driver(&self) -> $crate::firewall::Driver {
                $driver
            }
            async fn add(
                &self,
                owner: &str,
                rules: &$crate::firewall::Rules,
            ) -> ::std::result::Result<(), $crate::firewall::FirewallError> {
                let (e, o, r) = (self.0.clone(), owner.to_string(), rules.clone());
                $crate::firewall::engine::blocking(move || e.add(&o, &r)).await
            }
            async fn remove(
                &self,
                owner: &str,
                rules: &$crate::firewall::Rules,
            ) -> ::std::result::Result<(), $crate::firewall::FirewallError> {
                let (e, o, r) = (self.0.clone(), owner.to_string(), rules.clone());
                $crate::firewall::engine::blocking(move || e.remove(&o, &r)).await
            }
            async fn teardown(
                &self,
                owner: &str,
            ) -> ::std::result::Result<$crate::firewall::Rules, $crate::firewall::FirewallError> {
                let (e, o) = (self.0.clone(), owner.to_string());
                $crate::firewall::engine::blocking(move || e.teardown(&o)).await
            }
            async fn add_endpoint(
                &self,
                service: &str,
                ep: $crate::firewall::Endpoint,
            ) -> ::std::result::Result<(), $crate::firewall::FirewallError> {
                let (e, s) = (self.0.clone(), service.to_string());
                $crate::firewall::engine::blocking(move || e.set_endpoint(&s, ep, true)).await
            }
            async fn remove_endpoint(
                &self,
                service: &str,
                ep: $crate::firewall::Endpoint,
            ) -> ::std::result::Result<(), $crate::firewall::FirewallError> {
                let (e, s) = (self.0.clone(), service.to_string());
                $crate::firewall::engine::blocking(move || e.set_endpoint(&s, ep, false)).await
            }
            async fn rules(
                &self,
                owner: &str,
            ) -> ::std::result::Result<$crate::firewall::Rules, $crate::firewall::FirewallError> {
                let (e, o) = (self.0.clone(), owner.to_string());
                $crate::firewall::engine::blocking(move || e.rules(&o)).await
            }
            async fn owners(&self) -> ::std::result::Result<Vec<String>, $crate::firewall::FirewallError> {
                let e = self.0.clone();
                $crate::firewall::engine::blocking(move || e.owners()).await
            }
            async fn gc(
                &self,
                valid: &[String],
            ) -> ::std::result::Result<Vec<String>, $crate::firewall::FirewallError> {
                let (e, v) = (self.0.clone(), valid.to_vec());
                $crate::firewall::engine::blocking(move || e.gc("", &v)).await
            }
            async fn gc_scope(
                &self,
                scope: &str,
                valid: &[String],
            ) -> ::std::result::Result<Vec<String>, $crate::firewall::FirewallError> {
                let (e, s, v) = (self.0.clone(), scope.to_string(), valid.to_vec());
                $crate::firewall::engine::blocking(move || e.gc(&s, &v)).await
            }
            async fn reconcile(&self) -> ::std::result::Result<(), $crate::firewall::FirewallError> {
                let e = self.0.clone();
                $crate::firewall::engine::blocking(move || e.reconcile()).await
            }
            async fn set_services(
                &self,
                changes: &[(String, Vec<$crate::firewall::Service>)],
            ) -> ::std::result::Result<(), $crate::firewall::FirewallError> {
                let (e, c) = (self.0.clone(), changes.to_vec());
                $crate::firewall::engine::blocking(move || e.set_services(&c)).await
            }
        }
    };
}
pub(crate) use firewall_via_engine;
