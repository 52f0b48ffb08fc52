//! Reading topology files: containerlab's format (`*.clab.yml`) and netkit's own, which is the
//! same layout with per-node L3 settings added.
//!
//! ```yaml
//! version: 1                         # netkit's format only: the schema's version (default 1)
//! name: demo
//! topology:
//!   defaults: {kind: linux}          # containerlab's inheritance: defaults < kinds < groups < node
//!   nodes:
//!     h1:
//!       addresses: {eth1: [10.0.0.1/24]}                  # netkit's additions…
//!       routes: [{dst: default, via: 10.0.0.254}]
//!       sysctls: {net.ipv4.ip_forward: 1}                 # (containerlab's own key, kept)
//!       exec: ["ip -br addr"]                             # run after the links are up
//!     br0: {kind: bridge}                                 # a bridge in the host namespace
//!   links:
//!     - endpoints: ["h1:eth1", "br0:h1-eth1"]             # to a bridge: its port's name
//! ```
//!
//! Container settings (`image`, `cmd`, `binds`, …) are ignored with one warning line each; any
//! other unknown key is an error naming its path. Syntax errors carry the line and column.
//!
//! **Versions.** netkit's own format carries `version:` at the top, [`SCHEMA_VERSION`] (1) for
//! this schema; a file without it is version 1 (files written before the key existed). A file
//! of a version this netkit does not read is refused, naming both versions, rather than read
//! with a meaning it was not written for. containerlab's files have no such key (a `version:`
//! there is an unknown key, as containerlab itself would say).

/// The version of netkit's topology schema this code reads and writes (`version: 1`).
pub const SCHEMA_VERSION: u64 = 1;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_norway::{Mapping, Value};

use super::model::{Endpoint, Lab, LinkDef, Nat, Node, PoolDef, RouteDef, VxlanDef};
use super::TopoError;

/// Which naming scheme a file follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// containerlab's: namespaces `clab-<lab>-<node>` (its `prefix:` rules apply).
    Containerlab,
    /// netkit's own: namespaces `<lab>-<node>`, or `<prefix>-<node>` with `prefix:`.
    Netkit,
}

impl Format {
    /// containerlab's for `*.clab.yml` / `*.clab.yaml`, netkit's for anything else.
    pub fn of_path(path: &std::path::Path) -> Self {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".clab.yml") || name.ends_with(".clab.yaml") {
            Format::Containerlab
        } else {
            Format::Netkit
        }
    }
}

/// Node settings of containerlab's that only make sense for containers: ignored, with a warning.
const CONTAINER_SETTINGS: &[&str] = &[
    "image",
    "image-pull-policy",
    "restart-policy",
    "license",
    "position",
    "entrypoint",
    "cmd",
    "env",
    "env-files",
    "binds",
    "ports",
    "mgmt-ipv4",
    "mgmt-ipv6",
    "publish",
    "labels",
    "config",
    "startup-config",
    "startup-delay",
    "enforce-startup-config",
    "suppress-startup-config",
    "auto-remove",
    "user",
    "network-mode",
    "runtime",
    "cpu",
    "cpu-set",
    "memory",
    "shm-size",
    "cap-add",
    "devices",
    "certificate",
    "healthcheck",
    "dns",
    "aliases",
    "extras",
    "wait-for",
    "stages",
    "components",
    "type",
];

/// Node keys netkit uses.
const NODE_KEYS: &[&str] = &[
    "kind",
    "group",
    "exec",
    "sysctls",
    "addresses",
    "routes",
    "nat",
    "vxlan",
    "bridges",
];

/// Read a topology from `text`, named by `format`'s rules.
pub fn parse(text: &str, format: Format) -> Result<Lab, TopoError> {
    let root: Value = serde_norway::from_str(text).map_err(|e| TopoError::Syntax {
        line: e.location().map(|l| l.line()),
        column: e.location().map(|l| l.column()),
        message: e.to_string(),
    })?;
    let mut r = Reader { warnings: Vec::new() };
    r.lab(&root, format)
}

struct Reader {
    warnings: Vec<String>,
}

fn invalid(path: &str, reason: impl Into<String>) -> TopoError {
    TopoError::Invalid {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn map<'a>(v: &'a Value, path: &str) -> Result<&'a Mapping, TopoError> {
    match v {
        Value::Mapping(m) => Ok(m),
        Value::Null => {
            static EMPTY: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
            Ok(EMPTY.get_or_init(Mapping::new))
        }
        _ => Err(invalid(path, "expected a mapping")),
    }
}

