package netkit

// #include "netkit.h"
import "C"

import (
	"net"
)

// LinkAttrs are the attributes every link has (as vishvananda/netlink's LinkAttrs). When a
// link is created, Name, MTU, HardwareAddr, MasterIndex and Flags (net.FlagUp: bring it up)
// are used; LinkByName, LinkList and LinkAdd fill in the rest from the kernel.
type LinkAttrs struct {
	// Index is the interface index (set by the kernel).
	Index int
	// Name is the interface name (at most 15 bytes).
	Name string
	// MTU; 0 when creating: the default.
	MTU int
	// HardwareAddr is the MAC address; nil when creating: the kernel chooses.
	HardwareAddr net.HardwareAddr
	// Flags: net.FlagUp when the link is administratively up (and, when creating, to bring
	// it up), net.FlagBroadcast, net.FlagLoopback, ….
	Flags net.Flags
	// RawFlags are the kernel's IFF_* flags.
	RawFlags uint32
	// MasterIndex is the index of the bridge the link is a port of; 0: none.
	MasterIndex int
	// ParentIndex is the kernel's IFLA_LINK: a veth's peer, a macvlan's parent (possibly in
	// another namespace, see NetNsID). When creating a macvlan, vxlan or ipip link it names
	// the parent device in the handle's namespace.
	ParentIndex int
	// NetNsID is the namespace id (link-netnsid) of the namespace ParentIndex lives in; -1:
	// the link's own namespace.
	NetNsID int
	// OperState is the operational state as `ip link` prints it: "UP", "DOWN", "UNKNOWN", ….
	OperState string
	// Alias is the interface alias (ifalias).
	Alias string
	// Group is the device group.
	Group uint32
}

// Attrs returns the attributes themselves, so a *LinkAttrs is usable where only the
// attributes matter.
func (a *LinkAttrs) Attrs() *LinkAttrs { return a }

// Link is a network interface of one of the kinds below (*Veth, *Bridge, *Vxlan, *Macvlan,
// *Tuntap, *Iptun), a *Device (no kind, such as lo) or a *GenericLink (any other kind).
type Link interface {
	// Attrs returns the link's common attributes.
	Attrs() *LinkAttrs
	// Type returns the kind as `ip -d link` names it ("veth", "bridge", …).
	Type() string
}

// Device is a link without a kind, such as the loopback device.
type Device struct {
	LinkAttrs
}

// Type returns "device".
func (*Device) Type() string { return "device" }

// GenericLink is a link of a kind the package has no type for (as LinkByName reports it).
type GenericLink struct {
	LinkAttrs
	// LinkType is the kind ("dummy", "ipvlan", …).
	LinkType string
}

// Type returns the kind.
func (g *GenericLink) Type() string { return g.LinkType }

// Veth is a veth pair: `ip link add NAME type veth peer name PEER netns NS`.
type Veth struct {
	LinkAttrs
	// PeerName is the name of the other end. Required by LinkAdd.
	PeerName string
	// PeerHardwareAddr is the MAC of the other end; nil: the kernel chooses.
	PeerHardwareAddr net.HardwareAddr
	// PeerNamespace is the namespace the peer is created in (directly, never moved); nil:
	// the handle's. The peer starts down: bring it up with a handle in its namespace.
	PeerNamespace *Netns
}

// Type returns "veth".
func (*Veth) Type() string { return "veth" }

// Bridge is a Linux bridge: `ip link add NAME type bridge` (spanning tree off unless STP).
type Bridge struct {
	LinkAttrs
	// STP turns the spanning tree protocol on (only when creating).
	STP bool
}

// Type returns "bridge".
func (*Bridge) Type() string { return "bridge" }

// Vxlan is a VXLAN device: `ip link add NAME type vxlan id VNI dstport PORT local SRC remote
// GROUP dev PARENT`. LinkByName and LinkList report only its LinkAttrs.
type Vxlan struct {
	LinkAttrs
	// VxlanId is the VNI (24 bits).
	VxlanId int
	// VtepDevIndex is the index of the underlay device; 0: none (or VtepDevName).
	VtepDevIndex int
	// VtepDevName is the underlay device by name (used when VtepDevIndex is 0).
	VtepDevName string
	// SrcAddr is the source address of the encapsulated packets; nil: none.
	SrcAddr net.IP
	// Group is the fixed remote (point to point); nil: none (FDB entries say where MACs live).
	Group net.IP
	// TTL of the outer packets; 0: default.
	TTL int
	// Learning turns MAC learning on; false (the zero value, as in vishvananda/netlink)
	// turns it off, as Flannel and Calico want.
	Learning bool
	// Port is the destination UDP port; 0: 4789.
	Port int
}

// Type returns "vxlan".
func (*Vxlan) Type() string { return "vxlan" }

// MacvlanMode is a macvlan's mode.
type MacvlanMode uint32

