//! Golden references computed by PyTorch/NumPy (`fixtures/golden`, written by
//! `fixtures/gen/gen_golden.py`): loading the manifest and its `.npy` files, comparing arrays
//! under a documented tolerance, and running an op case through `kiln::eval` or any other
//! evaluator in one call ([`helper_test_op`]).
//!
//! # Tolerance
//!
//! References are computed in float64 from the exact inputs and rounded once to the output
//! dtype. An element passes when
//!
//! ```text
//! |got - want| <= rtol * |want| + atol_ratio * max|want|
//! ```
//!
//! where `max|want|` is the largest finite magnitude in the whole expected array, with
//! `rtol = 1e-5, atol_ratio = 1e-6` for `f32` ([`Tol::F32`]) and `rtol = 1e-10,
//! atol_ratio = 1e-12` for `f64` ([`Tol::F64`]). A NaN must meet a NaN, an infinity the
//! same infinity. Integer and bool arrays must be exactly equal. Dtypes and shapes must
//! always match exactly. A case may carry its own `tol` in the manifest.

use kiln::ir::WindowOp;
use kiln::{Array, ConvOpts, DType, Graph, Operand, Tensor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `fixtures/golden` directory of the workspace.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
        .join("golden")
}

/// Per-element tolerance of a floating-point comparison (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tol {
    /// Relative part: a multiple of `|want|`.
    pub rtol: f64,
    /// Absolute part, as a multiple of the largest finite `|want|` in the array.
    pub atol_ratio: f64,
}

impl Tol {
    /// The default for `f32`: `1e-5 * |want| + 1e-6 * max|want|`.
    pub const F32: Tol = Tol {
        rtol: 1e-5,
        atol_ratio: 1e-6,
    };
    /// The default for `f64`: `1e-10 * |want| + 1e-12 * max|want|`.
    pub const F64: Tol = Tol {
        rtol: 1e-10,
        atol_ratio: 1e-12,
    };

    /// The default tolerance of a float dtype; `None` (exact) for integers and bool.
    pub fn for_dtype(dtype: DType) -> Option<Tol> {
        match dtype {
            DType::F32 => Some(Tol::F32),
            DType::F64 => Some(Tol::F64),
            DType::I32 | DType::I64 | DType::U32 | DType::Bool => None,
        }
    }
}

/// Why two arrays differ.
#[derive(Clone, Debug, PartialEq)]
pub enum Mismatch {
    /// The dtypes differ.
    DType {
        /// Produced dtype.
        got: DType,
        /// Expected dtype.
        want: DType,
    },
    /// The shapes differ.
    Shape {
        /// Produced shape.
        got: Vec<usize>,
        /// Expected shape.
        want: Vec<usize>,
    },
    /// Some elements are out of tolerance; the worst one is reported.
    Values {
        /// Index of the worst element.
        index: Vec<usize>,
        /// Its produced value.
        got: f64,
        /// Its expected value.
        want: f64,
        /// `|got - want|`.
        diff: f64,
        /// The tolerance at that element (0 for exact comparisons).
        allowed: f64,
        /// Elements out of tolerance.
        bad: usize,
        /// Elements compared.
        total: usize,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::DType { got, want } => write!(f, "dtype {got}, expected {want}"),
            Mismatch::Shape { got, want } => write!(f, "shape {got:?}, expected {want:?}"),
            Mismatch::Values {
                index,
                got,
                want,
                diff,
                allowed,
                bad,
                total,
            } => write!(
                f,
                "{bad} of {total} elements out of tolerance; worst at {index:?}: got {}, want {} \
                 (|diff| {diff:.3e}, allowed {allowed:.3e})",
                num(*got),
                num(*want)
            ),
        }
    }
}

/// Integral values print as integers, others with nine significant digits.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.8e}")
    }
}

