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

use kiln_filetest::{Case, Format, run_dir};
use kiln_ir::{NodeId, parse};
use kiln_passes::fuse::{FuseReport, lower_with};
use std::path::Path;

const FORMAT: Format = Format {
    marker: "; expect:",
    blank_before_marker: false,
};

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
/// The lowered plan and its report; a failed `; assert:` line is a failure even under BLESS.
fn run_case(case: &Case) -> Result<Vec<String>, String> {
    let outputs = pairs(
        case.directive("outputs")
            .ok_or("missing `; outputs:` line")?,
    )?;
    let updates = match case.directive("updates") {
        Some(s) => pairs(s)?,
        None => Vec::new(),
    };
    let graph = parse(&case.text()).map_err(|e| format!("input does not parse: {e}"))?;
    let lowered = match lower_with(&graph, &outputs, &updates) {
        Ok(l) => l,
        Err(e) => return Ok(vec![format!("error: {e}")]),
    };
    let text = lowered.program.to_string();
    match kiln_kernel::parse(&text) {
        Ok(p) if p == *lowered.program => {}
        Ok(_) => return Err("the printed program parses to a different program".into()),
        Err(e) => return Err(format!("the printed program does not parse: {e}")),
    }
    let failures: Vec<String> = case
        .directives("assert")
        .into_iter()
        .filter_map(|a| check_assert(a, &lowered.report).err())
        .collect();
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.push(format!("report: {}", lowered.report));
    Ok(lines)
}

#[test]
fn fuse_filetests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/filetests/fuse");
    run_dir(&dir, &FORMAT, 5, run_case);
}
