//! `netkit rule add|del|show`: iproute2's rule words turned into netkit-core's [`Rule`], and
//! rules printed as `ip rule show` prints them (text and `-j` keys: `priority`, `not`, `src`,
//! `srclen`, `dst`, `dstlen`, `tos`, `fwmark`, `fwmask`, `iif`, `iif_detached`, `oif`,
//! `oif_detached`, `table`, `suppress_prefixlen`, `action`, `nop`, `protocol`).
//!
//! Decisions where `ip` leaves a choice: `rule del` with no word at all is a usage error (the
//! kernel would delete the first rule, `local`); a `del` that matches nothing is a note, as
//! netkit's other `del` verbs. `rule show` takes no filters. Selectors netkit-core does not
//! model (uidrange, ipproto, sport/dport, goto, realms, l3mdev) are neither read nor printed.

use ipnetwork::IpNetwork;
use netkit_core::route::protocol;
use netkit_core::rule::{RuleAction, RuleInfo};
use netkit_core::{Handle, IpFamily, Rule};
use serde_json::{json, Map, Value};

use crate::cli::{Global, RuleVerb};
use crate::error::CliError;
use crate::output::{protocol_name, table_name, Output};
use crate::route::parse_table;
use crate::words::{parse_word, WordReader};
use crate::Session;

/// Run one `rule` verb in the namespace of `-n` (or the current one).
pub async fn run(session: &mut Session, global: &Global, out: &Output, verb: RuleVerb) -> Result<(), CliError> {
    let h = session.handle(global.netns.as_deref()).await?;
    let family = crate::family(global);
    match verb {
        RuleVerb::Add { args } => h.rule_add(&parse_rule("rule add", &args.words, family)?).await?,
        RuleVerb::Del { args } => {
            if args.words.is_empty() {
                return Err(CliError::usage(format!("rule del: say which rule (give {RULE_WORDS})")));
            }
            let rule = parse_rule("rule del", &args.words, family)?;
            if !h.rule_remove(&rule).await? {
                out.note(&format!(
                    "no rule matches \"{}\" in netns {}: nothing to delete",
                    args.words.join(" "),
                    h.netns()
                ));
            }
        }
        RuleVerb::Show { args } => {
            WordReader::new(&args.words, "rule show").finish("nothing (rule show takes no filters)")?;
            show(&h, out, family.unwrap_or(IpFamily::V4)).await?;
        }
    }
    Ok(())
}

const RULE_WORDS: &str = "not, from, to, fwmark, iif, oif, priority, table, lookup, suppress_prefixlength, \
                          blackhole, unreachable, prohibit or nop";

/// Read a number as iproute2 does (`get_u32` with base 0): decimal, or hex after `0x`.
fn parse_number(word: &str) -> Option<u32> {
    match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => word.parse().ok(),
    }
}

/// Read `MARK[/MASK]`; without a mask, every bit counts (`0xffffffff`).
fn parse_fwmark(word: &str) -> Option<(u32, u32)> {
    match word.split_once('/') {
        Some((mark, mask)) => Some((parse_number(mark)?, parse_number(mask)?)),
        None => Some((parse_number(word)?, u32::MAX)),
    }
}

/// Read the prefix after `from`/`to`: `all` (also `any`, `default`) is no selector.
fn parse_prefix(r: &mut WordReader<'_>, key: &str) -> Result<Option<IpNetwork>, CliError> {
    match r.value(key)? {
        "all" | "any" | "default" => Ok(None),
        w => parse_word(w, key, "a prefix like 10.0.0.0/24, or all")
            .map(Some)
            .map_err(|e| r.error(e)),
    }
}

