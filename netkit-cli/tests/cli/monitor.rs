//! `netkit monitor`: a child process subscribed in a test namespace, changes made there with
//! `ip -n NS`, and the lines it prints checked against iproute2's view.
//!
//! No sleeps: the monitor writes `netkit: note: monitoring … in netns NS` on stderr once it is
//! subscribed, and the tests wait for that line (every change made after it is reported), then
//! for the events themselves, each with a bounded deadline.

use std::io::{BufRead, BufReader};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use netkit_test_support::{ip, wait_for, HostNs, KillOnDrop};
use serde_json::Value;

use crate::common::{fails, ip_json, ok, ok_json_n, ok_n, same_link, NsName};

const DEADLINE: Duration = Duration::from_secs(10);

/// A running `netkit ARGS` whose subscription exists.
struct Monitor {
    child: KillOnDrop,
    /// Its stdout, until [`Monitor::lines`] takes it.
    stdout: Option<ChildStdout>,
    /// Its stderr lines after the note.
    stderr: Receiver<String>,
}

impl Monitor {
    /// Start `netkit ARGS` and wait for its note that it is subscribed.
    fn start(args: &[&str]) -> Self {
        let mut child = KillOnDrop::new(
            Command::new(env!("CARGO_BIN_EXE_netkit"))
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start netkit monitor"),
        );
        let stdout = child.stdout.take();
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        let note = stderr
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("netkit {args:?} never said it was monitoring: {e}"));
        assert!(note.starts_with("netkit: note: monitoring "), "{note}");
        Self { child, stdout, stderr }
    }

    /// Its stdout, line by line as they come.
    fn lines(&mut self) -> Receiver<String> {
        lines_of(self.stdout.take().expect("stdout not taken yet"))
    }

    /// Wait (bounded) for it to exit; its exit code and what it still wrote on stderr.
    fn exit(mut self) -> (i32, Vec<String>) {
        let status = wait_for(DEADLINE, "netkit monitor to exit", || match self.child.try_wait() {
            Ok(Some(s)) => Ok(s),
            other => Err(format!("{other:?}")),
        });
        let code = status.code().unwrap_or_else(|| panic!("killed by a signal: {status}"));
        (code, self.stderr.try_iter().collect())
    }
}

/// The lines `r` gives, from a thread, as they come.
fn lines_of(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line, within the deadline.
#[track_caller]
fn next(lines: &Receiver<String>, what: &str) -> String {
    lines
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|e| panic!("no line for {what}: {e}"))
}

/// `ip -n NS ARGS`.
fn ip_n(ns: &str, args: &[&str]) {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    ip(&all);
}

/// `v` without the keys of the monitor's envelope.
fn object(v: &Value) -> Value {
    let mut m = v.as_object().expect("an object").clone();
    m.remove("event");
    m.remove("object");
    Value::Object(m)
}

