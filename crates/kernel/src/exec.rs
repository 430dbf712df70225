//! The kernel-IR executor: runs a verified program on host buffers with plain loops. It is
//! the "kernel IR interpreter" that differential tests compare with the graph interpreter,
//! so it favours obvious correctness over speed (float reductions and contractions
//! accumulate in `f64`). Every buffer is its own allocation: the executor does not use the
//! memory plan ([`crate::memplan`]), whose sharing the CPU engine's arena exercises.

use crate::bind::{BindError, Binding};
use crate::ids::{BufferId, KernelId};
use crate::index::IndexExpr;
use crate::program::{
    Body, BufferKind, Conv2dKernel, Expr, Kernel, LoadMode, LoopKernel, MatmulKernel, Program,
};
use crate::scalar::Scalar;
use crate::schedule::Step;
use crate::verify::VerifiedProgram;
use kiln_ir::semantics::{max_f, min_f};
use kiln_ir::{BinaryOp, DType, Data, Dim, ReduceOp, UnaryOp};
use std::collections::HashMap;

/// Why a program could not be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// The bindings, or the supplied buffers, do not fit the program.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// An index, divisor or domain does not fit 64 bits (or memory) under the bindings.
    #[error("{0} overflows under the given bindings")]
    Overflow(String),
    /// A checked load read outside its buffer (the error flag of the checked-load contract).
    #[error("{kernel}: load of {buffer} at index {index} is outside 0..{size}")]
    IndexOutOfBounds {
        /// Kernel.
        kernel: KernelId,
        /// Buffer read.
        buffer: BufferId,
        /// The offending index.
        index: i64,
        /// The buffer's length.
        size: usize,
    },
    /// The schedule names a buffer or kernel that does not fit (a bug in a producer).
    #[error("schedule: {0}")]
    Schedule(String),
    /// A scalar op failed (integer division by zero).
    #[error("{kernel}: {message}")]
    Scalar {
        /// Kernel.
        kernel: KernelId,
        /// The scalar error.
        message: String,
    },
}

/// Bindings checked against the program's symbols.
struct Env {
    binding: Binding,
}

impl Env {
    fn new(program: &Program, bindings: &HashMap<String, u64>) -> Result<Env, ExecError> {
        Ok(Env {
            binding: program.bind(bindings)?,
        })
    }

    fn eval(&self, d: &Dim) -> Result<i64, ExecError> {
        Ok(self.binding.eval(d)?)
    }

    fn extent(&self, d: &Dim) -> Result<usize, ExecError> {
        Ok(self.binding.len(d)?)
    }

    fn extents(&self, ds: &[Dim]) -> Result<Vec<usize>, ExecError> {
        ds.iter().map(|d| self.extent(d)).collect()
    }
}

/// An index expression with its dims evaluated.
enum Ix {
    Const(i64),
    Var(usize),
    Red(usize),
    Value(usize),
    Add(Box<Ix>, Box<Ix>),
    Sub(Box<Ix>, Box<Ix>),
    Mul(Box<Ix>, Box<Ix>),
    Div(Box<Ix>, i64),
    Mod(Box<Ix>, i64),
}

fn compile_ix(e: &IndexExpr, env: &Env) -> Result<Ix, ExecError> {
    let divisor = |d: &Dim| -> Result<i64, ExecError> {
        let v = env.eval(d)?;
        if v >= 1 {
            Ok(v)
        } else {
            Err(ExecError::Overflow(format!("divisor `{d}` = {v}")))
        }
    };
    let bx = |x: &IndexExpr| compile_ix(x, env).map(Box::new);
    Ok(match e {
        IndexExpr::Dim(d) => Ix::Const(env.eval(d)?),
        IndexExpr::Var(v) => Ix::Var(v.index()),
        IndexExpr::Red(r) => Ix::Red(r.index()),
        IndexExpr::Value(v) => Ix::Value(v.index()),
        IndexExpr::Add(a, b) => Ix::Add(bx(a)?, bx(b)?),
        IndexExpr::Sub(a, b) => Ix::Sub(bx(a)?, bx(b)?),
        IndexExpr::Mul(a, b) => Ix::Mul(bx(a)?, bx(b)?),
        IndexExpr::Div(a, d) => Ix::Div(bx(a)?, divisor(d)?),
        IndexExpr::Mod(a, d) => Ix::Mod(bx(a)?, divisor(d)?),
    })
}

