//! TUN and TAP devices (`ip tuntap add`), created with ioctls on
//! `/dev/net/tun` from a thread inside the handle's namespace.

use std::os::fd::{AsRawFd, OwnedFd};

use super::{check_name, Link, LinkError};
use crate::Handle;

/// TUN (layer 3, IP packets) or TAP (layer 2, Ethernet frames).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunTapMode {
    /// IP packets.
    Tun,
    /// Ethernet frames.
    Tap,
}

/// A tun/tap device: `ip tuntap add NAME mode tun|tap user UID group GID`.
///
/// ```no_run
/// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::link::LinkError> {
/// use netkit_core::link::{TunTap, TunTapMode};
/// // A persistent device, like `ip tuntap add tap0 mode tap user 1000`.
/// h.tuntap_add(&TunTap::new("tap0", TunTapMode::Tap).owner(1000)).await?;
/// // A device that lives while the returned fd is open (Flannel's UDP backend).
/// let (fd, link) = h.tuntap_open(&TunTap::new("flannel0", TunTapMode::Tun)).await?;
/// # drop((fd, link)); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TunTap {
    name: String,
    mode: TunTapMode,
    owner: Option<u32>,
    group: Option<u32>,
    packet_info: bool,
    multi_queue: bool,
    vnet_hdr: bool,
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;

/// `TUNSETOFFLOAD` bits: what a TUN device with [`TunTap::vnet_hdr`] may hand out unfinished
/// (see [`tun_set_offload`]).
pub mod tun_offload {
    /// Checksums may be left partial (`TUN_F_CSUM`).
    pub const CSUM: u32 = 0x01;
    /// TCP over IPv4 super-packets (`TUN_F_TSO4`).
    pub const TSO4: u32 = 0x02;
    /// TCP over IPv6 super-packets (`TUN_F_TSO6`).
    pub const TSO6: u32 = 0x04;
    /// TSO with ECN (`TUN_F_TSO_ECN`).
    pub const TSO_ECN: u32 = 0x08;
    /// UDP over IPv4 super-packets (`TUN_F_USO4`, Linux 6.2+; the kernel takes it only with
    /// [`USO6`]).
    pub const USO4: u32 = 0x20;
    /// UDP over IPv6 super-packets (`TUN_F_USO6`, Linux 6.2+).
    pub const USO6: u32 = 0x40;
}

