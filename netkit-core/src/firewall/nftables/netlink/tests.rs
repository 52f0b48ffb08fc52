//! Encoding checks, and tests against the real kernel: each kernel test makes
//! its own namespace (deleted on drop, also on panic), sets up tables and sets
//! with `nft -f -` inside it, and never touches the host's ruleset.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::netns::NetNsGuard;

// ---------------------------------------------------------------- encoding

#[test]
fn concatenated_fields_are_padded_to_four_bytes() {
    let key = Data::new().inet_proto(6).inet_service(8080);
    assert_eq!(key.to_bytes(), [6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
    assert_eq!(key.to_string(), "tcp . 8080");
    let v = Data::new().ipv4_addr(Ipv4Addr::new(10, 88, 0, 2)).inet_service(80);
    assert_eq!(v.to_bytes(), [10, 88, 0, 2, 0, 80, 0, 0]);
    let v6 = Data::new().ipv6_addr("fd00::1".parse().unwrap()).inet_service(80);
    assert_eq!(v6.to_bytes().len(), 20);
    assert_eq!(&v6.to_bytes()[16..], [0, 80, 0, 0]);
}

#[test]
fn single_fields_keep_their_natural_size() {
    assert_eq!(Data::new().inet_service(8080).to_bytes(), [0x1f, 0x90]);
    assert_eq!(Data::new().inet_proto(17).to_bytes(), [17]);
    assert_eq!(Data::new().mark(0x10).to_bytes(), 0x10u32.to_ne_bytes());
    assert_eq!(Data::new().raw(&[1, 2, 3]).to_bytes(), [1, 2, 3]);
    assert_eq!(
        Data::new().raw(&[1, 2, 3]).inet_proto(6).to_bytes(),
        [1, 2, 3, 0, 6, 0, 0, 0]
    );
}

#[test]
fn ifname_is_nul_padded_and_checked() {
    let key = Data::new()
        .ifname("br0")
        .unwrap()
        .ipv4_addr(Ipv4Addr::new(10, 88, 0, 0));
    let b = key.to_bytes();
    assert_eq!(b.len(), 20);
    assert_eq!(&b[..4], b"br0\0");
    assert!(b[4..16].iter().all(|x| *x == 0));
    assert_eq!(&b[16..], [10, 88, 0, 0]);
    assert_eq!(key.to_string(), "\"br0\" . 10.88.0.0");
    assert!(Data::new().ifname("").is_err());
    assert!(Data::new().ifname("0123456789abcdef").is_err());
    assert!(Data::new().ifname("0123456789abcde").is_ok());
    assert!(Data::new().ifname("a\0b").is_err());
}

#[test]
fn families_and_ip_addr_fields() {
    let all = [
        (Family::Inet, 1, "inet"),
        (Family::Ip, 2, "ip"),
        (Family::Arp, 3, "arp"),
        (Family::Netdev, 5, "netdev"),
        (Family::Bridge, 7, "bridge"),
        (Family::Ip6, 10, "ip6"),
    ];
    for (f, n, s) in all {
        assert_eq!((f.nfproto(), f.to_string().as_str()), (n, s));
    }
    let a: IpAddr = "10.1.2.3".parse().unwrap();
    assert_eq!(Data::new().ip_addr(a).to_bytes(), [10, 1, 2, 3]);
    let a: IpAddr = "fd00::1".parse().unwrap();
    assert_eq!(Data::new().ip_addr(a).to_bytes().len(), 16);
}

#[test]
fn element_flags_are_sent_big_endian() {
    let mut batch = Batch::new();
    batch.add(
        Family::Ip,
        "t",
        "s",
        [Element::new(Data::new().inet_service(1)).flags(1)],
    );
    let plan = encode_batch(batch.ops(), None, NFT_MSG_DESTROYSETELEM, 1);
    let m = &plan.buf[20..];
    let top = attrs(&m[20..]);
    let elem = attrs(attrs(top[2].2)[0].2);
    assert_eq!(elem[1], (NFTA_SET_ELEM_FLAGS, false, &[0u8, 0, 0, 1][..]));
}

#[test]
fn element_display_reads_like_nft() {
    let e = Element::new(Data::new().inet_proto(6).inet_service(8080))
        .value(Data::new().ipv4_addr(Ipv4Addr::new(10, 88, 0, 2)).inet_service(80))
        .comment("web");
    assert_eq!(e.to_string(), "tcp . 8080 comment \"web\" : 10.88.0.2 . 80");
    let v = Element::new(Data::new().inet_proto(17)).verdict(Verdict::Goto("c".into()));
    assert_eq!(v.to_string(), "udp : goto c");
}

/// Walk attributes: (type without flags, nested flag, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, bool, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]);
        out.push((ty & NLA_TYPE_MASK, ty & NLA_F_NESTED != 0, &b[4..len]));
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    out
}

#[test]
fn batch_layout_matches_nfnetlink() {
    let mut batch = Batch::new();
    batch.create(
        Family::Inet,
        "t",
        "vm",
        [Element::new(Data::new().inet_proto(6))
            .verdict(Verdict::Goto("c".into()))
            .comment("hi")],
    );
    let plan = encode_batch(batch.ops(), None, NFT_MSG_DESTROYSETELEM, 100);
    assert_eq!((plan.begin_seq, plan.end_seq), (100, 102));
    let b = &plan.buf;
    // BATCH_BEGIN: type 0x10, res_id NFNL_SUBSYS_NFTABLES in network order.
    assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 20);
    assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 0x10);
    assert_eq!(&b[16..20], [0, 0, 0, 10]);
    // The element message.
    let m = &b[20..];
    let len = u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize;
    assert_eq!(u16::from_ne_bytes([m[4], m[5]]), (10 << 8) | 12);
    let flags = u16::from_ne_bytes([m[6], m[7]]);
    assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 101);
    assert_eq!(&m[16..20], [1, 0, 0, 0]); // NFPROTO_INET, version 0, res_id 0
    let top = attrs(&m[20..len]);
    assert_eq!(top[0], (NFTA_SET_ELEM_LIST_TABLE, false, &b"t\0"[..]));
    assert_eq!(top[1], (NFTA_SET_ELEM_LIST_SET, false, &b"vm\0"[..]));
    assert_eq!((top[2].0, top[2].1), (NFTA_SET_ELEM_LIST_ELEMENTS, true));
    let list = attrs(top[2].2);
    assert_eq!((list.len(), list[0].0, list[0].1), (1, NFTA_LIST_ELEM, true));
    let elem = attrs(list[0].2);
    assert_eq!((elem[0].0, elem[0].1), (NFTA_SET_ELEM_KEY, true));
    assert_eq!(attrs(elem[0].2), [(NFTA_DATA_VALUE, false, &[6u8][..])]);
    assert_eq!((elem[1].0, elem[1].1), (NFTA_SET_ELEM_DATA, true));
    let verdict = attrs(elem[1].2);
    assert_eq!((verdict[0].0, verdict[0].1), (NFTA_DATA_VERDICT, true));
    assert_eq!(
        attrs(verdict[0].2),
        [
            (NFTA_VERDICT_CODE, false, &(-4i32).to_be_bytes()[..]),
            (NFTA_VERDICT_CHAIN, false, &b"c\0"[..])
        ]
    );
    assert_eq!(elem[2], (NFTA_SET_ELEM_USERDATA, false, &[0u8, 3, b'h', b'i', 0][..]));
    // BATCH_END.
    let e = &m[len..];
    assert_eq!(e.len(), 20);
    assert_eq!(u16::from_ne_bytes([e[4], e[5]]), 0x11);
}

