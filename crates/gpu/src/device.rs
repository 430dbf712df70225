//! The wgpu device: adapter selection (discrete first, `KILN_GPU_ADAPTER` override), the
//! device opened with the adapter's own limits, the code generator's [`Target`] for it, and
//! a pipeline cache keyed by shader hash (backed by the driver's cache on disk, see
//! [`crate::disk_cache`]).

use crate::disk_cache;
use crate::error::GpuError;
use kiln_wgsl::Target;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

/// The environment variable that picks an adapter by (case-insensitive) name substring.
pub const ADAPTER_ENV: &str = "KILN_GPU_ADAPTER";

/// The environment variable that, set to `1`, makes shaders use only what every adapter
/// allows ([`Target::portable`]: no subgroups, small GEMM tiles), for comparisons.
pub const PORTABLE_ENV: &str = "KILN_GPU_PORTABLE";

/// Runs a future to completion on the current thread (wgpu's native futures resolve
/// promptly; this parks between polls).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => thread::park(),
        }
    }
}

/// A compiled compute pipeline with the bind group layout it was created with.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// Description of a shader's group-0 bindings: for each binding after the params uniform,
/// whether it is read-only.
pub(crate) type LayoutKey = Vec<bool>;

/// Pipelines by the hash of their source and layout; each bucket keeps the source to rule
/// out collisions.
type PipelineCache = HashMap<u64, Vec<(String, LayoutKey, Arc<Pipeline>)>>;

/// An open GPU device and its caches. Share it with `Arc`; programs compiled on it reuse
/// its pipelines.
#[derive(Debug)]
pub struct GpuDevice {
    info: wgpu::AdapterInfo,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    pipelines: Mutex<PipelineCache>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Nanoseconds per timestamp tick, when the device was opened with timestamp queries.
    timestamp_period: Option<f32>,
    /// What shaders generated for this device may use.
    target: Target,
    /// The driver's pipeline cache and the file it is saved to, when the adapter has one
    /// and a cache folder is configured.
    disk: Option<(wgpu::PipelineCache, PathBuf)>,
    /// True when pipelines were created since the disk cache was last saved.
    disk_dirty: AtomicBool,
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

impl GpuDevice {
    /// Opens a device on the best adapter: the one whose name contains `KILN_GPU_ADAPTER`
    /// (case-insensitive) if that is set, else a discrete GPU, then integrated, virtual,
    /// CPU (software, e.g. lavapipe). The device gets the adapter's full limits.
    pub fn open() -> Result<GpuDevice, GpuError> {
        let wanted = std::env::var(ADAPTER_ENV).ok().filter(|s| !s.is_empty());
        GpuDevice::open_matching(wanted.as_deref())
    }

