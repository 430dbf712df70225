//! Contraction kernels: matmul and conv2d as calls to a tuned GEMM (the `gemm` crate, which
//! dispatches to AVX2/FMA or AVX-512 micro-kernels at run time) for `f32`/`f64`, and plain
//! loops for integers.
//!
//! An operand whose body is one plain load with an affine index is handed to the GEMM as a
//! strided view (its strides come straight from the index); any other operand body is
//! first materialised into a contiguous scratch buffer by a generated loop. An epilogue that
//! only stores the accumulator at an affine index lets the GEMM write the output directly;
//! any other epilogue runs as one generated loop over the accumulator afterwards. Conv2d is
//! im2col (per column block, in the worker) followed by a GEMM per image and group.

use crate::error::CpuError;
use crate::im2col;
use crate::loops::{LoopRun, LoopStep, PendingLoop, SyncPtr, pending_loop, run_loop};
use crate::packed::{self, PackedB};
use crate::pool;
use crate::preflight::eval_dim;
use kiln_ir::{DType, Dim};
use kiln_kernel::{
    Body, BufferId, Conv2dKernel, Expr, IndexExpr, KernelId, LoadMode, LoopKernel, MatmulKernel,
    Program,
};
use std::collections::HashMap;

/// Where a contraction operand's elements come from.
#[derive(Clone, Debug)]
enum Operand {
    /// Element `x[c0, c1, ..]` at `offset + sum c_k * strides[k]` of a program buffer.
    Strided {
        buf: BufferId,
        offset: Dim,
        strides: Vec<Dim>,
    },
    /// Materialised row-major over the operand's domain into scratch buffer `slot`.
    Scratch { slot: usize },
}

/// A contraction operand or output with its domain.
#[derive(Clone, Debug)]
struct Access {
    place: Operand,
    domain: Vec<Dim>,
}

#[derive(Clone, Debug)]
enum Kind {
    Matmul {
        batch: Vec<Dim>,
        m: Dim,
        k: Dim,
        n: Dim,
    },
    Conv {
        kernel: Box<Conv2dKernel>,
        oh: Dim,
        ow: Dim,
    },
}

/// A contraction before its loops are compiled.
pub(crate) struct PendingContract {
    kernel: KernelId,
    kind: Kind,
    dtype: DType,
    a: Access,
    b: Access,
    out: Access,
    scratch: Vec<(DType, Dim)>,
    prologue: Vec<PendingLoop>,
    epilogue: Option<PendingLoop>,
}

/// A compiled contraction.
#[derive(Debug)]
pub(crate) struct ContractPlan {
    kernel: KernelId,
    kind: Kind,
    dtype: DType,
    a: Access,
    b: Access,
    out: Access,
    scratch: Vec<(DType, Dim)>,
    prologue: Vec<LoopStep>,
    epilogue: Option<LoopStep>,
}

impl PendingContract {
    /// The kernel it plans.
    pub(crate) fn kernel(&self) -> KernelId {
        self.kernel
    }

    /// The scratch buffers the contraction needs (dtype, element count), in slot order.
    pub(crate) fn scratch(&self) -> &[(DType, Dim)] {
        &self.scratch
    }

    /// The loops to compile, in order: prologues, then the epilogue.
    pub(crate) fn loops(&self) -> impl Iterator<Item = &PendingLoop> {
        self.prologue.iter().chain(self.epilogue.iter())
    }

    /// Binds the compiled loops (taken in [`PendingContract::loops`] order).
    pub(crate) fn finish(
        self,
        take: &mut dyn FnMut(PendingLoop) -> Result<LoopStep, CpuError>,
    ) -> Result<ContractPlan, CpuError> {
        let prologue = self
            .prologue
            .into_iter()
            .map(&mut *take)
            .collect::<Result<Vec<_>, _>>()?;
        let epilogue = self.epilogue.map(&mut *take).transpose()?;
        Ok(ContractPlan {
            kernel: self.kernel,
            kind: self.kind,
            dtype: self.dtype,
            a: self.a,
            b: self.b,
            out: self.out,
            scratch: self.scratch,
            prologue,
            epilogue,
        })
    }
}

/// Row-major flat index over `domain` (`((i0*d1 + i1)*d2 + i2)...`).
fn row_major(domain: &[Dim]) -> IndexExpr {
    let mut acc: Option<IndexExpr> = None;
    for (k, d) in domain.iter().enumerate() {
        let v = IndexExpr::var(u32::try_from(k).unwrap_or(u32::MAX));
        acc = Some(match acc {
            None => v,
            Some(a) => a * IndexExpr::dim(d.clone()) + v,
        });
    }
    acc.unwrap_or_else(|| IndexExpr::dim(0u64))
}

fn pad_strides(mut s: Vec<Dim>, rank: usize) -> Option<Vec<Dim>> {
    if s.len() > rank {
        return None;
    }
    s.resize(rank, Dim::known(0));
    Some(s)
}

/// The strided view of an operand body that is a single plain load with an affine index.
fn strided_operand(body: &Body, rank: usize) -> Option<Operand> {
    if body.values.len() != 1 || !body.stores.is_empty() || body.result?.index() != 0 {
        return None;
    }
    let Expr::Load(l) = &body.values[0] else {
        return None;
    };
    if l.mode != LoadMode::Plain {
        return None;
    }
    let aff = l.index.affine()?;
    if !aff.red_strides.iter().all(|d| d.as_known() == Some(0)) {
        return None;
    }
    Some(Operand::Strided {
        buf: l.buffer,
        offset: aff.offset,
        strides: pad_strides(aff.strides, rank)?,
    })
}

/// The output view of an epilogue that only stores the accumulator at an affine index.
fn strided_output(body: &Body, rank: usize) -> Option<Operand> {
    if body.values.len() != 1 || body.values[0] != Expr::Acc || body.stores.len() != 1 {
        return None;
    }
    let s = &body.stores[0];
    if s.value.index() != 0 {
        return None;
    }
    let aff = s.index.affine()?;
    if !aff.red_strides.iter().all(|d| d.as_known() == Some(0)) {
        return None;
    }
    Some(Operand::Strided {
        buf: s.buffer,
        offset: aff.offset,
        strides: pad_strides(aff.strides, rank)?,
    })
}

