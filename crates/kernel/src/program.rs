//! The kernel plan: symbols with their preconditions, buffers, and an ordered list of
//! kernels (loop nests and contractions) whose bodies are small scalar expression DAGs.

use crate::debug::{CheckKind, CheckSite};
use crate::ids::{BufferId, KernelId, ValueId};
use crate::index::{Guard, IndexExpr};
use crate::poly::{Facts, Poly};
use crate::scalar::Scalar;
use crate::schedule::Step;
pub use crate::symbol::Symbol;
use kiln_ir::{Array, BinaryOp, DType, Dim, ReduceOp, UnaryOp};

/// What a buffer holds and who owns it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BufferKind {
    /// A named input, filled by the caller, read-only.
    Input(String),
    /// A named output, written by the program.
    Output(String),
    /// Persistent named state (parameters, optimiser moments) read and updated in place.
    State(String),
    /// Constant data baked into the plan, read-only.
    Constant(Array),
    /// Temporary storage between kernels.
    Scratch,
}

impl BufferKind {
    /// The printed keyword: `input`, `output`, `state`, `const`, `scratch`.
    pub fn keyword(&self) -> &'static str {
        match self {
            BufferKind::Input(_) => "input",
            BufferKind::Output(_) => "output",
            BufferKind::State(_) => "state",
            BufferKind::Constant(_) => "const",
            BufferKind::Scratch => "scratch",
        }
    }

    /// True for kinds a kernel may store to (output, scratch, state).
    pub fn is_writable(&self) -> bool {
        matches!(
            self,
            BufferKind::Output(_) | BufferKind::Scratch | BufferKind::State(_)
        )
    }

    /// True for kinds that hold data before the program runs (input, state, const).
    pub fn is_initialised(&self) -> bool {
        matches!(
            self,
            BufferKind::Input(_) | BufferKind::State(_) | BufferKind::Constant(_)
        )
    }
}

/// A flat, typed buffer of `size` elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Buffer {
    /// Element type.
    pub dtype: DType,
    /// Element count, possibly symbolic.
    pub size: Dim,
    /// Role and ownership.
    pub kind: BufferKind,
}

/// How a load reads memory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LoadMode {
    /// The index is proven in bounds by the verifier.
    Plain,
    /// Reads only where every guard holds; elsewhere yields `fill` (pad, concat, windows).
    /// The index must be in bounds wherever the guards hold, which the verifier proves.
    Masked {
        /// Conditions, all of which must hold.
        guards: Vec<Guard>,
        /// Value where a guard fails; of the buffer's dtype.
        fill: Scalar,
    },
    /// The index depends on loaded data and is checked at run time (gather): an index
    /// outside `0..size` sets the program's error flag and reads the clamped element
    /// (`0` or `size - 1`); the executor stops with [`crate::ExecError::IndexOutOfBounds`].
    Checked,
}

/// A load `load b3[index]` (plain, masked or checked).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Load {
    /// Buffer read.
    pub buffer: BufferId,
    /// Flat element index.
    pub index: IndexExpr,
    /// Bounds discipline.
    pub mode: LoadMode,
}

/// One node of a body's scalar expression DAG. Operands name earlier values of the same body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// A typed constant.
    Const(Scalar),
    /// The value of an index expression converted to `dtype` (iota, comparisons on indices).
    Index {
        /// Result type.
        dtype: DType,
        /// The integer expression.
        index: IndexExpr,
    },
    /// A buffer element.
    Load(Load),
    /// Elementwise unary op (graph semantics).
    Unary(UnaryOp, ValueId),
    /// Elementwise binary op (graph semantics); both operands share a dtype.
    Binary(BinaryOp, ValueId, ValueId),
    /// `cond ? a : b`.
    Select(ValueId, ValueId, ValueId),
    /// Conversion with cast semantics.
    Cast(DType, ValueId),
    /// The reduction of `value` over the loop kernel's reduction domain, starting from `init`.
    /// Only in loop kernels with reduction axes. The operand may read the results of other
    /// reductions of the body: they run first ([`Body::stages`]).
    Reduce {
        /// Combining op.
        op: ReduceOp,
        /// The reduced operand, evaluated once per reduction point.
        value: ValueId,
        /// Starting value, of the operand's dtype.
        init: Scalar,
    },
    /// A contraction's accumulated value at the current output point. Only in epilogues.
    Acc,
}

