//! `netkit fdb add|append|replace|del|show`, checked against iproute2's `bridge -j fdb show`;
//! and a batch of rule, neigh and fdb lines.

use netkit_test_support::{cmd, HostNs};
use serde_json::Value;

use crate::common::{agree, fails_n, ip_json, ok, ok_json, ok_n, run_n, run_with_input};

/// `bridge -j -n NS ARGS` as JSON; panics when it fails.
#[track_caller]
fn bridge_json(ns: &str, args: &[&str]) -> Value {
    cmd::bridgej(ns, args).unwrap_or_else(|| panic!("bridge -j -n {ns} {args:?} failed"))
}

/// `bridge -n NS ARGS` (text).
fn bridge_text(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    cmd::bridge(&all)
}

/// `netkit -j fdb show ARGS` prints what `bridge -j fdb show ARGS` prints, and the text listing
/// is bridge's (polled: a bridge learns and ages entries on its own).
#[track_caller]
fn assert_fdb_matches_bridge(ns: &str, args: &[&str]) -> Value {
    let mut ours = vec!["-n", ns, "fdb", "show"];
    ours.extend_from_slice(args);
    let mut theirs = vec!["fdb", "show"];
    theirs.extend_from_slice(args);
    agree("netkit fdb show to match bridge fdb show", || {
        let mine = ok_json(&ours);
        let bridge = bridge_json(ns, &theirs);
        if mine != bridge {
            return Err(format!("{args:?}: netkit {mine}\nbridge {bridge}"));
        }
        let (mine_text, bridge_text) = (ok(&ours), bridge_text(ns, &theirs));
        if mine_text != bridge_text {
            return Err(format!("{args:?}: netkit text\n{mine_text}bridge text\n{bridge_text}"));
        }
        Ok(mine)
    })
}

fn entries<'a>(list: &'a Value, mac: &str) -> Vec<&'a Value> {
    list.as_array().unwrap().iter().filter(|e| e["mac"] == mac).collect()
}

#[test]
fn vxlan_flood_entries_match_bridge() {
    let host = HostNs::new("fdbvx");
    let ns = host.name();
    ok_n(ns, "link add u0 type veth peer name u1");
    ok_n(ns, "addr add 10.70.0.1/24 dev u0");
    ok_n(
        ns,
        "link add vx0 type vxlan id 42 dstport 4789 local 10.70.0.1 dev u0 nolearning",
    );
    // Flannel's flood list: the all-zeros MAC, once per remote VTEP.
    for remote in ["10.70.0.2", "10.70.0.3"] {
        ok(&[
            "-n",
            ns,
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vx0",
            "dst",
            remote,
            "self",
            "permanent",
        ]);
    }
    ok_n(ns, "fdb add 02:00:00:00:70:aa dev vx0 dst 10.70.0.4 vni 100 port 4790");
    let all = assert_fdb_matches_bridge(ns, &[]);
    let flood = entries(&all, "00:00:00:00:00:00");
    let dsts: Vec<&Value> = flood.iter().map(|e| &e["dst"]).collect();
    assert_eq!(dsts, [&Value::from("10.70.0.2"), &Value::from("10.70.0.3")], "{all}");
    assert!(flood
        .iter()
        .all(|e| e["ifname"] == "vx0" && e["state"] == "permanent" && e["flags"] == serde_json::json!(["self"])));
    let one = &entries(&all, "02:00:00:00:70:aa")[0];
    assert_eq!((&one["vni"], &one["port"]), (&Value::from(100), &Value::from(4790)));
    // One device: printed without its name.
    let on_vx0 = assert_fdb_matches_bridge(ns, &["dev", "vx0"]);
    assert!(
        on_vx0.as_array().unwrap().iter().all(|e| e.get("ifname").is_none()),
        "{on_vx0}"
    );
    assert!(ok_n(ns, "fdb show dev vx0").contains("00:00:00:00:00:00 dst 10.70.0.2 self permanent\n"));

    // Replace moves the MAC to another VTEP; del with dst removes only that remote.
    ok_n(ns, "fdb replace 02:00:00:00:70:aa dev vx0 dst 10.70.0.5 self permanent");
    ok_n(ns, "fdb del 00:00:00:00:00:00 dev vx0 dst 10.70.0.2 self");
    let all = assert_fdb_matches_bridge(ns, &["dev", "vx0"]);
    assert_eq!(entries(&all, "02:00:00:00:70:aa")[0]["dst"], "10.70.0.5");
    let flood = entries(&all, "00:00:00:00:00:00");
    assert!(flood.len() == 1 && flood[0]["dst"] == "10.70.0.3", "{all}");

    // Again: a note naming the entry and the namespace, exit 0.
    let r = run_n(ns, "fdb del 00:00:00:00:00:00 dev vx0 dst 10.70.0.2 self");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("nothing to delete") && r.stderr.contains("10.70.0.2") && r.stderr.contains(ns),
        "{}",
        r.stderr
    );
}

