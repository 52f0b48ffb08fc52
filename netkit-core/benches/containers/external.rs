//! Methods run by a program of their own, each doing the bench's work per container call for
//! call in the same order: `tools/vnbench` (Go with vishvananda/netlink + vishvananda/netns,
//! built with Debian's Go and packages, as Go runtimes do it), `tools/nkgobench` (the same Go
//! program on netkit's Go package) and `tools/ncbench` (the same calls from C through
//! libnetkit's C API). Each runs in the bench's host namespace (never the machine's own) and
//! reports the time of its setup or teardown loop alone (not its process start), which is
//! what the bench records.
//!
//! nkgobench and ncbench link `target/release/libnetkit.a`: their build scripts run
//! `cargo build --release -p netkit-ffi` first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netkit_core::NetNs;

use super::{Res, Work};

/// One of the external programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// tools/vnbench: Go, vishvananda/netlink + netns.
    Vishvananda,
    /// tools/nkgobench: Go, netkit's Go package (netkit-ffi/go).
    NetkitGo,
    /// tools/ncbench: C, libnetkit's C API.
    NetkitC,
}

impl Program {
    fn dir(self) -> &'static str {
        match self {
            Program::Vishvananda => "vnbench",
            Program::NetkitGo => "nkgobench",
            Program::NetkitC => "ncbench",
        }
    }

    /// Build the program with `tools/<name>/build.sh` into the target directory (once per run).
    pub fn build(self) -> Res<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let out = target.join(self.dir()).join(self.dir());
        let status = Command::new(root.join("tools").join(self.dir()).join("build.sh"))
            .arg(&out)
            .status()?;
        if !status.success() {
            return Err(format!("building tools/{} failed ({status})", self.dir()).into());
        }
        Ok(out)
    }
}

/// Run one phase (`setup` with its work profile, or `teardown`) of the program `bin` for `n`
/// containers named `prefix<i>`, inside `host`; the loop's time as the program measured it.
pub fn run(bin: &Path, host: &NetNs, phase: &str, prefix: &str, n: usize, work: Option<Work>) -> Res<Duration> {
    let mut cmd = host.command(bin);
    cmd.args([phase, prefix, &n.to_string()]);
    if let Some(w) = work {
        cmd.arg(w.label());
    }
    let out = cmd.output()?;
    let name = bin
        .file_name()
        .map_or_else(|| bin.display().to_string(), |n| n.to_string_lossy().into_owned());
    if !out.status.success() {
        return Err(format!("{name} {phase}: {}", String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let ns: u64 = text
        .trim()
        .strip_prefix("ns=")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{name} {phase} printed {text:?}"))?;
    Ok(Duration::from_nanos(ns))
}
