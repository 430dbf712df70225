//! Reverse-mode rules: one vector-Jacobian product per primitive, in one exhaustive table.
//!
//! A rule gets the node, its cotangent `ct` and which operands need a gradient, and returns
//! one contribution per operand (`None` = zero). A contribution may be in the broadcast
//! shape or in another float dtype: the driver casts it and sums it down to the operand.

use super::emit::{Emitter, Res, whole};
use super::partials::{self, Window, keep};
use kiln_ir::{Dim, NodeId, Op, ReduceOp, Shape, SliceAxis, WindowOp};

fn when(need: bool, f: impl FnOnce() -> Res) -> Res<Option<NodeId>> {
    if need { f().map(Some) } else { Ok(None) }
}

/// The contributions of node `n`'s cotangent `ct` to its operands.
pub(crate) fn rule(
    em: &mut Emitter<'_>,
    n: NodeId,
    ct: NodeId,
    needs: &[bool],
) -> Res<Vec<Option<NodeId>>> {
    let op = em.g.node(n).op.clone();
    let xs = em.g.operands(n);
    let x = |i: usize| xs[i];
    Ok(match &op {
        Op::Input { .. } | Op::Parameter { .. } | Op::Constant(_) | Op::Iota { .. } => vec![],
        Op::Cond { .. } | Op::Scan { .. } | Op::While { .. } | Op::Get { .. } => {
            // The driver routes these to the control-flow rules (`control.rs`): their
            // cotangents are several results, not one node.
            return Err(em.malformed(format!("{} reached the primitive VJP table", op.name())));
        }
        Op::RandomBits { .. } | Op::StopGradient | Op::ArgReduce { .. } => vec![None; xs.len()],
        Op::Unary(u) => vec![partials::unary(em, *u, x(0), n, ct)?],
        Op::Binary(b) => vec![
            if needs[0] {
                partials::binary(em, *b, x(0), x(1), n, 0, ct)?
            } else {
                None
            },
            if needs[1] {
                partials::binary(em, *b, x(0), x(1), n, 1, ct)?
            } else {
                None
            },
        ],
        Op::Select => vec![
            None,
            when(needs[1], || em.keep_where(x(0), ct))?,
            when(needs[2], || em.zero_where(x(0), ct))?,
        ],
        Op::Cast(_) => vec![Some(ct)],
        Op::Reduce { op, axes, keepdim } => {
            vec![Some(reduce(em, *op, x(0), n, ct, axes, *keepdim)?)]
        }
        Op::Reshape(_) => vec![Some(em.reshape(ct, &em.shape(x(0)))?)],
        Op::Permute(perm) => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            vec![Some(em.permute(ct, &inv)?)]
        }
        Op::Expand(_) => vec![Some(ct)],
        Op::Slice(spec) => vec![Some(unslice(em, ct, x(0), spec)?)],
        Op::Pad { pads, .. } => vec![Some(unpad(em, ct, x(0), pads)?)],
        Op::Concat { axis } => {
            let mut out = Vec::with_capacity(xs.len());
            let mut start = 0;
            for (i, &xi) in xs.iter().enumerate() {
                let len = em.known_dim(xi, *axis)?;
                out.push(when(needs[i], || {
                    em.slice_axis(ct, *axis, start, start + len, 1)
                })?);
                start += len;
            }
            out
        }
        Op::Flip { axes } => vec![Some(em.add(Op::Flip { axes: axes.clone() }, &[ct])?)],
        Op::Gather { axis } => {
            let zeros = em.zeros_like(x(0))?;
            vec![Some(em.scatter_add(zeros, x(1), ct, *axis)?), None]
        }
        Op::ScatterAdd { axis } => vec![
            needs[0].then_some(ct),
            None,
            when(needs[2], || em.gather(ct, x(1), *axis))?,
        ],
        Op::MatMul => vec![
            when(needs[0], || {
                let bt = em.transpose_last2(x(1))?;
                em.matmul(ct, bt)
            })?,
            when(needs[1], || {
                let (sa, sb) = (em.shape(x(0)), em.shape(x(1)));
                if sb.rank() == 2 && sa.rank() > 2 {
                    // A weight broadcast over leading axes (a linear layer on [B, T, K]):
                    // its gradient sums `a_b^T ct_b` over them, which is one matmul over
                    // the flattened rows instead of a batched one and a reduction.
                    let rows = sa.0[..sa.rank() - 1]
                        .iter()
                        .fold(Dim::known(1), |p, d| p * d.clone());
                    let a2 = em.reshape(
                        x(0),
                        &Shape(vec![rows.clone(), sa.0[sa.rank() - 1].clone()]),
                    )?;
                    let c2 = em.reshape(ct, &Shape(vec![rows, sb.0[1].clone()]))?;
                    let at = em.transpose_last2(a2)?;
                    return em.matmul(at, c2);
                }
                let at = em.transpose_last2(x(0))?;
                em.matmul(at, ct)
            })?,
        ],
        Op::Conv2d {
            stride,
            padding,
            dilation,
            groups,
        } => {
            let c = Conv {
                stride: *stride,
                padding: *padding,
                dilation: *dilation,
                groups: *groups,
            };
            vec![
                when(needs[0], || c.input_grad(em, ct, x(0), x(1)))?,
                when(needs[1], || c.weight_grad(em, ct, x(0), x(1)))?,
            ]
        }
        Op::Window {
            op: w,
            window,
            stride,
            padding,
        } => {
            let geo = Window::new(em, x(0), n, window, stride, padding)?;
            let grad = match w {
                WindowOp::Max if geo.tiles() => geo.tiled_grad(em, Some((x(0), n)), ct)?,
                WindowOp::Sum if geo.tiles() => geo.tiled_grad(em, None, ct)?,
                WindowOp::Max => {
                    let mask = geo.argmax_mask(em, x(0))?;
                    let col = em.reshape(ct, &geo.shape(&[geo.m, 1]))?;
                    let rep = em.expand(col, &geo.shape(&[geo.m, geo.k]))?;
                    let picked = em.keep_where(mask, rep)?;
                    let vals = em.reshape(picked, &geo.shape(&[geo.m * geo.k]))?;
                    geo.gather_back(em, vals)?
                }
                WindowOp::Sum => {
                    let col = em.reshape(ct, &geo.shape(&[geo.m, 1]))?;
                    let rep = em.expand(col, &geo.shape(&[geo.m, geo.k]))?;
                    let vals = em.reshape(rep, &geo.shape(&[geo.m * geo.k]))?;
                    geo.gather_back(em, vals)?
                }
            };
            vec![Some(grad)]
        }
    })
}

