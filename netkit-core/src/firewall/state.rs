//! The wanted state, kept on disk so every process (a CNI plugin runs once per call) sees what
//! every owner holds, `reconcile` can re-apply it after a flush, and GC knows the owners.
//!
//! Layout (version 2):
//!
//! ```text
//! id                       this state directory's identity: 16 lowercase hex digits, random,
//!                          made by the first open
//! lock                     flock: one change at a time in this namespace (each change is short)
//! owner/<owner>.json       one owner's Rules
//! service/<service name>   index: the owner of each service name (content: the owner)
//! holders/<hex key>/<owner>
//!                          index: holders of an object several may hold (a network, an isolated
//!                          pair, a masquerade source), one file per holder (content: a detail,
//!                          e.g. the masquerade's network); the kernel holds the object once
//! ports/<proto>.<port>     index: which owners map this host port (conflict checks without a
//!                          scan); lines of `<hex owner>\t<host ip or *>\t<4|6>`
//! tmp/, spare/             scratch files, and released files kept for reuse (see fsutil::files)
//! quarantine/              damaged or invalid files moved aside: <unique>.<where>/<name>
//! ```
//!
//! Owner and service names are written as file names with every `/` replaced by `+` (neither
//! may hold a `+`, so the mapping is reversible); owners are at most
//! [`MAX_OWNER_LEN`](super::MAX_OWNER_LEN) bytes, so `<owner>.json` fits a file name. The
//! service names `.` and `..` are written `%2e` and `%2e%2e` (service names hold no `%`).
//!
//! The first layout (netkit before 0.3: `owners/<hex owner>.json`, `services/<hex name>`,
//! `shared/<hex key>/<hex owner>` and, older still, a `shared/<hex key>` file of
//! `<hex owner>\t<detail>` lines) is migrated by [`StateDir::open`] under the lock, file by file
//! with atomic renames, so an interrupted migration is finished by the next open; the old
//! directories are then removed.
//!
//! Everything is root's: directories are 0700, files 0600. The state directory and its
//! subdirectories are opened once as descriptors and every file is named relative to one of
//! them without following symbolic links (see `fsutil::dir`).
//!
//! Nothing read back is trusted: an owner file must deserialize into [`Rules`] that validate,
//! and name a valid owner; index entries must decode and name valid owners (and services). A
//! file that does not — damaged by a power cut, or planted — is moved to `quarantine/` under
//! the lock with a warning in the log (the `log` crate) and treated as absent, so it never
//! turns into a rule.
//!
//! Order of writes, so a process killed at any instant leaves nothing unaccounted for: an owner's
//! file is written (intent) before the kernel is changed, and removed after the kernel objects
//! are gone. A kernel object therefore always has an owner file that names it; `teardown` and GC
//! remove kernel objects idempotently.

use std::ffi::OsStr;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;

use super::error::Result;
use super::model::{check_owner, PortMapping, Rules};
use super::FirewallError;
use crate::fsutil::{self, dir::Dir, files};

const OWNER_DIR: &str = "owner";
const SERVICE_DIR: &str = "service";
const HOLDERS_DIR: &str = "holders";
const PORTS_DIR: &str = "ports";
const LEGACY_OWNERS: &str = "owners";
const LEGACY_SERVICES: &str = "services";
const LEGACY_SHARED: &str = "shared";
const ID_FILE: &str = "id";
/// The largest state file read; anything larger is not netkit's.
const MAX_STATE_FILE: u64 = 16 << 20;

/// The state directory of one firewall (one namespace).
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    root: Arc<Dir>,
    owners: Arc<Dir>,
    services: Arc<Dir>,
    holders: Arc<Dir>,
    ports: Arc<Dir>,
    files: files::Files,
    lock_timeout: Duration,
    id: String,
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
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

/// A name as one file name component: every `/` written as `+`.
fn escape(name: &str) -> String {
    name.replace('/', "+")
}

fn unescape(name: &str) -> String {
    name.replace('+', "/")
}

/// The file of an owner's rules.
fn owner_file(owner: &str) -> String {
    format!("{}.json", escape(owner))
}

/// The owner a file name of `owner/` stands for, when it is one netkit writes.
fn owner_of_file(name: &OsStr) -> Option<String> {
    let owner = unescape(name.to_str()?.strip_suffix(".json")?);
    (check_owner(&owner).is_ok() && OsStr::new(&owner_file(&owner)) == name).then_some(owner)
}

