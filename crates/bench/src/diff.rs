//! `kiln-bench diff`: two builds of kiln side by side. Each side is one or more kiln-bench
//! runs (JSON lines) made on the same machine, alternating the builds; per (workload,
//! backend, threads) the best median of each side is kept (the least disturbed sample on a
//! shared machine) and the table shows new / base, marking changes beyond the noise band.

use crate::record::{Record, Status, fmt_time};
use std::collections::BTreeMap;

/// One (workload, backend, threads) measured by either side.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffRow {
    /// Workload.
    pub workload: String,
    /// kiln backend.
    pub backend: String,
    /// Thread restriction of the run, if any.
    pub threads: Option<u32>,
    /// Best median of the base runs, seconds.
    pub base_s: Option<f64>,
    /// Best median of the new runs, seconds.
    pub new_s: Option<f64>,
    /// Whether the two sides' checksums differ by more than 1e-3 relative.
    pub check_differs: bool,
}

impl DiffRow {
    /// new / base, when both sides measured the row.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.new_s? / self.base_s?)
    }
}

type Key = (String, String, Option<u32>);

#[derive(Default)]
struct Side {
    best_s: Option<f64>,
    check: Option<f64>,
}

fn best(runs: &[Vec<Record>]) -> BTreeMap<Key, Side> {
    let mut out: BTreeMap<Key, Side> = BTreeMap::new();
    for r in runs.iter().flatten() {
        if r.suite != "kiln" || r.status != Status::Ok {
            continue;
        }
        let Some(m) = r.median_s else { continue };
        let side = out
            .entry((r.workload.clone(), r.backend.clone(), r.threads))
            .or_default();
        side.best_s = Some(side.best_s.map_or(m, |b| b.min(m)));
        if side.check.is_none() {
            side.check = r.check;
        }
    }
    out
}

fn checks_differ(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            let scale = a.abs().max(b.abs()).max(1e-30);
            (a - b).abs() / scale > 1e-3 || a.is_nan() != b.is_nan()
        }
        _ => false,
    }
}

/// Pairs the base runs' records with the new runs' records.
pub fn rows(base: &[Vec<Record>], new: &[Vec<Record>]) -> Vec<DiffRow> {
    let (b, n) = (best(base), best(new));
    let mut keys: Vec<&Key> = b.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let (bs, ns) = (b.get(k), n.get(k));
            DiffRow {
                workload: k.0.clone(),
                backend: k.1.clone(),
                threads: k.2,
                base_s: bs.and_then(|s| s.best_s),
                new_s: ns.and_then(|s| s.best_s),
                check_differs: checks_differ(bs.and_then(|s| s.check), ns.and_then(|s| s.check)),
            }
        })
        .collect()
}

/// The rows as a Markdown table (ready for docs/benchmarks.md). A ratio outside
/// `1 ± noise` is marked `slower` or `faster`.
pub fn render(rows: &[DiffRow], noise: f64) -> String {
    let mut out = String::from(
        "| workload | backend | base | new | new/base | |\n|---|---|---:|---:|---:|---|\n",
    );
    for r in rows {
        let backend = match r.threads {
            Some(t) => format!("{}/{t}t", r.backend),
            None => r.backend.clone(),
        };
        let time = |s: Option<f64>| s.map_or("-".to_string(), fmt_time);
        let (ratio, mark) = match r.ratio() {
            Some(x) if x > 1.0 + noise => (format!("{x:.2}"), "slower"),
            Some(x) if x < 1.0 - noise => (format!("{x:.2}"), "faster"),
            Some(x) => (format!("{x:.2}"), ""),
            None => ("-".to_string(), "only one side"),
        };
        let mark = if r.check_differs {
            format!("{mark} CHECKSUM DIFFERS").trim().to_string()
        } else {
            mark.to_string()
        };
        out.push_str(&format!(
            "| {} | {backend} | {} | {} | {ratio} | {mark} |\n",
            r.workload,
            time(r.base_s),
            time(r.new_s)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(workload: &str, backend: &str, median: f64, check: f64) -> Record {
        let mut r = Record::new("kiln", workload, backend, Status::Ok);
        r.median_s = Some(median);
        r.check = Some(check);
        r
    }

    #[test]
    fn keeps_the_best_median_of_each_side_and_marks_changes_beyond_noise() {
        let base = vec![
            vec![
                rec("mlp", "cpu", 2.0e-3, 1.0),
                rec("conv", "cpu", 1.0e-3, 5.0),
            ],
            vec![
                rec("mlp", "cpu", 1.0e-3, 1.0),
                rec("conv", "cpu", 1.2e-3, 5.0),
            ],
        ];
        let new = vec![vec![
            rec("mlp", "cpu", 1.02e-3, 1.0),
            rec("conv", "cpu", 1.5e-3, 5.1),
            rec("lstm", "cpu", 3.0e-3, 2.0),
        ]];
        let rows = rows(&base, &new);
        let by = |w: &str| rows.iter().find(|r| r.workload == w).unwrap();
        assert_eq!(by("mlp").base_s, Some(1.0e-3));
        assert!((by("mlp").ratio().unwrap() - 1.02).abs() < 1e-12);
        assert!((by("conv").ratio().unwrap() - 1.5).abs() < 1e-12);
        assert!(by("conv").check_differs);
        assert_eq!(by("lstm").base_s, None);
        let table = render(&rows, 0.05);
        let line = |w: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("| {w} |")))
                .unwrap()
                .to_string()
        };
        assert!(line("mlp").ends_with("| 1.02 |  |"), "{}", line("mlp"));
        assert!(line("conv").contains("| 1.50 | slower CHECKSUM DIFFERS |"));
        assert!(line("lstm").ends_with("| - | only one side |"));
    }

    #[test]
    fn skipped_and_failed_records_are_not_measurements() {
        let mut failed = rec("mlp", "gpu", 1.0, 0.0);
        failed.status = Status::Failed;
        let rows = rows(&[vec![failed]], &[vec![rec("mlp", "gpu", 1.0, 0.0)]]);
        assert_eq!(rows[0].base_s, None);
        assert_eq!(rows[0].ratio(), None);
    }
}
