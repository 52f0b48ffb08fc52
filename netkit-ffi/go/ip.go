package netkit

// #include "netkit.h"
import "C"

import (
	"net"
	"strings"
	"unsafe"
)

// cIP converts an address to libnetkit's netkit_ip (family 0 for nil).
func cIP(ip net.IP) (C.netkit_ip, error) {
	var out C.netkit_ip
	if ip == nil {
		return out, nil
	}
	b := (*[16]byte)(unsafe.Pointer(&out.addr[0]))
	if v4 := ip.To4(); v4 != nil {
		out.family = C.NETKIT_AF_INET
		copy(b[:], v4)
		return out, nil
	}
	if v6 := ip.To16(); v6 != nil {
		out.family = C.NETKIT_AF_INET6
		copy(b[:], v6)
		return out, nil
	}
	return out, invalidf("%v is not an IP address", ip)
}

// goIP converts libnetkit's netkit_ip to an address (nil for family 0).
func goIP(ip *C.netkit_ip) net.IP {
	b := (*[16]byte)(unsafe.Pointer(&ip.addr[0]))
	switch ip.family {
	case C.NETKIT_AF_INET:
		return net.IPv4(b[0], b[1], b[2], b[3]).To4()
	case C.NETKIT_AF_INET6:
		out := make(net.IP, 16)
		copy(out, b[:])
		return out
	}
	return nil
}

// cPrefix converts a prefix (its address keeps its host bits) to a netkit_prefix.
func cPrefix(n *net.IPNet) (C.netkit_prefix, error) {
	var out C.netkit_prefix
	if n == nil {
		return out, nil
	}
	ip, err := cIP(n.IP)
	if err != nil {
		return out, err
	}
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return out, invalidf("%v has a non-canonical mask", n)
	}
	if ip.family == C.NETKIT_AF_INET && bits == 128 {
		ones -= 96
	}
	out.ip = ip
	out.len = C.uint8_t(ones)
	return out, nil
}

// goPrefix converts a netkit_prefix (nil for family 0).
func goPrefix(p *C.netkit_prefix) *net.IPNet {
	ip := goIP(&p.ip)
	if ip == nil {
		return nil
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(int(p.len), len(ip)*8)}
}

// macBytes copies a MAC into a C byte array of 6; false when mac is not 6 bytes.
func macBytes(dst *[6]C.uint8_t, mac net.HardwareAddr) bool {
	if len(mac) != 6 {
		return false
	}
	for i, b := range mac {
		dst[i] = C.uint8_t(b)
	}
	return true
}

// ParseIPNet parses "10.0.0.1/24" keeping the host bits (unlike net.ParseCIDR's network):
// address 10.0.0.1 with mask /24. Without "/N" the full length.
func ParseIPNet(s string) (*net.IPNet, error) {
	if !strings.Contains(s, "/") {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, invalidf("%q is not an IP address", s)
		}
		return hostPrefix(normalize(ip)), nil
	}
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil, invalidf("%q is not an IP prefix", s)
	}
	n.IP = normalize(ip)
	return n, nil
}

// ParseAddr parses "10.0.0.1/24" (see ParseIPNet) into an Addr.
func ParseAddr(s string) (*Addr, error) {
	n, err := ParseIPNet(s)
	if err != nil {
		return nil, err
	}
	return &Addr{IPNet: n}, nil
}

// normalize is a 4-byte IPv4 address, or the 16-byte IPv6 one.
func normalize(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}
