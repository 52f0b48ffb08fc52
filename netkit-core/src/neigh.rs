//! Neighbours (ARP / NDP entries) and the bridge forwarding database (FDB).
//!
//! Methods live on [`Handle`] and mirror `ip neigh` and `bridge fdb`:
//!
//! | iproute2 | netkit |
//! |---|---|
//! | `ip neigh add IP lladdr MAC dev DEV nud permanent` | [`Handle::neigh_add`] with a [`Neighbour`] |
//! | `ip neigh replace …` | [`Handle::neigh_replace`] |
//! | `ip neigh add proxy IP dev DEV` | [`Handle::neigh_add`] with [`Neighbour::proxy`] |
//! | `ip neigh del IP dev DEV` | [`Handle::neigh_del`] (idempotent); [`Handle::neigh_remove`] says whether one went |
//! | `ip neigh del proxy IP dev DEV` | [`Handle::neigh_del_proxy`] (idempotent) |
//! | `ip neigh show [dev DEV]` | [`Handle::neigh_list`] |
//! | `bridge fdb add MAC dev DEV [dst IP] self\|master permanent\|static` | [`Handle::fdb_add`] with an [`FdbEntry`] |
//! | `bridge fdb append …` | [`Handle::fdb_append`] |
//! | `bridge fdb replace …` | [`Handle::fdb_replace`] |
//! | `bridge fdb del …` | [`Handle::fdb_del`] (idempotent); [`Handle::fdb_remove`] says whether one went |
//! | `bridge fdb show [dev DEV]` | [`Handle::fdb_list`] |
//!
//! Flannel's VXLAN backend, per remote node, is one permanent ARP entry and
//! one FDB entry on the VXLAN device:
//!
//! ```no_run
//! # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
//! use netkit_core::neigh::{FdbEntry, Neighbour};
//! let vtep_mac = "5e:f8:4f:00:e3:37".parse().unwrap();
//! // ip neigh replace 10.244.1.0 lladdr 5e:f8:4f:00:e3:37 dev flannel.1 nud permanent
//! h.neigh_replace(&Neighbour::new("flannel.1", "10.244.1.0".parse().unwrap(), vtep_mac)).await?;
//! // bridge fdb replace 5e:f8:4f:00:e3:37 dev flannel.1 dst 192.168.0.11 self permanent
//! h.fdb_replace(&FdbEntry::new("flannel.1", vtep_mac).dst("192.168.0.11".parse().unwrap()).self_().permanent())
//!     .await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::link::Dev;
pub use crate::sysctl::Family;
use crate::{Handle, MacAddr, NetlinkError};

const NUD_INCOMPLETE: u16 = 0x01;
const NUD_REACHABLE: u16 = 0x02;
const NUD_STALE: u16 = 0x04;
const NUD_DELAY: u16 = 0x08;
const NUD_PROBE: u16 = 0x10;
const NUD_FAILED: u16 = 0x20;
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;

/// Errors from neighbour and FDB operations: each names the operation, the
/// entry, the device and the netns, and keeps the kernel's errno.
#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    /// The kernel refused the request (or the device does not exist).
    #[error("{op} {object} on dev {device:?} in netns {netns}: {cause}")]
    Netlink {
        /// Operation: "add", "replace", "append", "delete", "list".
        op: &'static str,
        /// The entry, e.g. `neighbour 10.0.0.2 lladdr 02:…` or `fdb entry 02:… dst 192.0.2.1`.
        object: String,
        /// Device name, `#INDEX` when given by index, `*` for whole-table listings.
        device: String,
        /// Namespace the request went to.
        netns: String,
        /// Kernel answer with its errno.
        cause: NetlinkError,
    },
}

crate::netlink::errno_predicates!(NeighError);

impl NeighError {
    fn netlink(op: &'static str, object: String, device: String, h: &Handle, source: NetlinkError) -> Self {
        Self::Netlink {
            op,
            object,
            device,
            netns: h.ns_label(),
            cause: source,
        }
    }

    /// The errno the kernel returned, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Netlink { cause: source, .. } => source.errno,
        }
    }
}

