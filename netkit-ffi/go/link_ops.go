package netkit

// #include "netkit.h"
import "C"

import (
	"net"
	"unsafe"
)

// takeLink converts a returned link into its Go value and frees it.
func takeLink(l *C.netkit_link) Link {
	defer C.netkit_link_free(l)
	return goLink(l)
}

// fill copies what the kernel reported about a created link into the caller's attributes.
func fill(dst *LinkAttrs, l *C.netkit_link) {
	if l == nil {
		return
	}
	*dst = *takeLink(l).Attrs()
}

// nameOf is the name of the link with index in the handle's namespace.
func (h *Handle) nameOf(index int) (string, error) {
	l, err := h.LinkByIndex(index)
	if err != nil {
		return "", err
	}
	return l.Attrs().Name, nil
}

// parentName is a link's parent by index (ParentIndex) or by the given name.
func (h *Handle) parentName(attrs *LinkAttrs, name string) (string, error) {
	if attrs.ParentIndex != 0 {
		return h.nameOf(attrs.ParentIndex)
	}
	return name, nil
}

// LinkAdd creates link (a *Veth, *Bridge, *Vxlan, *Macvlan, *Tuntap or *Iptun) in the
// handle's namespace and fills its LinkAttrs in from the kernel (Index, HardwareAddr, …).
// ErrExists when the name is taken, ErrNotSupported when the kernel lacks the kind's driver.
func (h *Handle) LinkAdd(link Link) error {
	if link == nil || link.Attrs() == nil {
		return invalidf("LinkAdd: nil link")
	}
	attrs := link.Attrs()
	if attrs.MTU < 0 {
		return invalidf("link %s: MTU %d", attrs.Name, attrs.MTU)
	}
	var a arena
	defer a.free()
	name := a.str("link name", attrs.Name)
	up := C.bool(attrs.Flags&net.FlagUp != 0)
	mtu := C.uint32_t(attrs.MTU)
	switch l := link.(type) {
	case *Veth:
		cfg := C.netkit_veth_config{name: name, mtu: mtu, up: up, master_index: C.uint32_t(attrs.MasterIndex)}
		cfg.peer_name = a.str("peer name", l.PeerName)
		cfg.set_mac = C.bool(macBytes(&cfg.mac, attrs.HardwareAddr))
		cfg.set_peer_mac = C.bool(macBytes(&cfg.peer_mac, l.PeerHardwareAddr))
		if a.err != nil {
			return a.err
		}
		add := func(p *C.netkit_handle, out **C.netkit_link, e **C.netkit_error) C.int {
			return C.netkit_link_add_veth(p, &cfg, out, e)
		}
		if l.PeerNamespace == nil {
			return h.add(attrs, add)
		}
		return l.PeerNamespace.use(func(peer *C.netkit_netns) error {
			cfg.peer_netns = peer
			return h.add(attrs, add)
		})
	case *Bridge:
		cfg := C.netkit_bridge_config{name: name, mtu: mtu, up: up, stp: C.bool(l.STP)}
		cfg.set_mac = C.bool(macBytes(&cfg.mac, attrs.HardwareAddr))
		if a.err != nil {
			return a.err
		}
		return h.add(attrs, func(p *C.netkit_handle, out **C.netkit_link, e **C.netkit_error) C.int {
			return C.netkit_link_add_bridge(p, &cfg, out, e)
		})
	case *Vxlan:
		cfg := C.netkit_vxlan_config{name: name, mtu: mtu, up: up, vni: C.uint32_t(l.VxlanId),
			port: C.uint16_t(l.Port), ttl: C.uint8_t(l.TTL), nolearning: C.bool(!l.Learning)}
		cfg.set_mac = C.bool(macBytes(&cfg.mac, attrs.HardwareAddr))
		var err error
		if cfg.local, err = cIP(l.SrcAddr); err != nil {
			return err
		}
		if cfg.remote, err = cIP(l.Group); err != nil {
			return err
		}
		parent := l.VtepDevName
		if l.VtepDevIndex != 0 {
			if parent, err = h.nameOf(l.VtepDevIndex); err != nil {
				return err
			}
		}
		cfg.parent = a.optStr("vxlan parent", parent)
		if a.err != nil {
			return a.err
		}
		return h.add(attrs, func(p *C.netkit_handle, out **C.netkit_link, e **C.netkit_error) C.int {
			return C.netkit_link_add_vxlan(p, &cfg, out, e)
		})
	case *Macvlan:
		parent, err := h.parentName(attrs, l.ParentName)
		if err != nil {
			return err
		}
		cfg := C.netkit_macvlan_config{name: name, mtu: mtu, mode: C.uint32_t(l.Mode)}
		cfg.parent = a.str("macvlan parent", parent)
		if a.err != nil {
			return a.err
		}
		return h.add(attrs, func(p *C.netkit_handle, out **C.netkit_link, e **C.netkit_error) C.int {
			return C.netkit_link_add_macvlan(p, &cfg, out, e)
		})
	case *Tuntap:
		cfg := C.netkit_tuntap_config{name: name, mode: C.uint32_t(l.Mode),
			set_owner: C.bool(l.Owner != 0), owner: C.uint32_t(l.Owner),
			set_group: C.bool(l.Group != 0), group: C.uint32_t(l.Group),
			packet_info: C.bool(l.PacketInfo), multi_queue: C.bool(l.MultiQueue)}
		if a.err != nil {
			return a.err
		}
		return h.add(attrs, func(p *C.netkit_handle, out **C.netkit_link, e **C.netkit_error) C.int {
			return C.netkit_link_add_tuntap(p, &cfg, out, e)
		})
	case *Iptun:
		parent, err := h.parentName(attrs, "")
		if err != nil {
			return err
		}
		cfg := C.netkit_ipip_config{name: name, mtu: mtu, ttl: C.uint8_t(l.Ttl)}
		if cfg.local, err = cIP(l.Local); err != nil {
			return err
		}
		if cfg.remote, err = cIP(l.Remote); err != nil {
			return err
		}
		cfg.parent = a.optStr("ipip parent", parent)
		if a.err != nil {
			return a.err
		}
		return h.add(attrs, func(p *C.netkit_handle, out **C.netkit_link, e **C.netkit_error) C.int {
			return C.netkit_link_add_ipip(p, &cfg, out, e)
		})
	}
	return &Error{Kind: KindUnsupported, Message: "netkit: LinkAdd: links of type " + link.Type() + " cannot be created"}
}

