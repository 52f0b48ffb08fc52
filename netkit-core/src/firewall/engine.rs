//! What both drivers share: validation, owners, conflict checks and the state directory. A
//! driver only turns "owner goes from these rules to those" into kernel changes.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::Result;
use super::model::{check_owner, Endpoint, Rules, Service};
use super::state::StateDir;
use super::{FirewallError, FirewallOptions};
use crate::sysctl::{self, Family};
use crate::NetNs;

/// The kernel side of a driver.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Make the kernel hold `new` instead of `old` for `owner`, atomically. `state` holds every
    /// owner's rules (already updated for an addition, not yet for a removal). `held`: shared
    /// objects `owner` takes on that other owners already hold; the kernel should have them,
    /// but a process killed between recording a holder and applying may have left them out,
    /// so a driver that can re-assert them idempotently does.
    fn apply(&self, owner: &str, old: &Rules, new: &Rules, held: &Rules, state: &StateDir) -> Result<()>;
    /// Replace every kernel object of ours by these owners' rules.
    fn rebuild(&self, all: &[(String, Rules)]) -> Result<()>;
    /// Remove every kernel object of ours (no owner is left). Idempotent.
    fn clear(&self) -> Result<()>;
    /// Make the kernel hold the services of each `(old, new)` instead of the old ones, every
    /// owner in one atomic transaction (the rules differ in their services only). `false`: the
    /// driver cannot, and nothing was done (the engine goes owner by owner).
    fn apply_services(&self, changes: &[(&Rules, &Rules)]) -> Result<bool> {
        let _ = changes;
        Ok(false)
    }
    /// Bind the backend to the state directory with this id: the kernel objects it makes carry
    /// the id, and objects of the same name that carry another id (made for another state
    /// directory) are [`FirewallError::Foreign`]: using them would let one directory's last
    /// owner delete the other's rules. Objects without an id (made before 0.2) are adopted.
    fn claim(&mut self, state_id: &str) -> Result<()>;
}

/// Run a blocking firewall operation on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FirewallError::Aborted(e.to_string()))?
}

/// The state directory a firewall of `ns` uses when [`FirewallOptions::state_dir`] names none:
/// per namespace, under /run, named by the namespace's cookie (`SO_NETNS_COOKIE`), which unlike
/// its inode number is never reused while the machine runs — a new namespace never inherits a
/// dead one's state.
pub fn default_state_dir(ns: &NetNs) -> Result<PathBuf> {
    let cookie = ns.job_blocking(netns_cookie)?.map_err(|e| FirewallError::State {
        op: "read the namespace cookie of",
        path: ns.path().to_path_buf(),
        source: e,
    })?;
    Ok(PathBuf::from(format!("/run/netkit/firewall/{cookie:016x}")))
}

/// The cookie of the calling thread's network namespace.
fn netns_cookie() -> std::io::Result<u64> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2); the descriptor is owned (and closed) by `sock`.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    cookie_of(sock.as_raw_fd())
}

fn cookie_of(fd: std::os::fd::RawFd) -> std::io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, a valid u64.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

/// A driver's shared part: the namespace, its state directory and the backend.
pub(crate) struct Engine<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Engine<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<B> {
    ns: NetNs,
    state: StateDir,
    backend: B,
}

impl<B: Backend> Engine<B> {
    pub(crate) fn new(ns: &NetNs, options: &FirewallOptions, mut backend: B) -> Result<Self> {
        let state = StateDir::open_with_lock_timeout(&state_dir(ns, options)?, options.lock_timeout)?;
        backend.claim(state.id())?;
        Ok(Self {
            inner: Arc::new(Inner {
                ns: ns.clone(),
                state,
                backend,
            }),
        })
    }

    fn state(&self) -> &StateDir {
        &self.inner.state
    }

