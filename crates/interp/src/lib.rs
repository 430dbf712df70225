//! kiln's reference interpreter: evaluates a graph directly, simply and exactly; the oracle
//! every backend and optimisation is tested against.
//!
//! Floats are computed in `f64` and rounded once to the node's dtype (so `f32` `+ - * /` and
//! `sqrt` are correctly rounded; matmul, conv and reductions accumulate in `f64`). Integers
//! are computed in wrapping `i64` and truncated to the node's dtype, so `i32` and `u32` wrap.
//! Integer division by zero and out-of-range gather/scatter indices are errors naming the
//! node. Randomness is Threefry-2x32 laid out exactly as `jax.random.bits`.
//!
//! Entry points: [`eval`] (a graph), [`bind_symbols`] (symbol values from fed inputs),
//! [`eval_op`] (one op on arrays, for constant folding), [`random_bits`]/[`threefry2x32`].

mod bind;
mod control;
mod elementwise;
mod error;
mod linalg;
mod movement;
mod op;
mod random;
mod reduce;
#[cfg(test)]
mod testutil;
mod vals;

pub use bind::{bind_symbols, bind_symbols_for};
pub use error::{EvalError, ValueKind};
pub use kiln_ir::semantics::erf;
pub use op::eval_op;
pub use random::{random_bits, threefry2x32};

use kiln_ir::{Array, Graph, NodeId, Op};
use std::collections::{HashMap, HashSet};

/// Evaluates `outputs` (in order; repeats allowed) computing only their ancestors.
///
/// Symbols are bound from the fed inputs ([`bind_symbols_for`]): every input the outputs
/// depend on must be fed, and other fed inputs are checked too. Each node's concrete shape is
/// its symbolic shape under those bindings. `Parameter` nodes read `params[name]`, which must
/// have the declared dtype and shape. Names in `inputs` or `params` that the graph does not
/// use are ignored.
pub fn eval(
    graph: &Graph,
    outputs: &[NodeId],
    inputs: &HashMap<String, Array>,
    params: &HashMap<String, Array>,
) -> Result<Vec<Array>, EvalError> {
    let order = graph.ancestors(outputs)?;
    let needed: HashSet<NodeId> = order.iter().copied().collect();
    let bindings = bind::bind_required(graph, &needed, inputs)?;
    run(graph, &order, outputs, inputs, params, &bindings)
}

