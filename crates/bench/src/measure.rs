//! Timing: a probe run, warm-up, then timed repeats within a time budget, summarised as
//! median, 10th and 90th percentile.

use std::time::Instant;

/// How long and how often to time one (workload, backend) pair.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Exact number of timed repeats, if given (`--repeats`); otherwise as many as fit.
    pub repeats: Option<u32>,
    /// Seconds of timed repeats to aim for (`--max-seconds`).
    pub max_seconds: f64,
    /// Fewest timed repeats when the budget allows more than one.
    pub min_repeats: u32,
    /// Most timed repeats when `repeats` is not given.
    pub max_repeats: u32,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            repeats: None,
            max_seconds: 5.0,
            min_repeats: 5,
            max_repeats: 200,
        }
    }
}

/// Timing summary of one pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Timed samples, seconds, in the order taken.
    pub samples: Vec<f64>,
    /// Untimed warm-up iterations (the probe included).
    pub warmup: u32,
    /// Set when the run was cut short: why.
    pub capped: Option<String>,
    /// The first output's checksum from the probe run.
    pub check: Option<f64>,
}

/// The `q`-quantile (0..=1) of `sorted` by linear interpolation between closest ranks.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            let frac = pos - lo as f64;
            sorted[lo] + (sorted[hi] - sorted[lo]) * frac
        }
    }
}

/// `(median, p10, p90)` of unsorted samples.
pub fn summary(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    (quantile(&s, 0.5), quantile(&s, 0.1), quantile(&s, 0.9))
}

/// Times `run`. `run(true)` returns the checksum of its first output; `run(false)` only runs,
/// so the timed calls pay for no checksum (as in the peers' script). The first call is a probe
/// (warm-up, and the checksum); if it alone took more than half the budget, it is the only
/// sample and the result says so. Otherwise warm-up continues until 3 calls or 0.2 s, then
/// `budget.repeats` timed calls, or as many as fit in `budget.max_seconds` (at least
/// `min_repeats`, at most `max_repeats`).
pub fn time_it(
    budget: &Budget,
    mut run: impl FnMut(bool) -> anyhow::Result<f64>,
) -> anyhow::Result<Timing> {
    let t0 = Instant::now();
    let check = run(true)?;
    let probe = t0.elapsed().as_secs_f64();
    if probe > budget.max_seconds / 2.0 {
        return Ok(Timing {
            samples: vec![probe],
            warmup: 0,
            capped: Some(format!(
                "1 iteration only: the first run took {} (> half of --max-seconds {})",
                crate::record::fmt_time(probe),
                budget.max_seconds
            )),
            check: Some(check),
        });
    }
    let mut warmup = 1;
    let warm_start = Instant::now();
    let mut last = probe;
    while warmup < 3 && warm_start.elapsed().as_secs_f64() + last < 0.2_f64.max(2.0 * probe) {
        let t = Instant::now();
        run(false)?;
        last = t.elapsed().as_secs_f64();
        warmup += 1;
    }
    let per = last.max(1e-9);
    let (target, hard_cap) = match budget.repeats {
        Some(n) => (n.max(1), None),
        None => {
            let fit = (budget.max_seconds / per).floor() as u32;
            (
                fit.clamp(budget.min_repeats.max(1), budget.max_repeats.max(1)),
                Some(budget.max_seconds),
            )
        }
    };
    let mut samples = Vec::with_capacity(target as usize);
    let start = Instant::now();
    let mut capped = None;
    while (samples.len() as u32) < target {
        let t = Instant::now();
        run(false)?;
        samples.push(t.elapsed().as_secs_f64());
        let spent = start.elapsed().as_secs_f64();
        if let Some(cap) = hard_cap
            && spent > cap * 1.5
            && samples.len() >= 3
            && (samples.len() as u32) < target
        {
            capped = Some(format!("{} repeats: time budget spent", samples.len()));
            break;
        }
    }
    Ok(Timing {
        samples,
        warmup,
        capped,
        check: Some(check),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&s, 0.5), 3.0);
        assert_eq!(quantile(&s, 0.1), 1.4);
        assert_eq!(quantile(&s, 0.9), 4.6);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
        assert_eq!(summary(&[4.0, 1.0, 3.0, 2.0]), (2.5, 1.3, 3.7));
    }

    #[test]
    fn exact_repeats_are_honoured() {
        let mut calls = 0;
        let budget = Budget {
            repeats: Some(7),
            ..Budget::default()
        };
        let t = time_it(&budget, |_| {
            calls += 1;
            Ok(2.5)
        })
        .unwrap();
        assert_eq!(t.samples.len(), 7);
        assert_eq!(t.warmup, 3);
        assert_eq!(calls, 10);
        assert_eq!(t.check, Some(2.5));
        assert_eq!(t.capped, None);
    }

    #[test]
    fn a_slow_probe_is_the_only_sample() {
        let budget = Budget {
            max_seconds: 0.01,
            ..Budget::default()
        };
        let mut calls = 0;
        let t = time_it(&budget, |_| {
            calls += 1;
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(1.0)
        })
        .unwrap();
        assert_eq!(calls, 1);
        assert_eq!(t.samples.len(), 1);
        assert!(t.samples[0] >= 0.02);
        assert!(
            t.capped
                .as_deref()
                .is_some_and(|c| c.starts_with("1 iteration only"))
        );
    }

    #[test]
    fn errors_propagate() {
        let e = time_it(&Budget::default(), |_| anyhow::bail!("boom")).unwrap_err();
        assert_eq!(e.to_string(), "boom");
    }
}