/// A store `store b5[index] = v3`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Store {
    /// Buffer written.
    pub buffer: BufferId,
    /// Flat element index (proven in bounds; no values, no reduction variables).
    pub index: IndexExpr,
    /// The stored value, of the buffer's dtype.
    pub value: ValueId,
}

/// A scalar program run at every point of an iteration domain: values in SSA order, then
/// stores. Contraction operand bodies instead yield one value (`result`) and store nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Body {
    /// The expression DAG, in definition order.
    pub values: Vec<Expr>,
    /// Stores performed at each point (after any reduction completes).
    pub stores: Vec<Store>,
    /// The yielded value of an operand body.
    pub result: Option<ValueId>,
    /// The debug table: the graph op behind each run-time check of this body (checked
    /// loads, integer divisions), so a backend's failed check names the user's op. It does
    /// not change what the body computes.
    pub checks: Vec<CheckSite>,
}

impl Expr {
    /// Every index expression the node reads: an `index<..>` node's own, a load's index and
    /// its guards' bounds and expressions.
    pub fn indices(&self) -> Vec<&IndexExpr> {
        match self {
            Expr::Index { index, .. } => vec![index],
            Expr::Load(l) => {
                let mut v = vec![&l.index];
                if let LoadMode::Masked { guards, .. } = &l.mode {
                    for g in guards {
                        v.extend([&g.lo, &g.expr, &g.hi]);
                    }
                }
                v
            }
            Expr::Const(_)
            | Expr::Unary(..)
            | Expr::Binary(..)
            | Expr::Select(..)
            | Expr::Cast(..)
            | Expr::Reduce { .. }
            | Expr::Acc => Vec::new(),
        }
    }

    /// The values the node reads: values inside its index expressions, then its operands.
    pub fn dependencies(&self) -> Vec<usize> {
        let mut d: Vec<usize> = self
            .indices()
            .iter()
            .flat_map(|ix| ix.values())
            .map(|v| v.index())
            .collect();
        match self {
            Expr::Unary(_, a) | Expr::Cast(_, a) => d.push(a.index()),
            Expr::Binary(_, a, b) => d.extend([a.index(), b.index()]),
            Expr::Select(c, a, b) => d.extend([c.index(), a.index(), b.index()]),
            Expr::Reduce { value, .. } => d.push(value.index()),
            Expr::Const(_) | Expr::Index { .. } | Expr::Load(_) | Expr::Acc => {}
        }
        d
    }

    /// True if one of the node's index expressions mentions a reduction variable.
    pub fn uses_red(&self) -> bool {
        self.indices().iter().any(|ix| ix.uses_red())
    }
}

impl Body {
    /// [`Expr::dependencies`] of every value, in order.
    pub fn dependencies(&self) -> Vec<Vec<usize>> {
        self.values.iter().map(Expr::dependencies).collect()
    }

    /// The reduction stage of every value: a `reduce` node's is one more than its
    /// operand's, any other value's is the largest of its operands' (0 when it reads no
    /// reduced result). At each point of a loop kernel the reductions run stage by stage:
    /// the stage-`s` reductions fold their operands (values of stage `s - 1`, which may read
    /// the results of every earlier stage) over the whole reduction domain, then stage
    /// `s + 1` begins; a softmax row is its max (stage 1), then the sum of `exp(x - max)`
    /// (stage 2), in one kernel that reads each row once from memory.
    pub fn stages(&self) -> Vec<u32> {
        let mut stage: Vec<u32> = Vec::with_capacity(self.values.len());
        for e in &self.values {
            let of = |d: usize| stage.get(d).copied().unwrap_or(0);
            let s = match e {
                Expr::Reduce { value, .. } => of(value.index()).saturating_add(1),
                _ => e.dependencies().into_iter().map(of).max().unwrap_or(0),
            };
            stage.push(s);
        }
        stage
    }