struct Builder<'p> {
    program: &'p Program,
    kernel: KernelId,
    scratch: Vec<(DType, Dim)>,
    prologue: Vec<PendingLoop>,
}

impl Builder<'_> {
    fn scratch_id(&self, slot: usize) -> BufferId {
        BufferId(u32::try_from(self.program.buffers.len() + slot).unwrap_or(u32::MAX))
    }

    /// A strided view if the body allows, else a generated loop into scratch.
    fn operand(
        &mut self,
        body: &Body,
        domain: Vec<Dim>,
        dtype: DType,
        force: bool,
    ) -> Result<Access, CpuError> {
        if !force && let Some(place) = strided_operand(body, domain.len()) {
            return Ok(Access { place, domain });
        }
        let slot = self.scratch.len();
        self.scratch.push((dtype, Dim::product(domain.iter())));
        let mut b = body.clone();
        let result = b.result.take().ok_or_else(|| CpuError::Unsupported {
            kernel: self.kernel,
            message: "a contraction operand body yields nothing".into(),
        })?;
        b.store(self.scratch_id(slot), row_major(&domain), result);
        let lk = LoopKernel {
            domain: domain.clone(),
            reduce: Vec::new(),
            body: b,
        };
        self.prologue
            .push(pending_loop(self.program, self.kernel, &lk, &self.scratch)?);
        Ok(Access {
            place: Operand::Scratch { slot },
            domain,
        })
    }

    /// The output view, plus the epilogue loop when one is needed.
    fn output(
        &mut self,
        epilogue: &Body,
        domain: Vec<Dim>,
        dtype: DType,
    ) -> Result<(Access, Option<PendingLoop>), CpuError> {
        if let Some(place) = strided_output(epilogue, domain.len()) {
            return Ok((Access { place, domain }, None));
        }
        let slot = self.scratch.len();
        self.scratch.push((dtype, Dim::product(domain.iter())));
        let acc_id = self.scratch_id(slot);
        let mut b = epilogue.clone();
        for e in &mut b.values {
            if *e == Expr::Acc {
                *e = Expr::Load(kiln_kernel::Load {
                    buffer: acc_id,
                    index: row_major(&domain),
                    mode: LoadMode::Plain,
                });
            }
        }
        let lk = LoopKernel {
            domain: domain.clone(),
            reduce: Vec::new(),
            body: b,
        };
        let ep = pending_loop(self.program, self.kernel, &lk, &self.scratch)?;
        Ok((
            Access {
                place: Operand::Scratch { slot },
                domain,
            },
            Some(ep),
        ))
    }
}

fn operand_dtype(program: &Program, kernel: KernelId, body: &Body) -> Result<DType, CpuError> {
    let pk = crate::loops::pending_loop(
        program,
        kernel,
        &LoopKernel {
            domain: Vec::new(),
            reduce: Vec::new(),
            body: Body {
                values: body.values.clone(),
                stores: Vec::new(),
                result: None,
                checks: Vec::new(),
            },
        },
        &[],
    )?;
    let dts = crate::codegen::node_dtypes(&pk.job).map_err(|e| CpuError::Unsupported {
        kernel,
        message: e.to_string(),
    })?;
    body.result
        .and_then(|r| dts.get(r.index()).copied())
        .ok_or_else(|| CpuError::Unsupported {
            kernel,
            message: "a contraction operand body yields nothing".into(),
        })
}

/// Plans a matmul kernel.
pub(crate) fn plan_matmul(
    program: &Program,
    kernel: KernelId,
    mk: &MatmulKernel,
) -> Result<PendingContract, CpuError> {
    let dtype = operand_dtype(program, kernel, &mk.a)?;
    let mut bld = Builder {
        program,
        kernel,
        scratch: Vec::new(),
        prologue: Vec::new(),
    };
    let with = |tail: [&Dim; 2]| {
        let mut d = mk.batch.clone();
        d.extend(tail.into_iter().cloned());
        d
    };
    let a = bld.operand(&mk.a, with([&mk.m, &mk.k]), dtype, false)?;
    let b = bld.operand(&mk.b, with([&mk.k, &mk.n]), dtype, false)?;
    let (out, epilogue) = bld.output(&mk.epilogue, with([&mk.m, &mk.n]), dtype)?;
    Ok(PendingContract {
        kernel,
        kind: Kind::Matmul {
            batch: mk.batch.clone(),
            m: mk.m.clone(),
            k: mk.k.clone(),
            n: mk.n.clone(),
        },
        dtype,
        a,
        b,
        out,
        scratch: bld.scratch,
        prologue: bld.prologue,
        epilogue,
    })
}

