//! ADD: attach a container.
//!
//! First everything that can be refused is checked, before the host changes at all: the
//! attachment's names, the container's namespace (a network namespace, and not the host
//! side's), the IPAM request, the port mappings, routed mode's pool. Then, in order, each step
//! recorded so that a failure undoes exactly what this call made and nothing else: the bridge
//! (bridge mode; never removed, other containers share it), IPAM (released on failure only when
//! this call claimed the addresses: a second ADD of a live attachment must not free the first
//! one's), the veth pair (the container end born inside the container's namespace), the host
//! end ([`bridge`] or [`routed`] mode), addresses and routes inside, the gateway addresses or
//! host routes, the firewall (masquerade, port mappings; on its own thread meanwhile), the
//! bandwidth limits. What the undo could not remove is named in the error's details.

use std::net::IpAddr;

use crate::firewall::Firewall;
use crate::ipam::Pool;
use crate::link::{AddrGenMode, Veth};
use crate::route::Route;
use crate::{Handle, MacAddr};
use ipnetwork::IpNetwork;

use super::attachment::Attachment;
use super::config::{Mode, NetworkConfig};
use super::error::{AttachError, ErrorKind};
use super::names::Names;
use super::result::{AttachResult, CniResult, InterfaceResult, RouteResult};
use super::sides::Sides;
use super::{bridge, fw, routed};

/// What ADD made so far, undone in reverse when a later step fails.
#[derive(Default)]
struct Made {
    /// IPAM claimed the addresses in this call.
    ipam: bool,
    veth: Option<String>,
    ifb: Option<String>,
    firewall: bool,
}

/// ADD: attach the container `att` names to the network `conf` describes (see the module
/// docs); the result is what the `netkit-cni` plugin prints.
pub async fn add(conf: &NetworkConfig, att: &Attachment) -> Result<AttachResult, AttachError> {
    let mac = match (conf.mac, att.arg_value("MAC")) {
        (Some(m), _) => Some(m),
        (None, Some(m)) => Some(m.parse().map_err(|_| {
            AttachError::new(
                ErrorKind::InvalidAttachment,
                format!("CNI_ARGS MAC {m:?} is not a MAC address"),
            )
        })?),
        (None, None) => None,
    };
    let names = Names::new(&conf.name, &att.container_id, &att.ifname)?;
    let pod = super::record::identity(conf, att)?;
    if conf.vlan.is_some() && conf.mode == Mode::Routed {
        return Err(AttachError::new(
            ErrorKind::InvalidConfig,
            "vlan applies to bridge mode (routed mode has no bridge)",
        ));
    }
    let sides = Sides::open(att).await?;
    let ipam = &conf.ipam;
    ipam.validate(att)?;
    conf.mappings_for(&[])?;
    let pool = match conf.mode {
        Mode::Routed => Some(ipam.pool()?),
        Mode::Bridge => None,
    };
    // A delegated IPAM cannot say whether it handed out the attachment's addresses anew: an
    // attachment whose host end exists is refused before IPAM is asked, so the undo of this
    // call never releases a live one's addresses (netkit's own IPAM tells, see `Made::ipam`).
    if ipam.is_delegate() && sides.host.link_get(&names.host_veth()).await.is_ok() {
        return Err(AttachError::new(
            ErrorKind::Io,
            format!(
                "container {} already has {} on network {:?} (host end {})",
                names.container_id(),
                names.ifname(),
                conf.name,
                names.host_veth()
            ),
        ));
    }
    let mut made = Made::default();
    let step = Step {
        conf,
        att,
        names: &names,
        sides: &sides,
        mac,
    };
    let attached = match step.attach(pool.as_ref(), &mut made).await {
        Ok(result) => result,
        Err(e) => return Err(step.undo(&made, e).await),
    };
    // Last: the pod's record for network policy. Without it the pod would escape every
    // policy, so an ADD that cannot write it is undone.
    if let Some(pod) = &pod {
        let ips = attached.ips.iter().map(|ip| ip.address.ip()).collect();
        let host_end = names.host_veth();
        if let Err(e) = pod.record(ips, &host_end).await {
            return Err(step.undo(&made, e).await);
        }
        att.mark("recorded");
    }
    Ok(AttachResult {
        version: conf.version,
        result: attached,
    })
}

/// What every step of one ADD reads.
struct Step<'a> {
    conf: &'a NetworkConfig,
    att: &'a Attachment,
    names: &'a Names,
    sides: &'a Sides,
    /// The container interface's MAC, when asked for.
    mac: Option<MacAddr>,
}

