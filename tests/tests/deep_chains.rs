//! Deep elementwise chains and their gradients: the fusion planner's work grows linearly
//! with the chain's length (the structural guard against the merge pass rebuilding the
//! kernel graph at every merge, which made compiling a 20k-step gradient take minutes), and
//! the compiled gradient of a deep chain matches the interpreter.

use kiln::{Array, Backend, DType, Data, Graph, Tensor};
use kiln_passes::fuse::lower_with;
use kiln_passes::pipeline::{Func, PipelineOptions, optimize};

/// `y = sin(y)` `depth` times (or, `mixed`, `z = z * cos(y); y = sin(y)`), the sum of the
/// result, and its gradient with respect to the input `x` of `len` elements.
fn chain(depth: usize, mixed: bool, len: usize) -> (Tensor, Tensor) {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [len]);
    let (mut y, mut z) = (x.clone(), x.clone());
    for _ in 0..depth {
        if mixed {
            z = &z * &y.cos();
        }
        y = y.sin();
    }
    let loss = if mixed {
        (&z + &y).sum_all()
    } else {
        y.sum_all()
    };
    let dx = kiln::grad(&loss, &[&x]).remove(0);
    (x, dx)
}

/// The planner's work and the kernel count for the gradient of a chain.
fn plan_work(depth: usize, mixed: bool) -> (usize, usize) {
    let (_, dx) = chain(depth, mixed, 1024);
    let g = dx.graph();
    g.check().expect("graph builds");
    let mut func = Func::new(g.ir(), vec![dx.node().expect("node")]).expect("func");
    optimize(&mut func, &PipelineOptions::default()).expect("optimize");
    let outputs = vec![("dx".to_string(), func.outputs[0])];
    let lowered = lower_with(&func.graph, &outputs, &[]).expect("lowers");
    (lowered.plan_work, lowered.report.kernels())
}

#[test]
fn planning_work_is_linear_in_the_depth_of_a_gradient_chain() {
    for (depth, mixed) in [(5_000, false), (2_000, true)] {
        let (w1, k1) = plan_work(depth, mixed);
        let (w2, k2) = plan_work(2 * depth, mixed);
        let ratio = w2 as f64 / w1 as f64;
        assert!(
            ratio <= 2.2,
            "mixed={mixed}: planner work {w1} at depth {depth}, {w2} at {} (x{ratio:.2})",
            2 * depth
        );
        // Kernels are cut by the fusion depth limit, so their number is linear too.
        assert!(k2 <= 2 * k1 + 2, "mixed={mixed}: {k1} then {k2} kernels");
        assert!(
            k1 > depth / kiln_passes::fuse::MAX_FUSE_DEPTH,
            "{k1} kernels"
        );
    }
}

#[test]
fn compiled_gradient_of_a_deep_chain_matches_the_interpreter() {
    let xs = [0.5f32, 1.0, -0.3, 2.0, -1.5, 0.0, 3.0, -2.5];
    let input = Array::new(&[xs.len()], Data::F32(xs.to_vec())).expect("array");
    for mixed in [false, true] {
        let (_, dx) = chain(2_000, mixed, xs.len());
        let want = kiln::eval(&[&dx], &[("x", &input)]).expect("interpreter")[0].to_f64_vec();
        let mut exe = kiln::compile(&[("dx", &dx)], Backend::Cpu).expect("compiles");
        let got = exe.run(&[("x", &input)]).expect("runs")[0].1.to_f64_vec();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1e-3),
                "mixed={mixed}: dx[{i}] = {g}, interpreter {w}"
            );
        }
        assert!(
            want.iter().any(|w| w.abs() > 1e-3),
            "a gradient that cannot fail: {want:?}"
        );
    }
}
