//! Change notifications (`ip monitor`) for C and Go event loops: a subscription exposes a file
//! descriptor to poll and a function that reads the next event without blocking.
//!
//! ```c
//! netkit_events *sub = NULL;
//! int fd;
//! netkit_events_subscribe(h, NETKIT_EVENTS_LINK | NETKIT_EVENTS_ADDR, &sub, &err);
//! netkit_events_fd(sub, &fd, &err);
//! struct pollfd p = { .fd = fd, .events = POLLIN };
//! while (poll(&p, 1, -1) > 0) {
//!     netkit_event *ev;
//!     while (netkit_events_next(sub, &ev, &err) == NETKIT_OK && ev != NULL) {
//!         if (ev->kind == NETKIT_EVENT_NEW_LINK) printf("%s\n", ev->link->name);
//!         netkit_event_free(ev);
//!     }
//! }
//! netkit_events_close(sub);
//! ```
//!
//! The descriptor is the subscription's netlink socket itself (netkit-core's
//! `Handle::subscribe_fd`): readable when the kernel has queued a notification. No thread or
//! task of the library runs for a subscription; `netkit_events_next` reads the socket on the
//! calling thread. "No event waiting" is not an error: the call succeeds and stores NULL, so an
//! idle loop allocates nothing. After the descriptor reports readable, call
//! `netkit_events_next` until it stores NULL (events already read from the socket are returned
//! first).

use std::ffi::c_int;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;

use netkit_core::events::{Event, EventKind, EventSocket};

use crate::addr::netkit_address;
use crate::conv::{out_arg, put, ref_arg};
use crate::error::{status, Error};
use crate::handle::netkit_handle;
use crate::link::netkit_link;
use crate::neigh::{netkit_fdb, netkit_neigh};
use crate::route::netkit_route;
use crate::runtime::wait;
use crate::{netkit_error, own};

/// `netkit_events_subscribe` kinds bit: links appearing, changing, disappearing.
pub const NETKIT_EVENTS_LINK: u32 = 1;
/// Kinds bit: IPv4 and IPv6 addresses.
pub const NETKIT_EVENTS_ADDR: u32 = 2;
/// Kinds bit: IPv4 and IPv6 routes.
pub const NETKIT_EVENTS_ROUTE: u32 = 4;
/// Kinds bit: neighbour (ARP/NDP) and bridge FDB entries.
pub const NETKIT_EVENTS_NEIGH: u32 = 8;

/// Event kind: a link was created or changed (`link` is set).
pub const NETKIT_EVENT_NEW_LINK: u32 = 1;
/// Event kind: a link was deleted (`link`).
pub const NETKIT_EVENT_DEL_LINK: u32 = 2;
/// Event kind: an address was added or changed (`addr`).
pub const NETKIT_EVENT_NEW_ADDR: u32 = 3;
/// Event kind: an address was removed (`addr`).
pub const NETKIT_EVENT_DEL_ADDR: u32 = 4;
/// Event kind: a route was added or changed (`route`).
pub const NETKIT_EVENT_NEW_ROUTE: u32 = 5;
/// Event kind: a route was removed (`route`).
pub const NETKIT_EVENT_DEL_ROUTE: u32 = 6;
/// Event kind: a neighbour entry was added or changed (`neigh`).
pub const NETKIT_EVENT_NEW_NEIGH: u32 = 7;
/// Event kind: a neighbour entry was removed (`neigh`).
pub const NETKIT_EVENT_DEL_NEIGH: u32 = 8;
/// Event kind: a bridge FDB entry was added or changed (`fdb`).
pub const NETKIT_EVENT_NEW_FDB: u32 = 9;
/// Event kind: a bridge FDB entry was removed (`fdb`).
pub const NETKIT_EVENT_DEL_FDB: u32 = 10;
/// Event kind: the kernel dropped notifications (the socket's buffer was full): re-read the
/// state you track (list again) before trusting later events. No object is set.
pub const NETKIT_EVENT_OVERRUN: u32 = 11;

