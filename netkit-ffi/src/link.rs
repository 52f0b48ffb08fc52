//! Links: create by kind (veth, bridge, vxlan, macvlan, tun/tap, ipip), change, move, delete,
//! get and list.
//!
//! Creation takes a config struct per kind: zero-initialise it (`= {0}` in C, `C.struct_…{}`
//! in Go), then set the fields; a zero field means "the kernel's default".

use std::ffi::{c_char, c_int};

use netkit_core::link::{Bridge, IpIp, LinkCommon, Macvlan, MacvlanMode, TunTap, TunTapMode, Veth, Vxlan, WithCommon};
use netkit_core::{Handle, Link, LinkSpec, MacAddr};

use crate::conv::{netkit_ip, opt_str, out_arg, put, ref_arg, str_arg};
use crate::error::{status, Error};
use crate::handle::netkit_handle;
use crate::netkit_error;
use crate::netns::netkit_netns;
use crate::own;
use crate::runtime::wait;

/// A link as the kernel reports it (`ip link show`). Owned by the caller: a single link is
/// freed with `netkit_link_free`, an array with `netkit_link_list_free`; the strings belong to
/// the struct.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_link {
    /// Interface index.
    pub index: u32,
    /// Name (`eth0`).
    pub name: *mut c_char,
    /// Kind as `ip -d link` names it (`veth`, `bridge`, `vxlan`, `tun`, …; `device` for a
    /// link without kind such as `lo`).
    pub kind: *mut c_char,
    /// Interface flags (`IFF_UP`, `IFF_LOWER_UP`, … from <net/if.h>).
    pub flags: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Operationally up (operstate UP).
    pub oper_up: bool,
    /// Operational state as `ip link` prints it: `UP`, `DOWN`, `UNKNOWN`, `LOWERLAYERDOWN`, …
    pub operstate: *mut c_char,
    /// MTU; 0 when the kernel did not say.
    pub mtu: u32,
    /// True when `mac` holds the link-layer address.
    pub has_mac: bool,
    /// Link-layer (MAC) address.
    pub mac: [u8; 6],
    /// Index of the master (bridge) device; 0 for none.
    pub master: u32,
    /// Index of the parent / peer (`IFLA_LINK`: a veth's peer, a macvlan's parent, which may
    /// be in another namespace, see `netnsid`); 0 for none.
    pub parent: u32,
    /// The namespace id (`link-netnsid`) of the namespace `parent` lives in; -1 for the
    /// link's own namespace.
    pub netnsid: i32,
    /// Alias (`ifalias`); NULL for none.
    pub alias: *mut c_char,
    /// Device group.
    pub group: u32,
}

impl From<&Link> for netkit_link {
    fn from(l: &Link) -> Self {
        Self {
            index: l.index,
            name: own::field(Some(&l.name)),
            kind: own::field(Some(l.kind.as_str())),
            flags: l.flags(),
            up: l.up,
            oper_up: l.oper_up,
            operstate: own::field(Some(&l.operstate())),
            mtu: l.mtu.unwrap_or(0),
            has_mac: l.mac.is_some(),
            mac: l.mac.map_or([0; 6], |m| m.octets()),
            master: l.master.unwrap_or(0),
            parent: l.parent.unwrap_or(0),
            netnsid: l.link_netnsid.unwrap_or(-1),
            alias: own::field(l.alias.as_deref()),
            group: l.group,
        }
    }
}

impl Drop for netkit_link {
    fn drop(&mut self) {
        // SAFETY: the strings were made by `own::field` for this struct and are freed once, here.
        unsafe {
            own::free_field(self.name);
            own::free_field(self.kind);
            own::free_field(self.operstate);
            own::free_field(self.alias);
        }
    }
}

