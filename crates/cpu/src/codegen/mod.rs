//! Lowering of one loop kernel to one Cranelift function.
//!
//! The function has the [`crate::jit::KernelFn`] signature `(bufs, dims, start, end, flags)`:
//! base pointers of the job's local buffers, the values of the job's symbolic dims (in
//! [`job_dims`] order), the `[start, end)` range of the split axis (the first domain axis
//! whose extent is not the constant 1), and a pointer to the error word it ORs its flags
//! into ([`FLAG_OOB`], [`FLAG_DIV_ZERO`]).
//!
//! Loops are emitted as blocks (one loop per axis, never unrolled over a tensor). The body
//! runs in three phases per point: values that do not vary over the reduction domain, the
//! reduction loops (values feeding reductions, accumulated in loop-carried variables), then
//! values depending on reduced results and the stores. A [`analysis::VecPlan`] vectorises
//! either the innermost domain axis (each lane one point, scalar tail) or the innermost
//! reduction axis: lane-wise partial accumulators, two or four vectors of them (each
//! iteration evaluates that many vector points, so the combining chains run in parallel),
//! added pairwise after the loop, then lane by lane into the scalar tail's accumulator.
//!
//! When no reduction depends on a suffix of the domain axes (a softmax or layer norm row:
//! `reduce_sum(exp(x[i0, r0] - m[i0]))` at every point `[i0, i1]`), the reductions are
//! hoisted ([`analysis::Hoist`]): for each point of the outer axes, the reduction loops run
//! once, together with every other value that does not vary along the hoisted axes, and
//! only then come the loops over the hoisted axes with the rest of the body and the stores.
//! Such a kernel can have two vector plans: the reduction loop vectorised along the
//! innermost reduction axis and the hoisted loop along the innermost domain axis. Values of
//! the hoisted loop that the reduction loop already computed (the `exp(x - max)` of a
//! softmax row) are kept in a stack buffer per row and loaded back ([`analysis::Reuse`]).
//!
//! Float sums and products are reassociated by the partial accumulators (the results may
//! differ from a sequential sum in the last bits, see docs/numerics.md); integer reductions
//! and float max/min give the same values in any order. Float max/min partials step with a
//! compare and a blend (a NaN never enters them) while a lane mask records NaN terms; the
//! result is NaN when the mask is set. The order depends only on the
//! reduction extent, never on the thread count.

pub(crate) mod analysis;
mod math;
mod ops;

use crate::jit::{Helper, Jit};
use crate::job::LoopJob;
use analysis::{
    Hoist, Phases, Reuse, VarRef, VecMode, VecPlan, coefficient, cost_of, known_i64, varying,
};
use cranelift_codegen::ir::{
    BlockArg, Endianness, FuncRef, InstBuilder, MemFlagsData, StackSlot, StackSlotData,
    StackSlotKind, Type, UserFuncName, Value,
    condcodes::{FloatCC, IntCC},
    types,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_module::{FuncId, Module};
use kiln_ir::{DType, Dim, ReduceOp};
use kiln_kernel::{Expr, IndexExpr, Load, LoadMode, LoopKernel, Scalar};
use std::collections::HashMap;

/// Error bit: a checked load read outside its buffer.
pub(crate) const FLAG_OOB: u32 = 1;
/// Error bit: an integer division or remainder by zero.
pub(crate) const FLAG_DIV_ZERO: u32 = 2;

/// What the runtime needs to know about a compiled loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoopInfo {
    /// The axis whose `[start, end)` range the function takes (`None`: one point).
    pub split: Option<usize>,
    /// The vectorisation of the loops over the domain, if any: mode and lanes.
    pub vector: Option<(VecMode, u8)>,
    /// The first domain axis the reductions are hoisted out of, if they are (see
    /// [`analysis::Hoist`]).
    pub hoisted: Option<usize>,
    /// The lanes of the hoisted reduction loop, when it is vectorised.
    pub hoisted_lanes: Option<u8>,
    /// A rough cost of one point of the domain in simple operations, used to decide on
    /// threading: with reductions at every point, the whole body per reduction point;
    /// with hoisted reductions, the nodes left in the hoisted loops.
    pub point_cost: u32,
    /// With hoisted reductions: the cost of the hoisted section per reduction point (per
    /// outer point, times the reduction extent). 0 otherwise.
    pub hoisted_cost: u32,
}

/// The symbolic dims a job's function reads from its `dims` argument, in order: extents,
/// buffer sizes, then the dims of index expressions in body order. Known dims are
/// constants in the code and are not passed.
pub(crate) fn job_dims(job: &LoopJob) -> Vec<Dim> {
    let mut out: Vec<Dim> = Vec::new();
    let mut add = |d: &Dim| {
        if known_i64(d).is_none() && !out.contains(d) {
            out.push(d.clone());
        }
    };
    let k = &job.kernel;
    k.domain.iter().for_each(&mut add);
    k.reduce.iter().for_each(&mut add);
    job.buffers.iter().for_each(|b| add(&b.size));
    for e in &k.body.values {
        for ix in e.indices() {
            ix.dims().into_iter().for_each(&mut add);
        }
    }
    for s in &k.body.stores {
        s.index.dims().into_iter().for_each(&mut add);
    }
    out
}

/// The split axis: the first axis whose extent is not the constant 1.
pub(crate) fn split_axis(kernel: &LoopKernel) -> Option<usize> {
    kernel.domain.iter().position(|d| !d.is_one())
}

/// The dtype of every node of a loop body (`None` for malformed bodies).
pub(crate) fn node_dtypes(job: &LoopJob) -> Result<Vec<DType>, String> {
    let body = &job.kernel.body;
    let mut out: Vec<DType> = Vec::with_capacity(body.values.len());
    for (i, e) in body.values.iter().enumerate() {
        let get = |v: kiln_kernel::ValueId| {
            out.get(v.index())
                .copied()
                .ok_or_else(|| format!("v{i} reads undefined {v}"))
        };
        let d = match e {
            Expr::Const(s) => s.dtype(),
            Expr::Index { dtype, .. } => *dtype,
            Expr::Load(l) => job
                .buffers
                .get(l.buffer.index())
                .map(|b| b.dtype)
                .ok_or_else(|| format!("v{i} loads unknown {}", l.buffer))?,
            Expr::Unary(op, a) => {
                kiln_ir::semantics::unary_dtype(*op, get(*a)?).map_err(|e| e.to_string())?
            }
            Expr::Binary(op, a, b) => kiln_ir::semantics::binary_dtype(*op, get(*a)?, get(*b)?)
                .map_err(|e| e.to_string())?,
            Expr::Select(_, a, _) => get(*a)?,
            Expr::Cast(d, _) => *d,
            Expr::Reduce { value, .. } => get(*value)?,
            Expr::Acc => return Err(format!("v{i}: `acc` outside a contraction epilogue")),
        };
        out.push(d);
    }
    Ok(out)
}