/// A subscription (opaque): a descriptor to poll (`netkit_events_fd`) and the events behind it
/// (`netkit_events_next`). Thread-safe (reads take turns). Close with `netkit_events_close`.
pub struct netkit_events {
    sock: Mutex<EventSocket>,
    fd: RawFd,
}

/// One change. Exactly the object its `kind` names is set (not NULL), the others are NULL
/// (all are NULL for `NETKIT_EVENT_OVERRUN`); the objects belong to the event. Free with
/// `netkit_event_free`.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_event {
    /// `NETKIT_EVENT_*`.
    pub kind: u32,
    /// The link (`NETKIT_EVENT_NEW_LINK`, `_DEL_LINK`).
    pub link: *mut netkit_link,
    /// The address (`NETKIT_EVENT_NEW_ADDR`, `_DEL_ADDR`).
    pub addr: *mut netkit_address,
    /// The route (`NETKIT_EVENT_NEW_ROUTE`, `_DEL_ROUTE`).
    pub route: *mut netkit_route,
    /// The neighbour entry (`NETKIT_EVENT_NEW_NEIGH`, `_DEL_NEIGH`).
    pub neigh: *mut netkit_neigh,
    /// The FDB entry (`NETKIT_EVENT_NEW_FDB`, `_DEL_FDB`).
    pub fdb: *mut netkit_fdb,
}

impl From<&Event> for netkit_event {
    fn from(ev: &Event) -> Self {
        let mut out = Self {
            kind: NETKIT_EVENT_OVERRUN,
            link: std::ptr::null_mut(),
            addr: std::ptr::null_mut(),
            route: std::ptr::null_mut(),
            neigh: std::ptr::null_mut(),
            fdb: std::ptr::null_mut(),
        };
        match ev {
            Event::NewLink(l) | Event::DelLink(l) => {
                out.kind = if matches!(ev, Event::NewLink(_)) {
                    NETKIT_EVENT_NEW_LINK
                } else {
                    NETKIT_EVENT_DEL_LINK
                };
                out.link = own::box_field(netkit_link::from(l));
            }
            Event::NewAddress(a) | Event::DelAddress(a) => {
                out.kind = if matches!(ev, Event::NewAddress(_)) {
                    NETKIT_EVENT_NEW_ADDR
                } else {
                    NETKIT_EVENT_DEL_ADDR
                };
                out.addr = own::box_field(netkit_address::from(a));
            }
            Event::NewRoute(r) | Event::DelRoute(r) => {
                out.kind = if matches!(ev, Event::NewRoute(_)) {
                    NETKIT_EVENT_NEW_ROUTE
                } else {
                    NETKIT_EVENT_DEL_ROUTE
                };
                out.route = own::box_field(netkit_route::from(r));
            }
            Event::NewNeighbour(n) | Event::DelNeighbour(n) => {
                out.kind = if matches!(ev, Event::NewNeighbour(_)) {
                    NETKIT_EVENT_NEW_NEIGH
                } else {
                    NETKIT_EVENT_DEL_NEIGH
                };
                out.neigh = own::box_field(netkit_neigh::from(n));
            }
            Event::NewFdb(f) | Event::DelFdb(f) => {
                out.kind = if matches!(ev, Event::NewFdb(_)) {
                    NETKIT_EVENT_NEW_FDB
                } else {
                    NETKIT_EVENT_DEL_FDB
                };
                out.fdb = own::box_field(netkit_fdb::from(f));
            }
            Event::Overrun => {}
        }
        out
    }
}

impl Drop for netkit_event {
    fn drop(&mut self) {
        // SAFETY: each object was made by `own::box_field` for this event, freed once here.
        unsafe {
            own::free_box_field(self.link);
            own::free_box_field(self.addr);
            own::free_box_field(self.route);
            own::free_box_field(self.neigh);
            own::free_box_field(self.fdb);
        }
    }
}

