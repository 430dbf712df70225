//! Shared helpers of the GPU tests: run a program on the GPU and on the kernel executor
//! (`kiln_kernel::execute`, the reference) and compare outputs within a tolerance.

#![allow(dead_code)]

use kiln_gpu::{GpuError, GpuOptions, GpuProgram, test_device};
use kiln_ir::{Array, Data};
use kiln_kernel::{BufferKind, ExecError, Program, VerifiedProgram, allocate, execute, verify};
use std::collections::HashMap;

/// Allowed difference `|got - want| <= abs + rel * |want|` for float elements; integers
/// and bools always compare exactly, NaN matches NaN and infinities must agree.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub abs: f64,
    pub rel: f64,
}

/// Bitwise-exact (up to NaN payloads).
pub const EXACT: Tol = Tol { abs: 0.0, rel: 0.0 };
/// Correctly rounded ops the GPU may compute within a few ULP (`/`, `sqrt`).
pub const ULPS: Tol = Tol {
    abs: 0.0,
    rel: 4e-7,
};
/// Transcendentals (GPUs do not round them correctly).
pub const TRANSCENDENTAL: Tol = Tol {
    abs: 1e-6,
    rel: 1e-5,
};
/// f32 sums in a different order than the executor's f64 accumulation.
pub const SUM: Tol = Tol {
    abs: 1e-5,
    rel: 1e-5,
};

