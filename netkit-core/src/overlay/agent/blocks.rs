//! The agent's block affinity (see [`crate::overlay::blocks`]): the IPAM store followed, blocks
//! claimed and given back, their leases renewed, the subnet file and BIRD told.

use ipnetwork::IpNetwork;

use super::{Running, TARGET};
use crate::fsutil::watch::DirWatch;
use crate::ipam::blocks::block_use;
use crate::ipam::lease::LeaseStore;
use crate::ipam::SubnetFile;
use crate::overlay::blocks::{next_step, BlockPolicy, BlockStep};

/// What a block claim gave.
pub(super) enum Claimed {
    /// A block.
    Yes,
    /// None: the pool has no free block (borrow addresses instead).
    PoolExhausted,
    /// None, for another reason (logged).
    No,
}

impl<S: LeaseStore> Running<'_, S> {
    /// The node's blocks changed: write the subnet file and hand them to the backend (BIRD
    /// announces and blackholes them).
    pub(super) async fn apply_blocks(&mut self) {
        let blocks = self.blocks();
        let Some(&first) = blocks.first() else {
            return;
        };
        // Borrowed addresses: handed out with their lender's block's prefix, announced as /32s.
        let usable = self.usable_loans();
        let prefix = self.agent.store.plan().subnet_prefix();
        if let Some(path) = &self.agent.cfg.subnet_file {
            let mut file = SubnetFile::new(self.network(), first, self.backend.pod_mtu());
            file.ip_masq = self.agent.cfg.ip_masq;
            file.extra_subnets = blocks[1..].to_vec();
            file.borrowed = usable
                .keys()
                .filter_map(|ip| IpNetwork::new(*ip, prefix).ok())
                .collect();
            if let Err(e) = file.write(path) {
                log::warn!(target: TARGET, "{}: {e}", self.node());
            }
        }
        let mut announce = blocks;
        announce.extend(usable.keys().map(|ip| IpNetwork::from(*ip)));
        self.backend.set_blocks(announce);
        self.sync_backend().await;
        self.borrowed_applied = usable.keys().copied().collect();
        // Tell the lenders which of their addresses are in use here.
        let mut have_changed = false;
        for (lender, ask) in self.loans.asks.iter_mut() {
            let have: std::collections::BTreeSet<_> =
                usable.iter().filter(|(_, l)| *l == lender).map(|(ip, _)| *ip).collect();
            if ask.have != have {
                ask.have = have;
                have_changed = true;
            }
        }
        for (ip, lender) in &usable {
            let ask = self.loans.asks.entry(lender.clone()).or_default();
            have_changed |= ask.have.insert(*ip);
        }
        if have_changed {
            self.publish_loans().await;
        }
    }

    /// Start following the IPAM store (block affinity only); `None` without a policy or when
    /// it cannot be watched (said in the log; the renewal timer tries again).
    pub(super) async fn watch_ipam(&mut self) -> Option<DirWatch> {
        let policy = self.agent.cfg.blocks.clone()?;
        // A block fence left by an agent that died while giving a block back: the block is
        // this node's again (or not at all): the fence goes.
        let dir = policy.ipam_store.clone();
        match tokio::task::spawn_blocking(move || crate::ipam::blocks::drop_block_fences(&dir)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => log::info!(target: TARGET, "{}: dropped an old block fence ({n} addresses)", self.node()),
            Ok(Err(e)) => log::warn!(target: TARGET, "{}: block fences: {e}", self.node()),
            Err(e) => log::warn!(target: TARGET, "{}: block fences: {e}", self.node()),
        }
        // Counting creates the store, so its `ip/` directory exists to be watched.
        self.check_blocks().await;
        match DirWatch::new(&policy.ipam_store.join("ip")) {
            Ok(w) => Some(w),
            Err(e) => {
                log::warn!(target: TARGET, "{}: block affinity: {e}", self.node());
                None
            }
        }
    }

    /// Count the blocks' free addresses and claim or give back blocks as the policy says
    /// (see [`super::blocks`]); whether anything changed.
    pub(super) async fn check_blocks(&mut self) -> bool {
        let Some(policy) = self.agent.cfg.blocks.clone() else {
            return false;
        };
        let mut changed = false;
        // One step at a time, each on a fresh count; a few per wake-up at most.
        for _ in 0..4 {
            let blocks = self.blocks();
            if blocks.is_empty() {
                break;
            }
            let store = policy.ipam_store.clone();
            let usage = match tokio::task::spawn_blocking(move || block_use(&store, &blocks)).await {
                Ok(Ok(u)) => u,
                Ok(Err(e)) => {
                    log::warn!(target: TARGET, "{}: block affinity: counting addresses: {e}", self.node());
                    break;
                }
                Err(e) => {
                    log::warn!(target: TARGET, "{}: block affinity: {e}", self.node());
                    break;
                }
            };
            changed |= usage != self.block_use;
            self.block_use = usage;
            let step = match next_step(&policy, &self.block_use) {
                // Borrowed addresses go back first, once the node has room without them.
                BlockStep::Keep => self.return_borrowed(&policy).await,
                BlockStep::Claim => match self.claim_block().await {
                    Claimed::Yes => true,
                    Claimed::PoolExhausted => {
                        self.borrow_more(&policy).await;
                        false
                    }
                    Claimed::No => false,
                },
                BlockStep::GiveBack(b) => self.give_back(&policy, b).await,
            };
            if !step {
                break;
            }
            changed = true;
        }
        // A lender that gained room lends what a borrower still waits for.
        if self.loans_owed() {
            self.settle_loans().await;
        }
        changed
    }

    /// Lease one more block (the lowest free slot).
    pub(super) async fn claim_block(&mut self) -> Claimed {
        let Some(slot) = (1..=crate::ipam::lease::MAX_SLOT).find(|s| !self.extra.contains_key(s)) else {
            return Claimed::No;
        };
        // A block's lease carries the backend's data only (loans live in the first lease).
        let req = self.request(None).slot(slot).backend_data(self.backend.lease_data());
        match self.agent.store.acquire(&req).await {
            Ok(lease) => {
                self.store_ok();
                self.block_error = None;
                log::info!(target: TARGET, "{}: claimed block {} (slot {slot}): the node's blocks ran low", self.node(), lease.subnet);
                let block = lease.subnet;
                self.extra.insert(slot, lease);
                self.adopt_loans_in(block).await;
                self.apply_blocks().await;
                Claimed::Yes
            }
            Err(e) if e.is_exhausted() => {
                let why = format!("no block left to claim ({e}); borrowing addresses of other nodes' blocks");
                if self.block_error.as_deref() != Some(why.as_str()) {
                    log::warn!(target: TARGET, "{}: {why}", self.node());
                }
                self.block_error = Some(why);
                Claimed::PoolExhausted
            }
            Err(e) => {
                self.store_failed(&e);
                Claimed::No
            }
        }
    }

    /// Give an empty claimed block back: fence it in the IPAM store, take it out of the subnet
    /// file and BIRD, release its lease, drop the fence. Whether it was given back.
    pub(super) async fn give_back(&mut self, policy: &BlockPolicy, block: IpNetwork) -> bool {
        let Some((&slot, lease)) = self.extra.iter().find(|(_, l)| l.subnet == block) else {
            return false;
        };
        let lease = lease.clone();
        let store = policy.ipam_store.clone();
        match tokio::task::spawn_blocking(move || crate::ipam::blocks::fence(&store, block)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return false, // a pod got an address meanwhile: keep it
            Ok(Err(e)) => {
                log::warn!(target: TARGET, "{}: fencing block {block}: {e}", self.node());
                return false;
            }
            Err(e) => {
                log::warn!(target: TARGET, "{}: fencing block {block}: {e}", self.node());
                return false;
            }
        }
        self.extra.remove(&slot);
        self.apply_blocks().await;
        match self.agent.store.release(&lease).await {
            Ok(()) => log::info!(target: TARGET, "{}: gave back empty block {block} (slot {slot})", self.node()),
            // It expires by itself: nothing renews it any more.
            Err(e) => log::warn!(target: TARGET, "{}: releasing block {block}: {e}; it expires unrenewed", self.node()),
        }
        let store = policy.ipam_store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || crate::ipam::blocks::unfence(&store, block)).await {
            log::warn!(target: TARGET, "{}: unfencing block {block}: {e}", self.node());
        }
        true
    }

    /// Renew the claimed blocks' leases; a lost one is acquired again in its slot (its old
    /// block if still free).
    pub(super) async fn renew_blocks(&mut self) {
        let mut changed = false;
        for (slot, lease) in self.extra.clone() {
            match self.agent.store.renew(&lease).await {
                Ok(renewed) => {
                    self.store_ok();
                    self.extra.insert(slot, renewed);
                }
                Err(e) if e.is_lost() => {
                    log::warn!(target: TARGET, "{}: lost block {} (slot {slot}); acquiring again", self.node(), lease.subnet);
                    match self
                        .agent
                        .store
                        .acquire(
                            &self
                                .request(Some(lease.subnet))
                                .slot(slot)
                                .backend_data(self.backend.lease_data()),
                        )
                        .await
                    {
                        Ok(new) => {
                            let moved = new.subnet != lease.subnet;
                            let block = new.subnet;
                            self.extra.insert(slot, new);
                            if moved {
                                self.adopt_loans_in(block).await;
                                changed = true;
                            }
                        }
                        // Kept (its pods are there): the next renewal tries again.
                        Err(e) => self.store_failed(&e),
                    }
                }
                Err(e) => self.store_failed(&e),
            }
        }
        if changed {
            self.apply_blocks().await;
        }
    }
}
