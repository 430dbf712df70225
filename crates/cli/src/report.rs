//! Error reports on stderr: one bounded line by default, every cause in full on request.

/// The longest one-line report; longer ones are cut with a pointer to `--verbose`.
const MAX_LINE: usize = 480;

/// True if `KILN_LOG` asks for full error reports.
pub fn log_requested() -> bool {
    std::env::var_os("KILN_LOG").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The cause chain as one line: each cause's text flattened onto one line, a cause whose
/// text the previous message already contains left out (so nothing is said twice), joined
/// by `: ` and cut at [`MAX_LINE`] characters.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = flatten(&cause.to_string());
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
        out.push_str(&cause.to_string());
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
