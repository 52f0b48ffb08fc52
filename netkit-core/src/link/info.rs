//! What the kernel reports about a link.

use netlink_packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage, State,
};

use crate::MacAddr;

/// The kind of a link, as `ip -d link` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// A device with no kind: physical NICs and loopback.
    Device,
    /// `veth`
    Veth,
    /// `bridge`
    Bridge,
    /// `vxlan`
    Vxlan,
    /// `ipip`
    IpIp,
    /// `macvlan`
    Macvlan,
    /// `tun` (tun or tap: see [`Link::tun_is_tap`])
    Tun,
    /// `dummy`
    Dummy,
    /// `ipvlan`
    Ipvlan,
    /// `vrf`
    Vrf,
    /// `geneve`
    Geneve,
    /// `wireguard`
    Wireguard,
    /// Any other kind, by its name.
    Other(String),
}

impl LinkKind {
    fn from_info(kind: &InfoKind) -> Self {
        match kind {
            InfoKind::Veth => Self::Veth,
            InfoKind::Bridge => Self::Bridge,
            InfoKind::Vxlan => Self::Vxlan,
            InfoKind::IpIp => Self::IpIp,
            InfoKind::MacVlan => Self::Macvlan,
            InfoKind::Tun => Self::Tun,
            InfoKind::Dummy => Self::Dummy,
            InfoKind::IpVlan => Self::Ipvlan,
            InfoKind::Vrf => Self::Vrf,
            InfoKind::Geneve => Self::Geneve,
            InfoKind::Wireguard => Self::Wireguard,
            other => Self::Other(other.to_string()),
        }
    }

    /// The kind as iproute2 spells it (`""` for [`LinkKind::Device`]).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Device => "",
            Self::Veth => "veth",
            Self::Bridge => "bridge",
            Self::Vxlan => "vxlan",
            Self::IpIp => "ipip",
            Self::Macvlan => "macvlan",
            Self::Tun => "tun",
            Self::Dummy => "dummy",
            Self::Ipvlan => "ipvlan",
            Self::Vrf => "vrf",
            Self::Geneve => "geneve",
            Self::Wireguard => "wireguard",
            Self::Other(s) => s,
        }
    }
}

impl std::fmt::Display for LinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if *self == Self::Device { "device" } else { self.as_str() })
    }
}

/// A link as the kernel reports it.
#[derive(Clone, Debug)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Kind (veth, bridge, …).
    pub kind: LinkKind,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Operational state is "up" (carrier and lower layers ready).
    pub oper_up: bool,
    /// MTU.
    pub mtu: Option<u32>,
    /// Hardware address when it is an Ethernet one.
    pub mac: Option<MacAddr>,
    /// Index of the bridge (or other master) this link is a port of.
    pub master: Option<u32>,
    /// Index of the parent / peer link (IFLA_LINK): the veth peer, the macvlan
    /// or vxlan lower device. With `link_netnsid` set, the index is in
    /// another namespace.
    pub parent: Option<u32>,
    /// Namespace id (as seen from this one) of the peer's namespace.
    pub link_netnsid: Option<i32>,
    /// The alias (IFLA_IFALIAS, `ip link set DEV alias TEXT`), when set.
    pub alias: Option<String>,
    /// The link group (IFLA_GROUP, `ip link set DEV group N`; 0 is the default group).
    pub group: u32,
    /// The raw message, for attributes netkit does not lift into fields.
    pub message: LinkMessage,
}

