//! The CNI test lab: CNI plugins driven exactly as container runtimes drive them, through
//! libcni. `tools/cnictl` is a small Go program on libcni (Debian's golang-github-appc-cni-dev);
//! this module builds it once per test process and runs it inside a "host" namespace the test
//! creates, against "container" namespaces the test creates:
//!
//! ```no_run
//! use netkit_tests::cnilab::{conflist, Host, REFERENCE_PLUGINS};
//! use serde_json::json;
//!
//! let host = Host::new("demo").with_cni_path(REFERENCE_PLUGINS);
//! let conf = host.write_conflist("net", &conflist("demo", "1.0.0", vec![json!({
//!     "type": "bridge", "bridge": "cni0", "isGateway": true,
//!     "ipam": {"type": "host-local", "dataDir": host.ipam_dir(),
//!              "ranges": [[{"subnet": "10.250.0.0/24"}]]}})]));
//! let c1 = host.container("c1");
//! let result = host.add(&conf, &c1).expect("ADD");   // libcni's result JSON
//! host.check(&conf, &c1).expect("CHECK");
//! host.del(&conf, &c1).expect("DEL");
//! ```
//!
//! Nothing here touches the namespace the tests run in: plugins run inside the host namespace
//! (`ip netns exec HOST cnictl …`), libcni's result cache and every file a conflist names live
//! in the host's temp dir, and namespaces and files go when their guards drop (also on panic).
//!
//! `NETKIT_CNICTL=/path/to/cnictl` uses a prebuilt binary instead of building one.
//!
//! netkit's own plugins: a test of this package names them with `CARGO_BIN_EXE_cnilab-netkit-cni`
//! and `CARGO_BIN_EXE_cnilab-netkit-ipam` (netkit-cni's mains, built as bins of this package so
//! `cargo test` always runs the current code) and [`Host::with_netkit_plugins`] links them into
//! the host's plugin directory under their real names, ahead of the reference plugins.
//!
//! CNI versions: Debian's libcni 1.1.2 reads results up to cniVersion 1.0.0, so ADD, CHECK and
//! DEL go through 1.0.0 lists. GC and STATUS exist from 1.1.0 on: write the same list again with
//! `"cniVersion": "1.1.0"` and the same `name` (libcni's cache is per network name) and call
//! [`Host::gc`] / [`Host::status`] with it. Its DEL phase fails on a non-valid attachment a
//! 1.0.0 ADD cached (libcni 1.1.2 cannot convert that result to 1.1.0): DEL those through the
//! 1.0.0 list (or its GC) first. The 1.1.0 GC then sends the GC verb, which releases what no
//! cache entry names any more (attachments the runtime lost track of): what it is for.

pub mod reference;

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ipnetwork::IpNetwork;
use netkit_core::{NetNs, NetNsGuard};
use netkit_test_support::{run_in, snapshot, HostNs};
use serde_json::{json, Value};

/// Debian's reference plugins (containernetworking-plugins).
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// The plugin path a [`Host`] starts with: netkit's test plugins, then the reference ones.
pub const DEFAULT_CNI_PATH: &str = "/opt/netkit-test/bin:/usr/lib/cni";

