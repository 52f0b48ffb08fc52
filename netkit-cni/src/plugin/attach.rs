//! Attaching a container (ADD), detaching it (DEL) and verifying it (CHECK).
//!
//! ADD, in order, each step recorded so a failure undoes exactly what was made: the bridge
//! (bridge mode; created if missing, never removed: other containers share it), IPAM, the veth
//! pair (the container end born inside the container's namespace), addresses and routes inside,
//! the gateway address on the bridge (bridge mode) or the host route and proxy ARP (routed mode),
//! the firewall (masquerade, port mappings).
//!
//! Routed mode is Calico's: no bridge; the host end has no address, a fixed MAC
//! (`ee:ee:ee:ee:ee:ee`) and proxy ARP; the container gets its address as /32 (/128), a link
//! route to 169.254.1.1 and its default route through it (answered by proxy ARP); for IPv6 its
//! default route goes through the host end's link-local address, with DAD off on both ends; the
//! host reaches the container through a /32 (/128) route on the host end.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netkit_core::firewall::{self, Firewall, FirewallOptions, Masquerade, Network, Rules};
use netkit_core::link::{AddrGenMode, Bridge, BridgePort, Veth};
use netkit_core::route::Route;
use netkit_core::{Handle, NetNs};

use super::config::{Mode, PluginConf};
use super::ipam::Ipam;
use crate::spec::{CniEnv, CniError, ErrorCode, InterfaceResult, IpamResult, RouteResult};

/// The firewall owner of an attachment: `<container ID>:<ifname>`.
pub fn owner(env: &CniEnv) -> Result<String, CniError> {
    let o = format!(
        "{}:{}",
        env.container_id.as_deref().unwrap_or_default(),
        env.ifname.as_deref().unwrap_or_default()
    );
    firewall::check_owner(&o).map_err(|e| CniError::new(ErrorCode::InvalidEnv, e.to_string()))?;
    Ok(o)
}

/// Prefix of the host end's name (see [`host_veth`]).
pub const VETH_PREFIX: &str = "veth";
/// Prefix of the bandwidth ifb's name (see [`host_ifb`]).
pub const IFB_PREFIX: &str = "nkbw";

/// `prefix` + 8 hex digits of a hash of the attachment (container ID, interface): the same in
/// every process, so DEL and GC find what ADD made even when the container's namespace is gone.
fn attachment_link(prefix: &str, container_id: &str, ifname: &str) -> String {
    netkit_core::link::hashed_name(prefix, &[container_id, ifname]).expect("a valid literal prefix")
}

/// The host end's name: `veth` + the attachment's hash.
pub fn host_veth(env: &CniEnv) -> String {
    attachment_link(
        VETH_PREFIX,
        env.container_id.as_deref().unwrap_or_default(),
        env.ifname.as_deref().unwrap_or_default(),
    )
}

/// The ifb device that shapes the container's outgoing traffic (`bandwidth` egress limit):
/// `nkbw` + the same hash as its host end's name.
pub fn host_ifb(env: &CniEnv) -> String {
    attachment_link(
        IFB_PREFIX,
        env.container_id.as_deref().unwrap_or_default(),
        env.ifname.as_deref().unwrap_or_default(),
    )
}

/// The bandwidth ifb of an attachment given by its owner.
pub(crate) fn ifb_of(o: &netkit_core::ipam::Owner) -> String {
    attachment_link(IFB_PREFIX, o.container_id(), o.ifname())
}

