//! The firewall of a namespace: port mappings, masquerade, container networks, isolation and
//! services, held by owners (a container attachment, a service) and removed per owner
//! (`teardown`) or for every owner not in a list (`gc`). netkit-core's `firewall` does the work
//! (nftables, or iptables where nftables is unavailable).

use std::ffi::{c_char, c_int};
use std::path::PathBuf;
use std::time::Duration;

use netkit_core::firewall::{
    self, AnyFirewall, Driver, Endpoint, Firewall, FirewallOptions, Isolation, Masquerade, Network, PortMapping,
    Protocol, Rules, Service,
};

use crate::conv::{netkit_ip, netkit_prefix, opt_str, out_arg, put, ref_arg, str_arg};
use crate::error::{status, Error};
use crate::netns::netkit_netns;
use crate::runtime::wait;
use crate::{netkit_error, own};

/// Driver: nftables when usable, else iptables (`netkit_fw_open`'s 0).
pub const NETKIT_FW_AUTO: u32 = 0;
/// Driver: nftables.
pub const NETKIT_FW_NFTABLES: u32 = 1;
/// Driver: iptables (iptables-restore).
pub const NETKIT_FW_IPTABLES: u32 = 2;

/// Protocol TCP (the default, also for 0). The numbers are the IP protocol numbers.
pub const NETKIT_PROTO_TCP: u8 = 6;
/// Protocol UDP.
pub const NETKIT_PROTO_UDP: u8 = 17;
/// Protocol SCTP.
pub const NETKIT_PROTO_SCTP: u8 = 132;

/// An open firewall of one namespace (opaque). Thread-safe; processes sharing the namespace
/// and the state directory may change it at once (changes are serialised by a lock in the
/// state directory). Close with `netkit_fw_close` (the rules stay).
pub struct netkit_fw {
    fw: AnyFirewall,
}

/// A host port (or range) forwarded to a container: Docker's `-p`, CNI's `portMappings`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct netkit_port_mapping {
    /// `NETKIT_PROTO_*`; 0: TCP.
    pub protocol: u8,
    /// Only connections to this host address; family 0 (or 0.0.0.0 / ::): every address.
    pub host_ip: netkit_ip,
    /// First host port. Required.
    pub host_port: u16,
    /// Last host port of a range; 0: `host_port` (one port).
    pub host_port_end: u16,
    /// The container's address. Required.
    pub container_ip: netkit_ip,
    /// The container port `host_port` maps to (a range maps port by port). Required.
    pub container_port: u16,
}

/// Masquerade traffic from `source` to destinations outside `network`: CNI's `ipMasq`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct netkit_masquerade {
    /// The address (full-length prefix) or subnet whose traffic is masqueraded. Required.
    pub source: netkit_prefix,
    /// Destinations inside it keep the source address; family 0: `source` itself (a whole
    /// subnet, host bits cleared).
    pub network: netkit_prefix,
}

/// A container network on the host: `subnet` behind `interface` (a bridge). Registering it
/// makes hairpin traffic (a container reaching another through a host port) work.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_fw_network {
    /// The host-side interface. Required.
    pub interface: *const c_char,
    /// The subnet. Required.
    pub subnet: netkit_prefix,
}

/// Two interfaces whose traffic between each other is dropped (both directions).
#[repr(C)]
#[derive(Debug)]
pub struct netkit_fw_isolation {
    /// One interface. Required.
    pub a: *const c_char,
    /// The other. Required.
    pub b: *const c_char,
}

/// One backend of a service.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct netkit_fw_endpoint {
    /// Its address. Required.
    pub ip: netkit_ip,
    /// Its port. Required.
    pub port: u16,
}

/// A service: a virtual address and port load-balanced over endpoints (ClusterIP), optionally
/// on a port of every host address too (NodePort). External traffic policies, external IPs and
/// local endpoints are not in the C API yet: a service made here has none (node-port
/// connections are handled as ClusterIP ones). Without endpoints it rejects connections.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_fw_service {
    /// Name (1-100 of letters, digits, `_ . - /`). Required.
    pub name: *const c_char,
    /// `NETKIT_PROTO_*`; 0: TCP.
    pub protocol: u8,
    /// Virtual address. Required.
    pub vip: netkit_ip,
    /// Virtual port. Required.
    pub port: u16,
    /// Node port; 0: none.
    pub node_port: u16,
    /// Client affinity timeout in seconds; 0: none.
    pub affinity_seconds: u32,
    /// Masquerade traffic to the endpoints.
    pub masquerade: bool,
    /// The endpoints; NULL when `endpoints_len` is 0.
    pub endpoints: *const netkit_fw_endpoint,
    /// Number of `endpoints`.
    pub endpoints_len: usize,
}

