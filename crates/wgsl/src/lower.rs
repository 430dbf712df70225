//! Lowering of each kernel kind to a shader by instantiating a template from `shaders/`:
//! loop kernels become elementwise, serial-reduction or row-reduction shaders; matmul and
//! conv2d kernels become tiled GEMMs with generated operand loaders and epilogue.

use crate::emit::{
    Emitter, combine, device_element_bytes, literal, value_dtypes, value_type, zero,
};
use crate::error::WgslError;
use crate::helpers::Helper;
use crate::shader::{GridAxis, KernelShader, ShaderKind};
use crate::target::{GemmTile, Target, WORKGROUP};
use kiln_ir::{DType, Dim, ReduceOp};
use kiln_kernel::{
    Body, Conv2dKernel, Expr, IndexExpr, Kernel, KernelId, LoopKernel, MatmulKernel, Program,
    Scalar,
};
use std::collections::HashMap;
use std::fmt::Write;

const ELEMENTWISE: &str = include_str!("../../../shaders/elementwise.wgsl");
const REDUCE: &str = include_str!("../../../shaders/reduce.wgsl");
const REDUCE_ROWS: &str = include_str!("../../../shaders/reduce_rows.wgsl");
const GEMM: &str = include_str!("../../../shaders/gemm.wgsl");

/// The large GEMM tile is used when a product has at least this many of its tiles, so
/// that a large device still gets enough workgroups.
const LARGE_TILE_MIN_TILES: u64 = 128;
/// A statically known reduction of at most this many points runs serially in each
/// invocation; longer or symbolic ones use the workgroup tree.
pub const SERIAL_REDUCTION_MAX: u64 = 64;

/// Fills a template: drops its leading comment block and replaces each `{{NAME}}`.
fn instantiate(template: &str, fills: &[(&str, &str)]) -> String {
    let body: Vec<&str> = template
        .lines()
        .skip_while(|l| l.starts_with("//"))
        .collect();
    let mut out = body.join("\n");
    out.push('\n');
    for (name, text) in fills {
        out = out.replace(&format!("{{{{{name}}}}}"), text.trim_end_matches('\n'));
    }
    out
}

/// Lowers kernel `id` of `program`.
pub(crate) fn lower_kernel(
    program: &Program,
    id: KernelId,
    kernel: &Kernel,
    target: &Target,
) -> Result<KernelShader, WgslError> {
    let mut em = Emitter::new(program, id, kernel, *target);
    let Lowered {
        kind,
        source,
        grid,
        counts,
        workgroup_shape,
        workgroup_memory,
    } = match kernel {
        Kernel::Loop(k) => lower_loop(&mut em, k)?,
        Kernel::Matmul(k) => lower_matmul(&mut em, k)?,
        Kernel::Conv2d(k) => lower_conv(&mut em, k)?,
    };
    let error_binding = em.uses_error().then(|| em.error_binding());
    let arena_binding = em.arena_binding();
    Ok(KernelShader {
        kernel: id,
        kind,
        source,
        bindings: em.bindings,
        packed: em.packed,
        arena_binding,
        error_binding,
        params: em.params,
        grid,
        counts,
        workgroup_size: workgroup_shape.iter().product(),
        workgroup_shape,
        workgroup_memory,
    })
}

/// A lowered kernel before its bindings are attached.
struct Lowered {
    kind: ShaderKind,
    source: String,
    grid: Vec<GridAxis>,
    counts: Vec<Vec<Dim>>,
    workgroup_shape: [u32; 3],
    workgroup_memory: u32,
}

/// `let` bindings of clamped extents named `{prefix}{k}` and the product of them.
fn extents(
    em: &mut Emitter<'_>,
    dims: &[Dim],
    prefix: &str,
    indent: &str,
    out: &mut String,
) -> Result<String, WgslError> {
    let factors = extent_lets(em, dims, prefix, indent, out)?;
    Ok(if factors.is_empty() {
        "1".to_string()
    } else {
        factors.join(" * ")
    })
}

/// `let` bindings of clamped extents named `{prefix}{k}`; returns the factors of their
/// product. A statically empty axis is bound to `1` and contributes the factor `0`: its name
/// is only a divisor in [`decode`], which no invocation of an empty domain reaches, so no
/// shader divides by a literal zero (naga rejects that at compile time).
fn extent_lets(
    em: &mut Emitter<'_>,
    dims: &[Dim],
    prefix: &str,
    indent: &str,
    out: &mut String,
) -> Result<Vec<String>, WgslError> {
    let mut factors = Vec::new();
    for (k, d) in dims.iter().enumerate() {
        let e = em.extent(d)?;
        let name = format!("{prefix}{k}");
        if e == "0" {
            let _ = writeln!(out, "{indent}let {name} = 1; // empty axis");
            factors.push("0".to_string());
        } else {
            let _ = writeln!(out, "{indent}let {name} = {e};");
            factors.push(name);
        }
    }
    Ok(factors)
}

/// Decodes the row-major linear index `linear` (an `i32` expression) over extents named
/// `{extent_prefix}{k}` into variables `{var_prefix}{k}`.
fn decode(
    linear: &str,
    count: usize,
    extent_prefix: &str,
    var_prefix: &str,
    indent: &str,
    out: &mut String,
) {
    decode_from(linear, 0..count, extent_prefix, var_prefix, indent, out);
}

