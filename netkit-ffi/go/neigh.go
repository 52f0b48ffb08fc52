package netkit

// #include "netkit.h"
import "C"

import (
	"errors"
	"net"
	"syscall"
	"unsafe"
)

// FAMILY_BRIDGE (syscall.AF_BRIDGE) in Neigh.Family makes a bridge forwarding database (FDB)
// entry of the Neigh, as in vishvananda/netlink; NeighList(index, FAMILY_BRIDGE) lists them.
const FAMILY_BRIDGE = syscall.AF_BRIDGE

// Neighbour states (Neigh.State): the kernel's NUD_* bits.
const (
	NUD_NONE       = 0x00
	NUD_INCOMPLETE = 0x01
	NUD_REACHABLE  = C.NETKIT_NUD_REACHABLE
	NUD_STALE      = C.NETKIT_NUD_STALE
	NUD_DELAY      = 0x08
	NUD_PROBE      = 0x10
	NUD_FAILED     = 0x20
	NUD_NOARP      = C.NETKIT_NUD_NOARP
	NUD_PERMANENT  = C.NETKIT_NUD_PERMANENT
)

// Neighbour flags (Neigh.Flags): the kernel's NTF_* bits.
const (
	NTF_USE         = 0x01
	NTF_SELF        = 0x02
	NTF_MASTER      = 0x04
	NTF_PROXY       = 0x08
	NTF_EXT_LEARNED = 0x10
	NTF_OFFLOADED   = 0x20
	NTF_STICKY      = 0x40
	NTF_ROUTER      = 0x80
)

// Neigh is a neighbour entry (ARP for IPv4, NDP for IPv6: `ip neigh`) or, with Family
// FAMILY_BRIDGE, a bridge forwarding database entry (`bridge fdb`), as vishvananda/netlink's
// Neigh: the same methods handle both, by Family.
//
// A neighbour (Family FAMILY_V4, FAMILY_V6, or 0 for IP's family): LinkIndex, IP and
// HardwareAddr (not for a proxy entry) are required; State 0 is NUD_PERMANENT; Flags may hold
// NTF_PROXY (a proxy entry: the kernel answers for IP on the link) and NTF_ROUTER.
//
// An FDB entry (Family FAMILY_BRIDGE): LinkIndex (the bridge port, or the VXLAN device) and
// HardwareAddr (all zeros: a VXLAN device's default destination, see NeighAppend) are
// required; IP is the remote VTEP of a VXLAN device (nil: none); Flags NTF_SELF puts the entry
// in the device's own table (also the default), NTF_MASTER in the table of its bridge; State
// NUD_PERMANENT makes it permanent, 0 or NUD_NOARP static (other states are refused).
// NeighList reports NTF_MASTER for an entry of a bridge's table (the kernel reports it through
// MasterIndex only), so a listed entry given to NeighDel deletes itself.
type Neigh struct {
	// LinkIndex is the device.
	LinkIndex int
	// Family: FAMILY_V4, FAMILY_V6, FAMILY_BRIDGE.
	Family int
	// State: NUD_* bits.
	State int
	// Flags: NTF_* bits.
	Flags int
	// IP is the neighbour's address; for an FDB entry the remote VTEP.
	IP net.IP
	// HardwareAddr is the link-layer address (nil in a listed neighbour while unresolved,
	// and for a proxy entry).
	HardwareAddr net.HardwareAddr
	// Vlan is the VLAN id of an FDB entry; 0: none.
	Vlan int
	// VNI is the VXLAN VNI of an FDB entry's remote; 0: none (the device's).
	VNI int
	// MasterIndex is the bridge holding an FDB entry (reported by NeighList).
	MasterIndex int
	// Port is the UDP port of an FDB entry's remote; 0: the device's.
	Port int
}

// String is "IP HWADDR" (as vishvananda/netlink's).
func (n *Neigh) String() string {
	return n.IP.String() + " " + n.HardwareAddr.String()
}

// isFdb reports whether n is an FDB entry.
func (n *Neigh) isFdb() bool { return n.Family == FAMILY_BRIDGE }

