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

#[test]
fn identify_names_the_namespace_of_a_process() {
    let host = netkit_test_support::HostNs::new("nsid");
    // NetNs::command enters the namespace before exec: once spawned, sleep is in it.
    let sleeper = netkit_test_support::KillOnDrop::new(host.command("sleep").arg("60").spawn().unwrap());
    let pid = sleeper.id().to_string();
    assert_eq!(ok(&["netns", "identify", &pid]), format!("{}\n", host.name()));
    assert_eq!(ok_json(&["netns", "identify", &pid]), serde_json::json!([host.name()]));
    // iproute2 agrees.
    let ip = netkit_test_support::ip(&["netns", "identify", &pid]);
    assert_eq!(ip.trim(), host.name());

    // A process in no namespace of this test's (the test itself): not this one's name.
    let ours = ok(&["netns", "identify", &std::process::id().to_string()]);
    assert!(!ours.lines().any(|l| l == host.name()), "{ours}");
    // A process in a namespace that has no name (left when its name was deleted): nothing.
    let unnamed = netkit_test_support::HostNs::new("nsid2");
    let orphan = netkit_test_support::KillOnDrop::new(unnamed.command("sleep").arg("60").spawn().unwrap());
    let orphan_pid = orphan.id().to_string();
    assert_eq!(ok(&["netns", "identify", &orphan_pid]), format!("{}\n", unnamed.name()));
    ok(&["netns", "del", unnamed.name()]);
    assert_eq!(ok(&["netns", "identify", &orphan_pid]), "");
    assert_eq!(ok_json(&["netns", "identify", &orphan_pid]), serde_json::json!([]));

    // No such process: exit 1, naming it; not a number: bad usage.
    let e = fails(&["netns", "identify", "2147483647"], 1);
    assert!(e.contains("2147483647"), "{e}");
    assert_eq!(run(&["netns", "identify", "me"]).code, 2);
    drop((sleeper, orphan));
}
