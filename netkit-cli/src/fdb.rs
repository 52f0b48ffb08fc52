//! `netkit fdb add|append|replace|del|show`: `bridge fdb`'s words turned into netkit-core's
//! [`FdbEntry`], and entries printed as `bridge fdb show` prints them (text, and `-j` keys
//! `mac`, `ifname`, `vlan`, `dst`, `port`, `vni`, `flags`, `master`, `state`).
//!
//! Decisions where `bridge` leaves a choice: `del` of an entry that is not there (or on a
//! device that is not there) is a note and exit 0, as netkit's other `del` verbs (bridge
//! fails); the state words (`permanent`, `static`) are read but mean nothing to `del`, as with
//! bridge. `show` does not print `src_vni`, `via`, `nhid` or `linkNetNsId` (netkit-core does
//! not list them).

use std::net::IpAddr;

use netkit_core::link::LinkKind;
use netkit_core::neigh::{FdbEntry, FdbInfo};
use netkit_core::{Handle, MacAddr};
use serde_json::{json, Map, Value};

use crate::cli::{FdbVerb, Global};
use crate::error::CliError;
use crate::output::{IfNames, Output};
use crate::words::{parse_word, WordReader};
use crate::Session;

/// Run one `fdb` verb in the namespace of `-n` (or the current one).
pub async fn run(session: &mut Session, global: &Global, out: &Output, verb: FdbVerb) -> Result<(), CliError> {
    let h = session.handle(global.netns.as_deref()).await?;
    match verb {
        FdbVerb::Add { args } => h.fdb_add(&parse_change("fdb add", &args.words)?.entry()).await?,
        FdbVerb::Append { args } => h.fdb_append(&parse_change("fdb append", &args.words)?.entry()).await?,
        FdbVerb::Replace { args } => {
            h.fdb_replace(&parse_change("fdb replace", &args.words)?.entry())
                .await?
        }
        FdbVerb::Del { args } => {
            let c = parse_change("fdb del", &args.words)?;
            if !h.fdb_remove(&c.entry()).await? {
                out.note(&format!(
                    "no fdb entry \"{}\" in netns {}: nothing to delete",
                    args.words.join(" "),
                    h.netns()
                ));
            }
        }
        FdbVerb::Show { args } => show(&h, out, parse_show(&args.words)?).await?,
    }
    Ok(())
}

/// Where an entry goes and how long it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdbState {
    /// `permanent` (or `local`): never ages; on a bridge, frames to it are the bridge's own.
    Permanent,
    /// `static`: never ages, forwarded to its port.
    Static,
}

/// What `fdb add|append|replace|del` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbChange {
    /// The MAC address.
    pub mac: MacAddr,
    /// `dev DEV`.
    pub dev: String,
    /// `dst IP` (the remote VTEP of a VXLAN entry).
    pub dst: Option<IpAddr>,
    /// `vni N`.
    pub vni: Option<u32>,
    /// `port N` (also `dst_port`).
    pub port: Option<u16>,
    /// `vlan N`.
    pub vlan: Option<u16>,
    /// `self`.
    pub is_self: bool,
    /// `master`.
    pub master: bool,
    /// The state; `None`: permanent, as `bridge fdb add` assumes.
    pub state: Option<FdbState>,
}

impl FdbChange {
    /// netkit-core's entry.
    pub fn entry(&self) -> FdbEntry {
        let mut e = FdbEntry::new(&self.dev, self.mac);
        if let Some(ip) = self.dst {
            e = e.dst(ip);
        }
        if let Some(v) = self.vni {
            e = e.vni(v);
        }
        if let Some(p) = self.port {
            e = e.port(p);
        }
        if let Some(v) = self.vlan {
            e = e.vlan(v);
        }
        if self.is_self {
            e = e.self_();
        }
        if self.master {
            e = e.master();
        }
        match self.state.unwrap_or(FdbState::Permanent) {
            FdbState::Permanent => e.permanent(),
            FdbState::Static => e.static_(),
        }
    }
}

const CHANGE_WORDS: &str = "MAC, dev, dst, vni, port, vlan, self, master, permanent, local or static";

