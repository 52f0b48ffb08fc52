//! IPAM benchmark: allocate-then-release of one address with 100 and with 60,000 addresses
//! already held in a /16, for
//!
//! * netkit in-process (`Ipam::allocate` + `Ipam::release`),
//! * netkit per process invocation (`netkit-ipam` ADD then DEL, as a runtime calls it),
//! * the reference host-local plugin per invocation (`/usr/lib/cni/host-local`, Debian
//!   containernetworking-plugins), same config shape, same held count, same run.
//!
//! The held addresses are written before timing: through netkit's allocator for netkit, and as
//! host-local's own files (`<ip>` holding `id\r\nifname`, plus `last_reserved_ip.0`) for
//! host-local, i.e. the state host-local would have after allocating them itself.
//!
//! Run: `cargo bench -p netkit-cni --bench ipam` (as any user; only files under /tmp).
//! `NETKIT_BENCH_QUICK=1` runs fewer iterations. Every figure is the median of its iterations;
//! a process-spawn baseline (`/bin/true`) is printed for scale.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netkit_core::ipam::{Ipam, IpamConfig, Owner, StoreOptions};

const NETKIT: &str = env!("CARGO_BIN_EXE_netkit-ipam");
const HOST_LOCAL: &str = "/usr/lib/cni/host-local";
const NET: &str = "benchnet";

fn config(kind: &str, dir: &Path) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"{NET}","ipam":{{"type":"{kind}","dataDir":"{}",
            "ranges":[[{{"subnet":"10.60.0.0/16"}}]]}}}}"#,
        dir.display()
    )
}

fn invoke(bin: &str, command: &str, id: &str, conf: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", "/var/run/netns/bench")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    child.stdin.take().unwrap().write_all(conf.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{bin} {command} {id} failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The n-th address handed out of 10.60.0.0/16 (from .0.2, the gateway being .0.1).
fn nth(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 60, 0, 2)) + n)
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Row {
    held: u32,
    inproc: Duration,
    nk_add: Duration,
    nk_del: Duration,
    hl_add: Duration,
    hl_del: Duration,
}

fn run_level(held: u32, iters_inproc: usize, iters_nk: usize, iters_hl: usize) -> Row {
    let root = Scratch(std::env::temp_dir().join(format!("netkit-ipam-bench-{}-{held}", std::process::id())));
    let _ = std::fs::remove_dir_all(&root.0);
    let nk_dir = root.0.join("netkit");
    let hl_dir = root.0.join("host-local");

    // netkit: fill through the allocator.
    let pool = IpamConfig::from_json(r#"{"ranges":[[{"subnet":"10.60.0.0/16"}]]}"#)
        .unwrap()
        .pool(NET)
        .unwrap();
    let ipam = Ipam::open(pool, &nk_dir, StoreOptions::default()).unwrap();
    for i in 0..held {
        ipam.allocate(&Owner::new(&format!("held{i}"), "eth0").unwrap(), &[])
            .unwrap();
    }
    // host-local: its own files, as it would have written them.
    let hl_net = hl_dir.join(NET);
    std::fs::create_dir_all(&hl_net).unwrap();
    for i in 0..held {
        std::fs::write(hl_net.join(nth(i).to_string()), format!("held{i}\r\neth0")).unwrap();
    }
    std::fs::write(hl_net.join("last_reserved_ip.0"), nth(held - 1).to_string()).unwrap();

    // In-process.
    let mut inproc = Vec::with_capacity(iters_inproc);
    for i in 0..iters_inproc {
        let owner = Owner::new(&format!("inproc{i}"), "eth0").unwrap();
        let t = Instant::now();
        ipam.allocate(&owner, &[]).unwrap();
        ipam.release(&owner).unwrap();
        inproc.push(t.elapsed());
    }
    assert_eq!(ipam.check().unwrap().held, held as usize);

    let per_process = |bin: &str, conf: &str, iters: usize, tag: &str| {
        let (mut adds, mut dels) = (Vec::new(), Vec::new());
        for i in 0..iters {
            let id = format!("{tag}{i}");
            adds.push(invoke(bin, "ADD", &id, conf));
            dels.push(invoke(bin, "DEL", &id, conf));
        }
        (median(adds), median(dels))
    };
    let (nk_add, nk_del) = per_process(NETKIT, &config("netkit-ipam", &nk_dir), iters_nk, "nk");
    let (hl_add, hl_del) = per_process(HOST_LOCAL, &config("host-local", &hl_dir), iters_hl, "hl");
    // Both stores still hold exactly the pre-filled addresses.
    assert_eq!(ipam.check().unwrap().held, held as usize);
    let hl_files = std::fs::read_dir(&hl_net).unwrap().count();
    assert_eq!(
        hl_files,
        held as usize + 2,
        "host-local: held files + last_reserved_ip.0 + lock"
    );
    Row {
        held,
        inproc: median(inproc),
        nk_add,
        nk_del,
        hl_add,
        hl_del,
    }
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a filter we do not support.
    assert!(
        Path::new(HOST_LOCAL).exists(),
        "{HOST_LOCAL} is missing: apt install containernetworking-plugins"
    );
    let quick = std::env::var_os("NETKIT_BENCH_QUICK").is_some();
    let (n_in, n_nk, n_hl) = if quick { (500, 30, 10) } else { (5000, 300, 40) };

    let spawn_base = median(
        (0..50)
            .map(|_| {
                let t = Instant::now();
                Command::new("/bin/true").status().unwrap();
                t.elapsed()
            })
            .collect(),
    );

    let rows: Vec<Row> = [100, 60_000]
        .into_iter()
        .map(|h| run_level(h, n_in, n_nk, n_hl))
        .collect();

    println!(
        "\nIPAM allocate-then-release, µs (median; {n_in} in-process / {n_nk} netkit / {n_hl} host-local iterations)"
    );
    println!("process spawn baseline (/bin/true): {:.0} µs\n", us(spawn_base));
    println!("| held | netkit in-process | netkit ADD | netkit DEL | netkit ADD+DEL | host-local ADD | host-local DEL | host-local ADD+DEL | host-local ÷ netkit |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let nk = us(r.nk_add) + us(r.nk_del);
        let hl = us(r.hl_add) + us(r.hl_del);
        println!(
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1}× |",
            r.held,
            us(r.inproc),
            us(r.nk_add),
            us(r.nk_del),
            nk,
            us(r.hl_add),
            us(r.hl_del),
            hl,
            hl / nk
        );
    }
    let (lo, hi) = (&rows[0], &rows[1]);
    let nk_lo = us(lo.nk_add) + us(lo.nk_del);
    let nk_hi = us(hi.nk_add) + us(hi.nk_del);
    let hl_hi = us(hi.hl_add) + us(hi.hl_del);
    println!(
        "\ntarget: per invocation at 60,000 held ≥ 20× faster than host-local: {:.1}× ({})",
        hl_hi / nk_hi,
        if hl_hi / nk_hi >= 20.0 { "met" } else { "MISSED" }
    );
    println!(
        "target: per invocation at 60,000 held within 1.5× of at 100: {:.2}× ({})",
        nk_hi / nk_lo,
        if nk_hi / nk_lo <= 1.5 { "met" } else { "MISSED" }
    );
    println!("in-process at 60,000 vs 100: {:.2}×", us(hi.inproc) / us(lo.inproc));
}