/// Multi-index of flat position `flat` in a row-major `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// Compares `got` with `want` (see the module docs). `tol` overrides the dtype's default
/// for float arrays; it is ignored for integers and bools, which must match exactly.
pub fn compare(got: &Array, want: &Array, tol: Option<Tol>) -> Result<(), Mismatch> {
    if got.dtype() != want.dtype() {
        return Err(Mismatch::DType {
            got: got.dtype(),
            want: want.dtype(),
        });
    }
    if got.shape() != want.shape() {
        return Err(Mismatch::Shape {
            got: got.shape().to_vec(),
            want: want.shape().to_vec(),
        });
    }
    let float_tol = Tol::for_dtype(want.dtype()).map(|t| tol.unwrap_or(t));
    let (g, w) = match float_tol {
        Some(_) => (got.to_f64_vec(), want.to_f64_vec()),
        None => {
            let (g, w) = (got.to_i64_vec(), want.to_i64_vec());
            let mut worst: Option<(usize, u64)> = None;
            let mut bad = 0;
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                if a != b {
                    bad += 1;
                    let d = a.abs_diff(*b);
                    if worst.is_none_or(|(_, wd)| d > wd) {
                        worst = Some((i, d));
                    }
                }
            }
            return match worst {
                None => Ok(()),
                Some((i, d)) => Err(Mismatch::Values {
                    index: unravel(i, want.shape()),
                    got: g[i] as f64,
                    want: w[i] as f64,
                    diff: d as f64,
                    allowed: 0.0,
                    bad,
                    total: w.len(),
                }),
            };
        }
    };
    let tol = float_tol.unwrap_or(Tol::F32);
    let max_abs = w
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = tol.atol_ratio * max_abs;
    let mut worst: Option<(usize, f64, f64, f64)> = None;
    let mut bad = 0;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let (diff, allowed, ok) = if b.is_nan() || a.is_nan() {
            (f64::INFINITY, 0.0, a.is_nan() && b.is_nan())
        } else if b.is_infinite() || a.is_infinite() {
            (if a == b { 0.0 } else { f64::INFINITY }, 0.0, a == b)
        } else {
            let d = (a - b).abs();
            let allowed = tol.rtol * b.abs() + floor;
            (d, allowed, d <= allowed)
        };
        if !ok {
            bad += 1;
            let score = if allowed > 0.0 {
                diff / allowed
            } else {
                f64::INFINITY
            };
            if worst.is_none_or(|(_, s, _, _)| score > s) {
                worst = Some((i, score, diff, allowed));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, _, diff, allowed)) => Err(Mismatch::Values {
            index: unravel(i, want.shape()),
            got: g[i],
            want: w[i],
            diff,
            allowed,
            bad,
            total: w.len(),
        }),
    }
}

/// Panics with the worst element if `got` is not close to `want` (see [`compare`]).
#[track_caller]
pub fn assert_close(what: &str, got: &Array, want: &Array) {
    if let Err(m) = compare(got, want, None) {
        panic!("{what}: {m}");
    }
}

/// A tensor file named by the manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// Path relative to [`golden_dir`].
    pub file: String,
    /// Its dtype.
    pub dtype: DType,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl TensorRef {
    /// Reads the file and checks its dtype and shape against the manifest.
    pub fn load(&self) -> Result<Array, String> {
        let a = kiln::npy::read(golden_dir().join(&self.file)).map_err(|e| e.to_string())?;
        if a.dtype() != self.dtype || a.shape() != self.shape.as_slice() {
            return Err(format!(
                "{}: file holds {}{:?}, the manifest says {}{:?}",
                self.file,
                a.dtype(),
                a.shape(),
                self.dtype,
                self.shape
            ));
        }
        Ok(a)
    }
}

/// One op case of the manifest (without its data).
#[derive(Clone, Debug, PartialEq)]
pub struct CaseSpec {
    /// Unique case name, such as `softmax_last_3x783`.
    pub name: String,
    /// Builder op name (`add`, `conv2d`, `chain`, ...).
    pub op: String,
    /// Op attributes (a JSON object).
    pub attrs: Value,
    /// Input tensors, fed as `in0`, `in1`, ...
    pub inputs: Vec<TensorRef>,
    /// Expected outputs.
    pub outputs: Vec<TensorRef>,
    /// Per-case tolerance override.
    pub tol: Option<Tol>,
    /// What the case checks, when it is not obvious from the name.
    pub note: Option<String>,
}

/// A case with its data loaded.
#[derive(Clone, Debug)]
pub struct Case {
    /// The manifest entry.
    pub spec: CaseSpec,
    /// Input arrays.
    pub inputs: Vec<Array>,
    /// Expected output arrays.
    pub outputs: Vec<Array>,
}

/// The parsed `manifest.json`.
#[derive(Debug)]
pub struct Manifest {
    /// Every op case, in file order.
    pub cases: Vec<CaseSpec>,
    /// The whole document (models, autodiff references, tolerance notes).
    pub json: Value,
}

fn tensor_ref(v: &Value) -> Result<TensorRef, String> {
    let file = v
        .get("file")
        .and_then(Value::as_str)
        .ok_or("tensor entry without `file`")?;
    let dtype = v
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{file}: no dtype"))?
        .parse::<DType>()
        .map_err(|e| format!("{file}: {e}"))?;
    let shape = v
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{file}: no shape"))?
        .iter()
        .map(|d| {
            d.as_u64()
                .map(|d| d as usize)
                .ok_or_else(|| format!("{file}: bad shape"))
        })
        .collect::<Result<_, _>>()?;
    Ok(TensorRef {
        file: file.to_string(),
        dtype,
        shape,
    })
}

fn tensor_refs(v: Option<&Value>) -> Result<Vec<TensorRef>, String> {
    v.and_then(Value::as_array)
        .ok_or("missing tensor list")?
        .iter()
        .map(tensor_ref)
        .collect()
}

