//! Network policy (`netkit_core::policy`) on the real kernel: pods attached with
//! `netkit_core::attach` in bridge and routed mode inside a host namespace of the test's own
//! ([`HostNs`]), two outside namespaces behind the host (O1 192.0.2.2 and O2 198.51.100.2,
//! not masqueraded), real TCP and UDP through test-support's echo servers. Every case checks
//! traffic both allowed and denied. Nothing touches the namespace the tests run in.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use netkit_core::attach::{self, Attachment, Host, NetworkConfig};
use netkit_core::firewall::Driver;
use netkit_core::policy::{
    compile, ApplyStats, Cluster, Labels, LocalPod, NetworkPolicy, PodInfo, PolicyError, PolicyFirewall, PolicyOptions,
};
use netkit_core::{NetNs, NetNsGuard};
use netkit_test_support::echo::{
    echo_connect, echo_line, tcp_hello_from, udp_client, udp_hello, LineEcho, Server, UdpServer,
};
use netkit_test_support::{ip, HostNs};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Bridge,
    Routed,
}

/// Who sends: a pod (by index), an outside namespace (0: O1, 1: O2) or the host itself.
#[derive(Clone, Copy, Debug)]
enum Who {
    Pod(usize),
    Out(usize),
    Host,
}

/// A pod to attach: (namespace, name, labels).
type PodSpec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

const OUT_ADDRS: [&str; 2] = ["192.0.2.2", "198.51.100.2"];
const HOST_ADDR: &str = "192.0.2.1";

struct Pod {
    namespace: String,
    name: String,
    labels: Labels,
    ip: IpAddr,
    /// Its IPv6 address, in a dual-stack lab ([`Lab::dual_stack`]).
    ip6: Option<IpAddr>,
    interface: String,
}

/// A host with pods attached, two outside namespaces, and the policy firewall of the host.
struct Lab {
    // Servers stop first, then the namespaces go.
    tcp: Vec<Server>,
    udp: Vec<UdpServer>,
    echo: Vec<LineEcho>,
    pods: Vec<Pod>,
    ctrs: Vec<NetNsGuard>,
    outs: Vec<NetNsGuard>,
    host: HostNs,
    namespaces: BTreeMap<String, Labels>,
    fw: PolicyFirewall,
    rt: tokio::runtime::Runtime,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn policy(v: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(v).expect("a valid NetworkPolicy")
}

impl Lab {
    /// Pods `(namespace, name, labels)` attached in `mode`; namespaces with `ns_labels`.
    fn new(tag: &str, mode: Mode, pods: &[PodSpec], ns_labels: &[(&str, &[(&str, &str)])]) -> Lab {
        Lab::build(tag, mode, pods, ns_labels, false)
    }

    /// [`Lab::new`] with every pod also on `fd10:210::/64` (netkit-cni's dual-stack ranges).
    fn dual_stack(tag: &str, mode: Mode, pods: &[PodSpec]) -> Lab {
        Lab::build(tag, mode, pods, &[], true)
    }

