//! Pool configuration in host-local's JSON shape, validated into a [`Pool`].
//!
//! Accepted keys (the `ipam` object of a CNI config): `ranges: [[{subnet, rangeStart, rangeEnd,
//! gateway}]]`, the older top-level `subnet`/`rangeStart`/`rangeEnd`/`gateway`, `routes: [{dst,
//! gw}]`, `dataDir`, `resolvConf` (at most 64 KiB), and netkit's own `sync` (fsync every store
//! change). Unknown keys are ignored, as CNI plugins must.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::Deserialize;

use super::range::{IpRange, RangeSet};

/// Why a pool configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The JSON itself could not be read.
    #[error("ipam config is not valid JSON for host-local's keys: {0}")]
    Json(serde_json::Error),
    /// A field that must hold a CIDR or an address does not.
    #[error("ipam config: {field} {value:?} is not a valid {expected}")]
    Parse {
        /// The JSON key.
        field: &'static str,
        /// What it held.
        value: String,
        /// "CIDR" or "IP address".
        expected: &'static str,
    },
    /// A range is inconsistent.
    #[error("ipam config: range {subnet}: {reason}")]
    Range {
        /// The range's subnet.
        subnet: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Neither `ranges` nor `subnet` was given.
    #[error("ipam config: no ranges (give \"ranges\": [[{{\"subnet\": …}}]] or \"subnet\")")]
    NoRanges,
    /// A range set is empty.
    #[error("ipam config: an inner list of \"ranges\" is empty")]
    EmptyRangeSet,
    /// One range set mixes IPv4 and IPv6.
    #[error("ipam config: range set {set} mixes IPv4 and IPv6")]
    MixedFamilies {
        /// The set.
        set: String,
    },
    /// Two ranges overlap (in one set or across sets).
    #[error("ipam config: ranges {a} and {b} overlap")]
    Overlap {
        /// One range.
        a: String,
        /// The other.
        b: String,
    },
    /// A route is malformed.
    #[error("ipam config: route {dst}: {reason}")]
    Route {
        /// The route's destination as given.
        dst: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The pool name cannot name a directory.
    #[error("ipam config: network name {0:?} is not usable as a store directory name")]
    BadName(String),
    /// A network configuration in which no `ipam` object can be found (see
    /// [`IpamConfig::from_network_json`]).
    #[error("ipam config: {0}")]
    Shape(String),
    /// The file named by `subnetFile` could not be read or is malformed.
    #[error("ipam config: subnetFile: {0}")]
    SubnetFile(super::SubnetFileError),
    /// The resolv.conf named by `resolvConf` could not be read.
    #[error("ipam config: reading resolvConf {path}: {cause}")]
    ResolvConf {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
}

// The JSON error is printed in the message, so it is not also this error's `source()`.
impl From<serde_json::Error> for ConfigError {
    fn from(e: serde_json::Error) -> Self {
        ConfigError::Json(e)
    }
}

/// One range as written in JSON (strings, validated later).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RangeConfig {
    /// CIDR the addresses come from.
    pub subnet: String,
    /// First address handed out (default: network + 1).
    #[serde(default)]
    pub range_start: Option<String>,
    /// Last address handed out (default: last host).
    #[serde(default)]
    pub range_end: Option<String>,
    /// Gateway reported with the address (default: network + 1).
    #[serde(default)]
    pub gateway: Option<String>,
}

/// A route as written in JSON.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RouteConfig {
    /// Destination CIDR.
    pub dst: String,
    /// Next hop; absent means "through the range's gateway" for the plugin to decide.
    #[serde(default)]
    pub gw: Option<String>,
}