/// What one owner is given: arrays with their lengths (NULL with length 0 for none).
/// Zero-initialise, then set the arrays it holds.
#[repr(C)]
#[derive(Debug)]
pub struct netkit_fw_rules {
    /// Port mappings.
    pub port_mappings: *const netkit_port_mapping,
    /// Number of `port_mappings`.
    pub port_mappings_len: usize,
    /// Masquerades.
    pub masquerades: *const netkit_masquerade,
    /// Number of `masquerades`.
    pub masquerades_len: usize,
    /// Container networks.
    pub networks: *const netkit_fw_network,
    /// Number of `networks`.
    pub networks_len: usize,
    /// Isolated interface pairs.
    pub isolations: *const netkit_fw_isolation,
    /// Number of `isolations`.
    pub isolations_len: usize,
    /// Services.
    pub services: *const netkit_fw_service,
    /// Number of `services`.
    pub services_len: usize,
}

fn protocol(n: u8, what: &str) -> Result<Protocol, Error> {
    match n {
        0 | NETKIT_PROTO_TCP => Ok(Protocol::Tcp),
        NETKIT_PROTO_UDP => Ok(Protocol::Udp),
        NETKIT_PROTO_SCTP => Ok(Protocol::Sctp),
        n => Err(Error::invalid(format!("{what}: {n} is no NETKIT_PROTO_* protocol"))),
    }
}

/// A borrowed array argument named `what`: empty for length 0, NULL with a length refused.
///
/// # Safety
/// `p` is NULL or points to `len` readable elements for the call.
unsafe fn slice_arg<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Error> {
    if len == 0 {
        Ok(&[])
    } else if p.is_null() {
        Err(Error::null(what))
    } else {
        // SAFETY: non-NULL with `len` readable elements (the caller's contract).
        Ok(unsafe { std::slice::from_raw_parts(p, len) })
    }
}

fn port_mapping(m: &netkit_port_mapping, what: &str) -> Result<PortMapping, Error> {
    let container = m.container_ip.required(&format!("{what}.container_ip"))?;
    let mut pm = PortMapping::new(
        protocol(m.protocol, &format!("{what}.protocol"))?,
        m.host_port,
        container,
        m.container_port,
    );
    if let Some(ip) = m.host_ip.get(&format!("{what}.host_ip"))? {
        pm = pm.host_ip(ip);
    }
    if m.host_port_end != 0 {
        pm = pm.range_end(m.host_port_end);
    }
    Ok(pm)
}

fn masquerade(m: &netkit_masquerade, what: &str) -> Result<Masquerade, Error> {
    let source = m.source.required(&format!("{what}.source"))?;
    Ok(match m.network.get(&format!("{what}.network"))? {
        None => Masquerade::subnet(source),
        Some(network) => Masquerade { source, network },
    })
}

/// # Safety
/// `s`'s strings and endpoints are NULL or valid for the call.
unsafe fn service(s: &netkit_fw_service, what: &str) -> Result<Service, Error> {
    // SAFETY: the function's contract.
    let name = unsafe { str_arg(s.name, &format!("{what}.name")) }?;
    let vip = s.vip.required(&format!("{what}.vip"))?;
    let mut svc =
        Service::new(name, protocol(s.protocol, &format!("{what}.protocol"))?, vip, s.port).masquerade(s.masquerade);
    if s.node_port != 0 {
        svc = svc.node_port(s.node_port);
    }
    if s.affinity_seconds != 0 {
        svc = svc.affinity(Duration::from_secs(u64::from(s.affinity_seconds)));
    }
    // SAFETY: the function's contract.
    let eps = unsafe { slice_arg(s.endpoints, s.endpoints_len, &format!("{what}.endpoints")) }?;
    for (i, ep) in eps.iter().enumerate() {
        let ip = ep.ip.required(&format!("{what}.endpoints[{i}].ip"))?;
        svc = svc.endpoint(Endpoint::new(ip, ep.port));
    }
    Ok(svc)
}

