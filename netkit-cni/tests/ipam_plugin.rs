//! The `netkit-ipam` binary driven as runtimes drive it: one process per call, in parallel,
//! killed with SIGKILL at random moments. Only files are touched (a temp data directory).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use netkit_core::ipam::{Ipam, IpamConfig, Owner, StoreOptions};
use netkit_test_support::{tempdir, Rng};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_netkit-ipam");

fn conf(dir: &Path, version: &str, ranges: &str) -> String {
    format!(
        r#"{{"cniVersion":"{version}","name":"pool-under-test","type":"bridge","unknownTopLevelKey":true,
            "ipam":{{"type":"netkit-ipam","dataDir":"{}","ranges":{ranges}}}}}"#,
        dir.display()
    )
}

fn spawn(command: &str, id: &str, config: &str, extra: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", "/var/run/netns/not-used-by-ipam")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run netkit-ipam");
    // A plugin may stop reading (input too large) and exit: a broken pipe is its answer.
    let _ = child.stdin.take().unwrap().write_all(config.as_bytes());
    child
}

fn call(command: &str, id: &str, config: &str) -> (bool, Value) {
    let out = spawn(command, id, config, &[]).wait_with_output().unwrap();
    (out.status.success(), parse(&out))
}

fn parse(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
}

fn open(dir: &Path, ranges: &str) -> Ipam {
    let cfg = IpamConfig::from_json(&format!(r#"{{"ranges": {ranges}}}"#)).unwrap();
    Ipam::open(cfg.pool("pool-under-test").unwrap(), dir, StoreOptions::default()).unwrap()
}

const V4_24: &str = r#"[[{"subnet":"10.50.0.0/24"}]]"#;

#[test]
fn sixty_four_parallel_adds_get_distinct_addresses() {
    let dir = tempdir("ipam-plugin-par64");
    let config = conf(dir.path(), "1.0.0", V4_24);
    let children: Vec<Child> = (0..64).map(|i| spawn("ADD", &format!("c{i}"), &config, &[])).collect();
    let mut addrs = BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let v = parse(&out);
        assert!(out.status.success(), "{v}");
        addrs.insert(v["ips"][0]["address"].as_str().unwrap().to_string());
    }
    assert_eq!(addrs.len(), 64, "{addrs:?}");
    let ipam = open(dir.path(), V4_24);
    let check = ipam.check().unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.held, 64);
}

#[test]
fn a_pool_of_ten_serves_exactly_ten_of_sixty_four() {
    let dir = tempdir("ipam-plugin-pool10");
    let ranges = r#"[[{"subnet":"10.51.0.0/24","rangeStart":"10.51.0.10","rangeEnd":"10.51.0.19"}]]"#;
    let config = conf(dir.path(), "1.1.0", ranges);
    let children: Vec<Child> = (0..64).map(|i| spawn("ADD", &format!("c{i}"), &config, &[])).collect();
    let (mut ok, mut exhausted) = (BTreeSet::new(), 0);
    for child in children {
        let out = child.wait_with_output().unwrap();
        let v = parse(&out);
        if out.status.success() {
            ok.insert(v["ips"][0]["address"].as_str().unwrap().to_string());
        } else {
            assert_eq!(v["code"], 100, "{v}");
            let msg = v["msg"].as_str().unwrap();
            assert!(msg.contains("exhausted") && msg.contains("pool-under-test"), "{msg}");
            exhausted += 1;
        }
    }
    assert_eq!(ok.len(), 10, "{ok:?}");
    assert_eq!(exhausted, 54);
}

