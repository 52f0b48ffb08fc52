package netkit

// #include <stdlib.h>
// #include "netkit.h"
import "C"

import "runtime"

// Netns is an open network namespace (as vishvananda/netns's NsHandle). Holding it keeps the
// namespace alive even when its name is deleted. Close it when done: Close does not delete
// the namespace (DeleteNamedNetns does). Safe for use by many goroutines; Close waits for
// calls in progress on it.
type Netns struct {
	obj object[C.netkit_netns]
}

func newNetns(p *C.netkit_netns) *Netns {
	ns := &Netns{}
	ns.obj.p = p
	// A safety net only: an unreachable Netns that was never closed is closed by the GC.
	runtime.SetFinalizer(ns, (*Netns).Close)
	return ns
}

// use runs f with the C object under the read lock; an error for a closed namespace.
func (ns *Netns) use(f func(p *C.netkit_netns) error) error {
	if ns == nil {
		return invalidf("nil namespace")
	}
	return ns.obj.use("namespace", f)
}

// NewNamedNetns creates the named namespace name (as `ip netns add NAME`, bind-mounted under
// /run/netns) and opens it. ErrExists when the name is taken. The calling goroutine's thread
// does not move into it.
func NewNamedNetns(name string) (*Netns, error) {
	var a arena
	defer a.free()
	cname := a.str("namespace name", name)
	if a.err != nil {
		return nil, a.err
	}
	var p *C.netkit_netns
	var cerr *C.netkit_error
	if err := check(C.netkit_netns_create(cname, &p, &cerr), cerr); err != nil {
		return nil, err
	}
	return newNetns(p), nil
}

// GetNetnsFromName opens the named namespace name (/run/netns/NAME). ErrNotFound when there
// is none.
func GetNetnsFromName(name string) (*Netns, error) {
	var a arena
	defer a.free()
	cname := a.str("namespace name", name)
	if a.err != nil {
		return nil, a.err
	}
	var p *C.netkit_netns
	var cerr *C.netkit_error
	if err := check(C.netkit_netns_open(cname, &p, &cerr), cerr); err != nil {
		return nil, err
	}
	return newNetns(p), nil
}

// GetNetnsFromPath opens the namespace at path: a bind mount (/run/netns/x) or
// /proc/PID/ns/net. ErrInvalid when the file is no network namespace.
func GetNetnsFromPath(path string) (*Netns, error) {
	var a arena
	defer a.free()
	cpath := a.str("namespace path", path)
	if a.err != nil {
		return nil, a.err
	}
	var p *C.netkit_netns
	var cerr *C.netkit_error
	if err := check(C.netkit_netns_open_path(cpath, &p, &cerr), cerr); err != nil {
		return nil, err
	}
	return newNetns(p), nil
}

// GetNetnsFromPid opens the network namespace of process pid.
func GetNetnsFromPid(pid int) (*Netns, error) {
	if pid <= 0 {
		return nil, invalidf("pid %d", pid)
	}
	var p *C.netkit_netns
	var cerr *C.netkit_error
	if err := check(C.netkit_netns_open_pid(C.uint32_t(pid), &p, &cerr), cerr); err != nil {
		return nil, err
	}
	return newNetns(p), nil
}

// DeleteNamedNetns deletes the named namespace name (as `ip netns delete`): the name goes at
// once, the namespace when nothing holds it any more. A name that does not exist is success.
func DeleteNamedNetns(name string) error {
	var a arena
	defer a.free()
	cname := a.str("namespace name", name)
	if a.err != nil {
		return a.err
	}
	var cerr *C.netkit_error
	return check(C.netkit_netns_delete(cname, &cerr), cerr)
}

// ListNamedNetns returns the names of the named namespaces (as `ip netns list`).
func ListNamedNetns() ([]string, error) {
	var names **C.char
	var n C.uintptr_t
	var cerr *C.netkit_error
	if err := check(C.netkit_netns_list(&names, &n, &cerr), cerr); err != nil {
		return nil, err
	}
	return takeStrings(names, n), nil
}

// Name is the name the namespace was created or opened by; "" for one opened by path or pid.
func (ns *Netns) Name() (string, error) {
	var name string
	err := ns.use(func(p *C.netkit_netns) error {
		var s *C.char
		var cerr *C.netkit_error
		if err := check(C.netkit_netns_name(p, &s, &cerr), cerr); err != nil {
			return err
		}
		name = goStr(s)
		C.netkit_string_free(s)
		return nil
	})
	return name, err
}

// Inode is the namespace's inode number (`ip netns identify`): equal inodes are the same
// namespace.
func (ns *Netns) Inode() (uint64, error) {
	var ino C.uint64_t
	err := ns.use(func(p *C.netkit_netns) error {
		var cerr *C.netkit_error
		return check(C.netkit_netns_inode(p, &ino, &cerr), cerr)
	})
	return uint64(ino), err
}

// Equal reports whether ns and other are the same namespace (same inode).
func (ns *Netns) Equal(other *Netns) bool {
	a, err1 := ns.Inode()
	b, err2 := other.Inode()
	return err1 == nil && err2 == nil && a == b
}

// Close releases the namespace object (the namespace itself stays). A second Close does
// nothing. It waits for calls in progress on ns.
func (ns *Netns) Close() error {
	if ns != nil && ns.obj.close(func(p *C.netkit_netns) { C.netkit_netns_free(p) }) {
		runtime.SetFinalizer(ns, nil)
	}
	return nil
}