/// [`decode`] over the axes `axes` only: `linear` indexes the points of those axes.
fn decode_from(
    linear: &str,
    axes: std::ops::Range<usize>,
    extent_prefix: &str,
    var_prefix: &str,
    indent: &str,
    out: &mut String,
) {
    let first = axes.start;
    match axes.len() {
        0 => {}
        1 => {
            let _ = writeln!(out, "{indent}let {var_prefix}{first} = {linear};");
        }
        _ => {
            let rest = if first == 0 {
                format!("kiln_{var_prefix}rest")
            } else {
                format!("kiln_{var_prefix}rest{first}")
            };
            let _ = writeln!(out, "{indent}var {rest} = {linear};");
            for k in (first + 1..axes.end).rev() {
                let _ = writeln!(
                    out,
                    "{indent}let {var_prefix}{k} = {rest} % {extent_prefix}{k};"
                );
                let _ = writeln!(out, "{indent}{rest} = {rest} / {extent_prefix}{k};");
            }
            let _ = writeln!(out, "{indent}let {var_prefix}{first} = {rest};");
        }
    }
}

/// How the values of a reduction body split into the stages of [`Body::stages`]: before
/// each stage's loop, the values it needs once; in its loop, the values evaluated at every
/// reduction point; after the last stage, the rest.
struct Phases {
    /// The stages in order (stage `s` at position `s - 1`).
    stages: Vec<Stage>,
    /// Values evaluated once after the last stage: every reduce node and every value that
    /// does not vary over the reduction, unless a stage evaluated it before its loop.
    after: Vec<bool>,
    /// `(node, op, operand, init)` of every reduce node, in order; accumulator `j` and
    /// workgroup array `kiln_part<j>` belong to `reduces[j]`.
    reduces: Vec<(usize, ReduceOp, usize, Scalar)>,
}

/// One stage of a reduction body.
struct Stage {
    /// Positions in [`Phases::reduces`] of the stage's reduce nodes.
    reduces: Vec<usize>,
    /// Values evaluated once before the loop, where every later stage and the end still see
    /// them: the earlier stages' results the operands read and the values derived from
    /// them that do not vary over the reduction (with what those need). Empty in stage 1.
    before: Vec<bool>,
    /// Values evaluated at every reduction point: the rest of what the operands need
    /// (never a reduce node).
    inner: Vec<bool>,
}

fn phases(body: &Body) -> Phases {
    let n = body.values.len();
    let deps = body.dependencies();
    let stage = body.stages();
    let is_reduce = |i: usize| matches!(body.values[i], Expr::Reduce { .. });
    let mut uses_red = vec![false; n];
    for (i, e) in body.values.iter().enumerate() {
        uses_red[i] = !is_reduce(i)
            && (e.uses_red()
                || deps[i]
                    .iter()
                    .any(|&d| uses_red.get(d).copied().unwrap_or(false)));
    }
    let reduces: Vec<(usize, ReduceOp, usize, Scalar)> = body
        .values
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Expr::Reduce { op, value, init } => Some((i, *op, value.index(), *init)),
            _ => None,
        })
        .collect();
    // Marks what `from` reads, transitively, stopping at reduce nodes (marked, not entered).
    let reach = |from: Vec<usize>, skip: &[bool]| {
        let mut seen = vec![false; n];
        let mut stack = from;
        while let Some(v) = stack.pop() {
            if v < n && !seen[v] && !skip[v] {
                seen[v] = true;
                if !is_reduce(v) {
                    stack.extend(deps[v].iter().copied());
                }
            }
        }
        seen
    };
    let mut once = vec![false; n];
    let mut stages = Vec::new();
    for st in body.reduction_stages() {
        let mine: Vec<usize> = (0..reduces.len())
            .filter(|&j| st.reduces.contains(&reduces[j].0))
            .collect();
        let needed = st.reads;
        let seeds = (0..n)
            .filter(|&i| needed[i] && !uses_red[i] && stage[i] > 0)
            .collect();
        let before = reach(seeds, &once);
        let inner = (0..n)
            .map(|i| needed[i] && !is_reduce(i) && !before[i] && !once[i])
            .collect();
        for (o, b) in once.iter_mut().zip(&before) {
            *o |= b;
        }
        stages.push(Stage {
            reduces: mine,
            before,
            inner,
        });
    }
    let after = (0..n)
        .map(|i| !once[i] && (is_reduce(i) || !uses_red[i]))
        .collect();
    Phases {
        stages,
        after,
        reduces,
    }
}

/// For each node, whether it varies along loop variable `i<axis>` (directly through an
/// index expression or through a value it reads).
fn varies_along(body: &Body, deps: &[Vec<usize>], axis: usize) -> Vec<bool> {
    let mut out = vec![false; body.values.len()];
    for (i, e) in body.values.iter().enumerate() {
        let mut direct = false;
        for ix in e.indices() {
            ix.visit(&mut |x| direct |= matches!(x, IndexExpr::Var(v) if v.index() == axis));
        }
        out[i] = direct
            || deps[i]
                .iter()
                .any(|&d| out.get(d).copied().unwrap_or(false));
    }
    out
}

/// Reductions hoisted out of the inner domain axes `first..`, along which no reduction
/// varies: one workgroup per point of the outer axes reduces once, then strides over the
/// inner points (`reduce_rows.wgsl`).
struct Hoist {
    /// The first hoisted axis.
    first: usize,
    /// The node varies along no hoisted axis (evaluated once per workgroup).
    invariant: Vec<bool>,
}

/// The longest suffix of domain axes no reduction varies along, if the kernel has
/// reductions and one of those axes can have more than one point.
fn hoist(k: &LoopKernel, ph: &Phases) -> Option<Hoist> {
    if ph.reduces.is_empty() {
        return None;
    }
    let deps = k.body.dependencies();
    let mut invariant = vec![true; k.body.values.len()];
    let mut first = k.domain.len();
    for axis in (0..k.domain.len()).rev() {
        let vary = varies_along(&k.body, &deps, axis);
        if ph.reduces.iter().any(|r| vary[r.0]) {
            break;
        }
        for (inv, v) in invariant.iter_mut().zip(&vary) {
            *inv &= !v;
        }
        first = axis;
    }
    k.domain[first..]
        .iter()
        .any(|d| !d.is_one())
        .then_some(Hoist { first, invariant })
}

