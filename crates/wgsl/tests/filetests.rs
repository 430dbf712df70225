//! Golden WGSL filetests: each `fixtures/filetests/wgsl/*.kir` holds a kernel program
//! followed by the expected output in `;` comments after a `; wgsl output:` line: every
//! kernel's shader with its binding/launch header, or the compile error. Every generated
//! shader is also validated with naga.
//! `BLESS=1 cargo test -p kiln-wgsl --test integration filetests::` rewrites the
//! expectations.

use crate::common;

use kiln_filetest::{Format, run_dir};
use kiln_kernel::parse;
use std::path::Path;

const FORMAT: Format = Format {
    marker: "; wgsl output:",
    blank_before_marker: true,
};

/// The generated output for a program text, or a failure (parse error, invalid WGSL).
fn run(input: &str) -> Result<Vec<String>, String> {
    let program = parse(input).map_err(|e| format!("parse error: {e}"))?;
    let program =
        kiln_kernel::verify(program).map_err(|e| format!("the program does not verify: {e}"))?;
    match kiln_wgsl::compile(&program) {
        Ok(wgsl) => {
            for k in &wgsl.kernels {
                common::validate(&k.source)
                    .map_err(|e| format!("{}: invalid WGSL:\n{e}\n{}", k.kernel, k.source))?;
            }
            Ok(wgsl.to_string().lines().map(str::to_string).collect())
        }
        Err(e) => Ok(e
            .to_string()
            .lines()
            .map(|l| format!("error: {l}"))
            .collect()),
    }
}

#[test]
fn wgsl_filetests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/filetests/wgsl");
    run_dir(&dir, &FORMAT, 10, |case| run(&case.text()));
}
