//! `netkit fw`: an owner's port mapping and masquerade added, listed, seen in the kernel's
//! ruleset and carried by real TCP connections, then removed; conflicts, GC and usage errors.
//! Once per driver. The lab is netkit-test-support's `NatLab`, in namespaces the test makes:
//!
//! ```text
//!  C eth0 10.88.0.2/24 ── vc0 ─ br0 10.88.0.1/24   H   ext0 192.0.2.1/24 ── eth0 192.0.2.2/24 O
//! ```
//!
//! H forwards; O has no route to 10.88.0.0/24, so only the port mapping (DNAT) lets O reach C,
//! and only the masquerade lets C reach O.

use netkit_test_support::natlab::NatLab;
use netkit_test_support::{report_skip, sh, HostNs};
use serde_json::{json, Value};

use crate::common::{fails, ok, ok_json, run};

/// The NAT lab and the driver under test.
struct Lab {
    nat: NatLab,
    driver: &'static str,
}

impl std::ops::Deref for Lab {
    type Target = NatLab;
    fn deref(&self) -> &NatLab {
        &self.nat
    }
}

impl Lab {
    fn build(tag: &str, driver: &'static str) -> Lab {
        Lab {
            nat: NatLab::build(tag),
            driver,
        }
    }

    /// `-n H fw --driver D --state-dir DIR` then `rest`.
    fn fw(&self, rest: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = ["-n", self.host.name(), "fw", "--driver", self.driver, "--state-dir"]
            .map(String::from)
            .to_vec();
        a.push(self.host.fw_dir().display().to_string());
        a.extend(rest.iter().map(|s| s.to_string()));
        a
    }

    fn ok(&self, rest: &[&str]) -> String {
        ok(&refs(&self.fw(rest)))
    }

    fn ok_json(&self, rest: &[&str]) -> Value {
        // ok_json puts -j first, where a global option is valid too.
        ok_json(&refs(&self.fw(rest)))
    }

    fn fails(&self, rest: &[&str], code: i32) -> String {
        fails(&refs(&self.fw(rest)), code)
    }

