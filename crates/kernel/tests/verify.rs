//! The verifier accepts valid programs and rejects invalid ones with specific messages.

use kiln_kernel::{parse, verify};

/// The verifier's messages for a program text (empty when it verifies).
fn errors(text: &str) -> Vec<String> {
    let p = parse(text).unwrap_or_else(|e| panic!("parse failed: {e}\n{text}"));
    match verify(p) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn assert_ok(text: &str) {
    let e = errors(text);
    assert!(
        e.is_empty(),
        "expected the program to verify, got:\n{}",
        e.join("\n")
    );
}

const ELEMENTWISE: &str = "symbol N >= 1
b0 = input \"x\" f32[N*3]
b1 = output \"y\" f32[N*3]
k0 = loop [N, 3] {
  v0 = load b0[INDEX]
  store b1[i0*3 + i1] = v0
}
";

fn elementwise(index: &str) -> Vec<String> {
    errors(&ELEMENTWISE.replace("INDEX", index))
}

#[test]
fn accepts_exact_bounds() {
    assert!(elementwise("i0*3 + i1").is_empty());
    assert!(elementwise("i0*3 + 2 - i1").is_empty());
    assert!(elementwise("(N - 1 - i0)*3 + i1").is_empty());
    assert!(elementwise("(i0*3 + i1) % 3 + i0*3").is_empty());
    assert!(elementwise("(i0*3 + i1) / 3*3 + i1").is_empty());
    assert!(elementwise("i0*3 + i1 + i0*0*N").is_empty());
}

#[test]
fn rejects_off_by_one_with_the_failing_inequality() {
    assert_eq!(
        elementwise("i0*3 + i1 + 1"),
        [
            "k0: v0 = load b0[i0*3 + i1 + 1]: index may exceed the last element of b0: cannot prove N*3 <= N*3-1 for all N >= 1"
        ]
    );
    assert_eq!(
        elementwise("i0*3 + i1 - 1"),
        ["k0: v0 = load b0[i0*3 + i1 - 1]: index may be negative: cannot prove 0 <= -1"]
    );
    assert_eq!(
        elementwise("i0*4 + i1"),
        [
            "k0: v0 = load b0[i0*4 + i1]: index may exceed the last element of b0: cannot prove N*4-2 <= N*3-1 for all N >= 1"
        ]
    );
    assert_eq!(
        elementwise("i0*i1"),
        [
            "k0: v0 = load b0[i0*i1]: cannot bound the index: `i0*i1` multiplies two variable terms (not affine)"
        ]
    );
    assert_eq!(
        elementwise("i0*{N-2} + i1"),
        [
            "k0: v0 = load b0[i0*{N-2} + i1]: cannot bound the index: cannot tell the sign of coefficient N-2"
        ]
    );
    assert_eq!(
        elementwise("i0 / {N-1}"),
        ["k0: v0 = load b0[i0 / {N-1}]: cannot bound the index: cannot prove divisor N-1 >= 1"]
    );
    assert_eq!(
        elementwise("i2"),
        ["k0: v0 = load b0[i2]: i2 is not a loop variable here (the domain has 2 axes)"]
    );
}

#[test]
fn symbol_preconditions_feed_the_proof() {
    // Reading elements 3..6 of a buffer of N*3 elements needs N >= 2.
    let text = "symbol N >= MIN
b0 = input \"x\" f32[N*3]
b1 = output \"y\" f32[3]
k0 = loop [3] {
  v0 = load b0[i0 + 3]
  store b1[i0] = v0
}
";
    assert!(errors(&text.replace("MIN", "2")).is_empty());
    assert_eq!(
        errors(&text.replace("MIN", "1")),
        [
            "k0: v0 = load b0[i0 + 3]: index may exceed the last element of b0: cannot prove 5 <= N*3-1 for all N >= 1"
        ]
    );
    // An upper bound makes a fixed-size buffer big enough.
    let bounded = "symbol T >= 1, <= 64
b0 = input \"x\" f32[256]
b1 = output \"y\" f32[T*4]
k0 = loop [T, 4] {
  v0 = load b0[i0*4 + i1]
  store b1[i0*4 + i1] = v0
}
";
    assert!(errors(bounded).is_empty());
    assert_eq!(
        errors(&bounded.replace("<= 64", "<= 65")),
        [
            "k0: v0 = load b0[i0*4 + i1]: index may exceed the last element of b0: cannot prove T*4-1 <= 255 for all T in 1..=65"
        ]
    );
    assert_eq!(
        errors(&bounded.replace(", <= 64", "")),
        [
            "k0: v0 = load b0[i0*4 + i1]: index may exceed the last element of b0: cannot prove T*4-1 <= 255 for all T >= 1"
        ]
    );
}

#[test]
fn extent_minus_one_is_safe_when_the_loop_is_empty() {
    // N - 1 is 0 for N = 1: the loop has no points then, and the proof covers N >= 2.
    let text = "symbol N >= 1
b0 = input \"x\" f32[N]
b1 = output \"d\" f32[N]
k0 = loop [N-1] {
  v0 = load b0[i0 + 1]
  v1 = load b0[i0]
  v2 = sub(v0, v1)
  store b1[i0] = v2
}
";
    assert_ok(text);
}

#[test]
fn masked_loads_use_their_guards() {
    let pad = "symbol N >= 1
b0 = input \"x\" f32[N*3]
b1 = output \"y\" f32[N*5]
k0 = loop [N, 5] {
  v0 = load b0[i0*3 + (i1 - 1)] if GUARD else f32(0.0)
  store b1[i0*5 + i1] = v0
}
";
    assert_ok(&pad.replace("GUARD", "0 <= i1 - 1 < 3"));
    assert_ok(&pad.replace("GUARD", "1 <= i1 - 1 < 3 && 0 <= i0 < N"));
    assert_eq!(
        errors(&pad.replace("GUARD", "0 <= i1 - 1 < 4")),
        [
            "k0: v0 = load b0[i0*3 + (i1 - 1)] if 0 <= i1 - 1 < 4 else f32(0.0): index may exceed the last element of b0: cannot prove N*3 <= N*3-1 for all N >= 1"
        ]
    );
    // A guard on a variable narrows it wherever it appears in the index ...
    assert_ok(&pad.replace("GUARD", "1 <= i1 < 4"));
    // ... but a guard on an expression that does not bound the offending term does not help.
    assert_eq!(
        errors(&pad.replace("GUARD", "0 <= i0 < N")),
        [
            "k0: v0 = load b0[i0*3 + (i1 - 1)] if 0 <= i0 < N else f32(0.0): index may be negative: cannot prove 0 <= -1",
            "k0: v0 = load b0[i0*3 + (i1 - 1)] if 0 <= i0 < N else f32(0.0): index may exceed the last element of b0: cannot prove N*3 <= N*3-1 for all N >= 1",
        ]
    );
    assert_eq!(
        errors(
            &pad.replace("f32(0.0)", "i32(0)")
                .replace("GUARD", "0 <= i1 - 1 < 3")
        ),
        [
            "k0: v0 = load b0[i0*3 + (i1 - 1)] if 0 <= i1 - 1 < 3 else i32(0): fill value is i32, buffer b0 is f32"
        ]
    );
}

const GATHER: &str = "symbol N >= 1
b0 = input \"ids\" IDX[N]
b1 = state \"table\" f32[40]
b2 = output \"y\" f32[N*4]
k0 = loop [N, 4] {
  v0 = load b0[i0]
  v1 = LOAD
  store b2[i0*4 + i1] = v1
}
";

#[test]
fn gathers_must_be_checked_or_guarded() {
    let g = |idx: &str, load: &str| errors(&GATHER.replace("IDX", idx).replace("LOAD", load));
    assert!(g("i32", "load checked b1[v0*4 + i1]").is_empty());
    assert!(g("u32", "load b1[v0*4 + i1] if 0 <= v0 < 10 else f32(0.0)").is_empty());
    assert!(g("i64", "load b1[v0 % 10*4 + i1]").is_empty());
    assert_eq!(
        g("i32", "load b1[v0*4 + i1]"),
        [
            "k0: v1 = load b1[v0*4 + i1]: cannot bound the index: the index reads v0, so its range is unknown; use a checked load or guard it"
        ]
    );
    assert_eq!(
        g("i32", "load b1[v0*4 + i1] if 0 <= v0 < 11 else f32(0.0)"),
        [
            "k0: v1 = load b1[v0*4 + i1] if 0 <= v0 < 11 else f32(0.0): index may exceed the last element of b1: cannot prove 43 <= 39"
        ]
    );
    assert_eq!(
        g("f32", "load checked b1[v0]"),
        ["k0: v1 = load checked b1[v0]: index reads v0 of dtype f32; indices must be integers"]
    );
    assert_eq!(
        g("i32", "load checked b1[v2]"),
        ["k0: v1 = load checked b1[v2]: index reads v2, which is not defined before this point"]
    );
}

#[test]
fn rejects_bad_types_roles_and_references() {
    let text = "symbol N >= 1
b0 = input \"x\" f32[N]
b1 = const bool[1] [true]
b2 = output \"y\" f32[N]
b3 = output \"y\" f32[N]
k0 = loop [N] {
  v0 = load b0[i0]
  v1 = load b1[0]
  v2 = pow(v0, v0)
  v3 = and(v0, v0)
  v4 = not(v1)
  v5 = cast<i32>(v0)
  v6 = pow(v5, v5)
  v7 = lt(v1, v1)
  v8 = reduce_sum(v0) init f32(0.0)
  v9 = load b9[i0]
  store b1[0] = v4
  store b2[i0] = v5
  store b3[i0] = v2
  store b2[i0] = v10
}
";
    assert_eq!(
        errors(text),
        [
            "b3: output \"y\" is also b2",
            "k0: v3 = and(v0, v0): and needs bool or integer operands, got f32",
            "k0: v6 = pow(v5, v5): pow needs float operands, got i32",
            "k0: v7 = lt(v1, v1): lt needs numeric operands, got bool",
            "k0: v8 = reduce_sum(v0) init f32(0.0): reductions are only allowed in loop kernels with reduction axes",
            "k0: v9 = load b9[i0]: b9 is not a buffer of this program",
            "k0: store b1[0] = v4: cannot store to const buffer b1",
            "k0: store b2[i0] = v5: stores i32 into f32 buffer b2",
            "k0: store b2[i0] = v10: v10 is not defined",
        ]
    );
}

#[test]
fn rejects_bad_symbols_and_buffers() {
    let text = "symbol N >= 1
symbol N >= 2
symbol i0 >= 1
symbol T >= 5, <= 4
b0 = input \"x\" f32[N-2]
b1 = const f32[3] [1.0, 2.0]
b2 = const i32[2] [1, 2]
b3 = output \"y\" f32[Q]
k0 = loop [1] {
  v0 = load b2[0]
  v1 = cast<f32>(v0)
  store b3[0] = v1
}
";
    let p = parse(&text.replace("b1 = const f32[3] [1.0, 2.0]", "b1 = scratch f32[3]")).unwrap();
    let mut p = p;
    p.buffers[1].kind =
        kiln_kernel::BufferKind::Constant(kiln_ir::Array::from_f64(&[2], vec![1.0, 2.0]).unwrap());
    let got: Vec<String> = verify(p)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            "symbol N: declared twice",
            "symbol i0: the name collides with the id syntax (b3, k0, v1, i2, r0)",
            "symbol T: empty range 5..=4",
            "b0: cannot prove size N-2 >= 0 for all N >= 1",
            "b1: constant data is f64, buffer is f32",
            "b1: constant has 2 elements, buffer size is 3",
            "b3: symbol `Q` is not declared",
        ]
    );
}

