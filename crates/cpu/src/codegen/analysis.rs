//! Body analysis for code generation: which values vary over the reduction domain, which
//! depend on reduced results, how an index moves along one variable, and the choice of
//! the axis to vectorise.

use kiln_ir::{DType, Dim};
use kiln_kernel::{Body, Expr, IndexExpr, LoadMode, LoopKernel, ReductionStage};

/// A loop or reduction variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VarRef {
    /// `i<k>`
    Loop(usize),
    /// `r<k>`
    Red(usize),
}

fn mentions(e: &IndexExpr, var: VarRef) -> bool {
    let mut found = false;
    e.visit(&mut |x| {
        found |= match (x, var) {
            (IndexExpr::Var(v), VarRef::Loop(k)) => v.index() == k,
            (IndexExpr::Red(r), VarRef::Red(k)) => r.index() == k,
            _ => false,
        }
    });
    found
}

/// The phase structure of a loop body.
#[derive(Clone, Debug)]
pub(crate) struct Phases {
    /// The node varies over the reduction domain (evaluated inside the reduction loops).
    pub red: Vec<bool>,
    /// The node is a reduction or depends on one (evaluated after the reduction loops, or
    /// in a later stage's loop when it also varies over the reduction).
    pub post: Vec<bool>,
    /// The node varies over the reduction domain and feeds a reduction.
    pub inner: Vec<bool>,
    /// The reduction nodes, in order.
    pub reduces: Vec<usize>,
    /// Direct dependencies of each node.
    pub deps: Vec<Vec<usize>>,
    /// The reduction stages ([`kiln_kernel::Body::reduction_stages`]).
    pub stages: Vec<ReductionStage>,
}

/// The nodes of one reduction stage.
#[derive(Clone, Debug)]
pub(crate) struct Stage {
    /// Its reductions, in order.
    pub reduces: Vec<usize>,
    /// The nodes varying over the reduction domain that feed them.
    pub inner: Vec<bool>,
    /// Nodes after earlier stages (reading their results, not varying over the reduction)
    /// that the stage's reduction loop reads, in order: evaluated before the loop.
    pub before: Vec<usize>,
}

impl Phases {
    /// Analyses a body.
    pub(crate) fn new(body: &Body) -> Phases {
        let n = body.values.len();
        let deps: Vec<Vec<usize>> = body.dependencies();
        let mut red = vec![false; n];
        let mut post = vec![false; n];
        let mut reduces = Vec::new();
        for (i, e) in body.values.iter().enumerate() {
            let any = |flags: &[bool]| {
                deps[i]
                    .iter()
                    .any(|&d| flags.get(d).copied().unwrap_or(false))
            };
            if matches!(e, Expr::Reduce { .. }) {
                post[i] = true;
                reduces.push(i);
                continue;
            }
            red[i] = e.uses_red() || any(&red);
            post[i] = any(&post);
        }
        let mut inner = vec![false; n];
        let mut stack: Vec<usize> = reduces
            .iter()
            .filter_map(|&r| deps[r].first().copied())
            .collect();
        while let Some(v) = stack.pop() {
            if v < n && !inner[v] && red[v] {
                inner[v] = true;
                stack.extend(deps[v].iter().copied());
            }
        }
        Phases {
            red,
            post,
            inner,
            reduces,
            deps,
            stages: body.reduction_stages(),
        }
    }

    /// The nodes of reduction stage `st` of this body: what its loop evaluates at each
    /// reduction point (what its operands read that varies over the reduction), and what
    /// it reads from earlier stages (neither varying nor before every reduction).
    pub(crate) fn stage(&self, st: &ReductionStage) -> Stage {
        let n = self.red.len();
        Stage {
            reduces: st.reduces.clone(),
            inner: (0..n).map(|i| st.reads[i] && self.red[i]).collect(),
            before: (0..n).filter(|&i| st.reads[i] && self.is_post(i)).collect(),
        }
    }

    /// Nodes evaluated once per point before the reduction loops.
    pub(crate) fn is_pre(&self, i: usize) -> bool {
        !self.red[i] && !self.post[i]
    }

