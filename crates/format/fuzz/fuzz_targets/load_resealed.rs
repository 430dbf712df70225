//! Fuzz target: like `load_bytes`, but the CRC-32 trailer is recomputed before loading, so
//! mutations reach the header decoder, the limit checks, the verifiers and the
//! cross-checks instead of stopping at the checksum.

#![cfg_attr(fuzzing, no_main)]

#[cfg(not(fuzzing))]
#[path = "harness.rs"]
mod harness;

fn check(data: &[u8]) {
    kiln_format::fuzzing::load_resealed(data);
}

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

#[cfg(not(fuzzing))]
fn main() {
    harness::main(check);
}
