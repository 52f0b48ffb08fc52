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
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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

options (anywhere after the command):
  --cni-path DIRS           plugin directories, ':'-separated
                            (default: $CNI_PATH, else /opt/netkit-test/bin:/usr/lib/cni)
  --cache-dir DIR           libcni's result cache (default: $TMPDIR/cnictl-cache)
  --args 'K=V;K2=V2'        CNI_ARGS
  --capability-args JSON    capability arguments, e.g. '{"portMappings":[...]}'
  --valid-attachments JSON  gc: attachments to keep, '[{"containerID":"..","ifname":".."}]'
  --ifname NAME             bench: the interface in every container (default eth0)

add prints the result on stdout; version and bench print JSON reports; check, del, gc and
status print nothing. On failure the last line of stderr is {"code":N,"msg":"..","details":".."}
(code: the CNI error code; 0 when the error did not come from a plugin) and the exit status
is 1. Usage errors exit with status 2.

bench creates the namespaces <netns-prefix>0 .. <netns-prefix>N-1 with 'ip netns add' (in the
mount namespace cnictl runs in), ADDs every container, then DELs every container, and deletes
the namespaces again; only the ADD and DEL calls are timed.
`

const defaultCNIPath = "/opt/netkit-test/bin:/usr/lib/cni"

// The exec every plugin call goes through; plugin stderr (logs) is passed on to ours.
var pluginExec = &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}}

type options struct {
	cniPath, cacheDir, cniArgs, capabilityArgs, validAttachments, ifname string
}

// The number of positional arguments of each command.
var arity = map[string]int{"add": 4, "check": 4, "del": 4, "gc": 1, "status": 1, "version": 1, "bench": 3}

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
		var n int
		if _, err := fmt.Sscanf(pos[1], "%d", &n); err != nil || n < 1 {
			return fmt.Errorf("bench: N must be a positive number, not %q", pos[1])
		}
		return bench(ctx, cni, list, rt, n, pos[2], o.ifname)
	}
	return nil
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
	n int, prefix, ifname string) (err error) {
	var created []string
	defer func() {
		for _, name := range created {
			if delErr := ipNetns("del", name); delErr != nil && err == nil {
				err = delErr
			}
		}
	}()
	rts := make([]*libcni.RuntimeConf, n)
	for i := range rts {
		name := fmt.Sprintf("%s%d", prefix, i)
		if err := ipNetns("add", name); err != nil {
			return err
		}
		created = append(created, name)
		rt := *template
		rt.ContainerID, rt.NetNS, rt.IfName = name, filepath.Join("/run/netns", name), ifname
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
	return printJSON(struct {
		N   int   `json:"n"`
		Add phase `json:"add"`
		Del phase `json:"del"`
	}{n, summarize(addTotal, adds), summarize(delTotal, dels)})
}
