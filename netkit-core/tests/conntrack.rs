//! The conntrack table over ctnetlink, on the real kernel, in throwaway namespaces: a client C
//! and a server S joined by a veth; S DNATs a UDP "service" (VIP:53) to an endpoint on its
//! loopback (A or B, port 5353) with an nft rule, as a service proxy does. The endpoint a
//! datagram reached is told by which of the two UDP sockets in S received it.
//!
//! The bug the module exists for: once the rule points at B, a client that keeps sending from
//! the same port still reaches A, because its conntrack entry has the old DNAT; deleting the
//! entries whose reply comes from A (`conntrack -D -p udp --reply-src A`) fixes it.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use netkit_core::conntrack::{Conntrack, Filter, Protocol, Status};
use netkit_core::route::IpFamily;
use netkit_core::{NetNs, NetNsGuard};
use netkit_test_support::{sh, unique, wait_for};

/// One family's addresses in the lab.
struct Plan {
    family: IpFamily,
    client: IpAddr,
    server: IpAddr,
    vip: IpAddr,
    a: IpAddr,
    b: IpAddr,
    /// An address nothing uses (for filters that match nothing).
    unused: IpAddr,
    /// `ip` or `ip6` (nft's family keyword).
    nft: &'static str,
}

const V4: Plan = Plan {
    family: IpFamily::V4,
    client: ip4(10, 77, 0, 1),
    server: ip4(10, 77, 0, 2),
    vip: ip4(10, 96, 0, 10),
    a: ip4(10, 78, 0, 5),
    b: ip4(10, 78, 0, 6),
    unused: ip4(10, 78, 0, 7),
    nft: "ip",
};

const V6: Plan = Plan {
    family: IpFamily::V6,
    client: ip6(0xfd77, 1),
    server: ip6(0xfd77, 2),
    vip: ip6(0xfd96, 0x10),
    a: ip6(0xfd78, 5),
    b: ip6(0xfd78, 6),
    unused: ip6(0xfd78, 7),
    nft: "ip6",
};

const fn ip4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
}

const fn ip6(net: u16, host: u16) -> IpAddr {
    IpAddr::V6(std::net::Ipv6Addr::new(net, 0, 0, 0, 0, 0, 0, host))
}

const SERVICE_PORT: u16 = 53;
const ENDPOINT_PORT: u16 = 5353;
const CLIENT_PORT: u16 = 40000;
const DEADLINE: Duration = Duration::from_secs(5);

