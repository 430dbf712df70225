//! kiln-bench: kiln's benchmark suite. Runs named workloads on every backend in
//! `kiln::Backend::ALL`, measures this machine's copy bandwidth and FMA peak, times the
//! `kiln` runner's cold start, and compares with the Python peers (`kiln-bench compare`).
//! Prints one JSON line per (workload, backend) and a human table. `kiln-bench
//! compile-scaling` times compiling a `sin` chain and its gradient at depths 1k to 64k;
//! `kiln-bench diff` puts two builds' runs side by side.

mod coldstart;
mod compare;
mod device;
mod diff;
mod limits;
mod measure;
mod record;
mod scaling;
mod transformer;
mod workloads;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kiln::Backend;
use measure::{Budget, summary, time_it};
use record::{Record, Status, human_table};
use std::io::Write;
use std::path::PathBuf;
use workloads::Workload;

/// kiln's benchmark suite.
#[derive(Parser, Debug)]
#[command(name = "kiln-bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Compare kiln's JSON lines with the peers': kiln time / best peer time, fraction of
    /// the machine limit; writes an SVG bar chart.
    Compare {
        /// kiln-bench output (JSON lines).
        kiln: PathBuf,
        /// peers/bench_peers.py output (JSON lines).
        peers: PathBuf,
        /// Where to write the chart.
        #[arg(long, default_value = "target/bench/ratios.svg")]
        svg: PathBuf,
    },
    /// Two builds side by side: the best median of each side's runs per (workload,
    /// backend), new / base, as a Markdown table (`just bench-vs REV` makes the runs).
    Diff {
        /// A run of the base build (JSON lines; repeat for alternating rounds).
        #[arg(long = "base", value_name = "JSONL", required = true)]
        base: Vec<PathBuf>,
        /// A run of the new build (JSON lines; repeatable).
        #[arg(long = "new", value_name = "JSONL", required = true)]
        new: Vec<PathBuf>,
        /// Relative change treated as noise (not marked faster or slower).
        #[arg(long, default_value_t = 0.05)]
        noise: f64,
    },
    /// The `gpu` records of a run as fractions of the device's peak FP32 rate and memory
    /// bandwidth (adapter looked up by name; a software adapter's peak is the run's
    /// measured machine limits). `just bench-gpu` runs the suite on `gpu` and this.
    Device {
        /// kiln-bench output (JSON lines) with `gpu` records.
        run: PathBuf,
    },
    /// Compile time of `sum(sin^depth(x))` and of its gradient at growing depths (one JSON
    /// line per point), with the fitted slope of log(seconds) over log(depth).
    CompileScaling {
        /// Depths to compile (default 1000 2000 4000 ... 64000).
        #[arg(long = "depth", value_name = "N")]
        depths: Vec<usize>,
        /// Backend to compile for.
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// Also write the JSON lines to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Run only this workload (repeatable; `--list` names them); all by default.
    #[arg(long = "workload", value_name = "NAME")]
    workloads: Vec<String>,
    /// Run only on this backend (repeatable); every backend in kiln::Backend::ALL by default.
    #[arg(long = "backend", value_name = "NAME")]
    backends: Vec<String>,
    /// Exact number of timed repeats (default: as many as fit in --max-seconds, 5..=200).
    #[arg(long)]
    repeats: Option<u32>,
    /// Print only the JSON lines, no table.
    #[arg(long)]
    json_only: bool,
    /// Time budget per (workload, backend) in seconds; when the first iteration alone takes
    /// more than half of it, that iteration is the only sample (and the output says so).
    #[arg(long, default_value_t = 5.0)]
    max_seconds: f64,
    /// Also write the JSON lines to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip measuring the machine limits.
    #[arg(long)]
    no_limits: bool,
    /// The `kiln` binary whose cold start is timed (default: target/release/kiln).
    #[arg(long)]
    kiln_bin: Option<PathBuf>,
    /// List the workloads and exit.
    #[arg(long)]
    list: bool,
    /// Seconds after which one (workload, backend) run is abandoned (each runs in its own
    /// child process, so a pathological backend cannot stall the suite).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Time `Executable::run_borrowed` (outputs stay in buffers the executable keeps, no
    /// allocation per run) instead of `run` (fresh output arrays, like the peers' calls).
    #[arg(long)]
    borrowed: bool,
    /// Internal: measure exactly one --workload on one --backend in this process.
    #[arg(long, hide = true)]
    child: bool,
}