    /// The reduction stages of the body, in order (empty without reductions): for stage
    /// `s`, its `reduce` nodes and every value their operands read, transitively, through
    /// any value but a `reduce` node of an earlier stage (marked as read, not entered).
    pub fn reduction_stages(&self) -> Vec<ReductionStage> {
        let n = self.values.len();
        let stage = self.stages();
        let deps = self.dependencies();
        let is_reduce = |i: usize| matches!(self.values[i], Expr::Reduce { .. });
        let last = (0..n)
            .filter(|&i| is_reduce(i))
            .map(|i| stage[i])
            .max()
            .unwrap_or(0);
        (1..=last)
            .map(|s| {
                let reduces: Vec<usize> =
                    (0..n).filter(|&i| is_reduce(i) && stage[i] == s).collect();
                let mut reads = vec![false; n];
                let mut stack: Vec<usize> = reduces
                    .iter()
                    .flat_map(|&r| deps[r].iter().copied())
                    .collect();
                while let Some(v) = stack.pop() {
                    if v < n && !reads[v] {
                        reads[v] = true;
                        if !is_reduce(v) {
                            stack.extend(deps[v].iter().copied());
                        }
                    }
                }
                ReductionStage { reduces, reads }
            })
            .collect()
    }

    /// An empty body.
    pub fn new() -> Body {
        Body::default()
    }

    /// Appends a value and returns its id.
    pub fn push(&mut self, e: Expr) -> ValueId {
        self.values.push(e);
        ValueId(u32::try_from(self.values.len() - 1).unwrap_or(u32::MAX))
    }

    /// Appends a plain load and returns its id.
    pub fn load(&mut self, buffer: BufferId, index: IndexExpr) -> ValueId {
        self.push(Expr::Load(Load {
            buffer,
            index,
            mode: LoadMode::Plain,
        }))
    }

    /// Appends a store.
    pub fn store(&mut self, buffer: BufferId, index: IndexExpr, value: ValueId) {
        self.stores.push(Store {
            buffer,
            index,
            value,
        });
    }

    /// The node defining `v`, if any.
    pub fn value(&self, v: ValueId) -> Option<&Expr> {
        self.values.get(v.index())
    }
}

/// One reduction stage of a body ([`Body::reduction_stages`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReductionStage {
    /// The stage's `reduce` nodes, in order.
    pub reduces: Vec<usize>,
    /// Per value: read by the stage's reduced operands (the operands themselves included,
    /// earlier stages' `reduce` nodes included, not looked through).
    pub reads: Vec<bool>,
}

/// An elementwise or reduction loop nest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LoopKernel {
    /// Extent of each loop variable `i0, i1, ...`.
    pub domain: Vec<Dim>,
    /// Extent of each reduction variable `r0, r1, ...` (empty: no reduction).
    pub reduce: Vec<Dim>,
    /// The body; its `reduce` nodes fold over the reduction domain.
    pub body: Body,
}

/// A batched matrix product `C[b.., m, n] = sum_k A[b.., m, k] * B[b.., k, n]`.
///
/// Each operand is a body over its logical coordinates (`a`: `[batch.., m, k]`, `b`:
/// `[batch.., k, n]`) that yields the element; a plain operand is one load whose affine
/// index carries its layout (strides, transposes, broadcast batch), and extra nodes form a
/// fused prologue. The epilogue runs over `[batch.., m, n]`, reads the accumulator with an
/// `acc` node and stores the results.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatmulKernel {
    /// Batch extents.
    pub batch: Vec<Dim>,
    /// Rows of A and C.
    pub m: Dim,
    /// Contraction length.
    pub k: Dim,
    /// Columns of B and C.
    pub n: Dim,
    /// Operand A over `[batch.., m, k]`.
    pub a: Body,
    /// Operand B over `[batch.., k, n]`.
    pub b: Body,
    /// Epilogue over `[batch.., m, n]`.
    pub epilogue: Body,
}

