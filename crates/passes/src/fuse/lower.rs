//! Kernel emission: turns the fusion [`Plan`] into kernel-IR bodies. One exhaustive `match`
//! over [`Op`] says how every op is computed inside a body: elementwise ops as scalar
//! expressions, movement ops as coordinate transformations ([`super::index`]), pad and
//! concat as masked loads and selects, gathers as checked loads, reductions and windows as
//! `reduce_*` nodes, random bits as Threefry-2x32 in `u32` arithmetic, contractions as `acc`.

use super::FuseError;
use super::groups::{Core, KIdx, Plan};
use super::index::{Atom, Lin, Scope, flat, unflat};
use kiln_ir::semantics::threefry::{self, Step};
use kiln_ir::{Array, BinaryOp, DType, Data, Dim, Graph, NodeId, Op, ReduceOp, UnaryOp, WindowOp};
use kiln_kernel::{
    Body, BufferId, BufferKind, CheckKind, CheckSite, Conv2dGeometry, Conv2dKernel, Expr,
    IndexExpr, Kernel, Load, LoadMode, LoopKernel, MatmulKernel, Program, Scalar, ValueId,
};
use std::collections::HashMap;

/// Program-wide state of the emission: buffers and where every value lives.
pub(crate) struct Lowering<'a> {
    pub(crate) graph: &'a Graph,
    pub(crate) plan: &'a Plan,
    pub(crate) program: Program,
    /// The buffer a node is loaded from (sources and materialised nodes).
    pub(crate) buffer_of: HashMap<NodeId, BufferId>,
    /// Every buffer a stored node is written to.
    pub(crate) dests: HashMap<NodeId, Vec<BufferId>>,
    const_bufs: HashMap<NodeId, BufferId>,
    checks: HashMap<(u64, DType, bool), BufferId>,
}

/// The guard conditions and fill value in force where a value is requested.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Ctx {
    /// `lo <= inner < hi` conditions of enclosing pads, concats and windows.
    guards: Vec<(Lin, Dim, Dim)>,
    /// The value a masked load yields where a guard fails, if the consumer wants one.
    fill: Option<Scalar>,
}

impl Ctx {
    fn compute(&self) -> Ctx {
        Ctx {
            guards: self.guards.clone(),
            fill: None,
        }
    }

    fn with_guards(&self, gs: &[(Lin, Dim, Dim)], fill: Option<Scalar>) -> Ctx {
        let mut guards = self.guards.clone();
        for g in gs {
            if !guards.contains(g) {
                guards.push(g.clone());
            }
        }
        Ctx { guards, fill }
    }
}

/// One body under construction.
struct BodyCx<'l, 'a> {
    low: &'l mut Lowering<'a>,
    kernel: KIdx,
    scope: Scope,
    body: Body,
    memo: HashMap<(NodeId, Vec<Lin>, Ctx), ValueId>,
    interned: HashMap<Expr, ValueId>,
    /// The contraction whose accumulator this epilogue reads, at these coordinates.
    acc: Option<(NodeId, Vec<Lin>)>,
}

fn internal(msg: impl Into<String>) -> FuseError {
    FuseError::Internal(msg.into())
}

/// The zero of a dtype.
/// The dtype of an internal index value bounded by `bound`: `i32` when the bound is known
/// and small (so 32-bit backends such as WGSL can run the kernel), `i64` otherwise.
fn index_dtype(bound: &Dim) -> DType {
    match bound.as_known() {
        Some(k) if k < (1 << 30) => DType::I32,
        _ => DType::I64,
    }
}

/// An integer constant of an index dtype.
fn index_const(dtype: DType, k: i64) -> Scalar {
    Scalar::from_i64(dtype, k)
}

fn zero(d: DType) -> Scalar {
    Scalar::zero(d)
}

/// `value` converted to `dtype` (a pad value, a reduction identity).
fn scalar(d: DType, value: f64) -> Scalar {
    Scalar::from_f64(d, value)
}

/// The smallest (`low`) or largest value of a dtype: `-inf`/`inf` for floats.
fn extreme(d: DType, low: bool) -> Scalar {
    match (d, low) {
        (DType::F32, true) => Scalar::F32(f32::NEG_INFINITY),
        (DType::F32, false) => Scalar::F32(f32::INFINITY),
        (DType::F64, true) => Scalar::F64(f64::NEG_INFINITY),
        (DType::F64, false) => Scalar::F64(f64::INFINITY),
        (DType::I32, true) => Scalar::I32(i32::MIN),
        (DType::I32, false) => Scalar::I32(i32::MAX),
        (DType::I64, true) => Scalar::I64(i64::MIN),
        (DType::I64, false) => Scalar::I64(i64::MAX),
        (DType::U32, true) => Scalar::U32(0),
        (DType::U32, false) => Scalar::U32(u32::MAX),
        (DType::Bool, true) => Scalar::Bool(false),
        (DType::Bool, false) => Scalar::Bool(true),
    }
}

/// The identity of a reduction (the interpreter's initial value).
fn reduce_init(op: ReduceOp, d: DType) -> Scalar {
    match op {
        ReduceOp::Sum => zero(d),
        ReduceOp::Prod => scalar(d, 1.0),
        ReduceOp::Max => extreme(d, true),
        ReduceOp::Min => extreme(d, false),
    }
}

/// The single element of a one-element constant.
fn array_scalar(a: &Array) -> Option<Scalar> {
    Some(match a.data() {
        Data::F32(v) => Scalar::F32(*v.first()?),
        Data::F64(v) => Scalar::F64(*v.first()?),
        Data::I32(v) => Scalar::I32(*v.first()?),
        Data::I64(v) => Scalar::I64(*v.first()?),
        Data::U32(v) => Scalar::U32(*v.first()?),
        Data::Bool(v) => Scalar::Bool(*v.first()?),
    })
}

/// Coordinates of `dims` broadcast from a consumer's coordinates over `out` (NumPy rules).
fn bcast(coords: &[Lin], out: &[Dim], dims: &[Dim]) -> Vec<Lin> {
    let off = out.len().saturating_sub(dims.len());
    dims.iter()
        .enumerate()
        .map(|(j, d)| {
            if d.is_one() {
                Lin::zero()
            } else {
                coords.get(off + j).cloned().unwrap_or_else(Lin::zero)
            }
        })
        .collect()
}

/// A loop domain without its size-1 axes, and the identity coordinates of the full shape.
fn squeeze(dims: &[Dim]) -> (Vec<Dim>, Vec<Lin>) {
    let mut domain = Vec::new();
    let mut coords = Vec::new();
    for d in dims {
        if d.is_one() {
            coords.push(Lin::zero());
        } else {
            coords.push(Lin::var(domain.len()));
            domain.push(d.clone());
        }
    }
    (domain, coords)
}

