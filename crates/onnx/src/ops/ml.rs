//! The `ai.onnx.ml` domain's numeric ops: Binarizer, ArrayFeatureExtractor and
//! TreeEnsemble (every tree unrolled at import time into comparisons whose conjunctions
//! select one leaf per tree, aggregated by a matmul or a masked min/max).

use super::{Importer, NodeCx, OpError, OpResult, bail, need_float};
use crate::proto::TensorProto;
use crate::tensor::to_array;
use crate::value::Value;
use kiln::Tensor;
use kiln_ir::{Array, DType, Shape};

/// Most tree nodes (interior and leaves, over all trees) TreeEnsemble unrolls.
const MAX_TREE_NODES: usize = 1 << 16;

pub fn binarizer(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let threshold = cx.attr_f("threshold", 0.0);
    Ok(vec![Value::tensor(x.gt(threshold).cast(x.dtype()))])
}

pub fn array_feature_extractor(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let idx = cx.tensor(1)?;
    if !matches!(idx.dtype(), DType::I32 | DType::I64) {
        bail!("indices must be int32 or int64, got {}", idx.dtype());
    }
    let Some(count) = Shape::new(idx.shape().dims().to_vec()).as_known() else {
        bail!("the indices' shape {} is symbolic", idx.shape());
    };
    let count: usize = count.iter().product();
    let x = if x.rank() == 1 { x.unsqueeze(0) } else { x };
    if x.rank() == 0 {
        bail!("the input must have rank 1 or more");
    }
    let flat = idx.reshape([count]);
    Ok(vec![Value::tensor(x.index_select(-1, &flat))])
}

/// The elements of a tensor attribute as `f64` (the mode tensor is `uint8`, which kiln
/// arrays lack, so small integer types are read from their `int32_data` or raw bytes).
fn attr_values(cx: &NodeCx<'_>, name: &str) -> OpResult<Option<Vec<f64>>> {
    let Some(t) = cx.attr_t(name) else {
        return Ok(None);
    };
    Ok(Some(tensor_values(t)?))
}

fn tensor_values(t: &TensorProto) -> OpResult<Vec<f64>> {
    const UINT8: i32 = 2;
    if t.data_type == Some(UINT8) {
        return Ok(match &t.raw_data {
            Some(raw) if !raw.is_empty() => raw.iter().map(|&b| f64::from(b)).collect(),
            _ => t.int32_data.iter().map(|&v| f64::from(v)).collect(),
        });
    }
    let a = to_array(t).map_err(|e| OpError(e.to_string()))?;
    Ok(a.to_f64_vec())
}

/// How an interior node compares its feature with its split value.
#[derive(Clone, Copy)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Member,
}

impl Mode {
    fn of(code: f64) -> OpResult<Mode> {
        Ok(match code as i64 {
            0 => Mode::Leq,
            1 => Mode::Lt,
            2 => Mode::Gte,
            3 => Mode::Gt,
            4 => Mode::Eq,
            5 => Mode::Neq,
            6 => Mode::Member,
            other => bail!("node mode {other} is not one of 0..=6"),
        })
    }
}

