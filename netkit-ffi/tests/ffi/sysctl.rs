//! Sysctls through the ABI, inside a test namespace, compared with `sysctl` run in it.

use std::ffi::CStr;

use netkit::error::*;
use netkit::sysctl::*;

use crate::common::{cs, fails, ok, Ns};

#[test]
fn sysctl_set_and_get_in_a_namespace() {
    let t = Ns::new("fsysctl");
    let (key, one) = (cs("net.ipv4.ip_forward"), cs("1"));
    // SAFETY: valid arguments throughout.
    ok(|e| unsafe { netkit_sysctl_set(t.ns, key.as_ptr(), one.as_ptr(), e) });
    let seen = netkit_test_support::run_in(t.name(), "sysctl", ["-n", "net.ipv4.ip_forward"]);
    assert_eq!(seen.trim(), "1");
    let mut v = std::ptr::null_mut();
    // SAFETY: as above.
    ok(|e| unsafe { netkit_sysctl_get(t.ns, key.as_ptr(), &mut v, e) });
    // SAFETY: a string from the library, read then freed.
    unsafe {
        assert_eq!(CStr::from_ptr(v).to_str().unwrap(), "1");
        netkit::own::netkit_string_free(v);
    }
    let missing = cs("net.ipv4.conf.nope0.forwarding");
    // SAFETY: as above.
    fails(NETKIT_E_NOT_FOUND, |e| unsafe {
        netkit_sysctl_get(t.ns, missing.as_ptr(), &mut v, e)
    });
    let bad = cs("../../etc/passwd");
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_sysctl_get(t.ns, bad.as_ptr(), &mut v, e)
    });
    let two = cs("2x");
    // The kernel refuses a value that is no number.
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_sysctl_set(t.ns, key.as_ptr(), two.as_ptr(), e)
    });
}
