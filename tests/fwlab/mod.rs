//! The firewall test lab: a "host" namespace with container bridges, "containers" behind them,
//! and an "outside" namespace linked to the host. Nothing here touches the namespace the tests
//! run in: every link, address, route, sysctl and rule lives in the lab's own namespaces,
//! which are deleted when the [`Lab`] drops (also on panic).
//!
//! ```text
//!  C1 10.88.0.2 ─┐                                      (second_bridge)
//!  C2 10.88.0.3 ─┼─ nkbr0 10.88.0.1/24 ─ H ─ nkbr1 10.89.0.1/24 ─ D1 10.89.0.2
//!  C3 10.88.0.4 ─┘    (fd88::1/64)       │
//!                                  ext0 192.0.2.1/24, 192.0.2.3/24 (2001:db8::1/64)
//!                                        │
//!                                  O eth0 192.0.2.2/24 (2001:db8::2/64)
//!
//!  (remote_node) H rnode0 10.0.5.1/24 ─ R eth0 10.0.5.2/24, lo 10.90.0.2/32
//! ```
//!
//! H forwards (ip_forward, and IPv6 forwarding with `ipv6`) and routes its default via O;
//! O has no route to the container networks, so only NAT makes containers reachable from it.
//! Container ports are in hairpin mode (see `container`); no namespace does IPv6 duplicate
//! address detection (see `no_dad`).

pub mod dump;
pub mod echo;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnetwork::IpNetwork;
use netkit_core::firewall::{self, AnyFirewall, Driver, FirewallOptions, Network};
use netkit_core::link::{Bridge, BridgePort, Veth};
use netkit_core::route::Route;
use netkit_core::{Handle, NetNs, NetNsGuard};
use netkit_test_support::{tempdir, unique};

/// The first container bridge.
pub const BR0: &str = "nkbr0";
/// The second container bridge (with [`LabSpec::second_bridge`]).
pub const BR1: &str = "nkbr1";
/// H's address on nkbr0 (the containers' gateway).
pub const GW: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 88, 0, 1));
/// H's address on nkbr1.
pub const GW1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 89, 0, 1));
/// D1's address (the container on nkbr1).
pub const D1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 89, 0, 2));
/// H's primary address towards O.
pub const EXT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
/// H's second address towards O (for host-IP-specific mappings).
pub const EXT2: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
/// O's address.
pub const OUT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
/// H's IPv6 address on nkbr0.
pub const GW6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd88, 0, 0, 0, 0, 0, 0, 1));
/// H's IPv6 address towards O.
pub const EXT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
/// O's IPv6 address.
pub const OUT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));

/// H's address on the link to the remote node R (see [`Lab::remote_node`]).
pub const RLINK: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 5, 1));
/// R's address on that link.
pub const RNODE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 5, 2));
/// The address of the remote endpoint (on R's `lo`, routed by H through R).
pub const REMOTE_EP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 90, 0, 2));

/// The IPv4 address of container `i` (1-based): 10.88.0.(i+1).
pub fn cip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 88, 0, 1 + i as u8))
}

/// The IPv6 address of container `i` (1-based): fd88::(i+1).
pub fn cip6(i: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd88, 0, 0, 0, 0, 0, 0, 1 + i as u16))
}

/// nkbr0's IPv4 subnet.
pub fn subnet() -> IpNetwork {
    "10.88.0.0/24".parse().expect("literal")
}

/// nkbr1's subnet.
pub fn subnet1() -> IpNetwork {
    "10.89.0.0/24".parse().expect("literal")
}

/// nkbr0's IPv6 subnet.
pub fn subnet6() -> IpNetwork {
    "fd88::/64".parse().expect("literal")
}

/// `ip:port`.
pub fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// What to build.
#[derive(Debug, Clone, Copy, Default)]
pub struct LabSpec {
    /// Containers C1..Cn on nkbr0.
    pub containers: usize,
    /// Also nkbr1 with container D1.
    pub second_bridge: bool,
    /// IPv6 addresses and forwarding as well.
    pub ipv6: bool,
}

impl LabSpec {
    /// `n` containers on nkbr0, IPv4 only.
    pub fn containers(n: usize) -> Self {
        Self {
            containers: n,
            ..Default::default()
        }
    }
}

