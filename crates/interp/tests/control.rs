//! The reference semantics of `cond`, `scan` and `while`, on graphs written in the text form.

use kiln_interp::eval;
use kiln_ir::{Array, NodeId, parse};
use std::collections::HashMap;

fn run(text: &str, outputs: &[u32], feeds: &[(&str, Array)]) -> Vec<Array> {
    let g = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let inputs: HashMap<String, Array> = feeds
        .iter()
        .map(|(n, a)| (n.to_string(), a.clone()))
        .collect();
    let outs: Vec<NodeId> = outputs.iter().map(|&i| NodeId(i)).collect();
    eval(&g, &outs, &inputs, &HashMap::new()).unwrap()
}

const SCAN: &str = r#"
n0 = input "xs" : f32[T, 2]
n1 = input "c0" : f32[2]
n2 = input "k" : f32[]
n3 = scan n1, n0, n2 body=r0 length=[T] carries=1 xs=1 reverse=REV : bool[]
n4 = get n3 index=0 : f32[2]
n5 = get n3 index=1 : f32[T, 2]
r0 (n0, n1, n2) -> (n3, n4) {
  n0 = input "c" : f32[2]
  n1 = input "x" : f32[2]
  n2 = input "k" : f32[]
  n3 = add n0, n1 : f32[2]
  n4 = mul n3, n2 : f32[2]
}
"#;

#[test]
fn scan_carries_and_stacks_like_lax_scan() {
    let xs = Array::from_f32(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let c0 = Array::from_f32(&[2], vec![10.0, 20.0]).unwrap();
    let k = Array::from_f32(&[], vec![2.0]).unwrap();
    let feeds = [("xs", xs), ("c0", c0), ("k", k)];
    let fwd = run(&SCAN.replace("REV", "false"), &[4, 5], &feeds);
    assert_eq!(fwd[0].as_f32().unwrap(), &[19.0, 32.0]);
    // Carries 11,22 → 14,26 → 19,32; ys are 2 × carries.
    assert_eq!(
        fwd[1].as_f32().unwrap(),
        &[22.0, 44.0, 28.0, 52.0, 38.0, 64.0]
    );
    let rev = run(&SCAN.replace("REV", "true"), &[4, 5], &feeds);
    assert_eq!(rev[0].as_f32().unwrap(), &[19.0, 32.0]);
    // Steps run t = 2, 1, 0: carries 15,26 → 18,30 → 19,32; ys[t] belongs to step t.
    assert_eq!(
        rev[1].as_f32().unwrap(),
        &[38.0, 64.0, 36.0, 60.0, 30.0, 52.0]
    );
}

#[test]
fn scan_over_zero_steps_returns_the_initial_carry_and_empty_ys() {
    let feeds = [
        ("xs", Array::from_f32(&[0, 2], vec![]).unwrap()),
        ("c0", Array::from_f32(&[2], vec![1.0, 2.0]).unwrap()),
        ("k", Array::from_f32(&[], vec![2.0]).unwrap()),
    ];
    let out = run(&SCAN.replace("REV", "false"), &[4, 5], &feeds);
    assert_eq!(out[0].as_f32().unwrap(), &[1.0, 2.0]);
    assert_eq!(out[1].shape(), &[0, 2]);
}

const COND: &str = r#"
n0 = input "x" : f32[3]
n1 = reduce_sum n0 axes=[0] keepdim=false : f32[]
n2 = const f32[] [0.0] : f32[]
n3 = gt n1, n2 : bool[]
n4 = cond n3, n0 then=r0 else=r1 : bool[]
n5 = get n4 index=0 : f32[3]
r0 (n0) -> (n2) {
  n0 = input "a" : f32[3]
  n1 = const f32[] [2.0] : f32[]
  n2 = mul n0, n1 : f32[3]
}
r1 (n0) -> (n1) {
  n0 = input "a" : f32[3]
  n1 = neg n0 : f32[3]
}
"#;

#[test]
fn cond_runs_the_branch_the_predicate_picks() {
    let pos = Array::from_f32(&[3], vec![1.0, -2.0, 4.0]).unwrap();
    let neg = Array::from_f32(&[3], vec![1.0, -2.0, -4.0]).unwrap();
    assert_eq!(
        run(COND, &[5], &[("x", pos)])[0].as_f32().unwrap(),
        &[2.0, -4.0, 8.0]
    );
    assert_eq!(
        run(COND, &[5], &[("x", neg)])[0].as_f32().unwrap(),
        &[-1.0, 2.0, 4.0]
    );
}

/// Collatz steps until 1, counting them: a data-dependent trip count.
const COLLATZ: &str = r#"
n0 = input "n" : i32[]
n1 = const i32[] [0] : i32[]
n2 = while n0, n1 cond=r0 body=r1 carries=2 : bool[]
n3 = get n2 index=1 : i32[]
r0 (n0, n1) -> (n3) {
  n0 = input "n" : i32[]
  n1 = input "steps" : i32[]
  n2 = const i32[] [1] : i32[]
  n3 = ne n0, n2 : bool[]
}
r1 (n0, n1) -> (n11, n12) {
  n0 = input "n" : i32[]
  n1 = input "steps" : i32[]
  n2 = const i32[] [2] : i32[]
  n3 = rem n0, n2 : i32[]
  n4 = const i32[] [0] : i32[]
  n5 = eq n3, n4 : bool[]
  n6 = div n0, n2 : i32[]
  n7 = const i32[] [3] : i32[]
  n8 = mul n0, n7 : i32[]
  n9 = const i32[] [1] : i32[]
  n10 = add n8, n9 : i32[]
  n11 = select n5, n6, n10 : i32[]
  n12 = add n1, n9 : i32[]
}
"#;

#[test]
fn while_loop_runs_a_data_dependent_trip_count() {
    for (n, steps) in [(1, 0), (6, 8), (27, 111), (97, 118)] {
        let out = run(
            COLLATZ,
            &[3],
            &[("n", Array::from_i32(&[], vec![n]).unwrap())],
        );
        assert_eq!(out[0].as_i32().unwrap(), &[steps], "collatz({n})");
    }
}

#[test]
fn bad_bodies_are_verifier_errors_naming_both_types() {
    let changed = COND.replace(
        "n1 = neg n0 : f32[3]",
        "n1 = reduce_sum n0 axes=[0] keepdim=false : f32[]",
    );
    let e = parse(&changed).unwrap_err().to_string();
    assert!(e.contains("then (f32[3]), else (f32[])"), "{e}");
    let carry = SCAN
        .replace("REV", "false")
        .replace(
            "n4 = mul n3, n2 : f32[2]",
            "n4 = mul n3, n2 : f32[2]\n  n5 = reduce_sum n3 axes=[0] keepdim=false : f32[]",
        )
        .replace("-> (n3, n4)", "-> (n5, n4)");
    let e = parse(&carry).unwrap_err().to_string();
    assert!(
        e.contains("a carry must keep its type") && e.contains("f32[2]") && e.contains("f32[]"),
        "{e}"
    );
}
