//! Derivative pieces shared by the VJP and JVP tables: elementwise partials applied to a
//! cotangent or tangent `v`, the masks of max/min and prod reductions, and window geometry.

use super::emit::{Emitter, Res};
use kiln_ir::infer::reduced_shape;
use kiln_ir::{ArgOp, BinaryOp, Dim, NodeId, Op, ReduceOp, Shape, UnaryOp};

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
        UnaryOp::Atan => {
            let one = em.scalar_like(x, 1.0)?;
            let sq = em.mul(x, x)?;
            let den = em.binary(BinaryOp::Add, one, sq)?;
            return em.div(v, den).map(Some);
        }
        UnaryOp::Asin => {
            let one = em.scalar_like(x, 1.0)?;
            let sq = em.mul(x, x)?;
            let rest = em.sub(one, sq)?;
            let den = em.unary(UnaryOp::Sqrt, rest)?;
            return em.div(v, den).map(Some);
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
    /// Output positions (product of output window-axis sizes).
    pub(crate) m: u64,
    /// Elements per window.
    pub(crate) k: u64,
    /// Output sizes of the window axes.
    outs: Vec<u64>,
    /// Window sizes.
    window: Vec<u64>,
    /// Strides.
    stride: Vec<u64>,
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
        Ok(Window {
            batch: xs.0[..b].to_vec(),
            dims,
            pads: padding.to_vec(),
            m: outs.iter().product(),
            k: window.iter().product(),
            outs,
            window: window.to_vec(),
            stride: stride.to_vec(),
        })
    }

    fn b(&self) -> usize {
        self.batch.len()
    }

    /// Flat padded index of every window element, `i64[M, K]` (built on demand: the tiling
    /// gradient does not need it).
    pub(crate) fn index(&self, em: &mut Emitter<'_>) -> Res {
        let padded: Vec<u64> = self
            .dims
            .iter()
            .zip(&self.pads)
            .map(|(d, (lo, hi))| d + lo + hi)
            .collect();
        let ones = vec![1; self.dims.len()];
        em.window_index(&padded, &self.outs, &self.window, &self.stride, &ones)
    }

    /// `[B..., tail...]`.
    pub(crate) fn shape(&self, tail: &[u64]) -> Shape {
        let mut s = self.batch.clone();
        s.extend(tail.iter().map(|&t| Dim::known(t)));
        Shape(s)
    }

    /// For window max: the position within its window (`i64[B..., M, 1]`) of the first
    /// maximal element of each window (NaN counts as maximal, as in the forward op), and the
    /// window index table it was read through.
    fn first_max(&self, em: &mut Emitter<'_>, x: NodeId) -> Res<(NodeId, NodeId)> {
        let b = self.b();
        let xf = em.pad_flatten(x, &self.pads, f64::NEG_INFINITY)?;
        let mk = Dim::known(self.m * self.k);
        let index = self.index(em)?;
        let idx = em.batch_index(index, &self.batch, &[mk])?;
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
        Ok((first, index))
    }

    /// For window max: the flat padded index of the first maximal element of each window,
    /// `i64[B..., M]` (NaN counts as maximal, as in the forward op).
    pub(crate) fn argmax_index(&self, em: &mut Emitter<'_>, x: NodeId) -> Res {
        let (first, index) = self.first_max(em, x)?;
        let idx2 = em.batch_index(
            index,
            &self.batch,
            &[Dim::known(self.m), Dim::known(self.k)],
        )?;
        let chosen = em.gather(idx2, first, self.b() + 1)?;
        em.reshape(chosen, &self.shape(&[self.m]))
    }

    /// True when the windows tile the input: stride equal to the window, no padding. Then
    /// each input element is read by at most one window and the gradients are reshapes
    /// (see [`Window::tiled_grad`]).
    pub(crate) fn tiles(&self) -> bool {
        self.stride == self.window && self.pads.iter().all(|&(a, b)| a == 0 && b == 0)
    }

    /// The gradient of a tiling window op ([`Window::tiles`]) without gathers: the input is
    /// cropped to whole windows and viewed as `[B..., O1, w1, ..., Ok, wk]`; for max, the
    /// first maximal element of each window (NaN counts as maximal, as in the forward op) is
    /// the lowest position, over the window axes moved last, equal to the pooled value `out`
    /// (`max` is `(x, out)`); the cotangent is broadcast over
    /// each window (masked for max), put back in place and zero-padded over the remainder
    /// rows the floor-mode windows never read.
    pub(crate) fn tiled_grad(
        &self,
        em: &mut Emitter<'_>,
        max: Option<(NodeId, NodeId)>,
        ct: NodeId,
    ) -> Res {
        let b = self.b();
        let k = self.dims.len();
        let dk = Dim::known;
        let mut split = self.batch.clone();
        let mut moved = self.batch.clone();
        let mut perm: Vec<usize> = (0..b).collect();
        for i in 0..k {
            split.push(dk(self.outs[i]));
            split.push(dk(self.window[i]));
            perm.push(b + 2 * i);
        }
        for i in 0..k {
            perm.push(b + 2 * i + 1);
        }
        for i in 0..k {
            moved.push(dk(self.outs[i]));
        }
        let mut col = moved.clone();
        col.push(dk(1));
        let mut flat = moved.clone();
        flat.push(dk(self.k));
        let ctc = em.reshape(ct, &Shape(col.clone()))?;
        let ctk = em.expand(ctc, &Shape(flat.clone()))?;
        let vals = match max {
            Some((x, out)) => {
                let mut spec = vec![super::emit::whole(); b];
                for i in 0..k {
                    spec.push(kiln_ir::SliceAxis {
                        start: 0,
                        stop: self.outs[i] * self.window[i],
                        step: 1,
                    });
                }
                let cropped = em.slice(x, spec)?;
                let tiles = em.reshape(cropped, &Shape(split.clone()))?;
                let tiles = em.permute(tiles, &perm)?;
                let tiles = em.reshape(tiles, &Shape(flat.clone()))?;
                // First maximum: the lowest window position holding the pooled value (or a
                // NaN, which the pooled value then is), one reduction reading the forward
                // output instead of an argmax's two passes.
                let yk = em.reshape(out, &Shape(col.clone()))?;
                let yk = em.expand(yk, &Shape(flat.clone()))?;
                let hit = em.binary(BinaryOp::Eq, tiles, yk)?;
                let nan = em.unary(UnaryOp::IsNan, tiles)?;
                let hit = em.binary(BinaryOp::Or, hit, nan)?;
                let mut tail: Vec<u64> = self.outs.clone();
                tail.push(self.k);
                let at = em.iota(&tail, k)?;
                let tail: Vec<Dim> = tail.into_iter().map(dk).collect();
                let at = em.batch_index(at, &self.batch, &tail)?;
                let none = em.scalar(kiln_ir::DType::I64, self.k as f64)?;
                let cand = em.select(hit, at, none)?;
                let first = em.reduce(ReduceOp::Min, cand, &[b + k], true)?;
                let first = em.expand(first, &Shape(flat.clone()))?;
                let mask = em.binary(BinaryOp::Eq, at, first)?;
                em.keep_where(mask, ctk)?
            }
            None => ctk,
        };
        let mut unmoved = moved;
        unmoved.extend(self.window.iter().map(|&w| dk(w)));
        let vals = em.reshape(vals, &Shape(unmoved))?;
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        let vals = em.permute(vals, &inverse)?;
        let mut whole_tiles = self.batch.clone();
        whole_tiles.extend((0..k).map(|i| dk(self.outs[i] * self.window[i])));
        let grid = em.reshape(vals, &Shape(whole_tiles))?;
        let mut pads = vec![(0, 0); b];
        pads.extend((0..k).map(|i| (0, self.dims[i] - self.outs[i] * self.window[i])));
        em.pad(grid, pads, 0.0)
    }

    /// For window max: the mask `bool[B..., M, K]` of the first maximal element of each
    /// window (NaN counts as maximal, as in the forward op).
    pub(crate) fn argmax_mask(&self, em: &mut Emitter<'_>, x: NodeId) -> Res {
        let (first, _) = self.first_max(em, x)?;
        let first = em.expand(first, &self.shape(&[self.m, self.k]))?;
        let at = em.iota(&[self.m, self.k], 1)?;
        let at = em.batch_index(at, &self.batch, &[Dim::known(self.m), Dim::known(self.k)])?;
        em.binary(BinaryOp::Eq, at, first)
    }

    /// The adjoint of reading every window element: `vals` (`[B..., M*K]`, one value per
    /// window element) summed into the input position each element was read from, shaped
    /// like the window's input. Padding positions are dropped.
    ///
    /// The sources of every input position are a fixed, data-independent list, so the sum is
    /// a gather with a constant `[Q, T]` table (`Q` input positions, `T` the most windows
    /// covering one position, `⌈window/stride⌉` per axis) followed by a sum over `T`: linear
    /// in the input size, where a scatter lowered to gathers would visit every window for every
    /// position. Sources are listed in increasing flat order, the order a scatter-add
    /// would add them in; missing ones read an appended zero.
    pub(crate) fn gather_back(&self, em: &mut Emitter<'_>, vals: NodeId) -> Res {
        let b = self.b();
        let sources = self.sources();
        let q = sources.len();
        let t = sources.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let sentinel = (self.m * self.k) as i64;
        let mut table = Vec::with_capacity(q * t);
        for list in &sources {
            table.extend(list.iter().map(|&l| l as i64));
            table.extend(std::iter::repeat_n(sentinel, t - list.len()));
        }
        let table = kiln_ir::Array::from_i64(&[q * t], table)
            .map_err(|e| em.malformed(format!("window gradient table: {e}")))?;
        let table = em.add(Op::Constant(table), &[])?;
        let mut pads = vec![(0, 0); b];
        pads.push((0, 1));
        let padded = em.pad(vals, pads, 0.0)?;
        let qt = Dim::known((q * t) as u64);
        let idx = em.batch_index(table, &self.batch, &[qt])?;
        let picked = em.gather(padded, idx, b)?;
        let mut tail: Vec<u64> = self.dims.clone();
        let per = if t > 1 {
            tail.push(t as u64);
            let grid = em.reshape(picked, &self.shape(&tail))?;
            em.sum(grid, &[b + self.dims.len()], false)?
        } else {
            picked
        };
        em.reshape(per, &self.shape(&self.dims))
    }

    /// For every unpadded input position (row-major over the window axes), the flat
    /// `m * K + k` positions of the window elements that read it, in increasing order.
    fn sources(&self) -> Vec<Vec<u64>> {
        let rank = self.dims.len();
        let q: u64 = self.dims.iter().product();
        let mut out = vec![Vec::new(); q as usize];
        let mut o = vec![0u64; rank];
        let mut w = vec![0u64; rank];
        for m in 0..self.m {
            let mut r = m;
            for d in (0..rank).rev() {
                o[d] = r % self.outs[d];
                r /= self.outs[d];
            }
            for kk in 0..self.k {
                let mut r = kk;
                for d in (0..rank).rev() {
                    w[d] = r % self.window[d];
                    r /= self.window[d];
                }
                let mut flat = 0u64;
                let mut inside = true;
                for d in 0..rank {
                    let p = o[d] * self.stride[d] + w[d];
                    let lo = self.pads[d].0;
                    if p < lo || p - lo >= self.dims[d] {
                        inside = false;
                        break;
                    }
                    flat = flat * self.dims[d] + (p - lo);
                }
                if inside {
                    out[flat as usize].push(m * self.k + kk);
                }
            }
        }
        out
    }
}
