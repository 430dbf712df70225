//! Header DTOs and data section → module, treating both as hostile: every count, length,
//! offset, dtype, shape, name and symbol is checked against [`crate::limits`] before
//! anything is allocated for it, the graph and kernel plan are re-verified, and the parts
//! are cross-checked (the guarantees are listed on [`crate::Module`]).

use crate::error::{FormatError, shown, summarize};
use crate::limits::*;
use crate::v1::*;
use crate::{Metadata, Module, Signature, SymbolSpec, TensorSpec, UPDATE_OUTPUT_PREFIX};
use kiln_ir::{
    ArgOp, Array, BinaryOp, DType, Dim, F64Bits, Graph, Loc, Node, NodeId, Op, ReduceOp, Shape,
    SliceAxis, UnaryOp, WindowOp,
};
use kiln_kernel::{
    Body, Buffer, BufferId, BufferKind, Conv2dGeometry, Conv2dKernel, Expr, Guard, IndexExpr,
    Kernel, Load, LoadMode, LoopKernel, LoopVar, MatmulKernel, Program, RedVar, Scalar, Store,
    Symbol, ValueId,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Range;

type Result<T> = std::result::Result<T, FormatError>;

/// Decodes and validates a whole module.
pub(crate) fn module(h: &HeaderV1, data: &[u8]) -> Result<Module> {
    let dims = dim_count(h);
    if dims > MAX_TOTAL_DIMS {
        return Err(FormatError::limit(
            "header",
            "dimension count",
            dims,
            MAX_TOTAL_DIMS,
        ));
    }
    let metadata = metadata(&h.metadata)?;
    let sig_symbols = symbols(&h.signature.symbols, "signature")?;
    let declared: HashSet<String> = sig_symbols.iter().map(|s| s.name.clone()).collect();
    let cx = Cx {
        data,
        declared: &declared,
        dims: RefCell::new(HashMap::new()),
    };
    let signature = Signature {
        inputs: tensor_specs(&cx, &h.signature.inputs, "signature input")?,
        outputs: tensor_specs(&cx, &h.signature.outputs, "signature output")?,
        symbols: sig_symbols,
    };
    check_data_layout(h, data)?;
    let files = files(&h.files)?;
    let graph = graph(&cx, &h.graph, &files)?;
    if let Err(errors) = kiln_ir::verify(&graph) {
        return Err(FormatError::GraphVerify {
            count: errors.len(),
            summary: summarize(&errors),
        });
    }
    let outputs = named_nodes(&graph, &h.outputs, "output")?;
    let updates = named_nodes(&graph, &h.updates, "update")?;
    let program = match &h.program {
        None => None,
        Some(p) => {
            let verified = kiln_kernel::verify(program(&cx, p)?).map_err(|errors| {
                FormatError::ProgramVerify {
                    count: errors.0.len(),
                    summary: summarize(&errors.0),
                }
            })?;
            Some(verified)
        }
    };
    let state = state(&cx, &h.state)?;
    let m = Module {
        metadata,
        signature,
        graph,
        outputs,
        updates,
        program,
        state,
    };
    cross_check(&m)?;
    Ok(m)
}

/// Calls `f` on every dimension expression of a header with a description of where it is.
pub(crate) fn for_each_dim(h: &HeaderV1, f: &mut dyn FnMut(&str, &dyn Fn() -> String)) {
    fn index(i: &IndexV1, at: &dyn Fn() -> String, f: &mut dyn FnMut(&str, &dyn Fn() -> String)) {
        for n in i {
            match n {
                IndexNodeV1::Dim(d) | IndexNodeV1::Div(_, d) | IndexNodeV1::Mod(_, d) => f(d, at),
                _ => {}
            }
        }
    }
    fn body(b: &BodyV1, at: &dyn Fn() -> String, f: &mut dyn FnMut(&str, &dyn Fn() -> String)) {
        for e in &b.values {
            match e {
                ExprV1::Index { index: i, .. } => index(i, at, f),
                ExprV1::Load(l) => {
                    index(&l.index, at, f);
                    if let LoadModeV1::Masked { guards, .. } = &l.mode {
                        for g in guards {
                            index(&g.lo, at, f);
                            index(&g.expr, at, f);
                            index(&g.hi, at, f);
                        }
                    }
                }
                _ => {}
            }
        }
        for s in &b.stores {
            index(&s.index, at, f);
        }
    }
    for (list, what) in [
        (&h.signature.inputs, "signature input"),
        (&h.signature.outputs, "signature output"),
    ] {
        for t in list {
            let at = || format!("{what} {}", shown(&t.name));
            for d in &t.shape {
                f(d, &at);
            }
        }
    }
    for n in &h.graph.nodes {
        let at = || format!("graph node n{}", n.id);
        let attr: &[DimV1] = match &n.op {
            OpV1::Input { shape, .. }
            | OpV1::Parameter { shape, .. }
            | OpV1::Iota { shape, .. }
            | OpV1::RandomBits { shape }
            | OpV1::Reshape(shape)
            | OpV1::Expand(shape) => shape,
            _ => &[],
        };
        for d in n.shape.iter().chain(attr) {
            f(d, &at);
        }
    }
    if let Some(p) = &h.program {
        for (i, b) in p.buffers.iter().enumerate() {
            f(&b.size, &|| format!("kernel plan buffer b{i}"));
        }
        for (i, k) in p.kernels.iter().enumerate() {
            let at = || format!("kernel plan kernel k{i}");
            match k {
                KernelV1::Loop {
                    domain,
                    reduce,
                    body: b,
                } => {
                    for d in domain.iter().chain(reduce) {
                        f(d, &at);
                    }
                    body(b, &at, f);
                }
                KernelV1::Matmul {
                    batch,
                    m,
                    k,
                    n,
                    a,
                    b,
                    epilogue,
                } => {
                    for d in batch.iter().chain([m, k, n]) {
                        f(d, &at);
                    }
                    for x in [a, b, epilogue] {
                        body(x, &at, f);
                    }
                }
                KernelV1::Conv2d {
                    geometry: g,
                    input,
                    weight,
                    epilogue,
                } => {
                    for d in [&g.n, &g.c, &g.h, &g.w, &g.o] {
                        f(d, &at);
                    }
                    for x in [input, weight, epilogue] {
                        body(x, &at, f);
                    }
                }
            }
        }
    }
}

/// The number of dimension expressions in a header.
pub(crate) fn dim_count(h: &HeaderV1) -> u64 {
    let mut n: u64 = 0;
    for_each_dim(h, &mut |_, _| n += 1);
    n
}

/// What every conversion needs: the data section and the declared signature symbols.
struct Cx<'a> {
    data: &'a [u8],
    declared: &'a HashSet<String>,
    /// Graph and signature dims parsed so far (shapes repeat the same few dims).
    dims: RefCell<HashMap<String, Dim>>,
}

