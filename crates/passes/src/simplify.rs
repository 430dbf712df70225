//! Simplification: constant folding through the reference interpreter, and algebraic
//! identities as named one-way rules, all listed in the one table [`RULES`].
//!
//! Each rule matches one node and proposes a [`Rewrite`]: an existing node that computes the
//! same value, or one new node (possibly with one new constant operand). The driver checks
//! the replacement has the node's dtype and shape, redirects every use (outputs included),
//! and marks what the rewrite orphaned as dead; dead nodes are removed when the pass ends, so
//! nodes added by the pass never reuse a removed node's id. Contracts every rule keeps:
//!
//! - **Exact.** A rule fires only when the replacement computes a bit-identical result for
//!   every input (NaN payloads aside, since an arithmetic NaN result's payload is not
//!   specified). Hence some "obvious" identities are deliberately absent: `x * 0 -> 0`
//!   (`NaN * 0` and `inf * 0` are NaN), `x - x -> 0` (same), `x + 0.0 -> x` for a *positive*
//!   zero (`-0.0 + 0.0` is `+0.0`; only `x + -0.0` and `x - +0.0` are exact identities), `x / c
//!   -> x * (1/c)` unless `c` is a power of two, and merging chained reductions (summation
//!   order changes the rounding).
//! - **Never worse.** A rewrite never increases the node count and never replaces an op by a
//!   more expensive one; the driver enforces the node count and fails with
//!   [`RuleFailure::Grew`] otherwise. Each rule states why it holds in its [`Rule::cost`]
//!   entry.
//! - **Local.** A rule looks only at the node, its operands and the use counts.
//!
//! "Transpose folded into matmul": `MatMul` has no transpose flags in this IR, so at the
//! graph level this means canonicalising permute chains (`permute_permute` composes two
//! permutes into one, `permute_noop` drops an identity permutation) so that at most one
//! permute sits between a tensor and a matmul. The kernel IR later absorbs that remaining
//! permute into the contraction's operand layout.
//!
//! Constant folding evaluates a node whose operands are all constants with
//! [`kiln_interp::eval_op`], so a folded value is exactly what evaluation would give. It never
//! folds sources (`input`, `param`, `iota`, `const`) or `random_bits`, and never a result with
//! a symbolic shape. A fold whose result is no larger than its largest operand, where every
//! operand dies with the fold, always happens; any other fold only when the result has at
//! most [`SimplifyOptions::fold_limit`] elements and the op is not an `expand` (a broadcast
//! of a constant stays a broadcast view instead of being materialised;
//! `binary_scalar_const_unexpand` removes it where the binary op broadcasts anyway).
//! An op the interpreter rejects (integer division by zero, an out-of-range gather index) is
//! left for evaluation to report.
//!
//! It does not merge duplicates (that is [`crate::cse`]) or remove dead code it did not
//! create (that is [`crate::dce`]).

use crate::dce::always_live;
use crate::error::{PassError, RuleFailure};
use crate::func::{Func, PassStats};
use kiln_ir::infer::broadcast_shapes;
use kiln_ir::{Array, BinaryOp, DType, Data, Dim, Graph, NodeId, Op, OpKind, Shape, UnaryOp};
use std::collections::BTreeSet;

/// Settings of [`simplify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimplifyOptions {
    /// Largest folded constant (in elements) that may be created regardless of operand sizes.
    pub fold_limit: usize,
}

impl Default for SimplifyOptions {
    fn default() -> SimplifyOptions {
        SimplifyOptions { fold_limit: 4096 }
    }
}

/// An operand of a node a rule builds.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// An existing node.
    Node(NodeId),
    /// A new constant.
    Const(Array),
}

/// What a rule replaces its node with.
#[derive(Clone, Debug, PartialEq)]
pub enum Rewrite {
    /// An existing node computing the same value.
    Existing(NodeId),
    /// A new node built from `op` and `args`.
    New {
        /// The new node's op.
        op: Op,
        /// Its operands.
        args: Vec<Arg>,
    },
}

/// What a rule sees: the function (graph, outputs), the options, and the nodes this pass has
/// already made dead (they are removed when the pass ends, so the ids of new nodes never
/// reuse theirs within one pass).
#[derive(Debug)]
pub struct Ctx<'a> {
    func: &'a Func,
    opts: &'a SimplifyOptions,
    dead: &'a BTreeSet<NodeId>,
}

