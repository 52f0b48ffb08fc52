//! Traffic control: token-bucket rate limits and redirecting a link's incoming traffic, the
//! pieces of a container's bandwidth limit in both directions (CNI's `bandwidth` capability).
//!
//! | iproute2 | netkit |
//! |---|---|
//! | `tc qdisc replace dev DEV root tbf rate R burst B latency L` | [`Handle::qdisc_tbf_replace`] |
//! | `tc qdisc add dev DEV ingress` | [`Handle::qdisc_ingress_add`] |
//! | `tc filter add dev DEV parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev TO` | [`Handle::filter_redirect_ingress`] |
//! | `tc qdisc del dev DEV root` / `tc qdisc del dev DEV ingress` | [`Handle::qdisc_del`] (idempotent) |
//!
//! A limit on traffic *leaving* a link is a `tbf` qdisc on it. A limit on traffic *arriving*
//! at a link needs a detour: the link's ingress traffic is redirected to an [`Ifb`] device and
//! shaped on its way out of that one, as the reference bandwidth plugin does.
//!
//! ```no_run
//! # async fn f(h: &netkit_core::Handle) -> Result<(), Box<dyn std::error::Error>> {
//! use netkit_core::{link::Ifb, tc::TokenBucket};
//! // 10 Mbit/s towards the container behind vethab12cd34, with a 100 kbit burst …
//! h.qdisc_tbf_replace("vethab12cd34", &TokenBucket::bits(10_000_000, 100_000)?).await?;
//! // … and 5 Mbit/s from it: its traffic enters the host through the veth, so it goes
//! // through an ifb device that shapes it.
//! h.link_add(&Ifb::new("nkbwab12cd34").up()).await?;
//! h.qdisc_tbf_replace("nkbwab12cd34", &TokenBucket::bits(5_000_000, 100_000)?).await?;
//! h.qdisc_ingress_add("vethab12cd34").await?;
//! h.filter_redirect_ingress("vethab12cd34", "nkbwab12cd34").await?;
//! # Ok(()) }
//! ```
//!
//! [`Ifb`]: crate::link::Ifb

use std::time::Duration;

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption, TcActionType, TcAttribute,
    TcFilterU32Option, TcHandle, TcMessage, TcMirror, TcMirrorActionType, TcOption, TcU32Key, TcU32Selector,
    TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::{Handle, NetlinkError};

/// Errors of traffic-control operations.
#[derive(Debug, thiserror::Error)]
pub enum TcError {
    /// The kernel refused the request.
    #[error("{op} on link {link:?} in netns {netns}: {cause}")]
    Netlink {
        /// Operation, e.g. "add tbf qdisc".
        op: &'static str,
        /// The link.
        link: String,
        /// Namespace of the request.
        netns: String,
        /// Kernel answer with errno.
        cause: NetlinkError,
    },
    /// The running kernel lacks the qdisc, classifier or action (module missing).
    #[error("{what} is not supported by this kernel ({op} on link {link:?} in netns {netns}: {cause})")]
    Unsupported {
        /// The missing piece, e.g. "tbf qdisc".
        what: &'static str,
        /// Operation.
        op: &'static str,
        /// The link.
        link: String,
        /// Namespace.
        netns: String,
        /// Kernel answer.
        cause: NetlinkError,
    },
    /// A parameter was refused before anything was sent.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which parameter.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Looking up a link failed.
    #[error(transparent)]
    Link(#[from] crate::LinkError),
}

crate::netlink::errno_predicates!(TcError);

impl TcError {
    /// The errno behind this error, when the kernel returned one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Netlink { cause: source, .. } | Self::Unsupported { cause: source, .. } => source.errno,
            Self::Link(e) => e.errno(),
            Self::Invalid { .. } => None,
        }
    }

    /// True when the kernel lacks what was asked for.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Self::Unsupported { .. })
    }
}

/// A token bucket (`tbf`): at most `rate` on average, bursts up to `burst`, packets waiting at
/// most `latency` (default 25 ms) before they are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Bytes per second.
    rate: u64,
    /// Bytes.
    burst: u32,
    latency: Duration,
}

