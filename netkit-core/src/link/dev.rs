//! A device named by name or by index, as every request that targets a link
//! accepts it, and its resolution to an index.

use std::fmt;

use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use crate::{Handle, NetlinkError};

/// A device given by name (resolved in the handle's namespace when the
/// request is sent) or by index (no lookup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dev {
    Name(String),
    Index(u32),
}

impl fmt::Display for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Index(i) => write!(f, "#{i}"),
        }
    }
}

impl Handle {
    /// Index of the device called `name` (one RTM_GETLINK). The kernel's own
    /// error is kept, so a missing device stays `ENODEV` in the caller's error.
    pub(crate) async fn ifindex(&self, name: &str) -> Result<u32, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.get(RouteNetlinkMessage::GetLink(msg)).await? {
            RouteNetlinkMessage::NewLink(m) => Ok(m.header.index),
            other => Err(NetlinkError::local(format!("unexpected answer {other:?}"))),
        }
    }

    /// Index of `dev`: no request when it is already an index.
    pub(crate) async fn dev_index(&self, dev: &Dev) -> Result<u32, NetlinkError> {
        match dev {
            Dev::Index(i) => Ok(*i),
            Dev::Name(n) => self.ifindex(n).await,
        }
    }
}