    /// Nodes evaluated once per point after the reduction loops (reductions excluded; a
    /// node that reads an earlier stage's result and varies over the reduction belongs to
    /// a later stage's loop).
    pub(crate) fn is_post(&self, i: usize) -> bool {
        self.post[i] && !self.red[i] && !self.reduces.contains(&i)
    }
}

/// For each node, whether it varies along `var`.
pub(crate) fn varying(body: &Body, deps: &[Vec<usize>], var: VarRef) -> Vec<bool> {
    let mut out = vec![false; body.values.len()];
    for (i, e) in body.values.iter().enumerate() {
        out[i] = e.indices().iter().any(|ix| mentions(ix, var))
            || deps[i]
                .iter()
                .any(|&d| out.get(d).copied().unwrap_or(false));
    }
    out
}

/// A dim that is a known integer (negative ones included).
pub(crate) fn known_i64(d: &Dim) -> Option<i64> {
    if let Some(v) = d.as_known() {
        return i64::try_from(v).ok();
    }
    let neg = (Dim::known(0) - d.clone()).as_known()?;
    i64::try_from(neg).ok().map(|v| -v)
}

/// The value of an index expression free of variables and values, if its dims are known.
fn constant(e: &IndexExpr) -> Option<i64> {
    match e {
        IndexExpr::Dim(d) => known_i64(d),
        IndexExpr::Var(_) | IndexExpr::Red(_) | IndexExpr::Value(_) => None,
        IndexExpr::Add(a, b) => constant(a)?.checked_add(constant(b)?),
        IndexExpr::Sub(a, b) => constant(a)?.checked_sub(constant(b)?),
        IndexExpr::Mul(a, b) => constant(a)?.checked_mul(constant(b)?),
        IndexExpr::Div(a, d) => {
            let d = known_i64(d).filter(|&d| d >= 1)?;
            Some(constant(a)?.div_euclid(d))
        }
        IndexExpr::Mod(a, d) => {
            let d = known_i64(d).filter(|&d| d >= 1)?;
            Some(constant(a)?.rem_euclid(d))
        }
    }
}

/// How `e` moves when `var` grows by one: `Some(c)` if `e = c*var + (terms free of var)`
/// with a known integer `c` (0 when `var` is absent) and no value in `vary` is read;
/// `None` otherwise (division or modulo of `var`, a symbolic coefficient, a varying value).
pub(crate) fn coefficient(e: &IndexExpr, var: VarRef, vary: &[bool]) -> Option<i64> {
    match e {
        IndexExpr::Dim(_) => Some(0),
        IndexExpr::Var(v) => Some(i64::from(var == VarRef::Loop(v.index()))),
        IndexExpr::Red(r) => Some(i64::from(var == VarRef::Red(r.index()))),
        IndexExpr::Value(v) => (!vary.get(v.index()).copied().unwrap_or(true)).then_some(0),
        IndexExpr::Add(a, b) => coefficient(a, var, vary)?.checked_add(coefficient(b, var, vary)?),
        IndexExpr::Sub(a, b) => coefficient(a, var, vary)?.checked_sub(coefficient(b, var, vary)?),
        IndexExpr::Mul(a, b) => {
            let (ca, cb) = (coefficient(a, var, vary)?, coefficient(b, var, vary)?);
            match (ca, cb) {
                (0, 0) => Some(0),
                (c, 0) => c.checked_mul(constant(b)?),
                (0, c) => c.checked_mul(constant(a)?),
                _ => None,
            }
        }
        IndexExpr::Div(a, _) | IndexExpr::Mod(a, _) => {
            (coefficient(a, var, vary)? == 0).then_some(0)
        }
    }
}

/// Which axis the vector loop runs along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VecMode {
    /// The innermost domain axis: each lane is one point of the domain.
    Domain,
    /// The innermost reduction axis: each lane accumulates every `lanes`-th term.
    Reduce,
}

