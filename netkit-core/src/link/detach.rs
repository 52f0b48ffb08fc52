//! Deleting a link without waiting for the kernel to free it ([`Handle::link_del_detached`]).
//!
//! When a device is deleted, the kernel first takes it out of its namespace (under the rtnl
//! lock: the name is free, it is off its bridge, its addresses and routes are gone, and the
//! `RTM_DELLINK` notification goes out), then, after releasing the lock but still inside the
//! deleting process's `sendmsg`, waits for an RCU barrier and for the last references before it
//! frees the memory. That wait is 15–25 ms on a busy machine, whatever netkit does, and it is
//! most of what a CNI DEL costs. A short-lived process can hand the wait to a detached process:
//! the request is sent by a grandchild (double fork, so nobody has to reap it but init or the
//! nearest subreaper), and the caller returns as soon as the notification says the device left
//! the namespace.
//!
//! See [`crate::detach`] for the process side.

use std::os::fd::AsFd;
use std::time::Duration;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{check_name, LinkError};
use crate::detach::{self, Answer, NetlinkRequest};
use crate::events::{EventKind, EventStream};
use crate::{Handle, NetlinkError};

/// How long [`Handle::link_del_detached`] waits for the link to leave its namespace.
const DELETE_DEADLINE: Duration = Duration::from_secs(10);

impl Handle {
    /// Delete a link (idempotent, like [`Handle::link_del`]) and return once the kernel has
    /// taken it out of its namespace, without waiting for the kernel to free it. `Ok(false)`:
    /// there was no such link.
    ///
    /// The request is sent by a detached process (forked twice, see [`crate::detach`]) that
    /// waits for the kernel's answer and exits on its own; this call returns when the kernel's
    /// `RTM_DELLINK` notification for the link arrives (or, if that is missed, the detached
    /// process's answer). By then the name is free, the link is gone from every listing, from
    /// its bridge, with its addresses and routes; for a veth, both ends are. An error from the
    /// kernel is returned as from `link_del`.
    ///
    /// The link is deleted the usual way, in this call and waiting for the kernel to free it,
    /// when no detached process can be started (the fork fails), when the one started ends
    /// without answering, and when this process's reaper does not reap: if the detached process
    /// netkit recorded last under the same reaper (init of the PID namespace, or the nearest
    /// ancestor that is a child subreaper) has been a zombie for longer than a grace period
    /// (5 s), no other one is started, so a runtime that does not reap orphans collects the
    /// zombies of the first few seconds, not one per call forever (see
    /// [`crate::detach::reaper_reaps`]).
    ///
    /// The wait is bounded: if neither the notification nor the answer comes within 10 s (a
    /// kernel stuck in `unregister_netdevice`), the call fails with `ETIMEDOUT` and a message
    /// saying what it waited for; the deletion may still complete later. The detached process
    /// itself gives up waiting for the kernel's answer after 30 s, but a kernel that hangs
    /// inside the deletion keeps it (like any sender) stuck there. Deleting the link in this
    /// call has a 10 s bound too, which only helps if the runtime has another thread to run the
    /// timer: the kernel processes the request inside the sending thread's `sendmsg`.
    ///
    /// Meant for short-lived processes, such as CNI plugins, whose caller waits for them to
    /// exit: the kernel's final wait (an RCU barrier, 15–25 ms) then happens in the detached
    /// process instead. A long-running program gains nothing over running
    /// [`Handle::link_del`] on a task of its own.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let host = netkit_core::Handle::current()?;
    /// let existed = host.link_del_detached("veth1a2b3c4d").await?;
    /// println!("deleted: {existed}");
    /// # Ok(()) }
    /// ```
    pub async fn link_del_detached(&self, name: &str) -> Result<bool, LinkError> {
        check_name(name)?;
        let index = match self.link_index(name).await {
            Ok(index) => index,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        let fail = |e: NetlinkError| LinkError::netlink("delete", name, self, e);
        // Subscribed before the request is sent, so the notification cannot be missed.
        let events = self
            .subscribe(&[EventKind::Link])
            .await
            .map_err(|e| fail(NetlinkError::local(e.to_string())))?;
        let request = del_request(index);
        let sent = detach::send_netlink(&NetlinkRequest {
            bytes: &request,
            protocol: libc::NETLINK_ROUTE,
            netns: Some(self.netns().as_fd()),
            recv_timeout: detach::RECV_TIMEOUT,
        });
        match sent {
            Ok(answer) => self.await_deletion(name, index, events, answer, DELETE_DEADLINE).await,
            // The reaper does not reap, or no fork: here, waiting.
            Err(_) => {
                drop(events);
                self.delete_here(name, index, DELETE_DEADLINE).await
            }
        }
    }

    /// After the detached process got the request: wait at most `deadline` for the link to
    /// leave the namespace (the notification) or for the detached process's answer.
    async fn await_deletion(
        &self,
        name: &str,
        index: u32,
        mut events: EventStream,
        answer: Answer,
        deadline: Duration,
    ) -> Result<bool, LinkError> {
        let fail = |e: NetlinkError| LinkError::netlink("delete", name, self, e);
        let pid = answer.pid();
        let answer = answer.errno();
        tokio::pin!(answer);
        let waited = tokio::time::timeout(deadline, async {
            loop {
                tokio::select! {
                    msg = events.next_message() => match msg {
                        Some(m) if is_deleted(&m, index) => return None,
                        // Notifications lost (socket overrun) or the stream ended: the
                        // detached process's answer decides.
                        Some(NetlinkMessage { payload: NetlinkPayload::Overrun(_), .. }) | None => {
                            return Some((&mut answer).await);
                        }
                        Some(_) => continue,
                    },
                    r = &mut answer => return Some(r),
                }
            }
        })
        .await;
        match waited {
            Ok(None) => Ok(true),
            Ok(Some(Ok(0))) => Ok(true),
            // Gone meanwhile (another process deleted it).
            Ok(Some(Ok(errno))) if crate::netlink::errno_not_found(Some(errno)) => Ok(true),
            Ok(Some(Ok(errno))) => Err(fail(NetlinkError::from_errno(errno))),
            // The detached process ended without an answer (it could not set itself up).
            Ok(Some(Err(_))) => self.delete_here(name, index, deadline).await,
            Err(_) => Err(fail(NetlinkError {
                errno: Some(libc::ETIMEDOUT),
                message: Some(format!(
                    "timed out after {deadline:?} waiting for the link to leave the namespace \
                     (neither its RTM_DELLINK notification nor the answer of detached process \
                     {pid} came); the kernel may still delete it"
                )),
            })),
        }
    }

    /// Delete link `index` in this call, waiting for the kernel (at most `deadline`).
    async fn delete_here(&self, name: &str, index: u32, deadline: Duration) -> Result<bool, LinkError> {
        let fail = |e: NetlinkError| LinkError::netlink("delete", name, self, e);
        match tokio::time::timeout(deadline, self.link_del_by_index(index)).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(LinkError::Netlink { cause: source, .. })) => Err(fail(source)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(fail(NetlinkError {
                errno: Some(libc::ETIMEDOUT),
                message: Some(format!(
                    "timed out after {deadline:?} waiting for the kernel to delete the link"
                )),
            })),
        }
    }
}