static NONE_DEAD: BTreeSet<NodeId> = BTreeSet::new();

impl<'a> Ctx<'a> {
    /// A context with no dead nodes, for running a rule by hand.
    pub fn new(func: &'a Func, opts: &'a SimplifyOptions) -> Ctx<'a> {
        Ctx {
            func,
            opts,
            dead: &NONE_DEAD,
        }
    }

    fn g(&self) -> &Graph {
        &self.func.graph
    }

    /// True if the node has exactly one live user and is not an output, so it dies when that
    /// user is replaced.
    fn single_use(&self, id: NodeId) -> bool {
        let live = self
            .g()
            .users(id)
            .into_iter()
            .filter(|u| !self.dead.contains(u))
            .count();
        live == 1 && !self.func.is_output(id)
    }

    fn konst(&self, id: NodeId) -> Option<&Array> {
        match &self.g().node(id).op {
            Op::Constant(a) => Some(a),
            _ => None,
        }
    }

    /// True if `x` has the same dtype and shape as `id`, so it can replace it.
    fn same_type(&self, x: NodeId, id: NodeId) -> bool {
        let (a, b) = (self.g().node(x), self.g().node(id));
        a.dtype == b.dtype && a.shape == b.shape
    }

    /// The single operand of `id` when `id`'s op is selected by `pick`.
    fn inner<'b>(&'b self, id: NodeId, pick: impl Fn(&'b Op) -> bool) -> Option<NodeId> {
        let ops = self.g().operands(id);
        let [x] = ops.as_slice() else { return None };
        pick(&self.g().node(*x).op).then_some(*x)
    }

    fn binary(&self, id: NodeId, want: BinaryOp) -> Option<(NodeId, NodeId)> {
        match self.g().node(id).op {
            Op::Binary(b) if b == want => match self.g().operands(id).as_slice() {
                [a, b] => Some((*a, *b)),
                _ => None,
            },
            _ => None,
        }
    }

    fn only_operand(&self, id: NodeId) -> Option<NodeId> {
        match self.g().operands(id).as_slice() {
            [x] => Some(*x),
            _ => None,
        }
    }
}

/// A named one-way rewrite rule.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Name used in statistics and errors.
    pub name: &'static str,
    /// The rewrite, e.g. `x * 1 -> x`.
    pub rewrite: &'static str,
    /// When it fires (the exactness conditions).
    pub when: &'static str,
    /// Why the result is never worse.
    pub cost: &'static str,
    /// Matches `id` and proposes a replacement.
    pub apply: fn(&Ctx, NodeId) -> Option<Rewrite>,
}