/// Where a body is being evaluated: loop and reduction variables, the values so far, and
/// the contraction accumulator.
struct Point<'a> {
    vars: &'a [usize],
    reds: &'a [usize],
    vals: &'a [Scalar],
    acc: Option<Scalar>,
}

fn eval_ix(ix: &Ix, pt: &Point<'_>) -> Option<i64> {
    Some(match ix {
        Ix::Const(c) => *c,
        Ix::Var(k) => i64::try_from(*pt.vars.get(*k)?).ok()?,
        Ix::Red(k) => i64::try_from(*pt.reds.get(*k)?).ok()?,
        Ix::Value(k) => pt.vals.get(*k)?.as_i64()?,
        Ix::Add(a, b) => eval_ix(a, pt)?.checked_add(eval_ix(b, pt)?)?,
        Ix::Sub(a, b) => eval_ix(a, pt)?.checked_sub(eval_ix(b, pt)?)?,
        Ix::Mul(a, b) => eval_ix(a, pt)?.checked_mul(eval_ix(b, pt)?)?,
        Ix::Div(a, d) => eval_ix(a, pt)?.div_euclid(*d),
        Ix::Mod(a, d) => eval_ix(a, pt)?.rem_euclid(*d),
    })
}

enum Mode {
    Plain,
    Masked(Vec<(Ix, Ix, Ix)>, Scalar),
    Checked,
}

enum Node {
    Const(Scalar),
    Index(DType, Ix),
    Load {
        buf: usize,
        ix: Ix,
        mode: Mode,
    },
    Unary(UnaryOp, usize),
    Binary(BinaryOp, usize, usize),
    Select(usize, usize, usize),
    Cast(DType, usize),
    Reduce {
        op: ReduceOp,
        value: usize,
        init: Scalar,
    },
    Acc,
}

struct CStore {
    buf: usize,
    ix: Ix,
    value: usize,
}

/// A body with its index expressions compiled.
struct CBody {
    nodes: Vec<Node>,
    stores: Vec<CStore>,
    result: Option<usize>,
}

fn compile_body(body: &Body, env: &Env) -> Result<CBody, ExecError> {
    let mut nodes = Vec::with_capacity(body.values.len());
    for e in &body.values {
        nodes.push(match e {
            Expr::Const(s) => Node::Const(*s),
            Expr::Index { dtype, index } => Node::Index(*dtype, compile_ix(index, env)?),
            Expr::Load(l) => Node::Load {
                buf: l.buffer.index(),
                ix: compile_ix(&l.index, env)?,
                mode: match &l.mode {
                    LoadMode::Plain => Mode::Plain,
                    LoadMode::Checked => Mode::Checked,
                    LoadMode::Masked { guards, fill } => Mode::Masked(
                        guards
                            .iter()
                            .map(|g| {
                                Ok((
                                    compile_ix(&g.lo, env)?,
                                    compile_ix(&g.expr, env)?,
                                    compile_ix(&g.hi, env)?,
                                ))
                            })
                            .collect::<Result<Vec<_>, ExecError>>()?,
                        *fill,
                    ),
                },
            },
            Expr::Unary(op, a) => Node::Unary(*op, a.index()),
            Expr::Binary(op, a, b) => Node::Binary(*op, a.index(), b.index()),
            Expr::Select(c, a, b) => Node::Select(c.index(), a.index(), b.index()),
            Expr::Cast(d, a) => Node::Cast(*d, a.index()),
            Expr::Reduce { op, value, init } => Node::Reduce {
                op: *op,
                value: value.index(),
                init: *init,
            },
            Expr::Acc => Node::Acc,
        });
    }
    let stores = body
        .stores
        .iter()
        .map(|s| {
            Ok(CStore {
                buf: s.buffer.index(),
                ix: compile_ix(&s.index, env)?,
                value: s.value.index(),
            })
        })
        .collect::<Result<Vec<_>, ExecError>>()?;
    Ok(CBody {
        nodes,
        stores,
        result: body.result.map(|r| r.index()),
    })
}

