use netkit_test_support::lit::net;
use netkit_test_support::TestNs;

use netkit_core::addr::{Scope, IFA_F_NODAD, IFA_F_NOPREFIXROUTE, IFA_F_PERMANENT, IFA_F_TENTATIVE};
use netkit_core::link::Veth;

#[tokio::test]
async fn add_list_delete_v4() {
    let t = TestNs::with_veth("a4").await;
    t.h.addr_add("v0", net("10.9.0.1/24")).await.unwrap();

    let addrs = t.h.addr_list(Some("v0")).await.unwrap();
    let v0 = t.h.link_index("v0").await.unwrap();
    let a = addrs
        .iter()
        .find(|a| a.prefix == net("10.9.0.1/24"))
        .expect("address listed");
    assert_eq!(a.index, v0);
    assert_eq!(a.scope, Scope::Universe);
    assert!(a.permanent);
    assert!(!a.tentative);
    assert_eq!(a.label.as_deref(), Some("v0"));
    // `brd +` is the default.
    assert_eq!(a.broadcast, Some("10.9.0.255".parse().unwrap()));
    assert_eq!(a.peer, None);
    let shown = t.sh("ip -4 -o addr show dev v0");
    assert!(
        shown.contains("inet 10.9.0.1/24 brd 10.9.0.255 scope global v0"),
        "{shown}"
    );
    // The kernel's prefix route exists.
    assert!(t.sh("ip -4 route show dev v0").contains("10.9.0.0/24"));

    // Filtering by device: v1 has no IPv4 address, the full list has both lo's and v0's.
    assert!(t
        .h
        .addr_list(Some("v1"))
        .await
        .unwrap()
        .iter()
        .all(|a| !a.prefix.is_ipv4()));
    let all = t.h.addr_list(None).await.unwrap();
    assert!(all
        .iter()
        .any(|a| a.prefix == net("127.0.0.1/8") && a.scope == Scope::Host));
    assert!(all.iter().any(|a| a.prefix == net("10.9.0.1/24")));

    t.h.addr_del("v0", net("10.9.0.1/24")).await.unwrap();
    assert!(!t.sh("ip -4 -o addr show dev v0").contains("10.9.0.1"));
    assert!(!t
        .h
        .addr_list(Some("v0"))
        .await
        .unwrap()
        .iter()
        .any(|a| a.prefix.is_ipv4()));
}

#[tokio::test]
async fn add_list_delete_v6_nodad_is_not_tentative() {
    let t = TestNs::with_veth("a6").await;
    t.h.addr_add("v0", net("fd00:9::1/64")).nodad().await.unwrap();

    let a =
        t.h.addr_list(Some("v0"))
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.prefix == net("fd00:9::1/64"))
            .expect("v6 address listed");
    assert!(!a.tentative, "nodad address is tentative: flags {:#x}", a.flags);
    assert_eq!(a.flags & IFA_F_TENTATIVE, 0);
    assert_ne!(a.flags & IFA_F_NODAD, 0);
    assert_ne!(a.flags & IFA_F_PERMANENT, 0);
    assert_eq!(a.label, None);
    // The link-local address may still be tentative: look at ours only.
    let shown = t.sh("ip -6 -o addr show dev v0 to fd00:9::1/128");
    assert!(shown.contains("fd00:9::1/64"), "{shown}");
    assert!(shown.contains("nodad"), "{shown}");
    assert!(!shown.contains("tentative"), "{shown}");

    t.h.addr_del("v0", net("fd00:9::1/64")).await.unwrap();
    assert!(!t.sh("ip -6 -o addr show dev v0").contains("fd00:9::1"));
}

#[tokio::test]
async fn v6_without_nodad_starts_tentative() {
    // The contrast that makes the nodad test meaningful: on a link that is up
    // with carrier, a plain address goes through DAD first.
    let t = TestNs::with_veth("dad").await;
    t.sh("sysctl -qw net.ipv6.conf.v0.accept_dad=1");
    t.h.addr_add("v0", net("fd00:7::1/64")).await.unwrap();
    let a =
        t.h.addr_list(Some("v0"))
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.prefix == net("fd00:7::1/64"))
            .unwrap();
    assert!(a.tentative, "expected DAD to be running, flags {:#x}", a.flags);
    assert!(t.sh("ip -6 -o addr show dev v0 to fd00:7::1/128").contains("tentative"));
}

#[tokio::test]
async fn add_twice_is_exists_and_error_names_everything() {
    let t = TestNs::with_veth("twice").await;
    t.h.addr_add("v0", net("10.9.1.1/24")).await.unwrap();
    let err = t.h.addr_add("v0", net("10.9.1.1/24")).await.unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert_eq!(err.errno(), Some(libc::EEXIST));
    let text = err.to_string();
    let ns = t.ns.name().unwrap();
    assert!(text.contains("add"), "{text}");
    assert!(text.contains("10.9.1.1/24"), "{text}");
    assert!(text.contains("v0"), "{text}");
    assert!(text.contains(ns), "{text}");

    let err = t.h.addr_add("v0", net("fd00:9:1::1/64")).nodad().await;
    assert!(err.is_ok());
    let err = t.h.addr_add("v0", net("fd00:9:1::1/64")).nodad().await.unwrap_err();
    assert!(err.is_exists(), "{err}");
}