fn lower_loop(em: &mut Emitter<'_>, k: &LoopKernel) -> Result<Lowered, WgslError> {
    let types = value_dtypes(em.program, em.kernel, &k.body, None)?;
    let serial_size = if k.reduce.is_empty() {
        Some(0)
    } else {
        k.reduce
            .iter()
            .try_fold(1u64, |acc, d| d.as_known().and_then(|v| acc.checked_mul(v)))
            .filter(|&s| s <= SERIAL_REDUCTION_MAX)
    };
    match serial_size {
        Some(_) => lower_pointwise(em, k, &types),
        None => lower_row_reduce(em, k, &types),
    }
}

/// One invocation per point; a short reduction loops serially, one loop per stage.
fn lower_pointwise(
    em: &mut Emitter<'_>,
    k: &LoopKernel,
    types: &[DType],
) -> Result<Lowered, WgslError> {
    let mut ext = String::new();
    let points = extents(em, &k.domain, "kiln_n", "    ", &mut ext)?;
    let _ = writeln!(ext, "    let kiln_points = {points};");
    let mut body = String::new();
    decode(
        "i32(kiln_point)",
        k.domain.len(),
        "kiln_n",
        "i",
        "    ",
        &mut body,
    );
    let kind = if k.reduce.is_empty() {
        em.values(
            &k.body,
            types,
            &|_| true,
            &HashMap::new(),
            "    ",
            &mut body,
        )?;
        ShaderKind::Elementwise
    } else {
        let ph = phases(&k.body);
        let rsize = extents(em, &k.reduce, "kiln_m", "    ", &mut body)?;
        let reduced: HashMap<usize, String> = ph
            .reduces
            .iter()
            .enumerate()
            .map(|(j, r)| (r.0, format!("kiln_acc{j}")))
            .collect();
        for stage in &ph.stages {
            em.values(
                &k.body,
                types,
                &|i| stage.before[i],
                &reduced,
                "    ",
                &mut body,
            )?;
            for &j in &stage.reduces {
                let (_, _, operand, init) = ph.reduces[j];
                let ty = value_type(types.get(operand).copied().unwrap_or(init.dtype()));
                let _ = writeln!(body, "    var kiln_acc{j}: {ty} = {};", literal(init));
            }
            let _ = writeln!(
                body,
                "    for (var kiln_r = 0; kiln_r < {rsize}; kiln_r += 1) {{"
            );
            decode(
                "kiln_r",
                k.reduce.len(),
                "kiln_m",
                "r",
                "        ",
                &mut body,
            );
            em.values(
                &k.body,
                types,
                &|i| stage.inner[i],
                &HashMap::new(),
                "        ",
                &mut body,
            )?;
            for &j in &stage.reduces {
                let (_, op, operand, init) = ph.reduces[j];
                let dtype = types.get(operand).copied().unwrap_or(init.dtype());
                let c = combine(
                    op,
                    dtype,
                    &format!("kiln_acc{j}"),
                    &format!("v{operand}"),
                    &mut em.helpers,
                );
                let _ = writeln!(body, "        kiln_acc{j} = {c};");
            }
            body.push_str("    }\n");
        }
        em.values(
            &k.body,
            types,
            &|i| ph.after[i],
            &reduced,
            "    ",
            &mut body,
        )?;
        ShaderKind::SerialReduce
    };
    em.stores(&k.body, types, "    ", &mut body)?;
    let decls = em.declarations();
    let source = instantiate(
        ELEMENTWISE,
        &[("DECLS", &decls), ("EXTENTS", &ext), ("BODY", &body)],
    );
    let grid = vec![GridAxis {
        extents: k.domain.clone(),
        per_group: WORKGROUP,
    }];
    Ok(Lowered {
        kind,
        source,
        grid,
        counts: vec![k.domain.clone(), k.reduce.clone()],
        workgroup_shape: [WORKGROUP, 1, 1],
        workgroup_memory: 0,
    })
}