#[test]
fn bridge_ports_match_bridge() {
    let host = HostNs::new("fdbbr");
    let ns = host.name();
    ok_n(ns, "link add br0 type bridge");
    ok_n(ns, "link add br1 type bridge");
    for (port, peer, br) in [("p0", "q0", "br0"), ("p1", "q1", "br0"), ("p2", "q2", "br1")] {
        ok(&["-n", ns, "link", "add", port, "type", "veth", "peer", "name", peer]);
        ok(&["-n", ns, "link", "set", port, "master", br, "up"]);
        ok(&["-n", ns, "link", "set", peer, "up"]);
    }
    ok_n(ns, "link set br0 up");
    ok_n(ns, "fdb add 02:00:00:00:71:01 dev p0 master static");
    ok_n(ns, "fdb add 02:00:00:00:71:02 dev p1 master");
    ok_n(ns, "fdb add 02:00:00:00:71:03 dev p0 self permanent");
    ok_n(ns, "fdb add 02:00:00:00:71:04 dev p2 master static");

    let all = assert_fdb_matches_bridge(ns, &[]);
    let e = &entries(&all, "02:00:00:00:71:01")[0];
    assert_eq!(
        (&e["ifname"], &e["master"], &e["state"]),
        (&"p0".into(), &"br0".into(), &"static".into())
    );
    assert_eq!(e["flags"], serde_json::json!([]));
    // No state given: permanent, as bridge assumes.
    assert_eq!(entries(&all, "02:00:00:00:71:02")[0]["state"], "permanent");
    assert_eq!(
        entries(&all, "02:00:00:00:71:03")[0]["flags"],
        serde_json::json!(["self"])
    );
    // One bridge: its own entries and its ports', none of the other bridge's.
    let on_br0 = assert_fdb_matches_bridge(ns, &["br", "br0"]);
    assert!(entries(&on_br0, "02:00:00:00:71:04").is_empty() && !entries(&on_br0, "02:00:00:00:71:01").is_empty());
    assert_fdb_matches_bridge(ns, &["br", "br1"]);
    assert_fdb_matches_bridge(ns, &["dev", "p0"]);
    // `br` naming a device that is not a bridge: nothing, as bridge.
    assert_eq!(assert_fdb_matches_bridge(ns, &["br", "q0"]), serde_json::json!([]));

    ok_n(ns, "fdb del 02:00:00:00:71:01 dev p0 master");
    assert!(entries(&bridge_json(ns, &["fdb", "show"]), "02:00:00:00:71:01").is_empty());
}

