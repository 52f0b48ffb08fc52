// attachbench: netkit-cni's ADD and DEL done in-process through netkit's Go package
// (netkit.Attach, netkit.Detach), timed exactly as `cnictl bench` times the same plugin through
// libcni, so scripts/bench-cni.sh can put the two side by side (stack "netkit-inproc").
//
//	attachbench <conflist.json> <N> <netns-prefix> [--ifname NAME] [--port-base P]
//
// It creates the namespaces <netns-prefix>0 .. N-1 with `ip netns add` (untimed), attaches a
// container in each (container ID = namespace name) with the conflist's one netkit-cni entry,
// given the conflist's cniVersion and name as libcni gives them, and with --port-base P the
// runtime configuration {"portMappings": [{"hostPort": P+i, "containerPort": 80, "protocol":
// "tcp"}]} that libcni would inject for the portMappings capability; then it detaches them all
// and deletes the namespaces. It prints cnictl bench's JSON report (totals, median, p90, max).
// Run it where cnictl would run: inside the host namespace.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"netkit.dev/netkit"
)

type phase struct {
	TotalS  float64 `json:"total_s"`
	MedianS float64 `json:"median_s"`
	P90S    float64 `json:"p90_s"`
	MaxS    float64 `json:"max_s"`
	PerSec  float64 `json:"ops_per_s"`
}

func summarize(total time.Duration, ops []time.Duration) phase {
	sort.Slice(ops, func(i, j int) bool { return ops[i] < ops[j] })
	at := func(q float64) float64 { return ops[int(q*float64(len(ops)-1)+0.5)].Seconds() }
	return phase{TotalS: total.Seconds(), MedianS: at(0.5), P90S: at(0.9), MaxS: at(1),
		PerSec: float64(len(ops)) / total.Seconds()}
}

func ipNetns(args ...string) error {
	out, err := exec.Command("ip", append([]string{"netns"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// configs reads the conflist and returns one configuration per container: its netkit-cni
// entry with cniVersion and name, and (portBase > 0) container i's port mapping.
func configs(path string, n, portBase int) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var list struct {
		CNIVersion string                   `json:"cniVersion"`
		Name       string                   `json:"name"`
		Plugins    []map[string]interface{} `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(list.Plugins) != 1 || list.Plugins[0]["type"] != "netkit-cni" {
		return nil, fmt.Errorf("%s: attachbench takes a conflist with one netkit-cni entry", path)
	}
	confs := make([][]byte, n)
	for i := range confs {
		conf := map[string]interface{}{}
		for k, v := range list.Plugins[0] {
			conf[k] = v
		}
		conf["cniVersion"], conf["name"] = list.CNIVersion, list.Name
		if portBase > 0 {
			conf["runtimeConfig"] = map[string]interface{}{"portMappings": []map[string]interface{}{
				{"hostPort": portBase + i, "containerPort": 80, "protocol": "tcp"}}}
		}
		if confs[i], err = json.Marshal(conf); err != nil {
			return nil, err
		}
	}
	return confs, nil
}

func run(conflist string, n int, prefix, ifname string, portBase int) (err error) {
	confs, err := configs(conflist, n, portBase)
	if err != nil {
		return err
	}
	var names []string
	defer func() {
		for _, name := range names {
			if delErr := ipNetns("del", name); delErr != nil && err == nil {
				err = delErr
			}
		}
	}()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		if err := ipNetns("add", name); err != nil {
			return err
		}
		names = append(names, name)
	}
	ctx := context.Background()
	adds, dels := make([]time.Duration, n), make([]time.Duration, n)
	start := time.Now()
	for i, name := range names {
		t := time.Now()
		if _, err := netkit.Attach(ctx, filepath.Join("/run/netns", name), name, ifname, confs[i]); err != nil {
			for j := i; j >= 0; j-- {
				_ = netkit.Detach(ctx, filepath.Join("/run/netns", names[j]), names[j], ifname, confs[j])
			}
			return fmt.Errorf("attach %s: %w", name, err)
		}
		adds[i] = time.Since(t)
	}
	addTotal := time.Since(start)
	var delErr error
	start = time.Now()
	for i, name := range names {
		t := time.Now()
		if err := netkit.Detach(ctx, filepath.Join("/run/netns", name), name, ifname, confs[i]); err != nil && delErr == nil {
			delErr = fmt.Errorf("detach %s: %w", name, err)
		}
		dels[i] = time.Since(t)
	}
	delTotal := time.Since(start)
	if delErr != nil {
		return delErr
	}
	out, err := json.MarshalIndent(struct {
		N   int   `json:"n"`
		Add phase `json:"add"`
		Del phase `json:"del"`
	}{n, summarize(addTotal, adds), summarize(delTotal, dels)}, "", "    ")
	if err != nil {
		return err
	}
	fmt.Printf("%s\n", out)
	return nil
}

func main() {
	usage := "usage: attachbench <conflist.json> <N> <netns-prefix> [--ifname NAME] [--port-base P]"
	args := os.Args[1:]
	ifname, portBase := "eth0", 0
	var pos []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--ifname", "--port-base":
			if i+1 >= len(args) {
				fmt.Fprintln(os.Stderr, usage)
				os.Exit(2)
			}
			if args[i] == "--ifname" {
				ifname = args[i+1]
			} else {
				p, err := strconv.Atoi(args[i+1])
				if err != nil || p < 1 || p > 65535 {
					fmt.Fprintf(os.Stderr, "attachbench: --port-base %q\n", args[i+1])
					os.Exit(2)
				}
				portBase = p
			}
			i++
		default:
			pos = append(pos, args[i])
		}
	}
	if len(pos) != 3 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	n, err := strconv.Atoi(pos[1])
	if err != nil || n < 1 || (portBase > 0 && portBase+n-1 > 65535) {
		fmt.Fprintf(os.Stderr, "attachbench: N %q (with --port-base %d)\n", pos[1], portBase)
		os.Exit(2)
	}
	if err := run(pos[0], n, pos[2], ifname, portBase); err != nil {
		fmt.Fprintf(os.Stderr, "attachbench: %v\n", err)
		os.Exit(1)
	}
}
