//! kiln's kernel IR: the layer between the graph optimiser and the backends.
//!
//! The fusion pass lowers a graph to a [`Program`] (a *kernel plan*); the backends (CPU
//! Cranelift JIT, WGSL) only lower a program, they never make fusion decisions. This crate
//! holds the IR, its text form ([`parse()`] and `Display`), the verifier ([`verify()`]) that
//! proves every memory access in bounds for every allowed binding of the symbols and returns
//! the program as a [`VerifiedProgram`] (what every backend takes, so none verifies again),
//! the binding of symbols to values ([`Program::bind`], the one home of the precondition
//! and buffer-length checks every engine makes), and an executor ([`execute()`], the
//! kernel-IR interpreter used in differential tests). It depends on `kiln-ir` only, never on
//! wgpu or Cranelift.
//!
//! # Model
//!
//! A program has
//!
//! * **symbols** (`N`, `T`) with preconditions: every symbol ranges over the integers
//!   `min..=max` (`max` is optional; producers declare `N >= 1` unless they know more).
//!   Kernels take the symbols as run-time arguments, so one program runs for every allowed
//!   binding.
//! * **buffers** `b0, b1, ...`: flat arrays of one [`kiln_ir::DType`] whose element count is a
//!   symbolic [`kiln_ir::Dim`]. A buffer is an `input "name"` (read-only), an `output "name"`,
//!   `state "name"` (parameters and optimiser moments, updated in place), a `const` (data in
//!   the plan) or `scratch` (temporary between kernels).
//! * **kernels** `k0, k1, ...` in execution order; each kernel completes before the next
//!   starts. An extent that evaluates to zero or less under a binding is an empty loop.
//!
//! Kernel kinds:
//!
//! * `loop`: an iteration domain (extents of loop variables `i0, i1, ...`), optional reduction
//!   axes (extents of `r0, r1, ...`) and a [`Body`]: a scalar expression DAG in SSA form
//!   (`v0, v1, ...`) followed by stores. `reduce_sum/max/min/prod(v) init c` nodes fold their
//!   operand over the whole reduction domain at each point of the iteration domain; several
//!   may share one kernel (mean and variance in one pass), and a reduction's operand may
//!   read another reduction's result: the reductions then run in stages
//!   ([`Body::stages`]), a softmax row's max before the sum of `exp(x - max)`, in one kernel.
//! * `matmul`: `C[b.., m, n] = sum_k A[b.., m, k] * B[b.., k, n]`. Operands are bodies over
//!   their logical coordinates that `yield` the element: a single load whose affine index
//!   carries the layout (strides, folded transposes, stride-0 broadcast batch, offsets; see
//!   [`IndexExpr::affine`]), or more nodes for a fused prologue. The epilogue body runs over
//!   `[b.., m, n]`, reads the accumulator with `acc`, may load bias/residual buffers, and
//!   stores one or more outputs.
//! * `conv2d`: NCHW/OIHW cross-correlation with stride, symmetric zero padding, dilation and
//!   groups. The `input` body yields the element at `[n, c, h, w]`, `weight` the element at
//!   `[o, c/groups, kh, kw]`, and the epilogue runs over `[n, o, oh, ow]` with `acc`. Padding
//!   contributes zeros without evaluating the input body.
//!
//! Contractions accumulate in the operands' dtype (which must agree and be numeric).
//!
//! # Control flow
//!
//! A program may carry a **schedule** ([`Step`], module [`schedule`]): a tree of kernels
//! `kN`, copies `copy bA -> bB`, counted loops `loop [reverse] t < {trip} { ... }` whose
//! induction symbol `t` (a declared symbol `>= 0`) kernels read like any other dim, while
//! loops `while { ... } test bP do { ... }` and branches `if bP { ... } else { ... }` on a
//! `bool[1]` predicate buffer. Without one ([`Program::schedule`] `None`) kernels run in
//! order. A schedule names every kernel exactly once, in pre-order; induction symbols
//! appear only in the index expressions of loop kernels inside their loop, and the bounds
//! prover knows `0 <= t <= trip - 1` there (see "Bounds proofs"). docs/control-flow.md
//! has the whole contract.
//!
//! # Index expressions
//!
//! Loads and stores address a flat buffer with an [`IndexExpr`]: integer expressions over
//! loop and reduction variables, symbols and integers (`i0*{N*784} + r0`), with `+ - *`,
//! floor division `e / d` and modulo `e % d` (in `0..d`) by a dim `d >= 1` (reshapes), and
//! value references `v3` (gathers). A dim atom prints bare when it is an integer or a
//! symbol, otherwise in braces: `{N*784}`, `{-1}`. The tree is kept as written.
//!
//! Loads come in three modes:
//!
//! * plain `load b3[idx]`: proven in bounds;
//! * masked `load b3[idx] if lo <= e < hi && ... else f32(0.0)`: reads only where every
//!   guard holds, otherwise yields the fill value (pad, concat, pooling windows). The index
//!   must be in bounds wherever the guards hold, and the verifier proves that by bounding
//!   every sub-expression of the index structurally equal to a guarded `e` by
//!   `[min lo, max hi - 1]`, so write the index with the guarded expression as a
//!   sub-tree: `load b0[i0*3 + (i1 - 1)] if 0 <= i1 - 1 < 3 else f32(0.0)`. A guard on a
//!   value (`if 0 <= v2 < 10`) makes a provably safe gather with a fill;
//! * checked `load checked b3[idx]`: for indices that read loaded values and cannot be
//!   bounded statically. **Contract:** an index outside `0..size` sets the program's error
//!   flag and the load returns the element at the clamped index (`0` or `size - 1`; the
//!   dtype's zero for an empty buffer), so no backend ever touches memory out of bounds; a
//!   backend reports the flag after the program as an error. The executor returns
//!   [`ExecError::IndexOutOfBounds`] at the first such load.
//!
//! Stores (`store b5[idx] = v3`) are always proven in bounds, may not read values (scatters
//! are not stores) and may not use reduction variables: they run once per point of the
//! iteration domain, after its reductions complete.
//!
//! # Scalar semantics
//!
//! Scalar ops mirror the graph ops ([`kiln_ir::UnaryOp`], [`kiln_ir::BinaryOp`], select,
//! cast) and their typing rules: floats compute in `f64` and round to the dtype (identical
//! to native `f32` arithmetic for `+ - * / sqrt`), integers wrap to their width, integer `div` floors and `rem`
//! takes the divisor's sign (integer division by zero is an error), `max`/`min` propagate
//! NaN, `round` is half-to-even, a cast from float to integer truncates toward zero, to
//! bool is `!= 0`. Float reductions and contractions accumulate in `f64` in the executor;
//! backends may accumulate in the dtype.
//!
//! # Execution order
//!
//! Backends may run the points of a kernel in any order and in parallel. Therefore a kernel
//! may read a buffer it also writes only with a plain load at exactly the index of every
//! store to it (an in-place elementwise update such as an SGD step), and a contraction's
//! operand bodies may not read what its epilogue writes. The producer of a program must
//! also keep each kernel's stores to one element from different points equal (store
//! indices are normally injective); the verifier does not prove injectivity, and the
//! executor runs points in row-major order.
//!
//! # Lowering notes (for the fusion pass)
//!
//! Reshape, permute, expand, slice and flip become index arithmetic (`/` and `%` when a
//! reshape does not line up with the loop nest); pad and concat become masked loads combined
//! with `select`; gather becomes a checked load, or a guarded one when a fill value is
//! wanted; `iota` is an `index<dtype>(...)` value; argmax takes two kernels (the maximum, then
//! `reduce_min` of `select(x == max or is_nan(x), r, size)`); scatter-add, which has no
//! store form, is a reduction over the source (`target[j] + sum_r select(index[r] == j,
//! src[r], 0)`) until a dedicated kernel kind exists.
//!
//! # Text form
//!
//! ```text
//! symbol N >= 1
//! b0 = input "x" f32[N*784]
//! b1 = state "fc1.weight" f32[100352]
//! b2 = state "fc1.bias" f32[128]
//! b3 = scratch f32[N*128]
//! b4 = output "y" f32[N]
//! b5 = const f32[2] [0.5, -1.0]
//! k0 = matmul m N k 784 n 128 {
//!   a {
//!     v0 = load b0[i0*784 + i1]
//!     yield v0
//!   }
//!   b {
//!     v0 = load b1[i1*784 + i0]      ; B[k, n] = W[n, k]: the transpose is folded
//!     yield v0
//!   }
//!   epilogue {
//!     v0 = acc
//!     v1 = load b2[i1]
//!     v2 = add(v0, v1)
//!     v3 = f32(0.0)
//!     v4 = max(v2, v3)
//!     store b3[i0*128 + i1] = v4
//!   }
//! }
//! k1 = loop [N] reduce [128] {
//!   v0 = load b3[i0*128 + r0]
//!   v1 = reduce_max(v0) init f32(-inf)
//!   store b4[i0] = v1
//! }
//! ```
//!
//! Grammar (`;` starts a comment):
//!
//! ```text
//! program  := (symbol | buffer | kernel)* [schedule]
//! symbol   := "symbol" NAME ">=" INT ["," "<=" INT]
//! buffer   := bK "=" ("input" STR | "output" STR | "state" STR | "scratch") DTYPE "[" dim "]"
//!           | bK "=" "const" DTYPE "[" dim "]" ["shape" "[" INT,* "]"] "[" value,* "]"
//! kernel   := kK "=" "loop" "[" dim,* "]" ["reduce" "[" dim,* "]"] body
//!           | kK "=" "matmul" ["batch" "[" dim,* "]"] "m" dim "k" dim "n" dim
//!                    "{" "a" body "b" body "epilogue" body "}"
//!           | kK "=" "conv2d" "n" dim "c" dim "h" dim "w" dim "o" dim "kernel" pair
//!                    "stride" pair "padding" pair "dilation" pair "groups" INT
//!                    "{" "input" body "weight" body "epilogue" body "}"
//! schedule := "schedule" steps
//! steps    := "{" step* "}"
//! step     := kK | "copy" bK "->" bK | "loop" ["reverse"] NAME "<" datom steps
//!           | "while" steps "test" bK "do" steps | "if" bK steps "else" steps
//! body     := "{" (vK "=" expr | "store" bK "[" index "]" "=" vK | "yield" vK)* "}"
//! expr     := DTYPE "(" value ")"                       ; constant, e.g. f32(-inf)
//!           | "load" ["checked"] bK "[" index "]" ["if" guard ("&&" guard)* "else" DTYPE "(" value ")"]
//!           | UNARY "(" vK ")" | BINARY "(" vK "," vK ")" | "select" "(" vK "," vK "," vK ")"
//!           | "cast" "<" DTYPE ">" "(" vK ")" | "index" "<" DTYPE ">" "(" index ")"
//!           | REDUCE "(" vK ")" "init" DTYPE "(" value ")" | "acc"
//! guard    := index "<=" index "<" index
//! index    := term (("+" | "-") term)*
//! term     := atom ("*" atom | "/" datom | "%" datom)*
//! atom     := INT | NAME | iK | rK | vK | "(" index ")" | "{" dim "}"
//! datom    := INT | NAME | "{" dim "}"
//! dim      := the kiln_ir::Dim grammar: ["-"] factor ("*" factor)* (("+" | "-") ...)*, factor ^ INT
//! ```
//!
//! UNARY, BINARY and REDUCE are the graph op names (`exp`, `add`, `reduce_sum`, ...). Ids are
//! numbered densely in order. Floats print in the shortest form that parses back to the
//! same bits (`inf`, `nan`, and `nan(0x7fc00001)` for other NaN payloads), so
//! `parse(&program.to_string()) == Ok(program)` for every program.
//!
//! # Verifier rules
//!
//! [`verify()`] collects every violation of:
//!
//! 1. symbols: valid, unique names that do not look like ids; `min <= max`; every symbol
//!    used anywhere is declared;
//! 2. buffers: size provably `>= 0`; names unique per kind; constants match dtype and size;
//! 3. bodies: operands defined earlier (SSA); dtypes follow the graph typing rules; fill and
//!    init values have the right dtype; values used as indices are integers; variables lie in
//!    the body's domain; `reduce_*` only in loop kernels with reduction axes (which need at
//!    least one), `acc` only in epilogues; operand bodies `yield` and do not store, other
//!    bodies store and do not yield; contraction operands agree on a numeric dtype;
//! 4. reduction phases: stored values and store indices do not vary over the reduction (a
//!    reduced operand may read earlier stages' results, [`Body::stages`]);
//! 5. stores target output, scratch or state buffers only, with the stored dtype;
//! 6. every plain and masked load and every store is in bounds (next section);
//! 7. ordering: no kernel reads a scratch or output buffer before an earlier kernel wrote it;
//!    every output is written; the in-place rule of "Execution order" holds;
//! 8. conv2d geometry: sizes >= 1, channels divisible by groups, output size a polynomial
//!    `>= 1` for every binding;
//! 9. schedule: every kernel once in pre-order, nesting at most
//!    [`schedule::MAX_SCHEDULE_DEPTH`], induction symbols declared `>= 0`, unique, used only
//!    in loop kernels' index expressions inside their loop; predicates `bool[1]` and written
//!    before read; copies between distinct buffers of one dtype and provably equal size into
//!    a writable one. Rule 7 follows the control flow: a loop body's writes count after the
//!    loop, a while body's do not, an if's are those of both branches.
//!
//! Errors print as `k1: v0 = load b0[i0*10 + r0 + 1]: index may exceed the last element of
//! b0: cannot prove N*10 <= N*10-1 for all N >= 1`.
//!
//! # Bounds proofs
//!
//! For an access with index `e` into a buffer of size `S`, the verifier computes polynomials
//! `lo` and `hi` in the symbols with `lo <= e <= hi` at every point of the domain, and then
//! proves `lo >= 0` and `S - 1 - hi >= 0` for every allowed binding.
//!
//! *Interval rule.* `e` is read as an affine form `c0 + sum_j c_j * a_j` whose coefficients
//! `c_j` are polynomials in the symbols and whose atoms `a_j` are loop variables `i_k` (range
//! `[0, extent_k - 1]`), reduction variables (likewise), guarded sub-expressions (range
//! `[min lo, max hi - 1]` of the guard, or the sub-expression's own range where that is
//! provably tighter), floor divisions and modulos. Equal variables are merged before ranges
//! are applied, so `i0*10 - i0*9` has coefficient 1. A coefficient proven `>= 0` takes
//! `c*lo_a .. c*hi_a`, one proven `<= 0` takes `c*hi_a .. c*lo_a`; a coefficient of unknown
//! sign, a product of two variable terms, or a value reference fails the proof.
//! `floor(a / d)` with `d` proven `>= 1` and `a` in `[l, h]` lies in
//! `[floor(l/d), floor(h/d)]`; each floor of a polynomial `p` is computed by splitting
//! `p = d*q + r` term by term (for `d` a single term `c*m`, a term whose monomial `m` divides
//! takes `div_euclid`/`rem_euclid` of its coefficient) and is exactly `q` when `r` (or
//! `r +- d`) is proven in `0..=d-1`; otherwise it is bounded by `q <= . <= q + r` for `r >= 0`,
//! `q - 1 <= .` for `r >= -d`, `. <= q` for `r <= d - 1`, or `0 <= . <= p` for `p >= 0`.
//! `a % d` lies in `[l, h]` if `0 <= l` and `h <= d - 1` are proven, else in `[0, d - 1]`.
//! A loop whose extent is 0 for some binding has no points there, so the ranges only need to
//! hold where the extents are positive, which they do.
//!
//! *Induction symbols.* Inside a loop whose induction symbol `t` has trip count `trip`, a
//! polynomial `a + b*t` (`a`, `b` free of `t`; a higher power of `t` fails) is proven
//! `>= 0` by proving `a >= 0` when `b >= 0` is proven, or `a + b*(trip - 1) >= 0` when
//! `b <= 0` is: its smallest value over `0 <= t <= trip - 1`. So `load xs[{t*4} + i0]`
//! over `i0 < 4` is in bounds of `xs: f32[T*4]` in `loop t < {T}`.
//!
//! *Proof rule.* A polynomial `P` is proven `>= 0` for all bindings `min_s <= s <= max_s`
//! when, after substituting `s = min_s + t_s` and expanding to `Q(t) = q_0 + sum q_m t^m`
//! (each `t_s >= 0`), `q_0 + sum over q_m < 0 of q_m * prod_s (max_s - min_s)^(e_s) >= 0`,
//! where a negative term whose symbols do not all have an upper bound makes the rule fail.
//! In words: positive terms are dropped (they are `>= 0`), and each negative term is charged
//! its largest magnitude. With no upper bounds this is "every coefficient of `Q` is
//! non-negative": `N*10 - 1 - (N*10 - 1) = 0` holds, `N - 2` fails for `N >= 1`, and
//! `N^2 - N` holds (`Q = t^2 + t`). Arithmetic is exact (`i128`, checked); overflow or an
//! oversized expansion fails the proof. Divisibility facts are not needed: symbolic shapes
//! are polynomials because graph-level division is exact.

pub mod bind;
mod bounds;
pub mod debug;
pub mod exec;
pub mod ids;
pub mod index;
pub mod memplan;
pub mod parse;
mod poly;
mod print;
pub mod program;
pub mod scalar;
pub mod schedule;
mod symbol;
pub mod verify;
pub mod width;

pub use bind::{BindError, Binding};
pub use debug::{CheckKind, CheckSite};
pub use exec::{ExecError, allocate, execute};
pub use ids::{BufferId, KernelId, LoopVar, RedVar, ValueId};
pub use index::{Affine, Guard, IndexExpr};
pub use parse::{ParseError, parse};
pub use program::{
    Body, BodyDomain, BodyRole, Buffer, BufferKind, Conv2dGeometry, Conv2dKernel, Expr, Kernel,
    Load, LoadMode, LoopKernel, MatmulKernel, Program, ReductionStage, Store, Symbol,
};
pub use scalar::{Scalar, ScalarError};
pub use schedule::{IfStep, LoopStep, Step, WhileStep};
pub use verify::{VerifiedProgram, VerifyError, VerifyErrors, verify};
pub use width::{IndexWidth, IndexWidthError, WidthScope, check_index_width};
