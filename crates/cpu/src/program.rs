//! The compiled program and its runs: [`compile`] turns every kernel of a verified plan
//! into steps (generated loops, GEMM calls); [`CpuProgram::run`] validates bindings and
//! buffers ([`kiln_kernel::Program::bind`]), then runs the steps in order, splitting large
//! loops over the thread pool.

use crate::arena::{ARENA_ALIGNMENT, Arena};
use crate::cache;
use crate::contract::{self, ContractPlan};
use crate::error::CpuError;
use crate::job::LoopJob;
use crate::loops::{LoopRun, LoopStep, PendingLoop, SyncPtr, pending_loop, run_loop};
use crate::pool;
use crate::preflight::eval_dim;
use kiln_ir::Dim;
use kiln_ir::{DType, Data};
use kiln_kernel::memplan::{self, MemoryPlan, PlanOptions, Workspace};
use kiln_kernel::{
    BindError, BufferId, BufferKind, Expr, IndexExpr, Kernel, KernelId, LoadMode, LoopKernel,
    Program, Step as Sched, VerifiedProgram,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
enum Step {
    Loop(LoopStep),
    Contract(Box<ContractPlan>),
}

/// The stamp of a program's constants (their contents never change); never a valid stamp
/// for [`Runner::read_stamped`].
pub const CONSTANT_STAMP: u64 = 0;

/// Source of [`CpuProgram`] ids.
static NEXT_PROGRAM: AtomicU64 = AtomicU64::new(1);

/// A kernel program compiled for this CPU.
#[derive(Debug)]
pub struct CpuProgram {
    program: VerifiedProgram,
    steps: Vec<Step>,
    /// A process-unique id tying [`RunPlan`]s to the program they were made for.
    id: u64,
    /// `written[k]`: some kernel stores to `b<k>`.
    written: Vec<bool>,
    /// Per step: `(source, destination)` when the step is a loop that only copies a buffer
    /// no kernel writes into a scratch buffer nothing else writes (a hoisted transpose of
    /// a weight); after it runs, the destination takes the source's stamp.
    stamp_copies: Vec<Option<(usize, usize)>>,
}

/// Compiles a kernel program for the host CPU.
///
/// The program is verified (every plain and masked access proven in bounds for every
/// allowed binding, see [`kiln_kernel::verify()`]); each loop kernel becomes one Cranelift
/// function, each contraction a GEMM call with generated prologue/epilogue loops. Compiled
/// loops are cached per process by structure.
pub fn compile(program: &VerifiedProgram) -> Result<CpuProgram, CpuError> {
    if std::env::var_os("KILN_CPU_DUMP").is_some() {
        eprintln!("{program}");
    }
    enum Pending {
        Loop(PendingLoop),
        Contract(Box<contract::PendingContract>),
    }
    let mut pending = Vec::new();
    for (i, k) in program.kernels.iter().enumerate() {
        let id = KernelId(u32::try_from(i).unwrap_or(u32::MAX));
        pending.push(match k {
            Kernel::Loop(lk) => Pending::Loop(pending_loop(program, id, lk, &[])?),
            Kernel::Matmul(mk) => {
                Pending::Contract(Box::new(contract::plan_matmul(program, id, mk)?))
            }
            Kernel::Conv2d(ck) => {
                Pending::Contract(Box::new(contract::plan_conv(program, id, ck)?))
            }
        });
    }
    let mut jobs: Vec<(KernelId, LoopJob)> = Vec::new();
    for p in &pending {
        match p {
            Pending::Loop(l) => jobs.push((l.kernel, l.job.clone())),
            Pending::Contract(c) => {
                jobs.extend(c.loops().map(|l| (l.kernel, l.job.clone())));
            }
        }
    }
    let compiled = cache::get_or_compile(&jobs)?;
    let mut it = compiled.into_iter();
    let mut steps = Vec::new();
    let mut take = |l: PendingLoop| -> Result<LoopStep, CpuError> {
        let code = it.next().ok_or_else(|| CpuError::Codegen {
            kernel: l.kernel,
            message: "internal: compiled loop missing".into(),
        })?;
        Ok(LoopStep {
            kernel: l.kernel,
            code,
            slots: l.slots,
        })
    };
    for p in pending {
        steps.push(match p {
            Pending::Loop(l) => Step::Loop(take(l)?),
            Pending::Contract(c) => Step::Contract(Box::new(c.finish(&mut take)?)),
        });
    }
    let mut writers = vec![0usize; program.buffers.len()];
    for k in &program.kernels {
        for bd in k.bodies(&program.symbols) {
            for st in &bd.body.stores {
                if let Some(w) = writers.get_mut(st.buffer.index()) {
                    *w += 1;
                }
            }
        }
    }
    if let Some(steps) = &program.schedule {
        kiln_kernel::schedule::walk(steps, &mut |st, _, _| {
            if let Sched::Copy { dst, .. } = st
                && let Some(w) = writers.get_mut(dst.index())
            {
                *w += 1;
            }
        });
    }
    let written: Vec<bool> = writers.iter().map(|&w| w > 0).collect();
    let induction = program.induction_symbols();
    let stamp_copies = program
        .kernels
        .iter()
        .map(|k| match k {
            Kernel::Loop(lk) => stamp_copy(program, lk, &writers, &induction),
            Kernel::Matmul(_) | Kernel::Conv2d(_) => None,
        })
        .collect();
    // Inputs and constants are supplied read-only and read in place; the verifier rejects
    // stores to them, and this keeps that guarantee local to the run path.
    for (i, b) in program.buffers.iter().enumerate() {
        if written[i] && !b.kind.is_writable() {
            return Err(CpuError::Unsupported {
                kernel: KernelId(0),
                message: format!(
                    "b{i} is a {} buffer but a kernel stores to it",
                    b.kind.keyword()
                ),
            });
        }
    }
    Ok(CpuProgram {
        program: program.clone(),
        steps,
        id: NEXT_PROGRAM.fetch_add(1, Ordering::Relaxed),
        written,
        stamp_copies,
    })
}

/// `(source, destination)` if `lk` only copies buffer `source` (which no kernel writes)
/// into the scratch buffer `destination` (which nothing else writes) at indices that do
/// not depend on a schedule loop's induction symbol: the destination's contents are then a
/// function of the source's alone.
fn stamp_copy(
    program: &Program,
    lk: &LoopKernel,
    writers: &[usize],
    induction: &[&str],
) -> Option<(usize, usize)> {
    let body = &lk.body;
    if !lk.reduce.is_empty()
        || body.values.len() != 1
        || body.stores.len() != 1
        || body.result.is_some()
    {
        return None;
    }
    let Expr::Load(load) = &body.values[0] else {
        return None;
    };
    let store = &body.stores[0];
    let fixed = |d: &Dim| d.symbols().iter().all(|s| !induction.contains(&&**s));
    let fixed_index = |ix: &IndexExpr| {
        ix.affine().is_some_and(|a| {
            std::iter::once(&a.offset)
                .chain(&a.strides)
                .chain(&a.red_strides)
                .all(fixed)
        })
    };
    let (src, dst) = (load.buffer.index(), store.buffer.index());
    let ok = load.mode == LoadMode::Plain
        && store.value.index() == 0
        && writers.get(src) == Some(&0)
        && writers.get(dst) == Some(&1)
        && matches!(
            program.buffers.get(dst).map(|b| &b.kind),
            Some(BufferKind::Scratch)
        )
        && lk.domain.iter().all(fixed)
        && fixed_index(&load.index)
        && fixed_index(&store.index);
    ok.then_some((src, dst))
}

/// The options the CPU engine plans its arena with: [`ARENA_ALIGNMENT`], in-place reuse on
/// (the generated code reads a point's element of `x` before writing the same bytes of `y`
/// within one iteration, and threads split disjoint ranges of points).
const CPU_PLAN: PlanOptions = PlanOptions {
    alignment: ARENA_ALIGNMENT,
    in_place: true,
    element_bytes: None,
};

/// The scratch arena of a program under one binding: the memory plan and the element count
/// of every contraction scratch buffer (in table order, after the program's buffers).
struct ArenaPlan {
    plan: MemoryPlan,
    workspace_lens: Vec<usize>,
}

/// Plans the arena of `program` under `bindings`, given each contraction kernel's scratch
/// buffers (in kernel order).
fn plan_arena<'a>(
    program: &Program,
    contractions: impl Iterator<Item = (KernelId, &'a [(DType, Dim)])>,
    bindings: &HashMap<String, u64>,
) -> Result<ArenaPlan, CpuError> {
    let mut workspace = Vec::new();
    let mut workspace_lens = Vec::new();
    for (kernel, scratch) in contractions {
        for (dt, size) in scratch {
            let n = eval_dim(size, bindings)?.max(0);
            let too_large = || CpuError::Overflow(format!("{kernel}: scratch is too large"));
            let len = usize::try_from(n).map_err(|_| too_large())?;
            let bytes = u64::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(dt.size_bytes() as u64))
                .ok_or_else(too_large)?;
            workspace.push(Workspace { kernel, bytes });
            workspace_lens.push(len);
        }
    }
    let plan = memplan::plan_with(program, bindings, &CPU_PLAN, &workspace)?;
    Ok(ArenaPlan {
        plan,
        workspace_lens,
    })
}

