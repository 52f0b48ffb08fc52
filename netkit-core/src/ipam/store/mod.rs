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
//! lock/quarantine  flock: taken to move a damaged address file aside
//! last.<set>       the last address handed out of each range set (round-robin hint)
//! releases         one byte appended per released address (a change counter, see below)
//! tmp/             scratch files, renamed into place; leftovers of killed processes are GC'd
//! spare/           released record files, reused as scratch files (creating inodes is slow)
//! quarantine/      damaged records moved aside: <unique>.<ip|owner>/<original name>
//! ```
//!
//! The store is root's: directories it creates are 0700 and files 0600. The store directory and
//! each subdirectory are opened once, as descriptors, and every file is named relative to one
//! of them without following symbolic links (see `fsutil::dir`): a link planted in the store is
//! never read or written through.
//!
//! An allocation that walks a range set without finding a free address reports the pool
//! exhausted only if no address was released during its walk: `releases` grows by one byte
//! with every release (and is emptied when it reaches 64 KiB; any change of its size counts),
//! and a walk during which its size changed is made again. Without it, a walk over a nearly
//! full pool could pass an address just before its holder released it and miss the only free
//! one while others churn.
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
//! # Damaged records
//!
//! A record that stays unreadable over a few tries (a power cut without
//! [`StoreOptions::sync`] can leave an empty or truncated file; a record that is being replaced
//! can read as garbage for a moment, which the retries absorb) is moved into `quarantine/` with
//! a warning in the log (the `log` crate), and the store goes on without it. An owner record is
//! moved aside under its owner's lock and rebuilt from the address files that name the owner
//! (a scan of `ip/`, only in this case); a damaged address file is moved aside under
//! `lock/quarantine` and its address counts as free again.
//!
//! # Locks
//!
//! Locks are waited for at most [`StoreOptions::lock_timeout`]; then the operation fails with
//! [`IpamError::LockTimeout`].
//!
//! # Durability
//!
//! Records survive the death of any process without fsync (the page cache is the
//! kernel's). With [`StoreOptions::sync`] every change is fsynced (file and directory) so it
//! also survives a power cut, at a cost of milliseconds per change on most disks.

pub(crate) use crate::fsutil::files as fs;
mod record;

use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::error::Result;
use super::{IpamError, Owner};
use crate::fsutil::{self, dir::Dir};

const MARKER: &str = "netkit-ipam";
/// The release counter's file (see the module docs).
const RELEASES: &str = "releases";
const LOCK_SHARDS: u64 = 64;
/// The lock taken to move a damaged address file aside (`lock/quarantine`).
const QUARANTINE_LOCK: &str = "quarantine";
/// Scratch files older than this are leftovers of killed processes.
pub const SCRATCH_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);
/// Spare files GC leaves in `spare/`.
const SPARE_KEEP: usize = 256;
/// The largest record read: records are one line; anything longer is damaged.
const MAX_RECORD: u64 = 64 * 1024;
/// Reads of a record that fails to decode before it counts as damaged.
const READ_TRIES: u32 = 4;

/// How a store writes and waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// fsync every change (file and directory): survives power loss, not only process death.
    pub sync: bool,
    /// The longest wait for a lock (an owner's shard) before the operation fails with
    /// [`IpamError::LockTimeout`]. Default 30 s.
    pub lock_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            sync: false,
            lock_timeout: fsutil::DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// One pool's directory of records; see the [module docs](self) for the layout and invariant.
#[derive(Debug, Clone)]
pub struct Store {
    root_path: PathBuf,
    root: Arc<Dir>,
    ip_dir: Arc<Dir>,
    owner_dir: Arc<Dir>,
    lock_dir: Arc<Dir>,
    files: fs::Files,
    options: StoreOptions,
}

/// An owner file as read: the owner and the addresses it lists (held or intended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerRecord {
    pub(crate) owner: Owner,
    pub(crate) ips: Vec<IpAddr>,
}