    fn build(tag: &str, mode: Mode, pods: &[PodSpec], ns_labels: &[(&str, &[(&str, &str)])], dual: bool) -> Lab {
        let host = HostNs::new(tag);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let subnet = "10.210.0.0/24";
        let mut ranges = vec![json!([{"subnet": subnet}])];
        if dual {
            ranges.push(json!([{"subnet": "fd10:210::/64"}]));
        }
        let conf = json!({
            "cniVersion": "1.1.0",
            "name": "polnet",
            "type": "netkit-cni",
            "mode": if mode == Mode::Bridge { "bridge" } else { "routed" },
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "firewallBackend": "nftables",
            "firewallStateDir": host.fw_dir(),
            "ipam": {"type": "netkit-ipam", "dataDir": host.ipam_dir(), "ranges": ranges}
        });
        let conf = NetworkConfig::parse(conf.to_string().as_bytes()).expect("a configuration");
        let mut ctrs = Vec::new();
        let mut list = Vec::new();
        for (i, (ns, name, l)) in pods.iter().enumerate() {
            let ctr = host.container(&format!("p{i}"));
            let att = Attachment::new(ctr.path().display().to_string(), format!("pod{i}"), "eth0").host(Host {
                netns: Some(host.ns().clone()),
                ..Default::default()
            });
            let r = rt.block_on(attach::add(&conf, &att)).expect("ADD");
            let n = r.result.interfaces.len();
            list.push(Pod {
                namespace: ns.to_string(),
                name: name.to_string(),
                labels: labels(l),
                ip: r.result.ips[0].address.ip(),
                ip6: r.result.ips.iter().map(|a| a.address.ip()).find(IpAddr::is_ipv6),
                interface: r.result.interfaces[n - 2].name.clone(),
            });
            ctrs.push(ctr);
        }
        // O1 on ext0 and O2 on ext1, routing the pod subnet back through the host.
        let mut outs = Vec::new();
        for (i, (hostnet, addr)) in [("192.0.2.1/24", OUT_ADDRS[0]), ("198.51.100.1/24", OUT_ADDRS[1])]
            .into_iter()
            .enumerate()
        {
            let o = host.container(&format!("o{i}"));
            let (h, on) = (host.name(), o.name().expect("named").to_string());
            let ext = format!("ext{i}");
            let gw = hostnet.split('/').next().unwrap();
            for line in [
                vec![
                    "-n", h, "link", "add", &ext, "type", "veth", "peer", "name", "eth0", "netns", &on,
                ],
                vec!["-n", h, "link", "set", &ext, "up"],
                vec!["-n", h, "addr", "add", hostnet, "dev", &ext],
                vec!["-n", &on, "link", "set", "eth0", "up"],
                vec!["-n", &on, "addr", "add", &format!("{addr}/24"), "dev", "eth0"],
                vec!["-n", &on, "route", "add", subnet, "via", gw],
            ] {
                ip(&line);
            }
            outs.push(o);
        }
        netkit_core::sysctl::set(host.ns(), "net.ipv4.ip_forward", "1").expect("ip_forward");
        // The namespace-wide br_netfilter switches off: what the policy firewall turns on for
        // its bridges (their own nf_call_iptables) must be enough.
        for key in [
            "net.bridge.bridge-nf-call-iptables",
            "net.bridge.bridge-nf-call-ip6tables",
        ] {
            netkit_core::sysctl::set(host.ns(), key, "0").expect("bridge-nf-call off");
        }
        let fw = rt
            .block_on(PolicyFirewall::open(host.ns(), PolicyOptions::default()))
            .expect("open the policy firewall");
        let namespaces = ns_labels.iter().map(|(ns, l)| (ns.to_string(), labels(l))).collect();
        Lab {
            tcp: Vec::new(),
            udp: Vec::new(),
            echo: Vec::new(),
            pods: list,
            ctrs,
            outs,
            host,
            namespaces,
            fw,
            rt,
        }
    }

    fn ns(&self, who: Who) -> &NetNs {
        match who {
            Who::Pod(i) => &self.ctrs[i],
            Who::Out(i) => &self.outs[i],
            Who::Host => self.host.ns(),
        }
    }

    fn addr(&self, who: Who, port: u16) -> SocketAddr {
        let ip: IpAddr = match who {
            Who::Pod(i) => self.pods[i].ip,
            Who::Out(i) => OUT_ADDRS[i].parse().unwrap(),
            Who::Host => HOST_ADDR.parse().unwrap(),
        };
        SocketAddr::new(ip, port)
    }

    fn serve_tcp(&mut self, who: Who, port: u16) {
        let s = Server::tcp(self.ns(who), &format!("{who:?}"), self.addr(who, port).with_any());
        self.tcp.push(s);
    }

    fn serve_udp(&mut self, who: Who, port: u16) {
        let s = UdpServer::bind(self.ns(who), &format!("{who:?}"), self.addr(who, port).with_any());
        self.udp.push(s);
    }

    /// Compile `policies` for this lab's pods (all local) and apply them.
    fn apply(&self, policies: &[(&str, NetworkPolicy)]) -> ApplyStats {
        let cluster = Cluster {
            policies: policies.iter().map(|(id, p)| (id.to_string(), p.clone())).collect(),
            pods: self
                .pods
                .iter()
                .map(|p| PodInfo {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    ips: std::iter::once(p.ip).chain(p.ip6).collect(),
                    labels: p.labels.clone(),
                })
                .collect(),
            namespaces: self.namespaces.clone(),
        };
        let local: Vec<_> = self
            .pods
            .iter()
            .map(|p| LocalPod {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                interface: p.interface.clone(),
            })
            .collect();
        let node = compile(&cluster, &local).expect("compile");
        self.rt.block_on(self.fw.apply(&node)).expect("apply")
    }