/// Tell an open TUN queue with a virtio-net header which offloads its reader handles
/// (`TUNSETOFFLOAD`, [`tun_offload`] bits); the kernel refuses bits it does not know (`EINVAL`).
pub fn tun_set_offload(fd: &impl AsRawFd, flags: u32) -> std::io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes the flags by value; the descriptor is open.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, flags as libc::c_ulong) })
}
/// Fail with EBUSY instead of attaching when the device already exists.
const IFF_TUN_EXCL: libc::c_short = 0x8000u16 as libc::c_short;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl TunTap {
    /// A device of this mode, without packet-information header.
    pub fn new(name: &str, mode: TunTapMode) -> Self {
        Self {
            name: name.into(),
            mode,
            owner: None,
            group: None,
            packet_info: false,
            multi_queue: false,
            vnet_hdr: false,
        }
    }
    /// User allowed to open it without CAP_NET_ADMIN.
    pub fn owner(mut self, uid: u32) -> Self {
        self.owner = Some(uid);
        self
    }
    /// Group allowed to open it.
    pub fn group(mut self, gid: u32) -> Self {
        self.group = Some(gid);
        self
    }
    /// Prefix each packet with the 4-byte packet-information header.
    pub fn packet_info(mut self, on: bool) -> Self {
        self.packet_info = on;
        self
    }
    /// Allow several queues (several fds) on the device.
    pub fn multi_queue(mut self, on: bool) -> Self {
        self.multi_queue = on;
        self
    }
    /// Prefix each packet read or written with a 10-byte virtio-net header (`IFF_VNET_HDR`):
    /// with [`tun_set_offload`] the device then hands out and takes TSO super-packets.
    pub fn vnet_hdr(mut self, on: bool) -> Self {
        self.vnet_hdr = on;
        self
    }

    fn open(&self, persist: bool) -> std::io::Result<OwnedFd> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        req.name[..self.name.len()].copy_from_slice(self.name.as_bytes());
        req.flags = match self.mode {
            TunTapMode::Tun => IFF_TUN,
            TunTapMode::Tap => IFF_TAP,
        };
        if !self.packet_info {
            req.flags |= IFF_NO_PI;
        }
        if self.multi_queue {
            req.flags |= IFF_MULTI_QUEUE;
        }
        if self.vnet_hdr {
            req.flags |= IFF_VNET_HDR;
        }
        if persist {
            // `ip tuntap add` semantics: creating never attaches to an existing device.
            req.flags |= IFF_TUN_EXCL;
        }
        let fd = file.as_raw_fd();
        // SAFETY: fd is an open /dev/net/tun; req is a properly sized, initialised
        // struct ifreq that lives across the call.
        cvt(unsafe { libc::ioctl(fd, TUNSETIFF as _, &mut req as *mut IfReq) })?;
        if let Some(uid) = self.owner {
            // SAFETY: TUNSETOWNER takes the uid by value; fd is valid.
            cvt(unsafe { libc::ioctl(fd, TUNSETOWNER as _, uid as libc::c_ulong) })?;
        }
        if let Some(gid) = self.group {
            // SAFETY: TUNSETGROUP takes the gid by value; fd is valid.
            cvt(unsafe { libc::ioctl(fd, TUNSETGROUP as _, gid as libc::c_ulong) })?;
        }
        if persist {
            // SAFETY: TUNSETPERSIST takes 0/1 by value; fd is valid.
            cvt(unsafe { libc::ioctl(fd, TUNSETPERSIST as _, 1 as libc::c_ulong) })?;
        }
        Ok(file.into())
    }
}

fn cvt(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Handle {
    /// Create a persistent tun/tap device, like `ip tuntap add`. It stays
    /// until deleted with [`Handle::link_del`]. Fails with an error for which
    /// [`LinkError::is_exists`] is true if a device with that name exists.
    pub async fn tuntap_add(&self, spec: &TunTap) -> Result<Link, LinkError> {
        check_name(&spec.name)?;
        let s = spec.clone();
        self.exec_in(move || s.open(true))
            .await
            .map_err(|e| LinkError::netlink("add tuntap", &spec.name, self, e))?
            .map_err(|e| {
                // With IFF_TUN_EXCL the kernel answers EBUSY for "exists".
                let e = match e.raw_os_error() {
                    Some(libc::EBUSY) => std::io::Error::from_raw_os_error(libc::EEXIST),
                    _ => e,
                };
                self.tun_error(spec, e)
            })?;
        self.link_get(&spec.name).await
    }

    /// Create (or attach to) a non-persistent tun/tap device and return its
    /// file descriptor: read and write packets on it. The device disappears
    /// when the last descriptor closes.
    pub async fn tuntap_open(&self, spec: &TunTap) -> Result<(OwnedFd, Link), LinkError> {
        check_name(&spec.name)?;
        let s = spec.clone();
        let fd = self
            .exec_in(move || s.open(false))
            .await
            .map_err(|e| LinkError::netlink("open tuntap", &spec.name, self, e))?
            .map_err(|e| self.tun_error(spec, e))?;
        Ok((fd, self.link_get(&spec.name).await?))
    }

    fn tun_error(&self, spec: &TunTap, e: std::io::Error) -> LinkError {
        if e.raw_os_error() == Some(libc::ENOENT) || e.raw_os_error() == Some(libc::ENODEV) {
            return LinkError::Unsupported {
                kind: "tun".into(),
                link: spec.name.clone(),
                netns: self.ns_label(),
            };
        }
        LinkError::Io {
            op: "add tuntap".into(),
            link: spec.name.clone(),
            netns: self.ns_label(),
            cause: e,
        }
    }
}