/// host-local's `ipam` object.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConfig {
    /// `ranges: [[range, …], …]`: one address per inner list.
    #[serde(default)]
    pub ranges: Option<Vec<Vec<RangeConfig>>>,
    /// Legacy single range: subnet.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Legacy single range: first address.
    #[serde(default)]
    pub range_start: Option<String>,
    /// Legacy single range: last address.
    #[serde(default)]
    pub range_end: Option<String>,
    /// Legacy single range: gateway.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Routes handed to the container (`null` reads as none).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub routes: Vec<RouteConfig>,
    /// Where the store lives (the pool's directory is `dataDir/<network name>`); `""` reads as
    /// unset.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub data_dir: Option<PathBuf>,
    /// A resolv.conf whose nameservers, domain, search and options go into the result; `""`
    /// reads as unset. At most 64 KiB (a larger file is a [`ConfigError::ResolvConf`]).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub resolv_conf: Option<PathBuf>,
    /// `sync` (netkit's own key, default `false`): fsync every change of the store (file and
    /// directory), so allocations survive a power cut, not only the death of a process, at a
    /// cost of milliseconds per change on most disks (see
    /// [`StoreOptions::sync`](super::StoreOptions::sync)).
    #[serde(default)]
    pub sync: bool,
    /// `subnetFile` (netkit's own key): a node agent's [`SubnetFile`](super::SubnetFile)
    /// (Flannel's `subnet.env` format; `""` reads as unset). Its node subnets come first, one
    /// range set per family (a range per subnet, when the node holds several blocks), each
    /// with its first address as the gateway; when `routes` is empty,
    /// the container gets a route to each cluster network of the file through that gateway.
    /// netkit-cni also takes the file's MTU when its configuration sets none. The file is read
    /// at every ADD, so a node whose lease changed hands out addresses of its new subnet.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub subnet_file: Option<PathBuf>,
}

/// `null` as an empty list, as host-local (Go) reads it.
fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// `""` (and `null`) as unset, as host-local (Go) reads an empty string.
fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .map(PathBuf::from))
}

impl IpamConfig {
    /// Parse the `ipam` object from JSON text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Parse a configuration as users keep them: a CNI network configuration with an `ipam`
    /// key (`{"name": "podnet", "ipam": {…}}`), a conflist (the first plugin that has an
    /// `ipam` key; the network name is the list's), or a bare `ipam` object (no network name).
    /// Returns the network name, if the text has one, and the IPAM configuration.
    pub fn from_network_json(text: &str) -> Result<(Option<String>, Self), ConfigError> {
        use serde_json::Value;
        let conf: Value = serde_json::from_str(text)?;
        let obj = conf
            .as_object()
            .ok_or_else(|| ConfigError::Shape("the configuration is not a JSON object".into()))?;
        let name = match obj.get("name") {
            None => None,
            Some(Value::String(n)) => Some(n.clone()),
            Some(other) => return Err(ConfigError::Shape(format!("\"name\" is not a string: {other}"))),
        };
        let ipam = if let Some(ipam) = obj.get("ipam") {
            ipam
        } else if let Some(plugins) = obj.get("plugins") {
            let list = plugins
                .as_array()
                .ok_or_else(|| ConfigError::Shape("\"plugins\" is not a list".into()))?;
            list.iter()
                .find_map(|p| p.get("ipam"))
                .ok_or_else(|| ConfigError::Shape("no plugin of the conflist has an \"ipam\" key".into()))?
        } else {
            // A bare ipam object: its own keys, no network name.
            return Ok((None, serde_json::from_value(conf)?));
        };
        Ok((name, Self::deserialize(ipam)?))
    }

    /// Validate into a pool named `name` (the CNI network name).
    pub fn pool(&self, name: &str) -> Result<Pool, ConfigError> {
        // A node agent's subnet file first, then (as host-local) the legacy top-level range,
        // then `ranges`.
        let mut sets: Vec<Vec<RangeConfig>> = Vec::new();
        let mut routes = Vec::new();
        if let Some(path) = &self.subnet_file {
            let file = super::SubnetFile::read(path).map_err(ConfigError::SubnetFile)?;
            // One range set per family: its node subnets in the file's order, so a node with
            // several blocks hands out addresses of the first until it is full, then the next.
            for v4 in [true, false] {
                let mut set: Vec<RangeConfig> = file
                    .subnets()
                    .filter(|s| s.is_ipv4() == v4)
                    .map(|s| RangeConfig {
                        subnet: s.to_string(),
                        ..Default::default()
                    })
                    .collect();
                // Borrowed addresses: a range of one address in its lender's block.
                for b in file.borrowed.iter().filter(|b| b.is_ipv4() == v4) {
                    let block = IpNetwork::new(b.network(), b.prefix()).unwrap_or(*b);
                    set.push(RangeConfig {
                        subnet: block.to_string(),
                        range_start: Some(b.ip().to_string()),
                        range_end: Some(b.ip().to_string()),
                        gateway: None,
                    });
                }
                let Some(first) = file.subnets().find(|s| s.is_ipv4() == v4) else {
                    continue;
                };
                sets.push(set);
                if let (Some(network), true) = (file.network_of(first), self.routes.is_empty()) {
                    routes.push(PoolRoute { dst: network, gw: None });
                }
            }
        }
        if let Some(subnet) = self.subnet.as_ref().filter(|s| !s.is_empty()) {
            sets.push(vec![RangeConfig {
                subnet: subnet.clone(),
                range_start: self.range_start.clone(),
                range_end: self.range_end.clone(),
                gateway: self.gateway.clone(),
            }]);
        }
        sets.extend(self.ranges.iter().flatten().cloned());
        if sets.is_empty() {
            return Err(ConfigError::NoRanges);
        }
        let sets = sets
            .iter()
            .map(|set| RangeSet::new(set.iter().map(RangeConfig::validate).collect::<Result<_, _>>()?))
            .collect::<Result<Vec<_>, _>>()?;
        for r in &self.routes {
            routes.push(r.validate()?);
        }
        Pool::new(name, sets)?.with_routes(routes)
    }

