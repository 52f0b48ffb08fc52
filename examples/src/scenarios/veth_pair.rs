//! Scenario a: two namespaces joined by a veth pair, IPv4 and IPv6 (no DAD wait).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netkit_core::link::Veth;
use netkit_core::NetNsGuard;

use crate::Error;

/// Two namespaces `a` and `b` with `eth0` in each, joined to each other.
pub struct VethPair {
    /// Namespace a (10.0.0.1/24, fd00::1/64).
    pub a: NetNsGuard,
    /// Namespace b (10.0.0.2/24, fd00::2/64).
    pub b: NetNsGuard,
}

impl VethPair {
    /// a's addresses.
    pub const A4: &'static str = "10.0.0.1";
    /// b's IPv4 address.
    pub const B4: &'static str = "10.0.0.2";
    /// a's IPv6 address.
    pub const A6: &'static str = "fd00::1";
    /// b's IPv6 address.
    pub const B6: &'static str = "fd00::2";

    /// Parse one of the constants.
    pub fn ip(s: &str) -> IpAddr {
        s.parse().expect("constant address")
    }
}

/// Build the topology: `a/eth0 <-> b/eth0`, the b end created directly in b.
pub async fn build(prefix: &str) -> Result<VethPair, Error> {
    let a = NetNsGuard::create(&format!("{prefix}-a"))?;
    let b = NetNsGuard::create(&format!("{prefix}-b"))?;
    let ha = a.handle().await?;
    let hb = b.handle().await?;
    ha.link_add(&Veth::new("eth0", "eth0").peer_netns(&b).up()).await?;
    hb.link_set_up("eth0").await?;
    for (h, v4, v6) in [(&ha, VethPair::A4, VethPair::A6), (&hb, VethPair::B4, VethPair::B6)] {
        h.link_set_up("lo").await?;
        h.addr_add("eth0", format!("{v4}/24").parse::<IpNetwork>()?).await?;
        // nodad: the address is usable at once instead of after ~1-2 s of DAD.
        h.addr_add("eth0", format!("{v6}/64").parse::<IpNetwork>()?)
            .nodad()
            .await?;
    }
    Ok(VethPair { a, b })
}
