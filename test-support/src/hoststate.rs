//! What an attachment may change in a plugin test's host namespace and stores ([`HostState`]),
//! read the same way by netkit-cni's plugin tests and netkit-core's attach tests.

use netkit_core::firewall::{self, Driver, Firewall, FirewallOptions};
use netkit_core::ipam::{Ipam, IpamConfig, StoreOptions};
use netkit_core::NetNs;

use crate::snapshot::LinkRow;
use crate::HostNs;

/// Everything an attachment may change in a host: links, addresses, the nft ruleset, the IPAM
/// reservations of one pool and the firewall owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    /// The host's links: (name, kind, master).
    pub links: Vec<LinkRow>,
    /// The host's global addresses.
    pub addrs: Vec<String>,
    /// `nft list ruleset`.
    pub nft: String,
    /// The pool's reservations: "address containerID:ifname".
    pub held: Vec<String>,
    /// The firewall owners recorded in [`HostNs::fw_dir`].
    pub fw_owners: Vec<String>,
}

impl HostState {
    /// What differs, in words (empty when equal).
    pub fn diff(&self, after: &HostState) -> String {
        let mut out = String::new();
        if self.links != after.links {
            out += &format!("links {:?} -> {:?}; ", self.links, after.links);
        }
        if self.addrs != after.addrs {
            out += &format!("addresses {:?} -> {:?}; ", self.addrs, after.addrs);
        }
        if self.nft != after.nft {
            out += &format!("nft ruleset changed:\n{}\n->\n{}\n; ", self.nft, after.nft);
        }
        if self.held != after.held {
            out += &format!("IPAM {:?} -> {:?}; ", self.held, after.held);
        }
        if self.fw_owners != after.fw_owners {
            out += &format!("firewall owners {:?} -> {:?}; ", self.fw_owners, after.fw_owners);
        }
        out
    }
}

impl HostNs {
    /// The IPAM store of pool `pool` in [`HostNs::ipam_dir`] (opened as netkit's library does;
    /// its ranges cover every private range, so any address of the pool is listed).
    pub fn ipam_store(&self, pool: &str) -> Ipam {
        let cfg = IpamConfig::from_json(r#"{"ranges":[[{"subnet":"10.0.0.0/8"}],[{"subnet":"fd00::/8"}]]}"#)
            .expect("a literal IPAM configuration");
        Ipam::open(
            cfg.pool(pool).expect("the pool"),
            &self.ipam_dir(),
            StoreOptions::default(),
        )
        .expect("open the IPAM store")
    }

    /// Every reservation of pool `pool`: "address containerID:ifname".
    pub fn ipam_held(&self, pool: &str) -> Vec<String> {
        self.ipam_store(pool)
            .list()
            .expect("list the IPAM store")
            .iter()
            .map(|(ip, o)| format!("{ip} {}:{}", o.container_id(), o.ifname()))
            .collect()
    }

    /// The owners in the nftables firewall state of [`HostNs::fw_dir`], sorted. Runs its own
    /// runtime: call it outside one.
    pub fn fw_owners(&self) -> Vec<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = self.fw_dir();
        let ns: &NetNs = self;
        rt.block_on(async move {
            let fw = firewall::open(ns, FirewallOptions::default().driver(Driver::Nftables).state_dir(dir))
                .await
                .expect("open the host's firewall");
            let mut owners = fw.owners().await.expect("firewall owners");
            owners.sort();
            owners
        })
    }

    /// The host's state now, with pool `pool`'s reservations.
    pub fn state(&self, pool: &str) -> HostState {
        HostState {
            links: self.links(),
            addrs: self.global_addrs(),
            nft: self.nft_ruleset(),
            held: self.ipam_held(pool),
            fw_owners: self.fw_owners(),
        }
    }
}
