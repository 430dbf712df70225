//! Compiling tensors into executables: the whole graph is optimised, lowered and compiled
//! for a backend once; `run` then executes it with validated inputs.

use crate::error::Error;
use crate::tensor::Tensor;
use kiln_runtime::{Backend, CompileSpec, Executable, State};

/// Compiles the spec of `outputs` and `updates` and links the executable's state to the
/// graph, so that a later `Graph::set_param` reaches it.
fn build(
    outputs: &[(&str, &Tensor)],
    updates: &[(&str, &Tensor)],
    state: Option<&State>,
    backend: Backend,
) -> Result<Executable, Error> {
    let (g, spec) = spec(outputs, updates, state)?;
    let exe = kiln_runtime::compile(spec, backend)?;
    let mut inner = g.inner.borrow_mut();
    inner.compiled.retain(|w| w.upgrade().is_some());
    if !inner
        .compiled
        .iter()
        .filter_map(|w| w.upgrade())
        .any(|s| s.same(exe.state()))
    {
        inner.compiled.push(exe.state().downgrade());
    }
    drop(inner);
    Ok(exe)
}

fn spec(
    outputs: &[(&str, &Tensor)],
    updates: &[(&str, &Tensor)],
    state: Option<&State>,
) -> Result<(crate::Graph, CompileSpec), Error> {
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
    let spec = CompileSpec {
        graph: g.ir(),
        outputs: named(outputs)?,
        updates: named(updates)?,
        params: g.param_values(),
        state: state.cloned(),
    };
    Ok((g, spec))
}

/// Compiles named outputs for `backend`: optimises the whole graph once, lowers it to a
/// verified kernel plan and builds the backend's engine. [`Executable::run`] then runs it
/// with inputs checked against its signature.
///
/// The executable gets its own [`State`], seeded with the graph's parameter values at this
/// call. The graph stays linked to it: a later [`Graph::set_param`](crate::Graph::set_param)
/// reaches the executable too (as [`exe.state().set(..)`](State::set) does), while the
/// executable's own updates (a train step's) do not flow back into the graph. Symbolic dims
/// stay symbolic: one executable serves every binding.
///
/// # Errors
///
/// [`Error::Check`] with every diagnostic if the graph has any; [`Error::MixedGraphs`] if
/// the outputs come from different graphs; [`Error::Runtime`] if a parameter has no value
/// ([`kiln_runtime::RuntimeError::MissingState`]), or if the backend cannot compile the
/// graph (`gpu` refuses `f64` and `i64` tensors; use `cpu` or `interp` for those).
///
/// ```
/// use kiln::{Array, Backend, DType, Graph};
/// let g = Graph::new();
/// let x = g.input("x", DType::F32, [3]);
/// let y = x.exp().sum_all();
/// let mut exe = kiln::compile(&[("y", &y)], Backend::Cpu)?;
/// let out = exe.run(&[("x", &Array::from_f32(&[3], vec![0.0; 3])?)])?;
/// assert_eq!(out[0].1.as_f32()?, &[3.0]);
///
/// // A parameter without a value is an error naming it.
/// let w = g.param("w", DType::F32, [3]);
/// let err = kiln::compile(&[("z", &(&x * &w))], Backend::Cpu).unwrap_err();
/// assert!(err.to_string().contains("`w`"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn compile(outputs: &[(&str, &Tensor)], backend: Backend) -> Result<Executable, Error> {
    build(outputs, &[], None, backend)
}

/// Compiles a step that also updates state in place: after each run, state tensor `name`
/// takes the value of its update tensor (a training step's new parameters and moments).
///
/// Every update of a run is computed from the state *before* the run and all are written
/// back together, after every output is computed: a failed run applies none. Read the
/// updated values with [`Executable::state`]; the graph's own parameter values stay as they
/// were at compile time. An update's name must be a parameter of the graph (or a tensor
/// already in the state) with the update's dtype and shape. Errors as [`compile`].
///
/// ```
/// use kiln::{Array, Backend, DType, Graph};
/// let g = Graph::new();
/// let count = g.param_init("count", Array::from_f32(&[], vec![0.0])?);
/// let next = &count + 1.0;
/// let mut exe = kiln::compile_step(&[("seen", &count)], &[("count", &next)], Backend::Cpu)?;
/// for expected in [0.0, 1.0, 2.0] {
///     assert_eq!(exe.run(&[])?[0].1.as_f32()?, &[expected]); // the value before the run
/// }
/// assert_eq!(exe.state().get("count").unwrap().as_f32()?, &[3.0]);
/// assert_eq!(g.param_value("count").unwrap().as_f32()?, &[0.0]); // the graph's is untouched
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn compile_step(
    outputs: &[(&str, &Tensor)],
    updates: &[(&str, &Tensor)],
    backend: Backend,
) -> Result<Executable, Error> {
    build(outputs, updates, None, backend)
}

/// Like [`compile_step`], sharing an existing state store (an eval executable that sees the
/// parameters a train executable updates).
///
/// A value already in `state` wins over the graph's parameter value; parameters the store
/// lacks are added to it from the graph. Both executables then read and write the same
/// tensors: a run of one is seen by the next run of the other, and
/// [`State::set`] through either handle reaches both. Errors as [`compile`].
///
/// ```
/// use kiln::{Array, Backend, DType, Graph};
/// let g = Graph::new();
/// let w = g.param_init("w", Array::from_f32(&[], vec![1.0])?);
/// let mut grow = kiln::compile_step(&[], &[("w", &(&w * 2.0))], Backend::Interp)?;
/// let mut read = kiln::compile_shared(&[("w", &w)], &[], grow.state(), Backend::Cpu)?;
/// grow.run(&[])?;
/// grow.run(&[])?;
/// assert_eq!(read.run(&[])?[0].1.as_f32()?, &[4.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn compile_shared(
    outputs: &[(&str, &Tensor)],
    updates: &[(&str, &Tensor)],
    state: &State,
    backend: Backend,
) -> Result<Executable, Error> {
    build(outputs, updates, Some(state), backend)
}
