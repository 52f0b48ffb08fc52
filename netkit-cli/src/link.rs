//! `netkit link add|set|del|show`: iproute2's words turned into netkit-core's link specs
//! ([`Veth`], [`Bridge`], [`Vxlan`], [`Macvlan`], [`IpIp`], [`TunTap`]) and
//! [`netkit_core::link::LinkSet`].
//!
//! A kind the running kernel has no driver for (ipip, on some kernels) fails with exit 1 and
//! netkit-core's one line: `link kind "ipip" is not supported by this kernel (creating "t0" in
//! netns …)`.

use std::net::{IpAddr, Ipv4Addr};

use netkit_core::link::{Bridge, IpIp, LinkCommon, Macvlan, MacvlanMode, TunTap, TunTapMode, Veth, Vxlan, WithCommon};
use netkit_core::{Handle, LinkSpec, MacAddr, NetNs, NetnsError};

use crate::cli::{Global, LinkVerb};
use crate::error::CliError;
use crate::output::{link_text, IfNames, LinkJson, Output};
use crate::words::WordReader;
use crate::Session;

/// Run one `link` verb in the namespace of `-n` (or the current one).
pub async fn run(session: &mut Session, global: &Global, out: &Output, verb: LinkVerb) -> Result<(), CliError> {
    let h = session.handle(global.netns.as_deref()).await?;
    match verb {
        LinkVerb::Add { name, args } => add(&h, parse_add(&name, &args.words)?).await,
        LinkVerb::Set { name, args } => {
            let (name, changes) = parse_set(&name, &args.words)?;
            set(&h, &name, changes).await
        }
        LinkVerb::Del { name } => del(&h, out, &name).await,
        LinkVerb::Show { args } => show(&h, out, parse_show(&args.words)?).await,
    }
}

/// What `link add NAME …` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct AddRequest {
    /// The new link's name.
    pub name: String,
    /// `mtu N`.
    pub mtu: Option<u32>,
    /// `address MAC`.
    pub mac: Option<MacAddr>,
    /// The kind and its settings.
    pub kind: Kind,
}

/// The kinds `link add` makes, with their words.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `type veth peer [name] PEER [netns NS] [address MAC]`
    Veth {
        /// The peer's name.
        peer: String,
        /// The namespace the peer is born in.
        peer_netns: Option<String>,
        /// The peer's MAC address.
        peer_mac: Option<MacAddr>,
    },
    /// `type bridge [stp_state 0|1] [vlan_filtering 0|1]`
    Bridge {
        /// `stp_state`.
        stp: Option<bool>,
        /// `vlan_filtering`.
        vlan_filtering: Option<bool>,
    },
    /// `type vxlan id VNI [dstport P] [local IP] [remote IP] [dev D] [ttl N] [nolearning]`
    Vxlan {
        /// `id`.
        vni: u32,
        /// `dstport`.
        port: Option<u16>,
        /// `local`.
        local: Option<IpAddr>,
        /// `remote` (or `group`).
        remote: Option<IpAddr>,
        /// `dev` (or `link` before `type`).
        dev: Option<String>,
        /// `ttl`.
        ttl: Option<u8>,
        /// `learning` / `nolearning`.
        learning: Option<bool>,
    },
    /// `type macvlan dev D [mode M]` (or `link D` before `type`).
    Macvlan {
        /// The parent device.
        dev: String,
        /// The mode (default bridge).
        mode: MacvlanMode,
    },
    /// `type ipip [local IP] [remote IP] [dev D] [ttl N]` (or `link D` before `type`): an
    /// IPv4-in-IPv4 tunnel.
    IpIp {
        /// `local`.
        local: Option<Ipv4Addr>,
        /// `remote`.
        remote: Option<Ipv4Addr>,
        /// `dev` (or `link` before `type`): the underlay device.
        dev: Option<String>,
        /// `ttl`.
        ttl: Option<u8>,
    },
    /// `type tun|tap [user UID] [group GID]`
    TunTap {
        /// Tun or tap.
        mode: TunTapMode,
        /// `user`.
        user: Option<u32>,
        /// `group`.
        group: Option<u32>,
    },
}

