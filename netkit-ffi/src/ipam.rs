//! IP address management: a pool opened from its JSON configuration (host-local's `ipam`
//! keys), addresses allocated to and released by owners (container ID and interface name),
//! lookup and garbage collection. The records live in a store directory that many processes
//! and threads share safely (netkit-core's `Ipam`).

use std::ffi::{c_char, c_int};
use std::net::IpAddr;
use std::path::PathBuf;

use netkit_core::ipam::{Allocation, Ipam, IpamConfig, IpamError, Owner, StoreOptions, DEFAULT_DATA_DIR};

use crate::conv::{netkit_ip, netkit_prefix, opt_str, out_arg, put, ref_arg, str_arg};
use crate::error::{status, Error};
use crate::{netkit_error, own};

/// An open address pool and its store (opaque). Thread-safe: threads may allocate from one
/// pool at once (they never get the same address), as may other processes opening the same
/// store. Close with `netkit_ipam_close`.
pub struct netkit_ipam {
    ipam: Ipam,
}

/// One allocated address: the address with its subnet's prefix length, the gateway of its
/// range, and which range set (0, 1, … in the configuration's order) it came from.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct netkit_ipam_ip {
    /// The address and the prefix length of its subnet (`10.88.0.5/16`).
    pub address: netkit_prefix,
    /// The range's gateway.
    pub gateway: netkit_ip,
    /// Index of the range set.
    pub set: u32,
}

/// A route of the pool's configuration (`routes`), handed to the container.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct netkit_ipam_route {
    /// Destination.
    pub dst: netkit_prefix,
    /// Next hop; family 0: none given (the range's gateway is the usual choice).
    pub gateway: netkit_ip,
}

/// What `netkit_ipam_allocate` gave an owner: one address per range set, the pool's routes and
/// DNS settings. Free with `netkit_ipam_allocation_free` (its arrays and strings with it).
#[repr(C)]
#[derive(Debug)]
pub struct netkit_ipam_allocation {
    /// The addresses, one per range set.
    pub ips: *mut netkit_ipam_ip,
    /// Number of `ips`.
    pub ips_len: usize,
    /// The pool's routes; NULL when none.
    pub routes: *mut netkit_ipam_route,
    /// Number of `routes`.
    pub routes_len: usize,
    /// True when the owner held addresses before this call (allocating again returns what it
    /// holds and fills only the range sets it had nothing in).
    pub held_before: bool,
    /// DNS from the configuration's `resolvConf`: `nameserver` addresses as strings; NULL
    /// when none (or no `resolvConf`).
    pub dns_nameservers: *mut *mut c_char,
    /// Number of `dns_nameservers`.
    pub dns_nameservers_len: usize,
    /// The `domain` line; NULL when none.
    pub dns_domain: *mut c_char,
    /// `search` domains; NULL when none.
    pub dns_search: *mut *mut c_char,
    /// Number of `dns_search`.
    pub dns_search_len: usize,
    /// `options`; NULL when none.
    pub dns_options: *mut *mut c_char,
    /// Number of `dns_options`.
    pub dns_options_len: usize,
}

/// A list of strings owned by a struct: each made by `own::field`, the array by
/// `own::slice_field`.
fn strings_field(items: &[String]) -> (*mut *mut c_char, usize) {
    own::slice_field(items.iter().map(|s| own::field(Some(s))).collect())
}

/// Free a list made by [`strings_field`].
///
/// # Safety
/// `p` is NULL or came from [`strings_field`] with this length and is freed once.
unsafe fn free_strings_field(p: *mut *mut c_char, len: usize) {
    if !p.is_null() {
        // SAFETY: `len` string pointers from `strings_field`, each freed once, then the array.
        unsafe {
            for s in std::slice::from_raw_parts(p, len) {
                own::free_field(*s);
            }
            own::free_slice_field(p, len);
        }
    }
}

/// An owner, for `netkit_ipam_gc`'s list of valid owners.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_ipam_owner {
    /// Container ID (letters, digits, `_ . -`; at most 200 bytes). Required.
    pub container_id: *const c_char,
    /// Interface name inside the container (`eth0`). Required.
    pub ifname: *const c_char,
}

impl From<&Allocation> for netkit_ipam_allocation {
    fn from(a: &Allocation) -> Self {
        let ips = a
            .ips
            .iter()
            .map(|ip| netkit_ipam_ip {
                address: ip.address.into(),
                gateway: ip.gateway.into(),
                set: u32::try_from(ip.set).unwrap_or(u32::MAX),
            })
            .collect();
        let routes = a
            .routes
            .iter()
            .map(|r| netkit_ipam_route {
                dst: r.dst.into(),
                gateway: r.gw.into(),
            })
            .collect();
        let (ips, ips_len) = own::slice_field(ips);
        let (routes, routes_len) = own::slice_field(routes);
        let dns = a.dns.clone().unwrap_or_default();
        let (dns_nameservers, dns_nameservers_len) = strings_field(&dns.nameservers);
        let (dns_search, dns_search_len) = strings_field(&dns.search);
        let (dns_options, dns_options_len) = strings_field(&dns.options);
        Self {
            ips,
            ips_len,
            routes,
            routes_len,
            held_before: !a.held_before.is_empty(),
            dns_nameservers,
            dns_nameservers_len,
            dns_domain: own::field(dns.domain.as_deref()),
            dns_search,
            dns_search_len,
            dns_options,
            dns_options_len,
        }
    }
}

