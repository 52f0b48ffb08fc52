//! `netkit addr add|del|show|flush`, checked against `ip -j addr show`.

use netkit_test_support::HostNs;
use serde_json::Value;

use crate::common::{agree, by_name, fails, ip_json, ok, ok_json, run, same_link};

/// The keys of an `addr_info` entry netkit prints.
const ADDR_KEYS: [&str; 12] = [
    "family",
    "local",
    "address",
    "prefixlen",
    "broadcast",
    "scope",
    "label",
    "dynamic",
    "nodad",
    "noprefixroute",
    "secondary",
    "tentative",
];

/// `netkit -j addr show ARGS` and `ip -j addr show ARGS` agree: the same links, the same values
/// for the link keys, the same addresses with the same values.
#[track_caller]
fn assert_addrs_match_ip(ns: &str, args: &[&str]) -> Value {
    let mut all = vec!["-n", ns, "addr", "show"];
    all.extend_from_slice(args);
    let mut ip_args = vec!["addr", "show"];
    ip_args.extend_from_slice(args);
    agree("netkit -j addr show to match ip -j addr show", || {
        let ours = ok_json(&all);
        let ip = ip_json(ns, &ip_args).unwrap();
        if ours.as_array().unwrap().len() != ip.as_array().unwrap().len() {
            return Err(format!("links: netkit {ours}\nip {ip}"));
        }
        for (o, i) in ours.as_array().unwrap().iter().zip(ip.as_array().unwrap()) {
            same_link(o, i)?;
            let (oa, ia) = (o["addr_info"].as_array().unwrap(), i["addr_info"].as_array().unwrap());
            if oa.len() != ia.len() {
                return Err(format!("addresses of {}: netkit {o}\nip {i}", o["ifname"]));
            }
            for (x, y) in oa.iter().zip(ia) {
                for k in ADDR_KEYS {
                    if x.get(k) != y.get(k) {
                        return Err(format!("key {k}: netkit {x} ip {y}"));
                    }
                }
            }
        }
        Ok(ours)
    })
}

#[test]
fn add_show_del_flush() {
    // Links stay down: no IPv6 link-local address whose DAD state could change between the
    // two listings.
    let host = HostNs::new("addr");
    let ns = host.name();
    ok(&["-n", ns, "link", "add", "a0", "type", "veth", "peer", "name", "a1"]);
    ok(&["-n", ns, "addr", "add", "10.66.0.1/24", "dev", "a0"]);
    ok(&["-n", ns, "addr", "add", "10.66.0.2/24", "dev", "a0"]);
    ok(&["-n", ns, "addr", "add", "dev", "a0", "fd00:66::1/64", "nodad"]);
    ok(&["-n", ns, "addr", "add", "10.66.1.1/24", "dev", "a1", "noprefixroute"]);

    let all = assert_addrs_match_ip(ns, &[]);
    let a0 = by_name(&all, "a0")["addr_info"].as_array().unwrap().clone();
    let v4 = a0.iter().find(|a| a["local"] == "10.66.0.1").unwrap();
    assert_eq!(
        (
            &v4["family"],
            &v4["prefixlen"],
            &v4["broadcast"],
            &v4["scope"],
            &v4["label"]
        ),
        (
            &Value::from("inet"),
            &Value::from(24),
            &Value::from("10.66.0.255"),
            &Value::from("global"),
            &Value::from("a0")
        )
    );
    assert_eq!(
        a0.iter().find(|a| a["local"] == "10.66.0.2").unwrap()["secondary"],
        true
    );
    let v6 = a0.iter().find(|a| a["family"] == "inet6").unwrap();
    assert_eq!(
        (&v6["local"], &v6["nodad"]),
        (&Value::from("fd00:66::1"), &Value::from(true))
    );
    assert_addrs_match_ip(ns, &["dev", "a1"]);
    assert_addrs_match_ip(ns, &["dev", "lo"]);
    // -4 / -6: only links with an address of that family (as ip: a1 has none of IPv6), only
    // those addresses.
    let ifnames = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    };
    let only6 = ok_json(&["-6", "-n", ns, "addr", "show"]);
    assert_eq!(ifnames(&only6), ifnames(&ip_json(ns, &["-6", "addr", "show"]).unwrap()));
    assert!(ifnames(&only6).contains(&"a0".to_string()) && !ifnames(&only6).contains(&"a1".to_string()));
    for l in only6.as_array().unwrap() {
        assert!(
            l["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["family"] == "inet6"),
            "{l}"
        );
    }
    let only4 = ok_json(&["-4", "-n", ns, "addr", "show"]);
    assert_eq!(ifnames(&only4), ifnames(&ip_json(ns, &["-4", "addr", "show"]).unwrap()));
    // Text, like ip's.
    let text = ok(&["-n", ns, "addr", "show", "dev", "a0"]);
    assert!(
        text.contains("    inet 10.66.0.1/24 brd 10.66.0.255 scope global a0"),
        "{text}"
    );
    assert!(text.contains("    inet6 fd00:66::1/64 scope global nodad"), "{text}");

    ok(&["-n", ns, "addr", "del", "10.66.1.1/24", "dev", "a1"]);
    assert_eq!(
        ip_json(ns, &["addr", "show", "dev", "a1"]).unwrap()[0]["addr_info"],
        Value::Array(vec![])
    );
    let again = run(&["-n", ns, "addr", "del", "10.66.1.1/24", "dev", "a1"]);
    assert_eq!(again.code, 0);
    assert!(again.stderr.contains("nothing to delete"), "{}", again.stderr);

    ok(&["-n", ns, "addr", "flush", "dev", "a0"]);
    assert_eq!(
        ip_json(ns, &["addr", "show", "dev", "a0"]).unwrap()[0]["addr_info"],
        Value::Array(vec![])
    );
    assert_addrs_match_ip(ns, &[]);

    // A device that does not exist: exit 1, naming it and the namespace.
    let e = fails(&["-n", ns, "addr", "add", "10.66.2.1/24", "dev", "nosuch0"], 1);
    assert!(e.contains("nosuch0") && e.contains(ns), "{e}");
    let e = fails(&["-n", ns, "addr", "flush", "dev", "nosuch0"], 1);
    assert!(e.contains("nosuch0") && e.contains(ns), "{e}");
}
