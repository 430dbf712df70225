//! Structured control flow over kernels: a program's *schedule*, a tree of steps (kernels,
//! buffer copies, counted loops with an induction symbol, while loops and ifs on a
//! predicate buffer). See the crate docs, "Control flow".

use crate::ids::{BufferId, KernelId};
use kiln_ir::Dim;

/// Most nesting of loop, while and if steps in a schedule (the verifier's limit; the graph
/// IR allows regions 32 deep, and each region adds at most one level).
pub const MAX_SCHEDULE_DEPTH: usize = 64;

/// A counted loop: `body` runs `trip` times with the induction symbol `var` set to
/// `0, 1, ..., trip - 1` (`trip - 1` down to `0` when `reverse`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LoopStep {
    /// The induction symbol: a declared symbol (minimum 0) that kernels of the body read
    /// like any other dim; the verifier knows `0 <= var <= trip - 1` inside the body.
    pub var: String,
    /// The number of iterations, over the program's (non-induction) symbols.
    pub trip: Dim,
    /// Iterations run from `trip - 1` down to 0.
    pub reverse: bool,
    /// The steps of one iteration.
    pub body: Vec<Step>,
}

/// A while loop: run `cond`, read the one-element `bool` buffer `pred`; while it holds,
/// run `body` and repeat.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WhileStep {
    /// Steps computing the predicate.
    pub cond: Vec<Step>,
    /// A `bool` buffer of one element written by `cond`.
    pub pred: BufferId,
    /// The steps of one iteration.
    pub body: Vec<Step>,
}

/// A two-way branch on the one-element `bool` buffer `pred`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IfStep {
    /// A `bool` buffer of one element.
    pub pred: BufferId,
    /// Steps run when the predicate holds.
    pub then: Vec<Step>,
    /// Steps run otherwise.
    pub other: Vec<Step>,
}

/// One step of a schedule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Run a kernel of the program's list.
    Kernel(KernelId),
    /// Copy every element of `src` into `dst` (same dtype and size): loop carries.
    Copy {
        /// Source buffer.
        src: BufferId,
        /// Destination buffer.
        dst: BufferId,
    },
    /// A counted loop with an induction symbol.
    Loop(LoopStep),
    /// A while loop on a predicate buffer.
    While(WhileStep),
    /// A branch on a predicate buffer.
    If(IfStep),
}

impl Step {
    /// The nested step lists (loop body; while cond and body; if branches).
    pub fn children(&self) -> Vec<&[Step]> {
        match self {
            Step::Kernel(_) | Step::Copy { .. } => Vec::new(),
            Step::Loop(l) => vec![&l.body],
            Step::While(w) => vec![&w.cond, &w.body],
            Step::If(i) => vec![&i.then, &i.other],
        }
    }

    /// The nested step lists, mutably.
    pub fn children_mut(&mut self) -> Vec<&mut Vec<Step>> {
        match self {
            Step::Kernel(_) | Step::Copy { .. } => Vec::new(),
            Step::Loop(l) => vec![&mut l.body],
            Step::While(w) => vec![&mut w.cond, &mut w.body],
            Step::If(i) => vec![&mut i.then, &mut i.other],
        }
    }

    /// Buffers the step itself reads on the host or copies (a copy's `src` and `dst`, a
    /// predicate), not those of nested steps or kernels.
    pub fn own_buffers(&self) -> Vec<BufferId> {
        match self {
            Step::Copy { src, dst } => vec![*src, *dst],
            Step::While(w) => vec![w.pred],
            Step::If(i) => vec![i.pred],
            Step::Kernel(_) | Step::Loop(_) => Vec::new(),
        }
    }

    /// Renames buffers of the step and of its nested steps (not of kernels).
    pub fn map_buffers(&mut self, f: &mut impl FnMut(BufferId) -> BufferId) {
        match self {
            Step::Copy { src, dst } => {
                *src = f(*src);
                *dst = f(*dst);
            }
            Step::While(w) => w.pred = f(w.pred),
            Step::If(i) => i.pred = f(i.pred),
            Step::Kernel(_) | Step::Loop(_) => {}
        }
        for c in self.children_mut() {
            for s in c {
                s.map_buffers(f);
            }
        }
    }

    /// Renumbers kernels of the step and of its nested steps.
    pub fn map_kernels(&mut self, f: &mut impl FnMut(KernelId) -> KernelId) {
        if let Step::Kernel(k) = self {
            *k = f(*k);
        }
        for c in self.children_mut() {
            for s in c {
                s.map_kernels(f);
            }
        }
    }

    /// True if the step (or a nested one) is a loop, while or if.
    pub fn is_control(&self) -> bool {
        !matches!(self, Step::Kernel(_))
    }
}

/// Calls `f` on every step of `steps` in pre-order, with the induction symbols of the
/// enclosing loops (outermost first) and the nesting depth.
pub fn walk<'a>(steps: &'a [Step], f: &mut impl FnMut(&'a Step, &[&'a LoopStep], usize)) {
    fn go<'a>(
        steps: &'a [Step],
        loops: &mut Vec<&'a LoopStep>,
        depth: usize,
        f: &mut impl FnMut(&'a Step, &[&'a LoopStep], usize),
    ) {
        for s in steps {
            f(s, loops, depth);
            if let Step::Loop(l) = s {
                loops.push(l);
                go(&l.body, loops, depth + 1, f);
                loops.pop();
            } else {
                for c in s.children() {
                    go(c, loops, depth + 1, f);
                }
            }
        }
    }
    go(steps, &mut Vec::new(), 0, f);
}
