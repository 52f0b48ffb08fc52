//! IP addresses on links: add, replace, list, delete.
//!
//! Methods live on [`Handle`] and mirror `ip address`:
//!
//! | iproute2 | netkit |
//! |---|---|
//! | `ip addr add PREFIX dev DEV [brd +] [nodad] [proto N] …` | [`Handle::addr_add`] / [`Handle::addr_add_index`], then `.await` the [`AddrRequest`] |
//! | `ip addr replace PREFIX dev DEV …` | [`Handle::addr_replace`] (or [`AddrRequest::replace`]) |
//! | `ip addr del PREFIX dev DEV` | [`Handle::addr_del`] (idempotent) |
//! | `ip addr show [dev DEV]` | [`Handle::addr_list`] |
//! | `ip addr flush dev DEV` | [`Handle::addr_flush`] |
//!
//! IPv4 addresses get a broadcast address computed like `brd +` unless told
//! otherwise. IPv6 addresses go through duplicate address detection unless
//! [`AddrRequest::nodad`] is set: container setup usually wants `nodad`, so an
//! address is usable (not `tentative`) as soon as the call returns.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::link::Dev;
use crate::{Handle, NetlinkError};

/// `IFA_F_SECONDARY`: a secondary IPv4 address (another one in the same subnet came first).
pub const IFA_F_SECONDARY: u32 = 0x01;
/// `IFA_F_NODAD`: no duplicate address detection (IPv6).
pub const IFA_F_NODAD: u32 = 0x02;
/// `IFA_F_OPTIMISTIC`: optimistic DAD (IPv6).
pub const IFA_F_OPTIMISTIC: u32 = 0x04;
/// `IFA_F_DADFAILED`: duplicate address detection failed (IPv6).
pub const IFA_F_DADFAILED: u32 = 0x08;
/// `IFA_F_DEPRECATED`: preferred lifetime expired.
pub const IFA_F_DEPRECATED: u32 = 0x20;
/// `IFA_F_TENTATIVE`: duplicate address detection still running (IPv6).
pub const IFA_F_TENTATIVE: u32 = 0x40;
/// `IFA_F_PERMANENT`: configured, not autoconfigured, no lifetime.
pub const IFA_F_PERMANENT: u32 = 0x80;
/// `IFA_F_NOPREFIXROUTE`: the kernel adds no prefix route for this address.
pub const IFA_F_NOPREFIXROUTE: u32 = 0x200;

/// Errors from address operations: each names the operation, the address, the
/// device and the netns, and keeps the kernel's errno.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// The kernel refused the request (or the device could not be resolved);
    /// `source` keeps the errno.
    #[error("{op} address {addr} on {dev:?} in netns {netns}: {cause}")]
    Netlink {
        /// Operation: "add", "replace", "delete", "list".
        op: String,
        /// The address with its prefix length (`*` for listings).
        addr: String,
        /// Device name (or `#index`, `*` for all devices).
        dev: String,
        /// Namespace the request went to.
        netns: String,
        /// Kernel answer with errno.
        cause: NetlinkError,
    },
    /// A parameter was rejected before anything was sent to the kernel.
    #[error("invalid {what} for address {addr} on {dev:?}: {reason}")]
    Invalid {
        /// The address with its prefix length.
        addr: String,
        /// Device name (or `#index`).
        dev: String,
        /// Which parameter.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

crate::netlink::errno_predicates!(AddrError);

impl AddrError {
    /// The errno behind this error, when the kernel returned one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Netlink { cause: source, .. } => source.errno,
            Self::Invalid { .. } => Some(libc::EINVAL),
        }
    }
}

/// Scope of an address or route (`scope global|site|link|host|nowhere`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// `global` (`RT_SCOPE_UNIVERSE`, 0).
    #[default]
    Universe,
    /// `site` (200), IPv6 site-local.
    Site,
    /// `link` (253): valid only on the attached link.
    Link,
    /// `host` (254): valid only inside this host (loopback, local routes).
    Host,
    /// `nowhere` (255): the destination does not exist.
    Nowhere,
    /// Any other numeric scope.
    Other(u8),
}

impl From<u8> for Scope {
    fn from(v: u8) -> Self {
        match v {
            0 => Self::Universe,
            200 => Self::Site,
            253 => Self::Link,
            254 => Self::Host,
            255 => Self::Nowhere,
            n => Self::Other(n),
        }
    }
}