impl TokenBucket {
    /// `rate` in bits per second and `burst` in bits (the units of CNI's `bandwidth`
    /// capability, and of `tc … rate 10mbit burst 100kbit`). Both must be positive; the burst
    /// is at most 4 GiB.
    pub fn bits(rate: u64, burst: u64) -> Result<Self, TcError> {
        let invalid = |what, reason: &str| TcError::Invalid {
            what,
            reason: reason.into(),
        };
        if rate < 8 {
            return Err(invalid("rate", "at least 8 bit/s (1 byte/s)"));
        }
        let burst = u32::try_from(burst / 8).map_err(|_| invalid("burst", "at most 4 GiB"))?;
        if burst == 0 {
            return Err(invalid("burst", "at least 8 bits (1 byte)"));
        }
        Ok(Self {
            rate: rate / 8,
            burst,
            latency: Duration::from_millis(25),
        })
    }

    /// How long a packet may wait for tokens before it is dropped (`latency`).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The rate in bytes per second.
    pub fn rate_bytes(&self) -> u64 {
        self.rate
    }

    /// The burst in bytes.
    pub fn burst_bytes(&self) -> u32 {
        self.burst
    }

    /// The queue limit in bytes: what the rate drains in `latency`, plus the burst.
    fn limit(&self) -> u32 {
        let queued = u128::from(self.rate) * self.latency.as_micros() / 1_000_000;
        u32::try_from(queued + u128::from(self.burst)).unwrap_or(u32::MAX)
    }

    /// TCA_OPTIONS of a tbf qdisc.
    fn options(&self) -> Vec<TcOption> {
        const TCA_TBF_PARMS: u16 = 1;
        const TCA_TBF_RATE64: u16 = 4;
        const TCA_TBF_BURST: u16 = 6;
        // struct tc_tbf_qopt { tc_ratespec rate, peakrate; u32 limit, buffer, mtu }, with
        // struct tc_ratespec { u8 cell_log, linklayer; u16 overhead; i16 cell_align;
        // u16 mpu; u32 rate } (native byte order). Link layer "ethernet", so the kernel needs
        // no rate table; the burst goes as TCA_TBF_BURST, in bytes, so `buffer` stays 0.
        let mut qopt = Vec::with_capacity(36);
        let rate32 = u32::try_from(self.rate).unwrap_or(u32::MAX);
        qopt.extend_from_slice(&[0, 1]); // cell_log, linklayer = TC_LINKLAYER_ETHERNET
        qopt.extend_from_slice(&0u16.to_ne_bytes()); // overhead
        qopt.extend_from_slice(&(-1i16).to_ne_bytes()); // cell_align
        qopt.extend_from_slice(&0u16.to_ne_bytes()); // mpu
        qopt.extend_from_slice(&rate32.to_ne_bytes());
        qopt.extend_from_slice(&[0u8; 12]); // peakrate: none
        qopt.extend_from_slice(&self.limit().to_ne_bytes());
        qopt.extend_from_slice(&0u32.to_ne_bytes()); // buffer (TCA_TBF_BURST instead)
        qopt.extend_from_slice(&0u32.to_ne_bytes()); // mtu
        let mut out = vec![
            TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, qopt)),
            TcOption::Other(DefaultNla::new(TCA_TBF_BURST, self.burst.to_ne_bytes().to_vec())),
        ];
        if self.rate > u64::from(u32::MAX) {
            out.push(TcOption::Other(DefaultNla::new(
                TCA_TBF_RATE64,
                self.rate.to_ne_bytes().to_vec(),
            )));
        }
        out
    }
}

/// Which qdisc [`Handle::qdisc_del`] removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QdiscParent {
    /// The root (egress) qdisc.
    Root,
    /// The ingress qdisc.
    Ingress,
}

/// ETH_P_ALL, as the filter's protocol (network byte order in `tcm_info`).
const ETH_P_ALL: u16 = 0x0003;

impl Handle {
    fn tc_error(&self, op: &'static str, what: &'static str, link: &str, source: NetlinkError) -> TcError {
        // An unknown qdisc, classifier or action kind: ENOENT (no module to load) or EOPNOTSUPP.
        if matches!(source.errno, Some(libc::ENOENT) | Some(libc::EOPNOTSUPP)) {
            return TcError::Unsupported {
                what,
                op,
                link: link.into(),
                netns: self.ns_label(),
                cause: source,
            };
        }
        TcError::Netlink {
            op,
            link: link.into(),
            netns: self.ns_label(),
            cause: source,
        }
    }

