//! Routes: add, replace, delete, list (`ip route`), single-path and multipath.

use std::ffi::{c_char, c_int};

use netkit_core::route::{NextHop, NextHopInfo, RouteKind, RouteScope};
use netkit_core::{Route, RouteInfo};

use crate::conv::{af_of, family_arg, netkit_ip, netkit_prefix, opt_str, out_arg, put, ref_arg};
use crate::error::{status, Error};
use crate::handle::netkit_handle;
use crate::runtime::wait;
use crate::{netkit_error, own};

/// Route type `unicast` (the default, also for 0). The numbers are the kernel's `RTN_*`.
pub const NETKIT_ROUTE_UNICAST: u8 = 1;
/// Route type `local`.
pub const NETKIT_ROUTE_LOCAL: u8 = 2;
/// Route type `blackhole`.
pub const NETKIT_ROUTE_BLACKHOLE: u8 = 6;
/// Route type `unreachable`.
pub const NETKIT_ROUTE_UNREACHABLE: u8 = 7;
/// Route type `prohibit`.
pub const NETKIT_ROUTE_PROHIBIT: u8 = 8;

/// One path of a multipath route (`nexthop via GW dev DEV weight W onlink`).
#[repr(C)]
#[derive(Debug)]
pub struct netkit_nexthop_config {
    /// Gateway; family 0: none.
    pub gateway: netkit_ip,
    /// Output device by name; NULL: by `dev_index` or none.
    pub dev: *const c_char,
    /// Output device by index when `dev` is NULL; 0: none.
    pub dev_index: u32,
    /// Weight 1..=256; 0: 1.
    pub weight: u16,
    /// `onlink`.
    pub onlink: bool,
}

/// A route to add, replace or delete. Zero-initialise, then set the fields.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_route_config {
    /// Destination (normalised to its network address; `0.0.0.0/0` is `default`). Required.
    pub dst: netkit_prefix,
    /// Gateway (`via`); family 0: none.
    pub gateway: netkit_ip,
    /// Output device by name; NULL: by `dev_index` or none.
    pub dev: *const c_char,
    /// Output device by index when `dev` is NULL; 0: none.
    pub dev_index: u32,
    /// Use the gateway even if no connected subnet covers it (`onlink`).
    pub onlink: bool,
    /// Table; 0: main (254).
    pub table: u32,
    /// Metric (`metric`/`priority`); 0: the kernel's default (0 for IPv4, 1024 for IPv6).
    pub metric: u32,
    /// Scope number (0 global, 253 link, 254 host); 0 with `set_scope` false: chosen as
    /// `ip route` does.
    pub scope: u8,
    /// Use `scope`.
    pub set_scope: bool,
    /// Type: `NETKIT_ROUTE_*`; 0: unicast.
    pub kind: u8,
    /// Route MTU; 0: none.
    pub mtu: u32,
    /// Preferred source (`src`); family 0: none.
    pub prefsrc: netkit_ip,
    /// Protocol number (`proto`); 0: netkit's default (`boot`, as `ip route`).
    pub protocol: u8,
    /// Paths of a multipath route (`nexthop …`); NULL with `nexthops_len` 0 for a single path.
    pub nexthops: *const netkit_nexthop_config,
    /// Number of `nexthops`.
    pub nexthops_len: usize,
}

/// One path of a multipath route as the kernel reports it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct netkit_nexthop {
    /// Gateway; family 0: none.
    pub gateway: netkit_ip,
    /// Output device index.
    pub oif: u32,
    /// Weight, 1 to 256.
    pub weight: u16,
    /// `onlink`.
    pub onlink: bool,
    /// The path is dead or its device down.
    pub dead: bool,
}

/// A route as the kernel reports it (`ip route show`). Freed with the array it came in
/// (`netkit_route_list_free`).
#[repr(C)]
#[derive(Debug)]
pub struct netkit_route {
    /// `NETKIT_AF_INET` or `NETKIT_AF_INET6`.
    pub family: u8,
    /// Destination (`0.0.0.0/0`, `::/0` for default routes).
    pub dst: netkit_prefix,
    /// True for a default route.
    pub is_default: bool,
    /// Gateway of a single-path route; family 0: none.
    pub gateway: netkit_ip,
    /// Output device index of a single-path route; 0: none.
    pub oif: u32,
    /// Table.
    pub table: u32,
    /// True when the kernel reported a metric.
    pub has_metric: bool,
    /// Metric (when `has_metric`).
    pub metric: u32,
    /// Scope number.
    pub scope: u8,
    /// Protocol number.
    pub protocol: u8,
    /// Type: `NETKIT_ROUTE_*` or another `RTN_*` number.
    pub kind: u8,
    /// Preferred source; family 0: none.
    pub prefsrc: netkit_ip,
    /// Route MTU; 0: none.
    pub mtu: u32,
    /// `onlink`.
    pub onlink: bool,
    /// `linkdown`: the output device has no carrier.
    pub linkdown: bool,
    /// `dead`.
    pub dead: bool,
    /// The paths of a multipath route; NULL when single-path.
    pub nexthops: *mut netkit_nexthop,
    /// Number of `nexthops`.
    pub nexthops_len: usize,
}