/// State of a neighbour entry (the kernel's `NUD_*` value).
///
/// Entries the kernel learns move between `Incomplete`, `Reachable`, `Stale`,
/// `Delay`, `Probe` and `Failed`; entries an administrator adds are usually
/// `Permanent` (never expire, never re-validated) or `Noarp` (valid without
/// resolution). States that are a combination of bits (bridge FDB entries use
/// `NOARP|PERMANENT`) appear as `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NeighState {
    /// No state (`NUD_NONE`), e.g. proxy entries.
    None,
    /// Resolution in progress.
    Incomplete,
    /// Confirmed recently.
    Reachable,
    /// Valid but not confirmed recently.
    Stale,
    /// Waiting before probing.
    Delay,
    /// Being probed.
    Probe,
    /// Resolution failed.
    Failed,
    /// Valid without resolution (`nud noarp`).
    Noarp,
    /// Static entry that never expires (`nud permanent`).
    Permanent,
    /// Any other bit combination.
    Other(u16),
}

impl NeighState {
    /// The raw `NUD_*` bits.
    pub fn bits(self) -> u16 {
        match self {
            Self::None => 0,
            Self::Incomplete => NUD_INCOMPLETE,
            Self::Reachable => NUD_REACHABLE,
            Self::Stale => NUD_STALE,
            Self::Delay => NUD_DELAY,
            Self::Probe => NUD_PROBE,
            Self::Failed => NUD_FAILED,
            Self::Noarp => NUD_NOARP,
            Self::Permanent => NUD_PERMANENT,
            Self::Other(b) => b,
        }
    }

    /// From raw `NUD_*` bits.
    pub fn from_bits(bits: u16) -> Self {
        match bits {
            0 => Self::None,
            NUD_INCOMPLETE => Self::Incomplete,
            NUD_REACHABLE => Self::Reachable,
            NUD_STALE => Self::Stale,
            NUD_DELAY => Self::Delay,
            NUD_PROBE => Self::Probe,
            NUD_FAILED => Self::Failed,
            NUD_NOARP => Self::Noarp,
            NUD_PERMANENT => Self::Permanent,
            b => Self::Other(b),
        }
    }

    /// True when the `NUD_PERMANENT` bit is set.
    pub fn is_permanent(self) -> bool {
        self.bits() & NUD_PERMANENT != 0
    }
}

impl fmt::Display for NeighState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Incomplete => f.write_str("incomplete"),
            Self::Reachable => f.write_str("reachable"),
            Self::Stale => f.write_str("stale"),
            Self::Delay => f.write_str("delay"),
            Self::Probe => f.write_str("probe"),
            Self::Failed => f.write_str("failed"),
            Self::Noarp => f.write_str("noarp"),
            Self::Permanent => f.write_str("permanent"),
            Self::Other(b) => write!(f, "{b:#x}"),
        }
    }
}

fn ip_family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Read an address attribute of any family (FDB dumps carry VXLAN remotes
/// under AF_BRIDGE, which netlink-packet-route leaves as raw bytes).
fn neigh_ip(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v) => Some(IpAddr::V4(*v)),
        NeighbourAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        NeighbourAddress::Other(b) => match b.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            16 => {
                let o: [u8; 16] = b.as_slice().try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => None,
        },
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Neighbours (ARP / NDP)
// ---------------------------------------------------------------------------

/// A neighbour entry to add or replace: `ip neigh add IP lladdr MAC dev DEV nud permanent`.
///
/// IPv4 entries go to the ARP table, IPv6 entries to the NDP table. The
/// state is permanent unless [`Neighbour::state`] says otherwise.
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
/// use netkit_core::neigh::Neighbour;
/// let n = Neighbour::new("eth0", "10.0.0.2".parse().unwrap(), "02:00:00:00:00:02".parse().unwrap());
/// h.neigh_add(&n).await?;
/// // Answer ARP for 10.0.0.9 on eth0 (needs proxy_arp or a proxy entry):
/// h.neigh_add(&Neighbour::new_proxy("eth0", "10.0.0.9".parse().unwrap())).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    dev: Dev,
    ip: IpAddr,
    mac: MacAddr,
    state: NeighState,
    proxy: bool,
    router: bool,
}

impl Neighbour {
    /// A permanent entry `ip` → `mac` on device `dev`.
    pub fn new(dev: &str, ip: IpAddr, mac: MacAddr) -> Self {
        Self {
            dev: Dev::Name(dev.to_string()),
            ip,
            mac,
            state: NeighState::Permanent,
            proxy: false,
            router: false,
        }
    }

    /// Like [`Neighbour::new`], naming the device by index.
    pub fn with_index(index: u32, ip: IpAddr, mac: MacAddr) -> Self {
        Self::new("", ip, mac).dev_index(index)
    }

