//! The golden filetest runner every filetest directory uses.
//!
//! A filetest file holds one or more cases, separated by a `; ----` line. A case is its input
//! text (lines starting with `; key:` are directives the caller reads) followed by a marker
//! line (`; expect:`, `; verifier output:`, ...) and the expected output lines, each behind
//! `; ` (an empty line as a bare `;`):
//!
//! ```text
//! ; outputs: n2
//! n0 = input "x" : f32[3]
//! ; expect:
//! ; n0 = input "x" : f32[3]
//! ```
//!
//! [`run_dir`] runs every `*.kir` file of a directory through the caller's function and
//! reports every difference at once; with `BLESS=1` in the environment it rewrites the
//! expectations in place instead, so the change shows in review as a diff.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The line between cases of one file.
pub const SEPARATOR: &str = "; ----";

/// How a directory's files are laid out.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    /// The line that starts a case's expected output.
    pub marker: &'static str,
    /// Whether a blank line precedes the marker when rewriting.
    pub blank_before_marker: bool,
}

/// One case of a filetest file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The input lines, verbatim (trailing blank lines dropped).
    pub input: Vec<String>,
    /// The expected output lines without their `; ` prefix, or `None` if there is no marker.
    pub expected: Option<Vec<String>>,
}

impl Case {
    /// The input as one text.
    pub fn text(&self) -> String {
        self.input.join("\n")
    }

    /// The values of every `; key: value` directive line, in order.
    pub fn directives(&self, key: &str) -> Vec<&str> {
        let prefix = format!("; {key}:");
        self.input
            .iter()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::trim)
            .collect()
    }

    /// The value of the first `; key: value` directive line.
    pub fn directive(&self, key: &str) -> Option<&str> {
        self.directives(key).into_iter().next()
    }
}

/// Splits a file into its cases.
pub fn split(text: &str, format: &Format) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut chunk: Vec<&str> = Vec::new();
    let mut lines = text.lines();
    loop {
        let line = lines.next();
        if line.is_none() || line.is_some_and(|l| l.trim_end() == SEPARATOR) {
            if chunk.iter().any(|l| !l.trim().is_empty()) {
                cases.push(case_of(&chunk, format));
            }
            chunk.clear();
            if line.is_none() {
                return cases;
            }
        } else if let Some(l) = line {
            chunk.push(l);
        }
    }
}

fn case_of(lines: &[&str], format: &Format) -> Case {
    let at = lines.iter().position(|l| l.trim_end() == format.marker);
    let input = trimmed(
        lines[..at.unwrap_or(lines.len())]
            .iter()
            .map(|l| l.to_string()),
    );
    let expected = at.map(|i| {
        trimmed(lines[i + 1..].iter().map(|l| {
            l.strip_prefix("; ")
                .or_else(|| l.strip_prefix(';'))
                .unwrap_or(l)
                .to_string()
        }))
    });
    Case { input, expected }
}

/// The lines with trailing blank ones dropped.
fn trimmed(lines: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = lines.collect();
    while v.last().is_some_and(|l| l.trim().is_empty()) {
        v.pop();
    }
    v
}

/// The file text of `cases`, each with the given output lines.
pub fn render(cases: &[(&Case, &[String])], format: &Format) -> String {
    let mut out = String::new();
    for (i, (case, lines)) in cases.iter().enumerate() {
        if i > 0 {
            out.push_str(SEPARATOR);
            out.push('\n');
        }
        for l in &case.input {
            out.push_str(l);
            out.push('\n');
        }
        if format.blank_before_marker {
            out.push('\n');
        }
        out.push_str(format.marker);
        out.push('\n');
        for l in lines.iter() {
            if l.is_empty() {
                out.push_str(";\n");
            } else {
                let _ = writeln!(out, "; {l}");
            }
        }
    }
    out
}

