//! Tiles for the wide kernels ([`crate::vecmath`]): a vectorised innermost domain loop whose
//! body has `f32` transcendentals with a wide kernel runs over tiles of [`TILE`] points (or
//! of a shorter power of two, see [`tile_len`]) in
//! passes. Pass 0 evaluates the operands of the first transcendentals and stores them to a
//! stack buffer per node; the wide kernel then runs in place over each buffer; the next
//! pass loads those results as the nodes' values, and so on; the last pass evaluates the
//! rest of the body and the stores. Cheap nodes needed by several
//! passes (loads, arithmetic) are recomputed, never stored. The points after the last
//! whole tile run the ordinary vector loop and scalar tail with inline math, which gives
//! the same bits.
//!
//! Reduce-mode loops are not tiled: tiling the `exp` of a softmax row's sum measured slower
//! than the inline code (docs/benchmarks.md, 2026-12-07). A transcendental whose values
//! the hoisted loop keeps runs instead as one wide call over the kept row before the
//! reduction loop (`kept::RowWide`).

use super::analysis::VarRef;
use super::error::CodegenError;
use super::{Cg, Env, PointValue};
use crate::vecmath;
use cranelift_codegen::ir::{
    AbiParam, InstBuilder, MemFlagsData, StackSlot, StackSlotData, StackSlotKind, Value, types,
};
use cranelift_module::{Linkage, Module};
use kiln_ir::DType;
use kiln_kernel::Expr;

/// Points per tile (2 KiB of `f32` per buffer).
pub(super) const TILE: i64 = 512;
/// The shortest tile: an innermost axis of known extent below [`TILE`] runs tiles of the
/// largest power of two that fits it (an LSTM gate kernel's `[B, 128]` rows), from this
/// length up; a call per 64 points still costs little beside them.
const MIN_TILE: i64 = 64;

/// The tile length for an innermost axis of extent `extent` (`None`: symbolic), or `None`
/// when the axis is too short to tile.
pub(super) fn tile_len(extent: Option<i64>) -> Option<i64> {
    match extent {
        None => Some(TILE),
        Some(e) if e >= TILE => Some(TILE),
        Some(e) if e >= MIN_TILE => Some(1 << (63 - e.leading_zeros())),
        Some(_) => None,
    }
}
/// The most wide nodes a kernel tiles (their buffers live on the stack).
const MAX_WIDE: usize = 8;

/// The passes of a tiled loop.
#[derive(Clone, Debug)]
pub(super) struct Tiles {
    /// Per node: the wide kernel's op code and the node's tile buffer.
    wide: Vec<Option<(u32, StackSlot)>>,
    /// Per node: the first pass in which its value is available.
    level: Vec<usize>,
    /// `needed[p][i]`: pass `p` evaluates node `i`.
    needed: Vec<Vec<bool>>,
    /// Points per tile (a power of two, at most [`TILE`]).
    pub(super) len: i64,
}

impl Tiles {
    /// The number of passes.
    pub(super) fn passes(&self) -> usize {
        self.needed.len()
    }

    /// Whether node `i` is evaluated in pass `p` (wide nodes are loaded instead).
    pub(super) fn evaluates(&self, p: usize, i: usize) -> bool {
        self.needed[p][i] && self.wide[i].is_none()
    }

    /// Whether node `i` is a wide node whose value pass `p` loads from its buffer.
    fn loads(&self, p: usize, i: usize) -> bool {
        self.wide[i].is_some() && self.level[i] <= p && self.needed[p][i]
    }

    /// Whether `p` is the last pass.
    pub(super) fn is_last(&self, p: usize) -> bool {
        p + 1 == self.passes()
    }
}

impl Cg<'_, '_> {
    /// Plans the passes of a tiled loop over the vectorised variable `var`: `eval` marks the
    /// nodes the loop body evaluates at a point, `sinks` the values it stores. `None` when no node has a wide kernel, the host has
    /// none, or the plan would not pay.
    pub(super) fn plan_tiles(
        &mut self,
        var: VarRef,
        eval: &[bool],
        sinks: &[usize],
        len: i64,
    ) -> Option<Tiles> {
        if !self.wide_available() {
            return None;
        }
        let plan = self.plans.iter().find(|p| p.var == var)?;
        if plan.lanes != 4 {
            return None;
        }
        let body = &self.job.kernel.body.values;
        let n = body.len();
        let deps = &self.phases.deps;
        let is_wide = |i: usize| -> Option<u32> {
            let Expr::Unary(op, a) = &body[i] else {
                return None;
            };
            let vec = |j: usize| plan.vector.get(j).copied().unwrap_or(false);
            (eval[i]
                && vec(i)
                && vec(a.index())
                && eval[a.index()]
                && self.dtypes[i] == DType::F32
                && self.dtypes[a.index()] == DType::F32)
                .then_some(())
                .and_then(|()| vecmath::wide_code(*op))
        };
        let codes: Vec<Option<u32>> = (0..n).map(is_wide).collect();
        let count = codes.iter().flatten().count();
        if count == 0 || count > MAX_WIDE {
            return None;
        }
        let mut level = vec![0usize; n];
        for i in 0..n {
            let from = deps[i].iter().map(|&d| level[d]).max().unwrap_or(0);
            level[i] = from + usize::from(codes[i].is_some());
        }
        let passes = level.iter().copied().max().unwrap_or(0) + 1;
        // Nodes needed by each pass: walk back from its consumers, stopping at wide nodes
        // (their values are loaded) and at nodes the body does not evaluate (known).
        let mut needed = vec![vec![false; n]; passes];
        for (p, need) in needed.iter_mut().enumerate() {
            let mut stack: Vec<usize> = if p + 1 == passes {
                sinks.to_vec()
            } else {
                (0..n)
                    .filter(|&w| codes[w].is_some() && level[w] == p + 1)
                    .filter_map(|w| deps[w].first().copied())
                    .collect()
            };
            while let Some(i) = stack.pop() {
                if i >= n || need[i] || !eval[i] {
                    continue;
                }
                need[i] = true;
                if codes[i].is_none() {
                    stack.extend(deps[i].iter().copied());
                }
            }
        }
        let wide = codes
            .iter()
            .map(|c| {
                c.map(|code| {
                    let slot = self.b.create_sized_stack_slot(StackSlotData::new(
                        StackSlotKind::ExplicitSlot,
                        (TILE * 4) as u32,
                        6,
                    ));
                    (code, slot)
                })
            })
            .collect();
        Some(Tiles {
            wide,
            level,
            needed,
            len,
        })
    }

