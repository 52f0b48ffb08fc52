// Command cnictl runs a CNI network configuration list against a network namespace through
// libcni, the library container runtimes use. Tests and benchmarks call plugins through it so
// that plugins see exactly what a runtime gives them: the same environment, the same stdin
// (name, cniVersion, runtimeConfig, prevResult) and the same result cache between ADD, CHECK
// and DEL.
//
// It is built against Debian's libcni 1.1.2 (package golang-github-appc-cni-dev), which speaks
// CNI spec 1.0.0 and has no GC or STATUS. cnictl sends those two verbs itself, the way later
// libcni releases do (see gc and status below).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

const usage = `usage:
  cnictl add|check|del <conflist.json> <netns path> <containerID> <ifname> [options]
  cnictl gc|status|version <conflist.json> [options]
  cnictl bench <conflist.json> <N> <netns-prefix> [options]
  cnictl netavark-bench <network.json> <N> <netns-prefix> [options]

options (anywhere after the command):
  --cni-path DIRS           plugin directories, ':'-separated
                            (default: $CNI_PATH, else /opt/netkit-test/bin:/usr/lib/cni)
  --cache-dir DIR           libcni's result cache (default: $TMPDIR/cnictl-cache)
  --args 'K=V;K2=V2'        CNI_ARGS
  --capability-args JSON    capability arguments, e.g. '{"portMappings":[...]}'
  --valid-attachments JSON  gc: attachments to keep, '[{"containerID":"..","ifname":".."}]'
  --ifname NAME             bench: the interface in every container (default eth0)
  --port-base P             bench, netavark-bench: give container i one TCP port mapping, host
                            port P+i to container port 80 (replaces any portMappings of
                            --capability-args)
  --netavark BIN            netavark-bench: the netavark binary (default /usr/lib/podman/netavark)
  --netavark-config DIR     netavark-bench: netavark's --config directory
                            (default: $TMPDIR/cnictl-netavark)

add prints the result on stdout; version and bench print JSON reports; check, del, gc and
status print nothing. On failure the last line of stderr is {"code":N,"msg":"..","details":".."}
(code: the CNI error code; 0 when the error did not come from a plugin) and the exit status
is 1. Usage errors exit with status 2.

bench creates the namespaces <netns-prefix>0 .. <netns-prefix>N-1 with 'ip netns add' (in the
mount namespace cnictl runs in), ADDs every container, then DELs every container, and deletes
the namespaces again; only the ADD and DEL calls are timed.

netavark-bench does the same with netavark (podman's network stack, not a CNI plugin): one
'netavark --config DIR setup <netns>' per container, then one 'teardown' per container, with the
network options on stdin as podman writes them. network.json is the network's definition (what
podman passes as network_info: name, id, driver "bridge", network_interface, subnets, ...);
netavark has no IPAM of its own, so container i gets the static address first-subnet + 2 + i (the
gateway is + 1). It prints the same JSON report as bench.
`

const defaultCNIPath = "/opt/netkit-test/bin:/usr/lib/cni"

// The exec every plugin call goes through; plugin stderr (logs) is passed on to ours.
var pluginExec = &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}}

type options struct {
	cniPath, cacheDir, cniArgs, capabilityArgs, validAttachments, ifname string
	netavark, netavarkConfig                                             string
	// portBase: bench and netavark-bench give container i host port portBase+i (0: none).
	portBase int
}

// The number of positional arguments of each command.
var arity = map[string]int{"add": 4, "check": 4, "del": 4, "gc": 1, "status": 1, "version": 1, "bench": 3,
	"netavark-bench": 3}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	verb := os.Args[1]
	opts, pos, err := parseArgs(os.Args[2:])
	if err != nil {
		usageError(err.Error())
	}
	if n, ok := arity[verb]; !ok {
		usageError("unknown command " + verb)
	} else if len(pos) != n {
		usageError(fmt.Sprintf("%s takes %d arguments, not %d", verb, n, len(pos)))
	}
	if err := run(verb, opts, pos); err != nil {
		fail(err)
	}
}

