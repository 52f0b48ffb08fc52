//! Change notifications (`ip monitor`) as an async stream.
//!
//! [`Handle::subscribe`] opens a second netlink socket inside the handle's
//! namespace, joined to the multicast groups of the chosen [`EventKind`]s,
//! and yields one [`Event`] per kernel notification.
//!
//! ```no_run
//! # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::events::EventError> {
//! use futures::StreamExt;
//! use netkit_core::events::{Event, EventKind};
//! let mut events = h.subscribe(&[EventKind::Link, EventKind::Address]).await?;
//! while let Some(ev) = events.next().await {
//!     if let Event::NewLink(l) = ev { println!("link {} is {}", l.name, if l.up { "up" } else { "down" }); }
//! }
//! # Ok(()) }
//! ```
//!
//! An event loop that is not async (C, Go, a `poll(2)` loop) uses [`Handle::subscribe_fd`]
//! instead: an [`EventSocket`] whose descriptor becomes readable when a notification arrives,
//! read without blocking by [`EventSocket::try_next`]. No background task and no runtime are
//! involved in reading: the descriptor is the subscription's netlink socket itself.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc::UnboundedReceiver;
use futures::Stream;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr, TokioSocket};

use crate::addr::Address;
use crate::link::Link;
use crate::neigh::{FdbInfo, NeighInfo};
use crate::route::RouteInfo;
use crate::{Handle, NetlinkError};

/// Which changes to watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Links appearing, changing state, disappearing.
    Link,
    /// IPv4 and IPv6 addresses.
    Address,
    /// IPv4 and IPv6 routes.
    Route,
    /// Neighbour (ARP/NDP) and FDB entries.
    Neighbour,
}

impl EventKind {
    /// RTNLGRP_* multicast groups carrying this kind.
    fn groups(self) -> &'static [u32] {
        match self {
            Self::Link => &[1],       // RTNLGRP_LINK
            Self::Address => &[5, 9], // RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR
            Self::Route => &[7, 11],  // RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE
            Self::Neighbour => &[3],  // RTNLGRP_NEIGH
        }
    }
}

/// One change reported by the kernel.
#[derive(Clone, Debug)]
pub enum Event {
    /// A link was created or changed (RTM_NEWLINK).
    NewLink(Link),
    /// A link was deleted.
    DelLink(Link),
    /// An address was added or changed.
    NewAddress(Address),
    /// An address was removed.
    DelAddress(Address),
    /// A route was added or changed.
    NewRoute(RouteInfo),
    /// A route was removed.
    DelRoute(RouteInfo),
    /// A neighbour (ARP/NDP) entry was added or changed.
    NewNeighbour(NeighInfo),
    /// A neighbour entry was removed.
    DelNeighbour(NeighInfo),
    /// A bridge FDB entry was added or changed.
    NewFdb(FdbInfo),
    /// A bridge FDB entry was removed.
    DelFdb(FdbInfo),
    /// The socket buffer overflowed and notifications were lost: re-read the
    /// state you track (list again) before trusting later events.
    Overrun,
}

/// Errors opening or reading a subscription.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Reading an [`EventSocket`] failed (other than "nothing queued" or an overrun, which
    /// are `Ok(None)` and [`Event::Overrun`]).
    #[error("read events in netns {netns}: {cause}")]
    Receive {
        /// Namespace.
        netns: String,
        /// The failure with its errno.
        cause: NetlinkError,
    },
    /// The socket could not be opened or joined to its groups.
    #[error("subscribe to {kinds:?} events in netns {netns}: {cause}")]
    Subscribe {
        /// What was asked for.
        kinds: Vec<EventKind>,
        /// Namespace.
        netns: String,
        /// The failure with its errno.
        cause: NetlinkError,
    },
}