#[test]
fn big_operations_are_split_below_the_attribute_limit() {
    let elements: Vec<_> = (0..5000u32)
        .map(|i| {
            Element::new(Data::new().inet_proto(6).inet_service(i as u16))
                .value(Data::new().ipv4_addr(Ipv4Addr::from(i)).inet_service(80))
                .comment(format!("container {i}"))
        })
        .collect();
    let mut batch = Batch::new();
    batch.add(Family::Inet, "t", "pm4", elements);
    let plan = encode_batch(batch.ops(), None, NFT_MSG_DESTROYSETELEM, 1);
    assert!(plan.msgs.len() > 1, "{} messages", plan.msgs.len());
    let total: usize = plan.msgs.iter().map(|m| m.elems.len()).sum();
    assert_eq!(total, 5000);
    for m in &plan.msgs {
        assert!((m.elements_at.1 - m.elements_at.0) as usize <= NLA_MAX_LEN);
    }
    // A legacy destroy sends one element per message.
    let mut batch = Batch::new();
    let keys = (0..3).map(|i| Element::new(Data::new().inet_service(i)));
    batch.destroy(Family::Inet, "t", "s", keys);
    let plan = encode_batch(batch.ops(), Some(&[(0, 1)]), NFT_MSG_DESTROYSETELEM, 1);
    assert_eq!(plan.msgs.len(), 2);
    assert!(plan.msgs.iter().all(|m| m.ty == NFT_MSG_DELSETELEM && m.legacy_destroy));
    assert_eq!(plan.msgs[1].elems[0].index, 2);
}

