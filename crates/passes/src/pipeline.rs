//! The optimisation pipeline: [`optimize`], a plain list of pass calls with the verifier
//! between them.
//!
//! Reading [`optimize`] tells you the whole graph optimiser:
//!
//! ```text
//! infer -> (simplify -> cse -> control) repeated until none changes anything (bounded) -> dce
//! ```
//!
//! Every pass works inside regions too: simplify, CSE and DCE run on each body of a
//! control-flow op as a function of its own (recursively), and [`control`] optimises the
//! control-flow ops themselves (static control flow inlined, unused results, carries and
//! params pruned, loop-invariant code hoisted).
//!
//! The verifier runs after every pass in debug builds and whenever
//! [`PipelineOptions::verify`] is set. `KILN_DUMP` (read when the pipeline starts, unless
//! [`PipelineOptions::dump`] says otherwise) selects passes after which the function is
//! printed to stderr with typed node ids: `all`, or `after:` followed by comma-separated pass
//! names (`after:simplify`, `after:cse,dce`). Every pass run is timed; the timings are in the
//! returned [`PipelineReport`].

use crate::error::PassError;
pub use crate::func::{Func, PassStats};
use crate::{control, cse, dce, infer, simplify};
use kiln_ir::verify;
use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

/// Names of the passes in the pipeline, in the order they first run.
pub const PASS_NAMES: [&str; 5] = ["infer", "simplify", "cse", "control", "dce"];

/// After which passes the function is printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Dump {
    /// Whatever the `KILN_DUMP` environment variable says when the pipeline starts (nothing
    /// when it is unset; an unparsable value fails the pipeline with [`PassError::DumpSpec`]).
    #[default]
    Env,
    /// Print nothing.
    Off,
    /// Print after every pass.
    All,
    /// Print after the named passes.
    After(Vec<&'static str>),
}

impl Dump {
    /// Parses a dump spec: empty (off), `all`, or `after:` and comma-separated pass names.
    pub fn parse(spec: &str) -> Result<Dump, PassError> {
        let err = |message: String| PassError::DumpSpec {
            spec: spec.to_string(),
            message,
        };
        let s = spec.trim();
        if s.is_empty() {
            return Ok(Dump::Off);
        }
        if s == "all" {
            return Ok(Dump::All);
        }
        let Some(list) = s.strip_prefix("after:") else {
            return Err(err("expected `all` or `after:PASS[,PASS...]`".into()));
        };
        let mut passes = Vec::new();
        for name in list.split(',').map(str::trim) {
            match PASS_NAMES.iter().find(|p| **p == name) {
                Some(p) => passes.push(*p),
                None => {
                    return Err(err(format!(
                        "unknown pass `{name}` (passes: {})",
                        PASS_NAMES.join(", ")
                    )));
                }
            }
        }
        Ok(Dump::After(passes))
    }

    /// The spec in the `KILN_DUMP` environment variable (off when unset).
    pub fn from_env() -> Result<Dump, PassError> {
        match std::env::var("KILN_DUMP") {
            Ok(v) => Dump::parse(&v),
            Err(_) => Ok(Dump::Off),
        }
    }

    /// This spec with [`Dump::Env`] replaced by the environment's spec.
    pub fn resolve(&self) -> Result<Dump, PassError> {
        match self {
            Dump::Env => Dump::from_env(),
            other => Ok(other.clone()),
        }
    }

    /// True if the function is printed after `pass` ([`Dump::Env`] must be resolved first;
    /// unresolved it prints nothing).
    pub fn wants(&self, pass: &str) -> bool {
        match self {
            Dump::Env | Dump::Off => false,
            Dump::All => true,
            Dump::After(list) => list.contains(&pass),
        }
    }
}

/// Settings of [`optimize`].
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Run the verifier after every pass even in release builds (it always runs in debug
    /// builds).
    pub verify: bool,
    /// After which passes to print the function (by default as `KILN_DUMP` says).
    pub dump: Dump,
    /// Upper bound on simplify/CSE/control rounds.
    pub max_rounds: usize,
    /// Settings of the simplifier.
    pub simplify: simplify::SimplifyOptions,
    /// Settings of the control pass.
    pub control: control::ControlOptions,
}

impl Default for PipelineOptions {
    fn default() -> PipelineOptions {
        PipelineOptions {
            verify: false,
            dump: Dump::Env,
            max_rounds: 8,
            simplify: simplify::SimplifyOptions::default(),
            control: control::ControlOptions::default(),
        }
    }
}

