//! The attention importers on hand-built models: what the node suite does not pin down
//! (a fully masked row, the refusals of malformed attributes and shapes).

use kiln::Backend;
use kiln_ir::{Array, Data};
use kiln_onnx::proto::tensor_shape_proto::{Dimension, dimension};
use kiln_onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
    TypeProto, ValueInfoProto, type_proto,
};
use kiln_onnx::{ImportOptions, import};
use prost::Message;

const FLOAT: i32 = 1;
const BOOL: i32 = 9;

fn value(name: &str, elem_type: i32, shape: &[i64]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(2),
        ..Default::default()
    }
}

fn string_attr(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(v.as_bytes().to_vec()),
        r#type: Some(3),
        ..Default::default()
    }
}

/// A one-node model of `op` (default domain, opset 27).
fn model(
    op: &str,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    attribute: Vec<AttributeProto>,
) -> Vec<u8> {
    let node = NodeProto {
        input: inputs.iter().map(|v| v.name.clone().unwrap()).collect(),
        output: outputs.iter().map(|v| v.name.clone().unwrap()).collect(),
        op_type: Some(op.into()),
        attribute,
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(10),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(27),
        }],
        graph: Some(GraphProto {
            node: vec![node],
            name: Some("g".into()),
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn f32s(shape: &[usize], v: Vec<f32>) -> Array {
    Array::new(shape, Data::F32(v)).unwrap()
}

fn import_error(bytes: &[u8]) -> String {
    match import(bytes, &ImportOptions::default()) {
        Ok(_) => panic!("the model imported"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_fully_masked_row_is_nan_and_the_others_attend_only_where_the_mask_allows() {
    let bytes = model(
        "Attention",
        vec![
            value("Q", FLOAT, &[1, 1, 2, 2]),
            value("K", FLOAT, &[1, 1, 3, 2]),
            value("V", FLOAT, &[1, 1, 3, 2]),
            value("M", BOOL, &[2, 3]),
        ],
        vec![value("Y", FLOAT, &[1, 1, 2, 2])],
        vec![],
    );
    let q = f32s(&[1, 1, 2, 2], vec![1.0, 0.0, 0.5, -1.0]);
    let k = f32s(&[1, 1, 3, 2], vec![1.0, 2.0, 0.0, 1.0, -1.0, 0.5]);
    let v = f32s(&[1, 1, 3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // Row 0 sees nothing; row 1 sees keys 0 and 2.
    let m = Array::new(
        &[2, 3],
        Data::Bool(vec![false, false, false, true, false, true]),
    )
    .unwrap();
    let s = |qi: [f32; 2], ki: [f32; 2]| (qi[0] * ki[0] + qi[1] * ki[1]) / 2f32.sqrt();
    let (s0, s2) = (s([0.5, -1.0], [1.0, 2.0]), s([0.5, -1.0], [-1.0, 0.5]));
    let (e0, e2) = ((s0 - s0.max(s2)).exp(), (s2 - s0.max(s2)).exp());
    let (p0, p2) = (e0 / (e0 + e2), e2 / (e0 + e2));
    let want = [p0 + 5.0 * p2, 2.0 * p0 + 6.0 * p2];
    let m_imported = import(&bytes, &ImportOptions::default()).unwrap();
    let mut backends = vec![Backend::Interp, Backend::Cpu];
    if kiln_gpu::test_device().is_some() {
        backends.push(Backend::Gpu);
    }
    for backend in backends {
        let mut exe = m_imported.compile(backend).unwrap();
        let outs = exe
            .run(&[("Q", &q), ("K", &k), ("V", &v), ("M", &m)])
            .unwrap();
        let y = outs[0].1.to_f64_vec();
        assert!(y[0].is_nan() && y[1].is_nan(), "{backend}: {y:?}");
        for (g, w) in y[2..].iter().zip(want) {
            assert!(
                (g - f64::from(w)).abs() < 1e-5,
                "{backend}: {y:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn malformed_attention_attributes_and_shapes_are_refused() {
    let qkv3 = || {
        vec![
            value("Q", FLOAT, &[1, 2, 6]),
            value("K", FLOAT, &[1, 2, 6]),
            value("V", FLOAT, &[1, 2, 6]),
        ]
    };
    let y3 = || vec![value("Y", FLOAT, &[1, 2, 6])];
    let e = import_error(&model(
        "Attention",
        qkv3(),
        y3(),
        vec![int_attr("q_num_heads", 2)],
    ));
    assert!(e.contains("kv_num_heads is required"), "{e}");
    let heads = |q, kv| vec![int_attr("q_num_heads", q), int_attr("kv_num_heads", kv)];
    let e = import_error(&model("Attention", qkv3(), y3(), heads(0, 1)));
    assert!(e.contains("must be positive"), "{e}");
    let e = import_error(&model("Attention", qkv3(), y3(), heads(4, 4)));
    assert!(e.contains("does not divide into 4 heads"), "{e}");
    let uneven = vec![
        value("Q", FLOAT, &[1, 2, 6]),
        value("K", FLOAT, &[1, 2, 4]),
        value("V", FLOAT, &[1, 2, 4]),
    ];
    let e = import_error(&model("Attention", uneven, y3(), heads(3, 2)));
    assert!(e.contains("multiple of"), "{e}");
    let mut attrs = heads(2, 2);
    attrs.push(int_attr("qk_matmul_output_mode", 7));
    let e = import_error(&model("Attention", qkv3(), y3(), attrs));
    assert!(e.contains("qk_matmul_output_mode 7"), "{e}");
    let mut with_mask = qkv3();
    with_mask.push(value("M", FLOAT, &[2, 5]));
    let e = import_error(&model("Attention", with_mask, y3(), heads(2, 2)));
    assert!(e.contains("longer than the total length"), "{e}");
}

#[test]
fn linear_attention_refuses_long_sequences_and_missing_gates() {
    let qkv = |t| {
        vec![
            value("q", FLOAT, &[1, t, 4]),
            value("k", FLOAT, &[1, t, 4]),
            value("v", FLOAT, &[1, t, 4]),
        ]
    };
    let out = |t| {
        vec![
            value("o", FLOAT, &[1, t, 4]),
            value("s", FLOAT, &[1, 1, 4, 4]),
        ]
    };
    let attrs = |rule| {
        vec![
            int_attr("q_num_heads", 1),
            int_attr("kv_num_heads", 1),
            string_attr("update_rule", rule),
        ]
    };
    let e = import_error(&model(
        "LinearAttention",
        qkv(1 << 20),
        out(1 << 20),
        attrs("linear"),
    ));
    assert!(e.contains("more than the 4096"), "{e}");
    let e = import_error(&model("LinearAttention", qkv(2), out(2), attrs("gated")));
    assert!(e.contains("needs the decay input"), "{e}");
    let e = import_error(&model("LinearAttention", qkv(2), out(2), attrs("sideways")));
    assert!(e.contains("is not one of"), "{e}");
}
