//! What `netkit` prints for help and for errors, checked against files in
//! `netkit-cli/tests/snapshots/` (golden files: [`netkit_test_support::golden`]).
//!
//! - `help/<path>.txt`: the long help (`--help`) of every command of clap's tree, one file per
//!   command (`netkit.txt`, `netkit-link.txt`, `netkit-link-add.txt`; clap's own `help`
//!   subcommands are not commands of netkit and have none). A file for a command that no longer
//!   exists fails as stale: the folder is exactly the tree. The binary is checked to print the
//!   same text for every command.
//! - `errors.txt`: command lines that fail, run through the binary in a namespace the test makes,
//!   each as `$ netkit ARGS`, then `< LINE` for each line given on stdin (batches), `exit N`, the
//!   stderr lines and a blank line. Names that differ from run to run are placeholders, in the
//!   command lines as in the messages: `<NS>` the test's namespace, `<MISSING>` a namespace that
//!   does not exist, `<DIR>` the test's temp dir.
//!
//! After a deliberate change of a help or error text (or a new verb), rewrite the files with
//! [`UPDATE`] and review the diff.

use std::path::PathBuf;

use clap::CommandFactory;
use netkit_cli::cli::Cli;
use netkit_test_support::golden::Golden;
use netkit_test_support::HostNs;

use crate::common::{ok, run, run_with_input, NsName};

/// The command that rewrites the snapshot files.
const UPDATE: &str = "NETKIT_UPDATE_SNAPSHOTS=1 cargo test -p netkit-cli --test cli snapshots";

/// The folder `tests/snapshots/<sub>` of netkit-cli.
fn snapshots(sub: &str) -> Golden {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(sub);
    Golden::new(dir, UPDATE)
}

/// Every command of `netkit`, depth first: its words (`["netkit", "link", "add"]`) and its help
/// as `--help` prints it (clap's long help where a command has long texts), without colours.
fn help_pages() -> Vec<(Vec<String>, String)> {
    fn paths(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            paths(sub, p, out);
        }
    }
    let mut tree = Cli::command();
    tree.build();
    let mut all = Vec::new();
    paths(&tree, vec![tree.get_name().to_string()], &mut all);
    all.into_iter()
        .map(|path| {
            // As the binary does: parse `PATH --help`; clap answers with the help as an "error".
            let args = path.iter().map(String::as_str).chain(["--help"]);
            let e = Cli::command()
                .try_get_matches_from(args)
                .expect_err("--help stops the parse");
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{path:?}: {e}");
            let help = e.render().to_string();
            (path, help)
        })
        .collect()
}

