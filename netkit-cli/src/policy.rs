//! `netkit policy add|del|list|pod|namespace`: network policies, and what they select (pods
//! with their node, interface and labels; namespaces with their labels), in the cluster store
//! ([`netkit_core::policy::catalog`]), which every node's `netkit agent --policy` enforces.
//!
//! ```text
//! netkit policy --store etcd=http://10.0.0.1:2379 add back/allow-shop -f allow-shop.json
//! netkit policy --store … pod set back/db --ip 10.244.1.5 --node node-1 --iface veth1a2b3c --label app=db
//! netkit policy --store … namespace front --label team=shop
//! netkit policy --store … list
//! netkit policy --store … del back/allow-shop
//! ```
//!
//! A policy file is a Kubernetes NetworkPolicy: its `spec` (or a whole object with `spec`), in
//! JSON (Kubernetes' field names). The store is as `netkit service`'s.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use netkit_core::policy::catalog::{self, NamespaceRecord, PodRecord};
use netkit_core::policy::{Labels, NetworkPolicy, PolicyError};
use serde_json::{json, Value};

use crate::error::CliError;
use crate::output::Output;
use crate::service::ServiceOpts;

/// `netkit policy …`
#[derive(Subcommand, Debug, Clone)]
pub enum PolicyVerb {
    /// Create or replace a policy from a Kubernetes NetworkPolicy (JSON: the spec, or an object
    /// with `spec`).
    Add {
        /// NAMESPACE/NAME.
        id: String,
        /// The file (`-`: standard input).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete a policy (a missing one is not an error).
    Del {
        /// NAMESPACE/NAME.
        id: String,
    },
    /// List the policies (`-j`: with their specs).
    List,
    /// Record a pod: its addresses, node, host-side interface and labels (what a runtime's
    /// integration writes when it attaches a pod).
    #[command(arg_required_else_help = false)]
    Pod {
        /// The change.
        #[command(subcommand)]
        verb: PodVerb,
    },
    /// Set a namespace's labels (namespaceSelector matches them).
    Namespace {
        /// The namespace.
        name: String,
        /// KEY=VALUE, repeat for several (none: no labels).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
}

/// `netkit policy pod …`
#[derive(Subcommand, Debug, Clone)]
pub enum PodVerb {
    /// Create or replace a pod's record.
    Set(PodArgs),
    /// Forget a pod.
    Del {
        /// NAMESPACE/NAME.
        id: String,
    },
    /// List the recorded pods.
    List,
}

/// `netkit policy pod set`.
#[derive(Args, Debug, Clone)]
pub struct PodArgs {
    /// NAMESPACE/NAME.
    pub id: String,
    /// An address of the pod (repeat for several).
    #[arg(long = "ip", value_name = "IP", required = true)]
    pub ips: Vec<IpAddr>,
    /// The node it runs on.
    #[arg(long, value_name = "NODE")]
    pub node: String,
    /// The host side of its interface on that node.
    #[arg(long, value_name = "DEV")]
    pub iface: String,
    /// KEY=VALUE, repeat for several.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

fn labels(words: &[String]) -> Result<Labels, CliError> {
    words
        .iter()
        .map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::usage(format!("policy: label {w:?}: KEY=VALUE")))
        })
        .collect()
}

fn err(e: PolicyError) -> CliError {
    match e {
        PolicyError::Invalid { .. } => CliError::usage(format!("policy: {e}")),
        e => CliError::Io {
            what: "policy".into(),
            cause: std::io::Error::other(e.to_string()),
        },
    }
}

/// Read a policy file: a spec, or an object whose `spec` is one.
pub fn read_policy(text: &str) -> Result<NetworkPolicy, CliError> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| CliError::usage(format!("policy: not JSON: {e}")))?;
    if let Some(spec) = v.get_mut("spec") {
        v = spec.take();
    }
    serde_json::from_value(v).map_err(|e| CliError::usage(format!("policy: not a NetworkPolicy spec: {e}")))
}

/// Run `netkit policy …`.
pub async fn run(out: &Output, opts: &ServiceOpts, verb: PolicyVerb) -> Result<(), CliError> {
    let store = opts.open("policy").await?;
    match verb {
        PolicyVerb::Add { id, file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&file)
            }
            .map_err(|cause| CliError::Io {
                what: format!("policy: read {}", file.display()),
                cause,
            })?;
            let p = read_policy(&text)?;
            catalog::put_policy(&store, &id, &p).await.map_err(err)
        }
        PolicyVerb::Del { id } => {
            let existed = catalog::delete_policy(&store, &id).await.map_err(err)?;
            if out.json {
                out.json(&json!({"deleted": existed}));
            } else if !existed {
                out.note(&format!("policy {id} did not exist"));
            }
            Ok(())
        }
        PolicyVerb::List => {
            let list = catalog::list_policies(&store).await.map_err(err)?;
            if out.json {
                out.json(&Value::Array(
                    list.iter().map(|(id, p)| json!({"id": id, "spec": p})).collect(),
                ));
            } else {
                out.text(&format!(
                    "{:<32} {:<32} {:<16} RULES (in/out)",
                    "NAME", "POD-SELECTOR", "TYPES"
                ));
                for (id, p) in &list {
                    let sel = serde_json::to_string(&p.pod_selector).unwrap_or_default();
                    let types: Vec<String> = p.effective_types().iter().map(|t| format!("{t:?}")).collect();
                    out.text(&format!(
                        "{id:<32} {sel:<32} {:<16} {}/{}",
                        types.join(","),
                        p.ingress.len(),
                        p.egress.len()
                    ));
                }
            }
            Ok(())
        }
        PolicyVerb::Pod { verb } => match verb {
            PodVerb::Set(a) => {
                let record = PodRecord {
                    ips: a.ips,
                    node: a.node,
                    interface: a.iface,
                    labels: labels(&a.labels)?,
                };
                catalog::put_pod(&store, &a.id, &record).await.map_err(err)
            }
            PodVerb::Del { id } => {
                catalog::delete_pod(&store, &id).await.map_err(err)?;
                Ok(())
            }
            PodVerb::List => {
                let pods = catalog::list_pods(&store).await.map_err(err)?;
                if out.json {
                    out.json(&Value::Array(
                        pods.iter().map(|(id, p)| json!({"id": id, "pod": p})).collect(),
                    ));
                } else {
                    for (id, p) in &pods {
                        let l: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        let ips: Vec<String> = p.ips.iter().map(IpAddr::to_string).collect();
                        out.text(&format!(
                            "{id} {} on {} ({}) {}",
                            ips.join(","),
                            p.node,
                            p.interface,
                            l.join(",")
                        ));
                    }
                }
                Ok(())
            }
        },
        PolicyVerb::Namespace { name, labels: words } => {
            let record = NamespaceRecord {
                labels: labels(&words)?,
            };
            catalog::put_namespace(&store, &name, &record).await.map_err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_files_and_labels() {
        let spec = r#"{"podSelector": {"matchLabels": {"app": "db"}}}"#;
        let whole = r#"{"kind": "NetworkPolicy", "metadata": {"name": "x"}, "spec": {"podSelector": {}}}"#;
        assert!(read_policy(spec).is_ok());
        assert!(read_policy(whole).is_ok());
        assert!(read_policy("{").is_err());
        assert!(read_policy(r#"{"podSelector": 3}"#).is_err());
        assert_eq!(labels(&["a=b".into()]).unwrap().get("a").map(String::as_str), Some("b"));
        assert!(labels(&["ab".into()]).is_err());
    }
}