/// Identity coordinates over a full (unsqueezed) domain.
fn identity(dims: &[Dim]) -> Vec<Lin> {
    dims.iter()
        .enumerate()
        .map(|(k, d)| if d.is_one() { Lin::zero() } else { Lin::var(k) })
        .collect()
}

fn guarded(inner: Lin, hi: Dim) -> Lin {
    Lin::guarded(inner, Dim::known(0), hi)
}

fn minus(d: &Dim) -> Dim {
    Dim::known(0) - d.clone()
}

impl<'a> Lowering<'a> {
    pub(crate) fn new(graph: &'a Graph, plan: &'a Plan, program: Program) -> Lowering<'a> {
        Lowering {
            graph,
            plan,
            program,
            buffer_of: HashMap::new(),
            dests: HashMap::new(),
            const_bufs: HashMap::new(),
            checks: HashMap::new(),
        }
    }

    fn dims(&self, n: NodeId) -> Vec<Dim> {
        self.graph.node(n).shape.0.clone()
    }

    fn operand(&self, n: NodeId, i: usize) -> Result<NodeId, FuseError> {
        self.graph
            .operands(n)
            .get(i)
            .copied()
            .ok_or_else(|| internal(format!("{n} lacks operand {i}")))
    }

    fn scratch(&mut self, d: DType, size: Dim) -> BufferId {
        self.program.add_buffer(d, size, BufferKind::Scratch)
    }

    /// A constant buffer of `len` copies of `value` (range checks and scatter neutrals).
    fn filled(&mut self, len: u64, value: Scalar) -> Result<BufferId, FuseError> {
        let d = value.dtype();
        let key = (len, d, value.to_f64().is_sign_negative());
        if let Some(&b) = self.checks.get(&key) {
            return Ok(b);
        }
        let too_large = FuseError::CheckTableTooLarge { len };
        let n = usize::try_from(len)
            .ok()
            .filter(|_| len <= super::MAX_CHECK_TABLE)
            .ok_or_else(|| too_large.clone())?;
        fn fill<T: Clone>(n: usize, v: T) -> Option<Vec<T>> {
            let mut out = Vec::new();
            out.try_reserve_exact(n).ok()?;
            out.resize(n, v);
            Some(out)
        }
        let data = match value {
            Scalar::F32(v) => fill(n, v).map(Data::F32),
            Scalar::F64(v) => fill(n, v).map(Data::F64),
            Scalar::I32(v) => fill(n, v).map(Data::I32),
            Scalar::I64(v) => fill(n, v).map(Data::I64),
            Scalar::U32(v) => fill(n, v).map(Data::U32),
            Scalar::Bool(v) => fill(n, v).map(Data::Bool),
        }
        .ok_or(too_large)?;
        let a = Array::new(&[n], data).map_err(|e| internal(e.to_string()))?;
        let b = self
            .program
            .add_buffer(d, Dim::known(len), BufferKind::Constant(a));
        self.checks.insert(key, b);
        Ok(b)
    }

    /// Emits every planned kernel in order, then the late state copies.
    pub(crate) fn emit_all(&mut self) -> Result<(), FuseError> {
        let order = self.plan.order.clone();
        for k in order {
            self.emit_kernel(k)?;
        }
        for (node, name) in self.plan.late_updates.clone() {
            let src = *self
                .buffer_of
                .get(&node)
                .ok_or_else(|| internal(format!("late update {node} has no buffer")))?;
            let dst = self
                .program
                .state(&name)
                .ok_or_else(|| internal(format!("no state buffer `{name}`")))?;
            let dims = self.dims(node);
            let (domain, coords) = squeeze(&dims);
            let mut body = Body::new();
            let at = flat(&coords, &dims).to_index();
            let v = body.load(src, at.clone());
            body.store(dst, at, v);
            self.program.add_kernel(Kernel::Loop(LoopKernel {
                domain,
                reduce: Vec::new(),
                body,
            }));
        }
        Ok(())
    }

    fn cx(&mut self, kernel: KIdx, scope: Scope) -> BodyCx<'_, 'a> {
        BodyCx {
            low: self,
            kernel,
            scope,
            body: Body::new(),
            memo: HashMap::new(),
            interned: HashMap::new(),
            acc: None,
        }
    }

    /// The debug-table entry for a run-time check of `kind` that node `n` needs.
    fn check_site(&self, n: NodeId, kind: CheckKind) -> CheckSite {
        let node = self.graph.node(n);
        let axis_size = |operand: usize, axis: usize| {
            self.operand(n, operand)
                .ok()
                .and_then(|o| self.graph.node(o).shape.0.get(axis).cloned())
        };
        let message = match (kind, &node.op) {
            (CheckKind::Index, Op::Gather { axis } | Op::ScatterAdd { axis }) => {
                match axis_size(0, *axis) {
                    Some(d) => format!("an index is out of range for axis {axis} of size {d}"),
                    None => "an index is out of range".to_string(),
                }
            }
            (CheckKind::Index, _) => "an index is out of range".to_string(),
            (CheckKind::Divide, _) => "integer division by zero".to_string(),
        };
        CheckSite {
            kind,
            node: n.0,
            op: node.op.name().to_string(),
            loc: node.loc.clone(),
            message,
        }
    }

    /// True if `n` is a constant with no zero element (a divisor that needs no check).
    fn nonzero_constant(&self, n: NodeId) -> bool {
        match &self.graph.node(n).op {
            Op::Constant(a) => a.len() <= 4096 && a.to_f64_vec().iter().all(|&v| v != 0.0),
            _ => false,
        }
    }

    fn dests_of(&self, n: NodeId) -> Result<Vec<BufferId>, FuseError> {
        self.dests
            .get(&n)
            .cloned()
            .ok_or_else(|| internal(format!("{n} has no destination buffer")))
    }

    fn emit_kernel(&mut self, k: KIdx) -> Result<(), FuseError> {
        let kp = self.plan.kernels[k].clone();
        match kp.core {
            Core::None | Core::Reduce(_) => {
                let reds = match &kp.core {
                    Core::Reduce(e) => e.clone(),
                    _ => Vec::new(),
                };
                let (domain, coords) = squeeze(&kp.domain);
                let scope = Scope {
                    vars: domain.clone(),
                    reds: reds.clone(),
                };
                let mut cx = self.cx(k, scope);
                cx.store_all(&kp.stores, &coords, &kp.domain)?;
                let body = cx.body;
                self.program.add_kernel(Kernel::Loop(LoopKernel {
                    domain,
                    reduce: reds,
                    body,
                }));
            }
            Core::Matmul(m, t) => self.emit_matmul(k, m, t, &kp.stores, &kp.domain)?,
            Core::Conv(c) => self.emit_conv(k, c, &kp.stores, &kp.domain)?,
            Core::Arg(a) => self.emit_arg(k, a)?,
            Core::Scatter(s) => self.emit_scatter(k, s)?,
        }
        Ok(())
    }

    /// A matmul kernel; `transposed` computes `(a @ b)^T = b^T @ a^T`, with `out` the
    /// transposed shape.
    fn emit_matmul(
        &mut self,
        k: KIdx,
        m: NodeId,
        transposed: bool,
        stores: &[NodeId],
        out: &[Dim],
    ) -> Result<(), FuseError> {
        let (mut a, mut b) = (self.operand(m, 0)?, self.operand(m, 1)?);
        if transposed {
            std::mem::swap(&mut a, &mut b);
        }
        let (ad, bd) = (self.dims(a), self.dims(b));
        let r = out.len();
        if r < 2 || ad.len() < 2 || bd.len() < 2 {
            return Err(internal(format!("matmul {m} has operands of rank < 2")));
        }
        let nb = r - 2;
        let batch = out[..nb].to_vec();
        let (mm, nn) = (out[nb].clone(), out[nb + 1].clone());
        let kk = if transposed {
            ad[ad.len() - 2].clone()
        } else {
            ad[ad.len() - 1].clone()
        };
        // Coordinates of an operand over the body's `[batch.., row, col]` domain; a swapped
        // operand is read transposed.
        let operand_coords = |dims: &[Dim]| -> Vec<Lin> {
            let ob = dims.len() - 2;
            let mut c: Vec<Lin> = (0..ob)
                .map(|j| {
                    if dims[j].is_one() {
                        Lin::zero()
                    } else {
                        Lin::var(nb - ob + j)
                    }
                })
                .collect();
            let (row, col) = if transposed {
                (nb + 1, nb)
            } else {
                (nb, nb + 1)
            };
            for (t, v) in [(0, row), (1, col)] {
                c.push(if dims[ob + t].is_one() {
                    Lin::zero()
                } else {
                    Lin::var(v)
                });
            }
            c
        };
        let with = |tail: [&Dim; 2]| {
            let mut d = batch.clone();
            d.extend(tail.into_iter().cloned());
            d
        };
        let mut cx = self.cx(
            k,
            Scope {
                vars: with([&mm, &kk]),
                reds: Vec::new(),
            },
        );
        let va = cx.value(a, &operand_coords(&ad), &Ctx::default())?;
        cx.body.result = Some(va);
        let abody = cx.body;
        let mut cx = self.cx(
            k,
            Scope {
                vars: with([&kk, &nn]),
                reds: Vec::new(),
            },
        );
        let vb = cx.value(b, &operand_coords(&bd), &Ctx::default())?;
        cx.body.result = Some(vb);
        let bbody = cx.body;
        let mut cx = self.cx(
            k,
            Scope {
                vars: out.to_vec(),
                reds: Vec::new(),
            },
        );
        let mut at = identity(out);
        if transposed {
            at.swap(nb, nb + 1);
        }
        cx.acc = Some((m, at));
        cx.store_all(stores, &identity(out), out)?;
        let epilogue = cx.body;
        self.program.add_kernel(Kernel::Matmul(MatmulKernel {
            batch,
            m: mm,
            k: kk,
            n: nn,
            a: abody,
            b: bbody,
            epilogue,
        }));
        Ok(())
    }

    fn emit_conv(
        &mut self,
        k: KIdx,
        c: NodeId,
        stores: &[NodeId],
        out: &[Dim],
    ) -> Result<(), FuseError> {
        let Op::Conv2d {
            stride,
            padding,
            dilation,
            groups,
        } = self.graph.node(c).op.clone()
        else {
            return Err(internal(format!("{c} is not a conv2d")));
        };
        let (x, w) = (self.operand(c, 0)?, self.operand(c, 1)?);
        let (xd, wd) = (self.dims(x), self.dims(w));
        if xd.len() != 4 || wd.len() != 4 {
            return Err(internal(format!("conv2d {c} operands are not rank 4")));
        }
        let known = |d: &Dim| {
            d.as_known().ok_or_else(|| FuseError::Unsupported {
                node: c,
                reason: format!("conv2d kernel size `{d}` must be known"),
            })
        };
        let geometry = Conv2dGeometry {
            n: xd[0].clone(),
            c: xd[1].clone(),
            h: xd[2].clone(),
            w: xd[3].clone(),
            o: wd[0].clone(),
            kernel: [known(&wd[2])?, known(&wd[3])?],
            stride,
            padding,
            dilation,
            groups,
        };
        let mut cx = self.cx(
            k,
            Scope {
                vars: xd.clone(),
                reds: Vec::new(),
            },
        );
        let vx = cx.value(x, &identity(&xd), &Ctx::default())?;
        cx.body.result = Some(vx);
        let input = cx.body;
        let mut cx = self.cx(
            k,
            Scope {
                vars: wd.clone(),
                reds: Vec::new(),
            },
        );
        let vw = cx.value(w, &identity(&wd), &Ctx::default())?;
        cx.body.result = Some(vw);
        let weight = cx.body;
        let mut cx = self.cx(
            k,
            Scope {
                vars: out.to_vec(),
                reds: Vec::new(),
            },
        );
        cx.acc = Some((c, identity(out)));
        cx.store_all(stores, &identity(out), out)?;
        let epilogue = cx.body;
        self.program.add_kernel(Kernel::Conv2d(Conv2dKernel {
            geometry,
            input,
            weight,
            epilogue,
        }));
        Ok(())
    }

    /// Argmax/argmin in two kernels: the extremum (NaN-propagating), then the first index
    /// holding it (or holding a NaN).
    fn emit_arg(&mut self, k: KIdx, a: NodeId) -> Result<(), FuseError> {
        let Op::ArgReduce { op, axis, keepdim } = self.graph.node(a).op.clone() else {
            return Err(internal(format!("{a} is not an arg reduction")));
        };
        let x = self.operand(a, 0)?;
        let xd = self.dims(x);
        let xt = self.graph.node(x).dtype;
        let out = self.dims(a);
        let len = xd
            .get(axis)
            .cloned()
            .ok_or_else(|| internal(format!("{a}: axis {axis} out of range")))?;
        let (domain, coords) = squeeze(&out);
        let in_coords: Vec<Lin> = (0..xd.len())
            .map(|j| {
                if j == axis {
                    Lin::red(0)
                } else {
                    let o = if keepdim || j < axis { j } else { j - 1 };
                    coords.get(o).cloned().unwrap_or_else(Lin::zero)
                }
            })
            .collect();
        let scope = Scope {
            vars: domain.clone(),
            reds: vec![len.clone()],
        };
        let (rop, low) = match op {
            kiln_ir::ArgOp::ArgMax => (ReduceOp::Max, true),
            kiln_ir::ArgOp::ArgMin => (ReduceOp::Min, false),
        };
        let best = self.scratch(xt, Dim::product(&out));
        let at = flat(&coords, &out).to_index();
        let mut cx = self.cx(k, scope.clone());
        let v = cx.value(x, &in_coords, &Ctx::default())?;
        let r = cx.push(Expr::Reduce {
            op: rop,
            value: v,
            init: extreme(xt, low),
        });
        cx.body.store(best, at.clone(), r);
        let body = cx.body;
        self.program.add_kernel(Kernel::Loop(LoopKernel {
            domain: domain.clone(),
            reduce: vec![len.clone()],
            body,
        }));
        let dests = self.dests_of(a)?;
        let mut cx = self.cx(k, scope);
        let v = cx.value(x, &in_coords, &Ctx::default())?;
        let m = cx.push(Expr::Load(Load {
            buffer: best,
            index: at.clone(),
            mode: LoadMode::Plain,
        }));
        let mut cond = cx.push(Expr::Binary(BinaryOp::Eq, v, m));
        if xt.is_float() {
            let nan = cx.push(Expr::Unary(UnaryOp::IsNan, v));
            cond = cx.push(Expr::Binary(BinaryOp::Or, cond, nan));
        }
        let idx = cx.push(Expr::Index {
            dtype: DType::I64,
            index: IndexExpr::red(0),
        });
        let big = cx.konst(Scalar::I64(i64::MAX));
        let sel = cx.push(Expr::Select(cond, idx, big));
        let r = cx.push(Expr::Reduce {
            op: ReduceOp::Min,
            value: sel,
            init: Scalar::I64(i64::MAX),
        });
        for d in dests {
            cx.body.store(d, at.clone(), r);
        }
        let body = cx.body;
        self.program.add_kernel(Kernel::Loop(LoopKernel {
            domain,
            reduce: vec![len],
            body,
        }));
        Ok(())
    }

    /// Scatter-add as a reduction over the scattered axis: reduction point 0 reads the
    /// target, point `j + 1` adds `src[j]` where `index[j]` names this output position, so
    /// the sum runs in the interpreter's order.
    fn emit_scatter(&mut self, k: KIdx, s: NodeId) -> Result<(), FuseError> {
        let Op::ScatterAdd { axis } = self.graph.node(s).op else {
            return Err(internal(format!("{s} is not a scatter-add")));
        };
        let (t, ix, src) = (
            self.operand(s, 0)?,
            self.operand(s, 1)?,
            self.operand(s, 2)?,
        );
        let out = self.dims(s);
        let dt = self.graph.node(s).dtype;
        let it = self.graph.node(ix).dtype;
        let len = self
            .dims(src)
            .get(axis)
            .cloned()
            .ok_or_else(|| internal(format!("{s}: axis {axis} out of range")))?;
        let (domain, coords) = squeeze(&out);
        let reds = vec![&len + &Dim::known(1)];
        let neutral = if dt.is_float() {
            Scalar::from_f64(dt, -0.0)
        } else {
            zero(dt)
        };
        let check = match out.get(axis).and_then(Dim::as_known) {
            Some(n) => Some(self.filled(n, neutral)?),
            None => None,
        };
        let dests = self.dests_of(s)?;
        let mut cx = self.cx(
            k,
            Scope {
                vars: domain.clone(),
                reds: reds.clone(),
            },
        );
        let g = (
            Lin::red(0).sub(&Lin::constant(1u64)),
            Dim::known(0),
            len.clone(),
        );
        let gatom = guarded(g.0.clone(), len.clone());
        let mut src_coords = coords.clone();
        if let Some(c) = src_coords.get_mut(axis) {
            *c = gatom;
        }
        let ctxg = Ctx {
            guards: vec![g],
            fill: None,
        };
        let rdt = index_dtype(&reds[0]);
        let r0 = cx.push(Expr::Index {
            dtype: rdt,
            index: IndexExpr::red(0),
        });
        let z = cx.konst(index_const(rdt, 0));
        let is0 = cx.push(Expr::Binary(BinaryOp::Eq, r0, z));
        let iv = cx.value(ix, &src_coords, &ctxg)?;
        let here = coords.get(axis).cloned().unwrap_or_else(Lin::zero);
        let jv = cx.push(Expr::Index {
            dtype: it,
            index: here.to_index(),
        });
        let hit = cx.push(Expr::Binary(BinaryOp::Eq, iv, jv));
        let sv = cx.value(src, &src_coords, &ctxg)?;
        let nv = match check {
            Some(b) => {
                cx.record(s, CheckKind::Index);
                let z = cx.konst(zero(it));
                let safe = cx.push(Expr::Select(is0, z, iv));
                cx.push(Expr::Load(Load {
                    buffer: b,
                    index: IndexExpr::Value(safe),
                    mode: LoadMode::Checked,
                }))
            }
            None => cx.konst(neutral),
        };
        let contrib = cx.push(Expr::Select(hit, sv, nv));
        let tv = cx.value(t, &coords, &Ctx::default())?;
        let x = cx.push(Expr::Select(is0, tv, contrib));
        let r = cx.push(Expr::Reduce {
            op: ReduceOp::Sum,
            value: x,
            init: neutral,
        });
        let at = flat(&coords, &out).to_index();
        for d in dests {
            cx.body.store(d, at.clone(), r);
        }
        let body = cx.body;
        self.program.add_kernel(Kernel::Loop(LoopKernel {
            domain,
            reduce: reds,
            body,
        }));
        Ok(())
    }
}

