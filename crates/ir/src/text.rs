//! Readable text form of a graph (printer and parser).

use crate::graph::Graph;
use std::fmt;

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for id in self.node_ids() {
            let n = self.node(id);
            let ops: Vec<String> = self.operands(id).iter().map(|o| o.to_string()).collect();
            writeln!(f, "{id} = {} {} : {}{}", n.op.name(), ops.join(", "), n.dtype, n.shape)?;
        }
        Ok(())
    }
}
