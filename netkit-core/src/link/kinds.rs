//! Smaller link kinds: ipip, macvlan, dummy, ifb, ipvlan, vrf, geneve, wireguard.
//!
//! Some kernels are built without some of these (no module): creating one
//! then returns [`LinkError::Unsupported`] naming the kind.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::link::{
    InfoData, InfoGeneve, InfoIpTunnel, InfoIpVlan, InfoKind, InfoMacVlan, InfoVrf, IpVlanMode, LinkMessage,
    MacVlanMode,
};

use super::veth::kind_mtu_mac_differences;
use super::{new_link_message, Link, LinkError, LinkKind, LinkSpec};
use crate::Handle;

/// An IPv4-in-IPv4 tunnel: `ip link add NAME type ipip local A remote B dev PARENT`.
/// Calico's `tunl0` has neither local nor remote.
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::link::LinkError> {
/// use netkit_core::link::IpIp;
/// match h.link_add(&IpIp::new("tunl0")).await {
///     Err(e) if e.is_unsupported() => eprintln!("no ipip here: {e}"),
///     other => { other?; }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct IpIp {
    name: String,
    local: Option<Ipv4Addr>,
    remote: Option<Ipv4Addr>,
    parent: Option<String>,
    ttl: Option<u8>,
    mtu: Option<u32>,
}

impl IpIp {
    /// A tunnel with no fixed endpoints.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            local: None,
            remote: None,
            parent: None,
            ttl: None,
            mtu: None,
        }
    }
    /// Local endpoint.
    pub fn local(mut self, a: Ipv4Addr) -> Self {
        self.local = Some(a);
        self
    }
    /// Remote endpoint.
    pub fn remote(mut self, a: Ipv4Addr) -> Self {
        self.remote = Some(a);
        self
    }
    /// Underlay device.
    pub fn parent(mut self, dev: &str) -> Self {
        self.parent = Some(dev.into());
        self
    }
    /// Outer TTL.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// MTU (underlay − 20).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
}

impl LinkSpec for IpIp {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "ipip"
    }
    async fn message(&self, h: &Handle) -> Result<LinkMessage, LinkError> {
        let mut data = Vec::new();
        if let Some(a) = self.local {
            data.push(InfoIpTunnel::Local(IpAddr::V4(a)));
        }
        if let Some(a) = self.remote {
            data.push(InfoIpTunnel::Remote(IpAddr::V4(a)));
        }
        if let Some(t) = self.ttl {
            data.push(InfoIpTunnel::Ttl(t));
        }
        if let Some(p) = &self.parent {
            data.push(InfoIpTunnel::Link(h.link_index(p).await?));
        }
        let mut msg = new_link_message(&self.name, InfoKind::IpIp, Some(InfoData::IpTunnel(data)));
        if let Some(m) = self.mtu {
            msg.attributes.push(netlink_packet_route::link::LinkAttribute::Mtu(m));
        }
        Ok(msg)
    }
    fn differences(&self, l: &Link) -> Vec<String> {
        kind_mtu_mac_differences(l, LinkKind::IpIp, self.mtu, None)
    }
}

/// Macvlan modes (`mode private|vepa|bridge|passthru|source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacvlanMode {
    /// No traffic between macvlans on the same parent.
    Private,
    /// Traffic between macvlans goes out to the switch and back.
    Vepa,
    /// Macvlans on the same parent talk directly (the usual choice).
    Bridge,
    /// One macvlan takes over the parent.
    Passthru,
    /// Accept only listed source MACs.
    Source,
}

impl MacvlanMode {
    fn to_nl(self) -> MacVlanMode {
        match self {
            Self::Private => MacVlanMode::Private,
            Self::Vepa => MacVlanMode::Vepa,
            Self::Bridge => MacVlanMode::Bridge,
            Self::Passthru => MacVlanMode::Passthrough,
            Self::Source => MacVlanMode::Source,
        }
    }
}

/// A macvlan on a parent device: `ip link add NAME link PARENT type macvlan mode MODE`.
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::link::LinkError> {
/// use netkit_core::link::{Macvlan, MacvlanMode};
/// h.link_add(&Macvlan::new("mv0", "eth0").mode(MacvlanMode::Bridge)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Macvlan {
    name: String,
    parent: String,
    mode: MacvlanMode,
    mtu: Option<u32>,
}

