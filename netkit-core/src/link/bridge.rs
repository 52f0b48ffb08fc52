//! Bridges and their ports.

use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeStpState, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort,
    InfoData, InfoKind, InfoPortData, InfoPortKind, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::veth::kind_mtu_mac_differences;
use super::{new_link_message, up_flags, Link, LinkError, LinkKind, LinkSpec};
use crate::{Handle, MacAddr};

/// A bridge: `ip link add NAME type bridge stp_state 0 vlan_filtering …`.
///
/// STP is off unless [`Bridge::stp`] turns it on (container bridges never
/// want the 30 s of listening/learning before ports forward), and the
/// forward delay is 0.
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::link::LinkError> {
/// use netkit_core::link::{Bridge, BridgePort};
/// h.link_add(&Bridge::new("cni0").up()).await?;
/// h.bridge_attach("cni0", "veth1").await?;
/// h.bridge_port_set("veth1", &BridgePort::new().hairpin(true)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Bridge {
    name: String,
    vlan_filtering: Option<bool>,
    stp: bool,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    up: bool,
}

impl Bridge {
    /// A bridge named `name`, STP off.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            vlan_filtering: None,
            stp: false,
            mtu: None,
            mac: None,
            up: false,
        }
    }
    /// Turn 802.1Q VLAN filtering on or off.
    pub fn vlan_filtering(mut self, on: bool) -> Self {
        self.vlan_filtering = Some(on);
        self
    }
    /// Turn STP on (off by default).
    pub fn stp(mut self, on: bool) -> Self {
        self.stp = on;
        self
    }
    /// MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// Fixed MAC (otherwise the kernel picks one and may change it as ports come and go).
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
    /// Bring it up at creation.
    pub fn up(mut self) -> Self {
        self.up = true;
        self
    }
}

impl LinkSpec for Bridge {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "bridge"
    }
    async fn message(&self, _h: &Handle) -> Result<LinkMessage, LinkError> {
        let stp = if self.stp {
            BridgeStpState::KernelStp
        } else {
            BridgeStpState::Disabled
        };
        let mut data = vec![InfoBridge::StpState(stp), InfoBridge::ForwardDelay(0)];
        if let Some(v) = self.vlan_filtering {
            data.push(InfoBridge::VlanFiltering(v));
        }
        let mut msg = new_link_message(&self.name, InfoKind::Bridge, Some(InfoData::Bridge(data)));
        if let Some(m) = self.mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(m) = self.mac {
            msg.attributes.push(LinkAttribute::Address(m.0.to_vec()));
        }
        if self.up {
            (msg.header.flags, msg.header.change_mask) = up_flags(true);
        }
        Ok(msg)
    }
    fn differences(&self, l: &Link) -> Vec<String> {
        let mut d = kind_mtu_mac_differences(l, LinkKind::Bridge, self.mtu, self.mac);
        let info = l.bridge_info();
        if let Some(want) = self.vlan_filtering {
            let have = info.iter().find_map(|i| match i {
                InfoBridge::VlanFiltering(v) => Some(*v),
                _ => None,
            });
            if have != Some(want) {
                d.push(format!("vlan_filtering: have {have:?}, want {want}"));
            }
        }
        let have_stp = info.iter().find_map(|i| match i {
            InfoBridge::StpState(s) => Some(*s != BridgeStpState::Disabled),
            _ => None,
        });
        if have_stp.is_some_and(|h| h != self.stp) {
            d.push(format!("stp: have {have_stp:?}, want {}", self.stp));
        }
        d
    }
}

/// Settings of one bridge port (`ip link set DEV type bridge_slave …`).
#[derive(Clone, Debug, Default)]
pub struct BridgePort {
    hairpin: Option<bool>,
    learning: Option<bool>,
    flood: Option<bool>,
    isolated: Option<bool>,
}

impl BridgePort {
    /// No change yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Hairpin mode: frames may go back out of the port they came in on (a
    /// container reaching itself through a service address needs it).
    pub fn hairpin(mut self, on: bool) -> Self {
        self.hairpin = Some(on);
        self
    }
    /// MAC learning on this port.
    pub fn learning(mut self, on: bool) -> Self {
        self.learning = Some(on);
        self
    }
    /// Flooding of unknown unicast to this port.
    pub fn flood(mut self, on: bool) -> Self {
        self.flood = Some(on);
        self
    }
    /// Isolated ports cannot talk to each other, only to non-isolated ones.
    pub fn isolated(mut self, on: bool) -> Self {
        self.isolated = Some(on);
        self
    }
}