/// The lab (see the module docs). Dropping it deletes every namespace and the state dir.
pub struct Lab {
    /// C1..Cn (index 0 is C1).
    pub containers: Vec<NetNsGuard>,
    /// D1 on nkbr1, with [`LabSpec::second_bridge`].
    pub other: Option<NetNsGuard>,
    /// O.
    pub outside: NetNsGuard,
    /// H.
    pub host: NetNsGuard,
    /// A netlink handle in H.
    pub hh: Handle,
    /// A netlink handle in O.
    pub ho: Handle,
    /// The firewall's state directory (unique to this lab).
    pub state: tempfile::TempDir,
    /// The name prefix of the lab's namespaces.
    pub prefix: String,
}

/// No duplicate address detection for interfaces created from now on in the namespace of `h`:
/// a link-local address still in DAD cannot source neighbour solicitations, so a router (H)
/// could not resolve a container for a forwarded packet during the first second or two.
async fn no_dad(h: &Handle) {
    h.sysctl_set_many(&[
        ("net.ipv6.conf.all.accept_dad", "0"),
        ("net.ipv6.conf.default.accept_dad", "0"),
    ])
    .await
    .expect("accept_dad off");
}

async fn bridge(h: &Handle, name: &str, v4: IpNetwork, v6: Option<IpNetwork>) {
    h.link_add(&Bridge::new(name).up()).await.expect("bridge");
    h.addr_add(name, v4).await.expect("bridge address");
    if let Some(v6) = v6 {
        h.addr_add(name, v6).nodad().await.expect("bridge IPv6 address");
    }
}

/// A container namespace behind `bridge`: host end `host_end`, `eth0` born inside it.
async fn container(
    hh: &Handle,
    name: &str,
    bridge: &str,
    host_end: &str,
    v4: (IpAddr, IpAddr),
    v6: Option<(IpAddr, IpAddr)>,
) -> NetNsGuard {
    let c = NetNsGuard::create(name).expect("create container netns");
    let hc = c.handle().await.expect("handle in container");
    no_dad(&hc).await;
    hh.link_add(&Veth::new(host_end, "eth0").peer_netns(&c))
        .await
        .expect("container veth");
    hh.link_set(host_end)
        .master(bridge)
        .up()
        .apply()
        .await
        .expect("attach veth");
    // Hairpin mode, as CNI's bridge plugin sets for Kubernetes: with br_netfilter (on by
    // default in a new namespace) a DNATed packet to a host on the same bridge is bridged, not
    // routed, and a container reaching itself through a service would need its frame to leave
    // by the port it came in on.
    hh.bridge_port_set(host_end, &BridgePort::new().hairpin(true))
        .await
        .expect("hairpin mode");
    hc.link_set_up("lo").await.expect("lo up");
    hc.link_set_up("eth0").await.expect("eth0 up");
    hc.addr_add("eth0", IpNetwork::new(v4.0, 24).expect("prefix"))
        .await
        .expect("container address");
    hc.route_add(&Route::default_v4().gateway(v4.1))
        .await
        .expect("container default route");
    if let Some((ip, gw)) = v6 {
        hc.addr_add("eth0", IpNetwork::new(ip, 64).expect("prefix"))
            .nodad()
            .await
            .expect("container IPv6 address");
        hc.route_add(&Route::default_v6().gateway(gw))
            .await
            .expect("container IPv6 default route");
    }
    c
}

impl Lab {
    /// Build the lab; `tag` goes into the namespace names.
    pub async fn build(tag: &str, spec: LabSpec) -> Lab {
        let prefix = unique(tag);
        let host = NetNsGuard::create(&format!("{prefix}-h")).expect("create host netns");
        let outside = NetNsGuard::create(&format!("{prefix}-o")).expect("create outside netns");
        let hh = host.handle().await.expect("handle in H");
        let ho = outside.handle().await.expect("handle in O");
        no_dad(&hh).await;
        no_dad(&ho).await;
        hh.link_set_up("lo").await.expect("lo up in H");
        ho.link_set_up("lo").await.expect("lo up in O");
        hh.ip_forward(true).await.expect("ip_forward in H");
        if spec.ipv6 {
            hh.ipv6_forwarding(true).await.expect("IPv6 forwarding in H");
        }
        // The uplink H ext0 <-> O eth0.
        hh.link_add(&Veth::new("ext0", "eth0").peer_netns(&outside).up())
            .await
            .expect("uplink veth");
        ho.link_set_up("eth0").await.expect("O eth0 up");
        for ip in [EXT, EXT2] {
            hh.addr_add("ext0", IpNetwork::new(ip, 24).expect("prefix"))
                .await
                .expect("H uplink address");
        }
        ho.addr_add("eth0", IpNetwork::new(OUT, 24).expect("prefix"))
            .await
            .expect("O address");
        hh.route_add(&Route::default_v4().gateway(OUT))
            .await
            .expect("H default route");
        if spec.ipv6 {
            hh.addr_add("ext0", IpNetwork::new(EXT6, 64).expect("prefix"))
                .nodad()
                .await
                .expect("H uplink IPv6 address");
            ho.addr_add("eth0", IpNetwork::new(OUT6, 64).expect("prefix"))
                .nodad()
                .await
                .expect("O IPv6 address");
            hh.route_add(&Route::default_v6().gateway(OUT6))
                .await
                .expect("H IPv6 default route");
        }
        let gw6 = spec.ipv6.then(|| IpNetwork::new(GW6, 64).expect("prefix"));
        bridge(&hh, BR0, IpNetwork::new(GW, 24).expect("prefix"), gw6).await;
        let mut containers = Vec::new();
        for i in 1..=spec.containers {
            let v6 = spec.ipv6.then(|| (cip6(i), GW6));
            let c = container(
                &hh,
                &format!("{prefix}-c{i}"),
                BR0,
                &format!("veth{i}"),
                (cip(i), GW),
                v6,
            )
            .await;
            containers.push(c);
        }
        let other = if spec.second_bridge {
            bridge(&hh, BR1, IpNetwork::new(GW1, 24).expect("prefix"), None).await;
            Some(container(&hh, &format!("{prefix}-d1"), BR1, "vethd1", (D1, GW1), None).await)
        } else {
            None
        };
        Lab {
            containers,
            other,
            outside,
            host,
            hh,
            ho,
            state: tempdir(&prefix),
            prefix,
        }
    }