// ---------------------------------------------------------------------------------------------
// Names, counts, scalars
// ---------------------------------------------------------------------------------------------

fn count(
    n: usize,
    limit: u64,
    location: impl FnOnce() -> String,
    what: &'static str,
) -> Result<()> {
    if n as u64 > limit {
        return Err(FormatError::limit(location(), what, n as u64, limit));
    }
    Ok(())
}

/// A name: at most [`MAX_NAME_BYTES`], no control characters.
pub(crate) fn name(s: &str, location: impl FnOnce() -> String) -> Result<String> {
    if s.len() as u64 > MAX_NAME_BYTES {
        return Err(FormatError::limit(
            location(),
            "name length in bytes",
            s.len() as u64,
            MAX_NAME_BYTES,
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FormatError::invalid(
            location(),
            format!("name {s:?} contains a control character"),
        ));
    }
    Ok(s.to_string())
}

/// A symbol name: an identifier (`N`, `seq_len`), as dimension expressions spell them.
pub(crate) fn symbol_name(s: &str, location: impl Fn() -> String) -> Result<String> {
    let s = name(s, &location)?;
    let mut chars = s.chars();
    let ok = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_');
    if !ok {
        return Err(FormatError::invalid(
            location(),
            format!("symbol name {s:?} is not an identifier"),
        ));
    }
    Ok(s)
}

fn dtype(d: DTypeV1) -> DType {
    match d {
        DTypeV1::F32 => DType::F32,
        DTypeV1::F64 => DType::F64,
        DTypeV1::I32 => DType::I32,
        DTypeV1::I64 => DType::I64,
        DTypeV1::U32 => DType::U32,
        DTypeV1::Bool => DType::Bool,
    }
}

fn scalar(s: ScalarV1) -> Scalar {
    match s {
        ScalarV1::F32(b) => Scalar::F32(f32::from_bits(b)),
        ScalarV1::F64(b) => Scalar::F64(f64::from_bits(b)),
        ScalarV1::I32(v) => Scalar::I32(v),
        ScalarV1::I64(v) => Scalar::I64(v),
        ScalarV1::U32(v) => Scalar::U32(v),
        ScalarV1::Bool(v) => Scalar::Bool(v),
    }
}

fn unary(u: UnaryV1) -> UnaryOp {
    match u {
        UnaryV1::Neg => UnaryOp::Neg,
        UnaryV1::Abs => UnaryOp::Abs,
        UnaryV1::Exp => UnaryOp::Exp,
        UnaryV1::Log => UnaryOp::Log,
        UnaryV1::Sqrt => UnaryOp::Sqrt,
        UnaryV1::Rsqrt => UnaryOp::Rsqrt,
        UnaryV1::Recip => UnaryOp::Recip,
        UnaryV1::Sin => UnaryOp::Sin,
        UnaryV1::Cos => UnaryOp::Cos,
        UnaryV1::Tanh => UnaryOp::Tanh,
        UnaryV1::Sigmoid => UnaryOp::Sigmoid,
        UnaryV1::Erf => UnaryOp::Erf,
        UnaryV1::Floor => UnaryOp::Floor,
        UnaryV1::Ceil => UnaryOp::Ceil,
        UnaryV1::Round => UnaryOp::Round,
        UnaryV1::Sign => UnaryOp::Sign,
        UnaryV1::Not => UnaryOp::Not,
        UnaryV1::IsNan => UnaryOp::IsNan,
    }
}

fn binary(b: BinaryV1) -> BinaryOp {
    match b {
        BinaryV1::Add => BinaryOp::Add,
        BinaryV1::Sub => BinaryOp::Sub,
        BinaryV1::Mul => BinaryOp::Mul,
        BinaryV1::Div => BinaryOp::Div,
        BinaryV1::Rem => BinaryOp::Rem,
        BinaryV1::Pow => BinaryOp::Pow,
        BinaryV1::Max => BinaryOp::Max,
        BinaryV1::Min => BinaryOp::Min,
        BinaryV1::Eq => BinaryOp::Eq,
        BinaryV1::Ne => BinaryOp::Ne,
        BinaryV1::Lt => BinaryOp::Lt,
        BinaryV1::Le => BinaryOp::Le,
        BinaryV1::Gt => BinaryOp::Gt,
        BinaryV1::Ge => BinaryOp::Ge,
        BinaryV1::And => BinaryOp::And,
        BinaryV1::Or => BinaryOp::Or,
        BinaryV1::Xor => BinaryOp::Xor,
    }
}

fn reduce(r: ReduceV1) -> ReduceOp {
    match r {
        ReduceV1::Sum => ReduceOp::Sum,
        ReduceV1::Max => ReduceOp::Max,
        ReduceV1::Min => ReduceOp::Min,
        ReduceV1::Prod => ReduceOp::Prod,
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata, symbols, signature
// ---------------------------------------------------------------------------------------------

fn metadata(m: &MetadataV1) -> Result<Metadata> {
    let producer = name(&m.producer, || "metadata producer".to_string())?;
    count(
        m.options.len(),
        MAX_ENTRIES,
        || "metadata options".to_string(),
        "entry count",
    )?;
    let mut options = BTreeMap::new();
    let mut last: Option<&str> = None;
    for (k, v) in &m.options {
        let key = name(k, || "metadata option key".to_string())?;
        if v.len() as u64 > MAX_NAME_BYTES {
            return Err(FormatError::limit(
                format!("metadata option {}", shown(k)),
                "value length in bytes",
                v.len() as u64,
                MAX_NAME_BYTES,
            ));
        }
        if last.is_some_and(|l| l >= k.as_str()) {
            return Err(FormatError::invalid(
                format!("metadata option {}", shown(k)),
                "keys are not sorted and unique",
            ));
        }
        last = Some(k);
        options.insert(key, v.clone());
    }
    Ok(Metadata {
        producer,
        created: m.created,
        options,
    })
}

fn symbols(list: &[SymbolV1], owner: &str) -> Result<Vec<SymbolSpec>> {
    count(
        list.len(),
        MAX_SYMBOLS,
        || format!("{owner} symbols"),
        "symbol count",
    )?;
    let mut seen = HashSet::new();
    list.iter()
        .map(|s| {
            let location = || format!("{owner} symbol {}", shown(&s.name));
            let n = symbol_name(&s.name, location)?;
            if !seen.insert(n.clone()) {
                return Err(FormatError::invalid(location(), "declared twice"));
            }
            if let Some(max) = s.max
                && max < s.min
            {
                return Err(FormatError::invalid(
                    location(),
                    format!("range {}..={max} is empty", s.min),
                ));
            }
            Ok(SymbolSpec {
                name: n,
                min: s.min,
                max: s.max,
            })
        })
        .collect()
}

fn tensor_specs(cx: &Cx<'_>, list: &[TensorSpecV1], what: &str) -> Result<Vec<TensorSpec>> {
    count(
        list.len(),
        MAX_ENTRIES,
        || format!("{what}s"),
        "entry count",
    )?;
    let mut seen = HashSet::new();
    list.iter()
        .map(|t| {
            let location = || format!("{what} {}", shown(&t.name));
            let n = name(&t.name, location)?;
            if !seen.insert(n.clone()) {
                return Err(FormatError::invalid(location(), "name used twice"));
            }
            Ok(TensorSpec {
                name: n,
                dtype: dtype(t.dtype),
                shape: cx.shape(&t.shape, &location)?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Dimensions and shapes
// ---------------------------------------------------------------------------------------------

/// Parses a dimension expression after bounding its length, constants and exponents, and
/// requires the canonical printed form (so equal dims have equal bytes).
pub(crate) fn parse_dim(text: &str, location: &dyn Fn() -> String) -> Result<Dim> {
    if text.len() as u64 > MAX_DIM_TEXT_BYTES {
        return Err(FormatError::limit(
            location(),
            "dimension text length in bytes",
            text.len() as u64,
            MAX_DIM_TEXT_BYTES,
        ));
    }
    let bad = |why: String| FormatError::invalid(location(), format!("dimension {text:?} {why}"));
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut after_caret = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            let (limit, what) = if after_caret {
                (MAX_DIM_EXPONENT, "exponent")
            } else {
                (MAX_DIM_VALUE, "constant")
            };
            match digits.parse::<u64>() {
                Ok(v) if v <= limit => {}
                _ => {
                    return Err(bad(format!(
                        "has the {what} {digits}, over the limit {limit}"
                    )));
                }
            }
            after_caret = false;
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            after_caret = false;
            continue;
        }
        match c {
            '^' => after_caret = true,
            '+' | '-' | '*' => after_caret = false,
            _ => return Err(bad(format!("has the unexpected character {c:?}"))),
        }
        i += 1;
    }
    let d: Dim = text
        .parse()
        .map_err(|_| bad("is not a dimension expression".to_string()))?;
    let canonical = d.to_string();
    if canonical != text {
        return Err(bad(format!(
            "is not in canonical form (expected {canonical:?})"
        )));
    }
    Ok(d)
}

impl Cx<'_> {
    /// A graph or signature dimension: parsed, and every symbol declared in the signature.
    fn dim(&self, text: &str, location: &dyn Fn() -> String) -> Result<Dim> {
        if let Some(d) = self.dims.borrow().get(text) {
            return Ok(d.clone());
        }
        let d = parse_dim(text, location)?;
        for s in d.symbols() {
            if !self.declared.contains(&*s) {
                return Err(FormatError::invalid(
                    location(),
                    format!("symbol {} is not declared in the signature", shown(&s)),
                ));
            }
        }
        self.dims.borrow_mut().insert(text.to_string(), d.clone());
        Ok(d)
    }

    fn shape(&self, dims: &[DimV1], location: &dyn Fn() -> String) -> Result<Shape> {
        count(dims.len(), MAX_RANK, location, "rank")?;
        dims.iter()
            .map(|d| self.dim(d, location))
            .collect::<Result<Vec<Dim>>>()
            .map(Shape)
    }
}

fn axis(a: u64, location: &dyn Fn() -> String) -> Result<usize> {
    if a >= MAX_RANK {
        return Err(FormatError::limit(location(), "axis", a, MAX_RANK - 1));
    }
    Ok(a as usize)
}

fn axis_list(a: &[u64], location: &dyn Fn() -> String) -> Result<Vec<usize>> {
    count(a.len(), MAX_RANK, location, "axis count")?;
    a.iter().map(|&x| axis(x, location)).collect()
}

fn attr(v: u64, limit: u64, what: &'static str, location: &dyn Fn() -> String) -> Result<u64> {
    if v > limit {
        return Err(FormatError::limit(location(), what, v, limit));
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Data section
// ---------------------------------------------------------------------------------------------

/// Every tensor reference of the header with a description of where it is.
fn tensor_refs(h: &HeaderV1) -> Vec<(&TensorRefV1, String)> {
    let mut out = Vec::new();
    for s in &h.state {
        out.push((&s.tensor, format!("state tensor {}", shown(&s.name))));
    }
    for n in &h.graph.nodes {
        if let OpV1::Constant(r) = &n.op {
            out.push((r, format!("graph node n{} constant", n.id)));
        }
    }
    if let Some(p) = &h.program {
        for (i, b) in p.buffers.iter().enumerate() {
            if let BufferKindV1::Constant(r) = &b.kind {
                out.push((r, format!("kernel plan buffer b{i} constant")));
            }
        }
    }
    out
}

/// Validates a tensor reference: dtype, shape, element count, alignment and byte range.
/// Returns the concrete shape and the byte range in the data section.
fn tensor_ref(
    r: &TensorRefV1,
    data_len: usize,
    location: &str,
) -> Result<(Vec<usize>, Range<usize>)> {
    let loc = || location.to_string();
    count(r.shape.len(), MAX_RANK, loc, "rank")?;
    let mut elements: u64 = 1;
    for &d in &r.shape {
        attr(d, MAX_DIM_VALUE, "dimension", &loc)?;
        elements = elements.saturating_mul(d);
    }
    attr(elements, MAX_TENSOR_ELEMENTS, "element count", &loc)?;
    let dt = dtype(r.dtype);
    let bytes = elements * dt.size_bytes() as u64;
    let shape_text = format!("{dt}{:?}", r.shape);
    if r.len != bytes {
        return Err(FormatError::invalid(
            location,
            format!(
                "data length {} bytes does not match {shape_text}, which needs {bytes}",
                r.len
            ),
        ));
    }
    if !r.offset.is_multiple_of(crate::layout::ALIGN) {
        return Err(FormatError::invalid(
            location,
            format!(
                "data offset {} is not a multiple of {}",
                r.offset,
                crate::layout::ALIGN
            ),
        ));
    }
    match r.offset.checked_add(r.len) {
        Some(end) if end <= data_len as u64 => Ok((
            r.shape.iter().map(|&d| d as usize).collect(),
            r.offset as usize..end as usize,
        )),
        end => Err(FormatError::invalid(
            location,
            format!(
                "data range {}..{} exceeds the data section size {data_len}",
                r.offset,
                end.map_or_else(|| "overflow".to_string(), |e| e.to_string())
            ),
        )),
    }
}

/// Checks every tensor reference, that no two overlap, and that bytes outside them are zero.
fn check_data_layout(h: &HeaderV1, data: &[u8]) -> Result<()> {
    let refs = tensor_refs(h);
    let mut ranges: Vec<(Range<usize>, String)> = Vec::with_capacity(refs.len());
    for (r, location) in refs {
        let (_, range) = tensor_ref(r, data.len(), &location)?;
        if !range.is_empty() {
            ranges.push((range, location));
        }
    }
    ranges.sort_by_key(|(r, _)| (r.start, r.end));
    for pair in ranges.windows(2) {
        let [(p, ploc), (r, location)] = pair else {
            continue;
        };
        if r.start < p.end {
            return Err(FormatError::invalid(
                location.as_str(),
                format!(
                    "data range {}..{} overlaps {ploc} at {}..{}",
                    r.start, r.end, p.start, p.end
                ),
            ));
        }
    }
    let mut covered = 0usize;
    for (r, _) in &ranges {
        zero_gap(data, covered..r.start)?;
        covered = r.end;
    }
    zero_gap(data, covered..data.len())
}

fn zero_gap(data: &[u8], gap: Range<usize>) -> Result<()> {
    let start = gap.start;
    match data.get(gap).and_then(|g| g.iter().position(|&b| b != 0)) {
        Some(p) => Err(FormatError::invalid(
            "data section",
            format!(
                "padding byte {} is {:#04x}, expected 0",
                start + p,
                data[start + p]
            ),
        )),
        None => Ok(()),
    }
}

impl Cx<'_> {
    /// The array a (checked) reference names.
    fn array(&self, r: &TensorRefV1, location: &str) -> Result<Array> {
        let (shape, range) = tensor_ref(r, self.data.len(), location)?;
        let bytes = &self.data[range];
        let dt = dtype(r.dtype);
        if dt == DType::Bool
            && let Some(p) = bytes.iter().position(|&b| b > 1)
        {
            return Err(FormatError::invalid(
                location,
                format!("bool element {p} is stored as {}, not 0 or 1", bytes[p]),
            ));
        }
        Array::from_le_bytes(dt, &shape, bytes)
            .map_err(|e| FormatError::invalid(location, e.to_string()))
    }
}

fn state(cx: &Cx<'_>, list: &[StateEntryV1]) -> Result<Vec<(String, Array)>> {
    count(
        list.len(),
        MAX_ENTRIES,
        || "state table".to_string(),
        "entry count",
    )?;
    let mut total: u64 = 0;
    let mut seen = HashSet::new();
    list.iter()
        .map(|s| {
            let location = format!("state tensor {}", shown(&s.name));
            let n = name(&s.name, || location.clone())?;
            if !seen.insert(n.clone()) {
                return Err(FormatError::invalid(location, "name used twice"));
            }
            total = total.saturating_add(s.tensor.len);
            if total > MAX_STATE_BYTES {
                return Err(FormatError::limit(
                    "state table",
                    "total bytes",
                    total,
                    MAX_STATE_BYTES,
                ));
            }
            Ok((n, cx.array(&s.tensor, &location)?))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Graph
// ---------------------------------------------------------------------------------------------

fn files(list: &[String]) -> Result<Vec<String>> {
    count(
        list.len(),
        MAX_ENTRIES,
        || "source file table".to_string(),
        "entry count",
    )?;
    list.iter()
        .enumerate()
        .map(|(i, f)| name(f, || format!("source file {i}")))
        .collect()
}

fn placeholder() -> Node {
    Node {
        op: Op::MatMul,
        dtype: DType::F32,
        shape: Shape::scalar(),
        loc: None,
    }
}

fn graph(cx: &Cx<'_>, g: &GraphV1, files: &[String]) -> Result<Graph> {
    count(
        g.nodes.len(),
        MAX_NODES,
        || "graph".to_string(),
        "node count",
    )?;
    let mut ids: Vec<u32> = Vec::with_capacity(g.nodes.len());
    let id_limit = max_node_id(g.nodes.len());
    for n in &g.nodes {
        if u64::from(n.id) > id_limit {
            return Err(FormatError::limit(
                format!("graph node n{}", n.id),
                "id",
                u64::from(n.id),
                id_limit,
            ));
        }
        if let Some(&prev) = ids.last()
            && n.id <= prev
        {
            return Err(FormatError::invalid(
                format!("graph node n{}", n.id),
                format!(
                    "ids are not strictly increasing (n{} follows n{prev})",
                    n.id
                ),
            ));
        }
        ids.push(n.id);
    }
    let mut built: Vec<(Node, Vec<NodeId>)> = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        let location = || format!("graph node n{}", n.id);
        count(n.operands.len(), MAX_OPERANDS, location, "operand count")?;
        for &o in &n.operands {
            if ids.binary_search(&o).is_err() {
                return Err(FormatError::invalid(
                    location(),
                    format!("operand n{o} is not a node of the graph"),
                ));
            }
        }
        let loc = match &n.loc {
            None => None,
            Some(l) => {
                let file = files.get(l.file as usize).ok_or_else(|| {
                    FormatError::invalid(
                        location(),
                        format!(
                            "source file index {} is out of range (the table has {})",
                            l.file,
                            files.len()
                        ),
                    )
                })?;
                Some(Loc {
                    file: file.clone(),
                    line: l.line,
                    column: l.column,
                })
            }
        };
        let node = Node {
            op: cx.op(&n.op, &location)?,
            dtype: dtype(n.dtype),
            shape: cx.shape(&n.shape, &location)?,
            loc,
        };
        built.push((node, n.operands.iter().map(|&o| NodeId(o)).collect()));
    }
    // Recreate the ids exactly: add nodes in id order with fillers in the gaps (a fresh graph
    // hands out ids 0, 1, 2, ...), then drop the fillers. Operands that come later in id
    // order (only in a cyclic, hence invalid, graph) are attached once every node exists.
    let mut out = Graph::new();
    let mut fillers = Vec::new();
    let mut deferred: Vec<(NodeId, Vec<NodeId>)> = Vec::new();
    let mut next: u32 = 0;
    for ((node, operands), &id) in built.into_iter().zip(&ids) {
        while next < id {
            fillers.push(out.add_unchecked(placeholder(), &[]));
            next += 1;
        }
        let forward = operands.iter().any(|o| o.0 >= id);
        let got = if forward {
            let got = out.add_unchecked(node, &[]);
            deferred.push((got, operands));
            got
        } else {
            out.add_unchecked(node, &operands)
        };
        if got != NodeId(id) {
            return Err(FormatError::invalid(
                format!("graph node n{id}"),
                format!("was rebuilt as {got}"),
            ));
        }
        next += 1;
    }
    for f in fillers {
        out.remove(f);
    }
    for (user, operands) in deferred {
        for (pos, o) in operands.into_iter().enumerate() {
            out.set_operand(user, pos as u32, o);
        }
    }
    Ok(out)
}

impl Cx<'_> {
    fn op(&self, op: &OpV1, location: &dyn Fn() -> String) -> Result<Op> {
        let shape = |dims: &[DimV1]| self.shape(dims, location);
        let named = |n: &str| name(n, location);
        Ok(match op {
            OpV1::Input {
                name,
                dtype: d,
                shape: s,
            } => Op::Input {
                name: named(name)?,
                dtype: dtype(*d),
                shape: shape(s)?,
            },
            OpV1::Parameter {
                name,
                dtype: d,
                shape: s,
            } => Op::Parameter {
                name: named(name)?,
                dtype: dtype(*d),
                shape: shape(s)?,
            },
            OpV1::Constant(r) => Op::Constant(self.array(r, &format!("{} constant", location()))?),
            OpV1::Iota {
                dtype: d,
                shape: s,
                axis: a,
            } => Op::Iota {
                dtype: dtype(*d),
                shape: shape(s)?,
                axis: axis(*a, location)?,
            },
            OpV1::RandomBits { shape: s } => Op::RandomBits { shape: shape(s)? },
            OpV1::Unary(u) => Op::Unary(unary(*u)),
            OpV1::Binary(b) => Op::Binary(binary(*b)),
            OpV1::Select => Op::Select,
            OpV1::Cast(d) => Op::Cast(dtype(*d)),
            OpV1::StopGradient => Op::StopGradient,
            OpV1::Reduce { op, axes, keepdim } => Op::Reduce {
                op: reduce(*op),
                axes: axis_list(axes, location)?,
                keepdim: *keepdim,
            },
            OpV1::ArgReduce {
                op,
                axis: a,
                keepdim,
            } => Op::ArgReduce {
                op: match op {
                    ArgV1::ArgMax => ArgOp::ArgMax,
                    ArgV1::ArgMin => ArgOp::ArgMin,
                },
                axis: axis(*a, location)?,
                keepdim: *keepdim,
            },
            OpV1::Reshape(s) => Op::Reshape(shape(s)?),
            OpV1::Permute(p) => Op::Permute(axis_list(p, location)?),
            OpV1::Expand(s) => Op::Expand(shape(s)?),
            OpV1::Slice(axes) => {
                count(axes.len(), MAX_RANK, location, "slice entry count")?;
                Op::Slice(
                    axes.iter()
                        .map(|a| SliceAxis {
                            start: a.start,
                            stop: a.stop,
                            step: a.step,
                        })
                        .collect(),
                )
            }
            OpV1::Pad { pads, value } => {
                count(pads.len(), MAX_RANK, location, "pad entry count")?;
                for &(lo, hi) in pads {
                    attr(lo, MAX_WINDOW_ATTR, "pad amount", location)?;
                    attr(hi, MAX_WINDOW_ATTR, "pad amount", location)?;
                }
                Op::Pad {
                    pads: pads.clone(),
                    value: F64Bits::new(f64::from_bits(*value)),
                }
            }
            OpV1::Concat { axis: a } => Op::Concat {
                axis: axis(*a, location)?,
            },
            OpV1::Flip { axes } => Op::Flip {
                axes: axis_list(axes, location)?,
            },
            OpV1::Gather { axis: a } => Op::Gather {
                axis: axis(*a, location)?,
            },
            OpV1::ScatterAdd { axis: a } => Op::ScatterAdd {
                axis: axis(*a, location)?,
            },
            OpV1::MatMul => Op::MatMul,
            OpV1::Conv2d {
                stride,
                padding,
                dilation,
                groups,
            } => {
                for &v in stride.iter().chain(padding).chain(dilation) {
                    attr(v, MAX_CONV_ATTR, "convolution attribute", location)?;
                }
                attr(*groups, MAX_CONV_ATTR, "convolution groups", location)?;
                Op::Conv2d {
                    stride: *stride,
                    padding: *padding,
                    dilation: *dilation,
                    groups: *groups,
                }
            }
            OpV1::Window {
                op,
                window,
                stride,
                padding,
            } => {
                count(window.len(), MAX_RANK, location, "window rank")?;
                count(stride.len(), MAX_RANK, location, "window stride count")?;
                count(padding.len(), MAX_RANK, location, "window padding count")?;
                for &v in window
                    .iter()
                    .chain(stride)
                    .chain(padding.iter().flat_map(|(a, b)| [a, b]))
                {
                    attr(v, MAX_WINDOW_ATTR, "window attribute", location)?;
                }
                Op::Window {
                    op: match op {
                        WindowV1::Sum => WindowOp::Sum,
                        WindowV1::Max => WindowOp::Max,
                    },
                    window: window.clone(),
                    stride: stride.clone(),
                    padding: padding.clone(),
                }
            }
        })
    }
}

fn named_nodes(g: &Graph, list: &[NamedNodeV1], what: &str) -> Result<Vec<(String, NodeId)>> {
    count(
        list.len(),
        MAX_ENTRIES,
        || format!("{what}s"),
        "entry count",
    )?;
    let mut seen = HashSet::new();
    list.iter()
        .map(|n| {
            let location = || format!("{what} {}", shown(&n.name));
            let s = name(&n.name, location)?;
            if !seen.insert(s.clone()) {
                return Err(FormatError::invalid(location(), "name used twice"));
            }
            let id = NodeId(n.node);
            if !g.contains(id) {
                return Err(FormatError::invalid(
                    location(),
                    format!("node {id} is not a node of the graph"),
                ));
            }
            Ok((s, id))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Kernel plan
// ---------------------------------------------------------------------------------------------

fn program(cx: &Cx<'_>, p: &ProgramV1) -> Result<Program> {
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
    Ok(Program {
        symbols,
        buffers,
        kernels,
    })
}

fn dims(list: &[DimV1], location: &dyn Fn() -> String) -> Result<Vec<Dim>> {
    count(list.len(), MAX_RANK, location, "rank")?;
    list.iter().map(|d| parse_dim(d, location)).collect()
}

fn kernel(k: &KernelV1, location: &dyn Fn() -> String) -> Result<Kernel> {
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

fn body(b: &BodyV1, location: &dyn Fn() -> String) -> Result<Body> {
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
    Ok(Body {
        values,
        stores,
        result: b.result.map(ValueId),
    })
}

fn expr(e: &ExprV1, location: &dyn Fn() -> String) -> Result<Expr> {
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
        ExprV1::Unary(u, v) => Expr::Unary(unary(*u), ValueId(*v)),
        ExprV1::Binary(b, x, y) => Expr::Binary(binary(*b), ValueId(*x), ValueId(*y)),
        ExprV1::Select(c, a, b) => Expr::Select(ValueId(*c), ValueId(*a), ValueId(*b)),
        ExprV1::Cast(d, v) => Expr::Cast(dtype(*d), ValueId(*v)),
        ExprV1::Reduce { op, value, init } => Expr::Reduce {
            op: reduce(*op),
            value: ValueId(*value),
            init: scalar(*init),
        },
        ExprV1::Acc => Expr::Acc,
    })
}

/// Rebuilds an index tree from its postfix list without recursion: each node takes its
/// children out of the slots of earlier nodes, so every node is used exactly once (no
/// sharing that would blow up into an exponentially large tree), and depth is bounded.
fn index(nodes: &[IndexNodeV1], location: &dyn Fn() -> String) -> Result<IndexExpr> {
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

// ---------------------------------------------------------------------------------------------
// Cross-checks
// ---------------------------------------------------------------------------------------------

fn numel(shape: &[usize]) -> Dim {
    Dim::product(
        shape
            .iter()
            .map(|&d| Dim::from(d))
            .collect::<Vec<_>>()
            .iter(),
    )
}

fn cross_check(m: &Module) -> Result<()> {
    let g = &m.graph;
    // Signature inputs are exactly the graph's input nodes.
    let mut graph_inputs: HashMap<&str, (NodeId, DType, &Shape)> = HashMap::new();
    for (id, _) in g.inputs() {
        if let Some(Node {
            op: Op::Input { name, dtype, shape },
            ..
        }) = g.get(id)
        {
            graph_inputs.insert(name, (id, *dtype, shape));
        }
    }
    for t in &m.signature.inputs {
        let location = format!("signature input {}", shown(&t.name));
        match graph_inputs.remove(t.name.as_str()) {
            None => {
                return Err(FormatError::invalid(
                    location,
                    "the graph has no such input",
                ));
            }
            Some((id, d, s)) if (d, s) != (t.dtype, &t.shape) => {
                return Err(FormatError::invalid(
                    location,
                    format!(
                        "declared {}{} but graph input {id} is {d}{s}",
                        t.dtype, t.shape
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some((name, (id, _, _))) = graph_inputs.into_iter().min_by_key(|(_, v)| v.0) {
        return Err(FormatError::invalid(
            format!("graph node {id}"),
            format!("input {} is missing from the signature", shown(name)),
        ));
    }
    // Signature outputs are the named outputs, in order, with their nodes' types.
    if m.signature.outputs.len() != m.outputs.len() {
        return Err(FormatError::invalid(
            "signature outputs",
            format!(
                "{} declared but the module has {} named outputs",
                m.signature.outputs.len(),
                m.outputs.len()
            ),
        ));
    }
    for (t, (name, id)) in m.signature.outputs.iter().zip(&m.outputs) {
        let location = format!("signature output {}", shown(&t.name));
        if t.name != *name {
            return Err(FormatError::invalid(
                location,
                format!("the module's output in this position is {}", shown(name)),
            ));
        }
        if let Some(n) = g.get(*id)
            && (n.dtype, &n.shape) != (t.dtype, &t.shape)
        {
            return Err(FormatError::invalid(
                location,
                format!(
                    "declared {}{} but node {id} is {}{}",
                    t.dtype, t.shape, n.dtype, n.shape
                ),
            ));
        }
    }
    // State covers every parameter node and every update.
    let state: HashMap<&str, &Array> = m.state.iter().map(|(n, a)| (n.as_str(), a)).collect();
    for (id, _) in g.parameters() {
        if let Some(Node {
            op: Op::Parameter { name, dtype, shape },
            ..
        }) = g.get(id)
        {
            let location = format!("graph node {id}");
            let Some(a) = state.get(name.as_str()) else {
                return Err(FormatError::invalid(
                    location,
                    format!("parameter {} has no state tensor", shown(name)),
                ));
            };
            let stored = Shape::known(a.shape());
            if (a.dtype(), &stored) != (*dtype, shape) {
                return Err(FormatError::invalid(
                    format!("state tensor {}", shown(name)),
                    format!(
                        "is {}{stored} but parameter node {id} is {dtype}{shape}",
                        a.dtype()
                    ),
                ));
            }
        }
    }
    for (name, id) in &m.updates {
        let location = format!("update {}", shown(name));
        let Some(a) = state.get(name.as_str()) else {
            return Err(FormatError::invalid(location, "names no state tensor"));
        };
        let stored = Shape::known(a.shape());
        if let Some(n) = g.get(*id)
            && (n.dtype, &n.shape) != (a.dtype(), &stored)
        {
            return Err(FormatError::invalid(
                location,
                format!(
                    "node {id} is {}{} but the state tensor is {}{stored}",
                    n.dtype,
                    n.shape,
                    a.dtype()
                ),
            ));
        }
    }
    if let Some(p) = &m.program {
        cross_check_program(m, p, &state)?;
    }
    Ok(())
}

fn cross_check_program(m: &Module, p: &Program, state: &HashMap<&str, &Array>) -> Result<()> {
    // Every binding the signature allows must be one the plan's bounds proofs cover.
    for s in &p.symbols {
        let location = format!("kernel plan symbol {}", shown(&s.name));
        let Some(sig) = m.signature.symbols.iter().find(|x| x.name == s.name) else {
            return Err(FormatError::invalid(location, "is not a signature symbol"));
        };
        let inside = sig.min >= s.min
            && match (s.max, sig.max) {
                (None, _) => true,
                (Some(pmax), Some(smax)) => smax <= pmax,
                (Some(_), None) => false,
            };
        if !inside {
            let range = |min: u64, max: Option<u64>| match max {
                Some(max) => format!("{min}..={max}"),
                None => format!(">= {min}"),
            };
            return Err(FormatError::invalid(
                location,
                format!(
                    "the signature allows {} but the plan is verified only for {}",
                    range(sig.min, sig.max),
                    range(s.min, s.max)
                ),
            ));
        }
    }
    let inputs: HashMap<&str, &TensorSpec> = m
        .signature
        .inputs
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut wanted: BTreeMap<String, (DType, Dim)> = BTreeMap::new();
    for t in &m.signature.outputs {
        wanted.insert(t.name.clone(), (t.dtype, t.shape.numel()));
    }
    for (name, _) in &m.updates {
        if let Some(a) = state.get(name.as_str()) {
            wanted.insert(
                format!("{UPDATE_OUTPUT_PREFIX}{name}"),
                (a.dtype(), numel(a.shape())),
            );
        }
    }
    let mut written: BTreeSet<&str> = BTreeSet::new();
    for (i, b) in p.buffers.iter().enumerate() {
        let location = format!("kernel plan buffer b{i}");
        let expect = |what: String, d: DType, size: &Dim| -> Result<()> {
            if (b.dtype, &b.size) != (d, size) {
                return Err(FormatError::invalid(
                    location.clone(),
                    format!("is {}[{}] but {what} is {d}[{size}]", b.dtype, b.size),
                ));
            }
            Ok(())
        };
        match &b.kind {
            BufferKind::Input(n) => {
                let Some(t) = inputs.get(n.as_str()) else {
                    return Err(FormatError::invalid(
                        location,
                        format!("input {} is not a signature input", shown(n)),
                    ));
                };
                expect(
                    format!("signature input {}", shown(n)),
                    t.dtype,
                    &t.shape.numel(),
                )?;
            }
            BufferKind::State(n) => {
                let Some(a) = state.get(n.as_str()) else {
                    return Err(FormatError::invalid(
                        location,
                        format!("state {} has no state tensor", shown(n)),
                    ));
                };
                expect(
                    format!("state tensor {}", shown(n)),
                    a.dtype(),
                    &numel(a.shape()),
                )?;
            }
            BufferKind::Output(n) => {
                let Some((d, size)) = wanted.get(n.as_str()) else {
                    return Err(FormatError::invalid(
                        location,
                        format!(
                            "output {} is neither a signature output nor {UPDATE_OUTPUT_PREFIX}<state> of an update",
                            shown(n)
                        ),
                    ));
                };
                expect(format!("output {}", shown(n)), *d, size)?;
                written.insert(n.as_str());
            }
            BufferKind::Constant(_) | BufferKind::Scratch => {}
        }
    }
    if let Some(missing) = wanted.keys().find(|k| !written.contains(k.as_str())) {
        return Err(FormatError::invalid(
            "kernel plan",
            format!("no output buffer for {}", shown(missing)),
        ));
    }
    Ok(())
}
