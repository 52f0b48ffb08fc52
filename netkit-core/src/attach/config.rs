//! The network configuration: the `netkit-cni` conflist entry (the JSON the plugin reads on
//! stdin): the reference bridge plugin's keys, netkit's own, and the runtime's capabilities.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::firewall::{Driver, PortMapping, Protocol};
use crate::tc::TokenBucket;
use crate::MacAddr;
use serde::Deserialize;
use serde_json::Value;

use super::delegate::IpamStep;
use super::error::{bad_config as bad, AttachError};
use super::ipam::IpamNetwork;
use super::result::AttachResult;
use super::version::Version;

/// How containers are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A veth per container on a Linux bridge (the reference bridge plugin's model).
    Bridge,
    /// A veth per container, no bridge: /32 host routes and proxy ARP (Calico's model).
    Routed,
}

/// One entry of the `portMappings` capability.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePortMapping {
    /// Host port.
    pub host_port: i64,
    /// Container port.
    pub container_port: i64,
    /// "tcp" (default), "udp" or "sctp".
    #[serde(default)]
    pub protocol: Option<String>,
    /// Host address (empty: every address).
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// The raw keys, as JSON has them (unknown keys are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    force_address: bool,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    #[serde(default)]
    vlan: Option<u32>,
    #[serde(default)]
    enabledad: bool,
    #[serde(default)]
    firewall_backend: Option<String>,
    #[serde(default)]
    firewall_state_dir: Option<PathBuf>,
    #[serde(default)]
    firewall_name: Option<String>,
    #[serde(default)]
    wait_link_free: bool,
    #[serde(default, rename = "ipv6LinkLocal")]
    ipv6_link_local: bool,
    #[serde(default)]
    cluster_store: Option<String>,
    #[serde(default)]
    cluster_store_prefix: Option<String>,
    #[serde(default)]
    node_name: Option<String>,
}

/// A validated network configuration (see [`NetworkConfig::parse`]).
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// `cniVersion`.
    pub version: Version,
    /// `name`.
    pub name: String,
    /// `mode`: "bridge" (default) or "routed".
    pub mode: Mode,
    /// `bridge` (default `cni0`).
    pub bridge: String,
    /// `isGateway`: give the bridge the gateway address (implied by `isDefaultGateway`).
    pub is_gateway: bool,
    /// `isDefaultGateway`: default route in the container through the bridge.
    pub is_default_gateway: bool,
    /// `forceAddress`: with `isGateway`, replace any other address the bridge has in the
    /// gateway's subnet (see `bridge::gateway`); without it the gateway is added beside them.
    pub force_address: bool,
    /// `ipMasq`: masquerade the container's traffic leaving its network.
    pub ip_masq: bool,
    /// `mtu` of the bridge and veths.
    pub mtu: Option<u32>,
    /// `hairpinMode` on the bridge port.
    pub hairpin_mode: bool,
    /// `promiscMode` on the bridge.
    pub promisc_mode: bool,
    /// `vlan` tag of the port (needs bridge VLAN filtering).
    pub vlan: Option<u16>,
    /// `enabledad`: keep IPv6 duplicate address detection on in the container.
    pub enable_dad: bool,
    /// `ipam.type`.
    pub ipam_type: String,
    /// Port mappings from `runtimeConfig.portMappings`.
    pub port_mappings: Vec<RuntimePortMapping>,
    /// `runtimeConfig.mac`.
    pub mac: Option<MacAddr>,
    /// `runtimeConfig.bandwidth` (the `bandwidth` capability).
    pub bandwidth: Bandwidth,
    /// `firewallBackend`: "nftables" or "iptables" (default: chosen automatically).
    pub firewall_backend: Option<Driver>,
    /// `firewallStateDir` (default: per namespace under /run/netkit/firewall).
    pub firewall_state_dir: Option<PathBuf>,
    /// `firewallName`: the nftables table (`inet NAME`) and iptables chain prefix (upper-cased)
    /// the rules live in; 1–8 letters, digits or `_`, default `netkit`. The kernel objects of
    /// one name belong to one state directory: networks that keep their firewall state in
    /// different `firewallStateDir`s need different names (the firewall refuses to share).
    pub firewall_name: Option<String>,
    /// `waitLinkFree`: DEL waits until the kernel has freed the veth pair (15–25 ms more) and
    /// for nf_tables' cleanup, and starts no detached process. By default DEL returns once the
    /// pair has left both namespaces and leaves the kernel's final waits to detached processes
    /// (see `Handle::link_del_detached`, `FirewallOptions::detached_close`).
    pub wait_link_free: bool,
    /// `ipv6LinkLocal`: in bridge mode, give a container that gets no IPv6 address the
    /// kernel's IPv6 link-local address anyway. Default off: no link-local, so the container
    /// sends no IPv6 chatter the bridge would flood to every port.
    pub ipv6_link_local: bool,
    /// The whole configuration (for IPAM and `prevResult`).
    pub raw: Value,
    /// The IPAM step `ipam.type` names: netkit's allocator in-process, or a delegated plugin.
    pub ipam: IpamStep,
    /// `clusterStore` (`etcd=URL[,URL…]` or `file=DIR`): record each pod there (its addresses,
    /// node, host-side interface and labels) for network policy; `None`: record nothing.
    pub cluster_store: Option<crate::store::StoreLocation>,
    /// `clusterStorePrefix`: etcd's key prefix of the cluster objects (default
    /// [`DEFAULT_ETCD_PREFIX`](crate::store::DEFAULT_ETCD_PREFIX)).
    pub cluster_store_prefix: String,
    /// `nodeName`: this node's name in the cluster store (default: the host name).
    pub node_name: Option<String>,
    /// `runtimeConfig.labels` (the `labels` capability): the pod's labels, recorded with it.
    pub labels: crate::policy::Labels,
}

