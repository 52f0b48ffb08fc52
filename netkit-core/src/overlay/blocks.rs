//! Calico's block affinity for the overlay agent: a node holds as many blocks of the cluster's
//! pool as its pods need — a new block when its blocks run low, an empty one given back.
//!
//! The node's first block is its ordinary lease (slot 0, as every backend has it); more blocks
//! are leases in slots 1, 2, … of the same store (see
//! [`LeaseRequest::slot`](crate::ipam::lease::LeaseRequest::slot)). The agent follows the CNI
//! plugin's IPAM store ([`BlockPolicy::ipam_store`]) with inotify: after every allocation or
//! release it counts the free addresses of its blocks ([`crate::ipam::blocks::block_use`]) and
//!
//! * claims another block when fewer than [`BlockPolicy::min_free`] are free (and it holds
//!   fewer than [`BlockPolicy::max_blocks`]); the block goes into the subnet file (the CNI
//!   plugin hands out its addresses once the earlier blocks are full), into BIRD's
//!   configuration (announced to the other nodes) and gets its blackhole route;
//! * gives back an empty block (never the first) once the other blocks have at least twice
//!   `min_free` free addresses (so a pod coming and going at the boundary does not make the
//!   node claim and release a block each time): the block is fenced in the IPAM store first
//!   (see [`crate::ipam::blocks`]) so no allocation can race the release, taken out of the
//!   subnet file and of BIRD, its lease released, and the fence dropped.
//!
//! Decisions the issue left open: `min_free` defaults to 4 (an ADD burst larger than that can
//! meet a full node and fail with "exhausted" until the new block is in the subnet file, a few
//! milliseconds later; runtimes retry a failed ADD); a node holds at most 16 blocks by default.
//! When the pool has no free block left, the node borrows single addresses of other nodes'
//! blocks instead (see [`super::borrow`]), and gives them back first once it has room.

use std::path::PathBuf;

use ipnetwork::IpNetwork;

use crate::ipam::blocks::BlockUse;

/// When a node claims and gives back blocks (bgp backend).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockPolicy {
    /// The CNI network's IPAM store the node's pods get addresses from (the `netkit-ipam`
    /// data directory joined with the network name, e.g. `/var/lib/cni/netkit/podnet`).
    pub ipam_store: PathBuf,
    /// Claim another block when fewer addresses than this are free (4).
    pub min_free: u64,
    /// Hold at most this many blocks (16).
    pub max_blocks: u32,
}

impl BlockPolicy {
    /// The defaults for the store at `ipam_store`.
    pub fn new(ipam_store: impl Into<PathBuf>) -> Self {
        Self {
            ipam_store: ipam_store.into(),
            min_free: 4,
            max_blocks: 16,
        }
    }
}

/// What to do after counting (first block first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockStep {
    /// Claim one more block.
    Claim,
    /// Give this empty block back.
    GiveBack(IpNetwork),
    /// Nothing.
    Keep,
}

/// The next step for blocks in `usage` (the node's blocks, its first block first).
pub(crate) fn next_step(policy: &BlockPolicy, usage: &[BlockUse]) -> BlockStep {
    let free: u64 = usage.iter().map(BlockUse::free).sum();
    if free < policy.min_free {
        return match usage.len() < policy.max_blocks as usize {
            true => BlockStep::Claim,
            false => BlockStep::Keep,
        };
    }
    usage
        .iter()
        .skip(1)
        .rev()
        .find(|u| u.held == 0 && free - u.free() >= 2 * policy.min_free)
        .map_or(BlockStep::Keep, |u| BlockStep::GiveBack(u.block))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(block: &str, held: u64) -> BlockUse {
        BlockUse {
            block: block.parse().unwrap(),
            capacity: 61,
            held,
        }
    }

    #[test]
    fn claims_when_low_gives_back_with_hysteresis() {
        let p = BlockPolicy::new("/x/podnet");
        assert_eq!(next_step(&p, &[u("10.0.0.0/26", 10)]), BlockStep::Keep);
        assert_eq!(next_step(&p, &[u("10.0.0.0/26", 58)]), BlockStep::Claim);
        // A fresh second block, the first nearly full: keep it.
        assert_eq!(
            next_step(&p, &[u("10.0.0.0/26", 58), u("10.0.1.0/26", 0)]),
            BlockStep::Keep
        );
        // Pods left the first block: the empty second one goes back, never the first.
        assert_eq!(
            next_step(&p, &[u("10.0.0.0/26", 40), u("10.0.1.0/26", 0)]),
            BlockStep::GiveBack("10.0.1.0/26".parse().unwrap())
        );
        assert_eq!(next_step(&p, &[u("10.0.0.0/26", 0)]), BlockStep::Keep);
        // Just above the boundary: 61-55 = 6 free < 2*4, keep the spare block.
        assert_eq!(
            next_step(&p, &[u("10.0.0.0/26", 55), u("10.0.1.0/26", 0)]),
            BlockStep::Keep
        );
        // The last empty block goes first; a used one never.
        assert_eq!(
            next_step(&p, &[u("10.0.0.0/26", 0), u("10.0.1.0/26", 0), u("10.0.2.0/26", 0)]),
            BlockStep::GiveBack("10.0.2.0/26".parse().unwrap())
        );
        assert_eq!(
            next_step(&p, &[u("10.0.0.0/26", 0), u("10.0.1.0/26", 1)]),
            BlockStep::Keep
        );
        // At the limit, no claim.
        let full: Vec<BlockUse> = (0..16).map(|i| u(&format!("10.0.{i}.0/26"), 61)).collect();
        assert_eq!(next_step(&p, &full), BlockStep::Keep);
    }
}
