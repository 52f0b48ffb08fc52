//! Container setup/teardown benchmark: netkit against `ip -batch` and against
//! one `ip` process per command, in the same run, on the real kernel.
//!
//! ```sh
//! sudo cargo bench -p netkit-core --bench containers
//! NETKIT_BENCH_N=100,1000 NETKIT_BENCH_REPS=3 sudo -E cargo bench -p netkit-core --bench containers
//! NETKIT_BENCH_QUICK=1 sudo -E cargo bench -p netkit-core --bench containers   # CI smoke: N=10,50, 1 rep
//! NETKIT_BENCH_METHODS=nk,vn,fl NETKIT_BENCH_WORK=full sudo -E cargo bench -p netkit-core --bench containers
//! ```
//!
//! Methods (`NETKIT_BENCH_METHODS`, default all): `nk` netkit one container after the other
//! (`container::setup`) and torn down one by one (`container::teardown`), `nkm` netkit with
//! every container at once (`container::setup_many`, one task per core) and torn down in bulk
//! (`container::teardown_many`), `vn` vishvananda (Go:
//! `tools/vnbench`, vishvananda/netlink + netns, built with Debian's Go), `go` netkit's Go
//! package (`tools/nkgobench`: vnbench's program, call for call, on netkit), `c` netkit's C API
//! (`tools/ncbench`: the same calls from C), `nkc` the same calls on netkit-core from Rust
//! ([`netkit_calls_setup`]), `fl` the floor (the same requests from raw blocking sockets on one
//! thread: [`floor`]), `ib` `ip -batch`, `ic` one `ip` per command. See [`external`].
//!
//! # What one "container" is
//!
//! Every method does exactly the same kernel work per container, in this order:
//!
//! 1. create a named namespace `nkb-<pid>-<method>-<i>` under `/run/netns` (like `ip netns add`);
//! 2. in the bench's private "host" namespace `nkb-host-<pid>`, create veth `vb<i>` with its
//!    peer `eth0` born directly inside the container namespace, the host end brought up in
//!    the same request (`ip link add vb<i> up type veth peer name eth0 netns C`);
//! 3. *(work = full)* address `10.200.x.y+1/30` on `vb<i>`;
//! 4. bring `lo` up inside the container;
//! 5. bring `eth0` up;
//! 6. *(work = full)* address `10.200.x.y+2/30` on `eth0`, default route via the host end.
//!
//! Teardown, for every method but `nkm`: delete `vb<i>` in the host namespace (this removes the
//! pair synchronously), then delete the container's name (unmount + unlink, like
//! `ip netns del`). The kernel frees the namespace itself later (`cleanup_net`); teardown
//! is timed until the calls return, for all methods alike, and the bench waits for the
//! machine to go idle before the next phase. `nkm` deletes every `vb<i>` in one request
//! (`Handle::link_del_many`), then the names.
//!
//! Two work profiles: `full` (the task above) and `links` (steps 1, 2, 4, 5 only), each
//! method compared with the others doing identical work.
//!
//! Nothing touches the machine's own network: links and addresses exist only in the
//! namespaces created here, and a guard deletes every one of them on exit, error, panic
//! or Ctrl-C. Leftovers of a killed earlier run (dead pid) are removed at start.

use std::error::Error;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netkit_core::container::{self, Container, ContainerSpec};
use netkit_core::link::Veth;
use netkit_core::route::Route;
use netkit_core::{Handle, NetNs};

use external::Program;

mod external;
mod floor;
#[path = "../common/iproute2.rs"]
mod iproute2;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Whether netkit's `full` profile is compiled in (addr/route API available).

// ---------------------------------------------------------------------------
// Configuration

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Netkit,
    NetkitMany,
    NetkitCalls,
    NetkitC,
    NetkitGo,
    Vishvananda,
    Floor,
    IpBatch,
    IpCmd,
}

