//! Device-resident state on the `gpu` backend: a 100-step update loop uploads the state
//! once and reads nothing back until asked, matches the `cpu` backend step for step, and
//! stays consistent when the host writes the store or a `cpu` executable shares it.
//! Skipped without an adapter unless KILN_REQUIRE_GPU=1.

use kiln_ir::{Array, BinaryOp, DType, Graph, NodeId, Op, Shape};
use kiln_runtime::{Backend, CompileSpec, State, compile};
use std::collections::HashMap;

fn node(g: &mut Graph, op: Op, args: &[NodeId]) -> NodeId {
    g.add(op, args).unwrap_or_else(|e| panic!("{e}"))
}

/// `w <- w - 0.5 * (w * x)`, `steps <- steps + 1` (an i64 counter), output `sum(w * x)`.
fn spec(state: Option<State>) -> CompileSpec {
    let mut g = Graph::new();
    let x = node(
        &mut g,
        Op::Input {
            name: "x".into(),
            dtype: DType::F32,
            shape: Shape::known(&[64]),
        },
        &[],
    );
    let w = node(
        &mut g,
        Op::Parameter {
            name: "w".into(),
            dtype: DType::F32,
            shape: Shape::known(&[64]),
        },
        &[],
    );
    let steps = node(
        &mut g,
        Op::Parameter {
            name: "steps".into(),
            dtype: DType::I64,
            shape: Shape::known(&[]),
        },
        &[],
    );
    let wx = node(&mut g, Op::Binary(BinaryOp::Mul), &[w, x]);
    let half = node(
        &mut g,
        Op::Constant(Array::from_f32(&[], vec![0.5]).unwrap_or_else(|e| panic!("{e}"))),
        &[],
    );
    let step = node(&mut g, Op::Binary(BinaryOp::Mul), &[wx, half]);
    let new_w = node(&mut g, Op::Binary(BinaryOp::Sub), &[w, step]);
    let one = node(
        &mut g,
        Op::Constant(
            Array::new(&[], kiln_ir::Data::I64(vec![1])).unwrap_or_else(|e| panic!("{e}")),
        ),
        &[],
    );
    let new_steps = node(&mut g, Op::Binary(BinaryOp::Add), &[steps, one]);
    let loss = node(
        &mut g,
        Op::Reduce {
            op: kiln_ir::ReduceOp::Sum,
            axes: vec![0],
            keepdim: false,
        },
        &[wx],
    );
    let mut params = HashMap::new();
    params.insert(
        "w".to_string(),
        Array::from_f32(&[64], (0..64).map(|i| 1.0 + i as f32 / 64.0).collect())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    params.insert(
        "steps".to_string(),
        Array::new(&[], kiln_ir::Data::I64(vec![(1 << 40) - 3])).unwrap_or_else(|e| panic!("{e}")),
    );
    CompileSpec {
        graph: g,
        outputs: vec![("loss".into(), loss)],
        updates: vec![("w".into(), new_w), ("steps".into(), new_steps)],
        params: if state.is_some() {
            HashMap::new()
        } else {
            params
        },
        state,
    }
}

fn x() -> Array {
    Array::from_f32(&[64], (0..64).map(|i| 0.01 * (i % 7) as f32).collect())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_gpu_train_loop_keeps_its_state_on_the_device() {
    if kiln_gpu::test_device().is_none() {
        return;
    }
    let x = x();
    let mut cpu = compile(spec(None), Backend::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let mut gpu = compile(spec(None), Backend::Gpu).unwrap_or_else(|e| panic!("{e}"));
    for step in 0..100 {
        let want = cpu.run(&[("x", &x)]).unwrap_or_else(|e| panic!("{e}"));
        let got = gpu.run(&[("x", &x)]).unwrap_or_else(|e| panic!("{e}"));
        let (w, g) = (want[0].1.to_f64_vec()[0], got[0].1.to_f64_vec()[0]);
        assert!(
            (w - g).abs() <= 1e-5 * w.abs().max(1.0),
            "step {step}: {g} vs {w}"
        );
    }
    let t = gpu.device_transfers().unwrap_or_default();
    assert_eq!(t.state_upload_bytes, 64 * 4 + 8, "state uploaded once");
    assert_eq!(t.state_download_bytes, 0, "state never read back");
    assert_eq!(t.output_bytes, 100 * 4, "only the loss comes back");
    // Asking reads the state back once, with all 100 updates.
    let steps = gpu.state().get("steps").unwrap_or_else(|| panic!("steps"));
    assert_eq!(steps.to_i64_vec(), vec![(1 << 40) - 3 + 100]);
    let w_gpu = gpu
        .state()
        .get("w")
        .unwrap_or_else(|| panic!("w"))
        .to_f64_vec();
    let w_cpu = cpu
        .state()
        .get("w")
        .unwrap_or_else(|| panic!("w"))
        .to_f64_vec();
    for (g, c) in w_gpu.iter().zip(&w_cpu) {
        assert!((g - c).abs() <= 1e-5, "{g} vs {c}");
    }
    let t = gpu.device_transfers().unwrap_or_default();
    assert_eq!(t.state_download_bytes, 64 * 4 + 8);
    // Reading again needs no transfer, and the next run uploads nothing.
    let _ = gpu.state().snapshot();
    gpu.run(&[("x", &x)]).unwrap_or_else(|e| panic!("{e}"));
    let t2 = gpu.device_transfers().unwrap_or_default();
    assert_eq!(t2.state_download_bytes, t.state_download_bytes);
    assert_eq!(t2.state_upload_bytes, t.state_upload_bytes);
    // A host write is uploaded by the next run (that tensor only).
    gpu.state()
        .set(
            "w",
            Array::from_f32(&[64], vec![2.0; 64]).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let out = gpu.run(&[("x", &x)]).unwrap_or_else(|e| panic!("{e}"));
    let want: f64 = x.to_f64_vec().iter().map(|v| 2.0 * v).sum();
    assert!((out[0].1.to_f64_vec()[0] - want).abs() < 1e-4);
    let t3 = gpu.device_transfers().unwrap_or_default();
    assert_eq!(t3.state_upload_bytes, t2.state_upload_bytes + 64 * 4);
}

#[test]
fn gpu_and_cpu_executables_sharing_a_store_see_each_others_updates() {
    if kiln_gpu::test_device().is_none() {
        return;
    }
    let x = x();
    let mut gpu = compile(spec(None), Backend::Gpu).unwrap_or_else(|e| panic!("{e}"));
    let state = gpu.state().clone();
    let mut cpu =
        compile(spec(Some(state.clone())), Backend::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let mut gpu2 =
        compile(spec(Some(state.clone())), Backend::Gpu).unwrap_or_else(|e| panic!("{e}"));
    let mut reference = compile(spec(None), Backend::Cpu).unwrap_or_else(|e| panic!("{e}"));
    // Alternate: gpu, cpu, second gpu executable, each step continuing the last.
    for step in 0..9 {
        let want = reference
            .run(&[("x", &x)])
            .unwrap_or_else(|e| panic!("{e}"));
        let exe = match step % 3 {
            0 => &mut gpu,
            1 => &mut cpu,
            _ => &mut gpu2,
        };
        let got = exe.run(&[("x", &x)]).unwrap_or_else(|e| panic!("{e}"));
        let (w, g) = (want[0].1.to_f64_vec()[0], got[0].1.to_f64_vec()[0]);
        assert!(
            (w - g).abs() <= 1e-5 * w.abs().max(1.0),
            "step {step}: {g} vs {w}"
        );
    }
    assert_eq!(
        state.get("steps").map(|a| a.to_i64_vec()),
        Some(vec![(1 << 40) - 3 + 9])
    );
}
