//! `kiln-bench device`: the `gpu` records of a run as fractions of the device's peak FP32
//! rate and memory bandwidth, looked up by adapter name in a small table of published
//! figures (a software adapter such as llvmpipe runs on the CPU, so its peak is the
//! machine limits the same run measured).

use crate::compare::limit_value;
use crate::record::{Record, Status, fmt_time, sig3, table};

/// Published peak of one device: FP32 FLOP/s without tensor cores, and DRAM bandwidth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    /// The device's marketing name.
    pub device: &'static str,
    /// Peak FP32 rate, TFLOP/s (non-tensor).
    pub tflops: f64,
    /// Peak memory bandwidth, TB/s.
    pub tbps: f64,
}

/// Adapter-name substrings (lowercase, most specific first) and the device's peak.
/// Figures are the vendors' data-sheet numbers for the named configuration.
const PEAKS: &[(&str, Peak)] = &[
    ("h200", peak("NVIDIA H200 SXM", 67.0, 4.8)),
    ("h100 pcie", peak("NVIDIA H100 PCIe", 51.0, 2.0)),
    ("h100 nvl", peak("NVIDIA H100 NVL", 60.0, 3.9)),
    ("h100", peak("NVIDIA H100 SXM", 67.0, 3.35)),
    ("gh200", peak("NVIDIA GH200", 67.0, 4.0)),
    ("a100-pcie-40gb", peak("NVIDIA A100 PCIe 40GB", 19.5, 1.555)),
    ("a100", peak("NVIDIA A100 80GB SXM", 19.5, 2.039)),
    ("l40s", peak("NVIDIA L40S", 91.6, 0.864)),
    ("l4", peak("NVIDIA L4", 30.3, 0.3)),
    ("a10g", peak("NVIDIA A10G", 31.2, 0.6)),
    ("a10", peak("NVIDIA A10", 31.2, 0.6)),
    ("v100", peak("NVIDIA V100 SXM2", 15.7, 0.9)),
    ("t4", peak("NVIDIA T4", 8.1, 0.32)),
    ("rtx 4090", peak("NVIDIA GeForce RTX 4090", 82.6, 1.008)),
    ("rtx 3090", peak("NVIDIA GeForce RTX 3090", 35.6, 0.936)),
    ("mi300x", peak("AMD Instinct MI300X", 81.7, 5.3)),
    ("mi250x", peak("AMD Instinct MI250X", 47.9, 3.2)),
    (
        "radeon rx 7900 xtx",
        peak("AMD Radeon RX 7900 XTX", 61.4, 0.96),
    ),
];

const fn peak(device: &'static str, tflops: f64, tbps: f64) -> Peak {
    Peak {
        device,
        tflops,
        tbps,
    }
}

/// The table's peak for an adapter name, matched case-insensitively by substring.
pub fn lookup(adapter: &str) -> Option<Peak> {
    let name = adapter.to_lowercase();
    PEAKS
        .iter()
        .find(|(pattern, _)| name.contains(pattern))
        .map(|(_, p)| *p)
}

/// The peak a run's `gpu` records are measured against, and where it came from.
fn device_peak(records: &[Record]) -> Option<(Peak, String)> {
    let gpu = records
        .iter()
        .find(|r| r.suite == "kiln" && r.backend == "gpu" && r.adapter.is_some())?;
    let name = gpu.adapter.clone().unwrap_or_default();
    if gpu.software_adapter == Some(true) {
        // A software adapter computes on this machine's CPU cores.
        let flops = limit_value(records, "fma")?;
        let bw = limit_value(records, "copy")?;
        let p = Peak {
            device: "this CPU (measured limits)",
            tflops: flops / 1000.0,
            tbps: bw / 1000.0,
        };
        return Some((
            p,
            format!("{name}: software adapter, peak = this run's machine limits"),
        ));
    }
    lookup(&name).map(|p| (p, format!("{name}: {} data sheet", p.device)))
}