fn main() -> anyhow::Result<()> {
    // SAFETY: the first statement of `main`, before any thread exists.
    unsafe { kiln::quiet_gpu_start_up() };
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Compare { kiln, peers, svg }) => run_compare(&kiln, &peers, &svg),
        Some(Cmd::Diff { base, new, noise }) => run_diff(&base, &new, noise),
        Some(Cmd::Device { run }) => {
            let text = device::report(&read_records(&run)?)?;
            print!("{text}");
            Ok(())
        }
        Some(Cmd::CompileScaling {
            depths,
            backend,
            out,
        }) => run_scaling(&depths, &backend, out.as_deref()),
        None => run_suite(&cli.run),
    }
}

fn read_records(p: &std::path::Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    record::parse_jsonl(&text).with_context(|| format!("parsing {}", p.display()))
}

fn run_diff(base: &[PathBuf], new: &[PathBuf], noise: f64) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&noise) {
        bail!("--noise must be in [0, 1), got {noise}");
    }
    let read_all = |paths: &[PathBuf]| -> anyhow::Result<Vec<Vec<Record>>> {
        paths.iter().map(|p| read_records(p)).collect()
    };
    let rows = diff::rows(&read_all(base)?, &read_all(new)?);
    if rows.is_empty() {
        bail!("no measured kiln workloads in the given runs");
    }
    print!("{}", diff::render(&rows, noise));
    Ok(())
}

fn run_compare(
    kiln: &std::path::Path,
    peers: &std::path::Path,
    svg: &std::path::Path,
) -> anyhow::Result<()> {
    let (k, p) = (read_records(kiln)?, read_records(peers)?);
    let rows = compare::rows(&k, &p);
    if rows.is_empty() {
        bail!("no measured kiln workloads in {}", kiln.display());
    }
    print!("{}", compare::render(&rows));
    if let Some(dir) = svg.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(svg, compare::svg(&rows))
        .with_context(|| format!("writing {}", svg.display()))?;
    println!("chart: {}", svg.display());
    Ok(())
}

fn run_scaling(
    depths: &[usize],
    backend: &str,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let b = backends(&[backend.to_string()])?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no backend"))?;
    let depths = if depths.is_empty() {
        scaling::DEPTHS.to_vec()
    } else {
        depths.to_vec()
    };
    let file = match out {
        Some(p) => {
            if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(d)?;
            }
            Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => None,
    };
    let mut sink = Sink {
        out: file,
        records: Vec::new(),
    };
    eprintln!("kiln-bench compile-scaling: {} on {b}", cpu_model());
    // One untimed compile first, so the first point does not pay for warming the process
    // (allocator, code caches) alone.
    let _ = scaling::measure(100, true, b);
    let mut table = Vec::new();
    for &d in &depths {
        let mut row = (d, None, None);
        for grad in [false, true] {
            let r = scaling::measure(d, grad, b);
            let s = (r.status == Status::Ok).then_some(r.compile_s).flatten();
            if grad {
                row.2 = s;
            } else {
                row.1 = s;
            }
            sink.emit(r)?;
        }
        table.push(row);
    }
    let fit = |grad: bool| {
        let pts: Vec<(usize, f64)> = table
            .iter()
            .filter_map(|&(d, f, g)| Some((d, if grad { g } else { f }?)))
            .collect();
        scaling::slope(&pts)
    };
    let cell = |s: Option<f64>| s.map_or_else(|| "failed".to_string(), |s| format!("{s:.3}"));
    println!();
    println!("| depth | forward compile s | gradient compile s |");
    println!("|---:|---:|---:|");
    for (d, f, g) in &table {
        println!("| {d} | {} | {} |", cell(*f), cell(*g));
    }
    let slope = |s: Option<f64>| s.map_or_else(|| "n/a".to_string(), |s| format!("{s:.2}"));
    println!(
        "| slope of log(s)/log(depth) | {} | {} |",
        slope(fit(false)),
        slope(fit(true))
    );
    Ok(())
}

/// Prints (and appends to `out`) one record as a JSON line, then keeps it for the table.
struct Sink {
    out: Option<std::fs::File>,
    records: Vec<Record>,
}

impl Sink {
    fn emit(&mut self, r: Record) -> anyhow::Result<()> {
        let line = r.to_json();
        println!("{line}");
        if let Some(f) = &mut self.out {
            writeln!(f, "{line}")?;
        }
        self.records.push(r);
        Ok(())
    }
}

