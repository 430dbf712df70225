//! LSTM, GRU, RNN and Scan nodes that kiln cannot unroll, or whose attributes and inputs
//! are malformed, are refused while importing with a one-line error naming the node; one
//! that can be unrolled computes the ONNX equations.

use kiln::{Array, Backend};
use kiln_onnx::proto::tensor_shape_proto::{Dimension, dimension};
use kiln_onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
    TypeProto, ValueInfoProto, type_proto,
};
use kiln_onnx::{ImportOptions, import};
use prost::Message;

/// A dim: a size, or a `dim_param` name.
enum D {
    N(i64),
    S(&'static str),
}

fn value(name: &str, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                D::N(n) => dimension::Value::DimValue(*n),
                D::S(s) => dimension::Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
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

fn str_attr(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(v.as_bytes().to_vec()),
        r#type: Some(3),
        ..Default::default()
    }
}

fn strs_attr(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        r#type: Some(8),
        ..Default::default()
    }
}

/// A one-node model: `op(X, W, R)` with `X` of `x` dims, `gates * hidden` rows in `W` and
/// `R`, and outputs `Y`, `Y_h`.
fn recurrent(op: &str, x: &[D], gates: i64, hidden: i64, attrs: Vec<AttributeProto>) -> Vec<u8> {
    let input = match x.last() {
        Some(D::N(n)) => *n,
        _ => 1,
    };
    let node = NodeProto {
        input: vec!["X".into(), "W".into(), "R".into()],
        output: vec!["Y".into(), "Y_h".into()],
        name: Some("the_rnn".into()),
        op_type: Some(op.into()),
        attribute: attrs,
        ..Default::default()
    };
    let graph = GraphProto {
        node: vec![node],
        input: vec![
            value("X", x),
            value("W", &[D::N(1), D::N(gates * hidden), D::N(input)]),
            value("R", &[D::N(1), D::N(gates * hidden), D::N(hidden)]),
        ],
        output: vec![value("Y", &[]), value("Y_h", &[])],
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(14),
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn refused(bytes: &[u8]) -> String {
    match import(bytes, &ImportOptions::default()) {
        Ok(_) => panic!("the model imports"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            msg
        }
    }
}

#[test]
fn a_symbolic_sequence_length_is_refused_naming_the_node_and_control_flow() {
    let msg = refused(&recurrent(
        "LSTM",
        &[D::S("seq"), D::N(2), D::N(3)],
        4,
        5,
        vec![],
    ));
    assert!(msg.contains("the_rnn") && msg.contains("LSTM"), "{msg}");
    assert!(
        msg.contains("symbolic") && msg.contains("control-flow"),
        "{msg}"
    );
    // Fixing the axis while importing unrolls it.
    let options = ImportOptions {
        dims: [("seq".to_string(), 3)].into(),
        ..ImportOptions::default()
    };
    let bytes = recurrent("LSTM", &[D::S("seq"), D::N(2), D::N(3)], 4, 5, vec![]);
    let m = import(&bytes, &options).expect("a fixed sequence length imports");
    assert_eq!(m.outputs[0].1.shape().to_string(), "[3, 1, 2, 5]");
}

#[test]
fn a_hostile_sequence_length_is_bounded() {
    let msg = refused(&recurrent(
        "GRU",
        &[D::N(1 << 40), D::N(1), D::N(1)],
        3,
        1,
        vec![],
    ));
    assert!(msg.contains("exceed"), "{msg}");
    let msg = refused(&recurrent(
        "RNN",
        &[D::N(3000), D::N(1), D::N(1)],
        1,
        1,
        vec![str_attr("direction", "bidirectional")],
    ));
    assert!(msg.contains("exceed"), "{msg}");
}

#[test]
fn malformed_attributes_are_refused() {
    let x = [D::N(2), D::N(1), D::N(3)];
    let cases: Vec<(Vec<AttributeProto>, &str)> = vec![
        (vec![int_attr("hidden_size", 1 << 40)], "hidden_size"),
        (vec![int_attr("layout", 7)], "layout"),
        (vec![str_attr("direction", "sideways")], "direction"),
        (
            vec![strs_attr("activations", &["Sigmoid", "Bogus", "Tanh"])],
            "Bogus",
        ),
        (vec![strs_attr("activations", &["Sigmoid"])], "activations"),
        (
            vec![AttributeProto {
                name: Some("clip".into()),
                f: Some(-1.0),
                r#type: Some(1),
                ..Default::default()
            }],
            "clip",
        ),
    ];
    for (attrs, want) in cases {
        let msg = refused(&recurrent("LSTM", &x, 4, 5, attrs));
        assert!(msg.contains(want), "{want}: {msg}");
    }
    // W whose rows are not gates * hidden.
    let msg = refused(&recurrent("LSTM", &x, 3, 5, vec![]));
    assert!(msg.contains("W has shape"), "{msg}");
}

#[test]
fn an_rnn_step_computes_tanh_of_the_projections() {
    // One step, hidden 1, input 1: y = tanh(x * w + h0 * r) with h0 = 0.
    let bytes = recurrent("RNN", &[D::N(2), D::N(1), D::N(1)], 1, 1, vec![]);
    let m = import(&bytes, &ImportOptions::default()).expect("imports");
    let mut exe = m.compile(Backend::Interp).expect("compiles");
    let x = Array::from_f64_cast(kiln::DType::F32, &[2, 1, 1], &[0.5, -1.0]);
    let w = Array::from_f64_cast(kiln::DType::F32, &[1, 1, 1], &[2.0]);
    let r = Array::from_f64_cast(kiln::DType::F32, &[1, 1, 1], &[0.5]);
    let out = exe.run(&[("X", &x), ("W", &w), ("R", &r)]).expect("runs");
    let h1 = (0.5f64 * 2.0).tanh();
    let h2 = (-2.0f64 + h1 * 0.5).tanh();
    let y = out[0].1.to_f64_vec();
    assert!(
        (y[0] - h1).abs() < 1e-6 && (y[1] - h2).abs() < 1e-6,
        "{y:?}"
    );
    assert!((out[1].1.to_f64_vec()[0] - h2).abs() < 1e-6);
}
