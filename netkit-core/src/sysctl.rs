//! Per-namespace and per-interface sysctls (`/proc/sys/net/…`).
//!
//! Everything under `/proc/sys/net` belongs to the network namespace of the
//! *thread* that opens the file, so netkit always reads and writes these
//! files from a thread that has entered the namespace you name: the free
//! functions ([`get`], [`set`], [`set_many`], …) take a [`NetNs`] and use
//! [`NetNs::run`]; the [`Handle`] methods ([`Handle::sysctl_set`],
//! [`Handle::ip_forward`], [`Handle::proxy_arp`], …) act in the handle's
//! namespace. **Nothing is ever written in the caller's own namespace**,
//! unless the namespace (or the handle, see [`Handle::current`]) is that one.
//!
//! Keys are written the way `sysctl(8)` spells them, `net.ipv4.ip_forward`,
//! and must start with `net.`. Interface names may contain dots (`eth0.100`);
//! as in `sysctl(8)`, a `/` inside a dotted key stands for a literal dot
//! (`net.ipv4.conf.eth0/100.rp_filter`). The `iface_*` functions and the
//! typed helpers take the interface separately and do this for you;
//! [`dotted_key`] turns `sysctl(8)`'s slash form (`net/ipv4/conf/eth0.100/rp_filter`)
//! into the dotted one.
//!
//! ```no_run
//! # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
//! use netkit_core::sysctl::Family;
//! // Calico's host end of a pod veth:
//! h.proxy_arp("cali1234", true).await?;
//! h.forwarding("cali1234", Family::V4, true).await?;
//! h.route_localnet("cali1234", true).await?;
//! h.proxy_delay("cali1234", 0).await?;
//! h.ip_forward(true).await?;
//! assert_eq!(h.sysctl_get("net.ipv4.ip_forward").await?, "1");
//! # Ok(()) }
//! ```

use std::io::Write;
use std::path::PathBuf;

use crate::{Handle, NetNs};

/// Where sysctls live.
const PROC_SYS: &str = "/proc/sys";

/// The IP version of per-interface settings (`net.ipv4.conf.DEV.*` or `net.ipv6.conf.DEV.*`):
/// the crate's one family type, [`crate::IpFamily`], under the name this module has always
/// used for it.
pub use crate::route::IpFamily as Family;

/// The sysctl directory of a family: `ipv4` or `ipv6`.
fn dir(family: Family) -> &'static str {
    match family {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// Errors from sysctl access: each names the key and the namespace, and I/O
/// failures keep their errno (`ENOENT` for a key or interface that does not
/// exist, `EINVAL` for a value the kernel rejects, …).
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// The key was rejected before touching the file system.
    #[error("invalid sysctl key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A typed helper was given a value outside the range the sysctl accepts.
    #[error("invalid value {value:?} for sysctl {key}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The accepted range.
        reason: &'static str,
    },
    /// Reading or writing the file failed.
    #[error("{op} sysctl {key} in netns {netns}: {cause}")]
    Io {
        /// "read" or "write".
        op: &'static str,
        /// The key (dotted form).
        key: String,
        /// The namespace.
        netns: String,
        /// The failure, with its errno.
        cause: std::io::Error,
    },
    /// The thread that does the work could not enter the namespace.
    #[error("enter netns {netns} to access sysctl {key}: {message}")]
    Enter {
        /// The (first) key that was to be accessed.
        key: String,
        /// The namespace.
        netns: String,
        /// What went wrong.
        message: String,
    },
}

impl SysctlError {
    /// The errno behind an I/O failure.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Io { cause: source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the key (or the interface it names) does not exist (`ENOENT`).
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(libc::ENOENT)
    }

    /// True for [`SysctlError::InvalidKey`] and [`SysctlError::InvalidValue`].
    pub fn is_invalid(&self) -> bool {
        matches!(self, Self::InvalidKey { .. } | Self::InvalidValue { .. })
    }
}

fn invalid(key: &str, reason: &'static str) -> SysctlError {
    SysctlError::InvalidKey {
        key: key.to_string(),
        reason,
    }
}