fn parse_case(v: &Value) -> Result<CaseSpec, String> {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or("case without a name")?
        .to_string();
    let ctx = |e: String| format!("case {name}: {e}");
    let op = v
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| ctx("no op".into()))?
        .to_string();
    let tol = match v.get("tol") {
        None => None,
        Some(t) => Some(Tol {
            rtol: t
                .get("rtol")
                .and_then(Value::as_f64)
                .ok_or_else(|| ctx("bad tol".into()))?,
            atol_ratio: t
                .get("atol_ratio")
                .and_then(Value::as_f64)
                .ok_or_else(|| ctx("bad tol".into()))?,
        }),
    };
    Ok(CaseSpec {
        attrs: v
            .get("attrs")
            .cloned()
            .unwrap_or(Value::Object(Default::default())),
        inputs: tensor_refs(v.get("inputs")).map_err(ctx)?,
        outputs: tensor_refs(v.get("outputs")).map_err(ctx)?,
        note: v.get("note").and_then(Value::as_str).map(str::to_string),
        tol,
        op,
        name,
    })
}

fn load_manifest() -> Result<Manifest, String> {
    let path = golden_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let cases = json
        .get("cases")
        .and_then(Value::as_array)
        .ok_or("manifest has no `cases`")?
        .iter()
        .map(parse_case)
        .collect::<Result<_, _>>()?;
    Ok(Manifest { cases, json })
}

/// The manifest, parsed once per test binary.
pub fn manifest() -> Result<&'static Manifest, String> {
    static M: OnceLock<Result<Manifest, String>> = OnceLock::new();
    M.get_or_init(load_manifest).as_ref().map_err(Clone::clone)
}

/// Loads the data of a case.
pub fn load(spec: &CaseSpec) -> Result<Case, String> {
    let read = |v: &[TensorRef]| v.iter().map(TensorRef::load).collect::<Result<Vec<_>, _>>();
    Ok(Case {
        inputs: read(&spec.inputs)?,
        outputs: read(&spec.outputs)?,
        spec: spec.clone(),
    })
}

/// Finds and loads the case called `name`.
pub fn load_case(name: &str) -> Result<Case, String> {
    let m = manifest()?;
    let spec = m
        .cases
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("no golden case `{name}`"))?;
    load(spec)
}

/// The tensor entry at `path` in the manifest (e.g. `["autodiff", "mlp", "hessian_f_x"]`),
/// read from disk.
pub fn tensor_at(path: &[&str]) -> Result<Array, String> {
    let mut v = &manifest()?.json;
    for p in path {
        v = v
            .get(p)
            .ok_or_else(|| format!("manifest has no entry {path:?}"))?;
    }
    tensor_ref(v)?.load()
}

// ------------------------------------------------------------------------------------------
// Building a case's graph
// ------------------------------------------------------------------------------------------

fn attr<'a>(a: &'a Value, key: &str) -> Result<&'a Value, String> {
    a.get(key)
        .ok_or_else(|| format!("attribute `{key}` missing"))
}
fn int(a: &Value, key: &str) -> Result<i64, String> {
    attr(a, key)?
        .as_i64()
        .ok_or_else(|| format!("attribute `{key}` is not an integer"))
}
fn uint(a: &Value, key: &str) -> Result<u64, String> {
    attr(a, key)?
        .as_u64()
        .ok_or_else(|| format!("attribute `{key}` is not a non-negative integer"))
}
fn float(a: &Value, key: &str) -> Result<f64, String> {
    attr(a, key)?
        .as_f64()
        .ok_or_else(|| format!("attribute `{key}` is not a number"))
}
fn boolean(a: &Value, key: &str) -> Result<bool, String> {
    attr(a, key)?
        .as_bool()
        .ok_or_else(|| format!("attribute `{key}` is not a bool"))
}
fn ints(a: &Value, key: &str) -> Result<Vec<i64>, String> {
    let arr = attr(a, key)?
        .as_array()
        .ok_or_else(|| format!("attribute `{key}` is not a list"))?;
    arr.iter()
        .map(|v| {
            v.as_i64()
                .ok_or_else(|| format!("attribute `{key}` holds a non-integer"))
        })
        .collect()
}
fn uints(a: &Value, key: &str) -> Result<Vec<u64>, String> {
    let arr = attr(a, key)?
        .as_array()
        .ok_or_else(|| format!("attribute `{key}` is not a list"))?;
    arr.iter()
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| format!("attribute `{key}` holds a negative or non-integer"))
        })
        .collect()
}
fn pair2(a: &Value, key: &str) -> Result<[u64; 2], String> {
    let v = uints(a, key)?;
    <[u64; 2]>::try_from(v).map_err(|_| format!("attribute `{key}` must have two entries"))
}
fn pairs(a: &Value, key: &str) -> Result<Vec<(u64, u64)>, String> {
    let arr = attr(a, key)?
        .as_array()
        .ok_or_else(|| format!("attribute `{key}` is not a list"))?;
    arr.iter()
        .map(|p| {
            match p.as_array().map(|p| {
                (
                    p.first().and_then(Value::as_u64),
                    p.get(1).and_then(Value::as_u64),
                )
            }) {
                Some((Some(lo), Some(hi))) => Ok((lo, hi)),
                _ => Err(format!(
                    "attribute `{key}` must be a list of [before, after] pairs"
                )),
            }
        })
        .collect()
}
fn dtype(a: &Value, key: &str) -> Result<DType, String> {
    attr(a, key)?
        .as_str()
        .ok_or_else(|| format!("attribute `{key}` is not a string"))?
        .parse::<DType>()
        .map_err(|e| e.to_string())
}
fn input(ins: &[Tensor], k: usize) -> Result<&Tensor, String> {
    ins.get(k).ok_or_else(|| format!("operand {k} missing"))
}

