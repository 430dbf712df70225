//! The image and spatial op importers (Resize, ConvTranspose, pooling, GridSample) on the
//! node suite's models with their inputs or attributes changed: hostile sizes are refused
//! with an error, and hand-checked values come out of the `interp` backend.

use kiln::Backend;
use kiln_ir::{Array, Data};
use kiln_onnx::proto::{ModelProto, tensor_shape_proto::dimension, type_proto};
use kiln_onnx::{ImportOptions, OnnxError, import};
use prost::Message;
use std::path::PathBuf;

fn model(case: &str) -> Vec<u8> {
    let dir = match std::env::var_os("KILN_ONNX_NODE_TESTS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/onnx-node-tests/node"),
    };
    let path = dir.join(case).join("model.onnx");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} is not readable ({e}); run crates/onnx/fetch-node-tests.sh",
            path.display()
        )
    })
}

/// `case`'s model with its first node's integer-list attribute `name` set to `ints`.
fn with_ints(case: &str, name: &str, ints: &[i64]) -> Vec<u8> {
    let mut m = ModelProto::decode(model(case).as_slice()).expect("the model decodes");
    let node = &mut m.graph.as_mut().expect("a graph").node[0];
    let attr = node
        .attribute
        .iter_mut()
        .find(|a| a.name.as_deref() == Some(name))
        .expect("the attribute is present");
    attr.ints = ints.to_vec();
    m.encode_to_vec()
}

fn f32s(shape: &[usize], v: &[f32]) -> Array {
    Array::new(shape, Data::F32(v.to_vec())).expect("a valid array")
}

fn constants(pairs: &[(&str, Array)]) -> ImportOptions {
    let mut o = ImportOptions::default();
    for (name, a) in pairs {
        o.constant_inputs.insert((*name).to_string(), a.clone());
    }
    o
}

fn import_error(bytes: &[u8], options: &ImportOptions) -> String {
    match import(bytes, options) {
        Ok(_) => panic!("the import succeeded"),
        Err(OnnxError::Node { message, .. }) => message,
        Err(e) => panic!("not a node error: {e}"),
    }
}

#[test]
fn resize_refuses_huge_zero_and_non_finite_scales() {
    let bytes = model("test_resize_upsample_scales_nearest");
    for bad in [1e9, 0.0, -2.0, f32::NAN, f32::INFINITY] {
        let o = constants(&[("scales", f32s(&[4], &[1.0, 1.0, bad, 2.0]))]);
        let e = import_error(&bytes, &o);
        assert!(e.contains("scale") || e.contains("folds"), "{bad}: {e}");
    }
}

#[test]
fn resize_refuses_sizes_past_the_limits() {
    let bytes = model("test_resize_upsample_sizes_nearest");
    let sizes = Array::new(&[4], Data::I64(vec![1, 1, 1 << 30, 2])).expect("sizes");
    let e = import_error(&bytes, &constants(&[("sizes", sizes)]));
    assert!(e.contains("folds"), "{e}");
}

