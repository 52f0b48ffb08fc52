package netkit

// #include "netkit.h"
import "C"

import (
	"net"
	"runtime"
	"unsafe"
)

// IPAM is an open address pool and its store (host-local's allocation, in-process): addresses
// handed to owners (a container ID and an interface name), one per range set of the pool.
// The records live in a store directory that many goroutines, IPAM objects and processes
// share safely: they never get the same address. Safe for use by many goroutines; Close waits
// for calls in progress.
type IPAM struct {
	obj object[C.netkit_ipam]
}

// IPConfig is one allocated address (as CNI's IPConfig).
type IPConfig struct {
	// Address is the address with the prefix length of its subnet (10.88.0.5/16).
	Address *net.IPNet
	// Gateway is the gateway of its range; nil: none.
	Gateway net.IP
	// Set is the index of the range set (0, 1, … in the configuration's order).
	Set int
}

// IPAMRoute is a route of the pool's configuration, for the container (as CNI's Route).
type IPAMRoute struct {
	// Dst is the destination.
	Dst *net.IPNet
	// GW is the next hop; nil: none given (the range's gateway is the usual choice).
	GW net.IP
}

// DNS are the DNS settings of the pool's resolvConf (as CNI's DNS).
type DNS struct {
	// Nameservers are the nameserver addresses.
	Nameservers []string
	// Domain is the local domain; "": none.
	Domain string
	// Search are the search domains.
	Search []string
	// Options are the resolver options.
	Options []string
}

// Allocation is what Allocate gave an owner.
type Allocation struct {
	// IPs are the addresses, one per range set.
	IPs []IPConfig
	// Routes are the pool's routes.
	Routes []IPAMRoute
	// DNS are the settings of the configuration's resolvConf (empty without one).
	DNS DNS
	// HeldBefore is true when the owner held addresses before the call (allocating again
	// returns what it holds, and fills only the range sets it had nothing in).
	HeldBefore bool
}

// IPAMOwner names an owner for GC's list of the owners to keep.
type IPAMOwner struct {
	// ContainerID is the container ID (letters, digits, "_.-", at most 200 bytes).
	ContainerID string
	// IfName is the interface name inside the container ("eth0").
	IfName string
}

// OpenIPAM opens the pool configJSON describes: a CNI network configuration with an "ipam"
// key, a conflist (its first plugin with one), or the bare "ipam" object, with host-local's
// keys ("ranges", "subnet", "rangeStart", "rangeEnd", "gateway", "routes", "dataDir",
// "resolvConf" (read now), "sync"). network names the pool's store ("": the configuration's
// "name", which a bare "ipam" object lacks); the store is storeDir/network, created when
// missing ("" for storeDir: the configuration's "dataDir", else /var/lib/cni/netkit).
// ErrInvalid for a configuration that is not valid. Close it when done.
func OpenIPAM(configJSON, network, storeDir string) (*IPAM, error) {
	var a arena
	defer a.free()
	cjson := a.str("IPAM configuration", configJSON)
	cnet := a.optStr("network name", network)
	cdir := a.optStr("store directory", storeDir)
	if a.err != nil {
		return nil, a.err
	}
	var p *C.netkit_ipam
	var cerr *C.netkit_error
	if err := check(C.netkit_ipam_open(cjson, cnet, cdir, &p, &cerr), cerr); err != nil {
		return nil, err
	}
	ipam := &IPAM{}
	ipam.obj.p = p
	// A safety net only: an unreachable IPAM that was never closed is closed by the GC.
	runtime.SetFinalizer(ipam, (*IPAM).Close)
	return ipam, nil
}

// ownerCall runs f with the C strings of an owner.
func (m *IPAM) ownerCall(containerID, ifname string, f func(p *C.netkit_ipam, id, ifn *C.char, e **C.netkit_error) C.int) error {
	var a arena
	defer a.free()
	id := a.str("container ID", containerID)
	ifn := a.str("interface name", ifname)
	if a.err != nil {
		return a.err
	}
	return m.use(func(p *C.netkit_ipam) error {
		var cerr *C.netkit_error
		return check(f(p, id, ifn, &cerr), cerr)
	})
}

// use runs f with the C pool; ErrInvalid for a nil or closed IPAM.
func (m *IPAM) use(f func(p *C.netkit_ipam) error) error {
	if m == nil {
		return invalidf("nil IPAM pool")
	}
	return m.obj.use("IPAM pool", f)
}

