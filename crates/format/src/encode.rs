//! Module → header DTOs and data section: the explicit conversions from IR types to the
//! schema of [`crate::v1`] as the current format version writes it. Limits and rules are
//! the decoder's: `to_bytes` runs the loader on the encoded file, so a saved module never
//! fails to load. Only the data section's size is checked here, before it is allocated.

use crate::error::{FormatError, region_path, shown};
use crate::layout::align_up;
use crate::limits::MAX_DATA_BYTES;
use crate::v1::*;
use crate::{Module, Signature, TensorSpec};
use kiln_ir::{Array, AttrValue, DType, Dim, Graph, NodeId, Op, Shape};
use kiln_kernel::{
    Body, Buffer, BufferKind, Expr, IndexExpr, Kernel, LoadMode, Program, Scalar, Step,
};
use std::collections::HashMap;

/// The data section being built: tensors at 64-byte aligned offsets.
#[derive(Default)]
struct Data {
    bytes: Vec<u8>,
}

impl Data {
    /// Appends a tensor. The data section's size is checked here, before it grows; every
    /// other limit is the loader's, which `to_bytes` runs on the result.
    fn push(&mut self, a: &Array) -> Result<TensorRefV1, FormatError> {
        let offset = align_up(self.bytes.len() as u64).unwrap_or(u64::MAX);
        let raw = a.to_le_bytes();
        let end = offset.saturating_add(raw.len() as u64);
        if end > MAX_DATA_BYTES {
            return Err(too_big(
                "data section",
                "length in bytes",
                end,
                MAX_DATA_BYTES,
            ));
        }
        self.bytes.resize(offset as usize, 0);
        self.bytes.extend_from_slice(&raw);
        Ok(TensorRefV1 {
            dtype: dtype(a.dtype()),
            shape: a.shape().iter().map(|&d| d as u64).collect(),
            offset,
            len: raw.len() as u64,
        })
    }

    fn finish(mut self) -> Vec<u8> {
        let end = align_up(self.bytes.len() as u64).unwrap_or(u64::MAX);
        self.bytes.resize(end as usize, 0);
        self.bytes
    }
}

/// A writer-side limit violation.
fn too_big(location: impl Into<String>, what: &str, value: u64, limit: u64) -> FormatError {
    FormatError::encode(
        location,
        format!("{what} {value} exceeds the limit {limit}"),
    )
}

/// A decoder error turned into the writer's: the module breaks a rule the loader enforces.
fn as_encode(e: FormatError) -> FormatError {
    match e {
        FormatError::Limit {
            location,
            what,
            value,
            limit,
        } => FormatError::Encode {
            location,
            message: format!("{what} {value} exceeds the limit {limit}"),
        },
        FormatError::Invalid { location, message } => FormatError::Encode { location, message },
        other => other,
    }
}

/// Why the loader refuses a file the writer just produced, as the writer's error: a limit
/// or rule keeps the loader's location and wording, anything else (a verifier) is named.
pub(crate) fn refused_by_loader(e: FormatError) -> FormatError {
    match as_encode(e) {
        e @ FormatError::Encode { .. } => e,
        other => FormatError::encode("module", format!("the loader would refuse it: {other}")),
    }
}

/// A name, checked with the loader's rules (length, no control characters).
fn name(s: &str, location: impl FnOnce() -> String) -> Result<String, FormatError> {
    crate::names::name(s, location).map_err(as_encode)
}

/// A symbol name, checked with the loader's rules (an identifier).
fn symbol_name(s: &str, location: impl Fn() -> String) -> Result<String, FormatError> {
    crate::names::symbol_name(s, location).map_err(as_encode)
}

