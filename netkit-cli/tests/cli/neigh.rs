//! `netkit neigh add|replace|del|show`, checked against `ip -j neigh show`.

use netkit_test_support::HostNs;
use serde_json::Value;

use crate::common::{agree, fails_n, ip_json, ok, ok_json, ok_n, run};

/// A namespace with a veth pair n0/n1, both up, and addresses on n0.
fn neighboured() -> HostNs {
    let host = HostNs::new("neigh");
    let ns = host.name();
    ok_n(ns, "link add n0 type veth peer name n1");
    ok_n(ns, "link set n0 up");
    ok_n(ns, "link set n1 up");
    ok_n(ns, "addr add 10.60.0.1/24 dev n0");
    ok_n(ns, "addr add fd00:60::1/64 dev n0 nodad");
    host
}

/// `netkit -j [OPTS] neigh show ARGS` prints what `ip -j [OPTS] neigh show ARGS` prints (polled:
/// the kernel moves learned entries between states on its own).
#[track_caller]
fn assert_neigh_match_ip(ns: &str, opts: &[&str], args: &[&str]) -> Value {
    let mut ours = vec!["-n", ns];
    ours.extend_from_slice(opts);
    ours.extend_from_slice(&["neigh", "show"]);
    ours.extend_from_slice(args);
    let mut ip = opts.to_vec();
    ip.extend_from_slice(&["neigh", "show"]);
    ip.extend_from_slice(args);
    agree("netkit -j neigh show to match ip -j neigh show", || {
        let mine = ok_json(&ours);
        let theirs = ip_json(ns, &ip).unwrap();
        if mine == theirs {
            Ok(mine)
        } else {
            Err(format!("{opts:?} {args:?}: netkit {mine}\nip {theirs}"))
        }
    })
}

fn entry<'a>(list: &'a Value, dst: &str) -> Option<&'a Value> {
    list.as_array().unwrap().iter().find(|n| n["dst"] == dst)
}

