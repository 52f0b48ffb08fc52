//! `netkit addr add|del|show|flush`: addresses through netkit-core's `addr_*` methods.

use ipnetwork::IpNetwork;
use netkit_core::{Handle, IpFamily};
use serde_json::Value;

use crate::cli::{AddrVerb, Global};
use crate::error::CliError;
use crate::output::{addr_json, addr_text, link_json, link_text, IfNames, Output};
use crate::words::WordReader;
use crate::Session;

/// Run one `addr` verb in the namespace of `-n` (or the current one).
pub async fn run(session: &mut Session, global: &Global, out: &Output, verb: AddrVerb) -> Result<(), CliError> {
    let h = session.handle(global.netns.as_deref()).await?;
    match verb {
        AddrVerb::Add { args } => add(&h, parse_change("addr add", &args.words, true)?).await,
        AddrVerb::Del { args } => del(&h, out, parse_change("addr del", &args.words, false)?).await,
        AddrVerb::Show { args } => {
            show(
                &h,
                out,
                parse_dev("addr show", &args.words, false)?,
                crate::family(global),
            )
            .await
        }
        AddrVerb::Flush { args } => {
            let dev = parse_dev("addr flush", &args.words, true)?.expect("required");
            h.addr_flush(&dev).await?;
            Ok(())
        }
    }
}

/// What `addr add|del PREFIX dev NAME …` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrChange {
    /// The address and its prefix length (`/32` or `/128` when none is given, as `ip` reads it).
    pub prefix: IpNetwork,
    /// `dev NAME`.
    pub dev: String,
    /// `nodad` (IPv6: usable at once, no duplicate address detection).
    pub nodad: bool,
    /// `noprefixroute`.
    pub noprefixroute: bool,
    /// `label LABEL` (IPv4).
    pub label: Option<String>,
}

/// Read `PREFIX dev NAME` and, for `add` (`options`), `nodad`, `noprefixroute`, `label L`, in
/// any order as `ip` takes them.
pub fn parse_change(context: &str, words: &[String], options: bool) -> Result<AddrChange, CliError> {
    let mut r = WordReader::new(words, context);
    let (mut prefix, mut dev, mut nodad, mut noprefixroute, mut label) = (None, None, false, false, None);
    let expected = if options {
        "PREFIX, dev, nodad, noprefixroute or label"
    } else {
        "PREFIX or dev"
    };
    while let Some(w) = r.next() {
        match w {
            "dev" => dev = Some(r.value("dev")?.to_string()),
            "local" => prefix = Some(r.parse("local", "an address with its prefix length")?),
            "nodad" if options => nodad = true,
            "noprefixroute" if options => noprefixroute = true,
            "label" if options => label = Some(r.value("label")?.to_string()),
            w if prefix.is_none() => {
                prefix = Some(r.positional(w, "PREFIX", "an address like 10.0.0.1/24", expected)?)
            }
            w => return Err(r.unexpected(w, expected)),
        }
    }
    Ok(AddrChange {
        prefix: prefix.ok_or_else(|| r.error("missing the address (PREFIX, like 10.0.0.1/24)"))?,
        dev: dev.ok_or_else(|| r.error("missing \"dev NAME\""))?,
        nodad,
        noprefixroute,
        label,
    })
}

/// Read `[dev] NAME` (`required`: it must be there).
pub fn parse_dev(context: &str, words: &[String], required: bool) -> Result<Option<String>, CliError> {
    let mut r = WordReader::new(words, context);
    let dev = match r.next() {
        Some("dev") => Some(r.value("dev")?.to_string()),
        Some(name) => Some(name.to_string()),
        None if required => return Err(r.error("missing \"dev NAME\"")),
        None => None,
    };
    r.finish("nothing after the device's name")?;
    Ok(dev)
}

async fn add(h: &Handle, c: AddrChange) -> Result<(), CliError> {
    let mut req = h.addr_add(&c.dev, c.prefix);
    if c.nodad {
        req = req.nodad();
    }
    if c.noprefixroute {
        req = req.noprefixroute();
    }
    if let Some(l) = &c.label {
        req = req.label(l);
    }
    req.await?;
    Ok(())
}

