//! The C ABI called from Rust exactly as C calls it (the `extern "C"` functions, raw pointers),
//! against the real kernel inside namespaces the tests create: argument checks (NULL, invalid
//! UTF-8), every error kind, ownership round trips and double frees, links, addresses,
//! routes, rules, neighbours and the FDB, events polled through a descriptor, IPAM (8 threads
//! allocating at once), the firewall with real TCP, many threads at once, and memory that
//! stays flat over 100,000 calls.

mod args;
mod attach;
mod common;
mod events;
mod fw;
mod ipam;
mod kinds;
mod links;
mod neighbours;
mod routes;
mod rules;
mod sysctl;
mod threads;
