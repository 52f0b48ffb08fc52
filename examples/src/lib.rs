//! The end-to-end scenarios of netkit, as library code shared by the
//! runnable examples (`cargo run --example …`) and the end-to-end tests.
//!
//! Each scenario builds its namespaces under a caller-chosen prefix and
//! returns a value owning [`NetNsGuard`]s: dropping it removes everything
//! (deleting a namespace removes the links, addresses and routes in it).

pub mod probe;
pub mod scenarios;

pub use netkit_core::NetNsGuard;

/// Boxed error for example code.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A prefix unique to this process and call, for namespace names (the tests' own
/// [`netkit_test_support::unique`]).
pub fn unique_prefix(tag: &str) -> String {
    netkit_test_support::unique(tag)
}