    pub(crate) fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// See [`super::Firewall::add`].
    pub(crate) fn add(&self, owner: &str, rules: &Rules) -> Result<()> {
        check_owner(owner)?;
        let rules = rules.normalized();
        rules.validate()?;
        let state = self.state();
        let _lock = state.lock()?;
        let old = state.rules(owner)?;
        let new = old.union(&rules);
        new.validate()?;
        if new == old {
            return Ok(());
        }
        if let Some((a, b)) = new.overlap() {
            return Err(FirewallError::Conflict {
                what: b.to_string(),
                other: a.to_string(),
                owner: owner.to_string(),
            });
        }
        let added = new.minus(&old);
        for m in &added.masquerades {
            let key = shared_key_masq(m);
            // Every holder has the same network (a different one is refused here), so one
            // other holder tells.
            if let Some((o, net)) = state
                .other_holder(&key, owner)?
                .filter(|(_, net)| *net != m.network.to_string())
            {
                return Err(FirewallError::Conflict {
                    what: format!("masquerade of {} (network {})", m.source, m.network),
                    other: format!("masquerade of {} (network {net})", m.source),
                    owner: o,
                });
            }
        }
        for m in &added.port_mappings {
            if let Some((port, c)) = state.port_conflict(owner, m)? {
                return Err(FirewallError::Conflict {
                    what: m.to_string(),
                    other: format!(
                        "{}/{}:{port}",
                        m.protocol,
                        c.host_ip.map(|i| i.to_string()).unwrap_or("*".into())
                    ),
                    owner: c.owner,
                });
            }
        }
        for s in &added.services {
            match state.service_owner(&s.name)? {
                Some(o) if o != owner => {
                    return Err(FirewallError::Conflict {
                        what: format!("service {}", s.name),
                        other: format!("service {}", s.name),
                        owner: o,
                    })
                }
                _ => {}
            }
        }
        // Intent first: a process killed after this point leaves a state that names everything
        // the kernel may hold.
        state.set_rules(owner, &new)?;
        let indexed = self.index(owner, &added, true);
        if let Err(e) = indexed.and_then(|()| self.apply_shared(owner, &old, &new)) {
            let _ = self.index(owner, &added, false);
            let _ = state.set_rules(owner, &old);
            return Err(e);
        }
        // route_localnet only where a mapping answers on 127.0.0.1 (the drop rule for other
        // traffic to 127.0.0.0/8 is in the kernel by now); set again by every owner that adds
        // a network there (cheap), so a bridge recreated under live owners gets it back.
        let (had, has) = (localnet_ifaces(&old), localnet_ifaces(&new));
        for iface in &has {
            let fresh = !had.contains(iface);
            if fresh {
                state.index_shared(&shared_key_localnet(iface), owner, "", true)?;
            }
            if fresh || added.networks.iter().any(|n| &n.interface == iface) {
                sysctl::set_iface(&self.inner.ns, Family::V4, iface, "route_localnet", "1")?;
            }
        }
        Ok(())
    }

    /// `owner` goes from `old` to `new`: interfaces it no longer needs `route_localnet` on are
    /// dropped from the index, and the sysctl is turned off where nobody else needs it (a
    /// vanished interface is fine). Runs before the rules change, so `route_localnet` is never
    /// on without the rule that drops other traffic to 127.0.0.0/8.
    fn release_localnet(&self, owner: &str, old: &Rules, new: &Rules) -> Result<()> {
        let state = self.state();
        let keep = localnet_ifaces(new);
        for iface in localnet_ifaces(old).iter().filter(|i| !keep.contains(i)) {
            let key = shared_key_localnet(iface);
            if state.other_holder(&key, owner)?.is_none() {
                match sysctl::set_iface(&self.inner.ns, Family::V4, iface, "route_localnet", "0") {
                    Err(e) if e.is_not_found() => {}
                    other => other?,
                }
            }
            state.index_shared(&key, owner, "", false)?;
        }
        Ok(())
    }

    fn index(&self, owner: &str, rules: &Rules, add: bool) -> Result<()> {
        let state = self.state();
        for m in &rules.port_mappings {
            state.index_ports(owner, m, add)?;
        }
        for s in &rules.services {
            state.set_service_owner(&s.name, add.then_some(owner))?;
        }
        for (key, detail) in shared_keys(rules) {
            state.index_shared(&key, owner, &detail, add)?;
        }
        Ok(())
    }

