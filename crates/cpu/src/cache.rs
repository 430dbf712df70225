//! The process-wide compile cache: compiled loop jobs keyed by their structure (a
//! [`LoopJob`] hashes and compares the kernel with local buffer numbering, the buffers'
//! dtypes and sizes), so equal kernels of different programs, or of different layers of one
//! program, compile once per process.

use crate::codegen::{self, LoopInfo};
use crate::error::CpuError;
use crate::jit::{Jit, JitCode, KernelFn};
use crate::job::LoopJob;
use kiln_ir::{DType, Dim};
use kiln_kernel::KernelId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A compiled loop job and everything its runs need.
pub(crate) struct CompiledLoop {
    /// The entry point.
    pub f: KernelFn,
    /// Split axis, vector plan, cost.
    pub info: LoopInfo,
    /// The symbolic dims passed in the `dims` argument, in order.
    pub dims: Vec<Dim>,
    /// The dtype of each body node.
    pub dtypes: Vec<DType>,
    /// The job (for the pre-run checks).
    pub job: LoopJob,
    /// Owner of the code `f` points into.
    _code: Arc<JitCode>,
}

impl std::fmt::Debug for CompiledLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledLoop")
            .field("info", &self.info)
            .finish()
    }
}

/// Entries beyond which the cache is cleared (programs keep their own references).
const CAPACITY: usize = 4096;

type Map = HashMap<LoopJob, Arc<CompiledLoop>>;

fn cache() -> &'static Mutex<Map> {
    static CACHE: OnceLock<Mutex<Map>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Statistics of the compile cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Jobs found compiled.
    pub hits: u64,
    /// Jobs compiled.
    pub misses: u64,
}

static STATS: Mutex<CacheStats> = Mutex::new(CacheStats { hits: 0, misses: 0 });

/// Hits and misses of the process-wide compile cache so far.
pub fn cache_stats() -> CacheStats {
    *STATS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Returns the compiled form of every job, compiling the ones not in the cache in one JIT
/// module. `jobs[i].0` names the kernel for error messages.
pub(crate) fn get_or_compile(
    jobs: &[(KernelId, LoopJob)],
) -> Result<Vec<Arc<CompiledLoop>>, CpuError> {
    let mut map = cache().lock().unwrap_or_else(|p| p.into_inner());
    // The hits are taken now: making room for the new jobs below may clear the map.
    let mut found: Vec<Option<Arc<CompiledLoop>>> =
        jobs.iter().map(|(_, job)| map.get(job).cloned()).collect();
    let mut missing: Vec<usize> = Vec::new();
    for (i, (_, job)) in jobs.iter().enumerate() {
        if !map.contains_key(job) && !missing.iter().any(|&m| jobs[m].1 == *job) {
            missing.push(i);
        }
    }
    {
        let mut st = STATS.lock().unwrap_or_else(|p| p.into_inner());
        st.misses += missing.len() as u64;
        st.hits += (jobs.len() - missing.len()) as u64;
    }
    if !missing.is_empty() {
        let mut jit = Jit::new()?;
        let mut ids = Vec::new();
        let mut infos = Vec::new();
        for &m in &missing {
            let (kernel, job) = &jobs[m];
            let (id, info) =
                codegen::define_loop(&mut jit, job).map_err(|e| CpuError::Codegen {
                    kernel: *kernel,
                    message: e.to_string(),
                })?;
            let dtypes = codegen::node_dtypes(job).map_err(|e| CpuError::Codegen {
                kernel: *kernel,
                message: e.to_string(),
            })?;
            ids.push(id);
            infos.push((info, dtypes));
        }
        let (code, fns) = jit.finish(&ids)?;
        if map.len() + missing.len() > CAPACITY {
            map.clear();
        }
        for ((&m, f), (info, dtypes)) in missing.iter().zip(fns).zip(infos) {
            let job = jobs[m].1.clone();
            let compiled = CompiledLoop {
                f,
                info,
                dims: codegen::job_dims(&job),
                dtypes,
                job: job.clone(),
                _code: Arc::clone(&code),
            };
            let compiled = Arc::new(compiled);
            for (slot, (_, j)) in found.iter_mut().zip(jobs) {
                if slot.is_none() && *j == job {
                    *slot = Some(Arc::clone(&compiled));
                }
            }
            map.insert(job, compiled);
        }
    }
    found
        .into_iter()
        .zip(jobs)
        .map(|(f, (kernel, _))| {
            f.ok_or_else(|| CpuError::Codegen {
                kernel: *kernel,
                message: "internal: job missing from the cache".into(),
            })
        })
        .collect()
}