/// A veth pair: `ip link add NAME type veth peer name PEER_NAME netns PEER_NETNS`.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_veth_config {
    /// Name of this end (in the handle's namespace). Required.
    pub name: *const c_char,
    /// Name of the peer end. Required.
    pub peer_name: *const c_char,
    /// The namespace the peer is created in (directly, never moved); NULL: the handle's.
    pub peer_netns: *const netkit_netns,
    /// MTU of both ends; 0: default.
    pub mtu: u32,
    /// Set `mac` on this end.
    pub set_mac: bool,
    /// MAC of this end (when `set_mac`).
    pub mac: [u8; 6],
    /// Set `peer_mac` on the peer.
    pub set_peer_mac: bool,
    /// MAC of the peer (when `set_peer_mac`).
    pub peer_mac: [u8; 6],
    /// Index of a bridge this end becomes a port of; 0: none.
    pub master_index: u32,
    /// Bring this end up (the peer is brought up in its namespace with `netkit_link_set_up`).
    pub up: bool,
}

/// A bridge: `ip link add NAME type bridge` (STP off unless `stp`).
#[repr(C)]
#[derive(Debug)]
pub struct netkit_bridge_config {
    /// Name. Required.
    pub name: *const c_char,
    /// MTU; 0: default.
    pub mtu: u32,
    /// Set `mac`.
    pub set_mac: bool,
    /// MAC (when `set_mac`).
    pub mac: [u8; 6],
    /// Spanning tree on.
    pub stp: bool,
    /// Bring it up.
    pub up: bool,
}

/// A VXLAN device: `ip link add NAME type vxlan id VNI dstport PORT local IP remote IP dev PARENT`.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_vxlan_config {
    /// Name. Required.
    pub name: *const c_char,
    /// VNI (24 bits).
    pub vni: u32,
    /// Destination UDP port; 0: 4789 (IANA).
    pub port: u16,
    /// Source address of the encapsulated packets; family 0: none.
    pub local: netkit_ip,
    /// Fixed remote (point to point); family 0: none (FDB entries say where MACs live).
    pub remote: netkit_ip,
    /// Underlay device; NULL: none.
    pub parent: *const c_char,
    /// Turn MAC learning off (Flannel, Calico).
    pub nolearning: bool,
    /// TTL of the outer packets; 0: default.
    pub ttl: u8,
    /// MTU; 0: default.
    pub mtu: u32,
    /// Set `mac`.
    pub set_mac: bool,
    /// MAC (when `set_mac`).
    pub mac: [u8; 6],
    /// Bring it up.
    pub up: bool,
}

/// Macvlan mode `bridge` (the default, also for 0).
pub const NETKIT_MACVLAN_BRIDGE: u32 = 1;
/// Macvlan mode `private`.
pub const NETKIT_MACVLAN_PRIVATE: u32 = 2;
/// Macvlan mode `vepa`.
pub const NETKIT_MACVLAN_VEPA: u32 = 3;
/// Macvlan mode `passthru`.
pub const NETKIT_MACVLAN_PASSTHRU: u32 = 4;
/// Macvlan mode `source`.
pub const NETKIT_MACVLAN_SOURCE: u32 = 5;

/// A macvlan: `ip link add NAME link PARENT type macvlan mode MODE`.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_macvlan_config {
    /// Name. Required.
    pub name: *const c_char,
    /// Parent device (in the handle's namespace). Required.
    pub parent: *const c_char,
    /// `NETKIT_MACVLAN_*`; 0: bridge.
    pub mode: u32,
    /// MTU; 0: default.
    pub mtu: u32,
}

/// Tun/tap mode: TUN (layer 3).
pub const NETKIT_TUNTAP_TUN: u32 = 1;
/// Tun/tap mode: TAP (layer 2).
pub const NETKIT_TUNTAP_TAP: u32 = 2;

/// A persistent tun/tap device: `ip tuntap add NAME mode tun|tap user UID group GID`.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_tuntap_config {
    /// Name. Required.
    pub name: *const c_char,
    /// `NETKIT_TUNTAP_TUN` or `NETKIT_TUNTAP_TAP`. Required.
    pub mode: u32,
    /// Set `owner`.
    pub set_owner: bool,
    /// User allowed to open it (when `set_owner`).
    pub owner: u32,
    /// Set `group`.
    pub set_group: bool,
    /// Group allowed to open it (when `set_group`).
    pub group: u32,
    /// Prefix packets with the 4-byte packet information header.
    pub packet_info: bool,
    /// Several queues.
    pub multi_queue: bool,
}

