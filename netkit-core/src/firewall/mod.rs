//! Firewall support (nftables).

pub(crate) mod nft;
