//! Ethernet (MAC) addresses.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address, printed and parsed as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// From a slice of exactly 6 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Self(b.try_into().ok()?))
    }

    /// A random locally administered unicast address (like the kernel's
    /// `eth_random_addr`).
    pub fn random() -> Self {
        let mut b = [0u8; 6];
        crate::random::fill(&mut b);
        b[0] = (b[0] & 0xfe) | 0x02;
        Self(b)
    }

    /// A locally administered unicast address derived from `key` (a stable hash: the same key
    /// gives the same address in every process and build; parts are joined with NUL bytes).
    /// A device remade with the same address keeps its neighbours' ARP/NDP entries valid, so
    /// traffic resumes at once instead of after the entries time out.
    ///
    /// ```
    /// use netkit_core::MacAddr;
    /// let m = MacAddr::stable(&["lab1", "h1", "eth1"]);
    /// assert_eq!(m, MacAddr::stable(&["lab1", "h1", "eth1"]));
    /// assert_eq!(m.octets()[0] & 0x03, 0x02); // local, unicast
    /// ```
    pub fn stable(key: &[&str]) -> Self {
        let h = crate::fsutil::fnv1a(key.join("\0").as_bytes()).to_be_bytes();
        let mut b = [h[2], h[3], h[4], h[5], h[6], h[7]];
        b[0] = (b[0] & 0xfe) | 0x02;
        Self(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Error parsing a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: want six hex bytes like 02:42:ac:11:00:02")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(err)?;
            if p.is_empty() || p.len() > 2 {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        let m: MacAddr = "ee:EE:0:1:a:ff".parse().unwrap();
        assert_eq!(m.to_string(), "ee:ee:00:01:0a:ff");
        assert_eq!(m.to_string().parse::<MacAddr>().unwrap(), m);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "1:2:3:4:5",
            "1:2:3:4:5:6:7",
            "zz:00:00:00:00:00",
            "100:0:0:0:0:0",
            "::::::",
            "1:2:3:4:5:6:",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn random_is_local_unicast() {
        let m = MacAddr::random();
        assert_eq!(m.0[0] & 0x03, 0x02);
    }
}
