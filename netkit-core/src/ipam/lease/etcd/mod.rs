//! The etcd store: leases shared by a cluster through etcd.

mod keys;
mod watch;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use ipnetwork::IpNetwork;
use keys::Keys;

use super::alloc::free_subnets;
use super::record::{check_stored_plan, plan_to_json};
use super::request::{validate_node, validate_slot};
use super::{Lease, LeaseError, LeaseRequest, LeaseStore, LeaseWatch, SubnetPlan};

/// How many rounds (read the leases, try some free subnets) an acquire makes before it gives
/// up with [`LeaseError::Conflict`]. Every lost round means another node leased a subnet.
const MAX_ROUNDS: u32 = 100;

/// How many free subnets one round tries before reading the leases again.
const CANDIDATES_PER_ROUND: usize = 16;

/// The etcd lease one acquire granted.
#[derive(Clone, Copy, Debug)]
struct Grant {
    id: i64,
    /// The TTL etcd granted.
    ttl: Duration,
    /// A transaction attaching the node's keys to it failed without an answer, so it may hold
    /// them (now, or once that transaction commits late): never revoke it then.
    maybe_in_use: bool,
}

/// Leases kept in etcd under a key prefix, shared by every node of a cluster (feature `etcd`).
///
/// Key layout under the prefix (default [`DEFAULT_PREFIX`](Self::DEFAULT_PREFIX)):
///
/// ```text
/// PREFIX/config                  the plan, written by the first store; later ones must match
/// PREFIX/subnets/10.244.1.0-24   the lease as JSON
/// PREFIX/nodes/node-a            "10.244.1.0/24"
/// ```
///
/// * **TTL**: a node's two keys are attached to one etcd lease granted for the request's TTL
///   (rounded up to whole seconds; etcd may grant more, up to its minimum lease TTL). When it
///   expires etcd deletes both keys, which frees the subnet. [`renew`](LeaseStore::renew)
///   sends a keep-alive for that etcd lease and rewrites the record's `expires_at`.
/// * **Races**: a subnet is claimed by one transaction that creates both keys only if neither
///   exists, so two nodes never get the same subnet and one node never gets two. A node that
///   loses a race tries the next free subnet.
/// * **Re-acquire** moves both keys to a fresh etcd lease (new TTL, new metadata) in one
///   transaction that checks they are still on the old one, then revokes the old lease.
/// * **Lost replies**: a transaction that attaches the keys to the new etcd lease and fails
///   without an answer (timeout, connection reset) may have committed. `acquire` then reads
///   the node key back: if it is on the new etcd lease the transaction did commit and the
///   lease is returned; otherwise the error is. The new etcd lease is never revoked after
///   such a failure (a late commit may still attach the node's keys to it, and revoking it
///   would delete them): it expires by itself after the TTL. Acquiring again is safe, as
///   always.
/// * **Release** revokes the node's etcd lease, deleting both keys at once.
/// * **Watch** reads the subnet keys at one etcd revision (the snapshot) and watches
///   `PREFIX/subnets/` from the next revision, so no change falls in between: a created key is
///   [`Added`](super::LeaseEvent::Added), a rewritten one [`Changed`](super::LeaseEvent::Changed),
///   a deleted one (released or expired) [`Removed`](super::LeaseEvent::Removed).
#[derive(Clone)]
pub struct EtcdLeaseStore {
    client: Client,
    keys: Arc<Keys>,
    plan: SubnetPlan,
}

