//! Shape and dtype inference: one exhaustive table over [`Op`].

use crate::dim::Dim;
use crate::dtype::DType;
use crate::error::ShapeError;
use crate::op::Op;
use crate::semantics::{DTypeClass, DTypeRuleError, binary_dtype, unary_dtype};
use crate::shape::Shape;

/// The dtype and shape of one operand.
pub type Operand<'a> = (DType, &'a Shape);

/// NumPy broadcasting of two shapes: align trailing axes; equal dims or a 1 broadcast.
pub fn broadcast_shapes(op: &'static str, a: &Shape, b: &Shape) -> Result<Shape, ShapeError> {
    let rank = a.rank().max(b.rank());
    let one = Dim::known(1);
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = (i + a.rank()).checked_sub(rank).map_or(&one, |j| &a.0[j]);
        let db = (i + b.rank()).checked_sub(rank).map_or(&one, |j| &b.0[j]);
        let d = if da == db || db.is_one() {
            da.clone()
        } else if da.is_one() {
            db.clone()
        } else {
            return Err(ShapeError::Broadcast {
                op,
                lhs: a.clone(),
                rhs: b.clone(),
                lhs_dim: da.clone(),
                rhs_dim: db.clone(),
            });
        };
        out.push(d);
    }
    Ok(Shape(out))
}

fn arity(op: &Op, operands: &[Operand], n: usize) -> Result<(), ShapeError> {
    if operands.len() == n {
        Ok(())
    } else {
        Err(ShapeError::Arity {
            op: op.name(),
            expected: n.to_string(),
            got: operands.len(),
        })
    }
}

fn check_axis(op: &'static str, axis: usize, shape: &Shape) -> Result<(), ShapeError> {
    if axis < shape.rank() {
        Ok(())
    } else {
        Err(ShapeError::Axis {
            op,
            axis,
            shape: shape.clone(),
        })
    }
}

fn require(
    op: &'static str,
    role: &'static str,
    got: DType,
    ok: bool,
    expected: &'static str,
) -> Result<(), ShapeError> {
    if ok {
        Ok(())
    } else {
        Err(ShapeError::DType {
            op,
            role,
            got,
            expected,
        })
    }
}

fn known(op: &'static str, d: &Dim, what: &str) -> Result<u64, ShapeError> {
    d.as_known()
        .ok_or_else(|| ShapeError::invalid(op, format!("{what} must be a known size, got `{d}`")))
}

/// Output size of a sliding window: `floor((n + pad - span) / stride) + 1`.
fn window_out(
    op: &'static str,
    n: &Dim,
    pad: u64,
    span: u64,
    stride: u64,
) -> Result<Dim, ShapeError> {
    if stride == 0 {
        return Err(ShapeError::invalid(op, "stride must be at least 1"));
    }
    let n = known(op, n, "a windowed axis")?;
    let padded = n
        .checked_add(pad)
        .ok_or_else(|| ShapeError::invalid(op, "padded size overflows"))?;
    if span == 0 || padded < span {
        return Err(ShapeError::invalid(
            op,
            format!("window of extent {span} does not fit an axis of size {n} padded to {padded}"),
        ));
    }
    Ok(Dim::known((padded - span) / stride + 1))
}

/// A typing-rule error of [`crate::semantics`] as a shape-inference error.
fn dtype_rule(e: DTypeRuleError) -> ShapeError {
    match e {
        DTypeRuleError::Mismatch { op, lhs, rhs } => ShapeError::DTypeMismatch { op, lhs, rhs },
        DTypeRuleError::Needs {
            op,
            binary,
            needs,
            got,
        } => ShapeError::DType {
            op,
            role: if binary { "operands" } else { "operand" },
            got,
            expected: match needs {
                DTypeClass::Numeric => "a numeric dtype",
                DTypeClass::Float => "f32 or f64",
                DTypeClass::BoolOrInt => "bool or an integer",
            },
        },
    }
}

