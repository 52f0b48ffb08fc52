//! Attach a container in one call: what the `netkit-cni` plugin's ADD, CHECK and DEL do, run
//! in-process by netkit-core's `attach` module (the plugin is a frontend over the same code).
//!
//! The caller names the attachment in a [`netkit_attachment`] (the container's namespace path,
//! its ID, the interface name, the runtime's arguments and, optionally, the host namespace) and
//! passes the network configuration: the `netkit-cni` conflist entry as JSON, the very text the
//! plugin reads on stdin. ADD returns the CNI result JSON; CHECK takes it back as `prevResult`.
//!
//! Embedders that live long (a runtime, an agent) should set `"waitLinkFree": true` in the
//! configuration: DEL then waits for the kernel itself instead of handing its final waits to
//! detached child processes, which is what a short-lived plugin process wants.

use std::ffi::{c_char, c_int};

use netkit_core::attach::{self, AttachError, AttachResult, Attachment, CniResult, ErrorKind, Host, NetworkConfig};

use crate::conv::{opt_str, out_arg, put, ref_arg, str_arg};
use crate::error::{
    status, Error, NETKIT_E_BUSY, NETKIT_E_CHECK_FAILED, NETKIT_E_EXHAUSTED, NETKIT_E_EXISTS, NETKIT_E_INVALID,
    NETKIT_E_IO, NETKIT_E_NOT_FOUND, NETKIT_E_UNSUPPORTED,
};
use crate::netns::netkit_netns;
use crate::runtime::wait;
use crate::{netkit_error, own};

/// One runtime argument of an attachment (a `CNI_ARGS` pair, `KEY=VALUE`). The attach code
/// reads `IP` (addresses to ask IPAM for, comma-separated) and `MAC`; a delegated IPAM plugin
/// gets them all.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct netkit_attach_arg {
    /// The key. Required.
    pub key: *const c_char,
    /// The value. Required (may be empty).
    pub value: *const c_char,
}

/// One container interface to attach, check or detach: the CNI runtime's `CNI_NETNS`,
/// `CNI_CONTAINERID`, `CNI_IFNAME` and `CNI_ARGS` as plain values, and where the host side is.
/// Zero-initialise, then set the fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct netkit_attachment {
    /// Path of the container's network namespace (`/run/netns/NAME`, `/proc/PID/ns/net`).
    /// Required by add and check; NULL is allowed for del (the namespace may be gone).
    pub netns: *const c_char,
    /// The container ID: 1–200 letters, digits, `_ . -`, starting with a letter or digit.
    /// Required.
    pub container_id: *const c_char,
    /// The interface name inside the container (`eth0`). Required.
    pub ifname: *const c_char,
    /// The runtime's arguments, in order; NULL with `args_len` 0 for none.
    pub args: *const netkit_attach_arg,
    /// Number of `args`.
    pub args_len: usize,
    /// The host namespace (bridge, host ends, host routes, firewall); NULL: the calling
    /// thread's namespace at the time of the call (what a CNI plugin uses). Borrowed for the
    /// call.
    pub host_netns: *const netkit_netns,
    /// Directories searched for a delegated IPAM plugin (an `ipam.type` other than
    /// `netkit-ipam`), separated by `:` as in `CNI_PATH`; NULL or empty: none (then only
    /// `netkit-ipam` can be used).
    pub cni_path: *const c_char,
}

