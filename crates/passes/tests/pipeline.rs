//! Tests of the pipeline: pass order, fixpoint rounds, timing report, dump specs and dumps.

use kiln_ir::{Array, BinaryOp, DType, Graph, Node, NodeId, Op, Shape, UnaryOp};
use kiln_passes::error::PassError;
use kiln_passes::pipeline::{
    Dump, Func, PASS_NAMES, PipelineOptions, optimize, optimize_to, verify_func,
};

/// `neg(neg(x * 1)) + neg(neg(x * 1))` with the halves built separately.
fn sample() -> (Func, NodeId) {
    let mut g = Graph::new();
    let x = g
        .add(
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: Shape::known(&[3]),
            },
            &[],
        )
        .unwrap();
    let half = |g: &mut Graph| {
        let one = g
            .add(Op::Constant(Array::from_f32(&[], vec![1.0]).unwrap()), &[])
            .unwrap();
        let m = g.add(Op::Binary(BinaryOp::Mul), &[x, one]).unwrap();
        let n = g.add(Op::Unary(UnaryOp::Neg), &[m]).unwrap();
        g.add(Op::Unary(UnaryOp::Neg), &[n]).unwrap()
    };
    let a = half(&mut g);
    let b = half(&mut g);
    let e = g.add(Op::Unary(UnaryOp::Exp), &[x]).unwrap();
    let s = g.add(Op::Binary(BinaryOp::Add), &[a, b]).unwrap();
    let _dead = g.add(Op::Unary(UnaryOp::Log), &[e]).unwrap();
    (Func::new(g, vec![s]).unwrap(), x)
}

/// Default options without dumps, so the tests do not depend on `KILN_DUMP`.
fn quiet() -> PipelineOptions {
    PipelineOptions {
        dump: Dump::Off,
        ..PipelineOptions::default()
    }
}

#[test]
fn optimize_runs_the_passes_in_order_to_a_fixpoint() {
    let (mut f, x) = sample();
    let report = optimize(&mut f, &quiet()).unwrap();
    let order: Vec<(&str, usize)> = report.runs.iter().map(|r| (r.pass, r.round)).collect();
    assert_eq!(
        order,
        vec![
            ("infer", 0),
            ("simplify", 1),
            ("cse", 1),
            ("control", 1),
            ("simplify", 2),
            ("cse", 2),
            ("control", 2),
            ("dce", 0)
        ]
    );
    assert_eq!(report.rounds, 2);
    let out = f.outputs[0];
    assert_eq!(f.graph.node(out).op, Op::Binary(BinaryOp::Add));
    assert_eq!(f.graph.operands(out), vec![x, x]);
    assert_eq!(f.graph.len(), 2);
    let simp = report.stats_of("simplify");
    assert_eq!(simp.fired("mul_by_one"), 2);
    assert_eq!(simp.fired("neg_neg"), 2);
    assert_eq!(report.stats_of("dce").removed, 2);
    let times = report.time_by_pass();
    let names: Vec<&str> = times.iter().map(|(p, _)| *p).collect();
    assert_eq!(names, PASS_NAMES.to_vec());
    assert_eq!(
        times.iter().map(|(_, t)| *t).sum::<std::time::Duration>(),
        report.total_time()
    );
    let table = report.to_string();
    assert_eq!(table.lines().count(), 5);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("simplify") && l.contains("runs=2")),
        "{table}"
    );
}

#[test]
fn max_rounds_bounds_the_loop() {
    let (mut f, _) = sample();
    let opts = PipelineOptions {
        max_rounds: 1,
        ..quiet()
    };
    let report = optimize(&mut f, &opts).unwrap();
    assert_eq!(report.rounds, 1);
    assert_eq!(report.runs.len(), 5);
}

#[test]
fn dump_specs_parse() {
    assert_eq!(Dump::parse("").unwrap(), Dump::Off);
    assert_eq!(Dump::parse("all").unwrap(), Dump::All);
    assert_eq!(
        Dump::parse("after:simplify").unwrap(),
        Dump::After(vec!["simplify"])
    );
    assert_eq!(
        Dump::parse("after:cse, dce").unwrap(),
        Dump::After(vec!["cse", "dce"])
    );
    let d = Dump::parse("after:cse,dce").unwrap();
    assert!(d.wants("cse") && d.wants("dce") && !d.wants("simplify"));
    assert!(Dump::All.wants("infer") && !Dump::Off.wants("infer"));
    let err = Dump::parse("after:cse,fusion").unwrap_err();
    assert_eq!(
        err.to_string(),
        "dump spec \"after:cse,fusion\": unknown pass `fusion` (passes: infer, simplify, cse, control, dce)"
    );
    assert!(matches!(
        Dump::parse("sometimes"),
        Err(PassError::DumpSpec { .. })
    ));
    // The default defers to KILN_DUMP when the pipeline starts; explicit specs stay.
    assert_eq!(PipelineOptions::default().dump, Dump::Env);
    assert!(!Dump::Env.wants("cse"));
    assert_eq!(Dump::All.resolve().unwrap(), Dump::All);
    assert_eq!(Dump::Off.resolve().unwrap(), Dump::Off);
}

#[test]
fn dumps_print_the_function_after_the_chosen_passes() {
    let (mut f, _) = sample();
    let opts = PipelineOptions {
        dump: Dump::parse("after:cse,dce").unwrap(),
        ..PipelineOptions::default()
    };
    let mut sink = Vec::new();
    optimize_to(&mut f, &opts, &mut sink).unwrap();
    let text = String::from_utf8(sink).unwrap();
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with(";;")).collect();
    assert_eq!(
        headers,
        vec![
            ";; after cse (round 1)",
            ";; after cse (round 2)",
            ";; after dce"
        ]
    );
    let last = text.rsplit(";; after dce\n").next().unwrap();
    assert_eq!(last, format!("{f}"));
    assert!(last.starts_with("n0 = input \"x\" : f32[3]\n"), "{last}");
    assert!(
        last.ends_with(&format!("; outputs: {}\n", f.outputs[0])),
        "{last}"
    );
}

#[test]
fn verify_func_reports_bad_graphs() {
    let mut g = Graph::new();
    let x = g
        .add(
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: Shape::known(&[3]),
            },
            &[],
        )
        .unwrap();
    let bad = g.add_unchecked(
        Node {
            op: Op::Unary(UnaryOp::Exp),
            dtype: DType::F32,
            shape: Shape::known(&[4]),
            loc: None,
        },
        &[x],
    );
    let f = Func {
        graph: g,
        outputs: vec![bad],
    };
    let err = verify_func(&f, "after simplify").unwrap_err();
    let PassError::Verify { stage, errors } = &err else {
        panic!("unexpected {err}")
    };
    assert_eq!(stage, "after simplify");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].node, bad);
    // The pipeline refuses it up front, in infer.
    let mut f2 = f.clone();
    let err = optimize(&mut f2, &quiet()).unwrap_err();
    assert!(
        matches!(&err, PassError::Verify { stage, .. } if stage == "in infer"),
        "{err}"
    );
}
