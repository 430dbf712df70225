//! Debug evaluation of any tensors through the reference interpreter.

use crate::error::Error;
use crate::tensor::Tensor;
use kiln_ir::Array;
use std::collections::HashMap;

/// Evaluates `outputs` with the reference interpreter, feeding named inputs. Parameters
/// take the values set on the graph now (not those of any executable). Nothing else of the
/// graph is computed, so only the inputs the outputs depend on must be fed. Exact and
/// slow: the oracle to debug with, not the way to serve.
///
/// # Errors
///
/// [`Error::Check`] if the graph has diagnostics or an output is poisoned,
/// [`Error::MixedGraphs`] for tensors from different graphs, [`Error::Eval`] for a missing
/// or mis-shaped input or a parameter without a value.
///
/// ```
/// use kiln::{Array, DType, Graph};
/// let g = Graph::new();
/// let x = g.input("x", DType::I32, [3]);
/// let unused = g.input("unused", DType::F32, [1]);
/// let y = x.maximum(0).mul(2);
/// let out = kiln::eval(&[&y], &[("x", &Array::from_i32(&[3], vec![-1, 2, 5])?)])?;
/// assert_eq!(out[0].as_i32()?, &[0, 4, 10]);
/// # let _ = unused;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn eval(outputs: &[&Tensor], feeds: &[(&str, &Array)]) -> Result<Vec<Array>, Error> {
    eval_with_bindings(outputs, feeds).map(|(v, _)| v)
}

/// Like [`eval`], also returning the symbol bindings inferred from the inputs (`N = 5`).
/// Errors as [`eval`], and if the inputs bind a symbol inconsistently.
pub fn eval_with_bindings(
    outputs: &[&Tensor],
    feeds: &[(&str, &Array)],
) -> Result<(Vec<Array>, HashMap<String, u64>), Error> {
    let Some(first) = outputs.first() else {
        return Ok((Vec::new(), HashMap::new()));
    };
    let g = first.graph().clone();
    if outputs.iter().any(|t| !t.graph().same(&g)) {
        return Err(Error::MixedGraphs("eval"));
    }
    let ids: Option<Vec<_>> = outputs.iter().map(|t| t.node()).collect();
    let Some(ids) = ids else {
        return Err(Error::Check(g.diagnostics()));
    };
    let inputs: HashMap<String, Array> = feeds
        .iter()
        .map(|(n, a)| (n.to_string(), (*a).clone()))
        .collect();
    let inner = g.inner.borrow();
    let vals = kiln_interp::eval(&inner.ir, &ids, &inputs, &inner.params)?;
    let bindings = kiln_interp::bind_symbols_for(&inner.ir, &ids, &inputs)?;
    Ok((vals, bindings))
}