    /// Objects of `rules` that another owner holds too (the kernel holds them once, for all).
    fn shared_elsewhere(&self, owner: &str, rules: &Rules) -> Result<Rules> {
        let state = self.state();
        let mut out = Rules::default();
        let held = |key: &str| -> Result<bool> { Ok(state.other_holder(key, owner)?.is_some()) };
        for n in &rules.networks {
            if held(&shared_key_network(n))? {
                out.networks.push(n.clone());
            }
        }
        for i in &rules.isolations {
            if held(&shared_key_isolation(i))? {
                out.isolations.push(i.clone());
            }
        }
        for m in &rules.masquerades {
            if held(&shared_key_masq(m))? {
                out.masquerades.push(m.clone());
            }
        }
        Ok(out)
    }

    /// Apply `old` → `new` for `owner`, leaving alone the objects other owners hold too (those
    /// it takes on are re-asserted, see [`Backend::apply`]).
    fn apply_shared(&self, owner: &str, old: &Rules, new: &Rules) -> Result<()> {
        // Only what changes needs asking about: objects in both `old` and `new` cancel out.
        let elsewhere = self.shared_elsewhere(owner, &new.minus(old).union(&old.minus(new)))?;
        let added = new.minus(old);
        let held = added.minus(&added.minus(&elsewhere));
        self.backend().apply(
            owner,
            &old.minus(&elsewhere),
            &new.minus(&elsewhere),
            &held,
            self.state(),
        )
    }

    /// See [`super::Firewall::remove`].
    pub(crate) fn remove(&self, owner: &str, rules: &Rules) -> Result<()> {
        check_owner(owner)?;
        let _lock = self.state().lock()?;
        self.remove_locked(owner, &rules.normalized()).map(drop)
    }

    /// Remove `rules` from `owner` with the lock held; returns what was removed.
    fn remove_locked(&self, owner: &str, rules: &Rules) -> Result<Rules> {
        let state = self.state();
        let old = state.rules(owner)?;
        let new = old.minus(rules);
        if new == old {
            return Ok(Rules::default());
        }
        let removed = old.minus(&new);
        self.release_localnet(owner, &old, &new)?;
        // Kernel first, state last: the state keeps naming what the kernel may still hold.
        self.apply_shared(owner, &old, &new)?;
        self.index(owner, &removed, false)?;
        state.set_rules(owner, &new)?;
        if state.no_owners()? {
            self.backend().clear()?;
        }
        Ok(removed)
    }

    /// See [`super::Firewall::teardown`].
    pub(crate) fn teardown(&self, owner: &str) -> Result<Rules> {
        check_owner(owner)?;
        let _lock = self.state().lock()?;
        let all = self.state().rules(owner)?;
        self.remove_locked(owner, &all)
    }

    /// See [`super::Firewall::add_endpoint`] and `remove_endpoint`.
    pub(crate) fn set_endpoint(&self, service: &str, ep: Endpoint, add: bool) -> Result<()> {
        let state = self.state();
        let _lock = state.lock()?;
        let owner = state
            .service_owner(service)?
            .ok_or_else(|| FirewallError::NotFound(format!("service {service}")))?;
        let old = state.rules(&owner)?;
        let mut new = old.clone();
        let svc = new
            .services
            .iter_mut()
            .find(|s| s.name == service)
            .ok_or_else(|| FirewallError::NotFound(format!("service {service}")))?;
        // Endpoints are one per address and port; `local` is a property of the endpoint.
        let present = svc.endpoints.iter().position(|e| e.same_backend(&ep));
        match (add, present) {
            (true, None) => svc.endpoints.push(ep),
            (true, Some(i)) if svc.endpoints[i] != ep => svc.endpoints[i] = ep,
            (false, Some(i)) => {
                svc.endpoints.remove(i);
            }
            _ => return Ok(()),
        }
        svc.validate()?;
        if add {
            state.set_rules(&owner, &new)?;
            if let Err(e) = self.apply_shared(&owner, &old, &new) {
                let _ = state.set_rules(&owner, &old);
                return Err(e);
            }
        } else {
            self.apply_shared(&owner, &old, &new)?;
            state.set_rules(&owner, &new)?;
        }
        Ok(())
    }