/// The vectorisation plan of a loop kernel.
#[derive(Clone, Debug)]
pub(crate) struct VecPlan {
    /// Which axis.
    pub mode: VecMode,
    /// The vectorised variable.
    pub var: VarRef,
    /// Lanes per vector (4 for 32-bit values, 2 for 64-bit).
    pub lanes: u8,
    /// The node is computed as a vector (otherwise it is uniform across lanes).
    pub vector: Vec<bool>,
}

/// Bits of a value in a vector lane; `None` for bool (masks take the body's lane width).
fn lane_bits(d: DType) -> Option<u32> {
    match d {
        DType::F32 | DType::I32 | DType::U32 => Some(32),
        DType::F64 | DType::I64 => Some(64),
        DType::Bool => None,
    }
}

/// Counts of the memory accesses of a candidate plan.
struct Score {
    /// Contiguous or broadcast vector accesses.
    good: usize,
    /// Accesses that would run lane by lane (strided, gathered).
    bad: usize,
    /// Plain 32-bit loads with a stride of two along the variable (a 2x2 pooling
    /// window's), which two vector loads and a shuffle serve in the domain plan.
    pairs: usize,
}

/// Whether `l` is a plain load of a 32-bit element with stride two along `var`.
pub(crate) fn stride_two(l: &kiln_kernel::Load, var: VarRef, vary: &[bool], dt: DType) -> bool {
    matches!(l.mode, LoadMode::Plain)
        && lane_bits(dt) == Some(32)
        && coefficient(&l.index, var, vary) == Some(2)
}

/// Tries to vectorise along `var` the nodes selected by `scope`.
fn candidate(
    kernel: &LoopKernel,
    dtypes: &[DType],
    phases: &Phases,
    var: VarRef,
    scope: &dyn Fn(usize) -> bool,
    stores_too: bool,
) -> Option<(Vec<bool>, u8, Score)> {
    let body = &kernel.body;
    let vary = varying(body, &phases.deps, var);
    let vector: Vec<bool> = (0..body.values.len())
        .map(|i| vary[i] && scope(i))
        .collect();
    let mut bits: Option<u32> = None;
    let mut score = Score {
        good: 0,
        bad: 0,
        pairs: 0,
    };
    for (i, e) in body.values.iter().enumerate() {
        if !vector[i] {
            continue;
        }
        if let Some(b) = dtypes.get(i).copied().and_then(lane_bits) {
            match bits {
                None => bits = Some(b),
                Some(x) if x != b => return None,
                Some(_) => {}
            }
        }
        if let Expr::Load(l) = e {
            if coefficient(&l.index, var, &vary) == Some(1) {
                score.good += 1;
            } else if dtypes.get(i).is_some_and(|&d| stride_two(l, var, &vary, d)) {
                score.pairs += 1;
            } else {
                score.bad += 1;
            }
        }
    }
    if stores_too {
        for s in &body.stores {
            if vector.get(s.value.index()).copied().unwrap_or(false) {
                match coefficient(&s.index, var, &vary) {
                    Some(1) => score.good += 1,
                    _ => score.bad += 1,
                }
            }
        }
    }
    let lanes = match bits? {
        32 => 4,
        _ => 2,
    };
    Some((vector, lanes, score))
}

/// The vector plan of the innermost domain axis, if every access there is contiguous or
/// uniform across lanes (reductions inside it stay scalar, or run as lane vectors when they
/// vary along that axis).
pub(crate) fn domain_plan(
    kernel: &LoopKernel,
    dtypes: &[DType],
    phases: &Phases,
) -> Option<VecPlan> {
    let last = kernel.domain.len().checked_sub(1)?;
    let var = VarRef::Loop(last);
    let (vector, lanes, score) = candidate(kernel, dtypes, phases, var, &|_| true, true)?;
    let lanes_ok = lanes == 4 || score.pairs == 0;
    (score.bad == 0 && score.good > 0 && lanes_ok && !small(&kernel.domain[last], lanes)).then_some(
        VecPlan {
            mode: VecMode::Domain,
            var,
            lanes,
            vector,
        },
    )
}

