//! `netkit topo`: the example topologies applied, checked, re-applied, drawn and destroyed
//! through the binary, with the lab's host side in a namespace the test makes (`-n HOST`), and
//! an apply killed (SIGKILL) halfway, then finished by apply or by destroy.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use netkit_core::NetNs;
use netkit_test_support::{unique, wait_until, HostNs};

use crate::common::{fails, ok, ok_json, run};

/// A copy of an example topology under a unique lab name, in the host's temp dir, and the
/// state dir beside it; the lab's namespaces are deleted when the test ends.
struct Lab {
    host: HostNs,
    file: PathBuf,
    state: PathBuf,
    name: String,
}

impl Lab {
    fn example(example: &str) -> Self {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/topologies")
            .join(example);
        let text = std::fs::read_to_string(&src).unwrap();
        let name = unique("cl");
        let line = text.lines().find(|l| l.starts_with("name: ")).unwrap().to_string();
        Self::from_text(&text.replacen(&line, &format!("name: {name}"), 1), example, name)
    }

    fn from_text(text: &str, file_name: &str, name: String) -> Self {
        let host = HostNs::new("topo");
        let file = host.dir().join(file_name);
        std::fs::write(&file, text).unwrap();
        let state = host.dir().join("state");
        Lab {
            host,
            file,
            state,
            name,
        }
    }

    /// `netkit -n HOST [pre…] topo VERB FILE --state-dir STATE [post…]`.
    fn args<'a>(&'a self, pre: &[&'a str], verb: &'a str, post: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["-n", self.host.name()];
        a.extend_from_slice(pre);
        a.extend_from_slice(&["topo", verb, self.file.to_str().unwrap()]);
        if verb != "graph" {
            a.extend_from_slice(&["--state-dir", self.state.to_str().unwrap()]);
        }
        a.extend_from_slice(post);
        a
    }

    fn namespaces(&self) -> Vec<String> {
        NetNs::list()
            .unwrap()
            .into_iter()
            .filter(|n| n.contains(&self.name))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in self.namespaces() {
            let _ = NetNs::delete(&n);
        }
    }
}

#[test]
fn apply_status_reapply_diff_and_destroy_an_example() {
    let lab = Lab::example("routers.yml");
    let first = ok(&lab.args(&[], "apply", &[]));
    assert!(first.lines().any(|l| l.starts_with("create netns ")), "{first}");
    assert_eq!(lab.namespaces().len(), 5);
    let again = ok(&lab.args(&[], "apply", &[]));
    assert_eq!(again.trim(), "0 changes");

    let status = ok(&lab.args(&[], "status", &["--ping"]));
    assert!(status.contains("in sync"), "{status}");
    assert!(status.contains("ping h1 -> h2 (10.81.3.2): ok"), "{status}");
    assert!(!status.contains("UNREACHABLE"), "{status}");
    let j = ok_json(&lab.args(&[], "status", &["--ping"])[..]);
    assert_eq!(j["in_sync"], true);
    // 8 addresses (h1 and h2 one, the routers two): every node pings those of the others.
    assert_eq!(j["pings"].as_array().unwrap().len(), 7 + 6 + 6 + 6 + 7, "{j}");

    // Drift: status says what, exits 1; diff plans the repair; apply makes it.
    let r2 = format!("{}-r2", lab.name);
    netkit_test_support::ip(&["-n", &r2, "route", "del", "10.81.3.0/24"]);
    let drift = run(&lab.args(&[], "status", &[]));
    assert_eq!(drift.code, 1, "{drift:?}");
    assert!(
        drift.stdout.contains("add route 10.81.3.0/24 via 10.81.23.2 in r2"),
        "{}",
        drift.stdout
    );
    let plan = ok(&lab.args(&[], "diff", &[]));
    assert_eq!(plan, "add route 10.81.3.0/24 via 10.81.23.2 in r2\n1 change to make\n");
    let fixed = ok_json(&lab.args(&[], "apply", &[]));
    assert_eq!(fixed["changes"].as_array().unwrap().len(), 1);

    let destroyed = ok(&lab.args(&[], "destroy", &[]));
    assert!(destroyed.contains("delete netns"), "{destroyed}");
    assert!(lab.namespaces().is_empty());
    assert_eq!(ok(&lab.args(&[], "destroy", &[])).trim(), "0 changes");
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let lab = Lab::example("pods-nat.yml");
    let dot = ok(&lab.args(&[], "graph", &[]));
    assert!(dot.starts_with("graph \"") && dot.contains("[shape=house]"), "{dot}");
    let m = ok(&lab.args(&[], "graph", &["--format", "mermaid"]));
    assert!(m.starts_with("graph LR\n"), "{m}");
    let has_dot = Command::new("dot").arg("-V").output().is_ok_and(|o| o.status.success());
    if !has_dot {
        let e = fails(&lab.args(&[], "graph", &["--format", "svg"]), 1);
        assert!(e.contains("install graphviz"), "{e}");
        netkit_test_support::report_skip(
            "cli::topo::graph_prints_dot_and_mermaid",
            "no Graphviz dot: the SVG half checked its error only",
        );
        return;
    }
    // Every node of the file is drawn, by name.
    let svg = ok(&lab.args(&[], "graph", &["--format", "svg"]));
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    for node in ["pod1", "pod2", "host"] {
        assert!(svg.contains(&format!(">{node}<")), "{node}: {svg}");
    }
}