fn check_perm(op: &'static str, perm: &[usize], rank: usize) -> Result<(), ShapeError> {
    let mut seen = vec![false; rank];
    if perm.len() != rank {
        return Err(ShapeError::invalid(
            op,
            format!(
                "permutation {perm:?} has {} entries for rank {rank}",
                perm.len()
            ),
        ));
    }
    for &p in perm {
        if p >= rank || std::mem::replace(&mut seen[p], true) {
            return Err(ShapeError::invalid(
                op,
                format!("{perm:?} is not a permutation of 0..{rank}"),
            ));
        }
    }
    Ok(())
}

fn check_axes(op: &'static str, axes: &[usize], shape: &Shape) -> Result<(), ShapeError> {
    for (i, &a) in axes.iter().enumerate() {
        check_axis(op, a, shape)?;
        if i > 0 && axes[i - 1] >= a {
            return Err(ShapeError::invalid(
                op,
                format!("axes {axes:?} must be sorted and unique"),
            ));
        }
    }
    Ok(())
}

/// A shape is usable when every dim and the element count fit in 64 bits and every dim is
/// provably non-negative for every binding of its symbols (symbols are at least 1 at run
/// time). Shape arithmetic never saturates ([`Dim::is_overflow`]), so this one check catches
/// every overflow of every rule.
pub fn check_shape(op: &'static str, what: &str, shape: &Shape) -> Result<(), ShapeError> {
    for d in &shape.0 {
        if d.is_overflow() {
            return Err(ShapeError::invalid(
                op,
                format!("{what} {shape}: a dimension overflows 64-bit arithmetic"),
            ));
        }
        if !d.provably_non_negative() {
            return Err(ShapeError::invalid(
                op,
                format!("{what} {shape}: dimension `{d}` may be negative (symbols are >= 1)"),
            ));
        }
    }
    if shape.numel().is_overflow() {
        return Err(ShapeError::invalid(
            op,
            format!("{what} {shape}: the element count overflows 64-bit arithmetic"),
        ));
    }
    Ok(())
}

/// Infers the output dtype and shape of `op` applied to `operands`; the result always passes
/// [`check_shape`].
pub fn infer(op: &Op, operands: &[Operand]) -> Result<(DType, Shape), ShapeError> {
    let name = op.name();
    if let Op::Input { shape, .. }
    | Op::Parameter { shape, .. }
    | Op::Iota { shape, .. }
    | Op::RandomBits { shape }
    | Op::Reshape(shape)
    | Op::Expand(shape) = op
    {
        check_shape(name, "shape", shape)?;
    }
    let (dtype, shape) = infer_rule(op, operands)?;
    if check_shape(name, "", &shape).is_err() {
        let of: Vec<String> = operands.iter().map(|(_, s)| s.to_string()).collect();
        check_shape(name, &format!("result of {}:", of.join(", ")), &shape)?;
    }
    Ok((dtype, shape))
}

