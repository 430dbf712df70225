//! The interpreter engine: evaluates the optimised graph with `kiln_interp` (the oracle).

use crate::engine::{Engine, OutputBuffers, Run};
use crate::error::RuntimeError;
use crate::state::Store;
use kiln_ir::{Array, NodeId};
use std::collections::HashMap;

/// Runs the optimised graph on the reference interpreter; it holds nothing between runs.
#[derive(Debug, Default)]
pub(crate) struct InterpEngine;

impl Engine for InterpEngine {
    fn run(
        &mut self,
        run: &Run<'_>,
        store: &mut Store,
        out: &mut OutputBuffers,
    ) -> Result<(), RuntimeError> {
        let feeds = run.feeds();
        let state: HashMap<String, Array> = store.arrays().map(|(k, v)| (k.clone(), v)).collect();
        let ids: Vec<NodeId> = run
            .outputs
            .iter()
            .chain(run.updates)
            .map(|(_, id)| *id)
            .collect();
        let mut values = kiln_interp::eval(run.graph, &ids, &feeds, &state)?;
        let updated = values.split_off(run.outputs.len());
        for ((name, _), value) in run.updates.iter().zip(updated) {
            store.insert(name, value);
        }
        out.fill(values);
        Ok(())
    }
}
