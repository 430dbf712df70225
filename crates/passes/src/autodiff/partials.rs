//! Derivative pieces shared by the VJP and JVP tables: elementwise partials applied to a
//! cotangent or tangent `v`, the masks of max/min and prod reductions, and window geometry.

use super::emit::{Emitter, Res, whole};
use kiln_ir::infer::reduced_shape;
use kiln_ir::{ArgOp, BinaryOp, Dim, NodeId, Op, ReduceOp, Shape, SliceAxis, UnaryOp};

/// `v * d out / d x` for `out = u(x)`; `None` where the derivative is zero.
pub(crate) fn unary(
    em: &mut Emitter<'_>,
    u: UnaryOp,
    x: NodeId,
    out: NodeId,
    v: NodeId,
) -> Res<Option<NodeId>> {
    let d = match u {
        UnaryOp::Neg => return em.neg(v).map(Some),
        UnaryOp::Abs => em.unary(UnaryOp::Sign, x)?,
        UnaryOp::Exp => out,
        UnaryOp::Log => return em.div(v, x).map(Some),
        UnaryOp::Sqrt => {
            let twice = em.mul_scalar(out, 2.0)?;
            return em.div(v, twice).map(Some);
        }
        UnaryOp::Rsqrt => {
            let sq = em.mul(out, out)?;
            let cube = em.mul(sq, out)?;
            em.mul_scalar(cube, -0.5)?
        }
        UnaryOp::Recip => {
            let sq = em.mul(out, out)?;
            let m = em.mul(v, sq)?;
            return em.neg(m).map(Some);
        }
        UnaryOp::Sin => em.unary(UnaryOp::Cos, x)?,
        UnaryOp::Cos => {
            let s = em.unary(UnaryOp::Sin, x)?;
            let m = em.mul(v, s)?;
            return em.neg(m).map(Some);
        }
        UnaryOp::Tanh => {
            let one = em.scalar_like(out, 1.0)?;
            let sq = em.mul(out, out)?;
            em.sub(one, sq)?
        }
        UnaryOp::Sigmoid => {
            let one = em.scalar_like(out, 1.0)?;
            let rest = em.sub(one, out)?;
            em.mul(out, rest)?
        }
        UnaryOp::Erf => {
            let sq = em.mul(x, x)?;
            let e = em.neg(sq)?;
            let e = em.unary(UnaryOp::Exp, e)?;
            em.mul_scalar(e, std::f64::consts::FRAC_2_SQRT_PI)?
        }
        UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::Sign
        | UnaryOp::Not
        | UnaryOp::IsNan => {
            return Ok(None);
        }
    };
    em.mul(v, d).map(Some)
}

