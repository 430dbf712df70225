//! Cross-checks between the parts of a decoded module: signature against graph inputs,
//! outputs and updates, state against parameters, and the kernel plan's buffers against
//! all of them.

use super::context::Result;
use crate::error::{FormatError, shown};
use crate::{Module, TensorSpec, UPDATE_OUTPUT_PREFIX};
use kiln_ir::{Array, DType, Dim, Node, NodeId, Op, Shape};
use kiln_kernel::{BufferKind, Program};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(super) fn numel(shape: &[usize]) -> Dim {
    Dim::product(
        shape
            .iter()
            .map(|&d| Dim::from(d))
            .collect::<Vec<_>>()
            .iter(),
    )
}

pub(super) fn cross_check(m: &Module) -> Result<()> {
    let g = &m.graph;
    // Signature inputs are exactly the graph's input nodes.
    let mut graph_inputs: HashMap<&str, (NodeId, DType, &Shape)> = HashMap::new();
    for (id, _) in g.inputs() {
        if let Some(Node {
            op: Op::Input { name, dtype, shape },
            ..
        }) = g.get(id)
        {
            graph_inputs.insert(name, (id, *dtype, shape));
        }
    }
    for t in &m.signature.inputs {
        let location = format!("signature input {}", shown(&t.name));
        match graph_inputs.remove(t.name.as_str()) {
            None => {
                return Err(FormatError::invalid(
                    location,
                    "the graph has no such input",
                ));
            }
            Some((id, d, s)) if (d, s) != (t.dtype, &t.shape) => {
                return Err(FormatError::invalid(
                    location,
                    format!(
                        "declared {}{} but graph input {id} is {d}{s}",
                        t.dtype, t.shape
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some((name, (id, _, _))) = graph_inputs.into_iter().min_by_key(|(_, v)| v.0) {
        return Err(FormatError::invalid(
            format!("graph node {id}"),
            format!("input {} is missing from the signature", shown(name)),
        ));
    }
    // Signature outputs are the named outputs, in order, with their nodes' types.
    if m.signature.outputs.len() != m.outputs.len() {
        return Err(FormatError::invalid(
            "signature outputs",
            format!(
                "{} declared but the module has {} named outputs",
                m.signature.outputs.len(),
                m.outputs.len()
            ),
        ));
    }
    for (t, (name, id)) in m.signature.outputs.iter().zip(&m.outputs) {
        let location = format!("signature output {}", shown(&t.name));
        if t.name != *name {
            return Err(FormatError::invalid(
                location,
                format!("the module's output in this position is {}", shown(name)),
            ));
        }
        if let Some(n) = g.get(*id)
            && (n.dtype, &n.shape) != (t.dtype, &t.shape)
        {
            return Err(FormatError::invalid(
                location,
                format!(
                    "declared {}{} but node {id} is {}{}",
                    t.dtype, t.shape, n.dtype, n.shape
                ),
            ));
        }
    }
    // State covers every parameter node and every update.
    let state: HashMap<&str, &Array> = m.state.iter().map(|(n, a)| (n.as_str(), a)).collect();
    for (id, _) in g.parameters() {
        if let Some(Node {
            op: Op::Parameter { name, dtype, shape },
            ..
        }) = g.get(id)
        {
            let location = format!("graph node {id}");
            let Some(a) = state.get(name.as_str()) else {
                return Err(FormatError::invalid(
                    location,
                    format!("parameter {} has no state tensor", shown(name)),
                ));
            };
            let stored = Shape::known(a.shape());
            if (a.dtype(), &stored) != (*dtype, shape) {
                return Err(FormatError::invalid(
                    format!("state tensor {}", shown(name)),
                    format!(
                        "is {}{stored} but parameter node {id} is {dtype}{shape}",
                        a.dtype()
                    ),
                ));
            }
        }
    }
    for (name, id) in &m.updates {
        let location = format!("update {}", shown(name));
        let Some(a) = state.get(name.as_str()) else {
            return Err(FormatError::invalid(location, "names no state tensor"));
        };
        let stored = Shape::known(a.shape());
        if let Some(n) = g.get(*id)
            && (n.dtype, &n.shape) != (a.dtype(), &stored)
        {
            return Err(FormatError::invalid(
                location,
                format!(
                    "node {id} is {}{} but the state tensor is {}{stored}",
                    n.dtype,
                    n.shape,
                    a.dtype()
                ),
            ));
        }
    }
    if let Some(p) = &m.program {
        cross_check_program(m, p, &state)?;
    }
    Ok(())
}

pub(super) fn cross_check_program(
    m: &Module,
    p: &Program,
    state: &HashMap<&str, &Array>,
) -> Result<()> {
    // Every binding the signature allows must be one the plan's bounds proofs cover. A
    // loop's induction symbol is bound by its loop, not by the caller.
    for s in p.symbols.iter().filter(|s| !p.is_induction(&s.name)) {
        let location = format!("kernel plan symbol {}", shown(&s.name));
        let Some(sig) = m.signature.symbols.iter().find(|x| x.name == s.name) else {
            return Err(FormatError::invalid(location, "is not a signature symbol"));
        };
        let inside = sig.min >= s.min
            && match (s.max, sig.max) {
                (None, _) => true,
                (Some(pmax), Some(smax)) => smax <= pmax,
                (Some(_), None) => false,
            };
        if !inside {
            let range = |min: u64, max: Option<u64>| match max {
                Some(max) => format!("{min}..={max}"),
                None => format!(">= {min}"),
            };
            return Err(FormatError::invalid(
                location,
                format!(
                    "the signature allows {} but the plan is verified only for {}",
                    range(sig.min, sig.max),
                    range(s.min, s.max)
                ),
            ));
        }
    }
    let inputs: HashMap<&str, &TensorSpec> = m
        .signature
        .inputs
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut wanted: BTreeMap<String, (DType, Dim)> = BTreeMap::new();
    for t in &m.signature.outputs {
        wanted.insert(t.name.clone(), (t.dtype, t.shape.numel()));
    }
    for (name, _) in &m.updates {
        if let Some(a) = state.get(name.as_str()) {
            wanted.insert(
                format!("{UPDATE_OUTPUT_PREFIX}{name}"),
                (a.dtype(), numel(a.shape())),
            );
        }
    }
    let mut written: BTreeSet<&str> = BTreeSet::new();
    for (i, b) in p.buffers.iter().enumerate() {
        let location = format!("kernel plan buffer b{i}");
        let expect = |what: String, d: DType, size: &Dim| -> Result<()> {
            if (b.dtype, &b.size) != (d, size) {
                return Err(FormatError::invalid(
                    location.clone(),
                    format!("is {}[{}] but {what} is {d}[{size}]", b.dtype, b.size),
                ));
            }
            Ok(())
        };
        match &b.kind {
            BufferKind::Input(n) => {
                let Some(t) = inputs.get(n.as_str()) else {
                    return Err(FormatError::invalid(
                        location,
                        format!("input {} is not a signature input", shown(n)),
                    ));
                };
                expect(
                    format!("signature input {}", shown(n)),
                    t.dtype,
                    &t.shape.numel(),
                )?;
            }
            BufferKind::State(n) => {
                let Some(a) = state.get(n.as_str()) else {
                    return Err(FormatError::invalid(
                        location,
                        format!("state {} has no state tensor", shown(n)),
                    ));
                };
                expect(
                    format!("state tensor {}", shown(n)),
                    a.dtype(),
                    &numel(a.shape()),
                )?;
            }
            BufferKind::Output(n) => {
                let Some((d, size)) = wanted.get(n.as_str()) else {
                    return Err(FormatError::invalid(
                        location,
                        format!(
                            "output {} is neither a signature output nor {UPDATE_OUTPUT_PREFIX}<state> of an update",
                            shown(n)
                        ),
                    ));
                };
                expect(format!("output {}", shown(n)), *d, size)?;
                written.insert(n.as_str());
            }
            BufferKind::Constant(_) | BufferKind::Scratch => {}
        }
    }
    if let Some(missing) = wanted.keys().find(|k| !written.contains(k.as_str())) {
        return Err(FormatError::invalid(
            "kernel plan",
            format!("no output buffer for {}", shown(missing)),
        ));
    }
    Ok(())
}