#[test]
fn sigkill_at_random_moments_leaves_a_consistent_recoverable_store() {
    let dir = tempdir("ipam-plugin-kill");
    let ranges = r#"[[{"subnet":"10.52.0.0/16"}],[{"subnet":"fd52::/64"}]]"#;
    let config = conf(dir.path(), "1.1.0", ranges);
    let mut rng = Rng::seeded();
    // Calibrate: how long does one ADD take here? Kills land anywhere in 0..1.5× of it.
    let t = Instant::now();
    assert!(call("ADD", "calibrate", &config).0);
    let span = (t.elapsed().as_micros() as u64 * 3 / 2).max(200);
    let mut acknowledged: Vec<(Owner, Vec<String>)> = Vec::new();
    let (mut killed, mut completed) = (0, 0);
    for round in 0..25 {
        let batch: Vec<(String, Child)> = (0..8)
            .map(|i| {
                let id = format!("r{round}c{i}");
                let child = spawn("ADD", &id, &config, &[]);
                (id, child)
            })
            .collect();
        for (id, mut child) in batch {
            std::thread::sleep(Duration::from_micros(rng.below(span)));
            let _ = child.kill(); // SIGKILL
            let out = child.wait_with_output().unwrap();
            if out.status.success() {
                completed += 1;
                let v = parse(&out);
                let ips = v["ips"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["address"].as_str().unwrap().to_string());
                acknowledged.push((Owner::new(&id, "eth0").unwrap(), ips.collect()));
            } else {
                killed += 1;
            }
        }
    }
    println!("{killed} killed, {completed} completed");
    assert!(killed > 0, "no process was killed mid-way: the test proved nothing");

    let ipam = open(dir.path(), ranges);
    let check = ipam.check().expect("the store loads after the kills");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    // Nothing acknowledged was lost.
    for (owner, ips) in &acknowledged {
        let mut held: Vec<String> = ipam.lookup(owner).unwrap().iter().map(|i| i.to_string()).collect();
        let mut want: Vec<String> = ips.iter().map(|a| a.split('/').next().unwrap().to_string()).collect();
        held.sort();
        want.sort();
        assert_eq!(held, want, "{owner} lost an acknowledged address");
    }
    // GC recovers everything the killed processes held: afterwards only acknowledged owners
    // (and the calibration owner) hold anything.
    let mut valid: Vec<Owner> = acknowledged.iter().map(|(o, _)| o.clone()).collect();
    valid.push(Owner::new("calibrate", "eth0").unwrap());
    ipam.gc(&valid).unwrap();
    let holders: BTreeSet<Owner> = ipam.list().unwrap().into_iter().map(|(_, o)| o).collect();
    assert!(holders.iter().all(|o| valid.contains(o)), "{holders:?}");
    assert_eq!(ipam.list().unwrap().len(), valid.len() * 2);
    let check = ipam.check().unwrap();
    assert_eq!((check.stale_intents, check.problems.len()), (0, 0));
    // Scratch files of the killed processes: GC removes them once they are older than any
    // live write could be (age the ones left, as time would).
    let tmp = dir.path().join("pool-under-test/tmp");
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for e in std::fs::read_dir(&tmp).unwrap() {
        let f = std::fs::File::options().write(true).open(e.unwrap().path()).unwrap();
        f.set_modified(long_ago).unwrap();
    }
    ipam.gc(&valid).unwrap();
    let tmp_left = std::fs::read_dir(&tmp).unwrap().count();
    assert_eq!(tmp_left, 0, "GC left scratch files of killed processes");
}