/// Every simplification rule, tried in this order on each node; the first that fires wins.
pub const RULES: &[Rule] = &[
    Rule {
        name: "fold_constants",
        rewrite: "op(const, ...) -> const",
        when: "every operand is a constant, the op is not a source or random_bits, the result shape is known, and either the result is no larger than its largest operand and every operand dies, or it has at most fold_limit elements and the op is not expand",
        cost: "one constant replaces the node; net nodes <= 0",
        apply: fold_constants,
    },
    Rule {
        name: "mul_by_one",
        rewrite: "x * 1 -> x, 1 * x -> x",
        when: "the 1 is a constant whose elements are all exactly one and the product has x's shape",
        cost: "removes the multiply",
        apply: mul_by_one,
    },
    Rule {
        name: "add_zero",
        rewrite: "x + z -> x, z + x -> x",
        when: "z is a constant of additive identities (-0.0 for floats, 0 for integers) and the sum has x's shape",
        cost: "removes the add",
        apply: add_zero,
    },
    Rule {
        name: "sub_zero",
        rewrite: "x - z -> x",
        when: "z is a constant of +0.0 (floats) or 0 (integers) and the difference has x's shape",
        cost: "removes the subtract",
        apply: sub_zero,
    },
    Rule {
        name: "div_by_one",
        rewrite: "x / 1 -> x",
        when: "the divisor is a constant of ones and the quotient has x's shape",
        cost: "removes the divide",
        apply: div_by_one,
    },
    Rule {
        name: "div_pow2_to_mul",
        rewrite: "x / c -> x * (1/c)",
        when: "float dtype, c a constant used only here whose every element is a power of two with a finite, exactly representable reciprocal (so both round the same exact value)",
        cost: "a multiply and its constant replace a divide and its constant; net nodes 0, multiply cheaper than divide",
        apply: div_pow2_to_mul,
    },
    Rule {
        name: "neg_neg",
        rewrite: "neg(neg(x)) -> x",
        when: "always (sign flips and wrapping negation are involutions)",
        cost: "removes the outer negation",
        apply: neg_neg,
    },
    Rule {
        name: "not_not",
        rewrite: "not(not(x)) -> x",
        when: "always",
        cost: "removes the outer not",
        apply: not_not,
    },
    Rule {
        name: "stop_gradient_twice",
        rewrite: "stop_gradient(stop_gradient(x)) -> stop_gradient(x)",
        when: "always",
        cost: "removes the outer stop_gradient",
        apply: stop_gradient_twice,
    },
    Rule {
        name: "cast_noop",
        rewrite: "cast<d>(x) -> x",
        when: "x already has dtype d",
        cost: "removes the cast",
        apply: cast_noop,
    },
    Rule {
        name: "reshape_noop",
        rewrite: "reshape<s>(x) -> x",
        when: "x already has shape s",
        cost: "removes the reshape",
        apply: reshape_noop,
    },
    Rule {
        name: "reshape_reshape",
        rewrite: "reshape<s2>(reshape<s1>(x)) -> reshape<s2>(x)",
        when: "always (row-major reshapes compose); x itself when it has shape s2",
        cost: "one reshape replaces the outer one; the inner dies if unused; net nodes <= 0",
        apply: reshape_reshape,
    },
    Rule {
        name: "permute_noop",
        rewrite: "permute<id>(x) -> x",
        when: "the permutation is the identity",
        cost: "removes the permute",
        apply: permute_noop,
    },
    Rule {
        name: "permute_permute",
        rewrite: "permute<q>(permute<p>(x)) -> permute<p o q>(x)",
        when: "always; x itself when the composition is the identity",
        cost: "one permute replaces the outer one; the inner dies if unused; net nodes <= 0",
        apply: permute_permute,
    },
    Rule {
        name: "expand_noop",
        rewrite: "expand<s>(x) -> x",
        when: "x already has shape s",
        cost: "removes the expand",
        apply: expand_noop,
    },
    Rule {
        name: "expand_expand",
        rewrite: "expand<s2>(expand<s1>(x)) -> expand<s2>(x)",
        when: "always (broadcasts compose)",
        cost: "one expand replaces the outer one; the inner dies if unused; net nodes <= 0",
        apply: expand_expand,
    },
    Rule {
        name: "binary_scalar_const_unexpand",
        rewrite: "a op expand(c) -> a op c, expand(c) op a -> c op a",
        when: "c is a constant with one element and broadcasting a with c already gives the result shape",
        cost: "one binary replaces the old one and reads a scalar instead of a broadcast view; the expand dies if unused; net nodes <= 0",
        apply: binary_scalar_const_unexpand,
    },
    Rule {
        name: "slice_noop",
        rewrite: "slice<all>(x) -> x",
        when: "every axis is sliced 0..size with step 1",
        cost: "removes the slice",
        apply: slice_noop,
    },
    Rule {
        name: "slice_of_concat",
        rewrite: "slice(concat(x0, ..., xn), axis) -> slice(xk)",
        when: "every element the slice takes along the concat axis comes from the one operand xk (the sizes of xk and the operands before it are known)",
        cost: "one slice replaces the old one; the concat dies if unused (then a kernel no longer reads every operand of the concat to pick one); net nodes <= 0",
        apply: slice_of_concat,
    },
    Rule {
        name: "pad_noop",
        rewrite: "pad<0>(x) -> x",
        when: "every padding is (0, 0)",
        cost: "removes the pad",
        apply: pad_noop,
    },
    Rule {
        name: "flip_noop",
        rewrite: "flip<[]>(x) -> x",
        when: "no axis is flipped",
        cost: "removes the flip",
        apply: flip_noop,
    },
    Rule {
        name: "flip_flip",
        rewrite: "flip<A>(flip<A>(x)) -> x",
        when: "both flips reverse the same axes",
        cost: "removes the outer flip",
        apply: flip_flip,
    },
    Rule {
        name: "select_same",
        rewrite: "select(c, x, x) -> x",
        when: "the result has x's shape",
        cost: "removes the select",
        apply: select_same,
    },
    Rule {
        name: "select_const_cond",
        rewrite: "select(true, a, b) -> a, select(false, a, b) -> b",
        when: "the condition is a constant of all true (or all false) and the result has the chosen branch's shape",
        cost: "removes the select",
        apply: select_const_cond,
    },
    Rule {
        name: "idempotent_self",
        rewrite: "x & x -> x, x | x -> x, max(x, x) -> x, min(x, x) -> x",
        when: "both operands are the same node; max/min only for integer dtypes (float max/min of NaN returns a canonical NaN)",
        cost: "removes the op",
        apply: idempotent_self,
    },
];