/// Read the words of `rule add|del` (see the verb's help). The family is `-4`/`-6`, else that
/// of the prefixes, else IPv4 (as ip).
pub fn parse_rule(context: &str, words: &[String], family: Option<IpFamily>) -> Result<Rule, CliError> {
    let mut r = WordReader::new(words, context);
    let (mut invert, mut from, mut to, mut fwmark, mut iif, mut oif) = (false, None, None, None, None, None);
    let (mut priority, mut table, mut suppress, mut action) = (None, None, None, None);
    while let Some(w) = r.next() {
        match w {
            "not" => invert = true,
            "from" => from = parse_prefix(&mut r, w)?,
            "to" => to = parse_prefix(&mut r, w)?,
            "fwmark" => {
                let v = r.value(w)?;
                fwmark = Some(parse_fwmark(v).ok_or_else(|| {
                    r.error(format!(
                        "\"fwmark\" wants MARK or MARK/MASK (numbers, 0x… for hex), not \"{v}\""
                    ))
                })?);
            }
            "iif" | "dev" => iif = Some(r.value(w)?.to_string()),
            "oif" => oif = Some(r.value(w)?.to_string()),
            "priority" | "pref" | "preference" | "order" => priority = Some(r.parse(w, "a number")?),
            "table" | "lookup" => table = Some(parse_table(&mut r, w)?),
            "suppress_prefixlength" | "sup_pl" => suppress = Some(r.parse(w, "a prefix length")?),
            "blackhole" | "unreachable" | "prohibit" | "nop" if action.is_none() => {
                action = Some(match w {
                    "blackhole" => RuleAction::Blackhole,
                    "unreachable" => RuleAction::Unreachable,
                    "prohibit" => RuleAction::Prohibit,
                    _ => RuleAction::Nop,
                })
            }
            w => return Err(r.unexpected(w, RULE_WORDS)),
        }
    }
    let of = |p: Option<IpNetwork>| p.map(|p| IpFamily::of(p.ip()));
    let family = match (family, of(from), of(to)) {
        (Some(f), _, _) => f,
        (None, Some(f), _) | (None, None, Some(f)) => f,
        (None, None, None) => IpFamily::V4,
    };
    for (key, p) in [("from", from), ("to", to)] {
        if let Some(p) = p.filter(|p| IpFamily::of(p.ip()) != family) {
            return Err(r.error(format!("\"{key} {p}\" is not an {family} prefix")));
        }
    }
    let mut rule = Rule::new(family);
    if invert {
        rule = rule.invert();
    }
    if let Some(p) = from {
        rule = rule.from(p);
    }
    if let Some(p) = to {
        rule = rule.to(p);
    }
    if let Some((mark, mask)) = fwmark {
        rule = rule.fwmark(mark, mask);
    }
    if let Some(d) = &iif {
        rule = rule.iif(d);
    }
    if let Some(d) = &oif {
        rule = rule.oif(d);
    }
    if let Some(p) = priority {
        rule = rule.priority(p);
    }
    if let Some(t) = table {
        rule = rule.table(t);
    }
    if let Some(l) = suppress {
        rule = rule.suppress_prefixlen(l);
    }
    if let Some(a) = action {
        rule = rule.action(a);
    }
    Ok(rule)
}

/// Print the rules of `family`, as `ip rule show`.
async fn show(h: &Handle, out: &Output, family: IpFamily) -> Result<(), CliError> {
    let rules = h.rule_list(Some(family)).await?;
    out.list(rules.iter().map(rule_json), rules.iter().map(rule_text));
    Ok(())
}

/// A number as C's `%#x` prints it (`0x1f`, but `0` for zero), as ip prints marks.
fn hex(n: u32) -> String {
    if n == 0 {
        "0".into()
    } else {
        format!("{n:#x}")
    }
}

/// A prefix as ip prints a rule's: the address, and the length unless it is a host's.
fn prefix_parts(p: &IpNetwork) -> (String, Option<u8>) {
    let host = if p.is_ipv4() { 32 } else { 128 };
    (p.ip().to_string(), (p.prefix() != host).then_some(p.prefix()))
}

/// The action as ip prints it after the selectors: `None` for a lookup.
fn action_name(a: RuleAction) -> Option<String> {
    match a {
        RuleAction::Table => None,
        RuleAction::Other(n) => Some(n.to_string()),
        a => Some(a.to_string()),
    }
}

/// The fwmark and, unless every bit counts, its mask, as ip prints them.
fn mark_parts(r: &RuleInfo) -> Option<(String, Option<String>)> {
    if r.fwmark.is_none() && r.fwmask.is_none() {
        return None;
    }
    let mask = r.fwmask.unwrap_or(u32::MAX);
    Some((hex(r.fwmark.unwrap_or(0)), (mask != u32::MAX).then(|| hex(mask))))
}

/// Whether ip prints the rule's protocol without `-d` (set, and not `kernel`).
fn shown_protocol(r: &RuleInfo) -> Option<String> {
    (r.protocol != 0 && r.protocol != protocol::KERNEL).then(|| protocol_name(r.protocol))
}

