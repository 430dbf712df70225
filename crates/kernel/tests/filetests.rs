//! Golden filetests: each `fixtures/filetests/kernel/*.kir` holds a program followed by the
//! expected verifier output in `;` comments after a `; verifier output:` line. The runner
//! parses the program, checks that printing and re-parsing gives an equal program, verifies
//! it and compares the result. `BLESS=1 cargo test -p kiln-kernel --test filetests` rewrites
//! the expectations.

use kiln_kernel::{parse, verify};
use std::fs;
use std::path::{Path, PathBuf};

const MARKER: &str = "; verifier output:";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/filetests/kernel")
}

/// The program text and the expected lines (without their `; ` prefix).
fn split(text: &str) -> (String, Option<Vec<String>>) {
    let mut input = Vec::new();
    let mut lines = text.lines();
    for line in lines.by_ref() {
        if line.trim_end() == MARKER {
            let expected = lines
                .map(|l| {
                    l.strip_prefix("; ")
                        .or_else(|| l.strip_prefix(';'))
                        .unwrap_or(l)
                        .to_string()
                })
                .filter(|l| !l.is_empty())
                .collect();
            return (input.join("\n"), Some(expected));
        }
        input.push(line);
    }
    (input.join("\n"), None)
}

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
    Ok(match verify(&program) {
        Ok(()) => vec!["ok".to_string()],
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    })
}

#[test]
fn kernel_filetests() {
    let bless = std::env::var("BLESS").is_ok_and(|v| v == "1");
    let mut files: Vec<PathBuf> = fs::read_dir(fixture_dir())
        .expect("fixture directory exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kir"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 15,
        "expected the kernel filetests, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = fs::read_to_string(path).expect("readable fixture");
        let (input, expected) = split(&text);
        let actual = match run(&input) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if bless {
            let mut out = input.trim_end().to_string();
            out.push_str("\n\n");
            out.push_str(MARKER);
            out.push('\n');
            for line in &actual {
                out.push_str("; ");
                out.push_str(line);
                out.push('\n');
            }
            fs::write(path, out).expect("writable fixture");
        } else if expected.as_ref() != Some(&actual) {
            failures.push(format!(
                "{name}: verifier output differs\n--- expected\n{}\n+++ actual\n{}",
                expected
                    .map(|e| e.join("\n"))
                    .unwrap_or_else(|| "(no `; verifier output:` section)".into()),
                actual.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} filetest(s) failed (BLESS=1 rewrites expectations):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
