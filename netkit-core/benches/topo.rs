//! Topology bench: a generated lab of N namespaces on B bridges (an address and a default
//! route each), made by netkit's topo apply and by the equivalent shell script on `ip -batch`,
//! in the same run; then re-applied unchanged (netkit) and torn down (netkit's destroy, the
//! script's `ip -batch` of deletes).
//!
//! ```sh
//! sudo cargo bench -p netkit-core --bench topo
//! NETKIT_BENCH_TOPO_N=1000 NETKIT_BENCH_TOPO_BRIDGES=10 NETKIT_BENCH_REPS=3 sudo -E cargo bench -p netkit-core --bench topo
//! ```
//!
//! The lab's host side (bridges, ports, the gateway addresses) lives in the bench's own "host"
//! namespace `nkt-host-<pid>`; nodes are `nkt<pid><m>-n<i>`. Nothing touches the machine's own
//! network; everything is deleted on exit, error or panic.

use std::error::Error;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use netkit_core::topo::{self, Format, Lab, TopoOptions};
use netkit_core::NetNs;

#[path = "common/iproute2.rs"]
mod iproute2;
use iproute2::{ip, ip_batch, ip_out};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn env_usize(name: &str, default: usize) -> Res<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().parse().map_err(|e| format!("{name}: {e}"))?),
        _ => Ok(default),
    }
}

/// Node `i`: bridge `i % b`, address `10.(100+bridge).(i/250).(i%250+2)/16`, gateway `.0.1`.
fn node_addr(i: usize, b: usize) -> (usize, String, String) {
    let br = i % b;
    (
        br,
        format!("10.{}.{}.{}/16", 100 + br, i / 250, i % 250 + 2),
        format!("10.{}.0.1", 100 + br),
    )
}

/// netkit's format of the lab.
fn lab_yaml(name: &str, n: usize, b: usize) -> String {
    let mut y = format!("name: {name}\ntopology:\n  nodes:\n    host:\n      kind: host\n      addresses:\n");
    for br in 0..b {
        let _ = writeln!(y, "        {name}b{br}: [10.{}.0.1/16]", 100 + br);
    }
    for br in 0..b {
        let _ = writeln!(y, "    {name}b{br}: {{kind: bridge}}");
    }
    for i in 0..n {
        let (_, addr, gw) = node_addr(i, b);
        let _ = writeln!(
            y,
            "    n{i}:\n      addresses: {{eth0: [{addr}]}}\n      routes: [{{dst: default, via: {gw}}}]"
        );
    }
    y.push_str("  links:\n");
    for i in 0..n {
        let (br, _, _) = node_addr(i, b);
        let _ = writeln!(y, "    - endpoints: [\"n{i}:eth0\", \"{name}b{br}:{name}p{i}\"]");
    }
    y
}

/// The same lab as a shell script on `ip -batch`, as one would write it: namespaces in one
/// batch, the host side in one, then one batch per node for what goes inside it.
fn script_setup(prefix: &str, host: &str, n: usize, b: usize) -> Res<()> {
    let mut ns = String::new();
    for i in 0..n {
        let _ = writeln!(ns, "netns add {prefix}-n{i}");
    }
    ip_batch(&[], &ns)?;
    let mut h = String::new();
    for br in 0..b {
        let _ = writeln!(h, "link add {prefix}b{br} type bridge\nlink set {prefix}b{br} up");
        let _ = writeln!(h, "addr add 10.{}.0.1/16 dev {prefix}b{br}", 100 + br);
    }
    for i in 0..n {
        let (br, _, _) = node_addr(i, b);
        let _ = writeln!(
            h,
            "link add {prefix}p{i} type veth peer name eth0 netns {prefix}-n{i}\nlink set {prefix}p{i} master {prefix}b{br} up"
        );
    }
    ip_batch(&["-n", host], &h)?;
    for i in 0..n {
        let (_, addr, gw) = node_addr(i, b);
        ip_batch(
            &["-n", &format!("{prefix}-n{i}")],
            &format!("link set lo up\nlink set eth0 up\naddr add {addr} dev eth0\nroute add default via {gw}\n"),
        )?;
    }
    Ok(())
}

fn script_teardown(prefix: &str, host: &str, n: usize, b: usize) -> Res<()> {
    let mut h = String::new();
    for i in 0..n {
        let _ = writeln!(h, "link del {prefix}p{i}");
    }
    for br in 0..b {
        let _ = writeln!(h, "link del {prefix}b{br}");
    }
    ip_batch(&["-n", host], &h)?;
    let mut ns = String::new();
    for i in 0..n {
        let _ = writeln!(ns, "netns del {prefix}-n{i}");
    }
    ip_batch(&[], &ns)
}