// neighConfig fills a netkit_neigh_config from n (a neighbour, not an FDB entry).
func neighConfig(n *Neigh) (C.netkit_neigh_config, error) {
	var cfg C.netkit_neigh_config
	var err error
	if n.LinkIndex < 0 || n.State < 0 || n.State > 0xffff {
		return cfg, invalidf("neighbour %v: a field is out of range", n)
	}
	if n.Flags&^(NTF_PROXY|NTF_ROUTER) != 0 {
		return cfg, invalidf("neighbour %v: flags %#x: only NTF_PROXY and NTF_ROUTER can be set", n, n.Flags)
	}
	if cfg.ip, err = cIP(n.IP); err != nil {
		return cfg, err
	}
	if n.Family != FAMILY_ALL && n.Family != int(cfg.ip.family) {
		return cfg, invalidf("neighbour %v: the address is not of family %d", n, n.Family)
	}
	cfg.dev_index = C.uint32_t(n.LinkIndex)
	cfg.state = C.uint16_t(n.State)
	cfg.proxy = C.bool(n.Flags&NTF_PROXY != 0)
	cfg.router = C.bool(n.Flags&NTF_ROUTER != 0)
	if !bool(cfg.proxy) && !macBytes(&cfg.mac, n.HardwareAddr) {
		return cfg, invalidf("neighbour %v: HardwareAddr %v is not a 6-byte MAC address", n, n.HardwareAddr)
	}
	return cfg, nil
}

// fdbConfig fills a netkit_fdb_config from n (an FDB entry). adding refuses what an added
// entry cannot have; a deletion ignores the flags and states it does not use.
func fdbConfig(n *Neigh, adding bool) (C.netkit_fdb_config, error) {
	var cfg C.netkit_fdb_config
	var err error
	if n.LinkIndex < 0 || n.Vlan < 0 || n.Vlan > 4095 || n.VNI < 0 || n.VNI > 0xffffff ||
		n.Port < 0 || n.Port > 0xffff {
		return cfg, invalidf("FDB entry %v: a field is out of range", n)
	}
	if adding && n.Flags&^(NTF_SELF|NTF_MASTER) != 0 {
		return cfg, invalidf("FDB entry %v: flags %#x: only NTF_SELF and NTF_MASTER can be set", n, n.Flags)
	}
	if adding && n.State != 0 && n.State != NUD_NOARP && n.State != NUD_PERMANENT {
		return cfg, invalidf("FDB entry %v: state %#x: only NUD_PERMANENT or NUD_NOARP (static)", n, n.State)
	}
	if !macBytes(&cfg.mac, n.HardwareAddr) {
		return cfg, invalidf("FDB entry %v: HardwareAddr %v is not a 6-byte MAC address", n, n.HardwareAddr)
	}
	if cfg.dst, err = cIP(n.IP); err != nil {
		return cfg, err
	}
	cfg.dev_index = C.uint32_t(n.LinkIndex)
	cfg.vlan = C.uint16_t(n.Vlan)
	if n.VNI != 0 {
		cfg.set_vni = true
		cfg.vni = C.uint32_t(n.VNI)
	}
	cfg.port = C.uint16_t(n.Port)
	cfg.is_self = C.bool(n.Flags&NTF_SELF != 0)
	cfg.master = C.bool(n.Flags&NTF_MASTER != 0)
	cfg.permanent = C.bool(n.State&NUD_PERMANENT != 0)
	return cfg, nil
}

// neighCall runs f (a neighbour function) with n's config.
func (h *Handle) neighCall(n *Neigh, f func(p *C.netkit_handle, cfg *C.netkit_neigh_config, e **C.netkit_error) C.int) error {
	cfg, err := neighConfig(n)
	if err != nil {
		return err
	}
	return h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(f(p, &cfg, &cerr), cerr)
	})
}

// fdbCall runs f (an FDB function) with n's config.
func (h *Handle) fdbCall(n *Neigh, adding bool, f func(p *C.netkit_handle, cfg *C.netkit_fdb_config, e **C.netkit_error) C.int) error {
	cfg, err := fdbConfig(n, adding)
	if err != nil {
		return err
	}
	return h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(f(p, &cfg, &cerr), cerr)
	})
}

