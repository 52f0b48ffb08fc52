//! Services and endpoints in the cluster store: written by `netkit service …` and by the
//! library, read by every node's [`ServiceProxy`](super::ServiceProxy).
//!
//! Keys (see the [module docs](super) for the values):
//!
//! ```text
//! services/<namespace>/<name>      a ServiceSpec
//! endpoints/<namespace>/<name>     its EndpointsSpec
//! nodeports/<protocol>-<port>      {"service": "<namespace>/<name>"}: who holds a node port
//! lbaddresses/<address>            {"service": "<namespace>/<name>"}: who holds a LoadBalancer
//!                                  address (IPv6 with `-` for `:`)
//! ```
//!
//! A node port, and an external address of a LoadBalancer service, is claimed with an atomic
//! create of its key before the service is written, so two writers can never hand out one port
//! or one address twice; a service's claims go with it. A LoadBalancer service written without
//! external addresses gets the first free one of the pools it is written with
//! ([`put_service_in_pools`], MetalLB's controller's job); the nodes announce only addresses of
//! their configured pools ([`ProxyConfig::lb_pools`](super::ProxyConfig::lb_pools)).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::spec::{EndpointSpec, EndpointsSpec, ServiceSpec, ServiceType, NODE_PORT_MAX, NODE_PORT_MIN};
use super::ServiceError;
use crate::firewall::Protocol;
use crate::store::ObjectStore;

/// The key prefix of services.
pub const SERVICES: &str = "services";
/// The key prefix of endpoints.
pub const ENDPOINTS: &str = "endpoints";
/// The key prefix of node-port claims.
pub const NODE_PORTS: &str = "nodeports";
/// The key prefix of LoadBalancer address claims.
pub const LB_ADDRESSES: &str = "lbaddresses";
/// The most addresses of a pool tried for one service (a pool larger than this is searched
/// from its start only this far).
pub const MAX_POOL_SCAN: u32 = 65_536;

/// A service's id: `<namespace>/<name>`, each a lower-case DNS label (1–63 of `a-z 0-9 -`,
/// starting and ending with a letter or digit), as Kubernetes names them.
pub fn check_id(namespace: &str, name: &str) -> Result<String, ServiceError> {
    for (what, v) in [("namespace", namespace), ("name", name)] {
        let ok = !v.is_empty()
            && v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !v.starts_with('-')
            && !v.ends_with('-');
        if !ok {
            return Err(ServiceError::invalid(format!(
                "{what} {v:?}: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'"
            )));
        }
    }
    Ok(format!("{namespace}/{name}"))
}

/// The id (`<namespace>/<name>`) of a key under `prefix` (`services/default/web` →
/// `default/web`); `None` for a key of another shape.
pub fn id_of_key<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let id = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let (ns, name) = id.split_once('/')?;
    check_id(ns, name).ok().map(|_| id)
}

fn split(id: &str) -> Result<(&str, &str), ServiceError> {
    let (ns, name) = id
        .split_once('/')
        .ok_or_else(|| ServiceError::invalid(format!("service {id:?}: <namespace>/<name>")))?;
    check_id(ns, name)?;
    Ok((ns, name))
}

#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    service: String,
}

fn claim_key(protocol: Protocol, port: u16) -> String {
    format!("{NODE_PORTS}/{protocol}-{port}")
}

fn lb_claim_key(ip: IpAddr) -> String {
    format!("{LB_ADDRESSES}/{}", ip.to_string().replace(':', "-"))
}

/// Write service `id` (`<namespace>/<name>`), creating or replacing it; returns the service as
/// stored. Ports of a NodePort or LoadBalancer service that name no node port get the lowest
/// free one in [`NODE_PORT_MIN`]–[`NODE_PORT_MAX`]; a named one held by another service is
/// [`ServiceError::NodePortTaken`]. Node ports the service held before and no longer uses are
/// released.
pub async fn put_service<S: ObjectStore>(store: &S, id: &str, spec: &ServiceSpec) -> Result<ServiceSpec, ServiceError> {
    put_service_in_pools(store, id, spec, &[]).await
}

