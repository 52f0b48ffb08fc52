//! Address ranges and range sets, as host-local describes them, validated.
//!
//! A [`IpRange`] is one `{subnet, rangeStart, rangeEnd, gateway}` object; a [`RangeSet`] is the
//! inner list of `ranges: [[…]]`: one address comes out of each set, so a pool with an IPv4 set
//! and an IPv6 set gives a dual-stack pair in one call.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use super::ConfigError;

/// One validated range: addresses `start..=end` inside `subnet`, with the subnet's gateway.
///
/// Defaults follow host-local: `start` is the subnet's first host (network + 1), `end` its last
/// (the IPv4 broadcast address excluded), `gateway` network + 1. The network address, the IPv4
/// broadcast address and the gateway are never handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRange {
    subnet: IpNetwork,
    start: IpAddr,
    end: IpAddr,
    gateway: IpAddr,
}

impl IpRange {
    /// Validate a range; `None` fields take host-local's defaults.
    ///
    /// Errors: host bits set in `subnet`, a subnet too small to allocate from (IPv4 longer than
    /// /30, IPv6 longer than /126), a start, end or gateway outside the subnet or of the other
    /// family, a start after the end, a start at the network address or an end at the broadcast
    /// address.
    pub fn new(
        subnet: IpNetwork,
        start: Option<IpAddr>,
        end: Option<IpAddr>,
        gateway: Option<IpAddr>,
    ) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::Range {
            subnet: subnet.to_string(),
            reason,
        };
        if subnet.ip() != subnet.network() {
            return Err(bad(format!(
                "host bits are set: the network address is {}",
                subnet.network()
            )));
        }
        let max_prefix = if subnet.is_ipv4() { 30 } else { 126 };
        if subnet.prefix() > max_prefix {
            return Err(bad(format!("too small to allocate from (longer than /{max_prefix})")));
        }
        let first_host = offset(subnet.network(), 1);
        let last_host = if subnet.is_ipv4() {
            offset(subnet.broadcast(), -1)
        } else {
            last_of(subnet)
        };
        let inside = |what: &str, ip: IpAddr| {
            if ip.is_ipv4() != subnet.is_ipv4() {
                Err(bad(format!("{what} {ip} is not of the subnet's address family")))
            } else if !subnet.contains(ip) {
                Err(bad(format!("{what} {ip} is outside the subnet")))
            } else {
                Ok(ip)
            }
        };
        let start = match start {
            Some(ip) => inside("rangeStart", ip)?,
            None => first_host,
        };
        let end = match end {
            Some(ip) => inside("rangeEnd", ip)?,
            None => last_host,
        };
        let gateway = match gateway {
            Some(ip) => inside("gateway", ip)?,
            None => first_host,
        };
        if start == subnet.network() {
            return Err(bad(format!("rangeStart {start} is the network address")));
        }
        if subnet.is_ipv4() && end == subnet.broadcast() {
            return Err(bad(format!("rangeEnd {end} is the broadcast address")));
        }
        if to_u128(start) > to_u128(end) {
            return Err(bad(format!("rangeStart {start} is after rangeEnd {end}")));
        }
        Ok(Self {
            subnet,
            start,
            end,
            gateway,
        })
    }

    /// The subnet addresses are handed out of (their prefix length in results).
    pub fn subnet(&self) -> IpNetwork {
        self.subnet
    }

    /// First address of the range (inclusive).
    pub fn start(&self) -> IpAddr {
        self.start
    }

    /// Last address of the range (inclusive).
    pub fn end(&self) -> IpAddr {
        self.end
    }

    /// The gateway reported with addresses of this range; never handed out.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// True when `ip` lies in `start..=end`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.start.is_ipv4() && (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(ip))
    }

    /// True when `ip` may be handed out: inside the range and not the gateway, the network or
    /// the IPv4 broadcast address.
    pub fn assignable(&self, ip: IpAddr) -> bool {
        self.contains(ip)
            && ip != self.gateway
            && ip != self.subnet.network()
            && !(self.subnet.is_ipv4() && ip == self.subnet.broadcast())
    }

    /// Number of addresses in `start..=end` (saturating for huge IPv6 ranges).
    pub fn size(&self) -> u128 {
        (to_u128(self.end) - to_u128(self.start)).saturating_add(1)
    }

    fn overlaps(&self, other: &IpRange) -> bool {
        self.start.is_ipv4() == other.start.is_ipv4()
            && to_u128(self.start) <= to_u128(other.end)
            && to_u128(other.start) <= to_u128(self.end)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// The ranges one address is taken from (host-local's inner list), validated: not empty, one
/// address family, no two ranges overlapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<IpRange>,
}

impl RangeSet {
    /// Validate a set of ranges.
    pub fn new(ranges: Vec<IpRange>) -> Result<Self, ConfigError> {
        let Some(first) = ranges.first() else {
            return Err(ConfigError::EmptyRangeSet);
        };
        let v4 = first.start.is_ipv4();
        for (i, r) in ranges.iter().enumerate() {
            if r.start.is_ipv4() != v4 {
                return Err(ConfigError::MixedFamilies {
                    set: RangeSet::describe(&ranges),
                });
            }
            if let Some(o) = ranges[..i].iter().find(|o| o.overlaps(r)) {
                return Err(ConfigError::Overlap {
                    a: o.to_string(),
                    b: r.to_string(),
                });
            }
        }
        Ok(Self { ranges })
    }

    /// The ranges, in configuration order (the order addresses are tried in).
    pub fn ranges(&self) -> &[IpRange] {
        &self.ranges
    }

