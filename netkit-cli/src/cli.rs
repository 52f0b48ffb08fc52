//! The command line as clap sees it: global options, objects and verbs.
//!
//! The arguments after a verb are iproute2's words (`type veth peer name v1`, `via GW dev D`);
//! clap collects them as they are and [`crate::words`] reads them, so they read exactly as with
//! `ip`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `netkit`: network namespaces and what is in them (links, addresses, routes, rules,
/// neighbours, FDB entries, `net.*` sysctls, change events) with iproute2's verbs, and netkit's
/// own lab topologies, IPAM stores and firewall.
#[derive(Parser, Debug, Clone)]
///
/// The help is laid out for 100 columns whatever the terminal (`term_width`; clap's "wrap_help"
/// feature is off, so no text is wrapped to the terminal): it is the same everywhere, and the
/// snapshot tests hold it.
#[command(
    name = "netkit",
    version,
    term_width = 100,
    about = "Network namespaces with iproute2's verbs: links, addresses, routes, rules, neighbours, \
        bridge FDBs, sysctls and a change monitor; and lab topologies, IPAM and a firewall",
    long_about = "Network namespaces with iproute2's verbs: links, addresses, routes, rules, \
        neighbours, bridge FDBs, sysctls and a change monitor; and lab topologies, IPAM and a \
        firewall.\n\n\
        Every operation goes through netkit-core (netlink and /proc/sys; no `ip`, `bridge` or \
        `sysctl` underneath). Errors are one line naming the object, the namespace and the \
        kernel's message.\n\n\
        Exit codes: 0 success, 1 the operation failed, 2 bad usage.",
    after_help = "Examples:\n  \
        netkit netns add demo\n  \
        netkit -n demo link add v0 type veth peer name v1\n  \
        netkit -n demo -j link show\n  \
        netkit -n demo addr add 10.0.0.1/24 dev v0\n  \
        netkit -n demo -j monitor\n  \
        netkit -b commands.txt --force"
)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: Global,

    /// Read commands from FILE (`-` for stdin), one per line, as `ip -batch` does: blank lines
    /// and `#` comments are skipped, the first failing line stops the batch (see --force).
    #[arg(short = 'b', long = "batch", value_name = "FILE")]
    pub batch: Option<PathBuf>,

    /// With --batch: go on after a failing line (the exit code is still that of the first
    /// failure).
    #[arg(long, requires = "batch")]
    pub force: bool,

    /// The object and its verb.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options valid with every command (and on every batch line).
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Work in the named network namespace NAME (as `ip -n NAME`).
    #[arg(short = 'n', long = "netns", value_name = "NAME", global = true)]
    pub netns: Option<String>,

    /// Print JSON, with the keys `ip -j` uses wherever it has an equivalent.
    #[arg(short = 'j', long = "json", global = true)]
    pub json: bool,

    /// Print nothing but errors and asked-for output (no notes such as "nothing to delete").
    #[arg(short = 'q', long = "quiet", global = true)]
    pub quiet: bool,

    /// IPv4 only (`ip -4`): addr, route, rule and neigh list only IPv4; route, rule and neigh take
    /// only IPv4.
    #[arg(short = '4', global = true, conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// IPv6 only (`ip -6`): addr, route, rule and neigh list only IPv6 (route and rule list IPv4
    /// without it); route, rule and neigh take only IPv6.
    #[arg(short = '6', global = true)]
    pub ipv6: bool,
}

