//! Status codes, the `netkit_error` object, and the one mapping from netkit-core's error types
//! to error kinds.
//!
//! Every function returns its status as an `int`: [`NETKIT_OK`] or a negative `NETKIT_E_*`
//! kind. The details (message, errno) travel in a `netkit_error` object the caller asked for
//! with a non-NULL `netkit_error **err`; there is no thread-local "last error".

use std::ffi::{c_char, c_int, CString};

use netkit_core::events::EventError;
use netkit_core::firewall::FirewallError;
use netkit_core::ipam::IpamError;
use netkit_core::neigh::NeighError;
use netkit_core::sysctl::SysctlError;
use netkit_core::{AddrError, LinkError, NetlinkError, NetnsError, RouteError, RuleError};

use crate::own;

/// Success.
pub const NETKIT_OK: c_int = 0;
/// An argument was NULL, not UTF-8, out of range or otherwise rejected (also the kernel's `EINVAL`).
pub const NETKIT_E_INVALID: c_int = -1;
/// The object (namespace, link, address, route, …) does not exist.
pub const NETKIT_E_NOT_FOUND: c_int = -2;
/// The object already exists.
pub const NETKIT_E_EXISTS: c_int = -3;
/// The running kernel does not support this (a link kind without driver, a missing feature).
pub const NETKIT_E_UNSUPPORTED: c_int = -4;
/// Not permitted (`EPERM`, `EACCES`): netkit needs CAP_NET_ADMIN / CAP_SYS_ADMIN.
pub const NETKIT_E_PERMISSION: c_int = -5;
/// The object is busy (`EBUSY`), try again later.
pub const NETKIT_E_BUSY: c_int = -6;
/// Any other failure of the kernel or of a system call; `netkit_error_errno` says which.
pub const NETKIT_E_IO: c_int = -7;
/// A bug in netkit (a panic, an impossible state); the message says where.
pub const NETKIT_E_INTERNAL: c_int = -8;
/// An address pool has no free address left.
pub const NETKIT_E_EXHAUSTED: c_int = -9;
/// An attachment CHECK found the container's interface, addresses, routes or host side
/// differ from what ADD made (`netkit_attach_check`); the message names the first difference.
pub const NETKIT_E_CHECK_FAILED: c_int = -10;

/// An error: kind, errno (0 when none) and a message naming the operation, the object and the
/// namespace. Opaque to C; created by a failing call, freed with `netkit_error_free`.
pub struct netkit_error {
    kind: c_int,
    errno: c_int,
    message: CString,
}

/// The error every function of the crate returns internally: converted to a status code and,
/// when asked for, a `netkit_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// One of the `NETKIT_E_*` constants.
    pub kind: c_int,
    /// The errno behind the failure, 0 when none.
    pub errno: c_int,
    /// What failed.
    pub message: String,
}

impl Error {
    /// An error of this kind without errno.
    pub fn new(kind: c_int, message: impl Into<String>) -> Self {
        Self {
            kind,
            errno: 0,
            message: message.into(),
        }
    }

    /// [`NETKIT_E_INVALID`] with this message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(NETKIT_E_INVALID, message)
    }

    /// A NULL pointer where argument `arg` must point to something.
    pub fn null(arg: &str) -> Self {
        Self::invalid(format!("argument `{arg}` is NULL"))
    }

    /// A panic caught at the boundary.
    pub fn panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Self::new(NETKIT_E_INTERNAL, format!("internal error (panic): {what}"))
    }

    /// Classify a failure from its errno and the error type's own predicates: the one place
    /// where netkit-core's errors become kinds. `invalid` says the error type rejected a
    /// parameter before anything reached the kernel.
    fn classify(message: String, errno: Option<i32>, facts: Facts) -> Self {
        let kind = if facts.unsupported {
            NETKIT_E_UNSUPPORTED
        } else if facts.exists {
            NETKIT_E_EXISTS
        } else if facts.not_found {
            NETKIT_E_NOT_FOUND
        } else if facts.invalid {
            NETKIT_E_INVALID
        } else {
            kind_of_errno(errno)
        };
        Self {
            kind,
            errno: errno.unwrap_or(0),
            message,
        }
    }
}