#[test]
fn bad_files_fail_with_where_and_change_nothing() {
    let lab = Lab::from_text(
        "name: x\ntopology:\n  nodes:\n    a: {kind: linux\n",
        "bad.yml",
        unique("bad"),
    );
    let e = fails(&lab.args(&[], "apply", &[]), 1);
    assert!(e.contains("bad.yml") && e.contains("line 5"), "{e}");
    let lab = Lab::from_text(
        "name: x\ntopology:\n  nodes: {a: {}}\n  links: [{endpoints: [\"a:eth1\", \"zz:eth1\"]}]\n",
        "unknown.yml",
        unique("bad"),
    );
    let e = fails(&lab.args(&[], "apply", &[]), 1);
    assert!(e.contains("topology.links[0].endpoints[1]: no node \"zz\""), "{e}");
    assert!(NetNs::list().unwrap().iter().all(|n| !n.starts_with("x-")));
    assert!(!lab.state.exists(), "nothing recorded");
    let r = run(&["topo", "apply"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("<FILE>"), "{}", r.stderr);
}

/// A lab big enough that an apply can be killed in the middle of it.
fn big_lab(name: &str, nodes: usize) -> String {
    let mut y = format!("name: {name}\ntopology:\n  nodes:\n    host: {{kind: host, addresses: {{{name}b: [10.90.0.1/16]}}}}\n    {name}b: {{kind: bridge}}\n");
    for i in 0..nodes {
        y.push_str(&format!(
            "    n{i}: {{addresses: {{eth0: [10.90.{}.{}/16]}}, routes: [{{dst: default, via: 10.90.0.1}}]}}\n",
            i / 250,
            i % 250 + 2
        ));
    }
    y.push_str("  links:\n");
    for i in 0..nodes {
        y.push_str(&format!("    - endpoints: [\"n{i}:eth0\", \"{name}b:{name}p{i}\"]\n"));
    }
    y
}

/// Start an apply, SIGKILL it once it has made some namespaces (but not all), and wait for it.
fn kill_halfway(lab: &Lab, nodes: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netkit"))
        .args(lab.args(&[], "apply", &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), "the apply has made a few namespaces", || {
        lab.namespaces().len() >= 3
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // Namespaces are made first (several at once), then the links one by one: an apply killed
    // halfway has not made every namespace or not every port.
    let made = lab.namespaces().len();
    let ports = lab.host.links().iter().filter(|l| l.0.starts_with(&lab.name)).count();
    assert!(
        made < nodes || ports < nodes,
        "the apply was killed halfway ({made} namespaces and {ports} ports of {nodes} made)"
    );
}

#[test]
fn an_apply_killed_halfway_is_finished_by_the_next_apply() {
    let name = unique("k");
    let lab = Lab::from_text(&big_lab(&name, 300), "big.yml", name);
    kill_halfway(&lab, 300);
    let r = run(&lab.args(&[], "apply", &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lab.namespaces().len(), 300);
    assert_eq!(ok(&lab.args(&[], "apply", &[])).trim(), "0 changes");
    ok(&lab.args(&["-q"], "destroy", &[]));
    assert!(lab.namespaces().is_empty());
    assert!(
        lab.host.links().iter().all(|l| !l.0.starts_with(&lab.name)),
        "host side gone"
    );
}

#[test]
fn an_apply_killed_halfway_is_cleaned_by_destroy() {
    let name = unique("k");
    let lab = Lab::from_text(&big_lab(&name, 300), "big.yml", name);
    kill_halfway(&lab, 300);
    ok(&lab.args(&["-q"], "destroy", &[]));
    assert!(lab.namespaces().is_empty(), "{:?}", lab.namespaces());
    assert!(
        lab.host.links().iter().all(|l| !l.0.starts_with(&lab.name)),
        "host side gone"
    );
}

/// Run `netkit ARGS` on a pseudo-terminal (util-linux `script`), as a user at a terminal
/// would: what the terminal received.
fn on_a_terminal(args: &[&str]) -> String {
    let mut line = String::from(env!("CARGO_BIN_EXE_netkit"));
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux)");
    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_progress_bar_on_a_terminal_only() {
    let name = unique("pb");
    let lab = Lab::from_text(&big_lab(&name, 40), "bar.yml", name);
    let screen = on_a_terminal(&lab.args(&[], "apply", &[]));
    // Each phase ends full, then the line is cleared before the changes are printed.
    for phase in ["namespaces", "links", "addresses", "carrier"] {
        assert!(
            screen.contains(&format!("netkit: {phase:<10} [{}]", "#".repeat(28))),
            "{phase}: {screen:?}"
        );
    }
    assert!(screen.contains("\r\x1b[2Kcreate netns"), "{screen:?}");
    assert!(screen.trim_end().ends_with("changes"), "{screen:?}");
    // -q: no bar, even on a terminal; a pipe (every other test): no bar either.
    ok(&lab.args(&["-q"], "destroy", &[]));
    let quiet = on_a_terminal(&lab.args(&["-q"], "apply", &[]));
    assert!(!quiet.contains("netkit: links"), "{quiet:?}");
    ok(&lab.args(&["-q"], "destroy", &[]));
    let r = run(&lab.args(&[], "apply", &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains('\r') && !r.stdout.contains('\r'), "{r:?}");
    ok(&lab.args(&["-q"], "destroy", &[]));
}