/// One workgroup per point, tree reduction in workgroup memory; or, when the reductions
/// do not depend on some inner domain axes ([`hoist`]), one workgroup per point of the
/// outer axes that reduces once and then covers the inner points. Each stage of the
/// reductions strides over the reduction domain and gathers into its own `kiln_part<j>`
/// arrays; a later stage reads an earlier one's results from `kiln_part<j>[0]`, which no
/// invocation writes again.
fn lower_row_reduce(
    em: &mut Emitter<'_>,
    k: &LoopKernel,
    types: &[DType],
) -> Result<Lowered, WgslError> {
    let ph = phases(&k.body);
    let hoisted = hoist(k, &ph);
    let first = hoisted.as_ref().map_or(k.domain.len(), |h| h.first);
    let mut ext = String::new();
    let names = extent_lets(em, &k.domain, "kiln_n", "    ", &mut ext)?;
    let product = |names: &[String]| {
        if names.is_empty() {
            "1".to_string()
        } else {
            names.join(" * ")
        }
    };
    let rsize = extents(em, &k.reduce, "kiln_m", "    ", &mut ext)?;
    let _ = writeln!(ext, "    let kiln_rows = {};", product(&names[..first]));
    if hoisted.is_some() {
        let _ = writeln!(ext, "    let kiln_cols = {};", product(&names[first..]));
    }
    let _ = writeln!(ext, "    let kiln_rsize = {rsize};");
    let mut row = String::new();
    decode("i32(kiln_row)", first, "kiln_n", "i", "    ", &mut row);
    let subgroups = em.target.subgroups
        && ph.reduces.iter().all(|(_, op, operand, init_value)| {
            let dtype = types.get(*operand).copied().unwrap_or(init_value.dtype());
            subgroup_reduce(*op, dtype).is_some()
        });
    let mut parts = String::new();
    let mut memory = 0u32;
    for (j, (_, _, operand, init_value)) in ph.reduces.iter().enumerate() {
        let dtype = types.get(*operand).copied().unwrap_or(init_value.dtype());
        let ty = value_type(dtype);
        let _ = writeln!(
            parts,
            "var<workgroup> kiln_part{j}: array<{ty}, {WORKGROUP}>;"
        );
        memory += device_element_bytes(dtype) * WORKGROUP;
    }
    let reduced: HashMap<usize, String> = ph
        .reduces
        .iter()
        .enumerate()
        .map(|(j, r)| (r.0, format!("kiln_part{j}[0]")))
        .collect();
    let mut stages = String::new();
    for stage in &ph.stages {
        em.values(
            &k.body,
            types,
            &|i| stage.before[i],
            &reduced,
            "    ",
            &mut stages,
        )?;
        let (mut init, mut step) = (String::new(), String::new());
        let mut gather = Gather::default();
        decode(
            "kiln_r",
            k.reduce.len(),
            "kiln_m",
            "r",
            "        ",
            &mut step,
        );
        em.values(
            &k.body,
            types,
            &|i| stage.inner[i],
            &HashMap::new(),
            "        ",
            &mut step,
        )?;
        for &j in &stage.reduces {
            let (_, op, operand, init_value) = ph.reduces[j];
            let dtype = types.get(operand).copied().unwrap_or(init_value.dtype());
            let ty = value_type(dtype);
            let _ = writeln!(init, "    var kiln_acc{j}: {ty} = {};", literal(init_value));
            let c = combine(
                op,
                dtype,
                &format!("kiln_acc{j}"),
                &format!("v{operand}"),
                &mut em.helpers,
            );
            let _ = writeln!(step, "        kiln_acc{j} = {c};");
            gather.add(em, j, op, dtype, subgroups);
        }
        let _ = write!(
            stages,
            "{init}    for (var kiln_r = i32(lid); kiln_r < kiln_rsize; kiln_r += {WORKGROUP}) {{\n{step}    }}\n{}",
            gather.finish(subgroups)
        );
    }
    let after = &ph.after;
    let (kind, template, tail) = match &hoisted {
        None => {
            let mut finish = String::new();
            em.values(
                &k.body,
                types,
                &|i| after[i],
                &reduced,
                "        ",
                &mut finish,
            )?;
            em.stores(&k.body, types, "        ", &mut finish)?;
            (ShaderKind::RowReduce, REDUCE, vec![("FINISH", finish)])
        }
        Some(h) => {
            let inv = &h.invariant;
            let mut once = String::new();
            em.values(
                &k.body,
                types,
                &|i| after[i] && inv[i],
                &reduced,
                "    ",
                &mut once,
            )?;
            let mut point = String::new();
            decode_from(
                "kiln_c",
                h.first..k.domain.len(),
                "kiln_n",
                "i",
                "        ",
                &mut point,
            );
            em.values(
                &k.body,
                types,
                &|i| after[i] && !inv[i],
                &reduced,
                "        ",
                &mut point,
            )?;
            em.stores(&k.body, types, "        ", &mut point)?;
            (
                ShaderKind::HoistedReduce,
                REDUCE_ROWS,
                vec![("REDUCED", once), ("POINT", point)],
            )
        }
    };
    let mut decls = em.declarations();
    decls.push('\n');
    decls.push_str(&parts);
    let mut fills: Vec<(&str, &str)> = vec![
        ("DECLS", &decls),
        ("EXTENTS", &ext),
        ("ROW", &row),
        ("STAGES", &stages),
        ("BUILTINS", if subgroups { SUBGROUP_BUILTINS } else { "" }),
    ];
    fills.extend(tail.iter().map(|(n, t)| (*n, t.as_str())));
    let source = instantiate(template, &fills);
    let grid = vec![GridAxis {
        extents: k.domain[..first].to_vec(),
        per_group: 1,
    }];
    Ok(Lowered {
        kind,
        source,
        grid,
        counts: vec![k.domain.clone(), k.reduce.clone()],
        workgroup_shape: [WORKGROUP, 1, 1],
        workgroup_memory: memory,
    })
}

/// The extra parameters of a reduction template's entry point when it uses subgroups.
const SUBGROUP_BUILTINS: &str = "
    @builtin(subgroup_id) sgid: u32,
    @builtin(num_subgroups) nsg: u32,
    @builtin(subgroup_invocation_id) sglane: u32,";

/// The subgroup builtin that combines `op` over a subgroup for `dtype`, if there is one
/// with kiln's semantics (not for two-word `i64` or `bool`; a float max or min needs the
/// NaN fix-up of [`Gather::add`]).
fn subgroup_reduce(op: ReduceOp, dtype: DType) -> Option<&'static str> {
    if !matches!(dtype, DType::F32 | DType::I32 | DType::U32) {
        return None;
    }
    Some(match op {
        ReduceOp::Sum => "subgroupAdd",
        ReduceOp::Prod => "subgroupMul",
        ReduceOp::Max => "subgroupMax",
        ReduceOp::Min => "subgroupMin",
    })
}

