//! Firewall benchmark (run as root; everything happens in namespaces this program creates).
//!
//! 1. Port mappings: time to add one mapping (a new owner) and to remove it again (teardown),
//!    with 10, 1,000 and 10,000 mappings already present, for the nftables driver, the
//!    iptables driver and the reference CNI `portmap` plugin (/usr/lib/cni/portmap, Debian
//!    containernetworking-plugins, iptables backend) in the same run. portmap's existing
//!    mappings are loaded with one iptables-restore in exactly the layout portmap itself writes
//!    (a `CNI-DN-<hash>` chain per container with its three rules, and a jump in
//!    `CNI-HOSTPORT-DNAT`), since creating 10,000 through portmap would take hours.
//! 2. Services: first-connection latency (TCP connect + one echo, a new connection each time,
//!    so every one goes through the NAT rules) to a ClusterIP when 10 or 10,000 services exist,
//!    for both drivers.
//!
//! `cargo bench -p netkit-core --bench firewall`; `NETKIT_BENCH_QUICK=1` for fewer iterations
//! and no 10,000 level. Figures are medians.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use netkit_core::firewall::{self, Driver, Endpoint, Firewall, FirewallOptions, PortMapping, Protocol, Rules, Service};
use netkit_core::link::Veth;
use netkit_core::{NetNs, NetNsGuard};
use netkit_test_support::unique;

const PORTMAP: &str = "/usr/lib/cni/portmap";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ctr_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 88, 0, 2)) + i))
}

fn options(driver: Driver, dir: &Scratch) -> FirewallOptions {
    FirewallOptions::default().driver(driver).state_dir(&dir.0)
}

/// Prefill `n` port mappings (owners of up to 100 mappings each), ports 10000.. .
async fn prefill_mappings(fw: &impl Firewall, n: u32) {
    let mut i = 0;
    while i < n {
        let chunk = (n - i).min(100);
        let rules = Rules {
            port_mappings: (i..i + chunk)
                .map(|k| PortMapping::new(Protocol::Tcp, 10000 + k as u16, ctr_ip(k), 80))
                .collect(),
            ..Default::default()
        };
        fw.add(&format!("pre{i}"), &rules).await.expect("prefill");
        i += chunk;
    }
}

async fn bench_driver_mappings(driver: Driver, n: u32, iters: usize) -> (Duration, Duration) {
    let ns = NetNsGuard::create(&unique(&format!("m{}{n}", driver.as_str()))).expect("netns");
    let dir = Scratch(std::env::temp_dir().join(unique(&format!("fwstate-{}-{n}", driver.as_str()))));
    let fw = firewall::open(&ns, options(driver, &dir)).await.expect("open firewall");
    prefill_mappings(&fw, n).await;
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for i in 0..iters {
        let owner = format!("bench{i}");
        let rules = Rules {
            port_mappings: vec![PortMapping::new(Protocol::Tcp, 5000, ctr_ip(60000), 80)],
            ..Default::default()
        };
        let t = Instant::now();
        fw.add(&owner, &rules).await.expect("add");
        adds.push(t.elapsed());
        let t = Instant::now();
        fw.teardown(&owner).await.expect("teardown");
        dels.push(t.elapsed());
    }
    for o in fw.owners().await.unwrap() {
        fw.teardown(&o).await.unwrap();
    }
    (median(adds), median(dels))
}