/// The vector plan of the innermost reduction axis (the nodes feeding reductions computed
/// as vectors), if every access there is contiguous or uniform across lanes and every
/// reduction fits the lane width. Each reduction then keeps lane-wise partial accumulators
/// (several vectors of them), combined after the loop.
pub(crate) fn reduce_plan(
    kernel: &LoopKernel,
    dtypes: &[DType],
    phases: &Phases,
) -> Option<VecPlan> {
    let last = kernel.reduce.len().checked_sub(1)?;
    if phases.reduces.is_empty() {
        return None;
    }
    let var = VarRef::Red(last);
    let (vector, lanes, score) =
        candidate(kernel, dtypes, phases, var, &|i| phases.inner[i], false)?;
    if score.bad + score.pairs > 0 || score.good == 0 || small(&kernel.reduce[last], lanes) {
        return None;
    }
    // Every reduction accumulates in vector lanes, so their operands must fit the lane
    // width too.
    let fits = phases.reduces.iter().all(|&r| {
        dtypes
            .get(r)
            .copied()
            .and_then(lane_bits)
            .is_some_and(|b| (b == 32) == (lanes == 4))
    });
    fits.then_some(VecPlan {
        mode: VecMode::Reduce,
        var,
        lanes,
        vector,
    })
}

/// An extent known to be too short for a vector loop to pay.
fn small(d: &Dim, lanes: u8) -> bool {
    d.as_known().is_some_and(|v| v < u64::from(lanes) * 2)
}

/// Chooses how to vectorise a loop kernel whose reductions run at every point
/// (`dtypes[i]` is the dtype of node `i`), or `None` to run it with scalar code only: the
/// innermost domain axis if possible, else the innermost reduction axis.
pub(crate) fn plan(kernel: &LoopKernel, dtypes: &[DType], phases: &Phases) -> Option<VecPlan> {
    domain_plan(kernel, dtypes, phases).or_else(|| reduce_plan(kernel, dtypes, phases))
}

/// Reductions hoisted out of the innermost domain axes they do not depend on: the kernel
/// runs, for each point of the outer axes `..first`, the reduction loops once, then loops
/// over the axes `first..` for the rest of the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hoist {
    /// The first hoisted axis.
    pub first: usize,
    /// The node is evaluated once per outer point: it does not vary along any hoisted axis
    /// (every reduction, what feeds it, and every other such node).
    pub outer: Vec<bool>,
}

/// Finds the longest suffix of domain axes along which no reduction varies (transitively,
/// through its operand's value DAG and every index expression and guard on the way).
/// `None` when the kernel has no reduction, or when no hoisted axis could have more than one
/// point.
pub(crate) fn hoist(kernel: &LoopKernel, phases: &Phases) -> Option<Hoist> {
    if phases.reduces.is_empty() {
        return None;
    }
    let body = &kernel.body;
    let mut outer = vec![true; body.values.len()];
    let mut first = kernel.domain.len();
    for k in (0..kernel.domain.len()).rev() {
        let vary = varying(body, &phases.deps, VarRef::Loop(k));
        if phases.reduces.iter().any(|&r| vary[r]) {
            break;
        }
        for (o, v) in outer.iter_mut().zip(&vary) {
            *o &= !v;
        }
        first = k;
    }
    kernel.domain[first..]
        .iter()
        .any(|d| !d.is_one())
        .then_some(Hoist { first, outer })
}

/// Values of the hoisted loop that the reduction loop already computed: in a softmax row,
/// `exp(x[i0, i1] - m)` in the loop over `i1` is `exp(x[i0, r0] - m)` of the reduction with
/// `r0` renamed `i1`. The reduction loop stores those values in a per-row stack buffer and
/// the hoisted loop loads them instead of computing them again (same operations on the same
/// inputs, so the same bits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reuse {
    /// `(j, i)`: hoisted-loop node `j` is reduction-loop node `i`, whose values are kept.
    pub cached: Vec<(usize, usize)>,
    /// Hoisted-loop nodes that are not evaluated: they only feed cached nodes.
    pub skip: Vec<bool>,
    /// The row length (the extent of the hoisted axis and of the reduction axis).
    pub extent: u32,
}

