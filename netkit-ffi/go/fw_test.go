package netkit_test

import (
	"errors"
	"net"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"netkit.dev/netkit"
)

// natLab is a host H with a bridge br0 (10.88.0.1/24), a container C on it (eth0
// 10.88.0.2/24, default route via H) and an outside O on a veth (H ext0 192.0.2.1/24, O eth0
// 192.0.2.2/24), forwarding on in H, made with the package. O has no route to 10.88.0.0/24:
// only a port mapping (DNAT) lets O reach C, only masquerade lets C reach O.
type natLab struct {
	host, c, o *testNs
}

func newNatLab(t *testing.T) *natLab {
	t.Helper()
	l := &natLab{host: newTestNs(t, "fh"), c: newTestNs(t, "fc"), o: newTestNs(t, "fo")}
	h := l.host.h
	br := &netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "br0", Flags: up}}
	must(t, "br0", h.LinkAdd(br))
	must(t, "br0 address", h.AddrAdd(br, addr(t, "10.88.0.1/24")))
	for _, end := range []struct {
		name, peerAddr string
		ns             *testNs
		master         int
	}{
		{"vc0", "10.88.0.2/24", l.c, br.Index},
		{"ext0", "192.0.2.2/24", l.o, 0},
	} {
		veth := &netkit.Veth{LinkAttrs: netkit.LinkAttrs{Name: end.name, Flags: up, MasterIndex: end.master},
			PeerName: "eth0", PeerNamespace: end.ns.ns}
		must(t, "veth "+end.name, h.LinkAdd(veth))
		eth0, err := end.ns.h.LinkByName("eth0")
		must(t, "eth0 in "+end.ns.name, err)
		must(t, "eth0 up", end.ns.h.LinkSetUp(eth0))
		must(t, "eth0 address", end.ns.h.AddrAdd(eth0, addr(t, end.peerAddr)))
	}
	ext0, err := h.LinkByName("ext0")
	must(t, "ext0", err)
	must(t, "ext0 address", h.AddrAdd(ext0, addr(t, "192.0.2.1/24")))
	must(t, "C's default route", l.c.h.RouteAdd(&netkit.Route{Gw: net.ParseIP("10.88.0.1")}))
	must(t, "forwarding in H", l.host.ns.SysctlSet("net.ipv4.ip_forward", "1"))
	return l
}

