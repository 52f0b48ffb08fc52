//! The IPAM step of an attachment: netkit's allocator in-process for `"type": "netkit-ipam"`,
//! any other type executed as a delegated CNI IPAM plugin found in [`Host::cni_path`], as the
//! CNI spec describes (the same configuration on stdin, `CNI_COMMAND` set to the verb, the
//! attachment's `CNI_*` variables).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::attachment::{Attachment, Host};
use super::error::{AttachError, ErrorKind};
use super::ipam::IpamNetwork;
use super::result::CniResult;
use crate::ipam::Pool;

/// The IPAM of one network configuration.
#[derive(Debug, Clone)]
pub enum IpamStep {
    /// netkit's allocator, in this process.
    InProcess(Box<IpamNetwork>),
    /// Another plugin, run with the attachment's environment and the same configuration.
    Delegate {
        /// Its type (file name in [`Host::cni_path`]).
        kind: String,
        /// The configuration, as the runtime gave it.
        config: Vec<u8>,
    },
}

impl IpamStep {
    /// The IPAM named by `ipam.type`, for the configuration `input`.
    pub fn of(kind: &str, input: &[u8]) -> Result<Self, AttachError> {
        if kind == "netkit-ipam" {
            Ok(IpamStep::InProcess(Box::new(IpamNetwork::parse(input)?)))
        } else {
            Ok(IpamStep::Delegate {
                kind: kind.to_string(),
                config: input.to_vec(),
            })
        }
    }

    /// Check what can be checked without allocating (the pool, the owner, requested
    /// addresses; a delegated plugin can be found), so a bad request is refused before
    /// anything changes.
    pub fn validate(&self, att: &Attachment) -> Result<(), AttachError> {
        match self {
            IpamStep::InProcess(conf) => conf.validate(att),
            IpamStep::Delegate { kind, .. } => find(&att.host, kind).map(drop),
        }
    }

    /// True for a delegated plugin.
    pub fn is_delegate(&self) -> bool {
        matches!(self, IpamStep::Delegate { .. })
    }

    /// The pool addresses must come from (routed mode installs a host route for each, so it
    /// checks them first): the in-process allocator's, or, for a delegated plugin, the
    /// host-local keys (`ranges`, `subnet`) or `ipRanges` capability of its configuration. A
    /// delegated configuration without them cannot be checked, and routed mode refuses it.
    pub fn pool(&self) -> Result<Pool, AttachError> {
        match self {
            IpamStep::InProcess(conf) => conf.pool(),
            IpamStep::Delegate { kind, config } => IpamNetwork::parse(config).and_then(|c| c.pool()).map_err(|e| {
                AttachError::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "routed mode checks every address the IPAM plugin {kind} hands out against \
                         the pool, which it reads from ipam.ranges or ipam.subnet (host-local's keys) \
                         or the ipRanges capability: {}",
                        e.msg
                    ),
                )
            }),
        }
    }

    /// The subnets of the pool addresses come from: the in-process allocator's ranges; a
    /// delegated plugin's are the subnets its addresses came with (`result`, before routed mode
    /// narrows them to /32).
    pub fn subnets(&self, result: &CniResult) -> Vec<ipnetwork::IpNetwork> {
        match self {
            IpamStep::InProcess(conf) => conf
                .pool()
                .map(|p| {
                    p.sets()
                        .iter()
                        .flat_map(|s| s.ranges().iter().map(|r| r.subnet()))
                        .collect()
                })
                .unwrap_or_default(),
            IpamStep::Delegate { .. } => result
                .ips
                .iter()
                .filter_map(|i| ipnetwork::IpNetwork::new(i.address.network(), i.address.prefix()).ok())
                .collect(),
        }
    }

    /// Allocate; also whether the attachment held nothing before (see
    /// [`IpamNetwork::allocate`]; a delegated plugin's answer is taken as new).
    pub fn add(&self, att: &Attachment) -> Result<(CniResult, bool), AttachError> {
        match self {
            IpamStep::InProcess(conf) => conf.allocate(att),
            IpamStep::Delegate { kind, config } => {
                let out = delegate(&att.host, Some(att), kind, "ADD", config)?;
                let value = serde_json::from_str(&out).map_err(|e| {
                    AttachError::new(
                        ErrorKind::Decode,
                        format!("IPAM plugin {kind} answered no JSON result: {e}"),
                    )
                })?;
                CniResult::from_json(&value).map(|r| (r, true))
            }
        }
    }

    /// Release (idempotent).
    pub fn del(&self, att: &Attachment) -> Result<(), AttachError> {
        match self {
            IpamStep::InProcess(conf) => conf.del(att),
            IpamStep::Delegate { kind, config } => delegate(&att.host, Some(att), kind, "DEL", config).map(drop),
        }
    }

    /// Verify.
    pub fn check(&self, att: &Attachment) -> Result<(), AttachError> {
        match self {
            IpamStep::InProcess(conf) => conf.check(&super::ipam::owner(att)?),
            IpamStep::Delegate { kind, config } => delegate(&att.host, Some(att), kind, "CHECK", config).map(drop),
        }
    }

    /// Garbage-collect (CNI 1.1's GC).
    pub fn gc(&self, host: &Host) -> Result<(), AttachError> {
        match self {
            IpamStep::InProcess(conf) => conf.gc(),
            IpamStep::Delegate { kind, config } => delegate(host, None, kind, "GC", config).map(drop),
        }
    }

    /// Readiness (CNI 1.1's STATUS).
    pub fn status(&self, host: &Host) -> Result<(), AttachError> {
        match self {
            IpamStep::InProcess(conf) => conf.status(),
            IpamStep::Delegate { kind, config } => delegate(host, None, kind, "STATUS", config).map(drop),
        }
    }
}