/// The memory plan the CPU engine runs `program` with under `bindings`, without compiling
/// it: the program's scratch buffers and every contraction's workspace (materialised
/// operands, accumulators) placed in one arena, 64-byte aligned, in-place pairs sharing
/// bytes. Its `peak_scratch_bytes` is the size of the arena a [`RunPlan`] allocates, the
/// same as [`CpuProgram::memory_plan`] of the compiled program.
pub fn memory_plan(
    program: &VerifiedProgram,
    bindings: &HashMap<String, u64>,
) -> Result<MemoryPlan, CpuError> {
    let mut contractions = Vec::new();
    for (i, k) in program.kernels.iter().enumerate() {
        let id = KernelId(u32::try_from(i).unwrap_or(u32::MAX));
        match k {
            Kernel::Loop(_) => {}
            Kernel::Matmul(mk) => contractions.push(contract::plan_matmul(program, id, mk)?),
            Kernel::Conv2d(ck) => contractions.push(contract::plan_conv(program, id, ck)?),
        }
    }
    let scratch = contractions.iter().map(|c| (c.kernel(), c.scratch()));
    Ok(plan_arena(program, scratch, bindings)?.plan)
}

pub(crate) fn data_ptr(d: &mut Data) -> *mut u8 {
    match d {
        Data::F32(v) => v.as_mut_ptr().cast(),
        Data::F64(v) => v.as_mut_ptr().cast(),
        Data::I32(v) => v.as_mut_ptr().cast(),
        Data::I64(v) => v.as_mut_ptr().cast(),
        Data::U32(v) => v.as_mut_ptr().cast(),
        Data::Bool(v) => v.as_mut_ptr().cast(),
    }
}

