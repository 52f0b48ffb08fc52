//! Commands run inside a test's namespaces: `ip` and `ip -j` (iproute2's view, the oracle the
//! tests check netkit against), shell commands and other programs.

use std::ffi::OsStr;
use std::process::{Command, Output};

use netkit_core::NetNs;
use serde_json::Value;

/// Run `ip ARGS` (name a namespace with `-n NS`); its stdout. Panics with stderr when it fails.
#[track_caller]
pub fn ip(args: &[&str]) -> String {
    tool("ip", args)
}

/// Run `bridge ARGS` (name a namespace with `-n NS`); its stdout. Panics with stderr when it
/// fails.
#[track_caller]
pub fn bridge(args: &[&str]) -> String {
    tool("bridge", args)
}

/// `program ARGS`'s stdout; panics with stderr when it fails.
#[track_caller]
fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -j -d -n NS ARGS` as JSON; `None` when the command fails (e.g. no such device), an empty
/// array when it prints nothing.
#[track_caller]
pub fn ipj(ns: &str, args: &[&str]) -> Option<Value> {
    ip_json(&["-j", "-d", "-n", ns], args)
}

/// [`ipj`] without `-d`: what `ip -j` prints by default (to compare with a tool that prints
/// the same keys).
#[track_caller]
pub fn ipj_plain(ns: &str, args: &[&str]) -> Option<Value> {
    ip_json(&["-j", "-n", ns], args)
}

/// `bridge -j -n NS ARGS` as JSON (`bridge -j fdb show`, the oracle of netkit's `fdb`); `None`
/// when the command fails, an empty array when it prints nothing.
#[track_caller]
pub fn bridgej(ns: &str, args: &[&str]) -> Option<Value> {
    tool_json("bridge", &["-j", "-n", ns], args)
}

#[track_caller]
fn ip_json(options: &[&str], args: &[&str]) -> Option<Value> {
    tool_json("ip", options, args)
}

/// `program OPTIONS ARGS` as JSON, as [`ipj`] says.
#[track_caller]
fn tool_json(program: &str, options: &[&str], args: &[&str]) -> Option<Value> {
    let mut all = options.to_vec();
    all.extend_from_slice(args);
    let out = Command::new(program)
        .args(&all)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Some(Value::Array(Vec::new()));
    }
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{program} {all:?} printed no JSON ({e}): {text}")))
}

/// `ip -j -d -n NS ARGS` as a list of objects; panics when the command fails.
#[track_caller]
pub fn ipj_list(ns: &str, args: &[&str]) -> Vec<Value> {
    match ipj(ns, args) {
        Some(Value::Array(items)) => items,
        Some(other) => panic!("ip -j -n {ns} {args:?}: not a list: {other}"),
        None => panic!("ip -j -n {ns} {args:?} failed"),
    }
}

/// Run `ARGS` inside the named namespace `ns` (`ip netns exec`); the finished process, whatever
/// its exit status.
pub fn in_ns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec {ns} {args:?}: {e}"))
}

/// One ping from the named namespace `ns` to `to` answered, trying up to 8 times with a 1 s
/// timeout each (the first packets can be lost to neighbour resolution).
pub fn ping(ns: &str, to: &str) -> bool {
    (0..8).any(|_| in_ns(ns, &["ping", "-c", "1", "-W", "1", "-q", to]).status.success())
}

/// [`ping`] from the source address `from` (`ping -I FROM`).
pub fn ping_from(ns: &str, from: &str, to: &str) -> bool {
    (0..8).any(|_| {
        in_ns(ns, &["ping", "-c", "1", "-W", "1", "-q", "-I", from, to])
            .status
            .success()
    })
}

/// Run `program ARGS` inside the named namespace `ns` (`ip netns exec`); its stdout. Panics
/// with stderr unless it succeeds.
#[track_caller]
pub fn run_in<I, S>(ns: &str, program: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let o = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec {ns} {program}: {e}"));
    assert!(
        o.status.success(),
        "ip netns exec {ns} {program}: {}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Run `sh -c cmd` inside `ns` (named or not); stdout, or `Err` naming the command, the status
/// and stderr.
pub fn try_sh(ns: &NetNs, cmd: &str) -> Result<String, String> {
    let out = ns
        .command("sh")
        .args(["-c", cmd])
        .output()
        .map_err(|e| format!("run `{cmd}` in {ns}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{cmd}` in {ns} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Run `sh -c cmd` inside `ns`; its stdout. Panics when it fails.
#[track_caller]
pub fn sh(ns: &NetNs, cmd: &str) -> String {
    try_sh(ns, cmd).unwrap_or_else(|e| panic!("{e}"))
}
