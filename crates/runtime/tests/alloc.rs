//! Steady-state runs on the CPU backend allocate only what they return: a counting global
//! allocator counts the allocations of the test thread over many runs of a SimpleNN forward
//! pass and of a train step that updates state, and results are checked against the
//! reference interpreter.

use kiln_ir::{Array, BinaryOp, DType, Dim, Graph, NodeId, Op, ReduceOp, Shape};
use kiln_runtime::{Backend, CompileSpec, Executable, compile};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;

/// The system allocator, counting the allocations (and reallocations) of threads that
/// enabled counting.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        COUNT.with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call forwards to `System` unchanged; counting touches only const-initialised
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(Cell::get)
}

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * 0.37 + seed).sin() * 0.5)
        .collect()
}

fn input(g: &mut Graph, name: &str, shape: &[usize]) -> NodeId {
    g.add(
        Op::Input {
            name: name.into(),
            dtype: DType::F32,
            shape: Shape::known(shape),
        },
        &[],
    )
    .unwrap()
}

fn param(g: &mut Graph, name: &str, shape: &[usize]) -> NodeId {
    g.add(
        Op::Parameter {
            name: name.into(),
            dtype: DType::F32,
            shape: Shape::known(shape),
        },
        &[],
    )
    .unwrap()
}

fn bin(g: &mut Graph, op: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
    g.add(Op::Binary(op), &[a, b]).unwrap()
}

fn scalar(g: &mut Graph, v: f32) -> NodeId {
    g.add(Op::Constant(Array::from_f32(&[], vec![v]).unwrap()), &[])
        .unwrap()
}

fn transpose(g: &mut Graph, x: NodeId) -> NodeId {
    g.add(Op::Permute(vec![1, 0]), &[x]).unwrap()
}

/// `relu(x @ w1^T + b1) @ w2^T + b2` with SimpleNN's sizes (784 -> 128 -> 10).
fn simple_nn(batch: usize) -> (CompileSpec, Array) {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[batch, 784]);
    simple_nn_on(g, x, batch)
}

/// SimpleNN over a batch of symbolic size `N`.
fn simple_nn_symbolic() -> CompileSpec {
    let mut g = Graph::new();
    let x = g
        .add(
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: Shape::new([Dim::sym("N"), Dim::known(784)]),
            },
            &[],
        )
        .unwrap();
    simple_nn_on(g, x, 1).0
}

fn simple_nn_on(mut g: Graph, x: NodeId, batch: usize) -> (CompileSpec, Array) {
    let w1 = param(&mut g, "fc1.weight", &[128, 784]);
    let b1 = param(&mut g, "fc1.bias", &[128]);
    let w2 = param(&mut g, "fc2.weight", &[10, 128]);
    let b2 = param(&mut g, "fc2.bias", &[10]);
    let w1t = transpose(&mut g, w1);
    let h = g.add(Op::MatMul, &[x, w1t]).unwrap();
    let h = bin(&mut g, BinaryOp::Add, h, b1);
    let zero = scalar(&mut g, 0.0);
    let h = bin(&mut g, BinaryOp::Max, h, zero);
    let w2t = transpose(&mut g, w2);
    let y = g.add(Op::MatMul, &[h, w2t]).unwrap();
    let y = bin(&mut g, BinaryOp::Add, y, b2);
    let params = HashMap::from([
        p("fc1.weight", &[128, 784], 1.0),
        p("fc1.bias", &[128], 2.0),
        p("fc2.weight", &[10, 128], 3.0),
        p("fc2.bias", &[10], 4.0),
    ]);
    let xv = Array::from_f32(&[batch, 784], values(batch * 784, 5.0)).unwrap();
    (
        CompileSpec {
            graph: g,
            outputs: vec![("logits".into(), y)],
            updates: vec![],
            params,
            state: None,
        },
        xv,
    )
}

fn p(name: &str, shape: &[usize], seed: f32) -> (String, Array) {
    let n = shape.iter().product();
    (
        name.to_string(),
        Array::from_f32(shape, values(n, seed)).unwrap(),
    )
}

