//! Lowering of kernel bodies to WGSL statements: literals, index expressions, loads (plain,
//! masked, checked), scalar ops with kiln's semantics, casts and stores. One [`Emitter`]
//! serves one kernel and collects what its shader must declare (params, bindings, helpers).

use crate::error::WgslError;
use crate::helpers::Helper;
use crate::shader::{Arena, PACKED_ERROR_BASE, PackedBuffer, StorageBinding};
use crate::target::Target;
use kiln_ir::semantics::{binary_dtype, unary_dtype};
use kiln_ir::{BinaryOp, DType, Dim, ReduceOp, UnaryOp};
use kiln_kernel::{
    Body, BufferId, BufferKind, Expr, IndexExpr, Kernel, KernelId, LoadMode, Program, Scalar,
    ValueId,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

/// The WGSL type of a value of `dtype`.
pub(crate) fn value_type(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::I32 => "i32",
        DType::U32 => "u32",
        DType::Bool => "bool",
        DType::F64 => "f64",
        DType::I64 => "vec2<u32>",
    }
}

/// The WGSL element type of a storage buffer of `dtype` (bool is stored as `u32`, `i64` as
/// `vec2<u32>`, low word first, which is the host's little-endian layout).
pub(crate) fn storage_type(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "u32",
        d => value_type(d),
    }
}

/// True for dtypes WGSL can express (`i64` through two-word emulation).
pub(crate) fn expressible(dtype: DType) -> bool {
    match dtype {
        DType::F32 | DType::I32 | DType::U32 | DType::Bool | DType::I64 => true,
        DType::F64 => false,
    }
}

/// Bytes of one element of `dtype` in a device buffer or workgroup array: 8 for `i64`
/// (two words), 4 for everything else (bool as one `u32`).
pub fn device_element_bytes(dtype: DType) -> u32 {
    match dtype {
        DType::I64 | DType::F64 => 8,
        DType::F32 | DType::I32 | DType::U32 | DType::Bool => 4,
    }
}

/// A WGSL literal for a scalar (WGSL has no infinity or NaN literals, so those are bitcasts).
pub(crate) fn literal(s: Scalar) -> String {
    match s {
        Scalar::F32(v) => {
            if v.is_finite() {
                let text = format!("{v:?}f");
                if v.is_sign_negative() {
                    format!("({text})")
                } else {
                    text
                }
            } else {
                format!("bitcast<f32>(0x{:08x}u)", v.to_bits())
            }
        }
        Scalar::I32(v) => {
            if v == i32::MIN {
                "(-2147483647i - 1i)".to_string()
            } else if v < 0 {
                format!("({v}i)")
            } else {
                format!("{v}i")
            }
        }
        Scalar::U32(v) => format!("{v}u"),
        Scalar::Bool(v) => v.to_string(),
        Scalar::F64(v) => format!("{v:?}"),
        Scalar::I64(v) => {
            let bits = v as u64;
            format!(
                "vec2<u32>(0x{:08x}u, 0x{:08x}u)",
                bits & 0xffff_ffff,
                bits >> 32
            )
        }
    }
}

/// The zero of a value type as a literal.
pub(crate) fn zero(dtype: DType) -> String {
    literal(Scalar::zero(dtype))
}

/// The combining expression of a reduction (`a` and `b` are WGSL expressions).
pub(crate) fn combine(
    op: ReduceOp,
    dtype: DType,
    a: &str,
    b: &str,
    helpers: &mut BTreeSet<Helper>,
) -> String {
    if dtype == DType::I64 {
        let (helper, name) = match op {
            ReduceOp::Sum => (Helper::I64, "kiln_i64_add"),
            ReduceOp::Prod => (Helper::I64Mul, "kiln_i64_mul"),
            ReduceOp::Max => (Helper::I64, "kiln_i64_max"),
            ReduceOp::Min => (Helper::I64, "kiln_i64_min"),
        };
        helpers.insert(helper);
        return format!("{name}({a}, {b})");
    }
    match (op, dtype) {
        (ReduceOp::Sum, _) => format!("{a} + {b}"),
        (ReduceOp::Prod, _) => format!("{a} * {b}"),
        (ReduceOp::Max, DType::F32) => {
            helpers.insert(Helper::FMaxMin);
            format!("kiln_fmax({a}, {b})")
        }
        (ReduceOp::Min, DType::F32) => {
            helpers.insert(Helper::FMaxMin);
            format!("kiln_fmin({a}, {b})")
        }
        (ReduceOp::Max, _) => format!("max({a}, {b})"),
        (ReduceOp::Min, _) => format!("min({a}, {b})"),
    }
}

