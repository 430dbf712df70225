//! The loops over the domain: one loop per axis around the body at a point (or a vector
//! of points along the innermost axis, with a scalar tail), and the hoisted section that
//! runs the reductions once per outer point.

use super::analysis::{VarRef, VecMode, VecPlan};
use super::error::CodegenError;
use super::tile::{Tiles, tile_len};
use super::types::scalar_type;
use super::{Cg, Env, PointValue, VecCtx};
use cranelift_codegen::ir::{
    InstBuilder, StackSlotData, StackSlotKind, Value, condcodes::IntCC, types,
};
use cranelift_frontend::Variable;

impl Cg<'_, '_> {
    /// Emits `for i in [lo, hi) step 1 { f(i) }` (the caller positions the builder).
    pub(super) fn for_range(
        &mut self,
        lo: Value,
        hi: Value,
        step: i64,
        f: &mut dyn FnMut(&mut Self, Value) -> Result<(), CodegenError>,
    ) -> Result<Variable, CodegenError> {
        let var = self.b.declare_var(types::I64);
        self.b.def_var(var, lo);
        self.for_var(var, hi, step, f)?;
        Ok(var)
    }

    /// Emits `while var < hi { f(var); var += step }`, continuing from the variable's value.
    pub(super) fn for_var(
        &mut self,
        var: Variable,
        hi: Value,
        step: i64,
        f: &mut dyn FnMut(&mut Self, Value) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
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
    pub(super) fn axis(
        &mut self,
        k: usize,
        split: usize,
        start: Value,
        end: Value,
        vars: &mut Vec<Value>,
        known: Option<&[Option<PointValue>]>,
    ) -> Result<(), CodegenError> {
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
        if let Some(lanes) = domain_plan
            && let Some(len) = tile_len(super::analysis::known_i64(&extent))
            && let Some(tiles) = self.domain_tiles(k, known, len)
        {
            let span = self.b.ins().isub(hi, lo);
            let whole = self.b.ins().band_imm_s(span, !(len - 1));
            let tend = self.b.ins().iadd(lo, whole);
            let mut tv = vars.clone();
            self.for_var(var, tend, len, &mut |cg, t| {
                for p in 0..tiles.passes() {
                    let end = cg.b.ins().iadd_imm_s(t, len);
                    cg.for_range(t, end, i64::from(lanes), &mut |cg, j| {
                        tv[k] = j;
                        let off = cg.b.ins().isub(j, t);
                        let ctx = VecCtx {
                            var: VarRef::Loop(k),
                            lanes,
                        };
                        cg.point_pass(&tv, Some(ctx), known, Some((&tiles, p, off)))
                    })?;
                    if !tiles.is_last(p) {
                        cg.run_wide(&tiles, p)?;
                    }
                }
                Ok(())
            })?;
        }
        if let Some(lanes) = domain_plan {
            let vstart = self.b.use_var(var);
            let span = self.b.ins().isub(hi, vstart);
            let whole = self.b.ins().band_imm_s(span, !(i64::from(lanes) - 1));
            let vend = self.b.ins().iadd(vstart, whole);
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
    fn hoisted_section(&mut self, vars: &[Value]) -> Result<Vec<Option<PointValue>>, CodegenError> {
        let outer = self
            .hoist
            .as_ref()
            .map(|h| h.outer.clone())
            .ok_or(CodegenError::Internal("no hoisted section"))?;
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
            if self.phases.is_post(i) && env.vals[i].is_none() {
                let v = self.node(i, &env)?;
                env.vals[i] = Some(v);
            }
        }
        self.pin(&section, &env)?;
        Ok(env.vals)
    }

    /// Stores the hoisted section's results that depend on its reductions to stack slots,
    /// which [`Self::load_pinned`] reads back at each point of the hoisted loop. These are
    /// pure values computed from the reduction loop's accumulators; left as values,
    /// Cranelift's elaboration places a pure value at its first use and does not hoist it
    /// out of the hoisted loop (the accumulators are defined in a loop of the same depth),
    /// so the combination of the partial accumulators and what follows it (a softmax's
    /// `1 / sum`, a layer norm's `rsqrt`) would run again at every point. A load from the
    /// stack is one instruction and usually folds into its use.
    fn pin(&mut self, section: &[usize], env: &Env) -> Result<(), CodegenError> {
        // Only values the hoisted loop reads: by a node outside the section or a store.
        let body = &self.job.kernel.body;
        let in_section = |j: usize| section.binary_search(&j).is_ok();
        let mut read = vec![false; body.values.len()];
        for (j, deps) in self.phases.deps.iter().enumerate() {
            if !in_section(j) {
                for &d in deps {
                    read[d] = true;
                }
            }
        }
        for s in &body.stores {
            read[s.value.index()] = true;
        }
        for &i in section {
            let Some(PointValue::Scalar(x)) = env.vals[i] else {
                continue;
            };
            if !self.phases.post[i] || !read[i] {
                continue;
            }
            let slot = match self.pinned.iter().find(|p| p.0 == i) {
                Some(&(_, slot)) => slot,
                None => {
                    let slot = self.b.create_sized_stack_slot(StackSlotData::new(
                        StackSlotKind::ExplicitSlot,
                        8,
                        3,
                    ));
                    self.pinned.push((i, slot));
                    slot
                }
            };
            self.b.ins().stack_store(types::I64, x, slot, 0);
        }
        Ok(())
    }

    /// Reads the pinned values of the hoisted section (see [`Self::pin`]) into `env`.
    fn load_pinned(&mut self, env: &mut Env) {
        for (i, slot) in self.pinned.clone() {
            if let Some(PointValue::Scalar(_)) = env.vals[i] {
                let ty = scalar_type(self.dtypes[i]);
                let v = self.b.ins().stack_load(types::I64, ty, slot, 0);
                env.vals[i] = Some(PointValue::Scalar(v));
            }
        }
    }

    /// Emits the body at one point (or one vector of points). `known`: the values of the
    /// hoisted section (reductions included), which are not evaluated again.
    pub(super) fn point(
        &mut self,
        vars: &[Value],
        vec: Option<VecCtx>,
        known: Option<&[Option<PointValue>]>,
    ) -> Result<(), CodegenError> {
        self.point_pass(vars, vec, known, None)
    }

    /// [`Self::point`], or with `pass` = `(tiles, p, off)` one pass of a tiled loop at point
    /// `off` of the tile: only the nodes pass `p` needs, the wide nodes loaded from their
    /// buffers, and (before the last pass) the next wide operands stored instead of the
    /// body's stores.
    fn point_pass(
        &mut self,
        vars: &[Value],
        vec: Option<VecCtx>,
        known: Option<&[Option<PointValue>]>,
        pass: Option<(&Tiles, usize, Value)>,
    ) -> Result<(), CodegenError> {
        let n = self.job.kernel.body.values.len();
        let mut env = Env {
            vars: vars.to_vec(),
            reds: Vec::new(),
            vals: known.map_or_else(|| vec![None; n], <[Option<PointValue>]>::to_vec),
            vec,
        };
        if known.is_some() {
            self.load_kept(&mut env)?;
            self.load_pinned(&mut env);
        }
        if let Some((t, p, off)) = pass {
            self.load_wide(t, p, off, &mut env)?;
        }
        let skip = |i: usize| pass.is_some_and(|(t, p, _)| !t.evaluates(p, i));
        for i in 0..n {
            if self.phases.is_pre(i) && env.vals[i].is_none() && !self.skipped(i, known) && !skip(i)
            {
                let v = self.node(i, &env)?;
                env.vals[i] = Some(v);
            }
        }
        if !self.phases.reduces.is_empty() && known.is_none() {
            self.reduction(&mut env)?;
        }
        for i in 0..n {
            if self.phases.is_post(i)
                && env.vals[i].is_none()
                && !self.skipped(i, known)
                && !skip(i)
            {
                let v = self.node(i, &env)?;
                env.vals[i] = Some(v);
            }
        }
        if let Some((t, p, off)) = pass
            && !t.is_last(p)
        {
            return self.store_wide_operands(t, p, off, &env);
        }
        let stores = self.job.kernel.body.stores.clone();
        for s in &stores {
            let v = env.vals[s.value.index()].ok_or(CodegenError::StoreOfUnevaluated)?;
            self.store(s.buffer.index(), &s.index, v, &env)?;
        }
        Ok(())
    }

    /// The tiles of the vector loop over domain axis `k` at points with `known` values:
    /// only when the points evaluate no reduction (none, or hoisted).
    fn domain_tiles(
        &mut self,
        k: usize,
        known: Option<&[Option<PointValue>]>,
        len: i64,
    ) -> Option<Tiles> {
        if !self.phases.reduces.is_empty() && known.is_none() {
            return None;
        }
        let n = self.job.kernel.body.values.len();
        let eval: Vec<bool> = (0..n)
            .map(|i| {
                let preset = known.is_some_and(|kv| kv.get(i).copied().flatten().is_some())
                    || self.skipped(i, known)
                    || self
                        .reuse
                        .as_ref()
                        .is_some_and(|r| known.is_some() && r.cached.iter().any(|&(j, _)| j == i));
                !preset && (self.phases.is_pre(i) || self.phases.is_post(i))
            })
            .collect();
        let sinks: Vec<usize> = self
            .job
            .kernel
            .body
            .stores
            .iter()
            .map(|s| s.value.index())
            .collect();
        self.plan_tiles(VarRef::Loop(k), &eval, &sinks, len)
    }

    /// The plan that vectorises `var`.
    fn plan_of(&self, var: VarRef) -> Option<&VecPlan> {
        self.plans.iter().find(|p| p.var == var)
    }

    pub(super) fn is_vector_node(&self, i: usize, env: &Env) -> bool {
        env.vec.is_some_and(|c| {
            self.plan_of(c.var)
                .is_some_and(|p| p.vector.get(i).copied().unwrap_or(false))
        })
    }
}