fn kind_to_u8(k: RouteKind) -> u8 {
    match k {
        RouteKind::Unicast => NETKIT_ROUTE_UNICAST,
        RouteKind::Local => NETKIT_ROUTE_LOCAL,
        RouteKind::Blackhole => NETKIT_ROUTE_BLACKHOLE,
        RouteKind::Unreachable => NETKIT_ROUTE_UNREACHABLE,
        RouteKind::Prohibit => NETKIT_ROUTE_PROHIBIT,
        RouteKind::Other(n) => n,
    }
}

fn kind_from_u8(n: u8) -> RouteKind {
    match n {
        NETKIT_ROUTE_UNICAST => RouteKind::Unicast,
        NETKIT_ROUTE_LOCAL => RouteKind::Local,
        NETKIT_ROUTE_BLACKHOLE => RouteKind::Blackhole,
        NETKIT_ROUTE_UNREACHABLE => RouteKind::Unreachable,
        NETKIT_ROUTE_PROHIBIT => RouteKind::Prohibit,
        n => RouteKind::Other(n),
    }
}

impl From<&RouteInfo> for netkit_route {
    fn from(r: &RouteInfo) -> Self {
        let (nexthops, nexthops_len) = own::slice_field(r.nexthops.iter().map(nexthop).collect());
        Self {
            family: af_of(r.family),
            dst: r.destination().into(),
            is_default: r.is_default(),
            gateway: r.gateway.into(),
            oif: r.oif.unwrap_or(0),
            table: r.table,
            has_metric: r.metric.is_some(),
            metric: r.metric.unwrap_or(0),
            scope: r.scope.into(),
            protocol: r.protocol,
            kind: kind_to_u8(r.kind),
            prefsrc: r.prefsrc.into(),
            mtu: r.mtu.unwrap_or(0),
            onlink: r.onlink,
            linkdown: r.linkdown,
            dead: r.dead,
            nexthops,
            nexthops_len,
        }
    }
}

fn nexthop(n: &NextHopInfo) -> netkit_nexthop {
    netkit_nexthop {
        gateway: n.gateway.into(),
        oif: n.oif,
        weight: n.weight,
        onlink: n.onlink,
        dead: n.dead,
    }
}

impl Drop for netkit_route {
    fn drop(&mut self) {
        // SAFETY: made by `own::slice_field` in `From<&RouteInfo>` with `nexthops_len`
        // elements, owned by this struct and freed once, here.
        unsafe { own::free_slice_field(self.nexthops, self.nexthops_len) };
    }
}

