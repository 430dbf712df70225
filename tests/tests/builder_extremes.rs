//! Property: random op sequences over extreme shapes (0, 1, 2^31, 2^62, symbolic `N`, `N-1`)
//! never panic while building, never yield a tensor whose shape overflows or may be negative,
//! and every graph the builder accepts either compiles on every backend or is refused with a
//! one-line error.

use kiln::{DType, Dim, Graph, Tensor};
use proptest::prelude::*;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A small deterministic generator driven by the proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 17
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }
}

const EXTENTS: &[u64] = &[0, 1, 2, 3, 1 << 31, 1 << 62];
const AMOUNTS: &[u64] = &[0, 1, 2, 1 << 31, 1 << 62, u64::MAX];

fn dim(r: &mut Rng, g: &Graph) -> Dim {
    match r.below(8) {
        0 => g.sym("N"),
        1 => g.sym("N") - Dim::known(1),
        2 => &g.sym("N") * &Dim::known(1 << 40),
        _ => Dim::known(r.pick(EXTENTS)),
    }
}

fn shape(r: &mut Rng, g: &Graph) -> Vec<Dim> {
    let rank = 1 + r.below(3);
    (0..rank).map(|_| dim(r, g)).collect()
}

/// Applies one random op to the pool of tensors built so far.
fn step(r: &mut Rng, g: &Graph, pool: &mut Vec<Tensor>, inputs: &mut usize) {
    let x = pool[r.below(pool.len())].clone();
    let y = pool[r.below(pool.len())].clone();
    let rank = x.rank().max(1) as i64;
    let t = match r.below(12) {
        0 => {
            *inputs += 1;
            g.input(&format!("x{inputs}"), DType::F32, shape(r, g))
        }
        1 => x.exp(),
        2 => &x + &y,
        3 => x.reshape(shape(r, g)),
        4 => x.expand(shape(r, g)),
        5 => {
            let pads: Vec<(u64, u64)> = (0..x.rank())
                .map(|_| (r.pick(AMOUNTS), r.pick(AMOUNTS)))
                .collect();
            x.pad(&pads, 0.0)
        }
        6 => x.sum(vec![r.below(rank as usize)], r.below(2) == 0),
        7 => x.matmul(&y),
        8 => x.slice(r.below(rank as usize) as i64, 1, -1, 1 + r.below(3) as u64),
        9 => Tensor::cat(&[&x, &y], r.below(rank as usize) as i64),
        10 => x.transpose(0, rank - 1),
        _ => x.max(vec![r.below(rank as usize)], false),
    };
    pool.push(t);
}

fn check_accepted(t: &Tensor) -> Result<(), String> {
    let s = t.shape();
    for d in &s.0 {
        if d.is_overflow() || !d.provably_non_negative() {
            return Err(format!("accepted a tensor of shape {s}"));
        }
    }
    if s.numel().is_overflow() {
        return Err(format!(
            "accepted a tensor of shape {s} whose size overflows"
        ));
    }
    Ok(())
}

/// What one random graph did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The builder refused it (one-line diagnostics).
    Diagnosed,
    /// Compiled on every backend.
    Compiled,
    /// Refused by compile on some backend with a one-line error.
    Refused,
}

fn run_case(seed: u64) -> Result<Outcome, String> {
    let built = catch_unwind(AssertUnwindSafe(|| {
        let mut r = Rng(seed);
        let g = Graph::new();
        let mut inputs = 1;
        let mut pool = vec![g.input("x1", DType::F32, shape(&mut r, &g))];
        for _ in 0..1 + r.below(5) {
            step(&mut r, &g, &mut pool, &mut inputs);
        }
        (g, pool)
    }));
    let (g, pool) = built.map_err(|_| "building panicked".to_string())?;
    for d in g.diagnostics() {
        if d.message.contains('\n') {
            return Err(format!("multi-line diagnostic: {}", d.message));
        }
    }
    for t in pool.iter().filter(|t| !t.is_poisoned()) {
        check_accepted(t)?;
    }
    let last = match pool.last() {
        Some(t) if !t.is_poisoned() && g.diagnostics().is_empty() => t,
        _ => return Ok(Outcome::Diagnosed),
    };
    let mut outcome = Outcome::Compiled;
    for backend in kiln_tests::backends() {
        let res = catch_unwind(AssertUnwindSafe(|| {
            kiln::compile(&[("y", last)], backend).map(|_| ())
        }));
        match res {
            Err(_) => return Err(format!("compile panicked on {backend} for {last:?}")),
            Ok(Err(e)) => {
                let msg = e.to_string();
                if msg.contains('\n') || msg.len() > 2000 {
                    return Err(format!("{backend}: error is not one bounded line: {msg}"));
                }
                outcome = Outcome::Refused;
            }
            Ok(Ok(())) => {}
        }
    }
    Ok(outcome)
}

#[test]
fn a_fixed_sweep_compiles_many_graphs_and_fails_none() {
    let mut counts = [0usize; 3];
    let mut failures = Vec::new();
    for seed in 0..400 {
        match run_case(seed) {
            Ok(o) => counts[o as usize] += 1,
            Err(e) => failures.push(format!("seed {seed}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let [diagnosed, compiled, refused] = counts;
    eprintln!("{diagnosed} diagnosed, {compiled} compiled on every backend, {refused} refused");
    assert!(
        compiled >= 60,
        "only {compiled} of 400 graphs reached every backend"
    );
    assert!(
        diagnosed >= 60,
        "only {diagnosed} of 400 graphs hit a diagnostic"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn building_never_panics_and_accepted_graphs_compile_or_refuse_in_one_line(seed in any::<u64>()) {
        run_case(seed).map_err(|e| TestCaseError::fail(format!("{e} (seed {seed})")))?;
    }
}
