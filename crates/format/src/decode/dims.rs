//! The walk over every dimension expression of a header, which bounds their total count
//! before any is parsed.

use super::op_names::ReadOpNames;
use crate::error::shown;
use crate::v1::*;

/// Calls `f` on every dimension expression of a header with a description of where it is;
/// `paths` are the region table's paths (`Table::paths`).
pub(super) fn for_each_dim<N: ReadOpNames>(
    h: &HeaderV1<N>,
    paths: &[String],
    f: &mut dyn FnMut(&str, &dyn Fn() -> String),
) {
    fn nodes<N: ReadOpNames>(
        list: &[NodeV1<N>],
        what: &str,
        f: &mut dyn FnMut(&str, &dyn Fn() -> String),
    ) {
        for n in list {
            let at = || format!("{what} node n{}", n.id);
            for d in n.shape.iter().chain(N::op_ref(&n.op).attr_dims()) {
                f(d, &at);
            }
        }
    }
    fn index(i: &IndexV1, at: &dyn Fn() -> String, f: &mut dyn FnMut(&str, &dyn Fn() -> String)) {
        for n in i {
            match n {
                IndexNodeV1::Dim(d) | IndexNodeV1::Div(_, d) | IndexNodeV1::Mod(_, d) => f(d, at),
                _ => {}
            }
        }
    }
    fn body<N: OpNaming>(
        b: &BodyV1<N>,
        at: &dyn Fn() -> String,
        f: &mut dyn FnMut(&str, &dyn Fn() -> String),
    ) {
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
    nodes(&h.graph.nodes, "graph", f);
    for (r, path) in N::region_list(&h.graph.regions).iter().zip(paths) {
        nodes(&r.nodes, &format!("graph region {path}"), f);
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
pub(super) fn dim_count<N: ReadOpNames>(h: &HeaderV1<N>, paths: &[String]) -> u64 {
    let mut n: u64 = 0;
    for_each_dim(h, paths, &mut |_, _| n += 1);
    n
}