/// Rate limits of an attachment (CNI's `bandwidth` capability: rates in bit/s, bursts in bits).
/// Ingress is traffic to the container, egress traffic from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bandwidth {
    /// `ingressRate` / `ingressBurst`.
    pub ingress: Option<TokenBucket>,
    /// `egressRate` / `egressBurst`.
    pub egress: Option<TokenBucket>,
}

impl Bandwidth {
    /// `runtimeConfig.bandwidth`: a rate needs a burst and a burst a rate (as the reference
    /// bandwidth plugin has it); zero or absent means no limit that way.
    fn parse(v: &Value) -> Result<Self, AttachError> {
        let obj = v
            .as_object()
            .ok_or_else(|| bad("runtimeConfig.bandwidth must be an object"))?;
        let num = |k: &str| -> Result<u64, AttachError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(0),
                Some(n) => n
                    .as_u64()
                    .ok_or_else(|| bad(format!("runtimeConfig.bandwidth.{k} must be a non-negative integer"))),
            }
        };
        let bucket = |dir: &str| -> Result<Option<TokenBucket>, AttachError> {
            let (rate, burst) = (num(&format!("{dir}Rate"))?, num(&format!("{dir}Burst"))?);
            match (rate, burst) {
                (0, 0) => Ok(None),
                (0, _) => Err(bad(format!("runtimeConfig.bandwidth: {dir}Burst needs {dir}Rate"))),
                (_, 0) => Err(bad(format!("runtimeConfig.bandwidth: {dir}Rate needs {dir}Burst"))),
                (r, b) => TokenBucket::bits(r, b)
                    .map(Some)
                    .map_err(|e| bad(format!("runtimeConfig.bandwidth ({dir}): {e}"))),
            }
        };
        Ok(Self {
            ingress: bucket("ingress")?,
            egress: bucket("egress")?,
        })
    }

    /// True when no limit is asked for.
    pub fn is_none(&self) -> bool {
        self.ingress.is_none() && self.egress.is_none()
    }
}

/// The most port mappings one attachment may ask for (each is a few kernel objects and a few
/// bytes of state; real pods have a handful).
pub const MAX_PORT_MAPPINGS: usize = 1024;