/// Plans a conv2d kernel.
pub(crate) fn plan_conv(
    program: &Program,
    kernel: KernelId,
    ck: &Conv2dKernel,
) -> Result<PendingContract, CpuError> {
    let g = &ck.geometry;
    let bad = |m: &str| CpuError::Unsupported {
        kernel,
        message: m.to_string(),
    };
    let dtype = operand_dtype(program, kernel, &ck.input)?;
    let (oh, ow) = g
        .output_hw(&program.symbols)
        .ok_or_else(|| bad("conv2d output size is not a polynomial"))?;
    let cg = g
        .group_channels()
        .ok_or_else(|| bad("conv2d channels are not divisible by groups"))?;
    let kh = Dim::known(g.kernel[0]);
    let kw = Dim::known(g.kernel[1]);
    let mut bld = Builder {
        program,
        kernel,
        scratch: Vec::new(),
        prologue: Vec::new(),
    };
    let input = bld.operand(
        &ck.input,
        vec![g.n.clone(), g.c.clone(), g.h.clone(), g.w.clone()],
        dtype,
        false,
    )?;
    let wdom = vec![g.o.clone(), cg, kh.clone(), kw.clone()];
    // The GEMM reads the weight as a matrix [o, c/groups*kh*kw]: its last three axes must
    // collapse into one stride.
    let collapsible = |s: &[Dim]| s.len() == 4 && s[2] == &s[3] * &kw && s[1] == &s[2] * &kh;
    let weight = match strided_operand(&ck.weight, 4) {
        Some(Operand::Strided { strides, .. }) if !collapsible(&strides) => {
            bld.operand(&ck.weight, wdom, dtype, true)?
        }
        _ => bld.operand(&ck.weight, wdom, dtype, false)?,
    };
    let odom = vec![g.n.clone(), g.o.clone(), oh.clone(), ow.clone()];
    let (mut out, mut epilogue) = bld.output(&ck.epilogue, odom.clone(), dtype)?;
    if let Operand::Strided { strides, .. } = &out.place
        && strides[2] != &strides[3] * &ow
    {
        let slot = bld.scratch.len();
        bld.scratch.push((dtype, Dim::product(odom.iter())));
        let acc_id = bld.scratch_id(slot);
        let mut b = ck.epilogue.clone();
        for e in &mut b.values {
            if *e == Expr::Acc {
                *e = Expr::Load(kiln_kernel::Load {
                    buffer: acc_id,
                    index: row_major(&odom),
                    mode: LoadMode::Plain,
                });
            }
        }
        let lk = LoopKernel {
            domain: odom.clone(),
            reduce: Vec::new(),
            body: b,
        };
        epilogue = Some(pending_loop(program, kernel, &lk, &bld.scratch)?);
        out = Access {
            place: Operand::Scratch { slot },
            domain: odom,
        };
    }
    Ok(PendingContract {
        kernel,
        kind: Kind::Conv {
            kernel: Box::new(ck.clone()),
            oh,
            ow,
        },
        dtype,
        a: input,
        b: weight,
        out,
        scratch: bld.scratch,
        prologue: bld.prologue,
        epilogue,
    })
}

/// An element type the contractions handle.
trait Elem: Copy + Send + Sync + 'static {
    const ZERO: Self;
    /// This thread's im2col buffer of this element type.
    fn col() -> &'static std::thread::LocalKey<std::cell::RefCell<Vec<Self>>>;
    /// Runs `f` with this thread's im2col buffer (kept between calls, so a steady-state run
    /// does not allocate it again).
    fn with_col<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R {
        Self::col().with(|c| {
            let mut v = c.take();
            let r = f(&mut v);
            c.replace(v);
            r
        })
    }
    /// `dst[i, j] = sum_p lhs[i, p] * rhs[p, j]` over strided matrices.
    ///
    /// # Safety
    /// Every element addressed by the strides for `i < m`, `j < n`, `p < k` must be in bounds
    /// of a live allocation, and `dst`'s elements must not be read or written by others
    /// during the call.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        n: usize,
        k: usize,
        dst: *mut Self,
        dst_rs: isize,
        dst_cs: isize,
        lhs: *const Self,
        lhs_rs: isize,
        lhs_cs: isize,
        rhs: *const Self,
        rhs_rs: isize,
        rhs_cs: isize,
    );
}

macro_rules! float_elem {
    ($t:ty) => {
        impl Elem for $t {
            const ZERO: Self = 0.0;
            fn col() -> &'static std::thread::LocalKey<std::cell::RefCell<Vec<Self>>> {
                thread_local! {
                    static COL: std::cell::RefCell<Vec<$t>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                &COL
            }
            unsafe fn gemm(
                m: usize,
                n: usize,
                k: usize,
                dst: *mut Self,
                dst_rs: isize,
                dst_cs: isize,
                lhs: *const Self,
                lhs_rs: isize,
                lhs_cs: isize,
                rhs: *const Self,
                rhs_rs: isize,
                rhs_cs: isize,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                if k == 0 || m.saturating_mul(n).saturating_mul(k) <= SMALL_GEMM {
                    // SAFETY: the caller's contract, passed on.
                    unsafe {
                        small_gemm(
                            m, n, k, dst, dst_rs, dst_cs, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs,
                        )
                    };
                    return;
                }
                // SAFETY: the caller guarantees every addressed element is in bounds and
                // that `dst` is not shared; `read_dst = false` so `dst` is only written.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        dst,
                        dst_cs,
                        dst_rs,
                        false,
                        lhs,
                        lhs_cs,
                        lhs_rs,
                        rhs,
                        rhs_cs,
                        rhs_rs,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
            }
        }
    };
}
float_elem!(f32);
float_elem!(f64);

/// Multiply-adds (`m * n * k`) up to which a float contraction runs as plain loops instead
/// of a GEMM call: below it the call's fixed cost (and its per-call packing allocation)
/// outweighs the micro-kernels.
const SMALL_GEMM: usize = 1 << 13;

/// `dst[i, j] = sum_p lhs[i, p] * rhs[p, j]` as plain loops, `p` ascending; row-major
/// destinations and right operands run as `axpy`s over contiguous rows.
///
/// # Safety
/// As [`Elem::gemm`].
#[allow(clippy::too_many_arguments)]
unsafe fn small_gemm<T>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: isize,
    dst_cs: isize,
    lhs: *const T,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const T,
    rhs_rs: isize,
    rhs_cs: isize,
) where
    T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T>,
{
    if dst_cs == 1 && rhs_cs == 1 {
        for i in 0..m as isize {
            // SAFETY: row `i` of the destination holds `n` contiguous elements in bounds
            // (caller's contract) that nobody else reads or writes during the call.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.wrapping_offset(i * dst_rs), n) };
            row.fill(T::default());
            for p in 0..k as isize {
                // SAFETY: (i, p) is in bounds of `lhs`; row `p` of `rhs` holds `n` contiguous
                // elements in bounds, not overlapping the destination (caller's contract).
                let (a, b) = unsafe {
                    (
                        *lhs.wrapping_offset(i * lhs_rs + p * lhs_cs),
                        std::slice::from_raw_parts(rhs.wrapping_offset(p * rhs_rs), n),
                    )
                };
                for (d, &x) in row.iter_mut().zip(b) {
                    *d = *d + a * x;
                }
            }
        }
        return;
    }
    for i in 0..m as isize {
        for j in 0..n as isize {
            let mut acc = T::default();
            for p in 0..k as isize {
                // SAFETY: (i, p) and (p, j) are in bounds (caller's contract).
                let (x, y) = unsafe {
                    (
                        *lhs.wrapping_offset(i * lhs_rs + p * lhs_cs),
                        *rhs.wrapping_offset(p * rhs_rs + j * rhs_cs),
                    )
                };
                acc = acc + x * y;
            }
            // SAFETY: (i, j) is in the destination (caller's contract).
            unsafe { *dst.wrapping_offset(i * dst_rs + j * dst_cs) = acc };
        }
    }
}

