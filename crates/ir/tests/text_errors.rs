//! Parser error tests: each asserts the exact line, column and message.

use kiln_ir::*;

fn err(text: &str) -> (usize, usize, String) {
    match parse(text) {
        Ok(g) => panic!("expected an error, parsed:\n{g}"),
        Err(e) => (e.line, e.column, e.message),
    }
}

fn check(text: &str, line: usize, column: usize, message: &str) {
    assert_eq!(
        err(text),
        (line, column, message.to_string()),
        "for:\n{text}"
    );
}

const X: &str = "n0 = input \"x\" : f32[3]\n";

#[test]
fn display_names_line_and_column() {
    let e = parse("n0 = frob : f32[]").unwrap_err();
    assert_eq!(e.to_string(), "line 1:6: unknown op `frob`");
}

#[test]
fn syntax_errors() {
    check("n0 = frob : f32[]", 1, 6, "unknown op `frob`");
    check(
        "x0 = input \"x\" : f32[]",
        1,
        1,
        "expected a node id such as `n3`, found `x0`",
    );
    check(
        "n0 input \"x\" : f32[]",
        1,
        4,
        "expected `=` after n0, found `i`",
    );
    check(
        "n0 = input \"x\"",
        1,
        15,
        "expected `:` and the node's type, found end of line",
    );
    check(
        "n0 = input \"x\" ; no type",
        1,
        16,
        "expected `:` and the node's type, found end of line",
    );
    check(
        "n0 = input x : f32[]",
        1,
        12,
        "expected a quoted string, found `x`",
    );
    check("n0 = input \"x : f32[]", 1, 12, "unterminated string");
    check(
        "n0 = input \"a\\qb\" : f32[]",
        1,
        14,
        "unknown escape `\\q`",
    );
    check(
        "n0 = input \"x\" : f16[3]",
        1,
        18,
        "unknown dtype `f16` (expected one of f32, f64, i32, i64, u32, bool)",
    );
    check(
        "n0 = input \"x\" : f32 [3]",
        1,
        21,
        "expected `[` right after the dtype, found ` `",
    );
    check(
        "n0 = input \"x\" : f32[N*, 3]",
        1,
        22,
        "invalid dimension `N*`",
    );
    check(
        "n0 = input \"x\" : f32[N^100000000000]",
        1,
        22,
        "invalid dimension `N^100000000000`",
    );
    check(
        "n0 = input \"x\" : f32[3, N^4000000000]",
        1,
        25,
        "dimension `N^4000000000` is out of range",
    );
    check(
        "n0 = input \"x\" : f32[99999999999*99999999999]",
        1,
        22,
        "dimension `99999999999*99999999999` is out of range",
    );
    check(
        "n0 = input \"x\" : f32[9223372036854775807+N+1]",
        1,
        22,
        "dimension `9223372036854775807+N+1` is out of range",
    );
    check(
        "n0 = input \"x\" : f32[2^64]",
        1,
        22,
        "dimension `2^64` is out of range",
    );
    check(
        "n0 = input \"x\" : f32[3,]",
        1,
        24,
        "expected a dimension, found `]`",
    );
    check(
        "n0 = input \"x\" : f32[3",
        1,
        23,
        "expected `,` or `]` in a shape, found end of line",
    );
    check(
        "n0 = input \"x\" : f32[3] extra",
        1,
        25,
        "unexpected `e` after the node",
    );
    check(
        "n4294967296 = input \"x\" : f32[3]",
        1,
        1,
        "expected a node id such as `n3`, found `n4294967296`",
    );
    check(
        "n5000000 = input \"x\" : f32[3]",
        1,
        1,
        "node id `n5000000` is larger than n1048575",
    );
}

#[test]
fn attribute_errors() {
    let t = |line: &str| format!("{X}{line}");
    check(
        &t("n1 = reduce_sum n0 axes=[0] : f32[]"),
        2,
        29,
        "expected `keepdim=`, found `:`",
    );
    check(
        &t("n1 = reduce_sum n0 keepdim=true axes=[0] : f32[]"),
        2,
        20,
        "expected `axes=`, found `k`",
    );
    check(
        &t("n1 = reduce_sum n0 axes=[0 1] keepdim=true : f32[]"),
        2,
        28,
        "expected `,` or `]` in `axes`, found `1`",
    );
    check(
        &t("n1 = reduce_sum n0 axes=[-1] keepdim=true : f32[]"),
        2,
        26,
        "expected a non-negative integer, found `-`",
    );
    check(
        &t("n1 = argmax n0 axis=0 keepdim=yes : i64[]"),
        2,
        31,
        "expected `true` or `false`, found `yes`",
    );
    check(
        &t("n1 = permute n0 [99999999999999999999] : f32[3]"),
        2,
        18,
        "a non-negative integer `99999999999999999999` is out of range",
    );
    check(
        &t("n1 = slice n0 [:2] : f32[2]"),
        2,
        16,
        "a slice entry is `start:stop`, `start:stop:step` or `:` for the whole axis",
    );
    check(
        &t("n1 = slice n0 [1] : f32[2]"),
        2,
        17,
        "expected `:` between slice start and stop, found `]`",
    );
    check(
        &t("n1 = pad n0 [(1, 2)] value=abc : f32[6]"),
        2,
        28,
        "invalid f64 literal `abc`",
    );
    check(
        &t("n1 = pad n0 [(1 2)] value=0.0 : f32[6]"),
        2,
        17,
        "expected `,` in a `(before, after)` pair, found `2`",
    );
    check(
        &t("n1 = pad n0 [(1, 2)] value=nan:0x7ff0000000000000 : f32[6]"),
        2,
        28,
        "invalid f64 literal `nan:0x7ff0000000000000`",
    );
    check(
        &t("n1 = conv2d n0, n0 stride=[1] padding=[0, 0] dilation=[1, 1] groups=1 : f32[3]"),
        2,
        27,
        "`stride` needs 2 entries (h, w), got 1",
    );
    check(
        &t("n1 = neg n0, : f32[3]"),
        2,
        14,
        "expected an operand, found `:`",
    );
    check(
        &t("n1 = add n0 n0 : f32[3]"),
        2,
        13,
        "expected `:` and the node's type, found `n`",
    );
    check(
        &t("n1 = cast n0 dtype=f8 : f32[3]"),
        2,
        20,
        "unknown dtype `f8` (expected one of f32, f64, i32, i64, u32, bool)",
    );
}