/// The objects, named as iproute2 names them.
///
/// An object without its verb (`netkit link`) is a one-line usage error naming the verbs, not
/// its help printed on stderr (`arg_required_else_help = false`): every error is one line.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Network namespaces (`ip netns`).
    #[command(arg_required_else_help = false)]
    Netns {
        /// The verb.
        #[command(subcommand)]
        verb: NetnsVerb,
    },
    /// Network devices (`ip link`).
    #[command(arg_required_else_help = false)]
    Link {
        /// The verb.
        #[command(subcommand)]
        verb: LinkVerb,
    },
    /// IP addresses (`ip address`).
    #[command(visible_alias = "address", arg_required_else_help = false)]
    Addr {
        /// The verb.
        #[command(subcommand)]
        verb: AddrVerb,
    },
    /// Routes (`ip route`).
    #[command(arg_required_else_help = false)]
    Route {
        /// The verb.
        #[command(subcommand)]
        verb: RouteVerb,
    },
    /// Policy routing rules (`ip rule`).
    #[command(arg_required_else_help = false)]
    Rule {
        /// The verb.
        #[command(subcommand)]
        verb: RuleVerb,
    },
    /// Neighbours: ARP and NDP entries (`ip neigh`).
    #[command(
        visible_alias = "neighbour",
        visible_alias = "neighbor",
        arg_required_else_help = false
    )]
    Neigh {
        /// The verb.
        #[command(subcommand)]
        verb: NeighVerb,
    },
    /// The forwarding database of bridges and VXLAN devices (`bridge fdb`).
    #[command(arg_required_else_help = false)]
    Fdb {
        /// The verb.
        #[command(subcommand)]
        verb: FdbVerb,
    },
    /// Kernel settings under net.* of the namespace (`sysctl`, as `ip netns exec NS sysctl`).
    #[command(
        arg_required_else_help = false,
        after_help = "Keys are sysctl's: net.ipv4.ip_forward, net.ipv4.conf.v0.forwarding, or the slash \
        form net/ipv4/conf/v0/forwarding (where a dot is part of a name: net/ipv4/conf/v0.100/rp_filter). \
        Only net.* keys: they are per network namespace, the others would change the machine.\n\n\
        Examples:\n  \
        netkit -n demo sysctl set net.ipv4.ip_forward=1\n  \
        netkit -n demo -j sysctl get net.ipv4.ip_forward net.ipv4.conf.v0.forwarding"
    )]
    Sysctl {
        /// The verb.
        #[command(subcommand)]
        verb: SysctlVerb,
    },
    /// Print changes to links, addresses, routes, neighbours and FDB entries as they happen
    /// (`ip monitor`), one line each, until interrupted.
    #[command(after_help = MONITOR_HELP)]
    Monitor(MonitorArgs),
    /// Pods across nodes: the overlay agent of this node (Flannel's node daemon)
    ///
    /// It leases this node's pod subnet from a store (etcd or a shared directory), programs a
    /// backend (vxlan, host-gw, udp, bgp) for every other node, repairs drift, and writes the subnet file
    /// netkit-cni reads; it runs until SIGTERM, which leaves the data path in place.
    /// `netkit agent status` prints what it is doing.
    #[command(after_help = AGENT_HELP)]
    Agent(Box<crate::agent::AgentArgs>),
    /// Topology files: a whole lab of namespaces, bridges and links (netkit's format or
    /// containerlab's `*.clab.yml`) applied, compared, drawn and destroyed.
    #[command(arg_required_else_help = false)]
    Topo {
        /// The verb.
        #[command(subcommand)]
        verb: crate::topo::TopoVerb,
    },
    /// IP address management: netkit's allocator on a store directory and a CNI-style pool
    /// configuration (the netkit-ipam plugin's store). Touches no namespace.
    #[command(
        arg_required_else_help = false,
        after_help = "OWNER: CONTAINERID[:IFNAME] (IFNAME defaults to eth0); the store is DIR/NETWORK.\n\n\
        Examples:\n  \
        netkit ipam --config podnet.json --store /tmp/ipam allocate c1:eth0\n  \
        netkit -j ipam --config podnet.json show\n  \
        netkit ipam --config podnet.json gc c1:eth0 c2:eth0"
    )]
    Ipam {
        /// The pool and its store.
        #[command(flatten)]
        opts: crate::ipam::IpamOpts,
        /// The verb.
        #[command(subcommand)]
        verb: crate::ipam::IpamVerb,
    },
    /// Firewall and NAT of a namespace (netkit's nftables or iptables rules): port mappings,
    /// masquerades, services, held by owners.
    #[command(
        arg_required_else_help = false,
        after_help = "Examples:\n  \
        netkit -n host fw add c1:eth0 port 8080:10.88.0.2:80/tcp masquerade 10.88.0.0/24\n  \
        netkit -n host -j fw list\n  \
        netkit -n host fw --driver iptables --state-dir /run/lab/fw del c1:eth0"
    )]
    Fw {
        /// Which firewall.
        #[command(flatten)]
        opts: crate::fw::FwOpts,
        /// The verb.
        #[command(subcommand)]
        verb: crate::fw::FwVerb,
    },
    /// Services across the cluster (kube-proxy's objects): Services and their endpoints in the
    /// cluster store, which every node's `netkit agent --services` programs into its firewall.
    #[command(
        arg_required_else_help = false,
        after_help = "A port is [NAME=]PORT[:TARGETPORT][/tcp|udp|sctp][@NODEPORT]; an endpoint IP@NODE.\n\n\
        Examples:\n  \
        netkit service --store etcd=http://10.0.0.1:2379 add default/web --cluster-ip 10.96.0.10 --type NodePort --port http=80:8080\n  \
        netkit service --store etcd=http://10.0.0.1:2379 endpoints default/web add 10.244.1.5@node-1 10.244.2.7@node-2\n  \
        netkit -j service --store file=/run/lab list"
    )]
    Service {
        /// The cluster store.
        #[command(flatten)]
        opts: crate::service::ServiceOpts,
        /// The verb.
        #[command(subcommand)]
        verb: crate::service::ServiceVerb,
    },
    /// Network policy across the cluster (Kubernetes NetworkPolicy): policies, the pods and
    /// namespaces they select, in the cluster store; every node's `netkit agent --policy`
    /// enforces them for its pods.
    #[command(
        arg_required_else_help = false,
        after_help = "Examples:\n  \
        netkit policy --store etcd=http://10.0.0.1:2379 add back/allow-shop -f allow-shop.json\n  \
        netkit policy --store etcd=http://10.0.0.1:2379 pod set back/db --ip 10.244.1.5 --node node-1 --iface veth1a2b --label app=db\n  \
        netkit policy --store etcd=http://10.0.0.1:2379 namespace front --label team=shop\n  \
        netkit -j policy --store file=/run/lab list"
    )]
    Policy {
        /// The cluster store.
        #[command(flatten)]
        opts: crate::service::ServiceOpts,
        /// The verb.
        #[command(subcommand)]
        verb: crate::policy::PolicyVerb,
    },
    /// Print a shell completion script (`netkit completions bash > /etc/bash_completion.d/netkit`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff: `netkit man > netkit.1; man ./netkit.1`).
    Man,
}

