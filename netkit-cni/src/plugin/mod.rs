//! The `netkit-cni` plugin: containers on a bridge (the reference bridge plugin's model and
//! keys) with netkit's IPAM and firewall.
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "podnet", "type": "netkit-cni",
//!  "bridge": "cni0", "isGateway": true, "isDefaultGateway": true, "ipMasq": true,
//!  "capabilities": {"portMappings": true},
//!  "ipam": {"type": "netkit-ipam", "ranges": [[{"subnet": "10.88.0.0/16"}]]}}
//! ```
//!
//! Verbs: ADD (checks everything before the host changes; undoes what it made if a step
//! fails), DEL (idempotent; works with the container's namespace gone), CHECK, GC (this
//! network's IPAM reservations, firewall rules and tagged host-side links of attachments not in
//! `cni.dev/valid-attachments`; other networks are never touched), STATUS (50 when the IPAM
//! store, or the firewall of a network that uses one, is unusable), VERSION. Every verb checks
//! the attachment the same way ([`attachment`]); see the README's security section for what the
//! plugin trusts.
//!
//! Keys beyond the reference bridge plugin's (see [`config::NetworkConfig`]): `mode`
//! (`bridge`/`routed`), `firewallBackend`, `firewallStateDir`, `firewallName` (the table / chain
//! prefix; networks with their own `firewallStateDir` need their own name), `waitLinkFree` (DEL
//! waits for the kernel to free the veth pair; by default a detached process does),
//! `ipv6LinkLocal` (keep the kernel's IPv6 link-local address on containers that get no IPv6
//! address; by default they and the bridge ports have none, so the bridge floods no IPv6
//! chatter).
//!
//! The work of ADD, DEL, CHECK, GC and STATUS is [`netkit_core::attach`]'s (the same code a
//! runtime embeds); this module is the CNI frontend over it: the `CNI_*` environment turned into
//! an [`Attachment`](netkit_core::attach::Attachment) ([`CniEnv::attachment`]), the `CNI_ARGS`
//! keys allowed (`IP`, `MAC`), the verbs a configuration's `cniVersion` has, the result
//! printed in that version and errors mapped to CNI codes ([`CniError`]'s `From`).
//!
//! Re-exported from netkit-core for the paths this crate had before the move: [`config`]
//! (`netkit_core::attach::config`; `PluginConf` is `NetworkConfig`), [`attachment`]
//! (`netkit_core::attach::names`; its `Attachment` is `Names`), [`ipam`]
//! (`netkit_core::attach::delegate`; its `Ipam` is `IpamStep`).

pub use netkit_core::attach::names as attachment;
pub use netkit_core::attach::{config, delegate as ipam};

use crate::spec::{CniEnv, CniError, Command, ErrorCode};
use netkit_core::attach::{self, NetworkConfig};

/// Run one invocation; `Ok(Some(text))` goes to stdout.
pub async fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<String>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(crate::ipam::version_answer(stdin)));
    }
    let conf = NetworkConfig::parse(stdin)?;
    let att = env.attachment(Some(crate::trace::mark));
    match env.command {
        Command::Add => {
            // The K8S_* keys Kubernetes' runtimes pass; the pod's namespace and name are what
            // `clusterStore` records the pod under.
            env.args.check_known(&[
                "IP",
                "MAC",
                "K8S_POD_NAMESPACE",
                "K8S_POD_NAME",
                "K8S_POD_INFRA_CONTAINER_ID",
                "K8S_POD_UID",
            ])?;
            let result = attach::add(&conf, &att).await?;
            Ok(Some(result.to_json().to_string()))
        }
        Command::Del => Ok(attach::del(&conf, &att).await.map(|()| None)?),
        Command::Check => {
            if !conf.version.has_check() {
                return Err(CniError::new(
                    ErrorCode::IncompatibleVersion,
                    "CHECK needs cniVersion 0.4.0 or later",
                ));
            }
            Ok(attach::check(&conf, &att).await.map(|()| None)?)
        }
        Command::Gc => {
            if !conf.version.has_gc_and_status() {
                return Err(CniError::new(
                    ErrorCode::IncompatibleVersion,
                    "GC needs cniVersion 1.1.0",
                ));
            }
            Ok(attach::gc(&conf, &att.host).await.map(|()| None)?)
        }
        Command::Status => Ok(attach::status(&conf, &att.host).await.map(|()| None)?),
        Command::Version => unreachable!("answered above"),
    }
}
