//! Control flow in the builder: [`Graph::cond`], [`Graph::scan`], [`Graph::while_loop`] and
//! [`Graph::fori_loop`], whose bodies are Rust closures building sub-graphs.
//!
//! A body is built on a child [`Graph`] (its own IR graph, a region of the op). Tensors of
//! an enclosing graph used inside a body are *captured*: the builder passes them to the op
//! as extra operands and gives the body a parameter for each, so bodies read like closures.
//! Parameters declared inside a body (a layer built in a loop) are declared on the top-level
//! graph and captured. A tensor built inside a body cannot be used outside it: return it.

use crate::builder::Graph;
use crate::error::Diagnostic;
use crate::tensor::Tensor;
use kiln_ir::{DType, Dim, Loc, NodeId, Op, Region, Shape};
use std::panic::Location;

/// Options of [`Graph::scan_with`].
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Run the steps from the last to the first (`ys[t]` still belongs to step `t`).
    pub reverse: bool,
    /// The number of steps; required when there are no `xs` (else axis 0 of the xs).
    pub length: Option<Dim>,
}

/// A body under construction: its graph, the parameters given to the closure, and the
/// enclosing-graph tensors it captured.
struct Body {
    g: Graph,
    params: Vec<NodeId>,
}

impl Body {
    /// A child graph of `parent` with one parameter per `(dtype, shape)`.
    fn new(parent: &Graph, types: &[(DType, Shape)], prefix: &str) -> (Body, Vec<Tensor>) {
        let g = Graph::child(parent);
        let mut params = Vec::with_capacity(types.len());
        let mut tensors = Vec::with_capacity(types.len());
        for (i, (dtype, shape)) in types.iter().enumerate() {
            let id = g.add_param_input(&format!("{prefix}{i}"), *dtype, shape.clone());
            params.push(id);
            tensors.push(Tensor::from_node(&g, id));
        }
        (Body { g, params }, tensors)
    }

    /// The body's results as node ids of its graph (an enclosing tensor returned directly is
    /// captured), or `None` if one is poisoned or foreign.
    fn results(
        &self,
        loc: &Location<'_>,
        op: &'static str,
        outs: &[Tensor],
    ) -> Option<Vec<NodeId>> {
        let mut ids = Vec::with_capacity(outs.len());
        for t in outs {
            t.node?;
            match self.g.resolve(t) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    self.g.fail(loc, op, e.to_string());
                    return None;
                }
            }
        }
        Some(ids)
    }
}

/// Finished bodies of one op whose captures are merged: every body takes the same extra
/// parameters, in the order of `outer` (the captured tensors' nodes in the enclosing graph).
struct Merged {
    regions: Vec<Region>,
    outer: Vec<NodeId>,
}

/// Gives every body a parameter for every capture of every body (bodies that do not use a
/// capture ignore it), after their own `params`.
fn merge(bodies: Vec<(Body, Vec<NodeId>)>) -> Merged {
    let captures: Vec<Vec<(NodeId, NodeId)>> = bodies.iter().map(|(b, _)| b.g.captures()).collect();
    let capture_types: Vec<Vec<(DType, Shape)>> = bodies
        .iter()
        .zip(&captures)
        .map(|((b, _), caps)| {
            let inner: Vec<NodeId> = caps.iter().map(|&(_, i)| i).collect();
            b.g.types_of(&inner)
        })
        .collect();
    let outer: Vec<NodeId> = captures.iter().flatten().map(|&(o, _)| o).collect();
    let mut regions = Vec::with_capacity(bodies.len());
    for (k, (body, results)) in bodies.into_iter().enumerate() {
        let mut params = body.params.clone();
        for (j, caps) in captures.iter().enumerate() {
            for (i, &(_, inner)) in caps.iter().enumerate() {
                if j == k {
                    params.push(inner);
                } else {
                    let (d, s) = capture_types[j][i].clone();
                    params.push(body.g.add_param_input(&format!("unused{j}_{i}"), d, s));
                }
            }
        }
        body.g.seal();
        regions.push(Region {
            graph: body.g.ir(),
            params,
            results,
        });
    }
    Merged { regions, outer }
}

