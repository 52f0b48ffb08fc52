//! BGP through BIRD 2, as Calico spreads pod routes: a node's configuration rendered from what
//! it owns and whom it peers with ([`BirdConfig`]), the daemon run inside the node's namespace
//! with its own control socket ([`Bird`]), reloaded in place (`birdc configure`) and asked for
//! its sessions (`birdc show protocols`) through [`BirdControl`], and followed with a pidfd
//! ([`BirdExit`]) so its death is noticed at once.
//!
//! What the configuration says:
//! * the node's blocks are static blackhole routes (protocol `blocks`): exported by BGP to the
//!   peers, and into the kernel, where the blackhole drops traffic to an unused address of a
//!   local block instead of sending it to the default route (Calico does the same);
//! * every peer is one `bgp` protocol named after it: iBGP in the node's AS; a peer on this
//!   node's segment is `direct` with `gateway direct` (a learned route goes via its owner when
//!   the owner is on this segment, else via the peer that told it — a router reflecting
//!   routes between segments); a peer behind a router is `multihop` with `gateway recursive`;
//!   the node's own blocks go out with its address as next hop and
//!   reflected routes keep their origin's, so traffic goes straight to the owning node, never
//!   through a reflector; a peer is marked as a route-reflector client when this node reflects;
//! * addresses the node announces for something else than pods (the service proxy's
//!   LoadBalancer addresses, [`BirdConfig::announce`]) are static routes of protocol
//!   `services`: exported by BGP like the blocks (each with this node as next hop, so a router
//!   learning one address from several nodes spreads or fails over between them), but kept
//!   out of this node's kernel (the node's firewall, not a route, answers for them);
//! * the kernel protocol exports the BGP-learned routes (protocol number 12, `proto bird`, which
//!   tells them apart) and the blackholes, and imports nothing.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ipnetwork::IpNetwork;

use crate::NetNs;

/// `/usr/sbin/bird` (Debian's `bird2`).
pub const BIRD: &str = "/usr/sbin/bird";
/// `/usr/sbin/birdc`.
pub const BIRDC: &str = "/usr/sbin/birdc";

/// Failures of BIRD's configuration or process.
#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    /// BIRD could not be started, asked or reloaded.
    #[error("bird in {netns}: {what}: {cause}")]
    Io {
        /// The namespace.
        netns: String,
        /// What was being done.
        what: String,
        /// The failure.
        cause: std::io::Error,
    },
    /// BIRD refused the configuration or answered something unexpected.
    #[error("bird in {netns}: {what}: {reply}")]
    Refused {
        /// The namespace.
        netns: String,
        /// What was asked.
        what: String,
        /// BIRD's reply.
        reply: String,
    },
}

/// One BGP peer of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BirdPeer {
    /// The peer's name (node name): the protocol is named after it.
    pub name: String,
    /// Its address on the underlay.
    pub ip: Ipv4Addr,
    /// Its AS.
    pub asn: u32,
    /// This node reflects routes to it (this node is a route reflector, the peer a client).
    pub rr_client: bool,
    /// The peer is not on this node's segment (reached through a router): a multihop session
    /// whose routes resolve recursively (BIRD refuses `gateway direct` there). Its routes are
    /// then not installed unless their next hop resolves; the agent encapsulates to such nodes
    /// (crossSubnet) or peers with the router between the segments instead.
    pub multihop: bool,
}

/// A node's BIRD configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BirdConfig {
    /// The node's router ID (its underlay address).
    pub router_id: Ipv4Addr,
    /// The node's AS (Calico's default is 64512).
    pub asn: u32,
    /// The blocks this node owns (announced, and blackholed locally).
    pub blocks: Vec<IpNetwork>,
    /// Blocks learned by BGP that stay out of the kernel: the agent reaches them by
    /// encapsulation (crossSubnet) and installs their routes itself.
    pub kernel_skip: Vec<IpNetwork>,
    /// Single addresses announced besides the blocks (IPv4 /32s: the LoadBalancer addresses
    /// the service proxy wants this node to announce); never installed in this node's kernel.
    pub announce: Vec<IpNetwork>,
    /// Its peers.
    pub peers: Vec<BirdPeer>,
    /// BGP hold time, seconds (90 by default; short in tests).
    pub hold_time: u16,
    /// Seconds between attempts to connect to a peer that is down.
    pub connect_retry: u16,
}