#[test]
fn constant_errors() {
    check(
        "n0 = const f32[3] [1.0, 2.0] : f32[3]",
        1,
        19,
        "constant f32[3]: array of shape [3] needs 3 elements, got 2",
    );
    check(
        "n0 = const f32[N] [1.0] : f32[N]",
        1,
        12,
        "constant shape [N] must be concrete",
    );
    check(
        "n0 = const f32[2] [1.0, x] : f32[2]",
        1,
        25,
        "invalid f32 literal `x`",
    );
    check(
        "n0 = const f32[1] [NaN] : f32[1]",
        1,
        20,
        "invalid f32 literal `NaN`",
    );
    check(
        "n0 = const f32[1] [infinity] : f32[1]",
        1,
        20,
        "invalid f32 literal `infinity`",
    );
    check(
        "n0 = const f32[1] [nan:0x7f800000] : f32[1]",
        1,
        20,
        "invalid f32 literal `nan:0x7f800000`",
    );
    check(
        "n0 = const i32[1] [2147483648] : i32[1]",
        1,
        20,
        "invalid i32 literal `2147483648`",
    );
    check(
        "n0 = const u32[1] [-1] : u32[1]",
        1,
        20,
        "invalid u32 literal `-1`",
    );
    check(
        "n0 = const i64[1] [1.5] : i64[1]",
        1,
        20,
        "invalid i64 literal `1.5`",
    );
    check(
        "n0 = const bool[1] [1] : bool[1]",
        1,
        21,
        "invalid bool literal `1` (expected `true` or `false`)",
    );
}

#[test]
fn location_errors() {
    check(
        "n0 = input \"x\" : f32[3] @ main.rs",
        1,
        27,
        "expected a location `FILE:LINE:COLUMN` after `@`",
    );
    check(
        "n0 = input \"x\" : f32[3] @ main.rs:x:1",
        1,
        35,
        "expected `LINE:COLUMN` numbers after `main.rs:`",
    );
    check(
        "n0 = input \"x\" : f32[3] @ \"main.rs\" 1:2",
        1,
        36,
        "expected `:LINE:COLUMN` after the file name",
    );
}

#[test]
fn reference_errors() {
    check(
        &format!("{X}n1 = neg n5 : f32[3]"),
        2,
        10,
        "operand n5 of n1 is not defined",
    );
    check(
        &format!("{X}; comment\nn0 = neg n0 : f32[3]"),
        3,
        1,
        "n0 is already defined on line 1",
    );
}

#[test]
fn verifier_errors_are_reported_at_the_node() {
    // A stated type that disagrees with inference: reported at the type.
    check(
        &format!("{X}n1 = neg n0 : f32[4]"),
        2,
        15,
        "n1 (neg): stated type f32[4] differs from the inferred f32[3]",
    );
    // Inference failure: reported at the op.
    check(
        &format!("{X}n1 = input \"y\" : f32[4]\n\nn2 = add n0, n1 : f32[4] @ m.rs:9:1"),
        4,
        6,
        "n2 (add) at m.rs:9:1: add: shapes [3] and [4] are not broadcastable (dimension 3 vs 4)",
    );
    check(
        &format!("{X}n1 = input \"x\" : f32[3]"),
        2,
        6,
        "n1 (input): input name \"x\" is already used by n0",
    );
    check(
        "n0 = neg n1 : f32[3]\nn1 = neg n0 : f32[3]",
        1,
        6,
        "n0 (neg): dependency cycle through n0, n1",
    );
    check(
        &format!("{X}n1 = reshape n0 : f32[2]"),
        2,
        6,
        "n1 (reshape): reshape: cannot reshape [3] (3 elements) to [2] (2 elements)",
    );
    // The earliest line wins when several nodes are wrong.
    check(
        &format!("{X}n2 = exp n0 : f64[3]\nn1 = exp n0 : f32[2]"),
        2,
        15,
        "n2 (exp): stated type f64[3] differs from the inferred f32[3] (and 1 more verifier error)",
    );
}