// Allocate gives the owner (containerID, ifname) one address per range set; requested asks
// for specific addresses (at most one per range set). Allocating again for an owner returns
// what it holds. ErrExhausted when a range set has no free address, ErrExists when a
// requested address is another owner's, ErrInvalid for a requested address outside the pool
// (or reserved) or an owner that is not valid.
func (m *IPAM) Allocate(containerID, ifname string, requested ...net.IP) (*Allocation, error) {
	var a arena
	defer a.free()
	var want *C.netkit_ip
	if n := len(requested); n > 0 {
		list := cArray[C.netkit_ip](&a, n)
		for i, ip := range requested {
			if ip == nil {
				return nil, invalidf("requested address %d is nil", i)
			}
			var err error
			if list[i], err = cIP(ip); err != nil {
				return nil, err
			}
		}
		want = &list[0]
	}
	var out *Allocation
	err := m.ownerCall(containerID, ifname, func(p *C.netkit_ipam, id, ifn *C.char, e **C.netkit_error) C.int {
		var c *C.netkit_ipam_allocation
		status := C.netkit_ipam_allocate(p, id, ifn, want, C.uintptr_t(len(requested)), &c, e)
		if c != nil {
			out = goAllocation(c)
			C.netkit_ipam_allocation_free(c)
		}
		return status
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Lookup returns the addresses the owner holds (none: an empty list).
func (m *IPAM) Lookup(containerID, ifname string) ([]net.IP, error) {
	var ips []net.IP
	err := m.ownerCall(containerID, ifname, func(p *C.netkit_ipam, id, ifn *C.char, e **C.netkit_error) C.int {
		var list *C.netkit_ip
		var n C.uintptr_t
		status := C.netkit_ipam_lookup(p, id, ifn, &list, &n, e)
		ips = takeIPs(list, n)
		return status
	})
	return ips, err
}

// Release releases every address the owner holds and returns them. Idempotent: an owner
// holding nothing is success (an empty list).
func (m *IPAM) Release(containerID, ifname string) ([]net.IP, error) {
	var ips []net.IP
	err := m.ownerCall(containerID, ifname, func(p *C.netkit_ipam, id, ifn *C.char, e **C.netkit_error) C.int {
		var list *C.netkit_ip
		var n C.uintptr_t
		status := C.netkit_ipam_release(p, id, ifn, &list, &n, e)
		ips = takeIPs(list, n)
		return status
	})
	return ips, err
}

// GC releases the addresses of every owner not in keep (no keep: every owner's) and repairs
// what crashed processes left behind; it returns the released addresses.
func (m *IPAM) GC(keep ...IPAMOwner) ([]net.IP, error) {
	var a arena
	defer a.free()
	var valid *C.netkit_ipam_owner
	if n := len(keep); n > 0 {
		list := cArray[C.netkit_ipam_owner](&a, n)
		for i, o := range keep {
			list[i].container_id = a.str("container ID", o.ContainerID)
			list[i].ifname = a.str("interface name", o.IfName)
		}
		valid = &list[0]
	}
	if a.err != nil {
		return nil, a.err
	}
	var ips []net.IP
	err := m.use(func(p *C.netkit_ipam) error {
		var list *C.netkit_ip
		var n C.uintptr_t
		var cerr *C.netkit_error
		status := C.netkit_ipam_gc(p, valid, C.uintptr_t(len(keep)), &list, &n, &cerr)
		ips = takeIPs(list, n)
		return check(status, cerr)
	})
	return ips, err
}

// Close closes the pool (the store and its records stay). A second Close does nothing.
func (m *IPAM) Close() error {
	if m != nil && m.obj.close(func(p *C.netkit_ipam) { C.netkit_ipam_close(p) }) {
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

// takeIPs converts a returned address array and frees it (an empty list for none).
func takeIPs(list *C.netkit_ip, n C.uintptr_t) []net.IP {
	out := []net.IP{}
	if list == nil {
		return out
	}
	defer C.netkit_ip_list_free(list, n)
	for i, all := 0, unsafe.Slice(list, int(n)); i < len(all); i++ {
		out = append(out, goIP(&all[i]))
	}
	return out
}

// goAllocation converts a returned allocation (which stays the caller's to free).
func goAllocation(c *C.netkit_ipam_allocation) *Allocation {
	out := &Allocation{HeldBefore: bool(c.held_before)}
	for i, ips := 0, unsafe.Slice(c.ips, int(c.ips_len)); i < len(ips); i++ {
		out.IPs = append(out.IPs, IPConfig{
			Address: goPrefix(&ips[i].address),
			Gateway: goIP(&ips[i].gateway),
			Set:     int(ips[i].set),
		})
	}
	for i, routes := 0, unsafe.Slice(c.routes, int(c.routes_len)); i < len(routes); i++ {
		out.Routes = append(out.Routes, IPAMRoute{Dst: goPrefix(&routes[i].dst), GW: goIP(&routes[i].gateway)})
	}
	out.DNS = DNS{
		Nameservers: goStrings(c.dns_nameservers, c.dns_nameservers_len),
		Domain:      goStr(c.dns_domain),
		Search:      goStrings(c.dns_search, c.dns_search_len),
		Options:     goStrings(c.dns_options, c.dns_options_len),
	}
	return out
}

// goStrings copies an array of C strings owned by a libnetkit struct (nil for none).
func goStrings(list **C.char, n C.uintptr_t) []string {
	var out []string
	for _, s := range unsafe.Slice(list, int(n)) {
		out = append(out, goStr(s))
	}
	return out
}