// NeighAdd adds neigh (`ip neigh add IP lladdr MAC dev DEV nud STATE`, `ip neigh add proxy
// IP dev DEV`; with Family FAMILY_BRIDGE `bridge fdb add MAC dev DEV [dst IP] self|master`).
// ErrExists when the device has an entry for the address (the MAC) already; ErrNotFound when
// the device does not exist.
func (h *Handle) NeighAdd(neigh *Neigh) error {
	if neigh == nil {
		return invalidf("nil neighbour")
	}
	if neigh.isFdb() {
		return h.fdbCall(neigh, true, func(p *C.netkit_handle, cfg *C.netkit_fdb_config, e **C.netkit_error) C.int {
			return C.netkit_fdb_add(p, cfg, e)
		})
	}
	return h.neighCall(neigh, func(p *C.netkit_handle, cfg *C.netkit_neigh_config, e **C.netkit_error) C.int {
		return C.netkit_neigh_add(p, cfg, e)
	})
}

// NeighSet adds neigh or overwrites the entry for its address (its MAC for an FDB entry):
// `ip neigh replace`, `bridge fdb replace`.
func (h *Handle) NeighSet(neigh *Neigh) error {
	if neigh == nil {
		return invalidf("nil neighbour")
	}
	if neigh.isFdb() {
		return h.fdbCall(neigh, true, func(p *C.netkit_handle, cfg *C.netkit_fdb_config, e **C.netkit_error) C.int {
			return C.netkit_fdb_replace(p, cfg, e)
		})
	}
	return h.neighCall(neigh, func(p *C.netkit_handle, cfg *C.netkit_neigh_config, e **C.netkit_error) C.int {
		return C.netkit_neigh_replace(p, cfg, e)
	})
}

// NeighAppend adds another destination for the MAC of an FDB entry (`bridge fdb append`):
// with the all-zeros MAC, once per remote VTEP, it makes a VXLAN device's flood list (as
// Flannel does). Only for Family FAMILY_BRIDGE (ErrInvalid otherwise).
func (h *Handle) NeighAppend(neigh *Neigh) error {
	if neigh == nil || !neigh.isFdb() {
		return invalidf("NeighAppend is for FDB entries (Family FAMILY_BRIDGE)")
	}
	return h.fdbCall(neigh, true, func(p *C.netkit_handle, cfg *C.netkit_fdb_config, e **C.netkit_error) C.int {
		return C.netkit_fdb_append(p, cfg, e)
	})
}

// NeighDel deletes neigh (`ip neigh del [proxy] IP dev DEV`: LinkIndex, IP and NTF_PROXY
// select it; `bridge fdb del MAC dev DEV [dst IP] self|master` for FAMILY_BRIDGE: with IP,
// only that destination). An entry or device already gone is success.
func (h *Handle) NeighDel(neigh *Neigh) error {
	if neigh == nil {
		return invalidf("nil neighbour")
	}
	if neigh.isFdb() {
		return h.fdbCall(neigh, false, func(p *C.netkit_handle, cfg *C.netkit_fdb_config, e **C.netkit_error) C.int {
			return C.netkit_fdb_del(p, cfg, e)
		})
	}
	ip, err := cIP(neigh.IP)
	if err != nil {
		return err
	}
	dev, err := h.nameOf(neigh.LinkIndex)
	if errors.Is(err, ErrNotFound) {
		return nil // the device is gone, and its entries with it
	}
	if err != nil {
		return err
	}
	var a arena
	defer a.free()
	cdev := a.str("link name", dev)
	return h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(C.netkit_neigh_del(p, cdev, &ip, C.bool(neigh.Flags&NTF_PROXY != 0), &cerr), cerr)
	})
}

// NeighList returns the neighbour entries of the link with linkIndex (every link's for 0) of
// family (FAMILY_ALL, FAMILY_V4, FAMILY_V6: `ip neigh show`, without proxy entries), or the
// FDB entries for FAMILY_BRIDGE (`bridge fdb show`). ErrNotFound when the link does not
// exist.
func (h *Handle) NeighList(linkIndex, family int) ([]Neigh, error) {
	if family == FAMILY_BRIDGE {
		return h.fdbList(linkIndex)
	}
	return h.neighList(linkIndex, family, false)
}