/// The code that combines every invocation's accumulators into `kiln_part<k>[0]`: a tree
/// in workgroup memory, or subgroup reductions and one serial fold of the partials.
#[derive(Default)]
struct Gather {
    /// Per accumulator: the tree's stores, or the subgroup reduction and its partial store.
    share: String,
    /// Per accumulator: the tree's halving step, or the fold of the subgroup partials.
    combine: String,
}

impl Gather {
    /// Adds accumulator `j` (`kiln_acc<j>`, reduced by `op` in `dtype`).
    fn add(&mut self, em: &mut Emitter<'_>, j: usize, op: ReduceOp, dtype: DType, sub: bool) {
        let part = format!("kiln_part{j}");
        match subgroup_reduce(op, dtype).filter(|_| sub) {
            Some(f) => {
                let acc = format!("kiln_acc{j}");
                let mut value = format!("{f}({acc})");
                if dtype == DType::F32 && matches!(op, ReduceOp::Max | ReduceOp::Min) {
                    // The builtins leave NaN handling to the device; kiln's max and min
                    // return NaN when any operand is NaN.
                    em.helpers.insert(Helper::IsNan);
                    value = format!(
                        "select({value}, bitcast<f32>(0x7fc00000u), subgroupAny(kiln_isnan({acc})))"
                    );
                }
                let _ = writeln!(self.share, "    let kiln_sg{j} = {value};");
                let _ = writeln!(
                    self.share,
                    "    if (sglane == 0u) {{\n        {part}[sgid] = kiln_sg{j};\n    }}"
                );
                let c = combine(
                    op,
                    dtype,
                    &format!("{part}[0]"),
                    &format!("{part}[kiln_q]"),
                    &mut em.helpers,
                );
                let _ = writeln!(self.combine, "            {part}[0] = {c};");
            }
            None => {
                let _ = writeln!(self.share, "    {part}[lid] = kiln_acc{j};");
                let c = combine(
                    op,
                    dtype,
                    &format!("{part}[lid]"),
                    &format!("{part}[lid + kiln_s]"),
                    &mut em.helpers,
                );
                let _ = writeln!(self.combine, "            {part}[lid] = {c};");
            }
        }
    }

    /// The code for every accumulator added.
    fn finish(&self, subgroups: bool) -> String {
        let (share, combine) = (&self.share, &self.combine);
        if subgroups {
            format!(
                "{share}    workgroupBarrier();\n    if (lid == 0u) {{\n        for (var kiln_q = 1u; kiln_q < nsg; kiln_q++) {{\n{combine}        }}\n    }}\n    workgroupBarrier();\n"
            )
        } else {
            format!(
                "{share}    workgroupBarrier();\n    for (var kiln_s = {half}u; kiln_s > 0u; kiln_s = kiln_s >> 1u) {{\n        if (lid < kiln_s) {{\n{combine}        }}\n        workgroupBarrier();\n    }}\n",
                half = WORKGROUP / 2
            )
        }
    }
}

/// The accumulator dtype of a contraction: the dtype its operand bodies yield.
fn operand_dtype(em: &Emitter<'_>, body: &Body, types: &[DType]) -> Result<DType, WgslError> {
    body.result
        .and_then(|r| types.get(r.index()).copied())
        .ok_or_else(|| WgslError::Unsupported {
            kernel: em.kernel,
            message: "an operand body yields no value".to_string(),
        })
}

/// A generated operand loader `fn name(kiln_batch, kiln_row, kiln_col) -> T` whose
/// prologue (`coords`) binds the body's loop variables.
fn operand_fn(
    em: &mut Emitter<'_>,
    name: &str,
    body: &Body,
    types: &[DType],
    coords: &str,
) -> Result<String, WgslError> {
    let ty = value_type(operand_dtype(em, body, types)?);
    let mut out =
        format!("fn {name}(kiln_batch: i32, kiln_row: i32, kiln_col: i32) -> {ty} {{\n{coords}");
    em.values(body, types, &|_| true, &HashMap::new(), "    ", &mut out)?;
    let r = body.result.map_or(0, |r| r.0);
    let _ = writeln!(out, "    return v{r};\n}}");
    Ok(out)
}

fn epilogue_fn(
    em: &mut Emitter<'_>,
    body: &Body,
    types: &[DType],
    acc: DType,
    coords: &str,
) -> Result<String, WgslError> {
    let mut out = format!(
        "fn kiln_epilogue(kiln_batch: i32, kiln_row: i32, kiln_col: i32, acc: {}) {{\n{coords}",
        value_type(acc)
    );
    em.values(body, types, &|_| true, &HashMap::new(), "    ", &mut out)?;
    em.stores(body, types, "    ", &mut out)?;
    out.push_str("}\n");
    Ok(out)
}

/// Instantiates the GEMM template; `MAC` is the accumulator update (two-word helpers for
/// `i64`).
fn gemm_source(
    em: &mut Emitter<'_>,
    functions: &[String],
    acc: DType,
    sizes: &str,
    tile: GemmTile,
) -> String {
    let mac = if acc == DType::I64 {
        em.helpers.insert(Helper::I64Mul);
        "kiln_i64_add(kiln_acc[i][j], kiln_i64_mul(a[i], b[j]))"
    } else {
        "kiln_acc[i][j] + a[i] * b[j]"
    };
    let mut decls = em.declarations();
    for f in functions {
        decls.push('\n');
        decls.push_str(f);
    }
    instantiate(
        GEMM,
        &[
            ("DECLS", &decls),
            ("T", value_type(acc)),
            ("ZERO", &zero(acc)),
            ("SIZES", sizes),
            ("MAC", mac),
            ("W", &tile.invocations().to_string()),
            ("TILE", &tile.outputs().to_string()),
        ],
    )
}

