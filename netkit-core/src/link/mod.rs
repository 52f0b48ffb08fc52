//! Links (network devices): create by kind, get, list, change, move, delete.
//!
//! Methods live on [`Handle`] and mirror `ip link`:
//!
//! | iproute2 | netkit |
//! |---|---|
//! | `ip link add … type KIND` | [`Handle::link_add`] with a [`LinkSpec`] ([`Veth`], [`Bridge`], [`Vxlan`], [`IpIp`], [`Macvlan`], …) |
//! | `ip link show DEV` | [`Handle::link_get`] / [`Handle::link_get_by_index`] |
//! | `ip link show` | [`Handle::link_list`] |
//! | `ip link set DEV …` | [`Handle::link_set`] (up, down, mtu, address, name, master, netns, addrgenmode) |
//! | `ip link del DEV` | [`Handle::link_del`] (idempotent); [`Handle::link_del_detached`] returns before the kernel frees it |
//! | `ip tuntap add …` | [`Handle::tuntap_add`] |
//!
//! Creating a kind the running kernel lacks (no module) returns
//! [`LinkError::Unsupported`] naming the kind.

mod bridge;
mod bulk;
mod common;
mod detach;
mod dev;
mod ensure;
mod info;
mod kinds;
mod naming;
mod set;
mod tuntap;
mod veth;
mod vxlan;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::link::{InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

pub use bridge::{Bridge, BridgePort};
pub use common::{LinkCommon, WithCommon};
pub(crate) use dev::Dev;
pub use ensure::{EnsureAction, EnsurePolicy, Ensured};
pub use info::{Link, LinkKind};
pub use kinds::{Dummy, Geneve, Ifb, IpIp, Ipvlan, IpvlanMode, Macvlan, MacvlanMode, Vrf, Wireguard};
pub use naming::{hashed_name, hashed_name_with};
pub use set::{AddrGenMode, LinkSet};
pub use tuntap::{tun_offload, tun_set_offload, TunTap, TunTapMode};
pub use veth::Veth;
pub use vxlan::Vxlan;

use crate::{Handle, NetlinkError};

/// Errors from link operations: each names the operation, the link and the netns.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The kernel refused the request; `source` keeps the errno.
    #[error("{op} link {link:?} in netns {netns}: {cause}")]
    Netlink {
        /// Operation, e.g. "add veth", "set mtu of", "delete".
        op: String,
        /// Link name (or `#index`).
        link: String,
        /// Namespace the request went to.
        netns: String,
        /// Kernel answer with errno.
        cause: NetlinkError,
    },
    /// A feature of an existing link the running kernel was built without (bridge VLAN
    /// filtering, say).
    #[error("{feature} is not supported by this kernel ({op} link {link:?} in netns {netns})")]
    FeatureUnsupported {
        /// The feature, e.g. "bridge VLAN filtering".
        feature: &'static str,
        /// Operation, e.g. "add vlan to".
        op: String,
        /// The link.
        link: String,
        /// Namespace of the request.
        netns: String,
    },
    /// The running kernel has no driver for this kind (module missing).
    #[error("link kind {kind:?} is not supported by this kernel (creating {link:?} in netns {netns})")]
    Unsupported {
        /// The kind, as `ip link add … type KIND` spells it.
        kind: String,
        /// The link that was being created.
        link: String,
        /// Namespace of the request.
        netns: String,
    },
    /// `ensure` found a link with the wanted name but different attributes,
    /// and the policy said to report rather than recreate.
    #[error("link {link:?} in netns {netns} differs from the wanted {kind}: {}", differences.join("; "))]
    Mismatch {
        /// Link name.
        link: String,
        /// Wanted kind.
        kind: String,
        /// Namespace.
        netns: String,
        /// One line per differing attribute: "mtu: have 1500, want 1450".
        differences: Vec<String>,
    },
    /// A parameter was rejected before anything was sent to the kernel.
    #[error("invalid {what} for link {link:?}: {reason}")]
    Invalid {
        /// Link name.
        link: String,
        /// Which parameter.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A system call outside netlink failed (tun/tap ioctls).
    #[error("{op} link {link:?} in netns {netns}: {cause}")]
    Io {
        /// Operation.
        op: String,
        /// Link name.
        link: String,
        /// Namespace.
        netns: String,
        /// The failure with its errno.
        cause: std::io::Error,
    },
}

crate::netlink::errno_predicates!(LinkError);

impl LinkError {
    pub(crate) fn netlink(op: impl Into<String>, link: impl Into<String>, h: &Handle, source: NetlinkError) -> Self {
        Self::Netlink {
            op: op.into(),
            link: link.into(),
            netns: h.ns_label(),
            cause: source,
        }
    }

    /// The errno behind this error, when the kernel or a syscall returned one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Netlink { cause: source, .. } => source.errno,
            Self::Io { cause: source, .. } => source.raw_os_error(),
            Self::Unsupported { .. } | Self::FeatureUnsupported { .. } => Some(libc::EOPNOTSUPP),
            _ => None,
        }
    }

    /// True for [`LinkError::Unsupported`] and [`LinkError::FeatureUnsupported`].
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Self::Unsupported { .. } | Self::FeatureUnsupported { .. })
    }
}