    /// A proxy entry (`ip neigh add proxy IP dev DEV`): the kernel answers
    /// ARP / neighbour solicitations for `ip` received on `dev`.
    pub fn new_proxy(dev: &str, ip: IpAddr) -> Self {
        Self::new(dev, ip, MacAddr::default()).proxy()
    }

    /// Name the device by index instead of by name.
    pub fn dev_index(mut self, index: u32) -> Self {
        self.dev = Dev::Index(index);
        self
    }

    /// The entry's state (default [`NeighState::Permanent`]).
    pub fn state(mut self, state: NeighState) -> Self {
        self.state = state;
        self
    }

    /// Make this a proxy entry (`NTF_PROXY`): no MAC is sent, the kernel
    /// answers for the address with the device's own MAC.
    pub fn proxy(mut self) -> Self {
        self.proxy = true;
        self
    }

    /// Mark the neighbour as a router (`NTF_ROUTER`, IPv6 only).
    pub fn router(mut self) -> Self {
        self.router = true;
        self
    }

    fn describe(&self) -> String {
        if self.proxy {
            format!("proxy neighbour {}", self.ip)
        } else {
            format!("neighbour {} lladdr {} nud {}", self.ip, self.mac, self.state)
        }
    }

    fn message(&self, index: u32) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header.family = ip_family(self.ip);
        msg.header.ifindex = index;
        let mut flags = NeighbourFlags::empty();
        if self.proxy {
            flags |= NeighbourFlags::Proxy;
        }
        if self.router {
            flags |= NeighbourFlags::Router;
        }
        msg.header.flags = flags;
        msg.header.state = NeighbourState::from(self.state.bits());
        msg.attributes.push(NeighbourAttribute::Destination(self.ip.into()));
        if !self.proxy {
            msg.attributes
                .push(NeighbourAttribute::LinkLayerAddress(self.mac.octets().to_vec()));
        }
        msg
    }
}

/// One neighbour entry as listed by [`Handle::neigh_list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighInfo {
    /// Index of the device the entry is on.
    pub index: u32,
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its link-layer address (`None` while unresolved and for proxy entries).
    pub mac: Option<MacAddr>,
    /// The entry's state.
    pub state: NeighState,
    /// A proxy entry (`ip neigh show proxy`).
    pub proxy: bool,
    /// The neighbour is a router (`NTF_ROUTER`).
    pub router: bool,
}

impl NeighInfo {
    pub(crate) fn from_message(m: NeighbourMessage) -> Option<Self> {
        let mut ip = None;
        let mut mac = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Destination(d) => ip = neigh_ip(d),
                NeighbourAttribute::LinkLayerAddress(b) => mac = MacAddr::from_slice(b),
                _ => {}
            }
        }
        Some(Self {
            index: m.header.ifindex,
            ip: ip?,
            mac,
            state: NeighState::from_bits(u16::from(m.header.state)),
            proxy: m.header.flags.contains(NeighbourFlags::Proxy),
            router: m.header.flags.contains(NeighbourFlags::Router),
        })
    }
}

impl Handle {
    async fn neigh_send(&self, n: &Neighbour, op: &'static str, flags: u16) -> Result<(), NeighError> {
        let err = |e| NeighError::netlink(op, n.describe(), n.dev.to_string(), self, e);
        let index = self.dev_index(&n.dev).await.map_err(err)?;
        self.ack(RouteNetlinkMessage::NewNeighbour(n.message(index)), flags)
            .await
            .map_err(err)
    }

    /// Add a neighbour entry, like `ip neigh add`. Fails with `EEXIST` (see
    /// [`NeighError::is_exists`]) when an entry for the address already
    /// exists on the device; use [`Handle::neigh_replace`] to overwrite.
    /// Proxy entries are the exception: the kernel accepts adding an existing
    /// proxy entry again.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// use netkit_core::neigh::Neighbour;
    /// h.neigh_add(&Neighbour::new("v0", "fd00::2".parse().unwrap(), "02:00:00:00:00:02".parse().unwrap())).await?;
    /// # Ok(()) }
    /// ```
    pub async fn neigh_add(&self, n: &Neighbour) -> Result<(), NeighError> {
        self.neigh_send(n, "add", NLM_F_CREATE | NLM_F_EXCL).await
    }

