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
use crate::pool;
use crate::preflight::eval_dim;
use crate::program::{LoopStep, PendingLoop, SyncPtr, pending_loop, run_loop};
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
    let pk = crate::program::pending_loop(
        program,
        kernel,
        &LoopKernel {
            domain: Vec::new(),
            reduce: Vec::new(),
            body: Body {
                values: body.values.clone(),
                stores: Vec::new(),
                result: None,
            },
        },
        &[],
    )?;
    let dts = crate::codegen::node_dtypes(&pk.job)
        .map_err(|message| CpuError::Unsupported { kernel, message })?;
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
                if k == 0 {
                    for i in 0..m {
                        for j in 0..n {
                            // SAFETY: (i, j) is in the destination (caller's contract).
                            unsafe {
                                *dst.wrapping_offset(i as isize * dst_rs + j as isize * dst_cs) =
                                    0.0
                            };
                        }
                    }
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

macro_rules! int_elem {
    ($t:ty) => {
        impl Elem for $t {
            const ZERO: Self = 0;
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

fn overflow(kernel: KernelId) -> CpuError {
    CpuError::Overflow(format!(
        "{kernel}: a contraction operand exceeds 64-bit addressing"
    ))
}

fn zeros(dtype: DType, len: usize) -> Option<kiln_ir::Data> {
    fn make<T: Clone>(len: usize, z: T) -> Option<Vec<T>> {
        let mut v = Vec::new();
        v.try_reserve_exact(len).ok()?;
        v.resize(len, z);
        Some(v)
    }
    use kiln_ir::Data;
    Some(match dtype {
        DType::F32 => Data::F32(make(len, 0.0)?),
        DType::F64 => Data::F64(make(len, 0.0)?),
        DType::I32 => Data::I32(make(len, 0)?),
        DType::I64 => Data::I64(make(len, 0)?),
        DType::U32 => Data::U32(make(len, 0)?),
        DType::Bool => Data::Bool(make(len, false)?),
    })
}

fn data_ptr(d: &mut kiln_ir::Data) -> *mut u8 {
    use kiln_ir::Data;
    match d {
        Data::F32(v) => v.as_mut_ptr().cast(),
        Data::F64(v) => v.as_mut_ptr().cast(),
        Data::I32(v) => v.as_mut_ptr().cast(),
        Data::I64(v) => v.as_mut_ptr().cast(),
        Data::U32(v) => v.as_mut_ptr().cast(),
        Data::Bool(v) => v.as_mut_ptr().cast(),
    }
}

/// Flops below which a contraction runs on the calling thread.
const PARALLEL_FLOPS: u64 = 1 << 21;

impl ContractPlan {
    /// The generated loops: prologues, then the epilogue.
    pub(crate) fn loop_steps(&self) -> impl Iterator<Item = &LoopStep> {
        self.prologue.iter().chain(self.epilogue.iter())
    }

    fn eval(&self, d: &Dim, b: &HashMap<String, u64>) -> Result<i64, CpuError> {
        eval_dim(d, b)
    }

    /// Evaluates an access to a view of rank `R`, checking that every element of the
    /// domain lies inside its buffer (`lens[k]` is the element count of buffer `k`).
    fn view<const R: usize>(
        &self,
        acc: &Access,
        ptrs: &[*mut u8],
        lens: &[i64],
        b: &HashMap<String, u64>,
    ) -> Result<View<R>, CpuError> {
        let nb = lens.len() - self.scratch.len();
        let ext: Vec<i64> = acc
            .domain
            .iter()
            .map(|d| self.eval(d, b))
            .collect::<Result<_, _>>()?;
        let (id, offset, strides) = match &acc.place {
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
                (nb + slot, 0, s)
            }
        };
        let strides: [i64; R] = strides.try_into().map_err(|_| overflow(self.kernel))?;
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
            let len = i128::from(lens.get(id).copied().unwrap_or(0));
            if lo < 0 || hi >= len {
                return Err(CpuError::Overflow(format!(
                    "{}: a contraction operand addresses elements {lo}..={hi} of a buffer of {len}",
                    self.kernel
                )));
            }
        }
        let base = *ptrs.get(id).ok_or_else(|| overflow(self.kernel))?;
        Ok(View {
            base: SyncPtr(base),
            offset,
            strides,
        })
    }

    /// Runs the prologue loops, the contraction and the epilogue loop.
    pub(crate) fn run(
        &self,
        program: &Program,
        ptrs: &[*mut u8],
        b: &HashMap<String, u64>,
        threads: usize,
    ) -> Result<(), CpuError> {
        let mut store = Vec::with_capacity(self.scratch.len());
        let mut lens: Vec<i64> = program
            .buffers
            .iter()
            .map(|buf| self.eval(&buf.size, b).map(|v| v.max(0)))
            .collect::<Result<_, _>>()?;
        for (dt, size) in &self.scratch {
            let n = self.eval(size, b)?.max(0);
            let len = usize::try_from(n).map_err(|_| overflow(self.kernel))?;
            store.push(zeros(*dt, len).ok_or_else(|| {
                CpuError::Overflow(format!("{}: scratch of {len} elements", self.kernel))
            })?);
            lens.push(n);
        }
        let mut all = ptrs.to_vec();
        all.extend(store.iter_mut().map(data_ptr));
        for p in &self.prologue {
            run_loop(p, &all, b, threads)?;
        }
        match self.dtype {
            DType::F32 => self.contract::<f32>(&all, &lens, b, threads)?,
            DType::F64 => self.contract::<f64>(&all, &lens, b, threads)?,
            DType::I32 => self.contract::<i32>(&all, &lens, b, threads)?,
            DType::I64 => self.contract::<i64>(&all, &lens, b, threads)?,
            DType::U32 => self.contract::<u32>(&all, &lens, b, threads)?,
            DType::Bool => {
                return Err(CpuError::Unsupported {
                    kernel: self.kernel,
                    message: "bool contraction".into(),
                });
            }
        }
        if let Some(e) = &self.epilogue {
            run_loop(e, &all, b, threads)?;
        }
        drop(store);
        Ok(())
    }

    fn contract<T: Elem>(
        &self,
        ptrs: &[*mut u8],
        lens: &[i64],
        b: &HashMap<String, u64>,
        threads: usize,
    ) -> Result<(), CpuError> {
        match &self.kind {
            Kind::Matmul { batch, m, k, n } => {
                let ev = |d: &Dim| self.eval(d, b).map(|v| v.max(0));
                let be: Vec<i64> = batch.iter().map(ev).collect::<Result<_, _>>()?;
                let (m, k, n) = (ev(m)?, ev(k)?, ev(n)?);
                match batch.len() {
                    0 => self.matmul::<T, 2>(&be, [m, k, n], ptrs, lens, b, threads),
                    1 => self.matmul::<T, 3>(&be, [m, k, n], ptrs, lens, b, threads),
                    2 => self.matmul::<T, 4>(&be, [m, k, n], ptrs, lens, b, threads),
                    3 => self.matmul::<T, 5>(&be, [m, k, n], ptrs, lens, b, threads),
                    4 => self.matmul::<T, 6>(&be, [m, k, n], ptrs, lens, b, threads),
                    _ => Err(CpuError::Unsupported {
                        kernel: self.kernel,
                        message: "matmul with more than 4 batch axes".into(),
                    }),
                }
            }
            Kind::Conv { kernel, oh, ow } => {
                let (oh, ow) = (self.eval(oh, b)?, self.eval(ow, b)?);
                self.conv::<T>(kernel, [oh, ow], ptrs, lens, b, threads)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn matmul<T: Elem, const R: usize>(
        &self,
        batch: &[i64],
        [m, k, n]: [i64; 3],
        ptrs: &[*mut u8],
        lens: &[i64],
        b: &HashMap<String, u64>,
        threads: usize,
    ) -> Result<(), CpuError> {
        let a = self.view::<R>(&self.a, ptrs, lens, b)?;
        let bv = self.view::<R>(&self.b, ptrs, lens, b)?;
        let out = self.view::<R>(&self.out, ptrs, lens, b)?;
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
        let parts = if flops < PARALLEL_FLOPS || threads < 2 || count >= threads * 2 {
            1
        } else {
            ((threads * 2 + count - 1) / count).clamp(1, m.max(n) / 16 + 1)
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
        [oh, ow]: [i64; 2],
        ptrs: &[*mut u8],
        lens: &[i64],
        b: &HashMap<String, u64>,
        threads: usize,
    ) -> Result<(), CpuError> {
        let g = &ck.geometry;
        let ev = |d: &Dim| self.eval(d, b).map(|v| v.max(0));
        let (n, c, h, w, o) = (ev(&g.n)?, ev(&g.c)?, ev(&g.h)?, ev(&g.w)?, ev(&g.o)?);
        let to_i = |x: u64| i64::try_from(x).map_err(|_| overflow(self.kernel));
        let groups = to_i(g.groups)?.max(1);
        let (cg, og) = (c / groups, o / groups);
        let (kh, kw) = (to_i(g.kernel[0])?, to_i(g.kernel[1])?);
        let (sh, sw) = (to_i(g.stride[0])?, to_i(g.stride[1])?);
        let (ph, pw) = (to_i(g.padding[0])?, to_i(g.padding[1])?);
        let (dh, dw) = (to_i(g.dilation[0])?, to_i(g.dilation[1])?);
        let x = self.view::<4>(&self.a, ptrs, lens, b)?;
        let wt = self.view::<4>(&self.b, ptrs, lens, b)?;
        let out = self.view::<4>(&self.out, ptrs, lens, b)?;
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
        let split = if flops < PARALLEL_FLOPS || threads < 2 || per >= threads * 2 {
            1
        } else {
            ((threads * 2 + per - 1) / per).min(og.max(1))
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
            let mut col: Vec<T> = Vec::new();
            let (rhs, rhs_rs, rhs_cs) = if pointwise {
                let p = x
                    .at::<T>([ni, gi * cg, 0, 0])
                    .wrapping_offset((p0 * x.strides[3]) as isize);
                (p.cast_const(), x.strides[1], x.strides[3])
            } else {
                col.resize((kk * cols) as usize, T::ZERO);
                let mut row = 0usize;
                for ci in 0..cg {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let dst_row = &mut col[row * cols as usize..(row + 1) * cols as usize];
                            row += 1;
                            for (slot, p) in dst_row.iter_mut().zip(p0..p1) {
                                let (oy, ox) = (p / ow, p % ow);
                                let iy = oy
                                    .wrapping_mul(sh)
                                    .wrapping_add(ky.wrapping_mul(dh))
                                    .wrapping_sub(ph);
                                let ix = ox
                                    .wrapping_mul(sw)
                                    .wrapping_add(kx.wrapping_mul(dw))
                                    .wrapping_sub(pw);
                                if iy >= 0 && iy < h && ix >= 0 && ix < w {
                                    // SAFETY: (ni, gi*cg+ci, iy, ix) is inside the input's
                                    // domain, whose elements `view` checked in bounds.
                                    *slot = unsafe { *x.at::<T>([ni, gi * cg + ci, iy, ix]) };
                                }
                            }
                        }
                    }
                }
                (col.as_ptr(), cols, 1)
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
        };
        self.spread(tasks, threads as usize, &task)
    }
}
