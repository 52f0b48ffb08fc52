//! `netkit sysctl get|set`, read back inside the namespace with `sysctl -n` and /proc.

use netkit_test_support::{run_in, sh, HostNs};

use crate::common::{fails, fails_n, ok_json_n, ok_n, NsName};

/// The value `sysctl -n KEY` reads inside namespace `ns`.
fn sysctl_n(ns: &str, key: &str) -> String {
    run_in(ns, "sysctl", ["-n", key]).trim().to_string()
}

#[test]
fn set_then_read_back_a_global_and_an_interface_key() {
    let host = HostNs::new("sysset");
    let ns = host.name();
    ok_n(ns, "link add v0 type veth peer name v1");
    // A fresh namespace does not forward, and v0 filters nothing: what the test changes.
    assert_eq!(sysctl_n(ns, "net.ipv4.ip_forward"), "0");
    assert_eq!(sysctl_n(ns, "net.ipv4.conf.v0.rp_filter"), "0");
    let ours = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter").unwrap();

    ok_n(ns, "sysctl set net.ipv4.ip_forward=1 net.ipv4.conf.v0.rp_filter=2");
    assert_eq!(sysctl_n(ns, "net.ipv4.ip_forward"), "1");
    assert_eq!(sysctl_n(ns, "net.ipv4.conf.v0.rp_filter"), "2");
    assert_eq!(sh(&host, "cat /proc/sys/net/ipv4/conf/v0/rp_filter").trim(), "2");

    // netkit reads what it wrote: text as sysctl prints it, in the order asked, dotted keys.
    let text = ok_n(ns, "sysctl get net.ipv4.conf.v0.rp_filter net/ipv4/ip_forward");
    assert_eq!(text, "net.ipv4.conf.v0.rp_filter = 2\nnet.ipv4.ip_forward = 1\n");
    let json = ok_json_n(ns, "sysctl get net.ipv4.ip_forward net/ipv4/conf/v0/rp_filter");
    assert_eq!(
        json,
        serde_json::json!({"net.ipv4.ip_forward": "1", "net.ipv4.conf.v0.rp_filter": "2"})
    );

    // `set KEY VALUE` (a negative value is a value), and the slash form.
    ok_n(ns, "sysctl set net.ipv4.conf.v0.rp_filter 1");
    assert_eq!(sysctl_n(ns, "net.ipv4.conf.v0.rp_filter"), "1");
    ok_n(ns, "sysctl set net/ipv6/conf/v0/accept_dad -1");
    assert_eq!(sysctl_n(ns, "net.ipv6.conf.v0.accept_dad"), "-1");

    // The namespace the tests run in is not the one that changed.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter").unwrap(),
        ours
    );
}

#[test]
fn keys_with_dots_in_a_device_name() {
    let host = HostNs::new("sysdot");
    let ns = host.name();
    ok_n(ns, "link add v0.5 type bridge");
    ok_n(ns, "sysctl set net/ipv4/conf/v0.5/forwarding=1");
    assert_eq!(sh(&host, "cat /proc/sys/net/ipv4/conf/v0.5/forwarding").trim(), "1");
    let text = ok_n(ns, "sysctl get net.ipv4.conf.v0/5.forwarding");
    assert_eq!(text, "net.ipv4.conf.v0/5.forwarding = 1\n");
}

#[test]
fn sysctl_errors() {
    let host = HostNs::new("syserr");
    let ns = host.name();
    // Invalid keys are bad usage, refused before anything is read or written.
    for key in ["kernel.hostname", "net.ipv4", "net..ipv4.ip_forward", "vm/swappiness"] {
        let e = fails(&["-n", ns, "sysctl", "get", key], 2);
        assert!(e.contains("invalid sysctl key"), "{key}: {e}");
    }
    let e = fails_n(ns, "sysctl set net.ipv4.ip_forward=1 kernel.hostname=x", 2);
    assert!(e.contains("kernel.hostname") && e.contains("net."), "{e}");
    assert_eq!(
        sysctl_n(ns, "net.ipv4.ip_forward"),
        "0",
        "nothing written before the check"
    );
    for args in [
        &["set", "net.ipv4.ip_forward"][..],
        &["set", "a", "b", "c"],
        &["get"],
        &["set"],
    ] {
        let mut all = vec!["-n", ns, "sysctl"];
        all.extend_from_slice(args);
        let r = crate::common::run(&all);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }

    // A key the kernel does not have: exit 1, naming the key and the namespace.
    let e = fails_n(ns, "sysctl get net.ipv4.conf.nosuchdev.forwarding", 1);
    assert!(
        e.contains("net.ipv4.conf.nosuchdev.forwarding") && e.contains(ns),
        "{e}"
    );
    assert!(e.contains("No such file"), "{e}");
    let e = fails_n(ns, "sysctl set net.ipv4.nosuchkey=1", 1);
    assert!(e.contains("net.ipv4.nosuchkey") && e.contains(ns), "{e}");
    // A value the kernel refuses: its message.
    let e = fails_n(ns, "sysctl set net.ipv4.ip_forward=yes", 1);
    assert!(e.contains("Invalid argument") && e.contains(ns), "{e}");
    // A namespace that does not exist.
    let gone = NsName::new("sysgone");
    let e = fails(&["-n", &gone.0, "sysctl", "get", "net.ipv4.ip_forward"], 1);
    assert!(e.contains(&gone.0), "{e}");
}
