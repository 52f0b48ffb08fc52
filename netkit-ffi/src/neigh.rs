//! Neighbours (ARP / NDP entries, `ip neigh`) and the bridge forwarding database (`bridge fdb`).

use std::ffi::{c_char, c_int};

use netkit_core::neigh::{FdbEntry, FdbInfo, NeighInfo, NeighState, Neighbour};
use netkit_core::{Handle, MacAddr};

use crate::conv::{family_arg, netkit_ip, opt_str, out_arg, put, ref_arg, str_arg};
use crate::error::{status, Error};
use crate::handle::netkit_handle;
use crate::runtime::wait;
use crate::{netkit_error, own};

/// Neighbour state `permanent` (`NUD_PERMANENT`, the default when adding, also for 0). The
/// state fields hold the kernel's `NUD_*` bits.
pub const NETKIT_NUD_PERMANENT: u16 = 0x80;
/// Neighbour state `noarp` (`NUD_NOARP`): valid without resolution.
pub const NETKIT_NUD_NOARP: u16 = 0x40;
/// Neighbour state `reachable` (`NUD_REACHABLE`).
pub const NETKIT_NUD_REACHABLE: u16 = 0x02;
/// Neighbour state `stale` (`NUD_STALE`).
pub const NETKIT_NUD_STALE: u16 = 0x04;

/// A neighbour entry to add or replace: `ip neigh add IP lladdr MAC dev DEV nud STATE`
/// (`ip neigh add proxy IP dev DEV` with `proxy`). Zero-initialise, then set the fields.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_neigh_config {
    /// Device by name; NULL: by `dev_index`.
    pub dev: *const c_char,
    /// Device by index when `dev` is NULL.
    pub dev_index: u32,
    /// The neighbour's address (IPv4: ARP table, IPv6: NDP table). Required.
    pub ip: netkit_ip,
    /// Its link-layer address (ignored for a proxy entry).
    pub mac: [u8; 6],
    /// `NUD_*` state bits (`NETKIT_NUD_*`); 0: permanent.
    pub state: u16,
    /// A proxy entry: the kernel answers for `ip` on the device.
    pub proxy: bool,
    /// The neighbour is a router (`NTF_ROUTER`, IPv6).
    pub router: bool,
}

/// A neighbour entry as the kernel reports it (`ip neigh show`). Freed with the array it came
/// in (`netkit_neigh_list_free`) or the event it came in.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct netkit_neigh {
    /// Index of the device.
    pub index: u32,
    /// The neighbour's address.
    pub ip: netkit_ip,
    /// True when `mac` holds its link-layer address (false while unresolved, for proxies).
    pub has_mac: bool,
    /// Link-layer address (when `has_mac`).
    pub mac: [u8; 6],
    /// `NUD_*` state bits.
    pub state: u16,
    /// A proxy entry.
    pub proxy: bool,
    /// The neighbour is a router.
    pub router: bool,
}

impl From<&NeighInfo> for netkit_neigh {
    fn from(n: &NeighInfo) -> Self {
        Self {
            index: n.index,
            ip: n.ip.into(),
            has_mac: n.mac.is_some(),
            mac: n.mac.map_or([0; 6], |m| m.octets()),
            state: n.state.bits(),
            proxy: n.proxy,
            router: n.router,
        }
    }
}

/// An FDB entry to add, append, replace or delete: `bridge fdb add MAC dev DEV [dst IP]
/// [vlan V] [vni N] [port P] self|master static|permanent`. Zero-initialise, then set the
/// fields.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_fdb_config {
    /// Device by name; NULL: by `dev_index`.
    pub dev: *const c_char,
    /// Device by index when `dev` is NULL.
    pub dev_index: u32,
    /// The MAC address (all zero: the default destination of a VXLAN device's flooding).
    pub mac: [u8; 6],
    /// Remote VTEP (`dst`) of a VXLAN device; family 0: none.
    pub dst: netkit_ip,
    /// VLAN id; 0: none.
    pub vlan: u16,
    /// Use `vni`.
    pub set_vni: bool,
    /// VXLAN VNI of the remote (when `set_vni`).
    pub vni: u32,
    /// UDP port of the remote; 0: the device's.
    pub port: u16,
    /// In the device's own table (`self`, also when neither `is_self` nor `master`).
    pub is_self: bool,
    /// In the table of the device's bridge (`master`).
    pub master: bool,
    /// `permanent` instead of `static`.
    pub permanent: bool,
}

