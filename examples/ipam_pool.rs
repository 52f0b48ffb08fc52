//! The IPAM allocator on a dual-stack pool: allocate, ask again, a static address, exhaustion,
//! release, GC, and the store's consistency check.
//!
//! `cargo run -p netkit-examples --example ipam_pool` (no root needed: only files, in a
//! temporary directory removed at the end).

use netkit_core::ipam::{Ipam, IpamConfig, Owner, StoreOptions};

type Error = Box<dyn std::error::Error>;

/// The store's directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> Result<(), Error> {
    let dir = TempDir(std::env::temp_dir().join(format!("netkit-ipam-example-{}", std::process::id())));
    // host-local's keys: one address per inner list, so this pool is dual-stack.
    let config = IpamConfig::from_json(
        r#"{"ranges": [[{"subnet": "10.22.0.0/29"}], [{"subnet": "fd22::/64", "rangeStart": "fd22::100"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}"#,
    )?;
    let ipam = Ipam::open(config.pool("podnet")?, &dir.0, StoreOptions::default())?;

    let a = Owner::new("pod-a", "eth0")?;
    let got = ipam.allocate(&a, &[])?;
    for ip in &got.ips {
        println!("{a}: {} via {}", ip.address, ip.gateway);
    }
    assert_eq!(ipam.allocate(&a, &[])?, got, "the same owner gets the same addresses");

    let b = Owner::new("pod-b", "eth0")?;
    let fixed = ipam.allocate(&b, &["10.22.0.6".parse()?])?;
    println!("{b}: static {}", fixed.ips[0].address);
    match ipam.allocate(&Owner::new("pod-c", "eth0")?, &["10.22.0.6".parse()?]) {
        Err(e) => println!("pod-c asking for 10.22.0.6: {e}"),
        Ok(_) => return Err("a held address was handed out twice".into()),
    }

    // Fill the /29 (.2-.6; .1 is the gateway and never handed out) and see the error.
    let mut n = 0;
    let err = loop {
        match ipam.allocate(&Owner::new(&format!("filler{n}"), "eth0")?, &[]) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    println!("after {n} more: {err}");

    println!("release {a}: {:?}", ipam.release(&a)?);
    let report = ipam.gc(std::slice::from_ref(&b))?;
    println!("gc keeping only {b}: released {:?}", report.released_ips());
    let check = ipam.check()?;
    println!(
        "store: {} held, {} owners, problems {:?}",
        check.held, check.owners, check.problems
    );
    Ok(())
}
