//! The checked-in header is exactly what cbindgen generates from the crate.
//!
//! Stale header: regenerate it with
//! `NETKIT_BLESS=1 cargo test -p netkit-ffi --test header` and commit it.

use std::path::Path;

#[test]
fn header_is_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let path = dir.join("include/netkit.h");
    if std::env::var_os("NETKIT_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/netkit.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let line = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()))
            + 1;
        panic!(
            "netkit-ffi/include/netkit.h differs from what cbindgen generates (first difference at line {line}).\n\
             Regenerate it with: NETKIT_BLESS=1 cargo test -p netkit-ffi --test header"
        );
    }
}
