//! Network policy across a simulated cluster: nodes with host-gw agents, pods attached as
//! netkit-cni attaches them (bridge and routed mode), their records (node, interface, labels)
//! and the policies in a shared file object store, a policy controller per node. Real TCP and
//! UDP between pods of different nodes, each case allowed and denied.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use netkit_core::policy::catalog::{self, NamespaceRecord, PodRecord};
use netkit_core::policy::{
    ControllerConfig, ControllerStatus, NetworkPolicy, PolicyController, PolicyFirewall, PolicyOptions,
};
use netkit_core::store::FileObjectStore;
use netkit_core::{NetNs, NetNsGuard};
use netkit_test_support::cluster::Cluster;
use netkit_test_support::echo::{
    echo_connect, echo_line, tcp_hello_from, udp_client, udp_hello, LineEcho, Server, UdpServer,
};
use netkit_test_support::overlay::{backend, wait_peers, AgentTask, ClusterNode};
use netkit_test_support::wait_for_async;
use serde_json::json;

const LONG: Duration = Duration::from_secs(3600);

/// A policy controller on its own task; stopped when dropped (the firewall keeps its state).
struct Controller {
    stop: tokio::sync::watch::Sender<bool>,
    status: std::sync::Arc<std::sync::Mutex<ControllerStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl Controller {
    async fn start(node: &str, store: FileObjectStore) -> Controller {
        let ns = NetNs::open(node).unwrap();
        let fw = PolicyFirewall::open(&ns, PolicyOptions::default())
            .await
            .expect("the policy firewall");
        let c = PolicyController::new(store, fw, ControllerConfig::new(node));
        let status = c.status();
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            c.run(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        });
        Controller { stop, status, task }
    }

