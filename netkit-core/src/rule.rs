//! Policy routing rules: add, delete, list.
//!
//! Methods live on [`Handle`] and mirror `ip rule`:
//!
//! | iproute2 | netkit |
//! |---|---|
//! | `ip rule add [from P] [to P] [fwmark M/K] [iif D] [oif D] [priority N] table T` | [`Handle::rule_add`] with a [`Rule`] |
//! | `ip rule del …` | [`Handle::rule_del`] (idempotent); [`Handle::rule_remove`] says whether one went |
//! | `ip rule show` | [`Handle::rule_list`] |

use std::fmt;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::RouteHeader;
use netlink_packet_route::rule::{RuleAction as RawAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::RouteNetlinkMessage;

pub use crate::route::IpFamily;
use crate::route::TABLE_MAIN;
use crate::{Handle, NetlinkError};

/// Errors from rule operations: each names the operation, the rule and the
/// netns, and keeps the kernel's errno.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The kernel refused the request; `source` keeps the errno.
    #[error("{op} rule {rule} in netns {netns}: {cause}")]
    Netlink {
        /// Operation: "add", "delete", "list".
        op: String,
        /// The rule as `ip rule` would print it.
        rule: String,
        /// Namespace the request went to.
        netns: String,
        /// Kernel answer with errno.
        cause: NetlinkError,
    },
    /// A parameter was rejected before anything was sent to the kernel.
    #[error("invalid rule {rule}: {reason}")]
    Invalid {
        /// The rule as `ip rule` would print it.
        rule: String,
        /// Why.
        reason: String,
    },
}

crate::netlink::errno_predicates!(RuleError);

impl RuleError {
    /// The errno behind this error, when the kernel returned one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Netlink { cause: source, .. } => source.errno,
            Self::Invalid { .. } => Some(libc::EINVAL),
        }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RuleAction {
    /// Look the destination up in the rule's table (`lookup T`, the default).
    #[default]
    Table,
    /// Silently drop (`blackhole`).
    Blackhole,
    /// Drop with ICMP network unreachable (`unreachable`).
    Unreachable,
    /// Drop with ICMP administratively prohibited (`prohibit`).
    Prohibit,
    /// Do nothing, go on with the next rule (`nop`).
    Nop,
    /// Any other action (goto 2, …) by number; only reported by listings.
    Other(u8),
}

impl RuleAction {
    fn to_raw(self) -> RawAction {
        match self {
            Self::Table => RawAction::ToTable,
            Self::Blackhole => RawAction::Blackhole,
            Self::Unreachable => RawAction::Unreachable,
            Self::Prohibit => RawAction::Prohibit,
            Self::Nop => RawAction::Nop,
            Self::Other(n) => RawAction::from(n),
        }
    }

    fn from_raw(a: RawAction) -> Self {
        match a {
            RawAction::ToTable => Self::Table,
            RawAction::Blackhole => Self::Blackhole,
            RawAction::Unreachable => Self::Unreachable,
            RawAction::Prohibit => Self::Prohibit,
            RawAction::Nop => Self::Nop,
            other => Self::Other(u8::from(other)),
        }
    }
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Table => f.write_str("lookup"),
            Self::Blackhole => f.write_str("blackhole"),
            Self::Unreachable => f.write_str("unreachable"),
            Self::Prohibit => f.write_str("prohibit"),
            Self::Nop => f.write_str("nop"),
            Self::Other(n) => write!(f, "action {n}"),
        }
    }
}

/// A policy routing rule to add or delete: the arguments of `ip rule add`.
///
/// Prefixes are normalized to their network address. Adding without a table
/// and with the default action looks up table main, like iproute2. For
/// deletion only the fields that are set select the rule (the first match is
/// removed, like `ip rule del`).
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::rule::RuleError> {
/// use netkit_core::rule::Rule;
/// h.rule_add(&Rule::v4().from("10.0.0.0/24".parse().unwrap()).table(100).priority(1000)).await?;
/// h.rule_add(&Rule::v4().fwmark(0x1, 0xff).table(200).priority(1001)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    family: IpFamily,
    table: Option<u32>,
    priority: Option<u32>,
    from: Option<IpNetwork>,
    to: Option<IpNetwork>,
    fwmark: Option<(u32, u32)>,
    iif: Option<String>,
    oif: Option<String>,
    action: Option<RuleAction>,
    invert: bool,
    suppress_prefixlen: Option<u32>,
}

fn normalize(net: IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(net)
}

impl Rule {
    /// An empty rule of this family: matches every packet.
    pub fn new(family: IpFamily) -> Self {
        Self {
            family,
            table: None,
            priority: None,
            from: None,
            to: None,
            fwmark: None,
            iif: None,
            oif: None,
            action: None,
            invert: false,
            suppress_prefixlen: None,
        }
    }