/// Converts a module into its header and data section.
/// `program` stands in for `m.program` (so a plan that does not verify can be encoded, for
/// the loader's tests).
pub(crate) fn module(
    m: &Module,
    program: Option<&Program>,
) -> Result<(HeaderV1, Vec<u8>), FormatError> {
    let mut data = Data::default();
    let mut files: Vec<String> = Vec::new();
    let metadata = MetadataV1 {
        producer: name(&m.metadata.producer, || "metadata producer".into())?,
        created: m.metadata.created,
        options: m
            .metadata
            .options
            .iter()
            .map(|(k, v)| Ok((name(k, || "metadata option key".into())?, v.clone())))
            .collect::<Result<_, FormatError>>()?,
    };
    let signature = signature(&m.signature)?;
    let graph = graph(&m.graph, &mut data, &mut files)?;
    let named = |list: &[(String, NodeId)], what: &str| -> Result<Vec<NamedNodeV1>, FormatError> {
        list.iter()
            .map(|(n, id)| {
                Ok(NamedNodeV1 {
                    name: name(n, || format!("{what} {}", shown(n)))?,
                    node: id.0,
                })
            })
            .collect()
    };
    let outputs = named(&m.outputs, "output")?;
    let updates = named(&m.updates, "update")?;
    let program = program.map(|p| self::program(p, &mut data)).transpose()?;
    let state = m
        .state
        .iter()
        .map(|(n, a)| {
            let location = format!("state tensor {}", shown(n));
            Ok(StateEntryV1 {
                name: name(n, || location.clone())?,
                tensor: data.push(a)?,
            })
        })
        .collect::<Result<_, FormatError>>()?;
    let header = HeaderV1 {
        metadata,
        signature,
        files,
        graph,
        outputs,
        updates,
        program,
        state,
    };
    Ok((header, data.finish()))
}

fn signature(s: &Signature) -> Result<SignatureV1, FormatError> {
    let spec = |t: &TensorSpec, what: &str| -> Result<TensorSpecV1, FormatError> {
        Ok(TensorSpecV1 {
            name: name(&t.name, || format!("signature {what} {}", shown(&t.name)))?,
            dtype: dtype(t.dtype),
            shape: shape(&t.shape),
        })
    };
    Ok(SignatureV1 {
        inputs: s
            .inputs
            .iter()
            .map(|t| spec(t, "input"))
            .collect::<Result<_, _>>()?,
        outputs: s
            .outputs
            .iter()
            .map(|t| spec(t, "output"))
            .collect::<Result<_, _>>()?,
        symbols: s
            .symbols
            .iter()
            .map(|x| symbol(&x.name, x.min, x.max, "signature"))
            .collect::<Result<_, _>>()?,
    })
}

fn symbol(name: &str, min: u64, max: Option<u64>, owner: &str) -> Result<SymbolV1, FormatError> {
    Ok(SymbolV1 {
        name: symbol_name(name, || format!("{owner} symbol {}", shown(name)))?,
        min,
        max,
    })
}

pub(crate) fn dtype(d: DType) -> DTypeV1 {
    match d {
        DType::F32 => DTypeV1::F32,
        DType::F64 => DTypeV1::F64,
        DType::I32 => DTypeV1::I32,
        DType::I64 => DTypeV1::I64,
        DType::U32 => DTypeV1::U32,
        DType::Bool => DTypeV1::Bool,
    }
}

fn dim(d: &Dim) -> DimV1 {
    d.to_string()
}

fn shape(s: &Shape) -> Vec<DimV1> {
    s.0.iter().map(dim).collect()
}

/// Where a graph's source locations go: the header's file table, each file listed once.
struct Files<'a> {
    list: &'a mut Vec<String>,
    index: HashMap<String, u32>,
}

impl Files<'_> {
    fn loc(&mut self, l: &kiln_ir::Loc) -> LocV1 {
        let next = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        let list = &mut *self.list;
        let file = *self.index.entry(l.file.clone()).or_insert_with(|| {
            list.push(l.file.clone());
            next
        });
        LocV1 {
            file,
            line: l.line,
            column: l.column,
        }
    }
}