// parseArgs accepts options before, between and after the positional arguments.
func parseArgs(args []string) (options, []string, error) {
	var o options
	fs := flag.NewFlagSet("cnictl", flag.ContinueOnError)
	fs.SetOutput(ioutil.Discard)
	fs.StringVar(&o.cniPath, "cni-path", os.Getenv("CNI_PATH"), "")
	fs.StringVar(&o.cacheDir, "cache-dir", filepath.Join(os.TempDir(), "cnictl-cache"), "")
	fs.StringVar(&o.cniArgs, "args", "", "")
	fs.StringVar(&o.capabilityArgs, "capability-args", "", "")
	fs.StringVar(&o.validAttachments, "valid-attachments", "", "")
	fs.StringVar(&o.ifname, "ifname", "eth0", "")
	fs.StringVar(&o.netavark, "netavark", "/usr/lib/podman/netavark", "")
	fs.StringVar(&o.netavarkConfig, "netavark-config", filepath.Join(os.TempDir(), "cnictl-netavark"), "")
	fs.IntVar(&o.portBase, "port-base", 0, "")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return o, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if o.cniPath == "" {
		o.cniPath = defaultCNIPath
	}
	if o.portBase < 0 || o.portBase > 65535 {
		return o, nil, fmt.Errorf("--port-base: %d is not a port", o.portBase)
	}
	return o, pos, nil
}

func usageError(msg string) {
	fmt.Fprintf(os.Stderr, "cnictl: %s\n\n%s", msg, usage)
	os.Exit(2)
}

// fail reports err as one JSON line on stderr, with the CNI error code of the plugin error it
// wraps (0 if none), and exits with status 1.
func fail(err error) {
	report := struct {
		Code    uint   `json:"code"`
		Msg     string `json:"msg"`
		Details string `json:"details,omitempty"`
	}{Msg: err.Error()}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		report.Code, report.Details = cniErr.Code, cniErr.Details
	}
	line, _ := json.Marshal(report)
	fmt.Fprintf(os.Stderr, "%s\n", line)
	os.Exit(1)
}

func run(verb string, o options, pos []string) error {
	if verb == "netavark-bench" {
		n, err := benchN(pos[1], o)
		if err != nil {
			return err
		}
		return netavarkBench(pos[0], n, pos[2], o)
	}
	list, err := libcni.ConfListFromFile(pos[0])
	if err != nil {
		return err
	}
	rt, err := o.runtimeConf()
	if err != nil {
		return err
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(o.cniPath), o.cacheDir, pluginExec)
	ctx := context.Background()
	if arity[verb] == 4 {
		rt.NetNS, rt.ContainerID, rt.IfName = pos[1], pos[2], pos[3]
	}
	switch verb {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil && !atMost(list, version.Current()) {
			err = fmt.Errorf("%w (this libcni reads results of cniVersion %s or older)", err, version.Current())
		}
		if err != nil {
			return err
		}
		if err := result.PrintTo(os.Stdout); err != nil {
			return err
		}
		_, err = fmt.Println()
		return err
	case "check":
		return cni.CheckNetworkList(ctx, list, rt)
	case "del":
		return cni.DelNetworkList(ctx, list, rt)
	case "gc":
		return gc(ctx, cni, list, o)
	case "status":
		return status(ctx, cni, list)
	case "version":
		return versions(ctx, cni, list)
	case "bench":
		n, err := benchN(pos[1], o)
		if err != nil {
			return err
		}
		return bench(ctx, cni, list, rt, n, pos[2], o.ifname, o.portBase)
	}
	return nil
}

// benchN reads bench's N and checks that the host ports of --port-base fit.
func benchN(arg string, o options) (int, error) {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("bench: N must be a positive number, not %q", arg)
	}
	if o.portBase > 0 && o.portBase+n-1 > 65535 {
		return 0, fmt.Errorf("bench: --port-base %d + N %d goes past port 65535", o.portBase, n)
	}
	return n, nil
}

// runtimeConf holds the options every command shares: CNI_ARGS and capability arguments.
func (o options) runtimeConf() (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{}
	if o.cniArgs != "" {
		for _, kv := range strings.Split(o.cniArgs, ";") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("--args: %q is not K=V", kv)
			}
			rt.Args = append(rt.Args, [2]string{k, v})
		}
	}
	if o.capabilityArgs != "" {
		if err := json.Unmarshal([]byte(o.capabilityArgs), &rt.CapabilityArgs); err != nil {
			return nil, fmt.Errorf("--capability-args: %w", err)
		}
	}
	return rt, nil
}