// The macvlan modes (the zero value is bridge).
const (
	MACVLAN_MODE_DEFAULT  MacvlanMode = 0
	MACVLAN_MODE_BRIDGE   MacvlanMode = C.NETKIT_MACVLAN_BRIDGE
	MACVLAN_MODE_PRIVATE  MacvlanMode = C.NETKIT_MACVLAN_PRIVATE
	MACVLAN_MODE_VEPA     MacvlanMode = C.NETKIT_MACVLAN_VEPA
	MACVLAN_MODE_PASSTHRU MacvlanMode = C.NETKIT_MACVLAN_PASSTHRU
	MACVLAN_MODE_SOURCE   MacvlanMode = C.NETKIT_MACVLAN_SOURCE
)

// Macvlan is a macvlan on LinkAttrs.ParentIndex (or ParentName): `ip link add NAME link
// PARENT type macvlan mode MODE`. LinkByName and LinkList report only its LinkAttrs.
type Macvlan struct {
	LinkAttrs
	// Mode; the zero value is bridge.
	Mode MacvlanMode
	// ParentName names the parent device when LinkAttrs.ParentIndex is 0.
	ParentName string
}

// Type returns "macvlan".
func (*Macvlan) Type() string { return "macvlan" }

// TuntapMode is TUN (layer 3) or TAP (layer 2).
type TuntapMode uint32

// The tun/tap modes.
const (
	TUNTAP_MODE_TUN TuntapMode = C.NETKIT_TUNTAP_TUN
	TUNTAP_MODE_TAP TuntapMode = C.NETKIT_TUNTAP_TAP
)

// Tuntap is a persistent tun/tap device (`ip tuntap add NAME mode tun|tap user UID group
// GID`); it stays until LinkDel. LinkByName and LinkList report only its LinkAttrs.
type Tuntap struct {
	LinkAttrs
	// Mode: TUNTAP_MODE_TUN or TUNTAP_MODE_TAP. Required.
	Mode TuntapMode
	// Owner is the user allowed to open it; 0: not set.
	Owner uint32
	// Group is the group allowed to open it; 0: not set.
	Group uint32
	// PacketInfo prefixes packets with the 4-byte packet information header.
	PacketInfo bool
	// MultiQueue makes a multi-queue device.
	MultiQueue bool
}

// Type returns "tuntap".
func (*Tuntap) Type() string { return "tuntap" }

// Iptun is an IPv4-in-IPv4 tunnel: `ip link add NAME type ipip local LOCAL remote REMOTE dev
// PARENT ttl TTL`. ErrNotSupported on a kernel without the ipip driver.
type Iptun struct {
	LinkAttrs
	// Local IPv4 address; nil: none.
	Local net.IP
	// Remote IPv4 address; nil: none.
	Remote net.IP
	// Ttl; 0: inherit.
	Ttl uint8
}

// Type returns "ipip".
func (*Iptun) Type() string { return "ipip" }

// goLink converts a netkit_link into the Link of its kind.
func goLink(l *C.netkit_link) Link {
	attrs := LinkAttrs{
		Index:       int(l.index),
		Name:        goStr(l.name),
		MTU:         int(l.mtu),
		RawFlags:    uint32(l.flags),
		Flags:       linkFlags(uint32(l.flags)),
		MasterIndex: int(l.master),
		ParentIndex: int(l.parent),
		NetNsID:     int(l.netnsid),
		OperState:   goStr(l.operstate),
		Alias:       goStr(l.alias),
		Group:       uint32(l.group),
	}
	if l.has_mac {
		attrs.HardwareAddr = goMAC(&l.mac)
	}
	switch kind := goStr(l.kind); kind {
	case "veth":
		return &Veth{LinkAttrs: attrs}
	case "bridge":
		return &Bridge{LinkAttrs: attrs}
	case "vxlan":
		return &Vxlan{LinkAttrs: attrs}
	case "macvlan":
		return &Macvlan{LinkAttrs: attrs}
	case "tun", "tap", "tuntap":
		return &Tuntap{LinkAttrs: attrs}
	case "ipip":
		return &Iptun{LinkAttrs: attrs}
	case "device", "":
		return &Device{LinkAttrs: attrs}
	default:
		return &GenericLink{LinkAttrs: attrs, LinkType: kind}
	}
}

// linkFlags converts IFF_* flags to net.Flags (as the net package does).
func linkFlags(raw uint32) net.Flags {
	var f net.Flags
	pairs := []struct {
		iff  uint32
		flag net.Flags
	}{
		{0x1, net.FlagUp},
		{0x2, net.FlagBroadcast},
		{0x8, net.FlagLoopback},
		{0x10, net.FlagPointToPoint},
		{0x1000, net.FlagMulticast},
	}
	for _, p := range pairs {
		if raw&p.iff != 0 {
			f |= p.flag
		}
	}
	return f
}
