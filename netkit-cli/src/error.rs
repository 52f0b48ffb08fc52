//! The one error type of the command line, and its exit codes.

use netkit_core::events::EventError;
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
    /// A topology file could not be read, applied or destroyed.
    #[error("{file}: {cause}")]
    Topo {
        /// The file.
        file: String,
        /// Why.
        cause: Box<netkit_core::topo::TopoError>,
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
    Netns(NetnsError),
    Sysctl(SysctlError),
    Events(EventError)
);

impl CliError {
    /// A usage error with this text.
    pub fn usage(text: impl Into<String>) -> Self {
        Self::Usage(text.into())
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

#[cfg(test)]
mod tests {
    use super::*;

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
