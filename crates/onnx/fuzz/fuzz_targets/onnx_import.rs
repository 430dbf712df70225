//! Fuzz target: `kiln_onnx::fuzzing::import_check` (any bytes import and compile on
//! `interp`, or give one-line errors). Seeds: `seeds/` (small models of the reference
//! models and the ONNX node suite; `cargo fuzz run onnx_import seeds` on nightly).

#![cfg_attr(fuzzing, no_main)]

#[cfg(not(fuzzing))]
#[path = "../../../format/fuzz/fuzz_targets/harness.rs"]
mod harness;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_onnx::fuzzing::import_check(data));

#[cfg(not(fuzzing))]
fn main() {
    harness::main(kiln_onnx::fuzzing::import_check);
}
