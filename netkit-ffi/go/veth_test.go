package netkit_test

import (
	"errors"
	"net"
	"sort"
	"strings"
	"testing"

	"netkit.dev/netkit"
)

// TestVethPairPing joins two namespaces with a veth pair (the peer created directly in the
// other namespace), addresses both ends (IPv4, IPv6 without DAD) and pings across; the
// links, addresses and routes read back agree with what was made.
func TestVethPairPing(t *testing.T) {
	a, b := newTestNs(t, "va"), newTestNs(t, "vb")
	veth := &netkit.Veth{
		LinkAttrs:        netkit.LinkAttrs{Name: "eth0", MTU: 1400, Flags: up},
		PeerName:         "eth0",
		PeerNamespace:    b.ns,
		PeerHardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b},
	}
	must(t, "LinkAdd veth", a.h.LinkAdd(veth))
	if veth.Index == 0 || veth.MTU != 1400 || veth.Flags&net.FlagUp == 0 {
		t.Fatalf("LinkAdd filled in %+v", veth.LinkAttrs)
	}
	peer, err := b.h.LinkByName("eth0")
	must(t, "peer in b", err)
	if _, ok := peer.(*netkit.Veth); !ok || peer.Attrs().HardwareAddr.String() != "02:00:00:00:00:0b" {
		t.Fatalf("peer: %T %+v", peer, peer.Attrs())
	}
	if veth.ParentIndex != peer.Attrs().Index || veth.NetNsID < 0 {
		t.Fatalf("veth's parent %d (netnsid %d), peer index %d", veth.ParentIndex, veth.NetNsID, peer.Attrs().Index)
	}
	must(t, "peer up", b.h.LinkSetUp(peer))
	for _, s := range []struct {
		h          *netkit.Handle
		link       netkit.Link
		ip4, ip6   string
		peer4, p6  string
		name, peer string
	}{
		{a.h, veth, "10.0.0.1/24", "fd00::1/64", "10.0.0.2", "fd00::2", a.name, b.name},
		{b.h, peer, "10.0.0.2/24", "fd00::2/64", "10.0.0.1", "fd00::1", b.name, a.name},
	} {
		must(t, "AddrAdd", s.h.AddrAdd(s.link, addr(t, s.ip4)))
		v6 := addr(t, s.ip6)
		v6.Flags = netkit.IFA_F_NODAD
		must(t, "AddrAdd v6", s.h.AddrAdd(s.link, v6))
		list, err := s.h.AddrList(s.link, netkit.FAMILY_ALL)
		must(t, "AddrList", err)
		if !hasAddr(list, s.ip4) || !hasAddr(list, s.ip6) {
			t.Fatalf("AddrList of %s: %v", s.name, list)
		}
		v4only, err := s.h.AddrList(s.link, netkit.FAMILY_V4)
		must(t, "AddrList v4", err)
		if len(v4only) != 1 || v4only[0].LinkIndex != s.link.Attrs().Index {
			t.Fatalf("IPv4 addresses of %s: %v", s.name, v4only)
		}
	}
	for _, dst := range []string{"10.0.0.2", "fd00::2"} {
		if !ping(a.name, dst) {
			t.Errorf("ping %s from a failed", dst)
		}
	}
	if !ping(b.name, "10.0.0.1") {
		t.Errorf("ping 10.0.0.1 from b failed")
	}

	// The links of a: lo and eth0, with the attributes ip sees.
	links, err := a.h.LinkList()
	must(t, "LinkList", err)
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name+":"+l.Type())
	}
	sort.Strings(names)
	if len(names) != 2 || names[0] != "eth0:veth" || names[1] != "lo:device" {
		t.Fatalf("links of a: %v", names)
	}
	got, err := a.h.LinkByIndex(veth.Index)
	must(t, "LinkByIndex", err)
	if got.Attrs().Name != "eth0" || got.Attrs().OperState != "UP" {
		t.Fatalf("LinkByIndex: %+v", got.Attrs())
	}

	// MTU, down/up, rename, delete.
	must(t, "LinkSetMTU", a.h.LinkSetMTU(veth, 1300))
	must(t, "LinkSetDown", a.h.LinkSetDown(veth))
	got, err = a.h.LinkByName("eth0")
	must(t, "LinkByName", err)
	if got.Attrs().MTU != 1300 || got.Attrs().Flags&net.FlagUp != 0 {
		t.Fatalf("after MTU and down: %+v", got.Attrs())
	}
	must(t, "LinkSetHardwareAddr", a.h.LinkSetHardwareAddr(veth, net.HardwareAddr{2, 0, 0, 0, 0, 0xa}))
	must(t, "LinkSetName", a.h.LinkSetName(veth, "ve0"))
	if veth.Name != "ve0" {
		t.Fatalf("LinkSetName left the name %q", veth.Name)
	}
	got, err = a.h.LinkByName("ve0")
	must(t, "LinkByName ve0", err)
	if got.Attrs().HardwareAddr.String() != "02:00:00:00:00:0a" {
		t.Fatalf("MAC %v", got.Attrs().HardwareAddr)
	}
	must(t, "LinkDel", a.h.LinkDel(veth))
	if _, err := b.h.LinkByName("eth0"); !errors.Is(err, netkit.ErrNotFound) {
		t.Fatalf("the peer went with the veth: %v", err)
	}
	must(t, "LinkDel again (idempotent)", a.h.LinkDel(veth))
}