#[tokio::test]
async fn missing_device_is_not_found_with_context() {
    let t = TestNs::new("nodev").await;
    let err = t.h.addr_add("nope0", net("10.9.2.1/24")).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let text = err.to_string();
    assert!(text.contains("nope0") && text.contains(t.ns.name().unwrap()), "{text}");
    // Deleting from a missing device is success (nothing to remove).
    t.h.addr_del("nope0", net("10.9.2.1/24")).await.unwrap();
}

#[tokio::test]
async fn delete_twice_is_ok() {
    let t = TestNs::with_veth("del2").await;
    for p in ["10.9.3.1/24", "fd00:9:3::1/64"] {
        t.h.addr_add("v0", net(p)).nodad().await.unwrap();
        t.h.addr_del("v0", net(p)).await.unwrap();
        t.h.addr_del("v0", net(p)).await.unwrap();
        let idx = t.h.link_index("v0").await.unwrap();
        t.h.addr_del_index(idx, net(p)).await.unwrap();
        assert!(!t
            .h
            .addr_list(Some("v0"))
            .await
            .unwrap()
            .iter()
            .any(|a| a.prefix == net(p)));
    }
}

#[tokio::test]
async fn replace_updates_in_place() {
    let t = TestNs::with_veth("repl").await;
    // Replace creates when missing.
    t.h.addr_replace("v0", net("10.9.4.1/24")).await.unwrap();
    // A second replace succeeds where add would fail. For IPv4 the kernel
    // updates the prefix route metric and lifetimes in place (it keeps the
    // label and broadcast of the existing address).
    t.h.addr_replace("v0", net("10.9.4.1/24")).metric(55).await.unwrap();
    let v4: Vec<_> =
        t.h.addr_list(Some("v0"))
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.prefix.is_ipv4())
            .collect();
    assert_eq!(v4.len(), 1, "{v4:?}");
    let routes = t.sh("ip -4 route show dev v0");
    assert!(
        routes.contains("10.9.4.0/24") && routes.contains("metric 55"),
        "{routes}"
    );
    let err = t.h.addr_add("v0", net("10.9.4.1/24")).await.unwrap_err();
    assert!(err.is_exists(), "{err}");

    // IPv6: a replace updates the flags of the existing address.
    t.h.addr_replace("v0", net("fd00:9:4::1/64")).nodad().await.unwrap();
    t.h.addr_replace("v0", net("fd00:9:4::1/64"))
        .nodad()
        .noprefixroute()
        .await
        .unwrap();
    let a =
        t.h.addr_list(Some("v0"))
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.prefix == net("fd00:9:4::1/64"))
            .unwrap();
    assert_ne!(a.flags & IFA_F_NOPREFIXROUTE, 0, "flags {:#x}", a.flags);
    assert!(t.sh("ip -6 -o addr show dev v0").contains("noprefixroute"));
    assert!(!t.sh("ip -6 route show").contains("fd00:9:4::/64"));
}

#[tokio::test]
async fn noprefixroute_scope_metric_and_index() {
    let t = TestNs::with_veth("opts").await;
    let v0 = t.h.link_index("v0").await.unwrap();
    t.h.addr_add_index(v0, net("10.9.5.1/24"))
        .noprefixroute()
        .await
        .unwrap();
    assert!(!t.sh("ip -4 route show").contains("10.9.5.0/24"));

    t.h.addr_add("v0", net("10.9.6.1/24")).metric(77).await.unwrap();
    let routes = t.sh("ip -4 route show dev v0");
    assert!(
        routes.contains("10.9.6.0/24") && routes.contains("metric 77"),
        "{routes}"
    );

    t.h.addr_add("v0", net("10.9.7.1/24"))
        .scope(Scope::Link)
        .no_broadcast()
        .label("v0:lbl")
        .await
        .unwrap();
    let a =
        t.h.addr_list(Some("v0"))
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.prefix == net("10.9.7.1/24"))
            .unwrap();
    assert_eq!(a.scope, Scope::Link);
    assert_eq!(a.broadcast, None);
    assert_eq!(a.label.as_deref(), Some("v0:lbl"));
    let shown = t.sh("ip -4 -o addr show dev v0");
    assert!(shown.contains("10.9.7.1/24 scope link v0:lbl"), "{shown}");

    // /31 and /32 get no broadcast by default.
    t.h.addr_add("v0", net("10.9.8.0/31")).await.unwrap();
    let a =
        t.h.addr_list(Some("v0"))
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.prefix == net("10.9.8.0/31"))
            .unwrap();
    assert_eq!(a.broadcast, None);
    assert_eq!(a.protocol, 0, "nobody said who added it");

    // `proto N` on both families (IPv6 addresses have no label to find them by).
    t.h.addr_add("v0", net("10.9.9.1/32")).protocol(77).await.unwrap();
    t.h.addr_add("v0", net("fd00:9:9::1/128"))
        .nodad()
        .protocol(77)
        .await
        .unwrap();
    let ours: Vec<_> =
        t.h.addr_list(Some("v0"))
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.protocol == 77)
            .map(|a| a.prefix)
            .collect();
    assert_eq!(ours, vec![net("10.9.9.1/32"), net("fd00:9:9::1/128")]);
    // (This machine's iproute2 does not print `proto` for addresses; the kernel's listing
    // above is what counts.)
    let shown = t.sh("ip -o addr show dev v0");
    assert!(
        shown.contains("10.9.9.1/32") && shown.contains("fd00:9:9::1/128"),
        "{shown}"
    );
}