macro_rules! int_elem {
    ($t:ty) => {
        impl Elem for $t {
            const ZERO: Self = 0;
            fn col() -> &'static std::thread::LocalKey<std::cell::RefCell<Vec<Self>>> {
                thread_local! {
                    static COL: std::cell::RefCell<Vec<$t>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                &COL
            }
            unsafe fn gemm(
                m: usize,
                n: usize,
                k: usize,
                dst: *mut Self,
                dst_rs: isize,
                dst_cs: isize,
                lhs: *const Self,
                lhs_rs: isize,
                lhs_cs: isize,
                rhs: *const Self,
                rhs_rs: isize,
                rhs_cs: isize,
            ) {
                for i in 0..m as isize {
                    for j in 0..n as isize {
                        let mut acc: $t = 0;
                        for p in 0..k as isize {
                            // SAFETY: (i, p) and (p, j) are in bounds (caller's contract).
                            let (x, y) = unsafe {
                                (
                                    *lhs.wrapping_offset(i * lhs_rs + p * lhs_cs),
                                    *rhs.wrapping_offset(p * rhs_rs + j * rhs_cs),
                                )
                            };
                            acc = acc.wrapping_add(x.wrapping_mul(y));
                        }
                        // SAFETY: (i, j) is in the destination (caller's contract).
                        unsafe { *dst.wrapping_offset(i * dst_rs + j * dst_cs) = acc };
                    }
                }
            }
        }
    };
}
int_elem!(i32);
int_elem!(i64);
int_elem!(u32);

/// A view evaluated under the bindings: base address, element offset and strides.
#[derive(Clone, Copy, Debug)]
struct View<const R: usize> {
    base: SyncPtr<u8>,
    offset: i64,
    strides: [i64; R],
}

impl<const R: usize> View<R> {
    /// The element pointer at `coords`.
    fn at<T>(&self, coords: [i64; R]) -> *mut T {
        let mut e = self.offset;
        for (c, s) in coords.iter().zip(&self.strides) {
            e = e.wrapping_add(c.wrapping_mul(*s));
        }
        self.base.get().cast::<T>().wrapping_offset(e as isize)
    }
}

/// A view evaluated and checked in bounds under one binding; its base address is taken
/// from the run's pointer table at every run.
#[derive(Clone, Debug)]
struct ViewSpec {
    /// Pointer-table entry of the buffer.
    at: usize,
    offset: i64,
    strides: Vec<i64>,
}

/// The evaluated extents of a contraction.
#[derive(Clone, Debug)]
enum Extents {
    Matmul {
        batch: Vec<i64>,
        m: i64,
        k: i64,
        n: i64,
    },
    Conv {
        /// `[n, c, h, w, o]` of the geometry.
        nchwo: [i64; 5],
        oh: i64,
        ow: i64,
    },
}

/// A contraction evaluated under one binding: its loops, views and extents.
#[derive(Debug)]
pub(crate) struct ContractRun {
    prologue: Vec<LoopRun>,
    epilogue: Option<LoopRun>,
    a: ViewSpec,
    b: ViewSpec,
    out: ViewSpec,
    extents: Extents,
    /// The pre-packed operand of an `f32` matmul, kept between runs of this plan.
    packed: PackedB,
}

fn overflow(kernel: KernelId) -> CpuError {
    CpuError::Overflow(format!(
        "{kernel}: a contraction operand exceeds 64-bit addressing"
    ))
}

/// What [`ContractPlan::packed_matmul`] did.
enum Packed {
    /// Nothing: the matmul has no stable operand.
    No,
    /// The product; the epilogue loop (if any) is still to run.
    Done,
    /// The product and the epilogue.
    DoneWithEpilogue,
}

/// Most rows (of the operand that is not packed) for which a matmul with a stable operand
/// runs on the packed micro-kernels. Beyond it, `gemm`'s packed left operand and larger
/// tiles win although it packs both operands per call (2-core Zen 3, one thread: SimpleNN
/// batch 256, 256 rows, 716-741 µs on `gemm` against 1.0-1.2 ms packed; the LSTM's 64-row
/// steps 12% faster packed; see docs/benchmarks.md).
const PACKED_MAX_ROWS: usize = 128;

/// Micro-kernel row blocks per block of an unbatched packed matmul whose epilogue runs
/// per block.
const EPILOGUE_BLOCKS: usize = 8;

/// Flops below which a contraction runs on the calling thread.
const PARALLEL_FLOPS: u64 = 1 << 21;

impl ContractPlan {
    /// The generated loops: prologues, then the epilogue.
    pub(crate) fn loop_steps(&self) -> impl Iterator<Item = &LoopStep> {
        self.prologue.iter().chain(self.epilogue.iter())
    }

    /// The scratch buffers the contraction needs (dtype, element count), in slot order.
    pub(crate) fn scratch(&self) -> &[(DType, Dim)] {
        &self.scratch
    }

    /// The kernel it compiles.
    pub(crate) fn kernel(&self) -> KernelId {
        self.kernel
    }

    fn eval(&self, d: &Dim, b: &HashMap<String, u64>) -> Result<i64, CpuError> {
        eval_dim(d, b)
    }

