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

/// A prefix unique to this process, for namespace names.
pub fn unique_prefix(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("nk{}{}{}", tag, std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
