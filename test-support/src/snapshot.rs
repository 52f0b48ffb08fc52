//! A namespace's links and addresses as iproute2 shows them (`ip -j`), in forms tests compare
//! before and after a change.

use std::path::Path;

use serde_json::Value;

use crate::cmd::ipj_list;

/// One link: (name, kind, master), empty strings where there is none.
pub type LinkRow = (String, String, String);

/// The links of namespace `ns`, sorted.
#[track_caller]
pub fn links(ns: &str) -> Vec<LinkRow> {
    let mut out: Vec<LinkRow> = ipj_list(ns, &["link", "show"])
        .iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap_or_default().to_string(),
                l["linkinfo"]["info_kind"].as_str().unwrap_or_default().to_string(),
                l["master"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The names of the links of namespace `ns`, in the kernel's order.
#[track_caller]
pub fn link_names(ns: &str) -> Vec<String> {
    ipj_list(ns, &["link", "show"])
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// The names of the veths in namespace `ns`, sorted.
#[track_caller]
pub fn veths(ns: &str) -> Vec<String> {
    links(ns)
        .into_iter()
        .filter(|(_, kind, _)| kind == "veth")
        .map(|(name, _, _)| name)
        .collect()
}

/// The global addresses of namespace `ns`: "ifname address/prefix", sorted.
#[track_caller]
pub fn global_addrs(ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in ipj_list(ns, &["addr", "show"]) {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            if a["scope"] == "global" {
                out.push(format!(
                    "{} {}/{}",
                    l["ifname"].as_str().unwrap_or_default(),
                    a["local"].as_str().unwrap_or_default(),
                    a["prefixlen"]
                ));
            }
        }
    }
    out.sort();
    out
}

/// The default route of a family in namespace `ns`: its gateway and device.
pub fn default_route(ns: &str, v6: bool) -> Option<(String, String)> {
    let fam = if v6 { "-6" } else { "-4" };
    let routes = crate::cmd::ipj(ns, &[fam, "route", "show", "default"])?;
    let r = routes.as_array()?.first()?;
    Some((
        r["gateway"].as_str().unwrap_or_default().to_string(),
        r["dev"].as_str().unwrap_or_default().to_string(),
    ))
}

/// The MAC address of link `dev` in namespace `ns`; panics when there is no such link.
#[track_caller]
pub fn mac_of(ns: &str, dev: &str) -> String {
    let l = crate::cmd::ipj(ns, &["link", "show", dev]).unwrap_or_else(|| panic!("no {dev} in {ns}"));
    l[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("{dev} in {ns} has no address: {l}"))
        .to_string()
}

/// The names in `dir` (none if it does not exist), sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

/// The `ifname`s of `ip -j link` output given as a value (for output already read).
pub fn ifnames(links: &Value) -> Vec<String> {
    links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}
