//! The CNI protocol as plugins see it (spec 1.1.0, answering 0.3.0 – 1.1.0).

mod env;
mod error;
mod result;
mod version;

pub use env::{CniArgs, CniEnv, Command};
pub use error::{CniError, ErrorCode};
pub use result::{DnsResult, InterfaceResult, IpResult, IpamResult, RouteResult};
pub use version::{Version, SUPPORTED_VERSIONS};

/// The largest network configuration read from stdin (larger input is refused with
/// [`ErrorCode::Decode`] before parsing). Real configurations, `prevResult` included, are a few
/// kilobytes; 1 MiB leaves room and keeps a runaway input from costing memory and time.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Print a plugin's outcome as the spec wants (the result, or error JSON in `version`) and
/// give the exit status. Shared by every netkit plugin binary.
pub fn finish(outcome: Result<Option<String>, CniError>, version: &str) -> std::process::ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(text) => {
            if let Some(text) = text {
                let _ = writeln!(out, "{text}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(version));
            std::process::ExitCode::FAILURE
        }
    }
}
