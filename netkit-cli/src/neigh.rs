//! `netkit neigh add|replace|del|show`: iproute2's neighbour words turned into netkit-core's
//! [`Neighbour`], and entries printed as `ip neigh show` prints them (text, and `-j` keys
//! `dst`, `dev`, `lladdr`, `router`, `proxy` and the `state` array).
//!
//! Decisions where `ip` leaves a choice: `del` of an entry that is not there (or on a device
//! that is not there) is a note and exit 0, as netkit's `addr del` and `link del` (ip fails
//! with "No such file or directory"); a non-proxy entry needs `lladdr` (netkit-core's entries
//! always carry one); `show` filters on `dev`, `proxy` and `nud all` only, and does not print
//! `extern_learn`/`offload`/`managed` (netkit-core does not list them).

use std::net::IpAddr;

use netkit_core::neigh::{Family, NeighInfo, NeighState, Neighbour};
use netkit_core::{Handle, IpFamily, MacAddr};
use serde_json::{json, Map, Value};

use crate::cli::{Global, NeighVerb};
use crate::error::CliError;
use crate::output::{IfNames, Output};
use crate::words::{parse_word, WordReader};
use crate::Session;

/// Run one `neigh` verb in the namespace of `-n` (or the current one).
pub async fn run(session: &mut Session, global: &Global, out: &Output, verb: NeighVerb) -> Result<(), CliError> {
    let h = session.handle(global.netns.as_deref()).await?;
    let family = crate::family(global);
    match verb {
        NeighVerb::Add { args } => {
            h.neigh_add(&parse_change("neigh add", &args.words, family)?.entry())
                .await?
        }
        NeighVerb::Replace { args } => {
            h.neigh_replace(&parse_change("neigh replace", &args.words, family)?.entry())
                .await?
        }
        NeighVerb::Del { args } => {
            let c = parse_del(&args.words, family)?;
            if !h.neigh_remove(&c.dev, c.addr, c.proxy).await? {
                let what = if c.proxy { "proxy entry" } else { "neighbour" };
                out.note(&format!(
                    "no {what} {} on dev {:?} in netns {}: nothing to delete",
                    c.addr,
                    c.dev,
                    h.netns()
                ));
            }
        }
        NeighVerb::Show { args } => show(&h, out, parse_show(&args.words)?, family).await?,
    }
    Ok(())
}

/// What `neigh add|replace|del` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighChange {
    /// The neighbour's address.
    pub addr: IpAddr,
    /// `dev DEV`.
    pub dev: String,
    /// `lladdr MAC` (none for a proxy entry, and for `del`).
    pub mac: Option<MacAddr>,
    /// `nud STATE` (default permanent).
    pub state: NeighState,
    /// `router`.
    pub router: bool,
    /// `proxy`: an entry the kernel answers ARP/NDP for.
    pub proxy: bool,
}

impl NeighChange {
    /// netkit-core's entry for `add`/`replace`.
    pub fn entry(&self) -> Neighbour {
        let n = match self.mac {
            Some(mac) if !self.proxy => Neighbour::new(&self.dev, self.addr, mac).state(self.state),
            _ => Neighbour::new_proxy(&self.dev, self.addr),
        };
        if self.router {
            n.router()
        } else {
            n
        }
    }
}

const CHANGE_WORDS: &str = "ADDR, to, lladdr, dev, nud, router or proxy";