const ADD_FIRST: &str = "mtu, address, link or type";
const KINDS: &str = "veth, bridge, vxlan, macvlan, ipip, tun or tap";

/// Read the words of `link add NAME …`.
pub fn parse_add(name: &str, words: &[String]) -> Result<AddRequest, CliError> {
    let mut r = WordReader::new(words, format!("link add {name}"));
    let (mut mtu, mut mac, mut link) = (None, None, None);
    let kind = loop {
        match r.next() {
            None => return Err(r.error(format!("missing \"type KIND\" ({KINDS})"))),
            Some("mtu") => mtu = Some(r.parse("mtu", "a number")?),
            Some("address") => mac = Some(r.parse("address", "a MAC address")?),
            Some("link") => link = Some(r.value("link")?.to_string()),
            Some("type") => break r.value("type")?,
            Some(w) => return Err(r.unexpected(w, ADD_FIRST)),
        }
    };
    let kind = match kind {
        "veth" => parse_veth(&mut r)?,
        "bridge" => parse_bridge(&mut r)?,
        "vxlan" => parse_vxlan(&mut r, link.take())?,
        "macvlan" => parse_macvlan(&mut r, link.take())?,
        "ipip" => parse_ipip(&mut r, link.take())?,
        "tun" => parse_tuntap(&mut r, TunTapMode::Tun)?,
        "tap" => parse_tuntap(&mut r, TunTapMode::Tap)?,
        other => return Err(r.error(format!("unknown type \"{other}\" (known: {KINDS})"))),
    };
    if link.is_some() {
        return Err(r.error("\"link\" only goes with type vxlan, macvlan or ipip"));
    }
    Ok(AddRequest {
        name: name.to_string(),
        mtu,
        mac,
        kind,
    })
}

fn parse_veth(r: &mut WordReader<'_>) -> Result<Kind, CliError> {
    match r.next() {
        Some("peer") => {}
        Some(w) => return Err(r.unexpected(w, "peer")),
        None => return Err(r.error("type veth needs \"peer name PEER\"")),
    }
    let peer = match r.next() {
        Some("name") => r.value("name")?,
        Some(w) => w,
        None => return Err(r.error("\"peer\" needs a name")),
    };
    let (mut peer_netns, mut peer_mac) = (None, None);
    while let Some(w) = r.next() {
        match w {
            "netns" => peer_netns = Some(r.value("netns")?.to_string()),
            "address" => peer_mac = Some(r.parse("address", "a MAC address")?),
            w => return Err(r.unexpected(w, "netns or address (of the peer)")),
        }
    }
    Ok(Kind::Veth {
        peer: peer.to_string(),
        peer_netns,
        peer_mac,
    })
}

fn parse_bridge(r: &mut WordReader<'_>) -> Result<Kind, CliError> {
    let (mut stp, mut vlan_filtering) = (None, None);
    while let Some(w) = r.next() {
        match w {
            "stp_state" => stp = Some(r.on_off("stp_state")?),
            "vlan_filtering" => vlan_filtering = Some(r.on_off("vlan_filtering")?),
            w => return Err(r.unexpected(w, "stp_state or vlan_filtering")),
        }
    }
    Ok(Kind::Bridge { stp, vlan_filtering })
}

