//! Scan, unrolled over a trip count known at import time (kiln has no control-flow ops yet):
//! the body sub-graph is imported once per iteration, with the state variables threaded
//! from one copy to the next and the scan outputs stacked.

use super::{NodeCx, OpError, OpResult, axis, bail};
use crate::import::Body;
use crate::limits::{MAX_GRAPH_NODES, MAX_UNROLLED_STEPS};
use crate::value::Value;
use kiln::Tensor;

/// One scan input: the tensor, its scan axis and whether it is read backwards.
struct ScanInput {
    t: Tensor,
    axis: usize,
    reverse: bool,
}

/// Integer-list attribute `name` with `n` entries (default all 0).
fn per_entry(cx: &NodeCx<'_>, name: &str, n: usize) -> OpResult<Vec<i64>> {
    match cx.attr_ints(name) {
        None => Ok(vec![0; n]),
        Some(v) if v.len() == n => Ok(v),
        Some(v) => bail!("{name} has {} entries, expected {n}", v.len()),
    }
}

fn directions(v: Vec<i64>, name: &str) -> OpResult<Vec<bool>> {
    v.into_iter()
        .map(|d| match d {
            0 => Ok(false),
            1 => Ok(true),
            other => bail!("{name} entries must be 0 or 1, got {other}"),
        })
        .collect()
}

/// Runs the body `trip` times; returns the final states and each scan output's per-step
/// values in iteration order.
fn unroll(
    cx: &mut NodeCx<'_>,
    body: &Body<'_>,
    mut states: Vec<Value>,
    scans: &[ScanInput],
    trip: u64,
) -> OpResult<(Vec<Value>, Vec<Vec<Tensor>>)> {
    let n = states.len();
    let mut outs: Vec<Vec<Tensor>> = Vec::new();
    for t in 0..trip {
        if cx.g.len() > MAX_GRAPH_NODES {
            bail!("unrolling builds more than {MAX_GRAPH_NODES} graph nodes");
        }
        let mut inputs = states.clone();
        for s in scans {
            let i = if s.reverse { trip - 1 - t } else { t } as i64;
            let a = s.axis as i64;
            inputs.push(Value::tensor(s.t.slice(a, i, i + 1, 1).squeeze(a)));
        }
        let mut result = body
            .import(cx.g, cx.opset, inputs)
            .map_err(|e| OpError(format!("body {e}")))?;
        if result.len() < n {
            bail!(
                "the body returns {} values, fewer than the {n} states",
                result.len()
            );
        }
        let scanned = result.split_off(n);
        states = result;
        if outs.is_empty() {
            outs = vec![Vec::with_capacity(trip as usize); scanned.len()];
        }
        for (k, mut v) in scanned.into_iter().enumerate() {
            outs[k].push(v.tensor_in(cx.g));
        }
    }
    Ok((states, outs))
}

/// Stacks one scan output's per-step values along `axis` (of the stacked rank), the last
/// step first when `reverse`.
fn stack(mut steps: Vec<Tensor>, axis_attr: i64, reverse: bool) -> OpResult<Tensor> {
    let rank = steps.first().map_or(0, Tensor::rank);
    let a = axis(axis_attr, rank + 1)? as i64;
    if reverse {
        steps.reverse();
    }
    let parts: Vec<Tensor> = steps.iter().map(|s| s.unsqueeze(a)).collect();
    let refs: Vec<&Tensor> = parts.iter().collect();
    Ok(Tensor::cat(&refs, a))
}

/// The trip count: every scan input's size along its scan axis, which must be known and
/// equal.
fn trip_count(scans: &[ScanInput]) -> OpResult<u64> {
    let mut trip = None;
    for s in scans {
        let Some(k) = s.t.shape().dims()[s.axis].as_known() else {
            bail!(
                "the scan axis of {} is symbolic: kiln unrolls Scan over a known trip count and has no control-flow ops yet",
                s.t.shape()
            );
        };
        if trip.is_some_and(|t| t != k) {
            bail!("scan inputs have different lengths along their scan axes");
        }
        trip = Some(k);
    }
    match trip {
        Some(0) => bail!("the trip count is 0"),
        Some(t) if t > MAX_UNROLLED_STEPS => {
            bail!("trip count {t} exceeds the {MAX_UNROLLED_STEPS} steps Scan may unroll to")
        }
        Some(t) => Ok(t),
        None => bail!("Scan needs at least one scan input"),
    }
}

