//! Events through the ABI as a C event loop uses them: subscribe, poll(2) the descriptor with a
//! timeout, make a change, read the events without blocking until none is left.

use std::ffi::CStr;

use netkit::addr::*;
use netkit::error::*;
use netkit::events::*;
use netkit::link::*;
use netkit::neigh::*;

use crate::common::{cs, fails, ok, Ns, Zeroed};
use crate::kinds::veth;
use crate::routes::{ip, prefix};

/// How long a test waits for the descriptor to become readable.
const WAIT_MS: i32 = 5000;

/// A subscription of the test; closed on drop.
struct Sub(*mut netkit_events);

impl Sub {
    fn new(t: &Ns, kinds: u32) -> Sub {
        let mut sub = std::ptr::null_mut();
        // SAFETY: valid arguments.
        ok(|e| unsafe { netkit_events_subscribe(t.h, kinds, &mut sub, e) });
        assert!(!sub.is_null());
        Sub(sub)
    }

    fn fd(&self) -> i32 {
        let mut fd = -1;
        // SAFETY: a live subscription, valid out-pointer.
        ok(|e| unsafe { netkit_events_fd(self.0, &mut fd, e) });
        fd
    }

    /// poll(2) the descriptor for up to `ms`: true when readable.
    fn readable(&self, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        n == 1 && p.revents & libc::POLLIN != 0
    }

    /// Every event waiting now, each described as (kind, a word about its object), freed.
    fn drain(&self) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        loop {
            let mut ev = std::ptr::null_mut();
            // SAFETY: a live subscription, valid out-pointer.
            ok(|e| unsafe { netkit_events_next(self.0, &mut ev, e) });
            if ev.is_null() {
                return out;
            }
            // SAFETY: a live event from the library: exactly its kind's object is set; read,
            // then freed once.
            unsafe {
                let e = &*ev;
                let set = [
                    !e.link.is_null(),
                    !e.addr.is_null(),
                    !e.route.is_null(),
                    !e.neigh.is_null(),
                    !e.fdb.is_null(),
                ];
                assert_eq!(set.iter().filter(|s| **s).count(), 1, "one object per event: {e:?}");
                let what = match e.kind {
                    NETKIT_EVENT_NEW_LINK | NETKIT_EVENT_DEL_LINK => {
                        CStr::from_ptr((*e.link).name).to_str().unwrap().to_string()
                    }
                    NETKIT_EVENT_NEW_ADDR | NETKIT_EVENT_DEL_ADDR => format!("{:?}", (*e.addr).prefix),
                    NETKIT_EVENT_NEW_ROUTE | NETKIT_EVENT_DEL_ROUTE => format!("{:?}", (*e.route).dst),
                    NETKIT_EVENT_NEW_NEIGH | NETKIT_EVENT_DEL_NEIGH => format!("{:?}", (*e.neigh).ip),
                    NETKIT_EVENT_NEW_FDB | NETKIT_EVENT_DEL_FDB => format!("{:?}", (*e.fdb).mac),
                    k => panic!("unexpected event kind {k}"),
                };
                out.push((e.kind, what));
                netkit_event_free(ev);
            }
        }
    }

    /// Poll and read until an event `want` accepts arrives (bounded by [`WAIT_MS`] per wait).
    /// The events read after it stay in `backlog` for the next expectation.
    #[track_caller]
    fn expect(&self, backlog: &mut Vec<(u32, String)>, what: &str, want: impl Fn(&(u32, String)) -> bool) {
        let mut seen = Vec::new();
        loop {
            if let Some(i) = backlog.iter().position(&want) {
                backlog.drain(..=i);
                return;
            }
            seen.append(backlog);
            assert!(self.readable(WAIT_MS), "no {what} within {WAIT_MS} ms; saw {seen:?}");
            backlog.extend(self.drain());
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        // SAFETY: the test's live subscription, closed once.
        unsafe { netkit_events_close(self.0) };
    }
}

