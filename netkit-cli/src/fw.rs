//! `netkit fw add|del|list|gc`: netkit-core's firewall ([`netkit_core::firewall`]) in the
//! namespace of `-n` (or the current one): port mappings, masquerades, container networks,
//! isolated interface pairs and services, each held by an owner.
//!
//! # Which firewall
//!
//! `--driver nftables|iptables` forces a driver (default: nftables when libnftables loads and
//! the kernel takes an nftables table, else iptables). `--state-dir DIR` is where the wanted
//! state lives (default: `/run/netkit/firewall/<netns cookie>`, netkit-core's
//! [`default_state_dir`](netkit_core::firewall::default_state_dir), which is also netkit-cni's
//! default when its `firewallStateDir` is unset); every user of one namespace's firewall must
//! name the same directory. `--name NAME` is the nftables table / the iptables chain prefix
//! (default `netkit`; netkit-cni's `firewallName`).
//!
//! # Words of `add` and `del`
//!
//! ```text
//! port [HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[/tcp|udp|sctp]   (default tcp)
//! masquerade CIDR
//! network IFNAME SUBNET
//! isolate IFNAME IFNAME
//! service NAME VIP:PORT[/tcp|udp|sctp] [nodeport N] [affinity SECONDS] [masq] [policy cluster|local]
//!         [extip IP]… [endpoint IP:PORT]… [localendpoint IP:PORT]…
//! ```
//!
//! * `port` is CNI's `portMappings` entry (`hostIP`, `hostPort`, `containerIP`'s address,
//!   `containerPort`, `protocol`) in Docker's `-p` order; IPv6 addresses go in brackets
//!   (`8080:[fd00::5]:80`); `HOSTPORT-END` maps a range port by port.
//! * `masquerade CIDR` is CNI's `ipMasq`: `10.88.0.0/24` (no host bits) masquerades the whole
//!   subnet, `10.88.0.5/24` only the address 10.88.0.5; traffic to destinations inside the
//!   /24 keeps its source either way.
//! * `network IFNAME SUBNET` registers a container network behind a bridge (hairpin: a
//!   container reaching a mapped host port; 127.0.0.1 mappings).
//! * `service` is a ClusterIP (and with `nodeport`, a NodePort); the modifiers after it belong
//!   to it: `masq` masquerades connections to its endpoints; `extip` adds an external IP
//!   (handled like the node port); `policy` is the external traffic policy of node-port and
//!   external-IP connections (`cluster`: every endpoint, masqueraded; `local`: only the
//!   endpoints given as `localendpoint`, source kept); without endpoints a service rejects
//!   connections.
//!
//! `add` gives OWNER these objects as well (idempotent; a host port another owner maps is a
//! conflict, exit code 1); `del OWNER WORDS` takes these objects from OWNER; `del OWNER` alone
//! removes everything it holds and prints it. An OWNER is 1–250 of letters, digits and
//! `_ . : / @ % -`, starting with a letter or digit; netkit-cni's owners are
//! `<network>/<container ID>:<ifname>`.
//!
//! # Output
//!
//! `list` (and `del OWNER` alone) print one line per object, in the words of `add`. With `-j`,
//! `list` prints `[{"owner": "c1:eth0", "port_mappings": [{"protocol": "tcp", "host_ip": null,
//! "host_port": 8080, "host_port_end": 8080, "container_ip": "10.88.0.5", "container_port":
//! 80}], "masquerades": [{"source": "10.88.0.0/24", "network": "10.88.0.0/24"}], "networks":
//! [{"interface": "br0", "subnet": "10.88.0.0/24"}], "isolations": [{"a": "br0", "b": "br1"}],
//! "services": [{"name", "protocol", "vip", "port", "node_port", "affinity": null | {"secs",
//! "nanos"}, "masquerade", "endpoints": [{"ip", "port", "local" (only when true)}],
//! "external_policy" (only when set), "external_ips" (only when any)}]}]`: the keys of netkit-core's
//! serialised [`Rules`] (the state directory's own format) plus `owner`. `del OWNER -j` prints
//! the one object of what it removed; `gc -j` prints `{"removed": [OWNER…]}`.
//!
//! `list` reads the state directory only: it needs no driver and creates nothing.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use ipnetwork::IpNetwork;
use netkit_core::firewall::{
    self, check_owner, AnyFirewall, Driver, Endpoint, Firewall, FirewallError, FirewallOptions, Isolation, Masquerade,
    Network, PortMapping, Protocol, Rules, Service,
};
use netkit_core::NetNs;
use serde_json::{json, Value};

