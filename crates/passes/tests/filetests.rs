//! Golden filetests for the graph passes: every `fixtures/filetests/passes/*.kir` file holds
//! cases of input IR, the passes to run, and the expected output IR in comments.
//!
//! A case looks like this (cases in one file are separated by a `; ----` line):
//!
//! ```text
//! ; run: simplify, dce        passes in order, or `optimize` for the whole pipeline
//! ; outputs: n2               the function's outputs
//! ; fold_limit: 16            optional simplify setting
//! n0 = input "x" : f32[3]
//! n1 = const f32[] [1.0] : f32[]
//! n2 = mul n0, n1 : f32[3]
//! ; expect:
//! ; n0 = input "x" : f32[3]
//! ; outputs: n0
//! ; fired: mul_by_one=1
//! ```
//!
//! The expectation is the function's text after the passes, an `outputs:` line, and a
//! `fired:` line listing the rules simplify applied (if any); or `error: ...` when a pass
//! fails. Run with `BLESS=1` (or `just bless`) to rewrite every expectation in place.
//! The input is parsed without verification when the first pass is `infer` (so that pass can
//! report the errors) and with verification otherwise.

use kiln_ir::{NodeId, parse, parse_unverified};
use kiln_passes::pipeline::{Dump, Func, PassStats, PipelineOptions, optimize};
use kiln_passes::simplify::SimplifyOptions;
use kiln_passes::{cse, dce, infer, simplify};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SEPARATOR: &str = "; ----";
const EXPECT: &str = "; expect:";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/filetests/passes")
}

/// One case: its input part (header and IR, verbatim) and its expected output lines.
struct Case {
    input: Vec<String>,
    expected: Vec<String>,
}

fn split_cases(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut chunk: Vec<&str> = Vec::new();
    let mut lines = text.lines().peekable();
    loop {
        let line = lines.next();
        if line.is_none() || line.is_some_and(|l| l.trim_end() == SEPARATOR) {
            if chunk.iter().any(|l| !l.trim().is_empty()) {
                cases.push(parse_case(&chunk));
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

fn parse_case(lines: &[&str]) -> Case {
    let at = lines.iter().position(|l| l.trim_end() == EXPECT);
    let (input, expected) = match at {
        Some(i) => (&lines[..i], &lines[i + 1..]),
        None => (lines, &[][..]),
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
    Case {
        input: input.iter().map(|l| l.to_string()).collect(),
        expected,
    }
}

fn directive<'a>(input: &'a [String], key: &str) -> Option<&'a str> {
    let prefix = format!("; {key}:");
    input
        .iter()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::trim)
}

fn parse_ids(s: &str) -> Result<Vec<NodeId>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.strip_prefix('n')
                .and_then(|n| n.parse().ok())
                .map(NodeId)
                .ok_or_else(|| format!("bad node id `{t}` in `; outputs:`"))
        })
        .collect()
}

/// Runs a case and returns its output lines, or a message when the fixture itself is bad.
fn run_case(case: &Case) -> Result<Vec<String>, String> {
    let passes: Vec<&str> = directive(&case.input, "run")
        .ok_or("missing `; run:` line")?
        .split(',')
        .map(str::trim)
        .collect();
    let outputs = parse_ids(directive(&case.input, "outputs").ok_or("missing `; outputs:` line")?)?;
    let mut simplify_opts = SimplifyOptions::default();
    if let Some(l) = directive(&case.input, "fold_limit") {
        simplify_opts.fold_limit = l.parse().map_err(|_| format!("bad fold_limit `{l}`"))?;
    }
    let text = case.input.join("\n");
    let graph = if passes.first() == Some(&"infer") {
        parse_unverified(&text)
    } else {
        parse(&text)
    }
    .map_err(|e| format!("input does not parse: {e}"))?;
    let mut func = Func { graph, outputs };

    let mut fired: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut record = |s: PassStats| {
        for (k, v) in s.rules {
            *fired.entry(k).or_insert(0) += v;
        }
    };
    for pass in &passes {
        let result = match *pass {
            "infer" => infer::infer(&mut func),
            "simplify" => simplify::simplify(&mut func, &simplify_opts),
            "cse" => cse::cse(&mut func),
            "dce" => dce::dce(&mut func),
            "optimize" => {
                let opts = PipelineOptions {
                    verify: true,
                    dump: Dump::Off,
                    simplify: simplify_opts,
                    ..PipelineOptions::default()
                };
                optimize(&mut func, &opts).map(|r| r.stats_of("simplify"))
            }
            other => return Err(format!("unknown pass `{other}`")),
        };
        match result {
            Ok(stats) => record(stats),
            Err(e) => return Ok(format!("error: {e}").lines().map(String::from).collect()),
        }
    }

    let mut out: Vec<String> = func.graph.to_string().lines().map(String::from).collect();
    let outs: Vec<String> = func.outputs.iter().map(NodeId::to_string).collect();
    out.push(format!("outputs: {}", outs.join(", ")));
    if !fired.is_empty() {
        let list: Vec<String> = fired.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push(format!("fired: {}", list.join(", ")));
    }
    Ok(out)
}

