//! The service proxy: kube-proxy's job on one node, fed from the cluster store.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::announce;
use super::catalog::{id_of_key, ENDPOINTS, SERVICES};
use super::render::{firewall_services, id_of_owner, owner, OWNER_PREFIX};
use super::spec::{EndpointsSpec, ExternalTrafficPolicy, ServiceSpec, ServiceType};
use super::ServiceError;
use crate::conntrack::{Conntrack, Filter};
use crate::firewall::{self, Firewall, Protocol};
use crate::store::{Object, ObjectEvent, ObjectStore};
use crate::NetNs;

/// Services per firewall transaction when the proxy reconciles (at start and after a broken
/// watch): large enough that 10,000 services are a handful of transactions, small enough that
/// one refused batch, applied again service by service, stays short.
pub const SYNC_BATCH: usize = 1000;

/// How the proxy runs.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This node's name, as endpoints name their node (it makes endpoints local).
    pub node: String,
    /// The first pause after the store or the firewall failed; doubled up to
    /// [`max_retry`](Self::max_retry).
    pub retry: Duration,
    /// The longest pause between two attempts.
    pub max_retry: Duration,
    /// Where to write the [`ProxyStatus`] (JSON) each time it changes; `None`: nowhere.
    pub status_file: Option<PathBuf>,
    /// Answer ARP (IPv4) and neighbour solicitations (IPv6) for LoadBalancer services'
    /// external addresses on this interface (MetalLB's layer-2 mode: one node per address, see
    /// [`ServiceProxy`]); `None`: not by layer 2.
    pub announce_iface: Option<String>,
    /// Announce LoadBalancer services' external IPv4 addresses by BGP: the set this node
    /// should announce is sent here each time it changes; the overlay agent's BIRD takes it
    /// ([`AgentConfig::announce`](crate::overlay::AgentConfig::announce)). `None`: not by
    /// BGP.
    pub announce_bgp: Option<tokio::sync::watch::Sender<BTreeSet<IpAddr>>>,
    /// The configured LoadBalancer address pools: only external addresses inside one of them
    /// are announced (others are listed in [`ProxyStatus::outside_pools`]), so whoever can
    /// write a service cannot make the nodes claim an arbitrary address (a gateway's, say).
    /// Empty: nothing is announced.
    pub lb_pools: Vec<IpNetwork>,
}

impl ProxyConfig {
    /// For node `node`: retries after 200 ms, then up to every 5 s.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_string(),
            retry: crate::retry::FIRST_PAUSE,
            max_retry: crate::retry::MAX_PAUSE,
            status_file: None,
            announce_iface: None,
            announce_bgp: None,
            lb_pools: Vec::new(),
        }
    }
}

/// What the proxy has done, for `netkit agent status` (serialized into the agent's status).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// Services in the store.
    pub services: usize,
    /// Ready endpoints over all services.
    pub endpoints: usize,
    /// True once the firewall holds what the store's snapshot says (and until a watch breaks).
    pub synced: bool,
    /// Changes applied to the firewall since start (one per service changed).
    pub applied: u64,
    /// Services the firewall refused, with the reason (retried).
    pub failed: BTreeMap<String, String>,
    /// The store's last error, while it lasts.
    pub store_error: Option<String>,
    /// LoadBalancer addresses this node holds and answers ARP / neighbour solicitations for.
    #[serde(default)]
    pub announced: Vec<IpAddr>,
    /// LoadBalancer addresses this node announces by BGP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bgp_announced: Vec<IpAddr>,
    /// LoadBalancer addresses announced by no node: no configured pool holds them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outside_pools: Vec<IpAddr>,
    /// The last failure to add or remove them, while it lasts.
    #[serde(default)]
    pub announce_error: Option<String>,
}

