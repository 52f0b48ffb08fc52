//! `netkit -b FILE`: one command per line, `#` comments, the failing line's number in the
//! error, stop at the first failure unless `--force`.

use netkit_test_support::HostNs;

use crate::common::{ip_json, ok, run, run_with_input};

fn has_link(ns: &str, name: &str) -> bool {
    ip_json(ns, &["link", "show", name]).is_some()
}

#[test]
fn batch_stops_at_the_failing_line() {
    let host = HostNs::new("batch");
    let ns = host.name();
    let file = host.dir().join("cmds");
    std::fs::write(
        &file,
        "# a bridge, twice\n\
         link add bb0 type bridge\n\
         \n\
         link add bb0 type bridge   # exists: fails\n\
         link add bb1 type bridge\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let r = run(&["-n", ns, "-b", path]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with(&format!("netkit: {path}:4: ")), "{}", r.stderr);
    assert!(r.stderr.contains("bb0") && r.stderr.contains(ns), "{}", r.stderr);
    assert!(has_link(ns, "bb0"));
    assert!(!has_link(ns, "bb1"), "the batch went on after line 4");

    // --force: the error is reported, the rest runs, the exit code is still 1.
    let r = run(&["-n", ns, "-b", path, "--force"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{path}:2: ")) && r.stderr.contains(&format!("{path}:4: ")),
        "{}",
        r.stderr
    );
    assert!(has_link(ns, "bb1"));
}

#[test]
fn batch_from_stdin_with_json_and_usage_errors() {
    let host = HostNs::new("batchin");
    let ns = host.name();
    // Every line runs in -n NS; the namespace's socket is shared by the lines.
    let r = run_with_input(
        &["-n", ns, "-b", "-"],
        "link add s0 type veth peer name s1\n\
         link set s0 up\n\
         -j link show s0\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let shown: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(shown[0]["ifname"], "s0");
    assert!(shown[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"));

    // A line that does not parse: exit 2, with its number; lines after it do not run.
    let r = run_with_input(
        &["-n", ns, "-b", "-"],
        "link set s1 up\n\
         link add s2 type wormhole\n\
         link del s0\n",
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.starts_with("netkit: -:2: "), "{}", r.stderr);
    assert!(r.stderr.contains("wormhole"), "{}", r.stderr);
    assert!(has_link(ns, "s0"));
    // clap's errors are one line too.
    let r = run_with_input(&["-n", ns, "-b", "-"], "lnik show\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("netkit: -:1: "), "{}", r.stderr);

    // A batch file that cannot be read: exit 1.
    let r = run(&["-n", ns, "-b", "/nonexistent/batch"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("/nonexistent/batch"), "{}", r.stderr);
    // A command and a batch at once: usage.
    let r = run(&["-n", ns, "-b", "-", "link", "show"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    ok(&["-n", ns, "link", "del", "s0"]);
}
