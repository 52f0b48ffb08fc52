package netkit

// #include "netkit.h"
import "C"

import "runtime"

// Handle is a netlink connection inside one namespace (as vishvananda/netlink's Handle made
// with NewHandleAt): every link, address and route method works in that namespace, and the
// calling goroutine's thread never changes namespace. Safe for use by many goroutines (their
// requests take turns on the handle's socket; open one handle per goroutine to work in
// parallel). Close it when done; Close waits for calls in progress.
type Handle struct {
	obj object[C.netkit_handle]
}

// NewHandleAt opens a handle in namespace ns. The handle keeps the namespace open: ns may be
// closed afterwards.
func NewHandleAt(ns *Netns) (*Handle, error) {
	var h *C.netkit_handle
	err := ns.use(func(p *C.netkit_netns) error {
		var cerr *C.netkit_error
		return check(C.netkit_handle_open(p, &h, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	handle := &Handle{}
	handle.obj.p = h
	// A safety net only: an unreachable Handle that was never closed is closed by the GC.
	runtime.SetFinalizer(handle, (*Handle).Close)
	return handle, nil
}

// use runs f with the C handle under the read lock; an error for a closed handle.
func (h *Handle) use(f func(p *C.netkit_handle) error) error {
	if h == nil {
		return invalidf("nil handle")
	}
	return h.obj.use("handle", f)
}

// Netns opens the handle's namespace (a new object: close it).
func (h *Handle) Netns() (*Netns, error) {
	var ns *C.netkit_netns
	err := h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(C.netkit_handle_netns(p, &ns, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	return newNetns(ns), nil
}

// Close closes the handle. A second Close does nothing.
func (h *Handle) Close() {
	if h != nil && h.obj.close(func(p *C.netkit_handle) { C.netkit_handle_close(p) }) {
		runtime.SetFinalizer(h, nil)
	}
}