/// iproute2's words after a verb, taken as they are (hyphens included).
#[derive(Args, Debug, Clone, Default)]
pub struct Words {
    /// The words (see the verb's help).
    #[arg(
        value_name = "ARGS",
        num_args = 0..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub words: Vec<String>,
}

/// `netkit netns …`
#[derive(Subcommand, Debug, Clone)]
pub enum NetnsVerb {
    /// Create the named namespace NAME (`/run/netns/NAME`, as `ip netns add`); loopback stays down.
    Add {
        /// The namespace's name.
        name: String,
    },
    /// Delete the named namespace NAME (as `ip netns del`); one that does not exist is a note,
    /// not an error.
    #[command(visible_alias = "delete")]
    Del {
        /// The namespace's name.
        name: String,
    },
    /// List the named namespaces (as `ip netns list`).
    #[command(visible_alias = "show", visible_alias = "ls")]
    List,
    /// Print the names of the named namespaces process PID is in (as `ip netns identify`); nothing
    /// when it is in none. -j: a list of names.
    #[command(after_help = "ARGS: PID, a process id.\n\n\
        Examples:\n  netkit netns identify 4242\n  netkit -j netns identify $$")]
    Identify {
        /// The process.
        pid: u32,
    },
    /// Run a program inside namespace NAME (as `ip netns exec`); the exit code is the program's.
    #[command(after_help = "Example:\n  netkit netns exec demo -- ip -br link")]
    Exec {
        /// The namespace's name.
        name: String,
        /// The program and its arguments (after `--` when they start with `-`).
        #[arg(
            value_name = "CMD",
            required = true,
            num_args = 1..,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        command: Vec<String>,
    },
}

