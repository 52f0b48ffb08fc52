package netkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"netkit.dev/netkit"
)

// cniResult is the part of the CNI result JSON the tests read.
type cniResult struct {
	CNIVersion string `json:"cniVersion"`
	Interfaces []struct {
		Name    string `json:"name"`
		Sandbox string `json:"sandbox"`
	} `json:"interfaces"`
	IPs []struct {
		Address string `json:"address"`
		Gateway string `json:"gateway"`
	} `json:"ips"`
}

// attachConf is a netkit-cni configuration on subnet, with the IPAM store in dir.
func attachConf(t *testing.T, subnet, dir string) []byte {
	t.Helper()
	conf, err := json.Marshal(map[string]interface{}{
		"cniVersion":       "1.1.0",
		"name":             "gonet",
		"type":             "netkit-cni",
		"bridge":           "cni0",
		"isGateway":        true,
		"isDefaultGateway": true,
		"waitLinkFree":     true,
		"ipam": map[string]interface{}{
			"type":    "netkit-ipam",
			"dataDir": filepath.Join(dir, "ipam"),
			"ranges":  [][]map[string]string{{{"subnet": subnet}}},
		},
	})
	must(t, "configuration", err)
	return conf
}

// TestAttachCheckDetach attaches two containers to a bridge network whose host side is a
// namespace of the test (never the test's own), pings between them, checks both (the
// result passed, and inside the configuration as prevResult), finds a removed address with
// Check, and detaches them (twice, and without the container's namespace).
func TestAttachCheckDetach(t *testing.T) {
	host := newTestNs(t, "ah")
	c0, c1 := newTestNs(t, "ac0"), newTestNs(t, "ac1")
	conf := attachConf(t, "10.205.0.0/24", t.TempDir())
	ctx := context.Background()
	onHost := netkit.WithHostNetns(host.ns)
	path := func(c *testNs) string { return "/run/netns/" + c.name }
	t.Cleanup(func() {
		for i, c := range []*testNs{c0, c1} {
			_ = netkit.Detach(ctx, path(c), "ctr"+string(rune('0'+i)), "eth0", conf, onHost)
		}
	})

	raw0, err := netkit.Attach(ctx, path(c0), "ctr0", "eth0", conf, onHost)
	must(t, "Attach ctr0", err)
	raw1, err := netkit.Attach(ctx, path(c1), "ctr1", "eth0", conf, onHost, netkit.WithArg("IP", "10.205.0.77"))
	must(t, "Attach ctr1", err)
	var r0, r1 cniResult
	must(t, "result JSON", json.Unmarshal(raw0, &r0))
	must(t, "result JSON", json.Unmarshal(raw1, &r1))
	if r0.CNIVersion != "1.1.0" || len(r0.Interfaces) != 3 || r0.Interfaces[0].Name != "cni0" ||
		r0.Interfaces[2].Name != "eth0" || r0.Interfaces[2].Sandbox != path(c0) || len(r0.IPs) != 1 ||
		r0.IPs[0].Gateway != "10.205.0.1" {
		t.Fatalf("result of ctr0: %s", raw0)
	}
	if len(r1.IPs) != 1 || r1.IPs[0].Address != "10.205.0.77/24" {
		t.Fatalf("result of ctr1 (IP=10.205.0.77): %s", raw1)
	}
	// The host side is in the host namespace: the bridge and a port.
	br, err := host.h.LinkByName("cni0")
	must(t, "cni0 in the host namespace", err)
	hostEnd, err := host.h.LinkByName(r0.Interfaces[1].Name)
	must(t, "host end", err)
	if hostEnd.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatalf("host end %+v is not on cni0", hostEnd.Attrs())
	}
	addr0 := strings.Split(r0.IPs[0].Address, "/")[0]
	if !ping(c0.name, "10.205.0.77") || !ping(c1.name, addr0) || !ping(c1.name, "10.205.0.1") {
		t.Fatalf("no traffic between the attached containers")
	}

	must(t, "Check ctr0", netkit.Check(ctx, path(c0), "ctr0", "eth0", conf, raw0, onHost))
	var withPrev map[string]interface{}
	must(t, "conf", json.Unmarshal(conf, &withPrev))
	withPrev["prevResult"] = json.RawMessage(raw1)
	conf1, err := json.Marshal(withPrev)
	must(t, "conf with prevResult", err)
	must(t, "Check ctr1 (prevResult in conf)", netkit.Check(ctx, path(c1), "ctr1", "eth0", conf1, nil, onHost))
	ip(t, c1.name, "addr", "del", "10.205.0.77/24", "dev", "eth0")
	err = netkit.Check(ctx, path(c1), "ctr1", "eth0", conf, raw1, onHost)
	if !errors.Is(err, netkit.ErrCheckFailed) || !strings.Contains(err.Error(), "10.205.0.77") {
		t.Fatalf("Check without the address: %v", err)
	}

	must(t, "Detach ctr0", netkit.Detach(ctx, path(c0), "ctr0", "eth0", conf, onHost))
	must(t, "Detach ctr1", netkit.Detach(ctx, path(c1), "ctr1", "eth0", conf, onHost))
	if _, err := c0.h.LinkByName("eth0"); !errors.Is(err, netkit.ErrNotFound) {
		t.Fatalf("eth0 left in ctr0: %v", err)
	}
	if _, err := host.h.LinkByName(r0.Interfaces[1].Name); !errors.Is(err, netkit.ErrNotFound) {
		t.Fatalf("host end left: %v", err)
	}
	must(t, "Detach again", netkit.Detach(ctx, path(c0), "ctr0", "eth0", conf, onHost))
	must(t, "Detach without namespace", netkit.Detach(ctx, "", "ctr1", "eth0", conf, onHost))
	// ctr0's address is free again: a new container may ask for it.
	raw, err := netkit.Attach(ctx, path(c0), "ctr2", "eth0", conf, onHost, netkit.WithArg("IP", addr0))
	must(t, "Attach ctr2 with ctr0's old address", err)
	must(t, "Detach ctr2", netkit.Detach(ctx, path(c0), "ctr2", "eth0", conf, onHost))
	var r2 cniResult
	must(t, "result JSON", json.Unmarshal(raw, &r2))
	if len(r2.IPs) != 1 || r2.IPs[0].Address != r0.IPs[0].Address {
		t.Fatalf("ctr2 got %s, ctr0 had %s", raw, r0.IPs[0].Address)
	}

	// A cancelled context stops before any work.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := netkit.Attach(cancelled, path(c0), "ctr3", "eth0", conf, onHost); !errors.Is(err, context.Canceled) {
		t.Fatalf("Attach with a cancelled context: %v", err)
	}
}