    /// Read `resolvConf`, if set.
    pub fn dns(&self) -> Result<Option<Dns>, ConfigError> {
        self.resolv_conf.as_deref().map(Dns::from_resolv_conf).transpose()
    }
}

impl RangeConfig {
    /// Validate into an [`IpRange`].
    pub fn validate(&self) -> Result<IpRange, ConfigError> {
        let subnet: IpNetwork = self.subnet.parse().map_err(|_| ConfigError::Parse {
            field: "subnet",
            value: self.subnet.clone(),
            expected: "CIDR",
        })?;
        IpRange::new(
            subnet,
            parse_ip("rangeStart", &self.range_start)?,
            parse_ip("rangeEnd", &self.range_end)?,
            parse_ip("gateway", &self.gateway)?,
        )
    }
}

impl RouteConfig {
    fn validate(&self) -> Result<PoolRoute, ConfigError> {
        let dst: IpNetwork = self.dst.parse().map_err(|_| ConfigError::Parse {
            field: "routes.dst",
            value: self.dst.clone(),
            expected: "CIDR",
        })?;
        let gw = parse_ip("routes.gw", &self.gw)?;
        if let Some(gw) = gw {
            if gw.is_ipv4() != dst.is_ipv4() {
                return Err(ConfigError::Route {
                    dst: self.dst.clone(),
                    reason: format!("gateway {gw} is not of the destination's address family"),
                });
            }
        }
        Ok(PoolRoute { dst, gw })
    }
}

fn parse_ip(field: &'static str, value: &Option<String>) -> Result<Option<IpAddr>, ConfigError> {
    value
        .as_deref()
        .map(|v| {
            v.parse().map_err(|_| ConfigError::Parse {
                field,
                value: v.to_string(),
                expected: "IP address",
            })
        })
        .transpose()
}

/// A route that travels into allocation results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRoute {
    /// Destination.
    pub dst: IpNetwork,
    /// Next hop, if given.
    pub gw: Option<IpAddr>,
}

/// The largest `resolvConf` file read: 64 KiB.
const MAX_RESOLV_CONF: u64 = 64 * 1024;

/// DNS settings read from a resolv.conf, as host-local reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    /// `nameserver` lines.
    pub nameservers: Vec<String>,
    /// The `domain` line.
    pub domain: Option<String>,
    /// `search` domains.
    pub search: Vec<String>,
    /// `options`.
    pub options: Vec<String>,
}

impl Dns {
    /// Parse resolv.conf text (comments with `#` or `;`, unknown keywords ignored).
    pub fn parse(text: &str) -> Self {
        let mut dns = Dns::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => dns.nameservers.extend(words.next().map(str::to_string)),
                Some("domain") => dns.domain = words.next().map(str::to_string),
                Some("search") => dns.search = words.map(str::to_string).collect(),
                Some("options") => dns.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        dns
    }

