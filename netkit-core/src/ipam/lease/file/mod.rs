//! The file store: leases in a local directory, shared by threads and processes of one host.

mod disk;
mod poll;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use disk::Layout;

use super::alloc::free_subnets;
use super::record::{check_stored_plan, plan_to_json};
use super::request::{validate_node, validate_slot};
use super::{Lease, LeaseError, LeaseRequest, LeaseStore, LeaseWatch, SubnetPlan};

/// Leases kept as files in one directory: the embedded default, for a single host or for
/// tests. Safe across threads and processes (writers serialize on an `flock(2)`ed lock
/// file) and across crashes (each file is replaced by write-temp, fsync, rename; a `kill -9`
/// leaves the old or the new lease, never a torn one). Expiry is judged by the wall clock.
///
/// Layout of the directory:
///
/// ```text
/// DIR/plan.json                 the plan, written by the first open; later opens must match it
/// DIR/lock                      the writers' lock file (empty)
/// DIR/leases/10.244.1.0-24.json one JSON lease per leased subnet
/// ```
///
/// A node holds one lease per [slot](LeaseRequest::slot) (usually just slot 0).
/// A node whose lease expired gets its old subnet back from its next
/// [`acquire`](LeaseStore::acquire) if no other node took it meanwhile (and it asks for no
/// other preferred subnet). Expired lease files stay until the next `acquire` removes them;
/// [`list`](LeaseStore::list) and [`watch`](LeaseStore::watch) never report them. A watch
/// reads the live leases (its snapshot), then polls the directory (every
/// [`DEFAULT_WATCH_INTERVAL`](Self::DEFAULT_WATCH_INTERVAL) unless set with
/// [`with_watch_interval`](Self::with_watch_interval)), which also notices expiry; it reports
/// what changed between the snapshot and the first poll, then between two polls, so faster
/// changes are merged but none is missed.
///
/// The blocking file work runs on tokio's blocking thread pool.
#[derive(Clone, Debug)]
pub struct FileLeaseStore {
    layout: Arc<Layout>,
    plan: SubnetPlan,
    watch_interval: Duration,
}

impl FileLeaseStore {
    /// How often a watch polls the directory unless told otherwise.
    pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_millis(200);

    /// Open (creating it if needed) the store in `dir` for `plan`.
    ///
    /// Fails with [`LeaseError::PlanMismatch`] when the directory holds leases of another plan,
    /// [`LeaseError::Corrupt`] when its `plan.json` cannot be read back, or
    /// [`LeaseError::Io`] naming the path.
    pub async fn open(dir: impl Into<PathBuf>, plan: SubnetPlan) -> Result<Self, LeaseError> {
        let store = Self {
            layout: Arc::new(Layout { dir: dir.into() }),
            plan,
            watch_interval: Self::DEFAULT_WATCH_INTERVAL,
        };
        let s = store.clone();
        blocking(&store.layout.dir, move || s.init()).await?;
        Ok(store)
    }