impl Method {
    const ALL: [Method; 9] = [
        Method::Netkit,
        Method::NetkitMany,
        Method::NetkitCalls,
        Method::NetkitC,
        Method::NetkitGo,
        Method::Vishvananda,
        Method::Floor,
        Method::IpBatch,
        Method::IpCmd,
    ];
    fn tag(self) -> &'static str {
        match self {
            Method::Netkit => "nk",
            Method::NetkitMany => "nkm",
            Method::NetkitCalls => "nkc",
            Method::NetkitC => "c",
            Method::NetkitGo => "go",
            Method::Vishvananda => "vn",
            Method::Floor => "fl",
            Method::IpBatch => "ib",
            Method::IpCmd => "ic",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Method::Netkit => "netkit",
            Method::NetkitMany => "netkit many",
            Method::NetkitCalls => "netkit calls",
            Method::NetkitC => "netkit C",
            Method::NetkitGo => "netkit Go",
            Method::Vishvananda => "vishvananda",
            Method::Floor => "floor",
            Method::IpBatch => "ip -batch",
            Method::IpCmd => "ip per command",
        }
    }
    fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.tag() == s || m.label() == s)
    }
    /// The external program that does this method's work, if any.
    fn program(self) -> Option<Program> {
        match self {
            Method::NetkitC => Some(Program::NetkitC),
            Method::NetkitGo => Some(Program::NetkitGo),
            Method::Vishvananda => Some(Program::Vishvananda),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    Full,
    Links,
}

impl Work {
    fn label(self) -> &'static str {
        match self {
            Work::Full => "full",
            Work::Links => "links",
        }
    }
}

struct Config {
    ns: Vec<usize>,
    reps: usize,
    works: Vec<Work>,
    methods: Vec<Method>,
    ping_samples: usize,
}

fn env_list(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

fn config() -> Res<Config> {
    let quick = std::env::var("NETKIT_BENCH_QUICK").is_ok_and(|v| v == "1");
    let ns_text = env_list("NETKIT_BENCH_N").unwrap_or_else(|| if quick { "10,50" } else { "100,1000" }.into());
    let mut ns = Vec::new();
    for part in ns_text.split(',') {
        let n: usize = part
            .trim()
            .parse()
            .map_err(|e| format!("NETKIT_BENCH_N: {part:?}: {e}"))?;
        if n == 0 || n > 16_000 {
            return Err(format!("NETKIT_BENCH_N: {n} out of range 1..=16000").into());
        }
        ns.push(n);
    }
    let reps = match env_list("NETKIT_BENCH_REPS") {
        Some(r) => r.trim().parse().map_err(|e| format!("NETKIT_BENCH_REPS: {e}"))?,
        None if quick => 1,
        None => 3,
    };
    if reps == 0 {
        return Err("NETKIT_BENCH_REPS must be at least 1".into());
    }
    let works_text = env_list("NETKIT_BENCH_WORK").unwrap_or_else(|| "full,links".into());
    let mut works = Vec::new();
    for w in works_text.split(',') {
        works.push(match w.trim() {
            "full" => Work::Full,
            "links" => Work::Links,
            other => return Err(format!("NETKIT_BENCH_WORK: unknown profile {other:?} (full, links)").into()),
        });
    }
    let methods = match env_list("NETKIT_BENCH_METHODS") {
        None => Method::ALL.to_vec(),
        Some(text) => text
            .split(',')
            .map(|m| {
                Method::parse(m.trim()).ok_or_else(|| {
                    format!("NETKIT_BENCH_METHODS: unknown method {m:?} (nk, nkm, vn, fl, ib, ic)").into()
                })
            })
            .collect::<Res<Vec<_>>>()?,
    };
    Ok(Config {
        ns,
        reps,
        works,
        methods,
        ping_samples: 5,
    })
}

// ---------------------------------------------------------------------------
// Names, addresses, cleanup

struct Ctr {
    ns: String,
    host_if: String,
    host_ip: Ipv4Addr,
    ctr_ip: Ipv4Addr,
}

fn containers(method: Method, n: usize) -> Vec<Ctr> {
    let pid = std::process::id();
    (0..n)
        .map(|i| {
            // One /30 per container in 10.200.0.0/16: .1 host end, .2 eth0.
            let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) + 4 * i as u32;
            Ctr {
                ns: format!("nkb-{pid}-{}-{i}", method.tag()),
                host_if: format!("vb{i}"),
                host_ip: Ipv4Addr::from(base + 1),
                ctr_ip: Ipv4Addr::from(base + 2),
            }
        })
        .collect()
}

fn host_ns_name() -> String {
    format!("nkb-host-{}", std::process::id())
}

/// Is `name` one of ours (`pid == None`: of any run whose process is gone)?
fn owned_by(name: &str, pid: Option<u32>) -> bool {
    let rest = match name.strip_prefix("nkb-host-").or_else(|| name.strip_prefix("nkb-")) {
        Some(r) => r,
        None => return false,
    };
    let Some(p) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    match pid {
        Some(pid) => p == pid,
        None => !std::path::Path::new(&format!("/proc/{p}")).exists(),
    }
}