/// Every op name [`apply`] understands (the builder methods the fixtures cover).
pub const OPS: &[&str] = &[
    "neg",
    "abs",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "recip",
    "sin",
    "cos",
    "tanh",
    "atan",
    "asin",
    "sigmoid",
    "erf",
    "floor",
    "ceil",
    "round",
    "sign",
    "logical_not",
    "is_nan",
    "add",
    "sub",
    "mul",
    "div",
    "rem",
    "pow",
    "maximum",
    "minimum",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "logical_and",
    "logical_or",
    "logical_xor",
    "where",
    "cast",
    "sum",
    "max",
    "min",
    "prod",
    "argmax",
    "argmin",
    "reshape",
    "permute",
    "expand",
    "slice",
    "pad",
    "cat",
    "flip",
    "gather",
    "scatter_add",
    "matmul",
    "conv2d",
    "window",
    "max_pool2d",
    "avg_pool2d",
    "relu",
    "leaky_relu",
    "gelu",
    "gelu_tanh",
    "silu",
    "softplus",
    "square",
    "softmax",
    "log_softmax",
    "logsumexp",
    "mean",
    "mean_all",
    "sum_all",
    "var",
    "layer_norm",
    "linear",
    "flatten",
    "squeeze",
    "unsqueeze",
    "transpose",
    "t",
    "one_hot",
    "index_select",
    "clamp",
    "lstm_cell",
    "chain",
];