/// `v * d out / d operand_i` for `out = b(a, c)`, in the broadcast shape; `None` where the
/// derivative is zero.
pub(crate) fn binary(
    em: &mut Emitter<'_>,
    b: BinaryOp,
    a: NodeId,
    c: NodeId,
    out: NodeId,
    i: usize,
    v: NodeId,
) -> Res<Option<NodeId>> {
    let r = match (b, i) {
        (BinaryOp::Add, _) | (BinaryOp::Sub | BinaryOp::Rem, 0) => v,
        (BinaryOp::Sub, _) => em.neg(v)?,
        (BinaryOp::Mul, 0) => em.mul(v, c)?,
        (BinaryOp::Mul, _) => em.mul(v, a)?,
        (BinaryOp::Div, 0) => em.div(v, c)?,
        (BinaryOp::Div, _) => {
            let m = em.mul(v, out)?;
            let q = em.div(m, c)?;
            em.neg(q)?
        }
        (BinaryOp::Rem, _) => {
            let q = em.div(a, c)?;
            let f = em.unary(UnaryOp::Floor, q)?;
            let m = em.mul(v, f)?;
            em.neg(m)?
        }
        (BinaryOp::Pow, 0) => {
            let zero_exp = em.cmp_scalar(BinaryOp::Eq, c, 0.0)?;
            let one = em.scalar_like(c, 1.0)?;
            let cm1 = em.sub(c, one)?;
            let p = em.binary(BinaryOp::Pow, a, cm1)?;
            let d = em.mul(c, p)?;
            let m = em.mul(v, d)?;
            em.zero_where(zero_exp, m)?
        }
        (BinaryOp::Pow, _) => {
            let zero_base = em.cmp_scalar(BinaryOp::Eq, a, 0.0)?;
            let nonneg = em.cmp_scalar(BinaryOp::Ge, c, 0.0)?;
            let cond = em.binary(BinaryOp::And, zero_base, nonneg)?;
            let one = em.scalar_like(a, 1.0)?;
            let safe = em.select(zero_base, one, a)?;
            let l = em.unary(UnaryOp::Log, safe)?;
            let d = em.mul(out, l)?;
            let m = em.mul(v, d)?;
            em.zero_where(cond, m)?
        }
        (BinaryOp::Max | BinaryOp::Min, _) => {
            let tie = em.binary(BinaryOp::Eq, a, c)?;
            let h = em.mul_scalar(v, 0.5)?;
            let half = em.select(tie, h, v)?;
            let loses = match (b, i) {
                (BinaryOp::Max, 0) | (BinaryOp::Min, 1) => BinaryOp::Lt,
                _ => BinaryOp::Gt,
            };
            let lose = em.binary(loses, a, c)?;
            em.zero_where(lose, half)?
        }
        (
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::And
            | BinaryOp::Or
            | BinaryOp::Xor,
            _,
        ) => return Ok(None),
    };
    Ok(Some(r))
}

/// `y` (a reduction of `x` over `axes`) with the reduced axes kept as size 1.
pub(crate) fn keep(
    em: &mut Emitter<'_>,
    y: NodeId,
    x: NodeId,
    axes: &[usize],
    keepdim: bool,
) -> Res {
    if keepdim {
        return Ok(y);
    }
    let s = reduced_shape(&em.shape(x), axes, true);
    em.reshape(y, &s)
}

/// For `out = reduce_max/min(x)`: the tie mask `x == out` in `x`'s dtype and the number of
/// tied elements per reduced slice (keepdim).
pub(crate) fn extremum_mask(
    em: &mut Emitter<'_>,
    x: NodeId,
    out: NodeId,
    axes: &[usize],
    keepdim: bool,
) -> Res<(NodeId, NodeId)> {
    let yk = keep(em, out, x, axes, keepdim)?;
    let hit = em.binary(BinaryOp::Eq, x, yk)?;
    let mask = em.cast(hit, em.dtype(x))?;
    let count = em.sum(mask, axes, true)?;
    Ok((mask, count))
}

/// For `out = reduce_prod(x)`: `d out / d x`, the product of the other elements of each
/// slice, exact when `x` holds zeros.
pub(crate) fn prod_others(
    em: &mut Emitter<'_>,
    x: NodeId,
    out: NodeId,
    axes: &[usize],
    keepdim: bool,
) -> Res {
    let zero = em.cmp_scalar(BinaryOp::Eq, x, 0.0)?;
    let zf = em.cast(zero, em.dtype(x))?;
    let zeros = em.sum(zf, axes, true)?;
    let one = em.scalar_like(x, 1.0)?;
    let safe = em.select(zero, one, x)?;
    let nonzero_prod = em.reduce(ReduceOp::Prod, safe, axes, true)?;
    let single = em.cmp_scalar(BinaryOp::Eq, zeros, 1.0)?;
    let at_zero = em.keep_where(single, nonzero_prod)?;
    let yk = keep(em, out, x, axes, keepdim)?;
    let elsewhere = em.div(yk, safe)?;
    em.select(zero, at_zero, elsewhere)
}