/// `[addr]:port` for nft (brackets for IPv6).
fn nft_addr(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// The lab: C and S joined by veth `c0`/`s0`, A and B on S's loopback, C routing the VIP to S,
/// and S's table `inet svc` DNATing VIP:53 to A:5353 (both families' rules are installed, so
/// the two families can be checked in one lab). Namespaces go on drop (also on panic).
struct Lab {
    client: NetNsGuard,
    server: NetNsGuard,
}

impl Lab {
    fn build() -> Lab {
        let client = NetNsGuard::create(&unique("ctc")).expect("client netns");
        let server = NetNsGuard::create(&unique("cts")).expect("server netns");
        let s = server.name().expect("named");
        sh(
            &client,
            &format!("ip link set lo up && ip link add c0 type veth peer name s0 netns {s}"),
        );
        sh(
            &client,
            &format!(
                "ip link set c0 up && ip addr add {}/24 dev c0 && ip addr add {}/64 dev c0 nodad && \
                 ip route add {}/32 via {} && ip route add {}/128 via {}",
                V4.client, V6.client, V4.vip, V4.server, V6.vip, V6.server
            ),
        );
        sh(
            &server,
            &format!(
                "ip link set lo up && ip link set s0 up && ip addr add {}/24 dev s0 && \
                 ip addr add {}/64 dev s0 nodad && ip addr add {}/32 dev lo && ip addr add {}/32 dev lo && \
                 ip addr add {}/128 dev lo nodad && ip addr add {}/128 dev lo nodad",
                V4.server, V6.server, V4.a, V4.b, V6.a, V6.b
            ),
        );
        sh(
            &server,
            "nft -f - <<'EOF'\n\
             table inet svc {\n\
               chain v4 { type nat hook prerouting priority dstnat; policy accept; }\n\
               chain v6 { type nat hook prerouting priority dstnat; policy accept; }\n\
             }\n\
             EOF",
        );
        let lab = Lab { client, server };
        lab.point_service_at(&V4, V4.a);
        lab.point_service_at(&V6, V6.a);
        lab
    }

    /// Make `plan`'s service DNAT to `endpoint` (replacing the rule: what a proxy does when the
    /// endpoint changes).
    fn point_service_at(&self, plan: &Plan, endpoint: IpAddr) {
        let chain = match plan.family {
            IpFamily::V4 => "v4",
            IpFamily::V6 => "v6",
        };
        sh(
            &self.server,
            &format!(
                "nft flush chain inet svc {chain} && nft add rule inet svc {chain} {nft} daddr {vip} udp dport {SERVICE_PORT} \
                 dnat {nft} to {to}",
                nft = plan.nft,
                vip = plan.vip,
                to = nft_addr(endpoint, ENDPOINT_PORT),
            ),
        );
    }
}

/// A UDP socket bound to `addr` inside `ns`, non-blocking.
fn udp(ns: &NetNs, addr: SocketAddr) -> UdpSocket {
    let s = ns
        .run(move || UdpSocket::bind(addr))
        .expect("enter netns")
        .unwrap_or_else(|e| panic!("bind {addr} in {ns}: {e}"));
    s.set_nonblocking(true).expect("non-blocking");
    s
}

/// The two endpoints' sockets in S.
struct Endpoints {
    a: UdpSocket,
    b: UdpSocket,
}

impl Endpoints {
    fn bind(lab: &Lab, plan: &Plan) -> Endpoints {
        Endpoints {
            a: udp(&lab.server, SocketAddr::new(plan.a, ENDPOINT_PORT)),
            b: udp(&lab.server, SocketAddr::new(plan.b, ENDPOINT_PORT)),
        }
    }

    /// Send `payload` from `client` to the service and return which endpoint got it ("A" or
    /// "B"), polling both sockets until it arrives (bounded).
    fn send(&self, client: &UdpSocket, plan: &Plan, payload: &str) -> &'static str {
        client
            .send_to(payload.as_bytes(), SocketAddr::new(plan.vip, SERVICE_PORT))
            .expect("send to the service");
        wait_for(DEADLINE, &format!("datagram {payload:?} at A or B"), || {
            for (name, s) in [("A", &self.a), ("B", &self.b)] {
                let mut buf = [0u8; 64];
                loop {
                    match s.recv_from(&mut buf) {
                        Ok((n, _)) if &buf[..n] == payload.as_bytes() => return Ok(name),
                        Ok(_) => continue, // an earlier datagram
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("recv at {name}: {e}"),
                    }
                }
            }
            Err("not arrived yet")
        })
    }
}

/// The whole story for one family: the entry pins the old endpoint, list shows it DNATed,
/// filters that match nothing delete nothing, the right filter deletes it and the next datagram
/// reaches the new endpoint.
fn pinned_flow_is_released(plan: &Plan) {
    let lab = Lab::build();
    let eps = Endpoints::bind(&lab, plan);
    let client = udp(&lab.client, SocketAddr::new(plan.client, CLIENT_PORT));
    let ct = Conntrack::open(&lab.server).expect("open ctnetlink in S");

    assert_eq!(eps.send(&client, plan, "1"), "A");
    let entries = ct.list(Some(plan.family)).expect("list");
    let ours: Vec<_> = entries.iter().filter(|e| e.orig.dst == plan.vip).collect();
    assert_eq!(ours.len(), 1, "one entry for the flow: {entries:#?}");
    let e = ours[0];
    assert_eq!(e.family, plan.family);
    assert_eq!(
        (e.orig.src, e.orig.src_port, e.orig.dst_port, e.orig.protocol),
        (plan.client, Some(CLIENT_PORT), Some(SERVICE_PORT), Protocol::UDP)
    );
    assert_eq!(
        (e.reply.src, e.reply.src_port, e.reply.dst, e.reply.dst_port),
        (plan.a, Some(ENDPOINT_PORT), plan.client, Some(CLIENT_PORT))
    );
    assert!(e.status.dst_nat() && e.status.contains(Status::CONFIRMED), "{e}");
    assert!(!e.status.seen_reply(), "A never answered: {e}");
    assert!(
        e.id.is_some() && e.timeout.is_some_and(|t| t <= Duration::from_secs(180)),
        "{e}"
    );
    assert_eq!(e.mark, 0);
    // The other family's listing does not hold it; a listing of both does.
    let other = match plan.family {
        IpFamily::V4 => IpFamily::V6,
        IpFamily::V6 => IpFamily::V4,
    };
    assert!(ct.list(Some(other)).unwrap().iter().all(|x| x.orig.dst != plan.vip));
    assert!(ct.list(None).unwrap().iter().any(|x| x.id == e.id && x.orig == e.orig));

    // The bug: the rule now says B, the datagrams still go to A.
    lab.point_service_at(plan, plan.b);
    assert_eq!(eps.send(&client, plan, "2"), "A", "the entry pins the flow to A");

    // Filters that match nothing delete nothing.
    let nothing = [
        Filter::new().protocol(Protocol::UDP).reply_src(plan.unused),
        Filter::new().protocol(Protocol::TCP).orig_dst(plan.vip),
        Filter::new()
            .protocol(Protocol::UDP)
            .orig_dst(plan.vip)
            .orig_port_dst(SERVICE_PORT + 1),
        Filter::new().reply_src(plan.a).reply_port_src(ENDPOINT_PORT + 1),
        Filter::new().orig_dst(V4.vip).reply_src(V6.a), // families disagree
    ];
    for f in &nothing {
        assert_eq!(ct.delete(f).expect("delete"), 0, "{f:?}");
    }
    assert_eq!(eps.send(&client, plan, "3"), "A", "still pinned");

    // conntrack -D -p udp --orig-dst VIP --reply-src A
    let gone = ct.list(Some(plan.family)).unwrap();
    let filter = Filter::new()
        .protocol(Protocol::UDP)
        .orig_dst(plan.vip)
        .reply_src(plan.a);
    assert!(ct.delete(&filter).expect("delete") >= 1);
    assert!(ct.list(Some(plan.family)).unwrap().iter().all(|x| !filter.matches(x)));
    // Deleting entries that are gone already is no error and counts nothing.
    let stale: Vec<_> = gone.into_iter().filter(|x| filter.matches(x)).collect();
    assert_eq!(ct.delete_entries(&stale).expect("delete gone entries"), 0);

    assert_eq!(eps.send(&client, plan, "4"), "B", "a new entry, made by the new rule");
    let now = ct.list(Some(plan.family)).unwrap();
    let e = now.iter().find(|x| x.orig.dst == plan.vip).expect("the new entry");
    assert_eq!((e.reply.src, e.orig.src_port), (plan.b, Some(CLIENT_PORT)));
}

