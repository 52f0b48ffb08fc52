//! The error a single netlink request can return.

use std::fmt;

use netlink_packet_core::ErrorMessage;

use super::wire;

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
        Self {
            errno: msg.code.map(|c| c.get().wrapping_neg()),
            message: wire::ext_ack(&msg.header, flags).message_lossy(),
        }
    }

    /// Build from an NLMSG_ERROR read with [`wire`]; `None` for an ack (errno 0).
    pub(crate) fn from_ack(ack: &wire::Ack<'_>) -> Option<Self> {
        (ack.errno != 0).then(|| Self {
            errno: Some(ack.errno),
            message: ack.ext.message_lossy(),
        })
    }

    /// The errno as a `nix` value, when there is one.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        self.errno.map(nix::errno::Errno::from_raw)
    }

    /// True when the object already exists (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        self.errno == Some(libc::EEXIST)
    }

    /// True when the object (or the device it refers to) does not exist: the kernel says so with
    /// `ENODEV` (device), `ENOENT` (neighbour, rule, …), `ESRCH` (route) or `EADDRNOTAVAIL`
    /// (address), depending on the object type.
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
        // `No such device (ENODEV)`, then the kernel's extended-ack text if it sent one.
        match self.errno {
            Some(n) => {
                let e = nix::errno::Errno::from_raw(n);
                if e == nix::errno::Errno::UnknownErrno {
                    write!(f, "unknown error (errno {n})")?;
                } else {
                    write!(f, "{} ({e:?})", e.desc())?;
                }
                if let Some(m) = &self.message {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
            None => f.write_str(self.message.as_deref().unwrap_or("unknown netlink failure")),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An NLMSG_ERROR as netlink-packet-core hands it over: the code, then the echoed request
    /// header (capped) and the extended-ack attributes.
    fn kernel_error(errno: i32, text: &[u8]) -> ErrorMessage {
        let mut after = vec![0u8; 16];
        after.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        after.extend_from_slice(&wire::NLMSGERR_ATTR_MSG.to_ne_bytes());
        after.extend_from_slice(text);
        let mut e = ErrorMessage::default();
        e.code = std::num::NonZeroI32::new(-errno);
        e.header = after;
        e
    }

    #[test]
    fn from_kernel_reads_errno_and_text() {
        let flags = wire::NLM_F_ACK_TLVS | wire::NLM_F_CAPPED;
        let e = NetlinkError::from_kernel(&kernel_error(libc::EOPNOTSUPP, b"Unknown device type\0"), flags);
        assert_eq!(e.errno, Some(libc::EOPNOTSUPP));
        assert_eq!(e.message.as_deref(), Some("Unknown device type"));
        assert!(e.is_not_supported());
        // Without NLM_F_ACK_TLVS the bytes after the echo are not read.
        let e = NetlinkError::from_kernel(&kernel_error(libc::ENODEV, b"x\0"), wire::NLM_F_CAPPED);
        assert_eq!((e.errno, e.message), (Some(libc::ENODEV), None));
        // Garbage after the code never panics.
        for len in 0..64 {
            let mut m = ErrorMessage::default();
            m.code = std::num::NonZeroI32::new(i32::MIN);
            m.header = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = NetlinkError::from_kernel(&m, flags);
            let _ = NetlinkError::from_kernel(&m, wire::NLM_F_ACK_TLVS);
        }
    }

    #[test]
    fn from_ack_is_none_for_success() {
        let ok = wire::Ack {
            errno: 0,
            ext: wire::ExtAck::default(),
        };
        assert_eq!(NetlinkError::from_ack(&ok), None);
        let failed = wire::Ack {
            errno: libc::EEXIST,
            ext: wire::ExtAck {
                message: Some(b"taken"),
                offset: Some(20),
            },
        };
        let e = NetlinkError::from_ack(&failed).unwrap();
        assert!(e.is_exists());
        assert_eq!(e.message.as_deref(), Some("taken"));
    }

    #[test]
    fn display_names_errno() {
        let e = NetlinkError::from_errno(libc::ENODEV);
        assert_eq!(e.to_string(), "No such device (ENODEV)");
        assert!(e.is_not_found());
        let e = NetlinkError {
            errno: Some(libc::EINVAL),
            message: Some("mtu greater than device maximum".into()),
        };
        assert_eq!(
            e.to_string(),
            "Invalid argument (EINVAL): mtu greater than device maximum"
        );
        assert_eq!(
            NetlinkError::from_errno(100_000).to_string(),
            "unknown error (errno 100000)"
        );
        assert_eq!(NetlinkError::local("closed").to_string(), "closed");
    }
}

#[cfg(test)]
mod fuzz {
    //! `from_kernel` keeps the errno of any NLMSG_ERROR and never panics (the extended-ack
    //! reader behind it is netlink::wire's, fuzzed there).

    use proptest::collection::vec;
    use proptest::prelude::*;

    use netlink_packet_core::{ErrorMessage, NLM_F_ACK_TLVS, NLM_F_CAPPED};

    use super::NetlinkError;

    fn error_message(code: i32, header: Vec<u8>) -> ErrorMessage {
        let mut m = ErrorMessage::default();
        m.code = std::num::NonZeroI32::new(code);
        m.header = header;
        m
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn from_kernel_keeps_the_errno_and_never_panics(
            code in any::<i32>(),
            header in vec(any::<u8>(), 0..120),
            flags in prop_oneof![Just(0), Just(NLM_F_ACK_TLVS), Just(NLM_F_ACK_TLVS | NLM_F_CAPPED), any::<u16>()],
        ) {
            let e = NetlinkError::from_kernel(&error_message(code, header), flags);
            prop_assert_eq!(e.errno, (code != 0).then(|| code.wrapping_neg()));
        }
    }

    /// A code of i32::MIN cannot be negated: `from_kernel` must not panic on it (no errno is
    /// that large, but the bytes come from outside).
    #[test]
    fn a_code_of_i32_min_is_read_without_panic() {
        let _ = NetlinkError::from_kernel(&error_message(i32::MIN, Vec::new()), 0);
    }
}
