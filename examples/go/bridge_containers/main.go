// Command bridge_containers puts three "containers" on a bridge inside a "host" namespace
// and pings between them: the Go version of examples/bridge_containers.rs, on the netkit Go
// package.
//
//	host: br0 10.10.0.1/24, ports veth0..veth2
//	c0..c2: eth0 10.10.0.(i+2)/24, default route via 10.10.0.1
//
// Run as root (from examples/go, after `cargo build --release -p netkit-ffi`):
//
//	go run ./bridge_containers [PREFIX]
//
// PREFIX names the namespaces PREFIX-host, PREFIX-c0 … (default nkgo-PID); all are deleted
// on exit. Exit status 0 when every ping worked.
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"

	"netkit.dev/netkit"
)

const containers = 3

func main() {
	prefix := fmt.Sprintf("nkgo-%d", os.Getpid())
	if len(os.Args) > 1 {
		prefix = os.Args[1]
	}
	if err := run(prefix); err != nil {
		fmt.Fprintln(os.Stderr, "bridge_containers:", err)
		os.Exit(1)
	}
	fmt.Println("bridge_containers: ok")
}

// node is a namespace and a handle in it.
type node struct {
	name string
	ns   *netkit.Netns
	h    *netkit.Handle
}

// newNode creates the named namespace with lo up; cleanup deletes it.
func newNode(name string, cleanup *[]func()) (*node, error) {
	ns, err := netkit.NewNamedNetns(name)
	if err != nil {
		return nil, err
	}
	*cleanup = append(*cleanup, func() {
		ns.Close()
		netkit.DeleteNamedNetns(name)
	})
	h, err := netkit.NewHandleAt(ns)
	if err != nil {
		return nil, err
	}
	*cleanup = append(*cleanup, h.Close)
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, err
	}
	return &node{name: name, ns: ns, h: h}, h.LinkSetUp(lo)
}

func containerIP(i int) string { return fmt.Sprintf("10.10.0.%d", i+2) }

func run(prefix string) error {
	var cleanup []func()
	defer func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}()
	host, err := newNode(prefix+"-host", &cleanup)
	if err != nil {
		return err
	}
	br := &netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "br0", Flags: net.FlagUp}}
	if err := host.h.LinkAdd(br); err != nil {
		return err
	}
	gw, err := netkit.ParseAddr("10.10.0.1/24")
	if err != nil {
		return err
	}
	if err := host.h.AddrAdd(br, gw); err != nil {
		return err
	}
	var ctrs []*node
	for i := 0; i < containers; i++ {
		c, err := newNode(fmt.Sprintf("%s-c%d", prefix, i), &cleanup)
		if err != nil {
			return err
		}
		ctrs = append(ctrs, c)
		// The host end is a port of br0 and up from the start; eth0 is made in the container.
		hostEnd := &netkit.Veth{
			LinkAttrs:     netkit.LinkAttrs{Name: fmt.Sprintf("veth%d", i), MasterIndex: br.Index, Flags: net.FlagUp},
			PeerName:      "eth0",
			PeerNamespace: c.ns,
		}
		if err := host.h.LinkAdd(hostEnd); err != nil {
			return err
		}
		eth0, err := c.h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := c.h.LinkSetUp(eth0); err != nil {
			return err
		}
		a, err := netkit.ParseAddr(containerIP(i) + "/24")
		if err != nil {
			return err
		}
		if err := c.h.AddrAdd(eth0, a); err != nil {
			return err
		}
		if err := c.h.RouteAdd(&netkit.Route{Gw: net.ParseIP("10.10.0.1")}); err != nil {
			return err
		}
	}
	fmt.Printf("host %s with br0 (10.10.0.1) and %d containers\n", host.name, containers)
	failed := false
	for i, c := range ctrs {
		next := containerIP((i + 1) % containers)
		toGw, toNext := ping(c.name, "10.10.0.1"), ping(c.name, next)
		failed = failed || !toGw || !toNext
		fmt.Printf("c%d: ping bridge %s, ping %s %s\n", i, verdict(toGw), next, verdict(toNext))
	}
	if failed {
		return fmt.Errorf("a ping failed")
	}
	return nil
}

// ping pings dst from inside the named namespace ns (the system's ping, a few tries).
func ping(ns, dst string) bool {
	for i := 0; i < 3; i++ {
		if exec.Command("ip", "netns", "exec", ns, "ping", "-c1", "-W1", "-q", dst).Run() == nil {
			return true
		}
	}
	return false
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAILED"
}