fn reduce(
    em: &mut Emitter<'_>,
    op: ReduceOp,
    x: NodeId,
    out: NodeId,
    ct: NodeId,
    axes: &[usize],
    keepdim: bool,
) -> Res {
    let ctk = keep(em, ct, x, axes, keepdim)?;
    match op {
        ReduceOp::Sum => em.expand(ctk, &em.shape(x)),
        ReduceOp::Max | ReduceOp::Min => {
            let (mask, count) = partials::extremum_mask(em, x, out, axes, keepdim)?;
            let share = em.div(ctk, count)?;
            em.mul(mask, share)
        }
        ReduceOp::Prod => {
            let others = partials::prod_others(em, x, out, axes, keepdim)?;
            em.mul(ctk, others)
        }
    }
}

/// The adjoint of a strided slice: dilate by the step, then pad back to the input's shape.
fn unslice(em: &mut Emitter<'_>, ct: NodeId, x: NodeId, spec: &[SliceAxis]) -> Res {
    let mut y = ct;
    let mut pads = Vec::with_capacity(spec.len());
    for (i, a) in spec.iter().enumerate() {
        if *a == whole() {
            pads.push((0, 0));
            continue;
        }
        let n = em.known_dim(x, i)?;
        let len = em.known_dim(ct, i)?;
        if len == 0 {
            return em.zeros_like(x);
        }
        y = em.dilate(y, i, a.step)?;
        let span = (len - 1) * a.step + 1;
        pads.push((a.start, n - a.start - span));
    }
    em.pad(y, pads, 0.0)
}

/// The adjoint of a pad: slice the interior back out.
fn unpad(em: &mut Emitter<'_>, ct: NodeId, x: NodeId, pads: &[(u64, u64)]) -> Res {
    let mut spec = Vec::with_capacity(pads.len());
    for (i, &(lo, hi)) in pads.iter().enumerate() {
        if lo == 0 && hi == 0 {
            spec.push(whole());
        } else {
            let n = em.known_dim(x, i)?;
            spec.push(SliceAxis {
                start: lo,
                stop: lo + n,
                step: 1,
            });
        }
    }
    em.slice(ct, spec)
}

/// Parameters of a 2-D convolution.
struct Conv {
    stride: [u64; 2],
    padding: [u64; 2],
    dilation: [u64; 2],
    groups: u64,
}

impl Conv {
    /// `d x`: a stride-1 convolution of the stride-dilated, re-padded cotangent with the
    /// spatially flipped weight whose in/out channels are swapped per group.
    fn input_grad(&self, em: &mut Emitter<'_>, ct: NodeId, x: NodeId, w: NodeId) -> Res {
        let g = self.groups;
        let [o, cg, kh, kw] = [0, 1, 2, 3].map(|i| em.known_dim(w, i));
        let (o, cg, kh, kw) = (o?, cg?, kh?, kw?);
        let og = o / g;
        let swapped = if g == 1 {
            em.permute(w, &[1, 0, 2, 3])?
        } else {
            let w5 = em.reshape(w, &Shape::new([g, og, cg, kh, kw]))?;
            let w5 = em.permute(w5, &[0, 2, 1, 3, 4])?;
            em.reshape(w5, &Shape::new([g * cg, og, kh, kw]))?
        };
        let flip_axes: Vec<usize> = [(2, kh), (3, kw)]
            .iter()
            .filter(|(_, k)| *k > 1)
            .map(|(a, _)| *a)
            .collect();
        let wf = if flip_axes.is_empty() {
            swapped
        } else {
            em.add(Op::Flip { axes: flip_axes }, &[swapped])?
        };
        let mut y = ct;
        for (i, k) in [kh, kw].into_iter().enumerate() {
            let h = em.known_dim(x, 2 + i)? as i64;
            let oh = em.known_dim(ct, 2 + i)? as i64;
            let (s, p, d) = (
                self.stride[i] as i64,
                self.padding[i] as i64,
                self.dilation[i] as i64,
            );
            y = em.dilate(y, 2 + i, s as u64)?;
            let span = d * (k as i64 - 1);
            let rest = h + 2 * p - ((oh - 1) * s + 1 + span);
            y = em.pad_or_crop(y, 2 + i, span - p, span - p + rest)?;
        }
        em.add(
            Op::Conv2d {
                stride: [1, 1],
                padding: [0, 0],
                dilation: self.dilation,
                groups: g,
            },
            &[y, wf],
        )
    }