impl From<Scope> for u8 {
    fn from(s: Scope) -> u8 {
        match s {
            Scope::Universe => 0,
            Scope::Site => 200,
            Scope::Link => 253,
            Scope::Host => 254,
            Scope::Nowhere => 255,
            Scope::Other(n) => n,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Universe => f.write_str("global"),
            Self::Site => f.write_str("site"),
            Self::Link => f.write_str("link"),
            Self::Host => f.write_str("host"),
            Self::Nowhere => f.write_str("nowhere"),
            Self::Other(n) => write!(f, "{n}"),
        }
    }
}

/// One address as the kernel reports it (`ip address show`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Index of the device carrying the address.
    pub index: u32,
    /// The local address and its prefix length (`inet 10.0.0.1/24`).
    pub prefix: IpNetwork,
    /// Scope of the address.
    pub scope: Scope,
    /// `IFA_F_*` flags (see the `IFA_F_*` constants of this module).
    pub flags: u32,
    /// IPv4 label (`eth0:1`); `None` for IPv6.
    pub label: Option<String>,
    /// Configured statically, with no lifetime (`IFA_F_PERMANENT`).
    pub permanent: bool,
    /// IPv6 duplicate address detection has not finished (`IFA_F_TENTATIVE`):
    /// the address cannot be used as a source yet.
    pub tentative: bool,
    /// The peer of a point-to-point address (`inet A peer B/len`), when the
    /// kernel's `IFA_ADDRESS` differs from `IFA_LOCAL`.
    pub peer: Option<IpAddr>,
    /// IPv4 broadcast address (`brd`), if one is set.
    pub broadcast: Option<Ipv4Addr>,
    /// Who added it (`IFA_PROTO`, `proto N`: 0 when nobody said, 1–3 the kernel's own);
    /// lets a program find the addresses it added, of either family.
    pub protocol: u8,
}

impl Address {
    /// Parse an RTM_NEWADDR message. Like iproute2, the address is
    /// `IFA_LOCAL` when present (IPv4, point-to-point) and `IFA_ADDRESS`
    /// otherwise; `IFA_ADDRESS` differing from `IFA_LOCAL` is the peer.
    pub(crate) fn from_message(msg: AddressMessage) -> Option<Self> {
        let mut local = None;
        let mut address = None;
        let mut label = None;
        let mut broadcast = None;
        let mut protocol = 0;
        let mut flags = u32::from(msg.header.flags.bits());
        for attr in msg.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(ip),
                AddressAttribute::Address(ip) => address = Some(ip),
                AddressAttribute::Label(l) => label = Some(l),
                AddressAttribute::Broadcast(b) => broadcast = Some(b),
                AddressAttribute::Flags(f) => flags = f.bits(),
                AddressAttribute::Protocol(p) => protocol = u8::from(p),
                _ => {}
            }
        }
        let ip = local.or(address)?;
        let peer = match (local, address) {
            (Some(l), Some(a)) if l != a => Some(a),
            _ => None,
        };
        let prefix = IpNetwork::new(ip, msg.header.prefix_len).ok()?;
        Some(Self {
            index: msg.header.index,
            prefix,
            scope: Scope::from(u8::from(msg.header.scope)),
            flags,
            label,
            permanent: flags & IFA_F_PERMANENT != 0,
            tentative: flags & IFA_F_TENTATIVE != 0,
            peer,
            broadcast,
            protocol,
        })
    }

    /// The address without its prefix length.
    pub fn ip(&self) -> IpAddr {
        self.prefix.ip()
    }
}

/// How the IPv4 broadcast address is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broadcast {
    /// Like `brd +`: the last address of the subnet (prefixes up to /30).
    Auto,
    /// No broadcast address.
    None,
    /// This address.
    Explicit(Ipv4Addr),
}

/// A pending `ip address add` (or `replace`), sent when awaited.
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::addr::AddrError> {
/// let v4: ipnetwork::IpNetwork = "10.0.0.2/24".parse().unwrap();
/// h.addr_add("eth0", v4).await?;
/// let v6: ipnetwork::IpNetwork = "fd00::2/64".parse().unwrap();
/// h.addr_add("eth0", v6).nodad().await?;
/// # Ok(()) }
/// ```
#[must_use = "nothing is sent until the request is awaited"]
pub struct AddrRequest<'a> {
    h: &'a Handle,
    dev: Dev,
    prefix: IpNetwork,
    flags: u32,
    replace: bool,
    label: Option<String>,
    broadcast: Broadcast,
    scope: Option<Scope>,
    metric: Option<u32>,
    protocol: Option<u8>,
}

