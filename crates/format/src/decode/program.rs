//! The kernel plan: symbols, buffers, kernels, bodies, expressions and index trees.

use super::context::{Cx, Result, attr, count, dtype, parse_dim, scalar};
use super::op_names::ReadOpNames;
use super::signature::symbols;
use crate::error::FormatError;
use crate::limits::*;
use crate::names::{self, name};
use crate::v1::*;
use kiln_ir::{Dim, Loc};
use kiln_kernel::{
    Body, Buffer, BufferId, BufferKind, CheckKind, CheckSite, Conv2dGeometry, Conv2dKernel, Expr,
    Guard, IfStep, IndexExpr, Kernel, KernelId, Load, LoadMode, LoopKernel, LoopStep, LoopVar,
    MatmulKernel, Program, RedVar, Step, Store, Symbol, ValueId, WhileStep,
};

pub(super) fn program<N: ReadOpNames>(cx: &Cx<'_>, p: &ProgramV1<N>) -> Result<Program> {
    let symbols = symbols(&p.symbols, "kernel plan")?
        .into_iter()
        .map(|s| Symbol {
            name: s.name,
            min: s.min,
            max: s.max,
        })
        .collect();
    count(
        p.buffers.len(),
        MAX_BUFFERS,
        || "kernel plan".to_string(),
        "buffer count",
    )?;
    count(
        p.kernels.len(),
        MAX_KERNELS,
        || "kernel plan".to_string(),
        "kernel count",
    )?;
    let buffers = p
        .buffers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let location = format!("kernel plan buffer b{i}");
            let loc = || location.clone();
            let named = |n: &str| name(n, loc);
            let kind = match &b.kind {
                BufferKindV1::Input(n) => BufferKind::Input(named(n)?),
                BufferKindV1::Output(n) => BufferKind::Output(named(n)?),
                BufferKindV1::State(n) => BufferKind::State(named(n)?),
                BufferKindV1::Constant(r) => {
                    BufferKind::Constant(cx.array(r, &format!("{location} constant"))?)
                }
                BufferKindV1::Scratch => BufferKind::Scratch,
            };
            Ok(Buffer {
                dtype: dtype(b.dtype),
                size: parse_dim(&b.size, &loc)?,
                kind,
            })
        })
        .collect::<Result<_>>()?;
    let kernels = p
        .kernels
        .iter()
        .enumerate()
        .map(|(i, k)| kernel(k, &|| format!("kernel plan kernel k{i}")))
        .collect::<Result<_>>()?;
    let schedule = match N::schedule(&p.schedule) {
        Some(list) => Some(schedule(list)?),
        None => None,
    };
    Ok(Program {
        symbols,
        buffers,
        kernels,
        schedule,
    })
}

/// Rebuilds a schedule from its flat pre-order form ([`StepV1`]), within
/// [`MAX_SCHEDULE_STEPS`] steps and [`MAX_SCHEDULE_DEPTH`] levels: top-level steps follow
/// each other to the end, and every nested list must fit in the steps that remain. Kernel
/// and buffer ids are checked by the kernel verifier.
fn schedule(flat: &[StepV1]) -> Result<Vec<Step>> {
    let location = || "kernel plan schedule".to_string();
    count(flat.len(), MAX_SCHEDULE_STEPS, location, "step count")?;
    let mut pos = 0usize;
    let mut steps = Vec::new();
    while pos < flat.len() {
        steps.extend(step_list(flat, &mut pos, 1, 0)?);
    }
    Ok(steps)
}

/// Reads `n` steps (with their nested lists) starting at `*pos`.
fn step_list(flat: &[StepV1], pos: &mut usize, n: u32, depth: u64) -> Result<Vec<Step>> {
    let start = *pos;
    let location = || format!("kernel plan schedule step {start}");
    if depth > MAX_SCHEDULE_DEPTH {
        return Err(FormatError::limit(
            "kernel plan schedule",
            "nesting depth",
            depth,
            MAX_SCHEDULE_DEPTH,
        ));
    }
    let remaining = flat.len().saturating_sub(*pos);
    if n as usize > remaining {
        return Err(FormatError::invalid(
            location(),
            format!("a list of {n} steps where {remaining} remain"),
        ));
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let Some(s) = flat.get(*pos) else {
            return Err(FormatError::invalid(location(), "the schedule ends early"));
        };
        *pos += 1;
        out.push(match s {
            StepV1::Kernel(k) => Step::Kernel(KernelId(*k)),
            StepV1::Copy { src, dst } => Step::Copy {
                src: BufferId(*src),
                dst: BufferId(*dst),
            },
            StepV1::Loop {
                var,
                trip,
                reverse,
                body,
            } => {
                let at = format!("kernel plan schedule step {}", *pos - 1);
                let var = name(var, || at.clone())?;
                let trip = parse_dim(trip, &|| at.clone())?;
                let body = step_list(flat, pos, *body, depth + 1)?;
                Step::Loop(LoopStep {
                    var,
                    trip,
                    reverse: *reverse,
                    body,
                })
            }
            StepV1::While { cond, pred, body } => {
                let cond = step_list(flat, pos, *cond, depth + 1)?;
                let body = step_list(flat, pos, *body, depth + 1)?;
                Step::While(WhileStep {
                    cond,
                    pred: BufferId(*pred),
                    body,
                })
            }
            StepV1::If { pred, then, other } => {
                let then = step_list(flat, pos, *then, depth + 1)?;
                let other = step_list(flat, pos, *other, depth + 1)?;
                Step::If(IfStep {
                    pred: BufferId(*pred),
                    then,
                    other,
                })
            }
        });
    }
    Ok(out)
}