/// `netkit link …`
#[derive(Subcommand, Debug, Clone)]
pub enum LinkVerb {
    /// Create a link (as `ip link add`).
    #[command(after_help = "ARGS, as ip spells them:\n  \
        [mtu N] [address MAC] type veth peer [name] PEER [netns NS] [address MAC]\n  \
        [mtu N] [address MAC] type bridge [stp_state 0|1] [vlan_filtering 0|1]\n  \
        [mtu N] [address MAC] type vxlan id VNI [dstport PORT] [local IP] [remote IP] [dev PARENT] [ttl N] [nolearning]\n  \
        [mtu N] [link PARENT] type macvlan [dev PARENT] [mode private|vepa|bridge|passthru|source]\n  \
        type tun|tap [user UID] [group GID]\n  \
        [mtu N] type ipip [local IPV4] [remote IPV4] [dev PARENT] [ttl N]   (fails where the kernel has no ipip)\n\n\
        Examples:\n  \
        netkit -n demo link add v0 type veth peer name v1\n  \
        netkit -n demo link add vx0 type vxlan id 42 dstport 4789 local 10.0.0.1 dev v0")]
    Add {
        /// The new link's name.
        name: String,
        /// The link's kind and settings (see below).
        #[command(flatten)]
        args: Words,
    },
    /// Change a link (as `ip link set`); several changes go in one request.
    #[command(after_help = "ARGS, any number of:\n  \
        up | down | mtu N | address MAC | master BRIDGE | nomaster | netns NS | name NEWNAME\n  \
        alias TEXT | promisc on|off | group N\n\n\
        Example:\n  netkit -n demo link set v0 mtu 1400 master br0 up")]
    Set {
        /// The link's name.
        name: String,
        /// The changes (see below).
        #[command(flatten)]
        args: Words,
    },
    /// Delete a link (as `ip link del`); one that does not exist is a note, not an error.
    #[command(visible_alias = "delete")]
    Del {
        /// The link's name.
        name: String,
    },
    /// Show every link, or one (as `ip link show [dev] NAME`).
    #[command(visible_alias = "list")]
    Show {
        /// `[dev] NAME`.
        #[command(flatten)]
        args: Words,
    },
}

/// `netkit addr …`
#[derive(Subcommand, Debug, Clone)]
pub enum AddrVerb {
    /// Add an address (as `ip addr add`).
    #[command(after_help = "ARGS: PREFIX dev NAME [nodad] [noprefixroute] [label LABEL]\n\n\
        Example:\n  netkit -n demo addr add 10.0.0.1/24 dev v0")]
    Add {
        /// The address and its device.
        #[command(flatten)]
        args: Words,
    },
    /// Remove an address (as `ip addr del`); one that is not there is a note, not an error.
    #[command(visible_alias = "delete", after_help = "ARGS: PREFIX dev NAME")]
    Del {
        /// The address and its device.
        #[command(flatten)]
        args: Words,
    },
    /// Show the addresses of every link, or of one (as `ip addr show [dev NAME]`).
    #[command(visible_alias = "list", after_help = "ARGS: [[dev] NAME]")]
    Show {
        /// `[dev NAME]`.
        #[command(flatten)]
        args: Words,
    },
    /// Remove every address of a link (as `ip addr flush dev NAME`).
    #[command(after_help = "ARGS: [dev] NAME")]
    Flush {
        /// `dev NAME`.
        #[command(flatten)]
        args: Words,
    },
}