/// Buffers a kernel reads and writes, in buffer order, with `true` for written ones.
pub(crate) fn kernel_buffers(kernel: &Kernel) -> BTreeMap<BufferId, bool> {
    let mut out = BTreeMap::new();
    let bodies: Vec<&Body> = match kernel {
        Kernel::Loop(k) => vec![&k.body],
        Kernel::Matmul(k) => vec![&k.a, &k.b, &k.epilogue],
        Kernel::Conv2d(k) => vec![&k.input, &k.weight, &k.epilogue],
    };
    for body in bodies {
        for e in &body.values {
            if let Expr::Load(l) = e {
                out.entry(l.buffer).or_insert(false);
            }
        }
        for s in &body.stores {
            out.insert(s.buffer, true);
        }
    }
    out
}

/// The dtype of every value of a body (`acc` is the contraction's accumulator dtype).
pub(crate) fn value_dtypes(
    program: &Program,
    kernel: KernelId,
    body: &Body,
    acc: Option<DType>,
) -> Result<Vec<DType>, WgslError> {
    let bad = |message: String| WgslError::Unsupported { kernel, message };
    let mut types: Vec<DType> = Vec::with_capacity(body.values.len());
    for (i, e) in body.values.iter().enumerate() {
        let of = |v: &ValueId| {
            types
                .get(v.index())
                .copied()
                .ok_or_else(|| bad(format!("v{i} reads {v} before its definition")))
        };
        let t = match e {
            Expr::Const(s) => s.dtype(),
            Expr::Index { dtype, .. } => *dtype,
            Expr::Load(l) => {
                program
                    .buffer(l.buffer)
                    .ok_or_else(|| bad(format!("v{i} loads the undeclared buffer {}", l.buffer)))?
                    .dtype
            }
            Expr::Unary(op, a) => unary_dtype(*op, of(a)?).map_err(|e| bad(e.to_string()))?,
            Expr::Binary(op, a, b) => {
                binary_dtype(*op, of(a)?, of(b)?).map_err(|e| bad(e.to_string()))?
            }
            Expr::Select(_, a, _) => of(a)?,
            Expr::Cast(d, _) => *d,
            Expr::Reduce { value, .. } => of(value)?,
            Expr::Acc => acc.ok_or_else(|| bad(format!("v{i} = acc outside an epilogue")))?,
        };
        types.push(t);
    }
    Ok(types)
}

/// Where a kernel finds a buffer.
#[derive(Clone, Copy, Debug)]
enum Access {
    /// Its own binding `buf<slot>`.
    Bound(u32),
    /// Entry `k` of the scratch arena, at word offset `params.a<k>`.
    Packed(usize),
}

/// Two-word `i64` elements of the arena (low word first).
const ARENA_I64: &str = "
fn kiln_arena_load_i64(w: i32) -> vec2<u32> {
    return vec2<u32>(kiln_arena[w], kiln_arena[w + 1i]);
}

fn kiln_arena_store_i64(w: i32, v: vec2<u32>) {
    kiln_arena[w] = v.x;
    kiln_arena[w + 1i] = v.y;
}
";

/// Per-kernel lowering state.
pub(crate) struct Emitter<'p> {
    /// The program.
    pub program: &'p Program,
    /// The kernel being lowered.
    pub kernel: KernelId,
    /// Symbolic dims read from the params uniform, in field order.
    pub params: Vec<Dim>,
    /// Storage bindings (binding `k + 1` is `bindings[k]`).
    pub bindings: Vec<StorageBinding>,
    /// Scratch buffers reached through the arena binding (`params.a<k>` is the word
    /// offset of `packed[k]`).
    pub packed: Vec<PackedBuffer>,
    /// Helper functions used.
    pub helpers: BTreeSet<Helper>,
    /// True once an `i64` element of the arena is read or written (two-word helpers).
    pub arena_i64: bool,
    /// The device facts the shader may rely on.
    pub target: Target,
}