    /// Run every probe `(from, to, port, udp, allowed?)` at once; fail listing every mismatch.
    #[track_caller]
    fn expect(&self, step: &str, probes: &[(Who, Who, u16, bool, bool)]) {
        let bad: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = probes
                .iter()
                .map(|&(from, to, port, udp, want)| {
                    let (ns, addr) = (self.ns(from), self.addr(to, port));
                    s.spawn(move || {
                        let got = if udp {
                            udp_hello(&udp_client(ns, addr))
                        } else {
                            tcp_hello_from(ns, addr)
                        };
                        let proto = if udp { "udp" } else { "tcp" };
                        (got.is_ok() != want)
                            .then(|| format!("{from:?} -> {to:?} {proto}/{port}: wanted allowed={want}, got {got:?}"))
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert!(bad.is_empty(), "{step}:\n{}", bad.join("\n"));
    }
}

trait WithAny {
    fn with_any(self) -> SocketAddr;
}

impl WithAny for SocketAddr {
    /// The wildcard address of the same port (servers listen on every address).
    fn with_any(self) -> SocketAddr {
        SocketAddr::new("0.0.0.0".parse().unwrap(), self.port())
    }
}

const TCP: bool = false;
const UDP: bool = true;

macro_rules! both_modes {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn bridge() {
                super::$body(super::Mode::Bridge)
            }
            #[test]
            fn routed() {
                super::$body(super::Mode::Routed)
            }
        }
    };
}

both_modes!(deny_all_then_allow_by_label, deny_all_then_allow_by_label_in);
both_modes!(namespace_selector, namespace_selector_in);
both_modes!(ip_block_with_except, ip_block_with_except_in);
both_modes!(port_ranges, port_ranges_in);
both_modes!(egress_deny_with_dns_allowed, egress_deny_with_dns_allowed_in);
both_modes!(a_policy_added_while_a_connection_is_open, open_connection_in);
both_modes!(ipv6_deny_all_then_allow_by_label, ipv6_deny_all_then_allow_by_label_in);

/// IPv6 traffic between dual-stack pods: deny all ingress, then allow web from client on one
/// port; IPv4 follows the same policy.
fn ipv6_deny_all_then_allow_by_label_in(mode: Mode) {
    let (web, client, other) = (0, 1, 2);
    let mut lab = Lab::dual_stack(
        "polsix",
        mode,
        &[
            ("a", "web", &[("app", "web")]),
            ("a", "client", &[("app", "client")]),
            ("a", "other", &[("app", "other")]),
        ],
    );
    assert!(lab.pods.iter().all(|p| p.ip6.is_some()), "dual-stack pods");
    for port in [80, 81] {
        // [::]: one socket for both families.
        let s = Server::tcp(&lab.ctrs[web], "web", SocketAddr::new("::".parse().unwrap(), port));
        lab.tcp.push(s);
    }
    // (from, to, port, family 6?, allowed?)
    let check = |lab: &Lab, step: &str, probes: &[(usize, usize, u16, bool, bool)]| {
        let bad: Vec<String> = probes
            .iter()
            .filter_map(|&(from, to, port, six, want)| {
                let ip = if six {
                    lab.pods[to].ip6.unwrap()
                } else {
                    lab.pods[to].ip
                };
                let got = tcp_hello_from(&lab.ctrs[from], SocketAddr::new(ip, port));
                (got.is_ok() != want).then(|| format!("{from} -> {ip}:{port}: wanted allowed={want}, got {got:?}"))
            })
            .collect();
        assert!(bad.is_empty(), "{mode:?} {step}:\n{}", bad.join("\n"));
    };
    lab.apply(&[]);
    check(
        &lab,
        "no policy",
        &[
            (client, web, 80, true, true),
            (other, web, 80, true, true),
            (other, web, 81, false, true),
        ],
    );
    let deny = policy(json!({"podSelector": {}, "policyTypes": ["Ingress"]}));
    let allow = policy(json!({
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]}]
    }));
    lab.apply(&[("a/deny", deny.clone())]);
    check(
        &lab,
        "deny all",
        &[
            (client, web, 80, true, false),
            (other, web, 80, true, false),
            (client, web, 80, false, false),
        ],
    );
    lab.apply(&[("a/deny", deny), ("a/web", allow)]);
    check(
        &lab,
        "allow web from client on 80",
        &[
            (client, web, 80, true, true),
            (client, web, 81, true, false),
            (other, web, 80, true, false),
            (client, web, 80, false, true),
            (other, web, 80, false, false),
        ],
    );
    lab.apply(&[]);
    check(&lab, "policies removed", &[(other, web, 81, true, true)]);
}