/// `netkit route …`
#[derive(Subcommand, Debug, Clone)]
pub enum RouteVerb {
    /// Add a route (as `ip route add`).
    #[command(after_help = ROUTE_ARGS)]
    Add {
        /// The route.
        #[command(flatten)]
        args: Words,
    },
    /// Add or replace a route (as `ip route replace`).
    #[command(after_help = ROUTE_ARGS)]
    Replace {
        /// The route.
        #[command(flatten)]
        args: Words,
    },
    /// Delete a route (as `ip route del`); one that is not there is not an error.
    #[command(visible_alias = "delete", after_help = ROUTE_ARGS)]
    Del {
        /// The route.
        #[command(flatten)]
        args: Words,
    },
    /// List routes (as `ip route show`): table main, IPv4 unless -6.
    #[command(visible_alias = "list", after_help = "ARGS: [table main|local|all|N] [dev NAME]")]
    Show {
        /// Filters.
        #[command(flatten)]
        args: Words,
    },
    /// Show the route the kernel would use to reach an address (as `ip route get`).
    #[command(after_help = "ARGS: ADDRESS\n\nExample:\n  netkit -n demo route get 10.0.0.2")]
    Get {
        /// `ADDRESS`.
        #[command(flatten)]
        args: Words,
    },
}

/// The words of `route add|replace|del`.
const ROUTE_ARGS: &str = "ARGS: PREFIX|default [via GATEWAY] [dev NAME] [table main|N] [metric N] [onlink]\n      \
    [src ADDRESS] [proto static|boot|kernel|N] [mtu N]\n\n\
    Examples:\n  \
    netkit -n demo route add default via 10.0.0.254 dev v0\n  \
    netkit -n demo route replace 10.1.0.0/16 via 10.0.0.253 table 100 metric 10";

/// `netkit rule …`
#[derive(Subcommand, Debug, Clone)]
pub enum RuleVerb {
    /// Add a rule (as `ip rule add`); IPv4 unless `-6` or an IPv6 prefix.
    #[command(after_help = RULE_ARGS)]
    Add {
        /// The rule.
        #[command(flatten)]
        args: Words,
    },
    /// Delete the first rule that matches every word given (as `ip rule del`); none matching is
    /// a note, not an error. At least one word is needed.
    #[command(visible_alias = "delete", after_help = RULE_ARGS)]
    Del {
        /// The rule.
        #[command(flatten)]
        args: Words,
    },
    /// List the rules of a family in priority order (as `ip rule show`): IPv4 unless `-6`.
    #[command(
        visible_alias = "list",
        after_help = "ARGS: none\n\n\
        Examples:\n  netkit -n demo rule show\n  netkit -n demo -6 -j rule show"
    )]
    Show {
        /// No words.
        #[command(flatten)]
        args: Words,
    },
}

const RULE_ARGS: &str = "ARGS, in any order, as ip spells them:\n  \
    [not] [from PREFIX|all] [to PREFIX|all] [fwmark MARK[/MASK]] [iif DEV] [oif DEV]\n  \
    [priority|pref|preference N] [table|lookup main|local|default|N] [suppress_prefixlength N]\n  \
    [blackhole|unreachable|prohibit|nop]\n\n\
    MARK and MASK are numbers (0x… for hex). Without an action and a table, add looks up main.\n\n\
    Examples:\n  \
    netkit -n demo rule add from 10.0.0.0/24 table 100 priority 1000\n  \
    netkit -n demo rule add fwmark 0x1/0xff lookup 200 pref 1001\n  \
    netkit -n demo -6 rule add to fd00:dead::/32 prohibit\n  \
    netkit -n demo rule del priority 1000";