/// Read `[to] ADDR lladdr MAC dev DEV [nud STATE] [router] [proxy]`, in any order.
pub fn parse_change(context: &str, words: &[String], family: Option<IpFamily>) -> Result<NeighChange, CliError> {
    let mut r = WordReader::new(words, context);
    let (mut addr, mut dev, mut mac, mut state) = (None, None, None, None);
    let (mut router, mut proxy) = (false, false);
    while let Some(w) = r.next() {
        match w {
            "to" => addr = Some(r.parse("to", "an IP address")?),
            "lladdr" => mac = Some(r.parse("lladdr", "a MAC address like 02:00:00:00:00:01")?),
            "dev" => dev = Some(r.value("dev")?.to_string()),
            "nud" => {
                state = Some(match r.value("nud")? {
                    "permanent" => NeighState::Permanent,
                    "reachable" => NeighState::Reachable,
                    "stale" => NeighState::Stale,
                    "noarp" => NeighState::Noarp,
                    other => {
                        return Err(r.error(format!(
                            "\"nud\" wants permanent, reachable, stale or noarp, not \"{other}\""
                        )))
                    }
                })
            }
            "router" => router = true,
            "proxy" => proxy = true,
            w if addr.is_none() => {
                addr = Some(parse_word(w, "ADDR", "an IP address").map_err(|_| r.unexpected(w, CHANGE_WORDS))?)
            }
            w => return Err(r.unexpected(w, CHANGE_WORDS)),
        }
    }
    let addr = addr.ok_or_else(|| r.error("missing the neighbour's address (ADDR)"))?;
    let dev = dev.ok_or_else(|| r.error("missing \"dev DEV\""))?;
    check_family(&r, addr, family)?;
    if proxy && (mac.is_some() || state.is_some()) {
        return Err(r.error("a proxy entry takes no lladdr or nud"));
    }
    if !proxy && mac.is_none() {
        return Err(r.error("missing \"lladdr MAC\" (or \"proxy\" for a proxy entry)"));
    }
    Ok(NeighChange {
        addr,
        dev,
        mac,
        state: state.unwrap_or(NeighState::Permanent),
        router,
        proxy,
    })
}

/// Read `neigh del [proxy] [to] ADDR dev DEV`.
pub fn parse_del(words: &[String], family: Option<IpFamily>) -> Result<NeighChange, CliError> {
    let mut r = WordReader::new(words, "neigh del");
    let (mut addr, mut dev, mut proxy) = (None, None, false);
    while let Some(w) = r.next() {
        match w {
            "to" => addr = Some(r.parse("to", "an IP address")?),
            "dev" => dev = Some(r.value("dev")?.to_string()),
            "proxy" => proxy = true,
            w if addr.is_none() => {
                addr = Some(parse_word(w, "ADDR", "an IP address").map_err(|_| r.unexpected(w, "ADDR, dev or proxy"))?)
            }
            w => return Err(r.unexpected(w, "dev or proxy")),
        }
    }
    let addr = addr.ok_or_else(|| r.error("missing the neighbour's address (ADDR)"))?;
    let dev = dev.ok_or_else(|| r.error("missing \"dev DEV\""))?;
    check_family(&r, addr, family)?;
    Ok(NeighChange {
        addr,
        dev,
        mac: None,
        state: NeighState::None,
        router: false,
        proxy,
    })
}

fn check_family(r: &WordReader<'_>, addr: IpAddr, family: Option<IpFamily>) -> Result<(), CliError> {
    match family {
        Some(f) if IpFamily::of(addr) != f => Err(r.error(format!("{addr} is not an {f} address"))),
        _ => Ok(()),
    }
}

/// What `neigh show` lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShowFilter {
    /// `dev DEV` (its entries are printed without `dev`, as ip does).
    pub dev: Option<String>,
    /// `proxy`: the proxy entries instead of the others.
    pub proxy: bool,
    /// `nud all`: also the NOARP-only and stateless entries ip hides by default.
    pub all: bool,
}

/// Read `neigh show [dev DEV] [proxy] [nud all]`.
pub fn parse_show(words: &[String]) -> Result<ShowFilter, CliError> {
    let mut r = WordReader::new(words, "neigh show");
    let mut f = ShowFilter::default();
    while let Some(w) = r.next() {
        match w {
            "dev" => f.dev = Some(r.value("dev")?.to_string()),
            "proxy" => f.proxy = true,
            "nud" => match r.value("nud")? {
                "all" => f.all = true,
                other => return Err(r.error(format!("\"nud\" wants all, not \"{other}\""))),
            },
            w => return Err(r.unexpected(w, "dev, proxy or nud all")),
        }
    }
    Ok(f)
}

