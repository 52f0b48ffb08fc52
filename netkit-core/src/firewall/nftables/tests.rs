//! The driver against the real kernel: how a change is split between the netlink element batch
//! and libnftables, what happens when one part fails, and a table flushed under live owners.
//! Each test makes its own namespace (deleted on drop, also on panic) and state directory.

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::firewall::{Endpoint, Firewall, Masquerade, PortMapping, Protocol, Service};
use crate::netns::NetNsGuard;

struct Lab {
    guard: NetNsGuard,
    _state: tempfile::TempDir,
    fw: Nftables,
}

impl Lab {
    async fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "nknftd{}x{}{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let guard = NetNsGuard::create(&name).expect("create test netns");
        let state = tempfile::tempdir().unwrap();
        let options = FirewallOptions::default()
            .driver(Driver::Nftables)
            .state_dir(state.path());
        let fw = Nftables::open(&guard, options).await.expect("open nftables");
        Self {
            guard,
            _state: state,
            fw,
        }
    }

    /// `nft ARGS` inside the namespace: (success, stdout + stderr).
    fn try_nft(&self, args: &str) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", self.guard.name().unwrap(), "sh", "-c"])
            .arg(format!("nft {args}"))
            .output()
            .expect("run nft");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    fn nft(&self, args: &str) -> String {
        let (ok, text) = self.try_nft(args);
        assert!(ok, "nft {args}: {text}");
        text
    }

    /// The elements of netkit's set or map `name` (whitespace normalized, sorted); empty when
    /// the table is missing.
    fn elements(&self, kind: &str, name: &str) -> Vec<String> {
        let (ok, text) = self.try_nft(&format!("list {kind} inet netkit {name}"));
        if !ok {
            return Vec::new();
        }
        let Some(start) = text.find("elements = {") else {
            return Vec::new();
        };
        let body = &text[start + "elements = {".len()..];
        let body = &body[..body.find('}').expect("closing brace")];
        let mut out: Vec<String> = body
            .split(',')
            .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|e| !e.is_empty())
            .collect();
        out.sort();
        out
    }

    fn table_exists(&self) -> bool {
        self.try_nft("list table inet netkit").0
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mapping(host_port: u16, ctr: &str) -> Rules {
    Rules {
        port_mappings: vec![PortMapping::new(Protocol::Tcp, host_port, ip(ctr), 80)],
        ..Default::default()
    }
}

fn web() -> Service {
    Service::new("default/web", Protocol::Tcp, ip("10.96.0.1"), 80).endpoint(Endpoint::new(ip("10.88.0.2"), 80))
}

fn errno(e: &FirewallError) -> Option<i32> {
    match e {
        FirewallError::Kernel { errno, .. } => *errno,
        e => panic!("not a kernel error: {e:?}"),
    }
}

/// Someone flushes the ruleset while owners hold things: the next change finds the table
/// missing from the errno of its element batch and makes the table again, with what the
/// change brings (the rest comes back with `reconcile`).
#[tokio::test]
async fn a_flushed_table_is_made_again_by_the_next_change() {
    let lab = Lab::new("flush").await;
    lab.fw.add("a", &mapping(8080, "10.88.0.2")).await.unwrap();
    assert_eq!(
        lab.elements("map", "hostport4"),
        ["tcp . 8080 comment \"a\" : 10.88.0.2 . 80"]
    );
    lab.nft("flush ruleset");

    // Elements only: the batch fails with ENOENT on the table; fixed part, then elements.
    lab.fw.add("b", &mapping(8081, "10.88.0.3")).await.unwrap();
    assert_eq!(
        lab.elements("map", "hostport4"),
        ["tcp . 8081 comment \"b\" : 10.88.0.3 . 80"]
    );
    let table = lab.nft("list table inet netkit");
    let id = lab.fw.0.backend().state_id.clone();
    assert!(
        table.contains(&format!("managed by netkit (state {id}, layout {})", ruleset::LAYOUT)),
        "{table}"
    );
    assert_eq!(
        table.matches("jump services").count(),
        2,
        "the fixed part once:\n{table}"
    );

    // A removal from a flushed table has nothing to do.
    lab.nft("flush ruleset");
    lab.fw.teardown("b").await.unwrap();
    assert!(!lab.table_exists());

    // A service alone (no element changes): libnftables says ENOENT, and the table is made.
    let svc = Rules {
        services: vec![web()],
        ..Default::default()
    };
    lab.fw.add("svc", &svc).await.unwrap();
    assert_eq!(lab.elements("map", "service4").len(), 1);
    assert!(lab.elements("map", "hostport4").is_empty());

    // reconcile brings back everything every owner holds.
    lab.nft("flush ruleset");
    lab.fw.reconcile().await.unwrap();
    assert_eq!(
        lab.elements("map", "hostport4"),
        ["tcp . 8080 comment \"a\" : 10.88.0.2 . 80"]
    );
    assert_eq!(lab.elements("map", "service4").len(), 1);

    // Removing a service from a flushed table: nothing to do (libnftables' ENOENT, then the
    // table is made to be sure it was missing).
    lab.nft("flush ruleset");
    lab.fw.add("other", &mapping(8082, "10.88.0.4")).await.unwrap();
    lab.nft("flush ruleset");
    lab.fw.remove("svc", &svc).await.unwrap();
    assert!(lab.table_exists(), "a and other still hold things");
    assert!(lab.elements("map", "service4").is_empty());
    lab.fw.teardown("other").await.unwrap();
}

/// A key the kernel has but the state does not (written behind netkit's back): the element
/// batch fails with EEXIST, the error carries that errno, and nothing changed.
#[tokio::test]
async fn kernel_errors_carry_their_errno() {
    let lab = Lab::new("errno").await;
    lab.fw.add("a", &mapping(8080, "10.88.0.2")).await.unwrap();
    lab.nft("add element inet netkit hostport4 '{ tcp . 9090 : 10.0.0.9 . 90 }'");
    let both = mapping(9090, "10.88.0.3").union(&mapping(9091, "10.88.0.3"));
    let err = lab.fw.add("b", &both).await.unwrap_err();
    assert_eq!(errno(&err), Some(libc::EEXIST), "{err}");
    assert!(err.to_string().contains("9090"), "{err}");
    assert_eq!(lab.elements("map", "hostport4").len(), 2, "9091 did not go in alone");
    assert_eq!(lab.fw.rules("b").await.unwrap(), Rules::default());
}

/// A change with elements and services whose service part fails: the elements that went in
/// first are taken out again (and those that went out put back), so the kernel and the state
/// are as before; the libnftables error carries its errno.
#[tokio::test]
async fn a_failed_service_change_puts_the_elements_back() {
    let lab = Lab::new("undo").await;
    let rules = mapping(8080, "10.88.0.2").union(&Rules {
        services: vec![web()],
        ..Default::default()
    });
    lab.fw.add("a", &rules).await.unwrap();
    // Lose the service's map element: removing the service (`delete element`) now fails.
    lab.nft("delete element inet netkit service4 '{ 10.96.0.1 . tcp . 80 }'");
    // A change of services alone: the ENOENT is not taken for a missing table.
    let only_web = Rules {
        services: vec![web()],
        ..Default::default()
    };
    let err = lab.fw.remove("a", &only_web).await.unwrap_err();
    assert_eq!(errno(&err), Some(libc::ENOENT), "{err}");
    assert_eq!(lab.fw.rules("a").await.unwrap(), rules);
    let err = lab.fw.teardown("a").await.unwrap_err();
    assert_eq!(errno(&err), Some(libc::ENOENT), "{err}");
    assert_eq!(
        lab.elements("map", "hostport4"),
        ["tcp . 8080 comment \"a\" : 10.88.0.2 . 80"],
        "the port mapping was put back"
    );
    assert_eq!(lab.fw.rules("a").await.unwrap(), rules);

    // Adding: a new mapping and a changed service whose chain update fails.
    let id = ruleset::service_id("default/web");
    lab.nft(&format!(
        "add element inet netkit service4 '{{ 10.96.0.1 . tcp . 80 : goto svc-{id} }}'"
    ));
    let mut web2 = web().endpoint(Endpoint::new(ip("10.88.0.3"), 80));
    web2 = web2.affinity(std::time::Duration::from_secs(10));
    // A set of that name with another type makes `add set aff-…` fail.
    lab.nft(&format!("add set inet netkit aff-{id}-0 '{{ type inet_service; }}'"));
    let more = mapping(8081, "10.88.0.3").union(&Rules {
        services: vec![web2],
        ..Default::default()
    });
    let err = lab.fw.add("a", &more).await.unwrap_err();
    assert!(matches!(err, FirewallError::Kernel { .. }), "{err}");
    assert_eq!(
        lab.elements("map", "hostport4"),
        ["tcp . 8080 comment \"a\" : 10.88.0.2 . 80"],
        "8081 was taken out again"
    );
    assert_eq!(lab.fw.rules("a").await.unwrap(), rules);
    lab.nft(&format!("delete set inet netkit aff-{id}-0"));
    lab.fw.teardown("a").await.unwrap();
    assert!(!lab.table_exists());
}

/// `reconcile` sends an element several owners hold once, and rebuilds from scratch.
#[tokio::test]
async fn rebuild_sends_shared_elements_once() {
    let lab = Lab::new("rebuild").await;
    let masq = Rules {
        masquerades: vec![Masquerade::subnet("10.88.0.0/16".parse().unwrap())],
        ..Default::default()
    };
    lab.fw.add("a", &masq.union(&mapping(8080, "10.88.0.2"))).await.unwrap();
    lab.fw.add("b", &masq).await.unwrap();
    let before = (lab.elements("set", "masq4"), lab.elements("set", "masqskip4"));
    assert_eq!((before.0.len(), before.1.len()), (1, 1));
    lab.nft("flush ruleset");
    for _ in 0..2 {
        lab.fw.reconcile().await.unwrap();
        assert_eq!((lab.elements("set", "masq4"), lab.elements("set", "masqskip4")), before);
        assert_eq!(lab.elements("map", "hostport4").len(), 1);
    }
    lab.fw.teardown("a").await.unwrap();
    assert_eq!(lab.elements("set", "masq4"), before.0, "b still holds the masquerade");
    lab.fw.teardown("b").await.unwrap();
    assert!(!lab.table_exists());
}

/// A table made by a netkit without the checks of services without endpoints (no
/// `noendpoints*` sets, no `check-*` chains): the first service change that needs them adds
/// them (libnftables says ENOENT on the set, the checks are added and the change run again).
#[tokio::test]
async fn an_older_table_gets_the_endpoint_checks() {
    let lab = Lab::new("older").await;
    let svc = |s: Service| Rules {
        services: vec![s],
        ..Default::default()
    };
    lab.fw.add("svc", &svc(web())).await.unwrap();
    // What an older netkit's table lacks.
    lab.nft(
        "'delete chain inet netkit check-prerouting; \
         delete chain inet netkit check-output; delete chain inet netkit endpoints-check; \
         delete chain inet netkit reject-noendpoints; delete set inet netkit noendpoints4; \
         delete set inet netkit noendpointports4'",
    );
    let empty = Service::new("default/web", Protocol::Tcp, ip("10.96.0.1"), 80).node_port(30080);
    lab.fw.add("svc", &svc(empty)).await.unwrap();
    assert_eq!(
        lab.elements("set", "noendpoints4"),
        ["10.96.0.1 . tcp . 80 comment \"default/web\""]
    );
    assert_eq!(
        lab.elements("set", "noendpointports4"),
        ["tcp . 30080 comment \"default/web\""]
    );
    let table = lab.nft("list table inet netkit");
    assert_eq!(table.matches("jump endpoints-check").count(), 2, "{table}");
    // Endpoints back: the elements go.
    lab.fw.add("svc", &svc(web().node_port(30080))).await.unwrap();
    assert!(lab.elements("set", "noendpoints4").is_empty());
    assert!(lab.elements("set", "noendpointports4").is_empty());
}

/// An endpoint change whose map the kernel lacks (a table made by an earlier netkit, or a map
/// deleted by someone) falls back to the text, which makes the map again: the change lands.
#[tokio::test]
async fn an_endpoint_change_without_its_map_falls_back_to_the_text() {
    let lab = Lab::new("epfb").await;
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let web = |eps: &[&str]| {
        eps.iter().fold(
            Service::new("default/web", Protocol::Tcp, ip("10.96.0.1"), 80),
            |s, e| s.endpoint(Endpoint::new(ip(e), 8080)),
        )
    };
    let rules = |s: Service| Rules {
        services: vec![s],
        ..Default::default()
    };
    lab.fw.add("svc/web", &rules(web(&["10.88.0.2"]))).await.unwrap();
    let id = ruleset::service_id("default/web");
    let map = format!("eps-{id}");
    assert_eq!(lab.elements("map", &map), ["0-65535 : 10.88.0.2 . 8080"]);
    // The map goes (its rule first, which refers to it).
    lab.nft(&format!("flush chain inet netkit svc-{id}"));
    lab.nft(&format!("delete map inet netkit {map}"));
    lab.fw
        .add("svc/web", &rules(web(&["10.88.0.2", "10.88.0.3"])))
        .await
        .unwrap();
    assert_eq!(
        lab.elements("map", &map),
        ["0-32767 : 10.88.0.2 . 8080", "32768-65535 : 10.88.0.3 . 8080"]
    );
    let chain = lab.nft(&format!("list chain inet netkit svc-{id}"));
    assert!(chain.contains(&format!("map @{map}")), "{chain}");
    // And the next change is elements again.
    lab.fw.add("svc/web", &rules(web(&["10.88.0.3"]))).await.unwrap();
    assert_eq!(lab.elements("map", &map), ["0-65535 : 10.88.0.3 . 8080"]);
}

/// A table of an older layout (layout 1: plain services in chains per endpoint, no `eps-`
/// maps) is rebuilt from the state when the firewall is opened: its leftover chains go, the
/// service is laid out anew and its next endpoint change is elements.
#[tokio::test]
async fn a_table_of_an_older_layout_is_rebuilt_on_open() {
    let lab = Lab::new("lay1").await;
    let rules = |s: Service| Rules {
        services: vec![s],
        ..Default::default()
    };
    lab.fw.add("svc/web", &rules(web())).await.unwrap();
    let state_id = lab.fw.0.backend().state_id.clone();
    let id = ruleset::service_id("default/web");
    // The same table as layout 1 left it: the old comment, and the service's endpoint chain.
    lab.nft("delete table inet netkit");
    lab.nft(&format!(
        "'add table inet netkit {{ comment \"managed by netkit (state {state_id}): container port mappings, masquerade, services\"; }}'"
    ));
    lab.nft(&format!("add chain inet netkit ep-{id}-0"));
    let options = FirewallOptions::default()
        .driver(Driver::Nftables)
        .state_dir(lab._state.path());
    let fw = Nftables::open(&lab.guard, options)
        .await
        .expect("open over an older table");
    let table = lab.nft("list table inet netkit");
    assert!(table.contains(&format!("layout {}", ruleset::LAYOUT)), "{table}");
    assert!(!table.contains(&format!("ep-{id}-0")), "{table}");
    assert_eq!(lab.elements("map", &format!("eps-{id}")), ["0-65535 : 10.88.0.2 . 80"]);
    fw.add("svc/web", &rules(web().endpoint(Endpoint::new(ip("10.88.0.3"), 80))))
        .await
        .unwrap();
    assert_eq!(
        lab.elements("map", &format!("eps-{id}")),
        ["0-32767 : 10.88.0.2 . 80", "32768-65535 : 10.88.0.3 . 80"]
    );
}
