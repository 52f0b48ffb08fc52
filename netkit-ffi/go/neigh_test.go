package netkit_test

import (
	"encoding/json"
	"net"
	"reflect"
	"sort"
	"testing"

	"netkit.dev/netkit"
)

var (
	mac1 = net.HardwareAddr{2, 0, 0, 0, 0x60, 2}
	mac2 = net.HardwareAddr{2, 0, 0, 0, 0x60, 0x22}
	zero = net.HardwareAddr{0, 0, 0, 0, 0, 0}
)

// neighLab is a namespace with a veth pair v0 (10.1.0.1/24) / v1, both up.
func neighLab(t *testing.T, tag string) (*testNs, netkit.Link, netkit.Link) {
	t.Helper()
	a := newTestNs(t, tag)
	v0 := &netkit.Veth{LinkAttrs: netkit.LinkAttrs{Name: "v0", Flags: up}, PeerName: "v1"}
	must(t, "veth", a.h.LinkAdd(v0))
	v1, err := a.h.LinkByName("v1")
	must(t, "v1", err)
	must(t, "v1 up", a.h.LinkSetUp(v1))
	must(t, "v0 address", a.h.AddrAdd(v0, addr(t, "10.1.0.1/24")))
	return a, v0, v1
}

// neighAsIP renders a neighbour as `ip -j neigh show dev DEV` prints it.
func neighAsIP(n netkit.Neigh) map[string]interface{} {
	m := map[string]interface{}{"dst": n.IP.String()}
	if n.Flags&netkit.NTF_PROXY != 0 {
		m["proxy"] = nil
		return m
	}
	if n.HardwareAddr != nil {
		m["lladdr"] = n.HardwareAddr.String()
	}
	if n.Flags&netkit.NTF_ROUTER != 0 {
		m["router"] = nil
	}
	var states []string
	for _, s := range []struct {
		bit  int
		name string
	}{
		{netkit.NUD_INCOMPLETE, "INCOMPLETE"}, {netkit.NUD_REACHABLE, "REACHABLE"}, {netkit.NUD_STALE, "STALE"},
		{netkit.NUD_DELAY, "DELAY"}, {netkit.NUD_PROBE, "PROBE"}, {netkit.NUD_FAILED, "FAILED"},
		{netkit.NUD_NOARP, "NOARP"}, {netkit.NUD_PERMANENT, "PERMANENT"},
	} {
		if n.State&s.bit != 0 {
			states = append(states, s.name)
		}
	}
	m["state"] = states
	return m
}

// sameEntries fails unless ours (rendered) and the kernel's (ip -j / bridge -j) entries are
// the same, in any order (compared as JSON text: keys sorted, 4790 and 4790.0 alike).
func sameEntries(t *testing.T, what string, ours []map[string]interface{}, kernel []map[string]interface{}) {
	t.Helper()
	canon := func(list []map[string]interface{}) []string {
		out := []string{}
		for _, m := range list {
			b, err := json.Marshal(m)
			must(t, "json", err)
			out = append(out, string(b))
		}
		sort.Strings(out)
		return out
	}
	if got, want := canon(ours), canon(kernel); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
}

// agreeNeigh fails unless NeighList(v0) and `ip -j neigh show dev v0` agree on the entries
// for dsts; it returns NeighList's entries.
func agreeNeigh(t *testing.T, a *testNs, dev netkit.Link, dsts ...string) []netkit.Neigh {
	t.Helper()
	list, err := a.h.NeighList(dev.Attrs().Index, netkit.FAMILY_ALL)
	must(t, "NeighList", err)
	wanted := map[string]bool{}
	for _, d := range dsts {
		wanted[d] = true
	}
	var ours, kernel []map[string]interface{}
	for _, n := range list {
		if n.LinkIndex != dev.Attrs().Index || n.Flags&netkit.NTF_PROXY != 0 {
			t.Fatalf("NeighList(%s) gave %+v", dev.Attrs().Name, n)
		}
		if wanted[n.IP.String()] {
			ours = append(ours, neighAsIP(n))
		}
	}
	for _, m := range ipJSON(t, a.name, "neigh", "show", "dev", dev.Attrs().Name) {
		if wanted[m["dst"].(string)] {
			kernel = append(kernel, m)
		}
	}
	sameEntries(t, "NeighList against ip -j neigh show", ours, kernel)
	return list
}