impl Drop for netkit_ipam_allocation {
    fn drop(&mut self) {
        // SAFETY: every field was made for this struct (`own::slice_field`, `strings_field`,
        // `own::field`) with these lengths and is freed once, here.
        unsafe {
            own::free_slice_field(self.ips, self.ips_len);
            own::free_slice_field(self.routes, self.routes_len);
            free_strings_field(self.dns_nameservers, self.dns_nameservers_len);
            own::free_field(self.dns_domain);
            free_strings_field(self.dns_search, self.dns_search_len);
            free_strings_field(self.dns_options, self.dns_options_len);
        }
    }
}

/// The owner two string arguments name.
///
/// # Safety
/// Both are NULL or C strings valid for the call.
unsafe fn owner_arg(container_id: *const c_char, ifname: *const c_char) -> Result<Owner, Error> {
    // SAFETY: the function's contract.
    let (id, ifname) = unsafe { (str_arg(container_id, "container_id")?, str_arg(ifname, "ifname")?) };
    Ok(Owner::new(id, ifname)?)
}

/// Hand a list of addresses to C through two out-parameters, when they are not NULL.
fn give_ips(ips: &[IpAddr], out: *mut *mut netkit_ip, len: *mut usize) {
    if out.is_null() {
        return;
    }
    let (p, n) = own::give_vec(ips.iter().map(|ip| netkit_ip::from(*ip)).collect());
    // SAFETY: `out` is not NULL and writable (contract); `put` ignores a NULL `len`.
    unsafe {
        put(out, p);
        put(len, n);
    }
}

/// Open the pool `config_json` describes: a CNI network configuration with an `ipam` key, a
/// conflist (its first plugin with one), or the bare `ipam` object (host-local's keys
/// `ranges`, `subnet`, `rangeStart`, `rangeEnd`, `gateway`, `routes`, `dataDir`, `resolvConf`
/// (read now, at most 64 KiB; its DNS settings go into every allocation), and `sync`), under
/// the network name `network` (NULL: the configuration's `name`, which a bare `ipam` object
/// lacks); its store is `<store_dir>/<network>`. `store_dir` NULL: the configuration's `dataDir`, else
/// `/var/lib/cni/netkit`. The store directory is created when missing.
/// `NETKIT_E_INVALID` for a configuration that is not valid.
#[no_mangle]
pub unsafe extern "C" fn netkit_ipam_open(
    config_json: *const c_char,
    network: *const c_char,
    store_dir: *const c_char,
    out: *mut *mut netkit_ipam,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: the strings are NULL or valid for the call (contract).
        let (json, network, dir) = unsafe {
            (
                str_arg(config_json, "config_json")?,
                opt_str(network, "network")?,
                opt_str(store_dir, "store_dir")?,
            )
        };
        out_arg(out, "out")?;
        let (name, config) = IpamConfig::from_network_json(json).map_err(IpamError::from)?;
        let network = network
            .or(name.as_deref())
            .ok_or_else(|| Error::invalid("network: NULL, and the configuration has no \"name\""))?;
        let pool = config.pool(network).map_err(IpamError::from)?;
        let dir = dir
            .map(PathBuf::from)
            .or_else(|| config.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let options = StoreOptions {
            sync: config.sync,
            ..StoreOptions::default()
        };
        let dns = config.dns().map_err(IpamError::from)?;
        let ipam = Ipam::open(pool, &dir, options)?.with_dns(dns);
        // SAFETY: checked non-NULL above.
        unsafe { put(out, own::give(netkit_ipam { ipam })) };
        Ok(())
    })
}

