//! netkit-fwctl: change one owner of the firewall of a named namespace, from its own process.
//!
//! ```text
//! netkit-fwctl NETNS DRIVER STATE_DIR add OWNER RULES_JSON   # Firewall::add
//! netkit-fwctl NETNS DRIVER STATE_DIR remove OWNER RULES_JSON
//! netkit-fwctl NETNS DRIVER STATE_DIR teardown OWNER
//! netkit-fwctl NETNS DRIVER STATE_DIR owners                 # one owner a line
//! ```
//!
//! DRIVER is `nftables` or `iptables`; RULES_JSON is a serialised `Rules`. Exit status 0 on
//! success, 1 when the firewall refused (the error on stderr), 2 on bad usage. The concurrency
//! test runs many of these at once, as a CNI runtime runs plugins.

use std::process::ExitCode;

use netkit_core::firewall::{self, Driver, Firewall, FirewallOptions, Rules};
use netkit_core::NetNs;

fn usage() -> ExitCode {
    eprintln!(
        "usage: netkit-fwctl NETNS nftables|iptables STATE_DIR add|remove OWNER RULES_JSON | teardown OWNER | owners"
    );
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return usage();
    }
    let driver = match args[1].as_str() {
        "nftables" => Driver::Nftables,
        "iptables" => Driver::Iptables,
        _ => return usage(),
    };
    let ns = match NetNs::open(&args[0]) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("netkit-fwctl: {e}");
            return ExitCode::from(1);
        }
    };
    let options = FirewallOptions::default().driver(driver).state_dir(&args[2]);
    let fw = match firewall::open(&ns, options).await {
        Ok(fw) => fw,
        Err(e) => {
            eprintln!("netkit-fwctl: open: {e}");
            return ExitCode::from(1);
        }
    };
    let rules = |json: Option<&String>| -> Result<Rules, String> {
        let json = json.ok_or("missing RULES_JSON")?;
        serde_json::from_str(json).map_err(|e| format!("bad RULES_JSON: {e}"))
    };
    let result = match (args[3].as_str(), args.get(4)) {
        ("add", Some(owner)) => match rules(args.get(5)) {
            Ok(r) => fw.add(owner, &r).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        },
        ("remove", Some(owner)) => match rules(args.get(5)) {
            Ok(r) => fw.remove(owner, &r).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        },
        ("teardown", Some(owner)) => fw.teardown(owner).await.map(drop).map_err(|e| e.to_string()),
        ("owners", None) => fw
            .owners()
            .await
            .map(|o| o.iter().for_each(|o| println!("{o}")))
            .map_err(|e| e.to_string()),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "netkit-fwctl: {} {}: {e}",
                args[3],
                args.get(4).map(String::as_str).unwrap_or("")
            );
            ExitCode::from(1)
        }
    }
}
