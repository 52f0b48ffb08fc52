package netkit

// #include "netkit.h"
import "C"

import (
	"net"
	"unsafe"
)

// Route flags (the kernel's RTNH_F_*, as vishvananda/netlink names them).
const (
	// FLAG_ONLINK: use the gateway even if no connected subnet covers it (`onlink`).
	FLAG_ONLINK = 0x4
)

// Route scopes (the kernel's RT_SCOPE_*).
const (
	SCOPE_UNIVERSE = 0
	SCOPE_SITE     = 200
	SCOPE_LINK     = 253
	SCOPE_HOST     = 254
)

// Route types (the kernel's RTN_*); 0 means unicast when adding.
const (
	RTN_UNICAST     = C.NETKIT_ROUTE_UNICAST
	RTN_LOCAL       = C.NETKIT_ROUTE_LOCAL
	RTN_BLACKHOLE   = C.NETKIT_ROUTE_BLACKHOLE
	RTN_UNREACHABLE = C.NETKIT_ROUTE_UNREACHABLE
	RTN_PROHIBIT    = C.NETKIT_ROUTE_PROHIBIT
)

// RT_TABLE_MAIN is the main routing table (the one used when Route.Table is 0).
const RT_TABLE_MAIN = 254

// NexthopInfo is one path of a multipath route (`nexthop via GW dev DEV weight HOPS+1`).
type NexthopInfo struct {
	// LinkIndex is the output device; 0: none.
	LinkIndex int
	// Hops is the weight minus one (as the kernel and vishvananda/netlink count it).
	Hops int
	// Gw is the gateway; nil: none.
	Gw net.IP
	// Flags: FLAG_ONLINK.
	Flags int
}

// Route is a route (as vishvananda/netlink's Route). For RouteAdd, Dst nil is the default
// route (of Gw's family, IPv4 without Gw); Scope 0 lets netkit choose as `ip route` does
// (link scope for a route through a device without gateway); Table 0 is the main table;
// Type 0 is unicast; Protocol 0 is `boot`.
type Route struct {
	// LinkIndex is the output device; 0: none.
	LinkIndex int
	// Dst is the destination; nil: default.
	Dst *net.IPNet
	// Src is the preferred source address; nil: none.
	Src net.IP
	// Gw is the gateway; nil: none.
	Gw net.IP
	// MultiPath are the paths of a multipath route.
	MultiPath []*NexthopInfo
	// Protocol is the kernel's protocol number (`proto`).
	Protocol int
	// Priority is the metric.
	Priority int
	// Table is the routing table; 0: main.
	Table int
	// Type is the route type (RTN_*).
	Type int
	// Scope (SCOPE_*).
	Scope int
	// Flags: FLAG_ONLINK.
	Flags int
	// MTU is the route's MTU; 0: none.
	MTU int
}

// String is the route as `ip route` would roughly print it.
func (r Route) String() string {
	dst := "default"
	if r.Dst != nil {
		dst = r.Dst.String()
	}
	s := dst
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	return s
}

// routeCall fills a netkit_route_config from r and runs f with it.
func (h *Handle) routeCall(r *Route, f func(p *C.netkit_handle, cfg *C.netkit_route_config, e **C.netkit_error) C.int) error {
	if r == nil {
		return invalidf("nil route")
	}
	var a arena
	defer a.free()
	var cfg C.netkit_route_config
	var err error
	dst := r.Dst
	if dst == nil {
		family := r.Gw
		if family == nil {
			family = r.Src
		}
		if family != nil && family.To4() == nil {
			dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		} else {
			dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		}
	}
	if cfg.dst, err = cPrefix(dst); err != nil {
		return err
	}
	if cfg.gateway, err = cIP(r.Gw); err != nil {
		return err
	}
	if cfg.prefsrc, err = cIP(r.Src); err != nil {
		return err
	}
	if r.LinkIndex < 0 || r.Table < 0 || r.Priority < 0 || r.MTU < 0 || r.Scope < 0 || r.Scope > 255 ||
		r.Type < 0 || r.Type > 255 || r.Protocol < 0 || r.Protocol > 255 {
		return invalidf("route %v: a field is out of range", r)
	}
	cfg.dev_index = C.uint32_t(r.LinkIndex)
	cfg.onlink = C.bool(r.Flags&FLAG_ONLINK != 0)
	cfg.table = C.uint32_t(r.Table)
	cfg.metric = C.uint32_t(r.Priority)
	if r.Scope != 0 {
		cfg.scope = C.uint8_t(r.Scope)
		cfg.set_scope = true
	}
	cfg.kind = C.uint8_t(r.Type)
	cfg.mtu = C.uint32_t(r.MTU)
	cfg.protocol = C.uint8_t(r.Protocol)
	if n := len(r.MultiPath); n > 0 {
		hops := cArray[C.netkit_nexthop_config](&a, n)
		for i, nh := range r.MultiPath {
			if nh == nil {
				return invalidf("route %v: nil next hop", r)
			}
			if hops[i].gateway, err = cIP(nh.Gw); err != nil {
				return err
			}
			if nh.Hops < 0 || nh.Hops > 255 || nh.LinkIndex < 0 {
				return invalidf("route %v: next hop %d is out of range", r, i)
			}
			hops[i].dev_index = C.uint32_t(nh.LinkIndex)
			hops[i].weight = C.uint16_t(nh.Hops + 1)
			hops[i].onlink = C.bool(nh.Flags&FLAG_ONLINK != 0)
		}
		cfg.nexthops = &hops[0]
		cfg.nexthops_len = C.uintptr_t(n)
	}
	return h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(f(p, &cfg, &cerr), cerr)
	})
}

