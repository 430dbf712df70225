//! `kiln-bench compare`: kiln's records against the peers' — kiln time / best peer time,
//! and kiln as a fraction of the machine limit — as a table and an SVG bar chart.

use crate::record::{Record, Status, fmt_time, table};

/// One compared (workload, kiln backend).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Workload.
    pub workload: String,
    /// kiln backend.
    pub backend: String,
    /// kiln median seconds.
    pub kiln_s: f64,
    /// The fastest peer (`torch_eager/2t`) and its median seconds, if any ran.
    pub peer: Option<(String, f64)>,
    /// kiln time / best peer time.
    pub ratio: Option<f64>,
    /// Achieved rate / machine limit (all threads), when the workload has a limit.
    pub of_limit: Option<f64>,
    /// The best peer's rate / the same limit.
    pub peer_of_limit: Option<f64>,
    /// Whether kiln's checksum differs from the best peer's by more than 1e-3 relative.
    pub check_mismatch: bool,
}

/// The best (all-thread) limit value of `kind` (`fma` → GFLOP/s, `copy` → GB/s).
pub fn limit_value(machine: &[Record], kind: &str) -> Option<f64> {
    let name = match kind {
        "fma" => "limit_fma_peak",
        "copy" => "limit_copy_bw",
        _ => return None,
    };
    machine
        .iter()
        .filter(|r| r.workload == name && r.status == Status::Ok)
        .filter_map(|r| if kind == "fma" { r.gflops } else { r.gbps })
        .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
}