use crate::cli::{Global, Words};
use crate::error::CliError;
use crate::output::Output;
use crate::words::{parse_word, WordReader};

/// Which firewall (the options of `netkit fw`, before the verb).
#[derive(Args, Debug, Clone, Default)]
pub struct FwOpts {
    /// The driver (default: nftables when usable, else iptables).
    #[arg(long, value_enum)]
    pub driver: Option<FwDriver>,
    /// The state directory (default: `/run/netkit/firewall/<netns cookie>`, as netkit-cni).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The nftables table / iptables chain prefix (default: netkit).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// The drivers `--driver` names.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FwDriver {
    /// nftables (table `inet netkit`).
    Nftables,
    /// iptables (chains `NETKIT-…` in nat and filter).
    Iptables,
}

impl From<FwDriver> for Driver {
    fn from(d: FwDriver) -> Driver {
        match d {
            FwDriver::Nftables => Driver::Nftables,
            FwDriver::Iptables => Driver::Iptables,
        }
    }
}

/// The help after `fw add`: its words and examples.
const ADD_HELP: &str = concat!(
    "ARGS, any number of:\n  ",
    "port [HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[/tcp|udp|sctp]   (IPv6 in brackets)\n  ",
    "masquerade CIDR            (10.88.0.0/24: the subnet; 10.88.0.5/24: that address only)\n  ",
    "network IFNAME SUBNET      (a container network behind a bridge: hairpin, 127.0.0.1)\n  ",
    "isolate IFNAME IFNAME\n  ",
    "service NAME VIP:PORT[/PROTO] [nodeport N] [affinity SECONDS] [masq] [policy cluster|local]\n    ",
    "        [extip IP]... [endpoint IP:PORT]... [localendpoint IP:PORT]...\n\n",
    "Examples:\n  ",
    "netkit -n host fw add c1:eth0 port 8080:10.88.0.2:80/tcp masquerade 10.88.0.0/24 network br0 10.88.0.0/24\n  ",
    "netkit -n host fw --driver iptables add c2:eth0 port 192.0.2.1:5353:10.88.0.3:53/udp\n  ",
    "netkit -n host fw add default/web service default/web 10.96.0.10:80 nodeport 30080 ",
    "endpoint 10.88.0.2:8080 endpoint 10.88.0.3:8080"
);

/// The help after `fw del`.
const DEL_HELP: &str = concat!(
    "ARGS: none (everything OWNER holds), or objects as for add:\n  ",
    "port [HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[/PROTO] | masquerade CIDR\n  ",
    "network IFNAME SUBNET | isolate IFNAME IFNAME | service NAME VIP:PORT[/PROTO] ...\n\n",
    "Examples:\n  ",
    "netkit -n host fw del c1:eth0\n  ",
    "netkit -n host fw del c1:eth0 port 8080:10.88.0.2:80/tcp"
);