/// The owner a holder entry's file name stands for.
fn owner_of_holder(name: &OsStr) -> Option<String> {
    let owner = unescape(name.to_str()?);
    (check_owner(&owner).is_ok() && OsStr::new(&escape(&owner)) == name).then_some(owner)
}

/// The file of a service name's index entry.
fn service_file(name: &str) -> String {
    match name {
        "." => "%2e".into(),
        ".." => "%2e%2e".into(),
        n => escape(n),
    }
}

/// The rule [`Service::validate`](super::Service::validate) applies to names.
fn valid_service_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
}

fn text(bytes: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

/// An owner file: rules that deserialize and validate.
fn decode_rules(bytes: &[u8]) -> std::result::Result<Rules, String> {
    let rules: Rules = serde_json::from_str(text(bytes)?).map_err(|e| format!("not netkit's rules: {e}"))?;
    rules.validate().map_err(|e| e.to_string())?;
    Ok(rules)
}

/// A service index entry: the owner's name.
fn decode_owner_name(bytes: &[u8]) -> std::result::Result<String, String> {
    let owner = text(bytes)?;
    check_owner(owner).map_err(|e| e.to_string())?;
    Ok(owner.to_string())
}

/// A holder entry's detail: nothing, or a network.
fn decode_detail(bytes: &[u8]) -> std::result::Result<String, String> {
    let detail = text(bytes)?;
    if !detail.is_empty() && detail.parse::<IpNetwork>().is_err() {
        return Err(format!("detail {detail:?} is neither empty nor a network"));
    }
    Ok(detail.to_string())
}

/// A port index file.
fn decode_claims(bytes: &[u8]) -> std::result::Result<Vec<PortClaim>, String> {
    text(bytes)?
        .lines()
        .map(|line| {
            let bad = || format!("bad line {line:?}");
            let mut f = line.split('\t');
            let (owner, ip, fam, rest) = (f.next(), f.next(), f.next(), f.next());
            let owner = owner
                .and_then(unhex)
                .filter(|o| check_owner(o).is_ok())
                .ok_or_else(bad)?;
            let host_ip: Option<IpAddr> = match ip {
                Some("*") => None,
                Some(s) => Some(s.parse().map_err(|_| bad())?),
                None => return Err(bad()),
            };
            let ipv4 = match fam {
                Some("4") => true,
                Some("6") => false,
                _ => return Err(bad()),
            };
            if rest.is_some() || host_ip.is_some_and(|i| i.is_ipv4() != ipv4) {
                return Err(bad());
            }
            Ok(PortClaim { owner, host_ip, ipv4 })
        })
        .collect()
}

/// The `id` file: 16 lowercase hex digits and a newline.
fn decode_id(bytes: &[u8]) -> std::result::Result<String, String> {
    let id = text(bytes)?.strip_suffix('\n').unwrap_or_default();
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err("not 16 lowercase hex digits".into());
    }
    Ok(id.to_string())
}

fn state_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FirewallError + 'a {
    FirewallError::state(op, path)
}

impl StateDir {
    /// Open (creating) the directory, migrating a first-layout directory (see the module docs),
    /// with the default lock wait (30 s).
    pub(crate) fn open(root: &Path) -> Result<Self> {
        Self::open_with_lock_timeout(root, fsutil::DEFAULT_LOCK_TIMEOUT)
    }

    /// [`StateDir::open`] with locks waited for at most `lock_timeout`.
    pub(crate) fn open_with_lock_timeout(root_path: &Path, lock_timeout: Duration) -> Result<Self> {
        let root = Dir::root(root_path, true).map_err(state_err("open directory", root_path))?;
        let sub = |name: &str| {
            root.sub(name, true)
                .map(Arc::new)
                .map_err(|e| FirewallError::state("open directory", &root.join(name))(e))
        };
        let files = files::Files {
            tmp: sub("tmp")?,
            spare: sub("spare")?,
            sync: false,
        };
        let mut dir = StateDir {
            owners: sub(OWNER_DIR)?,
            services: sub(SERVICE_DIR)?,
            holders: sub(HOLDERS_DIR)?,
            ports: sub(PORTS_DIR)?,
            root: Arc::new(root),
            files,
            lock_timeout,
            id: String::new(),
        };
        if dir.has_legacy()? {
            let _lock = dir.lock()?;
            dir.migrate()?;
        }
        dir.id = dir.load_id()?;
        Ok(dir)
    }

