//! Three "containers" on a bridge inside a "host" namespace.
//!
//! Run as root: `cargo run --example bridge_containers`. Cleans up on exit.

use std::net::{IpAddr, SocketAddr};

use netkit_examples::probe::{ping, tcp_exchange};
use netkit_examples::scenarios::bridge::{build, BridgeLab};
use netkit_examples::{unique_prefix, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let lab = build(&unique_prefix("ex"), 3).await?;
    println!(
        "host {} with br0 ({}) and 3 containers",
        lab.host.name().unwrap(),
        BridgeLab::GATEWAY
    );
    for (i, c) in lab.containers.iter().enumerate() {
        let gw = ping(c, IpAddr::V4(BridgeLab::GATEWAY));
        let next = BridgeLab::container_ip((i + 1) % 3);
        println!("c{i}: ping bridge {}, ping {next} {}", ok(gw), ok(ping(c, next)));
    }
    let addr = SocketAddr::new(BridgeLab::container_ip(2), 7000);
    tcp_exchange(&lab.containers[2], &lab.containers[0], addr).await?;
    println!("TCP c0 -> c2 ok");
    Ok(())
}

fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "FAILED"
    }
}
