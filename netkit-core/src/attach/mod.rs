//! Attach a container to a network in one call: what the `netkit-cni` plugin's ADD, DEL and
//! CHECK do, as a library, so that a runtime can embed it (and the plugin is a thin frontend
//! over it).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use netkit_core::attach::{self, Attachment, NetworkConfig};
//! let conf = NetworkConfig::parse(br#"{"cniVersion": "1.1.0", "name": "podnet",
//!     "type": "netkit-cni", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true,
//!     "ipam": {"type": "netkit-ipam", "ranges": [[{"subnet": "10.88.0.0/16"}]]}}"#)?;
//! let ctr = Attachment::new("/run/netns/ctr1", "ctr1", "eth0");
//! let result = attach::add(&conf, &ctr).await?;
//! println!("{}", serde_json::to_string(&result)?); // the CNI result JSON
//! let conf = conf.with_prev_result(&result);
//! attach::check(&conf, &ctr).await?;
//! attach::del(&conf, &ctr).await?;
//! # Ok(()) }
//! ```
//!
//! The network configuration ([`NetworkConfig`]) is the `netkit-cni` conflist entry, the JSON
//! the plugin reads on stdin: the reference bridge plugin's model and keys (`bridge`,
//! `isGateway`, `isDefaultGateway`, `forceAddress`, `ipMasq`, `mtu`, `hairpinMode`,
//! `promiscMode`, `vlan`, `enabledad`), the runtime's capabilities (`runtimeConfig`:
//! `portMappings`, `mac`, `bandwidth`, `ips`, `ipRanges`), and netkit's own keys: `mode`
//! (`bridge`/`routed`), `firewallBackend`, `firewallStateDir`, `firewallName`, `waitLinkFree`,
//! `ipv6LinkLocal` (see the fields of [`NetworkConfig`]).
//!
//! The verbs: [`add`] (checks everything before the host changes; undoes what it made if a step
//! fails), [`del`] (idempotent; works with the container's namespace gone), [`check`], [`gc`]
//! (this network's IPAM reservations, firewall rules and tagged host-side links of attachments
//! not listed; other networks are never touched) and [`status`]. Every verb checks the
//! attachment's names the same way ([`Names`]). The host side (bridge, host ends, host routes,
//! firewall) is made in [`Host::netns`], by default the calling thread's namespace; no verb
//! changes the calling thread's namespace. The verbs need a tokio runtime.
//!
//! Made for a plugin process by default: unless the configuration sets `waitLinkFree`, DEL and
//! the firewall leave the kernel's final waits (freeing the veth pair, nf_tables' cleanup) to
//! detached processes, so a short-lived caller exits sooner; a long-running runtime that
//! prefers no child processes sets `"waitLinkFree": true`.
//!
//! Modules, one concept each: [`attachment`] (what the caller names), [`names`] (the names
//! derived from it), [`config`] (the network configuration), [`version`] (CNI versions),
//! [`result`] (CNI-shaped results), [`error`], [`ipam`] (netkit's allocator as the IPAM step),
//! [`delegate`] (the IPAM step: in-process or a delegated plugin); inside: `sides` (the two
//! namespaces), `add`, `bridge` and `routed` (the host side of each mode), `fw` (the firewall),
//! `del` (DEL and GC), `check`, `status`.

mod add;
pub mod attachment;
mod bridge;
mod check;
pub mod config;
mod del;
pub mod delegate;
pub mod error;
mod fw;
pub mod ipam;
pub mod names;
mod record;
pub mod result;
mod routed;
mod sides;
mod status;
pub mod version;

pub use add::add;
pub use attachment::{Attachment, Host};
pub use check::check;
pub use config::{Bandwidth, Mode, NetworkConfig, RuntimePortMapping, MAX_PORT_MAPPINGS};
pub use del::{del, gc};
pub use delegate::IpamStep;
pub use error::{AttachError, ErrorKind};
pub use ipam::IpamNetwork;
pub use names::Names;
pub use result::{AttachResult, CniResult, DnsResult, InterfaceResult, IpResult, RouteResult};
pub use status::status;
pub use version::{Version, SUPPORTED_VERSIONS};

/// The largest network configuration [`NetworkConfig::parse`] and [`IpamNetwork::parse`] read
/// (larger input is refused with [`ErrorKind::Decode`]). Real configurations, `prevResult`
/// included, are a few kilobytes; 1 MiB leaves room and keeps a runaway input from costing
/// memory and time.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
