//! nftables.

pub(crate) mod netlink;
