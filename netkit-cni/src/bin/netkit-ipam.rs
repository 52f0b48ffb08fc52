//! The `netkit-ipam` CNI IPAM plugin (see `netkit_cni::ipam`).
//!
//! As a plugin it takes no arguments: the runtime sets `CNI_*` and writes the network
//! configuration to stdin. `netkit-ipam import <host-local dir>` (configuration on stdin)
//! migrates a node's host-local reservations.

use std::io::Read;
use std::process::ExitCode;

use netkit_cni::ipam;
use netkit_cni::spec::{CniEnv, CniError, ErrorCode, MAX_CONFIG_BYTES};

fn read_stdin() -> Result<Vec<u8>, CniError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(ErrorCode::Io, format!("reading stdin: {e}")))?;
    Ok(buf)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdin = read_stdin();
    let version = stdin
        .as_deref()
        .map(ipam::error_version)
        .unwrap_or_else(|_| "1.1.0".into());
    // A bug must still answer with CNI error JSON, not a bare panic and exit status 101.
    let outcome = std::panic::catch_unwind(|| {
        stdin.and_then(|input| match args.as_slice() {
            [] => CniEnv::from_process().and_then(|env| ipam::run(&env, &input)),
            [cmd, from] if cmd == "import" => ipam::import(from.as_ref(), &input).map(Some),
            _ => Err(CniError::new(
                ErrorCode::InvalidEnv,
                "usage: netkit-ipam (as a CNI plugin) | netkit-ipam import <host-local dir>",
            )),
        })
    })
    .unwrap_or_else(|_| {
        Err(CniError::new(
            ErrorCode::Io,
            "netkit-ipam hit an internal error (panic)",
        ))
    });
    netkit_cni::spec::finish(outcome, &version)
}
