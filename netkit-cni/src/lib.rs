//! CNI plugins built on netkit-core.
//!
//! * [`entry`]: what both plugin binaries do around their work (stdin, environment, panics, output);
//! * [`spec`]: the CNI protocol: environment, versions, errors, results (spec 0.3.0 – 1.1.0);
//! * [`ipam`]: the `netkit-ipam` IPAM plugin: netkit's allocator behind host-local's keys;
//! * [`plugin`]: the `netkit-cni` plugin: containers on a bridge, with netkit's IPAM and firewall;
//! * [`trace`]: phase timings for profiling (`NETKIT_CNI_TRACE`).

#![warn(missing_docs)]

pub mod entry;
pub mod ipam;
pub mod plugin;
pub mod spec;
pub mod trace;