#[test]
fn verbs_add_check_del_gc_version_status() {
    let dir = tempdir("ipam-plugin-verbs");
    let config = conf(dir.path(), "1.1.0", V4_24);
    let (ok, v) = call("ADD", "a", &config);
    assert!(ok, "{v}");
    assert_eq!(v["cniVersion"], "1.1.0");
    let a_ip = v["ips"][0]["address"].as_str().unwrap().to_string();
    assert_eq!(
        call("ADD", "a", &config).1["ips"][0]["address"],
        a_ip.as_str(),
        "ADD is idempotent"
    );
    assert!(call("ADD", "b", &config).0);
    assert!(call("CHECK", "a", &config).0);
    // CHECK with a prevResult naming an address the owner does not hold.
    let with_prev = config.replacen('{', r#"{"prevResult":{"ips":[{"address":"10.50.0.200/24"}]},"#, 1);
    let (ok, v) = call("CHECK", "a", &with_prev);
    assert!(!ok);
    assert_eq!(v["code"], 102, "{v}");
    // DEL twice: both succeed, nothing printed.
    assert_eq!(call("DEL", "a", &config), (true, Value::Null));
    assert_eq!(call("DEL", "a", &config), (true, Value::Null));
    assert_eq!(call("CHECK", "a", &config).1["code"], 102);
    // GC keeps only the valid attachment.
    assert!(call("ADD", "c", &config).0);
    let gc = config.replacen(
        '{',
        r#"{"cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}],"#,
        1,
    );
    assert_eq!(call("GC", "", &gc), (true, Value::Null));
    let holders: Vec<String> = open(dir.path(), V4_24)
        .list()
        .unwrap()
        .iter()
        .map(|(_, o)| o.container_id().to_string())
        .collect();
    assert_eq!(holders, ["c"]);
    // VERSION answers in the asked version.
    let (ok, v) = call("VERSION", "", r#"{"cniVersion":"0.3.1"}"#);
    assert!(ok);
    assert_eq!(v["cniVersion"], "0.3.1");
    assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5);
    // STATUS: fine here, 50 when the data directory cannot be a directory.
    assert_eq!(call("STATUS", "", &config), (true, Value::Null));
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (ok, v) = call("STATUS", "", &conf(&file, "1.1.0", V4_24));
    assert!(!ok);
    assert_eq!(v["code"], 50, "{v}");
}

#[test]
fn results_in_every_supported_version() {
    let dir = tempdir("ipam-plugin-versions");
    for (i, version) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        let config = conf(
            dir.path(),
            version,
            r#"[[{"subnet":"10.53.0.0/24"}],[{"subnet":"fd53::/64"}]]"#,
        );
        let (ok, v) = call("ADD", &format!("v{i}"), &config);
        assert!(ok, "{version}: {v}");
        assert_eq!(v["cniVersion"], *version);
        let ips = v["ips"].as_array().unwrap();
        assert_eq!(ips.len(), 2);
        let has_version = ips[0].get("version").is_some();
        assert_eq!(has_version, version.starts_with("0."), "{version}: {v}");
    }
}

