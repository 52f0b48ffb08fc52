//! Topology files: a whole lab of namespaces, bridges and veth links, with addresses, routes,
//! sysctls and commands, made to match the file ([`apply`]), compared with it ([`apply`] with
//! `dry_run`: the plan, or the drift), and taken down ([`destroy`]).
//!
//! The file is containerlab's format (`*.clab.yml`, read as containerlab writes it: its
//! `linux` nodes become namespaces, its `bridge` nodes bridges) or netkit's own, which is the
//! same layout with netkit's additions (see [`parse()`](parse::parse)): per node `addresses`
//! (literal, or `pool:NAME` from the lab's `pools`, through netkit's IPAM: [`resolve`]),
//! `routes`, `nat` (masquerade, port mappings), `vxlan` devices and `bridges` inside the node,
//! and the `kind: host` node for the host namespace itself.
//!
//! [`apply`] reconciles: it reads what exists (namespaces, links, addresses, routes, sysctls) and
//! makes only what differs, so applying the same file twice changes nothing the second time, an
//! edited file changes only what was edited, and drift (a deleted route, half a veth pair) is
//! repaired. With `dry_run` it makes nothing and returns the plan (`topo diff`), whose lines are
//! also the drift `topo status` reports. Link ends get stable MACs ([`crate::MacAddr::stable`]),
//! so a remade link keeps its neighbours' ARP entries valid. A node's `exec` commands run when
//! apply creates the node.
//!
//! What a lab made is recorded in a state file (`<state_dir>/<lab>.json`, [`STATE_DIR`] by
//! default) *before* it is made, so an apply killed at any point leaves a lab that the next
//! apply or destroy finishes; things removed from the file are removed from the kernel by the
//! next apply because the record still names them. Routes a lab adds carry the routing
//! protocol [`ROUTE_PROTOCOL`], so routes made by anyone else are never deleted. Two existing
//! ends of a declared link that are not each other's veth peers are remade as one pair.
//!
//! New nodes' namespaces are made on one task per core; their links and settings one node
//! after the other. Host sysctls a lab changes are recorded with the value they had first and
//! put back by destroy (or by the apply whose file no longer sets them).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use netkit_core::topo::{self, TopoOptions};
//! let lab = topo::read_file("lab.yml".as_ref())?;
//! let opts = TopoOptions::new(netkit_core::NetNs::open("lab-host")?);
//! let report = topo::apply(&lab, &opts).await?;   // again: zero changes
//! println!("{} changes", report.changes.len());
//! topo::destroy(&lab, &opts).await?;
//! # Ok(()) }
//! ```

mod apply;
pub mod graph;
mod model;
pub mod parse;
mod pools;
mod reach;

pub use apply::{apply, destroy, status, Progress, ProgressFn, Report, Status, TopoOptions, ROUTE_PROTOCOL, STATE_DIR};
pub use model::{Endpoint, Lab, LinkDef, Nat, Node, PoolDef, RouteDef, VxlanDef};
pub use parse::{parse, Format, SCHEMA_VERSION};
pub use pools::resolve;
pub use reach::{ping_matrix, Probe};

use std::path::{Path, PathBuf};

/// What went wrong with a topology.
#[derive(Debug, thiserror::Error)]
pub enum TopoError {
    /// The file is not valid YAML.
    #[error("syntax error{}: {message}", at(*line, *column))]
    Syntax {
        /// Line (1-based), when known.
        line: Option<usize>,
        /// Column (1-based), when known.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// The file is YAML but not a valid topology: the key's path and why.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where in the file, e.g. `topology.links[2].endpoints[0]`.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A kernel operation failed (the message names the object and the kernel's answer).
    #[error("in {netns}: {message}")]
    Kernel {
        /// The namespace it was for.
        netns: String,
        /// The operation's error.
        message: String,
    },
    /// Something that is not the lab's is in the way.
    #[error("{0}")]
    Conflict(String),
    /// The lab's record could not be read or written.
    #[error("lab record {path}: {reason}")]
    State {
        /// The record file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A node's `exec` command failed.
    #[error("node {node}: exec {command:?}: {reason}")]
    Exec {
        /// The node.
        node: String,
        /// The command.
        command: String,
        /// Its exit status and stderr, or why it could not start.
        reason: String,
    },
    /// A step of an atomic apply failed; what the apply had made was removed.
    #[error("{cause} (rolled back {undone} new objects{})", if failures.is_empty() { String::new() } else { format!("; rollback failed: {}", failures.join("; ")) })]
    RolledBack {
        /// The step's error.
        cause: Box<TopoError>,
        /// How many namespaces, bridges and links the apply had made.
        undone: usize,
        /// Rollback steps that failed.
        failures: Vec<String>,
    },
    /// Destroy went on past failures; here is each.
    #[error("destroy: {}", .0.join("; "))]
    Teardown(Vec<String>),
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l} column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

impl TopoError {
    pub(crate) fn kernel(netns: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        TopoError::Kernel {
            netns: netns.to_string(),
            message: e.to_string(),
        }
    }
}

/// Read the topology file at `path`, in the format its name says ([`Format::of_path`]).
pub fn read_file(path: &Path) -> Result<Lab, TopoError> {
    let text = std::fs::read_to_string(path).map_err(|e| TopoError::Read {
        path: path.into(),
        reason: e.to_string(),
    })?;
    parse(&text, Format::of_path(path))
}