fn render(cases: &[(Vec<String>, Vec<String>)]) -> String {
    let mut text = String::new();
    for (i, (input, expected)) in cases.iter().enumerate() {
        if i > 0 {
            text.push_str(SEPARATOR);
            text.push('\n');
        }
        let mut input = input.clone();
        while input.last().is_some_and(|l| l.trim().is_empty()) {
            input.pop();
        }
        for l in &input {
            text.push_str(l);
            text.push('\n');
        }
        text.push_str(EXPECT);
        text.push('\n');
        for l in expected {
            if l.is_empty() {
                text.push_str(";\n");
            } else {
                text.push_str("; ");
                text.push_str(l);
                text.push('\n');
            }
        }
    }
    text
}

#[test]
fn passes_filetests() {
    let bless = std::env::var("BLESS").is_ok_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixtures/filetests/passes exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kir"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .kir filetests found");
    let mut failures = Vec::new();
    let mut total = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable filetest");
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut rendered = Vec::new();
        for (i, case) in split_cases(&text).iter().enumerate() {
            total += 1;
            match run_case(case) {
                Ok(actual) => {
                    if actual != case.expected && !bless {
                        failures.push(format!(
                            "{name} case {}:\n--- expected\n{}\n--- actual\n{}\n",
                            i + 1,
                            case.expected.join("\n"),
                            actual.join("\n")
                        ));
                    }
                    rendered.push((case.input.clone(), actual));
                }
                Err(msg) => {
                    failures.push(format!("{name} case {}: {msg}", i + 1));
                    rendered.push((case.input.clone(), case.expected.clone()));
                }
            }
        }
        if bless {
            let new = render(&rendered);
            if new != text {
                std::fs::write(path, new).expect("writable filetest");
            }
        }
    }
    assert!(
        total >= 5,
        "expected at least one case per pass, found {total}"
    );
    assert!(
        failures.is_empty(),
        "{} filetest failure(s) (run with BLESS=1 to accept):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn filetest_cases_split_and_render_round_trip() {
    let text = "; run: dce\n; outputs: n0\nn0 = input \"x\" : f32[2]\n; expect:\n; n0 = input \"x\" : f32[2]\n;\n; outputs: n0\n; ----\n; run: cse\n; outputs: n0\nn0 = input \"y\" : f32[]\n; expect:\n; old\n";
    let cases = split_cases(text);
    assert_eq!(cases.len(), 2);
    assert_eq!(
        cases[0].expected,
        vec!["n0 = input \"x\" : f32[2]", "", "outputs: n0"]
    );
    assert_eq!(cases[1].expected, vec!["old"]);
    let rendered: Vec<(Vec<String>, Vec<String>)> = cases
        .iter()
        .map(|c| (c.input.clone(), c.expected.clone()))
        .collect();
    assert_eq!(render(&rendered), text);
    let actual = run_case(&cases[1]).expect("a well-formed case");
    assert_eq!(actual, vec!["n0 = input \"y\" : f32[]", "outputs: n0"]);
}
