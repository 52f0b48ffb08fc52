//! Two network namespaces joined by a veth pair, reached over IPv4 and IPv6.
//!
//! Run as root: `cargo run --example veth_pair`. Everything it creates is
//! removed when it exits.

use std::net::SocketAddr;

use netkit_examples::probe::{ping, tcp_exchange};
use netkit_examples::scenarios::veth_pair::{build, VethPair};
use netkit_examples::{unique_prefix, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let lab = build(&unique_prefix("ex")).await?;
    println!(
        "namespaces {} and {} joined by a veth pair",
        lab.a.name().unwrap(),
        lab.b.name().unwrap()
    );
    for dst in [VethPair::B4, VethPair::B6] {
        let ok = ping(&lab.a, VethPair::ip(dst));
        println!("ping {dst} from a: {}", if ok { "ok" } else { "FAILED" });
    }
    let addr = SocketAddr::new(VethPair::ip(VethPair::B6), 7000);
    let peer = tcp_exchange(&lab.b, &lab.a, addr).await?;
    println!("TCP exchange with [{}]:7000 ok (server saw {peer})", VethPair::B6);
    Ok(())
}