/// Allocate to the owner (`container_id`, `ifname`) one address per range set, in `*out`
/// (free with `netkit_ipam_allocation_free`). `requested` (`requested_len` addresses, NULL
/// when 0) asks for specific addresses, at most one per range set. Allocating again for an
/// owner returns what it holds. `NETKIT_E_EXHAUSTED` when a range set has no free address,
/// `NETKIT_E_EXISTS` when a requested address is held by another owner (or the owner holds
/// another one of that set), `NETKIT_E_INVALID` for a requested address outside the pool
/// or reserved, or an owner that is not valid.
#[no_mangle]
pub unsafe extern "C" fn netkit_ipam_allocate(
    ipam: *const netkit_ipam,
    container_id: *const c_char,
    ifname: *const c_char,
    requested: *const netkit_ip,
    requested_len: usize,
    out: *mut *mut netkit_ipam_allocation,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: the arguments are NULL or valid for the call (contract).
        let (ipam, owner) = unsafe { (ref_arg(ipam, "ipam")?, owner_arg(container_id, ifname)?) };
        out_arg(out, "out")?;
        let wanted: Vec<IpAddr> = if requested_len == 0 {
            Vec::new()
        } else if requested.is_null() {
            return Err(Error::null("requested"));
        } else {
            // SAFETY: non-NULL with `requested_len` readable elements (contract).
            let list = unsafe { std::slice::from_raw_parts(requested, requested_len) };
            list.iter()
                .enumerate()
                .map(|(i, ip)| ip.required(&format!("requested[{i}]")))
                .collect::<Result<_, _>>()?
        };
        let got = ipam.ipam.allocate(&owner, &wanted)?;
        // SAFETY: checked non-NULL above.
        unsafe { put(out, own::give(netkit_ipam_allocation::from(&got))) };
        Ok(())
    })
}

/// Free an allocation from `netkit_ipam_allocate` (its arrays with it). NULL and a second free
/// are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_ipam_allocation_free(allocation: *mut netkit_ipam_allocation) {
    // SAFETY: `take` only rebuilds a box the registry knows as a live allocation.
    drop(unsafe { own::take(allocation) });
}

/// The addresses the owner holds, as an array of `*len` in `*ips` (NULL when none). Free
/// with `netkit_ip_list_free`.
#[no_mangle]
pub unsafe extern "C" fn netkit_ipam_lookup(
    ipam: *const netkit_ipam,
    container_id: *const c_char,
    ifname: *const c_char,
    ips: *mut *mut netkit_ip,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: the arguments are NULL or valid for the call (contract).
        let (ipam, owner) = unsafe { (ref_arg(ipam, "ipam")?, owner_arg(container_id, ifname)?) };
        out_arg(ips, "ips")?;
        out_arg(len, "len")?;
        give_ips(&ipam.ipam.lookup(&owner)?, ips, len);
        Ok(())
    })
}

/// Release every address the owner holds. Idempotent: an owner holding nothing is success.
/// When `ips` is not NULL it receives the released addresses (an array of `*len`, NULL when
/// none; free with `netkit_ip_list_free`); `len` must then not be NULL.
#[no_mangle]
pub unsafe extern "C" fn netkit_ipam_release(
    ipam: *const netkit_ipam,
    container_id: *const c_char,
    ifname: *const c_char,
    ips: *mut *mut netkit_ip,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: the arguments are NULL or valid for the call (contract).
        let (ipam, owner) = unsafe { (ref_arg(ipam, "ipam")?, owner_arg(container_id, ifname)?) };
        if !ips.is_null() {
            out_arg(len, "len")?;
        }
        give_ips(&ipam.ipam.release(&owner)?, ips, len);
        Ok(())
    })
}

/// Garbage collection: release the addresses of every owner not in `valid` (`valid_len`
/// owners, NULL when 0: every owner goes), and repair what crashed processes left behind.
/// When `released` is not NULL it receives the released addresses (an array of `*len`, NULL
/// when none; free with `netkit_ip_list_free`); `len` must then not be NULL.
#[no_mangle]
pub unsafe extern "C" fn netkit_ipam_gc(
    ipam: *const netkit_ipam,
    valid: *const netkit_ipam_owner,
    valid_len: usize,
    released: *mut *mut netkit_ip,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `ipam` is NULL or live (contract).
        let ipam = unsafe { ref_arg(ipam, "ipam") }?;
        if !released.is_null() {
            out_arg(len, "len")?;
        }
        let owners: Vec<Owner> = if valid_len == 0 {
            Vec::new()
        } else if valid.is_null() {
            return Err(Error::null("valid"));
        } else {
            // SAFETY: non-NULL with `valid_len` readable elements, their strings valid (contract).
            let list = unsafe { std::slice::from_raw_parts(valid, valid_len) };
            list.iter()
                // SAFETY: as above.
                .map(|o| unsafe { owner_arg(o.container_id, o.ifname) })
                .collect::<Result<_, _>>()?
        };
        let report = ipam.ipam.gc(&owners)?;
        give_ips(&report.released_ips(), released, len);
        Ok(())
    })
}

/// Free an array of addresses (from `netkit_ipam_lookup`, `_release`, `_gc`) with its length.
/// NULL, a wrong length and a second free are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_ip_list_free(ips: *mut netkit_ip, len: usize) {
    // SAFETY: `take_vec` only rebuilds an array the registry knows with this length.
    drop(unsafe { own::take_vec(ips, len) });
}

/// Close a pool. NULL and a second close are ignored. Other threads must be done with it.
#[no_mangle]
pub unsafe extern "C" fn netkit_ipam_close(ipam: *mut netkit_ipam) {
    // SAFETY: `take` only rebuilds a box the registry knows as a live netkit_ipam.
    drop(unsafe { own::take(ipam) });
}
