//! Bridge mode, the host side: the bridge (created when missing, never removed: other
//! containers share it), the host end as a port of it, and the bridge as the containers'
//! gateway.

use crate::link::{AddrGenMode, Bridge, BridgePort};
use crate::{Handle, Link, LinkError};
use ipnetwork::IpNetwork;

use super::config::NetworkConfig;
use super::error::{AttachError, ErrorKind};
use super::names::Names;
use super::result::CniResult;

/// The bridge, created (up, with the configured MTU and promiscuity) when missing.
pub async fn ensure(conf: &NetworkConfig, host: &Handle) -> Result<Link, AttachError> {
    let link = match host.link_get(&conf.bridge).await {
        Ok(l) => l,
        Err(e) if e.is_not_found() => {
            let mut spec = Bridge::new(&conf.bridge);
            if let Some(m) = conf.link_mtu()? {
                spec = spec.mtu(m);
            }
            match host.link_add(&spec).await {
                Ok(l) => {
                    // Pin the MAC the kernel gave it: a bridge with no MAC of its own takes the
                    // lowest of its ports' and changes it as containers come and go, which
                    // breaks the gateway in every other container's neighbour cache.
                    if let Some(mac) = l.mac {
                        host.link_set(&conf.bridge)
                            .mac(mac)
                            .apply()
                            .await
                            .map_err(AttachError::io)?;
                    }
                    l
                }
                // Another ADD created it at the same moment.
                Err(e) if e.is_exists() => host.link_get(&conf.bridge).await.map_err(AttachError::io)?,
                Err(e) => return Err(AttachError::io(e)),
            }
        }
        Err(e) => return Err(AttachError::io(e)),
    };
    if link.kind.as_str() != "bridge" {
        return Err(AttachError::new(
            ErrorKind::InvalidConfig,
            format!("{} exists and is a {}, not a bridge", conf.bridge, link.kind.as_str()),
        ));
    }
    let mut set = host.link_set(&conf.bridge).up();
    if conf.promisc_mode {
        set = set.promisc(true);
    }
    set.apply().await.map_err(AttachError::io)?;
    if conf.vlan.is_some() {
        host.bridge_vlan_filtering(&conf.bridge, true)
            .await
            .map_err(vlan_error)?;
    }
    Ok(link)
}

/// The host end as a port of the bridge: no IPv6 address of its own (the host namespace does
/// not grow an address and routes per container, and the port sends no IPv6 chatter), tagged
/// with the attachment, up; then the `vlan` and `hairpinMode` settings.
pub async fn wire_port(conf: &NetworkConfig, att: &Names, host: &Handle, host_end: &str) -> Result<(), AttachError> {
    host.link_set(host_end)
        .master(&conf.bridge)
        .addr_gen_mode(AddrGenMode::None)
        .alias(&att.tag())
        .up()
        .apply()
        .await
        .map_err(AttachError::io)?;
    // `vlan`: the port is an access port of that VLAN; with `isGateway` the bridge itself
    // too, so its gateway address is reachable in the VLAN (one VLAN per bridge then, as
    // the bridge device has one untagged VLAN).
    if let Some(v) = conf.vlan {
        host.bridge_vlan_access(host_end, v, conf.is_gateway)
            .await
            .map_err(vlan_error)?;
    }
    if conf.hairpin_mode {
        host.bridge_port_set(host_end, &BridgePort::new().hairpin(true))
            .await
            .map_err(AttachError::io)?;
    }
    Ok(())
}

/// `isGateway`: the gateway addresses on the bridge and forwarding on. With `forceAddress`,
/// any other address the bridge has in the same subnet is removed (the reference bridge
/// plugin's meaning: the gateway moved); without it, it stays beside the gateway (the reference
/// plugin refuses the ADD then; netkit does not, so a bridge shared with other software keeps
/// working).
pub async fn gateway(conf: &NetworkConfig, host: &Handle, result: &CniResult) -> Result<(), AttachError> {
    if !conf.is_gateway {
        return Ok(());
    }
    for ip in &result.ips {
        if let Some(gw) = ip.gateway {
            let addr = IpNetwork::new(gw, ip.address.prefix()).map_err(AttachError::io)?;
            if conf.force_address {
                // Only then a listing: the hot path adds without one.
                let subnet = IpNetwork::new(addr.network(), addr.prefix()).map_err(AttachError::io)?;
                for old in host.addr_list(Some(&conf.bridge)).await.map_err(AttachError::io)? {
                    if old.prefix != addr && old.prefix.prefix() == addr.prefix() && subnet.contains(old.prefix.ip()) {
                        host.addr_del(&conf.bridge, old.prefix).await.map_err(AttachError::io)?;
                    }
                }
            }
            // No dump first (it lists every address of the host namespace): an address
            // already there, from an earlier or a parallel ADD, answers EEXIST.
            let req = host.addr_add(&conf.bridge, addr);
            let res = if gw.is_ipv6() { req.nodad().await } else { req.await };
            if let Err(e) = res {
                if !e.is_exists() {
                    return Err(AttachError::io(e));
                }
            }
        }
    }
    host.ip_forward(true).await.map_err(AttachError::io)?;
    if result.ips.iter().any(|i| i.address.is_ipv6()) {
        host.ipv6_forwarding(true).await.map_err(AttachError::io)?;
    }
    Ok(())
}

/// A VLAN step's error: [`ErrorKind::KernelUnsupported`] on a kernel without bridge VLAN filtering.
fn vlan_error(e: LinkError) -> AttachError {
    if e.is_unsupported() {
        return AttachError::new(ErrorKind::KernelUnsupported, format!("vlan: {e}"));
    }
    AttachError::io(e)
}
