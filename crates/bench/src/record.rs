//! The result record shared by kiln-bench and the Python peers script: one JSON object per
//! line per (workload, backend, threads), plus the human-readable table printer.

use serde::{Deserialize, Serialize};

/// Outcome of one (workload, backend) measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured.
    Ok,
    /// Not run, with the reason in `note`.
    Skipped,
    /// Tried and failed, with the error in `note`.
    Failed,
}

/// One JSON line. Times are seconds per iteration; `None` fields are left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `kiln`, `peers` or `machine`.
    pub suite: String,
    /// Workload name (`matmul_1024`), or a limit (`limit_copy_bw`, `limit_fma_peak`).
    pub workload: String,
    /// kiln backend (`interp`, `kernel`, ...) or peer (`torch_eager`, `jax_jit`, ...).
    pub backend: String,
    /// Threads the run was restricted to, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Outcome.
    pub status: Status,
    /// Why it was skipped or failed, or how it was measured (capped repeats, update rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Median seconds per iteration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_s: Option<f64>,
    /// 10th percentile seconds per iteration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p10_s: Option<f64>,
    /// 90th percentile seconds per iteration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_s: Option<f64>,
    /// Timed iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<u32>,
    /// Untimed warm-up iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<u32>,
    /// Building the graph (model, loss, gradients, optimiser) in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_s: Option<f64>,
    /// Graph to ready executable (kiln), or first call / session creation (peers), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile_s: Option<f64>,
    /// Floating-point operations per iteration (multiply-add = 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops: Option<f64>,
    /// Minimum DRAM bytes moved per iteration (inputs read once, outputs written once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<f64>,
    /// Achieved GFLOP/s at the median (or the measured peak, for `limit_fma_peak`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    /// Achieved GB/s at the median (or the measured bandwidth, for `limit_copy_bw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
    /// Which machine limit bounds this workload: `fma` or `copy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// Sum of the first output's elements (for train steps: the loss of the first step),
    /// to check that every framework computed the same thing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<f64>,
    /// The adapter a `gpu` record ran on (its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// Whether that adapter is a software one running on the CPU (llvmpipe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_adapter: Option<bool>,
}

impl Record {
    /// A record with only the identifying fields and `status` set.
    pub fn new(suite: &str, workload: &str, backend: &str, status: Status) -> Record {
        Record {
            suite: suite.to_string(),
            workload: workload.to_string(),
            backend: backend.to_string(),
            threads: None,
            status,
            note: None,
            median_s: None,
            p10_s: None,
            p90_s: None,
            repeats: None,
            warmup: None,
            build_s: None,
            compile_s: None,
            flops: None,
            bytes: None,
            gflops: None,
            gbps: None,
            limit: None,
            check: None,
            adapter: None,
            software_adapter: None,
        }
    }

    /// A skipped or failed record with its reason.
    pub fn with_note(mut self, note: impl Into<String>) -> Record {
        self.note = Some(note.into());
        self
    }

    /// One JSON line (no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Reads JSON lines, skipping blank lines; errors name the line.
pub fn parse_jsonl(text: &str) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || !line.starts_with('{') {
            continue;
        }
        let r: Record = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("line {}: {e}: {line}", i + 1))?;
        out.push(r);
    }
    Ok(out)
}

/// A duration in seconds with a unit that keeps three significant digits.
pub fn fmt_time(s: f64) -> String {
    if !s.is_finite() {
        return "-".into();
    }
    let (v, unit) = if s >= 1.0 {
        (s, "s")
    } else if s >= 1e-3 {
        (s * 1e3, "ms")
    } else {
        (s * 1e6, "us")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

/// A positive number with three significant digits (`1234`, `12.3`, `0.0123`).
pub fn sig3(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

/// Renders rows as a plain-text table with a header rule; columns are padded to fit.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate().take(cols) {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = width[i].saturating_sub(c.chars().count());
            s.push_str(c);
            if i + 1 < cols {
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(&line(
        width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// The human table of a suite's records.
pub fn human_table(records: &[Record]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let t = |v: Option<f64>| v.map_or("-".to_string(), fmt_time);
            let rate = match (r.gflops, r.gbps) {
                (Some(g), _) if r.limit.as_deref() != Some("copy") => {
                    format!("{} GFLOP/s", sig3(g))
                }
                (_, Some(b)) => format!("{} GB/s", sig3(b)),
                (Some(g), None) => format!("{} GFLOP/s", sig3(g)),
                (None, None) => "-".into(),
            };
            let status = match r.status {
                Status::Ok => r.note.clone().unwrap_or_default(),
                Status::Skipped => format!("skipped: {}", r.note.as_deref().unwrap_or("")),
                Status::Failed => format!("FAILED: {}", r.note.as_deref().unwrap_or("")),
            };
            vec![
                r.workload.clone(),
                match r.threads {
                    Some(n) => format!("{}/{n}t", r.backend),
                    None => r.backend.clone(),
                },
                t(r.median_s),
                t(r.p10_s),
                t(r.p90_s),
                r.repeats.map_or("-".into(), |n| n.to_string()),
                t(r.compile_s),
                rate,
                status,
            ]
        })
        .collect();
    table(
        &[
            "workload", "backend", "median", "p10", "p90", "n", "compile", "rate", "notes",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_json_lines_and_drop_empty_fields() {
        let mut r = Record::new("kiln", "matmul_1024", "kernel", Status::Ok);
        r.median_s = Some(0.25);
        r.threads = Some(2);
        let line = r.to_json();
        assert_eq!(
            line,
            r#"{"suite":"kiln","workload":"matmul_1024","backend":"kernel","threads":2,"status":"ok","median_s":0.25}"#
        );
        let text = format!(
            "not json\n\n{line}\n{}\n",
            Record::new("peers", "x", "jax_jit", Status::Skipped)
                .with_note("why")
                .to_json()
        );
        let back = parse_jsonl(&text).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], r);
        assert_eq!(back[1].status, Status::Skipped);
        assert_eq!(back[1].note.as_deref(), Some("why"));
    }

    #[test]
    fn bad_json_line_is_reported_with_its_number() {
        let err = parse_jsonl("{\"suite\":1}\n").unwrap_err().to_string();
        assert!(err.starts_with("line 1:"), "{err}");
    }

    #[test]
    fn times_keep_three_significant_digits() {
        assert_eq!(fmt_time(1.5), "1.50 s");
        assert_eq!(fmt_time(0.0123), "12.3 ms");
        assert_eq!(fmt_time(0.000_456_7), "457 us");
        assert_eq!(fmt_time(f64::NAN), "-");
        assert_eq!(sig3(1234.4), "1234");
        assert_eq!(sig3(12.345), "12.3");
        assert_eq!(sig3(0.012345), "0.0123");
    }

    #[test]
    fn table_pads_columns() {
        let t = table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxyz  1\n");
    }
}