/// The file behind a dotted key: `net.ipv4.ip_forward` →
/// `/proc/sys/net/ipv4/ip_forward`; a `/` inside a component is a literal dot
/// (`net.ipv4.conf.eth0/100.rp_filter` → `…/conf/eth0.100/rp_filter`).
///
/// Rejects empty keys, empty components, `.`/`..` components, NUL bytes and
/// keys outside `net.`.
///
/// ```
/// use netkit_core::sysctl::key_path;
/// assert_eq!(key_path("net.ipv4.ip_forward").unwrap().to_str(), Some("/proc/sys/net/ipv4/ip_forward"));
/// assert!(key_path("kernel.hostname").is_err());
/// assert!(key_path("net.ipv4..ip_forward").is_err());
/// ```
pub fn key_path(key: &str) -> Result<PathBuf, SysctlError> {
    if key.is_empty() {
        return Err(invalid(key, "empty key"));
    }
    if key.contains('\0') {
        return Err(invalid(key, "contains a NUL byte"));
    }
    let mut path = PathBuf::from(PROC_SYS);
    for (i, part) in key.split('.').enumerate() {
        if part.is_empty() {
            return Err(invalid(key, "empty component (leading, trailing or doubled '.')"));
        }
        let part = part.replace('/', ".");
        if part == "." || part == ".." {
            return Err(invalid(key, "'.' and '..' components are not allowed"));
        }
        if i == 0 && part != "net" {
            return Err(invalid(key, "only keys under net. are per network namespace"));
        }
        path.push(part);
    }
    if key.split('.').count() < 3 {
        return Err(invalid(key, "names a directory, not a setting (want net.SECTION.NAME)"));
    }
    Ok(path)
}

/// A key as `sysctl(8)` accepts it, in the dotted form the rest of this module takes: a key
/// whose first separator is `/` is in the slash form (`net/ipv4/conf/eth0.100/rp_filter`), where
/// `/` separates and a dot is literal, so the two swap (`net.ipv4.conf.eth0/100.rp_filter`);
/// any other key is returned as it is. Nothing is validated here: see [`key_path`].
///
/// ```
/// use netkit_core::sysctl::dotted_key;
/// assert_eq!(dotted_key("net/ipv4/ip_forward"), "net.ipv4.ip_forward");
/// assert_eq!(dotted_key("net/ipv4/conf/eth0.100/rp_filter"), "net.ipv4.conf.eth0/100.rp_filter");
/// assert_eq!(dotted_key("net.ipv4.conf.eth0/100.rp_filter"), "net.ipv4.conf.eth0/100.rp_filter");
/// ```
pub fn dotted_key(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

fn check_dev(key: &str, dev: &str) -> Result<(), SysctlError> {
    if dev.is_empty() || dev.len() > 15 || dev.contains(['/', '\0']) || dev == "." || dev == ".." {
        return Err(invalid(
            key,
            "interface name must be 1-15 bytes without '/', and not '.' or '..'",
        ));
    }
    Ok(())
}

fn check_name(key: &str, name: &str) -> Result<(), SysctlError> {
    if name.is_empty() || name.contains(['/', '.', '\0']) {
        return Err(invalid(key, "setting name must be non-empty without '.' or '/'"));
    }
    Ok(())
}

/// The dotted key of a per-interface setting, with dots in `dev` escaped as
/// `/`: `iface_key(Family::V4, "eth0.100", "rp_filter")` is
/// `net.ipv4.conf.eth0/100.rp_filter`. `dev` may be `all` or `default`.
///
/// ```
/// use netkit_core::sysctl::{iface_key, Family};
/// assert_eq!(iface_key(Family::V6, "eth0", "accept_ra"), "net.ipv6.conf.eth0.accept_ra");
/// ```
pub fn iface_key(family: Family, dev: &str, name: &str) -> String {
    format!("net.{}.conf.{}.{name}", dir(family), dev.replace('.', "/"))
}

/// The dotted key of a per-interface neighbour-table setting:
/// `net.ipv4.neigh.DEV.NAME` (dots in `dev` escaped as `/`).
///
/// ```
/// use netkit_core::sysctl::{neigh_key, Family};
/// assert_eq!(neigh_key(Family::V4, "cali1", "proxy_delay"), "net.ipv4.neigh.cali1.proxy_delay");
/// ```
pub fn neigh_key(family: Family, dev: &str, name: &str) -> String {
    format!("net.{}.neigh.{}.{name}", dir(family), dev.replace('.', "/"))
}

/// The file of a per-interface setting: `/proc/sys/net/FAMILY/conf/DEV/NAME`.
/// Validates `dev` (1-15 bytes, no `/`) and `name`.
///
/// ```
/// use netkit_core::sysctl::{iface_path, Family};
/// let p = iface_path(Family::V4, "eth0.100", "rp_filter").unwrap();
/// assert_eq!(p.to_str(), Some("/proc/sys/net/ipv4/conf/eth0.100/rp_filter"));
/// ```
pub fn iface_path(family: Family, dev: &str, name: &str) -> Result<PathBuf, SysctlError> {
    let key = iface_key(family, dev, name);
    check_dev(&key, dev)?;
    check_name(&key, name)?;
    key_path(&key)
}

/// A validated key: the dotted form (for messages) and its file.
struct Key {
    key: String,
    path: PathBuf,
}

impl Key {
    fn parse(key: &str) -> Result<Self, SysctlError> {
        Ok(Self {
            key: key.to_string(),
            path: key_path(key)?,
        })
    }

    fn iface(family: Family, dev: &str, name: &str) -> Result<Self, SysctlError> {
        Ok(Self {
            key: iface_key(family, dev, name),
            path: iface_path(family, dev, name)?,
        })
    }

    fn neigh(family: Family, dev: &str, name: &str) -> Result<Self, SysctlError> {
        let key = neigh_key(family, dev, name);
        check_dev(&key, dev)?;
        check_name(&key, name)?;
        Ok(Self {
            path: key_path(&key)?,
            key,
        })
    }
}

/// Read the file (must run inside the namespace). Trailing newline removed.
fn read_key(k: &Key, netns: &str) -> Result<String, SysctlError> {
    let io = |source| SysctlError::Io {
        op: "read",
        key: k.key.clone(),
        netns: netns.to_string(),
        cause: source,
    };
    let mut s = std::fs::read_to_string(&k.path).map_err(io)?;
    while s.ends_with('\n') {
        s.pop();
    }
    Ok(s)
}

/// Write the file (must run inside the namespace) in a single write(2), as
/// the kernel parses each write on its own.
fn write_key(k: &Key, value: &str, netns: &str) -> Result<(), SysctlError> {
    let io = |source| SysctlError::Io {
        op: "write",
        key: k.key.clone(),
        netns: netns.to_string(),
        cause: source,
    };
    let mut f = std::fs::OpenOptions::new().write(true).open(&k.path).map_err(io)?;
    let n = f.write(value.as_bytes()).map_err(io)?;
    if n != value.len() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", value.len()),
        )));
    }
    Ok(())
}

