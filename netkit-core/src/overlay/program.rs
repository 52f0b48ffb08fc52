//! What the agent keeps in the kernel for its peers, and how it gets it there: one set of
//! wanted entries (routes, permanent neighbours, FDB entries), changed one peer at a time, and
//! compared with a kernel dump when the agent starts, when kernel events were lost, and when
//! the lease watch was re-established.
//!
//! Ownership: the agent's routes carry the protocol number [`PROTO_OVERLAY`] in the main
//! table; the neighbour and FDB entries it makes are permanent entries on its own overlay
//! device. A reconcile removes only such entries, so routes and entries of others are never
//! touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::neigh::{FdbEntry, NeighState, Neighbour};
use crate::route::{IpFamily, Route, RouteInfo, TABLE_MAIN};
use crate::{Handle, MacAddr};

/// The protocol number (`ip route … proto 78`) on the routes the overlay agent installs, so
/// it can tell its routes from everyone else's. Write `78 netkit` into
/// `/etc/iproute2/rt_protos.d/netkit.conf` to have `ip route` print the name.
pub const PROTO_OVERLAY: u8 = 78;

/// One kernel entry the agent wants.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Entry {
    /// `ip route replace DST via VIA dev #DEV [onlink] proto 78`.
    Route {
        /// Destination (a peer's subnet).
        dst: IpNetwork,
        /// Next hop.
        via: IpAddr,
        /// Output device.
        dev: u32,
        /// `onlink` (VXLAN: the next hop is the peer's VTEP address, on no subnet).
        onlink: bool,
    },
    /// `ip route replace DST dev #DEV proto 78` (scope link): a device route.
    DevRoute {
        /// Destination (the cluster network).
        dst: IpNetwork,
        /// Output device.
        dev: u32,
    },
    /// A permanent neighbour entry on device `dev` (name `dev_name`).
    Neigh {
        /// Device index.
        dev: u32,
        /// Device name (deletion takes a name).
        dev_name: String,
        /// The neighbour's IP.
        ip: IpAddr,
        /// Its MAC.
        mac: MacAddr,
    },
    /// A permanent `self` FDB entry: frames to `mac` go to the underlay address `dst`.
    Fdb {
        /// Device index.
        dev: u32,
        /// MAC.
        mac: MacAddr,
        /// Remote underlay address.
        dst: IpAddr,
    },
}

/// The identity of an entry: two entries with the same key cannot both be in the kernel.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Key {
    Route(IpNetwork),
    Neigh(u32, IpAddr),
    Fdb(u32, MacAddr),
}

impl Entry {
    pub(crate) fn key(&self) -> Key {
        match self {
            Entry::Route { dst, .. } | Entry::DevRoute { dst, .. } => Key::Route(*dst),
            Entry::Neigh { dev, ip, .. } => Key::Neigh(*dev, *ip),
            Entry::Fdb { dev, mac, .. } => Key::Fdb(*dev, *mac),
        }
    }

    fn route(&self) -> Option<Route> {
        match self {
            Entry::Route { dst, via, dev, onlink } => {
                let mut r = Route::new(*dst)
                    .gateway(*via)
                    .dev_index(*dev)
                    .protocol(PROTO_OVERLAY)
                    .table(TABLE_MAIN);
                if *onlink {
                    r = r.onlink();
                }
                Some(r)
            }
            Entry::DevRoute { dst, dev } => Some(
                Route::new(*dst)
                    .dev_index(*dev)
                    .protocol(PROTO_OVERLAY)
                    .table(TABLE_MAIN),
            ),
            _ => None,
        }
    }