/// The geometry of a 2-D convolution (cross-correlation), NCHW input, OIHW weight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    /// Batch.
    pub n: Dim,
    /// Input channels.
    pub c: Dim,
    /// Input height.
    pub h: Dim,
    /// Input width.
    pub w: Dim,
    /// Output channels.
    pub o: Dim,
    /// Kernel size (height, width).
    pub kernel: [u64; 2],
    /// Stride (height, width).
    pub stride: [u64; 2],
    /// Zero padding on both sides (height, width).
    pub padding: [u64; 2],
    /// Dilation (height, width).
    pub dilation: [u64; 2],
    /// Channel groups; `c` and `o` are multiples of it.
    pub groups: u64,
}

impl Conv2dGeometry {
    /// Output height and width, `floor((h + 2p - d(k-1) - 1) / s) + 1`, when the floor is
    /// exactly a polynomial for every allowed binding (always for known sizes and for
    /// stride 1).
    pub fn output_hw(&self, symbols: &[Symbol]) -> Option<(Dim, Dim)> {
        let facts = Facts::new(symbols);
        let one = |axis: usize, size: &Dim| -> Option<Dim> {
            let size = Poly::from_dim(size).ok()?;
            let span = i128::from(self.dilation[axis])
                .checked_mul(i128::from(self.kernel[axis]).checked_sub(1)?)?
                .checked_add(1)?;
            let pad = i128::from(self.padding[axis]).checked_mul(2)?;
            let num = size.add_const(pad.checked_sub(span)?).ok()?;
            if self.stride[axis] == 0 || !facts.nonneg(&num) {
                return None;
            }
            let q = facts.floor_div_exact(&num, &Poly::constant(i128::from(self.stride[axis])))?;
            q.add_const(1).ok()?.to_dim().ok()
        };
        Some((one(0, &self.h)?, one(1, &self.w)?))
    }

    /// Channels per group (`c / groups`), if exact.
    pub fn group_channels(&self) -> Option<Dim> {
        self.per_group(&self.c)
    }

    /// Output channels per group (`o / groups`), if exact.
    pub fn group_outputs(&self) -> Option<Dim> {
        self.per_group(&self.o)
    }

    fn per_group(&self, d: &Dim) -> Option<Dim> {
        let g = i64::try_from(self.groups).ok().filter(|&g| g >= 1)?;
        d.exact_div(&Dim::known(g as u64))
    }
}

/// A 2-D convolution with an input prologue body over `[n, c, h, w]`, a weight body over
/// `[o, c/groups, kh, kw]` and an epilogue over `[n, o, oh, ow]` (which reads `acc`).
/// Padding contributes zeros to the sum without evaluating the input body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dKernel {
    /// Sizes, stride, padding, dilation, groups.
    pub geometry: Conv2dGeometry,
    /// The input element at `[n, c, h, w]`.
    pub input: Body,
    /// The weight element at `[o, c/groups, kh, kw]`.
    pub weight: Body,
    /// Epilogue over `[n, o, oh, ow]`.
    pub epilogue: Body,
}

/// One kernel of a program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Elementwise/reduction loop nest.
    Loop(LoopKernel),
    /// Matrix product with prologue and epilogue.
    Matmul(MatmulKernel),
    /// 2-D convolution with prologue and epilogue.
    Conv2d(Conv2dKernel),
}

/// Which body of a kernel (used in messages and by [`Kernel::bodies`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyRole {
    /// The body of a loop kernel.
    Loop,
    /// Matmul operand A.
    MatmulA,
    /// Matmul operand B.
    MatmulB,
    /// Conv2d input operand.
    ConvInput,
    /// Conv2d weight operand.
    ConvWeight,
    /// A contraction epilogue.
    Epilogue,
}