    /// Evaluates an access, checking that every element of the domain lies inside its
    /// buffer (`lens[k]` is the element count of table entry `k`; scratch slot `s` is entry
    /// `base + s`).
    fn view(
        &self,
        acc: &Access,
        base: usize,
        lens: &[usize],
        b: &HashMap<String, u64>,
    ) -> Result<ViewSpec, CpuError> {
        let ext: Vec<i64> = acc
            .domain
            .iter()
            .map(|d| self.eval(d, b))
            .collect::<Result<_, _>>()?;
        let (at, offset, strides) = match &acc.place {
            Operand::Strided {
                buf,
                offset,
                strides,
            } => {
                let s: Vec<i64> = strides
                    .iter()
                    .map(|d| self.eval(d, b))
                    .collect::<Result<_, _>>()?;
                (buf.index(), self.eval(offset, b)?, s)
            }
            Operand::Scratch { slot } => {
                let mut s = vec![1i64; ext.len()];
                for k in (0..ext.len().saturating_sub(1)).rev() {
                    s[k] = s[k + 1]
                        .checked_mul(ext[k + 1].max(0))
                        .ok_or_else(|| overflow(self.kernel))?;
                }
                (base + slot, 0, s)
            }
        };
        let len = i128::try_from(*lens.get(at).ok_or_else(|| overflow(self.kernel))?)
            .map_err(|_| overflow(self.kernel))?;
        if ext.iter().all(|&e| e > 0) {
            let (mut lo, mut hi) = (i128::from(offset), i128::from(offset));
            for (e, s) in ext.iter().zip(&strides) {
                let span = i128::from(e - 1) * i128::from(*s);
                if span < 0 {
                    lo += span;
                } else {
                    hi += span;
                }
            }
            if lo < 0 || hi >= len {
                return Err(CpuError::Overflow(format!(
                    "{}: a contraction operand addresses elements {lo}..={hi} of a buffer of {len}",
                    self.kernel
                )));
            }
        }
        Ok(ViewSpec {
            at,
            offset,
            strides,
        })
    }

    /// Evaluates the contraction under `b`: its loops (program buffers are table entries
    /// `0..nb`, its scratch slots entries `base..`), its views (checked in bounds against
    /// `lens`) and its extents.
    pub(crate) fn bind(
        &self,
        nb: usize,
        base: usize,
        lens: &[usize],
        b: &HashMap<String, u64>,
    ) -> Result<ContractRun, CpuError> {
        let prologue = self
            .prologue
            .iter()
            .map(|p| LoopRun::new(p, nb, base, lens.len(), b))
            .collect::<Result<Vec<_>, _>>()?;
        let epilogue = self
            .epilogue
            .as_ref()
            .map(|e| LoopRun::new(e, nb, base, lens.len(), b))
            .transpose()?;
        let ev = |d: &Dim| self.eval(d, b).map(|v| v.max(0));
        let extents = match &self.kind {
            Kind::Matmul { batch, m, k, n } => Extents::Matmul {
                batch: batch.iter().map(ev).collect::<Result<_, _>>()?,
                m: ev(m)?,
                k: ev(k)?,
                n: ev(n)?,
            },
            Kind::Conv { kernel, oh, ow } => {
                let g = &kernel.geometry;
                Extents::Conv {
                    nchwo: [ev(&g.n)?, ev(&g.c)?, ev(&g.h)?, ev(&g.w)?, ev(&g.o)?],
                    oh: self.eval(oh, b)?,
                    ow: self.eval(ow, b)?,
                }
            }
        };
        Ok(ContractRun {
            prologue,
            epilogue,
            a: self.view(&self.a, base, lens, b)?,
            b: self.view(&self.b, base, lens, b)?,
            out: self.view(&self.out, base, lens, b)?,
            extents,
            packed: PackedB::default(),
        })
    }

    fn at<const R: usize>(&self, v: &ViewSpec, table: &[SyncPtr<u8>]) -> Result<View<R>, CpuError> {
        let strides: [i64; R] = v
            .strides
            .as_slice()
            .try_into()
            .map_err(|_| overflow(self.kernel))?;
        Ok(View {
            base: *table.get(v.at).ok_or_else(|| overflow(self.kernel))?,
            offset: v.offset,
            strides,
        })
    }

    /// Runs the prologue loops, the contraction and the epilogue loop. `stamps[k]` is the
    /// stamp of table entry `k` when its contents are stable while the stamp is the same
    /// (constants, read-only state): an `f32` matmul operand read from such a buffer is
    /// packed once and reused until the stamp changes.
    pub(crate) fn run(
        &self,
        cr: &mut ContractRun,
        table: &[SyncPtr<u8>],
        stamps: &[Option<u64>],
        threads: usize,
    ) -> Result<(), CpuError> {
        for (p, lr) in self.prologue.iter().zip(cr.prologue.iter_mut()) {
            run_loop(p, lr, table, threads)?;
        }
        match self.dtype {
            DType::F32 => match self.packed_matmul(cr, table, stamps, threads)? {
                Packed::No => self.contract::<f32>(cr, table, threads)?,
                Packed::Done => {}
                Packed::DoneWithEpilogue => return Ok(()),
            },
            DType::F64 => self.contract::<f64>(cr, table, threads)?,
            DType::I32 => self.contract::<i32>(cr, table, threads)?,
            DType::I64 => self.contract::<i64>(cr, table, threads)?,
            DType::U32 => self.contract::<u32>(cr, table, threads)?,
            DType::Bool => {
                return Err(CpuError::Unsupported {
                    kernel: self.kernel,
                    message: "bool contraction".into(),
                });
            }
        }
        if let (Some(e), Some(lr)) = (&self.epilogue, cr.epilogue.as_mut()) {
            run_loop(e, lr, table, threads)?;
        }
        Ok(())
    }

