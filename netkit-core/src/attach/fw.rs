//! The attachments' use of netkit's firewall: which one (options from the configuration), the rules
//! of an attachment (masquerade, port mappings, its network), and their removal on DEL and GC.
//!
//! Every attachment's rules belong to its firewall owner, `<network>/<container ID>:<ifname>`
//! (see [`Names::firewall_owner`]): a GC touches only its own network's owners. DEL and GC
//! read the state directory first and open the firewall only when there is something to
//! remove, so an attachment that never had rules is deleted on a host without nftables and
//! iptables.

use std::net::IpAddr;

use crate::firewall::{self, AnyFirewall, Firewall, FirewallOptions, Masquerade, Network, Rules};
use crate::NetNs;
use ipnetwork::IpNetwork;

use super::config::{Mode, NetworkConfig};
use super::error::{AttachError, ErrorKind};
use super::names::{firewall_scope, Names};
use super::result::CniResult;

/// The firewall options the configuration asks for.
pub fn options(conf: &NetworkConfig) -> FirewallOptions {
    let mut opts = FirewallOptions {
        driver: conf.firewall_backend,
        state_dir: conf.firewall_state_dir.clone(),
        // A plugin's caller waits for it to exit: nf_tables' cleanup wait is left to a
        // detached process (unless `waitLinkFree` asks for no detached processes).
        detached_close: !conf.wait_link_free,
        ..Default::default()
    };
    if let Some(name) = &conf.firewall_name {
        opts.name = name.clone();
    }
    opts
}

/// The firewall of the host namespace, as the configuration asks.
pub async fn open(conf: &NetworkConfig, host: &NetNs) -> Result<AnyFirewall, AttachError> {
    firewall::open(host, options(conf)).await.map_err(fw_error)
}

/// A firewall error as a CNI error: refusals of the configuration (a conflict, bad input, a
/// `firewallName` another `firewallStateDir` owns) are [`ErrorKind::InvalidConfig`].
pub fn fw_error(e: firewall::FirewallError) -> AttachError {
    match e {
        firewall::FirewallError::Conflict { .. }
        | firewall::FirewallError::Invalid { .. }
        | firewall::FirewallError::Foreign { .. } => AttachError::new(ErrorKind::InvalidConfig, e.to_string()),
        e => AttachError::io(e),
    }
}

/// The rules of an attachment (`None`: neither masquerade nor port mappings).
pub fn rules(
    conf: &NetworkConfig,
    pools: &[IpNetwork],
    result: &CniResult,
    host_end: &str,
) -> Result<Option<Rules>, AttachError> {
    let ips: Vec<IpAddr> = result.ips.iter().map(|i| i.address.ip()).collect();
    let mappings = conf.mappings_for(&ips)?;
    if !conf.ip_masq && mappings.is_empty() {
        return Ok(None);
    }
    let mut rules = Rules {
        port_mappings: mappings,
        ..Default::default()
    };
    for ip in &result.ips {
        let subnet = IpNetwork::new(ip.address.network(), ip.address.prefix()).map_err(AttachError::io)?;
        let iface = match conf.mode {
            Mode::Routed => host_end,
            Mode::Bridge => conf.bridge.as_str(),
        };
        rules.networks.push(Network::new(iface, subnet));
        if conf.ip_masq {
            // One masquerade per network (the IPAM pool, or the subnet the address came
            // with), held by every container on it: the kernel keeps one entry whatever the
            // number of containers, so ADD and DEL do not touch it but for the first and last
            // container. Traffic within the network stays unmasqueraded (pod to pod,
            // Kubernetes' rule; routed mode too, although each address is alone on its link).
            let network = pools
                .iter()
                .find(|p| p.contains(ip.address.ip()))
                .copied()
                .unwrap_or(subnet);
            rules.masquerades.push(Masquerade::subnet(network));
        }
    }
    Ok(Some(rules))
}

/// DEL: remove what the attachment holds (and what it held under the owner name before 0.2),
/// opening the firewall only if the state directory records something.
pub async fn release(conf: &NetworkConfig, host: &NetNs, att: &Names) -> Result<(), AttachError> {
    let opts = options(conf);
    let mut fw = None;
    for owner in [att.firewall_owner(), att.legacy_firewall_owner()] {
        let held = firewall::recorded(host, &opts, &owner).await.map_err(AttachError::io)?;
        if held.is_empty() {
            continue;
        }
        if fw.is_none() {
            fw = Some(open(conf, host).await?);
        }
        let fw = fw.as_ref().expect("opened above");
        fw.teardown(&owner).await.map_err(AttachError::io)?;
    }
    Ok(())
}

/// GC: tear down this network's owners that are not among the valid attachments; other
/// networks' owners (and owners from before 0.2, which name no network) are left alone.
pub async fn gc(conf: &NetworkConfig, host: &NetNs, valid: &[Names]) -> Result<(), AttachError> {
    let scope = firewall_scope(&conf.name);
    let keep: Vec<String> = valid.iter().map(Names::firewall_owner).collect();
    let recorded = firewall::recorded_owners(host, &options(conf))
        .await
        .map_err(AttachError::io)?;
    if !recorded.iter().any(|o| o.starts_with(&scope) && !keep.contains(o)) {
        return Ok(());
    }
    let fw = open(conf, host).await?;
    fw.gc_scope(&scope, &keep).await.map(drop).map_err(AttachError::io)
}
