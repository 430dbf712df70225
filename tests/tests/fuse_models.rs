//! Fusion of the reference models (SimpleNN, LSTMNN, LeNet) and of softmax and layer norm
//! built with the kiln builder: kernel counts (the figures in docs/pipeline.md), results of
//! the fused kernel plan against the interpreter, and the memory plan of SimpleNN's train
//! step.
//!
//! Every graph goes through the real pipeline: builder, `optimize` (simplify, CSE, DCE),
//! then `fuse::lower_with`.

use kiln::{Array, DType, Data, Graph, Tensor};
use kiln_ir::NodeId;
use kiln_kernel::memplan;
use kiln_kernel::{BufferKind, VerifiedProgram};
use kiln_passes::fuse::{FuseReport, lower_with};
use kiln_passes::pipeline::{Func, PipelineOptions, optimize};
use kiln_tests::models::{lenet, lstm_nn, simple_nn};
use std::collections::HashMap;

/// A lowered step: the optimised graph, its named outputs and updates, the program.
struct Step {
    graph: kiln_ir::Graph,
    outputs: Vec<(String, NodeId)>,
    updates: Vec<(String, NodeId)>,
    program: VerifiedProgram,
    report: FuseReport,
}

fn lower_step(outs: &[(&str, &Tensor)], updates: &[(&str, &Tensor)]) -> Step {
    let g = outs[0].1.graph();
    g.check().expect("graph builds");
    let ids: Vec<NodeId> = outs
        .iter()
        .chain(updates)
        .map(|(_, t)| t.node().expect("node"))
        .collect();
    let mut func = Func::new(g.ir(), ids).expect("func");
    optimize(&mut func, &PipelineOptions::default()).expect("optimize");
    let names: Vec<String> = outs
        .iter()
        .chain(updates)
        .map(|(n, _)| n.to_string())
        .collect();
    let pairs: Vec<(String, NodeId)> = names
        .into_iter()
        .zip(func.outputs.iter().copied())
        .collect();
    let (o, u) = pairs.split_at(outs.len());
    let lowered = lower_with(&func.graph, o, u).unwrap_or_else(|e| panic!("{e}"));
    Step {
        graph: func.graph,
        outputs: o.to_vec(),
        updates: u.to_vec(),
        program: lowered.program,
        report: lowered.report,
    }
}

struct Lcg(u64);

impl Lcg {
    fn f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) % 2001) as f32 / 1000.0 - 1.0
    }
}

fn random(rng: &mut Lcg, shape: &[usize], scale: f32) -> Array {
    let n = shape.iter().product();
    Array::from_f32(shape, (0..n).map(|_| rng.f32() * scale).collect()).expect("array")
}

/// Random values for every parameter of `g` (scaled down so activations stay moderate).
fn random_params(g: &Graph, seed: u64) -> HashMap<String, Array> {
    let mut rng = Lcg(seed);
    let ir = g.ir();
    ir.parameters()
        .into_iter()
        .map(|(n, name)| {
            let shape = ir.node(n).shape.as_known().expect("concrete param");
            (name.to_string(), random(&mut rng, &shape, 0.2))
        })
        .collect()
}

/// Runs the step's program; returns outputs and the state afterwards, by name.
fn run_program(
    step: &Step,
    bindings: &HashMap<String, u64>,
    inputs: &HashMap<String, Array>,
    params: &HashMap<String, Array>,
) -> (HashMap<String, Data>, HashMap<String, Data>) {
    let p = &step.program;
    let mut bufs = kiln_kernel::allocate(p, bindings).expect("allocate");
    for (b, buf) in p.buffers.iter().zip(bufs.iter_mut()) {
        match &b.kind {
            BufferKind::Input(n) => *buf = inputs[n].data().clone(),
            BufferKind::State(n) => *buf = params[n].data().clone(),
            BufferKind::Output(_) | BufferKind::Constant(_) | BufferKind::Scratch => {}
        }
    }
    kiln_kernel::execute(p, bindings, &mut bufs).unwrap_or_else(|e| panic!("{e}"));
    let mut outs = HashMap::new();
    let mut state = HashMap::new();
    for (b, buf) in p.buffers.iter().zip(bufs) {
        match &b.kind {
            BufferKind::Output(n) => {
                outs.insert(n.clone(), buf);
            }
            BufferKind::State(n) => {
                state.insert(n.clone(), buf);
            }
            BufferKind::Input(_) | BufferKind::Constant(_) | BufferKind::Scratch => {}
        }
    }
    (outs, state)
}

