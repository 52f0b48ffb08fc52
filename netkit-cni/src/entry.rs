//! What every netkit plugin binary does around its work: read the configuration from stdin
//! (at most [`MAX_CONFIG_BYTES`] + 1 bytes), read the `CNI_*` environment, run, turn a panic
//! into a CNI error (code 5), print the result or the error JSON in the configuration's
//! version, and exit 0 or 1.

use std::io::Read;
use std::process::ExitCode;

use crate::spec::{CniEnv, CniError, ErrorCode, MAX_CONFIG_BYTES};

/// Read stdin, capped.
pub fn read_stdin() -> Result<Vec<u8>, CniError> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| CniError::new(ErrorCode::Io, format!("reading stdin: {e}")))?;
    Ok(input)
}

/// Run `work` for plugin `name` with stdin and the process environment, and finish as the spec
/// says (see the module docs).
pub fn run(
    name: &str,
    work: impl FnOnce(&CniEnv, &[u8]) -> Result<Option<String>, CniError> + std::panic::UnwindSafe,
) -> ExitCode {
    with_stdin(name, |input| work(&CniEnv::from_process()?, input))
}

/// Run `work` on stdin (no `CNI_*` environment needed: a subcommand such as
/// `netkit-ipam import`) and finish as the spec says.
pub fn with_stdin(
    name: &str,
    work: impl FnOnce(&[u8]) -> Result<Option<String>, CniError> + std::panic::UnwindSafe,
) -> ExitCode {
    let input = read_stdin();
    let version = input
        .as_deref()
        .map(crate::ipam::error_version)
        .unwrap_or_else(|_| crate::spec::Version::LATEST.to_string());
    let outcome = std::panic::catch_unwind(|| work(&input?)).unwrap_or_else(|_| {
        Err(CniError::new(
            ErrorCode::Io,
            format!("{name} hit an internal error (panic)"),
        ))
    });
    crate::spec::finish(outcome, &version)
}
