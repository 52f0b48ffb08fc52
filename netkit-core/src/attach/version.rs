//! CNI versions netkit answers in.

use std::fmt;

use super::error::{AttachError, ErrorKind};

/// Every version netkit's plugins speak; a config's own version is used in the answer.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A supported CNI version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    major: u8,
    minor: u8,
    patch: u8,
}

impl Version {
    /// The newest version (1.1.0).
    pub const LATEST: Version = Version {
        major: 1,
        minor: 1,
        patch: 0,
    };

    /// Parse a supported version, or fail with code 1 (incompatible version).
    pub fn parse(text: &str) -> Result<Self, AttachError> {
        if !SUPPORTED_VERSIONS.contains(&text) {
            return Err(AttachError::new(
                ErrorKind::IncompatibleVersion,
                format!("CNI version {text:?} is not supported"),
            )
            .with_details(format!("supported: {}", SUPPORTED_VERSIONS.join(", "))));
        }
        let mut parts = text.split('.').map(|p| p.parse::<u8>().unwrap_or(0));
        Ok(Version {
            major: parts.next().unwrap_or(0),
            minor: parts.next().unwrap_or(0),
            patch: parts.next().unwrap_or(0),
        })
    }

    /// True before 1.0.0, where IP entries carry `"version": "4"|"6"`.
    pub fn has_ip_version_field(self) -> bool {
        self.major == 0
    }

    /// True from 0.4.0, which introduced CHECK.
    pub fn has_check(self) -> bool {
        self >= Version {
            major: 0,
            minor: 4,
            patch: 0,
        }
    }

    /// True from 1.1.0, which introduced GC and STATUS.
    pub fn has_gc_and_status(self) -> bool {
        self >= Version::LATEST
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}