pub(super) fn dims(list: &[DimV1], location: &dyn Fn() -> String) -> Result<Vec<Dim>> {
    count(list.len(), MAX_RANK, location, "rank")?;
    list.iter().map(|d| parse_dim(d, location)).collect()
}

pub(super) fn kernel<N: ReadOpNames>(
    k: &KernelV1<N>,
    location: &dyn Fn() -> String,
) -> Result<Kernel> {
    let sub = |role: &'static str| move || format!("{} {role}", location());
    Ok(match k {
        KernelV1::Loop {
            domain,
            reduce,
            body: b,
        } => Kernel::Loop(LoopKernel {
            domain: dims(domain, location)?,
            reduce: dims(reduce, location)?,
            body: body(b, location)?,
        }),
        KernelV1::Matmul {
            batch,
            m,
            k,
            n,
            a,
            b,
            epilogue,
        } => Kernel::Matmul(MatmulKernel {
            batch: dims(batch, location)?,
            m: parse_dim(m, location)?,
            k: parse_dim(k, location)?,
            n: parse_dim(n, location)?,
            a: body(a, &sub("a"))?,
            b: body(b, &sub("b"))?,
            epilogue: body(epilogue, &sub("epilogue"))?,
        }),
        KernelV1::Conv2d {
            geometry: g,
            input,
            weight,
            epilogue,
        } => {
            for &v in g
                .kernel
                .iter()
                .chain(&g.stride)
                .chain(&g.padding)
                .chain(&g.dilation)
            {
                attr(v, MAX_CONV_ATTR, "convolution attribute", location)?;
            }
            attr(g.groups, MAX_CONV_ATTR, "convolution groups", location)?;
            Kernel::Conv2d(Conv2dKernel {
                geometry: Conv2dGeometry {
                    n: parse_dim(&g.n, location)?,
                    c: parse_dim(&g.c, location)?,
                    h: parse_dim(&g.h, location)?,
                    w: parse_dim(&g.w, location)?,
                    o: parse_dim(&g.o, location)?,
                    kernel: g.kernel,
                    stride: g.stride,
                    padding: g.padding,
                    dilation: g.dilation,
                    groups: g.groups,
                },
                input: body(input, &sub("input"))?,
                weight: body(weight, &sub("weight"))?,
                epilogue: body(epilogue, &sub("epilogue"))?,
            })
        }
    })
}

pub(super) fn body<N: ReadOpNames>(b: &BodyV1<N>, location: &dyn Fn() -> String) -> Result<Body> {
    count(b.values.len(), MAX_BODY_VALUES, location, "value count")?;
    count(b.stores.len(), MAX_BODY_VALUES, location, "store count")?;
    let values = b
        .values
        .iter()
        .enumerate()
        .map(|(i, e)| expr(e, &|| format!("{} v{i}", location())))
        .collect::<Result<_>>()?;
    let stores = b
        .stores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(Store {
                buffer: BufferId(s.buffer),
                index: index(&s.index, &|| format!("{} store {i}", location()))?,
                value: ValueId(s.value),
            })
        })
        .collect::<Result<_>>()?;
    let sites = N::check_list(&b.checks);
    count(
        sites.len(),
        MAX_BODY_VALUES,
        location,
        "debug table entry count",
    )?;
    let checks = sites
        .iter()
        .enumerate()
        .map(|(i, c)| check_site(c, &|| format!("{} debug entry {i}", location())))
        .collect::<Result<_>>()?;
    Ok(Body {
        values,
        stores,
        result: b.result.map(ValueId),
        checks,
    })
}

/// One debug-table entry: a known check kind, a node id in range, bounded text.
fn check_site(c: &CheckSiteV4, location: &dyn Fn() -> String) -> Result<CheckSite> {
    let kind = CheckKind::from_name(&c.kind).ok_or_else(|| {
        FormatError::invalid(location(), format!("unknown check kind {:?}", c.kind))
    })?;
    if c.node > MAX_NODE_ID {
        return Err(FormatError::limit(
            location(),
            "node id",
            u64::from(c.node),
            u64::from(MAX_NODE_ID),
        ));
    }
    let loc = match &c.loc {
        Some((file, line, column)) => Some(Loc {
            file: names::name(file, location)?,
            line: *line,
            column: *column,
        }),
        None => None,
    };
    Ok(CheckSite {
        kind,
        node: c.node,
        op: names::name(&c.op, location)?,
        loc,
        message: names::name(&c.message, location)?,
    })
}

