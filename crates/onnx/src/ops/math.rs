//! Composite math: Einsum (diagonals, sums, then pairwise batched matmuls), Det (Gaussian
//! elimination with partial pivoting, unrolled for a static size) and CumProd (a log-step
//! scan), and the small elementwise composites Swish and LRN.

use super::{NodeCx, OpResult, axis, bail, dims_of, need_float};
use crate::value::Value;
use kiln::Tensor;
use kiln_ir::{DType, Dim, Shape};

/// Largest matrix size `Det` unrolls (the graph grows linearly with it).
const MAX_DET_SIZE: u64 = 128;
/// First label of the axes an ellipsis stands for (letters are below it).
const ELLIPSIS: u32 = 1 << 16;

pub fn cumprod(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let a = match cx.input(1)?.as_ints() {
        Some(v) if v.len() == 1 => axis(v[0], x.rank())?,
        _ => bail!("axis (input 1) must be known when importing, as one element"),
    };
    let Some(n) = x.shape().dims()[a].as_known() else {
        bail!("CumProd needs a known axis size, got {}", x.shape());
    };
    let exclusive = cx.attr_i("exclusive", 0) != 0;
    let reverse = cx.attr_i("reverse", 0) != 0;
    let r = x.rank();
    let mut t = x.transpose(a as i64, -1);
    if reverse {
        t = t.flip(-1);
    }
    let n = n as i64;
    let shifted = |t: &Tensor, k: u64| {
        let mut pads = vec![(0, 0); r];
        pads[r - 1] = (k, 0);
        t.pad(&pads, 1.0).slice(-1, 0, n, 1)
    };
    if exclusive {
        t = shifted(&t, 1);
    }
    let mut step = 1;
    while step < n {
        t = t.mul(shifted(&t, step as u64));
        step *= 2;
    }
    if reverse {
        t = t.flip(-1);
    }
    Ok(vec![Value::tensor(t.transpose(a as i64, -1))])
}

pub fn det(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    need_float(&x, "Det")?;
    let r = x.rank();
    let d = dims_of(&x);
    if r < 2 {
        bail!("needs a [..., n, n] input, got {}", x.shape());
    }
    let n = match (d[r - 2].as_known(), d[r - 1].as_known()) {
        (Some(a), Some(b)) if a == b && a <= MAX_DET_SIZE => a,
        _ => bail!(
            "needs square matrices of a known size up to {MAX_DET_SIZE}, got {}",
            x.shape()
        ),
    };
    let batch = Shape::new(d[..r - 2].to_vec());
    if n == 0 {
        return Ok(vec![Value::tensor(cx.g.ones(batch, x.dtype()))]);
    }
    let g = cx.g;
    let rows = g.iota(DType::I32, [n as usize, 1], 0);
    let mut a = x.clone();
    let mut det: Option<Tensor> = None;
    let n = n as i64;
    for k in 0..n {
        // The pivot row: the first row at or below k with the largest magnitude in column k.
        let col = rows
            .ge(k as f64)
            .where_(a.slice(-1, k, k + 1, 1).abs(), -1.0);
        let p = col
            .eq(col.max(-2, true))
            .where_(&rows, n as f64)
            .min(-2, true);
        // NaN columns have no largest entry: keep row k.
        let p = p.ge(n as f64).where_(k as f64, &p);
        let idx = rows.eq(k as f64).where_(
            &p,
            rows.eq(&p).where_(g.scalar(k as f64, DType::I32), &rows),
        );
        a = a.gather(-2, &idx.expand(x.shape()));
        let pivot = a.slice(-2, k, k + 1, 1).slice(-1, k, k + 1, 1);
        let sign = p.eq(k as f64).where_(1.0, -1.0).cast(x.dtype());
        let term = pivot.mul(&sign);
        det = Some(match det {
            Some(v) => v.mul(&term),
            None => term,
        });
        if k + 1 < n {
            let below = a.slice(-2, k + 1, n, 1);
            let f = below.slice(-1, k, k + 1, 1).div(&pivot);
            let f = pivot.eq(0.0).where_(0.0, &f);
            let below = below.sub(f.mul(a.slice(-2, k, k + 1, 1)));
            a = Tensor::cat(&[&a.slice(-2, 0, k + 1, 1), &below], -2);
        }
    }
    let det = det.unwrap_or_else(|| g.ones(batch.clone(), x.dtype()));
    Ok(vec![Value::tensor(det.reshape(batch))])
}

/// One operand of an einsum: a tensor and the label of each axis.
struct Term {
    t: Tensor,
    labels: Vec<u32>,
}

