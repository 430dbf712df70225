//! Generated loops bound to a program: the step a compiled loop kernel becomes, its
//! evaluation under one binding ([`LoopRun`]) and [`run_loop`], which runs it on the calling
//! thread or splits it over the pool. Shared by whole-program runs and contraction
//! prologues/epilogues.

use crate::cache::CompiledLoop;
use crate::codegen::{FLAG_DIV_ZERO, FLAG_OOB, analysis::known_i64};
use crate::error::CpuError;
use crate::job::{self, LocalBuffer, LoopJob};
use crate::pool;
use crate::preflight::{self, eval_dim};
use kiln_ir::{DType, Dim};
use kiln_kernel::{BufferId, KernelId, LoopKernel, Program};
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

/// A raw pointer that may cross threads.
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
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

    pub(crate) fn null() -> SyncPtr<T> {
        SyncPtr(std::ptr::null_mut())
    }
}

/// Work (in simple operations, see `LoopInfo::point_cost`) below which a loop runs on the
/// calling thread. A copy (two operations a point) splits from 2^18 points up; an LSTM's
/// gate kernel at batch 64 (8,192 points of three sigmoids and two tanh, about 2^20) splits,
/// which halves its time inside the scan step where nothing else runs beside it (the pool's
/// workers spin between jobs, so a fork-join there costs a few microseconds).
const PARALLEL_WORK: u64 = 1 << 19;
/// Work a parallel chunk should have at least.
const CHUNK_WORK: u64 = 1 << 17;

/// A generated loop evaluated under one binding: its dim values (pre-run checks passed),
/// where its buffers sit in the run's pointer table, and its work estimate.
#[derive(Debug)]
pub(crate) struct LoopRun {
    dims: Vec<i64>,
    /// `slots[k]`: the pointer-table entry of local buffer `k`.
    slots: Vec<usize>,
    /// The local buffers' addresses, refreshed from the table at every run.
    local: Vec<SyncPtr<u8>>,
    points: u64,
    work: u64,
    split_extent: u64,
}

impl LoopRun {
    /// Evaluates `step` under `bindings`. Local buffer ids below `nb` (the program's buffer
    /// count) are program buffers (table entry = id); ids from `nb` on are the owning step's
    /// scratch buffers, at table entries `scratch_base + id - nb`. `table_len` bounds them.
    pub(crate) fn new(
        step: &LoopStep,
        nb: usize,
        scratch_base: usize,
        table_len: usize,
        bindings: &HashMap<String, u64>,
    ) -> Result<LoopRun, CpuError> {
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
        let slots: Vec<usize> = step
            .slots
            .iter()
            .map(|s| {
                let id = s.index();
                let at = if id < nb {
                    id
                } else {
                    scratch_base + (id - nb)
                };
                (at < table_len).then_some(at)
            })
            .collect::<Option<_>>()
            .ok_or_else(|| CpuError::Codegen {
                kernel: step.kernel,
                message: "internal: buffer slot out of range".into(),
            })?;
        let extent = |d: &Dim| lookup(d).map_or(0, |v| v.max(0)) as u64;
        let domain = &code.job.kernel.domain;
        let points = domain.iter().fold(1u64, |a, d| a.saturating_mul(extent(d)));
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
                let outer = domain[..first.min(domain.len())]
                    .iter()
                    .fold(1u64, |a, d| a.saturating_mul(extent(d)));
                outer
                    .saturating_mul(red.max(1))
                    .saturating_mul(u64::from(code.info.hoisted_cost))
                    .saturating_add(points.saturating_mul(u64::from(code.info.point_cost)))
            }
        };
        let split_extent = code
            .info
            .split
            .and_then(|k| domain.get(k))
            .map_or(1, extent);
        Ok(LoopRun {
            dims,
            local: vec![SyncPtr::null(); slots.len()],
            slots,
            points,
            work,
            split_extent,
        })
    }
}

impl LoopRun {
    /// The positions of the run's dims that mention one of `symbols` (a schedule's
    /// induction symbols), with the dims.
    pub(crate) fn dims_with(step: &LoopStep, symbols: &[&str]) -> Vec<(usize, Dim)> {
        step.code
            .dims
            .iter()
            .enumerate()
            .filter(|(_, d)| d.symbols().iter().any(|s| symbols.contains(&&**s)))
            .map(|(k, d)| (k, d.clone()))
            .collect()
    }

    /// Re-evaluates the dims at `which` (from [`LoopRun::dims_with`]) under `bindings`: a
    /// loop iteration's new induction value. The verifier proved every access in bounds
    /// for every value in `0..trip`, and `CpuProgram::bind` ran the pre-run checks at both
    /// ends of that range.
    pub(crate) fn set_dims(
        &mut self,
        which: &[(usize, Dim)],
        bindings: &HashMap<String, u64>,
    ) -> Result<(), CpuError> {
        for (k, d) in which {
            if let Some(slot) = self.dims.get_mut(*k) {
                *slot = eval_dim(d, bindings)?;
            }
        }
        Ok(())
    }
}