/// Floats within `tol` relative (the kernel executor and the interpreter both accumulate in
/// `f64`; summation order inside a contraction may differ in the last bits).
fn assert_close(what: &str, got: &Data, want: &Array, tol: f32) {
    let (Data::F32(g), Ok(w)) = (got, want.as_f32()) else {
        assert_eq!(format!("{got:?}"), format!("{:?}", want.data()), "{what}");
        return;
    };
    assert_eq!(g.len(), w.len(), "{what}: length");
    for (i, (a, b)) in g.iter().zip(w).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

/// Compares every output (and updated state) of the program with the interpreter.
fn check_against_interp(
    step: &Step,
    bindings: &HashMap<String, u64>,
    inputs: &HashMap<String, Array>,
    params: &HashMap<String, Array>,
) {
    let nodes: Vec<NodeId> = step
        .outputs
        .iter()
        .chain(&step.updates)
        .map(|(_, n)| *n)
        .collect();
    let want = kiln_interp::eval(&step.graph, &nodes, inputs, params).expect("interp");
    let (outs, state) = run_program(step, bindings, inputs, params);
    for ((name, _), w) in step.outputs.iter().zip(&want) {
        assert_close(name, &outs[name], w, 1e-5);
    }
    for ((name, _), w) in step.updates.iter().zip(&want[step.outputs.len()..]) {
        assert_close(name, &state[name], w, 1e-5);
    }
}

fn n_binding(n: u64) -> HashMap<String, u64> {
    HashMap::from([("N".to_string(), n)])
}

/// Plans the step's scratch memory at batch 64, checks the arena is no larger than the
/// largest live set, and prints the figures quoted in docs/pipeline.md.
fn memory_at_64(name: &str, step: &Step) -> memplan::MemoryPlan {
    let plan = memplan::plan(&step.program, &n_binding(64)).expect("plan");
    println!(
        "{name}: {} | N=64: peak scratch {} B, live bound {} B, {} in place, persistent {} B",
        step.report,
        plan.peak_scratch_bytes,
        plan.live_bound_bytes,
        plan.in_place.len(),
        plan.persistent_bytes
    );
    assert!(plan.peak_scratch_bytes <= plan.live_bound_bytes, "{name}");
    plan
}

#[test]
fn simple_nn_forward_is_its_two_matmuls() {
    let g = Graph::new();
    let n = g.sym("N");
    let (_x, logits) = simple_nn(&g, &n);
    let step = lower_step(&[("logits", &logits)], &[]);
    memory_at_64("simple_nn forward", &step);
    assert_eq!(step.report.matmul, 2);
    assert!(step.report.loops() <= 2, "{}", step.report);
    assert_eq!(step.report.kernels(), 2, "{}", step.report);
    let params = random_params(&g, 1);
    let mut rng = Lcg(7);
    let inputs = HashMap::from([("x".to_string(), random(&mut rng, &[3, 784], 1.0))]);
    check_against_interp(&step, &n_binding(3), &inputs, &params);
}

#[test]
fn lstm_cell_step_is_two_matmuls_and_one_loop() {
    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 28));
    let h = g.input("h", DType::F32, (&n, 128));
    let c = g.input("c", DType::F32, (&n, 128));
    let w_ih = g.param("lstm.weight_ih_l0", DType::F32, [512, 28]);
    let w_hh = g.param("lstm.weight_hh_l0", DType::F32, [512, 128]);
    let b_ih = g.param("lstm.bias_ih_l0", DType::F32, [512]);
    let b_hh = g.param("lstm.bias_hh_l0", DType::F32, [512]);
    let (h1, c1) = kiln::functional::lstm_cell(&x, &h, &c, &w_ih, &w_hh, Some(&b_ih), Some(&b_hh));
    let step = lower_step(&[("h", &h1), ("c", &c1)], &[]);
    memory_at_64("lstm cell step", &step);
    assert_eq!(
        (step.report.matmul, step.report.loops()),
        (2, 1),
        "{}",
        step.report
    );
    let params = random_params(&g, 2);
    let mut rng = Lcg(8);
    let inputs = HashMap::from([
        ("x".to_string(), random(&mut rng, &[2, 28], 1.0)),
        ("h".to_string(), random(&mut rng, &[2, 128], 1.0)),
        ("c".to_string(), random(&mut rng, &[2, 128], 1.0)),
    ]);
    check_against_interp(&step, &n_binding(2), &inputs, &params);
}