    /// Add or overwrite a neighbour entry, like `ip neigh replace`.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// use netkit_core::neigh::Neighbour;
    /// h.neigh_replace(&Neighbour::new("v0", "10.0.0.2".parse().unwrap(), "02:00:00:00:00:03".parse().unwrap()))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn neigh_replace(&self, n: &Neighbour) -> Result<(), NeighError> {
        self.neigh_send(n, "replace", NLM_F_CREATE | NLM_F_REPLACE).await
    }

    /// Delete the entry for `ip` on `dev` (a proxy entry when `proxy`), telling what happened:
    /// `true` when an entry was deleted, `false` when there was none (or no such device).
    /// [`Handle::neigh_del`] and [`Handle::neigh_del_proxy`] are this without the answer.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// if !h.neigh_remove("v0", "10.0.0.2".parse().unwrap(), false).await? {
    ///     eprintln!("no neighbour 10.0.0.2 on v0");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn neigh_remove(&self, dev: &str, ip: IpAddr, proxy: bool) -> Result<bool, NeighError> {
        let object = if proxy {
            format!("proxy neighbour {ip}")
        } else {
            format!("neighbour {ip}")
        };
        let err = |e| NeighError::netlink("delete", object.clone(), dev.to_string(), self, e);
        let index = match self.dev_index(&Dev::Name(dev.to_string())).await {
            Ok(i) => i,
            // No device, no entry.
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(err(e)),
        };
        let mut n = Neighbour::new(dev, ip, MacAddr::default()).state(NeighState::None);
        n.proxy = proxy;
        let mut msg = n.message(index);
        msg.attributes
            .retain(|a| !matches!(a, NeighbourAttribute::LinkLayerAddress(_)));
        match self.ack(RouteNetlinkMessage::DelNeighbour(msg), 0).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    /// Look up the neighbour entry for `ip` on `dev`, like `ip neigh get IP dev DEV`
    /// (one request, no dump). `None` when there is no such entry.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// if let Some(n) = h.neigh_get("v0", "10.0.0.2".parse().unwrap()).await? {
    ///     println!("{} is at {:?} ({})", n.ip, n.mac, n.state);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn neigh_get(&self, dev: &str, ip: IpAddr) -> Result<Option<NeighInfo>, NeighError> {
        let err = |e| NeighError::netlink("get", format!("neighbour {ip}"), dev.to_string(), self, e);
        let index = self.dev_index(&Dev::Name(dev.to_string())).await.map_err(err)?;
        let mut msg = Neighbour::new(dev, ip, MacAddr::default())
            .state(NeighState::None)
            .message(index);
        msg.attributes
            .retain(|a| !matches!(a, NeighbourAttribute::LinkLayerAddress(_)));
        match self.get(RouteNetlinkMessage::GetNeighbour(msg)).await {
            Ok(RouteNetlinkMessage::NewNeighbour(m)) => Ok(NeighInfo::from_message(m)),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    /// Delete the neighbour entry for `ip` on `dev`, like `ip neigh del IP dev DEV`.
    /// Idempotent: a missing entry (or device) is success.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// h.neigh_del("v0", "10.0.0.2".parse().unwrap()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn neigh_del(&self, dev: &str, ip: IpAddr) -> Result<(), NeighError> {
        self.neigh_remove(dev, ip, false).await.map(drop)
    }

    /// Delete a proxy entry, like `ip neigh del proxy IP dev DEV`. Idempotent.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// h.neigh_del_proxy("v0", "10.0.0.9".parse().unwrap()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn neigh_del_proxy(&self, dev: &str, ip: IpAddr) -> Result<(), NeighError> {
        self.neigh_remove(dev, ip, true).await.map(drop)
    }

    /// List neighbour entries, like `ip neigh show [dev DEV]` followed by
    /// `ip neigh show proxy`: regular and proxy entries, optionally only those
    /// on `dev` and of one address family.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// use netkit_core::neigh::{Family, NeighState};
    /// for n in h.neigh_list(Some("eth0"), Some(Family::V4)).await? {
    ///     if n.state == NeighState::Permanent {
    ///         println!("{} -> {:?}", n.ip, n.mac);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn neigh_list(&self, dev: Option<&str>, family: Option<Family>) -> Result<Vec<NeighInfo>, NeighError> {
        let device = dev.unwrap_or("*").to_string();
        let err = |e| NeighError::netlink("list", "neighbours".into(), device.clone(), self, e);
        let index = match dev {
            Some(d) => Some(self.dev_index(&Dev::Name(d.to_string())).await.map_err(err)?),
            None => None,
        };
        let af = match family {
            None => AddressFamily::Unspec,
            Some(Family::V4) => AddressFamily::Inet,
            Some(Family::V6) => AddressFamily::Inet6,
        };
        let mut out = Vec::new();
        // The kernel dumps proxy entries only when asked with exactly NTF_PROXY.
        for flags in [NeighbourFlags::empty(), NeighbourFlags::Proxy] {
            let mut req = NeighbourMessage::default();
            req.header.family = af;
            req.header.flags = flags;
            let msgs = self.dump(RouteNetlinkMessage::GetNeighbour(req)).await.map_err(err)?;
            out.extend(msgs.into_iter().filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(m) => NeighInfo::from_message(m),
                _ => None,
            }));
        }
        out.retain(|n| index.is_none_or(|i| n.index == i));
        out.retain(|n| match family {
            Some(Family::V4) => n.ip.is_ipv4(),
            Some(Family::V6) => n.ip.is_ipv6(),
            None => true,
        });
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Bridge forwarding database
// ---------------------------------------------------------------------------

