//! Addresses, networks and MACs from their text, for literals in tests (a typo panics, naming
//! the text).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netkit_core::MacAddr;

/// An IPv4 or IPv6 address.
#[track_caller]
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("{s:?} is not an address"))
}

/// A network (`address/prefix`).
#[track_caller]
pub fn net(s: &str) -> IpNetwork {
    s.parse().unwrap_or_else(|e| panic!("{s:?} is not a network: {e}"))
}

/// A MAC address.
#[track_caller]
pub fn mac(s: &str) -> MacAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not a MAC address: {e:?}"))
}