/// The netkit-core rules a `netkit_fw_rules` describes.
///
/// # Safety
/// Every array and string in `r` is NULL or valid for the call.
unsafe fn rules_of(r: &netkit_fw_rules) -> Result<Rules, Error> {
    let mut out = Rules::default();
    // SAFETY (for each array below): the function's contract.
    let maps = unsafe { slice_arg(r.port_mappings, r.port_mappings_len, "rules.port_mappings") }?;
    for (i, m) in maps.iter().enumerate() {
        out.port_mappings
            .push(port_mapping(m, &format!("rules.port_mappings[{i}]"))?);
    }
    // SAFETY: as above.
    let masqs = unsafe { slice_arg(r.masquerades, r.masquerades_len, "rules.masquerades") }?;
    for (i, m) in masqs.iter().enumerate() {
        out.masquerades.push(masquerade(m, &format!("rules.masquerades[{i}]"))?);
    }
    // SAFETY: as above.
    let nets = unsafe { slice_arg(r.networks, r.networks_len, "rules.networks") }?;
    for (i, n) in nets.iter().enumerate() {
        let what = format!("rules.networks[{i}]");
        // SAFETY: as above.
        let interface = unsafe { str_arg(n.interface, &format!("{what}.interface")) }?;
        let subnet = n.subnet.required(&format!("{what}.subnet"))?;
        out.networks.push(Network::new(interface, subnet));
    }
    // SAFETY: as above.
    let isos = unsafe { slice_arg(r.isolations, r.isolations_len, "rules.isolations") }?;
    for (i, p) in isos.iter().enumerate() {
        // SAFETY: as above.
        let (a, b) = unsafe {
            (
                str_arg(p.a, &format!("rules.isolations[{i}].a"))?,
                str_arg(p.b, &format!("rules.isolations[{i}].b"))?,
            )
        };
        out.isolations.push(Isolation::new(a, b));
    }
    // SAFETY: as above.
    let svcs = unsafe { slice_arg(r.services, r.services_len, "rules.services") }?;
    for (i, s) in svcs.iter().enumerate() {
        // SAFETY: as above.
        out.services
            .push(unsafe { service(s, &format!("rules.services[{i}]")) }?);
    }
    Ok(out)
}

/// A borrowed owner name (checked by netkit-core: 1-250 of letters, digits, `_ . : / @ % -`).
///
/// # Safety
/// `p` is NULL or a C string valid for the call.
unsafe fn owner_arg<'a>(p: *const c_char) -> Result<&'a str, Error> {
    // SAFETY: the function's contract.
    let owner = unsafe { str_arg(p, "owner") }?;
    firewall::check_owner(owner)?;
    Ok(owner)
}

/// Open the firewall of namespace `ns` with `driver` (`NETKIT_FW_*`; `NETKIT_FW_AUTO`:
/// nftables when usable, else iptables), keeping its wanted state in `state_dir` (NULL:
/// `/run/netkit/firewall/<namespace cookie>`; every process working on the namespace must use
/// the same one). Nothing is changed in the kernel until an owner is given something.
/// `NETKIT_E_UNSUPPORTED` when the driver cannot run here.
#[no_mangle]
pub unsafe extern "C" fn netkit_fw_open(
    ns: *const netkit_netns,
    driver: u32,
    state_dir: *const c_char,
    out: *mut *mut netkit_fw,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `ns` and `state_dir` are NULL or valid for the call (contract).
        let (ns, dir) = unsafe { (netkit_netns::arg(ns, "ns")?, opt_str(state_dir, "state_dir")?) };
        out_arg(out, "out")?;
        let driver = match driver {
            NETKIT_FW_AUTO => None,
            NETKIT_FW_NFTABLES => Some(Driver::Nftables),
            NETKIT_FW_IPTABLES => Some(Driver::Iptables),
            d => return Err(Error::invalid(format!("driver: {d} is no NETKIT_FW_* driver"))),
        };
        let options = FirewallOptions {
            driver,
            state_dir: dir.map(PathBuf::from),
            ..FirewallOptions::default()
        };
        let fw = wait(firewall::open(ns, options))?;
        // SAFETY: checked non-NULL above.
        unsafe { put(out, own::give(netkit_fw { fw })) };
        Ok(())
    })
}

