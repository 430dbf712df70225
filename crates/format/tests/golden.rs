//! Golden files: the fuzz seeds in crates/format/fuzz/seeds are the current encoding of
//! the test modules, byte for byte, so any change to the file format shows up here (bump
//! FORMAT_VERSION when it is intended). `BLESS=1` rewrites them.

mod common;

use common::*;
use kiln_format::{Module, from_bytes, to_bytes};
use std::path::PathBuf;

fn modules() -> Vec<(&'static str, Module)> {
    let mut out = vec![
        ("every_construct", every_construct_module()),
        ("interpreter_only", interpreter_module()),
    ];
    for (name, text) in [
        (
            "conv2d_padded_relu",
            include_str!("../../../fixtures/filetests/kernel/conv2d_padded_relu.kir"),
        ),
        (
            "layer_norm_stats",
            include_str!("../../../fixtures/filetests/kernel/layer_norm_stats.kir"),
        ),
        (
            "sgd_in_place",
            include_str!("../../../fixtures/filetests/kernel/sgd_in_place.kir"),
        ),
        (
            "batched_matmul_broadcast",
            include_str!("../../../fixtures/filetests/kernel/batched_matmul_broadcast.kir"),
        ),
    ] {
        let p = kiln_kernel::parse(text).unwrap();
        out.push((
            name,
            module_around(kiln_kernel::verify(p).unwrap()).unwrap(),
        ));
    }
    out
}

#[test]
fn golden_files_match_the_current_encoding() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let bless = std::env::var_os("BLESS").is_some();
    for (name, m) in modules() {
        let path = dir.join(format!("{name}.kiln"));
        let bytes = to_bytes(&m).unwrap();
        if bless {
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with BLESS=1)", path.display()));
        assert!(
            stored == bytes,
            "{} differs from the current encoding (format change? run with BLESS=1)",
            path.display()
        );
        assert_same(&m, &from_bytes(&stored).unwrap());
    }
}
