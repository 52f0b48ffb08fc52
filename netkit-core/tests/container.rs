//! The container recipe, the batch API and bulk link deletion on the real kernel. The "host" is
//! a namespace made by the test; the containers' namespaces are named by the test and deleted
//! when it ends, also on panic.

use std::time::Duration;

use netkit_core::container::{self, ContainerError, ContainerSpec};
use netkit_core::link::Veth;
use netkit_core::{Handle, LinkError, NetNs};
use netkit_test_support::lit::{ip, net};
use netkit_test_support::{ipj, snapshot, unique, TestNs};

/// Namespace names deleted when the test ends, however it ends.
struct Names(Vec<String>);

impl Names {
    fn new(n: usize, tag: &str) -> Self {
        Names((0..n).map(|_| unique(tag)).collect())
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = NetNs::delete(n);
        }
    }
}

/// A spec like the bench's: a /30 per container, the host end the gateway.
fn spec(ns: &str, i: u32) -> ContainerSpec {
    let base = 4 * i;
    ContainerSpec::new(ns, format!("vc{i}"))
        .host_addr(net(&format!("10.77.{}.{}/30", base / 256, base % 256 + 1)))
        .addr(net(&format!("10.77.{}.{}/30", base / 256, base % 256 + 2)))
        .gateway(ip(&format!("10.77.{}.{}", base / 256, base % 256 + 1)))
}

fn ping(ns: &str, to: &str) -> bool {
    netkit_test_support::in_ns(ns, &["ping", "-c1", "-W2", "-q", to])
        .status
        .success()
}

/// Every deadline of these tests: a request that is never answered must fail the test, not hang.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 30 s"))
}

#[tokio::test]
async fn setup_makes_a_working_container_and_teardown_removes_it() {
    let host = TestNs::new("ch").await;
    let names = Names::new(1, "cc");
    let s = spec(&names.0[0], 1);
    let c = bounded("setup", container::setup(&host.h, &s)).await.expect("setup");
    assert_eq!(c.netns, names.0[0]);
    // What iproute2 sees: lo and eth0 up, eth0's address, the default route, the host end up.
    let lo = ipj(&c.netns, &["link", "show", "lo"]).expect("lo");
    assert!(lo[0]["flags"].to_string().contains("\"UP\""), "{lo}");
    let eth0 = ipj(&c.netns, &["addr", "show", "eth0"]).expect("eth0");
    assert_eq!(eth0[0]["ifindex"], c.index);
    assert!(eth0[0]["flags"].to_string().contains("\"UP\""), "{eth0}");
    assert!(eth0.to_string().contains("\"local\":\"10.77.0.6\""), "{eth0}");
    assert_eq!(
        snapshot::default_route(&c.netns, false),
        Some(("10.77.0.5".into(), "eth0".into()))
    );
    assert!(host.sh("ip -o addr show vc1").contains("10.77.0.5/30"));
    assert!(ping(&c.netns, "10.77.0.5"), "the container reaches the host end");

    container::teardown(&host.h, &c).await.expect("teardown");
    assert!(!NetNs::list().unwrap().contains(&c.netns), "the name is gone");
    assert!(!snapshot::link_names(host.name()).contains(&"vc1".to_string()));
    // Idempotent.
    container::teardown(&host.h, &c).await.expect("second teardown");
}