impl BodyCx<'_, '_> {
    fn graph(&self) -> &Graph {
        self.low.graph
    }

    fn push(&mut self, e: Expr) -> ValueId {
        if let Some(&v) = self.interned.get(&e) {
            return v;
        }
        let v = self.body.push(e.clone());
        self.interned.insert(e, v);
        v
    }

    fn konst(&mut self, s: Scalar) -> ValueId {
        self.push(Expr::Const(s))
    }

    /// Notes in the body's debug table that a run-time check of `kind` comes from `n`.
    fn record(&mut self, n: NodeId, kind: CheckKind) {
        let site = self.low.check_site(n, kind);
        if !self.body.checks.contains(&site) {
            self.body.checks.push(site);
        }
    }

    fn dtype(&self, n: NodeId) -> DType {
        self.graph().node(n).dtype
    }

    fn dims(&self, n: NodeId) -> Vec<Dim> {
        self.graph().node(n).shape.0.clone()
    }

    fn placed_here(&self, n: NodeId) -> bool {
        self.low
            .plan
            .places
            .get(&n)
            .is_some_and(|ps| ps.iter().any(|p| p.kernel == self.kernel))
    }

    /// Stores every node of `stores` (each shaped `dims`) at the identity coordinates.
    fn store_all(
        &mut self,
        stores: &[NodeId],
        coords: &[Lin],
        dims: &[Dim],
    ) -> Result<(), FuseError> {
        let at = flat(coords, dims).to_index();
        for &s in stores {
            let v = self.value(s, coords, &Ctx::default())?;
            for d in self.low.dests_of(s)? {
                self.body.store(d, at.clone(), v);
            }
        }
        Ok(())
    }

