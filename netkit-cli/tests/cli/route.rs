//! `netkit route add|replace|del|show|get`, checked against `ip -j route`.

use netkit_test_support::HostNs;
use serde_json::Value;

use crate::common::{agree, fails, ip_json, ok, ok_json};

/// A namespace with a veth pair r0/r1 up (carrier on) and 10.55.0.1/24 on r0.
fn routed() -> HostNs {
    let host = HostNs::new("route");
    let ns = host.name();
    ok(&["-n", ns, "link", "add", "r0", "type", "veth", "peer", "name", "r1"]);
    ok(&["-n", ns, "link", "set", "r0", "up"]);
    ok(&["-n", ns, "link", "set", "r1", "up"]);
    ok(&["-n", ns, "addr", "add", "10.55.0.1/24", "dev", "r0"]);
    host
}

/// `netkit -j route show ARGS` prints exactly what `ip -j route show ARGS` prints.
#[track_caller]
fn assert_routes_match_ip(ns: &str, args: &[&str]) -> Value {
    // Options (-4) go before the object, for both.
    let (opts, args): (Vec<&str>, Vec<&str>) = args.iter().partition(|a| a.starts_with('-'));
    let mut all = vec!["-n", ns];
    all.extend_from_slice(&opts);
    all.extend_from_slice(&["route", "show"]);
    all.extend_from_slice(&args);
    let mut ip_args = opts.clone();
    ip_args.extend_from_slice(&["route", "show"]);
    ip_args.extend_from_slice(&args);
    agree("netkit -j route show to match ip -j route show", || {
        let ours = ok_json(&all);
        let ip = ip_json(ns, &ip_args).unwrap();
        if ours == ip {
            Ok(ours)
        } else {
            Err(format!("netkit {ours}\nip {ip}"))
        }
    })
}

#[test]
fn add_replace_del_show() {
    let host = routed();
    let ns = host.name();
    ok(&["-n", ns, "route", "add", "default", "via", "10.55.0.254", "dev", "r0"]);
    ok(&[
        "-n",
        ns,
        "route",
        "add",
        "10.56.0.0/16",
        "via",
        "10.55.0.253",
        "metric",
        "100",
    ]);
    ok(&[
        "-n",
        ns,
        "route",
        "add",
        "10.57.0.0/16",
        "via",
        "10.55.0.252",
        "table",
        "100",
    ]);
    ok(&[
        "-n",
        ns,
        "route",
        "add",
        "192.0.2.0/24",
        "via",
        "198.51.100.1",
        "dev",
        "r0",
        "onlink",
    ]);
    ok(&["-n", ns, "route", "add", "10.58.0.9", "dev", "r0"]);

    let main = assert_routes_match_ip(ns, &[]);
    let default = main.as_array().unwrap().iter().find(|r| r["dst"] == "default").unwrap();
    assert_eq!(
        (&default["gateway"], &default["dev"]),
        (&Value::from("10.55.0.254"), &Value::from("r0"))
    );
    let onlink = main
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "192.0.2.0/24")
        .unwrap();
    assert_eq!(onlink["flags"], serde_json::json!(["onlink"]));
    assert!(
        main.as_array().unwrap().iter().any(|r| r["dst"] == "10.58.0.9"),
        "{main}"
    );
    // A listing of one table or one device leaves that key out, as ip does.
    let t100 = assert_routes_match_ip(ns, &["table", "100"]);
    assert_eq!(t100[0]["dst"], "10.57.0.0/16");
    assert!(t100[0].get("table").is_none(), "{t100}");
    // Every table, IPv4 and IPv6 (as ip, `table all` without -4/-6 lists both).
    let every = assert_routes_match_ip(ns, &["table", "all"]);
    assert!(
        every.as_array().unwrap().iter().any(|r| r["dst"] == "fe80::/64"),
        "{every}"
    );
    let r = every
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "10.57.0.0/16")
        .unwrap();
    assert_eq!(r["table"], "100");
    let on_r0 = assert_routes_match_ip(ns, &["dev", "r0"]);
    assert!(
        on_r0.as_array().unwrap().iter().all(|r| r.get("dev").is_none()),
        "{on_r0}"
    );

    // Replace changes the gateway in place.
    ok(&[
        "-n",
        ns,
        "route",
        "replace",
        "10.56.0.0/16",
        "via",
        "10.55.0.200",
        "metric",
        "100",
    ]);
    let after = assert_routes_match_ip(ns, &[]);
    let r = after
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "10.56.0.0/16")
        .unwrap();
    assert_eq!(
        (&r["gateway"], &r["metric"]),
        (&Value::from("10.55.0.200"), &Value::from(100))
    );

    // Delete, then the text form.
    ok(&["-n", ns, "route", "del", "10.56.0.0/16", "metric", "100"]);
    ok(&["-n", ns, "route", "del", "10.57.0.0/16", "table", "100"]);
    assert!(!ok(&["-n", ns, "route", "show"]).contains("10.56.0.0"));
    assert_eq!(
        ip_json(ns, &["route", "show", "table", "100"]).unwrap(),
        Value::Array(vec![])
    );
    let text = ok(&["-n", ns, "route", "show"]);
    assert!(
        text.lines().any(|l| l == "default via 10.55.0.254 dev r0 proto static"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "10.55.0.0/24 dev r0 proto kernel scope link src 10.55.0.1"),
        "{text}"
    );

    // A gateway no connected route reaches: the kernel says no, exit 1.
    let e = fails(&["-n", ns, "route", "add", "10.59.0.0/16", "via", "203.0.113.1"], 1);
    assert!(e.contains("10.59.0.0/16") && e.contains(ns), "{e}");
}

