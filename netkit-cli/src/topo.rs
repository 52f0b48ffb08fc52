//! `netkit topo apply|diff|status|destroy|graph FILE`: topology files, made real by
//! netkit-core's [`netkit_core::topo`]. The lab's host side (its bridges, the `kind: host`
//! node) goes to the namespace of `-n HOST`, or the current one.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use netkit_core::topo::{self, Lab, TopoOptions};
use netkit_core::NetNs;
use serde_json::json;

use crate::cli::Global;
use crate::error::CliError;
use crate::output::Output;

/// What to do with a topology file.
#[derive(Subcommand, Debug, Clone)]
pub enum TopoVerb {
    /// Make the kernel match FILE: only what differs is changed (applying it again says
    /// "0 changes").
    Apply {
        /// The topology file (`*.clab.yml`: containerlab's format; else netkit's).
        file: PathBuf,
        /// When a step fails, remove what this apply made before exiting.
        #[arg(long)]
        atomic: bool,
        /// Directory of lab records.
        #[arg(long, value_name = "DIR", default_value = topo::STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Print what `apply` would change; change nothing.
    Diff {
        /// The topology file.
        file: PathBuf,
        /// Directory of lab records.
        #[arg(long, value_name = "DIR", default_value = topo::STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Compare the kernel with FILE (exit code 1 when they differ); with --ping, also ping every
    /// declared address from every other node and print the reachability matrix.
    Status {
        /// The topology file.
        file: PathBuf,
        /// Send real pings between the nodes.
        #[arg(long)]
        ping: bool,
        /// Directory of lab records.
        #[arg(long, value_name = "DIR", default_value = topo::STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Remove what the lab made (also what a killed apply left).
    Destroy {
        /// The topology file.
        file: PathBuf,
        /// Directory of lab records.
        #[arg(long, value_name = "DIR", default_value = topo::STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Print the topology as Graphviz DOT or Mermaid.
    Graph {
        /// The topology file.
        file: PathBuf,
        /// The format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
}

/// Formats of `topo graph`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    /// Graphviz DOT (`| dot -Tsvg > lab.svg`).
    Dot,
    /// A Mermaid flowchart (renders in GitHub and GitLab markdown).
    Mermaid,
    /// SVG, drawn from the DOT by Graphviz's `dot -Tsvg` (which must be installed: Debian's
    /// `graphviz`).
    Svg,
}

/// Draw `dot_text` as SVG with Graphviz's `dot`.
fn svg(dot_text: &str) -> Result<String, CliError> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let io = |what: &str, cause: std::io::Error| CliError::Io {
        what: what.into(),
        cause,
    };
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io("run Graphviz's dot for --format svg (install graphviz)", e))?;
    // dot reads all of its input before it writes: no deadlock writing first.
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(dot_text.as_bytes())
        .map_err(|e| io("write the graph to dot", e))?;
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| io("wait for dot", e))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(io(
            &format!("dot -Tsvg: {} ({})", out.status, why.trim()),
            std::io::Error::other("dot failed"),
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| io("read dot's SVG", std::io::Error::other("not UTF-8")))
}

fn read(file: &Path, out: &Output) -> Result<Lab, CliError> {
    let lab = topo::read_file(file).map_err(|e| CliError::Topo {
        file: file.display().to_string(),
        cause: Box::new(e),
    })?;
    for w in &lab.warnings {
        out.note(&format!("{}: {w}", file.display()));
    }
    Ok(lab)
}

fn options(global: &Global, state_dir: PathBuf) -> Result<TopoOptions, CliError> {
    let host = match &global.netns {
        Some(name) => NetNs::open(name)?,
        None => NetNs::current()?,
    };
    let mut opts = TopoOptions::new(host);
    opts.state_dir = state_dir;
    Ok(opts)
}

fn failed(file: &Path, e: topo::TopoError) -> CliError {
    CliError::Topo {
        file: file.display().to_string(),
        cause: Box::new(e),
    }
}

/// Print changes as lines (or `{"changes": […]}` with -j) and a count.
fn print_changes(out: &Output, changes: &[String], done: bool) {
    if out.json {
        out.json(&json!({ "changes": changes }));
        return;
    }
    for c in changes {
        out.text(c);
    }
    let n = changes.len();
    let what = if done { "" } else { " to make" };
    out.text(&format!("{n} change{}{what}", if n == 1 { "" } else { "s" }));
}

/// Run a `topo` verb.
pub async fn run(global: &Global, out: &Output, verb: TopoVerb) -> Result<(), CliError> {
    match verb {
        TopoVerb::Apply {
            file,
            atomic,
            state_dir,
        } => {
            let lab = read(&file, out)?;
            let mut opts = options(global, state_dir)?;
            opts.atomic = atomic;
            let bar = crate::progress::Bar::for_stderr(out.quiet);
            if let Some(bar) = &bar {
                opts = opts.with_progress(bar.callback());
            }
            let report = topo::apply(&lab, &opts).await;
            if let Some(bar) = &bar {
                bar.clear();
            }
            let report = report.map_err(|e| failed(&file, e))?;
            print_changes(out, &report.changes, true);
            Ok(())
        }
        TopoVerb::Diff { file, state_dir } => {
            let lab = read(&file, out)?;
            let mut opts = options(global, state_dir)?;
            opts.dry_run = true;
            let report = topo::apply(&lab, &opts).await.map_err(|e| failed(&file, e))?;
            print_changes(out, &report.changes, false);
            Ok(())
        }
        TopoVerb::Status { file, ping, state_dir } => {
            let lab = read(&file, out)?;
            let mut opts = options(global, state_dir)?;
            let status = topo::status(&lab, &opts).await.map_err(|e| failed(&file, e))?;
            opts.dry_run = true;
            let probes = if ping && status.in_sync() {
                let (resolved, _) = topo::resolve(&lab, &opts).map_err(|e| failed(&file, e))?;
                topo::ping_matrix(&resolved).map_err(|e| failed(&file, e))?
            } else {
                Vec::new()
            };
            let unreachable = probes.iter().filter(|p| !p.ok).count();
            if out.json {
                let nodes: Vec<_> = lab
                    .nodes
                    .keys()
                    .map(|n| json!({"node": n, "netns": lab.netns_of(n)}))
                    .collect();
                let pings: Vec<_> = probes
                    .iter()
                    .map(|p| json!({"from": p.from, "to": p.to, "addr": p.addr.to_string(), "ok": p.ok}))
                    .collect();
                out.json(&json!({
                    "lab": lab.name,
                    "in_sync": status.in_sync(),
                    "drift": status.drift,
                    "extra": status.extra,
                    "nodes": nodes,
                    "pings": pings,
                }));
            } else {
                for n in lab.nodes.keys() {
                    out.text(&format!("node {n}: netns {}", lab.netns_of(n)));
                }
                if status.in_sync() {
                    out.text(&format!("lab {}: in sync with {}", lab.name, file.display()));
                } else {
                    out.text(&format!(
                        "lab {}: {} difference(s) from {}:",
                        lab.name,
                        status.drift.len(),
                        file.display()
                    ));
                    for d in &status.drift {
                        out.text(&format!("  {d}"));
                    }
                }
                for x in &status.extra {
                    out.text(&format!("extra (not in the file, left alone): {x}"));
                }
                if ping && !status.in_sync() {
                    out.note("no pings: the lab differs from the file (apply it first)");
                }
                for p in &probes {
                    out.text(&format!(
                        "ping {} -> {} ({}): {}",
                        p.from,
                        p.to,
                        p.addr,
                        if p.ok { "ok" } else { "UNREACHABLE" }
                    ));
                }
            }
            if !status.in_sync() || unreachable > 0 {
                return Err(CliError::Reported(crate::error::EXIT_FAILED));
            }
            Ok(())
        }
        TopoVerb::Destroy { file, state_dir } => {
            let lab = read(&file, out)?;
            let opts = options(global, state_dir)?;
            let report = topo::destroy(&lab, &opts).await.map_err(|e| failed(&file, e))?;
            print_changes(out, &report.changes, true);
            Ok(())
        }
        TopoVerb::Graph { file, format } => {
            let lab = read(&file, out)?;
            let text = match format {
                GraphFormat::Dot => topo::graph::dot(&lab),
                GraphFormat::Mermaid => topo::graph::mermaid(&lab),
                GraphFormat::Svg => svg(&topo::graph::dot(&lab))?,
            };
            print!("{text}");
            Ok(())
        }
    }
}
