//! The wanted state, kept on disk so every process (a CNI plugin runs once per call) sees what
//! every owner holds, `reconcile` can re-apply it after a flush, and GC knows the owners.
//!
//! ```text
//! lock                  flock: one change at a time in this namespace (each change is short)
//! owners/<hex>.json     one owner's Rules (file name: the owner string, hex-encoded)
//! ports/<proto>.<port>  index: which owners map this host port (conflict checks without a scan)
//! services/<hex>        index: the owner of each service name
//! shared/<hex>/<hex>    index: holders of an object several may hold (a network, an isolated
//!                       pair, a masquerade source), one file per holder (content: a detail,
//!                       e.g. the masquerade's network); the kernel holds the object once
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

    /// The directory of a shared object's holders, in the current layout (one file per holder).
    /// A shared index written by netkit before 0.2 (one file per object, a line per holder) is
    /// converted on first use, so a plugin upgraded under live containers keeps their state.
    fn shared_dir(&self, key: &str) -> Result<PathBuf> {
        let dir = self.shared.join(hex(key));
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_file() => self.convert_legacy_shared(&dir)?,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FirewallError::state("inspect", &dir)(e)),
        }
        Ok(dir)
    }

    /// Turn a legacy one-file index (`<hex owner>\t<detail>` lines) into a holder directory.
    fn convert_legacy_shared(&self, path: &Path) -> Result<()> {
        let text = fsutil::read(path)
            .map_err(FirewallError::state("read", path))?
            .unwrap_or_default();
        let mut holders = Vec::new();
        for l in text.lines() {
            let (o, d) = l.split_once('\t').unwrap_or((l, ""));
            let owner = unhex(o).ok_or_else(|| FirewallError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("bad line {l:?}"),
            })?;
            holders.push((owner, d.to_string()));
        }
        // Aside first: a process killed midway leaves the old file in tmp/ and a partial
        // directory, which the owners' own files (the source of truth) still cover.
        let aside = fsutil::unique_name(&self.files.tmp);
        std::fs::rename(path, &aside).map_err(FirewallError::state("move aside", path))?;
        std::fs::create_dir_all(path).map_err(FirewallError::state("create directory", path))?;
        for (owner, detail) in holders {
            let entry = path.join(hex(&owner));
            self.files
                .replace(&entry, &detail)
                .map_err(FirewallError::state("write", &entry))?;
        }
        let _ = std::fs::remove_file(&aside);
        Ok(())
    }

    /// Holders of a shared object: `(owner, detail)` pairs (reads every holder: GC and tests).
    #[cfg(test)]
    pub(crate) fn sharers(&self, key: &str) -> Result<Vec<(String, String)>> {
        let dir = self.shared_dir(key)?;
        let mut out = Vec::new();
        self.each_holder(&dir, |owner| {
            out.push(owner);
            false
        })?;
        out.into_iter()
            .map(|owner| {
                let path = dir.join(hex(&owner));
                let detail = fsutil::read(&path)
                    .map_err(FirewallError::state("read", &path))?
                    .unwrap_or_default();
                Ok((owner, detail))
            })
            .collect()
    }

    /// Call `f` with each holder of the directory `dir` until it returns true (a few entries
    /// per system call, so stopping early costs O(1) however many hold the object).
    fn each_holder(&self, dir: &Path, mut f: impl FnMut(String) -> bool) -> Result<()> {
        let mut bad = None;
        fsutil::dir::each_entry(dir, |name| {
            let name = name.to_string_lossy();
            match unhex(&name) {
                Some(owner) => f(owner),
                None => {
                    bad = Some(dir.join(&*name));
                    true
                }
            }
        })
        .map_err(FirewallError::state("list", dir))?;
        match bad {
            Some(path) => Err(FirewallError::Corrupt {
                path,
                reason: "not a hex-encoded owner".into(),
            }),
            None => Ok(()),
        }
    }

    /// A holder of a shared object other than `owner`, with its detail: `None` when `owner`
    /// holds it alone or nobody does. Stops at the first other holder (O(1), not O(holders)).
    pub(crate) fn other_holder(&self, key: &str, owner: &str) -> Result<Option<(String, String)>> {
        let dir = self.shared_dir(key)?;
        let mut found = None;
        self.each_holder(&dir, |o| {
            if o != owner {
                found = Some(o);
            }
            found.is_some()
        })?;
        let Some(other) = found else { return Ok(None) };
        let path = dir.join(hex(&other));
        let detail = fsutil::read(&path)
            .map_err(FirewallError::state("read", &path))?
            .unwrap_or_default();
        Ok(Some((other, detail)))
    }

    /// Record (`add`) or drop `owner` as a holder of a shared object: one file per holder in
    /// the object's directory, so the cost does not grow with the number of holders; the
    /// directory goes with its last holder.
    pub(crate) fn index_shared(&self, key: &str, owner: &str, detail: &str, add: bool) -> Result<()> {
        let dir = self.shared_dir(key)?;
        let entry = dir.join(hex(owner));
        if add {
            if let Err(e) = std::fs::create_dir(&dir) {
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(FirewallError::state("create directory", &dir)(e));
                }
            }
            return self
                .files
                .replace(&entry, detail)
                .map_err(FirewallError::state("write", &entry));
        }
        self.files
            .retire(&entry)
            .map_err(FirewallError::state("remove", &entry))?;
        match std::fs::remove_dir(&dir) {
            Ok(()) => Ok(()),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTEMPTY)
                    || e.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(())
            }
            Err(e) => Err(FirewallError::state("remove directory", &dir)(e)),
        }
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

    fn temp_state() -> (tempfile::TempDir, StateDir) {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        (t, s)
    }

    #[test]
    fn shared_holders_come_and_go_one_file_each() {
        let (_t, s) = temp_state();
        let key = "masq:10.88.0.0/16";
        assert_eq!(s.other_holder(key, "a:eth0").unwrap(), None);
        s.index_shared(key, "a:eth0", "10.88.0.0/16", true).unwrap();
        s.index_shared(key, "a:eth0", "10.88.0.0/16", true).unwrap(); // idempotent
        assert_eq!(s.other_holder(key, "a:eth0").unwrap(), None);
        assert_eq!(
            s.other_holder(key, "b:eth0").unwrap(),
            Some(("a:eth0".into(), "10.88.0.0/16".into()))
        );
        s.index_shared(key, "b:eth0", "10.88.0.0/16", true).unwrap();
        assert_eq!(s.sharers(key).unwrap().len(), 2);
        s.index_shared(key, "a:eth0", "", false).unwrap();
        s.index_shared(key, "a:eth0", "", false).unwrap(); // already gone: fine
        assert_eq!(s.sharers(key).unwrap(), vec![("b:eth0".into(), "10.88.0.0/16".into())]);
        assert!(s.shared.join(hex(key)).is_dir());
        s.index_shared(key, "b:eth0", "", false).unwrap();
        assert!(
            !s.shared.join(hex(key)).exists(),
            "the directory goes with its last holder"
        );
        assert!(s.sharers(key).unwrap().is_empty());
    }

    #[test]
    fn legacy_one_file_index_is_converted() {
        let (_t, s) = temp_state();
        let key = "net:cni0:10.88.0.0/16";
        let legacy = format!("{}\t\n{}\tdetail\n", hex("a:eth0"), hex("b:eth0"));
        std::fs::write(s.shared.join(hex(key)), legacy).unwrap();
        let mut holders = s.sharers(key).unwrap();
        holders.sort();
        assert_eq!(
            holders,
            vec![("a:eth0".into(), String::new()), ("b:eth0".into(), "detail".into())]
        );
        assert!(s.shared.join(hex(key)).is_dir());
        s.index_shared(key, "a:eth0", "", false).unwrap();
        assert!(s.other_holder(key, "x").unwrap().is_some());
    }

    #[test]
    fn corrupt_legacy_index_is_reported() {
        let (_t, s) = temp_state();
        let key = "net:cni0:10.88.0.0/16";
        std::fs::write(s.shared.join(hex(key)), "zz\t\n").unwrap();
        assert!(matches!(s.other_holder(key, "a"), Err(FirewallError::Corrupt { .. })));
    }
}
