//! Shared helpers of the `train_*` tests: the `fixtures/golden/train` manifest (written by
//! `fixtures/gen/gen_train.py`) and its tensors.

#![allow(dead_code)]

use kiln::{Array, DType, Graph, Tensor};
use kiln_tests::golden::{self, Tol};
use serde_json::Value;
use std::sync::OnceLock;

/// The parsed `fixtures/golden/train/manifest.json`.
pub fn manifest() -> &'static Value {
    static M: OnceLock<Value> = OnceLock::new();
    M.get_or_init(|| {
        let path = golden::golden_dir().join("train").join("manifest.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// The manifest entry at `path`.
pub fn entry(path: &[&str]) -> &'static Value {
    let mut v = manifest();
    for p in path {
        v = v
            .get(*p)
            .unwrap_or_else(|| panic!("no `{}` in the train manifest", path.join(".")));
    }
    v
}

/// Loads the tensor described by a manifest tensor entry.
pub fn tensor(v: &Value) -> Array {
    let file = v["file"]
        .as_str()
        .unwrap_or_else(|| panic!("not a tensor: {v}"));
    let dtype: DType = v["dtype"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("{file}: bad dtype"));
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no shape"))
        .iter()
        .map(|d| d.as_u64().unwrap_or_else(|| panic!("{file}: bad shape")) as usize)
        .collect();
    golden::TensorRef {
        file: file.to_string(),
        dtype,
        shape,
    }
    .load()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Every tensor of a `{name: tensor}` manifest object, sorted by name.
pub fn tensors(v: &Value) -> Vec<(String, Array)> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .iter()
        .map(|(k, t)| (k.clone(), tensor(t)))
        .collect()
}

/// Panics with the worst element if `got` is not within `tol` of `want`.
pub fn assert_within(what: &str, got: &Array, want: &Array, tol: Tol) {
    if let Err(m) = golden::compare(got, want, Some(tol)) {
        panic!("{what}: {m}");
    }
}

/// Every parameter of `g` as `(name, tensor)`, in declaration order.
pub fn graph_params(g: &Graph) -> Vec<(String, Tensor)> {
    let ir = g.ir();
    ir.parameters()
        .iter()
        .map(|(id, n)| {
            let node = ir.node(*id);
            (n.to_string(), g.param(n, node.dtype, node.shape.clone()))
        })
        .collect()
}

/// An f32 array from the values.
pub fn f32s(shape: &[usize], v: Vec<f32>) -> Array {
    Array::from_f32(shape, v).unwrap_or_else(|e| panic!("{e}"))
}
