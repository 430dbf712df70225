//! Loop jobs: a loop kernel renumbered to local buffer and symbol slots, the unit of code
//! generation and of the compile cache. Two kernels that differ only in which program
//! buffers they touch share one job, so repeated layers compile once.

use kiln_ir::{DType, Dim};
use kiln_kernel::{BufferId, Expr, IndexExpr, LoopKernel};
use std::collections::{BTreeSet, HashMap};

/// A buffer as a compiled kernel sees it: its dtype and its (symbolic) element count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LocalBuffer {
    /// Element type.
    pub dtype: DType,
    /// Element count; checked loads clamp against it.
    pub size: Dim,
}

/// A loop kernel whose buffer ids are local (`b0` is the job's first buffer) together with
/// the buffers' dtypes and sizes and the symbols, in the order the compiled function
/// receives their values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LoopJob {
    /// The kernel, with local buffer ids.
    pub kernel: LoopKernel,
    /// Local buffers.
    pub buffers: Vec<LocalBuffer>,
    /// Symbols used, sorted by name.
    pub symbols: Vec<String>,
}

/// Where the buffers of a [`LoopJob`] come from: `slots[k]` is the caller's id for local
/// buffer `k` (a program buffer id, or an id past the program's buffers for scratch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Localized {
    /// The job.
    pub job: LoopJob,
    /// Caller ids of the local buffers.
    pub slots: Vec<BufferId>,
}

fn map_ids(kernel: &mut LoopKernel, map: &mut dyn FnMut(BufferId) -> BufferId) {
    for e in &mut kernel.body.values {
        if let Expr::Load(l) = e {
            l.buffer = map(l.buffer);
        }
    }
    for s in &mut kernel.body.stores {
        s.buffer = map(s.buffer);
    }
}

fn index_symbols(e: &IndexExpr, out: &mut BTreeSet<String>) {
    for d in e.dims() {
        out.extend(d.symbols().iter().map(|s| s.to_string()));
    }
}

/// Every symbol a kernel mentions (extents, index dims, buffer sizes), sorted.
fn symbols_of(kernel: &LoopKernel, buffers: &[LocalBuffer]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for d in kernel.domain.iter().chain(&kernel.reduce) {
        out.extend(d.symbols().iter().map(|s| s.to_string()));
    }
    for b in buffers {
        out.extend(b.size.symbols().iter().map(|s| s.to_string()));
    }
    for ix in kernel.body.values.iter().flat_map(Expr::indices) {
        index_symbols(ix, &mut out);
    }
    for s in &kernel.body.stores {
        index_symbols(&s.index, &mut out);
    }
    out.into_iter().collect()
}

/// Renumbers the buffers of `kernel` densely in order of first use; `describe` gives the
/// dtype and size of a caller id. Returns `None` if `describe` does not know an id.
pub(crate) fn localize(
    kernel: &LoopKernel,
    describe: &dyn Fn(BufferId) -> Option<LocalBuffer>,
) -> Option<Localized> {
    let mut local = kernel.clone();
    let mut slots: Vec<BufferId> = Vec::new();
    let mut index: HashMap<BufferId, BufferId> = HashMap::new();
    map_ids(&mut local, &mut |id| {
        *index.entry(id).or_insert_with(|| {
            slots.push(id);
            BufferId(u32::try_from(slots.len() - 1).unwrap_or(u32::MAX))
        })
    });
    let buffers = slots
        .iter()
        .map(|&id| describe(id))
        .collect::<Option<Vec<_>>>()?;
    let symbols = symbols_of(&local, &buffers);
    Some(Localized {
        job: LoopJob {
            kernel: local,
            buffers,
            symbols,
        },
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_kernel::Body;

    #[test]
    fn renumbering_makes_equal_jobs() {
        let make = |src: u32, dst: u32| {
            let mut body = Body::new();
            let v = body.load(BufferId(src), IndexExpr::var(0));
            body.store(BufferId(dst), IndexExpr::var(0), v);
            LoopKernel {
                domain: vec![Dim::sym("N")],
                reduce: vec![],
                body,
            }
        };
        let describe = |_: BufferId| {
            Some(LocalBuffer {
                dtype: DType::F32,
                size: Dim::sym("N"),
            })
        };
        let a = localize(&make(3, 7), &describe).unwrap();
        let b = localize(&make(1, 2), &describe).unwrap();
        assert_eq!(a.job, b.job);
        assert_eq!(a.slots, vec![BufferId(3), BufferId(7)]);
        assert_eq!(b.slots, vec![BufferId(1), BufferId(2)]);
        assert_eq!(a.job.symbols, vec!["N".to_string()]);
    }
}
