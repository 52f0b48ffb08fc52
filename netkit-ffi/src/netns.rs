//! Network namespaces: create, open (by name, path, pid), delete, list.

use std::ffi::{c_char, c_int};

use netkit_core::NetNs;

use crate::conv::{out_arg, put, ref_arg, str_arg};
use crate::error::{status, Error};
use crate::netkit_error;
use crate::own;

/// An open network namespace (opaque). Holding it keeps the namespace alive even when its name
/// is deleted. Free with `netkit_netns_free` (which does not delete the namespace).
pub struct netkit_netns {
    pub(crate) ns: NetNs,
}

impl netkit_netns {
    /// The namespace behind a borrowed pointer argument named `arg`.
    ///
    /// # Safety
    /// `p` is NULL or a live `netkit_netns` for the call.
    pub(crate) unsafe fn arg<'a>(p: *const netkit_netns, arg: &str) -> Result<&'a NetNs, Error> {
        // SAFETY: the caller's contract.
        Ok(&unsafe { ref_arg(p, arg) }?.ns)
    }
}

fn give_netns(out: *mut *mut netkit_netns, ns: NetNs) {
    // SAFETY: `out` was checked non-NULL by the caller of this helper.
    unsafe { put(out, own::give(netkit_netns { ns })) };
}

/// Create the named namespace `name` (as `ip netns add NAME`, bind-mounted under /run/netns)
/// and open it in `*out`. `NETKIT_E_EXISTS` when the name is taken.
#[no_mangle]
pub unsafe extern "C" fn netkit_netns_create(
    name: *const c_char,
    out: *mut *mut netkit_netns,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `name` is a C string for the call.
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out, "out")?;
        give_netns(out, NetNs::create(name)?);
        Ok(())
    })
}

/// Open the named namespace `name` (/run/netns/NAME). `NETKIT_E_NOT_FOUND` when there is none.
#[no_mangle]
pub unsafe extern "C" fn netkit_netns_open(
    name: *const c_char,
    out: *mut *mut netkit_netns,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `name` is a C string for the call.
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out, "out")?;
        give_netns(out, NetNs::open(name)?);
        Ok(())
    })
}

/// Open the namespace at `path` (a bind mount such as /run/netns/x or /var/run/netns/x, or
/// /proc/PID/ns/net). `NETKIT_E_INVALID` when the file is no network namespace.
#[no_mangle]
pub unsafe extern "C" fn netkit_netns_open_path(
    path: *const c_char,
    out: *mut *mut netkit_netns,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `path` is a C string for the call.
        let path = unsafe { str_arg(path, "path") }?;
        out_arg(out, "out")?;
        give_netns(out, NetNs::open_path(path)?);
        Ok(())
    })
}

/// Open the namespace of process `pid`.
#[no_mangle]
pub unsafe extern "C" fn netkit_netns_open_pid(
    pid: u32,
    out: *mut *mut netkit_netns,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        out_arg(out, "out")?;
        give_netns(out, NetNs::from_pid(pid)?);
        Ok(())
    })
}

/// Delete the named namespace `name` (as `ip netns delete`): its name goes away at once, the
/// namespace itself when nothing holds it any more. Idempotent (as netkit-core): a name that
/// does not exist is success.
#[no_mangle]
pub unsafe extern "C" fn netkit_netns_delete(name: *const c_char, err: *mut *mut netkit_error) -> c_int {
    status(err, || {
        // SAFETY: `name` is a C string for the call.
        let name = unsafe { str_arg(name, "name") }?;
        NetNs::delete(name)?;
        Ok(())
    })
}

/// The names of the named namespaces (as `ip netns list`), as an array of `*len` strings in
/// `*names` (NULL when there are none). Free with `netkit_strings_free(*names, *len)`.
#[no_mangle]
pub unsafe extern "C" fn netkit_netns_list(
    names: *mut *mut *mut c_char,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        out_arg(names, "names")?;
        out_arg(len, "len")?;
        let list: Vec<*mut c_char> = NetNs::list()?.iter().map(|n| own::give_string(n)).collect();
        let (p, n) = own::give_vec(list);
        // SAFETY: both checked non-NULL above.
        unsafe {
            put(names, p);
            put(len, n);
        }
        Ok(())
    })
}

/// The name the namespace was created or opened by, as a new string in `*name` (free with
/// `netkit_string_free`); NULL for a namespace opened by path or pid.
#[no_mangle]
pub unsafe extern "C" fn netkit_netns_name(
    ns: *const netkit_netns,
    name: *mut *mut c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `ns` is NULL or live (contract).
        let ns = unsafe { netkit_netns::arg(ns, "ns") }?;
        out_arg(name, "name")?;
        // SAFETY: checked non-NULL above.
        unsafe { put(name, ns.name().map_or(std::ptr::null_mut(), own::give_string)) };
        Ok(())
    })
}

/// The namespace's inode number (`ip netns identify`, /proc/PID/ns/net): equal inodes (on the
/// same nsfs device) are the same namespace.
#[no_mangle]
pub unsafe extern "C" fn netkit_netns_inode(
    ns: *const netkit_netns,
    inode: *mut u64,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `ns` is NULL or live (contract).
        let ns = unsafe { netkit_netns::arg(ns, "ns") }?;
        out_arg(inode, "inode")?;
        let id = ns.id()?;
        // SAFETY: checked non-NULL above.
        unsafe { put(inode, id.ino) };
        Ok(())
    })
}

/// Close a namespace object (the namespace itself stays; see `netkit_netns_delete`). NULL and
/// a second free are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_netns_free(ns: *mut netkit_netns) {
    // SAFETY: `take` only rebuilds a box the registry knows as a live netkit_netns.
    drop(unsafe { own::take(ns) });
}