/// Applies builder op `op` with attributes `attrs` to `ins` (see `gen_golden.py` for the
/// attribute schema); returns the op's outputs.
pub fn apply(op: &str, attrs: &Value, ins: &[Tensor]) -> Result<Vec<Tensor>, String> {
    let x = input(ins, 0)?;
    let rhs = || -> Result<Operand, String> {
        match attrs.get("scalar") {
            Some(v) => Ok(Operand::Scalar(
                v.as_f64().ok_or("attribute `scalar` is not a number")?,
            )),
            None => Ok(Operand::from(input(ins, 1)?)),
        }
    };
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        "neg" => one(x.neg()),
        "abs" => one(x.abs()),
        "exp" => one(x.exp()),
        "log" => one(x.log()),
        "sqrt" => one(x.sqrt()),
        "rsqrt" => one(x.rsqrt()),
        "recip" => one(x.recip()),
        "sin" => one(x.sin()),
        "cos" => one(x.cos()),
        "tanh" => one(x.tanh()),
        "atan" => one(x.atan()),
        "asin" => one(x.asin()),
        "sigmoid" => one(x.sigmoid()),
        "erf" => one(x.erf()),
        "floor" => one(x.floor()),
        "ceil" => one(x.ceil()),
        "round" => one(x.round()),
        "sign" => one(x.sign()),
        "logical_not" => one(x.logical_not()),
        "is_nan" => one(x.is_nan()),
        "add" => one(x.add(rhs()?)),
        "sub" => one(x.sub(rhs()?)),
        "mul" => one(x.mul(rhs()?)),
        "div" => one(x.div(rhs()?)),
        "rem" => one(x.rem(rhs()?)),
        "pow" => one(x.pow(rhs()?)),
        "maximum" => one(x.maximum(rhs()?)),
        "minimum" => one(x.minimum(rhs()?)),
        "eq" => one(x.eq(rhs()?)),
        "ne" => one(x.ne(rhs()?)),
        "lt" => one(x.lt(rhs()?)),
        "le" => one(x.le(rhs()?)),
        "gt" => one(x.gt(rhs()?)),
        "ge" => one(x.ge(rhs()?)),
        "logical_and" => one(x.logical_and(rhs()?)),
        "logical_or" => one(x.logical_or(rhs()?)),
        "logical_xor" => one(x.logical_xor(rhs()?)),
        "where" => {
            let a = input(ins, 1)?;
            match attrs.get("b_scalar") {
                Some(_) => one(x.where_(a, float(attrs, "b_scalar")?)),
                None => one(x.where_(a, input(ins, 2)?)),
            }
        }
        "cast" => one(x.cast(dtype(attrs, "dtype")?)),
        "sum" => one(x.sum(ints(attrs, "axes")?, boolean(attrs, "keepdim")?)),
        "max" => one(x.max(ints(attrs, "axes")?, boolean(attrs, "keepdim")?)),
        "min" => one(x.min(ints(attrs, "axes")?, boolean(attrs, "keepdim")?)),
        "prod" => one(x.prod(ints(attrs, "axes")?, boolean(attrs, "keepdim")?)),
        "argmax" => one(x.argmax(int(attrs, "axis")?, boolean(attrs, "keepdim")?)),
        "argmin" => one(x.argmin(int(attrs, "axis")?, boolean(attrs, "keepdim")?)),
        "reshape" => one(x.reshape(uints(attrs, "shape")?)),
        "permute" => one(x.permute(ints(attrs, "perm")?)),
        "expand" => one(x.expand(uints(attrs, "shape")?)),
        "slice" => one(x.slice(
            int(attrs, "axis")?,
            int(attrs, "start")?,
            int(attrs, "stop")?,
            uint(attrs, "step")?,
        )),
        "pad" => one(x.pad(&pairs(attrs, "pads")?, float(attrs, "value")?)),
        "cat" => {
            let refs: Vec<&Tensor> = ins.iter().collect();
            one(Tensor::cat(&refs, int(attrs, "axis")?))
        }
        "flip" => one(x.flip(ints(attrs, "axes")?)),
        "gather" => one(x.gather(int(attrs, "axis")?, input(ins, 1)?)),
        "scatter_add" => one(x.scatter_add(int(attrs, "axis")?, input(ins, 1)?, input(ins, 2)?)),
        "matmul" => one(x.matmul(input(ins, 1)?)),
        "conv2d" => {
            let opts = ConvOpts {
                stride: pair2(attrs, "stride")?,
                padding: pair2(attrs, "padding")?,
                dilation: pair2(attrs, "dilation")?,
                groups: uint(attrs, "groups")?,
            };
            one(x.conv2d(input(ins, 1)?, opts))
        }
        "window" => {
            let wop = match attr(attrs, "op")?.as_str() {
                Some("sum") => WindowOp::Sum,
                Some("max") => WindowOp::Max,
                other => return Err(format!("unknown window op {other:?}")),
            };
            one(x.window(
                wop,
                &uints(attrs, "window")?,
                &uints(attrs, "stride")?,
                &pairs(attrs, "padding")?,
            ))
        }
        "max_pool2d" => one(x.max_pool2d(
            pair2(attrs, "kernel")?,
            pair2(attrs, "stride")?,
            pair2(attrs, "padding")?,
        )),
        "avg_pool2d" => one(x.avg_pool2d(
            pair2(attrs, "kernel")?,
            pair2(attrs, "stride")?,
            pair2(attrs, "padding")?,
        )),
        "relu" => one(x.relu()),
        "leaky_relu" => one(x.leaky_relu(float(attrs, "slope")?)),
        "gelu" => one(x.gelu()),
        "gelu_tanh" => one(x.gelu_tanh()),
        "silu" => one(x.silu()),
        "softplus" => one(x.softplus()),
        "square" => one(x.square()),
        "softmax" => one(x.softmax(int(attrs, "axis")?)),
        "log_softmax" => one(x.log_softmax(int(attrs, "axis")?)),
        "logsumexp" => one(x.logsumexp(ints(attrs, "axes")?, boolean(attrs, "keepdim")?)),
        "mean" => one(x.mean(ints(attrs, "axes")?, boolean(attrs, "keepdim")?)),
        "mean_all" => one(x.mean_all()),
        "sum_all" => one(x.sum_all()),
        "var" => one(x.var(
            ints(attrs, "axes")?,
            float(attrs, "correction")?,
            boolean(attrs, "keepdim")?,
        )),
        "layer_norm" => {
            let mut rest = ins.iter().skip(1);
            let w = if boolean(attrs, "weight")? {
                Some(rest.next().ok_or("layer_norm: weight missing")?)
            } else {
                None
            };
            let b = if boolean(attrs, "bias")? {
                Some(rest.next().ok_or("layer_norm: bias missing")?)
            } else {
                None
            };
            one(x.layer_norm(
                uint(attrs, "normalized_dims")? as usize,
                w,
                b,
                float(attrs, "eps")?,
            ))
        }
        "linear" => one(x.linear(input(ins, 1)?, ins.get(2))),
        "flatten" => one(x.flatten(int(attrs, "start")?, int(attrs, "end")?)),
        "squeeze" => one(x.squeeze(int(attrs, "axis")?)),
        "unsqueeze" => one(x.unsqueeze(int(attrs, "axis")?)),
        "transpose" => one(x.transpose(int(attrs, "a")?, int(attrs, "b")?)),
        "t" => one(x.t()),
        "one_hot" => one(x.one_hot(uint(attrs, "num_classes")?, dtype(attrs, "dtype")?)),
        "index_select" => one(x.index_select(int(attrs, "axis")?, input(ins, 1)?)),
        "clamp" => one(x.clamp(float(attrs, "lo")?, float(attrs, "hi")?)),
        "lstm_cell" => {
            let (b_ih, b_hh) = if boolean(attrs, "bias")? {
                (Some(input(ins, 5)?), Some(input(ins, 6)?))
            } else {
                (None, None)
            };
            let (h, c) = kiln::functional::lstm_cell(
                x,
                input(ins, 1)?,
                input(ins, 2)?,
                input(ins, 3)?,
                input(ins, 4)?,
                b_ih,
                b_hh,
            );
            Ok(vec![h, c])
        }
        "chain" => {
            let steps = attr(attrs, "steps")?
                .as_array()
                .ok_or("attribute `steps` is not a list")?;
            let empty = Value::Object(Default::default());
            let mut cur = x.clone();
            for (i, step) in steps.iter().enumerate() {
                let sop = step
                    .get("op")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("step {i}: no op"))?;
                let mut operands = vec![cur];
                if let Some(with) = step.get("with").and_then(Value::as_array) {
                    for k in with {
                        let k = k.as_u64().ok_or_else(|| format!("step {i}: bad `with`"))? as usize;
                        operands.push(input(ins, k)?.clone());
                    }
                }
                let sattrs = step.get("attrs").unwrap_or(&empty);
                cur = apply(sop, sattrs, &operands)
                    .map_err(|e| format!("step {i} ({sop}): {e}"))?
                    .into_iter()
                    .next()
                    .ok_or_else(|| format!("step {i} ({sop}) produced nothing"))?;
            }
            Ok(vec![cur])
        }
        other => Err(format!("unknown op `{other}`")),
    }
}

