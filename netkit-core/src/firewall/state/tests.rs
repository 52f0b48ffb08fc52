//! Tests of the state directory on real files in temporary directories.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::firewall::model::{Endpoint, Masquerade, Network, Protocol, Service};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn temp_state() -> (tempfile::TempDir, StateDir) {
    let t = tempfile::tempdir().unwrap();
    let s = StateDir::open(t.path()).unwrap();
    (t, s)
}

/// Every file under `dir` (relative path → contents; directories → `None`).
fn snapshot(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else if meta.is_symlink() {
                out.insert(
                    rel,
                    Some(format!("-> {}", std::fs::read_link(&path).unwrap().display()).into_bytes()),
                );
            } else {
                out.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// Files in `quarantine/` whose name is `name`, with their contents.
fn quarantined(root: &Path, name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    snapshot(&root.join("quarantine"))
        .into_iter()
        .filter(|(rel, c)| c.is_some() && rel.rsplit('/').next() == Some(name))
        .map(|(rel, c)| (root.join("quarantine").join(rel), c.unwrap()))
        .collect()
}

fn web_rules() -> Rules {
    Rules {
        networks: vec![Network::new("cni0", "10.88.0.0/16".parse().unwrap())],
        masquerades: vec![Masquerade::address(ip("10.88.0.5"), "10.88.0.0/16".parse().unwrap())],
        port_mappings: vec![PortMapping::new(Protocol::Tcp, 8080, ip("10.88.0.5"), 80)],
        ..Default::default()
    }
}

#[test]
fn hex_and_escape_round_trip() {
    for s in ["abc:eth0", "svc/default/web", "x"] {
        assert_eq!(unhex(&hex(s)).as_deref(), Some(s));
        assert_eq!(unescape(&escape(s)), s);
    }
    assert_eq!(unhex("zz"), None);
    assert_eq!(unhex("abc"), None);
    assert_eq!(owner_file("ns/pod@x%1:eth0"), "ns+pod@x%1:eth0.json");
    assert_eq!(
        owner_of_file(OsStr::new("ns+pod@x%1:eth0.json")).as_deref(),
        Some("ns/pod@x%1:eth0")
    );
    assert_eq!(owner_of_file(OsStr::new("-x.json")), None);
    assert_eq!(
        (service_file("."), service_file(".."), service_file("a/b")),
        ("%2e".into(), "%2e%2e".into(), "a+b".into())
    );
}

#[test]
fn shared_holders_come_and_go_one_file_each() {
    let (t, s) = temp_state();
    let key = "masq:10.88.0.0/16";
    assert_eq!(s.other_holder(key, "a:eth0").unwrap(), None);
    s.index_shared(key, "a:eth0", "10.88.0.0/16", true).unwrap();
    s.index_shared(key, "a:eth0", "10.88.0.0/16", true).unwrap(); // idempotent
    assert_eq!(s.other_holder(key, "a:eth0").unwrap(), None);
    assert_eq!(
        s.other_holder(key, "b:eth0").unwrap(),
        Some(("a:eth0".into(), "10.88.0.0/16".into()))
    );
    s.index_shared(key, "b/x:eth0", "10.88.0.0/16", true).unwrap();
    assert_eq!(s.sharers(key).unwrap().len(), 2);
    assert!(t.path().join("holders").join(hex(key)).join("b+x:eth0").is_file());
    s.index_shared(key, "a:eth0", "", false).unwrap();
    s.index_shared(key, "a:eth0", "", false).unwrap(); // already gone: fine
    assert_eq!(
        s.sharers(key).unwrap(),
        vec![("b/x:eth0".into(), "10.88.0.0/16".into())]
    );
    s.index_shared(key, "b/x:eth0", "", false).unwrap();
    assert!(
        !t.path().join("holders").join(hex(key)).exists(),
        "the directory goes with its last holder"
    );
    assert!(s.sharers(key).unwrap().is_empty());
}

/// A state directory of the first layout, written as netkit wrote it before.
fn write_legacy(root: &Path, owners: &[(&str, &Rules)]) {
    for d in ["owners", "services", "shared", "ports", "tmp", "spare"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (o, rules) in owners {
        std::fs::write(
            root.join("owners").join(format!("{}.json", hex(o))),
            serde_json::to_string_pretty(rules).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn a_legacy_layout_is_migrated_and_every_owner_service_and_holder_found() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let web = web_rules();
    let svc = Rules {
        services: vec![Service::new("default/web", Protocol::Tcp, ip("10.96.0.10"), 80)
            .endpoint(Endpoint::new(ip("10.88.0.5"), 8080))],
        ..Default::default()
    };
    let other = Rules {
        networks: vec![Network::new("cni0", "10.88.0.0/16".parse().unwrap())],
        ..Default::default()
    };
    write_legacy(
        root,
        &[("c1:eth0", &web), ("svc/default/web", &svc), ("c2:eth0", &other)],
    );
    std::fs::write(root.join("services").join(hex("default/web")), "svc/default/web").unwrap();
    let net = "net:cni0:10.88.0.0/16";
    std::fs::create_dir(root.join("shared").join(hex(net))).unwrap();
    for o in ["c1:eth0", "c2:eth0"] {
        std::fs::write(root.join("shared").join(hex(net)).join(hex(o)), "").unwrap();
    }
    // The older one-file format of the shared index.
    let masq = "masq:10.88.0.5/32";
    std::fs::write(
        root.join("shared").join(hex(masq)),
        format!("{}\t10.88.0.0/16\n", hex("c1:eth0")),
    )
    .unwrap();
    std::fs::write(root.join("ports/tcp.8080"), format!("{}\t*\t4\n", hex("c1:eth0"))).unwrap();

    let s = StateDir::open(root).unwrap();
    assert_eq!(s.owners().unwrap(), ["c1:eth0", "c2:eth0", "svc/default/web"]);
    assert_eq!(s.rules("c1:eth0").unwrap(), web);
    assert_eq!(s.rules("svc/default/web").unwrap(), svc);
    assert_eq!(
        s.service_owner("default/web").unwrap().as_deref(),
        Some("svc/default/web")
    );
    assert_eq!(
        s.sharers(net).unwrap(),
        [("c1:eth0".into(), String::new()), ("c2:eth0".into(), String::new())]
    );
    assert_eq!(s.sharers(masq).unwrap(), [("c1:eth0".into(), "10.88.0.0/16".into())]);
    let m = PortMapping::new(Protocol::Tcp, 8080, ip("10.88.0.9"), 80);
    assert_eq!(
        s.port_conflict("c9:eth0", &m).unwrap().map(|(_, c)| c.owner),
        Some("c1:eth0".into())
    );
    for legacy in ["owners", "services", "shared"] {
        assert!(!root.join(legacy).exists(), "{legacy}/ is still there");
    }
    assert!(root.join("owner/svc+default+web.json").is_file());
    assert!(root.join("service/default+web").is_file());
    assert!(!root.join("quarantine").exists(), "nothing was quarantined");

    // An interrupted migration (some files moved, some not; a one-file index converted in
    // part) is finished by the next open.
    std::fs::create_dir(root.join("owners")).unwrap();
    std::fs::write(
        root.join("owners").join(format!("{}.json", hex("c3:eth0"))),
        serde_json::to_string(&other).unwrap(),
    )
    .unwrap();
    std::fs::create_dir(root.join("shared")).unwrap();
    let iso = "iso:br0:br1";
    std::fs::write(
        root.join("shared").join(hex(iso)),
        format!("{}\t\n{}\t\n", hex("c1:eth0"), hex("c3:eth0")),
    )
    .unwrap();
    std::fs::create_dir(root.join("holders").join(hex(iso))).unwrap();
    std::fs::write(root.join("holders").join(hex(iso)).join("c1:eth0"), "").unwrap();
    let s = StateDir::open(root).unwrap();
    assert_eq!(
        s.owners().unwrap(),
        ["c1:eth0", "c2:eth0", "c3:eth0", "svc/default/web"]
    );
    assert_eq!(
        s.sharers(iso).unwrap(),
        [("c1:eth0".into(), String::new()), ("c3:eth0".into(), String::new())]
    );
    assert!(!root.join("owners").exists() && !root.join("shared").exists());

    // Owners longer than the first layout allowed (125 bytes) round-trip.
    let long = format!("{}:eth0", "a1/b2@c%-_.".repeat(18));
    assert!(
        long.len() > 200 && long.len() <= MAX_OWNER_LEN_FOR_TESTS,
        "{}",
        long.len()
    );
    s.set_rules(&long, &web).unwrap();
    assert_eq!(s.rules(&long).unwrap(), web);
    assert!(s.owners().unwrap().contains(&long));
    s.index_shared(net, &long, "", true).unwrap();
    assert!(s.sharers(net).unwrap().iter().any(|(o, _)| *o == long));
    s.index_ports(&long, &PortMapping::new(Protocol::Udp, 53, ip("10.88.0.7"), 53), true)
        .unwrap();
    let dns = PortMapping::new(Protocol::Udp, 53, ip("10.88.0.8"), 53);
    assert_eq!(
        s.port_conflict("x:eth0", &dns).unwrap().map(|(_, c)| c.owner),
        Some(long.clone())
    );
    let longest = format!("a{}", "b".repeat(MAX_OWNER_LEN_FOR_TESTS - 1));
    s.set_rules(&longest, &other).unwrap();
    assert_eq!(s.rules(&longest).unwrap(), other);
    assert!(s.set_rules(&format!("{longest}c"), &other).is_err());
}

const MAX_OWNER_LEN_FOR_TESTS: usize = crate::firewall::MAX_OWNER_LEN;

#[test]
fn a_damaged_legacy_index_is_quarantined_not_fatal() {
    let t = tempfile::tempdir().unwrap();
    write_legacy(t.path(), &[]);
    let key = "net:cni0:10.88.0.0/16";
    std::fs::write(t.path().join("shared").join(hex(key)), "zz\t\n").unwrap();
    let s = StateDir::open(t.path()).unwrap();
    assert_eq!(s.other_holder(key, "a:eth0").unwrap(), None);
    assert_eq!(quarantined(t.path(), &hex(key)).len(), 1);
    assert!(!t.path().join("shared").exists());
}

#[test]
fn damaged_state_files_are_quarantined_and_read_as_absent() {
    let (t, s) = temp_state();
    let root = t.path();
    // An owner file cut short by a power cut, and an empty one.
    s.set_rules("a:eth0", &web_rules()).unwrap();
    s.set_rules("b:eth0", &web_rules()).unwrap();
    let text = std::fs::read(root.join("owner/a:eth0.json")).unwrap();
    std::fs::write(root.join("owner/a:eth0.json"), &text[..text.len() / 2]).unwrap();
    std::fs::write(root.join("owner/b:eth0.json"), "").unwrap();
    assert_eq!(s.rules("a:eth0").unwrap(), Rules::default());
    assert_eq!(quarantined(root, "a:eth0.json")[0].1, &text[..text.len() / 2]);
    assert_eq!(s.owners().unwrap(), Vec::<String>::new());
    assert_eq!(quarantined(root, "b:eth0.json").len(), 1);
    assert!(s.no_owners().unwrap());

    // A service index entry naming no valid owner.
    std::fs::write(root.join("service/default+web"), "not an owner!").unwrap();
    assert_eq!(s.service_owner("default/web").unwrap(), None);
    assert_eq!(quarantined(root, "default+web").len(), 1);

    // A port claim file with a bad line.
    std::fs::write(
        root.join("ports/tcp.80"),
        format!("{}\t*\t4\nzz\t*\t4\n", hex("c:eth0")),
    )
    .unwrap();
    let m = PortMapping::new(Protocol::Tcp, 80, ip("10.88.0.9"), 80);
    assert_eq!(s.port_conflict("d:eth0", &m).unwrap(), None);
    assert_eq!(quarantined(root, "tcp.80").len(), 1);
    s.index_ports("d:eth0", &m, true).unwrap();
    assert_eq!(
        s.port_conflict("e:eth0", &m).unwrap().map(|(_, c)| c.owner),
        Some("d:eth0".into())
    );

    // Holder entries: one whose name is no owner, one whose detail is no network.
    let key = "masq:10.88.0.5/32";
    s.index_shared(key, "good:eth0", "10.88.0.0/16", true).unwrap();
    let dir = root.join("holders").join(hex(key));
    std::fs::write(dir.join("-bad"), "").unwrap();
    std::fs::write(dir.join("worse:eth0"), "not a network").unwrap();
    assert_eq!(s.sharers(key).unwrap(), [("good:eth0".into(), "10.88.0.0/16".into())]);
    assert_eq!(quarantined(root, "-bad").len(), 1);
    assert_eq!(quarantined(root, "worse:eth0").len(), 1);
    s.index_shared(key, "good:eth0", "", false).unwrap();
    assert_eq!(s.other_holder(key, "x:eth0").unwrap(), None);
    assert!(!dir.exists());
}

#[test]
fn planted_rules_that_do_not_validate_never_become_rules() {
    let (t, s) = temp_state();
    let root = t.path();
    s.set_rules("ok:eth0", &web_rules()).unwrap();
    let planted = [
        (
            "quote:eth0.json",
            r#"{"networks":[{"interface":"br\"0","subnet":"10.0.0.0/24"}]}"#,
        ),
        (
            "newline:eth0.json",
            r#"{"networks":[{"interface":"br\n0","subnet":"10.0.0.0/24"}]}"#,
        ),
        (
            "addr:eth0.json",
            r#"{"port_mappings":[{"protocol":"tcp","host_ip":null,"host_port":80,"host_port_end":80,
                "container_ip":"224.0.0.1","container_port":80}]}"#,
        ),
        (
            "svc:eth0.json",
            r#"{"services":[{"name":"x","protocol":"tcp","vip":"not an address","port":80}]}"#,
        ),
        ("-x.json", r#"{}"#),
        ("notes.txt", "hello"),
    ];
    for (name, text) in planted {
        std::fs::write(root.join("owner").join(name), text).unwrap();
    }
    assert_eq!(s.rules("quote:eth0").unwrap(), Rules::default());
    assert_eq!(s.rules("addr:eth0").unwrap(), Rules::default());
    assert_eq!(s.owners().unwrap(), ["ok:eth0"]);
    for o in ["quote:eth0", "newline:eth0", "addr:eth0", "svc:eth0"] {
        assert_eq!(s.rules(o).unwrap(), Rules::default(), "{o}");
    }
    for (name, text) in planted {
        let q = quarantined(root, name);
        assert_eq!(q.len(), 1, "{name}: {q:?}");
        assert_eq!(q[0].1, text.as_bytes());
    }
    assert_eq!(
        std::fs::read_dir(root.join("owner")).unwrap().count(),
        1,
        "only the valid owner is left"
    );
}

#[test]
fn symlinks_planted_in_the_state_dir_are_never_followed() {
    let (t, s) = temp_state();
    let root = t.path();
    let outside = tempfile::tempdir().unwrap();
    let rules_file = outside.path().join("rules.json");
    std::fs::write(&rules_file, serde_json::to_string(&web_rules()).unwrap()).unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let claims = outside.path().join("claims");
    std::fs::write(&claims, format!("{}\t*\t4\n", hex("evil:eth0"))).unwrap();
    let holders = outside.path().join("holders");
    std::fs::create_dir(&holders).unwrap();
    std::fs::write(holders.join("evil:eth0"), "").unwrap();

    symlink(&rules_file, root.join("owner/evil:eth0.json")).unwrap();
    symlink(&victim, root.join("service/default+web")).unwrap();
    symlink(&claims, root.join("ports/tcp.80")).unwrap();
    let key = "net:cni0:10.88.0.0/16";
    symlink(&holders, root.join("holders").join(hex(key))).unwrap();
    for i in 0..6 {
        symlink(&victim, root.join(format!("spare/0.planted.{i}"))).unwrap();
    }
    let before = snapshot(outside.path());

    assert_eq!(s.rules("evil:eth0").unwrap(), Rules::default(), "read through a link");
    assert!(s.owners().unwrap().is_empty());
    assert_eq!(s.service_owner("default/web").unwrap(), None);
    let m = PortMapping::new(Protocol::Tcp, 80, ip("10.88.0.9"), 80);
    assert_eq!(s.port_conflict("a:eth0", &m).unwrap(), None);
    assert_eq!(s.other_holder(key, "a:eth0").unwrap(), None);
    // Writes go through spares and replace names that were links.
    for i in 0..4 {
        s.set_rules(&format!("w{i}:eth0"), &web_rules()).unwrap();
    }
    s.index_ports("a:eth0", &m, true).unwrap();
    s.set_service_owner("default/web", Some("a:eth0")).unwrap();
    s.index_shared(key, "a:eth0", "", true).unwrap();
    s.set_rules("evil:eth0", &web_rules()).unwrap();
    assert_eq!(
        snapshot(outside.path()),
        before,
        "a file outside the state directory changed"
    );
    assert_eq!(s.service_owner("default/web").unwrap().as_deref(), Some("a:eth0"));
    assert_eq!(s.sharers(key).unwrap(), [("a:eth0".into(), String::new())]);
}

#[test]
fn directories_are_0700_and_files_0600() {
    let (t, s) = temp_state();
    s.set_rules("a:eth0", &web_rules()).unwrap();
    s.set_service_owner("default/web", Some("a:eth0")).unwrap();
    s.index_shared("net:cni0:10.88.0.0/16", "a:eth0", "", true).unwrap();
    s.index_ports("a:eth0", &web_rules().port_mappings[0], true).unwrap();
    s.set_rules("a:eth0", &Rules::default()).unwrap(); // a spare
    drop(s.lock().unwrap());
    let nested = t.path().join("below/state");
    drop(StateDir::open(&nested).unwrap());
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    // The temporary directory is the test's; everything in it is the state directory's.
    assert_eq!(mode(&t.path().join("below")), 0o700);
    let all = snapshot(t.path());
    assert!(all.len() > 12, "{:?}", all.keys());
    for (rel, content) in all {
        let want = if content.is_none() { 0o700 } else { 0o600 };
        assert_eq!(mode(&t.path().join(&rel)), want, "{rel}");
    }
}

#[test]
fn lock_waits_are_bounded() {
    let (t, mut s) = temp_state();
    s.set_lock_timeout(Duration::from_millis(100));
    drop(s.lock().unwrap()); // makes the lock file
                             // The test holds the lock as another process would (its own open file description).
    let f = std::fs::File::open(t.path().join("lock")).unwrap();
    let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let start = std::time::Instant::now();
    match s.lock() {
        Err(FirewallError::LockTimeout { path, waited }) => {
            assert_eq!(path, t.path().join("lock"));
            assert_eq!(waited, Duration::from_millis(100));
        }
        other => panic!("expected LockTimeout, got {:?}", other.map(drop)),
    }
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    let msg = s.lock().err().unwrap().to_string();
    assert!(msg.contains("lock") && msg.contains("100ms"), "{msg}");
    drop(held);
    drop(s.lock().expect("free again"));
}

#[test]
fn the_id_is_made_once_and_every_open_agrees() {
    let (t, s) = temp_state();
    let id = s.id().to_string();
    assert_eq!(id.len(), 16);
    assert!(
        id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    assert_eq!(std::fs::read_to_string(t.path().join("id")).unwrap(), format!("{id}\n"));
    assert_eq!(StateDir::open(t.path()).unwrap().id(), id);
    let other = temp_state();
    assert_ne!(other.1.id(), id, "two state directories, one id");

    // Concurrent first opens of a new directory agree on one id.
    for _ in 0..20 {
        let d = tempfile::tempdir().unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (path, barrier) = (d.path().join("state"), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    StateDir::open(&path).unwrap().id().to_string()
                })
            })
            .collect();
        let ids: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    }

    // A damaged id is quarantined and a new one made.
    std::fs::write(t.path().join("id"), "garbage").unwrap();
    let again = StateDir::open(t.path()).unwrap();
    assert_ne!(again.id(), id);
    assert_eq!(quarantined(t.path(), "id").len(), 1);
}

#[test]
fn each_quarantine_writes_one_log_line() {
    let (t, s) = temp_state();
    std::fs::write(t.path().join("owner/a:eth0.json"), "{").unwrap();
    crate::fsutil::testlog::start();
    assert_eq!(s.rules("a:eth0").unwrap(), Rules::default());
    let lines = crate::fsutil::testlog::lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let moved = &quarantined(t.path(), "a:eth0.json")[0].0;
    for part in [
        "WARN",
        &t.path().join("owner/a:eth0.json").display().to_string(),
        &moved.display().to_string(),
        "not netkit's rules",
    ] {
        assert!(lines[0].contains(part), "{part:?} missing from {}", lines[0]);
    }
}
