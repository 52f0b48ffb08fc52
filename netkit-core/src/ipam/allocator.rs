//! The allocator: a [`Pool`] over a [`Store`], handing one address per range set to an owner.

use std::net::IpAddr;
use std::path::Path;

use ipnetwork::IpNetwork;

use super::config::{Dns, PoolRoute};
use super::error::Result;
use super::store::{Store, StoreOptions};
use super::{IpamError, Owner, Pool};

/// The most walks over a range set one allocation makes while other owners release addresses
/// under it; past that it reports the set exhausted (a pool that full, churning that fast).
const WALKS: usize = 16;

/// One address handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedIp {
    /// The address with its range's subnet prefix (`10.22.0.5/16`).
    pub address: IpNetwork,
    /// The gateway of its range.
    pub gateway: IpAddr,
    /// Index of the range set it came from.
    pub set: usize,
}

/// What an owner got: one address per range set, and the pool's routes and DNS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Addresses, in range set order.
    pub ips: Vec<AllocatedIp>,
    /// Routes from the pool's configuration.
    pub routes: Vec<PoolRoute>,
    /// DNS settings from the pool's resolv.conf, if it named one.
    pub dns: Option<Dns>,
    /// The addresses the owner held before this call (empty: everything was claimed by it).
    /// A caller that undoes a failed step releases the owner only when this is empty, so a
    /// second request for a live owner never frees what the first one holds.
    pub held_before: Vec<IpAddr>,
}

/// A pool's allocator over its persistent store.
///
/// Blocking and fast (tens of microseconds of file operations per call); from async code call it
/// through `tokio::task::spawn_blocking`. Safe to use from many threads and processes at once.
///
/// ```no_run
/// use netkit_core::ipam::{Ipam, IpamConfig, Owner, StoreOptions};
///
/// let pool = IpamConfig::from_json(r#"{"ranges": [[{"subnet": "10.22.0.0/16"}]]}"#)?.pool("podnet")?;
/// let ipam = Ipam::open(pool, "/var/lib/netkit/ipam".as_ref(), StoreOptions::default())?;
/// let owner = Owner::new("f81d4fae7dec", "eth0")?;
/// let got = ipam.allocate(&owner, &[])?;           // 10.22.0.2/16, gateway 10.22.0.1
/// assert_eq!(ipam.allocate(&owner, &[])?, got);    // same owner, same address
/// ipam.release(&owner)?;
/// # Ok::<(), netkit_core::ipam::IpamError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Ipam {
    pool: Pool,
    dns: Option<Dns>,
    store: Store,
}

impl Ipam {
    /// Open (or create) the store of `pool` under `data_dir` (in `data_dir/<pool name>`, as
    /// host-local lays out its `dataDir`).
    pub fn open(pool: Pool, data_dir: &Path, options: StoreOptions) -> Result<Self> {
        let store = Store::open(&data_dir.join(pool.name()), options)?;
        Ok(Self { pool, dns: None, store })
    }

