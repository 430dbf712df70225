//! The data section: tensor references checked against it, its layout (order, alignment,
//! zero gaps), arrays read from it, and the state table.

use super::context::{Cx, Result, attr, count, dtype};
use super::op_names::ReadOpNames;
use crate::error::{FormatError, shown};
use crate::limits::*;
use crate::names::name;
use crate::v1::*;
use kiln_ir::{Array, DType};
use std::collections::HashSet;
use std::ops::Range;

/// Every tensor reference of the header with a description of where it is; `paths` are
/// the region table's paths (`Table::paths`).
pub(super) fn tensor_refs<'h, N: ReadOpNames>(
    h: &'h HeaderV1<N>,
    paths: &[String],
) -> Vec<(&'h TensorRefV1, String)> {
    fn constants<'h, N: ReadOpNames>(
        list: &'h [NodeV1<N>],
        what: &str,
        out: &mut Vec<(&'h TensorRefV1, String)>,
    ) {
        for n in list {
            if let Some(r) = N::op_ref(&n.op).constant() {
                out.push((r, format!("{what} node n{} constant", n.id)));
            }
        }
    }
    let mut out = Vec::new();
    for s in &h.state {
        out.push((&s.tensor, format!("state tensor {}", shown(&s.name))));
    }
    constants(&h.graph.nodes, "graph", &mut out);
    for (r, path) in N::region_list(&h.graph.regions).iter().zip(paths) {
        constants(&r.nodes, &format!("graph region {path}"), &mut out);
    }
    if let Some(p) = &h.program {
        for (i, b) in p.buffers.iter().enumerate() {
            if let BufferKindV1::Constant(r) = &b.kind {
                out.push((r, format!("kernel plan buffer b{i} constant")));
            }
        }
    }
    out
}

/// Validates a tensor reference: dtype, shape, element count, alignment and byte range.
/// Returns the concrete shape and the byte range in the data section.
pub(super) fn tensor_ref(
    r: &TensorRefV1,
    data_len: usize,
    location: &str,
) -> Result<(Vec<usize>, Range<usize>)> {
    let loc = || location.to_string();
    count(r.shape.len(), MAX_RANK, loc, "rank")?;
    let mut elements: u64 = 1;
    for &d in &r.shape {
        attr(d, MAX_DIM_VALUE, "dimension", &loc)?;
        elements = elements.saturating_mul(d);
    }
    attr(elements, MAX_TENSOR_ELEMENTS, "element count", &loc)?;
    let dt = dtype(r.dtype);
    let bytes = elements * dt.size_bytes() as u64;
    let shape_text = format!("{dt}{:?}", r.shape);
    if r.len != bytes {
        return Err(FormatError::invalid(
            location,
            format!(
                "data length {} bytes does not match {shape_text}, which needs {bytes}",
                r.len
            ),
        ));
    }
    if !r.offset.is_multiple_of(crate::layout::ALIGN) {
        return Err(FormatError::invalid(
            location,
            format!(
                "data offset {} is not a multiple of {}",
                r.offset,
                crate::layout::ALIGN
            ),
        ));
    }
    match r.offset.checked_add(r.len) {
        Some(end) if end <= data_len as u64 => Ok((
            r.shape.iter().map(|&d| d as usize).collect(),
            r.offset as usize..end as usize,
        )),
        end => Err(FormatError::invalid(
            location,
            format!(
                "data range {}..{} exceeds the data section size {data_len}",
                r.offset,
                end.map_or_else(|| "overflow".to_string(), |e| e.to_string())
            ),
        )),
    }
}

/// Checks every tensor reference, that no two overlap, and that bytes outside them are zero.
pub(super) fn check_data_layout<N: ReadOpNames>(
    h: &HeaderV1<N>,
    data: &[u8],
    paths: &[String],
) -> Result<()> {
    let refs = tensor_refs(h, paths);
    let mut ranges: Vec<(Range<usize>, String)> = Vec::with_capacity(refs.len());
    for (r, location) in refs {
        let (_, range) = tensor_ref(r, data.len(), &location)?;
        if !range.is_empty() {
            ranges.push((range, location));
        }
    }
    ranges.sort_by_key(|(r, _)| (r.start, r.end));
    for pair in ranges.windows(2) {
        let [(p, ploc), (r, location)] = pair else {
            continue;
        };
        if r.start < p.end {
            return Err(FormatError::invalid(
                location.as_str(),
                format!(
                    "data range {}..{} overlaps {ploc} at {}..{}",
                    r.start, r.end, p.start, p.end
                ),
            ));
        }
    }
    let mut covered = 0usize;
    for (r, _) in &ranges {
        zero_gap(data, covered..r.start)?;
        covered = r.end;
    }
    zero_gap(data, covered..data.len())
}

pub(super) fn zero_gap(data: &[u8], gap: Range<usize>) -> Result<()> {
    let start = gap.start;
    match data.get(gap).and_then(|g| g.iter().position(|&b| b != 0)) {
        Some(p) => Err(FormatError::invalid(
            "data section",
            format!(
                "padding byte {} is {:#04x}, expected 0",
                start + p,
                data[start + p]
            ),
        )),
        None => Ok(()),
    }
}

impl Cx<'_> {
    /// The array a (checked) reference names.
    pub(super) fn array(&self, r: &TensorRefV1, location: &str) -> Result<Array> {
        let (shape, range) = tensor_ref(r, self.data.len(), location)?;
        let bytes = &self.data[range];
        let dt = dtype(r.dtype);
        if dt == DType::Bool
            && let Some(p) = bytes.iter().position(|&b| b > 1)
        {
            return Err(FormatError::invalid(
                location,
                format!("bool element {p} is stored as {}, not 0 or 1", bytes[p]),
            ));
        }
        Array::from_le_bytes(dt, &shape, bytes)
            .map_err(|e| FormatError::invalid(location, e.to_string()))
    }
}

pub(super) fn state(cx: &Cx<'_>, list: &[StateEntryV1]) -> Result<Vec<(String, Array)>> {
    count(
        list.len(),
        MAX_ENTRIES,
        || "state table".to_string(),
        "entry count",
    )?;
    let mut total: u64 = 0;
    let mut seen = HashSet::new();
    list.iter()
        .map(|s| {
            let location = format!("state tensor {}", shown(&s.name));
            let n = name(&s.name, || location.clone())?;
            if !seen.insert(n.clone()) {
                return Err(FormatError::invalid(location, "name used twice"));
            }
            total = total.saturating_add(s.tensor.len);
            if total > MAX_STATE_BYTES {
                return Err(FormatError::limit(
                    "state table",
                    "total bytes",
                    total,
                    MAX_STATE_BYTES,
                ));
            }
            Ok((n, cx.array(&s.tensor, &location)?))
        })
        .collect()
}