/// The address of read-only data. Generated code and contractions never write through it:
/// it is only handed out for buffers no kernel stores to (checked in [`compile`]).
fn const_ptr(d: &Data) -> *mut u8 {
    let p: *const u8 = match d {
        Data::F32(v) => v.as_ptr().cast(),
        Data::F64(v) => v.as_ptr().cast(),
        Data::I32(v) => v.as_ptr().cast(),
        Data::I64(v) => v.as_ptr().cast(),
        Data::U32(v) => v.as_ptr().cast(),
        Data::Bool(v) => v.as_ptr().cast(),
    };
    p.cast_mut()
}

/// Which axis of a compiled loop runs as vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorAxis {
    /// The innermost domain axis: each lane is one point.
    Domain,
    /// The innermost reduction axis: lanes hold partial accumulators.
    Reduce,
}

/// How one generated loop of a compiled program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopSummary {
    /// The program kernel it belongs to.
    pub kernel: KernelId,
    /// The vectorised axis and the lane count, if the loop is vectorised.
    pub vector: Option<(VectorAxis, u8)>,
    /// The axis whose range is split among threads (`None`: a single point).
    pub split_axis: Option<usize>,
    /// `Some(k)` when the loop's reductions do not depend on the domain axes `k..` and are
    /// hoisted out of them: they run once per point of the axes `..k`, before the loops
    /// over `k..` that compute the rest of the body (`vector` then describes those loops).
    /// `None` when reductions (if any) run at every point of the domain.
    pub hoisted: Option<usize>,
    /// The lanes of the hoisted reduction loop, when it runs as vectors along the innermost
    /// reduction axis.
    pub hoisted_vector: Option<u8>,
}

impl LoopStep {
    fn summary(&self) -> LoopSummary {
        LoopSummary {
            kernel: self.kernel,
            vector: self.code.info.vector.map(|(m, l)| {
                (
                    match m {
                        crate::codegen::analysis::VecMode::Domain => VectorAxis::Domain,
                        crate::codegen::analysis::VecMode::Reduce => VectorAxis::Reduce,
                    },
                    l,
                )
            }),
            split_axis: self.code.info.split,
            hoisted: self.code.info.hoisted,
            hoisted_vector: self.code.info.hoisted_lanes,
        }
    }
}

/// Options of [`CpuProgram::run_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Most threads to use (`None`: the whole pool, see [`crate::pool::global`]).
    pub threads: Option<usize>,
}

impl RunOptions {
    /// The thread count these options allow.
    pub(crate) fn threads(&self) -> usize {
        let pool = pool::global().size();
        self.threads.map_or(pool, |t| t.clamp(1, pool))
    }
}

impl CpuProgram {
    /// The program this was compiled from.
    pub fn program(&self) -> &VerifiedProgram {
        &self.program
    }

    /// True if some kernel stores to buffer `b` (outputs, scratch, written state). Every
    /// other buffer (inputs, constants, state that is only read) may be supplied read-only
    /// with [`Runner::read`].
    pub fn writes(&self, b: BufferId) -> bool {
        self.written.get(b.index()).copied().unwrap_or(false)
    }

