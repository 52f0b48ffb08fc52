//! A simulated cluster's underlay, for the overlay tests: a lab namespace whose bridges are L2
//! segments, nodes (namespaces with `eth0` on a segment), and optionally a router namespace
//! joining the segments (two L2 segments, one L3 network) — built with `ip`, so the agent under
//! test adds only the overlay.
//!
//! ```text
//!   segment 0: bridge ul0 in the lab, 192.168.50.0/24     segment 1: bridge ul1, 192.168.60.0/24
//!   node eth0 = 192.168.50.<k>                              node eth0 = 192.168.60.<k>
//!            \______________ router: .254 on each, forwarding ______________/
//! ```
//!
//! With a router, every node's default route goes through it (so nodes on the other segment
//! are reached through a gateway, as across racks). Pods are namespaces too ([`Cluster::pod`]);
//! attaching them is the test's business. Everything is deleted on drop, also on panic.

use std::net::Ipv4Addr;

use netkit_core::NetNsGuard;

use crate::HostNs;

/// The lab: segments, an optional router, the nodes made so far.
pub struct Cluster {
    /// Node and pod namespaces are dropped before the lab (field order).
    router: Option<NetNsGuard>,
    lab: HostNs,
    segments: u8,
}

/// A node of the cluster: its namespace and underlay address.
pub struct Node {
    /// The node's namespace (deleted on drop).
    pub ns: NetNsGuard,
    /// Its address on `eth0`.
    pub ip: Ipv4Addr,
    /// Its segment (0 or 1).
    pub segment: u8,
}

impl Node {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        self.ns.name().expect("nodes are named")
    }
}

/// The underlay subnet of `segment`: 192.168.50.0/24, 192.168.60.0/24.
pub fn segment_subnet(segment: u8) -> (Ipv4Addr, u8) {
    (Ipv4Addr::new(192, 168, 50 + 10 * segment, 0), 24)
}

fn addr_on(segment: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 50 + 10 * segment, host)
}

impl Cluster {
    /// A lab with `segments` L2 segments (1 or 2); two are joined by a router namespace.
    pub fn new(tag: &str, segments: u8) -> Cluster {
        assert!((1..=2).contains(&segments), "1 or 2 segments");
        let lab = HostNs::new(tag);
        for s in 0..segments {
            let br = format!("ul{s}");
            lab.ip(&["link", "add", &br, "type", "bridge"]);
            lab.ip(&["link", "set", &br, "up"]);
        }
        let router = (segments == 2).then(|| {
            let r = lab.container("router");
            let rn = r.name().expect("named").to_string();
            for s in 0..segments {
                let (leg, br) = (format!("r{s}"), format!("ul{s}"));
                lab.ip(&[
                    "link",
                    "add",
                    &leg,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &format!("eth{s}"),
                    "netns",
                    &rn,
                ]);
                lab.ip(&["link", "set", &leg, "master", &br, "up"]);
                crate::cmd::ip(&["-n", &rn, "link", "set", &format!("eth{s}"), "up"]);
                crate::cmd::ip(&[
                    "-n",
                    &rn,
                    "addr",
                    "add",
                    &format!("{}/24", addr_on(s, 254)),
                    "dev",
                    &format!("eth{s}"),
                ]);
            }
            netkit_core::sysctl::set(&r, "net.ipv4.ip_forward", "1").expect("forwarding in the router");
            r
        });
        Cluster { router, lab, segments }
    }

    /// The router joining two segments (192.168.50.254 and 192.168.60.254), if the lab has one.
    pub fn router(&self) -> Option<&NetNsGuard> {
        self.router.as_ref()
    }

    /// The lab namespace (holds the segment bridges).
    pub fn lab(&self) -> &HostNs {
        &self.lab
    }

    /// A node named `<prefix>-<tag>` with `eth0` = 192.168.(50|60).`host`/24 on `segment`, up,
    /// lo up; with a router, a default route through it.
    pub fn node(&self, tag: &str, segment: u8, host: u8) -> Node {
        assert!(segment < self.segments, "no segment {segment}");
        let ns = self.lab.container(tag);
        let name = ns.name().expect("named").to_string();
        let ip = addr_on(segment, host);
        let leg = format!("u{segment}h{host}");
        self.lab.ip(&[
            "link", "add", &leg, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ]);
        self.lab
            .ip(&["link", "set", &leg, "master", &format!("ul{segment}"), "up"]);
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["link", "set", "eth0", "up"],
            vec!["addr", "add", &format!("{ip}/24")[..], "dev", "eth0"],
        ] {
            let mut full = vec!["-n", &name[..]];
            full.extend(args);
            crate::cmd::ip(&full);
        }
        if self.router.is_some() {
            crate::cmd::ip(&[
                "-n",
                &name,
                "route",
                "add",
                "default",
                "via",
                &addr_on(segment, 254).to_string(),
            ]);
        }
        Node { ns, ip, segment }
    }

    /// A pod namespace named `<prefix>-<tag>`, lo up, nothing else (the test attaches it).
    pub fn pod(&self, tag: &str) -> NetNsGuard {
        let ns = self.lab.container(tag);
        crate::cmd::ip(&["-n", ns.name().expect("named"), "link", "set", "lo", "up"]);
        ns
    }

    /// A scratch directory of the lab (removed with it).
    pub fn dir(&self) -> &std::path::Path {
        self.lab.dir()
    }
}
