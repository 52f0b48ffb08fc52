//! Making the kernel match a [`Lab`], and taking a lab down again (see [`crate::topo`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::model::{Endpoint, Lab, LinkDef, Node};
use super::TopoError;
use crate::addr::Scope;
use crate::link::{Bridge, Veth};
use crate::route::Route;
use crate::{Handle, LinkKind, NetNs};

/// The routing protocol number of routes a lab adds (`ip route show proto 77`).
pub const ROUTE_PROTOCOL: u8 = 77;

/// Where lab records live by default.
pub const STATE_DIR: &str = "/run/netkit/topo";

/// Where an apply stands, for a progress display: `done` of `total` in `phase`.
///
/// The phases come in this order, each reported only when it has work: `namespaces` (nodes
/// created, several at a time), `links` (links checked or made), `addresses` (nodes whose
/// addresses, routes and sysctls were checked or set), `carrier` (new link ends with carrier).
/// `done == total` ends a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The phase.
    pub phase: &'static str,
    /// How much of it is done.
    pub done: usize,
    /// Its size.
    pub total: usize,
}

/// A function told how an apply goes (see [`Progress`]); called from the task running the
/// apply, so it must be quick (a progress bar redraws at most every few milliseconds).
pub type ProgressFn = std::sync::Arc<dyn Fn(Progress) + Send + Sync>;

/// How to apply or destroy a lab.
#[derive(Clone)]
pub struct TopoOptions {
    /// The namespace that holds the lab's host side (bridges of `kind: bridge` nodes and their
    /// ports): `netkit -n HOST`.
    pub host: NetNs,
    /// Directory of lab records ([`STATE_DIR`] by default).
    pub state_dir: PathBuf,
    /// Make nothing; return the plan.
    pub dry_run: bool,
    /// When a step fails, remove what this apply made before returning the error
    /// (`apply --atomic`); otherwise what was made stays (and the record names it, so the next
    /// apply or destroy finishes the job).
    pub atomic: bool,
    /// Told how the apply goes (`None`: nobody asks).
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for TopoOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopoOptions")
            .field("host", &self.host)
            .field("state_dir", &self.state_dir)
            .field("dry_run", &self.dry_run)
            .field("atomic", &self.atomic)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl TopoOptions {
    /// Apply for real, the host side in `host`, records in [`STATE_DIR`].
    pub fn new(host: NetNs) -> Self {
        Self {
            host,
            state_dir: PathBuf::from(STATE_DIR),
            dry_run: false,
            atomic: false,
            progress: None,
        }
    }

    /// Tell `progress` how an apply goes.
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    fn report(&self, phase: &'static str, done: usize, total: usize) {
        if let Some(p) = &self.progress {
            p(Progress { phase, done, total });
        }
    }
}

/// What an apply or destroy did (or, dry, would do): one line per change, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The changes (`create netns lab-h1`, `add address 10.0.0.1/24 to h1:eth1`, …).
    pub changes: Vec<String>,
}

/// What the record of a lab names: everything it may have made.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    /// Node namespaces.
    netns: BTreeSet<String>,
    /// Bridges in the host namespace.
    bridges: BTreeSet<String>,
    /// Links as `<netns>/<ifname>` of their first end (deleting it deletes the pair); host-side
    /// ports as `/<ifname>`.
    links: BTreeSet<String>,
    /// Sysctls of the host namespace the lab changed, with the value each had before (put back
    /// by destroy, or by an apply of a file that no longer sets it). A node's own sysctls go
    /// with its namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    host_sysctls: BTreeMap<String, String>,
}

fn record_path(opts: &TopoOptions, lab: &str) -> PathBuf {
    opts.state_dir.join(format!("{lab}.json"))
}

/// Read the record of `lab` and check every name in it before anything acts on it: a record
/// that names a namespace outside the lab, or an invalid interface name, is refused (the lab's
/// state directory is the one thing apply and destroy trust, and a changed record must not
/// make them delete someone else's objects).
fn load(path: &Path, lab: &Lab) -> Result<Record, TopoError> {
    let r = read_record(path)?;
    let bad = |what: String| TopoError::State {
        path: path.into(),
        reason: format!("{what}: not something lab {} can have made", lab.name),
    };
    let ours = |ns: &str| {
        let node = if lab.prefix.is_empty() {
            Some(ns)
        } else {
            ns.strip_prefix(&format!("{}-", lab.prefix))
        };
        node.is_some_and(|n| !n.is_empty() && !n.contains('/') && ns.len() <= 255)
    };
    for ns in &r.netns {
        if !ours(ns) {
            return Err(bad(format!("namespace {ns:?}")));
        }
    }
    for b in &r.bridges {
        crate::ifname::check(b).map_err(|_| bad(format!("bridge {b:?}")))?;
    }
    for key in &r.links {
        let ok = key
            .split_once('/')
            .is_some_and(|(ns, ifname)| (ns.is_empty() || ours(ns)) && crate::ifname::check(ifname).is_ok());
        if !ok {
            return Err(bad(format!("link {key:?}")));
        }
    }
    for (key, value) in &r.host_sysctls {
        if crate::sysctl::key_path(key).is_err() || value.contains('\n') {
            return Err(bad(format!("sysctl {key:?}")));
        }
    }
    Ok(r)
}

fn read_record(path: &Path) -> Result<Record, TopoError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| TopoError::State {
            path: path.into(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record::default()),
        Err(e) => Err(TopoError::State {
            path: path.into(),
            reason: e.to_string(),
        }),
    }
}

fn save(path: &Path, r: &Record) -> Result<(), TopoError> {
    let err = |e: std::io::Error| TopoError::State {
        path: path.into(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        // Only root reads or changes lab records.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(r).expect("a record serializes")).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The key of a link in the record.
fn link_key(lab: &Lab, l: &LinkDef, bridged: bool) -> String {
    if bridged {
        format!("/{}", l.b.ifname)
    } else {
        format!("{}/{}", lab.netns_of(&l.a.node), l.a.ifname)
    }
}

struct Run<'a> {
    lab: &'a Lab,
    opts: &'a TopoOptions,
    report: Report,
    record: Record,
    path: PathBuf,
    handles: BTreeMap<String, Handle>,
    created: BTreeSet<String>,
    /// Link ends made by this apply outside the host namespace, to wait for their carrier.
    made: Vec<(Handle, String)>,
    /// Link ends made by this apply in the host namespace, to wait for their carrier.
    made_host: Vec<String>,
    /// What this apply made (for `--atomic`).
    fresh: Record,
    /// Indexes of devices made by this apply, by node and name (a new node's settings go in
    /// one batch by index: see `ensure_l3`).
    indexes: BTreeMap<(String, String), u32>,
    /// Indexes of the lab's bridges in the host namespace.
    bridge_index: BTreeMap<String, u32>,
    /// What existing nodes held when this apply read them (all at once, in parallel, before
    /// changing anything); a node's entry goes when this apply changes its links.
    seen: BTreeMap<String, Seen>,
    /// The host namespace's links, read once; `None` after this apply changed them.
    host_links: Option<BTreeMap<String, crate::Link>>,
}

/// One node's links, addresses and routes, read in one go.
struct Seen {
    links: BTreeMap<String, crate::Link>,
    addrs: Vec<crate::Address>,
    routes: Vec<crate::RouteInfo>,
}

impl Run<'_> {
    fn fresh_count(&self) -> usize {
        self.fresh.netns.len() + self.fresh.bridges.len() + self.fresh.links.len()
    }
}

impl Run<'_> {
    fn change(&mut self, what: String) {
        self.report.changes.push(what);
    }

    /// Name `f` in the record before it is made (so a crash leaves it findable).
    fn intend(&mut self, f: impl FnOnce(&mut Record) -> bool) -> Result<(), TopoError> {
        if !self.opts.dry_run && f(&mut self.record) {
            save(&self.path, &self.record)?;
        }
        Ok(())
    }

    async fn handle(&mut self, node: &str) -> Result<Option<Handle>, TopoError> {
        if let Some(h) = self.handles.get(node) {
            return Ok(Some(h.clone()));
        }
        let ns = self.lab.netns_of(node);
        match NetNs::open(&ns) {
            Ok(n) => {
                let h = n.handle().await.map_err(|e| TopoError::kernel(&ns, e))?;
                self.handles.insert(node.to_string(), h.clone());
                Ok(Some(h))
            }
            Err(_) if self.opts.dry_run => Ok(None),
            Err(e) => Err(TopoError::kernel(&ns, e)),
        }
    }
}

