//! The nftables driver: one table (`inet netkit` by default) of sets, maps and chains.
//!
//! See [`ruleset`] for the table's layout. Port mappings, masquerade sources, container networks
//! and isolated pairs are elements, so adding or removing one does not depend on how many
//! exist; each service has its own chains, written as nft text when it is made or changed, and
//! the endpoints of a service without affinity or `Local` policy live in its own interval map,
//! so their changes are elements too (the `endpoints` module).

pub(crate) mod elements;
pub(crate) mod endpoints;
pub(crate) mod libnft;
pub(crate) mod netlink;
pub mod ruleset;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use super::engine::{self, Backend, Engine};
use super::error::Result;
use super::model::Rules;
use super::state::StateDir;
use super::{firewall_via_engine, Driver, FirewallError, FirewallOptions};
use crate::NetNs;

/// The nftables driver (see the [module docs](self)).
#[derive(Clone)]
pub struct Nftables(Engine<NftBackend>);

firewall_via_engine!(Nftables, Driver::Nftables);

impl Nftables {
    /// Open the firewall of `ns` with the nftables driver. [`FirewallError::Unavailable`] when
    /// libnftables cannot be loaded or the kernel has no nf_tables.
    pub async fn open(ns: &NetNs, options: FirewallOptions) -> Result<Self> {
        let ns = ns.clone();
        engine::blocking(move || {
            let unavailable = |reason: String| FirewallError::Unavailable {
                driver: "nftables",
                reason,
            };
            let mut socket = netlink::NftSocket::open(&ns).map_err(|e| unavailable(e.to_string()))?;
            socket.set_detached_close(options.detached_close);
            let found = socket
                .table_comment(&options.name)
                .map_err(|e| unavailable(format!("the kernel refused nftables: {e}")))?;
            // libnftables writes the table and service chains; element changes (the common
            // case once the table exists) do without it, so it is loaded only when needed
            // (loading costs ≈ 2 ms, a sixth of a CNI ADD).
            if found.is_none() {
                libnft::available().map_err(unavailable)?;
            }
            // A table of an older layout (see `ruleset::LAYOUT`) is rebuilt from the state
            // directory once, here: its services' kernel objects are not what this netkit's
            // changes expect.
            let outdated = found
                .as_ref()
                .and_then(|c| c.as_deref())
                .is_some_and(|c| c.starts_with("managed by netkit") && ruleset::layout_of(c) < ruleset::LAYOUT);
            let backend = NftBackend {
                ns: ns.clone(),
                socket,
                table: options.name.clone(),
                mark: options.masquerade_mark,
                state_id: String::new(),
                found,
            };
            let engine = Engine::new(&ns, &options, backend)?;
            if outdated {
                log::info!(
                    "nftables in {ns}: table inet {} has an older layout: rebuilding it from the state",
                    options.name
                );
                engine.reconcile()?;
            }
            Ok(Nftables(engine))
        })
        .await
    }

    /// The nft text of the table's fixed part (for documentation and debugging).
    pub fn skeleton(&self, options: &FirewallOptions) -> String {
        ruleset::skeleton(&options.name, options.masquerade_mark, &self.0.backend().state_id)
    }
}

pub(crate) struct NftBackend {
    ns: NetNs,
    /// nf_tables netlink, for element changes (the hot path).
    socket: netlink::NftSocket,
    table: String,
    mark: u32,
    /// The id of the state directory the table belongs to (see [`Backend::claim`]).
    state_id: String,
    /// The table's comment when the firewall was opened (`None`: no table).
    found: Option<Option<String>>,
}

impl NftBackend {
    /// Run nft `commands` through libnftables (one transaction).
    fn run(&self, op: &str, commands: &str) -> Result<String> {
        libnft::run(&self.ns, commands).map_err(|reason| FirewallError::Kernel {
            driver: "nftables",
            netns: self.ns.to_string(),
            op: op.to_string(),
            errno: libnft::errno_of(&reason),
            reason: reason.trim().to_string(),
        })
    }

