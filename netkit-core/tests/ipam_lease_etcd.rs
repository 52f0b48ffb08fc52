//! The etcd lease store against a real etcd: each test starts its own `etcd` server on
//! 127.0.0.1 with a temporary data directory (test-support's `etcd`), and kills it when the
//! test ends (even on panic). A missing `/usr/bin/etcd` fails the tests (CI installs Debian's
//! etcd-server).
#![cfg(feature = "etcd")]

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use netkit_core::ipam::lease::{
    EtcdLeaseStore, Lease, LeaseError, LeaseEvent, LeaseRequest, LeaseStore, LeaseWatch, SubnetPlan,
};
use netkit_test_support::etcd::Etcd;
use netkit_test_support::lease::{self, apply, flannel, four_blocks, open_view, renew_until_expired, req, view_diff};
use netkit_test_support::lit::net;
use netkit_test_support::wait_until_async;
use serde_json::json;

// ---------------------------------------------------------------- an etcd of our own

/// test-support's etcd on free loopback ports, with the clients these tests use.
struct EtcdServer {
    etcd: Etcd,
    endpoint: String,
}

impl EtcdServer {
    /// Start etcd and wait until it answers.
    async fn start() -> Self {
        let etcd = tokio::task::spawn_blocking(Etcd::start).await.expect("start etcd");
        let endpoint = etcd.endpoint();
        Self { etcd, endpoint }
    }

    fn log(&self) -> String {
        self.etcd.log()
    }

    async fn store(&self, plan: SubnetPlan) -> EtcdLeaseStore {
        EtcdLeaseStore::connect(&[&self.endpoint], EtcdLeaseStore::DEFAULT_PREFIX, plan)
            .await
            .unwrap_or_else(|e| panic!("connect to our etcd: {e}\netcd log:\n{}", self.log()))
    }

    /// A raw client, to write what a store would not.
    async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([&self.endpoint], None).await.unwrap()
    }
}

// ---------------------------------------------------------------- helpers

/// Poll `list` until `pred` holds for it, for at most 20 s (etcd checks expiry every 500 ms).
async fn wait_list(store: &EtcdLeaseStore, what: &str, pred: impl Fn(&[Lease]) -> bool) -> Vec<Lease> {
    lease::wait_list(store, Duration::from_secs(20), what, pred).await
}

/// The next event, within 20 s (through the watch's `Stream`; the file store's tests use
/// `next_event`).
async fn next_event(watch: &mut LeaseWatch) -> LeaseEvent {
    tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("no lease event within 20 s")
        .expect("watch stream ended")
        .expect("watch error")
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_never_share_a_subnet() {
    let etcd = EtcdServer::start().await;
    let (s1, s2) = (etcd.store(flannel()).await, etcd.store(flannel()).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        for (name, store) in [("one", &s1), ("two", &s2)] {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.acquire(&req(&format!("{name}-{i}"))).await
            }));
        }
    }
    // The same node asking through both stores at once gets one subnet, not two.
    let twins: Vec<_> = [&s1, &s2]
        .into_iter()
        .map(|s| {
            let s = s.clone();
            tokio::spawn(async move { s.acquire(&req("twin")).await })
        })
        .collect();

    let mut leases = Vec::new();
    for t in tasks {
        leases.push(t.await.unwrap().expect("acquire"));
    }
    let twins: Vec<Lease> = futures::future::join_all(twins)
        .await
        .into_iter()
        .map(|t| t.unwrap().expect("twin acquire"))
        .collect();
    assert_eq!(twins[0].subnet, twins[1].subnet, "one node, one subnet");
    leases.push(twins[0].clone());

    let subnets: HashSet<_> = leases.iter().map(|l| l.subnet).collect();
    assert_eq!(subnets.len(), 41, "a subnet was leased twice: {leases:?}");
    let listed = s1.list().await.unwrap();
    assert_eq!(listed.len(), 41);
    assert_eq!(listed.iter().map(|l| l.subnet).collect::<HashSet<_>>(), subnets);
    assert_eq!(s2.list().await.unwrap(), listed, "both stores see the same leases");
    assert!(
        listed.windows(2).all(|w| w[0].subnet < w[1].subnet),
        "ordered by subnet"
    );
}