    /// The value of node `n` at `coords`: computed here when the plan places it in this
    /// kernel, loaded from its buffer otherwise.
    fn value(&mut self, n: NodeId, coords: &[Lin], ctx: &Ctx) -> Result<ValueId, FuseError> {
        let key = (n, coords.to_vec(), ctx.clone());
        if let Some(&v) = self.memo.get(&key) {
            return Ok(v);
        }
        let v = if self.placed_here(n) {
            self.compute(n, coords, ctx)?
        } else {
            self.leaf(n, coords, ctx)?
        };
        self.memo.insert(key, v);
        Ok(v)
    }

    fn leaf(&mut self, n: NodeId, coords: &[Lin], ctx: &Ctx) -> Result<ValueId, FuseError> {
        if let Op::Constant(a) = &self.graph().node(n).op
            && a.len() == 1
            && let Some(s) = array_scalar(a)
        {
            return Ok(self.konst(s));
        }
        let buffer = match self.low.buffer_of.get(&n) {
            Some(&b) => b,
            None => match &self.graph().node(n).op {
                Op::Constant(a) => {
                    let a = a.clone();
                    match self.low.const_bufs.get(&n) {
                        Some(&b) => b,
                        None => {
                            let size = Dim::known(a.len() as u64);
                            let b = self.low.program.add_buffer(
                                a.dtype(),
                                size,
                                BufferKind::Constant(a),
                            );
                            self.low.const_bufs.insert(n, b);
                            b
                        }
                    }
                }
                _ => {
                    return Err(internal(format!(
                        "{n} is neither computed in this kernel nor stored"
                    )));
                }
            },
        };
        let dims = self.dims(n);
        let dt = self.dtype(n);
        Ok(self.load(buffer, dt, &dims, coords, ctx))
    }