/// What an error type says about itself.
#[derive(Default, Clone, Copy)]
struct Facts {
    exists: bool,
    not_found: bool,
    unsupported: bool,
    invalid: bool,
}

/// The kind of an errno that no predicate claimed.
fn kind_of_errno(errno: Option<i32>) -> c_int {
    match errno {
        Some(libc::EEXIST) => NETKIT_E_EXISTS,
        Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL) => NETKIT_E_NOT_FOUND,
        Some(libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT) => NETKIT_E_UNSUPPORTED,
        Some(libc::EPERM | libc::EACCES) => NETKIT_E_PERMISSION,
        Some(libc::EBUSY) => NETKIT_E_BUSY,
        Some(libc::EINVAL | libc::ERANGE) => NETKIT_E_INVALID,
        _ => NETKIT_E_IO,
    }
}

impl From<LinkError> for Error {
    fn from(e: LinkError) -> Self {
        let facts = Facts {
            exists: e.is_exists(),
            not_found: e.is_not_found(),
            unsupported: e.is_unsupported(),
            invalid: matches!(e, LinkError::Invalid { .. }),
        };
        Self::classify(e.to_string(), e.errno(), facts)
    }
}

impl From<AddrError> for Error {
    fn from(e: AddrError) -> Self {
        let facts = Facts {
            exists: e.is_exists(),
            not_found: e.is_not_found(),
            invalid: matches!(e, AddrError::Invalid { .. }),
            ..Facts::default()
        };
        Self::classify(e.to_string(), e.errno(), facts)
    }
}

impl From<RouteError> for Error {
    fn from(e: RouteError) -> Self {
        let facts = Facts {
            exists: e.is_exists(),
            not_found: e.is_not_found(),
            invalid: matches!(e, RouteError::Invalid { .. }),
            ..Facts::default()
        };
        Self::classify(e.to_string(), e.errno(), facts)
    }
}

impl From<RuleError> for Error {
    fn from(e: RuleError) -> Self {
        let facts = Facts {
            exists: e.is_exists(),
            not_found: e.is_not_found(),
            ..Facts::default()
        };
        Self::classify(e.to_string(), e.errno(), facts)
    }
}

impl From<NeighError> for Error {
    fn from(e: NeighError) -> Self {
        let facts = Facts {
            exists: e.is_exists(),
            not_found: e.is_not_found(),
            ..Facts::default()
        };
        Self::classify(e.to_string(), e.errno(), facts)
    }
}

impl From<EventError> for Error {
    fn from(e: EventError) -> Self {
        let errno = match &e {
            EventError::Subscribe { cause, .. } | EventError::Receive { cause, .. } => cause.errno,
        };
        Self::classify(e.to_string(), errno, Facts::default())
    }
}

impl From<NetnsError> for Error {
    fn from(e: NetnsError) -> Self {
        let facts = Facts {
            invalid: matches!(e, NetnsError::InvalidName(_)),
            ..Facts::default()
        };
        Self::classify(e.to_string(), e.errno(), facts)
    }
}

impl From<NetlinkError> for Error {
    fn from(e: NetlinkError) -> Self {
        let facts = Facts {
            exists: e.is_exists(),
            not_found: e.is_not_found(),
            unsupported: e.is_not_supported(),
            ..Facts::default()
        };
        Self::classify(e.to_string(), e.errno, facts)
    }
}

impl From<SysctlError> for Error {
    fn from(e: SysctlError) -> Self {
        let facts = Facts {
            not_found: e.is_not_found(),
            invalid: e.is_invalid(),
            ..Facts::default()
        };
        Self::classify(e.to_string(), e.errno(), facts)
    }
}

impl From<IpamError> for Error {
    fn from(e: IpamError) -> Self {
        let message = e.to_string();
        let (kind, errno) = match &e {
            IpamError::Exhausted { .. } => (NETKIT_E_EXHAUSTED, None),
            IpamError::InUse { .. } | IpamError::AlreadyHolds { .. } => (NETKIT_E_EXISTS, None),
            IpamError::LockTimeout { .. } => (NETKIT_E_BUSY, None),
            IpamError::Io { cause, .. } => (kind_of_errno(cause.raw_os_error()), cause.raw_os_error()),
            IpamError::Corrupt { .. } | IpamError::NotAStore { .. } => (NETKIT_E_IO, None),
            _ => (NETKIT_E_INVALID, None),
        };
        Self {
            kind,
            errno: errno.unwrap_or(0),
            message,
        }
    }
}