#[test]
fn resize_nearest_repeats_elements_and_linear_interpolates() {
    let x = f32s(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let run = |case: &str, scales: &[f32]| -> Vec<f64> {
        let o = constants(&[("scales", f32s(&[4], scales))]);
        let m = import(&model(case), &o).expect("imports");
        let mut exe = m.compile(Backend::Interp).expect("compiles");
        let out = exe.run(&[("X", &x)]).expect("runs");
        out[0].1.to_f64_vec()
    };
    assert_eq!(
        run("test_resize_upsample_scales_nearest", &[1.0, 1.0, 1.0, 2.0]),
        [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]
    );
    // half_pixel linear, 2 -> 4 along the last axis: positions -0.25, 0.25, 0.75, 1.25.
    assert_eq!(
        run("test_resize_upsample_scales_linear", &[1.0, 1.0, 1.0, 2.0]),
        [1.0, 1.25, 1.75, 2.0, 3.0, 3.25, 3.75, 4.0]
    );
}

#[test]
fn resize_reads_scales_from_a_float_initializer() {
    let mut m = ModelProto::decode(model("test_resize_upsample_scales_nearest").as_slice())
        .expect("the model decodes");
    let scales = kiln_onnx::proto::TensorProto {
        name: Some("scales".into()),
        dims: vec![4],
        data_type: Some(1),
        float_data: vec![1.0, 1.0, 1.0, 3.0],
        ..Default::default()
    };
    m.graph.as_mut().expect("a graph").initializer.push(scales);
    let imported = import(&m.encode_to_vec(), &ImportOptions::default()).expect("imports");
    let mut exe = imported.compile(Backend::Interp).expect("compiles");
    let x = f32s(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let out = exe.run(&[("X", &x)]).expect("runs");
    let want = [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4].map(f64::from);
    assert_eq!(out[0].1.to_f64_vec(), want);
}

#[test]
fn resize_leaves_a_symbolic_batch_axis_alone() {
    let mut m = ModelProto::decode(model("test_resize_upsample_scales_nearest").as_slice())
        .expect("the model decodes");
    let input = &mut m.graph.as_mut().expect("a graph").input[0];
    let Some(type_proto::Value::TensorType(t)) =
        input.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        panic!("X is a tensor");
    };
    t.shape.as_mut().expect("a shape").dim[0].value =
        Some(dimension::Value::DimParam("batch".into()));
    let o = constants(&[("scales", f32s(&[4], &[1.0, 1.0, 1.0, 2.0]))]);
    let imported = import(&m.encode_to_vec(), &o).expect("imports");
    let mut exe = imported.compile(Backend::Interp).expect("compiles");
    let x = f32s(&[2, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let out = exe.run(&[("X", &x)]).expect("runs");
    assert_eq!(out[0].1.shape(), [2, 1, 2, 4]);
    let want = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8].map(f64::from);
    assert_eq!(out[0].1.to_f64_vec(), want);
}

#[test]
fn nearest_integer_upsampling_works_on_symbolic_sizes() {
    let mut m = ModelProto::decode(model("test_resize_upsample_scales_nearest").as_slice())
        .expect("the model decodes");
    let input = &mut m.graph.as_mut().expect("a graph").input[0];
    let Some(type_proto::Value::TensorType(t)) =
        input.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        panic!("X is a tensor");
    };
    for (axis, name) in [(2, "height"), (3, "width")] {
        t.shape.as_mut().expect("a shape").dim[axis].value =
            Some(dimension::Value::DimParam(name.into()));
    }
    let bytes = m.encode_to_vec();
    let o = constants(&[("scales", f32s(&[4], &[1.0, 1.0, 2.0, 3.0]))]);
    let imported = import(&bytes, &o).expect("imports");
    let mut exe = imported.compile(Backend::Interp).expect("compiles");
    let x = f32s(&[1, 1, 1, 2], &[1.0, 2.0]);
    let out = exe.run(&[("X", &x)]).expect("runs");
    assert_eq!(out[0].1.shape(), [1, 1, 2, 6]);
    let want = [1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2].map(f64::from);
    assert_eq!(out[0].1.to_f64_vec(), want);
    // A scale that does not repeat elements needs the sizes.
    let o = constants(&[("scales", f32s(&[4], &[1.0, 1.0, 1.5, 1.0]))]);
    let e = import_error(&bytes, &o);
    assert!(e.contains("symbolic"), "{e}");
}

/// `case`'s model with the spatial axes of its first input made symbolic.
fn with_symbolic_spatial_axes(case: &str) -> Vec<u8> {
    let mut m = ModelProto::decode(model(case).as_slice()).expect("the model decodes");
    let input = &mut m.graph.as_mut().expect("a graph").input[0];
    let Some(type_proto::Value::TensorType(t)) =
        input.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        panic!("the input is a tensor");
    };
    let dims = &mut t.shape.as_mut().expect("a shape").dim;
    for (axis, d) in dims.iter_mut().enumerate().skip(2) {
        d.value = Some(dimension::Value::DimParam(format!("s{axis}")));
    }
    m.encode_to_vec()
}

#[test]
fn conv_transpose_refuses_symbolic_spatial_sizes() {
    // kiln's conv2d windows known sizes only; the import says so instead of panicking.
    for case in ["test_convtranspose_pad", "test_convtranspose_output_shape"] {
        let bytes = with_symbolic_spatial_axes(case);
        let e = import_error(&bytes, &ImportOptions::default());
        assert!(e.contains("known"), "{case}: {e}");
    }
}