    /// Every generated loop in execution order (contraction prologues and epilogues
    /// included).
    pub fn loops(&self) -> Vec<LoopSummary> {
        let mut out = Vec::new();
        for s in &self.steps {
            match s {
                Step::Loop(l) => out.push(l.summary()),
                Step::Contract(c) => out.extend(c.loop_steps().map(LoopStep::summary)),
            }
        }
        out
    }

    /// The memory plan of runs under `bindings`: the program's scratch buffers and every
    /// contraction's workspace in one arena (see [`memory_plan`]). Its `peak_scratch_bytes`
    /// is the size of the one scratch allocation a [`RunPlan`] for these bindings makes.
    pub fn memory_plan(&self, bindings: &HashMap<String, u64>) -> Result<MemoryPlan, CpuError> {
        Ok(self.plan_arena(bindings)?.plan)
    }

    fn plan_arena(&self, bindings: &HashMap<String, u64>) -> Result<ArenaPlan, CpuError> {
        let contractions = self.steps.iter().filter_map(|s| match s {
            Step::Loop(_) => None,
            Step::Contract(c) => Some((c.kernel(), c.scratch())),
        });
        plan_arena(&self.program, contractions, bindings)
    }

    /// Prepares runs under one binding of the symbols: checks the bindings against the
    /// symbols' preconditions, evaluates every buffer length and every dim the generated
    /// code takes, makes the pre-run checks (divisors, 64-bit index arithmetic, contraction
    /// views in bounds), plans the scratch arena ([`CpuProgram::memory_plan`]) and lays out
    /// the pointer table. The arena (one allocation of the plan's `peak_scratch_bytes`) is
    /// allocated on the first run. A plan is reused by every later run with the same binding
    /// ([`RunPlan::is_for`]), which then makes no allocation and repeats no check.
    pub fn bind(&self, bindings: &HashMap<String, u64>) -> Result<RunPlan, CpuError> {
        let binding = self.program.bind(bindings)?;
        let induction = self.program.induction_symbols();
        let mut symbols: HashMap<String, u64> = binding.map().clone();
        let at_last = self.induction_ends(&symbols)?;
        let bindings = &symbols.clone();
        let nb = self.program.buffers.len();
        let mut lens = binding.buffer_lens();
        let arena = self.plan_arena(bindings)?;
        let too_large = || CpuError::Overflow("the scratch arena is too large".into());
        let mut offsets: Vec<Option<usize>> = Vec::with_capacity(nb);
        for (i, b) in self.program.buffers.iter().enumerate() {
            offsets.push(match b.kind {
                BufferKind::Scratch => Some(
                    usize::try_from(arena.plan.offsets[i].unwrap_or(0)).map_err(|_| too_large())?,
                ),
                _ => None,
            });
        }
        let mut bases = Vec::with_capacity(self.steps.len());
        let mut workspace = arena
            .workspace_lens
            .iter()
            .zip(&arena.plan.workspace_offsets);
        for s in &self.steps {
            bases.push(lens.len());
            if let Step::Contract(c) = s {
                for _ in c.scratch() {
                    let (&len, &offset) = workspace.next().ok_or_else(|| {
                        CpuError::Buffers("internal: workspace missing from the plan".into())
                    })?;
                    lens.push(len);
                    offsets.push(Some(usize::try_from(offset).map_err(|_| too_large())?));
                }
            }
        }
        let arena_bytes =
            usize::try_from(arena.plan.peak_scratch_bytes).map_err(|_| too_large())?;
        let table_len = lens.len();
        let mut steps = Vec::with_capacity(self.steps.len());
        let mut inductive = Vec::new();
        for (k, (s, &base)) in self.steps.iter().zip(&bases).enumerate() {
            if let Step::Loop(l) = s {
                let which = LoopRun::dims_with(l, &induction);
                if !which.is_empty() {
                    // The pre-run checks at the other end of every enclosing loop's range.
                    if let Some(last) = at_last.get(&k) {
                        LoopRun::new(l, nb, base, table_len, last)?;
                    }
                    inductive.push((k, which));
                }
            }
            steps.push(match s {
                Step::Loop(l) => StepRun::Loop(LoopRun::new(l, nb, base, table_len, bindings)?),
                Step::Contract(c) => {
                    StepRun::Contract(Box::new(c.bind(nb, base, &lens, bindings)?))
                }
            });
        }
        let mut table = vec![SyncPtr::null(); table_len];
        let mut stamps = vec![None; nb];
        for (i, b) in self.program.buffers.iter().enumerate() {
            if let BufferKind::Constant(a) = &b.kind {
                table[i] = SyncPtr(const_ptr(a.data()));
                stamps[i] = Some(CONSTANT_STAMP);
            }
        }
        Ok(RunPlan {
            stored_first: arena.plan.stored_first.clone(),
            program: self.id,
            values: binding.values().to_vec(),
            lens,
            offsets,
            arena_bytes,
            arena: Arena::default(),
            table,
            stamps,
            set: vec![false; nb],
            steps,
            symbols: std::mem::take(&mut symbols),
            inductive,
        })
    }

