//! The progress bar of `netkit topo apply`: one line on stderr, redrawn in place, for a lab
//! big enough to take a while — only when stderr is a terminal and `-q` was not given (a pipe,
//! a log file or a test sees nothing of it).
//!
//! ```text
//! netkit: links      [##############..............]  512/1000
//! ```
//!
//! It redraws at most every [`REDRAW`] and at the end of each phase, and clears its line when
//! the apply ends, so the printed changes start on a clean line.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netkit_core::topo::{Progress, ProgressFn};

/// The shortest time between two redraws.
pub const REDRAW: Duration = Duration::from_millis(50);

/// Width of the bar itself, in characters.
const WIDTH: usize = 28;

/// A progress bar on stderr (see the module docs).
pub struct Bar {
    last: Mutex<Option<Instant>>,
}

impl Bar {
    /// A bar when stderr is a terminal and `quiet` is off, else `None`.
    pub fn for_stderr(quiet: bool) -> Option<Arc<Bar>> {
        (!quiet && std::io::stderr().is_terminal()).then(|| Arc::new(Bar { last: Mutex::new(None) }))
    }

    /// The function to give netkit-core's apply.
    pub fn callback(self: &Arc<Self>) -> ProgressFn {
        let bar = self.clone();
        Arc::new(move |p| bar.update(p))
    }

    fn update(&self, p: Progress) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let due = last.is_none_or(|t| now.duration_since(t) >= REDRAW);
        if !due && p.done != p.total {
            return;
        }
        *last = Some(now);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", render(p));
        let _ = err.flush();
    }

    /// Clear the bar's line (when the apply is over, whatever its outcome).
    pub fn clear(&self) {
        if self.last.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// The bar's text for `p` (without the carriage return and the erase sequence).
pub fn render(p: Progress) -> String {
    let filled = (p.done.min(p.total) * WIDTH).checked_div(p.total).unwrap_or(WIDTH);
    let digits = p.total.to_string().len();
    format!(
        "netkit: {:<10} [{}{}] {:>digits$}/{}",
        p.phase,
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        p.done,
        p.total,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_phase() {
        let p = |done, total| Progress {
            phase: "links",
            done,
            total,
        };
        assert_eq!(
            render(p(0, 1000)),
            "netkit: links      [............................]    0/1000"
        );
        assert_eq!(
            render(p(500, 1000)),
            "netkit: links      [##############..............]  500/1000"
        );
        assert_eq!(
            render(p(1000, 1000)),
            "netkit: links      [############################] 1000/1000"
        );
        assert!(render(p(0, 0)).ends_with("] 0/0"));
    }

    #[test]
    fn no_bar_without_a_terminal_or_with_quiet() {
        // The tests' stderr is a pipe or a file.
        if !std::io::stderr().is_terminal() {
            assert!(Bar::for_stderr(false).is_none());
        }
        assert!(Bar::for_stderr(true).is_none());
    }
}