/// A compiled loop with its buffers looked up in a run's table, ready to run over parts of
/// its split axis on any thread ([`Ranged::run`]), as a contraction's epilogue does on the
/// rows each of its tasks just computed.
pub(crate) struct Ranged<'a> {
    step: &'a LoopStep,
    lr: &'a LoopRun,
    flags: AtomicU32,
}

impl LoopRun {
    /// Looks the loop's buffers up in `table` for [`Ranged::run`] calls.
    pub(crate) fn ranged<'a>(
        &'a mut self,
        step: &'a LoopStep,
        table: &[SyncPtr<u8>],
    ) -> Ranged<'a> {
        for (l, &at) in self.local.iter_mut().zip(&self.slots) {
            *l = table[at];
        }
        Ranged {
            step,
            lr: self,
            flags: AtomicU32::new(0),
        }
    }
}

impl Ranged<'_> {
    /// The axis whose range [`Ranged::run`] takes (`None`: a single point).
    pub(crate) fn split_axis(&self) -> Option<usize> {
        self.step.code.info.split
    }

    /// Runs the points whose split coordinate is in `[s, e)`, `0 <= s <= e <=` the axis'
    /// extent (any range for a loop without a split axis runs its one point).
    pub(crate) fn run(&self, s: i64, e: i64) {
        if self.lr.points == 0 || (s >= e && self.split_axis().is_some()) {
            return;
        }
        let e = e.min(i64::try_from(self.lr.split_extent).unwrap_or(i64::MAX));
        let s = s.clamp(0, e);
        let mut word = 0u32;
        // SAFETY: as in `run_loop`: the buffers are the run's (looked up by `ranged`), the
        // dims the plan's, and `[s, e)` is clamped into `[0, extent)`. Callers run disjoint
        // ranges concurrently, which write disjoint elements.
        unsafe {
            (self.step.code.f)(
                self.lr.local.as_ptr().cast::<*mut u8>(),
                self.lr.dims.as_ptr(),
                s,
                e,
                &mut word,
            )
        };
        self.flags.fetch_or(word, Ordering::Relaxed);
    }

    /// The error a run's checks raised, if any.
    pub(crate) fn finish(self) -> Result<(), CpuError> {
        check_flags(self.step, self.flags.load(Ordering::Relaxed))
    }
}

/// The error a loop's flags word reports, if any.
fn check_flags(step: &LoopStep, w: u32) -> Result<(), CpuError> {
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

/// Runs a compiled loop evaluated in `lr` on the buffers of `table`.
pub(crate) fn run_loop(
    step: &LoopStep,
    lr: &mut LoopRun,
    table: &[SyncPtr<u8>],
    threads: usize,
) -> Result<(), CpuError> {
    for (l, &at) in lr.local.iter_mut().zip(&lr.slots) {
        *l = table[at];
    }
    if lr.points == 0 {
        return Ok(());
    }
    let code = &step.code;
    let domain = &code.job.kernel.domain;
    let (work, split_extent) = (lr.work, lr.split_extent);
    let f = code.f;
    let flags = AtomicU32::new(0);
    let chunks = if work < PARALLEL_WORK || threads < 2 || split_extent < 2 {
        1
    } else {
        let by_work = (work / CHUNK_WORK).max(1);
        by_work.min(split_extent).min(threads as u64 * 4)
    };
    let bufs = SyncPtr(lr.local.as_mut_ptr().cast::<*mut u8>());
    let dims_ptr = SyncPtr(lr.dims.as_ptr().cast_mut());
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
        // SAFETY: `f` was generated for `code.job`, whose buffers are `lr.local` (one address
        // per local buffer, each of the dtype and length of the job's buffer: caller buffers
        // were checked against the plan's lengths by `Runner`, scratch buffers are allocated
        // at those lengths; `SyncPtr` is a transparent pointer) and whose symbolic dims are
        // `lr.dims`, evaluated from the plan's bindings. Every plain/masked load and store of
        // the job is proven in bounds by the verifier for every point of the domain,
        // `preflight::check_job` showed at bind time that the index arithmetic cannot
        // overflow, and checked loads clamp. Buffers supplied read-only are never stored to
        // (checked in `compile`). The function only visits points whose split coordinate
        // is in `[s, e)` ⊆ `[0, extent)`. Concurrent chunks write disjoint elements (or
        // equal values, per the kernel IR's contract).
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
    } else if pool::global().run(chunks as usize, &task).is_err() {
        return Err(CpuError::WorkerPanic {
            kernel: step.kernel,
        });
    }
    check_flags(step, flags.load(Ordering::Relaxed))
}
