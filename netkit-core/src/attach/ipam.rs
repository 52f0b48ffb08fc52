//! netkit's allocator as an attachment's IPAM step (and as the `netkit-ipam` plugin's whole
//! work), configured with the reference host-local plugin's keys in the configuration's `ipam`
//! object, plus `"sync": true` (fsync every change of the store). The `dataDir` default is
//! [`DEFAULT_DATA_DIR`]; specific addresses come from the attachment's `IP` argument,
//! `args.cni.ips` or the `ips` capability (`runtimeConfig.ips`); `runtimeConfig.ipRanges`
//! replaces the configured ranges.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::attachment::Attachment;
use super::error::{AttachError, ErrorKind};
use super::result::{CniResult, DnsResult, IpResult, RouteResult};
use super::version::Version;
use crate::ipam::{Allocation, ConfigError, Ipam, IpamConfig, IpamError, Owner, Pool, StoreOptions, DEFAULT_DATA_DIR};

/// The parts of a network configuration the IPAM plugin reads.
#[derive(Debug, Clone)]
pub struct IpamNetwork {
    /// `cniVersion`.
    pub version: Version,
    /// `name`: the pool's name.
    pub name: String,
    /// The `ipam` object.
    pub ipam: IpamConfig,
    /// The whole configuration, for the keys only some verbs read.
    pub raw: Value,
}

impl IpamNetwork {
    /// Parse a network configuration. Not JSON → [`ErrorKind::Decode`]; unsupported
    /// `cniVersion` → [`ErrorKind::IncompatibleVersion`]; no `name` or `ipam`, or `ipam` not of
    /// host-local's shape → [`ErrorKind::InvalidConfig`]. Unknown keys are ignored.
    pub fn parse(input: &[u8]) -> Result<Self, AttachError> {
        let base = IpamNetwork::parse_base(input)?;
        let ipam = base
            .raw
            .get("ipam")
            .ok_or_else(|| AttachError::new(ErrorKind::InvalidConfig, "ipam is missing"))?;
        let ipam: IpamConfig = serde_json::from_value(ipam.clone()).map_err(|e| config_error(ConfigError::Json(e)))?;
        Ok(IpamNetwork { ipam, ..base })
    }

    fn parse_base(input: &[u8]) -> Result<Self, AttachError> {
        if input.len() > super::MAX_CONFIG_BYTES {
            return Err(AttachError::new(
                ErrorKind::Decode,
                format!("network configuration of {} bytes is too large", input.len()),
            ));
        }
        let raw: Value = serde_json::from_slice(input)
            .map_err(|e| AttachError::new(ErrorKind::Decode, format!("network configuration is not JSON: {e}")))?;
        let Some(obj) = raw.as_object() else {
            return Err(AttachError::new(
                ErrorKind::Decode,
                "network configuration is not a JSON object",
            ));
        };
        let version = match obj.get("cniVersion") {
            Some(Value::String(v)) => Version::parse(v)?,
            _ => {
                return Err(AttachError::new(
                    ErrorKind::InvalidConfig,
                    "cniVersion is missing or not a string",
                ))
            }
        };
        let name = match obj.get("name") {
            Some(Value::String(n)) => n.clone(),
            _ => {
                return Err(AttachError::new(
                    ErrorKind::InvalidConfig,
                    "name is missing or not a string",
                ))
            }
        };
        super::names::check_network_name(&name).map_err(|m| AttachError::new(ErrorKind::InvalidConfig, m))?;
        Ok(IpamNetwork {
            version,
            name,
            ipam: IpamConfig::default(),
            raw,
        })
    }

    /// Parse the parts every plugin needs (version, name, the raw JSON) without reading `ipam`
    /// as host-local's keys (a delegated IPAM plugin has its own).
    pub fn parse_without_ipam(input: &[u8]) -> Result<Self, AttachError> {
        IpamNetwork::parse_base(input)
    }

    /// The pool: the configured ranges, or, when given, the `ipRanges` capability
    /// (`runtimeConfig.ipRanges`) in their place, as host-local does.
    pub fn pool(&self) -> Result<Pool, AttachError> {
        match self.raw.get("runtimeConfig").and_then(|r| r.get("ipRanges")) {
            Some(ranges) if !ranges.is_null() => {
                let mut ipam = self.ipam.clone();
                ipam.ranges =
                    Some(serde_json::from_value(ranges.clone()).map_err(|e| {
                        AttachError::new(ErrorKind::InvalidConfig, format!("runtimeConfig.ipRanges: {e}"))
                    })?);
                ipam.subnet = None;
                ipam.pool(&self.name).map_err(config_error)
            }
            _ => self.ipam.pool(&self.name).map_err(config_error),
        }
    }