#[test]
fn empty_operations_send_nothing() {
    let mut batch = Batch::new();
    batch.destroy(Family::Inet, "t", "s", []);
    assert!(batch.is_empty());
    assert!(encode_batch(batch.ops(), None, NFT_MSG_DESTROYSETELEM, 1)
        .msgs
        .is_empty());
}

#[test]
fn errors_are_parsed_with_text_and_offset() {
    let mut payload = (-libc::EEXIST).to_ne_bytes().to_vec();
    payload.extend_from_slice(&[0; 16]); // capped echo of the request header
    let text = b"boom\0";
    payload.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
    payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
    payload.extend_from_slice(text);
    payload.extend_from_slice(&[0; 3]);
    payload.extend_from_slice(&8u16.to_ne_bytes());
    payload.extend_from_slice(&NLMSGERR_ATTR_OFFS.to_ne_bytes());
    payload.extend_from_slice(&44u32.to_ne_bytes());
    let m = Msg {
        ty: NLMSG_ERROR,
        flags: NLM_F_CAPPED | NLM_F_ACK_TLVS,
        seq: 1,
        payload: &payload,
    };
    let (err, off) = parse_error(&m);
    let err = err.unwrap();
    assert_eq!(err.errno, Some(libc::EEXIST));
    assert_eq!(err.message.as_deref(), Some("boom"));
    assert_eq!(off, Some(44));
    // Garbage never panics.
    for len in 0..64 {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
        let _ = parse_error(&Msg {
            ty: NLMSG_ERROR,
            flags: NLM_F_ACK_TLVS,
            seq: 0,
            payload: &junk,
        });
    }
}

#[test]
fn invalid_input_is_refused_before_sending() {
    let t = TestNs::new("inval", "");
    let sock = &t.sock;
    let mut batch = Batch::new();
    batch.add(
        Family::Inet,
        "t",
        "s",
        [Element::new(Data::new().inet_proto(6)).comment("x".repeat(300))],
    );
    assert!(matches!(sock.send(&batch), Err(NftError::Invalid(_))));
    let mut batch = Batch::new();
    batch.add(Family::Inet, "", "s", [Element::new(Data::new().inet_proto(6))]);
    assert!(matches!(sock.send(&batch), Err(NftError::Invalid(_))));
    let mut batch = Batch::new();
    batch.add(Family::Inet, "t", "s", [Element::new(Data::new())]);
    assert!(matches!(sock.send(&batch), Err(NftError::Invalid(_))));
    let mut batch = Batch::new();
    let huge = Data::new().raw(&[0; 65]);
    batch.add(Family::Inet, "t", "s", [Element::new(huge)]);
    assert!(matches!(sock.send(&batch), Err(NftError::Invalid(_))));
}

// ---------------------------------------------------------------- kernel

/// A namespace for one test, deleted on drop (also on panic).
struct TestNs {
    guard: NetNsGuard,
    sock: NftSocket,
}

