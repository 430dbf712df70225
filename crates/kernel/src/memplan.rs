//! Memory planning: places a program's scratch buffers in one arena for a binding of its
//! symbols, reusing memory between buffers whose lifetimes do not overlap. The CPU and GPU
//! engines allocate one arena per binding from this plan (the GPU's is one device buffer,
//! each scratch buffer bound at its offset).
//!
//! * **Persistent vs scratch.** Inputs, outputs, state and constants live outside the arena
//!   (the caller owns them; state persists between runs). Only `scratch` buffers are placed.
//! * **Liveness.** A scratch buffer is live from the first kernel that stores to it to the
//!   last kernel that reads or writes it (kernels run in program order, each completing
//!   before the next; the verifier rejects a read of a scratch buffer before a store to it).
//!   A scratch buffer no kernel touches takes no memory (offset 0, empty).
//! * **Control flow.** Kernels are numbered in the schedule's pre-order. A copy or a
//!   predicate read between kernels `j - 1` and `j` keeps its buffers live over both, and a
//!   scratch buffer used anywhere inside a loop, while or if lives for the whole step (and
//!   its neighbouring kernels): later iterations reuse it.
//! * **Workspace.** An engine may ask for extra bytes live only while one kernel runs (the
//!   CPU engine's materialised contraction operands and accumulators); each is a slot of
//!   its own with that kernel as its whole lifetime.
//! * **In-place reuse** (unless [`PlanOptions::in_place`] is off). An elementwise loop kernel
//!   (no reduction axes) may write a scratch buffer `y` over a scratch input `x` that dies
//!   in that kernel when every load of `x` in the kernel is a plain load at exactly the
//!   index of every store to `y`, that index visits each element once (row-major over the
//!   domain), both have the same element size, and `y` is no larger than `x`. Each point
//!   then reads its element of `x` before writing the same bytes of `y`, in any execution
//!   order. `x` and `y` share a slot.
//! * **Placement.** Slots are placed greedily at the lowest offset, a multiple of
//!   [`PlanOptions::alignment`], that does not overlap a slot with an intersecting lifetime;
//!   three orders are tried (largest first, earliest first, longest-lived first) and the
//!   smallest arena wins.
//!
//! [`MemoryPlan::peak_scratch_bytes`] is the arena size; [`MemoryPlan::live_bound_bytes`] is
//! the largest total of (aligned) slots live at one kernel, the least any placement without
//! in-place reuse could use.

use crate::schedule::Step;
use crate::{BufferId, BufferKind, Expr, IndexExpr, Kernel, KernelId, LoadMode, Program};
use kiln_ir::{Dim, DimError};
use std::collections::HashMap;

/// The default alignment of arena offsets, in bytes (a cache line; the CPU engine's).
pub const ALIGNMENT: u64 = 64;

/// How [`plan_with`] places the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Alignment of every offset and slot size, in bytes: a power of two.
    pub alignment: u64,
    /// Whether an elementwise kernel may write a scratch buffer over a dead scratch input
    /// (see the module docs). Off for engines that cannot bind one buffer's bytes as both
    /// an input and an output of a kernel.
    pub in_place: bool,
    /// Bytes of at least every element whatever its dtype, for a device that stores each
    /// element in whole words (the GPU engine's 32-bit words: bool takes one, `i64` two);
    /// `None`: the dtype's size.
    pub element_bytes: Option<u64>,
}

impl Default for PlanOptions {
    /// [`ALIGNMENT`], in-place reuse on.
    fn default() -> PlanOptions {
        PlanOptions {
            alignment: ALIGNMENT,
            in_place: true,
            element_bytes: None,
        }
    }
}

/// Bytes an engine needs while one kernel runs, besides the program's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// The kernel whose run the bytes are live for.
    pub kernel: KernelId,
    /// The size in bytes.
    pub bytes: u64,
}

