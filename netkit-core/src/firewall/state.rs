//! The wanted state, kept on disk so every process (a CNI plugin runs once per call) sees what
//! every owner holds, `reconcile` can re-apply it after a flush, and GC knows the owners.
//!
//! ```text
//! lock                  flock: one change at a time in this namespace (each change is short)
//! owners/<hex>.json     one owner's Rules (file name: the owner string, hex-encoded)
//! ports/<proto>.<port>  index: which owners map this host port (conflict checks without a scan)
//! services/<hex>        index: the owner of each service name
//! shared/<hex>          index: owners of an object several may hold (a network, an isolated
//!                       pair, a masquerade source); the kernel holds it once
//! tmp/, spare/          scratch files, and released files kept for reuse (see fsutil::files)
//! ```
//!
//! Order of writes, so a process killed at any instant leaves nothing unaccounted for: an owner's
//! file is written (intent) before the kernel is changed, and removed after the kernel objects
//! are gone. A kernel object therefore always has an owner file that names it; `teardown` and GC
//! remove kernel objects idempotently.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::error::Result;
use super::model::{PortMapping, Rules};
use super::FirewallError;
use crate::fsutil::{self, files};

/// The state directory of one firewall (one namespace).
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    root: PathBuf,
    owners: PathBuf,
    ports: PathBuf,
    services: PathBuf,
    shared: PathBuf,
    files: files::Files,
}

/// One claim in the port index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortClaim {
    pub(crate) owner: String,
    pub(crate) host_ip: Option<IpAddr>,
    pub(crate) ipv4: bool,
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