/// The geometry of a windowed reduction of `x` (`[B..., D...]`, `k` window axes).
pub(crate) struct Window {
    /// Leading (batch) dims.
    pub(crate) batch: Vec<Dim>,
    /// Window-axis sizes.
    pub(crate) dims: Vec<u64>,
    /// `(before, after)` padding per window axis.
    pub(crate) pads: Vec<(u64, u64)>,
    /// Padded window-axis sizes.
    pub(crate) padded: Vec<u64>,
    /// Output positions (product of output window-axis sizes).
    pub(crate) m: u64,
    /// Elements per window.
    pub(crate) k: u64,
    /// Flat padded index of every window element, `i64[M, K]`.
    pub(crate) index: NodeId,
}

impl Window {
    /// Builds the geometry of `out = window(x)`.
    pub(crate) fn new(
        em: &mut Emitter<'_>,
        x: NodeId,
        out: NodeId,
        window: &[u64],
        stride: &[u64],
        padding: &[(u64, u64)],
    ) -> Res<Window> {
        let xs = em.shape(x);
        let k = window.len();
        let b = xs.rank() - k;
        let mut dims = Vec::with_capacity(k);
        let mut outs = Vec::with_capacity(k);
        for i in 0..k {
            dims.push(em.known_dim(x, b + i)?);
            outs.push(em.known_dim(out, b + i)?);
        }
        let padded: Vec<u64> = dims
            .iter()
            .zip(padding)
            .map(|(d, (lo, hi))| d + lo + hi)
            .collect();
        let index = em.window_index(&padded, &outs, window, stride, &vec![1; k])?;
        Ok(Window {
            batch: xs.0[..b].to_vec(),
            dims,
            pads: padding.to_vec(),
            padded,
            m: outs.iter().product(),
            k: window.iter().product(),
            index,
        })
    }

    fn b(&self) -> usize {
        self.batch.len()
    }

    /// `[B..., tail...]`.
    pub(crate) fn shape(&self, tail: &[u64]) -> Shape {
        let mut s = self.batch.clone();
        s.extend(tail.iter().map(|&t| Dim::known(t)));
        Shape(s)
    }

    /// For window max: the flat padded index of the first maximal element of each window,
    /// `i64[B..., M]` (NaN counts as maximal, as in the forward op).
    pub(crate) fn argmax_index(&self, em: &mut Emitter<'_>, x: NodeId) -> Res {
        let b = self.b();
        let xf = em.pad_flatten(x, &self.pads, f64::NEG_INFINITY)?;
        let mk = Dim::known(self.m * self.k);
        let idx = em.batch_index(self.index, &self.batch, &[mk])?;
        let patches = em.gather(xf, idx, b)?;
        let patches = em.reshape(patches, &self.shape(&[self.m, self.k]))?;
        let first = em.add(
            Op::ArgReduce {
                op: ArgOp::ArgMax,
                axis: b + 1,
                keepdim: true,
            },
            &[patches],
        )?;
        let idx2 = em.batch_index(
            self.index,
            &self.batch,
            &[Dim::known(self.m), Dim::known(self.k)],
        )?;
        let chosen = em.gather(idx2, first, b + 1)?;
        em.reshape(chosen, &self.shape(&[self.m]))
    }

    /// Every window element's flat padded index broadcast over the batch, `i64[B..., M*K]`.
    pub(crate) fn all_index(&self, em: &mut Emitter<'_>) -> Res {
        em.batch_index(self.index, &self.batch, &[Dim::known(self.m * self.k)])
    }

    /// Adds `src` (`[B..., L]`) at flat padded positions `index` (`[B..., L]`) into zeros and
    /// returns the unpadded result shaped like the window's input.
    pub(crate) fn scatter_back(&self, em: &mut Emitter<'_>, index: NodeId, src: NodeId) -> Res {
        let b = self.b();
        let p: u64 = self.padded.iter().product();
        let zeros = em.full(em.dtype(src), &self.shape(&[p]), 0.0)?;
        let flat = em.scatter_add(zeros, index, src, b)?;
        let grid = em.reshape(flat, &self.shape(&self.padded))?;
        let mut spec = vec![whole(); b];
        for (d, (lo, _)) in self.dims.iter().zip(&self.pads) {
            spec.push(SliceAxis {
                start: *lo,
                stop: lo + d,
                step: 1,
            });
        }
        em.slice(grid, spec)
    }
}