impl BodyRole {
    /// The printed block name (`a`, `b`, `input`, `weight`, `epilogue`; empty for a loop).
    pub fn name(self) -> &'static str {
        match self {
            BodyRole::Loop => "",
            BodyRole::MatmulA => "a",
            BodyRole::MatmulB => "b",
            BodyRole::ConvInput => "input",
            BodyRole::ConvWeight => "weight",
            BodyRole::Epilogue => "epilogue",
        }
    }

    /// True for operand bodies (they yield a value instead of storing).
    pub fn is_operand(self) -> bool {
        matches!(
            self,
            BodyRole::MatmulA | BodyRole::MatmulB | BodyRole::ConvInput | BodyRole::ConvWeight
        )
    }
}

/// A body together with the iteration domain its loop variables range over.
#[derive(Clone, Debug)]
pub struct BodyDomain<'a> {
    /// Which body.
    pub role: BodyRole,
    /// The body.
    pub body: &'a Body,
    /// Extents of `i0, i1, ...`; `None` if they cannot be computed (bad conv geometry).
    pub domain: Option<Vec<Dim>>,
    /// Extents of `r0, r1, ...` (loop kernels only).
    pub reduce: Vec<Dim>,
}

impl Kernel {
    /// Every body of the kernel (loop body; matmul `a`, `b`, epilogue; conv input, weight,
    /// epilogue), without domains.
    pub fn body_list(&self) -> Vec<&Body> {
        match self {
            Kernel::Loop(k) => vec![&k.body],
            Kernel::Matmul(k) => vec![&k.a, &k.b, &k.epilogue],
            Kernel::Conv2d(k) => vec![&k.input, &k.weight, &k.epilogue],
        }
    }

    /// [`Kernel::body_list`], mutably.
    pub fn body_list_mut(&mut self) -> Vec<&mut Body> {
        match self {
            Kernel::Loop(k) => vec![&mut k.body],
            Kernel::Matmul(k) => vec![&mut k.a, &mut k.b, &mut k.epilogue],
            Kernel::Conv2d(k) => vec![&mut k.input, &mut k.weight, &mut k.epilogue],
        }
    }

    /// The debug table's sentence for a failed check of `kind` in this kernel (see
    /// [`crate::debug::describe`]); `None` when the table names no op.
    pub fn describe_check(&self, kind: CheckKind) -> Option<String> {
        crate::debug::describe(self.body_list().into_iter().flat_map(|b| &b.checks), kind)
    }

    /// The printed mnemonic: `loop`, `matmul`, `conv2d`.
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::Loop(_) => "loop",
            Kernel::Matmul(_) => "matmul",
            Kernel::Conv2d(_) => "conv2d",
        }
    }

    /// Every body with its domain, in execution order of evaluation (operands first).
    pub fn bodies(&self, symbols: &[Symbol]) -> Vec<BodyDomain<'_>> {
        match self {
            Kernel::Loop(k) => vec![BodyDomain {
                role: BodyRole::Loop,
                body: &k.body,
                domain: Some(k.domain.clone()),
                reduce: k.reduce.clone(),
            }],
            Kernel::Matmul(k) => {
                let with = |tail: [&Dim; 2]| {
                    let mut d = k.batch.clone();
                    d.extend(tail.into_iter().cloned());
                    Some(d)
                };
                vec![
                    BodyDomain {
                        role: BodyRole::MatmulA,
                        body: &k.a,
                        domain: with([&k.m, &k.k]),
                        reduce: Vec::new(),
                    },
                    BodyDomain {
                        role: BodyRole::MatmulB,
                        body: &k.b,
                        domain: with([&k.k, &k.n]),
                        reduce: Vec::new(),
                    },
                    BodyDomain {
                        role: BodyRole::Epilogue,
                        body: &k.epilogue,
                        domain: with([&k.m, &k.n]),
                        reduce: Vec::new(),
                    },
                ]
            }
            Kernel::Conv2d(k) => {
                let g = &k.geometry;
                let input = vec![g.n.clone(), g.c.clone(), g.h.clone(), g.w.clone()];
                let weight = g.group_channels().map(|cg| {
                    vec![
                        g.o.clone(),
                        cg,
                        Dim::known(g.kernel[0]),
                        Dim::known(g.kernel[1]),
                    ]
                });
                let out = g
                    .output_hw(symbols)
                    .map(|(oh, ow)| vec![g.n.clone(), g.o.clone(), oh, ow]);
                vec![
                    BodyDomain {
                        role: BodyRole::ConvInput,
                        body: &k.input,
                        domain: Some(input),
                        reduce: Vec::new(),
                    },
                    BodyDomain {
                        role: BodyRole::ConvWeight,
                        body: &k.weight,
                        domain: weight,
                        reduce: Vec::new(),
                    },
                    BodyDomain {
                        role: BodyRole::Epilogue,
                        body: &k.epilogue,
                        domain: out,
                        reduce: Vec::new(),
                    },
                ]
            }
        }
    }
}

