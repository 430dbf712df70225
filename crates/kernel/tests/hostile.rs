//! Hostile inputs: mutated program texts never make the parser, verifier or executor panic,
//! and whatever verifies runs without out-of-bounds accesses.

use kiln_kernel::{allocate, execute, parse, verify};
use proptest::prelude::*;
use std::collections::HashMap;

const SEEDS: [&str; 4] = [
    include_str!("../../../fixtures/filetests/kernel/softmax_two_kernels.kir"),
    include_str!("../../../fixtures/filetests/kernel/pad_and_concat.kir"),
    include_str!("../../../fixtures/filetests/kernel/reshape_div_mod.kir"),
    include_str!("../../../fixtures/filetests/kernel/gather_checked_and_guarded.kir"),
];

/// Applies edits (position, replacement) to a seed text.
fn mutate(seed: &str, edits: &[(usize, String)]) -> String {
    let code: Vec<&str> = seed.lines().filter(|l| !l.starts_with(';')).collect();
    let mut chars: Vec<char> = code.join("\n").chars().collect();
    for (pos, text) in edits {
        if chars.is_empty() {
            break;
        }
        let at = pos % chars.len();
        let cut = (at + 1).min(chars.len());
        chars.splice(at..cut, text.chars());
    }
    chars.into_iter().collect()
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("1".to_string()),
        Just("0".to_string()),
        Just("-".to_string()),
        Just("+ 1".to_string()),
        Just("*N".to_string()),
        Just("{N-3}".to_string()),
        Just("i1".to_string()),
        Just("r0".to_string()),
        Just("v0".to_string()),
        Just("99999999999999999999".to_string()),
        Just("^40".to_string()),
        Just(" / 0".to_string()),
        Just(" % {N*N}".to_string()),
        "[a-z0-9\\[\\]{}(),+*/%<=-]{1,3}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_programs_never_panic(
        seed in 0usize..SEEDS.len(),
        edits in proptest::collection::vec((any::<usize>(), piece()), 1..4),
        n in 1u64..4,
    ) {
        let text = mutate(SEEDS[seed], &edits);
        let Ok(program) = parse(&text) else { return Ok(()) };
        prop_assert_eq!(parse(&program.to_string()), Ok(program.clone()));
        let Ok(program) = verify(program) else {
            return Ok(());
        };
        let bindings: HashMap<String, u64> =
            program.symbols.iter().map(|s| (s.name.clone(), n.max(s.min))).collect();
        if let Ok(mut bufs) = allocate(&program, &bindings) {
            // Runs to completion or reports an error; out-of-bounds plain accesses would be
            // reported as IndexOutOfBounds on a plain load, which verification rules out.
            if let Err(kiln_kernel::ExecError::IndexOutOfBounds { kernel, buffer, .. }) =
                execute(&program, &bindings, &mut bufs)
            {
                let k = program.kernel(kernel).map(|k| k.name()).unwrap_or("?");
                prop_assert!(
                    text.contains("checked"),
                    "unchecked access out of bounds in {kernel} ({k}) on {buffer}:\n{text}"
                );
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[ -~\\n]{0,200}") {
        let _ = parse(&text).map(verify);
    }
}

fn index_strategy() -> impl Strategy<Value = kiln_kernel::IndexExpr> {
    use kiln_ir::Dim;
    use kiln_kernel::IndexExpr;
    let leaf = prop_oneof![
        (0u32..3).prop_map(IndexExpr::var),
        Just(IndexExpr::red(0)),
        (0u64..8).prop_map(IndexExpr::dim),
        Just(IndexExpr::dim(Dim::sym("N"))),
        Just(IndexExpr::dim(Dim::sym("C"))),
        Just(IndexExpr::dim(Dim::sym("N") * Dim::sym("C"))),
        Just(IndexExpr::dim(Dim::sym("N") - Dim::known(2))),
    ];
    leaf.prop_recursive(3, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a + b),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a - b),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a * b),
            (inner.clone(), 1u64..7).prop_map(|(a, d)| a.floor_div(d)),
            (inner.clone(), 1u64..7).prop_map(|(a, d)| a.modulo(d)),
            inner.clone().prop_map(|a| a.floor_div(Dim::sym("C"))),
            inner.prop_map(|a| a.modulo(Dim::sym("C"))),
        ]
    })
}

/// Every plain load and store index of a program.
fn access_indices(p: &mut kiln_kernel::Program) -> Vec<&mut kiln_kernel::IndexExpr> {
    use kiln_kernel::{Expr, Kernel, LoadMode};
    let mut out = Vec::new();
    for k in &mut p.kernels {
        let bodies = match k {
            Kernel::Loop(l) => vec![&mut l.body],
            Kernel::Matmul(m) => vec![&mut m.a, &mut m.b, &mut m.epilogue],
            Kernel::Conv2d(c) => vec![&mut c.input, &mut c.weight, &mut c.epilogue],
        };
        for b in bodies {
            for e in &mut b.values {
                if let Expr::Load(l) = e {
                    match &mut l.mode {
                        LoadMode::Plain => out.push(&mut l.index),
                        LoadMode::Masked { guards, .. } => {
                            out.push(&mut l.index);
                            for g in guards {
                                out.extend([&mut g.lo, &mut g.expr, &mut g.hi]);
                            }
                        }
                        LoadMode::Checked => {}
                    }
                }
            }
            for s in &mut b.stores {
                out.push(&mut s.index);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Soundness: when a random index verifies, running the program at several bindings
    /// never touches memory out of bounds (the executor checks every access at run time).
    #[test]
    fn verified_random_indices_stay_in_bounds(
        seed in 0usize..2,
        which in any::<usize>(),
        index in index_strategy(),
        n in 1u64..5,
        c in 1u64..6,
    ) {
        let text = match seed {
            0 => SEEDS[0].to_string(),
            _ => format!("symbol C >= 1, <= 6\n{}", SEEDS[1]),
        };
        let mut p = parse(&text).unwrap();
        {
            let mut slots = access_indices(&mut p);
            let k = which % slots.len();
            *slots[k] = index;
        }
        let Ok(p) = verify(p) else {
            return Ok(());
        };
        let bindings: HashMap<String, u64> =
            [("N".to_string(), n), ("C".to_string(), c)].into_iter().collect();
        let mut bufs = allocate(&p, &bindings).unwrap();
        let r = execute(&p, &bindings, &mut bufs);
        prop_assert!(
            !matches!(r, Err(kiln_kernel::ExecError::IndexOutOfBounds { .. })),
            "verified program went out of bounds at N={n} C={c}: {r:?}\n{p}"
        );
    }
}