    /// Put the entry into the kernel (replacing whatever has its key).
    pub(crate) async fn install(&self, h: &Handle) -> Result<(), String> {
        match self {
            Entry::Route { .. } | Entry::DevRoute { .. } => {
                let r = self.route().expect("a route");
                h.route_replace(&r).await.map_err(|e| e.to_string())
            }
            Entry::Neigh { dev, ip, mac, .. } => h
                .neigh_replace(&Neighbour::with_index(*dev, *ip, *mac).state(NeighState::Permanent))
                .await
                .map_err(|e| e.to_string()),
            Entry::Fdb { dev, mac, dst } => h
                .fdb_replace(&FdbEntry::with_index(*dev, *mac).dst(*dst).self_().permanent())
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Take the entry out of the kernel; one already gone is fine.
    pub(crate) async fn remove(&self, h: &Handle) -> Result<(), String> {
        match self {
            Entry::Route { .. } | Entry::DevRoute { .. } => {
                let r = self.route().expect("a route");
                h.route_del(&r).await.map_err(|e| e.to_string())
            }
            Entry::Neigh { dev_name, ip, .. } => h.neigh_del(dev_name, *ip).await.map_err(|e| e.to_string()),
            Entry::Fdb { dev, mac, dst } => h
                .fdb_del(&FdbEntry::with_index(*dev, *mac).dst(*dst).self_())
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// The entries of every peer, by peer subnet, and what the kernel was last made to hold;
/// indexed by key too, so a kernel event finds its entry in O(1) among thousands.
#[derive(Debug, Default)]
pub(crate) struct Wanted {
    by_peer: BTreeMap<IpNetwork, Vec<Entry>>,
    /// Which peer's entries hold each key.
    owner: HashMap<Key, IpNetwork>,
    entries: usize,
}

/// What a reconcile changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Changes {
    pub installed: usize,
    pub removed: usize,
}

impl Wanted {
    /// Every wanted entry by key.
    fn all(&self) -> BTreeMap<Key, &Entry> {
        self.by_peer.values().flatten().map(|e| (e.key(), e)).collect()
    }

    /// The wanted entry with this key, if any.
    pub(crate) fn get(&self, key: &Key) -> Option<&Entry> {
        let subnet = self.owner.get(key)?;
        self.by_peer.get(subnet)?.iter().find(|e| &e.key() == key)
    }

    /// Number of wanted entries.
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// The entries of `subnet`'s peer, taken out (with the index kept right).
    fn take(&mut self, subnet: IpNetwork) -> Vec<Entry> {
        let old = self.by_peer.remove(&subnet).unwrap_or_default();
        for e in &old {
            self.owner.remove(&e.key());
        }
        self.entries -= old.len();
        old
    }

    /// Put `entries` in as `subnet`'s peer's (none: nothing).
    fn put(&mut self, subnet: IpNetwork, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        for e in &entries {
            self.owner.insert(e.key(), subnet);
        }
        self.entries += entries.len();
        self.by_peer.insert(subnet, entries);
    }

    /// Record the entries of the peer with `subnet` without touching the kernel (a
    /// [`Wanted::reconcile`] follows).
    pub(crate) fn want(&mut self, subnet: IpNetwork, entries: Vec<Entry>) {
        self.take(subnet);
        self.put(subnet, entries);
    }

    /// Forget the peer with `subnet` without touching the kernel (a [`Wanted::reconcile`]
    /// removes its entries).
    pub(crate) fn forget(&mut self, subnet: IpNetwork) {
        self.take(subnet);
    }

    /// Set the entries of the peer with `subnet` (none: forget the peer) and bring the kernel
    /// there for this peer alone: install its new entries, remove those it no longer has.
    /// Every step is attempted; the kernel changes made and the errors are returned.
    pub(crate) async fn set_peer(
        &mut self,
        h: &Handle,
        subnet: IpNetwork,
        entries: Vec<Entry>,
    ) -> (Changes, Vec<String>) {
        let old = self.take(subnet);
        let new_keys: BTreeSet<Key> = entries.iter().map(Entry::key).collect();
        let mut changes = Changes::default();
        let mut errors = Vec::new();
        for e in old.iter().filter(|e| !new_keys.contains(&e.key())) {
            match e.remove(h).await {
                Ok(()) => changes.removed += 1,
                Err(msg) => errors.push(msg),
            }
        }
        for e in entries.iter().filter(|e| !old.contains(e)) {
            match e.install(h).await {
                Ok(()) => changes.installed += 1,
                Err(msg) => errors.push(msg),
            }
        }
        self.put(subnet, entries);
        (changes, errors)
    }

    /// Compare the kernel with the wanted entries and fix every difference: install what is
    /// missing or different, remove the agent's entries nobody wants (routes with
    /// [`PROTO_OVERLAY`] in the main table; permanent neighbour and FDB entries with a remote
    /// on `overlay_dev`, the agent's own device, if it has one).
    pub(crate) async fn reconcile(
        &self,
        h: &Handle,
        family: IpFamily,
        overlay_dev: Option<(u32, &str)>,
    ) -> Result<(Changes, Vec<String>), String> {
        let wanted = self.all();
        let mut present: BTreeMap<Key, Entry> = BTreeMap::new();
        let routes = h
            .route_list(Some(family), Some(TABLE_MAIN))
            .await
            .map_err(|e| e.to_string())?;
        for r in routes.iter().filter(|r| r.protocol == PROTO_OVERLAY) {
            if let Some(e) = route_entry(r) {
                present.insert(e.key(), e);
            }
        }
        if let Some((dev, dev_name)) = overlay_dev {
            let neighs = h.neigh_list(Some(dev_name), None).await.map_err(|e| e.to_string())?;
            for n in neighs.iter().filter(|n| n.state.is_permanent() && !n.proxy) {
                if let Some(mac) = n.mac {
                    let e = Entry::Neigh {
                        dev,
                        dev_name: dev_name.to_string(),
                        ip: n.ip,
                        mac,
                    };
                    present.insert(e.key(), e);
                }
            }
            let fdb = h.fdb_list(Some(dev_name)).await.map_err(|e| e.to_string())?;
            for f in fdb.iter().filter(|f| f.is_self && f.permanent) {
                if let Some(dst) = f.dst {
                    let e = Entry::Fdb { dev, mac: f.mac, dst };
                    present.insert(e.key(), e);
                }
            }
        }
        let mut changes = Changes::default();
        let mut errors = Vec::new();
        for (key, e) in &present {
            if !wanted.contains_key(key) {
                match e.remove(h).await {
                    Ok(()) => changes.removed += 1,
                    Err(msg) => errors.push(msg),
                }
            }
        }
        for (key, e) in &wanted {
            if present.get(key) != Some(*e) {
                match e.install(h).await {
                    Ok(()) => changes.installed += 1,
                    Err(msg) => errors.push(msg),
                }
            }
        }
        Ok((changes, errors))
    }
}

/// A route of the agent's as an entry (single-path routes with a device, and a gateway or not).
fn route_entry(r: &RouteInfo) -> Option<Entry> {
    Some(match r.gateway {
        Some(via) => Entry::Route {
            dst: r.dst?,
            via,
            dev: r.oif?,
            onlink: r.onlink,
        },
        None => Entry::DevRoute {
            dst: r.dst?,
            dev: r.oif?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_identify_what_the_kernel_keeps_once() {
        let a = Entry::Route {
            dst: "10.244.1.0/24".parse().unwrap(),
            via: "10.244.1.0".parse().unwrap(),
            dev: 5,
            onlink: true,
        };
        let b = Entry::Route {
            dst: "10.244.1.0/24".parse().unwrap(),
            via: "192.168.0.2".parse().unwrap(),
            dev: 2,
            onlink: false,
        };
        assert_eq!(a.key(), b.key());
        assert_ne!(a, b);
        let f = Entry::Fdb {
            dev: 5,
            mac: "02:00:00:00:00:01".parse().unwrap(),
            dst: "192.168.0.2".parse().unwrap(),
        };
        assert_eq!(f.key(), Key::Fdb(5, "02:00:00:00:00:01".parse().unwrap()));
        let mut w = Wanted::default();
        w.want("10.244.1.0/24".parse().unwrap(), vec![a.clone(), f.clone()]);
        assert_eq!(w.entries(), 2);
        assert_eq!(w.get(&b.key()), Some(&a));
        w.want("10.244.1.0/24".parse().unwrap(), vec![f.clone()]);
        assert_eq!((w.entries(), w.get(&b.key())), (1, None));
        w.forget("10.244.1.0/24".parse().unwrap());
        assert_eq!((w.entries(), w.get(&f.key())), (0, None));
    }
}