/// Compiles a loop job into `jit`; returns the function id and its run-time info.
pub(crate) fn define_loop(jit: &mut Jit, job: &LoopJob) -> Result<(FuncId, LoopInfo), String> {
    let dtypes = node_dtypes(job)?;
    let phases = Phases::new(&job.kernel.body);
    let hoist = analysis::hoist(&job.kernel, &phases);
    let plans: Vec<VecPlan> = match &hoist {
        None => analysis::plan(&job.kernel, &dtypes, &phases)
            .into_iter()
            .collect(),
        Some(_) => {
            let domain = analysis::domain_plan(&job.kernel, &dtypes, &phases);
            let reduce = analysis::reduce_plan(&job.kernel, &dtypes, &phases);
            domain.into_iter().chain(reduce).collect()
        }
    };
    let reuse = hoist
        .as_ref()
        .and_then(|h| analysis::reuse(&job.kernel, &dtypes, &phases, h));
    let dims = job_dims(job);
    let id = jit.declare_kernel()?;
    let mut ctx = jit.module.make_context();
    ctx.func.signature = jit.kernel_signature();
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    let split = split_axis(&job.kernel);
    let target = jit.module.target_config();
    {
        let b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let mut cg = Cg {
            b,
            jit: &mut *jit,
            job,
            dtypes,
            phases,
            plans: plans.clone(),
            hoist: hoist.clone(),
            reuse,
            kept: Vec::new(),
            bufs: Vec::new(),
            dims: HashMap::new(),
            err: None,
            imported: HashMap::new(),
        };
        cg.emit(&dims, split)?;
        cg.b.seal_all_blocks();
        cg.b.finalize(target);
    }
    let dump = std::env::var_os("KILN_CPU_DUMP").is_some();
    if dump {
        ctx.set_disasm(true);
        eprintln!(
            "; {id}: loop {:?} reduce {:?}",
            job.kernel.domain, job.kernel.reduce
        );
        eprintln!("{}", ctx.func.display());
    }
    let module = &mut jit.module;
    let defined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        module
            .define_function(id, &mut ctx)
            .map_err(|e| format!("{e:?}"))
    }));
    match defined {
        Ok(r) => r?,
        Err(_) => return Err("the code generator panicked".to_string()),
    }
    if dump && let Some(c) = ctx.compiled_code() {
        eprintln!("{}", c.vcode.as_deref().unwrap_or(""));
    }
    jit.module.clear_context(&mut ctx);
    let body = &job.kernel.body;
    let in_section = |i: usize| hoist.as_ref().is_some_and(|h| h.outer[i]);
    let cost = |section: bool| -> u32 {
        body.values
            .iter()
            .enumerate()
            .filter(|&(i, _)| in_section(i) == section)
            .map(|(_, e)| cost_of(e))
            .sum()
    };
    let point_cost = cost(false) + body.stores.len() as u32;
    let hoisted_cost = if hoist.is_some() {
        cost(true).max(1)
    } else {
        0
    };
    let reduce_lanes = plans
        .iter()
        .find(|p| p.mode == VecMode::Reduce)
        .map(|p| p.lanes);
    Ok((
        id,
        LoopInfo {
            split,
            vector: match &hoist {
                None => plans.first().map(|p| (p.mode, p.lanes)),
                Some(_) => plans
                    .iter()
                    .find(|p| p.mode == VecMode::Domain)
                    .map(|p| (p.mode, p.lanes)),
            },
            hoisted: hoist.as_ref().map(|h| h.first),
            hoisted_lanes: hoist.as_ref().and(reduce_lanes),
            point_cost: point_cost.max(1),
            hoisted_cost,
        },
    ))
}

/// A value of the body at the current point: one scalar, or one vector holding the
/// values of `lanes` consecutive points of the vectorised variable. Bools are `i8` 0/1 as
/// scalars and all-ones/zero lane masks as vectors.
#[derive(Clone, Copy, Debug)]
pub(crate) enum V {
    S(Value),
    V(Value),
}

/// The vector context of a point: the vectorised variable (whose value in the environment
/// is that of lane 0) and the lane count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VecCtx {
    pub var: VarRef,
    pub lanes: u8,
}

/// The environment a node is evaluated in.
#[derive(Clone, Debug)]
pub(crate) struct Env {
    pub vars: Vec<Value>,
    pub reds: Vec<Value>,
    pub vals: Vec<Option<V>>,
    pub vec: Option<VecCtx>,
}

/// The Cranelift type of a scalar of `dt`.
pub(crate) fn sty(dt: DType) -> Type {
    match dt {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I32 | DType::U32 => types::I32,
        DType::I64 => types::I64,
        DType::Bool => types::I8,
    }
}

/// The Cranelift type of a vector of `dt` with `lanes` lanes (bools are lane masks).
pub(crate) fn vty(dt: DType, lanes: u8) -> Type {
    match (dt, lanes) {
        (DType::F32, _) => types::F32X4,
        (DType::F64, _) => types::F64X2,
        (DType::I32 | DType::U32, _) => types::I32X4,
        (DType::I64, _) => types::I64X2,
        (DType::Bool, 4) => types::I32X4,
        (DType::Bool, _) => types::I64X2,
    }
}

/// A reduction being accumulated.
struct Acc {
    node: usize,
    op: ReduceOp,
    dt: DType,
    /// The reduction runs per vector point (domain mode): `var` holds a vector.
    vector: bool,
    /// The scalar (or domain-vector) accumulator.
    var: Variable,
    /// Lane-wise partial accumulators of a reduce-mode vector loop, one per unrolled
    /// vector point.
    partials: Vec<Variable>,
    /// Float max/min partials: the lanes that have seen a NaN (an integer lane mask). The
    /// partials themselves take a compare and a blend per step (a NaN never enters them)
    /// and the result becomes NaN after the loop if any lane saw one.
    nan: Option<Variable>,
}

/// What the loops of a reduction nest share.
struct Nest<'n> {
    extents: &'n [Dim],
    env: &'n Env,
    accs: &'n [Acc],
    /// Lanes of the reduce-mode vector loop, if any.
    red_plan: Option<u8>,
    /// Vector points per iteration of the reduce-mode vector loop.
    unroll: usize,
}

pub(crate) struct Cg<'a, 'f> {
    pub b: FunctionBuilder<'f>,
    pub jit: &'a mut Jit,
    pub job: &'a LoopJob,
    pub dtypes: Vec<DType>,
    phases: Phases,
    /// The vector plans: at most one per vectorised variable.
    plans: Vec<VecPlan>,
    hoist: Option<Hoist>,
    /// Hoisted-loop values taken from the reduction loop.
    reuse: Option<Reuse>,
    /// The stack buffers of the kept values, in the order of `reuse.cached`.
    kept: Vec<StackSlot>,
    bufs: Vec<Value>,
    dims: HashMap<Dim, Value>,
    err: Option<Variable>,
    imported: HashMap<Helper, FuncRef>,
}

type R<T> = Result<T, String>;