    /// Set how often [`watch`](LeaseStore::watch) polls the directory.
    pub fn with_watch_interval(mut self, interval: Duration) -> Self {
        self.watch_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// Create the layout and record (or check) the plan.
    fn init(&self) -> Result<(), LeaseError> {
        self.layout.create()?;
        let _lock = self.layout.lock()?;
        let path = self.layout.plan_file();
        match std::fs::read(&path) {
            Ok(bytes) => check_stored_plan(&bytes, &self.plan, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                disk::write_atomic(&self.layout.dir, &path, &plan_to_json(&self.plan))
            }
            Err(e) => Err(LeaseError::io("read", &path, e)),
        }
    }

    fn acquire_blocking(&self, req: &LeaseRequest) -> Result<Lease, LeaseError> {
        req.validate()?;
        let preferred = req.preferred.map(|p| self.plan.check(p)).transpose()?;
        let _lock = self.layout.lock()?;
        self.layout.remove_stale_temps()?;
        let now = SystemTime::now();
        let mut live = self.layout.read_leases(&self.plan)?;
        let mut previous = None;
        for lease in remove_expired(&mut live, now) {
            self.layout.remove_lease(lease.subnet)?;
            if lease.meta.node == req.meta.node && lease.slot == req.slot {
                previous = self.plan.index_of(lease.subnet);
            }
        }
        let mine = live
            .values()
            .find(|l| l.meta.node == req.meta.node && l.slot == req.slot);
        let subnet = match mine {
            Some(mine) => mine.subnet,
            None => {
                let taken: BTreeSet<u128> = live.keys().copied().collect();
                let preferred = preferred.or(previous);
                let free = free_subnets(&self.plan, &taken, preferred).next();
                free.ok_or_else(|| LeaseError::PoolExhausted {
                    network: self.plan.network(),
                    subnet_prefix: self.plan.subnet_prefix(),
                    count: self.plan.count(),
                    node: req.meta.node.clone(),
                })?
            }
        };
        let lease = Lease::new(subnet, req.meta.clone(), req.slot, req.ttl, now);
        self.layout.write_lease(&lease)?;
        Ok(lease)
    }

    fn renew_blocking(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        validate_node(lease.node())?;
        validate_slot(lease.node(), lease.slot)?;
        self.plan.check(lease.subnet)?;
        let _lock = self.layout.lock()?;
        let now = SystemTime::now();
        let lost = |holder| LeaseError::LeaseLost {
            subnet: lease.subnet,
            node: lease.meta.node.clone(),
            holder,
        };
        match self.layout.read_lease(lease.subnet)? {
            Some(cur) if cur.expires_at <= now => Err(lost(None)),
            Some(cur) if cur.meta.node != lease.meta.node || cur.slot != lease.slot => Err(lost(Some(cur.meta.node))),
            None => Err(lost(None)),
            Some(mut cur) => {
                cur.extend_from(now);
                self.layout.write_lease(&cur)?;
                Ok(cur)
            }
        }
    }

    fn release_blocking(&self, lease: &Lease) -> Result<(), LeaseError> {
        validate_node(lease.node())?;
        validate_slot(lease.node(), lease.slot)?;
        self.plan.check(lease.subnet)?;
        let _lock = self.layout.lock()?;
        match self.layout.read_lease(lease.subnet)? {
            Some(cur) if cur.meta.node == lease.meta.node && cur.slot == lease.slot => {
                self.layout.remove_lease(lease.subnet)
            }
            _ => Ok(()),
        }
    }

    /// The live leases, keyed by subnet number. Takes no lock: files are replaced atomically.
    fn live_blocking(&self) -> Result<BTreeMap<u128, Lease>, LeaseError> {
        let mut leases = self.layout.read_leases(&self.plan)?;
        remove_expired(&mut leases, SystemTime::now());
        Ok(leases)
    }

    /// The live leases, off the async threads.
    async fn live(&self) -> Result<BTreeMap<u128, Lease>, LeaseError> {
        let s = self.clone();
        blocking(&self.layout.dir, move || s.live_blocking()).await
    }
}

impl LeaseStore for FileLeaseStore {
    fn plan(&self) -> &SubnetPlan {
        &self.plan
    }

    async fn acquire(&self, request: &LeaseRequest) -> Result<Lease, LeaseError> {
        let (s, req) = (self.clone(), request.clone());
        blocking(&self.layout.dir, move || s.acquire_blocking(&req)).await
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        let (s, lease) = (self.clone(), lease.clone());
        blocking(&self.layout.dir, move || s.renew_blocking(&lease)).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        let (s, lease) = (self.clone(), lease.clone());
        blocking(&self.layout.dir, move || s.release_blocking(&lease)).await
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        Ok(self.live().await?.into_values().collect())
    }

    async fn watch(&self) -> Result<LeaseWatch, LeaseError> {
        // The snapshot is the state the first poll is compared with: nothing falls in between.
        let first = self.live().await?;
        Ok(poll::watch(self.clone(), first, self.watch_interval))
    }
}

/// Remove the leases that expired at `now` from `leases`, and return them.
fn remove_expired(leases: &mut BTreeMap<u128, Lease>, now: SystemTime) -> Vec<Lease> {
    let dead: Vec<u128> = leases
        .iter()
        .filter(|(_, l)| l.expires_at <= now)
        .map(|(i, _)| *i)
        .collect();
    dead.into_iter().filter_map(|i| leases.remove(&i)).collect()
}

/// Run blocking file work on tokio's blocking pool; `dir` names the store in errors.
async fn blocking<T: Send + 'static>(
    dir: &Path,
    work: impl FnOnce() -> Result<T, LeaseError> + Send + 'static,
) -> Result<T, LeaseError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(LeaseError::io("run file work", dir, std::io::Error::other(e))),
    }
}