// NeighProxyList returns the proxy entries (`ip neigh show proxy`) of the link with linkIndex
// (every link's for 0) of family (FAMILY_ALL, FAMILY_V4, FAMILY_V6).
func (h *Handle) NeighProxyList(linkIndex, family int) ([]Neigh, error) {
	return h.neighList(linkIndex, family, true)
}

// devArg puts the name of the link with index into a (NULL for index 0).
func (h *Handle) devArg(a *arena, index int) (*C.char, error) {
	if index == 0 {
		return nil, nil
	}
	name, err := h.nameOf(index)
	if err != nil {
		return nil, err
	}
	return a.str("link name", name), nil
}

// neighList lists the proxy entries (proxy) or the others.
func (h *Handle) neighList(linkIndex, family int, proxy bool) ([]Neigh, error) {
	if family != FAMILY_ALL && family != FAMILY_V4 && family != FAMILY_V6 {
		return nil, invalidf("family %d", family)
	}
	var a arena
	defer a.free()
	dev, err := h.devArg(&a, linkIndex)
	if err != nil {
		return nil, err
	}
	var list *C.netkit_neigh
	var n C.uintptr_t
	err = h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(C.netkit_neigh_list(p, dev, C.uint8_t(family), &list, &n, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	defer C.netkit_neigh_list_free(list, n)
	out := []Neigh{}
	for i, all := 0, unsafe.Slice(list, int(n)); i < len(all); i++ {
		if bool(all[i].proxy) == proxy {
			out = append(out, goNeigh(&all[i]))
		}
	}
	return out, nil
}

// fdbList lists the FDB entries of the link with linkIndex (every link's for 0).
func (h *Handle) fdbList(linkIndex int) ([]Neigh, error) {
	var a arena
	defer a.free()
	dev, err := h.devArg(&a, linkIndex)
	if err != nil {
		return nil, err
	}
	var list *C.netkit_fdb
	var n C.uintptr_t
	err = h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(C.netkit_fdb_list(p, dev, &list, &n, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	defer C.netkit_fdb_list_free(list, n)
	out := []Neigh{}
	for i, all := 0, unsafe.Slice(list, int(n)); i < len(all); i++ {
		out = append(out, goFdb(&all[i]))
	}
	return out, nil
}

// goNeigh converts a reported neighbour entry.
func goNeigh(c *C.netkit_neigh) Neigh {
	n := Neigh{
		LinkIndex: int(c.index),
		Family:    int(c.ip.family),
		State:     int(c.state),
		IP:        goIP(&c.ip),
	}
	if c.has_mac {
		n.HardwareAddr = goMAC(&c.mac)
	}
	if c.proxy {
		n.Flags |= NTF_PROXY
	}
	if c.router {
		n.Flags |= NTF_ROUTER
	}
	return n
}

// goFdb converts a reported FDB entry into a Neigh of family FAMILY_BRIDGE.
func goFdb(c *C.netkit_fdb) Neigh {
	n := Neigh{
		LinkIndex:    int(c.index),
		Family:       FAMILY_BRIDGE,
		State:        int(c.state),
		IP:           goIP(&c.dst),
		HardwareAddr: goMAC(&c.mac),
		Vlan:         int(c.vlan),
		MasterIndex:  int(c.master),
		Port:         int(c.port),
	}
	if c.has_vni {
		n.VNI = int(c.vni)
	}
	for _, f := range []struct {
		set  C.bool
		flag int
	}{
		{c.is_self, NTF_SELF}, {C.bool(c.master != 0), NTF_MASTER}, {c.router, NTF_ROUTER},
		{c.extern_learn, NTF_EXT_LEARNED}, {c.offloaded, NTF_OFFLOADED}, {c.sticky, NTF_STICKY},
	} {
		if f.set {
			n.Flags |= f.flag
		}
	}
	return n
}

// goMAC copies a C MAC address.
func goMAC(mac *[6]C.uint8_t) net.HardwareAddr {
	out := make(net.HardwareAddr, 6)
	for i := range out {
		out[i] = byte(mac[i])
	}
	return out
}