/// The labels of one term of the equation; `...` stands for `ell` axes labelled
/// `ELLIPSIS + width - ell ..` (right-aligned across operands).
fn parse_term(s: &str, rank: Option<usize>, width: usize) -> OpResult<(Vec<u32>, usize)> {
    let mut labels = Vec::new();
    let (head, tail, has_ell) = match s.find("...") {
        Some(i) => (&s[..i], &s[i + 3..], true),
        None => (s, "", false),
    };
    let letters = |p: &str| -> OpResult<Vec<u32>> {
        p.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    Ok(c as u32)
                } else {
                    bail!("einsum label {c:?} is not a letter (in {s:?})")
                }
            })
            .collect()
    };
    let (h, t) = (letters(head)?, letters(tail)?);
    let explicit = h.len() + t.len();
    let ell = match (has_ell, rank) {
        (false, Some(r)) if r != explicit => {
            bail!("einsum term {s:?} has {explicit} labels for a rank-{r} operand")
        }
        (true, Some(r)) if r < explicit => {
            bail!("einsum term {s:?} has {explicit} labels for a rank-{r} operand")
        }
        (true, Some(r)) => r - explicit,
        (true, None) => width,
        (false, _) => 0,
    };
    if ell > width {
        bail!("einsum term {s:?} has more ellipsis axes than the operands");
    }
    labels.extend(h);
    labels.extend((width - ell..width).map(|i| ELLIPSIS + i as u32));
    labels.extend(t);
    Ok((labels, ell))
}

/// The diagonal of the two axes `i < j` (same size) of `t`, kept at axis `i`.
fn diagonal(t: &Tensor, i: usize, j: usize) -> OpResult<Tensor> {
    let d = dims_of(t);
    let (Some(n), Some(m)) = (d[i].as_known(), d[j].as_known()) else {
        bail!("einsum diagonal of symbolic axes in {}", t.shape());
    };
    if n != m {
        bail!("einsum repeats a label on axes of sizes {n} and {m}");
    }
    let r = t.rank();
    let mut perm: Vec<i64> = (0..r as i64)
        .filter(|&k| k != i as i64 && k != j as i64)
        .collect();
    perm.push(i as i64);
    perm.push(j as i64);
    let moved = t.permute(perm);
    let mut flat: Vec<Dim> = dims_of(&moved)[..r - 2].to_vec();
    flat.push(Dim::known(n * n));
    let diag = moved
        .reshape(Shape::new(flat))
        .slice(-1, 0, (n * n) as i64, n + 1);
    // back: the diagonal axis goes to position i
    let mut back: Vec<i64> = (0..r as i64 - 2).collect();
    back.insert(i, r as i64 - 2);
    Ok(diag.permute(back))
}

/// Sums the axes whose labels `keep` rejects.
fn sum_except(term: Term, keep: impl Fn(u32) -> bool) -> Term {
    let drop: Vec<i64> = (0..term.labels.len())
        .filter(|&i| !keep(term.labels[i]))
        .map(|i| i as i64)
        .collect();
    if drop.is_empty() {
        return term;
    }
    let labels = term.labels.iter().copied().filter(|&l| keep(l)).collect();
    Term {
        t: term.t.sum(drop, false),
        labels,
    }
}

fn size_of(term: &Term, l: u32) -> Dim {
    let i = term.labels.iter().position(|&x| x == l).unwrap_or(0);
    term.t.shape().dims()[i].clone()
}

