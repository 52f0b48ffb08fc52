//! The end-to-end scenarios of netkit-core (the runnable examples' code), proven with real packets.

use std::net::{IpAddr, SocketAddr};

use netkit_examples::probe::{ping, ping_retry, tcp_exchange};
use netkit_examples::scenarios::{bridge, cluster, flannel, veth_pair};
use netkit_test_support::overlay::backend;
use netkit_test_support::unique;

#[tokio::test]
async fn a_veth_pair_reaches_over_ipv4_and_ipv6_without_dad_wait() {
    let lab = veth_pair::build(&unique("sa")).await.unwrap();
    use veth_pair::VethPair as V;
    // No wait for DAD: with nodad the IPv6 addresses are usable (not tentative) the moment
    // they are added. The pings get a few tries: under load the veth's carrier and the first
    // neighbour resolution can take longer than one ping's second.
    for ns in [&lab.a, &lab.b] {
        let addrs = netkit_test_support::ip(&[
            "-n",
            ns.name().unwrap(),
            "-6",
            "addr",
            "show",
            "dev",
            "eth0",
            "scope",
            "global",
        ]);
        assert!(addrs.contains("inet6") && !addrs.contains("tentative"), "{addrs}");
    }
    assert!(ping_retry(&lab.a, V::ip(V::B6), 3), "IPv6 ping a -> b");
    assert!(ping_retry(&lab.b, V::ip(V::A6), 3), "IPv6 ping b -> a");
    assert!(ping_retry(&lab.a, V::ip(V::B4), 3), "IPv4 ping a -> b");
    let peer = tcp_exchange(&lab.b, &lab.a, SocketAddr::new(V::ip(V::B4), 7001))
        .await
        .unwrap();
    assert_eq!(peer.ip(), V::ip(V::A4));
    let peer = tcp_exchange(&lab.a, &lab.b, SocketAddr::new(V::ip(V::A6), 7002))
        .await
        .unwrap();
    assert_eq!(peer.ip(), V::ip(V::B6));
}

#[tokio::test]
async fn b_three_containers_on_a_bridge_reach_each_other_and_the_bridge() {
    let lab = bridge::build(&unique("sb"), 3).await.unwrap();
    let gw = IpAddr::V4(bridge::BridgeLab::GATEWAY);
    for (i, c) in lab.containers.iter().enumerate() {
        assert!(ping(c, gw), "c{i} -> bridge");
        for j in 0..3 {
            if i != j {
                assert!(ping(c, bridge::BridgeLab::container_ip(j)), "c{i} -> c{j}");
            }
        }
    }
    let addr = SocketAddr::new(bridge::BridgeLab::container_ip(1), 7003);
    let peer = tcp_exchange(&lab.containers[1], &lab.containers[0], addr)
        .await
        .unwrap();
    assert_eq!(peer.ip(), bridge::BridgeLab::container_ip(0), "no NAT between pods");
    // The host reaches a container too.
    tcp_exchange(
        &lab.containers[2],
        &lab.host,
        SocketAddr::new(bridge::BridgeLab::container_ip(2), 7004),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn c_flannel_vxlan_overlay_carries_pod_traffic_and_stops_without_entries() {
    let lab = flannel::build(&unique("sc")).await.unwrap();
    let (p1, p2) = (IpAddr::V4(lab.n1.pod_ip), IpAddr::V4(lab.n2.pod_ip));
    assert!(
        !ping(&lab.n1.pod, p2),
        "pods must not reach each other before the overlay is programmed"
    );
    lab.connect().await.unwrap();
    assert!(ping_retry(&lab.n1.pod, p2, 3), "pod1 -> pod2 over VXLAN");
    assert!(ping_retry(&lab.n2.pod, p1, 3), "pod2 -> pod1 over VXLAN");
    let peer = tcp_exchange(&lab.n2.pod, &lab.n1.pod, SocketAddr::new(p2, 7005))
        .await
        .unwrap();
    assert_eq!(peer.ip(), p1, "pod addresses are seen unchanged across nodes (no NAT)");
    // Remove node1's entries from node2: replies from pod2 can no longer go back.
    lab.n2.overlay.remove_peer(&lab.n1.as_peer).await.unwrap();
    assert!(!ping(&lab.n1.pod, p2), "traffic must stop once node2 forgets node1");
    assert!(!ping(&lab.n2.pod, p1), "pod2 -> pod1 must stop too");
    // Removing again is fine (idempotent), and re-adding restores traffic.
    lab.n2.overlay.remove_peer(&lab.n1.as_peer).await.unwrap();
    lab.n2.overlay.add_peer(&lab.n1.as_peer).await.unwrap();
    assert!(
        ping_retry(&lab.n1.pod, p2, 3),
        "traffic restored after re-adding the peer"
    );
}

/// `cargo run --example cluster`'s code, for both backends, at the size CI can afford (3 nodes ×
/// 2 pods): every pod reaches every other, the matrix says so, every agent reports its two
/// peers with the backend's mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_cluster_example_three_nodes_two_pods_reach_each_other() {
    for (name, mode) in [("vxlan", "(vxlan)"), ("host-gw", "(route)")] {
        let lab = cluster::build("sd", backend(name).unwrap(), 3, 2).await.unwrap();
        assert_eq!(lab.pods.len(), 6);
        let matrix = tokio::task::block_in_place(|| lab.matrix());
        let text = lab.render(&matrix);
        assert!(matrix.iter().flatten().all(|ok| *ok), "{name}:\n{text}");
        assert_eq!(text.matches('✓').count(), 30, "{name}:\n{text}");
        assert!(!text.contains('✗'), "{name}:\n{text}");
        let statuses = lab.statuses();
        assert_eq!(statuses.lines().count(), 3, "{statuses}");
        for line in statuses.lines() {
            assert_eq!(line.matches(mode).count(), 2, "{name}: {line}");
            assert!(line.contains("[running]") && !line.contains("STORE FAILING"), "{line}");
        }
        // The pods' addresses come from their nodes' subnets.
        for p in &lab.pods {
            let subnet = lab.agents[p.node].now().lease.unwrap().subnet;
            assert!(subnet.contains(IpAddr::V4(p.ip)), "{} {} in {subnet}", p.name, p.ip);
        }
    }
}