    /// Like [`GpuDevice::open`] with an explicit adapter name substring instead of the
    /// environment variable.
    pub fn open_matching(wanted: Option<&str>) -> Result<GpuDevice, GpuError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::all();
        desc.flags = wgpu::InstanceFlags::empty();
        let instance = wgpu::Instance::new(desc);
        let mut adapters = block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        if adapters.is_empty() {
            return Err(GpuError::NoAdapter);
        }
        adapters.sort_by_key(|a| {
            let info = a.get_info();
            (rank(info.device_type), info.name)
        });
        let adapter = match wanted {
            Some(w) => {
                let lw = w.to_lowercase();
                let found = adapters
                    .iter()
                    .position(|a| a.get_info().name.to_lowercase().contains(&lw));
                match found {
                    Some(i) => adapters.swap_remove(i),
                    None => {
                        return Err(GpuError::AdapterNotMatched {
                            wanted: w.to_string(),
                            available: adapters.iter().map(|a| a.get_info().name).collect(),
                        });
                    }
                }
            }
            None => adapters.swap_remove(0),
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Optional features, each used only where the adapter has it: timestamp queries
        // feed KILN_GPU_PROFILE's per-kernel times, subgroups the row reductions, the
        // pipeline cache the compiled pipelines kept on disk.
        let features = adapter.features()
            & (wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::SUBGROUP
                | wgpu::Features::PIPELINE_CACHE);
        let (device, queue) = block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kiln"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::default(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::RequestDevice {
            adapter: info.name.clone(),
            message: e.to_string(),
        })?;
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let timestamp_period = features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| queue.get_timestamp_period());
        let target = if std::env::var(PORTABLE_ENV).is_ok_and(|v| v == "1") {
            Target::portable()
        } else {
            Target::for_adapter(
                features
                    .contains(wgpu::Features::SUBGROUP)
                    .then_some((info.subgroup_min_size, info.subgroup_max_size)),
                limits.max_compute_invocations_per_workgroup,
                limits
                    .max_compute_workgroup_size_x
                    .min(limits.max_compute_workgroup_size_y),
                limits.max_compute_workgroup_storage_size,
            )
        };
        let disk = features
            .contains(wgpu::Features::PIPELINE_CACHE)
            .then(disk_cache::folder)
            .flatten()
            .zip(wgpu::util::pipeline_cache_key(&info))
            .map(|(dir, key)| {
                let path = dir.join(format!("{key}.bin"));
                let data = disk_cache::read(&path);
                // SAFETY: `data` is the payload of a file this module wrote from
                // `PipelineCache::get_data` (its length and CRC-32 match what was written),
                // which is what wgpu requires; wgpu and the driver check the payload's
                // adapter, driver version and format again and start empty on a mismatch
                // (`fallback`).
                let cache = unsafe {
                    device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                        label: Some("kiln pipelines"),
                        data: data.as_deref(),
                        fallback: true,
                    })
                };
                (cache, path)
            });
        Ok(GpuDevice {
            info,
            device,
            queue,
            limits,
            pipelines: Mutex::new(HashMap::new()),
            uncaptured,
            timestamp_period,
            target,
            disk,
            disk_dirty: AtomicBool::new(false),
        })
    }

    /// What shaders generated for this device may use: subgroups and the large GEMM tile
    /// where the adapter has them, unless `KILN_GPU_PORTABLE=1`.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The file the driver's pipeline cache is saved to, if there is one (Vulkan adapters
    /// with a cache folder; see [`crate::disk_cache`]).
    pub fn pipeline_cache_file(&self) -> Option<&std::path::Path> {
        self.disk.as_ref().map(|(_, p)| p.as_path())
    }

    /// Saves the driver's pipeline cache to disk if pipelines were created since the last
    /// save. The cache only saves work, so a failure is reported under `KILN_LOG=gpu` and
    /// otherwise ignored.
    pub fn save_pipeline_cache(&self) {
        let Some((cache, path)) = &self.disk else {
            return;
        };
        if !self.disk_dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Some(data) = cache.get_data()
            && let Err(e) = disk_cache::write(path, &data)
            && std::env::var("KILN_LOG").is_ok_and(|v| v.contains("gpu"))
        {
            eprintln!(
                "kiln: could not save the pipeline cache {}: {e}",
                path.display()
            );
        }
    }

    /// The process-wide device, opened on first use with [`GpuDevice::open`]. The result
    /// (including "no adapter") is remembered.
    pub fn shared() -> Result<Arc<GpuDevice>, GpuError> {
        static SHARED: OnceLock<Result<Arc<GpuDevice>, GpuError>> = OnceLock::new();
        SHARED
            .get_or_init(|| GpuDevice::open().map(Arc::new))
            .clone()
    }

    /// The adapter's name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// True for a software adapter that runs on the CPU (llvmpipe / lavapipe).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// A one-line description: name, device type, backend, driver, and what the shaders
    /// use (subgroups and their size, the large GEMM tile).
    pub fn describe(&self) -> String {
        let subgroups = if self.target.subgroups {
            format!("subgroups of {}", self.info.subgroup_max_size)
        } else {
            "no subgroups".to_string()
        };
        format!(
            "{} ({:?}, {:?}, driver {} {}; {subgroups}, GEMM tiles up to {})",
            self.info.name,
            self.info.device_type,
            self.info.backend,
            self.info.driver,
            self.info.driver_info,
            self.target.gemm.outputs()
        )
    }

    /// Nanoseconds per GPU timestamp tick, or `None` when the adapter has no timestamp
    /// queries (profiles then report dispatch counts and bytes without times).
    pub fn timestamp_period(&self) -> Option<f32> {
        self.timestamp_period
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Number of distinct pipelines compiled so far.
    pub fn cached_pipelines(&self) -> usize {
        self.pipelines
            .lock()
            .map_or(0, |m| m.values().map(Vec::len).sum())
    }

    /// Takes the wgpu errors that no error scope captured (reported by the next run).
    pub(crate) fn take_uncaptured(&self) -> Vec<String> {
        self.uncaptured
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// The pipeline for `source` with group-0 layout `layout`, compiled on first use and
    /// cached by the hash of the source. A shader or layout the driver rejects comes back
    /// as the validation error wgpu raised.
    pub(crate) fn pipeline(
        &self,
        source: &str,
        layout: &LayoutKey,
    ) -> Result<Arc<Pipeline>, wgpu::Error> {
        let mut h = DefaultHasher::new();
        source.hash(&mut h);
        layout.hash(&mut h);
        let key = h.finish();
        if let Ok(map) = self.pipelines.lock()
            && let Some(hit) = map
                .get(&key)
                .and_then(|v| v.iter().find(|(s, l, _)| s == source && l == layout))
        {
            return Ok(hit.2.clone());
        }
        let pipeline = Arc::new(self.create_pipeline(source, layout)?);
        if let Ok(mut map) = self.pipelines.lock() {
            map.entry(key).or_default().push((
                source.to_string(),
                layout.clone(),
                pipeline.clone(),
            ));
        }
        Ok(pipeline)
    }

    fn create_pipeline(&self, source: &str, layout: &LayoutKey) -> Result<Pipeline, wgpu::Error> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("kiln kernel"),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        // The params uniform (binding 0) has a dynamic offset: a run packs every dispatch's
        // params into one buffer.
        let buffer = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: binding == 0,
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries = vec![buffer(0, wgpu::BufferBindingType::Uniform)];
        for (i, &read_only) in layout.iter().enumerate() {
            let binding = u32::try_from(i + 1).unwrap_or(u32::MAX);
            entries.push(buffer(
                binding,
                wgpu::BufferBindingType::Storage { read_only },
            ));
        }
        let bgl = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("kiln kernel bindings"),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("kiln kernel layout"),
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("kiln kernel"),
                layout: Some(&pl),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: self.disk.as_ref().map(|(c, _)| c),
            });
        self.disk_dirty.store(true, Ordering::Release);
        if let Some(e) = block_on(scope.pop()) {
            return Err(e);
        }
        Ok(Pipeline {
            pipeline,
            layout: bgl,
        })
    }
}