/// Make the kernel match `lab`: read what exists, make only what differs (see
/// [the topo module](crate::topo) for what that covers), and wait until every new link end has
/// carrier. With `dry_run`, make nothing and return the plan.
pub async fn apply(lab: &Lab, opts: &TopoOptions) -> Result<Report, TopoError> {
    let mut trace = PhaseTrace::from_env();
    let (resolved, pending) = super::pools::resolve(lab, opts)?;
    trace.mark("pools");
    let lab = &resolved;
    let path = record_path(opts, &lab.name);
    let record = load(&path, lab)?;
    trace.mark("record");
    let host = opts.host.handle().await.map_err(|e| TopoError::kernel("host", e))?;
    trace.mark("host");
    let mut run = Run {
        lab,
        opts,
        report: Report { changes: pending },
        record,
        path,
        handles: BTreeMap::new(),
        created: BTreeSet::new(),
        made: Vec::new(),
        made_host: Vec::new(),
        fresh: Record::default(),
        indexes: BTreeMap::new(),
        bridge_index: BTreeMap::new(),
        seen: BTreeMap::new(),
        host_links: None,
    };
    if let Some((h, _)) = &lab.host {
        run.handles.insert(h.clone(), host.clone());
    }
    match steps(&mut run, &host, &mut trace).await {
        Ok(()) => {
            let report = std::mem::take(&mut run.report);
            // Closing a thousand namespaces' sockets is part of the apply's cost: timed too.
            drop(run);
            trace.mark("close");
            trace.finish();
            Ok(report)
        }
        Err(e) if opts.atomic && !opts.dry_run => {
            let undo = undo(&mut run, &host).await;
            Err(TopoError::RolledBack {
                cause: Box::new(e),
                undone: run.fresh_count(),
                failures: undo,
            })
        }
        Err(e) => Err(e),
    }
}

async fn steps(run: &mut Run<'_>, host: &Handle, trace: &mut PhaseTrace) -> Result<(), TopoError> {
    let lab = run.lab;
    remove_undeclared(run, host).await?;
    trace.mark("remove");
    read_all(run, host).await?;
    trace.mark("read");
    create_nodes(run).await?;
    trace.mark("create");
    for node in lab.nodes.keys() {
        ensure_node(run, node).await?;
    }
    trace.mark("nodes");
    for b in &lab.bridges {
        ensure_bridge(run, host, b).await?;
    }
    trace.mark("bridges");
    for (i, l) in lab.links.iter().enumerate() {
        ensure_link(run, host, l).await?;
        run.opts.report("links", i + 1, lab.links.len());
    }
    trace.mark("links");
    for (name, node) in &lab.nodes {
        ensure_devices(run, name, node).await?;
    }
    trace.mark("devices");
    let l3_total = lab.nodes.len() + usize::from(lab.host.is_some());
    for (i, (name, node)) in lab
        .nodes
        .iter()
        .chain(lab.host.as_ref().map(|(n, node)| (n, node)))
        .enumerate()
    {
        ensure_l3(run, name, node).await?;
        ensure_nat(run, name, node).await?;
        run.opts.report("addresses", i + 1, l3_total);
    }
    trace.mark("l3");
    // A new veth end carries traffic (and a bridge forwards through a new port) only once the
    // kernel has seen its carrier, which it does up to a second later: apply returns a lab
    // that works.
    let made = std::mem::take(&mut run.made);
    let carrier_total = run.made_host.len() + made.len();
    if carrier_total > 0 {
        run.opts.report("carrier", 0, carrier_total);
    }
    let host_made = run.made_host.len();
    wait_host_carrier(host, std::mem::take(&mut run.made_host)).await?;
    if host_made > 0 {
        run.opts.report("carrier", host_made, carrier_total);
    }
    for (i, (h, ifname)) in made.into_iter().enumerate() {
        wait_oper_up(&h, &ifname).await?;
        run.opts.report("carrier", host_made + i + 1, carrier_total);
    }
    trace.mark("carrier");
    if !run.opts.dry_run {
        for (name, node) in &lab.nodes {
            if run.created.contains(name) {
                run_exec(lab, name, node)?;
            }
        }
    }
    trace.mark("exec");
    Ok(())
}

/// Phase timings of an apply, for profiling: with `NETKIT_TOPO_TRACE=1` in the environment,
/// one line on stderr at the end of each apply, each phase's duration in ms
/// (`netkit: topo trace: remove=0.1 read=41.2 …`). Off (and free) otherwise.
struct PhaseTrace {
    last: Option<std::time::Instant>,
    marks: Vec<(&'static str, f64)>,
}

impl PhaseTrace {
    fn from_env() -> Self {
        let on = std::env::var_os("NETKIT_TOPO_TRACE").is_some_and(|v| !v.is_empty() && v != "0");
        Self {
            last: on.then(std::time::Instant::now),
            marks: Vec::new(),
        }
    }

    fn mark(&mut self, phase: &'static str) {
        if let Some(last) = self.last {
            let now = std::time::Instant::now();
            self.marks.push((phase, (now - last).as_secs_f64() * 1e3));
            self.last = Some(now);
        }
    }

