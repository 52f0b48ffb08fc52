//! Named namespaces under `/run/netns`, the way iproute2 keeps them.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::worker::{self, Place};
use super::{open_ns_file, NetNs, NetnsError};

/// Directory holding named namespaces, as iproute2 uses it.
pub const NETNS_RUN_DIR: &str = "/run/netns";

fn ns_path(name: &str) -> Result<PathBuf, NetnsError> {
    let bad = name.is_empty() || name.len() > 255 || name.contains('/') || name.contains('\0');
    if bad || name == "." || name == ".." {
        return Err(NetnsError::InvalidName(name.to_string()));
    }
    Ok(Path::new(NETNS_RUN_DIR).join(name))
}

/// Make `/run/netns` exist and be a shared mount point, so namespaces bound
/// there are seen by every mount namespace that shares it (what `ip netns add`
/// does). Done once per process.
fn prepare_run_dir() -> Result<(), NetnsError> {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return Ok(());
    }
    let err = |op, e: nix::Error| NetnsError::io(op, NETNS_RUN_DIR, e);
    fs::create_dir_all(NETNS_RUN_DIR).map_err(|e| NetnsError::io("create run dir for", NETNS_RUN_DIR, e))?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, NETNS_RUN_DIR, None::<&str>, shared, None::<&str>) {
        Ok(()) => {}
        Err(nix::Error::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then make it shared.
            let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
            mount(Some(NETNS_RUN_DIR), NETNS_RUN_DIR, Some("none"), bind, None::<&str>)
                .map_err(|e| err("bind-mount run dir for", e))?;
            mount(None::<&str>, NETNS_RUN_DIR, None::<&str>, shared, None::<&str>)
                .map_err(|e| err("make run dir shared for", e))?;
        }
        Err(e) => return Err(err("make run dir shared for", e)),
    }
    *done = true;
    Ok(())
}

