//! `netkit-ipam`: netkit's allocator as a CNI IPAM plugin, configured with host-local's keys.
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "podnet", "type": "bridge",
//!  "ipam": {"type": "netkit-ipam", "dataDir": "/var/lib/cni/netkit",
//!           "ranges": [[{"subnet": "10.22.0.0/16"}], [{"subnet": "fd22::/64"}]],
//!           "routes": [{"dst": "0.0.0.0/0"}], "resolvConf": "/etc/resolv.conf"}}
//! ```
//!
//! Besides host-local's keys, `ipam` takes `"sync": true` to fsync every change of the store
//! (records then survive a power cut, not only a killed process; each change costs a few
//! milliseconds more on most disks). `resolvConf` files are read up to 64 KiB; a larger one is
//! a configuration error (code 7).
//!
//! Verbs: ADD allocates (the same owner gets the same addresses back), DEL releases (idempotent),
//! CHECK verifies the owner still holds its addresses (and those of `prevResult`), GC releases
//! everything not in `cni.dev/valid-attachments`, STATUS answers 50 when the store is unusable,
//! VERSION lists 0.3.0 – 1.1.0. Specific addresses come from `CNI_ARGS` `IP=a[,b]`,
//! `args.cni.ips` or the `ips` capability (`runtimeConfig.ips`).
//!
//! Decisions: the default `dataDir` is `/var/lib/cni/netkit` (not host-local's
//! `/var/lib/cni/networks`, so the two never share a directory; move a node over with
//! `netkit-ipam import`); netkit's own error codes are 100 (pool exhausted), 101 (requested
//! address unavailable) and 102 (CHECK mismatch).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use netkit_core::ipam::{Allocation, ConfigError, Ipam, IpamConfig, IpamError, Owner, Pool, StoreOptions};
use serde_json::{json, Value};

use crate::spec::{
    CniEnv, CniError, Command, DnsResult, ErrorCode, IpResult, IpamResult, RouteResult, Version, SUPPORTED_VERSIONS,
};

/// Where stores live when the config names no `dataDir` (netkit-core's default, which the
/// `netkit ipam` command shares).
pub use netkit_core::ipam::DEFAULT_DATA_DIR;

/// The parts of a network configuration the IPAM plugin reads.
#[derive(Debug, Clone)]
pub struct NetConf {
    /// `cniVersion`.
    pub version: Version,
    /// `name`: the pool's name.
    pub name: String,
    /// The `ipam` object.
    pub ipam: IpamConfig,
    /// The whole configuration, for the keys only some verbs read.
    pub raw: Value,
}

impl NetConf {
    /// Parse stdin. Not JSON → code 6; unsupported `cniVersion` → 1; no `name` or `ipam`, or
    /// `ipam` not of host-local's shape → 7. Unknown keys are ignored.
    pub fn parse(input: &[u8]) -> Result<Self, CniError> {
        let base = NetConf::parse_base(input)?;
        let ipam = base
            .raw
            .get("ipam")
            .ok_or_else(|| CniError::new(ErrorCode::InvalidConfig, "ipam is missing"))?;
        let ipam: IpamConfig = serde_json::from_value(ipam.clone()).map_err(|e| config_error(ConfigError::Json(e)))?;
        Ok(NetConf { ipam, ..base })
    }

    fn parse_base(input: &[u8]) -> Result<Self, CniError> {
        if input.len() > crate::spec::MAX_CONFIG_BYTES {
            return Err(CniError::new(
                ErrorCode::Decode,
                format!("network configuration of {} bytes is too large", input.len()),
            ));
        }
        let raw: Value = serde_json::from_slice(input)
            .map_err(|e| CniError::new(ErrorCode::Decode, format!("network configuration is not JSON: {e}")))?;
        let Some(obj) = raw.as_object() else {
            return Err(CniError::new(
                ErrorCode::Decode,
                "network configuration is not a JSON object",
            ));
        };
        let version = match obj.get("cniVersion") {
            Some(Value::String(v)) => Version::parse(v)?,
            _ => {
                return Err(CniError::new(
                    ErrorCode::InvalidConfig,
                    "cniVersion is missing or not a string",
                ))
            }
        };
        let name = match obj.get("name") {
            Some(Value::String(n)) => n.clone(),
            _ => {
                return Err(CniError::new(
                    ErrorCode::InvalidConfig,
                    "name is missing or not a string",
                ))
            }
        };
        crate::plugin::attachment::check_network_name(&name).map_err(|m| CniError::new(ErrorCode::InvalidConfig, m))?;
        Ok(NetConf {
            version,
            name,
            ipam: IpamConfig::default(),
            raw,
        })
    }