/// The cnictl binary, built on first use in this test process (into the cargo target dir,
/// with Go's build cache next to it) or taken from `NETKIT_CNICTL`.
///
/// Panics with the build's message when Go or libcni's sources are missing: `.ci/run`
/// installs them (golang-go, golang-github-appc-cni-dev).
pub fn cnictl_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(build_cnictl) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn build_cnictl() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NETKIT_CNICTL") {
        return Ok(PathBuf::from(p));
    }
    // A test binary lives in <target>/<profile>/deps.
    let exe = std::env::current_exe().map_err(|e| format!("cnictl: where is this test binary? {e}"))?;
    let mut dir = exe.parent().expect("binary in a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let out = dir.join("cnictl").join("cnictl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/cnictl/build.sh");
    let o = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .output()
        .map_err(|e| format!("cnictl: cannot run {}: {e}", script.display()))?;
    if !o.status.success() {
        return Err(format!(
            "cnictl: {} failed ({}); cnilab tests need Go and libcni's sources \
             (apt-get install golang-go golang-github-appc-cni-dev, as .ci/run does):\n{}{}",
            script.display(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(out)
}

/// A failed cnictl call: the CNI error (code 0 when it did not come from a plugin, e.g. a
/// plugin not found or a bad conflist), with what cnictl printed on stderr (plugin logs too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniFailure {
    /// The CNI error code (1 incompatible version, 2 unsupported field, 3 unknown container,
    /// 4 invalid environment, 5 I/O, 6 decoding, 7 invalid config, 11 try again later,
    /// 100+ plugin-specific, 999 plugin failed without a parsable error).
    pub code: u64,
    /// The error text, with libcni's context ("plugin type=… failed (add): …").
    pub msg: String,
    /// The plugin's `details`.
    pub details: String,
    /// cnictl's whole stderr.
    pub stderr: String,
}

impl fmt::Display for CniFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniFailure {}

impl CniFailure {
    /// Read cnictl's stderr: its last line is the error as JSON; anything else (a usage error,
    /// a crash) becomes code 0 with the whole text.
    fn parse(stderr: String) -> CniFailure {
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        match serde_json::from_str::<Value>(last) {
            Ok(v) if v.get("code").is_some() => CniFailure {
                code: v["code"].as_u64().unwrap_or(0),
                msg: v["msg"].as_str().unwrap_or_default().to_string(),
                details: v["details"].as_str().unwrap_or_default().to_string(),
                stderr,
            },
            _ => CniFailure {
                code: 0,
                msg: stderr.trim().to_string(),
                details: String::new(),
                stderr,
            },
        }
    }
}

/// A conflist: `{"cniVersion", "name", "plugins"}`.
pub fn conflist(name: &str, cni_version: &str, plugins: Vec<Value>) -> Value {
    json!({"cniVersion": cni_version, "name": name, "plugins": plugins})
}

/// The addresses of an ADD result (`ips[].address`).
pub fn result_ips(result: &Value) -> Vec<IpNetwork> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str()?.parse().ok())
        .collect()
}

/// The "host" namespace plugins run in, with a temp dir for conflists, libcni's cache and
/// plugin state (a [`HostNs`], the same host netkit-cni's own tests run the plugin binary in).
/// Dropping it deletes the namespace (and what plugins made in it) and the dir.
#[derive(Debug)]
pub struct Host {
    host: HostNs,
    cni_path: String,
    netkit_fw_state: Option<PathBuf>,
}

impl Drop for Host {
    fn drop(&mut self) {
        // netkit-cni without `firewallStateDir` keeps its firewall state in
        // /run/netkit/firewall/<netns cookie>; the cookie dies with the namespace.
        if let Some(d) = &self.netkit_fw_state {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Host {
    /// A new host namespace (loopback up); `tag` goes into the names of its namespaces.
    /// Plugins are looked up in [`DEFAULT_CNI_PATH`].
    pub fn new(tag: &str) -> Host {
        let host = HostNs::new(tag);
        let netkit_fw_state = netkit_core::firewall::default_state_dir(host.ns()).ok();
        Host {
            host,
            cni_path: DEFAULT_CNI_PATH.to_string(),
            netkit_fw_state,
        }
    }

    /// Look plugins up in `dirs` (':'-separated), in that order.
    pub fn with_cni_path(mut self, dirs: impl Into<String>) -> Host {
        self.cni_path = dirs.into();
        self
    }

    /// Run netkit's plugins: `netkit-cni` and `netkit-ipam` (the binaries at these paths,
    /// normally `env!("CARGO_BIN_EXE_cnilab-netkit-cni")` and `…-ipam`) are linked into
    /// `<dir>/bin` under those names, and plugins are looked up there first, then in
    /// [`REFERENCE_PLUGINS`] (netkit-cni delegates other IPAM types, e.g. host-local, there).
    pub fn with_netkit_plugins(self, netkit_cni: impl AsRef<Path>, netkit_ipam: impl AsRef<Path>) -> Host {
        let bin = self.dir().join("bin");
        std::fs::create_dir_all(&bin).expect("create the host's plugin dir");
        for (name, target) in [
            ("netkit-cni", netkit_cni.as_ref()),
            ("netkit-ipam", netkit_ipam.as_ref()),
        ] {
            assert!(target.is_file(), "{name}: no binary at {}", target.display());
            std::os::unix::fs::symlink(target, bin.join(name))
                .unwrap_or_else(|e| panic!("link {name} into {}: {e}", bin.display()));
        }
        let path = format!("{}:{REFERENCE_PLUGINS}", bin.display());
        self.with_cni_path(path)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        self.host.name()
    }

    /// The unique prefix of this host's namespace names (e.g. for `cnictl bench`'s).
    pub fn prefix(&self) -> &str {
        self.host.prefix()
    }

    /// The namespace.
    pub fn ns(&self) -> &NetNs {
        self.host.ns()
    }

    /// The plugin path.
    pub fn cni_path(&self) -> &str {
        &self.cni_path
    }

    /// The host's temp dir.
    pub fn dir(&self) -> &Path {
        self.host.dir()
    }

    /// libcni's result cache (`--cache-dir` of every call).
    pub fn cache_dir(&self) -> PathBuf {
        self.dir().join("cache")
    }

    /// A directory for IPAM state (host-local's `dataDir`), so nothing goes to /var/lib/cni.
    pub fn ipam_dir(&self) -> PathBuf {
        self.host.ipam_dir()
    }

    /// A directory for netkit-cni's firewall state (`firewallStateDir`).
    pub fn fw_dir(&self) -> PathBuf {
        self.host.fw_dir()
    }

    /// A container namespace `<prefix>-<tag>` (loopback up); its container ID is the
    /// namespace's name.
    pub fn container(&self, tag: &str) -> Container {
        let ns = self.host.container(tag);
        let id = ns.name().expect("named").to_string();
        Container { ns, id }
    }

    /// Write `conflist` to `<dir>/<file>.conflist`; returns its path.
    pub fn write_conflist(&self, file: &str, conflist: &Value) -> PathBuf {
        let path = self.dir().join(format!("{file}.conflist"));
        let text = serde_json::to_string_pretty(conflist).expect("conflist to JSON");
        std::fs::write(&path, text).expect("write conflist");
        path
    }

    /// Run `cnictl ARGS…` inside the host namespace, with this host's `--cni-path` and
    /// `--cache-dir` (options in `args` come later and win). The first arg is the command.
    /// `Ok`: what cnictl printed, as JSON (`Null` when it printed nothing, as for DEL).
    pub fn cnictl<I, S>(&self, args: I) -> Result<Value, CniFailure>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args = args.into_iter();
        let verb = args.next().expect("a cnictl command");
        let o = Command::new("ip")
            .args(["netns", "exec", self.name()])
            .arg(cnictl_bin())
            .arg(verb)
            .arg("--cni-path")
            .arg(&self.cni_path)
            .arg("--cache-dir")
            .arg(self.cache_dir())
            .args(args)
            .output()
            .expect("run ip netns exec cnictl");
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        if !o.status.success() {
            return Err(CniFailure::parse(stderr));
        }
        let stdout = String::from_utf8_lossy(&o.stdout);
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout).map_err(|e| CniFailure {
            code: 0,
            msg: format!("cnictl printed no JSON ({e}): {stdout}"),
            details: String::new(),
            stderr,
        })
    }

    /// `cnictl VERB CONFLIST NETNS ID IFNAME EXTRA…` for `c` (VERB: add, check or del).
    pub fn attach(
        &self,
        verb: &str,
        conflist: &Path,
        c: &Container,
        ifname: &str,
        extra: &[&str],
    ) -> Result<Value, CniFailure> {
        let netns = c.path().to_string_lossy().into_owned();
        let conf = conflist.to_string_lossy().into_owned();
        let args = [verb, conf.as_str(), netns.as_str(), c.id(), ifname];
        self.cnictl(args.iter().chain(extra))
    }

    /// ADD `c` (eth0); libcni's result.
    pub fn add(&self, conflist: &Path, c: &Container) -> Result<Value, CniFailure> {
        self.attach("add", conflist, c, "eth0", &[])
    }

    /// CHECK `c` (eth0).
    pub fn check(&self, conflist: &Path, c: &Container) -> Result<(), CniFailure> {
        self.attach("check", conflist, c, "eth0", &[]).map(drop)
    }

    /// DEL `c` (eth0).
    pub fn del(&self, conflist: &Path, c: &Container) -> Result<(), CniFailure> {
        self.attach("del", conflist, c, "eth0", &[]).map(drop)
    }

    /// GC keeping `valid` (container ID, ifname): DELs every other cached attachment of the
    /// network, then (cniVersion 1.1.0+) sends GC to every plugin.
    pub fn gc(&self, conflist: &Path, valid: &[(&str, &str)]) -> Result<(), CniFailure> {
        let valid: Vec<Value> = valid
            .iter()
            .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
            .collect();
        let valid = Value::Array(valid).to_string();
        let conf = conflist.as_os_str();
        self.cnictl([
            OsStr::new("gc"),
            conf,
            OsStr::new("--valid-attachments"),
            OsStr::new(&valid),
        ])
        .map(drop)
    }

    /// STATUS (cniVersion 1.1.0+; nothing is sent for older lists).
    pub fn status(&self, conflist: &Path) -> Result<(), CniFailure> {
        self.cnictl([OsStr::new("status"), conflist.as_os_str()]).map(drop)
    }

    /// Run a program inside the host namespace (`ip netns exec`); panics unless it succeeds.
    /// Returns its stdout.
    pub fn run<I, S>(&self, program: &str, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_in(self.name(), program, args)
    }

    /// The names of the host's veth links.
    pub fn veths(&self) -> Vec<String> {
        self.host.veths()
    }

    /// `nft list ruleset` in the host.
    pub fn nft_ruleset(&self) -> String {
        self.host.nft_ruleset()
    }

    /// The files in libcni's result cache (one per attachment: `<network>-<id>-<ifname>`).
    pub fn cached_results(&self) -> Vec<String> {
        snapshot::dir_names(&self.cache_dir().join("results"))
    }
}

/// A container namespace; deleted when this drops.
#[derive(Debug)]
pub struct Container {
    ns: NetNsGuard,
    id: String,
}

impl Container {
    /// The container ID (the namespace's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.id
    }

    /// The namespace's path (CNI_NETNS).
    pub fn path(&self) -> &Path {
        self.ns.path()
    }

    /// The namespace.
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// Run a program inside the container; panics unless it succeeds. Returns its stdout.
    pub fn run<I, S>(&self, program: &str, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_in(self.name(), program, args)
    }

    /// The names of the container's links.
    pub fn links(&self) -> Vec<String> {
        snapshot::link_names(self.name())
    }
}
