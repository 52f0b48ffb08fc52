//! CNI error results.

use netkit_core::attach::{AttachError, ErrorKind};
use serde::Serialize;

/// The error codes of the CNI spec, plus netkit's own (100 and up, as the spec reserves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: incompatible CNI version.
    IncompatibleVersion,
    /// 2: unsupported field in the network configuration (also unknown CNI_ARGS keys without
    /// `IgnoreUnknown=1`).
    UnsupportedField,
    /// 3: container unknown or does not exist.
    UnknownContainer,
    /// 4: invalid necessary environment variables.
    InvalidEnv,
    /// 5: I/O failure.
    Io,
    /// 6: failed to decode content.
    Decode,
    /// 7: invalid network configuration.
    InvalidConfig,
    /// 11: try again later.
    TryAgainLater,
    /// 50: the plugin is not available (STATUS).
    NotAvailable,
    /// 100: no free address left in a pool.
    PoolExhausted,
    /// 101: a requested address cannot be granted (in use, reserved, outside the pool).
    AddressUnavailable,
    /// 102: CHECK found the attachment differs from what was set up.
    CheckFailed,
    /// 103: an object the configuration asks for is not supported by this kernel.
    KernelUnsupported,
    /// A delegated plugin's own code, passed on.
    Other(u32),
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnv => 4,
            ErrorCode::Io => 5,
            ErrorCode::Decode => 6,
            ErrorCode::InvalidConfig => 7,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::NotAvailable => 50,
            ErrorCode::PoolExhausted => 100,
            ErrorCode::AddressUnavailable => 101,
            ErrorCode::CheckFailed => 102,
            ErrorCode::KernelUnsupported => 103,
            ErrorCode::Other(c) => c,
        }
    }
}

/// A CNI error: printed as JSON on stdout with a non-zero exit status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {}: {msg}{}", code.code(), details.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct CniError {
    /// The code.
    pub code: ErrorCode,
    /// Short message.
    pub msg: String,
    /// Longer explanation.
    pub details: Option<String>,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    code: u32,
    msg: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a str>,
}

impl CniError {
    /// An error with a message.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: None,
        }
    }

    /// An I/O or kernel failure (code 5, "I/O failure"), its message the error's text.
    pub fn io(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Io, what.to_string())
    }

    /// Add details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// The error as the spec's JSON, in `version`.
    pub fn to_json(&self, version: &str) -> String {
        serde_json::to_string(&Wire {
            cni_version: version,
            code: self.code.code(),
            msg: &self.msg,
            details: self.details.as_deref(),
        })
        .unwrap_or_else(|_| format!("{{\"code\":{},\"msg\":\"error\"}}", self.code.code()))
    }
}

impl From<ErrorKind> for ErrorCode {
    /// The CNI code of each kind of attach failure (a delegated plugin's code passes through).
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::IncompatibleVersion => ErrorCode::IncompatibleVersion,
            ErrorKind::UnknownContainer => ErrorCode::UnknownContainer,
            ErrorKind::InvalidAttachment => ErrorCode::InvalidEnv,
            ErrorKind::Io => ErrorCode::Io,
            ErrorKind::Decode => ErrorCode::Decode,
            ErrorKind::InvalidConfig => ErrorCode::InvalidConfig,
            ErrorKind::TryAgainLater => ErrorCode::TryAgainLater,
            ErrorKind::NotAvailable => ErrorCode::NotAvailable,
            ErrorKind::PoolExhausted => ErrorCode::PoolExhausted,
            ErrorKind::AddressUnavailable => ErrorCode::AddressUnavailable,
            ErrorKind::CheckFailed => ErrorCode::CheckFailed,
            ErrorKind::KernelUnsupported => ErrorCode::KernelUnsupported,
            ErrorKind::Plugin(code) => ErrorCode::Other(code),
        }
    }
}

impl From<AttachError> for CniError {
    /// The attach error as a CNI error: its kind's code, its message and details.
    fn from(e: AttachError) -> Self {
        CniError {
            code: e.kind.into(),
            msg: e.msg,
            details: e.details,
        }
    }
}