impl From<FirewallError> for Error {
    fn from(e: FirewallError) -> Self {
        let message = e.to_string();
        match e {
            FirewallError::Netns(inner) => Self {
                message,
                ..inner.into()
            },
            FirewallError::Sysctl(inner) => Self {
                message,
                ..inner.into()
            },
            FirewallError::Invalid { .. } => Self::new(NETKIT_E_INVALID, message),
            FirewallError::Conflict { .. } | FirewallError::Foreign { .. } => Self::new(NETKIT_E_EXISTS, message),
            FirewallError::Unavailable { .. } => Self::new(NETKIT_E_UNSUPPORTED, message),
            FirewallError::NotFound(_) => Self::new(NETKIT_E_NOT_FOUND, message),
            FirewallError::LockTimeout { .. } => Self::new(NETKIT_E_BUSY, message),
            FirewallError::Kernel { errno, .. } => Self::classify(message, errno, Facts::default()),
            FirewallError::State { source, .. } => Self::classify(message, source.raw_os_error(), Facts::default()),
            FirewallError::Corrupt { .. } => Self::new(NETKIT_E_IO, message),
            FirewallError::Aborted(_) => Self::new(NETKIT_E_INTERNAL, message),
        }
    }
}

/// Run one call at the boundary: catch panics, turn the result into a status code and, when
/// `err` is not NULL, store a new `netkit_error` in `*err` (NULL on success).
pub(crate) fn status(err: *mut *mut netkit_error, f: impl FnOnce() -> Result<(), Error>) -> c_int {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| Err(Error::panic(p)));
    let (code, object) = match result {
        Ok(()) => (NETKIT_OK, std::ptr::null_mut()),
        Err(e) => (e.kind, own::give(netkit_error::from(e))),
    };
    if err.is_null() {
        // SAFETY: nobody else can see `object`: it was made just above and is freed once here.
        unsafe { netkit_error_free(object) };
    } else {
        // SAFETY: the caller passes NULL or a pointer to writable `netkit_error *` storage (the
        // documented contract of every function).
        unsafe { *err = object };
    }
    code
}

impl From<Error> for netkit_error {
    fn from(e: Error) -> Self {
        // A message with an interior NUL (from a name the caller passed) is cut there.
        let bytes: Vec<u8> = e.message.into_bytes().into_iter().take_while(|b| *b != 0).collect();
        Self {
            kind: e.kind,
            errno: e.errno,
            message: CString::new(bytes).unwrap_or_default(),
        }
    }
}

/// The error's message (UTF-8, never NULL for a non-NULL `err`). The string belongs to the
/// error and lives until `netkit_error_free`. Returns NULL for a NULL `err`.
#[no_mangle]
pub unsafe extern "C" fn netkit_error_message(err: *const netkit_error) -> *const c_char {
    // SAFETY: NULL or a live error from this library (the contract); only read.
    match unsafe { err.as_ref() } {
        Some(e) => e.message.as_ptr(),
        None => std::ptr::null(),
    }
}

/// The error's kind: one of the `NETKIT_E_*` constants (the status the call returned).
/// [`NETKIT_E_INVALID`] for a NULL `err`.
#[no_mangle]
pub unsafe extern "C" fn netkit_error_kind(err: *const netkit_error) -> c_int {
    // SAFETY: NULL or a live error from this library; only read.
    unsafe { err.as_ref() }.map_or(NETKIT_E_INVALID, |e| e.kind)
}

/// The positive errno the kernel or a system call returned, 0 when the failure had none
/// (or `err` is NULL).
#[no_mangle]
pub unsafe extern "C" fn netkit_error_errno(err: *const netkit_error) -> c_int {
    // SAFETY: NULL or a live error from this library; only read.
    unsafe { err.as_ref() }.map_or(0, |e| e.errno)
}