/// An IPv4-in-IPv4 tunnel: `ip link add NAME type ipip local IP remote IP dev PARENT ttl N`.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_ipip_config {
    /// Name. Required.
    pub name: *const c_char,
    /// Local IPv4 address; family 0: none.
    pub local: netkit_ip,
    /// Remote IPv4 address; family 0: none.
    pub remote: netkit_ip,
    /// Underlay device; NULL: none.
    pub parent: *const c_char,
    /// TTL; 0: inherit.
    pub ttl: u8,
    /// MTU; 0: default.
    pub mtu: u32,
}

/// The shared settings of a config struct: `mtu` 0 is none, `mac` only when `set_mac`.
fn common(mtu: u32, set_mac: bool, mac: [u8; 6], up: bool) -> LinkCommon {
    LinkCommon {
        mtu: (mtu != 0).then_some(mtu),
        mac: set_mac.then_some(MacAddr(mac)),
        up,
    }
}

/// Create the link `spec` with `common` (what its kind cannot take in the creating request
/// follows in one `link set`) and, when `out` is not NULL, return it in `*out`.
fn add<S: LinkSpec + WithCommon>(
    h: &Handle,
    spec: S,
    common: LinkCommon,
    out: *mut *mut netkit_link,
) -> Result<(), Error> {
    let (spec, late) = spec.with_common(common);
    let mut link = wait(h.link_add(&spec))?;
    if !late.is_empty() {
        wait(late.apply_to(h.link_set(&link.name)).apply())?;
        link = wait(h.link_get_by_index(link.index))?;
    }
    give_link(out, &link);
    Ok(())
}

fn give_link(out: *mut *mut netkit_link, link: &Link) {
    // SAFETY: `put` ignores NULL; otherwise `out` is writable (contract).
    unsafe { put(out, own::give(netkit_link::from(link))) };
}

fn ipv4(ip: &netkit_ip, what: &str) -> Result<Option<std::net::Ipv4Addr>, Error> {
    match ip.get(what)? {
        None => Ok(None),
        Some(std::net::IpAddr::V4(a)) => Ok(Some(a)),
        Some(std::net::IpAddr::V6(_)) => Err(Error::invalid(format!("{what}: an ipip tunnel takes IPv4 addresses"))),
    }
}

/// Create a veth pair; `*out` (when `out` is not NULL) receives this end.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_add_veth(
    h: *const netkit_handle,
    cfg: *const netkit_veth_config,
    out: *mut *mut netkit_link,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` and `cfg` are NULL or valid for the call; cfg's strings and netns too.
        let (h, cfg) = unsafe { (netkit_handle::arg(h)?, ref_arg(cfg, "cfg")?) };
        // SAFETY: as above.
        let (name, peer) = unsafe { (str_arg(cfg.name, "cfg.name")?, str_arg(cfg.peer_name, "cfg.peer_name")?) };
        let mut spec = Veth::new(name, peer);
        if !cfg.peer_netns.is_null() {
            // SAFETY: non-NULL, a live netkit_netns (contract).
            spec = spec.peer_netns(unsafe { netkit_netns::arg(cfg.peer_netns, "cfg.peer_netns") }?);
        }
        if cfg.set_peer_mac {
            spec = spec.peer_mac(MacAddr(cfg.peer_mac));
        }
        if cfg.master_index != 0 {
            spec = spec.master_index(cfg.master_index);
        }
        add(h, spec, common(cfg.mtu, cfg.set_mac, cfg.mac, cfg.up), out)
    })
}

/// Create a bridge; `*out` (when not NULL) receives it.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_add_bridge(
    h: *const netkit_handle,
    cfg: *const netkit_bridge_config,
    out: *mut *mut netkit_link,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h`, `cfg` and cfg's string are NULL or valid for the call.
        let (h, cfg) = unsafe { (netkit_handle::arg(h)?, ref_arg(cfg, "cfg")?) };
        // SAFETY: as above.
        let spec = Bridge::new(unsafe { str_arg(cfg.name, "cfg.name") }?).stp(cfg.stp);
        add(h, spec, common(cfg.mtu, cfg.set_mac, cfg.mac, cfg.up), out)
    })
}

