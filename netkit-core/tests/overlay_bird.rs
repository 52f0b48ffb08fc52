//! BGP through the real BIRD 2 (Debian's bird2) on a simulated cluster: each node runs BIRD in
//! its namespace with its own control socket; blocks announced by one node become kernel routes
//! (`proto bird`) on the others, real packets follow them, a reload adds a block without dropping
//! sessions, and a node whose BIRD dies is withdrawn within the hold time.

use std::path::Path;
use std::time::Duration;

use netkit_core::overlay::bird::{Bird, BirdConfig, BirdPeer, BIRD};
use netkit_core::NetNs;
use netkit_test_support::cluster::{Cluster, Node};
use netkit_test_support::{ip, report_skip, wait_for};

const ASN: u32 = 64512;

fn block(i: u8, k: u8) -> ipnetwork::IpNetwork {
    format!("10.250.{i}.{}/26", 64 * k).parse().unwrap()
}

/// Node `i`'s configuration: its first block, every other node a peer (full mesh).
fn config(nodes: &[Node], i: usize) -> BirdConfig {
    let mut c = BirdConfig::new(nodes[i].ip, ASN);
    c.hold_time = 3;
    c.connect_retry = 1;
    c.blocks.push(block(i as u8 + 1, 0));
    for (j, n) in nodes.iter().enumerate().filter(|(j, _)| *j != i) {
        c.peers.push(BirdPeer {
            name: format!("n{}", j + 1),
            ip: n.ip,
            asn: ASN,
            rr_client: false,
            multihop: false,
        });
    }
    c
}

/// The kernel routes BIRD installed in `node` (`ip route show proto bird`).
fn bird_routes(node: &Node) -> String {
    ip(&["-n", node.name(), "route", "show", "proto", "bird"])
}

#[test]
fn full_mesh_spreads_blocks_reloads_and_withdraws_a_dead_node() {
    if !Path::new(BIRD).exists() {
        report_skip("overlay_bird::full_mesh", "no /usr/sbin/bird (apt-get install bird2)");
        return;
    }
    let cluster = Cluster::new("obgp", 1);
    let nodes: Vec<Node> = (1..=3).map(|i| cluster.node(&format!("b{i}"), 0, i)).collect();
    let mut birds = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        // An address of the node's block on lo: what a pod's address stands for here.
        ip(&[
            "-n",
            n.name(),
            "addr",
            "add",
            &format!("10.250.{}.1/32", i + 1),
            "dev",
            "lo",
        ]);
        let ns = NetNs::open(n.name()).unwrap();
        let dir = cluster.dir().join(format!("bird{i}"));
        birds.push(Some(Bird::start(&ns, &dir, &config(&nodes, i)).expect("bird starts")));
    }
    // Full mesh: 3 sessions, each seen from both ends, Established.
    for b in birds.iter().flatten() {
        wait_for(Duration::from_secs(30), "every session Established", || {
            let s = b.sessions().unwrap();
            if s.len() == 2 && s.iter().all(|x| x.established()) {
                Ok(())
            } else {
                Err(s)
            }
        });
    }
    // Every node has a route to every other node's block via that node, and a blackhole for
    // its own; packets follow them.
    for (i, n) in nodes.iter().enumerate() {
        wait_for(Duration::from_secs(10), "the other blocks as kernel routes", || {
            let r = bird_routes(n);
            let all = nodes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .all(|(j, m)| r.contains(&format!("{} via {} dev eth0", block(j as u8 + 1, 0), m.ip)));
            if all && r.contains(&format!("blackhole {}", block(i as u8 + 1, 0))) {
                Ok(())
            } else {
                Err(r)
            }
        });
    }
    let from =
        |i: usize, to: &str| netkit_test_support::cmd::ping_from(nodes[i].name(), &format!("10.250.{}.1", i + 1), to);
    assert!(from(0, "10.250.2.1") && from(1, "10.250.3.1") && from(2, "10.250.1.1"));

    // A second block on node 1, by reload: node 2 learns it, and no session went down.
    let mut c1 = config(&nodes, 0);
    c1.blocks.push(block(1, 1));
    birds[0].as_ref().unwrap().reconfigure(&c1).unwrap();
    wait_for(Duration::from_secs(10), "the new block on node 2", || {
        let r = bird_routes(&nodes[1]);
        if r.contains(&format!("{} via {}", block(1, 1), nodes[0].ip)) {
            Ok(())
        } else {
            Err(r)
        }
    });
    assert!(birds[0]
        .as_ref()
        .unwrap()
        .sessions()
        .unwrap()
        .iter()
        .all(|s| s.established()));

    // BIRD dies on node 3: within the hold time (3 s) the others withdraw its block.
    birds[2] = None;
    for n in &nodes[..2] {
        wait_for(Duration::from_secs(10), "node 3's block withdrawn", || {
            let r = bird_routes(n);
            if r.contains(&block(3, 0).to_string()) {
                Err(r)
            } else {
                Ok(())
            }
        });
    }
}

/// Route reflectors: 6 nodes, nodes 1 and 2 reflect. Each reflector peers with every other node
/// (the other reflector as a plain iBGP peer, the rest as its clients); each client peers with
/// the two reflectors only. Sessions: 5 per reflector, 2 per client, 9 in all (against 15 for a
/// full mesh of 6); every node still learns every block, with the owner as next hop.
#[test]
fn route_reflectors_cut_the_sessions_and_still_converge() {
    if !Path::new(BIRD).exists() {
        report_skip(
            "overlay_bird::route_reflectors",
            "no /usr/sbin/bird (apt-get install bird2)",
        );
        return;
    }
    let cluster = Cluster::new("orr", 1);
    let nodes: Vec<Node> = (1..=6).map(|i| cluster.node(&format!("r{i}"), 0, i)).collect();
    let reflector = |i: usize| i < 2;
    let mut birds = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut c = BirdConfig::new(n.ip, ASN);
        c.hold_time = 3;
        c.connect_retry = 1;
        c.blocks.push(block(i as u8 + 1, 0));
        for (j, m) in nodes.iter().enumerate().filter(|(j, _)| *j != i) {
            if reflector(i) || reflector(j) {
                c.peers.push(BirdPeer {
                    name: format!("r{}", j + 1),
                    ip: m.ip,
                    asn: ASN,
                    rr_client: reflector(i) && !reflector(j),
                    multihop: false,
                });
            }
        }
        let ns = NetNs::open(n.name()).unwrap();
        birds.push(Bird::start(&ns, &cluster.dir().join(format!("bird{i}")), &c).expect("bird starts"));
    }
    let mut total = 0;
    for (i, b) in birds.iter().enumerate() {
        let want = if reflector(i) { 5 } else { 2 };
        wait_for(Duration::from_secs(30), "every session Established", || {
            let s = b.sessions().unwrap();
            if s.len() == want && s.iter().all(|x| x.established()) {
                Ok(())
            } else {
                Err(s)
            }
        });
        total += want;
    }
    assert_eq!(total / 2, 9, "sessions, counted once");
    for (i, n) in nodes.iter().enumerate() {
        wait_for(Duration::from_secs(15), "every other block, via its owner", || {
            let r = bird_routes(n);
            let all = nodes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .all(|(j, m)| r.contains(&format!("{} via {} dev eth0", block(j as u8 + 1, 0), m.ip)));
            if all {
                Ok(())
            } else {
                Err(r)
            }
        });
    }
}

