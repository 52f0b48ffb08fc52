//! netkit-core: container networking primitives for Linux, on the real kernel.
//!
//! * [`netns`]: named namespaces compatible with `ip netns`, running work inside one;
//! * [`Handle`]: a netlink connection bound to one namespace, with methods named
//!   after iproute2's commands for [`link`]s, [`addr`]esses, [`route`]s, [`rule`]s
//!   and [`neigh`]bours / bridge FDB;
//! * [`sysctl`]: per-namespace and per-interface sysctls;
//!
//! Every error names the operation, the object and the namespace, and keeps the
//! errno so callers can match "exists" or "no such device".

pub mod addr;
pub mod link;
mod mac;
pub mod neigh;
pub mod netlink;
pub mod netns;
pub mod route;
pub mod rule;
pub mod sysctl;

pub use link::{Link, LinkError, LinkKind, LinkSpec};
pub use mac::{MacAddr, MacParseError};
pub use netlink::{Handle, NetlinkError};
pub use netns::{NetNs, NetNsGuard, NetnsError};
