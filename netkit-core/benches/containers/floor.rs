//! The floor: netkit's own requests for one container, sent from the simplest possible code —
//! one thread, blocking raw netlink sockets, one request and its answer at a time, no runtime,
//! no helper threads — so every method's distance to what the kernel itself costs is known.
//!
//! Per container, the same kernel work in the same order as the other methods: the named
//! namespace (`unshare` on this thread, the bind mount, back to the host namespace; the socket
//! inside the container is opened while this thread is in it, which is the cheapest way), the
//! veth with the peer born inside and the host end up (answered with the new link, `NLM_F_ECHO`,
//! as netkit asks), the host end's address, lo and eth0 up, eth0's address and the default
//! route. Teardown: `RTM_DELLINK` of every host end, then the names (unmount, unlink).

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Ctr, Res, Work};

fn os_err(what: &str) -> Box<dyn std::error::Error + Send + Sync> {
    format!("{what}: {}", std::io::Error::last_os_error()).into()
}

/// A blocking NETLINK_ROUTE socket in the namespace of the thread that opens it.
pub struct Sock {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Sock {
    pub fn open() -> Res<Sock> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(os_err("netlink socket"));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // The same socket options as netkit's: short acks, the kernel's error text.
        for opt in [libc::NETLINK_CAP_ACK, libc::NETLINK_EXT_ACK] {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with a valid c_int and its size.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    opt,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(os_err("setsockopt"));
            }
        }
        Ok(Sock {
            fd,
            seq: 0,
            buf: vec![0; 32 * 1024],
        })
    }

    /// Send one request and wait for its answer: the ack, and with `NLM_F_ECHO` the object
    /// the kernel echoes before it.
    pub fn request(&mut self, payload: RouteNetlinkMessage, flags: u16) -> Res<Option<RouteNetlinkMessage>> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
        msg.finalize();
        let mut out = vec![0; msg.buffer_len()];
        msg.serialize(&mut out);
        // SAFETY: `out` is a valid buffer of its length; the kernel is the default peer.
        if unsafe { libc::send(self.fd.as_raw_fd(), out.as_ptr().cast(), out.len(), 0) } < 0 {
            return Err(os_err("netlink send"));
        }
        let mut echoed = None;
        loop {
            // SAFETY: `buf` is a valid, writable buffer of its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
            if n < 0 {
                return Err(os_err("netlink recv"));
            }
            let mut rest = &self.buf[..n as usize];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
                if len < 16 || len > rest.len() {
                    break;
                }
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
                    .map_err(|e| format!("netlink answer: {e}"))?;
                if m.header.sequence_number == self.seq {
                    match m.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(echoed),
                                Some(code) => Err(format!(
                                    "the kernel refused: {}",
                                    std::io::Error::from_raw_os_error(-code.get())
                                )
                                .into()),
                            }
                        }
                        NetlinkPayload::InnerMessage(inner) => echoed = Some(inner),
                        _ => {}
                    }
                }
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
            }
        }
    }
}

fn link_msg(index: u32, name: Option<&str>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    if let Some(n) = name {
        m.attributes.push(LinkAttribute::IfName(n.to_string()));
    }
    m
}

fn up(mut m: LinkMessage) -> LinkMessage {
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m
}

fn addr_msg(index: u32, ip: Ipv4Addr, prefix: u8) -> RouteNetlinkMessage {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.prefix_len = prefix;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
    m.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
    RouteNetlinkMessage::NewAddress(m)
}

fn default_route(oif: u32, gw: Ipv4Addr) -> RouteNetlinkMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.table = 254;
    m.header.protocol = RouteProtocol::Boot;
    m.header.scope = RouteScope::Universe;
    m.header.kind = RouteType::Unicast;
    m.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
    m.attributes.push(RouteAttribute::Oif(oif));
    RouteNetlinkMessage::NewRoute(m)
}

/// The thread runs in the host namespace (`host` open on it) for its whole life.
fn enter(fd: &OwnedFd) -> Res<()> {
    // SAFETY: setns on a valid namespace descriptor; it changes only this thread.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(os_err("setns"));
    }
    Ok(())
}

