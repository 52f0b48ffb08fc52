//! The same network policy as per-pod iptables chains, roughly what Calico's and kube-router's
//! iptables modes write, loaded with `iptables-restore`:
//!
//! ```text
//! FORWARD      -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
//!              per isolated pod, in pod order: -d POD/32 -j POL-<i>
//! POL-<i>      per allowed (peer, port), in rule order: -s PEER/32 -p tcp -m tcp --dport P -j ACCEPT
//!              -j DROP
//! ```
//!
//! The first load is one `iptables-restore --noflush` declaring every chain; one rule change
//! is one `iptables-restore --noflush` declaring (and so flushing) the changed pod's chain and
//! writing it again.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use netkit_core::NetNs;

use super::Res;

/// One allowed (peer, TCP port) of a pod.
pub type Allow = (Ipv4Addr, u16);

/// A pod's chain name.
fn chain(i: usize) -> String {
    format!("POL-{i}")
}

/// A pod's chain rules (its allowed peers and ports in order, then DROP).
fn chain_rules(out: &mut String, i: usize, allows: &[Allow]) {
    let c = chain(i);
    for (peer, port) in allows {
        let _ = writeln!(out, "-A {c} -s {peer}/32 -p tcp -m tcp --dport {port} -j ACCEPT");
    }
    let _ = writeln!(out, "-A {c} -j DROP");
}

/// The full load: every pod `(address, allowed)` in FORWARD order.
pub fn full(pods: &[(Ipv4Addr, Vec<Allow>)]) -> String {
    let mut out = String::with_capacity(pods.len() * 100);
    out.push_str("*filter\n");
    for i in 0..pods.len() {
        let _ = writeln!(out, ":{} - [0:0]", chain(i));
    }
    out.push_str("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n");
    for (i, (addr, _)) in pods.iter().enumerate() {
        let _ = writeln!(out, "-A FORWARD -d {addr}/32 -j {}", chain(i));
    }
    for (i, (_, allows)) in pods.iter().enumerate() {
        chain_rules(&mut out, i, allows);
    }
    out.push_str("COMMIT\n");
    out
}

/// One pod's chain rewritten (with `--noflush`, declaring it flushes it).
pub fn one(i: usize, allows: &[Allow]) -> String {
    let mut out = format!("*filter\n:{} - [0:0]\n", chain(i));
    chain_rules(&mut out, i, allows);
    out.push_str("COMMIT\n");
    out
}

/// Run `restore` (`iptables-restore`, `iptables-legacy-restore`) in `ns` with `-w 5
/// --noflush` on `input`: how long the process took from spawn to exit, or `None` when it was
/// still running after `limit` (killed then; a restore commits at its end, so nothing changed).
pub fn restore(ns: &NetNs, restore: &str, input: &str, limit: Duration) -> Res<Option<Duration>> {
    let t = Instant::now();
    let child = ns
        .command(restore)
        .args(["-w", "5", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{restore}: {e}"))?;
    let mut child = netkit_test_support::KillOnDrop::new(child);
    // Fed from a thread: the restore parses as it reads.
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if t.elapsed() > limit || super::stopped() {
            drop(child);
            let _ = writer.join();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = t.elapsed();
    writer
        .join()
        .map_err(|_| "the stdin writer panicked")?
        .map_err(|e| format!("{restore}: writing its input: {e}"))?;
    let out = child.into_inner().wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "{restore} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(Some(took))
}