impl Graph {
    /// Adds a control-flow node over `regions` with `operands` (ids of this graph) and one
    /// `get` per result; poisoned results if the op does not type-check.
    fn control(
        &self,
        loc: &Location<'_>,
        make: impl FnOnce(&[kiln_ir::RegionId]) -> Op,
        regions: Vec<Region>,
        operands: &[NodeId],
    ) -> Option<Vec<Tensor>> {
        let at = Some(Loc::from_caller(loc));
        let res = self.with_ir(|ir| {
            let ids: Vec<_> = regions.into_iter().map(|r| ir.add_region(r)).collect();
            let op = make(&ids);
            let name = op.name();
            let node = ir
                .add_at(op, operands, at.clone())
                .map_err(|e| (name, Box::new(e)))?;
            let n = ir.result_types(node).map_or(0, |r| r.len());
            let mut gets = Vec::with_capacity(n);
            for index in 0..n {
                gets.push(
                    ir.add_at(Op::Get { index }, &[node], at.clone())
                        .map_err(|e| ("get", Box::new(e)))?,
                );
            }
            Ok::<_, (&'static str, Box<kiln_ir::GraphError>)>(gets)
        });
        match res.map_err(|(op, e)| (op, *e)) {
            Ok(gets) => Some(
                gets.into_iter()
                    .map(|id| Tensor::from_node(self, id))
                    .collect(),
            ),
            Err((op, kiln_ir::GraphError::Shape(e))) => {
                self.push_diag(Diagnostic {
                    loc: Loc::from_caller(loc),
                    op,
                    message: e.to_string(),
                    error: Some(e),
                });
                None
            }
            Err((op, e)) => {
                self.fail(loc, op, e.to_string());
                None
            }
        }
    }

    /// Operand ids of `ts` in this graph (capturing enclosing tensors), or `None` if one is
    /// poisoned or foreign (a diagnostic is recorded for a foreign one).
    fn operand_ids(
        &self,
        loc: &Location<'_>,
        op: &'static str,
        ts: &[&Tensor],
    ) -> Option<Vec<NodeId>> {
        let mut ids = Vec::with_capacity(ts.len());
        for t in ts {
            t.node?;
            match self.resolve(t) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    self.fail(loc, op, e.to_string());
                    return None;
                }
            }
        }
        Some(ids)
    }

    fn types_of(&self, ids: &[NodeId]) -> Vec<(DType, Shape)> {
        self.with_ir(|ir| {
            ids.iter()
                .map(|&id| {
                    let n = ir.node(id);
                    (n.dtype, n.shape.clone())
                })
                .collect()
        })
    }

    /// `if pred { then_fn(operands) } else { else_fn(operands) }` with a predicate computed at
    /// run time (`pred` is a rank-0 `bool`; only the chosen branch runs). Both branches get
    /// `operands` and must return tensors of the same dtypes and shapes; a mismatch is a
    /// diagnostic at this call naming both types. Branches may use any tensor of the
    /// enclosing graph.
    ///
    /// ```
    /// use kiln::{Array, DType, Graph};
    /// let g = Graph::new();
    /// let x = g.input("x", DType::F32, [3]);
    /// let positive = x.sum(0, false).gt(0.0);
    /// let y = &g.cond(&positive, &[&x], |_, a| vec![&a[0] * 2.0], |_, a| vec![-&a[0]])[0];
    /// let run = |v: Vec<f32>| -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    ///     let out = kiln::eval(&[y], &[("x", &Array::from_f32(&[3], v)?)])?;
    ///     Ok(out[0].as_f32()?.to_vec())
    /// };
    /// assert_eq!(run(vec![1.0, -2.0, 4.0])?, [2.0, -4.0, 8.0]);
    /// assert_eq!(run(vec![1.0, -2.0, -4.0])?, [-1.0, 2.0, 4.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn cond(
        &self,
        pred: &Tensor,
        operands: &[&Tensor],
        then_fn: impl FnOnce(&Graph, &[Tensor]) -> Vec<Tensor>,
        else_fn: impl FnOnce(&Graph, &[Tensor]) -> Vec<Tensor>,
    ) -> Vec<Tensor> {
        let loc = Location::caller();
        let mut all: Vec<&Tensor> = vec![pred];
        all.extend_from_slice(operands);
        let Some(ids) = self.operand_ids(loc, "cond", &all) else {
            return self.poisoned_n(0);
        };
        let types = self.types_of(&ids[1..]);
        let (tb, targs) = Body::new(self, &types, "arg");
        let touts = then_fn(&tb.g, &targs);
        let (eb, eargs) = Body::new(self, &types, "arg");
        let eouts = else_fn(&eb.g, &eargs);
        let n = touts.len();
        let (Some(tr), Some(er)) = (
            tb.results(loc, "cond", &touts),
            eb.results(loc, "cond", &eouts),
        ) else {
            return self.poisoned_n(n);
        };
        let merged = merge(vec![(tb, tr), (eb, er)]);
        let mut operand_ids = ids;
        operand_ids.extend(&merged.outer);
        self.control(
            loc,
            |r| Op::Cond {
                then_branch: r[0],
                else_branch: r[1],
            },
            merged.regions,
            &operand_ids,
        )
        .unwrap_or_else(|| self.poisoned_n(n))
    }

    /// `jax.lax.scan`: runs `body(carry, x_t) -> (carry, y_t)` for each row `x_t` of the
    /// `xs` along axis 0 (whose length may be symbolic), and returns the final carries and
    /// the `y`s stacked along a new axis 0. A carry must keep its dtype and shape; a change
    /// is a diagnostic at this call naming both types. The body may use any tensor of the
    /// enclosing graph. See [`Graph::scan_with`] for a reverse scan or one without `xs`.
    ///
    /// ```
    /// use kiln::{Array, DType, Graph};
    /// let g = Graph::new();
    /// let t = g.sym("T");
    /// let xs = g.input("xs", DType::F32, (&t, 2));
    /// let zero = g.zeros([2], DType::F32);
    /// // Running sum: the carry is the sum so far, each step emits it.
    /// let (carry, ys) = g.scan(&[&zero], &[&xs], |_, c, x| {
    ///     let s = &c[0] + &x[0];
    ///     (vec![s.clone()], vec![s])
    /// });
    /// let feed = Array::from_f32(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
    /// let out = kiln::eval(&[&carry[0], &ys[0]], &[("xs", &feed)])?;
    /// assert_eq!(out[0].as_f32()?, &[9.0, 12.0]);
    /// assert_eq!(out[1].as_f32()?, &[1.0, 2.0, 4.0, 6.0, 9.0, 12.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn scan(
        &self,
        init: &[&Tensor],
        xs: &[&Tensor],
        body: impl FnOnce(&Graph, &[Tensor], &[Tensor]) -> (Vec<Tensor>, Vec<Tensor>),
    ) -> (Vec<Tensor>, Vec<Tensor>) {
        self.scan_at(Location::caller(), init, xs, &ScanOptions::default(), body)
    }

    /// [`Graph::scan`] with options: `reverse` runs the steps from the last row to the first
    /// (as `jax.lax.scan(..., reverse=True)`), `length` gives the step count when there are
    /// no `xs`.
    #[track_caller]
    pub fn scan_with(
        &self,
        init: &[&Tensor],
        xs: &[&Tensor],
        options: &ScanOptions,
        body: impl FnOnce(&Graph, &[Tensor], &[Tensor]) -> (Vec<Tensor>, Vec<Tensor>),
    ) -> (Vec<Tensor>, Vec<Tensor>) {
        self.scan_at(Location::caller(), init, xs, options, body)
    }

    fn scan_at(
        &self,
        loc: &Location<'_>,
        init: &[&Tensor],
        xs: &[&Tensor],
        options: &ScanOptions,
        body: impl FnOnce(&Graph, &[Tensor], &[Tensor]) -> (Vec<Tensor>, Vec<Tensor>),
    ) -> (Vec<Tensor>, Vec<Tensor>) {
        let c = init.len();
        let poisoned = |g: &Graph| (g.poisoned_n(c), Vec::new());
        let mut all: Vec<&Tensor> = init.to_vec();
        all.extend_from_slice(xs);
        let Some(ids) = self.operand_ids(loc, "scan", &all) else {
            return poisoned(self);
        };
        let types = self.types_of(&ids);
        let mut param_types = types[..c].to_vec();
        for (d, s) in &types[c..] {
            if s.rank() == 0 {
                self.fail(
                    loc,
                    "scan",
                    format!("scan: xs must have a leading axis to scan over, got {d}{s}"),
                );
                return poisoned(self);
            }
            param_types.push((*d, Shape(s.0[1..].to_vec())));
        }
        let length = match (&options.length, types.get(c)) {
            (Some(l), _) => l.clone(),
            (None, Some((_, s))) => s.0[0].clone(),
            (None, None) => {
                self.fail(
                    loc,
                    "scan",
                    "scan: without xs the step count must be given (ScanOptions::length)".into(),
                );
                return poisoned(self);
            }
        };
        let (b, params) = Body::new(self, &param_types, "p");
        let (carry_out, ys_out) = body(&b.g, &params[..c], &params[c..]);
        let mut outs = carry_out;
        let ny = ys_out.len();
        outs.extend(ys_out);
        let Some(results) = b.results(loc, "scan", &outs) else {
            return poisoned(self);
        };
        let merged = merge(vec![(b, results)]);
        let mut operand_ids = ids;
        operand_ids.extend(&merged.outer);
        let x = xs.len();
        let reverse = options.reverse;
        match self.control(
            loc,
            |r| Op::Scan {
                body: r[0],
                length,
                carries: c,
                xs: x,
                reverse,
            },
            merged.regions,
            &operand_ids,
        ) {
            Some(mut res) => {
                let ys = res.split_off(c.min(res.len()));
                (res, ys)
            }
            None => (self.poisoned_n(c), self.poisoned_n(ny)),
        }
    }

    /// `jax.lax.while_loop`: while `cond_fn(carry)` (a rank-0 `bool`) holds, `carry =
    /// body_fn(carry)`; returns the final carries. The trip count is decided at run time.
    /// Reverse-mode differentiation through it is refused (use [`Graph::scan`] or
    /// [`Graph::fori_loop`] with a static or symbolic bound).
    ///
    /// ```
    /// use kiln::{Array, DType, Graph};
    /// let g = Graph::new();
    /// let x = g.input("x", DType::F64, kiln::Shape::scalar());
    /// // Newton's iteration for sqrt(x) until the step is tiny.
    /// let guess = g.scalar(1.0, DType::F64);
    /// let out = g.while_loop(
    ///     &[&guess],
    ///     |g, c| ((&c[0] * &c[0] - &x).abs()).gt(&g.scalar(1e-12, DType::F64)),
    ///     |_, c| vec![(&c[0] + &x / &c[0]) * 0.5],
    /// );
    /// let r = kiln::eval(&[&out[0]], &[("x", &Array::from_f64(&[], vec![2.0])?)])?;
    /// assert!((r[0].as_f64()?[0] - 2f64.sqrt()).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn while_loop(
        &self,
        init: &[&Tensor],
        cond_fn: impl FnOnce(&Graph, &[Tensor]) -> Tensor,
        body_fn: impl FnOnce(&Graph, &[Tensor]) -> Vec<Tensor>,
    ) -> Vec<Tensor> {
        let loc = Location::caller();
        let c = init.len();
        let Some(ids) = self.operand_ids(loc, "while", init) else {
            return self.poisoned_n(c);
        };
        let types = self.types_of(&ids);
        let (cb, cargs) = Body::new(self, &types, "carry");
        let pred = cond_fn(&cb.g, &cargs);
        let (bb, bargs) = Body::new(self, &types, "carry");
        let next = body_fn(&bb.g, &bargs);
        let (Some(cr), Some(br)) = (
            cb.results(loc, "while", &[pred]),
            bb.results(loc, "while", &next),
        ) else {
            return self.poisoned_n(c);
        };
        let merged = merge(vec![(cb, cr), (bb, br)]);
        let mut operand_ids = ids;
        operand_ids.extend(&merged.outer);
        self.control(
            loc,
            |r| Op::While {
                cond: r[0],
                body: r[1],
                carries: c,
            },
            merged.regions,
            &operand_ids,
        )
        .unwrap_or_else(|| self.poisoned_n(c))
    }

    /// `jax.lax.fori_loop` with bounds known when the graph is built or symbolic:
    /// `for i in lo..hi { carry = body(i, carry) }` with `i` an `i32` scalar. It is a
    /// [`Graph::scan`] of `hi - lo` steps, so it is differentiable in reverse mode; for
    /// bounds computed at run time use [`Graph::while_loop`].
    ///
    /// ```
    /// use kiln::{Array, DType, Graph};
    /// let g = Graph::new();
    /// let x = g.input("x", DType::F32, [2]);
    /// // x * 2^5 by repeated doubling, plus the sum of the indices 0..5.
    /// let out = g.fori_loop(0, 5, &[&x], |g, i, c| vec![&c[0] * 2.0 + i.cast(DType::F32)]);
    /// let r = kiln::eval(&[&out[0]], &[("x", &Array::from_f32(&[2], vec![1.0, 0.0])?)])?;
    /// assert_eq!(r[0].as_f32()?, &[32.0 + 26.0, 26.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn fori_loop(
        &self,
        lo: i64,
        hi: impl Into<Dim>,
        init: &[&Tensor],
        body: impl FnOnce(&Graph, &Tensor, &[Tensor]) -> Vec<Tensor>,
    ) -> Vec<Tensor> {
        let loc = Location::caller();
        let hi: Dim = hi.into();
        let length = match u64::try_from(lo)
            .ok()
            .and_then(|l| hi.checked_sub(&Dim::known(l)))
        {
            Some(d) if d.provably_non_negative() => d,
            _ => {
                self.fail(
                    loc,
                    "fori_loop",
                    format!(
                        "fori_loop: the bounds {lo}..{hi} must satisfy 0 <= lo <= hi for every value of the symbols"
                    ),
                );
                return self.poisoned_n(init.len());
            }
        };
        let start = self.scalar(lo as f64, DType::I32);
        let mut carries: Vec<&Tensor> = vec![&start];
        carries.extend_from_slice(init);
        let options = ScanOptions {
            reverse: false,
            length: Some(length),
        };
        let (mut out, _) = self.scan_at(loc, &carries, &[], &options, |g, c, _| {
            let one = g.scalar(1.0, DType::I32);
            let next_i = &c[0] + &one;
            let mut next = vec![next_i];
            next.extend(body(g, &c[0], &c[1..]));
            (next, Vec::new())
        });
        if out.is_empty() {
            return out;
        }
        out.remove(0);
        out
    }

    /// `n` poisoned tensors of this graph.
    fn poisoned_n(&self, n: usize) -> Vec<Tensor> {
        (0..n).map(|_| Tensor::poisoned(self)).collect()
    }
}