fn deny_all_then_allow_by_label_in(mode: Mode) {
    let (web, client, other) = (Who::Pod(0), Who::Pod(1), Who::Pod(2));
    let mut lab = Lab::new(
        "poldeny",
        mode,
        &[
            ("a", "web", &[("app", "web")]),
            ("a", "client", &[("app", "client")]),
            ("a", "other", &[("app", "other")]),
        ],
        &[],
    );
    for (who, port) in [(web, 80), (web, 81), (client, 80)] {
        lab.serve_tcp(who, port);
    }
    lab.serve_tcp(Who::Out(0), 7777);
    let s = lab.apply(&[]);
    assert_eq!((s.added, s.removed, s.replaced), (0, 0, true), "{s:?}");
    let bridges = usize::from(mode == Mode::Bridge);
    assert_eq!(
        s.bridges_enabled, bridges,
        "br_netfilter on cni0 from the first apply: {s:?}"
    );
    lab.expect(
        "no policy",
        &[
            (client, web, 80, TCP, true),
            (other, web, 80, TCP, true),
            (Who::Out(0), web, 80, TCP, true),
        ],
    );

    let deny = policy(json!({"podSelector": {}, "policyTypes": ["Ingress"]}));
    let s = lab.apply(&[("a/deny", deny.clone())]);
    assert_eq!(
        (s.added, s.removed, s.replaced),
        (3, 0, false),
        "three pods isolated: {s:?}"
    );
    assert_eq!(s.bridges_enabled, 0, "once is enough: {s:?}");
    lab.expect(
        "deny all ingress",
        &[
            (client, web, 80, TCP, false),
            (other, web, 80, TCP, false),
            (Who::Out(0), web, 80, TCP, false),
            (web, client, 80, TCP, false),
            // The node itself (kubelet's probes) and egress are not affected.
            (Who::Host, web, 80, TCP, true),
            (web, Who::Out(0), 7777, TCP, true),
        ],
    );

    let allow = policy(json!({
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]}]
    }));
    lab.apply(&[("a/deny", deny), ("a/web", allow)]);
    lab.expect(
        "deny all, allow web from client on 80",
        &[
            (client, web, 80, TCP, true),
            (client, web, 81, TCP, false),
            (other, web, 80, TCP, false),
            (Who::Out(0), web, 80, TCP, false),
            (web, client, 80, TCP, false),
        ],
    );

    let s = lab.apply(&[]);
    assert_eq!(s.added, 0, "{s:?}");
    lab.expect(
        "policies removed",
        &[(other, web, 80, TCP, true), (web, client, 80, TCP, true)],
    );
}

fn namespace_selector_in(mode: Mode) {
    let (web, blue, blue2, red) = (Who::Pod(0), Who::Pod(1), Who::Pod(2), Who::Pod(3));
    let mut lab = Lab::new(
        "polns",
        mode,
        &[
            ("a", "web", &[("app", "web")]),
            ("b", "x", &[("app", "x")]),
            ("b", "y", &[("app", "y")]),
            ("c", "x", &[("app", "x")]),
        ],
        &[("b", &[("team", "blue")]), ("c", &[("team", "red")])],
    );
    lab.serve_tcp(web, 80);
    lab.apply(&[(
        "a/web",
        policy(json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]
        })),
    )]);
    lab.expect(
        "namespaceSelector alone",
        &[
            (blue, web, 80, TCP, true),
            (blue2, web, 80, TCP, true),
            (red, web, 80, TCP, false),
        ],
    );
    lab.apply(&[(
        "a/web",
        policy(json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}},
                                   "podSelector": {"matchLabels": {"app": "x"}}}]}]
        })),
    )]);
    lab.expect(
        "namespaceSelector and podSelector",
        &[
            (blue, web, 80, TCP, true),
            (blue2, web, 80, TCP, false),
            (red, web, 80, TCP, false),
        ],
    );
}

