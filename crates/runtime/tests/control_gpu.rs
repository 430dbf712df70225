//! Control flow on the `gpu` backend: a scan over a symbolic length (forward and reverse), the
//! TorchScript-style data-dependent branch (`if x.sum() > 0: x * 2 else: -x`), Newton's
//! iteration and the Collatz steps as while loops with data-dependent trip counts, and a
//! checked gather inside a loop body, each compiled once and compared with the interpreter
//! and the `cpu` backend (errors included). Skipped without an adapter unless
//! KILN_REQUIRE_GPU=1.

use crate::common;

use common::{NEWTON, SCAN, f32s};

use kiln_ir::{Array, Graph, NodeId, parse};
use kiln_runtime::{Backend, CompileSpec, Executable, RuntimeError, compile};
use std::collections::HashMap;

fn close(a: &Array, b: &Array) -> bool {
    if a.shape() != b.shape() || a.dtype() != b.dtype() {
        return false;
    }
    match (a.as_f32(), b.as_f32()) {
        (Ok(x), Ok(y)) => x
            .iter()
            .zip(y)
            .all(|(p, q)| (p - q).abs() <= 1e-5 * p.abs().max(q.abs()).max(1.0)),
        _ => a == b,
    }
}

fn exe(g: &Graph, outputs: &[u32], backend: Backend) -> Executable {
    let spec = CompileSpec {
        graph: g.clone(),
        outputs: outputs
            .iter()
            .map(|&i| (format!("out{i}"), NodeId(i)))
            .collect(),
        updates: vec![],
        params: HashMap::new(),
        state: None,
    };
    compile(spec, backend).unwrap_or_else(|e| panic!("{backend:?}: {e}"))
}

/// Compiles outputs `outputs` of the graph in `text` once for `gpu` and `cpu` and runs both
/// on every feed set (twice, reusing the GPU's pooled buffers), comparing with the
/// interpreter.
fn check(text: &str, outputs: &[u32], feed_sets: &[Vec<(&str, Array)>]) {
    let g: Graph = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<NodeId> = outputs.iter().map(|&i| NodeId(i)).collect();
    let mut gpu = exe(&g, outputs, Backend::Gpu);
    let mut cpu = exe(&g, outputs, Backend::Cpu);
    for feeds in feed_sets {
        let inputs: HashMap<String, Array> = feeds
            .iter()
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect();
        let want = kiln_interp::eval(&g, &ids, &inputs, &HashMap::new()).unwrap();
        let args: Vec<(&str, &Array)> = feeds.iter().map(|(n, a)| (*n, a)).collect();
        let on_cpu = cpu.run(&args).unwrap();
        for _ in 0..2 {
            let got = gpu.run(&args).unwrap_or_else(|e| panic!("gpu: {e}"));
            for ((w, (name, g)), (_, c)) in want.iter().zip(&got).zip(&on_cpu) {
                assert!(close(g, w), "gpu {name}: {g:?} vs interp {w:?}");
                assert!(close(g, c), "gpu {name}: {g:?} vs cpu {c:?}");
            }
        }
    }
}

fn gpu_available() -> bool {
    kiln_gpu::test_device().is_some()
}

/// One module serves every length: T = 1, 3, 6 and 40 steps, each recorded into one
/// command encoder with the induction symbol in every dispatch's params, and 1500 steps,
/// more dispatches than one submit takes (the recorder cuts it at 4,096).
#[test]
fn a_scan_over_a_symbolic_length_matches_interp_and_cpu() {
    if !gpu_available() {
        return;
    }
    for rev in ["false", "true"] {
        let sets: Vec<Vec<(&str, Array)>> = [1usize, 3, 6, 40, 1500]
            .iter()
            .map(|&t| {
                vec![
                    ("xs", f32s(&[t, 2], t as u32)),
                    ("c0", f32s(&[2], 1)),
                    ("k", Array::from_f32(&[], vec![0.75]).unwrap()),
                ]
            })
            .collect();
        check(&SCAN.replace("REV", rev), &[4, 5], &sets);
    }
}

/// TorchScript's canonical `jit.script` example: `if x.sum() > 0: return x * 2 else: return
/// -x`, the predicate read back to the host.
const COND: &str = r#"
n0 = input "x" : f32[N]
n1 = reduce_sum n0 axes=[0] keepdim=false : f32[]
n2 = const f32[] [0.0] : f32[]
n3 = gt n1, n2 : bool[]
n4 = cond n3, n0 then=r0 else=r1 : bool[]
n5 = get n4 index=0 : f32[N]
r0 (n0) -> (n2) {
  n0 = input "a" : f32[N]
  n1 = const f32[] [2.0] : f32[]
  n2 = mul n0, n1 : f32[N]
}
r1 (n0) -> (n1) {
  n0 = input "a" : f32[N]
  n1 = neg n0 : f32[N]
}
"#;