/// A description of a link to create, one type per kind.
///
/// Implemented by [`Veth`], [`Bridge`], [`Vxlan`], [`IpIp`], [`Macvlan`],
/// [`Dummy`], [`Ipvlan`], [`Vrf`], [`Geneve`] and [`Wireguard`]; implement it
/// for other kinds by building the RTM_NEWLINK message yourself.
pub trait LinkSpec: Send + Sync {
    /// Name of the link to create.
    fn name(&self) -> &str;
    /// Kind as iproute2 spells it (`"veth"`, `"vxlan"`, …).
    fn kind(&self) -> &'static str;
    /// Build the RTM_NEWLINK request. `parent` resolves a device name in the
    /// handle's namespace to an index when the kind needs one.
    fn message(&self, h: &Handle) -> impl std::future::Future<Output = Result<LinkMessage, LinkError>> + Send;
    /// Compare an existing link with this spec: one line per difference.
    fn differences(&self, existing: &Link) -> Vec<String>;
}

/// The start of every RTM_NEWLINK: name, kind and optional kind data.
pub(crate) fn new_link_message(name: &str, kind: InfoKind, data: Option<InfoData>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    let mut info = vec![LinkInfo::Kind(kind)];
    if let Some(d) = data {
        info.push(LinkInfo::Data(d));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(info));
    msg
}

/// Check a name before sending it: the kernel limit is 15 bytes.
pub(crate) fn check_name(name: &str) -> Result<(), LinkError> {
    crate::ifname::check(name).map_err(|e| LinkError::Invalid {
        link: e.name,
        what: "name",
        reason: e.reason.into(),
    })
}