/// Builds a case's graph: inputs `in0, in1, ...` with the case's dtypes and shapes, then the
/// op. Returns the output tensors, or every builder diagnostic.
pub fn build(g: &Graph, spec: &CaseSpec) -> Result<Vec<Tensor>, String> {
    let ins: Vec<Tensor> = spec
        .inputs
        .iter()
        .enumerate()
        .map(|(k, r)| g.input(&format!("in{k}"), r.dtype, r.shape.as_slice()))
        .collect();
    let outs = apply(&spec.op, &spec.attrs, &ins)?;
    g.check().map_err(|e| e.to_string())?;
    Ok(outs)
}

/// Compares a case's produced outputs with the expected ones; the error names every output
/// that differs.
pub fn check_outputs(case: &Case, got: &[Array]) -> Result<(), String> {
    if got.len() != case.outputs.len() {
        return Err(format!(
            "{} outputs, expected {}",
            got.len(),
            case.outputs.len()
        ));
    }
    let errs: Vec<String> = got
        .iter()
        .zip(&case.outputs)
        .enumerate()
        .filter_map(|(k, (g, w))| {
            compare(g, w, case.spec.tol)
                .err()
                .map(|m| format!("out{k}: {m}"))
        })
        .collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// Runs a case through `eval` (any evaluator with `kiln::eval`'s signature: a backend, a
/// compiled module, ...) and compares the outputs.
pub fn run_case_with<E: fmt::Display>(
    case: &Case,
    eval: impl Fn(&[&Tensor], &[(&str, &Array)]) -> Result<Vec<Array>, E>,
) -> Result<(), String> {
    let g = Graph::new();
    let outs = build(&g, &case.spec)?;
    let names: Vec<String> = (0..case.inputs.len()).map(|k| format!("in{k}")).collect();
    let feeds: Vec<(&str, &Array)> = names.iter().map(String::as_str).zip(&case.inputs).collect();
    let refs: Vec<&Tensor> = outs.iter().collect();
    let got = eval(&refs, &feeds).map_err(|e| format!("evaluation failed: {e}"))?;
    check_outputs(case, &got)
}

/// Runs a case through the reference interpreter (`kiln::eval`).
pub fn run_case(case: &Case) -> Result<(), String> {
    run_case_with(case, kiln::eval)
}

/// Runs every case selected by `filter` through `kiln::eval`; returns how many ran and
/// `(name, error)` for each failure, so a test can report all of them at once.
pub fn run_cases(
    filter: impl Fn(&CaseSpec) -> bool,
) -> Result<(usize, Vec<(String, String)>), String> {
    let mut failures = Vec::new();
    let mut ran = 0;
    for spec in manifest()?.cases.iter().filter(|c| filter(c)) {
        ran += 1;
        let res = load(spec).and_then(|c| run_case(&c));
        if let Err(e) = res {
            failures.push((spec.name.clone(), e));
        }
    }
    Ok((ran, failures))
}

/// Asserts that every case selected by `filter` passes, listing every failing case.
#[track_caller]
pub fn assert_cases(family: &str, filter: impl Fn(&CaseSpec) -> bool) {
    let (ran, failures) = match run_cases(filter) {
        Ok(r) => r,
        Err(e) => panic!("{family}: {e}"),
    };
    assert!(ran > 0, "{family}: no golden case selected");
    if !failures.is_empty() {
        let lines: Vec<String> = failures
            .iter()
            .map(|(n, e)| format!("  {n}: {e}"))
            .collect();
        panic!(
            "{family}: {} of {ran} golden cases failed:\n{}",
            failures.len(),
            lines.join("\n")
        );
    }
}

/// tinygrad's `helper_test_op`: runs the golden case `name` through `kiln::eval` and panics
/// with the worst element on a mismatch.
#[track_caller]
pub fn helper_test_op(name: &str) {
    if let Err(e) = load_case(name).and_then(|c| run_case(&c)) {
        panic!("golden case {name}: {e}");
    }
}

/// Like [`helper_test_op`] but with the graph built by `f` from the case's input tensors
/// (to test another spelling of the same computation against the case's references).
#[track_caller]
pub fn helper_test_op_with(name: &str, f: impl Fn(&[Tensor]) -> Vec<Tensor>) {
    let res = load_case(name).and_then(|case| {
        let g = Graph::new();
        let ins: Vec<Tensor> = case
            .spec
            .inputs
            .iter()
            .enumerate()
            .map(|(k, r)| g.input(&format!("in{k}"), r.dtype, r.shape.as_slice()))
            .collect();
        let outs = f(&ins);
        g.check().map_err(|e| e.to_string())?;
        let names: Vec<String> = (0..case.inputs.len()).map(|k| format!("in{k}")).collect();
        let feeds: Vec<(&str, &Array)> =
            names.iter().map(String::as_str).zip(&case.inputs).collect();
        let refs: Vec<&Tensor> = outs.iter().collect();
        let got = kiln::eval(&refs, &feeds).map_err(|e| e.to_string())?;
        check_outputs(&case, &got)
    });
    if let Err(e) = res {
        panic!("golden case {name}: {e}");
    }
}

// ------------------------------------------------------------------------------------------
// Reference models
// ------------------------------------------------------------------------------------------

/// One forward reference of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardRef {
    /// Batch size.
    pub batch: usize,
    /// Shape of the model input (`[batch, ...]`).
    pub x_shape: Vec<usize>,
    /// Expected logits `[batch, 10]`.
    pub logits: TensorRef,
}

