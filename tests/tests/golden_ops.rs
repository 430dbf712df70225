//! Every op case of `fixtures/golden/manifest.json` evaluated through `kiln::eval` and
//! compared with the PyTorch/NumPy reference; one table-driven test per op family, each
//! listing all of its failing cases.

use kiln_tests::golden::{self, CaseSpec, OPS, assert_cases, helper_test_op, helper_test_op_with};

/// Op families: each test runs the cases whose op is in its list.
const FAMILIES: &[(&str, &[&str])] = &[
    (
        "unary",
        &[
            "neg",
            "abs",
            "exp",
            "log",
            "sqrt",
            "rsqrt",
            "recip",
            "sin",
            "cos",
            "tanh",
            "atan",
            "asin",
            "sigmoid",
            "erf",
            "floor",
            "ceil",
            "round",
            "sign",
            "logical_not",
            "is_nan",
        ],
    ),
    (
        "arithmetic",
        &[
            "add", "sub", "mul", "div", "rem", "pow", "maximum", "minimum",
        ],
    ),
    (
        "compare_logic",
        &[
            "eq",
            "ne",
            "lt",
            "le",
            "gt",
            "ge",
            "logical_and",
            "logical_or",
            "logical_xor",
        ],
    ),
    ("select_cast", &["where", "cast"]),
    (
        "reduce",
        &["sum", "max", "min", "prod", "sum_all", "mean_all"],
    ),
    ("arg_reduce", &["argmax", "argmin"]),
    (
        "movement",
        &[
            "reshape",
            "permute",
            "expand",
            "slice",
            "pad",
            "cat",
            "flip",
            "squeeze",
            "unsqueeze",
            "transpose",
            "t",
            "flatten",
        ],
    ),
    (
        "indexing",
        &["gather", "scatter_add", "index_select", "one_hot"],
    ),
    ("chain", &["chain"]),
    ("contraction", &["matmul", "conv2d", "linear"]),
    ("window", &["window", "max_pool2d", "avg_pool2d"]),
    (
        "activation",
        &[
            "relu",
            "leaky_relu",
            "gelu",
            "gelu_tanh",
            "silu",
            "softplus",
            "square",
            "clamp",
        ],
    ),
    (
        "normalization",
        &[
            "softmax",
            "log_softmax",
            "logsumexp",
            "mean",
            "var",
            "layer_norm",
        ],
    ),
    ("functional", &["lstm_cell"]),
];

fn family(name: &str) -> impl Fn(&CaseSpec) -> bool {
    let ops = FAMILIES
        .iter()
        .find(|(f, _)| *f == name)
        .map(|(_, ops)| *ops)
        .unwrap_or_default();
    move |c: &CaseSpec| ops.contains(&c.op.as_str())
}

#[test]
fn unary() {
    assert_cases("unary", family("unary"));
}

#[test]
fn arithmetic() {
    assert_cases("arithmetic", family("arithmetic"));
}

#[test]
fn compare_logic() {
    assert_cases("compare_logic", family("compare_logic"));
}

#[test]
fn select_cast() {
    assert_cases("select_cast", family("select_cast"));
}

#[test]
fn reduce() {
    assert_cases("reduce", family("reduce"));
}

#[test]
fn arg_reduce() {
    assert_cases("arg_reduce", family("arg_reduce"));
}

#[test]
fn movement() {
    assert_cases("movement", family("movement"));
}

#[test]
fn indexing() {
    assert_cases("indexing", family("indexing"));
}

#[test]
fn chain() {
    assert_cases("chain", family("chain"));
}

#[test]
fn contraction() {
    assert_cases("contraction", family("contraction"));
}

#[test]
fn window() {
    assert_cases("window", family("window"));
}

#[test]
fn activation() {
    assert_cases("activation", family("activation"));
}

#[test]
fn normalization() {
    assert_cases("normalization", family("normalization"));
}

#[test]
fn functional() {
    assert_cases("functional", family("functional"));
}

/// No case escapes the family tests, every family op is one `apply` knows, and every
/// known op has at least one case.
#[test]
fn families_cover_manifest_and_ops() {
    let m = golden::manifest().unwrap_or_else(|e| panic!("{e}"));
    let in_family = |op: &str| FAMILIES.iter().filter(|(_, ops)| ops.contains(&op)).count();
    let orphans: Vec<&str> = m
        .cases
        .iter()
        .filter(|c| in_family(&c.op) != 1)
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        orphans.is_empty(),
        "cases in no family or in several: {orphans:?}"
    );
    let unknown: Vec<&str> = FAMILIES
        .iter()
        .flat_map(|(_, ops)| ops.iter().copied())
        .filter(|op| !OPS.contains(op))
        .collect();
    assert!(
        unknown.is_empty(),
        "family ops unknown to golden::apply: {unknown:?}"
    );
    let uncovered: Vec<&str> = OPS
        .iter()
        .copied()
        .filter(|op| !m.cases.iter().any(|c| c.op == *op))
        .collect();
    assert!(
        uncovered.is_empty(),
        "ops without a golden case: {uncovered:?}"
    );
    assert!(m.cases.len() >= 400, "only {} cases", m.cases.len());
}

/// The one-line helper, and the same references reached through other spellings.
#[test]
fn helper_one_liners() {
    helper_test_op("softmax_last_3x783");
    helper_test_op_with("softmax_last_3x783", |x| {
        let e = (&x[0] - x[0].max(-1, true)).exp();
        vec![&e / e.sum(-1, true)]
    });
    helper_test_op_with("log_softmax_last_3x783", |x| vec![x[0].softmax(-1).log()]);
    helper_test_op_with("relu_f32_783", |x| vec![x[0].maximum(0.0)]);
    helper_test_op_with("matmul_3x783_783x50", |x| {
        vec![x[1].t().matmul(&x[0].t()).t()]
    });
    helper_test_op_with("t_3x5", |x| vec![x[0].permute([1, 0])]);
}

/// The loader checks the manifest's dtype and shape against each file.
#[test]
fn case_data_matches_manifest() {
    let case = golden::load_case("add_f32_bcast_3x1x5_4x1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(case.inputs[0].shape(), &[3, 1, 5]);
    assert_eq!(case.inputs[1].shape(), &[4, 1]);
    assert_eq!(case.outputs[0].shape(), &[3, 4, 5]);
    assert_eq!(case.spec.op, "add");
    let err = golden::load_case("no_such_case").err();
    assert_eq!(err.as_deref(), Some("no golden case `no_such_case`"));
}
