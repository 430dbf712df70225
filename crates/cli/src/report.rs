//! Error reports on stderr: one bounded line by default, every cause in full on request.

/// The longest one-line report; longer ones are cut with a pointer to `--verbose`.
const MAX_LINE: usize = 480;

/// True if `KILN_LOG` asks for full error reports.
pub fn log_requested() -> bool {
    std::env::var_os("KILN_LOG").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Library calls that library messages advise, and the runner flag that does the same; the
/// runner's reports name the flags (docs/errors.md).
const FLAGS: [(&str, &str); 5] = [
    (
        "run this program on `Backend::Cpu` or `Backend::Interp`",
        "rerun with --backend cpu or --backend interp",
    ),
    (
        "run this program on `Backend::Cpu`",
        "rerun with --backend cpu",
    ),
    ("use `Backend::Cpu`", "use --backend cpu"),
    ("(`Executable::run_with`, e.g. ", "(--bind "),
    ("from the explicit binding", "from --bind"),
];

/// A library message in the runner's terms: each library call it advises becomes the flag.
pub fn with_flags(text: &str) -> String {
    FLAGS
        .iter()
        .fold(text.to_string(), |t, (call, flag)| t.replace(call, flag))
}

/// The cause chain as one line: each cause's text flattened onto one line, a cause whose
/// text the previous message already contains left out (so nothing is said twice), joined
/// by `: ` and cut at [`MAX_LINE`] characters.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = with_flags(&flatten(&cause.to_string()));
        if text.is_empty() || parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        if let Some(last) = parts.last_mut()
            && text.contains(last.as_str())
        {
            *last = text;
            continue;
        }
        parts.push(text);
    }
    let line = parts.join(": ");
    if line.chars().count() <= MAX_LINE {
        return line;
    }
    let cut: String = line.chars().take(MAX_LINE).collect();
    format!(
        "{cut}... ({} more characters; rerun with --verbose or KILN_LOG=1 for the whole report)",
        line.chars().count() - MAX_LINE
    )
}

/// Every cause in full, one per line, in the order they were attached.
pub fn full(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for (i, cause) in err.chain().enumerate() {
        if i > 0 {
            out.push_str("\n  caused by: ");
        }
        out.push_str(&with_flags(&cause.to_string()));
    }
    out
}

/// The text on one line: its lines trimmed and joined by `; ` (by a space after a colon).
fn flatten(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::{Context, anyhow};

    #[test]
    fn a_cause_repeated_by_its_context_is_said_once() {
        let e = Err::<(), _>(anyhow!("k0: integer division by zero"))
            .context("k0: integer division by zero")
            .context("model.kiln")
            .unwrap_err();
        assert_eq!(one_line(&e), "model.kiln: k0: integer division by zero");
        let e = Err::<(), _>(anyhow!("integer division by zero"))
            .context("k0: integer division by zero")
            .unwrap_err();
        assert_eq!(one_line(&e), "k0: integer division by zero");
    }

    #[test]
    fn library_calls_become_runner_flags() {
        let e = anyhow!(
            "b1 is i64, which WGSL cannot express; run this program on `Backend::Cpu` or \
             `Backend::Interp`"
        );
        assert_eq!(
            one_line(&e),
            "b1 is i64, which WGSL cannot express; rerun with --backend cpu or --backend interp"
        );
        let e = anyhow!(
            "symbol N is not determined by the inputs; bind it explicitly (`Executable::run_with`, e.g. N=8)"
        );
        assert_eq!(
            full(&e),
            "symbol N is not determined by the inputs; bind it explicitly (--bind N=8)"
        );
    }

    #[test]
    fn multi_line_and_huge_causes_become_one_bounded_line() {
        let e = anyhow!("shader validation failed:\n   ┌─ wgsl:3:5\n   │\n 3 │ x % 0\n");
        let line = one_line(&e);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(line, "shader validation failed: ┌─ wgsl:3:5; │; 3 │ x % 0");
        let e = anyhow!("{}", "lowering n1 ".repeat(20_000));
        let line = one_line(&e);
        assert!(line.chars().count() < MAX_LINE + 100, "{}", line.len());
        assert!(line.ends_with("for the whole report)"), "{line}");
        assert_eq!(full(&e).len(), "lowering n1 ".len() * 20_000);
    }
}
