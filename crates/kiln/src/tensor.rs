//! `Tensor` handles and the primitive ops on them. Every op is `#[track_caller]`: a shape or
//! dtype error records a diagnostic at the user's call site and returns a poisoned tensor
//! whose dependents stay quiet.

pub use crate::builder::Tensor;
use crate::builder::{Graph, IntoShape};
use crate::error::Diagnostic;
use kiln_ir::{
    ArgOp, Array, BinaryOp, DType, Dim, F64Bits, Loc, NodeId, Op, ReduceOp, Shape, SliceAxis,
    UnaryOp, WindowOp,
};
use std::fmt;
use std::panic::Location;

/// The right-hand side of a binary op: a tensor or a scalar converted to the left side's dtype.
#[derive(Clone, Debug)]
pub enum Operand {
    /// A tensor.
    Tensor(Tensor),
    /// A scalar literal.
    Scalar(f64),
}

impl From<&Tensor> for Operand {
    fn from(t: &Tensor) -> Operand {
        Operand::Tensor(t.clone())
    }
}
impl From<Tensor> for Operand {
    fn from(t: Tensor) -> Operand {
        Operand::Tensor(t)
    }
}
macro_rules! scalar_operand {
    ($($t:ty),*) => {$(
        impl From<$t> for Operand {
            fn from(v: $t) -> Operand {
                Operand::Scalar(v as f64)
            }
        }
    )*};
}
scalar_operand!(f64, f32, i32, i64, u32, usize);
impl From<bool> for Operand {
    fn from(v: bool) -> Operand {
        Operand::Scalar(if v { 1.0 } else { 0.0 })
    }
}

/// Axis arguments: one axis or several, negative values count from the end (`-1` = last).
pub trait Axes {
    /// The axes as given.
    fn axes(&self) -> Vec<i64>;
}
impl Axes for i64 {
    fn axes(&self) -> Vec<i64> {
        vec![*self]
    }
}
impl Axes for i32 {
    fn axes(&self) -> Vec<i64> {
        vec![i64::from(*self)]
    }
}
impl Axes for usize {
    fn axes(&self) -> Vec<i64> {
        vec![*self as i64]
    }
}
impl<const K: usize> Axes for [i64; K] {
    fn axes(&self) -> Vec<i64> {
        self.to_vec()
    }
}
impl<const K: usize> Axes for [i32; K] {
    fn axes(&self) -> Vec<i64> {
        self.iter().map(|&a| i64::from(a)).collect()
    }
}
impl<const K: usize> Axes for [usize; K] {
    fn axes(&self) -> Vec<i64> {
        self.iter().map(|&a| a as i64).collect()
    }
}
impl Axes for &[i64] {
    fn axes(&self) -> Vec<i64> {
        self.to_vec()
    }
}
impl Axes for Vec<i64> {
    fn axes(&self) -> Vec<i64> {
        self.clone()
    }
}
impl Axes for Vec<usize> {
    fn axes(&self) -> Vec<i64> {
        self.iter().map(|&a| a as i64).collect()
    }
}

/// Options of a 2-D convolution (PyTorch's `Conv2d` arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvOpts {
    /// Stride (h, w).
    pub stride: [u64; 2],
    /// Zero padding (h, w) on both sides.
    pub padding: [u64; 2],
    /// Dilation (h, w).
    pub dilation: [u64; 2],
    /// Groups.
    pub groups: u64,
}

