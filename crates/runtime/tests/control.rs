//! Graphs with control flow compiled by the runtime and run on the CPU engine (the schedule
//! walked in the engine), the kernel-plan executor and the interpreter, against
//! `kiln_interp::eval`; the CPU engine reuses its run plan across runs of one binding.

use crate::common;

use common::{NEWTON, SCAN, f32s};

use kiln_ir::{Array, Graph, NodeId, parse};
use kiln_runtime::{Backend, CompileSpec, compile};
use std::collections::HashMap;

const BACKENDS: [Backend; 3] = [Backend::Cpu, Backend::Kernel, Backend::Interp];

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

/// Compiles outputs `outputs` of the graph in `text` for every backend and runs each on
/// every feed set, comparing with the interpreter.
fn check(text: &str, outputs: &[u32], feed_sets: &[Vec<(&str, Array)>]) {
    let g: Graph = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let outs: Vec<(String, NodeId)> = outputs
        .iter()
        .map(|&i| (format!("out{i}"), NodeId(i)))
        .collect();
    for backend in BACKENDS {
        let spec = CompileSpec {
            graph: g.clone(),
            outputs: outs.clone(),
            updates: vec![],
            params: HashMap::new(),
            state: None,
        };
        let mut exe = compile(spec, backend).unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        for feeds in feed_sets {
            let inputs: HashMap<String, Array> = feeds
                .iter()
                .map(|(n, a)| (n.to_string(), a.clone()))
                .collect();
            let ids: Vec<NodeId> = outs.iter().map(|o| o.1).collect();
            let want = kiln_interp::eval(&g, &ids, &inputs, &HashMap::new()).unwrap();
            let args: Vec<(&str, &Array)> = feeds.iter().map(|(n, a)| (*n, a)).collect();
            // Twice: the second run reuses the CPU engine's run plan.
            for _ in 0..2 {
                let got = exe
                    .run(&args)
                    .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
                for ((name, w), (gname, g)) in outs.iter().map(|o| &o.0).zip(&want).zip(&got) {
                    assert_eq!(name, gname);
                    assert!(close(g, w), "{backend:?} {name}: {g:?} vs {w:?}");
                }
            }
        }
    }
}

#[test]
fn scan_runs_on_every_host_backend_at_several_lengths() {
    for rev in ["false", "true"] {
        let sets: Vec<Vec<(&str, Array)>> = [1usize, 3, 6]
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
fn cond_runs_on_every_host_backend() {
    let sets = vec![
        vec![("x", Array::from_f32(&[3], vec![1.0, -2.0, 4.0]).unwrap())],
        vec![("x", Array::from_f32(&[3], vec![-1.0, 2.0, -4.0]).unwrap())],
    ];
    check(COND, &[5], &sets);
}

#[test]
fn while_runs_on_every_host_backend() {
    let sets: Vec<Vec<(&str, Array)>> = [2.0f32, 9.0, 30.0]
        .iter()
        .map(|&a| vec![("a", Array::from_f32(&[], vec![a]).unwrap())])
        .collect();
    check(NEWTON, &[3], &sets);
}
