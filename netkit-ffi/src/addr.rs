//! Addresses: add, replace, delete, list (`ip address`).

use std::ffi::{c_char, c_int};

use netkit_core::Address;

use crate::conv::{netkit_ip, netkit_prefix, opt_str, out_arg, put, ref_arg, str_arg};
use crate::error::{status, Error};
use crate::handle::netkit_handle;
use crate::runtime::wait;
use crate::{netkit_error, own};

/// `netkit_addr_add` flag: skip IPv6 duplicate address detection (`nodad`): usable at once.
pub const NETKIT_ADDR_NODAD: u32 = 1;
/// `netkit_addr_add` flag: no prefix route for the address (`noprefixroute`).
pub const NETKIT_ADDR_NOPREFIXROUTE: u32 = 2;
/// `netkit_addr_add` flag: replace an existing address instead of failing with
/// `NETKIT_E_EXISTS` (`ip address replace`).
pub const NETKIT_ADDR_REPLACE: u32 = 4;

/// An address as the kernel reports it (`ip address show`). Freed with the array it came in
/// (`netkit_addr_list_free`).
#[repr(C)]
#[derive(Debug)]
pub struct netkit_address {
    /// Index of the device.
    pub index: u32,
    /// The address and its prefix length.
    pub prefix: netkit_prefix,
    /// Scope number: 0 global, 200 site, 253 link, 254 host.
    pub scope: u8,
    /// `IFA_F_*` flags.
    pub flags: u32,
    /// IPv4 label; NULL for none.
    pub label: *mut c_char,
    /// Permanent (not from autoconfiguration).
    pub permanent: bool,
    /// IPv6 duplicate address detection still running.
    pub tentative: bool,
    /// Peer address of a point-to-point address; family 0: none.
    pub peer: netkit_ip,
    /// IPv4 broadcast address; family 0: none.
    pub broadcast: netkit_ip,
}

impl From<&Address> for netkit_address {
    fn from(a: &Address) -> Self {
        Self {
            index: a.index,
            prefix: a.prefix.into(),
            scope: a.scope.into(),
            flags: a.flags,
            label: own::field(a.label.as_deref()),
            permanent: a.permanent,
            tentative: a.tentative,
            peer: a.peer.into(),
            broadcast: a.broadcast.map(std::net::IpAddr::V4).into(),
        }
    }
}

impl Drop for netkit_address {
    fn drop(&mut self) {
        // SAFETY: made by `own::field` for this struct, freed once here.
        unsafe { own::free_field(self.label) };
    }
}

/// `ip address add PREFIX dev DEV` with `NETKIT_ADDR_*` `flags` (0 for none).
/// `NETKIT_E_EXISTS` when the address is there already (unless `NETKIT_ADDR_REPLACE`).
/// The device is looked up by name (one request more than `netkit_addr_add_index`).
#[no_mangle]
pub unsafe extern "C" fn netkit_addr_add(
    h: *const netkit_handle,
    dev: *const c_char,
    prefix: *const netkit_prefix,
    flags: u32,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h`, `dev` and `prefix` are NULL or valid for the call.
        let (h, dev, prefix) = unsafe { (netkit_handle::arg(h)?, str_arg(dev, "dev")?, ref_arg(prefix, "prefix")?) };
        add(h.addr_add(dev, prefix.required("prefix")?), flags)
    })
}

/// `netkit_addr_add` for the device with index `index` (no lookup by name).
/// `NETKIT_E_NOT_FOUND` when there is no such device.
#[no_mangle]
pub unsafe extern "C" fn netkit_addr_add_index(
    h: *const netkit_handle,
    index: u32,
    prefix: *const netkit_prefix,
    flags: u32,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` and `prefix` are NULL or valid for the call.
        let (h, prefix) = unsafe { (netkit_handle::arg(h)?, ref_arg(prefix, "prefix")?) };
        if index == 0 {
            return Err(Error::invalid("index: 0 is no device"));
        }
        add(h.addr_add_index(index, prefix.required("prefix")?), flags)
    })
}

/// Send an address request with the `NETKIT_ADDR_*` `flags`.
fn add(mut req: netkit_core::addr::AddrRequest<'_>, flags: u32) -> Result<(), Error> {
    let unknown = flags & !(NETKIT_ADDR_NODAD | NETKIT_ADDR_NOPREFIXROUTE | NETKIT_ADDR_REPLACE);
    if unknown != 0 {
        return Err(Error::invalid(format!("flags: unknown bits {unknown:#x}")));
    }
    if flags & NETKIT_ADDR_NODAD != 0 {
        req = req.nodad();
    }
    if flags & NETKIT_ADDR_NOPREFIXROUTE != 0 {
        req = req.noprefixroute();
    }
    if flags & NETKIT_ADDR_REPLACE != 0 {
        req = req.replace();
    }
    wait(req.send())
}

/// `ip address del PREFIX dev DEV`. Idempotent: an address or device already gone is success.
#[no_mangle]
pub unsafe extern "C" fn netkit_addr_del(
    h: *const netkit_handle,
    dev: *const c_char,
    prefix: *const netkit_prefix,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h`, `dev` and `prefix` are NULL or valid for the call.
        let (h, dev, prefix) = unsafe { (netkit_handle::arg(h)?, str_arg(dev, "dev")?, ref_arg(prefix, "prefix")?) };
        wait(h.addr_del(dev, prefix.required("prefix")?))
    })
}

/// `ip address show [dev DEV]`: the addresses of `dev` (every device's when `dev` is NULL) as
/// an array of `*len` in `*addrs` (NULL when empty). Free with `netkit_addr_list_free`.
/// `NETKIT_E_NOT_FOUND` when `dev` does not exist.
#[no_mangle]
pub unsafe extern "C" fn netkit_addr_list(
    h: *const netkit_handle,
    dev: *const c_char,
    addrs: *mut *mut netkit_address,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` and `dev` are NULL or valid for the call.
        let (h, dev) = unsafe { (netkit_handle::arg(h)?, opt_str(dev, "dev")?) };
        out_arg(addrs, "addrs")?;
        out_arg(len, "len")?;
        let list: Vec<netkit_address> = wait(h.addr_list(dev))?.iter().map(netkit_address::from).collect();
        let (p, n) = own::give_vec(list);
        // SAFETY: both checked non-NULL above.
        unsafe {
            put(addrs, p);
            put(len, n);
        }
        Ok(())
    })
}

/// Free an array from `netkit_addr_list` with its length. NULL, a wrong length and a second
/// free are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_addr_list_free(addrs: *mut netkit_address, len: usize) {
    // SAFETY: `take_vec` only rebuilds an array the registry knows with this length.
    drop(unsafe { own::take_vec(addrs, len) });
}
