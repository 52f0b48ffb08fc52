//! A node's address blocks in its IPAM store: how full they are, and fencing an empty block off
//! so it can be given back (Calico's block affinity, driven by the overlay agent).
//!
//! The agent claims a new block when the free addresses of its blocks run low, and gives back
//! a block once no pod holds an address of it. Giving back must not race with an allocation
//! that read the subnet file (with the block still in it) a moment earlier: so the agent first
//! *fences* the block — claims every free address of it in the store for a fence owner, all or
//! nothing, with the same atomic claims the CNI plugin's allocations make. Once fenced, no
//! allocation can get an address of the block, whatever subnet file it read; if some address
//! turns out to be held (a pod got one meanwhile), the fence is undone and the block kept. After
//! the block is out of the subnet file and its lease is released, [`unfence`] drops the
//! fence's claims.
//!
//! Loans of single addresses to other nodes (see the overlay's `borrow` module) are claims
//! too: [`lend`] claims one free address of the node's blocks for a lend owner
//! (`netkit-lend-…`, one per address), [`lend_address`] a given one, [`unlend`] releases it.
//! The borrower fences an address it gives back with [`fence_address`] and
//! [`unfence_address`].

use std::net::IpAddr;
use std::path::Path;

use ipnetwork::IpNetwork;

use super::owner::{FENCE_PREFIX, LEND_PREFIX};
use super::{IpRange, Ipam, IpamError, Owner, Pool, RangeSet, StoreOptions};

/// How full one block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockUse {
    /// The block.
    pub block: IpNetwork,
    /// How many of its addresses pods can get (all but the network, gateway and broadcast
    /// addresses).
    pub capacity: u64,
    /// How many of them are held now.
    pub held: u64,
}

impl BlockUse {
    /// Addresses still free.
    pub fn free(&self) -> u64 {
        self.capacity.saturating_sub(self.held)
    }
}

/// The blocks' use in the pool store at `store_dir` (the CNI network's directory, e.g.
/// `/var/lib/cni/netkit/podnet`; created if missing). One listing of the store's address
/// files, no record read.
pub fn block_use(store_dir: &Path, blocks: &[IpNetwork]) -> Result<Vec<BlockUse>, IpamError> {
    let ipam = open(store_dir, blocks)?;
    let held = ipam.store().held_addresses()?;
    Ok(ipam
        .pool()
        .sets()
        .iter()
        .flat_map(RangeSet::ranges)
        .map(|r| BlockUse {
            block: r.subnet(),
            capacity: capacity(r),
            held: held.iter().filter(|ip| r.assignable(**ip)).count() as u64,
        })
        .collect())
}

/// Fence `block` off in the store at `store_dir` (see the [module docs](self)): `Ok(true)` when
/// every assignable address of it is now held by the fence, `Ok(false)` when a pod holds one
/// (nothing stays claimed then).
pub fn fence(store_dir: &Path, block: IpNetwork) -> Result<bool, IpamError> {
    let ipam = open(store_dir, &[block])?;
    ipam.claim_all(&fence_owner(block)?, 0)
}

/// Drop the fence of `block` (idempotent); returns how many addresses it held.
pub fn unfence(store_dir: &Path, block: IpNetwork) -> Result<usize, IpamError> {
    let ipam = open(store_dir, &[block])?;
    Ok(ipam.release(&fence_owner(block)?)?.len())
}