impl TestNs {
    /// A fresh namespace with `setup` (nft syntax) loaded and a socket in it.
    fn new(tag: &str, setup: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("nknft{}x{}{tag}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let guard = NetNsGuard::create(&name).expect("create test netns");
        let t = Self {
            sock: NftSocket::open(&guard).expect("nf_tables socket in test netns"),
            guard,
        };
        t.nft_stdin(setup);
        t
    }

    fn name(&self) -> &str {
        self.guard.name().unwrap()
    }

    /// Run `nft -f -` with `script` inside the namespace; panics on failure.
    fn nft_stdin(&self, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.name(), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nft");
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -f failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Run `nft ARGS` inside the namespace: (success, stdout, stderr).
    fn try_nft(&self, args: &str) -> (bool, String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", self.name(), "sh", "-c", &format!("nft {args}")])
            .output()
            .expect("run nft");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn nft(&self, args: &str) -> String {
        let (ok, out, err) = self.try_nft(args);
        assert!(ok, "nft {args} failed: {err}");
        out
    }

    /// The elements `nft list KIND inet t NAME` shows, whitespace normalized, sorted.
    fn elements(&self, kind: &str, name: &str) -> Vec<String> {
        let text = self.nft(&format!("list {kind} inet t {name}"));
        let Some(start) = text.find("elements = {") else {
            return Vec::new();
        };
        let body = &text[start + "elements = {".len()..];
        let body = &body[..body.find('}').expect("closing brace")];
        let mut out: Vec<String> = body
            .split(',')
            .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|e| !e.is_empty())
            .collect();
        out.sort();
        out
    }
}

const SETUP: &str = r#"
table inet t {
    chain c1 { }
    chain c2 { }
    map pm4 { type inet_proto . inet_service : ipv4_addr . inet_service; }
    map pm6 { type inet_proto . inet_service : ipv6_addr . inet_service; }
    map vm { type ipv4_addr . inet_proto . inet_service : verdict; }
    set s { type ifname . ipv4_addr; flags interval; }
    set s2 { type ipv4_addr . ipv4_addr; flags interval; }
    set ports { type inet_service; }
    set marks { type mark; }
    set protos { type inet_proto; }
    chain pre {
        type nat hook prerouting priority dstnat;
        ip daddr 10.0.0.1 dnat ip to meta l4proto . th dport map @pm4
        ip6 daddr fd00::1 dnat ip6 to meta l4proto . th dport map @pm6
        ip daddr . meta l4proto . th dport vmap @vm
    }
}
"#;

fn key(proto: u8, port: u16) -> Data {
    Data::new().inet_proto(proto).inet_service(port)
}

fn v4(a: [u8; 4], port: u16) -> Data {
    Data::new().ipv4_addr(a.into()).inet_service(port)
}

fn v6(a: &str, port: u16) -> Data {
    Data::new().ipv6_addr(a.parse().unwrap()).inet_service(port)
}

#[test]
fn maps_hold_exactly_the_added_elements_with_comments() {
    let t = TestNs::new("add", SETUP);
    let mut batch = Batch::new();
    batch
        .add(
            Family::Inet,
            "t",
            "pm4",
            [
                Element::new(key(6, 8080)).value(v4([10, 88, 0, 2], 80)).comment("web"),
                Element::new(key(17, 53)).value(v4([10, 88, 0, 3], 5353)),
            ],
        )
        .add(
            Family::Inet,
            "t",
            "pm6",
            [Element::new(key(6, 8080)).value(v6("fd00:88::2", 80)).comment("web v6")],
        );
    t.sock.send(&batch).unwrap();
    assert_eq!(
        t.elements("map", "pm4"),
        [
            "tcp . 8080 comment \"web\" : 10.88.0.2 . 80",
            "udp . 53 : 10.88.0.3 . 5353"
        ]
    );
    assert_eq!(
        t.elements("map", "pm6"),
        ["tcp . 8080 comment \"web v6\" : fd00:88::2 . 80"]
    );

    // Add is idempotent for the same key and value…
    t.sock.send(&batch).unwrap();
    assert_eq!(t.elements("map", "pm4").len(), 2);
    // The comment is not part of the comparison: the old one stays.
    let mut recomment = Batch::new();
    recomment.add(
        Family::Inet,
        "t",
        "pm4",
        [Element::new(key(6, 8080))
            .value(v4([10, 88, 0, 2], 80))
            .comment("other")],
    );
    t.sock.send(&recomment).unwrap();
    assert_eq!(
        t.elements("map", "pm4")[0],
        "tcp . 8080 comment \"web\" : 10.88.0.2 . 80"
    );
    // …but not for another value (the kernel calls it a clash: EEXIST).
    let mut other = Batch::new();
    other.add(
        Family::Inet,
        "t",
        "pm4",
        [Element::new(key(6, 8080)).value(v4([10, 88, 0, 9], 80))],
    );
    let err = t.sock.send(&other).unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert_eq!(
        t.elements("map", "pm4")[0],
        "tcp . 8080 comment \"web\" : 10.88.0.2 . 80"
    );
}

#[test]
fn create_of_an_existing_key_fails_and_rolls_back_the_batch() {
    let t = TestNs::new("excl", SETUP);
    t.nft("add element inet t pm4 '{ tcp . 8080 : 10.88.0.2 . 80 }'");
    let mut batch = Batch::new();
    batch
        .add(
            Family::Inet,
            "t",
            "pm6",
            [Element::new(key(6, 443)).value(v6("fd00::5", 443))],
        )
        .create(
            Family::Inet,
            "t",
            "pm4",
            [
                Element::new(key(6, 9090)).value(v4([10, 88, 0, 4], 90)),
                Element::new(key(6, 8080)).value(v4([10, 88, 0, 5], 80)),
                Element::new(key(6, 9191)).value(v4([10, 88, 0, 6], 91)),
            ],
        );
    let err = t.sock.send(&batch).unwrap_err();
    assert!(err.is_exists(), "{err}");
    match &err {
        NftError::Element(e) => {
            assert_eq!(
                (e.op, e.family, e.table.as_str(), e.set.as_str()),
                (OpKind::Create, Family::Inet, "t", "pm4")
            );
            assert_eq!(e.element.as_deref(), Some("tcp . 8080 : 10.88.0.5 . 80"));
            assert!(e.netns.contains(t.name()), "{}", e.netns);
        }
        e => panic!("unexpected {e:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("create element inet t pm4 { tcp . 8080"), "{text}");
    // Nothing of the batch took effect.
    assert_eq!(t.elements("map", "pm4"), ["tcp . 8080 : 10.88.0.2 . 80"]);
    assert!(t.elements("map", "pm6").is_empty());

    // The socket is fine afterwards (no stale ack is taken for the next one).
    let mut ok = Batch::new();
    ok.create(
        Family::Inet,
        "t",
        "pm4",
        [Element::new(key(6, 9090)).value(v4([10, 88, 0, 4], 90))],
    );
    t.sock.send(&ok).unwrap();
    assert_eq!(t.elements("map", "pm4").len(), 2);
}

#[test]
fn verdict_map_takes_goto_jump_accept_drop() {
    let t = TestNs::new("vmap", SETUP);
    let k = |last: u8, port| {
        Data::new()
            .ipv4_addr(Ipv4Addr::new(10, 0, 0, last))
            .inet_proto(6)
            .inet_service(port)
    };
    let mut batch = Batch::new();
    batch.add(
        Family::Inet,
        "t",
        "vm",
        [
            Element::new(k(1, 80)).verdict(Verdict::Goto("c1".into())),
            Element::new(k(2, 80)).verdict(Verdict::Jump("c2".into())),
            Element::new(k(3, 80)).verdict(Verdict::Accept),
            Element::new(k(4, 80)).verdict(Verdict::Drop),
            Element::new(k(5, 80)).verdict(Verdict::Return),
        ],
    );
    t.sock.send(&batch).unwrap();
    assert_eq!(
        t.elements("map", "vm"),
        [
            "10.0.0.1 . tcp . 80 : goto c1",
            "10.0.0.2 . tcp . 80 : jump c2",
            "10.0.0.3 . tcp . 80 : accept",
            "10.0.0.4 . tcp . 80 : drop",
            "10.0.0.5 . tcp . 80 : return",
        ]
    );
    // A chain that does not exist.
    let mut bad = Batch::new();
    bad.add(
        Family::Inet,
        "t",
        "vm",
        [Element::new(k(9, 80)).verdict(Verdict::Goto("nope".into()))],
    );
    let err = t.sock.send(&bad).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("goto nope"), "{err}");
}

#[test]
fn concatenated_interval_sets_use_key_end() {
    let t = TestNs::new("pipapo", SETUP);
    let br = |a: [u8; 4]| Data::new().ifname("br0").unwrap().ipv4_addr(a.into());
    let pair = |a: [u8; 4], b: [u8; 4]| Data::new().ipv4_addr(a.into()).ipv4_addr(b.into());
    let mut batch = Batch::new();
    batch
        .add(
            Family::Inet,
            "t",
            "s",
            [Element::range(br([10, 88, 0, 0]), br([10, 88, 255, 255])).comment("pods")],
        )
        .add(
            Family::Inet,
            "t",
            "s2",
            [
                Element::range(
                    pair([10, 0, 0, 0], [192, 168, 0, 1]),
                    pair([10, 255, 255, 255], [192, 168, 0, 9]),
                ),
                Element::new(pair([172, 16, 0, 1], [172, 16, 0, 2])),
            ],
        );
    t.sock.send(&batch).unwrap();
    assert_eq!(t.elements("set", "s"), ["\"br0\" . 10.88.0.0/16 comment \"pods\""]);
    assert_eq!(
        t.elements("set", "s2"),
        ["10.0.0.0/8 . 192.168.0.1-192.168.0.9", "172.16.0.1 . 172.16.0.2"]
    );
    // nft finds the element by a key inside the range.
    let got = t.nft("get element inet t s '{ \"br0\" . 10.88.7.7 }'");
    assert!(got.contains("10.88.0.0/16"), "{got}");
    // An overlapping range is refused.
    let mut overlap = Batch::new();
    overlap.create(
        Family::Inet,
        "t",
        "s",
        [Element::range(br([10, 88, 1, 0]), br([10, 88, 1, 255]))],
    );
    assert!(t.sock.send(&overlap).is_err());
    // Delete needs the same start and end.
    let mut del = Batch::new();
    del.delete(
        Family::Inet,
        "t",
        "s",
        [Element::range(br([10, 88, 0, 0]), br([10, 88, 255, 255]))],
    );
    t.sock.send(&del).unwrap();
    assert!(t.elements("set", "s").is_empty());
}

#[test]
fn single_field_sets_take_unpadded_keys() {
    let t = TestNs::new("single", SETUP);
    let mut batch = Batch::new();
    batch
        .add(
            Family::Inet,
            "t",
            "ports",
            [Element::new(Data::new().inet_service(8080))],
        )
        .add(Family::Inet, "t", "marks", [Element::new(Data::new().mark(0x10))])
        .add(Family::Inet, "t", "protos", [Element::new(Data::new().inet_proto(17))]);
    t.sock.send(&batch).unwrap();
    assert_eq!(t.elements("set", "ports"), ["8080"]);
    assert_eq!(t.elements("set", "marks"), ["0x00000010"]);
    assert_eq!(t.elements("set", "protos"), ["udp"]);
    // A key of the wrong size is refused and the element named.
    let mut bad = Batch::new();
    bad.add(Family::Inet, "t", "pm4", [Element::new(Data::new().inet_service(80))]);
    let err = t.sock.send(&bad).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EINVAL), "{err}");
    assert!(err.to_string().contains("{ 80 }"), "{err}");
}

fn destroy_and_delete(t: &TestNs) {
    t.nft("add element inet t pm4 '{ tcp . 8080 : 10.88.0.2 . 80, tcp . 8081 : 10.88.0.2 . 81 }'");
    t.nft("add element inet t ports '{ 1, 2 }'");
    let mut batch = Batch::new();
    batch
        .destroy(
            Family::Inet,
            "t",
            "pm4",
            [
                Element::new(key(6, 8080)),
                Element::new(key(6, 9999)),
                Element::new(key(17, 8080)),
            ],
        )
        .destroy(
            Family::Inet,
            "t",
            "ports",
            [
                Element::new(Data::new().inet_service(3)),
                Element::new(Data::new().inet_service(2)),
            ],
        )
        .add(Family::Inet, "t", "ports", [Element::new(Data::new().inet_service(4))]);
    t.sock.send(&batch).unwrap();
    assert_eq!(t.elements("map", "pm4"), ["tcp . 8081 : 10.88.0.2 . 81"]);
    assert_eq!(t.elements("set", "ports"), ["1", "4"]);
    // Destroy of nothing but missing elements.
    let mut none = Batch::new();
    none.destroy(Family::Inet, "t", "pm4", [Element::new(key(6, 1))]);
    t.sock.send(&none).unwrap();

    // Delete (not destroy) of a missing element: ENOENT, naming it, and
    // the present one in the same operation stays.
    let mut del = Batch::new();
    del.delete(
        Family::Inet,
        "t",
        "pm4",
        [Element::new(key(6, 8081)), Element::new(key(6, 9999))],
    );
    let err = t.sock.send(&del).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        matches!(&err, NftError::Element(e) if e.op == OpKind::Delete && e.element.as_deref() == Some("tcp . 9999")),
        "{err:?}"
    );
    assert_eq!(t.elements("map", "pm4").len(), 1);

    // Destroy in a set that does not exist is an error (and rolls back).
    let mut missing_set = Batch::new();
    missing_set
        .destroy(Family::Inet, "t", "pm4", [Element::new(key(6, 8081))])
        .destroy(Family::Inet, "t", "nope", [Element::new(key(6, 1))]);
    let err = t.sock.send(&missing_set).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        matches!(&err, NftError::Element(e) if e.set == "nope" && e.element.is_none()),
        "{err:?}"
    );
    assert_eq!(t.elements("map", "pm4").len(), 1);
}