/// The NUD bits and the names ip prints for them, in its order.
const STATES: [(u16, &str); 8] = [
    (0x01, "INCOMPLETE"),
    (0x02, "REACHABLE"),
    (0x04, "STALE"),
    (0x08, "DELAY"),
    (0x10, "PROBE"),
    (0x20, "FAILED"),
    (0x40, "NOARP"),
    (0x80, "PERMANENT"),
];

/// ip's default filter: entries in some state other than NOARP alone (proxies are listed by
/// `proxy`).
fn shown(n: &NeighInfo, f: &ShowFilter) -> bool {
    const NOARP: u16 = 0x40;
    if f.proxy || n.proxy {
        return f.proxy && n.proxy;
    }
    f.all || n.state.bits() & 0xff & !NOARP != 0
}

fn state_names(n: &NeighInfo) -> Vec<&'static str> {
    STATES
        .iter()
        .filter(|(bit, _)| n.state.bits() & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// `ip -j neigh show`'s object for one entry (`dev` left out when the listing is of one).
pub fn neigh_json(n: &NeighInfo, names: &IfNames, with_dev: bool) -> Value {
    let mut m = Map::new();
    m.insert("dst".into(), json!(n.ip.to_string()));
    if with_dev {
        m.insert("dev".into(), json!(names.name(n.index)));
    }
    if let Some(mac) = n.mac {
        m.insert("lladdr".into(), json!(mac.to_string()));
    }
    if n.router {
        m.insert("router".into(), Value::Null);
    }
    if n.proxy {
        m.insert("proxy".into(), Value::Null);
    }
    if n.state.bits() != 0 {
        m.insert("state".into(), json!(state_names(n)));
    }
    Value::Object(m)
}

/// `ip neigh show`'s line for one entry (every word followed by a blank, as ip prints it).
pub fn neigh_text(n: &NeighInfo, names: &IfNames, with_dev: bool) -> String {
    let mut words = vec![n.ip.to_string()];
    if with_dev {
        words.push(format!("dev {}", names.name(n.index)));
    }
    if let Some(mac) = n.mac {
        words.push(format!("lladdr {mac}"));
    }
    if n.router {
        words.push("router".into());
    }
    if n.proxy {
        words.push("proxy".into());
    }
    words.extend(state_names(n).into_iter().map(str::to_string));
    words.iter().map(|w| format!("{w} ")).collect()
}

async fn show(h: &Handle, out: &Output, filter: ShowFilter, family: Option<IpFamily>) -> Result<(), CliError> {
    let family = family.map(|f| match f {
        IpFamily::V4 => Family::V4,
        IpFamily::V6 => Family::V6,
    });
    let entries = h.neigh_list(filter.dev.as_deref(), family).await?;
    let names = IfNames::of(&h.link_list().await?);
    let with_dev = filter.dev.is_none();
    let entries = entries.iter().filter(|n| shown(n, &filter));
    out.list(
        entries.clone().map(|n| neigh_json(n, &names, with_dev)),
        entries.map(|n| neigh_text(n, &names, with_dev)),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::tests::w;

    #[test]
    fn changes_read_like_ip() {
        let c = parse_change("neigh add", &w("10.0.0.2 lladdr 02:00:00:00:00:02 dev v0"), None).unwrap();
        assert_eq!(
            c.entry(),
            Neighbour::new("v0", "10.0.0.2".parse().unwrap(), "02:00:00:00:00:02".parse().unwrap())
        );
        let c = parse_change(
            "neigh replace",
            &w("dev v0 to fd00::2 nud reachable router lladdr 02:00:00:00:00:03"),
            Some(IpFamily::V6),
        )
        .unwrap();
        assert_eq!((c.state, c.router, c.proxy), (NeighState::Reachable, true, false));
        // `proxy ADDR` (ip's order) and `ADDR proxy` both make a proxy entry.
        for words in ["proxy 10.0.0.9 dev v0", "10.0.0.9 dev v0 proxy"] {
            let c = parse_change("neigh add", &w(words), None).unwrap();
            assert_eq!(c.entry(), Neighbour::new_proxy("v0", "10.0.0.9".parse().unwrap()));
        }
        let d = parse_del(&w("proxy 10.0.0.9 dev v0"), None).unwrap();
        assert!(d.proxy && d.dev == "v0");
    }

    #[test]
    fn change_usage_errors_name_the_word() {
        for (words, want) in [
            ("10.0.0.2 lladdr 02:00:00:00:00:02", "missing \"dev DEV\""),
            ("lladdr 02:00:00:00:00:02 dev v0", "missing the neighbour's address"),
            ("10.0.0.2 dev v0", "missing \"lladdr MAC\""),
            ("10.0.0.2 lladdr 02:00:zz dev v0", "\"lladdr\" wants a MAC address"),
            ("10.0.0.2 lladdr", "\"lladdr\" needs a value"),
            (
                "10.0.0.2 lladdr 02:00:00:00:00:02 dev v0 nud sleepy",
                "\"nud\" wants permanent",
            ),
            ("10.0.0.2 10.0.0.3", "unexpected \"10.0.0.3\""),
            ("10.0.0.300 dev v0", "unexpected \"10.0.0.300\""),
            (
                "proxy 10.0.0.9 dev v0 lladdr 02:00:00:00:00:02",
                "a proxy entry takes no lladdr",
            ),
        ] {
            let e = parse_change("neigh add", &w(words), None).unwrap_err();
            assert_eq!(e.exit_code(), crate::EXIT_USAGE, "{words}");
            assert!(e.to_string().contains(want), "{words}: {e}");
        }
        let e = parse_change(
            "neigh add",
            &w("10.0.0.2 lladdr 02:00:00:00:00:02 dev v0"),
            Some(IpFamily::V6),
        );
        assert!(e.unwrap_err().to_string().contains("is not an"));
        assert!(parse_del(&w("10.0.0.2"), None).is_err());
        assert!(parse_del(&w("10.0.0.2 dev v0 lladdr 02:00:00:00:00:02"), None).is_err());
    }

    #[test]
    fn show_filters_and_printing() {
        assert_eq!(parse_show(&w("dev v0 proxy")).unwrap().dev.as_deref(), Some("v0"));
        assert!(parse_show(&w("nud all")).unwrap().all);
        assert!(parse_show(&w("nud stale")).is_err());
        assert!(parse_show(&w("sideways")).is_err());

        let entry = |bits: u16, proxy: bool| NeighInfo {
            index: 1,
            ip: "10.0.0.2".parse().unwrap(),
            mac: (!proxy).then(|| "02:00:00:00:00:02".parse().unwrap()),
            state: NeighState::from_bits(bits),
            proxy,
            router: false,
        };
        let plain = ShowFilter::default();
        assert!(shown(&entry(0x80, false), &plain));
        assert!(!shown(&entry(0x40, false), &plain));
        assert!(shown(
            &entry(0x40, false),
            &ShowFilter {
                all: true,
                ..plain.clone()
            }
        ));
        assert!(!shown(&entry(0, true), &plain));
        assert!(shown(
            &entry(0, true),
            &ShowFilter {
                proxy: true,
                ..plain.clone()
            }
        ));

        let names = IfNames::default();
        let n = entry(0x80, false);
        assert_eq!(
            neigh_text(&n, &names, true),
            "10.0.0.2 dev if1 lladdr 02:00:00:00:00:02 PERMANENT "
        );
        assert_eq!(
            neigh_json(&n, &names, false),
            json!({"dst": "10.0.0.2", "lladdr": "02:00:00:00:00:02", "state": ["PERMANENT"]})
        );
        let p = NeighInfo {
            router: true,
            ..entry(0, true)
        };
        assert_eq!(neigh_text(&p, &names, true), "10.0.0.2 dev if1 router proxy ");
        assert_eq!(
            neigh_json(&p, &names, true),
            json!({"dst": "10.0.0.2", "dev": "if1", "router": null, "proxy": null})
        );
    }
}
