package netkit_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"netkit.dev/netkit"
)

var counter int64

// uniqueName is a namespace name no other test (or test process) uses: nkgo-TAG-PID-N.
func uniqueName(tag string) string {
	return fmt.Sprintf("nkgo-%s-%d-%d", tag, os.Getpid(), atomic.AddInt64(&counter, 1))
}

// needRoot skips a test that needs root (namespaces, links).
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it creates network namespaces")
	}
}

// testNs is a named namespace of the test, with a handle in it and lo up; deleted at the end
// of the test, even when it fails.
type testNs struct {
	name string
	ns   *netkit.Netns
	h    *netkit.Handle
}

func newTestNs(t *testing.T, tag string) *testNs {
	t.Helper()
	needRoot(t)
	name := uniqueName(tag)
	ns, err := netkit.NewNamedNetns(name)
	if err != nil {
		t.Fatalf("NewNamedNetns(%s): %v", name, err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netkit.DeleteNamedNetns(name); err != nil {
			t.Errorf("DeleteNamedNetns(%s): %v", name, err)
		}
	})
	h, err := netkit.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("NewHandleAt(%s): %v", name, err)
	}
	t.Cleanup(h.Close)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo in %s: %v", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up in %s: %v", name, err)
	}
	return &testNs{name: name, ns: ns, h: h}
}

// must fails the test on err.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// addr parses "10.0.0.1/24" (host bits kept).
func addr(t *testing.T, s string) *netkit.Addr {
	t.Helper()
	a, err := netkit.ParseAddr(s)
	must(t, "ParseAddr "+s, err)
	return a
}

// ping sends pings from the named namespace ns to dst until one is answered (at most 8
// tries of 1 s: the first packets may go to neighbour resolution).
func ping(ns string, dst string) bool {
	for i := 0; i < 8; i++ {
		cmd := exec.Command("ip", "netns", "exec", ns, "ping", "-c1", "-W1", "-q", dst)
		if cmd.Run() == nil {
			return true
		}
	}
	return false
}

// ip runs `ip -n NS ARGS`; the test fails when it fails.
func ip(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %v: %v: %s", ns, args, err, out)
	}
	return string(out)
}

// hasAddr reports whether list holds the address s ("10.0.0.1/24").
func hasAddr(list []netkit.Addr, s string) bool {
	for _, a := range list {
		if a.IPNet.String() == s {
			return true
		}
	}
	return false
}

// up is LinkAttrs.Flags for a link to bring up.
const up = net.FlagUp

// ipJSON runs `ip -n NS -j ARGS` and decodes the list it prints (nil when it prints nothing);
// the test fails when ip fails.
func ipJSON(t *testing.T, ns string, args ...string) []map[string]interface{} {
	t.Helper()
	return decodeList(t, "ip -j "+strings.Join(args, " "), ip(t, ns, append([]string{"-j"}, args...)...))
}

// bridgeJSON runs `bridge -n NS -j ARGS` and decodes the list it prints.
func bridgeJSON(t *testing.T, ns string, args ...string) []map[string]interface{} {
	t.Helper()
	out, err := exec.Command("bridge", append([]string{"-n", ns, "-j"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("bridge -n %s -j %v: %v: %s", ns, args, err, out)
	}
	return decodeList(t, "bridge -j "+strings.Join(args, " "), string(out))
}

// decodeList decodes a JSON list of objects printed by what.
func decodeList(t *testing.T, what, out string) []map[string]interface{} {
	t.Helper()
	if strings.TrimSpace(out) == "" {
		return nil
	}
	var list []map[string]interface{}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("%s printed %q: %v", what, out, err)
	}
	return list
}

// asJSON is v as encoding/json decodes it into interface{} (numbers as float64), for
// comparisons with what ip -j printed.
func asJSON(t *testing.T, v interface{}) interface{} {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, "json.Marshal", err)
	var out interface{}
	must(t, "json.Unmarshal", json.Unmarshal(b, &out))
	return out
}

// isKind fails the test unless err is an *Error matching target (ErrNotFound, …).
func isKind(t *testing.T, what string, err error, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}