/// `RTM_DELLINK` for `index`, acked.
fn del_request(index: u32) -> Vec<u8> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(msg)));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// The device `index` itself left the namespace (not a bridge port notice of family AF_BRIDGE,
/// which the kernel also sends as `RTM_DELLINK` when a port leaves its bridge).
fn is_deleted(msg: &NetlinkMessage<RouteNetlinkMessage>, index: u32) -> bool {
    matches!(
        &msg.payload,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l))
            if l.header.index == index && l.header.interface_family == AddressFamily::Unspec
    )
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use crate::detach::{self, NetlinkRequest};
    use crate::events::EventKind;
    use crate::link::Veth;
    use crate::NetNsGuard;

    /// The wait for the link to leave its namespace has a deadline: with a detached process
    /// that cannot answer in time (its request asks for no answer, and it waits 5 s for one) and
    /// no deletion under way, the call fails after the deadline, saying what it waited for.
    #[tokio::test]
    async fn the_wait_for_the_deletion_is_bounded() {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("nkld{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let ns = NetNsGuard::create(&name).expect("create test netns");
        let h = ns.handle().await.expect("handle in test netns");
        h.link_add(&Veth::new("a0", "a1")).await.unwrap();
        let index = h.link_index("a0").await.unwrap();
        let events = h.subscribe(&[EventKind::Link]).await.unwrap();
        // NLMSG_NOOP without NLM_F_ACK: the kernel never answers it.
        let mut noop = Vec::new();
        for word in [
            16u32,
            u32::from(libc::NLMSG_NOOP as u16) | ((libc::NLM_F_REQUEST as u32) << 16),
            1,
            0,
        ] {
            noop.extend(word.to_ne_bytes());
        }
        let answer = detach::send_netlink(&NetlinkRequest {
            bytes: &noop,
            protocol: libc::NETLINK_ROUTE,
            netns: Some(ns.as_fd()),
            recv_timeout: Duration::from_secs(5),
        })
        .expect("detached");
        let start = Instant::now();
        let deadline = Duration::from_millis(100);
        let err = h
            .await_deletion("a0", index, events, answer, deadline)
            .await
            .unwrap_err();
        let waited = start.elapsed();
        assert_eq!(err.errno(), Some(libc::ETIMEDOUT), "{err}");
        assert!(err.to_string().contains("timed out after 100ms"), "{err}");
        assert!(waited >= deadline && waited < Duration::from_secs(5), "{waited:?}");
        assert!(h.link_get("a0").await.is_ok(), "nothing was deleted");
    }
}