/// An FDB entry: `bridge fdb add MAC dev DEV [dst IP] [vlan V] [vni N] [port P] self|master static|permanent`.
///
/// Where the entry goes:
/// * [`FdbEntry::self_`] (`NTF_SELF`): the device's own table. This is what
///   a VXLAN device needs: MAC → remote VTEP ([`FdbEntry::dst`]);
/// * [`FdbEntry::master`] (`NTF_MASTER`): the table of the bridge the device
///   is a port of: MAC → this port;
/// * neither: `self`, as `bridge fdb add` does.
///
/// The state is static (`NUD_NOARP|NUD_REACHABLE`, never ages out) unless
/// [`FdbEntry::permanent`] is chosen (`NUD_NOARP|NUD_PERMANENT`; on a
/// bridge, permanent means "local": frames to the MAC are delivered to the
/// bridge itself rather than forwarded).
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
/// use netkit_core::neigh::FdbEntry;
/// let mac = "02:00:00:00:00:02".parse().unwrap();
/// // bridge fdb add 02:00:00:00:00:02 dev veth1 master static
/// h.fdb_add(&FdbEntry::new("veth1", mac).master().static_()).await?;
/// // bridge fdb append 00:00:00:00:00:00 dev vx0 dst 192.0.2.7 self permanent  (flood to this VTEP)
/// let zero = netkit_core::MacAddr::default();
/// h.fdb_append(&FdbEntry::new("vx0", zero).dst("192.0.2.7".parse().unwrap()).self_().permanent()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    dev: Dev,
    mac: MacAddr,
    dst: Option<IpAddr>,
    vlan: Option<u16>,
    vni: Option<u32>,
    port: Option<u16>,
    is_self: bool,
    master: bool,
    state: u16,
}

impl FdbEntry {
    /// An entry for `mac` on `dev` (static, in the device's own table unless
    /// [`FdbEntry::master`] is set).
    pub fn new(dev: &str, mac: MacAddr) -> Self {
        Self {
            dev: Dev::Name(dev.to_string()),
            mac,
            dst: None,
            vlan: None,
            vni: None,
            port: None,
            is_self: false,
            master: false,
            state: NUD_NOARP | NUD_REACHABLE,
        }
    }

    /// Like [`FdbEntry::new`], naming the device by index.
    pub fn with_index(index: u32, mac: MacAddr) -> Self {
        Self::new("", mac).dev_index(index)
    }

    /// Name the device by index instead of by name.
    pub fn dev_index(mut self, index: u32) -> Self {
        self.dev = Dev::Index(index);
        self
    }

    /// Remote VTEP address (`dst`, `NDA_DST`) for VXLAN devices.
    pub fn dst(mut self, ip: IpAddr) -> Self {
        self.dst = Some(ip);
        self
    }

    /// VLAN id (`vlan`, `NDA_VLAN`); the bridge must have the VLAN configured.
    pub fn vlan(mut self, vlan: u16) -> Self {
        self.vlan = Some(vlan);
        self
    }

    /// VXLAN VNI of the remote (`vni`, `NDA_VNI`) when it differs from the device's.
    pub fn vni(mut self, vni: u32) -> Self {
        self.vni = Some(vni);
        self
    }

    /// UDP port of the remote (`port`, `NDA_PORT`) when it differs from the device's.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Put the entry in the device's own table (`self`, `NTF_SELF`).
    pub fn self_(mut self) -> Self {
        self.is_self = true;
        self
    }

    /// Put the entry in the table of the device's bridge (`master`, `NTF_MASTER`).
    pub fn master(mut self) -> Self {
        self.master = true;
        self
    }