    /// An `f32` matmul with one operand stamped and shared by every batch element: packs
    /// that operand unless the kept packing holds it already, then multiplies with the
    /// packed micro-kernels. When the epilogue loop splits along the axis the tasks split
    /// (the rows of an unbatched product, the batch of a product with one batch axis), each
    /// task runs it on the block it just computed, while that block is in cache.
    fn packed_matmul(
        &self,
        cr: &mut ContractRun,
        table: &[SyncPtr<u8>],
        stamps: &[Option<u64>],
        threads: usize,
    ) -> Result<Packed, CpuError> {
        let Extents::Matmul { batch, m, k, n } = &cr.extents else {
            return Ok(Packed::No);
        };
        let (m, k, n) = (*m as usize, *k as usize, *n as usize);
        let stamp = |v: &ViewSpec| {
            let shared = v.strides[..v.strides.len().saturating_sub(2)]
                .iter()
                .all(|&s| s == 0);
            stamps.get(v.at).copied().flatten().filter(|_| shared)
        };
        // C = A B, or with A the stable operand, C^T = B^T A^T.
        let (packs_a, stamp) = match (stamp(&cr.b), stamp(&cr.a)) {
            (Some(s), _) => (false, s),
            (None, Some(s)) => (true, s),
            (None, None) => return Ok(Packed::No),
        };
        let r = cr.out.strides.len();
        if m == 0 || n == 0 {
            return Ok(Packed::Done);
        }
        let base = |v: &ViewSpec| -> Result<*mut f32, CpuError> {
            let b = table.get(v.at).ok_or_else(|| overflow(self.kernel))?;
            Ok(b.get().cast::<f32>().wrapping_offset(v.offset as isize))
        };
        let st = |v: &ViewSpec, ax: usize| v.strides[ax] as isize;
        let (a, b, out) = (&cr.a, &cr.b, &cr.out);
        // (packed operand, its [k, cols] strides, other operand, its [rows, k] strides,
        // output strides [rows, cols]) of the problem the kernels solve.
        let (src, src_rs, src_cs, rows, cols) = if packs_a {
            (base(a)?, st(a, r - 1), st(a, r - 2), n, m)
        } else {
            (base(b)?, st(b, r - 2), st(b, r - 1), m, n)
        };
        let (lhs_view, lhs_rs, lhs_cs, dst_rs, dst_cs) = if packs_a {
            (
                b,
                st(b, r - 1),
                st(b, r - 2),
                st(out, r - 1),
                st(out, r - 2),
            )
        } else {
            (
                a,
                st(a, r - 2),
                st(a, r - 1),
                st(out, r - 2),
                st(out, r - 1),
            )
        };
        if rows > PACKED_MAX_ROWS {
            return Ok(Packed::No);
        }
        let key = src as usize;
        if !cr.packed.holds(k, cols, key, stamp) {
            // SAFETY: `view` checked every element of the operand's domain in bounds; its
            // batch strides are zero, so batch element 0's [k, cols] matrix is all of it.
            unsafe {
                cr.packed
                    .pack(k, cols, src, src_rs, src_cs, Some((key, stamp)))
            };
        }
        let lhs0 = base(lhs_view)?;
        let out0 = base(out)?;
        let count = batch
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
            .ok_or_else(|| overflow(self.kernel))?;
        let flops = (count as u64)
            .saturating_mul(m as u64)
            .saturating_mul(n as u64)
            .saturating_mul(k.max(1) as u64);
        let panels = cols.div_ceil(packed::NR);
        let nb = batch.len();
        let block = packed::row_block();
        let parts = if flops < PARALLEL_FLOPS || threads < 2 || count >= threads * 2 {
            1
        } else {
            threads.div_ceil(count).min(panels.max(rows / block)).max(1)
        };
        let epilogue = match (&self.epilogue, cr.epilogue.as_mut()) {
            (Some(step), Some(lr)) => {
                let ranged = lr.ranged(step, table);
                let along = match nb {
                    0 => !packs_a,
                    1 => parts == 1,
                    _ => false,
                };
                Some((ranged, along))
            }
            _ => None,
        };
        let fused = epilogue
            .as_ref()
            .is_some_and(|(e, along)| *along && e.split_axis() == Some(0));
        // Split the panels when there are enough (each thread then reads only its share of
        // the packed matrix) and no epilogue runs per block of rows; else the rows.
        let by_panels = !fused && (panels >= parts * 2 || panels >= rows / block);
        let packed = &cr.packed;
        let ep = epilogue.as_ref().map(|(e, _)| e).filter(|_| fused);
        let (lhs0, out0) = (SyncPtr(lhs0), SyncPtr(out0));
        let task = |t: usize| {
            let (bi, part) = (t / parts, t % parts);
            let mut rest = bi as i64;
            let (mut lo, mut oo) = (0isize, 0isize);
            for ax in (0..nb).rev() {
                let c = rest % batch[ax];
                rest /= batch[ax];
                lo += (c * lhs_view.strides[ax]) as isize;
                oo += (c * out.strides[ax]) as isize;
            }
            let split = |len: usize| (len * part / parts)..(len * (part + 1) / parts);
            let (rr, pr) = if by_panels {
                (0..rows, split(panels))
            } else {
                let b = split(rows.div_ceil(block));
                let at = |x: usize| (x * block).min(rows);
                (at(b.start)..at(b.end), 0..panels)
            };
            // Unbatched with the epilogue fused: blocks of rows small enough that their
            // output is still in L1/L2 when the epilogue reads it.
            let step = if ep.is_some() && nb == 0 {
                EPILOGUE_BLOCKS * block
            } else {
                rr.len().max(1)
            };
            let mut r0 = rr.start;
            while r0 < rr.end {
                let r1 = (r0 + step).min(rr.end);
                // SAFETY: `view` checked every element of each operand's and the output's
                // domain in its buffer; this addresses batch element `bi`'s rows `r0..r1`
                // and the columns of panels `pr`. Tasks write disjoint output blocks, which
                // the operands do not read (kernel IR contract).
                unsafe {
                    packed.gemm(
                        r0..r1,
                        pr.clone(),
                        out0.get().wrapping_offset(oo),
                        dst_rs,
                        dst_cs,
                        lhs0.get().wrapping_offset(lo).cast_const(),
                        lhs_rs,
                        lhs_cs,
                    )
                };
                if let Some(e) = ep {
                    // The epilogue's axis 0 is the rows (unbatched) or the batch element.
                    if nb == 0 {
                        e.run(r0 as i64, r1 as i64);
                    } else {
                        e.run(bi as i64, bi as i64 + 1);
                    }
                }
                r0 = r1;
            }
        };
        self.spread(count * parts, threads, &task)?;
        match epilogue {
            Some((e, _)) if fused => {
                e.finish()?;
                Ok(Packed::DoneWithEpilogue)
            }
            _ => Ok(Packed::Done),
        }
    }