/// Workgroup memory of the GEMM template: the staged tiles of A and B, in `acc` elements.
fn gemm_memory(acc: DType, tile: GemmTile) -> u32 {
    tile.staged_elements() * device_element_bytes(acc)
}

/// The GEMM tile for a product of `batch` entries of `m x n` outputs: the target's large
/// tile only when every size is known and the product still has
/// [`LARGE_TILE_MIN_TILES`] large tiles; otherwise the small one.
fn gemm_tile(target: &Target, batch: &[Dim], m: &[Dim], n: &[Dim]) -> GemmTile {
    let large = GemmTile::Large;
    if target.gemm != large {
        return GemmTile::Small;
    }
    let known = |dims: &[Dim]| {
        dims.iter()
            .try_fold(1u64, |acc, d| d.as_known().map(|v| acc.saturating_mul(v)))
    };
    let per = u64::from(large.outputs());
    match (known(batch), known(m), known(n)) {
        (Some(b), Some(m), Some(n))
            if b.saturating_mul(m.div_ceil(per))
                .saturating_mul(n.div_ceil(per))
                >= LARGE_TILE_MIN_TILES =>
        {
            large
        }
        _ => GemmTile::Small,
    }
}

fn lower_matmul(em: &mut Emitter<'_>, k: &MatmulKernel) -> Result<Lowered, WgslError> {
    let ta = value_dtypes(em.program, em.kernel, &k.a, None)?;
    let tb = value_dtypes(em.program, em.kernel, &k.b, None)?;
    let acc = operand_dtype(em, &k.a, &ta)?;
    let te = value_dtypes(em.program, em.kernel, &k.epilogue, Some(acc))?;
    let nb = k.batch.len();
    let mut batch_ext = String::new();
    let batches = extents(em, &k.batch, "kiln_nb", "    ", &mut batch_ext)?;
    let mut batch = batch_ext.clone();
    decode("kiln_batch", nb, "kiln_nb", "i", "    ", &mut batch);
    let coords =
        |x: &str, y: &str| format!("{batch}    let i{nb} = {x};\n    let i{} = {y};\n", nb + 1);
    let fa = operand_fn(em, "kiln_a", &k.a, &ta, &coords("kiln_row", "kiln_col"))?;
    let fb = operand_fn(em, "kiln_b", &k.b, &tb, &coords("kiln_row", "kiln_col"))?;
    let fe = epilogue_fn(em, &k.epilogue, &te, acc, &coords("kiln_row", "kiln_col"))?;
    let mut sizes = batch_ext;
    let _ = writeln!(sizes, "    let kiln_batches = {batches};");
    let _ = writeln!(sizes, "    let kiln_m = {};", em.extent(&k.m)?);
    let _ = writeln!(sizes, "    let kiln_n = {};", em.extent(&k.n)?);
    let _ = writeln!(sizes, "    let kiln_k = {};", em.extent(&k.k)?);
    let tile = gemm_tile(
        &em.target,
        &k.batch,
        std::slice::from_ref(&k.m),
        std::slice::from_ref(&k.n),
    );
    let source = gemm_source(em, &[fa, fb, fe], acc, &sizes, tile);
    let grid = vec![
        GridAxis {
            extents: k.batch.clone(),
            per_group: 1,
        },
        GridAxis {
            extents: vec![k.m.clone()],
            per_group: tile.outputs(),
        },
        GridAxis {
            extents: vec![k.n.clone()],
            per_group: tile.outputs(),
        },
    ];
    Ok(Lowered {
        kind: ShaderKind::Matmul,
        source,
        grid,
        counts: vec![
            k.batch.clone(),
            vec![k.m.clone()],
            vec![k.n.clone()],
            vec![k.k.clone()],
        ],
        workgroup_shape: [tile.invocations(), tile.invocations(), 1],
        workgroup_memory: gemm_memory(acc, tile),
    })
}