/// The `bandwidth` capability, on the host end of the pair: traffic to the container is held
/// by a token bucket on the host end; traffic from it, which arrives at the host end, is
/// redirected to an ifb device and held by a token bucket there (the reference bandwidth
/// plugin's scheme). A kernel without tbf, ifb, u32 or mirred: code 103.
async fn limit_bandwidth(
    conf: &PluginConf,
    env: &CniEnv,
    host: &Handle,
    host_end: &str,
    made: &mut Made,
) -> Result<(), CniError> {
    let tc_err = |e: netkit_core::tc::TcError| {
        let code = if e.is_unsupported() {
            ErrorCode::KernelUnsupported
        } else {
            ErrorCode::Io
        };
        CniError::new(code, format!("bandwidth: {e}"))
    };
    if let Some(bucket) = &conf.bandwidth.ingress {
        host.qdisc_tbf_replace(host_end, bucket).await.map_err(tc_err)?;
    }
    if let Some(bucket) = &conf.bandwidth.egress {
        let ifb = host_ifb(env);
        match host.link_add(&netkit_core::link::Ifb::new(&ifb).up()).await {
            Ok(_) => {}
            Err(e) if e.is_unsupported() => {
                return Err(CniError::new(ErrorCode::KernelUnsupported, format!("bandwidth: {e}")))
            }
            Err(e) => return Err(CniError::io(e)),
        }
        made.ifb = Some(ifb.clone());
        host.qdisc_tbf_replace(&ifb, bucket).await.map_err(tc_err)?;
        host.qdisc_ingress_add(host_end).await.map_err(tc_err)?;
        host.filter_redirect_ingress(host_end, &ifb).await.map_err(tc_err)?;
    }
    Ok(())
}

/// The firewall of the host namespace (the one the plugin runs in), as the config asks.
pub(crate) async fn open_firewall(conf: &PluginConf, host: &NetNs) -> Result<firewall::AnyFirewall, CniError> {
    let opts = FirewallOptions {
        driver: conf.firewall_backend,
        state_dir: conf.firewall_state_dir.clone(),
        // A plugin's caller waits for it to exit: nf_tables' cleanup wait is left to a
        // detached process (unless `waitLinkFree` asks for no detached processes).
        detached_close: !conf.wait_link_free,
        ..Default::default()
    };
    firewall::open(host, opts).await.map_err(CniError::io)
}

/// The host end's MAC in routed mode, so the container's IPv6 gateway (its link-local address)
/// is known in advance.
const ROUTED_HOST_MAC: [u8; 6] = [0xee; 6];
/// The IPv4 gateway containers see in routed mode (answered by proxy ARP on the host end).
const ROUTED_GW4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 1, 1));

/// The link-local address the kernel gives the routed host end (EUI-64 of its MAC).
fn routed_gw6() -> IpAddr {
    IpAddr::V6("fe80::ecee:eeff:feee:eeee".parse().expect("literal"))
}

fn full_prefix(ip: IpAddr) -> IpNetwork {
    IpNetwork::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("full-length prefix")
}

/// What ADD made so far, undone in reverse when a later step fails.
#[derive(Default)]
struct Made {
    ipam: bool,
    veth: Option<String>,
    ifb: Option<String>,
    firewall: bool,
}

