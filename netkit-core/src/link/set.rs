//! `ip link set`: change several properties of a link in one request.

use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use std::os::fd::AsRawFd;

use super::Dev;
use super::{check_name, up_flags, LinkError};
use crate::{Handle, MacAddr, NetNs};

/// Pending changes to one link, sent together by [`LinkSet::apply`].
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::link::LinkError> {
/// h.link_set("veth0").mtu(1450).master("br0").up().apply().await?;
/// # Ok(()) }
/// ```
#[must_use = "nothing changes until apply() is awaited"]
pub struct LinkSet<'a> {
    h: &'a Handle,
    target: Dev,
    up: Option<bool>,
    promisc: Option<bool>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    alias: Option<String>,
    rename: Option<String>,
    master: Option<MasterChange>,
    netns: Option<NetNs>,
    addr_gen_mode: Option<AddrGenMode>,
    group: Option<u32>,
}

/// How the kernel makes a link's IPv6 link-local address (`ip link set DEV addrgenmode …`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrGenMode {
    /// From the MAC address (the kernel's default).
    Eui64,
    /// No link-local address at all: the link sends no IPv6 duplicate address detection,
    /// MLD report or router solicitation of its own (IPv6 still works for addresses added).
    None,
    /// RFC 7217 stable privacy address (needs a stable secret).
    StablePrivacy,
    /// A random interface identifier.
    Random,
}

enum MasterChange {
    Name(String),
    Index(u32),
    None,
}

impl<'a> LinkSet<'a> {
    pub(crate) fn new(h: &'a Handle, target: Dev) -> Self {
        Self {
            h,
            target,
            up: None,
            promisc: None,
            mtu: None,
            mac: None,
            alias: None,
            rename: None,
            master: None,
            netns: None,
            addr_gen_mode: None,
            group: None,
        }
    }

    /// How IPv6 link-local addresses are made (`ip link set DEV addrgenmode none`). It goes in
    /// a request of its own, before the others (the kernel would bring the link up first and
    /// give it an address by the old mode). On a host or link without IPv6 it is skipped.
    pub fn addr_gen_mode(mut self, mode: AddrGenMode) -> Self {
        self.addr_gen_mode = Some(mode);
        self
    }

    /// Administratively up.
    pub fn up(mut self) -> Self {
        self.up = Some(true);
        self
    }
    /// Administratively down.
    pub fn down(mut self) -> Self {
        self.up = Some(false);
        self
    }
    /// Promiscuous mode on or off (`ip link set DEV promisc on|off`).
    pub fn promisc(mut self, on: bool) -> Self {
        self.promisc = Some(on);
        self
    }
    /// Set the MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// Set the hardware address.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
    /// Set the alias (`alias TEXT`, IFLA_IFALIAS: free text up to 255 bytes, shown by `ip link`;
    /// the kernel ignores it when a link is created, so it is set afterwards). An empty text
    /// removes it. Useful to tag a link with who made it (see [`crate::Link::alias`]).
    pub fn alias(mut self, alias: &str) -> Self {
        self.alias = Some(alias.to_string());
        self
    }
    /// Rename (the link must be down for most kinds).
    pub fn name(mut self, new_name: &str) -> Self {
        self.rename = Some(new_name.to_string());
        self
    }
    /// Enslave to a bridge (or other master) by name, like `ip link set … master BR`.
    pub fn master(mut self, master: &str) -> Self {
        self.master = Some(MasterChange::Name(master.to_string()));
        self
    }
    /// Enslave to a master by index.
    pub fn master_index(mut self, index: u32) -> Self {
        self.master = Some(MasterChange::Index(index));
        self
    }
    /// Release from its master (`nomaster`).
    pub fn nomaster(mut self) -> Self {
        self.master = Some(MasterChange::None);
        self
    }
    /// Move to another namespace (`netns`). Prefer creating links directly in
    /// their namespace (see [`crate::link::Veth::peer_netns`]): a move costs an
    /// RCU barrier under the rtnl lock.
    pub fn netns(mut self, ns: &NetNs) -> Self {
        self.netns = Some(ns.clone());
        self
    }

    /// Put the link in group `group` (`ip link set DEV group N`; 0 is the default group). A
    /// whole group can be deleted in one request: [`Handle::link_del_group`].
    pub fn group(mut self, group: u32) -> Self {
        self.group = Some(group);
        self
    }

    fn label(&self) -> String {
        match &self.target {
            Dev::Name(n) => n.clone(),
            Dev::Index(i) => format!("#{i}"),
        }
    }

