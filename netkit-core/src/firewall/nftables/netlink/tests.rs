//! Encoding checks, and tests against the real kernel: each kernel test makes
//! its own namespace (deleted on drop, also on panic), sets up tables and sets
//! with `nft -f -` inside it, and never touches the host's ruleset.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::*;
use crate::netlink::wire::{attrs, Attr, NLMSG_HDRLEN};
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
    assert_eq!(
        Data::new().inet_proto(17).inet_proto(6).to_bytes(),
        [17, 0, 0, 0, 6, 0, 0, 0]
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
fn ip_addr_fields() {
    let a: IpAddr = "10.1.2.3".parse().unwrap();
    assert_eq!(Data::new().ip_addr(a).to_bytes(), [10, 1, 2, 3]);
    let a: IpAddr = "fd00::1".parse().unwrap();
    assert_eq!(Data::new().ip_addr(a).to_bytes().len(), 16);
}

#[test]
fn element_display_reads_like_nft() {
    let e = Element::new(Data::new().inet_proto(6).inet_service(8080))
        .value(Data::new().ipv4_addr(Ipv4Addr::new(10, 88, 0, 2)).inet_service(80))
        .comment("web");
    assert_eq!(e.to_string(), "tcp . 8080 comment \"web\" : 10.88.0.2 . 80");
    let r = Element::range(
        Data::new().ifname("br0").unwrap().ipv4_addr(Ipv4Addr::new(10, 0, 0, 0)),
        Data::new()
            .ifname("br0")
            .unwrap()
            .ipv4_addr(Ipv4Addr::new(10, 0, 0, 255)),
    );
    assert_eq!(r.to_string(), "\"br0\" . 10.0.0.0-\"br0\" . 10.0.0.255");
}

/// Walk attributes: (type without flags, nested flag, payload).
fn attrs_of(b: &[u8]) -> Vec<(u16, bool, &[u8])> {
    attrs(b).map(|Attr { ty, nested, value }| (ty, nested, value)).collect()
}

#[test]
fn batch_layout_matches_nfnetlink() {
    let mut batch = Batch::new();
    batch.create(
        "t",
        "pm",
        [Element::new(Data::new().inet_proto(6))
            .value(Data::new().inet_service(80))
            .comment("hi")],
    );
    let plan = encode_batch(&batch.ops, None, NFT_MSG_DESTROYSETELEM, 100);
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
    let top = attrs_of(&m[20..len]);
    assert_eq!(top[0], (NFTA_SET_ELEM_LIST_TABLE, false, &b"t\0"[..]));
    assert_eq!(top[1], (NFTA_SET_ELEM_LIST_SET, false, &b"pm\0"[..]));
    assert_eq!((top[2].0, top[2].1), (NFTA_SET_ELEM_LIST_ELEMENTS, true));
    let list = attrs_of(top[2].2);
    assert_eq!((list.len(), list[0].0, list[0].1), (1, NFTA_LIST_ELEM, true));
    let elem = attrs_of(list[0].2);
    assert_eq!((elem[0].0, elem[0].1), (NFTA_SET_ELEM_KEY, true));
    assert_eq!(attrs_of(elem[0].2), [(NFTA_DATA_VALUE, false, &[6u8][..])]);
    assert_eq!((elem[1].0, elem[1].1), (NFTA_SET_ELEM_DATA, true));
    assert_eq!(attrs_of(elem[1].2), [(NFTA_DATA_VALUE, false, &[0u8, 80][..])]);
    assert_eq!(elem[2], (NFTA_SET_ELEM_USERDATA, false, &[0u8, 3, b'h', b'i', 0][..]));
    // BATCH_END.
    let e = &m[len..];
    assert_eq!(e.len(), 20);
    assert_eq!(u16::from_ne_bytes([e[4], e[5]]), 0x11);
    // A delete carries the key only.
    let mut del = Batch::new();
    del.destroy("t", "pm", batch.ops[0].elements.clone());
    let plan = encode_batch(&del.ops, None, NFT_MSG_DESTROYSETELEM, 1);
    let m = &plan.buf[20..];
    assert_eq!(u16::from_ne_bytes([m[4], m[5]]), (10 << 8) | NFT_MSG_DESTROYSETELEM);
    let top = attrs_of(&m[20..u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize]);
    let elem = attrs_of(attrs_of(top[2].2)[0].2);
    assert_eq!(elem.len(), 1);
    assert_eq!(elem[0].0, NFTA_SET_ELEM_KEY);
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
    batch.add("t", "pm4", elements);
    let plan = encode_batch(&batch.ops, None, NFT_MSG_DESTROYSETELEM, 1);
    assert!(plan.msgs.len() > 1, "{} messages", plan.msgs.len());
    let total: usize = plan.msgs.iter().map(|m| m.elems.len()).sum();
    assert_eq!(total, 5000);
    for m in &plan.msgs {
        assert!((m.elements_at.1 - m.elements_at.0) as usize <= NLA_MAX_LEN);
    }
    // A legacy destroy sends one element per message.
    let mut batch = Batch::new();
    let keys = (0..3).map(|i| Element::new(Data::new().inet_service(i)));
    batch.destroy("t", "s", keys);
    let plan = encode_batch(&batch.ops, Some(&[(0, 1)]), NFT_MSG_DESTROYSETELEM, 1);
    assert_eq!(plan.msgs.len(), 2);
    assert!(plan.msgs.iter().all(|m| m.ty == NFT_MSG_DELSETELEM && m.legacy_destroy));
    assert_eq!(plan.msgs[1].elems[0].index, 2);
}

#[test]
fn empty_operations_send_nothing() {
    let mut batch = Batch::new();
    batch.destroy("t", "s", []);
    assert!(batch.is_empty());
    assert!(encode_batch(&batch.ops, None, NFT_MSG_DESTROYSETELEM, 1)
        .msgs
        .is_empty());
}

#[test]
fn table_comments_are_read_from_userdata() {
    // nfgenmsg, then NFTA_TABLE_NAME and NFTA_TABLE_USERDATA holding two udata TLVs.
    let mut b = wire::Builder::new();
    b.nfgenmsg(NFPROTO_INET, 0);
    b.attr_str(NFTA_TABLE_NAME, "t");
    b.attr_with(NFTA_TABLE_USERDATA, |out| {
        out.extend_from_slice(&[7, 2, 0xaa, 0xbb]);
        out.extend_from_slice(&[NFTNL_UDATA_TABLE_COMMENT, 4, b'h', b'i', b'!', 0]);
    });
    let payload = b.into_bytes();
    assert_eq!(table_userdata_comment(&payload).as_deref(), Some("hi!"));
    // No userdata, and udata lengths past the end: no comment, no panic.
    assert_eq!(table_userdata_comment(&payload[..12]), None);
    for end in 0..payload.len() {
        let _ = table_userdata_comment(&payload[..end]);
    }
    let mut b = wire::Builder::new();
    b.nfgenmsg(NFPROTO_INET, 0);
    b.attr_with(NFTA_TABLE_USERDATA, |out| {
        out.extend_from_slice(&[NFTNL_UDATA_TABLE_COMMENT, 200, b'x'])
    });
    assert_eq!(table_userdata_comment(b.as_bytes()), None);
}

#[test]
fn short_error_messages_are_errors_without_errno() {
    let mut b = wire::Builder::new();
    let m = b.begin(wire::NLMSG_ERROR, 0, 1);
    b.finish(m);
    let buf = b.into_bytes();
    let msg = wire::messages(&buf).next().unwrap();
    assert_eq!(msg.payload.len(), NLMSG_HDRLEN - NLMSG_HDRLEN);
    let (e, off) = error_of(&msg).unwrap();
    assert_eq!((e.errno, off), (None, None));
}

#[test]
fn invalid_input_is_refused_before_sending() {
    let t = TestNs::new("inval", "");
    let sock = &t.sock;
    let mut batch = Batch::new();
    batch.add(
        "t",
        "s",
        [Element::new(Data::new().inet_proto(6)).comment("x".repeat(300))],
    );
    assert!(matches!(sock.send(&batch), Err(NftError::Invalid(_))));
    let mut batch = Batch::new();
    batch.add("", "s", [Element::new(Data::new().inet_proto(6))]);
    assert!(matches!(sock.send(&batch), Err(NftError::Invalid(_))));
    let mut batch = Batch::new();
    batch.add("t", "s", [Element::new(Data::new())]);
    assert!(matches!(sock.send(&batch), Err(NftError::Invalid(_))));
    let mut batch = Batch::new();
    let v6 = "fd00::1".parse().unwrap();
    let huge = (0..5).fold(Data::new(), |d, _| d.ipv6_addr(v6));
    batch.add("t", "s", [Element::new(huge)]);
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
    set s { type ifname . ipv4_addr; flags interval; }
    set s2 { type ipv4_addr . ipv4_addr; flags interval; }
    set ports { type inet_service; }
    set protos { type inet_proto; }
    chain pre {
        type nat hook prerouting priority dstnat;
        ip daddr 10.0.0.1 dnat ip to meta l4proto . th dport map @pm4
        ip6 daddr fd00::1 dnat ip6 to meta l4proto . th dport map @pm6
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
            "t",
            "pm4",
            [
                Element::new(key(6, 8080)).value(v4([10, 88, 0, 2], 80)).comment("web"),
                Element::new(key(17, 53)).value(v4([10, 88, 0, 3], 5353)),
            ],
        )
        .add(
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
    other.add("t", "pm4", [Element::new(key(6, 8080)).value(v4([10, 88, 0, 9], 80))]);
    let err = t.sock.send(&other).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
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
        .add("t", "pm6", [Element::new(key(6, 443)).value(v6("fd00::5", 443))])
        .create(
            "t",
            "pm4",
            [
                Element::new(key(6, 9090)).value(v4([10, 88, 0, 4], 90)),
                Element::new(key(6, 8080)).value(v4([10, 88, 0, 5], 80)),
                Element::new(key(6, 9191)).value(v4([10, 88, 0, 6], 91)),
            ],
        );
    let err = t.sock.send(&batch).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
    match &err {
        NftError::Element(e) => {
            assert_eq!((e.op, e.table.as_str(), e.set.as_str()), (OpKind::Create, "t", "pm4"));
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
    ok.create("t", "pm4", [Element::new(key(6, 9090)).value(v4([10, 88, 0, 4], 90))]);
    t.sock.send(&ok).unwrap();
    assert_eq!(t.elements("map", "pm4").len(), 2);
}

#[test]
fn concatenated_interval_sets_use_key_end() {
    let t = TestNs::new("pipapo", SETUP);
    let br = |a: [u8; 4]| Data::new().ifname("br0").unwrap().ipv4_addr(a.into());
    let pair = |a: [u8; 4], b: [u8; 4]| Data::new().ipv4_addr(a.into()).ipv4_addr(b.into());
    let mut batch = Batch::new();
    batch
        .add(
            "t",
            "s",
            [Element::range(br([10, 88, 0, 0]), br([10, 88, 255, 255])).comment("pods")],
        )
        .add(
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
    overlap.create("t", "s", [Element::range(br([10, 88, 1, 0]), br([10, 88, 1, 255]))]);
    assert!(t.sock.send(&overlap).is_err());
    // Destroy takes the same start and end.
    let mut del = Batch::new();
    del.destroy("t", "s", [Element::range(br([10, 88, 0, 0]), br([10, 88, 255, 255]))]);
    t.sock.send(&del).unwrap();
    assert!(t.elements("set", "s").is_empty());
}

#[test]
fn single_field_sets_take_unpadded_keys() {
    let t = TestNs::new("single", SETUP);
    let mut batch = Batch::new();
    batch
        .add("t", "ports", [Element::new(Data::new().inet_service(8080))])
        .add("t", "protos", [Element::new(Data::new().inet_proto(17))]);
    t.sock.send(&batch).unwrap();
    assert_eq!(t.elements("set", "ports"), ["8080"]);
    assert_eq!(t.elements("set", "protos"), ["udp"]);
    // A key of the wrong size is refused and the element named.
    let mut bad = Batch::new();
    bad.add("t", "pm4", [Element::new(Data::new().inet_service(80))]);
    let err = t.sock.send(&bad).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EINVAL), "{err}");
    assert!(err.to_string().contains("{ 80 }"), "{err}");
}

fn destroy_ignores_missing(t: &TestNs) {
    t.nft("add element inet t pm4 '{ tcp . 8080 : 10.88.0.2 . 80, tcp . 8081 : 10.88.0.2 . 81 }'");
    t.nft("add element inet t ports '{ 1, 2 }'");
    let mut batch = Batch::new();
    batch
        .destroy(
            "t",
            "pm4",
            [
                Element::new(key(6, 8080)),
                Element::new(key(6, 9999)),
                Element::new(key(17, 8080)),
            ],
        )
        .destroy(
            "t",
            "ports",
            [
                Element::new(Data::new().inet_service(3)),
                Element::new(Data::new().inet_service(2)),
            ],
        )
        .add("t", "ports", [Element::new(Data::new().inet_service(4))]);
    t.sock.send(&batch).unwrap();
    assert_eq!(t.elements("map", "pm4"), ["tcp . 8081 : 10.88.0.2 . 81"]);
    assert_eq!(t.elements("set", "ports"), ["1", "4"]);
    // Destroy of nothing but missing elements.
    let mut none = Batch::new();
    none.destroy("t", "pm4", [Element::new(key(6, 1))]);
    t.sock.send(&none).unwrap();

    // Destroy in a set that does not exist is an error (and rolls back).
    let mut missing_set = Batch::new();
    missing_set
        .destroy("t", "pm4", [Element::new(key(6, 8081))])
        .destroy("t", "nope", [Element::new(key(6, 1))]);
    let err = t.sock.send(&missing_set).unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
    assert!(
        matches!(&err, NftError::Element(e) if e.set == "nope" && e.element.is_none()),
        "{err:?}"
    );
    assert_eq!(t.elements("map", "pm4").len(), 1);
}

#[test]
fn destroy_ignores_missing_elements() {
    let t = TestNs::new("destroy", SETUP);
    destroy_ignores_missing(&t);
    assert_eq!(t.sock.destroy.load(Ordering::Relaxed), DESTROY_SUPPORTED);
}

#[test]
fn legacy_destroy_fallback_behaves_the_same() {
    let t = TestNs::new("legacy", SETUP);
    t.sock.destroy.store(DESTROY_LEGACY, Ordering::Relaxed);
    destroy_ignores_missing(&t);
    assert_eq!(t.sock.destroy.load(Ordering::Relaxed), DESTROY_LEGACY);
}

#[test]
fn old_kernels_without_destroy_are_detected() {
    let mut t = TestNs::new("olddestroy", SETUP);
    // A message type no kernel knows gets the answer a kernel before 6.3
    // gives NFT_MSG_DESTROYSETELEM: EINVAL, not pinned on any attribute.
    t.sock.destroy_msg = 0xff;
    destroy_ignores_missing(&t);
    assert_eq!(t.sock.destroy.load(Ordering::Relaxed), DESTROY_LEGACY);
}

#[test]
fn table_comment_tells_missing_from_uncommented() {
    let t = TestNs::new("table", SETUP);
    assert!(t.sock.table_comment("t").unwrap().is_some());
    assert!(t.sock.table_comment("nope").unwrap().is_none());
    // Only the inet family is asked about.
    t.nft("add table ip other");
    assert!(t.sock.table_comment("other").unwrap().is_none());
    t.nft("add table inet commented '{ comment \"hello\"; }'");
    assert_eq!(t.sock.table_comment("commented").unwrap(), Some(Some("hello".into())));
    assert_eq!(t.sock.table_comment("t").unwrap(), Some(None));
    assert_eq!(t.sock.table_comment("nope").unwrap(), None);
    // Missing tables in element operations.
    let mut batch = Batch::new();
    batch.add("nope", "pm4", [Element::new(key(6, 1)).value(v4([1, 1, 1, 1], 1))]);
    let err = t.sock.send(&batch).unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
    assert!(err.to_string().contains(t.name()), "{err}");
    // The kernel pins it on the table's name; a missing set is no missing table.
    assert_eq!(err.table_missing(), Some(true), "{err:?}");
    assert!(
        matches!(&err, NftError::Element(e) if e.pinned == Pinned::Table),
        "{err:?}"
    );
    let mut batch = Batch::new();
    batch.destroy("t", "nope", [Element::new(key(6, 1))]);
    let err = t.sock.send(&batch).unwrap_err();
    assert_eq!(err.table_missing(), None, "{err:?}");
    assert!(
        matches!(&err, NftError::Element(e) if e.pinned == Pinned::Set),
        "{err:?}"
    );
    // EEXIST on an element is pinned on the element.
    t.nft("add element inet t ports '{ 7 }'");
    let mut batch = Batch::new();
    batch.create("t", "ports", [Element::new(Data::new().inet_service(7))]);
    let err = t.sock.send(&batch).unwrap_err();
    assert!(
        matches!(&err, NftError::Element(e) if e.pinned == Pinned::Element),
        "{err:?}"
    );
    // A socket in another namespace does not see this table.
    let other = TestNs::new("table2", "");
    assert!(other.sock.table_comment("t").unwrap().is_none());
}

#[test]
fn elements_are_typed_as_the_rules_using_them_expect() {
    let t = TestNs::new("get", SETUP);
    let mut batch = Batch::new();
    batch.add(
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
    batch.add("t", "pm4", elements.clone());
    t.sock.send(&batch).unwrap();
    assert_eq!(t.elements("map", "pm4").len(), 10_000);
    let mut batch = Batch::new();
    batch.destroy("t", "pm4", elements);
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
                    b.create("t", "pm4", [Element::new(key(6, port)).value(v4([10, 0, 0, 1], port))]);
                    sock.send(&b).unwrap();
                    // A failing call in between must not confuse the others.
                    assert_eq!(sock.send(&b).unwrap_err().errno(), Some(libc::EEXIST));
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
            a.add("t", "pm4", [e.clone()]);
            let mut d = Batch::new();
            d.destroy("t", "pm4", [e]);
            let start = Instant::now();
            t.sock.send(&a).unwrap();
            add += start.elapsed();
            let start = Instant::now();
            t.sock.send(&d).unwrap();
            destroy += start.elapsed();
        }
        let start = Instant::now();
        assert!(t.sock.table_comment("t").unwrap().is_some());
        let exists = start.elapsed();
        let start = Instant::now();
        t.nft("add element inet t pm4 '{ tcp . 1 : 10.88.0.2 . 80 }'");
        let cli = start.elapsed();
        println!(
            "{present:>6} elements present: add {:?}/op, destroy {:?}/op, table_comment {exists:?}; \
             `ip netns exec … nft add element` {cli:?}",
            add / rounds,
            destroy / rounds
        );
    }
}