fn backends(names: &[String]) -> anyhow::Result<Vec<Backend>> {
    if names.is_empty() {
        return Ok(Backend::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            n.parse::<Backend>().map_err(|_| {
                let known: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
                anyhow::anyhow!(
                    "unknown backend `{n}`; this build has: {}",
                    known.join(", ")
                )
            })
        })
        .collect()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn run_suite(args: &RunArgs) -> anyhow::Result<()> {
    let cold = args.workloads.is_empty() || args.workloads.iter().any(|w| w == coldstart::NAME);
    let named: Vec<String> = args
        .workloads
        .iter()
        .filter(|w| *w != coldstart::NAME)
        .cloned()
        .collect();
    let work = if named.is_empty() && !args.workloads.is_empty() {
        Vec::new()
    } else {
        workloads::select(&named)?
    };
    if args.list {
        for w in &work {
            println!("{:<22} {}", w.name, w.about);
        }
        println!(
            "{:<22} whole-process `kiln run` of a saved SimpleNN",
            coldstart::NAME
        );
        return Ok(());
    }
    let backs = backends(&args.backends)?;
    let budget = Budget {
        repeats: args.repeats,
        max_seconds: args.max_seconds,
        ..Budget::default()
    };
    if args.child {
        let (Some(w), Some(b), 1, 1) = (work.first(), backs.first(), work.len(), backs.len())
        else {
            bail!("--child takes exactly one --workload and one --backend");
        };
        println!("{}", bench_one(w, *b, &budget, args.borrowed).to_json());
        return Ok(());
    }
    let out = match &args.out {
        Some(p) => {
            if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(d)?;
            }
            Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => None,
    };
    let mut sink = Sink {
        out,
        records: Vec::new(),
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if !args.json_only {
        let names: Vec<&str> = backs.iter().map(|b| b.name()).collect();
        eprintln!(
            "kiln-bench: {} ({threads} threads); backends: {}; train steps use {}",
            cpu_model(),
            names.join(", "),
            workloads::UPDATE_RULE
        );
    }
    if !args.no_limits {
        for r in machine_limits(threads) {
            sink.emit(r)?;
        }
    }
    let usable = if backs.is_empty() || work.is_empty() {
        Vec::new()
    } else {
        Backend::available()
    };
    let gpu_device = (usable.contains(&Backend::Gpu) && backs.contains(&Backend::Gpu))
        .then(kiln_gpu::test_device)
        .flatten();
    let gpu_adapter = gpu_device
        .as_ref()
        .map(|d| format!("adapter: {}", d.describe()));
    if let Some(a) = gpu_adapter.as_ref().filter(|_| !args.json_only) {
        eprintln!("gpu {a}");
    }
    for w in &work {
        for &b in &backs {
            let r = if usable.contains(&b) {
                let mut r = in_child(w, b, args);
                if let (Backend::Gpu, Some(a), Some(d)) = (b, &gpu_adapter, &gpu_device) {
                    r.note = Some(match r.note.take() {
                        Some(n) => format!("{n}; {a}"),
                        None => a.clone(),
                    });
                    r.adapter = Some(d.name().to_string());
                    r.software_adapter = Some(d.is_software());
                }
                r
            } else {
                let mut r = Record::new("kiln", w.name, b.name(), Status::Skipped).with_note(
                    "not usable on this machine (kiln::Backend::available: no GPU adapter)",
                );
                r.flops = Some(w.flops);
                r.bytes = Some(w.bytes);
                r.limit = w.limit.map(str::to_string);
                r
            };
            if !args.json_only && r.status != Status::Ok {
                eprintln!(
                    "{} on {}: {}: {}",
                    w.name,
                    b,
                    if r.status == Status::Failed {
                        "failed"
                    } else {
                        "skipped"
                    },
                    r.note.as_deref().unwrap_or("")
                );
            }
            sink.emit(r)?;
        }
    }
    if cold && !args.child {
        let bin = args
            .kiln_bin
            .clone()
            .unwrap_or_else(coldstart::default_binary);
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
        sink.emit(coldstart::measure(&bin, &dir, 10))?;
    }
    if !args.json_only {
        println!();
        print!("{}", human_table(&sink.records));
    }
    Ok(())
}

/// Copy bandwidth and FMA peak, on 1 and on all threads. The FMA peak is measured with
/// AVX2+FMA and, where the CPU has it, AVX-512F. Each is the best of 10 short passes, so
/// passes that ran while other processes held the CPU do not count.
fn machine_limits(threads: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let mut counts = vec![1];
    if threads > 1 {
        counts.push(threads);
    }
    for &t in &counts {
        let l = limits::copy_bandwidth(t, limits::COPY_ELEMS, 10);
        let mut r = Record::new("machine", "limit_copy_bw", "stream_copy", Status::Ok);
        r.threads = Some(t as u32);
        r.gbps = Some(l.value);
        r.note = Some(l.how);
        out.push(r);
    }
    let best = limits::fma_isa();
    let mut isas = vec![best];
    if best == "avx512f" {
        isas.push("avx2+fma");
    }
    for isa in isas {
        for &t in &counts {
            let l = limits::fma_peak(isa, t, 20_000_000, 10);
            let mut r = Record::new("machine", "limit_fma_peak", isa, Status::Ok);
            r.threads = Some(t as u32);
            r.gflops = Some(l.value);
            r.note = Some(l.how);
            out.push(r);
        }
    }
    out
}

/// Runs [`bench_one`] in a child process (this binary with `--child`), killing it after
/// `--timeout` seconds.
fn in_child(w: &Workload, b: Backend, args: &RunArgs) -> Record {
    let fail = |status, note: String| {
        let mut r = Record::new("kiln", w.name, b.name(), status).with_note(note);
        r.flops = Some(w.flops);
        r.bytes = Some(w.bytes);
        r.limit = w.limit.map(str::to_string);
        r
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(Status::Failed, format!("locating kiln-bench: {e}")),
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--child",
        "--no-limits",
        "--json-only",
        "--workload",
        w.name,
        "--backend",
        b.name(),
    ])
    .arg("--max-seconds")
    .arg(args.max_seconds.to_string())
    .stdout(std::process::Stdio::piped());
    if let Some(n) = args.repeats {
        cmd.arg("--repeats").arg(n.to_string());
    }
    if args.borrowed {
        cmd.arg("--borrowed");
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(Status::Failed, format!("spawning child: {e}")),
    };
    let start = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed().as_secs_f64() > args.timeout => {
                // Best effort: the child is abandoned either way.
                let _ = child.kill();
                let _ = child.wait();
                return fail(
                    Status::Skipped,
                    format!(
                        "no result within --timeout {} s (compile plus the first iterations took longer)",
                        args.timeout
                    ),
                );
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return fail(Status::Failed, format!("waiting for child: {e}")),
        }
    }
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        use std::io::Read;
        if let Err(e) = out.read_to_string(&mut text) {
            return fail(Status::Failed, format!("reading child output: {e}"));
        }
    }
    match record::parse_jsonl(&text).ok().and_then(|mut v| v.pop()) {
        Some(r) => r,
        None => fail(
            Status::Failed,
            "child exited without a result (crashed?)".into(),
        ),
    }
}

