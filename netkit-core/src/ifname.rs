//! Interface names: the one rule every netkit API checks a name against (links, firewall
//! objects, IPAM owners, the CNI plugin's bridge and container interface).
//!
//! A name is 1–15 bytes ([`MAX_LEN`]) of ASCII letters, digits, `_`, `.`, `-` and `@`, and
//! neither `.` nor `..`. That is a strict subset of what the kernel accepts (any byte but
//! `/`, `:`, whitespace and NUL), chosen so that a name can never change the meaning of a
//! command or rule it ends up in: iptables reads a trailing `+` as a wildcard (`-o eth+`
//! matches every `eth…`), quotes and backslashes end or escape strings in nft and
//! iptables-restore input, and control characters and non-ASCII bytes garble logs. Every name
//! that Docker, Podman, containerd, CRI-O, Kubernetes, Multus, Calico and Flannel generate
//! fits. A link made by someone else with a name outside the rule is still listed by
//! [`crate::Handle::link_list`], but netkit refuses to address it by that name.
//!
//! ```
//! use netkit_core::ifname;
//! assert!(ifname::check("eth0").is_ok() && ifname::check("net@1").is_ok());
//! assert!(ifname::check("eth+").is_err() && ifname::check("a\"b").is_err());
//! assert!(ifname::check("sixteen-bytes-xx").is_err());
//! ```

/// The longest interface name (the kernel's `IFNAMSIZ` less the terminating NUL).
pub const MAX_LEN: usize = 15;

/// A name that breaks the rule (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a valid interface name: {reason}")]
pub struct InvalidIfname {
    /// The name as given.
    pub name: String,
    /// Which part of the rule it breaks.
    pub reason: &'static str,
}

/// Check `name` against the rule (see the [module docs](self)).
pub fn check(name: &str) -> Result<(), InvalidIfname> {
    let bad = |reason| {
        Err(InvalidIfname {
            name: name.chars().take(64).collect(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_LEN {
        return bad("it must be 1 to 15 bytes long");
    }
    if name == "." || name == ".." {
        return bad("it cannot be '.' or '..'");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-@".contains(&b)) {
        return bad("only ASCII letters, digits, '_', '.', '-' and '@' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        for ok in [
            "eth0",
            "cni0",
            "veth1a2b3c4d5e6",
            "net@1",
            "eth0.100",
            "br-1a2b",
            "_x",
            "a",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\"b",
            "a'b",
            "a\\b",
            "eth+",
            "é",
            "a\u{1}b",
            "0123456789abcdef",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        // Long hostile input is clipped in the error.
        assert_eq!(check(&"x".repeat(1000)).unwrap_err().name.len(), 64);
    }
}