pub(super) fn expr<N: ReadOpNames>(e: &ExprV1<N>, location: &dyn Fn() -> String) -> Result<Expr> {
    Ok(match e {
        ExprV1::Const(s) => Expr::Const(scalar(*s)),
        ExprV1::Index { dtype: d, index: i } => Expr::Index {
            dtype: dtype(*d),
            index: index(i, location)?,
        },
        ExprV1::Load(l) => Expr::Load(Load {
            buffer: BufferId(l.buffer),
            index: index(&l.index, location)?,
            mode: match &l.mode {
                LoadModeV1::Plain => LoadMode::Plain,
                LoadModeV1::Masked { guards, fill } => {
                    count(guards.len(), MAX_GUARDS, location, "guard count")?;
                    LoadMode::Masked {
                        guards: guards
                            .iter()
                            .map(|g| {
                                Ok(Guard {
                                    lo: index(&g.lo, location)?,
                                    expr: index(&g.expr, location)?,
                                    hi: index(&g.hi, location)?,
                                })
                            })
                            .collect::<Result<_>>()?,
                        fill: scalar(*fill),
                    }
                }
                LoadModeV1::Checked => LoadMode::Checked,
            },
        }),
        ExprV1::Unary(u, v) => Expr::Unary(N::unary(u, location)?, ValueId(*v)),
        ExprV1::Binary(b, x, y) => Expr::Binary(N::binary(b, location)?, ValueId(*x), ValueId(*y)),
        ExprV1::Select(c, a, b) => Expr::Select(ValueId(*c), ValueId(*a), ValueId(*b)),
        ExprV1::Cast(d, v) => Expr::Cast(dtype(*d), ValueId(*v)),
        ExprV1::Reduce { op, value, init } => Expr::Reduce {
            op: N::reduce(op, location)?,
            value: ValueId(*value),
            init: scalar(*init),
        },
        ExprV1::Acc => Expr::Acc,
    })
}

/// Rebuilds an index tree from its postfix list without recursion: each node takes its
/// children out of the slots of earlier nodes, so every node is used exactly once (no
/// sharing that would blow up into an exponentially large tree), and depth is bounded.
pub(super) fn index(nodes: &[IndexNodeV1], location: &dyn Fn() -> String) -> Result<IndexExpr> {
    count(
        nodes.len(),
        MAX_INDEX_NODES,
        location,
        "index expression node count",
    )?;
    let mut slots: Vec<Option<(IndexExpr, u64)>> = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let mut take = |c: u32| -> Result<(IndexExpr, u64)> {
            let c = c as usize;
            if c >= i {
                return Err(FormatError::invalid(
                    location(),
                    format!("index node {i} refers to node {c}, which does not come before it"),
                ));
            }
            slots[c].take().ok_or_else(|| {
                FormatError::invalid(
                    location(),
                    format!("index node {c} is used twice (an index expression is a tree)"),
                )
            })
        };
        let pair = |a: (IndexExpr, u64), b: (IndexExpr, u64)| {
            (Box::new(a.0), Box::new(b.0), a.1.max(b.1) + 1)
        };
        let built = match n {
            IndexNodeV1::Dim(d) => (IndexExpr::Dim(parse_dim(d, location)?), 1),
            IndexNodeV1::Var(k) => (IndexExpr::Var(LoopVar(*k)), 1),
            IndexNodeV1::Red(k) => (IndexExpr::Red(RedVar(*k)), 1),
            IndexNodeV1::Value(k) => (IndexExpr::Value(ValueId(*k)), 1),
            IndexNodeV1::Add(a, b) => {
                let (a, b, d) = pair(take(*a)?, take(*b)?);
                (IndexExpr::Add(a, b), d)
            }
            IndexNodeV1::Sub(a, b) => {
                let (a, b, d) = pair(take(*a)?, take(*b)?);
                (IndexExpr::Sub(a, b), d)
            }
            IndexNodeV1::Mul(a, b) => {
                let (a, b, d) = pair(take(*a)?, take(*b)?);
                (IndexExpr::Mul(a, b), d)
            }
            IndexNodeV1::Div(a, dv) => {
                let (a, d) = take(*a)?;
                (IndexExpr::Div(Box::new(a), parse_dim(dv, location)?), d + 1)
            }
            IndexNodeV1::Mod(a, dv) => {
                let (a, d) = take(*a)?;
                (IndexExpr::Mod(Box::new(a), parse_dim(dv, location)?), d + 1)
            }
        };
        if built.1 > MAX_INDEX_DEPTH {
            return Err(FormatError::limit(
                location(),
                "index expression depth",
                built.1,
                MAX_INDEX_DEPTH,
            ));
        }
        slots.push(Some(built));
    }
    let Some(Some((root, _))) = slots.pop() else {
        return Err(FormatError::invalid(
            location(),
            "index expression is empty",
        ));
    };
    if let Some(p) = slots.iter().position(Option::is_some) {
        return Err(FormatError::invalid(
            location(),
            format!("index node {p} is not used by the expression's root"),
        ));
    }
    Ok(root)
}