#[test]
fn reductions_and_phases() {
    let ok = "symbol N >= 1
b0 = input \"x\" f32[N*8]
b1 = output \"y\" f32[N]
k0 = loop [N] reduce [2, 4] {
  v0 = load b0[i0*8 + r0*4 + r1]
  v1 = reduce_sum(v0) init f32(0.0)
  v2 = f32(8.0)
  v3 = div(v1, v2)
  store b1[i0] = v3
}
";
    assert_ok(ok);
    assert_eq!(
        errors(&ok.replace("r0*4 + r1", "r1*4 + r0")),
        [
            "k0: v0 = load b0[i0*8 + r1*4 + r0]: index may exceed the last element of b0: cannot prove N*8+5 <= N*8-1 for all N >= 1"
        ]
    );
    assert_eq!(
        errors(&ok.replace(
            "reduce_sum(v0) init f32(0.0)",
            "reduce_sum(v0) init f64(0.0)"
        )),
        ["k0: v1 = reduce_sum(v0) init f64(0.0): init value is f64, operand is f32"]
    );
    let no_reduce_node = "b0 = input \"x\" f32[4]
b1 = output \"y\" f32[1]
k0 = loop [1] reduce [4] {
  v0 = load b0[r0]
  store b1[0] = v0
}
";
    assert_eq!(
        errors(no_reduce_node),
        [
            "k0: has reduction axes but no reduce_* value",
            "k0: store b1[0] = v0: stores v0, which varies over the reduction (stores run after it)",
        ]
    );
}