fn infer_rule(op: &Op, operands: &[Operand]) -> Result<(DType, Shape), ShapeError> {
    let name = op.name();
    match op {
        Op::Input { dtype, shape, .. } | Op::Parameter { dtype, shape, .. } => {
            arity(op, operands, 0)?;
            Ok((*dtype, shape.clone()))
        }
        Op::Constant(a) => {
            arity(op, operands, 0)?;
            Ok((a.dtype(), Shape::known(a.shape())))
        }
        Op::Iota { dtype, shape, axis } => {
            arity(op, operands, 0)?;
            check_axis(name, *axis, shape)?;
            require(name, "dtype", *dtype, dtype.is_numeric(), "a numeric dtype")?;
            Ok((*dtype, shape.clone()))
        }
        Op::RandomBits { shape } => {
            arity(op, operands, 1)?;
            let (kd, ks) = operands[0];
            require(name, "key", kd, kd == DType::U32, "u32")?;
            if *ks != Shape::known(&[2]) {
                return Err(ShapeError::invalid(
                    name,
                    format!("key must have shape [2], got {ks}"),
                ));
            }
            Ok((DType::U32, shape.clone()))
        }
        Op::Unary(u) => {
            arity(op, operands, 1)?;
            Ok((
                unary_dtype(*u, operands[0].0).map_err(dtype_rule)?,
                operands[0].1.clone(),
            ))
        }
        Op::Binary(b) => {
            arity(op, operands, 2)?;
            let dt = binary_dtype(*b, operands[0].0, operands[1].0).map_err(dtype_rule)?;
            Ok((dt, broadcast_shapes(name, operands[0].1, operands[1].1)?))
        }
        Op::Select => {
            arity(op, operands, 3)?;
            let (cd, cs) = operands[0];
            require(name, "condition", cd, cd == DType::Bool, "bool")?;
            let (ad, as_) = operands[1];
            let (bd, bs) = operands[2];
            if ad != bd {
                return Err(ShapeError::DTypeMismatch {
                    op: name,
                    lhs: ad,
                    rhs: bd,
                });
            }
            let ab = broadcast_shapes(name, as_, bs)?;
            Ok((ad, broadcast_shapes(name, cs, &ab)?))
        }
        Op::StopGradient => {
            arity(op, operands, 1)?;
            Ok((operands[0].0, operands[0].1.clone()))
        }
        Op::Cast(to) => {
            arity(op, operands, 1)?;
            Ok((*to, operands[0].1.clone()))
        }
        Op::Reduce {
            op: r,
            axes,
            keepdim,
        } => {
            arity(op, operands, 1)?;
            let (d, s) = operands[0];
            require(name, "operand", d, d.is_numeric(), "a numeric dtype")?;
            check_axes(name, axes, s)?;
            let _ = r;
            Ok((d, reduced_shape(s, axes, *keepdim)))
        }
        Op::ArgReduce { axis, keepdim, .. } => {
            arity(op, operands, 1)?;
            let (d, s) = operands[0];
            require(name, "operand", d, d.is_numeric(), "a numeric dtype")?;
            check_axis(name, *axis, s)?;
            Ok((DType::I64, reduced_shape(s, &[*axis], *keepdim)))
        }
        Op::Reshape(to) => {
            arity(op, operands, 1)?;
            let (d, s) = operands[0];
            let (a, b) = (s.numel(), to.numel());
            if a != b {
                return Err(ShapeError::Reshape {
                    from: s.clone(),
                    to: to.clone(),
                    from_numel: a,
                    to_numel: b,
                });
            }
            Ok((d, to.clone()))
        }
        Op::Permute(perm) => {
            arity(op, operands, 1)?;
            let (d, s) = operands[0];
            check_perm(name, perm, s.rank())?;
            Ok((d, Shape(perm.iter().map(|&p| s.0[p].clone()).collect())))
        }
        Op::Expand(to) => {
            arity(op, operands, 1)?;
            let (d, s) = operands[0];
            if to.rank() < s.rank() {
                return Err(ShapeError::invalid(
                    name,
                    format!("cannot expand {s} to lower rank {to}"),
                ));
            }
            let off = to.rank() - s.rank();
            for (i, ds) in s.0.iter().enumerate() {
                let dt = &to.0[off + i];
                if ds != dt && !ds.is_one() {
                    return Err(ShapeError::Broadcast {
                        op: name,
                        lhs: s.clone(),
                        rhs: to.clone(),
                        lhs_dim: ds.clone(),
                        rhs_dim: dt.clone(),
                    });
                }
            }
            Ok((d, to.clone()))
        }
        Op::Slice(axes) => {
            arity(op, operands, 1)?;
            let (d, s) = operands[0];
            if axes.len() != s.rank() {
                return Err(ShapeError::invalid(
                    name,
                    format!("{} slice entries for shape {s}", axes.len()),
                ));
            }
            let mut out = Vec::with_capacity(s.rank());
            for (ax, dim) in axes.iter().zip(&s.0) {
                if ax.step == 0 {
                    return Err(ShapeError::invalid(name, "step must be at least 1"));
                }
                // A full unit-step slice of a symbolic axis keeps it symbolic.
                if ax.start == 0 && ax.step == 1 && ax.stop == u64::MAX {
                    out.push(dim.clone());
                    continue;
                }
                let n = known(name, dim, "a sliced axis")?;
                if ax.start > ax.stop || ax.stop > n {
                    return Err(ShapeError::invalid(
                        name,
                        format!(
                            "range {}..{} is out of bounds for an axis of size {n} in {s}",
                            ax.start, ax.stop
                        ),
                    ));
                }
                out.push(Dim::known((ax.stop - ax.start).div_ceil(ax.step)));
            }
            Ok((d, Shape(out)))
        }
        Op::Pad { pads, .. } => {
            arity(op, operands, 1)?;
            let (d, s) = operands[0];
            if pads.len() != s.rank() {
                return Err(ShapeError::invalid(
                    name,
                    format!("{} pad entries for shape {s}", pads.len()),
                ));
            }
            let mut out = Vec::with_capacity(s.rank());
            for (dim, (lo, hi)) in s.0.iter().zip(pads) {
                let total = lo.checked_add(*hi).ok_or_else(|| {
                    ShapeError::invalid(name, format!("pad amounts {lo} + {hi} overflow"))
                })?;
                out.push(dim + &Dim::known(total));
            }
            Ok((d, Shape(out)))
        }
        Op::Concat { axis } => {
            if operands.len() < 2 {
                return Err(ShapeError::Arity {
                    op: name,
                    expected: "at least 2".into(),
                    got: operands.len(),
                });
            }
            let (d0, s0) = operands[0];
            check_axis(name, *axis, s0)?;
            let mut total = s0.0[*axis].clone();
            for &(d, s) in &operands[1..] {
                if d != d0 {
                    return Err(ShapeError::DTypeMismatch {
                        op: name,
                        lhs: d0,
                        rhs: d,
                    });
                }
                let same_rest = s.rank() == s0.rank()
                    && s.0
                        .iter()
                        .zip(&s0.0)
                        .enumerate()
                        .all(|(i, (a, b))| i == *axis || a == b);
                if !same_rest {
                    return Err(ShapeError::invalid(
                        name,
                        format!("shapes {s0} and {s} differ outside axis {axis}"),
                    ));
                }
                total = &total + &s.0[*axis];
            }
            let mut out = s0.clone();
            out.0[*axis] = total;
            Ok((d0, out))
        }
        Op::Flip { axes } => {
            arity(op, operands, 1)?;
            let (d, s) = operands[0];
            check_axes(name, axes, s)?;
            Ok((d, s.clone()))
        }
        Op::Gather { axis } => {
            arity(op, operands, 2)?;
            let (d, s) = operands[0];
            let (id, is) = operands[1];
            require(name, "index", id, id.is_index(), "an integer dtype")?;
            check_axis(name, *axis, s)?;
            let ok = is.rank() == s.rank()
                && is
                    .0
                    .iter()
                    .zip(&s.0)
                    .enumerate()
                    .all(|(i, (a, b))| i == *axis || a == b);
            if !ok {
                return Err(ShapeError::invalid(
                    name,
                    format!("index shape {is} must match source shape {s} except on axis {axis}"),
                ));
            }
            Ok((d, is.clone()))
        }
        Op::ScatterAdd { axis } => {
            arity(op, operands, 3)?;
            let (td, ts) = operands[0];
            let (id, is) = operands[1];
            let (sd, ss) = operands[2];
            require(name, "index", id, id.is_index(), "an integer dtype")?;
            require(name, "target", td, td.is_numeric(), "a numeric dtype")?;
            if td != sd {
                return Err(ShapeError::DTypeMismatch {
                    op: name,
                    lhs: td,
                    rhs: sd,
                });
            }
            check_axis(name, *axis, ts)?;
            if is != ss {
                return Err(ShapeError::invalid(
                    name,
                    format!("index shape {is} differs from source shape {ss}"),
                ));
            }
            let ok = ss.rank() == ts.rank()
                && ss
                    .0
                    .iter()
                    .zip(&ts.0)
                    .enumerate()
                    .all(|(i, (a, b))| i == *axis || a == b);
            if !ok {
                return Err(ShapeError::invalid(
                    name,
                    format!("source shape {ss} must match target shape {ts} except on axis {axis}"),
                ));
            }
            Ok((td, ts.clone()))
        }
        Op::MatMul => {
            arity(op, operands, 2)?;
            let (ad, a) = operands[0];
            let (bd, b) = operands[1];
            if ad != bd {
                return Err(ShapeError::DTypeMismatch {
                    op: name,
                    lhs: ad,
                    rhs: bd,
                });
            }
            require(name, "operands", ad, ad.is_numeric(), "a numeric dtype")?;
            if a.rank() < 2 || b.rank() < 2 {
                return Err(ShapeError::invalid(
                    name,
                    format!("operands must have rank >= 2, got {a} @ {b}"),
                ));
            }
            let (m, k1) = (&a.0[a.rank() - 2], &a.0[a.rank() - 1]);
            let (k2, n) = (&b.0[b.rank() - 2], &b.0[b.rank() - 1]);
            if k1 != k2 {
                return Err(ShapeError::MatmulInner {
                    lhs: a.clone(),
                    rhs: b.clone(),
                    lhs_dim: k1.clone(),
                    rhs_dim: k2.clone(),
                });
            }
            let ba = Shape(a.0[..a.rank() - 2].to_vec());
            let bb = Shape(b.0[..b.rank() - 2].to_vec());
            let mut batch = broadcast_shapes(name, &ba, &bb).map_err(|_| {
                ShapeError::invalid(
                    name,
                    format!("batch dimensions of {a} and {b} are not broadcastable"),
                )
            })?;
            batch.0.push(m.clone());
            batch.0.push(n.clone());
            Ok((ad, batch))
        }
        Op::Conv2d {
            stride,
            padding,
            dilation,
            groups,
        } => {
            arity(op, operands, 2)?;
            let (xd, x) = operands[0];
            let (wd, w) = operands[1];
            if xd != wd {
                return Err(ShapeError::DTypeMismatch {
                    op: name,
                    lhs: xd,
                    rhs: wd,
                });
            }
            require(name, "operands", xd, xd.is_float(), "f32 or f64")?;
            if x.rank() != 4 || w.rank() != 4 {
                return Err(ShapeError::invalid(
                    name,
                    format!(
                        "input [N, C, H, W] and weight [O, C/groups, KH, KW] expected, got {x} and {w}"
                    ),
                ));
            }
            let g = *groups;
            let c = known(name, &x.0[1], "the channel axis")?;
            let o = known(name, &w.0[0], "the output-channel axis")?;
            let ci = known(name, &w.0[1], "the weight's input-channel axis")?;
            if g == 0 || c % g != 0 || o % g != 0 || ci.checked_mul(g) != Some(c) {
                return Err(ShapeError::invalid(
                    name,
                    format!(
                        "input {x} and weight {w} do not agree with groups={g} (need C = weight[1] * groups, O % groups = 0)"
                    ),
                ));
            }
            let mut out = vec![x.0[0].clone(), Dim::known(o)];
            for i in 0..2 {
                let k = known(name, &w.0[2 + i], "a kernel axis")?;
                if k == 0 {
                    return Err(ShapeError::invalid(
                        name,
                        format!("weight {w} has an empty kernel axis (kernel sizes must be >= 1)"),
                    ));
                }
                if dilation[i] == 0 {
                    return Err(ShapeError::invalid(name, "dilation must be at least 1"));
                }
                let overflow = || ShapeError::invalid(name, "kernel extent or padding overflows");
                let span = dilation[i]
                    .checked_mul(k.max(1) - 1)
                    .and_then(|v| v.checked_add(1))
                    .ok_or_else(overflow)?;
                let pad = padding[i].checked_mul(2).ok_or_else(overflow)?;
                out.push(window_out(name, &x.0[2 + i], pad, span, stride[i])?);
            }
            Ok((xd, Shape(out)))
        }
        Op::Cond { .. } | Op::Scan { .. } | Op::While { .. } | Op::Get { .. } => {
            Err(ShapeError::invalid(
                name,
                "a control-flow op is typed by its graph's regions (Graph::add, infer_control)",
            ))
        }
        Op::Window {
            window,
            stride,
            padding,
            ..
        } => {
            arity(op, operands, 1)?;
            let (d, s) = operands[0];
            require(name, "operand", d, d.is_numeric(), "a numeric dtype")?;
            let k = window.len();
            if k == 0 || k > s.rank() || stride.len() != k || padding.len() != k {
                return Err(ShapeError::invalid(
                    name,
                    format!(
                        "window {window:?}, stride {stride:?} and padding {padding:?} must have equal length <= rank of {s}"
                    ),
                ));
            }
            let mut out = s.0[..s.rank() - k].to_vec();
            for i in 0..k {
                let (lo, hi) = padding[i];
                if lo >= window[i] || hi >= window[i] {
                    return Err(ShapeError::invalid(
                        name,
                        format!("padding {padding:?} must be smaller than the window {window:?}"),
                    ));
                }
                let pad = lo
                    .checked_add(hi)
                    .ok_or_else(|| ShapeError::invalid(name, "padding overflows"))?;
                out.push(window_out(
                    name,
                    &s.0[s.rank() - k + i],
                    pad,
                    window[i],
                    stride[i],
                )?);
            }
            Ok((d, Shape(out)))
        }
    }
}