/// The rule named `name`.
pub fn rule(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name == name)
}

// ---------------------------------------------------------------------------------------------
// Element predicates
// ---------------------------------------------------------------------------------------------

/// True if every element is exactly one (bool never counts: bool has no arithmetic).
fn all_one(a: &Array) -> bool {
    match a.data() {
        Data::F32(v) => v.iter().all(|x| x.to_bits() == 1f32.to_bits()),
        Data::F64(v) => v.iter().all(|x| x.to_bits() == 1f64.to_bits()),
        Data::I32(v) => v.iter().all(|&x| x == 1),
        Data::I64(v) => v.iter().all(|&x| x == 1),
        Data::U32(v) => v.iter().all(|&x| x == 1),
        Data::Bool(_) => false,
    }
}

/// True if every element is a zero with the given float sign (integers: zero).
fn all_zero(a: &Array, negative: bool) -> bool {
    let (z32, z64) = if negative {
        (-0f32, -0f64)
    } else {
        (0f32, 0f64)
    };
    match a.data() {
        Data::F32(v) => v.iter().all(|x| x.to_bits() == z32.to_bits()),
        Data::F64(v) => v.iter().all(|x| x.to_bits() == z64.to_bits()),
        Data::I32(v) => v.iter().all(|&x| x == 0),
        Data::I64(v) => v.iter().all(|&x| x == 0),
        Data::U32(v) => v.iter().all(|&x| x == 0),
        Data::Bool(_) => false,
    }
}

fn all_bool(a: &Array, want: bool) -> bool {
    match a.data() {
        Data::Bool(v) => v.iter().all(|&x| x == want),
        Data::F32(_) | Data::F64(_) | Data::I32(_) | Data::I64(_) | Data::U32(_) => false,
    }
}

const F64_MANTISSA: u64 = (1 << 52) - 1;

/// `1/v` if `v` is a normal power of two whose reciprocal is exact in `f64`.
fn pow2_recip_f64(v: f64) -> Option<f64> {
    let is_pow2 = v.is_normal() && v.to_bits() & F64_MANTISSA == 0;
    let r = 1.0 / v;
    (is_pow2 && r.is_finite() && r != 0.0 && r * v == 1.0).then_some(r)
}

/// `1/v` if `v` is a power of two whose reciprocal is exactly representable in `f32`.
fn pow2_recip_f32(v: f32) -> Option<f32> {
    let r = pow2_recip_f64(f64::from(v))?;
    let rf = r as f32;
    (rf.is_finite() && f64::from(rf) == r).then_some(rf)
}