/// ADD in bridge mode.
pub async fn add(conf: &PluginConf, env: &CniEnv, ipam: &Ipam<'_>) -> Result<IpamResult, CniError> {
    let netns_path = env.netns.as_deref().unwrap_or_default();
    let ctr_ns = NetNs::open_path(netns_path)
        .map_err(|e| CniError::new(ErrorCode::UnknownContainer, format!("container netns: {e}")))?;
    let host_ns = NetNs::current().map_err(CniError::io)?;
    let host = Handle::current().map_err(CniError::io)?;
    let ctr = ctr_ns.handle().await.map_err(CniError::io)?;
    if conf.vlan.is_some() && conf.mode == Mode::Routed {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            "vlan applies to bridge mode (routed mode has no bridge)",
        ));
    }
    // Everything that can be refused is checked before the host changes at all.
    ipam.validate(env)?;
    conf.mappings_for(&[])?;
    if conf.ip_masq || !conf.port_mappings.is_empty() {
        owner(env)?;
    }
    let mut made = Made::default();
    let result = attach(conf, env, ipam, &host, &ctr, &ctr_ns, &host_ns, netns_path, &mut made).await;
    if result.is_err() {
        undo(conf, env, ipam, &host, &host_ns, &made).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn attach(
    conf: &PluginConf,
    env: &CniEnv,
    ipam: &Ipam<'_>,
    host: &Handle,
    ctr: &Handle,
    ctr_ns: &NetNs,
    host_ns: &NetNs,
    netns_path: &str,
    made: &mut Made,
) -> Result<IpamResult, CniError> {
    let ifname = env.ifname.as_deref().unwrap_or_default();
    let routed = conf.mode == Mode::Routed;
    let bridge = match conf.mode {
        Mode::Bridge => Some(ensure_bridge(conf, host).await?),
        Mode::Routed => None,
    };

    crate::trace::mark("bridge");
    let mut result = ipam.add(env)?;
    made.ipam = true;
    crate::trace::mark("ipam");
    let pools = ipam_subnets(&result, ipam);
    if routed {
        // The container holds its address alone; its gateway is the host end.
        for ip in &mut result.ips {
            ip.address = full_prefix(ip.address.ip());
            ip.gateway = Some(if ip.address.is_ipv4() { ROUTED_GW4 } else { routed_gw6() });
        }
    }

    let host_end = host_veth(env);
    // Everything the firewall will be asked for is worked out (and refused) before the host
    // changes.
    let rules = firewall_rules(conf, env, &pools, &result, &host_end)?;
    let mut veth = Veth::new(&host_end, ifname).peer_netns(ctr_ns);
    if let Some(m) = conf.mtu {
        veth = veth.mtu(m);
    }
    // The container end's MAC is chosen here (as the kernel would: random, locally
    // administered) unless asked for, so the result needs no read-back from the container.
    let ctr_mac = conf.mac.unwrap_or_else(netkit_core::MacAddr::random);
    veth = veth.peer_mac(ctr_mac);
    if routed {
        veth = veth.mac(netkit_core::MacAddr(ROUTED_HOST_MAC));
    }
    let host_link = host.link_add(&veth).await.map_err(CniError::io)?;
    made.veth = Some(host_end.clone());
    crate::trace::mark("veth");

    // The firewall (on its own thread) while the links are wired up. It starts once the host
    // end exists: in routed mode its network is that interface (route_localnet goes on it).
    made.firewall = rules.is_some();
    let firewall = async {
        let Some(rules) = rules else { return Ok(None) };
        let fw = open_firewall(conf, host_ns).await?;
        fw.add(&owner(env)?, &rules).await.map_err(|e| match e {
            firewall::FirewallError::Conflict { .. } | firewall::FirewallError::Invalid { .. } => {
                CniError::new(ErrorCode::InvalidConfig, e.to_string())
            }
            e => CniError::io(e),
        })?;
        crate::trace::mark("firewall");
        Ok::<_, CniError>(Some(fw))
    };
    let (fw, wired) = tokio::join!(firewall, wire(conf, env, host, ctr, &host_end, &mut result));
    wired?;
    crate::trace::mark("wired");
    // Kept open to the end: closing the nf_tables socket waits for nf_tables' deferred cleanup
    // of the transaction, which by then has run.
    let _fw = fw?;
    limit_bandwidth(conf, env, host, &host_end, made).await?;

    // Read the bridge again: it takes a port's MAC when the first port joins.
    let bridge = match bridge {
        Some(_) => Some(host.link_get(&conf.bridge).await.map_err(CniError::io)?),
        None => None,
    };
    result.interfaces = bridge
        .map(|b| InterfaceResult {
            name: conf.bridge.clone(),
            mac: b.mac.map(|m| m.to_string()),
            sandbox: None,
        })
        .into_iter()
        .collect();
    result.interfaces.extend([
        InterfaceResult {
            name: host_end,
            mac: host_link.mac.map(|m| m.to_string()),
            sandbox: None,
        },
        InterfaceResult {
            name: ifname.to_string(),
            mac: Some(ctr_mac.to_string()),
            sandbox: Some(netns_path.to_string()),
        },
    ]);
    let ctr_index = result.interfaces.len() - 1;
    for ip in &mut result.ips {
        ip.interface = Some(ctr_index);
    }
    Ok(result)
}

/// The links once the pair exists: the host end (bridge port, or routed host end with proxy
/// ARP), the container's addresses and routes, the host's routes and gateway addresses.
async fn wire(
    conf: &PluginConf,
    env: &CniEnv,
    host: &Handle,
    ctr: &Handle,
    host_end: &str,
    result: &mut IpamResult,
) -> Result<(), CniError> {
    let ifname = env.ifname.as_deref().unwrap_or_default();
    let routed = conf.mode == Mode::Routed;
    let has_v4 = result.ips.iter().any(|i| i.address.is_ipv4());
    let has_v6 = result.ips.iter().any(|i| i.address.is_ipv6());
    if routed {
        if has_v4 {
            host.proxy_arp(host_end, true).await.map_err(CniError::io)?;
        }
        if has_v6 {
            host.accept_dad(host_end, 0).await.map_err(CniError::io)?;
        }
        host.link_set_up(host_end).await.map_err(CniError::io)?;
    } else {
        // A bridge port needs no IPv6 address of its own: without one the host namespace does
        // not grow an address and routes per container, and the port sends no IPv6 chatter.
        host.link_set(host_end)
            .master(&conf.bridge)
            .addr_gen_mode(AddrGenMode::None)
            .up()
            .apply()
            .await
            .map_err(CniError::io)?;
        // `vlan`: the port is an access port of that VLAN; with `isGateway` the bridge itself
        // too, so its gateway address is reachable in the VLAN (one VLAN per bridge then, as
        // the bridge device has one untagged VLAN).
        if let Some(v) = conf.vlan {
            host.bridge_vlan_access(host_end, v, conf.is_gateway)
                .await
                .map_err(vlan_error)?;
        }
        if conf.hairpin_mode {
            host.bridge_port_set(host_end, &BridgePort::new().hairpin(true))
                .await
                .map_err(CniError::io)?;
        }
    }

    crate::trace::mark("port");
    // Inside the container: addresses (no DAD wait unless asked), up, routes.
    let no_dad = routed || !conf.enable_dad;
    if has_v6 && no_dad {
        ctr.accept_dad(ifname, 0).await.map_err(CniError::io)?;
    }
    for ip in &result.ips {
        let req = ctr.addr_add(ifname, ip.address);
        let req = if ip.address.is_ipv6() && no_dad {
            req.nodad()
        } else {
            req
        };
        req.await.map_err(CniError::io)?;
    }
    // A container without IPv6 addresses on a bridge gets no IPv6 link-local address either
    // (unless `ipv6LinkLocal`): otherwise its duplicate address detection, MLD reports and
    // router solicitations go to the bridge, which floods each to every port, a cost every
    // ADD on a big bridge pays N times over.
    let mut up = ctr.link_set(ifname).up();
    if !routed && !has_v6 && !conf.ipv6_link_local {
        up = up.addr_gen_mode(AddrGenMode::None);
    }
    up.apply().await.map_err(CniError::io)?;
    crate::trace::mark("ctr-up");
    if routed && has_v4 {
        ctr.route_replace(&Route::new(full_prefix(ROUTED_GW4)).dev(ifname))
            .await
            .map_err(CniError::io)?;
        // The gateway's MAC is known: no ARP needed (proxy ARP on the host answers only when
        // the host has a route to 169.254.1.1, which a host without a default route lacks).
        let gw = netkit_core::neigh::Neighbour::new(ifname, ROUTED_GW4, netkit_core::MacAddr(ROUTED_HOST_MAC));
        ctr.neigh_replace(&gw).await.map_err(CniError::io)?;
    }
    let mut routes = result.routes.clone();
    if conf.is_default_gateway || routed {
        for ip in &result.ips {
            let dst: IpNetwork = if ip.address.is_ipv4() { "0.0.0.0/0" } else { "::/0" }
                .parse()
                .expect("literal");
            if !routes.iter().any(|r| r.dst == dst) {
                routes.push(RouteResult { dst, gw: ip.gateway });
            }
        }
    }
    for r in &mut routes {
        let gw = if routed {
            gateway_for(result, r.dst)
        } else {
            r.gw.or_else(|| gateway_for(result, r.dst))
        };
        r.gw = gw;
        let mut route = Route::new(r.dst).dev(ifname);
        if let Some(gw) = gw {
            route = route.gateway(gw);
        }
        ctr.route_replace(&route).await.map_err(CniError::io)?;
    }
    result.routes = routes;

    if routed {
        // The host reaches the container through its own end of the pair.
        for ip in &result.ips {
            host.route_replace(&Route::new(ip.address).dev(host_end))
                .await
                .map_err(CniError::io)?;
        }
        if has_v4 {
            host.ip_forward(true).await.map_err(CniError::io)?;
        }
        if has_v6 {
            host.ipv6_forwarding(true).await.map_err(CniError::io)?;
        }
    }

    crate::trace::mark("routes");
    // The bridge as the containers' gateway.
    if conf.is_gateway && !routed {
        for ip in &result.ips {
            if let Some(gw) = ip.gateway {
                let addr = IpNetwork::new(gw, ip.address.prefix()).map_err(CniError::io)?;
                // No dump first (it lists every address of the host namespace): an address
                // already there, from an earlier or a parallel ADD, answers EEXIST.
                let req = host.addr_add(&conf.bridge, addr);
                let res = if gw.is_ipv6() { req.nodad().await } else { req.await };
                if let Err(e) = res {
                    if !e.is_exists() {
                        return Err(CniError::io(e));
                    }
                }
            }
        }
        host.ip_forward(true).await.map_err(CniError::io)?;
        if has_v6 {
            host.ipv6_forwarding(true).await.map_err(CniError::io)?;
        }
    }
    Ok(())
}

/// The firewall rules of an attachment (`None`: neither masquerade nor port mappings).
fn firewall_rules(
    conf: &PluginConf,
    env: &CniEnv,
    pools: &[IpNetwork],
    result: &IpamResult,
    host_end: &str,
) -> Result<Option<Rules>, CniError> {
    let ips: Vec<IpAddr> = result.ips.iter().map(|i| i.address.ip()).collect();
    let mappings = conf.mappings_for(&ips)?;
    if !conf.ip_masq && mappings.is_empty() {
        return Ok(None);
    }
    owner(env)?;
    let mut rules = Rules {
        port_mappings: mappings,
        ..Default::default()
    };
    for ip in &result.ips {
        let subnet = IpNetwork::new(ip.address.network(), ip.address.prefix()).map_err(CniError::io)?;
        let iface = match conf.mode {
            Mode::Routed => host_end,
            Mode::Bridge => conf.bridge.as_str(),
        };
        rules.networks.push(Network::new(iface, subnet));
        if conf.ip_masq {
            // One masquerade per network (the IPAM pool, or the subnet the address came
            // with), held by every container on it: the kernel keeps one entry whatever the
            // number of containers, so ADD and DEL do not touch it but for the first and last
            // container. Traffic within the network stays unmasqueraded (pod to pod,
            // Kubernetes' rule; routed mode too, although each address is alone on its link).
            let network = pools
                .iter()
                .find(|p| p.contains(ip.address.ip()))
                .copied()
                .unwrap_or(subnet);
            rules.masquerades.push(Masquerade::subnet(network));
        }
    }
    Ok(Some(rules))
}

/// The pool subnets the addresses came from (the in-process allocator knows its ranges).
///
/// A delegated plugin's are the subnets its addresses came with (before routed mode narrows
/// them to /32).
fn ipam_subnets(result: &IpamResult, ipam: &Ipam<'_>) -> Vec<IpNetwork> {
    match ipam {
        Ipam::InProcess(conf) => conf
            .pool()
            .map(|p| {
                p.sets()
                    .iter()
                    .flat_map(|s| s.ranges().iter().map(|r| r.subnet()))
                    .collect()
            })
            .unwrap_or_default(),
        Ipam::Delegate { .. } => result
            .ips
            .iter()
            .filter_map(|i| IpNetwork::new(i.address.network(), i.address.prefix()).ok())
            .collect(),
    }
}

fn gateway_for(result: &IpamResult, dst: IpNetwork) -> Option<IpAddr> {
    result
        .ips
        .iter()
        .find(|i| i.address.is_ipv4() == dst.is_ipv4())
        .and_then(|i| i.gateway)
}

/// The bridge, created (up, with the configured MTU and promiscuity) when missing.
async fn ensure_bridge(conf: &PluginConf, host: &Handle) -> Result<netkit_core::Link, CniError> {
    let link = match host.link_get(&conf.bridge).await {
        Ok(l) => l,
        Err(e) if e.is_not_found() => {
            let mut spec = Bridge::new(&conf.bridge);
            if let Some(m) = conf.mtu {
                spec = spec.mtu(m);
            }
            match host.link_add(&spec).await {
                Ok(l) => {
                    // Pin the MAC the kernel gave it: a bridge with no MAC of its own takes the
                    // lowest of its ports' and changes it as containers come and go, which
                    // breaks the gateway in every other container's neighbour cache.
                    if let Some(mac) = l.mac {
                        host.link_set(&conf.bridge)
                            .mac(mac)
                            .apply()
                            .await
                            .map_err(CniError::io)?;
                    }
                    l
                }
                // Another ADD created it at the same moment.
                Err(e) if e.is_exists() => host.link_get(&conf.bridge).await.map_err(CniError::io)?,
                Err(e) => return Err(CniError::io(e)),
            }
        }
        Err(e) => return Err(CniError::io(e)),
    };
    if link.kind.as_str() != "bridge" {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            format!("{} exists and is a {}, not a bridge", conf.bridge, link.kind.as_str()),
        ));
    }
    let mut set = host.link_set(&conf.bridge).up();
    if conf.promisc_mode {
        set = set.promisc(true);
    }
    set.apply().await.map_err(CniError::io)?;
    if conf.vlan.is_some() {
        host.bridge_vlan_filtering(&conf.bridge, true)
            .await
            .map_err(vlan_error)?;
    }
    Ok(link)
}