/// Create a VXLAN device; `*out` (when not NULL) receives it.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_add_vxlan(
    h: *const netkit_handle,
    cfg: *const netkit_vxlan_config,
    out: *mut *mut netkit_link,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h`, `cfg` and cfg's strings are NULL or valid for the call.
        let (h, cfg) = unsafe { (netkit_handle::arg(h)?, ref_arg(cfg, "cfg")?) };
        // SAFETY: as above.
        let mut spec = Vxlan::new(unsafe { str_arg(cfg.name, "cfg.name") }?, cfg.vni).learning(!cfg.nolearning);
        if cfg.port != 0 {
            spec = spec.port(cfg.port);
        }
        if let Some(ip) = cfg.local.get("cfg.local")? {
            spec = spec.local(ip);
        }
        if let Some(ip) = cfg.remote.get("cfg.remote")? {
            spec = spec.remote(ip);
        }
        // SAFETY: as above.
        if let Some(p) = unsafe { opt_str(cfg.parent, "cfg.parent") }? {
            spec = spec.parent(p);
        }
        if cfg.ttl != 0 {
            spec = spec.ttl(cfg.ttl);
        }
        add(h, spec, common(cfg.mtu, cfg.set_mac, cfg.mac, cfg.up), out)
    })
}

/// Create a macvlan; `*out` (when not NULL) receives it.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_add_macvlan(
    h: *const netkit_handle,
    cfg: *const netkit_macvlan_config,
    out: *mut *mut netkit_link,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h`, `cfg` and cfg's strings are NULL or valid for the call.
        let (h, cfg) = unsafe { (netkit_handle::arg(h)?, ref_arg(cfg, "cfg")?) };
        // SAFETY: as above.
        let (name, parent) = unsafe { (str_arg(cfg.name, "cfg.name")?, str_arg(cfg.parent, "cfg.parent")?) };
        let mode = match cfg.mode {
            0 | NETKIT_MACVLAN_BRIDGE => MacvlanMode::Bridge,
            NETKIT_MACVLAN_PRIVATE => MacvlanMode::Private,
            NETKIT_MACVLAN_VEPA => MacvlanMode::Vepa,
            NETKIT_MACVLAN_PASSTHRU => MacvlanMode::Passthru,
            NETKIT_MACVLAN_SOURCE => MacvlanMode::Source,
            m => return Err(Error::invalid(format!("cfg.mode: {m} is no NETKIT_MACVLAN_* mode"))),
        };
        let spec = Macvlan::new(name, parent).mode(mode);
        add(h, spec, common(cfg.mtu, false, [0; 6], false), out)
    })
}