/// The most bytes of reused values kept per row (on the stack of the worker thread).
const REUSE_BYTES: u64 = 64 * 1024;
/// The least cost (in [`cost_of`] units) of a value worth keeping instead of recomputing.
const REUSE_COST: u32 = 8;

/// Whether index `j` (hoisted loop) is index `i` (reduction loop) with `r0` renamed `i<last>`.
fn same_index(
    j: &IndexExpr,
    i: &IndexExpr,
    last: usize,
    same: &dyn Fn(usize, usize) -> bool,
) -> bool {
    let rec = |a: &IndexExpr, b: &IndexExpr| same_index(a, b, last, same);
    match (j, i) {
        (IndexExpr::Var(v), IndexExpr::Red(r)) => v.index() == last && r.index() == 0,
        (IndexExpr::Var(a), IndexExpr::Var(b)) => a == b && a.index() != last,
        (IndexExpr::Dim(a), IndexExpr::Dim(b)) => a == b,
        (IndexExpr::Value(a), IndexExpr::Value(b)) => same(a.index(), b.index()),
        (IndexExpr::Add(a1, b1), IndexExpr::Add(a2, b2))
        | (IndexExpr::Sub(a1, b1), IndexExpr::Sub(a2, b2))
        | (IndexExpr::Mul(a1, b1), IndexExpr::Mul(a2, b2)) => rec(a1, a2) && rec(b1, b2),
        (IndexExpr::Div(a1, d1), IndexExpr::Div(a2, d2))
        | (IndexExpr::Mod(a1, d1), IndexExpr::Mod(a2, d2)) => d1 == d2 && rec(a1, a2),
        _ => false,
    }
}

