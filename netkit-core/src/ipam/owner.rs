//! Who holds an address: a (container ID, interface name) pair, as CNI identifies attachments.

use std::fmt;

use super::IpamError;

/// The holder of addresses: one attachment, `(container ID, interface name)`.
///
/// Validated as CNI 1.x requires: the container ID starts with a letter or digit followed by
/// letters, digits, `_`, `.` or `-` (at most 200 bytes here, so it can name a file); the
/// interface name follows netkit's one rule for interface names ([`crate::ifname`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    container_id: String,
    ifname: String,
}

/// The container ID prefix of a node agent's fences (see [`super::blocks`]).
pub(crate) const FENCE_PREFIX: &str = "netkit-fence-";
/// The container ID prefix of a node agent's loans to other nodes (see [`super::blocks`]).
pub(crate) const LEND_PREFIX: &str = "netkit-lend-";

impl Owner {
    /// Whether a node agent holds addresses under this owner — a fence or a loan (see
    /// [`super::blocks`]), no container's: [`Ipam::gc`](super::Ipam::gc) keeps them.
    pub fn is_agent_claim(&self) -> bool {
        self.container_id.starts_with(FENCE_PREFIX) || self.container_id.starts_with(LEND_PREFIX)
    }

    /// Validate an owner.
    pub fn new(container_id: &str, ifname: &str) -> Result<Self, IpamError> {
        let bad_id = |reason| IpamError::BadOwner {
            what: "container ID",
            value: container_id.to_string(),
            reason,
        };
        if container_id.is_empty() {
            return Err(bad_id("it is empty"));
        }
        if container_id.len() > 200 {
            return Err(bad_id("it is longer than 200 bytes"));
        }
        if !container_id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(bad_id("it must start with a letter or a digit"));
        }
        if !container_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(bad_id("only letters, digits, '_', '.' and '-' are allowed"));
        }
        let bad_if = |reason| IpamError::BadOwner {
            what: "interface name",
            value: ifname.to_string(),
            reason,
        };
        if let Err(e) = crate::ifname::check(ifname) {
            return Err(bad_if(e.reason));
        }
        Ok(Self {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        })
    }

    /// The container ID.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// The interface name inside the container.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The store's file name for this owner: `<container ID>:<ifname>` (neither part can hold
    /// a `:`, so the name is unambiguous).
    pub(crate) fn key(&self) -> String {
        format!("{}:{}", self.container_id, self.ifname)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "container {} interface {}", self.container_id, self.ifname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(Owner::new("abc-1.2_3", "eth0").is_ok());
        for (id, ifname) in [
            ("", "eth0"),
            ("-x", "eth0"),
            ("a b", "eth0"),
            ("a/b", "eth0"),
            ("a:b", "eth0"),
            ("ok", ""),
            ("ok", "a234567890123456"),
            ("ok", "e/0"),
            ("ok", "e:0"),
            ("ok", ".."),
            ("ok", "e 0"),
        ] {
            assert!(Owner::new(id, ifname).is_err(), "{id:?} {ifname:?}");
        }
        assert!(Owner::new(&"a".repeat(201), "eth0").is_err());
        assert_eq!(Owner::new("c1", "net1").unwrap().key(), "c1:net1");
    }
}