impl BirdConfig {
    /// A node with `router_id` in `asn`, no blocks, no peers, BGP's default timers (hold 90 s,
    /// connect retry 5 s).
    pub fn new(router_id: Ipv4Addr, asn: u32) -> Self {
        Self {
            router_id,
            asn,
            blocks: Vec::new(),
            kernel_skip: Vec::new(),
            announce: Vec::new(),
            peers: Vec::new(),
            hold_time: 90,
            connect_retry: 5,
        }
    }

    /// The configuration file's text.
    pub fn render(&self) -> String {
        let mut c = String::new();
        let _ = writeln!(
            c,
            "# netkit: generated, rewritten on every change\nrouter id {};\n",
            self.router_id
        );
        c.push_str("protocol device {\n  scan time 10;\n}\n\n");
        c.push_str("protocol direct {\n  ipv4;\n  interface \"-*\";\n}\n\n");
        c.push_str("protocol static blocks {\n  ipv4;\n");
        for b in self.blocks.iter().filter(|b| b.is_ipv4()) {
            let _ = writeln!(c, "  route {b} blackhole;");
        }
        c.push_str("}\n\n");
        // A static protocol needs a destination; the blackhole never reaches this node's
        // kernel (the kernel protocol exports only blocks and learned routes).
        c.push_str("protocol static services {\n  ipv4;\n");
        for a in self.announce.iter().filter(|a| a.is_ipv4()) {
            let _ = writeln!(c, "  route {a} blackhole;");
        }
        c.push_str("}\n\n");
        c.push_str("protocol kernel {\n  ipv4 {\n    import none;\n    export filter {\n");
        let skip: Vec<String> = self
            .kernel_skip
            .iter()
            .filter(|b| b.is_ipv4())
            .map(|b| b.to_string())
            .collect();
        if !skip.is_empty() {
            let _ = writeln!(c, "      if net ~ [ {} ] then reject;", skip.join(", "));
        }
        c.push_str("      if source = RTS_BGP then accept;\n      if proto = \"blocks\" then accept;\n      reject;\n    };\n  };\n  learn off;\n}\n\n");
        for p in &self.peers {
            let _ = writeln!(c, "protocol bgp {} {{", proto_name(&p.name));
            // A direct peer is reached from the address of the interface toward it (a router
            // on two segments has one per segment); a multihop one from the router ID.
            match p.multihop {
                true => writeln!(c, "  local {} as {};", self.router_id, self.asn),
                false => writeln!(c, "  local as {};", self.asn),
            }
            .expect("writing to a String");
            let _ = writeln!(c, "  neighbor {} as {};", p.ip, p.asn);
            let _ = writeln!(c, "  hold time {};", self.hold_time);
            let _ = writeln!(c, "  keepalive time {};", (self.hold_time / 3).max(1));
            let _ = writeln!(c, "  connect retry time {};", self.connect_retry);
            // BIRD waits 5 s by default before its first connect: a joining node would wait
            // that long for its routes.
            let _ = writeln!(c, "  connect delay time {};", self.connect_retry);
            c.push_str(if p.multihop { "  multihop;\n" } else { "  direct;\n" });
            if p.rr_client {
                c.push_str("  rr client;\n");
            }
            let gateway = if p.multihop { "recursive" } else { "direct" };
            let _ = writeln!(
                c,
                "  ipv4 {{\n    import all;\n    export where proto = \"blocks\" || proto = \"services\" || source = RTS_BGP;\n    gateway {gateway};\n  }};\n}}\n"
            );
        }
        c
    }
}

/// The BIRD protocol name of the session with node `name`: `peer_`, the name with every
/// character but letters and digits as `_` (at most 40 of them: BIRD's symbols are short), and
/// a hash of the real name, so no two nodes share a protocol whatever their names.
pub fn proto_name(name: &str) -> String {
    let plain: String = name
        .chars()
        .take(40)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let hash = name
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("peer_{plain}_{hash:08x}")
}

/// One BGP session as BIRD reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpSession {
    /// The protocol's name (`peer_<node>`).
    pub name: String,
    /// BIRD's state (`up`, `start`, `down`).
    pub state: String,
    /// When the state last changed, as BIRD prints it (`10:00:01.000`, or a date).
    pub since: String,
    /// BGP's state and more (`Established`, `Active`, `Connect …`).
    pub info: String,
}

impl BgpSession {
    /// The session is Established.
    pub fn established(&self) -> bool {
        self.info.starts_with("Established")
    }
}

/// Talking to a running BIRD through its control socket (`birdc`): what the agent hands to a
/// blocking thread, and what `netkit agent status` uses to ask a node's BIRD for its sessions.
#[derive(Clone, Debug)]
pub struct BirdControl {
    /// The namespace's name, for errors.
    netns: String,
    dir: PathBuf,
}