    /// True for an IPv4 set.
    pub fn is_ipv4(&self) -> bool {
        self.ranges[0].start.is_ipv4()
    }

    /// The range `ip` falls in, if any.
    pub fn range_of(&self, ip: IpAddr) -> Option<&IpRange> {
        self.ranges.iter().find(|r| r.contains(ip))
    }

    /// True when `ip` may be handed out from this set.
    pub fn assignable(&self, ip: IpAddr) -> bool {
        self.range_of(ip).is_some_and(|r| r.assignable(ip))
    }

    /// True when some range of this set overlaps some range of `other`.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.ranges.iter().any(|a| other.ranges.iter().any(|b| a.overlaps(b)))
    }

    /// Every address of the set in allocation order, starting just after `last` (round robin,
    /// as host-local does) and wrapping around once. Reserved addresses are skipped.
    pub fn iter_after(&self, last: Option<IpAddr>) -> impl Iterator<Item = IpAddr> + '_ {
        let n = self.ranges.len();
        let v4 = self.is_ipv4();
        // Position of `last`: (range index, next address as u128). Unknown `last`: from the top.
        // After a range's last address (which may be the top of the IPv6 space) comes the next
        // range's first.
        let (ri, next) = last
            .and_then(|ip| {
                let i = self.ranges.iter().position(|r| r.contains(ip))?;
                Some(match to_u128(ip).checked_add(1) {
                    Some(x) if x <= to_u128(self.ranges[i].end) => (i, x),
                    _ => ((i + 1) % n, to_u128(self.ranges[(i + 1) % n].start)),
                })
            })
            .unwrap_or((0, to_u128(self.ranges[0].start)));
        // Range ri from `next`, the other ranges in order, then range ri up to `next`.
        (0..=n)
            .map(move |k| {
                let r = &self.ranges[(ri + k) % n];
                let (s, e) = (to_u128(r.start), to_u128(r.end));
                match k {
                    0 => (next, e),
                    k if k == n && next > s => (s, next - 1),
                    k if k == n => (1, 0), // empty
                    _ => (s, e),
                }
            })
            .flat_map(|(s, e)| U128Range {
                next: s,
                end: e,
                done: s > e,
            })
            .map(move |x| from_u128(x, v4))
            .filter(move |ip| self.assignable(*ip))
    }

    fn describe(ranges: &[IpRange]) -> String {
        ranges.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",")
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&RangeSet::describe(&self.ranges))
    }
}

/// An inclusive u128 range that cannot overflow at `u128::MAX`.
struct U128Range {
    next: u128,
    end: u128,
    done: bool,
}

impl Iterator for U128Range {
    type Item = u128;
    fn next(&mut self) -> Option<u128> {
        if self.done {
            return None;
        }
        let x = self.next;
        if x == self.end {
            self.done = true;
        } else {
            self.next += 1;
        }
        Some(x)
    }
}

pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(crate) fn from_u128(x: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(x as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(x))
    }
}

fn offset(ip: IpAddr, by: i8) -> IpAddr {
    let x = to_u128(ip);
    let y = if by >= 0 { x + by as u128 } else { x - (-by) as u128 };
    from_u128(y, ip.is_ipv4())
}

fn last_of(net: IpNetwork) -> IpAddr {
    let host_bits = u32::from(if net.is_ipv4() { 32u8 } else { 128 } - net.prefix());
    let mask = match host_bits {
        0 => 0,
        128 => u128::MAX,
        h => (1u128 << h) - 1,
    };
    from_u128(to_u128(net.network()) | mask, net.is_ipv4())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> IpRange {
        IpRange::new(s.parse().unwrap(), None, None, None).unwrap()
    }

    #[test]
    fn defaults_match_host_local() {
        let v4 = r("10.9.0.0/30");
        assert_eq!(
            (v4.start().to_string(), v4.end().to_string()),
            ("10.9.0.1".into(), "10.9.0.2".into())
        );
        assert_eq!(v4.gateway().to_string(), "10.9.0.1");
        let v6 = r("fd00::/126");
        assert_eq!(
            (v6.start().to_string(), v6.end().to_string()),
            ("fd00::1".into(), "fd00::3".into())
        );
        let all = r("::/0");
        assert_eq!(all.end().to_string(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    }

    #[test]
    fn round_robin_wraps_and_skips_reserved() {
        let set = RangeSet::new(vec![r("10.9.0.0/29"), r("10.9.1.0/30")]).unwrap();
        let all: Vec<String> = set.iter_after(None).map(|i| i.to_string()).collect();
        assert_eq!(
            all,
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6", "10.9.1.2"]
        );
        let after: Vec<String> = set
            .iter_after(Some("10.9.0.5".parse().unwrap()))
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            after,
            ["10.9.0.6", "10.9.1.2", "10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5"]
        );
        let last: Vec<String> = set
            .iter_after(Some("10.9.1.2".parse().unwrap()))
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            last,
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6", "10.9.1.2"]
        );
    }

    #[test]
    fn iterates_to_the_top_of_the_v6_space() {
        let set = RangeSet::new(vec![r("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126")]).unwrap();
        assert_eq!(set.iter_after(None).count(), 2);
        // After the very last address of the space, round robin wraps instead of overflowing.
        let top: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let after: Vec<String> = set.iter_after(Some(top)).map(|i| i.to_string()).collect();
        assert_eq!(
            after,
            [
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
            ]
        );
        let all = RangeSet::new(vec![r("::/0")]).unwrap();
        assert_eq!(all.iter_after(Some(top)).next().unwrap().to_string(), "::2");
    }
}