fn write_all(keys: &[(Key, String)], netns: &str) -> Result<(), SysctlError> {
    keys.iter().try_for_each(|(k, v)| write_key(k, v, netns))
}

/// Run `f` inside `ns` (on netkit's helper thread, or right here when this thread is in it:
/// the same path as [`Handle`]'s sysctl methods, never a thread per call).
fn in_ns<T: Send + 'static>(
    ns: &NetNs,
    first_key: &str,
    f: impl FnOnce(&str) -> Result<T, SysctlError> + Send + 'static,
) -> Result<T, SysctlError> {
    let label = ns.to_string();
    let inner = label.clone();
    ns.job_blocking(move || f(&inner)).map_err(|e| SysctlError::Enter {
        key: first_key.to_string(),
        netns: label,
        message: e.to_string(),
    })?
}

/// Read a sysctl inside `ns`, like `ip netns exec NS sysctl -n KEY`.
/// Blocks until done (one hop to netkit's helper thread, none when this thread is in `ns`);
/// from async code prefer [`Handle::sysctl_get`].
///
/// ```no_run
/// # fn f(ns: &netkit_core::NetNs) -> Result<(), netkit_core::sysctl::SysctlError> {
/// let v = netkit_core::sysctl::get(ns, "net.ipv4.ip_forward")?;
/// println!("forwarding: {v}");
/// # Ok(()) }
/// ```
pub fn get(ns: &NetNs, key: &str) -> Result<String, SysctlError> {
    let k = Key::parse(key)?;
    in_ns(ns, key, move |label| read_key(&k, label))
}

/// Write a sysctl inside `ns`, like `ip netns exec NS sysctl -w KEY=VALUE`.
///
/// ```no_run
/// # fn f(ns: &netkit_core::NetNs) -> Result<(), netkit_core::sysctl::SysctlError> {
/// netkit_core::sysctl::set(ns, "net.ipv4.ip_forward", "1")?;
/// # Ok(()) }
/// ```
pub fn set(ns: &NetNs, key: &str, value: &str) -> Result<(), SysctlError> {
    let k = Key::parse(key)?;
    let value = value.to_string();
    in_ns(ns, key, move |label| write_key(&k, &value, label))
}