/// A record as read.
enum Read<T> {
    Absent,
    Found(T),
    /// Still unreadable after [`READ_TRIES`] reads: why.
    Damaged(String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> IpamError + 'a {
    move |source| IpamError::Io {
        op,
        path: path.to_path_buf(),
        cause: source,
    }
}

impl Store {
    /// Open the store in `dir`, creating it if it does not exist.
    ///
    /// Refuses a directory that holds files but no netkit marker (a host-local data directory,
    /// say), rather than mixing formats, and one whose store directory or subdirectories are
    /// symbolic links or not directories.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self> {
        let root = Dir::root(dir, true).map_err(io_err("open directory", dir))?;
        let marker = root.join(MARKER);
        let fresh = match root.read(MARKER, 64) {
            Ok(Some(text)) if text == b"nk1\n" => false,
            Ok(Some(text)) => {
                return Err(IpamError::NotAStore {
                    dir: dir.to_path_buf(),
                    reason: format!(
                        "marker {MARKER} holds {:?}, expected version nk1",
                        String::from_utf8_lossy(&text)
                    ),
                })
            }
            Ok(None) => true,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(IpamError::NotAStore {
                    dir: dir.to_path_buf(),
                    reason: e.to_string(),
                })
            }
            Err(e) => return Err(io_err("read", &marker)(e)),
        };
        if fresh {
            refuse_foreign(&root)?;
        }
        // `spare/` is made in any case: stores made before it existed, or an admin who emptied
        // it out (releases move files there, so it must exist).
        let sub = |name: &str, create: bool| {
            root.sub(name, create)
                .map(Arc::new)
                .map_err(io_err("open directory", &root.join(name)))
        };
        let files = fs::Files {
            tmp: sub("tmp", fresh)?,
            spare: sub("spare", true)?,
            sync: options.sync,
        };
        let store = Store {
            root_path: dir.to_path_buf(),
            ip_dir: sub("ip", fresh)?,
            owner_dir: sub("owner", fresh)?,
            lock_dir: sub("lock", fresh)?,
            root: Arc::new(root),
            files,
            options,
        };
        if fresh {
            // The marker last. Several processes may initialise at once: each writes the same
            // marker atomically.
            store
                .files
                .replace(&store.root, MARKER, "nk1\n")
                .map_err(io_err("write", &marker))?;
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.root_path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// Check the store is usable: its directories exist and a scratch file can be written and
    /// removed (CNI STATUS).
    pub fn probe(&self) -> Result<()> {
        for d in ["ip", "owner", "lock", "tmp", "spare"] {
            let path = self.root.join(d);
            let st = self.root.stat(d).map_err(io_err("stat", &path))?;
            if !st.as_ref().is_some_and(fsutil::dir::is_dir) {
                return Err(IpamError::NotAStore {
                    dir: self.root_path.clone(),
                    reason: format!("{} is missing or not a directory", path.display()),
                });
            }
        }
        let scratch = self
            .files
            .scratch("probe\n")
            .map_err(io_err("write", self.files.tmp.path()))?;
        self.files
            .retire(&self.files.tmp, &scratch)
            .map(drop)
            .map_err(io_err("remove", &self.files.tmp.join(&scratch)))
    }

    /// Lock the shard `owner` belongs to; every change to an owner's records happens under it.
    /// A thread that holds it already gets a nested guard.
    pub(crate) fn lock(&self, owner: &Owner) -> Result<fs::Lock> {
        // A hash every build agrees on: processes of different binaries share the store.
        let shard = record::fnv1a(owner.key().as_bytes()) % LOCK_SHARDS;
        self.lock_named(&shard.to_string())
    }

    fn lock_named(&self, name: &str) -> Result<fs::Lock> {
        fs::lock(&self.lock_dir, name, self.options.lock_timeout).map_err(|source| {
            let path = self.lock_dir.join(name);
            match source.kind() {
                std::io::ErrorKind::TimedOut => IpamError::LockTimeout {
                    path,
                    waited: self.options.lock_timeout,
                },
                _ => IpamError::Io {
                    op: "lock",
                    path,
                    cause: source,
                },
            }
        })
    }

    /// Who holds `ip`, if anyone. A damaged address file is moved to `quarantine/` (the
    /// address is then free).
    pub(crate) fn holder(&self, ip: IpAddr) -> Result<Option<Owner>> {
        let name = ip.to_string();
        let decode = |text: &str| record::decode_address(text, ip);
        match read_record(&self.ip_dir, &name, decode)? {
            Read::Absent => Ok(None),
            Read::Found(o) => Ok(Some(o)),
            Read::Damaged(_) => {
                // Only a quarantine removes a damaged address file; take turns doing it, and
                // look again once it is our turn.
                let _lock = self.lock_named(QUARANTINE_LOCK)?;
                let reason = match read_record(&self.ip_dir, &name, decode)? {
                    Read::Absent => return Ok(None),
                    Read::Found(o) => return Ok(Some(o)),
                    Read::Damaged(reason) => reason,
                };
                let then = format!("{ip} counts as free");
                let Some(moved) = self.quarantine(&self.ip_dir, "ip", &name, &reason, &then)? else {
                    return Ok(None);
                };
                // What was moved must still be the damaged file (not a record written at the
                // name since): if it reads fine now, it goes back.
                let path = moved.path();
                let bytes = moved.read(MAX_RECORD).unwrap_or_default();
                if let Some(owner) = std::str::from_utf8(&bytes).ok().and_then(|t| decode(t).ok()) {
                    if moved.restore(&self.ip_dir).map_err(io_err("restore", &path))? {
                        return Ok(Some(owner));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Move `dir/name` into `quarantine/` with one warning in the log (`then`: what the store
    /// does about it); `None` when it is gone.
    fn quarantine(
        &self,
        dir: &Dir,
        label: &str,
        name: &str,
        reason: &str,
        then: &str,
    ) -> Result<Option<fsutil::Quarantined>> {
        let path = dir.join(name);
        let moved =
            fsutil::quarantine(&self.root, dir, label, OsStr::new(name)).map_err(io_err("quarantine", &path))?;
        if let Some(m) = &moved {
            log::warn!(
                "ipam store: damaged record {} ({reason}) moved to {}; {then}",
                path.display(),
                m.path().display()
            );
        }
        Ok(moved)
    }

    /// Quarantine a directory entry that is no record at all (a name no writer uses).
    fn quarantine_stray(&self, dir: &Dir, label: &str, name: &OsStr, reason: &str) -> Result<()> {
        let _lock = self.lock_named(QUARANTINE_LOCK)?;
        let path = dir.join(name);
        if let Some(m) = fsutil::quarantine(&self.root, dir, label, name).map_err(io_err("quarantine", &path))? {
            log::warn!(
                "ipam store: {} is not a record ({reason}); moved to {}",
                path.display(),
                m.path().display()
            );
        }
        Ok(())
    }

    /// True when some owner holds `ip` (a `stat`, no read).
    pub(crate) fn is_held(&self, ip: IpAddr) -> Result<bool> {
        let name = ip.to_string();
        fs::exists(&self.ip_dir, &name).map_err(io_err("stat", &self.ip_dir.join(&name)))
    }

    /// Claim `ip` for `owner`: `false` when it is already held (by anyone).
    pub(crate) fn claim(&self, ip: IpAddr, owner: &Owner) -> Result<bool> {
        let name = ip.to_string();
        self.files
            .create_exclusive(&self.ip_dir, &name, &record::encode_address(ip, owner))
            .map_err(io_err("create", &self.ip_dir.join(&name)))
    }

    /// Remove the address file of `ip` (the caller checked it names the right owner), and
    /// count the release in `releases` (see the module docs).
    pub(crate) fn unclaim(&self, ip: IpAddr) -> Result<bool> {
        let name = ip.to_string();
        let removed = self
            .files
            .retire(&self.ip_dir, &name)
            .map_err(io_err("remove", &self.ip_dir.join(&name)))?;
        if removed {
            self.count_release()?;
        }
        Ok(removed)
    }

    /// Append one byte to `releases` (one `O_APPEND` write, atomic among processes); empty it
    /// when it reaches 64 KiB.
    fn count_release(&self) -> Result<()> {
        use std::io::Write as _;
        let path = || self.root.join(RELEASES);
        let mut f = self.root.open_append(RELEASES).map_err(io_err("open", &path()))?;
        f.write_all(b".").map_err(io_err("write", &path()))?;
        let len = f.metadata().map_err(io_err("stat", &path()))?.len();
        if len >= 64 * 1024 {
            f.set_len(0).map_err(io_err("truncate", &path()))?;
        }
        Ok(())
    }

    /// The release counter (the size of `releases`): an allocation compares it before and
    /// after a walk that found nothing free.
    pub(crate) fn releases(&self) -> Result<u64> {
        Ok(self
            .root
            .stat(RELEASES)
            .map_err(io_err("stat", &self.root.join(RELEASES)))?
            .map_or(0, |st| st.st_size as u64))
    }

    /// The owner file of `owner`, if any. A damaged one is moved to `quarantine/` under the
    /// owner's lock (taken here unless this thread holds it) and rebuilt from the address
    /// files that name the owner.
    pub(crate) fn owner_record(&self, owner: &Owner) -> Result<Option<OwnerRecord>> {
        let key = owner.key();
        match self.read_owner_file(&key)? {
            Read::Absent => return Ok(None),
            Read::Found(r) => return Ok(Some(r)),
            Read::Damaged(_) => {}
        }
        let _lock = self.lock(owner)?;
        let reason = match self.read_owner_file(&key)? {
            Read::Absent => return Ok(None),
            Read::Found(r) => return Ok(Some(r)),
            Read::Damaged(reason) => reason,
        };
        // What the owner holds: the address files naming it (they change only under this
        // owner's lock, held here).
        let mut ips = Vec::new();
        for name in self.ip_dir.names().map_err(io_err("list", self.ip_dir.path()))? {
            let Some(ip) = name.to_str().and_then(|n| n.parse::<IpAddr>().ok()) else {
                continue;
            };
            if ip.to_string().as_str() == name && self.holder(ip)?.as_ref() == Some(owner) {
                ips.push(ip);
            }
        }
        let then = format!("rebuilt from the address files naming {owner}: {ips:?}");
        self.quarantine(&self.owner_dir, "owner", &key, &reason, &then)?;
        self.write_owner(owner, &ips)?;
        Ok((!ips.is_empty()).then(|| OwnerRecord {
            owner: owner.clone(),
            ips,
        }))
    }

    fn read_owner_file(&self, key: &str) -> Result<Read<OwnerRecord>> {
        read_record(&self.owner_dir, key, |text| {
            let (owner, ips) = record::decode_owner(text)?;
            if owner.key() != key {
                return Err(format!("it names {owner}, not the owner of its file name"));
            }
            Ok(OwnerRecord { owner, ips })
        })
    }

    /// Replace the owner file of `owner` with this list (removing it when the list is empty).
    pub(crate) fn write_owner(&self, owner: &Owner, ips: &[IpAddr]) -> Result<()> {
        let key = owner.key();
        let path = || self.owner_dir.join(&key);
        if ips.is_empty() {
            return self
                .files
                .retire(&self.owner_dir, &key)
                .map(|_| ())
                .map_err(io_err("remove", &path()));
        }
        self.files
            .replace(&self.owner_dir, &key, &record::encode_owner(owner, ips))
            .map_err(io_err("write", &path()))
    }

    /// The last address handed out of range set `set` (a hint: a damaged file reads as none).
    pub(crate) fn last(&self, set: usize) -> Option<IpAddr> {
        let text = self.root.read(format!("last.{set}"), 128).ok().flatten()?;
        String::from_utf8_lossy(&text).trim().parse().ok()
    }

    /// Remember the last address handed out of range set `set`.
    ///
    /// Written in place, not through a scratch file: creating an inode is the dearest file
    /// operation (about 1 ms on some virtual disks), and a torn hint only reads as "none".
    pub(crate) fn set_last(&self, set: usize, ip: IpAddr) -> Result<()> {
        let name = format!("last.{set}");
        self.files
            .overwrite(&self.root, &name, &format!("{ip}\n"))
            .map_err(io_err("write", &self.root.join(&name)))
    }

    /// Every owner file (a scan: for GC, checks and listings only). Damaged ones are
    /// quarantined and rebuilt (see [`Store::owner_record`]); entries whose name is no owner are
    /// quarantined.
    pub(crate) fn owner_records(&self) -> Result<Vec<OwnerRecord>> {
        let mut out = Vec::new();
        for name in self.owner_dir.names().map_err(io_err("list", self.owner_dir.path()))? {
            let Some(owner) = name.to_str().and_then(owner_of_key) else {
                self.quarantine_stray(
                    &self.owner_dir,
                    "owner",
                    &name,
                    "the name is not <container ID>:<ifname>",
                )?;
                continue;
            };
            if let Some(r) = self.owner_record(&owner)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every held address with its holder (a scan: for GC, checks and listings only). Damaged
    /// address files, and entries whose name is no address, are quarantined.
    pub(crate) fn held(&self) -> Result<Vec<(IpAddr, Owner)>> {
        let mut out = Vec::new();
        for name in self.ip_dir.names().map_err(io_err("list", self.ip_dir.path()))? {
            let ip = name.to_str().and_then(|n| n.parse::<IpAddr>().ok());
            let Some(ip) = ip.filter(|ip| ip.to_string().as_str() == name) else {
                self.quarantine_stray(&self.ip_dir, "ip", &name, "the name is not an IP address")?;
                continue;
            };
            if let Some(owner) = self.holder(ip)? {
                out.push((ip, owner));
            }
        }
        Ok(out)
    }

    /// Every held address, from the names of the address files alone (no record read; a name
    /// that is no address is skipped, not quarantined): cheap enough to run at every change.
    pub fn held_addresses(&self) -> Result<Vec<IpAddr>> {
        Ok(self
            .ip_dir
            .names()
            .map_err(io_err("list", self.ip_dir.path()))?
            .iter()
            .filter_map(|n| n.to_str()?.parse().ok())
            .collect())
    }

    /// Remove scratch files left by killed processes; returns how many.
    ///
    /// A scratch file lives for microseconds, so one older than [`SCRATCH_MAX_AGE`] is
    /// abandoned. Age, not "is its pid alive": plugins in other PID namespaces share this
    /// directory and their pids mean nothing here. (A spare taken out of `spare/` gets fresh
    /// times as it is taken, so it is never mistaken for an old scratch file.)
    pub(crate) fn clean_scratch(&self) -> Result<usize> {
        let mut removed = 0;
        let now = SystemTime::now();
        let tmp = &self.files.tmp;
        for name in tmp.names().map_err(io_err("list", tmp.path()))? {
            let Some(name) = name.to_str() else { continue };
            let old = tmp
                .stat(name)
                .ok()
                .flatten()
                .and_then(|st| {
                    let secs = u64::try_from(st.st_mtime).ok()?;
                    let mtime = SystemTime::UNIX_EPOCH + Duration::new(secs, st.st_mtime_nsec as u32);
                    Some(now.duration_since(mtime).unwrap_or_default() > SCRATCH_MAX_AGE)
                })
                .unwrap_or(false);
            if old && fs::remove(tmp, name, false).map_err(io_err("remove", &tmp.join(name)))? {
                removed += 1;
            }
        }
        // Keep a bounded number of spares (a mass release can leave thousands).
        let spare = &self.files.spare;
        for name in spare
            .names()
            .map_err(io_err("list", spare.path()))?
            .iter()
            .skip(SPARE_KEEP)
        {
            let Some(name) = name.to_str() else { continue };
            fs::remove(spare, name, false).map_err(io_err("remove", &spare.join(name)))?;
        }
        Ok(removed)
    }
}

/// The owner an owner file's name (`<container ID>:<ifname>`) stands for.
fn owner_of_key(key: &str) -> Option<Owner> {
    let (id, ifname) = key.split_once(':')?;
    Owner::new(id, ifname).ok().filter(|o| o.key() == key)
}

/// First open: refuse a foreign directory (the layout is made by the caller, the marker last).
fn refuse_foreign(root: &Dir) -> Result<()> {
    let names = root.names().map_err(io_err("list", root.path()))?;
    let foreign = names
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        // Another process may be initialising (or already using) the store right now.
        .find(|n| {
            !["ip", "owner", "lock", "tmp", "spare", "quarantine", RELEASES, MARKER].contains(&n.as_str())
                && !n.starts_with("last.")
        });
    match foreign {
        Some(name) => Err(IpamError::NotAStore {
            dir: root.path().to_path_buf(),
            reason: format!("it holds {name:?} and no {MARKER} marker (a host-local directory? import it instead)"),
        }),
        None => Ok(()),
    }
}

/// Read and decode the record `dir/name`.
///
/// A record is never torn at its name, but a reader holding a file that is retired and recycled
/// under it (see [`fs::Files`]) can read a spare being rewritten. Such a read fails to decode
/// and is retried; damage that persists over the retries is real: [`Read::Damaged`]. A link, a
/// non-regular file or an oversized file at the name is damage too (never read through).
fn read_record<T>(dir: &Dir, name: &str, decode: impl Fn(&str) -> std::result::Result<T, String>) -> Result<Read<T>> {
    let mut tries = 1;
    loop {
        let outcome = match dir.read(name, MAX_RECORD) {
            Ok(None) => return Ok(Read::Absent),
            Ok(Some(bytes)) => match std::str::from_utf8(&bytes) {
                Ok(text) => decode(text),
                Err(_) => Err("not UTF-8 text".to_string()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(e.to_string()),
            Err(e) => return Err(io_err("read", &dir.join(name))(e)),
        };
        match outcome {
            Ok(v) => return Ok(Read::Found(v)),
            Err(_) if tries < READ_TRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(reason) => return Ok(Read::Damaged(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::testlog;

    /// Each damaged record is moved aside with exactly one warning naming the file, where it
    /// went and why.
    #[test]
    fn a_damaged_record_is_quarantined_with_one_log_line() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), StoreOptions::default()).unwrap();
        let owner = Owner::new("c1", "eth0").unwrap();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        store.write_owner(&owner, &[ip]).unwrap();
        assert!(store.claim(ip, &owner).unwrap());
        std::fs::write(d.path().join("owner/c1:eth0"), "").unwrap();

        testlog::start();
        let rec = store.owner_record(&owner).unwrap().expect("rebuilt");
        assert_eq!(rec.ips, [ip]);
        let lines = testlog::lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        let moved = std::fs::read_dir(d.path().join("quarantine"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("c1:eth0");
        assert!(moved.is_file());
        for part in [
            "WARN",
            &d.path().join("owner/c1:eth0").display().to_string(),
            &moved.display().to_string(),
            "no end of line",
            "10.0.0.2",
        ] {
            assert!(line.contains(part), "{part:?} missing from {line}");
        }
        // The record is whole again: reading it logs nothing.
        testlog::start();
        assert_eq!(store.owner_record(&owner).unwrap(), Some(rec));
        assert!(testlog::lines().is_empty());
    }
}
