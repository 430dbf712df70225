//! The import walk: initializers become parameters or constants, graph inputs become kiln
//! inputs with symbolic dims, each node goes through its importer in order, and nodes whose
//! inputs are all known are folded into constants (so shape arithmetic resolves).

use crate::error::{NodeRef, OnnxError};
use crate::limits::{MAX_DIM, MAX_FOLDED_ELEMENTS, MAX_MODEL_BYTES, MAX_NODES, MAX_RANK};
use crate::narrow::with_type;
use crate::ops::{self, NodeCx};
use crate::proto::tensor_shape_proto::dimension;
use crate::proto::{GraphProto, ModelProto, NodeProto, ValueInfoProto, type_proto};
use crate::tensor::{ElemType, Narrow, elem_type, to_typed_array};
use crate::value::{Known, Value};
use crate::{ImportOptions, Imported};
use kiln::{Graph, Tensor};
use kiln_fs::one_line;
use kiln_ir::{Dim, Shape};
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
) -> Result<(String, ElemType, Shape), OnnxError> {
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
    let dtype = elem_type(tt.elem_type.unwrap_or(0)).map_err(|e| err(e.to_string()))?;
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
                // -1 is how some exporters (paddle2onnx) write an unknown size.
                Err(_) if *v == -1 => symbol_name(&format!("{name}_{axis}")),
                Err(_) => return Err(err(format!("axis {axis} has negative size {v}"))),
            },
            // A name without letters or digits (`?`) marks an unknown size, not a shared one.
            Some(dimension::Value::DimParam(p)) if p.chars().any(|c| c.is_ascii_alphanumeric()) => {
                symbol_name(p)
            }
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
        let (a, narrow) = to_typed_array(init)?;
        let v = if a.dtype().is_float() && !options.initializers_as_constants {
            parameters.push(name.clone());
            Value::tensor(g.param_init(&name, a))
        } else {
            Value::array(a)
        };
        values.insert(name, v.with_narrow(narrow));
    }
    let mut inputs = Vec::new();
    for vi in &graph.input {
        let name = vi.name.clone().unwrap_or_default();
        if values.contains_key(&name) {
            continue;
        }
        if let Some(a) = options.constant_inputs.get(&name) {
            let narrow = input_type(vi, options)
                .ok()
                .and_then(|(_, ty, _)| ty.narrow);
            values.insert(name, Value::array(a.clone()).with_narrow(narrow));
            continue;
        }
        let (name, ty, shape) = input_type(vi, options)?;
        let t = g.input(&name, ty.dtype, shape);
        inputs.push((name.clone(), t.clone()));
        values.insert(name, Value::tensor(t).with_narrow(ty.narrow));
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

/// Imports a graph-valued attribute (FlexAttention's modifiers) applied to `args`, one per
/// graph input, into `g`: its initializers become constants and its nodes import like the
/// main graph's. It sees no names of the enclosing graph. Returns its outputs, in order.
pub(crate) fn apply_subgraph(
    g: &Graph,
    graph: &GraphProto,
    opset: i64,
    args: Vec<Value>,
) -> Result<Vec<Value>, OnnxError> {
    if graph.node.len() > MAX_NODES {
        return Err(OnnxError::Limit(format!(
            "{} nodes, more than {MAX_NODES}",
            graph.node.len()
        )));
    }
    let mut values: HashMap<String, Value> = HashMap::new();
    for init in &graph.initializer {
        let name = init.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(OnnxError::Model("an initializer has no name".into()));
        }
        let (a, narrow) = to_typed_array(init)?;
        values.insert(name, Value::array(a).with_narrow(narrow));
    }
    let declared: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|vi| !values.contains_key(vi.name.as_deref().unwrap_or_default()))
        .collect();
    if declared.len() != args.len() {
        return Err(OnnxError::Model(format!(
            "the sub-graph takes {} inputs, given {}",
            declared.len(),
            args.len()
        )));
    }
    for (vi, v) in declared.into_iter().zip(args) {
        values.insert(vi.name.clone().unwrap_or_default(), v);
    }
    for (index, node) in graph.node.iter().enumerate() {
        import_node(g, node, index, opset, &mut values)?;
    }
    graph
        .output
        .iter()
        .map(|vi| {
            let name = vi.name.clone().unwrap_or_default();
            values.get(&name).cloned().ok_or_else(|| OnnxError::Value {
                what: "sub-graph output",
                name: one_line(&name),
                message: "is not produced by any node, initializer or input".into(),
            })
        })
        .collect()
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
    let Some(importer) = ops::lookup_in(domain, op_type).map_err(|e| fail(e.0))? else {
        return Err(OnnxError::UnsupportedOp {
            node: at(),
            supported: ops::supported_list(domain),
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
    let narrows: Vec<Narrow> = inputs.iter().flatten().filter_map(|v| v.narrow).collect();
    let before = g.diagnostics().len();
    let mut cx = NodeCx {
        g,
        node,
        opset,
        inputs,
        typed_outputs: false,
        scope: values,
    };
    let outs = importer(&mut cx).map_err(|e| fail(e.0))?;
    let typed = cx.typed_outputs;
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
        let mut v = v.clone();
        if !typed
            && v.narrow.is_none()
            && let Some(&n) = narrows.iter().find(|n| n.carrier() == v.dtype)
        {
            v = with_type(g, v, Some(n));
        }
        let v = if all_known { fold(g, &v) } else { v };
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
            Value::constant(g.constant(a.clone()), a).with_narrow(v.narrow)
        }
        _ => v,
    }
}

