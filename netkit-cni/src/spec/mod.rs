//! The CNI protocol as plugins see it (spec 1.1.0, answering 0.3.0 – 1.1.0).

mod env;
mod error;
mod result;
mod version;

pub use env::{CniArgs, CniEnv, Command};
pub use error::{CniError, ErrorCode};
pub use result::{DnsResult, InterfaceResult, IpResult, IpamResult, RouteResult};
pub use version::{Version, SUPPORTED_VERSIONS};

/// The largest network configuration read from stdin (larger input is refused with
/// [`ErrorCode::Decode`] before parsing). Real configurations, `prevResult` included, are a few
/// kilobytes; 1 MiB leaves room and keeps a runaway input from costing memory and time.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
