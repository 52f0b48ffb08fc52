//! veth pairs, with the peer born inside its namespace.

use std::os::fd::AsRawFd;

use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};

use super::{check_name, new_link_message, up_flags, Link, LinkError, LinkKind, LinkSpec};
use crate::{Handle, MacAddr, NetNs};

/// A veth pair: `ip link add NAME type veth peer name PEER netns NS`.
///
/// The peer is created directly inside its target namespace with its final
/// name; it is never moved after creation (a move costs an RCU barrier
/// under the rtnl lock). The [`Link`] that `link_add` returns for this end
/// has the peer's index (in the peer's namespace) in [`Link::parent`], so
/// the peer can be configured by index without a lookup.
///
/// ```no_run
/// # async fn f(host: &netkit_core::Handle, pod: &netkit_core::NetNs) -> Result<(), Box<dyn std::error::Error>> {
/// use netkit_core::link::Veth;
/// let veth = Veth::new("veth-pod1", "eth0").peer_netns(pod).mtu(1450).up();
/// let host_end = host.link_add(&veth).await?;
/// pod.handle().await?.link_set_up("eth0").await?;
/// # drop(host_end); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Veth {
    name: String,
    peer: String,
    peer_netns: Option<NetNs>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    peer_mac: Option<MacAddr>,
    master: Option<u32>,
    up: bool,
}

impl Veth {
    /// A pair named `name` (in the handle's namespace) and `peer`.
    pub fn new(name: &str, peer: &str) -> Self {
        Self {
            name: name.into(),
            peer: peer.into(),
            peer_netns: None,
            mtu: None,
            mac: None,
            peer_mac: None,
            master: None,
            up: false,
        }
    }
    /// Create the peer inside `ns` (default: the handle's namespace).
    pub fn peer_netns(mut self, ns: &NetNs) -> Self {
        self.peer_netns = Some(ns.clone());
        self
    }
    /// MTU of both ends.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// MAC of this end.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
    /// MAC of the peer end.
    pub fn peer_mac(mut self, mac: MacAddr) -> Self {
        self.peer_mac = Some(mac);
        self
    }
    /// Make this end a port of the bridge (or other master) with index `index` as part of the
    /// creation (`ip link add … master BR`): no extra request. (The link [`Handle::link_add`]
    /// returns is the one the kernel registered, before it became a port: its `master` is unset.)
    pub fn master_index(mut self, index: u32) -> Self {
        self.master = Some(index);
        self
    }
    /// Bring this end up as part of the creation (no extra request). The
    /// kernel cannot open the peer before the pair is joined, so the peer is
    /// brought up with [`Handle::link_set_up`] in its own namespace.
    pub fn up(mut self) -> Self {
        self.up = true;
        self
    }
    /// Name of the peer end.
    pub fn peer_name(&self) -> &str {
        &self.peer
    }
}

impl LinkSpec for Veth {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "veth"
    }
    async fn message(&self, _h: &Handle) -> Result<LinkMessage, LinkError> {
        check_name(&self.peer)?;
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(self.peer.clone()));
        if let Some(ns) = &self.peer_netns {
            // The fd stays open: `self` holds the NetNs until the request is acked.
            peer.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        if let Some(m) = self.mtu {
            peer.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(m) = self.peer_mac {
            peer.attributes.push(LinkAttribute::Address(m.0.to_vec()));
        }
        // No IFF_UP on the peer: the kernel configures the peer before the two
        // ends are joined, and opening an unjoined veth fails with ENOTCONN.
        let mut msg = new_link_message(&self.name, InfoKind::Veth, Some(InfoData::Veth(InfoVeth::Peer(peer))));
        if let Some(m) = self.mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(m) = self.mac {
            msg.attributes.push(LinkAttribute::Address(m.0.to_vec()));
        }
        if let Some(m) = self.master {
            msg.attributes.push(LinkAttribute::Controller(m));
        }
        if self.up {
            (msg.header.flags, msg.header.change_mask) = up_flags(true);
        }
        Ok(msg)
    }
    fn differences(&self, l: &Link) -> Vec<String> {
        let mut d = kind_mtu_mac_differences(l, LinkKind::Veth, self.mtu, self.mac);
        if self.up && !l.up {
            d.push("state: have down, want up".into());
        }
        d
    }
}

/// Differences every kind shares: kind, MTU and MAC when the spec sets them.
pub(crate) fn kind_mtu_mac_differences(
    l: &Link,
    kind: LinkKind,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
) -> Vec<String> {
    let mut d = Vec::new();
    if l.kind != kind {
        d.push(format!("kind: have {}, want {}", l.kind, kind));
    }
    if let Some(m) = mtu {
        if l.mtu != Some(m) {
            d.push(format!("mtu: have {:?}, want {m}", l.mtu));
        }
    }
    if let Some(m) = mac {
        if l.mac != Some(m) {
            d.push(format!("mac: have {:?}, want {m}", l.mac.map(|x| x.to_string())));
        }
    }
    d
}
