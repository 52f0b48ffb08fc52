//! Namespaces a test makes and owns: deleted when the value drops, also on panic (deleting a
//! namespace deletes the links, addresses and routes in it).

use std::path::{Path, PathBuf};

use netkit_core::link::Veth;
use netkit_core::{Handle, NetNs, NetNsGuard};

use crate::{cmd, snapshot, tempdir, unique};

/// A fresh named namespace with loopback up, and a netlink handle in it: what netkit-core's
/// tests run against.
pub struct TestNs {
    /// The namespace (deleted on drop).
    pub ns: NetNsGuard,
    /// A handle in it.
    pub h: Handle,
}

impl TestNs {
    /// A namespace named [`unique`]`(tag)`, loopback up.
    pub async fn new(tag: &str) -> Self {
        let ns = NetNsGuard::create(&unique(tag)).expect("create test netns");
        let h = ns.handle().await.expect("handle in test netns");
        h.link_set_up("lo").await.expect("lo up");
        Self { ns, h }
    }

    /// A fresh namespace with a veth pair `v0`/`v1` inside it, both up.
    pub async fn with_veth(tag: &str) -> Self {
        let t = Self::new(tag).await;
        t.h.link_add(&Veth::new("v0", "v1").up()).await.expect("veth v0/v1");
        t.h.link_set_up("v1").await.expect("v1 up");
        t
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        self.ns.name().expect("a named namespace")
    }

    /// Run `sh -c cmd` inside this namespace, returning stdout; panics with stderr when it fails.
    #[track_caller]
    pub fn sh(&self, cmd: &str) -> String {
        cmd::sh(&self.ns, cmd)
    }

    /// Like [`TestNs::sh`] but only says whether the command succeeded.
    pub fn try_sh(&self, cmd: &str) -> bool {
        cmd::try_sh(&self.ns, cmd).is_ok()
    }
}

/// A "host" namespace for plugin tests (loopback up), named `<prefix>-h`, with a temp dir for
/// configurations and plugin state, and container namespaces `<prefix>-<tag>`. Dropping it
/// deletes the namespace, then the dir.
#[derive(Debug)]
pub struct HostNs {
    // Dropped in this order: the namespace, then its files.
    ns: NetNsGuard,
    dir: tempfile::TempDir,
    prefix: String,
}

impl std::ops::Deref for HostNs {
    type Target = NetNs;

    fn deref(&self) -> &NetNs {
        &self.ns
    }
}

impl HostNs {
    /// A new host namespace; `tag` goes into the [`unique`] prefix of its names.
    pub fn new(tag: &str) -> HostNs {
        let prefix = unique(tag);
        let ns = NetNsGuard::create(&format!("{prefix}-h")).expect("create the host netns");
        let host = HostNs {
            ns,
            dir: tempdir(&prefix),
            prefix,
        };
        host.ip(&["link", "set", "lo", "up"]);
        host
    }

    /// The namespace.
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// The namespace's name (for `ip -n`, `ip netns exec`).
    pub fn name(&self) -> &str {
        self.ns.name().expect("named")
    }

    /// The unique prefix of the names of this host's namespaces.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The host's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A directory for IPAM state (`dataDir`), so nothing goes to /var/lib/cni.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir().join("ipam")
    }

    /// A directory for netkit's firewall state (`firewallStateDir`).
    pub fn fw_dir(&self) -> PathBuf {
        self.dir().join("firewall")
    }

    /// A container namespace `<prefix>-<tag>` with loopback up; the caller owns it.
    pub fn container(&self, tag: &str) -> NetNsGuard {
        let name = format!("{}-{tag}", self.prefix);
        let ns = NetNsGuard::create(&name).expect("create a container netns");
        cmd::ip(&["-n", &name, "link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n HOST ARGS`; panics when it fails.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name()];
        all.extend_from_slice(args);
        cmd::ip(&all)
    }

    /// The host's links (see [`snapshot::links`]).
    pub fn links(&self) -> Vec<snapshot::LinkRow> {
        snapshot::links(self.name())
    }

    /// The names of the host's veths.
    pub fn veths(&self) -> Vec<String> {
        snapshot::veths(self.name())
    }

    /// `nft list ruleset` in the host.
    #[track_caller]
    pub fn nft_ruleset(&self) -> String {
        cmd::run_in(self.name(), "nft", ["list", "ruleset"])
    }

    /// The host's global addresses (see [`snapshot::global_addrs`]).
    pub fn global_addrs(&self) -> Vec<String> {
        snapshot::global_addrs(self.name())
    }
}