/// Reads back `(buffer, bytes)` pairs after submitting `encoder`; returns the bytes of each.
pub(crate) fn submit_and_read(
    device: &GpuDevice,
    encoder: wgpu::CommandEncoder,
    reads: &[(&wgpu::Buffer, u64)],
) -> Result<Vec<Vec<u8>>, GpuError> {
    device.queue.submit([encoder.finish()]);
    let mut waits = Vec::with_capacity(reads.len());
    for (buffer, bytes) in reads {
        let (tx, rx) = std::sync::mpsc::channel();
        buffer
            .slice(0..*bytes)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        waits.push(rx);
    }
    device
        .device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| GpuError::Device(e.to_string()))?;
    // Every buffer that mapped is unmapped again, even after an error, so the pool can
    // reuse it.
    let mut out = Vec::with_capacity(reads.len());
    let mut first_error = None;
    for ((buffer, bytes), rx) in reads.iter().zip(waits) {
        let mapped = rx
            .recv()
            .map_err(|e| GpuError::Device(e.to_string()))
            .and_then(|r| r.map_err(|e| GpuError::Device(e.to_string())));
        if let Err(e) = mapped {
            first_error.get_or_insert(e);
            continue;
        }
        let data = buffer
            .slice(0..*bytes)
            .get_mapped_range()
            .map(|view| view.to_vec())
            .map_err(|e| GpuError::Device(e.to_string()));
        buffer.unmap();
        match data {
            Ok(d) => out.push(d),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
