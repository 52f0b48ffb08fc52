//! Services across a simulated cluster (test-support's `cluster`, `overlay` and `service`):
//! nodes with host-gw agents on a file lease store, pods attached as netkit-cni attaches them,
//! a service proxy per node following a shared file object store. Real TCP and UDP between the
//! pods, the nodes and a client namespace outside the cluster.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use netkit_core::service::{catalog, EndpointSpec, ExternalTrafficPolicy, ServicePort, ServiceSpec, ServiceType};
use netkit_core::store::FileObjectStore;
use netkit_core::NetNsGuard;
use netkit_test_support::cluster::Cluster;
use netkit_test_support::echo::{tcp_hello_from, udp_client, udp_hello, Hello, Server, UdpServer};
use netkit_test_support::overlay::{backend, wait_peers, AgentTask, ClusterNode};
use netkit_test_support::service::ProxyTask;
use netkit_test_support::wait_for_async;

const LONG: Duration = Duration::from_secs(3600);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

/// Three nodes with host-gw agents, a pod per node plus a client pod on node 1, each serving
/// TCP and UDP on 8080 under its tag; a client namespace outside the cluster on the segment.
struct Lab {
    nodes: Vec<ClusterNode>,
    _agents: Vec<AgentTask>,
    /// (namespace, address, tag): e1 on n1, e2 on n2, e3 on n3.
    pods: Vec<(NetNsGuard, Ipv4Addr, String)>,
    client_pod: (NetNsGuard, Ipv4Addr),
    outside: netkit_test_support::cluster::Node,
    store: FileObjectStore,
    _servers: (Vec<Server>, Vec<UdpServer>),
    _cluster: Cluster,
}

impl Lab {
    async fn new(tag: &str) -> Lab {
        let cluster = Cluster::new(tag, 1);
        let leases = cluster.dir().join("leases");
        let nodes: Vec<ClusterNode> = (1..=3)
            .map(|i| ClusterNode::new(&cluster, &format!("n{i}"), 0, i))
            .collect();
        let mut agents = Vec::new();
        for n in &nodes {
            agents.push(
                n.start_file(&leases, backend("host-gw").expect("a backend"), LONG)
                    .await,
            );
        }
        for a in &agents {
            wait_peers(a, 2).await;
        }
        let mut pods = Vec::new();
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        for (i, n) in nodes.iter().enumerate() {
            let t = format!("e{}", i + 1);
            let (ns, addr) = n.pod(&cluster, &t).await;
            tcp.push(Server::tcp(&ns, &t, sa(Ipv4Addr::UNSPECIFIED, 8080)));
            udp.push(UdpServer::bind(&ns, &t, sa(Ipv4Addr::UNSPECIFIED, 8080)));
            pods.push((ns, addr, t));
        }
        let client_pod = nodes[0].pod(&cluster, "c1").await;
        let outside = cluster.node("out", 0, 200);
        let store = FileObjectStore::open(cluster.dir().join("objects"))
            .await
            .expect("the object store");
        Lab {
            nodes,
            _agents: agents,
            pods,
            client_pod,
            outside,
            store,
            _servers: (tcp, udp),
            _cluster: cluster,
        }
    }

    async fn proxies(&self) -> Vec<ProxyTask> {
        let mut v = Vec::new();
        for n in &self.nodes {
            v.push(ProxyTask::start(n.name(), self.store.clone()).await);
        }
        v
    }

    /// Proxies that answer ARP/NDP on `eth0` for LoadBalancer addresses of their pools
    /// (`192.168.50.240/28`, `fd00:50::240/124`).
    async fn announcing_proxies(&self) -> Vec<ProxyTask> {
        let mut v = Vec::new();
        for n in &self.nodes {
            let mut config = netkit_core::service::ProxyConfig::new(n.name());
            config.announce_iface = Some("eth0".into());
            config.lb_pools = vec![
                "192.168.50.240/28".parse().unwrap(),
                "fd00:50::240/124".parse().unwrap(),
            ];
            v.push(ProxyTask::start_with(self.store.clone(), config).await);
        }
        v
    }