/// portmap's own layout for `n` containers, one mapping each (see the module docs).
fn portmap_prefill(ns: &NetNs, n: u32) {
    let mut chains = String::from("*nat\n");
    let mut rules = String::new();
    for i in 0..n {
        let chain = format!(
            "CNI-DN-{:021x}",
            (u128::from(i) * 0x9e37_79b9_7f4a_7c15) & ((1u128 << 84) - 1)
        );
        let port = 10000 + i;
        chains += &format!(":{chain} - [0:0]\n");
        rules += &format!("-A {chain} -s 10.88.0.0/16 -p tcp -m tcp --dport {port} -j CNI-HOSTPORT-SETMARK\n");
        rules += &format!("-A {chain} -s 127.0.0.1/32 -p tcp -m tcp --dport {port} -j CNI-HOSTPORT-SETMARK\n");
        rules += &format!(
            "-A {chain} -p tcp -m tcp --dport {port} -j DNAT --to-destination {}:80\n",
            ctr_ip(i)
        );
        rules += &format!(
            "-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"benchnet\\\" id: \\\"pre{i}\\\"\" -m multiport --dports {port} -j {chain}\n"
        );
    }
    let input = format!("{chains}{rules}COMMIT\n");
    let mut child = ns
        .command("iptables-restore")
        .args(["--noflush", "-w"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("iptables-restore");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "portmap prefill failed");
}

fn portmap_call(ns: &NetNs, nsname: &str, command: &str, id: &str) -> Duration {
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"benchnet","type":"portmap","capabilities":{{"portMappings":true}},"snat":true,
        "runtimeConfig":{{"portMappings":[{{"hostPort":5000,"containerPort":80,"protocol":"tcp"}}]}},
        "prevResult":{{"cniVersion":"1.0.0","interfaces":[{{"name":"eth0","sandbox":"/var/run/netns/{nsname}"}}],
                       "ips":[{{"address":"{}/16","interface":0}}]}}}}"#,
        ctr_ip(60000)
    );
    let t = Instant::now();
    let mut child = ns
        .command(PORTMAP)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", format!("/var/run/netns/{nsname}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run portmap");
    child.stdin.take().unwrap().write_all(conf.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "portmap {command}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    took
}

fn bench_portmap(n: u32, iters: usize) -> (Duration, Duration) {
    let name = unique(&format!("pm{n}"));
    let ns = NetNsGuard::create(&name).expect("netns");
    if n > 0 {
        // portmap's fixed chains first (one real call makes them), then the prefill.
        portmap_call(&ns, &name, "ADD", "warmup");
        portmap_call(&ns, &name, "DEL", "warmup");
        portmap_prefill(&ns, n);
    }
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for i in 0..iters {
        let id = format!("bench{i}");
        adds.push(portmap_call(&ns, &name, "ADD", &id));
        dels.push(portmap_call(&ns, &name, "DEL", &id));
    }
    (median(adds), median(dels))
}

/// Host namespace with an endpoint namespace behind a veth: 10.77.0.1 (host) – 10.77.0.2 (ep).
async fn service_topology(tag: &str) -> (NetNsGuard, NetNsGuard) {
    let host = NetNsGuard::create(&unique(&format!("sh{tag}"))).expect("netns");
    let ep = NetNsGuard::create(&unique(&format!("se{tag}"))).expect("netns");
    let h = host.handle().await.unwrap();
    let e = ep.handle().await.unwrap();
    h.link_set_up("lo").await.unwrap();
    e.link_set_up("lo").await.unwrap();
    h.link_add(&Veth::new("toep", "eth0").peer_netns(&ep).up())
        .await
        .unwrap();
    e.link_set_up("eth0").await.unwrap();
    h.addr_add("toep", "10.77.0.1/24".parse().unwrap()).await.unwrap();
    e.addr_add("eth0", "10.77.0.2/24".parse().unwrap()).await.unwrap();
    // The host needs a route for service addresses: routing picks the way out before OUTPUT's
    // DNAT rewrites the destination (kube-proxy hosts have a default route for this).
    h.route_add(&netkit_core::Route::new("10.96.0.0/12".parse().unwrap()).gateway("10.77.0.2".parse().unwrap()))
        .await
        .unwrap();
    (host, ep)
}

fn echo_server(ep: &NetNs) -> std::thread::JoinHandle<()> {
    let listener = ep.run(|| TcpListener::bind("10.77.0.2:8080")).unwrap().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).is_ok() {
                if b[0] == b'q' {
                    return;
                }
                let _ = s.write_all(&b);
            }
        }
    })
}