pub fn bind(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

pub fn named(pairs: Vec<(&str, Array)>) -> HashMap<String, Array> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

pub fn f32s(v: &[f32]) -> Array {
    Array::from_f32(&[v.len()], v.to_vec()).expect("valid array")
}

pub fn i32s(v: &[i32]) -> Array {
    Array::from_i32(&[v.len()], v.to_vec()).expect("valid array")
}

pub fn u32s(v: &[u32]) -> Array {
    Array::from_u32(&[v.len()], v.to_vec()).expect("valid array")
}

pub fn bools(v: &[bool]) -> Array {
    Array::from_bool(&[v.len()], v.to_vec()).expect("valid array")
}

/// `program` verified (test programs must verify).
pub fn verified(program: &Program) -> VerifiedProgram {
    verify(program.clone()).unwrap_or_else(|e| panic!("the test program does not verify: {e}"))
}

/// Outputs and final states after running `program` on the kernel executor.
pub type Results = (HashMap<String, Array>, HashMap<String, Array>);

/// Runs the reference executor (states start from `states`, others zero).
pub fn reference(
    program: &Program,
    bindings: &HashMap<String, u64>,
    inputs: &HashMap<String, Array>,
    states: &HashMap<String, Array>,
) -> Result<Results, ExecError> {
    let mut bufs = allocate(program, bindings)?;
    for (i, b) in program.buffers.iter().enumerate() {
        match &b.kind {
            BufferKind::Input(n) => {
                if let Some(a) = inputs.get(n) {
                    bufs[i] = a.data().clone();
                }
            }
            BufferKind::State(n) => {
                if let Some(a) = states.get(n) {
                    bufs[i] = a.data().clone();
                }
            }
            _ => {}
        }
    }
    execute(&verified(program), bindings, &mut bufs)?;
    let (mut outs, mut sts) = (HashMap::new(), HashMap::new());
    for (i, b) in program.buffers.iter().enumerate() {
        let arr = |d: &Data| Array::new(&[d.len()], d.clone()).expect("valid array");
        match &b.kind {
            BufferKind::Output(n) => {
                outs.insert(n.clone(), arr(&bufs[i]));
            }
            BufferKind::State(n) => {
                sts.insert(n.clone(), arr(&bufs[i]));
            }
            _ => {}
        }
    }
    Ok((outs, sts))
}

/// Generates the program's WGSL for the portable target and for one with subgroups and
/// large GEMM tiles, and validates every shader with naga (no GPU needed).
pub fn validate_wgsl(program: &Program) {
    let full = kiln_wgsl::Target {
        subgroups: true,
        gemm: kiln_wgsl::GemmTile::Large,
    };
    for (target, caps) in [
        (
            kiln_wgsl::Target::portable(),
            naga::valid::Capabilities::default(),
        ),
        (full, naga::valid::Capabilities::SUBGROUP),
    ] {
        let wgsl = kiln_wgsl::compile_for(&verified(program), &target)
            .unwrap_or_else(|e| panic!("WGSL generation failed: {e}"));
        for k in &wgsl.kernels {
            let module = naga::front::wgsl::parse_str(&k.source)
                .unwrap_or_else(|e| panic!("{}: {}", k.kernel, e.emit_to_string(&k.source)));
            let mut validator =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
            if let Err(e) = validator.validate(&module) {
                panic!("{}: {}", k.kernel, e.emit_to_string(&k.source));
            }
        }
    }
}

/// Runs `program` on the GPU (`None` when the test is skipped for lack of an adapter).
/// The shaders are validated with naga first, with or without a GPU.
pub fn gpu(
    program: &Program,
    bindings: &HashMap<String, u64>,
    inputs: &HashMap<String, Array>,
    states: &HashMap<String, Array>,
    options: &GpuOptions,
) -> Option<Result<Results, GpuError>> {
    validate_wgsl(program);
    let device = test_device()?;
    let run = || -> Result<Results, GpuError> {
        let mut p = GpuProgram::compile_on(&device, &verified(program), options)?;
        for (n, a) in states {
            p.set_state(n, a)?;
        }
        let outs = p.run(bindings, inputs)?;
        let mut sts = HashMap::new();
        for b in &program.buffers {
            if let BufferKind::State(n) = &b.kind {
                sts.insert(n.clone(), p.state(n)?);
            }
        }
        Ok((outs, sts))
    };
    Some(run())
}

pub fn assert_close(what: &str, got: &Array, want: &Array, tol: Tol) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut bad = Vec::new();
    if want.dtype().is_float() {
        for (i, (g, w)) in got
            .to_f64_vec()
            .into_iter()
            .zip(want.to_f64_vec())
            .enumerate()
        {
            let ok = if w.is_nan() || g.is_nan() {
                w.is_nan() && g.is_nan()
            } else if w.is_infinite() || g.is_infinite() {
                g == w
            } else {
                (g - w).abs() <= tol.abs + tol.rel * w.abs()
            };
            if !ok {
                bad.push(format!("[{i}] got {g:e}, want {w:e}"));
            }
        }
    } else {
        for (i, (g, w)) in got
            .to_i64_vec()
            .into_iter()
            .zip(want.to_i64_vec())
            .enumerate()
        {
            if g != w {
                bad.push(format!("[{i}] got {g}, want {w}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {} elements differ: {}",
        bad.len(),
        want.len(),
        bad.iter().take(8).cloned().collect::<Vec<_>>().join("; ")
    );
}

/// Runs `program` on the GPU and the executor and compares every output and state, with
/// the tolerance `tol(name)`. Returns the GPU results (`None`: skipped).
pub fn check(
    program: &Program,
    bindings: &HashMap<String, u64>,
    inputs: &HashMap<String, Array>,
    tol: &dyn Fn(&str) -> Tol,
) -> Option<Results> {
    check_with(
        program,
        bindings,
        inputs,
        &HashMap::new(),
        &GpuOptions::default(),
        tol,
    )
}

pub fn check_with(
    program: &Program,
    bindings: &HashMap<String, u64>,
    inputs: &HashMap<String, Array>,
    states: &HashMap<String, Array>,
    options: &GpuOptions,
    tol: &dyn Fn(&str) -> Tol,
) -> Option<Results> {
    let got = gpu(program, bindings, inputs, states, options)?;
    let got = got.unwrap_or_else(|e| panic!("GPU run failed: {e}"));
    let want = reference(program, bindings, inputs, states).expect("executor runs");
    assert!(
        !want.0.is_empty() || !want.1.is_empty(),
        "program has results"
    );
    for (name, w) in want.0.iter().chain(want.1.iter()) {
        let g = got
            .0
            .get(name)
            .or_else(|| got.1.get(name))
            .unwrap_or_else(|| panic!("GPU lacks {name}"));
        assert_close(name, g, w, tol(name));
    }
    Some(got)
}