/// An FDB entry as the kernel reports it (`bridge fdb show`). Freed with the array it came in
/// (`netkit_fdb_list_free`) or the event it came in.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct netkit_fdb {
    /// Index of the device (the bridge port, or the VXLAN device).
    pub index: u32,
    /// The MAC address.
    pub mac: [u8; 6],
    /// Remote VTEP; family 0: none.
    pub dst: netkit_ip,
    /// VLAN id; 0: none.
    pub vlan: u16,
    /// True when `vni` is set.
    pub has_vni: bool,
    /// VXLAN VNI (when `has_vni`).
    pub vni: u32,
    /// Index of the bridge holding the entry; 0: none.
    pub master: u32,
    /// In the device's own table (`self`).
    pub is_self: bool,
    /// Permanent (local to the bridge).
    pub permanent: bool,
    /// `NUD_*` state bits.
    pub state: u16,
    /// UDP port of the remote; 0: the device's.
    pub port: u16,
    /// `NTF_ROUTER`.
    pub router: bool,
    /// Learned by an external control plane (`extern_learn`).
    pub extern_learn: bool,
    /// Offloaded to hardware.
    pub offloaded: bool,
    /// Sticky (never moves to another port).
    pub sticky: bool,
}

impl From<&FdbInfo> for netkit_fdb {
    fn from(f: &FdbInfo) -> Self {
        Self {
            index: f.index,
            mac: f.mac.octets(),
            dst: f.dst.into(),
            vlan: f.vlan.unwrap_or(0),
            has_vni: f.vni.is_some(),
            vni: f.vni.unwrap_or(0),
            master: f.master.unwrap_or(0),
            is_self: f.is_self,
            permanent: f.permanent,
            state: f.state.bits(),
            port: f.port.unwrap_or(0),
            router: f.router,
            extern_learn: f.extern_learn,
            offloaded: f.offloaded,
            sticky: f.sticky,
        }
    }
}

/// The netkit-core neighbour a config describes.
///
/// # Safety
/// `cfg.dev` is NULL or valid for the call.
unsafe fn neighbour_of(cfg: &netkit_neigh_config) -> Result<Neighbour, Error> {
    let ip = cfg.ip.required("cfg.ip")?;
    // SAFETY: the function's contract.
    let mut n = match unsafe { opt_str(cfg.dev, "cfg.dev") }? {
        Some(dev) => Neighbour::new(dev, ip, MacAddr(cfg.mac)),
        None if cfg.dev_index != 0 => Neighbour::with_index(cfg.dev_index, ip, MacAddr(cfg.mac)),
        None => return Err(Error::invalid("cfg.dev is NULL and cfg.dev_index is 0: no device")),
    };
    if cfg.state != 0 {
        n = n.state(NeighState::from_bits(cfg.state));
    }
    if cfg.proxy {
        n = n.proxy();
    }
    if cfg.router {
        n = n.router();
    }
    Ok(n)
}

/// The netkit-core FDB entry a config describes.
///
/// # Safety
/// `cfg.dev` is NULL or valid for the call.
unsafe fn fdb_of(cfg: &netkit_fdb_config) -> Result<FdbEntry, Error> {
    let mac = MacAddr(cfg.mac);
    // SAFETY: the function's contract.
    let mut e = match unsafe { opt_str(cfg.dev, "cfg.dev") }? {
        Some(dev) => FdbEntry::new(dev, mac),
        None if cfg.dev_index != 0 => FdbEntry::with_index(cfg.dev_index, mac),
        None => return Err(Error::invalid("cfg.dev is NULL and cfg.dev_index is 0: no device")),
    };
    if let Some(ip) = cfg.dst.get("cfg.dst")? {
        e = e.dst(ip);
    }
    if cfg.vlan != 0 {
        e = e.vlan(cfg.vlan);
    }
    if cfg.set_vni {
        e = e.vni(cfg.vni);
    }
    if cfg.port != 0 {
        e = e.port(cfg.port);
    }
    if cfg.is_self {
        e = e.self_();
    }
    if cfg.master {
        e = e.master();
    }
    if cfg.permanent {
        e = e.permanent();
    }
    Ok(e)
}

