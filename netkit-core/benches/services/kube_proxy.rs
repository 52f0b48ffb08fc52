//! kube-proxy's iptables mode, written by this bench: the `iptables-restore` input kube-proxy's
//! proxier (kubernetes/kubernetes `pkg/proxy/iptables/proxier.go`) produces for a set of
//! ClusterIP services, for a full sync and for a partial sync after one endpoint change.
//!
//! The layout (nat table; a masquerade mark of `0x4000`, a cluster CIDR of 10.244.0.0/16):
//!
//! ```text
//! PREROUTING, OUTPUT   -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
//! POSTROUTING          -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
//! KUBE-SERVICES        per service port: -m comment --comment "ns/name:port cluster IP"
//!                        -m tcp -p tcp -d VIP/32 --dport P -j KUBE-SVC-<hash>
//!                      last: … "kubernetes service nodeports; …" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
//! KUBE-SVC-<hash>      -d VIP/32 --dport P ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
//!                      endpoint i of n: -m statistic --mode random --probability 1/(n-i) -j KUBE-SEP-<hash>
//!                      (the last without the statistic match)
//! KUBE-SEP-<hash>      -s EP/32 -j KUBE-MARK-MASQ
//!                      -m tcp -p tcp -j DNAT --to-destination EP:PORT
//! KUBE-MARK-MASQ       -j MARK --or-mark 0x4000
//! KUBE-POSTROUTING     -m mark ! --mark 0x4000/0x4000 -j RETURN; -j MARK --xor-mark 0x4000;
//!                      -j MASQUERADE --random-fully
//! ```
//!
//! and the filter table's fixed chains (`KUBE-FORWARD` with its three rules, the others empty
//! while every service has endpoints). Chain names are `KUBE-SVC-`/`KUBE-SEP-` and 16
//! characters of base32 of a hash of the service port (and endpoint), as kube-proxy names them;
//! the hash here is the standard library's, not SHA-256 (no new dependency; the names have the
//! same length and alphabet).
//!
//! A full sync is one `iptables-restore --noflush --counters` declaring every chain; a partial
//! sync (kube-proxy ≥ 1.26, `MinimizeIPTablesRestore`) declares and writes the fixed chains
//! (so `KUBE-SERVICES` whole) and only the changed service's `KUBE-SVC` and `KUBE-SEP` chains,
//! deleting the chain of a removed endpoint (`-X`).

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use netkit_core::NetNs;

use super::Res;

/// The masquerade mark kube-proxy uses by default (bit 14).
const MARK: &str = "0x4000";
/// The cluster CIDR (`--cluster-cidr`): connections from outside it are masqueraded.
const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// One ClusterIP service port with its endpoints.
#[derive(Clone, Debug)]
pub struct Svc {
    /// `namespace/name`.
    pub id: String,
    /// The cluster IP.
    pub vip: Ipv4Addr,
    /// The service port (TCP).
    pub port: u16,
    /// The endpoints' addresses (all at `target`).
    pub eps: Vec<Ipv4Addr>,
    /// The endpoints' port.
    pub target: u16,
}

impl Svc {
    /// kube-proxy's name of the service port, `namespace/name:port` (the port unnamed).
    fn port_name(&self) -> String {
        format!("{}:", self.id)
    }

    /// `KUBE-SVC-<16 base32>`.
    pub fn svc_chain(&self) -> String {
        format!("KUBE-SVC-{}", hash16(&format!("{}tcp", self.port_name())))
    }

    /// `KUBE-SEP-<16 base32>` of endpoint `ep`.
    pub fn sep_chain(&self, ep: Ipv4Addr) -> String {
        format!(
            "KUBE-SEP-{}",
            hash16(&format!("{}tcp{ep}:{}", self.port_name(), self.target))
        )
    }
}

