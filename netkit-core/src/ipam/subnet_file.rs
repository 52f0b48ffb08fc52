//! The node's subnet file: what a node agent tells the CNI plugin about its node (the cluster
//! network, this node's subnet, the MTU pods must use, whether to masquerade).
//!
//! The format is Flannel's `subnet.env` (shell-style `KEY=VALUE` lines), so tools written for
//! Flannel read netkit's file and netkit-cni reads Flannel's:
//!
//! ```text
//! FLANNEL_NETWORK=10.244.0.0/16
//! FLANNEL_SUBNET=10.244.1.1/24
//! FLANNEL_MTU=1450
//! FLANNEL_IPMASQ=false
//! ```
//!
//! `FLANNEL_SUBNET` is the node's subnet written as its first address (the pods' gateway, on
//! the node's bridge) with the subnet's prefix length, as Flannel writes it. IPv6 uses
//! `FLANNEL_IPV6_NETWORK` and `FLANNEL_IPV6_SUBNET`; a file may have either family or both.
//! Unknown keys, blank lines and `#` comments are ignored when reading.
//!
//! A node that holds more than one subnet (Calico's block affinity: the agent claims another
//! block when its blocks fill up) lists the others in netkit's own key, which Flannel's tools
//! ignore: `NETKIT_EXTRA_SUBNETS=10.244.1.64/26,10.244.7.0/26` (network addresses, comma
//! separated, each inside its family's network). The CNI plugin's IPAM hands out addresses of
//! all of them, the first subnet first. Single addresses borrowed from other nodes' blocks
//! (when the pool has no block left) follow in `NETKIT_BORROWED=10.244.3.70/26,…`: each address
//! with its lender's block's prefix length.
//!
//! netkit-cni reads the file when its IPAM configuration names it (`"ipam": {"type":
//! "netkit-ipam", "subnetFile": "/run/netkit/subnet.env"}`): pods get addresses from the
//! node's subnet, a route to the cluster network, and the file's MTU (see
//! [`IpamConfig::subnet_file`](super::IpamConfig::subnet_file)).
//!
//! ```
//! use netkit_core::ipam::SubnetFile;
//! let f = SubnetFile::new("10.244.0.0/16".parse()?, "10.244.1.0/24".parse()?, 1450);
//! let text = f.to_env();
//! assert!(text.contains("FLANNEL_SUBNET=10.244.1.1/24"));
//! assert_eq!(SubnetFile::parse(&text)?, f);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;

/// The largest subnet file read (a real one is about 100 bytes).
const MAX_SIZE: u64 = 64 * 1024;

/// A failure to read or write a subnet file, naming the file or the line.
#[derive(Debug, thiserror::Error)]
pub enum SubnetFileError {
    /// The file could not be read or written.
    #[error("subnet file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// A value is malformed, or a key the file needs is missing.
    #[error("subnet file{}: {reason}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Invalid {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
}

/// One node's subnet file (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetFile {
    /// The cluster's IPv4 network (`FLANNEL_NETWORK`).
    pub network: Option<IpNetwork>,
    /// This node's IPv4 subnet (`FLANNEL_SUBNET`, as its network address).
    pub subnet: Option<IpNetwork>,
    /// The cluster's IPv6 network (`FLANNEL_IPV6_NETWORK`).
    pub ipv6_network: Option<IpNetwork>,
    /// This node's IPv6 subnet (`FLANNEL_IPV6_SUBNET`).
    pub ipv6_subnet: Option<IpNetwork>,
    /// The MTU pods must use (`FLANNEL_MTU`): the underlay's minus the backend's overhead.
    pub mtu: u32,
    /// Whether the node masquerades traffic leaving the cluster network (`FLANNEL_IPMASQ`).
    pub ip_masq: bool,
    /// The node's other subnets, of either family, each inside its family's network
    /// (`NETKIT_EXTRA_SUBNETS`; see the [module docs](self)).
    pub extra_subnets: Vec<IpNetwork>,
    /// Addresses borrowed from other nodes' blocks, each with its block's prefix length
    /// (`NETKIT_BORROWED`; see the [module docs](self)).
    pub borrowed: Vec<IpNetwork>,
}