/// `netkit fw …` verbs.
#[derive(Subcommand, Debug, Clone)]
pub enum FwVerb {
    /// Give OWNER these objects as well (idempotent; a host port or service name another owner
    /// holds is a conflict and changes nothing).
    #[command(after_help = ADD_HELP)]
    Add {
        /// The owner (a container attachment, a service…).
        owner: String,
        /// The objects (see below).
        #[command(flatten)]
        args: Words,
    },
    /// Take these objects from OWNER, or with no ARGS remove everything it holds (printed);
    /// an owner holding nothing is a note, not an error.
    #[command(visible_alias = "delete", after_help = DEL_HELP)]
    Del {
        /// The owner.
        owner: String,
        /// The objects to take (none: all).
        #[command(flatten)]
        args: Words,
    },
    /// List every owner's objects, or one owner's (reads the state directory only).
    #[command(
        visible_alias = "show",
        after_help = "Examples:\n  netkit -n host fw list\n  netkit -n host -j fw list c1:eth0"
    )]
    List {
        /// The owner.
        owner: Option<String>,
    },
    /// Remove every owner not listed (and, with --scope, whose name starts with PREFIX: a CNI
    /// network's GC uses `<network>/`); prints the owners removed.
    #[command(after_help = "ARGS: VALID_OWNER…; with none, --all is needed\n\n\
        Examples:\n  \
        netkit -n host fw gc c1:eth0 c2:eth0\n  \
        netkit -n host fw gc --scope podnet/ podnet/c1:eth0")]
    Gc {
        /// The owners that keep their objects.
        #[arg(value_name = "VALID_OWNER")]
        valid: Vec<String>,
        /// Only owners whose name starts with PREFIX are candidates.
        #[arg(long, value_name = "PREFIX")]
        scope: Option<String>,
        /// No owner is valid: remove every owner (in the scope).
        #[arg(long, conflicts_with = "valid")]
        all: bool,
    },
}

/// Check an OWNER word (a bad one is a usage error).
pub fn parse_owner(owner: &str) -> Result<String, CliError> {
    check_owner(owner).map_err(|e| CliError::usage(e.to_string()))?;
    Ok(owner.to_string())
}

/// Split `a:b:[fd00::1]:c` at the colons outside brackets; brackets are dropped.
fn split_colons(s: &str) -> Result<Vec<String>, String> {
    let mut parts = vec![String::new()];
    let mut in_brackets = false;
    for c in s.chars() {
        match c {
            '[' if !in_brackets => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            ':' if !in_brackets => parts.push(String::new()),
            c => parts.last_mut().expect("never empty").push(c),
        }
    }
    if in_brackets {
        return Err("a '[' is not closed".into());
    }
    Ok(parts)
}

/// `BODY[/PROTO]` (default tcp).
fn split_protocol(spec: &str) -> Result<(&str, Protocol), String> {
    match spec.rsplit_once('/') {
        Some((body, p)) => Ok((body, p.parse::<Protocol>().map_err(|e| e.to_string())?)),
        None => Ok((spec, Protocol::Tcp)),
    }
}

/// Read a `port` value: `[HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[/PROTO]`.
pub fn parse_port(spec: &str) -> Result<PortMapping, String> {
    let (body, protocol) = split_protocol(spec)?;
    let parts = split_colons(body)?;
    let (host_ip, host, cip, cport) = match parts.as_slice() {
        [h, c, p] => (None, h, c, p),
        [hi, h, c, p] => (Some(hi), h, c, p),
        _ => {
            return Err(format!(
                "{spec:?} is not [HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[/PROTO] \
                 (IPv6 addresses go in brackets)"
            ))
        }
    };
    let (first, end) = match host.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (host.as_str(), None),
    };
    let first: u16 = parse_word(first, "port", "a host port")?;
    let cip: IpAddr = parse_word(cip, "port", "a container address")?;
    let cport: u16 = parse_word(cport, "port", "a container port")?;
    let mut m = PortMapping::new(protocol, first, cip, cport);
    if let Some(end) = end {
        m = m.range_end(parse_word(end, "port", "the last host port of the range")?);
    }
    if let Some(h) = host_ip {
        m = m.host_ip(parse_word(h, "port", "a host address")?);
    }
    m.validate().map_err(|e| e.to_string())?;
    Ok(m)
}

/// Read a `masquerade` value: a subnet (no host bits), or one address with its network's
/// prefix.
pub fn parse_masquerade(cidr: &str) -> Result<Masquerade, String> {
    let net: IpNetwork = parse_word(cidr, "masquerade", "a CIDR")?;
    let whole = IpNetwork::new(net.network(), net.prefix()).map_err(|e| e.to_string())?;
    Ok(if net.ip() == net.network() {
        Masquerade::subnet(net)
    } else {
        Masquerade::address(net.ip(), whole)
    })
}

