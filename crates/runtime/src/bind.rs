//! Allocation-free binding of a run's inputs: checks names, dtypes and shapes against the
//! signature and derives the symbol values, reusing its buffers run after run. Any problem
//! falls back to [`bind_inputs`], which builds the precise error.

use crate::error::RuntimeError;
use crate::signature::{Signature, bind_inputs};
use kiln_interp::EvalError;
use kiln_ir::{Array, DType, Dim, Graph, NodeId, Op};
use std::collections::HashMap;

/// How one axis of a signature input is checked.
#[derive(Clone, Debug)]
enum Axis {
    /// A known size.
    Known(u64),
    /// Exactly symbol `k` of the signature: binds it.
    Symbol(usize),
    /// A compound dim (`N*28`), checked once the symbols are bound.
    Expr(Dim),
}

#[derive(Clone, Debug)]
struct InputPlan {
    name: String,
    dtype: DType,
    axes: Vec<Axis>,
}

/// A precondition of an `argmax`/`argmin` node: its reduced axis (`len`) is not empty
/// unless its result (`numel` elements) is. Checked at bind time for every engine, so each
/// one fails with the interpreter's error instead of returning a sentinel index.
#[derive(Clone, Debug)]
struct ArgPrecondition {
    node: NodeId,
    op: &'static str,
    axis: usize,
    len: Dim,
    numel: Dim,
}

/// The binder of one executable: the signature digested once, plus the buffers of the
/// last binding.
#[derive(Clone, Debug)]
pub(crate) struct Binder {
    symbols: Vec<(String, u64, Option<u64>)>,
    inputs: Vec<InputPlan>,
    /// Every signature symbol with its value in the last successful binding.
    pub(crate) map: HashMap<String, u64>,
    /// The same values in signature order.
    pub(crate) values: Vec<u64>,
    bound: Vec<bool>,
    /// `order[i]`: the position in the caller's inputs of signature input `i`.
    pub(crate) order: Vec<usize>,
    args: Vec<ArgPrecondition>,
}

/// The [`ArgPrecondition`]s of `graph` whose axis may be empty.
fn arg_preconditions(graph: &Graph) -> Vec<ArgPrecondition> {
    let mut out = Vec::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        let Op::ArgReduce { op, axis, .. } = &node.op else {
            continue;
        };
        let Some(x) = graph.operands(id).first().copied() else {
            continue;
        };
        let Some(len) = graph.node(x).shape.dims().get(*axis).cloned() else {
            continue;
        };
        if len.as_known().is_some_and(|v| v >= 1) {
            continue;
        }
        out.push(ArgPrecondition {
            node: id,
            op: op.name(),
            axis: *axis,
            len,
            numel: Dim::product(node.shape.dims()),
        });
    }
    out
}

impl Binder {
    /// Digests `sig` and the preconditions of `graph`.
    pub(crate) fn new(sig: &Signature, graph: &Graph) -> Binder {
        let symbols: Vec<(String, u64, Option<u64>)> = sig
            .symbols
            .iter()
            .map(|s| (s.name.clone(), s.min, s.max))
            .collect();
        let inputs = sig
            .inputs
            .iter()
            .map(|spec| InputPlan {
                name: spec.name.clone(),
                dtype: spec.dtype,
                axes: spec
                    .shape
                    .dims()
                    .iter()
                    .map(|d| {
                        if let Some(v) = d.as_known() {
                            Axis::Known(v)
                        } else if let Some(k) = d
                            .as_symbol()
                            .and_then(|n| symbols.iter().position(|s| s.0 == n))
                        {
                            Axis::Symbol(k)
                        } else {
                            Axis::Expr(d.clone())
                        }
                    })
                    .collect(),
            })
            .collect::<Vec<_>>();
        Binder {
            map: symbols.iter().map(|s| (s.0.clone(), 0)).collect(),
            values: vec![0; symbols.len()],
            bound: vec![false; symbols.len()],
            order: vec![0; inputs.len()],
            symbols,
            inputs,
            args: arg_preconditions(graph),
        }
    }

