//! DEL and GC: remove what ADD made, whatever is left of it.
//!
//! DEL of an attachment removes its addresses (IPAM), its firewall rules and its host-side
//! links; missing pieces are fine, and every step runs even when an earlier one fails (the
//! first error is returned: IPAM's, then the firewall's, then the links'). The links go first
//! and alongside the rest: unless `waitLinkFree` is set, a detached process deletes the veth
//! pair and DEL goes on as soon as the pair has left both namespaces (see
//! `Handle::link_del_detached`); IPAM and the firewall are released meanwhile.
//!
//! A host-side link is found by its hashed name and deleted only when it carries this
//! attachment's tag, or no tag at all (see [`Names::tag`]): a link another attachment
//! made under a colliding name is left alone. The names netkit-cni gave before 0.2 are tried
//! too, so attachments made before an upgrade are deleted with their pods.
//!
//! GC is scoped to its network: the IPAM store is the network's own, firewall owners carry the
//! network's name, and the host-side links' tags name it; another network's attachments that
//! share the host are never touched. Besides what DEL removes, GC removes this network's tagged
//! host ends and ifbs of attachments that are not valid (left by a plugin killed mid-ADD).

use crate::{Handle, NetNs};

use super::attachment::{Attachment, Host};
use super::config::NetworkConfig;
use super::error::AttachError;
use super::fw;
use super::ipam::IpamNetwork;
use super::names::{firewall_scope, Names, IFB_PREFIX, TAG_PREFIX, VETH_PREFIX};
use super::sides::host_handle;

/// DEL: detach the container `att` names (see the module docs). An attachment that ADD would
/// refuse (see [`Names`]) has nothing to delete: DEL of it succeeds without doing anything.
pub async fn del(conf: &NetworkConfig, att: &Attachment) -> Result<(), AttachError> {
    let Ok(names) = Names::new(&conf.name, &att.container_id, &att.ifname) else {
        return Ok(());
    };
    let host_ns = att.host.open().map_err(AttachError::io)?;
    let host = host_handle(&att.host).await?;
    let release = async {
        let ipam_res = conf.ipam.del(att);
        let fw_res = fw::release(conf, &host_ns, &names).await;
        att.mark("released");
        ipam_res.and(fw_res)
    };
    let forget = async {
        match super::record::identity(conf, att) {
            Ok(Some(pod)) => pod.forget().await,
            // DEL of a pod the runtime does not name (or no clusterStore): nothing recorded.
            Ok(None) | Err(_) => Ok(()),
        }
    };
    let (links, released, forgotten) = tokio::join!(del_links(conf, att, &names, &host), release, forget);
    released.and(links).and(forgotten)
}

/// DEL's links: the host end (its peer, the container end, goes with it), or, when there is no
/// host end, the container's interface if its namespace is still there; then the bandwidth
/// ifb. Every step runs; the first error is returned.
async fn del_links(conf: &NetworkConfig, req: &Attachment, att: &Names, host: &Handle) -> Result<(), AttachError> {
    let mut first: Option<AttachError> = None;
    let mut existed = false;
    for name in [att.host_veth(), att.legacy_host_veth()] {
        match delete_own(conf, host, att, &name).await {
            Ok(e) => existed |= e,
            Err(e) => {
                existed = true;
                first.get_or_insert(e);
            }
        }
    }
    req.mark("links");
    if !existed {
        if let Some(path) = req.netns.as_deref().filter(|p| !p.is_empty()) {
            if let Ok(ns) = NetNs::open_path(path) {
                if let Ok(ctr) = ns.handle().await {
                    if let Err(e) = ctr.link_del(att.ifname()).await {
                        first.get_or_insert(AttachError::io(e));
                    }
                }
            }
        }
    }
    for name in [att.host_ifb(), att.legacy_host_ifb()] {
        if let Err(e) = delete_own(conf, host, att, &name).await {
            first.get_or_insert(e);
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Delete link `name` if it exists and is `att`'s (its tag, or none): `Ok(true)` when it was
/// there and deleted, `Ok(false)` when there was none or it is another attachment's.
async fn delete_own(conf: &NetworkConfig, host: &Handle, att: &Names, name: &str) -> Result<bool, AttachError> {
    let link = match host.link_get(name).await {
        Ok(l) => l,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => return Err(AttachError::io(e)),
    };
    if !att.owns_tag(link.alias.as_deref()) {
        return Ok(false);
    }
    delete(conf, host, &link).await.map(|()| true)
}

/// Delete a host-side link: detached unless `waitLinkFree` (see the module docs).
async fn delete(conf: &NetworkConfig, host: &Handle, link: &crate::Link) -> Result<(), AttachError> {
    if conf.wait_link_free || link.kind.as_str() != "veth" {
        host.link_del_by_index(link.index).await.map_err(AttachError::io)
    } else {
        host.link_del_detached(&link.name)
            .await
            .map(drop)
            .map_err(AttachError::io)
    }
}

/// GC: IPAM, the firewall owners and the host-side links of this network that belong to no
/// valid attachment (the configuration's `cni.dev/valid-attachments`, as CNI 1.1's GC has it).
/// Every part runs; the first error is returned.
pub async fn gc(conf: &NetworkConfig, host: &Host) -> Result<(), AttachError> {
    let raw = serde_json::to_vec(&conf.raw).unwrap_or_default();
    let valid: Vec<Names> = IpamNetwork::parse_without_ipam(&raw)?
        .valid_attachments()?
        .iter()
        // One that ADD would refuse has nothing to keep.
        .filter_map(|o| Names::new(&conf.name, o.container_id(), o.ifname()).ok())
        .collect();
    let ipam_result = conf.ipam.gc(host);
    let host_ns = host.open().map_err(AttachError::io)?;
    let fw_result = fw::gc(conf, &host_ns, &valid).await;
    let link_result = gc_links(conf, host, &valid).await;
    ipam_result.and(fw_result).and(link_result)
}

/// This network's tagged host ends and ifbs whose attachment is not valid.
async fn gc_links(conf: &NetworkConfig, host: &Host, valid: &[Names]) -> Result<(), AttachError> {
    let host = host_handle(host).await?;
    let mine = format!("{TAG_PREFIX}{}", firewall_scope(&conf.name));
    let keep: Vec<String> = valid.iter().map(Names::tag).collect();
    let mut first = None;
    for l in host.link_list().await.map_err(AttachError::io)? {
        let ours = l.name.starts_with(VETH_PREFIX) || l.name.starts_with(IFB_PREFIX);
        let stale = l
            .alias
            .as_ref()
            .is_some_and(|a| a.starts_with(&mine) && !keep.contains(a));
        if ours && stale {
            if let Err(e) = delete(conf, &host, &l).await {
                first.get_or_insert(e);
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