#[tokio::test]
async fn a_failed_setup_leaves_nothing_behind() {
    let host = TestNs::new("ch").await;
    let names = Names::new(3, "cc");

    // The host end's name is taken: the pair cannot be made, the namespace goes again.
    host.h.link_add(&Veth::new("vc1", "taken1")).await.unwrap();
    let err = container::setup(&host.h, &spec(&names.0[0], 1)).await.unwrap_err();
    assert!(
        matches!(&err, ContainerError::Setup { step: "add veth", rollback, .. } if rollback.is_empty()),
        "{err}"
    );
    assert!(!NetNs::list().unwrap().contains(&names.0[0]), "{err}");

    // A gateway outside the container's subnet: the route fails after the pair and the
    // addresses were made; the pair and the namespace go again.
    let bad = spec(&names.0[1], 2).gateway(ip("10.99.0.1"));
    let before = snapshot::link_names(host.name());
    let err = container::setup(&host.h, &bad).await.unwrap_err();
    assert!(
        matches!(&err, ContainerError::Setup { step: "set up inside", rollback, .. } if rollback.is_empty()),
        "{err}"
    );
    assert!(
        err.to_string().contains(&names.0[1]),
        "the error names the container: {err}"
    );
    assert_eq!(snapshot::link_names(host.name()), before, "the pair is gone");
    assert!(!NetNs::list().unwrap().contains(&names.0[1]));

    // The namespace name is taken: refused, and the existing namespace is left alone.
    let existing = NetNs::create(&names.0[2]).unwrap();
    let err = container::setup(&host.h, &spec(&names.0[2], 3)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ContainerError::Setup {
                step: "create namespace",
                ..
            }
        ),
        "{err}"
    );
    assert!(NetNs::open(&names.0[2]).is_ok(), "the existing namespace is kept");
    drop(existing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_many_sets_up_every_container_and_teardown_many_removes_them() {
    let host = TestNs::new("ch").await;
    let names = Names::new(24, "cm");
    let specs: Vec<ContainerSpec> = names.0.iter().enumerate().map(|(i, n)| spec(n, i as u32)).collect();
    // One spec is bad (a gateway outside its subnet): it fails alone and leaves nothing.
    let mut specs = specs;
    specs[7] = specs[7].clone().gateway(ip("10.99.0.1"));
    let results = bounded("setup_many", container::setup_many(&host.ns, specs.clone(), 2)).await;
    assert_eq!(results.len(), specs.len());
    let mut made = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(c) => {
                assert_eq!(c.netns, specs[i].netns, "results come in the order of the specs");
                made.push(c);
            }
            Err(e) => assert_eq!(i, 7, "only the bad spec fails: {e}"),
        }
    }
    assert_eq!(made.len(), specs.len() - 1);
    assert_eq!(snapshot::veths(host.name()).len(), made.len());
    for c in [&made[0], &made[12], made.last().unwrap()] {
        let gw = specs.iter().find(|s| s.netns == c.netns).unwrap().gateway.unwrap();
        assert!(ping(&c.netns, &gw.to_string()), "{} reaches its gateway", c.netns);
    }

    // A link of someone else in the host: teardown_many must leave it.
    host.h.link_add(&Veth::new("other0", "other1")).await.unwrap();
    bounded("teardown_many", container::teardown_many(&host.h, &made))
        .await
        .expect("teardown_many");
    assert_eq!(snapshot::veths(host.name()), ["other0", "other1"]);
    let left = NetNs::list().unwrap();
    assert!(made.iter().all(|c| !left.contains(&c.netns)));
    // Idempotent.
    container::teardown_many(&host.h, &made)
        .await
        .expect("second teardown_many");
}

#[tokio::test]
async fn link_del_many_deletes_exactly_the_named_links() {
    let t = TestNs::new("dm").await;
    for i in 0..6 {
        t.h.link_add(&Veth::new(&format!("a{i}"), &format!("b{i}")))
            .await
            .unwrap();
    }
    // A link in a group of its own: its group must not be what the delete uses, and it stays.
    t.h.link_set("a5").group(7).apply().await.unwrap();
    assert_eq!(t.h.link_get("a5").await.unwrap().group, 7);
    assert!(t.sh("ip -d link show a5").contains("group 7"));

    bounded("link_del_many", t.h.link_del_many(&["a0", "a1", "b2", "nosuch"]))
        .await
        .expect("link_del_many");
    let mut left = snapshot::veths(t.name());
    left.sort();
    assert_eq!(left, ["a3", "a4", "a5", "b3", "b4", "b5"]);
    assert_eq!(t.h.link_get("a5").await.unwrap().group, 7, "untouched");
    assert_eq!(t.h.link_get("a3").await.unwrap().group, 0, "untouched");

    let a3 = t.h.link_get("a3").await.unwrap().index;
    t.h.link_del_many_by_index(&[a3, 999_999]).await.unwrap();
    assert!(!snapshot::veths(t.name()).contains(&"a3".to_string()));

    // A whole group; group 0 (every link's) is refused.
    t.h.link_del_group(7).await.unwrap();
    assert!(!snapshot::veths(t.name()).contains(&"a5".to_string()));
    t.h.link_del_group(7).await.expect("an empty group is success");
    assert!(matches!(t.h.link_del_group(0).await, Err(LinkError::Invalid { .. })));
    assert!(snapshot::veths(t.name()).contains(&"a4".to_string()));
}

