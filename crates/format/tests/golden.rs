//! Golden files: the fuzz seeds in crates/format/fuzz/seeds are the current encoding of
//! the test modules, byte for byte, so any change to the file format shows up here (bump
//! FORMAT_VERSION when it is intended). `BLESS=1` rewrites them. The same modules written
//! by format versions 1 to 4 (crates/format/tests/v1_files to v4_files, frozen) must still
//! load.

use crate::common;

use common::*;
use kiln_format::{Module, from_bytes, to_bytes};
use std::path::PathBuf;

fn modules() -> Vec<(&'static str, Module)> {
    let mut out = modules_with(every_construct_module());
    out.push(("control_flow", control_flow_module()));
    out.push(("debug_table", debug_table_module()));
    out
}

/// The modules of the frozen version 3 files: [`modules_with`] and the control-flow module.
fn version_3_modules() -> Vec<(&'static str, Module)> {
    let mut out = modules_with(every_construct_module_with(&version_3_unary_ops()));
    out.push(("control_flow", control_flow_module()));
    out
}

/// The modules of the frozen version 4 files: those of version 3 and the debug-table module.
fn version_4_modules() -> Vec<(&'static str, Module)> {
    let mut out = modules_with(every_construct_module_with(&version_4_unary_ops()));
    out.push(("control_flow", control_flow_module()));
    out.push(("debug_table", debug_table_module()));
    out
}

fn modules_with(every_construct: Module) -> Vec<(&'static str, Module)> {
    let interpreter_only = Module {
        program: None,
        ..every_construct.clone()
    };
    let mut out = vec![
        ("every_construct", every_construct),
        ("interpreter_only", interpreter_only),
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

#[test]
fn version_1_files_still_load_as_the_same_modules() {
    old_files_load_as_the_same_modules(1, &version_1_unary_ops());
}

#[test]
fn version_2_files_still_load_as_the_same_modules() {
    old_files_load_as_the_same_modules(2, &version_2_unary_ops());
}

#[test]
fn version_3_files_still_load_as_the_same_modules() {
    old_modules_load(3, version_3_modules());
}

#[test]
fn version_4_files_still_load_as_the_same_modules() {
    old_modules_load(4, version_4_modules());
}

#[test]
fn debug_tables_round_trip() {
    let m = debug_table_module();
    let back = from_bytes(&to_bytes(&m).unwrap()).unwrap();
    let checks = |m: &Module| -> Vec<kiln_kernel::CheckSite> {
        m.program
            .as_ref()
            .unwrap()
            .kernels
            .iter()
            .flat_map(|k| k.body_list().into_iter().flat_map(|b| b.checks.clone()))
            .collect()
    };
    assert!(!checks(&m).is_empty());
    assert_eq!(checks(&m), checks(&back));
}

/// The files of format `version` (tests/v{version}_files, frozen) load as the test modules
/// built with the unary ops of that version, and encode again as they do.
fn old_files_load_as_the_same_modules(version: u32, unary: &[kiln_ir::UnaryOp]) {
    old_modules_load(version, modules_with(every_construct_module_with(unary)));
}

/// The files of format `version` (tests/v{version}_files, frozen) load as `modules`, and
/// encode again as they do.
fn old_modules_load(version: u32, modules: Vec<(&'static str, Module)>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/v{version}_files"));
    for (name, m) in modules {
        let path = dir.join(format!("{name}.kiln"));
        let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            u32::from_le_bytes(stored[8..12].try_into().unwrap()),
            version
        );
        assert_same(&m, &from_bytes(&stored).unwrap());
        assert_eq!(
            to_bytes(&from_bytes(&stored).unwrap()).unwrap(),
            to_bytes(&m).unwrap()
        );
    }
}
