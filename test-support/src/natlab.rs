//! The lab every firewall frontend test needs: a host H with a bridge `br0` (10.88.0.1/24), a
//! container C on it (10.88.0.2, default route via H) and an outside client O on a veth `ext0`
//! (H 192.0.2.1/24, O 192.0.2.2), forwarding on in H — built with `ip`, so the frontend under
//! test only adds the firewall. TCP echo servers listen on C:80 and O:7777.

use std::net::SocketAddr;

use netkit_core::NetNsGuard;

use crate::echo::{tcp_hello_from, Hello, Server};
use crate::HostNs;

/// H's address as O sees it, port 8080: where a port mapping to C:80 is added.
pub const MAPPED: &str = "192.0.2.1:8080";
/// O's echo server, which C reaches only through masquerade (O has no route back to C).
pub const OUTSIDE: &str = "192.0.2.2:7777";

/// The lab (deleted on drop: containers first, then the host).
pub struct NatLab {
    // The servers stop first, then the containers, then the host.
    _servers: (Server, Server),
    /// The container C.
    pub c: NetNsGuard,
    /// The outside client O.
    pub o: NetNsGuard,
    /// The host H.
    pub host: HostNs,
}

impl NatLab {
    /// Build it; the host's name starts with `tag`. Nothing is mapped or masqueraded yet,
    /// which this checks (O cannot reach C, C cannot reach O).
    pub fn build(tag: &str) -> NatLab {
        let host = HostNs::new(tag);
        let c = host.container("c");
        let o = host.container("o");
        let (h, cn, on) = (host.name(), c.name().unwrap(), o.name().unwrap());
        for line in [
            vec!["-n", h, "link", "add", "br0", "type", "bridge"],
            vec!["-n", h, "link", "set", "br0", "up"],
            vec!["-n", h, "addr", "add", "10.88.0.1/24", "dev", "br0"],
            vec![
                "-n", h, "link", "add", "vc0", "type", "veth", "peer", "name", "eth0", "netns", cn,
            ],
            vec!["-n", h, "link", "set", "vc0", "master", "br0", "up"],
            vec!["-n", cn, "link", "set", "eth0", "up"],
            vec!["-n", cn, "addr", "add", "10.88.0.2/24", "dev", "eth0"],
            vec!["-n", cn, "route", "add", "default", "via", "10.88.0.1"],
            vec![
                "-n", h, "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", on,
            ],
            vec!["-n", h, "link", "set", "ext0", "up"],
            vec!["-n", h, "addr", "add", "192.0.2.1/24", "dev", "ext0"],
            vec!["-n", on, "link", "set", "eth0", "up"],
            vec!["-n", on, "addr", "add", "192.0.2.2/24", "dev", "eth0"],
        ] {
            crate::cmd::ip(&line);
        }
        netkit_core::sysctl::set(&host, "net.ipv4.ip_forward", "1").expect("ip_forward in H");
        let servers = (
            Server::tcp(&c, "C", "0.0.0.0:80".parse().unwrap()),
            Server::tcp(&o, "O", "0.0.0.0:7777".parse().unwrap()),
        );
        let lab = NatLab {
            _servers: servers,
            c,
            o,
            host,
        };
        assert!(lab.o_to_mapped().is_err(), "O reached C before any mapping");
        assert!(lab.c_to_outside().is_err(), "C reached O without masquerade");
        lab
    }

    /// O connects to [`MAPPED`].
    pub fn o_to_mapped(&self) -> Result<Hello, String> {
        tcp_hello_from(&self.o, sa(MAPPED))
    }

    /// C connects to [`OUTSIDE`].
    pub fn c_to_outside(&self) -> Result<Hello, String> {
        tcp_hello_from(&self.c, sa(OUTSIDE))
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}