    fn finish(&self) {
        if self.last.is_some() {
            let phases: Vec<String> = self.marks.iter().map(|(p, ms)| format!("{p}={ms:.1}")).collect();
            eprintln!("netkit: topo trace: {}", phases.join(" "));
        }
    }
}

/// `apply --atomic` after a failed step: remove what this apply made (its new links, bridges
/// and namespaces; the namespaces take their own links and settings with them) and drop them
/// from the record. Goes on past failures and returns them.
async fn undo(run: &mut Run<'_>, host: &Handle) -> Vec<String> {
    let mut failures = Vec::new();
    let fresh = std::mem::take(&mut run.fresh);
    let host_ports: Vec<&str> = fresh.links.iter().filter_map(|k| k.strip_prefix('/')).collect();
    if let Err(e) = host.link_del_many(&host_ports).await {
        failures.push(format!("delete host ports: {e}"));
    }
    let bridges: Vec<&str> = fresh.bridges.iter().map(String::as_str).collect();
    if let Err(e) = host.link_del_many(&bridges).await {
        failures.push(format!("delete bridges: {e}"));
    }
    for key in fresh.links.iter().filter(|k| !k.starts_with('/')) {
        let (ns, ifname) = key.split_once('/').expect("a link key");
        if fresh.netns.contains(ns) {
            continue; // goes with its namespace
        }
        if let Ok(n) = NetNs::open(ns) {
            match n.handle().await {
                Ok(h) => {
                    if let Err(e) = h.link_del(ifname).await {
                        failures.push(format!("delete {ifname} in {ns}: {e}"));
                    }
                }
                Err(e) => failures.push(format!("delete {ifname} in {ns}: {e}")),
            }
        }
    }
    for ns in &fresh.netns {
        if let Err(e) = NetNs::delete(ns) {
            failures.push(format!("delete netns {ns}: {e}"));
        }
    }
    if failures.is_empty() {
        run.record.links.retain(|k| !fresh.links.contains(k));
        run.record.bridges.retain(|b| !fresh.bridges.contains(b));
        run.record.netns.retain(|n| !fresh.netns.contains(n));
        if let Err(e) = save(&run.path, &run.record) {
            failures.push(e.to_string());
        }
    }
    run.fresh = fresh;
    failures
}

/// What the record names but the file no longer declares: links, then bridges, then nodes.
async fn remove_undeclared(run: &mut Run<'_>, host: &Handle) -> Result<(), TopoError> {
    let lab = run.lab;
    let wanted_ns: BTreeSet<String> = lab.nodes.keys().map(|n| lab.netns_of(n)).collect();
    let wanted_links: BTreeSet<String> = lab
        .links
        .iter()
        .map(|l| link_key(lab, l, lab.is_host_side(&l.b.node)))
        .collect();
    let stale_links: Vec<String> = run.record.links.difference(&wanted_links).cloned().collect();
    for key in stale_links {
        let (ns, ifname) = key.split_once('/').expect("a link key");
        run.change(format!(
            "delete link {ifname}{}",
            if ns.is_empty() {
                String::new()
            } else {
                format!(" in {ns}")
            }
        ));
        if run.opts.dry_run {
            continue;
        }
        let h = if ns.is_empty() {
            Some(host.clone())
        } else {
            match NetNs::open(ns) {
                Ok(n) => Some(n.handle().await.map_err(|e| TopoError::kernel(ns, e))?),
                Err(_) => None, // the namespace is gone, and the link with it
            }
        };
        if let Some(h) = h {
            h.link_del(ifname).await.map_err(|e| TopoError::kernel(ns, e))?;
        }
        run.record.links.remove(&key);
        save(&run.path, &run.record)?;
    }
    let stale_bridges: Vec<String> = run
        .record
        .bridges
        .iter()
        .filter(|b| !lab.bridges.contains(b))
        .cloned()
        .collect();
    for b in stale_bridges {
        run.change(format!("delete bridge {b}"));
        if !run.opts.dry_run {
            host.link_del(&b).await.map_err(|e| TopoError::kernel("host", e))?;
            run.record.bridges.remove(&b);
            save(&run.path, &run.record)?;
        }
    }
    let stale_ns: Vec<String> = run.record.netns.difference(&wanted_ns).cloned().collect();
    for ns in stale_ns {
        run.change(format!("delete netns {ns}"));
        if !run.opts.dry_run {
            NetNs::delete(&ns).map_err(|e| TopoError::kernel(&ns, e))?;
            run.record.netns.remove(&ns);
            save(&run.path, &run.record)?;
        }
    }
    Ok(())
}

/// Make the namespaces of the nodes that have none, on as many tasks as there are cores
/// (recorded first, all in one write): namespace creation is the largest part of a new node.
async fn create_nodes(run: &mut Run<'_>) -> Result<(), TopoError> {
    if run.opts.dry_run {
        return Ok(());
    }
    let lab = run.lab;
    let missing: Vec<(String, String)> = lab
        .nodes
        .keys()
        .map(|n| (n.clone(), lab.netns_of(n)))
        // read_all opened every namespace that exists (a name that does not open is not one).
        .filter(|(n, _)| !run.seen.contains_key(n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run.intend(|r| {
        for (_, ns) in &missing {
            r.netns.insert(ns.clone());
        }
        true
    })?;
    let parallel = std::thread::available_parallelism().map_or(1, |p| p.get());
    let total = missing.len();
    let created = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    run.opts.report("namespaces", 0, total);
    let queue = std::sync::Arc::new(std::sync::Mutex::new(missing));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let queue = queue.clone();
        let (created, opts) = (created.clone(), run.opts.clone());
        tasks.spawn(async move {
            let mut made = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some((node, ns)) = next else { break };
                // A name claimed by an apply killed before it could mount the namespace:
                // take it back.
                let h = async {
                    NetNs::delete(&ns)?;
                    Handle::create_netns(&ns).await
                }
                .await;
                made.push((node, ns, h));
                let done = created.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                opts.report("namespaces", done, total);
            }
            made
        });
    }
    let mut first_error = None;
    let mut lines = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let made = done.map_err(|e| TopoError::kernel("(create task)", e))?;
        for (node, ns, h) in made {
            match h {
                Ok(h) => {
                    lines.push(format!("create netns {ns}"));
                    run.fresh.netns.insert(ns);
                    run.handles.insert(node.clone(), h);
                    run.created.insert(node);
                }
                Err(e) => {
                    first_error.get_or_insert(TopoError::kernel(&ns, e));
                }
            }
        }
    }
    // In name order, whatever order the tasks made them in.
    lines.sort();
    run.report.changes.extend(lines);
    first_error.map_or(Ok(()), Err)
}

async fn ensure_node(run: &mut Run<'_>, node: &str) -> Result<(), TopoError> {
    let ns = run.lab.netns_of(node);
    if run.created.contains(node) {
        return Ok(());
    }
    // A node read_all found exists; any other was made by create_nodes, except in a dry run.
    if !run.seen.contains_key(node) && NetNs::open(&ns).is_err() {
        run.change(format!("create netns {ns}"));
        if run.opts.dry_run {
            return Ok(());
        }
        run.intend(|r| r.netns.insert(ns.clone()))?;
        // A name claimed by an apply killed before it could mount the namespace: take it back.
        NetNs::delete(&ns).map_err(|e| TopoError::kernel(&ns, e))?;
        let h = Handle::create_netns(&ns).await.map_err(|e| TopoError::kernel(&ns, e))?;
        run.fresh.netns.insert(ns.clone());
        run.handles.insert(node.to_string(), h);
        run.created.insert(node.to_string());
        return Ok(());
    } else {
        run.intend(|r| r.netns.insert(ns.clone()))?;
    }
    let Some(h) = run.handle(node).await? else {
        return Ok(());
    };
    let lo = run.look(Some(node), Some(&h), "lo").await?;
    if !lo.is_some_and(|l| l.up) {
        run.change(format!("set lo up in {ns}"));
        if !run.opts.dry_run {
            h.link_set_up("lo").await.map_err(|e| TopoError::kernel(&ns, e))?;
        }
    }
    Ok(())
}

