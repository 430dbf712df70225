//! The compiled program and its runs: [`compile`] verifies a kernel plan and turns every
//! kernel into steps (generated loops, GEMM calls); [`CpuProgram::run`] validates bindings
//! and buffers, then runs the steps in order, splitting large loops over the thread pool.

use crate::cache::{self, CompiledLoop};
use crate::codegen::{FLAG_DIV_ZERO, FLAG_OOB, analysis::known_i64};
use crate::contract::{self, ContractPlan};
use crate::error::CpuError;
use crate::job::{self, LocalBuffer, LoopJob};
use crate::pool;
use crate::preflight::{self, eval_dim};
use kiln_ir::{DType, Data, Dim};
use kiln_kernel::{BufferId, BufferKind, Kernel, KernelId, LoopKernel, Program};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// One generated loop of a compiled program, bound to its buffers.
#[derive(Debug, Clone)]
pub(crate) struct LoopStep {
    /// The program kernel it belongs to (for errors).
    pub kernel: KernelId,
    /// The compiled code.
    pub code: Arc<CompiledLoop>,
    /// `slots[k]`: the id of local buffer `k` (ids past the program's buffers are the
    /// owning step's scratch buffers, in order).
    pub slots: Vec<BufferId>,
}

#[derive(Debug)]
enum Step {
    Loop(LoopStep),
    Contract(Box<ContractPlan>),
}

/// A kernel program compiled for this CPU.
#[derive(Debug)]
pub struct CpuProgram {
    program: Program,
    steps: Vec<Step>,
}

/// A loop kernel to compile, before the cache has been consulted.
pub(crate) struct PendingLoop {
    pub kernel: KernelId,
    pub job: LoopJob,
    pub slots: Vec<BufferId>,
}

/// Localises a loop kernel against the program's buffers plus `scratch` (ids past the
/// program's buffers).
pub(crate) fn pending_loop(
    program: &Program,
    kernel: KernelId,
    lk: &LoopKernel,
    scratch: &[(DType, Dim)],
) -> Result<PendingLoop, CpuError> {
    let nb = program.buffers.len();
    let describe = |id: BufferId| -> Option<LocalBuffer> {
        match program.buffer(id) {
            Some(b) => Some(LocalBuffer {
                dtype: b.dtype,
                size: b.size.clone(),
            }),
            None => scratch
                .get(id.index().checked_sub(nb)?)
                .map(|(d, s)| LocalBuffer {
                    dtype: *d,
                    size: s.clone(),
                }),
        }
    };
    let l = job::localize(lk, &describe).ok_or_else(|| CpuError::Unsupported {
        kernel,
        message: "a load or store names an unknown buffer".into(),
    })?;
    Ok(PendingLoop {
        kernel,
        job: l.job,
        slots: l.slots,
    })
}

/// Compiles a kernel program for the host CPU.
///
/// The program is verified first (every plain and masked access proven in bounds for every
/// allowed binding); each loop kernel becomes one Cranelift function, each contraction a
/// GEMM call with generated prologue/epilogue loops. Compiled loops are cached per process
/// by structure.
pub fn compile(program: &Program) -> Result<CpuProgram, CpuError> {
    kiln_kernel::verify(program).map_err(CpuError::Verify)?;
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
    Ok(CpuProgram {
        program: program.clone(),
        steps,
    })
}

/// A raw pointer that may cross threads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SyncPtr<T>(pub *mut T);
// SAFETY: `SyncPtr` only carries addresses between the threads of one run; what is done
// through them is argued at each use (disjoint or read-only access).
unsafe impl<T> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The address (a method, so closures capture the whole wrapper).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

fn data_ptr(d: &mut Data) -> *mut u8 {
    match d {
        Data::F32(v) => v.as_mut_ptr().cast(),
        Data::F64(v) => v.as_mut_ptr().cast(),
        Data::I32(v) => v.as_mut_ptr().cast(),
        Data::I64(v) => v.as_mut_ptr().cast(),
        Data::U32(v) => v.as_mut_ptr().cast(),
        Data::Bool(v) => v.as_mut_ptr().cast(),
    }
}

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

