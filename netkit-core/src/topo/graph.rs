//! A lab as a picture: Graphviz DOT and Mermaid text (`netkit topo graph`).

use std::fmt::Write as _;

use super::model::Lab;

/// The lab as a Graphviz DOT graph: nodes as boxes (with their addresses), bridges as
/// ellipses, one edge per link labelled with its interface names. `dot -Tsvg` draws it.
pub fn dot(lab: &Lab) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "graph {} {{", quote(&lab.name));
    let _ = writeln!(o, "  label={}; labelloc=t;", quote(&format!("netkit lab {}", lab.name)));
    for (name, node) in &lab.nodes {
        let mut label = name.clone();
        for (dev, addrs) in &node.addresses {
            for a in addrs {
                let _ = write!(label, "\n{dev} {a}");
            }
        }
        let _ = writeln!(o, "  {} [shape=box, label={}];", quote(name), quote(&label));
    }
    for b in &lab.bridges {
        let _ = writeln!(o, "  {} [shape=ellipse, style=dashed];", quote(b));
    }
    if let Some((h, _)) = &lab.host {
        let _ = writeln!(o, "  {} [shape=house];", quote(h));
    }
    for l in &lab.links {
        let _ = writeln!(
            o,
            "  {} -- {} [taillabel={}, headlabel={}];",
            quote(&l.a.node),
            quote(&l.b.node),
            quote(&l.a.ifname),
            quote(&l.b.ifname)
        );
    }
    o.push_str("}\n");
    o
}

/// The lab as a Mermaid flowchart (renders in GitHub and GitLab markdown).
pub fn mermaid(lab: &Lab) -> String {
    let mut o = String::from("graph LR\n");
    let id = |n: &str| format!("n_{}", n.replace(['-', '.'], "_"));
    for name in lab.nodes.keys() {
        let _ = writeln!(o, "  {}[\"{name}\"]", id(name));
    }
    for b in &lab.bridges {
        let _ = writeln!(o, "  {}((\"{b}\"))", id(b));
    }
    if let Some((h, _)) = &lab.host {
        let _ = writeln!(o, "  {}[/\"{h}\"\\]", id(h));
    }
    for l in &lab.links {
        let _ = writeln!(
            o,
            "  {} ---|\"{} - {}\"| {}",
            id(&l.a.node),
            l.a.ifname,
            l.b.ifname,
            id(&l.b.node)
        );
    }
    o
}

/// A DOT string literal.
fn quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
    )
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Format};
    use super::*;

    const LAB: &str = r#"
name: g
topology:
  nodes:
    h1: {addresses: {eth1: [10.0.0.1/24]}}
    r-1: {}
    br0: {kind: bridge}
  links:
    - endpoints: ["h1:eth1", "br0:p1"]
    - endpoints: ["r-1:eth1", "br0:p2"]
"#;

    #[test]
    fn dot_and_mermaid_show_every_node_bridge_and_link() {
        let lab = parse(LAB, Format::Netkit).unwrap();
        let d = dot(&lab);
        assert!(d.starts_with("graph \"g\" {"), "{d}");
        assert!(
            d.contains("\"h1\" [shape=box, label=\"h1\\neth1 10.0.0.1/24\"];"),
            "{d}"
        );
        assert!(d.contains("\"br0\" [shape=ellipse, style=dashed];"), "{d}");
        assert!(
            d.contains("\"r-1\" -- \"br0\" [taillabel=\"eth1\", headlabel=\"p2\"];"),
            "{d}"
        );
        let m = mermaid(&lab);
        assert!(m.contains("  n_r_1[\"r-1\"]"), "{m}");
        assert!(m.contains("  n_br0((\"br0\"))"), "{m}");
        assert!(m.contains("  n_h1 ---|\"eth1 - p1\"| n_br0"), "{m}");
        assert_eq!(m.lines().filter(|l| l.contains("---")).count(), 2);
    }
}