/// A VLAN step's error: code 103 on a kernel without bridge VLAN filtering.
fn vlan_error(e: netkit_core::LinkError) -> CniError {
    if e.is_unsupported() {
        return CniError::new(ErrorCode::KernelUnsupported, format!("vlan: {e}"));
    }
    CniError::io(e)
}

async fn undo(conf: &PluginConf, env: &CniEnv, ipam: &Ipam<'_>, host: &Handle, host_ns: &NetNs, made: &Made) {
    if made.firewall {
        if let (Ok(fw), Ok(o)) = (open_firewall(conf, host_ns).await, owner(env)) {
            let _ = fw.teardown(&o).await;
        }
    }
    if let Some(v) = &made.veth {
        let _ = host.link_del(v).await;
    }
    if let Some(i) = &made.ifb {
        let _ = host.link_del(i).await;
    }
    if made.ipam {
        let _ = ipam.del(env);
    }
}

/// DEL: everything ADD made for this attachment, whatever is left of it; missing pieces are
/// fine. Every step runs even when an earlier one fails; the first error is returned (IPAM's,
/// then the firewall's, then the links').
///
/// The veth pair goes first and in parallel with the rest: unless `waitLinkFree` is set, it is
/// deleted by a detached process and DEL goes on as soon as the pair has left both namespaces
/// (see `Handle::link_del_detached`). IPAM and the firewall are released meanwhile.
///
/// The detached processes (double-forked, at most a few per DEL, each gone within tens of
/// milliseconds) are reparented to init or to the caller's nearest subreaper, which must reap
/// them; a runtime that is a subreaper and reaps only its own children should set
/// `waitLinkFree`, which makes DEL start none.
pub async fn del(conf: &PluginConf, env: &CniEnv, ipam: &Ipam<'_>) -> Result<(), CniError> {
    let host_ns = NetNs::current().map_err(CniError::io)?;
    let host = Handle::current().map_err(CniError::io)?;
    let release = async {
        let ipam_res = ipam.del(env);
        let fw_res = match open_firewall(conf, &host_ns).await {
            Ok(fw) => match owner(env) {
                Ok(o) => fw.teardown(&o).await.map(drop).map_err(CniError::io),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        crate::trace::mark("released");
        ipam_res.and(fw_res)
    };
    let (links, released) = tokio::join!(del_links(conf, env, &host), release);
    released.and(links)
}

/// DEL's links: the host end by name (its peer, the container end, goes with it), or, when
/// there is no host end, the container's interface if its namespace is still there; then the
/// bandwidth ifb. Every step runs; the first error is returned.
async fn del_links(conf: &PluginConf, env: &CniEnv, host: &Handle) -> Result<(), CniError> {
    let del = |name: String| async move {
        if conf.wait_link_free {
            let existed = host.link_get(&name).await.is_ok();
            host.link_del(&name).await.map(|()| existed)
        } else {
            host.link_del_detached(&name).await
        }
    };
    let mut first: Option<CniError> = None;
    let existed = match del(host_veth(env)).await {
        Ok(existed) => existed,
        Err(e) => {
            first = Some(CniError::io(e));
            true
        }
    };
    crate::trace::mark("links");
    if !existed {
        if let Some(path) = env.netns.as_deref().filter(|p| !p.is_empty()) {
            if let Ok(ns) = NetNs::open_path(path) {
                if let Ok(ctr) = ns.handle().await {
                    if let Err(e) = ctr.link_del(env.ifname.as_deref().unwrap_or_default()).await {
                        first.get_or_insert(CniError::io(e));
                    }
                }
            }
        }
    }
    // The bandwidth capability's ifb, if ADD made one.
    if let Err(e) = del(host_ifb(env)).await {
        first.get_or_insert(CniError::io(e));
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// CHECK: the container interface exists with `prevResult`'s addresses and routes, the host end
/// is on the bridge, IPAM still holds the addresses.
pub async fn check(conf: &PluginConf, env: &CniEnv, ipam: &Ipam<'_>) -> Result<(), CniError> {
    let fail = |m: String| CniError::new(ErrorCode::CheckFailed, m);
    let prev = match conf.raw.get("prevResult") {
        Some(p) => IpamResult::from_json(p)?,
        None => return Err(fail("CHECK needs prevResult".into())),
    };
    let ns = NetNs::open_path(env.netns.as_deref().unwrap_or_default())
        .map_err(|e| CniError::new(ErrorCode::UnknownContainer, format!("container netns: {e}")))?;
    let ctr = ns.handle().await.map_err(CniError::io)?;
    let ifname = env.ifname.as_deref().unwrap_or_default();
    let link = ctr
        .link_get(ifname)
        .await
        .map_err(|e| fail(format!("interface {ifname} in the container: {e}")))?;
    // The MAC the result reported for the container interface.
    let reported = prev.interfaces.iter().find(|i| i.name == ifname && i.sandbox.is_some());
    if let Some(want) = reported.and_then(|i| i.mac.as_deref()) {
        let have = link.mac.map(|m| m.to_string()).unwrap_or_default();
        if !have.eq_ignore_ascii_case(want) {
            return Err(fail(format!("{ifname} has MAC {have}, the result said {want}")));
        }
    }
    let addrs = ctr.addr_list(Some(ifname)).await.map_err(CniError::io)?;
    for ip in &prev.ips {
        if !addrs.iter().any(|a| a.prefix == ip.address) {
            return Err(fail(format!("address {} is missing from {ifname}", ip.address)));
        }
    }
    // Each route of the result: same destination (default routes per family), through the
    // container interface, via the same gateway when the result names one.
    let routes = ctr.route_list(None, None).await.map_err(CniError::io)?;
    for r in &prev.routes {
        let want = (r.dst.prefix() != 0).then_some(r.dst);
        let found = routes.iter().any(|x| {
            x.dst == want
                && (x.family == netkit_core::IpFamily::V4) == r.dst.is_ipv4()
                && x.oif == Some(link.index)
                && r.gw.is_none_or(|gw| x.gateway == Some(gw))
        });
        if !found {
            let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
            return Err(fail(format!(
                "route to {}{via} dev {ifname} is missing in the container",
                r.dst
            )));
        }
    }
    let host = Handle::current().map_err(CniError::io)?;
    let hv = host
        .link_get(&host_veth(env))
        .await
        .map_err(|e| fail(format!("host end: {e}")))?;
    match conf.mode {
        Mode::Bridge => {
            let br = host
                .link_index(&conf.bridge)
                .await
                .map_err(|e| fail(format!("bridge: {e}")))?;
            if hv.master != Some(br) {
                return Err(fail(format!("{} is not a port of {}", hv.name, conf.bridge)));
            }
        }
        Mode::Routed => {
            let host_routes = host.route_list(None, None).await.map_err(CniError::io)?;
            for ip in &prev.ips {
                let to_ctr = full_prefix(ip.address.ip());
                if !host_routes
                    .iter()
                    .any(|r| r.dst == Some(to_ctr) && r.oif == Some(hv.index))
                {
                    return Err(fail(format!("the host route to {to_ctr} via {} is missing", hv.name)));
                }
            }
        }
    }
    if conf.bandwidth.egress.is_some() {
        host.link_get(&host_ifb(env))
            .await
            .map_err(|e| fail(format!("the ifb of the egress limit: {e}")))?;
    }
    ipam.check(env)
}