#[test]
fn static_ips_from_cni_args_args_and_runtime_config() {
    let dir = tempdir("ipam-plugin-static");
    let config = conf(dir.path(), "1.0.0", V4_24);
    let out = spawn("ADD", "s1", &config, &[("CNI_ARGS", "IP=10.50.0.77")])
        .wait_with_output()
        .unwrap();
    assert_eq!(parse(&out)["ips"][0]["address"], "10.50.0.77/24");
    let rc = config.replacen('{', r#"{"runtimeConfig":{"ips":["10.50.0.78/24"]},"#, 1);
    assert_eq!(call("ADD", "s2", &rc).1["ips"][0]["address"], "10.50.0.78/24");
    let args = config.replacen('{', r#"{"args":{"cni":{"ips":["10.50.0.79"]}},"#, 1);
    assert_eq!(call("ADD", "s3", &args).1["ips"][0]["address"], "10.50.0.79/24");
    // Taken, reserved, outside: code 101 naming the address.
    for (ip, id) in [("10.50.0.77", "s4"), ("10.50.0.1", "s5"), ("10.99.0.1", "s6")] {
        let out = spawn("ADD", id, &config, &[("CNI_ARGS", &format!("IP={ip}"))])
            .wait_with_output()
            .unwrap();
        let v = parse(&out);
        assert_eq!(v["code"], 101, "{v}");
        assert!(v["msg"].as_str().unwrap().contains(ip));
    }
    // Unknown CNI_ARGS keys: refused unless IgnoreUnknown=1.
    let out = spawn("ADD", "s7", &config, &[("CNI_ARGS", "K8S_POD_NAME=x")])
        .wait_with_output()
        .unwrap();
    assert_eq!(parse(&out)["code"], 2);
    let out = spawn("ADD", "s7", &config, &[("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=x")])
        .wait_with_output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn bad_input_gets_the_right_code_and_changes_nothing() {
    let dir = tempdir("ipam-plugin-bad");
    let good = conf(dir.path(), "1.0.0", V4_24);
    assert!(call("ADD", "keep", &good).0);
    let snapshot = || {
        let ipam = open(dir.path(), V4_24);
        ipam.list().unwrap()
    };
    let before = snapshot();
    let cases: Vec<(String, u64)> = vec![
        ("not json".into(), 6),
        ("[1,2]".into(), 6),
        (good.replace("1.0.0", "0.2.0"), 1),
        (good.replace("1.0.0", "9.9.9"), 1),
        (good.replace("10.50.0.0/24", "10.50.0.0/33"), 7),
        (good.replace("10.50.0.0/24", "banana"), 7),
        (good.replace(r#""name":"pool-under-test","#, ""), 7),
        (good.replace(r#""ranges""#, r#""rangesX""#), 7),
        (
            conf(
                dir.path(),
                "1.0.0",
                r#"[[{"subnet":"10.50.0.0/24","gateway":"10.60.0.1"}]]"#,
            ),
            7,
        ),
        (
            conf(
                dir.path(),
                "1.0.0",
                r#"[[{"subnet":"10.50.0.0/24","rangeStart":"10.50.0.9","rangeEnd":"10.50.0.3"}]]"#,
            ),
            7,
        ),
        (
            conf(
                dir.path(),
                "1.0.0",
                r#"[[{"subnet":"10.50.0.0/24"}],[{"subnet":"10.50.0.0/25"}]]"#,
            ),
            7,
        ),
        (format!("{{\"pad\":\"{}\",{}", "x".repeat(10 << 20), &good[1..]), 6),
    ];
    for (config, code) in &cases {
        let (ok, v) = call("ADD", "newcomer", config);
        assert!(!ok, "accepted: {}", &config[..config.len().min(200)]);
        assert_eq!(v["code"], *code, "{v} for {}", &config[..config.len().min(200)]);
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Missing or bad environment: code 4.
    for env in [
        vec![("CNI_COMMAND", "ADD")],
        vec![
            ("CNI_COMMAND", "FROB"),
            ("CNI_CONTAINERID", "x"),
            ("CNI_IFNAME", "eth0"),
        ],
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "x"),
            ("CNI_NETNS", "/n"),
            ("CNI_IFNAME", "bad/name"),
        ],
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "-bad"),
            ("CNI_NETNS", "/n"),
            ("CNI_IFNAME", "eth0"),
        ],
    ] {
        let mut cmd = Command::new(BIN);
        cmd.env_clear().stdin(Stdio::piped()).stdout(Stdio::piped());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(good.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        assert_eq!(parse(&out)["code"], 4, "{env:?}");
    }
    assert_eq!(snapshot(), before, "a refused call changed the store");
}

#[test]
fn gc_without_a_valid_attachment_list_releases_nothing() {
    let dir = tempdir("ipam-plugin-gcstrict");
    let config = conf(dir.path(), "1.1.0", V4_24);
    assert!(call("ADD", "keep", &config).0);
    let cases = [
        ("missing", String::new()),
        (
            "not a list",
            r#""cni.dev/valid-attachments":{"containerID":"keep","ifname":"eth0"},"#.to_string(),
        ),
        (
            "entry without ifname",
            r#""cni.dev/valid-attachments":[{"containerID":"keep"}],"#.to_string(),
        ),
    ];
    for (what, extra) in cases {
        let (ok, v) = call("GC", "", &config.replacen('{', &format!("{{{extra}"), 1));
        assert!(!ok, "{what}: GC succeeded");
        assert_eq!(v["code"], 7, "{what}: {v}");
        assert_eq!(
            open(dir.path(), V4_24).list().unwrap().len(),
            1,
            "{what}: GC released a valid owner"
        );
    }
    // The spelling of a draft of spec 1.1.0 is understood.
    let draft = config.replacen(
        '{',
        r#"{"cni.dev/attachments":[{"containerID":"keep","ifname":"eth0"}],"#,
        1,
    );
    assert!(call("GC", "", &draft).0);
    assert_eq!(open(dir.path(), V4_24).list().unwrap().len(), 1);
}

#[test]
fn host_local_spellings_empty_strings_null_and_legacy_beside_ranges() {
    let dir = tempdir("ipam-plugin-spellings");
    let cfg = format!(
        r#"{{"cniVersion":"1.0.0","name":"pool-under-test","ipam":{{"type":"netkit-ipam","dataDir":"{}",
            "resolvConf":"","routes":null,"subnet":"10.63.0.0/24","ranges":[[{{"subnet":"fd63::/64"}}]]}}}}"#,
        dir.path().display()
    );
    let (ok, v) = call("ADD", "c1", &cfg);
    assert!(ok, "{v}");
    let ips: Vec<&str> = v["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        ips,
        ["10.63.0.2/24", "fd63::2/64"],
        "host-local puts the legacy range first"
    );
    // `ipRanges` replaces the configured ranges.
    let rc = cfg.replacen(
        '{',
        r#"{"runtimeConfig":{"ipRanges":[[{"subnet":"10.64.0.0/24"}]]},"#,
        1,
    );
    let (ok, v) = call("ADD", "c2", &rc);
    assert!(ok, "{v}");
    assert_eq!(v["ips"][0]["address"], "10.64.0.2/24");
}

#[test]
fn round_robin_past_the_top_of_the_v6_space() {
    let dir = tempdir("ipam-plugin-top");
    let config = conf(
        dir.path(),
        "1.0.0",
        r#"[[{"subnet":"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126"}]]"#,
    );
    assert!(call("ADD", "c1", &config).0);
    let (ok, v) = call("ADD", "c2", &config);
    assert!(ok);
    assert_eq!(v["ips"][0]["address"], "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/126");
    assert!(call("DEL", "c1", &config).0);
    let (ok, v) = call("ADD", "c3", &config);
    assert!(ok, "{v}");
    assert_eq!(v["ips"][0]["address"], "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/126");
}

/// Plugins of different containers run in different PID namespaces and can share a pid: their
/// scratch and spare files must never collide.
#[test]
fn parallel_adds_from_separate_pid_namespaces_never_mix_records() {
    let dir = tempdir("ipam-plugin-pidns");
    let config = conf(dir.path(), "1.0.0", r#"[[{"subnet":"10.70.0.0/16"}]]"#);
    // Fill spare/ with released record files to recycle.
    for i in 0..100 {
        assert!(call("ADD", &format!("warm{i}"), &config).0);
        assert!(call("DEL", &format!("warm{i}"), &config).0);
    }
    let spawn_in_pidns = |id: String| {
        let mut child = Command::new("unshare")
            .args(["--pid", "--fork", BIN])
            .env_clear()
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", &id)
            .env("CNI_NETNS", "/x")
            .env("CNI_IFNAME", "eth0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        child.stdin.take().unwrap().write_all(config.as_bytes()).unwrap();
        (id, child)
    };
    let children: Vec<_> = (0..40).map(|i| spawn_in_pidns(format!("p{i}"))).collect();
    let ipam = open(dir.path(), r#"[[{"subnet":"10.70.0.0/16"}]]"#);
    for (id, child) in children {
        let out = child.wait_with_output().unwrap();
        let v = parse(&out);
        assert!(out.status.success(), "{id}: {v}");
        let addr: std::net::IpAddr = v["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            ipam.holder(addr).unwrap(),
            Some(Owner::new(&id, "eth0").unwrap()),
            "{id} got {addr}"
        );
    }
    let check = ipam.check().unwrap();
    assert_eq!((check.held, check.problems.len()), (40, 0), "{:?}", check.problems);
}

/// `"sync": true` in the `ipam` object opens the store with `StoreOptions::sync`; the plugin
/// works the same with it; an oversized `resolvConf` is a configuration error (code 7).
#[test]
fn sync_key_reaches_the_store_and_an_oversized_resolv_conf_is_refused() {
    let dir = tempdir("ipam-plugin-sync");
    let synced = conf(dir.path(), "1.1.0", V4_24).replacen(
        r#""type":"netkit-ipam","#,
        r#""type":"netkit-ipam","sync":true,"#,
        1,
    );
    let parsed = netkit_cni::ipam::NetConf::parse(synced.as_bytes()).unwrap();
    assert!(parsed.ipam.sync);
    assert!(parsed.open().unwrap().store().options().sync);
    let plain = netkit_cni::ipam::NetConf::parse(conf(dir.path(), "1.1.0", V4_24).as_bytes()).unwrap();
    assert!(!plain.open().unwrap().store().options().sync);
    let (ok, v) = call("ADD", "s1", &synced);
    assert!(ok, "{v}");
    assert_eq!(call("DEL", "s1", &synced), (true, Value::Null));

    let big = dir.path().join("resolv.conf");
    std::fs::write(&big, "#".repeat(64 * 1024 + 1)).unwrap();
    let with_big = conf(dir.path(), "1.1.0", V4_24).replacen(
        r#""type":"netkit-ipam","#,
        &format!(r#""type":"netkit-ipam","resolvConf":"{}","#, big.display()),
        1,
    );
    let (ok, v) = call("ADD", "s2", &with_big);
    assert!(!ok);
    assert_eq!(v["code"], 7, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("64 KiB"), "{v}");
}
