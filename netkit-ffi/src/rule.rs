//! Policy routing rules: add, delete, list (`ip rule`).

use std::ffi::{c_char, c_int};

use netkit_core::rule::{RuleAction, RuleInfo};
use netkit_core::{IpFamily, Rule};

use crate::conv::{af_of, family_arg, netkit_prefix, opt_str, out_arg, put, ref_arg};
use crate::error::{status, Error};
use crate::handle::netkit_handle;
use crate::runtime::wait;
use crate::{netkit_error, own};

/// Rule action `lookup TABLE` (the default when adding, also for 0). The numbers are the
/// kernel's `FR_ACT_*`.
pub const NETKIT_RULE_LOOKUP: u8 = 1;
/// Rule action `nop`: go on with the next rule.
pub const NETKIT_RULE_NOP: u8 = 3;
/// Rule action `blackhole`: drop silently.
pub const NETKIT_RULE_BLACKHOLE: u8 = 6;
/// Rule action `unreachable`: drop with ICMP network unreachable.
pub const NETKIT_RULE_UNREACHABLE: u8 = 7;
/// Rule action `prohibit`: drop with ICMP administratively prohibited.
pub const NETKIT_RULE_PROHIBIT: u8 = 8;

/// A rule to add or delete (`ip rule add|del …`). Zero-initialise, then set the fields. For a
/// deletion only the fields that are set select the rule (the first match goes).
#[repr(C)]
#[derive(Debug)]
pub struct netkit_rule_config {
    /// `NETKIT_AF_INET` or `NETKIT_AF_INET6`; 0: the family of `from` / `to` when one is set,
    /// else IPv4 (as `ip rule`).
    pub family: u8,
    /// Use `priority` (0 is a valid priority, the `local` rule's).
    pub set_priority: bool,
    /// Priority (`priority N`); without it the kernel picks one when adding.
    pub priority: u32,
    /// Table (`lookup T`); 0: main when adding with the lookup action, any when deleting.
    pub table: u32,
    /// Source prefix (`from P`); family 0: all.
    pub from: netkit_prefix,
    /// Destination prefix (`to P`); family 0: all.
    pub to: netkit_prefix,
    /// Match the firewall mark (`fwmark MARK/MASK`).
    pub set_fwmark: bool,
    /// The mark (when `set_fwmark`).
    pub fwmark: u32,
    /// The mark's mask (when `set_fwmark`); 0: 0xffffffff (an exact mark).
    pub fwmask: u32,
    /// Input device name (`iif DEV`, `lo` for local traffic); NULL: any. The device may not
    /// exist yet.
    pub iif: *const c_char,
    /// Output device name (`oif DEV`); NULL: any.
    pub oif: *const c_char,
    /// `NETKIT_RULE_*`; 0: lookup when adding, any when deleting.
    pub action: u8,
    /// Invert the selector (`not`).
    pub invert: bool,
    /// Use `suppress_prefixlen`.
    pub set_suppress_prefixlen: bool,
    /// Ignore lookup results with a prefix length at most this (`suppress_prefixlength N`).
    pub suppress_prefixlen: u32,
}

/// A rule as the kernel reports it (`ip rule show`). Freed with the array it came in
/// (`netkit_rule_list_free`); its strings belong to it.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_rule {
    /// `NETKIT_AF_INET` or `NETKIT_AF_INET6`.
    pub family: u8,
    /// Priority (0 for the `local` rule).
    pub priority: u32,
    /// Table looked up (0 when the action is not a lookup).
    pub table: u32,
    /// `NETKIT_RULE_*` or another `FR_ACT_*` number (2: goto).
    pub action: u8,
    /// Source prefix; family 0: all.
    pub from: netkit_prefix,
    /// Destination prefix; family 0: all.
    pub to: netkit_prefix,
    /// True when the rule matches a firewall mark.
    pub has_fwmark: bool,
    /// The mark (when `has_fwmark`).
    pub fwmark: u32,
    /// The mark's mask as reported (0 when the kernel reported none).
    pub fwmask: u32,
    /// Input device name; NULL: any.
    pub iif: *mut c_char,
    /// Output device name; NULL: any.
    pub oif: *mut c_char,
    /// Selector inverted (`not`).
    pub invert: bool,
    /// True when `suppress_prefixlen` is set.
    pub has_suppress_prefixlen: bool,
    /// `suppress_prefixlength` (when `has_suppress_prefixlen`).
    pub suppress_prefixlen: u32,
    /// The `iif` device does not exist (`[detached]`): the rule matches nothing yet.
    pub iif_detached: bool,
    /// The `oif` device does not exist.
    pub oif_detached: bool,
    /// Who installed the rule (a route protocol number; 0 when unset).
    pub protocol: u8,
    /// The TOS selector, 0 for any.
    pub tos: u8,
}

fn action_to_u8(a: RuleAction) -> u8 {
    match a {
        RuleAction::Table => NETKIT_RULE_LOOKUP,
        RuleAction::Nop => NETKIT_RULE_NOP,
        RuleAction::Blackhole => NETKIT_RULE_BLACKHOLE,
        RuleAction::Unreachable => NETKIT_RULE_UNREACHABLE,
        RuleAction::Prohibit => NETKIT_RULE_PROHIBIT,
        RuleAction::Other(n) => n,
    }
}

fn action_from_u8(n: u8) -> Result<RuleAction, Error> {
    Ok(match n {
        NETKIT_RULE_LOOKUP => RuleAction::Table,
        NETKIT_RULE_NOP => RuleAction::Nop,
        NETKIT_RULE_BLACKHOLE => RuleAction::Blackhole,
        NETKIT_RULE_UNREACHABLE => RuleAction::Unreachable,
        NETKIT_RULE_PROHIBIT => RuleAction::Prohibit,
        n => return Err(Error::invalid(format!("cfg.action: {n} is no NETKIT_RULE_* action"))),
    })
}

