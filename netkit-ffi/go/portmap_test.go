package netkit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"netkit.dev/netkit"
)

// TestMain lets the test binary serve as a helper process inside a namespace (started with
// `ip netns exec NS TEST-BINARY`): NETKIT_GO_HELPER=serve listens on NETKIT_GO_ADDR and
// answers one TCP connection with "NAME LOCAL PEER"; NETKIT_GO_HELPER=dial connects to
// NETKIT_GO_ADDR and prints the answer. The package itself never enters a namespace.
func TestMain(m *testing.M) {
	switch os.Getenv("NETKIT_GO_HELPER") {
	case "serve":
		os.Exit(serve(os.Getenv("NETKIT_GO_ADDR"), os.Getenv("NETKIT_GO_NAME")))
	case "dial":
		os.Exit(dial(os.Getenv("NETKIT_GO_ADDR")))
	}
	os.Exit(m.Run())
}

func serve(addr, name string) int {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	_ = l.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := l.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	fmt.Fprintf(c, "%s %s %s\n", name, c.LocalAddr(), c.RemoteAddr())
	return 0
}

func dial(addr string) int {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Print(line)
	return 0
}

// helper starts the test binary in helper mode inside the named namespace ns.
func helper(ns, mode, addr, name string) *exec.Cmd {
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NETKIT_GO_HELPER="+mode, "NETKIT_GO_ADDR="+addr, "NETKIT_GO_NAME="+name)
	return cmd
}

// startServer starts a one-connection TCP server in ns and waits until it listens.
func startServer(t *testing.T, ns, addr, name string) {
	t.Helper()
	cmd := helper(ns, "serve", addr, name)
	out, err := cmd.StdoutPipe()
	must(t, "stdout pipe", err)
	cmd.Stderr = os.Stderr
	must(t, "start the server", cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("server said %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case err := <-ready:
		must(t, "server ready", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("the server in %s did not start listening", ns)
	}
}

// TestAttachPortMapping attaches a container with a port mapping (hostPort 8080 to its port
// 80) and reaches it with real TCP from an "outside" namespace through the host namespace's
// address; after Detach the port is the host's own again.
func TestAttachPortMapping(t *testing.T) {
	host, out, c := newTestNs(t, "ph"), newTestNs(t, "po"), newTestNs(t, "pc")
	// The outside: o/eth0 192.0.2.2/24 <-> host/ext0 192.0.2.1/24.
	ext := &netkit.Veth{LinkAttrs: netkit.LinkAttrs{Name: "ext0", Flags: up}, PeerName: "eth0", PeerNamespace: out.ns}
	must(t, "veth to the outside", host.h.LinkAdd(ext))
	must(t, "ext0 address", host.h.AddrAdd(ext, addr(t, "192.0.2.1/24")))
	oeth, err := out.h.LinkByName("eth0")
	must(t, "eth0 in the outside", err)
	must(t, "eth0 up", out.h.LinkSetUp(oeth))
	must(t, "eth0 address", out.h.AddrAdd(oeth, addr(t, "192.0.2.2/24")))

	dir := t.TempDir()
	var conf map[string]interface{}
	must(t, "conf", json.Unmarshal(attachConf(t, "10.207.0.0/24", dir), &conf))
	conf["ipMasq"] = true
	conf["firewallBackend"] = "nftables"
	conf["firewallStateDir"] = filepath.Join(dir, "firewall")
	conf["capabilities"] = map[string]bool{"portMappings": true}
	conf["runtimeConfig"] = map[string]interface{}{
		"portMappings": []map[string]interface{}{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}},
	}
	raw, err := json.Marshal(conf)
	must(t, "conf", err)
	ctx := context.Background()
	onHost := netkit.WithHostNetns(host.ns)
	path := "/run/netns/" + c.name
	t.Cleanup(func() { _ = netkit.Detach(ctx, path, "ctr0", "eth0", raw, onHost) })
	resultJSON, err := netkit.Attach(ctx, path, "ctr0", "eth0", raw, onHost)
	if errors.Is(err, netkit.ErrNotSupported) {
		t.Skipf("the firewall is not available here: %v", err)
	}
	must(t, "Attach with a port mapping", err)
	var r cniResult
	must(t, "result", json.Unmarshal(resultJSON, &r))
	ctrIP := strings.Split(r.IPs[0].Address, "/")[0]

	startServer(t, c.name, "0.0.0.0:80", "C")
	answer, err := helper(out.name, "dial", "192.0.2.1:8080", "").Output()
	must(t, "TCP from the outside to 192.0.2.1:8080", err)
	fields := strings.Fields(string(answer))
	if len(fields) != 3 || fields[0] != "C" || fields[1] != ctrIP+":80" || !strings.HasPrefix(fields[2], "192.0.2.2:") {
		t.Fatalf("answer %q: want C, %s:80 (DNAT) and the outside's own address", answer, ctrIP)
	}

	// After Detach the mapping is gone: port 8080 is the host's own again.
	must(t, "Detach", netkit.Detach(ctx, path, "ctr0", "eth0", raw, onHost))
	startServer(t, host.name, "192.0.2.1:8080", "H")
	answer, err = helper(out.name, "dial", "192.0.2.1:8080", "").Output()
	must(t, "TCP from the outside to the host's own port 8080", err)
	if !strings.HasPrefix(string(answer), "H 192.0.2.1:8080 ") {
		t.Fatalf("after Detach, port 8080 answered %q, want the host itself", answer)
	}
}
