//! What every object store must do, as one test: [`check_object_store`] runs the same checks on
//! the file store and the etcd store (netkit-core's `tests/store.rs`), so the two cannot drift
//! apart.

use std::collections::BTreeMap;
use std::time::Duration;

use netkit_core::store::{Object, ObjectEvent, ObjectStore, ObjectWatch, StoreError, MAX_KEY_LEN};
use serde_json::{json, Value};

/// How long a watch may take to report a change.
const EVENT_WITHIN: Duration = Duration::from_secs(20);

/// Run the conformance checks on `store`, which must be empty: key validation; get of a
/// missing key; create and `AlreadyExists`; update (compare-and-swap) and `Conflict` on a wrong
/// revision or a deleted object; delete (idempotent) and delete_if; list by prefix (sorted,
/// `services` never matching `services-old`); watch (a snapshot, then each put, update and
/// delete reported in order, none outside the prefix, and the view built from the snapshot and
/// the events ending equal to `list`); 8 tasks each making 25 read-modify-update rounds on one
/// counter, retrying on `Conflict`, ending at 200. Panics naming the check that failed.
pub async fn check_object_store<S: ObjectStore>(store: &S) {
    keys(store).await;
    create_update_delete(store).await;
    listing(store).await;
    watching(store).await;
    concurrent_updates(store).await;
}

/// Every method rejects an invalid key or prefix; a key of [`MAX_KEY_LEN`] bytes works.
async fn keys<S: ObjectStore>(store: &S) {
    let v = json!(1);
    let invalid = |what: &str, r: Result<(), StoreError>| match r {
        Err(e) if e.is_invalid_key() => {}
        other => panic!("{what}: expected an invalid key error, got {other:?}"),
    };
    invalid("get a//b", store.get("a//b").await.map(drop));
    invalid("put \"\"", store.put("", &v).await.map(drop));
    invalid("create a/../b", store.create("a/../b", &v).await.map(drop));
    invalid("update a b", store.update("a b", &v, 1).await.map(drop));
    invalid("delete /a", store.delete("/a").await.map(drop));
    invalid("delete_if a/", store.delete_if("a/", 1).await);
    invalid("list a//b", store.list("a//b").await.map(drop));
    invalid("watch x y", store.watch("x y").await.map(drop));
    let too_long = format!("k/{}", "x".repeat(MAX_KEY_LEN - 1));
    invalid("put of 256 bytes", store.put(&too_long, &v).await.map(drop));

    let longest = format!("k/{}", "x".repeat(MAX_KEY_LEN - 2));
    assert_eq!(longest.len(), MAX_KEY_LEN);
    let rev = store.put(&longest, &v).await.expect("put the longest key");
    let got = store.get(&longest).await.expect("get the longest key");
    assert_eq!(got.map(|o| (o.key, o.revision)), Some((longest.clone(), rev)));
    assert!(store.delete(&longest).await.expect("delete the longest key"));
}

async fn create_update_delete<S: ObjectStore>(store: &S) {
    let key = "crud/a";
    assert_eq!(store.get(key).await.expect("get a missing key"), None);

    let r1 = store.create(key, &json!({"v": 1})).await.expect("create");
    assert!(r1 > 0, "revisions start above 0");
    let got = store.get(key).await.expect("get").expect("created");
    assert_eq!(
        got,
        Object {
            key: key.to_string(),
            value: json!({"v": 1}),
            revision: r1
        }
    );
    match store.create(key, &json!({"v": 9})).await {
        Err(StoreError::AlreadyExists { key: k, revision, .. }) => assert_eq!((k.as_str(), revision), (key, r1)),
        other => panic!("create of an existing key: expected AlreadyExists, got {other:?}"),
    }

    let r2 = store
        .update(key, &json!({"v": 2}), r1)
        .await
        .expect("update at the right revision");
    assert!(r2 > r1, "update: revision {r2} not above {r1}");
    assert_eq!(value_of(store, key).await, Some(json!({"v": 2})));
    let err = store
        .update(key, &json!({"v": 3}), r1)
        .await
        .expect_err("update at a stale revision");
    assert_conflict(&err, key, r1, Some(r2));
    assert!(err.to_string().contains(key), "{err}");
    assert_eq!(
        value_of(store, key).await,
        Some(json!({"v": 2})),
        "a failed update changes nothing"
    );

    // Revisions are store-wide: a change of another key is above every earlier one.
    let rb1 = store.put("crud/b", &json!("b1")).await.expect("put creates");
    let rb2 = store.put("crud/b", &json!("b2")).await.expect("put replaces");
    assert!(r2 < rb1 && rb1 < rb2, "revisions {r2} < {rb1} < {rb2}");
    assert_eq!(value_of(store, "crud/b").await, Some(json!("b2")));

    assert!(
        store.delete("crud/b").await.expect("delete"),
        "delete of an object: true"
    );
    assert!(
        !store.delete("crud/b").await.expect("delete again"),
        "delete of a missing key: false"
    );
    assert_eq!(store.get("crud/b").await.expect("get"), None);
    let err = store
        .update("crud/b", &json!("b3"), rb2)
        .await
        .expect_err("update of a deleted key");
    assert_conflict(&err, "crud/b", rb2, None);
    assert_eq!(
        store.get("crud/b").await.expect("get"),
        None,
        "a failed update creates nothing"
    );
    let err = store
        .update("crud/never", &json!(0), 0)
        .await
        .expect_err("update at revision 0");
    assert_conflict(&err, "crud/never", 0, None);
    assert_eq!(
        store.get("crud/never").await.expect("get"),
        None,
        "update never creates"
    );

    let err = store
        .delete_if(key, r1)
        .await
        .expect_err("delete_if at a stale revision");
    assert_conflict(&err, key, r1, Some(r2));
    store.delete_if(key, r2).await.expect("delete_if at the right revision");
    assert_eq!(store.get(key).await.expect("get"), None);
    let err = store.delete_if(key, r2).await.expect_err("delete_if of a deleted key");
    assert_conflict(&err, key, r2, None);

    let r3 = store.create(key, &json!({"v": 4})).await.expect("create after delete");
    assert!(
        r3 > rb2,
        "a re-created object's revision {r3} is above every earlier one"
    );
    assert!(store.delete(key).await.expect("delete"));
}

