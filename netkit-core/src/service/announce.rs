//! LoadBalancer addresses answered on the node's interface (MetalLB's layer-2 mode): one node
//! per address holds it and answers ARP for it; the others leave it alone.
//!
//! Which node: among the nodes with a ready endpoint of the service, the one with the smallest
//! hash of `address/node`. Every proxy computes the same from the same store, so the nodes
//! agree without talking to each other, and an address moves only when its node loses its
//! endpoints (or a node with a smaller hash gains one). The holder adds the address to its
//! interface as a /32 labelled `<interface>:lb` (the label is how a restarted proxy finds what
//! it added) and sends a gratuitous ARP, so clients and switches learn the new holder at once
//! rather than when their ARP entries expire. IPv4 only for now (IPv6 needs NDP's unsolicited
//! neighbour advertisements).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;

use crate::{Handle, NetNs};

/// The label of the addresses this module adds on `iface` (IFNAMSIZ bounds it: at most 15
/// bytes).
pub(crate) fn label(iface: &str) -> String {
    let mut l = format!("{iface}:lb");
    if l.len() > 15 {
        l = format!("{}:lb", &iface[..12.min(iface.len())]);
    }
    l
}

/// The node that answers for `ip`, among `nodes`.
pub(crate) fn holder<'a>(ip: IpAddr, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes
        .into_iter()
        .min_by_key(|n| (crate::fsutil::fnv1a(format!("{ip}/{n}").as_bytes()), *n))
}

/// Make `iface` in the node hold exactly `want` among the addresses this module manages;
/// returns the addresses added. Every step runs; the first error is returned.
pub(crate) async fn apply(
    h: &Handle,
    ns: &NetNs,
    iface: &str,
    want: &BTreeSet<Ipv4Addr>,
) -> Result<Vec<Ipv4Addr>, String> {
    let lbl = label(iface);
    let have: BTreeSet<Ipv4Addr> = h
        .addr_list(Some(iface))
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|a| a.label.as_deref() == Some(lbl.as_str()))
        .filter_map(|a| match a.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    let mut first = None;
    for ip in have.difference(want) {
        let net = IpNetwork::new(IpAddr::V4(*ip), 32).expect("a /32");
        if let Err(e) = h.addr_del(iface, net).await {
            first.get_or_insert(format!("remove {ip} from {iface}: {e}"));
        }
    }
    let mut added = Vec::new();
    for ip in want.difference(&have) {
        let net = IpNetwork::new(IpAddr::V4(*ip), 32).expect("a /32");
        match h.addr_add(iface, net).label(&lbl).noprefixroute().await {
            Ok(()) => added.push(*ip),
            Err(e) => {
                first.get_or_insert(format!("add {ip} to {iface}: {e}"));
            }
        }
    }
    if !added.is_empty() {
        let mac = h
            .link_get(iface)
            .await
            .map_err(|e| e.to_string())?
            .mac
            .map(|m| m.octets());
        if let Some(mac) = mac {
            let (ifname, ips) = (iface.to_string(), added.clone());
            let sent = ns
                .exec(move || ips.iter().try_for_each(|ip| gratuitous_arp(&ifname, mac, *ip)))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| format!("gratuitous ARP on {iface}: {e}")));
            if let Err(e) = sent {
                first.get_or_insert(e);
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(added),
    }
}

/// Broadcast a gratuitous ARP request for `ip` from `mac` on `iface` (`arping -U`), from the
/// calling thread's namespace.
fn gratuitous_arp(iface: &str, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let ifindex = nix::net::if_::if_nametoindex(iface).map_err(std::io::Error::from)?;
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from((libc::ETH_P_ARP as u16).to_be()),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // ARP request, sender = target = ip (RFC 5227's announcement).
    let mut pkt = Vec::with_capacity(28);
    pkt.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    pkt.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    pkt.extend_from_slice(&[6, 4]);
    pkt.extend_from_slice(&1u16.to_be_bytes()); // request
    pkt.extend_from_slice(&mac);
    pkt.extend_from_slice(&ip.octets());
    pkt.extend_from_slice(&[0; 6]);
    pkt.extend_from_slice(&ip.octets());
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: `pkt` and `to` are valid for the lengths given and outlive the call.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            std::ptr::addr_of!(to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_names_the_same_holder_and_labels_fit() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let a = holder(ip, ["n1", "n2", "n3"]);
        assert_eq!(a, holder(ip, ["n3", "n1", "n2"]), "order does not matter");
        assert!(a.is_some());
        assert_eq!(holder(ip, Vec::<&str>::new()), None);
        // Losing a node that is not the holder keeps the holder.
        let others: Vec<&str> = ["n1", "n2", "n3"].into_iter().filter(|n| Some(*n) != a).collect();
        let b = holder(ip, others.iter().copied().chain(a));
        assert_eq!(a, b);
        assert_eq!(label("eth0"), "eth0:lb");
        assert!(label("averyveryverylong").len() <= 15);
    }
}