/// Write several sysctls inside `ns` in one job, in order; stops at
/// the first failure (earlier writes stay). Every key is validated before
/// anything is written.
///
/// ```no_run
/// # fn f(ns: &netkit_core::NetNs) -> Result<(), netkit_core::sysctl::SysctlError> {
/// netkit_core::sysctl::set_many(ns, &[("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1")])?;
/// # Ok(()) }
/// ```
pub fn set_many(ns: &NetNs, settings: &[(&str, &str)]) -> Result<(), SysctlError> {
    let keys = parse_many(settings)?;
    let first = settings.first().map(|(k, _)| *k).unwrap_or_default();
    in_ns(ns, first, move |label| write_all(&keys, label))
}

fn parse_many(settings: &[(&str, &str)]) -> Result<Vec<(Key, String)>, SysctlError> {
    settings
        .iter()
        .map(|(k, v)| Ok((Key::parse(k)?, v.to_string())))
        .collect()
}

/// Read a per-interface setting inside `ns`: `net.FAMILY.conf.DEV.NAME`.
///
/// ```no_run
/// # fn f(ns: &netkit_core::NetNs) -> Result<(), netkit_core::sysctl::SysctlError> {
/// use netkit_core::sysctl::{get_iface, Family};
/// let rp = get_iface(ns, Family::V4, "eth0.100", "rp_filter")?;
/// # drop(rp); Ok(()) }
/// ```
pub fn get_iface(ns: &NetNs, family: Family, dev: &str, name: &str) -> Result<String, SysctlError> {
    let k = Key::iface(family, dev, name)?;
    in_ns(ns, &k.key.clone(), move |label| read_key(&k, label))
}

/// Write a per-interface setting inside `ns`: `net.FAMILY.conf.DEV.NAME`.
///
/// ```no_run
/// # fn f(ns: &netkit_core::NetNs) -> Result<(), netkit_core::sysctl::SysctlError> {
/// use netkit_core::sysctl::{set_iface, Family};
/// set_iface(ns, Family::V4, "eth0.100", "rp_filter", "2")?;
/// # Ok(()) }
/// ```
pub fn set_iface(ns: &NetNs, family: Family, dev: &str, name: &str, value: &str) -> Result<(), SysctlError> {
    let k = Key::iface(family, dev, name)?;
    let value = value.to_string();
    in_ns(ns, &k.key.clone(), move |label| write_key(&k, &value, label))
}