impl Step<'_> {
    async fn attach(&self, pool: Option<&Pool>, made: &mut Made) -> Result<CniResult, AttachError> {
        let Step {
            conf,
            att,
            names,
            sides,
            mac,
        } = *self;
        let ipam = &conf.ipam;
        let (host, ctr) = (&sides.host, &sides.ctr);
        let bridge = match conf.mode {
            Mode::Bridge => Some(bridge::ensure(conf, host).await?),
            Mode::Routed => None,
        };
        att.mark("bridge");
        let (mut result, fresh) = ipam.add(att)?;
        made.ipam = fresh;
        att.mark("ipam");
        let pools = ipam.subnets(&result);
        if let Some(pool) = pool {
            routed::narrow(&mut result, pool)?;
        }

        let host_end = names.host_veth();
        // Everything the firewall will be asked for is worked out (and refused) before the host
        // changes.
        let rules = fw::rules(conf, &pools, &result, &host_end)?;
        let mut veth = Veth::new(&host_end, names.ifname()).peer_netns(&sides.ctr_ns);
        if let Some(m) = conf.link_mtu()? {
            veth = veth.mtu(m);
        }
        // The container end's MAC is chosen here (as the kernel would: random, locally
        // administered) unless asked for, so the result needs no read-back from the container.
        let ctr_mac = mac.unwrap_or_else(MacAddr::random);
        veth = veth.peer_mac(ctr_mac);
        if conf.mode == Mode::Routed {
            veth = veth.mac(MacAddr(routed::HOST_MAC));
        }
        let host_link = host.link_add(&veth).await.map_err(AttachError::io)?;
        made.veth = Some(host_end.clone());
        att.mark("veth");

        // The firewall (on its own thread) while the links are wired up. It starts once the host
        // end exists: in routed mode its network is that interface.
        made.firewall = rules.is_some();
        let firewall = async {
            let Some(rules) = rules else { return Ok(None) };
            let fw = fw::open(conf, &sides.host_ns).await?;
            fw.add(&names.firewall_owner(), &rules).await.map_err(fw::fw_error)?;
            att.mark("firewall");
            Ok::<_, AttachError>(Some(fw))
        };
        let wire = async {
            match conf.mode {
                Mode::Bridge => bridge::wire_port(conf, names, host, &host_end).await?,
                Mode::Routed => routed::wire_host_end(names, host, &host_end, &result).await?,
            }
            att.mark("port");
            wire_container(conf, att, ctr, names.ifname(), &mut result).await?;
            att.mark("routes");
            match conf.mode {
                Mode::Bridge => bridge::gateway(conf, host, &result).await,
                Mode::Routed => routed::host_routes(host, &host_end, &result).await,
            }
        };
        let (fw, wired) = tokio::join!(firewall, wire);
        wired?;
        att.mark("wired");
        // Kept open to the end: closing the nf_tables socket waits for nf_tables' deferred cleanup
        // of the transaction, which by then has run.
        let _fw = fw?;
        limit_bandwidth(conf, names, host, &host_end, made).await?;

        // Read the bridge again: it takes a port's MAC when the first port joins.
        let bridge = match bridge {
            Some(_) => Some(host.link_get(&conf.bridge).await.map_err(AttachError::io)?),
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
                name: names.ifname().to_string(),
                mac: Some(ctr_mac.to_string()),
                sandbox: Some(sides.path.clone()),
            },
        ]);
        let ctr_index = result.interfaces.len() - 1;
        for ip in &mut result.ips {
            ip.interface = Some(ctr_index);
        }
        Ok(result)
    }

    /// Undo what `made` records, in reverse; every step is tried. The error `e` is returned, with
    /// what could not be undone in its details.
    async fn undo(&self, made: &Made, e: AttachError) -> AttachError {
        let Step {
            conf,
            att,
            names,
            sides,
            ..
        } = *self;
        let mut failed = Vec::new();
        if made.firewall {
            let owner = names.firewall_owner();
            match fw::open(conf, &sides.host_ns).await {
                Ok(fw) => {
                    if let Err(err) = fw.teardown(&owner).await {
                        failed.push(format!("firewall rules of {owner}: {err}"));
                    }
                }
                Err(err) => failed.push(format!("firewall rules of {owner}: {}", err.msg)),
            }
        }
        for link in made.ifb.iter().chain(&made.veth) {
            if let Err(err) = sides.host.link_del(link).await {
                failed.push(format!("link {link}: {err}"));
            }
        }
        if made.ipam {
            if let Err(err) = conf.ipam.del(att) {
                failed.push(format!("addresses of {}: {}", names.ipam_owner(), err.msg));
            }
        }
        if failed.is_empty() {
            return e;
        }
        let undo = format!("the ADD could not undo: {}", failed.join("; "));
        let details = match &e.details {
            Some(d) => format!("{d}; {undo}"),
            None => undo,
        };
        e.with_details(details)
    }
}