fn parse_vxlan(r: &mut WordReader<'_>, link: Option<String>) -> Result<Kind, CliError> {
    let (mut vni, mut port, mut local, mut remote, mut dev, mut ttl, mut learning) =
        (None, None, None, None, link, None, None);
    while let Some(w) = r.next() {
        match w {
            "id" | "vni" => vni = Some(r.parse(w, "a VNI (0-16777215)")?),
            "dstport" => port = Some(r.parse("dstport", "a UDP port")?),
            "local" => local = Some(r.parse("local", "an IP address")?),
            "remote" | "group" => remote = Some(r.parse(w, "an IP address")?),
            "dev" => dev = Some(r.value("dev")?.to_string()),
            "ttl" => ttl = Some(r.parse("ttl", "a number (1-255)")?),
            "learning" => learning = Some(true),
            "nolearning" => learning = Some(false),
            w => return Err(r.unexpected(w, "id, dstport, local, remote, dev, ttl, learning or nolearning")),
        }
    }
    let vni: u32 = vni.ok_or_else(|| r.error("type vxlan needs \"id VNI\""))?;
    if vni >= 1 << 24 {
        return Err(r.error(format!("VNI {vni} is out of range (0-16777215)")));
    }
    Ok(Kind::Vxlan {
        vni,
        port,
        local,
        remote,
        dev,
        ttl,
        learning,
    })
}

fn parse_macvlan(r: &mut WordReader<'_>, link: Option<String>) -> Result<Kind, CliError> {
    let (mut dev, mut mode) = (link, MacvlanMode::Bridge);
    while let Some(w) = r.next() {
        match w {
            "dev" => dev = Some(r.value("dev")?.to_string()),
            "mode" => {
                mode = match r.value("mode")? {
                    "private" => MacvlanMode::Private,
                    "vepa" => MacvlanMode::Vepa,
                    "bridge" => MacvlanMode::Bridge,
                    "passthru" => MacvlanMode::Passthru,
                    "source" => MacvlanMode::Source,
                    other => {
                        return Err(r.error(format!(
                            "unknown macvlan mode \"{other}\" (private, vepa, bridge, passthru or source)"
                        )))
                    }
                }
            }
            w => return Err(r.unexpected(w, "dev or mode")),
        }
    }
    let dev = dev.ok_or_else(|| r.error("type macvlan needs \"dev PARENT\""))?;
    Ok(Kind::Macvlan { dev, mode })
}

fn parse_ipip(r: &mut WordReader<'_>, link: Option<String>) -> Result<Kind, CliError> {
    let (mut local, mut remote, mut dev, mut ttl) = (None, None, link, None);
    while let Some(w) = r.next() {
        match w {
            "local" => local = Some(r.parse("local", "an IPv4 address")?),
            "remote" => remote = Some(r.parse("remote", "an IPv4 address")?),
            "dev" => dev = Some(r.value("dev")?.to_string()),
            "ttl" => ttl = Some(r.parse("ttl", "a number (1-255)")?),
            w => return Err(r.unexpected(w, "local, remote, dev or ttl")),
        }
    }
    Ok(Kind::IpIp {
        local,
        remote,
        dev,
        ttl,
    })
}

fn parse_tuntap(r: &mut WordReader<'_>, mode: TunTapMode) -> Result<Kind, CliError> {
    let (mut user, mut group) = (None, None);
    while let Some(w) = r.next() {
        match w {
            "user" => user = Some(r.parse("user", "a numeric uid")?),
            "group" => group = Some(r.parse("group", "a numeric gid")?),
            w => return Err(r.unexpected(w, "user or group")),
        }
    }
    Ok(Kind::TunTap { mode, user, group })
}

/// Open a namespace named on the command line: by name (`/run/netns/NAME`) or, for a number
/// that names none, as the namespace of that process id (as `ip` reads `netns PID`).
pub fn open_netns(name: &str) -> Result<NetNs, CliError> {
    match NetNs::open(name) {
        Ok(ns) => Ok(ns),
        Err(e) => match name.parse::<u32>() {
            Ok(pid) if is_not_found(&e) => Ok(NetNs::from_pid(pid)?),
            _ => Err(e.into()),
        },
    }
}

fn is_not_found(e: &NetnsError) -> bool {
    matches!(e, NetnsError::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound)
}

