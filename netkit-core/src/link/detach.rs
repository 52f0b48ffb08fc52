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

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use tokio::io::AsyncReadExt;

use super::{check_name, LinkError};
use crate::events::EventKind;
use crate::{Handle, NetlinkError};

impl Handle {
    /// Delete a link (idempotent, like [`Handle::link_del`]) and return once the kernel has
    /// taken it out of its namespace, without waiting for the kernel to free it. `Ok(false)`:
    /// there was no such link.
    ///
    /// The request is sent by a detached process (forked twice) that waits for the kernel's
    /// answer and exits on its own; this call returns when the kernel's `RTM_DELLINK`
    /// notification for the link arrives (or, if that is missed, the detached process's
    /// answer). By then the name is free, the link is gone from every listing, from its bridge,
    /// with its addresses and routes; for a veth, both ends are. An error from the kernel is
    /// returned as from `link_del`. If the process cannot fork, the link is deleted the usual
    /// way.
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
        let mut events = self
            .subscribe(&[EventKind::Link])
            .await
            .map_err(|e| fail(NetlinkError::local(e.to_string())))?;
        let request = del_request(index);
        let (rx, tx) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail(NetlinkError::from_errno(e as i32)))?;
        let ns_fd = self.netns().map(|ns| ns.as_raw_fd());
        // Without a detached process, or without its answer: delete the usual way.
        let delete_here = || async {
            match self.link_del_by_index(index).await {
                Ok(()) => Ok(true),
                Err(LinkError::Netlink { source, .. }) => Err(fail(source)),
                Err(e) => Err(e),
            }
        };
        if spawn_detached(&request, ns_fd, tx).is_err() {
            drop(events);
            return delete_here().await;
        }
        let mut answer = tokio::net::unix::pipe::Receiver::from_owned_fd(rx).map_err(|e| {
            fail(NetlinkError::local(format!(
                "reading the detached process's answer: {e}"
            )))
        })?;
        let mut buf = [0u8; 4];
        let read = loop {
            tokio::select! {
                msg = events.next_message() => match msg {
                    Some(m) if is_deleted(&m, index) => return Ok(true),
                    // Notifications lost (socket overrun) or the stream ended: the detached
                    // process's answer decides.
                    Some(NetlinkMessage { payload: NetlinkPayload::Overrun(_), .. }) | None => {
                        break answer.read_exact(&mut buf).await;
                    }
                    Some(_) => continue,
                },
                r = answer.read_exact(&mut buf) => break r,
            }
        };
        match read {
            Ok(_) => match i32::from_ne_bytes(buf) {
                0 => Ok(true),
                // Gone meanwhile (another process deleted it).
                errno if crate::netlink::errno_not_found(Some(errno)) => Ok(true),
                errno => Err(fail(NetlinkError::from_errno(errno))),
            },
            // The detached process ended without an answer (it could not set itself up).
            Err(_) => delete_here().await,
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

/// Send `request` from a detached process (see [`crate::detach`]) that writes the kernel's
/// errno (0: done) to `tx`.
fn spawn_detached(request: &[u8], netns: Option<RawFd>, tx: OwnedFd) -> std::io::Result<()> {
    let mut keep = vec![tx.as_raw_fd()];
    keep.extend(netns);
    let in_ns = netns.is_some();
    // SAFETY: `send_and_report` makes only async-signal-safe calls on memory prepared before
    // the fork (`request`, stack buffers).
    let spawned = unsafe { crate::detach::spawn(&keep, || send_and_report(request, in_ns)) };
    drop(tx);
    spawned
}

/// The detached process: descriptor 0 is the answer pipe, 1 (when `in_ns`) the namespace to
/// enter. Send `request` on a new NETLINK_ROUTE socket, wait for the ack, write its errno to 0.
fn send_and_report(request: &[u8], in_ns: bool) -> i32 {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    let mut err = 0;
    if in_ns {
        // SAFETY: setns and close on descriptors this process owns.
        unsafe {
            if libc::setns(1, libc::CLONE_NEWNET) != 0 {
                err = errno();
            }
            libc::close(1);
        }
    }
    if err == 0 {
        err = delete(request);
    }
    let bytes = err.to_ne_bytes();
    // SAFETY: write to our own pipe descriptor from a stack buffer.
    unsafe { libc::write(0, bytes.as_ptr().cast(), bytes.len()) };
    0
}

/// Send `request` on a new NETLINK_ROUTE socket and return the ack's errno (0: done).
fn delete(request: &[u8]) -> i32 {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: plain socket(2).
    let s = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if s < 0 {
        return errno();
    }
    // SAFETY: an all-zero sockaddr_nl is valid; the kernel is the destination.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `request` is a valid buffer of its length; `addr` a valid sockaddr_nl.
    let sent = unsafe {
        libc::sendto(
            s,
            request.as_ptr().cast(),
            request.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return errno();
    }
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: `buf` is a valid, writable buffer of its length.
        let n = unsafe { libc::recv(s, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return errno();
        }
        // struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; } then, for
        // NLMSG_ERROR (type 2), the negative errno (0 for an ack).
        if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == libc::NLMSG_ERROR as u16 {
            return -i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        }
    }
}