fn ip_block_with_except_in(mode: Mode) {
    let (web, client) = (Who::Pod(0), Who::Pod(1));
    let mut lab = Lab::new(
        "polblk",
        mode,
        &[("a", "web", &[("app", "web")]), ("a", "client", &[("app", "client")])],
        &[],
    );
    lab.serve_tcp(web, 80);
    let block = |except: &str| {
        policy(json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.0.0/2", "except": [except]}}]}]
        }))
    };
    lab.apply(&[("a/web", block("198.51.100.0/24"))]);
    lab.expect(
        "192.0.0.0/2 except 198.51.100.0/24",
        &[
            (Who::Out(0), web, 80, TCP, true),
            (Who::Out(1), web, 80, TCP, false),
            (client, web, 80, TCP, false),
        ],
    );
    lab.apply(&[("a/web", block("192.0.2.0/24"))]);
    lab.expect(
        "192.0.0.0/2 except 192.0.2.0/24",
        &[
            (Who::Out(0), web, 80, TCP, false),
            (Who::Out(1), web, 80, TCP, true),
            (client, web, 80, TCP, false),
        ],
    );
}

fn port_ranges_in(mode: Mode) {
    let (web, client) = (Who::Pod(0), Who::Pod(1));
    let mut lab = Lab::new(
        "polport",
        mode,
        &[("a", "web", &[("app", "web")]), ("a", "client", &[("app", "client")])],
        &[],
    );
    for port in [80, 8000, 8005, 8006] {
        lab.serve_tcp(web, port);
    }
    lab.serve_udp(web, 8000);
    let range = json!({"protocol": "TCP", "port": 8000, "endPort": 8005});
    lab.apply(&[(
        "a/web",
        policy(json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [range]}]})),
    )]);
    lab.expect(
        "TCP 8000-8005",
        &[
            (client, web, 8000, TCP, true),
            (client, web, 8005, TCP, true),
            (Who::Out(0), web, 8005, TCP, true),
            (client, web, 8006, TCP, false),
            (client, web, 80, TCP, false),
            (client, web, 8000, UDP, false),
        ],
    );
    lab.apply(&[(
        "a/web",
        policy(json!({"podSelector": {"matchLabels": {"app": "web"}},
                      "ingress": [{"ports": [range, {"protocol": "UDP", "port": 8000}]}]})),
    )]);
    lab.expect(
        "TCP 8000-8005 and UDP 8000",
        &[(client, web, 8000, UDP, true), (client, web, 8006, TCP, false)],
    );
}

fn egress_deny_with_dns_allowed_in(mode: Mode) {
    let (web, client) = (Who::Pod(0), Who::Pod(1));
    let mut lab = Lab::new(
        "polegr",
        mode,
        &[("a", "web", &[("app", "web")]), ("a", "client", &[("app", "client")])],
        &[],
    );
    lab.serve_tcp(web, 80);
    lab.serve_tcp(client, 80);
    lab.serve_tcp(Who::Out(0), 7777);
    lab.serve_udp(Who::Out(0), 53);
    lab.serve_tcp(Who::Host, 9999);
    let dns = json!({"ports": [{"protocol": "UDP", "port": 53}]});
    lab.apply(&[(
        "a/web",
        policy(json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"], "egress": [dns]})),
    )]);
    lab.expect(
        "egress: DNS only",
        &[
            (web, Who::Out(0), 53, UDP, true),
            (web, Who::Out(0), 7777, TCP, false),
            (web, client, 80, TCP, false),
            // The node's own address: the input hook.
            (web, Who::Host, 9999, TCP, false),
            // Not isolated: client, and web's ingress.
            (client, Who::Out(0), 7777, TCP, true),
            (client, Who::Host, 9999, TCP, true),
            (client, web, 80, TCP, true),
        ],
    );
    lab.apply(&[(
        "a/web",
        policy(
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                      "egress": [dns, {"to": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                       "ports": [{"port": 80}]}]}),
        ),
    )]);
    lab.expect(
        "egress: DNS and client:80",
        &[
            (web, client, 80, TCP, true),
            (web, Who::Out(0), 53, UDP, true),
            (web, Who::Out(0), 7777, TCP, false),
        ],
    );
}

