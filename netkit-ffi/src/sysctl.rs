//! Sysctls inside a namespace (`ip netns exec NS sysctl …`), read and written by netkit's
//! helper thread in that namespace (the calling thread never moves).

use std::ffi::{c_char, c_int};

use crate::conv::{out_arg, put, str_arg};
use crate::error::status;
use crate::netns::netkit_netns;
use crate::{netkit_error, own};

/// Read sysctl `key` (dotted, as sysctl(8): `net.ipv4.ip_forward`; a `/` inside a component is a
/// literal dot, `net.ipv4.conf.eth0/100.rp_filter`) inside
/// `ns`: its value, trailing newline removed, as a new string in `*value` (free with
/// `netkit_string_free`). `NETKIT_E_NOT_FOUND` for a key that does not exist,
/// `NETKIT_E_INVALID` for a key that cannot be one.
#[no_mangle]
pub unsafe extern "C" fn netkit_sysctl_get(
    ns: *const netkit_netns,
    key: *const c_char,
    value: *mut *mut c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `ns` and `key` are NULL or valid for the call.
        let (ns, key) = unsafe { (netkit_netns::arg(ns, "ns")?, str_arg(key, "key")?) };
        out_arg(value, "value")?;
        let v = netkit_core::sysctl::get(ns, key)?;
        // SAFETY: checked non-NULL above.
        unsafe { put(value, own::give_string(&v)) };
        Ok(())
    })
}

/// Write `value` to sysctl `key` inside `ns`.
#[no_mangle]
pub unsafe extern "C" fn netkit_sysctl_set(
    ns: *const netkit_netns,
    key: *const c_char,
    value: *const c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `ns`, `key` and `value` are NULL or valid for the call.
        let (ns, key, value) = unsafe {
            (
                netkit_netns::arg(ns, "ns")?,
                str_arg(key, "key")?,
                str_arg(value, "value")?,
            )
        };
        netkit_core::sysctl::set(ns, key, value)?;
        Ok(())
    })
}