/// One step of least squares with momentum: `err = x @ w - t`, `loss = sum(err^2)`,
/// `m' = 0.9 m + x^T err / 8`, `w' = w - 0.1 m'`.
fn train_step() -> (CompileSpec, Array, Array) {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[8, 16]);
    let t = input(&mut g, "t", &[8, 4]);
    let w = param(&mut g, "w", &[16, 4]);
    let m = param(&mut g, "w.m", &[16, 4]);
    let pred = g.add(Op::MatMul, &[x, w]).unwrap();
    let err = bin(&mut g, BinaryOp::Sub, pred, t);
    let sq = bin(&mut g, BinaryOp::Mul, err, err);
    let loss = g
        .add(
            Op::Reduce {
                op: ReduceOp::Sum,
                axes: vec![0, 1],
                keepdim: false,
            },
            &[sq],
        )
        .unwrap();
    let xt = transpose(&mut g, x);
    let grad = g.add(Op::MatMul, &[xt, err]).unwrap();
    let eighth = scalar(&mut g, 0.125);
    let grad = bin(&mut g, BinaryOp::Mul, grad, eighth);
    let beta = scalar(&mut g, 0.9);
    let mb = bin(&mut g, BinaryOp::Mul, m, beta);
    let m2 = bin(&mut g, BinaryOp::Add, mb, grad);
    let lr = scalar(&mut g, 0.1);
    let step = bin(&mut g, BinaryOp::Mul, m2, lr);
    let w2 = bin(&mut g, BinaryOp::Sub, w, step);
    let params = HashMap::from([p("w", &[16, 4], 1.0), p("w.m", &[16, 4], 2.0)]);
    let xv = Array::from_f32(&[8, 16], values(128, 3.0)).unwrap();
    let tv = Array::from_f32(&[8, 4], values(32, 4.0)).unwrap();
    (
        CompileSpec {
            graph: g,
            outputs: vec![("loss".into(), loss)],
            updates: vec![("w".into(), w2), ("w.m".into(), m2)],
            params,
            state: None,
        },
        xv,
        tv,
    )
}

fn close(a: &Array, b: &Array, tol: f64) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
    }
}

fn run_once(exe: &mut Executable, feeds: &[(&str, &Array)]) -> Vec<(String, Array)> {
    exe.run(feeds).unwrap()
}

const RUNS: usize = 50;

#[test]
fn steady_state_runs_allocate_only_their_results() {
    // SimpleNN forward, batch 1.
    let (spec, xv) = simple_nn(1);
    let mut reference = compile(spec.clone(), Backend::Interp).unwrap();
    let mut exe = compile(spec, Backend::Cpu).unwrap();
    let feeds = [("x", &xv)];
    let want = run_once(&mut reference, &feeds);
    for _ in 0..3 {
        run_once(&mut exe, &feeds);
        exe.run_borrowed(&feeds).unwrap();
    }
    let mut got = Vec::new();
    let n = allocations(|| {
        for _ in 0..RUNS {
            got = exe.run(&feeds).unwrap();
        }
    });
    // Per run: the returned Vec, then for `logits` its name, its shape and its data.
    assert_eq!(n, RUNS * 4);
    assert_eq!(got[0].0, "logits");
    assert_eq!(got[0].1.shape(), &[1, 10]);
    close(&got[0].1, &want[0].1, 1e-4);
    let n = allocations(|| {
        for _ in 0..RUNS {
            exe.run_borrowed(&feeds).unwrap();
        }
    });
    assert_eq!(n, 0);
    let outs = exe.run_borrowed(&feeds).unwrap();
    assert_eq!(outs.len(), 1);
    let view = outs.get("logits").unwrap();
    assert_eq!(view.shape, &[1, 10]);
    close(&view.to_array().unwrap(), &want[0].1, 1e-4);

    // A train step: two state updates swapped into the store at every run.
    let (spec, xv, tv) = train_step();
    let mut reference = compile(spec.clone(), Backend::Interp).unwrap();
    let mut exe = compile(spec, Backend::Cpu).unwrap();
    let feeds = [("x", &xv), ("t", &tv)];
    let warm = 4;
    for _ in 0..warm - 1 {
        run_once(&mut exe, &feeds);
    }
    exe.run_borrowed(&feeds).unwrap();
    let mut losses = Vec::with_capacity(RUNS);
    let n = allocations(|| {
        for _ in 0..RUNS {
            let out = exe.run(&feeds).unwrap();
            losses.push(out[0].1.as_f32().unwrap()[0]);
        }
    });
    // Per run: the Vec and the rank-0 `loss` (its name and its data; a rank-0 shape
    // allocates nothing).
    assert_eq!(n, RUNS * 3);
    let n = allocations(|| {
        for _ in 0..RUNS {
            let outs = exe.run_borrowed(&feeds).unwrap();
            assert_eq!(outs.at(0).unwrap().shape, &[] as &[usize]);
        }
    });
    assert_eq!(n, 0);
    // The reference takes the same number of steps; state and losses agree.
    let mut ref_losses = Vec::new();
    for i in 0..warm + 2 * RUNS {
        let out = run_once(&mut reference, &feeds);
        if (warm..warm + RUNS).contains(&i) {
            ref_losses.push(out[0].1.as_f32().unwrap()[0]);
        }
    }
    for (a, b) in losses.iter().zip(&ref_losses) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "loss {a} vs {b}");
    }
    assert!(losses[RUNS - 1] < losses[0], "training lowers the loss");
    for name in ["w", "w.m"] {
        close(
            &exe.state().get(name).unwrap(),
            &reference.state().get(name).unwrap(),
            1e-4,
        );
    }
}

