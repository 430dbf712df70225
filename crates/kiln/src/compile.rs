//! Compiling tensors into executables: the whole graph is optimised, lowered and compiled
//! for a backend once; `run` then executes it with validated inputs.

use crate::error::Error;
use crate::tensor::Tensor;
use kiln_runtime::{Backend, CompileSpec, Executable, State};

fn spec(
    outputs: &[(&str, &Tensor)],
    updates: &[(&str, &Tensor)],
    state: Option<&State>,
) -> Result<CompileSpec, Error> {
    let Some(first) = outputs.first().or(updates.first()) else {
        return Err(Error::from(kiln_runtime::RuntimeError::Other(
            "nothing to compile: no outputs".into(),
        )));
    };
    let g = first.1.graph().clone();
    if outputs
        .iter()
        .chain(updates)
        .any(|(_, t)| !t.graph().same(&g))
    {
        return Err(Error::MixedGraphs("compile"));
    }
    g.check()?;
    let named = |list: &[(&str, &Tensor)]| -> Result<Vec<_>, Error> {
        list.iter()
            .map(|(n, t)| {
                t.node()
                    .map(|id| (n.to_string(), id))
                    .ok_or_else(|| Error::Check(g.diagnostics()))
            })
            .collect()
    };
    Ok(CompileSpec {
        graph: g.ir(),
        outputs: named(outputs)?,
        updates: named(updates)?,
        params: g.param_values(),
        state: state.cloned(),
    })
}

/// Compiles named outputs for `backend`. Fails with every diagnostic of the graph if it has any.
pub fn compile(outputs: &[(&str, &Tensor)], backend: Backend) -> Result<Executable, Error> {
    Ok(kiln_runtime::compile(spec(outputs, &[], None)?, backend)?)
}

/// Compiles a step that also updates state in place: after each run, state tensor `name`
/// takes the value of its update tensor (a training step's new parameters and moments).
pub fn compile_step(
    outputs: &[(&str, &Tensor)],
    updates: &[(&str, &Tensor)],
    backend: Backend,
) -> Result<Executable, Error> {
    Ok(kiln_runtime::compile(
        spec(outputs, updates, None)?,
        backend,
    )?)
}

/// Like [`compile_step`], sharing an existing state store (an eval executable that sees the
/// parameters a train executable updates).
pub fn compile_shared(
    outputs: &[(&str, &Tensor)],
    updates: &[(&str, &Tensor)],
    state: &State,
    backend: Backend,
) -> Result<Executable, Error> {
    Ok(kiln_runtime::compile(
        spec(outputs, updates, Some(state))?,
        backend,
    )?)
}