fn lower_conv(em: &mut Emitter<'_>, k: &Conv2dKernel) -> Result<Lowered, WgslError> {
    let g = &k.geometry;
    let bad = |message: &str| WgslError::Unsupported {
        kernel: em.kernel,
        message: message.to_string(),
    };
    let (oh, ow) = g
        .output_hw(&em.program.symbols)
        .ok_or_else(|| bad("conv2d output size is not a polynomial"))?;
    let cg = g
        .group_channels()
        .ok_or_else(|| bad("conv2d channels are not divisible by groups"))?;
    let og = g
        .group_outputs()
        .ok_or_else(|| bad("conv2d outputs are not divisible by groups"))?;
    let tx = value_dtypes(em.program, em.kernel, &k.input, None)?;
    let tw = value_dtypes(em.program, em.kernel, &k.weight, None)?;
    let acc = operand_dtype(em, &k.input, &tx)?;
    let te = value_dtypes(em.program, em.kernel, &k.epilogue, Some(acc))?;
    let small = |v: u64| -> Result<i32, WgslError> {
        i32::try_from(v).map_err(|_| WgslError::TooLarge {
            what: format!("{}: the conv2d geometry value {v}", em.kernel),
        })
    };
    let (kh, kw) = (small(g.kernel[0])?, small(g.kernel[1])?);
    let (sh, sw) = (small(g.stride[0])?, small(g.stride[1])?);
    let (ph, pw) = (small(g.padding[0])?, small(g.padding[1])?);
    let (dh, dw) = (small(g.dilation[0])?, small(g.dilation[1])?);
    let groups = small(g.groups)?;
    let (e_oh, e_ow) = (em.extent(&oh)?, em.extent(&ow)?);
    let (d_oh, d_ow) = (em.divisor(&oh)?, em.divisor(&ow)?);
    let (e_h, e_w) = (em.extent(&g.h)?, em.extent(&g.w)?);
    let (e_cg, e_og) = (em.extent(&cg)?, em.extent(&og)?);
    // Row of the implicit GEMM: (n, oy, ox); column of A / row of B: (c, ky, kx).
    let pixel = format!(
        "    let kiln_ox = kiln_row % {d_ow};\n    let kiln_oy = (kiln_row / {d_ow}) % {d_oh};\n    let i0 = kiln_row / {d_ow} / {d_oh};\n"
    );
    let tap = |var: &str| {
        format!(
            "    let kiln_kx = {var} % {kw};\n    let kiln_ky = ({var} / {kw}) % {kh};\n    let kiln_c = {var} / {kw} / {kh};\n"
        )
    };
    let a_coords = format!(
        "{pixel}{}    let i1 = kiln_batch * {e_cg} + kiln_c;\n    let i2 = kiln_oy * {sh} + kiln_ky * {dh} - {ph};\n    let i3 = kiln_ox * {sw} + kiln_kx * {dw} - {pw};\n    if (i2 < 0 || i2 >= {e_h} || i3 < 0 || i3 >= {e_w}) {{\n        return {};\n    }}\n",
        tap("kiln_col"),
        zero(acc)
    );
    let b_coords = format!(
        "{}    let i0 = kiln_batch * {e_og} + kiln_col;\n    let i1 = kiln_c;\n    let i2 = kiln_ky;\n    let i3 = kiln_kx;\n",
        tap("kiln_row")
    );
    let e_coords = format!(
        "{pixel}    let i1 = kiln_batch * {e_og} + kiln_col;\n    let i2 = kiln_oy;\n    let i3 = kiln_ox;\n"
    );
    let fa = operand_fn(em, "kiln_a", &k.input, &tx, &a_coords)?;
    let fb = operand_fn(em, "kiln_b", &k.weight, &tw, &b_coords)?;
    let fe = epilogue_fn(em, &k.epilogue, &te, acc, &e_coords)?;
    let e_n = em.extent(&g.n)?;
    let sizes = format!(
        "    let kiln_batches = {groups};\n    let kiln_m = {e_n} * {e_oh} * {e_ow};\n    let kiln_n = {e_og};\n    let kiln_k = {e_cg} * {};\n",
        kh * kw
    );
    let pixels = vec![g.n.clone(), oh, ow];
    let tile = gemm_tile(
        &em.target,
        &[Dim::known(g.groups)],
        &pixels,
        std::slice::from_ref(&og),
    );
    let source = gemm_source(em, &[fa, fb, fe], acc, &sizes, tile);
    let grid = vec![
        GridAxis {
            extents: vec![Dim::known(g.groups)],
            per_group: 1,
        },
        GridAxis {
            extents: pixels.clone(),
            per_group: tile.outputs(),
        },
        GridAxis {
            extents: vec![og.clone()],
            per_group: tile.outputs(),
        },
    ];
    let taps = vec![cg, Dim::known(g.kernel[0]), Dim::known(g.kernel[1])];
    Ok(Lowered {
        kind: ShaderKind::Conv2d,
        source,
        grid,
        counts: vec![
            pixels,
            taps,
            vec![og],
            vec![g.c.clone(), g.h.clone(), g.w.clone()],
        ],
        workgroup_shape: [tile.invocations(), tile.invocations(), 1],
        workgroup_memory: gemm_memory(acc, tile),
    })
}

#[cfg(test)]
mod tests {
    use crate::{GridAxis, ShaderKind, compile};
    use kiln_ir::Dim;

