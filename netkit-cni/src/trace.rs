//! Phase timings of one plugin run, for profiling: set `NETKIT_CNI_TRACE=<file>` in the
//! plugin's environment (runtimes pass theirs on) and every run appends one line to the file:
//! the verb, the container ID and each phase's end in µs since the process started timing,
//! e.g. `ADD c1 ipam=310 veth=1420 wire=3900 firewall=2500 done=4100`. Off (and free) when the
//! variable is unset.

use std::sync::Mutex;
use std::time::Instant;

struct Trace {
    start: Instant,
    file: String,
    marks: Vec<(&'static str, u128)>,
}

static TRACE: Mutex<Option<Trace>> = Mutex::new(None);

/// Start timing if `NETKIT_CNI_TRACE` names a file.
pub fn start() {
    if let Some(file) = std::env::var_os("NETKIT_CNI_TRACE").filter(|f| !f.is_empty()) {
        if let Ok(mut t) = TRACE.lock() {
            *t = Some(Trace {
                start: Instant::now(),
                file: file.to_string_lossy().into_owned(),
                marks: Vec::new(),
            });
        }
    }
}

/// Record the end of a phase.
pub fn mark(phase: &'static str) {
    if let Ok(mut t) = TRACE.lock() {
        if let Some(t) = t.as_mut() {
            let us = t.start.elapsed().as_micros();
            t.marks.push((phase, us));
        }
    }
}

/// Append the run's line (`head`: verb and container) to the file.
pub fn finish(head: &str) {
    use std::io::Write;
    let Ok(mut t) = TRACE.lock() else { return };
    let Some(t) = t.take() else { return };
    let mut line = head.to_string();
    for (phase, us) in &t.marks {
        line.push_str(&format!(" {phase}={us}"));
    }
    line.push_str(&format!(" done={}\n", t.start.elapsed().as_micros()));
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&t.file) {
        let _ = f.write_all(line.as_bytes());
    }
}
