//! The iptables driver, for hosts without nftables: netkit's own chains in the `nat` and
//! `filter` tables of iptables (IPv4) and ip6tables (IPv6), with the same semantics as the
//! [nftables driver](super::nftables).
//!
//! # Chains
//!
//! Every chain is named `PREFIX-…`, `PREFIX` being [`FirewallOptions::name`] upper-cased
//! (`NETKIT` by default; 1–8 of letters, digits, `_`). Chains with that prefix belong to netkit:
//! one no owner needs is deleted. The layout (drawn in full in `render.rs`):
//!
//! * nat: `NETKIT-PREROUTING` and `NETKIT-OUTPUT` (both jump to `NETKIT-SERVICES`),
//!   `NETKIT-SERVICES` (service addresses and external IPs; then, for local destinations,
//!   `NETKIT-NODEPORTS` and `NETKIT-HOSTPORTS`), `NETKIT-SVC-<id>`, `NETKIT-EXT-<id>` (with an
//!   external traffic policy) and `NETKIT-SEP-<id>-<n>` per service and endpoint (`<id>` as in
//!   the nftables driver), `NETKIT-POSTROUTING` (hairpin, 127.0.0.1, marked traffic,
//!   masquerades).
//! * filter: `NETKIT-FORWARD` (isolated pairs), `NETKIT-INPUT` (IPv4: drops traffic to
//!   127.0.0.0/8 that arrives from outside `lo` and was not DNATed there, kube-proxy's rule
//!   against CVE-2020-8558; see the nftables driver) and `NETKIT-SERVICES` (a service without
//!   endpoints rejects its connections, TCP with a reset, others with ICMP port unreachable;
//!   one with `Local` policy and no local endpoint drops its node-port and external-IP
//!   connections: iptables forbids DROP and REJECT in the nat table, so this lives in filter,
//!   reached from INPUT (through `NETKIT-INPUT`), OUTPUT and FORWARD).
//!
//! The built-in chains get one jump each (`-m comment --comment netkit`, the firewall's name),
//! inserted at the top: nat PREROUTING, OUTPUT, POSTROUTING; filter FORWARD, INPUT, OUTPUT.
//! Other rules there are never touched.
//!
//! Every rule that stems from an object carries `-m comment --comment "<owner>"`, so
//! `iptables-save` shows who holds it. A family's chains exist only while some owner has an
//! object of that family (an isolation counts for both: like nftables' `inet` table it blocks
//! IPv4 and IPv6).
//!
//! # Changes
//!
//! Each change regenerates **all** of netkit's chains of the families it touches from every
//! owner's rules (kept in the state directory), and loads them with one
//! `iptables-restore -w --noflush` (and one `ip6tables-restore`) run inside the namespace: each
//! chain is declared with `:CHAIN - [0:0]` (which creates or flushes it) and refilled, chains no
//! longer wanted are flushed and deleted, missing jumps are inserted. A table changes
//! atomically; before it, one `iptables-save` tells which of netkit's chains and jumps exist.
//! So a change costs two processes per family and time that grows with the number of rules in
//! the table, as every iptables change does; a service's endpoint change rewrites only that
//! service's chains in effect (the other chains are rewritten with the same rules, and stay
//! the same).
//!
//! If the IPv4 load succeeds and the IPv6 one fails, the IPv4 family is set back to its
//! previous state (best effort) before the error is returned. A failed load is
//! [`FirewallError::Kernel`] with the tool's message (and the input line it names); a rule of
//! another program that jumps into one of netkit's chains keeps that chain from being deleted,
//! and so makes the change that would delete it fail.
//!
//! Session-affinity lists (`xt_recent`) keep their entries across these rewrites: the new
//! rules take hold of a list before the old ones let go of it.
//!
//! Tools: `iptables-restore`/`iptables-save` and `ip6tables-restore`/`ip6tables-save` as the
//! system names them (on Debian, the `nf_tables` variants by default; the legacy variants work
//! too), looked up in `PATH` then `/usr/sbin`, `/sbin`. A namespace without a working
//! `ip6tables-save` (no IPv6) can hold every IPv4 object; an IPv6 object there is
//! [`FirewallError::Unavailable`].
//!
//! # Differences from the nftables driver
//!
//! * Session affinity uses `xt_recent` lists named after the endpoint chains (like the
//!   nftables driver's per-index sets: a client sticks to an endpoint *position*); a list holds
//!   at most 100 addresses by default (the module parameter `ip_list_tot`).
//! * A service without endpoints rejects its connections in the filter table (INPUT, OUTPUT,
//!   FORWARD), as the nftables driver does, but without its "new connections only"; a
//!   `Local` service without local endpoints drops node-port and external-IP connections
//!   there too (the nftables driver drops them in nat); a packet another rule DNATs
//!   elsewhere first is not refused.
//! * Endpoints per service: at most 10000 with the default prefix (chain names are limited to
//!   28 characters; 100 with an 8-character prefix).
//! * After the last owner goes, netkit's chains and jumps are gone and every other rule is as
//!   it was, so `iptables-save` prints what it printed before — except that with the
//!   `nf_tables` backend a table that did not exist before (a fresh namespace) stays, with its
//!   empty built-in chains and ACCEPT policies: it filters nothing, and deleting a table cannot
//!   be done without racing other programs that may have started using it (the legacy
//!   backend never deletes tables either).