    /// Wait at most `timeout` for the lock from now on (the tests shorten it).
    #[cfg(test)]
    pub(crate) fn set_lock_timeout(&mut self, timeout: Duration) {
        self.lock_timeout = timeout;
    }

    /// This state directory's identity: 16 lowercase hex digits, random, the same for every
    /// process and every open of the directory.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Take the namespace's change lock (nested when this thread holds it already). After
    /// the lock wait: [`FirewallError::LockTimeout`].
    pub(crate) fn lock(&self) -> Result<fsutil::Lock> {
        fsutil::lock(&self.root, "lock", self.lock_timeout).map_err(|source| {
            let path = self.root.join("lock");
            match source.kind() {
                io::ErrorKind::TimedOut => FirewallError::LockTimeout {
                    path,
                    waited: self.lock_timeout,
                },
                _ => FirewallError::State {
                    op: "lock",
                    path,
                    source,
                },
            }
        })
    }

    /// Read `dir/name` and check it with `decode`: `Err(reason)` when it is not what netkit
    /// writes (a link or other non-regular file included, never read through).
    fn read_checked<T>(
        &self,
        dir: &Dir,
        name: &OsStr,
        decode: &impl Fn(&[u8]) -> std::result::Result<T, String>,
    ) -> Result<std::result::Result<Option<T>, String>> {
        match dir.read(name, MAX_STATE_FILE) {
            Ok(None) => Ok(Ok(None)),
            Ok(Some(bytes)) => Ok(decode(&bytes).map(Some)),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(Err(e.to_string())),
            Err(e) => Err(FirewallError::state("read", &dir.join(name))(e)),
        }
    }

    /// Read and check a state file; one that fails the check is quarantined and reads as
    /// absent. Writers hold the lock, so a failed read is judged again under it (a file being
    /// replaced can read as garbage for a moment: a recycled spare).
    fn load<T>(
        &self,
        dir: &Dir,
        label: &str,
        name: impl AsRef<OsStr>,
        decode: impl Fn(&[u8]) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        let name = name.as_ref();
        if let Ok(v) = self.read_checked(dir, name, &decode)? {
            return Ok(v);
        }
        let _lock = self.lock()?;
        match self.read_checked(dir, name, &decode)? {
            Ok(v) => Ok(v),
            Err(reason) => {
                self.quarantine(dir, label, name, &reason)?;
                Ok(None)
            }
        }
    }

    /// Move `dir/name` to `quarantine/` under the lock, with a warning in the log.
    fn quarantine(&self, dir: &Dir, label: &str, name: &OsStr, reason: &str) -> Result<()> {
        let _lock = self.lock()?;
        let path = dir.join(name);
        let moved = fsutil::quarantine(&self.root, dir, label, name).map_err(state_err("quarantine", &path))?;
        if let Some(m) = moved {
            log::warn!(
                "firewall state: {} is damaged or invalid ({reason}); moved to {} and treated as absent",
                path.display(),
                m.path().display()
            );
        }
        Ok(())
    }

    /// An owner's rules (empty when it holds nothing, or its file was invalid and quarantined).
    pub(crate) fn rules(&self, owner: &str) -> Result<Rules> {
        if check_owner(owner).is_err() {
            // No file can exist for it.
            return Ok(Rules::default());
        }
        Ok(self
            .load(&self.owners, OWNER_DIR, owner_file(owner), decode_rules)?
            .unwrap_or_default())
    }

    /// Replace an owner's rules (removing the file when they are empty).
    pub(crate) fn set_rules(&self, owner: &str, rules: &Rules) -> Result<()> {
        check_owner(owner)?;
        let name = owner_file(owner);
        let path = self.owners.join(&name);
        if rules.is_empty() {
            return self
                .files
                .retire(&self.owners, &name)
                .map(drop)
                .map_err(state_err("remove", &path));
        }
        let text = serde_json::to_string_pretty(rules).expect("rules serialise");
        self.files
            .replace(&self.owners, &name, &text)
            .map_err(state_err("write", &path))
    }

