//! Whole-graph shape and dtype inference: re-infers every node from its operands and checks
//! the result against the node's stated dtype and shape, and checks the outputs are live.
//!
//! Nodes built with `Graph::add` are inferred as they are added; this pass is for graphs
//! that come from elsewhere (parsed text, loaded `.kiln` files, rewrites that used
//! `Graph::add_unchecked`), and it opens the pipeline so every later pass can trust the
//! types. It delegates to [`kiln_ir::verify()`], which checks each node against its operands'
//! stated types, so one bad node gives one error rather than a cascade, and it collects every
//! error instead of stopping at the first.
//!
//! It does not repair anything: a node whose stated type differs from the inferred one is
//! an error (a loaded file that disagrees with itself is malformed), and the graph is left
//! unchanged.

use crate::error::PassError;
use crate::func::{Func, PassStats};

/// Checks every node's dtype and shape (and the rest of the verifier's rules) and that every
/// output is a live node. Never changes the function.
pub fn infer(func: &mut Func) -> Result<PassStats, PassError> {
    func.check_outputs("infer")?;
    kiln_ir::verify(&func.graph).map_err(|errors| PassError::Verify {
        stage: "in infer".to_string(),
        errors,
    })?;
    Ok(PassStats {
        visited: func.graph.len(),
        ..PassStats::default()
    })
}
