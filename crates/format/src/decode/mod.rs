//! Header DTOs and data section → module, treating both as hostile: every count, length,
//! offset, dtype, shape, name and symbol is checked against [`crate::limits`] before
//! anything is allocated for it, the graph and kernel plan are re-verified, and the parts
//! are cross-checked (the guarantees are listed on [`crate::Module`]).

mod context;
mod cross_check;
mod data;
mod dims;
mod graph;
mod op_names;
mod program;
mod regions;
mod signature;

use crate::error::{FormatError, summarize};
use crate::limits::MAX_TOTAL_DIMS;
use crate::v1::HeaderV1;
use crate::{Module, Signature};
use context::{Cx, Result};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

pub(crate) use op_names::ReadOpNames;

/// Decodes and validates a whole module.
pub(crate) fn module<N: ReadOpNames>(h: &HeaderV1<N>, data: &[u8]) -> Result<Module> {
    let regions = regions::Table::check(&h.graph)?;
    let dims = dims::dim_count(h, &regions.paths);
    if dims > MAX_TOTAL_DIMS {
        return Err(FormatError::limit(
            "header",
            "dimension count",
            dims,
            MAX_TOTAL_DIMS,
        ));
    }
    let metadata = signature::metadata(&h.metadata)?;
    let sig_symbols = signature::symbols(&h.signature.symbols, "signature")?;
    let declared: HashSet<String> = sig_symbols.iter().map(|s| s.name.clone()).collect();
    let cx = Cx {
        data,
        declared: &declared,
        dims: RefCell::new(HashMap::new()),
    };
    let signature = Signature {
        inputs: signature::tensor_specs(&cx, &h.signature.inputs, "signature input")?,
        outputs: signature::tensor_specs(&cx, &h.signature.outputs, "signature output")?,
        symbols: sig_symbols,
    };
    data::check_data_layout(h, data, &regions.paths)?;
    let files = graph::files(&h.files)?;
    let graph = regions.graph(&cx, &h.graph, &files)?;
    if let Err(errors) = kiln_ir::verify(&graph) {
        return Err(FormatError::GraphVerify {
            count: errors.len(),
            summary: summarize(&errors),
        });
    }
    let outputs = graph::named_nodes(&graph, &h.outputs, "output")?;
    let updates = graph::named_nodes(&graph, &h.updates, "update")?;
    let program = match &h.program {
        None => None,
        Some(p) => {
            let verified = kiln_kernel::verify(program::program(&cx, p)?).map_err(|errors| {
                FormatError::ProgramVerify {
                    count: errors.0.len(),
                    summary: summarize(&errors.0),
                }
            })?;
            Some(verified)
        }
    };
    let state = data::state(&cx, &h.state)?;
    let m = Module {
        metadata,
        signature,
        graph,
        outputs,
        updates,
        program,
        state,
    };
    cross_check::cross_check(&m)?;
    Ok(m)
}