pub fn scan(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let Some(graph) = cx
        .node
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("body"))
        .and_then(|a| a.g.as_ref())
    else {
        bail!("attribute body is required");
    };
    let body = Body::new(cx.g, graph, cx.scope).map_err(|e| OpError(format!("body: {e}")))?;
    let m = cx.attr_i("num_scan_inputs", 0);
    // Opset 8 has a leading optional sequence_lens input and a batch axis on everything.
    let first = usize::from(cx.opset < 9);
    let given = cx.inputs.len().saturating_sub(first);
    let Some(m) = usize::try_from(m).ok().filter(|&m| m >= 1 && m <= given) else {
        bail!("num_scan_inputs {m} must be in 1..={given}");
    };
    let n = given - m;
    let mut states = Vec::with_capacity(n);
    for i in first..first + n {
        states.push(cx.input(i)?.clone());
    }
    let scan_ts = (first + n..first + n + m)
        .map(|i| cx.tensor(i))
        .collect::<OpResult<Vec<_>>>()?;
    if cx.opset < 9 {
        return scan8(cx, &body, states, scan_ts);
    }
    let in_axes = per_entry(cx, "scan_input_axes", m)?;
    let in_dirs = directions(
        per_entry(cx, "scan_input_directions", m)?,
        "scan_input_directions",
    )?;
    let scans = scan_ts
        .into_iter()
        .zip(in_axes.iter().zip(in_dirs))
        .map(|(t, (&a, reverse))| {
            Ok(ScanInput {
                axis: axis(a, t.rank())?,
                t,
                reverse,
            })
        })
        .collect::<OpResult<Vec<_>>>()?;
    let trip = trip_count(&scans)?;
    let k = graph.output.len().saturating_sub(n);
    let out_axes = per_entry(cx, "scan_output_axes", k)?;
    let out_dirs = directions(
        per_entry(cx, "scan_output_directions", k)?,
        "scan_output_directions",
    )?;
    let (finals, outs) = unroll(cx, &body, states, &scans, trip)?;
    let mut result = finals;
    for ((steps, a), reverse) in outs.into_iter().zip(out_axes).zip(out_dirs) {
        result.push(Value::tensor(stack(steps, a, reverse)?));
    }
    Ok(result)
}

/// Scan-8: every input has a leading batch axis, scan inputs scan along axis 1, and each
/// batch entry runs the body on its own; per-entry lengths must be omitted or full.
fn scan8(
    cx: &mut NodeCx<'_>,
    body: &Body<'_>,
    states: Vec<Value>,
    scan_ts: Vec<Tensor>,
) -> OpResult<Vec<Value>> {
    let m = scan_ts.len();
    let dirs = directions(per_entry(cx, "directions", m)?, "directions")?;
    let mut all = states.clone();
    all.extend(scan_ts.iter().cloned().map(Value::tensor));
    let Some(batch) = all
        .first()
        .and_then(|v| v.shape.dims().first())
        .and_then(|d| d.as_known())
    else {
        bail!("Scan (opset 8) needs a known batch axis");
    };
    if all
        .iter()
        .any(|v| v.shape.dims().first().and_then(|d| d.as_known()) != Some(batch))
    {
        bail!("every input of Scan (opset 8) needs the same known batch size {batch}");
    }
    if scan_ts.iter().any(|t| t.rank() < 2) {
        bail!("scan inputs need a batch and a scan axis");
    }
    let trip = scan_ts[0].shape().dims()[1].as_known().unwrap_or(0);
    if let Some(lens) = cx.opt_ints_input(0, "sequence_lens")?
        && lens.iter().any(|&l| l != trip as i64)
    {
        bail!("sequence_lens shorter than the scan axis are not supported");
    }
    if batch.saturating_mul(trip) > MAX_UNROLLED_STEPS {
        bail!("{batch} x {trip} steps exceed the {MAX_UNROLLED_STEPS} steps Scan may unroll to");
    }
    let entry = |t: &Tensor, b: u64| t.slice(0, b as i64, b as i64 + 1, 1).squeeze(0);
    let mut per_batch: Vec<Vec<Tensor>> = Vec::new();
    for b in 0..batch {
        let st: Vec<Value> = states
            .iter()
            .map(|v| Value::tensor(entry(&v.clone().tensor_in(cx.g), b)))
            .collect();
        let scans: Vec<ScanInput> = scan_ts
            .iter()
            .zip(&dirs)
            .map(|(t, &reverse)| ScanInput {
                t: entry(t, b),
                axis: 0,
                reverse,
            })
            .collect();
        let trip = trip_count(&scans)?;
        let (finals, outs) = unroll(cx, body, st, &scans, trip)?;
        let mut row: Vec<Tensor> = finals.into_iter().map(|mut v| v.tensor_in(cx.g)).collect();
        for steps in outs {
            row.push(stack(steps, 0, false)?);
        }
        per_batch.push(row);
    }
    let outputs = per_batch.first().map_or(0, Vec::len);
    Ok((0..outputs)
        .map(|k| {
            let parts: Vec<Tensor> = per_batch.iter().map(|r| r[k].unsqueeze(0)).collect();
            let refs: Vec<&Tensor> = parts.iter().collect();
            Value::tensor(Tensor::cat(&refs, 0))
        })
        .collect())
}