/// Free an error. NULL is ignored; so is a pointer this library does not know as a live
/// error (a second free of the same error, best effort).
#[no_mangle]
pub unsafe extern "C" fn netkit_error_free(err: *mut netkit_error) {
    // SAFETY: `take` only rebuilds the box when the registry knows `err` as a live error.
    drop(unsafe { own::take(err) });
}

/// The name of a status code ("NETKIT_E_NOT_FOUND", …) as a static string (never freed),
/// "NETKIT_E_UNKNOWN" for a code that is none of the constants.
#[no_mangle]
pub extern "C" fn netkit_status_name(status: c_int) -> *const c_char {
    let name: &'static [u8] = match status {
        NETKIT_OK => b"NETKIT_OK\0",
        NETKIT_E_INVALID => b"NETKIT_E_INVALID\0",
        NETKIT_E_NOT_FOUND => b"NETKIT_E_NOT_FOUND\0",
        NETKIT_E_EXISTS => b"NETKIT_E_EXISTS\0",
        NETKIT_E_UNSUPPORTED => b"NETKIT_E_UNSUPPORTED\0",
        NETKIT_E_PERMISSION => b"NETKIT_E_PERMISSION\0",
        NETKIT_E_BUSY => b"NETKIT_E_BUSY\0",
        NETKIT_E_IO => b"NETKIT_E_IO\0",
        NETKIT_E_INTERNAL => b"NETKIT_E_INTERNAL\0",
        NETKIT_E_EXHAUSTED => b"NETKIT_E_EXHAUSTED\0",
        NETKIT_E_CHECK_FAILED => b"NETKIT_E_CHECK_FAILED\0",
        _ => b"NETKIT_E_UNKNOWN\0",
    };
    name.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_kinds() {
        assert_eq!(kind_of_errno(Some(libc::EPERM)), NETKIT_E_PERMISSION);
        assert_eq!(kind_of_errno(Some(libc::EBUSY)), NETKIT_E_BUSY);
        assert_eq!(kind_of_errno(Some(libc::EIO)), NETKIT_E_IO);
        assert_eq!(kind_of_errno(None), NETKIT_E_IO);
        let e: Error = NetlinkError::from_errno(libc::EOPNOTSUPP).into();
        assert_eq!((e.kind, e.errno), (NETKIT_E_UNSUPPORTED, libc::EOPNOTSUPP));
        let e: Error = NetnsError::InvalidName("a/b".into()).into();
        assert_eq!(e.kind, NETKIT_E_INVALID);
        let e: Error = NetnsError::Exists("x".into()).into();
        assert_eq!(e.kind, NETKIT_E_EXISTS);
    }

    #[test]
    fn kernel_permission_and_busy() {
        let e: Error = NetlinkError::from_errno(libc::EPERM).into();
        assert_eq!((e.kind, e.errno), (NETKIT_E_PERMISSION, libc::EPERM));
        let e: Error = NetlinkError::from_errno(libc::EBUSY).into();
        assert_eq!(e.kind, NETKIT_E_BUSY);
        let e: Error = IpamError::Exhausted {
            pool: "p".into(),
            set: "10.0.0.2-10.0.0.3".into(),
        }
        .into();
        assert_eq!(e.kind, NETKIT_E_EXHAUSTED);
        let e: Error = FirewallError::NotFound("service x".into()).into();
        assert_eq!(e.kind, NETKIT_E_NOT_FOUND);
    }

    #[test]
    fn a_panic_becomes_internal() {
        let mut err = std::ptr::null_mut();
        let code = status(&mut err, || panic!("boom {}", 7));
        assert_eq!(code, NETKIT_E_INTERNAL);
        // SAFETY: a live error, read then freed once.
        unsafe {
            assert_eq!(netkit_error_kind(err), NETKIT_E_INTERNAL);
            let msg = std::ffi::CStr::from_ptr(netkit_error_message(err)).to_str().unwrap();
            assert!(msg.contains("boom 7"), "{msg}");
            netkit_error_free(err);
        }
        // Without an error object the status alone.
        assert_eq!(status(std::ptr::null_mut(), || panic!("again")), NETKIT_E_INTERNAL);
    }

    #[test]
    fn interior_nul_is_cut() {
        let e = netkit_error::from(Error::invalid("bad\0tail"));
        assert_eq!(e.message.to_str().unwrap(), "bad");
    }
}