/// Finds the hoisted-loop values to take from the reduction loop (see [`Reuse`]): only for
/// one hoisted axis, the last, over one reduction axis of the same known extent, and only
/// values costing at least [`REUSE_COST`].
pub(crate) fn reuse(
    kernel: &LoopKernel,
    dtypes: &[DType],
    phases: &Phases,
    hoist: &Hoist,
) -> Option<Reuse> {
    let last = kernel.domain.len().checked_sub(1)?;
    if hoist.first != last || kernel.reduce.len() != 1 || kernel.domain[last] != kernel.reduce[0] {
        return None;
    }
    let extent = kernel.reduce[0].as_known().filter(|&e| e > 0)?;
    let body = &kernel.body;
    let n = body.values.len();
    let outer = &hoist.outer;
    let mut eq: Vec<Option<usize>> = vec![None; n];
    for j in 0..n {
        if outer[j] {
            continue;
        }
        let same =
            |a: usize, b: usize| eq.get(a).copied().flatten() == Some(b) || (a == b && outer[a]);
        eq[j] = (0..n).find(|&i| {
            phases.inner[i]
                && match (&body.values[j], &body.values[i]) {
                    (Expr::Load(a), Expr::Load(b)) => {
                        a.buffer == b.buffer
                            && matches!(a.mode, LoadMode::Plain | LoadMode::Checked)
                            && a.mode == b.mode
                            && same_index(&a.index, &b.index, last, &same)
                    }
                    (
                        Expr::Index {
                            dtype: d1,
                            index: a,
                        },
                        Expr::Index {
                            dtype: d2,
                            index: b,
                        },
                    ) => d1 == d2 && same_index(a, b, last, &same),
                    (Expr::Unary(o1, a1), Expr::Unary(o2, a2)) => {
                        o1 == o2 && same(a1.index(), a2.index())
                    }
                    (Expr::Cast(d1, a1), Expr::Cast(d2, a2)) => {
                        d1 == d2 && same(a1.index(), a2.index())
                    }
                    (Expr::Binary(o1, a1, b1), Expr::Binary(o2, a2, b2)) => {
                        o1 == o2 && same(a1.index(), a2.index()) && same(b1.index(), b2.index())
                    }
                    (Expr::Select(c1, a1, b1), Expr::Select(c2, a2, b2)) => {
                        same(c1.index(), c2.index())
                            && same(a1.index(), a2.index())
                            && same(b1.index(), b2.index())
                    }
                    _ => false,
                }
        });
    }
    // The cost of computing node `j` from outer values and loads.
    let cost = |j: usize| -> u32 {
        let mut seen = vec![false; n];
        let mut stack = vec![j];
        let mut total = 0;
        while let Some(k) = stack.pop() {
            if k < n && !seen[k] && eq[k].is_some() {
                seen[k] = true;
                total += cost_of(&body.values[k]);
                stack.extend(phases.deps[k].iter().copied());
            }
        }
        total
    };
    let live = |k: usize| !outer[k];
    let mut used_outside = vec![false; n];
    for k in (0..n).filter(|&k| live(k) && eq[k].is_none()) {
        for &d in &phases.deps[k] {
            used_outside[d] = true;
        }
    }
    for s in &body.stores {
        used_outside[s.value.index()] = true;
    }
    let cached: Vec<(usize, usize)> = (0..n)
        .filter_map(|j| Some((j, eq[j]?)))
        .filter(|&(j, _)| used_outside[j] && dtypes[j] != DType::Bool && cost(j) >= REUSE_COST)
        .collect();
    let bytes: u64 = cached
        .iter()
        .map(|&(j, _)| dtypes[j].size_bytes() as u64 * extent)
        .sum();
    if cached.is_empty() || bytes > REUSE_BYTES {
        return None;
    }
    // Hoisted-loop nodes still needed: what the stores read, not looking through cached
    // nodes.
    let mut needed = vec![false; n];
    let mut stack: Vec<usize> = body.stores.iter().map(|s| s.value.index()).collect();
    while let Some(k) = stack.pop() {
        if k < n && !needed[k] && live(k) {
            needed[k] = true;
            if !cached.iter().any(|&(j, _)| j == k) {
                stack.extend(phases.deps[k].iter().copied());
            }
        }
    }
    let skip = (0..n).map(|k| live(k) && !needed[k]).collect();
    Some(Reuse {
        cached,
        skip,
        extent: u32::try_from(extent).ok()?,
    })
}

/// A rough cost of evaluating a node, in simple operations.
pub(crate) fn cost_of(e: &Expr) -> u32 {
    use kiln_ir::UnaryOp as U;
    match e {
        Expr::Unary(op, _) => match op {
            U::Sqrt | U::Rsqrt | U::Recip => 4,
            op if op.is_costly() => 20,
            _ => 1,
        },
        Expr::Binary(
            kiln_ir::BinaryOp::Pow | kiln_ir::BinaryOp::Rem | kiln_ir::BinaryOp::Div,
            ..,
        ) => 8,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_along_a_variable() {
        let i0 = IndexExpr::var(0);
        let i1 = IndexExpr::var(1);
        let e = i0.clone() * IndexExpr::dim(Dim::sym("C")) + i1.clone() * IndexExpr::dim(3u64);
        assert_eq!(coefficient(&e, VarRef::Loop(1), &[]), Some(3));
        assert_eq!(coefficient(&e, VarRef::Loop(0), &[]), None);
        assert_eq!(coefficient(&e, VarRef::Red(0), &[]), Some(0));
        let d = (i0.clone() + i1.clone()).floor_div(2u64);
        assert_eq!(coefficient(&d, VarRef::Loop(1), &[]), None);
        let neg = i1.clone() * IndexExpr::dim(Dim::known(0) - Dim::known(2));
        assert_eq!(coefficient(&neg, VarRef::Loop(1), &[]), Some(-2));
        let v = IndexExpr::value(kiln_kernel::ValueId(0)) + i1;
        assert_eq!(coefficient(&v, VarRef::Loop(1), &[true]), None);
        assert_eq!(coefficient(&v, VarRef::Loop(1), &[false]), Some(1));
    }
}
