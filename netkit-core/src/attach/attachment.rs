//! What a caller names when it attaches a container: the container's namespace, its ID, the
//! interface name, the runtime's arguments, and the host side the attachment is made from.

use std::path::PathBuf;

use crate::NetNs;

/// One container interface to attach, check or detach (the CNI runtime's `CNI_NETNS`,
/// `CNI_CONTAINERID`, `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`, as plain values).
///
/// ```
/// let a = netkit_core::attach::Attachment::new("/run/netns/ctr1", "ctr1", "eth0")
///     .arg("IP", "10.88.0.7");
/// assert_eq!(a.arg_value("IP"), Some("10.88.0.7"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    /// The container's network namespace (a path such as `/run/netns/x` or
    /// `/proc/PID/ns/net`). ADD and CHECK need it; DEL works without it (the namespace may be
    /// gone).
    pub netns: Option<String>,
    /// The container ID: 1–200 bytes of letters, digits, `_ . -`, starting with a letter or
    /// digit (CNI's rule).
    pub container_id: String,
    /// The interface name inside the container.
    pub ifname: String,
    /// The runtime's arguments (`CNI_ARGS` pairs, in order). The attach code reads `IP`
    /// (addresses to ask IPAM for, comma-separated) and `MAC` (the container interface's MAC
    /// when `runtimeConfig.mac` names none); a delegated IPAM plugin gets them all. Which keys
    /// are allowed is the frontend's business.
    pub args: Vec<(String, String)>,
    /// Where the host side is and how the work reports on itself.
    pub host: Host,
}

impl Attachment {
    /// An attachment of interface `ifname` of container `container_id` whose namespace is at
    /// `netns`, made from the calling thread's namespace.
    pub fn new(netns: impl Into<String>, container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Attachment {
            netns: Some(netns.into()),
            container_id: container_id.into(),
            ifname: ifname.into(),
            ..Default::default()
        }
    }

    /// Add the argument `key=value` (see [`Attachment::args`]).
    pub fn arg(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.args.push((key.into(), value.into()));
        self
    }

    /// Make the attachment from `host` (see [`Host::netns`]).
    pub fn host(mut self, host: Host) -> Self {
        self.host = host;
        self
    }

    /// The value of argument `key` (the first, if given twice).
    pub fn arg_value(&self, key: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The arguments as `CNI_ARGS` spells them: `K=V;K=V`.
    pub(crate) fn args_text(&self) -> String {
        let pairs: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join(";")
    }

    /// Record the end of a phase (see [`Host::trace`]).
    pub(crate) fn mark(&self, phase: &'static str) {
        self.host.mark(phase);
    }
}

/// The host side of attachments: the namespace the bridge, host ends, host routes and firewall
/// live in, where delegated IPAM plugins are found, and a trace hook.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// The host namespace; `None`: the calling thread's namespace at the time of the call
    /// (what a CNI plugin wants). No call changes the calling thread's namespace either way.
    pub netns: Option<NetNs>,
    /// Directories searched for a delegated IPAM plugin (`ipam.type` other than
    /// `netkit-ipam`), as `CNI_PATH`.
    pub cni_path: Vec<PathBuf>,
    /// Called at the end of each phase with its name (ADD: `bridge`, `ipam`, `veth`, `port`,
    /// `ctr-up`, `routes`, `firewall`, `wired`; DEL: `links`, `released`), for profiling.
    /// `None` costs nothing.
    pub trace: Option<fn(&'static str)>,
}

impl Host {
    /// The host side in namespace `netns`.
    pub fn in_netns(netns: NetNs) -> Self {
        Host {
            netns: Some(netns),
            ..Default::default()
        }
    }

    /// The host namespace (see [`Host::netns`]).
    pub(crate) fn open(&self) -> Result<NetNs, crate::NetnsError> {
        match &self.netns {
            Some(ns) => Ok(ns.clone()),
            None => NetNs::current(),
        }
    }

    /// Record the end of a phase.
    pub(crate) fn mark(&self, phase: &'static str) {
        if let Some(trace) = self.trace {
            trace(phase);
        }
    }
}
