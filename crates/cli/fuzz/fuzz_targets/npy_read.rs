//! Fuzz target: `kiln::npy::fuzz_check` (the `.npy` reader: any bytes give an array or a
//! one-line error, and an array read round-trips). Seeds: `seeds/npy`.

#![cfg_attr(fuzzing, no_main)]

#[cfg(not(fuzzing))]
#[path = "../../../format/fuzz/fuzz_targets/harness.rs"]
mod harness;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::npy::fuzz_check(data));

#[cfg(not(fuzzing))]
fn main() {
    harness::main(kiln::npy::fuzz_check);
}