    /// An empty IPv4 rule.
    pub fn v4() -> Self {
        Self::new(IpFamily::V4)
    }

    /// An empty IPv6 rule.
    pub fn v6() -> Self {
        Self::new(IpFamily::V6)
    }

    /// Table to look up (`lookup T`); tables above 255 go in `FRA_TABLE`.
    pub fn table(mut self, table: u32) -> Self {
        self.table = Some(table);
        self
    }

    /// Priority (`priority N`): rules are tried in increasing order. Without
    /// one the kernel picks one below the first non-zero existing priority.
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Match the source prefix (`from P`).
    pub fn from(mut self, prefix: IpNetwork) -> Self {
        self.from = Some(normalize(prefix));
        self
    }

    /// Match the destination prefix (`to P`).
    pub fn to(mut self, prefix: IpNetwork) -> Self {
        self.to = Some(normalize(prefix));
        self
    }

    /// Match the firewall mark under a mask (`fwmark MARK/MASK`); use mask
    /// `0xffffffff` for an exact mark.
    pub fn fwmark(mut self, mark: u32, mask: u32) -> Self {
        self.fwmark = Some((mark, mask));
        self
    }

    /// Match packets arriving on this device (`iif DEV`; `lo` for locally
    /// generated traffic). The device may not exist yet.
    pub fn iif(mut self, dev: &str) -> Self {
        self.iif = Some(dev.to_string());
        self
    }

    /// Match packets sent from sockets bound to this device (`oif DEV`).
    pub fn oif(mut self, dev: &str) -> Self {
        self.oif = Some(dev.to_string());
        self
    }

    /// Set the action (default [`RuleAction::Table`]).
    pub fn action(mut self, action: RuleAction) -> Self {
        self.action = Some(action);
        self
    }

    /// Drop matching packets silently (`blackhole`).
    pub fn blackhole(self) -> Self {
        self.action(RuleAction::Blackhole)
    }

    /// Reject matching packets with network unreachable (`unreachable`).
    pub fn unreachable(self) -> Self {
        self.action(RuleAction::Unreachable)
    }

    /// Reject matching packets with administratively prohibited (`prohibit`).
    pub fn prohibit(self) -> Self {
        self.action(RuleAction::Prohibit)
    }

    /// Invert the selector (`not`).
    pub fn invert(mut self) -> Self {
        self.invert = true;
        self
    }

    /// Ignore lookup results with a prefix length at most `len`
    /// (`suppress_prefixlength N`), as wg-quick uses with table main.
    pub fn suppress_prefixlen(mut self, len: u32) -> Self {
        self.suppress_prefixlen = Some(len);
        self
    }

    fn invalid(&self, reason: impl Into<String>) -> RuleError {
        RuleError::Invalid {
            rule: self.to_string(),
            reason: reason.into(),
        }
    }

    fn validate(&self) -> Result<(), RuleError> {
        for (what, p) in [("from", self.from), ("to", self.to)] {
            if let Some(p) = p {
                if IpFamily::of(p.ip()) != self.family {
                    return Err(self.invalid(format!("{what} {p} is not {}", self.family)));
                }
            }
        }
        for (what, d) in [("iif", &self.iif), ("oif", &self.oif)] {
            if let Some(d) = d {
                if d.is_empty() || d.len() > 15 {
                    return Err(self.invalid(format!("{what} must be a 1-15 byte device name")));
                }
            }
        }
        if self.table == Some(0) {
            return Err(self.invalid("table 0 is not a table"));
        }
        Ok(())
    }

    fn message(&self, delete: bool) -> RuleMessage {
        let mut msg = RuleMessage::default();
        let hdr = &mut msg.header;
        hdr.family = self.family.to_af();
        let action = match self.action {
            Some(a) => a.to_raw(),
            None if delete => RawAction::Unspec,
            None => RawAction::ToTable,
        };
        hdr.action = action;
        let table = match self.table {
            Some(t) => Some(t),
            None if !delete && action == RawAction::ToTable => Some(TABLE_MAIN),
            None => None,
        };
        if let Some(t) = table {
            hdr.table = u8::try_from(t).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
            msg.attributes.push(RuleAttribute::Table(t));
        }
        if self.invert {
            msg.header.flags |= RuleFlags::Invert;
        }
        if let Some(p) = self.priority {
            msg.attributes.push(RuleAttribute::Priority(p));
        }
        if let Some(p) = self.from {
            msg.header.src_len = p.prefix();
            msg.attributes.push(RuleAttribute::Source(p.ip()));
        }
        if let Some(p) = self.to {
            msg.header.dst_len = p.prefix();
            msg.attributes.push(RuleAttribute::Destination(p.ip()));
        }
        if let Some((mark, mask)) = self.fwmark {
            msg.attributes.push(RuleAttribute::FwMark(mark));
            msg.attributes.push(RuleAttribute::FwMask(mask));
        }
        if let Some(d) = &self.iif {
            msg.attributes.push(RuleAttribute::Iifname(d.clone()));
        }
        if let Some(d) = &self.oif {
            msg.attributes.push(RuleAttribute::Oifname(d.clone()));
        }
        if let Some(l) = self.suppress_prefixlen {
            msg.attributes.push(RuleAttribute::SuppressPrefixLen(l));
        }
        msg
    }
}