    /// Every owner with a valid state file (a scan that reads every file: GC, reconcile).
    pub(crate) fn owners(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let names = self.owners.names().map_err(state_err("list", self.owners.path()))?;
        for name in names {
            match owner_of_file(&name) {
                Some(owner) => {
                    if self.load(&self.owners, OWNER_DIR, &name, decode_rules)?.is_some() {
                        out.push(owner);
                    }
                }
                None => self.quarantine(&self.owners, OWNER_DIR, &name, "not <owner>.json of a valid owner")?,
            }
        }
        out.sort();
        Ok(out)
    }

    /// True when no owner holds anything (stops at the first valid owner file found).
    pub(crate) fn no_owners(&self) -> Result<bool> {
        // Each round either answers or quarantines the entry it looked at.
        loop {
            let mut first = None;
            self.owners
                .each_entry(|n| {
                    first = Some(n.to_os_string());
                    true
                })
                .map_err(state_err("list", self.owners.path()))?;
            let Some(name) = first else { return Ok(true) };
            if owner_of_file(&name).is_none() {
                self.quarantine(&self.owners, OWNER_DIR, &name, "not <owner>.json of a valid owner")?;
            } else if self.load(&self.owners, OWNER_DIR, &name, decode_rules)?.is_some() {
                return Ok(false);
            }
        }
    }

    /// The owner of a service name.
    pub(crate) fn service_owner(&self, name: &str) -> Result<Option<String>> {
        if !valid_service_name(name) {
            return Ok(None);
        }
        self.load(&self.services, SERVICE_DIR, service_file(name), decode_owner_name)
    }

    /// Record (or, with `None`, forget) the owner of a service name.
    pub(crate) fn set_service_owner(&self, name: &str, owner: Option<&str>) -> Result<()> {
        if !valid_service_name(name) {
            return Err(FirewallError::invalid(format!("service name {name:?}")));
        }
        let file = service_file(name);
        let path = self.services.join(&file);
        match owner {
            Some(o) => {
                check_owner(o)?;
                self.files
                    .replace(&self.services, &file, o)
                    .map_err(state_err("write", &path))
            }
            None => self
                .files
                .retire(&self.services, &file)
                .map(drop)
                .map_err(state_err("remove", &path)),
        }
    }