/// Evaluates `outputs` of `graph` whose ancestors in topological order are `order`, under
/// known symbol `bindings` (a region runs under its enclosing graph's bindings).
pub(crate) fn run(
    graph: &Graph,
    order: &[NodeId],
    outputs: &[NodeId],
    inputs: &HashMap<String, Array>,
    params: &HashMap<String, Array>,
    bindings: &HashMap<String, u64>,
) -> Result<Vec<Array>, EvalError> {
    let bindings = bindings.clone();
    let mut uses: HashMap<NodeId, usize> = HashMap::new();
    for &id in order.iter() {
        for o in graph.operands(id) {
            *uses.entry(o).or_default() += 1;
        }
    }
    for &o in outputs {
        *uses.entry(o).or_default() += 1;
    }

    let mut values: HashMap<NodeId, Array> = HashMap::new();
    let mut tuples: HashMap<NodeId, Vec<Array>> = HashMap::new();
    for &id in order {
        let node = graph.node(id);
        let shape = node
            .shape
            .eval(&bindings)
            .map_err(|source| EvalError::Shape {
                node: id,
                shape: node.shape.to_string(),
                source,
            })?;
        working_memory(id, node.op.name(), &shape)?;
        let operands = graph.operands(id);
        let value = match &node.op {
            Op::Input { name, .. } => {
                let a = inputs
                    .get(name)
                    .ok_or_else(|| EvalError::MissingInput { name: name.clone() })?;
                fed_value(ValueKind::Input, name, a, node, &shape, &bindings)?
            }
            Op::Parameter { name, .. } => {
                let a = params
                    .get(name)
                    .ok_or_else(|| EvalError::MissingParam { name: name.clone() })?;
                fed_value(ValueKind::Parameter, name, a, node, &shape, &bindings)?
            }
            Op::Get { index } => {
                let src = operands.first().copied();
                let got = src
                    .and_then(|s| tuples.get(&s))
                    .and_then(|t| t.get(*index))
                    .ok_or_else(|| EvalError::Malformed {
                        node: Some(id),
                        op: "get",
                        msg: format!("{src:?} has no result {index}"),
                    })?;
                got.clone()
            }
            Op::Cond { .. } | Op::Scan { .. } | Op::While { .. } => {
                let args = operands
                    .iter()
                    .map(|o| {
                        values.get(o).ok_or_else(|| EvalError::Malformed {
                            node: Some(id),
                            op: node.op.name(),
                            msg: format!("operand {o} has no value"),
                        })
                    })
                    .collect::<Result<Vec<&Array>, EvalError>>()?;
                let results = control::eval_control(graph, &node.op, &args, &bindings)
                    .map_err(|e| e.at(id))?;
                tuples.insert(id, results);
                Array::scalar(kiln_ir::DType::Bool, 0.0)
            }
            computed => {
                let args = operands
                    .iter()
                    .map(|o| {
                        values.get(o).ok_or_else(|| EvalError::Malformed {
                            node: Some(id),
                            op: node.op.name(),
                            msg: format!("operand {o} has no value"),
                        })
                    })
                    .collect::<Result<Vec<&Array>, EvalError>>()?;
                op::eval_op(computed, &args, node.dtype, &shape).map_err(|e| e.at(id))?
            }
        };
        for o in operands {
            if let Some(n) = uses.get_mut(&o) {
                *n -= 1;
                if *n == 0 {
                    values.remove(&o);
                    tuples.remove(&o);
                }
            }
        }
        values.insert(id, value);
    }
    outputs
        .iter()
        .map(|o| {
            values.get(o).cloned().ok_or_else(|| EvalError::Malformed {
                node: Some(*o),
                op: graph.node(*o).op.name(),
                msg: "output has no value".into(),
            })
        })
        .collect()
}

/// Working bytes per result element: the widened value (8 bytes) plus the narrowed result.
const WORKING_BYTES_PER_ELEMENT: u64 = 16;

/// Refuses a node whose result the allocator cannot provide, before computing it, so a huge
/// shape is a one-line error instead of an allocation abort.
fn working_memory(id: NodeId, op: &'static str, shape: &[usize]) -> Result<(), EvalError> {
    let elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let bytes = elements
        .and_then(|n| u64::try_from(n).ok())
        .and_then(|n| n.checked_mul(WORKING_BYTES_PER_ELEMENT));
    let fits = bytes
        .and_then(|b| usize::try_from(b).ok())
        .is_some_and(|b| Vec::<u8>::new().try_reserve_exact(b).is_ok());
    if fits {
        Ok(())
    } else {
        Err(EvalError::OutOfMemory {
            node: id,
            op,
            elements: elements.unwrap_or(usize::MAX),
            bytes: bytes.unwrap_or(u64::MAX),
        })
    }
}

/// Checks a fed input or parameter against its node's dtype and concrete shape.
fn fed_value(
    kind: ValueKind,
    name: &str,
    a: &Array,
    node: &kiln_ir::Node,
    shape: &[usize],
    bindings: &HashMap<String, u64>,
) -> Result<Array, EvalError> {
    if a.dtype() != node.dtype {
        return Err(EvalError::DTypeMismatch {
            kind,
            name: name.to_string(),
            expected: node.dtype,
            got: a.dtype(),
        });
    }
    if a.shape() != shape {
        return Err(EvalError::ShapeMismatch {
            kind,
            name: name.to_string(),
            expected: bind::describe(&node.shape, bindings),
            got: a.shape().to_vec(),
        });
    }
    Ok(a.clone())
}
