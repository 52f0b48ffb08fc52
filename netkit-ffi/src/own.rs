//! Ownership across the boundary: every object, array and string handed to C is boxed here and
//! recorded as live; its `_free` function takes it back only when the record matches (type and
//! length). A second free of the same pointer, or a pointer the library never returned, is
//! then ignored instead of corrupting the heap — best effort: once the allocator reuses the
//! address for a new object of the same type, the stale pointer names the new object.

use std::any::TypeId;
use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Address → (type, length) of everything C currently owns.
type Live = HashMap<usize, (TypeId, usize)>;

fn live() -> MutexGuard<'static, Live> {
    static LIVE: OnceLock<Mutex<Live>> = OnceLock::new();
    // A panic while the lock is held cannot leave the map half-updated (single inserts and
    // removes), so a poisoned lock is still usable.
    LIVE.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Remove the record of `p` when it matches `(id, len)`: true when the caller may take it back.
/// A pointer recorded with another type or length stays recorded: it is not ours to drop.
fn claim(p: usize, id: TypeId, len: usize) -> bool {
    let mut live = live();
    if live.get(&p) != Some(&(id, len)) {
        return false;
    }
    live.remove(&p);
    true
}

/// Box `value` and hand it to C.
pub(crate) fn give<T: 'static>(value: T) -> *mut T {
    let p = Box::into_raw(Box::new(value));
    live().insert(p as usize, (TypeId::of::<T>(), 1));
    p
}

/// Take back what [`give`] handed out; `None` for NULL or a pointer not live as a `T`.
///
/// # Safety
/// `p` is NULL or any pointer: it is only dereferenced when the registry knows it as a live `T`.
pub(crate) unsafe fn take<T: 'static>(p: *mut T) -> Option<Box<T>> {
    if p.is_null() || !claim(p as usize, TypeId::of::<T>(), 1) {
        return None;
    }
    // SAFETY: the registry recorded `p` as a `Box<T>` from `give`, and the record is removed, so
    // this is the only reconstruction.
    Some(unsafe { Box::from_raw(p) })
}

/// Hand an array to C: (pointer, length); an empty array is (NULL, 0).
pub(crate) fn give_vec<T: 'static>(items: Vec<T>) -> (*mut T, usize) {
    if items.is_empty() {
        return (std::ptr::null_mut(), 0);
    }
    let len = items.len();
    let p = Box::into_raw(items.into_boxed_slice()) as *mut T;
    live().insert(p as usize, (TypeId::of::<[T]>(), len));
    (p, len)
}

/// Take back an array [`give_vec`] handed out with this length.
///
/// # Safety
/// As [`take`]: `p` is only used when recorded as a live array of `len` `T`s.
pub(crate) unsafe fn take_vec<T: 'static>(p: *mut T, len: usize) -> Option<Box<[T]>> {
    if p.is_null() || !claim(p as usize, TypeId::of::<[T]>(), len) {
        return None;
    }
    // SAFETY: recorded as a boxed slice of exactly `len` `T`s by `give_vec`; the record is gone,
    // so this is the only reconstruction.
    Some(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)) })
}

/// A string for C, owned by the caller of the function that returns it (freed with
/// `netkit_string_free`). An interior NUL cuts the string there.
pub(crate) fn give_string(s: &str) -> *mut c_char {
    let p = c_string(s).into_raw();
    live().insert(p as usize, (TypeId::of::<CString>(), 1));
    p
}

/// Take back a string from [`give_string`].
///
/// # Safety
/// As [`take`].
pub(crate) unsafe fn take_string(p: *mut c_char) -> Option<CString> {
    if p.is_null() || !claim(p as usize, TypeId::of::<CString>(), 1) {
        return None;
    }
    // SAFETY: recorded by `give_string` from `CString::into_raw`; the record is gone.
    Some(unsafe { CString::from_raw(p) })
}

/// A `CString` from text that may hold a NUL (cut there).
pub(crate) fn c_string(s: &str) -> CString {
    let end = s.find('\0').unwrap_or(s.len());
    CString::new(&s[..end]).unwrap_or_default()
}