impl Macvlan {
    /// A bridge-mode macvlan on `parent`.
    pub fn new(name: &str, parent: &str) -> Self {
        Self {
            name: name.into(),
            parent: parent.into(),
            mode: MacvlanMode::Bridge,
            mtu: None,
        }
    }
    /// Mode.
    pub fn mode(mut self, mode: MacvlanMode) -> Self {
        self.mode = mode;
        self
    }
    /// MTU (at most the parent's).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
}

impl LinkSpec for Macvlan {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "macvlan"
    }
    async fn message(&self, h: &Handle) -> Result<LinkMessage, LinkError> {
        let parent = h.link_index(&self.parent).await?;
        let data = InfoData::MacVlan(vec![InfoMacVlan::Mode(self.mode.to_nl())]);
        let mut msg = new_link_message(&self.name, InfoKind::MacVlan, Some(data));
        msg.attributes
            .push(netlink_packet_route::link::LinkAttribute::Link(parent));
        if let Some(m) = self.mtu {
            msg.attributes.push(netlink_packet_route::link::LinkAttribute::Mtu(m));
        }
        Ok(msg)
    }
    fn differences(&self, l: &Link) -> Vec<String> {
        let mut d = kind_mtu_mac_differences(l, LinkKind::Macvlan, self.mtu, None);
        if let Some(InfoData::MacVlan(info)) = l.info_data() {
            let have = info
                .iter()
                .find_map(|i| if let InfoMacVlan::Mode(m) = i { Some(*m) } else { None });
            if have != Some(self.mode.to_nl()) {
                d.push(format!("mode: have {have:?}, want {:?}", self.mode));
            }
        }
        d
    }
}

/// A dummy device (`type dummy`).
#[derive(Clone, Debug)]
pub struct Dummy {
    name: String,
}

impl Dummy {
    /// A dummy device named `name`.
    pub fn new(name: &str) -> Self {
        Self { name: name.into() }
    }
}

impl LinkSpec for Dummy {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "dummy"
    }
    async fn message(&self, _h: &Handle) -> Result<LinkMessage, LinkError> {
        Ok(new_link_message(&self.name, InfoKind::Dummy, None))
    }
    fn differences(&self, l: &Link) -> Vec<String> {
        kind_mtu_mac_differences(l, LinkKind::Dummy, None, None)
    }
}

/// An intermediate functional block: `ip link add NAME type ifb`. Traffic redirected to it
/// (see [`crate::tc`]) can be shaped on its way out, which is how a link's *incoming* traffic
/// gets a rate limit.
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::link::LinkError> {
/// h.link_add(&netkit_core::link::Ifb::new("ifb-ctr1").up()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Ifb {
    name: String,
    up: bool,
}

impl Ifb {
    /// An ifb device named `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            up: false,
        }
    }
    /// Administratively up at creation.
    pub fn up(mut self) -> Self {
        self.up = true;
        self
    }
}

impl LinkSpec for Ifb {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "ifb"
    }
    async fn message(&self, _h: &Handle) -> Result<LinkMessage, LinkError> {
        let mut msg = new_link_message(&self.name, InfoKind::Ifb, None);
        if self.up {
            (msg.header.flags, msg.header.change_mask) = super::up_flags(true);
        }
        Ok(msg)
    }
    fn differences(&self, l: &Link) -> Vec<String> {
        kind_mtu_mac_differences(l, LinkKind::Other("ifb".into()), None, None)
    }
}
/// Ipvlan modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpvlanMode {
    /// Layer 2.
    L2,
    /// Layer 3.
    L3,
    /// Layer 3 with netfilter (l3s).
    L3S,
}

/// An ipvlan on a parent device (`link PARENT type ipvlan mode l2|l3|l3s`).
#[derive(Clone, Debug)]
pub struct Ipvlan {
    name: String,
    parent: String,
    mode: IpvlanMode,
}

