//! What the node subnet lease tests of both stores (the file store, etcd) share: plans,
//! requests, bounded waits on the store and the watcher's view of it.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnetwork::IpNetwork;
use netkit_core::ipam::lease::{Lease, LeaseEvent, LeaseRequest, LeaseStore, LeaseWatch, SubnetPlan};
use serde_json::json;

use crate::lit::net;
use crate::wait_for_async;

/// flannel's plan: 10.244.0.0/16 in /24 subnets.
pub fn flannel() -> SubnetPlan {
    SubnetPlan::flannel(net("10.244.0.0/16")).expect("flannel plan")
}

/// 10.0.0.0/24 in four /26 blocks.
pub fn four_blocks() -> SubnetPlan {
    SubnetPlan::new(net("10.0.0.0/24"), 26).expect("a plan of four blocks")
}

/// A vxlan lease request of `node` for an hour.
pub fn req(node: &str) -> LeaseRequest {
    LeaseRequest::new(node, "192.0.2.1".parse().expect("literal"), "vxlan")
        .backend_data(json!({"VtepMAC": "52:54:00:00:00:01"}))
        .ttl(Duration::from_secs(3600))
}

/// Poll `list` until `pred` holds for it, for at most `within`; returns what it listed then.
/// Panics naming `what`, with the leases last listed, otherwise.
pub async fn wait_list<S: LeaseStore>(
    store: &S,
    within: Duration,
    what: &str,
    pred: impl Fn(&[Lease]) -> bool,
) -> Vec<Lease> {
    wait_for_async(within, what, async || {
        let leases = store.list().await.expect("list");
        if pred(&leases) {
            Ok(leases)
        } else {
            Err(leases)
        }
    })
    .await
}

/// Renew `current` every `every` until the watch `w` reports the expiry (`Removed`) of
/// `witness` — a lease taken after `current`'s and never renewed — for at most `within`; the
/// expiry of any other lease fails. Returns the last renewal. The store's own expiry event, not
/// a clock in the test, says when the store has passed the witness's expiry.
pub async fn renew_until_expired<S: LeaseStore>(
    store: &S,
    w: &mut LeaseWatch,
    mut current: Lease,
    witness: &Lease,
    every: Duration,
    within: Duration,
) -> Lease {
    let mut tick = tokio::time::interval(every);
    let expired = async {
        loop {
            match w.next_event().await {
                Some(Ok(LeaseEvent::Removed(l))) if l.node() == witness.node() => return,
                Some(Ok(LeaseEvent::Removed(l))) => panic!("{} expired although renewed: {l:?}", l.node()),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("watch error: {e}"),
                None => panic!("watch stream ended"),
            }
        }
    };
    tokio::pin!(expired);
    let renewing = async {
        loop {
            tokio::select! {
                () = &mut expired => return current,
                _ = tick.tick() => {
                    let renewed = store.renew(&current).await.expect("renew");
                    assert!(renewed.expires_at >= current.expires_at, "{renewed:?} after {current:?}");
                    assert_eq!(renewed.subnet, current.subnet);
                    current = renewed;
                }
            }
        }
    };
    tokio::time::timeout(within, renewing)
        .await
        .unwrap_or_else(|_| panic!("the witness lease {witness:?} did not expire within {within:?}"))
}

/// The live leases as a watcher sees them: the watch's snapshot, then its events applied.
pub type View = BTreeMap<IpNetwork, Lease>;

/// Open a watch and the view it starts from: its snapshot (a `list()` here instead loses the
/// changes made before the watch starts).
pub async fn open_view<S: LeaseStore>(store: &S) -> (View, LeaseWatch) {
    let w = store.watch().await.expect("watch");
    (w.snapshot().iter().map(|l| (l.subnet, l.clone())).collect(), w)
}