/// Remove an address; one that is not there is a note (netkit-core's delete is idempotent).
async fn del(h: &Handle, out: &Output, c: AddrChange) -> Result<(), CliError> {
    let present = h
        .addr_list(Some(c.dev.as_str()))
        .await?
        .iter()
        .any(|a| a.ip() == c.prefix.ip() && a.prefix.prefix() == c.prefix.prefix());
    if !present {
        out.note(&format!(
            "{} is not on {:?} in netns {}: nothing to delete",
            c.prefix,
            c.dev,
            h.netns()
        ));
        return Ok(());
    }
    h.addr_del(&c.dev, c.prefix).await?;
    Ok(())
}

/// Print the links with their addresses, as `ip addr show`: every link (or `dev`), each with
/// its addresses of the family asked for (with `-4`/`-6`, links without one are left out).
async fn show(h: &Handle, out: &Output, dev: Option<String>, family: Option<IpFamily>) -> Result<(), CliError> {
    let addrs = h.addr_list(dev.as_deref()).await?;
    let links = h.link_list().await?;
    let names = IfNames::of(&links);
    let mut items = Vec::new();
    let mut text = Vec::new();
    for l in links.iter().filter(|l| dev.as_deref().is_none_or(|d| l.name == d)) {
        let mine: Vec<_> = addrs
            .iter()
            .filter(|a| a.index == l.index)
            .filter(|a| family.is_none_or(|f| IpFamily::of(a.ip()) == f))
            .collect();
        if family.is_some() && mine.is_empty() {
            continue;
        }
        if out.json {
            let mut m = link_json(l, &names);
            m.insert(
                "addr_info".into(),
                Value::Array(mine.iter().copied().map(addr_json).collect()),
            );
            items.push(Value::Object(m));
        } else {
            text.push(link_text(l, &names));
            text.extend(mine.iter().copied().map(addr_text));
        }
    }
    out.list(items, text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::tests::w;

    #[test]
    fn change_in_any_order() {
        let c = parse_change("addr add", &w("10.0.0.1/24 dev v0"), true).unwrap();
        assert_eq!((c.prefix.to_string().as_str(), c.dev.as_str()), ("10.0.0.1/24", "v0"));
        let c = parse_change("addr add", &w("dev v0 fd00::1/64 nodad"), true).unwrap();
        assert!(c.nodad && c.prefix.is_ipv6());
        // No length: a host address, as ip reads it.
        let c = parse_change("addr del", &w("10.0.0.1 dev v0"), false).unwrap();
        assert_eq!(c.prefix.prefix(), 32);
    }

    #[test]
    fn change_usage_errors() {
        for (words, want) in [
            ("dev v0", "missing the address"),
            ("10.0.0.1/24", "missing \"dev NAME\""),
            (
                "10.0.0.1/33 dev v0",
                "\"PREFIX\" wants an address like 10.0.0.1/24, not \"10.0.0.1/33\"",
            ),
            ("bogus dev v0", "unexpected \"bogus\""),
            ("10.0.0.1/24 dev v0 10.0.0.2/24", "unexpected \"10.0.0.2/24\""),
            ("10.0.0.1/24 dev", "\"dev\" needs a value"),
        ] {
            let e = parse_change("addr add", &w(words), true).unwrap_err();
            assert_eq!(e.exit_code(), crate::EXIT_USAGE);
            assert!(e.to_string().contains(want), "{words}: {e}");
        }
        // `nodad` is not a word of `del`.
        assert!(parse_change("addr del", &w("10.0.0.1/24 dev v0 nodad"), false).is_err());
    }

    #[test]
    fn dev_words() {
        assert_eq!(parse_dev("addr show", &[], false).unwrap(), None);
        assert!(parse_dev("addr flush", &[], true).is_err());
        assert_eq!(
            parse_dev("addr flush", &w("dev v0"), true).unwrap().as_deref(),
            Some("v0")
        );
        assert_eq!(parse_dev("addr show", &w("v0"), false).unwrap().as_deref(), Some("v0"));
    }
}