// TestRoutes adds, lists and deletes routes: via a gateway, onlink, in another table with a
// metric, multipath, and a default route.
func TestRoutes(t *testing.T) {
	a, b := newTestNs(t, "ra"), newTestNs(t, "rb")
	veth := &netkit.Veth{LinkAttrs: netkit.LinkAttrs{Name: "eth0", Flags: up}, PeerName: "eth0", PeerNamespace: b.ns}
	must(t, "LinkAdd", a.h.LinkAdd(veth))
	must(t, "AddrAdd", a.h.AddrAdd(veth, addr(t, "10.1.0.1/24")))
	_, dst1, _ := net.ParseCIDR("10.9.0.0/16")
	_, dst2, _ := net.ParseCIDR("10.8.0.0/16")
	_, dst3, _ := net.ParseCIDR("10.7.0.0/16")
	routes := []*netkit.Route{
		{Dst: dst1, Gw: net.ParseIP("10.1.0.2"), LinkIndex: veth.Index},
		{Dst: dst2, Gw: net.ParseIP("192.168.50.1"), LinkIndex: veth.Index, Flags: netkit.FLAG_ONLINK},
		{Dst: dst1, Gw: net.ParseIP("10.1.0.3"), LinkIndex: veth.Index, Table: 100, Priority: 50},
		{Dst: dst3, MultiPath: []*netkit.NexthopInfo{
			{LinkIndex: veth.Index, Gw: net.ParseIP("10.1.0.2")},
			{LinkIndex: veth.Index, Gw: net.ParseIP("10.1.0.3"), Hops: 2},
		}},
		{Gw: net.ParseIP("10.1.0.254"), LinkIndex: veth.Index},
	}
	for _, r := range routes {
		must(t, "RouteAdd "+r.String(), a.h.RouteAdd(r))
	}
	if err := a.h.RouteAdd(routes[0]); !errors.Is(err, netkit.ErrExists) {
		t.Fatalf("RouteAdd twice: %v", err)
	}
	main, err := a.h.RouteList(veth, netkit.FAMILY_V4)
	must(t, "RouteList", err)
	find := func(list []netkit.Route, dst string) *netkit.Route {
		for i := range list {
			d := "default"
			if list[i].Dst != nil {
				d = list[i].Dst.String()
			}
			if d == dst {
				return &list[i]
			}
		}
		return nil
	}
	if r := find(main, "10.9.0.0/16"); r == nil || !r.Gw.Equal(net.ParseIP("10.1.0.2")) || r.Table != 254 {
		t.Fatalf("10.9.0.0/16 in main: %+v (all: %v)", r, main)
	}
	if r := find(main, "10.8.0.0/16"); r == nil || r.Flags&netkit.FLAG_ONLINK == 0 {
		t.Fatalf("onlink route: %+v", r)
	}
	if r := find(main, "10.7.0.0/16"); r == nil || len(r.MultiPath) != 2 || r.MultiPath[1].Hops != 2 {
		t.Fatalf("multipath route: %+v", r)
	}
	if r := find(main, "default"); r == nil || !r.Gw.Equal(net.ParseIP("10.1.0.254")) {
		t.Fatalf("default route: %+v", r)
	}
	t100, err := a.h.RouteListTable(netkit.FAMILY_V4, 100)
	must(t, "RouteListTable", err)
	if r := find(t100, "10.9.0.0/16"); r == nil || r.Priority != 50 || r.Table != 100 {
		t.Fatalf("table 100: %v", t100)
	}
	// ip agrees.
	if out := ip(t, a.name, "route", "show", "table", "100"); !strings.Contains(out, "10.9.0.0/16 via 10.1.0.3 dev eth0") ||
		!strings.Contains(out, "metric 50") {
		t.Fatalf("ip route show table 100: %q", out)
	}
	for _, r := range routes {
		must(t, "RouteDel "+r.String(), a.h.RouteDel(r))
	}
	must(t, "RouteDel again (idempotent)", a.h.RouteDel(routes[0]))
	main, err = a.h.RouteList(nil, netkit.FAMILY_V4)
	must(t, "RouteList", err)
	if len(main) != 1 || main[0].Dst.String() != "10.1.0.0/24" {
		t.Fatalf("after deleting, main has %v", main)
	}
}