/// Create the link; the settings its kind cannot take when created (`mtu` of a tun, `address`
/// of a macvlan or an ipip tunnel) follow in one `link set` (netkit-core's [`WithCommon`]).
async fn add(h: &Handle, req: AddRequest) -> Result<(), CliError> {
    let common = LinkCommon {
        mtu: req.mtu,
        mac: req.mac,
        up: false,
    };
    let late = match req.kind {
        Kind::Veth {
            peer,
            peer_netns,
            peer_mac,
        } => {
            let mut spec = Veth::new(&req.name, &peer);
            if let Some(ns) = peer_netns {
                spec = spec.peer_netns(&open_netns(&ns)?);
            }
            if let Some(m) = peer_mac {
                spec = spec.peer_mac(m);
            }
            create(h, spec, common).await?
        }
        Kind::Bridge { stp, vlan_filtering } => {
            let mut spec = Bridge::new(&req.name);
            if let Some(on) = stp {
                spec = spec.stp(on);
            }
            if let Some(on) = vlan_filtering {
                spec = spec.vlan_filtering(on);
            }
            create(h, spec, common).await?
        }
        Kind::Vxlan {
            vni,
            port,
            local,
            remote,
            dev,
            ttl,
            learning,
        } => {
            let mut spec = Vxlan::new(&req.name, vni);
            if let Some(p) = port {
                spec = spec.port(p);
            }
            if let Some(ip) = local {
                spec = spec.local(ip);
            }
            if let Some(ip) = remote {
                spec = spec.remote(ip);
            }
            if let Some(d) = &dev {
                spec = spec.parent(d);
            }
            if let Some(t) = ttl {
                spec = spec.ttl(t);
            }
            if let Some(on) = learning {
                spec = spec.learning(on);
            }
            create(h, spec, common).await?
        }
        Kind::Macvlan { dev, mode } => {
            let spec = Macvlan::new(&req.name, &dev).mode(mode);
            create(h, spec, common).await?
        }
        Kind::IpIp {
            local,
            remote,
            dev,
            ttl,
        } => {
            let mut spec = IpIp::new(&req.name);
            if let Some(ip) = local {
                spec = spec.local(ip);
            }
            if let Some(ip) = remote {
                spec = spec.remote(ip);
            }
            if let Some(d) = &dev {
                spec = spec.parent(d);
            }
            if let Some(t) = ttl {
                spec = spec.ttl(t);
            }
            create(h, spec, common).await?
        }
        Kind::TunTap { mode, user, group } => {
            let mut spec = TunTap::new(&req.name, mode);
            if let Some(u) = user {
                spec = spec.owner(u);
            }
            if let Some(g) = group {
                spec = spec.group(g);
            }
            h.tuntap_add(&spec).await?;
            common
        }
    };
    if !late.is_empty() {
        late.apply_to(h.link_set(&req.name)).apply().await?;
    }
    Ok(())
}

/// Create `spec` with what it takes of `common`; what it cannot take comes back.
async fn create<S: LinkSpec + WithCommon>(h: &Handle, spec: S, common: LinkCommon) -> Result<LinkCommon, CliError> {
    let (spec, late) = spec.with_common(common);
    h.link_add(&spec).await?;
    Ok(late)
}

/// One change of `link set`.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `up`
    Up,
    /// `down`
    Down,
    /// `mtu N`
    Mtu(u32),
    /// `address MAC`
    Address(MacAddr),
    /// `master BRIDGE`
    Master(String),
    /// `nomaster`
    NoMaster,
    /// `netns NS`
    Netns(String),
    /// `name NEWNAME`
    Name(String),
    /// `alias TEXT`
    Alias(String),
    /// `promisc on|off`
    Promisc(bool),
    /// `group N`
    Group(u32),
}

const SET_WORDS: &str = "up, down, mtu, address, master, nomaster, netns, name, alias, promisc or group";

