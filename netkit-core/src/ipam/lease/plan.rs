//! Carving a cluster network into equal per-node subnets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use super::LeaseError;

/// A cluster network carved into equal subnets of one length, numbered from 0 (the subnet at
/// the network address) to [`count`](Self::count)` - 1` (the one ending at its last address).
///
/// ```
/// use netkit_core::ipam::lease::SubnetPlan;
/// let plan = SubnetPlan::flannel("10.244.0.0/16".parse()?)?;
/// assert_eq!(plan.count(), 256);
/// assert_eq!(plan.first().to_string(), "10.244.0.0/24");
/// assert_eq!(plan.last().to_string(), "10.244.255.0/24");
/// let calico = SubnetPlan::calico("10.244.0.0/16".parse()?)?;
/// assert_eq!(calico.subnet(1).unwrap().to_string(), "10.244.0.64/26");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubnetPlan {
    network: IpNetwork,
    subnet_prefix: u8,
}

impl SubnetPlan {
    /// Flannel's default per-node subnet length for IPv4 (`SubnetLen` 24).
    pub const FLANNEL_V4_PREFIX: u8 = 24;
    /// Flannel's default per-node subnet length for IPv6 (`IPv6SubnetLen` 64).
    pub const FLANNEL_V6_PREFIX: u8 = 64;
    /// Calico's default IPAM block length for IPv4 (`blockSize` 26).
    pub const CALICO_V4_PREFIX: u8 = 26;
    /// Calico's default IPAM block length for IPv6 (`blockSize` 122).
    pub const CALICO_V6_PREFIX: u8 = 122;

    /// Carve `network` into subnets of length `subnet_prefix`.
    ///
    /// Fails with [`LeaseError::InvalidPlan`] when `network` has host bits set (give
    /// `10.244.0.0/16`, not `10.244.1.0/16`), when `subnet_prefix` is not longer than the
    /// network's own prefix, or is longer than the address (32 for IPv4, 128 for IPv6), or when
    /// the plan would have 2^128 subnets.
    pub fn new(network: IpNetwork, subnet_prefix: u8) -> Result<Self, LeaseError> {
        let invalid = |reason: String| LeaseError::InvalidPlan {
            network,
            subnet_prefix,
            reason,
        };
        if network.ip() != network.network() {
            return Err(invalid(format!(
                "{} is not a network address (host bits are set; the network is {}/{})",
                network.ip(),
                network.network(),
                network.prefix()
            )));
        }
        let bits = addr_bits(network.ip());
        if subnet_prefix > bits {
            return Err(invalid(format!(
                "a subnet length is at most /{bits} for {}",
                family_name(network)
            )));
        }
        if subnet_prefix <= network.prefix() {
            return Err(invalid(format!(
                "the subnet length must be longer than the network's /{}",
                network.prefix()
            )));
        }
        if subnet_prefix - network.prefix() >= 128 {
            return Err(invalid("that would be 2^128 subnets".to_string()));
        }
        Ok(Self { network, subnet_prefix })
    }

    /// Flannel's carving: /24 per node for an IPv4 network, /64 for an IPv6 one.
    pub fn flannel(network: IpNetwork) -> Result<Self, LeaseError> {
        let len = match network {
            IpNetwork::V4(_) => Self::FLANNEL_V4_PREFIX,
            IpNetwork::V6(_) => Self::FLANNEL_V6_PREFIX,
        };
        Self::new(network, len)
    }

    /// Calico's carving into IPAM blocks: /26 for an IPv4 network, /122 for an IPv6 one.
    pub fn calico(network: IpNetwork) -> Result<Self, LeaseError> {
        let len = match network {
            IpNetwork::V4(_) => Self::CALICO_V4_PREFIX,
            IpNetwork::V6(_) => Self::CALICO_V6_PREFIX,
        };
        Self::new(network, len)
    }

    /// The cluster network.
    pub fn network(&self) -> IpNetwork {
        self.network
    }

    /// The length of each subnet.
    pub fn subnet_prefix(&self) -> u8 {
        self.subnet_prefix
    }

    /// How many subnets the network holds: `2^(subnet_prefix - network prefix)`.
    pub fn count(&self) -> u128 {
        1u128 << (self.subnet_prefix - self.network.prefix())
    }

    /// The subnet numbered `index`, or `None` past the last one.
    pub fn subnet(&self, index: u128) -> Option<IpNetwork> {
        if index >= self.count() {
            return None;
        }
        let shift = addr_bits(self.network.ip()) - self.subnet_prefix;
        // `shift` < 128 because subnet_prefix > network prefix >= 0.
        let base = addr_to_u128(self.network.ip()) + (index << shift);
        let ip = u128_to_addr(base, self.network.ip());
        Some(IpNetwork::new(ip, self.subnet_prefix).expect("prefix checked in SubnetPlan::new"))
    }

    /// The number of `subnet` in this plan, or `None` when it is not one of the plan's subnets
    /// (another family or length, outside the network, or host bits set).
    pub fn index_of(&self, subnet: IpNetwork) -> Option<u128> {
        if subnet.prefix() != self.subnet_prefix
            || subnet.is_ipv4() != self.network.is_ipv4()
            || subnet.ip() != subnet.network()
            || !self.network.contains(subnet.ip())
        {
            return None;
        }
        let shift = addr_bits(self.network.ip()) - self.subnet_prefix;
        Some((addr_to_u128(subnet.ip()) - addr_to_u128(self.network.ip())) >> shift)
    }

    /// Like [`index_of`](Self::index_of), with [`LeaseError::SubnetNotInPlan`] for a subnet
    /// outside the plan.
    pub fn check(&self, subnet: IpNetwork) -> Result<u128, LeaseError> {
        self.index_of(subnet).ok_or(LeaseError::SubnetNotInPlan {
            subnet,
            network: self.network,
            subnet_prefix: self.subnet_prefix,
        })
    }

    /// The first subnet (at the network address).
    pub fn first(&self) -> IpNetwork {
        self.subnet(0).expect("a plan has at least two subnets")
    }

    /// The last subnet (ending at the network's last address).
    pub fn last(&self) -> IpNetwork {
        self.subnet(self.count() - 1).expect("count - 1 is in range")
    }

    /// All subnets in order. Lazy: a large IPv6 plan has far more than fit in memory.
    pub fn iter(&self) -> impl Iterator<Item = IpNetwork> + '_ {
        (0..self.count()).map_while(|i| self.subnet(i))
    }
}

impl fmt::Display for SubnetPlan {
    /// `10.244.0.0/16 split into /24`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} split into /{}", self.network, self.subnet_prefix)
    }
}

fn addr_bits(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn family_name(network: IpNetwork) -> &'static str {
    match network {
        IpNetwork::V4(_) => "IPv4",
        IpNetwork::V6(_) => "IPv6",
    }
}

fn addr_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// `value` as an address of the same family as `like`.
fn u128_to_addr(value: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(value as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
    }
}
