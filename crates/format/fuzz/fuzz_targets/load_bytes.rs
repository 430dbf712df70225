//! Fuzz target: `kiln_format::from_bytes` on arbitrary bytes must return (`Ok` or a clean
//! error) and never panic, abort or read out of bounds. Most inputs fail the checksum; see
//! `load_resealed` for the target that gets past it.

#![cfg_attr(fuzzing, no_main)]

#[cfg(not(fuzzing))]
#[path = "harness.rs"]
mod harness;

fn check(data: &[u8]) {
    kiln_format::fuzzing::load_bytes(data);
}

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

#[cfg(not(fuzzing))]
fn main() {
    harness::main(check);
}
