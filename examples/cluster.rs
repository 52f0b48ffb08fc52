//! Pods across nodes with netkit's overlay agent, on a simulated cluster: N nodes (namespaces on
//! one underlay bridge), each running `netkit_core::overlay::Agent` on a shared file lease store,
//! P pods per node attached from the subnet file its agent wrote. Waits until the agents have
//! programmed each other, then prints the reachability matrix (every pod pings every other) and
//! each agent's status.
//!
//! ```sh
//! sudo cargo run -p netkit-examples --example cluster -- --backend vxlan
//! sudo cargo run -p netkit-examples --example cluster -- --backend host-gw --nodes 4 --pods 1
//! ```
//!
//! Backends: `vxlan`, `vxlan-direct` (vxlan with DirectRouting), `host-gw`, `udp`
//! (`udp-batched`, `udp-single`: without the offloads, one packet per system call). Everything lives in
//! namespaces made here (the machine's own network is not touched) and is deleted on exit,
//! also on Ctrl-C. The code is `netkit_examples::scenarios::cluster`.

use netkit_examples::scenarios::cluster;
use netkit_examples::Error;
use netkit_test_support::overlay::{backend, BACKENDS};

const USAGE: &str =
    "usage: cluster [--backend vxlan|vxlan-direct|host-gw|udp|udp-batched|udp-single] [--nodes N] [--pods P]";

struct Args {
    backend: String,
    nodes: usize,
    pods: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        backend: "vxlan".into(),
        nodes: 3,
        pods: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str, max: usize| -> Result<usize, String> {
            match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!("{flag} {v:?}: a number from 1 to {max}")),
            }
        };
        match flag.as_str() {
            "--backend" => a.backend = value,
            "--nodes" => a.nodes = number(&value, 50)?,
            "--pods" => a.pods = number(&value, 20)?,
            _ => return Err(format!("unknown option {flag:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

async fn run(args: Args) -> Result<(), Error> {
    let cfg = backend(&args.backend)
        .ok_or_else(|| format!("unknown backend {:?} (one of {})", args.backend, BACKENDS.join(", ")))?;
    println!(
        "building {} nodes × {} pods, backend {} …",
        args.nodes, args.pods, args.backend
    );
    let lab = cluster::build("cl", cfg, args.nodes, args.pods).await?;
    println!(
        "the agents converged in {:.0?} (lab namespace {}, underlay 192.168.50.0/24)\n",
        lab.converged_in,
        lab.lab_name()
    );
    // Blocking pings on this worker (the runtime's other worker drives the agents); a Ctrl-C
    // meanwhile is acted on once they end (the terminal's SIGINT ends them early too).
    let matrix = tokio::task::block_in_place(|| lab.matrix());
    println!("reachability (ping, row → column):");
    print!("{}", lab.render(&matrix));
    let failed = matrix.iter().flatten().filter(|ok| !**ok).count();
    println!("\nagents:");
    print!("{}", lab.statuses());
    if failed > 0 {
        return Err(format!("{failed} pod pairs cannot reach each other").into());
    }
    println!("\nevery pod reaches every other pod; cleaning up");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("cluster: run as root (it creates network namespaces)");
        std::process::exit(1);
    }
    // Ctrl-C drops `run` (and with it the lab: agents stopped, namespaces deleted).
    let result = tokio::select! {
        r = run(args) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted; cleaning up".into()),
    };
    if let Err(e) = result {
        eprintln!("cluster: {e}");
        std::process::exit(1);
    }
}
