//! netkit-core: container networking primitives for Linux, on the real kernel.
//!
//! * [`netns`]: named namespaces compatible with `ip netns`, running work inside one;
//! * [`Handle`]: a netlink connection bound to one namespace, with methods named
//!   after iproute2's commands for [`link`]s, [`addr`]esses, [`route`]s, [`rule`]s
//!   and [`neigh`]bours / bridge FDB;
//! * [`sysctl`]: per-namespace and per-interface sysctls;
//! * [`events`]: change notifications as an async stream;
//! * [`container`]: a container's namespace, veth pair, addresses and route in one call, many
//!   at once, and bulk teardown;
//! * [`attach`]: a container attached to a network in one call (bridge or routed mode, IPAM,
//!   firewall, bandwidth), checked and detached: what the `netkit-cni` plugin does, embeddable;
//! * [`overlay`]: the VXLAN overlay recipe (ARP + FDB + onlink route) with rollback;
//! * [`ipam`]: address pools, a crash-safe allocator shared by processes, node subnet leases;
//! * [`store`]: JSON objects by key with compare-and-swap and watches, in a directory or in etcd;
//! * [`firewall`]: masquerade, port mappings, services and isolation (nftables or iptables);
//! * [`topo`]: topology files (containerlab's and netkit's) applied, diffed and destroyed;
//! * [`tc`]: traffic control (token-bucket shaping, ingress redirect);
//! * [`ifname`]: the one rule for interface names.
//!
//! Every error names the operation, the object and the namespace, and keeps the
//! errno so callers can match "exists" or "no such device".

#![warn(missing_docs)]

pub mod addr;
pub mod attach;
pub mod conntrack;
pub mod container;
pub mod detach;
pub mod events;
pub mod firewall;
mod fsutil;
pub mod ifname;
pub mod ipam;
pub mod link;
mod mac;
pub mod neigh;
pub mod netlink;
pub mod netns;
pub mod overlay;
pub mod policy;
mod random;
pub mod retry;
pub mod route;
pub mod rule;
pub mod service;
pub mod store;
pub mod sysctl;
pub mod tc;
pub mod topo;

pub use addr::{AddrError, Address};
pub use link::{Link, LinkError, LinkKind, LinkSpec};
pub use mac::{MacAddr, MacParseError};
pub use netlink::{Batch, BatchError, Handle, NetlinkError};
pub use netns::{NetNs, NetNsGuard, NetnsError};
pub use route::{IpFamily, Route, RouteError, RouteInfo};
pub use rule::{Rule, RuleError};