#[tokio::test]
async fn acquire_is_idempotent_preferred_and_listed() {
    let etcd = EtcdServer::start().await;
    let store = etcd.store(flannel()).await;
    let a = store.acquire(&req("a")).await.unwrap();
    assert_eq!(a.subnet, net("10.244.0.0/24"));
    assert_eq!(a.ttl, Duration::from_secs(3600));
    let b = store.acquire(&req("b").preferred(net("10.244.42.0/24"))).await.unwrap();
    assert_eq!(b.subnet, net("10.244.42.0/24"));

    let changed = LeaseRequest::new("a", "198.51.100.7".parse().unwrap(), "host-gw")
        .backend_data(json!({"VtepMAC": "52:54:00:00:00:99"}))
        .ttl(Duration::from_secs(7200));
    let again = store.acquire(&changed).await.unwrap();
    assert_eq!(again.subnet, a.subnet, "a node with a live lease keeps its subnet");
    assert_eq!(again.meta, changed.meta);
    assert_eq!(again.ttl, Duration::from_secs(7200));

    assert_eq!(store.list().await.unwrap(), vec![again, b]);
    let err = store
        .acquire(&req("c").preferred(net("10.9.0.0/24")))
        .await
        .unwrap_err();
    assert!(matches!(err, LeaseError::SubnetNotInPlan { .. }), "{err}");
}

#[tokio::test]
async fn a_node_holds_one_lease_per_slot() {
    let etcd = EtcdServer::start().await;
    lease::check_slots(&etcd.store(four_blocks()).await).await;
}

#[tokio::test]
async fn ttl_expiry_frees_the_subnet() {
    let etcd = EtcdServer::start().await;
    let store = etcd.store(four_blocks()).await;
    let a = store.acquire(&req("a").ttl(Duration::from_secs(1))).await.unwrap();
    assert_eq!(a.ttl, Duration::from_secs(1));
    for n in ["b", "c", "d"] {
        store.acquire(&req(n)).await.unwrap();
    }
    let err = store.acquire(&req("e")).await.unwrap_err();
    assert!(err.is_exhausted(), "{err:?}");
    assert!(err.to_string().contains("10.0.0.0/24"), "{err}");

    wait_list(&store, "a's lease to expire", |l| l.iter().all(|l| l.node() != "a")).await;
    let e = store.acquire(&req("e")).await.unwrap();
    assert_eq!(e.subnet, a.subnet, "the expired subnet is free again");
    let err = store.renew(&a).await.unwrap_err();
    assert!(
        matches!(&err, LeaseError::LeaseLost { holder: Some(h), .. } if h == "e"),
        "{err:?}"
    );
}

