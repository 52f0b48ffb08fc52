//! The VXLAN overlay: one VXLAN device per node, and per remote node a
//! permanent ARP entry, an FDB entry and an onlink route.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv4Network};

use crate::addr::AddrError;
use crate::link::{EnsurePolicy, LinkError, Vxlan};
use crate::neigh::{FdbEntry, Neighbour};
use crate::route::Route;
use crate::{Handle, MacAddr};

/// Errors from the overlay: the step that failed and the peer it was for.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The configuration asks for something the backend cannot do.
    #[error("overlay: {0}")]
    Unsupported(String),
    /// Creating or configuring the VXLAN device failed.
    #[error("overlay device {dev}: {cause}")]
    Link {
        /// Device name.
        dev: String,
        /// The link error.
        cause: LinkError,
    },
    /// Putting the node's /32 on the device failed.
    #[error("overlay device {dev}: {cause}")]
    Addr {
        /// Device name.
        dev: String,
        /// The address error.
        cause: AddrError,
    },
    /// One step of adding or removing a peer failed.
    #[error("{step} for peer {subnet} (public IP {public_ip}) on {dev}: {cause}")]
    Peer {
        /// "ARP entry", "FDB entry" or "route".
        step: &'static str,
        /// The peer's pod subnet.
        subnet: Ipv4Network,
        /// The peer's underlay address.
        public_ip: IpAddr,
        /// Overlay device.
        dev: String,
        /// The underlying error.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Removing a peer hit several errors; every step was still attempted.
    #[error("removing peer {subnet}: {} step(s) failed: {}", errors.len(), errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Multiple {
        /// The peer's pod subnet.
        subnet: Ipv4Network,
        /// Every failure, in step order.
        errors: Vec<OverlayError>,
    },
}

/// How to build a node's VXLAN device (Flannel's defaults: VNI 1, port 8472,
/// learning off, MTU = underlay − 50, the node subnet's network address as a
/// /32 on the device).
#[derive(Clone, Debug)]
pub struct VxlanOverlayConfig {
    /// Device name, e.g. `flannel.1`.
    pub dev: String,
    /// VNI.
    pub vni: u32,
    /// UDP port.
    pub port: u16,
    /// This node's underlay address.
    pub local_ip: IpAddr,
    /// Underlay device.
    pub parent: Option<String>,
    /// MTU of the VXLAN device.
    pub mtu: Option<u32>,
    /// This node's pod subnet; its network address goes on the device as /32.
    pub subnet: Ipv4Network,
    /// VTEP MAC (random if `None`; peers need to know it).
    pub mac: Option<MacAddr>,
}

impl VxlanOverlayConfig {
    /// Flannel's defaults for a node with this underlay IP and pod subnet.
    pub fn flannel(local_ip: IpAddr, subnet: Ipv4Network) -> Self {
        Self {
            dev: "flannel.1".into(),
            vni: 1,
            port: 8472,
            local_ip,
            parent: None,
            mtu: None,
            subnet,
            mac: None,
        }
    }
}

/// A remote node as the overlay needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VxlanPeer {
    /// The remote node's pod subnet (e.g. 10.244.2.0/24).
    pub subnet: Ipv4Network,
    /// The remote VXLAN device's MAC.
    pub vtep_mac: MacAddr,
    /// The remote node's underlay address.
    pub public_ip: IpAddr,
}

impl VxlanPeer {
    /// The remote VTEP's overlay address: the subnet's network address.
    pub fn vtep_ip(&self) -> Ipv4Addr {
        self.subnet.network()
    }
}