/// The training-step reference of a model: cross-entropy (mean) over int64 labels.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainRef {
    /// Batch size.
    pub batch: usize,
    /// Shape of the model input.
    pub x_shape: Vec<usize>,
    /// The loss, an f32 scalar.
    pub loss: TensorRef,
    /// d loss / d parameter, by `state_dict` name.
    pub grads: BTreeMap<String, TensorRef>,
}

/// A reference model: weights under their PyTorch `state_dict` names and its outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRef {
    /// `simple_nn`, `lstm_nn` or `lenet`.
    pub name: String,
    /// Parameter files by `state_dict` name.
    pub params: BTreeMap<String, TensorRef>,
    /// Forward references, one per batch size.
    pub forward: Vec<ForwardRef>,
    /// The training-step reference.
    pub train: TrainRef,
}

fn shape_of(v: &Value, key: &str) -> Result<Vec<usize>, String> {
    Ok(uints(v, key)?.into_iter().map(|d| d as usize).collect())
}

fn ref_map(v: &Value, key: &str) -> Result<BTreeMap<String, TensorRef>, String> {
    attr(v, key)?
        .as_object()
        .ok_or_else(|| format!("`{key}` is not an object"))?
        .iter()
        .map(|(k, t)| Ok((k.clone(), tensor_ref(t)?)))
        .collect()
}

/// The manifest entry of reference model `name`.
pub fn model(name: &str) -> Result<ModelRef, String> {
    let m = manifest()?
        .json
        .get("models")
        .and_then(|m| m.get(name))
        .ok_or_else(|| format!("no reference model `{name}`"))?;
    let forward = attr(m, "forward")?
        .as_array()
        .ok_or("`forward` is not a list")?
        .iter()
        .map(|f| {
            Ok(ForwardRef {
                batch: uint(f, "batch")? as usize,
                x_shape: shape_of(f, "x_shape")?,
                logits: tensor_ref(attr(f, "logits")?)?,
            })
        })
        .collect::<Result<_, String>>()?;
    let t = attr(m, "train")?;
    Ok(ModelRef {
        name: name.to_string(),
        params: ref_map(m, "params")?,
        forward,
        train: TrainRef {
            batch: uint(t, "batch")? as usize,
            x_shape: shape_of(t, "x_shape")?,
            loss: tensor_ref(attr(t, "loss")?)?,
            grads: ref_map(t, "grads")?,
        },
    })
}

/// Sets every parameter of reference model `name` on `g` (declared by the builders in
/// [`crate::models`]).
pub fn load_params(g: &Graph, name: &str) -> Result<(), String> {
    for (pname, r) in &model(name)?.params {
        g.set_param(pname, r.load()?)
            .map_err(|e| format!("{pname}: {e}"))?;
    }
    Ok(())
}