/// True when `BLESS=1` asks for expectations to be rewritten.
pub fn blessing() -> bool {
    std::env::var("BLESS").is_ok_and(|v| v == "1")
}

/// Runs every `*.kir` file in `dir` (at least `min_files` of them) through `run`, which
/// returns a case's output lines or a message saying the fixture or the code under test is
/// broken (a failure even under `BLESS=1`). Panics listing every failure.
pub fn run_dir(
    dir: &Path,
    format: &Format,
    min_files: usize,
    mut run: impl FnMut(&Case) -> Result<Vec<String>, String>,
) {
    let bless = blessing();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("filetest directory {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kir"))
        .collect();
    files.sort();
    assert!(
        files.len() >= min_files,
        "expected at least {min_files} filetests in {}, found {}",
        dir.display(),
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("filetest {}: {e}", path.display()));
        let cases = split(&text, format);
        let mut outputs: Vec<Vec<String>> = Vec::with_capacity(cases.len());
        for (i, case) in cases.iter().enumerate() {
            let at = if cases.len() > 1 {
                format!("{name} case {}", i + 1)
            } else {
                name.clone()
            };
            match run(case) {
                Ok(got) => {
                    if !bless && case.expected.as_ref() != Some(&got) {
                        failures.push(format!(
                            "{at}: output differs (BLESS=1 rewrites)\n--- expected\n{}\n+++ actual\n{}",
                            case.expected.as_ref().map_or_else(
                                || format!("(no `{}` section)", format.marker),
                                |e| e.join("\n")
                            ),
                            got.join("\n")
                        ));
                    }
                    outputs.push(got);
                }
                Err(e) => {
                    failures.push(format!("{at}: {e}"));
                    outputs.push(case.expected.clone().unwrap_or_default());
                }
            }
        }
        if bless {
            let pairs: Vec<(&Case, &[String])> = cases
                .iter()
                .zip(&outputs)
                .map(|(c, o)| (c, o.as_slice()))
                .collect();
            let new = render(&pairs, format);
            if new != text {
                std::fs::write(path, new)
                    .unwrap_or_else(|e| panic!("filetest {}: {e}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} filetest failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECT: Format = Format {
        marker: "; expect:",
        blank_before_marker: false,
    };

    #[test]
    fn cases_split_and_render_round_trip() {
        let text = "; run: dce\n; outputs: n0\nn0 = input \"x\" : f32[2]\n; expect:\n; n0 = input \"x\" : f32[2]\n;\n; outputs: n0\n; ----\n; run: cse\n; outputs: n0, n1\nn0 = input \"y\" : f32[]\n; expect:\n; old\n";
        let cases = split(text, &EXPECT);
        assert_eq!(cases.len(), 2);
        assert_eq!(
            cases[0].expected.as_deref(),
            Some(
                &[
                    "n0 = input \"x\" : f32[2]".to_string(),
                    String::new(),
                    "outputs: n0".to_string()
                ][..]
            )
        );
        assert_eq!(cases[1].directive("outputs"), Some("n0, n1"));
        assert_eq!(cases[1].directives("run"), vec!["cse"]);
        let pairs: Vec<(&Case, &[String])> = cases
            .iter()
            .map(|c| (c, c.expected.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(render(&pairs, &EXPECT), text);
    }

    #[test]
    fn a_single_case_with_a_blank_line_before_its_marker_round_trips() {
        let format = Format {
            marker: "; verifier output:",
            blank_before_marker: true,
        };
        let text = "k0 = loop\n  store b0[i0]\n\n; verifier output:\n; ok\n";
        let cases = split(text, &format);
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].text(), "k0 = loop\n  store b0[i0]");
        assert_eq!(cases[0].expected, Some(vec!["ok".to_string()]));
        let lines = vec!["ok".to_string()];
        assert_eq!(render(&[(&cases[0], &lines)], &format), text);
        let none = split("k0 = loop\n", &format);
        assert_eq!(none[0].expected, None);
    }
}
