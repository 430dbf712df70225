//! The fuzz harnesses of the loader, shared by the cargo-fuzz targets (crates/format/fuzz)
//! and the stable smoke test that runs them in CI (crates/cli/tests/fuzz_parsers.rs). Each
//! panics when a property fails; that is its purpose.

use crate::{from_bytes, layout, to_bytes};

/// `from_bytes` on raw bytes: an error is one line; a module that loads encodes again
/// and the encoding loads.
pub fn load_bytes(data: &[u8]) {
    match from_bytes(data) {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
        }
        Ok(m) => match to_bytes(&m) {
            Ok(again) => {
                if let Err(e) = from_bytes(&again) {
                    panic!("a re-encoded module does not load: {e}");
                }
            }
            Err(e) => panic!("a loaded module does not encode: {e}"),
        },
    }
}

/// [`load_bytes`] after recomputing the CRC-32 trailer, so mutations reach the decoder,
/// the limits, the verifiers and the cross-checks instead of stopping at the checksum.
pub fn load_resealed(data: &[u8]) {
    let mut bytes = data.to_vec();
    layout::reseal(&mut bytes);
    load_bytes(&bytes);
}
