//! What the kernel reports about a link.

use netlink_packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoPortData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
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
    /// The kind iproute2 calls `name` (IFLA_INFO_KIND); `""` is [`LinkKind::Device`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "" => Self::Device,
            "veth" => Self::Veth,
            "bridge" => Self::Bridge,
            "vxlan" => Self::Vxlan,
            "ipip" => Self::IpIp,
            "macvlan" => Self::Macvlan,
            "tun" => Self::Tun,
            "dummy" => Self::Dummy,
            "ipvlan" => Self::Ipvlan,
            "vrf" => Self::Vrf,
            "geneve" => Self::Geneve,
            "wireguard" => Self::Wireguard,
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
///
/// The fields every listing needs are read straight from the kernel's message (a lean walk of
/// its attributes, no full decode); the rest — kind-specific data, bridge-port settings — is
/// decoded from the kept message the first time [`Link::message`] (or an accessor built on it,
/// such as [`Link::vxlan_info`]) asks for it. A thousand-link listing so costs one small
/// allocation per link instead of a tree of them.
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
    /// `ifi_flags` of the message's header.
    flags: u32,
    /// `ifi_type` of the message's header (`ARPHRD_*`).
    link_layer_type: u16,
    /// IFLA_OPERSTATE (`IF_OPER_*`; 0, unknown, when absent).
    operstate: u8,
    /// IFLA_QDISC.
    qdisc: Option<String>,
    /// IFLA_TXQLEN.
    txqlen: Option<u32>,
    /// IFLA_BROADCAST, when it is an Ethernet-sized address.
    broadcast: Option<MacAddr>,
    /// The kernel's message (after the netlink header), as it came.
    raw: Vec<u8>,
    /// `raw` decoded, on first use.
    decoded: std::sync::OnceLock<LinkMessage>,
}

/// `struct ifinfomsg`: family, pad, type (u16), index (i32), flags (u32), change (u32).
const IFINFOMSG_LEN: usize = 16;
const IFLA_ADDRESS: u16 = 1;
const IFLA_BROADCAST: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_QDISC: u16 = 6;
const IFLA_MASTER: u16 = 10;
const IFLA_TXQLEN: u16 = 13;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_GROUP: u16 = 27;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_INFO_KIND: u16 = 1;
const IF_OPER_UP: u8 = 6;

impl Link {
    /// Read a link from the payload of an `RTM_NEWLINK`/`RTM_DELLINK` message (`struct
    /// ifinfomsg` and its attributes). `None` when the payload is shorter than the header.
    pub(crate) fn from_bytes(raw: Vec<u8>) -> Option<Self> {
        use crate::netlink::wire;
        let header = raw.get(..IFINFOMSG_LEN)?;
        let u32_at = |at: usize| u32::from_ne_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        let flags = u32_at(8);
        let mut link = Link {
            index: u32_at(4),
            name: String::new(),
            kind: LinkKind::Device,
            up: flags & libc::IFF_UP as u32 != 0,
            oper_up: false,
            mtu: None,
            mac: None,
            master: None,
            parent: None,
            link_netnsid: None,
            alias: None,
            group: 0,
            flags,
            link_layer_type: u16::from_ne_bytes([header[2], header[3]]),
            operstate: 0,
            qdisc: None,
            txqlen: None,
            broadcast: None,
            raw: Vec::new(),
            decoded: std::sync::OnceLock::new(),
        };
        let text = |a: &wire::Attr<'_>| String::from_utf8_lossy(a.c_str()).into_owned();
        for a in wire::attrs(&raw[IFINFOMSG_LEN..]) {
            match a.ty {
                IFLA_IFNAME => link.name = text(&a),
                IFLA_MTU => link.mtu = a.u32_ne(),
                IFLA_ADDRESS => link.mac = MacAddr::from_slice(a.value),
                IFLA_BROADCAST => link.broadcast = MacAddr::from_slice(a.value),
                IFLA_MASTER => link.master = a.u32_ne(),
                IFLA_LINK => link.parent = a.u32_ne(),
                IFLA_LINK_NETNSID => link.link_netnsid = a.u32_ne().map(|v| v as i32),
                IFLA_IFALIAS if !a.c_str().is_empty() => link.alias = Some(text(&a)),
                IFLA_GROUP => link.group = a.u32_ne().unwrap_or_default(),
                IFLA_OPERSTATE => link.operstate = a.value.first().copied().unwrap_or_default(),
                IFLA_QDISC => link.qdisc = Some(text(&a)),
                IFLA_TXQLEN => link.txqlen = a.u32_ne(),
                IFLA_LINKINFO => {
                    if let Some(k) = wire::attrs(a.value).find(|i| i.ty == IFLA_INFO_KIND) {
                        link.kind = LinkKind::from_name(&String::from_utf8_lossy(k.c_str()));
                    }
                }
                _ => {}
            }
        }
        link.oper_up = link.operstate == IF_OPER_UP;
        link.raw = raw;
        Some(link)
    }

    /// Read a link from a message netlink-packet-route decoded (an event): its bytes again,
    /// then [`Link::from_bytes`], so both paths lift the same fields the same way.
    pub(crate) fn from_message(message: LinkMessage) -> Self {
        use netlink_packet_core::Emitable;
        let mut raw = vec![0u8; message.buffer_len()];
        message.emit(&mut raw);
        let link = Self::from_bytes(raw).expect("an emitted link message has its header");
        let _ = link.decoded.set(message);
        link
    }