fn pow2_reciprocal(a: &Array) -> Option<Array> {
    let data = match a.data() {
        Data::F32(v) => Data::F32(
            v.iter()
                .map(|&x| pow2_recip_f32(x))
                .collect::<Option<_>>()?,
        ),
        Data::F64(v) => Data::F64(
            v.iter()
                .map(|&x| pow2_recip_f64(x))
                .collect::<Option<_>>()?,
        ),
        Data::I32(_) | Data::I64(_) | Data::U32(_) | Data::Bool(_) => return None,
    };
    Array::new(a.shape(), data).ok()
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

fn fold_constants(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let n = cx.g().node(id);
    let foldable = match n.op.kind() {
        OpKind::Fed
        | OpKind::Literal
        | OpKind::Index
        | OpKind::Random
        | OpKind::Control
        | OpKind::Get => false,
        OpKind::Elementwise
        | OpKind::View
        | OpKind::Assemble
        | OpKind::Scatter
        | OpKind::Reduction
        | OpKind::ArgReduction
        | OpKind::Contraction => true,
    };
    if !foldable {
        return None;
    }
    let operands = cx.g().operands(id);
    let arrays: Vec<&Array> = operands
        .iter()
        .map(|&o| cx.konst(o))
        .collect::<Option<_>>()?;
    if arrays.is_empty() {
        return None;
    }
    let shape = n.shape.as_known()?;
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    let largest = arrays.iter().map(|a| a.len()).max().unwrap_or(0);
    let all_die = operands.iter().all(|&o| cx.single_use(o));
    let shrinks = numel <= largest && all_die;
    let small_growth = numel <= cx.opts.fold_limit && !matches!(n.op, Op::Expand(_));
    if !shrinks && !small_growth {
        return None;
    }
    let value = kiln_interp::eval_op(&n.op, &arrays, n.dtype, &shape).ok()?;
    Some(Rewrite::New {
        op: Op::Constant(value),
        args: Vec::new(),
    })
}

/// For a binary `id` of kind `want`, the non-constant side `x` when the other side is a
/// constant satisfying `pred` and the result has `x`'s type. `either` allows both sides.
fn identity_operand(
    cx: &Ctx,
    id: NodeId,
    want: BinaryOp,
    either: bool,
    pred: impl Fn(&Array) -> bool,
) -> Option<Rewrite> {
    let (a, b) = cx.binary(id, want)?;
    let candidates: &[(NodeId, NodeId)] = if either { &[(a, b), (b, a)] } else { &[(a, b)] };
    candidates
        .iter()
        .find(|&&(x, c)| cx.konst(c).is_some_and(&pred) && cx.same_type(x, id))
        .map(|&(x, _)| Rewrite::Existing(x))
}

fn mul_by_one(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    identity_operand(cx, id, BinaryOp::Mul, true, all_one)
}

fn add_zero(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    identity_operand(cx, id, BinaryOp::Add, true, |a| all_zero(a, true))
}

fn sub_zero(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    identity_operand(cx, id, BinaryOp::Sub, false, |a| all_zero(a, false))
}

fn div_by_one(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    identity_operand(cx, id, BinaryOp::Div, false, all_one)
}

fn div_pow2_to_mul(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let (x, c) = cx.binary(id, BinaryOp::Div)?;
    if x == c || !cx.g().node(id).dtype.is_float() || !cx.single_use(c) {
        return None;
    }
    let recip = pow2_reciprocal(cx.konst(c)?)?;
    Some(Rewrite::New {
        op: Op::Binary(BinaryOp::Mul),
        args: vec![Arg::Node(x), Arg::Const(recip)],
    })
}

fn unary_unary(cx: &Ctx, id: NodeId, u: UnaryOp) -> Option<Rewrite> {
    if cx.g().node(id).op != Op::Unary(u) {
        return None;
    }
    let inner = cx.inner(id, |op| *op == Op::Unary(u))?;
    let x = cx.only_operand(inner)?;
    cx.same_type(x, id).then_some(Rewrite::Existing(x))
}

fn neg_neg(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    unary_unary(cx, id, UnaryOp::Neg)
}

fn not_not(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    unary_unary(cx, id, UnaryOp::Not)
}

fn stop_gradient_twice(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    if cx.g().node(id).op != Op::StopGradient {
        return None;
    }
    let inner = cx.inner(id, |op| *op == Op::StopGradient)?;
    Some(Rewrite::Existing(inner))
}

fn cast_noop(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let Op::Cast(to) = cx.g().node(id).op else {
        return None;
    };
    let x = cx.only_operand(id)?;
    (cx.g().node(x).dtype == to && cx.same_type(x, id)).then_some(Rewrite::Existing(x))
}

/// `x` if `id` is a single-operand op selected by `is_op` whose result has `x`'s type and
/// `noop` says the op's attributes do nothing to `x`.
fn noop_of(cx: &Ctx, id: NodeId, is_noop: impl Fn(&Op, &Shape) -> bool) -> Option<Rewrite> {
    let x = cx.only_operand(id)?;
    let ok = is_noop(&cx.g().node(id).op, &cx.g().node(x).shape) && cx.same_type(x, id);
    ok.then_some(Rewrite::Existing(x))
}

fn reshape_noop(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    noop_of(cx, id, |op, s| matches!(op, Op::Reshape(to) if to == s))
}

fn reshape_reshape(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let Op::Reshape(to) = &cx.g().node(id).op else {
        return None;
    };
    let inner = cx.inner(id, |op| matches!(op, Op::Reshape(_)))?;
    let x = cx.only_operand(inner)?;
    if cx.same_type(x, id) {
        return Some(Rewrite::Existing(x));
    }
    Some(Rewrite::New {
        op: Op::Reshape(to.clone()),
        args: vec![Arg::Node(x)],
    })
}

fn is_identity_perm(p: &[usize]) -> bool {
    p.iter().enumerate().all(|(i, &a)| i == a)
}

fn permute_noop(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    noop_of(
        cx,
        id,
        |op, _| matches!(op, Op::Permute(p) if is_identity_perm(p)),
    )
}

fn permute_permute(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let Op::Permute(q) = &cx.g().node(id).op else {
        return None;
    };
    let inner = cx.inner(id, |op| matches!(op, Op::Permute(_)))?;
    let Op::Permute(p) = &cx.g().node(inner).op else {
        return None;
    };
    let x = cx.only_operand(inner)?;
    // out[i] = inner axis q[i] = x axis p[q[i]].
    let composed: Vec<usize> = q
        .iter()
        .map(|&qi| p.get(qi).copied())
        .collect::<Option<_>>()?;
    if is_identity_perm(&composed) && cx.same_type(x, id) {
        return Some(Rewrite::Existing(x));
    }
    Some(Rewrite::New {
        op: Op::Permute(composed),
        args: vec![Arg::Node(x)],
    })
}

fn expand_noop(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    noop_of(cx, id, |op, s| matches!(op, Op::Expand(to) if to == s))
}

fn expand_expand(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let Op::Expand(to) = &cx.g().node(id).op else {
        return None;
    };
    let inner = cx.inner(id, |op| matches!(op, Op::Expand(_)))?;
    let x = cx.only_operand(inner)?;
    if cx.same_type(x, id) {
        return Some(Rewrite::Existing(x));
    }
    Some(Rewrite::New {
        op: Op::Expand(to.clone()),
        args: vec![Arg::Node(x)],
    })
}

fn binary_scalar_const_unexpand(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let n = cx.g().node(id);
    let Op::Binary(b) = n.op else { return None };
    let ops = cx.g().operands(id);
    let [a0, a1] = ops.as_slice() else {
        return None;
    };
    for side in 0..2 {
        let e = if side == 0 { *a1 } else { *a0 };
        if !matches!(cx.g().node(e).op, Op::Expand(_)) {
            continue;
        }
        let Some(c) = cx.only_operand(e) else {
            continue;
        };
        if cx.konst(c).is_none_or(|k| k.len() != 1) {
            continue;
        }
        let (l, r) = if side == 0 { (*a0, c) } else { (c, *a1) };
        let (ls, rs) = (&cx.g().node(l).shape, &cx.g().node(r).shape);
        if broadcast_shapes("unexpand", ls, rs).is_ok_and(|s| s == n.shape) {
            return Some(Rewrite::New {
                op: Op::Binary(b),
                args: vec![Arg::Node(l), Arg::Node(r)],
            });
        }
    }
    None
}

fn slice_noop(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    noop_of(cx, id, |op, s| {
        let Op::Slice(axes) = op else { return false };
        axes.len() == s.rank()
            && axes.iter().zip(s.dims()).all(|(a, d)| {
                a.start == 0 && a.step == 1 && (a.stop == u64::MAX || *d == Dim::known(a.stop))
            })
    })
}

fn slice_of_concat(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let Op::Slice(axes) = &cx.g().node(id).op else {
        return None;
    };
    let cat = cx.inner(id, |op| matches!(op, Op::Concat { .. }))?;
    let Op::Concat { axis } = cx.g().node(cat).op else {
        return None;
    };
    let sa = axes.get(axis)?;
    let total = cx.g().node(cat).shape.0.get(axis)?.as_known()?;
    let stop = sa.stop.min(total);
    if sa.step == 0 || sa.start >= stop {
        return None;
    }
    let last = sa.start + (stop - 1 - sa.start) / sa.step * sa.step;
    let mut off = 0u64;
    for x in cx.g().operands(cat) {
        let len = cx.g().node(x).shape.0.get(axis)?.as_known()?;
        if sa.start >= off && last < off + len {
            let mut inner = axes.clone();
            inner[axis] = kiln_ir::SliceAxis {
                start: sa.start - off,
                stop: (stop - off).min(len),
                step: sa.step,
            };
            return Some(Rewrite::New {
                op: Op::Slice(inner),
                args: vec![Arg::Node(x)],
            });
        }
        off += len;
        if off > sa.start {
            return None;
        }
    }
    None
}

fn pad_noop(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    noop_of(
        cx,
        id,
        |op, _| matches!(op, Op::Pad { pads, .. } if pads.iter().all(|&p| p == (0, 0))),
    )
}

fn flip_noop(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    noop_of(
        cx,
        id,
        |op, _| matches!(op, Op::Flip { axes } if axes.is_empty()),
    )
}

fn flip_flip(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let Op::Flip { axes } = &cx.g().node(id).op else {
        return None;
    };
    let inner = cx.inner(id, |op| matches!(op, Op::Flip { axes: a } if a == axes))?;
    let x = cx.only_operand(inner)?;
    cx.same_type(x, id).then_some(Rewrite::Existing(x))
}

fn select_operands(cx: &Ctx, id: NodeId) -> Option<(NodeId, NodeId, NodeId)> {
    if cx.g().node(id).op != Op::Select {
        return None;
    }
    match cx.g().operands(id).as_slice() {
        [c, a, b] => Some((*c, *a, *b)),
        _ => None,
    }
}

fn select_same(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let (_, a, b) = select_operands(cx, id)?;
    (a == b && cx.same_type(a, id)).then_some(Rewrite::Existing(a))
}

fn select_const_cond(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let (c, a, b) = select_operands(cx, id)?;
    let k = cx.konst(c)?;
    let pick = if all_bool(k, true) {
        a
    } else if all_bool(k, false) {
        b
    } else {
        return None;
    };
    cx.same_type(pick, id).then_some(Rewrite::Existing(pick))
}

fn idempotent_self(cx: &Ctx, id: NodeId) -> Option<Rewrite> {
    let n = cx.g().node(id);
    let Op::Binary(b) = n.op else { return None };
    let applies = match b {
        BinaryOp::And | BinaryOp::Or => true,
        BinaryOp::Max | BinaryOp::Min => !n.dtype.is_float(),
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Div
        | BinaryOp::Rem
        | BinaryOp::Pow
        | BinaryOp::Eq
        | BinaryOp::Ne
        | BinaryOp::Lt
        | BinaryOp::Le
        | BinaryOp::Gt
        | BinaryOp::Ge
        | BinaryOp::Xor => false,
    };
    let (x, y) = cx.binary(id, b)?;
    (applies && x == y && cx.same_type(x, id)).then_some(Rewrite::Existing(x))
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

/// How many rewrites may chain on one node (each rewrite of a node retries the rules on the
/// replacement); bounds the work if two rules ever undo each other.
const MAX_CHAIN: usize = 16;

fn type_str(dtype: DType, shape: &Shape) -> String {
    format!("{dtype}{shape}")
}

/// Marks `id` dead if every user is dead and it is neither an output nor always live, then
/// its operands likewise. Returns how many nodes were marked.
fn mark_dead(func: &Func, id: NodeId, dead: &mut BTreeSet<NodeId>) -> usize {
    let mut marked = 0;
    let mut stack = vec![id];
    while let Some(n) = stack.pop() {
        let can_die = !dead.contains(&n)
            && func.graph.get(n).is_some_and(|node| !always_live(&node.op))
            && !func.is_output(n)
            && func.graph.users(n).iter().all(|u| dead.contains(u));
        if can_die {
            dead.insert(n);
            marked += 1;
            stack.extend(func.graph.operands(n));
        }
    }
    marked
}

/// The state of one simplify run.
struct Run<'a> {
    func: &'a mut Func,
    opts: &'a SimplifyOptions,
    dead: BTreeSet<NodeId>,
    stats: PassStats,
}

impl Run<'_> {
    /// Applies `rw` (from `rule`) to `id`. Returns the replacement when it is a new node.
    fn apply(
        &mut self,
        rule: &'static str,
        id: NodeId,
        rw: Rewrite,
    ) -> Result<Option<NodeId>, PassError> {
        let fail = |source: RuleFailure| PassError::Rule {
            rule,
            node: id,
            source: Box::new(source),
        };
        let func = &mut *self.func;
        let (dtype, shape, loc) = {
            let n = func.graph.node(id);
            (n.dtype, n.shape.clone(), n.loc.clone())
        };
        let mut added = 0;
        let (new, created) = match rw {
            Rewrite::Existing(x) => (x, false),
            Rewrite::New { op, args } => {
                let mut ids = Vec::with_capacity(args.len());
                for a in args {
                    ids.push(match a {
                        Arg::Node(n) => n,
                        Arg::Const(c) => {
                            added += 1;
                            func.graph
                                .add_at(Op::Constant(c), &[], loc.clone())
                                .map_err(|e| fail(e.into()))?
                        }
                    });
                }
                let new = func
                    .graph
                    .add_at(op, &ids, loc)
                    .map_err(|e| fail(e.into()))?;
                added += 1;
                (new, true)
            }
        };
        if new == id || self.dead.contains(&new) {
            return Err(fail(RuleFailure::NotLive(new)));
        }
        let n = func.graph.node(new);
        if n.dtype != dtype || n.shape != shape {
            return Err(fail(RuleFailure::TypeChanged {
                before: type_str(dtype, &shape),
                after: type_str(n.dtype, &n.shape),
            }));
        }
        func.replace(id, new);
        let removed = mark_dead(func, id, &mut self.dead);
        if added > removed {
            return Err(fail(RuleFailure::Grew { added, removed }));
        }
        self.stats.added += added;
        self.stats.removed += removed;
        self.stats.rewritten += 1;
        *self.stats.rules.entry(rule).or_insert(0) += 1;
        Ok(created.then_some(new))
    }

    /// Applies the first rule of [`RULES`] that fires on `id`. Returns whether one fired and
    /// the new node it created, if any.
    fn rewrite_once(&mut self, id: NodeId) -> Result<(bool, Option<NodeId>), PassError> {
        let found = {
            let cx = Ctx {
                func: self.func,
                opts: self.opts,
                dead: &self.dead,
            };
            RULES
                .iter()
                .find_map(|r| (r.apply)(&cx, id).map(|rw| (r.name, rw)))
        };
        match found {
            Some((name, rw)) => Ok((true, self.apply(name, id, rw)?)),
            None => Ok((false, None)),
        }
    }
}

