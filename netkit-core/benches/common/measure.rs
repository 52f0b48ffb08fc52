//! What the cluster benches (`overlay`, `bgp`) measure with: the instant an agent's status first satisfies a
//! condition (woken by every publish of its status channel, never polled), percentiles, and
//! CPU and memory from /proc.

use std::time::{Duration, Instant, SystemTime};

use netkit_core::overlay::AgentStatus;
use tokio::sync::watch;

use super::harness::Res;

/// When `pred` first held for the status channel `rx`: the instant (and wall-clock time) the
/// publish that made it true was seen. Checks the current status first (if it already holds,
/// that is "now"), then wakes on every publish. `None` after `within`, or when the agent is
/// gone.
pub async fn when(
    mut rx: watch::Receiver<AgentStatus>,
    within: Duration,
    pred: impl Fn(&AgentStatus) -> bool,
) -> Option<(Instant, SystemTime)> {
    let end = tokio::time::Instant::now() + within;
    loop {
        if pred(&rx.borrow_and_update()) {
            return Some((Instant::now(), SystemTime::now()));
        }
        match tokio::time::timeout_at(end, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

/// The instant of the last publish on `rx` before a gap of `gap` without any (the agent has
/// gone quiet); `None` when it has not within `within`, or the agent is gone.
pub async fn quiet(mut rx: watch::Receiver<AgentStatus>, gap: Duration, within: Duration) -> Option<Instant> {
    let end = tokio::time::Instant::now() + within;
    let mut last = Instant::now();
    loop {
        rx.borrow_and_update();
        let until = (tokio::time::Instant::now() + gap).min(end);
        match tokio::time::timeout_at(until, rx.changed()).await {
            Ok(Ok(())) => last = Instant::now(),
            Ok(Err(_)) => return None,
            Err(_) if until < end => return Some(last),
            Err(_) => return None,
        }
    }
}

/// The `p`-th percentile (0 < p ≤ 100) by nearest rank: the smallest sample with at least p %
/// of the samples at or below it (of 20 samples, p99 is the largest). `None` without samples.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// Milliseconds, for tables.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `x ms` with one decimal, or `–`.
pub fn fmt_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".into(), |d| format!("{:.1} ms", ms(d)))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, the unit of /proc's CPU times).
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is touched.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The machine's busy CPU time so far, in ticks summed over all CPUs: user, nice, system, irq,
/// softirq and steal of /proc/stat's `cpu` line (not idle, not iowait).
pub fn machine_busy_ticks() -> Res<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().ok_or("/proc/stat is empty")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().map_err(|e| format!("/proc/stat {x:?}: {e}")))
        .collect::<Result<_, _>>()?;
    if f.len() < 8 {
        return Err(format!("/proc/stat: short cpu line {line:?}").into());
    }
    // user nice system idle iowait irq softirq steal
    Ok(f[0] + f[1] + f[2] + f[5] + f[6] + f[7])
}

/// CPU time process `pid` has used (utime + stime, /proc/PID/stat fields 14 and 15), in ticks.
pub fn process_ticks(pid: u32) -> Res<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = stat.rsplit_once(')').ok_or("/proc/PID/stat without ')'")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): field n is rest[n - 3].
    let field = |n: usize| -> Res<u64> {
        f.get(n - 3)
            .ok_or_else(|| format!("/proc/{pid}/stat: no field {n}"))?
            .parse::<u64>()
            .map_err(|e| format!("/proc/{pid}/stat field {n}: {e}").into())
    };
    Ok(field(14)? + field(15)?)
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, key: &str) -> Res<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/status has no {key}").into())
}
