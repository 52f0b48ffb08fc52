// Command veth_pair joins two network namespaces with a veth pair and pings across, over
// IPv4 and IPv6: the Go version of examples/veth_pair.rs, on the netkit Go package.
//
//	a/eth0 10.0.0.1/24 fd00::1/64  <-- veth -->  b/eth0 10.0.0.2/24 fd00::2/64
//
// Run as root (from examples/go, after `cargo build --release -p netkit-ffi`):
//
//	go run ./veth_pair [PREFIX]
//
// PREFIX names the namespaces PREFIX-a and PREFIX-b (default nkgo-PID); both are deleted on
// exit. Exit status 0 when every step worked.
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"

	"netkit.dev/netkit"
)

func main() {
	prefix := fmt.Sprintf("nkgo-%d", os.Getpid())
	if len(os.Args) > 1 {
		prefix = os.Args[1]
	}
	if err := run(prefix); err != nil {
		fmt.Fprintln(os.Stderr, "veth_pair:", err)
		os.Exit(1)
	}
	fmt.Println("veth_pair: ok")
}

// side is one namespace of the pair and its handle.
type side struct {
	name string
	ns   *netkit.Netns
	h    *netkit.Handle
}

// open creates the named namespace and a handle in it; cleanup deletes it.
func open(name string, cleanup *[]func()) (*side, error) {
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
	return &side{name: name, ns: ns, h: h}, nil
}

func run(prefix string) error {
	var cleanup []func()
	defer func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}()
	a, err := open(prefix+"-a", &cleanup)
	if err != nil {
		return err
	}
	b, err := open(prefix+"-b", &cleanup)
	if err != nil {
		return err
	}
	// a/eth0 with its peer b/eth0 created directly in b.
	veth := &netkit.Veth{
		LinkAttrs:     netkit.LinkAttrs{Name: "eth0", MTU: 1500, Flags: net.FlagUp},
		PeerName:      "eth0",
		PeerNamespace: b.ns,
	}
	if err := a.h.LinkAdd(veth); err != nil {
		return err
	}
	for _, s := range []struct {
		side     *side
		ip4, ip6 string
	}{{a, "10.0.0.1/24", "fd00::1/64"}, {b, "10.0.0.2/24", "fd00::2/64"}} {
		h := s.side.h
		for _, name := range []string{"lo", "eth0"} {
			link, err := h.LinkByName(name)
			if err != nil {
				return err
			}
			if err := h.LinkSetUp(link); err != nil {
				return err
			}
		}
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		v4, err := netkit.ParseAddr(s.ip4)
		if err != nil {
			return err
		}
		if err := h.AddrAdd(eth0, v4); err != nil {
			return err
		}
		v6, err := netkit.ParseAddr(s.ip6)
		if err != nil {
			return err
		}
		// nodad: the IPv6 address is usable at once instead of after 1-2 s of DAD.
		v6.Flags = netkit.IFA_F_NODAD
		if err := h.AddrAdd(eth0, v6); err != nil {
			return err
		}
	}
	fmt.Printf("namespaces %s and %s joined by a veth pair (eth0 index %d)\n", a.name, b.name, veth.Index)
	failed := false
	for _, dst := range []string{"10.0.0.2", "fd00::2"} {
		ok := ping(a.name, dst)
		failed = failed || !ok
		fmt.Printf("ping %s from a: %s\n", dst, verdict(ok))
	}
	links, err := a.h.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		at := l.Attrs()
		fmt.Printf("a: link %d %s type %s mtu %d %s\n", at.Index, at.Name, l.Type(), at.MTU, at.OperState)
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
