//! Node subnet leases with the file store: carve 10.244.0.0/16 the Flannel and Calico ways,
//! lease subnets to three "nodes", watch the leases change as a Flannel-style daemon does
//! (the watch's snapshot, then its events), let one expire.
//!
//! `cargo run -p netkit-examples --example subnet_lease` (no root needed). The store lives in a
//! temporary directory, removed at the end. The etcd store (`EtcdLeaseStore`, feature `etcd`
//! of netkit-core) has the same `LeaseStore` methods.

use std::collections::BTreeMap;
use std::time::Duration;

use netkit_core::ipam::lease::{FileLeaseStore, LeaseEvent, LeaseRequest, LeaseStore, SubnetPlan};

type Error = Box<dyn std::error::Error>;

/// The store's directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let network = "10.244.0.0/16".parse()?;
    let plan = SubnetPlan::flannel(network)?;
    let calico = SubnetPlan::calico(network)?;
    println!("{plan}: {} subnets, {} .. {}", plan.count(), plan.first(), plan.last());
    println!(
        "{calico}: {} blocks, {} .. {}",
        calico.count(),
        calico.first(),
        calico.last()
    );
    match SubnetPlan::flannel("10.244.1.0/16".parse()?) {
        Err(e) => println!("rejected: {e}"),
        Ok(_) => unreachable!("host bits are set"),
    }

    let dir = TempDir(std::env::temp_dir().join(format!("netkit-subnet-lease-{}", std::process::id())));
    let store = FileLeaseStore::open(&dir.0, plan)
        .await?
        .with_watch_interval(Duration::from_millis(50));
    println!("store in {}", store.dir().display());

    let a = LeaseRequest::new("node-a", "192.0.2.10".parse()?, "vxlan")
        .backend_data(r#"{"VtepMAC": "52:54:00:00:00:0a"}"#.parse()?)
        .ttl(Duration::from_secs(60));
    let b = LeaseRequest::new("node-b", "192.0.2.11".parse()?, "host-gw");
    let c = LeaseRequest::new("node-c", "192.0.2.12".parse()?, "udp").ttl(Duration::from_secs(1));

    let lease_a = store.acquire(&a).await?;

    // A daemon's view of the other nodes (its routes): the watch's snapshot, then its events.
    // No change falls between the two (a `list()` followed by a `watch()` could lose some).
    let mut events = store.watch().await?;
    let mut routes: BTreeMap<_, _> = events.snapshot().iter().map(|l| (l.subnet, l.clone())).collect();
    for l in events.snapshot() {
        println!("snapshot: {} -> {}", l.subnet, l.node());
    }

    let lease_b = store.acquire(&b).await?;
    let lease_c = store.acquire(&c).await?;
    for l in [&lease_a, &lease_b, &lease_c] {
        println!(
            "{} ({} via {}) has {}",
            l.node(),
            l.meta.public_ip,
            l.meta.backend_type,
            l.subnet
        );
    }
    let again = store.acquire(&a).await?;
    println!("node-a asks again and keeps {}", again.subnet);
    assert_eq!(again.subnet, lease_a.subnet);

    store.renew(&again).await?;
    store.release(&lease_b).await?;
    store.release(&lease_b).await?; // already gone: fine
    println!("node-c stops renewing; waiting for its 1 s lease to expire ...");

    let mut seen_c_expire = false;
    while !seen_c_expire {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next_event())
            .await?
            .expect("the watch does not end")?;
        seen_c_expire = matches!(&event, LeaseEvent::Removed(l) if l.node() == "node-c");
        match event {
            LeaseEvent::Added(l) => {
                println!("event: added   {} -> {}", l.subnet, l.node());
                routes.insert(l.subnet, l);
            }
            LeaseEvent::Changed(l) => {
                println!("event: changed {} -> {}", l.subnet, l.node());
                routes.insert(l.subnet, l);
            }
            LeaseEvent::Removed(l) => {
                println!("event: removed {} (was {})", l.subnet, l.node());
                routes.remove(&l.subnet);
            }
        }
    }
    let nodes: Vec<_> = routes
        .values()
        .map(|l| format!("{} -> {}", l.subnet, l.node()))
        .collect();
    println!("the daemon's routes: {}", nodes.join(", "));
    assert!(
        routes.values().eq(store.list().await?.iter()),
        "the view matches the store"
    );

    match store.renew(&lease_c).await {
        Err(e) => println!("node-c renews too late: {e}"),
        Ok(_) => unreachable!("the lease expired"),
    }
    let d = store
        .acquire(&LeaseRequest::new("node-d", "192.0.2.13".parse()?, "vxlan"))
        .await?;
    println!("node-d gets {}", d.subnet);
    println!("live leases:");
    for l in store.list().await? {
        println!("  {} {} expires in {:?}", l.subnet, l.node(), l.remaining());
    }
    Ok(())
}