/// Read the words of `link set NAME …` (or `link set dev NAME …`): the link and its changes.
pub fn parse_set(name: &str, words: &[String]) -> Result<(String, Vec<Change>), CliError> {
    let (name, words) = match (name, words.split_first()) {
        ("dev", Some((n, rest))) => (n.as_str(), rest),
        _ => (name, words),
    };
    let mut r = WordReader::new(words, format!("link set {name}"));
    let mut changes = Vec::new();
    while let Some(w) = r.next() {
        changes.push(match w {
            "up" => Change::Up,
            "down" => Change::Down,
            "mtu" => Change::Mtu(r.parse("mtu", "a number")?),
            "address" => Change::Address(r.parse("address", "a MAC address")?),
            "master" => Change::Master(r.value("master")?.to_string()),
            "nomaster" => Change::NoMaster,
            "netns" => Change::Netns(r.value("netns")?.to_string()),
            "name" => Change::Name(r.value("name")?.to_string()),
            "alias" => Change::Alias(r.value("alias")?.to_string()),
            "promisc" => Change::Promisc(r.on_off("promisc")?),
            "group" => Change::Group(r.parse("group", "a number")?),
            w => return Err(r.unexpected(w, SET_WORDS)),
        });
    }
    if changes.is_empty() {
        return Err(r.error(format!("nothing to change (give {SET_WORDS})")));
    }
    Ok((name.to_string(), changes))
}

/// Send every change in one request (netkit-core's `LinkSet`).
async fn set(h: &Handle, name: &str, changes: Vec<Change>) -> Result<(), CliError> {
    let mut set = h.link_set(name);
    for c in changes {
        set = match c {
            Change::Up => set.up(),
            Change::Down => set.down(),
            Change::Mtu(m) => set.mtu(m),
            Change::Address(m) => set.mac(m),
            Change::Master(m) => set.master(&m),
            Change::NoMaster => set.nomaster(),
            Change::Netns(ns) => set.netns(&open_netns(&ns)?),
            Change::Name(n) => set.name(&n),
            Change::Alias(a) => set.alias(&a),
            Change::Promisc(on) => set.promisc(on),
            Change::Group(g) => set.group(g),
        };
    }
    set.apply().await?;
    Ok(())
}