    /// Permanent entry (`permanent`: `NUD_NOARP|NUD_PERMANENT`).
    pub fn permanent(mut self) -> Self {
        self.state = NUD_NOARP | NUD_PERMANENT;
        self
    }

    /// Static entry (`static`: `NUD_NOARP|NUD_REACHABLE`), the default.
    pub fn static_(mut self) -> Self {
        self.state = NUD_NOARP | NUD_REACHABLE;
        self
    }

    fn describe(&self) -> String {
        let mut s = format!("fdb entry {}", self.mac);
        if let Some(d) = self.dst {
            s += &format!(" dst {d}");
        }
        if let Some(v) = self.vlan {
            s += &format!(" vlan {v}");
        }
        if let Some(v) = self.vni {
            s += &format!(" vni {v}");
        }
        if let Some(p) = self.port {
            s += &format!(" port {p}");
        }
        if self.master {
            s += " master";
        }
        if self.is_self || !self.master {
            s += " self";
        }
        s
    }

    fn message(&self, index: u32) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::from(self.state);
        let mut flags = NeighbourFlags::empty();
        if self.master {
            flags |= NeighbourFlags::Controller;
        }
        if self.is_self || !self.master {
            flags |= NeighbourFlags::Own;
        }
        msg.header.flags = flags;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(self.mac.octets().to_vec()));
        if let Some(d) = self.dst {
            msg.attributes.push(NeighbourAttribute::Destination(d.into()));
        }
        if let Some(v) = self.vlan {
            msg.attributes.push(NeighbourAttribute::Vlan(v));
        }
        if let Some(v) = self.vni {
            msg.attributes.push(NeighbourAttribute::Vni(v));
        }
        if let Some(p) = self.port {
            msg.attributes.push(NeighbourAttribute::Port(p));
        }
        msg
    }
}

/// One FDB entry as listed by [`Handle::fdb_list`] (one per remote for
/// VXLAN entries with several destinations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdbInfo {
    /// Index of the device (bridge port, VXLAN device, …) the entry is on.
    pub index: u32,
    /// The MAC address.
    pub mac: MacAddr,
    /// Remote VTEP (VXLAN entries).
    pub dst: Option<IpAddr>,
    /// VLAN id, if any.
    pub vlan: Option<u16>,
    /// VNI, when the kernel reports one (VXLAN entries whose VNI differs from the device's).
    pub vni: Option<u32>,
    /// Index of the bridge for entries in a bridge's table.
    pub master: Option<u32>,
    /// The entry is in the device's own table (`self`).
    pub is_self: bool,
    /// `NUD_PERMANENT` is set (`permanent`; for bridges, a local address).
    pub permanent: bool,
    /// The entry's `NUD_*` bits as the kernel reports them (`NOARP|PERMANENT` for
    /// `permanent`, `NOARP|REACHABLE` for `static`, `REACHABLE` or `STALE` for a learned one):
    /// [`NeighState::Other`] for a combination, see [`NeighState::bits`].
    pub state: NeighState,
    /// UDP port of the remote (`NDA_PORT`, VXLAN entries whose port differs from the device's).
    pub port: Option<u16>,
    /// `NTF_ROUTER`.
    pub router: bool,
    /// Learned from outside the kernel (`NTF_EXT_LEARNED`, `extern_learn`).
    pub extern_learn: bool,
    /// Offloaded to hardware (`NTF_OFFLOADED`, `offload`).
    pub offloaded: bool,
    /// Never moves to another port (`NTF_STICKY`, `sticky`).
    pub sticky: bool,
}

impl FdbInfo {
    pub(crate) fn from_message(m: NeighbourMessage) -> Option<Self> {
        let mut info = Self {
            index: m.header.ifindex,
            mac: MacAddr::default(),
            dst: None,
            vlan: None,
            vni: None,
            master: None,
            is_self: m.header.flags.contains(NeighbourFlags::Own),
            permanent: u16::from(m.header.state) & NUD_PERMANENT != 0,
            state: NeighState::from_bits(u16::from(m.header.state)),
            port: None,
            router: m.header.flags.contains(NeighbourFlags::Router),
            extern_learn: m.header.flags.contains(NeighbourFlags::ExtLearned),
            offloaded: m.header.flags.contains(NeighbourFlags::Offloaded),
            sticky: m.header.flags.contains(NeighbourFlags::Sticky),
        };
        let mut mac = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::LinkLayerAddress(b) => mac = MacAddr::from_slice(b),
                NeighbourAttribute::Destination(d) => info.dst = neigh_ip(d),
                NeighbourAttribute::Vlan(v) => info.vlan = Some(*v),
                NeighbourAttribute::Vni(v) => info.vni = Some(*v),
                NeighbourAttribute::Port(p) => info.port = Some(*p),
                NeighbourAttribute::Controller(c) => info.master = Some(*c),
                _ => {}
            }
        }
        info.mac = mac?;
        Some(info)
    }
}