// atLeast tells whether the conflist's cniVersion is v or later.
func atLeast(list *libcni.NetworkConfigList, v string) bool {
	ok, err := version.GreaterThanOrEqualTo(list.CNIVersion, v)
	return err == nil && ok
}

// atMost tells whether the conflist's cniVersion is v or older.
func atMost(list *libcni.NetworkConfigList, v string) bool {
	ok, err := version.GreaterThanOrEqualTo(v, list.CNIVersion)
	return err == nil && ok
}

// callPlugin sends a verb without a result (GC, STATUS) to one plugin, as libcni does for the
// others: the plugin's config with the list's name and cniVersion, CNI_COMMAND and CNI_PATH.
func callPlugin(ctx context.Context, cni *libcni.CNIConfig, verb string, list *libcni.NetworkConfigList,
	plugin *libcni.NetworkConfig, extra map[string]interface{}) error {
	inject := map[string]interface{}{"name": list.Name, "cniVersion": list.CNIVersion}
	for k, v := range extra {
		inject[k] = v
	}
	conf, err := libcni.InjectConf(plugin, inject)
	if err != nil {
		return err
	}
	path, err := pluginExec.FindInPath(plugin.Network.Type, cni.Path)
	if err != nil {
		return err
	}
	args := &invoke.Args{Command: verb, Path: strings.Join(cni.Path, ":")}
	if err := invoke.ExecPluginWithoutResult(ctx, path, conf.Bytes, args, pluginExec); err != nil {
		return fmt.Errorf("plugin type=%q failed (%s): %w", plugin.Network.Type, strings.ToLower(verb), err)
	}
	return nil
}

// An attachment as the CNI spec's cni.dev/valid-attachments lists it.
type attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// The fields of a libcni cache file (<cache>/results/<network>-<container>-<ifname>) gc needs.
type cacheEntry struct {
	Kind           string                 `json:"kind"`
	ContainerID    string                 `json:"containerId"`
	IfName         string                 `json:"ifName"`
	NetworkName    string                 `json:"networkName"`
	CniArgs        [][2]string            `json:"cniArgs"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs"`
}

// gc does what libcni 1.2's GCNetworkList does: unless the conflist says "disableGC", DEL every
// attachment of this network in the cache that is not a valid attachment, then (cniVersion
// 1.1.0 or later) send GC with the valid attachments to every plugin. It goes on after an
// error and returns the first.
func gc(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, o options) error {
	var raw struct {
		DisableGC bool `json:"disableGC"`
	}
	if err := json.Unmarshal(list.Bytes, &raw); err != nil {
		return err
	}
	if raw.DisableGC {
		return nil
	}
	valid := []attachment{}
	if o.validAttachments != "" {
		if err := json.Unmarshal([]byte(o.validAttachments), &valid); err != nil {
			return fmt.Errorf("--valid-attachments: %w", err)
		}
	}
	keep := map[attachment]bool{}
	for _, a := range valid {
		keep[a] = true
	}
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	files, err := filepath.Glob(filepath.Join(o.cacheDir, "results", "*"))
	if err != nil {
		return err
	}
	for _, file := range files {
		var e cacheEntry
		data, err := ioutil.ReadFile(file)
		if err == nil {
			err = json.Unmarshal(data, &e)
		}
		if err != nil {
			note(fmt.Errorf("cache file %s: %w", file, err))
			continue
		}
		if e.Kind != libcni.CNICacheV1 || e.NetworkName != list.Name || keep[attachment{e.ContainerID, e.IfName}] {
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: e.ContainerID, IfName: e.IfName, Args: e.CniArgs,
			CapabilityArgs: e.CapabilityArgs}
		note(cni.DelNetworkList(ctx, list, rt))
	}
	if atLeast(list, "1.1.0") {
		extra := map[string]interface{}{"cni.dev/valid-attachments": valid}
		for _, plugin := range list.Plugins {
			note(callPlugin(ctx, cni, "GC", list, plugin, extra))
		}
	} else {
		fmt.Fprintf(os.Stderr, "cnictl: cniVersion %q < 1.1.0: no GC sent to the plugins (as libcni)\n", list.CNIVersion)
	}
	return first
}