/// Create a persistent tun/tap device (it stays until `netkit_link_del`); `*out` (when not
/// NULL) receives it.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_add_tuntap(
    h: *const netkit_handle,
    cfg: *const netkit_tuntap_config,
    out: *mut *mut netkit_link,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h`, `cfg` and cfg's string are NULL or valid for the call.
        let (h, cfg) = unsafe { (netkit_handle::arg(h)?, ref_arg(cfg, "cfg")?) };
        let mode = match cfg.mode {
            NETKIT_TUNTAP_TUN => TunTapMode::Tun,
            NETKIT_TUNTAP_TAP => TunTapMode::Tap,
            m => {
                return Err(Error::invalid(format!(
                    "cfg.mode: {m} is neither NETKIT_TUNTAP_TUN nor _TAP"
                )))
            }
        };
        // SAFETY: as above.
        let mut spec = TunTap::new(unsafe { str_arg(cfg.name, "cfg.name") }?, mode)
            .packet_info(cfg.packet_info)
            .multi_queue(cfg.multi_queue);
        if cfg.set_owner {
            spec = spec.owner(cfg.owner);
        }
        if cfg.set_group {
            spec = spec.group(cfg.group);
        }
        let link = wait(h.tuntap_add(&spec))?;
        give_link(out, &link);
        Ok(())
    })
}

/// Create an ipip tunnel; `*out` (when not NULL) receives it. `NETKIT_E_UNSUPPORTED` on a
/// kernel without the ipip driver.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_add_ipip(
    h: *const netkit_handle,
    cfg: *const netkit_ipip_config,
    out: *mut *mut netkit_link,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h`, `cfg` and cfg's strings are NULL or valid for the call.
        let (h, cfg) = unsafe { (netkit_handle::arg(h)?, ref_arg(cfg, "cfg")?) };
        // SAFETY: as above.
        let mut spec = IpIp::new(unsafe { str_arg(cfg.name, "cfg.name") }?);
        if let Some(a) = ipv4(&cfg.local, "cfg.local")? {
            spec = spec.local(a);
        }
        if let Some(a) = ipv4(&cfg.remote, "cfg.remote")? {
            spec = spec.remote(a);
        }
        // SAFETY: as above.
        if let Some(p) = unsafe { opt_str(cfg.parent, "cfg.parent") }? {
            spec = spec.parent(p);
        }
        if cfg.ttl != 0 {
            spec = spec.ttl(cfg.ttl);
        }
        add(h, spec, common(cfg.mtu, false, [0; 6], false), out)
    })
}

/// One `ip link set NAME …` change, for the setters below.
///
/// # Safety
/// `h` and `name` are NULL or valid for the call.
unsafe fn set(
    h: *const netkit_handle,
    name: *const c_char,
    err: *mut *mut netkit_error,
    change: impl FnOnce(netkit_core::link::LinkSet<'_>) -> Result<netkit_core::link::LinkSet<'_>, Error>,
) -> c_int {
    status(err, || {
        // SAFETY: the function's contract.
        let (h, name) = unsafe { (netkit_handle::arg(h)?, str_arg(name, "name")?) };
        wait(change(h.link_set(name))?.apply())
    })
}

/// `ip link set NAME up`.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_set_up(
    h: *const netkit_handle,
    name: *const c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { set(h, name, err, |s| Ok(s.up())) }
}

/// `ip link set NAME down`.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_set_down(
    h: *const netkit_handle,
    name: *const c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { set(h, name, err, |s| Ok(s.down())) }
}

/// `ip link set NAME mtu MTU`.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_set_mtu(
    h: *const netkit_handle,
    name: *const c_char,
    mtu: u32,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { set(h, name, err, |s| Ok(s.mtu(mtu))) }
}

/// `ip link set NAME address MAC` (`mac` points to 6 bytes).
#[no_mangle]
pub unsafe extern "C" fn netkit_link_set_mac(
    h: *const netkit_handle,
    name: *const c_char,
    mac: *const u8,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: NULL or 6 readable bytes (contract); `[u8; 6]` has alignment 1.
    let mac = unsafe { ref_arg(mac.cast::<[u8; 6]>(), "mac") }.map(|m| MacAddr(*m));
    // SAFETY: the caller's contract, passed on.
    unsafe { set(h, name, err, |s| Ok(s.mac(mac?))) }
}

/// `ip link set NAME master MASTER` (make it a port of bridge MASTER).
#[no_mangle]
pub unsafe extern "C" fn netkit_link_set_master(
    h: *const netkit_handle,
    name: *const c_char,
    master: *const c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: NULL or a C string for the call.
    let master = unsafe { str_arg(master, "master") };
    // SAFETY: the caller's contract, passed on.
    unsafe { set(h, name, err, |s| Ok(s.master(master?))) }
}