#[test]
fn fdb_errors() {
    let host = HostNs::new("fdberr");
    let ns = host.name();
    ok_n(ns, "link add br0 type bridge");
    ok_n(ns, "link add p0 type veth peer name q0");
    ok_n(ns, "link set p0 master br0");
    ok_n(ns, "fdb add 02:00:00:00:72:01 dev p0 master static");
    // Operation errors: exit 1, one line with the entry, the device, the namespace and the kernel.
    let e = fails_n(ns, "fdb add 02:00:00:00:72:01 dev p0 master static", 1);
    assert!(
        e.contains("02:00:00:00:72:01") && e.contains("p0") && e.contains(ns) && e.contains("EEXIST"),
        "{e}"
    );
    let e = fails_n(ns, "fdb add 02:00:00:00:72:02 dev nosuch0", 1);
    assert!(e.contains("nosuch0") && e.contains(ns), "{e}");
    let e = fails_n(ns, "fdb show br nosuch0", 1);
    assert!(e.contains("nosuch0") && e.contains(ns), "{e}");
    // Usage errors: exit 2, naming the word.
    for (args, want) in [
        ("fdb add 02:00:00:00:72:zz dev p0", "unexpected \"02:00:00:00:72:zz\""),
        ("fdb add dev p0", "missing the MAC address"),
        (
            "fdb append 00:00:00:00:00:00 dst 10.0.0.1",
            "fdb append: missing \"dev DEV\"",
        ),
        ("fdb add 00:00:00:00:00:00 dev p0 dst x", "\"dst\" wants an IP address"),
        ("fdb add 00:00:00:00:00:00 dev p0 vni", "\"vni\" needs a value"),
        (
            "fdb replace 00:00:00:00:00:00 dev p0 sideways",
            "unexpected \"sideways\"",
        ),
        ("fdb show vlan 1", "fdb show: unexpected \"vlan\""),
    ] {
        let e = fails_n(ns, args, 2);
        assert!(e.contains(want), "{args}: {e}");
    }
    assert!(ok(&["fdb", "append", "--help"]).contains("00:00:00:00:00:00 dev vx0 dst"));
}

#[test]
fn batch_of_rule_neigh_and_fdb_lines() {
    let host = HostNs::new("vbatch");
    let ns = host.name();
    let r = run_with_input(
        &["-n", ns, "-b", "-"],
        "link add b0 type veth peer name b1\n\
         link add vx0 type vxlan id 7 dstport 4789 nolearning\n\
         rule add from 10.80.0.0/24 table 100 priority 1000\n\
         -6 rule add to fd00:80::/64 prohibit pref 1001\n\
         neigh add 10.80.0.2 lladdr 02:00:00:00:80:02 dev b0\n\
         neigh replace 10.80.0.2 lladdr 02:00:00:00:80:03 dev b0   # the MAC moves\n\
         fdb append 00:00:00:00:00:00 dev vx0 dst 10.80.0.9 self permanent\n\
         fdb add 02:00:00:00:80:09 dev vx0 dst 10.80.0.9\n\
         -j rule show\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let shown: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(shown, ip_json(ns, &["rule", "show"]).unwrap());
    assert!(shown
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["priority"] == 1000 && x["table"] == "100"));
    assert!(ip_json(ns, &["-6", "rule", "show"])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["priority"] == 1001));
    let n = ip_json(ns, &["neigh", "show", "dev", "b0"]).unwrap();
    assert_eq!(n[0]["lladdr"], "02:00:00:00:80:03", "{n}");
    let f = bridge_json(ns, &["fdb", "show", "dev", "vx0"]);
    assert_eq!(entries(&f, "00:00:00:00:00:00")[0]["dst"], "10.80.0.9", "{f}");
    assert_eq!(entries(&f, "02:00:00:00:80:09")[0]["state"], "permanent", "{f}");

    // A bad line stops the batch with its number; the lines before it ran.
    let r = run_with_input(
        &["-n", ns, "-b", "-"],
        "neigh del 10.80.0.2 dev b0\n\
         fdb add 02:00:00:00:80:zz dev vx0\n\
         rule del priority 1000\n",
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.starts_with("netkit: -:2: fdb add: "), "{}", r.stderr);
    assert_eq!(
        ip_json(ns, &["neigh", "show", "dev", "b0"]).unwrap(),
        serde_json::json!([])
    );
    assert!(ip_json(ns, &["rule", "show"])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["priority"] == 1000));
}
