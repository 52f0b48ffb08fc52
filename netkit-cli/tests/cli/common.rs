//! Running the built `netkit` binary, and iproute2's view to check it against.
//!
//! Every command a test runs names a namespace the test made (`-n NS`); nothing runs in the
//! namespace the tests run in.

use std::io::Write;
use std::process::{Command, Stdio};

use netkit_core::NetNs;
use serde_json::Value;

/// What a run of `netkit` gave.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

/// Run `netkit ARGS`, with `input` on stdin.
pub fn run_with_input(args: &[&str], input: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netkit"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netkit");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for netkit");
    Run {
        code: out.status.code().expect("netkit exited (no signal)"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run `netkit ARGS` (stdin empty).
pub fn run(args: &[&str]) -> Run {
    run_with_input(args, "")
}

/// Run `netkit ARGS`, which must succeed; its stdout.
#[track_caller]
pub fn ok(args: &[&str]) -> String {
    let r = run(args);
    assert_eq!(r.code, 0, "netkit {}: {}", args.join(" "), r.stderr);
    r.stdout
}

/// Run `netkit -j ARGS`, which must succeed and print JSON; the JSON.
#[track_caller]
pub fn ok_json(args: &[&str]) -> Value {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let out = ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("netkit {all:?} printed no JSON ({e}): {out}"))
}

/// Run `netkit ARGS`, which must fail with exit code `code` and one line on stderr that starts
/// with `netkit: `; that line.
#[track_caller]
pub fn fails(args: &[&str], code: i32) -> String {
    let r = run(args);
    assert_eq!(
        r.code,
        code,
        "netkit {}: stdout {} stderr {}",
        args.join(" "),
        r.stdout,
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "one line of error: {:?}", r.stderr);
    assert!(r.stderr.starts_with("netkit: "), "{:?}", r.stderr);
    r.stderr.trim_end().to_string()
}

/// The words of `line` after `-n NS`: `netkit -n NS` with `line` split at blanks (a line whose
/// words hold no blanks: `"fdb add 02:00:00:00:00:02 dev e0 master"`).
fn in_ns<'a>(ns: &'a str, line: &'a str) -> Vec<&'a str> {
    ["-n", ns].into_iter().chain(line.split_whitespace()).collect()
}

/// [`run`] of `netkit -n NS LINE` (see [`in_ns`]).
pub fn run_n(ns: &str, line: &str) -> Run {
    run(&in_ns(ns, line))
}

/// [`ok`] of `netkit -n NS LINE`.
#[track_caller]
pub fn ok_n(ns: &str, line: &str) -> String {
    ok(&in_ns(ns, line))
}

/// [`ok_json`] of `netkit -n NS LINE`.
#[track_caller]
pub fn ok_json_n(ns: &str, line: &str) -> Value {
    ok_json(&in_ns(ns, line))
}

/// [`fails`] of `netkit -n NS LINE`.
#[track_caller]
pub fn fails_n(ns: &str, line: &str, code: i32) -> String {
    fails(&in_ns(ns, line), code)
}

/// `ip -j -n NS ARGS` (no details: what `ip -j` prints by default); `None` when it fails.
pub fn ip_json(ns: &str, args: &[&str]) -> Option<Value> {
    netkit_test_support::cmd::ipj_plain(ns, args)
}

/// The object named `name` (key `ifname`) in a list of links.
#[track_caller]
pub fn by_name<'a>(links: &'a Value, name: &str) -> &'a Value {
    links
        .as_array()
        .expect("a list")
        .iter()
        .find(|l| l["ifname"] == name)
        .unwrap_or_else(|| panic!("no {name} in {links}"))
}

/// The keys of `ip -j link show` that netkit prints too.
pub const LINK_KEYS: [&str; 16] = [
    "ifindex",
    "ifname",
    "link",
    "link_index",
    "link_netnsid",
    "flags",
    "mtu",
    "qdisc",
    "master",
    "operstate",
    "group",
    "txqlen",
    "link_type",
    "address",
    "broadcast",
    "ifalias",
];

/// netkit's link object has the same values as ip's for every key of [`LINK_KEYS`]; else the
/// first difference.
pub fn same_link(ours: &Value, ip: &Value) -> Result<(), String> {
    for k in LINK_KEYS {
        if ours.get(k) != ip.get(k) {
            return Err(format!("key {k}: netkit {ours} ip {ip}"));
        }
    }
    Ok(())
}

/// Compare netkit's view with ip's until they agree, for at most 10 seconds: the kernel settles
/// operational states (carrier, `operstate`) asynchronously, so two listings taken one after the
/// other may see different moments. A real difference still fails, with the last one seen.
#[track_caller]
pub fn agree<T>(what: &str, compare: impl FnMut() -> Result<T, String>) -> T {
    netkit_test_support::wait_for(std::time::Duration::from_secs(10), what, compare)
}

/// A namespace name that a test made through `netkit netns add` (or will): deleted on drop,
/// also when the test panics.
pub struct NsName(pub String);

impl NsName {
    /// A unique name; nothing is created.
    pub fn new(tag: &str) -> Self {
        Self(netkit_test_support::unique(tag))
    }
}

impl Drop for NsName {
    fn drop(&mut self) {
        let _ = NetNs::delete(&self.0);
    }
}