async fn bench_services(driver: Driver, n: u32, conns: usize) -> Duration {
    let (host, ep) = service_topology(&format!("{}{n}", &driver.as_str()[..1])).await;
    let dir = Scratch(std::env::temp_dir().join(unique(&format!("fwsvc-{}-{n}", driver.as_str()))));
    let fw = firewall::open(&host, options(driver, &dir))
        .await
        .expect("open firewall");
    let vip = |k: u32| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + k));
    let mut k = 0;
    while k < n {
        let chunk = (n - k).min(1000);
        let services = (k..k + chunk)
            .map(|i| {
                Service::new(&format!("svc{i}"), Protocol::Tcp, vip(i), 80)
                    .endpoint(Endpoint::new("10.77.0.2".parse().unwrap(), 8080))
            })
            .collect();
        let rules = Rules {
            services,
            ..Default::default()
        };
        fw.add(&format!("svcowner{k}"), &rules).await.expect("add services");
        k += chunk;
    }
    let server = echo_server(&ep);
    // The last service created: with iptables, the one behind every other rule.
    let target = SocketAddr::new(vip(n - 1), 80);
    let times = host
        .run(move || {
            let mut times = Vec::with_capacity(conns);
            for _ in 0..conns {
                let t = Instant::now();
                let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2)).expect("connect via VIP");
                s.write_all(b"x").unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                times.push(t.elapsed());
            }
            let _ = TcpStream::connect(SocketAddr::new("10.77.0.2".parse().unwrap(), 8080))
                .and_then(|mut s| s.write_all(b"q"));
            times
        })
        .unwrap();
    let _ = server.join();
    for o in fw.owners().await.unwrap() {
        fw.teardown(&o).await.unwrap();
    }
    median(times)
}

#[tokio::main]
async fn main() {
    let quick = std::env::var_os("NETKIT_BENCH_QUICK").is_some();
    // NETKIT_BENCH_IPTABLES=0 leaves the iptables driver out (it is slow at 10,000).
    let with_ipt = std::env::var("NETKIT_BENCH_IPTABLES").map(|v| v != "0").unwrap_or(true);
    assert!(
        std::path::Path::new(PORTMAP).exists(),
        "{PORTMAP} missing: apt install containernetworking-plugins"
    );
    let levels: &[u32] = if quick { &[10, 1000] } else { &[10, 1000, 10000] };

    println!("\n## Port mappings: add one / remove one, ms (median)\n");
    println!(
        "| existing | nftables add | nftables remove | iptables add | iptables remove | portmap ADD | portmap DEL |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut nft_rows = Vec::new();
    let mut pm_rows = Vec::new();
    for &n in levels {
        let nft = bench_driver_mappings(Driver::Nftables, n, if quick { 20 } else { 100 }).await;
        let ipt = if with_ipt {
            bench_driver_mappings(Driver::Iptables, n, if quick { 5 } else { 20 }).await
        } else {
            (Duration::ZERO, Duration::ZERO)
        };
        let pm = bench_portmap(n, if n >= 10000 || quick { 5 } else { 20 });
        println!(
            "| {n} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
            ms(nft.0),
            ms(nft.1),
            ms(ipt.0),
            ms(ipt.1),
            ms(pm.0),
            ms(pm.1)
        );
        nft_rows.push(nft);
        pm_rows.push(pm);
    }
    let (lo, hi) = (nft_rows[0], *nft_rows.last().unwrap());
    let pm_hi = *pm_rows.last().unwrap();
    let top = levels.last().unwrap();
    println!(
        "\nnftables at {top} vs 10: add {:.2}×, remove {:.2}× (target ≤ 1.5×)",
        ms(hi.0) / ms(lo.0),
        ms(hi.1) / ms(lo.1)
    );
    println!(
        "portmap ÷ nftables at {top}: add {:.0}×, remove {:.0}× (target ≥ 20×)",
        ms(pm_hi.0) / ms(hi.0),
        ms(pm_hi.1) / ms(hi.1)
    );

    let svc_levels: &[u32] = if quick { &[10, 1000] } else { &[10, 10000] };
    println!("\n## ClusterIP first-connection latency, µs (median of new connections)\n");
    println!("| services | nftables | iptables |");
    println!("|---:|---:|---:|");
    let mut nft_lat = Vec::new();
    for &n in svc_levels {
        let conns = if quick { 100 } else { 500 };
        let nft = bench_services(Driver::Nftables, n, conns).await;
        let ipt = if with_ipt {
            bench_services(Driver::Iptables, n, conns).await
        } else {
            Duration::ZERO
        };
        println!("| {n} | {:.0} | {:.0} |", ms(nft) * 1e3, ms(ipt) * 1e3);
        nft_lat.push(nft);
    }
    println!(
        "\nnftables first connection at {} vs {} services: {:.2}× (target ≤ 1.5×)",
        svc_levels.last().unwrap(),
        svc_levels[0],
        ms(*nft_lat.last().unwrap()) / ms(nft_lat[0])
    );
}