// TestNeighbours adds an IPv4 entry, an IPv6 router entry and a proxy entry; the lists agree
// with `ip -j neigh show`; NeighSet replaces; NeighDel is idempotent; errors.
func TestNeighbours(t *testing.T) {
	a, v0, _ := neighLab(t, "ne")
	idx := v0.Attrs().Index
	n4 := &netkit.Neigh{LinkIndex: idx, IP: net.ParseIP("10.1.0.2"), HardwareAddr: mac1}
	must(t, "NeighAdd", a.h.NeighAdd(n4))
	isKind(t, "NeighAdd again", a.h.NeighAdd(n4), netkit.ErrExists)
	r6 := &netkit.Neigh{LinkIndex: idx, Family: netkit.FAMILY_V6, IP: net.ParseIP("fd01::2"), HardwareAddr: mac2,
		Flags: netkit.NTF_ROUTER, State: netkit.NUD_PERMANENT}
	must(t, "NeighAdd IPv6 router", a.h.NeighAdd(r6))
	px := &netkit.Neigh{LinkIndex: idx, IP: net.ParseIP("10.1.0.9"), Flags: netkit.NTF_PROXY}
	must(t, "NeighAdd proxy", a.h.NeighAdd(px))

	list := agreeNeigh(t, a, v0, "10.1.0.2", "fd01::2")
	found := map[string]netkit.Neigh{}
	for _, n := range list {
		found[n.IP.String()] = n
	}
	if n := found["10.1.0.2"]; n.State != netkit.NUD_PERMANENT || n.Family != netkit.FAMILY_V4 ||
		n.HardwareAddr.String() != mac1.String() {
		t.Fatalf("listed IPv4 entry %+v", n)
	}
	if n := found["fd01::2"]; n.Flags&netkit.NTF_ROUTER == 0 || n.Family != netkit.FAMILY_V6 {
		t.Fatalf("listed IPv6 entry %+v", n)
	}
	if _, ok := found["10.1.0.9"]; ok {
		t.Fatal("NeighList lists the proxy entry")
	}
	proxies, err := a.h.NeighProxyList(idx, netkit.FAMILY_V4)
	must(t, "NeighProxyList", err)
	var ours []map[string]interface{}
	for _, p := range proxies {
		m := neighAsIP(p)
		m["dev"] = "v0"
		ours = append(ours, m)
	}
	sameEntries(t, "NeighProxyList against ip -j neigh show proxy", ours, ipJSON(t, a.name, "neigh", "show", "proxy"))
	v6, err := a.h.NeighList(0, netkit.FAMILY_V6)
	must(t, "NeighList(0, FAMILY_V6)", err)
	for _, n := range v6 {
		if n.Family != netkit.FAMILY_V6 {
			t.Fatalf("an IPv4 entry in the IPv6 list: %+v", n)
		}
	}

	// Replace: another MAC, state reachable.
	n4.HardwareAddr, n4.State = mac2, netkit.NUD_REACHABLE
	must(t, "NeighSet", a.h.NeighSet(n4))
	for _, n := range agreeNeigh(t, a, v0, "10.1.0.2") {
		if n.IP.String() == "10.1.0.2" && n.HardwareAddr.String() != mac2.String() {
			t.Fatalf("after NeighSet: %+v", n)
		}
	}

	// Delete twice (idempotent); the proxy entry; on a device that does not exist.
	must(t, "NeighDel", a.h.NeighDel(n4))
	must(t, "NeighDel again", a.h.NeighDel(n4))
	must(t, "NeighDel proxy", a.h.NeighDel(px))
	must(t, "NeighDel on a missing device", a.h.NeighDel(&netkit.Neigh{LinkIndex: 9999, IP: n4.IP}))
	must(t, "NeighDel of a listed entry", a.h.NeighDel(&[]netkit.Neigh{found["fd01::2"]}[0]))
	for _, n := range agreeNeigh(t, a, v0, "10.1.0.2", "fd01::2") {
		if s := n.IP.String(); s == "10.1.0.2" || s == "fd01::2" {
			t.Fatalf("entry left: %+v", n)
		}
	}
	if p := ipJSON(t, a.name, "neigh", "show", "proxy"); len(p) != 0 {
		t.Fatalf("proxy entries left: %v", p)
	}

	// Errors.
	isKind(t, "no MAC", a.h.NeighAdd(&netkit.Neigh{LinkIndex: idx, IP: net.ParseIP("10.1.0.3")}), netkit.ErrInvalid)
	isKind(t, "no address", a.h.NeighAdd(&netkit.Neigh{LinkIndex: idx, HardwareAddr: mac1}), netkit.ErrInvalid)
	isKind(t, "no device", a.h.NeighAdd(&netkit.Neigh{IP: net.ParseIP("10.1.0.3"), HardwareAddr: mac1}), netkit.ErrInvalid)
	isKind(t, "family of another address",
		a.h.NeighAdd(&netkit.Neigh{LinkIndex: idx, Family: netkit.FAMILY_V6, IP: net.ParseIP("10.1.0.3"), HardwareAddr: mac1}),
		netkit.ErrInvalid)
	isKind(t, "missing device", a.h.NeighAdd(&netkit.Neigh{LinkIndex: 9999, IP: net.ParseIP("10.1.0.3"), HardwareAddr: mac1}),
		netkit.ErrNotFound)
	isKind(t, "NeighAppend of a neighbour", a.h.NeighAppend(n4), netkit.ErrInvalid)
	isKind(t, "NTF_SELF on a neighbour",
		a.h.NeighAdd(&netkit.Neigh{LinkIndex: idx, IP: net.ParseIP("10.1.0.3"), HardwareAddr: mac1, Flags: netkit.NTF_SELF}),
		netkit.ErrInvalid)
	_, err = a.h.NeighList(9999, netkit.FAMILY_ALL)
	isKind(t, "NeighList of a missing device", err, netkit.ErrNotFound)
	_, err = a.h.NeighList(0, 3)
	isKind(t, "NeighList(0, 3)", err, netkit.ErrInvalid)
}