/// Follows `services/` and `endpoints/` in the cluster store and keeps this node's firewall
/// equal to them: one firewall owner per service (`svc/<namespace>/<name>`, see
/// [`firewall_services`]), changed service by service, never the whole set: with nftables an
/// endpoint added or removed is a few set elements of that service's map (one netlink batch,
/// the same cost with 10 or 10,000 services), other changes rewrite that service's chains only
/// (see [`crate::firewall::nftables::ruleset`]).
///
/// * **Start and every new watch**: owners of services no longer in the store are torn down,
///   every service is compared with what the firewall records and changed where it differs —
///   up to [`SYNC_BATCH`] services per firewall transaction.
///   Rules stay in the kernel while the store is unreachable; a restarted proxy starts from
///   them.
/// * **UDP**: when an endpoint leaves a UDP (or SCTP) service, the node's connection-tracking
///   entries NATed to it are deleted, so a flow moves to a live endpoint at its next datagram
///   instead of going on to the dead pod (kube-proxy's conntrack cleanup).
/// * **LoadBalancer addresses**, those in a configured pool ([`ProxyConfig::lb_pools`]):
///   - by layer 2 ([`ProxyConfig::announce_iface`], MetalLB's layer-2 mode): for each external
///     address, one node — among those with a ready endpoint of it, the one with the smallest
///     hash of address and name, which every proxy computes alike — adds the address to the
///     interface (a /32 or /128 with `proto` [`PROTO_LB`](super::PROTO_LB)) and sends a gratuitous ARP or an unsolicited
///     neighbour advertisement; clients outside the cluster reach the service through it;
///   - by BGP ([`ProxyConfig::announce_bgp`], MetalLB's BGP mode, Calico's service address
///     advertisement): while the service has a ready endpoint, every node announces its IPv4
///     external addresses as /32s with itself as next hop when the external traffic policy is
///     `Cluster`, only the nodes with a ready local endpoint when it is `Local`; the router
///     learns one path per announcing node and a node that stops announcing is withdrawn.
/// * **Failures**: a service the firewall refuses is reported in [`ProxyStatus::failed`] and
///   retried; the others go on. A broken watch is watched again after a pause, then
///   reconciled.
pub struct ServiceProxy<S, F> {
    store: S,
    firewall: F,
    ns: NetNs,
    config: ProxyConfig,
    status: Arc<Mutex<ProxyStatus>>,
}

/// The proxy's view: the store's objects and what the firewall holds.
#[derive(Default)]
struct View {
    services: BTreeMap<String, ServiceSpec>,
    endpoints: BTreeMap<String, EndpointsSpec>,
    applied: BTreeMap<String, Vec<firewall::Service>>,
    failed: BTreeSet<String>,
    /// The LoadBalancer addresses last made to hold; `None`: read the interface again.
    announced: Option<BTreeSet<IpAddr>>,
    /// The LoadBalancer services' ids (what [`ServiceProxy::announce`] looks at: a change
    /// costs the number of LoadBalancer services, not of all services).
    load_balancers: BTreeSet<String>,
}

impl View {
    /// Keep [`View::load_balancers`] up to date for service `id`.
    fn note_kind(&mut self, id: &str) {
        match self.services.get(id) {
            Some(s) if s.kind == ServiceType::LoadBalancer => {
                self.load_balancers.insert(id.to_string());
            }
            _ => {
                self.load_balancers.remove(id);
            }
        }
    }
}

enum Change {
    Service(String),
    Failed(ServiceError),
}

impl<S: ObjectStore, F: Firewall> ServiceProxy<S, F> {
    /// A proxy programming `firewall` (the firewall of namespace `ns`, the node) from `store`.
    pub fn new(store: S, firewall: F, ns: NetNs, config: ProxyConfig) -> Self {
        Self {
            store,
            firewall,
            ns,
            config,
            status: Arc::default(),
        }
    }

    /// What it has done so far; the handle stays valid while it runs.
    pub fn status(&self) -> Arc<Mutex<ProxyStatus>> {
        self.status.clone()
    }

