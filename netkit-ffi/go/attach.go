package netkit

// #include "netkit.h"
import "C"

import (
	"context"
	"strings"
)

// AttachOption changes how Attach, Check and Detach make the attachment.
type AttachOption func(*attachOptions)

type attachOptions struct {
	host    *Netns
	args    [][2]string
	cniPath []string
}

// WithCNIPath names the directories searched for a delegated IPAM plugin (an "ipam" whose
// "type" is not "netkit-ipam", such as the reference "host-local"), as a runtime's CNI_PATH.
// Without it only netkit-ipam can be used.
func WithCNIPath(dirs ...string) AttachOption {
	return func(o *attachOptions) { o.cniPath = append(o.cniPath, dirs...) }
}

// WithHostNetns makes the attachment from namespace ns: the bridge, the host ends, the host
// routes and the firewall are there. Without it they are in the namespace of the OS thread
// that runs the call: the process's namespace, unless the program moved threads itself
// (which this package never does).
func WithHostNetns(ns *Netns) AttachOption {
	return func(o *attachOptions) { o.host = ns }
}

// WithArg adds the runtime argument key=value (a CNI_ARGS pair). The attach code reads "IP"
// (the addresses to ask IPAM for, comma-separated) and "MAC"; a delegated IPAM plugin gets
// them all.
func WithArg(key, value string) AttachOption {
	return func(o *attachOptions) { o.args = append(o.args, [2]string{key, value}) }
}

// attachCall builds the netkit_attachment and runs f with it and the configuration.
func attachCall(ctx context.Context, netnsPath, containerID, ifname string, conf []byte, opts []AttachOption,
	f func(att *C.netkit_attachment, conf *C.char, e **C.netkit_error) C.int) error {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	var o attachOptions
	for _, opt := range opts {
		opt(&o)
	}
	var a arena
	defer a.free()
	var att C.netkit_attachment
	att.netns = a.optStr("namespace path", netnsPath)
	att.container_id = a.str("container ID", containerID)
	att.ifname = a.str("interface name", ifname)
	for _, d := range o.cniPath {
		if strings.ContainsRune(d, ':') {
			return invalidf("CNI path directory %q contains ':'", d)
		}
	}
	if len(o.cniPath) > 0 {
		att.cni_path = a.str("CNI path", strings.Join(o.cniPath, ":"))
	}
	cconf := a.str("network configuration", string(conf))
	if n := len(o.args); n > 0 {
		args := cArray[C.netkit_attach_arg](&a, n)
		for i, kv := range o.args {
			args[i].key = a.str("argument key", kv[0])
			args[i].value = a.str("argument value", kv[1])
		}
		att.args = &args[0]
		att.args_len = C.uintptr_t(n)
	}
	if a.err != nil {
		return a.err
	}
	call := func() error {
		var cerr *C.netkit_error
		return check(f(&att, cconf, &cerr), cerr)
	}
	if o.host == nil {
		return call()
	}
	return o.host.use(func(p *C.netkit_netns) error {
		att.host_netns = p
		return call()
	})
}

// Attach attaches the container whose network namespace is at netnsPath (/run/netns/NAME,
// /proc/PID/ns/net) as interface ifname to the network conf: what the netkit-cni plugin's
// ADD does, in this process. conf is the netkit-cni conflist entry (the JSON the plugin
// reads on stdin, e.g. {"cniVersion": "1.1.0", "name": "podnet", "type": "netkit-cni",
// "bridge": "cni0", "isGateway": true, "ipam": {"type": "netkit-ipam", "ranges":
// [[{"subnet": "10.88.0.0/16"}]]}}). It returns the CNI result JSON.
//
// ctx is checked before the work starts; the work itself is not interrupted (it is short,
// and a half-made attachment is undone by Attach itself when a step fails). A long-running
// program should set "waitLinkFree": true in conf (Detach then starts no helper process).
//
// Errors: ErrInvalid (configuration, names), ErrNotFound (the container's namespace),
// ErrExhausted (no free address), ErrExists (an address asked for is taken),
// ErrNotSupported (the kernel lacks something conf needs), ErrBusy, ErrIO.
func Attach(ctx context.Context, netnsPath, containerID, ifname string, conf []byte, opts ...AttachOption) ([]byte, error) {
	if netnsPath == "" {
		return nil, invalidf("Attach: no namespace path")
	}
	var result []byte
	err := attachCall(ctx, netnsPath, containerID, ifname, conf, opts,
		func(att *C.netkit_attachment, cconf *C.char, e **C.netkit_error) C.int {
			var out *C.char
			status := C.netkit_attach_add(att, cconf, &out, e)
			if out != nil {
				result = []byte(C.GoString(out))
				C.netkit_string_free(out)
			}
			return status
		})
	return result, err
}

// Check verifies that the attachment is as Attach left it: prevResult is the result Attach
// returned (nil: conf carries it as "prevResult", as a CNI runtime writes it).
// ErrCheckFailed names the first difference.
func Check(ctx context.Context, netnsPath, containerID, ifname string, conf []byte, prevResult []byte, opts ...AttachOption) error {
	if netnsPath == "" {
		return invalidf("Check: no namespace path")
	}
	var a arena
	defer a.free()
	var prev *C.char
	if prevResult != nil {
		prev = a.str("previous result", string(prevResult))
	}
	if a.err != nil {
		return a.err
	}
	return attachCall(ctx, netnsPath, containerID, ifname, conf, opts,
		func(att *C.netkit_attachment, cconf *C.char, e **C.netkit_error) C.int {
			return C.netkit_attach_check(att, cconf, prev, e)
		})
}

// Detach removes the attachment (netkit-cni's DEL): its addresses, firewall rules and
// host-side links. Idempotent: what is gone already is success, and netnsPath may be ""
// (the container's namespace is gone).
func Detach(ctx context.Context, netnsPath, containerID, ifname string, conf []byte, opts ...AttachOption) error {
	return attachCall(ctx, netnsPath, containerID, ifname, conf, opts,
		func(att *C.netkit_attachment, cconf *C.char, e **C.netkit_error) C.int {
			return C.netkit_attach_del(att, cconf, e)
		})
}
