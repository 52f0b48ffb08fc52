//! iperf3 (Debian package `iperf3`) between a test's namespaces: a server started inside one
//! and awaited until it listens, a client run inside another with JSON output, and the figures
//! read from it.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use netkit_core::NetNs;
use serde_json::Value;

use crate::{wait_until, KillOnDrop};

/// An `iperf3 -s` inside a namespace, killed when this drops.
#[derive(Debug)]
pub struct Iperf3Server {
    _child: KillOnDrop,
}

impl Iperf3Server {
    /// Start `iperf3 -s -B ip -p port` inside `ns` and wait (at most 20 s) until it listens.
    #[track_caller]
    pub fn start(ns: &NetNs, ip: Ipv4Addr, port: u16) -> Iperf3Server {
        let child = KillOnDrop::new(
            ns.command("iperf3")
                .args(["-s", "-B", &ip.to_string(), "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("an iperf3 server (Debian package iperf3)"),
        );
        wait_until(Duration::from_secs(20), "the iperf3 server to listen", || {
            listening(child.id(), ip, port)
        });
        Iperf3Server { _child: child }
    }
}

/// True when process `pid` has a TCP socket listening on `ip:port` (its namespace's
/// /proc/PID/net/tcp).
pub fn listening(pid: u32, ip: Ipv4Addr, port: u16) -> bool {
    let local = format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), port);
    std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == local && f[3] == "0A"
        })
}

/// Run `iperf3 -c ip -p port -J --connect-timeout 5000 EXTRA…` inside `ns`: its JSON report,
/// or what went wrong (its output).
pub fn client(ns: &NetNs, ip: Ipv4Addr, port: u16, extra: &[&str]) -> Result<Value, String> {
    let out = ns
        .command("iperf3")
        .args([
            "-c",
            &ip.to_string(),
            "-p",
            &port.to_string(),
            "-J",
            "--connect-timeout",
            "5000",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run iperf3 (Debian package iperf3): {e}"))?;
    let report: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    match report {
        Some(v) if out.status.success() && v.get("error").is_none() => Ok(v),
        _ => Err(format!(
            "iperf3 client to {ip}:{port}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// The receiver's rate in bit/s of a client's JSON report (`end.sum_received`), all streams
/// together.
pub fn received_bps(report: &Value) -> Option<f64> {
    report["end"]["sum_received"]["bits_per_second"].as_f64()
}