// TestAttachDelegatedIPAM attaches a container whose addresses come from the reference
// host-local plugin, found through WithCNIPath (and not without it).
func TestAttachDelegatedIPAM(t *testing.T) {
	const plugins = "/usr/lib/cni"
	if _, err := os.Stat(filepath.Join(plugins, "host-local")); err != nil {
		t.Skip("no /usr/lib/cni/host-local (apt-get install containernetworking-plugins)")
	}
	host, c := newTestNs(t, "dh"), newTestNs(t, "dc")
	data := filepath.Join(t.TempDir(), "host-local")
	conf, err := json.Marshal(map[string]interface{}{
		"cniVersion": "1.0.0", "name": "godel", "type": "netkit-cni", "bridge": "cni0",
		"isGateway": true, "waitLinkFree": true,
		"ipam": map[string]interface{}{"type": "host-local", "dataDir": data,
			"ranges": [][]map[string]string{{{"subnet": "10.206.0.0/24"}}}},
	})
	must(t, "configuration", err)
	ctx := context.Background()
	onHost := netkit.WithHostNetns(host.ns)
	path := "/run/netns/" + c.name
	if _, err := netkit.Attach(ctx, path, "d0", "eth0", conf, onHost); err == nil || !strings.Contains(err.Error(), "host-local") {
		t.Fatalf("Attach without a CNI path: %v", err)
	}
	if _, err := netkit.Attach(ctx, path, "d0", "eth0", conf, onHost, netkit.WithCNIPath("a:b")); !errors.Is(err, netkit.ErrInvalid) {
		t.Fatalf("a CNI path directory with ':': %v", err)
	}
	cniPath := netkit.WithCNIPath("/nonexistent", plugins)
	raw, err := netkit.Attach(ctx, path, "d0", "eth0", conf, onHost, cniPath)
	must(t, "Attach with host-local", err)
	t.Cleanup(func() { _ = netkit.Detach(ctx, path, "d0", "eth0", conf, onHost, cniPath) })
	var r cniResult
	must(t, "result JSON", json.Unmarshal(raw, &r))
	if len(r.IPs) != 1 || !strings.HasPrefix(r.IPs[0].Address, "10.206.0.") {
		t.Fatalf("result: %s", raw)
	}
	ipOnly := strings.Split(r.IPs[0].Address, "/")[0]
	if _, err := os.Stat(filepath.Join(data, "godel", ipOnly)); err != nil {
		t.Fatalf("host-local's record of %s: %v", ipOnly, err)
	}
	if !ping(host.name, ipOnly) {
		t.Fatalf("the host does not reach %s", ipOnly)
	}
	must(t, "Detach", netkit.Detach(ctx, path, "d0", "eth0", conf, onHost, cniPath))
	if _, err := os.Stat(filepath.Join(data, "godel", ipOnly)); !os.IsNotExist(err) {
		t.Fatalf("host-local still holds %s after Detach: %v", ipOnly, err)
	}
}
