package netkit

// #include "netkit.h"
import "C"

import (
	"fmt"
	"math"
	"net"
	"runtime"
	"time"
)

// FirewallDriver is the firewall implementation a Firewall uses.
type FirewallDriver uint32

// The firewall drivers.
const (
	// FIREWALL_AUTO: nftables when usable, else iptables (only for OpenFirewall).
	FIREWALL_AUTO FirewallDriver = C.NETKIT_FW_AUTO
	// FIREWALL_NFTABLES: nftables.
	FIREWALL_NFTABLES FirewallDriver = C.NETKIT_FW_NFTABLES
	// FIREWALL_IPTABLES: iptables (iptables-restore).
	FIREWALL_IPTABLES FirewallDriver = C.NETKIT_FW_IPTABLES
)

// String is "auto", "nftables" or "iptables".
func (d FirewallDriver) String() string {
	switch d {
	case FIREWALL_AUTO:
		return "auto"
	case FIREWALL_NFTABLES:
		return "nftables"
	case FIREWALL_IPTABLES:
		return "iptables"
	}
	return fmt.Sprintf("FirewallDriver(%d)", uint32(d))
}

// The protocols of port mappings and services (the IP protocol numbers, as
// syscall.IPPROTO_*); 0 is TCP.
const (
	IPPROTO_TCP  = C.NETKIT_PROTO_TCP
	IPPROTO_UDP  = C.NETKIT_PROTO_UDP
	IPPROTO_SCTP = C.NETKIT_PROTO_SCTP
)

// PortMapping forwards a host port (or range) to a container: Docker's -p, CNI's
// portMappings.
type PortMapping struct {
	// Protocol: IPPROTO_TCP (also 0), IPPROTO_UDP, IPPROTO_SCTP.
	Protocol int
	// HostIP limits the mapping to connections to this host address; nil (or 0.0.0.0, ::):
	// every address.
	HostIP net.IP
	// HostPort is the first host port. Required.
	HostPort int
	// HostPortEnd is the last host port of a range; 0: HostPort only.
	HostPortEnd int
	// ContainerIP is the container's address. Required.
	ContainerIP net.IP
	// ContainerPort is the port HostPort maps to (a range maps port by port). Required.
	ContainerPort int
}

// Masquerade masquerades traffic from Source to destinations outside Network: CNI's ipMasq.
type Masquerade struct {
	// Source is the address (full-length prefix) or subnet whose traffic is masqueraded.
	// Required.
	Source *net.IPNet
	// Network: destinations inside it keep the source address; nil: Source's own subnet
	// (host bits cleared).
	Network *net.IPNet
}

// FirewallNetwork is a container network on the host: Subnet behind Interface (a bridge).
// Registering it makes hairpin traffic (a container reaching another through a host port)
// work.
type FirewallNetwork struct {
	// Interface is the host-side interface. Required.
	Interface string
	// Subnet is the network's subnet. Required.
	Subnet *net.IPNet
}

// Isolation drops the traffic between two interfaces, both ways.
type Isolation struct {
	// A is one interface. Required.
	A string
	// B is the other. Required.
	B string
}

// Endpoint is one backend of a Service.
type Endpoint struct {
	// IP is its address. Required.
	IP net.IP
	// Port is its port. Required.
	Port int
}

// Service is a virtual address and port load-balanced over endpoints (a ClusterIP),
// optionally on a port of every host address too (a NodePort). External traffic policies,
// external IPs and local endpoints (netkit-core only, for now) are not offered here: node-port
// connections are handled as ClusterIP ones. Without endpoints a service rejects connections.
type Service struct {
	// Name (1-100 of letters, digits, "_.-/"). Required.
	Name string
	// Protocol: IPPROTO_TCP (also 0), IPPROTO_UDP, IPPROTO_SCTP.
	Protocol int
	// VIP is the virtual address. Required.
	VIP net.IP
	// Port is the virtual port. Required.
	Port int
	// NodePort is the port on every host address; 0: none.
	NodePort int
	// Affinity is the client affinity timeout (whole seconds); 0: none.
	Affinity time.Duration
	// Masquerade masquerades the traffic to the endpoints.
	Masquerade bool
	// Endpoints are the backends.
	Endpoints []Endpoint
}

// FirewallRules is what Firewall.Add gives an owner.
type FirewallRules struct {
	// PortMappings are host ports forwarded to containers.
	PortMappings []PortMapping
	// Masquerades are source NATs.
	Masquerades []Masquerade
	// Networks are container networks (for hairpin traffic).
	Networks []FirewallNetwork
	// Isolations are interface pairs that must not talk.
	Isolations []Isolation
	// Services are load-balanced virtual addresses.
	Services []Service
}