/// Why a program could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A buffer size could not be evaluated under the binding.
    #[error("memory plan: size of {buffer} (`{size}`): {source}")]
    Size {
        /// The buffer.
        buffer: BufferId,
        /// Its symbolic size.
        size: String,
        /// What went wrong.
        source: DimError,
    },
    /// A size in bytes does not fit 64 bits.
    #[error("memory plan: {0} is too large")]
    Overflow(BufferId),
    /// A workspace request does not fit 64 bits once aligned.
    #[error("memory plan: the workspace of {0} is too large")]
    WorkspaceOverflow(KernelId),
    /// A workspace request names a kernel the program does not have.
    #[error("memory plan: workspace for {0}, which is not a kernel of the program")]
    NoSuchKernel(KernelId),
    /// The arena does not fit 64 bits.
    #[error("memory plan: the arena is too large")]
    ArenaOverflow,
    /// The alignment is not a power of two.
    #[error("memory plan: alignment {0} is not a power of two")]
    Alignment(u64),
}

/// Where every scratch buffer lives in the arena, for one binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Alignment of offsets and slot sizes ([`PlanOptions::alignment`]).
    pub alignment: u64,
    /// Byte size of every buffer under the binding (unaligned), `bytes[k]` for `b<k>`.
    pub bytes: Vec<u64>,
    /// Arena offset of every scratch buffer; `None` for input, output, state and constant
    /// buffers.
    pub offsets: Vec<Option<u64>>,
    /// First and last kernel using each scratch buffer; `None` for other buffers and for
    /// scratch no kernel touches.
    pub lifetimes: Vec<Option<(usize, usize)>>,
    /// `(y, x)`: scratch `y` overwrites the dead scratch `x` in place.
    pub in_place: Vec<(BufferId, BufferId)>,
    /// Arena offset of every workspace request, in the order given to [`plan_with`].
    pub workspace_offsets: Vec<u64>,
    /// Byte size of every workspace request (unaligned), in the same order.
    pub workspace_bytes: Vec<u64>,
    /// Arena size: the peak of scratch memory (a multiple of the alignment).
    pub peak_scratch_bytes: u64,
    /// The largest total aligned size of scratch buffers and workspace live at one kernel.
    pub live_bound_bytes: u64,
    /// Bytes of input, output, state and constant buffers (outside the arena).
    pub persistent_bytes: u64,
    /// Per buffer: an output whose every element is stored before anything reads it, so an
    /// engine may hand the run uninitialised memory for it (see [`stored_whole_first`]).
    pub stored_first: Vec<bool>,
}

impl MemoryPlan {
    /// The bytes scratch memory takes when every scratch buffer and every workspace request
    /// is allocated on its own, unaligned (no sharing): what the arena saves is the
    /// difference to [`MemoryPlan::peak_scratch_bytes`].
    pub fn separate_scratch_bytes(&self) -> u64 {
        self.offsets
            .iter()
            .zip(&self.bytes)
            .filter(|(o, _)| o.is_some())
            .map(|(_, b)| *b)
            .chain(self.workspace_bytes.iter().copied())
            .fold(0, u64::saturating_add)
    }

    /// The arena offset of buffer `b`, if it is a placed scratch buffer.
    pub fn offset(&self, b: BufferId) -> Option<u64> {
        self.offsets.get(b.index()).copied().flatten()
    }
}

fn align(n: u64, alignment: u64) -> Option<u64> {
    n.checked_add(alignment - 1)
        .map(|v| v / alignment * alignment)
}

/// Loads and stores of one kernel.
#[derive(Default)]
struct Access {
    /// `(buffer, index, plain)` for every load.
    loads: Vec<(BufferId, IndexExpr, bool)>,
    /// `(buffer, index)` for every store.
    stores: Vec<(BufferId, IndexExpr)>,
}