fn read(data: &Data, i: usize) -> Option<Scalar> {
    match data {
        Data::F32(v) => v.get(i).map(|&x| Scalar::F32(x)),
        Data::F64(v) => v.get(i).map(|&x| Scalar::F64(x)),
        Data::I32(v) => v.get(i).map(|&x| Scalar::I32(x)),
        Data::I64(v) => v.get(i).map(|&x| Scalar::I64(x)),
        Data::U32(v) => v.get(i).map(|&x| Scalar::U32(x)),
        Data::Bool(v) => v.get(i).map(|&x| Scalar::Bool(x)),
    }
}

fn write(data: &mut Data, i: usize, s: Scalar) -> bool {
    fn put<T>(v: &mut [T], i: usize, x: T) -> bool {
        v.get_mut(i).map(|slot| *slot = x).is_some()
    }
    match (data, s) {
        (Data::F32(v), Scalar::F32(x)) => put(v, i, x),
        (Data::F64(v), Scalar::F64(x)) => put(v, i, x),
        (Data::I32(v), Scalar::I32(x)) => put(v, i, x),
        (Data::I64(v), Scalar::I64(x)) => put(v, i, x),
        (Data::U32(v), Scalar::U32(x)) => put(v, i, x),
        (Data::Bool(v), Scalar::Bool(x)) => put(v, i, x),
        _ => false,
    }
}

/// Runs kernels against the buffers; carries the kernel id for errors.
struct Runner<'a> {
    kernel: KernelId,
    bufs: &'a mut [Data],
}