impl std::fmt::Debug for EtcdLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLeaseStore")
            .field("endpoint", &self.keys.endpoint)
            .field("prefix", &self.keys.prefix())
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl EtcdLeaseStore {
    /// The key prefix used by the examples and tests: `/netkit/leases`.
    pub const DEFAULT_PREFIX: &'static str = "/netkit/leases";

    /// How long connecting (and the first request) may take before failing.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Connect to etcd at `endpoints` (`http://127.0.0.1:2379`, …) and use the keys under
    /// `prefix` for `plan`.
    ///
    /// Fails with [`LeaseError::Etcd`] naming the endpoints when etcd does not answer within
    /// [`CONNECT_TIMEOUT`](Self::CONNECT_TIMEOUT), [`LeaseError::PlanMismatch`] when the prefix
    /// holds leases of another plan.
    pub async fn connect<E: AsRef<str>>(endpoints: &[E], prefix: &str, plan: SubnetPlan) -> Result<Self, LeaseError> {
        let endpoint = endpoints.iter().map(|e| e.as_ref()).collect::<Vec<_>>().join(",");
        let keys = Keys::new(prefix, endpoint.clone());
        let options = ConnectOptions::new().with_connect_timeout(Self::CONNECT_TIMEOUT);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| keys.error("connect", e))?;
        Self::with_client(client, endpoint, prefix, plan).await
    }

    /// Use an already connected client (for TLS or authentication set up by the caller);
    /// `endpoint` names it in errors.
    pub async fn with_client(
        client: Client,
        endpoint: impl Into<String>,
        prefix: &str,
        plan: SubnetPlan,
    ) -> Result<Self, LeaseError> {
        let store = Self {
            client,
            keys: Arc::new(Keys::new(prefix, endpoint.into())),
            plan,
        };
        match tokio::time::timeout(Self::CONNECT_TIMEOUT, store.init()).await {
            Ok(result) => result?,
            Err(elapsed) => return Err(store.keys.error("connect (no answer)", elapsed)),
        }
        Ok(store)
    }

    /// The key prefix, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Record the plan under `PREFIX/config`, or check the one recorded there.
    async fn init(&self) -> Result<(), LeaseError> {
        let key = self.keys.config();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), plan_to_json(&self.plan), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.txn(txn, || format!("record the plan in {key}")).await?;
        match txn_get(&resp) {
            Some(kv) => check_stored_plan(kv.value(), &self.plan, &self.keys.location(kv.key())),
            None => Ok(()),
        }
    }

    async fn txn(&self, txn: Txn, op: impl FnOnce() -> String) -> Result<TxnResponse, LeaseError> {
        self.client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| self.keys.error(op(), e))
    }

    /// The key-value at `key`, if any.
    async fn get_one(&self, key: &str) -> Result<Option<KeyValue>, LeaseError> {
        let mut resp = self
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(|e| self.keys.error(format!("get {key}"), e))?;
        Ok(resp.take_kvs().into_iter().next())
    }

    /// The numbers of the leased subnets.
    async fn taken(&self) -> Result<BTreeSet<u128>, LeaseError> {
        let (kvs, _) = subnet_kvs(&self.client, &self.keys, GetOptions::new().with_keys_only()).await?;
        kvs.iter()
            .map(|kv| self.keys.subnet_of(kv.key(), &self.plan).map(|(i, _)| i))
            .collect()
    }

    /// The node holding `subnet` now, if any.
    async fn holder(&self, subnet: IpNetwork) -> Result<Option<String>, LeaseError> {
        match self.get_one(&self.keys.subnet(subnet)).await? {
            Some(kv) => Ok(Some(self.keys.decode(&kv, &self.plan)?.1.meta.node)),
            None => Ok(None),
        }
    }

    /// The etcd lease of this acquire: granted on first use, then reused. Returns its id and
    /// the TTL etcd granted.
    async fn grant_once(&self, grant: &mut Option<Grant>, req: &LeaseRequest) -> Result<(i64, Duration), LeaseError> {
        if let Some(g) = *grant {
            return Ok((g.id, g.ttl));
        }
        let secs = req.ttl.as_millis().div_ceil(1000).max(1) as i64;
        let resp = self.client.lease_client().grant(secs, None).await.map_err(|e| {
            self.keys
                .error(format!("grant a {secs} s lease for node {}", req.meta.node), e)
        })?;
        let (id, ttl) = (resp.id(), Duration::from_secs(resp.ttl().max(1) as u64));
        *grant = Some(Grant {
            id,
            ttl,
            maybe_in_use: false,
        });
        Ok((id, ttl))
    }

    /// Revoke an etcd lease, deleting its keys; "not found" (expired or revoked) is success.
    async fn revoke(&self, id: i64, what: impl FnOnce() -> String) -> Result<(), LeaseError> {
        match self.client.lease_client().revoke(id).await {
            Ok(_) => Ok(()),
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("lease not found") => Ok(()),
            Err(e) => Err(self.keys.error(what(), e)),
        }
    }

    /// A transaction putting the node's keys (`node_key` and the key of `lease.subnet`) on the
    /// etcd lease of `grant` failed with `err`, without an answer: it may have committed (its
    /// reply lost or late) or may still commit. Read the node key back: if it is on the grant's
    /// etcd lease, the transaction committed and `lease` is the node's (`replaced`, the etcd
    /// lease the keys were on before, is revoked then). Otherwise `err` is returned, and the
    /// grant is kept from being revoked: it may own the node's keys, now or after a late commit.
    async fn after_unanswered_txn(
        &self,
        err: LeaseError,
        grant: &mut Option<Grant>,
        node_key: &str,
        lease: Lease,
        replaced: Option<i64>,
    ) -> Result<Lease, LeaseError> {
        let Some(g) = grant.as_mut() else {
            return Err(err);
        };
        g.maybe_in_use = true;
        let id = g.id;
        match self.get_one(node_key).await {
            Ok(Some(kv)) if kv.lease() == id && self.keys.decode_node(&kv, &self.plan).ok() == Some(lease.subnet) => {
                if let Some(old) = replaced.filter(|&old| old != 0) {
                    // Best effort, as after an answered re-acquire.
                    let _ = self.revoke(old, String::new).await;
                }
                Ok(lease)
            }
            _ => Err(err),
        }
    }

    async fn acquire_rounds(
        &self,
        req: &LeaseRequest,
        preferred: Option<u128>,
        grant: &mut Option<Grant>,
    ) -> Result<Lease, LeaseError> {
        let node = &req.meta.node;
        let node_key = self.keys.node(node, req.slot);
        let with_lease = |id| Some(PutOptions::new().with_lease(id));
        for _ in 0..MAX_ROUNDS {
            if let Some(kv) = self.get_one(&node_key).await? {
                // The node holds a subnet: move it to the new etcd lease with the new metadata.
                let subnet = self.keys.decode_node(&kv, &self.plan)?;
                let subnet_key = self.keys.subnet(subnet);
                let (id, ttl) = self.grant_once(grant, req).await?;
                let lease = Lease::new(subnet, req.meta.clone(), req.slot, ttl, SystemTime::now());
                let old = kv.lease();
                let txn = Txn::new()
                    .when([
                        Compare::lease(node_key.clone(), CompareOp::Equal, old),
                        Compare::lease(subnet_key.clone(), CompareOp::Equal, old),
                    ])
                    .and_then([
                        TxnOp::put(subnet_key.clone(), lease.to_json(), with_lease(id)),
                        TxnOp::put(node_key.clone(), subnet.to_string(), with_lease(id)),
                    ]);
                let resp = match self
                    .txn(txn, || format!("renew {subnet} for node {node} (txn on {subnet_key})"))
                    .await
                {
                    Ok(resp) => resp,
                    Err(e) => return self.after_unanswered_txn(e, grant, &node_key, lease, Some(old)).await,
                };
                if resp.succeeded() {
                    if old != 0 {
                        // Best effort: no key is attached to it any more, and it expires anyway.
                        // Failing here would make the caller drop the lease just moved.
                        let _ = self.revoke(old, String::new).await;
                    }
                    return Ok(lease);
                }
                continue; // it expired or moved meanwhile: look again
            }

            let taken = self.taken().await?;
            let candidates: Vec<IpNetwork> = free_subnets(&self.plan, &taken, preferred)
                .take(CANDIDATES_PER_ROUND)
                .collect();
            if candidates.is_empty() {
                return Err(LeaseError::PoolExhausted {
                    network: self.plan.network(),
                    subnet_prefix: self.plan.subnet_prefix(),
                    count: self.plan.count(),
                    node: node.clone(),
                });
            }
            for subnet in candidates {
                let subnet_key = self.keys.subnet(subnet);
                let (id, ttl) = self.grant_once(grant, req).await?;
                let lease = Lease::new(subnet, req.meta.clone(), req.slot, ttl, SystemTime::now());
                let txn = Txn::new()
                    .when([
                        Compare::create_revision(subnet_key.clone(), CompareOp::Equal, 0),
                        Compare::create_revision(node_key.clone(), CompareOp::Equal, 0),
                    ])
                    .and_then([
                        TxnOp::put(subnet_key.clone(), lease.to_json(), with_lease(id)),
                        TxnOp::put(node_key.clone(), subnet.to_string(), with_lease(id)),
                    ])
                    .or_else([TxnOp::get(node_key.clone(), None)]);
                let resp = match self
                    .txn(txn, || format!("claim {subnet} for node {node} (txn on {subnet_key})"))
                    .await
                {
                    Ok(resp) => resp,
                    Err(e) => return self.after_unanswered_txn(e, grant, &node_key, lease, None).await,
                };
                if resp.succeeded() {
                    return Ok(lease);
                }
                if txn_get(&resp).is_some() {
                    break; // a concurrent acquire for the same node won: take its subnet
                }
            }
        }
        Err(LeaseError::Conflict {
            network: self.plan.network(),
            node: node.clone(),
            attempts: MAX_ROUNDS,
        })
    }
}

