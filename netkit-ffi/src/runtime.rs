//! The one tokio runtime of the library.
//!
//! netkit-core is async; C has no executor. The library starts one multi-threaded tokio runtime
//! for the whole process the first time a function needs it (worker threads named
//! `netkit-ffi`, as many as cores, at most 4) and runs every call to completion on the
//! calling thread with `block_on`: many threads may call at once, each waits only for its own
//! call. The calling thread never changes namespace (netkit-core's helper threads do the work
//! inside namespaces). A Rust caller that is itself inside a tokio runtime should use
//! netkit-core directly: calling these functions from a runtime thread fails with
//! `NETKIT_E_INVALID`.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

use crate::error::{Error, NETKIT_E_INTERNAL};

fn runtime() -> Result<&'static Runtime, Error> {
    static RT: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("netkit-ffi")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Error::new(NETKIT_E_INTERNAL, format!("start the netkit runtime: {e}")))
}

/// Run `fut` to completion on the calling thread, with the library's runtime as its context.
pub(crate) fn block_on<F: Future>(fut: F) -> Result<F::Output, Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::invalid(
            "netkit's C functions block: call them from a thread outside any tokio runtime",
        ));
    }
    Ok(runtime()?.block_on(fut))
}

/// [`block_on`] for a fallible future: its error becomes the crate's [`Error`].
pub(crate) fn wait<T, E: Into<Error>>(fut: impl Future<Output = Result<T, E>>) -> Result<T, Error> {
    block_on(fut)?.map_err(Into::into)
}
