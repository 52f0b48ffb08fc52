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
//! Keys beyond the reference bridge plugin's (see [`config::PluginConf`]): `mode`
//! (`bridge`/`routed`), `firewallBackend`, `firewallStateDir`, `firewallName` (the table / chain
//! prefix; networks with their own `firewallStateDir` need their own name), `waitLinkFree` (DEL
//! waits for the kernel to free the veth pair; by default a detached process does),
//! `ipv6LinkLocal` (keep the kernel's IPv6 link-local address on containers that get no IPv6
//! address; by default they and the bridge ports have none, so the bridge floods no IPv6
//! chatter).
//!
//! Modules: [`attachment`] (names and checks), `add` (ADD), `bridge` and `routed` (the host side
//! of each mode), `fw` (the firewall), `del` (DEL and GC), `check` (CHECK), [`config`], [`ipam`]
//! (in-process or delegated IPAM).

mod add;
pub mod attachment;
mod bridge;
mod check;
pub mod config;
mod del;
mod fw;
pub mod ipam;
mod routed;

pub use add::add;
pub use check::check;
pub use del::{del, gc};

use crate::spec::{CniEnv, CniError, Command, ErrorCode};
use config::PluginConf;
use ipam::Ipam;

/// Run one invocation; `Ok(Some(text))` goes to stdout.
pub async fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<String>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(crate::ipam::version_answer(stdin)));
    }
    let conf = PluginConf::parse(stdin)?;
    let ipam = Ipam::of(&conf.ipam_type, stdin)?;
    match env.command {
        Command::Add => {
            env.args.check_known(&["IP", "MAC"])?;
            let mut conf = conf;
            if conf.mac.is_none() {
                if let Some(m) = env.args.get("MAC") {
                    conf.mac = Some(m.parse().map_err(|_| {
                        CniError::new(
                            ErrorCode::InvalidEnv,
                            format!("CNI_ARGS MAC {m:?} is not a MAC address"),
                        )
                    })?);
                }
            }
            let result = add(&conf, env, &ipam).await?;
            Ok(Some(result.to_json(conf.version).to_string()))
        }
        Command::Del => del(&conf, env, &ipam).await.map(|()| None),
        Command::Check => {
            if !conf.version.has_check() {
                return Err(CniError::new(
                    ErrorCode::IncompatibleVersion,
                    "CHECK needs cniVersion 0.4.0 or later",
                ));
            }
            check(&conf, env, &ipam).await.map(|()| None)
        }
        Command::Gc => {
            if !conf.version.has_gc_and_status() {
                return Err(CniError::new(
                    ErrorCode::IncompatibleVersion,
                    "GC needs cniVersion 1.1.0",
                ));
            }
            gc(&conf, env, &ipam).await.map(|()| None)
        }
        Command::Status => {
            ipam.status(env)?;
            // The firewall matters only to a network that uses it.
            if conf.needs_firewall() {
                let host = netkit_core::NetNs::current().map_err(CniError::io)?;
                fw::open(&conf, &host)
                    .await
                    .map_err(|e| CniError::new(ErrorCode::NotAvailable, e.msg))?;
            }
            Ok(None)
        }
        Command::Version => unreachable!("answered above"),
    }
}
