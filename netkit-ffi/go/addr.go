package netkit

// #include "netkit.h"
import "C"

import (
	"net"
	"unsafe"
)

// The address families of AddrList and RouteList (as vishvananda/netlink names them).
const (
	FAMILY_ALL = 0
	FAMILY_V4  = C.NETKIT_AF_INET
	FAMILY_V6  = C.NETKIT_AF_INET6
)

// The kernel's IFA_F_* address flags AddrAdd understands in Addr.Flags.
const (
	IFA_F_NODAD         = 0x02
	IFA_F_NOPREFIXROUTE = 0x200
)

// Addr is an IP address on a link (as vishvananda/netlink's Addr). IPNet keeps the host bits:
// 10.0.0.1/24 is address 10.0.0.1 in 10.0.0.0/24.
type Addr struct {
	*net.IPNet
	// Label is the IPv4 label; "" for none.
	Label string
	// Flags are the kernel's IFA_F_* flags. AddrAdd uses IFA_F_NODAD (IPv6: usable at once,
	// no duplicate address detection) and IFA_F_NOPREFIXROUTE.
	Flags int
	// Scope: 0 global, 200 site, 253 link, 254 host (reported by AddrList).
	Scope int
	// Peer is the peer of a point-to-point address (reported by AddrList).
	Peer *net.IPNet
	// Broadcast is the IPv4 broadcast address (reported by AddrList).
	Broadcast net.IP
	// LinkIndex is the index of the link (reported by AddrList).
	LinkIndex int
}

// String is the address as "10.0.0.1/24" (with " label" when there is one).
func (a Addr) String() string {
	if a.IPNet == nil {
		return "<nil>"
	}
	if a.Label != "" {
		return a.IPNet.String() + " " + a.Label
	}
	return a.IPNet.String()
}

// addrCall runs netkit_addr_add or _del for link and addr.
func (h *Handle) addrCall(link Link, addr *Addr, f func(p *C.netkit_handle, dev *C.char, pfx *C.netkit_prefix, e **C.netkit_error) C.int) error {
	if addr == nil || addr.IPNet == nil {
		return invalidf("nil address")
	}
	prefix, err := cPrefix(addr.IPNet)
	if err != nil {
		return err
	}
	return h.byName(link, func(p *C.netkit_handle, dev *C.char, e **C.netkit_error) C.int {
		return f(p, dev, &prefix, e)
	})
}

func addrFlags(addr *Addr) C.uint32_t {
	var f C.uint32_t
	if addr.Flags&IFA_F_NODAD != 0 {
		f |= C.NETKIT_ADDR_NODAD
	}
	if addr.Flags&IFA_F_NOPREFIXROUTE != 0 {
		f |= C.NETKIT_ADDR_NOPREFIXROUTE
	}
	return f
}

// addrAdd adds addr to link with the NETKIT_ADDR_* flags: by the link's index when it has one
// (as vishvananda/netlink does; no lookup), by its name otherwise.
func (h *Handle) addrAdd(link Link, addr *Addr, flags C.uint32_t) error {
	if link != nil && link.Attrs() != nil && link.Attrs().Index > 0 {
		if addr == nil || addr.IPNet == nil {
			return invalidf("nil address")
		}
		prefix, err := cPrefix(addr.IPNet)
		if err != nil {
			return err
		}
		index := C.uint32_t(link.Attrs().Index)
		return h.use(func(p *C.netkit_handle) error {
			var cerr *C.netkit_error
			return check(C.netkit_addr_add_index(p, index, &prefix, flags, &cerr), cerr)
		})
	}
	return h.addrCall(link, addr, func(p *C.netkit_handle, dev *C.char, pfx *C.netkit_prefix, e **C.netkit_error) C.int {
		return C.netkit_addr_add(p, dev, pfx, flags, e)
	})
}

// AddrAdd adds addr to link (`ip address add ADDR dev LINK`): the link with link's Index, or
// when Index is 0 the one named link's Name. ErrExists when the address is there.
func (h *Handle) AddrAdd(link Link, addr *Addr) error {
	if addr == nil {
		return invalidf("nil address")
	}
	return h.addrAdd(link, addr, addrFlags(addr))
}

// AddrReplace adds addr to link, or replaces it if it is there (`ip address replace`); the
// link as for AddrAdd.
func (h *Handle) AddrReplace(link Link, addr *Addr) error {
	if addr == nil {
		return invalidf("nil address")
	}
	return h.addrAdd(link, addr, addrFlags(addr)|C.NETKIT_ADDR_REPLACE)
}

// AddrDel removes addr from link (`ip address del`). An address or link already gone is
// success.
func (h *Handle) AddrDel(link Link, addr *Addr) error {
	return h.addrCall(link, addr, func(p *C.netkit_handle, dev *C.char, pfx *C.netkit_prefix, e **C.netkit_error) C.int {
		return C.netkit_addr_del(p, dev, pfx, e)
	})
}

// AddrList returns the addresses of link (every link's when link is nil) of family
// (FAMILY_ALL, FAMILY_V4, FAMILY_V6). ErrNotFound when link does not exist.
func (h *Handle) AddrList(link Link, family int) ([]Addr, error) {
	var a arena
	defer a.free()
	var dev *C.char
	if link != nil && link.Attrs() != nil {
		dev = a.str("link name", link.Attrs().Name)
	}
	if a.err != nil {
		return nil, a.err
	}
	var addrs *C.netkit_address
	var n C.uintptr_t
	err := h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(C.netkit_addr_list(p, dev, &addrs, &n, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	defer C.netkit_addr_list_free(addrs, n)
	out := []Addr{}
	for i, all := 0, unsafe.Slice(addrs, int(n)); i < len(all); i++ {
		c := &all[i]
		if family != FAMILY_ALL && int(c.prefix.ip.family) != family {
			continue
		}
		out = append(out, goAddr(c))
	}
	return out, nil
}

// goAddr converts a reported address.
func goAddr(c *C.netkit_address) Addr {
	return Addr{
		IPNet:     goPrefix(&c.prefix),
		Label:     goStr(c.label),
		Flags:     int(c.flags),
		Scope:     int(c.scope),
		Peer:      hostPrefix(goIP(&c.peer)),
		Broadcast: goIP(&c.broadcast),
		LinkIndex: int(c.index),
	}
}

// hostPrefix is ip as a full-length prefix (nil for nil).
func hostPrefix(ip net.IP) *net.IPNet {
	if ip == nil {
		return nil
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(len(ip)*8, len(ip)*8)}
}