impl SubnetFile {
    /// A file for one IPv4 or IPv6 `network` and this node's `subnet` in it (the family is
    /// taken from `subnet`), with `ip_masq` off.
    pub fn new(network: IpNetwork, subnet: IpNetwork, mtu: u32) -> Self {
        let subnet = normalized(subnet);
        let network = normalized(network);
        let mut f = Self {
            network: None,
            subnet: None,
            ipv6_network: None,
            ipv6_subnet: None,
            mtu,
            ip_masq: false,
            extra_subnets: Vec::new(),
            borrowed: Vec::new(),
        };
        if subnet.is_ipv4() {
            (f.network, f.subnet) = (Some(network), Some(subnet));
        } else {
            (f.ipv6_network, f.ipv6_subnet) = (Some(network), Some(subnet));
        }
        f
    }

    /// This node's subnets: IPv4 first (`FLANNEL_SUBNET`, then the extra IPv4 subnets), then
    /// IPv6 likewise.
    pub fn subnets(&self) -> impl Iterator<Item = IpNetwork> + '_ {
        let extra = |v4: bool| self.extra_subnets.iter().filter(move |s| s.is_ipv4() == v4);
        self.subnet
            .iter()
            .chain(extra(true))
            .chain(self.ipv6_subnet.iter())
            .chain(extra(false))
            .copied()
    }

    /// The cluster network that `subnet` (one of [`SubnetFile::subnets`]) belongs to.
    pub fn network_of(&self, subnet: IpNetwork) -> Option<IpNetwork> {
        if subnet.is_ipv4() {
            self.network
        } else {
            self.ipv6_network
        }
    }

    /// The file's text.
    pub fn to_env(&self) -> String {
        let mut s = String::new();
        let mut put = |key: &str, value: String| {
            let _ = writeln!(s, "{key}={value}");
        };
        if let Some(n) = self.network {
            put("FLANNEL_NETWORK", n.to_string());
        }
        if let Some(n) = self.subnet {
            put("FLANNEL_SUBNET", gateway_form(n));
        }
        if let Some(n) = self.ipv6_network {
            put("FLANNEL_IPV6_NETWORK", n.to_string());
        }
        if let Some(n) = self.ipv6_subnet {
            put("FLANNEL_IPV6_SUBNET", gateway_form(n));
        }
        put("FLANNEL_MTU", self.mtu.to_string());
        put("FLANNEL_IPMASQ", self.ip_masq.to_string());
        if !self.extra_subnets.is_empty() {
            let list: Vec<String> = self.extra_subnets.iter().map(|n| n.to_string()).collect();
            put("NETKIT_EXTRA_SUBNETS", list.join(","));
        }
        if !self.borrowed.is_empty() {
            let list: Vec<String> = self.borrowed.iter().map(|n| n.to_string()).collect();
            put("NETKIT_BORROWED", list.join(","));
        }
        s
    }

    /// Parse the file's text. It needs `FLANNEL_MTU` and, for at least one family, both the
    /// network and the subnet, with the subnet inside the network.
    pub fn parse(text: &str) -> Result<Self, SubnetFileError> {
        Self::parse_from(text, None)
    }

    fn parse_from(text: &str, path: Option<&Path>) -> Result<Self, SubnetFileError> {
        let invalid = |reason: String| SubnetFileError::Invalid {
            path: path.map(Path::to_path_buf),
            reason,
        };
        let mut f = Self {
            network: None,
            subnet: None,
            ipv6_network: None,
            ipv6_subnet: None,
            mtu: 0,
            ip_masq: false,
            extra_subnets: Vec::new(),
            borrowed: Vec::new(),
        };
        let mut mtu = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(invalid(format!("line {}: not KEY=VALUE: {line:?}", n + 1)));
            };
            let value = value.trim().trim_matches('"');
            let net = |v: &str| {
                v.parse::<IpNetwork>()
                    .map(normalized)
                    .map_err(|e| invalid(format!("line {}: {key}={v:?}: {e}", n + 1)))
            };
            match key.trim() {
                "FLANNEL_NETWORK" => f.network = Some(net(value)?),
                "FLANNEL_SUBNET" => f.subnet = Some(net(value)?),
                "FLANNEL_IPV6_NETWORK" => f.ipv6_network = Some(net(value)?),
                "FLANNEL_IPV6_SUBNET" => f.ipv6_subnet = Some(net(value)?),
                "FLANNEL_MTU" => {
                    mtu = Some(
                        value
                            .parse::<u32>()
                            .ok()
                            .filter(|m| (68..=65535).contains(m))
                            .ok_or_else(|| invalid(format!("line {}: FLANNEL_MTU={value:?}", n + 1)))?,
                    )
                }
                "NETKIT_EXTRA_SUBNETS" => {
                    f.extra_subnets = value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(net)
                        .collect::<Result<_, _>>()?
                }
                "NETKIT_BORROWED" => {
                    f.borrowed = value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| {
                            v.parse::<IpNetwork>()
                                .map_err(|e| invalid(format!("line {}: NETKIT_BORROWED {v:?}: {e}", n + 1)))
                        })
                        .collect::<Result<_, _>>()?
                }
                "FLANNEL_IPMASQ" => {
                    f.ip_masq = match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(invalid(format!("line {}: FLANNEL_IPMASQ={value:?}", n + 1))),
                    }
                }
                _ => {}
            }
        }
        f.mtu = mtu.ok_or_else(|| invalid("no FLANNEL_MTU".into()))?;
        for (network, subnet, family) in [(f.network, f.subnet, "IPv4"), (f.ipv6_network, f.ipv6_subnet, "IPv6")] {
            match (network, subnet) {
                (Some(n), Some(s)) if n.is_ipv4() != s.is_ipv4() || n.is_ipv4() != (family == "IPv4") => {
                    return Err(invalid(format!(
                        "the {family} network {n} and subnet {s} are not both {family}"
                    )));
                }
                (Some(n), Some(s)) if !(n.contains(s.network()) && s.prefix() >= n.prefix()) => {
                    return Err(invalid(format!("subnet {s} is not inside network {n}")));
                }
                (Some(_), None) | (None, Some(_)) => {
                    return Err(invalid(format!("the {family} network and subnet come together")));
                }
                _ => {}
            }
        }
        for s in &f.extra_subnets {
            match f.network_of(*s) {
                Some(n) if n.contains(s.network()) && s.prefix() >= n.prefix() => {}
                Some(n) => return Err(invalid(format!("extra subnet {s} is not inside network {n}"))),
                None => {
                    return Err(invalid(format!(
                        "extra subnet {s}: the file has no network of its family"
                    )))
                }
            }
        }
        for b in &f.borrowed {
            match f.network_of(*b) {
                Some(n) if n.contains(b.ip()) && b.prefix() >= n.prefix() => {}
                _ => {
                    return Err(invalid(format!(
                        "borrowed address {b} is not inside the cluster network"
                    )))
                }
            }
        }
        if f.subnet.is_none() && f.ipv6_subnet.is_none() {
            return Err(invalid("no FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET".into()));
        }
        Ok(f)
    }

    /// Read and parse the file at `path`.
    pub fn read(path: &Path) -> Result<Self, SubnetFileError> {
        let io = |cause| SubnetFileError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_SIZE + 1), &mut text).map_err(io)?;
        if text.len() as u64 > MAX_SIZE {
            return Err(SubnetFileError::Invalid {
                path: Some(path.to_path_buf()),
                reason: format!("larger than {MAX_SIZE} bytes"),
            });
        }
        Self::parse_from(&text, Some(path))
    }

    /// Write the file at `path` atomically (a temporary file in the same directory, then a
    /// rename: a reader sees the old file or the new one, never half of one), mode 0644 (the
    /// CNI plugin may run as another user), creating the parent directory (0755) if needed.
    /// Writing the same content again leaves the file untouched.
    pub fn write(&self, path: &Path) -> Result<(), SubnetFileError> {
        let io = |cause| SubnetFileError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let text = self.to_env();
        if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
            return Ok(());
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let name = path.file_name().ok_or_else(|| SubnetFileError::Invalid {
            path: Some(path.to_path_buf()),
            reason: "names no file".into(),
        })?;
        let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let result = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }
}