    /// Run until `shutdown` completes. Returns only then: store and firewall failures are
    /// retried (and reported in the status). The firewall's rules stay on shutdown (the
    /// services are still wanted; a new proxy takes them over).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut view = View::default();
        let mut pause = self.config.retry;
        loop {
            let err = tokio::select! {
                _ = &mut shutdown => return,
                e = self.follow(&mut view, &mut pause) => e,
            };
            log::warn!("node {}: service proxy: {err}; again in {pause:?}", self.config.node);
            {
                let mut st = self.status.lock().expect("status lock");
                st.synced = false;
                st.store_error = Some(err.to_string());
            }
            self.write_status();
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(self.config.max_retry);
        }
    }

    /// Watch, reconcile, follow; returns the error that broke it.
    async fn follow(&self, view: &mut View, pause: &mut Duration) -> ServiceError {
        let (mut sw, mut ew) = match tokio::try_join!(self.store.watch(SERVICES), self.store.watch(ENDPOINTS)) {
            Ok(w) => w,
            Err(e) => return e.into(),
        };
        view.services = decode_all(sw.snapshot(), SERVICES);
        view.endpoints = decode_all(ew.snapshot(), ENDPOINTS);
        view.load_balancers = view
            .services
            .iter()
            .filter(|(_, s)| s.kind == ServiceType::LoadBalancer)
            .map(|(id, _)| id.clone())
            .collect();
        if let Err(e) = self.reconcile(view).await {
            return e;
        }
        *pause = self.config.retry;
        {
            let mut st = self.status.lock().expect("status lock");
            st.synced = true;
            st.store_error = None;
        }
        self.write_status();
        loop {
            // Something to retry: a service the firewall refused, LoadBalancer addresses not
            // (known to be) in place.
            let idle = view.failed.is_empty() && (self.config.announce_iface.is_none() || view.announced.is_some());
            let retry_failed = async {
                if idle {
                    std::future::pending::<()>().await
                }
                tokio::time::sleep(self.config.retry.max(Duration::from_secs(1))).await
            };
            let change = tokio::select! {
                e = sw.next_event() => apply_event(&mut view.services, SERVICES, e),
                e = ew.next_event() => apply_event(&mut view.endpoints, ENDPOINTS, e),
                _ = retry_failed => {
                    for id in std::mem::take(&mut view.failed) {
                        self.sync(view, &id).await;
                    }
                    if view.announced.is_none() {
                        self.announce(view).await;
                    }
                    self.publish(view);
                    continue;
                }
            };
            match change {
                Change::Service(id) if id.is_empty() => continue,
                Change::Service(id) => {
                    view.note_kind(&id);
                    self.sync(view, &id).await
                }
                Change::Failed(e) => return e,
            }
            self.announce(view).await;
            self.publish(view);
        }
    }

    /// Make the firewall hold exactly the view's services: what differs goes to the firewall in
    /// batches of [`SYNC_BATCH`] services, one transaction each (see [`Firewall::set_services`]);
    /// a batch the firewall refuses is applied service by service, so one bad service is
    /// reported alone and the others go in.
    async fn reconcile(&self, view: &mut View) -> Result<(), ServiceError> {
        let fw_err = |cause| ServiceError::Firewall {
            service: "*".into(),
            cause: Box::new(cause),
        };
        let owners = self.firewall.owners().await.map_err(fw_err)?;
        view.applied.clear();
        for o in owners.iter().filter(|o| o.starts_with(OWNER_PREFIX)) {
            let Some(id) = id_of_owner(o) else { continue };
            let rules = self.firewall.rules(o).await.map_err(fw_err)?;
            view.applied.insert(id.to_string(), rules.services);
        }
        view.failed.clear();
        let mut changes: Vec<(String, Vec<firewall::Service>)> = view
            .applied
            .keys()
            .filter(|id| !view.services.contains_key(*id))
            .map(|id| (id.clone(), Vec::new()))
            .collect();
        for (id, spec) in &view.services {
            let want = firewall_services(id, spec, view.endpoints.get(id), &self.config.node);
            if view.applied.get(id).map(Vec::as_slice).unwrap_or_default() != want.as_slice() {
                changes.push((id.clone(), want));
            }
        }
        for batch in changes.chunks(SYNC_BATCH) {
            self.sync_batch(view, batch).await;
        }
        view.announced = None;
        self.announce(view).await;
        self.publish(view);
        Ok(())
    }

    /// Give the firewall these services' wanted rules in one transaction; when it refuses,
    /// service by service ([`sync`](Self::sync)).
    async fn sync_batch(&self, view: &mut View, batch: &[(String, Vec<firewall::Service>)]) {
        let changes: Vec<(String, Vec<firewall::Service>)> =
            batch.iter().map(|(id, want)| (owner(id), want.clone())).collect();
        match self.firewall.set_services(&changes).await {
            Ok(()) => {
                let mut gone = BTreeSet::new();
                for (id, want) in batch {
                    let have = view.applied.remove(id).unwrap_or_default();
                    gone.extend(gone_backends(&have, want));
                    if !want.is_empty() {
                        view.applied.insert(id.clone(), want.clone());
                    }
                    view.failed.remove(id);
                    let mut st = self.status.lock().expect("status lock");
                    st.applied += 1;
                    st.failed.remove(id);
                }
                self.drop_flows(&format!("{} services", batch.len()), gone).await;
            }
            Err(e) => {
                log::warn!(
                    "node {}: service proxy: {} services in one transaction: {e}; one by one",
                    self.config.node,
                    batch.len()
                );
                for (id, _) in batch {
                    self.sync(view, id).await;
                }
            }
        }
    }

    /// Bring service `id` in the firewall to what the view says; a refusal goes to `failed`.
    async fn sync(&self, view: &mut View, id: &str) {
        let want = view
            .services
            .get(id)
            .map(|spec| firewall_services(id, spec, view.endpoints.get(id), &self.config.node))
            .unwrap_or_default();
        let have = view.applied.get(id).cloned().unwrap_or_default();
        if want == have {
            view.failed.remove(id);
            return;
        }
        let owner = owner(id);
        // The owner holds this service's firewall services only: exactly `want` (none: gone).
        let result = self.firewall.set_services(&[(owner.clone(), want.clone())]).await;
        match result {
            Ok(()) => {
                self.forget_flows(id, &have, &want).await;
                if want.is_empty() {
                    view.applied.remove(id);
                } else {
                    view.applied.insert(id.to_string(), want);
                }
                view.failed.remove(id);
                let mut st = self.status.lock().expect("status lock");
                st.applied += 1;
                st.failed.remove(id);
            }
            Err(cause) => {
                let err = ServiceError::Firewall {
                    service: id.to_string(),
                    cause: Box::new(cause),
                };
                log::warn!("node {}: service proxy: {err}", self.config.node);
                // What the firewall holds now is unknown: read it back next time.
                if let Ok(rules) = self.firewall.rules(&owner).await {
                    view.applied.insert(id.to_string(), rules.services);
                }
                view.failed.insert(id.to_string());
                self.status
                    .lock()
                    .expect("status lock")
                    .failed
                    .insert(id.to_string(), err.to_string());
            }
        }
    }

    /// Delete the connection-tracking entries of datagram services' endpoints that `have` had
    /// and `want` has not. Failures are logged: the entries time out by themselves.
    async fn forget_flows(&self, id: &str, have: &[firewall::Service], want: &[firewall::Service]) {
        self.drop_flows(id, gone_backends(have, want)).await;
    }

    /// Delete the DNATed connection-tracking entries to `gone` (protocol, endpoint address,
    /// port): one conntrack dump whatever their number. `what` names the service(s) in logs.
    async fn drop_flows(&self, id: &str, gone: BTreeSet<(Protocol, IpAddr, u16)>) {
        if gone.is_empty() {
            return;
        }
        let ns = self.ns.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<usize, crate::conntrack::ConntrackError> {
            let ct = Conntrack::open(&ns)?;
            // Only the flows a service sent there (destination NAT), not pods talking to the
            // endpoint directly.
            let doomed: Vec<_> = ct
                .list(None)?
                .into_iter()
                .filter(|e| {
                    e.status.dst_nat()
                        && gone.iter().any(|(protocol, ip, port)| {
                            Filter::new()
                                .protocol(crate::conntrack::Protocol(protocol.number()))
                                .reply_src(*ip)
                                .reply_port_src(*port)
                                .matches(e)
                        })
                })
                .collect();
            ct.delete_entries(&doomed)
        })
        .await;
        match result {
            Ok(Ok(n)) if n > 0 => log::info!(
                "node {}: service {id}: {n} flows to removed endpoints dropped",
                self.config.node
            ),
            Ok(Ok(_)) => {}
            Ok(Err(cause)) => {
                let err = ServiceError::Conntrack {
                    service: id.to_string(),
                    cause: Box::new(cause),
                };
                log::warn!("node {}: service proxy: {err}", self.config.node);
            }
            Err(e) => log::warn!("node {}: service proxy: conntrack task: {e}", self.config.node),
        }
    }

    /// What this node announces for LoadBalancer services: (held on the interface, announced by
    /// BGP, outside every pool). See [`ServiceProxy`].
    fn lb_wanted(&self, view: &View) -> (BTreeSet<IpAddr>, BTreeSet<IpAddr>, BTreeSet<IpAddr>) {
        let me = self.config.node.as_str();
        let (mut l2, mut bgp, mut outside) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for (id, spec) in view
            .load_balancers
            .iter()
            .filter_map(|id| Some((id, view.services.get(id)?)))
        {
            let nodes: BTreeSet<&str> = view
                .endpoints
                .get(id)
                .map(|e| {
                    e.endpoints
                        .iter()
                        .filter(|e| e.ready && e.ip.is_ipv4() == spec.cluster_ip.is_ipv4())
                        .map(|e| e.node.as_str())
                        .collect()
                })
                .unwrap_or_default();
            for ip in &spec.external_ips {
                if !self.config.lb_pools.iter().any(|p| p.contains(*ip)) {
                    outside.insert(*ip);
                    continue;
                }
                if announce::holder(*ip, nodes.iter().copied()) == Some(me) {
                    l2.insert(*ip);
                }
                let bgp_here = match spec.external_traffic_policy {
                    ExternalTrafficPolicy::Cluster => !nodes.is_empty(),
                    ExternalTrafficPolicy::Local => nodes.contains(me),
                };
                if bgp_here && ip.is_ipv4() {
                    bgp.insert(*ip);
                }
            }
        }
        (l2, bgp, outside)
    }

    /// Announce exactly the LoadBalancer addresses this node should (see [`ServiceProxy`]).
    async fn announce(&self, view: &mut View) {
        let (l2, bgp, outside) = self.lb_wanted(view);
        {
            let mut st = self.status.lock().expect("status lock");
            st.outside_pools = outside.into_iter().collect();
            if let Some(tx) = &self.config.announce_bgp {
                tx.send_if_modified(|cur| {
                    let changed = *cur != bgp;
                    if changed {
                        cur.clone_from(&bgp);
                    }
                    changed
                });
                st.bgp_announced = bgp.into_iter().collect();
            }
        }
        let Some(iface) = &self.config.announce_iface else {
            return;
        };
        if view.announced.as_ref() == Some(&l2) {
            return;
        }
        let result = match self.ns.handle().await {
            Ok(h) => announce::apply(&h, &self.ns, iface, &l2).await,
            Err(e) => Err(e.to_string()),
        };
        let mut st = self.status.lock().expect("status lock");
        match result {
            Ok(added) => {
                for ip in added {
                    log::info!("node {}: answering for {ip} on {iface}", self.config.node);
                }
                st.announced = l2.iter().copied().collect();
                st.announce_error = None;
                view.announced = Some(l2);
            }
            Err(e) => {
                log::warn!("node {}: LoadBalancer addresses on {iface}: {e}", self.config.node);
                st.announce_error = Some(e);
                view.announced = None;
            }
        }
    }

    fn publish(&self, view: &View) {
        {
            let mut st = self.status.lock().expect("status lock");
            st.services = view.services.len();
            st.endpoints = view
                .endpoints
                .iter()
                .filter(|(id, _)| view.services.contains_key(*id))
                .map(|(_, e)| e.endpoints.iter().filter(|e| e.ready).count())
                .sum();
        }
        self.write_status();
    }

    /// Write the status file, if any (a failure is logged: the status is for people).
    fn write_status(&self) {
        let Some(path) = &self.config.status_file else { return };
        let text = serde_json::to_string_pretty(&*self.status.lock().expect("status lock")).expect("a status is JSON");
        if let Err(e) = crate::fsutil::write_replacing(path, &(text + "\n")) {
            log::warn!(
                "node {}: service proxy status {}: {e}",
                self.config.node,
                path.display()
            );
        }
    }
}

