//! The graph handle users build on: sources (inputs, parameters, constants), symbols,
//! diagnostics and parameter values.

use crate::error::{Diagnostic, Error};
use kiln_ir::{Array, DType, Dim, Loc, NodeId, Op, Shape};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) ir: kiln_ir::Graph,
    pub(crate) diags: Vec<Diagnostic>,
    pub(crate) params: HashMap<String, Array>,
    /// For the graph of a control-flow body: the enclosing graph.
    pub(crate) parent: Option<Graph>,
    /// For the graph of a control-flow body: each captured tensor of an enclosing graph, as
    /// (its node in the parent, the body's parameter node standing for it).
    pub(crate) captures: Vec<(NodeId, NodeId)>,
    /// For the graph of a control-flow body: the body is finished (its region was built), so
    /// nothing may be added to it any more.
    pub(crate) sealed: bool,
    /// The state stores of the executables compiled from this graph, which
    /// [`Graph::set_param`] updates too.
    pub(crate) compiled: Vec<kiln_runtime::WeakState>,
}

/// A handle to one node of a [`Graph`]. Cloning is cheap.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) g: Graph,
    /// `None` when the tensor is poisoned by an earlier error.
    pub(crate) node: Option<NodeId>,
}

/// A symbolic graph under construction. Cheap to clone; clones share the same graph
/// (nodes, diagnostics and parameter values), so a layer or a loss that holds a clone adds
/// to the one graph. Single-threaded (`!Send`): build on one thread, then compile; an
/// [`Executable`](crate::Executable) owns a copy and does not borrow the graph.
///
/// ```
/// use kiln::{Array, DType, Graph};
/// let g = Graph::new();
/// let x = g.input("x", DType::F32, [2]);
/// let y = x.sqrt() * 2.0;
/// assert_eq!(g.len(), 4); // x, sqrt, the constant 2, the product
/// let out = kiln::eval(&[&y], &[("x", &Array::from_f32(&[2], vec![4.0, 9.0])?)])?;
/// assert_eq!(out[0].as_f32()?, &[4.0, 6.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Graph {
    pub(crate) inner: Rc<RefCell<Inner>>,
}

/// Anything that can be turned into a [`Shape`]: arrays and vectors of sizes, [`Shape`]s,
/// and tuples mixing symbolic [`Dim`]s with integers (`(&n, 784)`).
pub trait IntoShape {
    /// The shape.
    fn into_shape(self) -> Shape;
}

impl IntoShape for Shape {
    fn into_shape(self) -> Shape {
        self
    }
}
impl IntoShape for &Shape {
    fn into_shape(self) -> Shape {
        self.clone()
    }
}
impl<D: Into<Dim>, const K: usize> IntoShape for [D; K] {
    fn into_shape(self) -> Shape {
        Shape::new(self)
    }
}
impl<D: Into<Dim>> IntoShape for Vec<D> {
    fn into_shape(self) -> Shape {
        Shape::new(self)
    }
}
impl IntoShape for &[usize] {
    fn into_shape(self) -> Shape {
        Shape::known(self)
    }
}
impl IntoShape for &[Dim] {
    fn into_shape(self) -> Shape {
        Shape(self.to_vec())
    }
}

