//! `netkit route add|replace|del|show|get`: iproute2's words turned into netkit-core's
//! [`Route`], and routes printed as `ip route` prints them.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netkit_core::route::{protocol, RouteKind, TABLE_DEFAULT, TABLE_LOCAL, TABLE_MAIN};
use netkit_core::{Handle, IpFamily, Route};
use serde_json::Value;

use crate::cli::{Global, RouteVerb};
use crate::error::CliError;
use crate::output::{route_json, route_text, IfNames, Output, RouteFilter};
use crate::words::{parse_word, WordReader};
use crate::Session;

/// Run one `route` verb in the namespace of `-n` (or the current one).
pub async fn run(session: &mut Session, global: &Global, out: &Output, verb: RouteVerb) -> Result<(), CliError> {
    let h = session.handle(global.netns.as_deref()).await?;
    let family = crate::family(global);
    match verb {
        RouteVerb::Add { args } => {
            h.route_add(&parse_route("route add", &args.words, family)?).await?;
        }
        RouteVerb::Replace { args } => {
            h.route_replace(&parse_route("route replace", &args.words, family)?)
                .await?;
        }
        RouteVerb::Del { args } => {
            h.route_del(&parse_route("route del", &args.words, family)?).await?;
        }
        RouteVerb::Show { args } => show(&h, out, parse_show(&args.words)?, family).await?,
        RouteVerb::Get { args } => get(&h, out, parse_get(&args.words)?).await?,
    }
    Ok(())
}

const ROUTE_WORDS: &str = "PREFIX, default, via, dev, table, metric, onlink, src, proto or mtu";

/// Read the table after keyword `key` (`table`, or `lookup` in `rule add`): `main`, `local`,
/// `default` or a number.
pub(crate) fn parse_table(r: &mut WordReader<'_>, key: &str) -> Result<u32, CliError> {
    match r.value(key)? {
        "main" => Ok(TABLE_MAIN),
        "local" => Ok(TABLE_LOCAL),
        "default" => Ok(TABLE_DEFAULT),
        n => parse_word(n, key, "main, local, default or a number").map_err(|e| r.error(e)),
    }
}

