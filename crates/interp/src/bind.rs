//! Binding symbolic dims (`N`, `T`) to sizes from the shapes of the fed inputs.
//!
//! A plain symbol dim (`N`) binds directly; the first input (in node order) to bind a symbol
//! wins and a different value elsewhere is a [`EvalError::SymbolConflict`]. A dim expression
//! with exactly one still-unbound symbol (`N*28`, `T+1`) is then solved for it, repeatedly,
//! until nothing changes. Finally every declared dim must evaluate to the fed size.

use crate::error::{EvalError, ValueKind};
use kiln_ir::{Array, DType, Dim, Graph, NodeId, Op, Shape};
use std::collections::{HashMap, HashSet};

/// One fed input: its declaration and the fed array.
struct Fed<'a> {
    name: &'a str,
    shape: &'a Shape,
    array: &'a Array,
}

/// Binds symbols from every `Input` node of the graph; each one must be fed.
pub fn bind_symbols(
    graph: &Graph,
    inputs: &HashMap<String, Array>,
) -> Result<HashMap<String, u64>, EvalError> {
    let all: HashSet<NodeId> = graph.inputs().into_iter().map(|(id, _)| id).collect();
    bind_required(graph, &all, inputs)
}

/// Binds symbols from the `Input` nodes that `outputs` depend on (each must be fed) and from
/// every other input that happens to be fed.
pub fn bind_symbols_for(
    graph: &Graph,
    outputs: &[NodeId],
    inputs: &HashMap<String, Array>,
) -> Result<HashMap<String, u64>, EvalError> {
    let needed: HashSet<NodeId> = graph.ancestors(outputs)?.into_iter().collect();
    bind_required(graph, &needed, inputs)
}

/// Binds from inputs in `required` (missing ones are errors) and any other fed input.
pub(crate) fn bind_required(
    graph: &Graph,
    required: &HashSet<NodeId>,
    inputs: &HashMap<String, Array>,
) -> Result<HashMap<String, u64>, EvalError> {
    let mut fed = Vec::new();
    for (id, _) in graph.inputs() {
        let Op::Input { name, dtype, shape } = &graph.node(id).op else {
            continue;
        };
        match inputs.get(name) {
            Some(array) => {
                check_dtype(name, *dtype, array)?;
                fed.push(Fed { name, shape, array });
            }
            None if required.contains(&id) => {
                return Err(EvalError::MissingInput { name: name.clone() });
            }
            None => {}
        }
    }
    solve(&fed)
}

fn check_dtype(name: &str, expected: DType, array: &Array) -> Result<(), EvalError> {
    if array.dtype() == expected {
        Ok(())
    } else {
        Err(EvalError::DTypeMismatch {
            kind: ValueKind::Input,
            name: name.to_string(),
            expected,
            got: array.dtype(),
        })
    }
}

/// The declared shape for an error message, with the values of the bound symbols it uses.
pub(crate) fn describe(shape: &Shape, bindings: &HashMap<String, u64>) -> String {
    let used: Vec<String> = shape
        .symbols()
        .iter()
        .filter_map(|s| bindings.get(&**s).map(|v| format!("{s}={v}")))
        .collect();
    if used.is_empty() {
        shape.to_string()
    } else {
        format!("{shape} with {}", used.join(", "))
    }
}

fn mismatch(f: &Fed, bindings: &HashMap<String, u64>) -> EvalError {
    EvalError::ShapeMismatch {
        kind: ValueKind::Input,
        name: f.name.to_string(),
        expected: describe(f.shape, bindings),
        got: f.array.shape().to_vec(),
    }
}

/// The value of `sym` that makes `dim` evaluate to `target`, given the other bindings.
/// Dims are polynomials with positive coefficients, so they grow with each symbol and a
/// binary search over `0..=target` finds the solution if there is one.
fn solve_one(dim: &Dim, sym: &str, target: u64, bindings: &HashMap<String, u64>) -> Option<u64> {
    let mut trial = bindings.clone();
    let mut at = |v: u64| -> Option<u64> {
        trial.insert(sym.to_string(), v);
        dim.eval(&trial).ok()
    };
    let (mut lo, mut hi) = (0u64, target);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match at(mid) {
            Some(v) if v >= target => hi = mid,
            Some(_) => lo = mid + 1,
            None => hi = mid,
        }
    }
    (at(lo) == Some(target)).then_some(lo)
}