impl Handle {
    /// Attach `port` to `bridge` (`ip link set PORT master BRIDGE`).
    pub async fn bridge_attach(&self, bridge: &str, port: &str) -> Result<(), LinkError> {
        self.link_set(port).master(bridge).apply().await
    }

    /// Detach `port` from its bridge (`ip link set PORT nomaster`).
    pub async fn bridge_detach(&self, port: &str) -> Result<(), LinkError> {
        self.link_set(port).nomaster().apply().await
    }

    /// Turn VLAN filtering of an existing bridge on or off (`ip link set BRIDGE type bridge
    /// vlan_filtering 1`). A kernel built without bridge VLAN filtering:
    /// [`LinkError::FeatureUnsupported`].
    pub async fn bridge_vlan_filtering(&self, bridge: &str, on: bool) -> Result<(), LinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(bridge.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(on)])),
        ]));
        self.ack(RouteNetlinkMessage::NewLink(msg), 0)
            .await
            .map_err(|e| self.vlan_error("set vlan_filtering of", bridge, e))
    }

    /// Make `port` an access port of VLAN `vid`: untagged frames arriving on it belong to
    /// `vid` and frames of `vid` leave it untagged (`bridge vlan add dev PORT vid VID pvid
    /// untagged`), and it leaves the default VLAN 1 (`bridge vlan del dev PORT vid 1`). With
    /// `self_too`, the bridge device itself gets the same (`… self`), so an address on the
    /// bridge talks in `vid`. The bridge must filter VLANs; a kernel without bridge VLAN
    /// filtering: [`LinkError::FeatureUnsupported`].
    pub async fn bridge_vlan_access(&self, port: &str, vid: u16, self_too: bool) -> Result<(), LinkError> {
        if !(1..=4094).contains(&vid) {
            return Err(LinkError::Invalid {
                link: port.to_string(),
                what: "vlan id",
                reason: format!("{vid} is outside 1-4094"),
            });
        }
        let link = self.link_get(port).await?;
        // A port's VLANs go to its index; the bridge device's own go to the bridge's index with
        // BRIDGE_FLAGS_SELF.
        let vlan_msg = |index: u32, vid: u16, flags: BridgeVlanInfoFlags, on_bridge: bool| {
            let mut msg = LinkMessage::default();
            msg.header.interface_family = AddressFamily::Bridge;
            msg.header.index = index;
            let mut spec = vec![AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid })];
            if on_bridge {
                spec.insert(0, AfSpecBridge::Flags(BridgeFlag::LowerDev));
            }
            msg.attributes.push(LinkAttribute::AfSpecBridge(spec));
            msg
        };
        let access = BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged;
        let mut targets = vec![(link.index, false)];
        if self_too {
            let bridge = link.master.ok_or_else(|| LinkError::Invalid {
                link: port.to_string(),
                what: "bridge port",
                reason: "not attached to a bridge".into(),
            })?;
            targets.push((bridge, true));
        }
        for (index, on_bridge) in targets {
            self.ack(RouteNetlinkMessage::SetLink(vlan_msg(index, vid, access, on_bridge)), 0)
                .await
                .map_err(|e| self.vlan_error("add vlan to", port, e))?;
            if vid != 1 {
                let default = vlan_msg(index, 1, BridgeVlanInfoFlags::empty(), on_bridge);
                match self.ack(RouteNetlinkMessage::DelLink(default), 0).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(self.vlan_error("remove vlan 1 from", port, e)),
                }
            }
        }
        Ok(())
    }

    fn vlan_error(&self, op: &str, link: &str, e: crate::NetlinkError) -> LinkError {
        if e.is_not_supported() {
            return LinkError::FeatureUnsupported {
                feature: "bridge VLAN filtering",
                op: op.to_string(),
                link: link.to_string(),
                netns: self.ns_label(),
            };
        }
        LinkError::netlink(op, link, self, e)
    }

    /// Change bridge-port settings of `port` (which must be attached).
    pub async fn bridge_port_set(&self, port: &str, settings: &BridgePort) -> Result<(), LinkError> {
        let mut data = Vec::new();
        if let Some(v) = settings.hairpin {
            data.push(InfoBridgePort::HairpinMode(v));
        }
        if let Some(v) = settings.learning {
            data.push(InfoBridgePort::Learning(v));
        }
        if let Some(v) = settings.flood {
            data.push(InfoBridgePort::UnicastFlood(v));
        }
        if let Some(v) = settings.isolated {
            data.push(InfoBridgePort::Isolated(v));
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(port.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(data)),
        ]));
        self.ack(RouteNetlinkMessage::NewLink(msg), 0)
            .await
            .map_err(|e| LinkError::netlink("set bridge port settings of", port, self, e))
    }
}
