//! Flannel's VXLAN backend built with netkit: two nodes joined by an underlay
//! link, each with a bridge and a pod, and per remote node a permanent ARP
//! entry, an FDB entry and an onlink route on `flannel.1`.
//!
//! Run as root: `cargo run --example flannel_vxlan`. Cleans up on exit.

use std::net::{IpAddr, SocketAddr};

use netkit_examples::probe::{ping_retry, tcp_exchange};
use netkit_examples::scenarios::flannel::build;
use netkit_examples::{unique_prefix, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let lab = build(&unique_prefix("ex")).await?;
    let (p1, p2) = (IpAddr::V4(lab.n1.pod_ip), IpAddr::V4(lab.n2.pod_ip));
    println!(
        "before programming peers: pod1 -> pod2 {}",
        ping_retry(&lab.n1.pod, p2, 1)
    );
    lab.connect().await?;
    println!(
        "after programming peers:  pod1 -> pod2 {}",
        ping_retry(&lab.n1.pod, p2, 3)
    );
    tcp_exchange(&lab.n2.pod, &lab.n1.pod, SocketAddr::new(p2, 7000)).await?;
    println!("TCP pod1 -> pod2 across the overlay ok");
    lab.n2.overlay.remove_peer(&lab.n1.as_peer).await?;
    println!(
        "after node2 forgets node1:  pod1 -> pod2 {}, pod2 -> pod1 {}",
        ping_retry(&lab.n1.pod, p2, 1),
        ping_retry(&lab.n2.pod, p1, 1)
    );
    Ok(())
}