#[test]
fn udp_entry_pins_the_old_endpoint_until_deleted_v4() {
    pinned_flow_is_released(&V4);
}

#[test]
fn udp_entry_pins_the_old_endpoint_until_deleted_v6() {
    pinned_flow_is_released(&V6);
}

/// A namespace where nothing uses conntrack lists nothing; deleting everything deletes nothing.
#[test]
fn an_unused_table_is_empty() {
    let ns = NetNsGuard::create(&unique("cte")).expect("netns");
    let ct = Conntrack::open(&ns).expect("open");
    assert_eq!(ct.list(None).expect("list"), []);
    assert_eq!(ct.delete(&Filter::new()).expect("delete"), 0);
    assert_eq!(ct.delete_entries(&[]).expect("delete none"), 0);
}

/// More entries than one dump datagram and one delete `sendmsg` hold: 1200 flows from as many
/// client ports (41000 on), all listed, all deleted by one filter, and those of another service left.
#[test]
fn many_entries_are_listed_and_deleted() {
    const FLOWS: usize = 1200;
    let lab = Lab::build();
    let _eps = Endpoints::bind(&lab, &V4);
    let ct = Conntrack::open(&lab.server).expect("open");
    // One other flow, to the server's own address (no DNAT): it must survive.
    let bystander = udp(&lab.client, SocketAddr::new(V4.client, CLIENT_PORT));
    let _sink = udp(&lab.server, SocketAddr::new(V4.server, 9));
    bystander.send_to(b"x", SocketAddr::new(V4.server, 9)).unwrap();
    // One socket at a time (a process may not hold 1200 descriptors), each its own port.
    for port in 0..FLOWS as u16 {
        let s = udp(&lab.client, SocketAddr::new(V4.client, 41000 + port));
        s.send_to(b"m", SocketAddr::new(V4.vip, SERVICE_PORT)).expect("send");
    }
    let count = |ct: &Conntrack| {
        let all = ct.list(Some(IpFamily::V4)).expect("list");
        let dnat = all
            .iter()
            .filter(|e| e.orig.dst == V4.vip && e.status.dst_nat())
            .count();
        let other = all.iter().filter(|e| e.orig.dst == V4.server).count();
        (dnat, other)
    };
    wait_for(DEADLINE, "an entry per flow", || match count(&ct) {
        (FLOWS, 1) => Ok(()),
        seen => Err(seen),
    });
    let filter = Filter::new()
        .protocol(Protocol::UDP)
        .orig_dst(V4.vip)
        .orig_port_dst(SERVICE_PORT);
    assert_eq!(ct.delete(&filter).expect("delete"), FLOWS);
    assert_eq!(count(&ct), (0, 1), "the bystander's entry is left");
}
