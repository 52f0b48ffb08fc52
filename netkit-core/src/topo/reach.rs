//! Reachability inside a lab: real pings from every node to every address declared on another
//! node (`netkit topo status --ping`).

use std::net::IpAddr;

use super::model::Lab;
use super::TopoError;
use crate::NetNs;

/// One ping of the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The node that pinged.
    pub from: String,
    /// The node the address is declared on.
    pub to: String,
    /// The address pinged.
    pub addr: IpAddr,
    /// Whether an echo reply came back within a second.
    pub ok: bool,
}

/// How many pings run at once.
const PARALLEL: usize = 16;

/// Ping every address declared on a node from every other node (`ping -c1 -W1` inside the
/// source node's namespace), `PARALLEL` at a time, and return the results in a stable order
/// (by source node, then destination node, then address).
pub fn ping_matrix(lab: &Lab) -> Result<Vec<Probe>, TopoError> {
    let mut probes = Vec::new();
    for from in lab.nodes.keys() {
        for (to, node) in &lab.nodes {
            if to == from {
                continue;
            }
            for addr in node.addresses.values().flatten() {
                probes.push(Probe {
                    from: from.clone(),
                    to: to.clone(),
                    addr: addr.ip(),
                    ok: false,
                });
            }
        }
    }
    let mut namespaces = std::collections::BTreeMap::new();
    for n in lab.nodes.keys() {
        let ns = lab.netns_of(n);
        namespaces.insert(n.clone(), NetNs::open(&ns).map_err(|e| TopoError::kernel(&ns, e))?);
    }
    for chunk in probes.chunks_mut(PARALLEL) {
        std::thread::scope(|s| {
            for p in chunk.iter_mut() {
                let ns = &namespaces[&p.from];
                s.spawn(move || {
                    p.ok = ns
                        .command("ping")
                        .args(["-c1", "-W1", "-q", &p.addr.to_string()])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .is_ok_and(|st| st.success());
                });
            }
        });
    }
    Ok(probes)
}
