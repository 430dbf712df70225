//! Property test: random elementwise bodies of exactly rounded ops over a 2-D domain with
//! broadcast loads must match the kernel executor bit for bit, whatever the sizes.

use crate::common;
use common::*;
use proptest::prelude::*;

/// One random node over earlier f32 values: `(op, a, b, c)` with operands taken modulo the
/// number of values so far.
type Node = (u8, usize, usize, usize);

fn body(nodes: &[Node]) -> String {
    let mut lines = vec![
        "v0 = load b0[i0*C + i1]".to_string(),
        "v1 = load b1[i1]".to_string(),
        "v2 = load b2[i0*C + i1]".to_string(),
        "v3 = cast<f32>(v2)".to_string(),
    ];
    let mut floats = vec![0usize, 1, 3];
    let mut next = 4usize;
    for &(op, a, b, c) in nodes {
        let pick = |k: usize| floats[k % floats.len()];
        let (x, y, z) = (pick(a), pick(b), pick(c));
        let expr = match op % 12 {
            0 => format!("add(v{x}, v{y})"),
            1 => format!("sub(v{x}, v{y})"),
            2 => format!("mul(v{x}, v{y})"),
            3 => format!("div(v{x}, v{y})"),
            4 => format!("max(v{x}, v{y})"),
            5 => format!("min(v{x}, v{y})"),
            6 => format!("neg(v{x})"),
            7 => format!("abs(v{x})"),
            8 => format!("floor(v{x})"),
            9 => format!("sqrt(v{x})"),
            10 => {
                lines.push(format!("v{next} = lt(v{x}, v{y})"));
                next += 1;
                format!("select(v{}, v{y}, v{z})", next - 1)
            }
            _ => {
                lines.push(format!("v{next} = cast<i32>(v{x})"));
                next += 1;
                format!("cast<f32>(v{})", next - 1)
            }
        };
        lines.push(format!("v{next} = {expr}"));
        floats.push(next);
        next += 1;
    }
    lines.push(format!("store b3[i0*C + i1] = v{}", next - 1));
    lines.join("\n  ")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_bodies_match_the_executor(
        nodes in prop::collection::vec((0u8..12, 0usize..16, 0usize..16, 0usize..16), 1..10),
        n in 1u64..5,
        c in 1u64..40,
        seed in 0u64..1000,
    ) {
        let text = format!(
            "symbol N >= 1
             symbol C >= 1
             b0 = input \"x\" f32[N*C]
             b1 = input \"y\" f32[C]
             b2 = input \"z\" i32[N*C]
             b3 = output \"out\" f32[N*C]
             k0 = loop [N, C] {{
               {}
             }}",
            body(&nodes)
        );
        let program = parse(&text);
        let b = bindings(&[("N", n), ("C", c)]);
        let bufs = inputs(&program, &b, seed, Fill { specials: seed % 3 == 0, ..Fill::default() });
        differential(&program, &b, &bufs, 0.0, 0.0);
    }
}
