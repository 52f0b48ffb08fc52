package netkit

// #include "netkit.h"
import "C"

// SysctlGet reads sysctl key inside the namespace: the value without its trailing newline.
// The key is dotted as sysctl(8) writes it ("net.ipv4.ip_forward"; a "/" inside a component
// is a literal dot: "net.ipv4.conf.eth0/100.rp_filter") and under "net." (the per-namespace
// sysctls). ErrNotFound for a key that does not exist, ErrInvalid for one that cannot be a
// key.
func (ns *Netns) SysctlGet(key string) (string, error) {
	var a arena
	defer a.free()
	ckey := a.str("sysctl key", key)
	if a.err != nil {
		return "", a.err
	}
	var value string
	err := ns.use(func(p *C.netkit_netns) error {
		var v *C.char
		var cerr *C.netkit_error
		if err := check(C.netkit_sysctl_get(p, ckey, &v, &cerr), cerr); err != nil {
			return err
		}
		value = goStr(v)
		C.netkit_string_free(v)
		return nil
	})
	return value, err
}

// SysctlSet writes value to sysctl key inside the namespace.
func (ns *Netns) SysctlSet(key, value string) error {
	var a arena
	defer a.free()
	ckey := a.str("sysctl key", key)
	cvalue := a.str("sysctl value", value)
	if a.err != nil {
		return a.err
	}
	return ns.use(func(p *C.netkit_netns) error {
		var cerr *C.netkit_error
		return check(C.netkit_sysctl_set(p, ckey, cvalue, &cerr), cerr)
	})
}
