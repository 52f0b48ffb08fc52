//! The names of one attachment — a container's interface on one network — checked once and
//! the same way for ADD, CHECK, DEL and GC, with every name derived from it: the IPAM owner, the
//! firewall owner, the host-side link names and the tag those links carry.
//!
//! An attachment is valid when its container ID is 1–200 bytes of letters, digits, `_ . -`
//! starting with a letter or digit (CNI's rule), its interface name follows netkit's interface
//! name rule ([`crate::ifname`]), and its firewall owner
//! (`<network>/<container ID>:<ifname>`) fits [`firewall::MAX_OWNER_LEN`]. ADD and CHECK
//! refuse an invalid attachment ([`ErrorKind::InvalidAttachment`]); DEL of one succeeds without doing anything, since no
//! ADD can have made anything for it, so a runtime can always delete its pod.

use crate::firewall;
use crate::ipam::Owner;
use crate::link::{hashed_name, hashed_name_with};

use super::error::{AttachError, ErrorKind};

/// Prefix of the host end's name (see [`Names::host_veth`]).
pub const VETH_PREFIX: &str = "veth";
/// Prefix of the bandwidth ifb's name (see [`Names::host_ifb`]).
pub const IFB_PREFIX: &str = "nkbw";
/// What a host-side link's alias starts with (see [`Names::tag`]).
pub const TAG_PREFIX: &str = "nk:";

/// The names of one container interface on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    network: String,
    owner: Owner,
}

impl Names {
    /// Check an attachment of `network` (a validated network name).
    pub fn new(network: &str, container_id: &str, ifname: &str) -> Result<Self, AttachError> {
        let owner = Owner::new(container_id, ifname)
            .map_err(|e| AttachError::new(ErrorKind::InvalidAttachment, e.to_string()))?;
        let a = Names {
            network: network.to_string(),
            owner,
        };
        firewall::check_owner(&a.firewall_owner()).map_err(|_| {
            AttachError::new(
                ErrorKind::InvalidAttachment,
                format!(
                    "network {network:?}, container ID and interface name are too long together \
                     (at most {} bytes as <network>/<container ID>:<ifname>)",
                    firewall::MAX_OWNER_LEN
                ),
            )
        })?;
        Ok(a)
    }

    /// The network's name.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The container ID.
    pub fn container_id(&self) -> &str {
        self.owner.container_id()
    }

    /// The interface name inside the container.
    pub fn ifname(&self) -> &str {
        self.owner.ifname()
    }

    /// The IPAM owner (the store is per network already).
    pub fn ipam_owner(&self) -> &Owner {
        &self.owner
    }

    /// The firewall owner: `<network>/<container ID>:<ifname>`, so a GC of one network only
    /// ever touches its own owners ([`firewall_scope`]), whatever shares the state directory.
    pub fn firewall_owner(&self) -> String {
        format!(
            "{}{}:{}",
            firewall_scope(&self.network),
            self.container_id(),
            self.ifname()
        )
    }

    /// The firewall owner netkit-cni used before 0.2 (`<container ID>:<ifname>`): DEL removes
    /// it too, so attachments made before an upgrade lose their rules with their pod.
    pub fn legacy_firewall_owner(&self) -> String {
        format!("{}:{}", self.container_id(), self.ifname())
    }

    fn link_name(&self, prefix: &str) -> String {
        hashed_name(prefix, &[self.container_id(), self.ifname()]).expect("a valid literal prefix")
    }

    fn legacy_link_name(&self, prefix: &str) -> String {
        hashed_name_with(prefix, &[self.container_id(), self.ifname()], 8).expect("a valid literal prefix")
    }

    /// The host end of the veth pair: `veth` + 11 hex digits of a hash of the container ID and
    /// interface name, the same in every process, so DEL and GC find what ADD made even when
    /// the container's namespace is gone.
    pub fn host_veth(&self) -> String {
        self.link_name(VETH_PREFIX)
    }

    /// The ifb device that shapes the container's outgoing traffic (`bandwidth` egress):
    /// `nkbw` + the same hash.
    pub fn host_ifb(&self) -> String {
        self.link_name(IFB_PREFIX)
    }

    /// The host end's name before 0.2 (8 hex digits).
    pub fn legacy_host_veth(&self) -> String {
        self.legacy_link_name(VETH_PREFIX)
    }

    /// The ifb's name before 0.2 (8 hex digits).
    pub fn legacy_host_ifb(&self) -> String {
        self.legacy_link_name(IFB_PREFIX)
    }

    /// The alias every host-side link of the attachment carries: `nk:<firewall owner>`. A hash
    /// can collide; DEL and GC delete a link by its hashed name only when it carries this tag
    /// (or none: one made before the tag was set, by a process killed in between, or by a
    /// version before 0.2), never one tagged for another attachment.
    pub fn tag(&self) -> String {
        format!("{TAG_PREFIX}{}", self.firewall_owner())
    }

    /// True when a link with this alias (`None`: no alias) may be deleted as this attachment's.
    pub fn owns_tag(&self, alias: Option<&str>) -> bool {
        alias.is_none_or(|a| a == self.tag())
    }
}

/// The prefix of every firewall owner of `network`: `<network>/`.
pub fn firewall_scope(network: &str) -> String {
    format!("{network}/")
}

/// CNI's rule for network names: a letter or digit, then letters, digits, `_ . -`; netkit caps
/// the length at 128 bytes (the name is a directory of the IPAM store and part of every
/// firewall owner).
pub fn check_network_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        return Ok(());
    }
    let shown: String = name.chars().take(64).collect();
    Err(format!(
        "network name {shown:?}: 1-128 of letters, digits, '_', '.', '-', starting with a letter or digit"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags() {
        let a = Names::new("podnet", "ctr0", "eth0").unwrap();
        assert_eq!(a.firewall_owner(), "podnet/ctr0:eth0");
        assert_eq!(a.legacy_firewall_owner(), "ctr0:eth0");
        assert_eq!(
            a.legacy_host_veth(),
            "veth628bef61",
            "the name netkit-cni always gave it"
        );
        assert_eq!(a.host_veth().len(), 15);
        assert!(a.host_veth().starts_with("veth") && a.host_ifb().starts_with("nkbw"));
        assert_eq!(a.host_veth()[4..], a.host_ifb()[4..]);
        assert_eq!(a.tag(), "nk:podnet/ctr0:eth0");
        assert!(a.owns_tag(None) && a.owns_tag(Some("nk:podnet/ctr0:eth0")));
        assert!(!a.owns_tag(Some("nk:other/ctr0:eth0")));
        // One check for every verb: names ADD accepts, DEL accepts.
        assert!(Names::new("podnet", "ctr0", "net@1").is_ok());
        assert!(Names::new("podnet", &"c".repeat(130), "eth0").is_ok());
        for (cid, ifname) in [
            ("", "eth0"),
            ("-x", "eth0"),
            ("a b", "eth0"),
            ("c", "eth+"),
            ("c", "a\"b"),
        ] {
            assert_eq!(
                Names::new("podnet", cid, ifname).unwrap_err().kind,
                ErrorKind::InvalidAttachment,
                "{cid:?} {ifname:?}"
            );
        }
        assert!(check_network_name("k8s-pod-network").is_ok());
        for bad in ["", "-x", "a/b", "a b", "../x", &"n".repeat(129)] {
            assert!(check_network_name(bad).is_err(), "{bad:?}");
        }
    }
}
