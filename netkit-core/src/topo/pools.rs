//! Addresses from a lab's pools (`addresses: {eth0: [pool:pods]}`), through netkit's IPAM:
//! each interface gets one address per pool, held under the owner `<lab>.<node>` /
//! `<interface>` in a store beside the lab's record, so applying again finds the same address,
//! and destroy gives them all back.

use std::path::PathBuf;

use super::apply::TopoOptions;
use super::model::{Lab, PoolDef};
use super::TopoError;
use crate::ipam::{IpRange, Ipam, Owner, Pool, RangeSet, StoreOptions};

/// The directory of a lab's pool stores.
fn dir(opts: &TopoOptions, lab: &str) -> PathBuf {
    opts.state_dir.join(format!("{lab}.ipam"))
}

fn open(opts: &TopoOptions, lab: &str, name: &str, def: &PoolDef) -> Result<Ipam, TopoError> {
    let bad = |e: &dyn std::fmt::Display| TopoError::Invalid {
        path: format!("pools.{name}"),
        reason: e.to_string(),
    };
    let range = IpRange::new(def.subnet, def.start, def.end, def.gateway).map_err(|e| bad(&e))?;
    let pool = Pool::new(name, vec![RangeSet::new(vec![range]).map_err(|e| bad(&e))?]).map_err(|e| bad(&e))?;
    Ipam::open(pool, &dir(opts, lab), StoreOptions::default()).map_err(|e| TopoError::State {
        path: dir(opts, lab),
        reason: e.to_string(),
    })
}

fn owner(lab: &Lab, node: &str, dev: &str) -> Result<Owner, TopoError> {
    Owner::new(&format!("{}.{node}", lab.name), dev).map_err(|e| TopoError::Invalid {
        path: format!("topology.nodes.{node}.addresses.{dev}"),
        reason: e.to_string(),
    })
}

/// `lab` with every pool address made literal: the address the interface already holds, or a
/// new one from the pool (with `opts.dry_run`, nothing is allocated: an interface without an
/// address yet gets none here, and the second value names it, for the plan).
pub fn resolve(lab: &Lab, opts: &TopoOptions) -> Result<(Lab, Vec<String>), TopoError> {
    let mut out = lab.clone();
    let mut pending = Vec::new();
    for (node, dev, pool) in &lab.pool_addresses {
        let ipam = open(opts, &lab.name, pool, &lab.pools[pool])?;
        let who = owner(lab, node, dev)?;
        let state = |e: crate::ipam::IpamError| TopoError::State {
            path: dir(opts, &lab.name),
            reason: e.to_string(),
        };
        let held = ipam.lookup(&who).map_err(state)?;
        let prefix = lab.pools[pool].subnet.prefix();
        let ips: Vec<ipnetwork::IpNetwork> = if !held.is_empty() {
            held.into_iter()
                .filter_map(|ip| ipnetwork::IpNetwork::new(ip, prefix).ok())
                .collect()
        } else if opts.dry_run {
            pending.push(format!("allocate an address from pool {pool} for {node}:{dev}"));
            Vec::new()
        } else {
            ipam.allocate(&who, &[])
                .map_err(state)?
                .ips
                .into_iter()
                .map(|a| a.address)
                .collect()
        };
        let target = match out.nodes.get_mut(node) {
            Some(n) => n,
            None => &mut out.host.as_mut().expect("a pool address is on a node or the host").1,
        };
        target.addresses.entry(dev.clone()).or_default().extend(ips);
    }
    Ok((out, pending))
}

/// Give back every address the lab holds in its pools, and remove the stores.
pub(crate) fn release_all(lab: &Lab, opts: &TopoOptions) -> Result<(), String> {
    let d = dir(opts, &lab.name);
    if !d.exists() {
        return Ok(());
    }
    for (name, def) in &lab.pools {
        let ipam = open(opts, &lab.name, name, def).map_err(|e| e.to_string())?;
        for (_, who) in ipam.list().map_err(|e| e.to_string())? {
            if who.container_id().starts_with(&format!("{}.", lab.name)) {
                ipam.release(&who).map_err(|e| e.to_string())?;
            }
        }
    }
    std::fs::remove_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))
}
