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
//! Verbs: ADD (everything it made is undone if a step fails), DEL (idempotent; works with the
//! container's namespace gone), CHECK, GC (IPAM reservations and firewall rules of attachments
//! not in `cni.dev/valid-attachments`), STATUS (50 when the IPAM store or the firewall is
//! unusable), VERSION.
//!
//! Keys beyond the reference bridge plugin's (see [`config::PluginConf`]): `mode`
//! (`bridge`/`routed`), `firewallBackend`, `firewallStateDir`, `waitLinkFree` (DEL waits for the
//! kernel to free the veth pair; by default a detached process does), `ipv6LinkLocal` (keep the
//! kernel's IPv6 link-local address on containers that get no IPv6 address; by default they and
//! the bridge ports have none, so the bridge floods no IPv6 chatter).

pub mod attach;
pub mod config;
pub mod ipam;

use crate::spec::{CniEnv, CniError, Command, ErrorCode};
use config::PluginConf;
use ipam::Ipam;
use netkit_core::firewall::{self, Firewall};

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
            let result = attach::add(&conf, env, &ipam).await?;
            Ok(Some(result.to_json(conf.version).to_string()))
        }
        Command::Del => attach::del(&conf, env, &ipam).await.map(|()| None),
        Command::Check => {
            if !conf.version.has_check() {
                return Err(CniError::new(
                    ErrorCode::IncompatibleVersion,
                    "CHECK needs cniVersion 0.4.0 or later",
                ));
            }
            attach::check(&conf, env, &ipam).await.map(|()| None)
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
            firewall_of(&conf)
                .await
                .map_err(|e| CniError::new(ErrorCode::NotAvailable, e.msg))?;
            Ok(None)
        }
        Command::Version => unreachable!("answered above"),
    }
}

async fn firewall_of(conf: &PluginConf) -> Result<firewall::AnyFirewall, CniError> {
    let host = netkit_core::NetNs::current().map_err(CniError::io)?;
    attach::open_firewall(conf, &host).await
}

/// GC: IPAM first, then the firewall owners that belong to no valid attachment.
async fn gc(conf: &PluginConf, env: &CniEnv, ipam: &Ipam<'_>) -> Result<(), CniError> {
    let valid = crate::ipam::NetConf::parse_without_ipam(&serde_json::to_vec(&conf.raw).unwrap_or_default())?
        .valid_attachments()?;
    let ipam_result = ipam.gc(env);
    let owners: Vec<String> = valid
        .iter()
        .map(|o| format!("{}:{}", o.container_id(), o.ifname()))
        .collect();
    let fw_result = match firewall_of(conf).await {
        Ok(fw) => fw.gc(&owners).await.map(drop).map_err(CniError::io),
        Err(e) => Err(e),
    };
    let ifb_result = gc_ifbs(&valid).await;
    ipam_result.and(fw_result).and(ifb_result)
}

/// The bandwidth capability's ifb devices (`nkbw…`) left behind by attachments that are gone:
/// an ifb is named like its attachment's host veth (`veth…`, same hash), so one whose veth is
/// gone and whose attachment is not in the valid list is an orphan (a plugin killed mid-ADD).
/// Another network's attachments keep theirs: their veths exist.
async fn gc_ifbs(valid: &[netkit_core::ipam::Owner]) -> Result<(), CniError> {
    let host = netkit_core::Handle::current().map_err(CniError::io)?;
    let keep: Vec<String> = valid.iter().map(attach::ifb_of).collect();
    let links = host.link_list().await.map_err(CniError::io)?;
    for l in &links {
        let Some(hash) = l.name.strip_prefix(attach::IFB_PREFIX) else {
            continue;
        };
        let veth = format!("{}{hash}", attach::VETH_PREFIX);
        if !keep.contains(&l.name) && !links.iter().any(|o| o.name == veth) {
            host.link_del(&l.name).await.map_err(CniError::io)?;
        }
    }
    Ok(())
}