    /// The kernel's view: `nft -j list ruleset` or `iptables-save`, inside H.
    fn ruleset(&self) -> String {
        match self.driver {
            "nftables" => sh(&self.host, "nft -j list ruleset"),
            _ => sh(&self.host, "iptables-save"),
        }
    }
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The elements of netkit's nftables set or map `name` in an `nft -j list ruleset` text.
fn nft_elements(ruleset: &str, name: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(ruleset).expect("nft -j prints JSON");
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("set").or_else(|| o.get("map")))
        .filter(|s| s["table"] == "netkit" && s["name"] == name)
        .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// True when the driver can run here (else the skip is reported).
fn usable(test: &str, driver: &str) -> bool {
    if driver == "iptables" && !std::path::Path::new("/usr/sbin/iptables-restore").exists() {
        report_skip(test, "iptables-restore is not installed");
        return false;
    }
    true
}

/// The kernel holds the mapping and the masquerade (and nothing of them once `gone`).
fn assert_kernel(lab: &Lab, gone: bool) {
    let rs = lab.ruleset();
    if lab.driver == "nftables" {
        if gone {
            assert!(
                !rs.contains("\"netkit\""),
                "table inet netkit outlived its last owner: {rs}"
            );
            return;
        }
        let maps = nft_elements(&rs, "hostport4");
        assert_eq!(
            maps,
            [
                json!([{"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "c1:eth0"}}, {"concat": ["10.88.0.2", 80]}])
            ],
            "{rs}"
        );
        let masq = nft_elements(&rs, "masq4");
        assert_eq!(masq.len(), 1, "{rs}");
        assert_eq!(
            masq[0]["elem"]["val"]["concat"][0]["prefix"],
            json!({"addr": "10.88.0.0", "len": 24})
        );
    } else {
        if gone {
            assert!(
                !rs.contains("NETKIT"),
                "netkit's chains outlived their last owner: {rs}"
            );
            return;
        }
        assert!(
            rs.lines()
                .any(|l| l.contains("--dport 8080") && l.contains("--to-destination 10.88.0.2:80")),
            "{rs}"
        );
        assert!(
            rs.lines()
                .any(|l| l.contains("-s 10.88.0.0/24") && l.contains("MASQUERADE")),
            "{rs}"
        );
    }
}

fn port_mapping_and_masquerade(driver: &'static str, test: &str) {
    if !usable(test, driver) {
        return;
    }
    let lab = Lab::build("fwpm", driver);

    let add = [
        "add",
        "c1:eth0",
        "port",
        "8080:10.88.0.2:80/tcp",
        "masquerade",
        "10.88.0.0/24",
        "network",
        "br0",
        "10.88.0.0/24",
    ];
    let r = run(&refs(&lab.fw(&add)));
    if r.code == 1 && r.stderr.contains("driver is unavailable") {
        report_skip(test, r.stderr.trim());
        return;
    }
    assert_eq!(r.code, 0, "{r:?}");
    // Adding the same again changes nothing and is no error.
    lab.ok(&add);

    let h = lab.o_to_mapped().expect("O -> 192.0.2.1:8080 through the mapping");
    assert_eq!(h.name, "C");
    assert_eq!(
        h.peer.ip().to_string(),
        "192.0.2.2",
        "the client's address arrives unchanged"
    );
    let h = lab.c_to_outside().expect("C -> O with masquerade");
    assert_eq!(h.name, "O");
    assert_eq!(h.peer.ip().to_string(), "192.0.2.1", "O sees H's address (masquerade)");

    let listed = lab.ok_json(&["list"]);
    assert_eq!(
        listed,
        json!([{
            "owner": "c1:eth0",
            "port_mappings": [{"protocol": "tcp", "host_ip": null, "host_port": 8080, "host_port_end": 8080,
                               "container_ip": "10.88.0.2", "container_port": 80}],
            "masquerades": [{"source": "10.88.0.0/24", "network": "10.88.0.0/24"}],
            "networks": [{"interface": "br0", "subnet": "10.88.0.0/24"}],
            "isolations": [],
            "services": [],
        }])
    );
    assert_eq!(lab.ok_json(&["list", "c1:eth0"]), listed);
    assert_eq!(
        lab.ok(&["list"]),
        "c1:eth0\n    port 8080:10.88.0.2:80/tcp\n    masquerade 10.88.0.0/24\n    network br0 10.88.0.0/24\n"
    );
    assert_kernel(&lab, false);

    // Another owner cannot take the host port: exit 1, one line naming the namespace.
    let e = lab.fails(&["add", "c2:eth0", "port", "8080:10.88.0.3:80/tcp"], 1);
    assert!(
        e.starts_with("netkit: fw add c2:eth0 in netns ") && e.contains(lab.host.name()),
        "{e}"
    );
    assert!(e.contains("conflicts with"), "{e}");
    assert_eq!(lab.ok_json(&["list", "c2:eth0"]), json!([]));

    let removed = lab.ok(&["del", "c1:eth0"]);
    assert_eq!(
        removed,
        "removed port 8080:10.88.0.2:80/tcp\nremoved masquerade 10.88.0.0/24\nremoved network br0 10.88.0.0/24\n"
    );
    let e = lab.o_to_mapped().expect_err("8080 still mapped after fw del");
    assert!(e.contains("connect"), "{e}");
    assert!(lab.c_to_outside().is_err(), "still masqueraded after fw del");
    assert_eq!(lab.ok_json(&["list"]), json!([]));
    assert_kernel(&lab, true);
    let r = run(&refs(&lab.fw(&["del", "c1:eth0"])));
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{r:?}");
    assert!(r.stderr.contains("holds nothing"), "{}", r.stderr);
}

fn gc_and_partial_del(driver: &'static str, test: &str) {
    if !usable(test, driver) {
        return;
    }
    let lab = Lab::build("fwgc", driver);
    let r = run(&refs(&lab.fw(&["add", "net/a:eth0", "port", "9001:10.88.0.2:80"])));
    if r.code == 1 && r.stderr.contains("driver is unavailable") {
        report_skip(test, r.stderr.trim());
        return;
    }
    assert_eq!(r.code, 0, "{r:?}");
    lab.ok(&[
        "add",
        "net/b:eth0",
        "port",
        "9002:10.88.0.2:80",
        "port",
        "9003:10.88.0.2:81/udp",
    ]);
    lab.ok(&["add", "other/c:eth0", "port", "9004:10.88.0.2:80"]);
    let owners = |lab: &Lab| -> Vec<String> {
        lab.ok_json(&["list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["owner"].as_str().unwrap().to_string())
            .collect()
    };
    // Taking one object leaves the rest.
    lab.ok(&["del", "net/b:eth0", "port", "9003:10.88.0.2:81/udp"]);
    assert_eq!(
        lab.ok(&["list", "net/b:eth0"]),
        "net/b:eth0\n    port 9002:10.88.0.2:80/tcp\n"
    );
    // GC in scope net/ keeps a, removes b, leaves the other network's owner alone.
    assert_eq!(
        lab.ok_json(&["gc", "--scope", "net/", "net/a:eth0"]),
        json!({"removed": ["net/b:eth0"]})
    );
    assert_eq!(owners(&lab), ["net/a:eth0", "other/c:eth0"]);
    assert_eq!(
        lab.ok(&["gc", "--all"]),
        "removed owner net/a:eth0\nremoved owner other/c:eth0\n"
    );
    assert!(owners(&lab).is_empty());
    assert_kernel(&lab, true);
}

macro_rules! per_driver {
    ($($scenario:ident),*) => {$(
        mod $scenario {
            #[test]
            fn nftables() {
                super::$scenario("nftables", concat!("fw::", stringify!($scenario), "::nftables"))
            }

            #[test]
            fn iptables() {
                super::$scenario("iptables", concat!("fw::", stringify!($scenario), "::iptables"))
            }
        }
    )*};
}

per_driver!(port_mapping_and_masquerade, gc_and_partial_del);

#[test]
fn usage_and_operation_errors() {
    let host = HostNs::new("fwerr");
    let dir = host.fw_dir().display().to_string();
    let fw = |rest: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["-n", host.name(), "fw", "--state-dir", &dir]
            .map(String::from)
            .to_vec();
        a.extend(rest.iter().map(|s| s.to_string()));
        a
    };
    for (args, want) in [
        (&["add", "c1", "port", "8080:10.88.0.2"][..], "HOSTPORT"),
        (&["add", "c1", "port", "0:10.88.0.2:80"], "not a port"),
        (&["add", "c1", "port", "8080:fd00::2:80"], "brackets"),
        (&["add", "c1", "masquerade", "ten"], "\"masquerade\" wants a CIDR"),
        (&["add", "c1", "endpoint", "10.0.0.1:80"], "unexpected \"endpoint\""),
        (&["add", "a b", "masquerade", "10.0.0.0/24"], "owner \"a b\""),
        (&["del", "_x"], "owner \"_x\""),
        (&["gc"], "--all"),
    ] {
        let e = fails(&refs(&fw(args)), 2);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    let r = run(&refs(&fw(&["--driver", "pf", "list"])));
    assert_eq!(r.code, 2, "{r:?}");
    // Nothing was made by the refused commands.
    assert!(!host.fw_dir().exists());
    assert_eq!(ok_json(&refs(&fw(&["list"]))), json!([]));

    let missing = format!("{}-none", host.prefix());
    let e = fails(&["-n", &missing, "fw", "list"], 1);
    assert!(e.contains(&missing), "{e}");
}