pub fn tree_ensemble(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "TreeEnsemble")?;
    if x.rank() != 2 {
        bail!("the input must be [N, F], got {}", x.shape());
    }
    let Some(features) = x.shape().dims()[1].as_known() else {
        bail!("the feature count of {} is symbolic", x.shape());
    };
    let ints = |name: &str| cx.attr_ints(name).unwrap_or_default();
    let (feat, tnode, fnode, tleaf, fleaf) = (
        ints("nodes_featureids"),
        ints("nodes_truenodeids"),
        ints("nodes_falsenodeids"),
        ints("nodes_trueleafs"),
        ints("nodes_falseleafs"),
    );
    let targets = ints("leaf_targetids");
    let roots = ints("tree_roots");
    let tracks = ints("nodes_missing_value_tracks_true");
    let splits = attr_values(cx, "nodes_splits")?.unwrap_or_default();
    let modes = attr_values(cx, "nodes_modes")?.unwrap_or_default();
    let weights = attr_values(cx, "leaf_weights")?.unwrap_or_default();
    let members = attr_values(cx, "membership_values")?.unwrap_or_default();
    let n_targets = cx.attr_i("n_targets", 0);
    let aggregate = cx.attr_i("aggregate_function", 1);
    if cx.attr_i("post_transform", 0) != 0 {
        bail!(
            "post_transform {} is not supported (only NONE)",
            cx.attr_i("post_transform", 0)
        );
    }
    let n = feat.len();
    if [
        tnode.len(),
        fnode.len(),
        tleaf.len(),
        fleaf.len(),
        splits.len(),
        modes.len(),
    ]
    .iter()
    .any(|&l| l != n)
        || (!tracks.is_empty() && tracks.len() != n)
        || targets.len() != weights.len()
    {
        bail!("the nodes_* (or leaf_*) attributes have different lengths");
    }
    if !(1..=MAX_TREE_NODES as i64).contains(&n_targets) || roots.is_empty() {
        bail!("needs tree_roots and n_targets in 1..={MAX_TREE_NODES}");
    }
    let in_range = |v: i64, len: usize| usize::try_from(v).ok().filter(|&i| i < len);
    if targets.iter().any(|&t| t < 0 || t >= n_targets) {
        bail!("a leaf target id is outside 0..{n_targets}");
    }
    let g = cx.g;
    let mut members = members.into_iter();
    // Depth-first over every tree (true branch first): the reach mask of each leaf.
    let mut leaves: Vec<(Tensor, usize)> = Vec::new();
    let mut visited = 0usize;
    for &root in &roots {
        let Some(r) = in_range(root, n) else {
            bail!("tree root {root} is not a node");
        };
        let single = tleaf[r] != 0 && fleaf[r] != 0 && tnode[r] == fnode[r];
        let mut stack: Vec<(usize, bool, Option<Tensor>)> = vec![(r, single, None)];
        while let Some((i, leaf, reach)) = stack.pop() {
            visited += 1;
            if visited > MAX_TREE_NODES {
                bail!("the trees have more than {MAX_TREE_NODES} nodes (or a cycle)");
            }
            let reach = reach.unwrap_or_else(|| g.full([1usize, 1], 1.0, DType::Bool));
            if leaf {
                let Some(l) = in_range(i as i64, weights.len()) else {
                    bail!("leaf {i} is not a leaf");
                };
                leaves.push((reach, l));
                continue;
            }
            let f = match in_range(feat[i], features as usize) {
                Some(f) => f as i64,
                None => bail!("feature {} is outside 0..{features}", feat[i]),
            };
            let v = x.slice(1, f, f + 1, 1);
            let mut cond = match Mode::of(modes[i])? {
                Mode::Leq => v.le(splits[i]),
                Mode::Lt => v.lt(splits[i]),
                Mode::Gte => v.ge(splits[i]),
                Mode::Gt => v.gt(splits[i]),
                Mode::Eq => v.eq(splits[i]),
                Mode::Neq => v.ne(splits[i]),
                Mode::Member => {
                    let mut set = g.full([1usize, 1], 0.0, DType::Bool);
                    for m in members.by_ref() {
                        if m.is_nan() {
                            break;
                        }
                        set = set.logical_or(v.eq(m));
                    }
                    set
                }
            };
            if tracks.get(i).is_some_and(|&t| t != 0) {
                cond = cond.logical_or(v.is_nan());
            }
            let next = |id: i64, is_leaf: i64| -> OpResult<(usize, bool)> {
                let len = if is_leaf != 0 { weights.len() } else { n };
                match in_range(id, len) {
                    Some(j) => Ok((j, is_leaf != 0)),
                    None => bail!("node {i} points at {id}, which does not exist"),
                }
            };
            let (tj, tl) = next(tnode[i], tleaf[i])?;
            let (fj, fl) = next(fnode[i], fleaf[i])?;
            stack.push((fj, fl, Some(reach.logical_and(cond.logical_not()))));
            stack.push((tj, tl, Some(reach.logical_and(&cond))));
        }
    }
    let rows = x.shape().dims()[0].clone();
    let masks: Vec<Tensor> = leaves
        .iter()
        .map(|(m, _)| m.expand(Shape::new([rows.clone(), 1u64.into()])))
        .collect();
    let refs: Vec<&Tensor> = masks.iter().collect();
    let reach = Tensor::cat(&refs, 1);
    let nl = leaves.len();
    let nt = n_targets as usize;
    let mut place = vec![0.0; nl * nt];
    for (k, &(_, l)) in leaves.iter().enumerate() {
        place[k * nt + targets[l] as usize] = weights[l];
    }
    let y = match aggregate {
        0 | 1 => {
            let place = g.constant(Array::from_f64_cast(x.dtype(), &[nl, nt], &place));
            let y = reach.cast(x.dtype()).matmul(&place);
            if aggregate == 0 {
                y.div(roots.len() as f64)
            } else {
                y
            }
        }
        2 | 3 => {
            let mut hits = vec![0.0; nl * nt];
            for (k, &(_, l)) in leaves.iter().enumerate() {
                hits[k * nt + targets[l] as usize] = 1.0;
            }
            let hits = g.constant(Array::from_f64_cast(DType::Bool, &[nl, nt], &hits));
            let place = g.constant(Array::from_f64_cast(x.dtype(), &[nl, nt], &place));
            let sel = reach.unsqueeze(-1).logical_and(&hits);
            let extreme = if x.dtype() == DType::F64 {
                f64::MAX
            } else {
                f64::from(f32::MAX)
            };
            if aggregate == 2 {
                sel.where_(&place, extreme).min(1, false)
            } else {
                sel.where_(&place, -extreme).max(1, false)
            }
        }
        other => bail!("aggregate_function {other} is not one of 0..=3"),
    };
    Ok(vec![Value::tensor(y)])
}

/// The importers of the `ai.onnx.ml` domain, sorted by name.
pub const ML_OPS: &[(&str, Importer)] = &[
    ("ArrayFeatureExtractor", array_feature_extractor),
    ("Binarizer", binarizer),
    ("TreeEnsemble", tree_ensemble),
];