fn solve(fed: &[Fed]) -> Result<HashMap<String, u64>, EvalError> {
    let mut bindings: HashMap<String, u64> = HashMap::new();
    let mut bound_by: HashMap<String, String> = HashMap::new();
    for f in fed {
        if f.shape.rank() != f.array.shape().len() {
            return Err(mismatch(f, &bindings));
        }
        for (d, &n) in f.shape.dims().iter().zip(f.array.shape()) {
            let n = n as u64;
            if let Some(k) = d.as_known() {
                if k != n {
                    return Err(mismatch(f, &bindings));
                }
            } else if let Some(s) = d.as_symbol() {
                match bindings.get(s) {
                    Some(&v) if v != n => {
                        return Err(EvalError::SymbolConflict {
                            symbol: s.to_string(),
                            first: v,
                            first_input: bound_by.get(s).cloned().unwrap_or_default(),
                            second: n,
                            second_input: f.name.to_string(),
                        });
                    }
                    Some(_) => {}
                    None => {
                        bindings.insert(s.to_string(), n);
                        bound_by.insert(s.to_string(), f.name.to_string());
                    }
                }
            }
        }
    }
    loop {
        let mut progress = false;
        for f in fed {
            for (d, &n) in f.shape.dims().iter().zip(f.array.shape()) {
                let unbound: Vec<_> = d
                    .symbols()
                    .into_iter()
                    .filter(|s| !bindings.contains_key(&**s))
                    .collect();
                if let [s] = unbound.as_slice() {
                    let v = solve_one(d, s, n as u64, &bindings)
                        .ok_or_else(|| mismatch(f, &bindings))?;
                    bindings.insert(s.to_string(), v);
                    progress = true;
                }
            }
        }
        if !progress {
            break;
        }
    }
    for f in fed {
        for (d, &n) in f.shape.dims().iter().zip(f.array.shape()) {
            if let Some(s) = d
                .symbols()
                .into_iter()
                .find(|s| !bindings.contains_key(&**s))
            {
                return Err(EvalError::UnsolvableSymbol {
                    symbol: s.to_string(),
                    input: f.name.to_string(),
                    dim: d.to_string(),
                });
            }
            if d.eval(&bindings).ok() != Some(n as u64) {
                return Err(mismatch(f, &bindings));
            }
        }
    }
    Ok(bindings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::f32s;

    fn graph_with(inputs: &[(&str, DType, Shape)]) -> Graph {
        let mut g = Graph::new();
        for (name, dtype, shape) in inputs {
            g.add(
                Op::Input {
                    name: name.to_string(),
                    dtype: *dtype,
                    shape: shape.clone(),
                },
                &[],
            )
            .unwrap();
        }
        g
    }

    fn feed(pairs: &[(&str, Array)]) -> HashMap<String, Array> {
        pairs
            .iter()
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect()
    }

    fn zeros(shape: &[usize]) -> Array {
        Array::zeros(DType::F32, shape).unwrap()
    }

    #[test]
    fn binds_plain_and_derived_symbols() {
        let n = Dim::sym("N");
        let t = Dim::sym("T");
        let g = graph_with(&[
            ("x", DType::F32, Shape(vec![n.clone(), Dim::known(3)])),
            ("y", DType::F32, Shape(vec![&n * &Dim::known(28)])),
            ("z", DType::F32, Shape(vec![&(&n * &t) + &Dim::known(1)])),
        ]);
        let b = bind_symbols(
            &g,
            &feed(&[
                ("x", zeros(&[4, 3])),
                ("y", zeros(&[112])),
                ("z", zeros(&[21])),
            ]),
        )
        .unwrap();
        assert_eq!(
            b,
            HashMap::from([("N".to_string(), 4), ("T".to_string(), 5)])
        );
    }

    #[test]
    fn solves_a_symbol_seen_only_in_an_expression() {
        let n = Dim::sym("N");
        let g = graph_with(&[("x", DType::F32, Shape(vec![&n * &Dim::known(784)]))]);
        let b = bind_symbols(&g, &feed(&[("x", zeros(&[784 * 64]))])).unwrap();
        assert_eq!(b["N"], 64);
        let e = bind_symbols(&g, &feed(&[("x", zeros(&[785]))])).unwrap_err();
        assert_eq!(
            e,
            EvalError::ShapeMismatch {
                kind: ValueKind::Input,
                name: "x".into(),
                expected: "[N*784]".into(),
                got: vec![785]
            }
        );
    }

    #[test]
    fn conflicting_bindings_name_both_inputs() {
        let n = Dim::sym("N");
        let g = graph_with(&[
            ("a", DType::F32, Shape(vec![n.clone()])),
            ("b", DType::F32, Shape(vec![n.clone(), Dim::known(2)])),
        ]);
        let e = bind_symbols(&g, &feed(&[("a", zeros(&[3])), ("b", zeros(&[5, 2]))])).unwrap_err();
        assert_eq!(
            e,
            EvalError::SymbolConflict {
                symbol: "N".into(),
                first: 3,
                first_input: "a".into(),
                second: 5,
                second_input: "b".into()
            }
        );
        assert!(e.to_string().contains("`a`") && e.to_string().contains("`b`"));
    }

    #[test]
    fn derived_dim_disagreeing_with_a_binding_is_a_shape_error() {
        let n = Dim::sym("N");
        let g = graph_with(&[
            ("a", DType::F32, Shape(vec![n.clone()])),
            ("b", DType::F32, Shape(vec![&n * &Dim::known(2)])),
        ]);
        let e = bind_symbols(&g, &feed(&[("a", zeros(&[3])), ("b", zeros(&[7]))])).unwrap_err();
        assert_eq!(
            e,
            EvalError::ShapeMismatch {
                kind: ValueKind::Input,
                name: "b".into(),
                expected: "[N*2] with N=3".into(),
                got: vec![7]
            }
        );
    }

    #[test]
    fn missing_wrong_dtype_and_wrong_rank() {
        let n = Dim::sym("N");
        let g = graph_with(&[("x", DType::F32, Shape(vec![n.clone(), Dim::known(2)]))]);
        assert_eq!(
            bind_symbols(&g, &HashMap::new()).unwrap_err(),
            EvalError::MissingInput { name: "x".into() }
        );
        let i = Array::zeros(DType::I32, &[1, 2]).unwrap();
        assert_eq!(
            bind_symbols(&g, &feed(&[("x", i)])).unwrap_err(),
            EvalError::DTypeMismatch {
                kind: ValueKind::Input,
                name: "x".into(),
                expected: DType::F32,
                got: DType::I32
            }
        );
        let e = bind_symbols(&g, &feed(&[("x", f32s(&[2], &[1.0, 2.0]))])).unwrap_err();
        assert!(
            matches!(e, EvalError::ShapeMismatch { ref name, ref got, .. } if name == "x" && got == &vec![2])
        );
        let e = bind_symbols(&g, &feed(&[("x", zeros(&[2, 3]))])).unwrap_err();
        assert!(matches!(e, EvalError::ShapeMismatch { .. }));
    }

    #[test]
    fn product_of_two_unbound_symbols_cannot_be_solved() {
        let g = graph_with(&[(
            "x",
            DType::F32,
            Shape(vec![&Dim::sym("N") * &Dim::sym("T")]),
        )]);
        let e = bind_symbols(&g, &feed(&[("x", zeros(&[6]))])).unwrap_err();
        assert!(matches!(e, EvalError::UnsolvableSymbol { ref input, .. } if input == "x"));
    }
}
