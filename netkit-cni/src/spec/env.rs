//! The environment a runtime calls a plugin with.

use std::path::PathBuf;

use super::{CniError, ErrorCode};

/// The CNI verb (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Report supported versions.
    Version,
    /// Release everything not in `cni.dev/valid-attachments` (1.1.0).
    Gc,
    /// Report readiness (1.1.0).
    Status,
}

impl Command {
    /// The verb as `CNI_COMMAND` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => return None,
        })
    }
}

/// `CNI_ARGS`: `KEY=VALUE;KEY=VALUE`.
///
/// Unknown keys are an error (code 2) unless the runtime sets `IgnoreUnknown=1` (or `true`),
/// as libcni's plugins behave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
    ignore_unknown: bool,
}

impl CniArgs {
    /// Parse `CNI_ARGS`.
    pub fn parse(text: &str) -> Result<Self, CniError> {
        let mut args = CniArgs::default();
        for item in text.split(';').filter(|s| !s.is_empty()) {
            let Some((k, v)) = item.split_once('=') else {
                return Err(CniError::new(
                    ErrorCode::InvalidEnv,
                    format!("CNI_ARGS item {item:?} is not KEY=VALUE"),
                ));
            };
            if k == "IgnoreUnknown" {
                args.ignore_unknown = matches!(v.to_ascii_lowercase().as_str(), "1" | "true");
            }
            args.pairs.push((k.to_string(), v.to_string()));
        }
        Ok(args)
    }

    /// The pairs, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Refuse keys outside `known` (and `IgnoreUnknown`) unless `IgnoreUnknown` is set.
    pub fn check_known(&self, known: &[&str]) -> Result<(), CniError> {
        if self.ignore_unknown {
            return Ok(());
        }
        match self
            .pairs
            .iter()
            .find(|(k, _)| k != "IgnoreUnknown" && !known.contains(&k.as_str()))
        {
            Some((k, _)) => Err(CniError::new(
                ErrorCode::UnsupportedField,
                format!("unknown CNI_ARGS key {k:?} (set IgnoreUnknown=1 to ignore it)"),
            )),
            None => Ok(()),
        }
    }
}

/// The plugin's environment, checked for the variables its command needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (ADD, DEL, CHECK).
    pub container_id: Option<String>,
    /// `CNI_NETNS` (ADD, CHECK; optional for DEL).
    pub netns: Option<String>,
    /// `CNI_IFNAME` (ADD, DEL, CHECK).
    pub ifname: Option<String>,
    /// `CNI_ARGS`.
    pub args: CniArgs,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Read the process environment.
    pub fn from_process() -> Result<Self, CniError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read the variables through `get` (testable without touching the process environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        let command =
            var("CNI_COMMAND").ok_or_else(|| CniError::new(ErrorCode::InvalidEnv, "CNI_COMMAND is not set"))?;
        let command = Command::parse(&command)
            .ok_or_else(|| CniError::new(ErrorCode::InvalidEnv, format!("unknown CNI_COMMAND {command:?}")))?;
        let need = |k: &str| {
            var(k).ok_or_else(|| {
                CniError::new(
                    ErrorCode::InvalidEnv,
                    format!("{k} is required for {}", command.as_str()),
                )
            })
        };
        let (container_id, netns, ifname) = match command {
            Command::Add | Command::Check => (
                Some(need("CNI_CONTAINERID")?),
                Some(need("CNI_NETNS")?),
                Some(need("CNI_IFNAME")?),
            ),
            Command::Del => (
                Some(need("CNI_CONTAINERID")?),
                var("CNI_NETNS"),
                Some(need("CNI_IFNAME")?),
            ),
            Command::Version | Command::Gc | Command::Status => (None, None, None),
        };
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            args: CniArgs::parse(&var("CNI_ARGS").unwrap_or_default())?,
            path: var("CNI_PATH")
                .map(|p| p.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect())
                .unwrap_or_default(),
        })
    }
}

impl CniEnv {
    /// The attachment these variables name, made from the calling thread's namespace
    /// (`CNI_PATH` for delegated IPAM plugins), with `trace` called at the end of each phase.
    pub fn attachment(&self, trace: Option<fn(&'static str)>) -> netkit_core::attach::Attachment {
        netkit_core::attach::Attachment {
            netns: self.netns.clone(),
            container_id: self.container_id.clone().unwrap_or_default(),
            ifname: self.ifname.clone().unwrap_or_default(),
            args: self.args.pairs().to_vec(),
            host: netkit_core::attach::Host {
                netns: None,
                cni_path: self.path.clone(),
                trace,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let m: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        CniEnv::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn required_variables_per_command() {
        assert_eq!(env(&[]).unwrap_err().code, ErrorCode::InvalidEnv);
        assert_eq!(env(&[("CNI_COMMAND", "NOPE")]).unwrap_err().code, ErrorCode::InvalidEnv);
        assert_eq!(
            env(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c")])
                .unwrap_err()
                .code,
            ErrorCode::InvalidEnv
        );
        let del = env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c"), ("CNI_IFNAME", "eth0")]).unwrap();
        assert_eq!(del.netns, None);
        assert_eq!(env(&[("CNI_COMMAND", "VERSION")]).unwrap().command, Command::Version);
    }

    #[test]
    fn cni_args() {
        let a = CniArgs::parse("IP=10.0.0.5;K8S_POD_NAME=x").unwrap();
        assert_eq!(a.get("IP"), Some("10.0.0.5"));
        assert_eq!(a.check_known(&["IP"]).unwrap_err().code, ErrorCode::UnsupportedField);
        let b = CniArgs::parse("IgnoreUnknown=1;IP=10.0.0.5;K8S_POD_NAME=x").unwrap();
        assert!(b.check_known(&["IP"]).is_ok());
        assert!(CniArgs::parse("novalue").is_err());
    }
}