impl Default for ConvOpts {
    fn default() -> ConvOpts {
        ConvOpts {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Tensor {
    pub(crate) fn from_node(g: &Graph, id: NodeId) -> Tensor {
        Tensor {
            g: g.clone(),
            node: Some(id),
        }
    }

    pub(crate) fn poisoned(g: &Graph) -> Tensor {
        Tensor {
            g: g.clone(),
            node: None,
        }
    }

    /// Applies a primitive, recording a diagnostic on failure.
    pub(crate) fn apply(g: &Graph, loc: &Location<'_>, op: Op, operands: &[&Tensor]) -> Tensor {
        // Inside a control-flow body, an op mixing a body tensor with an enclosing one is
        // built in the (innermost) body.
        let mut g = g;
        for t in operands {
            if g.is_enclosing(&t.g) && !t.g.is_sealed() {
                g = &t.g;
            }
        }
        if g.is_sealed() {
            return g.fail(
                loc,
                op.name(),
                format!(
                    "{}: a tensor built inside a control-flow body is used outside it; return it from the body instead",
                    op.name()
                ),
            );
        }
        let mut ids = Vec::with_capacity(operands.len());
        for t in operands {
            if t.node.is_none() {
                return Tensor::poisoned(g);
            }
            // A tensor of an enclosing graph used in a control-flow body is captured.
            match g.resolve(t) {
                Ok(id) => ids.push(id),
                Err(e) => return g.fail(loc, op.name(), format!("{}: {e}", op.name())),
            }
        }
        let name = op.name();
        let res = g
            .inner
            .borrow_mut()
            .ir
            .add_at(op, &ids, Some(Loc::from_caller(loc)));
        match res {
            Ok(id) => Tensor::from_node(g, id),
            Err(kiln_ir::GraphError::Shape(e)) => {
                g.push_diag(Diagnostic {
                    loc: Loc::from_caller(loc),
                    op: name,
                    message: e.to_string(),
                    error: Some(e),
                });
                Tensor::poisoned(g)
            }
            Err(e) => g.fail(loc, name, e.to_string()),
        }
    }

    /// The graph this tensor belongs to.
    pub fn graph(&self) -> &Graph {
        &self.g
    }

    /// The IR node, or `None` if the tensor is poisoned.
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }

    /// True if an earlier error poisoned this tensor.
    pub fn is_poisoned(&self) -> bool {
        self.node.is_none()
    }

    pub(crate) fn meta(&self) -> Option<(DType, Shape)> {
        let id = self.node?;
        let inner = self.g.inner.borrow();
        let n = inner.ir.node(id);
        Some((n.dtype, n.shape.clone()))
    }

    /// The shape (empty for a poisoned tensor).
    pub fn shape(&self) -> Shape {
        self.meta().map(|m| m.1).unwrap_or_default()
    }

    /// The dtype (`f32` for a poisoned tensor).
    pub fn dtype(&self) -> DType {
        self.meta().map_or(DType::F32, |m| m.0)
    }

    /// The rank (0 for a poisoned tensor).
    pub fn rank(&self) -> usize {
        self.shape().rank()
    }

    /// Dim `axis` (negative counts from the end), if in range.
    pub fn dim(&self, axis: i64) -> Option<Dim> {
        let s = self.shape();
        let a = norm_axis(axis, s.rank())?;
        Some(s.0[a].clone())
    }

    #[track_caller]
    pub(crate) fn axis(&self, loc: &Location<'_>, op: &'static str, axis: i64) -> Option<usize> {
        let r = self.rank();
        let a = norm_axis(axis, r);
        if a.is_none() && !self.is_poisoned() {
            self.g.fail(
                loc,
                op,
                format!(
                    "{op}: axis {axis} is out of range for shape {}",
                    self.shape()
                ),
            );
        }
        a
    }

    pub(crate) fn axes_of(
        &self,
        loc: &Location<'_>,
        op: &'static str,
        axes: &dyn Axes,
    ) -> Option<Vec<usize>> {
        let mut out = Vec::new();
        for a in axes.axes() {
            out.push(self.axis(loc, op, a)?);
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }

    /// Turns an operand into a tensor of this tensor's dtype (scalars become constants).
    pub(crate) fn operand(&self, loc: &Location<'_>, rhs: Operand) -> Tensor {
        match rhs {
            Operand::Tensor(t) => t,
            Operand::Scalar(v) => Tensor::apply(
                &self.g,
                loc,
                Op::Constant(Array::scalar(self.dtype(), v)),
                &[],
            ),
        }
    }

    #[track_caller]
    fn unary(&self, u: UnaryOp) -> Tensor {
        Tensor::apply(&self.g, Location::caller(), Op::Unary(u), &[self])
    }

    #[track_caller]
    pub(crate) fn binary(&self, b: BinaryOp, rhs: Operand) -> Tensor {
        let loc = Location::caller();
        let rhs = self.operand(loc, rhs);
        Tensor::apply(&self.g, loc, Op::Binary(b), &[self, &rhs])
    }

    /// A scalar operand on the left: `value op self`.
    #[track_caller]
    pub(crate) fn binary_rev(&self, b: BinaryOp, lhs: f64) -> Tensor {
        let loc = Location::caller();
        let l = self.operand(loc, Operand::Scalar(lhs));
        Tensor::apply(&self.g, loc, Op::Binary(b), &[&l, self])
    }
}

fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// The `Tensor` method of each unary op, with its doc, from the op list of `kiln_ir`.
macro_rules! unary_methods {
    ($(
        $(#[$doc:meta])* $op:ident $name:literal [$($rule:tt)*] $cost:ident
        $(#[$method_doc:meta])* fn $method:ident;
    )*) => {
        impl Tensor {
            $(
                $(#[$method_doc])*
                #[track_caller]
                pub fn $method(&self) -> Tensor {
                    self.unary(UnaryOp::$op)
                }
            )*
        }
    };
}

kiln_ir::for_each_unary_op!(unary_methods);

/// The `Tensor` method of each binary op, with its doc, from the op list of `kiln_ir`.
macro_rules! binary_methods {
    ($(
        $(#[$doc:meta])* $op:ident $name:literal [$($rule:tt)*] $cost:ident
        $(#[$method_doc:meta])* fn $method:ident;
    )*) => {
        impl Tensor {
            $(
                $(#[$method_doc])*
                #[track_caller]
                pub fn $method(&self, rhs: impl Into<Operand>) -> Tensor {
                    self.binary(BinaryOp::$op, rhs.into())
                }
            )*
        }
    };
}

kiln_ir::for_each_binary_op!(binary_methods);

impl Tensor {
    /// `self ? a : b` elementwise, with broadcasting; `self` must be bool.
    #[track_caller]
    pub fn where_(&self, a: impl Into<Operand>, b: impl Into<Operand>) -> Tensor {
        let loc = Location::caller();
        let (a, b) = match (a.into(), b.into()) {
            (Operand::Tensor(a), b) => {
                let b = a.operand(loc, b);
                (a, b)
            }
            (Operand::Scalar(x), Operand::Tensor(b)) => (b.operand(loc, Operand::Scalar(x)), b),
            (Operand::Scalar(x), Operand::Scalar(y)) => {
                let a = Tensor::apply(
                    &self.g,
                    loc,
                    Op::Constant(Array::scalar(DType::F32, x)),
                    &[],
                );
                let b = a.operand(loc, Operand::Scalar(y));
                (a, b)
            }
        };
        Tensor::apply(&self.g, loc, Op::Select, &[self, &a, &b])
    }

    /// Stops gradients: the value passes through unchanged, derivatives treat it as a
    /// constant (`jax.lax.stop_gradient`, `torch.Tensor.detach`).
    #[track_caller]
    pub fn stop_gradient(&self) -> Tensor {
        Tensor::apply(&self.g, Location::caller(), Op::StopGradient, &[self])
    }

    /// Alias of [`Tensor::stop_gradient`] with PyTorch's name.
    #[track_caller]
    pub fn detach(&self) -> Tensor {
        self.stop_gradient()
    }

    /// Converts the element type.
    #[track_caller]
    pub fn cast(&self, dtype: DType) -> Tensor {
        Tensor::apply(&self.g, Location::caller(), Op::Cast(dtype), &[self])
    }

    #[track_caller]
    fn reduce(&self, op: ReduceOp, axes: &dyn Axes, keepdim: bool) -> Tensor {
        let loc = Location::caller();
        let Some(axes) = self.axes_of(loc, op.name(), axes) else {
            return Tensor::poisoned(&self.g);
        };
        Tensor::apply(&self.g, loc, Op::Reduce { op, axes, keepdim }, &[self])
    }

    /// Sum over `axes`.
    #[track_caller]
    pub fn sum(&self, axes: impl Axes, keepdim: bool) -> Tensor {
        self.reduce(ReduceOp::Sum, &axes, keepdim)
    }

    /// Sum of every element (a scalar).
    #[track_caller]
    pub fn sum_all(&self) -> Tensor {
        let all: Vec<i64> = (0..self.rank() as i64).collect();
        self.reduce(ReduceOp::Sum, &all, false)
    }

    /// Maximum over `axes`.
    #[track_caller]
    pub fn max(&self, axes: impl Axes, keepdim: bool) -> Tensor {
        self.reduce(ReduceOp::Max, &axes, keepdim)
    }

    /// Minimum over `axes`.
    #[track_caller]
    pub fn min(&self, axes: impl Axes, keepdim: bool) -> Tensor {
        self.reduce(ReduceOp::Min, &axes, keepdim)
    }

    /// Product over `axes`.
    #[track_caller]
    pub fn prod(&self, axes: impl Axes, keepdim: bool) -> Tensor {
        self.reduce(ReduceOp::Prod, &axes, keepdim)
    }

    #[track_caller]
    fn arg(&self, op: ArgOp, axis: i64, keepdim: bool) -> Tensor {
        let loc = Location::caller();
        let Some(axis) = self.axis(loc, op.name(), axis) else {
            return Tensor::poisoned(&self.g);
        };
        Tensor::apply(&self.g, loc, Op::ArgReduce { op, axis, keepdim }, &[self])
    }

    /// Index of the maximum along `axis` (`i64`, first index on ties).
    #[track_caller]
    pub fn argmax(&self, axis: i64, keepdim: bool) -> Tensor {
        self.arg(ArgOp::ArgMax, axis, keepdim)
    }

    /// Index of the minimum along `axis` (`i64`, first index on ties).
    #[track_caller]
    pub fn argmin(&self, axis: i64, keepdim: bool) -> Tensor {
        self.arg(ArgOp::ArgMin, axis, keepdim)
    }

    /// Same elements in a new shape with the same element count.
    #[track_caller]
    pub fn reshape(&self, shape: impl IntoShape) -> Tensor {
        Tensor::apply(
            &self.g,
            Location::caller(),
            Op::Reshape(shape.into_shape()),
            &[self],
        )
    }

    /// Reorders axes: output axis `i` is input axis `perm[i]`.
    #[track_caller]
    pub fn permute(&self, perm: impl Axes) -> Tensor {
        let loc = Location::caller();
        let mut p = Vec::new();
        for a in perm.axes() {
            match self.axis(loc, "permute", a) {
                Some(a) => p.push(a),
                None => return Tensor::poisoned(&self.g),
            }
        }
        Tensor::apply(&self.g, loc, Op::Permute(p), &[self])
    }

    /// Broadcasts size-1 axes (and adds leading axes) to `shape`.
    #[track_caller]
    pub fn expand(&self, shape: impl IntoShape) -> Tensor {
        Tensor::apply(
            &self.g,
            Location::caller(),
            Op::Expand(shape.into_shape()),
            &[self],
        )
    }

    /// Elements `start, start+step, ...` below `stop` along `axis` (negative `start`/`stop`
    /// count from the end; `stop` is clamped to the axis size like Python slicing).
    #[track_caller]
    pub fn slice(&self, axis: i64, start: i64, stop: i64, step: u64) -> Tensor {
        let loc = Location::caller();
        let Some(ax) = self.axis(loc, "slice", axis) else {
            return Tensor::poisoned(&self.g);
        };
        let s = self.shape();
        let Some(n) = s.0[ax].as_known() else {
            return self.g.fail(
                loc,
                "slice",
                format!("slice: axis {axis} of {s} is symbolic; only known axes can be sliced"),
            );
        };
        let n = n as i64;
        let fix = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) } as u64;
        let (start, stop) = (fix(start), fix(stop));
        let mut spec: Vec<SliceAxis> = (0..s.rank())
            .map(|_| SliceAxis {
                start: 0,
                stop: u64::MAX,
                step: 1,
            })
            .collect();
        spec[ax] = SliceAxis {
            start,
            stop: stop.max(start),
            step,
        };
        Tensor::apply(&self.g, loc, Op::Slice(spec), &[self])
    }

    /// Constant padding with `(before, after)` per axis (one entry per axis).
    #[track_caller]
    pub fn pad(&self, pads: &[(u64, u64)], value: f64) -> Tensor {
        Tensor::apply(
            &self.g,
            Location::caller(),
            Op::Pad {
                pads: pads.to_vec(),
                value: F64Bits::new(value),
            },
            &[self],
        )
    }

    /// Concatenates `tensors` along `axis`.
    #[track_caller]
    pub fn cat(tensors: &[&Tensor], axis: i64) -> Tensor {
        let loc = Location::caller();
        let Some(first) = tensors.first() else {
            let g = Graph::new();
            return g.fail(loc, "concat", "concat: no tensors given".into());
        };
        if tensors.len() == 1 {
            return (*first).clone();
        }
        let Some(ax) = first.axis(loc, "concat", axis) else {
            return Tensor::poisoned(&first.g);
        };
        Tensor::apply(&first.g, loc, Op::Concat { axis: ax }, tensors)
    }

    /// Reverses the listed axes.
    #[track_caller]
    pub fn flip(&self, axes: impl Axes) -> Tensor {
        let loc = Location::caller();
        let Some(axes) = self.axes_of(loc, "flip", &axes) else {
            return Tensor::poisoned(&self.g);
        };
        Tensor::apply(&self.g, loc, Op::Flip { axes }, &[self])
    }

    /// `out[..i..] = self[..index[..i..]..]` along `axis` (`torch.take_along_dim`).
    #[track_caller]
    pub fn gather(&self, axis: i64, index: &Tensor) -> Tensor {
        let loc = Location::caller();
        let Some(ax) = self.axis(loc, "gather", axis) else {
            return Tensor::poisoned(&self.g);
        };
        Tensor::apply(&self.g, loc, Op::Gather { axis: ax }, &[self, index])
    }

    /// `self` with `src` added at `index` along `axis` (gather's adjoint).
    #[track_caller]
    pub fn scatter_add(&self, axis: i64, index: &Tensor, src: &Tensor) -> Tensor {
        let loc = Location::caller();
        let Some(ax) = self.axis(loc, "scatter_add", axis) else {
            return Tensor::poisoned(&self.g);
        };
        Tensor::apply(
            &self.g,
            loc,
            Op::ScatterAdd { axis: ax },
            &[self, index, src],
        )
    }

    /// Matrix product with PyTorch's rules: 1-D operands are promoted (and the added axis
    /// removed), batch axes broadcast.
    #[track_caller]
    pub fn matmul(&self, rhs: &Tensor) -> Tensor {
        let loc = Location::caller();
        let (ra, rb) = (self.rank(), rhs.rank());
        if self.is_poisoned() || rhs.is_poisoned() {
            return Tensor::poisoned(&self.g);
        }
        if ra == 0 || rb == 0 {
            return self.g.fail(
                loc,
                "matmul",
                format!(
                    "matmul: operands must have rank >= 1, got {} @ {}",
                    self.shape(),
                    rhs.shape()
                ),
            );
        }
        let a = if ra == 1 {
            self.unsqueeze(0)
        } else {
            self.clone()
        };
        let b = if rb == 1 {
            rhs.unsqueeze(-1)
        } else {
            rhs.clone()
        };
        let out = Tensor::apply(&self.g, loc, Op::MatMul, &[&a, &b]);
        let out = if ra == 1 { out.squeeze(-2) } else { out };
        if rb == 1 { out.squeeze(-1) } else { out }
    }

    /// 2-D convolution (NCHW input, OIHW weight), no bias.
    #[track_caller]
    pub fn conv2d(&self, weight: &Tensor, opts: ConvOpts) -> Tensor {
        let op = Op::Conv2d {
            stride: opts.stride,
            padding: opts.padding,
            dilation: opts.dilation,
            groups: opts.groups,
        };
        Tensor::apply(&self.g, Location::caller(), op, &[self, weight])
    }

    /// Windowed reduction over the trailing `window.len()` axes.
    #[track_caller]
    pub fn window(
        &self,
        op: WindowOp,
        window: &[u64],
        stride: &[u64],
        padding: &[(u64, u64)],
    ) -> Tensor {
        let op = Op::Window {
            op,
            window: window.to_vec(),
            stride: stride.to_vec(),
            padding: padding.to_vec(),
        };
        Tensor::apply(&self.g, Location::caller(), op, &[self])
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.meta() {
            Some((d, s)) => write!(
                f,
                "Tensor({}: {d}{s})",
                self.node.map_or(String::new(), |n| n.to_string())
            ),
            None => f.write_str("Tensor(<poisoned>)"),
        }
    }
}