    /// Read and parse a resolv.conf file of at most 64 KiB (a larger one is refused with
    /// [`ConfigError::ResolvConf`]: it is no resolv.conf).
    pub fn from_resolv_conf(path: &Path) -> Result<Self, ConfigError> {
        use std::io::Read;
        let err = |source| ConfigError::ResolvConf {
            path: path.to_path_buf(),
            cause: source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_RESOLV_CONF + 1).read_to_string(&mut text))
            .map_err(err)?;
        if text.len() as u64 > MAX_RESOLV_CONF {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("it is larger than {} KiB", MAX_RESOLV_CONF / 1024),
            )));
        }
        Ok(Dns::parse(&text))
    }
}

/// A validated pool: a name and the range sets one address each is taken from, plus the routes
/// that travel into results.
///
/// ```
/// use netkit_core::ipam::IpamConfig;
///
/// let cfg = IpamConfig::from_json(r#"{"ranges": [[{"subnet": "10.22.0.0/16"}], [{"subnet": "fd22::/64"}]],
///                                     "routes": [{"dst": "0.0.0.0/0"}]}"#)?;
/// let pool = cfg.pool("podnet")?;
/// assert_eq!(pool.sets().len(), 2); // one IPv4 and one IPv6 address per owner
/// # Ok::<(), netkit_core::ipam::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    name: String,
    sets: Vec<RangeSet>,
    routes: Vec<PoolRoute>,
}

impl Pool {
    /// A pool of these range sets. Errors when there are none, when two sets overlap, or when
    /// the name cannot name a directory (empty, `.`/`..`, a `/`, a NUL, or over 200 bytes).
    pub fn new(name: &str, sets: Vec<RangeSet>) -> Result<Self, ConfigError> {
        if name.is_empty() || name == "." || name == ".." || name.len() > 200 || name.contains(['/', '\0']) {
            // A huge name must not make a huge message.
            let shown: String = name.chars().take(64).collect();
            let shown = if shown.len() < name.len() {
                format!("{shown}… ({} bytes)", name.len())
            } else {
                shown
            };
            return Err(ConfigError::BadName(shown));
        }
        if sets.is_empty() {
            return Err(ConfigError::NoRanges);
        }
        for (i, s) in sets.iter().enumerate() {
            if let Some(o) = sets[..i].iter().find(|o| o.overlaps(s)) {
                return Err(ConfigError::Overlap {
                    a: o.to_string(),
                    b: s.to_string(),
                });
            }
        }
        Ok(Self {
            name: name.to_string(),
            sets,
            routes: Vec::new(),
        })
    }

    /// Attach routes that travel into results.
    pub fn with_routes(mut self, routes: Vec<PoolRoute>) -> Result<Self, ConfigError> {
        self.routes = routes;
        Ok(self)
    }

    /// The pool's name (the CNI network name; names the store directory).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The range sets, one address from each.
    pub fn sets(&self) -> &[RangeSet] {
        &self.sets
    }

    /// Routes for results.
    pub fn routes(&self) -> &[PoolRoute] {
        &self.routes
    }

    /// True when `ip` is the network address (or the IPv4 broadcast address) of one of the
    /// pool's subnets.
    pub fn is_subnet_boundary(&self, ip: IpAddr) -> bool {
        self.sets.iter().flat_map(|s| s.ranges()).any(|r| {
            let net = r.subnet();
            ip == net.network() || (net.is_ipv4() && ip == net.broadcast())
        })
    }