// status does what libcni 1.2's GetStatusNetworkList does: STATUS to every plugin in order,
// stopping at the first error; nothing for a cniVersion before 1.1.0.
func status(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
	if !atLeast(list, "1.1.0") {
		fmt.Fprintf(os.Stderr, "cnictl: cniVersion %q < 1.1.0: no STATUS sent (as libcni)\n", list.CNIVersion)
		return nil
	}
	for _, plugin := range list.Plugins {
		if err := callPlugin(ctx, cni, "STATUS", list, plugin, nil); err != nil {
			return err
		}
	}
	return nil
}

// versions reports each plugin's VERSION answer and whether it supports the list's cniVersion.
func versions(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
	type pluginVersions struct {
		Type      string   `json:"type"`
		Supported []string `json:"supportedVersions"`
		Supports  bool     `json:"supportsConflistVersion"`
	}
	report := struct {
		Libcni   string           `json:"libcniSpecVersion"`
		Conflist string           `json:"conflistVersion"`
		Plugins  []pluginVersions `json:"plugins"`
	}{Libcni: version.Current(), Conflist: list.CNIVersion, Plugins: []pluginVersions{}}
	for _, plugin := range list.Plugins {
		info, err := cni.GetVersionInfo(ctx, plugin.Network.Type)
		if err != nil {
			return fmt.Errorf("plugin type=%q failed (version): %w", plugin.Network.Type, err)
		}
		p := pluginVersions{Type: plugin.Network.Type, Supported: info.SupportedVersions()}
		for _, v := range p.Supported {
			p.Supports = p.Supports || v == list.CNIVersion
		}
		report.Plugins = append(report.Plugins, p)
	}
	return printJSON(report)
}

func printJSON(v interface{}) error {
	out, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", out)
	return err
}

// Timings of one phase of bench.
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

// bench creates n namespaces, ADDs a container in each (container ID = namespace name), DELs
// them all, and deletes the namespaces; it prints the timings of the ADD and DEL phases. After
// a failed ADD it DELs what it added (the failed one too, as a runtime does) before returning;
// a failed DEL does not stop the others.
func bench(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, template *libcni.RuntimeConf,
	n int, prefix, ifname string, portBase int) (err error) {
	names, cleanup, err := benchNamespaces(n, prefix)
	defer cleanup(&err)
	if err != nil {
		return err
	}
	rts := make([]*libcni.RuntimeConf, n)
	for i, name := range names {
		rt := *template
		rt.ContainerID, rt.NetNS, rt.IfName = name, filepath.Join("/run/netns", name), ifname
		if portBase > 0 {
			// Every container its own host port: a copy of the capability arguments each.
			caps := map[string]interface{}{}
			for k, v := range template.CapabilityArgs {
				caps[k] = v
			}
			caps["portMappings"] = []map[string]interface{}{
				{"hostPort": portBase + i, "containerPort": 80, "protocol": "tcp"}}
			rt.CapabilityArgs = caps
		}
		rts[i] = &rt
	}

	adds, dels := make([]time.Duration, n), make([]time.Duration, n)
	start := time.Now()
	for i, rt := range rts {
		t := time.Now()
		if _, err := cni.AddNetworkList(ctx, list, rt); err != nil {
			for j := i; j >= 0; j-- {
				_ = cni.DelNetworkList(ctx, list, rts[j])
			}
			return fmt.Errorf("bench: ADD of %s: %w", rt.ContainerID, err)
		}
		adds[i] = time.Since(t)
	}
	addTotal := time.Since(start)
	var delErr error
	start = time.Now()
	for i, rt := range rts {
		t := time.Now()
		if err := cni.DelNetworkList(ctx, list, rt); err != nil && delErr == nil {
			delErr = fmt.Errorf("bench: DEL of %s: %w", rt.ContainerID, err)
		}
		dels[i] = time.Since(t)
	}
	delTotal := time.Since(start)
	if delErr != nil {
		return delErr
	}
	return printReport(n, addTotal, adds, delTotal, dels)
}

func printReport(n int, addTotal time.Duration, adds []time.Duration, delTotal time.Duration, dels []time.Duration) error {
	return printJSON(struct {
		N   int   `json:"n"`
		Add phase `json:"add"`
		Del phase `json:"del"`
	}{n, summarize(addTotal, adds), summarize(delTotal, dels)})
}