    /// The kernel's whole message, decoded by netlink-packet-route (on first use; a message it
    /// cannot decode reads as an empty one), for attributes netkit does not lift into fields.
    pub fn message(&self) -> &LinkMessage {
        self.decoded.get_or_init(|| {
            use netlink_packet_core::Parseable;
            LinkMessage::parse(&self.raw[..]).unwrap_or_default()
        })
    }

    /// The interface flags (`IFF_*`, the header of the kernel's message) as a number.
    pub fn flags(&self) -> u32 {
        self.flags
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
        match self.operstate {
            0 => "UNKNOWN".into(),
            1 => "NOTPRESENT".into(),
            2 => "DOWN".into(),
            3 => "LOWERLAYERDOWN".into(),
            4 => "TESTING".into(),
            5 => "DORMANT".into(),
            IF_OPER_UP => "UP".into(),
            n => n.to_string(),
        }
    }

    /// The link-layer type (`ARPHRD_*`) as `ip link` names it after `link/`: `ether`,
    /// `loopback`, `none` (tun, wireguard), `ipip`, `sit`, `gre`, `tunnel6`, `ip6gre`, `void`,
    /// else `[N]` as iproute2 prints a type it has no name for. The `link_type` key of
    /// `ip -j link show`.
    pub fn link_type(&self) -> String {
        link_type_name(self.link_layer_type)
    }

    /// The link-layer broadcast address (IFLA_BROADCAST) of an Ethernet-like link, as
    /// `ip link` prints it after `brd`.
    pub fn broadcast(&self) -> Option<crate::MacAddr> {
        self.broadcast
    }

    /// The queueing discipline's name (`qdisc noqueue`), when the kernel reports one.
    pub fn qdisc(&self) -> Option<&str> {
        self.qdisc.as_deref()
    }

    /// The transmit queue length (`qlen`), when the kernel reports it.
    pub fn txqlen(&self) -> Option<u32> {
        self.txqlen
    }

    fn link_infos(&self) -> impl Iterator<Item = &LinkInfo> {
        self.message().attributes.iter().flat_map(|a| match a {
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

#[cfg(test)]
mod lean_tests {
    use netlink_packet_core::Emitable;
    use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage, State};

    use super::{Link, LinkKind};
    use crate::MacAddr;

    fn bytes(m: &LinkMessage) -> Vec<u8> {
        let mut raw = vec![0u8; m.buffer_len()];
        m.emit(&mut raw);
        raw
    }

    #[test]
    fn the_lean_reader_lifts_what_the_full_decoder_sees() {
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.header.flags = LinkFlags::Up | LinkFlags::Broadcast | LinkFlags::Multicast;
        m.header.link_layer_type = LinkLayerType::Ether;
        m.attributes = vec![
            LinkAttribute::IfName("v0".into()),
            LinkAttribute::Mtu(1400),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
            LinkAttribute::Broadcast(vec![0xff; 6]),
            LinkAttribute::Controller(3),
            LinkAttribute::Link(9),
            LinkAttribute::LinkNetNsId(2),
            LinkAttribute::IfAlias("pod".into()),
            LinkAttribute::Group(5),
            LinkAttribute::OperState(State::Up),
            LinkAttribute::Qdisc("noqueue".into()),
            LinkAttribute::TxQueueLen(1000),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let l = Link::from_bytes(bytes(&m)).unwrap();
        assert_eq!((l.index, l.name.as_str(), l.kind.clone()), (7, "v0", LinkKind::Veth));
        assert!(l.up && l.oper_up);
        assert_eq!(
            (l.mtu, l.master, l.parent, l.link_netnsid),
            (Some(1400), Some(3), Some(9), Some(2))
        );
        assert_eq!(l.mac, Some("02:00:00:00:00:01".parse::<MacAddr>().unwrap()));
        assert_eq!(
            l.broadcast().map(|b| b.to_string()).as_deref(),
            Some("ff:ff:ff:ff:ff:ff")
        );
        assert_eq!((l.alias.as_deref(), l.group), (Some("pod"), 5));
        assert_eq!((l.qdisc(), l.txqlen()), (Some("noqueue"), Some(1000)));
        assert_eq!((l.operstate().as_str(), l.link_type().as_str()), ("UP", "ether"));
        assert_eq!(l.flag_names(), ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]);
        // The rest decodes on demand, to the same message.
        assert_eq!(l.message(), &m);
        // An event's link (decoded first) reads the same.
        let e = Link::from_message(m.clone());
        assert_eq!(
            (e.name, e.kind, e.mtu, e.qdisc),
            (l.name.clone(), l.kind.clone(), l.mtu, l.qdisc.clone())
        );
    }

    #[test]
    fn short_or_odd_messages_never_panic() {
        assert!(Link::from_bytes(vec![0; 15]).is_none());
        let l = Link::from_bytes(vec![0; 16]).unwrap();
        assert_eq!((l.kind.clone(), l.operstate().as_str()), (LinkKind::Device, "UNKNOWN"));
        // An attribute running past the end is where the walk stops.
        let mut raw = vec![0; 16];
        raw.extend_from_slice(&[200, 0, 3, 0, b'x', 0, 0, 0]);
        assert_eq!(Link::from_bytes(raw).unwrap().name, "");
        assert_eq!(LinkKind::from_name("gretap"), LinkKind::Other("gretap".into()));
        assert_eq!(LinkKind::from_name("vxlan").as_str(), "vxlan");
    }
}
