//! `netkit ipam`: allocations, lookups, releases, GC and checks on a store in a temp dir of the
//! test's own (no namespace is involved: IPAM is files only).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use netkit_test_support::tempdir;
use serde_json::{json, Value};

use crate::common::{fails, ok, ok_json, run};

/// A store directory and pool configurations in a temp dir, removed when the test ends.
struct Pool {
    dir: tempfile::TempDir,
    /// The `--store` directory.
    store: String,
}

impl Pool {
    fn new() -> Self {
        let dir = tempdir("cliipam");
        let store = dir.path().join("store").display().to_string();
        Pool { dir, store }
    }

    fn store(&self) -> PathBuf {
        PathBuf::from(&self.store)
    }

    /// Write `config` to `name` in the temp dir; its path.
    fn config(&self, name: &str, config: &Value) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, config.to_string()).unwrap();
        path
    }

    /// A CNI network configuration `network` with one range set over `subnet`.
    fn network(&self, network: &str, subnet: &str) -> PathBuf {
        self.config(
            &format!("{network}.json"),
            &json!({
                "cniVersion": "1.1.0",
                "name": network,
                "type": "bridge",
                "ipam": {
                    "type": "netkit-ipam",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "gw": "10.0.0.254"}],
                },
            }),
        )
    }

    /// `ipam --config CONFIG --store STORE` then `rest`.
    fn args<'a>(&'a self, config: &'a Path, rest: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["ipam", "--config", config.to_str().unwrap(), "--store", &self.store];
        a.extend_from_slice(rest);
        a
    }
}

/// The addresses (without prefix) of an `allocate -j` answer.
fn addresses(got: &Value) -> Vec<String> {
    got["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap().split('/').next().unwrap().to_string())
        .collect()
}

#[test]
fn allocate_lookup_release_round_trip() {
    let p = Pool::new();
    let cfg = p.network("net", "10.0.0.0/24");
    let got = ok_json(&p.args(&cfg, &["allocate", "c1:eth0"]));
    assert_eq!(
        got,
        json!({
            "network": "net", "owner": "c1:eth0", "container_id": "c1", "ifname": "eth0", "new": true,
            "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "gw": "10.0.0.254"}],
        })
    );
    // The same owner (spelled without its default interface) gets the same address back.
    let again = ok_json(&p.args(&cfg, &["allocate", "c1"]));
    assert_eq!(
        (addresses(&again), &again["new"]),
        (vec!["10.0.0.2".to_string()], &json!(false))
    );
    assert_eq!(
        ok(&p.args(&cfg, &["allocate", "c1:eth0"])),
        "address 10.0.0.2/24 gateway 10.0.0.1\nroute 0.0.0.0/0\nroute 192.0.2.0/24 via 10.0.0.254\n"
    );
    // The store is DIR/<network>, as the netkit-ipam plugin lays it out.
    assert!(p.store().join("net/ip/10.0.0.2").exists());

    let c2 = addresses(&ok_json(&p.args(&cfg, &["allocate", "c2:net1"])));
    let one = ok_json(&p.args(&cfg, &["show", "c1:eth0"]));
    assert_eq!(
        one,
        json!([{"ip": "10.0.0.2", "owner": "c1:eth0", "container_id": "c1", "ifname": "eth0"}])
    );
    let all = ok_json(&p.args(&cfg, &["show"]));
    let held: Vec<(&str, &str)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["ip"].as_str().unwrap(), e["owner"].as_str().unwrap()))
        .collect();
    assert_eq!(held, [("10.0.0.2", "c1:eth0"), (c2[0].as_str(), "c2:net1")]);
    assert_eq!(
        ok(&p.args(&cfg, &["show"])),
        format!("10.0.0.2 c1:eth0\n{} c2:net1\n", c2[0])
    );

    let released = ok_json(&p.args(&cfg, &["release", "c1:eth0"]));
    assert_eq!(released["released"], json!(["10.0.0.2"]));
    assert_eq!(ok_json(&p.args(&cfg, &["show", "c1"])), json!([]));
    assert!(!p.store().join("net/ip/10.0.0.2").exists());
    // Releasing again is a note, not an error.
    let r = run(&p.args(&cfg, &["release", "c1:eth0"]));
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    assert!(r.stderr.contains("c1:eth0 held nothing in network net"), "{}", r.stderr);
    assert_eq!(ok_json(&p.args(&cfg, &["release", "c1"]))["released"], json!([]));
}