mod render;
mod save;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use self::render::{Family, Names, Ruleset};
use super::engine::{self, Backend, Engine};
use super::error::Result;
use super::model::Rules;
use super::state::StateDir;
use super::{firewall_via_engine, Driver, FirewallError, FirewallOptions};
use crate::NetNs;

/// The iptables driver (see the [module docs](self)).
#[derive(Clone)]
pub struct Iptables(Engine<IptBackend>);

firewall_via_engine!(Iptables, Driver::Iptables);

impl Iptables {
    /// Open the firewall of `ns` with the iptables driver. [`FirewallError::Unavailable`] when
    /// `iptables-restore`/`iptables-save` are missing or `iptables-save` fails in the
    /// namespace; [`FirewallError::Invalid`] when the name makes no valid chain prefix.
    pub async fn open(ns: &NetNs, options: FirewallOptions) -> Result<Self> {
        let ns = ns.clone();
        engine::blocking(move || {
            let prefix = options.name.to_ascii_uppercase();
            render::check_prefix(&prefix)?;
            let unavailable = |reason: String| FirewallError::Unavailable {
                driver: "iptables",
                reason,
            };
            let v4 = Tools::find(Family::V4).map_err(unavailable)?;
            let mut at_open =
                vec![run(&ns, &v4.save, &[], None).map_err(|e| unavailable(format!("iptables-save failed: {e}")))?];
            let v6 = Tools::find(Family::V6)
                .and_then(|t| run(&ns, &t.save, &[], None).map(|text| (t, text)))
                .map(|(t, text)| {
                    at_open.push(text);
                    t
                })
                .map_err(|e| format!("IPv6 objects cannot be used: {e}"));
            let backend = IptBackend {
                ns: ns.clone(),
                names: Names::new(&prefix),
                label: options.name.clone(),
                state_id: String::new(),
                at_open,
                mark: options.masquerade_mark,
                v4,
                v6,
            };
            Ok(Iptables(Engine::new(&ns, &options, backend)?))
        })
        .await
    }
}

/// The save and restore programs of one family.
struct Tools {
    family: Family,
    save: PathBuf,
    restore: PathBuf,
}

impl Tools {
    fn find(family: Family) -> std::result::Result<Self, String> {
        Ok(Tools {
            family,
            save: find_program(family.save_tool())?,
            restore: find_program(family.restore_tool())?,
        })
    }
}

