//! The overlay agent on a simulated cluster (test-support's `cluster` and `overlay`): nodes are
//! namespaces on an underlay bridge in a lab namespace, each with its own agent (in this
//! process, on a thread inside the node's namespace) and a file lease store they share; pods are
//! namespaces attached by netkit's attach code (what netkit-cni runs) inside the node's
//! namespace, addressed from the agent's subnet file. Real packets: ping, TCP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use netkit_core::ipam::SubnetFile;
use netkit_core::overlay::{BackendConfig, PeerMode};
use netkit_core::{NetNs, NetNsGuard};
use netkit_test_support::cluster::Cluster;
use netkit_test_support::cmd::bridge;
use netkit_test_support::echo::{tcp_hello_from, Server};
use netkit_test_support::overlay::{backend, reachability, wait_peers, ClusterNode};
use netkit_test_support::{ip, ping, wait_for_async};

/// A TCP connection from `from` to a server in `to`: the server sees `from`'s own address.
fn no_nat(from: &NetNsGuard, from_ip: Ipv4Addr, to: &NetNsGuard, to_ip: Ipv4Addr, port: u16) {
    let _server = Server::tcp(to, "pod", SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    let hello = tcp_hello_from(from, SocketAddr::new(IpAddr::V4(to_ip), port)).expect("TCP across the overlay");
    assert_eq!(
        hello.peer.ip(),
        IpAddr::V4(from_ip),
        "the receiver sees the pod's own address"
    );
}

fn vxlan() -> BackendConfig {
    backend("vxlan").expect("a backend name")
}

const LONG: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_cluster_reaches_repairs_grows_and_forgets() {
    let cluster = Cluster::new("ovx", 1);
    let store = cluster.dir().join("leases");
    let nodes: Vec<ClusterNode> = (1..=3)
        .map(|i| ClusterNode::new(&cluster, &format!("n{i}"), 0, i as u8))
        .collect();
    let mut agents = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        // Node 3's lease is short: it is stopped below and its lease must expire.
        let ttl = if i == 2 { Duration::from_secs(3) } else { LONG };
        agents.push(n.start_file(&store, vxlan(), ttl).await);
    }
    for a in &agents {
        let s = wait_peers(a, 2).await;
        assert!(s.peers.iter().all(|p| p.mode == PeerMode::Vxlan), "{s:?}");
        assert_eq!(s.mtu, 1450);
    }
    let file = SubnetFile::read(&nodes[0].subnet_file()).unwrap();
    assert_eq!(file.mtu, 1450);
    assert_eq!(Some(file.subnet.unwrap()), agents[0].now().lease.map(|l| l.subnet));
    let mut pods = Vec::new();
    for n in &nodes {
        for k in 0..2 {
            pods.push(
                n.pod(&cluster, &format!("{}p{k}", n.name().rsplit('-').next().unwrap()))
                    .await,
            );
        }
    }
    let view: Vec<(&NetNsGuard, Ipv4Addr)> = pods.iter().map(|(p, ip)| (p, *ip)).collect();
    let all: Vec<&ClusterNode> = nodes.iter().collect();
    assert_eq!(reachability(&view, &all), Vec::<String>::new());
    no_nat(&pods[0].0, pods[0].1, &pods[4].0, pods[4].1, 7001);
    // The pods' MTU is the subnet file's.
    let eth0 = ip(&["-n", pods[0].0.name().unwrap(), "-j", "link", "show", "eth0"]);
    assert!(eth0.contains("\"mtu\":1450"), "{eth0}");

    // Drift: a route and an FDB entry deleted by hand come back.
    let n1 = nodes[0].name();
    let n2_subnet = agents[1].now().lease.unwrap().subnet.to_string();
    ip(&["-n", n1, "route", "del", &n2_subnet]);
    wait_for_async(Duration::from_secs(10), "the route to be put back", async || {
        let r = ip(&["-n", n1, "route", "show", &n2_subnet]);
        if r.contains("flannel.1") {
            Ok(())
        } else {
            Err(r)
        }
    })
    .await;
    let n2_ip = nodes[1].node.ip.to_string();
    let fdb_to_n2 = || {
        netkit_test_support::cmd::bridgej(n1, &["fdb", "show", "dev", "flannel.1"])
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .find(|e| e["dst"] == n2_ip.as_str())
            .and_then(|e| e["mac"].as_str().map(str::to_string))
    };
    let mac = fdb_to_n2().expect("an FDB entry to node 2");
    bridge(&["-n", n1, "fdb", "del", &mac, "dev", "flannel.1", "dst", &n2_ip, "self"]);
    wait_for_async(
        Duration::from_secs(10),
        "the FDB entry to be put back",
        async || match fdb_to_n2() {
            Some(m) if m == mac => Ok(()),
            other => Err(other),
        },
    )
    .await;
    assert!(ping(pods[0].0.name().unwrap(), &pods[2].1.to_string()));

    // A fourth node joins: everyone reaches its pod.
    let n4 = ClusterNode::new(&cluster, "n4", 0, 4);
    let a4 = n4.start_file(&store, vxlan(), LONG).await;
    wait_peers(&a4, 3).await;
    for a in &agents {
        wait_peers(a, 3).await;
    }
    let p4 = n4.pod(&cluster, "n4p0").await;
    for (p, _) in &pods {
        assert!(
            ping(p.name().unwrap(), &p4.1.to_string()),
            "{} -> the new node's pod",
            p.name().unwrap()
        );
    }

    // Node 3 stops (its lease kept, not renewed): when it expires, the others forget it.
    let n3_subnet = agents[2].now().lease.unwrap().subnet;
    let a3 = agents.pop().unwrap();
    a3.stop().await.expect("clean stop");
    for a in agents.iter().chain([&a4]) {
        let mut rx = a.status();
        wait_for_async(Duration::from_secs(15), "node 3's lease to expire", async || {
            let s = rx.borrow_and_update().clone();
            if s.peers.iter().all(|p| p.subnet != n3_subnet) {
                Ok(())
            } else {
                Err(s)
            }
        })
        .await;
    }
    let routes = ip(&["-n", n1, "route", "show"]);
    assert!(
        !routes.contains(&n3_subnet.to_string()),
        "node 3's route is gone: {routes}"
    );
    let neigh = ip(&["-n", n1, "neigh", "show", "dev", "flannel.1"]);
    assert!(
        !neigh.contains(&n3_subnet.network().to_string()),
        "node 3's ARP entry is gone: {neigh}"
    );

    // Node 1's agent restarts under a continuous ping between node 1 and node 2: no packet
    // lost, and the new agent finds nothing to change.
    let pinger = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            pods[0].0.name().unwrap(),
            "ping",
            "-q",
            "-i",
            "0.01",
            "-c",
            "300",
        ])
        .arg(pods[2].1.to_string())
        .output();
    let restart = async {
        let a1 = agents.remove(0);
        a1.stop().await.expect("clean stop");
        let a1 = nodes[0].start_file(&store, vxlan(), LONG).await;
        let s = wait_peers(&a1, 2).await;
        (a1, s)
    };
    let (out, (a1, s)) = tokio::join!(tokio::task::spawn_blocking(move || pinger), restart);
    let out = out.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 0% packet loss"), "ping across the restart: {text}");
    assert_eq!(s.changes, 0, "a restarted agent changes nothing that is right: {s:?}");
    drop(a1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_gw_cluster_routes_via_node_addresses() {
    let cluster = Cluster::new("ohg", 1);
    let store = cluster.dir().join("leases");
    let nodes: Vec<ClusterNode> = (1..=3)
        .map(|i| ClusterNode::new(&cluster, &format!("g{i}"), 0, i as u8))
        .collect();
    let mut agents = Vec::new();
    for n in &nodes {
        agents.push(n.start_file(&store, BackendConfig::HostGw, LONG).await);
    }
    for a in &agents {
        let s = wait_peers(a, 2).await;
        assert!(s.peers.iter().all(|p| p.mode == PeerMode::Direct), "{s:?}");
        assert_eq!(s.mtu, 1500);
    }
    let mut pods = Vec::new();
    for n in &nodes {
        for k in 0..2 {
            pods.push(
                n.pod(&cluster, &format!("{}p{k}", n.name().rsplit('-').next().unwrap()))
                    .await,
            );
        }
    }
    let view: Vec<(&NetNsGuard, Ipv4Addr)> = pods.iter().map(|(p, ip)| (p, *ip)).collect();
    let all: Vec<&ClusterNode> = nodes.iter().collect();
    assert_eq!(reachability(&view, &all), Vec::<String>::new());
    no_nat(&pods[1].0, pods[1].1, &pods[5].0, pods[5].1, 7002);
    let g2_subnet = agents[1].now().lease.unwrap().subnet.to_string();
    let r = ip(&["-n", nodes[0].name(), "route", "show", &g2_subnet]);
    assert!(
        r.contains(&format!("via {} dev eth0 proto 78", nodes[1].node.ip)),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_segments_host_gw_reports_vxlan_and_udp_cross_direct_routing_mixes() {
    for name in ["host-gw", "vxlan", "vxlan-direct", "udp"] {
        let cluster = Cluster::new("o2s", 2);
        let store = cluster.dir().join("leases");
        let nodes = [
            ClusterNode::new(&cluster, "a1", 0, 1),
            ClusterNode::new(&cluster, "a2", 0, 2),
            ClusterNode::new(&cluster, "b1", 1, 1),
        ];
        let cfg = backend(name).expect("a backend name");
        let mut agents = Vec::new();
        for n in &nodes {
            agents.push(n.start_file(&store, cfg.clone(), LONG).await);
        }
        let mut pods = Vec::new();
        if name == "host-gw" {
            // a1 reaches a2 directly; b1 is behind the router: reported, not black-holed.
            let mut rx = agents[0].status();
            let s = wait_for_async(Duration::from_secs(20), "a1 to see both peers", async || {
                let s = rx.borrow_and_update().clone();
                if s.peers.len() == 2 {
                    Ok(s)
                } else {
                    Err(s)
                }
            })
            .await;
            let b1 = s.peers.iter().find(|p| p.node == nodes[2].name()).unwrap();
            assert_eq!(b1.mode, PeerMode::Unreachable, "{s:?}");
            assert!(b1.error.as_deref().unwrap().contains("192.168.50.254"), "{s:?}");
            let a2 = s.peers.iter().find(|p| p.node == nodes[1].name()).unwrap();
            assert_eq!(a2.mode, PeerMode::Direct);
            let routes = ip(&["-n", nodes[0].name(), "route", "show", "proto", "78"]);
            assert!(
                !routes.contains(&b1.subnet.to_string()),
                "no route to b1's pods: {routes}"
            );
            let p1 = nodes[0].pod(&cluster, "a1p").await;
            let p2 = nodes[1].pod(&cluster, "a2p").await;
            assert!(ping(p1.0.name().unwrap(), &p2.1.to_string()));
            continue;
        }
        for a in &agents {
            wait_peers(a, 2).await;
        }
        for n in &nodes {
            let tag = format!("{}p", n.name().rsplit('-').next().unwrap());
            pods.push(n.pod(&cluster, &tag).await);
        }
        let view: Vec<(&NetNsGuard, Ipv4Addr)> = pods.iter().map(|(p, ip)| (p, *ip)).collect();
        assert_eq!(reachability(&view, &[]), Vec::<String>::new(), "{name}");
        let s = agents[0].now();
        let mode = |node: &str| s.peers.iter().find(|p| p.node == node).unwrap().mode.clone();
        let (same, across) = match name {
            "vxlan" => (PeerMode::Vxlan, PeerMode::Vxlan),
            "udp" => (PeerMode::Udp, PeerMode::Udp),
            _ => (PeerMode::Direct, PeerMode::Vxlan),
        };
        assert_eq!(mode(nodes[1].name()), same, "{name}: {s:?}");
        assert_eq!(mode(nodes[2].name()), across, "{name}: across the router: {s:?}");
    }
}

/// A bulk TCP transfer from `from` to `to_ip:port` (a server in `to`): every byte arrives in
/// order (the udp backend cuts super-packets into segments and joins them back).
fn bulk_tcp(from: &NetNs, to: &NetNs, to_ip: Ipv4Addr, port: u16, bytes: usize) {
    use std::io::{Read, Write};
    let pattern = |i: usize| (i.wrapping_mul(2654435761) >> 13) as u8;
    let listener = to
        .run(move || std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
        .unwrap()
        .unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::with_capacity(bytes);
        s.read_to_end(&mut got).unwrap();
        got
    });
    let mut client = from
        .run(move || std::net::TcpStream::connect((to_ip, port)))
        .unwrap()
        .expect("connect across the overlay");
    let data: Vec<u8> = (0..bytes).map(pattern).collect();
    client.write_all(&data).unwrap();
    drop(client);
    let got = server.join().unwrap();
    assert_eq!(got.len(), bytes, "all bytes arrived");
    assert!(got == data, "the bytes arrived unchanged and in order");
}

/// `sends` UDP super-packets of 25 datagrams of 1200 bytes each (`UDP_SEGMENT`: the kernel
/// keeps each as one packet up to the udp backend's TUN device, which takes it whole with USO)
/// from `from` to `to_ip:port` (a socket in `to`); the datagrams received, each checked.
fn bulk_udp_gso(from: &NetNs, to: &NetNs, to_ip: Ipv4Addr, port: u16, sends: usize) -> usize {
    use std::os::fd::AsRawFd;
    const SEG: usize = 1200;
    let rx = to
        .run(move || std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let tx = from
        .run(|| std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
        .unwrap()
        .unwrap();
    let seg: libc::c_int = SEG as libc::c_int;
    // SAFETY: setsockopt(UDP_SEGMENT) with a live c_int on an open socket.
    let r = unsafe {
        libc::setsockopt(
            tx.as_raw_fd(),
            libc::SOL_UDP,
            103, // UDP_SEGMENT
            (&seg as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
    let mut got = 0;
    let mut buf = [0u8; 2048];
    for k in 0..sends {
        let data: Vec<u8> = (0..25 * SEG).map(|i| (i / SEG + k) as u8).collect();
        tx.send_to(&data, (to_ip, port)).unwrap();
        for _ in 0..25 {
            let Ok((n, _)) = rx.recv_from(&mut buf) else { break };
            assert_eq!(n, SEG, "a whole datagram");
            assert!(buf[..n].iter().all(|b| *b == buf[0]), "one datagram's bytes, unchanged");
            got += 1;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_cluster_offloaded_batched_and_one_packet_per_call() {
    for name in ["udp", "udp-batched", "udp-single"] {
        let cluster = Cluster::new("oudp", 1);
        let store = cluster.dir().join("leases");
        let nodes: Vec<ClusterNode> = (1..=3)
            .map(|i| ClusterNode::new(&cluster, &format!("u{i}"), 0, i as u8))
            .collect();
        let cfg = backend(name).expect("a backend name");
        let mut agents = Vec::new();
        for n in &nodes {
            agents.push(n.start_file(&store, cfg.clone(), LONG).await);
        }
        for a in &agents {
            let s = wait_peers(a, 2).await;
            assert!(s.peers.iter().all(|p| p.mode == PeerMode::Udp), "{s:?}");
            assert_eq!(s.mtu, 1472, "underlay 1500 - 28");
        }
        // The TUN device holds the route to the cluster network (proto 78).
        let r = ip(&["-n", nodes[0].name(), "route", "show", "10.244.0.0/16"]);
        assert!(r.contains("dev flannel0 proto 78"), "{r}");
        let mut pods = Vec::new();
        for n in &nodes {
            for k in 0..2 {
                pods.push(
                    n.pod(&cluster, &format!("{}p{k}", n.name().rsplit('-').next().unwrap()))
                        .await,
                );
            }
        }
        let view: Vec<(&NetNsGuard, Ipv4Addr)> = pods.iter().map(|(p, ip)| (p, *ip)).collect();
        let all: Vec<&ClusterNode> = nodes.iter().collect();
        assert_eq!(reachability(&view, &all), Vec::<String>::new(), "{name}");
        no_nat(&pods[0].0, pods[0].1, &pods[3].0, pods[3].1, 7003);
        let (a, b): (NetNs, NetNs) = ((*pods[1].0).clone(), (*pods[5].0).clone());
        let b_ip = pods[5].1;
        let (a2, b2) = (a.clone(), b.clone());
        tokio::task::spawn_blocking(move || bulk_tcp(&a, &b, b_ip, 7004, 8 << 20))
            .await
            .unwrap();
        let got = tokio::task::spawn_blocking(move || bulk_udp_gso(&a2, &b2, b_ip, 7005, 8))
            .await
            .unwrap();
        assert_eq!(got, 8 * 25, "{name}: every UDP datagram of the super-packets arrived");
        // Drift: the route to the network through the TUN device comes back.
        ip(&["-n", nodes[0].name(), "route", "del", "10.244.0.0/16"]);
        wait_for_async(Duration::from_secs(10), "the TUN route to be put back", async || {
            let r = ip(&["-n", nodes[0].name(), "route", "show", "10.244.0.0/16"]);
            if r.contains("flannel0") {
                Ok(())
            } else {
                Err(r)
            }
        })
        .await;
        assert!(ping(pods[0].0.name().unwrap(), &pods[4].1.to_string()));
        // The status (published with the repair) counts the traffic so far.
        let udp = agents[0].now().udp.expect("udp counters");
        assert!(udp.tx_packets > 0 && udp.rx_packets > 0, "{udp:?}");
        if name == "udp" {
            assert!(udp.tso_cut > 0, "TCP super-packets came from the TUN device: {udp:?}");
            if udp.uso {
                assert!(udp.uso_cut > 0, "UDP super-packets came from the TUN device: {udp:?}");
            } else {
                netkit_test_support::report_skip(
                    "overlay_agent::udp_cluster (USO half)",
                    "the TUN device refused USO (Linux before 6.2): UDP super-packets are cut by the kernel",
                );
            }
        }
    }
}

/// What the vxlan test shows about an expired lease and a restarted agent, for host-gw and udp:
/// a stopped node's lease expires and the others forget it; an agent restarted over a working
/// data path changes nothing. host-gw keeps every packet across the restart (the data path is
/// the kernel's routes); udp's data path is the agent's own threads, so packets sent while no
/// agent runs are lost (as with Flannel's udp backend) and traffic resumes with the new agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_gw_and_udp_forget_expired_nodes_and_restart_without_changes() {
    for name in ["host-gw", "udp"] {
        let cluster = Cluster::new("orx", 1);
        let store = cluster.dir().join("leases");
        let nodes: Vec<ClusterNode> = (1..=3)
            .map(|i| ClusterNode::new(&cluster, &format!("r{i}"), 0, i as u8))
            .collect();
        let cfg = backend(name).expect("a backend name");
        let mut agents = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let ttl = if i == 2 { Duration::from_secs(3) } else { LONG };
            agents.push(n.start_file(&store, cfg.clone(), ttl).await);
        }
        for a in &agents {
            wait_peers(a, 2).await;
        }
        let p1 = nodes[0].pod(&cluster, "r1p").await;
        let p2 = nodes[1].pod(&cluster, "r2p").await;
        assert!(ping(p1.0.name().unwrap(), &p2.1.to_string()), "{name}");

        let n3_subnet = agents[2].now().lease.unwrap().subnet;
        agents.pop().unwrap().stop().await.expect("clean stop");
        for a in &agents {
            let mut rx = a.status();
            wait_for_async(Duration::from_secs(15), "node 3's lease to expire", async || {
                let s = rx.borrow_and_update().clone();
                if s.peers.iter().all(|p| p.subnet != n3_subnet) {
                    Ok(())
                } else {
                    Err(s)
                }
            })
            .await;
        }
        let routes = ip(&["-n", nodes[0].name(), "route", "show", "proto", "78"]);
        assert!(!routes.contains(&n3_subnet.to_string()), "{name}: {routes}");

        let pinger = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                p1.0.name().unwrap(),
                "ping",
                "-q",
                "-i",
                "0.01",
                "-c",
                "200",
            ])
            .arg(p2.1.to_string())
            .output();
        let restart = async {
            agents.remove(0).stop().await.expect("clean stop");
            let a1 = nodes[0].start_file(&store, cfg.clone(), LONG).await;
            let s = wait_peers(&a1, 1).await;
            (a1, s)
        };
        let (out, (a1, s)) = tokio::join!(tokio::task::spawn_blocking(move || pinger), restart);
        let text = String::from_utf8_lossy(&out.unwrap().unwrap().stdout).into_owned();
        assert_eq!(
            s.changes, 0,
            "{name}: a restarted agent changes nothing that is right: {s:?}"
        );
        if name == "host-gw" {
            assert!(
                text.contains(" 0% packet loss"),
                "{name}: ping across the restart: {text}"
            );
        } else {
            assert!(
                !text.contains(" 100% packet loss"),
                "{name}: ping across the restart: {text}"
            );
        }
        assert!(
            ping(p1.0.name().unwrap(), &p2.1.to_string()),
            "{name}: after the restart"
        );
        drop(a1);
    }
}