    fn contract<T: Elem>(
        &self,
        cr: &ContractRun,
        table: &[SyncPtr<u8>],
        threads: usize,
    ) -> Result<(), CpuError> {
        match (&self.kind, &cr.extents) {
            (Kind::Matmul { .. }, Extents::Matmul { batch, m, k, n }) => {
                let mkn = [*m, *k, *n];
                match batch.len() {
                    0 => self.matmul::<T, 2>(batch, mkn, cr, table, threads),
                    1 => self.matmul::<T, 3>(batch, mkn, cr, table, threads),
                    2 => self.matmul::<T, 4>(batch, mkn, cr, table, threads),
                    3 => self.matmul::<T, 5>(batch, mkn, cr, table, threads),
                    4 => self.matmul::<T, 6>(batch, mkn, cr, table, threads),
                    5 => self.matmul::<T, 7>(batch, mkn, cr, table, threads),
                    6 => self.matmul::<T, 8>(batch, mkn, cr, table, threads),
                    _ => Err(CpuError::Unsupported {
                        kernel: self.kernel,
                        message: "matmul with more than 6 batch axes".into(),
                    }),
                }
            }
            (Kind::Conv { kernel, .. }, Extents::Conv { nchwo, oh, ow }) => {
                self.conv::<T>(kernel, *nchwo, [*oh, *ow], cr, table, threads)
            }
            _ => Err(CpuError::Codegen {
                kernel: self.kernel,
                message: "internal: contraction extents do not match its kind".into(),
            }),
        }
    }

    fn matmul<T: Elem, const R: usize>(
        &self,
        batch: &[i64],
        [m, k, n]: [i64; 3],
        cr: &ContractRun,
        table: &[SyncPtr<u8>],
        threads: usize,
    ) -> Result<(), CpuError> {
        let a = self.at::<R>(&cr.a, table)?;
        let bv = self.at::<R>(&cr.b, table)?;
        let out = self.at::<R>(&cr.out, table)?;
        let count = batch
            .iter()
            .try_fold(1i64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| overflow(self.kernel))?;
        if count == 0 || m == 0 || n == 0 {
            return Ok(());
        }
        let flops = (count as u64)
            .saturating_mul(m as u64)
            .saturating_mul(n as u64)
            .saturating_mul(k.max(1) as u64);
        let threads = threads as i64;
        // One part per thread: every part packs the shared operand again, so more parts
        // than threads only add packing (SimpleNN b256: 4 parts 135 µs, 2 parts 118 µs).
        let parts = if flops < PARALLEL_FLOPS || threads < 2 || count >= threads * 2 {
            1
        } else {
            ((threads + count - 1) / count).clamp(1, m.max(n) / 16 + 1)
        };
        let split_rows = m >= n;
        let len = if split_rows { m } else { n };
        let tasks = usize::try_from(
            count
                .checked_mul(parts)
                .ok_or_else(|| overflow(self.kernel))?,
        )
        .map_err(|_| overflow(self.kernel))?;
        let task = |t: usize| {
            let t = t as i64;
            let (bi, part) = (t / parts, t % parts);
            let at = |p: i64| (i128::from(len) * i128::from(p) / i128::from(parts)) as i64;
            let (p0, p1) = (at(part), at(part + 1));
            if p0 >= p1 {
                return;
            }
            let mut coords = [0i64; R];
            let mut rest = bi;
            for ax in (0..batch.len()).rev() {
                coords[ax] = rest % batch[ax];
                rest /= batch[ax];
            }
            let (r0, c0) = if split_rows { (p0, 0) } else { (0, p0) };
            let (rows, cols) = if split_rows {
                (p1 - p0, n)
            } else {
                (m, p1 - p0)
            };
            let mut ca = coords;
            ca[R - 2] = r0;
            let mut cb = coords;
            cb[R - 1] = c0;
            let mut co = coords;
            co[R - 2] = r0;
            co[R - 1] = c0;
            // SAFETY: `view` checked that every element of each operand's and the output's
            // domain lies in its buffer; this block addresses a sub-range of those domains.
            // Tasks write disjoint row or column blocks of the output, whose buffer is not
            // read by the operands (kernel IR contract); scratch outputs are private.
            unsafe {
                T::gemm(
                    rows as usize,
                    cols as usize,
                    k as usize,
                    out.at::<T>(co),
                    out.strides[R - 2] as isize,
                    out.strides[R - 1] as isize,
                    a.at::<T>(ca),
                    a.strides[R - 2] as isize,
                    a.strides[R - 1] as isize,
                    bv.at::<T>(cb),
                    bv.strides[R - 2] as isize,
                    bv.strides[R - 1] as isize,
                )
            };
        };
        self.spread(tasks, threads as usize, &task)
    }

    fn spread(
        &self,
        tasks: usize,
        threads: usize,
        task: &(dyn Fn(usize) + Sync),
    ) -> Result<(), CpuError> {
        if tasks <= 1 || threads <= 1 {
            (0..tasks).for_each(task);
            return Ok(());
        }
        pool::global()
            .run(tasks, task)
            .map_err(|_| CpuError::WorkerPanic {
                kernel: self.kernel,
            })
    }