macro_rules! tuple_into_shape {
    ($($t:ident),+) => {
        impl<$($t: Into<Dim>),+> IntoShape for ($($t,)+) {
            #[allow(non_snake_case)]
            fn into_shape(self) -> Shape {
                let ($($t,)+) = self;
                Shape(vec![$($t.into()),+])
            }
        }
    };
}
tuple_into_shape!(A);
tuple_into_shape!(A, B);
tuple_into_shape!(A, B, C);
tuple_into_shape!(A, B, C, D);
tuple_into_shape!(A, B, C, D, E);
tuple_into_shape!(A, B, C, D, E, F);

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// A named symbolic dimension, such as the batch size `N`. Symbols are identified by name:
    /// two calls with the same name give the same dimension. Each run binds it from the
    /// inputs' shapes (or from explicit bindings, [`Executable::run_with`](crate::Executable::run_with)).
    pub fn sym(&self, name: &str) -> Dim {
        Dim::sym(name)
    }

    /// A named input fed at evaluation time ([`eval`](crate::eval)) or at each run of an
    /// executable. Declaring the same name twice records a diagnostic.
    #[track_caller]
    pub fn input(&self, name: &str, dtype: DType, shape: impl IntoShape) -> Tensor {
        let loc = Location::caller();
        let shape = shape.into_shape();
        if self.parent().is_some() {
            return self.fail(
                loc,
                "input",
                format!(
                    "input `{name}` is declared inside a control-flow body; declare it on the top-level graph and use it in the body"
                ),
            );
        }
        let dup = self
            .inner
            .borrow()
            .ir
            .inputs()
            .iter()
            .any(|(_, n)| *n == name);
        if dup {
            return self.fail(loc, "input", format!("input `{name}` is declared twice"));
        }
        self.source_at(
            loc,
            Op::Input {
                name: name.to_string(),
                dtype,
                shape,
            },
        )
    }

    /// A named parameter (persistent state such as `fc1.weight`); give it a value with
    /// [`Graph::set_param`] or declare it with [`Graph::param_init`].
    ///
    /// Parameters are identified by name: declaring `name` again with the same dtype and
    /// shape returns the same tensor (layers built twice with one prefix share weights); a
    /// different dtype or shape records a diagnostic. The shape must be concrete.
    #[track_caller]
    pub fn param(&self, name: &str, dtype: DType, shape: impl IntoShape) -> Tensor {
        let loc = Location::caller();
        let shape = shape.into_shape();
        if let Some(parent) = self.parent() {
            // A layer built inside a body: its parameters belong to the top-level graph.
            let outer = parent.param(name, dtype, shape);
            return self.capture_at(loc, "param", &outer);
        }
        if shape.as_known().is_none() {
            return self.fail(
                loc,
                "param",
                format!("parameter `{name}` must have a concrete shape, got {shape}"),
            );
        }
        let existing = self
            .inner
            .borrow()
            .ir
            .parameters()
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| *id);
        if let Some(id) = existing {
            let same = {
                let inner = self.inner.borrow();
                let node = inner.ir.node(id);
                node.dtype == dtype && node.shape == shape
            };
            if same {
                return Tensor::from_node(self, id);
            }
            return self.fail(
                loc,
                "param",
                format!(
                    "parameter `{name}` redeclared with a different dtype or shape ({dtype}{shape})"
                ),
            );
        }
        self.source_at(
            loc,
            Op::Parameter {
                name: name.to_string(),
                dtype,
                shape,
            },
        )
    }

    /// A parameter declared with its initial value. If `name` is already declared (same dtype
    /// and shape), the existing parameter is returned and its value replaced by `value`.
    #[track_caller]
    pub fn param_init(&self, name: &str, value: Array) -> Tensor {
        if let Some(parent) = self.parent() {
            let outer = parent.param_init(name, value);
            return self.capture_at(Location::caller(), "param", &outer);
        }
        let t = self.param(name, value.dtype(), Shape::known(value.shape()));
        if !t.is_poisoned() {
            self.inner
                .borrow_mut()
                .params
                .insert(name.to_string(), value);
        }
        t
    }

    /// Sets the value of a declared parameter: what [`eval`](crate::eval) uses from now on,
    /// what the next [`compile`](crate::compile) copies into its executable, and, in every
    /// live executable already compiled from this graph whose state holds the parameter,
    /// the value its next run reads ([`State::set`](crate::State::set) on each store).
    /// Executables that share a store ([`compile_shared`](crate::compile_shared)) see it
    /// once; an executable loaded from a file is not linked to any graph.
    ///
    /// # Errors
    ///
    /// [`Error::Npy`] naming the parameter if no parameter of that name is declared or the
    /// value's dtype or shape differs from the declaration.
    ///
    /// ```
    /// use kiln::{Array, Backend, DType, Graph};
    /// let g = Graph::new();
    /// let b = g.param("b", DType::F32, [1]);
    /// g.set_param("b", Array::from_f32(&[1], vec![1.0])?)?;
    /// let mut exe = kiln::compile(&[("b", &b)], Backend::Interp)?;
    /// g.set_param("b", Array::from_f32(&[1], vec![2.0])?)?;
    /// assert_eq!(exe.run(&[])?[0].1.as_f32()?, &[2.0]); // reaches the compiled executable
    /// assert!(g.set_param("b", Array::from_f32(&[2], vec![0.0; 2])?).is_err()); // wrong shape
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_param(&self, name: &str, value: Array) -> Result<(), Error> {
        if let Some(parent) = self.parent() {
            return parent.set_param(name, value);
        }
        self.set_param_value(name, value.clone())?;
        let mut inner = self.inner.borrow_mut();
        inner.compiled.retain(|w| w.upgrade().is_some());
        for store in inner.compiled.iter().filter_map(|w| w.upgrade()) {
            if store.contains(name) {
                store.set(name, value.clone())?;
            }
        }
        Ok(())
    }

    /// [`Graph::set_param`] on the graph's own value only, reaching no executable (the
    /// reference path `TrainStep::run_eval` writes its updates so).
    pub(crate) fn set_param_value(&self, name: &str, value: Array) -> Result<(), Error> {
        let mut inner = self.inner.borrow_mut();
        let found = inner
            .ir
            .parameters()
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| *id);
        let Some(id) = found else {
            return Err(Error::Npy {
                path: name.to_string(),
                message: "no parameter of this name in the graph".into(),
            });
        };
        let node = inner.ir.node(id);
        if node.dtype != value.dtype() || node.shape != Shape::known(value.shape()) {
            let msg = format!(
                "parameter declared as {}{} but the value is {}{:?}",
                node.dtype,
                node.shape,
                value.dtype(),
                value.shape()
            );
            return Err(Error::Npy {
                path: name.to_string(),
                message: msg,
            });
        }
        inner.params.insert(name.to_string(), value);
        Ok(())
    }

    /// The value of a parameter, if set.
    pub fn param_value(&self, name: &str) -> Option<Array> {
        if let Some(parent) = self.parent() {
            return parent.param_value(name);
        }
        self.inner.borrow().params.get(name).cloned()
    }

    /// Every parameter value that has been set, by name (a copy).
    pub fn param_values(&self) -> HashMap<String, Array> {
        if let Some(parent) = self.parent() {
            return parent.param_values();
        }
        self.inner.borrow().params.clone()
    }

    /// A literal tensor.
    #[track_caller]
    pub fn constant(&self, value: Array) -> Tensor {
        self.source_at(Location::caller(), Op::Constant(value))
    }

    /// A rank-0 literal of `dtype`.
    #[track_caller]
    pub fn scalar(&self, value: f64, dtype: DType) -> Tensor {
        self.source_at(
            Location::caller(),
            Op::Constant(Array::scalar(dtype, value)),
        )
    }

    /// A tensor of `shape` filled with `value` (a broadcast scalar, no storage).
    #[track_caller]
    pub fn full(&self, shape: impl IntoShape, value: f64, dtype: DType) -> Tensor {
        self.scalar(value, dtype).expand(shape)
    }

    /// Zeros of `shape`.
    #[track_caller]
    pub fn zeros(&self, shape: impl IntoShape, dtype: DType) -> Tensor {
        self.full(shape, 0.0, dtype)
    }

    /// Ones of `shape`.
    #[track_caller]
    pub fn ones(&self, shape: impl IntoShape, dtype: DType) -> Tensor {
        self.full(shape, 1.0, dtype)
    }

    /// `out[..., i, ...] = i` along `axis`.
    #[track_caller]
    pub fn iota(&self, dtype: DType, shape: impl IntoShape, axis: usize) -> Tensor {
        self.source_at(
            Location::caller(),
            Op::Iota {
                dtype,
                shape: shape.into_shape(),
                axis,
            },
        )
    }

    /// `0, 1, ..., n-1` as a rank-1 tensor.
    #[track_caller]
    pub fn arange(&self, n: impl Into<Dim>, dtype: DType) -> Tensor {
        self.iota(dtype, Shape(vec![n.into()]), 0)
    }

    /// Threefry-2x32 random `u32` bits, identical to `jax.random.bits(key, shape)`;
    /// `key` is a `u32[2]` tensor.
    #[track_caller]
    pub fn random_bits(&self, key: &Tensor, shape: impl IntoShape) -> Tensor {
        Tensor::apply(
            self,
            Location::caller(),
            Op::RandomBits {
                shape: shape.into_shape(),
            },
            &[key],
        )
    }

    /// `Ok` if the graph is well-formed, else [`Error::Check`] with every diagnostic recorded
    /// so far (each with the user's file and line; its `Display` lists them one per line).
    pub fn check(&self) -> Result<(), Error> {
        if let Some(parent) = self.parent() {
            return parent.check();
        }
        let d = self.inner.borrow().diags.clone();
        if d.is_empty() {
            Ok(())
        } else {
            Err(Error::Check(d))
        }
    }

    /// The diagnostics recorded so far.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        if let Some(parent) = self.parent() {
            return parent.diagnostics();
        }
        self.inner.borrow().diags.clone()
    }

    /// A snapshot of the underlying IR graph.
    pub fn ir(&self) -> kiln_ir::Graph {
        self.inner.borrow().ir.clone()
    }

    /// Runs `f` with mutable access to the IR (for graph transforms such as autodiff). Nodes
    /// added here bypass the builder's diagnostics; the IR's own checks still apply.
    pub fn with_ir<R>(&self, f: impl FnOnce(&mut kiln_ir::Graph) -> R) -> R {
        f(&mut self.inner.borrow_mut().ir)
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.inner.borrow().ir.len()
    }

    /// True if no node was built yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if both handles refer to the same graph.
    pub fn same(&self, other: &Graph) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    fn source_at(&self, loc: &Location<'_>, op: Op) -> Tensor {
        Tensor::apply(self, loc, op, &[])
    }

    /// Records a diagnostic at `loc` and returns a poisoned tensor.
    pub(crate) fn fail(&self, loc: &Location<'_>, op: &'static str, message: String) -> Tensor {
        self.push_diag(Diagnostic {
            loc: Loc::from_caller(loc),
            op,
            message,
            error: None,
        });
        Tensor::poisoned(self)
    }

    /// Records a diagnostic on the top-level graph (a body's diagnostics are its root's).
    pub(crate) fn push_diag(&self, d: Diagnostic) {
        match self.parent() {
            Some(parent) => parent.push_diag(d),
            None => self.inner.borrow_mut().diags.push(d),
        }
    }

    /// The enclosing graph, for the graph of a control-flow body.
    pub(crate) fn parent(&self) -> Option<Graph> {
        self.inner.borrow().parent.clone()
    }

    /// A new, empty graph for a control-flow body inside `parent`.
    pub(crate) fn child(parent: &Graph) -> Graph {
        let g = Graph::new();
        g.inner.borrow_mut().parent = Some(parent.clone());
        g
    }

    /// Adds a region parameter (an `input` node) to a body graph.
    pub(crate) fn add_param_input(&self, name: &str, dtype: DType, shape: Shape) -> NodeId {
        let node = kiln_ir::Node {
            op: Op::Input {
                name: name.to_string(),
                dtype,
                shape: shape.clone(),
            },
            dtype,
            shape,
            loc: None,
        };
        self.inner.borrow_mut().ir.add_unchecked(node, &[])
    }

    /// Marks a body graph finished.
    pub(crate) fn seal(&self) {
        self.inner.borrow_mut().sealed = true;
    }

    /// True for the graph of a finished control-flow body.
    pub(crate) fn is_sealed(&self) -> bool {
        self.inner.borrow().sealed
    }

    /// The captures of a body graph: (node in the parent, parameter node in the body).
    pub(crate) fn captures(&self) -> Vec<(NodeId, NodeId)> {
        self.inner.borrow().captures.clone()
    }

    /// The node of `t` in this graph: its own node if `t` belongs here, else (for a body
    /// graph) a parameter capturing it from an enclosing graph, created once per tensor.
    /// `Err` names the problem when `t` belongs to no enclosing graph; a poisoned `t` is
    /// the caller's to handle.
    pub(crate) fn resolve(&self, t: &Tensor) -> Result<NodeId, ResolveError> {
        let Some(id) = t.node else {
            return Err(ResolveError::Poisoned);
        };
        if t.g.same(self) {
            return Ok(id);
        }
        let Some(parent) = self.parent() else {
            return Err(if self.is_enclosing(&t.g) {
                ResolveError::EscapedBody
            } else {
                ResolveError::ForeignGraph
            });
        };
        let outer = parent.resolve(t)?;
        if let Some(&(_, inner)) = self
            .inner
            .borrow()
            .captures
            .iter()
            .find(|(o, _)| *o == outer)
        {
            return Ok(inner);
        }
        let (dtype, shape) = parent.with_ir(|ir| {
            let n = ir.node(outer);
            (n.dtype, n.shape.clone())
        });
        let k = self.inner.borrow().captures.len();
        let inner = self.add_param_input(&format!("capture{k}"), dtype, shape);
        self.inner.borrow_mut().captures.push((outer, inner));
        Ok(inner)
    }

    /// True if `other` is the graph of a body nested (at any depth) inside this graph.
    pub(crate) fn is_enclosing(&self, other: &Graph) -> bool {
        let mut g = other.parent();
        while let Some(p) = g {
            if p.same(self) {
                return true;
            }
            g = p.parent();
        }
        false
    }

    /// `t` as a tensor of this graph (captured if it belongs to an enclosing graph), or a
    /// poisoned tensor with a diagnostic at `loc`.
    pub(crate) fn capture_at(&self, loc: &Location<'_>, op: &'static str, t: &Tensor) -> Tensor {
        if t.is_poisoned() {
            return Tensor::poisoned(self);
        }
        match self.resolve(t) {
            Ok(id) => Tensor::from_node(self, id),
            Err(e) => self.fail(loc, op, e.to_string()),
        }
    }
}

/// Why a tensor cannot be used as an operand of a graph ([`Graph::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResolveError {
    /// The tensor carries an earlier error.
    #[error("the tensor is poisoned by an earlier error")]
    Poisoned,
    /// The tensor was built inside a control-flow body and used outside it.
    #[error(
        "a tensor built inside a control-flow body is used outside it; return it from the body instead"
    )]
    EscapedBody,
    /// The tensor belongs to an unrelated graph.
    #[error("operands come from different graphs")]
    ForeignGraph,
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner.borrow().ir, f)
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
