//! `netkit`, the command line of netkit-core: iproute2's verbs for network namespaces, links,
//! addresses, routes, rules, neighbours and forwarding databases, with `-j` (the keys of
//! `ip -j` and `bridge -j`), `-n NS` and batch files (`-b`); and netkit's own objects: IPAM
//! stores and the firewall.
//!
//! The crate is thin: [`cli`] defines the command line (clap), [`words`] reads iproute2's word
//! arguments, one module per object ([`netns`], [`link`], [`addr`], [`route`], [`rule`],
//! [`neigh`], [`fdb`], [`sysctl`] for the namespace's `net.*` settings, [`monitor`] for change
//! events, [`topo`] for topology files, [`ipam`] for address pools, [`fw`] for the firewall,
//! [`agent`] for the overlay agent, with [`log`] for its log lines)
//! turns them into
//! netkit-core calls, [`output`] prints the answers as text or JSON ([`progress`] draws the
//! bar of a long `topo apply`) and [`batch`] runs many
//! commands in one process. Every network operation is netkit-core's.
//!
//! ```text
//! sudo netkit netns add demo
//! sudo netkit -n demo link add v0 type veth peer name v1
//! sudo netkit -n demo -j link show
//! ```

#![warn(missing_docs)]

pub mod addr;
pub mod agent;
pub mod batch;
pub mod cli;
pub mod error;
pub mod fdb;
pub mod fw;
pub mod ipam;
pub mod link;
pub mod log;
pub mod monitor;
pub mod neigh;
pub mod netns;
pub mod output;
pub mod policy;
pub mod progress;
pub mod route;
pub mod rule;
pub mod service;
pub mod sysctl;
pub mod topo;
pub mod words;

use std::collections::HashMap;
use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::Parser;
use netkit_core::{Handle, IpFamily, NetNs};

use cli::{Cli, Command, Global};
pub use error::{CliError, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use output::Output;

/// The descriptors `netkit` makes room for at start: a namespace and a netlink socket for each
/// node of a 4000-node lab.
const DESCRIPTORS: usize = 8192;

/// Parse `args` (the program name first), run the command and return the exit code; errors are
/// printed on stderr as one line after `netkit: `.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            // --help and --version print to stdout and exit 0.
            let _ = e.print();
            return e.exit_code();
        }
        Err(e) => {
            // Usage errors: one line, exit 2.
            eprintln!("netkit: {}", CliError::from_clap(&e));
            return EXIT_USAGE;
        }
    };
    // Topology commands read and wire many namespaces at once, on every core; the other
    // commands are a few requests, for which one thread starts faster.
    let runtime = if matches!(cli.command, Some(Command::Topo { .. })) {
        // A lab of a thousand nodes holds two thousand descriptors: make room while the
        // process has one thread (see netkit_core::netns::reserve_descriptors). Only here: the
        // raised limit is inherited by what runs in the nodes (`exec:`), and a program run by
        // `netns exec` keeps the limit it was given. Best effort: a refusal means the slower
        // path, or an error naming EMFILE for a lab too big for the hard limit.
        let _ = netkit_core::netns::reserve_descriptors(DESCRIPTORS);
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netkit: start the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            if e.needs_report() {
                eprintln!("netkit: {e}");
            }
            e.exit_code()
        }
    }
}

/// Run a parsed command line: a batch file or one command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let mut session = Session::default();
    match (cli.batch, cli.command) {
        (Some(file), None) => batch::run(&mut session, &cli.global, &file, cli.force).await,
        (None, Some(command)) => session.execute(&cli.global, command).await,
        (Some(_), Some(_)) => Err(CliError::usage("give either a command or --batch FILE, not both")),
        (None, None) => Err(CliError::usage("no command given (try `netkit --help`)")),
    }
}

/// What the commands of one process share: netlink handles, one per namespace, opened when
/// first needed (a batch of a thousand lines opens each namespace's socket once).
#[derive(Default)]
pub struct Session {
    handles: HashMap<Option<String>, Handle>,
}

impl Session {
    /// The handle for namespace `netns` (`None`: the current one).
    pub async fn handle(&mut self, netns: Option<&str>) -> Result<Handle, CliError> {
        let key = netns.map(str::to_string);
        if let Some(h) = self.handles.get(&key) {
            return Ok(h.clone());
        }
        let h = match netns {
            Some(name) => {
                let ns = NetNs::open(name)?;
                ns.handle().await.map_err(|cause| CliError::Handle {
                    netns: ns.to_string(),
                    cause,
                })?
            }
            None => Handle::current().map_err(|cause| CliError::Handle {
                netns: "(current)".into(),
                cause,
            })?,
        };
        self.handles.insert(key, h.clone());
        Ok(h)
    }

    /// Forget the handle of namespace `name` (it was deleted).
    pub fn forget(&mut self, name: &str) {
        self.handles.remove(&Some(name.to_string()));
    }

    /// Run one command with these global options.
    pub async fn execute(&mut self, global: &Global, command: Command) -> Result<(), CliError> {
        let out = Output::new(global);
        match command {
            Command::Netns { verb } => netns::run(self, global, &out, verb).await,
            Command::Link { verb } => link::run(self, global, &out, verb).await,
            Command::Addr { verb } => addr::run(self, global, &out, verb).await,
            Command::Route { verb } => route::run(self, global, &out, verb).await,
            Command::Rule { verb } => rule::run(self, global, &out, verb).await,
            Command::Neigh { verb } => neigh::run(self, global, &out, verb).await,
            Command::Fdb { verb } => fdb::run(self, global, &out, verb).await,
            Command::Topo { verb } => topo::run(global, &out, verb).await,
            Command::Ipam { opts, verb } => ipam::run(&out, &opts, verb),
            Command::Fw { opts, verb } => fw::run(global, &out, &opts, verb).await,
            Command::Sysctl { verb } => sysctl::run(self, global, &out, verb).await,
            Command::Monitor(args) => monitor::run(self, global, &out, args).await,
            Command::Agent(args) => agent::run(self, global, &out, *args).await,
            Command::Service { opts, verb } => service::run(&out, &opts, verb).await,
            Command::Policy { opts, verb } => policy::run(&out, &opts, verb).await,
            Command::Completions { shell } => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut cmd, "netkit", &mut script);
                write_stdout(&script, "write the completion script")
            }
            Command::Man => {
                let mut page = Vec::new();
                clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                    .render(&mut page)
                    .map_err(|cause| CliError::Io {
                        what: "render the man page".into(),
                        cause,
                    })?;
                write_stdout(&page, "write the man page")
            }
        }
    }
}

/// Write `bytes` to stdout; a reader that went away (a closed pipe) is not an error.
fn write_stdout(bytes: &[u8], what: &str) -> Result<(), CliError> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Io {
            what: what.into(),
            cause: e,
        }),
        _ => Ok(()),
    }
}

/// The address family the global options ask for (`-4`, `-6`), if any.
pub fn family(global: &Global) -> Option<IpFamily> {
    if global.ipv4 {
        Some(IpFamily::V4)
    } else if global.ipv6 {
        Some(IpFamily::V6)
    } else {
        None
    }
}
