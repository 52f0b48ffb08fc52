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
//! Following the cluster's store and attaching pods are the caller's (an agent's) job: it
//! calls [`compile()`] and [`PolicyFirewall::apply`] when a policy, a pod's labels or addresses,
//! a namespace's labels or the set of local pods change.

pub mod compile;
mod error;
pub mod model;
pub mod nftables;

pub use compile::{
    compile, Allowed, Cluster, Direction, LocalPod, NodePolicy, PodInfo, PodPolicy, PolicyId, NAMESPACE_NAME_LABEL,
};
pub use error::PolicyError;
pub use model::{
    EgressRule, IngressRule, IpBlock, LabelSelector, LabelSelectorRequirement, Labels, NetworkPolicy, Operator, Peer,
    PolicyPort, PolicyType, Protocol,
};
pub use nftables::{ApplyStats, PolicyFirewall, PolicyOptions, DEFAULT_TABLE};