#[test]
fn lstm_nn_unrolled_28_steps() {
    let g = Graph::new();
    let n = g.sym("N");
    let (_x, logits) = lstm_nn(&g, &n);
    let step = lower_step(&[("logits", &logits)], &[]);
    memory_at_64("lstm_nn (28 steps)", &step);
    // 28 steps x 2 layers x (2 matmuls + 1 cell loop), the first step's h @ W_hh folded
    // away by simplify (h = 0), plus the classifier's matmul.
    assert_eq!(step.report.matmul, LSTM_MATMULS, "{}", step.report);
    assert_eq!(step.report.loops(), 56, "{}", step.report);
    let params = random_params(&g, 3);
    let mut rng = Lcg(9);
    let inputs = HashMap::from([("x".to_string(), random(&mut rng, &[2, 28, 28], 1.0))]);
    check_against_interp(&step, &n_binding(2), &inputs, &params);
}

/// Matmuls of the unrolled LSTMNN after optimisation (measured; see docs/pipeline.md).
const LSTM_MATMULS: usize = 113;

#[test]
fn lenet_is_two_convs_three_matmuls_and_two_pools() {
    let g = Graph::new();
    let n = g.sym("N");
    let (_x, logits) = lenet(&g, &n);
    let step = lower_step(&[("logits", &logits)], &[]);
    memory_at_64("lenet", &step);
    assert_eq!(
        (step.report.conv2d, step.report.matmul),
        (2, 3),
        "{}",
        step.report
    );
    assert_eq!(step.report.loops(), 2, "{}", step.report);
    let params = random_params(&g, 4);
    let mut rng = Lcg(10);
    let inputs = HashMap::from([("x".to_string(), random(&mut rng, &[2, 1, 28, 28], 1.0))]);
    check_against_interp(&step, &n_binding(2), &inputs, &params);
}

#[test]
fn builder_softmax_and_layer_norm_are_one_kernel_each() {
    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 32));
    let sm = x.softmax(-1);
    let step = lower_step(&[("y", &sm)], &[]);
    assert_eq!(step.report.kernels(), 1, "softmax: {}", step.report);
    let mut rng = Lcg(11);
    let inputs = HashMap::from([("x".to_string(), random(&mut rng, &[4, 32], 3.0))]);
    check_against_interp(&step, &n_binding(4), &inputs, &HashMap::new());

    let w = g.param("ln.weight", DType::F32, [32]);
    let b = g.param("ln.bias", DType::F32, [32]);
    let ln = x.layer_norm(1, Some(&w), Some(&b), 1e-5);
    let step = lower_step(&[("y", &ln)], &[]);
    assert_eq!(step.report.kernels(), 1, "layer_norm: {}", step.report);
    check_against_interp(&step, &n_binding(4), &inputs, &random_params(&g, 12));
}

