//! `netkit ipam allocate|release|show|gc|check`: netkit-core's address allocator
//! ([`netkit_core::ipam`]) on a store directory, the same store the `netkit-ipam` CNI plugin
//! keeps. Nothing here touches a network namespace.
//!
//! # The pool and the store
//!
//! `--config FILE` is read as one of:
//!
//! * a CNI network configuration with an `ipam` key (`{"name": "podnet", "ipam": {…}}`);
//! * a conflist (`{"name": "podnet", "plugins": [{…, "ipam": {…}}]}`): the first plugin with
//!   an `ipam` key;
//! * host-local's bare `ipam` object (`{"ranges": [[{"subnet": "10.22.0.0/16"}]], "routes":
//!   […]}`), whose network name then comes from `--network`.
//!
//! The `ipam` object has host-local's keys as netkit-core reads them ([`IpamConfig`]:
//! `ranges`, the legacy `subnet`/`rangeStart`/`rangeEnd`/`gateway`, `routes`, `dataDir`,
//! `resolvConf`, `sync`). The network name (`--network`, else the file's `name`) names the
//! pool; its store is `DIR/<network>`, DIR being `--store`, else the config's `dataDir`, else
//! [`DEFAULT_DATA_DIR`] (`/var/lib/cni/netkit`, the plugin's default). So `netkit ipam` with the
//! plugin's configuration file works on the plugin's store, and a GC only ever touches one
//! network's addresses (CNI 1.1's GC is per network).
//!
//! A file that cannot be read, is not JSON or is refused by netkit-core is an operation error
//! (exit code 1, the file named), as `netkit topo` treats its files; a bad word on the command
//! line (an owner, an address) is a usage error (exit code 2).
//!
//! # Owners
//!
//! An OWNER is `CONTAINERID:IFNAME` (netkit-core's [`Owner`]: the container ID is 1–200 of
//! letters, digits, `_ . -` starting with a letter or digit; IFNAME an interface name); a bare
//! `CONTAINERID` means `CONTAINERID:eth0`. Neither part can hold a `:`, so the spelling is
//! unambiguous, and it is the store's own file name for the owner.
//!
//! # JSON (`-j`)
//!
//! * `allocate`: `{"network": N, "owner": "c1:eth0", "container_id": "c1", "ifname": "eth0",
//!   "new": true, "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}], "routes":
//!   [{"dst": "0.0.0.0/0", "gw": "10.0.0.254"}], "dns": {"nameservers": […], "domain": D,
//!   "search": […], "options": […]}}` — `new` is false when the owner already held addresses
//!   (it gets them back), `gw` is absent when the route names none, `dns` only with
//!   `resolvConf`.
//! * `release`: `{"network", "owner", "container_id", "ifname", "released": ["10.0.0.2"]}`.
//! * `show`: `[{"ip": "10.0.0.2", "owner": "c1:eth0", "container_id": "c1", "ifname": "eth0"}]`,
//!   sorted by address.
//! * `gc`: `{"network", "released": [{"owner", "container_id", "ifname", "ips": […]}],
//!   "orphans_released": [{"ip", "owner", …}], "orphans_adopted": [{"ip", "owner", …}],
//!   "stale_intents": N, "scratch_removed": N, "quarantined": [PATH…]}`.
//! * `check`: `{"network", "held": N, "owners": N, "stale_intents": N, "problems": [TEXT…]}`;
//!   the exit code is 1 when `problems` is not empty.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use ipnetwork::IpNetwork;
use netkit_core::ipam::{Allocation, Ipam, IpamConfig, IpamError, Owner, StoreOptions, DEFAULT_DATA_DIR};
use serde_json::{json, Map, Value};

use crate::cli::Words;
use crate::error::{CliError, EXIT_FAILED};
use crate::output::Output;
use crate::words::{parse_word, WordReader};

/// The interface name of an OWNER written without one.
pub const DEFAULT_IFNAME: &str = "eth0";

/// Where the pool and its store come from (the options of `netkit ipam`, before the verb).
#[derive(Args, Debug, Clone)]
pub struct IpamOpts {
    /// The pool configuration: a CNI network configuration (its `ipam` key), a conflist (the
    /// first plugin with `ipam`) or host-local's bare `ipam` object.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The data directory; the pool's store is DIR/NETWORK (default: the config's `dataDir`,
    /// else /var/lib/cni/netkit, as the netkit-ipam plugin).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// The network (pool) name (default: the file's `name`; needed with a bare `ipam` object).
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
}