    fn validate(source: &str) {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{}\n{source}", e.emit_to_string(source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}\n{source}", e.emit_to_string(source)));
    }

    fn kernel_of(text: &str) -> crate::KernelShader {
        let program = kiln_kernel::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let program = kiln_kernel::verify(program).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let wgsl = compile(&program).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let k = wgsl.kernels.last().cloned().expect("a kernel");
        validate(&k.source);
        k
    }

    fn grid(dims: &[Dim]) -> Vec<GridAxis> {
        vec![GridAxis {
            extents: dims.to_vec(),
            per_group: 1,
        }]
    }

    #[test]
    fn layer_norm_rows_reduce_once_per_workgroup() {
        let k = kernel_of(
            "symbol N >= 1
             b0 = input \"x\" f32[N*300]
             b1 = input \"mean\" f32[N]
             b2 = state \"w\" f32[300]
             b3 = output \"y\" f32[N*300]
             k0 = loop [N, 300] reduce [300] {
               v0 = load b0[i0*300 + i1]
               v1 = load b1[i0]
               v2 = sub(v0, v1)
               v3 = load b0[i0*300 + r0]
               v4 = sub(v3, v1)
               v5 = mul(v4, v4)
               v6 = reduce_sum(v5) init f32(0.0)
               v7 = f32(0.0033333334)
               v8 = mul(v6, v7)
               v9 = rsqrt(v8)
               v10 = mul(v2, v9)
               v11 = load b2[i1]
               v12 = mul(v10, v11)
               store b3[i0*300 + i1] = v12
             }",
        );
        assert_eq!(k.kind, ShaderKind::HoistedReduce);
        assert_eq!(k.grid, grid(&[Dim::sym("N")]));
        assert_eq!(k.workgroup_memory, 256);
        let src = &k.source;
        let tree = src.find("workgroupBarrier();").expect("a tree");
        let points = src
            .find("for (var kiln_c = i32(lid)")
            .expect("a loop over the row");
        let rsqrt = src
            .find("let v9: f32 = 1.0f / sqrt(v8);")
            .expect("rsqrt once");
        let scale = src.find("let v10: f32 = v2 * v9;").expect("per point");
        assert!(tree < rsqrt && rsqrt < points && points < scale, "{src}");
        assert_eq!(src.matches("kiln_part0[0]").count(), 1, "{src}");
        assert!(src.contains("let kiln_cols = kiln_n1;"), "{src}");
    }

    #[test]
    fn reductions_that_read_the_inner_axis_keep_one_workgroup_per_point() {
        let k = kernel_of(
            "symbol N >= 1
             symbol C >= 1
             b0 = input \"x\" f32[N*C]
             b1 = output \"y\" f32[N*C]
             k0 = loop [N, C] reduce [C] {
               v0 = load b0[i0*C + r0]
               v1 = load b0[i0*C + i1]
               v2 = mul(v0, v1)
               v3 = reduce_sum(v2) init f32(0.0)
               store b1[i0*C + i1] = v3
             }",
        );
        assert_eq!(k.kind, ShaderKind::RowReduce);
        assert_eq!(k.grid, grid(&[Dim::sym("N"), Dim::sym("C")]));
    }

    #[test]
    fn hoisting_covers_several_axes_and_the_whole_domain() {
        let k = kernel_of(
            "symbol N >= 1
             symbol C >= 1
             b0 = input \"x\" f32[N*C*8]
             b1 = output \"y\" f32[N*C*8]
             b2 = output \"m\" f32[N]
             k0 = loop [N, C, 8] reduce [C, 8] {
               v0 = load b0[i0*C*8 + r0*8 + r1]
               v1 = reduce_sum(v0) init f32(0.0)
               v2 = reduce_max(v0) init f32(-inf)
               v3 = load b0[i0*C*8 + i1*8 + i2]
               v4 = sub(v3, v1)
               v5 = mul(v4, v2)
               store b1[i0*C*8 + i1*8 + i2] = v5
               store b2[i0] = v2
             }",
        );
        assert_eq!(k.kind, ShaderKind::HoistedReduce);
        assert_eq!(k.grid, grid(&[Dim::sym("N")]));
        assert_eq!(k.workgroup_memory, 512);
        for want in [
            "let kiln_cols = kiln_n1 * kiln_n2;",
            "var kiln_irest1 = kiln_c;",
            "let i2 = kiln_irest1 % kiln_n2;",
            "let i1 = kiln_irest1;",
        ] {
            assert!(k.source.contains(want), "missing `{want}` in\n{}", k.source);
        }
        let all = kernel_of(
            "symbol N >= 1
             symbol C >= 1
             b0 = input \"x\" f32[N*C]
             b1 = output \"y\" f32[N*C]
             k0 = loop [1, N, C] reduce [N, C] {
               v0 = load b0[r0*C + r1]
               v1 = reduce_sum(v0) init f32(0.0)
               v2 = load b0[i1*C + i2]
               v3 = sub(v2, v1)
               store b1[i1*C + i2] = v3
             }",
        );
        assert_eq!(all.kind, ShaderKind::HoistedReduce);
        assert_eq!(all.grid, grid(&[]));
        assert!(all.source.contains("let kiln_rows = 1;"), "{}", all.source);
    }

    #[test]
    fn staged_reductions_gather_each_stage_before_the_next_reads_it() {
        let text = |c: &str| {
            format!(
                "symbol N >= 1
                 symbol C >= 1
                 b0 = input \"x\" f32[N*{c}]
                 b1 = output \"y\" f32[N]
                 k0 = loop [N] reduce [{c}] {{
                   v0 = load b0[i0*{c} + r0]
                   v1 = reduce_max(v0) init f32(-inf)
                   v2 = f32(2.0)
                   v3 = mul(v1, v2)
                   v4 = sub(v0, v3)
                   v5 = reduce_sum(v4) init f32(0.0)
                   v6 = add(v5, v1)
                   store b1[i0] = v6
                 }}"
            )
        };
        let k = kernel_of(&text("C"));
        assert_eq!(k.kind, ShaderKind::RowReduce);
        assert_eq!(k.workgroup_memory, 512);
        let src = &k.source;
        let at = |s: &str| src.find(s).unwrap_or_else(|| panic!("no `{s}` in\n{src}"));
        let tree0 = at("kiln_part0[lid] = kiln_fmax(");
        let read = at("let v1: f32 = kiln_part0[0];");
        let scaled = at("let v3: f32 = v1 * v2;");
        let acc1 = at("var kiln_acc1: f32 = 0.0f;");
        let centred = at("let v4: f32 = v0 - v3;");
        let tree1 = at("kiln_part1[lid] = kiln_part1[lid] + kiln_part1[lid + kiln_s];");
        let finish = at("if (lid == 0u) {");
        assert!(
            tree0 < read && read < scaled && scaled < acc1 && acc1 < centred,
            "{src}"
        );
        assert!(centred < tree1 && tree1 < finish, "{src}");
        assert_eq!(src.matches("kiln_part0[0]").count(), 1, "{src}");
        assert_eq!(src.matches("workgroupBarrier();").count(), 4, "{src}");
        let serial = kernel_of(&text("10"));
        assert_eq!(serial.kind, ShaderKind::SerialReduce);
        let src = &serial.source;
        let loops: Vec<usize> = src
            .match_indices("for (var kiln_r = 0;")
            .map(|(i, _)| i)
            .collect();
        let read = src.find("let v1: f32 = kiln_acc0;").expect("the max, once");
        assert_eq!(loops.len(), 2, "{src}");
        assert!(loops[0] < read && read < loops[1], "{src}");
    }
}