    fn kernel_err(&self, op: &str) -> impl FnOnce(netlink::NftError) -> FirewallError + '_ {
        let op = op.to_string();
        move |e| FirewallError::Kernel {
            driver: "nftables",
            netns: self.ns.to_string(),
            op,
            errno: e.errno(),
            reason: e.to_string(),
        }
    }

    /// Send `batch` (nothing when it is empty); the kernel applies it all or nothing.
    fn send(&self, batch: &netlink::Batch) -> std::result::Result<(), netlink::NftError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.socket.send(batch)
    }

    /// One netlink batch of `owner`'s elements: for each `(rules, kind)`, the elements of
    /// `rules` (see [`elements::of_rules`]), one operation per set. Kinds, as [`Backend::apply`]
    /// uses them: destroy what goes (missing ones ignored), create what comes (a key another
    /// owner holds fails the whole batch with EEXIST), add what others hold too ("add" is
    /// idempotent for an identical element).
    fn element_batch(&self, owner: &str, parts: &[(&Rules, netlink::OpKind)]) -> Result<netlink::Batch> {
        let mut batch = netlink::Batch::new();
        for (rules, kind) in parts {
            self.push_elements(&mut batch, *kind, elements::of_rules(rules, owner))?;
        }
        Ok(batch)
    }

    /// Append `elements` to `batch` as `kind` operations, one per set.
    fn push_elements(
        &self,
        batch: &mut netlink::Batch,
        kind: netlink::OpKind,
        elements: impl IntoIterator<Item = elements::Element>,
    ) -> Result<()> {
        let mut by_set: Vec<(&'static str, Vec<netlink::Element>)> = Vec::new();
        for e in elements {
            let el = elements::to_netlink(&e).map_err(self.kernel_err("encode element"))?;
            match by_set.iter_mut().find(|(set, _)| *set == e.set) {
                Some((_, els)) => els.push(el),
                None => by_set.push((e.set, vec![el])),
            }
        }
        for (set, els) in by_set {
            match kind {
                netlink::OpKind::Add => batch.add(&self.table, set, els),
                netlink::OpKind::Create => batch.create(&self.table, set, els),
                netlink::OpKind::Destroy => batch.destroy(&self.table, set, els),
            };
        }
        Ok(())
    }

    /// The nft text of the service changes from `old` to `new`; with `by_elements`, without
    /// the endpoint-only changes of mapped services (sent as elements, see [`endpoints`]).
    fn service_commands(&self, old: &Rules, new: &Rules, by_elements: bool, out: &mut String) {
        self.removal_commands(old, new, out);
        self.change_commands(old, new, by_elements, out);
    }

    /// The nft text of the services of `old` that `new` has not.
    fn removal_commands(&self, old: &Rules, new: &Rules, out: &mut String) {
        for o in &old.services {
            if !new.services.iter().any(|s| s.name == o.name) {
                out.push_str(&ruleset::remove_service(&self.table, o));
            }
        }
    }

    /// The nft text of the services of `new` that are new or changed (see
    /// [`service_commands`](Self::service_commands) for `by_elements`).
    fn change_commands(&self, old: &Rules, new: &Rules, by_elements: bool, out: &mut String) {
        for s in &new.services {
            let before = old.services.iter().find(|o| o.name == s.name);
            if before == Some(s) || (by_elements && before.is_some_and(|b| ruleset::endpoints_only(b, s))) {
                continue;
            }
            out.push_str(&ruleset::apply_service(&self.table, self.mark, before, s));
        }
    }

    /// Send `base` with the endpoint operations `ops` in one batch; when that fails and there
    /// were endpoint operations (the services' maps may be missing: a table made by an
    /// earlier netkit, a set flushed by someone), send `base` alone. Returns whether the
    /// endpoint operations went in, or the error of the last send.
    fn send_with_endpoints(
        &self,
        base: netlink::Batch,
        ops: &[endpoints::SetOp],
    ) -> std::result::Result<bool, netlink::NftError> {
        if ops.is_empty() {
            return self.send(&base).map(|()| false);
        }
        let mut batch = base.clone();
        endpoints::push(&mut batch, &self.table, ops);
        match self.send(&batch) {
            Ok(()) => Ok(true),
            Err(_) => self.send(&base).map(|()| false),
        }
    }

    /// [`Backend::apply`] when the table is missing (the first owner, or someone flushed the
    /// ruleset): only what the change brings matters (the elements it adds or takes on, the
    /// services it adds or changes, made afresh). First the table's fixed part and those
    /// services (one libnftables transaction), then the elements (one netlink batch); when the
    /// elements fail, the new table goes again, so the kernel is as before. `missing` is the
    /// error that said the table is missing: returned when the table turns out to exist
    /// (the fixed part is made with `create table`, which fails then). `sure`: the kernel said
    /// so of the table itself; else the table is made (and so checked) even when the change
    /// brings nothing.
    fn apply_to_new_table(
        &self,
        owner: &str,
        (old, new, held): (&Rules, &Rules, &Rules),
        missing: FirewallError,
        sure: bool,
    ) -> Result<()> {
        use netlink::OpKind::{Add, Create};
        let added = new.minus(old);
        let batch = self.element_batch(owner, &[(&added, Create), (held, Add)])?;
        let mut services = String::new();
        for s in new.services.iter().filter(|s| !old.services.contains(s)) {
            services.push_str(&ruleset::apply_service(&self.table, self.mark, None, s));
        }
        if sure && batch.is_empty() && services.is_empty() {
            return Ok(());
        }
        let text = ruleset::create(&self.table, self.mark, &self.state_id) + &services;
        match self.run("create table", &text) {
            Ok(_) => {}
            // The table is there after all (a kernel that pins no attribute on its ENOENT
            // meant the set): the first error is the one to report.
            Err(FirewallError::Kernel {
                errno: Some(libc::EEXIST),
                ..
            }) => return Err(missing),
            Err(e) => return Err(e),
        }
        let Err(e) = self.send(&batch) else {
            return Ok(());
        };
        let err = self.kernel_err("apply")(e);
        let t = &self.table;
        match self.run("remove table", &format!("delete table inet {t}\n")) {
            Ok(_) => Err(err),
            Err(undo) => Err(also_failed(err, "removing the new table", undo)),
        }
    }
}

