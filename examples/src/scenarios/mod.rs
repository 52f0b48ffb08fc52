//! The three reference topologies.

pub mod bridge;
pub mod flannel;
pub mod veth_pair;
