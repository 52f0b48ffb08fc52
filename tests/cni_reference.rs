//! The CNI lab (`netkit_tests::cnilab`) with Debian's reference plugins: bridge + host-local +
//! portmap, driven through libcni (cnictl) the way a runtime drives them. This proves the
//! harness; netkit's own plugins are tested with the same calls and another `type`.
//!
//! The network and the checks of `bridge_host_local_portmap` are `cnilab::reference`'s, which
//! `cni_netkit` runs again with netkit-cni in the bridge's place.
//!
//! Run as root; plugins only change the test's own namespaces.

use std::path::PathBuf;

use netkit_test_support::snapshot::dir_names;
use netkit_tests::cnilab::reference::{leases, reference_checks, reference_conflist, NETWORK};
use netkit_tests::cnilab::{conflist, Host, REFERENCE_PLUGINS};
use serde_json::json;

/// The reference network (`cnilab::reference`) in `host`.
fn write_reference_conflist(host: &Host) -> PathBuf {
    host.write_conflist(NETWORK, &reference_conflist(host))
}

#[test]
fn bridge_host_local_portmap() {
    let host = Host::new("cniref").with_cni_path(REFERENCE_PLUGINS);
    let conf = write_reference_conflist(&host);
    reference_checks(&host, &conf);
}

#[test]
fn errors_carry_the_cni_code() {
    let host = Host::new("cnierr").with_cni_path(REFERENCE_PLUGINS);
    let c = host.container("c");
    // host-local refuses an invalid range; bridge passes its error on (Go plugins say 999 for
    // errors of their own).
    let bad = host.write_conflist(
        "bad",
        &conflist(
            "bad",
            "1.0.0",
            vec![json!({
                "type": "bridge",
                "bridge": "cni1",
                "ipam": {"type": "host-local", "dataDir": host.ipam_dir(),
                         "ranges": [[{"subnet": "10.251.0.0/24", "rangeStart": "10.99.0.5"}]]}
            })],
        ),
    );
    let err = host.add(&bad, &c).expect_err("ADD with a bad range");
    assert_eq!(err.code, 999, "{err}");
    assert!(err.msg.contains("RangeStart 10.99.0.5"), "{err}");
    assert!(err.msg.starts_with("plugin type=\"bridge\" failed (add)"), "{err}");

    // A cniVersion no plugin speaks: the plugin answers 1 (incompatible CNI version).
    let future = host.write_conflist(
        "future",
        &conflist("future", "9.0.0", vec![json!({"type": "loopback"})]),
    );
    let err = host.add(&future, &c).expect_err("ADD with cniVersion 9.0.0");
    assert_eq!(err.code, 1, "{err}");

    // A plugin that is not on the path: libcni's own error, code 0.
    let missing = host.write_conflist(
        "missing",
        &conflist("missing", "1.0.0", vec![json!({"type": "no-such-plugin"})]),
    );
    let err = host.add(&missing, &c).expect_err("ADD with a missing plugin");
    assert_eq!(err.code, 0, "{err}");
    assert!(err.msg.contains("no-such-plugin"), "{err}");

    // A bad container ID: libcni refuses before any plugin runs (4: invalid environment).
    let ok = host.write_conflist("ok", &conflist("ok", "1.0.0", vec![json!({"type": "loopback"})]));
    let netns = c.path().to_string_lossy().into_owned();
    let conf = ok.to_string_lossy().into_owned();
    let err = host
        .cnictl(["add", &conf, &netns, "bad/id", "eth0"])
        .expect_err("ADD with a bad container ID");
    assert_eq!(err.code, 4, "{err}");
    assert!(host.cached_results().is_empty());
}

#[test]
fn gc_dels_what_is_not_valid() {
    let host = Host::new("cnigc").with_cni_path(REFERENCE_PLUGINS);
    let conf = write_reference_conflist(&host);
    let c1 = host.container("c1");
    let c2 = host.container("c2");
    host.add(&conf, &c1).expect("ADD c1");
    host.add(&conf, &c2).expect("ADD c2");
    assert_eq!(leases(&host).len(), 4, "two families, two containers");

    // c1 is no longer valid: GC DELs it from libcni's cache (without its netns, as a runtime
    // would after losing the container: bridge then releases the addresses only). A 1.0.0
    // list sends no GC verb to the plugins.
    host.gc(&conf, &[(c2.id(), "eth0")]).expect("GC");
    assert_eq!(host.cached_results(), vec![format!("refnet-{}-eth0", c2.id())]);
    assert_eq!(leases(&host).len(), 2, "c1's addresses are released");
    host.status(&conf).expect("STATUS (a no-op before cniVersion 1.1.0)");

    // Nothing valid: c2 goes too.
    host.gc(&conf, &[]).expect("GC of everything");
    assert_eq!(host.cached_results(), Vec::<String>::new());
    assert_eq!(leases(&host), Vec::<String>::new());
}

#[test]
fn bench_adds_and_dels() {
    let host = Host::new("cnibench").with_cni_path(REFERENCE_PLUGINS);
    let conf = write_reference_conflist(&host);
    let prefix = format!("{}-b", host.prefix());
    let conf_arg = conf.to_string_lossy().into_owned();
    let report = host
        .cnictl(["bench", &conf_arg, "3", &prefix])
        .unwrap_or_else(|e| panic!("bench: {e}\n{}", e.stderr));
    assert_eq!(report["n"], 3, "{report}");
    for phase in ["add", "del"] {
        let total = report[phase]["total_s"].as_f64().expect("total_s");
        let median = report[phase]["median_s"].as_f64().expect("median_s");
        assert!(total > 0.0 && median > 0.0 && median <= total, "{report}");
    }
    // bench deleted its namespaces, and DEL cleaned up after every container.
    let left: Vec<String> = dir_names(std::path::Path::new("/run/netns"))
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(host.veths(), Vec::<String>::new());
    assert_eq!(host.cached_results(), Vec::<String>::new());
    assert_eq!(leases(&host), Vec::<String>::new());
}