/// A node's VXLAN overlay device and its peers.
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::overlay::OverlayError> {
/// use netkit_core::overlay::{VxlanOverlay, VxlanOverlayConfig, VxlanPeer};
/// let cfg = VxlanOverlayConfig::flannel("192.168.0.1".parse().unwrap(), "10.244.1.0/24".parse().unwrap());
/// let overlay = VxlanOverlay::setup(h, cfg).await?;
/// let peer = VxlanPeer {
///     subnet: "10.244.2.0/24".parse().unwrap(),
///     vtep_mac: "02:00:00:00:02:01".parse().unwrap(),
///     public_ip: "192.168.0.2".parse().unwrap(),
/// };
/// overlay.add_peer(&peer).await?;     // ARP + FDB + onlink route, rolled back on failure
/// overlay.remove_peer(&peer).await?;  // all three, every step attempted
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct VxlanOverlay {
    h: Handle,
    dev: String,
    mac: MacAddr,
}

impl VxlanOverlay {
    /// Create (or reuse, recreating it if its VNI, port, local IP or
    /// learning differ) the VXLAN device, put the subnet's network address on
    /// it as /32 and bring it up.
    pub async fn setup(h: &Handle, cfg: VxlanOverlayConfig) -> Result<Self, OverlayError> {
        let link_err = |source| OverlayError::Link {
            dev: cfg.dev.clone(),
            cause: source,
        };
        let mut spec = Vxlan::new(&cfg.dev, cfg.vni)
            .port(cfg.port)
            .local(cfg.local_ip)
            .learning(false);
        // Only a MAC that was asked for is part of the wanted state: a fresh
        // random one would differ from the existing device's every time and
        // make each call recreate it (dropping every peer's entries). A new
        // device gets a random MAC from the kernel.
        if let Some(m) = cfg.mac {
            spec = spec.mac(m);
        }
        if let Some(p) = &cfg.parent {
            spec = spec.parent(p);
        }
        if let Some(m) = cfg.mtu {
            spec = spec.mtu(m);
        }
        let link = h
            .link_ensure(&spec, EnsurePolicy::Recreate)
            .await
            .map_err(link_err)?
            .link;
        let vtep = IpNetwork::V4(Ipv4Network::new(cfg.subnet.network(), 32).expect("/32 is valid"));
        let addr_err = |source| OverlayError::Addr {
            dev: cfg.dev.clone(),
            cause: source,
        };
        h.addr_replace(&cfg.dev, vtep).await.map_err(addr_err)?;
        // A reused device may still carry the VTEP address of an earlier
        // subnet: the node would keep answering for it. Like Flannel, keep
        // only the current one.
        for old in h.addr_list(Some(&cfg.dev)).await.map_err(addr_err)? {
            if old.prefix.is_ipv4() && old.prefix != vtep {
                h.addr_del_index(old.index, old.prefix).await.map_err(addr_err)?;
            }
        }
        h.link_set_up(&cfg.dev).await.map_err(link_err)?;
        // link_add and link_get report the device as the kernel has it.
        let mac = link.mac.or(cfg.mac).unwrap_or_default();
        Ok(Self {
            h: h.clone(),
            dev: cfg.dev,
            mac,
        })
    }

    /// Attach to an existing overlay device without changing it.
    pub async fn open(h: &Handle, dev: &str) -> Result<Self, OverlayError> {
        let link = h.link_get(dev).await.map_err(|source| OverlayError::Link {
            dev: dev.into(),
            cause: source,
        })?;
        Ok(Self {
            h: h.clone(),
            dev: dev.into(),
            mac: link.mac.unwrap_or_default(),
        })
    }

    /// This node's VTEP MAC, to publish to the other nodes.
    pub fn vtep_mac(&self) -> MacAddr {
        self.mac
    }

    /// The device name.
    pub fn dev(&self) -> &str {
        &self.dev
    }

    fn peer_error(
        &self,
        peer: &VxlanPeer,
        step: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> OverlayError {
        OverlayError::Peer {
            step,
            subnet: peer.subnet,
            public_ip: peer.public_ip,
            dev: self.dev.clone(),
            cause: Box::new(e),
        }
    }

    fn neighbour(&self, peer: &VxlanPeer) -> Neighbour {
        Neighbour::new(&self.dev, IpAddr::V4(peer.vtep_ip()), peer.vtep_mac)
    }

    fn fdb(&self, peer: &VxlanPeer) -> FdbEntry {
        FdbEntry::new(&self.dev, peer.vtep_mac)
            .dst(peer.public_ip)
            .self_()
            .permanent()
    }

    fn route(&self, peer: &VxlanPeer) -> Route {
        Route::new(IpNetwork::V4(peer.subnet))
            .gateway(IpAddr::V4(peer.vtep_ip()))
            .dev(&self.dev)
            .onlink()
    }

    /// Program a remote node, in Flannel's order: permanent ARP entry
    /// (remote VTEP IP → VTEP MAC), FDB entry (VTEP MAC → public IP, `self`),
    /// then the onlink route for its subnet. Idempotent (entries are
    /// replaced). If a step fails, the entries this call made are removed,
    /// and an ARP entry it overwrote is put back, before the error is
    /// returned; entries that were already there stay.
    pub async fn add_peer(&self, peer: &VxlanPeer) -> Result<(), OverlayError> {
        let vtep_ip = IpAddr::V4(peer.vtep_ip());
        // What this call may overwrite, so a rollback puts it back instead of
        // deleting entries an earlier call (or another agent) made.
        let old_arp = self
            .h
            .neigh_get(&self.dev, vtep_ip)
            .await
            .map_err(|e| self.peer_error(peer, "ARP entry", e))?;
        let had_fdb = self
            .h
            .fdb_list(Some(&self.dev))
            .await
            .map_err(|e| self.peer_error(peer, "FDB entry", e))?
            .iter()
            .any(|f| f.mac == peer.vtep_mac && f.dst == Some(peer.public_ip));
        self.h
            .neigh_replace(&self.neighbour(peer))
            .await
            .map_err(|e| self.peer_error(peer, "ARP entry", e))?;
        let undo_arp = || async {
            let _ = match old_arp.as_ref().and_then(|n| n.mac.map(|m| (n, m))) {
                Some((n, mac)) => {
                    self.h
                        .neigh_replace(&Neighbour::new(&self.dev, vtep_ip, mac).state(n.state))
                        .await
                }
                None => self.h.neigh_del(&self.dev, vtep_ip).await,
            };
        };
        if let Err(e) = self.h.fdb_replace(&self.fdb(peer)).await {
            undo_arp().await;
            return Err(self.peer_error(peer, "FDB entry", e));
        }
        if let Err(e) = self.h.route_replace(&self.route(peer)).await {
            if !had_fdb {
                let _ = self.h.fdb_del(&self.fdb(peer)).await;
            }
            undo_arp().await;
            return Err(self.peer_error(peer, "route", e));
        }
        Ok(())
    }

    /// Remove a remote node: route, FDB entry and ARP entry. Every step is
    /// attempted even if an earlier one fails; entries already gone are fine.
    pub async fn remove_peer(&self, peer: &VxlanPeer) -> Result<(), OverlayError> {
        let mut errors = Vec::new();
        if let Err(e) = self.h.route_del(&self.route(peer)).await {
            errors.push(self.peer_error(peer, "route", e));
        }
        if let Err(e) = self.h.fdb_del(&self.fdb(peer)).await {
            errors.push(self.peer_error(peer, "FDB entry", e));
        }
        if let Err(e) = self.h.neigh_del(&self.dev, IpAddr::V4(peer.vtep_ip())).await {
            errors.push(self.peer_error(peer, "ARP entry", e));
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(OverlayError::Multiple {
                subnet: peer.subnet,
                errors,
            }),
        }
    }
}
