//! The on-disk store: which address is held by which owner, shared by every process and thread
//! that opens the same directory.
//!
//! Layout of a pool's directory:
//!
//! ```text
//! netkit-ipam      marker ("nk1"): this directory is a netkit store
//! ip/<address>     one file per held address, naming its owner         (claimed atomically)
//! owner/<id>:<if>  one file per owner, listing its addresses           (replaced atomically)
//! lock/<0..63>     flock shards: an owner's operations take shard hash(owner) % 64
//! last.<set>       the last address handed out of each range set (round-robin hint)
//! tmp/             scratch files, renamed into place; leftovers of killed processes are GC'd
//! spare/           released record files, reused as scratch files (creating inodes is slow)
//! ```
//!
//! Lookup and release by owner read one owner file and the address files it names: O(1) in the
//! number of held addresses, never a scan. Owners on different lock shards never wait for each
//! other; claims of one address race safely through `RENAME_NOREPLACE`.
//!
//! The invariant every step keeps, so a process killed at any instant leaves a consistent store:
//! an owner file lists (at least) every address whose file names that owner. Allocation writes
//! the owner file with the candidate address first and claims the address second; release
//! removes address files first and the owner file last. An owner file may therefore list an
//! address it does not hold (an intent the process died before completing); readers confirm
//! each listed address against its address file, and GC drops such stale entries.
//!
//! Durability: records survive the death of any process without fsync (the page cache is the
//! kernel's). With [`StoreOptions::sync`] every change is fsynced (file and directory) so it
//! also survives a power cut, at a cost of milliseconds per change on most disks.

pub(crate) use crate::fsutil::files as fs;
mod record;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::error::Result;
use super::{IpamError, Owner};

const MARKER: &str = "netkit-ipam";
const LOCK_SHARDS: u64 = 64;
/// Scratch files older than this are leftovers of killed processes.
pub const SCRATCH_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);
/// Spare files GC leaves in `spare/`.
const SPARE_KEEP: usize = 256;

/// How a store writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// fsync every change (file and directory): survives power loss, not only process death.
    pub sync: bool,
}

/// One pool's directory of records; see the [module docs](self) for the layout and invariant.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    ip_dir: PathBuf,
    owner_dir: PathBuf,
    lock_dir: PathBuf,
    tmp_dir: PathBuf,
    files: fs::Files,
}

