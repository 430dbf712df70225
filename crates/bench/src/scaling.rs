//! Compile-time scaling: compiles `y = sin(y)` repeated `depth` times (its sum, forward
//! only, and the gradient of that sum with respect to the input) at growing depths, one
//! JSON record per (depth, mode), and fits the slope of log(time) against log(depth).

use crate::record::{Record, Status};
use kiln::{Backend, DType, Graph, Tensor};
use std::time::Instant;

/// Depths measured by default: 1k to 64k, doubling.
pub const DEPTHS: [usize; 7] = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000];

/// Elements of the chain's input.
const LEN: usize = 1024;

/// The workload name of one point: `compile_sin_chain_{fwd,grad}_{depth}`.
pub fn name(depth: usize, grad: bool) -> String {
    format!(
        "compile_sin_chain_{}_{depth}",
        if grad { "grad" } else { "fwd" }
    )
}

/// The tensor to compile: `sum(sin^depth(x))`, or its gradient with respect to `x`.
fn build(depth: usize, grad: bool) -> anyhow::Result<Tensor> {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [LEN]);
    let mut y = x.clone();
    for _ in 0..depth {
        y = y.sin();
    }
    let loss = y.sum_all();
    let out = if grad {
        kiln::try_grad(&loss, &[&x])?.remove(0)
    } else {
        loss
    };
    g.check()?;
    Ok(out)
}

/// Builds and compiles one point on `backend`; `compile_s` is graph to ready executable.
pub fn measure(depth: usize, grad: bool, backend: Backend) -> Record {
    let label = name(depth, grad);
    let t = Instant::now();
    let out = match build(depth, grad) {
        Ok(o) => o,
        Err(e) => {
            return Record::new("kiln", &label, backend.name(), Status::Failed)
                .with_note(format!("build: {e:#}"));
        }
    };
    let build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let exe = kiln::compile(&[("out", &out)], backend);
    let compile_s = t.elapsed().as_secs_f64();
    let mut r = match exe {
        Ok(exe) => {
            let kernels: usize = exe.report().kernels.values().sum();
            Record::new("kiln", &label, backend.name(), Status::Ok)
                .with_note(format!("depth {depth}; {kernels} kernels"))
        }
        Err(e) => Record::new("kiln", &label, backend.name(), Status::Failed)
            .with_note(format!("compile: {e:#}")),
    };
    r.build_s = Some(build_s);
    r.compile_s = Some(compile_s);
    r
}

/// Least-squares slope of `ln(seconds)` against `ln(depth)` over `points`.
pub fn slope(points: &[(usize, f64)]) -> Option<f64> {
    let xy: Vec<(f64, f64)> = points
        .iter()
        .filter(|(_, s)| *s > 0.0)
        .map(|&(d, s)| ((d as f64).ln(), s.ln()))
        .collect();
    if xy.len() < 2 {
        return None;
    }
    let n = xy.len() as f64;
    let (mx, my) = (
        xy.iter().map(|p| p.0).sum::<f64>() / n,
        xy.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_recovers_the_exponent_of_a_power_law() {
        let pts: Vec<(usize, f64)> = [1000usize, 2000, 4000, 8000]
            .iter()
            .map(|&d| (d, 3e-9 * (d as f64).powi(2)))
            .collect();
        let s = slope(&pts).expect("slope");
        assert!((s - 2.0).abs() < 1e-9, "{s}");
        assert_eq!(slope(&pts[..1]), None);
    }

    #[test]
    fn a_small_chain_compiles_on_the_kernel_backend() {
        for grad in [false, true] {
            let r = measure(50, grad, Backend::Kernel);
            assert_eq!(r.status, Status::Ok, "{:?}", r.note);
            assert_eq!(r.workload, name(50, grad));
            assert!(r.compile_s.is_some_and(|s| s > 0.0));
        }
    }
}