fn bool_str(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

impl Handle {
    /// Run sysctl work inside this handle's namespace.
    async fn sysctl_exec<T: Send + 'static>(
        &self,
        first_key: &str,
        f: impl FnOnce(&str) -> Result<T, SysctlError> + Send + 'static,
    ) -> Result<T, SysctlError> {
        let label = self.ns_label();
        let inner = label.clone();
        self.exec_in(move || f(&inner)).await.map_err(|e| SysctlError::Enter {
            key: first_key.to_string(),
            netns: label,
            message: e.to_string(),
        })?
    }

    async fn sysctl_write(&self, k: Key, value: String) -> Result<(), SysctlError> {
        let key = k.key.clone();
        self.sysctl_exec(&key, move |label| write_key(&k, &value, label)).await
    }

    async fn sysctl_read(&self, k: Key) -> Result<String, SysctlError> {
        let key = k.key.clone();
        self.sysctl_exec(&key, move |label| read_key(&k, label)).await
    }

    /// Read a sysctl in this handle's namespace (dotted key, see [`key_path`]).
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// let on = h.sysctl_get("net.ipv4.ip_forward").await? == "1";
    /// # drop(on); Ok(()) }
    /// ```
    pub async fn sysctl_get(&self, key: &str) -> Result<String, SysctlError> {
        self.sysctl_read(Key::parse(key)?).await
    }

    /// Write a sysctl in this handle's namespace.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// h.sysctl_set("net.ipv4.conf.all.rp_filter", "2").await?;
    /// # Ok(()) }
    /// ```
    pub async fn sysctl_set(&self, key: &str, value: &str) -> Result<(), SysctlError> {
        self.sysctl_write(Key::parse(key)?, value.to_string()).await
    }

    /// Write several sysctls in this handle's namespace in one thread hop, in
    /// order, stopping at the first failure. Keys are all validated first.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// h.sysctl_set_many(&[("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.cali1.proxy_arp", "1")]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn sysctl_set_many(&self, settings: &[(&str, &str)]) -> Result<(), SysctlError> {
        let keys = parse_many(settings)?;
        let first = settings.first().map(|(k, _)| *k).unwrap_or_default();
        self.sysctl_exec(first, move |label| write_all(&keys, label)).await
    }

    /// Read a per-interface setting `net.FAMILY.conf.DEV.NAME`.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// use netkit_core::sysctl::Family;
    /// let ra = h.iface_sysctl_get(Family::V6, "eth0", "accept_ra").await?;
    /// # drop(ra); Ok(()) }
    /// ```
    pub async fn iface_sysctl_get(&self, family: Family, dev: &str, name: &str) -> Result<String, SysctlError> {
        self.sysctl_read(Key::iface(family, dev, name)?).await
    }

    /// Write a per-interface setting `net.FAMILY.conf.DEV.NAME` (`dev` may
    /// contain dots, or be `all` / `default`).
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// use netkit_core::sysctl::Family;
    /// h.iface_sysctl_set(Family::V4, "eth0.100", "arp_ignore", "1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn iface_sysctl_set(
        &self,
        family: Family,
        dev: &str,
        name: &str,
        value: &str,
    ) -> Result<(), SysctlError> {
        self.sysctl_write(Key::iface(family, dev, name)?, value.to_string())
            .await
    }

    /// Turn IPv4 forwarding on or off for the namespace (`net.ipv4.ip_forward`).
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// h.ip_forward(true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ip_forward(&self, on: bool) -> Result<(), SysctlError> {
        self.sysctl_set("net.ipv4.ip_forward", bool_str(on)).await
    }

    /// Turn IPv6 forwarding on or off on every interface (`net.ipv6.conf.all.forwarding`).
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// h.ipv6_forwarding(true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ipv6_forwarding(&self, on: bool) -> Result<(), SysctlError> {
        self.sysctl_set("net.ipv6.conf.all.forwarding", bool_str(on)).await
    }

    /// Answer ARP requests on `dev` for addresses this host can route
    /// elsewhere (`net.ipv4.conf.DEV.proxy_arp`).
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// h.proxy_arp("cali1234", true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn proxy_arp(&self, dev: &str, on: bool) -> Result<(), SysctlError> {
        self.iface_sysctl_set(Family::V4, dev, "proxy_arp", bool_str(on)).await
    }

    /// Reverse-path filtering on `dev` (`net.ipv4.conf.DEV.rp_filter`): 0 off,
    /// 1 strict, 2 loose. The kernel uses the maximum of this and `all`.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// h.rp_filter("eth0", 2).await?;
    /// # Ok(()) }
    /// ```
    pub async fn rp_filter(&self, dev: &str, mode: u8) -> Result<(), SysctlError> {
        if mode > 2 {
            return Err(SysctlError::InvalidValue {
                key: iface_key(Family::V4, dev, "rp_filter"),
                value: mode.to_string(),
                reason: "must be 0 (off), 1 (strict) or 2 (loose)",
            });
        }
        self.iface_sysctl_set(Family::V4, dev, "rp_filter", &mode.to_string())
            .await
    }

    /// Allow 127.0.0.0/8 as source or destination on `dev`
    /// (`net.ipv4.conf.DEV.route_localnet`), needed to DNAT to localhost.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// h.route_localnet("cali1234", true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn route_localnet(&self, dev: &str, on: bool) -> Result<(), SysctlError> {
        self.iface_sysctl_set(Family::V4, dev, "route_localnet", bool_str(on))
            .await
    }

    /// Router advertisements on `dev` (`net.ipv6.conf.DEV.accept_ra`): 0 ignore,
    /// 1 accept unless forwarding, 2 accept even when forwarding.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// h.accept_ra("eth0", 0).await?;
    /// # Ok(()) }
    /// ```
    pub async fn accept_ra(&self, dev: &str, mode: u8) -> Result<(), SysctlError> {
        if mode > 2 {
            return Err(SysctlError::InvalidValue {
                key: iface_key(Family::V6, dev, "accept_ra"),
                value: mode.to_string(),
                reason: "must be 0, 1 or 2",
            });
        }
        self.iface_sysctl_set(Family::V6, dev, "accept_ra", &mode.to_string())
            .await
    }

    /// Duplicate address detection on `dev` (`net.ipv6.conf.DEV.accept_dad`):
    /// 0 off (addresses usable at once, no DAD delay), 1 on, 2 on and disable
    /// IPv6 on the device when a link-local duplicate is found. Negative
    /// values are accepted by the kernel too (treated as off).
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// h.accept_dad("eth0", 0).await?;
    /// # Ok(()) }
    /// ```
    pub async fn accept_dad(&self, dev: &str, mode: i32) -> Result<(), SysctlError> {
        self.iface_sysctl_set(Family::V6, dev, "accept_dad", &mode.to_string())
            .await
    }

    /// Forwarding on one interface (`net.ipv4.conf.DEV.forwarding` or
    /// `net.ipv6.conf.DEV.forwarding`).
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// use netkit_core::sysctl::Family;
    /// h.forwarding("cali1234", Family::V6, true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn forwarding(&self, dev: &str, family: Family, on: bool) -> Result<(), SysctlError> {
        self.iface_sysctl_set(family, dev, "forwarding", bool_str(on)).await
    }

    /// Delay before answering a proxied ARP request on `dev`
    /// (`net.ipv4.neigh.DEV.proxy_delay`). The kernel counts in clock ticks
    /// (`USER_HZ`, 100 per second): `ms` is rounded up to the next tick, so 0
    /// means "answer at once" (what Calico sets).
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::sysctl::SysctlError> {
    /// h.proxy_delay("cali1234", 0).await?;
    /// # Ok(()) }
    /// ```
    pub async fn proxy_delay(&self, dev: &str, ms: u32) -> Result<(), SysctlError> {
        let ticks = (u64::from(ms) * user_hz()).div_ceil(1000);
        self.sysctl_write(Key::neigh(Family::V4, dev, "proxy_delay")?, ticks.to_string())
            .await
    }
}

