//! The CNI protocol as plugins see it (spec 1.1.0, answering 0.3.0 – 1.1.0).

//!
//! The result types and versions are netkit-core's ([`netkit_core::attach::result`],
//! [`netkit_core::attach::version`]), re-exported here: the attach code returns CNI-shaped
//! results. `IpamResult` is `netkit_core::attach::CniResult`.

mod env;
mod error;

pub use env::{CniArgs, CniEnv, Command};
pub use error::{CniError, ErrorCode};
pub use netkit_core::attach::{
    CniResult as IpamResult, DnsResult, InterfaceResult, IpResult, RouteResult, Version, SUPPORTED_VERSIONS,
};

/// The largest network configuration read from stdin (larger input is refused with
/// [`ErrorCode::Decode`] before parsing), netkit-core's.
pub use netkit_core::attach::MAX_CONFIG_BYTES;

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