impl Ipvlan {
    /// An L2 ipvlan on `parent`.
    pub fn new(name: &str, parent: &str) -> Self {
        Self {
            name: name.into(),
            parent: parent.into(),
            mode: IpvlanMode::L2,
        }
    }
    /// Mode.
    pub fn mode(mut self, mode: IpvlanMode) -> Self {
        self.mode = mode;
        self
    }
}

impl LinkSpec for Ipvlan {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "ipvlan"
    }
    async fn message(&self, h: &Handle) -> Result<LinkMessage, LinkError> {
        let parent = h.link_index(&self.parent).await?;
        let mode = match self.mode {
            IpvlanMode::L2 => IpVlanMode::L2,
            IpvlanMode::L3 => IpVlanMode::L3,
            IpvlanMode::L3S => IpVlanMode::L3S,
        };
        let mut msg = new_link_message(
            &self.name,
            InfoKind::IpVlan,
            Some(InfoData::IpVlan(vec![InfoIpVlan::Mode(mode)])),
        );
        msg.attributes
            .push(netlink_packet_route::link::LinkAttribute::Link(parent));
        Ok(msg)
    }
    fn differences(&self, l: &Link) -> Vec<String> {
        kind_mtu_mac_differences(l, LinkKind::Ipvlan, None, None)
    }
}

/// A VRF device bound to a routing table (`type vrf table N`).
#[derive(Clone, Debug)]
pub struct Vrf {
    name: String,
    table: u32,
}

impl Vrf {
    /// A VRF using routing table `table`.
    pub fn new(name: &str, table: u32) -> Self {
        Self {
            name: name.into(),
            table,
        }
    }
}

impl LinkSpec for Vrf {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "vrf"
    }
    async fn message(&self, _h: &Handle) -> Result<LinkMessage, LinkError> {
        Ok(new_link_message(
            &self.name,
            InfoKind::Vrf,
            Some(InfoData::Vrf(vec![InfoVrf::TableId(self.table)])),
        ))
    }
    fn differences(&self, l: &Link) -> Vec<String> {
        kind_mtu_mac_differences(l, LinkKind::Vrf, None, None)
    }
}

/// A Geneve tunnel (`type geneve id VNI remote IP`).
#[derive(Clone, Debug)]
pub struct Geneve {
    name: String,
    vni: u32,
    remote: Option<IpAddr>,
}

impl Geneve {
    /// A Geneve device with this VNI.
    pub fn new(name: &str, vni: u32) -> Self {
        Self {
            name: name.into(),
            vni,
            remote: None,
        }
    }
    /// Remote endpoint.
    pub fn remote(mut self, ip: IpAddr) -> Self {
        self.remote = Some(ip);
        self
    }
}

impl LinkSpec for Geneve {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "geneve"
    }
    async fn message(&self, _h: &Handle) -> Result<LinkMessage, LinkError> {
        let mut data = vec![InfoGeneve::Id(self.vni)];
        match self.remote {
            Some(IpAddr::V4(a)) => data.push(InfoGeneve::Remote(a)),
            Some(IpAddr::V6(a)) => data.push(InfoGeneve::Remote6(a)),
            None => {}
        }
        Ok(new_link_message(
            &self.name,
            InfoKind::Geneve,
            Some(InfoData::Geneve(data)),
        ))
    }
    fn differences(&self, l: &Link) -> Vec<String> {
        kind_mtu_mac_differences(l, LinkKind::Geneve, None, None)
    }
}

/// A WireGuard device (`type wireguard`); keys and peers are configured
/// through the wireguard generic-netlink family, outside netkit.
#[derive(Clone, Debug)]
pub struct Wireguard {
    name: String,
}

impl Wireguard {
    /// A WireGuard device named `name`.
    pub fn new(name: &str) -> Self {
        Self { name: name.into() }
    }
}

impl LinkSpec for Wireguard {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "wireguard"
    }
    async fn message(&self, _h: &Handle) -> Result<LinkMessage, LinkError> {
        Ok(new_link_message(&self.name, InfoKind::Wireguard, None))
    }
    fn differences(&self, l: &Link) -> Vec<String> {
        kind_mtu_mac_differences(l, LinkKind::Wireguard, None, None)
    }
}