/// The stream returned by [`Handle::subscribe`]. Ends only when dropped;
/// dropping it stops the background task and closes its socket.
pub struct EventStream {
    rx: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    // The connection task only notices a dropped receiver when the next
    // notification arrives, which may be never (and its socket keeps the
    // namespace alive meanwhile): abort it explicitly.
    task: tokio::task::AbortHandle,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for EventStream {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            match Pin::new(&mut self.rx).poll_next(cx) {
                Poll::Ready(Some((msg, _))) => {
                    if let Some(ev) = to_event(msg) {
                        return Poll::Ready(Some(ev));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl EventStream {
    /// The next notification as the kernel sent it (for callers that need fields [`Event`]
    /// leaves out, such as a link message's address family). `None` when the stream ended.
    pub(crate) async fn next_message(&mut self) -> Option<NetlinkMessage<RouteNetlinkMessage>> {
        use futures::StreamExt;
        self.rx.next().await.map(|(msg, _)| msg)
    }
}

fn to_event(msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<Event> {
    use RouteNetlinkMessage as M;
    match msg.payload {
        NetlinkPayload::Overrun(_) => Some(Event::Overrun),
        NetlinkPayload::InnerMessage(m) => match m {
            M::NewLink(l) => Some(Event::NewLink(Link::from_message(l))),
            M::DelLink(l) => Some(Event::DelLink(Link::from_message(l))),
            M::NewAddress(a) => Address::from_message(a).map(Event::NewAddress),
            M::DelAddress(a) => Address::from_message(a).map(Event::DelAddress),
            M::NewRoute(r) => RouteInfo::from_message(r).map(Event::NewRoute),
            M::DelRoute(r) => RouteInfo::from_message(r).map(Event::DelRoute),
            M::NewNeighbour(n) if is_bridge(&n) => FdbInfo::from_message(n).map(Event::NewFdb),
            M::DelNeighbour(n) if is_bridge(&n) => FdbInfo::from_message(n).map(Event::DelFdb),
            M::NewNeighbour(n) => NeighInfo::from_message(n).map(Event::NewNeighbour),
            M::DelNeighbour(n) => NeighInfo::from_message(n).map(Event::DelNeighbour),
            _ => None,
        },
        _ => None,
    }
}

/// FDB entries travel as neighbour messages of family AF_BRIDGE.
fn is_bridge(n: &netlink_packet_route::neighbour::NeighbourMessage) -> bool {
    n.header.family == netlink_packet_route::AddressFamily::Bridge
}

fn open_subscriber(groups: Vec<u32>) -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind(&SocketAddr::new(0, 0))?;
    for g in groups {
        socket.add_membership(g)?;
    }
    socket.set_rx_buf_sz(8 * 1024 * 1024)?;
    Ok(socket)
}

impl Handle {
    /// The subscription's socket: inside this handle's namespace, joined to the groups of
    /// `kinds`, non-blocking.
    async fn subscriber(&self, kinds: &[EventKind]) -> Result<Socket, EventError> {
        let groups: Vec<u32> = kinds.iter().flat_map(|k| k.groups().iter().copied()).collect();
        let err = |source| EventError::Subscribe {
            kinds: kinds.to_vec(),
            netns: self.ns_label(),
            cause: source,
        };
        let socket = self
            .exec_in(move || open_subscriber(groups))
            .await
            .map_err(err)?
            .map_err(|e| {
                err(NetlinkError {
                    errno: e.raw_os_error(),
                    message: Some(e.to_string()),
                })
            })?;
        socket
            .set_non_blocking(true)
            .map_err(|e| err(NetlinkError::local(e.to_string())))?;
        Ok(socket)
    }

    /// Watch changes of the given kinds in this handle's namespace, like
    /// `ip monitor link address route neigh`. Events that happen after this
    /// returns are delivered in kernel order.
    pub async fn subscribe(&self, kinds: &[EventKind]) -> Result<EventStream, EventError> {
        let socket = self.subscriber(kinds).await?;
        // SAFETY: into_raw_fd hands over sole ownership of a valid netlink socket fd.
        let socket = unsafe { TokioSocket::from_raw_fd(socket.into_raw_fd()) };
        let (conn, _handle, rx) =
            netlink_proto::from_socket_with_codec::<RouteNetlinkMessage, _, netlink_proto::NetlinkCodec>(socket);
        let task = tokio::spawn(conn).abort_handle();
        Ok(EventStream { rx, task })
    }

    /// Watch changes of the given kinds, like [`Handle::subscribe`], through a descriptor to
    /// poll instead of an async stream: see [`EventSocket`]. Events that happen after this
    /// returns are delivered in kernel order.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::events::EventError> {
    /// use std::os::fd::AsRawFd;
    /// use netkit_core::events::EventKind;
    /// let mut events = h.subscribe_fd(&[EventKind::Link]).await?;
    /// let fd = events.as_raw_fd(); // hand it to poll(2), epoll, a Go netpoller…
    /// // … when fd is readable:
    /// while let Some(ev) = events.try_next()? {
    ///     println!("{ev:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_fd(&self, kinds: &[EventKind]) -> Result<EventSocket, EventError> {
        let socket = self.subscriber(kinds).await?;
        // SAFETY: into_raw_fd relinquishes ownership of the socket's descriptor: the OwnedFd is
        // its only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) };
        Ok(EventSocket {
            fd,
            netns: self.ns_label(),
            pending: VecDeque::new(),
            buf: vec![0; EVENT_BUF].into_boxed_slice(),
        })
    }
}

/// The receive buffer of an [`EventSocket`]: a notification is one object (a few hundred
/// bytes; a link with many attributes a few KiB).
const EVENT_BUF: usize = 64 * 1024;

/// A subscription read without an async runtime, from [`Handle::subscribe_fd`].
///
/// The descriptor ([`AsRawFd`], [`AsFd`]) is the subscription's netlink socket, non-blocking:
/// it is readable when a notification is waiting. [`EventSocket::try_next`] reads without
/// blocking and returns `Ok(None)` when nothing is queued. The kernel sends one notification
/// per datagram; should a datagram ever hold several, the events after the first are kept and
/// returned by the next calls before the socket is read again, so the loop to write is: when
/// the descriptor is readable, call `try_next` until it returns `Ok(None)`.
///
/// When the kernel had to drop notifications (the socket's 8 MiB buffer was full) the next
/// event is [`Event::Overrun`]: re-read the state you track. Notifications the crate does not
/// model are skipped. Dropping the socket ends the subscription.
pub struct EventSocket {
    fd: OwnedFd,
    netns: String,
    pending: VecDeque<Event>,
    buf: Box<[u8]>,
}

impl std::fmt::Debug for EventSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSocket")
            .field("fd", &self.fd.as_raw_fd())
            .field("netns", &self.netns)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl AsRawFd for EventSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for EventSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl EventSocket {
    /// The next event, without blocking: `Ok(None)` when none is waiting.
    pub fn try_next(&mut self) -> Result<Option<Event>, EventError> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            // SAFETY: `buf` is a valid, writable buffer of its length. MSG_TRUNC: the length of
            // the datagram even when the buffer was too small for it.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Ok(None),
                    // The kernel dropped notifications: the socket's buffer was full.
                    Some(libc::ENOBUFS) => return Ok(Some(Event::Overrun)),
                    _ => {
                        return Err(EventError::Receive {
                            netns: self.netns.clone(),
                            cause: NetlinkError {
                                errno: e.raw_os_error(),
                                message: Some(format!("netlink socket: recv: {e}")),
                            },
                        })
                    }
                }
            }
            let n = n as usize;
            if n > self.buf.len() {
                // A notification larger than the buffer was cut: it is lost, say so.
                return Ok(Some(Event::Overrun));
            }
            for m in crate::netlink::wire::messages(&self.buf[..n]) {
                if m.truncated {
                    continue;
                }
                if let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(m.raw) {
                    self.pending.extend(to_event(msg));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};

    use super::*;

    /// An RTM_NEWLINK notification for a link named `name`, as the kernel sends it.
    fn new_link(name: &str) -> Vec<u8> {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(name.into()));
        let mut msg = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)),
        );
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    /// An event socket reading `rx` (a datagram socket standing in for the netlink one).
    fn socket(rx: UnixDatagram) -> EventSocket {
        EventSocket {
            fd: OwnedFd::from(rx),
            netns: "test".into(),
            pending: VecDeque::new(),
            buf: vec![0; EVENT_BUF].into_boxed_slice(),
        }
    }