/// The kinds a `NETKIT_EVENTS_*` mask names (0: all four).
fn kinds_of(mask: u32) -> Result<Vec<EventKind>, Error> {
    let all = NETKIT_EVENTS_LINK | NETKIT_EVENTS_ADDR | NETKIT_EVENTS_ROUTE | NETKIT_EVENTS_NEIGH;
    if mask & !all != 0 {
        return Err(Error::invalid(format!("kinds: unknown bits {:#x}", mask & !all)));
    }
    let mask = if mask == 0 { all } else { mask };
    Ok([
        (NETKIT_EVENTS_LINK, EventKind::Link),
        (NETKIT_EVENTS_ADDR, EventKind::Address),
        (NETKIT_EVENTS_ROUTE, EventKind::Route),
        (NETKIT_EVENTS_NEIGH, EventKind::Neighbour),
    ]
    .into_iter()
    .filter(|(bit, _)| mask & bit != 0)
    .map(|(_, k)| k)
    .collect())
}

/// Watch the changes `kinds` names (`NETKIT_EVENTS_*` bits; 0 for all) in the namespace of
/// `h`, like `ip monitor`. Changes that happen after this returns are delivered in kernel
/// order. The subscription is independent of `h` afterwards (it has its own socket).
#[no_mangle]
pub unsafe extern "C" fn netkit_events_subscribe(
    h: *const netkit_handle,
    kinds: u32,
    out: *mut *mut netkit_events,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` is NULL or live (contract).
        let h = unsafe { netkit_handle::arg(h) }?;
        out_arg(out, "out")?;
        let kinds = kinds_of(kinds)?;
        let sock = wait(h.subscribe_fd(&kinds))?;
        let fd = sock.as_raw_fd();
        let sub = netkit_events {
            sock: Mutex::new(sock),
            fd,
        };
        // SAFETY: checked non-NULL above.
        unsafe { put(out, own::give(sub)) };
        Ok(())
    })
}

/// The subscription's file descriptor in `*fd`: poll it for `POLLIN` (or add it to an epoll
/// set, a Go netpoller…); it is readable when an event is waiting. It belongs to the
/// subscription: do not read it or close it; it is valid until `netkit_events_close`.
#[no_mangle]
pub unsafe extern "C" fn netkit_events_fd(
    sub: *const netkit_events,
    fd: *mut c_int,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `sub` is NULL or live (contract).
        let sub = unsafe { ref_arg(sub, "sub") }?;
        out_arg(fd, "fd")?;
        // SAFETY: checked non-NULL above.
        unsafe { put(fd, sub.fd) };
        Ok(())
    })
}

/// Read the next event without blocking: a new event in `*event` (free with
/// `netkit_event_free`), or NULL when none is waiting (the status is `NETKIT_OK` either way).
/// Call it until it stores NULL each time the descriptor reports readable.
#[no_mangle]
pub unsafe extern "C" fn netkit_events_next(
    sub: *const netkit_events,
    event: *mut *mut netkit_event,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `sub` is NULL or live (contract).
        let sub = unsafe { ref_arg(sub, "sub") }?;
        out_arg(event, "event")?;
        // SAFETY: checked non-NULL above; NULL until an event is read.
        unsafe { put(event, std::ptr::null_mut()) };
        let next = sub.sock.lock().unwrap_or_else(|p| p.into_inner()).try_next()?;
        if let Some(ev) = next {
            // SAFETY: as above.
            unsafe { put(event, own::give(netkit_event::from(&ev))) };
        }
        Ok(())
    })
}

/// Free an event from `netkit_events_next` (its object with it). NULL and a second free are
/// ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_event_free(event: *mut netkit_event) {
    // SAFETY: `take` only rebuilds a box the registry knows as a live netkit_event.
    drop(unsafe { own::take(event) });
}

/// End a subscription and close its descriptor. NULL and a second close are ignored. Other
/// threads must be done with it (and have removed the descriptor from their poll sets).
#[no_mangle]
pub unsafe extern "C" fn netkit_events_close(sub: *mut netkit_events) {
    // SAFETY: `take` only rebuilds a box the registry knows as a live netkit_events.
    drop(unsafe { own::take(sub) });
}