/// The graph's nodes, and its regions and theirs as the flat table of [`RegionV3`]: breadth
/// first, so every entry comes after its parent and the regions of one graph keep their
/// order. No recursion: a queue of (table graph, graph, location) walks the nesting.
fn graph(g: &Graph, data: &mut Data, files: &mut Vec<String>) -> Result<GraphV1, FormatError> {
    let mut files = Files {
        list: files,
        index: HashMap::new(),
    };
    let nodes = graph_nodes(g, "graph", data, &mut files)?;
    let mut regions = Vec::new();
    let mut queue = std::collections::VecDeque::from([(0u32, g, String::new())]);
    while let Some((parent, owner, path)) = queue.pop_front() {
        for (k, r) in owner.regions().iter().enumerate() {
            let path = region_path(&path, k);
            let location = format!("graph region {path}");
            regions.push(RegionV3 {
                parent,
                nodes: graph_nodes(&r.graph, &location, data, &mut files)?,
                params: r.params.iter().map(|p| p.0).collect(),
                results: r.results.iter().map(|p| p.0).collect(),
            });
            let entry = u32::try_from(regions.len()).unwrap_or(u32::MAX);
            queue.push_back((entry, &r.graph, path));
        }
    }
    Ok(GraphV1 { nodes, regions })
}

/// The nodes of one graph (the top-level graph or a region's), `location` naming it.
fn graph_nodes(
    g: &Graph,
    location: &str,
    data: &mut Data,
    files: &mut Files<'_>,
) -> Result<Vec<NodeV1>, FormatError> {
    let ids = g.node_ids();
    let mut nodes = Vec::with_capacity(ids.len());
    for id in ids {
        let n = g.node(id);
        nodes.push(NodeV1 {
            id: id.0,
            op: op(&n.op, &|| format!("{location} node {id}"), data)?,
            dtype: dtype(n.dtype),
            shape: shape(&n.shape),
            operands: g.operands(id).iter().map(|o| o.0).collect(),
            loc: n.loc.as_ref().map(|l| files.loc(l)),
        });
    }
    Ok(nodes)
}

/// A graph op as version 5 writes it: a constant's data, or the op's stable name and its
/// attribute values in schema order ([`kiln_ir::Op::attrs`]).
fn op(op: &Op, location: &dyn Fn() -> String, data: &mut Data) -> Result<OpV5, FormatError> {
    if let Op::Constant(a) = op {
        return Ok(OpV5::Constant(data.push(a)?));
    }
    Ok(OpV5::Op {
        name: op.name().to_string(),
        attrs: op
            .attrs()
            .into_iter()
            .map(|v| attr(v, location))
            .collect::<Result<_, _>>()?,
    })
}

/// One attribute value, by its kind.
fn attr(v: AttrValue, location: &dyn Fn() -> String) -> Result<AttrV5, FormatError> {
    let list = |a: Vec<usize>| a.into_iter().map(|x| x as u64).collect();
    Ok(match v {
        AttrValue::Axis(a) => AttrV5::Axis(a as u64),
        AttrValue::Axes(a) => AttrV5::Axes(list(a)),
        AttrValue::Count(c) => AttrV5::Count(c as u64),
        AttrValue::Size(s) => AttrV5::Size(s),
        AttrValue::Sizes(s) => AttrV5::Sizes(s),
        AttrValue::Pairs(p) => AttrV5::Pairs(p),
        AttrValue::Factor(f) => AttrV5::Factor(f),
        AttrValue::Hw(f) => AttrV5::Hw(f),
        AttrValue::Bool(b) => AttrV5::Bool(b),
        AttrValue::Float(x) => AttrV5::Float(x.get().to_bits()),
        AttrValue::DType(d) => AttrV5::DType(dtype(d)),
        AttrValue::Shape(s) => AttrV5::Shape(shape(&s)),
        AttrValue::Type(d, s) => AttrV5::Type(dtype(d), shape(&s)),
        AttrValue::Dim(d) => AttrV5::Dim(dim(&d)),
        AttrValue::Name(n) => AttrV5::Name(name(&n, location)?),
        AttrValue::Region(r) => AttrV5::Region(r.0),
        AttrValue::Slices(s) => AttrV5::Slices(
            s.iter()
                .map(|a| SliceAxisV1 {
                    start: a.start,
                    stop: a.stop,
                    step: a.step,
                })
                .collect(),
        ),
    })
}

