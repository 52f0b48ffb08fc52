//! The `netkit-cni` CNI plugin (see `netkit_cni::plugin`): run by a container runtime with
//! `CNI_*` set and the network configuration on stdin.

use std::process::ExitCode;

use netkit_cni::spec::{CniError, ErrorCode};

fn main() -> ExitCode {
    netkit_cni::trace::start();
    let code = netkit_cni::entry::run("netkit-cni", |env, input| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CniError::new(ErrorCode::Io, format!("starting the runtime: {e}")))?;
        rt.block_on(netkit_cni::plugin::run(env, input))
    });
    netkit_cni::trace::finish(
        &std::env::var("CNI_COMMAND").unwrap_or_default(),
        &std::env::var("CNI_CONTAINERID").unwrap_or_default(),
    );
    code
}