/// `err` with `note` added to its reason.
fn noted(err: FirewallError, note: &str) -> FirewallError {
    match err {
        FirewallError::Kernel {
            driver,
            netns,
            op,
            reason,
            errno,
        } => FirewallError::Kernel {
            driver,
            netns,
            op,
            reason: format!("{reason}; {note}"),
            errno,
        },
        other => other,
    }
}

/// `err`, with the failure of its undo (`what`) added: the kernel is not as before the change.
fn also_failed(err: FirewallError, what: &str, undo: FirewallError) -> FirewallError {
    noted(err, &format!("{what} failed too, the change is half made: {undo}"))
}

impl NftBackend {
    /// Run services' text: a missing table is made in the same transaction, and a table of an
    /// older netkit gets the sets and chains it lacks (on ENOENT, once more with them).
    fn run_services_text(&self, text: &str) -> Result<()> {
        let exists = self
            .socket
            .table_comment(&self.table)
            .map_err(self.kernel_err("apply services"))?
            .is_some();
        if !exists {
            let text = ruleset::create(&self.table, self.mark, &self.state_id) + text;
            return self.run("apply services", &text).map(drop);
        }
        match self.run("apply services", text) {
            Ok(_) => Ok(()),
            Err(FirewallError::Kernel {
                errno: Some(libc::ENOENT),
                ..
            }) => self
                .run("apply services", &(ruleset::checks(&self.table) + text))
                .map(drop),
            Err(e) => Err(e),
        }
    }
}

impl Backend for NftBackend {
    /// Elements by netlink (with the endpoint changes of mapped services, see [`endpoints`]),
    /// the other service changes as nft text, in that order: the element batch is the
    /// part that fails in practice (a key another owner holds, a flushed table), and it fails
    /// before anything changed; its inverse is exact and cheap (one more batch), whereas the
    /// inverse of service text would be more text that can fail halfway. So when the service
    /// text fails after the elements went in, the inverse batch (destroy what was created, add
    /// back what was destroyed) puts the elements back as they were before the error returns.
    /// Elements taken on from other owners (`held`) stay: the state names them either way.
    fn apply(&self, owner: &str, old: &Rules, new: &Rules, held: &Rules, _state: &StateDir) -> Result<()> {
        use netlink::OpKind::{Add, Create, Destroy};
        let removed = old.minus(new);
        let added = new.minus(old);
        let batch = self.element_batch(owner, &[(&removed, Destroy), (&added, Create), (held, Add)])?;
        let (ep_ops, ep_undo) = endpoints::endpoint_ops(old, new);
        let by_elements = match self.send_with_endpoints(batch.clone(), &ep_ops) {
            Ok(b) => b,
            Err(e) => {
                let missing = e.table_missing();
                let err = self.kernel_err("apply")(e);
                return match missing {
                    Some(sure) => self.apply_to_new_table(owner, (old, new, held), err, sure),
                    None => Err(err),
                };
            }
        };
        let mut services = String::new();
        self.service_commands(old, new, by_elements, &mut services);
        if services.is_empty() {
            return Ok(());
        }
        let err = match self.run("apply", &services) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // A table made by an older netkit lacks the sets and chains of services without
        // endpoints (ENOENT on an element of those sets): add them and try once more.
        let err = match err {
            FirewallError::Kernel {
                errno: Some(libc::ENOENT),
                ..
            } => match self.run("apply", &(ruleset::checks(&self.table) + &services)) {
                Ok(_) => return Ok(()),
                Err(_) => err,
            },
            err => err,
        };
        if batch.is_empty() && !by_elements {
            // Nothing to undo. When no element changed, a missing table shows only here, as an
            // ENOENT that may as well be about a chain or an element of a service.
            return match err {
                FirewallError::Kernel {
                    errno: Some(libc::ENOENT),
                    ..
                } => self.apply_to_new_table(owner, (old, new, held), err, false),
                err => Err(err),
            };
        }
        let mut undo = self.element_batch(owner, &[(&added, Destroy), (&removed, Add)])?;
        if by_elements {
            endpoints::push(&mut undo, &self.table, &ep_undo);
        }
        match self.send(&undo) {
            Ok(()) => Err(err),
            Err(e) => Err(also_failed(
                err,
                "undoing the element changes",
                self.kernel_err("undo")(e),
            )),
        }
    }