// fdbAsBridge renders an FDB entry as `bridge -j fdb show dev DEV` prints it (master is the
// name of the bridge).
func fdbAsBridge(n netkit.Neigh, master string) map[string]interface{} {
	m := map[string]interface{}{"mac": n.HardwareAddr.String()}
	if n.IP != nil {
		m["dst"] = n.IP.String()
	}
	if n.Port != 0 {
		m["port"] = n.Port
	}
	if n.VNI != 0 {
		m["vni"] = n.VNI
	}
	flags := []string{}
	if n.Flags&netkit.NTF_SELF != 0 {
		flags = append(flags, "self")
	}
	m["flags"] = flags
	if master != "" {
		m["master"] = master
	}
	switch {
	case n.State&netkit.NUD_PERMANENT != 0:
		m["state"] = "permanent"
	case n.State&netkit.NUD_NOARP != 0:
		m["state"] = "static"
	}
	return m
}

// agreeFdb fails unless NeighList(dev, FAMILY_BRIDGE) and `bridge -j fdb show dev DEV`
// list the same entries; it returns NeighList's.
func agreeFdb(t *testing.T, a *testNs, dev netkit.Link) []netkit.Neigh {
	t.Helper()
	list, err := a.h.NeighList(dev.Attrs().Index, netkit.FAMILY_BRIDGE)
	must(t, "NeighList FAMILY_BRIDGE", err)
	var ours []map[string]interface{}
	for _, n := range list {
		if n.Family != netkit.FAMILY_BRIDGE || n.LinkIndex != dev.Attrs().Index {
			t.Fatalf("NeighList(%s, FAMILY_BRIDGE) gave %+v", dev.Attrs().Name, n)
		}
		master := ""
		if n.MasterIndex != 0 {
			br, err := a.h.LinkByIndex(n.MasterIndex)
			must(t, "master", err)
			master = br.Attrs().Name
			if n.Flags&netkit.NTF_MASTER == 0 {
				t.Fatalf("an entry of a bridge's table without NTF_MASTER: %+v", n)
			}
		}
		ours = append(ours, fdbAsBridge(n, master))
	}
	sameEntries(t, "FDB of "+dev.Attrs().Name+" against bridge -j fdb show", ours,
		bridgeJSON(t, a.name, "fdb", "show", "dev", dev.Attrs().Name))
	return list
}

