//! The kernel plan's debug table: which graph op each run-time check of a body comes from,
//! so a failed check on a backend names the user's op and source line instead of a kernel.
//!
//! Lowering records a [`CheckSite`] in a body for every checked load it emits (a gather's
//! data-dependent index) and every integer division whose divisor is data. A backend only
//! knows that kernel `k6` raised its index flag; [`describe`] turns that into
//! `n24 (gather at src/main.rs:41:7): an index is out of range for axis 1 of size 3`.

use kiln_ir::Loc;
use std::fmt;

/// What a run-time check guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// A data-dependent index (a checked load): its flag is "read outside its buffer".
    Index,
    /// An integer division or remainder whose divisor may be zero.
    Divide,
}

impl CheckKind {
    /// The stable name used by the file format: `index`, `divide`.
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Index => "index",
            CheckKind::Divide => "divide",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<CheckKind> {
        match name {
            "index" => Some(CheckKind::Index),
            "divide" => Some(CheckKind::Divide),
            _ => None,
        }
    }
}

/// One graph op whose run-time check a body carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckSite {
    /// What the check guards.
    pub kind: CheckKind,
    /// The graph node, `n<node>` (a node of the graph or of the control-flow body the
    /// kernel was lowered from).
    pub node: u32,
    /// The node's op name (`gather`, `div`).
    pub op: String,
    /// Where the user built the node, when known.
    pub loc: Option<Loc>,
    /// What failing the check means, e.g. `an index is out of range for axis 1 of size 3`.
    pub message: String,
}

impl fmt::Display for CheckSite {
    /// `n24 (gather at src/main.rs:41:7): an index is out of range for axis 1 of size 3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loc {
            Some(loc) => write!(f, "n{} ({} at {loc}): {}", self.node, self.op, self.message),
            None => write!(f, "n{} ({}): {}", self.node, self.op, self.message),
        }
    }
}

/// The sentence for a failed check of `kind` in a kernel whose bodies carry `sites`:
/// the one site of that kind, or every candidate when the kernel fused several (`None`
/// when the debug table names none, e.g. a plan written by hand or by an older version).
pub fn describe<'a>(
    sites: impl IntoIterator<Item = &'a CheckSite>,
    kind: CheckKind,
) -> Option<String> {
    let mut seen: Vec<&CheckSite> = Vec::new();
    for s in sites {
        if s.kind == kind && !seen.contains(&s) {
            seen.push(s);
        }
    }
    match seen.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        many => Some(format!(
            "one of {}",
            many.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(node: u32, kind: CheckKind) -> CheckSite {
        CheckSite {
            kind,
            node,
            op: "gather".into(),
            loc: Some(Loc {
                file: "src/main.rs".into(),
                line: 41,
                column: 7,
            }),
            message: "an index is out of range for axis 1 of size 3".into(),
        }
    }

    #[test]
    fn one_site_names_node_op_and_line() {
        let s = [site(24, CheckKind::Index), site(3, CheckKind::Divide)];
        assert_eq!(
            describe(&s, CheckKind::Index).as_deref(),
            Some("n24 (gather at src/main.rs:41:7): an index is out of range for axis 1 of size 3")
        );
        assert!(describe(&s[..1], CheckKind::Divide).is_none());
    }

    #[test]
    fn several_sites_are_listed_once_each() {
        let s = [
            site(1, CheckKind::Index),
            site(2, CheckKind::Index),
            site(1, CheckKind::Index),
        ];
        let d = describe(&s, CheckKind::Index).unwrap();
        assert!(d.starts_with("one of n1 (gather"), "{d}");
        assert_eq!(d.matches("gather").count(), 2, "{d}");
        assert!(!d.contains('\n'));
    }

    #[test]
    fn kind_names_round_trip() {
        for k in [CheckKind::Index, CheckKind::Divide] {
            assert_eq!(CheckKind::from_name(k.name()), Some(k));
        }
        assert_eq!(CheckKind::from_name("bogus"), None);
    }
}
