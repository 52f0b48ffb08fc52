mod common;
use common::*;
use netkit_core::link::Veth;

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

#[tokio::test]
async fn veth_variants() {
    let a = TestNs::new("a").await;
    let b = TestNs::new("b").await;
    println!(
        "plain: {:?}",
        a.h.link_add(&Veth::new("v1", "p1")).await.map(|l| l.index)
    );
    println!(
        "up: {:?}",
        a.h.link_add(&Veth::new("v2", "p2").up()).await.map(|l| l.index)
    );
    println!(
        "ns: {:?}",
        a.h.link_add(&Veth::new("v3", "p3").peer_netns(&b.ns))
            .await
            .map(|l| l.index)
    );
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
