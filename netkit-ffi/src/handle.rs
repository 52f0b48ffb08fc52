//! A netlink handle bound to one namespace: every link, address and route function takes one.

use std::ffi::c_int;

use netkit_core::Handle;

use crate::conv::{out_arg, put, ref_arg};
use crate::error::{status, Error};
use crate::netns::netkit_netns;
use crate::runtime::wait;
use crate::{netkit_error, own};

/// A netlink connection inside one namespace (opaque). Thread-safe: threads may share one
/// handle (their requests take turns on its socket) or open one each to work in parallel.
/// Close with `netkit_handle_close`.
pub struct netkit_handle {
    pub(crate) h: Handle,
}

impl netkit_handle {
    /// The handle behind a borrowed pointer argument.
    ///
    /// # Safety
    /// `p` is NULL or a live `netkit_handle` for the call.
    pub(crate) unsafe fn arg<'a>(p: *const netkit_handle) -> Result<&'a Handle, Error> {
        // SAFETY: the caller's contract.
        Ok(&unsafe { ref_arg(p, "h") }?.h)
    }
}

/// Open a handle whose socket lives in `ns` (the calling thread does not move). The handle keeps
/// the namespace open; `ns` may be freed afterwards.
#[no_mangle]
pub unsafe extern "C" fn netkit_handle_open(
    ns: *const netkit_netns,
    out: *mut *mut netkit_handle,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `ns` is NULL or live (contract).
        let ns = unsafe { netkit_netns::arg(ns, "ns") }?;
        out_arg(out, "out")?;
        let h = wait(Handle::new(ns))?;
        // SAFETY: checked non-NULL above.
        unsafe { put(out, own::give(netkit_handle { h })) };
        Ok(())
    })
}

/// The namespace of a handle, as a new namespace object in `*out` (free with
/// `netkit_netns_free`).
#[no_mangle]
pub unsafe extern "C" fn netkit_handle_netns(
    h: *const netkit_handle,
    out: *mut *mut netkit_netns,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` is NULL or live (contract).
        let h = unsafe { netkit_handle::arg(h) }?;
        out_arg(out, "out")?;
        // SAFETY: checked non-NULL above.
        unsafe { put(out, own::give(netkit_netns { ns: h.netns().clone() })) };
        Ok(())
    })
}

/// Close a handle. NULL and a second close are ignored. Other threads must be done with it.
#[no_mangle]
pub unsafe extern "C" fn netkit_handle_close(h: *mut netkit_handle) {
    // SAFETY: `take` only rebuilds a box the registry knows as a live netkit_handle.
    drop(unsafe { own::take(h) });
}