/// The names a sub-graph (and the sub-graphs nested in it) reads that it does not define.
fn outer_names(body: &GraphProto, out: &mut Vec<String>) {
    for node in &body.node {
        out.extend(node.input.iter().filter(|n| !n.is_empty()).cloned());
        for a in &node.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                outer_names(sub, out);
            }
        }
    }
    out.extend(body.output.iter().filter_map(|o| o.name.clone()));
}

/// A sub-graph (a Scan body) ready to be imported once per iteration: its initializers
/// (constants, in the graph once) and the outer values its nodes read.
#[derive(Debug)]
pub(crate) struct Body<'a> {
    graph: &'a GraphProto,
    base: HashMap<String, Value>,
}

impl<'a> Body<'a> {
    /// Prepares `graph`, which may read the values of `scope`.
    pub(crate) fn new(
        g: &Graph,
        graph: &'a GraphProto,
        scope: &HashMap<String, Value>,
    ) -> Result<Body<'a>, OnnxError> {
        if graph.node.len() > MAX_NODES {
            return Err(OnnxError::Limit(format!(
                "a sub-graph has {} nodes, more than {MAX_NODES}",
                graph.node.len()
            )));
        }
        let mut names = Vec::new();
        outer_names(graph, &mut names);
        let mut base: HashMap<String, Value> = names
            .into_iter()
            .filter_map(|n| scope.get(&n).map(|v| (n, v.clone())))
            .collect();
        for init in &graph.initializer {
            let (a, narrow) = to_typed_array(init)?;
            let mut v = Value::array(a).with_narrow(narrow);
            v.tensor_in(g);
            base.insert(init.name.clone().unwrap_or_default(), v);
        }
        Ok(Body { graph, base })
    }

    /// Imports the body's nodes into `g` with its graph inputs bound to `inputs` (in
    /// order); returns its outputs in order.
    pub(crate) fn import(
        &self,
        g: &Graph,
        opset: i64,
        inputs: Vec<Value>,
    ) -> Result<Vec<Value>, OnnxError> {
        if inputs.len() != self.graph.input.len() {
            return Err(OnnxError::Model(format!(
                "the sub-graph takes {} inputs, given {}",
                self.graph.input.len(),
                inputs.len()
            )));
        }
        let mut values = self.base.clone();
        for (vi, v) in self.graph.input.iter().zip(inputs) {
            values.insert(vi.name.clone().unwrap_or_default(), v);
        }
        for (index, node) in self.graph.node.iter().enumerate() {
            import_node(g, node, index, opset, &mut values)?;
        }
        self.graph
            .output
            .iter()
            .map(|vi| {
                let name = vi.name.clone().unwrap_or_default();
                values.get(&name).cloned().ok_or_else(|| OnnxError::Value {
                    what: "output",
                    name: one_line(&name),
                    message: "is not produced in the sub-graph".into(),
                })
            })
            .collect()
    }
}