impl Runner<'_> {
    fn oob(&self, buf: usize, index: i64) -> ExecError {
        ExecError::IndexOutOfBounds {
            kernel: self.kernel,
            buffer: BufferId(u32::try_from(buf).unwrap_or(u32::MAX)),
            index,
            size: self.bufs.get(buf).map_or(0, Data::len),
        }
    }

    fn index(&self, ix: &Ix, pt: &Point<'_>) -> Result<i64, ExecError> {
        eval_ix(ix, pt).ok_or_else(|| ExecError::Overflow(format!("{}: an index", self.kernel)))
    }

    fn load(&self, buf: usize, i: i64) -> Result<Scalar, ExecError> {
        let data = self.bufs.get(buf).ok_or_else(|| self.oob(buf, i))?;
        usize::try_from(i)
            .ok()
            .and_then(|u| read(data, u))
            .ok_or_else(|| self.oob(buf, i))
    }

    fn scalar_err(&self, e: crate::scalar::ScalarError) -> ExecError {
        ExecError::Scalar {
            kernel: self.kernel,
            message: e.to_string(),
        }
    }

    fn eval_node(&self, node: &Node, pt: &Point<'_>) -> Result<Scalar, ExecError> {
        let val = |k: usize| pt.vals.get(k).copied().unwrap_or(Scalar::I32(0));
        Ok(match node {
            Node::Const(s) => *s,
            Node::Index(d, ix) => Scalar::from_i64(*d, self.index(ix, pt)?),
            Node::Load { buf, ix, mode } => match mode {
                Mode::Plain | Mode::Checked => self.load(*buf, self.index(ix, pt)?)?,
                Mode::Masked(guards, fill) => {
                    for (lo, e, hi) in guards {
                        let v = self.index(e, pt)?;
                        if v < self.index(lo, pt)? || v >= self.index(hi, pt)? {
                            return Ok(*fill);
                        }
                    }
                    self.load(*buf, self.index(ix, pt)?)?
                }
            },
            Node::Unary(op, a) => Scalar::unary(*op, val(*a)).map_err(|e| self.scalar_err(e))?,
            Node::Binary(op, a, b) => {
                Scalar::binary(*op, val(*a), val(*b)).map_err(|e| self.scalar_err(e))?
            }
            Node::Select(c, a, b) => {
                if val(*c) == Scalar::Bool(true) {
                    val(*a)
                } else {
                    val(*b)
                }
            }
            Node::Cast(d, a) => val(*a).cast(*d),
            Node::Reduce { init, .. } => *init,
            Node::Acc => pt.acc.unwrap_or(Scalar::I32(0)),
        })
    }

    /// Evaluates the nodes selected by `which` in order into `vals`.
    fn eval_nodes(
        &self,
        body: &CBody,
        which: &dyn Fn(usize) -> bool,
        vars: &[usize],
        reds: &[usize],
        acc: Option<Scalar>,
        vals: &mut [Scalar],
    ) -> Result<(), ExecError> {
        for (i, node) in body.nodes.iter().enumerate() {
            if !which(i) {
                continue;
            }
            let v = {
                let pt = Point {
                    vars,
                    reds,
                    vals,
                    acc,
                };
                self.eval_node(node, &pt)?
            };
            if let Some(slot) = vals.get_mut(i) {
                *slot = v;
            }
        }
        Ok(())
    }

    fn store_all(
        &mut self,
        body: &CBody,
        vars: &[usize],
        vals: &[Scalar],
    ) -> Result<(), ExecError> {
        for s in &body.stores {
            let pt = Point {
                vars,
                reds: &[],
                vals,
                acc: None,
            };
            let i = self.index(&s.ix, &pt)?;
            let v = vals.get(s.value).copied().unwrap_or(Scalar::I32(0));
            let ok = usize::try_from(i)
                .ok()
                .zip(self.bufs.get_mut(s.buf))
                .is_some_and(|(u, data)| write(data, u, v));
            if !ok {
                return Err(self.oob(s.buf, i));
            }
        }
        Ok(())
    }

    fn run_loop(&mut self, k: &LoopKernel, env: &Env) -> Result<(), ExecError> {
        let dom = env.extents(&k.domain)?;
        let red = env.extents(&k.reduce)?;
        let body = compile_body(&k.body, env)?;
        let n = body.nodes.len();
        let deps = k.body.dependencies();
        let mut uses_red = vec![false; n];
        for (i, e) in k.body.values.iter().enumerate() {
            uses_red[i] = match e {
                Expr::Reduce { .. } => false,
                _ => {
                    e.uses_red()
                        || deps[i]
                            .iter()
                            .any(|&d| uses_red.get(d).copied().unwrap_or(false))
                }
            };
        }
        // Per stage: its reductions and the values their operands depend on, evaluated at
        // every reduction point (earlier stages' results are known by then).
        let stages: Vec<(Vec<usize>, Vec<bool>)> = k
            .body
            .reduction_stages()
            .into_iter()
            .map(|st| {
                let inner = (0..n)
                    .map(|i| st.reads[i] && !matches!(body.nodes[i], Node::Reduce { .. }))
                    .collect();
                (st.reduces, inner)
            })
            .collect();
        let outer = |i: usize| !uses_red[i] && !matches!(body.nodes[i], Node::Reduce { .. });
        let mut vals = vec![Scalar::I32(0); n];
        for_each_point(&dom, &mut |vars| {
            for (reduces, inner) in &stages {
                let mut accs: Vec<Accum> = reduces
                    .iter()
                    .map(|&j| match body.nodes[j] {
                        Node::Reduce { op, init, .. } => Accum::new(op, init),
                        _ => Accum::new(ReduceOp::Sum, Scalar::I32(0)),
                    })
                    .collect();
                for_each_point(&red, &mut |reds| {
                    self.eval_nodes(&body, &|i| inner[i], vars, reds, None, &mut vals)?;
                    for (acc, &j) in accs.iter_mut().zip(reduces) {
                        if let Node::Reduce { value, .. } = body.nodes[j] {
                            acc.add(vals.get(value).copied().unwrap_or(Scalar::I32(0)));
                        }
                    }
                    Ok(())
                })?;
                for (acc, &j) in accs.iter().zip(reduces) {
                    vals[j] = acc.finish();
                }
            }
            self.eval_nodes(&body, &outer, vars, &[], None, &mut vals)?;
            self.store_all(&body, vars, &vals)
        })
    }

    /// Evaluates an operand body at every point of `domain`, row-major.
    fn operand(&self, body: &CBody, domain: &[usize]) -> Result<Vec<Scalar>, ExecError> {
        let total = numel(domain)?;
        let mut out = Vec::new();
        out.try_reserve_exact(total).map_err(|_| {
            ExecError::Overflow(format!("{}: operand of {total} elements", self.kernel))
        })?;
        let mut vals = vec![Scalar::I32(0); body.nodes.len()];
        for_each_point(domain, &mut |vars| {
            self.eval_nodes(body, &|_| true, vars, &[], None, &mut vals)?;
            out.push(
                body.result
                    .and_then(|r| vals.get(r).copied())
                    .unwrap_or(Scalar::I32(0)),
            );
            Ok(())
        })?;
        Ok(out)
    }

    fn epilogue(
        &mut self,
        body: &CBody,
        vars: &[usize],
        acc: Scalar,
        vals: &mut [Scalar],
    ) -> Result<(), ExecError> {
        self.eval_nodes(body, &|_| true, vars, &[], Some(acc), vals)?;
        self.store_all(body, vars, vals)
    }

    fn run_matmul(&mut self, k: &MatmulKernel, env: &Env) -> Result<(), ExecError> {
        let batch = env.extents(&k.batch)?;
        let (m, kk, n) = (env.extent(&k.m)?, env.extent(&k.k)?, env.extent(&k.n)?);
        let with = |tail: [usize; 2]| {
            let mut d = batch.clone();
            d.extend(tail);
            d
        };
        let a = self.operand(&compile_body(&k.a, env)?, &with([m, kk]))?;
        let b = self.operand(&compile_body(&k.b, env)?, &with([kk, n]))?;
        let epi = compile_body(&k.epilogue, env)?;
        let dtype = a.first().or(b.first()).map_or(DType::F32, |s| s.dtype());
        let mut vals = vec![Scalar::I32(0); epi.nodes.len()];
        let mut bi = 0usize;
        for_each_point(&batch, &mut |bvars| {
            for mi in 0..m {
                for ni in 0..n {
                    let mut acc = Accum::new(ReduceOp::Sum, Scalar::zero(dtype));
                    for p in 0..kk {
                        let x = a.get((bi * m + mi) * kk + p).copied();
                        let y = b.get((bi * kk + p) * n + ni).copied();
                        if let (Some(x), Some(y)) = (x, y) {
                            acc.add_product(x, y);
                        }
                    }
                    let mut vars = bvars.to_vec();
                    vars.extend([mi, ni]);
                    self.epilogue(&epi, &vars, acc.finish(), &mut vals)?;
                }
            }
            bi += 1;
            Ok(())
        })
    }

    fn run_conv(
        &mut self,
        k: &Conv2dKernel,
        env: &Env,
        program: &Program,
    ) -> Result<(), ExecError> {
        let g = &k.geometry;
        let bad = || ExecError::Overflow(format!("{}: conv2d geometry", self.kernel));
        let (n, c, h, w, o) = (
            env.extent(&g.n)?,
            env.extent(&g.c)?,
            env.extent(&g.h)?,
            env.extent(&g.w)?,
            env.extent(&g.o)?,
        );
        let groups = usize::try_from(g.groups).map_err(|_| bad())?.max(1);
        let (cg, og) = (c / groups, (o / groups).max(1));
        let (oh, ow) = g.output_hw(&program.symbols).ok_or_else(bad)?;
        let (oh, ow) = (env.extent(&oh)?, env.extent(&ow)?);
        let u = |x: u64| usize::try_from(x).map_err(|_| bad());
        let (kh, kw) = (u(g.kernel[0])?, u(g.kernel[1])?);
        let (sh, sw) = (u(g.stride[0])?, u(g.stride[1])?);
        let (ph, pw) = (u(g.padding[0])?, u(g.padding[1])?);
        let (dh, dw) = (u(g.dilation[0])?, u(g.dilation[1])?);
        let x = self.operand(&compile_body(&k.input, env)?, &[n, c, h, w])?;
        let wt = self.operand(&compile_body(&k.weight, env)?, &[o, cg, kh, kw])?;
        let epi = compile_body(&k.epilogue, env)?;
        let dtype = x.first().or(wt.first()).map_or(DType::F32, |s| s.dtype());
        let mut vals = vec![Scalar::I32(0); epi.nodes.len()];
        for_each_point(&[n, o, oh, ow], &mut |pt| {
            let (ni, oi, y, xo) = (pt[0], pt[1], pt[2], pt[3]);
            let grp = oi / og;
            let mut acc = Accum::new(ReduceOp::Sum, Scalar::zero(dtype));
            for ci in 0..cg {
                for ky in 0..kh {
                    let Some(iy) = tap(y, sh, ky, dh, ph).filter(|&v| v < h) else {
                        continue;
                    };
                    for kx in 0..kw {
                        let Some(ix) = tap(xo, sw, kx, dw, pw).filter(|&v| v < w) else {
                            continue;
                        };
                        let xi = ((ni * c + grp * cg + ci) * h + iy) * w + ix;
                        let wi = ((oi * cg + ci) * kh + ky) * kw + kx;
                        if let (Some(&a), Some(&b)) = (x.get(xi), wt.get(wi)) {
                            acc.add_product(a, b);
                        }
                    }
                }
            }
            self.epilogue(&epi, pt, acc.finish(), &mut vals)
        })
    }
}

