//! Many threads at once: one shared handle and one handle per thread, each thread with its own
//! links; every result checked.

use netkit::handle::*;
use netkit::link::*;

use crate::common::{cs, ok, Ns};
use crate::kinds::veth;

#[test]
fn eight_threads_at_once() {
    let t = Ns::new("fthreads");
    std::thread::scope(|s| {
        for i in 0..8 {
            let t = &t;
            s.spawn(move || {
                // Even threads share the test's handle, odd ones open their own.
                let mut own = std::ptr::null_mut();
                if i % 2 == 1 {
                    // SAFETY: valid arguments.
                    ok(|e| unsafe { netkit_handle_open(t.ns, &mut own, e) });
                }
                let h = if own.is_null() {
                    t.h as *const _
                } else {
                    own as *const _
                };
                for round in 0..10 {
                    let (a, b) = (cs(&format!("t{i}r{round}a")), cs(&format!("t{i}r{round}b")));
                    // SAFETY: valid arguments throughout.
                    ok(|e| unsafe { netkit_link_add_veth(h, &veth(&a, &b), std::ptr::null_mut(), e) });
                    let mut l = std::ptr::null_mut();
                    // SAFETY: as above.
                    ok(|e| unsafe { netkit_link_get(h, b.as_ptr(), &mut l, e) });
                    // SAFETY: a live link, freed once.
                    unsafe { netkit_link_free(l) };
                    let (mut links, mut len) = (std::ptr::null_mut(), 0usize);
                    // SAFETY: as above.
                    ok(|e| unsafe { netkit_link_list(h, &mut links, &mut len, e) });
                    assert!(len >= 3);
                    // SAFETY: the library's array.
                    unsafe { netkit_link_list_free(links, len) };
                    // SAFETY: as above.
                    ok(|e| unsafe { netkit_link_del(h, a.as_ptr(), e) });
                }
                // SAFETY: NULL or this thread's live handle.
                unsafe { netkit_handle_close(own) };
            });
        }
    });
    let names = netkit_test_support::snapshot::link_names(t.name());
    assert_eq!(names, ["lo"], "every thread deleted its pairs");
}
