//! The IR-level emitter the derivative rules write through: ordinary primitives with
//! hash-consing (an op applied to the same operands twice yields one node), plus the few
//! composite helpers every rule table needs (sum-to-shape for broadcasting, transposes,
//! interior padding, flat window indices).

use super::AutodiffError;
use kiln_ir::{
    Array, BinaryOp, DType, Dim, F64Bits, Graph, Loc, NodeId, Op, ReduceOp, Shape, SliceAxis,
    UnaryOp,
};
use std::collections::HashMap;

/// Result of an emission.
pub(crate) type Res<T = NodeId> = Result<T, AutodiffError>;

/// Constants larger than this are not entered into the hash-consing table.
const MEMO_CONST_LIMIT: usize = 64;

/// Appends primitives to a graph on behalf of one transform; errors name the node whose
/// rule was being applied.
pub(crate) struct Emitter<'g> {
    pub(crate) g: &'g mut Graph,
    loc: Option<Loc>,
    memo: HashMap<(Op, Vec<NodeId>), NodeId>,
    /// Transform name (`vjp`, `jvp`) for error context.
    pub(crate) mode: &'static str,
    /// The node whose rule is running, for error context.
    pub(crate) at: Option<NodeId>,
}

fn memo_worthy(op: &Op) -> bool {
    if let Op::Constant(a) = op {
        return a.len() <= MEMO_CONST_LIMIT;
    }
    !matches!(op, Op::Input { .. } | Op::Parameter { .. })
}