/// Read `MAC dev DEV [dst IP] [vni N] [port N] [vlan N] [self] [master] [permanent|static]`,
/// in any order.
pub fn parse_change(context: &str, words: &[String]) -> Result<FdbChange, CliError> {
    let mut r = WordReader::new(words, context);
    let (mut mac, mut dev, mut dst, mut vni, mut port, mut vlan) = (None, None, None, None, None, None);
    let (mut is_self, mut master, mut state) = (false, false, None);
    while let Some(w) = r.next() {
        match w {
            "dev" => dev = Some(r.value("dev")?.to_string()),
            "dst" => dst = Some(r.parse("dst", "an IP address")?),
            "vni" => vni = Some(r.parse("vni", "a VNI (0-16777215)")?),
            "port" | "dst_port" => port = Some(r.parse(w, "a UDP port")?),
            "vlan" => vlan = Some(r.parse("vlan", "a VLAN id (1-4094)")?),
            "self" => is_self = true,
            "master" => master = true,
            "permanent" | "local" => state = Some(FdbState::Permanent),
            "static" | "temp" => state = Some(FdbState::Static),
            w if mac.is_none() => {
                mac = Some(parse_word(w, "MAC", "a MAC address").map_err(|_| {
                    r.unexpected(w, &format!("{CHANGE_WORDS}; a MAC address is like 02:00:00:00:00:01"))
                })?)
            }
            w => return Err(r.unexpected(w, CHANGE_WORDS)),
        }
    }
    let mac = mac.ok_or_else(|| r.error("missing the MAC address"))?;
    let dev = dev.ok_or_else(|| r.error("missing \"dev DEV\""))?;
    if let Some(v) = vni.filter(|v: &u32| *v >= 1 << 24) {
        return Err(r.error(format!("VNI {v} is out of range (0-16777215)")));
    }
    Ok(FdbChange {
        mac,
        dev,
        dst,
        vni,
        port,
        vlan,
        is_self,
        master,
        state,
    })
}

/// What `fdb show` lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShowFilter {
    /// `dev DEV` (its entries are printed without the device, as bridge does).
    pub dev: Option<String>,
    /// `br BRIDGE`: the bridge's own entries and its ports'.
    pub br: Option<String>,
}

/// Read `fdb show [dev|brport DEV] [br BRIDGE]`.
pub fn parse_show(words: &[String]) -> Result<ShowFilter, CliError> {
    let mut r = WordReader::new(words, "fdb show");
    let mut f = ShowFilter::default();
    while let Some(w) = r.next() {
        match w {
            "dev" | "brport" => f.dev = Some(r.value(w)?.to_string()),
            "br" => f.br = Some(r.value("br")?.to_string()),
            w => return Err(r.unexpected(w, "dev, brport or br")),
        }
    }
    Ok(f)
}

/// The state as bridge names it: `permanent`, `static`, `stale`, `` (learned), else the bits.
fn state_name(e: &FdbInfo) -> String {
    let s = e.state.bits();
    if s & 0x80 != 0 {
        "permanent".into()
    } else if s & 0x40 != 0 {
        "static".into()
    } else if s & 0x04 != 0 {
        "stale".into()
    } else if s & 0x02 != 0 {
        String::new()
    } else {
        format!("{s:#x}")
    }
}

