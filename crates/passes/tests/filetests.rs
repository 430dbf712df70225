//! Golden filetests for the graph passes: every `fixtures/filetests/passes/*.kir` file holds
//! cases of input IR, the passes to run, and the expected output IR in comments.
//!
//! A case looks like this (cases in one file are separated by a `; ----` line):
//!
//! ```text
//! ; run: simplify, dce        passes in order (infer, simplify, cse, control, dce), or
//!                             `optimize` for the whole pipeline
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

use kiln_filetest::{Case, Format, run_dir};
use kiln_ir::{NodeId, parse, parse_unverified};
use kiln_passes::pipeline::{Dump, Func, PassStats, PipelineOptions, optimize};
use kiln_passes::simplify::SimplifyOptions;
use kiln_passes::{control, cse, dce, infer, simplify};
use std::collections::BTreeMap;
use std::path::Path;

const FORMAT: Format = Format {
    marker: "; expect:",
    blank_before_marker: false,
};

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
    let passes: Vec<&str> = case
        .directive("run")
        .ok_or("missing `; run:` line")?
        .split(',')
        .map(str::trim)
        .collect();
    let outputs = parse_ids(
        case.directive("outputs")
            .ok_or("missing `; outputs:` line")?,
    )?;
    let mut simplify_opts = SimplifyOptions::default();
    if let Some(l) = case.directive("fold_limit") {
        simplify_opts.fold_limit = l.parse().map_err(|_| format!("bad fold_limit `{l}`"))?;
    }
    let text = case.text();
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
            "control" => control::control(&mut func),
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

#[test]
fn passes_filetests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/filetests/passes");
    run_dir(&dir, &FORMAT, 5, run_case);
}

#[test]
fn a_case_runs_its_passes_and_reports_outputs() {
    let text = "; run: cse\n; outputs: n0\nn0 = input \"y\" : f32[]\n; expect:\n; old\n";
    let cases = kiln_filetest::split(text, &FORMAT);
    let actual = run_case(&cases[0]).expect("a well-formed case");
    assert_eq!(actual, vec!["n0 = input \"y\" : f32[]", "outputs: n0"]);
}
