//! The CPU engine's scratch memory is exactly its memory plan: for the SimpleNN, LSTMNN and
//! LeNet train steps (cross-entropy, Adam, batch 64, as benchmarked), a counting global
//! allocator measures the bytes of the arena the first run allocates (the live bytes of
//! 64-byte-aligned allocations on the running thread), which equal
//! `Executable::planned_scratch_bytes`; later runs allocate no scratch; results match the
//! reference interpreter. Prints the figures quoted in docs/pipeline.md.

use kiln::loss::{Reduction, cross_entropy};
use kiln::models::{lenet, lstm_nn, simple_nn};
use kiln::optim::{Adam, TrainStep};
use kiln::{Array, Backend, DType, Graph, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;

/// The system allocator, keeping per thread the live bytes of allocations aligned to
/// exactly the CPU arena's alignment.
struct Counting;

thread_local! {
    static ARENA_LIVE: Cell<i64> = const { Cell::new(0) };
}

fn note(layout: Layout, delta: i64) {
    if layout.align() == kiln_cpu::ARENA_ALIGNMENT as usize {
        // `try_with`: the thread-local may already be gone while a thread exits.
        let _ = ARENA_LIVE.try_with(|c| c.set(c.get() + delta));
    }
}

// SAFETY: every call forwards to `System` unchanged; counting touches only a
// const-initialised thread-local, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout, layout.size() as i64);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout, layout.size() as i64);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(layout, new_size as i64 - layout.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(layout, -(layout.size() as i64));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Arena-aligned bytes that `f` leaves allocated on this thread.
fn arena_bytes_kept(f: impl FnOnce()) -> i64 {
    let before = ARENA_LIVE.with(Cell::get);
    f();
    ARENA_LIVE.with(Cell::get) - before
}

const BATCH: usize = 64;

/// The train step of a reference model with seeded parameters, and its feeds.
fn train_step(
    model: fn(&Graph, usize) -> (Tensor, Tensor),
    x_shape: &[usize],
) -> (TrainStep, Vec<(String, Array)>) {
    let g = Graph::new();
    let (_x, logits) = model(&g, BATCH);
    let ir = g.ir();
    let mut params = Vec::new();
    for (k, (node, name)) in ir.parameters().into_iter().enumerate() {
        let shape = ir
            .node(node)
            .shape
            .as_known()
            .expect("known parameter shape");
        let value = kiln::nn::init::uniform(0, k as u32, &shape, 0.1).expect("init");
        g.set_param(name, value).expect("set");
        params.push((name.to_string(), g.param(name, DType::F32, shape)));
    }
    let y = g.input("labels", DType::I64, [BATCH]);
    let loss = cross_entropy(&logits, &y, Reduction::Mean, 0.0);
    let step = Adam::new(1e-3).minimize(&loss, &params);
    g.check().expect("builds");
    let n: usize = x_shape.iter().product();
    let x =
        Array::from_f32(x_shape, (0..n).map(|i| ((i as f32) * 0.37).sin()).collect()).expect("x");
    let labels =
        Array::from_i64(&[BATCH], (0..BATCH as i64).map(|i| i % 10).collect()).expect("labels");
    (step, vec![("x".into(), x), ("labels".into(), labels)])
}

fn check(name: &str, model: fn(&Graph, usize) -> (Tensor, Tensor), x_shape: &[usize]) {
    let (step, feeds) = train_step(model, x_shape);
    let feeds: Vec<(&str, &Array)> = feeds.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let mut exe = step.compile(Backend::Cpu).expect("compiles");
    let plan = kiln_cpu::memory_plan(exe.program(), &HashMap::new()).expect("plans");
    let planned = exe
        .planned_scratch_bytes(&HashMap::new())
        .expect("plans")
        .expect("the cpu engine has an arena");
    assert_eq!(planned, plan.peak_scratch_bytes, "{name}");
    println!(
        "{name}: {} kernels, scratch separately {} B, arena {} B ({} in place, live bound {} B)",
        exe.program().kernels.len(),
        plan.separate_scratch_bytes(),
        planned,
        plan.in_place.len(),
        plan.live_bound_bytes,
    );
    assert!(planned <= plan.live_bound_bytes, "{name}");
    assert!(planned < plan.separate_scratch_bytes(), "{name}");

    let mut loss = f32::NAN;
    let first = arena_bytes_kept(|| {
        let out = exe.run(&feeds).expect("runs");
        loss = out[0].1.to_f64_vec()[0] as f32;
    });
    assert_eq!(
        first, planned as i64,
        "{name}: arena bytes of the first run"
    );
    let steady = arena_bytes_kept(|| {
        exe.run(&feeds).expect("runs again");
    });
    assert_eq!(steady, 0, "{name}: a steady-state run allocates no scratch");

    // The interpreter's step from the same parameters; the executable has run twice, so
    // compare its first loss and re-check the state after one more interpreted step.
    let want = step.run_eval(&feeds).expect("interprets");
    assert!(
        (loss - want).abs() <= 1e-4 * want.abs().max(1.0),
        "{name}: loss {loss} vs interpreter {want}"
    );
    let want_second = step.run_eval(&feeds).expect("interprets");
    let state = exe.state();
    for (param, _) in &step.updates {
        let got = state.get(param).expect("state").to_f64_vec();
        let want = step.graph().param_value(param).expect("param").to_f64_vec();
        let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-3 * scale,
                "{name} {param}[{i}]: {a} vs {b} (after two steps)"
            );
        }
    }
    assert!(want_second.is_finite(), "{name}");
}

#[test]
fn simple_nn_train_step_scratch_is_its_planned_arena() {
    check("SimpleNN train step", simple_nn_at, &[BATCH, 784]);
}

#[test]
fn lstm_nn_train_step_scratch_is_its_planned_arena() {
    check("LSTMNN train step", lstm_nn_at, &[BATCH, 28, 28]);
}

#[test]
fn lenet_train_step_scratch_is_its_planned_arena() {
    check("LeNet train step", lenet_at, &[BATCH, 1, 28, 28]);
}

fn simple_nn_at(g: &Graph, batch: usize) -> (Tensor, Tensor) {
    simple_nn(g, batch)
}

fn lstm_nn_at(g: &Graph, batch: usize) -> (Tensor, Tensor) {
    lstm_nn(g, batch)
}

fn lenet_at(g: &Graph, batch: usize) -> (Tensor, Tensor) {
    lenet(g, batch)
}