    fn load(
        &mut self,
        buffer: BufferId,
        dt: DType,
        dims: &[Dim],
        coords: &[Lin],
        ctx: &Ctx,
    ) -> ValueId {
        if coords.iter().any(Lin::reads_value) {
            // A checked load cannot be masked: where a guard fails, its coordinate is
            // replaced by the guard's lower bound so the index stays meaningful.
            let mut safe = |inner: &Lin, lo: &Dim, hi: &Dim| -> Lin {
                let g = [(inner.clone(), lo.clone(), hi.clone())];
                let ok = self.guard_cond(&g);
                let dt = if lo.is_known() {
                    index_dtype(hi)
                } else {
                    DType::I64
                };
                let v = self.push(Expr::Index {
                    dtype: dt,
                    index: inner.to_index(),
                });
                let l = self.push(Expr::Index {
                    dtype: dt,
                    index: IndexExpr::Dim(lo.clone()),
                });
                Lin::value(self.push(Expr::Select(ok, v, l)))
            };
            let coords: Vec<Lin> = coords
                .iter()
                .map(|c| c.replace_guarded(&mut safe))
                .collect();
            let index = flat(&coords, dims).to_index();
            return self.push(Expr::Load(Load {
                buffer,
                index,
                mode: LoadMode::Checked,
            }));
        }
        if Lin::never(coords) {
            return self.konst(ctx.fill.unwrap_or(zero(dt)));
        }
        let index = flat(coords, dims).to_index();
        let mode = {
            let guards = Lin::index_guards(coords);
            if guards.is_empty() {
                LoadMode::Plain
            } else {
                LoadMode::Masked {
                    guards,
                    fill: ctx.fill.unwrap_or(zero(dt)),
                }
            }
        };
        self.push(Expr::Load(Load {
            buffer,
            index,
            mode,
        }))
    }

    /// True if `v` is a masked load that yields `fill` wherever one of `gs` fails.
    fn masked_with(&self, v: ValueId, gs: &[(Lin, Dim, Dim)], fill: Scalar) -> bool {
        let Some(Expr::Load(l)) = self.body.value(v) else {
            return false;
        };
        let LoadMode::Masked { guards, fill: f } = &l.mode else {
            return false;
        };
        if *f != fill {
            return false;
        }
        let want = Lin::index_guards(
            &gs.iter()
                .map(|(i, lo, hi)| {
                    Lin::atom(Atom::Guarded {
                        inner: Box::new(i.clone()),
                        lo: lo.clone(),
                        hi: hi.clone(),
                    })
                })
                .collect::<Vec<_>>(),
        );
        want.iter().all(|g| guards.contains(g))
    }

    /// A bool value that holds where every guard holds.
    fn guard_cond(&mut self, gs: &[(Lin, Dim, Dim)]) -> ValueId {
        let mut out: Option<ValueId> = None;
        for (inner, lo, hi) in gs {
            let dt = if lo.is_known() {
                index_dtype(hi)
            } else {
                DType::I64
            };
            let e = self.push(Expr::Index {
                dtype: dt,
                index: inner.to_index(),
            });
            let bound =
                |cx: &mut Self, d: &Dim| match d.as_known().and_then(|k| i64::try_from(k).ok()) {
                    Some(k) => cx.konst(index_const(dt, k)),
                    None => cx.push(Expr::Index {
                        dtype: dt,
                        index: IndexExpr::Dim(d.clone()),
                    }),
                };
            let mut conds = Vec::new();
            let needs_lo = inner
                .range(&self.scope)
                .is_none_or(|(l, _)| !super::index::le(lo, &l));
            if needs_lo {
                let l = bound(self, lo);
                conds.push(self.push(Expr::Binary(BinaryOp::Ge, e, l)));
            }
            let h = bound(self, hi);
            conds.push(self.push(Expr::Binary(BinaryOp::Lt, e, h)));
            for c in conds {
                out = Some(match out {
                    Some(o) => self.push(Expr::Binary(BinaryOp::And, o, c)),
                    None => c,
                });
            }
        }
        out.unwrap_or_else(|| self.konst(Scalar::Bool(true)))
    }

    /// `select(all guards hold, v, fill)` unless `v` already yields `fill` there.
    fn apply_fill(&mut self, v: ValueId, gs: &[(Lin, Dim, Dim)], fill: Scalar) -> ValueId {
        if gs.is_empty() || self.masked_with(v, gs, fill) {
            return v;
        }
        let c = self.guard_cond(gs);
        let f = self.konst(fill);
        self.push(Expr::Select(c, v, f))
    }

    fn operand_at(
        &mut self,
        n: NodeId,
        i: usize,
        coords: &[Lin],
        ctx: &Ctx,
    ) -> Result<ValueId, FuseError> {
        let o = self.low.operand(n, i)?;
        let out = self.dims(n);
        let od = self.dims(o);
        let c = bcast(coords, &out, &od);
        self.value(o, &c, &ctx.compute())
    }

