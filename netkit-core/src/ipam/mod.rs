//! IP address management: pools of address ranges, a crash-safe on-disk allocator shared by many
//! processes, garbage collection, import from host-local, and per-node subnet leases.

pub mod lease;