/// Apply one event to a view.
pub fn apply(view: &mut View, event: LeaseEvent) {
    match event {
        LeaseEvent::Added(l) | LeaseEvent::Changed(l) => {
            view.insert(l.subnet, l);
        }
        LeaseEvent::Removed(l) => {
            view.remove(&l.subnet);
        }
    }
}

/// `want` and `got` as the lines where they differ, for a readable assertion message.
pub fn view_diff(want: &[Lease], got: &View) -> String {
    let want: BTreeMap<_, _> = want.iter().map(|l| (l.subnet, l)).collect();
    let mut out = String::new();
    for (s, l) in &want {
        if got.get(s) != Some(*l) {
            let seen = got.get(s).map(|g| (g.node(), g.expires_at));
            out += &format!(
                "\n  store has {s} -> {} ({:?}), view has {seen:?}",
                l.node(),
                l.expires_at
            );
        }
    }
    for (s, l) in got {
        if !want.contains_key(s) {
            out += &format!("\n  view has {s} -> {}, store has nothing", l.node());
        }
    }
    out
}

/// What both stores must do with lease slots (a node holding several subnets, as Calico's
/// block affinity needs), on an empty store with the [`four_blocks`] plan: each slot is its own
/// lease — acquired idempotently, renewed, released and lost on its own — and a slot beyond
/// `MAX_SLOT` is refused.
pub async fn check_slots<S: LeaseStore>(store: &S) {
    use netkit_core::ipam::lease::{LeaseError, MAX_SLOT};
    let a0 = store.acquire(&req("a")).await.expect("a slot 0");
    let a1 = store.acquire(&req("a").slot(1)).await.expect("a slot 1");
    let b0 = store.acquire(&req("b")).await.expect("b slot 0");
    let a2 = store.acquire(&req("a").slot(2)).await.expect("a slot 2");
    let subnets: std::collections::BTreeSet<IpNetwork> = [a0.subnet, a1.subnet, b0.subnet, a2.subnet].into();
    assert_eq!(
        subnets.len(),
        4,
        "every (node, slot) has its own subnet: {a0:?} {a1:?} {b0:?} {a2:?}"
    );
    assert_eq!((a0.slot, a1.slot, a2.slot, b0.slot), (0, 1, 2, 0));
    assert_eq!(
        store.acquire(&req("a").slot(1)).await.expect("a slot 1 again").subnet,
        a1.subnet,
        "acquire is idempotent per (node, slot)"
    );
    let err = store.acquire(&req("c")).await.expect_err("four blocks, four leases");
    assert!(err.is_exhausted(), "{err}");
    let err = store
        .acquire(&req("a").slot(MAX_SLOT + 1))
        .await
        .expect_err("slot too high");
    assert!(matches!(err, LeaseError::InvalidNode { .. }), "{err}");

    let renewed = store.renew(&a1).await.expect("renew slot 1");
    assert_eq!((renewed.subnet, renewed.slot), (a1.subnet, 1));
    store.release(&a1).await.expect("release slot 1");
    let left: Vec<(String, u32)> = store
        .list()
        .await
        .expect("list")
        .iter()
        .map(|l| (l.node().to_string(), l.slot))
        .collect();
    assert_eq!(left.len(), 3, "only slot 1 was released: {left:?}");
    assert!(!left.contains(&("a".into(), 1)), "{left:?}");
    let err = store.renew(&a1).await.expect_err("slot 1 was released");
    assert!(err.is_lost(), "{err}");
    // A lease of another slot of the same node is not the released one.
    let mut wrong = a0.clone();
    wrong.slot = 2;
    let err = store.renew(&wrong).await.expect_err("slot 2 holds another subnet");
    assert!(err.is_lost(), "{err}");
    store.renew(&a0).await.expect("slot 0 is untouched");
    store.renew(&a2).await.expect("slot 2 is untouched");
    let listed = store.list().await.expect("list");
    let a2_listed = listed.iter().find(|l| l.subnet == a2.subnet).expect("a2 listed");
    assert_eq!(a2_listed.slot, 2, "the slot is stored");
}
