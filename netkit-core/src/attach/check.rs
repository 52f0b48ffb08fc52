//! CHECK: the attachment is as ADD left it: the container interface exists with the MAC,
//! addresses and routes of `prevResult`, the host end is on the bridge (bridge mode) or the
//! host routes to the container are there (routed mode), the bandwidth ifb exists when
//! asked for, and IPAM still holds the addresses.

use super::attachment::Attachment;
use super::config::{Mode, NetworkConfig};
use super::error::{AttachError, ErrorKind};
use super::names::Names;
use super::result::CniResult;
use super::routed;
use super::sides::Sides;

/// CHECK: the attachment `att` names is as ADD left it, ADD's result being the configuration's
/// `prevResult` (see [`NetworkConfig::with_prev_result`]); [`ErrorKind::CheckFailed`] names
/// the first difference.
pub async fn check(conf: &NetworkConfig, att: &Attachment) -> Result<(), AttachError> {
    let fail = |m: String| AttachError::new(ErrorKind::CheckFailed, m);
    let prev = match conf.raw.get("prevResult") {
        Some(p) => CniResult::from_json(p)?,
        None => return Err(fail("CHECK needs prevResult".into())),
    };
    let req = att;
    let att = Names::new(&conf.name, &req.container_id, &req.ifname)?;
    let sides = Sides::open(req).await?;
    let (host, ctr) = (&sides.host, &sides.ctr);
    let ifname = att.ifname();
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
    let addrs = ctr.addr_list(Some(ifname)).await.map_err(AttachError::io)?;
    for ip in &prev.ips {
        if !addrs.iter().any(|a| a.prefix == ip.address) {
            return Err(fail(format!("address {} is missing from {ifname}", ip.address)));
        }
    }
    // Each route of the result: same destination (default routes per family), through the
    // container interface, via the same gateway when the result names one.
    let routes = ctr.route_list(None, None).await.map_err(AttachError::io)?;
    for r in &prev.routes {
        let want = (r.dst.prefix() != 0).then_some(r.dst);
        let found = routes.iter().any(|x| {
            x.dst == want
                && (x.family == crate::IpFamily::V4) == r.dst.is_ipv4()
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
    let hv = host
        .link_get(&att.host_veth())
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
            let host_routes = host.route_list(None, None).await.map_err(AttachError::io)?;
            for ip in &prev.ips {
                let to_ctr = routed::full_prefix(ip.address.ip());
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
        host.link_get(&att.host_ifb())
            .await
            .map_err(|e| fail(format!("the ifb of the egress limit: {e}")))?;
    }
    conf.ipam.check(req)
}
