//! Change notifications (`Handle::subscribe`) on the real kernel, inside
//! throwaway namespaces. Every wait is bounded so a missing event fails the
//! test instead of hanging it.

use std::os::fd::AsRawFd;
use std::time::Duration;

use futures::StreamExt;
use netkit_core::events::{Event, EventKind, EventSocket, EventStream};
use netkit_core::link::{Veth, Vxlan};
use netkit_core::neigh::{FdbEntry, NeighState, Neighbour};
use netkit_core::route::Route;
use netkit_test_support::lit::{ip, mac, net};
use netkit_test_support::{wait_until_async, TestNs};

const WAIT: Duration = Duration::from_secs(5);

/// Wait (at most [`WAIT`]) for the first event `pick` accepts; panics naming
/// `what` and listing what did arrive otherwise.
async fn expect<T>(s: &mut EventStream, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(ev) = s.next().await {
            if let Some(v) = pick(&ev) {
                return Some(v);
            }
            seen.push(format!("{ev:?}").chars().take(160).collect::<String>());
        }
        None
    })
    .await;
    match found {
        Ok(Some(v)) => v,
        Ok(None) => panic!("stream ended before {what}; saw {seen:#?}"),
        Err(_) => panic!("no {what} within {WAIT:?}; saw {seen:#?}"),
    }
}

async fn veth_up(t: &TestNs) {
    t.h.link_add(&Veth::new("v0", "v1").up()).await.unwrap();
    t.h.link_set_up("v1").await.unwrap();
}

#[tokio::test]
async fn link_new_down_and_del() {
    let t = TestNs::new("evl").await;
    let mut s = t.h.subscribe(&[EventKind::Link]).await.unwrap();
    t.h.link_add(&Veth::new("v0", "v1")).await.unwrap();
    let i0 = t.h.link_index("v0").await.unwrap();
    let i1 = t.h.link_index("v1").await.unwrap();

    // Both ends are announced, in whichever order the kernel sends them.
    let mut want = vec!["v0", "v1"];
    while !want.is_empty() {
        let name = expect(&mut s, &format!("NewLink for {want:?}"), |e| match e {
            Event::NewLink(l) if want.contains(&l.name.as_str()) => Some(l.clone()),
            _ => None,
        })
        .await;
        assert_eq!(name.index, if name.name == "v0" { i0 } else { i1 });
        want.retain(|n| *n != name.name);
    }

    t.h.link_set_up("v0").await.unwrap();
    expect(&mut s, "NewLink v0 up", |e| match e {
        Event::NewLink(l) if l.name == "v0" && l.up => Some(()),
        _ => None,
    })
    .await;
    t.h.link_set_down("v0").await.unwrap();
    let l = expect(&mut s, "NewLink v0 down", |e| match e {
        Event::NewLink(l) if l.name == "v0" && !l.up => Some(l.clone()),
        _ => None,
    })
    .await;
    assert_eq!(l.index, i0);

    // Deleting one end removes both.
    t.h.link_del("v0").await.unwrap();
    let mut want = vec![i0, i1];
    while !want.is_empty() {
        let idx = expect(&mut s, &format!("DelLink for indexes {want:?}"), |e| match e {
            Event::DelLink(l) if want.contains(&l.index) => Some(l.index),
            _ => None,
        })
        .await;
        want.retain(|i| *i != idx);
    }
}

#[tokio::test]
async fn address_v4_v6_new_and_del() {
    let t = TestNs::new("eva").await;
    veth_up(&t).await;
    let idx = t.h.link_index("v0").await.unwrap();
    let mut s = t.h.subscribe(&[EventKind::Address]).await.unwrap();

    for p in ["10.1.0.1/24", "fd00:1::1/64"] {
        t.h.addr_add("v0", net(p)).nodad().await.unwrap();
        let a = expect(&mut s, &format!("NewAddress {p}"), |e| match e {
            Event::NewAddress(a) if a.prefix == net(p) => Some(a.clone()),
            _ => None,
        })
        .await;
        assert_eq!(a.index, idx, "{a:?}");
        assert!(!a.tentative, "nodad address reported tentative: {a:?}");
    }

    for p in ["10.1.0.1/24", "fd00:1::1/64"] {
        t.h.addr_del("v0", net(p)).await.unwrap();
        let a = expect(&mut s, &format!("DelAddress {p}"), |e| match e {
            Event::DelAddress(a) if a.prefix == net(p) => Some(a.clone()),
            _ => None,
        })
        .await;
        assert_eq!(a.index, idx, "{a:?}");
    }
}