    /// For every kernel inside a counted loop: the bindings with each enclosing loop's
    /// induction symbol at its last value (`trip - 1`, or 0 for an empty loop), so the
    /// pre-run checks cover both ends of the range.
    fn induction_ends(
        &self,
        symbols: &HashMap<String, u64>,
    ) -> Result<HashMap<usize, HashMap<String, u64>>, CpuError> {
        let mut out = HashMap::new();
        let Some(steps) = &self.program.schedule else {
            return Ok(out);
        };
        let mut err = None;
        kiln_kernel::schedule::walk(steps, &mut |st, loops, _| {
            let Sched::Kernel(k) = st else { return };
            if loops.is_empty() {
                return;
            }
            let mut b = symbols.clone();
            for l in loops {
                match eval_dim(&l.trip, symbols) {
                    Ok(trip) => {
                        b.insert(l.var.clone(), u64::try_from(trip.max(1) - 1).unwrap_or(0));
                    }
                    Err(e) => err = Some(e),
                }
            }
            out.insert(k.index(), b);
        });
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Starts a run under `plan` (made by this program's [`CpuProgram::bind`]): supply every
    /// input, output and state buffer to the [`Runner`], then call [`Runner::run`].
    pub fn runner<'a>(&'a self, plan: &'a mut RunPlan) -> Result<Runner<'a>, CpuError> {
        if plan.program != self.id {
            return Err(CpuError::Buffers(
                "the run plan was made for another program".into(),
            ));
        }
        plan.set.iter_mut().for_each(|s| *s = false);
        Ok(Runner {
            program: self,
            plan,
            _data: std::marker::PhantomData,
        })
    }

    /// Runs the program on `buffers` (one per program buffer, `buffers[k]` is `b<k>`, each
    /// of the buffer's dtype and evaluated size), like [`kiln_kernel::execute`]: fill inputs
    /// and state first; outputs, scratch and state are written. Constant buffers are read
    /// from the compiled program; their slots are checked but not written.
    ///
    /// Every binding and every buffer length is validated before any generated code runs.
    /// On error the contents of written buffers are unspecified. This binds the program
    /// afresh at every call; to run repeatedly without allocating or re-checking, keep a
    /// [`RunPlan`] from [`CpuProgram::bind`] and run through [`CpuProgram::runner`].
    pub fn run(
        &self,
        bindings: &HashMap<String, u64>,
        buffers: &mut [Data],
    ) -> Result<(), CpuError> {
        self.run_with(bindings, buffers, &RunOptions::default())
    }

    /// [`CpuProgram::run`] with options (e.g. a thread limit).
    pub fn run_with(
        &self,
        bindings: &HashMap<String, u64>,
        buffers: &mut [Data],
        options: &RunOptions,
    ) -> Result<(), CpuError> {
        self.program.bind(bindings)?.check_buffers(buffers)?;
        let mut plan = self.bind(bindings)?;
        let mut run = self.runner(&mut plan)?;
        for (i, (b, data)) in self
            .program
            .buffers
            .iter()
            .zip(buffers.iter_mut())
            .enumerate()
        {
            let id = BufferId(u32::try_from(i).unwrap_or(u32::MAX));
            match &b.kind {
                BufferKind::Constant(_) => {}
                _ if self.writes(id) => run.write(id, data)?,
                _ => run.read(id, data)?,
            }
        }
        run.run(options)
    }
}

/// Everything the runs of a [`CpuProgram`] under one binding of its symbols need: the
/// binding, evaluated buffer lengths and dims, the results of the pre-run checks, the
/// pointer table handed to generated code, and the scratch arena. Made by
/// [`CpuProgram::bind`]; reused run after run, a plan makes a run allocation-free.
#[derive(Debug)]
pub struct RunPlan {
    program: u64,
    values: Vec<u64>,
    /// Element counts: program buffers, then every contraction's scratch buffers.
    lens: Vec<usize>,
    /// Arena offset of every table entry the plan provides (program scratch, contraction
    /// scratch), from the memory plan.
    offsets: Vec<Option<usize>>,
    /// The arena's size: the memory plan's `peak_scratch_bytes`.
    arena_bytes: usize,
    /// The arena (allocated on the first run).
    arena: Arena,
    /// The address of every buffer of the run.
    table: Vec<SyncPtr<u8>>,
    /// The stamp of every program buffer whose contents are stable while it stays the same
    /// (constants, and buffers supplied with [`Runner::read_stamped`]).
    stamps: Vec<Option<u64>>,
    /// Program buffers supplied by the caller in the current run.
    set: Vec<bool>,
    steps: Vec<StepRun>,
    /// Every symbol's value; a schedule's loops set their induction symbols here.
    symbols: HashMap<String, u64>,
    /// Loop kernels whose dims read an induction symbol: the kernel and those dims.
    inductive: Vec<(usize, Vec<(usize, Dim)>)>,
    /// Per program buffer: the memory plan's `stored_first`.
    stored_first: Vec<bool>,
}

#[derive(Debug)]
enum StepRun {
    Loop(LoopRun),
    Contract(Box<contract::ContractRun>),
}

impl RunPlan {
    /// True if the plan was made for these bindings (every symbol of the program has the
    /// same value; extra entries are ignored). `symbols` are the program's symbols.
    pub fn is_for(&self, program: &CpuProgram, bindings: &HashMap<String, u64>) -> bool {
        self.program == program.id
            && program
                .program
                .symbols
                .iter()
                .zip(&self.values)
                .all(|(s, v)| {
                    bindings.get(&s.name) == Some(v) || program.program.is_induction(&s.name)
                })
    }

    /// The symbol values the plan was made for, in the order of the program's symbols.
    pub fn values(&self) -> &[u64] {
        &self.values
    }

    /// The size in bytes of the scratch arena runs under this plan use (allocated once, on
    /// the first run): the memory plan's `peak_scratch_bytes`.
    pub fn scratch_bytes(&self) -> usize {
        self.arena_bytes
    }

    /// Whether every element of output buffer `b` is stored before anything reads it
    /// ([`kiln_kernel::memplan::stored_whole_first`]): the caller may supply uninitialised
    /// memory for it, and must clear that memory if the run fails.
    pub fn stored_first(&self, b: BufferId) -> bool {
        self.stored_first.get(b.index()).copied().unwrap_or(false)
    }

    /// The element count of program buffer `b` under the plan's binding.
    pub fn buffer_len(&self, b: BufferId) -> Option<usize> {
        if b.index() < self.set.len() {
            self.lens.get(b.index()).copied()
        } else {
            None
        }
    }
}

/// One run of a [`CpuProgram`] under a [`RunPlan`]: the caller supplies each input, state
/// and output buffer (checked against the plan's dtype and length), borrowed for the run,
/// then [`Runner::run`] runs every step. Buffers are used in place: inputs and read-only
/// state are read straight from the caller's memory, outputs are written straight into
/// the caller's memory. Scratch buffers the caller does not supply are the plan's own.
#[derive(Debug)]
pub struct Runner<'a> {
    program: &'a CpuProgram,
    plan: &'a mut RunPlan,
    _data: std::marker::PhantomData<&'a mut Data>,
}

impl<'a> Runner<'a> {
    fn check(&self, b: BufferId, data: &Data) -> Result<(), CpuError> {
        let i = b.index();
        let (Some(buf), Some(&len)) = (self.program.program.buffer(b), self.plan.lens.get(i))
        else {
            return Err(CpuError::Buffers(format!(
                "{b} is not a buffer of the program"
            )));
        };
        if matches!(buf.kind, BufferKind::Constant(_)) {
            return Err(CpuError::Buffers(format!(
                "{b} is a constant of the program; it is not supplied"
            )));
        }
        if data.dtype() != buf.dtype || data.len() != len {
            return Err(BindError::BufferShape {
                buffer: b,
                dtype: buf.dtype,
                len,
                got_dtype: data.dtype(),
                got_len: data.len(),
            }
            .into());
        }
        Ok(())
    }