#[test]
fn help_pages_match_their_snapshots() {
    let golden = snapshots("help");
    let pages = help_pages();
    assert!(pages.len() > 20, "the tree has every object and verb: {}", pages.len());
    let mut names = Vec::new();
    let mut failures = Vec::new();
    for (path, help) in &pages {
        let name = format!("{}.txt", path.join("-"));
        if let Err(e) = golden.check(&name, help) {
            failures.push(e);
        }
        names.push(name);
    }
    for must in [
        "netkit.txt",
        "netkit-link.txt",
        "netkit-link-add.txt",
        "netkit-topo-apply.txt",
    ] {
        assert!(names.iter().any(|n| n == must), "no help page {must}: {names:?}");
    }
    if let Err(e) = golden.check_no_others(&names, ".txt") {
        failures.push(e);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The help is laid out for 100 columns whatever the terminal (`term_width = 100` in the
/// definitions; clap's "wrap_help" feature, which would wrap text to the terminal, is off): the
/// binary prints the snapshot's text also when the environment names another width.
#[test]
fn help_does_not_depend_on_the_terminal() {
    let pages = help_pages();
    let (_, want) = pages
        .iter()
        .find(|(p, _)| p.join(" ") == "netkit link add")
        .expect("link add");
    for columns in ["40", "300"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_netkit"))
            .args(["link", "add", "--help"])
            .env("COLUMNS", columns)
            .output()
            .expect("run netkit");
        assert_eq!(&String::from_utf8_lossy(&out.stdout), want, "COLUMNS={columns}");
    }
}

/// What users see: `netkit … --help` prints the page the snapshot holds, for every command.
#[test]
fn the_binary_prints_the_same_help() {
    for (path, help) in help_pages() {
        let mut args: Vec<&str> = path[1..].iter().map(String::as_str).collect();
        args.push("--help");
        assert_eq!(ok(&args), help, "netkit {}", args.join(" "));
    }
}

/// The command lines of `errors.txt`: the words (placeholders included) and the lines given on
/// stdin.
const FAILING: &[(&str, &[&str])] = &[
    // Usage (exit 2): clap's errors.
    ("", &[]),
    ("-n <NS>", &[]),
    ("lnik show", &[]),
    ("-n <NS> link frobnicate", &[]),
    ("-n <NS> link", &[]),
    ("-n <NS> link add", &[]),
    ("-n", &[]),
    ("-n <NS> netns exec <NS>", &[]),
    ("-4 -6 route show", &[]),
    ("--force link show", &[]),
    ("-b - link show", &[]),
    ("completions tcsh", &[]),
    ("topo apply", &[]),
    // Usage (exit 2): iproute2's words.
    ("-n <NS> link add x0", &[]),
    ("-n <NS> link add x0 type wormhole", &[]),
    ("-n <NS> link add x0 type veth bogus", &[]),
    ("-n <NS> link add x0 type bridge mtu", &[]),
    ("-n <NS> link set e0 sideways", &[]),
    ("-n <NS> link set e0 mtu", &[]),
    ("-n <NS> link set e0 mtu big", &[]),
    ("-n <NS> link set e0 address zz:zz", &[]),
    ("-n <NS> addr add 10.0.0.1/33 dev e0", &[]),
    ("-n <NS> addr add 10.0.0.1/24", &[]),
    ("-n <NS> addr add 10.0.0.1/24 dev e0 bogus", &[]),
    ("-n <NS> route add 10.9.0.0/40 dev e0", &[]),
    ("-n <NS> route add 10.9.0.0/16 bogus", &[]),
    ("-n <NS> route add default via x", &[]),
    ("-n <NS> route get", &[]),
    ("-n <NS> rule", &[]),
    ("-n <NS> rule add from 10.0.0.0/33 table 100", &[]),
    ("-n <NS> rule del", &[]),
    ("-n <NS> neigh", &[]),
    ("-n <NS> neigh add 10.0.0.2 lladdr 02:00:00:00:00:02", &[]),
    ("-n <NS> neigh add 10.0.0.2 dev e0 lladdr zz", &[]),
    ("-n <NS> fdb", &[]),
    ("-n <NS> fdb add 02:00:00:00:00:02 dev e0 bogus", &[]),
    ("-n <NS> sysctl", &[]),
    ("-n <NS> sysctl get kernel.hostname", &[]),
    ("-n <NS> sysctl set net.ipv4.ip_forward", &[]),
    ("-n <NS> monitor sideways", &[]),
    ("-n <NS> monitor --count 0", &[]),
    ("netns identify notapid", &[]),
    ("ipam", &[]),
    ("ipam allocate c1", &[]),
    (
        "ipam --config <DIR>/pool.json --store <DIR>/ipam allocate c2 ip ten",
        &[],
    ),
    ("ipam --config <DIR>/pool.json --store <DIR>/ipam gc", &[]),
    ("-n <NS> fw", &[]),
    (
        "-n <NS> fw --state-dir <DIR>/fw add c1:eth0 port 99999:10.88.0.2:80",
        &[],
    ),
    ("-n <NS> fw --state-dir <DIR>/fw add c1:eth0 bogus", &[]),
    // The operation failed (exit 1).
    ("-n <NS> link add e0 type bridge", &[]),
    ("-n <NS> link set nosuch0 up", &[]),
    ("-n <NS> link set e0 mtu 99999999", &[]),
    ("-n <NS> link set e0 master nobr0", &[]),
    ("-n <NS> link show nosuch0", &[]),
    ("-n <NS> addr add 10.0.0.1/24 dev nosuch0", &[]),
    ("-n <NS> route add 10.9.0.0/16 via 192.0.2.1", &[]),
    ("-n <NS> rule add priority 5 from 10.9.0.0/16 lookup 100", &[]),
    ("-n <NS> neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev nosuch0", &[]),
    ("-n <NS> neigh show dev nosuch0", &[]),
    ("-n <NS> fdb add 02:00:00:00:00:02 dev nosuch0", &[]),
    ("-n <NS> fdb show br nosuch0", &[]),
    ("-n <NS> sysctl set net.ipv4.ip_forward=yes", &[]),
    ("-n <NS> sysctl get net.ipv4.conf.nosuch0.forwarding", &[]),
    ("-n <MISSING> monitor", &[]),
    ("netns identify 2147483647", &[]),
    ("ipam --config <DIR>/nosuch.json show", &[]),
    (
        "ipam --config <DIR>/pool.json --store <DIR>/ipam allocate c2 ip 10.9.0.1",
        &[],
    ),
    (
        "-n <NS> fw --state-dir <DIR>/fw add c2:eth0 port 8080:10.88.0.3:80/tcp",
        &[],
    ),
    ("-n <MISSING> fw list", &[]),
    ("-n <MISSING> link show", &[]),
    ("netns exec <MISSING> true", &[]),
    ("netns add <NS>", &[]),
    ("-n <NS> topo apply <DIR>/nosuch.yml --state-dir <DIR>/state", &[]),
    ("-n <NS> topo apply <DIR>/syntax.yml --state-dir <DIR>/state", &[]),
    ("-n <NS> topo apply <DIR>/unknown-key.yml --state-dir <DIR>/state", &[]),
    ("-n <NS> topo apply <DIR>/unknown-node.yml --state-dir <DIR>/state", &[]),
    ("-n <NS> -b <DIR>/nosuch.batch", &[]),
    // Batches: the failing line's number; the first failure's exit code.
    (
        "-n <NS> -b -",
        &[
            "link add b0 type bridge",
            "link add e0 type bridge",
            "link add b1 type bridge",
        ],
    ),
    (
        "-n <NS> -b - --force",
        &[
            "link set e0 mtu 1400",
            "link add e0 type bridge",
            "addr add 10.0.0.1/24 dev nosuch0",
        ],
    ),
    (
        "-n <NS> -b -",
        &["link set e0 up", "link add s2 type wormhole", "lnik show"],
    ),
    (
        "-n <NS> -b - --force",
        &["link set e0 up", "lnik show", "link add e0 type bridge"],
    ),
];

/// The files of the `topo apply` and `ipam` cases, in the test's temp dir.
const FILES: [(&str, &str); 4] = [
    ("syntax.yml", "name: x\ntopology:\n  nodes:\n    a: {kind: linux\n"),
    (
        "unknown-key.yml",
        "name: x\ntopology:\n  nodes:\n    a: {kind: linux, colour: red}\n",
    ),
    (
        "unknown-node.yml",
        "name: x\ntopology:\n  nodes: {a: {}}\n  links: [{endpoints: [\"a:eth1\", \"zz:eth1\"]}]\n",
    ),
    (
        "pool.json",
        r#"{"cniVersion": "1.0.0", "name": "net1", "ipam": {"type": "netkit-ipam", "ranges": [[{"subnet": "10.0.0.0/30"}]]}}"#,
    ),
];

#[test]
fn errors_match_their_snapshot() {
    let host = HostNs::new("snap");
    let ns = host.name();
    ok(&["-n", ns, "link", "add", "e0", "type", "veth", "peer", "name", "e1"]);
    let missing = NsName::new("snapmissing");
    let dir = host.dir().to_str().expect("a UTF-8 temp dir").to_string();
    for (name, text) in FILES {
        std::fs::write(host.dir().join(name), text).unwrap();
    }
    // The rule that `rule add` finds there, the port that `fw add c2:eth0` finds taken.
    ok(&[
        "-n",
        ns,
        "rule",
        "add",
        "priority",
        "5",
        "from",
        "10.9.0.0/16",
        "lookup",
        "100",
    ]);
    let state = format!("{dir}/fw");
    ok(&[
        "-n",
        ns,
        "fw",
        "--state-dir",
        &state,
        "add",
        "c1:eth0",
        "port",
        "8080:10.88.0.2:80/tcp",
    ]);
    // Longest first: no placeholder eats part of a longer name.
    let mut names = [(dir.as_str(), "<DIR>"), (ns, "<NS>"), (missing.0.as_str(), "<MISSING>")];
    names.sort_by_key(|(real, _)| std::cmp::Reverse(real.len()));
    let to_placeholders = |text: &str| {
        names
            .iter()
            .fold(text.to_string(), |t, (real, placeholder)| t.replace(real, placeholder))
    };
    let to_real = |text: &str| {
        names
            .iter()
            .fold(text.to_string(), |t, (real, placeholder)| t.replace(placeholder, real))
    };

    let mut snapshot = String::new();
    for (line, input) in FAILING {
        let real = to_real(line);
        let args: Vec<&str> = real.split_whitespace().collect();
        let stdin: String = input.iter().map(|l| format!("{l}\n")).collect();
        let r = run_with_input(&args, &stdin);
        let what = format!("netkit {line}");
        assert!(r.code == 1 || r.code == 2, "{what}: exit {}: {}", r.code, r.stderr);
        assert_eq!(r.stdout, "", "{what}: a failing command prints nothing on stdout");
        assert!(!r.stderr.is_empty(), "{what}: no error");
        for l in r.stderr.lines() {
            assert!(
                l.starts_with("netkit: "),
                "{what}: every error line starts with `netkit: `: {l:?}"
            );
        }
        // One line per failure: one for a command, one per failing line for a batch.
        if !line.contains("--force") {
            assert_eq!(r.stderr.lines().count(), 1, "{what}: one line of error: {:?}", r.stderr);
        }
        snapshot.push_str(format!("$ netkit {line}").trim_end());
        snapshot.push('\n');
        for l in input.iter() {
            snapshot.push_str(&format!("< {l}\n"));
        }
        snapshot.push_str(&format!("exit {}\n{}\n", r.code, to_placeholders(&r.stderr)));
    }
    if let Err(e) = snapshots("").check("errors.txt", &snapshot) {
        panic!("{e}");
    }
    // None of them changed anything but the batches' first lines (b0, e0's MTU and state): no
    // link, no rule, no neighbour; the firewall holds only c1:eth0's mapping.
    let mut links = netkit_test_support::snapshot::link_names(ns);
    links.sort();
    assert_eq!(links, ["b0", "e0", "e1", "lo"], "{links:?}");
    let rules = crate::common::ok_json(&["-n", ns, "rule", "show"]);
    assert_eq!(
        rules.as_array().map(Vec::len),
        Some(4),
        "the kernel's three and ours: {rules}"
    );
    let neigh = crate::common::ok_json(&["-n", ns, "neigh", "show", "nud", "all"]);
    assert!(!neigh.to_string().contains("10.0.0.2"), "{neigh}");
    let fw = crate::common::ok_json(&["-n", ns, "fw", "--state-dir", &state, "list"]);
    assert!(
        fw.to_string().contains("c1:eth0") && !fw.to_string().contains("c2:eth0"),
        "{fw}"
    );
    assert!(
        run(&["-n", &missing.0, "link", "show"]).code == 1,
        "<MISSING> was not made"
    );
}