/// `netkit neigh …`
#[derive(Subcommand, Debug, Clone)]
pub enum NeighVerb {
    /// Add a neighbour entry (as `ip neigh add`); one for the address already there fails.
    #[command(after_help = NEIGH_ARGS)]
    Add {
        /// The entry.
        #[command(flatten)]
        args: Words,
    },
    /// Add or overwrite a neighbour entry (as `ip neigh replace`).
    #[command(visible_alias = "change", after_help = NEIGH_ARGS)]
    Replace {
        /// The entry.
        #[command(flatten)]
        args: Words,
    },
    /// Delete a neighbour entry (as `ip neigh del`); one that is not there (or a device that is
    /// not there) is a note, not an error, as with `addr del` and `link del`.
    #[command(
        visible_alias = "delete",
        after_help = "ARGS: [proxy] [to] ADDR dev DEV\n\n\
            Examples:\n  netkit -n demo neigh del 10.0.0.2 dev v0\n  netkit -n demo neigh del proxy 10.0.0.9 dev v0"
    )]
    Del {
        /// The address and its device.
        #[command(flatten)]
        args: Words,
    },
    /// List neighbour entries (as `ip neigh show`): as ip, entries that are only NOARP (the
    /// kernel's multicast ones) or have no state are left out unless `nud all`; `proxy` lists
    /// the proxy entries instead; `-4`/`-6` keep one family.
    #[command(
        visible_alias = "list",
        after_help = "ARGS: [dev DEV] [proxy] [nud all]\n\n\
            Examples:\n  netkit -n demo neigh show dev v0\n  netkit -n demo -j neigh show proxy"
    )]
    Show {
        /// The filters.
        #[command(flatten)]
        args: Words,
    },
}

const NEIGH_ARGS: &str = "ARGS, in any order:\n  \
    [to] ADDR lladdr MAC dev DEV [nud permanent|reachable|stale|noarp] [router] [proxy]\n\n\
    The state is permanent unless nud says otherwise. A proxy entry (answer ARP/NDP for ADDR on\n\
    DEV) takes no lladdr: [proxy] ADDR dev DEV.\n\n\
    Examples:\n  \
    netkit -n demo neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev v0\n  \
    netkit -n demo neigh replace fd00::2 lladdr 02:00:00:00:00:03 dev v0 nud reachable router\n  \
    netkit -n demo neigh add proxy 10.0.0.9 dev v0";

/// `netkit fdb …`
#[derive(Subcommand, Debug, Clone)]
pub enum FdbVerb {
    /// Add an entry (as `bridge fdb add`); one already there fails.
    #[command(after_help = FDB_ARGS)]
    Add {
        /// The entry.
        #[command(flatten)]
        args: Words,
    },
    /// Add a destination to an entry (as `bridge fdb append`): on a VXLAN device, every
    /// `00:00:00:00:00:00` destination gets a copy of broadcast and unknown frames.
    #[command(after_help = FDB_ARGS)]
    Append {
        /// The entry.
        #[command(flatten)]
        args: Words,
    },
    /// Add or overwrite an entry (as `bridge fdb replace`).
    #[command(after_help = FDB_ARGS)]
    Replace {
        /// The entry.
        #[command(flatten)]
        args: Words,
    },
    /// Delete an entry (as `bridge fdb del`); with `dst`, only that destination of a VXLAN
    /// entry. One that is not there (or a device that is not there) is a note, not an error.
    #[command(visible_alias = "delete", after_help = FDB_ARGS)]
    Del {
        /// The entry.
        #[command(flatten)]
        args: Words,
    },
    /// List entries (as `bridge fdb show`): every device's, one device's (`dev`, printed
    /// without its name as bridge does), or a bridge's and its ports' (`br`).
    #[command(
        visible_alias = "list",
        after_help = "ARGS: [dev|brport DEV] [br BRIDGE]\n\n\
            Examples:\n  netkit -n demo fdb show dev vx0\n  netkit -n demo -j fdb show br br0"
    )]
    Show {
        /// The filters.
        #[command(flatten)]
        args: Words,
    },
}

const FDB_ARGS: &str = "ARGS, in any order, as bridge spells them:\n  \
    MAC dev DEV [dst IP] [vni N] [port N] [vlan N] [self] [master] [permanent|local|static]\n\n\
    Without self or master the entry goes in the device's own table (self). Without a state\n\
    it is permanent, as with bridge.\n\n\
    Examples:\n  \
    netkit -n demo fdb append 00:00:00:00:00:00 dev vx0 dst 10.0.0.2 self permanent\n  \
    netkit -n demo fdb add 02:00:00:00:00:02 dev v0 master static\n  \
    netkit -n demo fdb del 00:00:00:00:00:00 dev vx0 dst 10.0.0.2 self";
