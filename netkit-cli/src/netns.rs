//! `netkit netns add|del|list|identify|exec`: named namespaces (netkit-core's [`NetNs`]).
//!
//! `identify PID` prints the names (one per line; `-j`: a JSON list of strings, `[]` for none)
//! under which the network namespace of process PID is mounted in `/run/netns`, as
//! `ip netns identify` does; nothing when it is in no named namespace, exit 1 when the process
//! does not exist.

use netkit_core::NetNs;
use serde_json::json;

use crate::cli::{Global, NetnsVerb};
use crate::error::CliError;
use crate::output::Output;
use crate::Session;

/// Run one `netns` verb. `-n` is ignored: named namespaces live in the mount namespace, not in
/// a network namespace.
pub async fn run(session: &mut Session, _global: &Global, out: &Output, verb: NetnsVerb) -> Result<(), CliError> {
    match verb {
        NetnsVerb::Add { name } => {
            NetNs::create(&name)?;
            Ok(())
        }
        NetnsVerb::Del { name } => {
            let existed = NetNs::list()?.contains(&name);
            NetNs::delete(&name)?;
            session.forget(&name);
            if !existed {
                out.note(&format!("netns {name:?} does not exist: nothing to delete"));
            }
            Ok(())
        }
        NetnsVerb::List => {
            let names = NetNs::list()?;
            if out.json {
                let items: Vec<_> = names.iter().map(|n| json!({ "name": n })).collect();
                out.json(&json!(items));
            } else {
                for n in names {
                    out.text(&n);
                }
            }
            Ok(())
        }
        NetnsVerb::Identify { pid } => {
            let names = NetNs::identify(pid)?;
            if out.json {
                out.json(&json!(names));
            } else {
                for n in names {
                    out.text(&n);
                }
            }
            Ok(())
        }
        NetnsVerb::Exec { name, command } => exec(&name, &command).await,
    }
}

/// Run `command` inside namespace `name` with netkit-core's [`NetNs::command`]; its exit status
/// becomes ours (128 + the signal for a program killed by one, as a shell reports it).
async fn exec(name: &str, command: &[String]) -> Result<(), CliError> {
    let ns = NetNs::open(name)?;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| CliError::usage("netns exec: no program given"))?;
    let mut cmd = ns.command(program);
    cmd.args(args);
    let what = format!("run {program:?} in netns {ns}");
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await
        .map_err(|e| CliError::Io {
            what: what.clone(),
            cause: std::io::Error::other(e),
        })?
        .map_err(|cause| CliError::Io { what, cause })?;
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(crate::EXIT_FAILED);
    Err(CliError::Reported(code))
}