fn accesses(k: &Kernel) -> Access {
    let mut a = Access::default();
    let bodies: Vec<&crate::Body> = match k {
        Kernel::Loop(l) => vec![&l.body],
        Kernel::Matmul(m) => vec![&m.a, &m.b, &m.epilogue],
        Kernel::Conv2d(c) => vec![&c.input, &c.weight, &c.epilogue],
    };
    for b in bodies {
        for e in &b.values {
            if let Expr::Load(l) = e {
                a.loads
                    .push((l.buffer, l.index.clone(), l.mode == LoadMode::Plain));
            }
        }
        for s in &b.stores {
            a.stores.push((s.buffer, s.index.clone()));
        }
    }
    a
}

fn eval(d: &Dim, bindings: &HashMap<String, u64>) -> Option<i128> {
    d.eval(bindings).ok().map(i128::from).or_else(|| {
        let neg = Dim::known(0) - d.clone();
        neg.eval(bindings).ok().map(|v| -i128::from(v))
    })
}

/// True if `index` is the row-major flat index over `domain` (each point a distinct element).
fn row_major(index: &IndexExpr, domain: &[Dim], bindings: &HashMap<String, u64>) -> bool {
    let Some(aff) = index.affine() else {
        return false;
    };
    if aff.red_strides.iter().any(|s| eval(s, bindings) != Some(0)) {
        return false;
    }
    if eval(&aff.offset, bindings) != Some(0) {
        return false;
    }
    let mut expected: i128 = 1;
    for (k, d) in domain.iter().enumerate().rev() {
        let Some(ext) = eval(d, bindings) else {
            return false;
        };
        let stride = aff.strides.get(k).map_or(Some(0), |s| eval(s, bindings));
        if ext > 1 {
            if stride != Some(expected) {
                return false;
            }
            expected = expected.saturating_mul(ext);
        }
    }
    aff.strides.len() <= domain.len()
}

/// Per buffer of `program`: true for an output whose every element the first kernel that
/// touches it stores, before anything reads it. That kernel must be a loop kernel that
/// does not load the buffer and has a store to it at the row-major index of a domain with
/// exactly the buffer's element count (each point one distinct element, every point run),
/// in a program without control flow (a kernel inside a loop or branch may not run).
/// Such an output needs no zeroing before the run; a run that fails part-way may leave
/// some elements unwritten, so an engine that skips the zeroing must clear the buffer
/// when the run fails.
pub fn stored_whole_first(program: &Program, bindings: &HashMap<String, u64>) -> Vec<bool> {
    let acc: Vec<Access> = program.kernels.iter().map(accesses).collect();
    stored_first_with(program, &acc, bindings)
}

/// [`stored_whole_first`] over the kernels' accesses `acc` (which [`plan_with`] has).
fn stored_first_with(
    program: &Program,
    acc: &[Access],
    bindings: &HashMap<String, u64>,
) -> Vec<bool> {
    let mut out = vec![false; program.buffers.len()];
    if program.schedule.is_some() {
        return out;
    }
    for (i, buf) in program.buffers.iter().enumerate() {
        if !matches!(buf.kind, BufferKind::Output(_)) {
            continue;
        }
        let b = BufferId(i as u32);
        let touches =
            |a: &Access| a.loads.iter().any(|l| l.0 == b) || a.stores.iter().any(|s| s.0 == b);
        let Some(first) = acc.iter().position(touches) else {
            continue;
        };
        let (Some(Kernel::Loop(l)), a) = (program.kernels.get(first), &acc[first]) else {
            continue;
        };
        if a.loads.iter().any(|ld| ld.0 == b) {
            continue;
        }
        let points = l.domain.iter().try_fold(1u64, |n, d| {
            d.eval(bindings).ok().and_then(|e| n.checked_mul(e))
        });
        if points.is_none() || points != buf.size.eval(bindings).ok() {
            continue;
        }
        out[i] = a
            .stores
            .iter()
            .any(|(sb, idx)| *sb == b && row_major(idx, &l.domain, bindings));
    }
    out
}