/// The keys of a mapping as strings, each with its value.
fn entries<'a>(m: &'a Mapping, path: &str) -> Result<Vec<(String, &'a Value)>, TopoError> {
    m.iter()
        .map(|(k, v)| match k {
            Value::String(s) => Ok((s.clone(), v)),
            Value::Number(n) => Ok((n.to_string(), v)),
            _ => Err(invalid(path, "keys must be strings")),
        })
        .collect()
}

fn string(v: &Value, path: &str) -> Result<String, TopoError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid(path, "expected a string")),
    }
}

fn strings(v: &Value, path: &str) -> Result<Vec<String>, TopoError> {
    match v {
        Value::Sequence(s) => s
            .iter()
            .enumerate()
            .map(|(i, v)| string(v, &format!("{path}[{i}]")))
            .collect(),
        Value::Null => Ok(Vec::new()),
        other => Ok(vec![string(other, path)?]),
    }
}

/// A name of a lab, node or prefix: what a namespace name may hold.
fn check_name(name: &str, path: &str) -> Result<(), TopoError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("{name:?} is not a valid name (letters, digits, - _ ., at most 64)"),
        ))
    }
}

impl Reader {
    fn lab(&mut self, root: &Value, format: Format) -> Result<Lab, TopoError> {
        let top = map(root, "(file)")?;
        let (mut name, mut prefix, mut topology, mut pools_v) = (None, None, None, None);
        for (k, v) in entries(top, "(file)")? {
            match k.as_str() {
                "name" => name = Some(string(v, "name")?),
                "version" if format == Format::Netkit => match v.as_u64() {
                    Some(SCHEMA_VERSION) => {}
                    Some(n) => {
                        return Err(invalid(
                            "version",
                            format!("this file is of schema version {n}; this netkit reads version {SCHEMA_VERSION}"),
                        ))
                    }
                    None => return Err(invalid("version", "expected a number")),
                },
                "pools" => pools_v = Some(v),
                "prefix" => prefix = Some(string(v, "prefix")?),
                "topology" => topology = Some(v),
                "mgmt" | "settings" | "debug" => self.warnings.push(format!("{k}: ignored (containers only)")),
                _ => return Err(invalid(&k, "unknown key")),
            }
        }
        let name = name.ok_or_else(|| invalid("name", "missing"))?;
        check_name(&name, "name")?;
        let prefix = match (format, prefix.as_deref()) {
            (Format::Containerlab, None) => format!("clab-{name}"),
            (Format::Containerlab, Some("")) => String::new(),
            (Format::Containerlab, Some("__lab-name")) => name.clone(),
            (Format::Containerlab, Some(p)) => format!("{p}-{name}"),
            (Format::Netkit, None) => name.clone(),
            (Format::Netkit, Some(p)) => p.to_string(),
        };
        if !prefix.is_empty() {
            check_name(&prefix, "prefix")?;
        }
        let topology = map(topology.ok_or_else(|| invalid("topology", "missing"))?, "topology")?;
        let (mut defaults, mut kinds, mut groups, mut nodes_v, mut links_v) = (None, None, None, None, None);
        for (k, v) in entries(topology, "topology")? {
            match k.as_str() {
                "defaults" => defaults = Some(map(v, "topology.defaults")?),
                "kinds" => kinds = Some(map(v, "topology.kinds")?),
                "groups" => groups = Some(map(v, "topology.groups")?),
                "nodes" => nodes_v = Some(map(v, "topology.nodes")?),
                "links" => links_v = Some(v),
                _ => return Err(invalid(&format!("topology.{k}"), "unknown key")),
            }
        }
        let mut lab = Lab {
            name,
            prefix,
            nodes: BTreeMap::new(),
            bridges: Vec::new(),
            links: Vec::new(),
            host: None,
            pools: BTreeMap::new(),
            pool_addresses: Vec::new(),
            warnings: Vec::new(),
        };
        if let Some(v) = pools_v {
            for (pool, spec) in entries(map(v, "pools")?, "pools")? {
                let at = format!("pools.{pool}");
                check_name(&pool, &at)?;
                lab.pools.insert(pool, pool_def(spec, &at)?);
            }
        }
        let nodes_v = nodes_v.ok_or_else(|| invalid("topology.nodes", "missing"))?;
        for (node, v) in entries(nodes_v, "topology.nodes")? {
            let path = format!("topology.nodes.{node}");
            check_name(&node, &path)?;
            // containerlab's inheritance: defaults, then the kind's, then the group's, then the node's.
            let own = map(v, &path)?;
            let group = own
                .get("group")
                .map(|g| string(g, &format!("{path}.group")))
                .transpose()?;
            let mut layers: Vec<(String, &Mapping)> = Vec::new();
            if let Some(d) = defaults {
                layers.push(("topology.defaults".into(), d));
            }
            let kind_of = |layers: &[(String, &Mapping)], own: &Mapping| -> Result<String, TopoError> {
                let mut kind = None;
                for (p, m) in layers
                    .iter()
                    .map(|(p, m)| (p.as_str(), *m))
                    .chain([(path.as_str(), own)])
                {
                    if let Some(k) = m.get("kind") {
                        kind = Some(string(k, &format!("{p}.kind"))?);
                    }
                }
                Ok(kind.unwrap_or_else(|| "linux".into()))
            };
            if let Some(g) = &group {
                let gm = groups
                    .and_then(|gs| gs.get(g.as_str()))
                    .ok_or_else(|| invalid(&format!("{path}.group"), format!("no group {g:?} in topology.groups")))?;
                layers.push((
                    format!("topology.groups.{g}"),
                    map(gm, &format!("topology.groups.{g}"))?,
                ));
            }
            let kind = kind_of(&layers, own)?;
            if let Some(km) = kinds.and_then(|ks| ks.get(kind.as_str())) {
                // The kind's settings go between the defaults and the group's.
                let at = usize::from(defaults.is_some());
                layers.insert(
                    at,
                    (
                        format!("topology.kinds.{kind}"),
                        map(km, &format!("topology.kinds.{kind}"))?,
                    ),
                );
            }
            layers.push((path.clone(), own));
            match kind.as_str() {
                "linux" => {
                    let n = self.node(&node, &layers)?;
                    lab.nodes.insert(node, n);
                }
                "host" => {
                    if let Some((other, _)) = &lab.host {
                        return Err(invalid(
                            &path,
                            format!("a second node of kind host (the first is {other:?})"),
                        ));
                    }
                    let n = self.node(&node, &layers)?;
                    if !n.exec.is_empty() {
                        return Err(invalid(
                            &format!("{path}.exec"),
                            "commands are not run on the host node",
                        ));
                    }
                    lab.host = Some((node, n));
                }
                "bridge" => {
                    crate::ifname::check(&node).map_err(|e| invalid(&path, e.to_string()))?;
                    for (p, m) in &layers {
                        for (k, _) in entries(m, p)? {
                            if !["kind", "group"].contains(&k.as_str()) {
                                self.warn_or_fail(&format!("{p}.{k}"), &k)?;
                            }
                        }
                    }
                    lab.bridges.push(node);
                }
                other => {
                    return Err(invalid(
                        &path,
                        format!(
                        "kind {other:?} is not supported: netkit makes `linux` nodes (namespaces) and `bridge` nodes"
                    ),
                    ))
                }
            }
        }
        for (node, n) in lab.nodes.iter_mut().chain(lab.host.as_mut().map(|(h, n)| (&*h, n))) {
            for (dev, pool) in std::mem::take(&mut n.pooled) {
                if !lab.pools.contains_key(&pool) {
                    return Err(invalid(
                        &format!("topology.nodes.{node}.addresses.{dev}"),
                        format!("no pool {pool:?} in pools"),
                    ));
                }
                lab.pool_addresses.push((node.clone(), dev, pool));
            }
        }
        if let Some(links) = links_v {
            self.links(&mut lab, links)?;
        }
        self.check_addresses(&lab)?;
        // A setting inherited by many nodes is warned about once.
        let mut seen = BTreeSet::new();
        lab.warnings = std::mem::take(&mut self.warnings)
            .into_iter()
            .filter(|w| seen.insert(w.clone()))
            .collect();
        Ok(lab)
    }