    fn status(&self) -> ControllerStatus {
        self.status.lock().unwrap().clone()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

/// A pod: namespace, address, its servers.
struct Pod {
    ns: NetNsGuard,
    ip: Ipv4Addr,
    _servers: (Server, Server, UdpServer, LineEcho),
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

fn policy(v: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(v).expect("a NetworkPolicy")
}

/// Does a TCP connection from `from` to `to` get through (an answer), or not (nothing within
/// the client's timeout)?
fn tcp_ok(from: &Pod, to: &Pod, port: u16) -> bool {
    tcp_hello_from(&from.ns, sa(to.ip, port)).is_ok()
}

fn udp_ok(from: &Pod, to: &Pod, port: u16) -> bool {
    udp_hello(&udp_client(&from.ns, sa(to.ip, port))).is_ok()
}

/// Wait (at most 20 s) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    wait_for_async(Duration::from_secs(20), what, async || check()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_across_nodes_in_both_modes() {
    for mode in ["bridge", "routed"] {
        across_nodes(mode).await;
    }
}

/// Pods: db (ns back, app=db) on n1; web (ns front, app=web) on n2; other (ns misc, app=web)
/// on n2; dns (ns kube, app=dns) on n1.
async fn across_nodes(mode: &str) {
    let cluster = Cluster::new(&format!("pol{}", &mode[..1]), 1);
    let leases = cluster.dir().join("leases");
    let nodes: Vec<ClusterNode> = (1..=2)
        .map(|i| ClusterNode::new(&cluster, &format!("n{i}"), 0, i))
        .collect();
    let mut agents: Vec<AgentTask> = Vec::new();
    for n in &nodes {
        agents.push(n.start_file(&leases, backend("host-gw").unwrap(), LONG).await);
    }
    for a in &agents {
        wait_peers(a, 1).await;
    }
    let store = FileObjectStore::open(cluster.dir().join("objects")).await.unwrap();
    let specs = [
        ("back", "db", "db", 0usize),
        ("front", "web", "web", 1),
        ("misc", "other", "web", 1),
        ("kube", "dns", "dns", 0),
    ];
    let mut pods: BTreeMap<&str, Pod> = BTreeMap::new();
    for (ns, name, app, node) in specs {
        let n = &nodes[node];
        let (pod, ip, iface) = n.pod_attached(&cluster, name, mode).await;
        let servers = (
            Server::tcp(&pod, name, sa(Ipv4Addr::UNSPECIFIED, 8080)),
            Server::tcp(&pod, name, sa(Ipv4Addr::UNSPECIFIED, 9090)),
            UdpServer::bind(&pod, name, sa(Ipv4Addr::UNSPECIFIED, 53)),
            LineEcho::tcp(&pod, sa(Ipv4Addr::UNSPECIFIED, 7000)),
        );
        let record = PodRecord {
            ips: vec![IpAddr::V4(ip)],
            node: n.name().to_string(),
            interface: iface,
            labels: [("app".to_string(), app.to_string())].into(),
        };
        catalog::put_pod(&store, &format!("{ns}/{name}"), &record)
            .await
            .unwrap();
        pods.insert(
            name,
            Pod {
                ns: pod,
                ip,
                _servers: servers,
            },
        );
    }
    catalog::put_namespace(
        &store,
        "front",
        &NamespaceRecord {
            labels: [("team".into(), "shop".into())].into(),
        },
    )
    .await
    .unwrap();
    // Objects another writer got wrong, written past the catalog's checks: each is left out (a
    // pod whose interface name is not one, a policy with a named port), the rest is enforced.
    use netkit_core::store::ObjectStore;
    let bad_pod = json!({"ips": ["10.244.9.9"], "node": nodes[0].name(), "interface": "../x y", "labels": {}});
    store.put("pods/misc/bad", &bad_pod).await.unwrap();
    let bad_policy = json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]});
    store.put("policies/back/named-port", &bad_policy).await.unwrap();
    // A record left behind by a pod that is gone, whose address is db's now (written before
    // db's record is written again, so db's is the newer), and a policy opening ports
    // 8000-9999 to it: the address gets db's policies only (two pods' rules for one address
    // would clash in the kernel and stop the node's enforcement).
    let stale =
        json!({"ips": [pods["db"].ip], "node": nodes[0].name(), "interface": "stale0", "labels": {"app": "old"}});
    store.put("pods/back/stale", &stale).await.unwrap();
    let db_record = store.get("pods/back/db").await.unwrap().expect("db's record");
    store.put("pods/back/db", &db_record.value).await.unwrap();
    let old_open = json!({"podSelector": {"matchLabels": {"app": "old"}}, "ingress": [{"ports": [{"port": 8000, "endPort": 9999}]}]});
    store.put("policies/back/old-open", &old_open).await.unwrap();
    let controllers = [
        Controller::start(nodes[0].name(), store.clone()).await,
        Controller::start(nodes[1].name(), store.clone()).await,
    ];
    let (db, web, other, dns) = (&pods["db"], &pods["web"], &pods["other"], &pods["dns"]);
    until("no policy: everything reaches db", || {
        (tcp_ok(web, db, 8080) && tcp_ok(other, db, 8080) && tcp_ok(web, db, 9090))
            .then_some(())
            .ok_or_else(|| format!("{:?}", controllers.iter().map(Controller::status).collect::<Vec<_>>()))
    })
    .await;
    // A connection opened now stays open through the policies below.
    let mut open = echo_connect(&web.ns, sa(db.ip, 7000)).expect("a connection to db before any policy");
    echo_line(&mut open, "hello").expect("an echo");

    // Deny all ingress to db, then allow from namespaces labelled team=shop on 8080 only.
    catalog::put_policy(
        &store,
        "back/deny",
        &policy(json!({"podSelector": {"matchLabels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    until("db isolated", || {
        (!tcp_ok(web, db, 8080))
            .then_some(())
            .ok_or("web still reaches db".into())
    })
    .await;
    assert!(!tcp_ok(other, db, 8080));
    catalog::put_policy(
        &store,
        "back/allow-shop",
        &policy(json!({
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "shop"}}}], "ports": [{"port": 8080}]}]
        })),
    )
    .await
    .unwrap();
    until("web (ns front, team=shop) allowed on 8080", || {
        tcp_ok(web, db, 8080).then_some(()).ok_or("denied".into())
    })
    .await;
    assert!(
        !tcp_ok(web, db, 9090),
        "9090 is not allowed (the stale pod's policy is not db's)"
    );
    assert!(!tcp_ok(other, db, 8080), "ns misc is not team=shop");
    for c in &controllers {
        let st = c.status();
        assert!(st.synced && st.error.is_none(), "{st:?}");
    }
    // The connection opened before the policies still flows.
    echo_line(&mut open, "still here").expect("the connection opened before the policies still flows");

    // The namespace's label changes: web loses access.
    catalog::put_namespace(&store, "front", &NamespaceRecord::default())
        .await
        .unwrap();
    until("ns front relabelled: web denied", || {
        (!tcp_ok(web, db, 8080)).then_some(()).ok_or("allowed".into())
    })
    .await;

    // Egress: web may only reach DNS-like UDP 53 on app=dns pods.
    catalog::put_policy(
        &store,
        "front/egress",
        &policy(json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {}, "namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}]
        })),
    )
    .await
    .unwrap();
    until("web: UDP 53 allowed, TCP to dns denied", || {
        (udp_ok(web, dns, 53) && !tcp_ok(web, dns, 8080))
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    assert!(tcp_ok(other, dns, 8080), "the egress policy is in ns front only");

    // Policies deleted: everything flows again.
    for id in ["back/deny", "back/allow-shop", "front/egress", "back/old-open"] {
        assert!(catalog::delete_policy(&store, id).await.unwrap());
    }
    until("no policy again", || {
        (tcp_ok(web, db, 9090) && tcp_ok(other, db, 8080) && tcp_ok(web, dns, 8080))
            .then_some(())
            .ok_or("denied".into())
    })
    .await;
    for c in &controllers {
        let st = c.status();
        assert!(st.synced && st.error.is_none() && st.applied > 0, "{st:?}");
        assert_eq!(st.policies, 0, "the named-port policy is left out: {st:?}");
    }
}