/// `netkit sysctl …`
#[derive(Subcommand, Debug, Clone)]
pub enum SysctlVerb {
    /// Read settings (as `sysctl KEY…`): `KEY = VALUE` lines; -j: one object {"KEY": "VALUE", …}
    /// (values are the kernel's text, as strings).
    #[command(after_help = "ARGS: KEY…\n\n\
        Examples:\n  \
        netkit -n demo sysctl get net.ipv4.ip_forward\n  \
        netkit -n demo -j sysctl get net.ipv4.conf.v0.forwarding net/ipv6/conf/all/forwarding")]
    Get {
        /// The keys (dotted or slash form).
        #[arg(value_name = "KEY", required = true, num_args = 1..)]
        keys: Vec<String>,
    },
    /// Write settings (as `sysctl -w KEY=VALUE…`), in order; the first failure stops (earlier
    /// writes stay). Prints nothing: read them back with `get`.
    #[command(after_help = "ARGS: KEY=VALUE… | KEY VALUE\n\n\
        Examples:\n  \
        netkit -n demo sysctl set net.ipv4.ip_forward=1 net.ipv4.conf.v0.rp_filter=2\n  \
        netkit -n demo sysctl set net.ipv6.conf.v0.accept_dad -1")]
    Set {
        /// `KEY=VALUE` settings, or one `KEY VALUE`.
        #[arg(
            value_name = "KEY=VALUE",
            required = true,
            num_args = 1..,
            allow_negative_numbers = true
        )]
        settings: Vec<String>,
    },
}

/// The arguments of `netkit monitor`.
#[derive(Args, Debug, Clone, Default)]
pub struct MonitorArgs {
    /// What to watch (any of them; none or `all`: every one).
    #[arg(value_enum, value_name = "OBJECT")]
    pub objects: Vec<MonitorObject>,
    /// Exit after printing N events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// The objects `netkit monitor` watches, as `ip monitor` names them.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorObject {
    /// Links (`[LINK]`).
    Link,
    /// IPv4 and IPv6 addresses (`[ADDR]`).
    #[value(alias = "address")]
    Addr,
    /// IPv4 and IPv6 routes, every table (`[ROUTE]`).
    Route,
    /// Neighbour (ARP/NDP) entries (`[NEIGH]`), and bridge FDB entries (`[FDB]`), which the
    /// kernel reports with them.
    #[value(alias = "neighbour", alias = "neighbor")]
    Neigh,
    /// All of the above.
    All,
}

/// `netkit agent --help`'s examples.
const AGENT_HELP: &str = "The agent programs the namespace of -n NODE (or its own) and reaches the store from \
the namespace it runs in: run it inside the node (ip netns exec NODE netkit agent ...) when the store is on \
the node's underlay. Pods get their node's subnet and MTU through netkit-cni's \
\"ipam\": {\"type\": \"netkit-ipam\", \"subnetFile\": \"/run/netkit/subnet.env\"}.\n\n\
Examples:\n  \
netkit agent --store etcd=http://192.168.50.100:2379 --network 10.244.0.0/16 --backend vxlan\n  \
netkit agent --store file=/var/lib/netkit/leases --network 10.244.0.0/16 --backend host-gw --iface eth0\n  \
netkit agent status\n  \
netkit -j agent status --status-file /run/netkit/agent.json";

