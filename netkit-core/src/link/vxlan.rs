//! VXLAN devices.

use std::net::IpAddr;

use netlink_packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkMessage};

use super::veth::kind_mtu_mac_differences;
use super::{new_link_message, up_flags, Link, LinkError, LinkKind, LinkSpec};
use crate::{Handle, MacAddr};

/// IANA's VXLAN port. The kernel's own default (8472) is Linux's historic
/// one, which Flannel also uses: set it with [`Vxlan::port`].
pub const VXLAN_PORT: u16 = 4789;

/// A VXLAN device: `ip link add NAME type vxlan id VNI dstport PORT local IP dev PARENT nolearning ttl N`.
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::link::LinkError> {
/// use netkit_core::link::Vxlan;
/// // Flannel's device: VNI 1, port 8472, learning off.
/// let vx = Vxlan::new("flannel.1", 1).port(8472).local("192.168.0.10".parse().unwrap())
///     .parent("eth0").learning(false).mtu(1450);
/// h.link_add(&vx).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Vxlan {
    name: String,
    vni: u32,
    port: u16,
    local: Option<IpAddr>,
    remote: Option<IpAddr>,
    parent: Option<String>,
    learning: bool,
    ttl: Option<u8>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    up: bool,
}

impl Vxlan {
    /// A VXLAN device with this VNI, on port 4789, learning on (the kernel default).
    pub fn new(name: &str, vni: u32) -> Self {
        Self {
            name: name.into(),
            vni,
            port: VXLAN_PORT,
            local: None,
            remote: None,
            parent: None,
            learning: true,
            ttl: None,
            mtu: None,
            mac: None,
            up: false,
        }
    }
    /// Destination UDP port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// Local (source) IP of the encapsulated packets.
    pub fn local(mut self, ip: IpAddr) -> Self {
        self.local = Some(ip);
        self
    }
    /// A fixed remote (point-to-point VXLAN); without one, FDB entries say
    /// where each MAC lives.
    pub fn remote(mut self, ip: IpAddr) -> Self {
        self.remote = Some(ip);
        self
    }
    /// The underlay device (`dev`).
    pub fn parent(mut self, dev: &str) -> Self {
        self.parent = Some(dev.into());
        self
    }
    /// MAC learning from received packets (Flannel and Calico turn it off).
    pub fn learning(mut self, on: bool) -> Self {
        self.learning = on;
        self
    }
    /// TTL of the outer packets.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// MTU (underlay MTU − 50 for IPv4, − 70 for IPv6).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// Fixed MAC (the VTEP MAC that peers put in their FDB and ARP entries).
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
    /// Bring it up at creation.
    pub fn up(mut self) -> Self {
        self.up = true;
        self
    }
}

impl LinkSpec for Vxlan {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "vxlan"
    }
    async fn message(&self, h: &Handle) -> Result<LinkMessage, LinkError> {
        if self.vni >= 1 << 24 {
            return Err(LinkError::Invalid {
                link: self.name.clone(),
                what: "vni",
                reason: format!("{} does not fit in 24 bits", self.vni),
            });
        }
        let mut data = vec![
            InfoVxlan::Id(self.vni),
            InfoVxlan::Port(self.port),
            InfoVxlan::Learning(self.learning),
        ];
        match self.local {
            Some(IpAddr::V4(a)) => data.push(InfoVxlan::Local(a)),
            Some(IpAddr::V6(a)) => data.push(InfoVxlan::Local6(a)),
            None => {}
        }
        match self.remote {
            Some(IpAddr::V4(a)) => data.push(InfoVxlan::Group(a)),
            Some(IpAddr::V6(a)) => data.push(InfoVxlan::Group6(a)),
            None => {}
        }
        if let Some(t) = self.ttl {
            data.push(InfoVxlan::Ttl(t));
        }
        if let Some(p) = &self.parent {
            data.push(InfoVxlan::Link(h.link_index(p).await?));
        }
        let mut msg = new_link_message(&self.name, InfoKind::Vxlan, Some(InfoData::Vxlan(data)));
        if let Some(m) = self.mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(m) = self.mac {
            msg.attributes.push(LinkAttribute::Address(m.0.to_vec()));
        }
        if self.up {
            (msg.header.flags, msg.header.change_mask) = up_flags(true);
        }
        Ok(msg)
    }
    fn differences(&self, l: &Link) -> Vec<String> {
        let mut d = kind_mtu_mac_differences(l, LinkKind::Vxlan, self.mtu, self.mac);
        if l.kind != LinkKind::Vxlan {
            return d;
        }
        let info = l.vxlan_info();
        let find = |f: fn(&InfoVxlan) -> Option<String>| info.iter().find_map(f);
        let mut cmp = |what: &str, have: Option<String>, want: Option<String>| {
            if want.is_some() && have != want {
                d.push(format!(
                    "{what}: have {}, want {}",
                    have.unwrap_or("none".into()),
                    want.unwrap_or_default()
                ));
            }
        };
        cmp(
            "vni",
            find(|i| {
                if let InfoVxlan::Id(v) = i {
                    Some(v.to_string())
                } else {
                    None
                }
            }),
            Some(self.vni.to_string()),
        );
        cmp(
            "port",
            find(|i| {
                if let InfoVxlan::Port(v) = i {
                    Some(v.to_string())
                } else {
                    None
                }
            }),
            Some(self.port.to_string()),
        );
        cmp(
            "learning",
            find(|i| {
                if let InfoVxlan::Learning(v) = i {
                    Some(v.to_string())
                } else {
                    None
                }
            }),
            Some(self.learning.to_string()),
        );
        cmp(
            "local",
            find(|i| match i {
                InfoVxlan::Local(a) => Some(a.to_string()),
                InfoVxlan::Local6(a) => Some(a.to_string()),
                _ => None,
            }),
            self.local.map(|a| a.to_string()),
        );
        cmp(
            "remote",
            find(|i| match i {
                InfoVxlan::Group(a) => Some(a.to_string()),
                InfoVxlan::Group6(a) => Some(a.to_string()),
                _ => None,
            }),
            self.remote.map(|a| a.to_string()),
        );
        cmp(
            "ttl",
            find(|i| {
                if let InfoVxlan::Ttl(v) = i {
                    Some(v.to_string())
                } else {
                    None
                }
            }),
            self.ttl.map(|t| t.to_string()),
        );
        d
    }
}