#[test]
fn conv_transpose_refuses_huge_strides_and_output_shapes() {
    let e = import_error(
        &with_ints("test_convtranspose_pads", "strides", &[1 << 40, 1 << 40]),
        &ImportOptions::default(),
    );
    assert!(e.contains("too large") || e.contains("out of range"), "{e}");
    let e = import_error(
        &with_ints(
            "test_convtranspose_output_shape",
            "output_shape",
            &[1 << 50, 8],
        ),
        &ImportOptions::default(),
    );
    assert!(e.contains("output_shape"), "{e}");
}

#[test]
fn pooling_refuses_windows_with_too_many_taps() {
    let bytes = with_ints(
        "test_maxpool_3d_dilations",
        "kernel_shape",
        &[1, 1000, 1000],
    );
    let e = import_error(&bytes, &ImportOptions::default());
    assert!(e.contains("taps"), "{e}");
}

/// Every image op case of the node suite with each attribute of its node set to hostile
/// values (and every input fixed to the test's data): the import and `interp` compile end
/// in an error or a graph, quickly, never a panic.
#[test]
fn hostile_attributes_give_errors_not_panics() {
    let dir = match std::env::var_os("KILN_ONNX_NODE_TESTS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/onnx-node-tests/node"),
    };
    let prefixes = [
        "test_resize",
        "test_upsample",
        "test_convtranspose",
        "test_gridsample",
        "test_affine_grid_2d",
        "test_affine_grid_3d",
        "test_maxpool",
        "test_averagepool",
        "test_lppool",
        "test_maxunpool",
        "test_col2im",
        "test_center_crop_pad",
        "test_roialign",
        "test_basic_deform_conv",
        "test_deform_conv",
    ];
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .expect("the node suite is present")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p)) && !n.ends_with("_expanded"))
        .collect();
    cases.sort();
    assert!(cases.len() > 100, "only {} cases", cases.len());
    const INTS: [i64; 8] = [0, -1, 2, 7, 1 << 20, 1 << 40, i64::MAX, i64::MIN];
    const FLOATS: [f32; 5] = [0.0, -1.0, 1e30, f32::NAN, f32::INFINITY];
    let mut checked = 0;
    for case in &cases {
        let bytes = model(case);
        let base = ModelProto::decode(bytes.as_slice()).expect("decodes");
        let graph = base.graph.as_ref().expect("a graph");
        let mut o = ImportOptions::default();
        for (i, input) in graph.input.iter().enumerate() {
            let p = dir.join(case).join(format!("test_data_set_0/input_{i}.pb"));
            let Ok(data) = std::fs::read(&p) else {
                continue;
            };
            if let (Some(name), Ok(a)) = (&input.name, kiln_onnx::tensor::read_tensor_pb(&data)) {
                o.constant_inputs.insert(name.clone(), a);
            }
        }
        for (k, attr) in graph.node[0].attribute.iter().enumerate() {
            let n_ints = attr.ints.len();
            let mut variants: Vec<ModelProto> = Vec::new();
            for v in INTS {
                let mut m = base.clone();
                let a = &mut m.graph.as_mut().expect("a graph").node[0].attribute[k];
                if a.i.is_some() {
                    a.i = Some(v);
                } else if n_ints > 0 {
                    a.ints = vec![v; n_ints];
                    variants.push(m.clone());
                    let a = &mut m.graph.as_mut().expect("a graph").node[0].attribute[k];
                    a.ints = vec![v; n_ints + 1];
                } else {
                    continue;
                }
                variants.push(m);
            }
            for v in FLOATS {
                let mut m = base.clone();
                let a = &mut m.graph.as_mut().expect("a graph").node[0].attribute[k];
                if a.f.is_none() {
                    continue;
                }
                a.f = Some(v);
                variants.push(m);
            }
            for m in variants {
                let start = std::time::Instant::now();
                if let Ok(imported) = import(&m.encode_to_vec(), &o) {
                    let _ = imported.compile(Backend::Interp);
                }
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(5),
                    "{case}: attribute {:?} took {:?}",
                    attr.name,
                    start.elapsed()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "only {checked} variants");
}
