//! `netkit sysctl get|set`: the kernel settings under `net.*` of the namespace of `-n` (or the
//! current one), through netkit-core's [`Handle::sysctl_get`] and [`Handle::sysctl_set_many`].
//!
//! Keys are `sysctl(8)`'s, dotted (`net.ipv4.conf.v0.forwarding`) or in the slash form
//! (`net/ipv4/conf/v0/forwarding`, turned into the dotted one by netkit-core's
//! [`dotted_key`]); only `net.*` keys are accepted, as netkit-core's [`key_path`] checks: they
//! are the ones that belong to a network namespace, any other would change the whole machine.
//! An invalid key is bad usage (exit 2, before anything is read or written); a key the kernel
//! does not have is a failure (exit 1, naming the key and the namespace).
//!
//! Output of `get`, as `sysctl` prints it: one `KEY = VALUE` line per key, in the order given,
//! the key in the dotted form. With `-j` (there is no `ip -j` equivalent): one JSON object
//! mapping each dotted key to its value as the kernel's text, a string (`{"net.ipv4.ip_forward":
//! "1"}`; a value of several numbers keeps its tabs). `set` prints nothing, as netkit's other
//! changes; it takes `KEY=VALUE…` (the value is what follows the first `=`) or one `KEY VALUE`.
//!
//! [`dotted_key`]: netkit_core::sysctl::dotted_key
//! [`key_path`]: netkit_core::sysctl::key_path

use netkit_core::sysctl::{dotted_key, key_path};
use netkit_core::Handle;
use serde_json::{Map, Value};

use crate::cli::{Global, SysctlVerb};
use crate::error::CliError;
use crate::output::Output;
use crate::Session;

/// Run one `sysctl` verb in the namespace of `-n` (or the current one).
pub async fn run(session: &mut Session, global: &Global, out: &Output, verb: SysctlVerb) -> Result<(), CliError> {
    match verb {
        SysctlVerb::Get { keys } => {
            let keys = checked_keys(keys.iter().map(String::as_str))?;
            let h = session.handle(global.netns.as_deref()).await?;
            get(&h, out, &keys).await
        }
        SysctlVerb::Set { settings } => {
            let settings = parse_set(&settings)?;
            let h = session.handle(global.netns.as_deref()).await?;
            let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            h.sysctl_set_many(&pairs).await?;
            Ok(())
        }
    }
}

/// The dotted forms of `keys`, each checked by netkit-core's [`key_path`]: the first invalid
/// one is a usage error.
pub fn checked_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, CliError> {
    keys.into_iter()
        .map(|k| {
            let dotted = dotted_key(k);
            key_path(&dotted)?;
            Ok(dotted)
        })
        .collect()
}

/// Read `set`'s arguments: `KEY=VALUE…`, or exactly `KEY VALUE`; keys dotted and checked.
pub fn parse_set(words: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let pairs: Vec<(&str, &str)> = match words {
        [key, value] if !key.contains('=') => vec![(key.as_str(), value.as_str())],
        _ => words
            .iter()
            .map(|w| {
                w.split_once('=').ok_or_else(|| {
                    CliError::usage(format!(
                        "sysctl set: {w:?} is not KEY=VALUE (give KEY=VALUE… or one KEY VALUE)"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let keys = checked_keys(pairs.iter().map(|(k, _)| *k))?;
    Ok(keys
        .into_iter()
        .zip(pairs)
        .map(|(k, (_, v))| (k, v.to_string()))
        .collect())
}

/// Read every key, then print them all (nothing when one fails: its error is the answer).
async fn get(h: &Handle, out: &Output, keys: &[String]) -> Result<(), CliError> {
    let mut values = Vec::with_capacity(keys.len());
    for k in keys {
        values.push(h.sysctl_get(k).await?);
    }
    if out.json {
        let map: Map<String, Value> = keys
            .iter()
            .cloned()
            .zip(values.into_iter().map(Value::String))
            .collect();
        out.json(&Value::Object(map));
    } else {
        for (k, v) in keys.iter().zip(values) {
            out.text(&format!("{k} = {v}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::tests::w;

    #[test]
    fn set_takes_pairs_or_key_and_value() {
        let got = parse_set(&w("net.ipv4.ip_forward=1 net/ipv4/conf/v0.1/rp_filter=2")).unwrap();
        assert_eq!(
            got,
            [
                ("net.ipv4.ip_forward".to_string(), "1".to_string()),
                ("net.ipv4.conf.v0/1.rp_filter".to_string(), "2".to_string())
            ]
        );
        let got = parse_set(&w("net.ipv6.conf.v0.accept_dad -1")).unwrap();
        assert_eq!(got, [("net.ipv6.conf.v0.accept_dad".to_string(), "-1".to_string())]);
        // The value is everything after the first '='.
        let got = parse_set(&w("net.x.y=a=b")).unwrap();
        assert_eq!(got[0].1, "a=b");
    }

    #[test]
    fn bad_settings_are_usage_errors() {
        for words in [
            "net.ipv4.ip_forward",
            "net.ipv4.ip_forward 1 2",
            "net.ipv4.ip_forward=1 net.ipv4.conf.all.forwarding",
            "kernel.hostname=x",
            "kernel.hostname x",
            "net.ipv4=1",
            "=1",
        ] {
            let e = parse_set(&w(words)).unwrap_err();
            assert_eq!(e.exit_code(), crate::EXIT_USAGE, "{words}: {e}");
        }
        let e = checked_keys(["net.ipv4.ip_forward", "kernel/hostname"]).unwrap_err();
        assert!(e.to_string().contains("kernel.hostname"), "{e}");
        assert_eq!(e.exit_code(), crate::EXIT_USAGE);
    }
}