    fn conv<T: Elem>(
        &self,
        ck: &Conv2dKernel,
        [n, c, h, w, o]: [i64; 5],
        [oh, ow]: [i64; 2],
        cr: &ContractRun,
        table: &[SyncPtr<u8>],
        threads: usize,
    ) -> Result<(), CpuError> {
        let g = &ck.geometry;
        let to_i = |x: u64| i64::try_from(x).map_err(|_| overflow(self.kernel));
        let groups = to_i(g.groups)?.max(1);
        let (cg, og) = (c / groups, o / groups);
        let (kh, kw) = (to_i(g.kernel[0])?, to_i(g.kernel[1])?);
        let (sh, sw) = (to_i(g.stride[0])?, to_i(g.stride[1])?);
        let (ph, pw) = (to_i(g.padding[0])?, to_i(g.padding[1])?);
        let (dh, dw) = (to_i(g.dilation[0])?, to_i(g.dilation[1])?);
        if sh < 1 || sw < 1 {
            return Err(CpuError::Codegen {
                kernel: self.kernel,
                message: format!("conv2d stride [{sh}, {sw}]: strides must be at least 1"),
            });
        }
        let x = self.at::<4>(&cr.a, table)?;
        let wt = self.at::<4>(&cr.b, table)?;
        let out = self.at::<4>(&cr.out, table)?;
        let plane = oh.checked_mul(ow).ok_or_else(|| overflow(self.kernel))?;
        if n == 0 || o == 0 || plane <= 0 {
            return Ok(());
        }
        let kk = cg
            .checked_mul(kh)
            .and_then(|v| v.checked_mul(kw))
            .ok_or_else(|| overflow(self.kernel))?;
        let pointwise = kh == 1
            && kw == 1
            && sh == 1
            && sw == 1
            && ph == 0
            && pw == 0
            && (h == 1 || x.strides[3].checked_mul(w) == Some(x.strides[2]));
        let elem = std::mem::size_of::<T>() as i64;
        let block = if pointwise {
            plane
        } else {
            ((256 * 1024) / kk.max(1).saturating_mul(elem)).clamp(64, plane.max(64))
        };
        let blocks = (plane - 1) / block + 1;
        let flops = (n as u64)
            .saturating_mul(o as u64)
            .saturating_mul(plane as u64)
            .saturating_mul(kk.max(1) as u64);
        let threads = threads as i64;
        let per = n
            .checked_mul(groups)
            .and_then(|v| v.checked_mul(blocks))
            .ok_or_else(|| overflow(self.kernel))?;
        // Splitting a task over output channels repeats its im2col: only worth it when each
        // part keeps enough channels to amortise the copy.
        let max_split = if pointwise {
            og.max(1)
        } else {
            (og / 8).max(1)
        };
        let split = if flops < PARALLEL_FLOPS || threads < 2 || per >= threads * 2 {
            1
        } else {
            ((threads * 2 + per - 1) / per).min(max_split)
        };
        let tasks =
            usize::try_from(per.saturating_mul(split)).map_err(|_| overflow(self.kernel))?;
        let task = |t: usize| {
            let t = t as i64;
            let (rest, part) = (t / split, t % split);
            let blk = rest % blocks;
            let rest = rest / blocks;
            let (gi, ni) = (rest % groups, rest / groups);
            let (o0, o1) = (og * part / split, og * (part + 1) / split);
            let (p0, p1) = (blk * block, ((blk + 1) * block).min(plane));
            if o0 >= o1 || p0 >= p1 {
                return;
            }
            let cols = p1 - p0;
            let dst = out
                .at::<T>([ni, gi * og + o0, 0, 0])
                .wrapping_offset((p0 * out.strides[3]) as isize);
            let lhs = wt.at::<T>([gi * og + o0, 0, 0, 0]).cast_const();
            // The im2col block lives in a per-thread buffer reused across runs: a fresh
            // allocation would page-fault its first touch on every run.
            T::with_col(|col| {
                let (rhs, rhs_rs, rhs_cs) = if pointwise {
                    let p = x
                        .at::<T>([ni, gi * cg, 0, 0])
                        .wrapping_offset((p0 * x.strides[3]) as isize);
                    (p.cast_const(), x.strides[1], x.strides[3])
                } else {
                    col.resize((kk * cols) as usize, T::ZERO);
                    let geo = im2col::Geometry {
                        h,
                        w,
                        kh,
                        kw,
                        sh,
                        sw,
                        ph,
                        pw,
                        dh,
                        dw,
                        ow,
                    };
                    let strides = im2col::Strides {
                        c: x.strides[1],
                        h: x.strides[2],
                        w: x.strides[3],
                    };
                    let layout = im2col::Layout::for_geometry(&geo);
                    // SAFETY: `x.at([ni, gi*cg, 0, 0])` is channel 0 of this group's input plane;
                    // `view` checked every element of the input's domain (channels gi*cg.., rows
                    // < h, columns < w) in bounds; `col` holds kk * cols elements; 0 <= p0 < p1,
                    // and the strides/output width are positive (ow >= 1 since plane > 0).
                    unsafe {
                        im2col::fill(
                            &mut col[..],
                            T::ZERO,
                            x.at::<T>([ni, gi * cg, 0, 0]).cast_const(),
                            strides,
                            cg,
                            &geo,
                            layout,
                            p0,
                            p1,
                        )
                    };
                    let (rs, cs) = layout.strides(kk, cols);
                    (col.as_ptr(), rs, cs)
                };
                // SAFETY: the weight rows [gi*og+o0, gi*og+o1) with their collapsed
                // (c/groups, kh, kw) axis, the input columns (or the task's private im2col block)
                // and the output block [ni, gi*og+o0.., p0..p1] are inside domains `view` checked;
                // tasks write disjoint output blocks, which the operands do not read.
                unsafe {
                    T::gemm(
                        (o1 - o0) as usize,
                        cols as usize,
                        kk as usize,
                        dst,
                        out.strides[1] as isize,
                        out.strides[3] as isize,
                        lhs,
                        wt.strides[0] as isize,
                        wt.strides[3] as isize,
                        rhs,
                        rhs_rs as isize,
                        rhs_cs as isize,
                    )
                };
            });
        };
        self.spread(tasks, threads as usize, &task)
    }
}