/// `subnet` as Flannel writes FLANNEL_SUBNET: its first address with the prefix length.
fn gateway_form(subnet: IpNetwork) -> String {
    let first: IpAddr = match subnet.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a).wrapping_add(1)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a).wrapping_add(1)).into()),
    };
    format!("{first}/{}", subnet.prefix())
}

/// `n` as its network address with the same prefix length.
fn normalized(n: IpNetwork) -> IpNetwork {
    IpNetwork::new(n.network(), n.prefix()).unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannel_file_reads_and_writes_back() {
        let text =
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
        let f = SubnetFile::parse(text).unwrap();
        assert_eq!(f.subnet, Some("10.244.3.0/24".parse().unwrap()));
        assert_eq!(f.network, Some("10.244.0.0/16".parse().unwrap()));
        assert_eq!((f.mtu, f.ip_masq), (1450, true));
        assert_eq!(f.to_env(), text);
    }

    #[test]
    fn ipv6_and_dual_stack() {
        let text = "# written by hand\n\nFLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_IPV6_SUBNET=fd00:10:0:3::1/64\nFLANNEL_MTU=1430\nOTHER=x\n";
        let f = SubnetFile::parse(text).unwrap();
        assert_eq!(f.subnets().collect::<Vec<_>>(), ["fd00:10:0:3::/64".parse().unwrap()]);
        assert_eq!(f.network_of(f.ipv6_subnet.unwrap()), f.ipv6_network);
        let mut dual = SubnetFile::new("10.244.0.0/16".parse().unwrap(), "10.244.3.0/24".parse().unwrap(), 1430);
        (dual.ipv6_network, dual.ipv6_subnet) = (f.ipv6_network, f.ipv6_subnet);
        assert_eq!(SubnetFile::parse(&dual.to_env()).unwrap(), dual);
    }

    #[test]
    fn extra_subnets_read_and_write_back() {
        let mut f = SubnetFile::new("10.244.0.0/16".parse().unwrap(), "10.244.1.0/26".parse().unwrap(), 1500);
        f.extra_subnets = vec!["10.244.1.64/26".parse().unwrap(), "10.244.9.0/26".parse().unwrap()];
        let text = f.to_env();
        assert!(
            text.contains("NETKIT_EXTRA_SUBNETS=10.244.1.64/26,10.244.9.0/26\n"),
            "{text}"
        );
        let back = SubnetFile::parse(&text).unwrap();
        assert_eq!(back, f);
        let all: Vec<String> = back.subnets().map(|s| s.to_string()).collect();
        assert_eq!(all, ["10.244.1.0/26", "10.244.1.64/26", "10.244.9.0/26"]);
        let outside = text.replace("10.244.9.0/26", "10.9.0.0/26");
        let e = SubnetFile::parse(&outside).unwrap_err().to_string();
        assert!(
            e.contains("extra subnet 10.9.0.0/26 is not inside network 10.244.0.0/16"),
            "{e}"
        );
        let mut with_loans = f.clone();
        with_loans.borrowed = vec!["10.244.3.70/26".parse().unwrap()];
        let text2 = with_loans.to_env();
        assert!(text2.contains("NETKIT_BORROWED=10.244.3.70/26\n"), "{text2}");
        assert_eq!(SubnetFile::parse(&text2).unwrap(), with_loans);
        let e = SubnetFile::parse(&text2.replace("10.244.3.70/26", "10.9.3.70/26")).unwrap_err();
        assert!(e.to_string().contains("borrowed address 10.9.3.70/26"), "{e}");
        let v6 = text.replace("10.244.9.0/26", "fd00::/64");
        let e = SubnetFile::parse(&v6).unwrap_err().to_string();
        assert!(e.contains("no network of its family"), "{e}");
    }

    #[test]
    fn bad_files_are_named() {
        for (text, want) in [
            (
                "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\n",
                "no FLANNEL_MTU",
            ),
            ("FLANNEL_MTU=1450\n", "no FLANNEL_SUBNET"),
            ("FLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\n", "come together"),
            (
                "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.9.3.1/24\nFLANNEL_MTU=1450\n",
                "not inside",
            ),
            (
                "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=9\n",
                "FLANNEL_MTU",
            ),
            (
                "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=bad\nFLANNEL_MTU=1450\n",
                "line 2",
            ),
            ("garbage\n", "not KEY=VALUE"),
            (
                "FLANNEL_NETWORK=fd00::/56\nFLANNEL_SUBNET=fd00::1/64\nFLANNEL_MTU=1450\n",
                "not both IPv4",
            ),
        ] {
            let e = SubnetFile::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn write_is_atomic_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/netkit/subnet.env");
        let f = SubnetFile::new("10.244.0.0/16".parse().unwrap(), "10.244.7.0/24".parse().unwrap(), 1450);
        f.write(&path).unwrap();
        assert_eq!(SubnetFile::read(&path).unwrap(), f);
        use std::os::unix::fs::MetadataExt;
        let before = std::fs::metadata(&path).unwrap();
        assert_eq!(before.mode() & 0o777, 0o644);
        f.write(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            before.ino(),
            "same content: not rewritten"
        );
        let g = SubnetFile { mtu: 1400, ..f };
        g.write(&path).unwrap();
        assert_eq!(SubnetFile::read(&path).unwrap().mtu, 1400);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
        assert!(matches!(
            SubnetFile::read(&dir.path().join("nope")),
            Err(SubnetFileError::Io { .. })
        ));
    }
}
