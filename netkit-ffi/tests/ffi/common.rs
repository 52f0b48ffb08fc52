//! What the FFI tests share: calling a function with an error out-parameter, C strings, a
//! namespace opened through the ABI.

use std::ffi::{c_int, CStr, CString};

use netkit::handle::{netkit_handle, netkit_handle_close, netkit_handle_open};
use netkit::netkit_error;
use netkit::netns::{netkit_netns, netkit_netns_free, netkit_netns_open};
use netkit_test_support::HostNs;

/// A failed call: status, errno and message.
#[derive(Debug)]
pub struct Failure {
    pub status: c_int,
    pub errno: c_int,
    pub message: String,
}

/// Call `f` with a fresh `netkit_error *` out-parameter; the error (if any) is read and freed.
/// Checks the convention: `*err` is NULL exactly on success and the status is the error's kind.
pub fn call(f: impl FnOnce(*mut *mut netkit_error) -> c_int) -> Result<(), Failure> {
    // Not NULL on entry: every call must write it.
    let mut err = std::ptr::dangling_mut::<netkit_error>();
    let status = f(&mut err);
    if status == 0 {
        assert!(err.is_null(), "success must store NULL in *err");
        return Ok(());
    }
    assert!(!err.is_null(), "failure {status} without an error object");
    // SAFETY: `err` is a live error from the library; read, then freed once.
    let failure = unsafe {
        let message = CStr::from_ptr(netkit::error::netkit_error_message(err))
            .to_str()
            .expect("UTF-8 message")
            .to_string();
        let f = Failure {
            status,
            errno: netkit::error::netkit_error_errno(err),
            message,
        };
        assert_eq!(netkit::error::netkit_error_kind(err), status, "kind == status");
        netkit::error::netkit_error_free(err);
        f
    };
    Err(failure)
}

/// `call`, which must succeed.
#[track_caller]
pub fn ok(f: impl FnOnce(*mut *mut netkit_error) -> c_int) {
    if let Err(e) = call(f) {
        panic!("call failed: {e:?}");
    }
}

/// `call`, which must fail with `status`; returns the failure.
#[track_caller]
pub fn fails(status: c_int, f: impl FnOnce(*mut *mut netkit_error) -> c_int) -> Failure {
    match call(f) {
        Ok(()) => panic!("call succeeded, expected status {status}"),
        Err(e) => {
            assert_eq!(e.status, status, "{e:?}");
            e
        }
    }
}

/// A C string.
pub fn cs(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// A test namespace (deleted on drop) with a namespace object and a handle from the ABI.
pub struct Ns {
    pub host: HostNs,
    pub ns: *mut netkit_netns,
    pub h: *mut netkit_handle,
}

impl Ns {
    pub fn new(tag: &str) -> Ns {
        let host = HostNs::new(tag);
        let mut ns = std::ptr::null_mut();
        let mut h = std::ptr::null_mut();
        let name = cs(host.name());
        // SAFETY: valid C string and out-pointers.
        ok(|e| unsafe { netkit_netns_open(name.as_ptr(), &mut ns, e) });
        // SAFETY: `ns` is live; valid out-pointer.
        ok(|e| unsafe { netkit_handle_open(ns, &mut h, e) });
        Ns { host, ns, h }
    }

    pub fn name(&self) -> &str {
        self.host.name()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // SAFETY: both are live objects of this struct, freed once.
        unsafe {
            netkit_handle_close(self.h);
            netkit_netns_free(self.ns);
        }
    }
}

// SAFETY: the library's objects are thread-safe (the header's conventions).
unsafe impl Send for Ns {}
// SAFETY: as above.
unsafe impl Sync for Ns {}

/// Config structs built as C builds them, zero-initialised (`= {0}`: every field's default).
pub trait Zeroed: Sized {
    /// The all-zero value.
    fn zeroed() -> Self {
        // SAFETY: implemented only for the crate's `#[repr(C)]` config structs, whose fields
        // (integers, bools, byte arrays, nullable pointers, netkit_ip / netkit_prefix) all
        // accept the all-zero pattern.
        unsafe { std::mem::zeroed() }
    }
}

impl Zeroed for netkit::rule::netkit_rule_config {}
impl Zeroed for netkit::neigh::netkit_neigh_config {}
impl Zeroed for netkit::neigh::netkit_fdb_config {}