async fn ensure_bridge(run: &mut Run<'_>, host: &Handle, name: &str) -> Result<(), TopoError> {
    match run.look(None, Some(host), name).await? {
        Some(l) if l.kind == LinkKind::Bridge => {
            run.bridge_index.insert(name.to_string(), l.index);
            run.intend(|r| r.bridges.insert(name.to_string()))?;
            if !l.up {
                run.change(format!("set bridge {name} up"));
                if !run.opts.dry_run {
                    host.link_set_up(name).await.map_err(|e| TopoError::kernel("host", e))?;
                }
            }
            Ok(())
        }
        Some(l) => Err(TopoError::Conflict(format!(
            "{name} exists in the host namespace and is a {:?}, not a bridge",
            l.kind
        ))),
        None => {
            run.change(format!("create bridge {name}"));
            if run.opts.dry_run {
                return Ok(());
            }
            run.intend(|r| r.bridges.insert(name.to_string()))?;
            run.touched(None);
            let made = host
                .link_add(&Bridge::new(name).up())
                .await
                .map_err(|e| TopoError::kernel("host", e))?;
            run.fresh.bridges.insert(name.to_string());
            run.bridge_index.insert(name.to_string(), made.index);
            Ok(())
        }
    }
}

/// How many namespaces [`read_all`] reads at once.
const READERS: usize = 8;

/// Read every existing node (links, addresses, routes) and the host's links before changing
/// anything, `READERS` namespaces at a time: an apply that changes nothing costs these reads
/// and no more.
async fn read_all(run: &mut Run<'_>, host: &Handle) -> Result<(), TopoError> {
    // The host's links are read at the same time as the nodes: with a thousand ports whose
    // peers live in other namespaces, the kernel spends a while on that one dump (it looks up
    // each peer's namespace id by a linear walk).
    let host_links = {
        let host = host.clone();
        tokio::spawn(async move { host.link_list().await })
    };
    let present: BTreeSet<String> = NetNs::list()
        .map_err(|e| TopoError::kernel("(namespaces)", e))?
        .into_iter()
        .collect();
    let todo: Vec<(String, String)> = run
        .lab
        .nodes
        .keys()
        .map(|n| (n.clone(), run.lab.netns_of(n)))
        .filter(|(n, ns)| present.contains(ns) && !run.created.contains(n))
        .collect();
    // Every socket in one helper trip, then the reads on READERS tasks.
    // A name that does not open as a namespace (claimed by an apply killed before it mounted
    // it) is read as absent: ensure_node makes it again.
    let (todo, namespaces): (Vec<_>, Vec<_>) = todo
        .into_iter()
        .filter_map(|(node, ns)| NetNs::open(&ns).ok().map(|n| ((node, ns), n)))
        .unzip();
    let handles = Handle::open_many(&namespaces)
        .await
        .map_err(|e| TopoError::kernel("(namespaces)", e))?;
    let mut work = Vec::new();
    for ((node, ns), h) in todo.into_iter().zip(handles) {
        work.push((node, ns.clone(), h.map_err(|e| TopoError::kernel(&ns, e))?));
    }
    let work = std::sync::Arc::new(std::sync::Mutex::new(work));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..READERS {
        let work = work.clone();
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let next = work.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some((node, ns, h)) = next else { break };
                let seen = read_node(&h).await.map_err(|e| TopoError::kernel(&ns, e))?;
                out.push((node, (h, seen)));
            }
            Ok::<_, TopoError>(out)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let read = done.map_err(|e| TopoError::kernel("(reader task)", e))??;
        for (node, (h, seen)) in read {
            run.handles.insert(node.clone(), h);
            run.seen.insert(node, seen);
        }
    }
    let links = host_links
        .await
        .map_err(|e| TopoError::kernel("(reader task)", e))?
        .map_err(|e| TopoError::kernel(host.netns(), e))?;
    run.host_links = Some(links.into_iter().map(|l| (l.name.clone(), l)).collect());
    Ok(())
}

/// Read the host node: `links` as read already, the addresses of the devices `node` gives
/// addresses to (one small dump each), the main table's routes.
async fn read_host(
    h: &Handle,
    links: BTreeMap<String, crate::Link>,
    node: &Node,
) -> Result<Seen, Box<dyn std::error::Error + Send + Sync>> {
    let mut addrs = Vec::new();
    for dev in node.addresses.keys() {
        if let Some(l) = links.get(dev) {
            addrs.extend(h.addr_list_index(l.index).await?);
        }
    }
    let routes = h.route_list(None, Some(254)).await?;
    Ok(Seen { links, addrs, routes })
}

/// Read a node: its links, addresses and routes.
async fn read_node(h: &Handle) -> Result<Seen, Box<dyn std::error::Error + Send + Sync>> {
    let links = h.link_list().await?.into_iter().map(|l| (l.name.clone(), l)).collect();
    let addrs = h.addr_list(None).await?;
    let routes = h.route_list(None, Some(254)).await?;
    Ok(Seen { links, addrs, routes })
}

impl Run<'_> {
    /// `ifname` of `node` (`None`: the host) as read by [`read_all`], or asked now when this
    /// apply changed that namespace since.
    async fn look(
        &mut self,
        node: Option<&str>,
        h: Option<&Handle>,
        ifname: &str,
    ) -> Result<Option<crate::Link>, TopoError> {
        let known = match node {
            None => self.host_links.as_ref().map(|m| m.get(ifname).cloned()),
            Some(n) => self.seen.get(n).map(|s| s.links.get(ifname).cloned()),
        };
        match known {
            Some(l) => Ok(l),
            None => probe(h, ifname).await,
        }
    }

    /// This apply changes the links of `node` (`None`: the host): read them live from now on.
    fn touched(&mut self, node: Option<&str>) {
        match node {
            None => self.host_links = None,
            Some(n) => {
                self.seen.remove(n);
            }
        }
    }
}

/// Does `ifname` exist in `h`'s namespace (and is it up)?
async fn probe(h: Option<&Handle>, ifname: &str) -> Result<Option<crate::Link>, TopoError> {
    let Some(h) = h else { return Ok(None) };
    match h.link_get(ifname).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(TopoError::kernel(h.netns(), e)),
    }
}

