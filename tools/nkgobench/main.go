// nkgobench: the containers benchmark's work (netkit-core/benches/containers) through netkit's
// Go package, call for call as tools/vnbench does it with vishvananda/netlink and
// vishvananda/netns: the same Go program on the other library, so the bench compares the two
// in the same run.
//
//	nkgobench setup    PREFIX N full|links   (run inside the bench's host namespace)
//	nkgobench teardown PREFIX N
//
// For container i (0 ≤ i < N), vnbench's calls in vnbench's order:
//  1. named namespace PREFIX<i> (netkit.NewNamedNetns; the thread never leaves the host
//     namespace, so there is no netns.Set back);
//  2. veth vb<i> up, its peer eth0 born in the container (Veth with PeerNamespace, FlagUp);
//  3. (full) 10.200.x.y+1/30 on vb<i> (LinkByName + AddrAdd);
//  4. a handle in the container (NewHandleAt): lo up, eth0 up (LinkByName + LinkSetUp);
//  5. (full) 10.200.x.y+2/30 on eth0 and the default route via the host end.
//
// Teardown: LinkByName + LinkDel of every vb<i>, then DeleteNamedNetns of every name. It
// prints "ns=<nanoseconds>", the time of the loop alone (not the process start, nor the first
// call into libnetkit, which starts its runtime: the host handle is opened before the clock).
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"netkit.dev/netkit"
)

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "nkgobench: "+format+"\n", a...)
	os.Exit(1)
}

// The /30 of container i in 10.200.0.0/16: .1 host end, .2 eth0.
func addrs(i int) (net.IP, net.IP) {
	base := uint32(10)<<24 | uint32(200)<<16 | uint32(4*i)
	ip := func(v uint32) net.IP { return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)) }
	return ip(base + 1), ip(base + 2)
}

// hostHandle is a handle in the namespace the program was started in (the bench's host).
func hostHandle() *netkit.Handle {
	ns, err := netkit.GetNetnsFromPid(os.Getpid())
	if err != nil {
		fail("host namespace: %v", err)
	}
	defer ns.Close()
	h, err := netkit.NewHandleAt(ns)
	if err != nil {
		fail("handle in the host namespace: %v", err)
	}
	return h
}

func setup(host *netkit.Handle, prefix string, n int, full bool) {
	mask := net.CIDRMask(30, 32)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		ns, err := netkit.NewNamedNetns(name)
		if err != nil {
			fail("netns %s: %v", name, err)
		}
		vb := fmt.Sprintf("vb%d", i)
		veth := &netkit.Veth{
			LinkAttrs:     netkit.LinkAttrs{Name: vb, Flags: net.FlagUp},
			PeerName:      "eth0",
			PeerNamespace: ns,
		}
		if err := host.LinkAdd(veth); err != nil {
			fail("veth %s: %v", vb, err)
		}
		hostIP, ctrIP := addrs(i)
		if full {
			l, err := host.LinkByName(vb)
			if err != nil {
				fail("%s: %v", vb, err)
			}
			if err := host.AddrAdd(l, &netkit.Addr{IPNet: &net.IPNet{IP: hostIP, Mask: mask}}); err != nil {
				fail("address on %s: %v", vb, err)
			}
		}
		h, err := netkit.NewHandleAt(ns)
		if err != nil {
			fail("handle in %s: %v", name, err)
		}
		for _, dev := range []string{"lo", "eth0"} {
			l, err := h.LinkByName(dev)
			if err != nil {
				fail("%s in %s: %v", dev, name, err)
			}
			if err := h.LinkSetUp(l); err != nil {
				fail("%s up in %s: %v", dev, name, err)
			}
			if full && dev == "eth0" {
				if err := h.AddrAdd(l, &netkit.Addr{IPNet: &net.IPNet{IP: ctrIP, Mask: mask}}); err != nil {
					fail("address in %s: %v", name, err)
				}
				if err := h.RouteAdd(&netkit.Route{LinkIndex: l.Attrs().Index, Gw: hostIP}); err != nil {
					fail("default route in %s: %v", name, err)
				}
			}
		}
		h.Close()
		ns.Close()
	}
}

func teardown(host *netkit.Handle, prefix string, n int) {
	for i := 0; i < n; i++ {
		vb := fmt.Sprintf("vb%d", i)
		l, err := host.LinkByName(vb)
		if err != nil {
			fail("%s: %v", vb, err)
		}
		if err := host.LinkDel(l); err != nil {
			fail("delete %s: %v", vb, err)
		}
	}
	for i := 0; i < n; i++ {
		if err := netkit.DeleteNamedNetns(fmt.Sprintf("%s%d", prefix, i)); err != nil {
			fail("delete netns %s%d: %v", prefix, i, err)
		}
	}
}

func main() {
	if len(os.Args) < 4 {
		fail("usage: nkgobench setup PREFIX N full|links | nkgobench teardown PREFIX N")
	}
	n, err := strconv.Atoi(os.Args[3])
	if err != nil || n < 1 {
		fail("N %q: %v", os.Args[3], err)
	}
	// The library's first call starts its runtime and threads: not part of the work (the
	// bench's Rust methods run warm), so the handle is opened before the clock starts.
	host := hostHandle()
	defer host.Close()
	start := time.Now()
	switch os.Args[1] {
	case "setup":
		if len(os.Args) != 5 || (os.Args[4] != "full" && os.Args[4] != "links") {
			fail("setup needs full or links")
		}
		setup(host, os.Args[2], n, os.Args[4] == "full")
	case "teardown":
		teardown(host, os.Args[2], n)
	default:
		fail("unknown phase %q", os.Args[1])
	}
	fmt.Printf("ns=%d\n", time.Since(start).Nanoseconds())
}
