//! The `netkit-ipam` CNI IPAM plugin (see `netkit_cni::ipam`).
//!
//! As a plugin it takes no arguments: the runtime sets `CNI_*` and writes the network
//! configuration to stdin. `netkit-ipam import <host-local dir>` (configuration on stdin)
//! migrates a node's host-local reservations.

use std::process::ExitCode;

use netkit_cni::ipam;
use netkit_cni::spec::{CniError, ErrorCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => netkit_cni::entry::run("netkit-ipam", ipam::run),
        [cmd, from] if cmd == "import" => {
            let from = std::path::PathBuf::from(from);
            netkit_cni::entry::with_stdin("netkit-ipam import", move |input| ipam::import(&from, input).map(Some))
        }
        _ => netkit_cni::entry::with_stdin("netkit-ipam", |_| {
            Err(CniError::new(
                ErrorCode::InvalidEnv,
                "usage: netkit-ipam (as a CNI plugin) | netkit-ipam import <host-local dir>",
            ))
        }),
    }
}