    fn compute(&mut self, n: NodeId, coords: &[Lin], ctx: &Ctx) -> Result<ValueId, FuseError> {
        let node = self.graph().node(n).clone();
        let out = node.shape.0.clone();
        match &node.op {
            Op::Input { .. } | Op::Parameter { .. } | Op::Constant(_) => self.leaf(n, coords, ctx),
            Op::Cond { .. } | Op::Scan { .. } | Op::While { .. } | Op::Get { .. } => {
                Err(FuseError::Unsupported {
                    node: n,
                    reason: format!("{} is not lowered to kernels yet", node.op.name()),
                })
            }
            Op::Iota { dtype, axis, .. } => {
                let c = coords.get(*axis).cloned().unwrap_or_else(Lin::zero);
                Ok(self.push(Expr::Index {
                    dtype: *dtype,
                    index: c.to_index(),
                }))
            }
            Op::RandomBits { .. } => self.threefry(n, coords, ctx),
            Op::Unary(u) => {
                let a = self.operand_at(n, 0, coords, ctx)?;
                Ok(self.push(Expr::Unary(*u, a)))
            }
            Op::Binary(b) => self.binary_at(n, *b, coords, ctx),
            Op::Select => {
                let c = self.operand_at(n, 0, coords, ctx)?;
                let a = self.operand_at(n, 1, coords, ctx)?;
                let b = self.operand_at(n, 2, coords, ctx)?;
                Ok(self.push(Expr::Select(c, a, b)))
            }
            Op::Cast(d) => {
                let a = self.operand_at(n, 0, coords, ctx)?;
                Ok(self.push(Expr::Cast(*d, a)))
            }
            Op::StopGradient => {
                let o = self.low.operand(n, 0)?;
                self.value(o, coords, ctx)
            }
            Op::Reduce { op, axes, keepdim } => self.reduce_at(n, *op, axes, *keepdim, coords, ctx),
            Op::Window {
                op,
                window,
                stride,
                padding,
            } => self.window_at(n, *op, window, stride, padding, coords, ctx),
            Op::ArgReduce { .. } | Op::ScatterAdd { .. } => Err(internal(format!(
                "{n} ({}) is computed only by its own kernel",
                node.op.name()
            ))),
            Op::MatMul | Op::Conv2d { .. } => {
                if self
                    .acc
                    .as_ref()
                    .is_some_and(|(m, at)| *m == n && at == coords)
                {
                    Ok(self.push(Expr::Acc))
                } else {
                    Err(internal(format!(
                        "{n} is a contraction outside its epilogue"
                    )))
                }
            }
            Op::Reshape(_) => {
                let x = self.low.operand(n, 0)?;
                let xd = self.dims(x);
                let f = flat(coords, &out);
                let c = unflat(&f, &xd, &self.scope);
                self.value(x, &c, ctx)
            }
            Op::Permute(perm) => {
                let x = self.low.operand(n, 0)?;
                let mut c = vec![Lin::zero(); perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    if let (Some(slot), Some(v)) = (c.get_mut(p), coords.get(i)) {
                        *slot = v.clone();
                    }
                }
                self.value(x, &c, ctx)
            }
            Op::Expand(_) => {
                let x = self.low.operand(n, 0)?;
                let xd = self.dims(x);
                self.value(x, &bcast(coords, &out, &xd), ctx)
            }
            Op::Slice(axes) => {
                let x = self.low.operand(n, 0)?;
                let c: Vec<Lin> = coords
                    .iter()
                    .zip(axes)
                    .map(|(c, a)| c.scale(&Dim::known(a.step)).add_const(&Dim::known(a.start)))
                    .collect();
                self.value(x, &c, ctx)
            }
            Op::Flip { axes } => self.flip_at(n, axes, coords, ctx),
            Op::Pad { pads, value } => self.pad_at(n, pads, value.get(), coords, ctx),
            Op::Concat { axis } => self.concat_at(n, *axis, coords, ctx),
            Op::Gather { axis } => self.gather_at(n, *axis, coords, ctx),
        }
    }

    /// A binary op; integer division and remainder get divisor 1 in guarded-off lanes,
    /// so a masked lane cannot divide by zero.
    fn binary_at(
        &mut self,
        n: NodeId,
        b: BinaryOp,
        coords: &[Lin],
        ctx: &Ctx,
    ) -> Result<ValueId, FuseError> {
        let x = self.operand_at(n, 0, coords, ctx)?;
        let mut y = self.operand_at(n, 1, coords, ctx)?;
        let int_div = matches!(b, BinaryOp::Div | BinaryOp::Rem)
            && !self.dtype(self.low.operand(n, 0)?).is_float();
        if int_div && !self.low.nonzero_constant(self.low.operand(n, 1)?) {
            self.record(n, CheckKind::Divide);
        }
        if int_div && !ctx.guards.is_empty() {
            let c = self.guard_cond(&ctx.guards.clone());
            let one = self.konst(scalar(self.dtype(self.low.operand(n, 1)?), 1.0));
            y = self.push(Expr::Select(c, y, one));
        }
        Ok(self.push(Expr::Binary(b, x, y)))
    }

    /// Fails if reduction `n`, requested at `coords` under `ctx`, would depend on the
    /// kernel's reduction variables (through a coordinate, a guard, or a loaded index that
    /// varies over the reduction): that is a nested reduction, which the plan must have
    /// materialised, and a `reduce` node cannot express it (its operand would reuse the
    /// variables of the enclosing reduction).
    fn not_nested(&self, n: NodeId, coords: &[Lin], ctx: &Ctx) -> Result<(), FuseError> {
        let mut varying: Option<Vec<bool>> = None;
        let body = &self.body;
        let mut moves = |a: &Atom| match a {
            Atom::Red(_) => true,
            Atom::Value(v) => {
                let varies = varying.get_or_insert_with(|| {
                    let mut out: Vec<bool> = Vec::with_capacity(body.values.len());
                    for e in &body.values {
                        let v = !matches!(e, Expr::Reduce { .. })
                            && (e.uses_red()
                                || e.dependencies()
                                    .into_iter()
                                    .any(|d| out.get(d).copied().unwrap_or(true)));
                        out.push(v);
                    }
                    out
                });
                varies.get(*v as usize).copied().unwrap_or(true)
            }
            Atom::Var(_) | Atom::Div(..) | Atom::Mod(..) | Atom::Guarded { .. } => false,
        };
        let nested = coords.iter().any(|c| c.mentions(&mut moves))
            || ctx.guards.iter().any(|(g, _, _)| g.mentions(&mut moves));
        if nested {
            return Err(internal(format!(
                "{n} would be reduced at coordinates that move with its kernel's reduction \
                 variables (a nested reduction)"
            )));
        }
        Ok(())
    }