/// SimpleNN's SGD train step: loss output, the four parameters updated in place.
fn simple_nn_train_step(g: &Graph) -> (Tensor, Vec<(&'static str, Tensor)>) {
    let n = g.sym("N");
    let (_x, logits) = simple_nn(g, &n);
    let labels = g.input("labels", DType::I64, [&n]);
    let logp = logits.log_softmax(-1);
    let loss = -logp.gather(1, &labels.unsqueeze(-1)).mean_all();
    let names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];
    let shapes: [&[usize]; 4] = [&[128, 784], &[128], &[10, 128], &[10]];
    let params: Vec<Tensor> = names
        .iter()
        .zip(shapes)
        .map(|(p, s)| g.param(p, DType::F32, s.to_vec()))
        .collect();
    let refs: Vec<&Tensor> = params.iter().collect();
    let grads = kiln::grad(&loss, &refs);
    let updates = names
        .iter()
        .zip(params.iter().zip(&grads))
        .map(|(nm, (p, gr))| (*nm, p - &(gr * 0.1)))
        .collect();
    (loss, updates)
}

#[test]
fn simple_nn_train_step_updates_state_in_place_and_fits_its_live_set() {
    let g = Graph::new();
    let (loss, updates) = simple_nn_train_step(&g);
    let ups: Vec<(&str, &Tensor)> = updates.iter().map(|(n, t)| (*n, t)).collect();
    let step = lower_step(&[("loss", &loss)], &ups);
    memory_at_64("simple_nn train step", &step);
    // Every update is stored straight into its state buffer: no copy kernels, and no
    // scratch buffer holds a new parameter.
    for (name, _) in &step.updates {
        let b = step.program.state(name).expect("state buffer");
        let writers = step
            .program
            .kernels
            .iter()
            .filter(|k| match k {
                kiln_kernel::Kernel::Loop(l) => l.body.stores.iter().any(|s| s.buffer == b),
                kiln_kernel::Kernel::Matmul(m) => m.epilogue.stores.iter().any(|s| s.buffer == b),
                kiln_kernel::Kernel::Conv2d(c) => c.epilogue.stores.iter().any(|s| s.buffer == b),
            })
            .count();
        assert_eq!(writers, 1, "{name} is written by {writers} kernels");
    }
    let bindings = n_binding(64);
    let plan = memplan::plan(&step.program, &bindings).expect("plan");
    println!(
        "peak scratch {} bytes, live bound {} bytes, {} in place, persistent {} bytes",
        plan.peak_scratch_bytes,
        plan.live_bound_bytes,
        plan.in_place.len(),
        plan.persistent_bytes
    );
    assert!(plan.peak_scratch_bytes > 0);
    assert!(
        plan.peak_scratch_bytes <= plan.live_bound_bytes,
        "peak {} exceeds the largest live set {}",
        plan.peak_scratch_bytes,
        plan.live_bound_bytes
    );
    // Scratch buffers that are live at the same kernel never overlap in the arena.
    let scratch: Vec<usize> = (0..step.program.buffers.len())
        .filter(|&b| plan.lifetimes[b].is_some())
        .collect();
    for &a in &scratch {
        for &b in &scratch {
            let (la, lb) = (plan.lifetimes[a].unwrap(), plan.lifetimes[b].unwrap());
            let shared = plan.in_place.iter().any(|&(y, x)| {
                (y.index(), x.index()) == (a, b) || (y.index(), x.index()) == (b, a)
            });
            if a < b && la.0 <= lb.1 && lb.0 <= la.1 && !shared {
                let (oa, ob) = (plan.offsets[a].unwrap(), plan.offsets[b].unwrap());
                let overlap = oa < ob + plan.bytes[b] && ob < oa + plan.bytes[a];
                assert!(!overlap, "b{a} and b{b} are live together but overlap");
            }
        }
    }

    // The fused step computes what the interpreter computes.
    let params = random_params(&g, 5);
    let mut rng = Lcg(13);
    let labels: Vec<i64> = (0..8).map(|i| (i * 7 % 10) as i64).collect();
    let inputs = HashMap::from([
        ("x".to_string(), random(&mut rng, &[8, 784], 1.0)),
        (
            "labels".to_string(),
            Array::from_i64(&[8], labels).expect("labels"),
        ),
    ]);
    check_against_interp(&step, &n_binding(8), &inputs, &params);
}