    /// The index of the set `ip` can be handed out from.
    pub fn set_of(&self, ip: IpAddr) -> Option<usize> {
        self.sets.iter().position(|s| s.range_of(ip).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_network_config_shapes() {
        let ipam = r#"{"ranges": [[{"subnet": "10.0.0.0/24"}]]}"#;
        // IpamConfig has no PartialEq: compare what it holds.
        let want = format!("{:?}", IpamConfig::from_json(ipam).unwrap());
        let (n, c) = IpamConfig::from_network_json(&format!(r#"{{"name": "net", "ipam": {ipam}}}"#)).unwrap();
        assert_eq!((n.as_deref(), format!("{c:?}")), (Some("net"), want.clone()));
        let list = format!(r#"{{"name": "l", "plugins": [{{"type": "x"}}, {{"ipam": {ipam}}}]}}"#);
        let (n, c) = IpamConfig::from_network_json(&list).unwrap();
        assert_eq!((n.as_deref(), format!("{c:?}")), (Some("l"), want.clone()));
        let (n, c) = IpamConfig::from_network_json(ipam).unwrap();
        assert_eq!((n, format!("{c:?}")), (None, want));
        for bad in [
            r#"{"plugins": [{"type": "x"}]}"#,
            "[1]",
            r#"{"name": 3, "ipam": {}}"#,
            "{",
        ] {
            assert!(IpamConfig::from_network_json(bad).is_err(), "{bad}");
        }
    }

    fn pool(json: &str) -> Result<Pool, ConfigError> {
        IpamConfig::from_json(json)?.pool("net")
    }

    #[test]
    fn legacy_and_ranges_forms() {
        let a = pool(r#"{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "unknownKey": 1}"#).unwrap();
        assert_eq!(a.sets()[0].ranges()[0].start().to_string(), "10.1.0.10");
        let b = pool(r#"{"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.2.0.0/24"}]]}"#).unwrap();
        assert_eq!(b.sets()[0].ranges().len(), 2);
    }

    #[test]
    fn legacy_beside_ranges_and_go_style_empties() {
        let p = pool(
            r#"{"subnet": "10.9.0.0/24", "ranges": [[{"subnet": "fd09::/64"}]], "routes": null,
                         "dataDir": "", "resolvConf": ""}"#,
        )
        .unwrap();
        assert_eq!(p.sets().len(), 2, "host-local puts the legacy range first");
        assert!(p.sets()[0].is_ipv4() && !p.sets()[1].is_ipv4());
        let cfg = IpamConfig::from_json(r#"{"subnet": "10.9.0.0/24", "dataDir": "", "resolvConf": ""}"#).unwrap();
        assert_eq!((cfg.data_dir, cfg.resolv_conf), (None, None));
    }

    #[test]
    fn bad_input_is_named() {
        let cases = [
            (r#"{"ranges": [[{"subnet": "10.1.0.0/33"}]]}"#, "not a valid CIDR"),
            (r#"{"ranges": [[{"subnet": "10.1.0.5/24"}]]}"#, "host bits"),
            (
                r#"{"ranges": [[{"subnet": "10.1.0.0/24", "gateway": "10.2.0.1"}]]}"#,
                "outside the subnet",
            ),
            (
                r#"{"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.100", "rangeEnd": "10.1.0.50"}]]}"#,
                "after rangeEnd",
            ),
            (
                r#"{"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]}"#,
                "overlap",
            ),
            (
                r#"{"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}"#,
                "mixes",
            ),
            (r#"{"ranges": [[]]}"#, "empty"),
            (r#"{"routes": []}"#, "no ranges"),
            (r#"{"ranges": [[{"subnet": "10.1.0.0/31"}]]}"#, "too small"),
            (
                r#"{"ranges": [[{"subnet": "10.1.0.0/24", "rangeEnd": "10.1.0.255"}]]}"#,
                "broadcast",
            ),
            (
                r#"{"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "fd00::1"}]]}"#,
                "family",
            ),
            (
                r#"{"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"dst": "x"}]}"#,
                "routes.dst",
            ),
            (r#"{"ranges": "#, "JSON"),
        ];
        for (json, want) in cases {
            let err = pool(json).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn resolv_conf() {
        let d = Dns::parse("# c\nnameserver 1.1.1.1\nnameserver fd00::53\nsearch a.b c.d\noptions ndots:5\ndomain x\n");
        assert_eq!(d.nameservers, ["1.1.1.1", "fd00::53"]);
        assert_eq!(d.search, ["a.b", "c.d"]);
        assert_eq!(d.options, ["ndots:5"]);
        assert_eq!(d.domain.as_deref(), Some("x"));
    }

    #[test]
    fn resolv_conf_larger_than_64_kib_is_a_config_error() {
        let d = tempfile::tempdir().unwrap();
        let ok = d.path().join("ok.conf");
        let mut text = "nameserver 192.0.2.53\n".to_string();
        text.push_str(&"# padding\n".repeat((64 * 1024 - text.len()) / 10));
        assert!(text.len() <= 64 * 1024);
        std::fs::write(&ok, &text).unwrap();
        assert_eq!(Dns::from_resolv_conf(&ok).unwrap().nameservers, ["192.0.2.53"]);
        let big = d.path().join("big.conf");
        std::fs::write(&big, "#".repeat(64 * 1024 + 1)).unwrap();
        let err = Dns::from_resolv_conf(&big).unwrap_err();
        assert!(matches!(err, ConfigError::ResolvConf { .. }), "{err:?}");
        assert!(err.to_string().contains("64 KiB"), "{err}");
        let cfg = IpamConfig::from_json(&format!(
            r#"{{"subnet": "10.9.0.0/24", "resolvConf": "{}"}}"#,
            big.display()
        ))
        .unwrap();
        assert!(cfg.dns().is_err());
    }

    #[test]
    fn sync_key() {
        let on = IpamConfig::from_json(r#"{"subnet": "10.9.0.0/24", "sync": true}"#).unwrap();
        let off = IpamConfig::from_json(r#"{"subnet": "10.9.0.0/24"}"#).unwrap();
        assert!(on.sync && !off.sync);
        assert!(IpamConfig::from_json(r#"{"subnet": "10.9.0.0/24", "sync": "yes"}"#).is_err());
    }

    #[test]
    fn subnet_file_gives_the_node_subnet_and_a_route_to_the_network() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subnet.env");
        let mut file =
            super::super::SubnetFile::new("10.244.0.0/16".parse().unwrap(), "10.244.5.0/24".parse().unwrap(), 1450);
        file.write(&path).unwrap();
        let json = |extra: &str| format!(r#"{{"subnetFile": {:?}{extra}}}"#, path.display().to_string());
        let p = IpamConfig::from_json(&json("")).unwrap().pool("net").unwrap();
        assert_eq!(p.sets().len(), 1);
        assert!(p.sets()[0].ranges()[0].contains("10.244.5.2".parse().unwrap()));
        assert_eq!(
            p.sets()[0].ranges()[0].gateway(),
            "10.244.5.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            p.routes(),
            [PoolRoute {
                dst: "10.244.0.0/16".parse().unwrap(),
                gw: None
            }]
        );
        // A node with several blocks: one IPv4 range set, a range per block, the first first.
        file.extra_subnets = vec!["10.244.9.0/24".parse().unwrap()];
        file.write(&path).unwrap();
        let p = IpamConfig::from_json(&json("")).unwrap().pool("net").unwrap();
        assert_eq!(p.sets().len(), 1);
        let ranges: Vec<String> = p.sets()[0].ranges().iter().map(|r| r.subnet().to_string()).collect();
        assert_eq!(ranges, ["10.244.5.0/24", "10.244.9.0/24"]);
        assert_eq!(p.routes().len(), 1, "one route to the network, not one per block");
        // A borrowed address: a one-address range in its lender's block, after the blocks.
        file.borrowed = vec!["10.244.77.70/24".parse().unwrap()];
        file.write(&path).unwrap();
        let p = IpamConfig::from_json(&json("")).unwrap().pool("net").unwrap();
        let r = &p.sets()[0].ranges()[2];
        assert_eq!(
            (r.subnet().to_string(), r.start(), r.end()),
            (
                "10.244.77.0/24".to_string(),
                "10.244.77.70".parse::<IpAddr>().unwrap(),
                "10.244.77.70".parse::<IpAddr>().unwrap()
            )
        );
        file.borrowed.clear();
        file.extra_subnets.clear();
        file.write(&path).unwrap();
        // Routes given in the configuration replace the route to the network; ranges add sets.
        let p = IpamConfig::from_json(&json(
            r#", "routes": [{"dst": "0.0.0.0/0"}], "ranges": [[{"subnet": "fd00:5::/64"}]]"#,
        ))
        .unwrap()
        .pool("net")
        .unwrap();
        assert_eq!(p.sets().len(), 2);
        assert_eq!(p.routes().len(), 1);
        assert_eq!(p.routes()[0].dst, "0.0.0.0/0".parse::<IpNetwork>().unwrap());
        // The file is read each time: a new lease gives the new subnet.
        file.subnet = Some("10.244.9.0/24".parse().unwrap());
        file.write(&path).unwrap();
        let p = IpamConfig::from_json(&json("")).unwrap().pool("net").unwrap();
        assert!(p.sets()[0].ranges()[0].contains("10.244.9.2".parse().unwrap()));
        std::fs::remove_file(&path).unwrap();
        let e = IpamConfig::from_json(&json("")).unwrap().pool("net").unwrap_err();
        assert!(matches!(e, ConfigError::SubnetFile(_)), "{e}");
        assert!(e.to_string().contains("subnet.env"), "{e}");
    }
}
