//! The `netkit-cni` CNI plugin (see `netkit_cni::plugin`): run by a container runtime with
//! `CNI_*` set and the network configuration on stdin.

use std::io::Read;
use std::process::ExitCode;

use netkit_cni::spec::{CniEnv, CniError, ErrorCode, MAX_CONFIG_BYTES};

fn main() -> ExitCode {
    netkit_cni::trace::start();
    let mut input = Vec::new();
    let read = std::io::stdin()
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| CniError::new(ErrorCode::Io, format!("reading stdin: {e}")));
    let version = netkit_cni::ipam::error_version(&input);
    // A bug must still answer with CNI error JSON, not a bare panic.
    let outcome = std::panic::catch_unwind(|| {
        read.and_then(|_| CniEnv::from_process()).and_then(|env| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CniError::new(ErrorCode::Io, format!("starting the runtime: {e}")))?;
            rt.block_on(netkit_cni::plugin::run(&env, &input))
        })
    })
    .unwrap_or_else(|_| Err(CniError::new(ErrorCode::Io, "netkit-cni hit an internal error (panic)")));
    let code = netkit_cni::spec::finish(outcome, &version);
    netkit_cni::trace::finish(
        &std::env::var("CNI_COMMAND").unwrap_or_default(),
        &std::env::var("CNI_CONTAINERID").unwrap_or_default(),
    );
    code
}