/// The agent's bgp backend (Calico's way) on 3 nodes: each agent runs BIRD in its node with
/// the node's lease as its block and the other nodes (from the lease store) as peers; pods
/// attached in routed mode reach each other; a node whose agent (and so its BIRD) stops is
/// withdrawn within the hold time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_with_the_bgp_backend_carry_routed_pods() {
    use netkit_core::overlay::{BackendConfig, BgpBackendConfig, PeerMode};
    use netkit_test_support::overlay::{reachability, wait_peers, ClusterNode};
    if !Path::new(BIRD).exists() {
        report_skip(
            "overlay_bird::agents_with_the_bgp_backend",
            "no /usr/sbin/bird (apt-get install bird2)",
        );
        return;
    }
    let cluster = Cluster::new("oagb", 1);
    let store = cluster.dir().join("leases");
    let nodes: Vec<ClusterNode> = (1..=3)
        .map(|i| ClusterNode::new(&cluster, &format!("g{i}"), 0, i))
        .collect();
    let mut agents = Vec::new();
    for n in &nodes {
        let cfg = BackendConfig::Bgp(BgpBackendConfig {
            dir: n.dir.join("bird"),
            hold_time: 3,
            ..Default::default()
        });
        agents.push(n.start_file(&store, cfg, Duration::from_secs(3600)).await);
    }
    let mut subnets = Vec::new();
    for a in &agents {
        let s = wait_peers(a, 2).await;
        assert!(s.peers.iter().all(|p| p.mode == PeerMode::Bgp), "{s:?}");
        subnets.push(s.lease.unwrap().subnet);
    }
    // BIRD puts every other node's block into the kernel (proto bird).
    for (i, n) in nodes.iter().enumerate() {
        wait_for(Duration::from_secs(30), "the other nodes' blocks from BGP", || {
            let r = bird_routes(&n.node);
            let all = subnets
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .all(|(j, s)| r.contains(&format!("{s} via {} dev eth0", nodes[j].node.ip)));
            if all {
                Ok(())
            } else {
                Err(r)
            }
        });
    }
    let mut pods = Vec::new();
    for n in &nodes {
        let tag = format!("{}p", n.name().rsplit('-').next().unwrap());
        pods.push(n.pod_in_mode(&cluster, &tag, "routed").await);
    }
    let view: Vec<_> = pods.iter().map(|(p, ip)| (p, *ip)).collect();
    assert_eq!(reachability(&view, &[]), Vec::<String>::new());

    // BIRD killed on node 1: its agent notices (pidfd), starts it again with the same blocks
    // and peers, and the sessions and routes come back.
    let pid_file = nodes[0].dir.join("bird").join("bird.pid");
    let old_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let mut rx = agents[0].status();
    netkit_test_support::wait_for_async(Duration::from_secs(30), "bird restarted, 2 sessions up", async || {
        let s = rx.borrow_and_update().clone();
        let new_pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        let up = s
            .bgp
            .iter()
            .flatten()
            .filter(|b| b.info.starts_with("Established"))
            .count();
        match (new_pid, up) {
            (Some(p), 2) if p != old_pid => Ok(()),
            _ => Err((new_pid, s.bgp)),
        }
    })
    .await;
    for n in &nodes[1..] {
        wait_for(Duration::from_secs(30), "node 1's block back", || {
            let r = bird_routes(&n.node);
            match r.contains(&format!("{} via {} dev eth0", subnets[0], nodes[0].node.ip)) {
                true => Ok(()),
                false => Err(r),
            }
        });
    }
    assert_eq!(reachability(&view, &[]), Vec::<String>::new());

    // BIRD killed when it cannot be started again (its configuration file cannot be written):
    // the status says so, the agent keeps trying, and once the obstacle is gone BIRD runs.
    let conf = nodes[0].dir.join("bird").join("bird.conf");
    std::fs::remove_file(&conf).unwrap();
    std::fs::create_dir(&conf).unwrap();
    let old_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    netkit_test_support::wait_for_async(Duration::from_secs(20), "the status to say bird is down", async || {
        let s = rx.borrow_and_update().clone();
        match &s.bird_error {
            Some(e) if e.contains("starting bird again") => Ok(()),
            _ => Err(s.bird_error),
        }
    })
    .await;
    std::fs::remove_dir(&conf).unwrap();
    netkit_test_support::wait_for_async(Duration::from_secs(30), "bird back after the retry", async || {
        let s = rx.borrow_and_update().clone();
        let up = s
            .bgp
            .iter()
            .flatten()
            .filter(|b| b.info.starts_with("Established"))
            .count();
        match (&s.bird_error, up) {
            (None, 2) => Ok(()),
            _ => Err((s.bird_error, s.bgp)),
        }
    })
    .await;

    // Node 3's agent stops, and its BIRD with it: the others withdraw its block within 3 s.
    let gone = subnets[2];
    agents.pop().unwrap().stop().await.expect("clean stop");
    for n in &nodes[..2] {
        wait_for(Duration::from_secs(10), "node 3's block withdrawn", || {
            let r = bird_routes(&n.node);
            if r.contains(&gone.to_string()) {
                Err(r)
            } else {
                Ok(())
            }
        });
    }
}