    fn op(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = self.up {
            parts.push(if u { "up" } else { "down" }.to_string());
        }
        if let Some(p) = self.promisc {
            parts.push(format!("promisc {}", if p { "on" } else { "off" }));
        }
        if let Some(m) = self.mtu {
            parts.push(format!("mtu {m}"));
        }
        if let Some(m) = self.mac {
            parts.push(format!("address {m}"));
        }
        if let Some(a) = &self.alias {
            parts.push(format!("alias {a:?}"));
        }
        if let Some(n) = &self.rename {
            parts.push(format!("name {n}"));
        }
        match &self.master {
            Some(MasterChange::Name(n)) => parts.push(format!("master {n}")),
            Some(MasterChange::Index(i)) => parts.push(format!("master #{i}")),
            Some(MasterChange::None) => parts.push("nomaster".into()),
            None => {}
        }
        if let Some(ns) = &self.netns {
            parts.push(format!("netns {ns}"));
        }
        if let Some(mode) = self.addr_gen_mode {
            parts.push(format!("addrgenmode {mode:?}").to_lowercase());
        }
        if let Some(g) = self.group {
            parts.push(format!("group {g}"));
        }
        format!("set {}", parts.join(" "))
    }

    /// A request that names the target link and changes nothing yet.
    fn target_message(&self) -> Result<LinkMessage, LinkError> {
        let mut msg = LinkMessage::default();
        match &self.target {
            Dev::Name(n) => {
                check_name(n)?;
                msg.attributes.push(LinkAttribute::IfName(n.clone()))
            }
            Dev::Index(i) => msg.header.index = *i,
        }
        Ok(msg)
    }

    /// Send every change in one RTM_SETLINK (two when `addr_gen_mode` comes with `up`: the
    /// kernel brings the link up before it applies the mode, so the mode goes first).
    pub async fn apply(self) -> Result<(), LinkError> {
        if let Some(mode) = self.addr_gen_mode {
            use netlink_packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode};
            let mode = match mode {
                AddrGenMode::Eui64 => In6AddrGenMode::Eui64,
                AddrGenMode::None => In6AddrGenMode::None,
                AddrGenMode::StablePrivacy => In6AddrGenMode::StablePrivacy,
                AddrGenMode::Random => In6AddrGenMode::Random,
            };
            let mut msg = self.target_message()?;
            msg.attributes
                .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![
                    AfSpecInet6::AddrGenMode(mode),
                ])]));
            match self.h.ack(RouteNetlinkMessage::NewLink(msg), 0).await {
                Ok(()) => {}
                // No IPv6 on this host (booted with ipv6.disable=1) or on this link (MTU below
                // 1280): no link-local address to make or to leave out.
                Err(e) if matches!(e.errno, Some(libc::EAFNOSUPPORT) | Some(libc::EOPNOTSUPP)) => {}
                Err(e) => return Err(LinkError::netlink("set addrgenmode of", self.label(), self.h, e)),
            }
        }
        let mut msg = self.target_message()?;
        if let Some(up) = self.up {
            (msg.header.flags, msg.header.change_mask) = up_flags(up);
        }
        if let Some(on) = self.promisc {
            msg.header.change_mask |= LinkFlags::Promisc;
            if on {
                msg.header.flags |= LinkFlags::Promisc;
            }
        }
        if let Some(m) = self.mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(g) = self.group {
            msg.attributes.push(LinkAttribute::Group(g));
        }
        if let Some(m) = self.mac {
            msg.attributes.push(LinkAttribute::Address(m.0.to_vec()));
        }
        if let Some(a) = &self.alias {
            if a.len() > 255 || a.contains('\0') {
                return Err(LinkError::Invalid {
                    link: self.label(),
                    what: "alias",
                    reason: "at most 255 bytes, without NUL".into(),
                });
            }
            msg.attributes.push(LinkAttribute::IfAlias(a.clone()));
        }
        if let Some(n) = &self.rename {
            check_name(n)?;
            // Renaming by name needs the index: the name attribute is the new name.
            if let Dev::Name(old) = &self.target {
                msg.header.index = self.h.link_index(old).await?;
                msg.attributes.retain(|a| !matches!(a, LinkAttribute::IfName(_)));
            }
            msg.attributes.push(LinkAttribute::IfName(n.clone()));
        }
        match &self.master {
            Some(MasterChange::Name(n)) => {
                let idx = self.h.link_index(n).await?;
                msg.attributes.push(LinkAttribute::Controller(idx));
            }
            Some(MasterChange::Index(i)) => msg.attributes.push(LinkAttribute::Controller(*i)),
            Some(MasterChange::None) => msg.attributes.push(LinkAttribute::Controller(0)),
            None => {}
        }
        if let Some(ns) = &self.netns {
            msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        // RTM_NEWLINK without NLM_F_CREATE changes an existing link and, unlike
        // RTM_SETLINK, accepts IFLA_IFNAME as the key.
        let res = self.h.ack(RouteNetlinkMessage::NewLink(msg), 0).await;
        res.map_err(|e| LinkError::netlink(self.op(), self.label(), self.h, e))
    }
}