/// Every subnet key-value (read with `options`, plus the prefix), and the revision of the store
/// they were read at.
async fn subnet_kvs(client: &Client, keys: &Keys, options: GetOptions) -> Result<(Vec<KeyValue>, i64), LeaseError> {
    let prefix = keys.subnets();
    crate::store::etcd::changes::get_prefix(client, &prefix, options)
        .await
        .map_err(|e| keys.error(format!("list {prefix}"), e))
}

/// The leases stored in subnet key-values, ordered by subnet.
fn decode_all(kvs: &[KeyValue], keys: &Keys, plan: &SubnetPlan) -> Result<Vec<Lease>, LeaseError> {
    let mut leases = kvs
        .iter()
        .map(|kv| keys.decode(kv, plan))
        .collect::<Result<Vec<_>, _>>()?;
    leases.sort_by_key(|(i, _)| *i);
    Ok(leases.into_iter().map(|(_, l)| l).collect())
}

/// The first key-value of the first `get` in a transaction's answer.
fn txn_get(resp: &TxnResponse) -> Option<KeyValue> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    })
}

impl LeaseStore for EtcdLeaseStore {
    fn plan(&self) -> &SubnetPlan {
        &self.plan
    }

    async fn acquire(&self, request: &LeaseRequest) -> Result<Lease, LeaseError> {
        request.validate()?;
        let preferred = request.preferred.map(|p| self.plan.check(p)).transpose()?;
        let mut grant = None;
        let result = self.acquire_rounds(request, preferred, &mut grant).await;
        if let (Err(_), Some(g)) = (&result, grant) {
            if !g.maybe_in_use {
                // Best effort: an unused etcd lease holds no key and expires by itself anyway.
                // One that may hold the node's keys is left to expire: revoking it would
                // delete them.
                let _ = self.revoke(g.id, String::new).await;
            }
        }
        result
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        validate_node(lease.node())?;
        validate_slot(lease.node(), lease.slot)?;
        self.plan.check(lease.subnet)?;
        let (subnet, node) = (lease.subnet, lease.node());
        let lost = |holder| LeaseError::LeaseLost {
            subnet,
            node: node.to_string(),
            holder,
        };
        let key = self.keys.subnet(subnet);
        let Some(kv) = self.get_one(&key).await? else {
            return Err(lost(None));
        };
        let (_, mut current) = self.keys.decode(&kv, &self.plan)?;
        if current.meta.node != node || current.slot != lease.slot {
            return Err(lost(Some(current.meta.node)));
        }
        let id = kv.lease();
        match self.client.lease_client().keep_alive(id).await {
            Ok(_) => {}
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => return Err(lost(self.holder(subnet).await?)),
            Err(e) => {
                return Err(self
                    .keys
                    .error(format!("keep alive lease {id:x} of {subnet} for node {node}"), e))
            }
        }
        current.extend_from(SystemTime::now());
        let txn = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, id)])
            .and_then([TxnOp::put(
                key.clone(),
                current.to_json(),
                Some(PutOptions::new().with_lease(id)),
            )]);
        let resp = self
            .txn(txn, || format!("renew {subnet} for node {node} (txn on {key})"))
            .await?;
        if !resp.succeeded() {
            return Err(lost(self.holder(subnet).await?));
        }
        Ok(current)
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        validate_node(lease.node())?;
        validate_slot(lease.node(), lease.slot)?;
        self.plan.check(lease.subnet)?;
        let (subnet, node) = (lease.subnet, lease.node());
        let key = self.keys.subnet(subnet);
        let Some(kv) = self.get_one(&key).await? else {
            return Ok(());
        };
        let current = self.keys.decode(&kv, &self.plan)?.1;
        if current.meta.node != node || current.slot != lease.slot {
            return Ok(());
        }
        let id = kv.lease();
        if id != 0 {
            return self
                .revoke(id, || format!("release {subnet} of node {node} (revoke lease {id:x})"))
                .await;
        }
        // Written without an etcd lease (by hand?): delete the keys if unchanged.
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision())])
            .and_then([
                TxnOp::delete(key.clone(), None),
                TxnOp::delete(self.keys.node(node, lease.slot), None),
            ]);
        self.txn(txn, || format!("release {subnet} of node {node} (txn on {key})"))
            .await?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let (kvs, _) = subnet_kvs(&self.client, &self.keys, GetOptions::new()).await?;
        decode_all(&kvs, &self.keys, &self.plan)
    }

    async fn watch(&self) -> Result<LeaseWatch, LeaseError> {
        watch::watch(self.client.clone(), self.keys.clone(), self.plan).await
    }
}