/// What to do with an FDB entry.
#[derive(Clone, Copy)]
enum Op {
    Add,
    Append,
    Replace,
    Del,
}

/// # Safety
/// `h` and `cfg` (with its string) are NULL or valid for the call.
unsafe fn neigh_change(
    h: *const netkit_handle,
    cfg: *const netkit_neigh_config,
    err: *mut *mut netkit_error,
    replace: bool,
) -> c_int {
    status(err, || {
        // SAFETY: the function's contract.
        let (h, cfg) = unsafe { (netkit_handle::arg(h)?, ref_arg(cfg, "cfg")?) };
        // SAFETY: as above.
        let n = unsafe { neighbour_of(cfg) }?;
        if replace {
            wait(h.neigh_replace(&n))
        } else {
            wait(h.neigh_add(&n))
        }
    })
}

/// `ip neigh add …`. `NETKIT_E_EXISTS` when the device has an entry for the address already
/// (a proxy entry may be added again).
#[no_mangle]
pub unsafe extern "C" fn netkit_neigh_add(
    h: *const netkit_handle,
    cfg: *const netkit_neigh_config,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { neigh_change(h, cfg, err, false) }
}

/// `ip neigh replace …`: add, or overwrite the entry for the address.
#[no_mangle]
pub unsafe extern "C" fn netkit_neigh_replace(
    h: *const netkit_handle,
    cfg: *const netkit_neigh_config,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { neigh_change(h, cfg, err, true) }
}

/// `ip neigh del [proxy] IP dev DEV`. Idempotent: an entry (or device) already gone is success.
#[no_mangle]
pub unsafe extern "C" fn netkit_neigh_del(
    h: *const netkit_handle,
    dev: *const c_char,
    ip: *const netkit_ip,
    proxy: bool,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h`, `dev` and `ip` are NULL or valid for the call.
        let (h, dev, ip) = unsafe { (netkit_handle::arg(h)?, str_arg(dev, "dev")?, ref_arg(ip, "ip")?) };
        let ip = ip.required("ip")?;
        wait(h.neigh_remove(dev, ip, proxy)).map(drop)
    })
}

/// `ip neigh get IP dev DEV`: the entry for `ip` on `dev`, written into the caller's `*out`
/// (a plain struct: nothing to free). `NETKIT_E_NOT_FOUND` when there is no such entry or
/// device.
#[no_mangle]
pub unsafe extern "C" fn netkit_neigh_get(
    h: *const netkit_handle,
    dev: *const c_char,
    ip: *const netkit_ip,
    out: *mut netkit_neigh,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h`, `dev` and `ip` are NULL or valid for the call.
        let (h, dev, ip) = unsafe { (netkit_handle::arg(h)?, str_arg(dev, "dev")?, ref_arg(ip, "ip")?) };
        let ip = ip.required("ip")?;
        out_arg(out, "out")?;
        match wait(h.neigh_get(dev, ip))? {
            // SAFETY: checked non-NULL above.
            Some(n) => unsafe { put(out, netkit_neigh::from(&n)) },
            None => {
                return Err(Error::new(
                    crate::error::NETKIT_E_NOT_FOUND,
                    format!("get neighbour {ip} on dev {dev:?}: no such entry"),
                ))
            }
        }
        Ok(())
    })
}