impl<'a> AddrRequest<'a> {
    fn new(h: &'a Handle, dev: Dev, prefix: IpNetwork) -> Self {
        Self {
            h,
            dev,
            prefix,
            flags: 0,
            replace: false,
            label: None,
            broadcast: Broadcast::Auto,
            scope: None,
            metric: None,
            protocol: None,
        }
    }

    /// Skip IPv6 duplicate address detection (`nodad`): the address is usable
    /// immediately instead of `tentative` for a second or more. No effect on IPv4.
    pub fn nodad(mut self) -> Self {
        self.flags |= IFA_F_NODAD;
        self
    }

    /// Replace the address if it exists (`ip addr replace`: `NLM_F_REPLACE`)
    /// instead of failing with `EEXIST`. The kernel updates the existing
    /// address's flags (IPv6), prefix route metric and lifetimes; it keeps
    /// an IPv4 address's label, broadcast and scope.
    pub fn replace(mut self) -> Self {
        self.replace = true;
        self
    }

    /// IPv4 label (`label eth0:1`); by convention it starts with the device
    /// name. Ignored for IPv6.
    pub fn label(mut self, label: &str) -> Self {
        self.label = Some(label.to_string());
        self
    }

    /// Do not add the prefix route for this address (`noprefixroute`).
    pub fn noprefixroute(mut self) -> Self {
        self.flags |= IFA_F_NOPREFIXROUTE;
        self
    }

    /// Compute the IPv4 broadcast address from the prefix, like `brd +`
    /// (this is the default; prefixes /31 and /32 get none).
    pub fn broadcast_auto(mut self) -> Self {
        self.broadcast = Broadcast::Auto;
        self
    }

    /// Use this IPv4 broadcast address (`brd ADDR`).
    pub fn broadcast(mut self, brd: Ipv4Addr) -> Self {
        self.broadcast = Broadcast::Explicit(brd);
        self
    }

    /// Set no IPv4 broadcast address.
    pub fn no_broadcast(mut self) -> Self {
        self.broadcast = Broadcast::None;
        self
    }

    /// Scope of the address (`scope link`, …). Defaults to `host` for
    /// loopback addresses and `global` otherwise. The kernel chooses IPv6
    /// scopes from the address itself.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Record who added the address (`proto N`, `IFA_PROTO`; Linux 5.18 or later): listed
    /// back in [`Address::protocol`], for either family (IPv6 addresses have no label).
    pub fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Metric of the prefix route the kernel adds for this address (`metric N`).
    pub fn metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    fn op(&self) -> &'static str {
        if self.replace {
            "replace"
        } else {
            "add"
        }
    }

    fn error(&self, source: NetlinkError) -> AddrError {
        AddrError::Netlink {
            op: self.op().to_string(),
            addr: self.prefix.to_string(),
            dev: self.dev.to_string(),
            netns: self.h.ns_label(),
            cause: source,
        }
    }

    pub(crate) fn message(&self, index: u32) -> AddressMessage {
        let ip = self.prefix.ip();
        let mut msg = AddressMessage::default();
        msg.header.family = family_of(ip);
        msg.header.prefix_len = self.prefix.prefix();
        msg.header.index = index;
        msg.header.flags = AddressHeaderFlags::from_bits_retain((self.flags & 0xff) as u8);
        let scope = self
            .scope
            .unwrap_or(if ip.is_loopback() { Scope::Host } else { Scope::Universe });
        msg.header.scope = AddressScope::from(u8::from(scope));
        msg.attributes.push(AddressAttribute::Local(ip));
        msg.attributes.push(AddressAttribute::Address(ip));
        if let IpNetwork::V4(net) = self.prefix {
            let brd = match self.broadcast {
                Broadcast::Auto if net.prefix() <= 30 => Some(net.broadcast()),
                Broadcast::Auto | Broadcast::None => None,
                Broadcast::Explicit(b) => Some(b),
            };
            if let Some(b) = brd {
                msg.attributes.push(AddressAttribute::Broadcast(b));
            }
            if let Some(l) = &self.label {
                msg.attributes.push(AddressAttribute::Label(l.clone()));
            }
        }
        if self.flags != 0 {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(self.flags)));
        }
        if let Some(m) = self.metric {
            msg.attributes.push(AddressAttribute::RoutePriority(m));
        }
        if let Some(p) = self.protocol {
            msg.attributes.push(AddressAttribute::Protocol(p.into()));
        }
        msg
    }

    /// Send the request. Awaiting the request does the same.
    pub async fn send(self) -> Result<(), AddrError> {
        if let Some(l) = &self.label {
            if l.is_empty() || l.len() > 15 {
                return Err(AddrError::Invalid {
                    addr: self.prefix.to_string(),
                    dev: self.dev.to_string(),
                    what: "label",
                    reason: "must be 1-15 bytes".into(),
                });
            }
        }
        let index = self.h.dev_index(&self.dev).await.map_err(|e| self.error(e))?;
        let flags = NLM_F_CREATE | if self.replace { NLM_F_REPLACE } else { NLM_F_EXCL };
        self.h
            .ack(RouteNetlinkMessage::NewAddress(self.message(index)), flags)
            .await
            .map_err(|e| self.error(e))
    }
}