/// Calico's block affinity with the real BIRD: /28 blocks, claim at fewer than 2 free. Node 1's
/// pods fill its block, the agent claims a second one (subnet file, BIRD, the other node's
/// kernel), a pod gets an address of it and is reachable from node 2; pods leave, the empty
/// block is given back and withdrawn everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_claims_a_block_when_full_and_gives_it_back_when_empty() {
    use netkit_core::ipam::lease::{FileLeaseStore, LeaseStore, SubnetPlan};
    use netkit_core::ipam::SubnetFile;
    use netkit_core::overlay::{BackendConfig, BgpBackendConfig, BlockPolicy};
    use netkit_test_support::overlay::{wait_peers, ClusterNode};
    use netkit_test_support::{ping, wait_for_async};
    if !Path::new(BIRD).exists() {
        report_skip(
            "overlay_bird::block_affinity",
            "no /usr/sbin/bird (apt-get install bird2)",
        );
        return;
    }
    let cluster = Cluster::new("oblk", 1);
    let store_dir = cluster.dir().join("leases");
    let plan = SubnetPlan::new("10.251.0.0/24".parse().unwrap(), 28).unwrap();
    let nodes: Vec<ClusterNode> = (1..=2)
        .map(|i| ClusterNode::new(&cluster, &format!("k{i}"), 0, i))
        .collect();
    let start = async |n: &ClusterNode| {
        let backend = BackendConfig::Bgp(BgpBackendConfig {
            dir: n.dir.join("bird"),
            hold_time: 3,
            ..Default::default()
        });
        let mut cfg = n.config(backend, Duration::from_secs(3600));
        let mut policy = BlockPolicy::new(n.ipam_store());
        policy.min_free = 2;
        cfg.blocks = Some(policy);
        let dir = store_dir.clone();
        n.start(cfg, move || async move {
            Ok(FileLeaseStore::open(dir, plan)
                .await?
                .with_watch_interval(Duration::from_millis(50)))
        })
        .await
    };
    let mut agents = Vec::new();
    for n in &nodes {
        agents.push(start(n).await);
    }
    for a in &agents {
        wait_peers(a, 1).await;
    }
    let first = agents[0].now().lease.expect("a lease").subnet;
    let (far, far_ip) = nodes[1].pod_in_mode(&cluster, "kfar", "routed").await;

    // 13 addresses per /28; after 12 pods one is left (< 2): a second block is claimed.
    let mut pods = Vec::new();
    for i in 0..12 {
        let tag = format!("kp{i}");
        let (p, ip) = nodes[0].pod_in_mode(&cluster, &tag, "routed").await;
        assert!(first.contains(ip.into()), "pod {i} {ip} in the first block {first}");
        pods.push((tag, p, ip));
    }
    let mut rx = agents[0].status();
    let blocks = wait_for_async(Duration::from_secs(20), "a second block claimed", async || {
        let s = rx.borrow_and_update().clone();
        match s.blocks.len() {
            2 => Ok(s.blocks),
            _ => Err(s.blocks),
        }
    })
    .await;
    assert_eq!((blocks[0].subnet, blocks[0].held), (first, 12), "{blocks:?}");
    let second = blocks[1].subnet;
    let file = SubnetFile::read(&nodes[0].subnet_file()).unwrap();
    assert_eq!(file.extra_subnets, [second], "the subnet file lists the new block");
    wait_for(Duration::from_secs(20), "node 2 learns the second block by BGP", || {
        let r = bird_routes(&nodes[1].node);
        match r.contains(&format!("{second} via {} dev eth0", nodes[0].node.ip)) {
            true => Ok(()),
            false => Err(r),
        }
    });
    // The last address of the first block, then one of the second; both reachable.
    for i in 12..14 {
        let tag = format!("kp{i}");
        let (p, ip) = nodes[0].pod_in_mode(&cluster, &tag, "routed").await;
        pods.push((tag, p, ip));
    }
    assert!(first.contains(pods[12].2.into()), "{:?}", pods[12].2);
    assert!(second.contains(pods[13].2.into()), "{:?} in {second}", pods[13].2);
    let far_name = far.name().unwrap().to_string();
    for (_, _, ip) in &pods[12..] {
        assert!(ping(&far_name, &ip.to_string()), "node 2's pod {far_ip} reaches {ip}");
    }

    // The agent restarts: it takes its claimed block back from the store (same blocks, same
    // subnet file), and the pods stay reachable.
    agents.remove(0).stop().await.expect("clean stop");
    agents.insert(0, start(&nodes[0]).await);
    rx = agents[0].status();
    wait_for_async(Duration::from_secs(20), "the claimed block adopted again", async || {
        let s = rx.borrow_and_update().clone();
        let blocks: Vec<_> = s.blocks.iter().map(|b| b.subnet).collect();
        match blocks == [first, second] {
            true => Ok(()),
            false => Err(blocks),
        }
    })
    .await;
    assert_eq!(
        SubnetFile::read(&nodes[0].subnet_file()).unwrap().extra_subnets,
        [second]
    );
    for (_, _, ip) in &pods[12..] {
        assert!(ping(&far_name, &ip.to_string()), "after the restart, {ip} is reachable");
    }

    // The second block's pod and four of the first block's leave: the second block is empty
    // and the first has 4 free (2 × min_free), so the second goes back.
    for (tag, p, _) in pods.drain(9..) {
        nodes[0].remove_pod(&p, &tag, "routed").await;
    }
    wait_for_async(Duration::from_secs(20), "the empty block given back", async || {
        let s = rx.borrow_and_update().clone();
        match s.blocks.len() {
            1 => Ok(()),
            _ => Err(s.blocks),
        }
    })
    .await;
    let file = SubnetFile::read(&nodes[0].subnet_file()).unwrap();
    assert!(file.extra_subnets.is_empty(), "{file:?}");
    let store = FileLeaseStore::open(&store_dir, plan).await.unwrap();
    let held: Vec<_> = store.list().await.unwrap().iter().map(|l| (l.subnet, l.slot)).collect();
    assert!(
        !held.iter().any(|(s, _)| *s == second),
        "the block's lease is released: {held:?}"
    );
    wait_for(Duration::from_secs(20), "node 2 withdraws the second block", || {
        let r = bird_routes(&nodes[1].node);
        match r.contains(&second.to_string()) {
            true => Err(r),
            false => Ok(()),
        }
    });
    // The fence is gone: the first block's freed addresses are handed out again.
    let (_p, ip) = nodes[0].pod_in_mode(&cluster, "kagain", "routed").await;
    assert!(first.contains(ip.into()), "{ip}");
    for a in agents {
        a.stop().await.expect("clean stop");
    }
}

