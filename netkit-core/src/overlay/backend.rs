//! The overlay agent's backends: how pod traffic to another node's subnet leaves this node.
//!
//! * **vxlan** (Flannel's default): a VXLAN device (`flannel.1`, VNI 1, UDP 8472, learning off,
//!   MTU = underlay − 50) with the node subnet's network address as /32; per peer a permanent
//!   ARP entry (the peer's VTEP address → its VTEP MAC), an FDB entry (that MAC → the peer's
//!   underlay address) and an onlink route to the peer's subnet via its VTEP address. With
//!   `direct_routing`, a peer on this node's L2 segment gets a plain route via its underlay
//!   address instead (Flannel's `DirectRouting`).
//! * **host-gw**: per peer a route to its subnet via its underlay address. Only a peer on the
//!   same L2 segment can be reached so; any other is reported (agent log and status) and gets
//!   no route — never a route that would send pod traffic to the default gateway.
//!
//! * **udp** (the seed's design, Flannel's `udp`): a TUN device (`flannel0`) holding a route
//!   to the whole cluster network, and user-space encapsulation of each packet in a UDP
//!   datagram to the peer's port 8285 (see [`super::udp`] for the data path). The data path runs
//!   in the agent's process: it stops with the agent (the device and route stay; packets to
//!   other nodes are dropped until an agent runs again).
//!
//! The VTEP MAC is derived from the node's name (locally administered, unicast), so a
//! restarted agent publishes the same MAC and its peers' entries stay right.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv4Network};
use serde::{Deserialize, Serialize};

use super::bird::{BgpSession, Bird, BirdConfig, BirdExit, BirdPeer};
use super::peer::Peer;
use super::program::Entry;
use super::udp::DataPath;
use super::vxlan::{VxlanOverlay, VxlanOverlayConfig};
use super::OverlayError;
use crate::link::{TunTap, TunTapMode};
use crate::{Handle, MacAddr};

/// Which backend an agent runs, and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendConfig {
    /// VXLAN (see the [module docs](self)).
    Vxlan(VxlanBackendConfig),
    /// Routes via the peers' underlay addresses.
    HostGw,
    /// A TUN device and user-space UDP encapsulation.
    Udp(UdpBackendConfig),
    /// Calico's way: the node's subnet is a block announced by BGP through BIRD 2, which puts
    /// the other nodes' blocks into the kernel (see [`super::bird`]).
    Bgp(BgpBackendConfig),
}

/// The bgp backend's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpBackendConfig {
    /// The cluster's AS (Calico's default 64512).
    pub asn: u32,
    /// BIRD's directory: its configuration, control socket, log.
    pub dir: std::path::PathBuf,
    /// BGP hold time in seconds (90; short in tests).
    pub hold_time: u16,
    /// Route reflectors: node names (nodes of the lease store), or IPv4 addresses of routers
    /// outside it (a top-of-rack router running BGP for both segments); none: a full mesh. A
    /// reflector node peers with every node; the other nodes peer with the reflectors only.
    pub reflectors: Vec<String>,
    /// How traffic to other nodes' blocks travels (Calico's ipipMode/vxlanMode).
    pub encap: BgpEncap,
    /// Encapsulate only to nodes behind a router, plain BGP routes to nodes on this node's
    /// segment (Calico's `CrossSubnet`); off: encapsulate to every node (`Always`).
    /// Ignored without `encap`.
    pub cross_subnet: bool,
    /// The VXLAN device for `encap: Vxlan` (Calico's `vxlan.calico`, VNI 4096, port 4789;
    /// `direct_routing` is not used: `cross_subnet` decides).
    pub vxlan: VxlanBackendConfig,
    /// The tunnel device for `encap: Ipip` (Calico's `tunl0`).
    pub ipip_dev: String,
}

/// The bgp backend's encapsulation (see [`BgpBackendConfig::encap`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BgpEncap {
    /// None: BIRD's routes via the owning node (nodes share a segment, or the routers between
    /// them speak BGP).
    #[default]
    None,
    /// IPv4 in IPv4 through the tunnel device to the owning node's address (20 bytes).
    Ipip,
    /// VXLAN through a per-node VTEP (50 bytes), entries from the lease store as the vxlan
    /// backend has them.
    Vxlan,
}

impl Default for BgpBackendConfig {
    fn default() -> Self {
        Self {
            asn: 64512,
            dir: "/run/netkit/bird".into(),
            hold_time: 90,
            reflectors: Vec::new(),
            encap: BgpEncap::None,
            cross_subnet: false,
            vxlan: VxlanBackendConfig {
                dev: "vxlan.calico".into(),
                vni: 4096,
                port: 4789,
                direct_routing: false,
            },
            ipip_dev: "tunl0".into(),
        }
    }
}