#[tokio::test]
async fn renewal_keeps_the_lease_alive_until_it_stops() {
    let etcd = EtcdServer::start().await;
    let store = etcd.store(flannel()).await;
    let mut w = store.watch().await.unwrap();
    let first = store.acquire(&req("a").ttl(Duration::from_secs(1))).await.unwrap();
    // A witness taken after a's lease with 3 s to live: etcd expiring it means a's lease, renewed
    // all along, has outlived its 1 s TTL by 2 s or more.
    let witness = store
        .acquire(&req("witness").ttl(Duration::from_secs(3)))
        .await
        .unwrap();
    let every = Duration::from_millis(250);
    let current = renew_until_expired(&store, &mut w, first.clone(), &witness, every, Duration::from_secs(20)).await;
    assert_eq!(current.subnet, first.subnet);
    let current = store.renew(&current).await.unwrap();
    assert!(current.expires_at > first.expires_at + Duration::from_secs(2));
    assert_eq!(
        store.list().await.unwrap(),
        vec![current.clone()],
        "alive after the 3 s witness expired, with a 1 s TTL"
    );

    // Renewals stop: the lease expires.
    loop {
        match next_event(&mut w).await {
            LeaseEvent::Removed(l) => {
                assert_eq!(l.node(), "a", "{l:?}");
                break;
            }
            LeaseEvent::Changed(l) => assert_eq!(l.node(), "a", "{l:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(store.list().await.unwrap().is_empty());
    let err = store.renew(&current).await.unwrap_err();
    assert!(matches!(err, LeaseError::LeaseLost { holder: None, .. }), "{err:?}");
    assert!(
        err.to_string().contains("lease of 10.244.0.0/24 by node a is lost"),
        "{err}"
    );
}

#[tokio::test]
async fn release_is_idempotent_and_never_touches_another_node() {
    let etcd = EtcdServer::start().await;
    let store = etcd.store(flannel()).await;
    let a = store.acquire(&req("a")).await.unwrap();
    store.release(&a).await.unwrap();
    store.release(&a).await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
    let b = store.acquire(&req("b")).await.unwrap();
    assert_eq!(b.subnet, a.subnet, "released subnet is free");
    store.release(&a).await.unwrap();
    assert_eq!(store.list().await.unwrap(), vec![b.clone()]);
    // The node key went with the subnet key: a gets a fresh subnet.
    assert_eq!(store.acquire(&req("a")).await.unwrap().subnet, net("10.244.1.0/24"));
}

#[tokio::test]
async fn watch_sees_add_change_release_and_expiry() {
    let etcd = EtcdServer::start().await;
    let store = etcd.store(flannel()).await;
    let before = store.acquire(&req("before")).await.unwrap();
    let mut w = store.watch().await.unwrap();
    assert_eq!(w.snapshot(), [before], "the watch starts from the live leases");

    let a = store.acquire(&req("a")).await.unwrap();
    assert_eq!(next_event(&mut w).await, LeaseEvent::Added(a.clone()));
    let a = store.renew(&a).await.unwrap();
    assert_eq!(next_event(&mut w).await, LeaseEvent::Changed(a.clone()));
    let a = store
        .acquire(&req("a").backend_data(json!({"VtepMAC": "52:54:00:00:00:02"})))
        .await
        .unwrap();
    assert_eq!(next_event(&mut w).await, LeaseEvent::Changed(a.clone()));

    // Another client's changes are seen too.
    let other = etcd.store(flannel()).await;
    // Long enough that b cannot expire before a's release below on a loaded machine.
    let b = other.acquire(&req("b").ttl(Duration::from_secs(4))).await.unwrap();
    assert_eq!(next_event(&mut w).await, LeaseEvent::Added(b.clone()));

    store.release(&a).await.unwrap();
    assert_eq!(next_event(&mut w).await, LeaseEvent::Removed(a));
    assert_eq!(next_event(&mut w).await, LeaseEvent::Removed(b), "expiry");
}

/// Writers (through another client) keep leasing, renewing and releasing while a watcher opens
/// watch after watch: each view (snapshot plus events) must end equal to `list()`, so no change
/// fell between the snapshot and the first event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_snapshot_and_events_miss_nothing_under_churn() {
    let etcd = EtcdServer::start().await;
    let store = etcd.store(flannel()).await;
    let writer_store = etcd.store(flannel()).await;
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (store, gate, stop) = (writer_store.clone(), gate.clone(), stop.clone());
            tokio::spawn(async move {
                let mut held: Vec<Option<Lease>> = vec![None; 4];
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let _g = gate.lock().await;
                    let slot = &mut held[i % 4];
                    *slot = match slot.take() {
                        Some(l) if i % 3 == 0 => Some(store.renew(&l).await.unwrap()),
                        Some(l) => {
                            store.release(&l).await.unwrap();
                            None
                        }
                        None => Some(store.acquire(&req(&format!("w{w}-{}", i % 4))).await.unwrap()),
                    };
                    i += 1;
                }
            })
        })
        .collect();

    for round in 0..100 {
        let (mut view, mut w) = open_view(&store).await;
        // Take events while the writers go on.
        let until = Instant::now() + Duration::from_millis(30);
        while let Ok(Some(ev)) = tokio::time::timeout_at(until.into(), w.next()).await {
            apply(&mut view, ev.expect("watch error"));
        }
        // Pause the writers, lease a sentinel, and read events until it shows: etcd reports
        // changes in order, so by then every earlier change has been reported.
        let _paused = gate.lock().await;
        let sentinel = store.acquire(&req(&format!("sentinel-{round}"))).await.unwrap();
        while view.get(&sentinel.subnet) != Some(&sentinel) {
            apply(&mut view, next_event(&mut w).await);
        }
        let listed = store.list().await.unwrap();
        assert!(
            view.values().eq(listed.iter()),
            "round {round}: the watcher's view differs from the store:{}",
            view_diff(&listed, &view)
        );
        store.release(&sentinel).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
}

