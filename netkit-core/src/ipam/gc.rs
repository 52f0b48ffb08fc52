//! Garbage collection and consistency checks: the scans the allocator's hot path never does.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use super::error::Result;
use super::{Ipam, Owner};

/// What [`Ipam::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Owners not in the valid list, with the addresses released from each.
    pub released: Vec<(Owner, Vec<IpAddr>)>,
    /// Address files whose owner's record did not list them (left by a damaged store), released
    /// because the owner is not valid.
    pub orphans_released: Vec<(IpAddr, Owner)>,
    /// The same for valid owners: the address was added back to the owner's record.
    pub orphans_adopted: Vec<(IpAddr, Owner)>,
    /// Listed-but-not-held entries (intents of killed processes) dropped from valid owners.
    pub stale_intents: usize,
    /// Scratch files of dead processes removed.
    pub scratch_removed: usize,
    /// Damaged records (and entries that are no record) GC found and moved to the store's
    /// `quarantine/`: where each is now (its original name is kept as the file name).
    pub quarantined: Vec<PathBuf>,
}

impl GcReport {
    /// Every address released.
    pub fn released_ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self.released.iter().flat_map(|(_, ips)| ips.iter().copied()).collect();
        ips.extend(self.orphans_released.iter().map(|(ip, _)| *ip));
        ips.sort();
        ips
    }
}

/// What [`Ipam::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCheck {
    /// Held addresses.
    pub held: usize,
    /// Owner records.
    pub owners: usize,
    /// Listed-but-not-held entries (harmless; GC drops them).
    pub stale_intents: usize,
    /// Broken invariants: address files their owner's record does not list.
    pub problems: Vec<String>,
}

impl Ipam {
    /// Release everything not held by one of the `valid` owners (CNI GC's
    /// `cni.dev/valid-attachments`) or by a node agent's fence or loan
    /// ([`Owner::is_agent_claim`]), and tidy what killed processes left behind.
    ///
    /// The whole store is read first. A damaged record does not stop GC: it is moved to the
    /// store's `quarantine/` (a damaged owner record is rebuilt from the address files naming
    /// the owner; a damaged address file frees its address), logged, and listed in
    /// [`GcReport::quarantined`]. Each owner is then handled under its own lock, so GC runs
    /// safely beside allocations; an owner allocating while GC runs is never released unless
    /// it is missing from `valid`.
    pub fn gc(&self, valid: &[Owner]) -> Result<GcReport> {
        let collector = crate::fsutil::Collector::start();
        let mut report = self.gc_inner(valid)?;
        report.quarantined = collector.take();
        Ok(report)
    }

    fn gc_inner(&self, valid: &[Owner]) -> Result<GcReport> {
        let store = self.store();
        let valid: HashSet<&Owner> = valid.iter().collect();
        let records = store.owner_records()?;
        let held = store.held()?;
        let mut report = GcReport::default();

        // A node agent's fences and loans are no container's: never garbage.
        let keep = |o: &Owner| valid.contains(o) || o.is_agent_claim();
        for rec in &records {
            if keep(&rec.owner) {
                continue;
            }
            let ips = self.release(&rec.owner)?;
            if !ips.is_empty() {
                report.released.push((rec.owner.clone(), ips));
            }
        }

        let listed: HashSet<(IpAddr, &Owner)> = records
            .iter()
            .flat_map(|r| r.ips.iter().map(move |ip| (*ip, &r.owner)))
            .collect();
        for (ip, owner) in &held {
            if listed.contains(&(*ip, owner)) {
                continue;
            }
            let _lock = store.lock(owner)?;
            // Look again under the lock: an allocation may have finished in between.
            let mut list = store.owner_record(owner)?.map(|r| r.ips).unwrap_or_default();
            if store.holder(*ip)?.as_ref() != Some(owner) || list.contains(ip) {
                continue;
            }
            if keep(owner) {
                list.push(*ip);
                store.write_owner(owner, &list)?;
                report.orphans_adopted.push((*ip, owner.clone()));
            } else {
                store.unclaim(*ip)?;
                report.orphans_released.push((*ip, owner.clone()));
            }
        }

        for rec in records.iter().filter(|r| keep(&r.owner)) {
            let _lock = store.lock(&rec.owner)?;
            let Some(now) = store.owner_record(&rec.owner)? else {
                continue;
            };
            let mut keep = Vec::with_capacity(now.ips.len());
            for ip in &now.ips {
                if store.holder(*ip)?.as_ref() == Some(&rec.owner) {
                    keep.push(*ip);
                }
            }
            if keep.len() != now.ips.len() {
                report.stale_intents += now.ips.len() - keep.len();
                store.write_owner(&rec.owner, &keep)?;
            }
        }
        report.scratch_removed = store.clean_scratch()?;
        Ok(report)
    }

    /// Verify the store's invariant (every address file is listed by its owner's record) and
    /// count what it holds. Damaged records are quarantined as by [`Ipam::gc`].
    pub fn check(&self) -> Result<StoreCheck> {
        let records = self.store().owner_records()?;
        let held = self.store().held()?;
        let by_owner: BTreeMap<&Owner, &Vec<IpAddr>> = records.iter().map(|r| (&r.owner, &r.ips)).collect();
        let held_set: HashSet<(IpAddr, &Owner)> = held.iter().map(|(ip, o)| (*ip, o)).collect();
        let mut check = StoreCheck {
            held: held.len(),
            owners: records.len(),
            ..Default::default()
        };
        for (ip, owner) in &held {
            if !by_owner.get(owner).is_some_and(|ips| ips.contains(ip)) {
                check
                    .problems
                    .push(format!("{ip} is held by {owner} but its record does not list it"));
            }
        }
        check.stale_intents = records
            .iter()
            .flat_map(|r| r.ips.iter().map(move |ip| (*ip, &r.owner)))
            .filter(|k| !held_set.contains(k))
            .count();
        Ok(check)
    }
}