impl<'g> Emitter<'g> {
    /// An emitter whose new nodes carry `loc`; existing nodes seed the hash-consing table
    /// so that rules reuse what the graph already computes.
    pub(crate) fn new(g: &'g mut Graph, loc: Option<Loc>, mode: &'static str) -> Emitter<'g> {
        let mut memo = HashMap::new();
        for id in g.node_ids() {
            let op = &g.node(id).op;
            if memo_worthy(op) {
                memo.entry((op.clone(), g.operands(id))).or_insert(id);
            }
        }
        Emitter {
            g,
            loc,
            memo,
            mode,
            at: None,
        }
    }

    /// The provenance stamped on new nodes (the control-flow rules give it to the emitters
    /// of the bodies they derive).
    pub(crate) fn loc(&self) -> Option<Loc> {
        self.loc.clone()
    }

    fn context(&self) -> NodeId {
        self.at.unwrap_or(NodeId(u32::MAX))
    }

    /// An error for a construction that needs a known size where the graph has a symbol.
    pub(crate) fn symbolic(&self, what: String) -> AutodiffError {
        AutodiffError::Symbolic {
            mode: self.mode,
            node: self.context(),
            what,
        }
    }

    /// An error about the node being differentiated.
    pub(crate) fn malformed(&self, message: String) -> AutodiffError {
        AutodiffError::Malformed {
            node: self.context(),
            message,
        }
    }

    /// Adds (or reuses) `op` applied to `operands`.
    pub(crate) fn add(&mut self, op: Op, operands: &[NodeId]) -> Res {
        let key = (op, operands.to_vec());
        if let Some(&id) = self.memo.get(&key) {
            return Ok(id);
        }
        let (op, operands) = key;
        let name = op.name();
        let id = self
            .g
            .add_at(op.clone(), &operands, self.loc.clone())
            .map_err(|source| AutodiffError::Rule {
                mode: self.mode,
                node: self.context(),
                op: name,
                source: Box::new(source),
            })?;
        if memo_worthy(&op) {
            self.memo.insert((op, operands), id);
        }
        Ok(id)
    }

    /// The dtype of a node.
    pub(crate) fn dtype(&self, x: NodeId) -> DType {
        self.g.node(x).dtype
    }

    /// The shape of a node.
    pub(crate) fn shape(&self, x: NodeId) -> Shape {
        self.g.node(x).shape.clone()
    }

    /// A rank-0 constant.
    pub(crate) fn scalar(&mut self, dtype: DType, v: f64) -> Res {
        self.add(Op::Constant(Array::scalar(dtype, v)), &[])
    }

    /// A rank-0 constant of `x`'s dtype.
    pub(crate) fn scalar_like(&mut self, x: NodeId, v: f64) -> Res {
        let dt = self.dtype(x);
        self.scalar(dt, v)
    }

    /// `v` broadcast to `shape`.
    pub(crate) fn full(&mut self, dtype: DType, shape: &Shape, v: f64) -> Res {
        let s = self.scalar(dtype, v)?;
        self.expand(s, shape)
    }

    /// Zeros shaped and typed like `x`.
    pub(crate) fn zeros_like(&mut self, x: NodeId) -> Res {
        let (dt, s) = (self.dtype(x), self.shape(x));
        self.full(dt, &s, 0.0)
    }

    /// An elementwise unary op.
    pub(crate) fn unary(&mut self, u: UnaryOp, x: NodeId) -> Res {
        self.add(Op::Unary(u), &[x])
    }

    /// An elementwise binary op.
    pub(crate) fn binary(&mut self, b: BinaryOp, x: NodeId, y: NodeId) -> Res {
        self.add(Op::Binary(b), &[x, y])
    }

    /// `x + y`.
    pub(crate) fn add2(&mut self, x: NodeId, y: NodeId) -> Res {
        self.binary(BinaryOp::Add, x, y)
    }

    /// `x - y`.
    pub(crate) fn sub(&mut self, x: NodeId, y: NodeId) -> Res {
        self.binary(BinaryOp::Sub, x, y)
    }

    /// `x * y`.
    pub(crate) fn mul(&mut self, x: NodeId, y: NodeId) -> Res {
        self.binary(BinaryOp::Mul, x, y)
    }

    /// `x / y`.
    pub(crate) fn div(&mut self, x: NodeId, y: NodeId) -> Res {
        self.binary(BinaryOp::Div, x, y)
    }

    /// `-x`.
    pub(crate) fn neg(&mut self, x: NodeId) -> Res {
        self.unary(UnaryOp::Neg, x)
    }

    /// `x * v` for a literal `v`.
    pub(crate) fn mul_scalar(&mut self, x: NodeId, v: f64) -> Res {
        let c = self.scalar_like(x, v)?;
        self.mul(x, c)
    }

    /// `x OP v` comparing against a literal of `x`'s dtype.
    pub(crate) fn cmp_scalar(&mut self, b: BinaryOp, x: NodeId, v: f64) -> Res {
        let c = self.scalar_like(x, v)?;
        self.binary(b, x, c)
    }

    /// `cond ? a : b`.
    pub(crate) fn select(&mut self, cond: NodeId, a: NodeId, b: NodeId) -> Res {
        self.add(Op::Select, &[cond, a, b])
    }

    /// `cond ? 0 : x`, the zero broadcast as a scalar.
    pub(crate) fn zero_where(&mut self, cond: NodeId, x: NodeId) -> Res {
        let z = self.scalar_like(x, 0.0)?;
        self.select(cond, z, x)
    }

    /// `cond ? x : 0`.
    pub(crate) fn keep_where(&mut self, cond: NodeId, x: NodeId) -> Res {
        let z = self.scalar_like(x, 0.0)?;
        self.select(cond, x, z)
    }

    /// Element type conversion (skipped when the dtype already matches).
    pub(crate) fn cast(&mut self, x: NodeId, dt: DType) -> Res {
        if self.dtype(x) == dt {
            return Ok(x);
        }
        self.add(Op::Cast(dt), &[x])
    }

    /// Reshape (skipped when the shape already matches).
    pub(crate) fn reshape(&mut self, x: NodeId, shape: &Shape) -> Res {
        if self.g.node(x).shape == *shape {
            return Ok(x);
        }
        self.add(Op::Reshape(shape.clone()), &[x])
    }

    /// Axis permutation (skipped for the identity).
    pub(crate) fn permute(&mut self, x: NodeId, perm: &[usize]) -> Res {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(x);
        }
        self.add(Op::Permute(perm.to_vec()), &[x])
    }

    /// Swaps the last two axes.
    pub(crate) fn transpose_last2(&mut self, x: NodeId) -> Res {
        let r = self.shape(x).rank();
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.permute(x, &perm)
    }

    /// Broadcast to `shape` (skipped when the shape already matches).
    pub(crate) fn expand(&mut self, x: NodeId, shape: &Shape) -> Res {
        if self.g.node(x).shape == *shape {
            return Ok(x);
        }
        self.add(Op::Expand(shape.clone()), &[x])
    }

    /// Sum over `axes` (skipped when there are none).
    pub(crate) fn sum(&mut self, x: NodeId, axes: &[usize], keepdim: bool) -> Res {
        if axes.is_empty() {
            return Ok(x);
        }
        self.reduce(ReduceOp::Sum, x, axes, keepdim)
    }

    /// A reduction over `axes`.
    pub(crate) fn reduce(&mut self, op: ReduceOp, x: NodeId, axes: &[usize], keepdim: bool) -> Res {
        self.add(
            Op::Reduce {
                op,
                axes: axes.to_vec(),
                keepdim,
            },
            &[x],
        )
    }

    /// Sums a broadcast result back to `target` (the shape of the operand that was
    /// broadcast): leading axes are summed away, axes where `target` has size 1 are summed
    /// with keepdim.
    pub(crate) fn sum_to_shape(&mut self, x: NodeId, target: &Shape) -> Res {
        let s = self.shape(x);
        if s == *target {
            return Ok(x);
        }
        let lead = s.rank().saturating_sub(target.rank());
        let mut axes: Vec<usize> = (0..lead).collect();
        for (i, d) in target.0.iter().enumerate() {
            if d.is_one() && !s.0[lead + i].is_one() {
                axes.push(lead + i);
            }
        }
        let y = self.sum(x, &axes, true)?;
        self.reshape(y, target)
    }

    /// Strided slice of one axis (other axes whole).
    pub(crate) fn slice_axis(
        &mut self,
        x: NodeId,
        axis: usize,
        start: u64,
        stop: u64,
        step: u64,
    ) -> Res {
        let r = self.shape(x).rank();
        let mut spec = vec![whole(); r];
        spec[axis] = SliceAxis { start, stop, step };
        self.slice(x, spec)
    }

    /// A strided slice (skipped when every axis is taken whole).
    pub(crate) fn slice(&mut self, x: NodeId, spec: Vec<SliceAxis>) -> Res {
        let s = self.shape(x);
        let trivial = spec.iter().zip(&s.0).all(|(a, d)| {
            *a == whole() || (a.start == 0 && a.step == 1 && d.as_known() == Some(a.stop))
        });
        if trivial {
            return Ok(x);
        }
        self.add(Op::Slice(spec), &[x])
    }

    /// Constant padding (skipped when every pad is zero).
    pub(crate) fn pad(&mut self, x: NodeId, pads: Vec<(u64, u64)>, value: f64) -> Res {
        if pads.iter().all(|&(a, b)| a == 0 && b == 0) {
            return Ok(x);
        }
        self.add(
            Op::Pad {
                pads,
                value: F64Bits::new(value),
            },
            &[x],
        )
    }

    /// Pads (positive) or crops (negative) each end of `axis`, zero fill.
    pub(crate) fn pad_or_crop(&mut self, x: NodeId, axis: usize, before: i64, after: i64) -> Res {
        let n = self.known_dim(x, axis)?;
        let start = before.min(0).unsigned_abs();
        let stop = (n as i64 + after.min(0)).max(start as i64) as u64;
        let x = self.slice_axis(x, axis, start, stop, 1)?;
        let r = self.shape(x).rank();
        let mut pads = vec![(0, 0); r];
        pads[axis] = (before.max(0) as u64, after.max(0) as u64);
        self.pad(x, pads, 0.0)
    }

    /// Inserts `step - 1` zeros between consecutive elements of `axis` (interior padding),
    /// built as unsqueeze + pad + reshape + slice.
    pub(crate) fn dilate(&mut self, x: NodeId, axis: usize, step: u64) -> Res {
        let s = self.shape(x);
        let n = self.known_dim(x, axis)?;
        if step <= 1 || n <= 1 {
            return Ok(x);
        }
        let mut up = s.0.clone();
        up.insert(axis + 1, Dim::known(1));
        let y = self.reshape(x, &Shape(up))?;
        let mut pads = vec![(0, 0); s.rank() + 1];
        pads[axis + 1] = (0, step - 1);
        let y = self.pad(y, pads, 0.0)?;
        let mut flat = s.0.clone();
        flat[axis] = Dim::known(n * step);
        let y = self.reshape(y, &Shape(flat))?;
        self.slice_axis(y, axis, 0, (n - 1) * step + 1, 1)
    }

    /// The known size of `x`'s axis `axis`, or a symbolic-size error.
    pub(crate) fn known_dim(&self, x: NodeId, axis: usize) -> Res<u64> {
        let s = self.shape(x);
        s.0[axis]
            .as_known()
            .ok_or_else(|| self.symbolic(format!("axis {axis} of {s} must have a known size")))
    }

    /// `take_along_axis`.
    pub(crate) fn gather(&mut self, x: NodeId, index: NodeId, axis: usize) -> Res {
        self.add(Op::Gather { axis }, &[x, index])
    }

    /// `target` with `src` added at `index` along `axis`.
    pub(crate) fn scatter_add(
        &mut self,
        target: NodeId,
        index: NodeId,
        src: NodeId,
        axis: usize,
    ) -> Res {
        self.add(Op::ScatterAdd { axis }, &[target, index, src])
    }

    /// Batched matrix product.
    pub(crate) fn matmul(&mut self, a: NodeId, b: NodeId) -> Res {
        self.add(Op::MatMul, &[a, b])
    }

    /// `out[...] = index along axis` as an `i64` tensor of `shape`.
    pub(crate) fn iota(&mut self, shape: &[u64], axis: usize) -> Res {
        self.add(
            Op::Iota {
                dtype: DType::I64,
                shape: Shape::new(shape.iter().copied()),
                axis,
            },
            &[],
        )
    }

    /// For windows of extent `window` (with `dilation`) sliding by `stride` over an axis
    /// block of padded sizes `padded`, producing `out` positions per axis: an `i64` tensor
    /// `[M, K]` (M = positions, K = window elements, both row-major) holding the flat
    /// row-major index into the padded block of each window element.
    pub(crate) fn window_index(
        &mut self,
        padded: &[u64],
        out: &[u64],
        window: &[u64],
        stride: &[u64],
        dilation: &[u64],
    ) -> Res {
        let k = padded.len();
        let mut full: Vec<u64> = out.to_vec();
        full.extend_from_slice(window);
        let mut total: Option<NodeId> = None;
        for d in 0..k {
            let place: u64 = padded[d + 1..].iter().product();
            let o = self.iota(&full, d)?;
            let o = self.scale_i64(o, stride[d] * place)?;
            let w = self.iota(&full, k + d)?;
            let w = self.scale_i64(w, dilation[d] * place)?;
            let term = self.add2(o, w)?;
            total = Some(match total {
                Some(t) => self.add2(t, term)?,
                None => term,
            });
        }
        let m: u64 = out.iter().product();
        let kk: u64 = window.iter().product();
        let t = match total {
            Some(t) => t,
            None => self.full(DType::I64, &Shape::known(&[]), 0.0)?,
        };
        self.reshape(t, &Shape::new([m, kk]))
    }

    fn scale_i64(&mut self, x: NodeId, v: u64) -> Res {
        if v == 1 {
            return Ok(x);
        }
        self.mul_scalar(x, v as f64)
    }

    /// `x` (shape `[B..., D...]` with `k` trailing axes `D`) padded on those axes and
    /// flattened to `[B..., P]`.
    pub(crate) fn pad_flatten(&mut self, x: NodeId, pads: &[(u64, u64)], value: f64) -> Res {
        let s = self.shape(x);
        let b = s.rank() - pads.len();
        let mut all = vec![(0, 0); b];
        all.extend_from_slice(pads);
        let xp = self.pad(x, all, value)?;
        let sp = self.shape(xp);
        let mut flat = sp.0[..b].to_vec();
        flat.push(Dim::product(&sp.0[b..]));
        self.reshape(xp, &Shape(flat))
    }

    /// `index` (an `[M, K]` or any shape) flattened and broadcast over the batch axes
    /// `batch`: `[B..., numel]`.
    pub(crate) fn batch_index(&mut self, index: NodeId, batch: &[Dim], trailing: &[Dim]) -> Res {
        let mut view = vec![Dim::known(1); batch.len()];
        view.extend_from_slice(trailing);
        let v = self.reshape(index, &Shape(view))?;
        let mut full = batch.to_vec();
        full.extend_from_slice(trailing);
        self.expand(v, &Shape(full))
    }

    /// A one-hot `dtype` tensor of `shape` with a 1 at flat position `k`.
    pub(crate) fn one_hot(&mut self, dtype: DType, shape: &Shape, n: u64, k: u64) -> Res {
        let i = self.iota(&[n], 0)?;
        let hit = self.cmp_scalar(BinaryOp::Eq, i, k as f64)?;
        let v = self.cast(hit, dtype)?;
        self.reshape(v, shape)
    }
}

/// A slice entry taking the whole axis.
pub(crate) fn whole() -> SliceAxis {
    SliceAxis {
        start: 0,
        stop: u64::MAX,
        step: 1,
    }
}
