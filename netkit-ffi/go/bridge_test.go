package netkit_test

import (
	"fmt"
	"net"
	"testing"

	"netkit.dev/netkit"
)

// TestBridgeThreeContainers builds a "host" namespace with bridge br0 (10.10.0.1/24) and
// three "containers" attached by veth pairs, each with a default route via the bridge; every
// container pings the gateway and the two others.
func TestBridgeThreeContainers(t *testing.T) {
	host := newTestNs(t, "bh")
	br := &netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "br0", Flags: up}}
	must(t, "bridge", host.h.LinkAdd(br))
	must(t, "bridge address", host.h.AddrAdd(br, addr(t, "10.10.0.1/24")))
	var ctrs []*testNs
	for i := 0; i < 3; i++ {
		c := newTestNs(t, fmt.Sprintf("bc%d", i))
		ctrs = append(ctrs, c)
		hostEnd := &netkit.Veth{
			LinkAttrs:     netkit.LinkAttrs{Name: fmt.Sprintf("veth%d", i), MasterIndex: br.Index, Flags: up},
			PeerName:      "eth0",
			PeerNamespace: c.ns,
		}
		must(t, "veth", host.h.LinkAdd(hostEnd))
		if hostEnd.MasterIndex != br.Index {
			t.Fatalf("veth%d is not a port of br0: %+v", i, hostEnd.LinkAttrs)
		}
		eth0, err := c.h.LinkByName("eth0")
		must(t, "eth0", err)
		must(t, "eth0 up", c.h.LinkSetUp(eth0))
		must(t, "eth0 address", c.h.AddrAdd(eth0, addr(t, fmt.Sprintf("10.10.0.%d/24", i+2))))
		must(t, "default route", c.h.RouteAdd(&netkit.Route{Gw: net.ParseIP("10.10.0.1")}))
	}
	for i, c := range ctrs {
		if !ping(c.name, "10.10.0.1") {
			t.Errorf("c%d: ping bridge failed", i)
		}
		for j := range ctrs {
			if j != i && !ping(c.name, fmt.Sprintf("10.10.0.%d", j+2)) {
				t.Errorf("c%d: ping c%d failed", i, j)
			}
		}
	}
	ports := 0
	links, err := host.h.LinkList()
	must(t, "LinkList", err)
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Index {
			ports++
		}
	}
	if ports != 3 {
		t.Fatalf("br0 has %d ports", ports)
	}
}
