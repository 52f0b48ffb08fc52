//! The `netkit` binary against the real kernel, as root. Every test works in namespaces it
//! creates (`-n NS`; `HostNs` and `NsName` delete them even when the test panics) and checks
//! what netkit printed and did against iproute2's view (`ip -j`). Nothing runs in, or changes,
//! the namespace the tests run in.

mod common;

mod addr;
mod agent;
mod batch;
mod errors;
mod fdb;
mod fw;
mod ipam;
mod link;
mod monitor;
mod neigh;
mod netns;
mod route;
mod rule;
mod snapshots;
mod sysctl;
mod topo;
