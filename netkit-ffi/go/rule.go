package netkit

// #include "netkit.h"
import "C"

import (
	"fmt"
	"math"
	"net"
	"unsafe"
)

// Rule actions (Rule.Type): the kernel's FR_ACT_* numbers. The ones a rule can be given are
// the same numbers as RTN_UNICAST, RTN_BLACKHOLE, RTN_UNREACHABLE and RTN_PROHIBIT, which
// vishvananda/netlink users put in Rule.Type.
const (
	// FR_ACT_TO_TBL: look the destination up in Rule.Table (`lookup`, the default).
	FR_ACT_TO_TBL = C.NETKIT_RULE_LOOKUP
	// FR_ACT_GOTO: jump to another rule (reported only; RuleAdd cannot make it).
	FR_ACT_GOTO = 2
	// FR_ACT_NOP: do nothing, go on with the next rule (`nop`).
	FR_ACT_NOP = C.NETKIT_RULE_NOP
	// FR_ACT_BLACKHOLE: drop silently (`blackhole`).
	FR_ACT_BLACKHOLE = C.NETKIT_RULE_BLACKHOLE
	// FR_ACT_UNREACHABLE: drop with ICMP network unreachable (`unreachable`).
	FR_ACT_UNREACHABLE = C.NETKIT_RULE_UNREACHABLE
	// FR_ACT_PROHIBIT: drop with ICMP administratively prohibited (`prohibit`).
	FR_ACT_PROHIBIT = C.NETKIT_RULE_PROHIBIT
)

// Rule is a policy routing rule (`ip rule`), as vishvananda/netlink's Rule.
//
// Priority, Mark, Mask and SuppressPrefixlen use vishvananda/netlink's convention: -1 means
// "not set", 0 is a value (priority 0, suppress_prefixlength 0). Start from NewRule(), which
// sets them to -1, and set what the rule matches: a zero Rule{} has priority 0 and
// suppress_prefixlength 0. For RuleDel only the fields that are set select the rule: a
// NewRule() with only Priority set deletes the rule of that priority (a Rule{Priority: P}
// selects suppress_prefixlength 0 too, and so usually nothing).
//
// vishvananda/netlink fields libnetkit cannot express (Goto, Flow, TunID, SuppressIfgroup,
// port ranges, IPProto, UID ranges) are not here, so code using them does not compile rather
// than making a different rule.
type Rule struct {
	// Priority (`priority N`); -1: not set (RuleAdd: the kernel picks one).
	Priority int
	// Family: FAMILY_V4 or FAMILY_V6; FAMILY_ALL: the family of Src or Dst when one is set,
	// else IPv4 (as `ip rule`).
	Family int
	// Table looked up (`lookup T`); 0 (or negative): main when adding with FR_ACT_TO_TBL,
	// any when deleting.
	Table int
	// Mark is the firewall mark to match (`fwmark MARK`); -1: not set. As for the kernel, a
	// Mark of 0 without a Mask is not set either: to match packets without a mark, set Mask
	// (0xffffffff) too.
	Mark int
	// Mask is the mark's mask (`fwmark MARK/MASK`); -1 (or 0): 0xffffffff, an exact mark.
	// RuleList reports -1 when the kernel reported no mask.
	Mask int
	// Src is the source prefix (`from P`); nil: all.
	Src *net.IPNet
	// Dst is the destination prefix (`to P`); nil: all.
	Dst *net.IPNet
	// IifName is the input device (`iif DEV`; "lo" for locally generated traffic); "": any.
	// The device may not exist yet.
	IifName string
	// OifName is the output device (`oif DEV`); "": any.
	OifName string
	// SuppressPrefixlen ignores lookup results with a prefix length at most this
	// (`suppress_prefixlength N`); -1: not set.
	SuppressPrefixlen int
	// Invert inverts the selector (`not`).
	Invert bool
	// Type is the action: FR_ACT_*; 0: lookup when adding, any when deleting.
	Type int
	// Tos is the TOS selector (reported by RuleList; RuleAdd refuses a non-zero Tos, RuleDel
	// ignores it).
	Tos uint
	// Protocol is who installed the rule (a route protocol number, reported by RuleList;
	// ignored by RuleAdd and RuleDel).
	Protocol int
}

// NewRule returns a rule with nothing set: Priority, Mark, Mask and SuppressPrefixlen are -1
// (as vishvananda/netlink's NewRule).
func NewRule() *Rule {
	return &Rule{Priority: -1, Mark: -1, Mask: -1, SuppressPrefixlen: -1}
}

// String is the rule roughly as `ip rule` prints it ("ip rule 1000: from 10.0.0.0/24 to all
// table 100").
func (r Rule) String() string {
	from, to := "all", "all"
	if r.Src != nil {
		from = r.Src.String()
	}
	if r.Dst != nil {
		to = r.Dst.String()
	}
	return fmt.Sprintf("ip rule %d: from %s to %s table %d", r.Priority, from, to, r.Table)
}