fn open_connection_in(mode: Mode) {
    let (web, client) = (Who::Pod(0), Who::Pod(1));
    let mut lab = Lab::new(
        "polopen",
        mode,
        &[("a", "web", &[("app", "web")]), ("a", "client", &[("app", "client")])],
        &[],
    );
    let echo = LineEcho::tcp(lab.ns(web), lab.addr(web, 7000).with_any());
    lab.echo.push(echo);
    lab.serve_tcp(web, 80);
    // The pods as attached, no policy yet (as an agent applies when a pod comes): in bridge
    // mode, this is what makes the bridge's traffic tracked from its start.
    lab.apply(&[]);
    let mut conn = echo_connect(lab.ns(client), lab.addr(web, 7000)).expect("connect before any policy");
    echo_line(&mut conn, "before").expect("echo before the policy");
    lab.apply(&[("a/deny", policy(json!({"podSelector": {}, "policyTypes": ["Ingress"]})))]);
    for i in 0..3 {
        echo_line(&mut conn, &format!("after {i}")).expect("the open connection keeps flowing");
    }
    assert!(
        echo_connect(lab.ns(client), lab.addr(web, 7000)).is_err(),
        "a new connection passed the deny-all policy"
    );
    lab.expect(
        "deny all",
        &[(client, web, 80, TCP, false), (Who::Host, web, 80, TCP, true)],
    );
    lab.apply(&[]);
    let mut again = echo_connect(lab.ns(client), lab.addr(web, 7000)).expect("a new connection after the policy went");
    echo_line(&mut again, "again").unwrap();
    echo_line(&mut conn, "still").unwrap();
}

/// One rule changed among 10 and among 10,000: the same small transaction (one element out,
/// one in), never a rewrite. Then the table deleted behind the firewall's back: the next
/// apply replaces everything.
#[test]
fn change_cost_does_not_grow_with_the_rules() {
    let host = HostNs::new("polcost");
    host.ip(&["link", "add", "pw0", "type", "veth", "peer", "name", "pw1"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fw = rt
        .block_on(PolicyFirewall::open(host.ns(), PolicyOptions::default()))
        .unwrap();
    let web = PodInfo {
        namespace: "a".into(),
        name: "web".into(),
        ips: vec!["10.210.0.2".parse().unwrap()],
        labels: labels(&[("app", "web")]),
    };
    let local = [LocalPod {
        namespace: "a".into(),
        name: "web".into(),
        interface: "pw0".into(),
    }];
    // Rule i: from 172.16.0.0 + 2i (gaps: no two peers merge) to TCP `port(i)`.
    let node = |n: u32, port: &dyn Fn(u32) -> u16| {
        let rules: Vec<_> = (0..n)
            .map(|i| {
                let peer = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(172, 16, 0, 0)) + 2 * i);
                json!({"from": [{"ipBlock": {"cidr": format!("{peer}/32")}}], "ports": [{"port": port(i)}]})
            })
            .collect();
        let cluster = Cluster {
            policies: [(
                "a/web".to_string(),
                policy(json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": rules})),
            )]
            .into(),
            pods: vec![web.clone()],
            namespaces: BTreeMap::new(),
        };
        compile(&cluster, &local).unwrap()
    };
    let count = || {
        let out = host.nft_ruleset();
        out.matches(" . tcp . ").count()
    };
    for n in [10u32, 10_000] {
        let s = rt.block_on(fw.apply(&node(n, &|_| 80))).unwrap();
        assert_eq!(s.added, n as usize + 1, "{n} rules and the isolation: {s:?}");
        assert_eq!(count(), n as usize, "elements in the kernel");
        let s = rt
            .block_on(fw.apply(&node(n, &|i| if i == 5 { 81 } else { 80 })))
            .unwrap();
        assert_eq!(
            (s.added, s.removed, s.replaced),
            (1, 1, false),
            "one rule changed among {n}: {s:?}"
        );
        let ruleset = host.nft_ruleset();
        assert!(
            ruleset.contains("172.16.0.10 . tcp . 81"),
            "the changed rule is in the kernel"
        );
        assert_eq!(count(), n as usize);
        // Back to nothing (a diff too), for the next round.
        let s = rt.block_on(fw.apply(&Default::default())).unwrap();
        assert_eq!((s.added, s.removed, s.replaced), (0, n as usize + 1, false), "{s:?}");
    }
    // Someone deletes the table: the next apply makes it again with every element.
    host.ip(&["link", "set", "pw0", "up"]);
    assert!(std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            host.name(),
            "nft",
            "delete",
            "table",
            "inet",
            "netkit-policy"
        ])
        .status()
        .unwrap()
        .success());
    let s = rt.block_on(fw.apply(&node(10, &|_| 80))).unwrap();
    assert!(s.replaced, "{s:?}");
    assert_eq!(count(), 10);
    rt.block_on(fw.clear()).unwrap();
    assert!(!host.nft_ruleset().contains("netkit-policy"));
}