/// An owner file as read: the owner and the addresses it lists (held or intended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerRecord {
    pub(crate) owner: Owner,
    pub(crate) ips: Vec<IpAddr>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> IpamError + 'a {
    move |source| IpamError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Open the store in `dir`, creating it if it does not exist.
    ///
    /// Refuses a directory that holds files but no netkit marker (a host-local data directory,
    /// say), rather than mixing formats.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self> {
        let store = Store {
            root: dir.to_path_buf(),
            ip_dir: dir.join("ip"),
            owner_dir: dir.join("owner"),
            lock_dir: dir.join("lock"),
            tmp_dir: dir.join("tmp"),
            files: fs::Files {
                tmp: dir.join("tmp"),
                spare: dir.join("spare"),
                sync: options.sync,
            },
        };
        let marker = dir.join(MARKER);
        match fs::read(&marker).map_err(io_err("read", &marker))? {
            Some(text) if text == "nk1\n" => {}
            Some(text) => {
                return Err(IpamError::NotAStore {
                    dir: dir.to_path_buf(),
                    reason: format!("marker {MARKER} holds {text:?}, expected version nk1"),
                })
            }
            None => store.init()?,
        }
        // Stores made before `spare/` existed, or an admin who emptied it out: releases move
        // files there, so it must exist (one mkdir, EEXIST as a rule).
        std::fs::create_dir_all(&store.files.spare).map_err(io_err("create directory", &store.files.spare))?;
        Ok(store)
    }

    /// First open: refuse a foreign directory, make the layout, write the marker last.
    fn init(&self) -> Result<()> {
        let root = &self.root;
        std::fs::create_dir_all(root).map_err(io_err("create directory", root))?;
        let foreign = std::fs::read_dir(root)
            .map_err(io_err("list", root))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // Another process may be initialising (or already using) the store right now.
            .find(|n| {
                !["ip", "owner", "lock", "tmp", "spare", MARKER].contains(&n.as_str()) && !n.starts_with("last.")
            });
        if let Some(name) = foreign {
            return Err(IpamError::NotAStore {
                dir: root.clone(),
                reason: format!("it holds {name:?} and no {MARKER} marker (a host-local directory? import it instead)"),
            });
        }
        for d in [
            &self.ip_dir,
            &self.owner_dir,
            &self.lock_dir,
            &self.tmp_dir,
            &self.files.spare,
        ] {
            std::fs::create_dir_all(d).map_err(io_err("create directory", d))?;
        }
        let marker = root.join(MARKER);
        // Several processes may initialise at once: each writes the same marker atomically.
        self.files.replace(&marker, "nk1\n").map_err(io_err("write", &marker))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Check the store is usable: its directories exist and a scratch file can be written and
    /// removed (CNI STATUS).
    pub fn probe(&self) -> Result<()> {
        for d in [&self.ip_dir, &self.owner_dir, &self.lock_dir] {
            if !d.is_dir() {
                return Err(IpamError::NotAStore {
                    dir: self.root.clone(),
                    reason: format!("{} is missing", d.display()),
                });
            }
        }
        let scratch = self.files.scratch("probe\n").map_err(io_err("write", &self.tmp_dir))?;
        self.files
            .retire(&scratch)
            .map(drop)
            .map_err(io_err("remove", &scratch))
    }

    /// Lock the shard `owner` belongs to; every change to an owner's records happens under it.
    pub(crate) fn lock(&self, owner: &Owner) -> Result<fs::Lock> {
        // A hash every build agrees on: processes of different binaries share the store.
        let shard = record::fnv1a(owner.key().as_bytes()) % LOCK_SHARDS;
        let path = self.lock_dir.join(shard.to_string());
        fs::lock(&path).map_err(io_err("lock", &path))
    }

    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.ip_dir.join(ip.to_string())
    }

    fn owner_path(&self, owner: &Owner) -> PathBuf {
        self.owner_dir.join(owner.key())
    }

    /// Who holds `ip`, if anyone.
    pub(crate) fn holder(&self, ip: IpAddr) -> Result<Option<Owner>> {
        read_record(&self.ip_path(ip), |text| record::decode_address(text, ip))
    }

    /// True when some owner holds `ip` (a `stat`, no read).
    pub(crate) fn is_held(&self, ip: IpAddr) -> Result<bool> {
        let path = self.ip_path(ip);
        fs::exists(&path).map_err(io_err("stat", &path))
    }

    /// Claim `ip` for `owner`: `false` when it is already held (by anyone).
    pub(crate) fn claim(&self, ip: IpAddr, owner: &Owner) -> Result<bool> {
        let path = self.ip_path(ip);
        self.files
            .create_exclusive(&path, &record::encode_address(ip, owner))
            .map_err(io_err("create", &path))
    }

    /// Remove the address file of `ip` (the caller checked it names the right owner).
    pub(crate) fn unclaim(&self, ip: IpAddr) -> Result<bool> {
        let path = self.ip_path(ip);
        self.files.retire(&path).map_err(io_err("remove", &path))
    }

    /// The owner file of `owner`, if any.
    pub(crate) fn owner_record(&self, owner: &Owner) -> Result<Option<OwnerRecord>> {
        self.read_owner_file(&self.owner_path(owner))
    }

    fn read_owner_file(&self, path: &Path) -> Result<Option<OwnerRecord>> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        read_record(path, |text| {
            let (owner, ips) = record::decode_owner(text)?;
            if name.as_deref() != Some(owner.key().as_str()) {
                return Err(format!("it names {owner}, not the owner of its file name"));
            }
            Ok(OwnerRecord { owner, ips })
        })
    }

    /// Replace the owner file of `owner` with this list (removing it when the list is empty).
    pub(crate) fn write_owner(&self, owner: &Owner, ips: &[IpAddr]) -> Result<()> {
        let path = self.owner_path(owner);
        if ips.is_empty() {
            return self.files.retire(&path).map(|_| ()).map_err(io_err("remove", &path));
        }
        self.files
            .replace(&path, &record::encode_owner(owner, ips))
            .map_err(io_err("write", &path))
    }

    /// The last address handed out of range set `set` (a hint: a damaged file reads as none).
    pub(crate) fn last(&self, set: usize) -> Option<IpAddr> {
        let path = self.root.join(format!("last.{set}"));
        fs::read(&path).ok().flatten().and_then(|t| t.trim().parse().ok())
    }

    /// Remember the last address handed out of range set `set`.
    ///
    /// Written in place, not through a scratch file: creating an inode is the dearest file
    /// operation (about 1 ms on some virtual disks), and a torn hint only reads as "none".
    pub(crate) fn set_last(&self, set: usize, ip: IpAddr) -> Result<()> {
        let path = self.root.join(format!("last.{set}"));
        fs::overwrite(&path, &format!("{ip}\n"), self.files.sync).map_err(io_err("write", &path))
    }

    /// Every owner file (a scan: for GC, checks and listings only).
    pub(crate) fn owner_records(&self) -> Result<Vec<OwnerRecord>> {
        let mut out = Vec::new();
        for path in list_dir(&self.owner_dir)? {
            if let Some(r) = self.read_owner_file(&path)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every held address with its holder (a scan: for GC, checks and listings only).
    pub(crate) fn held(&self) -> Result<Vec<(IpAddr, Owner)>> {
        let mut out = Vec::new();
        for path in list_dir(&self.ip_dir)? {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let ip: IpAddr = name.parse().map_err(|_| IpamError::Corrupt {
                path: path.clone(),
                reason: "the file name is not an IP address".into(),
            })?;
            if let Some(owner) = self.holder(ip)? {
                out.push((ip, owner));
            }
        }
        Ok(out)
    }

    /// Remove scratch files left by killed processes; returns how many.
    ///
    /// A scratch file lives for microseconds, so one older than [`SCRATCH_MAX_AGE`] is
    /// abandoned. Age, not "is its pid alive": plugins in other PID namespaces share this
    /// directory and their pids mean nothing here.
    pub(crate) fn clean_scratch(&self) -> Result<usize> {
        let mut removed = 0;
        let now = std::time::SystemTime::now();
        for path in list_dir(&self.tmp_dir)? {
            let old = std::fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() > SCRATCH_MAX_AGE)
                .unwrap_or(false);
            if old && fs::remove(&path, false).map_err(io_err("remove", &path))? {
                removed += 1;
            }
        }
        // Keep a bounded number of spares (a mass release can leave thousands).
        for path in list_dir(&self.files.spare)?.iter().skip(SPARE_KEEP) {
            fs::remove(path, false).map_err(io_err("remove", path))?;
        }
        Ok(removed)
    }
}

/// Read and decode a record; `None` when the file does not exist.
///
/// A record is never torn at its name, but a reader holding a file that is retired and recycled
/// under it (see [`fs::Files`]) can read a spare being rewritten. Such a read fails to decode
/// and is retried; damage that persists over the retries is real and reported as
/// [`IpamError::Corrupt`].
fn read_record<T>(path: &Path, decode: impl Fn(&str) -> std::result::Result<T, String>) -> Result<Option<T>> {
    let mut tries = 0;
    loop {
        let Some(text) = fs::read(path).map_err(io_err("read", path))? else {
            return Ok(None);
        };
        match decode(&text) {
            Ok(v) => return Ok(Some(v)),
            Err(_) if tries < 3 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(reason) => {
                return Err(IpamError::Corrupt {
                    path: path.to_path_buf(),
                    reason,
                })
            }
        }
    }
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("list", dir))? {
        out.push(entry.map_err(io_err("list", dir))?.path());
    }
    out.sort();
    Ok(out)
}