#[tokio::test]
async fn a_batch_does_every_request_and_reports_each_refusal() {
    let t = TestNs::with_veth("bt").await;
    let v0 = t.h.link_get("v0").await.unwrap().index;
    t.h.link_set_down("v0").await.unwrap();
    let mut b = t.h.batch();
    b.addr_add(v0, net("10.78.0.1/24")) // created exclusively (NLM_F_EXCL, the bits of a dump)
        .link_up(999_999) // no such link: refused, the others still done
        .addr_add(v0, net("10.78.0.1/24")) // exists by now: refused
        .link_up(v0);
    assert_eq!(b.len(), 4);
    let err = bounded("batch", b.send()).await.unwrap_err();
    assert_eq!(err.failures.len(), 2, "{err}");
    assert!(err.failures[0].0.contains("#999999"), "{err}");
    assert_eq!(err.failures[0].1.errno, Some(libc::ENODEV), "{err}");
    assert_eq!(err.failures[1].1.errno, Some(libc::EEXIST), "{err}");
    assert!(
        err.to_string().contains(t.name()),
        "the error names the namespace: {err}"
    );
    let v = t.h.link_get("v0").await.unwrap();
    assert!(v.up, "the request after the refused ones was done");
    assert!(t.sh("ip -o addr show v0").contains("10.78.0.1/24"));
    t.h.batch().send().await.expect("an empty batch is a no-op");
}

#[tokio::test]
async fn create_netns_gives_a_handle_inside_the_new_namespace() {
    let names = Names::new(1, "cn");
    let h: Handle = bounded("create_netns", Handle::create_netns(&names.0[0]))
        .await
        .unwrap();
    assert_eq!(h.netns().name(), Some(names.0[0].as_str()));
    h.link_add(&Veth::new("x0", "x1")).await.unwrap();
    assert_eq!(
        snapshot::veths(&names.0[0]).len(),
        2,
        "the handle works inside the new namespace"
    );
    let again = Handle::create_netns(&names.0[0]).await.unwrap_err();
    assert!(matches!(again, netkit_core::NetnsError::Exists(_)), "{again}");
    assert_eq!(
        snapshot::veths(&names.0[0]).len(),
        2,
        "the existing namespace is untouched"
    );
}

#[tokio::test]
async fn open_many_opens_a_handle_in_each_namespace() {
    let (a, b) = (TestNs::new("oa").await, TestNs::new("ob").await);
    a.h.link_add(&Veth::new("only-a0", "only-a1")).await.unwrap();
    let hs = Handle::open_many(&[NetNs::clone(&a.ns), NetNs::clone(&b.ns)])
        .await
        .unwrap()
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(hs.len(), 2);
    assert!(hs[0].link_get("only-a0").await.is_ok(), "the first handle is in a");
    assert!(hs[1].link_get("only-a0").await.is_err(), "the second is in b");
    assert_eq!(hs[1].netns().name(), b.ns.name());
    // The calling thread never moved.
    let here = NetNs::current().unwrap().id().unwrap();
    assert!(here != a.ns.id().unwrap() && here != b.ns.id().unwrap());
    assert!(Handle::open_many(&[]).await.unwrap().is_empty());
}