impl<'a> IntoFuture for AddrRequest<'a> {
    type Output = Result<(), AddrError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<(), AddrError>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

impl Handle {
    /// Add an address to a device, like `ip addr add PREFIX dev DEV brd +`.
    /// Chain options on the returned [`AddrRequest`], then `.await` it. Fails
    /// with `EEXIST` ([`AddrError::is_exists`]) if the device has it already.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::addr::AddrError> {
    /// let net: ipnetwork::IpNetwork = "fd00:1::1/64".parse().unwrap();
    /// h.addr_add("eth0", net).nodad().noprefixroute().await?;
    /// # Ok(()) }
    /// ```
    pub fn addr_add(&self, dev: &str, prefix: IpNetwork) -> AddrRequest<'_> {
        AddrRequest::new(self, Dev::Name(dev.to_string()), prefix)
    }

    /// Like [`Handle::addr_add`], addressing the device by index.
    pub fn addr_add_index(&self, index: u32, prefix: IpNetwork) -> AddrRequest<'_> {
        AddrRequest::new(self, Dev::Index(index), prefix)
    }

    /// Add or update an address, like `ip addr replace PREFIX dev DEV`.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::addr::AddrError> {
    /// let net: ipnetwork::IpNetwork = "10.0.0.2/24".parse().unwrap();
    /// h.addr_replace("eth0", net).label("eth0:web").await?;
    /// # Ok(()) }
    /// ```
    pub fn addr_replace(&self, dev: &str, prefix: IpNetwork) -> AddrRequest<'_> {
        self.addr_add(dev, prefix).replace()
    }

    /// Remove an address from a device, like `ip addr del PREFIX dev DEV`.
    /// Idempotent: an address (or a device) that is already gone is success.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::addr::AddrError> {
    /// h.addr_del("eth0", "10.0.0.2/24".parse().unwrap()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn addr_del(&self, dev: &str, prefix: IpNetwork) -> Result<(), AddrError> {
        let err = |source| AddrError::Netlink {
            op: "delete".into(),
            addr: prefix.to_string(),
            dev: dev.to_string(),
            netns: self.ns_label(),
            cause: source,
        };
        let index = match self.ifindex(dev).await {
            Ok(i) => i,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(err(e)),
        };
        self.addr_del_inner(index, prefix).await.map_err(err)
    }

    /// Like [`Handle::addr_del`], addressing the device by index (idempotent).
    pub async fn addr_del_index(&self, index: u32, prefix: IpNetwork) -> Result<(), AddrError> {
        self.addr_del_inner(index, prefix)
            .await
            .map_err(|source| AddrError::Netlink {
                op: "delete".into(),
                addr: prefix.to_string(),
                dev: format!("#{index}"),
                netns: self.ns_label(),
                cause: source,
            })
    }

    async fn addr_del_inner(&self, index: u32, prefix: IpNetwork) -> Result<(), NetlinkError> {
        let ip = prefix.ip();
        let mut msg = AddressMessage::default();
        msg.header.family = family_of(ip);
        msg.header.prefix_len = prefix.prefix();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(ip));
        msg.attributes.push(AddressAttribute::Address(ip));
        match self.ack(RouteNetlinkMessage::DelAddress(msg), 0).await {
            Err(e)
                if matches!(
                    e.errno,
                    Some(libc::EADDRNOTAVAIL) | Some(libc::ENODEV) | Some(libc::ENOENT)
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// List addresses, like `ip address show [dev DEV]`: every address of the
    /// namespace (IPv4 and IPv6) when `dev` is `None`. A `dev` that does not
    /// exist is an error ([`AddrError::is_not_found`]).
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::addr::AddrError> {
    /// for a in h.addr_list(Some("eth0")).await? {
    ///     println!("{} scope {}{}", a.prefix, a.scope, if a.tentative { " tentative" } else { "" });
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn addr_list(&self, dev: Option<&str>) -> Result<Vec<Address>, AddrError> {
        let err = |source| AddrError::Netlink {
            op: "list".into(),
            addr: "*".into(),
            dev: dev.unwrap_or("*").to_string(),
            netns: self.ns_label(),
            cause: source,
        };
        let index = match dev {
            Some(d) => Some(self.ifindex(d).await.map_err(err)?),
            None => None,
        };
        self.addr_dump(index).await.map_err(err)
    }

    /// The addresses of the link with index `index`, IPv4 and IPv6, as [`Handle::addr_list`]
    /// gives them: the kernel sends only that link's (one small dump however many addresses the
    /// namespace holds).
    pub async fn addr_list_index(&self, index: u32) -> Result<Vec<Address>, AddrError> {
        self.addr_dump(Some(index)).await.map_err(|source| AddrError::Netlink {
            op: "list".into(),
            addr: "*".into(),
            dev: format!("#{index}"),
            netns: self.ns_label(),
            cause: source,
        })
    }

    async fn addr_dump(&self, index: Option<u32>) -> Result<Vec<Address>, crate::NetlinkError> {
        let mut req = AddressMessage::default();
        // The kernel filters on it (strict dumps); the filter below stays for kernels without
        // strict checking.
        req.header.index = index.unwrap_or(0);
        let msgs = self.dump(RouteNetlinkMessage::GetAddress(req)).await?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(m) => Address::from_message(m),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .collect())
    }

    /// Remove every address of a device, IPv4 and IPv6 (link-local included), like
    /// `ip addr flush dev DEV`; the number of addresses removed. An address the kernel removed
    /// on its own in between (the secondaries of a deleted primary IPv4 address) is not an
    /// error. A `dev` that does not exist is one ([`AddrError::is_not_found`]).
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::addr::AddrError> {
    /// let removed = h.addr_flush("eth0").await?;
    /// # drop(removed); Ok(()) }
    /// ```
    pub async fn addr_flush(&self, dev: &str) -> Result<usize, AddrError> {
        let addrs = self.addr_list(Some(dev)).await.map_err(|e| match e {
            AddrError::Netlink { cause, .. } => AddrError::Netlink {
                op: "flush".into(),
                addr: "*".into(),
                dev: dev.to_string(),
                netns: self.ns_label(),
                cause,
            },
            other => other,
        })?;
        for a in &addrs {
            self.addr_del_inner(a.index, a.prefix)
                .await
                .map_err(|source| AddrError::Netlink {
                    op: "flush".into(),
                    addr: a.prefix.to_string(),
                    dev: dev.to_string(),
                    netns: self.ns_label(),
                    cause: source,
                })?;
        }
        Ok(addrs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_round_trips() {
        for v in [0u8, 200, 253, 254, 255, 17] {
            assert_eq!(u8::from(Scope::from(v)), v);
        }
        assert_eq!(Scope::from(253), Scope::Link);
    }

    #[test]
    fn parse_prefers_local_and_reports_peer() {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = 32;
        msg.header.index = 7;
        msg.attributes
            .push(AddressAttribute::Address("10.0.0.2".parse().unwrap()));
        msg.attributes
            .push(AddressAttribute::Local("10.0.0.1".parse().unwrap()));
        msg.attributes.push(AddressAttribute::Flags(AddressFlags::Permanent));
        let a = Address::from_message(msg).unwrap();
        assert_eq!(a.prefix, "10.0.0.1/32".parse::<IpNetwork>().unwrap());
        assert_eq!(a.peer, Some("10.0.0.2".parse().unwrap()));
        assert!(a.permanent && !a.tentative);
        assert_eq!(a.index, 7);
    }
}
