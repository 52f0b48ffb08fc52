//! LoadBalancer addresses answered on the node's interface (MetalLB's layer-2 mode): one node
//! per address holds it and answers ARP (IPv4) or neighbour solicitations (IPv6) for it; the
//! others leave it alone.
//!
//! Which node: among the nodes with a ready endpoint of the service, the one with the smallest
//! hash of `address/node`. Every proxy computes the same from the same store, so the nodes
//! agree without talking to each other, and an address moves only when its node loses its
//! endpoints (or a node with a smaller hash gains one). The holder adds the address to its
//! interface as a /32 or /128 with `proto` [`PROTO_LB`] (how a restarted proxy finds what it
//! added; IPv4 ones are also labelled `<interface>:lb` for people reading `ip addr`), without
//! a prefix route and, for IPv6, without duplicate address detection (the address is the
//! service's, already answered elsewhere until the move). The kernel then answers ARP and
//! neighbour solicitations for it; the holder also announces it at once — a gratuitous ARP,
//! or an unsolicited neighbour advertisement with the override flag to all nodes — so clients
//! and switches learn the new holder now rather than when their entries expire.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use ipnetwork::IpNetwork;

use crate::{Handle, NetNs};

/// The `proto` (`IFA_PROTO`) of the addresses this module adds: how it tells them from the
/// interface's own.
pub const PROTO_LB: u8 = 79;

/// The label of the IPv4 addresses this module adds on `iface` (IFNAMSIZ bounds it: at most
/// 15 bytes).
pub(crate) fn label(iface: &str) -> String {
    let mut stem = iface;
    while stem.len() > 12 {
        let mut end = stem.len() - 1;
        while !stem.is_char_boundary(end) {
            end -= 1;
        }
        stem = &stem[..end];
    }
    format!("{stem}:lb")
}

/// The node that answers for `ip`, among `nodes`.
pub(crate) fn holder<'a>(ip: IpAddr, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes
        .into_iter()
        .min_by_key(|n| (crate::fsutil::fnv1a(format!("{ip}/{n}").as_bytes()), *n))
}

/// Make `iface` in the node hold exactly `want` among the addresses this module manages;
/// returns the addresses added. Every step runs; the first error is returned.
pub(crate) async fn apply(h: &Handle, ns: &NetNs, iface: &str, want: &BTreeSet<IpAddr>) -> Result<Vec<IpAddr>, String> {
    crate::ifname::check(iface).map_err(|e| e.to_string())?;
    let lbl = label(iface);
    let have: BTreeSet<IpAddr> = h
        .addr_list(Some(iface))
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|a| a.protocol == PROTO_LB || (a.ip().is_ipv4() && a.label.as_deref() == Some(lbl.as_str())))
        .map(|a| a.ip())
        .collect();
    let mut first = None;
    for ip in have.difference(want) {
        if let Err(e) = h.addr_del(iface, IpNetwork::from(*ip)).await {
            first.get_or_insert(format!("remove {ip} from {iface}: {e}"));
        }
    }
    let mut added = Vec::new();
    for ip in want.difference(&have) {
        let req = h
            .addr_add(iface, IpNetwork::from(*ip))
            .noprefixroute()
            .nodad()
            .protocol(PROTO_LB);
        let req = match ip {
            IpAddr::V4(_) => req.label(&lbl),
            IpAddr::V6(_) => req,
        };
        match req.await {
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
                .exec(move || {
                    ips.iter().try_for_each(|ip| match ip {
                        IpAddr::V4(v4) => gratuitous_arp(&ifname, mac, *v4),
                        IpAddr::V6(v6) => unsolicited_na(&ifname, mac, *v6),
                    })
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| format!("announcing on {iface}: {e}")));
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

/// Send an unsolicited neighbour advertisement for `ip` (override set, target link-layer
/// address `mac`) to all nodes on `iface`, from `ip`, from the calling thread's namespace
/// (RFC 4861 §7.2.6).
fn unsolicited_na(iface: &str, mac: [u8; 6], ip: Ipv6Addr) -> std::io::Result<()> {
    let ifindex = nix::net::if_::if_nametoindex(iface).map_err(std::io::Error::from)?;
    let sock = socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6)?;
    // Neighbour discovery is only accepted with a hop limit of 255.
    setsockopt_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, 255)?;
    setsockopt_int(
        &sock,
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_IF,
        ifindex as libc::c_int,
    )?;
    // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    from.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    from.sin6_addr.s6_addr = ip.octets();
    // SAFETY: `from` is valid for the length given and outlives the call.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            std::ptr::addr_of!(from).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Type 136, code 0, checksum (the kernel fills it in on ICMPv6 raw sockets), flags
    // (override), the target, option 2 (target link-layer address, 8 bytes).
    let mut pkt = Vec::with_capacity(32);
    pkt.extend_from_slice(&[136, 0, 0, 0, 0x20, 0, 0, 0]);
    pkt.extend_from_slice(&ip.octets());
    pkt.extend_from_slice(&[2, 1]);
    pkt.extend_from_slice(&mac);
    // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
    let mut to: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    to.sin6_addr.s6_addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
    to.sin6_scope_id = ifindex;
    send_to(&sock, &pkt, &to)
}

/// Broadcast a gratuitous ARP request for `ip` from `mac` on `iface` (`arping -U`), from the
/// calling thread's namespace.
fn gratuitous_arp(iface: &str, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    let ifindex = nix::net::if_::if_nametoindex(iface).map_err(std::io::Error::from)?;
    let sock = socket(
        libc::AF_PACKET,
        libc::SOCK_DGRAM,
        i32::from((libc::ETH_P_ARP as u16).to_be()),
    )?;
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
    send_to(&sock, &pkt, &to)
}

/// A new socket (close-on-exec).
fn socket(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2) with plain integer arguments; the result is checked before use.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(level, opt, v)` for an integer option.
fn setsockopt_int(sock: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> std::io::Result<()> {
    // SAFETY: `v` is a c_int that outlives the call; its size is passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            std::ptr::addr_of!(v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Send `pkt` to `to` (a `sockaddr_*` of the socket's family) in one datagram.
fn send_to<A>(sock: &OwnedFd, pkt: &[u8], to: &A) -> std::io::Result<()> {
    // SAFETY: `pkt` and `to` are valid for the lengths given and outlive the call; `A` is the
    // socket address type the callers pass, plain old data of its full size.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            std::ptr::from_ref(to).cast(),
            std::mem::size_of::<A>() as libc::socklen_t,
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
        assert!(label("ééééééééé").len() <= 15, "cut on a character boundary");
    }
}