    /// Parse the parts every plugin needs (version, name, the raw JSON) without reading `ipam`
    /// as host-local's keys (a delegated IPAM plugin has its own).
    pub fn parse_without_ipam(input: &[u8]) -> Result<Self, CniError> {
        NetConf::parse_base(input)
    }

    /// The pool: the configured ranges, or, when given, the `ipRanges` capability
    /// (`runtimeConfig.ipRanges`) in their place, as host-local does.
    pub fn pool(&self) -> Result<Pool, CniError> {
        match self.raw.get("runtimeConfig").and_then(|r| r.get("ipRanges")) {
            Some(ranges) if !ranges.is_null() => {
                let mut ipam = self.ipam.clone();
                ipam.ranges =
                    Some(serde_json::from_value(ranges.clone()).map_err(|e| {
                        CniError::new(ErrorCode::InvalidConfig, format!("runtimeConfig.ipRanges: {e}"))
                    })?);
                ipam.subnet = None;
                ipam.pool(&self.name).map_err(config_error)
            }
            _ => self.ipam.pool(&self.name).map_err(config_error),
        }
    }

    /// Open the pool's allocator (see [`NetConf::pool`]) in `dataDir`; the `ipam` key `sync`
    /// (default `false`) makes the store fsync every change, so it survives a power cut.
    pub fn open(&self) -> Result<Ipam, CniError> {
        let pool = self.pool()?;
        let dns = self.ipam.dns().map_err(config_error)?;
        let dir = self
            .ipam
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let options = StoreOptions {
            sync: self.ipam.sync,
            ..StoreOptions::default()
        };
        Ok(Ipam::open(pool, &dir, options).map_err(ipam_error)?.with_dns(dns))
    }

    /// Addresses asked for through `args.cni.ips` and `runtimeConfig.ips`.
    fn requested_ips(&self) -> Result<Vec<IpAddr>, CniError> {
        let mut out = Vec::new();
        for list in [&self.raw["args"]["cni"]["ips"], &self.raw["runtimeConfig"]["ips"]] {
            for v in list.as_array().into_iter().flatten() {
                let s = v.as_str().ok_or_else(|| {
                    CniError::new(ErrorCode::InvalidConfig, format!("requested ip {v} is not a string"))
                })?;
                out.push(parse_ip(s).map_err(|m| CniError::new(ErrorCode::InvalidConfig, m))?);
            }
        }
        Ok(out)
    }

    /// `cni.dev/valid-attachments` of a GC request (also read as `cni.dev/attachments`, the
    /// name a draft of spec 1.1.0 used). A missing or malformed list is an error: releasing
    /// every address because a runtime spelled the key differently would be a disaster.
    pub fn valid_attachments(&self) -> Result<Vec<Owner>, CniError> {
        let bad = |m: String| CniError::new(ErrorCode::InvalidConfig, format!("GC: {m}"));
        let list = ["cni.dev/valid-attachments", "cni.dev/attachments"]
            .iter()
            .find_map(|k| self.raw.get(*k))
            .ok_or_else(|| bad("cni.dev/valid-attachments is missing".into()))?
            .as_array()
            .ok_or_else(|| bad("cni.dev/valid-attachments is not a list".into()))?;
        let mut out = Vec::new();
        for a in list {
            let field = |k: &str| {
                a.get(k)
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("attachment {a} has no string {k}")))
            };
            let owner = Owner::new(field("containerID")?, field("ifname")?)
                .map_err(|e| bad(format!("cni.dev/valid-attachments: {e}")))?;
            out.push(owner);
        }
        Ok(out)
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .or_else(|_| s.parse::<IpNetwork>().map(|n| n.ip()))
        .map(|ip| ip.to_canonical())
        .map_err(|_| format!("requested ip {s:?} is not an address"))
}