#[test]
fn iptables_is_refused() {
    let host = HostNs::new("polipt");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = PolicyOptions {
        driver: Some(Driver::Iptables),
        ..Default::default()
    };
    let err = rt
        .block_on(PolicyFirewall::open(host.ns(), options))
        .err()
        .expect("iptables refused");
    assert!(matches!(err, PolicyError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("network policy needs nftables"), "{err}");
    assert!(host.nft_ruleset().trim().is_empty(), "nothing was made");
}

/// IPv6: a dual-stack pod's IPv6 address is isolated and its IPv6 peers reach the kernel's
/// ipv6 sets, by replacement and then by diff.
#[test]
fn ipv6_elements_reach_the_kernel() {
    let host = HostNs::new("polv6");
    host.ip(&["link", "add", "pw0", "type", "veth", "peer", "name", "pw1"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fw = rt
        .block_on(PolicyFirewall::open(host.ns(), PolicyOptions::default()))
        .unwrap();
    let cluster = |except: &str| {
        Cluster {
        policies: [(
            "a/web".to_string(),
            policy(json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "fd00:1::/64", "except": [except]}}],
                                                        "ports": [{"protocol": "UDP", "port": 53}]}]})),
        )]
        .into(),
        pods: vec![PodInfo {
            namespace: "a".into(),
            name: "web".into(),
            ips: vec!["10.210.0.2".parse().unwrap(), "fd00:2::2".parse().unwrap()],
            labels: Labels::new(),
        }],
        namespaces: BTreeMap::new(),
    }
    };
    let local = [LocalPod {
        namespace: "a".into(),
        name: "web".into(),
        interface: "pw0".into(),
    }];
    let s = rt
        .block_on(fw.apply(&compile(&cluster("fd00:1::/80"), &local).unwrap()))
        .unwrap();
    // Two isolations (v4, v6) and fd00:1::/64 minus its first /80: one range.
    assert_eq!((s.added, s.replaced), (3, true), "{s:?}");
    let r = host.nft_ruleset();
    assert!(
        r.contains("fd00:2::2 . fd00:1:0:0:1::-fd00:1::ffff:ffff:ffff:ffff . udp . 53"),
        "{r}"
    );
    let s = rt
        .block_on(fw.apply(&compile(&cluster("fd00:1::ff00:0:0/88"), &local).unwrap()))
        .unwrap();
    // The new hole (inside the old one) leaves the range after it as it was: one element
    // comes (the part before the hole), none goes.
    assert_eq!((s.added, s.removed, s.replaced), (1, 0, false), "{s:?}");
    let r = host.nft_ruleset();
    assert!(
        r.contains("fd00:2::2 . fd00:1::-fd00:1::feff:ffff:ffff . udp . 53"),
        "{r}"
    );
    assert!(
        r.contains("fd00:2::2 . fd00:1:0:0:1::-fd00:1::ffff:ffff:ffff:ffff . udp . 53"),
        "{r}"
    );
}