/// Read the words of `route add|replace|del`: `[blackhole|unreachable|prohibit] PREFIX|default
/// [via GW] [dev D] [table T] [metric N] [onlink] [src IP] [proto P] [mtu N]`. `default` is
/// IPv6 with `-6` or an IPv6 gateway or source, else IPv4.
pub fn parse_route(context: &str, words: &[String], family: Option<IpFamily>) -> Result<Route, CliError> {
    let mut r = WordReader::new(words, context);
    let mut dst: Option<Option<IpNetwork>> = None;
    let (mut via, mut dev, mut table, mut metric, mut onlink) = (None::<IpAddr>, None, None, None, false);
    let (mut src, mut proto, mut mtu, mut kind) = (None::<IpAddr>, None, None, None);
    while let Some(w) = r.next() {
        match w {
            "via" => via = Some(r.parse("via", "a gateway address")?),
            "dev" | "oif" => dev = Some(r.value(w)?.to_string()),
            "table" => table = Some(parse_table(&mut r, "table")?),
            "metric" | "priority" | "preference" => metric = Some(r.parse(w, "a number")?),
            "onlink" => onlink = true,
            "src" => src = Some(r.parse("src", "an address of this namespace")?),
            "proto" => {
                proto = Some(match r.value("proto")? {
                    "static" => protocol::STATIC,
                    "boot" => protocol::BOOT,
                    "kernel" => protocol::KERNEL,
                    "dhcp" => protocol::DHCP,
                    "ra" => protocol::RA,
                    n => {
                        parse_word(n, "proto", "static, boot, kernel, dhcp, ra or a number").map_err(|e| r.error(e))?
                    }
                })
            }
            "mtu" => mtu = Some(r.parse("mtu", "a number")?),
            "blackhole" | "unreachable" | "prohibit" if dst.is_none() && kind.is_none() => {
                kind = Some(match w {
                    "blackhole" => RouteKind::Blackhole,
                    "unreachable" => RouteKind::Unreachable,
                    _ => RouteKind::Prohibit,
                })
            }
            "default" if dst.is_none() => dst = Some(None),
            w if dst.is_none() => {
                dst = Some(Some(r.positional(
                    w,
                    "PREFIX",
                    "a prefix like 10.0.0.0/24",
                    ROUTE_WORDS,
                )?));
            }
            w => return Err(r.unexpected(w, ROUTE_WORDS)),
        }
    }
    let dst = dst.ok_or_else(|| r.error("missing the destination (PREFIX or default)"))?;
    let v6 = |ip: Option<IpAddr>| ip.is_some_and(|ip| ip.is_ipv6());
    let mut route = match dst {
        Some(net) => Route::new(net),
        None if family == Some(IpFamily::V6) || (family.is_none() && (v6(via) || v6(src))) => Route::default_v6(),
        None => Route::default_v4(),
    };
    if let Some(f) = family.filter(|f| *f != route.family()) {
        return Err(r.error(format!("{} is not an {f} destination", route.dst())));
    }
    if let Some(gw) = via {
        route = route.gateway(gw);
    }
    if let Some(d) = &dev {
        route = route.dev(d);
    }
    if let Some(t) = table {
        route = route.table(t);
    }
    if let Some(m) = metric {
        route = route.metric(m);
    }
    if onlink {
        route = route.onlink();
    }
    if let Some(s) = src {
        route = route.prefsrc(s);
    }
    if let Some(p) = proto {
        route = route.protocol(p);
    }
    if let Some(m) = mtu {
        route = route.mtu(m);
    }
    if let Some(k) = kind {
        route = route.kind(k);
    }
    Ok(route)
}

/// What `route show` filters on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShowFilter {
    /// `table T`; `None` for `table all`. Default: main.
    pub table: Option<u32>,
    /// `dev NAME`.
    pub dev: Option<String>,
}

/// Read `route show [table main|local|all|N] [dev NAME]`.
pub fn parse_show(words: &[String]) -> Result<ShowFilter, CliError> {
    let mut r = WordReader::new(words, "route show");
    let mut f = ShowFilter {
        table: Some(TABLE_MAIN),
        dev: None,
    };
    while let Some(w) = r.next() {
        match w {
            "table" if r.peek() == Some("all") => {
                r.next();
                f.table = None;
            }
            "table" => f.table = Some(parse_table(&mut r, "table")?),
            "dev" => f.dev = Some(r.value("dev")?.to_string()),
            w => return Err(r.unexpected(w, "table or dev")),
        }
    }
    Ok(f)
}

/// Read `route get [to] ADDRESS`.
pub fn parse_get(words: &[String]) -> Result<IpAddr, CliError> {
    let mut r = WordReader::new(words, "route get");
    let addr = match r.next() {
        Some("to") => r.parse("to", "an address")?,
        Some(w) => parse_word(w, "ADDRESS", "an address").map_err(|e| r.error(e))?,
        None => return Err(r.error("missing the ADDRESS")),
    };
    r.finish("nothing after the address")?;
    Ok(addr)
}

/// Print the routes of a family: as `ip route show`, IPv4 unless `-6`, except that `table all`
/// without `-4`/`-6` lists both.
async fn show(h: &Handle, out: &Output, filter: ShowFilter, family: Option<IpFamily>) -> Result<(), CliError> {
    let family = match (family, filter.table) {
        (Some(f), _) => Some(f),
        (None, Some(_)) => Some(IpFamily::V4),
        (None, None) => None,
    };
    let links = h.link_list().await?;
    // The device's index comes from the listing netkit reads anyway (asked by name only to
    // get the kernel's error when it is not there).
    let oif = match &filter.dev {
        Some(d) => Some(match links.iter().find(|l| &l.name == d) {
            Some(l) => l.index,
            None => h.link_index(d).await?,
        }),
        None => None,
    };
    let routes = h.route_list(family, filter.table).await?;
    let names = IfNames::of(&links);
    let shown = routes.iter().filter(|r| oif.is_none() || r.oif == oif);
    // As ip: what the listing filtered on is not repeated on every route.
    let view = RouteFilter {
        table: filter.table.is_some(),
        dev: oif.is_some(),
    };
    out.list(
        shown.clone().map(|r| route_json(r, &names, view)),
        shown.map(|r| route_text(r, &names, view)),
    );
    Ok(())
}