// Firewall is the firewall of one namespace: port mappings, masquerades, container networks,
// isolation and services, held by owners (a container attachment "ID:eth0", a service…) and
// removed per owner (Teardown) or for every owner not in a list (GC). The rules stay in the
// kernel when the Firewall is closed. Processes working on the same namespace must use the
// same state directory; they may then change it at once. Safe for use by many goroutines;
// Close waits for calls in progress.
type Firewall struct {
	obj object[C.netkit_fw]
}

// OpenFirewall opens the firewall of namespace ns with driver (FIREWALL_AUTO: nftables when
// usable, else iptables), keeping its wanted state in stateDir ("":
// /run/netkit/firewall/<namespace cookie>). Nothing changes in the kernel until an owner is
// given something. ErrNotSupported when the driver cannot run here. Close it when done.
func OpenFirewall(ns *Netns, driver FirewallDriver, stateDir string) (*Firewall, error) {
	var a arena
	defer a.free()
	dir := a.optStr("state directory", stateDir)
	if a.err != nil {
		return nil, a.err
	}
	var p *C.netkit_fw
	err := ns.use(func(nsp *C.netkit_netns) error {
		var cerr *C.netkit_error
		return check(C.netkit_fw_open(nsp, C.uint32_t(driver), dir, &p, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	fw := &Firewall{}
	fw.obj.p = p
	// A safety net only: an unreachable Firewall that was never closed is closed by the GC.
	runtime.SetFinalizer(fw, (*Firewall).Close)
	return fw, nil
}

// use runs f with the C firewall; ErrInvalid for a nil or closed Firewall.
func (fw *Firewall) use(f func(p *C.netkit_fw) error) error {
	if fw == nil {
		return invalidf("nil firewall")
	}
	return fw.obj.use("firewall", f)
}

// Driver returns the driver the firewall uses (FIREWALL_NFTABLES or FIREWALL_IPTABLES).
func (fw *Firewall) Driver() (FirewallDriver, error) {
	var d C.uint32_t
	err := fw.use(func(p *C.netkit_fw) error {
		var cerr *C.netkit_error
		return check(C.netkit_fw_driver(p, &d, &cerr), cerr)
	})
	return FirewallDriver(d), err
}

// Add gives owner these rules as well (owner: 1-250 of letters, digits, "_.:/@%-").
// Idempotent: what the owner holds already is no error; a service replaces the owner's
// service of the same name. ErrExists when a host port or a service name is another owner's
// (nothing changes then); ErrInvalid for a rule that is not valid.
func (fw *Firewall) Add(owner string, rules *FirewallRules) error {
	if rules == nil {
		return invalidf("firewall owner %q: nil rules", owner)
	}
	var a arena
	defer a.free()
	cowner := a.str("firewall owner", owner)
	var cr C.netkit_fw_rules
	if err := cRules(&a, rules, &cr); err != nil {
		return err
	}
	if a.err != nil {
		return a.err
	}
	return fw.use(func(p *C.netkit_fw) error {
		var cerr *C.netkit_error
		return check(C.netkit_fw_add(p, cowner, &cr, &cerr), cerr)
	})
}

// Teardown removes everything owner holds. Idempotent: an owner holding nothing is success.
func (fw *Firewall) Teardown(owner string) error {
	var a arena
	defer a.free()
	cowner := a.str("firewall owner", owner)
	if a.err != nil {
		return a.err
	}
	return fw.use(func(p *C.netkit_fw) error {
		var cerr *C.netkit_error
		return check(C.netkit_fw_teardown(p, cowner, &cerr), cerr)
	})
}

// GC tears down every owner not in keep (no keep: every owner) and returns the owners it
// removed.
func (fw *Firewall) GC(keep ...string) ([]string, error) {
	var a arena
	defer a.free()
	var valid **C.char
	if n := len(keep); n > 0 {
		list := cArray[*C.char](&a, n)
		for i, o := range keep {
			list[i] = a.str("firewall owner", o)
		}
		valid = &list[0]
	}
	if a.err != nil {
		return nil, a.err
	}
	var removed []string
	err := fw.use(func(p *C.netkit_fw) error {
		var list **C.char
		var n C.uintptr_t
		var cerr *C.netkit_error
		status := C.netkit_fw_gc(p, valid, C.uintptr_t(len(keep)), &list, &n, &cerr)
		removed = takeStrings(list, n)
		return check(status, cerr)
	})
	return removed, err
}

// Owners returns every owner holding something.
func (fw *Firewall) Owners() ([]string, error) {
	var owners []string
	err := fw.use(func(p *C.netkit_fw) error {
		var list **C.char
		var n C.uintptr_t
		var cerr *C.netkit_error
		status := C.netkit_fw_owners(p, &list, &n, &cerr)
		owners = takeStrings(list, n)
		return check(status, cerr)
	})
	return owners, err
}

// Close closes the firewall object (its rules stay in the kernel). A second Close does
// nothing.
func (fw *Firewall) Close() error {
	if fw != nil && fw.obj.close(func(p *C.netkit_fw) { C.netkit_fw_close(p) }) {
		runtime.SetFinalizer(fw, nil)
	}
	return nil
}

// port checks a port number (0 allowed: libnetkit says which ports are required).
func port(what string, p int) (C.uint16_t, error) {
	if p < 0 || p > math.MaxUint16 {
		return 0, invalidf("%s %d is no port", what, p)
	}
	return C.uint16_t(p), nil
}

// protocol checks a protocol number (libnetkit says which it knows).
func protocol(what string, p int) (C.uint8_t, error) {
	if p < 0 || p > math.MaxUint8 {
		return 0, invalidf("%s %d is no protocol", what, p)
	}
	return C.uint8_t(p), nil
}

// cRules fills out (its arrays and strings in a) from r.
func cRules(a *arena, r *FirewallRules, out *C.netkit_fw_rules) error {
	maps := cArray[C.netkit_port_mapping](a, len(r.PortMappings))
	for i, m := range r.PortMappings {
		c := &maps[i]
		var err error
		if c.protocol, err = protocol("port mapping protocol", m.Protocol); err != nil {
			return err
		}
		if c.host_ip, err = cIP(m.HostIP); err != nil {
			return err
		}
		if c.container_ip, err = cIP(m.ContainerIP); err != nil {
			return err
		}
		if c.host_port, err = port("host port", m.HostPort); err != nil {
			return err
		}
		if c.host_port_end, err = port("last host port", m.HostPortEnd); err != nil {
			return err
		}
		if c.container_port, err = port("container port", m.ContainerPort); err != nil {
			return err
		}
	}
	masqs := cArray[C.netkit_masquerade](a, len(r.Masquerades))
	for i, m := range r.Masquerades {
		var err error
		if masqs[i].source, err = cPrefix(m.Source); err != nil {
			return err
		}
		if masqs[i].network, err = cPrefix(m.Network); err != nil {
			return err
		}
	}
	nets := cArray[C.netkit_fw_network](a, len(r.Networks))
	for i, n := range r.Networks {
		nets[i]._interface = a.str("network interface", n.Interface)
		var err error
		if nets[i].subnet, err = cPrefix(n.Subnet); err != nil {
			return err
		}
	}
	isos := cArray[C.netkit_fw_isolation](a, len(r.Isolations))
	for i, iso := range r.Isolations {
		isos[i].a = a.str("isolated interface", iso.A)
		isos[i].b = a.str("isolated interface", iso.B)
	}
	svcs := cArray[C.netkit_fw_service](a, len(r.Services))
	for i := range r.Services {
		if err := cService(a, &r.Services[i], &svcs[i]); err != nil {
			return err
		}
	}
	out.port_mappings, out.port_mappings_len = first(maps), C.uintptr_t(len(maps))
	out.masquerades, out.masquerades_len = first(masqs), C.uintptr_t(len(masqs))
	out.networks, out.networks_len = first(nets), C.uintptr_t(len(nets))
	out.isolations, out.isolations_len = first(isos), C.uintptr_t(len(isos))
	out.services, out.services_len = first(svcs), C.uintptr_t(len(svcs))
	return nil
}

// cService fills out (its strings and endpoints in a) from s.
func cService(a *arena, s *Service, out *C.netkit_fw_service) error {
	var err error
	out.name = a.str("service name", s.Name)
	if out.protocol, err = protocol("service protocol", s.Protocol); err != nil {
		return err
	}
	if out.vip, err = cIP(s.VIP); err != nil {
		return err
	}
	if out.port, err = port("service port", s.Port); err != nil {
		return err
	}
	if out.node_port, err = port("node port", s.NodePort); err != nil {
		return err
	}
	if s.Affinity < 0 || s.Affinity%time.Second != 0 || s.Affinity/time.Second > math.MaxUint32 {
		return invalidf("service %q: affinity %v is not a whole number of seconds", s.Name, s.Affinity)
	}
	out.affinity_seconds = C.uint32_t(s.Affinity / time.Second)
	out.masquerade = C.bool(s.Masquerade)
	eps := cArray[C.netkit_fw_endpoint](a, len(s.Endpoints))
	for i, ep := range s.Endpoints {
		if eps[i].ip, err = cIP(ep.IP); err != nil {
			return err
		}
		if eps[i].port, err = port("endpoint port", ep.Port); err != nil {
			return err
		}
	}
	out.endpoints, out.endpoints_len = first(eps), C.uintptr_t(len(eps))
	return nil
}
