//! The nftables driver: one table (`inet netkit` by default) of sets, maps and chains.
//!
//! See [`ruleset`] for the table's layout. Port mappings, masquerade sources, container networks
//! and isolated pairs are elements, so adding or removing one does not depend on how many
//! exist; each service has its own chains, rewritten alone when its endpoints change.

mod elements;
mod libnft;
pub(crate) mod netlink;
pub mod ruleset;

use std::fmt::Write;

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
            let backend = NftBackend {
                ns: ns.clone(),
                socket,
                table: options.name.clone(),
                mark: options.masquerade_mark,
                state_id: String::new(),
                found,
            };
            Ok(Nftables(Engine::new(&ns, &options, backend)?))
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
    fn run(&self, op: &str, commands: &str) -> Result<String> {
        libnft::run(&self.ns, commands).map_err(|reason| FirewallError::Kernel {
            driver: "nftables",
            netns: self.ns.to_string(),
            op: op.to_string(),
            reason: reason.trim().to_string(),
        })
    }

    fn kernel_err(&self, op: &str) -> impl FnOnce(netlink::NftError) -> FirewallError + '_ {
        let op = op.to_string();
        move |e| FirewallError::Kernel {
            driver: "nftables",
            netns: self.ns.to_string(),
            op,
            reason: e.to_string(),
        }
    }

    fn table_exists(&self) -> Result<bool> {
        self.socket
            .table_exists(&self.table)
            .map_err(self.kernel_err("look up table"))
    }

    /// One netlink batch: destroy `removed`'s elements, create `added`'s ("create": a key
    /// another owner holds fails the whole batch with EEXIST), and add `held`'s (shared
    /// elements others hold: "add" is idempotent for an identical element).
    fn element_batch(&self, owner: &str, removed: &Rules, added: &Rules, held: &Rules) -> Result<netlink::Batch> {
        let mut batch = netlink::Batch::new();
        for (rules, kind) in [
            (removed, netlink::OpKind::Destroy),
            (added, netlink::OpKind::Create),
            (held, netlink::OpKind::Add),
        ] {
            for e in elements::of_rules(rules, owner) {
                let el = elements::to_netlink(&e).map_err(self.kernel_err("encode element"))?;
                match kind {
                    netlink::OpKind::Create => batch.create(&self.table, e.set, [el]),
                    netlink::OpKind::Add => batch.add(&self.table, e.set, [el]),
                    _ => batch.destroy(&self.table, e.set, [el]),
                };
            }
        }
        Ok(batch)
    }

    /// Element commands for `rules` of `owner`.
    fn element_commands(&self, verb: &str, rules: &Rules, owner: &str, out: &mut String) {
        for e in elements::of_rules(rules, owner) {
            let body = if verb == "delete" {
                elements::key_text(&e)
            } else {
                elements::text(&e)
            };
            let _ = writeln!(out, "{verb} element inet {} {} {{ {body} }}", self.table, e.set);
        }
    }

    fn service_commands(&self, old: &Rules, new: &Rules, out: &mut String) {
        for o in &old.services {
            if !new.services.iter().any(|s| s.name == o.name) {
                out.push_str(&ruleset::remove_service(&self.table, o));
            }
        }
        for s in &new.services {
            let before = old.services.iter().find(|o| o.name == s.name);
            if before != Some(s) {
                out.push_str(&ruleset::apply_service(&self.table, self.mark, before, s));
            }
        }
    }
}

impl Backend for NftBackend {
    fn apply(&self, owner: &str, old: &Rules, new: &Rules, held: &Rules, _state: &StateDir) -> Result<()> {
        let removed = old.minus(new);
        let added = new.minus(old);
        let mut services = String::new();
        self.service_commands(old, new, &mut services);
        let send = |batch: &netlink::Batch| -> Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            self.socket.send(batch).map_err(self.kernel_err("apply"))
        };
        if services.is_empty() {
            // The hot path: elements only, one netlink batch, no libnftables.
            match send(&self.element_batch(owner, &removed, &added, held)?) {
                Err(FirewallError::Kernel { .. }) if !self.table_exists()? => {}
                other => return other,
            }
            // No table (first owner, or someone flushed the ruleset): only additions matter.
            if added.is_empty() && held.is_empty() {
                return Ok(());
            }
            // One transaction: the table's fixed part and the new elements.
            let mut text = ruleset::skeleton(&self.table, self.mark, &self.state_id);
            self.element_commands("create", &added, owner, &mut text);
            self.element_commands("add", held, owner, &mut text);
            return self.run("create table", &text).map(drop);
        }
        // Services change chains: the whole change as one libnftables transaction (elements in
        // nft text too), the table's fixed part first when it is missing.
        let mut deletes = String::new();
        self.element_commands("delete", &removed, owner, &mut deletes);
        let mut rest = String::new();
        self.element_commands("create", &added, owner, &mut rest);
        self.element_commands("add", held, owner, &mut rest);
        rest.push_str(&services);
        if !self.table_exists()? {
            let text = ruleset::skeleton(&self.table, self.mark, &self.state_id) + &rest;
            return self.run("apply", &text).map(drop);
        }
        match self.run("apply", &(deletes.clone() + &rest)) {
            Ok(_) => Ok(()),
            // An element the state names but the kernel lacks (a process killed between the
            // two, or a flush): drop the rest by netlink (missing ones ignored), then apply.
            Err(_) if !deletes.is_empty() => {
                send(&self.element_batch(owner, &removed, &Rules::default(), &Rules::default())?)?;
                self.run("apply", &rest).map(drop)
            }
            Err(e) => Err(e),
        }
    }

    fn rebuild(&self, all: &[(String, Rules)]) -> Result<()> {
        let t = &self.table;
        let mut text = format!("add table inet {t}\ndelete table inet {t}\n");
        text.push_str(&ruleset::skeleton(t, self.mark, &self.state_id));
        let empty = Rules::default();
        for (owner, rules) in all {
            self.element_commands("add", rules, owner, &mut text);
            self.service_commands(&empty, rules, &mut text);
        }
        self.run("reconcile", &text).map(drop)
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