/// The shape after reducing `axes` (sorted), keeping them as 1 when `keepdim`.
pub fn reduced_shape(s: &Shape, axes: &[usize], keepdim: bool) -> Shape {
    let mut out = Vec::with_capacity(s.rank());
    for (i, d) in s.0.iter().enumerate() {
        if axes.contains(&i) {
            if keepdim {
                out.push(Dim::known(1));
            }
        } else {
            out.push(d.clone());
        }
    }
    Shape(out)
}

/// The parameter and result types of a region, as [`infer_control`] reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionSig {
    /// Parameter types, in order.
    pub params: Vec<(DType, Shape)>,
    /// Result types, in order.
    pub results: Vec<(DType, Shape)>,
}

/// The type of a control-flow node itself: a `bool[]` token (its results are read by
/// [`Op::Get`] nodes).
pub fn token_type() -> (DType, Shape) {
    (DType::Bool, Shape::scalar())
}

fn types_str(types: &[(DType, Shape)]) -> String {
    let parts: Vec<String> = types.iter().map(|(d, s)| format!("{d}{s}")).collect();
    format!("({})", parts.join(", "))
}

fn operand_types(operands: &[Operand]) -> Vec<(DType, Shape)> {
    operands.iter().map(|&(d, s)| (d, s.clone())).collect()
}

