//! Kubernetes NetworkPolicy on one node: the policy model ([`model`]), the pure compilation
//! of the cluster's policies, pods and namespaces into what this node enforces
//! ([`compile()`](compile())), and its enforcement in nftables ([`nftables`]: one table with fixed rules,
//! everything else elements of its sets).
//!
//! ```no_run
//! # async fn demo(cluster: netkit_core::policy::Cluster, local: Vec<netkit_core::policy::LocalPod>)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use netkit_core::policy::{compile, PolicyFirewall, PolicyOptions};
//! use netkit_core::NetNs;
//!
//! let host = NetNs::open("host")?;
//! let fw = PolicyFirewall::open(&host, PolicyOptions::default()).await?;
//! let node = compile(&cluster, &local)?;
//! let stats = fw.apply(&node).await?; // the first apply replaces, the next ones send a diff
//! println!("{} elements added, {} removed", stats.added, stats.removed);
//! # Ok(()) }
//! ```
//!
//! [`compile()`] compiles everything each time; [`NodeCompiler`] keeps the view and, after a
//! change, recompiles only the local pods it touches, and [`PolicyFirewall::apply_changes`]
//! sends just their difference.
//!
//! [`PolicyController`] follows the cluster store (the schema is in [`catalog`]: policies,
//! pods with their node, interface and labels, namespaces with their labels) with a
//! [`NodeCompiler`], and calls [`NodeCompiler::changes`] and
//! [`PolicyFirewall::apply_changes`] when any of them changes; `netkit agent --policy` runs
//! it on every node.

pub mod catalog;
pub mod compile;
mod controller;
mod error;
pub mod model;
pub mod nftables;

pub use compile::{
    compile, Allowed, Cluster, Direction, LocalPod, NodeChanges, NodeCompiler, NodePolicy, PodChange, PodInfo,
    PodPolicy, PolicyId, NAMESPACE_NAME_LABEL,
};
pub use controller::{ControllerConfig, ControllerStatus, PolicyController};
pub use error::PolicyError;
pub use model::{
    EgressRule, IngressRule, IpBlock, LabelSelector, LabelSelectorRequirement, Labels, NetworkPolicy, Operator, Peer,
    PolicyPort, PolicyType, Protocol,
};
pub use nftables::{ApplyStats, PolicyFirewall, PolicyOptions, DEFAULT_TABLE};