/// The datagram services' endpoints (protocol, address, port) that `have` had and `want` has
/// not: the connection-tracking entries NATed to them are to go.
fn gone_backends(have: &[firewall::Service], want: &[firewall::Service]) -> BTreeSet<(Protocol, IpAddr, u16)> {
    let mut gone = BTreeSet::new();
    for h in have.iter().filter(|h| h.protocol != Protocol::Tcp) {
        let kept = want
            .iter()
            .find(|w| w.name == h.name)
            .map(|w| w.endpoints.as_slice())
            .unwrap_or_default();
        for ep in h
            .endpoints
            .iter()
            .filter(|e| !kept.iter().any(|k| k.ip == e.ip && k.port == e.port))
        {
            gone.insert((h.protocol, ep.ip, ep.port));
        }
    }
    gone
}

/// The decodable objects of a snapshot by id; others are logged and left out.
fn decode_all<T: serde::de::DeserializeOwned + Validate>(objects: &[Object], prefix: &str) -> BTreeMap<String, T> {
    objects
        .iter()
        .filter_map(|o| Some((id_of_key(prefix, &o.key)?.to_string(), decode(o, prefix)?)))
        .collect()
}

fn decode<T: serde::de::DeserializeOwned + Validate>(o: &Object, prefix: &str) -> Option<T> {
    let Some(_) = id_of_key(prefix, &o.key) else {
        log::warn!("service proxy: ignoring {}: not {prefix}/<namespace>/<name>", o.key);
        return None;
    };
    match o
        .decode::<T>("service store")
        .map_err(ServiceError::from)
        .and_then(|v| v.check().map(|()| v))
    {
        Ok(v) => Some(v),
        Err(e) => {
            log::warn!("service proxy: ignoring {}: {e}", o.key);
            None
        }
    }
}