/// Delete a link; one that does not exist is a note (netkit-core's delete is idempotent).
async fn del(h: &Handle, out: &Output, name: &str) -> Result<(), CliError> {
    match h.link_get(name).await {
        Err(e) if e.is_not_found() => {
            out.note(&format!(
                "link {name:?} does not exist in netns {}: nothing to delete",
                h.netns()
            ));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    h.link_del(name).await?;
    Ok(())
}

/// Read the words of `link show [[dev] NAME]`.
pub fn parse_show(words: &[String]) -> Result<Option<String>, CliError> {
    let mut r = WordReader::new(words, "link show");
    let name = match r.next() {
        None => None,
        Some("dev") => Some(r.value("dev")?.to_string()),
        Some(n) => Some(n.to_string()),
    };
    r.finish("nothing after the link's name")?;
    Ok(name)
}

/// Print every link, or one.
async fn show(h: &Handle, out: &Output, name: Option<String>) -> Result<(), CliError> {
    let links = h.link_list().await?;
    let names = IfNames::of(&links);
    let shown: Vec<_> = links
        .iter()
        .filter(|l| name.as_deref().is_none_or(|n| l.name == n))
        .collect();
    if let (Some(n), true) = (&name, shown.is_empty()) {
        // Not there: the error of a lookup by name says so, with the namespace.
        h.link_get(n).await?;
    }
    out.list(
        shown.iter().map(|l| LinkJson::of(l, &names)),
        shown.iter().map(|l| link_text(l, &names)),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::tests::w;

    #[test]
    fn add_veth_with_peer_netns() {
        let r = parse_add("v0", &w("mtu 1400 type veth peer name v1 netns blue")).unwrap();
        assert_eq!(r.mtu, Some(1400));
        assert_eq!(
            r.kind,
            Kind::Veth {
                peer: "v1".into(),
                peer_netns: Some("blue".into()),
                peer_mac: None
            }
        );
        // `peer v1` without `name` too.
        assert!(matches!(
            parse_add("v0", &w("type veth peer v1")).unwrap().kind,
            Kind::Veth { .. }
        ));
    }

    #[test]
    fn add_vxlan_macvlan_tun() {
        let r = parse_add(
            "vx0",
            &w("type vxlan id 42 dstport 4789 local 10.0.0.1 dev v0 nolearning"),
        )
        .unwrap();
        assert_eq!(
            r.kind,
            Kind::Vxlan {
                vni: 42,
                port: Some(4789),
                local: Some("10.0.0.1".parse().unwrap()),
                remote: None,
                dev: Some("v0".into()),
                ttl: None,
                learning: Some(false),
            }
        );
        let r = parse_add("mv0", &w("link v0 type macvlan mode private")).unwrap();
        assert_eq!(
            r.kind,
            Kind::Macvlan {
                dev: "v0".into(),
                mode: MacvlanMode::Private
            }
        );
        let r = parse_add(
            "tun0",
            &w("mtu 1480 link v0 type ipip local 10.0.0.1 remote 10.0.0.2 ttl 64"),
        )
        .unwrap();
        assert_eq!(r.mtu, Some(1480));
        assert_eq!(
            r.kind,
            Kind::IpIp {
                local: Some(Ipv4Addr::new(10, 0, 0, 1)),
                remote: Some(Ipv4Addr::new(10, 0, 0, 2)),
                dev: Some("v0".into()),
                ttl: Some(64),
            }
        );
        let r = parse_add("t0", &w("type tap user 1000")).unwrap();
        assert_eq!(
            r.kind,
            Kind::TunTap {
                mode: TunTapMode::Tap,
                user: Some(1000),
                group: None
            }
        );
    }

    #[test]
    fn add_usage_errors_say_what_is_wrong() {
        let cases = [
            ("", "link add x: missing \"type KIND\""),
            ("type", "link add x: \"type\" needs a value"),
            ("type wormhole", "link add x: unknown type \"wormhole\""),
            ("type veth", "type veth needs \"peer name PEER\""),
            ("type veth peer", "\"peer\" needs a name"),
            ("type vxlan dstport 1", "type vxlan needs \"id VNI\""),
            ("type vxlan id 16777216", "out of range"),
            ("type macvlan", "type macvlan needs \"dev PARENT\""),
            ("type macvlan dev v0 mode loud", "unknown macvlan mode \"loud\""),
            ("mtu x type bridge", "\"mtu\" wants a number, not \"x\""),
            ("colour red type bridge", "unexpected \"colour\""),
            (
                "link v0 type bridge",
                "\"link\" only goes with type vxlan, macvlan or ipip",
            ),
            ("type ipip remote fd00::1", "\"remote\" wants an IPv4 address"),
            ("type ipip key 5", "unexpected \"key\""),
        ];
        for (words, want) in cases {
            let e = parse_add("x", &w(words)).unwrap_err();
            assert_eq!(e.exit_code(), crate::EXIT_USAGE, "{words}");
            assert!(e.to_string().contains(want), "{words}: {e}");
        }
    }

    #[test]
    fn set_reads_many_changes() {
        let (name, changes) = parse_set("dev", &w("v0 mtu 1400 master br0 up promisc off")).unwrap();
        assert_eq!(name, "v0");
        assert_eq!(
            changes,
            [
                Change::Mtu(1400),
                Change::Master("br0".into()),
                Change::Up,
                Change::Promisc(false)
            ]
        );
        assert!(parse_set("v0", &[]).is_err());
        assert!(parse_set("v0", &w("sideways")).is_err());
        assert!(parse_set("v0", &w("address 1:2:3")).is_err());
    }

    #[test]
    fn show_takes_an_optional_name() {
        assert_eq!(parse_show(&[]).unwrap(), None);
        assert_eq!(parse_show(&w("dev v0")).unwrap().as_deref(), Some("v0"));
        assert_eq!(parse_show(&w("v0")).unwrap().as_deref(), Some("v0"));
        assert!(parse_show(&w("v0 v1")).is_err());
    }
}