/// `ip link set NAME nomaster` (leave its bridge).
#[no_mangle]
pub unsafe extern "C" fn netkit_link_set_nomaster(
    h: *const netkit_handle,
    name: *const c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { set(h, name, err, |s| Ok(s.nomaster())) }
}

/// `ip link set NAME netns NS` (move it; it keeps its name).
#[no_mangle]
pub unsafe extern "C" fn netkit_link_set_netns(
    h: *const netkit_handle,
    name: *const c_char,
    ns: *const netkit_netns,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: NULL or a live netkit_netns.
    let ns = unsafe { netkit_netns::arg(ns, "ns") };
    // SAFETY: the caller's contract, passed on.
    unsafe { set(h, name, err, |s| Ok(s.netns(ns?))) }
}

/// `ip link set NAME name NEW_NAME`.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_set_name(
    h: *const netkit_handle,
    name: *const c_char,
    new_name: *const c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: NULL or a C string for the call.
    let new_name = unsafe { str_arg(new_name, "new_name") };
    // SAFETY: the caller's contract, passed on.
    unsafe { set(h, name, err, |s| Ok(s.name(new_name?))) }
}

/// `ip link del NAME`. Deleting a link that does not exist succeeds (idempotent, as
/// netkit-core's `link_del`).
#[no_mangle]
pub unsafe extern "C" fn netkit_link_del(
    h: *const netkit_handle,
    name: *const c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` and `name` are NULL or valid for the call.
        let (h, name) = unsafe { (netkit_handle::arg(h)?, str_arg(name, "name")?) };
        wait(h.link_del(name))
    })
}

/// `ip link show NAME`: the link in `*out` (free with `netkit_link_free`).
/// `NETKIT_E_NOT_FOUND` when there is none.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_get(
    h: *const netkit_handle,
    name: *const c_char,
    out: *mut *mut netkit_link,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` and `name` are NULL or valid for the call.
        let (h, name) = unsafe { (netkit_handle::arg(h)?, str_arg(name, "name")?) };
        out_arg(out, "out")?;
        give_link(out, &wait(h.link_get(name))?);
        Ok(())
    })
}

/// The link with index `index` in `*out` (free with `netkit_link_free`).
#[no_mangle]
pub unsafe extern "C" fn netkit_link_get_by_index(
    h: *const netkit_handle,
    index: u32,
    out: *mut *mut netkit_link,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` is NULL or live.
        let h = unsafe { netkit_handle::arg(h) }?;
        out_arg(out, "out")?;
        give_link(out, &wait(h.link_get_by_index(index))?);
        Ok(())
    })
}

/// `ip link show`: every link of the handle's namespace, as an array of `*len` links in
/// `*links` (NULL when empty). Free with `netkit_link_list_free(*links, *len)`.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_list(
    h: *const netkit_handle,
    links: *mut *mut netkit_link,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` is NULL or live.
        let h = unsafe { netkit_handle::arg(h) }?;
        out_arg(links, "links")?;
        out_arg(len, "len")?;
        let list: Vec<netkit_link> = wait(h.link_list())?.iter().map(netkit_link::from).collect();
        let (p, n) = own::give_vec(list);
        // SAFETY: both checked non-NULL above.
        unsafe {
            put(links, p);
            put(len, n);
        }
        Ok(())
    })
}

/// Free a link from `netkit_link_get` or a `netkit_link_add_*`. NULL and a second free are
/// ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_free(link: *mut netkit_link) {
    // SAFETY: `take` only rebuilds a box the registry knows as a live netkit_link.
    drop(unsafe { own::take(link) });
}

/// Free an array from `netkit_link_list` with its length. NULL, a wrong length and a second
/// free are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_link_list_free(links: *mut netkit_link, len: usize) {
    // SAFETY: `take_vec` only rebuilds an array the registry knows with this length.
    drop(unsafe { own::take_vec(links, len) });
}
