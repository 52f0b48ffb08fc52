//! The reference topologies, and a simulated cluster running the overlay agent.

pub mod bridge;
pub mod cluster;
pub mod flannel;
pub mod veth_pair;