/// [`put_service`], and a LoadBalancer service's external addresses: each is claimed (one
/// held by another service is [`ServiceError::AddressTaken`]); one written without any gets
/// the first address of `pools` no service holds (none left, or no pools:
/// [`ServiceError::PoolExhausted`]). Addresses the service held before and no longer has are
/// released.
pub async fn put_service_in_pools<S: ObjectStore>(
    store: &S,
    id: &str,
    spec: &ServiceSpec,
    pools: &[IpNetwork],
) -> Result<ServiceSpec, ServiceError> {
    split(id)?;
    let mut spec = spec.clone();
    if spec.kind == ServiceType::LoadBalancer && spec.external_ips.is_empty() {
        // Validated with the address it will get: a stand-in of the cluster IP's family.
        let mut probe = spec.clone();
        probe.external_ips.push(probe.cluster_ip);
        probe.validate()?;
    } else {
        spec.validate()?;
    }
    let before = get_service(store, id).await?;
    let mut claimed = Vec::new();
    let mut result = claim_lb_addresses(store, id, &mut spec, pools, &mut claimed).await;
    if result.is_ok() {
        result = claim_node_ports(store, id, &mut spec, &mut claimed).await;
    }
    let result = match result {
        Ok(()) => store
            .put(
                &format!("{SERVICES}/{id}"),
                &serde_json::to_value(&spec).expect("a spec is JSON"),
            )
            .await
            .map_err(ServiceError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        // Give back what this call claimed (not what the service held before).
        for key in claimed {
            let _ = store.delete(&key).await;
        }
        return Err(e);
    }
    if let Some(old) = before {
        let kept: Vec<_> = spec
            .ports
            .iter()
            .filter_map(|p| p.node_port.map(|n| (p.protocol, n)))
            .collect();
        for p in &old.ports {
            if let Some(n) = p.node_port {
                if !kept.contains(&(p.protocol, n)) {
                    release_claim(store, id, p.protocol, n).await?;
                }
            }
        }
        for ip in old.external_ips.iter().filter(|ip| !lb_claims(&spec).contains(ip)) {
            release_key(store, id, &lb_claim_key(*ip)).await?;
        }
    }
    Ok(spec)
}

/// The external addresses a service holds claims for (a LoadBalancer's).
fn lb_claims(spec: &ServiceSpec) -> &[IpAddr] {
    match spec.kind {
        ServiceType::LoadBalancer => &spec.external_ips,
        _ => &[],
    }
}

/// Claim each external address of a LoadBalancer `spec`, or the first free one of `pools`
/// when it has none; the keys this call created go to `claimed`.
async fn claim_lb_addresses<S: ObjectStore>(
    store: &S,
    id: &str,
    spec: &mut ServiceSpec,
    pools: &[IpNetwork],
    claimed: &mut Vec<String>,
) -> Result<(), ServiceError> {
    if spec.kind != ServiceType::LoadBalancer {
        return Ok(());
    }
    let value = serde_json::to_value(Claim {
        service: id.to_string(),
    })
    .expect("a claim is JSON");
    for ip in spec.external_ips.clone() {
        let key = lb_claim_key(ip);
        match store.create(&key, &value).await {
            Ok(_) => claimed.push(key),
            Err(e) if e.is_already_exists() => {
                let holder = claim_holder(store, &key).await?;
                if holder.as_deref() != Some(id) {
                    return Err(ServiceError::AddressTaken {
                        ip,
                        holder: holder.unwrap_or_else(|| "(gone)".into()),
                    });
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !spec.external_ips.is_empty() {
        return Ok(());
    }
    let family = spec.cluster_ip.is_ipv4();
    for pool in pools.iter().filter(|p| p.is_ipv4() == family) {
        for ip in pool_addresses(*pool) {
            let key = lb_claim_key(ip);
            match store.create(&key, &value).await {
                Ok(_) => {
                    claimed.push(key);
                    spec.external_ips.push(ip);
                    return Ok(());
                }
                Err(e) if e.is_already_exists() => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(ServiceError::PoolExhausted {
        pools: pools.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        family: if family { "IPv4" } else { "IPv6" },
    })
}

/// The usable addresses of a pool, in order: an IPv4 pool of /30 or wider leaves out its
/// network and broadcast addresses; at most [`MAX_POOL_SCAN`].
fn pool_addresses(pool: IpNetwork) -> impl Iterator<Item = IpAddr> {
    let (first, last): (u128, u128) = match pool {
        IpNetwork::V4(n) => {
            let (a, b) = (u32::from(n.network()), u32::from(n.broadcast()));
            match n.prefix() {
                31 | 32 => (a.into(), b.into()),
                _ => (u128::from(a) + 1, u128::from(b) - 1),
            }
        }
        IpNetwork::V6(n) => {
            let a = u128::from(n.network());
            let size = if n.prefix() == 0 {
                u128::MAX
            } else {
                (1u128 << (128 - n.prefix())) - 1
            };
            (a, a + size)
        }
    };
    let v4 = pool.is_ipv4();
    (first..=last).take(MAX_POOL_SCAN as usize).map(move |x| {
        if v4 {
            IpAddr::from(std::net::Ipv4Addr::from(x as u32))
        } else {
            IpAddr::from(std::net::Ipv6Addr::from(x))
        }
    })
}

/// Claim each node port of `spec` (choosing those it leaves out); the keys this call created go
/// to `claimed`.
async fn claim_node_ports<S: ObjectStore>(
    store: &S,
    id: &str,
    spec: &mut ServiceSpec,
    claimed: &mut Vec<String>,
) -> Result<(), ServiceError> {
    if !spec.has_node_ports() {
        return Ok(());
    }
    let value = serde_json::to_value(Claim {
        service: id.to_string(),
    })
    .expect("a claim is JSON");
    for i in 0..spec.ports.len() {
        let protocol = spec.ports[i].protocol;
        if let Some(port) = spec.ports[i].node_port {
            let key = claim_key(protocol, port);
            match store.create(&key, &value).await {
                Ok(_) => claimed.push(key),
                Err(e) if e.is_already_exists() => {
                    let holder = claim_holder(store, &key).await?;
                    if holder.as_deref() != Some(id) {
                        return Err(ServiceError::NodePortTaken {
                            port,
                            protocol,
                            holder: holder.unwrap_or_else(|| "(gone)".into()),
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        let mut found = None;
        for port in NODE_PORT_MIN..=NODE_PORT_MAX {
            let key = claim_key(protocol, port);
            match store.create(&key, &value).await {
                Ok(_) => {
                    claimed.push(key);
                    found = Some(port);
                    break;
                }
                Err(e) if e.is_already_exists() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        spec.ports[i].node_port = Some(found.ok_or(ServiceError::NodePortsExhausted {
            min: NODE_PORT_MIN,
            max: NODE_PORT_MAX,
            protocol,
        })?);
    }
    Ok(())
}

async fn claim_holder<S: ObjectStore>(store: &S, key: &str) -> Result<Option<String>, ServiceError> {
    match store.get(key).await? {
        Some(o) => Ok(Some(o.decode::<Claim>("service store")?.service)),
        None => Ok(None),
    }
}

/// Delete the claim of `port` if `id` holds it.
async fn release_claim<S: ObjectStore>(store: &S, id: &str, protocol: Protocol, port: u16) -> Result<(), ServiceError> {
    release_key(store, id, &claim_key(protocol, port)).await
}

/// Delete the claim at `key` if `id` holds it.
async fn release_key<S: ObjectStore>(store: &S, id: &str, key: &str) -> Result<(), ServiceError> {
    let key = key.to_string();
    if let Some(o) = store.get(&key).await? {
        if o.decode::<Claim>("service store")?.service == id {
            match store.delete_if(&key, o.revision).await {
                Ok(()) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Service `id`, if it exists.
pub async fn get_service<S: ObjectStore>(store: &S, id: &str) -> Result<Option<ServiceSpec>, ServiceError> {
    split(id)?;
    match store.get(&format!("{SERVICES}/{id}")).await? {
        Some(o) => Ok(Some(o.decode("service store")?)),
        None => Ok(None),
    }
}

/// Delete service `id`, its endpoints and its node-port and address claims; `false` when it did not exist
/// (idempotent). Every step runs; the first error is returned.
pub async fn delete_service<S: ObjectStore>(store: &S, id: &str) -> Result<bool, ServiceError> {
    split(id)?;
    let spec = get_service(store, id).await.ok().flatten();
    let existed = store.delete(&format!("{SERVICES}/{id}")).await;
    let mut first: Option<ServiceError> = None;
    if let Err(e) = store.delete(&format!("{ENDPOINTS}/{id}")).await {
        first.get_or_insert(e.into());
    }
    for p in spec.iter().flat_map(|s| &s.ports) {
        if let Some(n) = p.node_port {
            if let Err(e) = release_claim(store, id, p.protocol, n).await {
                first.get_or_insert(e);
            }
        }
    }
    for ip in spec.iter().flat_map(lb_claims) {
        if let Err(e) = release_key(store, id, &lb_claim_key(*ip)).await {
            first.get_or_insert(e);
        }
    }
    let existed = existed?;
    match first {
        Some(e) => Err(e),
        None => Ok(existed),
    }
}

/// Every service, sorted by id. Objects that do not decode are skipped (the proxy logs them).
pub async fn list_services<S: ObjectStore>(store: &S) -> Result<Vec<(String, ServiceSpec)>, ServiceError> {
    let objects = store.list(SERVICES).await?;
    Ok(objects
        .iter()
        .filter_map(|o| {
            Some((
                id_of_key(SERVICES, &o.key)?.to_string(),
                o.decode("service store").ok()?,
            ))
        })
        .collect())
}

/// Set the endpoints of service `id` (the service need not exist yet: endpoints may come
/// first).
pub async fn put_endpoints<S: ObjectStore>(store: &S, id: &str, endpoints: &EndpointsSpec) -> Result<(), ServiceError> {
    split(id)?;
    endpoints.validate()?;
    store
        .put(
            &format!("{ENDPOINTS}/{id}"),
            &serde_json::to_value(endpoints).expect("endpoints are JSON"),
        )
        .await?;
    Ok(())
}

/// The endpoints of service `id` (empty when none were written).
pub async fn get_endpoints<S: ObjectStore>(store: &S, id: &str) -> Result<EndpointsSpec, ServiceError> {
    split(id)?;
    match store.get(&format!("{ENDPOINTS}/{id}")).await? {
        Some(o) => Ok(o.decode("service store")?),
        None => Ok(EndpointsSpec::default()),
    }
}

/// Change the endpoints of `id` with `f` atomically (compare-and-swap, retried when another
/// writer got there first). Returns the endpoints as written.
pub async fn update_endpoints<S: ObjectStore>(
    store: &S,
    id: &str,
    mut f: impl FnMut(&mut EndpointsSpec),
) -> Result<EndpointsSpec, ServiceError> {
    split(id)?;
    let key = format!("{ENDPOINTS}/{id}");
    loop {
        let current = store.get(&key).await?;
        let mut eps: EndpointsSpec = match &current {
            Some(o) => o.decode("service store")?,
            None => EndpointsSpec::default(),
        };
        f(&mut eps);
        eps.validate()?;
        let value = serde_json::to_value(&eps).expect("endpoints are JSON");
        let done = match &current {
            Some(o) => store.update(&key, &value, o.revision).await.map(|_| ()),
            None => store.create(&key, &value).await.map(|_| ()),
        };
        match done {
            Ok(()) => return Ok(eps),
            Err(e) if e.is_conflict() || e.is_already_exists() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Add (or replace, by address) one endpoint of `id`.
pub async fn add_endpoint<S: ObjectStore>(
    store: &S,
    id: &str,
    endpoint: EndpointSpec,
) -> Result<EndpointsSpec, ServiceError> {
    update_endpoints(store, id, |eps| {
        eps.endpoints.retain(|e| e.ip != endpoint.ip);
        eps.endpoints.push(endpoint.clone());
        eps.endpoints.sort();
    })
    .await
}

/// Remove the endpoint at `ip` from `id` (absent: no change).
pub async fn remove_endpoint<S: ObjectStore>(
    store: &S,
    id: &str,
    ip: std::net::IpAddr,
) -> Result<EndpointsSpec, ServiceError> {
    update_endpoints(store, id, |eps| eps.endpoints.retain(|e| e.ip != ip)).await
}