    /// Open the pool's allocator (see [`IpamNetwork::pool`]) in `dataDir`; the `ipam` key `sync`
    /// (default `false`) makes the store fsync every change, so it survives a power cut.
    pub fn open(&self) -> Result<Ipam, AttachError> {
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
    fn requested_ips(&self) -> Result<Vec<IpAddr>, AttachError> {
        let mut out = Vec::new();
        for list in [&self.raw["args"]["cni"]["ips"], &self.raw["runtimeConfig"]["ips"]] {
            for v in list.as_array().into_iter().flatten() {
                let s = v.as_str().ok_or_else(|| {
                    AttachError::new(ErrorKind::InvalidConfig, format!("requested ip {v} is not a string"))
                })?;
                out.push(parse_ip(s).map_err(|m| AttachError::new(ErrorKind::InvalidConfig, m))?);
            }
        }
        Ok(out)
    }

    /// `cni.dev/valid-attachments` of a GC request (also read as `cni.dev/attachments`, the
    /// name a draft of spec 1.1.0 used). A missing or malformed list is an error: releasing
    /// every address because a runtime spelled the key differently would be a disaster.
    pub fn valid_attachments(&self) -> Result<Vec<Owner>, AttachError> {
        let bad = |m: String| AttachError::new(ErrorKind::InvalidConfig, format!("GC: {m}"));
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

/// A configuration error: [`ErrorKind::InvalidConfig`].
pub fn config_error(e: ConfigError) -> AttachError {
    AttachError::new(ErrorKind::InvalidConfig, e.to_string())
}

/// An allocator error as an attach error of its kind.
pub fn ipam_error(e: IpamError) -> AttachError {
    let code = match &e {
        IpamError::Config(_) | IpamError::NotAStore { .. } => ErrorKind::InvalidConfig,
        IpamError::BadOwner { .. } => ErrorKind::InvalidAttachment,
        IpamError::Io { .. } | IpamError::Corrupt { .. } => ErrorKind::Io,
        // A lock held too long (a hung process): the runtime may retry later.
        IpamError::LockTimeout { .. } => ErrorKind::TryAgainLater,
        IpamError::Exhausted { .. } => ErrorKind::PoolExhausted,
        IpamError::OutsidePool { .. }
        | IpamError::Reserved { .. }
        | IpamError::InUse { .. }
        | IpamError::AlreadyHolds { .. }
        | IpamError::SameSet { .. } => ErrorKind::AddressUnavailable,
    };
    AttachError::new(code, e.to_string())
}

/// The result of an allocation.
pub fn to_result(a: &Allocation) -> CniResult {
    CniResult {
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

/// The IPAM owner of `att`.
pub fn owner(att: &Attachment) -> Result<Owner, AttachError> {
    Owner::new(&att.container_id, &att.ifname).map_err(ipam_error)
}

/// The IPAM verbs on one network's allocator.
impl IpamNetwork {
    /// STATUS: the store can be opened and written ([`ErrorKind::NotAvailable`] otherwise).
    pub fn status(&self) -> Result<(), AttachError> {
        let ipam = self
            .open()
            .map_err(|e| AttachError::new(ErrorKind::NotAvailable, e.msg))?;
        ipam.store()
            .probe()
            .map_err(|e| AttachError::new(ErrorKind::NotAvailable, e.to_string()))
    }

    /// The addresses the attachment asks for: its `IP` argument, `args.cni.ips`, the `ips`
    /// capability.
    fn wanted(&self, att: &Attachment) -> Result<Vec<IpAddr>, AttachError> {
        let mut wanted = Vec::new();
        for s in att.arg_value("IP").into_iter().flat_map(|v| v.split(',')) {
            wanted.push(
                parse_ip(s).map_err(|m| AttachError::new(ErrorKind::InvalidAttachment, format!("CNI_ARGS IP: {m}")))?,
            );
        }
        wanted.extend(self.requested_ips()?);
        wanted.sort();
        wanted.dedup();
        Ok(wanted)
    }

    /// Check the pool, the owner and the requested addresses without touching the store.
    pub fn validate(&self, att: &Attachment) -> Result<(), AttachError> {
        owner(att)?;
        self.wanted(att)?;
        self.pool()?;
        Ok(())
    }

    /// ADD: allocate for `att` (specific addresses from the `IP` argument,
    /// `args.cni.ips` and the `ips` capability).
    pub fn add(&self, att: &Attachment) -> Result<CniResult, AttachError> {
        self.allocate(att).map(|(result, _)| result)
    }

    /// [`IpamNetwork::add`], also telling whether the attachment held nothing before (`true`): a caller that
    /// undoes a failed ADD releases only then, never the addresses a live attachment of the same
    /// container ID and interface holds.
    pub fn allocate(&self, att: &Attachment) -> Result<(CniResult, bool), AttachError> {
        let wanted = self.wanted(att)?;
        let ipam = self.open()?;
        let got = ipam.allocate(&owner(att)?, &wanted).map_err(ipam_error)?;
        Ok((to_result(&got), got.held_before.is_empty()))
    }

    /// DEL: release what the attachment holds (idempotent).
    pub fn del(&self, att: &Attachment) -> Result<(), AttachError> {
        self.open()?.release(&owner(att)?).map_err(ipam_error).map(drop)
    }

    /// GC: release everything not in `cni.dev/valid-attachments`.
    pub fn gc(&self) -> Result<(), AttachError> {
        self.open()?
            .gc(&self.valid_attachments()?)
            .map_err(ipam_error)
            .map(drop)
    }

    /// CHECK: the attachment still holds its addresses (and those of `prevResult`).
    pub fn check(&self, owner: &Owner) -> Result<(), AttachError> {
        let ipam = self.open()?;
        let held = ipam.lookup(owner).map_err(ipam_error)?;
        if held.is_empty() {
            return Err(AttachError::new(
                ErrorKind::CheckFailed,
                format!("{owner} holds no address in pool {:?}", self.name),
            ));
        }
        if let Some(prev) = self.raw.get("prevResult") {
            for ip in CniResult::from_json(prev)?.ips {
                let addr = ip.address.ip();
                if ipam.pool().set_of(addr).is_some() && !held.contains(&addr) {
                    return Err(AttachError::new(
                        ErrorKind::CheckFailed,
                        format!("{owner} does not hold {addr} of its prevResult in pool {:?}", self.name),
                    ));
                }
            }
        }
        Ok(())
    }
}