#[test]
fn json_events_arrive_in_order_with_ip_keys() {
    let host = HostNs::new("monj");
    let ns = host.name();
    let mut mon = Monitor::start(&["-n", ns, "-j", "monitor", "--count", "9", "link", "addr", "route"]);
    let lines = mon.lines();

    ip_n(ns, &["link", "add", "br0", "type", "bridge"]);
    let ip_link = ip_json(ns, &["link", "show", "br0"]).expect("ip -j link show br0")[0].clone();
    ip_n(ns, &["addr", "add", "10.9.0.1/24", "dev", "br0"]);
    let ip_addr = ip_json(ns, &["addr", "show", "br0"]).expect("ip -j addr show br0")[0].clone();
    ip_n(ns, &["route", "add", "blackhole", "10.20.0.0/16"]);
    let ip_route = ip_json(ns, &["route", "show", "10.20.0.0/16"]).expect("ip -j route show")[0].clone();
    ip_n(ns, &["route", "del", "blackhole", "10.20.0.0/16"]);
    ip_n(ns, &["link", "set", "br0", "mtu", "1400"]);
    ip_n(ns, &["link", "del", "br0"]);

    let events: Vec<Value> = (0..9)
        .map(|i| {
            let line = next(&lines, &format!("event {i}"));
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        })
        .collect();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["object"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("new", "link"),
            ("new", "addr"),
            ("new", "route"),
            ("new", "route"),
            ("del", "route"),
            ("new", "link"),
            ("del", "addr"),
            ("del", "route"),
            ("del", "link"),
        ],
        "{events:#?}"
    );
    // The link as ip -j link show printed it then; later its new mtu, then its removal.
    same_link(&events[0], &ip_link).unwrap();
    assert_eq!(events[0]["linkinfo"]["info_kind"], "bridge");
    assert_eq!(
        (events[5]["ifname"].as_str(), events[5]["mtu"].as_u64()),
        (Some("br0"), Some(1400))
    );
    assert_eq!(events[8]["ifindex"], ip_link["ifindex"]);
    // The address: the keys of ip -j addr show's entry, with the link's index and name.
    let info = &ip_addr["addr_info"][0];
    for (k, v) in object(&events[1]).as_object().unwrap() {
        match k.as_str() {
            "ifindex" | "ifname" => assert_eq!(v, &ip_addr[k], "{k}"),
            _ => assert_eq!(v, &info[k], "{k}: {} vs {info}", events[1]),
        }
    }
    assert_eq!(object(&events[1]), object(&events[6]));
    // The kernel's local route for it, then the blackhole route exactly as ip -j shows it.
    let local = &events[2];
    assert_eq!(
        (&local["type"], &local["dst"], &local["table"], &local["dev"]),
        (&"local".into(), &"10.9.0.1".into(), &"local".into(), &"br0".into())
    );
    assert_eq!(object(&events[3]), ip_route);
    assert_eq!(object(&events[4]), ip_route);
    assert_eq!(object(&events[7]), object(local));

    // After --count events: exit 0 without a word.
    let (code, stderr) = mon.exit();
    assert_eq!((code, stderr), (0, Vec::<String>::new()));
    assert!(
        lines.recv_timeout(Duration::from_millis(1)).is_err(),
        "nothing after the 9th"
    );
}

#[test]
fn text_lines_until_a_signal() {
    for signal in ["INT", "TERM"] {
        let host = HostNs::new("mont");
        let ns = host.name();
        ip_n(ns, &["link", "add", "br0", "type", "bridge"]);
        let index = ip_json(ns, &["link", "show", "br0"]).expect("br0")[0]["ifindex"].clone();
        let mut mon = Monitor::start(&["-n", ns, "monitor", "addr", "route", "neigh"]);
        let lines = mon.lines();

        ip_n(ns, &["addr", "add", "10.9.0.1/24", "dev", "br0"]);
        assert_eq!(
            next(&lines, "the address"),
            format!("[ADDR] {index}: br0 inet 10.9.0.1/24 scope global br0")
        );
        assert_eq!(
            next(&lines, "its local route"),
            "[ROUTE] local 10.9.0.1 dev br0 table local proto kernel scope host src 10.9.0.1"
        );
        ip_n(ns, &["route", "add", "blackhole", "10.20.0.0/16"]);
        assert_eq!(next(&lines, "the route"), "[ROUTE] blackhole 10.20.0.0/16");
        ip_n(ns, &["route", "del", "blackhole", "10.20.0.0/16"]);
        assert_eq!(next(&lines, "its removal"), "[ROUTE] Deleted blackhole 10.20.0.0/16");
        ip_n(
            ns,
            &[
                "neigh",
                "add",
                "10.9.0.2",
                "lladdr",
                "02:00:00:00:00:02",
                "dev",
                "br0",
                "nud",
                "permanent",
            ],
        );
        assert_eq!(
            next(&lines, "the neighbour"),
            "[NEIGH] 10.9.0.2 dev br0 lladdr 02:00:00:00:00:02 PERMANENT"
        );

        // A signal ends it: exit 0 (being stopped is how a monitor ends), nothing on stderr.
        let pid = mon.child.id().to_string();
        let kill = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(kill.success());
        let (code, stderr) = mon.exit();
        assert_eq!((code, stderr), (0, Vec::<String>::new()), "SIG{signal}");
    }
}

/// The first line `lines` gives that `pick` keeps, within the deadline (others are skipped).
#[track_caller]
fn first_where(lines: &Receiver<String>, what: &str, pick: impl Fn(&str) -> bool) -> String {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no line for {what}: {e}"));
        if pick(&line) {
            return line;
        }
    }
}