/// `netkit ipam …` verbs.
#[derive(Subcommand, Debug, Clone)]
pub enum IpamVerb {
    /// Give OWNER one address from every range set (or what it already holds).
    #[command(
        after_help = "ARGS: [ip ADDRESS]…  (ask for these addresses: at most one per range set)\n\n\
        OWNER: CONTAINERID[:IFNAME] (IFNAME defaults to eth0)\n\n\
        Examples:\n  \
        netkit ipam --config podnet.json --store /tmp/ipam allocate c1:eth0\n  \
        netkit -j ipam --config podnet.json allocate c2 ip 10.22.0.50"
    )]
    Allocate {
        /// `CONTAINERID[:IFNAME]`.
        owner: String,
        /// `ip ADDRESS`, repeated.
        #[command(flatten)]
        args: Words,
    },
    /// Release every address OWNER holds (an owner holding nothing is a note, not an error).
    #[command(after_help = "Example:\n  netkit ipam --config podnet.json release c1:eth0")]
    Release {
        /// `CONTAINERID[:IFNAME]`.
        owner: String,
    },
    /// List held addresses with their owners, or those of one OWNER.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  netkit ipam --config podnet.json show\n  \
            netkit -j ipam --config podnet.json show c1:eth0"
    )]
    Show {
        /// `CONTAINERID[:IFNAME]`.
        owner: Option<String>,
    },
    /// Release everything held by an owner not listed (CNI GC's valid attachments), in this
    /// network's store only, and tidy what killed processes left; prints what was released.
    #[command(
        after_help = "ARGS: VALID_OWNER…, each CONTAINERID[:IFNAME]; with none, --all is needed\n\n\
        Examples:\n  \
        netkit ipam --config podnet.json gc c1:eth0 c2:eth0\n  \
        netkit ipam --config podnet.json gc --all"
    )]
    Gc {
        /// The owners that keep their addresses.
        #[arg(value_name = "VALID_OWNER")]
        valid: Vec<String>,
        /// No owner is valid: release every address of the network.
        #[arg(long, conflicts_with = "valid")]
        all: bool,
    },
    /// Check the store's consistency: counts, and every address file its owner's record does
    /// not list (exit code 1 when there is such a problem). Damaged records are quarantined.
    #[command(after_help = "Example:\n  netkit ipam --config podnet.json check")]
    Check,
}

/// Read an OWNER word: `CONTAINERID[:IFNAME]`; a bad one is a usage error.
pub fn parse_owner(word: &str) -> Result<Owner, CliError> {
    let (id, ifname) = word.split_once(':').unwrap_or((word, DEFAULT_IFNAME));
    Owner::new(id, ifname).map_err(|e| CliError::usage(format!("owner {word:?}: {e}")))
}

/// The store key spelling of an owner: `CONTAINERID:IFNAME`.
pub fn owner_name(o: &Owner) -> String {
    format!("{}:{}", o.container_id(), o.ifname())
}

/// `owner`, `container_id` and `ifname` keys for `o`, to extend an object with.
fn owner_json(o: &Owner) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("owner".into(), json!(owner_name(o)));
    m.insert("container_id".into(), json!(o.container_id()));
    m.insert("ifname".into(), json!(o.ifname()));
    m
}

/// `owner_json` plus more keys.
fn with_owner(o: &Owner, rest: Value) -> Value {
    let mut m = owner_json(o);
    if let Value::Object(r) = rest {
        m.extend(r);
    }
    Value::Object(m)
}

