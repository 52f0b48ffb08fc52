//! Import of a host-local data directory, so a live node can move to netkit's store.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::error::Result;
use super::{Ipam, IpamError, Owner};

/// What [`Ipam::import_host_local`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Addresses now held by the owner host-local recorded.
    pub imported: Vec<(IpAddr, Owner)>,
    /// Addresses the store already gave to the same owner (an import run twice).
    pub already_held: usize,
    /// Addresses the store holds for a different owner: left as they are.
    pub conflicts: Vec<(IpAddr, Owner, Owner)>,
    /// Files that are not host-local records, with the reason (left untouched).
    pub skipped: Vec<(PathBuf, String)>,
    /// Round-robin positions taken over from `last_reserved_ip.<set>`.
    pub last_reserved: Vec<(usize, IpAddr)>,
}

impl Ipam {
    /// Import host-local's records from `dir` (its `dataDir/<network>`): one file per address,
    /// named by the address and holding `containerID\r\nifname`, or only the container ID in old
    /// versions (those get `default_ifname`, usually `eth0`).
    ///
    /// Decisions: the source directory is only read, never changed; addresses outside the pool's
    /// ranges are imported too (a live container holds them); a file that is not a record is
    /// skipped and reported rather than stopping the migration. Running the import again is
    /// harmless.
    pub fn import_host_local(&self, dir: &Path, default_ifname: &str) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let entries = std::fs::read_dir(dir).map_err(|source| IpamError::Io {
            op: "list",
            path: dir.to_path_buf(),
            cause: source,
        })?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    report.skipped.push((path, e.to_string()));
                    continue;
                }
            };
            if name == "lock" {
                continue;
            }
            if let Some(set) = name.strip_prefix("last_reserved_ip.") {
                match (set.parse::<usize>(), text.trim().parse::<IpAddr>()) {
                    (Ok(i), Ok(ip)) if i < self.pool().sets().len() => {
                        self.store().set_last(i, ip)?;
                        report.last_reserved.push((i, ip));
                    }
                    _ => report
                        .skipped
                        .push((path, "not a usable last_reserved_ip record".into())),
                }
                continue;
            }
            let Ok(ip) = name.parse::<IpAddr>() else {
                report.skipped.push((path, "the file name is not an IP address".into()));
                continue;
            };
            let mut lines = text.split("\r\n").map(str::trim);
            let id = lines.next().unwrap_or_default();
            let ifname = lines.next().filter(|s| !s.is_empty()).unwrap_or(default_ifname);
            let owner = match Owner::new(id, ifname) {
                Ok(o) => o,
                Err(e) => {
                    report.skipped.push((path, e.to_string()));
                    continue;
                }
            };
            self.adopt(ip, &owner, &mut report)?;
        }
        Ok(report)
    }

    /// Give `ip` to `owner` as host-local recorded, unless the store says otherwise.
    fn adopt(&self, ip: IpAddr, owner: &Owner, report: &mut ImportReport) -> Result<()> {
        let store = self.store();
        let _lock = store.lock(owner)?;
        let mut list = self.lookup(owner)?;
        if list.contains(&ip) {
            report.already_held += 1;
            return Ok(());
        }
        if let Some(holder) = store.holder(ip)? {
            report.conflicts.push((ip, holder, owner.clone()));
            return Ok(());
        }
        list.push(ip);
        store.write_owner(owner, &list)?;
        if store.claim(ip, owner)? {
            report.imported.push((ip, owner.clone()));
            return Ok(());
        }
        list.pop();
        store.write_owner(owner, &list)?;
        if let Some(holder) = store.holder(ip)? {
            report.conflicts.push((ip, holder, owner.clone()));
        }
        Ok(())
    }
}
