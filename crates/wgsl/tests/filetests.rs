//! Golden WGSL filetests: each `fixtures/filetests/wgsl/*.kir` holds a kernel program
//! followed by the expected output in `;` comments after a `; wgsl output:` line: every
//! kernel's shader with its binding/launch header, or the compile error. Every generated
//! shader is also validated with naga. `BLESS=1 cargo test -p kiln-wgsl --test filetests`
//! rewrites the expectations.

mod common;

use kiln_kernel::parse;
use std::fs;
use std::path::{Path, PathBuf};

const MARKER: &str = "; wgsl output:";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/filetests/wgsl")
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
                .collect();
            return (input.join("\n"), Some(expected));
        }
        input.push(line);
    }
    (input.join("\n"), None)
}

/// The generated output for a program text, or a failure (parse error, invalid WGSL).
fn run(input: &str) -> Result<Vec<String>, String> {
    let program = parse(input).map_err(|e| format!("parse error: {e}"))?;
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
    let bless = std::env::var("BLESS").is_ok_and(|v| v == "1");
    let mut files: Vec<PathBuf> = fs::read_dir(fixture_dir())
        .expect("fixture directory exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kir"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the wgsl filetests, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let text = fs::read_to_string(path).expect("fixture is readable");
        let (input, expected) = split(&text);
        let actual = match run(&input) {
            Ok(lines) => lines,
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
            for l in &actual {
                if l.is_empty() {
                    out.push_str(";\n");
                } else {
                    out.push_str("; ");
                    out.push_str(l);
                    out.push('\n');
                }
            }
            fs::write(path, out).expect("fixture is writable");
        } else if expected.as_ref() != Some(&actual) {
            failures.push(format!(
                "{name}: output differs (BLESS=1 rewrites)\n--- expected\n{}\n--- actual\n{}",
                expected.map_or("<none>".to_string(), |e| e.join("\n")),
                actual.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