    fn warn_or_fail(&mut self, path: &str, key: &str) -> Result<(), TopoError> {
        if CONTAINER_SETTINGS.contains(&key) {
            self.warnings.push(format!(
                "{path}: ignored (a container setting; netkit nodes are namespaces)"
            ));
            Ok(())
        } else {
            Err(invalid(path, "unknown key"))
        }
    }

    /// A linux node from its layers (later layers override earlier ones, key by key; `exec`
    /// and `sysctls` merge as containerlab merges them: exec lists append, sysctl maps merge).
    fn node(&mut self, name: &str, layers: &[(String, &Mapping)]) -> Result<Node, TopoError> {
        let mut n = Node::default();
        for (p, m) in layers {
            for (k, v) in entries(m, p)? {
                let path = format!("{p}.{k}");
                match k.as_str() {
                    "kind" | "group" => {}
                    "exec" => n.exec.extend(strings(v, &path)?),
                    "sysctls" => {
                        for (key, val) in entries(map(v, &path)?, &path)? {
                            let value = string(val, &format!("{path}.{key}"))?;
                            n.sysctls.insert(key, value);
                        }
                    }
                    "addresses" => {
                        for (dev, list) in entries(map(v, &path)?, &path)? {
                            let at = format!("{path}.{dev}");
                            let mut prefixes = Vec::new();
                            let mut pools = Vec::new();
                            for (i, s) in strings(list, &at)?.iter().enumerate() {
                                if let Some(pool) = s.strip_prefix("pool:") {
                                    pools.push(pool.to_string());
                                    continue;
                                }
                                let p: IpNetwork = s
                                    .parse()
                                    .map_err(|e| invalid(&format!("{at}[{i}]"), format!("{s:?}: {e}")))?;
                                prefixes.push(p);
                            }
                            n.pooled.retain(|(d, _)| d != &dev);
                            n.pooled.extend(pools.into_iter().map(|p| (dev.clone(), p)));
                            n.addresses.insert(dev, prefixes);
                        }
                    }
                    "nat" => n.nat = nat(v, &path)?,
                    "vxlan" => {
                        for (dev, spec) in entries(map(v, &path)?, &path)? {
                            let at = format!("{path}.{dev}");
                            crate::ifname::check(&dev).map_err(|e| invalid(&at, e.to_string()))?;
                            n.vxlan.insert(dev, vxlan(spec, &at)?);
                        }
                    }
                    "bridges" => {
                        for (br, ports) in entries(map(v, &path)?, &path)? {
                            let at = format!("{path}.{br}");
                            crate::ifname::check(&br).map_err(|e| invalid(&at, e.to_string()))?;
                            let ports = match ports {
                                Value::Mapping(m) => match m.get("ports") {
                                    Some(p) => strings(p, &format!("{at}.ports"))?,
                                    None => Vec::new(),
                                },
                                other => strings(other, &at)?,
                            };
                            n.bridges.insert(br, ports);
                        }
                    }
                    "routes" => {
                        n.routes.clear();
                        let Value::Sequence(rs) = v else {
                            return Err(invalid(&path, "expected a list of routes"));
                        };
                        for (i, r) in rs.iter().enumerate() {
                            n.routes.push(route(r, &format!("{path}[{i}]"))?);
                        }
                    }
                    other if NODE_KEYS.contains(&other) => {}
                    other => self.warn_or_fail(&path, other)?,
                }
            }
        }
        let _ = name;
        Ok(n)
    }

