//! The verifier: proves every load and store in bounds for every allowed binding of the
//! symbols, type-checks every body, and checks buffer roles and ordering. It collects every
//! error instead of stopping at the first (the rules are listed in the crate docs).

use crate::bounds::Scope;
use crate::ids::{BufferId, KernelId, ValueId, looks_like_id};
use crate::index::{Guard, IndexExpr};
use crate::poly::{Facts, Poly};
use crate::program::{Body, BodyRole, BufferKind, Expr, Kernel, LoadMode, Program, Store};
use crate::schedule::{LoopStep, MAX_SCHEDULE_DEPTH, Step};
use kiln_ir::semantics::{binary_dtype, unary_dtype};
use kiln_ir::{DType, Dim};
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// One verifier finding: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    /// The kernel, for errors inside one.
    pub kernel: Option<KernelId>,
    /// The offending item as printed (`v2 = load b0[i0 + 1]`, `store b1[i0] = v3`, `b4`).
    pub location: String,
    /// What is wrong; for a bounds failure, the inequality that could not be proven.
    pub message: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kernel, self.location.is_empty()) {
            (Some(k), true) => write!(f, "{k}: {}", self.message),
            (Some(k), false) => write!(f, "{k}: {}: {}", self.location, self.message),
            (None, _) => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Every error the verifier found, in program order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyErrors(pub Vec<VerifyError>);

impl fmt::Display for VerifyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for VerifyErrors {}

/// Longest first error [`VerifyErrors::summary`] quotes, in characters.
pub const SUMMARY_CHARS: usize = 240;

impl VerifyErrors {
    /// One bounded line for error messages: the first error (cut at [`SUMMARY_CHARS`]
    /// characters) and how many more there are. The full list stays in the value (and in
    /// its `Display`, one error per line).
    pub fn summary(&self) -> String {
        let Some(first) = self.0.first() else {
            return "no errors".to_string();
        };
        let text = first.to_string().replace('\n', " ");
        let mut line: String = text.chars().take(SUMMARY_CHARS).collect();
        if text.chars().count() > SUMMARY_CHARS {
            line.push_str("...");
        }
        match self.0.len() {
            1 => line,
            n => format!("{line} (and {} more)", n - 1),
        }
    }
}

/// A program the verifier accepted: every rule in the crate docs holds for it. Only
/// [`verify`] makes one, and it gives read-only access to the program, so a backend that
/// takes a `VerifiedProgram` needs no verification of its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VerifiedProgram(Program);

impl VerifiedProgram {
    /// The program.
    pub fn as_program(&self) -> &Program {
        &self.0
    }

    /// The program, to change it (a changed program must be verified again).
    pub fn into_program(self) -> Program {
        self.0
    }
}

impl std::ops::Deref for VerifiedProgram {
    type Target = Program;

    fn deref(&self) -> &Program {
        &self.0
    }
}

impl AsRef<Program> for VerifiedProgram {
    fn as_ref(&self) -> &Program {
        &self.0
    }
}

impl fmt::Display for VerifiedProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

thread_local! {
    static VERIFY_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times [`verify`] has run on the calling thread (for tests that count
/// verifications per compile and per load).
#[doc(hidden)]
pub fn verify_calls_on_this_thread() -> u64 {
    VERIFY_CALLS.with(std::cell::Cell::get)
}

/// Checks a program; `Ok` means every rule in the crate docs holds, in particular that no
/// plain or masked access can leave its buffer for any binding the preconditions allow.
pub fn verify(program: Program) -> Result<VerifiedProgram, VerifyErrors> {
    VERIFY_CALLS.with(|calls| calls.set(calls.get() + 1));
    check(&program)?;
    Ok(VerifiedProgram(program))
}

fn check(program: &Program) -> Result<(), VerifyErrors> {
    let mut v = Verifier {
        p: program,
        facts: Facts::new(&program.symbols),
        errors: Vec::new(),
        kernel: None,
        induction: program
            .induction_symbols()
            .into_iter()
            .map(String::from)
            .collect(),
    };
    v.symbols();
    v.buffers();
    let mut written: HashSet<BufferId> = HashSet::new();
    let steps = program.steps();
    let mut next = 0usize;
    v.steps(&steps, &mut Vec::new(), 0, &mut next, &mut written);
    v.kernel = None;
    if next != program.kernels.len() {
        v.error(
            "schedule",
            format!(
                "names {next} of the {} kernels; every kernel runs exactly once",
                program.kernels.len()
            ),
        );
    }
    for (i, b) in program.buffers.iter().enumerate() {
        let id = BufferId(u32::try_from(i).unwrap_or(u32::MAX));
        if let BufferKind::Output(name) = &b.kind
            && !written.contains(&id)
        {
            v.error(
                id.to_string(),
                format!("output {} is never written", crate::print::quote(name)),
            );
        }
    }
    let mut seen = HashSet::new();
    v.errors.retain(|e| seen.insert(e.to_string()));
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(VerifyErrors(v.errors))
    }
}

struct Verifier<'a> {
    p: &'a Program,
    facts: Facts,
    errors: Vec<VerifyError>,
    kernel: Option<KernelId>,
    /// Induction symbols of the schedule's loops.
    induction: HashSet<String>,
}

/// What a body may contain, by role.
struct BodyRules {
    role: BodyRole,
    reduce_allowed: bool,
    acc: Option<DType>,
}

/// Per-value facts used by the phase rules of reduction kernels.
#[derive(Clone, Copy, Default)]
struct Phase {
    /// The value varies over the reduction domain (a reduction's result does not).
    uses_red: bool,
}

impl Verifier<'_> {
    /// Checks a step list in execution order: kernels in pre-order `k0, k1, ...` (`next`
    /// is the next expected id), each kernel verified once with the facts of its
    /// enclosing loops, copies and predicates well typed, and the read-before-write rule
    /// followed through the control flow (a loop body's writes count after the loop, a
    /// while body's do not, an if's are those of both branches).
    fn steps<'s>(
        &mut self,
        steps: &'s [Step],
        loops: &mut Vec<&'s LoopStep>,
        depth: usize,
        next: &mut usize,
        written: &mut HashSet<BufferId>,
    ) {
        if depth > MAX_SCHEDULE_DEPTH {
            self.kernel = None;
            self.error(
                "schedule",
                format!("nesting deeper than {MAX_SCHEDULE_DEPTH}"),
            );
            return;
        }
        for step in steps {
            match step {
                Step::Kernel(k) => {
                    if k.index() != *next {
                        self.kernel = None;
                        self.error(
                            "schedule",
                            format!(
                                "{k} where k{next} is expected (kernels run once each, in \
                                 pre-order)"
                            ),
                        );
                        return;
                    }
                    *next += 1;
                    let Some(kernel) = self.p.kernel(*k) else {
                        self.kernel = None;
                        self.error("schedule", format!("{k} is not a kernel"));
                        return;
                    };
                    self.kernel = Some(*k);
                    self.induction_uses(kernel, loops);
                    let base = std::mem::take(&mut self.facts);
                    let ctx: Vec<(String, Poly)> = loops
                        .iter()
                        .filter_map(|l| Some((l.var.clone(), Poly::from_dim(&l.trip).ok()?)))
                        .collect();
                    self.facts = base.within_loops(ctx);
                    self.kernel_checks(kernel, written);
                    self.facts = base;
                }
                Step::Copy { src, dst } => {
                    self.kernel = None;
                    self.copy(*src, *dst, written);
                }
                Step::Loop(l) => {
                    self.kernel = None;
                    let loc = format!("loop {}", l.var);
                    match self.p.symbol(&l.var) {
                        None => self.error(&loc, "the induction symbol is not declared"),
                        Some(s) if s.min != 0 || s.max.is_some() => {
                            self.error(&loc, "an induction symbol is declared `>= 0`")
                        }
                        Some(_) => {}
                    }
                    if loops.iter().any(|o| o.var == l.var)
                        || self
                            .p
                            .induction_symbols()
                            .iter()
                            .filter(|v| **v == l.var)
                            .count()
                            > 1
                    {
                        self.error(&loc, "the induction symbol names another loop too");
                    }
                    self.poly(&l.trip, &loc);
                    loops.push(l);
                    self.steps(&l.body, loops, depth + 1, next, written);
                    loops.pop();
                }
                Step::While(w) => {
                    self.kernel = None;
                    self.steps(&w.cond, loops, depth + 1, next, written);
                    self.kernel = None;
                    self.predicate(w.pred, "while", written);
                    let mut inner = written.clone();
                    self.steps(&w.body, loops, depth + 1, next, &mut inner);
                }
                Step::If(i) => {
                    self.kernel = None;
                    self.predicate(i.pred, "if", written);
                    let mut then = written.clone();
                    self.steps(&i.then, loops, depth + 1, next, &mut then);
                    let mut other = written.clone();
                    self.steps(&i.other, loops, depth + 1, next, &mut other);
                    written.extend(then.intersection(&other).copied());
                }
            }
        }
    }

    /// A predicate buffer: one `bool` element, written before it is read.
    fn predicate(&mut self, b: BufferId, what: &str, written: &HashSet<BufferId>) {
        let loc = format!("{what} {b}");
        let Some(buf) = self.p.buffer(b) else {
            self.error(&loc, "not a buffer");
            return;
        };
        if buf.dtype != DType::Bool || buf.size.as_known() != Some(1) {
            let msg = format!("a predicate is bool[1], {b} is {}[{}]", buf.dtype, buf.size);
            self.error(&loc, msg);
        }
        if !buf.kind.is_initialised() && !written.contains(&b) {
            self.error(&loc, "the predicate is read before it is written");
        }
    }

    /// A copy: distinct buffers of one dtype and provably equal size, the destination
    /// writable, the source written before.
    fn copy(&mut self, src: BufferId, dst: BufferId, written: &mut HashSet<BufferId>) {
        let loc = format!("copy {src} -> {dst}");
        let (Some(s), Some(d)) = (self.p.buffer(src), self.p.buffer(dst)) else {
            self.error(&loc, "names a buffer the program does not have");
            return;
        };
        if src == dst {
            self.error(&loc, "copies a buffer onto itself");
        }
        if s.dtype != d.dtype {
            self.error(&loc, format!("copies {} into {}", s.dtype, d.dtype));
        }
        if !d.kind.is_writable() {
            self.error(&loc, format!("{dst} is a {} buffer", d.kind.keyword()));
        }
        let same = match (Poly::from_dim(&s.size), Poly::from_dim(&d.size)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            let msg = format!("sizes {} and {} differ", s.size, d.size);
            self.error(&loc, msg);
        }
        if !s.kind.is_initialised() && !written.contains(&src) {
            self.error(&loc, format!("reads {src} before it is written"));
        }
        written.insert(dst);
    }

    /// Induction symbols in a kernel's index expressions: only in loop kernels, and only
    /// those of the enclosing loops.
    fn induction_uses(&mut self, kernel: &Kernel, loops: &[&LoopStep]) {
        if self.induction.is_empty() {
            return;
        }
        let mut used = std::collections::BTreeSet::new();
        for bd in kernel.bodies(&self.p.symbols) {
            let idx = bd
                .body
                .values
                .iter()
                .flat_map(Expr::indices)
                .chain(bd.body.stores.iter().map(|s| &s.index));
            for ix in idx {
                for d in ix.dims() {
                    for s in d.symbols() {
                        if self.induction.contains(&*s) {
                            used.insert(s.to_string());
                        }
                    }
                }
            }
        }
        for s in used {
            if !matches!(kernel, Kernel::Loop(_)) {
                self.error(
                    "",
                    format!("induction symbol `{s}` in a {} kernel", kernel.name()),
                );
            } else if !loops.iter().any(|l| l.var == s) {
                self.error("", format!("induction symbol `{s}` outside its loop"));
            }
        }
    }

    fn error(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.errors.push(VerifyError {
            kernel: self.kernel,
            location: location.into(),
            message: message.into(),
        });
    }

    /// Reports undeclared symbols of `d` and converts it; `None` on failure.
    fn poly(&mut self, d: &Dim, location: &str) -> Option<Poly> {
        self.poly_in(d, location, false)
    }

    /// [`Self::poly`]; `index` allows induction symbols (an index expression's dim).
    fn poly_in(&mut self, d: &Dim, location: &str, index: bool) -> Option<Poly> {
        for s in d.symbols() {
            if self.p.symbol(&s).is_none() {
                self.error(location, format!("symbol `{s}` is not declared"));
                return None;
            }
            if !index && self.induction.contains(&*s) {
                self.error(
                    location,
                    format!(
                        "induction symbol `{s}` in `{d}`: induction symbols may only appear \
                         in the index expressions of loop kernels"
                    ),
                );
                return None;
            }
        }
        match Poly::from_dim(d) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(location, format!("dimension `{d}`: {e}"));
                None
            }
        }
    }

    fn symbols(&mut self) {
        let mut seen = HashSet::new();
        for s in &self.p.symbols {
            let loc = format!("symbol {}", s.name);
            let valid = s
                .name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.error(
                    &loc,
                    "a symbol name is a letter or `_` followed by letters, digits, `_`",
                );
            } else if looks_like_id(&s.name) {
                self.error(
                    &loc,
                    "the name collides with the id syntax (b3, k0, v1, i2, r0)",
                );
            }
            if !seen.insert(s.name.as_str()) {
                self.error(&loc, "declared twice");
            }
            if let Some(max) = s.max
                && max < s.min
            {
                self.error(&loc, format!("empty range {}..={max}", s.min));
            }
        }
    }

    fn buffers(&mut self) {
        let mut names: BTreeMap<(&str, &str), BufferId> = BTreeMap::new();
        for (i, b) in self.p.buffers.iter().enumerate() {
            let id = BufferId(u32::try_from(i).unwrap_or(u32::MAX));
            let loc = id.to_string();
            if let Some(size) = self.poly(&b.size, &loc)
                && !self.facts.nonneg(&size)
            {
                let msg = format!(
                    "cannot prove size {} >= 0{}",
                    b.size,
                    self.for_all(&[&size])
                );
                self.error(&loc, msg);
            }
            match &b.kind {
                BufferKind::Input(n) | BufferKind::Output(n) | BufferKind::State(n) => {
                    if let Some(prev) = names.insert((b.kind.keyword(), n.as_str()), id) {
                        let msg = format!(
                            "{} {} is also {prev}",
                            b.kind.keyword(),
                            crate::print::quote(n)
                        );
                        self.error(&loc, msg);
                    }
                }
                BufferKind::Constant(a) => {
                    if a.dtype() != b.dtype {
                        self.error(
                            &loc,
                            format!("constant data is {}, buffer is {}", a.dtype(), b.dtype),
                        );
                    }
                    if b.size.as_known() != Some(a.len() as u64) {
                        let msg = format!(
                            "constant has {} elements, buffer size is {}",
                            a.len(),
                            b.size
                        );
                        self.error(&loc, msg);
                    }
                }
                BufferKind::Scratch => {}
            }
        }
    }

    /// ` for all N >= 1, T in 1..=512` for the symbols of the given polynomials.
    fn for_all(&self, polys: &[&Poly]) -> String {
        let mut syms: Vec<_> = polys.iter().flat_map(|p| p.symbols()).collect();
        syms.sort();
        syms.dedup();
        if syms.is_empty() {
            String::new()
        } else {
            format!(" for all {}", self.facts.describe(&syms))
        }
    }

    fn kernel_checks(&mut self, kernel: &Kernel, written: &mut HashSet<BufferId>) {
        let bodies = kernel.bodies(&self.p.symbols);
        let mut contraction: Option<DType> = None;
        match kernel {
            Kernel::Loop(k) => {
                let has_reduce = k
                    .body
                    .values
                    .iter()
                    .any(|e| matches!(e, Expr::Reduce { .. }));
                if !k.reduce.is_empty() && !has_reduce {
                    self.error("", "has reduction axes but no reduce_* value");
                }
            }
            Kernel::Matmul(_) => {}
            Kernel::Conv2d(k) => self.conv_geometry(&k.geometry),
        }
        let mut dtypes: Vec<Vec<Option<DType>>> = Vec::new();
        for bd in &bodies {
            let loc = bd.role.name();
            let domain: Option<Vec<Poly>> = bd.domain.as_ref().and_then(|d| {
                let polys: Vec<Option<Poly>> = d.iter().map(|x| self.poly(x, loc)).collect();
                polys.into_iter().collect()
            });
            let reds: Option<Vec<Poly>> = {
                let polys: Vec<Option<Poly>> =
                    bd.reduce.iter().map(|x| self.poly(x, loc)).collect();
                polys.into_iter().collect()
            };
            let rules = BodyRules {
                role: bd.role,
                reduce_allowed: bd.role == BodyRole::Loop && !bd.reduce.is_empty(),
                acc: contraction,
            };
            let (Some(domain), Some(reds)) = (domain, reds) else {
                dtypes.push(Vec::new());
                continue;
            };
            let types = self.body(bd.body, &rules, &domain, &reds);
            if bd.role.is_operand() {
                let ty = bd
                    .body
                    .result
                    .and_then(|r| types.get(r.index()).copied().flatten());
                match (bd.role, ty) {
                    (BodyRole::MatmulA | BodyRole::ConvInput, Some(t)) => {
                        if !t.is_numeric() {
                            self.error(
                                bd.role.name(),
                                format!("operand yields {t}; contractions need a numeric dtype"),
                            );
                        }
                        contraction = Some(t);
                    }
                    (BodyRole::MatmulB | BodyRole::ConvWeight, Some(t)) => {
                        if let Some(a) = contraction
                            && a != t
                        {
                            let first = if bd.role == BodyRole::MatmulB {
                                "a"
                            } else {
                                "input"
                            };
                            self.error(
                                bd.role.name(),
                                format!("operand yields {t} but {first} yields {a}"),
                            );
                            contraction = None;
                        }
                    }
                    _ => {}
                }
            }
            dtypes.push(types);
        }
        self.hazards(&bodies);
        self.read_before_write(&bodies, written);
        for bd in &bodies {
            for s in &bd.body.stores {
                written.insert(s.buffer);
            }
        }
    }

    fn conv_geometry(&mut self, g: &crate::program::Conv2dGeometry) {
        for (name, v) in [
            ("kernel", g.kernel),
            ("stride", g.stride),
            ("dilation", g.dilation),
        ] {
            if v.contains(&0) {
                self.error("", format!("{name} sizes must be at least 1, got {v:?}"));
            }
        }
        if g.groups == 0 {
            self.error("", "groups must be at least 1");
        }
        if g.groups > 0 {
            if g.group_channels().is_none() {
                self.error(
                    "",
                    format!("c = {} is not a multiple of groups = {}", g.c, g.groups),
                );
            }
            if g.group_outputs().is_none() {
                self.error(
                    "",
                    format!("o = {} is not a multiple of groups = {}", g.o, g.groups),
                );
            }
        }
        if !g.stride.contains(&0) && g.output_hw(&self.p.symbols).is_none() {
            self.error(
                "",
                format!(
                    "output size of a {}x{} input is not provably a polynomial >= 1 (kernel {:?}, stride {:?}, padding {:?}, dilation {:?})",
                    g.h, g.w, g.kernel, g.stride, g.padding, g.dilation
                ),
            );
        }
    }

    fn prefix(role: BodyRole) -> String {
        if role == BodyRole::Loop {
            String::new()
        } else {
            format!("{}: ", role.name())
        }
    }

    /// Checks the variables and values an index expression reads. Returns false if any is
    /// invalid (then no bounds proof is attempted).
    fn index_refs(
        &mut self,
        e: &IndexExpr,
        loc: &str,
        at: usize,
        types: &[Option<DType>],
        nvars: usize,
        nreds: usize,
    ) -> bool {
        let mut ok = true;
        let mut problems = Vec::new();
        e.visit(&mut |node| match node {
            IndexExpr::Var(v) if v.index() >= nvars => {
                problems.push(format!(
                    "{v} is not a loop variable here (the domain has {nvars} axes)"
                ));
            }
            IndexExpr::Red(r) if r.index() >= nreds => {
                problems.push(format!(
                    "{r} is not a reduction variable here ({nreds} reduction axes)"
                ));
            }
            IndexExpr::Value(v) if v.index() >= at => {
                problems.push(format!(
                    "index reads {v}, which is not defined before this point"
                ));
            }
            IndexExpr::Value(v) => {
                if let Some(Some(t)) = types.get(v.index())
                    && !t.is_int()
                {
                    problems.push(format!(
                        "index reads {v} of dtype {t}; indices must be integers"
                    ));
                }
            }
            _ => {}
        });
        for d in e.dims() {
            if self.poly_in(d, loc, true).is_none() {
                ok = false;
            }
        }
        for m in problems {
            self.error(loc, m);
            ok = false;
        }
        ok
    }

    /// Proves `0 <= e` and `e <= size - 1` over the domain, reporting the failing inequality.
    fn prove_access(
        &mut self,
        loc: &str,
        buffer: BufferId,
        e: &IndexExpr,
        domain: &[Poly],
        reds: &[Poly],
        guards: &[Guard],
    ) {
        let Some(b) = self.p.buffer(buffer) else {
            return;
        };
        // A size with an undeclared symbol is reported once, at the buffer.
        if b.size.symbols().iter().any(|s| self.p.symbol(s).is_none()) {
            return;
        }
        let Ok(size) = Poly::from_dim(&b.size) else {
            return;
        };
        // An access inside an empty loop never runs (a tensor with a zero-sized axis).
        let empty = |ext: &Poly| ext.neg().is_ok_and(|n| self.facts.nonneg(&n));
        if domain.iter().any(empty) || (e.uses_red() && reds.iter().any(empty)) {
            return;
        }
        // Nor does a masked load one of whose guards is an empty range (`hi <= lo` everywhere).
        let unguarded = Scope {
            facts: &self.facts,
            vars: domain,
            reds,
            guards: &[],
        };
        let never =
            guards.iter().any(
                |g| match (unguarded.interval(&g.lo), unguarded.interval(&g.hi)) {
                    (Ok(lo), Ok(hi)) => self.facts.le(&hi.hi, &lo.lo),
                    _ => false,
                },
            );
        if never {
            return;
        }
        let scope = Scope {
            facts: &self.facts,
            vars: domain,
            reds,
            guards,
        };
        let iv = match scope.interval(e) {
            Ok(iv) => iv,
            Err(err) => {
                self.error(loc, format!("cannot bound the index: {err}"));
                return;
            }
        };
        if !self.facts.nonneg(&iv.lo) {
            let msg = format!(
                "index may be negative: cannot prove 0 <= {}{}",
                iv.lo,
                self.for_all(&[&iv.lo])
            );
            self.error(loc, msg);
        }
        let last = match size.add_const(-1) {
            Ok(l) => l,
            Err(err) => {
                self.error(loc, err.to_string());
                return;
            }
        };
        if !self.facts.le(&iv.hi, &last) {
            let msg = format!(
                "index may exceed the last element of {buffer}: cannot prove {} <= {last}{}",
                iv.hi,
                self.for_all(&[&iv.hi, &last])
            );
            self.error(loc, msg);
        }
    }

    /// Type-checks a body and proves its accesses; returns each value's dtype (`None` where
    /// it could not be determined).
    fn body(
        &mut self,
        body: &Body,
        rules: &BodyRules,
        domain: &[Poly],
        reds: &[Poly],
    ) -> Vec<Option<DType>> {
        let mut types: Vec<Option<DType>> = Vec::with_capacity(body.values.len());
        let mut phases: Vec<Phase> = Vec::with_capacity(body.values.len());
        let prefix = Verifier::prefix(rules.role);
        let (nv, nr) = (domain.len(), reds.len());
        for (i, e) in body.values.iter().enumerate() {
            let loc = format!("{prefix}v{i} = {e}");
            let operand = |v: ValueId, this: &mut Verifier<'_>| -> (Option<DType>, Phase) {
                if v.index() >= i {
                    this.error(&loc, format!("uses {v}, which is not defined before v{i}"));
                    (None, Phase::default())
                } else {
                    (types[v.index()], phases[v.index()])
                }
            };
            let join = |a: Phase, b: Phase| Phase {
                uses_red: a.uses_red || b.uses_red,
            };
            let index_phase = |e: &IndexExpr, phases: &[Phase]| {
                let mut ph = Phase {
                    uses_red: e.uses_red(),
                };
                for v in e.values() {
                    if let Some(p) = phases.get(v.index()) {
                        ph = join(ph, *p);
                    }
                }
                ph
            };
            let (ty, phase): (Option<DType>, Phase) = match e {
                Expr::Const(s) => (Some(s.dtype()), Phase::default()),
                Expr::Index { dtype, index } => {
                    self.index_refs(index, &loc, i, &types, nv, nr);
                    (Some(*dtype), index_phase(index, &phases))
                }
                Expr::Load(l) => {
                    let Some(buf) = self.p.buffer(l.buffer) else {
                        self.error(
                            &loc,
                            format!("{} is not a buffer of this program", l.buffer),
                        );
                        types.push(None);
                        phases.push(Phase::default());
                        continue;
                    };
                    let dtype = buf.dtype;
                    let mut ok = self.index_refs(&l.index, &loc, i, &types, nv, nr);
                    let mut ph = index_phase(&l.index, &phases);
                    match &l.mode {
                        LoadMode::Plain => {
                            if ok {
                                self.prove_access(&loc, l.buffer, &l.index, domain, reds, &[]);
                            }
                        }
                        LoadMode::Masked { guards, fill } => {
                            if fill.dtype() != dtype {
                                self.error(
                                    &loc,
                                    format!(
                                        "fill value is {}, buffer {} is {dtype}",
                                        fill.dtype(),
                                        l.buffer
                                    ),
                                );
                            }
                            for g in guards {
                                for part in [&g.lo, &g.expr, &g.hi] {
                                    ok &= self.index_refs(part, &loc, i, &types, nv, nr);
                                    ph = join(ph, index_phase(part, &phases));
                                }
                                if !g.lo.values().is_empty() || !g.hi.values().is_empty() {
                                    self.error(
                                        &loc,
                                        format!("guard bounds of `{g}` must not read values"),
                                    );
                                    ok = false;
                                }
                            }
                            if ok {
                                self.prove_access(&loc, l.buffer, &l.index, domain, reds, guards);
                            }
                        }
                        LoadMode::Checked => {}
                    }
                    (Some(dtype), ph)
                }
                Expr::Unary(op, a) => {
                    let (ta, pa) = operand(*a, self);
                    let ty = ta.and_then(|t| {
                        unary_dtype(*op, t)
                            .map_err(|e| self.error(&loc, e.to_string()))
                            .ok()
                    });
                    (ty, pa)
                }
                Expr::Binary(op, a, b) => {
                    let (ta, pa) = operand(*a, self);
                    let (tb, pb) = operand(*b, self);
                    let ty = match (ta, tb) {
                        (Some(x), Some(y)) => binary_dtype(*op, x, y)
                            .map_err(|e| self.error(&loc, e.to_string()))
                            .ok(),
                        _ => None,
                    };
                    (ty, join(pa, pb))
                }
                Expr::Select(c, a, b) => {
                    let (tc, pc) = operand(*c, self);
                    let (ta, pa) = operand(*a, self);
                    let (tb, pb) = operand(*b, self);
                    if let Some(t) = tc
                        && t != DType::Bool
                    {
                        self.error(&loc, format!("select condition is {t}, expected bool"));
                    }
                    let ty = match (ta, tb) {
                        (Some(x), Some(y)) if x != y => {
                            self.error(
                                &loc,
                                format!("select branches differ in dtype: {x} vs {y}"),
                            );
                            None
                        }
                        (x, _) => x,
                    };
                    (ty, join(pc, join(pa, pb)))
                }
                Expr::Cast(d, a) => {
                    let (_, pa) = operand(*a, self);
                    (Some(*d), pa)
                }
                Expr::Reduce { op, value, init } => {
                    let (tv, _) = operand(*value, self);
                    if !rules.reduce_allowed {
                        self.error(
                            &loc,
                            "reductions are only allowed in loop kernels with reduction axes",
                        );
                    }
                    let ty = tv.filter(|t| {
                        t.is_numeric() || {
                            self.error(
                                &loc,
                                format!("{} needs a numeric operand, got {t}", op.name()),
                            );
                            false
                        }
                    });
                    if let Some(t) = ty
                        && init.dtype() != t
                    {
                        self.error(
                            &loc,
                            format!("init value is {}, operand is {t}", init.dtype()),
                        );
                    }
                    (ty, Phase { uses_red: false })
                }
                Expr::Acc => {
                    if rules.role != BodyRole::Epilogue {
                        self.error(&loc, "acc is only available in contraction epilogues");
                    }
                    (rules.acc, Phase::default())
                }
            };
            types.push(ty);
            phases.push(phase);
        }
        self.stores(body, rules, domain, reds.len(), &types, &phases);
        self.result(body, rules, &types);
        types
    }

    fn stores(
        &mut self,
        body: &Body,
        rules: &BodyRules,
        domain: &[Poly],
        nreds: usize,
        types: &[Option<DType>],
        phases: &[Phase],
    ) {
        let prefix = Verifier::prefix(rules.role);
        if rules.role.is_operand() {
            if !body.stores.is_empty() {
                self.error(
                    rules.role.name(),
                    "operand bodies yield a value and cannot store",
                );
            }
        } else if body.stores.is_empty() {
            self.error(rules.role.name(), "body has no store");
        }
        for s in &body.stores {
            let loc = format!("{prefix}{s}");
            let Some(buf) = self.p.buffer(s.buffer) else {
                self.error(
                    &loc,
                    format!("{} is not a buffer of this program", s.buffer),
                );
                continue;
            };
            if !buf.kind.is_writable() {
                self.error(
                    &loc,
                    format!("cannot store to {} buffer {}", buf.kind.keyword(), s.buffer),
                );
            }
            match types.get(s.value.index()) {
                None => self.error(&loc, format!("{} is not defined", s.value)),
                Some(Some(t)) if *t != buf.dtype => {
                    self.error(
                        &loc,
                        format!("stores {t} into {} buffer {}", buf.dtype, s.buffer),
                    );
                }
                Some(_) => {}
            }
            if phases.get(s.value.index()).is_some_and(|p| p.uses_red) {
                self.error(
                    &loc,
                    format!(
                        "stores {}, which varies over the reduction (stores run after it)",
                        s.value
                    ),
                );
            }
            let mut ok = true;
            if !s.index.values().is_empty() {
                self.error(
                    &loc,
                    "a store index must not read values (scatters are not stores)",
                );
                ok = false;
            }
            if s.index.uses_red() {
                self.error(&loc, "a store index must not use reduction variables");
                ok = false;
            }
            ok &= self.index_refs(&s.index, &loc, types.len(), types, domain.len(), nreds);
            if ok {
                self.prove_access(&loc, s.buffer, &s.index, domain, &[], &[]);
            }
        }
    }

    fn result(&mut self, body: &Body, rules: &BodyRules, types: &[Option<DType>]) {
        match (rules.role.is_operand(), body.result) {
            (true, None) => self.error(rules.role.name(), "operand body has no yield"),
            (false, Some(_)) => self.error(rules.role.name(), "only operand bodies yield"),
            (true, Some(r)) if types.get(r.index()).is_none() => {
                self.error(
                    rules.role.name(),
                    format!("yields {r}, which is not defined"),
                );
            }
            _ => {}
        }
    }

    /// A kernel may read a buffer it writes only at the very index it writes (in-place
    /// elementwise update); contraction operands may not read what the epilogue writes.
    fn hazards(&mut self, bodies: &[crate::program::BodyDomain<'_>]) {
        let stores: Vec<&Store> = bodies.iter().flat_map(|b| b.body.stores.iter()).collect();
        for bd in bodies {
            let prefix = Verifier::prefix(bd.role);
            for (i, e) in bd.body.values.iter().enumerate() {
                let Expr::Load(l) = e else { continue };
                let targets: Vec<&&Store> =
                    stores.iter().filter(|s| s.buffer == l.buffer).collect();
                if targets.is_empty() {
                    continue;
                }
                let loc = format!("{prefix}v{i} = {e}");
                if bd.role.is_operand() {
                    self.error(
                        &loc,
                        format!(
                            "reads {}, which the epilogue of this kernel writes",
                            l.buffer
                        ),
                    );
                    continue;
                }
                for s in targets {
                    if l.mode != LoadMode::Plain || l.index != s.index {
                        self.error(
                            &loc,
                            format!(
                                "reads {} at [{}] but this kernel writes it at [{}]; in-place updates must read and write the same index",
                                l.buffer, l.index, s.index
                            ),
                        );
                    }
                }
            }
        }
    }

    fn read_before_write(
        &mut self,
        bodies: &[crate::program::BodyDomain<'_>],
        written: &HashSet<BufferId>,
    ) {
        let mut reported = HashSet::new();
        for bd in bodies {
            for e in &bd.body.values {
                let Expr::Load(l) = e else { continue };
                let Some(buf) = self.p.buffer(l.buffer) else {
                    continue;
                };
                if !buf.kind.is_initialised()
                    && !written.contains(&l.buffer)
                    && reported.insert(l.buffer)
                {
                    self.error(
                        "",
                        format!(
                            "reads {} {} before any kernel writes it",
                            buf.kind.keyword(),
                            l.buffer
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn many(n: usize, location_len: usize) -> VerifyErrors {
        VerifyErrors(
            (0..n)
                .map(|i| VerifyError {
                    kernel: Some(KernelId(u32::try_from(i).unwrap_or(0))),
                    location: format!("v0 = load b0[{}]", "i0 + ".repeat(location_len / 5)),
                    message: "index may exceed\nthe buffer".to_string(),
                })
                .collect(),
        )
    }

    #[test]
    fn summary_is_one_bounded_line_naming_the_rest() {
        let e = many(1000, 50_000);
        assert!(
            e.to_string().len() > 1_000_000,
            "the full list stays available"
        );
        let s = e.summary();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.len() <= SUMMARY_CHARS + 40, "{} chars", s.len());
        assert!(s.starts_with("k0: v0 = load b0[i0 + "), "{s}");
        assert!(s.ends_with("... (and 999 more)"), "{s}");
        let one = many(1, 0);
        assert_eq!(
            one.summary(),
            "k0: v0 = load b0[]: index may exceed the buffer"
        );
        assert_eq!(VerifyErrors(Vec::new()).summary(), "no errors");
    }
}
