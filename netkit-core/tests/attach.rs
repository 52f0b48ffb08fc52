//! `netkit_core::attach` called in-process, as a runtime embedding netkit calls it: ADD in bridge
//! and routed mode into namespaces the test makes, traffic between two attached containers and
//! the host side, CHECK, DEL (idempotent, leaves nothing: links, IPAM, firewall) and a failed ADD
//! that undoes only what it made.
//!
//! The host side of every attachment is a namespace of the test's own ([`HostNs`], the "H" of
//! netkit-cni's plugin tests, with the IPAM `dataDir` and the firewall state in its temp dir),
//! passed as [`Host::netns`]: nothing touches the namespace the tests run in. The checks read
//! the kernel independently (`ip -j`, `nft list ruleset`, pings) and the stores through
//! netkit-test-support's [`HostState`], as the plugin tests do.

use std::sync::Mutex;

use netkit_core::attach::{self, AttachResult, Attachment, ErrorKind, Host, NetworkConfig};
use netkit_core::NetNsGuard;
use netkit_test_support::{in_ns, ip, ipj, ping, HostNs, HostState};
use serde_json::{json, Value};

const POOL: &str = "attachnet";

/// A host namespace, containers in it and the runtime the verbs run on.
struct Lab {
    ctrs: Vec<NetNsGuard>,
    host: HostNs,
    rt: tokio::runtime::Runtime,
    trace: Option<fn(&'static str)>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        Lab {
            ctrs: Vec::new(),
            host: HostNs::new(tag),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            trace: None,
        }
    }

    /// A new container namespace; its index.
    fn container(&mut self) -> usize {
        let i = self.ctrs.len();
        self.ctrs.push(self.host.container(&format!("c{i}")));
        i
    }

    fn ctr_name(&self, i: usize) -> &str {
        self.ctrs[i].name().expect("named")
    }

    /// Container `i`'s eth0 on this lab's host side.
    fn att(&self, i: usize) -> Attachment {
        Attachment::new(self.ctrs[i].path().display().to_string(), format!("ctr{i}"), "eth0").host(Host {
            netns: Some(self.host.ns().clone()),
            trace: self.trace,
            ..Default::default()
        })
    }

    /// A configuration of `mode` on `subnet`, with the lab's stores, and `extra` keys.
    fn conf(&self, mode: &str, subnet: &str, extra: Value) -> NetworkConfig {
        let mut v = json!({
            "cniVersion": "1.1.0",
            "name": POOL,
            "type": "netkit-cni",
            "mode": mode,
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "firewallBackend": "nftables",
            "firewallStateDir": self.host.fw_dir(),
            "ipam": {"type": "netkit-ipam", "dataDir": self.host.ipam_dir(), "ranges": [[{"subnet": subnet}]]}
        });
        for (k, x) in extra.as_object().expect("an object") {
            v[k] = x.clone();
        }
        NetworkConfig::parse(v.to_string().as_bytes()).expect("a valid configuration")
    }

    fn add(&self, conf: &NetworkConfig, i: usize) -> Result<AttachResult, attach::AttachError> {
        self.rt.block_on(attach::add(conf, &self.att(i)))
    }

    fn check(&self, conf: &NetworkConfig, i: usize, prev: &AttachResult) -> Result<(), attach::AttachError> {
        let conf = conf.clone().with_prev_result(prev);
        self.rt.block_on(attach::check(&conf, &self.att(i)))
    }

    fn del(&self, conf: &NetworkConfig, i: usize) {
        self.rt
            .block_on(attach::del(conf, &self.att(i)))
            .unwrap_or_else(|e| panic!("DEL of ctr{i}: {e}"));
    }

    fn state(&self) -> HostState {
        self.host.state(POOL)
    }

    /// Container `i` has no eth0.
    #[track_caller]
    fn assert_no_eth0(&self, i: usize) {
        assert!(
            ipj(self.ctr_name(i), &["link", "show", "eth0"]).is_none(),
            "eth0 left in ctr{i}"
        );
    }

    /// Nothing of any attachment is left on the host side: no veth, no reservation, no
    /// firewall owner, an empty ruleset.
    #[track_caller]
    fn assert_clean(&self) {
        assert_eq!(self.host.veths(), Vec::<String>::new(), "veths left in H");
        assert_eq!(
            self.host.ipam_held(POOL),
            Vec::<String>::new(),
            "IPAM reservations left"
        );
        assert_eq!(self.host.fw_owners(), Vec::<String>::new(), "firewall owners left");
        let nft = self.host.nft_ruleset();
        assert!(nft.trim().is_empty(), "nft ruleset of H not empty:\n{nft}");
    }
}

