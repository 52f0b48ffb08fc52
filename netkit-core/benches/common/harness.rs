//! What the cluster benches (`overlay`, `bgp`) share around their measurements: knobs from the
//! environment, Ctrl-C, the guard that deletes the run's namespaces, and the printed report (a
//! markdown table and the targets, met or MISSED).

use std::error::Error;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use netkit_core::NetNs;

/// A bench's result type (errors cross tasks and threads).
pub type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

// ---------------------------------------------------------------------------
// Knobs

/// The environment variable `name`, unless unset or blank.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `NETKIT_BENCH_QUICK=1`: the smoke run.
pub fn quick() -> bool {
    std::env::var("NETKIT_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// `<prefix><key>` (e.g. `NETKIT_BENCH_OVERLAY_NODES`) as a number in `range`, else `default`.
pub fn knob(prefix: &str, key: &str, default: usize, range: std::ops::RangeInclusive<usize>) -> Res<usize> {
    let name = format!("{prefix}{key}");
    let Some(text) = env(&name) else {
        return Ok(default);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!("{name}={text:?}: a number from {} to {}", range.start(), range.end()).into()),
    }
}

/// A comma-separated list knob: `name`'s entries (trimmed), else `default`'s.
pub fn list(name: &str, default: &str) -> Vec<String> {
    env(name)
        .unwrap_or_else(|| default.into())
        .split(',')
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect()
}

/// The first line of `cmd args…`'s standard output (or of its standard error, where some tools
/// print their version), or `fallback`.
pub fn first_line(cmd: &str, args: &[&str], fallback: &str) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines().next().map(|l| l.trim().to_string())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| fallback.into())
}

// ---------------------------------------------------------------------------
// Ctrl-C

static STOP: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C (or SIGTERM, SIGHUP) came.
pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// An error once Ctrl-C came.
pub fn check_stop() -> Res<()> {
    if stopped() {
        return Err("interrupted".into());
    }
    Ok(())
}

/// Set the stop flag on SIGINT, SIGTERM or SIGHUP (and return).
pub async fn signals() -> Res<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    STOP.store(true, Ordering::SeqCst);
    Ok(())
}

// ---------------------------------------------------------------------------
// Namespaces

/// The pid in a test-support name `nk<pid>x…`, if `name` is one.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("nk")?;
    let (pid, _) = rest.split_once('x')?;
    pid.parse().ok()
}

/// Delete the namespaces of this process (`Some(pid)`) or of processes that are gone (`None`).
/// Before a namespace of a gone process is deleted, the processes named `kill_in_stale` inside
/// it (e.g. `bird`, left by a run that was killed) are killed: they would keep it alive.
pub fn delete_namespaces(pid: Option<u32>, kill_in_stale: &[&str]) -> usize {
    let mut n = 0;
    for name in NetNs::list().unwrap_or_default() {
        let Some(p) = owner(&name) else { continue };
        let ours = match pid {
            Some(pid) => p == pid,
            None => !Path::new(&format!("/proc/{p}")).exists(),
        };
        if !ours {
            continue;
        }
        if pid.is_none() && !kill_in_stale.is_empty() {
            kill_named_in(&name, kill_in_stale);
        }
        if NetNs::delete(&name).is_ok() {
            n += 1;
        }
    }
    n
}

/// Kill the processes inside namespace `ns` (`ip netns pids`) whose command name is one of
/// `names`.
fn kill_named_in(ns: &str, names: &[&str]) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let Ok(pid) = pid.parse::<i32>() else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if names.contains(&comm.trim()) {
            // SAFETY: kill(2) with a pid read just now from the namespace's process list and a
            // plain signal number; no memory is touched.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Deletes every namespace this process made, on any exit path (also panic), after the
/// phases' own guards have run.
pub struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let n = delete_namespaces(Some(std::process::id()), &[]);
        if n > 0 {
            eprintln!("cleanup: deleted {n} namespaces left over");
        }
    }
}

// ---------------------------------------------------------------------------
// The report

/// The figures (a markdown table) and the targets (met / MISSED) of a run.
#[derive(Default)]
pub struct Report {
    rows: Vec<(String, String)>,
    targets: Vec<(String, bool, String)>,
}

impl Report {
    /// A line of the table.
    pub fn row(&mut self, what: &str, figure: String) {
        self.rows.push((what.to_string(), figure));
    }

    /// A target (or a check), whether it was met, and the figures that say so.
    pub fn target(&mut self, what: &str, met: bool, figure: String) {
        self.targets.push((what.to_string(), met, figure));
    }

    /// Print the table, then the targets.
    pub fn print(&self) {
        println!("| measurement | result |");
        println!("|---|---|");
        for (what, figure) in &self.rows {
            println!("| {what} | {figure} |");
        }
        println!();
        println!("Targets:");
        println!();
        for (what, met, figure) in &self.targets {
            println!("- {what}: {} ({figure})", if *met { "met" } else { "MISSED" });
        }
    }
}