/// The input coordinate `out * stride + k * dilation - pad`, if it is not negative.
fn tap(out: usize, stride: usize, k: usize, dilation: usize, pad: usize) -> Option<usize> {
    out.checked_mul(stride)?
        .checked_add(k.checked_mul(dilation)?)?
        .checked_sub(pad)
}

/// A running reduction: floats in `f64`, integers in wrapping `i64`.
struct Accum {
    op: ReduceOp,
    dtype: DType,
    f: f64,
    i: i64,
}

impl Accum {
    fn new(op: ReduceOp, init: Scalar) -> Accum {
        Accum {
            op,
            dtype: init.dtype(),
            f: init.to_f64(),
            i: init.as_i64().unwrap_or(0),
        }
    }

    fn add(&mut self, x: Scalar) {
        if self.dtype.is_float() {
            let v = x.to_f64();
            self.f = match self.op {
                ReduceOp::Sum => self.f + v,
                ReduceOp::Prod => self.f * v,
                ReduceOp::Max => max_f(self.f, v),
                ReduceOp::Min => min_f(self.f, v),
            };
        } else {
            let v = x.as_i64().unwrap_or(0);
            self.i = match self.op {
                ReduceOp::Sum => self.i.wrapping_add(v),
                ReduceOp::Prod => self.i.wrapping_mul(v),
                ReduceOp::Max => self.i.max(v),
                ReduceOp::Min => self.i.min(v),
            };
        }
    }