    /// The address of point `off` (points from the tile start) of a tile buffer.
    fn tile_address(&mut self, slot: StackSlot, off: Value) -> Value {
        let base = self.b.ins().stack_addr(types::I64, slot, 0);
        let bytes = self.b.ins().ishl_imm_s(off, 2);
        self.b.ins().iadd(base, bytes)
    }

    /// Loads, in pass `p` at point `off` of the tile, the wide nodes whose results are
    /// ready.
    pub(super) fn load_wide(
        &mut self,
        t: &Tiles,
        p: usize,
        off: Value,
        env: &mut Env,
    ) -> Result<(), CodegenError> {
        let lanes = env
            .vec
            .ok_or(CodegenError::Internal("tile pass without vector context"))?
            .lanes;
        for i in 0..t.wide.len() {
            if let (true, Some((_, slot))) = (t.loads(p, i), t.wide[i]) {
                let addr = self.tile_address(slot, off);
                let ty = super::types::vector_type(DType::F32, lanes);
                let v = self
                    .b
                    .ins()
                    .load(ty, MemFlagsData::new().with_notrap(), addr, 0);
                env.vals[i] = Some(PointValue::Vector(v));
            }
        }
        Ok(())
    }

    /// At the end of pass `p` (not the last) at point `off`: stores the operands of the
    /// wide nodes the next pass computes.
    pub(super) fn store_wide_operands(
        &mut self,
        t: &Tiles,
        p: usize,
        off: Value,
        env: &Env,
    ) -> Result<(), CodegenError> {
        for i in 0..t.wide.len() {
            let Some((_, slot)) = t.wide[i] else { continue };
            if t.level[i] != p + 1 {
                continue;
            }
            let a = self.phases.deps[i]
                .first()
                .copied()
                .ok_or(CodegenError::Internal("wide node without operand"))?;
            let Some(PointValue::Vector(x)) = env.vals[a] else {
                return Err(CodegenError::Internal("wide operand not a vector"));
            };
            let addr = self.tile_address(slot, off);
            self.b
                .ins()
                .store(MemFlagsData::new().with_notrap(), x, addr, 0);
        }
        Ok(())
    }

    /// After pass `p` (not the last): runs the wide kernel of every node the next pass
    /// loads, in place over its whole tile buffer.
    pub(super) fn run_wide(&mut self, t: &Tiles, p: usize) -> Result<(), CodegenError> {
        let callee = self.wide_unary_ref()?;
        let n = self.b.ins().iconst(types::I64, t.len);
        for i in 0..t.wide.len() {
            let Some((code, slot)) = t.wide[i] else {
                continue;
            };
            if t.level[i] != p + 1 {
                continue;
            }
            let code = self.b.ins().iconst(types::I32, i64::from(code));
            let base = self.b.ins().stack_addr(types::I64, slot, 0);
            self.b.ins().call(callee, &[code, base, n]);
        }
        Ok(())
    }

    /// Whether generated code calls the wide kernels on this host: a level above the
    /// portable one, and FMA in the inline code (whose bits the wide kernels give).
    pub(super) fn wide_available(&self) -> bool {
        self.jit.has_fma && vecmath::Level::detect().is_some_and(|l| l != vecmath::Level::Portable)
    }

    /// The shifted wide entry (`op(src - c)` into `dst`), imported into this function.
    pub(super) fn wide_shifted_ref(
        &mut self,
    ) -> Result<cranelift_codegen::ir::FuncRef, CodegenError> {
        let params = [types::I32, types::I64, types::I64, types::F32, types::I64];
        self.import_wide(vecmath::WIDE_SHIFTED_SYMBOL, &params)
    }

    /// The wide unary entry, imported into this function.
    pub(super) fn wide_unary_ref(
        &mut self,
    ) -> Result<cranelift_codegen::ir::FuncRef, CodegenError> {
        self.import_wide(
            vecmath::WIDE_UNARY_SYMBOL,
            &[types::I32, types::I64, types::I64],
        )
    }

    /// Imports the wide-kernel entry `symbol` (no result) into this function.
    fn import_wide(
        &mut self,
        symbol: &str,
        params: &[cranelift_codegen::ir::Type],
    ) -> Result<cranelift_codegen::ir::FuncRef, CodegenError> {
        let mut sig = self.jit.module.make_signature();
        sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        let id = self
            .jit
            .module
            .declare_function(symbol, Linkage::Import, &sig)
            .map_err(|e| CodegenError::Cranelift(e.to_string()))?;
        Ok(self.jit.module.declare_func_in_func(id, self.b.func))
    }
}