// ruleCall fills a netkit_rule_config from r and runs f with it.
func (h *Handle) ruleCall(r *Rule, adding bool, f func(p *C.netkit_handle, cfg *C.netkit_rule_config, e **C.netkit_error) C.int) error {
	if r == nil {
		return invalidf("nil rule")
	}
	if adding && r.Tos != 0 {
		return invalidf("rule %v: a TOS selector cannot be added", r)
	}
	if r.Family < 0 || r.Family > 255 || r.Type < 0 || r.Type > 255 ||
		!fitsU32(r.Priority, r.Mark, r.Mask, r.Table, r.SuppressPrefixlen) {
		return invalidf("rule %v: a field is out of range", r)
	}
	var a arena
	defer a.free()
	var cfg C.netkit_rule_config
	var err error
	cfg.family = C.uint8_t(r.Family)
	if r.Priority >= 0 {
		cfg.set_priority = true
		cfg.priority = C.uint32_t(r.Priority)
	}
	if r.Table > 0 {
		cfg.table = C.uint32_t(r.Table)
	}
	if cfg.from, err = cPrefix(r.Src); err != nil {
		return err
	}
	if cfg.to, err = cPrefix(r.Dst); err != nil {
		return err
	}
	switch {
	case r.Mark > 0 || (r.Mark == 0 && r.Mask > 0):
		cfg.set_fwmark = true
		cfg.fwmark = C.uint32_t(r.Mark)
		if r.Mask > 0 {
			cfg.fwmask = C.uint32_t(r.Mask)
		}
	case r.Mask > 0:
		return invalidf("rule %v: a mask without a mark", r)
	}
	cfg.iif = a.optStr("input device", r.IifName)
	cfg.oif = a.optStr("output device", r.OifName)
	if a.err != nil {
		return a.err
	}
	cfg.action = C.uint8_t(r.Type)
	cfg.invert = C.bool(r.Invert)
	if r.SuppressPrefixlen >= 0 {
		cfg.set_suppress_prefixlen = true
		cfg.suppress_prefixlen = C.uint32_t(r.SuppressPrefixlen)
	}
	return h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(f(p, &cfg, &cerr), cerr)
	})
}

// RuleAdd adds rule (`ip rule add`). ErrExists when an identical rule is there; ErrInvalid
// for an action that is no FR_ACT_* libnetkit can make or a prefix of the other family.
func (h *Handle) RuleAdd(rule *Rule) error {
	return h.ruleCall(rule, true, func(p *C.netkit_handle, cfg *C.netkit_rule_config, e **C.netkit_error) C.int {
		return C.netkit_rule_add(p, cfg, e)
	})
}

// RuleDel deletes the first rule matching the fields of rule that are set (`ip rule del`).
// A rule already gone is success.
func (h *Handle) RuleDel(rule *Rule) error {
	return h.ruleCall(rule, false, func(p *C.netkit_handle, cfg *C.netkit_rule_config, e **C.netkit_error) C.int {
		return C.netkit_rule_del(p, cfg, e)
	})
}

// RuleList returns the rules of family (FAMILY_ALL, FAMILY_V4, FAMILY_V6) in priority order
// (`ip rule show`), as vishvananda/netlink's RuleList.
func (h *Handle) RuleList(family int) ([]Rule, error) {
	if family < 0 || family > 255 {
		return nil, invalidf("family %d", family)
	}
	var rules *C.netkit_rule
	var n C.uintptr_t
	err := h.use(func(p *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(C.netkit_rule_list(p, C.uint8_t(family), &rules, &n, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	defer C.netkit_rule_list_free(rules, n)
	out := []Rule{}
	for i, all := 0, unsafe.Slice(rules, int(n)); i < len(all); i++ {
		out = append(out, goRule(&all[i]))
	}
	return out, nil
}

// fitsU32 reports whether every value is negative ("not set") or fits in 32 bits.
func fitsU32(values ...int) bool {
	for _, v := range values {
		if v > 0 && uint64(v) > math.MaxUint32 {
			return false
		}
	}
	return true
}

// goRule converts a reported rule.
func goRule(c *C.netkit_rule) Rule {
	r := Rule{
		Priority:          int(c.priority),
		Family:            int(c.family),
		Table:             int(c.table),
		Mark:              -1,
		Mask:              -1,
		Src:               goPrefix(&c.from),
		Dst:               goPrefix(&c.to),
		IifName:           goStr(c.iif),
		OifName:           goStr(c.oif),
		SuppressPrefixlen: -1,
		Invert:            bool(c.invert),
		Type:              int(c.action),
		Tos:               uint(c.tos),
		Protocol:          int(c.protocol),
	}
	// The kernel reports a mark of 0 (under a mask) by the mask alone, as `ip rule` reads it.
	if c.has_fwmark || c.fwmask != 0 {
		r.Mark = int(c.fwmark)
		if c.fwmask != 0 {
			r.Mask = int(c.fwmask)
		}
	}
	if c.has_suppress_prefixlen {
		r.SuppressPrefixlen = int(c.suppress_prefixlen)
	}
	return r
}