/// Checks that `got` (what a region declares) equals `want` (what the op passes), naming
/// both lists.
fn same_types(
    op: &'static str,
    what: &str,
    want: &[(DType, Shape)],
    got: &[(DType, Shape)],
) -> Result<(), ShapeError> {
    if want == got {
        Ok(())
    } else {
        Err(ShapeError::invalid(
            op,
            format!(
                "{what}: expected {}, got {}",
                types_str(want),
                types_str(got)
            ),
        ))
    }
}

/// Infers the result types of a control-flow op (`cond`, `scan`, `while`) from its operands
/// and the signatures of its regions (`sigs[i]` belongs to `op.regions()[i]`). Bodies are
/// checked against the operands, a carry must keep its type from one iteration to the next,
/// and both branches of a `cond` must return the same types; every message names both
/// types.
pub fn infer_control(
    op: &Op,
    operands: &[Operand],
    sigs: &[RegionSig],
) -> Result<Vec<(DType, Shape)>, ShapeError> {
    let name = op.name();
    let args = operand_types(operands);
    let results = match op {
        Op::Cond { .. } => {
            let [then_sig, else_sig] = sigs else {
                return Err(ShapeError::invalid(name, "needs two regions"));
            };
            let Some(((pd, ps), rest)) = args.split_first() else {
                return Err(ShapeError::Arity {
                    op: name,
                    expected: "at least 1".into(),
                    got: 0,
                });
            };
            if *pd != DType::Bool || ps.rank() != 0 {
                return Err(ShapeError::invalid(
                    name,
                    format!("the predicate must be bool[], got {pd}{ps}"),
                ));
            }
            same_types(name, "then-branch parameters", rest, &then_sig.params)?;
            same_types(name, "else-branch parameters", rest, &else_sig.params)?;
            if then_sig.results != else_sig.results {
                return Err(ShapeError::invalid(
                    name,
                    format!(
                        "the branches return different types: then {}, else {}",
                        types_str(&then_sig.results),
                        types_str(&else_sig.results)
                    ),
                ));
            }
            then_sig.results.clone()
        }
        Op::Scan {
            length,
            carries,
            xs,
            ..
        } => {
            let [body] = sigs else {
                return Err(ShapeError::invalid(name, "needs one region"));
            };
            let (c, x) = (*carries, *xs);
            if c.checked_add(x).is_none_or(|n| n > args.len()) {
                return Err(ShapeError::Arity {
                    op: name,
                    expected: format!("at least {c} carries + {x} xs"),
                    got: args.len(),
                });
            }
            if body.params.len() != args.len() {
                return Err(ShapeError::invalid(
                    name,
                    format!(
                        "the body takes {} parameter(s) but the scan passes {} (carries, x slices, consts)",
                        body.params.len(),
                        args.len()
                    ),
                ));
            }
            if body.results.len() < c {
                return Err(ShapeError::invalid(
                    name,
                    format!(
                        "the body returns {} result(s), fewer than its {c} carries",
                        body.results.len()
                    ),
                ));
            }
            same_types(name, "initial carries", &body.params[..c], &args[..c])?;
            same_types(
                name,
                "the body's carry results (a carry must keep its type across iterations)",
                &body.params[..c],
                &body.results[..c],
            )?;
            same_types(name, "consts", &body.params[c + x..], &args[c + x..])?;
            for k in 0..x {
                let (d, s) = &args[c + k];
                let (pd, ps) = &body.params[c + k];
                let ok = s.rank() >= 1 && s.0[0] == *length && s.0[1..] == ps.0[..] && d == pd;
                if !ok {
                    return Err(ShapeError::invalid(
                        name,
                        format!(
                            "xs {k} is {d}{s} but the body takes slices {pd}{ps} over {length} steps (expected {pd}[{length}, ...])"
                        ),
                    ));
                }
            }
            check_shape(name, "length", &Shape(vec![length.clone()]))?;
            let mut out = body.results[..c].to_vec();
            for (d, s) in &body.results[c..] {
                let mut dims = vec![length.clone()];
                dims.extend(s.0.iter().cloned());
                out.push((*d, Shape(dims)));
            }
            out
        }
        Op::While { carries, .. } => {
            let [cond, body] = sigs else {
                return Err(ShapeError::invalid(name, "needs two regions"));
            };
            let c = *carries;
            if c > args.len() {
                return Err(ShapeError::Arity {
                    op: name,
                    expected: format!("at least {c} carries"),
                    got: args.len(),
                });
            }
            same_types(name, "condition parameters", &args, &cond.params)?;
            same_types(name, "body parameters", &args, &body.params)?;
            let pred = [(DType::Bool, Shape::scalar())];
            same_types(name, "the condition's result", &pred, &cond.results)?;
            same_types(
                name,
                "the body's results (a carry must keep its type across iterations)",
                &args[..c],
                &body.results,
            )?;
            args[..c].to_vec()
        }
        _ => return Err(ShapeError::invalid(name, "not a control-flow op")),
    };
    for (_, s) in &results {
        check_shape(name, "result", s)?;
    }
    Ok(results)
}