impl Link {
    pub(crate) fn from_message(message: LinkMessage) -> Self {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            kind: LinkKind::Device,
            up: message.header.flags.contains(LinkFlags::Up),
            oper_up: false,
            mtu: None,
            mac: None,
            master: None,
            parent: None,
            link_netnsid: None,
            alias: None,
            group: 0,
            message: LinkMessage::default(),
        };
        for attr in &message.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(m) => link.mtu = Some(*m),
                LinkAttribute::Address(a) => link.mac = MacAddr::from_slice(a),
                LinkAttribute::Controller(m) => link.master = Some(*m),
                LinkAttribute::Link(p) => link.parent = Some(*p),
                LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(*id),
                LinkAttribute::IfAlias(a) if !a.is_empty() => link.alias = Some(a.clone()),
                LinkAttribute::Group(g) => link.group = *g,
                LinkAttribute::OperState(s) => link.oper_up = *s == State::Up,
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            link.kind = LinkKind::from_info(k);
                        }
                    }
                }
                _ => {}
            }
        }
        link.message = message;
        link
    }

    /// The interface flags (`IFF_*`, the header of the kernel's message) as a number.
    pub fn flags(&self) -> u32 {
        self.message.header.flags.bits()
    }

    /// The interface flags as `ip link` names them, in its order (`["BROADCAST", "MULTICAST",
    /// "UP", "LOWER_UP"]`): `NO-CARRIER` first for a link that is up without carrier, `RUNNING`
    /// never named, bits iproute2 has no name for as one hex number. The `flags` key of
    /// `ip -j link show`.
    pub fn flag_names(&self) -> Vec<String> {
        flag_names(self.flags())
    }

    /// The operational state as `ip link` prints it: `UNKNOWN`, `NOTPRESENT`, `DOWN`,
    /// `LOWERLAYERDOWN`, `TESTING`, `DORMANT` or `UP` (a state newer than this list is its
    /// number). The `operstate` key of `ip -j link show`.
    pub fn operstate(&self) -> String {
        let state = self.message.attributes.iter().find_map(|a| match a {
            LinkAttribute::OperState(s) => Some(*s),
            _ => None,
        });
        match state.unwrap_or(State::Unknown) {
            State::Unknown => "UNKNOWN".into(),
            State::NotPresent => "NOTPRESENT".into(),
            State::Down => "DOWN".into(),
            State::LowerLayerDown => "LOWERLAYERDOWN".into(),
            State::Testing => "TESTING".into(),
            State::Dormant => "DORMANT".into(),
            State::Up => "UP".into(),
            State::Other(n) => n.to_string(),
            _ => "UNKNOWN".into(),
        }
    }

    /// The link-layer type (`ARPHRD_*`) as `ip link` names it after `link/`: `ether`,
    /// `loopback`, `none` (tun, wireguard), `ipip`, `sit`, `gre`, `tunnel6`, `ip6gre`, `void`,
    /// else `[N]` as iproute2 prints a type it has no name for. The `link_type` key of
    /// `ip -j link show`.
    pub fn link_type(&self) -> String {
        link_type_name(u16::from(self.message.header.link_layer_type))
    }

    /// The link-layer broadcast address (IFLA_BROADCAST) of an Ethernet-like link, as
    /// `ip link` prints it after `brd`.
    pub fn broadcast(&self) -> Option<crate::MacAddr> {
        self.message.attributes.iter().find_map(|a| match a {
            LinkAttribute::Broadcast(b) => crate::MacAddr::from_slice(b),
            _ => None,
        })
    }

    /// The queueing discipline's name (`qdisc noqueue`), when the kernel reports one.
    pub fn qdisc(&self) -> Option<&str> {
        self.message.attributes.iter().find_map(|a| match a {
            LinkAttribute::Qdisc(q) => Some(q.as_str()),
            _ => None,
        })
    }

    /// The transmit queue length (`qlen`), when the kernel reports it.
    pub fn txqlen(&self) -> Option<u32> {
        self.message.attributes.iter().find_map(|a| match a {
            LinkAttribute::TxQueueLen(q) => Some(*q),
            _ => None,
        })
    }

    fn link_infos(&self) -> impl Iterator<Item = &LinkInfo> {
        self.message.attributes.iter().flat_map(|a| match a {
            LinkAttribute::LinkInfo(i) => i.as_slice(),
            _ => &[],
        })
    }

    /// Kind-specific data (IFLA_INFO_DATA), if the kernel sent it.
    pub fn info_data(&self) -> Option<&InfoData> {
        self.link_infos().find_map(|i| match i {
            LinkInfo::Data(d) => Some(d),
            _ => None,
        })
    }

    /// VXLAN attributes, for a vxlan link.
    pub fn vxlan_info(&self) -> &[InfoVxlan] {
        match self.info_data() {
            Some(InfoData::Vxlan(v)) => v,
            _ => &[],
        }
    }

    /// Bridge attributes, for a bridge.
    pub fn bridge_info(&self) -> &[InfoBridge] {
        match self.info_data() {
            Some(InfoData::Bridge(v)) => v,
            _ => &[],
        }
    }

    /// Bridge-port attributes (hairpin, learning, …) of a link enslaved to a bridge.
    pub fn bridge_port_info(&self) -> &[InfoBridgePort] {
        self.link_infos()
            .find_map(|i| match i {
                LinkInfo::PortData(InfoPortData::BridgePort(p)) => Some(p.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    /// For a `tun` link: true when it is a tap (Ethernet) device.
    pub fn tun_is_tap(&self) -> Option<bool> {
        if self.kind != LinkKind::Tun {
            return None;
        }
        // IFLA_TUN_TYPE is attribute 3 (after IFLA_TUN_OWNER = 1 and
        // IFLA_TUN_GROUP = 2), a u8 holding IFF_TUN (1) or IFF_TAP (2).
        const IFLA_TUN_TYPE: u16 = 3;
        match self.info_data() {
            Some(InfoData::Tun(attrs)) => attrs.iter().find_map(|a| {
                use netlink_packet_core::Nla;
                let mut buf = vec![0u8; a.value_len()];
                a.emit_value(&mut buf);
                (a.kind() == IFLA_TUN_TYPE && !buf.is_empty()).then(|| buf[0] == 2)
            }),
            _ => None,
        }
    }
}

/// `IFF_*` flags as iproute2's `print_link_flags` names them, in its order.
fn flag_names(mut flags: u32) -> Vec<String> {
    const UP: u32 = 0x1;
    const RUNNING: u32 = 0x40;
    const NAMED: [(u32, &str); 18] = [
        (0x8, "LOOPBACK"),
        (0x2, "BROADCAST"),
        (0x10, "POINTOPOINT"),
        (0x1000, "MULTICAST"),
        (0x80, "NOARP"),
        (0x200, "ALLMULTI"),
        (0x100, "PROMISC"),
        (0x400, "MASTER"),
        (0x800, "SLAVE"),
        (0x4, "DEBUG"),
        (0x8000, "DYNAMIC"),
        (0x4000, "AUTOMEDIA"),
        (0x2000, "PORTSEL"),
        (0x20, "NOTRAILERS"),
        (UP, "UP"),
        (0x10000, "LOWER_UP"),
        (0x20000, "DORMANT"),
        (0x40000, "ECHO"),
    ];
    let mut out = Vec::new();
    if flags & UP != 0 && flags & RUNNING == 0 {
        out.push("NO-CARRIER".to_string());
    }
    flags &= !RUNNING;
    for (bit, name) in NAMED {
        if flags & bit != 0 {
            flags &= !bit;
            out.push(name.to_string());
        }
    }
    if flags != 0 {
        out.push(format!("{flags:x}"));
    }
    out
}

/// An `ARPHRD_*` number as iproute2's `ll_type_n2a` names it (the common ones).
fn link_type_name(t: u16) -> String {
    match t {
        1 => "ether",
        772 => "loopback",
        768 => "ipip",
        769 => "tunnel6",
        776 => "sit",
        778 => "gre",
        823 => "ip6gre",
        0xfffe => "none",
        0xffff => "void",
        n => return format!("[{n}]"),
    }
    .to_string()
}

#[cfg(test)]
mod names_tests {
    use super::{flag_names, link_type_name};

    #[test]
    fn flags_read_like_iproute2() {
        // lo: LOOPBACK|UP|RUNNING|LOWER_UP.
        assert_eq!(flag_names(0x10049), ["LOOPBACK", "UP", "LOWER_UP"]);
        // A veth up whose peer is down: BROADCAST|MULTICAST|UP without RUNNING.
        assert_eq!(flag_names(0x1003), ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]);
        // Down: no NO-CARRIER.
        assert_eq!(flag_names(0x1002), ["BROADCAST", "MULTICAST"]);
        // A bit without a name is printed in hex.
        assert_eq!(flag_names(0x80_0000 | 0x2), ["BROADCAST", "800000"]);
    }

    #[test]
    fn link_types() {
        assert_eq!(link_type_name(1), "ether");
        assert_eq!(link_type_name(772), "loopback");
        assert_eq!(link_type_name(65534), "none");
        assert_eq!(link_type_name(4242), "[4242]");
    }
}