/// `ip -j rule show`'s object for one rule.
pub fn rule_json(r: &RuleInfo) -> Value {
    let mut m = Map::new();
    m.insert("priority".into(), json!(r.priority));
    if r.invert {
        m.insert("not".into(), Value::Null);
    }
    match &r.from {
        Some(p) => {
            let (ip, len) = prefix_parts(p);
            m.insert("src".into(), json!(ip));
            if let Some(len) = len {
                m.insert("srclen".into(), json!(len));
            }
        }
        None => {
            m.insert("src".into(), json!("all"));
        }
    }
    if let Some(p) = &r.to {
        let (ip, len) = prefix_parts(p);
        m.insert("dst".into(), json!(ip));
        if let Some(len) = len {
            m.insert("dstlen".into(), json!(len));
        }
    }
    if r.tos != 0 {
        m.insert("tos".into(), json!(format!("0x{:02x}", r.tos)));
    }
    if let Some((mark, mask)) = mark_parts(r) {
        m.insert("fwmark".into(), json!(mark));
        if let Some(mask) = mask {
            m.insert("fwmask".into(), json!(mask));
        }
    }
    for (key, dev, detached) in [("iif", &r.iif, r.iif_detached), ("oif", &r.oif, r.oif_detached)] {
        if let Some(d) = dev {
            m.insert(key.into(), json!(d));
            if detached {
                m.insert(format!("{key}_detached"), Value::Null);
            }
        }
    }
    if r.table != 0 {
        m.insert("table".into(), json!(table_name(r.table)));
        if let Some(l) = r.suppress_prefixlen {
            m.insert("suppress_prefixlen".into(), json!(l));
        }
    }
    match r.action {
        RuleAction::Nop => {
            m.insert("nop".into(), Value::Null);
        }
        a => {
            if let Some(name) = action_name(a) {
                m.insert("action".into(), json!(name));
            }
        }
    }
    if let Some(p) = shown_protocol(r) {
        m.insert("protocol".into(), json!(p));
    }
    Value::Object(m)
}