#[test]
fn destroy_ignores_missing_elements_and_delete_does_not() {
    let t = TestNs::new("destroy", SETUP);
    destroy_and_delete(&t);
    assert_eq!(t.sock.destroy.load(Ordering::Relaxed), DESTROY_SUPPORTED);
}

#[test]
fn legacy_destroy_fallback_behaves_the_same() {
    let t = TestNs::new("legacy", SETUP);
    t.sock.set_legacy_destroy(true);
    destroy_and_delete(&t);
    assert_eq!(t.sock.destroy.load(Ordering::Relaxed), DESTROY_LEGACY);
}

#[test]
fn old_kernels_without_destroy_are_detected() {
    let mut t = TestNs::new("olddestroy", SETUP);
    // A message type no kernel knows gets the answer a kernel before 6.3
    // gives NFT_MSG_DESTROYSETELEM: EINVAL, not pinned on any attribute.
    t.sock.destroy_msg = 0xff;
    destroy_and_delete(&t);
    assert_eq!(t.sock.destroy.load(Ordering::Relaxed), DESTROY_LEGACY);
}

#[test]
fn table_exists_answers_true_and_false() {
    let t = TestNs::new("table", SETUP);
    assert!(t.sock.table_exists(Family::Inet, "t").unwrap());
    assert!(!t.sock.table_exists(Family::Ip, "t").unwrap());
    assert!(!t.sock.table_exists(Family::Inet, "nope").unwrap());
    t.nft("add table ip6 other");
    assert!(t.sock.table_exists(Family::Ip6, "other").unwrap());
    // Missing tables in element operations.
    let mut batch = Batch::new();
    batch.add(
        Family::Ip,
        "t",
        "pm4",
        [Element::new(key(6, 1)).value(v4([1, 1, 1, 1], 1))],
    );
    let err = t.sock.send(&batch).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // open_current opens in the calling thread's namespace.
    let ns: &NetNs = &t.guard;
    let here = crate::netns::worker::run_blocking(crate::netns::worker::Place::In(ns.clone()), NftSocket::open_current)
        .unwrap()
        .unwrap();
    assert_eq!(here.netns(), "(current)");
    assert!(here.table_exists(Family::Inet, "t").unwrap());
    assert!(t.sock.netns().contains(t.name()));
    // A socket in another namespace does not see this table.
    let other = TestNs::new("table2", "");
    assert!(!other.sock.table_exists(Family::Inet, "t").unwrap());
}

