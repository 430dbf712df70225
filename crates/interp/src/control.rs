//! The reference semantics of the control-flow ops: `cond`, `scan` and `while` run their
//! regions with the enclosing graph's symbol bindings.

use crate::error::EvalError;
use kiln_ir::{Array, Data, Graph, Op, Region, RegionId};
use std::collections::HashMap;

/// Runs `region` of `graph` on `args` (one per parameter) and returns its results.
fn call(
    graph: &Graph,
    region: RegionId,
    args: &[&Array],
    bindings: &HashMap<String, u64>,
) -> Result<Vec<Array>, EvalError> {
    let r: &Region = graph.try_region(region).ok_or_else(|| {
        EvalError::malformed("region", format!("{region} is not a region of this graph"))
    })?;
    if r.params.len() != args.len() {
        return Err(EvalError::malformed(
            "region",
            format!(
                "{region} takes {} argument(s), got {}",
                r.params.len(),
                args.len()
            ),
        ));
    }
    let mut inputs = HashMap::new();
    for (&p, a) in r.params.iter().zip(args) {
        let Some(Op::Input { name, .. }) = r.graph.get(p).map(|n| &n.op) else {
            return Err(EvalError::malformed(
                "region",
                format!("{region}: parameter {p} is not an input"),
            ));
        };
        inputs.insert(name.clone(), (*a).clone());
    }
    let order = r.graph.ancestors(&r.results)?;
    crate::run(
        &r.graph,
        &order,
        &r.results,
        &inputs,
        &HashMap::new(),
        bindings,
    )
}

/// Row `t` of `a` along axis 0.
fn row(a: &Array, t: usize) -> Result<Array, EvalError> {
    let shape = a.shape();
    let n = shape.first().copied().unwrap_or(0);
    if t >= n {
        return Err(EvalError::malformed(
            "scan",
            format!("step {t} of an xs operand with {n} rows"),
        ));
    }
    let inner = a.len() / n;
    let r = t * inner..(t + 1) * inner;
    let data = match a.data() {
        Data::F32(v) => Data::F32(v[r].to_vec()),
        Data::F64(v) => Data::F64(v[r].to_vec()),
        Data::I32(v) => Data::I32(v[r].to_vec()),
        Data::I64(v) => Data::I64(v[r].to_vec()),
        Data::U32(v) => Data::U32(v[r].to_vec()),
        Data::Bool(v) => Data::Bool(v[r].to_vec()),
    };
    Ok(Array::new(&shape[1..], data)?)
}

/// `rows` stacked along a new axis 0 (`row_shape` and `dtype` give the shape of an empty
/// stack).
fn stack(rows: &[Array], dtype: kiln_ir::DType, row_shape: &[usize]) -> Result<Array, EvalError> {
    let mut shape = vec![rows.len()];
    shape.extend_from_slice(row_shape);
    let mut data = Array::zeros(dtype, &[0])?.into_data();
    for r in rows {
        match (&mut data, r.data()) {
            (Data::F32(d), Data::F32(v)) => d.extend_from_slice(v),
            (Data::F64(d), Data::F64(v)) => d.extend_from_slice(v),
            (Data::I32(d), Data::I32(v)) => d.extend_from_slice(v),
            (Data::I64(d), Data::I64(v)) => d.extend_from_slice(v),
            (Data::U32(d), Data::U32(v)) => d.extend_from_slice(v),
            (Data::Bool(d), Data::Bool(v)) => d.extend_from_slice(v),
            _ => {
                return Err(EvalError::malformed(
                    "scan",
                    format!(
                        "a step output is {} but earlier ones are {dtype}",
                        r.dtype()
                    ),
                ));
            }
        }
    }
    Ok(Array::new(&shape, data)?)
}

fn predicate(a: &Array, op: &'static str) -> Result<bool, EvalError> {
    match a.as_bool()? {
        [p] => Ok(*p),
        _ => Err(EvalError::malformed(op, "the predicate must be one bool")),
    }
}

/// Evaluates a control-flow op on its operands, returning its results.
pub(crate) fn eval_control(
    graph: &Graph,
    op: &Op,
    args: &[&Array],
    bindings: &HashMap<String, u64>,
) -> Result<Vec<Array>, EvalError> {
    match op {
        Op::Cond {
            then_branch,
            else_branch,
        } => {
            let Some((pred, rest)) = args.split_first() else {
                return Err(EvalError::malformed("cond", "no predicate"));
            };
            let branch = if predicate(pred, "cond")? {
                *then_branch
            } else {
                *else_branch
            };
            call(graph, branch, rest, bindings)
        }
        Op::Scan {
            body,
            length,
            carries,
            xs,
            reverse,
        } => {
            let (c, x) = (*carries, *xs);
            if c + x > args.len() {
                return Err(EvalError::malformed("scan", "too few operands"));
            }
            let steps = length
                .eval(bindings)
                .map_err(|e| EvalError::malformed("scan", format!("length {length}: {e}")))?;
            let steps = usize::try_from(steps)
                .map_err(|_| EvalError::malformed("scan", "length does not fit usize"))?;
            let mut carry: Vec<Array> = args[..c].iter().map(|a| (*a).clone()).collect();
            let mut ys: Vec<Vec<Array>> = Vec::new();
            let order: Vec<usize> = if *reverse {
                (0..steps).rev().collect()
            } else {
                (0..steps).collect()
            };
            for t in order {
                let slices = args[c..c + x]
                    .iter()
                    .map(|a| row(a, t))
                    .collect::<Result<Vec<Array>, EvalError>>()?;
                let mut step_args: Vec<&Array> = carry.iter().collect();
                step_args.extend(slices.iter());
                step_args.extend(args[c + x..].iter().copied());
                let mut out = call(graph, *body, &step_args, bindings)?;
                let y = out.split_off(c.min(out.len()));
                carry = out;
                ys.push(y);
            }
            if *reverse {
                ys.reverse();
            }
            // The row types of the ys come from the body's result nodes.
            let r = graph.try_region(*body).ok_or_else(|| {
                EvalError::malformed("scan", format!("{body} is not a region of this graph"))
            })?;
            let mut out = carry;
            for (k, &res) in r.results.iter().enumerate().skip(c) {
                let node = r.graph.get(res).ok_or_else(|| {
                    EvalError::malformed("scan", format!("result {res} is not a node"))
                })?;
                let row_shape = node
                    .shape
                    .eval(bindings)
                    .map_err(|source| EvalError::Shape {
                        node: res,
                        shape: node.shape.to_string(),
                        source,
                    })?;
                let rows: Vec<Array> = ys.iter().map(|y| y[k - c].clone()).collect();
                out.push(stack(&rows, node.dtype, &row_shape)?);
            }
            Ok(out)
        }
        Op::While {
            cond,
            body,
            carries,
        } => {
            let c = *carries;
            if c > args.len() {
                return Err(EvalError::malformed("while", "too few operands"));
            }
            let mut carry: Vec<Array> = args[..c].iter().map(|a| (*a).clone()).collect();
            loop {
                let mut step_args: Vec<&Array> = carry.iter().collect();
                step_args.extend(args[c..].iter().copied());
                let p = call(graph, *cond, &step_args, bindings)?;
                let go = match p.first() {
                    Some(a) => predicate(a, "while")?,
                    None => return Err(EvalError::malformed("while", "no predicate")),
                };
                if !go {
                    return Ok(carry);
                }
                carry = call(graph, *body, &step_args, bindings)?;
            }
        }
        other => Err(EvalError::malformed(other.name(), "not a control-flow op")),
    }
}