// ---------------------------------------------------------------- lost replies

/// A TCP proxy in front of etcd that can lose a reply the way a network does: once armed with a
/// marker, the first request whose bytes carry the marker goes through to etcd, and from then on
/// everything etcd sends back is held for `hold` (then delivered, in order, so HTTP/2 stays
/// intact). With a client timeout shorter than `hold` the request commits in etcd while the
/// client sees it fail, and the client's next requests still go through.
struct ReplyHoldingProxy {
    endpoint: String,
    armed: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    /// Until when etcd's replies are held, once the marker went through.
    fired: Arc<std::sync::Mutex<Option<Instant>>>,
    /// Replies read from etcd and not yet passed on to the client.
    holding: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ReplyHoldingProxy {
    async fn start(upstream: &str, hold: Duration) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let armed: Arc<std::sync::Mutex<Option<Vec<u8>>>> = Arc::default();
        let fired: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
        let holding: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (a, f, held) = (armed.clone(), fired.clone(), holding.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let (a, f1, f2, held) = (a.clone(), f.clone(), f.clone(), held.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        tail.extend_from_slice(&buf[..n]);
                        {
                            let mut armed = a.lock().unwrap();
                            if let Some(marker) = armed.as_ref() {
                                if tail.windows(marker.len()).any(|w| w == marker.as_slice()) {
                                    *f1.lock().unwrap() = Some(Instant::now() + hold);
                                    *armed = None;
                                }
                            }
                        }
                        let keep = tail.len().saturating_sub(256);
                        tail.drain(..keep);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        // The lost reply: held back until the hold ends (the fault injected).
                        held.fetch_add(1, Ordering::SeqCst);
                        let until = *f2.lock().unwrap();
                        if let Some(until) = until {
                            tokio::time::sleep_until(until.into()).await;
                        }
                        let sent = cw.write_all(&buf[..n]).await;
                        held.fetch_sub(1, Ordering::SeqCst);
                        if sent.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            endpoint,
            armed,
            fired,
            holding,
            task,
        }
    }

    /// Lose the reply to the next request carrying `marker`.
    fn arm(&self, marker: &str) {
        *self.fired.lock().unwrap() = None;
        *self.armed.lock().unwrap() = Some(marker.as_bytes().to_vec());
    }

    fn has_fired(&self) -> bool {
        self.fired.lock().unwrap().is_some()
    }

    /// The hold is over and everything held back has been passed on to the client.
    fn released(&self) -> bool {
        let over = self.fired.lock().unwrap().is_none_or(|until| Instant::now() >= until);
        over && self.holding.load(Ordering::SeqCst) == 0
    }

    /// Wait (at most twice the hold) until the proxy has passed on what it held back.
    async fn wait_released(&self, hold: Duration) {
        wait_until_async(hold * 2, "the proxy to pass on the replies it held back", async || {
            self.released()
        })
        .await;
    }

    /// A store talking to etcd through the proxy, giving up on a request after `timeout`.
    async fn store(&self, plan: SubnetPlan, timeout: Duration) -> EtcdLeaseStore {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(timeout);
        let client = etcd_client::Client::connect([&self.endpoint], Some(options))
            .await
            .unwrap();
        EtcdLeaseStore::with_client(client, &self.endpoint, EtcdLeaseStore::DEFAULT_PREFIX, plan)
            .await
            .unwrap()
    }
}

impl Drop for ReplyHoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request whose transaction commits in etcd but whose reply is lost must not end with the
/// node's subnet deleted: acquire reads the keys back, and never revokes an etcd lease that may
/// hold them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_acquire_reply_never_deletes_the_nodes_subnet() {
    let etcd = EtcdServer::start().await;
    let direct = etcd.store(flannel()).await;
    // The transaction is sent at t, commits, and times out at t + 2 s; the read-back sent then
    // is answered at t + 3 s, when the proxy lets etcd's replies through: within its timeout.
    // (Before the fix, the revoke sent at t + 2 s deleted the node's keys.)
    let (timeout, hold) = (Duration::from_secs(2), Duration::from_secs(3));
    let proxy = ReplyHoldingProxy::start(&etcd.endpoint, hold).await;
    let proxied = proxy.store(flannel(), timeout).await;