    /// The holder directory of a shared object (`holders/<hex key>`), created when `create`;
    /// `None` when it does not exist. Anything else at its name is quarantined.
    fn holder_dir(&self, key: &str, create: bool) -> Result<Option<Dir>> {
        let name = hex(key);
        let path = self.holders.join(&name);
        for _ in 0..2 {
            if create {
                self.holders
                    .mkdir(&name)
                    .map_err(|e| FirewallError::state("create directory", &path)(io::Error::from(e)))?;
            }
            match self.holders.sub(&name, false) {
                Ok(d) => return Ok(Some(d)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.quarantine(&self.holders, HOLDERS_DIR, OsStr::new(&name), &e.to_string())?;
                    if !create {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(FirewallError::state("open directory", &path)(e)),
            }
        }
        Err(FirewallError::state("open directory", &path)(io::Error::other(
            "something else keeps appearing at its name",
        )))
    }

    /// Call `f` with each valid holder of `dir` until it returns true (a few entries per system
    /// call, so stopping early costs O(1) however many hold the object). Entries that name no
    /// valid owner are quarantined.
    fn each_holder(&self, dir: &Dir, label: &str, mut f: impl FnMut(String) -> bool) -> Result<()> {
        let mut bad = Vec::new();
        dir.each_entry(|name| match owner_of_holder(name) {
            Some(owner) => f(owner),
            None => {
                bad.push(name.to_os_string());
                false
            }
        })
        .map_err(state_err("list", dir.path()))?;
        for name in bad {
            self.quarantine(dir, label, &name, "the name is no valid owner")?;
        }
        Ok(())
    }

    /// Holders of a shared object: `(owner, detail)` pairs (reads every holder: GC and tests).
    #[cfg(test)]
    pub(crate) fn sharers(&self, key: &str) -> Result<Vec<(String, String)>> {
        let Some(dir) = self.holder_dir(key, false)? else {
            return Ok(Vec::new());
        };
        let label = format!("{HOLDERS_DIR}/{}", hex(key));
        let mut owners = Vec::new();
        self.each_holder(&dir, &label, |owner| {
            owners.push(owner);
            false
        })?;
        let mut out = Vec::new();
        for owner in owners {
            if let Some(detail) = self.load(&dir, &label, escape(&owner), decode_detail)? {
                out.push((owner, detail));
            }
        }
        out.sort();
        Ok(out)
    }

    /// A holder of a shared object other than `owner`, with its detail: `None` when `owner`
    /// holds it alone or nobody does. Stops at the first other valid holder (O(1), not
    /// O(holders)).
    pub(crate) fn other_holder(&self, key: &str, owner: &str) -> Result<Option<(String, String)>> {
        let Some(dir) = self.holder_dir(key, false)? else {
            return Ok(None);
        };
        let label = format!("{HOLDERS_DIR}/{}", hex(key));
        // Each round answers or quarantines the holder it found.
        loop {
            let mut found = None;
            self.each_holder(&dir, &label, |o| {
                if o != owner {
                    found = Some(o);
                }
                found.is_some()
            })?;
            let Some(other) = found else { return Ok(None) };
            if let Some(detail) = self.load(&dir, &label, escape(&other), decode_detail)? {
                return Ok(Some((other, detail)));
            }
        }
    }

    /// Record (`add`) or drop `owner` as a holder of a shared object: one file per holder in
    /// the object's directory, so the cost does not grow with the number of holders; the
    /// directory goes with its last holder.
    pub(crate) fn index_shared(&self, key: &str, owner: &str, detail: &str, add: bool) -> Result<()> {
        check_owner(owner)?;
        let entry = escape(owner);
        if add {
            let dir = self
                .holder_dir(key, true)?
                .expect("holder_dir makes the directory when asked to");
            return self
                .files
                .replace(&dir, &entry, detail)
                .map_err(state_err("write", &dir.join(&entry)));
        }
        let Some(dir) = self.holder_dir(key, false)? else {
            return Ok(());
        };
        self.files
            .retire(&dir, &entry)
            .map_err(state_err("remove", &dir.join(&entry)))?;
        match self.holders.rmdir(hex(key)) {
            Ok(()) | Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTEMPTY | nix::errno::Errno::EEXIST) => {
                Ok(())
            }
            Err(e) => Err(FirewallError::state("remove directory", dir.path())(io::Error::from(e))),
        }
    }

    fn port_file(m: &PortMapping, port: u16) -> String {
        format!("{}.{port}", m.protocol)
    }

    fn read_claims(&self, name: &str) -> Result<Vec<PortClaim>> {
        Ok(self
            .load(&self.ports, PORTS_DIR, name, decode_claims)?
            .unwrap_or_default())
    }

    fn write_claims(&self, name: &str, claims: &[PortClaim]) -> Result<()> {
        let path = self.ports.join(name);
        if claims.is_empty() {
            return self
                .files
                .retire(&self.ports, name)
                .map(drop)
                .map_err(state_err("remove", &path));
        }
        let text: String = claims
            .iter()
            .map(|c| {
                let ip = c.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "*".into());
                format!("{}\t{ip}\t{}\n", hex(&c.owner), if c.ipv4 { 4 } else { 6 })
            })
            .collect();
        self.files
            .replace(&self.ports, name, &text)
            .map_err(state_err("write", &path))
    }