/// The allocator that `opts` names, opened (its store directory is created when missing).
fn open(opts: &IpamOpts) -> Result<Ipam, CliError> {
    let file = opts.config.display().to_string();
    let bad = |cause: String| CliError::IpamConfig {
        file: file.clone(),
        cause,
    };
    let text = std::fs::read_to_string(&opts.config).map_err(|e| bad(format!("read: {e}")))?;
    let (name, config) = IpamConfig::from_network_json(&text).map_err(|e| bad(e.to_string()))?;
    let Some(network) = opts.network.clone().or(name) else {
        return Err(CliError::usage(format!(
            "ipam: {file} names no network (no \"name\" key): give --network NAME"
        )));
    };
    let pool = config.pool(&network).map_err(|e| bad(e.to_string()))?;
    let dns = config.dns().map_err(|e| bad(e.to_string()))?;
    let dir = opts
        .store
        .clone()
        .or_else(|| config.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let options = StoreOptions {
        sync: config.sync,
        ..StoreOptions::default()
    };
    let ipam = Ipam::open(pool, &dir, options).map_err(|e| failed(format!("ipam: open store {}", dir.display()), e))?;
    Ok(ipam.with_dns(dns))
}

fn failed(what: String, cause: IpamError) -> CliError {
    CliError::Ipam {
        what,
        cause: Box::new(cause),
    }
}

/// `ipam VERB OWNER in store DIR`, for errors.
fn what(ipam: &Ipam, verb: &str, owner: Option<&Owner>) -> String {
    let owner = owner.map(|o| format!(" {}", owner_name(o))).unwrap_or_default();
    format!("ipam {verb}{owner} in store {}", ipam.store().dir().display())
}

/// Read the words of `allocate`: `[ip ADDRESS]…` (an address with a prefix is taken as its
/// address).
pub fn parse_requests(words: &[String]) -> Result<Vec<IpAddr>, CliError> {
    let mut r = WordReader::new(words, "ipam allocate");
    let mut ips = Vec::new();
    while let Some(w) = r.next() {
        match w {
            "ip" => {
                let v = r.value("ip")?;
                let ip = parse_word::<IpAddr>(v, "ip", "an address")
                    .or_else(|e| v.parse::<IpNetwork>().map(|n| n.ip()).map_err(|_| e))
                    .map_err(|e| r.error(e))?;
                ips.push(ip.to_canonical());
            }
            other => return Err(r.unexpected(other, "ip")),
        }
    }
    ips.sort();
    ips.dedup();
    Ok(ips)
}

/// Run an `ipam` verb.
pub fn run(out: &Output, opts: &IpamOpts, verb: IpamVerb) -> Result<(), CliError> {
    // Words first: a usage error never creates a store.
    match verb {
        IpamVerb::Allocate { owner, args } => {
            let (owner, wanted) = (parse_owner(&owner)?, parse_requests(&args.words)?);
            let ipam = open(opts)?;
            let got = ipam
                .allocate(&owner, &wanted)
                .map_err(|e| failed(what(&ipam, "allocate", Some(&owner)), e))?;
            print_allocation(out, &ipam, &owner, &got);
        }
        IpamVerb::Release { owner } => {
            let owner = parse_owner(&owner)?;
            let ipam = open(opts)?;
            let ips = ipam
                .release(&owner)
                .map_err(|e| failed(what(&ipam, "release", Some(&owner)), e))?;
            if out.json {
                out.json(&with_owner(
                    &owner,
                    json!({"network": ipam.pool().name(), "released": ips}),
                ));
            } else if ips.is_empty() {
                out.note(&format!(
                    "{} held nothing in network {}",
                    owner_name(&owner),
                    ipam.pool().name()
                ));
            } else {
                for ip in ips {
                    out.text(&format!("released {ip}"));
                }
            }
        }
        IpamVerb::Show { owner } => {
            let owner = owner.as_deref().map(parse_owner).transpose()?;
            let ipam = open(opts)?;
            let held: Vec<(IpAddr, Owner)> = match &owner {
                Some(o) => {
                    let mut ips = ipam.lookup(o).map_err(|e| failed(what(&ipam, "show", Some(o)), e))?;
                    ips.sort();
                    ips.into_iter().map(|ip| (ip, o.clone())).collect()
                }
                None => ipam.list().map_err(|e| failed(what(&ipam, "show", None), e))?,
            };
            out.list(
                held.iter().map(|(ip, o)| with_owner(o, json!({"ip": ip}))),
                held.iter().map(|(ip, o)| format!("{ip} {}", owner_name(o))),
            );
        }
        IpamVerb::Gc { valid, all } => {
            if valid.is_empty() && !all {
                return Err(CliError::usage(
                    "ipam gc: name the valid owners, or give --all to release every address of the network",
                ));
            }
            let valid = valid.iter().map(|w| parse_owner(w)).collect::<Result<Vec<_>, _>>()?;
            let ipam = open(opts)?;
            let report = ipam.gc(&valid).map_err(|e| failed(what(&ipam, "gc", None), e))?;
            print_gc(out, &ipam, &report);
        }
        IpamVerb::Check => {
            let ipam = open(opts)?;
            let check = ipam.check().map_err(|e| failed(what(&ipam, "check", None), e))?;
            if out.json {
                out.json(&json!({
                    "network": ipam.pool().name(),
                    "held": check.held,
                    "owners": check.owners,
                    "stale_intents": check.stale_intents,
                    "problems": check.problems,
                }));
            } else {
                out.text(&format!(
                    "network {}: {} held addresses, {} owner records, {} stale intents",
                    ipam.pool().name(),
                    check.held,
                    check.owners,
                    check.stale_intents
                ));
                for p in &check.problems {
                    out.text(&format!("problem: {p}"));
                }
            }
            if !check.problems.is_empty() {
                if !out.json {
                    eprintln!(
                        "netkit: ipam check: {} problem(s) in store {}",
                        check.problems.len(),
                        ipam.store().dir().display()
                    );
                }
                return Err(CliError::Reported(EXIT_FAILED));
            }
        }
    }
    Ok(())
}

fn print_allocation(out: &Output, ipam: &Ipam, owner: &Owner, got: &Allocation) {
    if out.json {
        let ips: Vec<Value> = got
            .ips
            .iter()
            .map(|ip| json!({"address": ip.address.to_string(), "gateway": ip.gateway}))
            .collect();
        let routes: Vec<Value> = got
            .routes
            .iter()
            .map(|r| {
                let mut m = Map::new();
                m.insert("dst".into(), json!(r.dst.to_string()));
                if let Some(gw) = r.gw {
                    m.insert("gw".into(), json!(gw));
                }
                Value::Object(m)
            })
            .collect();
        let mut v = json!({
            "network": ipam.pool().name(),
            "new": got.held_before.is_empty(),
            "ips": ips,
            "routes": routes,
        });
        if let Some(d) = &got.dns {
            v["dns"] = json!({
                "nameservers": d.nameservers,
                "domain": d.domain,
                "search": d.search,
                "options": d.options,
            });
        }
        out.json(&with_owner(owner, v));
        return;
    }
    for ip in &got.ips {
        out.text(&format!("address {} gateway {}", ip.address, ip.gateway));
    }
    for r in &got.routes {
        match r.gw {
            Some(gw) => out.text(&format!("route {} via {gw}", r.dst)),
            None => out.text(&format!("route {}", r.dst)),
        }
    }
    if let Some(d) = &got.dns {
        for n in &d.nameservers {
            out.text(&format!("nameserver {n}"));
        }
    }
}

fn print_gc(out: &Output, ipam: &Ipam, r: &netkit_core::ipam::GcReport) {
    let orphan = |(ip, o): &(IpAddr, Owner)| with_owner(o, json!({"ip": ip}));
    if out.json {
        let released: Vec<Value> = r
            .released
            .iter()
            .map(|(o, ips)| with_owner(o, json!({"ips": ips})))
            .collect();
        out.json(&json!({
            "network": ipam.pool().name(),
            "released": released,
            "orphans_released": r.orphans_released.iter().map(orphan).collect::<Vec<_>>(),
            "orphans_adopted": r.orphans_adopted.iter().map(orphan).collect::<Vec<_>>(),
            "stale_intents": r.stale_intents,
            "scratch_removed": r.scratch_removed,
            "quarantined": r.quarantined.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }));
        return;
    }
    for (o, ips) in &r.released {
        for ip in ips {
            out.text(&format!("released {ip} {}", owner_name(o)));
        }
    }
    for (ip, o) in &r.orphans_released {
        out.text(&format!("released orphan {ip} {}", owner_name(o)));
    }
    for (ip, o) in &r.orphans_adopted {
        out.text(&format!("adopted orphan {ip} {}", owner_name(o)));
    }
    for p in &r.quarantined {
        out.text(&format!("quarantined {}", p.display()));
    }
    let n = r.released_ips().len();
    out.text(&format!(
        "network {}: released {n} address{}, dropped {} stale intents, removed {} scratch files",
        ipam.pool().name(),
        if n == 1 { "" } else { "es" },
        r.stale_intents,
        r.scratch_removed
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::tests::w;

    #[test]
    fn owners() {
        let o = parse_owner("c1:net1").unwrap();
        assert_eq!((o.container_id(), o.ifname()), ("c1", "net1"));
        assert_eq!(parse_owner("c1").unwrap().ifname(), "eth0");
        for bad in ["", ":eth0", "c1:", "a b", "c1:eth0:x", "-c"] {
            let e = parse_owner(bad).unwrap_err();
            assert_eq!(e.exit_code(), crate::EXIT_USAGE, "{bad:?}");
        }
    }

    #[test]
    fn requests() {
        let ips = parse_requests(&w("ip 10.0.0.9 ip 10.0.0.5/24 ip fd00::5 ip 10.0.0.9")).unwrap();
        assert_eq!(ips.len(), 3);
        assert_eq!(ips[0].to_string(), "10.0.0.5");
        for bad in ["ip", "ip x", "address 10.0.0.1"] {
            assert_eq!(
                parse_requests(&w(bad)).unwrap_err().exit_code(),
                crate::EXIT_USAGE,
                "{bad}"
            );
        }
    }
}