    // Re-acquire: node a holds a subnet; the transaction moving its keys to a new etcd lease
    // commits, its reply is lost.
    let a = direct.acquire(&req("a")).await.unwrap();
    let marker = "lost-reply-reacquire";
    let again = req("a").backend_data(json!({"VtepMAC": "52:54:00:00:00:0a", "marker": marker}));
    proxy.arm(marker);
    let result = proxied.acquire(&again).await;
    assert!(proxy.has_fired(), "the proxy never saw the transaction");
    proxy.wait_released(hold).await; // let anything held back arrive
    let stored = direct.list().await.unwrap().into_iter().find(|l| l.node() == "a");
    let stored = stored.unwrap_or_else(|| panic!("node a lost its subnet; acquire said {result:?}"));
    assert_eq!(stored.subnet, a.subnet);
    assert_eq!(stored.meta, again.meta, "the transaction did commit");
    let got = result.expect("the committed re-acquire is read back and reported");
    assert_eq!(got.subnet, a.subnet);
    assert_eq!(got.meta, again.meta);
    // The keys work: renewing and re-acquiring keep the subnet.
    direct.renew(&got).await.unwrap();
    assert_eq!(direct.acquire(&req("a")).await.unwrap().subnet, a.subnet);
    let node_key = etcd.client().await.get("/netkit/leases/nodes/a", None).await.unwrap();
    assert_eq!(node_key.kvs().len(), 1, "the node key is there");

    // First acquire: the claim transaction commits, its reply is lost.
    let marker = "lost-reply-claim";
    let b_req = req("b").backend_data(json!({"marker": marker}));
    proxy.arm(marker);
    let result = proxied.acquire(&b_req).await;
    assert!(proxy.has_fired(), "the proxy never saw the transaction");
    proxy.wait_released(hold).await;
    let b = result.expect("the committed claim is read back and reported");
    let listed = direct.list().await.unwrap();
    assert!(listed.contains(&b), "b's lease {b:?} is not in {listed:?}");
}

#[tokio::test]
async fn another_plan_or_a_corrupt_record_is_a_clear_error() {
    let etcd = EtcdServer::start().await;
    let store = etcd.store(flannel()).await;
    store.acquire(&req("a")).await.unwrap();

    let calico = SubnetPlan::calico(net("10.244.0.0/16")).unwrap();
    let err = EtcdLeaseStore::connect(&[&etcd.endpoint], EtcdLeaseStore::DEFAULT_PREFIX, calico)
        .await
        .unwrap_err();
    assert!(matches!(err, LeaseError::PlanMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("/netkit/leases/config") && msg.contains(&etcd.endpoint),
        "{msg}"
    );
    assert!(
        msg.contains("10.244.0.0/16 split into /24, not for 10.244.0.0/16 split into /26"),
        "{msg}"
    );
    // Another prefix is another store.
    EtcdLeaseStore::connect(&[&etcd.endpoint], "/other/", calico)
        .await
        .unwrap();

    let key = "/netkit/leases/subnets/10.244.5.0-24";
    etcd.client().await.put(key, "garbage", None).await.unwrap();
    let err = store.list().await.unwrap_err();
    assert!(matches!(err, LeaseError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(key) && msg.contains(&etcd.endpoint) && msg.contains("not a lease record"),
        "{msg}"
    );
}

#[tokio::test]
async fn unreachable_etcd_names_the_endpoint() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again: nothing listens
    let endpoint = format!("http://127.0.0.1:{port}");
    let err = EtcdLeaseStore::connect(&[&endpoint], "/x", flannel())
        .await
        .unwrap_err();
    assert!(matches!(err, LeaseError::Etcd { .. }), "{err:?}");
    assert!(err.to_string().contains(&endpoint), "{err}");
}