    fn links(&mut self, lab: &mut Lab, links: &Value) -> Result<(), TopoError> {
        let Value::Sequence(list) = links else {
            return Err(invalid("topology.links", "expected a list"));
        };
        let mut used: BTreeSet<Endpoint> = BTreeSet::new();
        for (i, l) in list.iter().enumerate() {
            let path = format!("topology.links[{i}]");
            let mut ends = None;
            let mut mtu = None;
            for (k, v) in entries(map(l, &path)?, &path)? {
                let at = format!("{path}.{k}");
                match k.as_str() {
                    "endpoints" => {
                        let Value::Sequence(es) = v else {
                            return Err(invalid(&at, "expected two endpoints"));
                        };
                        let es = es
                            .iter()
                            .enumerate()
                            .map(|(j, e)| endpoint(e, &format!("{at}[{j}]")))
                            .collect::<Result<Vec<_>, _>>()?;
                        let [a, b]: [Endpoint; 2] = es
                            .try_into()
                            .map_err(|_| invalid(&at, "a link has exactly two endpoints"))?;
                        ends = Some((a, b));
                    }
                    "mtu" => {
                        mtu = Some(
                            string(v, &at)?
                                .parse::<u32>()
                                .map_err(|e| invalid(&at, e.to_string()))?,
                        )
                    }
                    "type" => {
                        let t = string(v, &at)?;
                        if t != "veth" {
                            return Err(invalid(&at, format!("link type {t:?} is not supported (veth)")));
                        }
                    }
                    "vars" | "labels" => self.warnings.push(format!("{at}: ignored")),
                    _ => return Err(invalid(&at, "unknown key")),
                }
            }
            let (mut a, mut b) = ends.ok_or_else(|| invalid(&format!("{path}.endpoints"), "missing"))?;
            for (j, e) in [&a, &b].into_iter().enumerate() {
                let at = format!("{path}.endpoints[{j}]");
                let known = lab.nodes.contains_key(&e.node) || lab.is_host_side(&e.node);
                if !known {
                    return Err(invalid(&at, format!("no node {:?} in topology.nodes", e.node)));
                }
                crate::ifname::check(&e.ifname).map_err(|err| invalid(&at, err.to_string()))?;
                // A bridge's ports all live in the host namespace: one name space for them all.
                let key = if lab.is_host_side(&e.node) {
                    Endpoint {
                        node: "(host)".into(),
                        ifname: e.ifname.clone(),
                    }
                } else {
                    e.clone()
                };
                if !used.insert(key) {
                    return Err(invalid(&at, format!("interface {e} is used by another link")));
                }
            }
            let host_side = |e: &Endpoint| lab.is_host_side(&e.node);
            if host_side(&a) && host_side(&b) {
                return Err(invalid(
                    &path,
                    "both ends are in the host namespace (bridges or the host node)",
                ));
            }
            if host_side(&a) {
                std::mem::swap(&mut a, &mut b);
            }
            lab.links.push(LinkDef { a, b, mtu });
        }
        Ok(())
    }