    /// Replace the root qdisc of `link` by a token bucket (`tc qdisc replace dev LINK root tbf
    /// …`): traffic leaving `link` is held to the bucket's rate.
    pub async fn qdisc_tbf_replace(&self, link: &str, bucket: &TokenBucket) -> Result<(), TcError> {
        let index = self.link_index(link).await?;
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.handle = TcHandle { major: 1, minor: 0 };
        msg.header.parent = TcHandle::ROOT;
        msg.attributes.push(TcAttribute::Kind("tbf".into()));
        msg.attributes.push(TcAttribute::Options(bucket.options()));
        self.ack(
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
        .map_err(|e| self.tc_error("replace root qdisc with tbf", "tbf qdisc", link, e))
    }

    /// Add the ingress qdisc to `link` (`tc qdisc add dev LINK ingress`), where filters on its
    /// incoming traffic attach. Already there: success.
    pub async fn qdisc_ingress_add(&self, link: &str) -> Result<(), TcError> {
        let index = self.link_index(link).await?;
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.handle = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        msg.header.parent = TcHandle::INGRESS;
        msg.attributes.push(TcAttribute::Kind("ingress".into()));
        match self
            .ack(RouteNetlinkMessage::NewQueueDiscipline(msg), NLM_F_CREATE | NLM_F_EXCL)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_exists() => Ok(()),
            Err(e) => Err(self.tc_error("add ingress qdisc", "ingress qdisc", link, e)),
        }
    }

    /// Redirect every packet arriving at `link` to the egress of `to` (`tc filter add dev LINK
    /// parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev TO`). Needs
    /// [`Handle::qdisc_ingress_add`] first.
    pub async fn filter_redirect_ingress(&self, link: &str, to: &str) -> Result<(), TcError> {
        let index = self.link_index(link).await?;
        let target = self.link_index(to).await?;
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        // tcm_info: priority in the high half, protocol (network order) in the low half.
        msg.header.info = (1u32 << 16) | u32::from(ETH_P_ALL.to_be());
        let mut mirred = TcMirror::default();
        mirred.generic = TcActionGeneric::default();
        mirred.generic.action = TcActionType::Stolen;
        mirred.eaction = TcMirrorActionType::EgressRedir;
        mirred.ifindex = target;
        let mut action = TcAction::default();
        action.attributes = vec![
            TcActionAttribute::Kind("mirred".into()),
            TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(mirred))]),
        ];
        // One key that matches everything (value 0 under mask 0).
        let mut selector = TcU32Selector::default();
        selector.flags = TcU32SelectorFlags::Terminal;
        selector.nkeys = 1;
        selector.keys = vec![TcU32Key::default()];
        msg.attributes.push(TcAttribute::Kind("u32".into()));
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(selector)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]));
        self.ack(RouteNetlinkMessage::NewTrafficFilter(msg), NLM_F_CREATE | NLM_F_EXCL)
            .await
            .map_err(|e| self.tc_error("add u32 redirect filter", "u32 classifier or mirred action", link, e))
    }

    /// Delete the root or ingress qdisc of `link` (`tc qdisc del dev LINK root|ingress`), with
    /// its filters. None there (or no such link): success.
    pub async fn qdisc_del(&self, link: &str, which: QdiscParent) -> Result<(), TcError> {
        let index = match self.link_index(link).await {
            Ok(index) => index,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = match which {
            QdiscParent::Root => TcHandle::ROOT,
            QdiscParent::Ingress => TcHandle::INGRESS,
        };
        match self.ack(RouteNetlinkMessage::DelQueueDiscipline(msg), 0).await {
            Ok(()) => Ok(()),
            // No such qdisc: ENOENT; deleting the default root qdisc: EINVAL... both "not there".
            Err(e) if matches!(e.errno, Some(libc::ENOENT) | Some(libc::EINVAL) | Some(libc::ENODEV)) => Ok(()),
            Err(e) => Err(self.tc_error("delete qdisc", "qdisc", link, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_from_bits() {
        let b = TokenBucket::bits(10_000_000, 100_000).unwrap();
        assert_eq!(b.rate_bytes(), 1_250_000);
        assert_eq!(b.burst_bytes(), 12_500);
        // 25 ms of 1.25 MB/s, plus the burst.
        assert_eq!(b.limit(), 31_250 + 12_500);
        assert!(TokenBucket::bits(0, 100).is_err());
        assert!(TokenBucket::bits(1000, 7).is_err());
        assert!(TokenBucket::bits(1000, 8 * (u64::from(u32::MAX) + 1)).is_err());
        let fast = TokenBucket::bits(100_000_000_000, 1_000_000).unwrap();
        assert_eq!(fast.options().len(), 3, "rates past 4 GB/s need TCA_TBF_RATE64");
    }
}
