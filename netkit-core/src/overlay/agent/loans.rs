//! The agent's side of borrowed addresses (see [`crate::overlay::borrow`]): asking a lender,
//! lending, giving back, and telling the subnet file, BIRD and the other nodes.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use tokio::time::Instant;

use super::{Running, TARGET};
use crate::ipam::blocks::{fence_address, lend, lend_address, unfence_address, unlend};
use crate::ipam::lease::{Lease, LeaseStore};
use crate::ipam::{IpamError, Store, StoreOptions};
use crate::overlay::blocks::BlockPolicy;
use crate::overlay::borrow::{next_lender, ASK_TIMEOUT};

/// Run blocking IPAM store work off the async threads; `None` (logged) on failure.
async fn ipam<T: Send + 'static>(
    node: &str,
    what: &str,
    work: impl FnOnce() -> Result<T, IpamError> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            log::warn!(target: TARGET, "{node}: {what}: {e}");
            None
        }
        Err(e) => {
            log::warn!(target: TARGET, "{node}: {what}: {e}");
            None
        }
    }
}

impl<S: LeaseStore> Running<'_, S> {
    /// The borrowed addresses this node may hand out, with their lenders (see
    /// [`crate::overlay::borrow::Loans::usable`]): inside the cluster network, outside this
    /// node's own blocks, and in a block the lender holds (or the lender is gone: its
    /// borrowers keep what they have).
    pub(super) fn usable_loans(&self) -> std::collections::BTreeMap<IpAddr, String> {
        let network = self.network();
        let own = self.blocks();
        self.loans.usable(|lender, ip| {
            let lender_blocks: Vec<IpNetwork> = self
                .peers
                .values()
                .filter(|p| p.node == lender)
                .map(|p| p.subnet)
                .collect();
            network.contains(ip)
                && !own.iter().any(|b| b.contains(ip))
                && (lender_blocks.is_empty() || lender_blocks.iter().any(|b| b.contains(ip)))
        })
    }

    /// The block `ip` belongs to (the plan's block size).
    fn block_of(&self, ip: IpAddr) -> IpNetwork {
        let prefix = self.agent.store.plan().subnet_prefix();
        IpNetwork::new(ip, prefix)
            .map(|n| IpNetwork::new(n.network(), prefix).unwrap_or(n))
            .unwrap_or_else(|_| IpNetwork::from(ip))
    }

    /// Borrowed addresses usable now that no pod holds.
    async fn borrowed_free(&self, policy: &BlockPolicy) -> Vec<IpAddr> {
        let usable: Vec<IpAddr> = self.usable_loans().into_keys().collect();
        if usable.is_empty() {
            return usable;
        }
        let dir = policy.ipam_store.clone();
        let held = ipam(self.node(), "reading the IPAM store", move || {
            Store::open(&dir, StoreOptions::default())?.held_addresses()
        })
        .await
        .unwrap_or_default();
        usable.into_iter().filter(|ip| !held.contains(ip)).collect()
    }

    /// Free addresses in all: the node's blocks' and the borrowed ones'.
    async fn free_total(&self, policy: &BlockPolicy) -> (u64, Vec<IpAddr>) {
        let own: u64 = self.block_use.iter().map(|u| u.free()).sum();
        let borrowed = self.borrowed_free(policy).await;
        (own + borrowed.len() as u64, borrowed)
    }

    /// The node's blocks are full and the pool has none left: ask a lender for what is
    /// missing (see [`crate::overlay::borrow`]).
    pub(super) async fn borrow_more(&mut self, policy: &BlockPolicy) {
        let (free, _) = self.free_total(policy).await;
        if free >= policy.min_free {
            return;
        }
        let missing = (policy.min_free - free) as usize;
        let now = Instant::now();
        let me = self.node().to_string();
        let lender = match self.loans.asking.clone() {
            Some((l, since)) => {
                let got = self.loans.lent_to_me.get(&l).map_or(0, |s| s.len());
                let asked = self.loans.asks.get(&l).map_or(0, |a| a.want);
                if got < asked && now.duration_since(since) >= ASK_TIMEOUT {
                    // It did not lend within the time: ask the next one, keep what it lent.
                    if let Some(a) = self.loans.asks.get_mut(&l) {
                        a.want = got;
                    }
                    let nodes: Vec<String> = self.peers.values().map(|p| p.node.clone()).collect();
                    next_lender(&me, Some(&l), nodes.iter().map(String::as_str))
                } else {
                    Some(l)
                }
            }
            None => {
                let nodes: Vec<String> = self.peers.values().map(|p| p.node.clone()).collect();
                next_lender(&me, None, nodes.iter().map(String::as_str))
            }
        };
        let Some(lender) = lender else {
            return;
        };
        let usable_from = self.usable_loans().values().filter(|l| **l == lender).count();
        let ask = self.loans.asks.entry(lender.clone()).or_default();
        // In all from this lender: what it lent and is kept, and what is missing (addresses
        // being given back are not counted: the lender drops them before it lends more).
        let want = usable_from + missing;
        let new_lender = self.loans.asking.as_ref().map(|(l, _)| l) != Some(&lender);
        if want > ask.want || new_lender {
            ask.want = want.max(ask.want);
            log::info!(target: TARGET, "{me}: no block left: asking {lender} to lend {} address(es) in all", ask.want);
            self.loans.asking = Some((lender, now));
            self.loans_recheck = Some(now + ASK_TIMEOUT);
            self.publish_loans().await;
        } else if self.loans_recheck.is_none() {
            self.loans_recheck = self.loans.asking.as_ref().map(|(_, since)| *since + ASK_TIMEOUT);
        }
    }

    /// Give one unused borrowed address back when the node has twice `min_free` free without
    /// it; whether it did.
    pub(super) async fn return_borrowed(&mut self, policy: &BlockPolicy) -> bool {
        let (free, unused) = self.free_total(policy).await;
        let Some(&ip) = unused.first() else {
            return false;
        };
        if free.saturating_sub(1) < 2 * policy.min_free {
            return false;
        }
        let Some(lender) = self.usable_loans().get(&ip).cloned() else {
            return false;
        };
        let (dir, block) = (policy.ipam_store.clone(), self.block_of(ip));
        let fenced = ipam(self.node(), "fencing a borrowed address", move || {
            fence_address(&dir, block, ip)
        })
        .await;
        if fenced != Some(true) {
            return false; // a pod got it meanwhile
        }
        let ask = self.loans.asks.entry(lender.clone()).or_default();
        ask.returned.insert(ip);
        ask.want = ask.want.saturating_sub(1);
        if self.loans.asking.as_ref().is_some_and(|(l, _)| *l == lender) {
            self.loans.asking = None;
        }
        log::info!(target: TARGET, "{}: giving {ip} back to {lender}", self.node());
        self.apply_blocks().await;
        self.publish_loans().await;
        true
    }

    /// Act on what the leases say about loans: lend what borrowers ask for (keeping twice
    /// `min_free` free), release what they gave back, finish this node's own returns, and
    /// hand the usable borrowed addresses to the subnet file and BIRD.
    pub(super) async fn settle_loans(&mut self) {
        let Some(policy) = self.agent.cfg.blocks.clone() else {
            return;
        };
        let mut publish = false;
        let blocks = self.blocks();
        // As lender.
        for (borrower, ask) in self.loans.asked_of_me.clone() {
            let mut lent = self.loans.lent.get(&borrower).cloned().unwrap_or_default();
            for ip in ask.returned.intersection(&lent.clone()) {
                let (dir, b, ip) = (policy.ipam_store.clone(), blocks.clone(), *ip);
                if ipam(self.node(), "releasing a loan", move || unlend(&dir, &b, ip))
                    .await
                    .is_some()
                {
                    lent.remove(&ip);
                    publish = true;
                    log::info!(target: TARGET, "{}: {borrower} gave {ip} back", self.node());
                }
            }
            while lent.len() < ask.want {
                let dir = policy.ipam_store.clone();
                let b = blocks.clone();
                let usage = ipam(self.node(), "counting addresses", move || {
                    crate::ipam::blocks::block_use(&dir, &b)
                })
                .await
                .unwrap_or_default();
                let free: u64 = usage.iter().map(|u| u.free()).sum();
                if free <= 2 * policy.min_free {
                    break;
                }
                let (dir, b) = (policy.ipam_store.clone(), blocks.clone());
                match ipam(self.node(), "lending an address", move || lend(&dir, &b))
                    .await
                    .flatten()
                {
                    Some(ip) => {
                        log::info!(target: TARGET, "{}: lent {ip} to {borrower}", self.node());
                        lent.insert(ip);
                        publish = true;
                    }
                    None => break,
                }
            }
            match lent.is_empty() {
                true => self.loans.lent.remove(&borrower),
                false => self.loans.lent.insert(borrower, lent),
            };
        }
        // As borrower: returns the lender has taken back are done.
        let lenders: Vec<String> = self.loans.asks.keys().cloned().collect();
        for lender in lenders {
            let listed = self.loans.lent_to_me.get(&lender).cloned().unwrap_or_default();
            let done: Vec<IpAddr> = self.loans.asks[&lender]
                .returned
                .iter()
                .filter(|ip| !listed.contains(ip))
                .copied()
                .collect();
            for ip in done {
                let (dir, block) = (policy.ipam_store.clone(), self.block_of(ip));
                ipam(self.node(), "dropping a returned address's fence", move || {
                    unfence_address(&dir, block, ip)
                })
                .await;
                if let Some(a) = self.loans.asks.get_mut(&lender) {
                    a.returned.remove(&ip);
                }
                publish = true;
            }
        }
        self.loans
            .asks
            .retain(|_, a| a.want > 0 || !a.have.is_empty() || !a.returned.is_empty());
        // Something new to hand out (or gone): the subnet file and BIRD.
        let usable: BTreeSet<IpAddr> = self.usable_loans().into_keys().collect();
        if usable != self.borrowed_applied {
            self.apply_blocks().await;
        }
        if publish {
            self.publish_loans().await;
        }
    }

    /// A block was just claimed: addresses of it that other nodes use (borrowed from the
    /// block's earlier owner) are claimed as lent to them before any pod gets one.
    pub(super) async fn adopt_loans_in(&mut self, block: IpNetwork) {
        let Some(policy) = self.agent.cfg.blocks.clone() else {
            return;
        };
        let mut publish = false;
        for (node, ips) in self.loans.in_use_by.clone() {
            for ip in ips.into_iter().filter(|ip| block.contains(*ip)) {
                let dir = policy.ipam_store.clone();
                let ok = ipam(self.node(), "adopting a loan", move || lend_address(&dir, &[block], ip)).await;
                if ok == Some(true) {
                    log::info!(target: TARGET, "{}: {node} uses {ip} of block {block}: lent to it", self.node());
                    self.loans.lent.entry(node.clone()).or_default().insert(ip);
                    publish = true;
                }
            }
        }
        if publish {
            self.publish_loans().await;
        }
    }

    /// `node`'s lease ended: release what this node lent it.
    pub(super) async fn loans_node_gone(&mut self, node: &str) {
        let freed = self.loans.node_gone(node);
        let Some(policy) = self.agent.cfg.blocks.clone() else {
            return;
        };
        if freed.is_empty() {
            return;
        }
        let blocks = self.blocks();
        for ip in freed {
            let (dir, b) = (policy.ipam_store.clone(), blocks.clone());
            ipam(self.node(), "releasing a loan", move || unlend(&dir, &b, ip)).await;
        }
        log::info!(target: TARGET, "{}: {node} is gone: its loans are released", self.node());
        self.publish_loans().await;
    }

    /// Publish this node's `Borrow` and `Lent` in its lease (an idempotent acquire that
    /// rewrites the lease's metadata), unless that is what the lease says already. A failure
    /// is tried again a second later.
    pub(super) async fn publish_loans(&mut self) {
        let Some(lease) = self.lease.clone() else {
            return;
        };
        let now = self.loans.published();
        if self.loans_published.as_ref() == Some(&now) && !self.loans_unpublished {
            return;
        }
        match self.agent.store.acquire(&self.request(Some(lease.subnet))).await {
            Ok(l) => {
                self.store_ok();
                (self.loans_published, self.loans_unpublished) = (Some(now), false);
                if l.subnet == lease.subnet {
                    self.lease = Some(l);
                } else {
                    // The lease was lost meanwhile and acquired again elsewhere: the main loop
                    // takes it up (set the backend up for it) before its next wait.
                    self.moved_lease = Some(l);
                }
            }
            Err(e) => {
                self.store_failed(&e);
                self.loans_unpublished = true;
                self.loans_recheck = Some(Instant::now() + std::time::Duration::from_secs(1));
            }
        }
    }

    /// A lender: whether a borrower still waits for more than it lent.
    pub(super) fn loans_owed(&self) -> bool {
        self.loans
            .asked_of_me
            .iter()
            .any(|(b, a)| self.loans.lent.get(b).map_or(0, |s| s.len()) < a.want)
    }

    /// Read this node's first lease from the store (before the first acquire rewrites it)
    /// and take up the loans it records.
    pub(super) async fn adopt_own_loans_from_store(&mut self) {
        if self.agent.cfg.blocks.is_none() {
            return;
        }
        match self.agent.store.list().await {
            Ok(leases) => {
                if let Some(l) = leases.iter().find(|l| l.node() == self.node() && l.slot == 0) {
                    self.adopt_own_loans(l);
                    self.loans_published = Some(self.loans.published());
                }
            }
            Err(e) => log::warn!(target: TARGET, "{}: reading this node's loans back: {e}", self.node()),
        }
    }

    /// The loans part of this node's own first lease, read back after a restart.
    pub(super) fn adopt_own_loans(&mut self, lease: &Lease) {
        self.loans.adopt(&lease.meta.backend_data);
    }
}