#[test]
fn add_replace_show_del_match_ip() {
    let host = neighboured();
    let ns = host.name();
    for words in [
        &["10.60.0.2", "lladdr", "02:00:00:00:60:02", "dev", "n0"][..],
        &["10.60.0.3", "lladdr", "02:00:00:00:60:03", "dev", "n0", "nud", "stale"][..],
        &[
            "to",
            "10.60.0.4",
            "lladdr",
            "02:00:00:00:60:04",
            "dev",
            "n0",
            "nud",
            "noarp",
        ][..],
        &["fd00:60::2", "lladdr", "02:00:00:00:60:06", "dev", "n0", "router"][..],
        &["proxy", "10.60.0.9", "dev", "n0"][..],
        &["fd00:60::9", "dev", "n0", "proxy"][..],
    ] {
        let mut all = vec!["-n", ns, "neigh", "add"];
        all.extend_from_slice(words);
        ok(&all);
    }
    let all = assert_neigh_match_ip(ns, &[], &[]);
    let n = entry(&all, "10.60.0.2").unwrap();
    assert_eq!((&n["dev"], &n["lladdr"]), (&"n0".into(), &"02:00:00:00:60:02".into()));
    assert_eq!(n["state"], serde_json::json!(["PERMANENT"]));
    assert!(entry(&all, "fd00:60::2").unwrap().get("router").is_some());
    // As ip: NOARP-only entries and proxies are not in the plain listing.
    assert!(
        entry(&all, "10.60.0.4").is_none() && entry(&all, "10.60.0.9").is_none(),
        "{all}"
    );
    let every = assert_neigh_match_ip(ns, &[], &["nud", "all"]);
    assert_eq!(
        entry(&every, "10.60.0.4").unwrap()["state"],
        serde_json::json!(["NOARP"])
    );
    let proxies = assert_neigh_match_ip(ns, &[], &["proxy"]);
    assert_eq!(proxies.as_array().unwrap().len(), 2, "{proxies}");
    assert!(entry(&proxies, "10.60.0.9").unwrap().get("proxy").is_some());
    // One device: its entries without `dev`; one family.
    let on_n0 = assert_neigh_match_ip(ns, &[], &["dev", "n0"]);
    assert!(
        on_n0.as_array().unwrap().iter().all(|n| n.get("dev").is_none()),
        "{on_n0}"
    );
    let v6 = assert_neigh_match_ip(ns, &["-6"], &[]);
    assert!(entry(&v6, "fd00:60::2").is_some() && entry(&v6, "10.60.0.2").is_none());
    assert_neigh_match_ip(ns, &["-4"], &["dev", "n0", "nud", "all"]);

    // Text, as ip prints it.
    let text = ok_n(ns, "neigh show dev n0");
    assert!(
        text.lines()
            .any(|l| l == "10.60.0.2 lladdr 02:00:00:00:60:02 PERMANENT "),
        "{text:?}"
    );
    assert!(ok_n(ns, "neigh show proxy").contains("10.60.0.9 dev n0 proxy \n"));

    // Replace changes the MAC and the state (and creates).
    ok_n(
        ns,
        "neigh replace 10.60.0.2 lladdr 02:00:00:00:60:22 dev n0 nud reachable",
    );
    ok_n(ns, "neigh change 10.60.0.5 lladdr 02:00:00:00:60:05 dev n0");
    let all = assert_neigh_match_ip(ns, &[], &[]);
    assert_eq!(entry(&all, "10.60.0.2").unwrap()["lladdr"], "02:00:00:00:60:22");
    assert!(entry(&all, "10.60.0.5").is_some());

    // Delete: gone from ip's view; again is a note naming the entry and the namespace.
    ok_n(ns, "neigh del 10.60.0.3 dev n0");
    ok_n(ns, "neigh del proxy 10.60.0.9 dev n0");
    assert!(entry(&ip_json(ns, &["neigh", "show"]).unwrap(), "10.60.0.3").is_none());
    assert!(entry(&ip_json(ns, &["neigh", "show", "proxy"]).unwrap(), "10.60.0.9").is_none());
    for args in [
        &["neigh", "del", "10.60.0.3", "dev", "n0"][..],
        &["neigh", "del", "10.60.0.9", "dev", "n0", "proxy"][..],
        &["neigh", "delete", "10.60.0.3", "dev", "nosuch0"][..],
    ] {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        let r = run(&all);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("nothing to delete") && r.stderr.contains(ns) && r.stderr.contains(args[2]),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert_neigh_match_ip(ns, &[], &[]);
}

#[test]
fn neigh_errors() {
    let host = neighboured();
    let ns = host.name();
    ok_n(ns, "neigh add 10.60.0.2 lladdr 02:00:00:00:60:02 dev n0");
    // Operation errors: exit 1, one line with the entry, the device, the namespace and the kernel.
    let e = fails_n(ns, "neigh add 10.60.0.2 lladdr 02:00:00:00:60:03 dev n0", 1);
    assert!(
        e.contains("10.60.0.2") && e.contains("n0") && e.contains(ns) && e.contains("EEXIST"),
        "{e}"
    );
    let e = fails_n(ns, "neigh add 10.60.0.7 lladdr 02:00:00:00:60:07 dev nosuch0", 1);
    assert!(e.contains("nosuch0") && e.contains(ns), "{e}");
    let e = fails_n(ns, "neigh show dev nosuch0", 1);
    assert!(e.contains("nosuch0") && e.contains(ns), "{e}");
    // Usage errors: exit 2, naming the word.
    for (args, want) in [
        ("neigh add 10.60.0.8 dev n0", "missing \"lladdr MAC\""),
        (
            "neigh add 10.60.0.8 lladdr 02:zz dev n0",
            "\"lladdr\" wants a MAC address",
        ),
        ("neigh add 10.60.0.8 lladdr", "\"lladdr\" needs a value"),
        ("neigh add 10.60.0.300 dev n0", "unexpected \"10.60.0.300\""),
        (
            "neigh add 10.60.0.8 lladdr 02:00:00:00:60:08 dev n0 nud x",
            "\"nud\" wants",
        ),
        (
            "neigh replace 10.60.0.8 lladdr 02:00:00:00:60:08",
            "missing \"dev DEV\"",
        ),
        ("neigh del 10.60.0.2", "neigh del: missing \"dev DEV\""),
        ("neigh show sideways", "neigh show: unexpected \"sideways\""),
        ("-6 neigh add 10.60.0.8 lladdr 02:00:00:00:60:08 dev n0", "is not an"),
    ] {
        let e = fails_n(ns, args, 2);
        assert!(e.contains(want), "{args}: {e}");
    }
    assert!(ok(&["neigh", "add", "--help"]).contains("lladdr MAC dev DEV"));
    assert!(ok(&["neigh", "del", "--help"]).contains("note, not an error"));
}
