//! The object stores: the conformance check of test-support (`store::check_object_store`) on
//! the file store (in a temp dir) and on the etcd store (against a real etcd on loopback, started
//! by each test and killed when it ends), plus what only one of them has: the file store's
//! corrupt files, stale temporary files and reopening; the etcd store's outage and foreign
//! values. A missing `/usr/bin/etcd` fails the etcd tests (CI installs Debian's etcd-server).

use std::time::Duration;

use netkit_core::store::{FileObjectStore, ObjectEvent, ObjectStore, ObjectWatch, StoreError};
use netkit_test_support::store::check_object_store;
use netkit_test_support::tempdir;
use serde_json::json;

/// How long a watch may take to report something.
const WITHIN: Duration = Duration::from_secs(20);

/// The next item of `w`, within [`WITHIN`].
async fn next(w: &mut ObjectWatch) -> Option<Result<ObjectEvent, StoreError>> {
    tokio::time::timeout(WITHIN, w.next_event())
        .await
        .unwrap_or_else(|_| panic!("the watch reported nothing within {WITHIN:?}"))
}

fn assert_corrupt<T: std::fmt::Debug>(what: &str, r: Result<T, StoreError>, location: &str) {
    match r {
        Err(StoreError::Corrupt { location: l, .. }) if l.ends_with(location) => {}
        other => panic!("{what}: expected Corrupt naming {location}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- the file store

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_conforms() {
    let dir = tempdir("objects");
    let store = FileObjectStore::open(dir.path()).await.expect("open");
    check_object_store(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_layout_survives_reopening_and_cleans_stale_temps() {
    let dir = tempdir("objects");
    let store = FileObjectStore::open(dir.path()).await.expect("open");
    let r1 = store
        .put("services/default/web", &json!({"port": 80}))
        .await
        .expect("put");
    // The layout the docs describe.
    let file = dir.path().join("objects/services+default+web");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).expect("the object's file")).unwrap();
    assert_eq!(record, json!({"revision": r1, "value": {"port": 80}}));
    let counter = std::fs::read_to_string(dir.path().join("revision")).expect("the revision file");
    assert_eq!(counter.trim(), r1.to_string());

    // A writer that died mid-write left a temp file; the next write removes it.
    let stale = dir.path().join("tmp/.tmp-999999-0");
    std::fs::write(&stale, b"{\"revision\": 1, \"val").unwrap();
    let again = FileObjectStore::open(dir.path()).await.expect("open again");
    assert!(!stale.exists(), "open removes stale temp files");
    std::fs::write(&stale, b"half").unwrap();
    let r2 = again
        .put("services/default/db", &json!({"port": 5432}))
        .await
        .expect("put");
    assert!(!stale.exists(), "a write removes stale temp files");
    assert!(r2 > r1, "revisions go on growing after reopening: {r1} then {r2}");
    // Both handles see the same objects; a key that looks like a temp file is just a key.
    assert_eq!(store.list("services").await.expect("list").len(), 2);
    let r3 = store
        .put(".tmp-1", &json!("not a temp"))
        .await
        .expect("a key starting with .tmp-");
    again.put("x", &json!(0)).await.expect("another write");
    assert_eq!(again.get(".tmp-1").await.expect("get").map(|o| o.revision), Some(r3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_reports_corrupt_files() {
    let dir = tempdir("objects");
    let store = FileObjectStore::open(dir.path()).await.expect("open");
    store.put("svc/good", &json!(1)).await.expect("put");
    store.put("other/x", &json!(1)).await.expect("put");
    let mut w = store.watch("svc").await.expect("watch");

    // A damaged file, renamed in as a writer would: the running watch reports it and ends.
    std::fs::write(dir.path().join("bad"), b"not json").unwrap();
    std::fs::rename(dir.path().join("bad"), dir.path().join("objects/svc+bad")).unwrap();
    assert_corrupt(
        "the watch",
        next(&mut w).await.expect("an error, not the end"),
        "objects/svc+bad",
    );
    assert!(next(&mut w).await.is_none(), "an error is the last item");

    assert_corrupt("get", store.get("svc/bad").await, "objects/svc+bad");
    assert_corrupt("list", store.list("svc").await, "objects/svc+bad");
    assert_corrupt("watch", store.watch("svc").await, "objects/svc+bad");
    assert_corrupt("update", store.update("svc/bad", &json!(2), 1).await, "objects/svc+bad");
    assert_eq!(store.list("other").await.expect("list elsewhere").len(), 1);
    // A file whose name is no key: every list meets it.
    std::fs::write(dir.path().join("objects/a b"), b"{}").unwrap();
    assert_corrupt("list", store.list("other").await, "objects/a b");
    std::fs::remove_file(dir.path().join("objects/a b")).unwrap();

    // delete and put replace a damaged file without reading it.
    assert!(store.delete("svc/bad").await.expect("delete"));
    assert_eq!(store.list("svc").await.expect("list").len(), 1);
    std::fs::write(dir.path().join("objects/svc+bad"), b"[").unwrap();
    store.put("svc/bad", &json!("fixed")).await.expect("put over it");
    assert_eq!(
        store.get("svc/bad").await.expect("get").map(|o| o.value),
        Some(json!("fixed"))
    );

    std::fs::write(dir.path().join("revision"), b"many").unwrap();
    assert_corrupt("put", store.put("svc/x", &json!(1)).await, "revision");
}

// ---------------------------------------------------------------- the etcd store

#[cfg(feature = "etcd")]
mod etcd {
    use super::*;
    use netkit_core::store::EtcdObjectStore;
    use netkit_test_support::etcd::Etcd;

    async fn start() -> Etcd {
        tokio::task::spawn_blocking(Etcd::start).await.expect("start etcd")
    }

    async fn connect(etcd: &Etcd) -> EtcdObjectStore {
        EtcdObjectStore::connect(&[etcd.endpoint()], EtcdObjectStore::DEFAULT_PREFIX)
            .await
            .unwrap_or_else(|e| panic!("connect to our etcd: {e}\netcd log:\n{}", etcd.log()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_store_conforms() {
        let etcd = start().await;
        let store = connect(&etcd).await;
        check_object_store(&store).await;
    }

    /// More than one etcd answer can carry (the client refuses a message over 4 MiB: 10,000
    /// services' endpoints are ≈ 6 MB): list and a watch's snapshot read it whole, in pages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_reads_a_prefix_larger_than_one_answer() {
        let etcd = start().await;
        let store = connect(&etcd).await;
        let blob = "x".repeat(5000);
        for chunk in (0..1100).collect::<Vec<u32>>().chunks(50) {
            let puts = chunk.iter().map(|i| {
                let value = json!({ "i": i, "blob": blob });
                let store = &store;
                async move { store.put(&format!("big/k{i:05}"), &value).await }
            });
            for r in futures::future::join_all(puts).await {
                r.expect("put");
            }
        }
        store.put("big-other/x", &json!(1)).await.unwrap();
        let listed = store.list("big").await.expect("list more than 4 MiB");
        assert_eq!(listed.len(), 1100);
        assert!(listed.windows(2).all(|w| w[0].key < w[1].key), "sorted");
        let w = store.watch("big").await.expect("watch more than 4 MiB");
        assert_eq!(w.snapshot().len(), 1100);
        assert_eq!(w.snapshot()[1099].value["i"], 1099);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_watch_reports_every_change_at_its_revision() {
        let etcd = start().await;
        let store = connect(&etcd).await;
        let mut w = store.watch("svc").await.expect("watch");
        assert!(w.snapshot().is_empty());
        let r1 = store.create("svc/a", &json!(1)).await.expect("create");
        let r2 = store.update("svc/a", &json!(2), r1).await.expect("update");
        store.delete_if("svc/a", r2).await.expect("delete_if");
        let r4 = store.put("svc/b", &json!(4)).await.expect("put");
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(next(&mut w).await.expect("an event").expect("no error"));
        }
        let put = |key: &str, value, revision| {
            ObjectEvent::Put(netkit_core::store::Object {
                key: key.to_string(),
                value,
                revision,
            })
        };
        // Nothing merged: each change is one event, the delete at the revision between.
        let deleted = ObjectEvent::Deleted {
            key: "svc/a".to_string(),
            revision: r4 - 1,
        };
        assert_eq!(
            got,
            [
                put("svc/a", json!(1), r1),
                put("svc/a", json!(2), r2),
                deleted,
                put("svc/b", json!(4), r4)
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_watch_ends_with_an_error_when_etcd_stops_and_a_new_one_has_the_changes() {
        let mut etcd = start().await;
        let store = connect(&etcd).await;
        let r1 = store.put("svc/a", &json!(1)).await.expect("put");
        let mut w = store.watch("svc").await.expect("watch");
        let r2 = store.put("svc/b", &json!(2)).await.expect("put");
        match next(&mut w).await {
            Some(Ok(ObjectEvent::Put(o))) if o.key == "svc/b" && o.revision == r2 => {}
            other => panic!("expected the put of svc/b, got {other:?}"),
        }

        tokio::task::block_in_place(|| etcd.stop());
        match next(&mut w).await {
            Some(Err(StoreError::Etcd { op, .. })) => assert!(op.contains("watch"), "{op}"),
            other => panic!("expected a broken watch, got {other:?}"),
        }
        assert!(next(&mut w).await.is_none(), "the error is the last item");
        assert!(store.get("svc/a").await.is_err(), "etcd is down");

        tokio::task::block_in_place(|| etcd.resume());
        // The same store reconnects; changes made while no watch was open.
        let r3 = netkit_test_support::wait_for_async(WITHIN, "a put after etcd is back", async || {
            store.update("svc/a", &json!(3), r1).await
        })
        .await;
        assert!(store.delete("svc/b").await.expect("delete"));
        let w = store.watch("svc").await.expect("watch again");
        let snapshot: Vec<_> = w.snapshot().iter().map(|o| (o.key.as_str(), o.revision)).collect();
        assert_eq!(snapshot, [("svc/a", r3)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_values_that_are_not_json_are_corrupt() {
        let etcd = start().await;
        let store = connect(&etcd).await;
        store.put("svc/good", &json!(1)).await.expect("put");
        let mut w = store.watch("svc").await.expect("watch");
        let mut raw = etcd_client::Client::connect([etcd.endpoint()], None).await.unwrap();
        raw.put("/netkit/objects/svc/bad", "not json", None).await.unwrap();
        assert_corrupt(
            "the watch",
            next(&mut w).await.expect("an error"),
            "/netkit/objects/svc/bad",
        );
        assert!(next(&mut w).await.is_none(), "an error is the last item");
        assert_corrupt("get", store.get("svc/bad").await, "/netkit/objects/svc/bad");
        assert_corrupt("list", store.list("svc").await, "/netkit/objects/svc/bad");
        assert_corrupt("watch", store.watch("svc").await, "/netkit/objects/svc/bad");
        // A foreign key under the prefix that is not a key.
        raw.put("/netkit/objects/other/a b", "1", None).await.unwrap();
        assert_corrupt("list", store.list("other").await, "/netkit/objects/other/a b");
        // Nothing outside the prefix is read: services-old is not below services.
        raw.put("/netkit/objects/svc-old/x", "nope", None).await.unwrap();
        assert!(store.delete("svc/bad").await.expect("delete"));
        assert_eq!(store.list("svc").await.expect("list").len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_etcd_names_the_endpoint() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let err = EtcdObjectStore::connect(&[&endpoint], EtcdObjectStore::DEFAULT_PREFIX)
            .await
            .expect_err("nothing listens there");
        assert!(err.to_string().contains(&endpoint), "{err}");
    }
}