impl Cg<'_, '_> {
    fn emit(&mut self, dims: &[Dim], split: Option<usize>) -> R<()> {
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        let params = self.b.block_params(entry).to_vec();
        let [bufs_ptr, dims_ptr, start, end, flags_ptr] = params[..] else {
            return Err("kernel signature mismatch".into());
        };
        for k in 0..self.job.buffers.len() {
            let off = i32::try_from(k * 8).map_err(|_| "too many buffers")?;
            let p = self.b.ins().load(
                types::I64,
                MemFlagsData::trusted().with_readonly(),
                bufs_ptr,
                off,
            );
            self.bufs.push(p);
        }
        for (k, d) in dims.iter().enumerate() {
            let off = i32::try_from(k * 8).map_err(|_| "too many dims")?;
            let v = self.b.ins().load(
                types::I64,
                MemFlagsData::trusted().with_readonly(),
                dims_ptr,
                off,
            );
            self.dims.insert(d.clone(), v);
        }
        if let Some(reuse) = &self.reuse {
            for &(j, _) in &reuse.cached {
                let bytes = self.dtypes[j].size_bytes() as u64 * u64::from(reuse.extent);
                let size = u32::try_from(bytes).map_err(|_| "kept values too large")?;
                let slot = self.b.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    size,
                    4,
                ));
                self.kept.push(slot);
            }
        }
        let err = self.b.declare_var(types::I32);
        let zero = self.b.ins().iconst(types::I32, 0);
        self.b.def_var(err, zero);
        self.err = Some(err);

        let rank = self.job.kernel.domain.len();
        let zero64 = self.b.ins().iconst(types::I64, 0);
        let mut vars = vec![zero64; rank];
        match split {
            Some(axis) => self.axis(axis, axis, start, end, &mut vars, None)?,
            None => {
                let point = self.b.create_block();
                let done = self.b.create_block();
                let run = self.b.ins().icmp(IntCC::SignedLessThan, start, end);
                self.b.ins().brif(run, point, &[], done, &[]);
                self.b.switch_to_block(point);
                self.point(&vars, None, None)?;
                self.b.ins().jump(done, &[]);
                self.b.switch_to_block(done);
            }
        }
        let e = self.b.use_var(err);
        let old = self
            .b
            .ins()
            .load(types::I32, MemFlagsData::trusted(), flags_ptr, 0);
        let new = self.b.ins().bor(old, e);
        self.b
            .ins()
            .store(MemFlagsData::trusted(), new, flags_ptr, 0);
        self.b.ins().return_(&[]);
        Ok(())
    }

    /// The value of a dim (a constant, or loaded at entry).
    pub(crate) fn dim(&mut self, d: &Dim) -> R<Value> {
        if let Some(k) = known_i64(d) {
            return Ok(self.b.ins().iconst(types::I64, k));
        }
        self.dims
            .get(d)
            .copied()
            .ok_or_else(|| format!("internal: dim {d} was not collected"))
    }

    /// Emits `for i in [lo, hi) step 1 { f(i) }` (the caller positions the builder).
    fn for_range(
        &mut self,
        lo: Value,
        hi: Value,
        step: i64,
        f: &mut dyn FnMut(&mut Self, Value) -> R<()>,
    ) -> R<Variable> {
        let var = self.b.declare_var(types::I64);
        self.b.def_var(var, lo);
        self.for_var(var, hi, step, f)?;
        Ok(var)
    }

    /// Emits `while var < hi { f(var); var += step }`, continuing from the variable's value.
    fn for_var(
        &mut self,
        var: Variable,
        hi: Value,
        step: i64,
        f: &mut dyn FnMut(&mut Self, Value) -> R<()>,
    ) -> R<()> {
        let header = self.b.create_block();
        let body = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(var);
        let go = self.b.ins().icmp(IntCC::SignedLessThan, i, hi);
        self.b.ins().brif(go, body, &[], exit, &[]);
        self.b.switch_to_block(body);
        f(self, i)?;
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.def_var(var, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    /// Emits the loop over domain axis `k` and everything inside it. `known`: the values
    /// of the hoisted section at the current outer point, once it has run; the section
    /// runs on entering the first hoisted axis (or the split axis, when that comes later:
    /// the axes before it have one point).
    fn axis(
        &mut self,
        k: usize,
        split: usize,
        start: Value,
        end: Value,
        vars: &mut Vec<Value>,
        known: Option<&[Option<V>]>,
    ) -> R<()> {
        if known.is_none()
            && let Some(first) = self.hoist.as_ref().map(|h| h.first)
            && (k == first || (k == split && first < split))
        {
            let section = self.hoisted_section(vars)?;
            return self.axis(k, split, start, end, vars, Some(&section));
        }
        let rank = self.job.kernel.domain.len();
        let extent = self.job.kernel.domain[k].clone();
        if k != split && extent.is_one() {
            vars[k] = self.b.ins().iconst(types::I64, 0);
            return if k + 1 == rank {
                self.point(vars, None, known)
            } else {
                self.axis(k + 1, split, start, end, vars, known)
            };
        }
        let (lo, hi) = if k == split {
            (start, end)
        } else {
            (self.b.ins().iconst(types::I64, 0), self.dim(&extent)?)
        };
        if k + 1 < rank {
            let mut inner_vars = vars.clone();
            self.for_range(lo, hi, 1, &mut |cg, i| {
                inner_vars[k] = i;
                cg.axis(k + 1, split, start, end, &mut inner_vars, known)
            })?;
            return Ok(());
        }
        let domain_plan = self
            .plans
            .iter()
            .find(|p| p.mode == VecMode::Domain)
            .map(|p| p.lanes);
        let var = self.b.declare_var(types::I64);
        self.b.def_var(var, lo);
        if let Some(lanes) = domain_plan {
            let span = self.b.ins().isub(hi, lo);
            let whole = self.b.ins().band_imm_s(span, !(i64::from(lanes) - 1));
            let vend = self.b.ins().iadd(lo, whole);
            let mut vv = vars.clone();
            self.for_var(var, vend, i64::from(lanes), &mut |cg, i| {
                vv[k] = i;
                cg.point(
                    &vv,
                    Some(VecCtx {
                        var: VarRef::Loop(k),
                        lanes,
                    }),
                    known,
                )
            })?;
        }
        let mut sv = vars.clone();
        self.for_var(var, hi, 1, &mut |cg, i| {
            sv[k] = i;
            cg.point(&sv, None, known)
        })?;
        Ok(())
    }

    /// Emits the hoisted section at the current outer point (`vars` of the axes before the
    /// first hoisted one; the others are not read): every node that does not vary along
    /// the hoisted axes, the reduction loops included. Returns the values for the points.
    fn hoisted_section(&mut self, vars: &[Value]) -> R<Vec<Option<V>>> {
        let outer = self
            .hoist
            .as_ref()
            .map(|h| h.outer.clone())
            .ok_or("internal: no hoisted section")?;
        let n = self.job.kernel.body.values.len();
        let mut env = Env {
            vars: vars.to_vec(),
            reds: Vec::new(),
            vals: vec![None; n],
            vec: None,
        };
        let section: Vec<usize> = (0..n).filter(|&i| outer.get(i) == Some(&true)).collect();
        for &i in &section {
            if self.phases.is_pre(i) {
                let v = self.node(i, &env)?;
                env.vals[i] = Some(v);
            }
        }
        self.reduction(&mut env)?;
        for &i in &section {
            if self.phases.is_post(i) {
                let v = self.node(i, &env)?;
                env.vals[i] = Some(v);
            }
        }
        Ok(env.vals)
    }

    /// Emits the body at one point (or one vector of points). `known`: the values of the
    /// hoisted section (reductions included), which are not evaluated again.
    fn point(&mut self, vars: &[Value], vec: Option<VecCtx>, known: Option<&[Option<V>]>) -> R<()> {
        let n = self.job.kernel.body.values.len();
        let mut env = Env {
            vars: vars.to_vec(),
            reds: Vec::new(),
            vals: known.map_or_else(|| vec![None; n], <[Option<V>]>::to_vec),
            vec,
        };
        if known.is_some() {
            self.load_kept(&mut env)?;
        }
        for i in 0..n {
            if self.phases.is_pre(i) && env.vals[i].is_none() && !self.skipped(i, known) {
                let v = self.node(i, &env)?;
                env.vals[i] = Some(v);
            }
        }
        if !self.phases.reduces.is_empty() && known.is_none() {
            self.reduction(&mut env)?;
        }
        for i in 0..n {
            if self.phases.is_post(i) && env.vals[i].is_none() && !self.skipped(i, known) {
                let v = self.node(i, &env)?;
                env.vals[i] = Some(v);
            }
        }
        let stores = self.job.kernel.body.stores.clone();
        for s in &stores {
            let v = env.vals[s.value.index()].ok_or("store of an unevaluated value")?;
            self.store(s.buffer.index(), &s.index, v, &env)?;
        }
        Ok(())
    }

    /// The plan that vectorises `var`.
    fn plan_of(&self, var: VarRef) -> Option<&VecPlan> {
        self.plans.iter().find(|p| p.var == var)
    }

    fn is_vector_node(&self, i: usize, env: &Env) -> bool {
        env.vec.is_some_and(|c| {
            self.plan_of(c.var)
                .is_some_and(|p| p.vector.get(i).copied().unwrap_or(false))
        })
    }

    /// The reduction loops; sets the values of the reduction nodes in `env`.
    fn reduction(&mut self, env: &mut Env) -> R<()> {
        let reduces = self.phases.reduces.clone();
        // Reduce-mode vectors only appear inside the innermost reduction loop.
        let red_plan = match env.vec {
            Some(_) => None,
            None => self
                .plans
                .iter()
                .find(|p| p.mode == VecMode::Reduce)
                .map(|p| p.lanes),
        };
        let unroll = red_plan.map_or(1, |_| self.reduce_unroll());
        let mut accs = Vec::new();
        for &r in &reduces {
            let Expr::Reduce { op, init, .. } = self.job.kernel.body.values[r].clone() else {
                continue;
            };
            let dt = self.dtypes[r];
            let vector = self.is_vector_node(r, env);
            let init_v = self.constant(init);
            let (var, partials, nan) = if vector {
                let lanes = env.vec.map_or(4, |v| v.lanes);
                let ty = vty(dt, lanes);
                let var = self.b.declare_var(ty);
                let s = self.b.ins().splat(ty, init_v);
                self.b.def_var(var, s);
                (var, Vec::new(), None)
            } else {
                let var = self.b.declare_var(sty(dt));
                self.b.def_var(var, init_v);
                let mut partials = Vec::new();
                let mut nan = None;
                if let Some(lanes) = red_plan {
                    let ty = vty(dt, lanes);
                    let id = self.identity(op, dt);
                    let s = self.b.ins().splat(ty, id);
                    for _ in 0..unroll {
                        let v = self.b.declare_var(ty);
                        self.b.def_var(v, s);
                        partials.push(v);
                    }
                    if matches!(op, ReduceOp::Max | ReduceOp::Min) && dt.is_float() {
                        let mty = ty.as_int();
                        let m = self.b.declare_var(mty);
                        let z = self.b.ins().iconst(mty.lane_type(), 0);
                        let zs = self.b.ins().splat(mty, z);
                        self.b.def_var(m, zs);
                        nan = Some(m);
                    }
                }
                (var, partials, nan)
            };
            accs.push(Acc {
                node: r,
                op,
                dt,
                vector,
                var,
                partials,
                nan,
            });
        }
        let extents = self.job.kernel.reduce.clone();
        if extents.is_empty() {
            return Err("reduction without reduction axes".into());
        }
        let zero = self.b.ins().iconst(types::I64, 0);
        let reds = vec![zero; extents.len()];
        let nest = Nest {
            extents: &extents,
            env,
            accs: &accs,
            red_plan,
            unroll,
        };
        self.reduce_nest(&nest, 0, &reds)?;
        for a in &accs {
            let mut v = self.b.use_var(a.var);
            if !a.partials.is_empty() {
                // Pairwise combination of the partial vectors, then the lanes in order.
                let mut parts: Vec<Value> = a.partials.iter().map(|&p| self.b.use_var(p)).collect();
                while parts.len() > 1 {
                    let mut next = Vec::with_capacity(parts.len().div_ceil(2));
                    for pair in parts.chunks(2) {
                        next.push(match pair {
                            [x, y] => self.combine(a.op, a.dt, *x, *y, true),
                            [x] => *x,
                            _ => return Err("internal: empty partial pair".into()),
                        });
                    }
                    parts = next;
                }
                let lanes = red_plan.unwrap_or(4);
                for l in 0..lanes {
                    let x = self.b.ins().extractlane(parts[0], l);
                    v = self.combine(a.op, a.dt, v, x, false);
                }
                if let Some(m) = a.nan {
                    let m = self.b.use_var(m);
                    let any = self.b.ins().vany_true(m);
                    let nan = match a.dt {
                        DType::F64 => self.b.ins().f64const(f64::NAN),
                        _ => self.b.ins().f32const(f32::NAN),
                    };
                    v = self.b.ins().select(any, nan, v);
                }
            }
            env.vals[a.node] = Some(if a.vector { V::V(v) } else { V::S(v) });
        }
        Ok(())
    }

    /// How many vectors of partial accumulators a reduce-mode vector loop keeps (and how
    /// many vector points one iteration evaluates): enough independent chains to hide the
    /// latency of the combining instruction when the terms are cheap, two otherwise.
    fn reduce_unroll(&self) -> usize {
        let cost: u32 = self
            .job
            .kernel
            .body
            .values
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.phases.inner[i])
            .map(|(_, e)| cost_of(e))
            .sum();
        if cost <= 8 { 4 } else { 2 }
    }

    /// Emits reduction loop `k` of the nest (and the loops inside it).
    fn reduce_nest(&mut self, n: &Nest<'_>, k: usize, reds: &[Value]) -> R<()> {
        let extent = &n.extents[k];
        let hi = self.dim(extent)?;
        let lo = self.b.ins().iconst(types::I64, 0);
        if k + 1 < n.extents.len() {
            let mut inner = reds.to_vec();
            self.for_range(lo, hi, 1, &mut |cg, i| {
                inner[k] = i;
                cg.reduce_nest(n, k + 1, &inner)
            })?;
            return Ok(());
        }
        let known = extent.as_known();
        let var = self.b.declare_var(types::I64);
        self.b.def_var(var, lo);
        if let Some(lanes) = n.red_plan {
            let lanes_i = i64::from(lanes);
            // Steps that are multiples of the extent need no loop after them.
            let needed = |step: i64| known.is_none_or(|e| e % step.unsigned_abs() != 0);
            let mut steps = vec![lanes_i * n.unroll as i64];
            if n.unroll > 1 && needed(steps[0]) {
                steps.push(lanes_i);
            }
            for (s, &step) in steps.iter().enumerate() {
                let group = if s == 0 { n.unroll } else { 1 };
                let whole = self.b.ins().band_imm_s(hi, !(step - 1));
                let mut vr = reds.to_vec();
                self.for_var(var, whole, step, &mut |cg, i| {
                    let mut points = Vec::with_capacity(group);
                    for g in 0..group {
                        vr[k] = if g == 0 {
                            i
                        } else {
                            cg.b.ins().iadd_imm_s(i, lanes_i * g as i64)
                        };
                        let mut e = n.env.clone();
                        e.reds = vr.clone();
                        e.vec = Some(VecCtx {
                            var: VarRef::Red(k),
                            lanes,
                        });
                        cg.inner_nodes(&mut e)?;
                        cg.keep(&e, k)?;
                        points.push(e);
                    }
                    for a in n.accs {
                        let mut xs = Vec::with_capacity(points.len());
                        for (g, e) in points.iter().enumerate() {
                            let Some(&lv) = a.partials.get(g) else {
                                continue;
                            };
                            let x = cg.operand_of(a.node, e)?;
                            let x = cg.broadcast(x, a.dt, lanes);
                            let cur = cg.b.use_var(lv);
                            let next = match a.nan {
                                Some(_) => cg.max_min_step(a.op, cur, x),
                                None => cg.combine(a.op, a.dt, cur, x, true),
                            };
                            cg.b.def_var(lv, next);
                            xs.push(x);
                        }
                        if let Some(m) = a.nan {
                            cg.note_nans(m, &xs);
                        }
                    }
                    Ok(())
                })?;
            }
            if !needed(lanes_i) {
                return Ok(());
            }
        }
        let mut sr = reds.to_vec();
        let vec_lanes = n.env.vec.map_or(4, |v| v.lanes);
        self.for_var(var, hi, 1, &mut |cg, i| {
            sr[k] = i;
            let mut e = n.env.clone();
            e.reds = sr.clone();
            cg.inner_nodes(&mut e)?;
            cg.keep(&e, k)?;
            for a in n.accs {
                let x = cg.operand_of(a.node, &e)?;
                let x = match (a.vector, x) {
                    (true, x) => cg.broadcast(x, a.dt, vec_lanes),
                    (false, V::S(x)) => x,
                    (false, V::V(_)) => {
                        return Err("vector operand of a scalar reduction".into());
                    }
                };
                let cur = cg.b.use_var(a.var);
                let next = cg.combine(a.op, a.dt, cur, x, a.vector);
                cg.b.def_var(a.var, next);
            }
            Ok(())
        })?;
        Ok(())
    }

    /// A hoisted-loop node that is not evaluated (see [`Reuse::skip`]).
    fn skipped(&self, i: usize, known: Option<&[Option<V>]>) -> bool {
        known.is_some()
            && self
                .reuse
                .as_ref()
                .is_some_and(|r| r.skip.get(i).copied().unwrap_or(false))
    }

    /// The address of element `idx` of kept buffer `slot` of dtype `dt`.
    fn kept_address(&mut self, slot: StackSlot, idx: Value, dt: DType) -> Value {
        let base = self.b.ins().stack_addr(types::I64, slot, 0);
        let shift = dt.size_bytes().trailing_zeros();
        let off = self.b.ins().ishl_imm_s(idx, i64::from(shift));
        self.b.ins().iadd(base, off)
    }

    /// Stores the kept values of a reduction point (`env.reds[k]` is its coordinate along
    /// the innermost reduction axis, the first lane's for a vector point).
    fn keep(&mut self, env: &Env, k: usize) -> R<()> {
        let Some(reuse) = self.reuse.clone() else {
            return Ok(());
        };
        let idx = *env.reds.get(k).ok_or("reduction variable out of range")?;
        for (&(_, i), &slot) in reuse.cached.iter().zip(&self.kept.clone()) {
            let v = env.vals[i].ok_or_else(|| format!("kept value v{i} was not evaluated"))?;
            let dt = self.dtypes[i];
            let x = match (v, env.vec) {
                (V::V(x), _) => x,
                (V::S(x), None) => x,
                (V::S(x), Some(ctx)) => self.broadcast(V::S(x), dt, ctx.lanes),
            };
            let addr = self.kept_address(slot, idx, dt);
            self.b
                .ins()
                .store(MemFlagsData::new().with_notrap(), x, addr, 0);
        }
        Ok(())
    }

    /// Loads the kept values at a hoisted-loop point (as vectors where the node is one).
    fn load_kept(&mut self, env: &mut Env) -> R<()> {
        let Some(reuse) = self.reuse.clone() else {
            return Ok(());
        };
        let last = self
            .job
            .kernel
            .domain
            .len()
            .checked_sub(1)
            .ok_or("no domain axis")?;
        let idx = *env.vars.get(last).ok_or("loop variable out of range")?;
        for (&(j, _), &slot) in reuse.cached.iter().zip(&self.kept.clone()) {
            let dt = self.dtypes[j];
            let addr = self.kept_address(slot, idx, dt);
            let v = match env.vec {
                Some(ctx) if self.is_vector_node(j, env) => V::V(self.b.ins().load(
                    vty(dt, ctx.lanes),
                    MemFlagsData::new().with_notrap(),
                    addr,
                    0,
                )),
                _ => V::S(self.b.ins().load(sty(dt), MemFlagsData::trusted(), addr, 0)),
            };
            env.vals[j] = Some(v);
        }
        Ok(())
    }

    /// Evaluates the nodes that vary over the reduction domain and feed a reduction.
    fn inner_nodes(&mut self, env: &mut Env) -> R<()> {
        for i in 0..self.job.kernel.body.values.len() {
            if self.phases.inner[i] {
                let v = self.node(i, env)?;
                env.vals[i] = Some(v);
            }
        }
        Ok(())
    }

    /// The value a reduction node folds at the current reduction point.
    fn operand_of(&self, r: usize, env: &Env) -> R<V> {
        let dep = self.phases.deps[r]
            .first()
            .copied()
            .ok_or("reduction without operand")?;
        env.vals[dep].ok_or_else(|| format!("reduced operand v{dep} was not evaluated"))
    }

    /// The neutral element of a reduction.
    fn identity(&mut self, op: ReduceOp, dt: DType) -> Value {
        let s = match (op, dt) {
            (ReduceOp::Sum, DType::F32) => Scalar::F32(-0.0),
            (ReduceOp::Sum, DType::F64) => Scalar::F64(-0.0),
            (ReduceOp::Prod, _) => Scalar::from_i64(dt, 1),
            (ReduceOp::Sum, _) => Scalar::zero(dt),
            (ReduceOp::Max, DType::F32) => Scalar::F32(f32::NEG_INFINITY),
            (ReduceOp::Max, DType::F64) => Scalar::F64(f64::NEG_INFINITY),
            (ReduceOp::Max, DType::I32) => Scalar::I32(i32::MIN),
            (ReduceOp::Max, DType::I64) => Scalar::I64(i64::MIN),
            (ReduceOp::Max, _) => Scalar::zero(dt),
            (ReduceOp::Min, DType::F32) => Scalar::F32(f32::INFINITY),
            (ReduceOp::Min, DType::F64) => Scalar::F64(f64::INFINITY),
            (ReduceOp::Min, DType::I32) => Scalar::I32(i32::MAX),
            (ReduceOp::Min, DType::I64) => Scalar::I64(i64::MAX),
            (ReduceOp::Min, DType::U32) => Scalar::U32(u32::MAX),
            (ReduceOp::Min, _) => Scalar::Bool(true),
        };
        self.constant(s)
    }

    /// One reduction step `op(acc, x)` on scalars or vectors.
    fn combine(&mut self, op: ReduceOp, dt: DType, acc: Value, x: Value, vector: bool) -> Value {
        let ins = self.b.ins();
        match (op, dt.is_float()) {
            (ReduceOp::Sum, true) => ins.fadd(acc, x),
            (ReduceOp::Prod, true) => ins.fmul(acc, x),
            (ReduceOp::Max, true) => ins.fmax(acc, x),
            (ReduceOp::Min, true) => ins.fmin(acc, x),
            (ReduceOp::Sum, false) => ins.iadd(acc, x),
            (ReduceOp::Prod, false) => ins.imul(acc, x),
            (ReduceOp::Max | ReduceOp::Min, false) => {
                let cc = match (op, dt == DType::U32) {
                    (ReduceOp::Max, true) => IntCC::UnsignedGreaterThan,
                    (ReduceOp::Max, false) => IntCC::SignedGreaterThan,
                    (_, true) => IntCC::UnsignedLessThan,
                    (_, false) => IntCC::SignedLessThan,
                };
                let c = self.b.ins().icmp(cc, x, acc);
                if vector {
                    self.b.ins().bitselect(c, x, acc)
                } else {
                    self.b.ins().select(c, x, acc)
                }
            }
        }
    }

    /// One float max/min step of a partial vector that never holds a NaN: `x` replaces
    /// the lanes of `acc` it beats (a compare and a blend; a NaN never does, see
    /// [`Self::note_nans`]).
    fn max_min_step(&mut self, op: ReduceOp, acc: Value, x: Value) -> Value {
        let cc = if op == ReduceOp::Min {
            FloatCC::LessThan
        } else {
            FloatCC::GreaterThan
        };
        let ty = self.b.func.dfg.value_type(acc);
        let flags = MemFlagsData::new().with_endianness(Endianness::Little);
        let beats = self.b.ins().fcmp(cc, x, acc);
        let mask = self.b.ins().bitcast(ty, flags, beats);
        self.b.ins().bitselect(mask, x, acc)
    }

    /// ORs into the lane mask variable `nan` the lanes where any of `xs` is NaN: one
    /// unordered compare per pair of vectors, combined as a tree (one step of the
    /// loop-carried chain per iteration).
    fn note_nans(&mut self, nan: Variable, xs: &[Value]) {
        let mut masks: Vec<Value> = xs
            .chunks(2)
            .filter_map(|p| {
                let (&a, &b) = (p.first()?, p.last()?);
                Some(self.b.ins().fcmp(FloatCC::Unordered, a, b))
            })
            .collect();
        while masks.len() > 1 {
            masks = masks
                .chunks(2)
                .filter_map(|p| match p {
                    [a, b] => Some(self.b.ins().bor(*a, *b)),
                    _ => p.first().copied(),
                })
                .collect();
        }
        if let Some(&m) = masks.first() {
            let seen = self.b.use_var(nan);
            let seen = self.b.ins().bor(seen, m);
            self.b.def_var(nan, seen);
        }
    }

    /// A scalar constant.
    pub(crate) fn constant(&mut self, s: Scalar) -> Value {
        let ins = self.b.ins();
        match s {
            Scalar::F32(v) => ins.f32const(v),
            Scalar::F64(v) => ins.f64const(v),
            Scalar::I32(v) => ins.iconst(types::I32, i64::from(v)),
            Scalar::U32(v) => ins.iconst(types::I32, i64::from(v as i32)),
            Scalar::I64(v) => ins.iconst(types::I64, v),
            Scalar::Bool(v) => ins.iconst(types::I8, i64::from(v)),
        }
    }

    /// Broadcasts a value to a vector of `lanes` (bools become lane masks).
    pub(crate) fn broadcast(&mut self, v: V, dt: DType, lanes: u8) -> Value {
        match v {
            V::V(x) => x,
            V::S(x) => {
                let ty = vty(dt, lanes);
                if dt == DType::Bool {
                    let m = self.b.ins().bmask(ty.lane_type(), x);
                    self.b.ins().splat(ty, m)
                } else {
                    self.b.ins().splat(ty, x)
                }
            }
        }
    }

    /// Imports (once) and returns a helper function.
    pub(crate) fn helper(&mut self, h: Helper) -> R<FuncRef> {
        if let Some(f) = self.imported.get(&h) {
            return Ok(*f);
        }
        let f = self
            .jit
            .import_helper(h, self.b.func)
            .ok_or("internal: helper not declared")?;
        self.imported.insert(h, f);
        Ok(f)
    }

    /// ORs `bit` into the error word when `cond` (an `i8`) is true.
    pub(crate) fn flag_if(&mut self, cond: Value, bit: u32) -> R<()> {
        let err = self.err.ok_or("internal: no error variable")?;
        let c = self.b.ins().uextend(types::I32, cond);
        let shift = bit.trailing_zeros();
        let c = self.b.ins().ishl_imm_s(c, i64::from(shift));
        let cur = self.b.use_var(err);
        let next = self.b.ins().bor(cur, c);
        self.b.def_var(err, next);
        Ok(())
    }

    /// Converts an integer or bool scalar to an `i64` index.
    fn index_of(&mut self, v: Value, dt: DType) -> R<Value> {
        Ok(match dt {
            DType::I64 => v,
            DType::I32 => self.b.ins().sextend(types::I64, v),
            DType::U32 | DType::Bool => self.b.ins().uextend(types::I64, v),
            DType::F32 | DType::F64 => return Err("a float value used as an index".into()),
        })
    }

    /// Emits an index expression as an `i64` (scalar environment).
    pub(crate) fn index(&mut self, e: &IndexExpr, env: &Env) -> R<Value> {
        Ok(match e {
            IndexExpr::Dim(d) => self.dim(d)?,
            IndexExpr::Var(v) => *env
                .vars
                .get(v.index())
                .ok_or("loop variable out of range")?,
            IndexExpr::Red(r) => *env
                .reds
                .get(r.index())
                .ok_or("reduction variable out of range")?,
            IndexExpr::Value(v) => {
                let x = match env.vals.get(v.index()).copied().flatten() {
                    Some(V::S(x)) => x,
                    Some(V::V(_)) => return Err("internal: vector value in a scalar index".into()),
                    None => return Err(format!("{v} used in an index before it is defined")),
                };
                let dt = self.dtypes[v.index()];
                self.index_of(x, dt)?
            }
            IndexExpr::Add(a, b) => {
                let (a, b) = (self.index(a, env)?, self.index(b, env)?);
                self.b.ins().iadd(a, b)
            }
            IndexExpr::Sub(a, b) => {
                let (a, b) = (self.index(a, env)?, self.index(b, env)?);
                self.b.ins().isub(a, b)
            }
            IndexExpr::Mul(a, b) => {
                let (a, b) = (self.index(a, env)?, self.index(b, env)?);
                self.b.ins().imul(a, b)
            }
            IndexExpr::Div(a, d) => {
                let a = self.index(a, env)?;
                self.floor_divmod(a, d, true)?
            }
            IndexExpr::Mod(a, d) => {
                let a = self.index(a, env)?;
                self.floor_divmod(a, d, false)?
            }
        })
    }

    /// `floor(a / d)` or `a mod d` for a divisor `d >= 1` (checked before the kernel runs).
    fn floor_divmod(&mut self, a: Value, d: &Dim, div: bool) -> R<Value> {
        if let Some(k) = known_i64(d) {
            if k == 1 {
                return Ok(if div {
                    a
                } else {
                    self.b.ins().iconst(types::I64, 0)
                });
            }
            if k > 1 && (k & (k - 1)) == 0 {
                let s = i64::from(k.trailing_zeros());
                return Ok(if div {
                    self.b.ins().sshr_imm_s(a, s)
                } else {
                    self.b.ins().band_imm_s(a, k - 1)
                });
            }
        }
        let dv = self.dim(d)?;
        let q = self.b.ins().sdiv(a, dv);
        let qd = self.b.ins().imul(q, dv);
        let r = self.b.ins().isub(a, qd);
        let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, r, 0);
        Ok(if div {
            let one = self.b.ins().uextend(types::I64, neg);
            self.b.ins().isub(q, one)
        } else {
            let zero = self.b.ins().iconst(types::I64, 0);
            let add = self.b.ins().select(neg, dv, zero);
            self.b.ins().iadd(r, add)
        })
    }

    /// The address of element `idx` of local buffer `buf`.
    fn address(&mut self, buf: usize, idx: Value) -> R<Value> {
        let base = *self.bufs.get(buf).ok_or("unknown buffer")?;
        let dt = self.job.buffers.get(buf).ok_or("unknown buffer")?.dtype;
        let shift = dt.size_bytes().trailing_zeros();
        let off = if shift == 0 {
            idx
        } else {
            self.b.ins().ishl_imm_s(idx, i64::from(shift))
        };
        Ok(self.b.ins().iadd(base, off))
    }

    fn buffer_dtype(&self, buf: usize) -> R<DType> {
        Ok(self.job.buffers.get(buf).ok_or("unknown buffer")?.dtype)
    }

    /// A scalar load of element `idx` (proven or checked in bounds by the caller).
    fn load_scalar_at(&mut self, buf: usize, idx: Value) -> R<Value> {
        let dt = self.buffer_dtype(buf)?;
        let addr = self.address(buf, idx)?;
        Ok(self.b.ins().load(sty(dt), MemFlagsData::trusted(), addr, 0))
    }

    /// `lo <= e < hi` for every guard, as an `i8`.
    fn guards_hold(&mut self, guards: &[kiln_kernel::Guard], env: &Env) -> R<Value> {
        let mut cond: Option<Value> = None;
        for g in guards {
            let lo = self.index(&g.lo, env)?;
            let e = self.index(&g.expr, env)?;
            let hi = self.index(&g.hi, env)?;
            let a = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, lo, e);
            let b = self.b.ins().icmp(IntCC::SignedLessThan, e, hi);
            let both = self.b.ins().band(a, b);
            cond = Some(match cond {
                Some(c) => self.b.ins().band(c, both),
                None => both,
            });
        }
        Ok(match cond {
            Some(c) => c,
            None => self.b.ins().iconst(types::I8, 1),
        })
    }

    /// Emits a load at one point with scalar semantics (plain, masked or checked).
    fn load_scalar(&mut self, l: &Load, env: &Env) -> R<Value> {
        let buf = l.buffer.index();
        let dt = self.buffer_dtype(buf)?;
        match &l.mode {
            LoadMode::Plain => {
                let idx = self.index(&l.index, env)?;
                self.load_scalar_at(buf, idx)
            }
            LoadMode::Masked { guards, fill } => {
                let cond = self.guards_hold(guards, env)?;
                let fill = self.constant(*fill);
                let yes = self.b.create_block();
                let merge = self.b.create_block();
                let out = self.b.append_block_param(merge, sty(dt));
                self.b
                    .ins()
                    .brif(cond, yes, &[], merge, &[BlockArg::Value(fill)]);
                self.b.switch_to_block(yes);
                let idx = self.index(&l.index, env)?;
                let v = self.load_scalar_at(buf, idx)?;
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(merge);
                Ok(out)
            }
            LoadMode::Checked => {
                let idx = self.index(&l.index, env)?;
                let size = self.job.buffers[buf].size.clone();
                let size = self.dim(&size)?;
                let inside = self.b.ins().icmp(IntCC::UnsignedLessThan, idx, size);
                let fast = self.b.create_block();
                let slow = self.b.create_block();
                let clamp = self.b.create_block();
                let merge = self.b.create_block();
                let out = self.b.append_block_param(merge, sty(dt));
                self.b.ins().brif(inside, fast, &[], slow, &[]);
                self.b.switch_to_block(fast);
                let v = self.load_scalar_at(buf, idx)?;
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(slow);
                self.b.set_cold_block(slow);
                let one = self.b.ins().iconst(types::I8, 1);
                self.flag_if(one, crate::codegen::FLAG_OOB)?;
                let zero = self.constant(Scalar::zero(dt));
                let empty = self
                    .b
                    .ins()
                    .icmp_imm_s(IntCC::SignedLessThanOrEqual, size, 0);
                self.b
                    .ins()
                    .brif(empty, merge, &[BlockArg::Value(zero)], clamp, &[]);
                self.b.switch_to_block(clamp);
                self.b.set_cold_block(clamp);
                let last = self.b.ins().iadd_imm_s(size, -1);
                let z64 = self.b.ins().iconst(types::I64, 0);
                let negative = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, idx, 0);
                let c = self.b.ins().select(negative, z64, last);
                let v = self.load_scalar_at(buf, c)?;
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(merge);
                Ok(out)
            }
        }
    }

    /// Emits node `i` in `env` (vector form when the plan says so and `env` is a vector
    /// point).
    fn node(&mut self, i: usize, env: &Env) -> R<V> {
        let e = self.job.kernel.body.values[i].clone();
        if self.is_vector_node(i, env) {
            let ctx = env.vec.ok_or("internal: vector node without context")?;
            return self.vector_node(i, &e, env, ctx).map(V::V);
        }
        self.scalar_node(i, &e, env).map(V::S)
    }

    fn scalar_operand(&self, v: kiln_kernel::ValueId, env: &Env) -> R<Value> {
        match env.vals.get(v.index()).copied().flatten() {
            Some(V::S(x)) => Ok(x),
            Some(V::V(_)) => Err(format!("internal: {v} is a vector in a scalar node")),
            None => Err(format!("{v} used before it is defined")),
        }
    }

    /// Scalar semantics of node `i`.
    fn scalar_node(&mut self, i: usize, e: &Expr, env: &Env) -> R<Value> {
        let dt = self.dtypes[i];
        match e {
            Expr::Const(s) => Ok(self.constant(*s)),
            Expr::Index { dtype, index } => {
                let ix = self.index(index, env)?;
                Ok(self.int_to(ix, *dtype))
            }
            Expr::Load(l) => self.load_scalar(l, env),
            Expr::Unary(op, a) => {
                let x = self.scalar_operand(*a, env)?;
                let adt = self.dtypes[a.index()];
                self.s_unary(*op, adt, x)
            }
            Expr::Binary(op, a, b) => {
                let x = self.scalar_operand(*a, env)?;
                let y = self.scalar_operand(*b, env)?;
                let adt = self.dtypes[a.index()];
                self.s_binary(*op, adt, x, y)
            }
            Expr::Select(c, a, b) => {
                let c = self.scalar_operand(*c, env)?;
                let x = self.scalar_operand(*a, env)?;
                let y = self.scalar_operand(*b, env)?;
                Ok(self.b.ins().select(c, x, y))
            }
            Expr::Cast(to, a) => {
                let x = self.scalar_operand(*a, env)?;
                let from = self.dtypes[a.index()];
                Ok(self.s_cast(from, *to, x))
            }
            Expr::Reduce { .. } => Err(format!(
                "internal: v{i} reduction evaluated as a node ({dt})"
            )),
            Expr::Acc => Err("`acc` outside a contraction epilogue".into()),
        }
    }

    /// An `i64` converted to `dt` as `Scalar::from_i64` does.
    fn int_to(&mut self, x: Value, dt: DType) -> Value {
        let ins = self.b.ins();
        match dt {
            DType::I64 => x,
            DType::I32 | DType::U32 => ins.ireduce(types::I32, x),
            DType::F32 => ins.fcvt_from_sint(types::F32, x),
            DType::F64 => ins.fcvt_from_sint(types::F64, x),
            DType::Bool => ins.icmp_imm_s(IntCC::NotEqual, x, 0),
        }
    }

    /// The scalar environment of lane `l` of a vector point.
    fn lane_env(&mut self, env: &Env, ctx: VecCtx, l: u8, needed: &[usize]) -> R<Env> {
        let mut e = env.clone();
        e.vec = None;
        if l > 0 {
            let slot = match ctx.var {
                VarRef::Loop(k) => e.vars.get_mut(k),
                VarRef::Red(k) => e.reds.get_mut(k),
            }
            .ok_or("vector variable out of range")?;
            *slot = self.b.ins().iadd_imm_s(*slot, i64::from(l));
        }
        for &d in needed {
            if let Some(V::V(x)) = env.vals.get(d).copied().flatten() {
                let dt = self.dtypes[d];
                let s = self.b.ins().extractlane(x, l);
                let s = if dt == DType::Bool {
                    self.b.ins().icmp_imm_s(IntCC::NotEqual, s, 0)
                } else {
                    s
                };
                e.vals[d] = Some(V::S(s));
            }
        }
        Ok(e)
    }

    /// Builds a vector from per-lane scalars.
    fn gather_lanes(&mut self, lanes: &[Value], dt: DType, n: u8) -> Value {
        let ty = vty(dt, n);
        let conv = |cg: &mut Self, x: Value| {
            if dt == DType::Bool {
                cg.b.ins().bmask(ty.lane_type(), x)
            } else {
                x
            }
        };
        let first = conv(self, lanes[0]);
        let mut v = self.b.ins().splat(ty, first);
        for (l, &x) in lanes.iter().enumerate().skip(1) {
            let x = conv(self, x);
            v = self.b.ins().insertlane(v, x, l as u8);
        }
        v
    }

    /// Node `i` computed lane by lane with scalar semantics.
    fn lanewise(&mut self, i: usize, e: &Expr, env: &Env, ctx: VecCtx) -> R<Value> {
        let deps = self.phases.deps[i].clone();
        let mut out = Vec::with_capacity(usize::from(ctx.lanes));
        for l in 0..ctx.lanes {
            let le = self.lane_env(env, ctx, l, &deps)?;
            out.push(self.scalar_node(i, e, &le)?);
        }
        Ok(self.gather_lanes(&out, self.dtypes[i], ctx.lanes))
    }

    fn vector_operand(&mut self, v: kiln_kernel::ValueId, env: &Env, lanes: u8) -> R<Value> {
        let x = env
            .vals
            .get(v.index())
            .copied()
            .flatten()
            .ok_or_else(|| format!("{v} used before it is defined"))?;
        let dt = self.dtypes[v.index()];
        Ok(self.broadcast(x, dt, lanes))
    }

    /// Vector semantics of node `i`: native vector code where the op and access allow,
    /// lane-by-lane scalar code otherwise.
    fn vector_node(&mut self, i: usize, e: &Expr, env: &Env, ctx: VecCtx) -> R<Value> {
        let dt = self.dtypes[i];
        let lanes = ctx.lanes;
        match e {
            Expr::Load(l) => self.vector_load(i, l, e, env, ctx),
            Expr::Unary(op, a) => {
                let adt = self.dtypes[a.index()];
                let x = self.vector_operand(*a, env, lanes)?;
                match self.v_unary(*op, adt, x, lanes)? {
                    Some(v) => Ok(v),
                    None => self.lanewise(i, e, env, ctx),
                }
            }
            Expr::Binary(op, a, b) => {
                let adt = self.dtypes[a.index()];
                let x = self.vector_operand(*a, env, lanes)?;
                let y = self.vector_operand(*b, env, lanes)?;
                match self.v_binary(*op, adt, x, y, lanes)? {
                    Some(v) => Ok(v),
                    None => self.lanewise(i, e, env, ctx),
                }
            }
            Expr::Select(c, a, b) => {
                let c = self.vector_operand(*c, env, lanes)?;
                let x = self.vector_operand(*a, env, lanes)?;
                let y = self.vector_operand(*b, env, lanes)?;
                let ty = vty(dt, lanes);
                let mask = if ty != vty(DType::Bool, lanes) {
                    self.b.ins().bitcast(ty, MemFlagsData::new(), c)
                } else {
                    c
                };
                Ok(self.b.ins().bitselect(mask, x, y))
            }
            Expr::Cast(to, a) => {
                let from = self.dtypes[a.index()];
                let x = self.vector_operand(*a, env, lanes)?;
                match self.v_cast(from, *to, x, lanes) {
                    Some(v) => Ok(v),
                    None => self.lanewise(i, e, env, ctx),
                }
            }
            Expr::Const(_) | Expr::Index { .. } => self.lanewise(i, e, env, ctx),
            Expr::Reduce { .. } => Err(format!("internal: v{i} reduction evaluated as a node")),
            Expr::Acc => Err("`acc` outside a contraction epilogue".into()),
        }
    }

    /// A load in a vector point: one vector load when the index is contiguous in the
    /// vectorised variable (for masked loads: when the guards hold at the first and the last
    /// lane), lane by lane otherwise.
    fn vector_load(&mut self, i: usize, l: &Load, e: &Expr, env: &Env, ctx: VecCtx) -> R<Value> {
        let vary = varying(&self.job.kernel.body, &self.phases.deps, ctx.var);
        let contiguous = coefficient(&l.index, ctx.var, &vary) == Some(1);
        let buf = l.buffer.index();
        let dt = self.buffer_dtype(buf)?;
        if !contiguous || dt == DType::Bool {
            return self.lanewise(i, e, env, ctx);
        }
        let ty = vty(dt, ctx.lanes);
        let scalar_env = Env {
            vec: None,
            ..env.clone()
        };
        match &l.mode {
            LoadMode::Plain => {
                let idx = self.index(&l.index, &scalar_env)?;
                let addr = self.address(buf, idx)?;
                Ok(self
                    .b
                    .ins()
                    .load(ty, MemFlagsData::new().with_notrap(), addr, 0))
            }
            LoadMode::Masked { guards, .. } => {
                let monotone = guards.iter().all(|g| {
                    coefficient(&g.lo, ctx.var, &vary) == Some(0)
                        && coefficient(&g.hi, ctx.var, &vary) == Some(0)
                        && coefficient(&g.expr, ctx.var, &vary).is_some()
                });
                if !monotone {
                    return self.lanewise(i, e, env, ctx);
                }
                let first = self.guards_hold(guards, &scalar_env)?;
                let last_env = self.lane_env(env, ctx, ctx.lanes - 1, &[])?;
                let last = self.guards_hold(guards, &last_env)?;
                let all = self.b.ins().band(first, last);
                let yes = self.b.create_block();
                let no = self.b.create_block();
                let merge = self.b.create_block();
                let out = self.b.append_block_param(merge, ty);
                self.b.ins().brif(all, yes, &[], no, &[]);
                self.b.switch_to_block(yes);
                let idx = self.index(&l.index, &scalar_env)?;
                let addr = self.address(buf, idx)?;
                let v = self
                    .b
                    .ins()
                    .load(ty, MemFlagsData::new().with_notrap(), addr, 0);
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(no);
                let v = self.lanewise(i, e, env, ctx)?;
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(merge);
                Ok(out)
            }
            LoadMode::Checked => {
                // One vector load when the first and the last lane are inside the buffer
                // (unsigned compares also reject negative and wrapped indices).
                let idx = self.index(&l.index, &scalar_env)?;
                let size = self.job.buffers[buf].size.clone();
                let size = self.dim(&size)?;
                let last = self.b.ins().iadd_imm_s(idx, i64::from(ctx.lanes) - 1);
                let a = self.b.ins().icmp(IntCC::UnsignedLessThan, idx, size);
                let z = self.b.ins().icmp(IntCC::UnsignedLessThan, last, size);
                let all = self.b.ins().band(a, z);
                let yes = self.b.create_block();
                let no = self.b.create_block();
                let merge = self.b.create_block();
                let out = self.b.append_block_param(merge, ty);
                self.b.ins().brif(all, yes, &[], no, &[]);
                self.b.switch_to_block(yes);
                let addr = self.address(buf, idx)?;
                let v = self
                    .b
                    .ins()
                    .load(ty, MemFlagsData::new().with_notrap(), addr, 0);
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(no);
                self.b.set_cold_block(no);
                let v = self.lanewise(i, e, env, ctx)?;
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                self.b.switch_to_block(merge);
                Ok(out)
            }
        }
    }

    /// Emits a store of `v` (scalar or vector) at `index`.
    fn store(&mut self, buf: usize, index: &IndexExpr, v: V, env: &Env) -> R<()> {
        let dt = self.buffer_dtype(buf)?;
        match (v, env.vec) {
            (V::S(x), None) => {
                let idx = self.index(index, env)?;
                let addr = self.address(buf, idx)?;
                self.b.ins().store(MemFlagsData::trusted(), x, addr, 0);
                Ok(())
            }
            (_, Some(ctx)) => {
                let contiguous = coefficient(index, ctx.var, &[]) == Some(1);
                if contiguous && dt != DType::Bool {
                    let x = self.broadcast(v, dt, ctx.lanes);
                    let senv = Env {
                        vec: None,
                        ..env.clone()
                    };
                    let idx = self.index(index, &senv)?;
                    let addr = self.address(buf, idx)?;
                    self.b
                        .ins()
                        .store(MemFlagsData::new().with_notrap(), x, addr, 0);
                    return Ok(());
                }
                for l in 0..ctx.lanes {
                    let le = self.lane_env(env, ctx, l, &[])?;
                    let x = match v {
                        V::S(x) => x,
                        V::V(x) => {
                            let s = self.b.ins().extractlane(x, l);
                            if dt == DType::Bool {
                                self.b.ins().icmp_imm_s(IntCC::NotEqual, s, 0)
                            } else {
                                s
                            }
                        }
                    };
                    let idx = self.index(index, &le)?;
                    let addr = self.address(buf, idx)?;
                    self.b.ins().store(MemFlagsData::trusted(), x, addr, 0);
                }
                Ok(())
            }
            (V::V(_), None) => Err("internal: vector store outside a vector point".into()),
        }
    }
}