    /// Adds `a * b`, the product taken exactly enough in `f64` (or wrapping in `i64`).
    fn add_product(&mut self, a: Scalar, b: Scalar) {
        if self.dtype.is_float() {
            self.f += a.to_f64() * b.to_f64();
        } else {
            let p = a
                .as_i64()
                .unwrap_or(0)
                .wrapping_mul(b.as_i64().unwrap_or(0));
            self.i = self.i.wrapping_add(p);
        }
    }

    fn finish(&self) -> Scalar {
        if self.dtype.is_float() {
            Scalar::from_f64(self.dtype, self.f)
        } else {
            Scalar::from_i64(self.dtype, self.i)
        }
    }
}

fn numel(extents: &[usize]) -> Result<usize, ExecError> {
    extents
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| ExecError::Overflow(format!("a domain of extents {extents:?}")))
}

/// Calls `f` at every point of the row-major domain (once for an empty domain list, never
/// if an extent is zero).
fn for_each_point(
    extents: &[usize],
    f: &mut dyn FnMut(&[usize]) -> Result<(), ExecError>,
) -> Result<(), ExecError> {
    if extents.contains(&0) {
        return Ok(());
    }
    let mut idx = vec![0usize; extents.len()];
    loop {
        f(&idx)?;
        let mut axis = extents.len();
        loop {
            if axis == 0 {
                return Ok(());
            }
            axis -= 1;
            idx[axis] += 1;
            if idx[axis] < extents[axis] {
                break;
            }
            idx[axis] = 0;
        }
    }
}

fn zeros(dtype: DType, len: usize) -> Option<Data> {
    fn make<T: Clone>(len: usize, zero: T) -> Option<Vec<T>> {
        let mut v = Vec::new();
        v.try_reserve_exact(len).ok()?;
        v.resize(len, zero);
        Some(v)
    }
    Some(match dtype {
        DType::F32 => Data::F32(make(len, 0.0)?),
        DType::F64 => Data::F64(make(len, 0.0)?),
        DType::I32 => Data::I32(make(len, 0)?),
        DType::I64 => Data::I64(make(len, 0)?),
        DType::U32 => Data::U32(make(len, 0)?),
        DType::Bool => Data::Bool(make(len, false)?),
    })
}

