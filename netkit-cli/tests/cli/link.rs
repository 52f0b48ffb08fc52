//! `netkit link add|set|del|show`, checked against `ip -j link show`.

use netkit_test_support::{ipj, report_skip, HostNs};
use serde_json::Value;

use crate::common::{agree, by_name, fails, ip_json, ok, ok_json, run, same_link};

/// `netkit -n NS -j link show` and `ip -n NS -j link show` list the same links with the same
/// values.
#[track_caller]
fn assert_show_matches_ip(ns: &str) -> Value {
    agree("netkit -j link show to match ip -j link show", || {
        let ours = ok_json(&["-n", ns, "link", "show"]);
        let ip = ip_json(ns, &["link", "show"]).unwrap();
        let names = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|l| l["ifname"].as_str().unwrap().to_string())
                .collect()
        };
        if names(&ours) != names(&ip) {
            return Err(format!("links: netkit {:?} ip {:?}", names(&ours), names(&ip)));
        }
        for (o, i) in ours.as_array().unwrap().iter().zip(ip.as_array().unwrap()) {
            same_link(o, i)?;
        }
        Ok(ours)
    })
}

#[test]
fn veth_bridge_and_show_match_ip() {
    let host = HostNs::new("lveth");
    let ns = host.name();
    ok(&["-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ok(&["-n", ns, "link", "add", "br0", "type", "bridge"]);
    ok(&["-n", ns, "link", "set", "v0", "master", "br0", "mtu", "1400", "up"]);
    ok(&[
        "-n",
        ns,
        "link",
        "set",
        "dev",
        "v1",
        "address",
        "02:00:00:00:00:01",
        "up",
    ]);
    ok(&["-n", ns, "link", "set", "br0", "up"]);

    let ours = assert_show_matches_ip(ns);
    let v0 = by_name(&ours, "v0");
    assert_eq!(v0["master"], "br0");
    assert_eq!(v0["mtu"], 1400);
    assert_eq!(v0["link"], "v1");
    assert_eq!(v0["linkinfo"]["info_kind"], "veth");
    assert!(v0["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{v0}");
    assert_eq!(by_name(&ours, "v1")["address"], "02:00:00:00:00:01");
    assert_eq!(by_name(&ours, "br0")["linkinfo"]["info_kind"], "bridge");
    assert_eq!(by_name(&ours, "lo")["link_type"], "loopback");

    // One link by name, with or without `dev`; JSON and text.
    for args in [&["link", "show", "v1"][..], &["link", "show", "dev", "v1"][..]] {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        agree("netkit and ip to show v1 alike", || {
            let one = ok_json(&all);
            assert_eq!(one.as_array().unwrap().len(), 1);
            same_link(&one[0], &ip_json(ns, &["link", "show", "v1"]).unwrap()[0])
        });
    }
    let text = ok(&["-n", ns, "link", "show", "v0"]);
    assert!(text.starts_with(&format!("{}: v0@v1: <", v0["ifindex"])), "{text}");
    assert!(text.contains("mtu 1400") && text.contains("master br0"), "{text}");
    assert!(text.contains("link/ether "), "{text}");

    // Delete: both ends go; deleting again is a note.
    ok(&["-n", ns, "link", "del", "v0"]);
    assert!(ip_json(ns, &["link", "show", "v1"]).is_none());
    let again = run(&["-n", ns, "link", "del", "v0"]);
    assert_eq!(again.code, 0);
    assert!(
        again.stderr.contains("nothing to delete") && again.stderr.contains(ns),
        "{}",
        again.stderr
    );
    assert_show_matches_ip(ns);
}

#[test]
fn veth_peer_in_another_netns_and_set_netns_and_name() {
    let host = HostNs::new("lpeer");
    let other = host.container("o");
    let other_name = other.name().unwrap();
    let ns = host.name();
    ok(&[
        "-n", ns, "link", "add", "h0", "type", "veth", "peer", "name", "c0", "netns", other_name,
    ]);
    assert!(ip_json(ns, &["link", "show", "c0"]).is_none());
    agree("netkit and ip to show c0 alike", || {
        let c0 = ok_json(&["-n", other_name, "link", "show", "c0"]);
        same_link(&c0[0], &ip_json(other_name, &["link", "show", "c0"]).unwrap()[0])
    });
    // The peer is in another namespace: ip's link_index / link_netnsid.
    let h0 = ok_json(&["-n", ns, "link", "show", "h0"]);
    assert!(h0[0].get("link_index").is_some() && h0[0].get("link").is_none(), "{h0}");
    assert_show_matches_ip(ns);

    // Move and rename in one request (a veth: bridges cannot change namespace).
    ok(&["-n", ns, "link", "add", "m0", "type", "veth", "peer", "name", "m1"]);
    ok(&["-n", ns, "link", "set", "m0", "netns", other_name, "name", "moved0"]);
    assert!(ip_json(ns, &["link", "show", "m0"]).is_none());
    assert_eq!(
        ip_json(other_name, &["link", "show", "moved0"]).unwrap()[0]["ifname"],
        "moved0"
    );
    assert_show_matches_ip(other_name);
}

#[test]
fn vxlan_and_macvlan_and_nomaster() {
    let host = HostNs::new("lvx");
    let ns = host.name();
    ok(&["-n", ns, "link", "add", "u0", "type", "veth", "peer", "name", "u1"]);
    ok(&["-n", ns, "addr", "add", "10.77.0.1/24", "dev", "u0"]);
    ok(&[
        "-n",
        ns,
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "dstport",
        "4789",
        "local",
        "10.77.0.1",
        "dev",
        "u0",
    ]);
    let d = ipj(ns, &["link", "show", "vx0"]).unwrap();
    let data = &d[0]["linkinfo"]["info_data"];
    assert_eq!(d[0]["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(data["id"], 42);
    assert_eq!(data["port"], 4789);
    assert_eq!(data["local"], "10.77.0.1");
    assert_eq!(data["link"], "u0");

    ok(&[
        "-n", ns, "link", "add", "mv0", "mtu", "1300", "type", "macvlan", "dev", "u0", "mode", "private",
    ]);
    let d = ipj(ns, &["link", "show", "mv0"]).unwrap();
    assert_eq!(d[0]["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(d[0]["linkinfo"]["info_data"]["mode"], "private");
    assert_eq!(d[0]["mtu"], 1300);
    assert_eq!(d[0]["link"], "u0");

    ok(&["-n", ns, "link", "add", "br9", "type", "bridge"]);
    ok(&["-n", ns, "link", "set", "u1", "master", "br9"]);
    assert_eq!(ip_json(ns, &["link", "show", "u1"]).unwrap()[0]["master"], "br9");
    ok(&["-n", ns, "link", "set", "u1", "nomaster"]);
    assert!(ip_json(ns, &["link", "show", "u1"]).unwrap()[0].get("master").is_none());
    assert_show_matches_ip(ns);
}

#[test]
fn tun_and_tap() {
    let host = HostNs::new("ltun");
    let ns = host.name();
    let r = run(&["-n", ns, "link", "add", "tun0", "type", "tun"]);
    if r.code != 0 && r.stderr.contains("not supported") {
        report_skip("cli::link::tun_and_tap", r.stderr.trim());
        return;
    }
    assert_eq!(r.code, 0, "{}", r.stderr);
    ok(&["-n", ns, "link", "add", "tap0", "mtu", "1280", "type", "tap"]);
    let tun = ipj(ns, &["link", "show", "tun0"]).unwrap();
    assert_eq!(tun[0]["linkinfo"]["info_kind"], "tun");
    assert_eq!(tun[0]["link_type"], "none");
    let tap = ipj(ns, &["link", "show", "tap0"]).unwrap();
    assert_eq!(tap[0]["link_type"], "ether");
    assert_eq!(tap[0]["mtu"], 1280);
    assert_show_matches_ip(ns);
    // Both exist now: a second add fails.
    let e = fails(&["-n", ns, "link", "add", "tap0", "type", "tap"], 1);
    assert!(e.contains("tap0") && e.contains(ns), "{e}");
}

/// Whether this kernel can make an ipip tunnel, asked of iproute2 (not of netkit, which the
/// test checks), in the test's namespace.
fn kernel_has_ipip(ns: &str) -> bool {
    let made = std::process::Command::new("ip")
        .args(["-n", ns, "link", "add", "nkprobe0", "type", "ipip"])
        .output()
        .expect("run ip")
        .status
        .success();
    if made {
        netkit_test_support::cmd::ip(&["-n", ns, "link", "del", "nkprobe0"]);
    }
    made
}

#[test]
fn ipip_tunnel_or_a_clear_error() {
    let host = HostNs::new("lipip");
    let ns = host.name();
    ok(&["-n", ns, "link", "add", "u0", "type", "veth", "peer", "name", "u1"]);
    ok(&["-n", ns, "addr", "add", "10.78.0.1/24", "dev", "u0"]);
    let args = [
        "-n",
        ns,
        "link",
        "add",
        "tun9",
        "mtu",
        "1400",
        "type",
        "ipip",
        "local",
        "10.78.0.1",
        "remote",
        "10.78.0.2",
        "dev",
        "u0",
        "ttl",
        "64",
    ];
    if !kernel_has_ipip(ns) {
        // One line: the kind, that the kernel lacks it, the link and the namespace; exit 1.
        let e = fails(&args, 1);
        assert!(
            e.contains("\"ipip\" is not supported by this kernel") && e.contains("\"tun9\"") && e.contains(ns),
            "{e}"
        );
        assert!(ip_json(ns, &["link", "show", "tun9"]).is_none());
        report_skip(
            "cli::link::ipip_tunnel_or_a_clear_error",
            "no ipip on this kernel: the error half ran, the tunnel half did not",
        );
        return;
    }
    ok(&args);
    let d = ipj(ns, &["link", "show", "tun9"]).unwrap();
    assert_eq!(d[0]["linkinfo"]["info_kind"], "ipip");
    let data = &d[0]["linkinfo"]["info_data"];
    assert_eq!(
        (&data["local"], &data["remote"]),
        (&Value::from("10.78.0.1"), &Value::from("10.78.0.2"))
    );
    assert_eq!((&data["link"], &data["ttl"]), (&Value::from("u0"), &Value::from(64)));
    assert_eq!(d[0]["mtu"], 1400);
    assert_eq!(
        by_name(&ok_json(&["-n", ns, "link", "show"]), "tun9")["linkinfo"]["info_kind"],
        "ipip"
    );
}
