package netkit_test

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"

	"netkit.dev/netkit"
)

// kindIs fails the test unless err is an *netkit.Error matching sentinel (and no other kind)
// with a message.
func kindIs(t *testing.T, what string, err error, sentinel error) *netkit.Error {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got %v, want %v", what, err, sentinel)
	}
	var e *netkit.Error
	if !errors.As(err, &e) || e.Message == "" {
		t.Fatalf("%s: %T %v is no *netkit.Error with a message", what, err, err)
	}
	for _, other := range []error{netkit.ErrInvalid, netkit.ErrNotFound, netkit.ErrExists, netkit.ErrNotSupported,
		netkit.ErrPermission, netkit.ErrBusy, netkit.ErrIO, netkit.ErrInternal, netkit.ErrExhausted, netkit.ErrCheckFailed} {
		if other != sentinel && errors.Is(err, other) {
			t.Fatalf("%s: %v is also %v", what, err, other)
		}
	}
	return e
}

// TestErrorKinds checks the kinds of the errors bad input and missing or existing objects
// give, with the errno where the kernel gave one.
func TestErrorKinds(t *testing.T) {
	a := newTestNs(t, "ek")
	// Namespaces.
	_, err := netkit.NewNamedNetns(a.name)
	e := kindIs(t, "NewNamedNetns of an existing name", err, netkit.ErrExists)
	if e.Kind != netkit.KindExists || e.Kind.String() != "NETKIT_E_EXISTS" {
		t.Fatalf("kind %v", e.Kind)
	}
	_, err = netkit.GetNetnsFromName(uniqueName("missing"))
	e = kindIs(t, "GetNetnsFromName of a missing name", err, netkit.ErrNotFound)
	if e.Errno != syscall.ENOENT || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("errno %v", e.Errno)
	}
	_, err = netkit.NewNamedNetns("a/b")
	kindIs(t, "a name with /", err, netkit.ErrInvalid)
	_, err = netkit.NewNamedNetns("nul\x00name")
	kindIs(t, "a name with NUL", err, netkit.ErrInvalid)
	_, err = netkit.GetNetnsFromPath("/proc/self/status")
	kindIs(t, "a file that is no namespace", err, netkit.ErrInvalid)
	_, err = netkit.GetNetnsFromPid(-1)
	kindIs(t, "pid -1", err, netkit.ErrInvalid)

	// Links.
	_, err = a.h.LinkByName("nosuch0")
	kindIs(t, "LinkByName of a missing link", err, netkit.ErrNotFound)
	br := &netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "br0"}}
	must(t, "bridge", a.h.LinkAdd(br))
	err = a.h.LinkAdd(&netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "br0"}})
	e = kindIs(t, "LinkAdd of an existing name", err, netkit.ErrExists)
	if !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("errno of an existing link: %v", e.Errno)
	}
	err = a.h.LinkAdd(&netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "much-too-long-name"}})
	kindIs(t, "a 18-byte link name", err, netkit.ErrInvalid)
	err = a.h.LinkAdd(&netkit.Veth{LinkAttrs: netkit.LinkAttrs{Name: "v0"}})
	kindIs(t, "a veth without peer name", err, netkit.ErrInvalid)
	err = a.h.LinkAdd(&netkit.GenericLink{LinkAttrs: netkit.LinkAttrs{Name: "d0"}, LinkType: "dummy"})
	kindIs(t, "a kind LinkAdd cannot make", err, netkit.ErrNotSupported)
	err = a.h.LinkSetMTU(br, 10)
	kindIs(t, "MTU 10", err, netkit.ErrInvalid)
	err = a.h.AddrAdd(br, &netkit.Addr{})
	kindIs(t, "a nil address", err, netkit.ErrInvalid)
	err = a.h.AddrAdd(&netkit.Device{LinkAttrs: netkit.LinkAttrs{Name: "nosuch0"}}, addr(t, "10.3.0.1/24"))
	kindIs(t, "an address on a missing link", err, netkit.ErrNotFound)
	err = a.h.AddrAdd(&netkit.Device{LinkAttrs: netkit.LinkAttrs{Index: 999999}}, addr(t, "10.3.0.1/24"))
	kindIs(t, "an address on a missing link index", err, netkit.ErrNotFound)
	must(t, "AddrAdd", a.h.AddrAdd(br, addr(t, "10.3.0.1/24")))
	err = a.h.AddrAdd(br, addr(t, "10.3.0.1/24"))
	kindIs(t, "an address twice", err, netkit.ErrExists)
	must(t, "AddrReplace", a.h.AddrReplace(br, addr(t, "10.3.0.1/24")))
	if _, err := netkit.ParseAddr("10.3.0.300/24"); !errors.Is(err, netkit.ErrInvalid) {
		t.Fatalf("ParseAddr of a bad address: %v", err)
	}

	// Closed objects.
	ns2, err := netkit.GetNetnsFromName(a.name)
	must(t, "GetNetnsFromName", err)
	h2, err := netkit.NewHandleAt(ns2)
	must(t, "NewHandleAt", err)
	must(t, "Close", ns2.Close())
	must(t, "Close twice", ns2.Close())
	if _, err := h2.LinkByName("br0"); err != nil {
		t.Fatalf("a handle outlives its Netns object: %v", err)
	}
	h2.Close()
	h2.Close()
	_, err = h2.LinkByName("br0")
	kindIs(t, "a closed handle", err, netkit.ErrInvalid)
	_, err = ns2.Inode()
	kindIs(t, "a closed namespace", err, netkit.ErrInvalid)
	_, err = netkit.NewHandleAt(ns2)
	kindIs(t, "a handle on a closed namespace", err, netkit.ErrInvalid)

	// Attach: configuration and namespace.
	ctx := context.Background()
	_, err = netkit.Attach(ctx, "/run/netns/"+a.name, "ctr0", "eth0", []byte("not json"), netkit.WithHostNetns(a.ns))
	kindIs(t, "Attach with a configuration that is not JSON", err, netkit.ErrInvalid)
	conf := attachConf(t, "10.206.0.0/24", t.TempDir())
	_, err = netkit.Attach(ctx, "/run/netns/"+uniqueName("missing"), "ctr0", "eth0", conf, netkit.WithHostNetns(a.ns))
	kindIs(t, "Attach into a missing namespace", err, netkit.ErrNotFound)
	_, err = netkit.Attach(ctx, "/run/netns/"+a.name, "bad id!", "eth0", conf, netkit.WithHostNetns(a.ns))
	kindIs(t, "Attach with a bad container ID", err, netkit.ErrInvalid)
	err = netkit.Check(ctx, "/run/netns/"+a.name, "ctr0", "eth0", conf, []byte("{"), netkit.WithHostNetns(a.ns))
	kindIs(t, "Check with a previous result that is not JSON", err, netkit.ErrInvalid)
}

// TestUnsupportedKernel creates an ipip tunnel: ErrNotSupported on a kernel without the ipip
// driver (skipped on a kernel that has it).
func TestUnsupportedKernel(t *testing.T) {
	a := newTestNs(t, "un")
	tun := &netkit.Iptun{LinkAttrs: netkit.LinkAttrs{Name: "ipip0"}, Local: []byte{10, 4, 0, 1}, Remote: []byte{10, 4, 0, 2}}
	err := a.h.LinkAdd(tun)
	if err == nil {
		if tun.Index == 0 {
			t.Fatalf("ipip0 made without index")
		}
		t.Skip("this kernel has the ipip driver (no unsupported kind to try)")
	}
	kindIs(t, "an ipip tunnel", err, netkit.ErrNotSupported)
}

// TestVersion checks the library's ABI version and release.
func TestVersion(t *testing.T) {
	if netkit.LibraryABIVersion() != netkit.ABIVersion {
		t.Fatalf("library ABI %d, header %d", netkit.LibraryABIVersion(), netkit.ABIVersion)
	}
	if netkit.Version() == "" {
		t.Fatalf("no version string")
	}
}