    /// See [`super::Firewall::set_services`].
    pub(crate) fn set_services(&self, changes: &[(String, Vec<Service>)]) -> Result<()> {
        let state = self.state();
        let lock = state.lock()?;
        let mut plan = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut owners = std::collections::HashSet::new();
        for (owner, services) in changes {
            check_owner(owner)?;
            if !owners.insert(owner) {
                return Err(FirewallError::Invalid {
                    reason: format!("owner {owner:?} is named twice in one change of services"),
                });
            }
            let old = state.rules(owner)?;
            let mut new = old.clone();
            new.services = services.clone();
            let new = new.normalized();
            new.validate()?;
            for s in &new.services {
                if !names.insert(s.name.clone()) {
                    return Err(FirewallError::Conflict {
                        what: format!("service {}", s.name),
                        other: format!("service {}", s.name),
                        owner: owner.clone(),
                    });
                }
                match state.service_owner(&s.name)? {
                    Some(o) if o != *owner && !changes.iter().any(|(c, _)| *c == o) => {
                        return Err(FirewallError::Conflict {
                            what: format!("service {}", s.name),
                            other: format!("service {}", s.name),
                            owner: o,
                        })
                    }
                    _ => {}
                }
            }
            if new != old {
                plan.push((owner.clone(), old, new));
            }
        }
        if plan.is_empty() {
            return Ok(());
        }
        // Intent first, as for an addition, but naming the old services too: until the kernel
        // has changed, the state names everything it may hold.
        let either = |old: &Rules, new: &Rules| {
            let mut r = new.clone();
            r.services.extend(
                old.services
                    .iter()
                    .filter(|o| !new.services.iter().any(|n| n.name == o.name))
                    .cloned(),
            );
            r
        };
        let undo = |upto: usize| {
            for (owner, old, _) in &plan[..upto] {
                let _ = state.set_rules(owner, old);
            }
        };
        for (i, (owner, old, new)) in plan.iter().enumerate() {
            if let Err(e) = state.set_rules(owner, &either(old, new)) {
                undo(i);
                return Err(e);
            }
        }
        let pairs: Vec<(&Rules, &Rules)> = plan.iter().map(|(_, o, n)| (o, n)).collect();
        match self.backend().apply_services(&pairs) {
            Ok(true) => {}
            Ok(false) => {
                // Owner by owner, through the usual paths.
                undo(plan.len());
                drop(lock);
                return self.set_services_one_by_one(&plan);
            }
            Err(e) => {
                undo(plan.len());
                return Err(e);
            }
        }
        // Every owner's removals first: a service may move from one owner to another.
        for (_, old, new) in &plan {
            for s in old
                .services
                .iter()
                .filter(|o| !new.services.iter().any(|n| n.name == o.name))
            {
                state.set_service_owner(&s.name, None)?;
            }
        }
        for (owner, _, new) in &plan {
            for s in &new.services {
                state.set_service_owner(&s.name, Some(owner))?;
            }
            state.set_rules(owner, new)?;
        }
        if state.no_owners()? {
            self.backend().clear()?;
        }
        Ok(())
    }

    /// [`set_services`](Self::set_services) for a driver without batches: every owner's
    /// removals, then every owner's additions.
    fn set_services_one_by_one(&self, plan: &[(String, Rules, Rules)]) -> Result<()> {
        // Every owner's removals first: a service may move from one owner to another.
        for (owner, old, new) in plan {
            let gone: Vec<Service> = old
                .services
                .iter()
                .filter(|o| !new.services.iter().any(|n| n.name == o.name))
                .cloned()
                .collect();
            if !gone.is_empty() {
                self.remove(
                    owner,
                    &Rules {
                        services: gone,
                        ..Default::default()
                    },
                )?;
            }
        }
        for (owner, old, new) in plan {
            let changed: Vec<Service> = new
                .services
                .iter()
                .filter(|n| !old.services.contains(n))
                .cloned()
                .collect();
            if !changed.is_empty() {
                self.add(
                    owner,
                    &Rules {
                        services: changed,
                        ..Default::default()
                    },
                )?;
            }
        }
        Ok(())
    }

