//! `netkit monitor [link] [addr] [route] [neigh]`: changes printed as they happen, as
//! `ip monitor` prints them, on netkit-core's events ([`Handle::subscribe`]).
//!
//! No object (or `all`) watches all four. Once the subscription exists, a note goes to stderr,
//! `netkit: note: monitoring link addr route neigh in netns NS` (left out with `-q`): every
//! change made after that line is reported, so a script (or a test) waits for it instead of
//! sleeping. netkit then runs until SIGINT or SIGTERM (exit 0: being stopped is how a monitor
//! ends), until stdout is closed (exit 0, noticed when the next event is written: `EPIPE`), or
//! until `--count N` events were printed.
//!
//! Text: one line per event, flushed as it is written: a tag (`[LINK]`, `[ADDR]`, `[ROUTE]`,
//! `[NEIGH]`, `[FDB]`), `Deleted ` for a removal, then the object as `ip` shows it, joined onto
//! one line (`[LINK] Deleted 5: v0@v1: <BROADCAST,MULTICAST> mtu 1500 … link/ether …`;
//! `[ADDR] 5: v0 inet 10.0.0.1/24 brd 10.0.0.255 scope global v0`). Neighbours and FDB entries
//! are the lines `netkit neigh show` and `netkit fdb show` print (the printers of
//! [`crate::neigh`] and [`crate::fdb`]), with the device named. Lost notifications (the socket's
//! buffer overflowed) print `[OVERRUN] events were lost: list the state again`.
//!
//! JSON (`-j`; `ip -j monitor` has none) is JSON Lines: one object per event,
//! `{"event": "new"|"del", "object": "link"|"addr"|"route"|"neigh"|"fdb", …}` followed by the
//! object's keys as netkit's listings print them (the keys of `ip -j`/`bridge -j`): a link's of
//! `link show`; for an address `ifindex`, `ifname` and the keys of one `addr_info` entry of
//! `addr show` (`family`, `local`, `prefixlen`, `scope`, …); a route's of `route show` (with
//! `table` for tables other than main); a neighbour's of `neigh show` (`dst`, `dev`, `lladdr`,
//! `state`, and `router`/`proxy` as null keys); an FDB entry's of `fdb show` (`mac`, `ifname`,
//! `vlan`, `dst`, `port`, `vni`, `flags`, `master`, `state`). `"new"` is also a change of an
//! existing object (the kernel reports both alike). Lost notifications: `{"event": "overrun"}`.
//! `--count` counts printed lines, overruns included.

use std::collections::HashSet;
use std::io::Write;

use futures::StreamExt;
use netkit_core::events::{Event, EventKind};
use netkit_core::neigh::{FdbInfo, NeighInfo};
use netkit_core::{Address, Handle, Link, RouteInfo};
use serde_json::{json, Map, Value};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cli::{Global, MonitorArgs, MonitorObject};
use crate::error::CliError;
use crate::fdb::{fdb_json, fdb_text};
use crate::neigh::{neigh_json, neigh_text};
use crate::output::{addr_json, addr_text, link_json, link_text, route_json, route_text, IfNames, Output, RouteFilter};
use crate::Session;

/// Run `monitor` in the namespace of `-n` (or the current one).
pub async fn run(session: &mut Session, global: &Global, out: &Output, args: MonitorArgs) -> Result<(), CliError> {
    let objects = objects(&args.objects);
    let ns = global.netns.as_deref().unwrap_or("(current)");
    let h = session.handle(global.netns.as_deref()).await?;
    // Signals first: from the note on, SIGINT and SIGTERM end the monitor cleanly.
    let mut stop = Stop::new()?;
    let kinds: Vec<EventKind> = objects.iter().map(|o| kind(*o)).collect();
    let mut events = h.subscribe(&kinds).await?;
    let mut names = IfNames::of(&h.link_list().await?);
    let watched: Vec<&str> = objects.iter().map(|o| object_name(*o)).collect();
    out.note(&format!("monitoring {} in netns {ns}", watched.join(" ")));
    let mut looked_up = HashSet::new();
    let mut printed = 0u64;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = stop.wait() => return Ok(()),
        };
        let Some(event) = event else {
            return Err(CliError::Io {
                what: format!("monitor netns {ns}"),
                cause: std::io::Error::other("the kernel's event socket closed"),
            });
        };
        learn_names(&h, &event, &mut names, &mut looked_up).await;
        let line = if out.json {
            event_json(&event, &names).to_string()
        } else {
            event_text(&event, &names)
        };
        match write_line(&line) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(cause) => {
                return Err(CliError::Io {
                    what: "write an event to stdout".into(),
                    cause,
                })
            }
        }
        printed += 1;
        if args.count == Some(printed) {
            return Ok(());
        }
    }
}

