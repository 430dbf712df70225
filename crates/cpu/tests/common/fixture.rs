//! Kernel programs taken from the fusion filetests (`fixtures/filetests/fuse/*.kir`): the
//! expected program of a file's first case, and a rewrite of its whole-number literals so a
//! fixture written at a small size can run at another.

use std::path::Path;

/// The expected kernel program of the first case of `fixtures/filetests/fuse/<name>.kir`
/// (the lines after `; expect:` with their comment prefix removed, the `report:` line
/// dropped).
pub fn fuse_fixture_program(name: &str) -> Result<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/filetests/fuse")
        .join(format!("{name}.kir"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line == "; ----" {
            break;
        }
        if line == "; expect:" {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        let l = line
            .strip_prefix("; ")
            .or_else(|| line.strip_prefix(';'))
            .unwrap_or(line);
        if l.starts_with("report:") {
            break;
        }
        out.push(l);
    }
    if out.is_empty() {
        return Err(format!("{}: no `; expect:` program", path.display()));
    }
    Ok(out.join("\n"))
}

/// `text` with every literal equal to `from` replaced by `to`. A literal is a whole token:
/// not glued to a letter, digit, `_` or `.` on either side (so `v10`, `1e-5` and `0.0625`
/// are left alone unless `from` is the whole of them).
pub fn replace_literal(text: &str, from: &str, to: &str) -> String {
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut prev: Option<char> = None;
    while !rest.is_empty() {
        if rest.starts_with(from) && !glued(prev) && !glued(rest[from.len()..].chars().next()) {
            out.push_str(to);
            rest = &rest[from.len()..];
            prev = from.chars().last();
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        prev = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}