/// 16 characters of base32 (RFC 4648 alphabet) of an 80-bit hash of `text`.
fn hash16(text: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        salt.hash(&mut h);
        h.finish()
    };
    let bits = (u128::from(half(1)) << 64) | u128::from(half(2));
    (0..16)
        .map(|i| ALPHABET[((bits >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// The one-time setup kube-proxy does with single `iptables` calls before its first sync
/// (`EnsureChain`, `EnsureRule`): its top chains and the jumps into them.
pub fn setup() -> String {
    "*filter\n\
     :KUBE-FORWARD - [0:0]\n\
     :KUBE-SERVICES - [0:0]\n\
     :KUBE-EXTERNAL-SERVICES - [0:0]\n\
     :KUBE-NODEPORTS - [0:0]\n\
     :KUBE-PROXY-FIREWALL - [0:0]\n\
     -I FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
     -I FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
     -I OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
     COMMIT\n\
     *nat\n\
     :KUBE-SERVICES - [0:0]\n\
     :KUBE-POSTROUTING - [0:0]\n\
     -I PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
     -I OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
     -I POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
     COMMIT\n"
        .to_string()
}

/// The filter table as every sync writes it (all services have endpoints: no reject rules).
fn filter_table(out: &mut String) {
    out.push_str(
        "*filter\n\
         :KUBE-NODEPORTS - [0:0]\n\
         :KUBE-SERVICES - [0:0]\n\
         :KUBE-EXTERNAL-SERVICES - [0:0]\n\
         :KUBE-FORWARD - [0:0]\n\
         :KUBE-PROXY-FIREWALL - [0:0]\n\
         -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         COMMIT\n",
    );
}

/// The fixed nat chains' declarations.
const FIXED_CHAINS: &str =
    ":KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n";

/// The fixed nat chains' rules (all but `KUBE-SERVICES`).
fn fixed_rules(out: &mut String) {
    let _ = write!(
        out,
        "-A KUBE-POSTROUTING -m mark ! --mark {MARK}/{MARK} -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark {MARK}\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark {MARK}\n"
    );
}

/// `KUBE-SERVICES`: one rule per service port in `order`, then the node-ports rule.
fn services_chain(out: &mut String, svcs: &[Svc], order: &[usize]) {
    for &i in order {
        let s = &svcs[i];
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -m comment --comment \"{} cluster IP\" -m tcp -p tcp -d {}/32 --dport {} -j {}",
            s.port_name(),
            s.vip,
            s.port,
            s.svc_chain()
        );
    }
    out.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
}

/// A service's `KUBE-SVC` and `KUBE-SEP` declarations (into `chains`) and rules (into `rules`).
fn service_chains(chains: &mut String, rules: &mut String, s: &Svc) {
    let svc = s.svc_chain();
    let name = s.port_name();
    let _ = writeln!(chains, ":{svc} - [0:0]");
    let _ = writeln!(
        rules,
        "-A {svc} -m comment --comment \"{name} cluster IP\" -m tcp -p tcp -d {}/32 --dport {} ! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ",
        s.vip, s.port
    );
    let n = s.eps.len();
    for (i, ep) in s.eps.iter().enumerate() {
        let sep = s.sep_chain(*ep);
        let _ = write!(rules, "-A {svc} -m comment --comment \"{name} -> {ep}:{}\"", s.target);
        if i + 1 < n {
            let _ = write!(
                rules,
                " -m statistic --mode random --probability {:.10}",
                1.0 / (n - i) as f64
            );
        }
        let _ = writeln!(rules, " -j {sep}");
        let _ = writeln!(chains, ":{sep} - [0:0]");
        let _ = writeln!(
            rules,
            "-A {sep} -m comment --comment {name} -s {ep}/32 -j KUBE-MARK-MASQ"
        );
        let _ = writeln!(
            rules,
            "-A {sep} -m comment --comment {name} -m tcp -p tcp -j DNAT --to-destination {ep}:{}",
            s.target
        );
    }
}

/// A full sync: every chain declared and written; `KUBE-SERVICES` in `order`.
pub fn full(svcs: &[Svc], order: &[usize]) -> String {
    let mut out = String::with_capacity(svcs.len() * 3500);
    filter_table(&mut out);
    out.push_str("*nat\n");
    out.push_str(FIXED_CHAINS);
    let (mut chains, mut rules) = (String::new(), String::new());
    fixed_rules(&mut rules);
    services_chain(&mut rules, svcs, order);
    for &i in order {
        service_chains(&mut chains, &mut rules, &svcs[i]);
    }
    out.push_str(&chains);
    out.push_str(&rules);
    out.push_str("COMMIT\n");
    out
}

/// A partial sync after service `changed` changed: the fixed chains (`KUBE-SERVICES` whole),
/// the changed service's chains, and `-X` of the endpoint chains in `stale`.
pub fn partial(svcs: &[Svc], order: &[usize], changed: usize, stale: &[String]) -> String {
    let mut out = String::new();
    filter_table(&mut out);
    out.push_str("*nat\n");
    out.push_str(FIXED_CHAINS);
    let (mut chains, mut rules) = (String::new(), String::new());
    fixed_rules(&mut rules);
    services_chain(&mut rules, svcs, order);
    service_chains(&mut chains, &mut rules, &svcs[changed]);
    for c in stale {
        let _ = writeln!(chains, ":{c} - [0:0]");
        let _ = writeln!(rules, "-X {c}");
    }
    out.push_str(&chains);
    out.push_str(&rules);
    out.push_str("COMMIT\n");
    out
}

/// Run `restore` (`iptables-restore`, `iptables-legacy-restore`) in `ns` with kube-proxy's
/// flags (`-w 5 --noflush --counters`) on `input`; how long the process took, from spawn to
/// exit, or `None` when it was still running after `limit` (it is killed then, and the table
/// is as before: a restore commits at its end).
pub fn restore(ns: &NetNs, restore: &str, input: &str, limit: Duration) -> Res<Option<Duration>> {
    let t = Instant::now();
    let child = ns
        .command(restore)
        .args(["-w", "5", "--noflush", "--counters"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{restore}: {e}"))?;
    let mut child = netkit_test_support::KillOnDrop::new(child);
    // Fed from a thread: iptables-restore works as it reads, so a large input blocks the
    // writer for about as long as the restore takes.
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    // Bounded poll for its exit.
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if t.elapsed() > limit || super::stopped() {
            // Killed (and reaped) here; the writer then fails with a broken pipe.
            drop(child);
            let _ = writer.join();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = t.elapsed();
    writer
        .join()
        .map_err(|_| "the stdin writer panicked")?
        .map_err(|e| format!("{restore}: writing its input: {e}"))?;
    let out = child.into_inner().wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "{restore} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(Some(took))
}