/// One pass run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassRun {
    /// The pass.
    pub pass: &'static str,
    /// Simplify/CSE/control round it belongs to (0 for passes outside the loop).
    pub round: usize,
    /// Wall time of the pass itself (not the verifier or the dump).
    pub time: Duration,
    /// What it did.
    pub stats: PassStats,
}

/// What [`optimize`] did: every pass run in order, with its timing and statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipelineReport {
    /// Every pass run, in order.
    pub runs: Vec<PassRun>,
    /// Simplify/CSE/control rounds run.
    pub rounds: usize,
}

impl PipelineReport {
    /// Total time per pass, in pipeline order.
    pub fn time_by_pass(&self) -> Vec<(&'static str, Duration)> {
        let mut out: Vec<(&'static str, Duration)> = Vec::new();
        for r in &self.runs {
            match out.iter_mut().find(|(p, _)| *p == r.pass) {
                Some((_, t)) => *t += r.time,
                None => out.push((r.pass, r.time)),
            }
        }
        out
    }

    /// Statistics of every run of `pass`, summed.
    pub fn stats_of(&self, pass: &str) -> PassStats {
        let mut s = PassStats::default();
        for r in self.runs.iter().filter(|r| r.pass == pass) {
            s.absorb(&r.stats);
        }
        s
    }

    /// Time spent in passes.
    pub fn total_time(&self) -> Duration {
        self.runs.iter().map(|r| r.time).sum()
    }
}

impl fmt::Display for PipelineReport {
    /// One line per pass: total time, runs, nodes added and removed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (pass, time) in self.time_by_pass() {
            let runs = self.runs.iter().filter(|r| r.pass == pass).count();
            let s = self.stats_of(pass);
            writeln!(
                f,
                "{pass:<10} {:>10.3} ms  runs={runs} added={} removed={} rewritten={}",
                time.as_secs_f64() * 1e3,
                s.added,
                s.removed,
                s.rewritten
            )?;
        }
        Ok(())
    }
}

/// Optimises `func` in place, printing requested dumps to stderr. See the module docs.
pub fn optimize(func: &mut Func, opts: &PipelineOptions) -> Result<PipelineReport, PassError> {
    optimize_to(func, opts, &mut std::io::stderr())
}

/// [`optimize`], writing dumps to `sink`.
pub fn optimize_to(
    func: &mut Func,
    opts: &PipelineOptions,
    sink: &mut dyn Write,
) -> Result<PipelineReport, PassError> {
    let dump = opts.dump.resolve()?;
    let mut report = PipelineReport::default();
    let mut step = |name: &'static str,
                    round: usize,
                    func: &mut Func,
                    pass: &dyn Fn(&mut Func) -> Result<PassStats, PassError>|
     -> Result<bool, PassError> {
        let start = Instant::now();
        let stats = pass(func)?;
        let time = start.elapsed();
        let changed = stats.changed();
        report.runs.push(PassRun {
            pass: name,
            round,
            time,
            stats,
        });
        if dump.wants(name) {
            let header = if round == 0 {
                format!(";; after {name}")
            } else {
                format!(";; after {name} (round {round})")
            };
            // A failed write to the dump sink must not fail the compilation.
            let _ = write!(sink, "{header}\n{func}");
        }
        if cfg!(debug_assertions) || opts.verify {
            verify_func(func, &format!("after {name}"))?;
        }
        Ok(changed)
    };

    step("infer", 0, func, &|f| infer::infer(f))?;
    let mut rounds = 0;
    for round in 1..=opts.max_rounds {
        rounds = round;
        let simplified = step("simplify", round, func, &|f| {
            simplify::simplify(f, &opts.simplify)
        })?;
        let merged = step("cse", round, func, &|f| cse::cse(f))?;
        let restructured = step("control", round, func, &|f| {
            control::control_with(f, &opts.control)
        })?;
        if !simplified && !merged && !restructured {
            break;
        }
    }
    step("dce", 0, func, &|f| dce::dce(f))?;
    report.rounds = rounds;
    Ok(report)
}

/// Runs the verifier on the graph and checks the outputs; `stage` says when, for the error.
pub fn verify_func(func: &Func, stage: &str) -> Result<(), PassError> {
    verify(&func.graph).map_err(|errors| PassError::Verify {
        stage: stage.to_string(),
        errors,
    })?;
    func.check_outputs("verify")
}
