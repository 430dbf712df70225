//! The import walk: initializers become parameters or constants, graph inputs become kiln
//! inputs with symbolic dims, each node goes through its importer in order, and nodes whose
//! inputs are all known are folded into constants (so shape arithmetic resolves).

use crate::error::{NodeRef, OnnxError};
use crate::limits::{MAX_DIM, MAX_FOLDED_ELEMENTS, MAX_MODEL_BYTES, MAX_NODES, MAX_RANK};
use crate::ops::{self, NodeCx};
use crate::proto::tensor_shape_proto::dimension;
use crate::proto::{ModelProto, NodeProto, ValueInfoProto, type_proto};
use crate::tensor::{dtype_of, to_array};
use crate::value::{Known, Value};
use crate::{ImportOptions, Imported};
use kiln::{Graph, Tensor};
use kiln_fs::one_line;
use kiln_ir::{DType, Dim, Shape};
use prost::Message;
use std::collections::HashMap;

/// Imports a serialized ModelProto.
pub fn import_bytes(bytes: &[u8], options: &ImportOptions) -> Result<Imported, OnnxError> {
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(OnnxError::Limit(format!(
            "the file has {} bytes, more than {MAX_MODEL_BYTES}",
            bytes.len()
        )));
    }
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    import_model(&model, options)
}

fn default_opset(model: &ModelProto) -> Result<i64, OnnxError> {
    model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .map_or(Ok(i64::MAX), |o| {
            o.version
                .ok_or_else(|| OnnxError::Model("the default-domain opset has no version".into()))
        })
}

/// A kiln symbol name for an ONNX `dim_param` (letters, digits and `_`).
pub fn symbol_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn input_type(
    vi: &ValueInfoProto,
    options: &ImportOptions,
) -> Result<(String, DType, Shape), OnnxError> {
    let name = vi.name.clone().unwrap_or_default();
    let err = |message: String| OnnxError::Value {
        what: "input",
        name: one_line(&name),
        message: one_line(&message),
    };
    let Some(type_proto::Value::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(err("only tensor inputs are supported".into()));
    };
    let dtype = dtype_of(tt.elem_type.unwrap_or(0)).map_err(|e| err(e.to_string()))?;
    let Some(shape) = &tt.shape else {
        return Err(err("has no shape; its rank must be known".into()));
    };
    if shape.dim.len() > MAX_RANK {
        return Err(err(format!("rank {} exceeds {MAX_RANK}", shape.dim.len())));
    }
    let mut dims = Vec::with_capacity(shape.dim.len());
    for (axis, d) in shape.dim.iter().enumerate() {
        let sym = match &d.value {
            Some(dimension::Value::DimValue(v)) => match u64::try_from(*v) {
                Ok(v) if v > MAX_DIM => {
                    return Err(err(format!(
                        "axis {axis} has size {v}, more than {MAX_DIM}"
                    )));
                }
                Ok(v) => {
                    dims.push(Dim::known(v));
                    continue;
                }
                Err(_) => return Err(err(format!("axis {axis} has negative size {v}"))),
            },
            Some(dimension::Value::DimParam(p)) if !p.is_empty() => symbol_name(p),
            _ => symbol_name(&format!("{name}_{axis}")),
        };
        dims.push(match options.dims.get(&sym) {
            Some(&v) => Dim::known(v),
            None => Dim::sym(&sym),
        });
    }
    Ok((name, dtype, Shape::new(dims)))
}

fn node_ref(node: &NodeProto, index: usize, opset: i64) -> NodeRef {
    let text = |s: &Option<String>| one_line(s.as_deref().unwrap_or_default());
    NodeRef {
        index,
        name: text(&node.name),
        op_type: text(&node.op_type),
        domain: text(&node.domain),
        opset,
    }
}