    /// Who else maps a host port `m` covers in a way that overlaps it.
    pub(crate) fn port_conflict(&self, owner: &str, m: &PortMapping) -> Result<Option<(u16, PortClaim)>> {
        for (port, _) in m.ports() {
            for c in self.read_claims(&Self::port_file(m, port))? {
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
        check_owner(owner)?;
        let mine = PortClaim {
            owner: owner.to_string(),
            host_ip: m.host_ip,
            ipv4: m.is_ipv4(),
        };
        for (port, _) in m.ports() {
            let name = Self::port_file(m, port);
            let mut claims = self.read_claims(&name)?;
            let had = claims.contains(&mine);
            if add && !had {
                claims.push(mine.clone());
            } else if !add && had {
                claims.retain(|c| *c != mine);
            } else {
                continue;
            }
            self.write_claims(&name, &claims)?;
        }
        Ok(())
    }

    /// Read the `id` file, making it on first open. Concurrent first opens agree: each writes
    /// its candidate with `RENAME_NOREPLACE`, and all read back the one that won.
    fn load_id(&self) -> Result<String> {
        for _ in 0..3 {
            if let Some(id) = self.load(&self.root, "state", ID_FILE, decode_id)? {
                return Ok(id);
            }
            let candidate = format!("{:016x}\n", crate::random::u64());
            self.files
                .create_exclusive(&self.root, ID_FILE, &candidate)
                .map_err(state_err("create", &self.root.join(ID_FILE)))?;
        }
        Err(FirewallError::state("create", &self.root.join(ID_FILE))(
            io::Error::other("no valid id could be made"),
        ))
    }

    /// True when a directory of the first layout is present.
    fn has_legacy(&self) -> Result<bool> {
        for name in [LEGACY_OWNERS, LEGACY_SERVICES, LEGACY_SHARED] {
            if self
                .root
                .stat(name)
                .map_err(state_err("stat", &self.root.join(name)))?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A directory of the first layout, if present (anything else at its name is quarantined).
    fn legacy_dir(&self, name: &str) -> Result<Option<Dir>> {
        match self.root.sub(name, false) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                self.quarantine(&self.root, "state", OsStr::new(name), &e.to_string())?;
                Ok(None)
            }
            Err(e) => Err(FirewallError::state("open directory", &self.root.join(name))(e)),
        }
    }

    /// Move one file of the first layout to its new name (atomic; a file already at the new
    /// name wins, and the old one is quarantined).
    fn move_legacy(&self, from: &Dir, label: &str, name: &OsStr, to: &Dir, to_name: &str) -> Result<()> {
        match from.rename_noreplace(name, to, to_name) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(nix::errno::Errno::EEXIST) => self.quarantine(
                from,
                label,
                name,
                &format!("{} exists already", to.join(to_name).display()),
            ),
            Err(e) => Err(FirewallError::state("migrate", &from.join(name))(io::Error::from(e))),
        }
    }

    /// Remove a directory of the first layout once it is empty (if something new appeared in
    /// it, the next open migrates that too).
    fn remove_legacy_dir(&self, dir: &Dir, name: &str) -> Result<()> {
        match dir.rmdir(name) {
            Ok(()) | Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTEMPTY | nix::errno::Errno::EEXIST) => {
                Ok(())
            }
            Err(e) => Err(FirewallError::state("remove directory", &dir.join(name))(
                io::Error::from(e),
            )),
        }
    }

    /// Migrate the first layout (see the module docs); the caller holds the lock.
    fn migrate(&self) -> Result<()> {
        if let Some(legacy) = self.legacy_dir(LEGACY_OWNERS)? {
            for name in legacy.names().map_err(state_err("list", legacy.path()))? {
                let owner = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(unhex)
                    .filter(|o| check_owner(o).is_ok());
                match owner {
                    Some(o) => self.move_legacy(&legacy, LEGACY_OWNERS, &name, &self.owners, &owner_file(&o))?,
                    None => self.quarantine(&legacy, LEGACY_OWNERS, &name, "not <hex owner>.json of a valid owner")?,
                }
            }
            self.remove_legacy_dir(&self.root, LEGACY_OWNERS)?;
        }
        if let Some(legacy) = self.legacy_dir(LEGACY_SERVICES)? {
            for name in legacy.names().map_err(state_err("list", legacy.path()))? {
                match name.to_str().and_then(unhex).filter(|s| valid_service_name(s)) {
                    Some(s) => self.move_legacy(&legacy, LEGACY_SERVICES, &name, &self.services, &service_file(&s))?,
                    None => self.quarantine(&legacy, LEGACY_SERVICES, &name, "not a hex-encoded service name")?,
                }
            }
            self.remove_legacy_dir(&self.root, LEGACY_SERVICES)?;
        }
        if let Some(legacy) = self.legacy_dir(LEGACY_SHARED)? {
            for name in legacy.names().map_err(state_err("list", legacy.path()))? {
                let Some(key) = name.to_str().filter(|n| unhex(n).is_some()) else {
                    self.quarantine(&legacy, LEGACY_SHARED, &name, "not a hex-encoded object key")?;
                    continue;
                };
                let st = legacy.stat(key).map_err(state_err("stat", &legacy.join(key)))?;
                match st {
                    None => {}
                    Some(st) if fsutil::dir::is_dir(&st) => self.migrate_holders(&legacy, key)?,
                    Some(st) if fsutil::dir::is_regular(&st) => self.convert_legacy_shared(&legacy, key)?,
                    Some(_) => self.quarantine(&legacy, LEGACY_SHARED, &name, "neither a file nor a directory")?,
                }
            }
            self.remove_legacy_dir(&self.root, LEGACY_SHARED)?;
        }
        Ok(())
    }