/// Host storage for every buffer of `program` under `bindings`: constants hold their data,
/// every other buffer is zeroed (fill inputs and state before [`execute`]).
pub fn allocate(
    program: &Program,
    bindings: &HashMap<String, u64>,
) -> Result<Vec<Data>, ExecError> {
    let binding = program.bind(bindings)?;
    program
        .buffers
        .iter()
        .zip(binding.buffer_lens())
        .map(|(b, len)| match &b.kind {
            BufferKind::Constant(a) => Ok(a.data().clone()),
            _ => zeros(b.dtype, len)
                .ok_or_else(|| ExecError::Overflow(format!("a buffer of {len} elements"))),
        })
        .collect()
}

/// Runs `program` on `buffers` (one per program buffer, `buffers[k]` is `b<k>`, each of the
/// buffer's dtype and evaluated size). The bindings are checked with [`Program::bind`];
/// constant buffers are (re)filled from the program. The schedule runs in order (loops set
/// their induction symbol, while and if read their predicate buffer); inside a kernel,
/// points run in row-major order.
///
/// On error the contents of written buffers are unspecified.
pub fn execute(
    program: &VerifiedProgram,
    bindings: &HashMap<String, u64>,
    buffers: &mut [Data],
) -> Result<(), ExecError> {
    let env = Env::new(program, bindings)?;
    env.binding.check_buffers(buffers)?;
    for (b, data) in program.buffers.iter().zip(buffers.iter_mut()) {
        if let BufferKind::Constant(a) = &b.kind {
            *data = a.data().clone();
        }
    }
    let mut env = env;
    run_steps(program, &program.steps(), &mut env, buffers)
}

/// Runs a schedule's steps: kernels, copies, loops with their induction symbol set in the
/// binding, while loops and ifs reading their predicate buffer.
fn run_steps(
    program: &Program,
    steps: &[Step],
    env: &mut Env,
    buffers: &mut [Data],
) -> Result<(), ExecError> {
    for step in steps {
        match step {
            Step::Kernel(id) => {
                let kernel = program
                    .kernel(*id)
                    .ok_or_else(|| ExecError::Schedule(format!("{id} is not a kernel")))?;
                let mut r = Runner {
                    kernel: *id,
                    bufs: buffers,
                };
                match kernel {
                    Kernel::Loop(k) => r.run_loop(k, env)?,
                    Kernel::Matmul(k) => r.run_matmul(k, env)?,
                    Kernel::Conv2d(k) => r.run_conv(k, env, program)?,
                }
            }
            Step::Copy { src, dst } => {
                let data = buffers
                    .get(src.index())
                    .cloned()
                    .ok_or_else(|| ExecError::Schedule(format!("copy from {src}")))?;
                let to = buffers
                    .get_mut(dst.index())
                    .ok_or_else(|| ExecError::Schedule(format!("copy into {dst}")))?;
                if to.len() != data.len() || to.dtype() != data.dtype() {
                    return Err(ExecError::Schedule(format!(
                        "copy {src} -> {dst}: the buffers differ in shape"
                    )));
                }
                *to = data;
            }
            Step::Loop(l) => {
                let trip = env.extent(&l.trip)?;
                for it in 0..trip {
                    let t = if l.reverse { trip - 1 - it } else { it };
                    env.binding.set_symbol(&l.var, t as u64);
                    run_steps(program, &l.body, env, buffers)?;
                }
            }
            Step::While(w) => loop {
                run_steps(program, &w.cond, env, buffers)?;
                if !predicate(buffers, w.pred)? {
                    break;
                }
                run_steps(program, &w.body, env, buffers)?;
            },
            Step::If(i) => {
                let branch = if predicate(buffers, i.pred)? {
                    &i.then
                } else {
                    &i.other
                };
                run_steps(program, branch, env, buffers)?;
            }
        }
    }
    Ok(())
}

/// The value of a one-element `bool` predicate buffer.
fn predicate(buffers: &[Data], b: BufferId) -> Result<bool, ExecError> {
    match buffers.get(b.index()) {
        Some(Data::Bool(v)) if v.len() == 1 => Ok(v[0]),
        _ => Err(ExecError::Schedule(format!(
            "the predicate {b} is not one bool"
        ))),
    }
}