impl fmt::Display for Rule {
    /// Like `ip rule`: `1000: from 10.0.0.0/24 lookup 100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.family)?;
        if let Some(p) = self.priority {
            write!(f, " priority {p}")?;
        }
        if self.invert {
            f.write_str(" not")?;
        }
        if let Some(p) = self.from {
            write!(f, " from {p}")?;
        }
        if let Some(p) = self.to {
            write!(f, " to {p}")?;
        }
        if let Some((m, k)) = self.fwmark {
            write!(f, " fwmark {m:#x}/{k:#x}")?;
        }
        if let Some(d) = &self.iif {
            write!(f, " iif {d}")?;
        }
        if let Some(d) = &self.oif {
            write!(f, " oif {d}")?;
        }
        match (self.action.unwrap_or_default(), self.table) {
            (RuleAction::Table, Some(t)) => write!(f, " lookup {t}")?,
            (RuleAction::Table, None) => {}
            (a, _) => write!(f, " {a}")?,
        }
        if let Some(l) = self.suppress_prefixlen {
            write!(f, " suppress_prefixlength {l}")?;
        }
        Ok(())
    }
}

/// A rule as the kernel reports it (`ip rule show`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Family.
    pub family: IpFamily,
    /// Priority (0 for the `local` rule).
    pub priority: u32,
    /// Table looked up (0 when the action is not a lookup).
    pub table: u32,
    /// Action.
    pub action: RuleAction,
    /// Source prefix (`from`); `None` for `from all`.
    pub from: Option<IpNetwork>,
    /// Destination prefix (`to`); `None` for all.
    pub to: Option<IpNetwork>,
    /// Firewall mark (`fwmark`).
    pub fwmark: Option<u32>,
    /// Mask of the firewall mark.
    pub fwmask: Option<u32>,
    /// Input device name (`iif`).
    pub iif: Option<String>,
    /// Output device name (`oif`).
    pub oif: Option<String>,
    /// Selector inverted (`not`).
    pub invert: bool,
    /// `suppress_prefixlength`, when set.
    pub suppress_prefixlen: Option<u32>,
    /// The `iif` device does not exist (yet): the rule matches nothing (`ip rule` prints
    /// `[detached]`).
    pub iif_detached: bool,
    /// The `oif` device does not exist (yet).
    pub oif_detached: bool,
    /// Who installed the rule (`FRA_PROTOCOL`, a route protocol number; 0 when unset).
    pub protocol: u8,
    /// The TOS selector (`tos`), 0 for any.
    pub tos: u8,
}

impl RuleInfo {
    fn from_message(msg: RuleMessage) -> Option<Self> {
        let family = IpFamily::from_af(msg.header.family)?;
        let mut info = Self {
            family,
            priority: 0,
            table: u32::from(msg.header.table),
            action: RuleAction::from_raw(msg.header.action),
            from: None,
            to: None,
            fwmark: None,
            fwmask: None,
            iif: None,
            oif: None,
            invert: msg.header.flags.contains(RuleFlags::Invert),
            suppress_prefixlen: None,
            iif_detached: msg.header.flags.contains(RuleFlags::IifDetached),
            oif_detached: msg.header.flags.contains(RuleFlags::OifDetached),
            protocol: 0,
            tos: msg.header.tos,
        };
        for attr in msg.attributes {
            match attr {
                RuleAttribute::Priority(p) => info.priority = p,
                RuleAttribute::Table(t) => info.table = t,
                RuleAttribute::Source(ip) => info.from = IpNetwork::new(ip, msg.header.src_len).ok(),
                RuleAttribute::Destination(ip) => info.to = IpNetwork::new(ip, msg.header.dst_len).ok(),
                RuleAttribute::FwMark(m) => info.fwmark = Some(m),
                RuleAttribute::FwMask(m) => info.fwmask = Some(m),
                RuleAttribute::Iifname(d) => info.iif = Some(d),
                RuleAttribute::Oifname(d) => info.oif = Some(d),
                // The kernel reports "unset" as 0xffffffff.
                RuleAttribute::SuppressPrefixLen(l) if l != u32::MAX => info.suppress_prefixlen = Some(l),
                RuleAttribute::Protocol(p) => info.protocol = u8::from(p),
                _ => {}
            }
        }
        Some(info)
    }
}