#[test]
fn contractions() {
    let mm = "symbol N >= 1
b0 = input \"x\" f32[N*6]
b1 = state \"w\" f32[12]
b2 = output \"y\" f32[N*2]
k0 = matmul m N k 6 n 2 {
  a {
    v0 = load b0[i0*6 + i1]
    yield v0
  }
  b {
    v0 = load b1[B_INDEX]
    yield v0
  }
  epilogue {
    v0 = acc
    store b2[i0*2 + i1] = v0
  }
}
";
    assert_ok(&mm.replace("B_INDEX", "i1*6 + i0"));
    assert_ok(&mm.replace("B_INDEX", "i0*2 + i1"));
    assert_eq!(
        errors(&mm.replace("B_INDEX", "i1*7 + i0")),
        [
            "k0: b: v0 = load b1[i1*7 + i0]: index may exceed the last element of b1: cannot prove 12 <= 11"
        ]
    );
    assert_eq!(
        errors(
            &mm.replace("B_INDEX", "i0*2 + i1")
                .replace("    v0 = acc\n", "    v0 = load b0[i0]\n")
        ),
        [] as [&str; 0]
    );
    assert_eq!(
        errors(
            &mm.replace("B_INDEX", "i0*2 + i1")
                .replace("    yield v0\n  }\n  epilogue", "  }\n  epilogue")
        ),
        ["k0: b: operand body has no yield"]
    );
    // An operand may not read what the epilogue writes.
    let in_place = mm
        .replace("B_INDEX", "i0*2 + i1")
        .replace("b2 = output \"y\" f32[N*2]", "b2 = state \"y\" f32[N*6]")
        .replace("load b0[i0*6 + i1]", "load b2[i0*6 + i1]");
    assert_eq!(
        errors(&in_place),
        ["k0: a: v0 = load b2[i0*6 + i1]: reads b2, which the epilogue of this kernel writes"]
    );
    let conv = "symbol N >= 1
b0 = input \"x\" f32[N*32]
b1 = state \"w\" f32[WSIZE]
b2 = output \"y\" f32[N*OUT]
k0 = conv2d n N c 2 h 4 w 4 o 4 kernel [3, 3] stride [STRIDE, 1] padding [1, 1] dilation [1, 1] groups 2 {
  input {
    v0 = load b0[i0*32 + i1*16 + i2*4 + i3]
    yield v0
  }
  weight {
    v0 = load b1[i0*9 + i1*9 + i2*3 + i3]
    yield v0
  }
  epilogue {
    v0 = acc
    store b2[i0*OUT + i1*OHW + i2*4 + i3] = v0
  }
}
";
    let c = |w: &str, s: &str, out: &str, ohw: &str| {
        errors(
            &conv
                .replace("WSIZE", w)
                .replace("STRIDE", s)
                .replace("OUT", out)
                .replace("OHW", ohw),
        )
    };
    assert!(c("36", "1", "64", "16").is_empty());
    assert!(c("36", "2", "32", "8").is_empty());
    assert_eq!(
        c("35", "1", "64", "16"),
        [
            "k0: weight: v0 = load b1[i0*9 + i1*9 + i2*3 + i3]: index may exceed the last element of b1: cannot prove 35 <= 34"
        ]
    );
    assert_eq!(
        c("36", "1", "48", "12"),
        [
            "k0: epilogue: store b2[i0*48 + i1*12 + i2*4 + i3] = v0: index may exceed the last element of b2: cannot prove N*48+3 <= N*48-1 for all N >= 1"
        ]
    );
}