// TestFdb makes a VXLAN device's flood list (the all-zeros MAC appended per remote VTEP, as
// Flannel does), a unicast entry with VNI and port, replaces and deletes by destination, and
// a static entry in a bridge's table; the lists agree with `bridge -j fdb show`; errors.
func TestFdb(t *testing.T) {
	a, v0, v1 := neighLab(t, "fd")
	vx := &netkit.Vxlan{LinkAttrs: netkit.LinkAttrs{Name: "vx0"}, VxlanId: 42, Port: 4789,
		SrcAddr: net.ParseIP("10.1.0.1"), VtepDevIndex: v0.Attrs().Index}
	must(t, "vxlan", a.h.LinkAdd(vx))
	for _, remote := range []string{"10.1.0.2", "10.1.0.3"} {
		must(t, "NeighAppend "+remote, a.h.NeighAppend(&netkit.Neigh{LinkIndex: vx.Index, Family: netkit.FAMILY_BRIDGE,
			Flags: netkit.NTF_SELF, State: netkit.NUD_PERMANENT, IP: net.ParseIP(remote), HardwareAddr: zero}))
	}
	one := &netkit.Neigh{LinkIndex: vx.Index, Family: netkit.FAMILY_BRIDGE, Flags: netkit.NTF_SELF,
		IP: net.ParseIP("10.1.0.4"), HardwareAddr: mac1, VNI: 100, Port: 4790}
	must(t, "NeighAdd FDB", a.h.NeighAdd(one))
	isKind(t, "NeighAdd FDB again", a.h.NeighAdd(one), netkit.ErrExists)

	list := agreeFdb(t, a, vx)
	var flood []string
	for _, n := range list {
		if n.HardwareAddr.String() == zero.String() {
			flood = append(flood, n.IP.String())
		}
	}
	if !reflect.DeepEqual(flood, []string{"10.1.0.2", "10.1.0.3"}) {
		t.Fatalf("flood list %v", flood)
	}

	// Replace moves the entry to another VTEP; delete one flood destination (twice).
	one.IP = net.ParseIP("10.1.0.5")
	must(t, "NeighSet FDB", a.h.NeighSet(one))
	gone := &netkit.Neigh{LinkIndex: vx.Index, Family: netkit.FAMILY_BRIDGE, Flags: netkit.NTF_SELF,
		IP: net.ParseIP("10.1.0.2"), HardwareAddr: zero}
	must(t, "NeighDel FDB", a.h.NeighDel(gone))
	must(t, "NeighDel FDB again", a.h.NeighDel(gone))
	var dsts []string
	for _, n := range agreeFdb(t, a, vx) {
		dsts = append(dsts, n.HardwareAddr.String()+" "+n.IP.String())
	}
	sort.Strings(dsts)
	if want := []string{"00:00:00:00:00:00 10.1.0.3", "02:00:00:00:60:02 10.1.0.5"}; !reflect.DeepEqual(dsts, want) {
		t.Fatalf("after replace and delete: %v, want %v", dsts, want)
	}

	// A static entry of a bridge port, in the bridge's table.
	br := &netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "br0"}}
	must(t, "bridge", a.h.LinkAdd(br))
	must(t, "v1 master br0", a.h.LinkSetMaster(v1, br))
	port := &netkit.Neigh{LinkIndex: v1.Attrs().Index, Family: netkit.FAMILY_BRIDGE, Flags: netkit.NTF_MASTER,
		HardwareAddr: mac2}
	must(t, "NeighAdd master", a.h.NeighAdd(port))
	var listed *netkit.Neigh
	for _, n := range agreeFdb(t, a, v1) {
		if n.HardwareAddr.String() == mac2.String() {
			n := n
			listed = &n
		}
	}
	if listed == nil || listed.MasterIndex != br.Index || listed.State&netkit.NUD_PERMANENT != 0 {
		t.Fatalf("the port's entry as listed: %+v", listed)
	}
	must(t, "NeighDel of the listed entry", a.h.NeighDel(listed))
	for _, n := range agreeFdb(t, a, v1) {
		if n.HardwareAddr.String() == mac2.String() {
			t.Fatalf("still there: %+v", n)
		}
	}

	// Errors.
	port.LinkIndex = 9999
	isKind(t, "missing device", a.h.NeighAdd(port), netkit.ErrNotFound)
	must(t, "NeighDel on a missing device", a.h.NeighDel(port))
	port.LinkIndex = 0
	isKind(t, "no device", a.h.NeighAdd(port), netkit.ErrInvalid)
	bad := *one
	bad.State = netkit.NUD_REACHABLE
	isKind(t, "a dynamic FDB entry", a.h.NeighAdd(&bad), netkit.ErrInvalid)
	bad = *one
	bad.HardwareAddr = nil
	isKind(t, "no MAC", a.h.NeighAdd(&bad), netkit.ErrInvalid)
	_, err := a.h.NeighList(9999, netkit.FAMILY_BRIDGE)
	isKind(t, "FDB of a missing device", err, netkit.ErrNotFound)
}