// add runs one netkit_link_add_* function and fills attrs in from the link it returns.
func (h *Handle) add(attrs *LinkAttrs, f func(p *C.netkit_handle, out **C.netkit_link, e **C.netkit_error) C.int) error {
	var out *C.netkit_link
	err := h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(f(p, &out, &cerr), cerr)
	})
	if err != nil {
		return err
	}
	fill(attrs, out)
	return nil
}

// byName runs a libnetkit function that takes the link's name.
func (h *Handle) byName(link Link, f func(p *C.netkit_handle, name *C.char, cerr **C.netkit_error) C.int) error {
	if link == nil || link.Attrs() == nil {
		return invalidf("nil link")
	}
	var a arena
	defer a.free()
	name := a.str("link name", link.Attrs().Name)
	if a.err != nil {
		return a.err
	}
	return h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(f(p, name, &cerr), cerr)
	})
}

// LinkSetUp brings link up (`ip link set NAME up`).
func (h *Handle) LinkSetUp(link Link) error {
	return h.byName(link, func(p *C.netkit_handle, n *C.char, e **C.netkit_error) C.int {
		return C.netkit_link_set_up(p, n, e)
	})
}

// LinkSetDown takes link down (`ip link set NAME down`).
func (h *Handle) LinkSetDown(link Link) error {
	return h.byName(link, func(p *C.netkit_handle, n *C.char, e **C.netkit_error) C.int {
		return C.netkit_link_set_down(p, n, e)
	})
}

// LinkSetMTU sets link's MTU (`ip link set NAME mtu MTU`).
func (h *Handle) LinkSetMTU(link Link, mtu int) error {
	if mtu <= 0 {
		return invalidf("MTU %d", mtu)
	}
	return h.byName(link, func(p *C.netkit_handle, n *C.char, e **C.netkit_error) C.int {
		return C.netkit_link_set_mtu(p, n, C.uint32_t(mtu), e)
	})
}