/// Clock ticks per second as sysctls count them (USER_HZ).
fn user_hz() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// The host name of the calling process (`kernel.hostname` of its UTS namespace, which a
/// network namespace does not change): the default node name of `netkit agent` and of the
/// pod records netkit-cni writes, so both name the node alike.
pub fn hostname() -> std::io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_sys() {
        assert_eq!(
            key_path("net.ipv4.conf.eth0/100.rp_filter").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
        assert_eq!(
            iface_path(Family::V6, "all", "forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv6/conf/all/forwarding")
        );
    }

    #[test]
    fn bad_keys_are_rejected() {
        for bad in [
            "",
            "net",
            "net.ipv4",
            "kernel.hostname",
            "net..ipv4.ip_forward",
            ".net.ipv4.ip_forward",
            "net.ipv4.ip_forward.",
            "net.ipv4.conf./.rp_filter",
            "net.ipv4.conf.//.rp_filter",
            "net.ipv4.conf.x\0.rp_filter",
            "net/ipv4/ip_forward",
        ] {
            let e = key_path(bad).unwrap_err();
            assert!(e.is_invalid(), "{bad:?}: {e}");
        }
        assert!(iface_path(Family::V4, "..", "rp_filter").is_err());
        assert!(iface_path(Family::V4, "a/b", "rp_filter").is_err());
        assert!(iface_path(Family::V4, "eth0", "../x").is_err());
        assert!(iface_path(Family::V4, "eth0", "").is_err());
    }

    #[test]
    fn slash_keys_become_dotted() {
        for (given, want) in [
            ("net/ipv4/ip_forward", "net.ipv4.ip_forward"),
            ("net/ipv4/conf/eth0.100/rp_filter", "net.ipv4.conf.eth0/100.rp_filter"),
            ("net.ipv4.ip_forward", "net.ipv4.ip_forward"),
            ("net.ipv4.conf.eth0/100.rp_filter", "net.ipv4.conf.eth0/100.rp_filter"),
            ("/net/ipv4/ip_forward", ".net.ipv4.ip_forward"),
            ("kernel", "kernel"),
            ("", ""),
        ] {
            assert_eq!(dotted_key(given), want, "{given}");
        }
        // Converted keys go through the same validation: outside net., empty parts.
        assert!(key_path(&dotted_key("kernel/hostname")).is_err());
        assert!(key_path(&dotted_key("/net/ipv4/ip_forward")).is_err());
        assert_eq!(
            key_path(&dotted_key("net/ipv4/conf/eth0.100/rp_filter")).unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
    }
}