// tcp connects from namespace from to addr and returns the server's answer "NAME LOCAL PEER"
// split in fields (an error when the connection fails).
func tcp(from *testNs, addr string) ([]string, error) {
	out, err := helper(from.name, "dial", addr, "").Output()
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// TestFirewall sets up a port mapping and a masquerade with the firewall API directly (not
// through Attach) and carries real TCP through them between namespaces the test makes: O
// reaches C through H's port 8080 (C sees O's own address), C reaches O (O sees H's address).
// Then ownership: a second owner cannot take the port, GC keeps only the owners named, a
// service's node port reaches its endpoint,
// Teardown removes the rest and the port is closed again; bad input. Once per driver.
func TestFirewall(t *testing.T) {
	for _, driver := range []netkit.FirewallDriver{netkit.FIREWALL_NFTABLES, netkit.FIREWALL_IPTABLES} {
		driver := driver
		t.Run(driver.String(), func(t *testing.T) {
			needRoot(t)
			if driver == netkit.FIREWALL_IPTABLES {
				if _, err := exec.LookPath("iptables-restore"); err != nil {
					t.Skipf("iptables-restore is not installed: %v", err)
				}
			}
			firewallWithRealTCP(t, driver)
		})
	}
}

func firewallWithRealTCP(t *testing.T, driver netkit.FirewallDriver) {
	l := newNatLab(t)
	startServer(t, l.c.name, "0.0.0.0:80", "C")
	if answer, err := tcp(l.o, "192.0.2.1:8080"); err == nil {
		t.Fatalf("O reached %v through H:8080 before any port mapping", answer)
	}
	fw, err := netkit.OpenFirewall(l.host.ns, driver, t.TempDir())
	if errors.Is(err, netkit.ErrNotSupported) {
		t.Skipf("the %v firewall cannot run here: %v", driver, err)
	}
	must(t, "OpenFirewall", err)
	defer fw.Close()
	got, err := fw.Driver()
	must(t, "Driver", err)
	if got != driver {
		t.Fatalf("Driver() = %v, want %v", got, driver)
	}

	subnet := ipNet(t, "10.88.0.0/24")
	rules := &netkit.FirewallRules{
		PortMappings: []netkit.PortMapping{{Protocol: netkit.IPPROTO_TCP, HostPort: 8080,
			ContainerIP: net.ParseIP("10.88.0.2"), ContainerPort: 80}},
		Masquerades: []netkit.Masquerade{{Source: subnet}},
		Networks:    []netkit.FirewallNetwork{{Interface: "br0", Subnet: subnet}},
	}
	must(t, "Add", fw.Add("c1:eth0", rules))
	must(t, "Add again (idempotent)", fw.Add("c1:eth0", rules))

	answer, err := tcp(l.o, "192.0.2.1:8080")
	must(t, "TCP from O to H:8080 (the port mapping)", err)
	if len(answer) != 3 || answer[0] != "C" || answer[1] != "10.88.0.2:80" || !strings.HasPrefix(answer[2], "192.0.2.2:") {
		t.Fatalf("answer %v: want C, 10.88.0.2:80 (DNAT) and O's own address", answer)
	}
	startServer(t, l.o.name, "0.0.0.0:7777", "O")
	answer, err = tcp(l.c, "192.0.2.2:7777")
	must(t, "TCP from C to O (masquerade)", err)
	if len(answer) != 3 || answer[0] != "O" || !strings.HasPrefix(answer[2], "192.0.2.1:") {
		t.Fatalf("answer %v: want O, seeing H's address 192.0.2.1 (masquerade)", answer)
	}
	owners, err := fw.Owners()
	must(t, "Owners", err)
	if !reflect.DeepEqual(owners, []string{"c1:eth0"}) {
		t.Fatalf("Owners() = %v", owners)
	}

	// Another owner cannot take the host port.
	isKind(t, "another owner's host port", fw.Add("c2:eth0", &netkit.FirewallRules{PortMappings: rules.PortMappings}),
		netkit.ErrExists)
	// A second owner's mapping works, until GC removes it.
	startServer(t, l.c.name, "0.0.0.0:81", "C81")
	must(t, "Add c3", fw.Add("c3:eth0", &netkit.FirewallRules{PortMappings: []netkit.PortMapping{{HostPort: 9090,
		ContainerIP: net.ParseIP("10.88.0.2"), ContainerPort: 81}}}))
	answer, err = tcp(l.o, "192.0.2.1:9090")
	must(t, "TCP from O to H:9090", err)
	if answer[0] != "C81" {
		t.Fatalf("H:9090 answered %v", answer)
	}
	removed, err := fw.GC("c1:eth0")
	must(t, "GC", err)
	if !reflect.DeepEqual(removed, []string{"c3:eth0"}) {
		t.Fatalf("GC removed %v, want [c3:eth0]", removed)
	}
	if answer, err := tcp(l.o, "192.0.2.1:9090"); err == nil {
		t.Fatalf("H:9090 still answers %v after GC", answer)
	}

	// A service: its node port on H reaches the endpoint in C.
	startServer(t, l.c.name, "0.0.0.0:82", "C82")
	svc := netkit.Service{Name: "web", VIP: net.ParseIP("10.96.0.10"), Port: 80, NodePort: 30080,
		Endpoints: []netkit.Endpoint{{IP: net.ParseIP("10.88.0.2"), Port: 82}}}
	must(t, "Add a service", fw.Add("svc", &netkit.FirewallRules{Services: []netkit.Service{svc}}))
	answer, err = tcp(l.o, "192.0.2.1:30080")
	must(t, "TCP from O to the node port", err)
	if answer[0] != "C82" {
		t.Fatalf("the node port answered %v", answer)
	}
	must(t, "Teardown of the service", fw.Teardown("svc"))

	// Teardown: the port is closed again; twice is fine.
	must(t, "Teardown", fw.Teardown("c1:eth0"))
	must(t, "Teardown again", fw.Teardown("c1:eth0"))
	if answer, err := tcp(l.o, "192.0.2.1:8080"); err == nil {
		t.Fatalf("H:8080 still answers %v after Teardown", answer)
	}
	if owners, err := fw.Owners(); err != nil || len(owners) != 0 {
		t.Fatalf("Owners() after Teardown: %v, %v", owners, err)
	}

	// Bad input: nothing is added.
	c := net.ParseIP("10.88.0.2")
	for what, r := range map[string]*netkit.FirewallRules{
		"protocol 99": {PortMappings: []netkit.PortMapping{{Protocol: 99, HostPort: 8080, ContainerIP: c, ContainerPort: 80}}},
		"host port 0": {PortMappings: []netkit.PortMapping{{ContainerIP: c, ContainerPort: 80}}},
		"port 70000":  {PortMappings: []netkit.PortMapping{{HostPort: 70000, ContainerIP: c, ContainerPort: 80}}},
		"source outside its network": {Masquerades: []netkit.Masquerade{{Source: ipNet(t, "10.1.0.0/24"),
			Network: subnet}}},
		"affinity of 1.5 s": {Services: []netkit.Service{{Name: "s", VIP: net.ParseIP("10.96.0.1"), Port: 80,
			Affinity: 1500 * time.Millisecond}}},
	} {
		isKind(t, what, fw.Add("c1:eth0", r), netkit.ErrInvalid)
	}
	isKind(t, "an owner with a space", fw.Add("no spaces", &netkit.FirewallRules{}), netkit.ErrInvalid)
	isKind(t, "nil rules", fw.Add("c1:eth0", nil), netkit.ErrInvalid)
	if owners, _ := fw.Owners(); len(owners) != 0 {
		t.Fatalf("bad input added owners %v", owners)
	}
	_, err = netkit.OpenFirewall(l.host.ns, 7, "")
	isKind(t, "driver 7", err, netkit.ErrInvalid)
	fw.Close()
	_, err = fw.Owners()
	isKind(t, "Owners after Close", err, netkit.ErrInvalid)
}
