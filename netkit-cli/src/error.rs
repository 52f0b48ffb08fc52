//! The one error type of the command line, and its exit codes.

use netkit_core::events::EventError;
use netkit_core::neigh::NeighError;
use netkit_core::rule::RuleError;
use netkit_core::sysctl::SysctlError;
use netkit_core::{AddrError, LinkError, NetlinkError, NetnsError, RouteError};

/// Exit code of a command that succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit code of a command whose operation failed (the kernel refused, a name does not exist…).
pub const EXIT_FAILED: i32 = 1;
/// Exit code of a command line (or batch line) that does not parse.
pub const EXIT_USAGE: i32 = 2;

/// Why a command failed. Printed as one line after `netkit: `; [`CliError::exit_code`] maps it
/// to the process's exit code. The netkit-core errors already name the operation, the object,
/// the namespace and the kernel's message; they are printed as they are.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line (or a batch line) does not parse: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// A link operation failed.
    #[error(transparent)]
    Link(Box<LinkError>),
    /// An address operation failed.
    #[error(transparent)]
    Addr(Box<AddrError>),
    /// A route operation failed.
    #[error(transparent)]
    Route(Box<RouteError>),
    /// A policy-routing rule operation failed.
    #[error(transparent)]
    Rule(Box<RuleError>),
    /// A neighbour or FDB operation failed.
    #[error(transparent)]
    Neigh(Box<NeighError>),
    /// A namespace operation failed.
    #[error(transparent)]
    Netns(Box<NetnsError>),
    /// A sysctl could not be read or written; an invalid key is bad usage (exit code 2).
    #[error(transparent)]
    Sysctl(Box<SysctlError>),
    /// A subscription to change events could not be opened.
    #[error(transparent)]
    Events(Box<EventError>),
    /// A netlink socket could not be opened in a namespace.
    #[error("open netlink in netns {netns}: {cause}")]
    Handle {
        /// The namespace, as netkit-core names namespaces in its errors.
        netns: String,
        /// What the socket answered.
        cause: NetlinkError,
    },
    /// A file or program outside netlink failed (the batch file, the program of `netns exec`).
    #[error("{what}: {cause}")]
    Io {
        /// What was being done, with its object.
        what: String,
        /// The failure with its errno.
        cause: std::io::Error,
    },
    /// A topology file could not be read, applied or destroyed: `FILE: why`, or `read topology
    /// file FILE: why` when the file could not be read (the core's error names the file then).
    #[error("{}", topo_line(file, cause))]
    Topo {
        /// The file.
        file: String,
        /// Why.
        cause: Box<netkit_core::topo::TopoError>,
    },
    /// An IPAM configuration file could not be read, or netkit-core refused it (exit code 1:
    /// the file is input the operation reads, as a topology file is).
    #[error("{file}: {cause}")]
    IpamConfig {
        /// The file.
        file: String,
        /// Why.
        cause: String,
    },
    /// An IPAM store operation failed.
    #[error("{what}: {cause}")]
    Ipam {
        /// The operation with its owner and store (`ipam allocate c1:eth0 in store DIR`).
        what: String,
        /// Why.
        cause: Box<netkit_core::ipam::IpamError>,
    },
    /// A firewall operation failed.
    #[error("{what} in netns {netns}: {cause}")]
    Firewall {
        /// The operation with its owner (`fw add c1:eth0`).
        what: String,
        /// The namespace.
        netns: String,
        /// Why.
        cause: Box<netkit_core::firewall::FirewallError>,
    },
    /// A failure already reported on stderr (a batch line, a program that `netns exec` ran and
    /// that exited with a status of its own): only its exit code is left.
    #[error("exit status {0}")]
    Reported(i32),
}

/// The core's errors are boxed: they are large, and an error is the rare path.
macro_rules! boxed_from {
    ($($variant:ident($t:ty)),*) => {
        $(impl From<$t> for CliError {
            fn from(e: $t) -> Self {
                Self::$variant(Box::new(e))
            }
        })*
    };
}
boxed_from!(
    Link(LinkError),
    Addr(AddrError),
    Route(RouteError),
    Rule(RuleError),
    Neigh(NeighError),
    Netns(NetnsError),
    Sysctl(SysctlError),
    Events(EventError)
);