impl Handle {
    /// Create a link, like `ip link add`. Fails with `EEXIST` (see
    /// [`LinkError::is_exists`]) if the name is taken; see
    /// [`Handle::link_ensure`] for the create-or-compare form.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::link::LinkError> {
    /// use netkit_core::link::Bridge;
    /// let br = h.link_add(&Bridge::new("br0").vlan_filtering(false)).await?;
    /// println!("created {} with index {}", br.name, br.index);
    /// # Ok(()) }
    /// ```
    pub async fn link_add<S: LinkSpec>(&self, spec: &S) -> Result<Link, LinkError> {
        check_name(spec.name())?;
        let msg = spec.message(self).await?;
        let master = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Controller(m) if *m != 0 => Some(*m),
            _ => None,
        });
        // NLM_F_ECHO returns the new link with the ack (one round trip);
        // kernels before 6.3 echo nothing: then read it back by name.
        let echo = self
            .ack_echo(
                RouteNetlinkMessage::NewLink(msg),
                NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
            )
            .await;
        match echo {
            Ok(Some(RouteNetlinkMessage::NewLink(m)))
                if m.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::IfName(n) if n == spec.name())) =>
            {
                let link = Link::from_message(m);
                // The echo is the kernel's notice of the registered device, sent before the
                // device joins its master (same request): then read the link again.
                match master {
                    Some(m) if link.master != Some(m) => self.link_get_by_index(link.index).await,
                    _ => Ok(link),
                }
            }
            Ok(_) => self.link_get(spec.name()).await,
            Err(e) => Err(self.add_error(spec.kind(), spec.name(), e).await),
        }
    }

    /// Map a failed RTM_NEWLINK to a typed error: [`LinkError::Unsupported`]
    /// only when the kernel has no driver for the kind itself. `EOPNOTSUPP`
    /// also answers an unsupported *feature* of a known kind (a bridge with
    /// `vlan_filtering` on a kernel without CONFIG_BRIDGE_VLAN_FILTERING);
    /// that stays a [`LinkError::Netlink`] error so it is not mistaken for a
    /// missing module.
    pub(crate) async fn add_error(&self, kind: &str, name: &str, e: NetlinkError) -> LinkError {
        if e.is_not_supported() && self.kind_is_unknown(kind, &e).await {
            LinkError::Unsupported {
                kind: kind.to_string(),
                link: name.to_string(),
                netns: self.ns_label(),
            }
        } else {
            LinkError::netlink(format!("add {kind}"), name, self, e)
        }
    }

    /// Does the kernel lack a driver for `kind`? The kernel says so with the
    /// extended-ack text "Unknown device type". Without any text (no extack),
    /// ask again with a bare request for that kind under a name the kernel
    /// can never accept: the driver lookup happens before the name is
    /// checked, so `EOPNOTSUPP` means "no such kind" and anything else (the
    /// kind's own validation, or `EINVAL` for the name) means the kind exists.
    /// The probe cannot create anything.
    async fn kind_is_unknown(&self, kind: &str, e: &NetlinkError) -> bool {
        const UNKNOWN: &str = "Unknown device type";
        match &e.message {
            Some(m) => m.contains(UNKNOWN),
            None => {
                let probe = new_link_message("nk/probe", InfoKind::Other(kind.to_string()), None);
                match self
                    .ack(RouteNetlinkMessage::NewLink(probe), NLM_F_CREATE | NLM_F_EXCL)
                    .await
                {
                    Err(p) => p.is_not_supported() && p.message.as_deref().is_none_or(|m| m.contains(UNKNOWN)),
                    // Cannot happen ('/' is never a valid name); be conservative.
                    Ok(()) => false,
                }
            }
        }
    }

    /// Get a link by name, like `ip link show NAME`.
    pub async fn link_get(&self, name: &str) -> Result<Link, LinkError> {
        check_name(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.link_get_msg(msg, name).await
    }

    /// Get a link by index.
    pub async fn link_get_by_index(&self, index: u32) -> Result<Link, LinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.link_get_msg(msg, &format!("#{index}")).await
    }

    async fn link_get_msg(&self, mut msg: LinkMessage, label: &str) -> Result<Link, LinkError> {
        // No statistics, as in link_list.
        msg.attributes.push(LinkAttribute::ExtMask(vec![
            netlink_packet_route::link::LinkExtentMask::SkipStats,
        ]));
        let raw = self
            .get_raw(RouteNetlinkMessage::GetLink(msg))
            .await
            .map_err(|e| LinkError::netlink("get", label, self, e))?;
        Link::from_bytes(raw).ok_or_else(|| {
            LinkError::netlink(
                "get",
                label,
                self,
                NetlinkError::local("a link answer shorter than its header"),
            )
        })
    }

    /// Index of the link called `name`.
    pub async fn link_index(&self, name: &str) -> Result<u32, LinkError> {
        check_name(name)?;
        self.ifindex(name)
            .await
            .map_err(|e| LinkError::netlink("get", name, self, e))
    }

    /// Every link in the namespace, like `ip -d link show`. As `ip link show` without `-s`,
    /// netkit asks the kernel to leave the statistics out (`RTEXT_FILTER_SKIP_STATS`): they are
    /// most of each answer, and [`Link`] has no field for them.
    pub async fn link_list(&self) -> Result<Vec<Link>, LinkError> {
        let mut req = LinkMessage::default();
        req.attributes.push(LinkAttribute::ExtMask(vec![
            netlink_packet_route::link::LinkExtentMask::SkipStats,
        ]));
        let msgs = self
            .dump_raw(RouteNetlinkMessage::GetLink(req))
            .await
            .map_err(|e| LinkError::netlink("list", "*", self, e))?;
        Ok(msgs.into_iter().filter_map(Link::from_bytes).collect())
    }

    /// Delete a link by name, like `ip link del NAME`. Idempotent: a link
    /// that is already gone is success. Deleting one end of a veth pair
    /// deletes both.
    pub async fn link_del(&self, name: &str) -> Result<(), LinkError> {
        check_name(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.ack(RouteNetlinkMessage::DelLink(msg), 0).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(LinkError::netlink("delete", name, self, e)),
        }
    }

    /// Delete a link by index (idempotent).
    pub async fn link_del_by_index(&self, index: u32) -> Result<(), LinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.ack(RouteNetlinkMessage::DelLink(msg), 0).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(LinkError::netlink("delete", format!("#{index}"), self, e)),
        }
    }

    /// Set a link administratively up (`ip link set NAME up`).
    pub async fn link_set_up(&self, name: &str) -> Result<(), LinkError> {
        self.link_set(name).up().apply().await
    }

    /// Set a link administratively down (`ip link set NAME down`).
    pub async fn link_set_down(&self, name: &str) -> Result<(), LinkError> {
        self.link_set(name).down().apply().await
    }

    /// Change a link: chain the changes, then [`LinkSet::apply`] sends them
    /// in one request.
    pub fn link_set<'a>(&'a self, name: &str) -> LinkSet<'a> {
        LinkSet::new(self, Dev::Name(name.to_string()))
    }

    /// Like [`Handle::link_set`], addressing the link by index.
    pub fn link_set_by_index(&self, index: u32) -> LinkSet<'_> {
        LinkSet::new(self, Dev::Index(index))
    }
}

pub(crate) fn up_flags(up: bool) -> (LinkFlags, LinkFlags) {
    (if up { LinkFlags::Up } else { LinkFlags::empty() }, LinkFlags::Up)
}

#[cfg(test)]
mod error_tests {
    use super::*;

    /// An error prints its cause on its one line and does not hand it out again as `source()`
    /// (a reporter that walks the chain would print it twice).
    #[test]
    fn the_cause_is_printed_once() {
        let e = LinkError::Netlink {
            op: "add".into(),
            link: "veth0".into(),
            netns: "\"ns1\"".into(),
            cause: NetlinkError::from_errno(libc::EEXIST),
        };
        assert!(e.to_string().contains("EEXIST"), "{e}");
        assert!(std::error::Error::source(&e).is_none());
        let io = crate::NetnsError::io("open", "x", std::io::Error::from_raw_os_error(libc::ENOENT));
        assert!(io.to_string().contains("No such file"), "{io}");
        assert!(std::error::Error::source(&io).is_none());
    }
}