/// `ip neigh show [dev DEV]` and `ip neigh show proxy`: the entries of `dev` (every device's
/// when NULL) of `family` (`NETKIT_AF_INET`, `NETKIT_AF_INET6`, 0 for both), as an array of
/// `*len` in `*neighs` (NULL when empty). Free with `netkit_neigh_list_free`.
/// `NETKIT_E_NOT_FOUND` when `dev` does not exist.
#[no_mangle]
pub unsafe extern "C" fn netkit_neigh_list(
    h: *const netkit_handle,
    dev: *const c_char,
    family: u8,
    neighs: *mut *mut netkit_neigh,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` and `dev` are NULL or valid for the call.
        let (h, dev) = unsafe { (netkit_handle::arg(h)?, opt_str(dev, "dev")?) };
        out_arg(neighs, "neighs")?;
        out_arg(len, "len")?;
        let family = family_arg(family, "family")?;
        let list: Vec<netkit_neigh> = wait(h.neigh_list(dev, family))?
            .iter()
            .map(netkit_neigh::from)
            .collect();
        let (p, n) = own::give_vec(list);
        // SAFETY: both checked non-NULL above.
        unsafe {
            put(neighs, p);
            put(len, n);
        }
        Ok(())
    })
}

/// Free an array from `netkit_neigh_list` with its length. NULL, a wrong length and a second
/// free are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_neigh_list_free(neighs: *mut netkit_neigh, len: usize) {
    // SAFETY: `take_vec` only rebuilds an array the registry knows with this length.
    drop(unsafe { own::take_vec(neighs, len) });
}

async fn fdb_apply(h: &Handle, e: &FdbEntry, op: Op) -> Result<(), netkit_core::neigh::NeighError> {
    match op {
        Op::Add => h.fdb_add(e).await,
        Op::Append => h.fdb_append(e).await,
        Op::Replace => h.fdb_replace(e).await,
        Op::Del => h.fdb_del(e).await,
    }
}

/// # Safety
/// `h` and `cfg` (with its string) are NULL or valid for the call.
unsafe fn fdb_change(
    h: *const netkit_handle,
    cfg: *const netkit_fdb_config,
    err: *mut *mut netkit_error,
    op: Op,
) -> c_int {
    status(err, || {
        // SAFETY: the function's contract.
        let (h, cfg) = unsafe { (netkit_handle::arg(h)?, ref_arg(cfg, "cfg")?) };
        // SAFETY: as above.
        let e = unsafe { fdb_of(cfg) }?;
        wait(fdb_apply(h, &e, op))
    })
}

/// `bridge fdb add …`. `NETKIT_E_EXISTS` when the entry is there already.
#[no_mangle]
pub unsafe extern "C" fn netkit_fdb_add(
    h: *const netkit_handle,
    cfg: *const netkit_fdb_config,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { fdb_change(h, cfg, err, Op::Add) }
}

/// `bridge fdb append …`: another destination for the same MAC (VXLAN flooding to several
/// VTEPs with the all-zero MAC).
#[no_mangle]
pub unsafe extern "C" fn netkit_fdb_append(
    h: *const netkit_handle,
    cfg: *const netkit_fdb_config,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { fdb_change(h, cfg, err, Op::Append) }
}

/// `bridge fdb replace …`: add, or overwrite the entry for the MAC.
#[no_mangle]
pub unsafe extern "C" fn netkit_fdb_replace(
    h: *const netkit_handle,
    cfg: *const netkit_fdb_config,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { fdb_change(h, cfg, err, Op::Replace) }
}

/// `bridge fdb del …` (with `dst`: only that destination). Idempotent: an entry (or device)
/// already gone is success.
#[no_mangle]
pub unsafe extern "C" fn netkit_fdb_del(
    h: *const netkit_handle,
    cfg: *const netkit_fdb_config,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { fdb_change(h, cfg, err, Op::Del) }
}

/// `bridge fdb show [dev DEV]`: the entries of `dev` (every device's when NULL) as an array of
/// `*len` in `*entries` (NULL when empty). Free with `netkit_fdb_list_free`.
/// `NETKIT_E_NOT_FOUND` when `dev` does not exist.
#[no_mangle]
pub unsafe extern "C" fn netkit_fdb_list(
    h: *const netkit_handle,
    dev: *const c_char,
    entries: *mut *mut netkit_fdb,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` and `dev` are NULL or valid for the call.
        let (h, dev) = unsafe { (netkit_handle::arg(h)?, opt_str(dev, "dev")?) };
        out_arg(entries, "entries")?;
        out_arg(len, "len")?;
        let list: Vec<netkit_fdb> = wait(h.fdb_list(dev))?.iter().map(netkit_fdb::from).collect();
        let (p, n) = own::give_vec(list);
        // SAFETY: both checked non-NULL above.
        unsafe {
            put(entries, p);
            put(len, n);
        }
        Ok(())
    })
}

/// Free an array from `netkit_fdb_list` with its length. NULL, a wrong length and a second
/// free are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_fdb_list_free(entries: *mut netkit_fdb, len: usize) {
    // SAFETY: `take_vec` only rebuilds an array the registry knows with this length.
    drop(unsafe { own::take_vec(entries, len) });
}