    /// Supplies buffer `b` read-only (an input, or state no kernel writes).
    pub fn read(&mut self, b: BufferId, data: &'a Data) -> Result<(), CpuError> {
        self.supply_read(b, data, None)
    }

    /// Supplies buffer `b` read-only with a stamp naming its contents (state no kernel
    /// writes, with the store's version): a later run that supplies the same stamp promises
    /// the same contents at the same address, so forms derived from it (a matmul's packed
    /// weight) are kept, not derived again. A new value needs a new stamp; stamps must never
    /// be reused for other contents (nor be [`CONSTANT_STAMP`]).
    pub fn read_stamped(
        &mut self,
        b: BufferId,
        data: &'a Data,
        stamp: u64,
    ) -> Result<(), CpuError> {
        self.supply_read(b, data, Some(stamp))
    }

    fn supply_read(
        &mut self,
        b: BufferId,
        data: &'a Data,
        stamp: Option<u64>,
    ) -> Result<(), CpuError> {
        self.check(b, data)?;
        if self.program.writes(b) {
            return Err(CpuError::Buffers(format!(
                "{b} is written by the program; supply it with `write`"
            )));
        }
        self.plan.table[b.index()] = SyncPtr(const_ptr(data));
        self.plan.stamps[b.index()] = stamp;
        self.plan.set[b.index()] = true;
        Ok(())
    }