/// Print the route the kernel picks for `addr`, as `ip route get` (no protocol or scope: the
/// answer is a lookup result, which `ip` prints without them).
async fn get(h: &Handle, out: &Output, addr: IpAddr) -> Result<(), CliError> {
    let mut r = h.route_get(addr).await?;
    r.protocol = protocol::BOOT;
    r.scope = netkit_core::route::RouteScope::Universe;
    let names = IfNames::of(&h.link_list().await?);
    let view = RouteFilter::default();
    if out.json {
        out.json(&Value::Array(vec![route_json(&r, &names, view)]));
    } else {
        out.text(&route_text(&r, &names, view));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::tests::w;

    #[test]
    fn routes_read_like_ip() {
        let r = parse_route("route add", &w("default via 10.0.0.1 dev v0 metric 100 onlink"), None).unwrap();
        assert_eq!(r.to_string(), "default via 10.0.0.1 dev v0 metric 100 onlink");
        let r = parse_route("route add", &w("10.1.0.7/16 via 10.0.0.1 table 100"), None).unwrap();
        assert_eq!(r.to_string(), "10.1.0.0/16 via 10.0.0.1 table 100");
        let r = parse_route("route add", &w("default via fd00::1"), None).unwrap();
        assert_eq!(r.family(), IpFamily::V6);
        let r = parse_route("route add", &w("default dev v0"), Some(IpFamily::V6)).unwrap();
        assert_eq!(r.dst().to_string(), "::/0");
        let r = parse_route("route add", &w("blackhole 10.9.0.0/16"), None).unwrap();
        assert_eq!(r.to_string(), "blackhole 10.9.0.0/16");
    }

    #[test]
    fn route_usage_errors() {
        for (words, want) in [
            ("", "missing the destination"),
            ("via 10.0.0.1", "missing the destination"),
            ("default via", "\"via\" needs a value"),
            ("default via nowhere", "\"via\" wants a gateway address"),
            ("default table x", "\"table\" wants main, local, default or a number"),
            (
                "10.0.0.0/33",
                "\"PREFIX\" wants a prefix like 10.0.0.0/24, not \"10.0.0.0/33\"",
            ),
            ("default 10.0.0.0/8", "unexpected \"10.0.0.0/8\""),
            ("default metric -1", "\"metric\" wants a number"),
        ] {
            let e = parse_route("route add", &w(words), None).unwrap_err();
            assert_eq!(e.exit_code(), crate::EXIT_USAGE, "{words}");
            assert!(e.to_string().contains(want), "{words}: {e}");
        }
        assert!(parse_route("route add", &w("10.0.0.0/8"), Some(IpFamily::V6)).is_err());
    }

    #[test]
    fn show_and_get_words() {
        assert_eq!(parse_show(&[]).unwrap().table, Some(TABLE_MAIN));
        assert_eq!(parse_show(&w("table all")).unwrap().table, None);
        assert_eq!(parse_show(&w("table 100 dev v0")).unwrap().dev.as_deref(), Some("v0"));
        assert!(parse_show(&w("sideways")).is_err());
        assert_eq!(parse_get(&w("to 10.0.0.1")).unwrap().to_string(), "10.0.0.1");
        assert!(parse_get(&[]).is_err());
        assert!(parse_get(&w("10.0.0.1 10.0.0.2")).is_err());
    }
}