async fn ensure_link(run: &mut Run<'_>, host: &Handle, l: &LinkDef) -> Result<(), TopoError> {
    let lab = run.lab;
    let host_side = lab.is_host_side(&l.b.node);
    let bridged = lab.bridges.contains(&l.b.node);
    let key = link_key(lab, l, host_side);
    let a = run.handle(&l.a.node).await?;
    let b = if host_side {
        Some(host.clone())
    } else {
        run.handle(&l.b.node).await?
    };
    // An end in a namespace this apply created cannot exist yet: no need to look.
    let fresh_a = run.created.contains(&l.a.node);
    let fresh_b = !host_side && run.created.contains(&l.b.node);
    let b_node = (!host_side).then_some(l.b.node.as_str());
    let la = if fresh_a {
        None
    } else {
        run.look(Some(&l.a.node), a.as_ref(), &l.a.ifname).await?
    };
    let lb = if fresh_b {
        None
    } else {
        run.look(b_node, b.as_ref(), &l.b.ifname).await?
    };
    let name = |e: &Endpoint| e.to_string();
    // Two ends that exist but are not each other's peers (veth's IFLA_LINK names the peer's
    // index) are two halves of other pairs: remade as one pair.
    let paired = |x: &crate::Link, y: &crate::Link| {
        x.kind == LinkKind::Veth && y.kind == LinkKind::Veth && x.parent == Some(y.index) && y.parent == Some(x.index)
    };
    if let (Some(x), Some(y)) = (&la, &lb) {
        if !paired(x, y) {
            run.change(format!(
                "delete {} and {}, which are not one veth pair",
                name(&l.a),
                name(&l.b)
            ));
            run.touched(Some(&l.a.node));
            run.touched(b_node);
            if !run.opts.dry_run {
                for (h, end) in [(a.as_ref(), &l.a), (b.as_ref(), &l.b)] {
                    if let Some(h) = h {
                        h.link_del(&end.ifname)
                            .await
                            .map_err(|e| TopoError::kernel(h.netns(), e))?;
                    }
                }
            }
        }
    }
    let (la, lb) = match (la, lb) {
        (Some(x), Some(y)) if !paired(&x, &y) => (None, None),
        other => other,
    };
    match (&la, &lb) {
        (Some(x), Some(y)) => {
            run.intend(|r| r.links.insert(key.clone()))?;
            for (link, end, h) in [(x, &l.a, a.as_ref()), (y, &l.b, b.as_ref())] {
                if !link.up {
                    run.change(format!("set {} up", name(end)));
                    if let (false, Some(h)) = (run.opts.dry_run, h) {
                        h.link_set_up(&end.ifname)
                            .await
                            .map_err(|e| TopoError::kernel(h.netns(), e))?;
                    }
                }
            }
            if bridged {
                let br = run.bridge_index.get(&l.b.node).copied();
                if br.is_some() && y.master != br {
                    run.change(format!("attach {} to bridge {}", l.b.ifname, l.b.node));
                    if !run.opts.dry_run {
                        host.link_set(&l.b.ifname)
                            .master(&l.b.node)
                            .up()
                            .apply()
                            .await
                            .map_err(|e| TopoError::kernel("host", e))?;
                    }
                }
            }
            return Ok(());
        }
        (Some(_), None) | (None, Some(_)) => {
            // Half a pair (a crash, or someone deleted one end): replace it.
            let (h, ifname) = if la.is_some() {
                (a.clone(), &l.a.ifname)
            } else {
                (b.clone(), &l.b.ifname)
            };
            run.change(format!("delete half-made link {ifname}"));
            run.touched(Some(&l.a.node));
            run.touched(b_node);
            if let (false, Some(h)) = (run.opts.dry_run, h) {
                h.link_del(ifname).await.map_err(|e| TopoError::kernel(h.netns(), e))?;
            }
        }
        (None, None) => {}
    }
    run.change(format!("create link {} <-> {}", name(&l.a), name(&l.b)));
    if run.opts.dry_run {
        return Ok(());
    }
    run.touched(Some(&l.a.node));
    run.touched(b_node);
    run.intend(|r| r.links.insert(key.clone()))?;
    let (a, b) = (a.expect("made by now"), b.expect("made by now"));
    // The pair is made from the `b` side (the host for a bridge port) with the `a` end born
    // in a's namespace, both ends up.
    // Stable MACs: a remade link keeps its neighbours' ARP entries valid.
    let mac = |e: &Endpoint| crate::MacAddr::stable(&[&lab.name, &e.node, &e.ifname]);
    let mut veth = Veth::new(&l.b.ifname, &l.a.ifname)
        .peer_netns(a.netns())
        .mac(mac(&l.b))
        .peer_mac(mac(&l.a))
        .up();
    if let Some(mtu) = l.mtu {
        veth = veth.mtu(mtu);
    }
    let bridge = if bridged {
        run.bridge_index.get(&l.b.node).copied()
    } else {
        None
    };
    if let Some(br) = bridge {
        veth = veth.master_index(br);
    }
    let bns = b.netns().to_string();
    let made = b.link_add(&veth).await.map_err(|e| TopoError::kernel(&bns, e))?;
    run.fresh.links.insert(key.clone());
    if bridged && bridge.is_none() {
        b.link_set(&l.b.ifname)
            .master(&l.b.node)
            .up()
            .apply()
            .await
            .map_err(|e| TopoError::kernel(&bns, e))?;
    }
    if !host_side {
        run.indexes.insert((l.b.node.clone(), l.b.ifname.clone()), made.index);
    }
    // The a end: IFLA_LINK of the b end is its index in a's namespace. In a node this apply
    // created, it goes up with the node's other settings (one batch); elsewhere right now.
    match made.parent.filter(|_| fresh_a) {
        Some(index) => {
            run.indexes.insert((l.a.node.clone(), l.a.ifname.clone()), index);
        }
        None => a
            .link_set_up(&l.a.ifname)
            .await
            .map_err(|e| TopoError::kernel(a.netns(), e))?,
    }
    // Carrier is the pair's: one end tells (the host's, read in one dump for all).
    if host_side {
        run.made_host.push(l.b.ifname.clone());
    } else {
        run.made.push((b, l.b.ifname.clone()));
    }
    Ok(())
}