impl<'p> Emitter<'p> {
    /// A fresh emitter for `kernel`: every buffer it touches gets a binding, except scratch
    /// buffers, which it reaches through the one arena binding at offsets from the params
    /// uniform (so a kernel binds one storage buffer for all of its scratch, however many).
    pub(crate) fn new(
        program: &'p Program,
        kernel: KernelId,
        k: &Kernel,
        target: Target,
    ) -> Emitter<'p> {
        let mut bindings = Vec::new();
        let mut packed = Vec::new();
        for (buffer, stores) in kernel_buffers(k) {
            let b = program.buffer(buffer);
            let dtype = b.map_or(DType::F32, |b| b.dtype);
            if b.is_some_and(|b| matches!(b.kind, BufferKind::Scratch)) {
                packed.push(PackedBuffer {
                    buffer,
                    dtype,
                    arena: Arena::Scratch,
                });
                continue;
            }
            bindings.push(StorageBinding {
                binding: u32::try_from(bindings.len() + 1).unwrap_or(u32::MAX),
                buffer,
                dtype,
                writable: stores,
            });
        }
        Emitter {
            program,
            kernel,
            params: Vec::new(),
            bindings,
            packed,
            helpers: BTreeSet::new(),
            arena_i64: false,
            target,
        }
    }

    /// The binding of the scratch arena, if the kernel touches scratch (after the buffers'
    /// bindings).
    pub(crate) fn arena_binding(&self) -> Option<u32> {
        (!self.packed.is_empty())
            .then(|| u32::try_from(self.bindings.len() + 1).unwrap_or(u32::MAX))
    }

    /// The binding after the buffers and the arena: the error buffer's.
    pub(crate) fn error_binding(&self) -> u32 {
        u32::try_from(self.bindings.len() + 1 + usize::from(!self.packed.is_empty()))
            .unwrap_or(u32::MAX)
    }

    fn bad(&self, message: String) -> WgslError {
        WgslError::Unsupported {
            kernel: self.kernel,
            message,
        }
    }

    /// True if a helper that writes the error buffer is used.
    pub(crate) fn uses_error(&self) -> bool {
        self.all_helpers().iter().any(|h| h.uses_error())
    }

    /// The used helpers with their dependencies, in declaration order.
    pub(crate) fn all_helpers(&self) -> BTreeSet<Helper> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<Helper> = self.helpers.iter().copied().collect();
        while let Some(h) = stack.pop() {
            if out.insert(h) {
                stack.extend(h.deps().iter().copied());
            }
        }
        out
    }

    /// An `i32` expression for a dim: a literal when known, else a params field.
    pub(crate) fn dim(&mut self, d: &Dim) -> Result<String, WgslError> {
        if d.symbols().is_empty() {
            let v = crate::shader::eval_signed(d, &HashMap::new()).map_err(|_| {
                WgslError::TooLarge {
                    what: format!("{}: the size `{d}`", self.kernel),
                }
            })?;
            let v = i32::try_from(v).map_err(|_| WgslError::TooLarge {
                what: format!("{}: the size `{d}`", self.kernel),
            })?;
            return Ok(if v < 0 {
                format!("({v})")
            } else {
                v.to_string()
            });
        }
        let k = match self.params.iter().position(|p| p == d) {
            Some(k) => k,
            None => {
                self.params.push(d.clone());
                self.params.len() - 1
            }
        };
        Ok(format!("params.d{k}"))
    }

    /// An extent clamped at zero (an extent that evaluates to zero or less is an empty loop).
    pub(crate) fn extent(&mut self, d: &Dim) -> Result<String, WgslError> {
        let e = self.dim(d)?;
        Ok(if d.symbols().is_empty() {
            if e.starts_with('(') {
                "0".to_string()
            } else {
                e
            }
        } else {
            format!("max({e}, 0)")
        })
    }

    /// [`Emitter::extent`] as a divisor in decoding arithmetic: a statically empty extent
    /// becomes `1` (no invocation of an empty domain decodes, and naga rejects a literal zero
    /// divisor).
    pub(crate) fn divisor(&mut self, d: &Dim) -> Result<String, WgslError> {
        let e = self.extent(d)?;
        Ok(if e == "0" { "1".to_string() } else { e })
    }

    /// Where a buffer is: its binding, or its position among the arena's buffers.
    fn access(&self, buffer: BufferId) -> Result<Access, WgslError> {
        if let Some(b) = self.bindings.iter().find(|b| b.buffer == buffer) {
            return Ok(Access::Bound(b.binding));
        }
        self.packed
            .iter()
            .position(|p| p.buffer == buffer)
            .map(Access::Packed)
            .ok_or_else(|| self.bad(format!("{buffer} is not bound")))
    }

    /// The number a checked load reports for a buffer: its binding, or
    /// [`PACKED_ERROR_BASE`] plus its position in the arena.
    fn error_code(access: Access) -> u32 {
        match access {
            Access::Bound(slot) => slot,
            Access::Packed(k) => PACKED_ERROR_BASE + u32::try_from(k).unwrap_or(0),
        }
    }

    /// An `i32` WGSL expression for an index expression, with its precedence
    /// (1: additive, 2: multiplicative, 3: atom or call).
    fn index_prec(&mut self, e: &IndexExpr, types: &[DType]) -> Result<(String, u8), WgslError> {
        Ok(match e {
            IndexExpr::Dim(d) => (self.dim(d)?, 3),
            IndexExpr::Var(v) => (format!("i{}", v.0), 3),
            IndexExpr::Red(r) => (format!("r{}", r.0), 3),
            IndexExpr::Value(v) => match types.get(v.index()) {
                Some(DType::I32) => (format!("v{}", v.0), 3),
                Some(DType::U32 | DType::Bool) => (format!("i32(v{})", v.0), 3),
                Some(DType::I64) => {
                    // Saturates into the i32 range: an i64 index that does not fit is out
                    // of bounds of every buffer, and a checked load reports it.
                    self.helpers.insert(Helper::I64);
                    (format!("kiln_i64_index(v{})", v.0), 3)
                }
                other => {
                    return Err(self.bad(format!(
                        "index value {v} has dtype {}",
                        other.map_or("unknown".to_string(), |d| d.to_string())
                    )));
                }
            },
            IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) => {
                let (sa, _) = self.index_prec(a, types)?;
                let (sb, pb) = self.index_prec(b, types)?;
                let sb = if pb <= 1 { format!("({sb})") } else { sb };
                let op = if matches!(e, IndexExpr::Add(..)) {
                    "+"
                } else {
                    "-"
                };
                (format!("{sa} {op} {sb}"), 1)
            }
            IndexExpr::Mul(a, b) => {
                let (sa, pa) = self.index_prec(a, types)?;
                let (sb, pb) = self.index_prec(b, types)?;
                let sa = if pa <= 1 { format!("({sa})") } else { sa };
                let sb = if pb <= 2 { format!("({sb})") } else { sb };
                (format!("{sa} * {sb}"), 2)
            }
            IndexExpr::Div(a, d) | IndexExpr::Mod(a, d)
                if d.as_known().is_some_and(|v| v > i32::MAX as u64) =>
            {
                // An `i32` dividend `a` has `|a| < d`: the floor quotient is 0 or -1 and the
                // remainder `a` or `a + d`, which wraps like every other `i32` index
                // intermediate (exact where it fits, and the index-width check refuses
                // loads and stores where it may not). Threefry's high counter word
                // (`flat / 2^32`) is such a division.
                let (sa, _) = self.index_prec(a, types)?;
                let wrapped = d.as_known().unwrap_or(0) as u32 as i32;
                if matches!(e, IndexExpr::Div(..)) {
                    (format!("select(0i, -1i, {sa} < 0i)"), 3)
                } else {
                    let add = literal(Scalar::I32(wrapped));
                    (format!("select({sa}, ({sa}) + {add}, {sa} < 0i)"), 3)
                }
            }
            IndexExpr::Div(a, d) | IndexExpr::Mod(a, d) => {
                let (sa, _) = self.index_prec(a, types)?;
                let sd = self.dim(d)?;
                self.helpers.insert(Helper::IndexDiv);
                let f = if matches!(e, IndexExpr::Div(..)) {
                    "kiln_floor_div"
                } else {
                    "kiln_floor_mod"
                };
                (format!("{f}({sa}, {sd})"), 3)
            }
        })
    }

    /// An `i32` WGSL expression for an index expression.
    pub(crate) fn index(&mut self, e: &IndexExpr, types: &[DType]) -> Result<String, WgslError> {
        Ok(self.index_prec(e, types)?.0)
    }

    /// Reads element `idx` of a buffer as a value of `dtype`.
    fn read(&mut self, access: Access, idx: &str, dtype: DType) -> String {
        match access {
            Access::Bound(slot) => {
                if dtype == DType::Bool {
                    format!("(buf{slot}[{idx}] != 0u)")
                } else {
                    format!("buf{slot}[{idx}]")
                }
            }
            Access::Packed(k) => {
                let word = format!("kiln_arena[params.a{k} + {idx}]");
                match dtype {
                    DType::Bool => format!("({word} != 0u)"),
                    DType::U32 => word,
                    DType::F32 | DType::I32 => format!("bitcast<{}>({word})", value_type(dtype)),
                    DType::I64 | DType::F64 => {
                        self.arena_i64 = true;
                        format!("kiln_arena_load_i64(params.a{k} + 2i * ({idx}))")
                    }
                }
            }
        }
    }

    /// Emits the values of `body` selected by `which`, in order, as WGSL statements; a
    /// `reduce` node reads the WGSL expression `reduced[k]` (its accumulator).
    pub(crate) fn values(
        &mut self,
        body: &Body,
        types: &[DType],
        which: &dyn Fn(usize) -> bool,
        reduced: &HashMap<usize, String>,
        indent: &str,
        out: &mut String,
    ) -> Result<(), WgslError> {
        for (k, e) in body.values.iter().enumerate() {
            if which(k) {
                self.value(k, e, types, reduced, indent, out)?;
            }
        }
        Ok(())
    }

    fn value(
        &mut self,
        k: usize,
        e: &Expr,
        types: &[DType],
        reduced: &HashMap<usize, String>,
        indent: &str,
        out: &mut String,
    ) -> Result<(), WgslError> {
        let dtype = types
            .get(k)
            .copied()
            .ok_or_else(|| self.bad(format!("v{k} has no dtype")))?;
        let ty = value_type(dtype);
        let v = |x: &ValueId| format!("v{}", x.0);
        let tv = |x: &ValueId| types.get(x.index()).copied().unwrap_or(DType::F32);
        let rhs = match e {
            Expr::Const(s) => literal(*s),
            Expr::Index { dtype, index } => {
                let ix = self.index(index, types)?;
                match dtype {
                    DType::I32 => ix,
                    DType::F32 => format!("f32({ix})"),
                    DType::U32 => format!("bitcast<u32>({ix})"),
                    DType::Bool => format!("({ix}) != 0"),
                    DType::I64 => {
                        self.helpers.insert(Helper::I64);
                        format!("kiln_i64_from_i32({ix})")
                    }
                    DType::F64 => {
                        return Err(self.bad(format!("v{k} has dtype {dtype}")));
                    }
                }
            }
            Expr::Load(l) => {
                let slot = self.access(l.buffer)?;
                let ix = self.index(&l.index, types)?;
                match &l.mode {
                    LoadMode::Plain => self.read(slot, &ix, dtype),
                    LoadMode::Checked => {
                        let size = self
                            .program
                            .buffer(l.buffer)
                            .map(|b| b.size.clone())
                            .ok_or_else(|| self.bad(format!("{} is undeclared", l.buffer)))?;
                        let n = self.dim(&size)?;
                        self.helpers.insert(Helper::Check);
                        let code = Self::error_code(slot);
                        self.read(slot, &format!("kiln_check({ix}, {n}, {code}u)"), dtype)
                    }
                    LoadMode::Masked { guards, fill } => {
                        self.helpers.insert(Helper::In);
                        let mut conds = Vec::new();
                        for g in guards {
                            let lo = self.index(&g.lo, types)?;
                            let x = self.index(&g.expr, types)?;
                            let hi = self.index(&g.hi, types)?;
                            conds.push(format!("kiln_in({lo}, {x}, {hi})"));
                        }
                        let _ = writeln!(out, "{indent}var v{k}: {ty} = {};", literal(*fill));
                        let cond = if conds.is_empty() {
                            "true".to_string()
                        } else {
                            conds.join(" && ")
                        };
                        let _ = writeln!(out, "{indent}if ({cond}) {{");
                        let read = self.read(slot, &ix, dtype);
                        let _ = writeln!(out, "{indent}    v{k} = {read};");
                        let _ = writeln!(out, "{indent}}}");
                        return Ok(());
                    }
                }
            }
            Expr::Unary(op, a) => self.unary(*op, &v(a), tv(a))?,
            Expr::Binary(op, a, b) => self.binary(*op, &v(a), &v(b), tv(a))?,
            Expr::Select(c, a, b) => format!("select({}, {}, {})", v(b), v(a), v(c)),
            Expr::Cast(to, a) => self.cast(&v(a), tv(a), *to)?,
            Expr::Reduce { .. } => reduced
                .get(&k)
                .cloned()
                .ok_or_else(|| self.bad(format!("v{k}: reduction outside a reduction kernel")))?,
            Expr::Acc => "acc".to_string(),
        };
        let _ = writeln!(out, "{indent}let v{k}: {ty} = {rhs};");
        Ok(())
    }

    fn unary(&mut self, op: UnaryOp, a: &str, dtype: DType) -> Result<String, WgslError> {
        let mut helper = |h: Helper, name: &str| {
            self.helpers.insert(h);
            format!("{name}({a})")
        };
        let s = match (dtype, op) {
            (DType::I64, UnaryOp::Neg) => helper(Helper::I64, "kiln_i64_neg"),
            (DType::I64, UnaryOp::Abs) => helper(Helper::I64, "kiln_i64_abs"),
            (DType::I64, UnaryOp::Sign) => helper(Helper::I64, "kiln_i64_sign"),
            (DType::I64, UnaryOp::Not) => format!("~{a}"),
            (DType::F32, UnaryOp::Neg) | (DType::I32, UnaryOp::Neg) => format!("-{a}"),
            (DType::U32, UnaryOp::Neg) => format!("0u - {a}"),
            (DType::F32 | DType::I32, UnaryOp::Abs) => format!("abs({a})"),
            (DType::U32, UnaryOp::Abs) => a.to_string(),
            (DType::F32, UnaryOp::Exp) => format!("exp({a})"),
            (DType::F32, UnaryOp::Log) => format!("log({a})"),
            (DType::F32, UnaryOp::Sqrt) => format!("sqrt({a})"),
            (DType::F32, UnaryOp::Rsqrt) => format!("1.0f / sqrt({a})"),
            (DType::F32, UnaryOp::Recip) => format!("1.0f / {a}"),
            (DType::F32, UnaryOp::Sin) => format!("sin({a})"),
            (DType::F32, UnaryOp::Cos) => format!("cos({a})"),
            (DType::F32, UnaryOp::Tanh) => helper(Helper::Tanh, "kiln_tanh"),
            (DType::F32, UnaryOp::Atan) => {
                let nan = helper(Helper::IsNan, "kiln_isnan");
                format!("select(atan({a}), {a}, {nan})")
            }
            (DType::F32, UnaryOp::Asin) => {
                let nan = helper(Helper::IsNan, "kiln_isnan");
                let none = literal(Scalar::F32(f32::NAN));
                // `asin` itself is far too loose on some drivers (2e-4 on lavapipe).
                let r = format!("atan({a} / sqrt((1.0f - {a}) * (1.0f + {a})))");
                format!("select({r}, {none}, {nan} || abs({a}) > 1.0f)")
            }
            (DType::F32, UnaryOp::Sigmoid) => helper(Helper::Sigmoid, "kiln_sigmoid"),
            (DType::F32, UnaryOp::Erf) => helper(Helper::Erf, "kiln_erf"),
            (DType::F32, UnaryOp::Floor) => format!("floor({a})"),
            (DType::F32, UnaryOp::Ceil) => format!("ceil({a})"),
            (DType::F32, UnaryOp::Round) => format!("round({a})"),
            (DType::F32, UnaryOp::Sign) => helper(Helper::SignF32, "kiln_sign_f32"),
            (DType::F32, UnaryOp::IsNan) => helper(Helper::IsNan, "kiln_isnan"),
            (DType::I32, UnaryOp::Sign) => {
                format!("select(select(0i, -1i, {a} < 0i), 1i, {a} > 0i)")
            }
            (DType::U32, UnaryOp::Sign) => format!("u32({a} != 0u)"),
            (DType::I32 | DType::U32, UnaryOp::Not) => format!("~{a}"),
            (DType::Bool, UnaryOp::Not) => format!("!{a}"),
            _ => return Err(self.bad(format!("{} is not defined for {dtype}", op.name()))),
        };
        Ok(s)
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        a: &str,
        b: &str,
        dtype: DType,
    ) -> Result<String, WgslError> {
        use BinaryOp as B;
        let mut helper = |h: Helper, name: &str| {
            self.helpers.insert(h);
            format!("{name}({a}, {b})")
        };
        let infix = |o: &str| format!("{a} {o} {b}");
        if dtype == DType::I64 {
            return self.binary_i64(op, a, b);
        }
        let s = match (dtype, op) {
            (DType::F32 | DType::I32 | DType::U32, B::Add) => infix("+"),
            (DType::F32 | DType::I32 | DType::U32, B::Sub) => infix("-"),
            (DType::F32 | DType::I32 | DType::U32, B::Mul) => infix("*"),
            (DType::F32, B::Div) => infix("/"),
            (DType::F32, B::Rem) => helper(Helper::FRem, "kiln_frem"),
            (DType::F32, B::Pow) => helper(Helper::Pow, "kiln_pow"),
            (DType::F32, B::Max) => helper(Helper::FMaxMin, "kiln_fmax"),
            (DType::F32, B::Min) => helper(Helper::FMaxMin, "kiln_fmin"),
            (DType::I32, B::Div) => helper(Helper::IntDiv, "kiln_div_i32"),
            (DType::I32, B::Rem) => helper(Helper::IntDiv, "kiln_rem_i32"),
            (DType::U32, B::Div) => helper(Helper::IntDiv, "kiln_div_u32"),
            (DType::U32, B::Rem) => helper(Helper::IntDiv, "kiln_rem_u32"),
            (DType::I32 | DType::U32, B::Max) => format!("max({a}, {b})"),
            (DType::I32 | DType::U32, B::Min) => format!("min({a}, {b})"),
            (DType::I32 | DType::U32 | DType::Bool, B::And) => infix("&"),
            (DType::I32 | DType::U32 | DType::Bool, B::Or) => infix("|"),
            (DType::I32 | DType::U32, B::Xor) => infix("^"),
            (DType::Bool, B::Xor) => infix("!="),
            (DType::F32, B::Ne) => format!("!({a} == {b})"),
            (DType::F32 | DType::I32 | DType::U32 | DType::Bool, B::Eq) => infix("=="),
            (DType::I32 | DType::U32 | DType::Bool, B::Ne) => infix("!="),
            (DType::F32 | DType::I32 | DType::U32, B::Lt) => infix("<"),
            (DType::F32 | DType::I32 | DType::U32, B::Le) => infix("<="),
            (DType::F32 | DType::I32 | DType::U32, B::Gt) => infix(">"),
            (DType::F32 | DType::I32 | DType::U32, B::Ge) => infix(">="),
            _ => return Err(self.bad(format!("{} is not defined for {dtype}", op.name()))),
        };
        Ok(s)
    }

    /// A binary op on two-word `i64` values (bitwise ops and equality work per word).
    fn binary_i64(&mut self, op: BinaryOp, a: &str, b: &str) -> Result<String, WgslError> {
        use BinaryOp as B;
        let (helper, call) = match op {
            B::And => return Ok(format!("{a} & {b}")),
            B::Or => return Ok(format!("{a} | {b}")),
            B::Xor => return Ok(format!("{a} ^ {b}")),
            B::Eq => return Ok(format!("all({a} == {b})")),
            B::Ne => return Ok(format!("any({a} != {b})")),
            B::Add => (Helper::I64, format!("kiln_i64_add({a}, {b})")),
            B::Sub => (Helper::I64, format!("kiln_i64_sub({a}, {b})")),
            B::Mul => (Helper::I64Mul, format!("kiln_i64_mul({a}, {b})")),
            B::Div => (Helper::I64Div, format!("kiln_div_i64({a}, {b})")),
            B::Rem => (Helper::I64Div, format!("kiln_rem_i64({a}, {b})")),
            B::Max => (Helper::I64, format!("kiln_i64_max({a}, {b})")),
            B::Min => (Helper::I64, format!("kiln_i64_min({a}, {b})")),
            B::Lt => (Helper::I64, format!("kiln_i64_lt({a}, {b})")),
            B::Gt => (Helper::I64, format!("kiln_i64_lt({b}, {a})")),
            B::Le => (Helper::I64, format!("!kiln_i64_lt({b}, {a})")),
            B::Ge => (Helper::I64, format!("!kiln_i64_lt({a}, {b})")),
            B::Pow => return Err(self.bad(format!("{} is not defined for i64", op.name()))),
        };
        self.helpers.insert(helper);
        Ok(call)
    }

    fn cast(&mut self, a: &str, from: DType, to: DType) -> Result<String, WgslError> {
        let s = match (from, to) {
            (x, y) if x == y => a.to_string(),
            (DType::I64, DType::I32) => format!("bitcast<i32>({a}.x)"),
            (DType::I64, DType::U32) => format!("{a}.x"),
            (DType::I64, DType::Bool) => format!("({a}.x | {a}.y) != 0u"),
            (DType::I64, DType::F32) => {
                self.helpers.insert(Helper::I64ToF32);
                format!("kiln_i64_to_f32({a})")
            }
            (DType::I32, DType::I64) => {
                self.helpers.insert(Helper::I64);
                format!("kiln_i64_from_i32({a})")
            }
            (DType::U32, DType::I64) => format!("vec2<u32>({a}, 0u)"),
            (DType::Bool, DType::I64) => format!("vec2<u32>(select(0u, 1u, {a}), 0u)"),
            (DType::F32, DType::I64) => {
                self.helpers.insert(Helper::F32ToI64);
                format!("kiln_f32_to_i64({a})")
            }
            (DType::F32, DType::I32) => {
                self.helpers.insert(Helper::FloatBits);
                format!("bitcast<i32>(kiln_float_bits({a}))")
            }
            (DType::F32, DType::U32) => {
                self.helpers.insert(Helper::FloatBits);
                format!("kiln_float_bits({a})")
            }
            (DType::F32, DType::Bool) => format!("!({a} == 0.0f)"),
            (DType::I32 | DType::U32, DType::F32) => format!("f32({a})"),
            (DType::I32, DType::U32) => format!("bitcast<u32>({a})"),
            (DType::U32, DType::I32) => format!("bitcast<i32>({a})"),
            (DType::I32, DType::Bool) => format!("{a} != 0i"),
            (DType::U32, DType::Bool) => format!("{a} != 0u"),
            (DType::Bool, DType::F32) => format!("select(0.0f, 1.0f, {a})"),
            (DType::Bool, DType::I32) => format!("select(0i, 1i, {a})"),
            (DType::Bool, DType::U32) => format!("select(0u, 1u, {a})"),
            _ => return Err(self.bad(format!("cast from {from} to {to}"))),
        };
        Ok(s)
    }

    /// Emits the stores of `body`.
    pub(crate) fn stores(
        &mut self,
        body: &Body,
        types: &[DType],
        indent: &str,
        out: &mut String,
    ) -> Result<(), WgslError> {
        for s in &body.stores {
            let access = self.access(s.buffer)?;
            let ix = self.index(&s.index, types)?;
            let dtype = types.get(s.value.index()).copied().unwrap_or(DType::F32);
            let v = format!("v{}", s.value.0);
            match access {
                Access::Bound(slot) => {
                    let value = if dtype == DType::Bool {
                        format!("select(0u, 1u, {v})")
                    } else {
                        v
                    };
                    let _ = writeln!(out, "{indent}buf{slot}[{ix}] = {value};");
                }
                Access::Packed(k) => {
                    let word = format!("params.a{k} + {ix}");
                    let _ = match dtype {
                        DType::Bool => {
                            writeln!(out, "{indent}kiln_arena[{word}] = select(0u, 1u, {v});")
                        }
                        DType::U32 => writeln!(out, "{indent}kiln_arena[{word}] = {v};"),
                        DType::F32 | DType::I32 => {
                            writeln!(out, "{indent}kiln_arena[{word}] = bitcast<u32>({v});")
                        }
                        DType::I64 | DType::F64 => {
                            self.arena_i64 = true;
                            writeln!(
                                out,
                                "{indent}kiln_arena_store_i64(params.a{k} + 2i * ({ix}), {v});"
                            )
                        }
                    };
                }
            }
        }
        Ok(())
    }

    /// Module-scope declarations: params struct and uniform, storage buffers, the error
    /// buffer and helper functions (call after the body has been emitted).
    pub(crate) fn declarations(&self) -> String {
        let mut out = String::new();
        out.push_str("struct Params {\n    kernel: u32,\n");
        for (k, d) in self.params.iter().enumerate() {
            let _ = writeln!(out, "    d{k}: i32, // {d}");
        }
        for (k, p) in self.packed.iter().enumerate() {
            let _ = writeln!(
                out,
                "    a{k}: i32, // word offset of {} in the arena",
                p.dtype
            );
        }
        out.push_str("}\n\n@group(0) @binding(0) var<uniform> params: Params;\n");
        for b in &self.bindings {
            let access = if b.writable { "read_write" } else { "read" };
            let _ = writeln!(
                out,
                "@group(0) @binding({}) var<storage, {access}> buf{}: array<{}>;",
                b.binding,
                b.binding,
                storage_type(b.dtype)
            );
        }
        if let Some(a) = self.arena_binding() {
            let _ = writeln!(
                out,
                "@group(0) @binding({a}) var<storage, read_write> kiln_arena: array<u32>;"
            );
        }
        if self.uses_error() {
            let _ = writeln!(
                out,
                "@group(0) @binding({}) var<storage, read_write> kiln_error: array<atomic<u32>, {}>;",
                self.error_binding(),
                crate::shader::ERROR_WORDS
            );
        }
        for h in self.all_helpers() {
            out.push('\n');
            out.push_str(h.source());
        }
        if self.arena_i64 {
            out.push_str(ARENA_I64);
        }
        out
    }
}