/// The flags bridge prints, in its order.
fn flag_names(e: &FdbInfo) -> Vec<&'static str> {
    [
        (e.is_self, "self"),
        (e.router, "router"),
        (e.extern_learn, "extern_learn"),
        (e.offloaded, "offload"),
        (e.sticky, "sticky"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

/// `bridge -j fdb show`'s object for one entry (`ifname` left out when the listing is of one
/// device).
pub fn fdb_json(e: &FdbInfo, names: &IfNames, with_dev: bool) -> Value {
    let mut m = Map::new();
    m.insert("mac".into(), json!(e.mac.to_string()));
    if with_dev {
        m.insert("ifname".into(), json!(names.name(e.index)));
    }
    if let Some(v) = e.vlan {
        m.insert("vlan".into(), json!(v));
    }
    if let Some(d) = e.dst {
        m.insert("dst".into(), json!(d.to_string()));
    }
    if let Some(p) = e.port {
        m.insert("port".into(), json!(p));
    }
    if let Some(v) = e.vni {
        m.insert("vni".into(), json!(v));
    }
    m.insert("flags".into(), json!(flag_names(e)));
    if let Some(br) = e.master {
        m.insert("master".into(), json!(names.name(br)));
    }
    m.insert("state".into(), json!(state_name(e)));
    Value::Object(m)
}

/// `bridge fdb show`'s line for one entry.
pub fn fdb_text(e: &FdbInfo, names: &IfNames, with_dev: bool) -> String {
    let mut words = vec![e.mac.to_string()];
    if with_dev {
        words.push(format!("dev {}", names.name(e.index)));
    }
    if let Some(v) = e.vlan {
        words.push(format!("vlan {v}"));
    }
    if let Some(d) = e.dst {
        words.push(format!("dst {d}"));
    }
    if let Some(p) = e.port {
        words.push(format!("port {p}"));
    }
    if let Some(v) = e.vni {
        words.push(format!("vni {v}"));
    }
    words.extend(flag_names(e).into_iter().map(str::to_string));
    if let Some(br) = e.master {
        words.push(format!("master {}", names.name(br)));
    }
    // As bridge: the state last, after a blank even when it is empty (a learned entry).
    format!("{} {}", words.join(" "), state_name(e))
}

async fn show(h: &Handle, out: &Output, filter: ShowFilter) -> Result<(), CliError> {
    let entries = h.fdb_list(filter.dev.as_deref()).await?;
    let links = h.link_list().await?;
    let names = IfNames::of(&links);
    // `br B`, as the kernel filters it: B's own entries (when B is a bridge) and its ports'.
    let br = match &filter.br {
        Some(b) => Some(match links.iter().find(|l| &l.name == b) {
            Some(l) => (l.index, l.kind == LinkKind::Bridge),
            None => (h.link_index(b).await?, false),
        }),
        None => None,
    };
    let master_of = |index: u32| links.iter().find(|l| l.index == index).and_then(|l| l.master);
    let shown = entries.iter().filter(|e| match br {
        None => true,
        Some((b, is_bridge)) => (e.index == b && is_bridge) || master_of(e.index) == Some(b),
    });
    let with_dev = filter.dev.is_none();
    out.list(
        shown.clone().map(|e| fdb_json(e, &names, with_dev)),
        shown.map(|e| fdb_text(e, &names, with_dev)),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::tests::w;
    use netkit_core::neigh::NeighState;

    #[test]
    fn changes_read_like_bridge() {
        let c = parse_change(
            "fdb append",
            &w("00:00:00:00:00:00 dev vx0 dst 10.0.0.2 self permanent"),
        )
        .unwrap();
        assert_eq!(
            c.entry(),
            FdbEntry::new("vx0", MacAddr::default())
                .dst("10.0.0.2".parse().unwrap())
                .self_()
                .permanent()
        );
        let c = parse_change("fdb add", &w("dev v0 02:00:00:00:00:02 master static vlan 5")).unwrap();
        let mac = "02:00:00:00:00:02".parse().unwrap();
        assert_eq!(c.entry(), FdbEntry::new("v0", mac).master().static_().vlan(5));
        // No state: permanent, as bridge assumes.
        let c = parse_change("fdb add", &w("02:00:00:00:00:02 dev vx0 dst 10.0.0.3 vni 7 port 4790")).unwrap();
        assert_eq!(
            c.entry(),
            FdbEntry::new("vx0", mac)
                .dst("10.0.0.3".parse().unwrap())
                .vni(7)
                .port(4790)
                .permanent()
        );
    }

    #[test]
    fn change_usage_errors_name_the_word() {
        for (words, want) in [
            ("dev vx0", "missing the MAC address"),
            ("00:00:00:00:00:00", "missing \"dev DEV\""),
            ("00:00:00:00:00:zz dev vx0", "unexpected \"00:00:00:00:00:zz\""),
            ("00:00:00:00:00:00 dev vx0 dst nowhere", "\"dst\" wants an IP address"),
            ("00:00:00:00:00:00 dev vx0 dst", "\"dst\" needs a value"),
            ("00:00:00:00:00:00 dev vx0 vni 16777216", "out of range"),
            ("00:00:00:00:00:00 dev vx0 port 70000", "\"port\" wants a UDP port"),
            ("00:00:00:00:00:00 dev vx0 sideways", "unexpected \"sideways\""),
        ] {
            let e = parse_change("fdb add", &w(words)).unwrap_err();
            assert_eq!(e.exit_code(), crate::EXIT_USAGE, "{words}");
            assert!(e.to_string().starts_with("fdb add: "), "{words}: {e}");
            assert!(e.to_string().contains(want), "{words}: {e}");
        }
        assert_eq!(parse_show(&w("br br0 dev v0")).unwrap().br.as_deref(), Some("br0"));
        assert!(parse_show(&w("vlan 1")).is_err());
    }

    #[test]
    fn printed_as_bridge_prints_them() {
        let names = IfNames::default();
        let entry = FdbInfo {
            index: 4,
            mac: MacAddr::default(),
            dst: Some("10.77.0.2".parse().unwrap()),
            vlan: None,
            vni: None,
            master: None,
            is_self: true,
            permanent: true,
            state: NeighState::from_bits(0xc0),
            port: None,
            router: false,
            extern_learn: false,
            offloaded: false,
            sticky: false,
        };
        assert_eq!(
            fdb_text(&entry, &names, true),
            "00:00:00:00:00:00 dev if4 dst 10.77.0.2 self permanent"
        );
        assert_eq!(
            fdb_json(&entry, &names, true),
            json!({"mac": "00:00:00:00:00:00", "ifname": "if4", "dst": "10.77.0.2", "flags": ["self"],
                   "state": "permanent"})
        );
        let learned = FdbInfo {
            dst: None,
            master: Some(3),
            is_self: false,
            permanent: false,
            state: NeighState::Reachable,
            ..entry.clone()
        };
        assert_eq!(fdb_text(&learned, &names, false), "00:00:00:00:00:00 master if3 ");
        assert_eq!(fdb_json(&learned, &names, false)["state"], "");
        assert_eq!(
            state_name(&FdbInfo {
                state: NeighState::from_bits(0x42),
                ..entry
            }),
            "static"
        );
    }
}