/// Map a configuration error to CNI code 7.
pub fn config_error(e: ConfigError) -> CniError {
    CniError::new(ErrorCode::InvalidConfig, e.to_string())
}

/// Map an allocator error to its CNI code.
pub fn ipam_error(e: IpamError) -> CniError {
    let code = match &e {
        IpamError::Config(_) | IpamError::NotAStore { .. } => ErrorCode::InvalidConfig,
        IpamError::BadOwner { .. } => ErrorCode::InvalidEnv,
        IpamError::Io { .. } | IpamError::Corrupt { .. } => ErrorCode::Io,
        // A lock held too long (a hung process): the runtime may retry later.
        IpamError::LockTimeout { .. } => ErrorCode::TryAgainLater,
        IpamError::Exhausted { .. } => ErrorCode::PoolExhausted,
        IpamError::OutsidePool { .. }
        | IpamError::Reserved { .. }
        | IpamError::InUse { .. }
        | IpamError::AlreadyHolds { .. }
        | IpamError::SameSet { .. } => ErrorCode::AddressUnavailable,
    };
    CniError::new(code, e.to_string())
}

/// The CNI result of an allocation.
pub fn to_result(a: &Allocation) -> IpamResult {
    IpamResult {
        interfaces: Vec::new(),
        ips: a
            .ips
            .iter()
            .map(|ip| IpResult {
                address: ip.address,
                gateway: Some(ip.gateway),
                interface: None,
            })
            .collect(),
        routes: a.routes.iter().map(|r| RouteResult { dst: r.dst, gw: r.gw }).collect(),
        dns: a
            .dns
            .as_ref()
            .map(|d| DnsResult {
                nameservers: d.nameservers.clone(),
                domain: d.domain.clone(),
                search: d.search.clone(),
                options: d.options.clone(),
            })
            .unwrap_or_default(),
    }
}

/// The IPAM owner of the attachment `env` names.
pub fn owner(env: &CniEnv) -> Result<Owner, CniError> {
    Owner::new(
        env.container_id.as_deref().unwrap_or_default(),
        env.ifname.as_deref().unwrap_or_default(),
    )
    .map_err(ipam_error)
}

/// Run one plugin invocation: `env` and stdin in, stdout text (if any) out.
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<String>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(version_answer(stdin)));
    }
    let conf = NetConf::parse(stdin)?;
    match env.command {
        Command::Add => {
            env.args.check_known(&["IP"])?;
            Ok(Some(add(&conf, env)?.to_json(conf.version).to_string()))
        }
        Command::Del => {
            del(&conf, env)?;
            Ok(None)
        }
        Command::Check => {
            if !conf.version.has_check() {
                return Err(CniError::new(
                    ErrorCode::IncompatibleVersion,
                    format!("CHECK needs cniVersion 0.4.0 or later, not {}", conf.version),
                ));
            }
            check(&conf, &owner(env)?)?;
            Ok(None)
        }
        Command::Gc => {
            if !conf.version.has_gc_and_status() {
                return Err(CniError::new(
                    ErrorCode::IncompatibleVersion,
                    format!("GC needs cniVersion 1.1.0, not {}", conf.version),
                ));
            }
            gc(&conf)?;
            Ok(None)
        }
        Command::Status => status(&conf).map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
}

/// STATUS: the store can be opened and written (code 50 otherwise).
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    let ipam = conf.open().map_err(|e| CniError::new(ErrorCode::NotAvailable, e.msg))?;
    ipam.store()
        .probe()
        .map_err(|e| CniError::new(ErrorCode::NotAvailable, e.to_string()))
}

/// The addresses the attachment asks for: `CNI_ARGS` `IP=`, `args.cni.ips`, the `ips`
/// capability.
fn wanted(conf: &NetConf, env: &CniEnv) -> Result<Vec<IpAddr>, CniError> {
    let mut wanted = Vec::new();
    for s in env.args.get("IP").into_iter().flat_map(|v| v.split(',')) {
        wanted.push(parse_ip(s).map_err(|m| CniError::new(ErrorCode::InvalidEnv, format!("CNI_ARGS IP: {m}")))?);
    }
    wanted.extend(conf.requested_ips()?);
    wanted.sort();
    wanted.dedup();
    Ok(wanted)
}