/// Read `VIP:PORT[/PROTO]` of a service.
fn parse_service_address(spec: &str) -> Result<(SocketAddr, Protocol), String> {
    let (body, protocol) = split_protocol(spec)?;
    let sa: SocketAddr = parse_word(body, "service", "VIP:PORT ([VIP]:PORT for IPv6)")?;
    Ok((sa, protocol))
}

/// The words every object kind starts with.
const RULE_WORDS: &str = "port, masquerade, network, isolate or service";

/// Read the words of `fw add|del` into [`Rules`]; every object is validated by netkit-core
/// (a bad one is a usage error).
pub fn parse_rules(context: &str, words: &[String]) -> Result<Rules, CliError> {
    let mut r = WordReader::new(words, context);
    let mut rules = Rules::default();
    // Service modifiers apply to the last service read while nothing else came in between.
    let mut in_service = false;
    while let Some(w) = r.next() {
        let was_in_service = std::mem::replace(&mut in_service, false);
        match w {
            "port" => {
                let v = r.value(w)?;
                rules.port_mappings.push(parse_port(v).map_err(|e| r.error(e))?);
            }
            "masquerade" => {
                let v = r.value(w)?;
                rules.masquerades.push(parse_masquerade(v).map_err(|e| r.error(e))?);
            }
            "network" => {
                let ifname = r.value(w)?;
                let subnet: IpNetwork = r.parse("network", "a subnet after the interface name")?;
                rules.networks.push(Network::new(ifname, subnet));
            }
            "isolate" => {
                let a = r.value(w)?;
                let b = r.value(w)?;
                rules.isolations.push(Isolation::new(a, b));
            }
            "service" => {
                let name = r.value(w)?;
                let (sa, proto) = parse_service_address(r.value(w)?).map_err(|e| r.error(e))?;
                rules.services.push(Service::new(name, proto, sa.ip(), sa.port()));
                in_service = true;
            }
            "nodeport" | "affinity" | "masq" | "policy" | "extip" | "endpoint" | "localendpoint" if was_in_service => {
                let svc = rules.services.last_mut().expect("in a service");
                match w {
                    "nodeport" => svc.node_port = Some(r.parse(w, "a port")?),
                    "affinity" => svc.affinity = Some(Duration::from_secs(r.parse(w, "seconds")?)),
                    "masq" => svc.masquerade = true,
                    "policy" => svc.external_policy = Some(r.parse(w, "cluster or local")?),
                    "extip" => svc.external_ips.push(r.parse(w, "an address")?),
                    _ => {
                        let v = r.value(w)?;
                        let ep: SocketAddr =
                            parse_word(v, "endpoint", "IP:PORT ([IP]:PORT for IPv6)").map_err(|e| r.error(e))?;
                        svc.endpoints
                            .push(Endpoint::new(ep.ip(), ep.port()).local(w == "localendpoint"));
                    }
                }
                in_service = true;
            }
            other => {
                let expected = if was_in_service {
                    format!("{RULE_WORDS}, or nodeport, affinity, masq, policy, extip, endpoint or localendpoint of the service")
                } else {
                    RULE_WORDS.to_string()
                };
                return Err(r.unexpected(other, &expected));
            }
        }
    }
    rules.validate().map_err(|e| r.error(e))?;
    Ok(rules)
}

/// An address as `port` and `endpoint` words spell it (IPv6 in brackets).
fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The `port` word of a mapping.
pub fn port_word(m: &PortMapping) -> String {
    let host_ip = m.host_ip.map(|h| format!("{}:", bracketed(h))).unwrap_or_default();
    let end = if m.host_port_end != m.host_port {
        format!("-{}", m.host_port_end)
    } else {
        String::new()
    };
    format!(
        "{host_ip}{}{end}:{}:{}/{}",
        m.host_port,
        bracketed(m.container_ip),
        m.container_port,
        m.protocol
    )
}

