//! examples/c/veth_pair.c, compiled with gcc against include/netkit.h and libnetkit.a, run as is,
//! under valgrind memcheck (0 errors, 0 bytes definitely lost) and built with AddressSanitizer;
//! likewise tests/c/areas.c, which uses rules, neighbours, events, IPAM and the firewall.
//! Each run makes its own namespaces (a unique prefix) and the example deletes them; a guard
//! deletes them too when the example failed half-way.

use std::path::{Path, PathBuf};
use std::process::Command;

use netkit_core::NetNs;
use netkit_test_support::{report_skip, unique};

/// The directory cargo builds the library into: where this test's executable's `deps/` is.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// `libnetkit.a`, built by cargo for this test when it is not there yet.
fn static_lib() -> PathBuf {
    let lib = target_dir().join("libnetkit.a");
    if !lib.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "netkit-ffi"]);
        if target_dir().ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build -p netkit-ffi failed");
    }
    lib
}

/// Compile the example with `extra` gcc flags into a temp dir; returns the binary.
fn compile(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    compile_file(dir, &root.join("../examples/c/veth_pair.c"), name, extra)
}

/// Compile the C file `src` with `extra` gcc flags into `dir/name`.
fn compile_file(dir: &Path, src: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join(name);
    let output = Command::new("gcc")
        .args(["-std=c11", "-D_DEFAULT_SOURCE", "-g", "-Wall", "-Wextra", "-Werror"])
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(src)
        .arg("-I")
        .arg(root.join("include"))
        .arg(static_lib())
        // What the static library needs (see netkit.pc.in's Libs.private).
        .args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"])
        .output()
        .expect("run gcc");
    assert!(
        output.status.success(),
        "gcc {name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// Deletes the example's namespaces if it left them behind.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for side in ["a", "b"] {
            let _ = NetNs::delete(&format!("{}-{side}", self.0));
        }
    }
}

/// Run `program ARGS… PREFIX`; returns (success, stdout, stderr). The example's namespaces must
/// be gone afterwards.
fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let prefix = unique("cex");
    let _cleanup = Cleanup(prefix.clone());
    let out = Command::new(program)
        .args(args)
        .arg(&prefix)
        .output()
        .expect("run the example");
    let names = NetNs::list().expect("list namespaces");
    assert!(
        !names.iter().any(|n| n.starts_with(&prefix)),
        "the example left namespaces behind: {names:?}"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn c_example_runs() {
    let dir = netkit_test_support::tempdir("cex");
    let bin = compile(dir.path(), "veth_pair", &[]);
    let (ok, stdout, stderr) = run(bin.to_str().unwrap(), &[]);
    assert!(ok, "veth_pair failed:\n{stdout}\n{stderr}");
    for line in [
        "ping 10.0.0.2 from",
        "ping fd00::2 from",
        "ping 10.0.1.1 from",
        "route 10.0.1.0/24 via 10.0.0.2 table 254",
        "veth_pair: ok",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains(" eth0 kind veth mtu 1500 UP"), "{stdout}");
}

#[test]
fn c_example_under_valgrind() {
    if !have("valgrind") {
        report_skip("c_example_under_valgrind", "valgrind is not installed");
        return;
    }
    let dir = netkit_test_support::tempdir("cexvg");
    let bin = compile(dir.path(), "veth_pair", &[]);
    let supp = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valgrind.supp");
    let supp = format!("--suppressions={}", supp.display());
    let (ok, stdout, stderr) = run(
        "valgrind",
        &[
            "--leak-check=full",
            "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite",
            "--error-exitcode=3",
            &supp,
            bin.to_str().unwrap(),
        ],
    );
    assert!(ok, "veth_pair under valgrind failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("veth_pair: ok"), "{stdout}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    assert!(
        stderr.contains("definitely lost: 0 bytes") || stderr.contains("All heap blocks were freed"),
        "{stderr}"
    );
}

#[test]
fn c_example_with_address_sanitizer() {
    let dir = netkit_test_support::tempdir("cexasan");
    let bin = compile(
        dir.path(),
        "veth_pair_asan",
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
    );
    let (ok, stdout, stderr) = run(bin.to_str().unwrap(), &[]);
    assert!(ok, "veth_pair with AddressSanitizer failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("veth_pair: ok"), "{stdout}");
    assert!(!stderr.contains("AddressSanitizer"), "{stderr}");
}

/// The first C program of the README compiles against the header (it is not run: it uses the
/// fixed namespace name "demo").
#[test]
fn readme_c_example_compiles() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let start = readme.find("```c\n").expect("a C block in the README") + 5;
    let len = readme[start..].find("```").expect("its end");
    let dir = netkit_test_support::tempdir("cexreadme");
    let src = dir.path().join("first.c");
    std::fs::write(&src, &readme[start..start + len]).unwrap();
    compile_file(dir.path(), &src, "first", &[]);
}

/// tests/c/areas.c compiled with `extra` flags for the test `tag`, run through `runner` (empty:
/// directly) with a temp dir for its IPAM store and firewall state; checks that every step
/// worked and returns (success, stdout, stderr).
fn run_areas(tag: &str, extra: &[&str], runner: &[&str]) -> (bool, String, String) {
    let dir = netkit_test_support::tempdir(tag);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/areas.c");
    let bin = compile_file(dir.path(), &src, "areas", extra);
    let store = dir.path().join("state");
    std::fs::create_dir(&store).expect("state dir");
    let mut cmd: Vec<&str> = runner.to_vec();
    cmd.push(bin.to_str().unwrap());
    cmd.push(store.to_str().unwrap());
    let (ok, stdout, stderr) = run(cmd[0], &cmd[1..]);
    for step in [
        "rule 1000 iif v0: ok",
        "neighbour 10.5.0.2: ok",
        "events: ok",
        "nameserver 10.6.0.53, 2 search domains",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}\n{stderr}");
    }
    if stdout.contains("firewall: unsupported here") {
        report_skip(tag, "areas.c: the firewall step (no nftables or iptables here)");
    } else {
        assert!(stdout.contains("firewall: ok"), "{stdout}\n{stderr}");
    }
    (ok, stdout, stderr)
}

#[test]
fn c_areas_under_valgrind() {
    if !have("valgrind") {
        report_skip("c_areas_under_valgrind", "valgrind is not installed");
        return;
    }
    let supp = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valgrind.supp");
    let supp = format!("--suppressions={}", supp.display());
    let (ok, stdout, stderr) = run_areas(
        "c_areas_under_valgrind",
        &[],
        &[
            "valgrind",
            "--leak-check=full",
            "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite",
            "--error-exitcode=3",
            &supp,
        ],
    );
    assert!(ok, "areas under valgrind failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("areas: ok"), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    assert!(
        stderr.contains("definitely lost: 0 bytes") || stderr.contains("All heap blocks were freed"),
        "{stderr}"
    );
}

#[test]
fn c_areas_with_address_sanitizer() {
    let (ok, stdout, stderr) = run_areas(
        "c_areas_with_address_sanitizer",
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
        &[],
    );
    assert!(ok, "areas with AddressSanitizer failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("areas: ok"), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(!stderr.contains("AddressSanitizer"), "{stderr}");
}