    fn name(ev: Option<Event>) -> String {
        match ev {
            Some(Event::NewLink(l)) => l.name,
            other => panic!("expected a NewLink, got {other:?}"),
        }
    }

    #[test]
    fn a_datagram_of_several_notifications_gives_each_in_order() {
        let (tx, rx) = UnixDatagram::pair().unwrap();
        let mut sock = socket(rx);
        assert!(sock.try_next().unwrap().is_none(), "nothing sent yet");
        let mut two = new_link("a0");
        two.extend(new_link("b0"));
        tx.send(&two).unwrap();
        tx.send(&new_link("c0")).unwrap();
        assert_eq!(name(sock.try_next().unwrap()), "a0");
        assert_eq!(name(sock.try_next().unwrap()), "b0");
        assert_eq!(name(sock.try_next().unwrap()), "c0");
        assert!(sock.try_next().unwrap().is_none());
    }

    #[test]
    fn undecodable_and_oversized_datagrams() {
        let (tx, rx) = UnixDatagram::pair().unwrap();
        let mut sock = socket(rx);
        // Garbage is skipped, the next notification still arrives.
        tx.send(&[0xff; 40]).unwrap();
        tx.send(&new_link("a0")).unwrap();
        assert_eq!(name(sock.try_next().unwrap()), "a0");
        // A datagram larger than the buffer was cut: reported as lost notifications.
        tx.send(&vec![0; EVENT_BUF + 100]).unwrap();
        assert!(matches!(sock.try_next().unwrap(), Some(Event::Overrun)));
        assert!(sock.try_next().unwrap().is_none());
    }
}
