package netkit_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"

	"netkit.dev/netkit"
)

// openIPAM opens a pool of the test (closed at its end).
func openIPAM(t *testing.T, conf, network, dir string) *netkit.IPAM {
	t.Helper()
	m, err := netkit.OpenIPAM(conf, network, dir)
	must(t, "OpenIPAM", err)
	t.Cleanup(func() { m.Close() })
	return m
}

func ipStrings(ips []net.IP) []string {
	out := []string{}
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	sort.Strings(out)
	return out
}

// TestIPAM allocates from a dual-stack pool (one address per range set, the gateway, the
// routes, the DNS of resolvConf), looks up, allocates again (held before), asks for a
// specific address (taken: ErrExists; outside: ErrInvalid), releases (idempotent), GCs, and
// checks bad input.
func TestIPAM(t *testing.T) {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	must(t, "resolv.conf", os.WriteFile(resolv, []byte("nameserver 10.0.0.53\nsearch a.test\n"), 0o644))
	conf := fmt.Sprintf(`{"ranges": [[{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}], [{"subnet": "fd77::/64"}]],
		"routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16", "gw": "10.77.0.254"}], "resolvConf": %q}`, resolv)
	m := openIPAM(t, conf, "gonet", dir)
	if fi, err := os.Stat(filepath.Join(dir, "gonet")); err != nil || !fi.IsDir() {
		t.Fatalf("the store is DIR/NETWORK: %v", err)
	}

	got, err := m.Allocate("c1", "eth0")
	must(t, "Allocate", err)
	if len(got.IPs) != 2 || got.HeldBefore {
		t.Fatalf("allocation %+v", got)
	}
	v4, v6 := got.IPs[0], got.IPs[1]
	if ones, _ := v4.Address.Mask.Size(); v4.Set != 0 || ones != 24 || !v4.Gateway.Equal(net.ParseIP("10.77.0.1")) ||
		!(&net.IPNet{IP: net.ParseIP("10.77.0.0"), Mask: net.CIDRMask(24, 32)}).Contains(v4.Address.IP) {
		t.Fatalf("IPv4 %+v", v4)
	}
	if ones, _ := v6.Address.Mask.Size(); v6.Set != 1 || ones != 64 || v6.Address.IP.To4() != nil {
		t.Fatalf("IPv6 %+v", v6)
	}
	if len(got.Routes) != 2 || got.Routes[0].Dst.String() != "0.0.0.0/0" || got.Routes[0].GW != nil ||
		got.Routes[1].Dst.String() != "10.99.0.0/16" || got.Routes[1].GW.String() != "10.77.0.254" {
		t.Fatalf("routes %+v", got.Routes)
	}
	if want := (netkit.DNS{Nameservers: []string{"10.0.0.53"}, Search: []string{"a.test"}}); !reflect.DeepEqual(got.DNS, want) {
		t.Fatalf("DNS %+v, want %+v", got.DNS, want)
	}
	held, err := m.Lookup("c1", "eth0")
	must(t, "Lookup", err)
	if want := ipStrings([]net.IP{v4.Address.IP, v6.Address.IP}); !reflect.DeepEqual(ipStrings(held), want) {
		t.Fatalf("Lookup %v, want %v", held, want)
	}
	again, err := m.Allocate("c1", "eth0")
	must(t, "Allocate again", err)
	if !again.HeldBefore || !again.IPs[0].Address.IP.Equal(v4.Address.IP) {
		t.Fatalf("allocating again: %+v", again)
	}

	// Requested addresses.
	b, err := m.Allocate("c2", "eth0", net.ParseIP("10.77.0.50"))
	must(t, "Allocate 10.77.0.50", err)
	if b.IPs[0].Address.String() != "10.77.0.50/24" {
		t.Fatalf("requested: %+v", b.IPs[0])
	}
	_, err = m.Allocate("c3", "eth0", net.ParseIP("10.77.0.50"))
	isKind(t, "an address held by another owner", err, netkit.ErrExists)
	_, err = m.Allocate("c3", "eth0", net.ParseIP("10.78.0.5"))
	isKind(t, "an address outside the pool", err, netkit.ErrInvalid)
	if l, err := m.Lookup("c3", "eth0"); err != nil || len(l) != 0 {
		t.Fatalf("a refused allocation left %v (%v)", l, err)
	}

	// Release: what the owner held; again: nothing, no error.
	gone, err := m.Release("c1", "eth0")
	must(t, "Release", err)
	if !reflect.DeepEqual(ipStrings(gone), ipStrings(held)) {
		t.Fatalf("Release gave %v, want %v", gone, held)
	}
	if gone, err := m.Release("c1", "eth0"); err != nil || len(gone) != 0 {
		t.Fatalf("Release again: %v, %v", gone, err)
	}

	// GC keeps c2, releases c4; with no owner to keep, c2 goes too.
	_, err = m.Allocate("c4", "eth0")
	must(t, "Allocate c4", err)
	released, err := m.GC(netkit.IPAMOwner{ContainerID: "c2", IfName: "eth0"})
	must(t, "GC", err)
	if len(released) != 2 {
		t.Fatalf("GC released %v, want c4's two addresses", released)
	}
	if l, _ := m.Lookup("c2", "eth0"); len(l) != 2 {
		t.Fatalf("c2 holds %v after GC", l)
	}
	_, err = m.GC()
	must(t, "GC of everything", err)
	if l, _ := m.Lookup("c2", "eth0"); len(l) != 0 {
		t.Fatalf("c2 holds %v after GC of everything", l)
	}

	// Bad input.
	_, err = m.Allocate("bad id", "eth0")
	isKind(t, "an owner that is not valid", err, netkit.ErrInvalid)
	_, err = m.Allocate("c\x005", "eth0")
	isKind(t, "a NUL in the container ID", err, netkit.ErrInvalid)
	_, err = m.Allocate("c5", "eth0", nil)
	isKind(t, "a nil requested address", err, netkit.ErrInvalid)
	for _, bad := range []string{"not json", `{"ranges": [[{"subnet": "10.0.0.0/33"}]]}`, `{"routes": []}`} {
		_, err := netkit.OpenIPAM(bad, "n", dir)
		isKind(t, "OpenIPAM "+bad, err, netkit.ErrInvalid)
	}
	_, err = netkit.OpenIPAM(`{"subnet": "10.77.0.0/24"}`, "", dir)
	isKind(t, "a bare ipam object without a network name", err, netkit.ErrInvalid)
	named, err := netkit.OpenIPAM(`{"name": "fromconf", "type": "netkit-cni", "ipam": {"subnet": "10.77.0.0/24"}}`, "", dir)
	must(t, "OpenIPAM of a network configuration", err)
	named.Close()
	if _, err := os.Stat(filepath.Join(dir, "fromconf")); err != nil {
		t.Fatalf("the store is named after the configuration: %v", err)
	}
	m.Close()
	m.Close()
	_, err = m.Lookup("c2", "eth0")
	isKind(t, "Lookup after Close", err, netkit.ErrInvalid)
}

