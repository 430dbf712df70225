//! Golden filetests: each `fixtures/filetests/kernel/*.kir` holds a program followed by the
//! expected verifier output in `;` comments after a `; verifier output:` line. The runner
//! parses the program, checks that printing and re-parsing gives an equal program, verifies
//! it and compares the result.
//! `BLESS=1 cargo test -p kiln-kernel --test integration filetests::` rewrites the
//! expectations.

use kiln_filetest::{Format, run_dir};
use kiln_kernel::{parse, verify};
use std::path::Path;

const FORMAT: Format = Format {
    marker: "; verifier output:",
    blank_before_marker: true,
};

/// The verifier's output for a program text, or a round-trip failure message.
fn run(input: &str) -> Result<Vec<String>, String> {
    let program = match parse(input) {
        Ok(p) => p,
        Err(e) => return Ok(vec![format!("parse error: {e}")]),
    };
    let printed = program.to_string();
    match parse(&printed) {
        Ok(again) if again == program => {}
        Ok(_) => {
            return Err(format!(
                "printed form parses to a different program:\n{printed}"
            ));
        }
        Err(e) => return Err(format!("printed form does not parse ({e}):\n{printed}")),
    }
    if parse(&printed).map(|p| p.to_string()).as_deref() != Ok(printed.as_str()) {
        return Err("printing is not idempotent".to_string());
    }
    Ok(match verify(program) {
        Ok(_) => vec!["ok".to_string()],
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    })
}

#[test]
fn kernel_filetests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/filetests/kernel");
    run_dir(&dir, &FORMAT, 15, |case| run(&case.text()));
}
