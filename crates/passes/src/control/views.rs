//! View sinking: a loop const that is a layout view (`permute`, `reshape`, `expand`) of an
//! outer value is passed as that value, and the view is applied inside the loop's regions.
//!
//! A view costs nothing where fusion folds it into the index of what reads it, but a view
//! passed into a loop is materialised before the loop: the `W^T` of an LSTM layer's
//! recurrent product was a transposed copy of the weight, written at every run, and the
//! matrix product in the loop could not reuse the packing of the weight itself. Sunk, the
//! product reads `W` through the transposed index, as the unrolled graph does. Values are
//! unchanged bit for bit (a view moves elements, it computes nothing), and
//! [`super::hoist`] leaves such views where they are.

use super::fail;
use super::hoist::{first_const, layout_only, loop_regions, rebuild_control};
use crate::error::PassError;
use crate::func::{Func, PassStats};
use crate::region::{fresh_param, redirect};
use kiln_ir::NodeId;

/// Sinks every view passed as a const of `scan` or `while` node `id` into its regions.
/// Returns the node's id afterwards.
pub(super) fn sink_views(
    func: &mut Func,
    id: NodeId,
    stats: &mut PassStats,
) -> Result<NodeId, PassError> {
    let op = func.graph.node(id).op.clone();
    let Some(first_const) = first_const(&op) else {
        return Ok(id);
    };
    let mut operands = func.graph.operands(id);
    let views: Vec<(usize, NodeId)> = operands
        .iter()
        .enumerate()
        .skip(first_const)
        .filter_map(|(i, &o)| {
            let sources = func.graph.operands(o);
            (layout_only(&func.graph.node(o).op) && sources.len() == 1).then(|| (i, sources[0]))
        })
        .collect();
    if views.is_empty() {
        return Ok(id);
    }
    let mut regions = loop_regions(func, id, &op, &operands)?;
    let before = func.graph.len();
    for &(i, source) in &views {
        let view = func.graph.node(operands[i]).clone();
        let src = func.graph.node(source);
        let (dtype, shape) = (src.dtype, src.shape.clone());
        for region in &mut regions {
            let old = region.params[i];
            let p = fresh_param(region, "viewed", dtype, shape.clone());
            let v = region
                .graph
                .add_at(view.op.clone(), &[p], view.loc.clone())
                .map_err(|e| fail(id, e))?;
            redirect(region, old, v);
            region.params[i] = p;
        }
        operands[i] = source;
    }
    rebuild_control(
        func,
        id,
        (op, operands),
        regions,
        before,
        stats,
        "sink_view",
    )
}