/// The container's address (no prefix) in a result.
fn addr_of(r: &AttachResult) -> String {
    r.result.ips[0].address.ip().to_string()
}

static PHASES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

fn record(phase: &'static str) {
    PHASES.lock().unwrap().push(phase);
}

#[test]
fn bridge_mode_add_ping_check_del_leaves_nothing() {
    let mut lab = Lab::new("atbr");
    lab.trace = Some(record);
    let conf = lab.conf("bridge", "10.202.0.0/24", json!({"ipMasq": true}));
    let (c0, c1) = (lab.container(), lab.container());
    let r0 = lab.add(&conf, c0).expect("ADD ctr0");
    let r1 = lab.add(&conf, c1).expect("ADD ctr1");

    // The CNI result JSON, as the plugin prints it.
    let v = serde_json::to_value(&r0).unwrap();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(v["interfaces"][0]["name"], "cni0", "{v}");
    assert_eq!(v["interfaces"][2]["name"], "eth0", "{v}");
    assert_eq!(
        v["interfaces"][2]["sandbox"],
        lab.ctrs[c0].path().display().to_string(),
        "{v}"
    );
    assert_eq!(v["ips"][0]["interface"], 2, "{v}");
    assert_eq!(v["ips"][0]["gateway"], "10.202.0.1", "{v}");
    // The kernel agrees: the address is on eth0, the host end is a port of the bridge.
    let addrs = ipj(lab.ctr_name(c0), &["addr", "show", "dev", "eth0"]).expect("eth0 in ctr0");
    assert!(addrs.to_string().contains(&addr_of(&r0)), "{addrs}");
    let host_end = v["interfaces"][1]["name"].as_str().unwrap().to_string();
    let port = ipj(lab.host.name(), &["link", "show", "dev", &host_end]).expect("the host end");
    assert_eq!(port[0]["master"], "cni0", "{port}");
    // The phases ADD reported through the trace hook, in order.
    let phases = PHASES.lock().unwrap().clone();
    let pos = |p: &str| {
        phases
            .iter()
            .position(|x| *x == p)
            .unwrap_or_else(|| panic!("no {p} in {phases:?}"))
    };
    assert!(pos("bridge") < pos("ipam") && pos("ipam") < pos("veth") && pos("veth") < pos("wired"));

    // Container to container, container to the gateway on the host side, host to container.
    assert!(ping(lab.ctr_name(c0), &addr_of(&r1)), "ctr0 -> ctr1");
    assert!(ping(lab.ctr_name(c1), "10.202.0.1"), "ctr1 -> gateway");
    assert!(ping(lab.host.name(), &addr_of(&r0)), "host -> ctr0");

    lab.check(&conf, c0, &r0).expect("CHECK ctr0");
    lab.check(&conf, c1, &r1).expect("CHECK ctr1");
    // CHECK compares with the kernel: an address gone is found.
    ip(&[
        "-n",
        lab.ctr_name(c1),
        "addr",
        "del",
        &r1.result.ips[0].address.to_string(),
        "dev",
        "eth0",
    ]);
    let e = lab.check(&conf, c1, &r1).expect_err("CHECK without the address");
    assert_eq!(e.kind, ErrorKind::CheckFailed, "{e}");

    lab.del(&conf, c0);
    lab.del(&conf, c1);
    lab.assert_no_eth0(c0);
    lab.assert_no_eth0(c1);
    lab.assert_clean();
    // Idempotent: a second DEL, and one of an attachment that never existed, succeed and
    // change nothing.
    let before = lab.state();
    lab.del(&conf, c0);
    let c2 = lab.container();
    lab.del(&conf, c2);
    assert_eq!(before, lab.state(), "{}", before.diff(&lab.state()));
}

