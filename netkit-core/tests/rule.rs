use netkit_test_support::lit::{ip, net};
use netkit_test_support::TestNs;

use netkit_core::link::Veth;
use netkit_core::route::Route;
use netkit_core::rule::{IpFamily, Rule, RuleAction, RuleError};

#[tokio::test]
async fn add_list_delete_v4_selectors() {
    let t = TestNs::new("r4").await;
    let rules = [
        Rule::v4().from(net("10.0.0.0/24")).table(100).priority(1000),
        Rule::v4().to(net("192.168.0.0/16")).table(1000).priority(1001),
        Rule::v4().fwmark(0x10, 0xff).table(200).priority(1002),
        Rule::v4().iif("veth9").oif("veth8").table(300).priority(1003),
    ];
    for r in &rules {
        t.h.rule_add(r).await.unwrap();
    }
    let shown = t.sh("ip -4 rule show");
    for line in [
        "1000:\tfrom 10.0.0.0/24 lookup 100",
        "1001:\tfrom all to 192.168.0.0/16 lookup 1000",
        "1002:\tfrom all fwmark 0x10/0xff lookup 200",
        "1003:\tfrom all iif veth9 [detached] oif veth8 [detached] lookup 300",
    ] {
        assert!(shown.contains(line), "missing {line:?} in\n{shown}");
    }

    let listed = t.h.rule_list(Some(IpFamily::V4)).await.unwrap();
    assert!(listed.iter().all(|r| r.family == IpFamily::V4));
    let by_prio = |p: u32| {
        listed
            .iter()
            .find(|r| r.priority == p)
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    let r = by_prio(1000);
    assert_eq!(
        (r.from, r.to, r.table, r.action),
        (Some(net("10.0.0.0/24")), None, 100, RuleAction::Table)
    );
    let r = by_prio(1001);
    assert_eq!((r.to, r.table), (Some(net("192.168.0.0/16")), 1000));
    let r = by_prio(1002);
    assert_eq!((r.fwmark, r.fwmask, r.table), (Some(0x10), Some(0xff), 200));
    let r = by_prio(1003);
    assert_eq!((r.iif.as_deref(), r.oif.as_deref()), (Some("veth9"), Some("veth8")));
    // The three default rules are there too, in priority order.
    let prios: Vec<u32> = listed.iter().map(|r| r.priority).collect();
    assert_eq!(prios, vec![0, 1000, 1001, 1002, 1003, 32766, 32767]);
    assert_eq!(by_prio(32766).table, 254);

    for r in &rules {
        t.h.rule_del(r).await.unwrap();
    }
    let prios: Vec<u32> =
        t.h.rule_list(Some(IpFamily::V4))
            .await
            .unwrap()
            .iter()
            .map(|r| r.priority)
            .collect();
    assert_eq!(prios, vec![0, 32766, 32767]);
}

#[tokio::test]
async fn add_list_delete_v6() {
    let t = TestNs::new("r6").await;
    let r = Rule::v6()
        .from(net("fd00:1::/64"))
        .to(net("fd00:2::/64"))
        .table(100)
        .priority(500);
    t.h.rule_add(&r).await.unwrap();
    let shown = t.sh("ip -6 rule show");
    assert!(
        shown.contains("500:\tfrom fd00:1::/64 to fd00:2::/64 lookup 100"),
        "{shown}"
    );
    let listed = t.h.rule_list(Some(IpFamily::V6)).await.unwrap();
    let got = listed.iter().find(|x| x.priority == 500).unwrap();
    assert_eq!(got.from, Some(net("fd00:1::/64")));
    assert_eq!(got.to, Some(net("fd00:2::/64")));
    // The IPv4 listing does not include it; the combined one does.
    assert!(!t
        .h
        .rule_list(Some(IpFamily::V4))
        .await
        .unwrap()
        .iter()
        .any(|x| x.priority == 500));
    let both = t.h.rule_list(None).await.unwrap();
    assert!(both.iter().any(|x| x.priority == 500 && x.family == IpFamily::V6));
    assert!(both.iter().any(|x| x.family == IpFamily::V4));

    t.h.rule_del(&r).await.unwrap();
    assert!(!t.sh("ip -6 rule show").contains("500:"));
}

#[tokio::test]
async fn add_twice_exists_delete_twice_ok() {
    let t = TestNs::new("r2").await;
    let r = Rule::v4().from(net("10.1.0.0/16")).table(100).priority(2000);
    t.h.rule_add(&r).await.unwrap();
    let err = t.h.rule_add(&r).await.unwrap_err();
    assert!(err.is_exists(), "{err}");
    let text = err.to_string();
    assert!(text.starts_with("add rule"), "{text}");
    assert!(
        text.contains("from 10.1.0.0/16") && text.contains("lookup 100"),
        "{text}"
    );
    assert!(text.contains(t.ns.name().unwrap()), "{text}");

    t.h.rule_del(&r).await.unwrap();
    t.h.rule_del(&r).await.unwrap();
    assert!(!t.sh("ip rule show").contains("2000:"));

    // Deleting by priority alone removes whatever rule has it.
    t.h.rule_add(&Rule::v4().fwmark(7, 0xffffffff).table(7).priority(2001))
        .await
        .unwrap();
    t.h.rule_del(&Rule::v4().priority(2001)).await.unwrap();
    assert!(!t.sh("ip rule show").contains("2001:"));
    t.h.rule_del(&Rule::v4().priority(2001)).await.unwrap();
}

#[tokio::test]
async fn reject_actions_and_large_table() {
    let t = TestNs::new("ra").await;
    t.h.rule_add(&Rule::v4().to(net("10.66.0.0/16")).blackhole().priority(100))
        .await
        .unwrap();
    t.h.rule_add(&Rule::v4().to(net("10.67.0.0/16")).unreachable().priority(101))
        .await
        .unwrap();
    t.h.rule_add(&Rule::v4().to(net("10.68.0.0/16")).prohibit().priority(102))
        .await
        .unwrap();
    t.h.rule_add(&Rule::v6().to(net("fd00:66::/32")).prohibit().priority(103))
        .await
        .unwrap();
    t.h.rule_add(&Rule::v4().table(100_000).priority(104)).await.unwrap();
    let shown = t.sh("ip rule show");
    assert!(shown.contains("100:\tfrom all to 10.66.0.0/16 blackhole"), "{shown}");
    assert!(shown.contains("101:\tfrom all to 10.67.0.0/16 unreachable"), "{shown}");
    assert!(shown.contains("102:\tfrom all to 10.68.0.0/16 prohibit"), "{shown}");
    assert!(shown.contains("104:\tfrom all lookup 100000"), "{shown}");
    assert!(t
        .sh("ip -6 rule show")
        .contains("103:\tfrom all to fd00:66::/32 prohibit"));

    let listed = t.h.rule_list(None).await.unwrap();
    let action = |p: u32| listed.iter().find(|r| r.priority == p).unwrap().action;
    assert_eq!(action(100), RuleAction::Blackhole);
    assert_eq!(action(101), RuleAction::Unreachable);
    assert_eq!(action(102), RuleAction::Prohibit);
    assert_eq!(action(103), RuleAction::Prohibit);
    assert_eq!(listed.iter().find(|r| r.priority == 104).unwrap().table, 100_000);

    // The rules act on lookups: route_get reports the rule's verdict.
    let err = t.h.route_get(ip("10.67.0.1")).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    let err = t.h.route_get(ip("10.68.0.1")).await.unwrap_err();
    assert_eq!(err.errno(), Some(libc::EACCES), "{err}");
}

#[tokio::test]
async fn invalid_rules_are_refused_locally() {
    let t = TestNs::new("ri").await;
    let err =
        t.h.rule_add(&Rule::v4().from(net("fd00::/8")).table(5))
            .await
            .unwrap_err();
    assert!(matches!(err, RuleError::Invalid { .. }), "{err}");
    let err =
        t.h.rule_add(&Rule::v4().iif("a-name-that-is-too-long"))
            .await
            .unwrap_err();
    assert!(matches!(err, RuleError::Invalid { .. }), "{err}");
}

#[tokio::test]
async fn rules_steer_lookups_to_other_tables() {
    // Source-based and mark-based routing: the same destination resolves
    // through different devices depending on the rule that matches.
    let t = TestNs::new("steer").await;
    for (a, b) in [("v0", "v1"), ("w0", "w1")] {
        t.h.link_add(&Veth::new(a, b).up()).await.unwrap();
        t.h.link_set_up(b).await.unwrap();
    }
    t.h.addr_add("v0", net("10.1.0.1/24")).await.unwrap();
    t.h.addr_add("w0", net("10.2.0.1/24")).await.unwrap();
    t.h.route_add(&Route::default_v4().gateway(ip("10.1.0.254")))
        .await
        .unwrap();
    t.h.route_add(&Route::default_v4().gateway(ip("10.2.0.254")).table(1234))
        .await
        .unwrap();
    let w0 = t.h.link_index("w0").await.unwrap();
    let v0 = t.h.link_index("v0").await.unwrap();

    assert_eq!(t.h.route_get(ip("8.8.8.8")).await.unwrap().oif, Some(v0));
    let via = |cmd: &str| t.sh(cmd);
    assert!(via("ip route get 8.8.8.8 from 10.2.0.1").contains("dev v0"));

    let by_src = Rule::v4().from(net("10.2.0.0/24")).table(1234).priority(100);
    t.h.rule_add(&by_src).await.unwrap();
    assert!(via("ip route get 8.8.8.8 from 10.2.0.1").contains("via 10.2.0.254 dev w0"));
    assert!(via("ip route get 8.8.8.8 mark 0x5").contains("dev v0"));

    let by_mark = Rule::v4().fwmark(0x5, 0xff).table(1234).priority(101);
    t.h.rule_add(&by_mark).await.unwrap();
    assert!(via("ip route get 8.8.8.8 mark 0x105").contains("via 10.2.0.254 dev w0"));

    // Plain lookups still use main.
    assert_eq!(t.h.route_get(ip("8.8.8.8")).await.unwrap().oif, Some(v0));

    let by_dst = Rule::v4().to(net("8.8.8.0/24")).table(1234).priority(102);
    t.h.rule_add(&by_dst).await.unwrap();
    assert_eq!(t.h.route_get(ip("8.8.8.8")).await.unwrap().oif, Some(w0));

    for r in [&by_src, &by_mark, &by_dst] {
        t.h.rule_del(r).await.unwrap();
    }
    assert_eq!(t.h.route_get(ip("8.8.8.8")).await.unwrap().oif, Some(v0));
    assert!(via("ip route get 8.8.8.8 from 10.2.0.1").contains("dev v0"));
}

#[tokio::test]
async fn remove_says_whether_a_rule_went_and_listing_shows_detached_devices() {
    let t = TestNs::new("rrm").await;
    // Neither device exists: the kernel keeps the rule, flagged detached (ip: `[detached]`).
    let r = Rule::v4().iif("nk-nosuch0").oif("nk-nosuch1").table(300).priority(3000);
    t.h.rule_add(&r).await.unwrap();
    let listed = t.h.rule_list(Some(IpFamily::V4)).await.unwrap();
    let got = listed.iter().find(|x| x.priority == 3000).unwrap();
    assert!(got.iif_detached && got.oif_detached, "{got:?}");
    assert_eq!((got.protocol, got.tos), (0, 0));
    // The default rules have their devices (none): not detached.
    assert!(listed.iter().filter(|x| x.priority != 3000).all(|x| !x.iif_detached));

    assert!(t.h.rule_remove(&Rule::v4().priority(3000)).await.unwrap());
    assert!(!t.h.rule_remove(&Rule::v4().priority(3000)).await.unwrap());
    assert!(!t.sh("ip rule show").contains("3000:"));
}