#[test]
fn a_new_binding_gets_a_new_plan() {
    let spec = simple_nn_symbolic();
    let mut exe = compile(spec.clone(), Backend::Cpu).unwrap();
    let mut reference = compile(spec, Backend::Interp).unwrap();
    for batch in [1, 3, 3, 1, 5] {
        let xv = Array::from_f32(&[batch, 784], values(batch * 784, batch as f32)).unwrap();
        let a = exe.run(&[("x", &xv)]).unwrap();
        let b = reference.run(&[("x", &xv)]).unwrap();
        assert_eq!(a[0].1.shape(), &[batch, 10]);
        close(&a[0].1, &b[0].1, 1e-4);
        let v = exe
            .run_borrowed(&[("x", &xv)])
            .unwrap()
            .at(0)
            .unwrap()
            .to_array()
            .unwrap();
        close(&v, &b[0].1, 1e-4);
    }
}

#[test]
fn a_state_set_between_runs_is_honoured_and_bad_inputs_get_precise_errors() {
    let (spec, xv, tv) = train_step();
    let mut exe = compile(spec.clone(), Backend::Cpu).unwrap();
    let mut reference = compile(spec, Backend::Interp).unwrap();
    let feeds = [("x", &xv), ("t", &tv)];
    exe.run(&feeds).unwrap();
    reference.run(&feeds).unwrap();
    // Replacing a state tensor from outside is seen by the next run.
    let w = Array::from_f32(&[16, 4], values(64, 9.0)).unwrap();
    exe.state().set("w", w.clone()).unwrap();
    reference.state().set("w", w).unwrap();
    let a = exe.run(&feeds).unwrap();
    let b = reference.run(&feeds).unwrap();
    close(&a[0].1, &b[0].1, 1e-4);
    close(
        &exe.state().get("w").unwrap(),
        &reference.state().get("w").unwrap(),
        1e-4,
    );
    // Bad inputs still get the precise error.
    let bad = Array::from_f32(&[8, 3], values(24, 1.0)).unwrap();
    let err = exe.run(&[("x", &xv), ("t", &bad)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input `t`: dimension 1 is 3, expected 4 (shape [8, 4], got [8, 3])"
    );
    let err = exe.run(&[("x", &xv)]).unwrap_err();
    assert_eq!(err.to_string(), "missing input `t` (expected f32[8, 4])");
}

/// A scan of 16 steps whose body branches on its carry: the CPU engine walks the loop
/// itself, so steady-state borrowed runs allocate nothing, per run or per iteration.
const SCAN_WITH_COND: &str = r#"
n0 = input "xs" : f32[16, 4]
n1 = input "h0" : f32[4]
n2 = scan n1, n0 body=r0 length=[16] carries=1 xs=1 reverse=false : bool[]
n3 = get n2 index=0 : f32[4]
n4 = get n2 index=1 : f32[16, 4]
r0 (n0, n1) -> (n8, n8) {
  n0 = input "h" : f32[4]
  n1 = input "x" : f32[4]
  n2 = add n0, n1 : f32[4]
  n3 = tanh n2 : f32[4]
  n4 = reduce_sum n3 axes=[0] keepdim=false : f32[]
  n5 = const f32[] [0.0] : f32[]
  n6 = lt n4, n5 : bool[]
  n7 = cond n6, n3 then=r0 else=r1 : bool[]
  n8 = get n7 index=0 : f32[4]
  r0 (n0) -> (n1) {
    n0 = input "a" : f32[4]
    n1 = neg n0 : f32[4]
  }
  r1 (n0) -> (n0) {
    n0 = input "a" : f32[4]
  }
}
"#;

#[test]
fn control_flow_runs_allocate_nothing_in_steady_state() {
    let g = kiln_ir::parse(SCAN_WITH_COND).unwrap();
    let spec = CompileSpec {
        graph: g,
        outputs: vec![("h".into(), NodeId(3)), ("ys".into(), NodeId(4))],
        updates: vec![],
        params: HashMap::new(),
        state: None,
    };
    let xs = Array::from_f32(&[16, 4], values(64, 0.3)).unwrap();
    let h0 = Array::from_f32(&[4], values(4, 1.1)).unwrap();
    let feeds = [("xs", &xs), ("h0", &h0)];
    let mut reference = compile(spec.clone(), Backend::Interp).unwrap();
    let want = run_once(&mut reference, &feeds);
    let mut exe = compile(spec, Backend::Cpu).unwrap();
    for _ in 0..3 {
        exe.run_borrowed(&feeds).unwrap();
    }
    let n = allocations(|| {
        for _ in 0..RUNS {
            exe.run_borrowed(&feeds).unwrap();
        }
    });
    assert_eq!(n, 0);
    let got = run_once(&mut exe, &feeds);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0);
        close(&g.1, &w.1, 1e-5);
    }
}