    /// The nodes holding `ip` on `eth0`.
    fn holders(&self, ip: Ipv4Addr) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| {
                netkit_test_support::ip(&["-n", n.name(), "-4", "addr", "show", "dev", "eth0"])
                    .contains(&format!("inet {ip}/32"))
            })
            .map(|n| n.name().to_string())
            .collect()
    }

    fn endpoint(&self, i: usize) -> EndpointSpec {
        EndpointSpec::new(IpAddr::V4(self.pods[i].1), self.nodes[i].name())
    }
}

/// Wait (at most 15 s) until `check` passes; its value.
async fn until<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    wait_for_async(Duration::from_secs(15), what, async || check()).await
}

/// Who answers `n` TCP connections from `from` to `to`.
fn answers(from: &NetNsGuard, to: SocketAddr, n: usize) -> Result<Vec<Hello>, String> {
    (0..n).map(|_| tcp_hello_from(from, to)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_node_ports_traffic_policies_affinity_and_hairpin() {
    let lab = Lab::new("svc").await;
    let proxies = lab.proxies().await;
    let (client, client_ip) = (&lab.client_pod.0, lab.client_pod.1);
    let mut spec = ServiceSpec::new(
        IpAddr::V4(VIP),
        vec![ServicePort::new(80).named("http").target_port(8080).node_port(30080)],
    );
    spec.kind = ServiceType::NodePort;
    catalog::put_service(&lab.store, "default/web", &spec).await.unwrap();

    // No endpoints: refused at once (a reset), not a black hole.
    let refused = until("the empty service to refuse connections", || {
        match tcp_hello_from(client, sa(VIP, 80)) {
            Err(e) if e.contains("refused") => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(refused.contains("refused"), "{refused}");

    // Endpoints on nodes 2 and 3: a pod on node 1 reaches both through the cluster IP, and
    // they see the pod's own address.
    catalog::put_endpoints(
        &lab.store,
        "default/web",
        &netkit_core::service::EndpointsSpec {
            endpoints: vec![lab.endpoint(1), lab.endpoint(2)],
        },
    )
    .await
    .unwrap();
    let seen = until("the cluster IP to spread over e2 and e3", || {
        let hellos = answers(client, sa(VIP, 80), 24)?;
        let names: BTreeSet<_> = hellos.iter().map(|h| h.name.clone()).collect();
        (names == BTreeSet::from(["e2".to_string(), "e3".to_string()]))
            .then_some(hellos)
            .ok_or(format!("{names:?}"))
    })
    .await;
    assert!(
        seen.iter().all(|h| h.peer.ip() == IpAddr::V4(client_ip)),
        "the endpoints see the pod's address: {seen:?}"
    );

    // The node port on every node, from outside the cluster (Cluster policy: masqueraded).
    let out = &lab.outside.ns;
    for n in &lab.nodes {
        // Each node's proxy applies the endpoints on its own time.
        let hellos = until("the node port on every node", || answers(out, sa(n.node.ip, 30080), 8)).await;
        for h in &hellos {
            assert!(["e2", "e3"].contains(&h.name.as_str()), "{h:?}");
            assert_ne!(
                h.peer.ip(),
                IpAddr::V4(lab.outside.ip),
                "Cluster policy masquerades: {h:?}"
            );
        }
    }

    // Local policy, an endpoint on every node: each node's port goes to its own endpoint, and
    // the endpoint sees the outside client's address.
    spec.external_traffic_policy = ExternalTrafficPolicy::Local;
    catalog::put_service(&lab.store, "default/web", &spec).await.unwrap();
    catalog::add_endpoint(&lab.store, "default/web", lab.endpoint(0))
        .await
        .unwrap();
    for (i, n) in lab.nodes.iter().enumerate() {
        let want = format!("e{}", i + 1);
        let hellos = until("Local: the node's own endpoint", || {
            let h = answers(out, sa(n.node.ip, 30080), 6)?;
            h.iter()
                .all(|h| h.name == want)
                .then_some(h.clone())
                .ok_or(format!("{h:?}"))
        })
        .await;
        assert!(
            hellos.iter().all(|h| h.peer.ip() == IpAddr::V4(lab.outside.ip)),
            "Local keeps the client's address: {hellos:?}"
        );
    }
    // The cluster IP still spreads over every endpoint.
    until("the cluster IP over e1, e2 and e3", || {
        let names: BTreeSet<_> = answers(client, sa(VIP, 80), 30)?.into_iter().map(|h| h.name).collect();
        (names.len() == 3).then_some(()).ok_or(format!("{names:?}"))
    })
    .await;

    // Affinity: a client keeps its endpoint.
    spec.session_affinity = netkit_core::service::SessionAffinity::ClientIP;
    spec.session_affinity_timeout_seconds = Some(600);
    catalog::put_service(&lab.store, "default/web", &spec).await.unwrap();
    until("affinity: one endpoint for the client", || {
        let names: BTreeSet<_> = answers(client, sa(VIP, 80), 12)?.into_iter().map(|h| h.name).collect();
        (names.len() == 1).then_some(()).ok_or(format!("{names:?}"))
    })
    .await;

    // Hairpin: a pod reaches itself through its own service (masqueraded, so the reply comes
    // back through the node).
    let solo = ServiceSpec::new(
        IpAddr::V4(Ipv4Addr::new(10, 96, 0, 11)),
        vec![ServicePort::new(81).target_port(8080)],
    );
    catalog::put_service(&lab.store, "default/solo", &solo).await.unwrap();
    catalog::add_endpoint(&lab.store, "default/solo", lab.endpoint(1))
        .await
        .unwrap();
    let e2 = &lab.pods[1];
    let h = until("hairpin", || {
        tcp_hello_from(&e2.0, sa(Ipv4Addr::new(10, 96, 0, 11), 81))
    })
    .await;
    assert_eq!(h.name, "e2");
    assert_ne!(h.peer.ip(), IpAddr::V4(e2.1), "hairpin traffic is masqueraded: {h:?}");

    // Deleting the service removes it from every node's firewall.
    assert!(catalog::delete_service(&lab.store, "default/web").await.unwrap());
    for p in &proxies {
        until("the service gone from the node", || {
            let st = p.status();
            (st.services == 1 && st.synced && st.failed.is_empty())
                .then_some(())
                .ok_or(format!("{st:?}"))
        })
        .await;
        let owners = netkit_core::firewall::recorded_owners(&p.ns, &Default::default())
            .await
            .unwrap();
        assert!(!owners.iter().any(|o| o == "svc/default/web"), "{owners:?}");
    }
    assert!(
        tcp_hello_from(client, sa(VIP, 80)).is_err(),
        "a deleted service answers no more"
    );
    for p in proxies {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_flow_moves_when_its_endpoint_goes_and_restarts_reconcile() {
    let lab = Lab::new("svu").await;
    let mut proxies = lab.proxies().await;
    let dns = ServiceSpec::new(
        IpAddr::V4(VIP),
        vec![ServicePort::new(53)
            .protocol(netkit_core::firewall::Protocol::Udp)
            .target_port(8080)],
    );
    catalog::put_service(&lab.store, "kube-system/dns", &dns).await.unwrap();
    catalog::put_endpoints(
        &lab.store,
        "kube-system/dns",
        &netkit_core::service::EndpointsSpec {
            endpoints: vec![lab.endpoint(1), lab.endpoint(2)],
        },
    )
    .await
    .unwrap();
    // One flow: one socket, one source port.
    let sock = udp_client(&lab.client_pod.0, sa(VIP, 53));
    let first = until("the UDP service to answer", || udp_hello(&sock)).await;
    for _ in 0..5 {
        assert_eq!(
            udp_hello(&sock).unwrap().name,
            first.name,
            "a flow sticks to its endpoint"
        );
    }
    // Its endpoint goes: the flow's next datagrams reach the other one (its conntrack entry
    // was dropped; without that they would go on to the gone endpoint for 30 s or more).
    let gone = lab.pods.iter().position(|p| p.2 == first.name).unwrap();
    catalog::remove_endpoint(&lab.store, "kube-system/dns", IpAddr::V4(lab.pods[gone].1))
        .await
        .unwrap();
    let moved = until("the flow to move to the live endpoint", || {
        let h = udp_hello(&sock)?;
        (h.name != first.name).then_some(h.clone()).ok_or(format!("{h:?}"))
    })
    .await;
    assert_ne!(moved.name, first.name);

    // The proxies stop; their rules stay: the service still answers.
    let web = ServiceSpec::new(
        IpAddr::V4(Ipv4Addr::new(10, 96, 0, 12)),
        vec![ServicePort::new(80).target_port(8080)],
    );
    catalog::put_service(&lab.store, "default/web", &web).await.unwrap();
    catalog::add_endpoint(&lab.store, "default/web", lab.endpoint(1))
        .await
        .unwrap();
    let web_addr = sa(Ipv4Addr::new(10, 96, 0, 12), 80);
    until("web on e2", || {
        tcp_hello_from(&lab.client_pod.0, web_addr)
            .map(|h| h.name)
            .and_then(|n| if n == "e2" { Ok(()) } else { Err(n) })
    })
    .await;
    for p in proxies.drain(..) {
        p.stop().await;
    }
    assert_eq!(
        tcp_hello_from(&lab.client_pod.0, web_addr).unwrap().name,
        "e2",
        "rules stay while no proxy runs"
    );
    // Changes while they are down: web's endpoint moves to e3, dns is deleted.
    catalog::put_endpoints(
        &lab.store,
        "default/web",
        &netkit_core::service::EndpointsSpec {
            endpoints: vec![lab.endpoint(2)],
        },
    )
    .await
    .unwrap();
    catalog::delete_service(&lab.store, "kube-system/dns").await.unwrap();
    // Restarted, they reconcile: web goes to e3, dns is gone from every node.
    let proxies = lab.proxies().await;
    until("web moved to e3 after the restart", || {
        let h = tcp_hello_from(&lab.client_pod.0, web_addr)?;
        (h.name == "e3").then_some(()).ok_or(h.name)
    })
    .await;
    for (p, n) in proxies.iter().zip(&lab.nodes) {
        until("the proxy in sync", || {
            let st = p.status();
            (st.synced && st.services == 1).then_some(()).ok_or(format!("{st:?}"))
        })
        .await;
        let owners = netkit_core::firewall::recorded_owners(&p.ns, &Default::default())
            .await
            .unwrap();
        assert!(!owners.iter().any(|o| o.contains("dns")), "{}: {owners:?}", n.name());
        assert!(
            owners.iter().any(|o| o == "svc/default/web"),
            "{}: {owners:?}",
            n.name()
        );
    }
    for p in proxies {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_address_is_held_by_one_node_and_moves_with_its_endpoints() {
    let lab = Lab::new("svl").await;
    let proxies = lab.announcing_proxies().await;
    let ext = Ipv4Addr::new(192, 168, 50, 240);
    let mut lb = ServiceSpec::new(
        IpAddr::V4(Ipv4Addr::new(10, 96, 0, 20)),
        vec![ServicePort::new(80).target_port(8080)],
    );
    lb.kind = ServiceType::LoadBalancer;
    lb.external_ips = vec![IpAddr::V4(ext)];
    let stored = catalog::put_service(&lab.store, "default/lb", &lb).await.unwrap();
    assert!(stored.ports[0].node_port.is_some(), "a LoadBalancer gets a node port");
    // No endpoint yet: nobody holds the address.
    assert_eq!(lab.holders(ext), Vec::<String>::new());
    catalog::put_endpoints(
        &lab.store,
        "default/lb",
        &netkit_core::service::EndpointsSpec {
            endpoints: vec![lab.endpoint(0), lab.endpoint(1)],
        },
    )
    .await
    .unwrap();
    // One node holds it, and a client outside the cluster (on the segment) reaches the service.
    let holder = until("one node to hold the address", || match lab.holders(ext).as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    })
    .await;
    let out = &lab.outside.ns;
    let h = until("the LoadBalancer address from outside", || {
        tcp_hello_from(out, sa(ext, 80))
    })
    .await;
    assert!(["e1", "e2"].contains(&h.name.as_str()), "{h:?}");
    // The holder's endpoint goes: the address moves to the node that still has one.
    let gone = lab.nodes.iter().position(|n| n.name() == holder).unwrap();
    let stays = 1 - gone;
    catalog::remove_endpoint(&lab.store, "default/lb", IpAddr::V4(lab.pods[gone].1))
        .await
        .unwrap();
    let new_holder = until("the address to move", || match lab.holders(ext).as_slice() {
        [one] if *one != holder => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    })
    .await;
    assert_eq!(new_holder, lab.nodes[stays].name());
    let want = format!("e{}", stays + 1);
    until("the service through the moved address", || {
        let h = tcp_hello_from(out, sa(ext, 80))?;
        (h.name == want).then_some(()).ok_or(h.name)
    })
    .await;
    // The status follows the kernel change (the gratuitous ARP is sent in between).
    until("the new holder's status", || {
        let st = proxies[stays].status();
        (st.announced == vec![IpAddr::V4(ext)] && st.announce_error.is_none())
            .then_some(())
            .ok_or(format!("{st:?}"))
    })
    .await;
    // Deleted: nobody holds it any more.
    catalog::delete_service(&lab.store, "default/lb").await.unwrap();
    until("the address released", || {
        let h = lab.holders(ext);
        h.is_empty().then_some(()).ok_or(format!("{h:?}"))
    })
    .await;
    for p in proxies {
        p.stop().await;
    }
}

/// IPv6 beside the lab's IPv4: `fd00:50::<host>` on every node's `eth0` and on the outside
/// client, `fd00:244:<host>::/64` on each node's bridge with a route to it on the other nodes,
/// `::10` for the node's endpoint pod and `fd00:244:1::20` for the client pod. Returns the
/// endpoint pods' addresses; their servers answer on `[addr]:8080` under the pods' tags.
fn add_ipv6(lab: &Lab) -> (Vec<Ipv6Addr>, Vec<Server>) {
    let node_ip = |i: usize| format!("fd00:50::{}", i + 1);
    let pod_net = |i: usize| format!("fd00:244:{}::", i + 1);
    let run = |ns: &str, args: &[&str]| {
        let out = netkit_test_support::in_ns(ns, args);
        assert!(
            out.status.success(),
            "{ns}: {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for (i, n) in lab.nodes.iter().enumerate() {
        let name = n.name();
        run(name, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        run(
            name,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{}/64", node_ip(i)),
                "dev",
                "eth0",
                "nodad",
            ],
        );
        run(
            name,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{}1/64", pod_net(i)),
                "dev",
                "cni0",
                "nodad",
            ],
        );
        for j in (0..lab.nodes.len()).filter(|j| *j != i) {
            run(
                name,
                &[
                    "ip",
                    "-6",
                    "route",
                    "add",
                    &format!("{}/64", pod_net(j)),
                    "via",
                    &node_ip(j),
                ],
            );
        }
    }
    let pod_ns = |ns: &NetNsGuard| ns.name().expect("a named namespace").to_string();
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for (i, (ns, _, tag)) in lab.pods.iter().enumerate() {
        let a: Ipv6Addr = format!("{}10", pod_net(i)).parse().unwrap();
        run(
            &pod_ns(ns),
            &["ip", "-6", "addr", "add", &format!("{a}/64"), "dev", "eth0", "nodad"],
        );
        run(
            &pod_ns(ns),
            &[
                "ip",
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("{}1", pod_net(i)),
            ],
        );
        servers.push(Server::tcp(ns, tag, SocketAddr::new(IpAddr::V6(a), 8080)));
        addrs.push(a);
    }
    let client = pod_ns(&lab.client_pod.0);
    run(
        &client,
        &["ip", "-6", "addr", "add", "fd00:244:1::20/64", "dev", "eth0", "nodad"],
    );
    run(
        &client,
        &["ip", "-6", "route", "add", "default", "via", "fd00:244:1::1"],
    );
    run(
        lab.outside.name(),
        &["ip", "-6", "addr", "add", "fd00:50::200/64", "dev", "eth0", "nodad"],
    );
    (addrs, servers)
}

/// The MAC of `eth0` in node `name`.
fn mac_of(name: &str) -> String {
    let link = netkit_test_support::ip(&["-n", name, "-o", "link", "show", "dev", "eth0"]);
    link.split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC in {link}"))
        .to_string()
}

/// IPv6 end to end: a cluster IP from a pod (source kept), a node port from outside, a
/// LoadBalancer address held by one node, answered by neighbour discovery, and moved with an
/// unsolicited neighbour advertisement (the outside client's neighbour entry follows at once,
/// not after its reachable time); an empty service refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_cluster_ip_node_port_and_a_load_balancer_answered_by_ndp() {
    let lab = Lab::new("sv6").await;
    let (eps, _servers) = add_ipv6(&lab);
    let client = &lab.client_pod.0;
    let client_ip: IpAddr = "fd00:244:1::20".parse().unwrap();
    until("IPv6 between pods on two nodes", || {
        netkit_test_support::ping(client.name().unwrap(), &eps[1].to_string())
            .then_some(())
            .ok_or("no answer".to_string())
    })
    .await;
    let proxies = lab.announcing_proxies().await;
    let vip: IpAddr = "fd00:96::10".parse().unwrap();
    let ext: IpAddr = "fd00:50::240".parse().unwrap();
    let mut spec = ServiceSpec::new(vip, vec![ServicePort::new(80).target_port(8080)]);
    spec.kind = ServiceType::LoadBalancer;
    let pools = ["fd00:50::240/124".parse().unwrap()];
    let stored = catalog::put_service_in_pools(&lab.store, "default/v6", &spec, &pools)
        .await
        .unwrap();
    assert_eq!(stored.external_ips, vec![ext], "the pool's first address");
    let node_port = stored.ports[0].node_port.expect("a node port");

    // No endpoints: refused, and no node holds the address.
    until("the empty IPv6 service to refuse", || {
        match tcp_hello_from(client, SocketAddr::new(vip, 80)) {
            Err(e) if e.contains("refused") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let holders = |ip: IpAddr| -> Vec<usize> {
        (0..lab.nodes.len())
            .filter(|i| {
                netkit_test_support::ip(&["-n", lab.nodes[*i].name(), "-6", "addr", "show", "dev", "eth0"])
                    .contains(&format!("inet6 {ip}/128"))
            })
            .collect()
    };
    assert_eq!(holders(ext), Vec::<usize>::new());

    let endpoint = |i: usize| EndpointSpec::new(IpAddr::V6(eps[i]), lab.nodes[i].name());
    catalog::put_endpoints(
        &lab.store,
        "default/v6",
        &netkit_core::service::EndpointsSpec {
            endpoints: vec![endpoint(0), endpoint(1)],
        },
    )
    .await
    .unwrap();
    // The cluster IP from a pod: both endpoints, which see the pod's own address.
    let seen = until("the IPv6 cluster IP to spread over e1 and e2", || {
        let hellos = answers(client, SocketAddr::new(vip, 80), 24)?;
        let names: BTreeSet<_> = hellos.iter().map(|h| h.name.clone()).collect();
        (names == BTreeSet::from(["e1".to_string(), "e2".to_string()]))
            .then_some(hellos)
            .ok_or(format!("{names:?}"))
    })
    .await;
    assert!(seen.iter().all(|h| h.peer.ip() == client_ip), "{seen:?}");
    // The node port on node 3 (no endpoint there; Cluster: masqueraded to node 3's address).
    let out = &lab.outside.ns;
    let h = until("the IPv6 node port from outside", || {
        tcp_hello_from(out, SocketAddr::new("fd00:50::3".parse().unwrap(), node_port))
    })
    .await;
    assert_eq!(h.peer.ip(), "fd00:50::3".parse::<IpAddr>().unwrap(), "{h:?}");

    // One holder; the outside client reaches the service through the address and resolved it
    // to the holder's MAC.
    let holder = until("one node to hold the IPv6 address", || match holders(ext).as_slice() {
        [one] => Ok(*one),
        other => Err(format!("{other:?}")),
    })
    .await;
    let h = until("the IPv6 LoadBalancer address from outside", || {
        tcp_hello_from(out, SocketAddr::new(ext, 80))
    })
    .await;
    assert!(["e1", "e2"].contains(&h.name.as_str()), "{h:?}");
    let neigh =
        |ip: IpAddr| netkit_test_support::ip(&["-n", lab.outside.name(), "-6", "neigh", "show", &ip.to_string()]);
    let holder_mac = mac_of(lab.nodes[holder].name());
    assert!(neigh(ext).contains(&holder_mac), "{} not {holder_mac}", neigh(ext));

    // The holder's endpoint goes: the address moves, and the outside client's neighbour entry
    // moves with it (the unsolicited advertisement overrides it).
    catalog::remove_endpoint(&lab.store, "default/v6", IpAddr::V6(eps[holder]))
        .await
        .unwrap();
    let stays = 1 - holder;
    until("the IPv6 address to move", || match holders(ext).as_slice() {
        [one] if *one == stays => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    let new_mac = mac_of(lab.nodes[stays].name());
    until("the outside neighbour entry to follow", || {
        let n = neigh(ext);
        n.contains(&new_mac).then_some(()).ok_or(n)
    })
    .await;
    let want = format!("e{}", stays + 1);
    until("the service through the moved IPv6 address", || {
        let h = tcp_hello_from(out, SocketAddr::new(ext, 80))?;
        (h.name == want).then_some(()).ok_or(h.name)
    })
    .await;
    catalog::delete_service(&lab.store, "default/v6").await.unwrap();
    until("the IPv6 address released", || {
        let h = holders(ext);
        h.is_empty().then_some(()).ok_or(format!("{h:?}"))
    })
    .await;
    for p in proxies {
        p.stop().await;
    }
}

/// The catalog's claims on a file store: LoadBalancer addresses from pools (the first free,
/// skipping the IPv4 network address, never one address to two services), a named one held by
/// another service refused, a full pool refused, addresses and node ports released with the
/// service (and a released address handed out again).
#[tokio::test]
async fn load_balancer_addresses_come_from_pools_and_are_claimed_once() {
    use netkit_core::service::ServiceError;
    let dir = netkit_test_support::tempdir("svc-pools");
    let store = FileObjectStore::open(dir.path()).await.unwrap();
    let lb = |cluster: &str| {
        let mut s = ServiceSpec::new(cluster.parse().unwrap(), vec![ServicePort::new(80)]);
        s.kind = ServiceType::LoadBalancer;
        s
    };
    let pools = ["192.0.2.0/30".parse().unwrap(), "fd00:50::/127".parse().unwrap()];
    let a = catalog::put_service_in_pools(&store, "default/a", &lb("10.96.0.1"), &pools)
        .await
        .unwrap();
    let b = catalog::put_service_in_pools(&store, "default/b", &lb("10.96.0.2"), &pools)
        .await
        .unwrap();
    assert_eq!(a.external_ips, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(b.external_ips, vec!["192.0.2.2".parse::<IpAddr>().unwrap()]);
    // Written again (same address kept, not a second one).
    let a2 = catalog::put_service_in_pools(&store, "default/a", &a, &pools)
        .await
        .unwrap();
    assert_eq!(a2.external_ips, a.external_ips);
    // The IPv4 pool is full (.0 and .3 are its network and broadcast addresses).
    let full = catalog::put_service_in_pools(&store, "default/c", &lb("10.96.0.3"), &pools).await;
    assert!(matches!(full, Err(ServiceError::PoolExhausted { .. })), "{full:?}");
    assert!(catalog::get_service(&store, "default/c").await.unwrap().is_none());
    // An IPv6 service gets the IPv6 pool's address.
    let v6 = catalog::put_service_in_pools(&store, "default/v6", &lb("fd00:96::1"), &pools)
        .await
        .unwrap();
    assert_eq!(v6.external_ips, vec!["fd00:50::".parse::<IpAddr>().unwrap()]);
    // Naming another service's address is refused, naming a free one claims it.
    let mut named = lb("10.96.0.4");
    named.external_ips = vec!["192.0.2.2".parse().unwrap()];
    let taken = catalog::put_service(&store, "default/d", &named).await;
    assert!(
        matches!(&taken, Err(ServiceError::AddressTaken { holder, .. }) if holder == "default/b"),
        "{taken:?}"
    );
    named.external_ips = vec!["198.51.100.7".parse().unwrap()];
    catalog::put_service(&store, "default/d", &named).await.unwrap();
    let mut thief = lb("10.96.0.5");
    thief.external_ips = named.external_ips.clone();
    assert!(catalog::put_service(&store, "default/e", &thief).await.is_err());
    // Deleting b gives its address (and node port) back: the next service gets it.
    let b_port = b.ports[0].node_port.unwrap();
    assert!(catalog::delete_service(&store, "default/b").await.unwrap());
    let c = catalog::put_service_in_pools(&store, "default/c", &lb("10.96.0.3"), &pools)
        .await
        .unwrap();
    assert_eq!(c.external_ips, b.external_ips);
    assert_eq!(c.ports[0].node_port, Some(b_port), "the lowest free node port: b's");
    // A ClusterIP service's external IPs are not claimed (Kubernetes' externalIPs).
    let mut plain = ServiceSpec::new("10.96.0.9".parse().unwrap(), vec![ServicePort::new(80)]);
    plain.external_ips = vec!["192.0.2.1".parse().unwrap()];
    catalog::put_service(&store, "default/g", &plain).await.unwrap();
}