#[tokio::test]
async fn ping_across_veth_between_namespaces() {
    let a = TestNs::new("pa").await;
    let b = TestNs::new("pb").await;
    a.h.link_add(&Veth::new("va", "vb").peer_netns(&b.ns).up())
        .await
        .unwrap();
    b.h.link_set_up("vb").await.unwrap();
    a.h.addr_add("va", net("10.9.9.1/24")).await.unwrap();
    b.h.addr_add("vb", net("10.9.9.2/24")).await.unwrap();
    a.h.addr_add("va", net("fd00:9:9::1/64")).nodad().await.unwrap();
    b.h.addr_add("vb", net("fd00:9:9::2/64")).nodad().await.unwrap();

    // No sleep needed: nodad addresses are usable right away.
    assert!(a.try_sh("ping -c1 -W1 10.9.9.2"), "IPv4 ping failed");
    assert!(a.try_sh("ping -6 -c1 -W1 fd00:9:9::2"), "IPv6 ping failed");

    b.h.addr_del("vb", net("10.9.9.2/24")).await.unwrap();
    assert!(
        !a.try_sh("ping -c1 -W1 10.9.9.2"),
        "ping answered after the address was removed"
    );
}

#[tokio::test]
async fn flush_removes_every_address_of_the_device_only() {
    let t = TestNs::with_veth("afl").await;
    t.h.addr_add("v0", net("10.9.1.1/24")).await.unwrap();
    // A secondary: the kernel removes it with its primary, flush must not fail on it.
    t.h.addr_add("v0", net("10.9.1.2/24")).await.unwrap();
    t.h.addr_add("v0", net("10.9.2.1/24")).await.unwrap();
    t.h.addr_add("v0", net("fd00:9:1::1/64")).nodad().await.unwrap();
    t.h.addr_add("v1", net("10.9.1.9/24")).await.unwrap();
    let before = t.h.addr_list(Some("v0")).await.unwrap().len();
    assert!(before >= 4, "{before} addresses on v0");

    let removed = t.h.addr_flush("v0").await.unwrap();
    assert_eq!(removed, before);
    assert!(t.h.addr_list(Some("v0")).await.unwrap().is_empty());
    assert_eq!(t.sh("ip -o addr show dev v0").trim(), "");
    // Other devices keep theirs.
    assert!(t.sh("ip -4 -o addr show dev v1").contains("10.9.1.9/24"));
    // Nothing left: flushing again removes nothing.
    assert_eq!(t.h.addr_flush("v0").await.unwrap(), 0);

    let e = t.h.addr_flush("nosuch0").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("flush") && text.contains("nosuch0") && text.contains(t.name()),
        "{text}"
    );
}

/// `addr_list_index`: one link's addresses, IPv4 and IPv6, and none of the others'; an index
/// with no link lists nothing (the kernel's filter and netkit's agree).
#[tokio::test]
async fn list_by_index_gives_one_links_addresses() {
    let t = TestNs::with_veth("ai").await;
    t.h.addr_add("v0", net("10.9.1.1/24")).await.unwrap();
    t.h.addr_add("v0", net("fd00:9::1/64")).await.unwrap();
    t.h.addr_add("v1", net("10.9.1.2/24")).await.unwrap();
    let v0 = t.h.link_index("v0").await.unwrap();
    let mut got: Vec<String> =
        t.h.addr_list_index(v0)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.scope == Scope::Universe)
            .map(|a| {
                assert_eq!(a.index, v0);
                a.prefix.to_string()
            })
            .collect();
    got.sort();
    assert_eq!(got, ["10.9.1.1/24", "fd00:9::1/64"]);
    assert!(t.h.addr_list_index(999_999).await.unwrap().is_empty());
}
