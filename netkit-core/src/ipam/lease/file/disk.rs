//! The file store's directory: its lock, crash-safe writes and reading leases back.
//!
//! ```text
//! DIR/plan.json                 the plan: {"network": "10.244.0.0/16", "subnet_prefix": 24}
//! DIR/lock                      empty; flock(2)ed exclusively by every writer
//! DIR/leases/10.244.1.0-24.json one lease per subnet (see `Lease::to_json`)
//! DIR/leases/.tmp-PID-N         a write in progress (or left by a writer killed mid-write)
//! ```
//!
//! Every file is written to a temporary name, fsynced, renamed over its final name and the
//! directory fsynced, so a reader (or a writer after `kill -9`) sees the old content or the
//! new, never a mix. Readers take no lock. The file primitives are `crate::fsutil::paths`,
//! shared with the object store.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use nix::fcntl::Flock;

use super::super::record::{parse_subnet_key, subnet_key};
use super::super::{Lease, LeaseError, SubnetPlan};
use crate::fsutil::paths;

/// The paths of one store directory.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    pub(super) dir: PathBuf,
}

impl Layout {
    pub(super) fn plan_file(&self) -> PathBuf {
        self.dir.join("plan.json")
    }

    pub(super) fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }

    pub(super) fn leases_dir(&self) -> PathBuf {
        self.dir.join("leases")
    }

    pub(super) fn lease_file(&self, subnet: IpNetwork) -> PathBuf {
        self.leases_dir().join(format!("{}.json", subnet_key(subnet)))
    }

    /// Create the directories if needed.
    pub(super) fn create(&self) -> Result<(), LeaseError> {
        let leases = self.leases_dir();
        fs::create_dir_all(&leases).map_err(|e| LeaseError::io("create directory", leases, e))
    }

    /// Take the store's exclusive lock; it is released when the guard drops (or the process
    /// dies). Each call opens the lock file anew, so threads of one process exclude each other
    /// as processes do.
    pub(super) fn lock(&self) -> Result<Flock<File>, LeaseError> {
        paths::lock(&self.lock_file()).map_err(LeaseError::from_path)
    }

    /// Remove temporary files left by writers that died mid-write. Call with the lock held:
    /// then no write is in progress.
    pub(super) fn remove_stale_temps(&self) -> Result<(), LeaseError> {
        paths::remove_stale_temps(&self.leases_dir()).map_err(LeaseError::from_path)
    }

    /// Every lease file, keyed by the subnet's number in `plan`; expired ones included.
    pub(super) fn read_leases(&self, plan: &SubnetPlan) -> Result<BTreeMap<u128, Lease>, LeaseError> {
        let mut leases = BTreeMap::new();
        for entry in read_dir(&self.leases_dir())? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let corrupt = |reason: String| LeaseError::Corrupt {
                location: path.display().to_string(),
                reason,
            };
            let subnet =
                parse_subnet_key(stem).ok_or_else(|| corrupt("the file name does not name a subnet".to_string()))?;
            let index = plan
                .index_of(subnet)
                .ok_or_else(|| corrupt(format!("{subnet} is not a subnet of {plan}")))?;
            if let Some(lease) = read_lease_file(&path)? {
                if lease.subnet != subnet {
                    return Err(corrupt(format!(
                        "the file is named for {subnet} but holds {}",
                        lease.subnet
                    )));
                }
                leases.insert(index, lease);
            }
        }
        Ok(leases)
    }

    /// The lease file of `subnet`, if there is one.
    pub(super) fn read_lease(&self, subnet: IpNetwork) -> Result<Option<Lease>, LeaseError> {
        let path = self.lease_file(subnet);
        let lease = read_lease_file(&path)?;
        if let Some(l) = &lease {
            if l.subnet != subnet {
                return Err(LeaseError::Corrupt {
                    location: path.display().to_string(),
                    reason: format!("the file is named for {subnet} but holds {}", l.subnet),
                });
            }
        }
        Ok(lease)
    }

    /// Store `lease` (crash-safe).
    pub(super) fn write_lease(&self, lease: &Lease) -> Result<(), LeaseError> {
        write_atomic(&self.leases_dir(), &self.lease_file(lease.subnet), &lease.to_json())
    }

    /// Remove the lease file of `subnet`; a missing file is fine.
    pub(super) fn remove_lease(&self, subnet: IpNetwork) -> Result<(), LeaseError> {
        paths::remove_durably(&self.lease_file(subnet))
            .map(drop)
            .map_err(LeaseError::from_path)
    }
}

/// Read and parse one lease file; `None` when it does not exist.
fn read_lease_file(path: &Path) -> Result<Option<Lease>, LeaseError> {
    match paths::read(path).map_err(LeaseError::from_path)? {
        Some(bytes) => Lease::from_json(&bytes, &path.display().to_string()).map(Some),
        None => Ok(None),
    }
}

/// Replace `path` (in directory `dir`) with `bytes`, crash-safely (see [`paths::write_atomic`]).
pub(super) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), LeaseError> {
    paths::write_atomic(dir, path, bytes).map_err(LeaseError::from_path)
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, LeaseError> {
    paths::read_dir(dir).map_err(LeaseError::from_path)
}