impl BirdControl {
    /// The BIRD whose directory (configuration and `bird.ctl`) is `dir`; `netns` names it in
    /// errors.
    pub fn new(netns: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            netns: netns.into(),
            dir: dir.into(),
        }
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    /// Run `birdc -s SOCKET ARGS`; its output.
    fn birdc(&self, args: &[&str]) -> Result<String, BirdError> {
        let out = Command::new(BIRDC)
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|cause| BirdError::Io {
                netns: self.netns.clone(),
                what: format!("birdc {}", args.join(" ")),
                cause,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || text.contains("Unable to connect") {
            return Err(BirdError::Refused {
                netns: self.netns.clone(),
                what: format!("birdc {}", args.join(" ")),
                reply: format!("{text}{}", String::from_utf8_lossy(&out.stderr))
                    .trim()
                    .to_string(),
            });
        }
        Ok(text)
    }

    /// Rewrite the configuration and reload it in place (`birdc configure`): sessions whose
    /// peer did not change stay up.
    pub fn reconfigure(&self, cfg: &BirdConfig) -> Result<(), BirdError> {
        let path = self.dir.join("bird.conf");
        let tmp = self.dir.join("bird.conf.tmp");
        std::fs::write(&tmp, cfg.render())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|cause| BirdError::Io {
                netns: self.netns.clone(),
                what: "write bird.conf".into(),
                cause,
            })?;
        let reply = self.birdc(&["configure"])?;
        // "Reconfiguration already in progress, queueing new config": BIRD applies it next.
        if reply.contains("Reconfigured") || reply.contains("Reconfiguration in progress") || reply.contains("queueing")
        {
            Ok(())
        } else {
            Err(BirdError::Refused {
                netns: self.netns.clone(),
                what: "configure".into(),
                reply: reply.trim().to_string(),
            })
        }
    }

    /// The BGP sessions (`birdc show protocols`).
    pub fn sessions(&self) -> Result<Vec<BgpSession>, BirdError> {
        let text = self.birdc(&["show", "protocols"])?;
        Ok(parse_sessions(&text))
    }
}

/// The BGP protocols of `birdc show protocols`' output.
fn parse_sessions(text: &str) -> Vec<BgpSession> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Name Proto Table State Since Info…
            (f.len() >= 5 && f[1] == "BGP").then(|| BgpSession {
                name: f[0].to_string(),
                state: f[3].to_string(),
                since: f[4].to_string(),
                info: f.get(5..).map(|r| r.join(" ")).unwrap_or_default(),
            })
        })
        .collect()
}

/// BIRD running in a namespace (killed on drop).
pub struct Bird {
    control: BirdControl,
    child: Child,
}

impl std::fmt::Debug for Bird {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bird")
            .field("netns", &self.control.netns)
            .field("dir", &self.control.dir)
            .field("pid", &self.child.id())
            .finish()
    }
}

impl Bird {
    /// Write `cfg` into `dir` (`bird.conf`; the control socket is `dir/bird.ctl`) and start
    /// BIRD in the foreground inside `netns`; returns once it answers on its socket. A BIRD
    /// left running on the same socket (an agent killed without cleaning up) is stopped first.
    pub fn start(netns: &NetNs, dir: &Path, cfg: &BirdConfig) -> Result<Bird, BirdError> {
        let io = |what: &str, cause| BirdError::Io {
            netns: netns.to_string(),
            what: what.into(),
            cause,
        };
        std::fs::create_dir_all(dir).map_err(|e| io("create its directory", e))?;
        let control = BirdControl::new(netns.to_string(), dir);
        if control.birdc(&["down"]).is_ok() {
            // `down` makes the old BIRD exit; wait (bounded) until its socket is gone.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while control.birdc(&["show", "status"]).is_ok() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        std::fs::write(dir.join("bird.conf"), cfg.render()).map_err(|e| io("write bird.conf", e))?;
        let child = netns
            .command(BIRD)
            .arg("-f")
            .arg("-c")
            .arg(dir.join("bird.conf"))
            .arg("-s")
            .arg(control.socket())
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("bird.log")).map_err(|e| io("create bird.log", e))?)
            .spawn()
            .map_err(|e| io("start bird", e))?;
        let mut bird = Bird { control, child };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = bird.child.try_wait().map_err(|e| io("wait for bird", e))? {
                let log = std::fs::read_to_string(dir.join("bird.log")).unwrap_or_default();
                return Err(BirdError::Refused {
                    netns: netns.to_string(),
                    what: format!("start (exited: {status})"),
                    reply: log.trim().to_string(),
                });
            }
            if bird.control.birdc(&["show", "status"]).is_ok() {
                return Ok(bird);
            }
            if std::time::Instant::now() > deadline {
                return Err(BirdError::Refused {
                    netns: netns.to_string(),
                    what: "start".into(),
                    reply: "no answer on its control socket within 10 s".into(),
                });
            }
            // Not a synchronization by sleep: a bounded poll of the socket BIRD opens.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How to talk to it (cheap to clone; usable from a blocking thread).
    pub fn control(&self) -> &BirdControl {
        &self.control
    }

