//! `netkit netns add|list|del|exec`.

use crate::common::{fails, ok, ok_json, run, NsName};

#[test]
fn add_list_del() {
    let ns = NsName::new("nsadd");
    ok(&["netns", "add", &ns.0]);
    assert!(std::path::Path::new("/run/netns").join(&ns.0).exists());
    // iproute2 sees it, and can use it.
    let ip = netkit_test_support::ip(&["netns", "list"]);
    assert!(
        ip.lines().any(|l| l.split_whitespace().next() == Some(ns.0.as_str())),
        "{ip}"
    );
    netkit_test_support::ip(&["-n", &ns.0, "link", "show", "lo"]);

    assert!(ok(&["netns", "list"]).lines().any(|l| l == ns.0));
    let listed = ok_json(&["netns", "list"]);
    assert!(
        listed.as_array().unwrap().iter().any(|n| n["name"] == ns.0.as_str()),
        "{listed}"
    );

    // A second add of the same name fails, naming it.
    let e = fails(&["netns", "add", &ns.0], 1);
    assert!(e.contains(&ns.0) && e.contains("exists"), "{e}");

    ok(&["netns", "del", &ns.0]);
    assert!(!std::path::Path::new("/run/netns").join(&ns.0).exists());
    assert!(!ok(&["netns", "list"]).lines().any(|l| l == ns.0));

    // Deleting it again succeeds with a note, which -q leaves out.
    let again = run(&["netns", "del", &ns.0]);
    assert_eq!(again.code, 0);
    assert!(again.stderr.contains("nothing to delete"), "{}", again.stderr);
    let quiet = run(&["-q", "netns", "del", &ns.0]);
    assert_eq!((quiet.code, quiet.stderr.as_str()), (0, ""));
}

#[test]
fn exec_runs_inside_and_passes_the_exit_code_on() {
    let host = netkit_test_support::HostNs::new("nsexec");
    ok(&["-n", host.name(), "link", "add", "dummyish", "type", "bridge"]);
    // The program sees the namespace's links, not ours.
    let out = ok(&["netns", "exec", host.name(), "--", "ip", "-o", "link", "show"]);
    assert!(out.contains("dummyish"), "{out}");
    assert_eq!(out.lines().count(), 2, "lo and the bridge only: {out}");
    // Without `--` too.
    assert!(ok(&["netns", "exec", host.name(), "ip", "-br", "link"]).contains("dummyish"));
    // Its exit code is ours; it printed nothing of netkit's.
    let r = run(&["netns", "exec", host.name(), "sh", "-c", "exit 3"]);
    assert_eq!((r.code, r.stderr.as_str()), (3, ""));
    // A program that cannot start, or a namespace that does not exist: exit 1, one line.
    let e = fails(&["netns", "exec", host.name(), "/nonexistent/prog"], 1);
    assert!(e.contains("/nonexistent/prog") && e.contains(host.name()), "{e}");
    let missing = NsName::new("nsgone");
    let e = fails(&["netns", "exec", &missing.0, "true"], 1);
    assert!(e.contains(&missing.0), "{e}");
}