#[test]
fn events_are_polled_then_read() {
    let t = Ns::new("fevents");
    let sub = Sub::new(
        &t,
        NETKIT_EVENTS_LINK | NETKIT_EVENTS_ADDR | NETKIT_EVENTS_ROUTE | NETKIT_EVENTS_NEIGH,
    );
    // Nothing happened: not readable, and next stores NULL without blocking.
    assert!(!sub.readable(0), "readable before any change");
    assert!(sub.drain().is_empty());
    let mut backlog = Vec::new();

    let (v0, v1) = (cs("v0"), cs("v1"));
    let mut cfg = veth(&v0, &v1);
    cfg.up = true;
    // SAFETY: valid arguments throughout.
    ok(|e| unsafe { netkit_link_add_veth(t.h, &cfg, std::ptr::null_mut(), e) });
    sub.expect(&mut backlog, "NewLink v0", |(k, name)| {
        *k == NETKIT_EVENT_NEW_LINK && name == "v0"
    });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_set_up(t.h, v1.as_ptr(), e) });

    let p = prefix("10.1.0.1/24");
    // SAFETY: as above.
    ok(|e| unsafe { netkit_addr_add(t.h, v0.as_ptr(), &p, 0, e) });
    // The address, then its prefix route (the kernel adds it).
    sub.expect(&mut backlog, "NewAddr 10.1.0.1/24", |(k, a)| {
        *k == NETKIT_EVENT_NEW_ADDR && *a == format!("{p:?}")
    });
    let net = prefix("10.1.0.0/24");
    sub.expect(&mut backlog, "NewRoute 10.1.0.0/24", |(k, r)| {
        *k == NETKIT_EVENT_NEW_ROUTE && *r == format!("{net:?}")
    });

    let mut n = netkit_neigh_config::zeroed();
    n.dev = v0.as_ptr();
    n.ip = ip("10.1.0.2");
    n.mac = [2, 0, 0, 0, 0, 2];
    // SAFETY: as above.
    ok(|e| unsafe { netkit_neigh_add(t.h, &n, e) });
    let who = format!("{:?}", ip("10.1.0.2"));
    sub.expect(&mut backlog, "NewNeigh 10.1.0.2", |(k, a)| {
        *k == NETKIT_EVENT_NEW_NEIGH && *a == who
    });

    // SAFETY: as above.
    ok(|e| unsafe { netkit_link_del(t.h, v0.as_ptr(), e) });
    sub.expect(&mut backlog, "DelLink v0", |(k, name)| {
        *k == NETKIT_EVENT_DEL_LINK && name == "v0"
    });
    // Drained: next stores NULL again.
    assert!(sub.drain().is_empty());
}

#[test]
fn only_the_kinds_asked_for_arrive() {
    let t = Ns::new("feventk");
    let sub = Sub::new(&t, NETKIT_EVENTS_ADDR);
    let (v0, v1) = (cs("v0"), cs("v1"));
    // SAFETY: valid arguments throughout.
    ok(|e| unsafe { netkit_link_add_veth(t.h, &veth(&v0, &v1), std::ptr::null_mut(), e) });
    let p = prefix("fd01::1/64");
    // SAFETY: as above.
    ok(|e| unsafe { netkit_addr_add(t.h, v0.as_ptr(), &p, NETKIT_ADDR_NODAD, e) });
    let mut seen = Vec::new();
    while !seen.iter().any(|(k, _)| *k == NETKIT_EVENT_NEW_ADDR) {
        assert!(sub.readable(WAIT_MS), "no NewAddr; saw {seen:?}");
        seen.extend(sub.drain());
    }
    assert!(
        seen.iter()
            .all(|(k, _)| *k == NETKIT_EVENT_NEW_ADDR || *k == NETKIT_EVENT_DEL_ADDR),
        "link or route events on an address subscription: {seen:?}"
    );
}

#[test]
fn event_arguments_and_double_close() {
    let t = Ns::new("feventa");
    let mut sub = std::ptr::null_mut();
    // SAFETY: an unknown kinds bit; valid pointers.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_events_subscribe(t.h, 1 << 9, &mut sub, e)
    });
    assert!(f.message.contains("kinds"), "{f:?}");
    // SAFETY: NULL handle.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_events_subscribe(std::ptr::null(), 0, &mut sub, e)
    });
    // SAFETY: NULL out-pointer.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_events_subscribe(t.h, 0, std::ptr::null_mut(), e)
    });
    // 0: every kind.
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_events_subscribe(t.h, 0, &mut sub, e) });
    let mut ev = std::ptr::null_mut();
    // SAFETY: NULL subscription / out-pointer.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_events_next(std::ptr::null(), &mut ev, e)
    });
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_events_next(sub, std::ptr::null_mut(), e)
    });
    let mut fd = 0;
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_events_fd(std::ptr::null(), &mut fd, e)
    });
    // SAFETY: closed once, then again (ignored), and NULL (ignored); a NULL event free too.
    unsafe {
        netkit_events_close(sub);
        netkit_events_close(sub);
        netkit_events_close(std::ptr::null_mut());
        netkit_event_free(std::ptr::null_mut());
    }
}