/// Compiles and times one workload on one backend, or says why not.
fn bench_one(w: &Workload, b: Backend, budget: &Budget, borrowed: bool) -> Record {
    let base = |status| {
        let mut r = Record::new("kiln", w.name, b.name(), status);
        r.flops = Some(w.flops);
        r.bytes = Some(w.bytes);
        r.limit = w.limit.map(str::to_string);
        r
    };
    let mut ready = match workloads::prepare(w, b) {
        Ok(r) => r,
        Err(e) => return base(Status::Failed).with_note(format!("compile: {e:#}")),
    };
    let timing = match time_it(budget, |check| ready.run(check, borrowed)) {
        Ok(t) => t,
        Err(e) => {
            let mut r = base(Status::Failed).with_note(format!("run: {e:#}"));
            r.compile_s = Some(ready.compile_s);
            return r;
        }
    };
    let (median, p10, p90) = summary(&timing.samples);
    let mut r = base(Status::Ok);
    r.median_s = Some(median);
    r.p10_s = Some(p10);
    r.p90_s = Some(p90);
    r.repeats = Some(timing.samples.len() as u32);
    r.warmup = Some(timing.warmup);
    r.build_s = Some(ready.build_s);
    r.compile_s = Some(ready.compile_s);
    r.gflops = Some(w.flops / median / 1e9);
    r.gbps = Some(w.bytes / median / 1e9);
    r.check = timing.check;
    let mut notes = Vec::new();
    if borrowed {
        notes.push("run_borrowed".to_string());
    }
    if w.train {
        notes.push(workloads::UPDATE_RULE.to_string());
    }
    if let Some(c) = timing.capped {
        notes.push(c);
    }
    if !notes.is_empty() {
        r.note = Some(notes.join("; "));
    }
    r
}