/// How long [`apply`] waits for a new link end's carrier.
const CARRIER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Wait until every link of `names` in the host namespace is operationally up, reading them
/// all with one dump per look (bounded by [`CARRIER_WAIT`]).
async fn wait_host_carrier(host: &Handle, mut names: Vec<String>) -> Result<(), TopoError> {
    let deadline = tokio::time::Instant::now() + CARRIER_WAIT;
    while !names.is_empty() {
        let up: BTreeSet<String> = host
            .link_list()
            .await
            .map_err(|e| TopoError::kernel(host.netns(), e))?
            .into_iter()
            .filter(|l| l.oper_up)
            .map(|l| l.name)
            .collect();
        names.retain(|n| !up.contains(n));
        if names.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TopoError::Conflict(format!(
                "{} in {} have no carrier {} s after they were made",
                names.join(", "),
                host.netns(),
                CARRIER_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Wait until `ifname` is operationally up (bounded by [`CARRIER_WAIT`]).
async fn wait_oper_up(h: &Handle, ifname: &str) -> Result<(), TopoError> {
    let deadline = tokio::time::Instant::now() + CARRIER_WAIT;
    loop {
        let l = h.link_get(ifname).await.map_err(|e| TopoError::kernel(h.netns(), e))?;
        if l.oper_up {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TopoError::Conflict(format!(
                "{ifname} in {} has no carrier {} s after it was made",
                h.netns(),
                CARRIER_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A node's own VXLAN devices and bridges (with their ports), all up.
async fn ensure_devices(run: &mut Run<'_>, name: &str, node: &Node) -> Result<(), TopoError> {
    if node.vxlan.is_empty() && node.bridges.is_empty() {
        return Ok(());
    }
    let ns = run.lab.netns_of(name);
    let h = run.handle(name).await?;
    for (dev, v) in &node.vxlan {
        match run.look(Some(name), h.as_ref(), dev).await? {
            Some(l) if l.kind == LinkKind::Vxlan => continue,
            Some(l) => {
                return Err(TopoError::Conflict(format!(
                    "{dev} in {ns} is a {:?}, not a VXLAN device",
                    l.kind
                )))
            }
            None => {}
        }
        run.change(format!("create vxlan {dev} (id {}) in {name}", v.id));
        run.touched(Some(name));
        if let (false, Some(h)) = (run.opts.dry_run, &h) {
            let mut spec = crate::link::Vxlan::new(dev, v.id)
                .port(v.dstport)
                .mac(crate::MacAddr::stable(&[&run.lab.name, name, dev]))
                .up();
            if let Some(r) = v.remote {
                spec = spec.remote(r);
            }
            if let Some(l) = v.local {
                spec = spec.local(l);
            }
            if let Some(d) = &v.dev {
                spec = spec.parent(d);
            }
            h.link_add(&spec).await.map_err(|e| TopoError::kernel(&ns, e))?;
        }
    }
    for (br, ports) in &node.bridges {
        let bridge = run.look(Some(name), h.as_ref(), br).await?;
        let index = match &bridge {
            Some(l) if l.kind == LinkKind::Bridge => Some(l.index),
            Some(l) => {
                return Err(TopoError::Conflict(format!(
                    "{br} in {ns} is a {:?}, not a bridge",
                    l.kind
                )))
            }
            None => {
                run.change(format!("create bridge {br} in {name}"));
                run.touched(Some(name));
                if let (false, Some(h)) = (run.opts.dry_run, &h) {
                    let made = h
                        .link_add(&Bridge::new(br).mac(crate::MacAddr::stable(&[&run.lab.name, name, br])))
                        .await
                        .map_err(|e| TopoError::kernel(&ns, e))?;
                    h.link_set_up(br).await.map_err(|e| TopoError::kernel(&ns, e))?;
                    Some(made.index)
                } else {
                    None
                }
            }
        };
        for p in ports {
            let port = run.look(Some(name), h.as_ref(), p).await?;
            if port.as_ref().is_some_and(|l| index.is_some() && l.master == index) {
                continue;
            }
            run.change(format!("attach {p} to bridge {br} in {name}"));
            run.touched(Some(name));
            if let (false, Some(h)) = (run.opts.dry_run, &h) {
                h.link_set(p)
                    .master(br)
                    .up()
                    .apply()
                    .await
                    .map_err(|e| TopoError::kernel(&ns, e))?;
            }
        }
    }
    Ok(())
}

/// The namespace a node's settings go to, for messages: the host's own for the host node.
fn ns_label(lab: &Lab, name: &str, opts: &TopoOptions) -> String {
    match &lab.host {
        Some((h, _)) if h == name => opts.host.to_string(),
        _ => lab.netns_of(name),
    }
}

/// The firewall state directory of a node's NAT: beside the lab's record.
fn fw_dir(opts: &TopoOptions, lab: &str, node: &str) -> PathBuf {
    opts.state_dir.join(format!("{lab}.fw")).join(node)
}

/// The firewall owner a lab's NAT rules belong to.
const FW_OWNER: &str = "topo";

async fn open_fw(
    opts: &TopoOptions,
    lab: &str,
    node: &str,
    ns: &NetNs,
) -> Result<crate::firewall::AnyFirewall, TopoError> {
    let options = crate::firewall::FirewallOptions::default()
        .state_dir(fw_dir(opts, lab, node))
        .name(&crate::link::hashed_name_with("nkt", &[lab], 8).expect("a valid prefix"));
    crate::firewall::open(ns, options)
        .await
        .map_err(|e| TopoError::kernel(ns, e))
}

/// A node's masquerades and port mappings, made with netkit's firewall in its namespace.
async fn ensure_nat(run: &mut Run<'_>, name: &str, node: &Node) -> Result<(), TopoError> {
    use crate::firewall::Firewall;
    let dir = fw_dir(run.opts, &run.lab.name, name);
    if node.nat.is_empty() && !dir.exists() {
        return Ok(());
    }
    let Some(h) = run.handle(name).await? else {
        for m in &node.nat.masquerade {
            run.change(format!("add masquerade {m} in {name}"));
        }
        for p in &node.nat.ports {
            run.change(format!(
                "add port mapping {} {} -> {}:{} in {name}",
                p.protocol.as_str(),
                p.host_port,
                p.container_ip,
                p.container_port
            ));
        }
        return Ok(());
    };
    let ns = h.netns().clone();
    let fw = open_fw(run.opts, &run.lab.name, name, &ns).await?;
    let have = fw.rules(FW_OWNER).await.map_err(|e| TopoError::kernel(&ns, e))?;
    let want = node.nat.rules();
    let mut add = crate::firewall::Rules::default();
    let mut del = crate::firewall::Rules::default();
    for m in &want.masquerades {
        if !have.masquerades.contains(m) {
            run.change(format!("add masquerade {} in {name}", m.source));
            add.masquerades.push(m.clone());
        }
    }
    for m in &have.masquerades {
        if !want.masquerades.contains(m) {
            run.change(format!("delete masquerade {} in {name}", m.source));
            del.masquerades.push(m.clone());
        }
    }
    let show = |p: &crate::firewall::PortMapping| {
        format!(
            "{} {} -> {}:{}",
            p.protocol.as_str(),
            p.host_port,
            p.container_ip,
            p.container_port
        )
    };
    for p in &want.port_mappings {
        if !have.port_mappings.contains(p) {
            run.change(format!("add port mapping {} in {name}", show(p)));
            add.port_mappings.push(p.clone());
        }
    }
    for p in &have.port_mappings {
        if !want.port_mappings.contains(p) {
            run.change(format!("delete port mapping {} in {name}", show(p)));
            del.port_mappings.push(p.clone());
        }
    }
    if run.opts.dry_run {
        return Ok(());
    }
    if !del.is_empty() {
        fw.remove(FW_OWNER, &del).await.map_err(|e| TopoError::kernel(&ns, e))?;
    }
    if !add.is_empty() {
        fw.add(FW_OWNER, &add).await.map_err(|e| TopoError::kernel(&ns, e))?;
    }
    Ok(())
}

/// A route of the lab (marked with [`ROUTE_PROTOCOL`]) to `dst`, through `via` if given.
fn lab_route(dst: IpNetwork, via: Option<std::net::IpAddr>) -> Route {
    let route = Route::new(dst).protocol(ROUTE_PROTOCOL);
    match via {
        Some(v) => route.gateway(v),
        None => route,
    }
}

/// The settings of a node this apply created, in one batch (one system call): lo and its new
/// link ends up, its addresses, its routes; then its sysctls. Nothing to compare with: the
/// namespace is new.
async fn new_node_l3(run: &mut Run<'_>, name: &str, node: &Node, ns: &str) -> Result<(), TopoError> {
    let h = run.handle(name).await?.expect("a node this apply created has a handle");
    let kernel = |e: &dyn std::fmt::Display| TopoError::kernel(ns, e);
    let mut index_of = BTreeMap::new();
    for ((n, dev), i) in &run.indexes {
        if n == name {
            index_of.insert(dev.clone(), *i);
        }
    }
    index_of.insert("lo".to_string(), 1);
    let mut b = h.batch();
    for i in index_of.values() {
        b.link_up(*i);
    }
    let lookup = |dev: &str| {
        let known = index_of.get(dev).copied();
        let h = h.clone();
        let dev = dev.to_string();
        async move {
            match known {
                Some(i) => Ok(i),
                None => h.link_get(&dev).await.map(|l| l.index),
            }
        }
    };
    for (dev, prefixes) in &node.addresses {
        let index = lookup(dev).await.map_err(|e| kernel(&e))?;
        for p in prefixes {
            run.report.changes.push(format!("add address {p} to {name}:{dev}"));
            b.addr_add(index, *p);
        }
    }
    for r in &node.routes {
        run.report.changes.push(format!("add route {r} in {name}"));
        let mut route = lab_route(r.dst, r.via);
        if let Some(d) = &r.dev {
            route = route.dev_index(lookup(d).await.map_err(|e| kernel(&e))?);
        }
        b.route_add(&route).await.map_err(|e| kernel(&e))?;
    }
    b.send().await.map_err(|e| kernel(&e))?;
    for (key, value) in &node.sysctls {
        run.report.changes.push(format!("set sysctl {key}={value} in {name}"));
        h.sysctl_set(key, value).await.map_err(|e| kernel(&e))?;
    }
    Ok(())
}

async fn ensure_l3(run: &mut Run<'_>, name: &str, node: &Node) -> Result<(), TopoError> {
    let ns = ns_label(run.lab, name, run.opts);
    if run.created.contains(name) && !run.opts.dry_run {
        return new_node_l3(run, name, node, &ns).await;
    }
    let h = run.handle(name).await?;
    // Read before changing anything (read_all), or now in one go (the host, a node whose
    // links this apply changed): three dumps, not one per device.
    let seen = match (run.seen.remove(name), &h) {
        (Some(seen), _) => Some(seen),
        (None, Some(h)) if !node.addresses.is_empty() || !node.routes.is_empty() => {
            // The host's links were read once already (while still valid).
            let is_host = run.lab.host.as_ref().is_some_and(|(n, _)| n == name);
            let seen = match run.host_links.clone().filter(|_| is_host) {
                // The host: its links were read once already; its addresses are read for the
                // devices the file names only (the host may hold thousands of others).
                Some(links) => read_host(h, links, node).await,
                None => read_node(h).await,
            };
            Some(seen.map_err(|e| TopoError::kernel(&ns, e))?)
        }
        (None, _) => None,
    };
    for (dev, wanted) in &node.addresses {
        let have: Vec<IpNetwork> = match seen.as_ref().and_then(|s| s.links.get(dev).map(|l| (s, l.index))) {
            Some((s, index)) => s
                .addrs
                .iter()
                .filter(|a| a.index == index && a.scope == Scope::Universe)
                .map(|a| a.prefix)
                .collect(),
            None => Vec::new(),
        };
        for p in wanted.iter().filter(|p| !have.contains(p)) {
            run.change(format!("add address {p} to {name}:{dev}"));
            if let (false, Some(h)) = (run.opts.dry_run, &h) {
                let mut req = h.addr_add(dev, *p);
                if p.is_ipv6() {
                    req = req.nodad();
                }
                req.await.map_err(|e| TopoError::kernel(&ns, e))?;
            }
        }
        for p in have.iter().filter(|p| !wanted.contains(p)) {
            run.change(format!("delete address {p} from {name}:{dev}"));
            if let (false, Some(h)) = (run.opts.dry_run, &h) {
                h.addr_del(dev, *p).await.map_err(|e| TopoError::kernel(&ns, e))?;
            }
        }
    }
    let routes = seen.map(|s| s.routes).unwrap_or_default();
    let mut keep = Vec::new();
    for r in &node.routes {
        let found = routes
            .iter()
            .position(|x| x.destination() == r.dst && x.gateway == r.via && x.protocol == ROUTE_PROTOCOL);
        match found {
            Some(i) => keep.push(i),
            None => {
                run.change(format!("add route {r} in {name}"));
                if let (false, Some(h)) = (run.opts.dry_run, &h) {
                    let mut route = lab_route(r.dst, r.via);
                    if let Some(d) = &r.dev {
                        route = route.dev(d);
                    }
                    h.route_replace(&route).await.map_err(|e| TopoError::kernel(&ns, e))?;
                }
            }
        }
    }
    for (i, x) in routes.iter().enumerate() {
        if x.protocol == ROUTE_PROTOCOL && !keep.contains(&i) {
            run.change(format!("delete route {} in {name}", x.destination()));
            if let (false, Some(h)) = (run.opts.dry_run, &h) {
                h.route_del(&lab_route(x.destination(), x.gateway))
                    .await
                    .map_err(|e| TopoError::kernel(&ns, e))?;
            }
        }
    }
    let is_host = run.lab.host.as_ref().is_some_and(|(n, _)| n == name);
    for (key, value) in &node.sysctls {
        let now = match &h {
            Some(h) => h.sysctl_get(key).await.ok(),
            None => None,
        };
        if now.as_deref() != Some(value.as_str()) {
            run.change(format!("set sysctl {key}={value} in {name}"));
            if let (false, Some(h)) = (run.opts.dry_run, &h) {
                // The host outlives the lab: remember what was there first, to put it back.
                if let (true, Some(before)) = (is_host, &now) {
                    run.intend(|r| {
                        !r.host_sysctls.contains_key(key)
                            && r.host_sysctls.insert(key.clone(), before.clone()).is_none()
                    })?;
                }
                h.sysctl_set(key, value).await.map_err(|e| TopoError::kernel(&ns, e))?;
            }
        }
    }
    if is_host {
        // Host sysctls the file no longer sets go back to what they were before the lab.
        let dropped: Vec<(String, String)> = run
            .record
            .host_sysctls
            .iter()
            .filter(|(k, _)| !node.sysctls.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, before) in dropped {
            run.change(format!("restore sysctl {key}={before} in {name}"));
            if let (false, Some(h)) = (run.opts.dry_run, &h) {
                h.sysctl_set(&key, &before)
                    .await
                    .map_err(|e| TopoError::kernel(&ns, e))?;
                run.intend(|r| r.host_sysctls.remove(&key).is_some())?;
            }
        }
    }
    Ok(())
}

fn run_exec(lab: &Lab, name: &str, node: &Node) -> Result<(), TopoError> {
    let ns = lab.netns_of(name);
    for cmd in &node.exec {
        let netns = NetNs::open(&ns).map_err(|e| TopoError::kernel(&ns, e))?;
        let out = netns
            .command("sh")
            .args(["-c", cmd])
            .output()
            .map_err(|e| TopoError::Exec {
                node: name.into(),
                command: cmd.clone(),
                reason: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(TopoError::Exec {
                node: name.into(),
                command: cmd.clone(),
                reason: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
    }
    Ok(())
}

/// Remove what the lab made: its host-side ports and bridges in one bulk delete each (see
/// [`Handle::link_del_many`]), then its namespaces (their links go with them). Uses both the
/// record and the file, so a lab whose apply was killed is removed too. Idempotent; goes on
/// past a failure and reports every one.
pub async fn destroy(lab: &Lab, opts: &TopoOptions) -> Result<Report, TopoError> {
    let path = record_path(opts, &lab.name);
    let record = load(&path, lab)?;
    let host = opts.host.handle().await.map_err(|e| TopoError::kernel("host", e))?;
    let mut report = Report::default();
    let mut failures = Vec::new();
    let mut ports: BTreeSet<String> = record
        .links
        .iter()
        .filter_map(|k| k.strip_prefix('/').map(String::from))
        .collect();
    ports.extend(
        lab.links
            .iter()
            .filter(|l| lab.is_host_side(&l.b.node))
            .map(|l| l.b.ifname.clone()),
    );
    let bridges: BTreeSet<String> = record.bridges.iter().chain(&lab.bridges).cloned().collect();
    let mut namespaces: BTreeSet<String> = record.netns.clone();
    namespaces.extend(lab.nodes.keys().map(|n| lab.netns_of(n)));
    // NAT first (the host's rules outlive the lab's namespaces otherwise), then the state.
    let nat_nodes = lab.nodes.iter().chain(lab.host.as_ref().map(|(n, node)| (n, node)));
    for (name, _) in nat_nodes {
        let dir = fw_dir(opts, &lab.name, name);
        if !dir.exists() {
            continue;
        }
        let ns = match &lab.host {
            Some((h, _)) if h == name => Some(opts.host.clone()),
            _ => NetNs::open(&lab.netns_of(name)).ok(),
        };
        report.changes.push(format!("delete NAT of {name}"));
        if opts.dry_run {
            continue;
        }
        if let Some(ns) = ns {
            use crate::firewall::Firewall;
            match open_fw(opts, &lab.name, name, &ns).await {
                Ok(fw) => {
                    if let Err(e) = fw.teardown(FW_OWNER).await {
                        failures.push(format!("NAT of {name}: {e}"));
                    }
                }
                Err(e) => failures.push(format!("NAT of {name}: {e}")),
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            failures.push(format!("{}: {e}", dir.display()));
        }
    }
    if !opts.dry_run {
        if let Err(e) = super::pools::release_all(lab, opts) {
            failures.push(format!("pools: {e}"));
        }
    }
    // The host's sysctls the lab changed go back to what they were.
    for (key, before) in &record.host_sysctls {
        report
            .changes
            .push(format!("restore sysctl {key}={before} in the host"));
        if !opts.dry_run {
            if let Err(e) = host.sysctl_set(key, before).await {
                failures.push(format!("restore sysctl {key}: {e}"));
            }
        }
    }
    let fw_root = opts.state_dir.join(format!("{}.fw", lab.name));
    if !opts.dry_run && failures.is_empty() {
        let _ = std::fs::remove_dir(&fw_root);
    }
    let existing: BTreeSet<String> = host
        .link_list()
        .await
        .map_err(|e| TopoError::kernel("host", e))?
        .into_iter()
        .map(|l| l.name)
        .collect();
    // Ports and bridges in one bulk delete: one wait for the kernel for all.
    let names: Vec<&str> = ports
        .iter()
        .chain(&bridges)
        .filter(|n| existing.contains(*n))
        .map(String::as_str)
        .collect();
    if !names.is_empty() {
        report.changes.extend(names.iter().map(|n| format!("delete {n}")));
        if !opts.dry_run {
            if let Err(e) = host.link_del_many(&names).await {
                failures.push(e.to_string());
            }
        }
    }
    let present: BTreeSet<String> = NetNs::list()
        .map_err(|e| TopoError::kernel("(namespaces)", e))?
        .into_iter()
        .collect();
    for ns in namespaces.intersection(&present) {
        report.changes.push(format!("delete netns {ns}"));
        if !opts.dry_run {
            if let Err(e) = NetNs::delete(ns) {
                failures.push(e.to_string());
            }
        }
    }
    if !opts.dry_run {
        if failures.is_empty() {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    failures.push(format!("{}: {e}", path.display()));
                }
            }
        } else {
            return Err(TopoError::Teardown(failures));
        }
    }
    Ok(report)
}

/// How the kernel compares with a lab (`netkit topo status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// What [`apply`] would change (missing or different objects, and objects the lab made
    /// that the file no longer declares).
    pub drift: Vec<String>,
    /// Links inside the lab's nodes that the file does not declare and apply leaves alone
    /// (someone else's), as `node:ifname`.
    pub extra: Vec<String>,
}

impl Status {
    /// The kernel matches the file.
    pub fn in_sync(&self) -> bool {
        self.drift.is_empty()
    }
}

/// Compare the kernel with `lab`: [`apply`]'s plan, and the links inside the nodes that the
/// file does not declare. Changes nothing.
pub async fn status(lab: &Lab, opts: &TopoOptions) -> Result<Status, TopoError> {
    let mut dry = opts.clone();
    dry.dry_run = true;
    let drift = apply(lab, &dry).await?.changes;
    let mut extra = Vec::new();
    for (name, node) in &lab.nodes {
        let Ok(ns) = NetNs::open(&lab.netns_of(name)) else {
            continue;
        };
        let h = ns.handle().await.map_err(|e| TopoError::kernel(&ns, e))?;
        let declared: BTreeSet<&str> = lab
            .links
            .iter()
            .flat_map(|l| [&l.a, &l.b])
            .filter(|e| &e.node == name)
            .map(|e| e.ifname.as_str())
            .chain(node.vxlan.keys().map(String::as_str))
            .chain(node.bridges.keys().map(String::as_str))
            .chain(["lo"])
            .collect();
        for l in h.link_list().await.map_err(|e| TopoError::kernel(&ns, e))? {
            if !declared.contains(l.name.as_str()) {
                extra.push(format!("{name}:{}", l.name));
            }
        }
    }
    extra.sort();
    Ok(Status { drift, extra })
}
