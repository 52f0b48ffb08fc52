//! A namespace handle acts in its own namespace, whatever thread uses it and whatever happened
//! to the value it came from. Every namespace here is made by the test (unique names, deleted
//! on drop); nothing in the machine's own namespace is changed (the only thing done from it is
//! reading).

use std::os::unix::fs::MetadataExt;

use netkit_core::link::Veth;
use netkit_core::{Handle, NetNs, NetNsGuard};
use netkit_test_support::unique;

/// The inode of the network namespace a spawned program runs in.
fn child_netns_ino(cmd: &mut std::process::Command) -> std::io::Result<u64> {
    let out = cmd.args(["-c", "readlink /proc/self/ns/net"]).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let ino = text
        .trim()
        .strip_prefix("net:[")
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("unexpected {text:?}")))?;
    Ok(ino)
}

/// `NetNs::command` keeps its own descriptor: a command built from a `NetNs` that is then
/// dropped (its descriptor number reused by another namespace opened meanwhile) still starts
/// in the namespace it was built for.
#[test]
fn a_command_enters_its_namespace_after_the_netns_value_is_gone() {
    let a = NetNsGuard::create(&unique("cmda")).unwrap();
    let b = NetNsGuard::create(&unique("cmdb")).unwrap();
    let a_ino = a.id().unwrap().ino;
    let mut cmd = NetNs::open_path(a.path()).unwrap().command("sh");
    // The value the command came from is gone; another namespace takes its descriptor number.
    let b_again = NetNs::open_path(b.path()).unwrap();
    assert_eq!(
        child_netns_ino(&mut cmd).unwrap(),
        a_ino,
        "the command ran in another namespace"
    );
    drop(b_again);
}

/// `Handle::current()` holds the namespace it was made in: used from a thread in another
/// namespace, its namespace work (here a sysctl read of a device only that namespace has) still
/// happens in its own namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_current_keeps_its_namespace_on_any_thread() {
    let a = NetNsGuard::create(&unique("cura")).unwrap();
    let other = NetNsGuard::create(&unique("curb")).unwrap();
    let rt = tokio::runtime::Handle::current();
    let h = a
        .run(move || {
            let _in = rt.enter();
            Handle::current()
        })
        .unwrap()
        .unwrap();
    assert_eq!(h.netns().id().unwrap(), a.id().unwrap());
    h.link_add(&Veth::new("onlyina0", "onlyina1")).await.unwrap();
    // Used from a thread that sits in another namespace.
    let got = other
        .run_async(move || async move { h.sysctl_get("net.ipv4.conf.onlyina0.forwarding").await })
        .await
        .unwrap();
    assert!(got.is_ok(), "the handle looked in the wrong namespace: {got:?}");
}

/// Outside a tokio runtime a handle cannot be driven: an error that says so, not a panic.
#[test]
fn handle_current_outside_a_runtime_is_an_error() {
    let ns = NetNsGuard::create(&unique("nort")).unwrap();
    let got = std::panic::catch_unwind(|| ns.run(Handle::current).unwrap());
    match got {
        Ok(Err(e)) => assert!(e.to_string().contains("tokio runtime"), "{e}"),
        Ok(Ok(_)) => panic!("a handle without a runtime"),
        Err(_) => panic!("Handle::current() panicked outside a runtime"),
    }
}

/// The inode of this process's namespace, for the record (read only).
#[test]
fn the_process_namespace_is_readable() {
    assert!(std::fs::metadata("/proc/self/ns/net").unwrap().ino() > 0);
}
