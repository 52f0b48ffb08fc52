//! A real etcd server for a test (Debian's `etcd-server`, `/usr/bin/etcd`): on free loopback
//! ports, or inside a namespace of the test on an address of its own (a simulated cluster's
//! store on the underlay); stopped and started again on the same data (an outage); killed on
//! drop, also when the test panics. Ready means it answered `GET /health` with `"health":"true"`.
//! A missing etcd fails the test (CI installs it).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use netkit_core::NetNs;
use tempfile::TempDir;

use crate::{poll_for, tempdir, KillOnDrop};

/// Debian's etcd.
pub const ETCD: &str = "/usr/bin/etcd";

/// A single-member etcd (see the [module docs](self)).
pub struct Etcd {
    child: Option<KillOnDrop>,
    ns: Option<NetNs>,
    client: SocketAddr,
    peer: SocketAddr,
    log: PathBuf,
    // Removed after the child is killed (fields drop in order, after `Drop::drop`).
    dir: TempDir,
}

impl Etcd {
    /// An etcd on free loopback ports, in the namespace the test runs in.
    pub fn start() -> Etcd {
        let mut last = String::new();
        for _ in 0..3 {
            // Hold both listeners until both ports are chosen, then free them for etcd.
            let (l1, l2) = (free_port(), free_port());
            let (client, peer) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
            drop((l1, l2));
            let mut e = Etcd::new(None, client, peer);
            match e.run() {
                Ok(()) => return e,
                Err(log) => last = log,
            }
        }
        panic!("etcd did not start; its log:\n{last}");
    }

    /// An etcd inside `ns`, listening on `ip` (ports 2379 and 2380).
    pub fn start_in(ns: &NetNs, ip: IpAddr) -> Etcd {
        let mut e = Etcd::new(Some(ns.clone()), SocketAddr::new(ip, 2379), SocketAddr::new(ip, 2380));
        if let Err(log) = e.run() {
            panic!("etcd did not start in {ns}; its log:\n{log}");
        }
        e
    }

    fn new(ns: Option<NetNs>, client: SocketAddr, peer: SocketAddr) -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: the test needs a real etcd server (Debian package etcd-server; .ci/run installs it)"
        );
        let dir = tempdir("etcd");
        Etcd {
            child: None,
            ns,
            client,
            peer,
            log: dir.path().join("etcd.log"),
            dir,
        }
    }

    /// Start the process (on the data it has) and wait until it answers; `Err(log)` if not.
    fn run(&mut self) -> Result<(), String> {
        let (client, peer) = (format!("http://{}", self.client), format!("http://{}", self.peer));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match &self.ns {
            Some(ns) => ns.command(ETCD),
            None => Command::new(ETCD),
        };
        cmd.args(["--name", "netkit-test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("netkit-test={peer}")])
            .args(["--initial-cluster-state", "new"])
            // Short raft timings: etcd's minimum lease TTL becomes 1 s (default 2 s).
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = KillOnDrop::new(cmd.spawn().unwrap_or_else(|e| panic!("cannot start {ETCD}: {e}")));
        let ready = poll_for(Duration::from_secs(30), || {
            if let Some(status) = child.try_wait().unwrap() {
                return Ok(Err(format!("(exited: {status})")));
            }
            if self.healthy() {
                Ok(Ok(()))
            } else {
                Err(())
            }
        });
        match ready {
            Ok(Ok(())) => {
                self.child = Some(child);
                Ok(())
            }
            Ok(Err(why)) => Err(format!("{why}\n{}", self.log())),
            Err(()) => Err(format!("(no answer within 30 s)\n{}", self.log())),
        }
    }

    /// `GET /health` answered with `"health":"true"` (from inside the namespace, if any).
    fn healthy(&self) -> bool {
        let addr = self.client;
        let ask = move || -> bool {
            let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut answer).is_ok()
                && answer.contains("\"health\":\"true\"")
        };
        match &self.ns {
            Some(ns) => ns.run(ask).unwrap_or(false),
            None => ask(),
        }
    }

    /// The client URL (`http://IP:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    /// Kill the server (an outage); [`Etcd::resume`] starts it again on the same data.
    pub fn stop(&mut self) {
        drop(self.child.take());
    }

    /// Start a stopped server again, on its data, and wait until it answers.
    pub fn resume(&mut self) {
        if let Err(log) = self.run() {
            panic!("etcd did not start again; its log:\n{log}");
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn free_port() -> TcpListener {
    TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).expect("bind a free loopback port")
}