#[test]
fn routed_mode_add_ping_check_del_leaves_nothing() {
    let mut lab = Lab::new("atrt");
    let conf = lab.conf("routed", "10.203.0.0/24", json!({"waitLinkFree": true}));
    let (c0, c1) = (lab.container(), lab.container());
    let r0 = lab.add(&conf, c0).expect("ADD ctr0");
    let r1 = lab.add(&conf, c1).expect("ADD ctr1");
    for r in [&r0, &r1] {
        assert_eq!(r.result.ips[0].address.prefix(), 32, "{r:?}");
        assert_eq!(r.result.ips[0].gateway, Some("169.254.1.1".parse().unwrap()), "{r:?}");
        assert!(r.result.interfaces.iter().all(|i| i.name != "cni0"), "no bridge: {r:?}");
    }
    // The host routes each container's /32 to its host end.
    let routes = ipj(lab.host.name(), &["route", "show"])
        .expect("routes of H")
        .to_string();
    assert!(
        routes.contains(&addr_of(&r0)) && routes.contains(&addr_of(&r1)),
        "{routes}"
    );

    assert!(ping(lab.ctr_name(c0), &addr_of(&r1)), "ctr0 -> ctr1");
    // The host side needs an address of its own to ping from (routed mode gives it none).
    lab.host.ip(&["addr", "add", "192.0.2.1/32", "dev", "lo"]);
    assert!(ping(lab.host.name(), &addr_of(&r0)), "host -> ctr0");
    lab.check(&conf, c0, &r0).expect("CHECK ctr0");
    lab.check(&conf, c1, &r1).expect("CHECK ctr1");

    lab.del(&conf, c0);
    lab.del(&conf, c1);
    lab.del(&conf, c1);
    let routes = ipj(lab.host.name(), &["route", "show"])
        .expect("routes of H")
        .to_string();
    assert!(!routes.contains("10.203.0."), "host routes left: {routes}");
    lab.assert_no_eth0(c0);
    lab.assert_clean();
}

