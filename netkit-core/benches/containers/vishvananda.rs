//! The vishvananda method: `tools/vnbench` (Go, vishvananda/netlink + vishvananda/netns, built
//! with Debian's Go and packages) does the same work per container as the other methods, the
//! way Go runtimes do it; it runs in the bench's host namespace (never the machine's own) and
//! reports the time of its setup or teardown loop alone, which is what the bench records.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netkit_core::NetNs;

use super::{Res, Work};

/// Build `tools/vnbench` into the target directory (once per run).
pub fn build() -> Res<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out = target.join("vnbench").join("vnbench");
    let status = Command::new(root.join("tools/vnbench/build.sh")).arg(&out).status()?;
    if !status.success() {
        return Err(format!("building tools/vnbench failed ({status})").into());
    }
    Ok(out)
}

/// Run one phase (`setup` with its work profile, or `teardown`) for `n` containers named
/// `prefix<i>`, inside `host`; the loop's time as vnbench measured it.
pub fn run(bin: &Path, host: &NetNs, phase: &str, prefix: &str, n: usize, work: Option<Work>) -> Res<Duration> {
    let mut cmd = host.command(bin);
    cmd.args([phase, prefix, &n.to_string()]);
    if let Some(w) = work {
        cmd.arg(w.label());
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("vnbench {phase}: {}", String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let ns: u64 = text
        .trim()
        .strip_prefix("ns=")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("vnbench {phase} printed {text:?}"))?;
    Ok(Duration::from_nanos(ns))
}