    /// `shared/<hex key>/<hex owner>` → `holders/<hex key>/<owner>`.
    fn migrate_holders(&self, legacy: &Dir, key: &str) -> Result<()> {
        let from = legacy
            .sub(key, false)
            .map_err(state_err("open directory", &legacy.join(key)))?;
        let label = format!("{LEGACY_SHARED}/{key}");
        let to_path = self.holders.join(key);
        self.holders
            .mkdir(key)
            .map_err(|e| FirewallError::state("create directory", &to_path)(io::Error::from(e)))?;
        let to = self
            .holders
            .sub(key, false)
            .map_err(state_err("open directory", &to_path))?;
        for name in from.names().map_err(state_err("list", from.path()))? {
            match name.to_str().and_then(unhex).filter(|o| check_owner(o).is_ok()) {
                Some(o) => self.move_legacy(&from, &label, &name, &to, &escape(&o))?,
                None => self.quarantine(&from, &label, &name, "not a hex-encoded valid owner")?,
            }
        }
        self.remove_legacy_dir(legacy, key)
    }

    /// The older one-file index `shared/<hex key>` (`<hex owner>\t<detail>` lines) → one file
    /// per holder in `holders/<hex key>/`. Each holder is written atomically, and the old file
    /// is removed last, so an interrupted conversion is done again (idempotently) next time.
    fn convert_legacy_shared(&self, legacy: &Dir, key: &str) -> Result<()> {
        let decode = |bytes: &[u8]| -> std::result::Result<Vec<(String, String)>, String> {
            text(bytes)?
                .lines()
                .map(|l| {
                    let (o, d) = l.split_once('\t').unwrap_or((l, ""));
                    let owner = unhex(o)
                        .filter(|o| check_owner(o).is_ok())
                        .ok_or_else(|| format!("bad line {l:?}"))?;
                    decode_detail(d.as_bytes()).map(|d| (owner, d))
                })
                .collect()
        };
        let Some(holders) = self.load(legacy, LEGACY_SHARED, key, decode)? else {
            return Ok(());
        };
        let to_path = self.holders.join(key);
        self.holders
            .mkdir(key)
            .map_err(|e| FirewallError::state("create directory", &to_path)(io::Error::from(e)))?;
        let to = self
            .holders
            .sub(key, false)
            .map_err(state_err("open directory", &to_path))?;
        for (owner, detail) in holders {
            let entry = escape(&owner);
            self.files
                .replace(&to, &entry, &detail)
                .map_err(state_err("write", &to.join(&entry)))?;
        }
        files::remove(legacy, key, false)
            .map(drop)
            .map_err(state_err("remove", &legacy.join(key)))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz {
    //! The readers of state files and their names, fed arbitrary bytes (never panic, never
    //! accept what netkit would not write) and what netkit writes (read back unchanged): owner
    //! files (`decode_rules`, `owner_of_file`), the service index (`decode_owner_name`), holders
    //! (`owner_of_holder`, `decode_detail`), port claims (`decode_claims`, written as
    //! `write_claims` writes them) and the id file (`decode_id`).

    use std::ffi::OsStr;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::os::unix::ffi::OsStrExt;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::firewall::model::Protocol;

    /// Owner names as `check_owner` accepts them, `/` included (escaped in file names).
    fn owner() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9][a-zA-Z0-9_.:/@%-]{0,60}"
    }

    fn claim() -> impl Strategy<Value = PortClaim> {
        let ip = prop_oneof![
            Just(None),
            any::<u32>().prop_map(|a| Some(IpAddr::V4(Ipv4Addr::from(a)))),
            any::<u128>().prop_map(|a| Some(IpAddr::V6(Ipv6Addr::from(a)))),
        ];
        (owner(), ip, any::<bool>()).prop_map(|(owner, host_ip, v4)| PortClaim {
            owner,
            ipv4: host_ip.map_or(v4, |i| i.is_ipv4()),
            host_ip,
        })
    }