/// Claim one free address of `blocks` in the store at `store_dir` for a loan: the address, or
/// `None` when the blocks are full.
pub fn lend(store_dir: &Path, blocks: &[IpNetwork]) -> Result<Option<IpAddr>, IpamError> {
    let ipam = open(store_dir, blocks)?;
    let owner = Owner::new(&format!("{LEND_PREFIX}{:016x}", crate::random::u64()), "lent")?;
    match ipam.allocate(&owner, &[]) {
        Ok(a) => Ok(a.ips.first().map(|ip| ip.address.ip())),
        Err(IpamError::Exhausted { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Claim `ip` (an address of `blocks`) for a loan: `false` when someone holds it already (a
/// loan of it included).
pub fn lend_address(store_dir: &Path, blocks: &[IpNetwork], ip: IpAddr) -> Result<bool, IpamError> {
    let ipam = open(store_dir, blocks)?;
    if ipam.holder(ip)?.is_some() {
        return Ok(false);
    }
    let owner = Owner::new(&format!("{LEND_PREFIX}{:016x}", crate::random::u64()), "lent")?;
    match ipam.allocate(&owner, &[ip]) {
        Ok(_) => Ok(true),
        Err(IpamError::InUse { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Release a loan of `ip` (idempotent; an address held by anything but a loan is left alone):
/// whether a loan was released.
pub fn unlend(store_dir: &Path, blocks: &[IpNetwork], ip: IpAddr) -> Result<bool, IpamError> {
    let ipam = open(store_dir, blocks)?;
    match ipam.holder(ip)? {
        Some(owner) if owner.container_id().starts_with(LEND_PREFIX) => Ok(!ipam.release(&owner)?.is_empty()),
        _ => Ok(false),
    }
}

/// Fence one address `ip` of `block` (a borrowed one, given back): `Ok(false)` when a pod
/// holds it.
pub fn fence_address(store_dir: &Path, block: IpNetwork, ip: IpAddr) -> Result<bool, IpamError> {
    let ipam = open_ranges(store_dir, vec![IpRange::new(block, Some(ip), Some(ip), None)?])?;
    ipam.claim_all(&address_fence_owner(ip)?, 0)
}

/// Drop the fence of one address (idempotent).
pub fn unfence_address(store_dir: &Path, block: IpNetwork, ip: IpAddr) -> Result<usize, IpamError> {
    let ipam = open_ranges(store_dir, vec![IpRange::new(block, Some(ip), Some(ip), None)?])?;
    Ok(ipam.release(&address_fence_owner(ip)?)?.len())
}

/// Drop every block fence in the store at `store_dir` (an agent that died between fencing a
/// block and giving it back left one; the block is the node's again, or no longer its, either
/// way the fence must go). Fences of single addresses (returns in progress) stay. Returns how
/// many addresses were freed.
pub fn drop_block_fences(store_dir: &Path) -> Result<usize, IpamError> {
    // Release by owner reads the owner's record: the pool's ranges do not matter.
    let any = IpRange::new("10.0.0.0/30".parse().expect("a literal network"), None, None, None)?;
    let ipam = open_ranges(store_dir, vec![any])?;
    let owners: std::collections::BTreeSet<Owner> = ipam
        .list()?
        .into_iter()
        .map(|(_, o)| o)
        .filter(|o| o.container_id().starts_with(FENCE_PREFIX) && o.ifname() == "block")
        .collect();
    let mut freed = 0;
    for owner in owners {
        freed += ipam.release(&owner)?.len();
    }
    Ok(freed)
}

/// The owner fencing one address: `netkit-fence-10.244.1.70`, interface `addr`.
fn address_fence_owner(ip: IpAddr) -> Result<Owner, IpamError> {
    Owner::new(&format!("{FENCE_PREFIX}{ip}").replace(':', "_"), "addr")
}

/// The owner a fence claims addresses for: `netkit-fence-10.244.1.64-26`, interface `block`.
fn fence_owner(block: IpNetwork) -> Result<Owner, IpamError> {
    let id = format!("{FENCE_PREFIX}{}-{}", block.network(), block.prefix()).replace(':', "_");
    Owner::new(&id, "block")
}

/// The store at `store_dir` with a pool of one range set: a range per block.
fn open(store_dir: &Path, blocks: &[IpNetwork]) -> Result<Ipam, IpamError> {
    let ranges = blocks
        .iter()
        .map(|b| IpRange::new(*b, None, None, None))
        .collect::<Result<Vec<_>, _>>()?;
    open_ranges(store_dir, ranges)
}

/// The store at `store_dir` with a pool of one range set of `ranges`.
fn open_ranges(store_dir: &Path, ranges: Vec<IpRange>) -> Result<Ipam, IpamError> {
    let bad = |reason: String| IpamError::Config(super::ConfigError::Shape(reason));
    let (Some(parent), Some(name)) = (store_dir.parent(), store_dir.file_name().and_then(|n| n.to_str())) else {
        return Err(bad(format!("{} names no pool store", store_dir.display())));
    };
    let set = RangeSet::new(ranges)?;
    Ipam::open(Pool::new(name, vec![set])?, parent, StoreOptions::default())
}

/// How many addresses of `r` can be handed out.
fn capacity(r: &IpRange) -> u64 {
    let reserved = [Some(r.gateway()), Some(r.subnet().network()), broadcast(r.subnet())]
        .into_iter()
        .flatten()
        .filter(|ip| r.contains(*ip))
        .count() as u128;
    r.size().saturating_sub(reserved).min(u64::MAX as u128) as u64
}

fn broadcast(n: IpNetwork) -> Option<IpAddr> {
    match n {
        IpNetwork::V4(v4) => Some(IpAddr::V4(v4.broadcast())),
        IpNetwork::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn use_counts_fence_is_all_or_nothing_and_unfence_frees() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("podnet");
        let blocks = [net("10.9.0.0/26"), net("10.9.0.64/26")];
        let use0 = block_use(&store, &blocks).unwrap();
        assert_eq!(
            use0.iter().map(|u| (u.capacity, u.held)).collect::<Vec<_>>(),
            [(61, 0), (61, 0)]
        );

        // A pod's allocation from the pool the CNI plugin builds from the subnet file.
        let ipam = open(&store, &blocks).unwrap();
        let pod = Owner::new("pod1", "eth0").unwrap();
        let got = ipam.allocate(&pod, &["10.9.0.70".parse().unwrap()]).unwrap();
        assert_eq!(got.ips[0].address.ip(), "10.9.0.70".parse::<IpAddr>().unwrap());
        let use1 = block_use(&store, &blocks).unwrap();
        assert_eq!((use1[0].held, use1[1].held, use1[1].free()), (0, 1, 60));

        // The block a pod uses cannot be fenced, and the failed fence leaves nothing behind.
        assert!(!fence(&store, blocks[1]).unwrap());
        assert_eq!(block_use(&store, &blocks).unwrap(), use1);
        // The empty block is fenced: every address held, none left for a pod.
        assert!(fence(&store, blocks[0]).unwrap());
        assert!(fence(&store, blocks[0]).unwrap(), "fencing again is idempotent");
        assert_eq!(block_use(&store, &blocks).unwrap()[0].free(), 0);
        let only_first = open(&store, &blocks[..1]).unwrap();
        let err = only_first
            .allocate(&Owner::new("pod2", "eth0").unwrap(), &[])
            .unwrap_err();
        assert!(matches!(err, IpamError::Exhausted { .. }), "{err}");
        assert_eq!(unfence(&store, blocks[0]).unwrap(), 61);
        assert_eq!(unfence(&store, blocks[0]).unwrap(), 0, "unfence is idempotent");
        assert_eq!(block_use(&store, &blocks).unwrap(), use1);
    }

    #[test]
    fn loans_and_address_fences() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("podnet");
        let blocks = [net("10.9.0.0/28")];
        let a = lend(&store, &blocks).unwrap().expect("a free address");
        assert!(blocks[0].contains(a));
        assert_eq!(block_use(&store, &blocks).unwrap()[0].held, 1, "a loan is held");
        let b: IpAddr = "10.9.0.9".parse().unwrap();
        assert!(lend_address(&store, &blocks, b).unwrap());
        assert!(!lend_address(&store, &blocks, b).unwrap(), "lent already");
        assert!(unlend(&store, &blocks, a).unwrap());
        assert!(!unlend(&store, &blocks, a).unwrap(), "idempotent");
        // A pod's address is never released as a loan.
        let ipam = open(&store, &blocks).unwrap();
        let pod = Owner::new("pod1", "eth0").unwrap();
        let p = ipam.allocate(&pod, &[]).unwrap().ips[0].address.ip();
        assert!(!unlend(&store, &blocks, p).unwrap());
        assert_eq!(ipam.lookup(&pod).unwrap(), [p]);
        // Fencing one address: refused while a pod holds it, all or nothing otherwise.
        assert!(!fence_address(&store, blocks[0], p).unwrap());
        let c: IpAddr = "10.9.0.12".parse().unwrap();
        assert!(fence_address(&store, blocks[0], c).unwrap());
        assert_eq!(
            ipam.holder(c).unwrap().unwrap().container_id(),
            "netkit-fence-10.9.0.12"
        );
        assert_eq!(unfence_address(&store, blocks[0], c).unwrap(), 1);
        assert!(ipam.holder(c).unwrap().is_none());
        // GC (the runtime's list of valid attachments names no agent) keeps loans and fences.
        let lent = lend(&store, &blocks).unwrap().expect("a free address");
        assert!(fence_address(&store, blocks[0], "10.9.0.13".parse().unwrap()).unwrap());
        ipam.gc(std::slice::from_ref(&pod)).unwrap();
        assert!(ipam.holder(lent).unwrap().is_some_and(|o| o.is_agent_claim()));
        assert!(ipam.holder("10.9.0.13".parse().unwrap()).unwrap().is_some());
        assert!(unlend(&store, &blocks, lent).unwrap());
        assert_eq!(
            unfence_address(&store, blocks[0], "10.9.0.13".parse().unwrap()).unwrap(),
            1
        );
        // A block fence left by a crash is dropped; address fences stay.
        let other = net("10.9.0.16/28");
        assert!(fence(&store, other).unwrap());
        assert!(fence_address(&store, blocks[0], c).unwrap());
        assert_eq!(drop_block_fences(&store).unwrap(), 13);
        assert!(ipam.holder(c).unwrap().is_some(), "the address fence stays");
        unfence_address(&store, blocks[0], c).unwrap();
        // Fill the block with loans: then none is left.
        while lend(&store, &blocks).unwrap().is_some() {}
        assert_eq!(block_use(&store, &blocks).unwrap()[0].free(), 0);
    }
}