#[test]
fn the_data_dependent_branch_takes_both_ways() {
    if !gpu_available() {
        return;
    }
    let sets = vec![
        vec![("x", Array::from_f32(&[3], vec![1.0, -2.0, 4.0]).unwrap())],
        vec![(
            "x",
            Array::from_f32(&[4], vec![1.0, -2.0, -4.0, 0.5]).unwrap(),
        )],
    ];
    check(COND, &[5], &sets);
    let g: Graph = parse(COND).unwrap();
    let mut gpu = exe(&g, &[5], Backend::Gpu);
    let pos = Array::from_f32(&[3], vec![1.0, -2.0, 4.0]).unwrap();
    let neg = Array::from_f32(&[4], vec![1.0, -2.0, -4.0, 0.5]).unwrap();
    let out = gpu.run(&[("x", &pos)]).unwrap();
    assert_eq!(out[0].1.as_f32().unwrap(), &[2.0, -4.0, 8.0]);
    let out = gpu.run(&[("x", &neg)]).unwrap();
    assert_eq!(out[0].1.as_f32().unwrap(), &[-1.0, 2.0, 4.0, -0.5]);
}

#[test]
fn newton_iterations_until_convergence() {
    if !gpu_available() {
        return;
    }
    let sets: Vec<Vec<(&str, Array)>> = [2.0f32, 9.0, 30.0]
        .iter()
        .map(|&a| vec![("a", Array::from_f32(&[], vec![a]).unwrap())])
        .collect();
    check(NEWTON, &[3], &sets);
}

/// The number of Collatz steps from `n` to 1 (`jax.lax.while_loop` with two carries).
const COLLATZ: &str = r#"
n0 = input "n" : i32[]
n1 = const i32[] [0] : i32[]
n2 = while n0, n1 cond=r0 body=r1 carries=2 : bool[]
n3 = get n2 index=0 : i32[]
n4 = get n2 index=1 : i32[]
r0 (n0, n1) -> (n3) {
  n0 = input "x" : i32[]
  n1 = input "s" : i32[]
  n2 = const i32[] [1] : i32[]
  n3 = ne n0, n2 : bool[]
}
r1 (n0, n1) -> (n11, n12) {
  n0 = input "x" : i32[]
  n1 = input "s" : i32[]
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
fn collatz_steps_as_a_while_loop() {
    if !gpu_available() {
        return;
    }
    let g: Graph = parse(COLLATZ).unwrap();
    let mut gpu = exe(&g, &[3, 4], Backend::Gpu);
    for (n, steps) in [(1, 0), (6, 8), (27, 111)] {
        let out = gpu
            .run(&[("n", &Array::from_i32(&[], vec![n]).unwrap())])
            .unwrap();
        assert_eq!(out[0].1.as_i32().unwrap(), &[1], "collatz({n}) ends at 1");
        assert_eq!(out[1].1.as_i32().unwrap(), &[steps], "collatz({n})");
    }
    let sets: Vec<Vec<(&str, Array)>> = [7, 97]
        .iter()
        .map(|&n| vec![("n", Array::from_i32(&[], vec![n]).unwrap())])
        .collect();
    check(COLLATZ, &[3, 4], &sets);
}

/// A scan whose body gathers from a table with the step's indices (`torch.gather` on axis 0): in bounds it matches;
/// an index past the table is reported by both backends as an out-of-bounds load.
const GATHER_SCAN: &str = r#"
n0 = input "ids" : i32[T, 2, 3]
n1 = input "table" : f32[5, 3]
n2 = const f32[3] [0.0, 0.0, 0.0] : f32[3]
n3 = scan n2, n0, n1 body=r0 length=[T] carries=1 xs=1 reverse=false : bool[]
n4 = get n3 index=0 : f32[3]
n5 = get n3 index=1 : f32[T, 2, 3]
r0 (n0, n1, n2) -> (n5, n3) {
  n0 = input "c" : f32[3]
  n1 = input "i" : i32[2, 3]
  n2 = input "t" : f32[5, 3]
  n3 = gather n2, n1 axis=0 : f32[2, 3]
  n4 = reduce_sum n3 axes=[0] keepdim=false : f32[3]
  n5 = add n0, n4 : f32[3]
}
"#;

#[test]
fn gathers_in_a_loop_body_are_bounds_checked_like_cpu() {
    if !gpu_available() {
        return;
    }
    let table = f32s(&[5, 3], 2);
    let ids = |last: i32| {
        let mut v: Vec<i32> = (0..18).map(|i| i * 7 % 5).collect();
        v[13] = last;
        Array::from_i32(&[3, 2, 3], v).unwrap()
    };
    let ok = ids(4);
    check(
        GATHER_SCAN,
        &[4, 5],
        &[vec![("ids", ok), ("table", table.clone())]],
    );
    let bad = ids(5);
    let g: Graph = parse(GATHER_SCAN).unwrap();
    for backend in [Backend::Gpu, Backend::Cpu] {
        let e = exe(&g, &[4, 5], backend)
            .run(&[("ids", &bad), ("table", &table)])
            .unwrap_err();
        // The plan's debug table names the loop body's gather (docs/errors.md).
        let text = e.to_string();
        assert!(
            matches!(e, RuntimeError::Check { .. })
                && text.contains("(gather)")
                && text.contains("out of range for axis 0 of size 5"),
            "{backend:?}: {text}"
        );
    }
}