/// The attachment a C struct names.
///
/// # Safety
/// `att` is NULL or valid for the call, with valid strings, `args_len` readable args and a
/// NULL or live `host_netns`.
unsafe fn attachment(att: *const netkit_attachment, netns_required: bool) -> Result<Attachment, Error> {
    // SAFETY: the function's contract.
    let a = unsafe { ref_arg(att, "att") }?;
    // SAFETY: the strings are NULL or valid C strings (contract).
    let (netns, container_id, ifname) = unsafe {
        (
            opt_str(a.netns, "att.netns")?,
            str_arg(a.container_id, "att.container_id")?,
            str_arg(a.ifname, "att.ifname")?,
        )
    };
    if netns_required && netns.is_none() {
        return Err(Error::null("att.netns"));
    }
    let mut out = Attachment {
        netns: netns.map(str::to_string),
        container_id: container_id.into(),
        ifname: ifname.into(),
        ..Default::default()
    };
    if a.args_len > 0 {
        if a.args.is_null() {
            return Err(Error::null("att.args"));
        }
        // SAFETY: non-NULL with `args_len` readable elements (contract).
        let args = unsafe { std::slice::from_raw_parts(a.args, a.args_len) };
        for (i, arg) in args.iter().enumerate() {
            // SAFETY: valid C strings (contract).
            let (k, v) = unsafe {
                (
                    str_arg(arg.key, &format!("att.args[{i}].key"))?,
                    str_arg(arg.value, &format!("att.args[{i}].value"))?,
                )
            };
            out = out.arg(k, v);
        }
    }
    let mut host = Host::default();
    if !a.host_netns.is_null() {
        // SAFETY: non-NULL, a live namespace object (contract).
        let ns = unsafe { netkit_netns::arg(a.host_netns, "att.host_netns") }?;
        host = Host::in_netns(ns.clone());
    }
    // SAFETY: NULL or a valid C string (contract).
    if let Some(path) = unsafe { opt_str(a.cni_path, "att.cni_path") }? {
        host.cni_path = std::env::split_paths(path)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    Ok(out.host(host))
}

/// The network configuration behind a C string.
///
/// # Safety
/// `config` is NULL or a valid C string for the call.
unsafe fn config(config: *const c_char) -> Result<NetworkConfig, Error> {
    // SAFETY: the function's contract.
    let text = unsafe { str_arg(config, "config") }?;
    Ok(NetworkConfig::parse(text.as_bytes())?)
}

impl From<AttachError> for Error {
    fn from(e: AttachError) -> Self {
        let kind = match e.kind {
            ErrorKind::UnknownContainer => NETKIT_E_NOT_FOUND,
            ErrorKind::IncompatibleVersion
            | ErrorKind::InvalidAttachment
            | ErrorKind::Decode
            | ErrorKind::InvalidConfig => NETKIT_E_INVALID,
            ErrorKind::TryAgainLater => NETKIT_E_BUSY,
            ErrorKind::PoolExhausted => NETKIT_E_EXHAUSTED,
            ErrorKind::AddressUnavailable => NETKIT_E_EXISTS,
            ErrorKind::CheckFailed => NETKIT_E_CHECK_FAILED,
            ErrorKind::KernelUnsupported => NETKIT_E_UNSUPPORTED,
            ErrorKind::Io | ErrorKind::NotAvailable | ErrorKind::Plugin(_) => NETKIT_E_IO,
        };
        Error::new(kind, e.to_string())
    }
}

/// ADD: attach the container `att` names to the network `config` (the `netkit-cni` conflist
/// entry as JSON) and store the CNI result JSON in `*result` (free with `netkit_string_free`).
/// Everything is checked before the host changes; a failing step undoes what ADD made.
/// Error kinds: `NETKIT_E_INVALID` (configuration, attachment), `NETKIT_E_NOT_FOUND` (the
/// container's namespace), `NETKIT_E_EXHAUSTED` (no free address), `NETKIT_E_EXISTS` (the
/// address asked for is taken), `NETKIT_E_UNSUPPORTED` (the kernel lacks something the
/// configuration needs), `NETKIT_E_BUSY`, `NETKIT_E_IO`.
#[no_mangle]
pub unsafe extern "C" fn netkit_attach_add(
    att: *const netkit_attachment,
    config: *const c_char,
    result: *mut *mut c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `att` and `config` are NULL or valid for the call (contract).
        let (att, conf) = unsafe { (attachment(att, true)?, self::config(config)?) };
        out_arg(result, "result")?;
        let r = wait(attach::add(&conf, &att))?;
        // SAFETY: checked non-NULL above.
        unsafe { put(result, own::give_string(&r.to_json().to_string())) };
        Ok(())
    })
}

/// CHECK: the attachment `att` names is as ADD left it. `prev_result` is the result JSON ADD
/// returned; NULL: `config` carries it as `prevResult` (as a CNI runtime writes it).
/// `NETKIT_E_CHECK_FAILED` names the first difference.
#[no_mangle]
pub unsafe extern "C" fn netkit_attach_check(
    att: *const netkit_attachment,
    config: *const c_char,
    prev_result: *const c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: the pointers are NULL or valid for the call (contract).
        let (att, mut conf, prev) = unsafe {
            (
                attachment(att, true)?,
                self::config(config)?,
                opt_str(prev_result, "prev_result")?,
            )
        };
        if let Some(prev) = prev {
            let value: serde_json::Value =
                serde_json::from_str(prev).map_err(|e| Error::invalid(format!("prev_result is not JSON: {e}")))?;
            let result = AttachResult {
                version: conf.version,
                result: CniResult::from_json(&value)?,
            };
            conf = conf.with_prev_result(&result);
        }
        wait(attach::check(&conf, &att))
    })
}

/// DEL: detach the container `att` names from the network `config`: its addresses, firewall
/// rules and host-side links go. Idempotent: what is already gone (the whole attachment, or
/// the container's namespace: `att->netns` may be NULL) is success.
#[no_mangle]
pub unsafe extern "C" fn netkit_attach_del(
    att: *const netkit_attachment,
    config: *const c_char,
    err: *mut *mut netkit_error,
) -> c_int {
    status(err, || {
        // SAFETY: `att` and `config` are NULL or valid for the call (contract).
        let (att, conf) = unsafe { (attachment(att, false)?, self::config(config)?) };
        wait(attach::del(&conf, &att))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attach_error_kind_has_a_status() {
        let cases = [
            (ErrorKind::IncompatibleVersion, NETKIT_E_INVALID),
            (ErrorKind::UnknownContainer, NETKIT_E_NOT_FOUND),
            (ErrorKind::InvalidAttachment, NETKIT_E_INVALID),
            (ErrorKind::Io, NETKIT_E_IO),
            (ErrorKind::Decode, NETKIT_E_INVALID),
            (ErrorKind::InvalidConfig, NETKIT_E_INVALID),
            (ErrorKind::TryAgainLater, NETKIT_E_BUSY),
            (ErrorKind::NotAvailable, NETKIT_E_IO),
            (ErrorKind::PoolExhausted, NETKIT_E_EXHAUSTED),
            (ErrorKind::AddressUnavailable, NETKIT_E_EXISTS),
            (ErrorKind::CheckFailed, NETKIT_E_CHECK_FAILED),
            (ErrorKind::KernelUnsupported, NETKIT_E_UNSUPPORTED),
            (ErrorKind::Plugin(7), NETKIT_E_IO),
        ];
        for (kind, status) in cases {
            let e: Error = AttachError::new(kind, "what failed").with_details("why").into();
            assert_eq!(e.kind, status, "{kind:?}");
            assert_eq!(e.message, "what failed (why)");
        }
    }
}