impl CliError {
    /// A usage error with this text.
    pub fn usage(text: impl Into<String>) -> Self {
        Self::Usage(text.into())
    }

    /// A command line clap rejected, as a usage error of one line: clap's message without its
    /// `error: ` prefix, the lines under it (the missing argument, the possible values) and its
    /// tips on the same line, and instead of the usage block `see 'netkit VERB --help'` for the
    /// command clap was parsing (the command words of its `Usage:` line).
    pub fn from_clap(e: &clap::Error) -> Self {
        Self::Usage(clap_one_line(&e.render().to_string()))
    }

    /// The exit code: 2 for bad usage (an invalid sysctl key included), the program's own
    /// status for `netns exec`, 1 for any other failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Sysctl(e) if e.is_invalid() => EXIT_USAGE,
            Self::Reported(code) => *code,
            _ => EXIT_FAILED,
        }
    }

    /// False for [`CliError::Reported`]: it was printed already.
    pub fn needs_report(&self) -> bool {
        !matches!(self, Self::Reported(_))
    }
}

/// The line of [`CliError::Topo`].
fn topo_line(file: &str, cause: &netkit_core::topo::TopoError) -> String {
    match cause {
        netkit_core::topo::TopoError::Read { .. } => format!("read topology file {cause}"),
        _ => format!("{file}: {cause}"),
    }
}

/// See [`CliError::from_clap`]; `text` is clap's rendered message (without colours).
fn clap_one_line(text: &str) -> String {
    let mut message = String::new();
    let mut tips = Vec::new();
    let mut command = "netkit".to_string();
    let mut in_usage = false;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() {
            in_usage = false;
            continue;
        }
        if let Some(usage) = l.strip_prefix("Usage: ") {
            in_usage = true;
            // The command's words: up to its first option or argument (`[OPTIONS]`, `<NAME>`).
            let words: Vec<&str> = usage
                .split(' ')
                .take_while(|w| !w.starts_with(['-', '[', '<']))
                .collect();
            if !words.is_empty() {
                command = words.join(" ");
            }
        } else if in_usage || l.starts_with("For more information") {
            continue;
        } else if let Some(tip) = l.strip_prefix("tip: ") {
            tips.push(tip.to_string());
        } else {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(l.strip_prefix("error: ").unwrap_or(l));
        }
    }
    if message.is_empty() {
        message.push_str("bad command line");
    }
    for tip in tips {
        message.push_str(&format!(" ({tip})"));
    }
    format!("{message}; see '{command} --help'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn clap_errors_become_one_line_with_the_command_to_ask_for_help() {
        for (args, want) in [
            (
                &["netkit", "lnik"][..],
                "unrecognized subcommand 'lnik' (a similar subcommand exists: 'link'); see 'netkit --help'",
            ),
            (
                &["netkit", "link", "add"][..],
                "the following required arguments were not provided: <NAME>; see 'netkit link add --help'",
            ),
            (
                &["netkit", "link"][..],
                "'netkit link' requires a subcommand but one was not provided \
                 [subcommands: add, set, del, delete, show, list, help]; see 'netkit link --help'",
            ),
        ] {
            let e = crate::cli::Cli::try_parse_from(args).unwrap_err();
            let u = CliError::from_clap(&e);
            assert_eq!(u.to_string(), want);
            assert_eq!(u.exit_code(), EXIT_USAGE);
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::usage("x").exit_code(), EXIT_USAGE);
        assert_eq!(CliError::Reported(7).exit_code(), 7);
        let e = CliError::Io {
            what: "read batch file x".into(),
            cause: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(e.exit_code(), EXIT_FAILED);
        assert!(e.to_string().starts_with("read batch file x: "), "{e}");
        assert!(!CliError::Reported(1).needs_report() && e.needs_report());
        let bad_key = netkit_core::sysctl::key_path("kernel.hostname").unwrap_err();
        assert_eq!(CliError::from(bad_key).exit_code(), EXIT_USAGE);
    }
}
