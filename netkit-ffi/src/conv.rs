//! Conversions of arguments: borrowed C strings, out-pointers, IP addresses and prefixes.

use std::ffi::{c_char, CStr};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use netkit_core::IpFamily;

use crate::error::Error;

/// `AF_INET`: an IPv4 address in the first 4 bytes of `netkit_ip.addr`.
pub const NETKIT_AF_INET: u8 = 2;
/// `AF_INET6`: an IPv6 address in the 16 bytes of `netkit_ip.addr`.
pub const NETKIT_AF_INET6: u8 = 10;

/// An IP address: `family` is `NETKIT_AF_INET`, `NETKIT_AF_INET6`, or 0 for "no address"
/// (an optional field left unset); `addr` in network byte order (IPv4 in its first 4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct netkit_ip {
    /// 0 (none), `NETKIT_AF_INET` or `NETKIT_AF_INET6`.
    pub family: u8,
    /// The address bytes, network order.
    pub addr: [u8; 16],
}

/// An IP prefix (`10.0.0.1/24`): the address and the prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct netkit_prefix {
    /// The address (family 0: no prefix).
    pub ip: netkit_ip,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub len: u8,
}

impl From<IpAddr> for netkit_ip {
    fn from(ip: IpAddr) -> Self {
        let mut addr = [0u8; 16];
        match ip {
            IpAddr::V4(a) => {
                addr[..4].copy_from_slice(&a.octets());
                Self {
                    family: NETKIT_AF_INET,
                    addr,
                }
            }
            IpAddr::V6(a) => Self {
                family: NETKIT_AF_INET6,
                addr: a.octets(),
            },
        }
    }
}

impl From<Option<IpAddr>> for netkit_ip {
    fn from(ip: Option<IpAddr>) -> Self {
        ip.map(Self::from).unwrap_or_default()
    }
}

impl From<IpNetwork> for netkit_prefix {
    fn from(n: IpNetwork) -> Self {
        Self {
            ip: n.ip().into(),
            len: n.prefix(),
        }
    }
}

impl netkit_ip {
    /// The address, `None` for family 0; an unknown family is invalid (`what` names the field).
    pub fn get(&self, what: &str) -> Result<Option<IpAddr>, Error> {
        match self.family {
            0 => Ok(None),
            NETKIT_AF_INET => {
                let b = &self.addr;
                Ok(Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()))
            }
            NETKIT_AF_INET6 => Ok(Some(Ipv6Addr::from(self.addr).into())),
            f => Err(Error::invalid(format!(
                "{what}: family {f} is neither NETKIT_AF_INET nor NETKIT_AF_INET6"
            ))),
        }
    }

    /// The address, which must be set.
    pub fn required(&self, what: &str) -> Result<IpAddr, Error> {
        self.get(what)?
            .ok_or_else(|| Error::invalid(format!("{what}: no address (family 0)")))
    }
}

impl netkit_prefix {
    /// The prefix, `None` for family 0.
    pub fn get(&self, what: &str) -> Result<Option<IpNetwork>, Error> {
        match self.ip.get(what)? {
            None => Ok(None),
            Some(ip) => IpNetwork::new(ip, self.len)
                .map(Some)
                .map_err(|e| Error::invalid(format!("{what}: {e}"))),
        }
    }

    /// The prefix, which must be set.
    pub fn required(&self, what: &str) -> Result<IpNetwork, Error> {
        self.get(what)?
            .ok_or_else(|| Error::invalid(format!("{what}: no address (family 0)")))
    }
}

/// The `NETKIT_AF_*` number of a family.
pub(crate) fn af_of(family: IpFamily) -> u8 {
    match family {
        IpFamily::V4 => NETKIT_AF_INET,
        IpFamily::V6 => NETKIT_AF_INET6,
    }
}

/// A family argument named `arg`: 0 (none: both families, or "unset"), `NETKIT_AF_INET` or
/// `NETKIT_AF_INET6`.
pub(crate) fn family_arg(family: u8, arg: &str) -> Result<Option<IpFamily>, Error> {
    match family {
        0 => Ok(None),
        NETKIT_AF_INET => Ok(Some(IpFamily::V4)),
        NETKIT_AF_INET6 => Ok(Some(IpFamily::V6)),
        f => Err(Error::invalid(format!(
            "{arg}: {f} is neither 0, NETKIT_AF_INET nor NETKIT_AF_INET6"
        ))),
    }
}