    /// Container `i` (1-based).
    pub fn c(&self, i: usize) -> &NetNs {
        &self.containers[i - 1]
    }

    /// D1 (the container on nkbr1).
    pub fn d1(&self) -> &NetNs {
        self.other.as_ref().expect("lab built with second_bridge")
    }

    /// H's name (for `ip netns` and netkit-fwctl).
    pub fn host_name(&self) -> &str {
        self.host.name().expect("named")
    }

    /// The options every firewall of this lab uses: the driver and the lab's state dir.
    pub fn options(&self, driver: Driver) -> FirewallOptions {
        FirewallOptions::default().driver(driver).state_dir(self.state.path())
    }

    /// Open H's firewall with `driver`.
    pub async fn firewall(&self, driver: Driver) -> AnyFirewall {
        firewall::open(&self.host, self.options(driver))
            .await
            .unwrap_or_else(|e| panic!("open the {} firewall in H: {e}", driver.as_str()))
    }

    /// nkbr0's network, as a firewall object (hairpin, 127.0.0.1).
    pub fn network(&self) -> Network {
        Network::new(BR0, subnet())
    }

    /// Another node R, with a pod address of its own: a veth `rnode0` from H (H [`RLINK`]/24,
    /// R [`RNODE`]/24), [`REMOTE_EP`]/32 on R's `lo`, H routing it through R, R's default
    /// route through H (so a reply to an address R does not know goes back through H, as it
    /// would between nodes). R is deleted with the returned guard.
    pub async fn remote_node(&self) -> NetNsGuard {
        let r = NetNsGuard::create(&format!("{}-r", self.prefix)).expect("create remote node netns");
        let hr = r.handle().await.expect("handle in R");
        hr.link_set_up("lo").await.expect("lo up in R");
        self.hh
            .link_add(&Veth::new("rnode0", "eth0").peer_netns(&r).up())
            .await
            .expect("veth to R");
        hr.link_set_up("eth0").await.expect("R eth0 up");
        self.hh
            .addr_add("rnode0", IpNetwork::new(RLINK, 24).expect("prefix"))
            .await
            .expect("H address towards R");
        hr.addr_add("eth0", IpNetwork::new(RNODE, 24).expect("prefix"))
            .await
            .expect("R address");
        hr.addr_add("lo", IpNetwork::new(REMOTE_EP, 32).expect("prefix"))
            .await
            .expect("R pod address");
        hr.route_add(&Route::default_v4().gateway(RLINK))
            .await
            .expect("R default route");
        self.hh
            .route_add(&Route::new(IpNetwork::new(REMOTE_EP, 32).expect("prefix")).gateway(RNODE))
            .await
            .expect("H route to the remote endpoint");
        r
    }

    /// Give O a route to `dst` through H (e.g. the service range).
    pub async fn outside_route(&self, dst: &str) {
        let dst: IpNetwork = dst.parse().expect("network");
        let gw = if dst.is_ipv4() { EXT } else { EXT6 };
        self.ho
            .route_add(&Route::new(dst).gateway(gw))
            .await
            .expect("route in O");
    }
}