// TestOtherKinds creates a bridge with a port, a vxlan, a macvlan and a tap, and finds each
// with its type in LinkList.
func TestOtherKinds(t *testing.T) {
	a, b := newTestNs(t, "ka"), newTestNs(t, "kb")
	br := &netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "br0", Flags: up}}
	must(t, "bridge", a.h.LinkAdd(br))
	veth := &netkit.Veth{LinkAttrs: netkit.LinkAttrs{Name: "veth0", Flags: up}, PeerName: "eth0", PeerNamespace: b.ns}
	must(t, "veth", a.h.LinkAdd(veth))
	must(t, "LinkSetMaster", a.h.LinkSetMaster(veth, br))
	port, err := a.h.LinkByName("veth0")
	must(t, "LinkByName", err)
	if port.Attrs().MasterIndex != br.Index {
		t.Fatalf("veth0's master %d, bridge %d", port.Attrs().MasterIndex, br.Index)
	}
	must(t, "AddrAdd", a.h.AddrAdd(br, addr(t, "10.2.0.1/24")))
	vx := &netkit.Vxlan{LinkAttrs: netkit.LinkAttrs{Name: "vx0", MTU: 1450}, VxlanId: 42, Port: 8472,
		SrcAddr: net.ParseIP("10.2.0.1"), VtepDevIndex: br.Index}
	must(t, "vxlan", a.h.LinkAdd(vx))
	// A macvlan needs a parent that is no bridge port: a second veth.
	lower := &netkit.Veth{LinkAttrs: netkit.LinkAttrs{Name: "vm0", Flags: up}, PeerName: "eth1", PeerNamespace: b.ns}
	must(t, "veth for the macvlan", a.h.LinkAdd(lower))
	mv := &netkit.Macvlan{LinkAttrs: netkit.LinkAttrs{Name: "mv0", ParentIndex: lower.Index}, Mode: netkit.MACVLAN_MODE_PRIVATE}
	must(t, "macvlan", a.h.LinkAdd(mv))
	tap := &netkit.Tuntap{LinkAttrs: netkit.LinkAttrs{Name: "tap0"}, Mode: netkit.TUNTAP_MODE_TAP}
	must(t, "tap", a.h.LinkAdd(tap))
	links, err := a.h.LinkList()
	must(t, "LinkList", err)
	types := map[string]string{}
	for _, l := range links {
		types[l.Attrs().Name] = l.Type()
	}
	want := map[string]string{"lo": "device", "br0": "bridge", "veth0": "veth", "vm0": "veth", "vx0": "vxlan", "mv0": "macvlan", "tap0": "tuntap"}
	for name, typ := range want {
		if types[name] != typ {
			t.Errorf("%s: type %q, want %q (all %v)", name, types[name], typ, types)
		}
	}
	out := ip(t, a.name, "-d", "link", "show", "vx0")
	for _, s := range []string{"vxlan id 42", "dstport 8472", "nolearning", "mtu 1450"} {
		if !strings.Contains(out, s) {
			t.Errorf("ip -d link show vx0 lacks %q:\n%s", s, out)
		}
	}
	if out := ip(t, a.name, "-d", "link", "show", "mv0"); !strings.Contains(out, "macvlan mode private") {
		t.Errorf("mv0: %s", out)
	}
	must(t, "LinkSetNoMaster", a.h.LinkSetNoMaster(veth))
	// Move the tap to b: it keeps its name there.
	must(t, "LinkSetNsFd", a.h.LinkSetNsFd(tap, b.ns))
	if _, err := b.h.LinkByName("tap0"); err != nil {
		t.Fatalf("tap0 in b: %v", err)
	}
}

// TestSysctl writes and reads a sysctl inside a test namespace.
func TestSysctl(t *testing.T) {
	a := newTestNs(t, "sy")
	must(t, "SysctlSet", a.ns.SysctlSet("net.ipv4.ip_forward", "1"))
	v, err := a.ns.SysctlGet("net.ipv4.ip_forward")
	must(t, "SysctlGet", err)
	if v != "1" {
		t.Fatalf("ip_forward = %q", v)
	}
	if _, err := a.ns.SysctlGet("net.ipv4.no_such_key"); !errors.Is(err, netkit.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := a.ns.SysctlGet("kernel.hostname"); !errors.Is(err, netkit.ErrInvalid) {
		t.Fatalf("bad key: %v", err)
	}
}