#[test]
fn ordering_rules() {
    let text = "symbol N >= 1
b0 = input \"x\" f32[N]
b1 = scratch f32[N]
b2 = output \"y\" f32[N]
k0 = loop [N] {
  v0 = load b0[i0]
  store b1[i0] = v0
}
k1 = loop [N] {
  v0 = load b1[i0]
  v1 = load b2[i0]
  v2 = add(v0, v1)
  store b2[i0] = v2
}
";
    assert_eq!(
        errors(text),
        ["k1: reads output b2 before any kernel writes it"]
    );
    let swapped = text.replace("store b1[i0] = v0", "store b2[i0] = v0");
    assert_eq!(
        errors(&swapped),
        ["k1: reads scratch b1 before any kernel writes it"]
    );
}

#[test]
fn the_crate_docs_example_verifies() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let start = src.find("//! # Text form").unwrap();
    let body: Vec<&str> = src[start..]
        .lines()
        .map(|l| {
            l.strip_prefix("//!")
                .unwrap_or(l)
                .strip_prefix(' ')
                .unwrap_or("")
        })
        .skip_while(|l| *l != "```text")
        .skip(1)
        .take_while(|l| *l != "```")
        .collect();
    let text = body.join("\n");
    assert!(text.contains("k1 = loop [N] reduce [128]"), "{text}");
    assert_ok(&text);
}

/// An access inside a statically empty loop never runs, so it needs no proof (a tensor with
/// a zero-sized axis); the same access in a loop that runs is still rejected.
#[test]
fn accesses_in_empty_loops_need_no_proof() {
    let plan = |domain: &str, reduce: &str| {
        format!(
            "b0 = input \"x\" f32[0]
b1 = output \"y\" f32[3]
k0 = loop [{domain}] reduce [{reduce}] {{
  v0 = load b0[r0*0]
  v1 = reduce_sum(v0) init f32(0.0)
  v2 = load b0[0]
  v3 = add(v1, v2)
  store b1[i0] = v3
}}
"
        )
    };
    assert_ok(&plan("3, 0", "2"));
    let reduce_empty = errors(&plan("3", "0"));
    assert_eq!(reduce_empty.len(), 1, "{reduce_empty:?}");
    assert!(
        reduce_empty[0].contains("v2 = load b0[0]"),
        "{reduce_empty:?}"
    );
    assert_eq!(errors(&plan("3", "2")).len(), 2);
}
