package netkit_test

import (
	"fmt"
	"net"
	"reflect"
	"strconv"
	"testing"

	"netkit.dev/netkit"
)

// ruleAsIP renders a listed rule with the keys and values `ip -j rule show` prints for it.
func ruleAsIP(r netkit.Rule) map[string]interface{} {
	m := map[string]interface{}{"priority": r.Priority, "src": "all"}
	prefix := func(key string, n *net.IPNet) {
		if n != nil {
			ones, _ := n.Mask.Size()
			m[key] = n.IP.String()
			m[key+"len"] = ones
		}
	}
	prefix("src", r.Src)
	prefix("dst", r.Dst)
	if r.Invert {
		m["not"] = nil
	}
	hex := func(n int) string { // as C's %#x, which prints 0 as "0"
		if n == 0 {
			return "0"
		}
		return fmt.Sprintf("%#x", n)
	}
	if r.Mark >= 0 {
		m["fwmark"] = hex(r.Mark)
		if r.Mask >= 0 && r.Mask != 0xffffffff {
			m["fwmask"] = hex(r.Mask)
		}
	}
	if r.IifName != "" {
		m["iif"] = r.IifName
	}
	if r.OifName != "" {
		m["oif"] = r.OifName
	}
	if r.SuppressPrefixlen >= 0 {
		m["suppress_prefixlen"] = r.SuppressPrefixlen
	}
	switch r.Type {
	case netkit.FR_ACT_TO_TBL:
		m["table"] = map[int]string{253: "default", 254: "main", 255: "local"}[r.Table]
		if m["table"] == "" {
			m["table"] = strconv.Itoa(r.Table)
		}
	case netkit.FR_ACT_BLACKHOLE:
		m["action"] = "blackhole"
	case netkit.FR_ACT_PROHIBIT:
		m["action"] = "prohibit"
	case netkit.FR_ACT_UNREACHABLE:
		m["action"] = "unreachable"
	case netkit.FR_ACT_NOP:
		m["action"] = "nop"
	}
	return m
}

// agreeRules fails unless RuleList(family) and `ip -j [-6] rule show` list the same rules.
func agreeRules(t *testing.T, a *testNs, family int) []netkit.Rule {
	t.Helper()
	rules, err := a.h.RuleList(family)
	must(t, "RuleList", err)
	args := []string{"rule", "show"}
	if family == netkit.FAMILY_V6 {
		args = []string{"-6", "rule", "show"}
	}
	var ours []map[string]interface{}
	for _, r := range rules {
		if r.Family != family {
			t.Fatalf("RuleList(%d) gave a rule of family %d: %v", family, r.Family, r)
		}
		ours = append(ours, ruleAsIP(r))
	}
	want := asJSON(t, ipJSON(t, a.name, args...))
	if got := asJSON(t, ours); !reflect.DeepEqual(got, want) {
		t.Fatalf("RuleList(%d):\n got %v\nwant %v (ip -j)", family, got, want)
	}
	return rules
}

