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

/// Append the run's line to the file: the verb and container ID as the runtime gave them,
/// cleaned of anything but letters, digits, `_ . -` and cut to 64 characters (they come from
/// the environment: a newline or an escape sequence must not forge or garble log lines).
pub fn finish(verb: &str, container_id: &str) {
    use std::io::Write;
    let Ok(mut t) = TRACE.lock() else { return };
    let Some(t) = t.take() else { return };
    let mut line = format!("{} {}", clean(verb), clean(container_id));
    for (phase, us) in &t.marks {
        line.push_str(&format!(" {phase}={us}"));
    }
    line.push_str(&format!(" done={}\n", t.start.elapsed().as_micros()));
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&t.file) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// `s` with every character outside letters, digits, `_ . -` replaced by `?`, at most 64.
fn clean(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn environment_values_cannot_forge_lines() {
        assert_eq!(super::clean("ADD"), "ADD");
        assert_eq!(super::clean("c1\nDEL forged 1=2"), "c1?DEL?forged?1?2");
        assert_eq!(super::clean("\u{1b}[31mred"), "??31mred");
        assert_eq!(super::clean(&"x".repeat(500)).len(), 64);
    }
}