impl Handle {
    async fn fdb_send(&self, e: &FdbEntry, op: &'static str, flags: u16) -> Result<(), NeighError> {
        let err = |x| NeighError::netlink(op, e.describe(), e.dev.to_string(), self, x);
        let index = self.dev_index(&e.dev).await.map_err(err)?;
        self.ack(RouteNetlinkMessage::NewNeighbour(e.message(index)), flags)
            .await
            .map_err(err)
    }

    /// Add an FDB entry, like `bridge fdb add`. Fails with `EEXIST` when the
    /// entry exists.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// use netkit_core::neigh::FdbEntry;
    /// let mac = "5e:f8:4f:00:e3:37".parse().unwrap();
    /// h.fdb_add(&FdbEntry::new("flannel.1", mac).dst("192.168.0.11".parse().unwrap()).self_().permanent()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn fdb_add(&self, e: &FdbEntry) -> Result<(), NeighError> {
        self.fdb_send(e, "add", NLM_F_CREATE | NLM_F_EXCL).await
    }

    /// Append a destination to an FDB entry, like `bridge fdb append`: on a
    /// VXLAN device, several remotes for the all-zeros MAC make broadcast and
    /// unknown-unicast frames go to every one of them.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// use netkit_core::{neigh::FdbEntry, MacAddr};
    /// for vtep in ["192.0.2.1", "192.0.2.2"] {
    ///     h.fdb_append(&FdbEntry::new("vx0", MacAddr::default()).dst(vtep.parse().unwrap()).self_().permanent())
    ///         .await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn fdb_append(&self, e: &FdbEntry) -> Result<(), NeighError> {
        self.fdb_send(e, "append", NLM_F_CREATE | NLM_F_APPEND).await
    }

    /// Add or overwrite an FDB entry, like `bridge fdb replace`.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// use netkit_core::neigh::FdbEntry;
    /// let mac = "5e:f8:4f:00:e3:37".parse().unwrap();
    /// h.fdb_replace(&FdbEntry::new("vx0", mac).dst("192.0.2.9".parse().unwrap()).self_().permanent()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn fdb_replace(&self, e: &FdbEntry) -> Result<(), NeighError> {
        self.fdb_send(e, "replace", NLM_F_CREATE | NLM_F_REPLACE).await
    }

    /// Delete an FDB entry, like `bridge fdb del`. On a VXLAN device, an
    /// entry with [`FdbEntry::dst`] removes only that remote; without, the
    /// whole entry. Idempotent: a missing entry (or device) is success.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// use netkit_core::neigh::FdbEntry;
    /// let mac = "02:00:00:00:00:02".parse().unwrap();
    /// h.fdb_del(&FdbEntry::new("veth1", mac).master()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn fdb_del(&self, e: &FdbEntry) -> Result<(), NeighError> {
        self.fdb_remove(e).await.map(drop)
    }

    /// [`Handle::fdb_del`] that tells what happened: `true` when an entry (or one remote of
    /// it) was deleted, `false` when there was none (or no such device).
    ///
    /// The kernel answers success to deleting a VXLAN remote ([`FdbEntry::dst`]) that is not
    /// among its MAC's remotes; for an entry with `dst`, this looks at the device's entries
    /// first (one dump) so that the answer is `false` then too.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// use netkit_core::neigh::FdbEntry;
    /// let mac = "02:00:00:00:00:02".parse().unwrap();
    /// if !h.fdb_remove(&FdbEntry::new("veth1", mac).master()).await? {
    ///     eprintln!("no such fdb entry");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn fdb_remove(&self, e: &FdbEntry) -> Result<bool, NeighError> {
        let err = |x| NeighError::netlink("delete", e.describe(), e.dev.to_string(), self, x);
        let index = match self.dev_index(&e.dev).await {
            Ok(i) => i,
            Err(x) if x.is_not_found() => return Ok(false),
            Err(x) => return Err(err(x)),
        };
        if let Some(dst) = e.dst {
            let present = self
                .fdb_entries()
                .await
                .map_err(err)?
                .iter()
                .any(|f| f.index == index && f.mac == e.mac && f.dst == Some(dst));
            if !present {
                return Ok(false);
            }
        }
        match self.ack(RouteNetlinkMessage::DelNeighbour(e.message(index)), 0).await {
            Ok(()) => Ok(true),
            Err(x) if x.is_not_found() => Ok(false),
            Err(x) => Err(err(x)),
        }
    }

    /// List FDB entries, like `bridge fdb show [dev DEV]`: bridge tables,
    /// VXLAN tables and the unicast/multicast address lists every device
    /// reports as `self permanent` entries.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::neigh::NeighError> {
    /// for e in h.fdb_list(Some("flannel.1")).await? {
    ///     println!("{} dst {:?}", e.mac, e.dst);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn fdb_list(&self, dev: Option<&str>) -> Result<Vec<FdbInfo>, NeighError> {
        let device = dev.unwrap_or("*").to_string();
        let err = |e| NeighError::netlink("list", "fdb entries".into(), device.clone(), self, e);
        let index = match dev {
            Some(d) => Some(self.dev_index(&Dev::Name(d.to_string())).await.map_err(err)?),
            None => None,
        };
        let mut entries = self.fdb_entries().await.map_err(err)?;
        entries.retain(|e| index.is_none_or(|i| e.index == i));
        Ok(entries)
    }

    /// Every FDB entry of the namespace (one `AF_BRIDGE` neighbour dump).
    async fn fdb_entries(&self) -> Result<Vec<FdbInfo>, NetlinkError> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        let msgs = self.dump(RouteNetlinkMessage::GetNeighbour(req)).await?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(m) => FdbInfo::from_message(m),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_bits_round_trip() {
        for s in [
            NeighState::None,
            NeighState::Incomplete,
            NeighState::Reachable,
            NeighState::Stale,
            NeighState::Delay,
            NeighState::Probe,
            NeighState::Failed,
            NeighState::Noarp,
            NeighState::Permanent,
            NeighState::Other(0xc0),
        ] {
            assert_eq!(NeighState::from_bits(s.bits()), s);
        }
        assert!(NeighState::Other(0xc0).is_permanent());
    }

    #[test]
    fn proxy_message_has_no_lladdr() {
        let n = Neighbour::new_proxy("x", "10.0.0.1".parse().unwrap());
        let m = n.message(3);
        assert!(m.header.flags.contains(NeighbourFlags::Proxy));
        assert!(!m
            .attributes
            .iter()
            .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(_))));
    }

    #[test]
    fn fdb_defaults_to_self_static() {
        let e = FdbEntry::new("vx0", MacAddr::default());
        let m = e.message(1);
        assert_eq!(m.header.family, AddressFamily::Bridge);
        assert!(m.header.flags.contains(NeighbourFlags::Own));
        assert_eq!(u16::from(m.header.state), NUD_NOARP | NUD_REACHABLE);
        let m = FdbEntry::new("p", MacAddr::default()).master().permanent().message(1);
        assert!(m.header.flags.contains(NeighbourFlags::Controller));
        assert!(!m.header.flags.contains(NeighbourFlags::Own));
        assert_eq!(u16::from(m.header.state), NUD_NOARP | NUD_PERMANENT);
    }

    #[test]
    fn fdb_listing_reads_port_state_and_flags() {
        let mut m = FdbEntry::new("vx0", MacAddr::default())
            .port(4790)
            .permanent()
            .message(3);
        m.header.flags |= NeighbourFlags::ExtLearned | NeighbourFlags::Sticky;
        let info = FdbInfo::from_message(m).unwrap();
        assert_eq!(info.port, Some(4790));
        assert_eq!(info.state.bits(), NUD_NOARP | NUD_PERMANENT);
        assert!(info.permanent && info.is_self && info.extern_learn && info.sticky);
        assert!(!info.router && !info.offloaded);
    }

    #[test]
    fn raw_dst_is_decoded_by_length() {
        let v4 = NeighbourAddress::Other(vec![192, 0, 2, 1]);
        assert_eq!(neigh_ip(&v4), Some("192.0.2.1".parse().unwrap()));
        let v6 = NeighbourAddress::Other("fd00::1".parse::<Ipv6Addr>().unwrap().octets().to_vec());
        assert_eq!(neigh_ip(&v6), Some("fd00::1".parse().unwrap()));
        assert_eq!(neigh_ip(&NeighbourAddress::Other(vec![1, 2])), None);
    }
}
