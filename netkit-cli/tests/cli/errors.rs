//! Exit codes (1: the operation failed, 2: bad usage) and one-line error messages that name
//! the object, the namespace and the kernel's answer.

use netkit_test_support::HostNs;

use crate::common::{fails, ip_json, ok, run, NsName};

#[test]
fn failed_operations_exit_1_with_one_line() {
    let host = HostNs::new("err1");
    let ns = host.name();
    ok(&["-n", ns, "link", "add", "e0", "type", "veth", "peer", "name", "e1"]);
    // Exists: the kernel's answer, the link and the namespace on one line.
    let e = fails(&["-n", ns, "link", "add", "e0", "type", "bridge"], 1);
    assert!(e.contains("\"e0\"") && e.contains(ns) && e.contains("EEXIST"), "{e}");
    // No such device.
    let e = fails(&["-n", ns, "link", "set", "nosuch0", "up"], 1);
    assert!(e.contains("nosuch0") && e.contains(ns), "{e}");
    let e = fails(&["-n", ns, "link", "show", "nosuch0"], 1);
    assert!(e.contains("nosuch0") && e.contains(ns), "{e}");
    // A master that does not exist.
    let e = fails(&["-n", ns, "link", "set", "e0", "master", "nobr0"], 1);
    assert!(e.contains("nobr0"), "{e}");
    // A namespace that does not exist.
    let missing = NsName::new("errns");
    let e = fails(&["-n", &missing.0, "link", "show"], 1);
    assert!(e.contains(&missing.0), "{e}");
    // Nothing changed in the test's namespace.
    assert_eq!(ip_json(ns, &["link", "show"]).unwrap().as_array().unwrap().len(), 3);
}

#[test]
fn bad_usage_exits_2() {
    let host = HostNs::new("err2");
    let ns = host.name();
    // Our own word parser: one line naming the command and the word.
    for (args, want) in [
        (
            &["link", "add", "x0", "type", "wormhole"][..],
            "unknown type \"wormhole\"",
        ),
        (&["link", "add", "x0"][..], "missing \"type KIND\""),
        (&["link", "set", "x0", "sideways"][..], "unexpected \"sideways\""),
        (&["link", "set", "x0", "mtu", "big"][..], "\"mtu\" wants a number"),
        (
            &["addr", "add", "10.0.0.1/33", "dev", "lo"][..],
            "unexpected \"10.0.0.1/33\"",
        ),
        (&["addr", "add", "10.0.0.1/24"][..], "missing \"dev NAME\""),
        (
            &["route", "add", "default", "via", "x"][..],
            "\"via\" wants a gateway address",
        ),
        (&["route", "get"][..], "missing the ADDRESS"),
    ] {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        let e = fails(&all, 2);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // clap's own errors: exit 2 too.
    for args in [
        &[][..],
        &["lnik", "show"][..],
        &["link", "frobnicate"][..],
        &["netns", "exec", "x"][..],
        &["-4", "-6", "route", "show"][..],
        &["--force", "link", "show"][..],
    ] {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.is_empty());
    }
    // Nothing was created by any of them.
    assert_eq!(ip_json(ns, &["link", "show"]).unwrap().as_array().unwrap().len(), 1);
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    for (shell, marker) in [
        ("bash", "_netkit()"),
        ("zsh", "#compdef netkit"),
        ("fish", "complete -c netkit"),
    ] {
        let script = crate::common::ok(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        // Every object is completed, topo's verbs too.
        for word in ["netns", "link", "addr", "route", "topo", "apply", "destroy"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let man = crate::common::ok(&["man"]);
    assert!(man.contains(".TH netkit 1"), "{man}");
    assert!(man.contains("topo"), "the man page lists the topo command");
    let r = crate::common::run(&["completions", "tcsh"]);
    assert_eq!(r.code, 2, "an unknown shell is bad usage");
}