#[test]
fn elements_are_typed_as_the_rules_using_them_expect() {
    let t = TestNs::new("get", SETUP);
    let mut batch = Batch::new();
    batch.add(
        Family::Inet,
        "t",
        "pm4",
        [Element::new(key(6, 8080)).value(v4([10, 88, 0, 2], 80)).comment("web")],
    );
    t.sock.send(&batch).unwrap();
    let got = t.nft("get element inet t pm4 '{ tcp . 8080 }'");
    assert!(got.contains("tcp . 8080 comment \"web\" : 10.88.0.2 . 80"), "{got}");
    let (found, _, _) = t.try_nft("get element inet t pm4 '{ tcp . 8081 }'");
    assert!(!found);
    // nft reads the whole ruleset, the rules that use the map included.
    let all = t.nft("list ruleset");
    assert!(all.contains("dnat ip to meta l4proto . th dport map @pm4"), "{all}");
}

#[test]
fn ten_thousand_elements_in_one_batch() {
    let t = TestNs::new("bulk", SETUP);
    let elements: Vec<_> = (0..10_000u32)
        .map(|i| {
            Element::new(key(6, 10_000 + i as u16))
                .value(v4([10, 88, (i >> 8) as u8, i as u8], 80))
                .comment(format!("c{i}"))
        })
        .collect();
    let mut batch = Batch::new();
    batch.add(Family::Inet, "t", "pm4", elements.clone());
    t.sock.send(&batch).unwrap();
    assert_eq!(t.elements("map", "pm4").len(), 10_000);
    let mut batch = Batch::new();
    batch.destroy(Family::Inet, "t", "pm4", elements);
    t.sock.send(&batch).unwrap();
    assert!(t.elements("map", "pm4").is_empty());
}

