//! A kernel plan is verified exactly once per compile and once per load: the fusion pass
//! (or the `.kiln` loader) verifies it and hands a `VerifiedProgram` on, and no backend
//! verifies again. Counted with the verifier's per-thread call counter.

use kiln_ir::{Array, DType, Dim, Graph, Op, Shape, UnaryOp};
use kiln_kernel::verify::verify_calls_on_this_thread;
use kiln_runtime::{Backend, CompileSpec, compile, load_bytes};
use std::collections::HashMap;

fn exp_spec() -> CompileSpec {
    let mut g = Graph::new();
    let x = g
        .add(
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: Shape::new([Dim::sym("N"), Dim::known(3)]),
            },
            &[],
        )
        .unwrap();
    let y = g.add(Op::Unary(UnaryOp::Exp), &[x]).unwrap();
    CompileSpec {
        graph: g,
        outputs: vec![("y".into(), y)],
        updates: vec![],
        params: HashMap::new(),
        state: None,
    }
}

/// Verifier calls on this thread while `f` runs.
fn verifications<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = verify_calls_on_this_thread();
    let value = f();
    (value, verify_calls_on_this_thread() - before)
}

#[test]
fn a_plan_is_verified_once_per_compile_and_once_per_load() {
    let x = Array::from_f32(&[2, 3], vec![0.0, 1.0, 2.0, -1.0, 0.5, 3.0]).unwrap();
    for backend in [Backend::Cpu, Backend::Kernel] {
        let (exe, calls) = verifications(|| compile(exp_spec(), backend).unwrap());
        assert_eq!(calls, 1, "{backend:?} compile");
        let mut exe = exe;
        let want = exe.run(&[("x", &x)]).unwrap();

        let (bytes, calls) = verifications(|| kiln_format::to_bytes(&exe.to_module()).unwrap());
        assert_eq!(
            calls, 1,
            "{backend:?} save checks the bytes with the loader"
        );

        let (loaded, calls) = verifications(|| load_bytes(&bytes, backend).unwrap());
        assert_eq!(calls, 1, "{backend:?} load");
        let mut loaded = loaded;
        assert_eq!(loaded.run(&[("x", &x)]).unwrap(), want, "{backend:?}");
    }
}