/// A kernel plan: what the fusion pass produces and every backend lowers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Program {
    /// Declared symbols with their preconditions.
    pub symbols: Vec<Symbol>,
    /// Buffers; `b<k>` is `buffers[k]`.
    pub buffers: Vec<Buffer>,
    /// Kernels; `k<k>` is `kernels[k]`. Without a schedule they run in this order.
    pub kernels: Vec<Kernel>,
    /// The structured control flow over the kernels (see [`Step`]); `None` runs every
    /// kernel once, in order. A schedule names every kernel exactly once, in pre-order
    /// `k0, k1, ...`, so the kernels of a loop body or a branch are a contiguous range.
    pub schedule: Option<Vec<Step>>,
}

impl Program {
    /// An empty program.
    pub fn new() -> Program {
        Program::default()
    }

    /// Declares a symbol with its range.
    pub fn add_symbol(&mut self, name: &str, min: u64, max: Option<u64>) {
        self.symbols.push(Symbol {
            name: name.to_string(),
            min,
            max,
        });
    }

    /// Adds a buffer and returns its id.
    pub fn add_buffer(&mut self, dtype: DType, size: impl Into<Dim>, kind: BufferKind) -> BufferId {
        self.buffers.push(Buffer {
            dtype,
            size: size.into(),
            kind,
        });
        BufferId(u32::try_from(self.buffers.len() - 1).unwrap_or(u32::MAX))
    }

    /// Appends a kernel and returns its id.
    pub fn add_kernel(&mut self, kernel: Kernel) -> KernelId {
        self.kernels.push(kernel);
        KernelId(u32::try_from(self.kernels.len() - 1).unwrap_or(u32::MAX))
    }

    /// The buffer `id`, if it exists.
    pub fn buffer(&self, id: BufferId) -> Option<&Buffer> {
        self.buffers.get(id.index())
    }

    /// The kernel `id`, if it exists.
    pub fn kernel(&self, id: KernelId) -> Option<&Kernel> {
        self.kernels.get(id.index())
    }

    /// The symbol named `name`, if declared.
    pub fn symbol(&self, name: &str) -> Option<&Symbol> {
        self.symbols.iter().find(|s| s.name == name)
    }

    fn find(&self, pred: impl Fn(&BufferKind) -> bool) -> Option<BufferId> {
        self.buffers
            .iter()
            .position(|b| pred(&b.kind))
            .and_then(|i| u32::try_from(i).ok())
            .map(BufferId)
    }

    /// The input buffer named `name`.
    pub fn input(&self, name: &str) -> Option<BufferId> {
        self.find(|k| matches!(k, BufferKind::Input(n) if n == name))
    }

    /// The output buffer named `name`.
    pub fn output(&self, name: &str) -> Option<BufferId> {
        self.find(|k| matches!(k, BufferKind::Output(n) if n == name))
    }

    /// The state buffer named `name`.
    pub fn state(&self, name: &str) -> Option<BufferId> {
        self.find(|k| matches!(k, BufferKind::State(n) if n == name))
    }
}