/// Delete every namespace name of this run (or, with `None`, of dead runs);
/// container names first, the host last.
fn delete_namespaces(pid: Option<u32>) -> usize {
    let mut names: Vec<String> = NetNs::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| owned_by(n, pid))
        .collect();
    names.sort_by_key(|n| n.starts_with("nkb-host-"));
    for n in &names {
        if let Err(e) = NetNs::delete(n) {
            eprintln!("cleanup: {e}");
        }
    }
    names.len()
}

/// Deletes every namespace this process created, on any exit path (also panic).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let n = delete_namespaces(Some(std::process::id()));
        if n > 0 {
            eprintln!("cleanup: deleted {n} namespaces");
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> Res<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

fn check_stop() -> Res<()> {
    if STOP.load(Ordering::SeqCst) {
        return Err("interrupted".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// iproute2

use iproute2::{ip, ip_batch, ip_out};

fn ipcmd_setup(host: &str, work: Work, ctrs: &[Ctr]) -> Res<()> {
    for c in ctrs {
        check_stop()?;
        let (ns, vb) = (c.ns.as_str(), c.host_if.as_str());
        let host_net = format!("{}/30", c.host_ip);
        let ctr_net = format!("{}/30", c.ctr_ip);
        let gw = c.host_ip.to_string();
        ip(&["netns", "add", ns])?;
        ip(&[
            "-n", host, "link", "add", vb, "up", "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        if work == Work::Full {
            ip(&["-n", host, "addr", "add", &host_net, "dev", vb])?;
        }
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        if work == Work::Full {
            ip(&["-n", ns, "addr", "add", &ctr_net, "dev", "eth0"])?;
            ip(&["-n", ns, "route", "add", "default", "via", &gw, "dev", "eth0"])?;
        }
    }
    Ok(())
}

fn ipcmd_teardown(host: &str, ctrs: &[Ctr]) -> Res<()> {
    for c in ctrs {
        check_stop()?;
        ip(&["-n", host, "link", "del", &c.host_if])?;
    }
    for c in ctrs {
        check_stop()?;
        ip(&["netns", "del", &c.ns])?;
    }
    Ok(())
}

/// The fastest honest use of iproute2: one batch for all `netns add` (run in the
/// bench's own namespaces: inside `ip -n HOST` the mount namespace is private and the
/// new names would be invisible), one `ip -n HOST -batch` for all host-side lines, and
/// one `ip -n C -batch` per container (a batch cannot switch namespace).
fn ipbatch_setup(host: &str, work: Work, ctrs: &[Ctr]) -> Res<()> {
    let mut nsadd = String::new();
    let mut hostside = String::new();
    for c in ctrs {
        writeln!(nsadd, "netns add {}", c.ns)?;
        writeln!(
            hostside,
            "link add {} up type veth peer name eth0 netns {}",
            c.host_if, c.ns
        )?;
        if work == Work::Full {
            writeln!(hostside, "addr add {}/30 dev {}", c.host_ip, c.host_if)?;
        }
    }
    ip_batch(&[], &nsadd)?;
    ip_batch(&["-n", host], &hostside)?;
    for c in ctrs {
        check_stop()?;
        let mut inside = String::from("link set lo up\nlink set eth0 up\n");
        if work == Work::Full {
            writeln!(inside, "addr add {}/30 dev eth0", c.ctr_ip)?;
            writeln!(inside, "route add default via {} dev eth0", c.host_ip)?;
        }
        ip_batch(&["-n", &c.ns], &inside)?;
    }
    Ok(())
}

fn ipbatch_teardown(host: &str, ctrs: &[Ctr]) -> Res<()> {
    let mut links = String::new();
    let mut names = String::new();
    for c in ctrs {
        writeln!(links, "link del {}", c.host_if)?;
        writeln!(names, "netns del {}", c.ns)?;
    }
    ip_batch(&["-n", host], &links)?;
    ip_batch(&[], &names)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// netkit

/// Time spent in each step of netkit's setup, summed over containers.
/// The spec of container `c` for `work`: the "links" profile has no addresses and no route.
fn netkit_spec(work: Work, c: &Ctr) -> Res<ContainerSpec> {
    use ipnetwork::{IpNetwork, Ipv4Network};
    let spec = ContainerSpec::new(&c.ns, &c.host_if);
    Ok(match work {
        Work::Links => spec,
        Work::Full => spec
            .host_addr(IpNetwork::V4(Ipv4Network::new(c.host_ip, 30)?))
            .addr(IpNetwork::V4(Ipv4Network::new(c.ctr_ip, 30)?))
            .gateway(std::net::IpAddr::V4(c.host_ip)),
    })
}

/// netkit, one container after the other: [`container::setup`] (namespace and its socket in
/// one helper trip, the pair, the host address, then one batch inside).
async fn netkit_setup(host_ns: &NetNs, work: Work, ctrs: &[Ctr]) -> Res<Vec<Container>> {
    let host = host_ns.handle().await?;
    let mut made = Vec::with_capacity(ctrs.len());
    for c in ctrs {
        check_stop()?;
        made.push(container::setup(&host, &netkit_spec(work, c)?).await?);
    }
    Ok(made)
}

/// netkit, every container at once: [`container::setup_many`], one task per core.
async fn netkit_setup_many(host_ns: &NetNs, work: Work, ctrs: &[Ctr]) -> Res<Vec<Container>> {
    let specs = ctrs.iter().map(|c| netkit_spec(work, c)).collect::<Res<Vec<_>>>()?;
    let mut made = Vec::with_capacity(ctrs.len());
    for r in container::setup_many(host_ns, specs, 0).await {
        made.push(r?);
    }
    Ok(made)
}

/// netkit's one-by-one teardown, in the order every other method uses (each pair with its own
/// `link_del_by_index`: a wait for the kernel per pair, then every name), or the bulk one
/// ([`container::teardown_many`]: one wait for all pairs, then every name).
async fn netkit_teardown(host_ns: &NetNs, made: &[Container], bulk: bool) -> Res<()> {
    let host = host_ns.handle().await?;
    if bulk {
        container::teardown_many(&host, made).await?;
        return Ok(());
    }
    for c in made {
        check_stop()?;
        host.link_del_by_index(c.host_index).await?;
    }
    for c in made {
        check_stop()?;
        NetNs::delete(&c.netns)?;
    }
    Ok(())
}

/// netkit-core called the way tools/ncbench calls the C API and tools/nkgobench the Go
/// package (both ports of tools/vnbench): one call per step, the lookups vnbench makes
/// (`link_get` before using a device), addresses added by the index it gave. Against `netkit C` and `netkit Go` it
/// shows what the C ABI and cgo add to the same calls.
async fn netkit_calls_setup(host_ns: &NetNs, work: Work, ctrs: &[Ctr]) -> Res<Vec<Container>> {
    let host = Handle::new(host_ns).await?;
    let mut made = Vec::with_capacity(ctrs.len());
    for c in ctrs {
        check_stop()?;
        let ns = NetNs::create(&c.ns)?;
        let host_end = host
            .link_add(&Veth::new(&c.host_if, "eth0").peer_netns(&ns).up())
            .await?;
        if work == Work::Full {
            let index = host.link_get(&c.host_if).await?.index;
            host.addr_add_index(index, ipnetwork::Ipv4Network::new(c.host_ip, 30)?.into())
                .await?;
        }
        let h = Handle::new(&ns).await?;
        let mut index = 0;
        for dev in ["lo", "eth0"] {
            index = h.link_get(dev).await?.index;
            h.link_set(dev).up().apply().await?;
        }
        if work == Work::Full {
            h.addr_add_index(index, ipnetwork::Ipv4Network::new(c.ctr_ip, 30)?.into())
                .await?;
            h.route_add(&Route::default_v4().gateway(c.host_ip.into()).dev_index(index))
                .await?;
        }
        made.push(Container {
            netns: c.ns.clone(),
            host_if: c.host_if.clone(),
            host_index: host_end.index,
            index,
        });
    }
    Ok(made)
}

/// The teardown of tools/ncbench and tools/nkgobench, from Rust: `link_get` + `link_del` by
/// name per host end, then every name.
async fn netkit_calls_teardown(host_ns: &NetNs, made: &[Container]) -> Res<()> {
    let host = Handle::new(host_ns).await?;
    for c in made {
        check_stop()?;
        host.link_get(&c.host_if).await?;
        host.link_del(&c.host_if).await?;
    }
    for c in made {
        check_stop()?;
        NetNs::delete(&c.netns)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Checks and settling (never timed)

/// Verify the setup with iproute2 (independent of the method measured): every host end
/// has carrier (so every `eth0` is up), and a sample of containers has lo up, its
/// address, its default route and answers a ping to the host end.
fn verify_setup(host: &str, work: Work, ctrs: &[Ctr], samples: usize) -> Res<()> {
    let links = ip_out(&["-n", host, "-o", "link", "show", "type", "veth"])?;
    let up = links
        .lines()
        .filter(|l| l.contains(": vb") && l.contains("state UP"))
        .count();
    if up != ctrs.len() {
        return Err(format!("setup check: {up} of {} host veth ends have carrier", ctrs.len()).into());
    }
    if work == Work::Full {
        let addrs = ip_out(&["-n", host, "-4", "-o", "addr", "show"])?;
        let n = addrs.lines().filter(|l| l.contains("inet 10.200.")).count();
        if n != ctrs.len() {
            return Err(format!("setup check: {n} of {} host-side addresses present", ctrs.len()).into());
        }
    }
    let len = ctrs.len();
    let mut idx: Vec<usize> = (0..samples)
        .map(|k| k * (len - 1) / samples.max(2).saturating_sub(1))
        .collect();
    idx.push(len - 1);
    idx.sort_unstable();
    idx.dedup();
    for i in idx.into_iter().filter(|&i| i < len) {
        let c = &ctrs[i];
        let lo = ip_out(&["-n", &c.ns, "-o", "link", "show", "lo"])?;
        if !lo.contains(",UP") {
            return Err(format!("setup check: lo is not up in {}: {lo}", c.ns).into());
        }
        if work == Work::Full {
            let a = ip_out(&["-n", &c.ns, "-4", "-o", "addr", "show", "dev", "eth0"])?;
            if !a.contains(&format!("inet {}/30", c.ctr_ip)) {
                return Err(format!("setup check: eth0 in {} lacks {}/30: {a}", c.ns, c.ctr_ip).into());
            }
            let r = ip_out(&["-n", &c.ns, "route", "show", "default"])?;
            if !r.contains(&format!("via {} dev eth0", c.host_ip)) {
                return Err(format!("setup check: no default route via {} in {}: {r}", c.host_ip, c.ns).into());
            }
            let gw = c.host_ip.to_string();
            ip(&["netns", "exec", &c.ns, "ping", "-c1", "-W1", "-q", &gw])
                .map_err(|e| format!("setup check: ping {gw} from {} failed: {e}", c.ns))?;
        }
    }
    Ok(())
}

fn verify_teardown(host: &str, method: Method) -> Res<()> {
    let links = ip_out(&["-n", host, "-o", "link", "show", "type", "veth"])?;
    if let Some(l) = links.lines().find(|l| l.contains(": vb")) {
        return Err(format!("teardown check: host veth left behind: {l}").into());
    }
    let prefix = format!("nkb-{}-{}-", std::process::id(), method.tag());
    if let Some(n) = NetNs::list()?.into_iter().find(|n| n.starts_with(&prefix)) {
        return Err(format!("teardown check: namespace {n} left behind").into());
    }
    Ok(())
}

fn cpu_times() -> Res<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().ok_or("empty /proc/stat")?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total, idle))
}

/// Wait until the machine is idle (the kernel's deferred namespace cleanup and RCU work
/// have finished): three consecutive 100 ms windows with ≥ 90 % idle CPU, at most 120 s.
fn settle() -> Res<()> {
    const WINDOW: Duration = Duration::from_millis(100);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet = 0;
    let mut prev = cpu_times()?;
    while quiet < 3 {
        check_stop()?;
        if Instant::now() > deadline {
            eprintln!("  warning: machine not idle after 120 s; continuing");
            return Ok(());
        }
        std::thread::sleep(WINDOW);
        let now = cpu_times()?;
        let (dt, di) = (now.0 - prev.0, now.1 - prev.1);
        prev = now;
        if dt > 0 && di as f64 / dt as f64 >= 0.90 {
            quiet += 1;
        } else {
            quiet = 0;
        }
    }
    Ok(())
}

/// Wait until the kernel has started freeing every deleted container namespace: its
/// `cleanup_net` removes the host's namespace id for each peer namespace (what
/// `ip -n HOST netns list-id` shows). Teardown is not timed through this.
fn wait_nsids_gone(host: &str) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        check_stop()?;
        let ids = ip_out(&["-n", host, "netns", "list-id"])?;
        if ids.trim().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!("  warning: the kernel still holds namespace ids after 120 s; continuing");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Driver

struct Sample {
    work: Work,
    method: Method,
    n: usize,
    setup: Duration,
    teardown: Duration,
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    rt: &tokio::runtime::Runtime,
    host: &str,
    method: Method,
    work: Work,
    n: usize,
    cfg: &Config,
    programs: &[(Program, std::path::PathBuf)],
) -> Res<Sample> {
    let ctrs = containers(method, n);
    let host_ns = NetNs::open(host)?;
    let host_path = format!("/run/netns/{host}");
    let prefix = format!("nkb-{}-{}-", std::process::id(), method.tag());
    let bin = || {
        let p = method.program();
        programs
            .iter()
            .find(|(q, _)| Some(*q) == p)
            .map(|(_, b)| b.as_path())
            .ok_or("the method's program was not built")
    };
    let mut made = Vec::new();
    let t = Instant::now();
    let reported = match method {
        Method::Netkit => {
            made = rt.block_on(netkit_setup(&host_ns, work, &ctrs))?;
            None
        }
        Method::NetkitMany => {
            made = rt.block_on(netkit_setup_many(&host_ns, work, &ctrs))?;
            None
        }
        Method::NetkitCalls => {
            made = rt.block_on(netkit_calls_setup(&host_ns, work, &ctrs))?;
            None
        }
        Method::NetkitC | Method::NetkitGo | Method::Vishvananda => {
            Some(external::run(bin()?, &host_ns, "setup", &prefix, n, Some(work))?)
        }
        Method::Floor => floor::setup(&host_path, work, &ctrs).map(|()| None)?,
        Method::IpBatch => ipbatch_setup(host, work, &ctrs).map(|()| None)?,
        Method::IpCmd => ipcmd_setup(host, work, &ctrs).map(|()| None)?,
    };
    // The external programs time their own loops (a Go process takes milliseconds to start).
    let setup = reported.unwrap_or_else(|| t.elapsed());
    verify_setup(host, work, &ctrs, cfg.ping_samples)
        .map_err(|e| format!("{} {} N={n}: {e}", method.label(), work.label()))?;
    settle()?;
    let t = Instant::now();
    let reported = match method {
        Method::Netkit => rt.block_on(netkit_teardown(&host_ns, &made, false)).map(|()| None)?,
        Method::NetkitMany => rt.block_on(netkit_teardown(&host_ns, &made, true)).map(|()| None)?,
        Method::NetkitCalls => rt.block_on(netkit_calls_teardown(&host_ns, &made)).map(|()| None)?,
        Method::NetkitC | Method::NetkitGo | Method::Vishvananda => {
            Some(external::run(bin()?, &host_ns, "teardown", &prefix, n, None)?)
        }
        Method::Floor => floor::teardown(&host_path, &ctrs).map(|()| None)?,
        Method::IpBatch => ipbatch_teardown(host, &ctrs).map(|()| None)?,
        Method::IpCmd => ipcmd_teardown(host, &ctrs).map(|()| None)?,
    };
    let teardown = reported.unwrap_or_else(|| t.elapsed());
    verify_teardown(host, method).map_err(|e| format!("{} {} N={n}: {e}", method.label(), work.label()))?;
    wait_nsids_gone(host)?;
    settle()?;
    Ok(Sample {
        work,
        method,
        n,
        setup,
        teardown,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[derive(Clone, Copy)]
enum Phase {
    Setup,
    Teardown,
}

/// (median, min, max) of per-container µs for one cell.
fn stats(samples: &[Sample], work: Work, method: Method, n: usize, phase: Phase) -> Option<(f64, f64, f64)> {
    let v: Vec<f64> = samples
        .iter()
        .filter(|s| s.work == work && s.method == method && s.n == n)
        .map(|s| match phase {
            Phase::Setup => s.setup,
            Phase::Teardown => s.teardown,
        })
        .map(|d| d.as_secs_f64() * 1e6 / n as f64)
        .collect();
    if v.is_empty() {
        return None;
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    Some((median(v), min, max))
}

fn methods_for(cfg: &Config) -> Vec<Method> {
    cfg.methods.clone()
}

fn report(cfg: &Config, samples: &[Sample]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nPer container, median of {} run(s) (min–max in brackets); ratios are of medians: a method's \
         setup over the floor's (its distance to what the kernel costs) and over ip -batch's.\n",
        cfg.reps
    );
    let _ = writeln!(
        o,
        "| work | method | N | setup µs/ctr | teardown µs/ctr | setup × floor | setup × ip -batch | teardown × ip -batch |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|");
    for &work in &cfg.works {
        for &n in &cfg.ns {
            let base_s = stats(samples, work, Method::IpBatch, n, Phase::Setup).map(|s| s.0);
            let base_t = stats(samples, work, Method::IpBatch, n, Phase::Teardown).map(|s| s.0);
            let floor_s = stats(samples, work, Method::Floor, n, Phase::Setup).map(|s| s.0);
            for m in methods_for(cfg) {
                let (Some(s), Some(t)) = (
                    stats(samples, work, m, n, Phase::Setup),
                    stats(samples, work, m, n, Phase::Teardown),
                ) else {
                    continue;
                };
                let ratio = |x: f64, b: Option<f64>| b.map_or("–".into(), |b| format!("{:.2}", x / b));
                let label = m.label();
                let _ = writeln!(
                    o,
                    "| {} | {label} | {n} | {:.0} [{:.0}–{:.0}] | {:.0} [{:.0}–{:.0}] | {} | {} | {} |",
                    work.label(),
                    s.0,
                    s.1,
                    s.2,
                    t.0,
                    t.1,
                    t.2,
                    ratio(s.0, floor_s),
                    ratio(s.0, base_s),
                    ratio(t.0, base_t)
                );
            }
        }
    }

    if cfg.ns.len() >= 2 {
        let (lo, hi) = (cfg.ns[0], cfg.ns[cfg.ns.len() - 1]);
        let _ = writeln!(
            o,
            "\nScaling: per-container cost at N={hi} divided by the cost at N={lo} (medians).\n"
        );
        let _ = writeln!(o, "| work | method | setup | teardown |");
        let _ = writeln!(o, "|---|---|---:|---:|");
        for &work in &cfg.works {
            for m in methods_for(cfg) {
                let r = |td: Phase| match (stats(samples, work, m, lo, td), stats(samples, work, m, hi, td)) {
                    (Some(a), Some(b)) => format!("{:.2}", b.0 / a.0),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    work.label(),
                    m.label(),
                    r(Phase::Setup),
                    r(Phase::Teardown)
                );
            }
        }
    }

    // The issue's targets, evaluated on whatever work profile netkit ran.
    let _ = writeln!(o, "\nTargets (netkit setup):\n");
    for &work in &cfg.works {
        if !methods_for(cfg).contains(&Method::Netkit) {
            continue;
        }
        for &n in &cfg.ns {
            let nk = stats(samples, work, Method::Netkit, n, Phase::Setup).map(|s| s.0);
            let vn = stats(samples, work, Method::Vishvananda, n, Phase::Setup).map(|s| s.0);
            let fl = stats(samples, work, Method::Floor, n, Phase::Setup).map(|s| s.0);
            if let (Some(nk), Some(vn)) = (nk, vn) {
                let _ = writeln!(
                    o,
                    "- {} N={n}: vishvananda/netkit = {:.2} (netkit {nk:.0} µs, vishvananda {vn:.0} µs; target ≥ 1.50: {})",
                    work.label(),
                    vn / nk,
                    if vn >= 1.5 * nk { "met" } else { "MISSED" }
                );
            }
            // Issue 14: the Go package against vishvananda (the same Go program), and the C
            // ABI against the same calls made from Rust.
            let med = |m| stats(samples, work, m, n, Phase::Setup).map(|s| s.0);
            if let (Some(go), Some(vn)) = (med(Method::NetkitGo), vn) {
                let _ = writeln!(
                    o,
                    "- {} N={n}: vishvananda/netkit Go = {:.2} (netkit Go {go:.0} µs, vishvananda {vn:.0} µs; target ≥ 1.50: {})",
                    work.label(),
                    vn / go,
                    if vn >= 1.5 * go { "met" } else { "MISSED" }
                );
            }
            if let (Some(c), Some(calls)) = (med(Method::NetkitC), med(Method::NetkitCalls)) {
                let _ = writeln!(
                    o,
                    "- {} N={n}: netkit C/netkit calls (Rust) = {:.2} (C {c:.0} µs, Rust {calls:.0} µs; target ≤ 1.10: {})",
                    work.label(),
                    c / calls,
                    if c <= 1.1 * calls { "met" } else { "MISSED" }
                );
            }
            if let (Some(go), Some(calls)) = (med(Method::NetkitGo), med(Method::NetkitCalls)) {
                let _ = writeln!(
                    o,
                    "- {} N={n}: netkit Go/netkit calls (Rust) = {:.2} (Go {go:.0} µs, Rust {calls:.0} µs)",
                    work.label(),
                    go / calls
                );
            }
            if let (Some(nk), Some(fl)) = (nk, fl) {
                let _ = writeln!(
                    o,
                    "- {} N={n}: netkit/floor = {:.2} (floor {fl:.0} µs; moonshot ≤ 1.20: {})",
                    work.label(),
                    nk / fl,
                    if nk <= 1.2 * fl { "met" } else { "missed" }
                );
            }
            let ib = stats(samples, work, Method::IpBatch, n, Phase::Setup).map(|s| s.0);
            let ic = stats(samples, work, Method::IpCmd, n, Phase::Setup).map(|s| s.0);
            if let (Some(nk), Some(ib), Some(ic)) = (nk, ib, ic) {
                let _ = writeln!(
                    o,
                    "- {} N={n}: netkit/ip-batch = {:.2} (target ≤ 1.00: {}); ip-per-command/netkit = {:.1}× (target ≥ 10: {})",
                    work.label(),
                    nk / ib,
                    if nk <= ib { "met" } else { "MISSED" },
                    ic / nk,
                    if ic >= 10.0 * nk { "met" } else { "MISSED" }
                );
            }
        }
        if cfg.ns.len() >= 2 {
            let (lo, hi) = (cfg.ns[0], cfg.ns[cfg.ns.len() - 1]);
            if let (Some(a), Some(b)) = (
                stats(samples, work, Method::Netkit, lo, Phase::Setup),
                stats(samples, work, Method::Netkit, hi, Phase::Setup),
            ) {
                let r = b.0 / a.0;
                let _ = writeln!(
                    o,
                    "- {} scaling N={hi}/N={lo} = {r:.2} (target ≤ 1.25: {})",
                    work.label(),
                    if r <= 1.25 { "met" } else { "MISSED" }
                );
            }
        }
    }
    // Many at once, and bulk teardown, against netkit one by one (same run).
    for &work in &cfg.works {
        for &n in &cfg.ns {
            let one = |p| stats(samples, work, Method::Netkit, n, p).map(|s| s.0);
            let many = |p| stats(samples, work, Method::NetkitMany, n, p).map(|s| s.0);
            if let (Some(a), Some(b)) = (one(Phase::Setup), many(Phase::Setup)) {
                let _ = writeln!(
                    o,
                    "- {} N={n}: setup_many throughput {:.0} containers/s against {:.0} one by one ({:.2}×)",
                    work.label(),
                    1e6 / b,
                    1e6 / a,
                    a / b
                );
            }
            if let (Some(a), Some(b)) = (one(Phase::Teardown), many(Phase::Teardown)) {
                let _ = writeln!(
                    o,
                    "- {} N={n}: bulk teardown {b:.0} µs/ctr against {a:.0} one by one = {:.1}× faster (target ≥ 10: {})",
                    work.label(),
                    a / b,
                    if a >= 10.0 * b { "met" } else { "MISSED" }
                );
            }
        }
    }
    o
}

fn machine_facts() -> String {
    let cmd = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "nproc {}, kernel {}, {}",
        cmd("nproc", &[]),
        cmd("uname", &["-r"]),
        cmd("ip", &["-V"])
    )
}

fn main() -> Res<()> {
    // Nothing to list for test runners that probe the binary.
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("the containers bench needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)".into());
    }
    let cfg = config()?;
    install_signal_handlers()?;
    let stale = delete_namespaces(None);
    if stale > 0 {
        eprintln!("removed {stale} namespaces left by an earlier, killed run");
    }
    let _cleanup = Cleanup;
    let host = host_ns_name();
    ip(&["netns", "add", &host])?;
    ip(&["-n", &host, "link", "set", "lo", "up"])?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut programs = Vec::new();
    for p in cfg.methods.iter().filter_map(|m| m.program()) {
        programs.push((p, p.build()?));
    }
    eprintln!(
        "containers bench: N={:?}, reps={}, work={:?}; {}",
        cfg.ns,
        cfg.reps,
        cfg.works.iter().map(|w| w.label()).collect::<Vec<_>>(),
        machine_facts()
    );
    settle()?;

    let mut samples = Vec::new();
    let started = Instant::now();
    for &n in &cfg.ns {
        for rep in 0..cfg.reps {
            for &work in &cfg.works {
                // Rotate the method order across repetitions (and work profiles) so no
                // method always runs first or right after a given other one.
                let mut order = methods_for(&cfg);
                let k = order.len();
                order.rotate_left((rep + work as usize) % k);
                for method in order {
                    let s = run_one(&rt, &host, method, work, n, &cfg, &programs)?;
                    eprintln!(
                        "  N={n:<5} rep {} {:<5} {:<15} setup {:>6.0}  teardown {:>6.0} µs/ctr  [{:.0?} elapsed]",
                        rep + 1,
                        work.label(),
                        method.label(),
                        s.setup.as_secs_f64() * 1e6 / n as f64,
                        s.teardown.as_secs_f64() * 1e6 / n as f64,
                        started.elapsed()
                    );
                    samples.push(s);
                }
            }
        }
    }
    println!("Machine: {}", machine_facts());
    print!("{}", report(&cfg, &samples));
    Ok(())
}