/// One line per object of `rules`, in the words of `fw add` (a masquerade whose source is
/// neither its network nor one address of it, which `add` cannot spell, shows its network in
/// parentheses).
pub fn rule_lines(rules: &Rules) -> Vec<String> {
    let mut out = Vec::new();
    for m in &rules.port_mappings {
        out.push(format!("port {}", port_word(m)));
    }
    for m in &rules.masquerades {
        let host = m.source.prefix() == if m.source.is_ipv4() { 32 } else { 128 };
        if m.source == m.network {
            out.push(format!("masquerade {}", m.network));
        } else if host && m.network.ip() == m.network.network() {
            out.push(format!("masquerade {}/{}", m.source.ip(), m.network.prefix()));
        } else {
            out.push(format!("masquerade {} (network {})", m.source, m.network));
        }
    }
    for n in &rules.networks {
        out.push(format!("network {} {}", n.interface, n.subnet));
    }
    for i in &rules.isolations {
        out.push(format!("isolate {} {}", i.a, i.b));
    }
    for s in &rules.services {
        let mut l = format!("service {} {}:{}/{}", s.name, bracketed(s.vip), s.port, s.protocol);
        if let Some(p) = s.node_port {
            l += &format!(" nodeport {p}");
        }
        if let Some(a) = s.affinity {
            l += &format!(" affinity {}", a.as_secs());
        }
        if s.masquerade {
            l += " masq";
        }
        if let Some(p) = s.external_policy {
            l += &format!(" policy {p}");
        }
        for ip in &s.external_ips {
            l += &format!(" extip {ip}");
        }
        for ep in &s.endpoints {
            let word = if ep.local { "localendpoint" } else { "endpoint" };
            l += &format!(" {word} {ep}");
        }
        out.push(l);
    }
    out
}

/// `{"owner": OWNER, …the keys of Rules}`.
pub fn owner_json(owner: &str, rules: &Rules) -> Value {
    let mut v = serde_json::to_value(rules).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("owner".into(), json!(owner));
    }
    v
}

/// The firewall options `opts` ask for.
pub fn options(opts: &FwOpts) -> FirewallOptions {
    let mut o = FirewallOptions {
        driver: opts.driver.map(Driver::from),
        state_dir: opts.state_dir.clone(),
        ..Default::default()
    };
    if let Some(n) = &opts.name {
        o.name = n.clone();
    }
    o
}

/// The namespace `-n` names, or the current one.
fn namespace(global: &Global) -> Result<NetNs, CliError> {
    Ok(match &global.netns {
        Some(name) => NetNs::open(name)?,
        None => NetNs::current()?,
    })
}

/// One firewall in one namespace, with the error wrapping every operation shares.
struct Fw {
    ns: NetNs,
    options: FirewallOptions,
}

impl Fw {
    fn failed(&self, what: impl Into<String>) -> impl FnOnce(FirewallError) -> CliError + '_ {
        let what = what.into();
        move |cause| CliError::Firewall {
            what,
            netns: self.ns.to_string(),
            cause: Box::new(cause),
        }
    }

    async fn open(&self, what: &str) -> Result<AnyFirewall, CliError> {
        firewall::open(&self.ns, self.options.clone())
            .await
            .map_err(self.failed(what))
    }

    async fn recorded(&self, owner: &str, what: &str) -> Result<Rules, CliError> {
        firewall::recorded(&self.ns, &self.options, owner)
            .await
            .map_err(self.failed(what))
    }

    async fn recorded_owners(&self, what: &str) -> Result<Vec<String>, CliError> {
        firewall::recorded_owners(&self.ns, &self.options)
            .await
            .map_err(self.failed(what))
    }
}