/// One event into `map`: the id it changed, or the error that ended the watch.
fn apply_event<T: serde::de::DeserializeOwned + Validate>(
    map: &mut BTreeMap<String, T>,
    prefix: &str,
    event: Option<Result<ObjectEvent, crate::store::StoreError>>,
) -> Change {
    match event {
        None => Change::Failed(ServiceError::Store(crate::store::StoreError::Etcd {
            store: prefix.to_string(),
            op: format!("watch {prefix}"),
            cause: "the watch ended".into(),
        })),
        Some(Err(e)) => Change::Failed(e.into()),
        Some(Ok(ObjectEvent::Put(o))) => match id_of_key(prefix, &o.key) {
            Some(id) => {
                let id = id.to_string();
                match decode::<T>(&o, prefix) {
                    Some(v) => map.insert(id.clone(), v),
                    // An invalid new version: as if it were gone (its old rules would be wrong too).
                    None => map.remove(&id),
                };
                Change::Service(id)
            }
            None => Change::Service(String::new()),
        },
        Some(Ok(ObjectEvent::Deleted { key, .. })) => match id_of_key(prefix, &key) {
            Some(id) => {
                map.remove(id);
                Change::Service(id.to_string())
            }
            None => Change::Service(String::new()),
        },
    }
}

/// Values the proxy checks before it uses them.
trait Validate {
    fn check(&self) -> Result<(), ServiceError>;
}

impl Validate for ServiceSpec {
    fn check(&self) -> Result<(), ServiceError> {
        self.validate()
    }
}

impl Validate for EndpointsSpec {
    fn check(&self) -> Result<(), ServiceError> {
        self.validate()
    }
}