/// The driver an open firewall uses (`NETKIT_FW_NFTABLES` or `NETKIT_FW_IPTABLES`) in `*driver`.
#[no_mangle]
pub unsafe extern "C" fn netkit_fw_driver(
    fw: *const netkit_fw,
    driver: *mut u32,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `fw` is NULL or live (contract).
        let fw = unsafe { ref_arg(fw, "fw") }?;
        out_arg(driver, "driver")?;
        let d = match fw.fw.driver() {
            Driver::Nftables => NETKIT_FW_NFTABLES,
            Driver::Iptables => NETKIT_FW_IPTABLES,
        };
        // SAFETY: checked non-NULL above.
        unsafe { put(driver, d) };
        Ok(())
    })
}

/// Give `owner` these rules as well (idempotent: what it holds already is no error; a service
/// replaces the owner's service of the same name). `NETKIT_E_EXISTS` when a host port or a
/// service name is another owner's (nothing is changed then).
#[no_mangle]
pub unsafe extern "C" fn netkit_fw_add(
    fw: *const netkit_fw,
    owner: *const c_char,
    rules: *const netkit_fw_rules,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: the arguments (and the arrays and strings in `rules`) are NULL or valid for
        // the call (contract).
        let (fw, owner, rules) = unsafe { (ref_arg(fw, "fw")?, owner_arg(owner)?, ref_arg(rules, "rules")?) };
        // SAFETY: as above.
        let rules = unsafe { rules_of(rules) }?;
        wait(fw.fw.add(owner, &rules))
    })
}

/// Remove everything `owner` holds (when it held the last rules, netkit's table or chains go
/// too). Idempotent: an owner holding nothing is success.
#[no_mangle]
pub unsafe extern "C" fn netkit_fw_teardown(
    fw: *const netkit_fw,
    owner: *const c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `fw` and `owner` are NULL or valid for the call (contract).
        let (fw, owner) = unsafe { (ref_arg(fw, "fw")?, owner_arg(owner)?) };
        wait(fw.fw.teardown(owner)).map(drop)
    })
}

/// Tear down every owner not in `valid` (`valid_len` names; NULL when 0: every owner goes).
/// When `removed` is not NULL it receives the owners removed (an array of `*len` strings, NULL
/// when none; free with `netkit_strings_free`); `len` must then not be NULL.
#[no_mangle]
pub unsafe extern "C" fn netkit_fw_gc(
    fw: *const netkit_fw,
    valid: *const *const c_char,
    valid_len: usize,
    removed: *mut *mut *mut c_char,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `fw` is NULL or live; `valid` NULL or `valid_len` C strings (contract).
        let (fw, names) = unsafe { (ref_arg(fw, "fw")?, slice_arg(valid, valid_len, "valid")?) };
        if !removed.is_null() {
            out_arg(len, "len")?;
        }
        let valid: Vec<String> = names
            .iter()
            .enumerate()
            // SAFETY: each a C string for the call (contract).
            .map(|(i, p)| unsafe { str_arg(*p, &format!("valid[{i}]")) }.map(String::from))
            .collect::<Result<_, _>>()?;
        let gone = wait(fw.fw.gc(&valid))?;
        give_strings(&gone, removed, len);
        Ok(())
    })
}

/// Every owner holding something, as an array of `*len` strings in `*owners` (NULL when none;
/// free with `netkit_strings_free`).
#[no_mangle]
pub unsafe extern "C" fn netkit_fw_owners(
    fw: *const netkit_fw,
    owners: *mut *mut *mut c_char,
    len: *mut usize,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `fw` is NULL or live (contract).
        let fw = unsafe { ref_arg(fw, "fw") }?;
        out_arg(owners, "owners")?;
        out_arg(len, "len")?;
        give_strings(&wait(fw.fw.owners())?, owners, len);
        Ok(())
    })
}

/// Hand a list of strings to C (freed with `netkit_strings_free`) when `out` is not NULL.
fn give_strings(items: &[String], out: *mut *mut *mut c_char, len: *mut usize) {
    if out.is_null() {
        return;
    }
    let (p, n) = own::give_vec(items.iter().map(|s| own::give_string(s)).collect());
    // SAFETY: `out` is not NULL and writable (contract); `put` ignores a NULL `len`.
    unsafe {
        put(out, p);
        put(len, n);
    }
}

/// Close a firewall (its rules stay in the kernel). NULL and a second close are ignored.
#[no_mangle]
pub unsafe extern "C" fn netkit_fw_close(fw: *mut netkit_fw) {
    // SAFETY: `take` only rebuilds a box the registry knows as a live netkit_fw.
    drop(unsafe { own::take(fw) });
}
