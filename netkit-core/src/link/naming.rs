//! Link names derived from stable identifiers.

use super::LinkError;

/// A link name made of `prefix` and 8 hex digits of a stable hash of `key` (FNV-1a, the same
/// in every build and process), like Calico's `cali…` or the reference plugins' `veth…`
/// names: a later process recomputes it from the same identifiers (a CNI DEL finds the host end
/// of a container's veth from the container ID and interface name, even when the container's
/// namespace is gone). The parts of `key` are joined with NUL bytes, so `["ab", "c"]` and
/// `["a", "bc"]` differ. `prefix` may be 1–7 bytes (names hold at most 15).
///
/// ```
/// let n = netkit_core::link::hashed_name("veth", &["3f2a9c", "eth0"]).unwrap();
/// assert_eq!(n.len(), 12);
/// assert_eq!(n, netkit_core::link::hashed_name("veth", &["3f2a9c", "eth0"]).unwrap());
/// ```
pub fn hashed_name(prefix: &str, key: &[&str]) -> Result<String, LinkError> {
    if prefix.is_empty() || prefix.len() > 7 || prefix.contains(['/', ':']) || prefix.contains(char::is_whitespace) {
        return Err(LinkError::Invalid {
            what: "name prefix",
            link: prefix.into(),
            reason: "1-7 bytes without '/', ':' or spaces (8 hex digits follow; names hold 15)".into(),
        });
    }
    let h = crate::fsutil::fnv1a(key.join("\0").as_bytes());
    Ok(format!("{prefix}{:08x}", (h ^ (h >> 32)) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_separated() {
        // The value netkit-cni has always given this attachment (DEL must find ADD's veth).
        let key = ["ctr0", "eth0"];
        assert_eq!(hashed_name("veth", &key).unwrap(), "veth628bef61");
        assert_ne!(
            hashed_name("veth", &["ab", "c"]).unwrap(),
            hashed_name("veth", &["a", "bc"]).unwrap()
        );
        assert!(hashed_name("toolongp", &key).is_err());
        assert!(hashed_name("", &key).is_err());
    }
}