/// The first `shape[0]` samples of the shared model input (64 images of 28x28 in [0, 1)),
/// laid out as `shape`.
pub fn model_input(shape: &[usize]) -> Result<Array, String> {
    let x = tensor_at(&["models", "shared", "x"])?;
    let n: usize = shape.iter().product();
    let v = x.as_f32().map_err(|e| e.to_string())?;
    let head = v.get(..n).ok_or_else(|| {
        format!(
            "shape {shape:?} needs {n} values, the shared input has {}",
            v.len()
        )
    })?;
    Array::from_f32(shape, head.to_vec()).map_err(|e| e.to_string())
}

/// The shared int64 labels `[64]` of the training references.
pub fn model_labels() -> Result<Array, String> {
    tensor_at(&["models", "shared", "labels"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(shape: &[usize], v: &[f32]) -> Array {
        Array::from_f32(shape, v.to_vec()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn f32_tolerance_is_relative_plus_scaled_absolute() {
        // max|want| = 100: allowed at 1.0 is 1e-5 * 1 + 1e-6 * 100 = 1.1e-4.
        let want = f32s(&[2], &[1.0, 100.0]);
        assert_eq!(compare(&f32s(&[2], &[1.0001, 100.0]), &want, None), Ok(()));
        let err = compare(&f32s(&[2], &[1.0002, 100.0]), &want, None);
        let Err(Mismatch::Values {
            index,
            got,
            want: w,
            bad,
            total,
            allowed,
            ..
        }) = err
        else {
            panic!("expected a value mismatch, got {err:?}");
        };
        assert_eq!((index, bad, total), (vec![0], 1, 2));
        assert_eq!((got as f32, w), (1.0002f32, 1.0));
        assert!((allowed - 1.1e-4).abs() < 1e-12, "{allowed}");
    }

    #[test]
    fn worst_element_is_reported_with_its_index() {
        let want = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let got = f32s(&[2, 3], &[1.5, 2.0, 3.0, 4.0, 9.0, 6.0]);
        let err = compare(&got, &want, None);
        let Err(Mismatch::Values {
            index,
            got,
            want,
            bad,
            ..
        }) = err
        else {
            panic!("expected a value mismatch, got {err:?}");
        };
        assert_eq!((index, got, want, bad), (vec![1, 1], 9.0, 5.0, 2));
    }

    #[test]
    fn nan_and_infinity_must_match_exactly() {
        let want = f32s(&[3], &[f32::NAN, f32::INFINITY, 1.0]);
        assert_eq!(
            compare(&f32s(&[3], &[f32::NAN, f32::INFINITY, 1.0]), &want, None),
            Ok(())
        );
        let nan_vs_num = compare(&f32s(&[3], &[0.0, f32::INFINITY, 1.0]), &want, None);
        assert!(
            matches!(nan_vs_num, Err(Mismatch::Values { ref index, .. }) if index == &vec![0]),
            "{nan_vs_num:?}"
        );
        let inf_vs_big = compare(&f32s(&[3], &[f32::NAN, f32::MAX, 1.0]), &want, None);
        assert!(
            matches!(inf_vs_big, Err(Mismatch::Values { ref index, .. }) if index == &vec![1]),
            "{inf_vs_big:?}"
        );
    }

    #[test]
    fn integers_bools_dtypes_and_shapes_are_exact() {
        let a = Array::from_i64(&[3], vec![1, 2, 3]).unwrap_or_else(|e| panic!("{e}"));
        let b = Array::from_i64(&[3], vec![1, 2, 4]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            compare(
                &a,
                &a,
                Some(Tol {
                    rtol: 1.0,
                    atol_ratio: 1.0
                })
            ),
            Ok(())
        );
        let err = compare(
            &a,
            &b,
            Some(Tol {
                rtol: 1.0,
                atol_ratio: 1.0,
            }),
        );
        assert!(
            matches!(err, Err(Mismatch::Values { ref index, bad: 1, .. }) if index == &vec![2]),
            "{err:?}"
        );
        let t = Array::from_bool(&[2], vec![true, false]).unwrap_or_else(|e| panic!("{e}"));
        let f = Array::from_bool(&[2], vec![true, true]).unwrap_or_else(|e| panic!("{e}"));
        assert!(compare(&t, &f, None).is_err());
        assert_eq!(
            compare(&a, &f32s(&[3], &[1.0, 2.0, 3.0]), None),
            Err(Mismatch::DType {
                got: DType::I64,
                want: DType::F32
            })
        );
        assert_eq!(
            compare(
                &f32s(&[3, 1], &[1.0, 2.0, 3.0]),
                &f32s(&[3], &[1.0, 2.0, 3.0]),
                None
            ),
            Err(Mismatch::Shape {
                got: vec![3, 1],
                want: vec![3]
            })
        );
    }

    #[test]
    fn unravel_is_row_major() {
        assert_eq!(unravel(0, &[2, 3, 4]), vec![0, 0, 0]);
        assert_eq!(unravel(23, &[2, 3, 4]), vec![1, 2, 3]);
        assert_eq!(unravel(13, &[2, 3, 4]), vec![1, 0, 1]);
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
    }
}
