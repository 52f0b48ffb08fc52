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
//!
//! The work is netkit-core's ([`netkit_core::attach::ipam`]: the same allocator step the
//! `netkit-cni` plugin and an embedding runtime use); this module is the CNI frontend: the verbs,
//! the `CNI_ARGS` keys allowed (`IP`), the version answer and `import`. [`NetConf`] is
//! `netkit_core::attach::IpamNetwork`.

use std::path::Path;

use serde_json::{json, Value};

use crate::spec::{CniEnv, CniError, Command, ErrorCode, Version, SUPPORTED_VERSIONS};

/// Where stores live when the config names no `dataDir` (netkit-core's default, which the
/// `netkit ipam` command shares).
pub use netkit_core::ipam::DEFAULT_DATA_DIR;

/// The parts of a network configuration the IPAM plugin reads (netkit-core's).
pub use netkit_core::attach::IpamNetwork as NetConf;

/// Run one plugin invocation: `env` and stdin in, stdout text (if any) out.
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<String>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(version_answer(stdin)));
    }
    let conf = NetConf::parse(stdin)?;
    let att = env.attachment(None);
    match env.command {
        Command::Add => {
            env.args.check_known(&["IP"])?;
            Ok(Some(conf.add(&att)?.to_json(conf.version).to_string()))
        }
        Command::Del => {
            conf.del(&att)?;
            Ok(None)
        }
        Command::Check => {
            if !conf.version.has_check() {
                return Err(CniError::new(
                    ErrorCode::IncompatibleVersion,
                    format!("CHECK needs cniVersion 0.4.0 or later, not {}", conf.version),
                ));
            }
            conf.check(&netkit_core::attach::ipam::owner(&att)?)?;
            Ok(None)
        }
        Command::Gc => {
            if !conf.version.has_gc_and_status() {
                return Err(CniError::new(
                    ErrorCode::IncompatibleVersion,
                    format!("GC needs cniVersion 1.1.0, not {}", conf.version),
                ));
            }
            conf.gc()?;
            Ok(None)
        }
        Command::Status => Ok(conf.status().map(|()| None)?),
        Command::Version => unreachable!("answered above"),
    }
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
    let r = ipam
        .import_host_local(from, "eth0")
        .map_err(netkit_core::attach::ipam::ipam_error)?;
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