// benchNamespaces creates the namespaces <prefix>0 .. <prefix>n-1 (untimed). cleanup deletes
// those it created and records the first error in *err if there is none yet; call it (deferred)
// also when benchNamespaces fails.
func benchNamespaces(n int, prefix string) ([]string, func(*error), error) {
	var created []string
	cleanup := func(err *error) {
		for _, name := range created {
			if delErr := ipNetns("del", name); delErr != nil && *err == nil {
				*err = delErr
			}
		}
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		if err := ipNetns("add", name); err != nil {
			return nil, cleanup, err
		}
		created = append(created, name)
	}
	return created, cleanup, nil
}

// A netavark network definition: the keys netavark-bench reads; the rest is passed on as is.
type netavarkNetwork struct {
	Name    string `json:"name"`
	Subnets []struct {
		Subnet string `json:"subnet"`
	} `json:"subnets"`
}

// netavarkBench is bench for netavark: setup then teardown of n containers, one netavark
// process per call as podman runs it, with the options podman would write on stdin.
func netavarkBench(networkFile string, n int, prefix string, o options) (err error) {
	raw, err := ioutil.ReadFile(networkFile)
	if err != nil {
		return err
	}
	var network netavarkNetwork
	var info map[string]interface{}
	if err := json.Unmarshal(raw, &network); err != nil {
		return fmt.Errorf("%s: %w", networkFile, err)
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		return fmt.Errorf("%s: %w", networkFile, err)
	}
	if network.Name == "" || len(network.Subnets) == 0 {
		return fmt.Errorf("%s: a network needs a name and a subnet", networkFile)
	}
	base, subnet, err := net.ParseCIDR(network.Subnets[0].Subnet)
	if err != nil || base.To4() == nil {
		return fmt.Errorf("%s: the first subnet must be IPv4 (%q)", networkFile, network.Subnets[0].Subnet)
	}
	first := subnet.IP.To4()
	ones, bits := subnet.Mask.Size()
	if n+2 >= 1<<(bits-ones) {
		return fmt.Errorf("netavark-bench: %d containers do not fit in %s", n, subnet)
	}
	if err := os.MkdirAll(o.netavarkConfig, 0o755); err != nil {
		return err
	}

	names, cleanup, err := benchNamespaces(n, prefix)
	defer cleanup(&err)
	if err != nil {
		return err
	}
	stdins := make([][]byte, n)
	for i, name := range names {
		ip := make(net.IP, 4)
		v := uint32(first[0])<<24 | uint32(first[1])<<16 | uint32(first[2])<<8 | uint32(first[3])
		v += uint32(i) + 2
		ip[0], ip[1], ip[2], ip[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		opts := map[string]interface{}{
			"container_id":   name,
			"container_name": name,
			"networks": map[string]interface{}{
				network.Name: map[string]interface{}{"static_ips": []string{ip.String()}, "interface_name": o.ifname},
			},
			"network_info": map[string]interface{}{network.Name: info},
		}
		if o.portBase > 0 {
			opts["port_mappings"] = []map[string]interface{}{{"host_ip": "", "container_port": 80,
				"host_port": o.portBase + i, "range": 1, "protocol": "tcp"}}
		}
		if stdins[i], err = json.Marshal(opts); err != nil {
			return err
		}
	}
	call := func(verb string, i int) error {
		cmd := exec.Command(o.netavark, "--config", o.netavarkConfig, verb, filepath.Join("/run/netns", names[i]))
		cmd.Stdin = strings.NewReader(string(stdins[i]))
		cmd.Stderr = os.Stderr
		if out, err := cmd.Output(); err != nil {
			return fmt.Errorf("netavark %s of %s: %v: %s", verb, names[i], err, strings.TrimSpace(string(out)))
		}
		return nil
	}

	adds, dels := make([]time.Duration, n), make([]time.Duration, n)
	start := time.Now()
	for i := range names {
		t := time.Now()
		if err := call("setup", i); err != nil {
			for j := i; j >= 0; j-- {
				_ = call("teardown", j)
			}
			return err
		}
		adds[i] = time.Since(t)
	}
	addTotal := time.Since(start)
	var delErr error
	start = time.Now()
	for i := range names {
		t := time.Now()
		if err := call("teardown", i); err != nil && delErr == nil {
			delErr = err
		}
		dels[i] = time.Since(t)
	}
	delTotal := time.Since(start)
	if delErr != nil {
		return delErr
	}
	return printReport(n, addTotal, adds, delTotal, dels)
}
