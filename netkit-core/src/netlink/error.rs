//! The error a single netlink request can return.

use std::fmt;

use netlink_packet_core::{ErrorMessage, NLM_F_ACK_TLVS, NLM_F_CAPPED};

/// What the kernel (or the socket) answered to one netlink request.
///
/// Keeps the errno so callers can tell "exists" from "no such device", and the
/// kernel's extended-ack text ("Unknown device type", …) when it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetlinkError {
    /// Positive errno value (`libc::EEXIST`, `libc::ENODEV`, …); `None` when the
    /// failure did not come from the kernel (decode error, closed socket).
    pub errno: Option<i32>,
    /// The kernel's extended-ack message, or a description of a local failure.
    pub message: Option<String>,
}

impl NetlinkError {
    /// An error the kernel returned with this positive errno.
    pub fn from_errno(errno: i32) -> Self {
        Self {
            errno: Some(errno),
            message: None,
        }
    }

    /// A local failure that did not come with an errno.
    pub fn local(message: impl Into<String>) -> Self {
        Self {
            errno: None,
            message: Some(message.into()),
        }
    }

    /// Build from the kernel's NLMSG_ERROR, reading the extended-ack message if any.
    pub(crate) fn from_kernel(msg: &ErrorMessage, flags: u16) -> Self {
        let errno = msg.code.map(|c| -c.get());
        let message = (flags & NLM_F_ACK_TLVS != 0)
            .then(|| ext_ack_message(&msg.header, flags & NLM_F_CAPPED != 0))
            .flatten();
        Self { errno, message }
    }

    /// The errno as a `nix` value, when there is one.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        self.errno.map(nix::errno::Errno::from_raw)
    }

    /// True when the object already exists (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        self.errno == Some(libc::EEXIST)
    }

    /// True when the object (or the device it refers to) does not exist; see
    /// [`errno_not_found`].
    pub fn is_not_found(&self) -> bool {
        errno_not_found(self.errno)
    }

    /// True when the kernel does not know the requested kind or feature.
    pub fn is_not_supported(&self) -> bool {
        self.errno == Some(libc::EOPNOTSUPP)
    }
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.errno(), &self.message) {
            (Some(e), Some(m)) => write!(f, "{} ({e}): {m}", e.desc()),
            (Some(e), None) => write!(f, "{} ({e})", e.desc()),
            (None, Some(m)) => f.write_str(m),
            (None, None) => f.write_str("unknown netlink failure"),
        }
    }
}

impl std::error::Error for NetlinkError {}

/// The answers the kernel gives for "no such object", depending on the
/// object type: `ENODEV` (device), `ENOENT` (neighbour, rule, …), `ESRCH`
/// (route), `EADDRNOTAVAIL` (address).
pub(crate) fn errno_not_found(errno: Option<i32>) -> bool {
    matches!(
        errno,
        Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH) | Some(libc::EADDRNOTAVAIL)
    )
}

/// `is_exists` and `is_not_found` for a module's error type, from its `errno()`.
macro_rules! errno_predicates {
    ($t:ty) => {
        impl $t {
            /// True when the object already exists (`EEXIST`).
            pub fn is_exists(&self) -> bool {
                self.errno() == Some(libc::EEXIST)
            }

            /// True when the object, or a device it names, does not exist
            /// (`ENODEV`, `ENOENT`, `ESRCH` or `EADDRNOTAVAIL`, as the object type has it).
            pub fn is_not_found(&self) -> bool {
                $crate::netlink::errno_not_found(self.errno())
            }
        }
    };
}
pub(crate) use errno_predicates;

/// Find NLMSGERR_ATTR_MSG in the TLVs that follow the echoed request.
fn ext_ack_message(payload: &[u8], capped: bool) -> Option<String> {
    const NLMSG_HDRLEN: usize = 16;
    const NLMSGERR_ATTR_MSG: u16 = 1;
    let echoed = if capped {
        NLMSG_HDRLEN
    } else {
        let len = u32::from_ne_bytes(payload.get(0..4)?.try_into().ok()?) as usize;
        (len + 3) & !3
    };
    let mut rest = payload.get(echoed..)?;
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &rest[4..len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        rest = rest.get((len + 3) & !3..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_message_is_read_after_capped_header() {
        let mut payload = vec![0u8; 16];
        let text = b"Unknown device type\0";
        let len = (4 + text.len()) as u16;
        payload.extend_from_slice(&len.to_ne_bytes());
        payload.extend_from_slice(&1u16.to_ne_bytes());
        payload.extend_from_slice(text);
        assert_eq!(ext_ack_message(&payload, true).as_deref(), Some("Unknown device type"));
    }

    #[test]
    fn ext_ack_parser_survives_garbage() {
        for len in 0..64 {
            let payload: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = ext_ack_message(&payload, true);
            let _ = ext_ack_message(&payload, false);
        }
    }

    #[test]
    fn display_names_errno() {
        let e = NetlinkError::from_errno(libc::ENODEV);
        assert!(e.to_string().contains("ENODEV"), "{e}");
        assert!(e.is_not_found());
    }
}
