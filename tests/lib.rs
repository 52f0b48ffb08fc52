//! End-to-end tests live in the test targets of this package; this library holds what they
//! share: [`fwlab`], the namespaces and probes of the firewall tests, and [`cnilab`], CNI
//! plugins driven through libcni as container runtimes drive them.

pub mod cnilab;
pub mod fwlab;
