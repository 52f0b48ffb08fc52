use netkit_core::link::Veth;
use netkit_test_support::{ipj, TestNs};

#[tokio::test]
async fn veth_peer_is_born_in_target_netns() {
    let a = TestNs::new("a").await;
    let b = TestNs::new("b").await;
    let host =
        a.h.link_add(&Veth::new("v0", "eth0").peer_netns(&b.ns).up())
            .await
            .unwrap();
    assert!(host.up);
    let peer = b.h.link_get("eth0").await.unwrap();
    assert!(!peer.up);
    assert!(a.sh("ip -o link show v0").contains("v0@"));
}

#[tokio::test]
async fn current_list() {
    let h = netkit_core::Handle::current().unwrap();
    let l = h.link_list().await.unwrap();
    assert!(l.iter().any(|l| l.name == "lo"));
    h.link_get("lo").await.unwrap();
}

/// iproute2's view of link `name` in namespace `ns` (`ip -j -d link show`).
fn ip_link(ns: &str, name: &str) -> serde_json::Value {
    let shown = ipj(ns, &["link", "show", name]).unwrap_or_else(|| panic!("no link {name} in {ns}"));
    shown[0].clone()
}

fn is_up(link: &serde_json::Value) -> bool {
    link["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP"))
}

/// The three ways to make a pair (plain, host end up, peer in another namespace), each checked
/// against the kernel (`ip -j`): the index netkit reports, kind, who is up, where the peer is
/// and that each end names the other.
#[tokio::test]
async fn veth_variants() {
    let a = TestNs::new("a").await;
    let b = TestNs::new("b").await;
    let (an, bn) = (a.name(), b.name());
    let plain = a.h.link_add(&Veth::new("v1", "p1")).await.unwrap();
    let up = a.h.link_add(&Veth::new("v2", "p2").up()).await.unwrap();
    let ns = a.h.link_add(&Veth::new("v3", "p3").peer_netns(&b.ns)).await.unwrap();

    for (l, peer, want_up) in [(&plain, "p1", false), (&up, "p2", true)] {
        let host = ip_link(an, &l.name);
        let p = ip_link(an, peer);
        assert_eq!(host["ifindex"], l.index, "{host}");
        assert_eq!(host["linkinfo"]["info_kind"], "veth", "{host}");
        assert_eq!(p["linkinfo"]["info_kind"], "veth", "{p}");
        assert_eq!(is_up(&host), want_up, "{} up: {host}", l.name);
        assert_eq!(l.up, want_up, "what netkit reports for {}", l.name);
        assert!(!is_up(&p), "the peer {peer} is made down: {p}");
        // Same namespace: each end names the other.
        assert_eq!(host["link"], peer, "{host}");
        assert_eq!(p["link"], l.name.as_str(), "{p}");
        assert!(host.get("link_netnsid").is_none(), "{host}");
    }

    // The peer is born in b: not in a, no UP flag, and each end points at the other's index
    // across the namespaces.
    assert!(ipj(an, &["link", "show", "p3"]).is_none(), "p3 in the host namespace");
    assert!(ipj(bn, &["link", "show", "v3"]).is_none(), "v3 in the peer namespace");
    let host = ip_link(an, "v3");
    let p = ip_link(bn, "p3");
    assert_eq!(host["ifindex"], ns.index, "{host}");
    assert!(!is_up(&host) && !ns.up, "{host}");
    assert!(!is_up(&p), "{p}");
    assert!(host["link_netnsid"].is_u64() && ns.link_netnsid.is_some(), "{host}");
    assert!(p["link_netnsid"].is_u64(), "{p}");
    assert_eq!(host["link_index"], p["ifindex"], "{host}\n{p}");
    assert_eq!(p["link_index"], host["ifindex"], "{host}\n{p}");
}

#[cfg(feature = "rtnetlink")]
#[tokio::test]
async fn rtnetlink_handle_talks_to_the_same_namespace() {
    use futures::TryStreamExt;
    let t = TestNs::new("rt").await;
    t.h.link_add(&Veth::new("only0", "only1")).await.unwrap();
    let rt = t.h.rtnetlink().await.unwrap();
    let links: Vec<_> = rt.link().get().execute().try_collect().await.unwrap();
    // lo plus the pair, nothing from the caller's own namespace.
    assert_eq!(links.len(), 3, "{links:?}");
}