/// Pairs every measured kiln record with the fastest measured peer of the same workload.
pub fn rows(kiln: &[Record], peers: &[Record]) -> Vec<Row> {
    let machine: Vec<Record> = kiln
        .iter()
        .chain(peers)
        .filter(|r| r.suite == "machine")
        .cloned()
        .collect();
    kiln.iter()
        .filter(|r| {
            r.suite == "kiln"
                && r.status == Status::Ok
                && r.workload.starts_with(|c: char| c.is_ascii_lowercase())
        })
        .filter(|r| !r.workload.starts_with("limit_") && r.workload != crate::coldstart::NAME)
        .filter_map(|r| {
            let kiln_s = r.median_s?;
            let best = peers
                .iter()
                .filter(|p| {
                    p.suite == "peers" && p.workload == r.workload && p.status == Status::Ok
                })
                .filter_map(|p| p.median_s.map(|m| (p, m)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            let peer = best.map(|(p, m)| {
                let label = match p.threads {
                    Some(t) => format!("{}/{t}t", p.backend),
                    None => p.backend.clone(),
                };
                (label, m)
            });
            let frac = |rec: &Record| {
                let kind = r.limit.as_deref()?;
                let lim = limit_value(&machine, kind)?;
                let rate = if kind == "fma" {
                    rec.gflops?
                } else {
                    rec.gbps?
                };
                Some(rate / lim)
            };
            let of_limit = frac(r);
            let peer_of_limit = best.and_then(|(p, _)| frac(p));
            let check_mismatch = match (r.check, best.and_then(|(p, _)| p.check)) {
                (Some(a), Some(b)) => (a - b).abs() > 1e-3 * a.abs().max(b.abs()).max(1.0),
                _ => false,
            };
            Some(Row {
                workload: r.workload.clone(),
                backend: r.backend.clone(),
                kiln_s,
                ratio: peer.as_ref().map(|(_, p)| kiln_s / p),
                peer,
                of_limit,
                peer_of_limit,
                check_mismatch,
            })
        })
        .collect()
}

/// The ratio table as text.
pub fn render(rows: &[Row]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.workload.clone(),
                r.backend.clone(),
                fmt_time(r.kiln_s),
                r.peer.as_ref().map_or("-".into(), |(n, _)| n.clone()),
                r.peer.as_ref().map_or("-".into(), |(_, s)| fmt_time(*s)),
                r.ratio.map_or("-".into(), |x| format!("{x:.2}x")),
                r.of_limit
                    .map_or("-".into(), |f| format!("{:.2}%", f * 100.0)),
                r.peer_of_limit
                    .map_or("-".into(), |f| format!("{:.2}%", f * 100.0)),
                if r.check_mismatch {
                    "CHECKSUM DIFFERS".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    table(
        &[
            "workload",
            "kiln backend",
            "kiln",
            "best peer",
            "peer",
            "kiln/peer",
            "kiln of limit",
            "peer of limit",
            "",
        ],
        &body,
    )
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart of kiln/peer ratios on a log10 axis, 1x marked.
pub fn svg(rows: &[Row]) -> String {
    let bars: Vec<(&Row, f64)> = rows
        .iter()
        .filter_map(|r| r.ratio.map(|x| (r, x)))
        .filter(|(_, x)| *x > 0.0)
        .collect();
    let (label_w, plot_w, bar_h, top) = (300.0, 560.0, 22.0, 50.0);
    let height = top + bar_h * bars.len().max(1) as f64 + 50.0;
    let width = label_w + plot_w + 90.0;
    let lo = bars
        .iter()
        .map(|b| b.1.log10().floor())
        .fold(0.0f64, f64::min);
    let hi = bars
        .iter()
        .map(|b| b.1.log10().ceil())
        .fold(1.0f64, f64::max);
    let x_of = |v: f64| label_w + (v.log10() - lo) / (hi - lo) * plot_w;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">kiln time / best peer time (log scale, lower is better)</text>\n",
        width / 2.0
    );
    let axis_y = top + bar_h * bars.len().max(1) as f64;
    let mut e = lo as i32;
    while e <= hi as i32 {
        let v = 10f64.powi(e);
        let x = x_of(v);
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{axis_y}\" stroke=\"#ddd\"/>\n<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}x</text>\n",
            axis_y + 16.0,
            if e >= 0 { format!("{}", v as u64) } else { format!("{v}") }
        ));
        e += 1;
    }
    for (i, (r, ratio)) in bars.iter().enumerate() {
        let y = top + bar_h * i as f64;
        let x0 = x_of(10f64.powf(lo));
        let x1 = x_of(*ratio);
        let color = if *ratio <= 1.0 { "#2a9d8f" } else { "#e76f51" };
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{ratio:.2}x</text>\n",
            label_w - 8.0,
            y + bar_h * 0.7,
            esc(&format!("{} [{}]", r.workload, r.backend)),
            y + 3.0,
            (x1 - x0).max(1.0),
            bar_h - 6.0,
            x1.max(x0) + 4.0,
            y + bar_h * 0.7,
        ));
    }
    let one = x_of(1.0);
    s.push_str(&format!(
        "<line x1=\"{one:.1}\" y1=\"{:.1}\" x2=\"{one:.1}\" y2=\"{axis_y}\" stroke=\"black\" stroke-dasharray=\"4 3\"/>\n</svg>\n",
        top - 6.0
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        suite: &str,
        workload: &str,
        backend: &str,
        median: f64,
        threads: Option<u32>,
    ) -> Record {
        let mut r = Record::new(suite, workload, backend, Status::Ok);
        r.median_s = Some(median);
        r.threads = threads;
        r
    }

    #[test]
    fn ratio_is_against_the_fastest_peer_and_limit_uses_all_threads() {
        let mut k = rec("kiln", "matmul_1024", "kernel", 0.2, None);
        k.limit = Some("fma".into());
        k.gflops = Some(10.0);
        k.check = Some(100.0);
        let mut lim1 = Record::new("machine", "limit_fma_peak", "machine", Status::Ok);
        lim1.gflops = Some(50.0);
        let mut lim2 = lim1.clone();
        lim2.gflops = Some(100.0);
        let kiln = vec![
            k,
            lim1,
            lim2,
            rec("kiln", "ew_chain_16m", "interp", 1.0, None),
        ];
        let mut fast = rec("peers", "matmul_1024", "torch_eager", 0.05, Some(2));
        fast.check = Some(100.5);
        fast.gflops = Some(40.0);
        let peers = vec![rec("peers", "matmul_1024", "jax_jit", 0.1, Some(1)), fast];
        let rows = rows(&kiln, &peers);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].peer, Some(("torch_eager/2t".into(), 0.05)));
        assert_eq!(rows[0].ratio, Some(4.0));
        assert_eq!(rows[0].of_limit, Some(0.1));
        assert_eq!(rows[0].peer_of_limit, Some(0.4));
        assert!(rows[0].check_mismatch);
        assert_eq!(rows[1].ratio, None);
        let text = render(&rows);
        assert!(text.contains("torch_eager/2t"), "{text}");
        assert!(text.contains("4.00x"), "{text}");
        assert!(text.contains("10.00%"), "{text}");
        assert!(text.contains("40.00%"), "{text}");
    }

    #[test]
    fn svg_has_one_bar_per_ratio_and_escapes_labels() {
        let row = |w: &str, ratio: f64| Row {
            workload: w.into(),
            backend: "kernel".into(),
            kiln_s: 1.0,
            peer: Some(("p".into(), 1.0 / ratio)),
            ratio: Some(ratio),
            of_limit: None,
            peer_of_limit: None,
            check_mismatch: false,
        };
        let s = svg(&[row("a<b", 0.5), row("c", 250.0)]);
        assert!(s.starts_with("<svg"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<rect x=").count(), 2);
        assert!(s.contains("a&lt;b [kernel]"));
        assert!(s.contains("250.00x"));
        // Axis from 0.1x to 1000x.
        assert!(s.contains(">0.1x<") && s.contains(">1000x<"), "{s}");
    }
}
