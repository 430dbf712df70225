//! Golden filetests for fusion: every `fixtures/filetests/fuse/*.kir` file holds cases of
//! input graph IR and, in comments after it, the kernel plan `fuse::lower_with` produces.
//!
//! A case looks like this (cases in one file are separated by a `; ----` line):
//!
//! ```text
//! ; outputs: y=n5               named outputs (name=node, comma-separated)
//! ; updates: w=n9               optional in-place state updates (parameter=node)
//! ; assert: kernels <= 2        optional kernel-count checks, kept even under BLESS
//! n0 = input "x" : f32[N, 10]
//! ...
//! ; expect:
//! ; symbol N >= 1
//! ; b0 = input "x" f32[N*10]
//! ; ...
//! ; report: 2 kernels: 0 matmul, 0 conv2d, 2 reduction, 0 elementwise; 1 scratch buffers
//! ```
//!
//! The expectation is the printed program and its report (or `error: ...`). Every lowered
//! program must pass the kernel verifier and print/parse round trip. Run with `BLESS=1` to
//! rewrite the expectations in place; the `assert:` lines are checked either way.

use kiln_ir::{NodeId, parse};
use kiln_passes::fuse::{FuseReport, lower_with};
use std::path::{Path, PathBuf};

const SEPARATOR: &str = "; ----";
const EXPECT: &str = "; expect:";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/filetests/fuse")
}

struct Case {
    input: Vec<String>,
    expected: Vec<String>,
}

fn split_cases(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut chunk: Vec<&str> = Vec::new();
    let mut lines = text.lines();
    loop {
        let line = lines.next();
        if line.is_none() || line.is_some_and(|l| l.trim_end() == SEPARATOR) {
            if chunk.iter().any(|l| !l.trim().is_empty()) {
                let at = chunk.iter().position(|l| l.trim_end() == EXPECT);
                let (input, expected) = match at {
                    Some(i) => (&chunk[..i], &chunk[i + 1..]),
                    None => (&chunk[..], &[][..]),
                };
                let mut expected: Vec<String> = expected
                    .iter()
                    .map(|l| {
                        l.strip_prefix("; ")
                            .or_else(|| l.strip_prefix(';'))
                            .unwrap_or(l)
                            .to_string()
                    })
                    .collect();
                while expected.last().is_some_and(|l| l.trim().is_empty()) {
                    expected.pop();
                }
                cases.push(Case {
                    input: input.iter().map(|l| l.to_string()).collect(),
                    expected,
                });
            }
            chunk.clear();
            if line.is_none() {
                break;
            }
        } else if let Some(l) = line {
            chunk.push(l);
        }
    }
    cases
}

fn directive<'a>(input: &'a [String], key: &str) -> Vec<&'a str> {
    let prefix = format!("; {key}:");
    input
        .iter()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::trim)
        .collect()
}

fn pairs(s: &str) -> Result<Vec<(String, NodeId)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (name, node) = t
                .split_once('=')
                .ok_or_else(|| format!("expected name=nK, got `{t}`"))?;
            let id = node
                .trim()
                .strip_prefix('n')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("bad node `{node}`"))?;
            Ok((name.trim().to_string(), NodeId(id)))
        })
        .collect()
}

/// Checks one `kernels <= 2` style assertion against the report.
fn check_assert(spec: &str, r: &FuseReport) -> Result<(), String> {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [key, op, value] = parts[..] else {
        return Err(format!("bad assertion `{spec}`"));
    };
    let got = match key {
        "kernels" => r.kernels(),
        "loops" => r.loops(),
        "matmul" => r.matmul,
        "conv2d" => r.conv2d,
        "reduction" => r.reduction,
        "elementwise" => r.elementwise,
        "scratch" => r.scratch,
        _ => return Err(format!("unknown count `{key}`")),
    };
    let want: usize = value
        .parse()
        .map_err(|_| format!("bad number in `{spec}`"))?;
    let ok = match op {
        "<=" => got <= want,
        "==" => got == want,
        ">=" => got >= want,
        _ => return Err(format!("bad comparison in `{spec}`")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("assertion `{spec}` failed: {key} = {got} ({r})"))
    }
}

/// Runs a case: its output lines, and any failed assertion.
fn run_case(case: &Case) -> Result<(Vec<String>, Vec<String>), String> {
    let outputs = pairs(
        directive(&case.input, "outputs")
            .first()
            .ok_or("missing `; outputs:` line")?,
    )?;
    let updates = match directive(&case.input, "updates").first() {
        Some(s) => pairs(s)?,
        None => Vec::new(),
    };
    let graph = parse(&case.input.join("\n")).map_err(|e| format!("input does not parse: {e}"))?;
    let lowered = match lower_with(&graph, &outputs, &updates) {
        Ok(l) => l,
        Err(e) => return Ok((vec![format!("error: {e}")], Vec::new())),
    };
    if let Err(e) = kiln_kernel::verify(&lowered.program) {
        return Err(format!("the lowered program does not verify:\n{e}"));
    }
    let text = lowered.program.to_string();
    match kiln_kernel::parse(&text) {
        Ok(p) if p == lowered.program => {}
        Ok(_) => return Err("the printed program parses to a different program".into()),
        Err(e) => return Err(format!("the printed program does not parse: {e}")),
    }
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.push(format!("report: {}", lowered.report));
    let failures = directive(&case.input, "assert")
        .into_iter()
        .filter_map(|a| check_assert(a, &lowered.report).err())
        .collect();
    Ok((lines, failures))
}

fn render(cases: &[(Case, Vec<String>)]) -> String {
    let mut out = String::new();
    for (i, (case, got)) in cases.iter().enumerate() {
        if i > 0 {
            out.push_str(SEPARATOR);
            out.push('\n');
        }
        for l in &case.input {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str(EXPECT);
        out.push('\n');
        for l in got {
            if l.is_empty() {
                out.push_str(";\n");
            } else {
                out.push_str("; ");
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn fuse_filetests() {
    let bless = std::env::var("BLESS").is_ok_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixtures/filetests/fuse exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kir"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the fusion fixtures, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable fixture");
        let mut results = Vec::new();
        for (i, case) in split_cases(&text).into_iter().enumerate() {
            let name = format!("{} case {}", path.display(), i + 1);
            match run_case(&case) {
                Ok((got, asserts)) => {
                    for a in asserts {
                        failures.push(format!("{name}: {a}"));
                    }
                    if !bless && got != case.expected {
                        failures.push(format!(
                            "{name}: output differs (rerun with BLESS=1 to accept)\n--- expected\n{}\n--- got\n{}",
                            case.expected.join("\n"),
                            got.join("\n")
                        ));
                    }
                    results.push((case, got));
                }
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    let expected = case.expected.clone();
                    results.push((case, expected));
                }
            }
        }
        if bless {
            let rendered = render(&results);
            if rendered != text {
                std::fs::write(path, rendered).expect("fixture is writable");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