/// A group of scratch buffers sharing bytes (in place), live over kernels `start..=end`.
#[derive(Clone, Copy, Debug)]
struct Slot {
    root: usize,
    start: usize,
    end: usize,
    size: u64,
}

/// Places slots in the given order, each at the lowest offset that overlaps no placed slot
/// with an intersecting lifetime; returns the arena size and every slot's offset, or `None`
/// if an offset does not fit 64 bits.
fn place_slots(order: &[Slot]) -> Option<(u64, HashMap<usize, u64>)> {
    let mut placed: Vec<(Slot, u64)> = Vec::new();
    let mut at = HashMap::new();
    let mut peak = 0u64;
    for &slot in order {
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|(p, _)| p.start <= slot.end && slot.start <= p.end)
            .map(|(p, off)| (*off, off + p.size))
            .collect();
        busy.sort_unstable();
        let mut off = 0u64;
        for (lo, hi) in busy {
            if off.checked_add(slot.size)? <= lo {
                break;
            }
            off = off.max(hi);
        }
        let end = off.checked_add(slot.size)?;
        placed.push((slot, off));
        at.insert(slot.root, off);
        peak = peak.max(end);
    }
    Some((peak, at))
}

/// Extends `life[b]` (if `b` is scratch) to cover kernels `lo..=hi`.
fn extend(life: &mut [Option<(usize, usize)>], b: BufferId, lo: usize, hi: usize) {
    if let Some(slot) = life.get_mut(b.index()) {
        *slot = Some(match *slot {
            Some((s, e)) => (s.min(lo), e.max(hi)),
            None => (lo, hi),
        });
    }
}

/// Lifetimes through a schedule (kernels are numbered in its pre-order; `next` is the next
/// kernel's id): a copy or predicate read between kernels `j - 1` and `j` keeps its buffers
/// live over both, and every scratch buffer touched inside a loop, while or if is live over
/// the whole step (and its neighbours), because iterations repeat it. Returns the scratch
/// buffers the steps touch.
fn schedule_lives(
    steps: &[Step],
    acc: &[Access],
    n: usize,
    next: &mut usize,
    life: &mut [Option<(usize, usize)>],
    scratch: &impl Fn(BufferId) -> bool,
) -> Vec<BufferId> {
    let last = n.saturating_sub(1);
    let mut touched = Vec::new();
    for step in steps {
        let here = (next.saturating_sub(1), (*next).min(last));
        for b in step.own_buffers() {
            if scratch(b) {
                extend(life, b, here.0, here.1);
                touched.push(b);
            }
        }
        match step {
            Step::Kernel(k) => {
                *next = k.index() + 1;
                if let Some(a) = acc.get(k.index()) {
                    touched.extend(
                        a.loads
                            .iter()
                            .map(|l| l.0)
                            .chain(a.stores.iter().map(|s| s.0))
                            .filter(|&b| scratch(b)),
                    );
                }
            }
            Step::Copy { .. } => {}
            Step::Loop(_) | Step::While(_) | Step::If(_) => {
                let start = next.saturating_sub(1);
                let mut inner = Vec::new();
                for c in step.children() {
                    inner.extend(schedule_lives(c, acc, n, next, life, scratch));
                }
                let end = (*next).min(last);
                for &b in &inner {
                    extend(life, b, start, end);
                }
                touched.extend(inner);
            }
        }
    }
    touched
}

/// Plans the scratch memory of `program` under `bindings` with the default options (64-byte
/// alignment, in-place reuse) and no workspace (see the module docs).
pub fn plan(program: &Program, bindings: &HashMap<String, u64>) -> Result<MemoryPlan, PlanError> {
    plan_with(program, bindings, &PlanOptions::default(), &[])
}

