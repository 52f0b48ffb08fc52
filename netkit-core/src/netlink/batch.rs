//! Several requests in one system call: [`Handle::batch`].
//!
//! The requests go to the kernel in one `sendmsg`; it handles them in order, each on its own
//! (a failure does not stop the ones after it, and nothing is rolled back), and netkit reads
//! every answer after. For work that is a chain of small independent steps — a container's
//! `lo` up, `eth0` up, its address and its default route — this costs one system call and one
//! wait instead of four. Objects are named by index (a name lookup would be a request of its
//! own; [`Batch::link_up_name`] needs none).
//!
//! ```no_run
//! # async fn f(ctr: &netkit_core::Handle, eth0: u32) -> Result<(), Box<dyn std::error::Error>> {
//! use netkit_core::route::Route;
//! let mut b = ctr.batch();
//! b.link_up(1) // lo is interface 1 in every namespace
//!     .link_up(eth0)
//!     .addr_add(eth0, "10.200.0.2/30".parse()?);
//! b.route_add(&Route::default_v4().gateway("10.200.0.1".parse()?).dev_index(eth0)).await?;
//! b.send().await?; // one sendmsg, four answers
//! # Ok(()) }
//! ```

use std::fmt;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::transport::Request;
use super::{Handle, NetlinkError};
use crate::route::Route;

/// Requests collected to be sent together, made by [`Handle::batch`]: one `sendmsg` for all, the
/// kernel handles them in order, each on its own (a failure does not stop the ones after it).
#[must_use = "nothing is sent until send() is awaited"]
pub struct Batch<'a> {
    h: &'a Handle,
    ops: Vec<(String, Request)>,
}

/// The requests of a batch the kernel refused, each with what it was and the kernel's answer.
/// The others were done.
#[derive(Debug, thiserror::Error)]
pub struct BatchError {
    /// The namespace.
    pub netns: String,
    /// `(request, error)` for each refused request, in the order they were added.
    pub failures: Vec<(String, NetlinkError)>,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch in netns {}: ", self.netns)?;
        for (i, (op, e)) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{op}: {e}")?;
        }
        Ok(())
    }
}

impl BatchError {
    /// The errno of the first refused request.
    pub fn errno(&self) -> Option<i32> {
        self.failures.first().and_then(|(_, e)| e.errno)
    }
}

impl<'a> Batch<'a> {
    pub(super) fn new(h: &'a Handle) -> Self {
        Self { h, ops: Vec::new() }
    }

    fn push(&mut self, what: String, payload: RouteNetlinkMessage, flags: u16) -> &mut Self {
        self.ops.push((what, Request::new(payload, flags)));
        self
    }

    fn set_up(&mut self, what: String, mut msg: LinkMessage, up: bool) -> &mut Self {
        (msg.header.flags, msg.header.change_mask) = crate::link::up_flags(up);
        self.push(what, RouteNetlinkMessage::NewLink(msg), 0)
    }

    /// Bring link `index` up (`ip link set DEV up`).
    pub fn link_up(&mut self, index: u32) -> &mut Self {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.set_up(format!("link set #{index} up"), msg, true)
    }

    /// Bring link `index` down.
    pub fn link_down(&mut self, index: u32) -> &mut Self {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.set_up(format!("link set #{index} down"), msg, false)
    }

    /// Put link `index` in group `group` (`ip link set DEV group N`).
    pub fn link_set_group(&mut self, index: u32, group: u32) -> &mut Self {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Group(group));
        self.push(
            format!("link set #{index} group {group}"),
            RouteNetlinkMessage::NewLink(msg),
            0,
        )
    }

    /// Delete link `index` (`ip link del DEV`). Each delete still waits for the kernel's RCU
    /// grace period on its own: to delete many links, see [`Handle::link_del_many`].
    pub fn link_del(&mut self, index: u32) -> &mut Self {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.push(format!("link del #{index}"), RouteNetlinkMessage::DelLink(msg), 0)
    }

    /// Bring the link called `name` up: the kernel finds it by name, no lookup first.
    pub fn link_up_name(&mut self, name: &str) -> &mut Self {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.set_up(format!("link set {name} up"), msg, true)
    }

    /// Add an address to link `index` (`ip addr add PREFIX dev DEV`; an IPv6 address skips
    /// duplicate address detection, as [`crate::addr::AddrRequest::nodad`]).
    pub fn addr_add(&mut self, index: u32, prefix: IpNetwork) -> &mut Self {
        let mut req = self.h.addr_add_index(index, prefix);
        if prefix.is_ipv6() {
            req = req.nodad();
        }
        let msg = req.message(index);
        self.push(
            format!("addr add {prefix} dev #{index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Add a route (`ip route add`). Its devices should be given by index
    /// ([`Route::dev_index`]): a name is looked up here, one request of its own.
    pub async fn route_add(&mut self, route: &Route) -> Result<&mut Self, crate::route::RouteError> {
        self.route(route, "add", NLM_F_CREATE | NLM_F_EXCL).await
    }

    /// Add or replace a route (`ip route replace`), as [`Batch::route_add`].
    pub async fn route_replace(&mut self, route: &Route) -> Result<&mut Self, crate::route::RouteError> {
        self.route(route, "replace", NLM_F_CREATE | NLM_F_REPLACE).await
    }

    async fn route(&mut self, route: &Route, op: &str, flags: u16) -> Result<&mut Self, crate::route::RouteError> {
        let msg = route.new_message(self.h, op).await?;
        Ok(self.push(format!("route {op} {route}"), RouteNetlinkMessage::NewRoute(msg), flags))
    }

    /// Number of requests collected.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Send every request in one system call and read every answer. `Err` lists the requests
    /// the kernel refused (the others were done) or, with an empty list, how the socket failed.
    pub async fn send(self) -> Result<(), BatchError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let netns = self.h.ns_label();
        let (whats, requests): (Vec<String>, Vec<Request>) = self.ops.into_iter().unzip();
        let answers = self.h.transport().exchange(requests).await.map_err(|e| BatchError {
            netns: netns.clone(),
            failures: vec![("send".into(), e)],
        })?;
        let failures: Vec<(String, NetlinkError)> = whats
            .into_iter()
            .zip(answers)
            .filter_map(|(what, a)| a.err().map(|e| (what, e)))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(BatchError { netns, failures })
        }
    }
}
