package netkit_test

import (
	"os"
	"testing"

	"netkit.dev/netkit"
)

// TestNamespaces opens a test namespace by name, path and through a handle, and compares
// them (inode), their names and the list of named namespaces; the process's own namespace is
// only opened (by pid) to tell it apart.
func TestNamespaces(t *testing.T) {
	a := newTestNs(t, "ns")
	names, err := netkit.ListNamedNetns()
	must(t, "ListNamedNetns", err)
	found := false
	for _, n := range names {
		found = found || n == a.name
	}
	if !found {
		t.Fatalf("%s not in %v", a.name, names)
	}
	byPath, err := netkit.GetNetnsFromPath("/run/netns/" + a.name)
	must(t, "GetNetnsFromPath", err)
	defer byPath.Close()
	viaHandle, err := a.h.Netns()
	must(t, "Handle.Netns", err)
	defer viaHandle.Close()
	if !a.ns.Equal(byPath) || !a.ns.Equal(viaHandle) {
		t.Fatalf("the same namespace opened three ways is not Equal")
	}
	if name, err := a.ns.Name(); err != nil || name != a.name {
		t.Fatalf("Name() = %q, %v", name, err)
	}
	if name, err := byPath.Name(); err != nil || name != "" {
		t.Fatalf("Name() of a namespace opened by path = %q, %v", name, err)
	}
	self, err := netkit.GetNetnsFromPid(os.Getpid())
	must(t, "GetNetnsFromPid", err)
	defer self.Close()
	if self.Equal(a.ns) {
		t.Fatalf("the test's namespace equals the process's own")
	}
}