    /// Rewrite the configuration and reload it in place (see [`BirdControl::reconfigure`]).
    pub fn reconfigure(&self, cfg: &BirdConfig) -> Result<(), BirdError> {
        self.control.reconfigure(cfg)
    }

    /// The BGP sessions (see [`BirdControl::sessions`]).
    pub fn sessions(&self) -> Result<Vec<BgpSession>, BirdError> {
        self.control.sessions()
    }

    /// BIRD's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A handle that becomes ready when this BIRD exits (a pidfd, polled by tokio): the agent
    /// restarts BIRD when it dies instead of finding out at the next reload. Needs a tokio
    /// runtime with I/O enabled.
    pub fn exit_watch(&self) -> std::io::Result<BirdExit> {
        BirdExit::new(self.child.id())
    }
}

/// Ready when a BIRD process has exited (see [`Bird::exit_watch`]).
pub struct BirdExit {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    pid: u32,
}

impl std::fmt::Debug for BirdExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BirdExit").finish_non_exhaustive()
    }
}

impl BirdExit {
    fn new(pid: u32) -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
        // memory is passed.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor pidfd_open just returned, owned by no one else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw as i32) };
        // SAFETY: the OwnedFd moves into the AsyncFd, so the descriptor stays open exactly as
        // long as it is registered.
        let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Self { fd, pid })
    }

    /// The process followed.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Wait until the process has exited.
    pub async fn exited(&self) {
        // A pidfd polls readable once the process is gone; an error here means the same
        // for our purpose (the descriptor is unusable, the process cannot be followed).
        if let Ok(mut guard) = self.fd.readable().await {
            guard.retain_ready();
        }
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_with_blocks_and_peers() {
        let mut c = BirdConfig::new(Ipv4Addr::new(192, 168, 50, 1), 64512);
        c.blocks.push("10.250.1.0/26".parse().unwrap());
        c.peers.push(BirdPeer {
            name: "nk1x0-n2".into(),
            ip: Ipv4Addr::new(192, 168, 50, 2),
            asn: 64512,
            rr_client: true,
            multihop: false,
        });
        c.kernel_skip.push("10.250.9.0/26".parse().unwrap());
        c.announce.push("203.0.113.10/32".parse().unwrap());
        let text = c.render();
        for want in [
            "if net ~ [ 10.250.9.0/26 ] then reject;",
            "router id 192.168.50.1;",
            "route 10.250.1.0/26 blackhole;",
            "protocol bgp peer_nk1x0_n2_",
            "neighbor 192.168.50.2 as 64512;",
            "rr client;",
            "if source = RTS_BGP then accept;",
            "protocol static services {\n  ipv4;\n  route 203.0.113.10/32 blackhole;",
            "export where proto = \"blocks\" || proto = \"services\" || source = RTS_BGP;",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }

    #[test]
    fn sessions_from_show_protocols() {
        let out = "BIRD 2.0.12 ready.\nName       Proto      Table      State  Since         Info\ndevice1    Device     ---        up     10:00:00.000  \npeer_n2    BGP        ---        up     10:00:01.000  Established   \npeer_n3    BGP        ---        start  10:00:01.000  Active        Socket: Connection refused\n";
        let s = parse_sessions(out);
        assert_eq!(s.len(), 2);
        assert!(s[0].established() && !s[1].established());
        assert_eq!((s[1].name.as_str(), s[1].state.as_str()), ("peer_n3", "start"));
        assert_eq!(s[1].since, "10:00:01.000");
        assert!(proto_name("n3").starts_with("peer_n3_"));
        assert_ne!(proto_name("node-1"), proto_name("node.1"));
        assert!(proto_name("node-1").starts_with("peer_node_1_"));
        assert!(
            proto_name(&"n".repeat(253)).len() <= 5 + 40 + 9,
            "short enough for BIRD"
        );
        assert!(s[1].info.starts_with("Active"), "{:?}", s[1]);
    }
}