/// Two segments joined by a router that runs BIRD as the route reflector of both (as a
/// top-of-rack router does), two nodes on each, the bgp backend with `encap` across subnets
/// only: nodes of one segment reach each other's blocks by plain BGP routes, the other
/// segment's by encapsulation. Returns `false` when this kernel cannot run `encap`.
async fn two_segments(tag: &str, encap: netkit_core::overlay::BgpEncap) -> bool {
    use netkit_core::overlay::{BackendConfig, BgpBackendConfig, PeerMode};
    use netkit_test_support::overlay::{reachability, ClusterNode};
    use netkit_test_support::wait_for_async;
    let cluster = Cluster::new(tag, 2);
    let store = cluster.dir().join("leases");
    let router = cluster.router().expect("two segments have a router");
    let nodes: Vec<ClusterNode> = [(0, 1), (0, 2), (1, 1), (1, 2)]
        .iter()
        .map(|(seg, host)| ClusterNode::new(&cluster, &format!("s{seg}h{host}"), *seg, *host))
        .collect();
    // The router: a reflector for every node, on the segment each is on.
    let mut rr = BirdConfig::new("192.168.50.254".parse().unwrap(), ASN);
    (rr.hold_time, rr.connect_retry) = (3, 1);
    for n in &nodes {
        rr.peers.push(BirdPeer {
            name: n.name().to_string(),
            ip: n.node.ip,
            asn: ASN,
            rr_client: true,
            multihop: false,
        });
    }
    let _rr = Bird::start(router, &cluster.dir().join("rr"), &rr).expect("the router's bird");
    let mut agents = Vec::new();
    for n in &nodes {
        let cfg = BackendConfig::Bgp(BgpBackendConfig {
            dir: n.dir.join("bird"),
            hold_time: 3,
            reflectors: vec![format!("192.168.{}.254", 50 + 10 * n.node.segment)],
            encap,
            cross_subnet: true,
            ..Default::default()
        });
        let ns = NetNs::open(n.name()).unwrap();
        let dir = store.clone();
        let mut agent_cfg = n.config(cfg, Duration::from_secs(3600));
        let mut policy = netkit_core::overlay::BlockPolicy::new(n.ipam_store());
        policy.min_free = 2;
        agent_cfg.blocks = Some(policy);
        // Four /28 blocks, one per node: a node that fills its block borrows.
        let plan = netkit_core::ipam::lease::SubnetPlan::new("10.249.0.0/26".parse().unwrap(), 28).unwrap();
        let task = netkit_test_support::overlay::AgentTask::spawn(&ns, agent_cfg, move || async move {
            Ok(netkit_core::ipam::lease::FileLeaseStore::open(dir, plan)
                .await?
                .with_watch_interval(Duration::from_millis(50)))
        })
        .await
        .expect("spawn the agent");
        match task.running().await {
            Ok(t) => agents.push(t),
            Err(e) if e.to_string().contains("not supported by this kernel") => return false,
            Err(e) => panic!("agent of {}: {e}", n.name()),
        }
    }
    // Same segment: plain BGP; the other segment: encapsulated.
    let want = match encap {
        netkit_core::overlay::BgpEncap::Ipip => PeerMode::Ipip,
        _ => PeerMode::Vxlan,
    };
    for (i, a) in agents.iter().enumerate() {
        let mut rx = a.status();
        netkit_test_support::wait_for_async(
            Duration::from_secs(30),
            "peers programmed, the router's session up",
            async || {
                let s = rx.borrow_and_update().clone();
                let modes: Vec<(u8, PeerMode)> = s
                    .peers
                    .iter()
                    .map(|p| {
                        let seg = nodes.iter().find(|n| n.name() == p.node).unwrap().node.segment;
                        (seg, p.mode.clone())
                    })
                    .collect();
                let ok = modes.len() == 3
                    && modes.iter().all(|(seg, m)| match *seg == nodes[i].node.segment {
                        true => *m == PeerMode::Bgp,
                        false => *m == want,
                    })
                    && s.bgp
                        .iter()
                        .flatten()
                        .filter(|b| b.info.starts_with("Established"))
                        .count()
                        == 1;
                match ok {
                    true => Ok(()),
                    false => Err((modes, s.bgp)),
                }
            },
        )
        .await;
    }
    // The same-segment neighbour's block is a BIRD route via the neighbour itself.
    for (i, n) in nodes.iter().enumerate() {
        let buddy = &nodes[i ^ 1];
        let buddy_block = agents[i ^ 1].now().lease.unwrap().subnet;
        wait_for(Duration::from_secs(20), "the neighbour's block from BGP", || {
            let r = bird_routes(&n.node);
            match r.contains(&format!("{buddy_block} via {} dev eth0", buddy.node.ip)) {
                true => Ok(()),
                false => Err(r),
            }
        });
    }
    // The other segment's blocks are the agent's encapsulated routes, never BIRD's (which
    // would send pod traffic to the router).
    for (i, n) in nodes.iter().enumerate() {
        let r = bird_routes(&n.node);
        for (j, a) in agents
            .iter()
            .enumerate()
            .filter(|(j, _)| nodes[*j].node.segment != nodes[i].node.segment)
        {
            let block = a.now().lease.unwrap().subnet;
            assert!(
                !r.contains(&block.to_string()),
                "node {i} has a BIRD route to node {j}'s {block}: {r}"
            );
        }
    }
    let mut pods = Vec::new();
    for n in &nodes {
        let tag = format!("{}p", n.name().rsplit('-').next().unwrap());
        pods.push(n.pod_in_mode(&cluster, &tag, "routed").await);
    }
    let view: Vec<_> = pods.iter().map(|(p, ip)| (p, *ip)).collect();
    assert_eq!(reachability(&view, &[]), Vec::<String>::new());

    // The last node (segment 1) fills its block and borrows from the next node by name, the
    // first (segment 0); its borrowed /32 is encapsulated like its block: node 2 (segment 0)
    // routes it through the tunnel, and its pod reaches it.
    let last = nodes.len() - 1;
    let mut rx = agents[last].status();
    let mut fill = Vec::new();
    for k in 0..12 {
        fill.push(nodes[last].pod_in_mode(&cluster, &format!("f{k}"), "routed").await);
        if k == 11 {
            wait_for_async(Duration::from_secs(20), "an address lent", async || {
                match rx.borrow_and_update().loans.len() {
                    0 => Err(()),
                    _ => Ok(()),
                }
            })
            .await;
        }
    }
    fill.push(nodes[last].pod_in_mode(&cluster, "f12", "routed").await);
    wait_for_async(Duration::from_secs(20), "a second address lent", async || {
        match rx.borrow_and_update().loans.len() {
            n if n >= 2 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    let (bpod, borrowed) = nodes[last].pod_in_mode(&cluster, "f13", "routed").await;
    let lender_block = agents[0].now().lease.unwrap().subnet;
    assert!(lender_block.contains(borrowed.into()), "{borrowed} from {lender_block}");
    let tunnel = match encap {
        netkit_core::overlay::BgpEncap::Ipip => "tunl0",
        _ => "vxlan.calico",
    };
    wait_for(Duration::from_secs(20), "node 2 encapsulates the borrowed /32", || {
        let r = ip(&["-n", nodes[1].name(), "route", "get", &borrowed.to_string()]);
        match r.contains(&format!("dev {tunnel}")) {
            true => Ok(()),
            false => Err(r),
        }
    });
    assert!(
        netkit_test_support::ping(pods[1].0.name().unwrap(), &borrowed.to_string()),
        "node 2's pod reaches the borrowed {borrowed} on the other segment"
    );
    assert!(
        netkit_test_support::ping(bpod.name().unwrap(), &pods[1].1.to_string()),
        "and back"
    );
    drop(fill);
    for a in agents {
        a.stop().await.expect("clean stop");
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_segments_vxlan_cross_subnet_through_a_reflecting_router() {
    if !Path::new(BIRD).exists() {
        report_skip(
            "overlay_bird::two_segments_vxlan",
            "no /usr/sbin/bird (apt-get install bird2)",
        );
        return;
    }
    assert!(
        two_segments("o2sv", netkit_core::overlay::BgpEncap::Vxlan).await,
        "vxlan runs on this kernel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_segments_ipip_cross_subnet_through_a_reflecting_router() {
    if !Path::new(BIRD).exists() {
        report_skip(
            "overlay_bird::two_segments_ipip",
            "no /usr/sbin/bird (apt-get install bird2)",
        );
        return;
    }
    if !two_segments("o2si", netkit_core::overlay::BgpEncap::Ipip).await {
        report_skip(
            "overlay_bird::two_segments_ipip",
            "ipip is not supported by this kernel (the agent said so)",
        );
    }
}

/// Borrowed addresses with the real BIRD: a pool of two /28 blocks, one per node. Node 1's
/// pods fill its block, no block is left to claim, so node 1 borrows single addresses of node
/// 2's block: node 2 claims them in its IPAM store, node 1 hands one to a pod and announces it
/// as a /32, and node 2's pod reaches it (longest prefix beats node 2's own block). Pods leave
/// and the addresses go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_lends_single_addresses_announced_as_slash_32() {
    use netkit_core::ipam::lease::{FileLeaseStore, SubnetPlan};
    use netkit_core::ipam::{Store, StoreOptions, SubnetFile};
    use netkit_core::overlay::{BackendConfig, BgpBackendConfig, BlockPolicy};
    use netkit_test_support::overlay::{wait_peers, ClusterNode};
    use netkit_test_support::{ping, wait_for_async};
    if !Path::new(BIRD).exists() {
        report_skip("overlay_bird::borrowing", "no /usr/sbin/bird (apt-get install bird2)");
        return;
    }
    let cluster = Cluster::new("olnd", 1);
    let store_dir = cluster.dir().join("leases");
    let plan = SubnetPlan::new("10.253.0.0/27".parse().unwrap(), 28).unwrap();
    let nodes: Vec<ClusterNode> = (1..=2)
        .map(|i| ClusterNode::new(&cluster, &format!("l{i}"), 0, i))
        .collect();
    let start = async |n: &ClusterNode| {
        let backend = BackendConfig::Bgp(BgpBackendConfig {
            dir: n.dir.join("bird"),
            hold_time: 3,
            ..Default::default()
        });
        let mut cfg = n.config(backend, Duration::from_secs(3600));
        let mut policy = BlockPolicy::new(n.ipam_store());
        policy.min_free = 2;
        cfg.blocks = Some(policy);
        let dir = store_dir.clone();
        n.start(cfg, move || async move {
            Ok(FileLeaseStore::open(dir, plan)
                .await?
                .with_watch_interval(Duration::from_millis(50)))
        })
        .await
    };
    let mut agents = Vec::new();
    for n in &nodes {
        agents.push(start(n).await);
    }
    for a in &agents {
        wait_peers(a, 1).await;
    }
    let (first, theirs) = (
        agents[0].now().lease.unwrap().subnet,
        agents[1].now().lease.unwrap().subnet,
    );
    let (far, far_ip) = nodes[1].pod_in_mode(&cluster, "lfar", "routed").await;
    let mut pods = Vec::new();
    for i in 0..12 {
        let tag = format!("lp{i}");
        let (p, ip) = nodes[0].pod_in_mode(&cluster, &tag, "routed").await;
        pods.push((tag, p, ip));
    }
    // One own address left (< 2), no block to claim: node 2 lends one.
    let mut rx = agents[0].status();
    let loans = wait_for_async(Duration::from_secs(20), "node 2 lends an address", async || {
        let s = rx.borrow_and_update().clone();
        match s.loans.len() {
            1 => Ok(s.loans),
            _ => Err((s.loans, s.block_error)),
        }
    })
    .await;
    assert!(theirs.contains(loans[0].address), "{loans:?} in {theirs}");
    assert_eq!(loans[0].borrower, nodes[0].name());
    // The last own address, then (one more lent) a borrowed one.
    for i in 12..14 {
        let tag = format!("lp{i}");
        if i == 13 {
            wait_for_async(Duration::from_secs(20), "a second address lent", async || {
                match rx.borrow_and_update().loans.len() {
                    2 => Ok(()),
                    n => Err(n),
                }
            })
            .await;
        }
        let (p, ip) = nodes[0].pod_in_mode(&cluster, &tag, "routed").await;
        pods.push((tag, p, ip));
    }
    assert!(first.contains(pods[12].2.into()), "{:?}", pods[12].2);
    let borrowed = pods[13].2;
    assert!(
        theirs.contains(borrowed.into()),
        "pod 13's {borrowed} is borrowed from {theirs}"
    );
    let file = SubnetFile::read(&nodes[0].subnet_file()).unwrap();
    assert_eq!(file.borrowed.len(), 2, "{file:?}");
    // Node 2 holds the lent addresses in its store (none of its pods gets them) and routes the
    // borrowed one to node 1 by its /32.
    let lent_held = Store::open(&nodes[1].ipam_store(), StoreOptions::default())
        .unwrap()
        .held_addresses()
        .unwrap();
    assert!(lent_held.contains(&borrowed.into()), "{lent_held:?}");
    wait_for(Duration::from_secs(20), "node 2 routes the /32 to node 1", || {
        let r = bird_routes(&nodes[1].node);
        match r.contains(&format!("{borrowed} via {} dev eth0", nodes[0].node.ip)) {
            true => Ok(()),
            false => Err(r),
        }
    });
    let far_name = far.name().unwrap().to_string();
    assert!(
        ping(&far_name, &borrowed.to_string()),
        "node 2's pod {far_ip} reaches {borrowed}"
    );
    assert!(ping(pods[13].1.name().unwrap(), &far_ip.to_string()), "and back");

    // With a pod on one borrowed address, node 1 has 1 free: it asks for a third (2 free).
    let mut rl = agents[1].status();
    wait_for_async(Duration::from_secs(20), "a third address lent", async || {
        match rl.borrow_and_update().loans.len() {
            3 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    // The lender restarts: it takes its loans back from its lease (nothing lent twice, nothing
    // leaked), and the borrower keeps all three.
    agents.remove(1).stop().await.expect("clean stop");
    agents.insert(1, start(&nodes[1]).await);
    rl = agents[1].status();
    wait_for_async(
        Duration::from_secs(20),
        "the restarted lender lists its loans",
        async || {
            let s = rl.borrow_and_update().clone();
            match s.loans.len() {
                3 => Ok(()),
                _ => Err(s.loans),
            }
        },
    )
    .await;
    assert_eq!(agents[0].now().loans.len(), 3, "the borrower keeps all three");
    let held_now = Store::open(&nodes[1].ipam_store(), StoreOptions::default())
        .unwrap()
        .held_addresses()
        .unwrap();
    assert_eq!(
        held_now.len(),
        4,
        "the pod's address and three loans, no more: {held_now:?}"
    );
    assert!(ping(&far_name, &borrowed.to_string()), "still reachable");

    // Pods leave: node 1 has room again and gives the addresses back.
    for (tag, p, _) in pods.drain(7..) {
        nodes[0].remove_pod(&p, &tag, "routed").await;
    }
    wait_for_async(Duration::from_secs(20), "the loans returned", async || {
        let s = rx.borrow_and_update().clone();
        match s.loans.is_empty() {
            true => Ok(()),
            false => Err(s.loans),
        }
    })
    .await;
    let mut rx2 = agents[1].status();
    wait_for_async(Duration::from_secs(20), "node 2's loans released", async || {
        let s = rx2.borrow_and_update().clone();
        match s.loans.is_empty() {
            true => Ok(()),
            false => Err(s.loans),
        }
    })
    .await;
    let held = Store::open(&nodes[1].ipam_store(), StoreOptions::default())
        .unwrap()
        .held_addresses()
        .unwrap();
    assert_eq!(
        held,
        [std::net::IpAddr::from(far_ip)],
        "only node 2's own pod holds an address"
    );
    assert!(SubnetFile::read(&nodes[0].subnet_file()).unwrap().borrowed.is_empty());
    wait_for(Duration::from_secs(20), "the /32 withdrawn", || {
        let r = bird_routes(&nodes[1].node);
        match r.contains(&borrowed.to_string()) {
            true => Err(r),
            false => Ok(()),
        }
    });

    // Node 1 borrows again, then leaves the cluster for good (its agent stops, its lease is
    // released): node 2 releases what it lent it.
    for i in 20..25 {
        let tag = format!("lp{i}");
        let (p, ip) = nodes[0].pod_in_mode(&cluster, &tag, "routed").await;
        pods.push((tag, p, ip));
    }
    wait_for_async(Duration::from_secs(20), "node 2 lends again", async || {
        match rx2.borrow_and_update().loans.len() {
            0 => Err(0),
            n => Ok(n),
        }
    })
    .await;
    let gone = agents.remove(0);
    gone.stop().await.expect("clean stop");
    let store = FileLeaseStore::open(&store_dir, plan).await.unwrap();
    use netkit_core::ipam::lease::LeaseStore;
    for l in store
        .list()
        .await
        .unwrap()
        .iter()
        .filter(|l| l.node() == nodes[0].name())
    {
        store.release(l).await.unwrap();
    }
    wait_for_async(
        Duration::from_secs(20),
        "node 2 releases its loans to the node gone",
        async || {
            let s = rx2.borrow_and_update().clone();
            match s.loans.is_empty() {
                true => Ok(()),
                false => Err(s.loans),
            }
        },
    )
    .await;
    let held = Store::open(&nodes[1].ipam_store(), StoreOptions::default())
        .unwrap()
        .held_addresses()
        .unwrap();
    assert_eq!(
        held,
        [std::net::IpAddr::from(far_ip)],
        "the loans are released in node 2's store"
    );
    for a in agents {
        a.stop().await.expect("clean stop");
    }
}

/// Borrowing among three nodes, the paths a two-node pool cannot show: the first lender asked
/// has nothing to spare, so after 3 s the borrower asks the next; then that lender leaves, and
/// the node that claims its block afterwards claims the addresses the borrower still uses
/// (lent to it) before any pod of its own gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loans_pass_an_unwilling_lender_and_survive_the_lenders_departure() {
    use netkit_core::ipam::lease::{FileLeaseStore, LeaseStore, SubnetPlan};
    use netkit_core::ipam::{Store, StoreOptions};
    use netkit_core::overlay::{BackendConfig, BgpBackendConfig, BlockPolicy};
    use netkit_test_support::overlay::{wait_peers, ClusterNode};
    use netkit_test_support::wait_for_async;
    if !Path::new(BIRD).exists() {
        report_skip(
            "overlay_bird::borrowing_three",
            "no /usr/sbin/bird (apt-get install bird2)",
        );
        return;
    }
    let cluster = Cluster::new("ol3", 1);
    let store_dir = cluster.dir().join("leases");
    // Four /28 blocks: one each, one spare (claimed by a first, later by b).
    let plan = SubnetPlan::new("10.254.0.0/26".parse().unwrap(), 28).unwrap();
    let nodes: Vec<ClusterNode> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, t)| ClusterNode::new(&cluster, &format!("t{t}"), 0, i as u8 + 1))
        .collect();
    let mut agents = Vec::new();
    for n in &nodes {
        let backend = BackendConfig::Bgp(BgpBackendConfig {
            dir: n.dir.join("bird"),
            hold_time: 3,
            ..Default::default()
        });
        let mut cfg = n.config(backend, Duration::from_secs(3600));
        let mut policy = BlockPolicy::new(n.ipam_store());
        policy.min_free = 2;
        cfg.blocks = Some(policy);
        let dir = store_dir.clone();
        agents.push(
            n.start(cfg, move || async move {
                Ok(FileLeaseStore::open(dir, plan)
                    .await?
                    .with_watch_interval(Duration::from_millis(50)))
            })
            .await,
        );
    }
    for a in &agents {
        wait_peers(a, 2).await;
    }
    let attach = async |n: usize, tags: std::ops::Range<usize>| {
        let mut v = Vec::new();
        for k in tags {
            v.push(
                nodes[n]
                    .pod_in_mode(&cluster, &format!("{}{k}", ["a", "b", "c"][n]), "routed")
                    .await,
            );
        }
        v
    };
    // b keeps only 3 free (< 2 × min_free): it has nothing to lend.
    let _b_pods = attach(1, 0..10).await;
    // a fills its block and the spare one (13 + 13 - 1), then needs more.
    let _a_pods = attach(0, 0..25).await;
    let mut ra = agents[0].status();
    let loans = wait_for_async(Duration::from_secs(30), "c lends, after b did not", async || {
        let s = ra.borrow_and_update().clone();
        match s.loans.first() {
            Some(l) if l.lender == nodes[2].name() => Ok(s.loans),
            _ => Err((s.loans, s.blocks.len())),
        }
    })
    .await;
    let c_block = agents[2].now().lease.unwrap().subnet;
    assert!(
        loans.iter().all(|l| c_block.contains(l.address)),
        "{loans:?} from c's {c_block}"
    );
    // a's last own address goes to a pod, then (one more lent) a borrowed one, so a uses it.
    let _last_own = attach(0, 25..26).await;
    wait_for_async(Duration::from_secs(30), "a second address lent", async || {
        match ra.borrow_and_update().loans.len() {
            2 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    let used = attach(0, 26..27).await;
    let borrowed = used[0].1;
    assert!(c_block.contains(borrowed.into()), "{borrowed} from {c_block}");

    // c leaves for good: its lease released, its block free again. b fills up and claims it:
    // it claims a's borrowed address first (lent to a), so no pod of b's gets it.
    let c = agents.remove(2);
    c.stop().await.expect("clean stop");
    let store = FileLeaseStore::open(&store_dir, plan).await.unwrap();
    for l in store
        .list()
        .await
        .unwrap()
        .iter()
        .filter(|l| l.node() == nodes[2].name())
    {
        store.release(l).await.unwrap();
    }
    let mut rb = agents[1].status();
    let _more_b = attach(1, 10..14).await;
    wait_for_async(
        Duration::from_secs(30),
        "b claims c's old block and lends a's address to a",
        async || {
            let s = rb.borrow_and_update().clone();
            let adopted = s
                .loans
                .iter()
                .any(|l| l.address == std::net::IpAddr::from(borrowed) && l.borrower == nodes[0].name());
            match (s.blocks.iter().any(|b| b.subnet == c_block), adopted) {
                (true, true) => Ok(()),
                _ => Err((s.blocks, s.loans)),
            }
        },
    )
    .await;
    let held = Store::open(&nodes[1].ipam_store(), StoreOptions::default())
        .unwrap()
        .held_addresses()
        .unwrap();
    assert!(
        held.contains(&borrowed.into()),
        "b holds a's address as a loan: {held:?}"
    );
    for a in agents {
        a.stop().await.expect("clean stop");
    }
}

/// LoadBalancer addresses announced by BGP (MetalLB's BGP mode, Calico's service address
/// advertisement): three nodes with the bgp backend peer with a router on their segment (BIRD,
/// the route reflector), a service proxy on each hands its BIRD the addresses it announces, and
/// a client on the router's other segment reaches the service through the router. `Cluster`:
/// every node announces (three paths on the router); `Local`: only the nodes with a local
/// endpoint (two), the client's address kept; no endpoint: withdrawn; an address outside the
/// configured pool: never announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_addresses_announced_by_bgp_through_a_router() {
    use std::collections::BTreeSet;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use netkit_core::overlay::bird::BirdControl;
    use netkit_core::overlay::{BackendConfig, BgpBackendConfig};
    use netkit_core::service::{
        catalog, EndpointSpec, EndpointsSpec, ExternalTrafficPolicy, ProxyConfig, ServicePort, ServiceSpec, ServiceType,
    };
    use netkit_core::store::FileObjectStore;
    use netkit_test_support::echo::{tcp_hello_from, Server};
    use netkit_test_support::overlay::{wait_peers, ClusterNode};
    use netkit_test_support::service::ProxyTask;
    if !Path::new(BIRD).exists() {
        report_skip(
            "overlay_bird::load_balancer_addresses_announced_by_bgp",
            "no /usr/sbin/bird",
        );
        return;
    }
    let cluster = Cluster::new("olbb", 2);
    let leases = cluster.dir().join("leases");
    let router = cluster.router().expect("two segments have a router");
    let nodes: Vec<ClusterNode> = (1..=3)
        .map(|i| ClusterNode::new(&cluster, &format!("b{i}"), 0, i))
        .collect();
    let mut rr = BirdConfig::new("192.168.50.254".parse().unwrap(), ASN);
    (rr.hold_time, rr.connect_retry) = (3, 1);
    for n in &nodes {
        rr.peers.push(BirdPeer {
            name: n.name().to_string(),
            ip: n.node.ip,
            asn: ASN,
            rr_client: true,
            multihop: false,
        });
    }
    let rr_dir = cluster.dir().join("rr");
    let _rr = Bird::start(router, &rr_dir, &rr).expect("the router's bird");
    let objects = FileObjectStore::open(cluster.dir().join("objects")).await.unwrap();
    let pool: ipnetwork::IpNetwork = "203.0.113.0/24".parse().unwrap();
    let (mut agents, mut proxies) = (Vec::new(), Vec::new());
    for n in &nodes {
        let backend = BackendConfig::Bgp(BgpBackendConfig {
            dir: n.dir.join("bird"),
            hold_time: 3,
            reflectors: vec!["192.168.50.254".into()],
            ..Default::default()
        });
        let (tx, rx) = tokio::sync::watch::channel(BTreeSet::new());
        let mut cfg = n.config(backend, Duration::from_secs(3600));
        cfg.announce = Some(rx);
        let dir = leases.clone();
        agents.push(
            n.start(cfg, move || async move {
                Ok(
                    netkit_core::ipam::lease::FileLeaseStore::open(dir, netkit_test_support::lease::flannel())
                        .await?
                        .with_watch_interval(Duration::from_millis(50)),
                )
            })
            .await,
        );
        let mut pc = ProxyConfig::new(n.name());
        pc.announce_bgp = Some(tx);
        pc.lb_pools = vec![pool];
        proxies.push(ProxyTask::start_with(objects.clone(), pc).await);
    }
    for a in &agents {
        wait_peers(a, 2).await;
    }
    // An endpoint pod on nodes 1 and 2 (routed mode), serving TCP 8080.
    let mut pods = Vec::new();
    let mut servers = Vec::new();
    for (i, n) in nodes.iter().take(2).enumerate() {
        let tag = format!("e{}", i + 1);
        let (ns, ip) = n.pod_in_mode(&cluster, &tag, "routed").await;
        servers.push(Server::tcp(
            &ns,
            &tag,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080),
        ));
        pods.push((ns, ip));
    }
    let client = cluster.node("cl", 1, 200);
    let ext = Ipv4Addr::new(203, 0, 113, 10);
    let stray = Ipv4Addr::new(198, 51, 100, 10);
    let mut spec = ServiceSpec::new(
        IpAddr::V4(Ipv4Addr::new(10, 96, 0, 30)),
        vec![ServicePort::new(80).target_port(8080)],
    );
    spec.kind = ServiceType::LoadBalancer;
    spec.external_ips = vec![IpAddr::V4(ext), IpAddr::V4(stray)];
    catalog::put_service(&objects, "default/lb", &spec).await.unwrap();
    let endpoints = EndpointsSpec {
        endpoints: (0..2)
            .map(|i| EndpointSpec::new(IpAddr::V4(pods[i].1), nodes[i].name()))
            .collect(),
    };
    catalog::put_endpoints(&objects, "default/lb", &endpoints)
        .await
        .unwrap();

    // The router's paths to an address: the next hops BIRD learned.
    let rr_control = BirdControl::new("router", &rr_dir);
    let paths = |ip: Ipv4Addr| -> BTreeSet<String> {
        let out = std::process::Command::new(netkit_core::overlay::bird::BIRDC)
            .arg("-s")
            .arg(rr_control.socket())
            .args(["show", "route", &format!("{ip}/32")])
            .output()
            .expect("birdc");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with("192.168.50."))
            .map(str::to_string)
            .collect()
    };
    let node_ips =
        |which: &[usize]| -> BTreeSet<String> { which.iter().map(|i| nodes[*i].node.ip.to_string()).collect() };
    // Cluster: every node announces; the client reaches the service through the router.
    wait_for(
        Duration::from_secs(30),
        "three paths to the address on the router",
        || {
            let p = paths(ext);
            (p == node_ips(&[0, 1, 2])).then_some(()).ok_or(p)
        },
    );
    let out = &client.ns;
    let h = wait_for(
        Duration::from_secs(15),
        "the service from the router's other segment",
        || tcp_hello_from(out, SocketAddr::new(IpAddr::V4(ext), 80)),
    );
    assert!(["e1", "e2"].contains(&h.name.as_str()), "{h:?}");
    assert_eq!(paths(stray), BTreeSet::new(), "outside the pool: never announced");
    assert!(
        proxies[0].status().outside_pools.contains(&IpAddr::V4(stray)),
        "{:?}",
        proxies[0].status()
    );
    // Local: node 3 (no endpoint) withdraws; the endpoints see the client's own address.
    spec.external_traffic_policy = ExternalTrafficPolicy::Local;
    catalog::put_service(&objects, "default/lb", &spec).await.unwrap();
    wait_for(Duration::from_secs(30), "node 3's path withdrawn", || {
        let p = paths(ext);
        (p == node_ips(&[0, 1])).then_some(()).ok_or(p)
    });
    // (Each node's proxy applies the change on its own: poll until the node the router picked
    // has it.)
    wait_for(Duration::from_secs(15), "Local to keep the client's address", || {
        let h = tcp_hello_from(out, SocketAddr::new(IpAddr::V4(ext), 80))?;
        (h.peer.ip() == IpAddr::V4(client.ip))
            .then_some(())
            .ok_or(format!("{h:?}"))
    });
    // No endpoints: withdrawn everywhere.
    catalog::put_endpoints(&objects, "default/lb", &EndpointsSpec::default())
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "the address withdrawn", || {
        let p = paths(ext);
        p.is_empty().then_some(()).ok_or(p)
    });
    for p in proxies {
        p.stop().await;
    }
    for a in agents {
        a.stop().await.expect("clean stop");
    }
    drop(servers);
}