// LinkSetHardwareAddr sets link's MAC address (`ip link set NAME address MAC`).
func (h *Handle) LinkSetHardwareAddr(link Link, hwaddr net.HardwareAddr) error {
	var mac [6]C.uint8_t
	if !macBytes(&mac, hwaddr) {
		return invalidf("%v is not a 6-byte MAC address", hwaddr)
	}
	return h.byName(link, func(p *C.netkit_handle, n *C.char, e **C.netkit_error) C.int {
		return C.netkit_link_set_mac(p, n, (*C.uint8_t)(unsafe.Pointer(&mac[0])), e)
	})
}

// LinkSetMaster makes link a port of the bridge master (`ip link set NAME master MASTER`).
func (h *Handle) LinkSetMaster(link Link, master Link) error {
	if master == nil || master.Attrs() == nil {
		return invalidf("LinkSetMaster: nil master")
	}
	var a arena
	defer a.free()
	m := a.str("master name", master.Attrs().Name)
	if a.err != nil {
		return a.err
	}
	return h.byName(link, func(p *C.netkit_handle, n *C.char, e **C.netkit_error) C.int {
		return C.netkit_link_set_master(p, n, m, e)
	})
}

// LinkSetNoMaster takes link off its bridge (`ip link set NAME nomaster`).
func (h *Handle) LinkSetNoMaster(link Link) error {
	return h.byName(link, func(p *C.netkit_handle, n *C.char, e **C.netkit_error) C.int {
		return C.netkit_link_set_nomaster(p, n, e)
	})
}

// LinkSetNsFd moves link into namespace ns (`ip link set NAME netns NS`); it keeps its name.
// (vishvananda/netlink takes a file descriptor; here the namespace is a *Netns.)
func (h *Handle) LinkSetNsFd(link Link, ns *Netns) error {
	return ns.use(func(nsp *C.netkit_netns) error {
		return h.byName(link, func(p *C.netkit_handle, n *C.char, e **C.netkit_error) C.int {
			return C.netkit_link_set_netns(p, n, nsp, e)
		})
	})
}

// LinkSetName renames link (`ip link set NAME name NEW`) and updates its Attrs().Name.
func (h *Handle) LinkSetName(link Link, name string) error {
	var a arena
	defer a.free()
	newName := a.str("link name", name)
	if a.err != nil {
		return a.err
	}
	err := h.byName(link, func(p *C.netkit_handle, n *C.char, e **C.netkit_error) C.int {
		return C.netkit_link_set_name(p, n, newName, e)
	})
	if err == nil {
		link.Attrs().Name = name
	}
	return err
}

// LinkDel deletes link (`ip link del NAME`); a veth takes its peer with it. A link that does
// not exist is success.
func (h *Handle) LinkDel(link Link) error {
	return h.byName(link, func(p *C.netkit_handle, n *C.char, e **C.netkit_error) C.int {
		return C.netkit_link_del(p, n, e)
	})
}

// LinkByName returns the link called name (`ip link show NAME`). ErrNotFound when there is
// none.
func (h *Handle) LinkByName(name string) (Link, error) {
	var a arena
	defer a.free()
	cname := a.str("link name", name)
	if a.err != nil {
		return nil, a.err
	}
	var out *C.netkit_link
	err := h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(C.netkit_link_get(p, cname, &out, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	return takeLink(out), nil
}

// LinkByIndex returns the link with index. ErrNotFound when there is none.
func (h *Handle) LinkByIndex(index int) (Link, error) {
	if index <= 0 {
		return nil, invalidf("link index %d", index)
	}
	var out *C.netkit_link
	err := h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(C.netkit_link_get_by_index(p, C.uint32_t(index), &out, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	return takeLink(out), nil
}

// LinkList returns every link of the handle's namespace (`ip link show`).
func (h *Handle) LinkList() ([]Link, error) {
	var links *C.netkit_link
	var n C.uintptr_t
	err := h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(C.netkit_link_list(p, &links, &n, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	defer C.netkit_link_list_free(links, n)
	out := make([]Link, 0, int(n))
	for i := range unsafe.Slice(links, int(n)) {
		out = append(out, goLink(&unsafe.Slice(links, int(n))[i]))
	}
	return out, nil
}
