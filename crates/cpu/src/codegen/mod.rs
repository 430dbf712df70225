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
//! values depending on reduced results and the stores. Staged reductions
//! ([`kiln_kernel::Body::stages`]) run their loops one stage after another, each loop
//! evaluating only its stage's operands ([`analysis::Stage`]), with the values a later
//! stage reads from earlier ones (a softmax row's max) computed between them; each stage
//! uses the kernel's vector plan. A [`analysis::VecPlan`] vectorises
//! either the innermost domain axis (each lane one point, scalar tail) or the innermost
//! reduction axis: lane-wise partial accumulators, two or four vectors of them (each
//! iteration evaluates that many vector points, so the combining chains run in parallel),
//! added pairwise after the loop, then lane by lane into the scalar tail's accumulator.
//! Along the domain axis, a plain 32-bit load with stride two (a 2x2 pooling window's) is
//! two vector loads and a shuffle; other strided or gathered loads rule the plan out.
//!
//! When no reduction depends on a suffix of the domain axes (a softmax or layer norm row:
//! `reduce_sum(exp(x[i0, r0] - m[i0]))` at every point `[i0, i1]`), the reductions are
//! hoisted ([`analysis::Hoist`]): for each point of the outer axes, the reduction loops run
//! once, together with every other value that does not vary along the hoisted axes, and
//! only then come the loops over the hoisted axes with the rest of the body and the stores.
//! Such a kernel can have two vector plans: the reduction loop vectorised along the
//! innermost reduction axis and the hoisted loop along the innermost domain axis. Values of
//! the hoisted loop that the reduction loop already computed (the `exp(x - max)` of a
//! softmax row) are kept in a stack buffer per row and loaded back ([`analysis::Reuse`]). A
//! kept `f32` transcendental with a wide kernel ([`crate::vecmath`]) is computed before the
//! reduction loop instead: its operand is stored to the kept buffer for the whole row, the
//! wide kernel runs in place over it, and the reduction loop loads it (`kept::RowWide`).
//! The hoisted section's results that depend on the reductions go through stack slots, so
//! they are computed once per row, not at every point of the hoisted loop (`Cg::pin`).
//!
//! A vectorised innermost domain loop whose body has `f32` transcendentals with a
//! wide kernel ([`crate::vecmath`]) runs whole tiles of points in passes around calls of
//! those kernels ([`tile`]), then the remaining points as above.
//!
//! Float sums and products are reassociated by the partial accumulators (the results may
//! differ from a sequential sum in the last bits, see docs/numerics.md); integer reductions
//! and float max/min give the same values in any order. Float max/min partials step with a
//! compare and a blend (a NaN never enters them) while a lane mask records NaN terms; the
//! result is NaN when the mask is set. The order depends only on the
//! reduction extent, never on the thread count.

pub(crate) mod analysis;
pub(crate) mod error;
mod frame;
mod index;
mod kept;
mod math;
mod memory;
mod nest;
mod nodes;
mod ops;
mod reduce;
mod tile;
mod types;

pub(crate) use error::CodegenError;
pub(crate) use types::node_dtypes;

use crate::jit::{Helper, Jit};
use crate::job::LoopJob;
use analysis::{Hoist, Phases, Reuse, VarRef, VecMode, VecPlan, cost_of, known_i64};
use cranelift_codegen::ir::{FuncRef, StackSlot, UserFuncName, Value};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_module::{FuncId, Module};
use kiln_ir::{DType, Dim};
use kiln_kernel::LoopKernel;
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

/// Compiles a loop job into `jit`; returns the function id and its run-time info.
pub(crate) fn define_loop(
    jit: &mut Jit,
    job: &LoopJob,
) -> Result<(FuncId, LoopInfo), CodegenError> {
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
            pinned: Vec::new(),
            stage_pins: Vec::new(),
            row_wide: Vec::new(),
            row_wide_skip: Vec::new(),
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
            .map_err(|e| CodegenError::Cranelift(format!("{e:?}")))
    }));
    match defined {
        Ok(r) => r?,
        Err(_) => return Err(CodegenError::Panicked),
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
pub(crate) enum PointValue {
    /// One scalar.
    Scalar(Value),
    /// One vector, a lane per point.
    Vector(Value),
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
    pub vals: Vec<Option<PointValue>>,
    pub vec: Option<VecCtx>,
}

/// The state of lowering one loop job: the function builder, the job and what the
/// function has set up at entry (buffer pointers, dims, kept-value stack buffers, the
/// error word). Its methods are split by concern: [`frame`] (entry and exit, constants,
/// helpers), [`nest`] (domain loops and points), [`reduce`] (reduction loops),
/// [`kept`] (values kept for the hoisted loop), [`index`] (index arithmetic),
/// [`memory`] (loads and stores), [`nodes`] (body nodes, scalar and vector), [`ops`] and
/// [`math`] (the operations).
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
    /// Stack slots of the hoisted section's values that depend on reductions (node, slot).
    pinned: Vec<(usize, StackSlot)>,
    /// While a later reduction stage's loops are emitted: the earlier stages' results they
    /// read, through stack slots (node, slot), for the same reason as `pinned`.
    stage_pins: Vec<(usize, StackSlot)>,
    /// While the reduction loop of a row is emitted: its nodes computed by wide kernels
    /// before it, and the nodes only those needed (not evaluated in the loop).
    row_wide: Vec<kept::RowWide>,
    row_wide_skip: Vec<bool>,
    bufs: Vec<Value>,
    dims: HashMap<Dim, Value>,
    err: Option<Variable>,
    imported: HashMap<Helper, FuncRef>,
}