    /// A reduction over `axes`: the operand read at the output coordinates with reduction
    /// variables on the reduced axes (a reduction over no axes combines with the identity).
    fn reduce_at(
        &mut self,
        n: NodeId,
        op: ReduceOp,
        axes: &[usize],
        keepdim: bool,
        coords: &[Lin],
        ctx: &Ctx,
    ) -> Result<ValueId, FuseError> {
        let dt = self.graph().node(n).dtype;
        let x = self.low.operand(n, 0)?;
        if axes.is_empty() {
            let v = self.value(x, coords, &ctx.compute())?;
            let init = self.konst(reduce_init(op, dt));
            let b = match op {
                ReduceOp::Sum => BinaryOp::Add,
                ReduceOp::Prod => BinaryOp::Mul,
                ReduceOp::Max => BinaryOp::Max,
                ReduceOp::Min => BinaryOp::Min,
            };
            return Ok(self.push(Expr::Binary(b, init, v)));
        }
        self.not_nested(n, coords, ctx)?;
        let xd = self.dims(x);
        let mut red = 0;
        let mut kept = 0;
        let mut in_coords = Vec::with_capacity(xd.len());
        for a in 0..xd.len() {
            if axes.contains(&a) {
                in_coords.push(Lin::red(red));
                red += 1;
                if keepdim {
                    kept += 1;
                }
            } else {
                in_coords.push(coords.get(kept).cloned().unwrap_or_else(Lin::zero));
                kept += 1;
            }
        }
        let v = self.value(x, &in_coords, &ctx.compute())?;
        Ok(self.push(Expr::Reduce {
            op,
            value: v,
            init: reduce_init(op, dt),
        }))
    }

    /// A window reduction: the operand read at `coord * stride + r - pad_before` on the
    /// trailing axes, padding lanes guarded and filled with the reduction's identity.
    #[allow(clippy::too_many_arguments)]
    fn window_at(
        &mut self,
        n: NodeId,
        op: WindowOp,
        window: &[u64],
        stride: &[u64],
        padding: &[(u64, u64)],
        coords: &[Lin],
        ctx: &Ctx,
    ) -> Result<ValueId, FuseError> {
        self.not_nested(n, coords, ctx)?;
        let dt = self.graph().node(n).dtype;
        let x = self.low.operand(n, 0)?;
        let xd = self.dims(x);
        let k = window.len();
        let lead = xd.len().saturating_sub(k);
        let mut in_coords: Vec<Lin> = coords[..lead.min(coords.len())].to_vec();
        let mut gs = Vec::new();
        for j in 0..k {
            let c = coords.get(lead + j).cloned().unwrap_or_else(Lin::zero);
            let (lo, hi) = padding.get(j).copied().unwrap_or((0, 0));
            let e = c
                .scale(&Dim::known(stride.get(j).copied().unwrap_or(1)))
                .add(&Lin::red(j))
                .add_const(&minus(&Dim::known(lo)));
            if lo > 0 || hi > 0 {
                let size = xd
                    .get(lead + j)
                    .cloned()
                    .ok_or_else(|| internal(format!("{n}: window wider than its operand")))?;
                gs.push((e.clone(), Dim::known(0), size.clone()));
                in_coords.push(guarded(e, size));
            } else {
                in_coords.push(e);
            }
        }
        let (rop, fill) = match op {
            WindowOp::Sum => (ReduceOp::Sum, zero(dt)),
            WindowOp::Max => (ReduceOp::Max, extreme(dt, true)),
        };
        let inner = ctx.with_guards(&gs, Some(fill));
        let v = self.value(x, &in_coords, &inner)?;
        let v = self.apply_fill(v, &gs, fill);
        Ok(self.push(Expr::Reduce {
            op: rop,
            value: v,
            init: reduce_init(rop, dt),
        }))
    }