    /// A port index file, as `StateDir::write_claims` writes it.
    fn claims_text(claims: &[PortClaim]) -> String {
        claims
            .iter()
            .map(|c| {
                let ip = c.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "*".into());
                format!("{}\t{ip}\t{}\n", hex(&c.owner), if c.ipv4 { 4 } else { 6 })
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn readers_never_panic(bytes in vec(any::<u8>(), 0..160)) {
            let _ = decode_rules(&bytes);
            let _ = decode_owner_name(&bytes);
            let _ = decode_detail(&bytes);
            let _ = decode_claims(&bytes);
            let _ = decode_id(&bytes);
            let name = OsStr::from_bytes(&bytes);
            // A name is only taken for an owner when it is the very name netkit writes for it.
            if let Some(o) = owner_of_file(name) {
                prop_assert!(check_owner(&o).is_ok());
                let file = owner_file(&o);
                prop_assert_eq!(OsStr::new(&file), name);
            }
            if let Some(o) = owner_of_holder(name) {
                prop_assert!(check_owner(&o).is_ok());
                let file = escape(&o);
                prop_assert_eq!(OsStr::new(&file), name);
            }
            if let Some(s) = unhex(&String::from_utf8_lossy(&bytes)) {
                prop_assert_eq!(unhex(&hex(&s)), Some(s));
            }
        }

        #[test]
        fn text_readers_never_panic(text in "\\PC{0,100}") {
            let _ = decode_rules(text.as_bytes());
            let _ = decode_claims(text.as_bytes());
            if let Ok(id) = decode_id(text.as_bytes()) {
                prop_assert_eq!(format!("{id}\n"), text.clone());
            }
            if let Ok(detail) = decode_detail(text.as_bytes()) {
                prop_assert!(detail.is_empty() || detail.parse::<IpNetwork>().is_ok());
            }
        }

        #[test]
        fn owner_names_round_trip(o in owner()) {
            prop_assert_eq!(owner_of_file(OsStr::new(&owner_file(&o))), Some(o.clone()));
            prop_assert_eq!(owner_of_holder(OsStr::new(&escape(&o))), Some(o.clone()));
            prop_assert_eq!(decode_owner_name(o.as_bytes()), Ok(o.clone()));
            prop_assert_eq!(unhex(&hex(&o)), Some(o));
        }

        #[test]
        fn hex_round_trips_any_text(s in "\\PC{0,40}") {
            prop_assert_eq!(unhex(&hex(&s)), Some(s));
        }

        #[test]
        fn claims_round_trip(claims in vec(claim(), 0..6)) {
            prop_assert_eq!(decode_claims(claims_text(&claims).as_bytes()), Ok(claims));
        }

        #[test]
        fn ids_and_details_round_trip(id in "[0-9a-f]{16}", net in any::<(u32, u8)>()) {
            prop_assert_eq!(decode_id(format!("{id}\n").as_bytes()), Ok(id.clone()));
            prop_assert!(decode_id(id.as_bytes()).is_err(), "an id without its newline");
            let net = IpNetwork::new(IpAddr::V4(Ipv4Addr::from(net.0)), net.1 % 33).expect("prefix <= 32");
            prop_assert_eq!(decode_detail(net.to_string().as_bytes()), Ok(net.to_string()));
            prop_assert_eq!(decode_detail(b""), Ok(String::new()));
        }

        #[test]
        fn rules_round_trip(
            maps in vec((prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp), Just(Protocol::Sctp)], 1u16..=65535, any::<[u8; 2]>(), 1u16..=65535), 0..5),
        ) {
            let rules = Rules {
                port_mappings: maps
                    .into_iter()
                    .map(|(p, hp, [a, b], cp)| PortMapping::new(p, hp, IpAddr::V4(Ipv4Addr::new(10, 88, a, b.max(1))), cp))
                    .collect(),
                ..Rules::default()
            };
            let bytes = serde_json::to_vec(&rules).expect("rules serialize");
            match rules.validate() {
                Ok(()) => prop_assert_eq!(decode_rules(&bytes), Ok(rules)),
                Err(_) => prop_assert!(decode_rules(&bytes).is_err(), "invalid rules were read back"),
            }
        }
    }
}
