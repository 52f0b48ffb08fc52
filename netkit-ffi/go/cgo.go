package netkit

// How the package links libnetkit (see the package documentation):
//
//   - by default, the static library the repository's cargo build leaves in target/release
//     (`cargo build --release -p netkit-ffi`), with the header from netkit-ffi/include;
//   - with the build tag netkit_pkgconfig, whatever `pkg-config netkit` names (a library
//     installed by netkit-ffi/install.sh, or any netkit.pc found through PKG_CONFIG_PATH).
//
// The libraries after libnetkit.a are what the Rust standard library needs from the system
// (netkit.pc's Libs.private).

/*
#cgo !netkit_pkgconfig CFLAGS: -I${SRCDIR}/../include
#cgo !netkit_pkgconfig LDFLAGS: ${SRCDIR}/../../target/release/libnetkit.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
#cgo netkit_pkgconfig pkg-config: netkit
#include <stdlib.h>
#include "netkit.h"
*/
import "C"

import (
	"strings"
	"unsafe"
)

// arena holds the C copies of the strings and arrays one call passes to libnetkit; free
// releases them all after the call. A string with a NUL byte cannot be passed to C: the first
// one is remembered in err and the call must not be made.
type arena struct {
	ptrs []unsafe.Pointer
	err  error
}

// str returns a C copy of s (freed by free).
func (a *arena) str(what, s string) *C.char {
	if strings.IndexByte(s, 0) >= 0 && a.err == nil {
		a.err = invalidf("%s %q contains a NUL byte", what, s)
	}
	p := C.CString(s)
	a.ptrs = append(a.ptrs, unsafe.Pointer(p))
	return p
}

// optStr is str, or NULL for the empty string.
func (a *arena) optStr(what, s string) *C.char {
	if s == "" {
		return nil
	}
	return a.str(what, s)
}

// alloc returns n zeroed bytes of C memory (freed by free).
func (a *arena) alloc(n int) unsafe.Pointer {
	p := C.calloc(C.size_t(n), 1)
	a.ptrs = append(a.ptrs, p)
	return p
}

// cArray allocates n zeroed elements of T in a (nil for 0) and returns them as a slice.
func cArray[T any](a *arena, n int) []T {
	if n == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*T)(a.alloc(n*int(unsafe.Sizeof(zero)))), n)
}

// first is a pointer to the first element of s (nil for an empty slice), for a C array
// argument.
func first[T any](s []T) *T {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// free releases everything the arena allocated.
func (a *arena) free() {
	for _, p := range a.ptrs {
		C.free(p)
	}
	a.ptrs = nil
}

// goStr copies a C string owned by a libnetkit struct ("" for NULL).
func goStr(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// takeStrings copies an array of strings libnetkit returned (an empty list for none) and
// frees it.
func takeStrings(list **C.char, n C.uintptr_t) []string {
	out := make([]string, 0, int(n))
	if list == nil {
		return out
	}
	defer C.netkit_strings_free(list, n)
	for _, s := range unsafe.Slice(list, int(n)) {
		out = append(out, goStr(s))
	}
	return out
}