/// `a` and `b` contracted over their shared labels not in `needed`, as one batched matmul.
fn contract(a: Term, b: Term, needed: &[u32]) -> OpResult<Term> {
    let a = sum_except(a, |l| b.labels.contains(&l) || needed.contains(&l));
    let b = sum_except(b, |l| a.labels.contains(&l) || needed.contains(&l));
    let shared: Vec<u32> = a
        .labels
        .iter()
        .copied()
        .filter(|l| b.labels.contains(l))
        .collect();
    let batch: Vec<u32> = shared
        .iter()
        .copied()
        .filter(|l| needed.contains(l))
        .collect();
    let inner: Vec<u32> = shared
        .iter()
        .copied()
        .filter(|l| !needed.contains(l))
        .collect();
    let left: Vec<u32> = a
        .labels
        .iter()
        .copied()
        .filter(|l| !shared.contains(l))
        .collect();
    let right: Vec<u32> = b
        .labels
        .iter()
        .copied()
        .filter(|l| !shared.contains(l))
        .collect();
    let mut sizes = std::collections::HashMap::new();
    for &l in &shared {
        let (da, db) = (size_of(&a, l), size_of(&b, l));
        let d = if da == db || db.is_one() {
            da
        } else if da.is_one() {
            db
        } else {
            bail!("einsum label sizes {da} and {db} differ");
        };
        sizes.insert(l, d);
    }
    let arrange = |term: &Term, order: Vec<&[u32]>| -> Tensor {
        let all: Vec<u32> = order.concat();
        let perm: Vec<i64> = all
            .iter()
            .map(|l| term.labels.iter().position(|x| x == l).unwrap_or(0) as i64)
            .collect();
        let t = term.t.permute(perm);
        let full: Vec<Dim> = all
            .iter()
            .map(|l| sizes.get(l).cloned().unwrap_or_else(|| size_of(term, *l)))
            .collect();
        let t = t.expand(Shape::new(full.clone()));
        let nb = order[0].len();
        let mid = order[1].len();
        let mut shape: Vec<Dim> = full[..nb].to_vec();
        shape.push(Dim::product(&full[nb..nb + mid]));
        shape.push(Dim::product(&full[nb + mid..]));
        t.reshape(Shape::new(shape))
    };
    let ta = arrange(&a, vec![&batch, &left, &inner]);
    let tb = arrange(&b, vec![&batch, &inner, &right]);
    let mut out: Vec<Dim> = batch.iter().map(|l| sizes[l].clone()).collect();
    out.extend(left.iter().map(|&l| size_of(&a, l)));
    out.extend(right.iter().map(|&l| size_of(&b, l)));
    let t = ta.matmul(&tb).reshape(Shape::new(out));
    Ok(Term {
        t,
        labels: [batch, left, right].concat(),
    })
}

pub fn einsum(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let eq: String = cx
        .attr_s("equation", "")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let ts = cx.tensors();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ts.len() || ts.is_empty() {
        bail!(
            "equation {eq:?} has {} operands, the node {}",
            terms.len(),
            ts.len()
        );
    }
    if let Some(t) = ts.iter().find(|t| t.dtype() != ts[0].dtype()) {
        bail!(
            "operands have different dtypes: {} and {}",
            ts[0].dtype(),
            t.dtype()
        );
    }
    let mut width = 0;
    for (s, t) in terms.iter().zip(&ts) {
        let (_, ell) = parse_term(s, Some(t.rank()), t.rank())?;
        width = width.max(ell);
    }
    let mut ops = Vec::with_capacity(ts.len());
    let mut given = Vec::with_capacity(ts.len());
    for (s, t) in terms.iter().zip(&ts) {
        let (labels, _) = parse_term(s, Some(t.rank()), width)?;
        given.push(labels.clone());
        let mut term = Term {
            t: t.clone(),
            labels,
        };
        while let Some((i, j)) = (0..term.labels.len()).find_map(|i| {
            (i + 1..term.labels.len())
                .find(|&j| term.labels[j] == term.labels[i])
                .map(|j| (i, j))
        }) {
            term.t = diagonal(&term.t, i, j)?;
            term.labels.remove(j);
        }
        ops.push(term);
    }
    let output: Vec<u32> = match rhs {
        Some(r) => parse_term(r, None, width)?.0,
        None => {
            let mut once: Vec<u32> = given
                .iter()
                .flatten()
                .copied()
                .filter(|&l| l < ELLIPSIS)
                .collect();
            once.sort_unstable();
            let single: Vec<u32> = once
                .iter()
                .copied()
                .filter(|l| once.iter().filter(|x| *x == l).count() == 1)
                .collect();
            (0..width as u32)
                .map(|i| ELLIPSIS + i)
                .chain(single)
                .collect()
        }
    };
    for (i, l) in output.iter().enumerate() {
        if output[..i].contains(l) {
            bail!("equation {eq:?} repeats an output label");
        }
        if !ops.iter().any(|o| o.labels.contains(l)) {
            bail!("equation {eq:?} has an output label no operand has");
        }
    }
    let mut rest = ops.into_iter();
    let Some(mut acc) = rest.next() else {
        bail!("einsum needs an operand");
    };
    let later: Vec<Term> = rest.collect();
    let needs: Vec<Vec<u32>> = (0..later.len())
        .map(|k| {
            let mut n = output.clone();
            n.extend(later[k + 1..].iter().flat_map(|o| o.labels.iter().copied()));
            n
        })
        .collect();
    for (b, needed) in later.into_iter().zip(needs) {
        acc = contract(acc, b, &needed)?;
    }
    let acc = sum_except(acc, |l| output.contains(&l));
    let perm: Vec<i64> = output
        .iter()
        .map(|l| acc.labels.iter().position(|x| x == l).unwrap_or(0) as i64)
        .collect();
    Ok(vec![Value::tensor(acc.t.permute(perm))])
}