/// Set in a delegated IPAM plugin's environment: a netkit plugin that finds it set refuses to
/// delegate again, so no configuration can make plugins run each other without end.
pub const DEPTH_VAR: &str = "NETKIT_CNI_DELEGATED";

/// Find `kind` in [`Host::cni_path`]. Refused: a name that is no file name, this very program
/// (`ipam.type` naming the main plugin would make it run itself), and any delegation from a
/// process that is itself a delegate.
fn find(host: &Host, kind: &str) -> Result<PathBuf, AttachError> {
    if kind.is_empty() || kind.contains('/') || kind.len() > 255 {
        return Err(AttachError::new(
            ErrorKind::InvalidConfig,
            format!(
                "ipam.type {:?} is not a plugin name",
                kind.chars().take(64).collect::<String>()
            ),
        ));
    }
    if std::env::var_os(DEPTH_VAR).is_some() {
        return Err(AttachError::new(
            ErrorKind::InvalidConfig,
            format!("ipam.type {kind:?}: this plugin runs as another plugin's IPAM and does not delegate again"),
        ));
    }
    let bin = host
        .cni_path
        .iter()
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            AttachError::new(
                ErrorKind::InvalidConfig,
                format!("IPAM plugin {kind:?} not found in CNI_PATH {:?}", host.cni_path),
            )
        })?;
    if is_this_program(&bin) {
        return Err(AttachError::new(
            ErrorKind::InvalidConfig,
            format!("ipam.type {kind:?} is this plugin itself ({})", bin.display()),
        ));
    }
    Ok(bin)
}

/// True when `path` is the running executable (same device and inode).
fn is_this_program(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), std::fs::metadata("/proc/self/exe")) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Run a delegated plugin: `CNI_COMMAND` set to `command`; `CNI_CONTAINERID`, `CNI_IFNAME`,
/// `CNI_NETNS` and `CNI_ARGS` from `att` (removed when it has none: GC, STATUS, a DEL without
/// namespace); `CNI_PATH` from `host`; the rest of this process's environment; the same
/// configuration on stdin. Its CNI error comes back as [`ErrorKind::Plugin`] with its code.
fn delegate(
    host: &Host,
    att: Option<&Attachment>,
    kind: &str,
    command: &str,
    stdin: &[u8],
) -> Result<String, AttachError> {
    let bin = find(host, kind)?;
    let mut cmd = Command::new(&bin);
    let paths: Vec<String> = host.cni_path.iter().map(|p| p.display().to_string()).collect();
    cmd.env("CNI_COMMAND", command).env("CNI_PATH", paths.join(":"));
    let vars = [
        ("CNI_CONTAINERID", att.map(|a| a.container_id.clone())),
        ("CNI_IFNAME", att.map(|a| a.ifname.clone())),
        ("CNI_NETNS", att.and_then(|a| a.netns.clone())),
        ("CNI_ARGS", att.map(Attachment::args_text).filter(|a| !a.is_empty())),
    ];
    for (k, v) in vars {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd
        .env(DEPTH_VAR, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| AttachError::new(ErrorKind::Io, format!("running IPAM plugin {}: {e}", bin.display())))?;
    let mut pipe = child.stdin.take().expect("piped");
    let _ = pipe.write_all(stdin);
    drop(pipe);
    let out = child
        .wait_with_output()
        .map_err(|e| AttachError::new(ErrorKind::Io, format!("waiting for IPAM plugin {kind}: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(text);
    }
    let err: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let code = err["code"].as_u64().map(|c| c as u32).filter(|c| *c != 0).unwrap_or(5);
    let msg = err["msg"].as_str().unwrap_or(text.trim());
    Err(AttachError::new(
        ErrorKind::Plugin(code),
        format!("IPAM plugin {kind} {command}: {msg}"),
    ))
}
