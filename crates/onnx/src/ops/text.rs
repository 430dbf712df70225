//! Text features: TfIdfVectorizer's n-gram counts over integer token ids, as comparisons of
//! shifted token windows with the pool's n-grams (the pool is known at import time).

use super::{NodeCx, OpResult, bail};
use crate::limits::MAX_FOLDED_ELEMENTS;
use crate::value::Value;
use kiln::Tensor;
use kiln_ir::{Array, DType};

/// Most token-window comparisons (n-gram length × skip distances, summed) one node builds.
const MAX_WINDOWS: u64 = 4096;

pub fn tfidf_vectorizer(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    if !x.dtype().is_int() {
        bail!(
            "the input must hold integer token ids (pool_int64s), got {}",
            x.dtype()
        );
    }
    if cx.has_attr("pool_strings") {
        bail!("pool_strings is not supported: kiln has no string tensors");
    }
    let pool = cx.attr_ints("pool_int64s").unwrap_or_default();
    let starts = cx.attr_ints("ngram_counts").unwrap_or_default();
    let out_idx = cx.attr_ints("ngram_indexes").unwrap_or_default();
    let weights = cx.attr_floats("weights").unwrap_or_default();
    let min_n = cx.attr_i("min_gram_length", 1);
    let max_n = cx.attr_i("max_gram_length", 1);
    let max_skip = cx.attr_i("max_skip_count", 0);
    let mode = cx.attr_s("mode", "TF");
    if !matches!(mode.as_str(), "TF" | "IDF" | "TFIDF") {
        bail!("mode {mode:?} is not one of TF, IDF, TFIDF");
    }
    if min_n < 1 || max_n < min_n || max_skip < 0 {
        bail!("gram lengths {min_n}..={max_n} and max_skip_count {max_skip} are invalid");
    }
    let Some(&top) = out_idx.iter().max() else {
        bail!("ngram_indexes must not be empty");
    };
    if out_idx.iter().any(|&i| i < 0) || top as u64 >= MAX_FOLDED_ELEMENTS {
        bail!("ngram_indexes must lie in 0..{MAX_FOLDED_ELEMENTS}");
    }
    let out = top as usize + 1;
    if !weights.is_empty() && weights.len() < out {
        bail!("weights has {} entries for {out} outputs", weights.len());
    }
    // The pool's n-grams by length: (length, first n-gram id, flat tokens).
    let mut groups: Vec<(usize, usize, &[i64])> = Vec::new();
    let mut id = 0usize;
    for (i, &s) in starts.iter().enumerate() {
        let e = starts.get(i + 1).copied().unwrap_or(pool.len() as i64);
        if s < 0 || e < s || e as usize > pool.len() {
            bail!(
                "ngram_counts {starts:?} do not split a pool of {}",
                pool.len()
            );
        }
        let n = i + 1;
        let count = (e - s) as usize / n;
        if (min_n..=max_n).contains(&(n as i64)) && count > 0 {
            groups.push((n, id, &pool[s as usize..s as usize + count * n]));
        }
        id += count;
    }
    if id != out_idx.len() {
        bail!(
            "ngram_indexes has {} entries for {id} pool n-grams",
            out_idx.len()
        );
    }
    let one_d = x.rank() == 1;
    let x = match x.rank() {
        1 => x.unsqueeze(0),
        2 => x,
        r => bail!("the input must be [C] or [N, C], got rank {r}"),
    };
    let Some(c) = x.shape().dims()[1].as_known() else {
        bail!("the sequence length of {} is symbolic", x.shape());
    };
    let g = cx.g;
    let rows = x.shape().dims()[0].clone();
    let mut y: Option<Tensor> = None;
    let mut windows = 0u64;
    for (n, first, tokens) in groups {
        let p = tokens.len() / n;
        let distances = if n == 1 {
            1
        } else {
            (max_skip as u64 + 1).min(c)
        };
        windows = windows.saturating_add(distances.saturating_mul(n as u64));
        if windows > MAX_WINDOWS {
            bail!("more than {MAX_WINDOWS} n-gram token comparisons (max_skip_count {max_skip})");
        }
        let mut counts: Option<Tensor> = None;
        for d in 1..=distances {
            let span = (n as u64 - 1).saturating_mul(d);
            if span >= c {
                break;
            }
            let len = (c - span) as i64;
            let mut hit: Option<Tensor> = None;
            for j in 0..n {
                let col: Vec<f64> = (0..p).map(|k| tokens[k * n + j] as f64).collect();
                let want = g.constant(Array::from_f64_cast(x.dtype(), &[1, 1, p], &col));
                let at = (j as u64 * d) as i64;
                let eq = x.slice(1, at, at + len, 1).unsqueeze(-1).eq(&want);
                hit = Some(match hit {
                    Some(h) => h.logical_and(&eq),
                    None => eq,
                });
            }
            if let Some(h) = hit {
                let c = h.cast(DType::F32).sum(1, false);
                counts = Some(match counts {
                    Some(s) => s.add(&c),
                    None => c,
                });
            }
        }
        let Some(counts) = counts else { continue };
        let mut place = vec![0.0; p * out];
        for k in 0..p {
            place[k * out + out_idx[first + k] as usize] = 1.0;
        }
        let place = g.constant(Array::from_f64_cast(DType::F32, &[p, out], &place));
        let part = counts.matmul(&place);
        y = Some(match y {
            Some(v) => v.add(&part),
            None => part,
        });
    }
    let y =
        y.unwrap_or_else(|| g.zeros(kiln_ir::Shape::new([rows, (out as u64).into()]), DType::F32));
    let w = || {
        let w: Vec<f64> = weights[..out].iter().map(|&v| f64::from(v)).collect();
        g.constant(Array::from_f64_cast(DType::F32, &[out], &w))
    };
    let y = match (mode.as_str(), weights.is_empty()) {
        ("TF", _) | ("TFIDF", true) => y,
        ("IDF", true) => y.gt(0.0).cast(DType::F32),
        ("IDF", false) => y.gt(0.0).where_(w(), 0.0),
        _ => y.mul(w()),
    };
    let y = if one_d { y.squeeze(0) } else { y };
    Ok(vec![Value::tensor(y)])
}