    /// `d w`. With one group and a known batch it is itself a convolution, of the input
    /// with batch and channels swapped by the swapped cotangent (stride and dilation trade
    /// places), so it runs on the backends' conv kernels. Otherwise: im2col patches of the
    /// padded input (a gather at window indices) contracted with the cotangent over batch and
    /// output positions, per group.
    fn weight_grad(&self, em: &mut Emitter<'_>, ct: NodeId, x: NodeId, w: NodeId) -> Res {
        if self.groups == 1 && em.shape(x).0[0].as_known().is_some() {
            return self.weight_grad_by_conv(em, ct, x, w);
        }
        self.weight_grad_by_im2col(em, ct, x, w)
    }

    /// `d w[o, c, ky, kx] = Σ_{n, y, x} ct[n, o, y, x] · xpad[n, c, y·s + ky·d, x·s + kx·d]`:
    /// a convolution of `x` read as `[C, N, H, W]` with `ct` read as `[O, N, OH, OW]`, stride
    /// `d` and dilation `s`, cropped to the kernel size (a floor-mode remainder can make the
    /// result one or more taps larger) and transposed to `[O, C, KH, KW]`.
    fn weight_grad_by_conv(&self, em: &mut Emitter<'_>, ct: NodeId, x: NodeId, w: NodeId) -> Res {
        let (kh, kw) = (em.known_dim(w, 2)?, em.known_dim(w, 3)?);
        let xs = em.permute(x, &[1, 0, 2, 3])?;
        let cs = em.permute(ct, &[1, 0, 2, 3])?;
        let full = em.add(
            Op::Conv2d {
                stride: self.dilation,
                padding: self.padding,
                dilation: self.stride,
                groups: 1,
            },
            &[xs, cs],
        )?;
        let cropped = em.slice(
            full,
            vec![
                whole(),
                whole(),
                SliceAxis {
                    start: 0,
                    stop: kh,
                    step: 1,
                },
                SliceAxis {
                    start: 0,
                    stop: kw,
                    step: 1,
                },
            ],
        )?;
        em.permute(cropped, &[1, 0, 2, 3])
    }

    /// `d w` by im2col: see [`Conv::weight_grad`].
    fn weight_grad_by_im2col(&self, em: &mut Emitter<'_>, ct: NodeId, x: NodeId, w: NodeId) -> Res {
        let g = self.groups;
        let n = em.shape(x).0[0].clone();
        let c = em.known_dim(x, 1)?;
        let [o, cg, kh, kw] = [0, 1, 2, 3].map(|i| em.known_dim(w, i));
        let (o, cg, kh, kw) = (o?, cg?, kh?, kw?);
        let og = o / g;
        let (oh, ow) = (em.known_dim(ct, 2)?, em.known_dim(ct, 3)?);
        let (h, wd) = (em.known_dim(x, 2)?, em.known_dim(x, 3)?);
        let [ph, pw] = self.padding;
        let padded = [h + 2 * ph, wd + 2 * pw];
        let (m, k) = (oh * ow, kh * kw);
        let xf = em.pad_flatten(x, &[(ph, ph), (pw, pw)], 0.0)?;
        let idx = em.window_index(&padded, &[oh, ow], &[kh, kw], &self.stride, &self.dilation)?;
        let idx = em.batch_index(idx, &[n.clone(), Dim::known(c)], &[Dim::known(m * k)])?;
        let patches = em.gather(xf, idx, 2)?;
        let dk = Dim::known;
        let p5 = em.reshape(
            patches,
            &Shape(vec![n.clone(), dk(g), dk(cg), dk(m), dk(k)]),
        )?;
        let p5 = em.permute(p5, &[1, 0, 3, 2, 4])?;
        let nm = &n * &dk(m);
        let pm = em.reshape(p5, &Shape(vec![dk(g), nm.clone(), dk(cg * k)]))?;
        let c4 = em.reshape(ct, &Shape(vec![n, dk(g), dk(og), dk(m)]))?;
        let c4 = em.permute(c4, &[1, 2, 0, 3])?;
        let cm = em.reshape(c4, &Shape(vec![dk(g), dk(og), nm]))?;
        let dw = em.matmul(cm, pm)?;
        em.reshape(dw, &Shape::new([o, cg, kh, kw]))
    }
}