    /// Every address is on an interface some link gives the node (or on `lo`).
    fn check_addresses(&self, lab: &Lab) -> Result<(), TopoError> {
        for (name, node) in lab.nodes.iter().chain(lab.host.as_ref().map(|(n, node)| (n, node))) {
            let is_host = lab.host.as_ref().is_some_and(|(h, _)| h == name);
            let own = |dev: &String| {
                node.vxlan.contains_key(dev)
                    || node.bridges.contains_key(dev)
                    || lab
                        .links
                        .iter()
                        .any(|l| [&l.a, &l.b].iter().any(|e| &e.node == name && &e.ifname == dev))
            };
            for (br, ports) in &node.bridges {
                for p in ports {
                    if !own(p) || node.bridges.contains_key(p) {
                        return Err(invalid(
                            &format!("topology.nodes.{name}.bridges.{br}"),
                            format!("{p} is not a link end or VXLAN device of {name}"),
                        ));
                    }
                }
            }
            for dev in node.addresses.keys() {
                let has = dev == "lo"
                    || own(dev)
                    || (is_host && lab.bridges.contains(dev))
                    || lab.links.iter().any(|l| {
                        [&l.a, &l.b]
                            .iter()
                            .any(|e| (&e.node == name || (is_host && lab.is_host_side(&e.node))) && &e.ifname == dev)
                    });
                if !has {
                    return Err(invalid(
                        &format!("topology.nodes.{name}.addresses.{dev}"),
                        format!("no link gives {name} an interface {dev}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `"node:ifname"` or `{node: …, interface: …}`.
fn endpoint(v: &Value, path: &str) -> Result<Endpoint, TopoError> {
    match v {
        Value::String(s) => {
            let (node, ifname) = s
                .split_once(':')
                .ok_or_else(|| invalid(path, format!("{s:?}: expected \"node:interface\"")))?;
            Ok(Endpoint {
                node: node.into(),
                ifname: ifname.into(),
            })
        }
        Value::Mapping(m) => {
            let get = |k: &str| {
                m.get(k)
                    .map(|v| string(v, &format!("{path}.{k}")))
                    .transpose()?
                    .ok_or_else(|| invalid(&format!("{path}.{k}"), "missing"))
            };
            Ok(Endpoint {
                node: get("node")?,
                ifname: get("interface")?,
            })
        }
        _ => Err(invalid(path, "expected \"node:interface\"")),
    }
}

/// `{subnet: CIDR, range_start: IP, range_end: IP, gateway: IP}` (host-local's names).
fn pool_def(v: &Value, path: &str) -> Result<PoolDef, TopoError> {
    let (mut subnet, mut start, mut end, mut gateway) = (None, None, None, None);
    for (k, v) in entries(map(v, path)?, path)? {
        let at = format!("{path}.{k}");
        let s = string(v, &at)?;
        let ip = || s.parse::<IpAddr>().map_err(|e| invalid(&at, format!("{s:?}: {e}")));
        match k.as_str() {
            "subnet" => {
                subnet = Some(
                    s.parse::<IpNetwork>()
                        .map_err(|e| invalid(&at, format!("{s:?}: {e}")))?,
                )
            }
            "range_start" | "rangeStart" => start = Some(ip()?),
            "range_end" | "rangeEnd" => end = Some(ip()?),
            "gateway" => gateway = Some(ip()?),
            _ => return Err(invalid(&at, "unknown key (subnet, range_start, range_end, gateway)")),
        }
    }
    let subnet = subnet.ok_or_else(|| invalid(&format!("{path}.subnet"), "missing"))?;
    crate::ipam::IpRange::new(subnet, start, end, gateway).map_err(|e| invalid(path, e.to_string()))?;
    Ok(PoolDef {
        subnet,
        start,
        end,
        gateway,
    })
}

/// `{id: N, remote: IP, local: IP, dev: NAME, dstport: N}`.
fn vxlan(v: &Value, path: &str) -> Result<VxlanDef, TopoError> {
    let mut d = VxlanDef {
        id: 0,
        remote: None,
        local: None,
        dev: None,
        dstport: 4789,
    };
    let mut id = None;
    for (k, v) in entries(map(v, path)?, path)? {
        let at = format!("{path}.{k}");
        let ip = |v: &Value| -> Result<IpAddr, TopoError> {
            let s = string(v, &at)?;
            s.parse().map_err(|e| invalid(&at, format!("{s:?}: {e}")))
        };
        match k.as_str() {
            "id" => {
                id = Some(
                    string(v, &at)?
                        .parse::<u32>()
                        .map_err(|e| invalid(&at, e.to_string()))?,
                )
            }
            "remote" => d.remote = Some(ip(v)?),
            "local" => d.local = Some(ip(v)?),
            "dev" => d.dev = Some(string(v, &at)?),
            "dstport" => {
                d.dstport = string(v, &at)?
                    .parse()
                    .map_err(|e: std::num::ParseIntError| invalid(&at, e.to_string()))?
            }
            _ => return Err(invalid(&at, "unknown key (id, remote, local, dev, dstport)")),
        }
    }
    d.id = id.ok_or_else(|| invalid(&format!("{path}.id"), "missing"))?;
    if d.id >= 1 << 24 {
        return Err(invalid(&format!("{path}.id"), "a VNI is below 16777216"));
    }
    Ok(d)
}

/// `nat: {masquerade: [CIDR…], ports: [{proto: tcp|udp|sctp, port: N, to: "IP:PORT"}]}`.
fn nat(v: &Value, path: &str) -> Result<Nat, TopoError> {
    use crate::firewall::{PortMapping, Protocol};
    let mut out = Nat::default();
    for (k, v) in entries(map(v, path)?, path)? {
        let at = format!("{path}.{k}");
        match k.as_str() {
            "masquerade" => {
                for (i, s) in strings(v, &at)?.iter().enumerate() {
                    let n: IpNetwork = s
                        .parse()
                        .map_err(|e| invalid(&format!("{at}[{i}]"), format!("{s:?}: {e}")))?;
                    out.masquerade.push(n);
                }
            }
            "ports" => {
                let Value::Sequence(ps) = v else {
                    return Err(invalid(&at, "expected a list of port mappings"));
                };
                for (i, p) in ps.iter().enumerate() {
                    let pp = format!("{at}[{i}]");
                    let (mut proto, mut port, mut to) = (Protocol::Tcp, None, None);
                    for (k, v) in entries(map(p, &pp)?, &pp)? {
                        let a = format!("{pp}.{k}");
                        match k.as_str() {
                            "proto" => {
                                proto = match string(v, &a)?.as_str() {
                                    "tcp" => Protocol::Tcp,
                                    "udp" => Protocol::Udp,
                                    "sctp" => Protocol::Sctp,
                                    other => return Err(invalid(&a, format!("{other:?}: tcp, udp or sctp"))),
                                }
                            }
                            "port" => {
                                port = Some(string(v, &a)?.parse::<u16>().map_err(|e| invalid(&a, e.to_string()))?)
                            }
                            "to" => {
                                let s = string(v, &a)?;
                                to = Some(
                                    s.parse::<std::net::SocketAddr>()
                                        .map_err(|e| invalid(&a, format!("{s:?}: {e} (IP:PORT)")))?,
                                );
                            }
                            _ => return Err(invalid(&a, "unknown key (proto, port, to)")),
                        }
                    }
                    let port = port.ok_or_else(|| invalid(&format!("{pp}.port"), "missing"))?;
                    let to = to.ok_or_else(|| invalid(&format!("{pp}.to"), "missing"))?;
                    let m = PortMapping::new(proto, port, to.ip(), to.port());
                    m.validate().map_err(|e| invalid(&pp, e.to_string()))?;
                    out.ports.push(m);
                }
            }
            _ => return Err(invalid(&at, "unknown key (masquerade, ports)")),
        }
    }
    Ok(out)
}

fn route(v: &Value, path: &str) -> Result<RouteDef, TopoError> {
    let m = map(v, path)?;
    let (mut dst, mut via, mut dev) = (None, None, None);
    for (k, v) in entries(m, path)? {
        let at = format!("{path}.{k}");
        match k.as_str() {
            "dst" => dst = Some(string(v, &at)?),
            "via" => {
                let s = string(v, &at)?;
                via = Some(s.parse::<IpAddr>().map_err(|e| invalid(&at, format!("{s:?}: {e}")))?);
            }
            "dev" => dev = Some(string(v, &at)?),
            _ => return Err(invalid(&at, "unknown key (dst, via, dev)")),
        }
    }
    let dst = dst.ok_or_else(|| invalid(&format!("{path}.dst"), "missing"))?;
    let dst = if dst == "default" {
        match via {
            Some(IpAddr::V6(_)) => "::/0".parse().expect("a prefix"),
            _ => "0.0.0.0/0".parse().expect("a prefix"),
        }
    } else {
        dst.parse::<IpNetwork>()
            .map_err(|e| invalid(&format!("{path}.dst"), format!("{dst:?}: {e}")))?
    };
    if via.is_none() && dev.is_none() {
        return Err(invalid(path, "a route needs `via` or `dev`"));
    }
    Ok(RouteDef { dst, via, dev })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAB: &str = r#"
name: srl
mgmt: {network: clab}
topology:
  defaults:
    kind: linux
    image: alpine:3
  kinds:
    linux:
      exec: ["echo kind"]
  groups:
    routers:
      sysctls: {net.ipv4.ip_forward: 1}
  nodes:
    h1: {}
    r1:
      group: routers
      exec: ["echo node"]
      cmd: sleep infinity
    br-clab:
      kind: bridge
  links:
    - endpoints: ["h1:eth1", "r1:eth1"]
    - endpoints: ["br-clab:r1-eth2", "r1:eth2"]
"#;

    fn err(text: &str) -> String {
        parse(text, Format::Netkit).unwrap_err().to_string()
    }

    #[test]
    fn netkit_files_carry_their_schema_version() {
        let body = "name: v\ntopology:\n  nodes:\n    h1: {}\n";
        assert!(parse(body, Format::Netkit).is_ok(), "no version: version 1");
        assert!(parse(&format!("version: 1\n{body}"), Format::Netkit).is_ok());
        let e = err(&format!("version: 2\n{body}"));
        assert!(e.contains("schema version 2") && e.contains("reads version 1"), "{e}");
        assert!(err(&format!("version: one\n{body}")).contains("expected a number"));
        let clab = parse(&format!("version: 1\n{body}"), Format::Containerlab)
            .unwrap_err()
            .to_string();
        assert!(clab.contains("unknown key"), "{clab}");
    }

    #[test]
    fn a_containerlab_file_reads_with_inheritance_and_warnings() {
        let lab = parse(CLAB, Format::Containerlab).unwrap();
        assert_eq!(lab.prefix, "clab-srl");
        assert_eq!(lab.netns_of("h1"), "clab-srl-h1");
        assert_eq!(lab.nodes.keys().collect::<Vec<_>>(), ["h1", "r1"]);
        assert_eq!(lab.bridges, ["br-clab"]);
        // defaults < kinds < groups < node: exec lists append, sysctls merge.
        assert_eq!(lab.nodes["r1"].exec, ["echo kind", "echo node"]);
        assert_eq!(lab.nodes["h1"].exec, ["echo kind"]);
        assert_eq!(lab.nodes["r1"].sysctls["net.ipv4.ip_forward"], "1");
        assert!(lab.nodes["h1"].sysctls.is_empty());
        // The bridge end is always `b`.
        assert_eq!(lab.links[1].a.to_string(), "r1:eth2");
        assert_eq!(lab.links[1].b.to_string(), "br-clab:r1-eth2");
        // One warning per ignored container setting.
        let w = lab.warnings.join("\n");
        assert!(w.contains("mgmt: ignored"), "{w}");
        assert!(w.contains("topology.defaults.image: ignored"), "{w}");
        assert!(w.contains("topology.nodes.r1.cmd: ignored"), "{w}");
    }

    #[test]
    fn prefixes_follow_containerlab_and_netkit_rules() {
        let with = |p: &str, f| parse(&CLAB.replace("name: srl", &format!("name: srl\nprefix: {p}")), f).unwrap();
        assert_eq!(with("\"\"", Format::Containerlab).netns_of("h1"), "h1");
        assert_eq!(with("__lab-name", Format::Containerlab).netns_of("h1"), "srl-h1");
        assert_eq!(with("lab7", Format::Containerlab).netns_of("h1"), "lab7-srl-h1");
        assert_eq!(parse(CLAB, Format::Netkit).unwrap().netns_of("h1"), "srl-h1");
        assert_eq!(with("x", Format::Netkit).netns_of("h1"), "x-h1");
        assert_eq!(Format::of_path("a/b.clab.yml".as_ref()), Format::Containerlab);
        assert_eq!(Format::of_path("a/b.yml".as_ref()), Format::Netkit);
    }

    #[test]
    fn netkit_additions_are_read() {
        let lab = parse(
            r#"
name: l
topology:
  nodes:
    a:
      addresses: {eth1: [10.0.0.1/24, "fd00::1/64"]}
      routes:
        - {dst: default, via: 10.0.0.2}
        - {dst: "::/0", via: "fd00::2"}
        - {dst: 10.9.0.0/16, dev: eth1}
    b: {}
  links:
    - endpoints: [{node: a, interface: eth1}, "b:eth1"]
      mtu: 1400
"#,
            Format::Netkit,
        )
        .unwrap();
        let a = &lab.nodes["a"];
        assert_eq!(a.addresses["eth1"].len(), 2);
        assert_eq!(a.routes[0].to_string(), "0.0.0.0/0 via 10.0.0.2");
        assert_eq!(a.routes[2].to_string(), "10.9.0.0/16 dev eth1");
        assert_eq!(lab.links[0].mtu, Some(1400));
    }

    #[test]
    fn bad_files_are_refused_with_where_and_why() {
        let e = err("name: x\ntopology:\n  nodes:\n    a: {kind: linux\n");
        assert!(e.starts_with("syntax error at line"), "{e}");
        let e = err("name: x\ntopology:\n  nodes: {a: {}}\n  linkz: []\n");
        assert_eq!(e, "topology.linkz: unknown key");
        let e = err("name: x\ntopology:\n  nodes: {a: {colour: red}}\n");
        assert_eq!(e, "topology.nodes.a.colour: unknown key");
        let e = err("name: x\ntopology:\n  nodes: {a: {}}\n  links: [{endpoints: [\"a:eth1\", \"b:eth1\"]}]\n");
        assert_eq!(e, "topology.links[0].endpoints[1]: no node \"b\" in topology.nodes");
        let e = err(
            "name: x\ntopology:\n  nodes: {a: {}, b: {}, c: {}}\n  links:\n    - endpoints: [\"a:eth1\", \"b:eth1\"]\n    - endpoints: [\"a:eth1\", \"c:eth1\"]\n",
        );
        assert_eq!(
            e,
            "topology.links[1].endpoints[0]: interface a:eth1 is used by another link"
        );
        let e = err("name: x\ntopology:\n  nodes: {a: {addresses: {eth1: [10.0.0.300/24]}}, b: {}}\n  links: [{endpoints: [\"a:eth1\", \"b:eth1\"]}]\n");
        assert!(
            e.starts_with("topology.nodes.a.addresses.eth1[0]: \"10.0.0.300/24\""),
            "{e}"
        );
        let e = err("name: x\ntopology:\n  nodes: {a: {addresses: {eth9: [10.0.0.1/24]}}}\n");
        assert_eq!(e, "topology.nodes.a.addresses.eth9: no link gives a an interface eth9");
        let e = err("name: x\ntopology:\n  nodes: {srl1: {kind: nokia_srlinux}}\n");
        assert!(
            e.starts_with("topology.nodes.srl1: kind \"nokia_srlinux\" is not supported"),
            "{e}"
        );
        let e = err("name: x\ntopology:\n  nodes:\n    a: {}\n    a: {}\n");
        assert!(e.contains("duplicate"), "{e}");
        let e = err("name: \"x/y\"\ntopology:\n  nodes: {a: {}}\n");
        assert!(e.starts_with("name: \"x/y\" is not a valid name"), "{e}");
        let e = err("name: x\ntopology:\n  nodes: {a: {}, b: {}}\n  links: [{endpoints: [\"a:this-name-is-too-long\", \"b:e\"]}]\n");
        assert!(e.starts_with("topology.links[0].endpoints[0]:"), "{e}");
        let e = err("name: x\ntopology:\n  nodes: {h: {kind: host}, g: {kind: host}}\n");
        assert!(e.contains("a second node of kind host"), "{e}");
        let e = err("name: x\ntopology:\n  nodes: {h: {kind: host, exec: [ls]}}\n");
        assert_eq!(e, "topology.nodes.h.exec: commands are not run on the host node");
        let e = err("name: x\ntopology:\n  nodes: {a: {nat: {ports: [{port: 80, to: \"10.0.0.1\"}]}}}\n");
        assert!(e.starts_with("topology.nodes.a.nat.ports[0].to:"), "{e}");
        let e = err("name: x\ntopology:\n  nodes: {h: {kind: host}, b: {kind: bridge}}\n  links: [{endpoints: [\"h:x\", \"b:y\"]}]\n");
        assert!(e.contains("both ends are in the host namespace"), "{e}");
        let e = err("name: x\ntopology:\n  nodes: {a: {addresses: {lo: [\"pool:p\"]}}}\n");
        assert_eq!(e, "topology.nodes.a.addresses.lo: no pool \"p\" in pools");
        let e = err("name: x\npools: {p: {subnet: 10.0.0.0/30, range_start: 10.1.0.1}}\ntopology:\n  nodes: {a: {}}\n");
        assert!(e.starts_with("pools.p: "), "{e}");
        let e = err("name: x\ntopology:\n  nodes: {a: {routes: [{dst: default}]}}\n");
        assert_eq!(e, "topology.nodes.a.routes[0]: a route needs `via` or `dev`");
    }
}
