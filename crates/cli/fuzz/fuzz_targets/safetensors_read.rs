//! Fuzz target: `kiln_cli::safetensors_file::check` (the bounded `.safetensors` reader and
//! the tensor conversion `kiln import-weights` uses: any bytes give tensors or one-line
//! errors). Seeds: `seeds/safetensors`.

#![cfg_attr(fuzzing, no_main)]

#[cfg(not(fuzzing))]
#[path = "../../../format/fuzz/fuzz_targets/harness.rs"]
mod harness;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_cli::safetensors_file::check(data));

#[cfg(not(fuzzing))]
fn main() {
    harness::main(kiln_cli::safetensors_file::check);
}