    /// See [`super::Firewall::rules`].
    pub(crate) fn rules(&self, owner: &str) -> Result<Rules> {
        self.state().rules(owner)
    }

    /// See [`super::Firewall::owners`].
    pub(crate) fn owners(&self) -> Result<Vec<String>> {
        self.state().owners()
    }

    /// See [`super::Firewall::gc`] and [`super::Firewall::gc_scope`]: owners starting with
    /// `scope` (every owner for an empty scope) that are not in `valid`.
    pub(crate) fn gc(&self, scope: &str, valid: &[String]) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for owner in self.owners()? {
            if owner.starts_with(scope) && !valid.contains(&owner) {
                self.teardown(&owner)?;
                removed.push(owner);
            }
        }
        Ok(removed)
    }

    /// See [`super::Firewall::reconcile`].
    pub(crate) fn reconcile(&self) -> Result<()> {
        let state = self.state();
        let _lock = state.lock()?;
        let mut all = Vec::new();
        for owner in state.owners()? {
            let rules = state.rules(&owner)?;
            all.push((owner, rules));
        }
        if all.is_empty() {
            return self.backend().clear();
        }
        self.backend().rebuild(&all)?;
        for (owner, rules) in &all {
            for iface in localnet_ifaces(rules) {
                state.index_shared(&shared_key_localnet(&iface), owner, "", true)?;
                sysctl::set_iface(&self.inner.ns, Family::V4, &iface, "route_localnet", "1")?;
            }
        }
        Ok(())
    }
}

/// Resolve the state directory of `options` for `ns`.
pub(crate) fn state_dir(ns: &NetNs, options: &FirewallOptions) -> Result<PathBuf> {
    match &options.state_dir {
        Some(d) => Ok(d.clone()),
        None => default_state_dir(ns),
    }
}

/// The state directory of `options` for `ns`, opened, when it exists (`None`: it was never
/// made, so nobody holds anything).
pub(crate) fn existing_state(ns: &NetNs, options: &FirewallOptions) -> Result<Option<StateDir>> {
    let dir = state_dir(ns, options)?;
    if !dir.is_dir() {
        return Ok(None);
    }
    StateDir::open(&dir).map(Some)
}

fn shared_key_network(n: &super::Network) -> String {
    format!("net:{}:{}", n.interface, n.subnet)
}

fn shared_key_isolation(i: &super::Isolation) -> String {
    format!("iso:{}:{}", i.a, i.b)
}

fn shared_key_masq(m: &super::Masquerade) -> String {
    format!("masq:{}", m.source)
}

/// Holders of `route_localnet` on an interface (see [`localnet_ifaces`]).
fn shared_key_localnet(iface: &str) -> String {
    format!("localnet:{iface}")
}

/// The interfaces that need `route_localnet` for `rules`: those of the IPv4 networks that hold
/// the container address of a port mapping answering on 127.0.0.1 (no host address, or a
/// loopback one). Nothing else needs it: the kernel then drops packets to 127.0.0.0/8 that
/// arrive on those interfaces as martians, as it should.
pub(crate) fn localnet_ifaces(rules: &Rules) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in rules.networks.iter().filter(|n| n.subnet.is_ipv4()) {
        let needed = rules
            .port_mappings
            .iter()
            .any(|m| m.is_ipv4() && m.host_ip.is_none_or(|h| h.is_loopback()) && n.subnet.contains(m.container_ip));
        if needed && !out.contains(&n.interface) {
            out.push(n.interface.clone());
        }
    }
    out
}

/// The shared-object index entries of `rules`: (key, detail).
fn shared_keys(rules: &Rules) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rules
        .networks
        .iter()
        .map(|n| (shared_key_network(n), String::new()))
        .collect();
    out.extend(
        rules
            .isolations
            .iter()
            .map(|i| (shared_key_isolation(i), String::new())),
    );
    out.extend(
        rules
            .masquerades
            .iter()
            .map(|m| (shared_key_masq(m), m.network.to_string())),
    );
    out
}