    /// The table afresh: its fixed part and every service (one libnftables transaction that
    /// replaces the table), then every element (one netlink batch, elements several owners
    /// hold sent once). Not atomic as a whole: when the elements fail, the table has its fixed
    /// part and services but no elements, and the error says so (reconcile again).
    fn rebuild(&self, all: &[(String, Rules)]) -> Result<()> {
        let t = &self.table;
        let mut text = format!("add table inet {t}\ndelete table inet {t}\n");
        text.push_str(&ruleset::skeleton(t, self.mark, &self.state_id));
        let empty = Rules::default();
        for (_, rules) in all {
            self.service_commands(&empty, rules, false, &mut text);
        }
        self.run("reconcile", &text)?;
        let mut seen = HashSet::new();
        let every = all
            .iter()
            .flat_map(|(owner, rules)| elements::of_rules(rules, owner))
            .filter(|e| seen.insert((e.set, e.key.clone(), e.key_end.clone())));
        let mut batch = netlink::Batch::new();
        self.push_elements(&mut batch, netlink::OpKind::Add, every)?;
        self.send(&batch).map_err(|e| {
            noted(
                self.kernel_err("reconcile")(e),
                "the table was rebuilt without its elements, reconcile again",
            )
        })
    }

    /// All the services' text in one libnftables transaction (one cache fetch, one table
    /// validation); a missing table is made in the same transaction, and a table of an older
    /// netkit gets the sets and chains it lacks (on ENOENT, once more with them).
    fn apply_services(&self, changes: &[(&Rules, &Rules)]) -> Result<bool> {
        // Endpoint-only changes as one element batch first (see `apply`), the rest as text.
        let (mut ops, mut undo) = (Vec::new(), Vec::new());
        for (old, new) in changes {
            let (o, u) = endpoints::endpoint_ops(old, new);
            ops.extend(o);
            undo.extend(u);
        }
        let by_elements = !ops.is_empty() && self.send_with_endpoints(netlink::Batch::new(), &ops).unwrap_or(false);
        // Every owner's removals first: a service may move from one owner to another.
        let mut text = String::new();
        for (old, new) in changes {
            self.removal_commands(old, new, &mut text);
        }
        for (old, new) in changes {
            self.change_commands(old, new, by_elements, &mut text);
        }
        if text.is_empty() {
            return Ok(true);
        }
        let result = self.run_services_text(&text);
        if result.is_err() && by_elements {
            let mut batch = netlink::Batch::new();
            endpoints::push(&mut batch, &self.table, &undo);
            if let Err(e) = self.send(&batch) {
                return Err(also_failed(
                    result.expect_err("checked"),
                    "undoing the endpoint changes",
                    self.kernel_err("undo")(e),
                ));
            }
        }
        result.map(|()| true)
    }

    fn claim(&mut self, state_id: &str) -> Result<()> {
        self.state_id = state_id.to_string();
        let theirs = self
            .found
            .take()
            .flatten()
            .and_then(|c| ruleset::state_of(&c).map(str::to_string));
        match theirs {
            Some(theirs) if theirs != state_id => Err(FirewallError::Foreign {
                driver: "nftables",
                netns: self.ns.to_string(),
                objects: format!("table inet {}", self.table),
                theirs,
                ours: state_id.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn clear(&self) -> Result<()> {
        let t = &self.table;
        self.run("remove table", &format!("add table inet {t}\ndelete table inet {t}\n"))
            .map(drop)
    }
}