#[test]
fn a_failed_add_undoes_only_what_it_made() {
    let mut lab = Lab::new("atrb");
    let conf = lab.conf(
        "bridge",
        "10.204.0.0/24",
        json!({"ipMasq": true, "capabilities": {"portMappings": true},
               "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}),
    );
    let (c0, c1) = (lab.container(), lab.container());
    let r0 = lab.add(&conf, c0).expect("ADD ctr0");
    let before = lab.state();

    // A host port ctr0 maps already: refused after IPAM and the veth were made.
    let e = lab.add(&conf, c1).expect_err("ADD of a host port ctr0 maps");
    assert_eq!(e.kind, ErrorKind::InvalidConfig, "{e}");
    assert!(e.msg.contains("8080"), "{e}");
    let after = lab.state();
    assert_eq!(before, after, "the failed ADD left changes: {}", before.diff(&after));
    lab.assert_no_eth0(c1);

    // A failure inside the container (no IPv6 there, a dual-stack pool), after the veth.
    let dual = lab.conf(
        "bridge",
        "10.204.0.0/24",
        json!({"ipam": {"type": "netkit-ipam", "dataDir": lab.host.ipam_dir(),
                        "ranges": [[{"subnet": "10.204.0.0/24"}], [{"subnet": "fd04:204::/64"}]]}}),
    );
    let n1 = lab.ctr_name(c1).to_string();
    assert!(
        in_ns(&n1, &["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"])
            .status
            .success()
    );
    lab.add(&dual, c1).expect_err("ADD into a container without IPv6");
    let after = lab.state();
    assert_eq!(before, after, "the failed ADD left changes: {}", before.diff(&after));
    lab.assert_no_eth0(c1);

    // What ctr0 has was never touched.
    assert!(ping(lab.ctr_name(c0), "10.204.0.1"), "ctr0 -> gateway");
    lab.check(&conf, c0, &r0).expect("CHECK ctr0");

    // Refused before anything changes: an invalid attachment (and DEL of it succeeds).
    let mut bad = lab.att(c1);
    bad.container_id = "-bad id".into();
    let e = lab
        .rt
        .block_on(attach::add(&conf, &bad))
        .expect_err("ADD of an invalid ID");
    assert_eq!(e.kind, ErrorKind::InvalidAttachment, "{e}");
    lab.rt.block_on(attach::del(&conf, &bad)).expect("DEL of an invalid ID");
    assert_eq!(before, lab.state());

    lab.del(&conf, c0);
    lab.assert_clean();
}

/// `clusterStore`: ADD records the pod (addresses, node, host end, labels) for network policy,
/// DEL forgets it; a pod the runtime does not name is refused before anything changes; a
/// store that cannot be written makes the ADD fail and be undone.
#[test]
fn the_cluster_store_records_the_pod_and_forgets_it() {
    use netkit_core::policy::catalog;
    use netkit_core::store::FileObjectStore;

    let mut lab = Lab::new("atrec");
    let dir = lab.host.dir().join("cluster");
    let conf = lab.conf(
        "bridge",
        "10.205.0.0/24",
        json!({"clusterStore": format!("file={}", dir.display()), "nodeName": "node-1",
               "runtimeConfig": {"labels": {"app": "db", "tier": "back"}}}),
    );
    let c0 = lab.container();
    let named = |i: usize| lab.att(i).arg("K8S_POD_NAMESPACE", "shop").arg("K8S_POD_NAME", "db-0");
    let before = lab.state();
    let e = lab.add(&conf, c0).expect_err("a pod the runtime does not name");
    assert_eq!(e.kind, ErrorKind::InvalidAttachment, "{e}");
    assert!(e.msg.contains("K8S_POD_NAME"), "{e}");
    assert_eq!(before, lab.state(), "refused before anything changed");

    let r = lab.rt.block_on(attach::add(&conf, &named(c0))).expect("ADD");
    let store = lab.rt.block_on(FileObjectStore::open(dir.join("cluster"))).unwrap();
    let pods = lab.rt.block_on(catalog::list_pods(&store)).unwrap();
    assert_eq!(pods.len(), 1, "{pods:?}");
    let (id, pod) = &pods[0];
    assert_eq!(id, "shop/db-0");
    assert_eq!(pod.node, "node-1");
    assert_eq!(pod.ips, vec![r.result.ips[0].address.ip()]);
    assert_eq!(pod.interface, r.result.interfaces[r.result.interfaces.len() - 2].name);
    assert_eq!(pod.labels.get("tier").map(String::as_str), Some("back"));
    lab.rt.block_on(attach::del(&conf, &named(c0))).expect("DEL");
    assert!(
        lab.rt.block_on(catalog::list_pods(&store)).unwrap().is_empty(),
        "DEL forgets the pod"
    );
    lab.assert_clean();

    // A store that cannot be written (a file where its directory should be): ADD fails, undone.
    let blocked = lab.host.dir().join("blocked");
    std::fs::write(&blocked, "not a directory").unwrap();
    let conf = lab.conf(
        "bridge",
        "10.205.0.0/24",
        json!({"clusterStore": format!("file={}", blocked.display()), "nodeName": "node-1"}),
    );
    let e = lab
        .rt
        .block_on(attach::add(&conf, &named(c0)))
        .expect_err("an unwritable store");
    assert_eq!(e.kind, ErrorKind::NotAvailable, "{e}");
    lab.assert_no_eth0(c0);
    lab.assert_clean();
}