/// A borrowed, required UTF-8 string argument named `arg`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, arg: &str) -> Result<&'a str, Error> {
    // SAFETY: the caller's contract, passed on.
    unsafe { opt_str(p, arg) }?.ok_or_else(|| Error::null(arg))
}

/// A borrowed optional UTF-8 string argument (NULL: `None`).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, arg: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, alive for the call (the caller's contract).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(Some)
        .map_err(|_| Error::invalid(format!("argument `{arg}` is not valid UTF-8")))
}

/// A borrowed required struct argument.
///
/// # Safety
/// `p` is NULL or points to a valid `T` for the call.
pub(crate) unsafe fn ref_arg<'a, T>(p: *const T, arg: &str) -> Result<&'a T, Error> {
    // SAFETY: the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| Error::null(arg))
}

/// Store `value` in the out-parameter `out` named `arg`.
///
/// # Safety
/// `out` is NULL or points to writable storage for a `T`.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL and writable (the caller's contract); the old value is not dropped
        // (it is uninitialised storage as far as we know).
        unsafe { out.write(value) };
    }
}

/// Check that a required out-parameter is not NULL before doing any work.
pub(crate) fn out_arg<T>(out: *mut T, arg: &str) -> Result<(), Error> {
    if out.is_null() {
        Err(Error::null(arg))
    } else {
        Ok(())
    }
}

/// Parse an IP address ("10.0.0.1", "fd00::1") into `*out`.
#[no_mangle]
pub unsafe extern "C" fn netkit_ip_parse(
    text: *const c_char,
    out: *mut netkit_ip,
    err: *mut *mut crate::netkit_error,
) -> std::ffi::c_int {
    crate::error::status(err, || {
        // SAFETY: `text` is a C string for the call (contract).
        let text = unsafe { str_arg(text, "text") }?;
        out_arg(out, "out")?;
        let ip: IpAddr = text
            .parse()
            .map_err(|_| Error::invalid(format!("{text:?} is not an IP address")))?;
        // SAFETY: checked non-NULL above.
        unsafe { put(out, ip.into()) };
        Ok(())
    })
}

/// Parse a prefix ("10.0.0.1/24"; without "/N" the full length) into `*out`. The address
/// keeps its host bits (as `ip addr add` wants them).
#[no_mangle]
pub unsafe extern "C" fn netkit_prefix_parse(
    text: *const c_char,
    out: *mut netkit_prefix,
    err: *mut *mut crate::netkit_error,
) -> std::ffi::c_int {
    crate::error::status(err, || {
        // SAFETY: `text` is a C string for the call (contract).
        let text = unsafe { str_arg(text, "text") }?;
        out_arg(out, "out")?;
        let n: IpNetwork = text
            .parse()
            .map_err(|_| Error::invalid(format!("{text:?} is not an IP prefix")))?;
        // SAFETY: checked non-NULL above.
        unsafe { put(out, n.into()) };
        Ok(())
    })
}

/// Format an address ("10.0.0.1") as a new string in `*out` (free with `netkit_string_free`).
#[no_mangle]
pub unsafe extern "C" fn netkit_ip_format(
    ip: *const netkit_ip,
    out: *mut *mut c_char,
    err: *mut *mut crate::netkit_error,
) -> std::ffi::c_int {
    crate::error::status(err, || {
        // SAFETY: `ip` is NULL or a valid netkit_ip (contract).
        let ip = unsafe { ref_arg(ip, "ip") }?.required("ip")?;
        out_arg(out, "out")?;
        // SAFETY: checked non-NULL above.
        unsafe { put(out, crate::own::give_string(&ip.to_string())) };
        Ok(())
    })
}

/// Format a prefix ("10.0.0.1/24") as a new string in `*out` (free with `netkit_string_free`).
#[no_mangle]
pub unsafe extern "C" fn netkit_prefix_format(
    prefix: *const netkit_prefix,
    out: *mut *mut c_char,
    err: *mut *mut crate::netkit_error,
) -> std::ffi::c_int {
    crate::error::status(err, || {
        // SAFETY: `prefix` is NULL or a valid netkit_prefix (contract).
        let p = unsafe { ref_arg(prefix, "prefix") }?.required("prefix")?;
        out_arg(out, "out")?;
        // SAFETY: checked non-NULL above.
        unsafe { put(out, crate::own::give_string(&p.to_string())) };
        Ok(())
    })
}