/// Claim `name`: the mount target, an empty file created exclusively so two callers cannot
/// both think they created the same name.
fn claim(name: &str) -> Result<PathBuf, NetnsError> {
    let path = ns_path(name)?;
    prepare_run_dir()?;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
    {
        Ok(_) => Ok(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(NetnsError::Exists(name.into())),
        Err(e) => Err(NetnsError::io("create", name, e)),
    }
}

/// What the job of a creation gives back: `then`'s value, or the step that failed.
type PinResult<T> = Result<T, (&'static str, io::Error)>;

/// The job that runs in the brand-new namespace: bind it onto `target`, then run `then` there.
fn pin_then<T>(target: PathBuf, then: impl FnOnce() -> io::Result<T>) -> impl FnOnce() -> PinResult<T> {
    move || {
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| ("create", io::Error::from(e)))?;
        then().map_err(|e| ("set up", e))
    }
}

impl NetNs {
    /// Create a named namespace, like `ip netns add NAME`: visible to
    /// `ip netns list` and usable with `ip netns exec`. The loopback device is
    /// left down, as iproute2 leaves it; see [`crate::Handle::link_set_up`].
    ///
    /// Fails with [`NetnsError::Exists`] if the name is taken.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        let path = claim(name)?;
        let made = worker::run_blocking(Place::New, pin_then(path.clone(), || Ok(())));
        Self::finish_create(name, path, made).map(|(ns, ())| ns)
    }

    /// [`NetNs::create`], then `then` inside the new namespace, in the same job on the helper
    /// thread (one trip instead of two: see [`crate::Handle::create_netns`]); the future
    /// completes when it is done. When `then` fails, the namespace is deleted again.
    pub(crate) async fn create_then<T, F>(name: &str, then: F) -> Result<(Self, T), NetnsError>
    where
        F: FnOnce() -> io::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let path = claim(name)?;
        let made = worker::run(Place::New, pin_then(path.clone(), then)).await;
        Self::finish_create(name, path, made)
    }

    /// Open the namespace the job pinned at `path`; on any failure, delete it again.
    fn finish_create<T>(
        name: &str,
        path: PathBuf,
        made: Result<PinResult<T>, NetnsError>,
    ) -> Result<(Self, T), NetnsError> {
        let done = made
            .and_then(|r| r.map_err(|(op, e)| NetnsError::io(op, name, e)))
            .and_then(|t| Ok((open_ns_file(&path).map_err(|e| NetnsError::io("open", name, e))?, t)));
        match done {
            Ok((fd, t)) => Ok((Self::from_parts(fd, Some(name.to_string()), path), t)),
            Err(e) => {
                let _ = Self::delete(name);
                Err(e)
            }
        }
    }

    /// Open a named namespace (`/run/netns/NAME`).
    pub fn open(name: &str) -> Result<Self, NetnsError> {
        let path = ns_path(name)?;
        let fd = open_ns_file(&path).map_err(|e| NetnsError::io("open", name, e))?;
        Ok(Self::from_parts(fd, Some(name.to_string()), path))
    }

    /// Delete a named namespace, like `ip netns delete NAME`. Idempotent: a
    /// name that does not exist is success. The namespace itself lives on
    /// while processes or open handles still use it.
    pub fn delete(name: &str) -> Result<(), NetnsError> {
        let path = ns_path(name)?;
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(NetnsError::io("unmount", name, e)),
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetnsError::io("delete", name, e)),
        }
    }

    /// Names of the namespaces under `/run/netns`, sorted, like `ip netns list`.
    pub fn list() -> Result<Vec<String>, NetnsError> {
        let dir = match fs::read_dir(NETNS_RUN_DIR) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(NetnsError::io("list", NETNS_RUN_DIR, e)),
        };
        let mut names: Vec<String> = dir
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The names under `/run/netns` of the network namespace process `pid` is in, sorted, like
    /// `ip netns identify PID`: the entries whose device and inode are those of
    /// `/proc/PID/ns/net`. Empty when the process is in no named namespace (several names
    /// when one namespace is mounted under several). Entries that cannot be read are skipped,
    /// as `ip` skips them.
    ///
    /// Fails with the errno of reading `/proc/PID/ns/net` (`ENOENT`: no such process).
    ///
    /// ```no_run
    /// let names = netkit_core::NetNs::identify(std::process::id())?;
    /// println!("this process is in {names:?}");
    /// # Ok::<(), netkit_core::NetnsError>(())
    /// ```
    pub fn identify(pid: u32) -> Result<Vec<String>, NetnsError> {
        use std::os::unix::fs::MetadataExt;
        let of = format!("of process {pid}");
        let st = fs::metadata(format!("/proc/{pid}/ns/net")).map_err(|e| NetnsError::io("identify", &of, e))?;
        let mut names = Self::list()?;
        names.retain(|n| {
            fs::metadata(Path::new(NETNS_RUN_DIR).join(n)).is_ok_and(|m| (m.dev(), m.ino()) == (st.dev(), st.ino()))
        });
        Ok(names)
    }
}

/// A named namespace deleted when this guard drops (also on panic).
///
/// Handy for tests and short-lived setups:
/// ```no_run
/// let ns = netkit_core::netns::NetNsGuard::create("scratch")?;
/// // … use &*ns …
/// # Ok::<(), netkit_core::NetnsError>(())
/// ```
#[derive(Debug)]
pub struct NetNsGuard {
    ns: NetNs,
}

impl NetNsGuard {
    /// Create the named namespace; it is deleted when the guard drops.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        Ok(Self {
            ns: NetNs::create(name)?,
        })
    }

    /// Like [`NetNsGuard::create`], but first delete a leftover namespace
    /// of the same name (e.g. from a crashed earlier run).
    pub fn recreate(name: &str) -> Result<Self, NetnsError> {
        NetNs::delete(name)?;
        Self::create(name)
    }
}

impl std::ops::Deref for NetNsGuard {
    type Target = NetNs;
    fn deref(&self) -> &NetNs {
        &self.ns
    }
}

impl Drop for NetNsGuard {
    fn drop(&mut self) {
        if let Some(name) = self.ns.name() {
            let _ = NetNs::delete(name);
        }
    }
}