/// The udp backend's options (Flannel's names and defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpBackendConfig {
    /// TUN device name (`flannel0`).
    pub dev: String,
    /// UDP port (8285).
    pub port: u16,
    /// TUN queues, each with its two threads and socket (0: one per core).
    pub queues: usize,
    /// One packet per system call each way (Flannel's own data path), for comparison.
    pub single: bool,
    /// Use the TUN and UDP offloads where the kernel has them (see
    /// [`super::offload`]); off: MTU-sized packets, batched. Ignored with `single`.
    pub offload: bool,
}

impl Default for UdpBackendConfig {
    fn default() -> Self {
        Self {
            dev: "flannel0".into(),
            port: 8285,
            queues: 0,
            single: false,
            offload: true,
        }
    }
}

/// The vxlan backend's options (Flannel's names and defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanBackendConfig {
    /// Device name (`flannel.1`).
    pub dev: String,
    /// VNI (1).
    pub vni: u32,
    /// UDP port (8472, the Linux default Flannel uses).
    pub port: u16,
    /// Plain routes to peers on this node's L2 segment, VXLAN to the others (off).
    pub direct_routing: bool,
}

impl Default for VxlanBackendConfig {
    fn default() -> Self {
        Self {
            dev: "flannel.1".into(),
            vni: 1,
            port: 8472,
            direct_routing: false,
        }
    }
}

impl BackendConfig {
    /// The backend's name as leases carry it (`vxlan`, `host-gw`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Vxlan(_) => "vxlan",
            Self::HostGw => "host-gw",
            Self::Udp(_) => "udp",
            Self::Bgp(_) => "bgp",
        }
    }

    /// Bytes of encapsulation the backend adds to each IPv4 packet: the pods' MTU is the
    /// underlay's minus this (vxlan 50: outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14;
    /// udp 28: outer IPv4 20, UDP 8).
    pub fn overhead(&self) -> u32 {
        match self {
            Self::Vxlan(_) => 50,
            Self::HostGw => 0,
            Self::Udp(_) => 28,
            Self::Bgp(b) => match b.encap {
                BgpEncap::None => 0,
                BgpEncap::Ipip => 20,
                BgpEncap::Vxlan => 50,
            },
        }
    }
}

/// How one peer is reached, as status reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerMode {
    /// Through the VXLAN device.
    Vxlan,
    /// A route via the peer's underlay address (host-gw, or vxlan's direct routing).
    Direct,
    /// Through the udp backend's TUN device and data path.
    Udp,
    /// A route BIRD learned by BGP.
    Bgp,
    /// Through the bgp backend's IPIP tunnel.
    Ipip,
    /// Not programmed: the reason says why.
    Unreachable,
}

/// What the backend needs to know about this node once it runs.
#[derive(Clone, Debug)]
pub(crate) struct Underlay {
    /// The underlay device's name and index.
    pub iface: String,
    pub index: u32,
    /// This node's underlay address.
    pub public_ip: IpAddr,
    /// The underlay device's MTU.
    pub mtu: u32,
}

/// A backend set up on this node.
#[derive(Debug)]
pub(crate) struct Backend {
    cfg: BackendConfig,
    underlay: Underlay,
    /// The overlay device once configured (name, index): vxlan's, or the bgp backend's VXLAN
    /// or IPIP device; and the VXLAN MAC.
    tunnel: Option<(String, u32)>,
    vtep_mac: Option<MacAddr>,
    /// udp: the TUN device's index and the running data path.
    udp: Option<(u32, DataPath)>,
    /// bgp: BIRD, this node's block, and the peers it is configured with.
    bgp: Option<BgpState>,
    /// This node's name (BIRD's reflectors are named).
    node: String,
}

/// What BIRD's configuration is made from (bgp).
#[derive(Debug, Default, Clone)]
struct BirdWants {
    /// This node's blocks, its first (lease) block first.
    blocks: Vec<IpNetwork>,
    /// The other nodes' leases, by subnet.
    peers: BTreeMap<IpNetwork, Peer>,
    /// Blocks of peers reached by encapsulation: BIRD keeps them out of the kernel.
    encapsulated: BTreeSet<IpNetwork>,
    /// Peer addresses not on this node's segment (multihop sessions).
    remote: BTreeSet<IpAddr>,
    /// Addresses announced besides the blocks (the service proxy's LoadBalancer addresses).
    announce: BTreeSet<IpNetwork>,
}

