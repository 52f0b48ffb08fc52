//! Link names derived from stable identifiers.

use super::LinkError;

/// A link name made of `prefix` and as many hex digits of a stable hash of `key` as fit in
/// 15 bytes (FNV-1a, the same in every build and process; `veth` gets 11 digits, 44 bits), like
/// Calico's `cali…` or the reference plugins' `veth…` names: a later process recomputes it from
/// the same identifiers (a CNI DEL finds the host end of a container's veth from the container
/// ID and interface name, even when the container's namespace is gone). The parts of `key` are
/// joined with NUL bytes, so `["ab", "c"]` and `["a", "bc"]` differ. `prefix` may be 1–7 bytes
/// of what interface names allow ([`crate::ifname`]).
///
/// A hash can collide (with 44 bits, two of a million attachments share a name with odds of
/// about 3 %): callers that delete by a hashed name should also tag the link with its owner
/// (see [`crate::link::LinkSet::alias`]) and check the tag first, as netkit-cni does.
///
/// ```
/// let n = netkit_core::link::hashed_name("veth", &["3f2a9c", "eth0"]).unwrap();
/// assert_eq!(n.len(), 15);
/// assert_eq!(n, netkit_core::link::hashed_name("veth", &["3f2a9c", "eth0"]).unwrap());
/// ```
pub fn hashed_name(prefix: &str, key: &[&str]) -> Result<String, LinkError> {
    hashed_name_with(prefix, key, crate::ifname::MAX_LEN.saturating_sub(prefix.len()))
}

/// [`hashed_name`] with exactly `digits` hex digits (8 to 15 − `prefix.len()`): the 64-bit hash
/// is folded to `4 · digits` bits by xoring its high bits into its low ones. With 8 digits it
/// gives the names netkit made before 0.2 (`hashed_name` had 8 digits then), so a newer
/// process can still find links an older one made.
pub fn hashed_name_with(prefix: &str, key: &[&str], digits: usize) -> Result<String, LinkError> {
    let room = crate::ifname::MAX_LEN.saturating_sub(prefix.len());
    if prefix.is_empty() || prefix.len() > 7 || crate::ifname::check(prefix).is_err() || !(8..=room).contains(&digits) {
        return Err(LinkError::Invalid {
            what: "name prefix",
            link: prefix.chars().take(16).collect(),
            reason: "1-7 bytes of what interface names allow, and 8 to 15 - prefix length hex digits".into(),
        });
    }
    let bits = 4 * digits as u32;
    let h = crate::fsutil::fnv1a(key.join("\0").as_bytes());
    let folded = (h ^ (h >> bits)) & ((1u64 << bits) - 1);
    Ok(format!("{prefix}{folded:0digits$x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_separated() {
        // The value netkit-cni has always given this attachment (DEL must find ADD's veth).
        let key = ["ctr0", "eth0"];
        assert_eq!(hashed_name_with("veth", &key, 8).unwrap(), "veth628bef61");
        assert_eq!(hashed_name("veth", &key).unwrap().len(), 15);
        assert!(hashed_name_with("veth", &key, 12).is_err() && hashed_name_with("veth", &key, 7).is_err());
        assert_ne!(
            hashed_name("veth", &["ab", "c"]).unwrap(),
            hashed_name("veth", &["a", "bc"]).unwrap()
        );
        assert!(hashed_name("toolongp", &key).is_err());
        assert!(hashed_name("", &key).is_err());
    }
}
