//! The plugin's IPAM step: netkit's allocator in-process for `"type": "netkit-ipam"`, any other
//! type executed as a delegated plugin from `CNI_PATH`, as the spec describes.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::ipam::{self as nkipam, NetConf};
use crate::spec::{CniEnv, CniError, ErrorCode, IpamResult};
use netkit_core::ipam::Pool;

/// The IPAM of one network configuration.
pub enum Ipam<'a> {
    /// netkit's allocator, in this process.
    InProcess(Box<NetConf>),
    /// Another plugin, run with the same environment and configuration.
    Delegate {
        /// Its type (file name in `CNI_PATH`).
        kind: String,
        /// The configuration, as the runtime gave it.
        stdin: &'a [u8],
    },
}

impl<'a> Ipam<'a> {
    /// The IPAM named by `ipam.type`.
    pub fn of(kind: &str, stdin: &'a [u8]) -> Result<Self, CniError> {
        if kind == "netkit-ipam" {
            Ok(Ipam::InProcess(Box::new(NetConf::parse(stdin)?)))
        } else {
            Ok(Ipam::Delegate {
                kind: kind.to_string(),
                stdin,
            })
        }
    }

    /// Check what can be checked without allocating (the pool, the owner, requested
    /// addresses), so a bad request is refused before anything changes.
    pub fn validate(&self, env: &CniEnv) -> Result<(), CniError> {
        match self {
            Ipam::InProcess(conf) => nkipam::validate(conf, env),
            Ipam::Delegate { kind, .. } => find(env, kind).map(drop),
        }
    }

    /// True for a delegated plugin.
    pub fn is_delegate(&self) -> bool {
        matches!(self, Ipam::Delegate { .. })
    }

    /// The pool addresses must come from (routed mode installs a host route for each, so it
    /// checks them first): the in-process allocator's, or, for a delegated plugin, the
    /// host-local keys (`ranges`, `subnet`) or `ipRanges` capability of its configuration. A
    /// delegated configuration without them cannot be checked, and routed mode refuses it.
    pub fn pool(&self) -> Result<Pool, CniError> {
        match self {
            Ipam::InProcess(conf) => conf.pool(),
            Ipam::Delegate { kind, stdin } => NetConf::parse(stdin).and_then(|c| c.pool()).map_err(|e| {
                CniError::new(
                    ErrorCode::InvalidConfig,
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

    /// Allocate; also whether the attachment held nothing before (see
    /// [`nkipam::allocate`]; a delegated plugin's answer is taken as new).
    pub fn add(&self, env: &CniEnv) -> Result<(IpamResult, bool), CniError> {
        match self {
            Ipam::InProcess(conf) => nkipam::allocate(conf, env),
            Ipam::Delegate { kind, stdin } => {
                let out = delegate(env, kind, "ADD", stdin)?;
                let value = serde_json::from_str(&out).map_err(|e| {
                    CniError::new(
                        ErrorCode::Decode,
                        format!("IPAM plugin {kind} answered no JSON result: {e}"),
                    )
                })?;
                IpamResult::from_json(&value).map(|r| (r, true))
            }
        }
    }

    /// Release (idempotent).
    pub fn del(&self, env: &CniEnv) -> Result<(), CniError> {
        match self {
            Ipam::InProcess(conf) => nkipam::del(conf, env),
            Ipam::Delegate { kind, stdin } => delegate(env, kind, "DEL", stdin).map(drop),
        }
    }

    /// Verify.
    pub fn check(&self, env: &CniEnv) -> Result<(), CniError> {
        match self {
            Ipam::InProcess(conf) => nkipam::check(conf, &nkipam::owner(env)?),
            Ipam::Delegate { kind, stdin } => delegate(env, kind, "CHECK", stdin).map(drop),
        }
    }

    /// Garbage-collect (spec 1.1).
    pub fn gc(&self, env: &CniEnv) -> Result<(), CniError> {
        match self {
            Ipam::InProcess(conf) => nkipam::gc(conf),
            Ipam::Delegate { kind, stdin } => delegate(env, kind, "GC", stdin).map(drop),
        }
    }

    /// Readiness (spec 1.1).
    pub fn status(&self, env: &CniEnv) -> Result<(), CniError> {
        match self {
            Ipam::InProcess(conf) => nkipam::status(conf),
            Ipam::Delegate { kind, stdin } => delegate(env, kind, "STATUS", stdin).map(drop),
        }
    }
}

/// Set in a delegated IPAM plugin's environment: a netkit plugin that finds it set refuses to
/// delegate again, so no configuration can make plugins run each other without end.
pub const DEPTH_VAR: &str = "NETKIT_CNI_DELEGATED";

/// Find `kind` in `CNI_PATH`. Refused: a name that is no file name, this very program
/// (`ipam.type` naming the main plugin would make it run itself), and any delegation from a
/// process that is itself a delegate.
fn find(env: &CniEnv, kind: &str) -> Result<PathBuf, CniError> {
    if kind.is_empty() || kind.contains('/') || kind.len() > 255 {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            format!(
                "ipam.type {:?} is not a plugin name",
                kind.chars().take(64).collect::<String>()
            ),
        ));
    }
    if std::env::var_os(DEPTH_VAR).is_some() {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            format!("ipam.type {kind:?}: this plugin runs as another plugin's IPAM and does not delegate again"),
        ));
    }
    let bin = env
        .path
        .iter()
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidConfig,
                format!("IPAM plugin {kind:?} not found in CNI_PATH {:?}", env.path),
            )
        })?;
    if is_this_program(&bin) {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
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

/// Run a delegated plugin: `CNI_COMMAND` set to `command`, the rest of the environment as this
/// plugin got it, the same configuration on stdin. Its CNI error comes back as ours.
fn delegate(env: &CniEnv, kind: &str, command: &str, stdin: &[u8]) -> Result<String, CniError> {
    let bin = find(env, kind)?;
    let mut child = Command::new(&bin)
        .env("CNI_COMMAND", command)
        .env(DEPTH_VAR, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CniError::new(ErrorCode::Io, format!("running IPAM plugin {}: {e}", bin.display())))?;
    let mut pipe = child.stdin.take().expect("piped");
    let _ = pipe.write_all(stdin);
    drop(pipe);
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(ErrorCode::Io, format!("waiting for IPAM plugin {kind}: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(text);
    }
    let err: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let code = err["code"].as_u64().map(|c| c as u32).filter(|c| *c != 0).unwrap_or(5);
    let msg = err["msg"].as_str().unwrap_or(text.trim());
    Err(CniError::new(
        ErrorCode::Other(code),
        format!("IPAM plugin {kind} {command}: {msg}"),
    ))
}