#[test]
fn get_matches_ip() {
    let host = routed();
    let ns = host.name();
    ok(&["-n", ns, "route", "add", "default", "via", "10.55.0.254"]);
    for dst in ["10.55.0.9", "203.0.113.7"] {
        let ours = ok_json(&["-n", ns, "route", "get", dst]);
        let ip = ip_json(ns, &["route", "get", dst]).unwrap();
        for k in ["dst", "gateway", "dev", "prefsrc", "flags"] {
            assert_eq!(ours[0].get(k), ip[0].get(k), "{k} for {dst}: netkit {ours} ip {ip}");
        }
    }
    let text = ok(&["-n", ns, "route", "get", "203.0.113.7"]);
    assert!(
        text.starts_with("203.0.113.7 via 10.55.0.254 dev r0 src 10.55.0.1"),
        "{text}"
    );
    // No route: exit 1.
    ok(&["-n", ns, "route", "del", "default"]);
    let e = fails(&["-n", ns, "route", "get", "203.0.113.7"], 1);
    assert!(e.contains("203.0.113.7") && e.contains(ns), "{e}");
}

#[test]
fn ipv6_routes_with_dash_6() {
    let host = routed();
    let ns = host.name();
    ok(&["-n", ns, "addr", "add", "fd00:55::1/64", "dev", "r0", "nodad"]);
    ok(&["-n", ns, "route", "add", "fd00:56::/64", "via", "fd00:55::fe"]);
    ok(&["-6", "-n", ns, "route", "add", "default", "dev", "r0"]);
    let ours = assert_routes_match_ip(ns, &["-6"]);
    let ip = ip_json(ns, &["-6", "route", "show"]).unwrap();
    let key = |v: &Value| -> Vec<(String, String, String)> {
        let mut out: Vec<_> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["dst"].to_string(), r["gateway"].to_string(), r["dev"].to_string()))
            .collect();
        out.sort();
        out
    };
    assert_eq!(key(&ours), key(&ip));
    assert!(key(&ours)
        .iter()
        .any(|(d, g, _)| d == "\"fd00:56::/64\"" && g == "\"fd00:55::fe\""));
    // Without -6, only IPv4 (as ip).
    assert!(!ok(&["-n", ns, "route", "show"]).contains("fd00"));
}

#[test]
fn routes_on_a_link_without_carrier_are_linkdown_as_in_ip() {
    let host = HostNs::new("rldown");
    let ns = host.name();
    // x1 stays down: x0 is up without carrier.
    ok(&["-n", ns, "link", "add", "x0", "type", "veth", "peer", "name", "x1"]);
    ok(&["-n", ns, "addr", "add", "10.54.0.1/24", "dev", "x0"]);
    ok(&["-n", ns, "link", "set", "x0", "up"]);
    ok(&["-n", ns, "route", "add", "default", "via", "10.54.0.254", "dev", "x0"]);
    let routes = assert_routes_match_ip(ns, &[]);
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["flags"] == serde_json::json!(["linkdown"])),
        "{routes}"
    );
    assert!(ok(&["-n", ns, "route", "show"]).contains("default via 10.54.0.254 dev x0 proto static linkdown"));
}