/// The help after `netkit monitor --help`: what the lines and JSON objects are.
const MONITOR_HELP: &str = "ARGS: [link] [addr|address] [route] [neigh] | [all]   (none: all)\n\n\
    Once subscribed, netkit writes \"netkit: note: monitoring OBJECTS in netns NS\" on stderr (not \
    with -q): every change after that line is reported. It runs until SIGINT or SIGTERM (exit 0), \
    until stdout is closed (exit 0, at the next event), or until --count events were printed.\n\n\
    Text, one line per event, flushed: a tag, \"Deleted \" for a removal, then the object as \
    `ip` shows it (neighbours and FDB entries as `neigh show` and `fdb show` print them), on one \
    line:\n  \
    [LINK] 5: v0@v1: <BROADCAST,MULTICAST,UP> mtu 1500 ... link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n  \
    [ADDR] 5: v0 inet 10.0.0.1/24 brd 10.0.0.255 scope global v0\n  \
    [ROUTE] Deleted 10.0.0.0/24 dev v0 proto kernel scope link src 10.0.0.1\n  \
    [NEIGH] 10.0.0.2 dev v0 lladdr 02:00:00:00:00:02 PERMANENT\n  \
    [FDB] 02:00:00:00:00:02 dev v1 master br0 permanent\n  \
    [OVERRUN] events were lost: list the state again\n\n\
    -j: JSON Lines, one object per event: {\"event\": \"new\"|\"del\", \"object\": \
    \"link\"|\"addr\"|\"route\"|\"neigh\"|\"fdb\", KEYS...}, KEYS being the keys the \
    object's listing prints with -j, which are ip -j's (link: link show's; addr: ifindex, ifname and the keys of one addr \
    show addr_info entry; route: route show's; neigh: neigh show's; fdb: fdb show's, as bridge -j \
    fdb); \"new\" is also a change. \
    Lost events: {\"event\": \"overrun\"}.\n\n\
    Examples:\n  \
    netkit -n demo monitor\n  \
    netkit -n demo -j monitor --count 3 link addr";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// Every object without its verb is clap's one-line "requires a subcommand" error, never
    /// its help as an error (what clap's derive does unless told otherwise).
    #[test]
    fn no_command_answers_a_missing_verb_with_its_help() {
        fn check(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                assert!(!sub.is_arg_required_else_help_set(), "{path}: arg_required_else_help");
                check(sub, &path);
            }
        }
        check(&Cli::command(), "netkit");
    }

    #[test]
    fn words_keep_hyphens_and_globals_go_anywhere() {
        let cli = Cli::try_parse_from([
            "netkit", "link", "add", "v0", "type", "veth", "peer", "name", "v-1", "-j",
        ])
        .unwrap();
        // `-j` after the words is a word: trailing words are taken as they are.
        match cli.command {
            Some(Command::Link {
                verb: LinkVerb::Add { name, args },
            }) => {
                assert_eq!(name, "v0");
                assert_eq!(args.words, ["type", "veth", "peer", "name", "v-1", "-j"]);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["netkit", "link", "-n", "x", "show"]).unwrap();
        assert_eq!(cli.global.netns.as_deref(), Some("x"));
    }

    #[test]
    fn monitor_objects_take_ip_s_names() {
        let cli = Cli::try_parse_from(["netkit", "monitor", "address", "neighbour", "--count", "2", "-j"]).unwrap();
        match cli.command {
            Some(Command::Monitor(args)) => {
                assert_eq!(args.objects, [MonitorObject::Addr, MonitorObject::Neigh]);
                assert_eq!(args.count, Some(2));
            }
            other => panic!("{other:?}"),
        }
        assert!(cli.global.json);
        assert!(Cli::try_parse_from(["netkit", "monitor", "--count", "0"]).is_err());
        assert!(Cli::try_parse_from(["netkit", "monitor", "rule"]).is_err());
    }

    #[test]
    fn sysctl_set_takes_negative_values_and_globals_after() {
        let cli = Cli::try_parse_from([
            "netkit",
            "sysctl",
            "set",
            "net.ipv6.conf.v0.accept_dad",
            "-1",
            "-n",
            "x",
        ])
        .unwrap();
        assert_eq!(cli.global.netns.as_deref(), Some("x"));
        match cli.command {
            Some(Command::Sysctl {
                verb: SysctlVerb::Set { settings },
            }) => assert_eq!(settings, ["net.ipv6.conf.v0.accept_dad", "-1"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exec_takes_the_program_with_or_without_dashes() {
        for args in [
            &["netkit", "netns", "exec", "a", "--", "ip", "-br", "link"][..],
            &["netkit", "netns", "exec", "a", "ip", "-br", "link"][..],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            match cli.command {
                Some(Command::Netns {
                    verb: NetnsVerb::Exec { name, command },
                }) => {
                    assert_eq!(name, "a");
                    assert_eq!(command, ["ip", "-br", "link"]);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