// RouteAdd adds route (`ip route add`). ErrExists when it is there.
func (h *Handle) RouteAdd(route *Route) error {
	return h.routeCall(route, func(p *C.netkit_handle, cfg *C.netkit_route_config, e **C.netkit_error) C.int {
		return C.netkit_route_add(p, cfg, e)
	})
}

// RouteReplace adds route, or changes the one with the same destination, table and metric
// (`ip route replace`).
func (h *Handle) RouteReplace(route *Route) error {
	return h.routeCall(route, func(p *C.netkit_handle, cfg *C.netkit_route_config, e **C.netkit_error) C.int {
		return C.netkit_route_replace(p, cfg, e)
	})
}

// RouteDel deletes route (`ip route del`): the fields set select it. A route already gone is
// success.
func (h *Handle) RouteDel(route *Route) error {
	return h.routeCall(route, func(p *C.netkit_handle, cfg *C.netkit_route_config, e **C.netkit_error) C.int {
		return C.netkit_route_del(p, cfg, e)
	})
}

// RouteList returns the main table's routes of family (FAMILY_ALL, FAMILY_V4, FAMILY_V6)
// through link (every route when link is nil), as vishvananda/netlink's RouteList does.
func (h *Handle) RouteList(link Link, family int) ([]Route, error) {
	routes, err := h.RouteListTable(family, RT_TABLE_MAIN)
	if err != nil || link == nil {
		return routes, err
	}
	index := link.Attrs().Index
	out := []Route{}
	for _, r := range routes {
		if r.LinkIndex == index {
			out = append(out, r)
			continue
		}
		for _, nh := range r.MultiPath {
			if nh.LinkIndex == index {
				out = append(out, r)
				break
			}
		}
	}
	return out, nil
}

// RouteListTable returns the routes of family in table (0: every table).
func (h *Handle) RouteListTable(family int, table int) ([]Route, error) {
	if family < 0 || family > 255 || table < 0 {
		return nil, invalidf("family %d, table %d", family, table)
	}
	var routes *C.netkit_route
	var n C.uintptr_t
	err := h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(C.netkit_route_list(p, C.uint8_t(family), C.uint32_t(table), &routes, &n, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	defer C.netkit_route_list_free(routes, n)
	out := []Route{}
	for i, all := 0, unsafe.Slice(routes, int(n)); i < len(all); i++ {
		out = append(out, goRoute(&all[i]))
	}
	return out, nil
}

// goRoute converts a reported route.
func goRoute(c *C.netkit_route) Route {
	r := Route{
		LinkIndex: int(c.oif),
		Gw:        goIP(&c.gateway),
		Src:       goIP(&c.prefsrc),
		Protocol:  int(c.protocol),
		Table:     int(c.table),
		Type:      int(c.kind),
		Scope:     int(c.scope),
		MTU:       int(c.mtu),
	}
	if !c.is_default {
		r.Dst = goPrefix(&c.dst)
	}
	if c.has_metric {
		r.Priority = int(c.metric)
	}
	if c.onlink {
		r.Flags |= FLAG_ONLINK
	}
	for i, hops := 0, unsafe.Slice(c.nexthops, int(c.nexthops_len)); i < len(hops); i++ {
		nh := &hops[i]
		info := &NexthopInfo{LinkIndex: int(nh.oif), Gw: goIP(&nh.gateway), Hops: int(nh.weight) - 1}
		if nh.onlink {
			info.Flags |= FLAG_ONLINK
		}
		r.MultiPath = append(r.MultiPath, info)
	}
	return r
}
