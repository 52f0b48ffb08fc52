// vnbench: the containers benchmark's work done the way Go container runtimes do it, with
// vishvananda/netlink and vishvananda/netns (Debian's golang-github-vishvananda-*-dev), so
// netkit can be compared with the library those runtimes embed, in the same run.
//
//	vnbench setup    PREFIX N full|links   (run inside the bench's host namespace)
//	vnbench teardown PREFIX N
//
// For container i (0 ≤ i < N), exactly netkit-core/benches/containers.rs's work, in its order:
//  1. named namespace PREFIX<i> (netns.NewNamed), back to the host namespace;
//  2. veth vb<i> up, its peer eth0 born in the container (Veth with PeerNamespace, FlagUp);
//  3. (full) 10.200.x.y+1/30 on vb<i> (LinkByName + AddrAdd);
//  4. a handle in the container (NewHandleAt): lo up, eth0 up (LinkByName + LinkSetUp);
//  5. (full) 10.200.x.y+2/30 on eth0 and the default route via the host end.
//
// Teardown: LinkDel of every vb<i> (the pair goes with it), then netns.DeleteNamed of every
// name. It prints one line, "ns=<nanoseconds>", the time of the loop alone (not the process
// start), which the bench reports like its other methods.
package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "vnbench: "+format+"\n", a...)
	os.Exit(1)
}

// The /30 of container i in 10.200.0.0/16: .1 host end, .2 eth0.
func addrs(i int) (net.IP, net.IP) {
	base := uint32(10)<<24 | uint32(200)<<16 | uint32(4*i)
	ip := func(v uint32) net.IP { return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)) }
	return ip(base + 1), ip(base + 2)
}

func setup(prefix string, n int, full bool) {
	host, err := netns.Get()
	if err != nil {
		fail("host namespace: %v", err)
	}
	mask := net.CIDRMask(30, 32)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		ns, err := netns.NewNamed(name)
		if err != nil {
			fail("netns %s: %v", name, err)
		}
		if err := netns.Set(host); err != nil {
			fail("back to the host namespace: %v", err)
		}
		vb := fmt.Sprintf("vb%d", i)
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: vb, Flags: net.FlagUp},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(int(ns)),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			fail("veth %s: %v", vb, err)
		}
		hostIP, ctrIP := addrs(i)
		if full {
			l, err := netlink.LinkByName(vb)
			if err != nil {
				fail("%s: %v", vb, err)
			}
			if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: hostIP, Mask: mask}}); err != nil {
				fail("address on %s: %v", vb, err)
			}
		}
		h, err := netlink.NewHandleAt(ns)
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
				if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ctrIP, Mask: mask}}); err != nil {
					fail("address in %s: %v", name, err)
				}
				if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: hostIP}); err != nil {
					fail("default route in %s: %v", name, err)
				}
			}
		}
		h.Delete()
		ns.Close()
	}
}

func teardown(prefix string, n int) {
	for i := 0; i < n; i++ {
		vb := fmt.Sprintf("vb%d", i)
		l, err := netlink.LinkByName(vb)
		if err != nil {
			fail("%s: %v", vb, err)
		}
		if err := netlink.LinkDel(l); err != nil {
			fail("delete %s: %v", vb, err)
		}
	}
	for i := 0; i < n; i++ {
		if err := netns.DeleteNamed(fmt.Sprintf("%s%d", prefix, i)); err != nil {
			fail("delete netns %s%d: %v", prefix, i, err)
		}
	}
}

func main() {
	// Namespaces are per thread: the work stays on this one, as runtimes do it.
	runtime.LockOSThread()
	if len(os.Args) < 4 {
		fail("usage: vnbench setup PREFIX N full|links | vnbench teardown PREFIX N")
	}
	n, err := strconv.Atoi(os.Args[3])
	if err != nil || n < 1 {
		fail("N %q: %v", os.Args[3], err)
	}
	start := time.Now()
	switch os.Args[1] {
	case "setup":
		if len(os.Args) != 5 || (os.Args[4] != "full" && os.Args[4] != "links") {
			fail("setup needs full or links")
		}
		setup(os.Args[2], n, os.Args[4] == "full")
	case "teardown":
		teardown(os.Args[2], n)
	default:
		fail("unknown phase %q", os.Args[1])
	}
	fmt.Printf("ns=%d\n", time.Since(start).Nanoseconds())
}