/// Inside the container, in both modes: addresses (no DAD wait unless asked), the interface
/// up, routed mode's gateway, the routes (the default route per family with
/// `isDefaultGateway`, and always in routed mode).
async fn wire_container(
    conf: &NetworkConfig,
    att: &Attachment,
    ctr: &Handle,
    ifname: &str,
    result: &mut CniResult,
) -> Result<(), AttachError> {
    let routed = conf.mode == Mode::Routed;
    let has_v4 = result.ips.iter().any(|i| i.address.is_ipv4());
    let has_v6 = result.ips.iter().any(|i| i.address.is_ipv6());
    let no_dad = routed || !conf.enable_dad;
    if has_v6 && no_dad {
        ctr.accept_dad(ifname, 0).await.map_err(AttachError::io)?;
    }
    for ip in &result.ips {
        let req = ctr.addr_add(ifname, ip.address);
        let req = if ip.address.is_ipv6() && no_dad {
            req.nodad()
        } else {
            req
        };
        req.await.map_err(AttachError::io)?;
    }
    // A container without IPv6 addresses on a bridge gets no IPv6 link-local address either
    // (unless `ipv6LinkLocal`): otherwise its duplicate address detection, MLD reports and
    // router solicitations go to the bridge, which floods each to every port, a cost every
    // ADD on a big bridge pays N times over.
    let mut up = ctr.link_set(ifname).up();
    if !routed && !has_v6 && !conf.ipv6_link_local {
        up = up.addr_gen_mode(AddrGenMode::None);
    }
    up.apply().await.map_err(AttachError::io)?;
    att.mark("ctr-up");
    if routed && has_v4 {
        ctr.route_replace(&Route::new(routed::full_prefix(routed::GW4)).dev(ifname))
            .await
            .map_err(AttachError::io)?;
        // The gateway's MAC is known: no ARP needed (proxy ARP on the host answers only when
        // the host has a route to 169.254.1.1, which a host without a default route lacks).
        let gw = crate::neigh::Neighbour::new(ifname, routed::GW4, MacAddr(routed::HOST_MAC));
        ctr.neigh_replace(&gw).await.map_err(AttachError::io)?;
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
        ctr.route_replace(&route).await.map_err(AttachError::io)?;
    }
    result.routes = routes;
    Ok(())
}

/// The `bandwidth` capability, on the host end of the pair: traffic to the container is held
/// by a token bucket on the host end; traffic from it, which arrives at the host end, is
/// redirected to an ifb device and held by a token bucket there (the reference bandwidth
/// plugin's scheme). A kernel without tbf, ifb, u32 or mirred: [`ErrorKind::KernelUnsupported`].
async fn limit_bandwidth(
    conf: &NetworkConfig,
    att: &Names,
    host: &Handle,
    host_end: &str,
    made: &mut Made,
) -> Result<(), AttachError> {
    let tc_err = |e: crate::tc::TcError| {
        let code = if e.is_unsupported() {
            ErrorKind::KernelUnsupported
        } else {
            ErrorKind::Io
        };
        AttachError::new(code, format!("bandwidth: {e}"))
    };
    if let Some(bucket) = &conf.bandwidth.ingress {
        host.qdisc_tbf_replace(host_end, bucket).await.map_err(tc_err)?;
    }
    if let Some(bucket) = &conf.bandwidth.egress {
        let ifb = att.host_ifb();
        match host.link_add(&crate::link::Ifb::new(&ifb).up()).await {
            Ok(_) => {}
            Err(e) if e.is_unsupported() => {
                return Err(AttachError::new(
                    ErrorKind::KernelUnsupported,
                    format!("bandwidth: {e}"),
                ))
            }
            Err(e) => return Err(AttachError::io(e)),
        }
        made.ifb = Some(ifb.clone());
        host.link_set(&ifb)
            .alias(&att.tag())
            .apply()
            .await
            .map_err(AttachError::io)?;
        host.qdisc_tbf_replace(&ifb, bucket).await.map_err(tc_err)?;
        host.qdisc_ingress_add(host_end).await.map_err(tc_err)?;
        host.filter_redirect_ingress(host_end, &ifb).await.map_err(tc_err)?;
    }
    Ok(())
}

fn gateway_for(result: &CniResult, dst: IpNetwork) -> Option<IpAddr> {
    result
        .ips
        .iter()
        .find(|i| i.address.is_ipv4() == dst.is_ipv4())
        .and_then(|i| i.gateway)
}