/// Run a `fw` verb in the namespace of `-n` (or the current one).
pub async fn run(global: &Global, out: &Output, opts: &FwOpts, verb: FwVerb) -> Result<(), CliError> {
    match verb {
        FwVerb::Add { owner, args } => {
            let owner = parse_owner(&owner)?;
            let rules = parse_rules(&format!("fw add {owner}"), &args.words)?;
            let fw = Fw {
                ns: namespace(global)?,
                options: options(opts),
            };
            let what = format!("fw add {owner}");
            let f = fw.open(&what).await?;
            f.add(&owner, &rules).await.map_err(fw.failed(what))?;
        }
        FwVerb::Del { owner, args } => {
            let owner = parse_owner(&owner)?;
            let what = format!("fw del {owner}");
            let rules = (!args.words.is_empty())
                .then(|| parse_rules(&what, &args.words))
                .transpose()?;
            let fw = Fw {
                ns: namespace(global)?,
                options: options(opts),
            };
            // As netkit-cni's DEL: open the firewall only when the owner holds something.
            let held = fw.recorded(&owner, &what).await?;
            if held.is_empty() {
                out.note(&format!("owner {owner} holds nothing in netns {}", fw.ns));
                if out.json && rules.is_none() {
                    out.json(&owner_json(&owner, &held));
                }
                return Ok(());
            }
            let f = fw.open(&what).await?;
            match rules {
                Some(rules) => f.remove(&owner, &rules).await.map_err(fw.failed(what))?,
                None => {
                    let gone = f.teardown(&owner).await.map_err(fw.failed(what))?;
                    if out.json {
                        out.json(&owner_json(&owner, &gone));
                    } else {
                        for l in rule_lines(&gone) {
                            out.text(&format!("removed {l}"));
                        }
                    }
                }
            }
        }
        FwVerb::List { owner } => {
            let owner = owner.as_deref().map(parse_owner).transpose()?;
            let fw = Fw {
                ns: namespace(global)?,
                options: options(opts),
            };
            let owners = match owner {
                Some(o) => vec![o],
                None => fw.recorded_owners("fw list").await?,
            };
            let (mut items, mut lines) = (Vec::new(), Vec::new());
            for o in owners {
                let rules = fw.recorded(&o, &format!("fw list {o}")).await?;
                if rules.is_empty() {
                    continue;
                }
                lines.push(o.clone());
                lines.extend(rule_lines(&rules).into_iter().map(|l| format!("    {l}")));
                items.push(owner_json(&o, &rules));
            }
            out.list(items, lines);
        }
        FwVerb::Gc { valid, scope, all } => {
            if valid.is_empty() && !all {
                return Err(CliError::usage(
                    "fw gc: name the valid owners, or give --all to remove every owner (in the --scope)",
                ));
            }
            let valid = valid.iter().map(|o| parse_owner(o)).collect::<Result<Vec<_>, _>>()?;
            let scope = scope.unwrap_or_default();
            let fw = Fw {
                ns: namespace(global)?,
                options: options(opts),
            };
            let recorded = fw.recorded_owners("fw gc").await?;
            let removed = if recorded.iter().any(|o| o.starts_with(&scope) && !valid.contains(o)) {
                let f = fw.open("fw gc").await?;
                f.gc_scope(&scope, &valid).await.map_err(fw.failed("fw gc"))?
            } else {
                Vec::new()
            };
            if out.json {
                out.json(&json!({ "removed": removed }));
            } else {
                for o in &removed {
                    out.text(&format!("removed owner {o}"));
                }
                if removed.is_empty() {
                    out.note(&format!("fw gc: nothing to remove in netns {}", fw.ns));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::tests::w;
    use netkit_test_support::lit::ip;

    #[test]
    fn port_words() {
        let m = parse_port("8080:10.88.0.2:80/tcp").unwrap();
        assert_eq!(m, PortMapping::new(Protocol::Tcp, 8080, ip("10.88.0.2"), 80));
        assert_eq!(parse_port("8080:10.88.0.2:80").unwrap(), m, "tcp by default");
        let m = parse_port("192.0.2.1:5353:10.88.0.3:53/udp").unwrap();
        assert_eq!(
            m,
            PortMapping::new(Protocol::Udp, 5353, ip("10.88.0.3"), 53).host_ip(ip("192.0.2.1"))
        );
        let m = parse_port("[2001:db8::1]:9000-9004:[fd00::5]:7000/sctp").unwrap();
        assert_eq!(
            m,
            PortMapping::new(Protocol::Sctp, 9000, ip("fd00::5"), 7000)
                .range_end(9004)
                .host_ip(ip("2001:db8::1"))
        );
        for bad in [
            "8080:fd00::5:80",
            "8080:10.88.0.2",
            "0:10.88.0.2:80",
            "8080:10.88.0.2:80/icmp",
            "8080:[fd00::5:80",
            "x:10.88.0.2:80",
            "9:10.88.0.2:80-",
            "8080:0.0.0.0:80",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masquerade_words() {
        assert_eq!(
            parse_masquerade("10.88.0.0/24").unwrap(),
            Masquerade::subnet("10.88.0.0/24".parse().unwrap())
        );
        assert_eq!(
            parse_masquerade("10.88.0.5/24").unwrap(),
            Masquerade::address(ip("10.88.0.5"), "10.88.0.0/24".parse().unwrap())
        );
        assert!(parse_masquerade("10.88.0.5").is_ok(), "a bare address is a /32");
        assert!(parse_masquerade("x").is_err());
    }

    #[test]
    fn rules_round_trip_through_their_lines() {
        let words = w(
            "port 8080:10.88.0.2:80/tcp port [::1]:53:[fd00::2]:53/udp masquerade 10.88.0.0/24 \
             masquerade 10.89.0.7/16 network br0 10.88.0.0/24 isolate br0 br1 \
             service default/web 10.96.0.10:80 nodeport 30080 affinity 60 masq policy local \
             extip 192.0.2.80 endpoint 10.88.0.2:8080 localendpoint 10.88.0.3:8080 \
             service dns [fd96::a]:53/udp",
        );
        let rules = parse_rules("fw add x", &words).unwrap();
        assert_eq!(rules.port_mappings.len(), 2);
        assert_eq!(rules.services.len(), 2);
        let web = &rules.services[0];
        assert_eq!(
            (web.node_port, web.affinity, web.masquerade, web.endpoints.len()),
            (Some(30080), Some(Duration::from_secs(60)), true, 2)
        );
        assert_eq!(web.external_policy, Some(netkit_core::firewall::TrafficPolicy::Local));
        assert_eq!(web.external_ips, [IpAddr::from([192, 0, 2, 80])]);
        assert!(!web.endpoints[0].local && web.endpoints[1].local);
        let again: Vec<String> = rule_lines(&rules)
            .join(" ")
            .split_whitespace()
            .map(String::from)
            .collect();
        assert_eq!(parse_rules("fw add x", &again).unwrap(), rules);
    }

    #[test]
    fn bad_words_are_usage_errors() {
        for bad in [
            "port",
            "port 1:2",
            "masquerade",
            "nodeport 80",
            "service web 10.96.0.1:80 port 1:10.0.0.1:1 endpoint 10.0.0.1:1",
            "network br0",
            "network b/r 10.0.0.0/24",
            "isolate br0 br0",
            "service web 10.96.0.1:80 endpoint 10.0.0.1:1 endpoint 10.0.0.1:1",
            "service web 10.96.0.1:80 affinity 0",
            "service web 10.96.0.1:80 policy nodes",
            "service web 10.96.0.1:80 extip fd00::1",
            "service web 10.96.0.1:80 endpoint 10.0.0.1:1 localendpoint 10.0.0.1:1",
            "sideways",
        ] {
            let e = parse_rules("fw add x", &w(bad)).unwrap_err();
            assert_eq!(e.exit_code(), crate::EXIT_USAGE, "{bad}: {e}");
            assert!(e.to_string().starts_with("fw add x: "), "{e}");
        }
        assert_eq!(parse_owner("a b").unwrap_err().exit_code(), crate::EXIT_USAGE);
        assert!(parse_owner("podnet/c1:eth0").is_ok());
    }
}