/// The objects asked for, in `ip monitor`'s order, each once; none or `all`: all four.
pub fn objects(asked: &[MonitorObject]) -> Vec<MonitorObject> {
    use MonitorObject::*;
    [Link, Addr, Route, Neigh]
        .into_iter()
        .filter(|o| asked.is_empty() || asked.contains(&All) || asked.contains(o))
        .collect()
}

/// The netkit-core event kind of an object (`all` never gets here: see [`objects`]).
fn kind(o: MonitorObject) -> EventKind {
    match o {
        MonitorObject::Link | MonitorObject::All => EventKind::Link,
        MonitorObject::Addr => EventKind::Address,
        MonitorObject::Route => EventKind::Route,
        MonitorObject::Neigh => EventKind::Neighbour,
    }
}

fn object_name(o: MonitorObject) -> &'static str {
    match o {
        MonitorObject::Link => "link",
        MonitorObject::Addr => "addr",
        MonitorObject::Route => "route",
        MonitorObject::Neigh => "neigh",
        MonitorObject::All => "all",
    }
}

/// SIGINT or SIGTERM, whichever comes first.
struct Stop {
    int: Signal,
    term: Signal,
}

impl Stop {
    fn new() -> Result<Self, CliError> {
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|cause| CliError::Io {
                what: format!("listen for {name}"),
                cause,
            })
        };
        Ok(Self {
            int: listen(SignalKind::interrupt(), "SIGINT")?,
            term: listen(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Write `line` and a newline on stdout, flushed (the caller tells a closed pipe apart).
fn write_line(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Keep the names of links current: a link event teaches its own; an index the other events
/// name and netkit does not know yet (a link made since the last listing) lists the links
/// again, once per index (a deleted link's index stays unknown, and prints as `ifN`).
async fn learn_names(h: &Handle, event: &Event, names: &mut IfNames, looked_up: &mut HashSet<u32>) {
    if let Event::NewLink(l) | Event::DelLink(l) = event {
        names.learn(l);
        return;
    }
    let missing = indices(event)
        .into_iter()
        .any(|i| i != 0 && !names.knows(i) && looked_up.insert(i));
    if missing {
        if let Ok(links) = h.link_list().await {
            for l in &links {
                names.learn(l);
            }
        }
    }
}

/// The link indices an event names.
fn indices(event: &Event) -> Vec<u32> {
    match event {
        Event::NewAddress(a) | Event::DelAddress(a) => vec![a.index],
        Event::NewRoute(r) | Event::DelRoute(r) => r.oif.into_iter().chain(r.nexthops.iter().map(|n| n.oif)).collect(),
        Event::NewNeighbour(n) | Event::DelNeighbour(n) => vec![n.index],
        Event::NewFdb(f) | Event::DelFdb(f) => f.master.into_iter().chain([f.index]).collect(),
        _ => Vec::new(),
    }
}

/// One event's object, and whether it was deleted.
enum Object<'a> {
    Link(&'a Link),
    Addr(&'a Address),
    Route(&'a RouteInfo),
    Neigh(&'a NeighInfo),
    Fdb(&'a FdbInfo),
}

/// `(deleted, object)`; `None` for an overrun.
fn split(event: &Event) -> Option<(bool, Object<'_>)> {
    Some(match event {
        Event::NewLink(l) => (false, Object::Link(l)),
        Event::DelLink(l) => (true, Object::Link(l)),
        Event::NewAddress(a) => (false, Object::Addr(a)),
        Event::DelAddress(a) => (true, Object::Addr(a)),
        Event::NewRoute(r) => (false, Object::Route(r)),
        Event::DelRoute(r) => (true, Object::Route(r)),
        Event::NewNeighbour(n) => (false, Object::Neigh(n)),
        Event::DelNeighbour(n) => (true, Object::Neigh(n)),
        Event::NewFdb(f) => (false, Object::Fdb(f)),
        Event::DelFdb(f) => (true, Object::Fdb(f)),
        Event::Overrun => return None,
    })
}

/// The text line of an event (see the module doc).
pub fn event_text(event: &Event, names: &IfNames) -> String {
    let Some((deleted, object)) = split(event) else {
        return "[OVERRUN] events were lost: list the state again".into();
    };
    let (tag, body) = match object {
        Object::Link(l) => ("LINK", link_text(l, names)),
        Object::Addr(a) => (
            "ADDR",
            format!("{}: {} {}", a.index, names.name(a.index), addr_text(a).trim_start()),
        ),
        Object::Route(r) => ("ROUTE", route_text(r, names, RouteFilter::default())),
        Object::Neigh(n) => ("NEIGH", neigh_text(n, names, true)),
        Object::Fdb(f) => ("FDB", fdb_text(f, names, true)),
    };
    let body: Vec<&str> = body.lines().map(str::trim).collect();
    format!("[{tag}] {}{}", if deleted { "Deleted " } else { "" }, body.join(" "))
}

/// The JSON object of an event (see the module doc).
pub fn event_json(event: &Event, names: &IfNames) -> Value {
    let Some((deleted, object)) = split(event) else {
        return json!({ "event": "overrun" });
    };
    let mut m = Map::new();
    m.insert("event".into(), json!(if deleted { "del" } else { "new" }));
    let (name, fields) = match object {
        Object::Link(l) => ("link", link_json(l, names)),
        Object::Addr(a) => {
            let mut f = Map::new();
            f.insert("ifindex".into(), json!(a.index));
            f.insert("ifname".into(), json!(names.name(a.index)));
            f.extend(fields(addr_json(a)));
            ("addr", f)
        }
        Object::Route(r) => ("route", fields(route_json(r, names, RouteFilter::default()))),
        Object::Neigh(n) => ("neigh", fields(neigh_json(n, names, true))),
        Object::Fdb(f) => ("fdb", fields(fdb_json(f, names, true))),
    };
    m.insert("object".into(), json!(name));
    m.extend(fields);
    Value::Object(m)
}

/// The keys of a printer's JSON object (every printer gives an object; anything else has none).
fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netkit_core::neigh::NeighState;
    use MonitorObject::*;

    #[test]
    fn no_object_or_all_is_every_one() {
        assert_eq!(objects(&[]), [Link, Addr, Route, Neigh]);
        assert_eq!(objects(&[All]), [Link, Addr, Route, Neigh]);
        assert_eq!(objects(&[Route, Link, Route]), [Link, Route]);
        let kinds: Vec<EventKind> = objects(&[Neigh, Addr]).into_iter().map(kind).collect();
        assert_eq!(kinds, [EventKind::Address, EventKind::Neighbour]);
    }

    /// A neighbour or FDB event is the entry as `neigh show`/`fdb show` print it (their
    /// printers), with the tag or the `event`/`object` keys in front.
    #[test]
    fn neighbours_and_fdb_entries_read_like_their_show_verbs() {
        let names = IfNames::default();
        let n = NeighInfo {
            index: 3,
            ip: "10.0.0.2".parse().unwrap(),
            mac: Some("02:00:00:00:00:02".parse().unwrap()),
            state: NeighState::Permanent,
            proxy: false,
            router: true,
        };
        let ev = Event::DelNeighbour(n.clone());
        assert_eq!(
            event_text(&ev, &names),
            "[NEIGH] Deleted 10.0.0.2 dev if3 lladdr 02:00:00:00:00:02 router PERMANENT"
        );
        assert_eq!(
            event_text(&ev, &names),
            format!("[NEIGH] Deleted {}", neigh_text(&n, &names, true).trim_end())
        );
        let mut want = json!({"event": "del", "object": "neigh"});
        want.as_object_mut()
            .unwrap()
            .extend(fields(neigh_json(&n, &names, true)));
        assert_eq!(event_json(&ev, &names), want);
        assert_eq!(
            event_json(&ev, &names),
            json!({"event": "del", "object": "neigh", "dst": "10.0.0.2", "dev": "if3",
                   "lladdr": "02:00:00:00:00:02", "router": null, "state": ["PERMANENT"]})
        );

        // A learned bridge entry: bridge prints its empty state after a blank; the line has none.
        let f = FdbInfo {
            index: 4,
            mac: "02:00:00:00:00:05".parse().unwrap(),
            dst: None,
            vlan: None,
            vni: None,
            master: Some(2),
            is_self: false,
            permanent: false,
            state: NeighState::Reachable,
            port: None,
            router: false,
            extern_learn: false,
            offloaded: false,
            sticky: false,
        };
        let ev = Event::NewFdb(f.clone());
        assert_eq!(event_text(&ev, &names), "[FDB] 02:00:00:00:00:05 dev if4 master if2");
        let mut want = json!({"event": "new", "object": "fdb"});
        want.as_object_mut().unwrap().extend(fields(fdb_json(&f, &names, true)));
        assert_eq!(event_json(&ev, &names), want);
        assert_eq!(
            event_json(&ev, &names),
            json!({"event": "new", "object": "fdb", "mac": "02:00:00:00:00:05", "ifname": "if4",
                   "flags": [], "master": "if2", "state": ""})
        );

        assert_eq!(event_json(&Event::Overrun, &names), json!({"event": "overrun"}));
        assert!(event_text(&Event::Overrun, &names).starts_with("[OVERRUN]"));
    }
}