#[tokio::test]
async fn route_new_and_del() {
    let t = TestNs::new("evr").await;
    veth_up(&t).await;
    t.h.addr_add("v0", net("10.1.0.1/24")).await.unwrap();
    let idx = t.h.link_index("v0").await.unwrap();
    let mut s = t.h.subscribe(&[EventKind::Route]).await.unwrap();

    let dst = net("192.168.50.0/24");
    let route = Route::new(dst).gateway(ip("10.1.0.254")).dev("v0");
    t.h.route_add(&route).await.unwrap();
    let r = expect(&mut s, "NewRoute 192.168.50.0/24", |e| match e {
        Event::NewRoute(r) if r.dst == Some(dst) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!((r.gateway, r.oif), (Some(ip("10.1.0.254")), Some(idx)), "{r:?}");

    let dst6 = net("fd00:50::/48");
    t.h.addr_add("v0", net("fd00:1::1/64")).nodad().await.unwrap();
    t.h.route_add(&Route::new(dst6).dev("v0")).await.unwrap();
    expect(&mut s, "NewRoute fd00:50::/48", |e| match e {
        Event::NewRoute(r) if r.dst == Some(dst6) => Some(()),
        _ => None,
    })
    .await;

    t.h.route_del(&route).await.unwrap();
    let r = expect(&mut s, "DelRoute 192.168.50.0/24", |e| match e {
        Event::DelRoute(r) if r.dst == Some(dst) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!(r.gateway, Some(ip("10.1.0.254")));
}

#[tokio::test]
async fn neighbour_and_fdb() {
    let t = TestNs::new("evn").await;
    veth_up(&t).await;
    t.h.link_add(&Vxlan::new("vx0", 7).learning(false)).await.unwrap();
    let v0 = t.h.link_index("v0").await.unwrap();
    let vx0 = t.h.link_index("vx0").await.unwrap();
    let mut s = t.h.subscribe(&[EventKind::Neighbour]).await.unwrap();

    let m = mac("02:00:00:00:00:02");
    t.h.neigh_add(&Neighbour::new("v0", ip("10.1.0.2"), m)).await.unwrap();
    let n = expect(&mut s, "NewNeighbour 10.1.0.2", |e| match e {
        Event::NewNeighbour(n) if n.ip == ip("10.1.0.2") => Some(n.clone()),
        _ => None,
    })
    .await;
    assert_eq!((n.index, n.mac, n.state), (v0, Some(m), NeighState::Permanent), "{n:?}");

    let fm = mac("02:00:00:00:07:01");
    t.h.fdb_add(&FdbEntry::new("vx0", fm).dst(ip("192.0.2.7")).self_().permanent())
        .await
        .unwrap();
    let f = expect(&mut s, "NewFdb 02:00:00:00:07:01", |e| match e {
        Event::NewFdb(f) if f.mac == fm => Some(f.clone()),
        // An FDB entry must never be reported as an ARP/NDP entry.
        Event::NewNeighbour(n) if n.index == vx0 => panic!("FDB entry surfaced as a neighbour: {n:?}"),
        _ => None,
    })
    .await;
    assert_eq!((f.index, f.dst, f.is_self), (vx0, Some(ip("192.0.2.7")), true), "{f:?}");

    t.h.neigh_del("v0", ip("10.1.0.2")).await.unwrap();
    expect(&mut s, "DelNeighbour 10.1.0.2", |e| match e {
        Event::DelNeighbour(n) if n.ip == ip("10.1.0.2") && n.index == v0 => Some(()),
        _ => None,
    })
    .await;
    t.h.fdb_del(&FdbEntry::new("vx0", fm).dst(ip("192.0.2.7")).self_())
        .await
        .unwrap();
    expect(&mut s, "DelFdb 02:00:00:00:07:01", |e| match e {
        Event::DelFdb(f) if f.mac == fm && f.index == vx0 => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn other_namespaces_are_not_seen() {
    let a = TestNs::new("eva1").await;
    let b = TestNs::new("evb1").await;
    let mut s = a.h.subscribe(&[EventKind::Link]).await.unwrap();

    b.h.link_add(&Veth::new("other0", "other1")).await.unwrap();
    b.h.link_set_up("other0").await.unwrap();
    a.h.link_add(&Veth::new("mark0", "mark1")).await.unwrap();

    let foreign = |e: &Event| match e {
        Event::NewLink(l) | Event::DelLink(l) => l.name.starts_with("other"),
        _ => false,
    };
    let mut early = Vec::new();
    expect(&mut s, "NewLink mark0", |e| {
        if foreign(e) {
            early.push(format!("{e:?}"));
        }
        matches!(e, Event::NewLink(l) if l.name == "mark0").then_some(())
    })
    .await;
    assert!(early.is_empty(), "events from another namespace: {early:?}");
    b.h.link_del("other0").await.unwrap();
    // A marker after it, in a: had b's delete reached this stream, its events would come before
    // the marker's (one socket delivers in order), so no fixed wait is needed.
    a.h.link_del("mark0").await.unwrap();
    let mut later = Vec::new();
    expect(&mut s, "DelLink mark0", |e| {
        if foreign(e) {
            later.push(format!("{e:?}"));
        }
        matches!(e, Event::DelLink(l) if l.name == "mark0").then_some(())
    })
    .await;
    assert!(later.is_empty(), "events from another namespace: {later:?}");
}

#[tokio::test]
async fn kinds_not_asked_for_are_not_delivered() {
    let t = TestNs::new("evk").await;
    let mut s = t.h.subscribe(&[EventKind::Address]).await.unwrap();
    // A link event (not subscribed) followed by an address event (subscribed).
    t.h.link_add(&Veth::new("v0", "v1")).await.unwrap();
    t.h.addr_add("v0", net("10.3.0.1/24")).await.unwrap();
    let mut links = Vec::new();
    expect(&mut s, "NewAddress 10.3.0.1/24", |e| match e {
        Event::NewAddress(a) if a.prefix == net("10.3.0.1/24") => Some(()),
        Event::NewLink(_) | Event::DelLink(_) => {
            links.push(format!("{e:?}"));
            None
        }
        _ => None,
    })
    .await;
    assert!(links.is_empty(), "link events on an Address-only stream: {links:?}");
}

/// Subscriber sockets (multicast groups joined) in this namespace, from
/// `/proc/net/netlink`: protocol 0 (NETLINK_ROUTE) with non-zero groups.
fn route_subscribers(t: &TestNs) -> usize {
    t.sh("cat /proc/net/netlink")
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == "0" && u32::from_str_radix(f[3], 16).is_ok_and(|g| g != 0)
        })
        .count()
}

#[tokio::test]
async fn dropping_the_stream_closes_its_socket() {
    let t = TestNs::new("evd").await;
    assert_eq!(route_subscribers(&t), 0);
    let mut s = t.h.subscribe(&[EventKind::Link, EventKind::Route]).await.unwrap();
    assert_eq!(route_subscribers(&t), 1);
    // Let the background task deliver what the kernel announced (both ends of the pair), so it
    // is idle, waiting for the next notification, when the stream drops.
    t.h.link_add(&Veth::new("v0", "v1")).await.unwrap();
    let mut want = vec!["v0", "v1"];
    while !want.is_empty() {
        let name = expect(&mut s, &format!("NewLink for {want:?}"), |e| match e {
            Event::NewLink(l) if want.contains(&l.name.as_str()) => Some(l.name.clone()),
            _ => None,
        })
        .await;
        want.retain(|n| *n != name);
    }
    drop(s);
    // No event happens after the drop: the socket must go away by itself,
    // not linger until the next notification (it would pin the namespace).
    wait_until_async(
        Duration::from_secs(5),
        "the subscriber socket to close after the stream was dropped",
        async || route_subscribers(&t) == 0,
    )
    .await;
    // The handle keeps working.
    t.h.link_del("v0").await.unwrap();
}

/// Wait (at most [`WAIT`]) until `sock`'s descriptor is readable, with poll(2).
fn readable(sock: &EventSocket) -> bool {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the call.
    let n = unsafe { libc::poll(&mut pfd, 1, WAIT.as_millis() as i32) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

/// The events `sock` holds now, read without blocking until it has none.
fn drain(sock: &mut EventSocket) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(ev) = sock.try_next().expect("read the event socket") {
        out.push(ev);
    }
    out
}

#[tokio::test]
async fn event_socket_is_polled_then_read_without_blocking() {
    let t = TestNs::new("evfd").await;
    let mut sock = t.h.subscribe_fd(&[EventKind::Link, EventKind::Address]).await.unwrap();
    // Nothing happened yet: nothing to read, and reading does not block.
    assert!(sock.try_next().unwrap().is_none());
    let mut idle = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; timeout 0.
    assert_eq!(unsafe { libc::poll(&mut idle, 1, 0) }, 0, "readable before any change");

    t.h.link_add(&Veth::new("v0", "v1")).await.unwrap();
    let mut want = vec!["v0", "v1"];
    let mut seen = Vec::new();
    while !want.is_empty() {
        assert!(
            readable(&sock),
            "no NewLink for {want:?} within {WAIT:?}; saw {seen:#?}"
        );
        for ev in drain(&mut sock) {
            if let Event::NewLink(l) = &ev {
                want.retain(|n| *n != l.name);
            }
            seen.push(format!("{ev:?}").chars().take(160).collect::<String>());
        }
    }
    // Drained: the descriptor is quiet again.
    // SAFETY: as above.
    assert_eq!(unsafe { libc::poll(&mut idle, 1, 0) }, 0, "readable after draining");

    t.h.addr_add("v0", net("10.1.0.1/24")).await.unwrap();
    let mut got = None;
    while got.is_none() {
        assert!(readable(&sock), "no NewAddress within {WAIT:?}");
        got = drain(&mut sock).into_iter().find_map(|e| match e {
            Event::NewAddress(a) if a.prefix == net("10.1.0.1/24") => Some(a),
            _ => None,
        });
    }
    assert_eq!(got.unwrap().index, t.h.link_index("v0").await.unwrap());

    // Dropping the socket ends the subscription: no subscriber is left in the namespace.
    assert_eq!(route_subscribers(&t), 1);
    drop(sock);
    // Closed at once; a process another test forks at that moment holds a copy of every
    // descriptor until it execs, so the listing may show it a moment longer.
    wait_until_async(
        Duration::from_secs(5),
        "the subscriber socket to close after the EventSocket was dropped",
        async || route_subscribers(&t) == 0,
    )
    .await;
}