#[test]
fn one_socket_serves_many_threads() {
    let TestNs { guard, sock } = TestNs::new("threads", SETUP);
    let sock = std::sync::Arc::new(sock);
    let threads: Vec<_> = (0..4u16)
        .map(|n| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                for i in 0..50u16 {
                    let port = n * 1000 + i;
                    let mut b = Batch::new();
                    b.create(
                        Family::Inet,
                        "t",
                        "pm4",
                        [Element::new(key(6, port)).value(v4([10, 0, 0, 1], port))],
                    );
                    sock.send(&b).unwrap();
                    // A failing call in between must not confuse the others.
                    assert!(sock.send(&b).unwrap_err().is_exists());
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let t = TestNs {
        guard,
        sock: std::sync::Arc::into_inner(sock).unwrap(),
    };
    assert_eq!(t.elements("map", "pm4").len(), 200);
}

/// Ad-hoc timings: `cargo test -p netkit-core --lib nft_timings -- --ignored --nocapture`.
#[test]
#[ignore]
fn nft_timings() {
    use std::time::Instant;
    for present in [10u32, 10_000] {
        let t = TestNs::new("bench", SETUP);
        let mut batch = Batch::new();
        batch.add(
            Family::Inet,
            "t",
            "pm4",
            (0..present).map(|i| Element::new(key(17, i as u16)).value(v4([10, 88, 0, 2], 80))),
        );
        t.sock.send(&batch).unwrap();
        let rounds = 2000u32;
        let (mut add, mut destroy) = (Duration::ZERO, Duration::ZERO);
        for i in 0..rounds {
            let e = Element::new(key(6, i as u16))
                .value(v4([10, 88, 0, 2], 80))
                .comment("x");
            let mut a = Batch::new();
            a.add(Family::Inet, "t", "pm4", [e.clone()]);
            let mut d = Batch::new();
            d.destroy(Family::Inet, "t", "pm4", [e]);
            let start = Instant::now();
            t.sock.send(&a).unwrap();
            add += start.elapsed();
            let start = Instant::now();
            t.sock.send(&d).unwrap();
            destroy += start.elapsed();
        }
        let start = Instant::now();
        assert!(t.sock.table_exists(Family::Inet, "t").unwrap());
        let exists = start.elapsed();
        let start = Instant::now();
        t.nft("add element inet t pm4 '{ tcp . 1 : 10.88.0.2 . 80 }'");
        let cli = start.elapsed();
        println!(
            "{present:>6} elements present: add {:?}/op, destroy {:?}/op, table_exists {exists:?}; \
             `ip netns exec … nft add element` {cli:?}",
            add / rounds,
            destroy / rounds
        );
    }
}
