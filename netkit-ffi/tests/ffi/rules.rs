//! Policy routing rules through the ABI (lookup with from/priority, fwmark, iif, an IPv6
//! prohibit rule whose family comes from its prefix), compared with `ip -j rule show`.

use netkit::conv::*;
use netkit::error::*;
use netkit::rule::*;
use netkit_test_support::cmd::ipj_list;
use serde_json::Value;

use crate::common::{cs, fails, ok, Ns, Zeroed};
use crate::routes::prefix;

/// A listed rule: priority, table, action, from, to, (fwmark, fwmask), iif.
type Row = (
    u32,
    u32,
    u8,
    netkit_prefix,
    netkit_prefix,
    Option<(u32, u32)>,
    Option<String>,
);

/// The rules the ABI lists for `family`, copied out (strings as Rust strings).
fn listed(t: &Ns, family: u8) -> Vec<Row> {
    let (mut rules, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: valid arguments.
    ok(|e| unsafe { netkit_rule_list(t.h, family, &mut rules, &mut len, e) });
    // SAFETY: `len` rules at `rules`, each with its strings; freed once after.
    unsafe {
        let out = std::slice::from_raw_parts(rules, len)
            .iter()
            .map(|r| {
                let iif = (!r.iif.is_null()).then(|| std::ffi::CStr::from_ptr(r.iif).to_str().unwrap().to_string());
                let mark = r.has_fwmark.then_some((r.fwmark, r.fwmask));
                (r.priority, r.table, r.action, r.from, r.to, mark, iif)
            })
            .collect();
        netkit_rule_list_free(rules, len);
        out
    }
}

/// `ip -j [-6] rule show` entry with this priority.
fn ip_rule(t: &Ns, v6: bool, priority: u64) -> Option<Value> {
    let args: &[&str] = if v6 { &["-6", "rule", "show"] } else { &["rule", "show"] };
    ipj_list(t.name(), args)
        .into_iter()
        .find(|r| r["priority"].as_u64() == Some(priority))
}

#[test]
fn rules_add_list_delete_against_ip() {
    let t = Ns::new("frule");
    let mut r = netkit_rule_config::zeroed();
    r.from = prefix("10.0.0.7/24");
    r.table = 100;
    r.set_priority = true;
    r.priority = 1000;
    // SAFETY: valid arguments throughout.
    ok(|e| unsafe { netkit_rule_add(t.h, &r, e) });
    // SAFETY: as above.
    fails(NETKIT_E_EXISTS, |e| unsafe { netkit_rule_add(t.h, &r, e) });
    let shown = ip_rule(&t, false, 1000).expect("ip shows the rule");
    assert_eq!(
        (shown["src"].as_str(), shown["srclen"].as_u64(), shown["table"].as_str()),
        (Some("10.0.0.0"), Some(24), Some("100")),
        "{shown}"
    );

    let mut m = netkit_rule_config::zeroed();
    m.set_fwmark = true;
    m.fwmark = 0x1;
    m.fwmask = 0xff;
    m.table = 200;
    m.set_priority = true;
    m.priority = 1001;
    // SAFETY: as above.
    ok(|e| unsafe { netkit_rule_add(t.h, &m, e) });
    let shown = ip_rule(&t, false, 1001).expect("the fwmark rule");
    assert_eq!(
        (shown["fwmark"].as_str(), shown["fwmask"].as_str()),
        (Some("0x1"), Some("0xff")),
        "{shown}"
    );

    let lo = cs("lo");
    let mut i = netkit_rule_config::zeroed();
    i.iif = lo.as_ptr();
    i.action = NETKIT_RULE_BLACKHOLE;
    i.set_priority = true;
    i.priority = 1002;
    // SAFETY: as above.
    ok(|e| unsafe { netkit_rule_add(t.h, &i, e) });
    let shown = ip_rule(&t, false, 1002).expect("the iif rule");
    assert_eq!(
        (shown["iif"].as_str(), shown["action"].as_str()),
        (Some("lo"), Some("blackhole")),
        "{shown}"
    );

    // Family 0 with an IPv6 prefix: an IPv6 rule.
    let mut p6 = netkit_rule_config::zeroed();
    p6.to = prefix("fd00:dead::/32");
    p6.action = NETKIT_RULE_PROHIBIT;
    p6.set_priority = true;
    p6.priority = 500;
    // SAFETY: as above.
    ok(|e| unsafe { netkit_rule_add(t.h, &p6, e) });
    let shown = ip_rule(&t, true, 500).expect("the IPv6 rule");
    assert_eq!(
        (shown["dst"].as_str(), shown["action"].as_str()),
        (Some("fd00:dead::"), Some("prohibit")),
        "{shown}"
    );

    // The ABI lists what ip shows.
    let v4 = listed(&t, NETKIT_AF_INET);
    let ours: Vec<_> = v4.iter().filter(|r| (1000..=1002).contains(&r.0)).cloned().collect();
    let none = netkit_prefix::default();
    assert_eq!(
        ours,
        [
            (1000, 100, NETKIT_RULE_LOOKUP, prefix("10.0.0.0/24"), none, None, None),
            (1001, 200, NETKIT_RULE_LOOKUP, none, none, Some((0x1, 0xff)), None),
            (1002, 0, NETKIT_RULE_BLACKHOLE, none, none, None, Some("lo".to_string())),
        ]
    );
    let priorities: Vec<u32> = v4.iter().map(|r| r.0).collect();
    assert_eq!(priorities, [0, 1000, 1001, 1002, 32766, 32767], "priority order");
    let v6 = listed(&t, NETKIT_AF_INET6);
    assert!(
        v6.iter()
            .any(|r| r.0 == 500 && r.2 == NETKIT_RULE_PROHIBIT && r.4 == prefix("fd00:dead::/32")),
        "{v6:?}"
    );
    assert_eq!(listed(&t, 0).len(), v4.len() + v6.len(), "0 lists both families");

    // Delete by priority alone, twice (idempotent); the others stay.
    let mut d = netkit_rule_config::zeroed();
    d.set_priority = true;
    d.priority = 1000;
    // SAFETY: as above.
    ok(|e| unsafe { netkit_rule_del(t.h, &d, e) });
    // SAFETY: as above.
    ok(|e| unsafe { netkit_rule_del(t.h, &d, e) });
    assert!(ip_rule(&t, false, 1000).is_none());
    assert!(ip_rule(&t, false, 1001).is_some());
    d.family = NETKIT_AF_INET6;
    d.priority = 500;
    // SAFETY: as above.
    ok(|e| unsafe { netkit_rule_del(t.h, &d, e) });
    assert!(ip_rule(&t, true, 500).is_none());
}

#[test]
fn rule_arguments_are_checked() {
    let t = Ns::new("frulebad");
    let mut r = netkit_rule_config::zeroed();
    r.action = 42;
    // SAFETY: valid pointers; the values are what is tested.
    let f = fails(NETKIT_E_INVALID, |e| unsafe { netkit_rule_add(t.h, &r, e) });
    assert!(f.message.contains("cfg.action"), "{f:?}");
    r.action = 0;
    r.family = NETKIT_AF_INET;
    r.from = prefix("fd00::/8");
    // SAFETY: as above.
    let f = fails(NETKIT_E_INVALID, |e| unsafe { netkit_rule_add(t.h, &r, e) });
    assert!(f.message.contains("fd00::/8"), "{f:?}");
    r.family = 9;
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe { netkit_rule_add(t.h, &r, e) });
    let bad = [b'l', 0xff, 0];
    let mut i = netkit_rule_config::zeroed();
    i.iif = bad.as_ptr().cast();
    // SAFETY: a NUL-terminated, non-UTF-8 string.
    let f = fails(NETKIT_E_INVALID, |e| unsafe { netkit_rule_add(t.h, &i, e) });
    assert!(f.message.contains("cfg.iif"), "{f:?}");
    let (mut rules, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_rule_list(t.h, 3, &mut rules, &mut len, e)
    });
    // SAFETY: NULL config.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_rule_del(t.h, std::ptr::null(), e)
    });
}