impl From<&RuleInfo> for netkit_rule {
    fn from(r: &RuleInfo) -> Self {
        Self {
            family: af_of(r.family),
            priority: r.priority,
            table: r.table,
            action: action_to_u8(r.action),
            from: r.from.map(netkit_prefix::from).unwrap_or_default(),
            to: r.to.map(netkit_prefix::from).unwrap_or_default(),
            has_fwmark: r.fwmark.is_some(),
            fwmark: r.fwmark.unwrap_or(0),
            fwmask: r.fwmask.unwrap_or(0),
            iif: own::field(r.iif.as_deref()),
            oif: own::field(r.oif.as_deref()),
            invert: r.invert,
            has_suppress_prefixlen: r.suppress_prefixlen.is_some(),
            suppress_prefixlen: r.suppress_prefixlen.unwrap_or(0),
            iif_detached: r.iif_detached,
            oif_detached: r.oif_detached,
            protocol: r.protocol,
            tos: r.tos,
        }
    }
}

impl Drop for netkit_rule {
    fn drop(&mut self) {
        // SAFETY: made by `own::field` for this struct, freed once here.
        unsafe {
            own::free_field(self.iif);
            own::free_field(self.oif);
        }
    }
}

/// The netkit-core rule a config describes.
///
/// # Safety
/// `cfg`'s strings are NULL or valid for the call.
unsafe fn rule_of(cfg: &netkit_rule_config) -> Result<Rule, Error> {
    let from = cfg.from.get("cfg.from")?;
    let to = cfg.to.get("cfg.to")?;
    let family = match family_arg(cfg.family, "cfg.family")? {
        Some(f) => f,
        None => from.or(to).map_or(IpFamily::V4, |p| IpFamily::of(p.ip())),
    };
    let mut r = Rule::new(family);
    if cfg.set_priority {
        r = r.priority(cfg.priority);
    }
    if cfg.table != 0 {
        r = r.table(cfg.table);
    }
    if let Some(p) = from {
        r = r.from(p);
    }
    if let Some(p) = to {
        r = r.to(p);
    }
    if cfg.set_fwmark {
        let mask = if cfg.fwmask == 0 { u32::MAX } else { cfg.fwmask };
        r = r.fwmark(cfg.fwmark, mask);
    }
    // SAFETY: the function's contract.
    if let Some(d) = unsafe { opt_str(cfg.iif, "cfg.iif") }? {
        r = r.iif(d);
    }
    // SAFETY: the function's contract.
    if let Some(d) = unsafe { opt_str(cfg.oif, "cfg.oif") }? {
        r = r.oif(d);
    }
    if cfg.action != 0 {
        r = r.action(action_from_u8(cfg.action)?);
    }
    if cfg.invert {
        r = r.invert();
    }
    if cfg.set_suppress_prefixlen {
        r = r.suppress_prefixlen(cfg.suppress_prefixlen);
    }
    Ok(r)
}

/// `ip rule add …`. `NETKIT_E_EXISTS` when an identical rule is there already.
#[no_mangle]
pub unsafe extern "C" fn netkit_rule_add(
    h: *const netkit_handle,
    cfg: *const netkit_rule_config,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h`, `cfg` and cfg's strings are NULL or valid for the call.
        let (h, cfg) = unsafe { (netkit_handle::arg(h)?, ref_arg(cfg, "cfg")?) };
        // SAFETY: as above.
        let rule = unsafe { rule_of(cfg) }?;
        wait(h.rule_add(&rule))
    })
}

/// `ip rule del …`: delete the first rule matching the fields set. Idempotent: no matching
/// rule is success.
#[no_mangle]
pub unsafe extern "C" fn netkit_rule_del(
    h: *const netkit_handle,
    cfg: *const netkit_rule_config,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h`, `cfg` and cfg's strings are NULL or valid for the call.
        let (h, cfg) = unsafe { (netkit_handle::arg(h)?, ref_arg(cfg, "cfg")?) };
        // SAFETY: as above.
        let rule = unsafe { rule_of(cfg) }?;
        wait(h.rule_del(&rule))
    })
}

/// `ip rule show`: the rules of `family` (`NETKIT_AF_INET`, `NETKIT_AF_INET6`, 0 for both) in
/// priority order, as an array of `*len` in `*rules` (NULL when empty). Free with
/// `netkit_rule_list_free`.
#[no_mangle]
pub unsafe extern "C" fn netkit_rule_list(
    h: *const netkit_handle,
    family: u8,
    rules: *mut *mut netkit_rule,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` is NULL or live.
        let h = unsafe { netkit_handle::arg(h) }?;
        out_arg(rules, "rules")?;
        out_arg(len, "len")?;
        let family = family_arg(family, "family")?;
        let list: Vec<netkit_rule> = wait(h.rule_list(family))?.iter().map(netkit_rule::from).collect();
        let (p, n) = own::give_vec(list);
        // SAFETY: both checked non-NULL above.
        unsafe {
            put(rules, p);
            put(len, n);
        }
        Ok(())
    })
}

/// Free an array from `netkit_rule_list` with its length. NULL, a wrong length and a second
/// free are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_rule_list_free(rules: *mut netkit_rule, len: usize) {
    // SAFETY: `take_vec` only rebuilds an array the registry knows with this length.
    drop(unsafe { own::take_vec(rules, len) });
}