/// Plans the scratch memory of `program` under `bindings`, with `options`, adding the
/// engine's `workspace` requests as slots live only during their kernel (see the module
/// docs).
pub fn plan_with(
    program: &Program,
    bindings: &HashMap<String, u64>,
    options: &PlanOptions,
    workspace: &[Workspace],
) -> Result<MemoryPlan, PlanError> {
    let alignment = options.alignment;
    if !alignment.is_power_of_two() {
        return Err(PlanError::Alignment(alignment));
    }
    let nb = program.buffers.len();
    let mut bytes = Vec::with_capacity(nb);
    let mut aligned = Vec::with_capacity(nb);
    let mut persistent: u64 = 0;
    for (i, b) in program.buffers.iter().enumerate() {
        let id = BufferId(i as u32);
        let n = b.size.eval(bindings).map_err(|source| PlanError::Size {
            buffer: id,
            size: b.size.to_string(),
            source,
        })?;
        let natural = b.dtype.size_bytes() as u64;
        let element = options.element_bytes.map_or(natural, |e| e.max(natural));
        let by = n.checked_mul(element).ok_or(PlanError::Overflow(id))?;
        bytes.push(by);
        aligned.push(align(by, alignment).ok_or(PlanError::Overflow(id))?);
        if b.kind != BufferKind::Scratch {
            persistent = persistent.checked_add(by).ok_or(PlanError::Overflow(id))?;
        }
    }
    let scratch = |b: BufferId| {
        program
            .buffers
            .get(b.index())
            .is_some_and(|x| x.kind == BufferKind::Scratch)
    };

    let acc: Vec<Access> = program.kernels.iter().map(accesses).collect();
    let mut life: Vec<Option<(usize, usize)>> = vec![None; nb];
    for (k, a) in acc.iter().enumerate() {
        let touched = a
            .loads
            .iter()
            .map(|l| l.0)
            .chain(a.stores.iter().map(|s| s.0));
        for b in touched {
            if !scratch(b) {
                continue;
            }
            let slot = &mut life[b.index()];
            *slot = Some(match *slot {
                Some((s, e)) => (s.min(k), e.max(k)),
                None => (k, k),
            });
        }
    }

    if program.schedule.is_some() {
        let n = program.kernels.len();
        let mut next = 0usize;
        schedule_lives(&program.steps(), &acc, n, &mut next, &mut life, &scratch);
    }

    // In-place reuse: union slots.
    let mut parent: Vec<usize> = (0..nb).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let mut in_place = Vec::new();
    let mut reused = vec![false; nb];
    for (k, kernel) in program.kernels.iter().enumerate() {
        if !options.in_place {
            break;
        }
        let Kernel::Loop(l) = kernel else { continue };
        if !l.reduce.is_empty() {
            continue;
        }
        let a = &acc[k];
        let mut targets: Vec<BufferId> = a.stores.iter().map(|s| s.0).collect();
        targets.sort();
        targets.dedup();
        for y in targets {
            if !scratch(y) || life[y.index()].map(|l| l.0) != Some(k) {
                continue;
            }
            let idx: Vec<&IndexExpr> = a.stores.iter().filter(|s| s.0 == y).map(|s| &s.1).collect();
            let Some(&e) = idx.first() else { continue };
            if idx.iter().any(|i| *i != e) || !row_major(e, &l.domain, bindings) {
                continue;
            }
            if a.loads.iter().any(|ld| ld.0 == y) {
                continue;
            }
            let mut cands: Vec<BufferId> = a.loads.iter().map(|ld| ld.0).collect();
            cands.sort();
            cands.dedup();
            for x in cands {
                let (xi, yi) = (x.index(), y.index());
                let ok = scratch(x)
                    && !reused[xi]
                    && life[xi].is_some_and(|(s, e)| e == k && s < k)
                    && !a.stores.iter().any(|s| s.0 == x)
                    && a.loads
                        .iter()
                        .filter(|ld| ld.0 == x)
                        .all(|ld| ld.2 && ld.1 == *e)
                    && program.buffers[xi].dtype.size_bytes()
                        == program.buffers[yi].dtype.size_bytes()
                    && aligned[yi] <= aligned[xi];
                if ok {
                    reused[xi] = true;
                    let rx = find(&mut parent, xi);
                    parent[yi] = rx;
                    in_place.push((y, x));
                    break;
                }
            }
        }
    }

    // Slots: union of lifetimes, largest member.
    let mut slots: HashMap<usize, (usize, usize, u64)> = HashMap::new();
    for b in 0..nb {
        let Some((s, e)) = life[b] else { continue };
        let r = find(&mut parent, b);
        let entry = slots.entry(r).or_insert((s, e, 0));
        entry.0 = entry.0.min(s);
        entry.1 = entry.1.max(e);
        entry.2 = entry.2.max(aligned[b]);
    }
    let mut list: Vec<Slot> = slots
        .iter()
        .map(|(&root, &(start, end, size))| Slot {
            root,
            start,
            end,
            size,
        })
        .collect();
    let mut workspace_aligned = Vec::with_capacity(workspace.len());
    for (w, req) in workspace.iter().enumerate() {
        let k = req.kernel.index();
        if k >= program.kernels.len() {
            return Err(PlanError::NoSuchKernel(req.kernel));
        }
        let size = align(req.bytes, alignment).ok_or(PlanError::WorkspaceOverflow(req.kernel))?;
        workspace_aligned.push((k, size));
        if size > 0 {
            list.push(Slot {
                root: nb + w,
                start: k,
                end: k,
                size,
            });
        }
    }
    list.sort_by_key(|x| x.root);

    let mut by_size = list.clone();
    by_size.sort_by_key(|x| (std::cmp::Reverse(x.size), x.start, x.root));
    let mut by_start = list.clone();
    by_start.sort_by_key(|x| (x.start, std::cmp::Reverse(x.size), x.root));
    let mut by_length = list.clone();
    by_length.sort_by_key(|x| {
        (
            std::cmp::Reverse(x.end - x.start),
            std::cmp::Reverse(x.size),
            x.root,
        )
    });
    let mut best: Option<(u64, HashMap<usize, u64>)> = None;
    for order in [by_size, by_start, by_length] {
        let Some((peak, at)) = place_slots(&order) else {
            continue;
        };
        if best.as_ref().is_none_or(|b| peak < b.0) {
            best = Some((peak, at));
        }
    }
    let Some((peak, at)) = best else {
        return Err(PlanError::ArenaOverflow);
    };
    let workspace_offsets = (0..workspace.len())
        .map(|w| at.get(&(nb + w)).copied().unwrap_or(0))
        .collect();

    let mut offsets = vec![None; nb];
    for (b, slot) in offsets.iter_mut().enumerate() {
        if !scratch(BufferId(b as u32)) {
            continue;
        }
        *slot = Some(match life[b] {
            Some(_) => {
                let r = find(&mut parent, b);
                at.get(&r).copied().unwrap_or(0)
            }
            None => 0,
        });
    }
    let mut live_bound = 0u64;
    for k in 0..program.kernels.len() {
        let live: u64 = (0..nb)
            .filter(|&b| life[b].is_some_and(|(s, e)| s <= k && k <= e))
            .map(|b| aligned[b])
            .chain(workspace_aligned.iter().filter(|w| w.0 == k).map(|w| w.1))
            .fold(0u64, u64::saturating_add);
        live_bound = live_bound.max(live);
    }
    Ok(MemoryPlan {
        stored_first: stored_first_with(program, &acc, bindings),
        alignment,
        bytes,
        offsets,
        lifetimes: life,
        in_place,
        workspace_offsets,
        workspace_bytes: workspace.iter().map(|w| w.bytes).collect(),
        peak_scratch_bytes: peak,
        live_bound_bytes: live_bound,
        persistent_bytes: persistent,
    })
}
