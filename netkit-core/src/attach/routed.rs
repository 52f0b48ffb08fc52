//! Routed mode (Calico's), the host side: no bridge; the host end has no address, a fixed MAC
//! (`ee:ee:ee:ee:ee:ee`) and proxy ARP; the container gets its address as /32 (/128), a link
//! route to 169.254.1.1 and its default route through it (answered by proxy ARP); for IPv6 its
//! default route goes through the host end's link-local address, with DAD off on both ends; the
//! host reaches the container through a /32 (/128) route on the host end.
//!
//! Every address is checked against the configured pool before anything changes, and each
//! host route is added exclusively: an address that another route already covers exactly
//! (another pod's, or one the host uses) fails the ADD instead of taking its traffic.

use std::net::IpAddr;

use crate::ipam::Pool;
use crate::route::Route;
use crate::Handle;
use ipnetwork::IpNetwork;

use super::error::{AttachError, ErrorKind};
use super::names::Names;
use super::result::CniResult;

/// The host end's MAC, so the container's IPv6 gateway (its link-local address) is known in
/// advance.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The IPv4 gateway containers see (answered by proxy ARP on the host end).
pub const GW4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 1, 1));

/// The link-local address the kernel gives the host end (EUI-64 of [`HOST_MAC`]).
pub fn gw6() -> IpAddr {
    IpAddr::V6("fe80::ecee:eeff:feee:eeee".parse().expect("literal"))
}

/// The address alone: /32 or /128.
pub fn full_prefix(ip: IpAddr) -> IpNetwork {
    IpNetwork::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("full-length prefix")
}

/// Check every address against `pool` (a delegated IPAM or the `ips` capability may ask for
/// any address: the metadata service's, another pod's), then make each the container's alone,
/// with the routed gateways.
pub fn narrow(result: &mut CniResult, pool: &Pool) -> Result<(), AttachError> {
    for ip in &mut result.ips {
        let addr = ip.address.ip();
        if pool.set_of(addr).is_none() {
            return Err(AttachError::new(
                ErrorKind::AddressUnavailable,
                format!(
                    "routed mode: {addr} is not in pool {:?}; no host route is made for it",
                    pool.name()
                ),
            ));
        }
        ip.address = full_prefix(addr);
        ip.gateway = Some(if addr.is_ipv4() { GW4 } else { gw6() });
    }
    Ok(())
}

/// The host end: proxy ARP (IPv4), no DAD (IPv6), tagged with the attachment, up.
pub async fn wire_host_end(att: &Names, host: &Handle, host_end: &str, result: &CniResult) -> Result<(), AttachError> {
    if result.ips.iter().any(|i| i.address.is_ipv4()) {
        host.proxy_arp(host_end, true).await.map_err(AttachError::io)?;
    }
    if result.ips.iter().any(|i| i.address.is_ipv6()) {
        host.accept_dad(host_end, 0).await.map_err(AttachError::io)?;
    }
    host.link_set(host_end)
        .alias(&att.tag())
        .up()
        .apply()
        .await
        .map_err(AttachError::io)
}

/// The host's routes to the container (exclusive: see the module docs) and forwarding on.
pub async fn host_routes(host: &Handle, host_end: &str, result: &CniResult) -> Result<(), AttachError> {
    for ip in &result.ips {
        host.route_add(&Route::new(ip.address).dev(host_end))
            .await
            .map_err(|e| match e.is_exists() {
                true => AttachError::new(
                    ErrorKind::AddressUnavailable,
                    format!("routed mode: the host already routes {} elsewhere: {e}", ip.address),
                ),
                false => AttachError::io(e),
            })?;
    }
    if result.ips.iter().any(|i| i.address.is_ipv4()) {
        host.ip_forward(true).await.map_err(AttachError::io)?;
    }
    if result.ips.iter().any(|i| i.address.is_ipv6()) {
        host.ipv6_forwarding(true).await.map_err(AttachError::io)?;
    }
    Ok(())
}