// poolSize is the number of addresses of ipamRange.
const poolSize = 16

// ipamRange is a pool of exactly poolSize addresses (10.55.0.10 to .25).
const ipamRange = `{"ranges": [[{"subnet": "10.55.0.0/24", "rangeStart": "10.55.0.10", "rangeEnd": "10.55.0.25"}]]}`

// TestIPAMGoroutines runs 8 goroutines allocating and releasing at once, each holding two
// addresses at a time, from one IPAM object and from two IPAM objects opened on the same
// store directory: no address is held by two owners at once, each release returns what was
// allocated, and afterwards every address is free again (the whole pool can be allocated,
// then ErrExhausted). The pool has exactly 16 addresses: a goroutine asks only while it holds
// at most one, so an address is free at every request and ErrExhausted must never come while
// they churn (netkit-core walks the range again when addresses were released during a walk).
func TestIPAMGoroutines(t *testing.T) {
	for _, objects := range []int{1, 2} {
		objects := objects
		t.Run(fmt.Sprintf("%d objects", objects), func(t *testing.T) {
			dir := t.TempDir()
			var pools []*netkit.IPAM
			for i := 0; i < objects; i++ {
				pools = append(pools, openIPAM(t, ipamRange, "busy", dir))
			}
			const goroutines, rounds = 8, 25
			var mu sync.Mutex
			holder := map[string]string{} // address -> owner, while held
			ever := map[string]bool{}
			take := func(owner string, ip net.IP) error {
				mu.Lock()
				defer mu.Unlock()
				if other, ok := holder[ip.String()]; ok {
					return fmt.Errorf("%s handed to %s while %s holds it", ip, owner, other)
				}
				holder[ip.String()] = owner
				ever[ip.String()] = true
				return nil
			}
			give := func(ip net.IP) {
				mu.Lock()
				defer mu.Unlock()
				delete(holder, ip.String())
			}
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := 0; g < goroutines; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					if err := churn(pools[g%objects], g, rounds, take, give); err != nil {
						errs <- fmt.Errorf("goroutine %d: %w", g, err)
					}
				}(g)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if len(holder) != 0 {
				t.Fatalf("still held: %v", holder)
			}
			// Every address came back: the whole pool can be allocated again, then no more.
			var all []net.IP
			for i := 0; i < poolSize; i++ {
				a, err := pools[i%objects].Allocate(fmt.Sprintf("final%d", i), "eth0")
				must(t, "Allocate after the goroutines", err)
				all = append(all, a.IPs[0].Address.IP)
			}
			var want []net.IP
			for i := 10; i < 10+poolSize; i++ {
				want = append(want, net.IPv4(10, 55, 0, byte(i)))
			}
			if !reflect.DeepEqual(ipStrings(all), ipStrings(want)) {
				t.Fatalf("the pool allocated again: %v, want %v", ipStrings(all), ipStrings(want))
			}
			_, err := pools[0].Allocate("one-too-many", "eth0")
			isKind(t, "Allocate from a full pool", err, netkit.ErrExhausted)
			if len(ever) < 2*goroutines {
				t.Fatalf("only %d addresses were ever handed out", len(ever))
			}
		})
	}
}

// churn is one goroutine of TestIPAMGoroutines: rounds of allocating two addresses (two
// owners), then releasing both.
func churn(m *netkit.IPAM, g, rounds int, take func(string, net.IP) error, give func(net.IP)) error {
	for r := 0; r < rounds; r++ {
		owners := []string{fmt.Sprintf("g%d-r%d-a", g, r), fmt.Sprintf("g%d-r%d-b", g, r)}
		var got []net.IP
		for _, o := range owners {
			a, err := m.Allocate(o, "eth0")
			if err != nil {
				return err
			}
			if len(a.IPs) != 1 {
				return fmt.Errorf("%s got %+v", o, a)
			}
			if err := take(o, a.IPs[0].Address.IP); err != nil {
				return err
			}
			got = append(got, a.IPs[0].Address.IP)
		}
		for i, o := range owners {
			// Marked free here first: until Release returns, the store still holds it, so
			// no goroutine can get it in between (the other order would report a false
			// double hand-out).
			give(got[i])
			gone, err := m.Release(o, "eth0")
			if err != nil {
				return err
			}
			if len(gone) != 1 || !gone[0].Equal(got[i]) {
				return fmt.Errorf("releasing %s gave %v, want %v", o, gone, got[i])
			}
		}
	}
	return nil
}
