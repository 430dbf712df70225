//! The kernel plans the fusion pass produces for its golden filetests
//! (`fixtures/filetests/fuse/*.kir`, the `; expect:` blocks) run on the GPU and on the
//! kernel executor with deterministic inputs and must agree (`i64` labels, gather indices,
//! argmax results and concat's `index<i64>` included); plans WGSL cannot express (f64) must
//! be rejected with `UnsupportedDType`.

use crate::common;

use common::{Tol, check_with};
use kiln_gpu::GpuOptions;
use kiln_ir::{Array, DType};
use kiln_kernel::{BufferKind, Program, parse};
use kiln_wgsl::WgslError;
use std::collections::HashMap;
use std::path::Path;

/// The programs of every `; expect:` block (skipping expected errors).
fn fused_programs() -> Vec<(String, Program)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/filetests/fuse");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for (k, case) in text.split("; ----").enumerate() {
            let Some((_, expect)) = case.split_once("; expect:") else {
                continue;
            };
            let body: Vec<&str> = expect
                .lines()
                .filter_map(|l| l.strip_prefix("; ").or_else(|| l.strip_prefix(';')))
                .take_while(|l| !l.starts_with("report:") && !l.starts_with("error:"))
                .collect();
            if let Ok(p) = parse(&body.join("\n")) {
                out.push((format!("{name}#{k}"), p));
            }
        }
    }
    out
}

/// Deterministic input data of `len` elements.
fn data(dtype: DType, len: usize, seed: usize) -> Array {
    let v: Vec<f64> = (0..len)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f64) / 250.0 - 2.0)
        .collect();
    match dtype {
        DType::Bool => Array::from_f64_cast(
            dtype,
            &[len],
            &v.iter()
                .map(|x| f64::from(u8::from(*x > 0.0)))
                .collect::<Vec<_>>(),
        ),
        DType::I32 | DType::U32 | DType::I64 => Array::from_f64_cast(
            dtype,
            &[len],
            &v.iter().map(|x| (x + 2.0).floor()).collect::<Vec<_>>(),
        ),
        _ => Array::from_f64_cast(dtype, &[len], &v),
    }
}

#[test]
fn fused_plans_agree_with_the_executor() {
    let programs = fused_programs();
    assert!(programs.len() >= 5, "found {} fused plans", programs.len());
    let mut ran = 0;
    let mut ran_i64 = 0;
    for (name, p) in &programs {
        if let Err(e) = kiln_wgsl::compile(&common::verified(p)) {
            assert!(
                matches!(
                    e,
                    WgslError::UnsupportedDType {
                        dtype: DType::F64,
                        ..
                    }
                ),
                "{name}: {e}"
            );
            println!("{name}: rejected: {e}");
            continue;
        }
        let bindings: HashMap<String, u64> = p
            .symbols
            .iter()
            .map(|s| (s.name.clone(), s.min.max(3)))
            .collect();
        let mut inputs = HashMap::new();
        let mut states = HashMap::new();
        for (i, b) in p.buffers.iter().enumerate() {
            let len = usize::try_from(b.size.eval(&bindings).expect("size evaluates"))
                .expect("size fits");
            match &b.kind {
                BufferKind::Input(n) => {
                    inputs.insert(n.clone(), data(b.dtype, len, i));
                }
                BufferKind::State(n) => {
                    states.insert(n.clone(), data(b.dtype, len, i));
                }
                _ => {}
            }
        }
        // Plans chain several f32 reductions and contractions: a looser, uniform tolerance.
        let tol = |_: &str| Tol {
            abs: 1e-4,
            rel: 1e-4,
        };
        if check_with(p, &bindings, &inputs, &states, &GpuOptions::default(), &tol).is_some() {
            ran += 1;
            if p.buffers.iter().any(|b| b.dtype == DType::I64) {
                ran_i64 += 1;
            }
        }
    }
    println!("{ran} of {} fused plans ran on the GPU", programs.len());
    if ran > 0 {
        // simple_nn_train_step's labels and movement's gather, scatter and argmax.
        assert!(ran_i64 >= 3, "only {ran_i64} plans with i64 buffers ran");
    }
}
