//! Fuzz target: like `load_bytes`, but the CRC-32 trailer is recomputed before loading, so
//! mutations reach the header decoder, the limit checks, the verifiers and the
//! cross-checks instead of stopping at the checksum.

#![cfg_attr(fuzzing, no_main)]

#[cfg(not(fuzzing))]
#[path = "harness.rs"]
mod harness;

fn check(data: &[u8]) {
    let mut bytes = data.to_vec();
    kiln_format::layout::reseal(&mut bytes);
    if let Ok(m) = kiln_format::from_bytes(&bytes) {
        match kiln_format::to_bytes(&m) {
            Ok(again) => {
                if let Err(e) = kiln_format::from_bytes(&again) {
                    panic!("a re-encoded module does not load: {e}");
                }
            }
            Err(e) => panic!("a loaded module does not encode: {e}"),
        }
    }
}

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

#[cfg(not(fuzzing))]
fn main() {
    harness::main(check);
}