/// Imports a decoded ModelProto. A model that imports no default-domain opset can hold no
/// default-domain node; its opset reads as the newest.
pub fn import_model(model: &ModelProto, options: &ImportOptions) -> Result<Imported, OnnxError> {
    let opset = default_opset(model)?;
    let Some(graph) = &model.graph else {
        return Err(OnnxError::Model("the model has no graph".into()));
    };
    if graph.node.len() > MAX_NODES {
        return Err(OnnxError::Limit(format!(
            "{} nodes, more than {MAX_NODES}",
            graph.node.len()
        )));
    }
    let g = Graph::new();
    let mut values: HashMap<String, Value> = HashMap::new();
    let mut parameters = Vec::new();
    for init in &graph.initializer {
        let name = init.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(OnnxError::Model("an initializer has no name".into()));
        }
        let a = to_array(init)?;
        let v = if a.dtype().is_float() && !options.initializers_as_constants {
            parameters.push(name.clone());
            Value::tensor(g.param_init(&name, a))
        } else {
            Value::array(a)
        };
        values.insert(name, v);
    }
    let mut inputs = Vec::new();
    for vi in &graph.input {
        let name = vi.name.clone().unwrap_or_default();
        if values.contains_key(&name) {
            continue;
        }
        if let Some(a) = options.constant_inputs.get(&name) {
            values.insert(name, Value::array(a.clone()));
            continue;
        }
        let (name, dtype, shape) = input_type(vi, options)?;
        let t = g.input(&name, dtype, shape);
        inputs.push((name.clone(), t.clone()));
        values.insert(name, Value::tensor(t));
    }
    if let Some(d) = g.diagnostics().first() {
        return Err(OnnxError::Model(one_line(&d.message)));
    }
    for (index, node) in graph.node.iter().enumerate() {
        import_node(&g, node, index, opset, &mut values)?;
    }
    let mut outputs = Vec::new();
    for vi in &graph.output {
        let name = vi.name.clone().unwrap_or_default();
        let Some(v) = values.get_mut(&name) else {
            return Err(OnnxError::Value {
                what: "output",
                name: one_line(&name),
                message: "is not produced by any node, initializer or input".into(),
            });
        };
        outputs.push((name, v.tensor_in(&g)));
    }
    if let Some(d) = g.diagnostics().first() {
        return Err(OnnxError::Model(one_line(&d.message)));
    }
    Ok(Imported {
        graph: g,
        inputs,
        outputs,
        parameters,
        opset,
    })
}

fn import_node(
    g: &Graph,
    node: &NodeProto,
    index: usize,
    opset: i64,
    values: &mut HashMap<String, Value>,
) -> Result<(), OnnxError> {
    let at = || node_ref(node, index, opset);
    let fail = |message: String| OnnxError::Node {
        node: at(),
        message: one_line(&message),
    };
    let domain = node.domain.as_deref().unwrap_or("");
    let op_type = node.op_type.as_deref().unwrap_or("");
    let Some(importer) = ops::lookup_in(domain, op_type).map_err(fail)? else {
        return Err(OnnxError::UnsupportedOp {
            node: at(),
            supported: ops::supported_list(),
        });
    };
    let mut inputs = Vec::with_capacity(node.input.len());
    for name in &node.input {
        if name.is_empty() {
            inputs.push(None);
            continue;
        }
        match values.get(name) {
            Some(v) => inputs.push(Some(v.clone())),
            None => {
                return Err(fail(format!(
                    "input `{name}` is not produced by an earlier node"
                )));
            }
        }
    }
    let all_known = inputs
        .iter()
        .flatten()
        .all(|v| matches!(v.known(), Known::Array(_)));
    let before = g.diagnostics().len();
    let mut cx = NodeCx {
        g,
        node,
        opset,
        inputs,
    };
    let outs = importer(&mut cx).map_err(|e| fail(e.0))?;
    if let Some(d) = g.diagnostics().get(before) {
        return Err(fail(d.message.clone()));
    }
    for (k, name) in node.output.iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        let Some(v) = outs.get(k) else {
            return Err(fail(format!("output {k} (`{name}`) is not supported")));
        };
        if v.rank() > MAX_RANK {
            return Err(fail(format!(
                "output `{name}` has rank {}, more than {MAX_RANK}",
                v.rank()
            )));
        }
        if let Some(d) = v
            .shape
            .dims()
            .iter()
            .find(|d| d.is_overflow() || d.as_known().is_some_and(|k| k > MAX_DIM))
        {
            return Err(fail(format!(
                "output `{name}` would have an axis of size {d}, more than {MAX_DIM}"
            )));
        }
        let v = if all_known { fold(g, v) } else { v.clone() };
        values.insert(name.clone(), v);
    }
    Ok(())
}

/// A run-time value computed only from constants, evaluated now when it is small and not a
/// float (shape arithmetic, index vectors, masks); other values are returned unchanged.
fn fold(g: &Graph, v: &Value) -> Value {
    let Known::Nothing = v.known() else {
        return v.clone();
    };
    if v.dtype.is_float() {
        return v.clone();
    }
    let Some(shape) = v.shape.as_known() else {
        return v.clone();
    };
    let count = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    if count.is_none_or(|c| c > MAX_FOLDED_ELEMENTS) {
        return v.clone();
    }
    let mut v = v.clone();
    let t: Tensor = v.tensor_in(g);
    let Some(node) = t.node() else {
        return v;
    };
    let no_values = HashMap::new();
    match g.with_ir(|ir| kiln_interp::eval(ir, &[node], &no_values, &no_values)) {
        Ok(mut a) if a.len() == 1 => {
            let a = a.remove(0);
            Value::constant(g.constant(a.clone()), a)
        }
        _ => v,
    }
}
