//! The nftables driver: one table (`inet netkit` by default) of sets, maps and chains.
//!
//! See [`ruleset`] for the table's layout. Port mappings, masquerade sources, container networks
//! and isolated pairs are elements, so adding or removing one does not depend on how many
//! exist; each service has its own chains, rewritten alone when its endpoints change.

mod elements;
mod libnft;
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
            libnft::available().map_err(unavailable)?;
            libnft::run(&ns, "list tables").map_err(|e| unavailable(format!("the kernel refused nftables: {e}")))?;
            let backend = NftBackend {
                ns: ns.clone(),
                table: options.name.clone(),
                mark: options.masquerade_mark,
            };
            Ok(Nftables(Engine::new(&ns, engine::state_dir(&ns, &options)?, backend)?))
        })
        .await
    }

    /// The nft text of the table's fixed part (for documentation and debugging).
    pub fn skeleton(&self, options: &FirewallOptions) -> String {
        ruleset::skeleton(&options.name, options.masquerade_mark)
    }
}

pub(crate) struct NftBackend {
    ns: NetNs,
    table: String,
    mark: u32,
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

    fn table_exists(&self) -> Result<bool> {
        let out = self.run("list tables", "list tables")?;
        let want = format!("table inet {}", self.table);
        Ok(out.lines().any(|l| l.trim() == want))
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
    fn apply(&self, owner: &str, old: &Rules, new: &Rules, _state: &StateDir) -> Result<()> {
        let removed = old.minus(new);
        let added = new.minus(old);
        let mut deletes = String::new();
        self.element_commands("delete", &removed, owner, &mut deletes);
        let mut rest = String::new();
        // "create": a key another owner holds fails the whole transaction (EEXIST).
        self.element_commands("create", &added, owner, &mut rest);
        self.service_commands(old, new, &mut rest);
        let mut text = String::new();
        if !self.table_exists()? {
            if added.is_empty() && new.services == old.services {
                // Nothing to add and no table: whatever was to be removed is gone already.
                return Ok(());
            }
            text.push_str(&ruleset::skeleton(&self.table, self.mark));
            deletes.clear();
        }
        text.push_str(&deletes);
        text.push_str(&rest);
        match self.run("apply", &text) {
            Ok(_) => Ok(()),
            // An element recorded in the state but never applied (a process killed between
            // the two): delete the rest one by one, then apply the additions.
            Err(_) if !deletes.is_empty() => {
                for cmd in deletes.lines() {
                    let _ = self.run("delete element", cmd);
                }
                self.run("apply", &rest).map(drop)
            }
            Err(e) => Err(e),
        }
    }

    fn rebuild(&self, all: &[(String, Rules)]) -> Result<()> {
        let t = &self.table;
        let mut text = format!("add table inet {t}\ndelete table inet {t}\n");
        text.push_str(&ruleset::skeleton(t, self.mark));
        let empty = Rules::default();
        for (owner, rules) in all {
            self.element_commands("add", rules, owner, &mut text);
            self.service_commands(&empty, rules, &mut text);
        }
        self.run("reconcile", &text).map(drop)
    }

    fn clear(&self) -> Result<()> {
        let t = &self.table;
        self.run("remove table", &format!("add table inet {t}\ndelete table inet {t}\n"))
            .map(drop)
    }
}