/// The netkit-core route a config describes.
///
/// # Safety
/// `cfg`'s strings and `nexthops` are NULL or valid for the call.
unsafe fn route_of(cfg: &netkit_route_config) -> Result<Route, Error> {
    let mut r = Route::new(cfg.dst.required("cfg.dst")?);
    if let Some(gw) = cfg.gateway.get("cfg.gateway")? {
        r = r.gateway(gw);
    }
    // SAFETY: the function's contract.
    if let Some(dev) = unsafe { opt_str(cfg.dev, "cfg.dev") }? {
        r = r.dev(dev);
    } else if cfg.dev_index != 0 {
        r = r.dev_index(cfg.dev_index);
    }
    if cfg.onlink {
        r = r.onlink();
    }
    if cfg.table != 0 {
        r = r.table(cfg.table);
    }
    if cfg.metric != 0 {
        r = r.metric(cfg.metric);
    }
    if cfg.set_scope {
        r = r.scope(RouteScope::from(cfg.scope));
    }
    if cfg.kind != 0 {
        r = r.kind(kind_from_u8(cfg.kind));
    }
    if cfg.mtu != 0 {
        r = r.mtu(cfg.mtu);
    }
    if let Some(src) = cfg.prefsrc.get("cfg.prefsrc")? {
        r = r.prefsrc(src);
    }
    if cfg.protocol != 0 {
        r = r.protocol(cfg.protocol);
    }
    if cfg.nexthops_len > 0 {
        if cfg.nexthops.is_null() {
            return Err(Error::null("cfg.nexthops"));
        }
        // SAFETY: non-NULL, `nexthops_len` readable elements (contract).
        let hops = unsafe { std::slice::from_raw_parts(cfg.nexthops, cfg.nexthops_len) };
        for (i, n) in hops.iter().enumerate() {
            let mut hop = NextHop::new();
            if let Some(gw) = n.gateway.get(&format!("cfg.nexthops[{i}].gateway"))? {
                hop = hop.gateway(gw);
            }
            // SAFETY: the function's contract.
            if let Some(dev) = unsafe { opt_str(n.dev, &format!("cfg.nexthops[{i}].dev")) }? {
                hop = hop.dev(dev);
            } else if n.dev_index != 0 {
                hop = hop.dev_index(n.dev_index);
            }
            if n.weight != 0 {
                hop = hop.weight(n.weight);
            }
            if n.onlink {
                hop = hop.onlink();
            }
            r = r.nexthop(hop);
        }
    }
    Ok(r)
}

/// What to do with a route.
enum Op {
    Add,
    Replace,
    Del,
}

/// # Safety
/// `h` and `cfg` (with its strings and next hops) are NULL or valid for the call.
unsafe fn change(
    h: *const netkit_handle,
    cfg: *const netkit_route_config,
    err: *mut *mut netkit_error,
    op: Op,
) -> c_int {
    status(err, || {
        // SAFETY: the function's contract.
        let (h, cfg) = unsafe { (netkit_handle::arg(h)?, ref_arg(cfg, "cfg")?) };
        // SAFETY: as above.
        let route = unsafe { route_of(cfg) }?;
        match op {
            Op::Add => wait(h.route_add(&route)),
            Op::Replace => wait(h.route_replace(&route)),
            Op::Del => wait(h.route_del(&route)),
        }
    })
}

/// `ip route add …`. `NETKIT_E_EXISTS` when the route is there already.
#[no_mangle]
pub unsafe extern "C" fn netkit_route_add(
    h: *const netkit_handle,
    cfg: *const netkit_route_config,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { change(h, cfg, err, Op::Add) }
}

/// `ip route replace …`: add, or change the route with the same destination, table and metric.
#[no_mangle]
pub unsafe extern "C" fn netkit_route_replace(
    h: *const netkit_handle,
    cfg: *const netkit_route_config,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { change(h, cfg, err, Op::Replace) }
}

/// `ip route del …`: the fields set select the route (unset type, protocol and scope match
/// any). Idempotent (as netkit-core): a route or device already gone is success.
#[no_mangle]
pub unsafe extern "C" fn netkit_route_del(
    h: *const netkit_handle,
    cfg: *const netkit_route_config,
    err: *mut *mut netkit_error,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { change(h, cfg, err, Op::Del) }
}

/// `ip route show`: routes of `family` (`NETKIT_AF_INET`, `NETKIT_AF_INET6`, 0 for both) in
/// `table` (0 for every table), as an array of `*len` in `*routes` (NULL when empty). Free
/// with `netkit_route_list_free`.
#[no_mangle]
pub unsafe extern "C" fn netkit_route_list(
    h: *const netkit_handle,
    family: u8,
    table: u32,
    routes: *mut *mut netkit_route,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `h` is NULL or live.
        let h = unsafe { netkit_handle::arg(h) }?;
        out_arg(routes, "routes")?;
        out_arg(len, "len")?;
        let family = family_arg(family, "family")?;
        let table = (table != 0).then_some(table);
        let list: Vec<netkit_route> = wait(h.route_list(family, table))?
            .iter()
            .map(netkit_route::from)
            .collect();
        let (p, n) = own::give_vec(list);
        // SAFETY: both checked non-NULL above.
        unsafe {
            put(routes, p);
            put(len, n);
        }
        Ok(())
    })
}

/// Free an array from `netkit_route_list` with its length (its next hops with it). NULL, a
/// wrong length and a second free are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_route_list_free(routes: *mut netkit_route, len: usize) {
    // SAFETY: `take_vec` only rebuilds an array the registry knows with this length.
    drop(unsafe { own::take_vec(routes, len) });
}