    /// A flip: the operand read at `size - 1 - coord` on the flipped axes.
    fn flip_at(
        &mut self,
        n: NodeId,
        axes: &[usize],
        coords: &[Lin],
        ctx: &Ctx,
    ) -> Result<ValueId, FuseError> {
        let out = self.dims(n);
        let x = self.low.operand(n, 0)?;
        let c: Vec<Lin> = coords
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if axes.contains(&i) {
                    let d = out.get(i).cloned().unwrap_or_else(|| Dim::known(1));
                    Lin::constant(d - Dim::known(1)).sub(c)
                } else {
                    c.clone()
                }
            })
            .collect();
        self.value(x, &c, ctx)
    }

    /// Constant padding: the operand read at `coord - before`, out-of-range lanes guarded
    /// and filled with `value`.
    fn pad_at(
        &mut self,
        n: NodeId,
        pads: &[(u64, u64)],
        value: f64,
        coords: &[Lin],
        ctx: &Ctx,
    ) -> Result<ValueId, FuseError> {
        let dt = self.graph().node(n).dtype;
        let x = self.low.operand(n, 0)?;
        let xd = self.dims(x);
        let mut gs = Vec::new();
        let mut c = Vec::with_capacity(coords.len());
        for ((co, &(lo, hi)), d) in coords.iter().zip(pads).zip(&xd) {
            if lo == 0 && hi == 0 {
                c.push(co.clone());
            } else {
                let e = co.add_const(&minus(&Dim::known(lo)));
                gs.push((e.clone(), Dim::known(0), d.clone()));
                c.push(guarded(e, d.clone()));
            }
        }
        let fill = scalar(dt, value);
        let inner = ctx.with_guards(&gs, Some(fill));
        let v = self.value(x, &c, &inner)?;
        Ok(self.apply_fill(v, &gs, fill))
    }

    /// A concatenation: every part read at its shifted, guarded coordinates, then a chain
    /// of selects on the position along `axis`.
    fn concat_at(
        &mut self,
        n: NodeId,
        axis: usize,
        coords: &[Lin],
        ctx: &Ctx,
    ) -> Result<ValueId, FuseError> {
        let parts = self.graph().operands(n);
        let here = coords.get(axis).cloned().unwrap_or_else(Lin::zero);
        let mut start = Dim::known(0);
        let mut vals: Vec<(ValueId, Dim)> = Vec::with_capacity(parts.len());
        for &p in &parts {
            let len = self
                .dims(p)
                .get(axis)
                .cloned()
                .unwrap_or_else(|| Dim::known(1));
            let e = here.add_const(&minus(&start));
            let mut c = coords.to_vec();
            if let Some(slot) = c.get_mut(axis) {
                *slot = guarded(e.clone(), len.clone());
            }
            let inner = ctx.with_guards(&[(e, Dim::known(0), len.clone())], None);
            vals.push((self.value(p, &c, &inner)?, start.clone()));
            start = &start + &len;
        }
        let total = start.clone();
        let Some((mut acc, mut next)) = vals.pop() else {
            return Err(internal(format!("concat {n} has no operands")));
        };
        let dt = index_dtype(&total);
        while let Some((v, s)) = vals.pop() {
            let idx = self.push(Expr::Index {
                dtype: dt,
                index: here.to_index(),
            });
            let bound = match next.as_known().and_then(|k| i64::try_from(k).ok()) {
                Some(k) => self.konst(index_const(dt, k)),
                None => self.push(Expr::Index {
                    dtype: dt,
                    index: IndexExpr::Dim(next.clone()),
                }),
            };
            let c = self.push(Expr::Binary(BinaryOp::Lt, idx, bound));
            acc = self.push(Expr::Select(c, v, acc));
            next = s;
        }
        Ok(acc)
    }

    /// A gather: the operand read with the index value on `axis`; an out-of-range index
    /// (a checked load of an all-true mask) gives zero.
    fn gather_at(
        &mut self,
        n: NodeId,
        axis: usize,
        coords: &[Lin],
        ctx: &Ctx,
    ) -> Result<ValueId, FuseError> {
        let dt = self.graph().node(n).dtype;
        let x = self.low.operand(n, 0)?;
        let xd = self.dims(x);
        let idx = self.operand_at(n, 1, coords, ctx)?;
        self.record(n, CheckKind::Index);
        let mut c = coords.to_vec();
        if let Some(slot) = c.get_mut(axis) {
            *slot = Lin::value(idx);
        }
        let v = self.value(x, &c, &ctx.compute())?;
        match xd.get(axis).and_then(Dim::as_known) {
            Some(len) => {
                let b = self.low.filled(len, Scalar::Bool(true))?;
                let ok = self.push(Expr::Load(Load {
                    buffer: b,
                    index: IndexExpr::Value(idx),
                    mode: LoadMode::Checked,
                }));
                let z = self.konst(zero(dt));
                Ok(self.push(Expr::Select(ok, v, z)))
            }
            None => Ok(v),
        }
    }

    fn u32c(&mut self, v: u32) -> ValueId {
        self.konst(Scalar::U32(v))
    }

    fn bin(&mut self, op: BinaryOp, a: ValueId, b: ValueId) -> ValueId {
        self.push(Expr::Binary(op, a, b))
    }

    /// `x` rotated left by `r` bits in `u32` arithmetic: `x * 2^r | x / 2^(32-r)`.
    fn rotl(&mut self, x: ValueId, r: u32) -> ValueId {
        let hi = self.u32c(1u32 << r);
        let lo = self.u32c(1u32 << (32 - r));
        let a = self.bin(BinaryOp::Mul, x, hi);
        let b = self.bin(BinaryOp::Div, x, lo);
        self.bin(BinaryOp::Or, a, b)
    }

    /// `jax.random.bits`: Threefry-2x32 of the flat element index under the key, as scalar
    /// `u32` arithmetic (the kernel IR has no shifts; rotations use multiply and divide).
    fn threefry(&mut self, n: NodeId, coords: &[Lin], ctx: &Ctx) -> Result<ValueId, FuseError> {
        let key = self.low.operand(n, 0)?;
        let k0 = self.value(key, &[Lin::zero()], &ctx.compute())?;
        let k1 = self.value(key, &[Lin::constant(1u64)], &ctx.compute())?;
        let out = self.dims(n);
        let f = flat(coords, &out).to_index();
        let total = Dim::product(&out);
        let hi = match total.as_known() {
            Some(t) if t <= 1 << 32 => self.u32c(0),
            _ => self.push(Expr::Index {
                dtype: DType::U32,
                index: f.clone().floor_div(Dim::known(1 << 32)),
            }),
        };
        let lo = self.push(Expr::Index {
            dtype: DType::U32,
            index: f,
        });
        let parity = self.u32c(threefry::KS_PARITY);
        let k01 = self.bin(BinaryOp::Xor, k0, k1);
        let k2 = self.bin(BinaryOp::Xor, k01, parity);
        let ks = [k0, k1, k2];
        let mut x0 = self.bin(BinaryOp::Add, hi, ks[0]);
        let mut x1 = self.bin(BinaryOp::Add, lo, ks[1]);
        for step in threefry::steps() {
            match step {
                Step::Mix { rotation } => {
                    x0 = self.bin(BinaryOp::Add, x0, x1);
                    x1 = self.rotl(x1, rotation);
                    x1 = self.bin(BinaryOp::Xor, x1, x0);
                }
                Step::Inject {
                    x0_word,
                    x1_word,
                    count,
                } => {
                    x0 = self.bin(BinaryOp::Add, x0, ks[x0_word]);
                    x1 = self.bin(BinaryOp::Add, x1, ks[x1_word]);
                    let c = self.u32c(count);
                    x1 = self.bin(BinaryOp::Add, x1, c);
                }
            }
        }
        Ok(self.bin(BinaryOp::Xor, x0, x1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::groups::{KPlan, Place, Region};
    use kiln_ir::Shape;

    /// `y[i] = sum_j x[i, j] * max_k x[?, k]`, planned in one kernel with the max in the
    /// sum's operand; `keepdim` picks the max's shape: `[4]` broadcasts along `j` (a nested
    /// reduction), `[4, 1]` along `i` (a staged one).
    fn lower_one_kernel(keepdim: bool) -> Result<Program, FuseError> {
        let mut g = Graph::new();
        let mut add = |op: Op, ops: &[NodeId]| g.add(op, ops).expect("valid node");
        let x = add(
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: Shape::known(&[4, 4]),
            },
            &[],
        );
        let reduce = |op, keepdim| Op::Reduce {
            op,
            axes: vec![1],
            keepdim,
        };
        let m = add(reduce(ReduceOp::Max, keepdim), &[x]);
        let p = add(Op::Binary(BinaryOp::Mul), &[x, m]);
        let y = add(reduce(ReduceOp::Sum, false), &[p]);
        let place = |region, view| Place {
            kernel: 0,
            region,
            view,
            restricted: false,
        };
        let plan = Plan {
            kernels: vec![KPlan {
                domain: vec![Dim::known(4)],
                stores: vec![y],
                core: Core::Reduce(vec![Dim::known(4)]),
                alive: true,
            }],
            places: HashMap::from([
                (y, vec![place(Region::Body, Vec::new())]),
                (p, vec![place(Region::Operand(y), vec![(y, 0)])]),
                (m, vec![place(Region::Operand(y), vec![(y, 0), (p, 1)])]),
            ]),
            stored_by: HashMap::from([(y, 0)]),
            order: vec![0],
            ..Plan::default()
        };
        let mut low = Lowering::new(&g, &plan, Program::new());
        let bx = low
            .program
            .add_buffer(DType::F32, 16u64, BufferKind::Input("x".into()));
        let by = low
            .program
            .add_buffer(DType::F32, 4u64, BufferKind::Output("y".into()));
        low.buffer_of.insert(x, bx);
        low.dests.insert(y, vec![by]);
        low.emit_all()?;
        Ok(low.program)
    }

    #[test]
    fn a_nested_reduction_in_a_plan_is_an_internal_error() {
        let err = lower_one_kernel(false).expect_err("nested reduction must not lower");
        assert!(
            matches!(&err, FuseError::Internal(m) if m.contains("nested reduction")),
            "{err}"
        );
        let staged = lower_one_kernel(true).expect("a staged reduction lowers");
        let Some(Kernel::Loop(k)) = staged.kernels.first() else {
            panic!("no loop kernel:\n{staged}");
        };
        assert_eq!(k.body.stages().iter().max(), Some(&2), "{staged}");
    }
}