fn program(p: &Program, data: &mut Data) -> Result<ProgramV1, FormatError> {
    let buffers = p
        .buffers
        .iter()
        .enumerate()
        .map(|(i, b)| buffer(b, i, data))
        .collect::<Result<_, _>>()?;
    Ok(ProgramV1 {
        symbols: p
            .symbols
            .iter()
            .map(|x| symbol(&x.name, x.min, x.max, "kernel plan"))
            .collect::<Result<_, _>>()?,
        buffers,
        kernels: p.kernels.iter().map(kernel).collect(),
        schedule: p.schedule.as_ref().map(|s| {
            let mut out = Vec::new();
            steps(s, &mut out);
            out
        }),
    })
}

/// Appends `list` in the flat pre-order of [`StepV1`].
fn steps(list: &[Step], out: &mut Vec<StepV1>) {
    let n = |l: &[Step]| u32::try_from(l.len()).unwrap_or(u32::MAX);
    for s in list {
        match s {
            Step::Kernel(k) => out.push(StepV1::Kernel(k.0)),
            Step::Copy { src, dst } => out.push(StepV1::Copy {
                src: src.0,
                dst: dst.0,
            }),
            Step::Loop(l) => {
                out.push(StepV1::Loop {
                    var: l.var.clone(),
                    trip: dim(&l.trip),
                    reverse: l.reverse,
                    body: n(&l.body),
                });
                steps(&l.body, out);
            }
            Step::While(w) => {
                out.push(StepV1::While {
                    cond: n(&w.cond),
                    pred: w.pred.0,
                    body: n(&w.body),
                });
                steps(&w.cond, out);
                steps(&w.body, out);
            }
            Step::If(i) => {
                out.push(StepV1::If {
                    pred: i.pred.0,
                    then: n(&i.then),
                    other: n(&i.other),
                });
                steps(&i.then, out);
                steps(&i.other, out);
            }
        }
    }
}

fn buffer(b: &Buffer, i: usize, data: &mut Data) -> Result<BufferV1, FormatError> {
    let location = format!("kernel plan buffer b{i}");
    let named = |n: &str| name(n, || location.clone());
    let kind = match &b.kind {
        BufferKind::Input(n) => BufferKindV1::Input(named(n)?),
        BufferKind::Output(n) => BufferKindV1::Output(named(n)?),
        BufferKind::State(n) => BufferKindV1::State(named(n)?),
        BufferKind::Constant(a) => BufferKindV1::Constant(data.push(a)?),
        BufferKind::Scratch => BufferKindV1::Scratch,
    };
    Ok(BufferV1 {
        dtype: dtype(b.dtype),
        size: dim(&b.size),
        kind,
    })
}

fn dims(d: &[Dim]) -> Vec<DimV1> {
    d.iter().map(dim).collect()
}

fn kernel(k: &Kernel) -> KernelV1 {
    match k {
        Kernel::Loop(l) => KernelV1::Loop {
            domain: dims(&l.domain),
            reduce: dims(&l.reduce),
            body: body(&l.body),
        },
        Kernel::Matmul(m) => KernelV1::Matmul {
            batch: dims(&m.batch),
            m: dim(&m.m),
            k: dim(&m.k),
            n: dim(&m.n),
            a: body(&m.a),
            b: body(&m.b),
            epilogue: body(&m.epilogue),
        },
        Kernel::Conv2d(c) => {
            let g = &c.geometry;
            KernelV1::Conv2d {
                geometry: Conv2dGeometryV1 {
                    n: dim(&g.n),
                    c: dim(&g.c),
                    h: dim(&g.h),
                    w: dim(&g.w),
                    o: dim(&g.o),
                    kernel: g.kernel,
                    stride: g.stride,
                    padding: g.padding,
                    dilation: g.dilation,
                    groups: g.groups,
                },
                input: body(&c.input),
                weight: body(&c.weight),
                epilogue: body(&c.epilogue),
            }
        }
    }
}