/// Check the pool, the owner and the requested addresses without touching the store.
pub fn validate(conf: &NetConf, env: &CniEnv) -> Result<(), CniError> {
    owner(env)?;
    wanted(conf, env)?;
    conf.pool()?;
    Ok(())
}

/// ADD: allocate for the attachment `env` names (specific addresses from `CNI_ARGS` `IP=`,
/// `args.cni.ips` and the `ips` capability).
pub fn add(conf: &NetConf, env: &CniEnv) -> Result<IpamResult, CniError> {
    allocate(conf, env).map(|(result, _)| result)
}

/// [`add`], also telling whether the attachment held nothing before (`true`): a caller that
/// undoes a failed ADD releases only then, never the addresses a live attachment of the same
/// container ID and interface holds.
pub fn allocate(conf: &NetConf, env: &CniEnv) -> Result<(IpamResult, bool), CniError> {
    let wanted = wanted(conf, env)?;
    let ipam = conf.open()?;
    let got = ipam.allocate(&owner(env)?, &wanted).map_err(ipam_error)?;
    Ok((to_result(&got), got.held_before.is_empty()))
}

/// DEL: release what the attachment holds (idempotent).
pub fn del(conf: &NetConf, env: &CniEnv) -> Result<(), CniError> {
    conf.open()?.release(&owner(env)?).map_err(ipam_error).map(drop)
}

/// GC: release everything not in `cni.dev/valid-attachments`.
pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    conf.open()?
        .gc(&conf.valid_attachments()?)
        .map_err(ipam_error)
        .map(drop)
}

/// CHECK: the attachment still holds its addresses (and those of `prevResult`).
pub fn check(conf: &NetConf, owner: &Owner) -> Result<(), CniError> {
    let ipam = conf.open()?;
    let held = ipam.lookup(owner).map_err(ipam_error)?;
    if held.is_empty() {
        return Err(CniError::new(
            ErrorCode::CheckFailed,
            format!("{owner} holds no address in pool {:?}", conf.name),
        ));
    }
    if let Some(prev) = conf.raw.get("prevResult") {
        for ip in IpamResult::from_json(prev)?.ips {
            let addr = ip.address.ip();
            if ipam.pool().set_of(addr).is_some() && !held.contains(&addr) {
                return Err(CniError::new(
                    ErrorCode::CheckFailed,
                    format!("{owner} does not hold {addr} of its prevResult in pool {:?}", conf.name),
                ));
            }
        }
    }
    Ok(())
}

/// The VERSION answer, in the version the request names (or the latest).
pub fn version_answer(stdin: &[u8]) -> String {
    json!({"cniVersion": error_version(stdin), "supportedVersions": SUPPORTED_VERSIONS}).to_string()
}

/// The version errors are reported in: the config's, when it names a supported one.
pub fn error_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion").and_then(Value::as_str).map(str::to_string))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| Version::LATEST.to_string())
}

/// `netkit-ipam import <host-local dir>` with the network configuration on stdin: copy a
/// host-local data directory's reservations into the pool's netkit store. Returns a report.
pub fn import(from: &Path, stdin: &[u8]) -> Result<String, CniError> {
    let conf = NetConf::parse(stdin)?;
    let ipam = conf.open()?;
    let r = ipam.import_host_local(from, "eth0").map_err(ipam_error)?;
    let mut out = format!(
        "imported {} addresses ({} already held) into {}\n",
        r.imported.len(),
        r.already_held,
        ipam.store().dir().display()
    );
    for (ip, theirs, ours) in &r.conflicts {
        out += &format!("conflict: {ip} is held by {theirs} in netkit's store, host-local gave it to {ours}\n");
    }
    for (path, why) in &r.skipped {
        out += &format!("skipped {}: {why}\n", path.display());
    }
    Ok(out)
}