impl Program {
    /// The schedule the program runs: its explicit one, or every kernel in order.
    pub fn steps(&self) -> std::borrow::Cow<'_, [Step]> {
        match &self.schedule {
            Some(s) => std::borrow::Cow::Borrowed(s.as_slice()),
            None => std::borrow::Cow::Owned(
                (0..self.kernels.len())
                    .map(|k| Step::Kernel(KernelId(u32::try_from(k).unwrap_or(u32::MAX))))
                    .collect(),
            ),
        }
    }

    /// True if the program has control flow or copies (a schedule other than its kernels
    /// in order).
    pub fn has_control_flow(&self) -> bool {
        self.schedule.as_ref().is_some_and(|s| {
            s.len() != self.kernels.len()
                || s.iter()
                    .enumerate()
                    .any(|(i, st)| *st != Step::Kernel(KernelId(i as u32)))
        })
    }

    /// The induction symbols of the schedule's loops, in pre-order.
    pub fn induction_symbols(&self) -> Vec<&str> {
        let mut out = Vec::new();
        if let Some(s) = &self.schedule {
            crate::schedule::walk(s, &mut |st, _, _| {
                if let Step::Loop(l) = st {
                    out.push(l.var.as_str());
                }
            });
        }
        out
    }

    /// True if `name` is the induction symbol of a loop of the schedule.
    pub fn is_induction(&self, name: &str) -> bool {
        self.induction_symbols().contains(&name)
    }
}

impl Kernel {
    /// Renames every buffer the kernel loads or stores.
    pub fn map_buffers(&mut self, f: &mut impl FnMut(BufferId) -> BufferId) {
        let bodies = match self {
            Kernel::Loop(k) => vec![&mut k.body],
            Kernel::Matmul(k) => vec![&mut k.a, &mut k.b, &mut k.epilogue],
            Kernel::Conv2d(k) => vec![&mut k.input, &mut k.weight, &mut k.epilogue],
        };
        for b in bodies {
            for e in &mut b.values {
                if let Expr::Load(l) = e {
                    l.buffer = f(l.buffer);
                }
            }
            for s in &mut b.stores {
                s.buffer = f(s.buffer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(h: Dim, kernel: u64, stride: u64, padding: u64) -> Conv2dGeometry {
        Conv2dGeometry {
            n: Dim::sym("N"),
            c: Dim::known(6),
            h: h.clone(),
            w: h,
            o: Dim::known(4),
            kernel: [kernel, kernel],
            stride: [stride, stride],
            padding: [padding, padding],
            dilation: [1, 1],
            groups: 2,
        }
    }

    #[test]
    fn conv_output_sizes() {
        let syms = [Symbol {
            name: "M".into(),
            min: 2,
            max: None,
        }];
        let m = Dim::sym("M");
        let two_m = &m * &Dim::known(2);
        // floor((2M + 2 - 3) / 2) + 1 = M.
        let g = geometry(two_m, 3, 2, 1);
        assert_eq!(g.output_hw(&syms), Some((m.clone(), m.clone())));
        // floor((M - 1) / 2) + 1 is not a polynomial.
        assert_eq!(geometry(m.clone(), 3, 2, 1).output_hw(&syms), None);
        // Stride 1: M + 2 - 3 + 1 = M.
        assert_eq!(
            geometry(m.clone(), 3, 1, 1).output_hw(&syms).map(|d| d.0),
            Some(m.clone())
        );
        // A 5x5 kernel needs M + 2 >= 5, which M >= 2 does not give.
        assert_eq!(geometry(m.clone(), 5, 1, 1).output_hw(&syms), None);
        assert_eq!(
            geometry(Dim::known(32), 3, 2, 1).output_hw(&[]),
            Some((Dim::known(16), Dim::known(16)))
        );
        let g = geometry(Dim::known(8), 3, 1, 0);
        assert_eq!(g.group_channels(), Some(Dim::known(3)));
        assert_eq!(g.group_outputs(), Some(Dim::known(2)));
        let odd = Conv2dGeometry {
            groups: 4,
            ..g.clone()
        };
        assert_eq!(odd.group_channels(), None);
        let huge = Conv2dGeometry {
            groups: u64::MAX,
            ..g
        };
        assert_eq!(huge.group_channels(), None);
    }
}
