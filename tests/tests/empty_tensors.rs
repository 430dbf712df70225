//! Tensors with a zero-sized axis on every backend: results match the interpreter, and an
//! argmax/argmin over an empty axis fails with the interpreter's error everywhere.

use kiln::{Array, Backend, DType, Dim, Graph, Tensor};
use kiln_tests::golden::assert_close;

fn run(
    backend: Backend,
    outs: &[(&str, &Tensor)],
    feeds: &[(&str, &Array)],
) -> Result<Vec<Array>, String> {
    let mut exe = kiln::compile(outs, backend).map_err(|e| e.to_string())?;
    let got = exe.run(feeds).map_err(|e| e.to_string())?;
    Ok(got.into_iter().map(|(_, a)| a).collect())
}

/// The GPU backend rejects `i64` programs (argmax's result) at compile time, by design.
fn gpu_rejects_i64(backend: Backend, e: &str) -> bool {
    backend == Backend::Gpu && e.contains("which WGSL cannot express")
}

#[test]
fn argmax_over_an_empty_axis_fails_alike_on_every_backend() {
    for op in ["argmax", "argmin"] {
        let g = Graph::new();
        let arg = |t: &Tensor, axis: i64| {
            if op == "argmax" {
                t.argmax(axis, false)
            } else {
                t.argmin(axis, false)
            }
        };
        let n = g.sym("N");
        // A known empty axis with a known and with a symbolic (run-time) result size.
        let fixed = g.input("x", DType::F32, [0u64, 3]);
        let symbolic = g.input("z", DType::F32, [Dim::known(0), n]);
        let tail = format!("{op}: axis 0 is empty, so there is no index to return");
        let xv = Array::from_f32(&[0, 3], vec![]).unwrap();
        for (name, x) in [("x", &fixed), ("z", &symbolic)] {
            let y = arg(x, 0);
            let feeds = [(name, &xv)];
            let eval = kiln::eval(&[&y], &feeds)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(eval.ends_with(&tail), "{eval}");
            let want = run(Backend::Interp, &[("y", &y)], &feeds).unwrap_err();
            assert!(want.ends_with(&tail), "{want}");
            for backend in kiln_tests::backends() {
                match run(backend, &[("y", &y)], &feeds) {
                    Err(e) if gpu_rejects_i64(backend, &e) => {}
                    Err(e) => assert_eq!(e, want, "{op} of {name} on {backend}"),
                    Ok(v) => panic!(
                        "{op} of {name} on {backend}: expected `{want}`, got {:?}",
                        v[0]
                    ),
                }
            }
        }
        // An empty result needs no index, so an empty axis is no error there.
        let none = g.input("e", DType::F32, [0u64, 0]);
        let ev = Array::from_f32(&[0, 0], vec![]).unwrap();
        for (y, feeds) in [
            (arg(&none, 0), [("e", &ev)]),
            (arg(&symbolic, 1), [("z", &xv)]),
        ] {
            for backend in kiln_tests::backends() {
                match run(backend, &[("y", &y)], &feeds) {
                    Err(e) if gpu_rejects_i64(backend, &e) => {}
                    Err(e) => panic!("{op} of an empty result on {backend}: {e}"),
                    Ok(v) => assert_eq!(v[0].len(), 0, "{op} on {backend}"),
                }
            }
        }
    }
}

/// Elementwise ops, reductions over and along the empty axis (sums of nothing are zeros),
/// softmax, movement ops and matmuls with an empty `m`, `k` or `n`, on shapes with a zero
/// in every position, on every backend against the interpreter.
#[test]
fn empty_shapes_match_the_interpreter_on_every_backend() {
    let shapes: [&[usize]; 6] = [
        &[0, 4],
        &[4, 0],
        &[0, 0],
        &[0, 2, 3],
        &[2, 0, 3],
        &[2, 3, 0],
    ];
    for shape in shapes {
        let g = Graph::new();
        let x = g.input("x", DType::F32, shape);
        let last = *shape.last().unwrap_or(&1);
        let w = g.input("w", DType::F32, [last, 3]);
        let rank = shape.len() as i64;
        let rows = x.reshape([shape[..shape.len() - 1].iter().product::<usize>(), last]);
        let mut outs: Vec<(String, Tensor)> = vec![
            ("gelu".into(), (-&x.relu()).gelu() * 2.0),
            ("square_sum_all".into(), x.square().sum_all()),
            ("softmax".into(), x.softmax(-1)),
            ("log_softmax0".into(), x.log_softmax(0)),
            ("transpose".into(), x.transpose(0, rank - 1)),
            ("pad".into(), x.pad(&vec![(1, 1); shape.len()], 0.5)),
            ("matmul".into(), rows.matmul(&w)),
            ("matmul_t".into(), w.t().matmul(&rows.t())),
        ];
        for axis in 0..rank {
            outs.push((format!("sum{axis}"), x.sum(axis, false)));
            outs.push((format!("mean{axis}"), x.mean(axis, true)));
        }
        let named: Vec<(&str, &Tensor)> = outs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let xv = Array::zeros(DType::F32, shape).unwrap();
        let wv = Array::from_f32(&[last, 3], (0..last * 3).map(|v| v as f32).collect()).unwrap();
        let feeds = [("x", &xv), ("w", &wv)];
        let all: Vec<&Tensor> = outs.iter().map(|(_, t)| t).collect();
        let want = kiln::eval(&all, &feeds).unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        for backend in kiln_tests::backends() {
            let got = run(backend, &named, &feeds)
                .unwrap_or_else(|e| panic!("{shape:?} on {backend}: {e}"));
            for ((name, _), (g, w)) in outs.iter().zip(got.iter().zip(&want)) {
                assert_eq!(g.shape(), w.shape(), "{name} of {shape:?} on {backend}");
                assert_close(&format!("{name} of {shape:?} on {backend}"), g, w);
            }
        }
    }
}