async fn listing<S: ObjectStore>(store: &S) {
    for key in [
        "services/b/c",
        "services/a",
        "services",
        "services-old/x",
        "servicesx/y",
        "other/z",
    ] {
        store.put(key, &json!(key)).await.expect("put");
    }
    let keys = |objects: Vec<Object>| objects.into_iter().map(|o| o.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.list("services").await.expect("list")),
        ["services/a", "services/b/c"],
        "list services: the keys below it, sorted"
    );
    assert_eq!(
        keys(store.list("services/").await.expect("list")),
        ["services/a", "services/b/c"],
        "a trailing / changes nothing"
    );
    assert_eq!(keys(store.list("services/b").await.expect("list")), ["services/b/c"]);
    assert_eq!(
        keys(store.list("services-old").await.expect("list")),
        ["services-old/x"]
    );
    assert!(store.list("nothing").await.expect("list").is_empty());

    let all = store.list("").await.expect("list everything");
    let all_keys = keys(all.clone());
    let mut sorted = all_keys.clone();
    sorted.sort();
    assert_eq!(all_keys, sorted, "list is sorted by key");
    for key in ["services", "services/a", "services-old/x", "other/z"] {
        assert!(all_keys.iter().any(|k| k == key), "list \"\" lacks {key}: {all_keys:?}");
    }
    for o in &all {
        assert_eq!(
            store.get(&o.key).await.expect("get").as_ref(),
            Some(o),
            "list and get agree"
        );
    }
}

