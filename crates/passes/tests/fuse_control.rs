//! Control flow through fusion: graphs with `cond`, `scan` (forward, reverse, symbolic
//! length at several lengths), `while` and nested control flow are lowered to kernel plans
//! with schedules and run by the kernel executor and the CPU backend, against the graph
//! interpreter.

use crate::fuse_util;

use fuse_util::{close_data, execute, execute_cpu};
use kiln_ir::{Array, Graph, NodeId, parse};
use kiln_kernel::Step;
use kiln_passes::fuse::lower;
use std::collections::HashMap;

/// Lowers `outputs` of the graph in `text`, runs it on `feeds` under `bindings` through the
/// executor and the CPU backend, and compares every output with the interpreter's.
fn check(text: &str, outputs: &[u32], feeds: &[(&str, Array)], bindings: &[(&str, u64)]) {
    let g: Graph = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let outs: Vec<(String, NodeId)> = outputs
        .iter()
        .map(|&i| (format!("out{i}"), NodeId(i)))
        .collect();
    let program = lower(&g, &outs).unwrap_or_else(|e| panic!("{e}"));
    assert!(program.has_control_flow(), "{program}");
    let text_form = program.to_string();
    assert_eq!(
        kiln_kernel::parse(&text_form).as_ref(),
        Ok(program.as_program()),
        "{text_form}"
    );
    let inputs: HashMap<String, Array> = feeds
        .iter()
        .map(|(n, a)| (n.to_string(), a.clone()))
        .collect();
    let binds: HashMap<String, u64> = bindings.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let ids: Vec<NodeId> = outs.iter().map(|o| o.1).collect();
    let want = kiln_interp::eval(&g, &ids, &inputs, &HashMap::new()).unwrap();
    let (got, _) = execute(&program, &binds, &inputs, &HashMap::new())
        .unwrap_or_else(|e| panic!("{e}\n{program}"));
    let cpu = execute_cpu(&program, &binds, &inputs, &HashMap::new())
        .unwrap_or_else(|e| panic!("{e}\n{program}"));
    for ((name, _), w) in outs.iter().zip(&want) {
        close_data(&got[name], w.data()).unwrap_or_else(|e| panic!("exec {name}: {e}\n{program}"));
        close_data(&cpu[name], w.data()).unwrap_or_else(|e| panic!("cpu {name}: {e}\n{program}"));
    }
}

fn f32s(shape: &[usize], seed: u32) -> Array {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| ((i as u32 * 7 + seed * 13) % 17) as f32 * 0.25 - 2.0)
        .collect();
    Array::from_f32(shape, v).unwrap()
}

const SCAN: &str = r#"
n0 = input "xs" : f32[T, 2]
n1 = input "c0" : f32[2]
n2 = input "k" : f32[]
n3 = scan n1, n0, n2 body=r0 length=[T] carries=1 xs=1 reverse=REV : bool[]
n4 = get n3 index=0 : f32[2]
n5 = get n3 index=1 : f32[T, 2]
n6 = exp n5 : f32[T, 2]
r0 (n0, n1, n2) -> (n3, n4) {
  n0 = input "c" : f32[2]
  n1 = input "x" : f32[2]
  n2 = input "k" : f32[]
  n3 = add n0, n1 : f32[2]
  n4 = mul n3, n2 : f32[2]
}
"#;

#[test]
fn scan_forward_and_reverse_at_several_lengths() {
    for rev in ["false", "true"] {
        let text = SCAN.replace("REV", rev);
        for t in [0usize, 1, 2, 5] {
            let feeds = [
                ("xs", f32s(&[t, 2], 1)),
                ("c0", f32s(&[2], 2)),
                ("k", Array::from_f32(&[], vec![0.5]).unwrap()),
            ];
            check(&text, &[4, 5, 6], &feeds, &[("T", t as u64)]);
        }
    }
}

