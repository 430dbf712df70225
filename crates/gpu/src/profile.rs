//! Counters of a GPU program: dispatches, workgroups and bytes per kernel, bytes moved
//! between host and device, and, under `KILN_GPU_PROFILE=1` on adapters with timestamp
//! queries, the GPU time of every kernel (each kernel then runs in its own compute pass of
//! the run's one command encoder, with a timestamp at its start and end).

use kiln_kernel::KernelId;
use kiln_wgsl::ShaderKind;
use std::fmt;

/// The environment variable that turns on per-kernel timing and the table printed to
/// stderr when a program is dropped.
pub const PROFILE_ENV: &str = "KILN_GPU_PROFILE";

/// True when `KILN_GPU_PROFILE=1`.
pub(crate) fn profile_env() -> bool {
    std::env::var(PROFILE_ENV).is_ok_and(|v| v == "1")
}

/// Bytes moved between host and device since the program was compiled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Input bytes uploaded by runs.
    pub input_bytes: u64,
    /// Output bytes read back by runs (only the requested outputs).
    pub output_bytes: u64,
    /// State bytes uploaded ([`crate::GpuProgram::set_state`]).
    pub state_upload_bytes: u64,
    /// State bytes read back ([`crate::GpuProgram::state`]).
    pub state_download_bytes: u64,
    /// Bytes of kernel parameters uploaded and error words read back by runs.
    pub control_bytes: u64,
}

impl Transfers {
    /// Every byte uploaded.
    pub fn uploaded(&self) -> u64 {
        self.input_bytes + self.state_upload_bytes
    }

    /// Every byte read back.
    pub fn downloaded(&self) -> u64 {
        self.output_bytes + self.state_download_bytes
    }
}

/// What one kernel did over every run of a program.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelProfile {
    /// The kernel.
    pub kernel: KernelId,
    /// The template it was lowered with.
    pub kind: ShaderKind,
    /// Times it was dispatched (a kernel with no points is not).
    pub dispatches: u64,
    /// Workgroups launched in all.
    pub workgroups: u64,
    /// Bytes of the storage buffers bound to it, summed over dispatches (an upper bound
    /// of the memory traffic it caused).
    pub bytes_bound: u64,
    /// GPU nanoseconds between the start and end timestamps of its passes, summed; `None`
    /// when it was never timed (profiling off or no timestamp queries).
    pub gpu_ns: Option<u64>,
}

/// A program's counters ([`crate::GpuProgram::profile`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GpuProfile {
    /// The device's description.
    pub device: String,
    /// Runs so far.
    pub runs: u64,
    /// One entry per kernel, in program order.
    pub kernels: Vec<KernelProfile>,
    /// Bytes moved between host and device.
    pub transfers: Transfers,
}

impl GpuProfile {
    /// A zeroed profile with one entry per kernel.
    pub(crate) fn new(device: String, kinds: impl Iterator<Item = (KernelId, ShaderKind)>) -> Self {
        GpuProfile {
            device,
            runs: 0,
            kernels: kinds
                .map(|(kernel, kind)| KernelProfile {
                    kernel,
                    kind,
                    dispatches: 0,
                    workgroups: 0,
                    bytes_bound: 0,
                    gpu_ns: None,
                })
                .collect(),
            transfers: Transfers::default(),
        }
    }

    /// Total GPU nanoseconds of the timed kernels (`None` if none was timed).
    pub fn gpu_ns(&self) -> Option<u64> {
        self.kernels
            .iter()
            .filter_map(|k| k.gpu_ns)
            .fold(None, |acc, t| Some(acc.unwrap_or(0) + t))
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.2} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// A table: one row per kernel (dispatches, workgroups, bytes bound, GPU time and share),
/// then the totals and the bytes moved between host and device.
impl fmt::Display for GpuProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "GPU profile on {}: {} runs", self.device, self.runs)?;
        writeln!(
            f,
            "{:<6} {:<15} {:>10} {:>12} {:>12} {:>12} {:>7}",
            "kernel", "kind", "dispatches", "workgroups", "bound", "gpu time", "share"
        )?;
        let total = self.gpu_ns();
        let mut dispatches = 0;
        for k in &self.kernels {
            dispatches += k.dispatches;
            let (time, share) = match (k.gpu_ns, total) {
                (Some(t), Some(all)) => (
                    format!("{:.3} ms", t as f64 / 1e6),
                    format!("{:.1}%", 100.0 * t as f64 / all.max(1) as f64),
                ),
                _ => ("-".to_string(), "-".to_string()),
            };
            writeln!(
                f,
                "{:<6} {:<15} {:>10} {:>12} {:>12} {:>12} {:>7}",
                k.kernel.to_string(),
                k.kind.name(),
                k.dispatches,
                k.workgroups,
                bytes(k.bytes_bound),
                time,
                share
            )?;
        }
        let time = total.map_or_else(
            || "no timestamp queries".to_string(),
            |t| format!("{:.3} ms of GPU time", t as f64 / 1e6),
        );
        writeln!(f, "total: {dispatches} dispatches, {time}")?;
        let t = &self.transfers;
        write!(
            f,
            "moved: inputs {} up, outputs {} down, state {} up and {} down, control {}",
            bytes(t.input_bytes),
            bytes(t.output_bytes),
            bytes(t.state_upload_bytes),
            bytes(t.state_download_bytes),
            bytes(t.control_bytes)
        )
    }
}

/// Timestamp queries of one run: two per timed dispatch.
pub(crate) struct Timer {
    pub(crate) queries: wgpu::QuerySet,
    pub(crate) resolve: wgpu::Buffer,
    /// Dispatches timed (the first ones of the run, at most half the query limit).
    pub(crate) timed: u32,
}

impl Timer {
    /// A timer for the first `dispatches` dispatches of a run (capped at the query limit).
    pub(crate) fn new(device: &wgpu::Device, dispatches: usize) -> Option<Timer> {
        let timed = u32::try_from(dispatches)
            .unwrap_or(u32::MAX)
            .min(wgpu::QUERY_SET_MAX_QUERIES / 2);
        if timed == 0 {
            return None;
        }
        let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kiln kernel timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * timed,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln timestamp resolve"),
            size: Timer::bytes_for(timed),
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(Timer {
            queries,
            resolve,
            timed,
        })
    }

    fn bytes_for(timed: u32) -> u64 {
        2 * u64::from(timed) * u64::from(wgpu::QUERY_SIZE)
    }

    /// Bytes of resolved timestamps.
    pub(crate) fn bytes(&self) -> u64 {
        Timer::bytes_for(self.timed)
    }

    /// The timestamp writes of dispatch `i`, if it is timed.
    pub(crate) fn writes(&self, i: usize) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let i = u32::try_from(i).ok().filter(|&i| i < self.timed)?;
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        })
    }
}

/// Nanoseconds of each timed dispatch from resolved timestamp pairs (`period`: ns per tick).
pub(crate) fn durations(resolved: &[u8], period: f32) -> Vec<u64> {
    let ticks: Vec<u64> = resolved
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    ticks
        .chunks_exact(2)
        .map(|p| (p[1].saturating_sub(p[0]) as f64 * f64::from(period)).round() as u64)
        .collect()
}