fn find_program(name: &str) -> std::result::Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| format!("{name} not found"))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run `program args` inside `ns`, feeding `input` on stdin; stdout, or stderr as the error.
fn run(ns: &NetNs, program: &Path, args: &[&str], input: Option<&str>) -> std::result::Result<String, String> {
    let name = program.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mut child = ns
        .command(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let stdin = child.stdin.take();
    let out = std::thread::scope(|s| {
        // Feed stdin from another thread while this one drains stdout and stderr, so a large
        // input cannot deadlock against a full output pipe.
        if let (Some(text), Some(mut stdin)) = (input, stdin) {
            // A tool that fails early closes its end: its stderr says why.
            s.spawn(move || drop(stdin.write_all(text.as_bytes())));
        }
        child.wait_with_output()
    })
    .map_err(|e| format!("{name}: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut reason = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Try `"))
        .collect::<Vec<_>>()
        .join("; ");
    if reason.is_empty() {
        reason = format!("{name} exited with {}", out.status);
    }
    // Point at the input line the tool complains about.
    if let Some(text) = input {
        if let Some(n) = error_line(&stderr) {
            if let Some(line) = text.lines().nth(n.saturating_sub(1)) {
                reason = format!("{reason} (input line {n}: {line})");
            }
        }
    }
    Err(reason)
}

/// The input line number an iptables-restore error names ("line 3: …", "Error occurred at
/// line: 3", "line 3 failed").
fn error_line(stderr: &str) -> Option<usize> {
    for marker in ["at line: ", "line "] {
        if let Some(at) = stderr.find(marker) {
            let digits: String = stderr[at + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse() {
                return Some(n);
            }
        }
    }
    None
}

pub(crate) struct IptBackend {
    ns: NetNs,
    names: Names,
    /// The firewall's name: the comment on the jumps from built-in chains is
    /// `<label> state <state_id>`.
    label: String,
    /// The id of the state directory the chains belong to (see [`Backend::claim`]).
    state_id: String,
    /// What `iptables-save` (and `ip6tables-save`) showed when the firewall was opened.
    at_open: Vec<String>,
    mark: u32,
    v4: Tools,
    /// ip6tables, or why it cannot be used.
    v6: std::result::Result<Tools, String>,
}

impl IptBackend {
    fn kernel_error(&self, op: &str, reason: String) -> FirewallError {
        FirewallError::Kernel {
            driver: "iptables",
            netns: self.ns.to_string(),
            op: op.to_string(),
            reason,
            errno: None,
        }
    }

    /// The comment of the jumps from built-in chains.
    fn jump_comment(&self) -> String {
        format!("{} state {}", self.label, self.state_id)
    }

    fn tools(&self, family: Family) -> Option<&Tools> {
        match family {
            Family::V4 => Some(&self.v4),
            Family::V6 => self.v6.as_ref().ok(),
        }
    }

    /// Make the kernel hold `desired` (`None`: nothing of ours) in one family.
    fn sync(&self, tools: &Tools, desired: Option<&Ruleset>) -> Result<()> {
        let save_name = tools.family.save_tool();
        let text = run(&self.ns, &tools.save, &[], None).map_err(|e| self.kernel_error(save_name, e))?;
        let saved = save::parse(&text);
        let mut input = String::new();
        for table in ["nat", "filter"] {
            let chains = desired.map(|d| d.table(table));
            if let Some(t) =
                render::restore_input(&self.names, table, &self.jump_comment(), chains, &saved.table(table))
            {
                input.push_str(&t);
            }
        }
        if input.is_empty() {
            return Ok(());
        }
        let restore_name = tools.family.restore_tool();
        run(&self.ns, &tools.restore, &["-w", "--noflush"], Some(&input))
            .map(drop)
            .map_err(|e| self.kernel_error(restore_name, e))
    }

    /// The families to write for a change from `old` to `new` of one owner, with the rules
    /// each should hold. A family neither touches is left alone (its rules do not change).
    fn plan(&self, old: &Rules, new: &Rules, all: &[(String, Rules)]) -> Result<Vec<(&Tools, Option<Ruleset>)>> {
        let mut out = Vec::new();
        for family in Family::ALL {
            if !render::touches(old, family) && !render::touches(new, family) {
                continue;
            }
            match self.tools(family) {
                Some(tools) => out.push((tools, render::render(&self.names, self.mark, family, all)?)),
                None if render::has_objects_of(new, family) => {
                    return Err(FirewallError::Unavailable {
                        driver: "iptables",
                        reason: self.v6.as_ref().err().cloned().unwrap_or_default(),
                    })
                }
                // Isolation only: IPv6 has no forwarding here to block.
                None => {}
            }
        }
        Ok(out)
    }
}

/// Every owner's rules from the state, `owner`'s replaced by `rules`, sorted by owner.
fn all_rules(state: &StateDir, owner: &str, rules: &Rules) -> Result<Vec<(String, Rules)>> {
    let mut all = Vec::new();
    for o in state.owners()? {
        if o != owner {
            let r = state.rules(&o)?;
            all.push((o, r));
        }
    }
    all.push((owner.to_string(), rules.clone()));
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}

impl Backend for IptBackend {
    // Every change rewrites the chains of the families it touches from all owners' state,
    // which names the shared objects: `held` only adds its families to those rewritten.
    fn apply(&self, owner: &str, old: &Rules, new: &Rules, held: &Rules, state: &StateDir) -> Result<()> {
        let all_new = all_rules(state, owner, new)?;
        let plan = self.plan(old, &new.union(held), &all_new)?;
        for (i, (tools, desired)) in plan.iter().enumerate() {
            if let Err(e) = self.sync(tools, desired.as_ref()) {
                // Put the families already written back as they were.
                if i > 0 {
                    if let Ok(all_old) = all_rules(state, owner, old) {
                        for (tools, _) in &plan[..i] {
                            if let Ok(before) = render::render(&self.names, self.mark, tools.family, &all_old) {
                                let _ = self.sync(tools, before.as_ref());
                            }
                        }
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn rebuild(&self, all: &[(String, Rules)]) -> Result<()> {
        let mut all = all.to_vec();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for family in Family::ALL {
            let desired = render::render(&self.names, self.mark, family, &all)?;
            match self.tools(family) {
                Some(tools) => self.sync(tools, desired.as_ref())?,
                None if all.iter().any(|(_, r)| render::has_objects_of(r, family)) => {
                    return Err(FirewallError::Unavailable {
                        driver: "iptables",
                        reason: self.v6.as_ref().err().cloned().unwrap_or_default(),
                    })
                }
                None => {}
            }
        }
        Ok(())
    }

    fn claim(&mut self, state_id: &str) -> Result<()> {
        self.state_id = state_id.to_string();
        for text in std::mem::take(&mut self.at_open) {
            let saved = save::parse(&text);
            for table in ["nat", "filter"] {
                let t = saved.table(table);
                let jumps = t.rules.iter().filter(|r| {
                    t.builtin.contains(&r.chain) && r.target.as_deref().is_some_and(|c| self.names.is_ours(c))
                });
                for rule in jumps {
                    let theirs = save::comment(&rule.spec)
                        .and_then(|c| c.strip_prefix(&format!("{} state ", self.label)).map(str::to_string));
                    if let Some(theirs) = theirs.filter(|t| t != state_id) {
                        return Err(FirewallError::Foreign {
                            driver: "iptables",
                            netns: self.ns.to_string(),
                            objects: format!("chains {}", self.names.chain("…")),
                            theirs,
                            ours: state_id.to_string(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn clear(&self) -> Result<()> {
        for family in Family::ALL {
            if let Some(tools) = self.tools(family) {
                self.sync(tools, None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines() {
        assert_eq!(
            error_line("iptables-restore v1.8.9 (nf_tables): \nline 3: CHAIN_DEL failed"),
            Some(3)
        );
        assert_eq!(
            error_line("The nat table…\n\nError occurred at line: 12\nTry"),
            Some(12)
        );
        assert_eq!(error_line("iptables-restore: line 7 failed"), Some(7));
        assert_eq!(error_line("no number"), None);
    }
}