/// The report: one row per measured `gpu` workload with its rates and their fractions of
/// the peak; an error when the run has no `gpu` record or the adapter is not in the table.
pub fn report(records: &[Record]) -> anyhow::Result<String> {
    let measured: Vec<&Record> = records
        .iter()
        .filter(|r| r.suite == "kiln" && r.backend == "gpu" && r.status == Status::Ok)
        .collect();
    if measured.is_empty() {
        anyhow::bail!("no measured gpu workload in this run (run kiln-bench --backend gpu)");
    }
    let (peak, source) = device_peak(records).ok_or_else(|| {
        let name = measured
            .iter()
            .find_map(|r| r.adapter.clone())
            .unwrap_or_else(|| "unknown adapter".into());
        anyhow::anyhow!(
            "no peak figures for {name}: add it to PEAKS in crates/bench/src/device.rs \
             (or, for a software adapter, measure the machine limits: drop --no-limits)"
        )
    })?;
    let pct = |v: Option<f64>, of: f64| v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v / of));
    let rows: Vec<Vec<String>> = measured
        .iter()
        .map(|r| {
            vec![
                r.workload.clone(),
                r.median_s.map_or("-".into(), fmt_time),
                r.gflops
                    .map_or("-".into(), |g| format!("{} GFLOP/s", sig3(g))),
                pct(r.gflops, peak.tflops * 1000.0),
                r.gbps.map_or("-".into(), |b| format!("{} GB/s", sig3(b))),
                pct(r.gbps, peak.tbps * 1000.0),
                r.limit.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = format!(
        "device peak: {} TFLOP/s FP32, {} TB/s ({source})\n",
        sig3(peak.tflops),
        sig3(peak.tbps)
    );
    Ok(head
        + &table(
            &[
                "workload",
                "median",
                "FP32 rate",
                "% peak",
                "bandwidth",
                "% peak",
                "bound by",
            ],
            &rows,
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu_record(workload: &str, adapter: &str, software: bool) -> Record {
        let mut r = Record::new("kiln", workload, "gpu", Status::Ok);
        r.median_s = Some(0.001);
        r.gflops = Some(670.0);
        r.gbps = Some(33.5);
        r.limit = Some("fma".into());
        r.adapter = Some(adapter.into());
        r.software_adapter = Some(software);
        r
    }

    #[test]
    fn adapters_match_the_most_specific_entry() {
        assert_eq!(lookup("NVIDIA H100 80GB HBM3").map(|p| p.tbps), Some(3.35));
        assert_eq!(lookup("NVIDIA H100 PCIe").map(|p| p.tflops), Some(51.0));
        assert_eq!(lookup("NVIDIA H200").map(|p| p.tbps), Some(4.8));
        assert_eq!(lookup("NVIDIA L40S").map(|p| p.device), Some("NVIDIA L40S"));
        assert_eq!(lookup("llvmpipe (LLVM 15.0.6, 256 bits)"), None);
    }

    #[test]
    fn fractions_of_the_table_peak_and_of_measured_cpu_limits() {
        let text =
            report(&[gpu_record("matmul_1024", "NVIDIA H100 80GB HBM3", false)]).expect("report");
        // 670 GFLOP/s of 67 TFLOP/s is 1%; 33.5 GB/s of 3.35 TB/s is 1%.
        assert!(text.contains("67.0 TFLOP/s"), "{text}");
        assert_eq!(text.matches("1.00%").count(), 2, "{text}");

        let mut fma = Record::new("machine", "limit_fma_peak", "machine", Status::Ok);
        fma.gflops = Some(335.0);
        let mut copy = Record::new("machine", "limit_copy_bw", "machine", Status::Ok);
        copy.gbps = Some(67.0);
        let soft = gpu_record(
            "softmax_4096x1024",
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            true,
        );
        let text = report(&[fma, copy, soft.clone()]).expect("report");
        assert!(
            text.contains("200.00%") && text.contains("50.00%"),
            "{text}"
        );
        // Without the limits, a software adapter has no peak: a clear error.
        let err = report(&[soft]).expect_err("no limits").to_string();
        assert!(
            err.contains("llvmpipe") && err.contains("--no-limits"),
            "{err}"
        );
        assert!(report(&[]).is_err());
    }
}