// TestRules adds lookup rules (from, fwmark/mask, oif, not + suppress_prefixlength), a
// blackhole rule on iif lo and an IPv6 prohibit rule whose family comes from its prefix; the
// lists agree with `ip -j rule show`; deletion by priority alone is idempotent; errors.
func TestRules(t *testing.T) {
	a := newTestNs(t, "ru")
	from := netkit.NewRule()
	from.Src = &net.IPNet{IP: net.IPv4(10, 0, 0, 0).To4(), Mask: net.CIDRMask(24, 32)}
	from.Table = 100
	from.Priority = 1000
	must(t, "RuleAdd from", a.h.RuleAdd(from))
	isKind(t, "RuleAdd again", a.h.RuleAdd(from), netkit.ErrExists)

	mark := netkit.NewRule()
	mark.Mark, mark.Mask, mark.Table, mark.Priority = 1, 0xff, 200, 1001
	must(t, "RuleAdd fwmark", a.h.RuleAdd(mark))
	exact := netkit.NewRule()
	exact.Mark, exact.Table, exact.Priority = 7, 201, 1005
	must(t, "RuleAdd fwmark without mask", a.h.RuleAdd(exact))
	// Mark 0: not set without a mask (as for the kernel), packets without a mark with one.
	unset := netkit.NewRule()
	unset.Mark, unset.Table, unset.Priority = 0, 202, 1006
	must(t, "RuleAdd fwmark 0", a.h.RuleAdd(unset))
	nomark := netkit.NewRule()
	nomark.Mark, nomark.Mask, nomark.Table, nomark.Priority = 0, 0xffffffff, 203, 1007
	must(t, "RuleAdd fwmark 0/0xffffffff", a.h.RuleAdd(nomark))
	black := netkit.NewRule()
	black.IifName, black.Type, black.Priority = "lo", netkit.FR_ACT_BLACKHOLE, 1002
	must(t, "RuleAdd blackhole", a.h.RuleAdd(black))
	not := netkit.NewRule()
	not.Src, not.Invert = ipNet(t, "10.1.0.0/16"), true
	not.Table, not.SuppressPrefixlen, not.Priority = netkit.RT_TABLE_MAIN, 0, 1003
	must(t, "RuleAdd not", a.h.RuleAdd(not))
	oif := netkit.NewRule()
	oif.OifName, oif.Table, oif.Priority = "lo", 7, 1004
	must(t, "RuleAdd oif", a.h.RuleAdd(oif))
	v6 := netkit.NewRule()
	v6.Dst, v6.Type, v6.Priority = ipNet(t, "fd00:dead::/32"), netkit.FR_ACT_PROHIBIT, 500
	must(t, "RuleAdd IPv6 (family from Dst)", a.h.RuleAdd(v6))

	rules := agreeRules(t, a, netkit.FAMILY_V4)
	var prios []int
	for _, r := range rules {
		prios = append(prios, r.Priority)
	}
	if !reflect.DeepEqual(prios, []int{0, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 32766, 32767}) {
		t.Fatalf("IPv4 priorities %v", prios)
	}
	if r := rules[7]; r.Mark != -1 || r.Table != 202 {
		t.Fatalf("fwmark 0 without a mask is no fwmark: %+v", r)
	}
	if r := rules[8]; r.Mark != 0 || r.Mask != 0xffffffff {
		t.Fatalf("fwmark 0/0xffffffff as listed: %+v", r)
	}
	if r := rules[1]; r.Table != 100 || r.Src.String() != "10.0.0.0/24" || r.Mark != -1 ||
		r.Mask != -1 || r.SuppressPrefixlen != -1 || r.Type != netkit.FR_ACT_TO_TBL {
		t.Fatalf("the from rule as listed: %+v", r)
	}
	if r := rules[6]; r.Mark != 7 || r.Mask != 0xffffffff {
		t.Fatalf("an exact fwmark is listed with mask 0xffffffff: %+v", r)
	}
	v6rules := agreeRules(t, a, netkit.FAMILY_V6)
	all, err := a.h.RuleList(netkit.FAMILY_ALL)
	must(t, "RuleList(FAMILY_ALL)", err)
	if len(all) != len(rules)+len(v6rules) {
		t.Fatalf("FAMILY_ALL lists %d rules, want %d + %d", len(all), len(rules), len(v6rules))
	}

	// Delete by priority alone, twice (idempotent); the others stay.
	del := netkit.NewRule()
	del.Priority = 1000
	must(t, "RuleDel 1000", a.h.RuleDel(del))
	must(t, "RuleDel 1000 again", a.h.RuleDel(del))
	del6 := netkit.NewRule()
	del6.Family, del6.Priority = netkit.FAMILY_V6, 500
	must(t, "RuleDel 500 (IPv6)", a.h.RuleDel(del6))
	// A listed rule deletes itself.
	must(t, "RuleDel of a listed rule", a.h.RuleDel(&rules[2]))
	rules = agreeRules(t, a, netkit.FAMILY_V4)
	for _, r := range rules {
		if r.Priority == 1000 || r.Priority == 1001 {
			t.Fatalf("rule %d still there", r.Priority)
		}
	}
	for _, r := range agreeRules(t, a, netkit.FAMILY_V6) {
		if r.Priority == 500 {
			t.Fatal("the IPv6 rule is still there")
		}
	}

	// Errors.
	bad := netkit.NewRule()
	bad.Type = 42
	isKind(t, "unknown action", a.h.RuleAdd(bad), netkit.ErrInvalid)
	bad = netkit.NewRule()
	bad.Family, bad.Src = netkit.FAMILY_V4, ipNet(t, "fd00::/8")
	isKind(t, "IPv6 prefix in an IPv4 rule", a.h.RuleAdd(bad), netkit.ErrInvalid)
	bad = netkit.NewRule()
	bad.Mask = 0xff
	isKind(t, "mask without mark", a.h.RuleAdd(bad), netkit.ErrInvalid)
	bad = netkit.NewRule()
	bad.Tos = 0x10
	isKind(t, "TOS", a.h.RuleAdd(bad), netkit.ErrInvalid)
	bad = netkit.NewRule()
	bad.IifName = "l\x00o"
	isKind(t, "NUL in a name", a.h.RuleAdd(bad), netkit.ErrInvalid)
	isKind(t, "nil rule", a.h.RuleAdd(nil), netkit.ErrInvalid)
	_, err = a.h.RuleList(3)
	isKind(t, "RuleList(3)", err, netkit.ErrInvalid)
}

// ipNet parses a prefix ("10.0.0.0/24"), keeping host bits.
func ipNet(t *testing.T, s string) *net.IPNet {
	t.Helper()
	n, err := netkit.ParseIPNet(s)
	must(t, "ParseIPNet "+s, err)
	return n
}