impl Handle {
    fn rule_error(&self, op: &str, rule: &Rule, source: NetlinkError) -> RuleError {
        RuleError::Netlink {
            op: op.to_string(),
            rule: rule.to_string(),
            netns: self.ns_label(),
            cause: source,
        }
    }

    /// Add a rule, like `ip rule add`. Fails with `EEXIST`
    /// ([`RuleError::is_exists`]) if an identical rule exists.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::rule::RuleError> {
    /// use netkit_core::rule::Rule;
    /// h.rule_add(&Rule::v6().to("fd00:dead::/32".parse().unwrap()).prohibit().priority(500)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn rule_add(&self, rule: &Rule) -> Result<(), RuleError> {
        rule.validate()?;
        self.ack(
            RouteNetlinkMessage::NewRule(rule.message(false)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
        .map_err(|e| self.rule_error("add", rule, e))
    }

    /// Delete the first rule matching the fields set on `rule`, like
    /// `ip rule del`. Idempotent: no matching rule is success.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::rule::RuleError> {
    /// use netkit_core::rule::Rule;
    /// h.rule_del(&Rule::v4().priority(1000).table(100)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn rule_del(&self, rule: &Rule) -> Result<(), RuleError> {
        self.rule_remove(rule).await.map(drop)
    }

    /// [`Handle::rule_del`] that tells what happened: `true` when a rule was deleted, `false`
    /// when none matched (for a caller that reports "nothing to delete").
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::rule::RuleError> {
    /// use netkit_core::rule::Rule;
    /// if !h.rule_remove(&Rule::v4().priority(1000)).await? {
    ///     eprintln!("no rule with priority 1000");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn rule_remove(&self, rule: &Rule) -> Result<bool, RuleError> {
        rule.validate()?;
        match self.ack(RouteNetlinkMessage::DelRule(rule.message(true)), 0).await {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.errno, Some(libc::ENOENT) | Some(libc::ESRCH)) => Ok(false),
            Err(e) => Err(self.rule_error("delete", rule, e)),
        }
    }

    /// List rules in priority order, like `ip rule show` (`ip -6 rule show`
    /// for [`IpFamily::V6`]); `None` lists both families.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::rule::RuleError> {
    /// use netkit_core::rule::IpFamily;
    /// for r in h.rule_list(Some(IpFamily::V4)).await? {
    ///     println!("{}: {:?} lookup {}", r.priority, r.from, r.table);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn rule_list(&self, family: Option<IpFamily>) -> Result<Vec<RuleInfo>, RuleError> {
        let mut msg = RuleMessage::default();
        if let Some(f) = family {
            msg.header.family = f.to_af();
        }
        let msgs = self
            .dump(RouteNetlinkMessage::GetRule(msg))
            .await
            .map_err(|source| RuleError::Netlink {
                op: "list".into(),
                rule: family.map(|f| f.to_string()).unwrap_or_else(|| "*".into()),
                netns: self.ns_label(),
                cause: source,
            })?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRule(m) => RuleInfo::from_message(m),
                _ => None,
            })
            .filter(|r| family.is_none_or(|f| r.family == f))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_tables_go_in_the_attribute() {
        let msg = Rule::v4().table(1000).message(false);
        assert_eq!(msg.header.table, 0);
        assert!(msg.attributes.contains(&RuleAttribute::Table(1000)));
        let msg = Rule::v4().table(100).message(false);
        assert_eq!(msg.header.table, 100);
    }

    #[test]
    fn add_defaults_to_main_delete_matches_any() {
        let add = Rule::v4().priority(5).message(false);
        assert_eq!(add.header.table, 254);
        assert_eq!(add.header.action, RawAction::ToTable);
        let del = Rule::v4().priority(5).message(true);
        assert_eq!(del.header.table, 0);
        assert_eq!(del.header.action, RawAction::Unspec);
    }

    #[test]
    fn listing_reads_detached_devices_protocol_and_tos() {
        let mut msg = RuleMessage::default();
        msg.header.family = IpFamily::V4.to_af();
        msg.header.tos = 0x10;
        msg.header.flags = RuleFlags::IifDetached | RuleFlags::OifDetached;
        msg.attributes.push(RuleAttribute::Protocol(4.into()));
        let info = RuleInfo::from_message(msg).unwrap();
        assert!(info.iif_detached && info.oif_detached && !info.invert);
        assert_eq!((info.protocol, info.tos), (4, 0x10));
    }

    #[test]
    fn family_mismatch_is_invalid() {
        assert!(Rule::v4().from("fd00::/8".parse().unwrap()).validate().is_err());
    }
}