    /// Supplies buffer `b` writable (an output, state, or a scratch buffer to use instead
    /// of the plan's own).
    pub fn write(&mut self, b: BufferId, data: &'a mut Data) -> Result<(), CpuError> {
        self.check(b, data)?;
        self.plan.table[b.index()] = SyncPtr(data_ptr(data));
        self.plan.stamps[b.index()] = None;
        self.plan.set[b.index()] = true;
        Ok(())
    }

    /// Runs every step. Fails before any generated code runs if an input, output or state
    /// buffer was not supplied.
    pub fn run(self, options: &RunOptions) -> Result<(), CpuError> {
        let threads = options.threads();
        let plan = self.plan;
        let nb = plan.set.len();
        for (i, b) in self.program.program.buffers.iter().enumerate() {
            match &b.kind {
                BufferKind::Constant(_) => {}
                BufferKind::Scratch if !plan.set[i] => {}
                BufferKind::Input(_)
                | BufferKind::Output(_)
                | BufferKind::State(_)
                | BufferKind::Scratch => {
                    if !plan.set[i] {
                        return Err(CpuError::Buffers(format!("b{i} was not supplied")));
                    }
                }
            }
        }
        let base = plan.arena.base(plan.arena_bytes).ok_or_else(|| {
            CpuError::Overflow(format!("a scratch arena of {} bytes", plan.arena_bytes))
        })?;
        for (i, offset) in plan.offsets.iter().enumerate() {
            if i < nb && plan.set[i] {
                continue;
            }
            if let Some(offset) = *offset {
                // The memory plan places every used scratch buffer inside the arena; an
                // unused one (no kernel touches it) may get an address past its end, which
                // nothing dereferences.
                plan.table[i] = SyncPtr(base.wrapping_add(offset));
            }
        }
        match &self.program.program.schedule {
            None => {
                for k in 0..self.program.steps.len() {
                    run_kernel(self.program, plan, k, threads)?;
                }
                Ok(())
            }
            Some(steps) => run_schedule(self.program, steps, plan, threads),
        }
    }
}

/// Runs kernel `k` of `program` under `plan`.
fn run_kernel(
    program: &CpuProgram,
    plan: &mut RunPlan,
    k: usize,
    threads: usize,
) -> Result<(), CpuError> {
    match (program.steps.get(k), plan.steps.get_mut(k)) {
        (Some(Step::Loop(l)), Some(StepRun::Loop(lr))) => {
            run_loop(l, lr, &plan.table, threads)?;
            if let Some(&Some((src, dst))) = program.stamp_copies.get(k) {
                plan.stamps[dst] = plan.stamps[src];
            }
            Ok(())
        }
        (Some(Step::Contract(c)), Some(StepRun::Contract(cr))) => {
            c.run(cr, &plan.table, &plan.stamps, threads)
        }
        _ => Err(CpuError::Buffers(
            "internal: the run plan does not match the program".into(),
        )),
    }
}

/// The value of a one-element `bool` predicate buffer of the run.
fn predicate(plan: &RunPlan, b: BufferId) -> Result<bool, CpuError> {
    let p = plan
        .table
        .get(b.index())
        .filter(|_| plan.lens.get(b.index()) == Some(&1))
        .ok_or_else(|| CpuError::Buffers(format!("the predicate {b} is not one bool")))?;
    // SAFETY: the verifier proved `b` a `bool[1]` buffer; its table entry points at a live
    // buffer of the plan's length 1 (supplied and checked by `Runner`, or placed in the
    // arena, where copies and predicate reads count as uses), and bools are one byte
    // holding 0 or 1.
    Ok(unsafe { *p.get().cast_const() } != 0)
}

/// Runs a schedule: kernels, copies, counted loops (setting the induction symbol and
/// re-evaluating the dims that read it: no allocation, no re-binding), while loops and
/// ifs reading their predicate on the host.
fn run_schedule(
    program: &CpuProgram,
    steps: &[Sched],
    plan: &mut RunPlan,
    threads: usize,
) -> Result<(), CpuError> {
    for step in steps {
        match step {
            Sched::Kernel(k) => run_kernel(program, plan, k.index(), threads)?,
            Sched::Copy { src, dst } => {
                let (s, d) = (src.index(), dst.index());
                let bytes = program
                    .program
                    .buffer(*src)
                    .map(|b| b.dtype.size_bytes())
                    .zip(plan.lens.get(s))
                    .map(|(e, &n)| e.saturating_mul(n));
                let (Some(bytes), Some(ps), Some(pd)) =
                    (bytes, plan.table.get(s), plan.table.get(d))
                else {
                    return Err(CpuError::Buffers(format!("copy {src} -> {dst}")));
                };
                if plan.lens.get(d) != plan.lens.get(s) {
                    return Err(CpuError::Buffers(format!(
                        "copy {src} -> {dst}: lengths differ"
                    )));
                }
                if bytes > 0 {
                    // SAFETY: both entries point at live buffers of the plan's lengths (equal,
                    // checked above; same dtype, proven by the verifier), so `bytes` bytes
                    // are readable at `ps` and writable at `pd`; `copy` allows overlap.
                    unsafe { std::ptr::copy(ps.get().cast_const(), pd.get(), bytes) };
                }
            }
            Sched::Loop(l) => {
                let trip = eval_dim(&l.trip, &plan.symbols)?.max(0);
                for it in 0..trip {
                    let t = if l.reverse { trip - 1 - it } else { it };
                    if let Some(v) = plan.symbols.get_mut(&l.var) {
                        *v = t as u64;
                    }
                    let RunPlan {
                        steps: runs,
                        symbols,
                        inductive,
                        ..
                    } = &mut *plan;
                    for (k, which) in inductive.iter() {
                        if let Some(StepRun::Loop(lr)) = runs.get_mut(*k) {
                            lr.set_dims(which, symbols)?;
                        }
                    }
                    run_schedule(program, &l.body, plan, threads)?;
                }
            }
            Sched::While(w) => loop {
                run_schedule(program, &w.cond, plan, threads)?;
                if !predicate(plan, w.pred)? {
                    break;
                }
                run_schedule(program, &w.body, plan, threads)?;
            },
            Sched::If(i) => {
                let branch = if predicate(plan, i.pred)? {
                    &i.then
                } else {
                    &i.other
                };
                run_schedule(program, branch, plan, threads)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp_program() -> CpuProgram {
        let p = kiln_kernel::parse(
            "symbol N >= 1
             b0 = input \"x\" f32[N]
             b1 = output \"y\" f32[N]
             k0 = loop [N] {
               v0 = load b0[i0]
               v1 = exp(v0)
               store b1[i0] = v1
             }",
        )
        .unwrap();
        compile(&kiln_kernel::verify(p).unwrap()).unwrap()
    }

    #[test]
    fn a_plan_runs_in_place_and_rejects_misuse() {
        let (prog, other) = (exp_program(), exp_program());
        let bindings = HashMap::from([("N".to_string(), 2u64)]);
        let mut plan = prog.bind(&bindings).unwrap();
        assert!(plan.is_for(&prog, &bindings));
        assert!(!plan.is_for(&other, &bindings));
        assert!(!plan.is_for(&prog, &HashMap::from([("N".to_string(), 3u64)])));
        assert_eq!(plan.buffer_len(BufferId(1)), Some(2));
        let x = Data::F32(vec![0.0, 1.0]);
        for _ in 0..2 {
            let mut y = Data::F32(vec![7.0; 2]);
            let mut run = prog.runner(&mut plan).unwrap();
            run.read(BufferId(0), &x).unwrap();
            run.write(BufferId(1), &mut y).unwrap();
            run.run(&RunOptions::default()).unwrap();
            let Data::F32(y) = y else { unreachable!() };
            assert_eq!(y[0], 1.0);
            assert!((y[1] - std::f32::consts::E).abs() < 1e-6);
        }
        assert!(matches!(other.runner(&mut plan), Err(CpuError::Buffers(_))));
        let (y_ro, mut y) = (Data::F32(vec![0.0; 2]), Data::F32(vec![0.0; 2]));
        let mut run = prog.runner(&mut plan).unwrap();
        assert_eq!(
            run.read(BufferId(1), &y_ro),
            Err(CpuError::Buffers(
                "b1 is written by the program; supply it with `write`".into()
            ))
        );
        run.write(BufferId(1), &mut y).unwrap();
        assert_eq!(
            run.run(&RunOptions::default()),
            Err(CpuError::Buffers("b0 was not supplied".into()))
        );
        let short = Data::F32(vec![0.0]);
        let mut run = prog.runner(&mut plan).unwrap();
        assert_eq!(
            run.read(BufferId(0), &short),
            Err(CpuError::Bind(BindError::BufferShape {
                buffer: BufferId(0),
                dtype: DType::F32,
                len: 2,
                got_dtype: DType::F32,
                got_len: 1,
            }))
        );
    }
}