impl NetworkConfig {
    /// Parse a configuration (the `netkit-cni` plugin's stdin; at most
    /// [`MAX_CONFIG_BYTES`](super::MAX_CONFIG_BYTES)). Not JSON or too large:
    /// [`ErrorKind::Decode`](super::ErrorKind::Decode); unsupported `cniVersion`:
    /// [`ErrorKind::IncompatibleVersion`](super::ErrorKind::IncompatibleVersion); bad values
    /// (and, with `ipam.type` `netkit-ipam`, a bad `ipam` object):
    /// [`ErrorKind::InvalidConfig`](super::ErrorKind::InvalidConfig). Unknown keys are ignored.
    pub fn parse(input: &[u8]) -> Result<Self, AttachError> {
        let net = IpamNetwork::parse_without_ipam(input)?;
        let raw: Raw =
            serde_json::from_value(net.raw.clone()).map_err(|e| bad(format!("network configuration: {e}")))?;
        let mode = match raw.mode.as_deref() {
            None | Some("bridge") => Mode::Bridge,
            Some("routed") => Mode::Routed,
            Some(m) => return Err(bad(format!("mode {m:?}: \"bridge\" or \"routed\""))),
        };
        let bridge = raw.bridge.unwrap_or_else(|| "cni0".into());
        crate::ifname::check(&bridge).map_err(|e| bad(format!("bridge: {e}")))?;
        if let Some(n) = &raw.firewall_name {
            if n.is_empty() || n.len() > 8 || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(format!(
                    "firewallName {:?}: 1-8 letters, digits or '_'",
                    n.chars().take(32).collect::<String>()
                )));
            }
        }
        if let Some(m) = raw.mtu {
            if !(68..=65535).contains(&m) {
                return Err(bad(format!("mtu {m} is outside 68-65535")));
            }
        }
        let vlan = match raw.vlan {
            None | Some(0) => None,
            Some(v) if v < 4095 => Some(v as u16),
            Some(v) => return Err(bad(format!("vlan {v} is outside 0-4094"))),
        };
        let ipam_type = net.raw["ipam"]["type"]
            .as_str()
            .ok_or_else(|| bad("ipam.type is missing"))?
            .to_string();
        let rc = &net.raw["runtimeConfig"];
        let port_mappings: Vec<RuntimePortMapping> = match rc.get("portMappings") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => {
                if v.as_array().is_some_and(|a| a.len() > MAX_PORT_MAPPINGS) {
                    return Err(bad(format!(
                        "runtimeConfig.portMappings: more than {MAX_PORT_MAPPINGS} mappings"
                    )));
                }
                serde_json::from_value(v.clone()).map_err(|e| bad(format!("runtimeConfig.portMappings: {e}")))?
            }
        };
        let mac = match rc.get("mac").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(m) => Some(
                m.parse()
                    .map_err(|_| bad(format!("runtimeConfig.mac {m:?} is not a MAC address")))?,
            ),
            None => None,
        };
        let bandwidth = match rc.get("bandwidth").filter(|v| !v.is_null()) {
            Some(v) => Bandwidth::parse(v)?,
            None => Bandwidth::default(),
        };
        let firewall_backend = match raw.firewall_backend.as_deref() {
            None => None,
            Some("nftables") => Some(Driver::Nftables),
            Some("iptables") => Some(Driver::Iptables),
            Some(b) => return Err(bad(format!("firewallBackend {b:?}: \"nftables\" or \"iptables\""))),
        };
        let cluster_store = match raw.cluster_store.as_deref() {
            None => None,
            Some(l) => Some(
                l.parse::<crate::store::StoreLocation>()
                    .map_err(|e| bad(format!("clusterStore {l:?}: {e}")))?,
            ),
        };
        let labels: crate::policy::Labels = match rc.get("labels").filter(|v| !v.is_null()) {
            None => Default::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| bad(format!("runtimeConfig.labels: an object of strings: {e}")))?,
        };
        // Read last, as the plugin always did: every other key is refused first.
        let ipam = IpamStep::of(&ipam_type, input)?;
        Ok(NetworkConfig {
            version: net.version,
            name: net.name,
            mode,
            bridge,
            is_gateway: raw.is_gateway || raw.is_default_gateway,
            is_default_gateway: raw.is_default_gateway,
            force_address: raw.force_address,
            ip_masq: raw.ip_masq,
            mtu: raw.mtu,
            hairpin_mode: raw.hairpin_mode,
            promisc_mode: raw.promisc_mode,
            vlan,
            enable_dad: raw.enabledad,
            ipam_type,
            port_mappings,
            mac,
            bandwidth,
            firewall_backend,
            firewall_state_dir: raw.firewall_state_dir,
            firewall_name: raw.firewall_name,
            wait_link_free: raw.wait_link_free,
            ipv6_link_local: raw.ipv6_link_local,
            cluster_store,
            cluster_store_prefix: raw
                .cluster_store_prefix
                .unwrap_or_else(|| crate::store::DEFAULT_ETCD_PREFIX.to_string()),
            node_name: raw.node_name,
            labels,
            raw: net.raw,
            ipam,
        })
    }

    /// The MTU of the bridge and veths: `mtu`, or else, when netkit-ipam reads a node agent's
    /// subnet file (`ipam.subnetFile`), the file's MTU (the overlay's: the underlay's minus the
    /// backend's encapsulation). Read at each ADD, as the addresses are.
    pub(crate) fn link_mtu(&self) -> Result<Option<u32>, AttachError> {
        if self.mtu.is_some() {
            return Ok(self.mtu);
        }
        match &self.ipam {
            IpamStep::InProcess(net) => match &net.ipam.subnet_file {
                Some(path) => crate::ipam::SubnetFile::read(path)
                    .map(|f| Some(f.mtu))
                    .map_err(|e| bad(format!("ipam.subnetFile: {e}"))),
                None => Ok(None),
            },
            IpamStep::Delegate { .. } => Ok(None),
        }
    }

    /// This configuration with `prevResult` set to `result` (in its own version), for
    /// [`check`](super::check()): what a runtime embedding the attach code does with the result
    /// of [`add`](super::add()) where a CNI runtime writes `prevResult` into the configuration.
    pub fn with_prev_result(mut self, result: &AttachResult) -> Self {
        let prev = result.to_json();
        self.raw["prevResult"] = prev.clone();
        match &mut self.ipam {
            IpamStep::InProcess(net) => net.raw["prevResult"] = prev,
            IpamStep::Delegate { config, .. } => {
                if let Ok(bytes) = serde_json::to_vec(&self.raw) {
                    *config = bytes;
                }
            }
        }
        self
    }

    /// True when the network uses the firewall: `ipMasq`, or port mappings (asked for, or the
    /// capability declared). STATUS checks the firewall only then, and an attachment of a
    /// network without it never needs nftables or iptables.
    pub fn needs_firewall(&self) -> bool {
        self.ip_masq || !self.port_mappings.is_empty() || self.raw["capabilities"]["portMappings"] == Value::Bool(true)
    }

    /// The port mappings for a container with these addresses: each mapping goes to the
    /// container address of its host address's family (both families when it names none).
    pub fn mappings_for(&self, ips: &[IpAddr]) -> Result<Vec<PortMapping>, AttachError> {
        let mut out = Vec::new();
        for pm in &self.port_mappings {
            let port = |what: &str, p: i64| -> Result<u16, AttachError> {
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad(format!("portMappings: {what} {p} is not a port (1-65535)")))
            };
            let (host, ctr) = (
                port("hostPort", pm.host_port)?,
                port("containerPort", pm.container_port)?,
            );
            let proto: Protocol = pm
                .protocol
                .as_deref()
                .unwrap_or("tcp")
                .parse()
                .map_err(|e: crate::firewall::FirewallError| bad(format!("portMappings: {e}")))?;
            let host_ip: Option<IpAddr> = match pm.host_ip.as_deref().filter(|s| !s.is_empty()) {
                Some(h) => Some(
                    h.parse()
                        .map_err(|_| bad(format!("portMappings: hostIP {h:?} is not an address")))?,
                ),
                None => None,
            };
            for ip in ips {
                if host_ip.is_some_and(|h| h.is_ipv4() != ip.is_ipv4()) {
                    continue;
                }
                let mut m = PortMapping::new(proto, host, *ip, ctr);
                if let Some(h) = host_ip {
                    m = m.host_ip(h);
                }
                out.push(m);
            }
        }
        Ok(out)
    }
}
