//! Deleting many links at once: `ip link del group N`, and [`Handle::link_del_many`] on top.
//!
//! Deleting a link makes the kernel wait for RCU grace periods (about 20 ms here) before the
//! call returns, once per request. A request that deletes a whole link group unregisters every
//! device of the group together and waits once: deleting 1000 veth pairs costs about what one
//! costs. [`Handle::link_del_many`] uses it for any set of links: it moves them into a group
//! nobody uses (one batched request per link, each cheap), then deletes that group.

use std::collections::HashSet;

use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::LinkError;
use crate::Handle;

/// Groups [`Handle::link_del_many`] picks from: the upper half of the group space, which
/// iproute2's `/etc/iproute2/group` names never reach in practice.
const SCRATCH_GROUPS: std::ops::Range<u32> = 0x8000_0000..u32::MAX;

impl Handle {
    /// Delete every link of group `group` in one request (`ip link del group N`): the kernel
    /// unregisters them together and waits for one RCU grace period for all. A group with no
    /// links is success (deletes are idempotent). Group 0, the default group every link is in,
    /// is refused: it would delete every deletable link of the namespace.
    pub async fn link_del_group(&self, group: u32) -> Result<(), LinkError> {
        if group == 0 {
            return Err(LinkError::Invalid {
                link: "group 0".into(),
                what: "group",
                reason: "group 0 is the default group of every link; refusing to delete it".into(),
            });
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Group(group));
        match self.ack(RouteNetlinkMessage::DelLink(msg), 0).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(LinkError::netlink("delete", format!("group {group}"), self, e)),
        }
    }

    /// Delete the links called `names`, as [`Handle::link_del`] would one by one, but in a
    /// constant number of waits for the kernel: the links are moved into a group no link of
    /// the namespace is in (all in one system call, see [`crate::Batch`]), then the group is
    /// deleted with [`Handle::link_del_group`]. Names that do not exist are skipped
    /// (idempotent); deleting a veth deletes its peer, as always.
    ///
    /// The group is drawn at random from the upper half of the group space and checked
    /// against a dump of the namespace's links, so links of other owners are never caught; a
    /// link put into that same group by someone else between the check and the delete would
    /// be (the window is one system call). When the group cannot be deleted, the links are
    /// deleted one by one instead, and any that could not be deleted is put back in its group.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::LinkError> {
    /// let names: Vec<String> = (0..1000).map(|i| format!("vb{i}")).collect();
    /// let names: Vec<&str> = names.iter().map(String::as_str).collect();
    /// h.link_del_many(&names).await?; // about the cost of deleting one
    /// # Ok(()) }
    /// ```
    pub async fn link_del_many(&self, names: &[&str]) -> Result<(), LinkError> {
        for n in names {
            super::check_name(n)?;
        }
        let names: HashSet<&str> = names.iter().copied().collect();
        self.del_many(|l| names.contains(l.name.as_str())).await
    }

    /// [`Handle::link_del_many`], the links given by index.
    pub async fn link_del_many_by_index(&self, indexes: &[u32]) -> Result<(), LinkError> {
        let indexes: HashSet<u32> = indexes.iter().copied().collect();
        self.del_many(|l| indexes.contains(&l.index)).await
    }

    async fn del_many(&self, wanted: impl Fn(&super::Link) -> bool) -> Result<(), LinkError> {
        let links = self.link_list().await?;
        let group = loop {
            let g = SCRATCH_GROUPS.start
                + (crate::random::u64() % u64::from(SCRATCH_GROUPS.end - SCRATCH_GROUPS.start)) as u32;
            if links.iter().all(|l| l.group != g) {
                break g;
            }
        };
        let wanted: Vec<&super::Link> = links.iter().filter(|l| wanted(l)).collect();
        if let [one] = wanted.as_slice() {
            return self.link_del_by_index(one.index).await;
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut batch = self.batch();
        for l in &wanted {
            batch.link_set_group(l.index, group);
        }
        let moved = batch.send().await;
        let deleted = self.link_del_group(group).await;
        if moved.is_ok() && deleted.is_ok() {
            return Ok(());
        }
        // Something was refused (a link that vanished meanwhile is enough): delete what is
        // left one by one (idempotent), and put any link that stays back in its own group.
        let mut first = None;
        for l in &wanted {
            if let Err(e) = self.link_del_by_index(l.index).await {
                let _ = self.link_set_by_index(l.index).group(l.group).apply().await;
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
