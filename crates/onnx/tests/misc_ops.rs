//! The signal, sorting and indexing importers on small hand-built one-node models: values
//! the node suite does not pin down (ties, pivoting, implicit einsum outputs, folding) and
//! the bounds that refuse hostile attributes and inputs with an error instead of a huge
//! graph.

use kiln::Backend;
use kiln_ir::{Array, Data};
use kiln_onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto,
};
use kiln_onnx::tensor::from_array;
use kiln_onnx::{ImportOptions, import};
use prost::Message;

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(2),
        ..Default::default()
    }
}

fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(v.as_bytes().to_vec()),
        r#type: Some(3),
        ..Default::default()
    }
}

fn f32s(shape: &[usize], v: &[f32]) -> Array {
    Array::new(shape, Data::F32(v.to_vec())).expect("a valid array")
}

fn i64s(shape: &[usize], v: &[i64]) -> Array {
    Array::new(shape, Data::I64(v.to_vec())).expect("a valid array")
}

/// Imports a one-node model whose inputs are constants, runs it on `interp` and returns its
/// outputs, or the import error.
fn run(
    op: &str,
    inputs: &[Option<Array>],
    attrs: Vec<AttributeProto>,
    outputs: usize,
) -> Result<Vec<Array>, String> {
    let names: Vec<String> = inputs
        .iter()
        .enumerate()
        .map(|(i, a)| a.as_ref().map_or(String::new(), |_| format!("in{i}")))
        .collect();
    let initializer = inputs
        .iter()
        .zip(&names)
        .filter_map(|(a, n)| a.as_ref().map(|a| from_array(n, a)))
        .collect();
    let out_names: Vec<String> = (0..outputs).map(|k| format!("out{k}")).collect();
    let model = ModelProto {
        ir_version: Some(10),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(24),
        }],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: names,
                output: out_names.clone(),
                op_type: Some(op.into()),
                attribute: attrs,
                ..Default::default()
            }],
            initializer,
            output: out_names
                .iter()
                .map(|n| ValueInfoProto {
                    name: Some(n.clone()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = ImportOptions {
        initializers_as_constants: true,
        ..Default::default()
    };
    let m = import(&model.encode_to_vec(), &options).map_err(|e| e.to_string())?;
    let mut exe = m.compile(Backend::Interp).map_err(|e| e.to_string())?;
    let outs = exe.run(&[]).map_err(|e| e.to_string())?;
    Ok(outs.into_iter().map(|(_, a)| a).collect())
}

fn close(got: &Array, want: &[f64]) {
    let g = got.to_f64_vec();
    assert_eq!(g.len(), want.len(), "{g:?} vs {want:?}");
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{g:?} vs {want:?}");
    }
}

#[test]
fn topk_breaks_ties_by_the_lower_index_and_refuses_k_past_the_axis() {
    let x = f32s(&[5], &[3.0, 1.0, 3.0, 2.0, 3.0]);
    let out = run(
        "TopK",
        &[Some(x.clone()), Some(i64s(&[1], &[3]))],
        vec![],
        2,
    )
    .unwrap();
    close(&out[0], &[3.0, 3.0, 3.0]);
    assert_eq!(out[1].to_i64_vec(), [0, 2, 4]);
    let out = run(
        "TopK",
        &[Some(x.clone()), Some(i64s(&[1], &[2]))],
        vec![attr_i("largest", 0)],
        2,
    )
    .unwrap();
    assert_eq!(out[1].to_i64_vec(), [1, 3]);
    for k in [6, -1, i64::MAX] {
        let e = run(
            "TopK",
            &[Some(x.clone()), Some(i64s(&[1], &[k]))],
            vec![],
            2,
        )
        .unwrap_err();
        assert!(e.contains("outside 0..=5"), "{e}");
    }
}

#[test]
fn topk_ranks_or_picks_in_rounds_by_size_and_bounds_long_axes() {
    // k 20 of 25 takes the rank path, k 20 of 5000 the rounds path; both sort with ties
    // to the lower index.
    for n in [25usize, 5000] {
        let v: Vec<f32> = (0..n).map(|i| ((i * 7) % 10) as f32).collect();
        let x = f32s(&[1, n], &v);
        let out = run("TopK", &[Some(x), Some(i64s(&[1], &[20]))], vec![], 2).unwrap();
        let mut want: Vec<usize> = (0..n).collect();
        want.sort_by(|&p, &q| v[q].total_cmp(&v[p]).then(p.cmp(&q)));
        let want: Vec<i64> = want[..20].iter().map(|&i| i as i64).collect();
        assert_eq!(out[1].to_i64_vec(), want, "n {n}");
    }
    let x = f32s(&[5000], &vec![0.0; 5000]);
    let e = run("TopK", &[Some(x), Some(i64s(&[1], &[300]))], vec![], 2).unwrap_err();
    assert!(e.contains("up to 256"), "{e}");
}

#[test]
fn dft_matches_the_transform_and_refuses_lengths_past_the_folding_limit() {
    let x = f32s(&[1, 4, 1], &[1.0, 2.0, 3.0, 4.0]);
    let out = run("DFT", &[Some(x.clone())], vec![], 1).unwrap();
    close(&out[0], &[10.0, 0.0, -2.0, 2.0, -2.0, 0.0, -2.0, -2.0]);
    let spectrum = out[0].clone();
    let back = run("DFT", &[Some(spectrum)], vec![attr_i("inverse", 1)], 1).unwrap();
    close(&back[0], &[1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0, 0.0]);
    let e = run("DFT", &[Some(x), Some(i64s(&[], &[1 << 40]))], vec![], 1).unwrap_err();
    assert!(e.contains("dft_length"), "{e}");
}

#[test]
fn einsum_takes_traces_and_implicit_outputs() {
    let a = f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let trace = run(
        "Einsum",
        &[Some(a.clone())],
        vec![attr_s("equation", "ii")],
        1,
    )
    .unwrap();
    close(&trace[0], &[5.0]);
    let prod = run(
        "Einsum",
        &[Some(a.clone()), Some(a.clone())],
        vec![attr_s("equation", "ij,jk")],
        1,
    )
    .unwrap();
    close(&prod[0], &[7.0, 10.0, 15.0, 22.0]);
    let e = run("Einsum", &[Some(a)], vec![attr_s("equation", "i.j")], 1).unwrap_err();
    assert!(e.contains("not a letter"), "{e}");
}

#[test]
fn det_pivots_and_cumprod_scans_in_reverse() {
    let swap = f32s(&[2, 2], &[0.0, 1.0, 1.0, 0.0]);
    close(&run("Det", &[Some(swap)], vec![], 1).unwrap()[0], &[-1.0]);
    let singular = f32s(&[2, 2], &[1.0, 2.0, 2.0, 4.0]);
    close(
        &run("Det", &[Some(singular)], vec![], 1).unwrap()[0],
        &[0.0],
    );
    let x = f32s(&[4], &[1.0, 2.0, 3.0, 4.0]);
    let out = run(
        "CumProd",
        &[Some(x), Some(i64s(&[], &[0]))],
        vec![attr_i("exclusive", 1), attr_i("reverse", 1)],
        1,
    )
    .unwrap();
    close(&out[0], &[24.0, 12.0, 4.0, 1.0]);
}

#[test]
fn value_dependent_ops_fold_known_inputs() {
    let x = i64s(&[2, 2], &[1, 0, 0, 3]);
    let nz = run("NonZero", &[Some(x)], vec![], 1).unwrap();
    assert_eq!(nz[0].shape(), [2, 2]);
    assert_eq!(nz[0].to_i64_vec(), [0, 1, 0, 1]);
    let u = run(
        "Unique",
        &[Some(i64s(&[6], &[2, 1, 1, 3, 4, 3]))],
        vec![attr_i("sorted", 0)],
        4,
    )
    .unwrap();
    assert_eq!(u[0].to_i64_vec(), [2, 1, 3, 4]);
    assert_eq!(u[1].to_i64_vec(), [0, 1, 3, 4]);
    assert_eq!(u[2].to_i64_vec(), [0, 1, 1, 2, 3, 2]);
    assert_eq!(u[3].to_i64_vec(), [1, 2, 2, 1]);
}

#[test]
fn scatternd_reductions_combine_repeated_indices() {
    let data = f32s(&[4], &[1.0, 2.0, 3.0, 4.0]);
    let idx = i64s(&[3, 1], &[1, 1, -1]);
    let upd = f32s(&[3], &[5.0, 7.0, 0.5]);
    let want = [
        ("mul", [1.0, 70.0, 3.0, 2.0]),
        ("max", [1.0, 7.0, 3.0, 4.0]),
        ("min", [1.0, 2.0, 3.0, 0.5]),
    ];
    for (red, w) in want {
        let out = run(
            "ScatterND",
            &[Some(data.clone()), Some(idx.clone()), Some(upd.clone())],
            vec![attr_s("reduction", red)],
            1,
        )
        .unwrap();
        close(&out[0], &w);
    }
}