/// A string field of a returned struct: owned by the struct (not recorded on its own), freed
/// by [`free_field`] when the struct is freed. `None` becomes NULL.
pub(crate) fn field(s: Option<&str>) -> *mut c_char {
    s.map_or(std::ptr::null_mut(), |s| c_string(s).into_raw())
}

/// Free a string made by [`field`].
///
/// # Safety
/// `p` is NULL or came from [`field`] and is freed once (the struct's `Drop` owns it).
pub(crate) unsafe fn free_field(p: *mut c_char) {
    if !p.is_null() {
        // SAFETY: from `CString::into_raw` in `field`, dropped once by the owning struct.
        drop(unsafe { CString::from_raw(p) });
    }
}

/// An array field of a returned struct: owned by the struct (not recorded on its own), freed
/// by [`free_slice_field`] when the struct is freed. An empty array is (NULL, 0).
pub(crate) fn slice_field<T>(items: Vec<T>) -> (*mut T, usize) {
    if items.is_empty() {
        return (std::ptr::null_mut(), 0);
    }
    let len = items.len();
    (Box::into_raw(items.into_boxed_slice()) as *mut T, len)
}

/// Free an array made by [`slice_field`].
///
/// # Safety
/// `p` is NULL or came from [`slice_field`] with this length and is freed once (the struct's
/// `Drop` owns it).
pub(crate) unsafe fn free_slice_field<T>(p: *mut T, len: usize) {
    if !p.is_null() {
        // SAFETY: a boxed slice of `len` elements from `slice_field`, dropped once by its owner.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)) });
    }
}

/// An object field of a returned struct (a pointer to one object the struct owns, not recorded
/// on its own), freed by [`free_box_field`] when the struct is freed.
pub(crate) fn box_field<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Free an object made by [`box_field`].
///
/// # Safety
/// `p` is NULL or came from [`box_field`] and is freed once (the struct's `Drop` owns it).
pub(crate) unsafe fn free_box_field<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: from `Box::into_raw` in `box_field`, dropped once by its owner.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Free a string returned by netkit (`char *` out-parameters such as `netkit_ip_format`'s).
/// NULL, and a pointer that is not a live netkit string, are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_string_free(s: *mut c_char) {
    // SAFETY: `take_string` only reconstructs a string the registry knows as live.
    drop(unsafe { take_string(s) });
}

/// Free an array of strings returned by netkit (such as `netkit_netns_list`'s), with the length
/// that came with it. NULL, a wrong length and a second free are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_strings_free(items: *mut *mut c_char, len: usize) {
    // SAFETY: `take_vec` only reconstructs an array the registry knows with this length.
    if let Some(items) = unsafe { take_vec(items, len) } {
        for s in items.iter() {
            // SAFETY: each element was made by `give_string` with the array.
            drop(unsafe { take_string(*s) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_take_is_refused() {
        let p = give(7u32);
        // SAFETY: p is live.
        assert_eq!(unsafe { take(p) }.map(|b| *b), Some(7));
        // SAFETY: the registry no longer knows p; it is not dereferenced.
        assert!(unsafe { take(p) }.is_none());
        let (a, n) = give_vec(vec![1u8, 2, 3]);
        // SAFETY: wrong length: refused without touching it; then the right one.
        assert!(unsafe { take_vec(a, n + 1) }.is_none());
        assert_eq!(unsafe { take_vec(a, n) }.map(|b| b.len()), Some(3));
        assert_eq!(give_vec(Vec::<u8>::new()), (std::ptr::null_mut(), 0));
    }

    #[test]
    fn wrong_type_is_refused() {
        let p = give(7u64);
        // SAFETY: recorded as u64, asked as u32: refused, nothing dereferenced.
        assert!(unsafe { take(p as *mut u32) }.is_none());
        // SAFETY: p is live as a u64.
        assert!(unsafe { take(p) }.is_some());
    }
}