/// Every node has its address, and a sample pings its gateway.
fn verify(prefix: &str, host: &str, n: usize, b: usize) -> Res<()> {
    let up = ip_out(&["-n", host, "-o", "link", "show", "type", "veth"])?
        .lines()
        .filter(|l| l.contains("state UP"))
        .count();
    if up != n {
        return Err(format!("{up} of {n} ports are up").into());
    }
    for i in [0, n / 2, n - 1] {
        let (_, _, gw) = node_addr(i, b);
        ip(&[
            "netns",
            "exec",
            &format!("{prefix}-n{i}"),
            "ping",
            "-c1",
            "-W2",
            "-q",
            &gw,
        ])
        .map_err(|e| format!("node {i}: {e}"))?;
    }
    Ok(())
}

/// Deletes every namespace of this run (and the host) on drop.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(names) = NetNs::list() {
            for n in names.iter().filter(|n| n.starts_with(&self.0)) {
                let _ = NetNs::delete(n);
            }
        }
    }
}

/// Wait until the kernel has freed the namespaces deleted so far (bounded).
fn settle(host: &str) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while ip_out(&["-n", host, "netns", "list-id"])?.lines().count() > 0 {
        if Instant::now() > deadline {
            return Err("namespaces not freed after 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let n = env_usize("NETKIT_BENCH_TOPO_N", 1000)?;
    let b = env_usize("NETKIT_BENCH_TOPO_BRIDGES", 10)?.clamp(1, 99);
    let reps = env_usize("NETKIT_BENCH_REPS", 3)?.max(1);
    let pid = std::process::id();
    let _cleanup = Cleanup(format!("nkt{pid}"));
    let host = format!("nkt{pid}host");
    let host_ns = NetNs::create(&host)?;
    ip(&["-n", &host, "link", "set", "lo", "up"])?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let state = std::env::temp_dir().join(format!("nkt{pid}-state"));
    eprintln!("topo bench: N={n} nodes on {b} bridges, {reps} repetitions");
    let (mut apply, mut reapply, mut destroy, mut s_setup, mut s_teardown) = (vec![], vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        // netkit
        let name = format!("nkt{pid}k{rep}");
        let lab: Lab = topo::parse(&lab_yaml(&name, n, b), Format::Netkit)?;
        let mut opts = TopoOptions::new(host_ns.clone());
        opts.state_dir = state.clone();
        let t = Instant::now();
        let r = rt.block_on(topo::apply(&lab, &opts))?;
        apply.push(t.elapsed().as_secs_f64());
        verify(&name, &host, n, b)?;
        let t = Instant::now();
        let again = rt.block_on(topo::apply(&lab, &opts))?;
        reapply.push(t.elapsed().as_secs_f64());
        if !again.changes.is_empty() {
            return Err(format!("re-apply made {} changes", again.changes.len()).into());
        }
        let t = Instant::now();
        rt.block_on(topo::destroy(&lab, &opts))?;
        destroy.push(t.elapsed().as_secs_f64());
        settle(&host)?;
        eprintln!(
            "  rep {} netkit: apply {:.2} s ({} changes), re-apply {:.3} s, destroy {:.2} s",
            rep + 1,
            apply[rep],
            r.changes.len(),
            reapply[rep],
            destroy[rep]
        );
        // The script
        let prefix = format!("nkt{pid}s{rep}");
        let t = Instant::now();
        script_setup(&prefix, &host, n, b)?;
        s_setup.push(t.elapsed().as_secs_f64());
        verify(&prefix, &host, n, b)?;
        let t = Instant::now();
        script_teardown(&prefix, &host, n, b)?;
        s_teardown.push(t.elapsed().as_secs_f64());
        settle(&host)?;
        eprintln!(
            "  rep {} ip -batch script: setup {:.2} s, teardown {:.2} s",
            rep + 1,
            s_setup[rep],
            s_teardown[rep]
        );
    }
    let _ = std::fs::remove_dir_all(&state);
    let (a, ra, d, ss, st) = (
        median(apply),
        median(reapply),
        median(destroy),
        median(s_setup),
        median(s_teardown),
    );
    let machine = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())?;
    println!(
        "Machine: kernel {machine}, {} CPUs; N={n} nodes on {b} bridges, medians of {reps}",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    println!();
    println!("| | netkit topo | ip -batch script | netkit ÷ script |");
    println!("|---|---:|---:|---:|");
    println!("| setup (s) | {a:.2} | {ss:.2} | {:.2} |", a / ss);
    println!("| re-apply unchanged (s) | {ra:.3} | – | – |");
    println!("| teardown (s) | {d:.2} | {st:.2} | {:.3} |", d / st);
    println!();
    println!(
        "- setup ≤ 0.5× the script: {} ({:.2})",
        if a <= 0.5 * ss { "met" } else { "MISSED" },
        a / ss
    );
    println!(
        "- re-apply ≤ 5% of the first apply: {} ({:.1} %)",
        if ra <= 0.05 * a { "met" } else { "MISSED" },
        100.0 * ra / a
    );
    println!(
        "- teardown per namespace ≥ 10× faster than the script's: {} ({:.1}×)",
        if st >= 10.0 * d { "met" } else { "MISSED" },
        st / d
    );
    Ok(())
}
