//! iproute2 from the benches: one command, its output, and `ip -batch -` (shared by the
//! containers and topo benches).

use std::io::Write as _;
use std::process::{Command, Stdio};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Run `ip ARGS…`; fails with its stderr.
pub fn ip(args: &[&str]) -> Res<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    Ok(())
}

/// Run `ip ARGS…` and return its stdout.
pub fn ip_out(args: &[&str]) -> Res<String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip [pre…] -batch -` fed `script` on stdin; fails on the first failing line.
pub fn ip_batch(pre: &[&str], script: &str) -> Res<()> {
    let mut child = Command::new("ip")
        .args(pre)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "ip {} -batch: {}",
            pre.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}