    /// Checks the graph's preconditions under the bound symbols.
    fn check_preconditions(&self) -> Result<(), RuntimeError> {
        for a in &self.args {
            let empty = a.len.eval(&self.map).is_ok_and(|v| v == 0);
            if empty && a.numel.eval(&self.map).is_ok_and(|v| v > 0) {
                return Err(RuntimeError::Eval(EvalError::EmptyArgReduce {
                    node: Some(a.node),
                    op: a.op,
                    axis: a.axis,
                }));
            }
        }
        Ok(())
    }

    /// Checks `inputs` (and `explicit` bindings) and sets `map`, `values` and `order`.
    /// Allocation-free when the inputs are valid.
    pub(crate) fn bind(
        &mut self,
        sig: &Signature,
        inputs: &[(&str, &Array)],
        explicit: &HashMap<String, u64>,
    ) -> Result<(), RuntimeError> {
        if self.fast(inputs, explicit) {
            return self.check_preconditions();
        }
        let slow = bind_inputs(sig, inputs, explicit)?;
        // The full check accepts what the fast path did not (it cannot, but if it did, its
        // answer is the authority).
        for (k, (name, _, _)) in self.symbols.iter().enumerate() {
            let v = *slow
                .get(name)
                .ok_or_else(|| RuntimeError::Other(format!("symbol {name} is not bound")))?;
            self.values[k] = v;
            if let Some(m) = self.map.get_mut(name) {
                *m = v;
            }
        }
        for (i, spec) in self.inputs.iter().enumerate() {
            self.order[i] = inputs
                .iter()
                .position(|(n, _)| *n == spec.name)
                .ok_or_else(|| RuntimeError::Other(format!("input `{}` is missing", spec.name)))?;
        }
        self.check_preconditions()
    }

    fn set(&mut self, k: usize, v: u64) -> bool {
        if self.bound[k] {
            self.values[k] == v
        } else {
            self.bound[k] = true;
            self.values[k] = v;
            true
        }
    }

    fn fast(&mut self, inputs: &[(&str, &Array)], explicit: &HashMap<String, u64>) -> bool {
        if inputs.len() != self.inputs.len() {
            return false;
        }
        self.bound.iter_mut().for_each(|b| *b = false);
        for (name, &v) in explicit {
            let Some(k) = self.symbols.iter().position(|s| s.0 == *name) else {
                return false;
            };
            if !self.set(k, v) {
                return false;
            }
        }
        for i in 0..self.inputs.len() {
            let Some(j) = inputs.iter().position(|(n, _)| *n == self.inputs[i].name) else {
                return false;
            };
            self.order[i] = j;
            let a = inputs[j].1;
            let spec = &self.inputs[i];
            if a.dtype() != spec.dtype || a.shape().len() != spec.axes.len() {
                return false;
            }
            for ax in 0..spec.axes.len() {
                let got = a.shape()[ax] as u64;
                let ok = match &self.inputs[i].axes[ax] {
                    Axis::Known(v) => *v == got,
                    Axis::Symbol(k) => {
                        let k = *k;
                        self.set(k, got)
                    }
                    Axis::Expr(_) => true,
                };
                if !ok {
                    return false;
                }
            }
        }
        for (k, (name, min, max)) in self.symbols.iter().enumerate() {
            let v = self.values[k];
            if !self.bound[k] || v < *min || max.is_some_and(|m| v > m) {
                return false;
            }
            match self.map.get_mut(name) {
                Some(m) => *m = v,
                None => return false,
            }
        }
        for (i, spec) in self.inputs.iter().enumerate() {
            let a = inputs[self.order[i]].1;
            for (ax, got) in spec.axes.iter().zip(a.shape()) {
                if let Axis::Expr(d) = ax
                    && d.eval(&self.map).ok() != Some(*got as u64)
                {
                    return false;
                }
            }
        }
        true
    }
}