    /// Report these DNS settings with every allocation.
    pub fn with_dns(mut self, dns: Option<Dns>) -> Self {
        self.dns = dns;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Give `owner` one address from every range set, or return what it already holds.
    ///
    /// `requested` asks for specific addresses (static IPs): each must lie in a range of the
    /// pool, not be reserved, and be free or already held by this owner; at most one per set.
    /// The other sets hand out the next free address after the last one handed out (round
    /// robin, as host-local), so a just-released address is not reused at once.
    ///
    /// All or nothing: when one set is exhausted or a request cannot be granted, the addresses
    /// this call claimed are released again before the error returns.
    pub fn allocate(&self, owner: &Owner, requested: &[IpAddr]) -> Result<Allocation> {
        let wanted = self.check_requests(requested)?;
        let _lock = self.store.lock(owner)?;
        let held = self.confirmed(owner)?;
        let mut got: Vec<Option<IpAddr>> = vec![None; self.pool.sets().len()];
        for ip in &held {
            if let Some(i) = self.pool.set_of(*ip) {
                got[i].get_or_insert(*ip);
            }
        }
        let mut txn = Claims {
            store: &self.store,
            owner,
            base: held.clone(),
            new: Vec::new(),
            uncertain: None,
        };
        let result = self.fill(&mut txn, &mut got, &wanted);
        if let Err(e) = result {
            txn.rollback();
            return Err(e);
        }
        let mut allocation = self.allocation(&got);
        allocation.held_before = held;
        Ok(allocation)
    }

    fn fill(&self, txn: &mut Claims<'_>, got: &mut [Option<IpAddr>], wanted: &[Option<IpAddr>]) -> Result<()> {
        for (i, want) in wanted.iter().enumerate() {
            let Some(ip) = *want else { continue };
            match got[i] {
                Some(held) if held == ip => {}
                Some(held) => {
                    return Err(IpamError::AlreadyHolds {
                        owner: txn.owner.clone(),
                        held,
                        asked: ip,
                        pool: self.pool.name().into(),
                    })
                }
                None => {
                    self.claim_requested(txn, ip)?;
                    got[i] = Some(ip);
                }
            }
        }
        for (i, set) in self.pool.sets().iter().enumerate() {
            if got[i].is_some() {
                continue;
            }
            let mut claimed = None;
            // A walk that finds nothing is made again while addresses were released during
            // it (see the store's module docs), at most WALKS times.
            for _ in 0..WALKS {
                let releases = self.store.releases()?;
                for candidate in set.iter_after(self.store.last(i)) {
                    // A stat first: most taken addresses are skipped without writing anything.
                    if !self.store.is_held(candidate)? && txn.try_claim(candidate)? {
                        claimed = Some(candidate);
                        break;
                    }
                }
                if claimed.is_some() || self.store.releases()? == releases {
                    break;
                }
            }
            let Some(ip) = claimed else {
                return Err(IpamError::Exhausted {
                    pool: self.pool.name().into(),
                    set: set.to_string(),
                });
            };
            self.store.set_last(i, ip)?;
            got[i] = Some(ip);
        }
        Ok(())
    }

    /// Claim a requested address or say who holds it. A holder that releases it while we look
    /// gives the claim another try.
    fn claim_requested(&self, txn: &mut Claims<'_>, ip: IpAddr) -> Result<()> {
        let mut holder = None;
        for _ in 0..8 {
            if txn.try_claim(ip)? {
                return Ok(());
            }
            holder = self.store.holder(ip)?;
            if holder.is_some() {
                break;
            }
        }
        Err(IpamError::InUse {
            ip,
            pool: self.pool.name().into(),
            holder,
        })
    }

    /// Validate requested addresses into one optional request per set.
    fn check_requests(&self, requested: &[IpAddr]) -> Result<Vec<Option<IpAddr>>> {
        let mut wanted: Vec<Option<IpAddr>> = vec![None; self.pool.sets().len()];
        for ip in requested {
            let pool = self.pool.name().to_string();
            let Some(i) = self.pool.set_of(*ip) else {
                // No range holds a subnet's network or broadcast address: say why it is refused.
                return Err(match self.pool.is_subnet_boundary(*ip) {
                    true => IpamError::Reserved { ip: *ip, pool },
                    false => IpamError::OutsidePool { ip: *ip, pool },
                });
            };
            let set = &self.pool.sets()[i];
            if !set.assignable(*ip) {
                return Err(IpamError::Reserved { ip: *ip, pool });
            }
            if let Some(a) = wanted[i] {
                if a != *ip {
                    return Err(IpamError::SameSet {
                        a,
                        b: *ip,
                        set: set.to_string(),
                        pool,
                    });
                }
            }
            wanted[i] = Some(*ip);
        }
        Ok(wanted)
    }

    fn allocation(&self, got: &[Option<IpAddr>]) -> Allocation {
        let ips = got
            .iter()
            .enumerate()
            .filter_map(|(i, ip)| {
                let ip = (*ip)?;
                let range = self.pool.sets()[i].range_of(ip)?;
                Some(AllocatedIp {
                    address: IpNetwork::new(ip, range.subnet().prefix()).ok()?,
                    gateway: range.gateway(),
                    set: i,
                })
            })
            .collect();
        Allocation {
            ips,
            routes: self.pool.routes().to_vec(),
            dns: self.dns.clone(),
            held_before: Vec::new(),
        }
    }

    /// The addresses `owner` holds (in this store, whatever range set they came from).
    ///
    /// Reads the owner's record and the address files it lists: no scan.
    pub fn lookup(&self, owner: &Owner) -> Result<Vec<IpAddr>> {
        self.confirmed(owner)
    }

    /// The owner's listed addresses that it really holds (stale intents dropped).
    fn confirmed(&self, owner: &Owner) -> Result<Vec<IpAddr>> {
        let Some(rec) = self.store.owner_record(owner)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(rec.ips.len());
        for ip in rec.ips {
            if self.store.holder(ip)?.as_ref() == Some(owner) {
                out.push(ip);
            }
        }
        Ok(out)
    }

    /// Who holds `ip`, if anyone.
    pub fn holder(&self, ip: IpAddr) -> Result<Option<Owner>> {
        self.store.holder(ip)
    }

    /// Release every address `owner` holds; returns them. Idempotent: an unknown owner, or one
    /// released before, gives an empty list.
    ///
    /// Every record involved is read and checked before anything is removed. A damaged owner
    /// record is moved to the store's `quarantine/` and what the owner holds is found from the
    /// address files that name it; a damaged address file is quarantined and its address
    /// counts as free (see [`store`](super::store#damaged-records)).
    pub fn release(&self, owner: &Owner) -> Result<Vec<IpAddr>> {
        let _lock = self.store.lock(owner)?;
        let mine = self.confirmed(owner)?;
        for ip in &mine {
            self.store.unclaim(*ip)?;
        }
        self.store.write_owner(owner, &[])?;
        Ok(mine)
    }

    /// Claim every free address of range set `set` for `owner`, all or nothing: `Ok(true)`
    /// when the whole set is then held by `owner`, `Ok(false)` (with this call's claims undone)
    /// when another owner holds some address of it. See [`super::blocks::fence`].
    pub(crate) fn claim_all(&self, owner: &Owner, set: usize) -> Result<bool> {
        let Some(range_set) = self.pool.sets().get(set) else {
            return Ok(false);
        };
        let _lock = self.store.lock(owner)?;
        let held = self.confirmed(owner)?;
        let mut txn = Claims {
            store: &self.store,
            owner,
            base: held.clone(),
            new: Vec::new(),
            uncertain: None,
        };
        for ip in range_set.iter_after(None) {
            if held.contains(&ip) {
                continue;
            }
            match txn.try_claim(ip) {
                Ok(true) => {}
                Ok(false) => {
                    txn.rollback();
                    return Ok(false);
                }
                Err(e) => {
                    txn.rollback();
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Every held address with its holder, sorted by address (a scan of the store).
    pub fn list(&self) -> Result<Vec<(IpAddr, Owner)>> {
        let mut all = self.store.held()?;
        all.sort();
        Ok(all)
    }
}

/// The claims one `allocate` call makes, so it can undo them.
struct Claims<'a> {
    store: &'a Store,
    owner: &'a Owner,
    /// What the owner held before the call.
    base: Vec<IpAddr>,
    /// What this call claimed.
    new: Vec<IpAddr>,
    /// A claim that failed with an error after which the address may be held anyway.
    uncertain: Option<IpAddr>,
}

impl Claims<'_> {
    /// Record the intent in the owner file, then claim `ip`. On a lost race the owner file keeps
    /// listing `ip` until the next write: a stale intent, harmless by the store's invariant.
    fn try_claim(&mut self, ip: IpAddr) -> Result<bool> {
        let mut list = self.base.clone();
        list.extend(&self.new);
        list.push(ip);
        self.store.write_owner(self.owner, &list)?;
        match self.store.claim(ip, self.owner) {
            Ok(true) => {
                self.new.push(ip);
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                // The rename may have happened before the error (a failed fsync, say).
                self.uncertain = Some(ip);
                Err(e)
            }
        }
    }

    /// Undo this call's claims (best effort: the call is failing anyway; what cannot be undone
    /// stays listed in the owner file, so a release or GC finds it).
    fn rollback(&mut self) {
        let mut undone = true;
        for ip in &self.new {
            undone &= self.store.unclaim(*ip).is_ok();
        }
        if let Some(ip) = self.uncertain {
            undone &= match self.store.holder(ip) {
                Ok(Some(o)) if o == *self.owner => self.store.unclaim(ip).is_ok(),
                Ok(_) => true,
                Err(_) => false,
            };
        }
        if undone {
            let _ = self.store.write_owner(self.owner, &self.base);
        }
    }
}