/// `ip rule show`'s line for one rule: `1000:\tfrom 10.0.0.0/24 lookup 100`.
pub fn rule_text(r: &RuleInfo) -> String {
    let mut words = Vec::new();
    if r.invert {
        words.push("not".to_string());
    }
    let prefix = |p: &IpNetwork| match prefix_parts(p) {
        (ip, Some(len)) => format!("{ip}/{len}"),
        (ip, None) => ip,
    };
    words.push(format!("from {}", r.from.as_ref().map_or("all".into(), prefix)));
    if let Some(p) = &r.to {
        words.push(format!("to {}", prefix(p)));
    }
    if r.tos != 0 {
        words.push(format!("tos 0x{:02x}", r.tos));
    }
    if let Some((mark, mask)) = mark_parts(r) {
        words.push(match mask {
            Some(mask) => format!("fwmark {mark}/{mask}"),
            None => format!("fwmark {mark}"),
        });
    }
    for (key, dev, detached) in [("iif", &r.iif, r.iif_detached), ("oif", &r.oif, r.oif_detached)] {
        if let Some(d) = dev {
            words.push(format!("{key} {d}"));
            if detached {
                words.push("[detached]".into());
            }
        }
    }
    if r.table != 0 {
        words.push(format!("lookup {}", table_name(r.table)));
        if let Some(l) = r.suppress_prefixlen {
            words.push(format!("suppress_prefixlength {l}"));
        }
    }
    words.extend(action_name(r.action));
    if let Some(p) = shown_protocol(r) {
        words.push(format!("proto {p}"));
    }
    format!("{}:\t{}", r.priority, words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::tests::w;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn rules_read_like_ip() {
        let r = parse_rule("rule add", &w("from 10.0.0.7/24 table 100 priority 1000"), None).unwrap();
        assert_eq!(r, Rule::v4().from(net("10.0.0.0/24")).table(100).priority(1000));
        let r = parse_rule(
            "rule add",
            &w("not to 10.1.0.0/16 fwmark 0x1/0xff iif r0 lookup main pref 7"),
            None,
        )
        .unwrap();
        assert_eq!(
            r,
            Rule::v4()
                .invert()
                .to(net("10.1.0.0/16"))
                .fwmark(1, 0xff)
                .iif("r0")
                .table(254)
                .priority(7)
        );
        let r = parse_rule("rule add", &w("from all fwmark 5 oif r1 blackhole"), None).unwrap();
        assert_eq!(r, Rule::v4().fwmark(5, u32::MAX).oif("r1").blackhole());
        // The family comes from -6 or from the prefixes.
        assert_eq!(
            parse_rule("rule add", &w("to fd00::/8 prohibit"), None).unwrap(),
            Rule::v6().to(net("fd00::/8")).prohibit()
        );
        assert_eq!(
            parse_rule(
                "rule add",
                &w("lookup local suppress_prefixlength 0"),
                Some(IpFamily::V6)
            )
            .unwrap(),
            Rule::v6().table(255).suppress_prefixlen(0)
        );
    }

    #[test]
    fn rule_usage_errors_name_the_word() {
        for (context, words, want) in [
            ("rule add", "sideways", "unexpected \"sideways\""),
            ("rule add", "from", "\"from\" needs a value"),
            ("rule add", "from 10.0.0.0/33", "\"from\" wants a prefix"),
            ("rule add", "fwmark 0xzz", "\"fwmark\" wants MARK or MARK/MASK"),
            ("rule add", "fwmark 1/", "\"fwmark\" wants MARK or MARK/MASK"),
            (
                "rule add",
                "table x",
                "\"table\" wants main, local, default or a number",
            ),
            ("rule add", "lookup", "\"lookup\" needs a value"),
            ("rule add", "pref -1", "\"pref\" wants a number"),
            ("rule add", "from 10.0.0.0/8 to fd00::/8", "\"to fd00::/8\" is not an"),
            ("rule del", "blackhole prohibit", "unexpected \"prohibit\""),
        ] {
            let e = parse_rule(context, &w(words), None).unwrap_err();
            assert_eq!(e.exit_code(), crate::EXIT_USAGE, "{words}");
            assert!(e.to_string().starts_with(context), "{words}: {e}");
            assert!(e.to_string().contains(want), "{words}: {e}");
        }
        assert!(parse_rule("rule add", &w("from 10.0.0.0/8"), Some(IpFamily::V6)).is_err());
    }

    fn info(family: IpFamily, priority: u32, table: u32) -> RuleInfo {
        RuleInfo {
            family,
            priority,
            table,
            action: RuleAction::Table,
            from: None,
            to: None,
            fwmark: None,
            fwmask: None,
            iif: None,
            oif: None,
            invert: false,
            suppress_prefixlen: None,
            iif_detached: false,
            oif_detached: false,
            protocol: 0,
            tos: 0,
        }
    }

    #[test]
    fn printed_as_ip_prints_them() {
        let r = info(IpFamily::V4, 0, 255);
        assert_eq!(rule_text(&r), "0:\tfrom all lookup local");
        assert_eq!(rule_json(&r), json!({"priority": 0, "src": "all", "table": "local"}));

        let mut r = info(IpFamily::V4, 1001, 254);
        r.invert = true;
        r.to = Some(net("10.1.0.0/16"));
        (r.fwmark, r.fwmask) = (Some(1), Some(0xff));
        r.iif = Some("nosuch".into());
        r.iif_detached = true;
        assert_eq!(
            rule_text(&r),
            "1001:\tnot from all to 10.1.0.0/16 fwmark 0x1/0xff iif nosuch [detached] lookup main"
        );
        assert_eq!(
            rule_json(&r),
            json!({"priority": 1001, "not": null, "src": "all", "dst": "10.1.0.0", "dstlen": 16,
                   "fwmark": "0x1", "fwmask": "0xff", "iif": "nosuch", "iif_detached": null, "table": "main"})
        );

        let mut r = info(IpFamily::V4, 999, 0);
        r.to = Some(net("10.2.3.4/32"));
        (r.fwmark, r.fwmask) = (Some(5), Some(u32::MAX));
        r.action = RuleAction::Prohibit;
        r.protocol = protocol::STATIC;
        assert_eq!(
            rule_text(&r),
            "999:\tfrom all to 10.2.3.4 fwmark 0x5 prohibit proto static"
        );
        let j = rule_json(&r);
        assert_eq!(
            (&j["dst"], &j["action"], &j["fwmark"]),
            (&json!("10.2.3.4"), &json!("prohibit"), &json!("0x5"))
        );
        assert!(j.get("dstlen").is_none() && j.get("fwmask").is_none() && j.get("table").is_none());

        let mut r = info(IpFamily::V4, 5, 254);
        r.suppress_prefixlen = Some(0);
        r.protocol = protocol::KERNEL;
        assert_eq!(rule_text(&r), "5:\tfrom all lookup main suppress_prefixlength 0");
        assert_eq!(rule_json(&r)["suppress_prefixlen"], 0);
        assert_eq!(hex(0), "0");
    }
}
