//! include/kiln.h is exactly what cbindgen generates from this crate with cbindgen.toml;
//! `BLESS=1 cargo test --release -p kiln-capi --test integration header::` rewrites it.

use std::path::Path;

#[test]
fn committed_header_is_generated() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut bytes = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .unwrap()
        .write(&mut bytes);
    let generated = String::from_utf8(bytes).unwrap();
    for name in [
        "kiln_module_load",
        "kiln_module_run",
        "kiln_last_error",
        "typedef struct kiln_module kiln_module;",
        "KILN_ERROR_INPUT 4",
    ] {
        assert!(
            generated.contains(name),
            "cbindgen output lacks {name}:\n{generated}"
        );
    }
    let path = dir.join("include/kiln.h");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/kiln.h differs from cbindgen's output; rerun with BLESS=1"
    );
}