#[test]
fn scan_rows_are_read_and_written_at_the_induction_symbol() {
    let g = parse(&SCAN.replace("REV", "false")).unwrap();
    let p = lower(&g, &[("c".into(), NodeId(4)), ("ys".into(), NodeId(5))]).unwrap();
    let text = p.to_string();
    // The row copies address xs and ys at t0*2, the loop runs T times.
    assert!(text.contains("{t0*2} + i0"), "{text}");
    let Some(steps) = &p.schedule else {
        panic!("no schedule:\n{text}")
    };
    let loops: Vec<_> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Loop(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(loops.len(), 1, "{text}");
    assert_eq!(loops[0].trip.to_string(), "T");
}

/// A scan, then a matmul of its stacked ys by a weight read transposed.
const VIEW_AFTER_SCAN: &str = r#"
n0 = input "xs" : f32[T, 2, 3]
n1 = input "c0" : f32[2, 3]
n2 = input "w" : f32[4, 3]
n3 = scan n1, n0 body=r0 length=[T] carries=1 xs=1 reverse=false : bool[]
n4 = get n3 index=1 : f32[T, 2, 3]
n5 = permute n2 [1, 0] : f32[3, 4]
n6 = matmul n4, n5 : f32[T, 2, 4]
r0 (n0, n1) -> (n2, n2) {
  n0 = input "c" : f32[2, 3]
  n1 = input "x" : f32[2, 3]
  n2 = add n0, n1 : f32[2, 3]
}
"#;

#[test]
fn a_view_read_only_after_a_scan_folds_into_its_reader() {
    let g = parse(VIEW_AFTER_SCAN).unwrap();
    let p = lower(&g, &[("y".into(), NodeId(6))]).unwrap();
    let text = p.to_string();
    // The permute of `w` is ready before the scan but read only after it: the matmul reads
    // `w` through the transposed index instead of a copy written before the loop.
    assert!(!text.contains("= loop [3, 4]"), "{text}");
    assert_eq!(
        text.matches(" = loop ").count(),
        1,
        "only the scan body's add\n{text}"
    );
    for t in [0usize, 1, 4] {
        let feeds = [
            ("xs", f32s(&[t, 2, 3], 1)),
            ("c0", f32s(&[2, 3], 2)),
            ("w", f32s(&[4, 3], 3)),
        ];
        check(VIEW_AFTER_SCAN, &[6], &feeds, &[("T", t as u64)]);
    }
}

const COND: &str = r#"
n0 = input "x" : f32[3]
n1 = reduce_sum n0 axes=[0] keepdim=false : f32[]
n2 = const f32[] [0.0] : f32[]
n3 = gt n1, n2 : bool[]
n4 = cond n3, n0 then=r0 else=r1 : bool[]
n5 = get n4 index=0 : f32[3]
n6 = add n5, n0 : f32[3]
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
fn cond_takes_either_branch() {
    for x in [vec![1.0, -2.0, 4.0], vec![-1.0, 2.0, -4.0]] {
        let feeds = [("x", Array::from_f32(&[3], x).unwrap())];
        check(COND, &[5, 6], &feeds, &[]);
    }
}

const COLLATZ: &str = r#"
n0 = input "n" : i32[]
n1 = const i32[] [0] : i32[]
n2 = while n0, n1 cond=r0 body=r1 carries=2 : bool[]
n3 = get n2 index=1 : i32[]
n4 = get n2 index=0 : i32[]
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
fn while_runs_a_data_dependent_trip_count() {
    for n in [1, 6, 27, 97] {
        let feeds = [("n", Array::from_i32(&[], vec![n]).unwrap())];
        check(COLLATZ, &[3, 4], &feeds, &[]);
    }
}

/// An RNN over T steps whose body holds a matmul and a cond: `h = tanh(h @ w + x_t)`, then
/// negated when its sum is negative; ys are the hidden states, the weight is a const
/// operand.
const NESTED: &str = r#"
n0 = input "xs" : f32[T, 1, 3]
n1 = input "h0" : f32[1, 3]
n2 = input "w" : f32[3, 3]
n3 = scan n1, n0, n2 body=r0 length=[T] carries=1 xs=1 reverse=false : bool[]
n4 = get n3 index=0 : f32[1, 3]
n5 = get n3 index=1 : f32[T, 1, 3]
r0 (n0, n1, n2) -> (n10, n10) {
  n0 = input "h" : f32[1, 3]
  n1 = input "x" : f32[1, 3]
  n2 = input "w" : f32[3, 3]
  n3 = matmul n0, n2 : f32[1, 3]
  n4 = add n3, n1 : f32[1, 3]
  n5 = tanh n4 : f32[1, 3]
  n6 = reduce_sum n5 axes=[0, 1] keepdim=false : f32[]
  n7 = const f32[] [0.0] : f32[]
  n8 = lt n6, n7 : bool[]
  n9 = cond n8, n5 then=r0 else=r1 : bool[]
  n10 = get n9 index=0 : f32[1, 3]
  r0 (n0) -> (n1) {
    n0 = input "a" : f32[1, 3]
    n1 = neg n0 : f32[1, 3]
  }
  r1 (n0) -> (n0) {
    n0 = input "a" : f32[1, 3]
  }
}
"#;

#[test]
fn nested_control_flow_with_a_matmul_body() {
    for t in [1usize, 4] {
        let feeds = [
            ("xs", f32s(&[t, 1, 3], 3)),
            ("h0", f32s(&[1, 3], 4)),
            ("w", f32s(&[3, 3], 5)),
        ];
        check(NESTED, &[4, 5], &feeds, &[("T", t as u64)]);
    }
}