fn open_ns(path: &str) -> Res<OwnedFd> {
    let c = CString::new(path)?;
    // SAFETY: open(2) of a NUL-terminated path; the descriptor is owned right away.
    let raw = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(os_err(path));
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A named namespace, created from this thread (which must be in the host namespace, `host`):
/// unshare, bind-mount, the container's socket opened inside, back to the host.
fn create_ns(name: &str, host: &OwnedFd) -> Res<(OwnedFd, Sock)> {
    let path = format!("/run/netns/{name}");
    let c = CString::new(path.as_str())?;
    // SAFETY: open(2) with O_CREAT|O_EXCL of a NUL-terminated path, closed at once.
    let f = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0,
        )
    };
    if f < 0 {
        return Err(os_err(&path));
    }
    // SAFETY: `f` is ours.
    unsafe { libc::close(f) };
    // SAFETY: unshare changes only this thread's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(os_err("unshare"));
    }
    let src = CString::new("/proc/thread-self/ns/net")?;
    // SAFETY: mount(2) with valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    let made = if rc != 0 {
        Err(os_err("bind mount"))
    } else {
        open_ns("/proc/thread-self/ns/net").and_then(|fd| Sock::open().map(|s| (fd, s)))
    };
    enter(host)?;
    made
}

/// Setup of `ctrs` (see the module docs), on a thread of its own in the host namespace.
pub fn setup(host_path: &str, work: Work, ctrs: &[Ctr]) -> Res<()> {
    let host_path = host_path.to_string();
    std::thread::scope(|s| {
        s.spawn(|| -> Res<()> {
            let host_fd = open_ns(&host_path)?;
            enter(&host_fd)?;
            let mut host = Sock::open()?;
            let trace = std::env::var_os("NETKIT_BENCH_FLOOR_TRACE").is_some();
            let mut steps = [std::time::Duration::ZERO; 4];
            for c in ctrs {
                let t0 = std::time::Instant::now();
                let (ns_fd, mut inside) = create_ns(&c.ns, &host_fd)?;
                let t1 = std::time::Instant::now();
                steps[0] += t1 - t0;
                let mut peer = link_msg(0, Some("eth0"));
                peer.attributes.push(LinkAttribute::NetNsFd(ns_fd.as_raw_fd()));
                let mut veth = up(link_msg(0, Some(&c.host_if)));
                veth.attributes.push(LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Veth),
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
                ]));
                let echoed = host.request(
                    RouteNetlinkMessage::NewLink(veth),
                    NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
                )?;
                let Some(RouteNetlinkMessage::NewLink(l)) = echoed else {
                    return Err("the veth was not echoed".into());
                };
                let host_index = l.header.index;
                let eth0 = l
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::Link(i) => Some(*i),
                        _ => None,
                    })
                    .ok_or("no peer index")?;
                let t2 = std::time::Instant::now();
                steps[1] += t2 - t1;
                if work == Work::Full {
                    host.request(addr_msg(host_index, c.host_ip, 30), NLM_F_CREATE | NLM_F_EXCL)?;
                }
                inside.request(RouteNetlinkMessage::SetLink(up(link_msg(1, None))), 0)?;
                inside.request(RouteNetlinkMessage::SetLink(up(link_msg(eth0, None))), 0)?;
                let t3 = std::time::Instant::now();
                steps[2] += t3 - t2;
                if work == Work::Full {
                    inside.request(addr_msg(eth0, c.ctr_ip, 30), NLM_F_CREATE | NLM_F_EXCL)?;
                    inside.request(default_route(eth0, c.host_ip), NLM_F_CREATE | NLM_F_EXCL)?;
                }
                steps[3] += t3.elapsed();
            }
            if trace {
                let n = ctrs.len().max(1) as f64;
                let us = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n;
                eprintln!(
                    "  floor by step, µs per container: namespace+socket {:.0}, veth {:.0}, host addr+lo+eth0 up {:.0}, addr+route {:.0}",
                    us(steps[0]), us(steps[1]), us(steps[2]), us(steps[3])
                );
            }
            Ok(())
        })
        .join()
        .map_err(|_| "the floor's thread panicked")?
    })
}

/// Teardown of `ctrs`: every host end by name, then every name.
pub fn teardown(host_path: &str, ctrs: &[Ctr]) -> Res<()> {
    let host_path = host_path.to_string();
    std::thread::scope(|s| {
        s.spawn(|| -> Res<()> {
            let host_fd = open_ns(&host_path)?;
            enter(&host_fd)?;
            let mut host = Sock::open()?;
            for c in ctrs {
                host.request(RouteNetlinkMessage::DelLink(link_msg(0, Some(&c.host_if))), 0)?;
            }
            for c in ctrs {
                let path = CString::new(format!("/run/netns/{}", c.ns))?;
                // SAFETY: umount2 and unlink of a NUL-terminated path.
                unsafe {
                    if libc::umount2(path.as_ptr(), libc::MNT_DETACH) != 0 {
                        return Err(os_err("umount"));
                    }
                    if libc::unlink(path.as_ptr()) != 0 {
                        return Err(os_err("unlink"));
                    }
                }
            }
            Ok(())
        })
        .join()
        .map_err(|_| "the floor's thread panicked")?
    })
}