/// One change the watch must report.
enum Expect<'a> {
    Put(&'a str, u64),
    /// A delete of the key, above this revision.
    Deleted(&'a str, u64),
}

async fn watching<S: ObjectStore>(store: &S) {
    let ra = store.put("w/a", &json!(1)).await.expect("put");
    let rb = store.put("w/b", &json!(1)).await.expect("put");
    store.put("wx/c", &json!(1)).await.expect("put");
    let mut w = store.watch("w").await.expect("watch");
    let listed = store.list("w").await.expect("list");
    assert_eq!(w.snapshot(), listed.as_slice(), "the snapshot is what list reads");
    assert_eq!(w.snapshot().len(), 2, "{:?}", w.snapshot());
    let mut view: BTreeMap<String, Object> = w.snapshot().iter().map(|o| (o.key.clone(), o.clone())).collect();

    // One change at a time: each is reported exactly, none outside the prefix.
    store.put("wx/c", &json!(2)).await.expect("put outside");
    store.put("w", &json!(2)).await.expect("put the prefix's own key");
    let rc = store.create("w/c", &json!(1)).await.expect("create");
    step(store, &mut w, &mut view, "create w/c", &[Expect::Put("w/c", rc)]).await;
    let ra2 = store.update("w/a", &json!(2), ra).await.expect("update");
    step(store, &mut w, &mut view, "update w/a", &[Expect::Put("w/a", ra2)]).await;
    assert!(store.delete("w/b").await.expect("delete"));
    step(store, &mut w, &mut view, "delete w/b", &[Expect::Deleted("w/b", rb)]).await;
    store.delete_if("w/c", rc).await.expect("delete_if");
    step(store, &mut w, &mut view, "delete_if w/c", &[Expect::Deleted("w/c", rc)]).await;
    let rd = store.put("w/d/e", &json!({"deep": true})).await.expect("put deeper");
    step(store, &mut w, &mut view, "put w/d/e", &[Expect::Put("w/d/e", rd)]).await;

    // A burst: the events may merge (the file store) but the view ends equal to list.
    for i in 0..10 {
        let key = format!("w/burst-{i}");
        let r = store.create(&key, &json!(i)).await.expect("create");
        if i % 2 == 0 {
            store.update(&key, &json!(i * 10), r).await.expect("update");
        }
        if i % 3 == 0 {
            assert!(store.delete(&key).await.expect("delete"));
        }
        store
            .put(&format!("wx/burst-{i}"), &json!(i))
            .await
            .expect("put outside");
    }
    assert!(store.delete("w/a").await.expect("delete"));
    let end = store.list("w").await.expect("list");
    let got = follow(&mut w, &mut view, "the burst", |view| view_list(view) == end).await;
    assert!(!got.is_empty(), "the burst reported nothing");
    assert_eq!(view_list(&view), end, "snapshot + events = list");
}

/// Read events until the view equals `list`, applying them (and checking each); they must be
/// exactly `expected`.
async fn step<S: ObjectStore>(
    store: &S,
    w: &mut ObjectWatch,
    view: &mut BTreeMap<String, Object>,
    what: &str,
    expected: &[Expect<'_>],
) {
    let end = store.list("w").await.expect("list");
    let got = follow(w, view, what, |view| view_list(view) == end).await;
    assert_eq!(got.len(), expected.len(), "{what}: events {got:?}");
    for (event, want) in got.iter().zip(expected) {
        match (event, want) {
            (ObjectEvent::Put(o), Expect::Put(key, rev)) if o.key == *key && o.revision == *rev => {}
            (ObjectEvent::Deleted { key, revision }, Expect::Deleted(k, above)) if key == k && revision > above => {}
            _ => panic!("{what}: unexpected event {event:?} in {got:?}"),
        }
    }
}

/// Apply events to `view` until `done(view)`, for at most [`EVENT_WITHIN`]; returns them.
/// Each must be below `w/`, a put must raise the key's revision, a delete must remove a key
/// in the view above the revision it had.
async fn follow(
    w: &mut ObjectWatch,
    view: &mut BTreeMap<String, Object>,
    what: &str,
    done: impl Fn(&BTreeMap<String, Object>) -> bool,
) -> Vec<ObjectEvent> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + EVENT_WITHIN;
    while !done(view) {
        let event = match tokio::time::timeout_at(deadline, w.next_event()).await {
            Err(_) => panic!("{what}: the watch did not report it within {EVENT_WITHIN:?}; events: {got:?}"),
            Ok(None) => panic!("{what}: the watch ended; events: {got:?}"),
            Ok(Some(Err(e))) => panic!("{what}: watch error {e}; events: {got:?}"),
            Ok(Some(Ok(event))) => event,
        };
        assert!(
            event.key().starts_with("w/"),
            "{what}: an event outside the prefix: {event:?}"
        );
        match &event {
            ObjectEvent::Put(o) => {
                if let Some(old) = view.get(&o.key) {
                    assert!(o.revision > old.revision, "{what}: {event:?} after {old:?}");
                }
                view.insert(o.key.clone(), o.clone());
            }
            ObjectEvent::Deleted { key, revision } => {
                let old = view
                    .remove(key)
                    .unwrap_or_else(|| panic!("{what}: {event:?} of a key not in the view"));
                assert!(*revision > old.revision, "{what}: {event:?} after {old:?}");
            }
        }
        got.push(event);
    }
    got
}

fn view_list(view: &BTreeMap<String, Object>) -> Vec<Object> {
    view.values().cloned().collect()
}

/// 8 tasks, 25 read-modify-update rounds each on one counter, retrying on `Conflict`.
async fn concurrent_updates<S: ObjectStore>(store: &S) {
    const TASKS: u64 = 8;
    const ROUNDS: u64 = 25;
    let key = "counter";
    store.create(key, &json!({"n": 0})).await.expect("create the counter");
    let task = |_| async move {
        let mut conflicts = 0u64;
        for _ in 0..ROUNDS {
            loop {
                let cur = store.get(key).await.expect("get").expect("the counter exists");
                let n = cur.value["n"].as_u64().expect("a number");
                match store.update(key, &json!({"n": n + 1}), cur.revision).await {
                    Ok(_) => break,
                    Err(e) if e.is_conflict() => conflicts += 1,
                    Err(e) => panic!("update the counter: {e}"),
                }
            }
        }
        conflicts
    };
    let conflicts: u64 = futures::future::join_all((0..TASKS).map(task)).await.into_iter().sum();
    assert_eq!(
        value_of(store, key).await,
        Some(json!({"n": TASKS * ROUNDS})),
        "{TASKS} tasks × {ROUNDS} updates ({conflicts} conflicts retried)"
    );
}

fn assert_conflict(err: &StoreError, key: &str, expected: u64, current: Option<u64>) {
    match err {
        StoreError::Conflict {
            key: k,
            expected: e,
            current: c,
            ..
        } if k == key && *e == expected && *c == current => {}
        other => panic!("expected a conflict on {key} (expected {expected}, current {current:?}), got {other:?}"),
    }
}

async fn value_of<S: ObjectStore>(store: &S, key: &str) -> Option<Value> {
    store.get(key).await.expect("get").map(|o| o.value)
}
