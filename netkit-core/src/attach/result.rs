//! CNI-shaped results: what ADD made (interfaces, addresses, routes, DNS), what an IPAM step
//! hands out, and what a `prevResult` says; written in any supported CNI version and read from
//! any.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{json, Map, Value};

use super::error::{AttachError, ErrorKind};
use super::version::Version;

/// One address of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpResult {
    /// Address with prefix length.
    pub address: IpNetwork,
    /// Gateway, if any.
    pub gateway: Option<IpAddr>,
    /// Index into the result's interfaces, if the plugin reports interfaces.
    pub interface: Option<usize>,
}

/// One route of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteResult {
    /// Destination.
    pub dst: IpNetwork,
    /// Next hop.
    pub gw: Option<IpAddr>,
}

/// DNS settings of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsResult {
    /// Name servers.
    pub nameservers: Vec<String>,
    /// Local domain.
    pub domain: Option<String>,
    /// Search domains.
    pub search: Vec<String>,
    /// Resolver options.
    pub options: Vec<String>,
}

/// One interface of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceResult {
    /// Name.
    pub name: String,
    /// MAC address.
    pub mac: Option<String>,
    /// The netns path, for interfaces inside the container.
    pub sandbox: Option<String>,
}

/// A CNI result: what a plugin returns (an IPAM plugin leaves `interfaces` empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces (main plugins).
    pub interfaces: Vec<InterfaceResult>,
    /// Addresses.
    pub ips: Vec<IpResult>,
    /// Routes.
    pub routes: Vec<RouteResult>,
    /// DNS.
    pub dns: DnsResult,
}

impl CniResult {
    /// The result as JSON in `version` (0.3.x/0.4.0 add `"version": "4"|"6"` to each address).
    pub fn to_json(&self, version: Version) -> Value {
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut o = Map::new();
                if version.has_ip_version_field() {
                    o.insert("version".into(), json!(if ip.address.is_ipv4() { "4" } else { "6" }));
                }
                o.insert("address".into(), json!(ip.address.to_string()));
                if let Some(gw) = ip.gateway {
                    o.insert("gateway".into(), json!(gw.to_string()));
                }
                if let Some(i) = ip.interface {
                    o.insert("interface".into(), json!(i));
                }
                Value::Object(o)
            })
            .collect();
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version.to_string()));
        if !self.interfaces.is_empty() {
            let ifs: Vec<Value> = self
                .interfaces
                .iter()
                .map(|i| {
                    let mut o = Map::new();
                    o.insert("name".into(), json!(i.name));
                    if let Some(m) = &i.mac {
                        o.insert("mac".into(), json!(m));
                    }
                    if let Some(s) = &i.sandbox {
                        o.insert("sandbox".into(), json!(s));
                    }
                    Value::Object(o)
                })
                .collect();
            out.insert("interfaces".into(), Value::Array(ifs));
        }
        out.insert("ips".into(), Value::Array(ips));
        if !self.routes.is_empty() {
            let routes: Vec<Value> = self
                .routes
                .iter()
                .map(|r| match r.gw {
                    Some(gw) => json!({"dst": r.dst.to_string(), "gw": gw.to_string()}),
                    None => json!({"dst": r.dst.to_string()}),
                })
                .collect();
            out.insert("routes".into(), Value::Array(routes));
        }
        let d = &self.dns;
        let mut dns = Map::new();
        if !d.nameservers.is_empty() {
            dns.insert("nameservers".into(), json!(d.nameservers));
        }
        if let Some(domain) = &d.domain {
            dns.insert("domain".into(), json!(domain));
        }
        if !d.search.is_empty() {
            dns.insert("search".into(), json!(d.search));
        }
        if !d.options.is_empty() {
            dns.insert("options".into(), json!(d.options));
        }
        out.insert("dns".into(), Value::Object(dns));
        Value::Object(out)
    }

    /// Read a result (a `prevResult`, or a delegated IPAM plugin's answer), whatever its version.
    pub fn from_json(value: &Value) -> Result<Self, AttachError> {
        let bad = |what: String| AttachError::new(ErrorKind::Decode, format!("prevResult: {what}"));
        let mut out = CniResult::default();
        for ip in value.get("ips").and_then(Value::as_array).into_iter().flatten() {
            let addr = ip
                .get("address")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("an ip has no address".into()))?;
            let address: IpNetwork = addr.parse().map_err(|_| bad(format!("bad address {addr:?}")))?;
            let gateway = match ip.get("gateway").and_then(Value::as_str) {
                Some(g) => Some(g.parse().map_err(|_| bad(format!("bad gateway {g:?}")))?),
                None => None,
            };
            let interface = ip.get("interface").and_then(Value::as_u64).map(|i| i as usize);
            out.ips.push(IpResult {
                address,
                gateway,
                interface,
            });
        }
        for i in value.get("interfaces").and_then(Value::as_array).into_iter().flatten() {
            let text = |k: &str| i.get(k).and_then(Value::as_str).map(str::to_string);
            out.interfaces.push(InterfaceResult {
                name: text("name").ok_or_else(|| bad("an interface has no name".into()))?,
                mac: text("mac"),
                sandbox: text("sandbox"),
            });
        }
        for r in value.get("routes").and_then(Value::as_array).into_iter().flatten() {
            let dst = r
                .get("dst")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a route has no dst".into()))?;
            let gw = match r.get("gw").and_then(Value::as_str) {
                Some(g) => Some(g.parse().map_err(|_| bad(format!("bad route gw {g:?}")))?),
                None => None,
            };
            out.routes.push(RouteResult {
                dst: dst.parse().map_err(|_| bad(format!("bad route dst {dst:?}")))?,
                gw,
            });
        }
        if let Some(d) = value.get("dns") {
            let list = |k: &str| -> Vec<String> {
                d.get(k)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default()
            };
            out.dns = DnsResult {
                nameservers: list("nameservers"),
                domain: d.get("domain").and_then(Value::as_str).map(str::to_string),
                search: list("search"),
                options: list("options"),
            };
        }
        Ok(out)
    }
}

/// What [`add`](super::add()) returns: the result in the network configuration's `cniVersion`.
/// It serializes (serde) to the CNI result JSON a plugin prints, e.g.
/// `{"cniVersion": "1.1.0", "interfaces": [...], "ips": [...], "routes": [...], "dns": {}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachResult {
    /// The version the result is written in (the configuration's `cniVersion`).
    pub version: Version,
    /// The bridge (bridge mode), the host end and the container interface (`sandbox` set),
    /// the addresses (each with the container interface's index), routes and DNS.
    pub result: CniResult,
}

impl AttachResult {
    /// The result as JSON (see [`CniResult::to_json`]).
    pub fn to_json(&self) -> Value {
        self.result.to_json(self.version)
    }
}

impl serde::Serialize for AttachResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_field_only_before_1_0() {
        let r = CniResult {
            ips: vec![IpResult {
                address: "10.0.0.2/24".parse().unwrap(),
                gateway: Some("10.0.0.1".parse().unwrap()),
                interface: None,
            }],
            ..Default::default()
        };
        let old = r.to_json(Version::parse("0.3.1").unwrap());
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["cniVersion"], "0.3.1");
        let new = r.to_json(Version::parse("1.1.0").unwrap());
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(CniResult::from_json(&new).unwrap(), r);
    }
}