fn body(b: &Body) -> BodyV1 {
    BodyV1 {
        values: b.values.iter().map(expr).collect(),
        stores: b
            .stores
            .iter()
            .map(|s| StoreV1 {
                buffer: s.buffer.0,
                index: index(&s.index),
                value: s.value.0,
            })
            .collect(),
        result: b.result.map(|v| v.0),
        checks: b
            .checks
            .iter()
            .map(|c| CheckSiteV4 {
                kind: c.kind.name().to_string(),
                node: c.node,
                op: c.op.clone(),
                loc: c.loc.as_ref().map(|l| (l.file.clone(), l.line, l.column)),
                message: c.message.clone(),
            })
            .collect(),
    }
}

pub(crate) fn scalar(s: Scalar) -> ScalarV1 {
    match s {
        Scalar::F32(v) => ScalarV1::F32(v.to_bits()),
        Scalar::F64(v) => ScalarV1::F64(v.to_bits()),
        Scalar::I32(v) => ScalarV1::I32(v),
        Scalar::I64(v) => ScalarV1::I64(v),
        Scalar::U32(v) => ScalarV1::U32(v),
        Scalar::Bool(v) => ScalarV1::Bool(v),
    }
}

fn expr(e: &Expr) -> ExprV1 {
    match e {
        Expr::Const(s) => ExprV1::Const(scalar(*s)),
        Expr::Index { dtype: d, index: i } => ExprV1::Index {
            dtype: dtype(*d),
            index: index(i),
        },
        Expr::Load(l) => ExprV1::Load(LoadV1 {
            buffer: l.buffer.0,
            index: index(&l.index),
            mode: match &l.mode {
                LoadMode::Plain => LoadModeV1::Plain,
                LoadMode::Masked { guards, fill } => LoadModeV1::Masked {
                    guards: guards
                        .iter()
                        .map(|g| GuardV1 {
                            lo: index(&g.lo),
                            expr: index(&g.expr),
                            hi: index(&g.hi),
                        })
                        .collect(),
                    fill: scalar(*fill),
                },
                LoadMode::Checked => LoadModeV1::Checked,
            },
        }),
        Expr::Unary(u, v) => ExprV1::Unary(u.name().to_string(), v.0),
        Expr::Binary(b, x, y) => ExprV1::Binary(b.name().to_string(), x.0, y.0),
        Expr::Select(c, a, b) => ExprV1::Select(c.0, a.0, b.0),
        Expr::Cast(d, v) => ExprV1::Cast(dtype(*d), v.0),
        Expr::Reduce { op, value, init } => ExprV1::Reduce {
            op: op.name().to_string(),
            value: value.0,
            init: scalar(*init),
        },
        Expr::Acc => ExprV1::Acc,
    }
}

/// Flattens an index tree into postfix order (children before parents, root last).
fn index(e: &IndexExpr) -> IndexV1 {
    fn go(e: &IndexExpr, out: &mut IndexV1) -> u32 {
        let node = match e {
            IndexExpr::Dim(d) => IndexNodeV1::Dim(dim(d)),
            IndexExpr::Var(v) => IndexNodeV1::Var(v.0),
            IndexExpr::Red(r) => IndexNodeV1::Red(r.0),
            IndexExpr::Value(v) => IndexNodeV1::Value(v.0),
            IndexExpr::Add(a, b) => {
                let (a, b) = (go(a, out), go(b, out));
                IndexNodeV1::Add(a, b)
            }
            IndexExpr::Sub(a, b) => {
                let (a, b) = (go(a, out), go(b, out));
                IndexNodeV1::Sub(a, b)
            }
            IndexExpr::Mul(a, b) => {
                let (a, b) = (go(a, out), go(b, out));
                IndexNodeV1::Mul(a, b)
            }
            IndexExpr::Div(a, d) => IndexNodeV1::Div(go(a, out), dim(d)),
            IndexExpr::Mod(a, d) => IndexNodeV1::Mod(go(a, out), dim(d)),
        };
        out.push(node);
        u32::try_from(out.len() - 1).unwrap_or(u32::MAX)
    }
    let mut out = Vec::new();
    go(e, &mut out);
    out
}