/// Work (in simple operations, see `LoopInfo::point_cost`) below which a loop runs on the
/// calling thread. A copy (two operations a point) splits from 2^19 points up, where a
/// second thread starts to pay for its wake-up on a 2-core machine; compute-heavy bodies
/// split much earlier.
const PARALLEL_WORK: u64 = 1 << 20;
/// Work a parallel chunk should have at least.
const CHUNK_WORK: u64 = 1 << 17;

/// Runs a compiled loop on `ptrs` (addresses of the program's buffers followed by the
/// owning step's scratch buffers).
pub(crate) fn run_loop(
    step: &LoopStep,
    ptrs: &[*mut u8],
    bindings: &HashMap<String, u64>,
    threads: usize,
) -> Result<(), CpuError> {
    let code = &step.code;
    let dims: Vec<i64> = code
        .dims
        .iter()
        .map(|d| eval_dim(d, bindings))
        .collect::<Result<_, _>>()?;
    let lookup = |d: &Dim| -> Option<i64> {
        known_i64(d).or_else(|| code.dims.iter().position(|x| x == d).map(|k| dims[k]))
    };
    preflight::check_job(&code.job, &code.dtypes, &lookup, step.kernel)?;
    let local: Vec<*mut u8> = step
        .slots
        .iter()
        .map(|s| ptrs.get(s.index()).copied())
        .collect::<Option<_>>()
        .ok_or_else(|| CpuError::Codegen {
            kernel: step.kernel,
            message: "internal: buffer slot out of range".into(),
        })?;
    let extent = |d: &Dim| lookup(d).map_or(0, |v| v.max(0)) as u64;
    let domain = &code.job.kernel.domain;
    let points = domain.iter().fold(1u64, |a, d| a.saturating_mul(extent(d)));
    if points == 0 {
        return Ok(());
    }
    let red = code
        .job
        .kernel
        .reduce
        .iter()
        .fold(1u64, |a, d| a.saturating_mul(extent(d)));
    let work = match code.info.hoisted {
        None => points
            .saturating_mul(red.max(1))
            .saturating_mul(u64::from(code.info.point_cost)),
        Some(first) => {
            let outer = domain[..first]
                .iter()
                .fold(1u64, |a, d| a.saturating_mul(extent(d)));
            outer
                .saturating_mul(red.max(1))
                .saturating_mul(u64::from(code.info.hoisted_cost))
                .saturating_add(points.saturating_mul(u64::from(code.info.point_cost)))
        }
    };
    let split_extent = code.info.split.map_or(1, |k| extent(&domain[k]));
    let f = code.f;
    let flags = AtomicU32::new(0);
    let pool = pool::global();
    let chunks = if work < PARALLEL_WORK || threads < 2 || split_extent < 2 {
        1
    } else {
        let by_work = (work / CHUNK_WORK).max(1);
        by_work.min(split_extent).min(threads as u64 * 4)
    };
    let bufs = SyncPtr(local.as_ptr().cast_mut());
    let dims_ptr = SyncPtr(dims.as_ptr().cast_mut());
    let innermost = code.info.split == Some(domain.len().saturating_sub(1));
    let bound = |c: u64| -> i64 {
        let mut b = (u128::from(split_extent) * u128::from(c) / u128::from(chunks)) as u64;
        if innermost && c < chunks {
            b &= !15;
        }
        i64::try_from(b).unwrap_or(i64::MAX)
    };
    let task = |c: usize| {
        let (s, e) = (bound(c as u64), bound(c as u64 + 1));
        if s >= e && code.info.split.is_some() {
            return;
        }
        let mut word = 0u32;
        // SAFETY: `f` was generated for `code.job`, whose buffers are `local` (one address
        // per local buffer, each of the dtype and length of the job's buffer: program buffers
        // were checked against the bindings in `CpuProgram::run`, scratch buffers are
        // allocated at those sizes) and whose symbolic dims are `dims`, evaluated from the
        // same bindings. Every plain/masked load and store of the job is proven in bounds by
        // the verifier for every point of the domain, `preflight::check_job` showed that
        // the index arithmetic cannot overflow, and checked loads clamp. The function only
        // visits points whose split coordinate is in `[s, e)` ⊆ `[0, extent)`. Concurrent
        // chunks write disjoint elements (or equal values, per the kernel IR's contract).
        unsafe {
            f(
                bufs.get().cast_const(),
                dims_ptr.get().cast_const(),
                s,
                e,
                &mut word,
            )
        };
        flags.fetch_or(word, Ordering::Relaxed);
    };
    if chunks <= 1 {
        task(0);
    } else if pool.run(chunks as usize, &task).is_err() {
        return Err(CpuError::WorkerPanic {
            kernel: step.kernel,
        });
    }
    let w = flags.load(Ordering::Relaxed);
    if w & FLAG_OOB != 0 {
        return Err(CpuError::IndexOutOfBounds {
            kernel: step.kernel,
        });
    }
    if w & FLAG_DIV_ZERO != 0 {
        return Err(CpuError::DivisionByZero {
            kernel: step.kernel,
        });
    }
    Ok(())
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
    pub fn program(&self) -> &Program {
        &self.program
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

    /// Checks the bindings against the symbols' preconditions.
    fn check_bindings(&self, bindings: &HashMap<String, u64>) -> Result<(), CpuError> {
        for s in &self.program.symbols {
            let v = *bindings
                .get(&s.name)
                .ok_or_else(|| CpuError::Unbound(s.name.clone()))?;
            if v < s.min {
                return Err(CpuError::Precondition {
                    name: s.name.clone(),
                    value: v,
                    rule: format!("{} >= {}", s.name, s.min),
                });
            }
            if let Some(max) = s.max
                && v > max
            {
                return Err(CpuError::Precondition {
                    name: s.name.clone(),
                    value: v,
                    rule: format!("{} <= {max}", s.name),
                });
            }
        }
        Ok(())
    }

    /// Runs the program on `buffers` (one per program buffer, `buffers[k]` is `b<k>`, each
    /// of the buffer's dtype and evaluated size), like [`kiln_kernel::execute`]: fill inputs
    /// and state first; outputs, scratch and state are written. Constant buffers are read
    /// from the compiled program; their slots are checked but not written.
    ///
    /// Every binding and every buffer length is validated before any generated code runs.
    /// On error the contents of written buffers are unspecified.
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
        let threads = options.threads();
        self.check_bindings(bindings)?;
        if buffers.len() != self.program.buffers.len() {
            return Err(CpuError::BufferCount {
                expected: self.program.buffers.len(),
                got: buffers.len(),
            });
        }
        let mut ptrs = Vec::with_capacity(buffers.len());
        for (i, (b, data)) in self
            .program
            .buffers
            .iter()
            .zip(buffers.iter_mut())
            .enumerate()
        {
            let len = eval_dim(&b.size, bindings)?.max(0);
            let len = usize::try_from(len)
                .map_err(|_| CpuError::Overflow(format!("b{i} is too large")))?;
            if data.dtype() != b.dtype || data.len() != len {
                return Err(CpuError::BufferShape {
                    buffer: BufferId(u32::try_from(i).unwrap_or(u32::MAX)),
                    dtype: b.dtype,
                    len,
                    got_dtype: data.dtype(),
                    got_len: data.len(),
                });
            }
            ptrs.push(match &b.kind {
                BufferKind::Constant(a) => {
                    if a.len() != len {
                        return Err(CpuError::BufferShape {
                            buffer: BufferId(u32::try_from(i).unwrap_or(u32::MAX)),
                            dtype: b.dtype,
                            len,
                            got_dtype: a.dtype(),
                            got_len: a.len(),
                        });
                    }
                    const_ptr(a.data())
                }
                BufferKind::Input(_)
                | BufferKind::Output(_)
                | BufferKind::State(_)
                | BufferKind::Scratch => data_ptr(data),
            });
        }
        for step in &self.steps {
            match step {
                Step::Loop(l) => run_loop(l, &ptrs, bindings, threads)?,
                Step::Contract(c) => c.run(&self.program, &ptrs, bindings, threads)?,
            }
        }
        Ok(())
    }
}