#[test]
fn concurrent_allocations_never_collide() {
    let p = Pool::new();
    let cfg = p.network("net", "10.0.0.0/27");
    let children: Vec<_> = (0..12)
        .map(|i| {
            let owner = format!("ctr{i}:eth0");
            Command::new(env!("CARGO_BIN_EXE_netkit"))
                .args(p.args(&cfg, &["-j", "allocate", &owner]))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start netkit")
        })
        .collect();
    let mut got: Vec<String> = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        got.extend(addresses(&serde_json::from_slice(&out.stdout).unwrap()));
    }
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 12, "two owners got the same address: {got:?}");
    assert_eq!(ok_json(&p.args(&cfg, &["show"])).as_array().unwrap().len(), 12);
}

#[test]
fn requested_addresses_and_their_refusals() {
    let p = Pool::new();
    let cfg = p.network("net", "10.0.0.0/24");
    let got = ok_json(&p.args(&cfg, &["allocate", "c1", "ip", "10.0.0.50"]));
    assert_eq!(addresses(&got), ["10.0.0.50"]);
    let e = fails(&p.args(&cfg, &["allocate", "c2", "ip", "10.0.0.50"]), 1);
    assert!(
        e.contains("ipam allocate c2:eth0 in store") && e.contains("already held by container c1 interface eth0"),
        "{e}"
    );
    let e = fails(&p.args(&cfg, &["allocate", "c2", "ip", "10.9.0.1"]), 1);
    assert!(e.contains("outside every range"), "{e}");
    let e = fails(&p.args(&cfg, &["allocate", "c2", "ip", "10.0.0.1"]), 1);
    assert!(e.contains("reserved"), "{e}");
    // Nothing of the refused requests stayed with c2.
    assert_eq!(ok_json(&p.args(&cfg, &["show", "c2"])), json!([]));
    let e = fails(&p.args(&cfg, &["allocate", "c2", "ip", "ten"]), 2);
    assert!(e.contains("\"ip\" wants an address"), "{e}");
    fails(&p.args(&cfg, &["allocate", "c2", "address", "10.0.0.9"]), 2);
}

#[test]
fn a_full_pool_is_one_line_and_exit_1() {
    let p = Pool::new();
    // 10.0.0.0/30: .1 is the gateway, .2 the only address to hand out.
    let cfg = p.network("tiny", "10.0.0.0/30");
    assert_eq!(addresses(&ok_json(&p.args(&cfg, &["allocate", "c1"]))), ["10.0.0.2"]);
    let e = fails(&p.args(&cfg, &["allocate", "c2"]), 1);
    assert!(e.contains("pool \"tiny\" exhausted"), "{e}");
    assert!(e.contains(&p.store().join("tiny").display().to_string()), "{e}");
    assert_eq!(ok_json(&p.args(&cfg, &["show", "c2"])), json!([]));
}

