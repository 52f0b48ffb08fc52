//! `netkit rule add|del|show`, checked against `ip -j rule show` and `ip rule show`.

use netkit_test_support::HostNs;
use serde_json::Value;

use crate::common::{fails_n, ip_json, ok, ok_json, ok_n, run, run_n};

/// `netkit [OPTS] -j rule show` prints what `ip [OPTS] -j rule show` prints, and the text
/// listing is ip's, line for line.
#[track_caller]
fn assert_rules_match_ip(ns: &str, opts: &[&str]) -> Value {
    let mut ours = vec!["-n", ns];
    ours.extend_from_slice(opts);
    ours.extend_from_slice(&["rule", "show"]);
    let mut ip = opts.to_vec();
    ip.extend_from_slice(&["rule", "show"]);
    let json = ok_json(&ours);
    assert_eq!(json, ip_json(ns, &ip).unwrap(), "netkit -j rule show {opts:?}");
    let mut ip_text = vec!["-n", ns];
    ip_text.extend_from_slice(&ip);
    assert_eq!(ok(&ours), netkit_test_support::cmd::ip(&ip_text), "rule show {opts:?}");
    json
}

fn with_priority(rules: &Value, priority: u32) -> Option<&Value> {
    rules.as_array().unwrap().iter().find(|r| r["priority"] == priority)
}

#[test]
fn add_show_del_match_ip() {
    let host = HostNs::new("rule");
    let ns = host.name();
    ok_n(ns, "link add r0 type veth peer name r1");
    for words in [
        &["from", "10.0.0.0/24", "table", "100", "priority", "1000"][..],
        &[
            "not",
            "to",
            "10.1.0.0/16",
            "fwmark",
            "0x1/0xff",
            "iif",
            "r0",
            "lookup",
            "main",
            "pref",
            "1001",
        ][..],
        &["oif", "r1", "blackhole", "preference", "1002"][..],
        &["fwmark", "5", "unreachable", "priority", "1003"][..],
        &[
            "from",
            "all",
            "lookup",
            "main",
            "suppress_prefixlength",
            "0",
            "priority",
            "1004",
        ][..],
        &["to", "10.2.3.4", "prohibit", "priority", "1005"][..],
        // A device that is not there (yet): the kernel keeps the rule, detached.
        &["iif", "nosuch0", "table", "7", "priority", "1006"][..],
        &["from", "10.9.0.0/16", "table", "default"][..],
    ] {
        let mut all = vec!["-n", ns, "rule", "add"];
        all.extend_from_slice(words);
        ok(&all);
    }
    let rules = assert_rules_match_ip(ns, &[]);
    assert_eq!(rules.as_array().unwrap().len(), 11, "{rules}");
    let r = with_priority(&rules, 1001).unwrap();
    assert_eq!(
        (&r["fwmark"], &r["fwmask"], &r["dstlen"]),
        (&"0x1".into(), &"0xff".into(), &16.into())
    );
    assert!(r.get("not").is_some() && r["table"] == "main", "{r}");
    assert_eq!(with_priority(&rules, 1002).unwrap()["action"], "blackhole");
    assert!(with_priority(&rules, 1006).unwrap().get("iif_detached").is_some());
    // Without -4/-6, as ip: IPv4 only.
    assert!(rules
        .as_array()
        .unwrap()
        .iter()
        .all(|r| !r["src"].as_str().unwrap().contains(':')));

    // IPv6: with -6, or from an IPv6 prefix.
    ok_n(ns, "-6 rule add lookup 100 priority 500");
    ok_n(ns, "rule add from fd00:1::/64 to fd00:2::/64 table 200 pref 501");
    ok_n(ns, "rule add to fd00:dead::/32 prohibit pref 502");
    let v6 = assert_rules_match_ip(ns, &["-6"]);
    assert_eq!(with_priority(&v6, 501).unwrap()["srclen"], 64);
    assert!(with_priority(&assert_rules_match_ip(ns, &["-4"]), 501).is_none());

    // Delete by priority, by selector and table; the listing follows.
    ok_n(ns, "rule del priority 1000");
    ok_n(ns, "rule del from 10.9.0.0/16 table default");
    ok_n(ns, "-6 rule del pref 501");
    let rules = assert_rules_match_ip(ns, &[]);
    assert!(
        with_priority(&rules, 1000).is_none() && rules.as_array().unwrap().len() == 9,
        "{rules}"
    );
    assert!(with_priority(&assert_rules_match_ip(ns, &["-6"]), 501).is_none());

    // Deleting what is not there: a note naming the rule and the namespace, exit 0.
    let again = run_n(ns, "rule del priority 1000");
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("nothing to delete")
            && again.stderr.contains("priority 1000")
            && again.stderr.contains(ns),
        "{}",
        again.stderr
    );
    assert!(run(&["-q", "-n", ns, "rule", "del", "priority", "1000"])
        .stderr
        .is_empty());
}

#[test]
fn rule_errors() {
    let host = HostNs::new("rulerr");
    let ns = host.name();
    ok_n(ns, "rule add from 10.0.0.0/24 table 100 priority 1000");
    // The same rule again: the kernel's answer, the rule and the namespace on one line.
    let e = fails_n(ns, "rule add from 10.0.0.0/24 table 100 priority 1000", 1);
    assert!(
        e.contains("from 10.0.0.0/24") && e.contains(ns) && e.contains("EEXIST"),
        "{e}"
    );
    for (args, want) in [
        ("rule add sideways", "rule add: unexpected \"sideways\""),
        ("rule add from", "\"from\" needs a value"),
        ("rule add from 10.0.0.0/99", "\"from\" wants a prefix"),
        ("rule add fwmark 0xg", "\"fwmark\" wants MARK or MARK/MASK"),
        (
            "rule add table nowhere",
            "\"table\" wants main, local, default or a number",
        ),
        ("-6 rule add from 10.0.0.0/8", "is not an"),
        ("rule del", "rule del: say which rule"),
        ("rule show table main", "rule show: unexpected \"table\""),
    ] {
        let e = fails_n(ns, args, 2);
        assert!(e.contains(want), "{args}: {e}");
    }
    // Nothing changed.
    assert_eq!(ip_json(ns, &["rule", "show"]).unwrap().as_array().unwrap().len(), 4);
    assert!(ok(&["rule", "add", "--help"]).contains("suppress_prefixlength"));
}