/// A neighbour's and an FDB entry's events are what `neigh show` and `fdb show` print for the
/// entry: the same JSON object with `event` and `object` in front, the same line after the tag.
#[test]
fn neighbour_and_fdb_events_are_their_show_entries() {
    let host = HostNs::new("monfdb");
    let ns = host.name();
    ok_n(ns, "link add br0 type bridge");
    ok_n(ns, "link add e0 type veth peer name e1");
    ok_n(ns, "link set e0 master br0");
    let mut json = Monitor::start(&["-n", ns, "-j", "monitor", "neigh"]);
    let mut text = Monitor::start(&["-n", ns, "monitor", "neigh"]);
    let (json_lines, text_lines) = (json.lines(), text.lines());

    let (ip, mac) = ("10.9.0.2", "02:00:00:00:00:09");
    ok(&[
        "-n",
        ns,
        "neigh",
        "add",
        ip,
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        "br0",
    ]);
    ok(&["-n", ns, "fdb", "add", mac, "dev", "e0", "master", "static"]);

    let neigh = ok_json_n(ns, "neigh show");
    let neigh = neigh
        .as_array()
        .and_then(|l| l.iter().find(|n| n["dst"] == ip))
        .unwrap_or_else(|| panic!("no {ip} in {neigh}"));
    let fdb = ok_json_n(ns, "fdb show");
    let fdb = fdb
        .as_array()
        .and_then(|l| l.iter().find(|f| f["mac"] == mac))
        .unwrap_or_else(|| panic!("no {mac} in {fdb}"));
    let event = |what: &str, object: &str, key: &str, value: &str| -> Value {
        let line = first_where(&json_lines, what, |l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            v["object"] == object && v[key] == value
        });
        serde_json::from_str(&line).unwrap()
    };
    let n = event("the neighbour", "neigh", "dst", ip);
    assert_eq!((&n["event"], object(&n)), (&"new".into(), neigh.clone()), "{n}");
    let f = event("the FDB entry", "fdb", "mac", mac);
    assert_eq!((&f["event"], object(&f)), (&"new".into(), fdb.clone()), "{f}");

    let show_line = |args: &[&str], key: &str| -> String {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        let out = ok(&all);
        out.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in {out}"))
            .trim_end()
            .to_string()
    };
    let want = format!("[NEIGH] {}", show_line(&["neigh", "show"], ip));
    assert_eq!(
        first_where(&text_lines, "the neighbour", |l| l.starts_with("[NEIGH] ")),
        want
    );
    let want = format!("[FDB] {}", show_line(&["fdb", "show"], mac));
    assert_eq!(
        first_where(&text_lines, "the FDB entry", |l| l
            .starts_with(&format!("[FDB] {mac} "))),
        want
    );
}

#[test]
fn a_closed_stdout_ends_it() {
    let host = HostNs::new("monpipe");
    let ns = host.name();
    let mut mon = Monitor::start(&["-n", ns, "monitor", "link"]);
    drop(mon.stdout.take());
    // The next event it writes finds no reader (EPIPE): it exits 0, without an error. Changes
    // are made until it has (the first one may be written before the pipe is noticed closed).
    let mut mtu = 1500;
    wait_for(DEADLINE, "netkit monitor to notice its closed stdout", || {
        mtu = if mtu == 1500 { 1400 } else { 1500 };
        ip_n(ns, &["link", "set", "lo", "mtu", &mtu.to_string()]);
        match mon.child.try_wait() {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let (code, stderr) = mon.exit();
    assert_eq!((code, stderr), (0, Vec::<String>::new()));
}

#[test]
fn monitor_errors() {
    let host = HostNs::new("monerr");
    let ns = host.name();
    for args in [
        &["monitor", "sideways"][..],
        &["monitor", "--count", "0"],
        &["monitor", "--count", "x", "link"],
    ] {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        let r = crate::common::run(&all);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    let gone = NsName::new("mongone");
    let e = fails(&["-n", &gone.0, "monitor", "--count", "1"], 1);
    assert!(e.contains(&gone.0), "{e}");
}
