// Package netkit is the Go binding of netkit, container networking primitives for Linux:
// network namespaces, links (veth, bridge, vxlan, macvlan, tun/tap, ipip), addresses, routes,
// policy routing rules, neighbours and the bridge FDB, sysctls, change events, IP address
// management, the firewall (port mappings, masquerade, services), and a container attached to
// a network in one call (what the netkit-cni plugin does, in-process). It calls libnetkit, netkit's C library, through cgo; its types and
// methods follow vishvananda/netlink and vishvananda/netns:
//
//	ns, err := netkit.NewNamedNetns("demo")   // ip netns add demo
//	defer netkit.DeleteNamedNetns("demo")
//	defer ns.Close()
//	h, err := netkit.NewHandleAt(ns)           // netlink inside demo
//	defer h.Close()
//	br := &netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "br0", Flags: net.FlagUp}}
//	err = h.LinkAdd(br)                         // br.Index is set
//	addr, err := netkit.ParseAddr("10.0.0.1/24")
//	err = h.AddrAdd(br, addr)                   // ip address add 10.0.0.1/24 dev br0
//
// # Building
//
// The package links libnetkit statically by default, from the repository's cargo target
// directory: build it once (Rust toolchain needed), then use the package as any other:
//
//	cargo build --release -p netkit-ffi      # target/release/libnetkit.a
//	cd netkit-ffi/go && go test ./...
//
// The #cgo directives (in cgo.go) are:
//
//	CFLAGS:  -I${SRCDIR}/../include                       (netkit-ffi/include/netkit.h)
//	LDFLAGS: ${SRCDIR}/../../target/release/libnetkit.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
//
// To use a libnetkit installed elsewhere (netkit-ffi/install.sh PREFIX installs the library,
// the header and netkit.pc), build with the tag netkit_pkgconfig: the flags then come from
// `pkg-config netkit` (set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig for a non-standard PREFIX),
// which links the shared library:
//
//	go build -tags netkit_pkgconfig ./...
//
// The module path is netkit.dev/netkit and the module has no dependencies outside the
// standard library (it builds offline, Go 1.19 or later). A program in another module uses
// it with a replace directive pointing at this directory:
//
//	require netkit.dev/netkit v0.0.0
//	replace netkit.dev/netkit => /path/to/netkit/netkit-ffi/go
//
// Go's build cache does not track libnetkit.a itself: after rebuilding the library, pass
// -count=1 to go test (so no cached result is reported) and -a to go build to be sure the new
// library is linked.
//
// # Semantics
//
// Every function blocks its goroutine until the kernel has answered. All of them are safe
// for concurrent use, and none changes the namespace of the calling goroutine's OS thread:
// libnetkit's own threads enter namespaces, so runtime.LockOSThread is never needed.
// A Handle works in the namespace it was opened in (NewHandleAt); there are no package-level
// link, address, route, rule or neighbour functions acting on "the current namespace".
//
// Objects (Netns, Handle, Subscription, IPAM, Firewall) hold C memory: Close them. A
// finalizer closes an unreachable one as a safety net. Close waits for calls in progress on
// the object; a method called after Close returns an error of kind ErrInvalid.
//
// Events come two ways: Handle.Subscribe gives a descriptor to poll and a non-blocking Next,
// for an event loop of the caller's; Handle.EventSubscribe runs a goroutine that sends the
// events on a channel until a done channel closes (as vishvananda/netlink's LinkSubscribe).
// When the kernel drops notifications, an EventOverrun event says so.
//
// Every error is an *Error with the kind, the kernel's errno and libnetkit's message (which
// names the operation, the object and the namespace). errors.Is(err, netkit.ErrNotFound),
// ErrExists, ErrNotSupported, ErrPermission, ErrInvalid, ErrBusy, ErrIO, ErrInternal,
// ErrExhausted and ErrCheckFailed test the kind; errors.Is(err, syscall.EEXIST) tests the
// errno.
//
// Creating namespaces and changing the network needs CAP_SYS_ADMIN and CAP_NET_ADMIN (root).
package netkit

// #include "netkit.h"
import "C"

// ABIVersion is the ABI version this package was built against (NETKIT_ABI_VERSION).
const ABIVersion = C.NETKIT_ABI_VERSION

// LibraryABIVersion returns the ABI version of the linked libnetkit (netkit_version()); it
// equals ABIVersion unless the library was swapped after the build.
func LibraryABIVersion() uint32 {
	return uint32(C.netkit_version())
}

// Version returns the netkit release of the linked library ("0.1.0").
func Version() string {
	return C.GoString(C.netkit_version_string())
}
