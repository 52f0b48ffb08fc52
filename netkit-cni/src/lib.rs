//! CNI plugins built on netkit-core: thin frontends over [`netkit_core::attach`], which does
//! the work (the same code a runtime embeds). What stays here is the CNI protocol: the `CNI_*`
//! environment, `CNI_ARGS` keys, which verbs a `cniVersion` has, the VERSION answer, error codes
//! and output.
//!
//! Public API changes with the move to netkit-core (0.1 → this): `plugin::add`, `plugin::del`,
//! `plugin::check`, `plugin::gc` (which took a `CniEnv` and an `Ipam`) are gone, use
//! [`plugin::run`] or `netkit_core::attach`; `plugin::config::PluginConf` is
//! `netkit_core::attach::NetworkConfig` (it also holds the IPAM step); `plugin::attachment::Attachment`
//! is `netkit_core::attach::Names` (`Attachment::of` is gone); `plugin::ipam::Ipam` is
//! `netkit_core::attach::IpamStep` (owned, no lifetime); `ipam::NetConf` is
//! `netkit_core::attach::IpamNetwork`, whose methods replace the free functions `ipam::validate`,
//! `add`, `allocate`, `del`, `gc`, `check`, `status`, `owner`, `to_result`, `config_error` and
//! `ipam_error` (now in `netkit_core::attach::ipam`, returning `AttachError`, which converts
//! into [`spec::CniError`]); `spec::IpamResult`, `Version`, `MAX_CONFIG_BYTES` are re-exports of
//! netkit-core's.
//!
//! * [`entry`]: what both plugin binaries do around their work (stdin, environment, panics, output);
//! * [`spec`]: the CNI protocol: environment, versions, errors, results (spec 0.3.0 – 1.1.0);
//! * [`ipam`]: the `netkit-ipam` IPAM plugin: netkit's allocator behind host-local's keys;
//! * [`plugin`]: the `netkit-cni` plugin: containers on a bridge or routed, with netkit's IPAM
//!   and firewall;
//! * [`trace`]: phase timings for profiling (`NETKIT_CNI_TRACE`).

#![warn(missing_docs)]

pub mod entry;
pub mod ipam;
pub mod plugin;
pub mod spec;
pub mod trace;