impl StateDir {
    /// Open (creating) the directory.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let dir = StateDir {
            root: root.to_path_buf(),
            owners: root.join("owners"),
            ports: root.join("ports"),
            services: root.join("services"),
            shared: root.join("shared"),
            files: files::Files {
                tmp: root.join("tmp"),
                spare: root.join("spare"),
                sync: false,
            },
        };
        for d in [
            &dir.root,
            &dir.owners,
            &dir.ports,
            &dir.services,
            &dir.shared,
            &dir.files.tmp,
            &dir.files.spare,
        ] {
            std::fs::create_dir_all(d).map_err(FirewallError::state("create directory", d))?;
        }
        Ok(dir)
    }

    /// Take the namespace's change lock.
    pub(crate) fn lock(&self) -> Result<fsutil::Lock> {
        let path = self.root.join("lock");
        fsutil::lock(&path).map_err(FirewallError::state("lock", &path))
    }

    fn owner_path(&self, owner: &str) -> PathBuf {
        self.owners.join(format!("{}.json", hex(owner)))
    }

    /// An owner's rules (empty when it holds nothing).
    pub(crate) fn rules(&self, owner: &str) -> Result<Rules> {
        let path = self.owner_path(owner);
        match fsutil::read(&path).map_err(FirewallError::state("read", &path))? {
            None => Ok(Rules::default()),
            Some(text) => serde_json::from_str(&text).map_err(|e| FirewallError::Corrupt {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// Replace an owner's rules (removing the file when they are empty).
    pub(crate) fn set_rules(&self, owner: &str, rules: &Rules) -> Result<()> {
        let path = self.owner_path(owner);
        if rules.is_empty() {
            return self
                .files
                .retire(&path)
                .map(drop)
                .map_err(FirewallError::state("remove", &path));
        }
        let text = serde_json::to_string_pretty(rules).expect("rules serialise");
        self.files
            .replace(&path, &text)
            .map_err(FirewallError::state("write", &path))
    }

    /// Every owner with a state file (a scan: GC, reconcile).
    pub(crate) fn owners(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.owners).map_err(FirewallError::state("list", &self.owners))? {
            let e = e.map_err(FirewallError::state("list", &self.owners))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(owner) = name.strip_suffix(".json").and_then(unhex) {
                out.push(owner);
            }
        }
        out.sort();
        Ok(out)
    }

    /// True when no owner holds anything (stops at the first owner file found).
    pub(crate) fn no_owners(&self) -> Result<bool> {
        let entries = std::fs::read_dir(&self.owners).map_err(FirewallError::state("list", &self.owners))?;
        for e in entries {
            let e = e.map_err(FirewallError::state("list", &self.owners))?;
            if e.file_name().to_string_lossy().ends_with(".json") {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The owner of a service name.
    pub(crate) fn service_owner(&self, name: &str) -> Result<Option<String>> {
        let path = self.services.join(hex(name));
        fsutil::read(&path).map_err(FirewallError::state("read", &path))
    }

    /// Record (or, with `None`, forget) the owner of a service name.
    pub(crate) fn set_service_owner(&self, name: &str, owner: Option<&str>) -> Result<()> {
        let path = self.services.join(hex(name));
        match owner {
            Some(o) => self
                .files
                .replace(&path, o)
                .map_err(FirewallError::state("write", &path)),
            None => self
                .files
                .retire(&path)
                .map(drop)
                .map_err(FirewallError::state("remove", &path)),
        }
    }

    /// Holders of a shared object: `(owner, detail)` pairs.
    pub(crate) fn sharers(&self, key: &str) -> Result<Vec<(String, String)>> {
        let path = self.shared.join(hex(key));
        let Some(text) = fsutil::read(&path).map_err(FirewallError::state("read", &path))? else {
            return Ok(Vec::new());
        };
        text.lines()
            .map(|l| {
                let (o, d) = l.split_once('\t').unwrap_or((l, ""));
                unhex(o)
                    .map(|o| (o, d.to_string()))
                    .ok_or_else(|| FirewallError::Corrupt {
                        path: path.clone(),
                        reason: format!("bad line {l:?}"),
                    })
            })
            .collect()
    }

    /// Record (`add`) or drop `owner` as a holder of a shared object.
    pub(crate) fn index_shared(&self, key: &str, owner: &str, detail: &str, add: bool) -> Result<()> {
        let path = self.shared.join(hex(key));
        let mut holders = self.sharers(key)?;
        let had = holders.iter().any(|(o, _)| o == owner);
        match (add, had) {
            (true, false) => holders.push((owner.to_string(), detail.to_string())),
            (false, true) => holders.retain(|(o, _)| o != owner),
            _ => return Ok(()),
        }
        if holders.is_empty() {
            return self
                .files
                .retire(&path)
                .map(drop)
                .map_err(FirewallError::state("remove", &path));
        }
        let text: String = holders.iter().map(|(o, d)| format!("{}\t{d}\n", hex(o))).collect();
        self.files
            .replace(&path, &text)
            .map_err(FirewallError::state("write", &path))
    }

    fn port_path(&self, m: &PortMapping, port: u16) -> PathBuf {
        self.ports.join(format!("{}.{port}", m.protocol))
    }

    fn read_claims(&self, path: &Path) -> Result<Vec<PortClaim>> {
        let Some(text) = fsutil::read(path).map_err(FirewallError::state("read", path))? else {
            return Ok(Vec::new());
        };
        text.lines()
            .map(|line| {
                let mut f = line.split('\t');
                let (owner, ip, fam) = (f.next(), f.next(), f.next());
                let corrupt = || FirewallError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("bad line {line:?}"),
                };
                let owner = owner.and_then(unhex).ok_or_else(corrupt)?;
                let host_ip = match ip {
                    Some("*") => None,
                    Some(s) => Some(s.parse().map_err(|_| corrupt())?),
                    None => return Err(corrupt()),
                };
                let ipv4 = match fam {
                    Some("4") => true,
                    Some("6") => false,
                    _ => return Err(corrupt()),
                };
                Ok(PortClaim { owner, host_ip, ipv4 })
            })
            .collect()
    }

    fn write_claims(&self, path: &Path, claims: &[PortClaim]) -> Result<()> {
        if claims.is_empty() {
            return self
                .files
                .retire(path)
                .map(drop)
                .map_err(FirewallError::state("remove", path));
        }
        let text: String = claims
            .iter()
            .map(|c| {
                let ip = c.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "*".into());
                format!("{}\t{ip}\t{}\n", hex(&c.owner), if c.ipv4 { 4 } else { 6 })
            })
            .collect();
        self.files
            .replace(path, &text)
            .map_err(FirewallError::state("write", path))
    }

    /// Who else maps a host port `m` covers in a way that overlaps it.
    pub(crate) fn port_conflict(&self, owner: &str, m: &PortMapping) -> Result<Option<(u16, PortClaim)>> {
        for (port, _) in m.ports() {
            for c in self.read_claims(&self.port_path(m, port))? {
                let overlaps = c.ipv4 == m.is_ipv4()
                    && match (c.host_ip, m.host_ip) {
                        (Some(a), Some(b)) => a == b,
                        _ => true,
                    };
                if overlaps && c.owner != owner {
                    return Ok(Some((port, c)));
                }
            }
        }
        Ok(None)
    }

    /// Record (`add`) or drop the index entries of `owner`'s mapping `m`.
    pub(crate) fn index_ports(&self, owner: &str, m: &PortMapping, add: bool) -> Result<()> {
        let mine = PortClaim {
            owner: owner.to_string(),
            host_ip: m.host_ip,
            ipv4: m.is_ipv4(),
        };
        for (port, _) in m.ports() {
            let path = self.port_path(m, port);
            let mut claims = self.read_claims(&path)?;
            let had = claims.contains(&mine);
            if add && !had {
                claims.push(mine.clone());
            } else if !add && had {
                claims.retain(|c| *c != mine);
            } else {
                continue;
            }
            self.write_claims(&path, &claims)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        for s in ["abc:eth0", "svc/default/web", "x"] {
            assert_eq!(unhex(&hex(s)).as_deref(), Some(s));
        }
        assert_eq!(unhex("zz"), None);
    }
}