/// The bgp backend's running state.
#[derive(Debug)]
struct BgpState {
    /// BIRD; `None` after it died and could not be started again (the agent retries).
    bird: Option<Bird>,
    wants: BirdWants,
    /// `wants` changed since BIRD was last reloaded ([`Backend::sync`]).
    stale: bool,
    /// The sessions as last asked ([`Backend::refresh_sessions`]).
    sessions: Vec<BgpSession>,
}

impl Backend {
    /// The backend for `cfg` on `underlay`; nothing is created yet.
    pub(crate) fn new(cfg: BackendConfig, underlay: Underlay, node: &str) -> Self {
        let node_name = node.to_string();
        let vtep_mac = matches!(
            cfg,
            BackendConfig::Vxlan(_)
                | BackendConfig::Bgp(BgpBackendConfig {
                    encap: BgpEncap::Vxlan,
                    ..
                })
        )
        .then(|| vtep_mac_of(node));
        Self {
            cfg,
            underlay,
            tunnel: None,
            vtep_mac,
            udp: None,
            bgp: None,
            node: node_name,
        }
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &BackendConfig {
        &self.cfg
    }

    /// The underlay.
    pub(crate) fn underlay(&self) -> &Underlay {
        &self.underlay
    }

    /// What goes into this node's lease (`{"VNI": 1, "VtepMAC": "…"}` for vxlan, as Flannel
    /// writes it; `null` for host-gw).
    pub(crate) fn lease_data(&self) -> serde_json::Value {
        match (&self.cfg, self.vtep_mac) {
            (BackendConfig::Vxlan(v), Some(mac)) => {
                serde_json::json!({"VNI": v.vni, super::peer::VTEP_MAC_KEY: mac.to_string()})
            }
            (BackendConfig::Bgp(b), Some(mac)) => {
                // Every block of the node is reached through one VTEP: its first block's
                // network address (what the node's later blocks' leases point at).
                let mut data = serde_json::json!({"VNI": b.vxlan.vni, super::peer::VTEP_MAC_KEY: mac.to_string()});
                if let Some(first) = self.bgp.as_ref().and_then(|s| s.wants.blocks.first()) {
                    data[super::peer::VTEP_IP_KEY] = first.network().to_string().into();
                }
                data
            }
            _ => serde_json::Value::Null,
        }
    }

    /// The MTU pods must use.
    pub(crate) fn pod_mtu(&self) -> u32 {
        self.underlay.mtu.saturating_sub(self.cfg.overhead())
    }

    /// The overlay device, if the backend has one and it is configured: (index, name).
    pub(crate) fn overlay_dev(&self) -> Option<(u32, &str)> {
        self.tunnel.as_ref().map(|(name, index)| (*index, name.as_str()))
    }

    /// Set the data path up for this node's `subnet` (vxlan: create or fix the device, its
    /// address and MAC; udp: the TUN device, its address and the data path; host-gw: nothing).
    /// Idempotent: an agent restart changes nothing that is right.
    pub(crate) async fn configure(&mut self, h: &Handle, subnet: IpNetwork) -> Result<(), OverlayError> {
        if let BackendConfig::Udp(u) = &self.cfg {
            let u = u.clone();
            return self.configure_udp(h, subnet, &u).await;
        }
        if let BackendConfig::Bgp(b) = &self.cfg {
            let b = b.clone();
            return self.configure_bgp(h, subnet, &b).await;
        }
        let BackendConfig::Vxlan(v) = &self.cfg else {
            return Ok(());
        };
        let v = v.clone();
        self.setup_vxlan(h, &v, subnet).await
    }

    /// The VXLAN device of `v` for this node's (first) `subnet`.
    async fn setup_vxlan(&mut self, h: &Handle, v: &VxlanBackendConfig, subnet: IpNetwork) -> Result<(), OverlayError> {
        let IpNetwork::V4(subnet) = subnet else {
            return Err(OverlayError::Unsupported("VXLAN carries IPv4 pod subnets only".into()));
        };
        let cfg = VxlanOverlayConfig {
            dev: v.dev.clone(),
            vni: v.vni,
            port: v.port,
            local_ip: self.underlay.public_ip,
            parent: Some(self.underlay.iface.clone()),
            mtu: Some(self.pod_mtu()),
            subnet,
            mac: self.vtep_mac,
        };
        let overlay = VxlanOverlay::setup(h, cfg).await?;
        let index = h
            .link_get(overlay.dev())
            .await
            .map_err(|cause| OverlayError::Link {
                dev: v.dev.clone(),
                cause,
            })?
            .index;
        self.tunnel = Some((v.dev.clone(), index));
        Ok(())
    }

    /// The bgp backend's IPIP tunnel (Calico's `tunl0`): created if missing (on a kernel
    /// without ipip, a clear "not supported by this kernel" error), up, MTU underlay − 20,
    /// this node's first block's network address on it (the source of what it encapsulates).
    async fn setup_ipip(&mut self, h: &Handle, dev: &str, subnet: IpNetwork) -> Result<(), OverlayError> {
        let link_err = |cause| OverlayError::Link { dev: dev.into(), cause };
        let IpNetwork::V4(subnet) = subnet else {
            return Err(OverlayError::Unsupported("IPIP carries IPv4 pod subnets only".into()));
        };
        let mtu = self.pod_mtu();
        let link = match h.link_get(dev).await {
            Ok(l) => l,
            Err(e) if e.is_not_found() => match h.link_add(&crate::link::IpIp::new(dev).mtu(mtu)).await {
                Ok(l) => l,
                Err(e) if e.is_unsupported() => {
                    return Err(OverlayError::Unsupported(format!(
                        "ipip encapsulation: not supported by this kernel ({e})"
                    )))
                }
                Err(e) => return Err(link_err(e)),
            },
            Err(e) => return Err(link_err(e)),
        };
        let addr = IpNetwork::V4(ipnetwork::Ipv4Network::new(subnet.network(), 32).expect("/32 is valid"));
        h.addr_replace(dev, addr)
            .await
            .map_err(|cause| OverlayError::Addr { dev: dev.into(), cause })?;
        h.link_set(dev).mtu(mtu).up().apply().await.map_err(link_err)?;
        self.tunnel = Some((dev.to_string(), link.index));
        Ok(())
    }

    /// The udp backend's TUN device (persistent, multi-queue: it outlives the agent), its
    /// address and MTU, and the data path's queues.
    async fn configure_udp(&mut self, h: &Handle, subnet: IpNetwork, u: &UdpBackendConfig) -> Result<(), OverlayError> {
        let link_err = |cause| OverlayError::Link {
            dev: u.dev.clone(),
            cause,
        };
        let IpNetwork::V4(v4) = subnet else {
            return Err(OverlayError::Unsupported(
                "the udp backend carries IPv4 pod subnets only".into(),
            ));
        };
        let spec = TunTap::new(&u.dev, TunTapMode::Tun).multi_queue(true);
        // The queues carry a virtio-net header for the offloads (not in one-packet mode).
        let offload = u.offload && !u.single;
        let queue = spec.clone().vnet_hdr(offload);
        let link = match h.link_get(&u.dev).await {
            Ok(l) => l,
            Err(e) if e.is_not_found() => h.tuntap_add(&spec).await.map_err(link_err)?,
            Err(e) => return Err(link_err(e)),
        };
        h.link_set(&u.dev)
            .mtu(self.pod_mtu())
            .up()
            .apply()
            .await
            .map_err(link_err)?;
        let addr = IpNetwork::V4(Ipv4Network::new(v4.network(), 32).expect("/32 is valid"));
        let addr_err = |cause| OverlayError::Addr {
            dev: u.dev.clone(),
            cause,
        };
        h.addr_replace(&u.dev, addr).await.map_err(addr_err)?;
        for old in h.addr_list(Some(&u.dev)).await.map_err(addr_err)? {
            if old.prefix.is_ipv4() && old.prefix != addr {
                h.addr_del_index(old.index, old.prefix).await.map_err(addr_err)?;
            }
        }
        if self.udp.as_ref().is_none_or(|(index, _)| *index != link.index) {
            self.udp = None;
            let n = match u.queues {
                0 => std::thread::available_parallelism().map_or(1, |p| p.get()),
                q => q,
            };
            let mut queues = Vec::with_capacity(n);
            for _ in 0..n {
                let (tun, _) = h.tuntap_open(&queue).await.map_err(link_err)?;
                let port = u.port;
                let sock = h
                    .exec_in(move || super::udp::bind_socket(port))
                    .await
                    .map_err(|e| OverlayError::Unsupported(format!("udp port {port}: {e}")))?
                    .map_err(|e| OverlayError::Unsupported(format!("udp port {port}: {e}")))?;
                queues.push((tun, sock));
            }
            let dp = DataPath::start(queues, v4.prefix(), u.single, offload)
                .map_err(|e| OverlayError::Unsupported(format!("udp data path: {e}")))?;
            self.udp = Some((link.index, dp));
        }
        Ok(())
    }

    /// The bgp backend: BIRD in the node's namespace announcing `subnet` (its block).
    async fn configure_bgp(&mut self, h: &Handle, subnet: IpNetwork, b: &BgpBackendConfig) -> Result<(), OverlayError> {
        match b.encap {
            BgpEncap::None => {}
            BgpEncap::Vxlan => self.setup_vxlan(h, &b.vxlan, subnet).await?,
            BgpEncap::Ipip => self.setup_ipip(h, &b.ipip_dev, subnet).await?,
        }
        let mut wants = self.bgp.take().map(|s| s.wants).unwrap_or_default();
        // The first block is the lease's (replaced); blocks claimed later stay.
        wants.blocks = std::iter::once(subnet)
            .chain(wants.blocks.iter().skip(1).copied().filter(|b| *b != subnet))
            .collect();
        // Reflecting routers (by address) behind a router themselves get multihop sessions.
        for ip in b.reflectors.iter().filter_map(|r| r.parse::<IpAddr>().ok()) {
            if self.same_segment(h, ip).await.is_err() {
                wants.remote.insert(ip);
            }
        }
        let cfg = self.bird_config(b, &wants).map_err(OverlayError::Unsupported)?;
        let bird = start_bird(h, b, cfg).await?;
        self.bgp = Some(BgpState {
            bird: Some(bird),
            wants,
            stale: false,
            sessions: Vec::new(),
        });
        self.refresh_sessions().await;
        Ok(())
    }

    /// BIRD died: start it again with the current blocks and peers (bgp only). On failure
    /// the state is kept without a BIRD, and the caller tries again later.
    pub(crate) async fn restart_bird(&mut self, h: &Handle) -> Result<(), OverlayError> {
        let BackendConfig::Bgp(b) = &self.cfg else {
            return Ok(());
        };
        let b = b.clone();
        let wants = match &mut self.bgp {
            Some(s) => {
                // Reaps the dead process (it has exited: the wait returns at once).
                drop(s.bird.take());
                s.sessions.clear();
                s.wants.clone()
            }
            None => return Ok(()),
        };
        let cfg = self.bird_config(&b, &wants).map_err(OverlayError::Unsupported)?;
        let bird = start_bird(h, &b, cfg).await?;
        if let Some(s) = &mut self.bgp {
            s.bird = Some(bird);
            s.stale = false;
        }
        self.refresh_sessions().await;
        Ok(())
    }

    /// The running BIRD's process ID (bgp only).
    pub(crate) fn bird_pid(&self) -> Option<u32> {
        Some(self.bgp.as_ref()?.bird.as_ref()?.pid())
    }

    /// Ready when BIRD exits (bgp only; `None` otherwise or when it cannot be followed).
    pub(crate) fn bird_exit(&self) -> Option<BirdExit> {
        self.bgp.as_ref()?.bird.as_ref()?.exit_watch().ok()
    }

    /// Ask BIRD for its sessions (off the async threads) and keep them for the status.
    pub(crate) async fn refresh_sessions(&mut self) {
        let Some(s) = &mut self.bgp else { return };
        let Some(bird) = &s.bird else { return };
        let control = bird.control().clone();
        if let Ok(Ok(sessions)) = tokio::task::spawn_blocking(move || control.sessions()).await {
            s.sessions = sessions;
        }
    }

    /// BIRD's configuration for this node with `peers` (full mesh, or with reflectors).
    fn bird_config(&self, b: &BgpBackendConfig, wants: &BirdWants) -> Result<BirdConfig, String> {
        let IpAddr::V4(me) = self.underlay.public_ip else {
            return Err("the bgp backend peers over IPv4".into());
        };
        let mut cfg = BirdConfig::new(me, b.asn);
        cfg.hold_time = b.hold_time;
        cfg.connect_retry = 1;
        cfg.blocks.extend_from_slice(&wants.blocks);
        cfg.kernel_skip.extend(wants.encapsulated.iter().copied());
        cfg.announce.extend(wants.announce.iter().copied());
        let i_reflect = b.reflectors.contains(&self.node);
        // Reflectors outside the lease store (routers), by address.
        if !i_reflect {
            for ip in b.reflectors.iter().filter_map(|r| r.parse::<Ipv4Addr>().ok()) {
                cfg.peers.push(BirdPeer {
                    name: format!("rr-{ip}"),
                    ip,
                    asn: b.asn,
                    rr_client: false,
                    multihop: wants.remote.contains(&IpAddr::V4(ip)),
                });
            }
        }
        // One session per node, whatever number of blocks (leases) it holds.
        let mut seen = BTreeSet::new();
        for p in wants.peers.values() {
            let IpAddr::V4(ip) = p.public_ip else { continue };
            if !seen.insert(p.node.as_str()) {
                continue;
            }
            let it_reflects = b.reflectors.contains(&p.node);
            if b.reflectors.is_empty() || i_reflect || it_reflects {
                cfg.peers.push(BirdPeer {
                    name: p.node.clone(),
                    ip,
                    asn: b.asn,
                    rr_client: i_reflect && !it_reflects,
                    multihop: wants.remote.contains(&p.public_ip),
                });
            }
        }
        Ok(cfg)
    }

    /// Give BIRD its configuration for the current peers (reload in place, `birdc` on a
    /// blocking thread).
    async fn reload_bird(&mut self) -> Result<(), String> {
        let (Some(s), BackendConfig::Bgp(b)) = (&self.bgp, &self.cfg) else {
            return Ok(());
        };
        let cfg = self.bird_config(b, &s.wants)?;
        let Some(bird) = &s.bird else {
            return Err("bird is not running (it died; the agent starts it again)".into());
        };
        let control = bird.control().clone();
        tokio::task::spawn_blocking(move || control.reconfigure(&cfg))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.refresh_sessions().await;
        Ok(())
    }

    /// This node's blocks are now `blocks` (its lease's first): BIRD announces and blackholes
    /// them from the next [`sync`](Self::sync) (bgp only).
    pub(crate) fn set_blocks(&mut self, blocks: Vec<IpNetwork>) {
        if let Some(s) = &mut self.bgp {
            if s.wants.blocks != blocks {
                s.wants.blocks = blocks;
                s.stale = true;
            }
        }
    }

    /// Announce exactly `addrs` besides the blocks (as /32s; IPv6 ones are left out: the
    /// sessions carry IPv4) from the next [`sync`](Self::sync) (bgp only).
    pub(crate) fn set_announce(&mut self, addrs: &BTreeSet<IpAddr>) {
        if let Some(s) = &mut self.bgp {
            let want: BTreeSet<IpNetwork> = addrs
                .iter()
                .filter(|a| a.is_ipv4())
                .map(|a| IpNetwork::from(*a))
                .collect();
            if s.wants.announce != want {
                s.wants.announce = want;
                s.stale = true;
            }
        }
    }

    /// The BGP sessions as last asked, with their peers (bgp only).
    pub(crate) fn bgp_sessions(&self) -> Option<Vec<super::status::BgpSessionStatus>> {
        let (Some(s), BackendConfig::Bgp(b)) = (&self.bgp, &self.cfg) else {
            return None;
        };
        let cfg = self.bird_config(b, &s.wants).ok()?;
        Some(
            s.sessions
                .iter()
                .map(|x| {
                    let peer = cfg.peers.iter().find(|p| super::bird::proto_name(&p.name) == x.name);
                    let kind = match peer {
                        Some(p) if p.rr_client => "client",
                        Some(p) if b.reflectors.iter().any(|r| *r == p.name || r.parse() == Ok(p.ip)) => "reflector",
                        Some(_) => "mesh",
                        None => "",
                    };
                    super::status::BgpSessionStatus {
                        name: x.name.clone(),
                        peer: peer.map(|p| p.name.clone()).unwrap_or_default(),
                        address: peer.map(|p| IpAddr::V4(p.ip)),
                        kind: kind.into(),
                        state: x.state.clone(),
                        since: x.since.clone(),
                        info: x.info.clone(),
                    }
                })
                .collect(),
        )
    }

    /// BIRD's directory (bgp only).
    pub(crate) fn bird_dir(&self) -> Option<&std::path::Path> {
        match (&self.cfg, &self.bgp) {
            (BackendConfig::Bgp(b), Some(_)) => Some(&b.dir),
            _ => None,
        }
    }

    /// The entries the backend needs for this node itself, whatever its peers: udp's route to
    /// the whole cluster `network` through its TUN device.
    pub(crate) fn own_entries(&self, network: IpNetwork) -> Vec<Entry> {
        match &self.udp {
            Some((dev, _)) => vec![Entry::DevRoute {
                dst: network,
                dev: *dev,
            }],
            None => Vec::new(),
        }
    }

    /// A peer's lease ended: the data path forgets it (udp), BIRD stops peering with it (bgp).
    pub(crate) fn peer_gone(&mut self, subnet: IpNetwork) {
        if let (Some((_, dp)), IpNetwork::V4(s)) = (&self.udp, subnet) {
            dp.remove_peer(s);
        }
        if let Some(s) = &mut self.bgp {
            let old = s.wants.peers.remove(&subnet);
            let mut changed = old.is_some() | s.wants.encapsulated.remove(&subnet);
            for ip in old.iter().flat_map(|p| p.borrowed.iter()) {
                changed |= s.wants.encapsulated.remove(&IpNetwork::from(*ip));
            }
            s.stale |= changed;
        }
    }

    /// Hand BIRD the peers changed since the last call, in one reload (bgp): a watch snapshot
    /// of a thousand leases is one `birdc configure`, not a thousand.
    /// A failed reload leaves the state stale, so the next change (or call) tries again.
    pub(crate) async fn sync(&mut self) -> Result<(), String> {
        if !self.bgp.as_ref().is_some_and(|s| s.stale) {
            return Ok(());
        }
        self.reload_bird().await?;
        if let Some(s) = &mut self.bgp {
            s.stale = false;
        }
        Ok(())
    }

    /// The udp data path's counters, when the backend is udp.
    pub(crate) fn udp_counters(&self) -> Option<&super::udp::UdpCounters> {
        self.udp.as_ref().map(|(_, dp)| dp.counters())
    }

    /// The entries that reach `peer`, or why it cannot be reached. For bgp, BIRD peers with it
    /// (full mesh or through reflectors) and installs its routes: no entries of the agent's.
    pub(crate) async fn entries_for(&mut self, h: &Handle, peer: &Peer) -> Result<(PeerMode, Vec<Entry>), String> {
        if let BackendConfig::Bgp(b) = &self.cfg {
            let b = b.clone();
            if peer.backend != "bgp" {
                return Err(format!(
                    "node {} runs backend {:?}, this node \"bgp\"",
                    peer.node, peer.backend
                ));
            }
            if self.bgp.is_none() {
                return Err("bird is not running".into());
            }
            let behind_router = self.same_segment(h, peer.public_ip).await.is_err();
            // Encapsulate always, or (crossSubnet) only to nodes behind a router.
            let encap = match (b.encap, b.cross_subnet) {
                (BgpEncap::None, _) => false,
                (_, false) => true,
                (_, true) => behind_router,
            };
            let (mode, mut entries) = match (encap, b.encap) {
                (false, _) | (_, BgpEncap::None) => (PeerMode::Bgp, Vec::new()),
                (true, BgpEncap::Vxlan) => (PeerMode::Vxlan, self.vxlan_entries(peer)?),
                (true, BgpEncap::Ipip) => {
                    let Some((_, dev)) = self.tunnel.clone() else {
                        return Err("the ipip device is not set up".into());
                    };
                    if !peer.public_ip.is_ipv4() {
                        return Err(format!("node {}: IPIP needs an IPv4 underlay address", peer.node));
                    }
                    let route = Entry::Route {
                        dst: peer.subnet,
                        via: peer.public_ip,
                        dev,
                        onlink: true,
                    };
                    (PeerMode::Ipip, vec![route])
                }
            };
            // The node's borrowed addresses (/32s) travel as its blocks do.
            let slash32 = |ip: &IpAddr| IpNetwork::from(*ip);
            if let Some(Entry::Route { via, dev, .. }) = entries.last().cloned() {
                for ip in &peer.borrowed {
                    entries.push(Entry::Route {
                        dst: slash32(ip),
                        via,
                        dev,
                        onlink: true,
                    });
                }
            }
            let s = self.bgp.as_mut().expect("checked above");
            let w = &mut s.wants;
            let old = w.peers.insert(peer.subnet, peer.clone());
            let mut changed = old.as_ref() != Some(peer);
            for gone in old.iter().flat_map(|o| o.borrowed.difference(&peer.borrowed)) {
                changed |= w.encapsulated.remove(&slash32(gone));
            }
            let nets = std::iter::once(peer.subnet).chain(peer.borrowed.iter().map(slash32));
            for n in nets {
                changed |= match mode {
                    PeerMode::Bgp => w.encapsulated.remove(&n),
                    _ => w.encapsulated.insert(n),
                };
            }
            changed |= match behind_router {
                true => w.remote.insert(peer.public_ip),
                false => w.remote.remove(&peer.public_ip),
            };
            s.stale |= changed;
            return Ok((mode, entries));
        }
        if peer.backend != self.cfg.name() {
            return Err(format!(
                "node {} runs backend {:?}, this node {:?}",
                peer.node,
                peer.backend,
                self.cfg.name()
            ));
        }
        let direct = self.same_segment(h, peer.public_ip).await;
        let route_direct = || Entry::Route {
            dst: peer.subnet,
            via: peer.public_ip,
            dev: self.underlay.index,
            onlink: false,
        };
        match &self.cfg {
            BackendConfig::Bgp(_) => unreachable!("answered above"),
            BackendConfig::Udp(u) => {
                let (Some((_, dp)), IpNetwork::V4(subnet), Some(ep)) =
                    (&self.udp, peer.subnet, super::udp::endpoint(peer.public_ip, u.port))
                else {
                    return Err(format!(
                        "node {} ({} {}): the udp backend carries IPv4 only",
                        peer.node, peer.subnet, peer.public_ip
                    ));
                };
                dp.set_peer(subnet, ep);
                Ok((PeerMode::Udp, Vec::new()))
            }
            BackendConfig::HostGw => match direct {
                Ok(()) => Ok((PeerMode::Direct, vec![route_direct()])),
                Err(why) => Err(format!(
                    "host-gw cannot reach node {} ({}): {why}; its pods are unreachable from here",
                    peer.node, peer.public_ip
                )),
            },
            BackendConfig::Vxlan(v) => {
                if v.direct_routing && direct.is_ok() {
                    return Ok((PeerMode::Direct, vec![route_direct()]));
                }
                Ok((PeerMode::Vxlan, self.vxlan_entries(peer)?))
            }
        }
    }

    /// The VXLAN entries that reach `peer`'s subnet: the neighbour and FDB entries of its VTEP
    /// (with its first lease; a node's later blocks share them) and the route.
    fn vxlan_entries(&self, peer: &Peer) -> Result<Vec<Entry>, String> {
        let Some((dev_name, dev)) = self.tunnel.clone() else {
            return Err("the vxlan device is not set up".into());
        };
        let Some(mac) = peer.vtep_mac else {
            return Err(format!("node {} published no VtepMAC in its lease", peer.node));
        };
        if !peer.subnet.is_ipv4() {
            return Err(format!("node {}'s subnet {} is not IPv4", peer.node, peer.subnet));
        }
        let vtep = peer.vtep_ip();
        let route = Entry::Route {
            dst: peer.subnet,
            via: vtep,
            dev,
            onlink: true,
        };
        if peer.slot > 0 {
            return Ok(vec![route]);
        }
        Ok(vec![
            Entry::Neigh {
                dev,
                dev_name,
                ip: vtep,
                mac,
            },
            Entry::Fdb {
                dev,
                mac,
                dst: peer.public_ip,
            },
            route,
        ])
    }

    /// Ok when `ip` is on a subnet of the underlay device (the kernel reaches it without a
    /// gateway, through the underlay device); otherwise why not.
    async fn same_segment(&self, h: &Handle, ip: IpAddr) -> Result<(), String> {
        match h.route_get(ip).await {
            Ok(r) if r.gateway.is_none() && r.oif == Some(self.underlay.index) => Ok(()),
            Ok(r) => Err(match r.gateway {
                Some(gw) => format!(
                    "not on {}'s segment (the kernel routes it via {gw})",
                    self.underlay.iface
                ),
                None => format!("not on {}'s segment", self.underlay.iface),
            }),
            Err(e) => Err(format!("no route to it: {e}")),
        }
    }
}

/// Start BIRD in `h`'s namespace with `cfg` (on a blocking thread: it waits for the socket).
async fn start_bird(h: &Handle, b: &BgpBackendConfig, cfg: BirdConfig) -> Result<Bird, OverlayError> {
    let ns = h.netns().clone();
    let dir = b.dir.clone();
    tokio::task::spawn_blocking(move || Bird::start(&ns, &dir, &cfg))
        .await
        .map_err(|e| OverlayError::Unsupported(format!("bird: {e}")))?
        .map_err(|e| OverlayError::Unsupported(e.to_string()))
}

/// The node's VTEP MAC: locally administered, unicast, stable for the node's name.
pub(crate) fn vtep_mac_of(node: &str) -> MacAddr {
    MacAddr::stable(&["netkit-overlay", node])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_macs_are_stable_local_unicast_and_differ() {
        let a = vtep_mac_of("node-a");
        assert_eq!(a, vtep_mac_of("node-a"));
        assert_ne!(a, vtep_mac_of("node-b"));
        let bytes = a.octets();
        assert_eq!(bytes[0] & 0x03, 0x02, "locally administered unicast: {a}");
    }

    #[test]
    fn names_and_overheads() {
        assert_eq!(BackendConfig::Vxlan(VxlanBackendConfig::default()).name(), "vxlan");
        assert_eq!(BackendConfig::HostGw.name(), "host-gw");
        assert_eq!(BackendConfig::Vxlan(VxlanBackendConfig::default()).overhead(), 50);
        assert_eq!(BackendConfig::HostGw.overhead(), 0);
    }
}