/// Folds constants and applies the rules of [`RULES`] to every node, in topological order,
/// retrying the rules on each replacement node, in the function and in every region of it
/// (recursively; see [`crate::region::everywhere`]). Nodes the rewrites orphan are removed
/// when the pass ends. Control-flow and `get` nodes are never rewritten here (that is
/// [`crate::control`]).
pub fn simplify(func: &mut Func, opts: &SimplifyOptions) -> Result<PassStats, PassError> {
    crate::region::everywhere("simplify", func, &mut |f| simplify_graph(f, opts))
}

/// [`simplify`] on the function's own graph, not its regions.
fn simplify_graph(func: &mut Func, opts: &SimplifyOptions) -> Result<PassStats, PassError> {
    func.check_outputs("simplify")?;
    let order = func
        .graph
        .topo_order()
        .map_err(|e| PassError::graph("simplify", e))?;
    let mut run = Run {
        func,
        opts,
        dead: BTreeSet::new(),
        stats: PassStats::default(),
    };
    for id in order {
        let mut cur = id;
        for _ in 0..MAX_CHAIN {
            if run.dead.contains(&cur) {
                break;
            }
            run.stats.visited += 1;
            match run.rewrite_once(cur)? {
                (true, Some(new)) => cur = new,
                (true, None) | (false, _) => break,
            }
        }
    }
    for id in &run.dead {
        run.func.graph.remove(*id);
    }
    Ok(run.stats)
}
