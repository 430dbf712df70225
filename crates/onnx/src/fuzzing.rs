//! The fuzz harness of the importer, a plain library function shared by the cargo-fuzz
//! target (`crates/onnx/fuzz`) and the mutation test (`tests/hostile.rs`).

use crate::{ImportOptions, import};
use kiln::Backend;

/// Imports `bytes` and compiles what imports on `interp`; returns the error messages seen.
pub fn import_errors(bytes: &[u8]) -> Vec<String> {
    let mut errors = Vec::new();
    match import(bytes, &ImportOptions::default()) {
        Ok(m) => {
            if let Err(e) = m.compile(Backend::Interp) {
                errors.push(e.to_string());
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    errors
}

/// The fuzz oracle: any bytes import (and compile) or give one-line errors; a panic or a
/// multi-line message is a finding.
pub fn import_check(bytes: &[u8]) {
    for e in import_errors(bytes) {
        assert!(!e.contains('\n'), "a multi-line error: {e:?}");
    }
}