#[test]
fn gc_releases_the_invalid_owners_of_its_network_only() {
    let p = Pool::new();
    let a = p.network("neta", "10.0.0.0/24");
    let b = p.network("netb", "10.0.0.0/24");
    for o in ["c1", "c2", "c3"] {
        ok(&p.args(&a, &["allocate", o]));
    }
    ok(&p.args(&b, &["allocate", "c2"]));

    let e = fails(&p.args(&a, &["gc"]), 2);
    assert!(e.contains("--all"), "{e}");
    let report = ok_json(&p.args(&a, &["gc", "c1:eth0"]));
    let released: Vec<(&str, &Value)> = report["released"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["owner"].as_str().unwrap(), &r["ips"]))
        .collect();
    assert_eq!(
        released,
        [("c2:eth0", &json!(["10.0.0.3"])), ("c3:eth0", &json!(["10.0.0.4"]))]
    );
    assert_eq!(report["network"], "neta");
    let owners = |cfg: &Path| -> Vec<String> {
        ok_json(&p.args(cfg, &["show"]))
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["owner"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(owners(&a), ["c1:eth0"]);
    assert_eq!(owners(&b), ["c2:eth0"], "GC of neta touched netb");

    // Text names what was released; --all releases the rest.
    let text = ok(&p.args(&a, &["gc", "--all"]));
    assert!(text.contains("released 10.0.0.2 c1:eth0\n"), "{text}");
    assert!(text.contains("network neta: released 1 address"), "{text}");
    assert!(owners(&a).is_empty());
    assert_eq!(owners(&b), ["c2:eth0"]);
}

#[test]
fn check_reports_what_gc_repairs() {
    let p = Pool::new();
    let cfg = p.network("net", "10.0.0.0/24");
    ok(&p.args(&cfg, &["allocate", "c1"]));
    ok(&p.args(&cfg, &["allocate", "c2"]));
    let clean = ok_json(&p.args(&cfg, &["check"]));
    assert_eq!(
        clean,
        json!({"network": "net", "held": 2, "owners": 2, "stale_intents": 0, "problems": []})
    );
    // Damage: c1 releases 10.0.0.2 and gets 10.0.0.4 (round robin), then its owner record is
    // put back to the old one (a valid record listing 10.0.0.2): 10.0.0.4's file names c1 but
    // c1's record does not list it, and lists 10.0.0.2, which c1 does not hold.
    let record = p.store().join("net/owner/c1:eth0");
    let old = std::fs::read_to_string(&record).unwrap();
    ok(&p.args(&cfg, &["release", "c1"]));
    assert_eq!(addresses(&ok_json(&p.args(&cfg, &["allocate", "c1"]))), ["10.0.0.4"]);
    std::fs::write(&record, &old).unwrap();
    assert_eq!(
        ok_json(&p.args(&cfg, &["show", "c1"])),
        json!([]),
        "c1's record lists no address it holds"
    );

    let r = run(&p.args(&cfg, &["-j", "check"]));
    assert_eq!(r.code, 1, "{r:?}");
    let found: Value = serde_json::from_str(&r.stdout).unwrap();
    let problems = found["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{found}");
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .contains("10.0.0.4 is held by container c1 interface eth0"),
        "{found}"
    );
    assert_eq!(found["stale_intents"], 1, "{found}");
    let r = run(&p.args(&cfg, &["check"]));
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("problem: "), "{}", r.stdout);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);

    // GC with c1 valid adopts the orphan back into c1's record.
    let report = ok_json(&p.args(&cfg, &["gc", "c1", "c2"]));
    assert_eq!(report["orphans_adopted"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(
        (
            &report["orphans_adopted"][0]["ip"],
            &report["orphans_adopted"][0]["owner"]
        ),
        (&json!("10.0.0.4"), &json!("c1:eth0"))
    );
    assert_eq!(report["stale_intents"], 1, "{report}");
    assert_eq!(
        ok_json(&p.args(&cfg, &["check"])),
        json!({"network": "net", "held": 2, "owners": 2, "stale_intents": 0, "problems": []})
    );
    assert_eq!(ok_json(&p.args(&cfg, &["show", "c1"]))[0]["ip"], "10.0.0.4");
}

#[test]
fn config_shapes_and_bad_configs() {
    let p = Pool::new();
    let ipam = json!({"ranges": [[{"subnet": "10.5.0.0/24"}]]});
    // A bare ipam object needs --network; a conflist gives its name.
    let bare = p.config("bare.json", &ipam);
    let e = fails(&p.args(&bare, &["show"]), 2);
    assert!(e.contains("--network"), "{e}");
    let mut with_name = vec!["ipam", "--network", "plain"];
    with_name.extend_from_slice(&p.args(&bare, &["allocate", "c1"])[1..]);
    assert_eq!(addresses(&ok_json(&with_name)), ["10.5.0.2"]);
    assert!(p.store().join("plain/ip/10.5.0.2").exists());
    let list = p.config(
        "list.conflist",
        &json!({"cniVersion": "1.1.0", "name": "listed", "plugins": [{"type": "x"}, {"type": "bridge", "ipam": ipam}]}),
    );
    assert_eq!(addresses(&ok_json(&p.args(&list, &["allocate", "c1"]))), ["10.5.0.2"]);
    assert!(p.store().join("listed/ip/10.5.0.2").exists());

    // The file is input the operation reads: a bad one is exit 1 naming it (as topo's files).
    let missing = p.dir.path().join("missing.json");
    let e = fails(&p.args(&missing, &["show"]), 1);
    assert!(e.contains("missing.json: read:"), "{e}");
    let garbage = p.dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"ranges\": [").unwrap();
    let e = fails(&p.args(&garbage, &["show"]), 1);
    assert!(e.contains("garbage.json: ipam config is not valid JSON"), "{e}");
    let bad = p.config(
        "bad.json",
        &json!({"name": "n", "ipam": {"ranges": [[{"subnet": "10.0.0.0/33"}]]}}),
    );
    let e = fails(&p.args(&bad, &["show"]), 1);
    assert!(e.contains("bad.json: ipam config: subnet \"10.0.0.0/33\""), "{e}");
    let bad = p.config("noranges.json", &json!({"name": "n", "ipam": {"routes": []}}));
    assert!(fails(&p.args(&bad, &["show"]), 1).contains("no ranges"));

    // Bad words are usage errors, and create no store.
    let cfg = p.network("words", "10.0.0.0/24");
    for args in [
        &["allocate", "_bad"][..],
        &["allocate", "a b"],
        &["release", "c1:"],
        &["show", "c1:eth0:x"],
        &["gc", "ok", ":x"],
    ] {
        fails(&p.args(&cfg, args), 2);
    }
    assert!(!p.store().join("words").exists());
    let r = run(&["ipam", "show"]);
    assert_eq!(r.code, 2, "--config is required: {r:?}");
}
