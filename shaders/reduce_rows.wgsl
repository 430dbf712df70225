// kiln template: a reduction hoisted out of the inner domain axes it does not depend on
// (a softmax or layer-norm row): one workgroup of 64 invocations per point of the outer
// axes.
//
// The workgroup reduces once, stage by stage, as shaders/reduce.wgsl does for one point
// (strided private accumulators, then a tree in workgroup memory or subgroup operations,
// into each reduce node's own `kiln_part<k>[0]`), so each reduced value is the one that
// template computes. Then every invocation reads the reduced values and strides over the
// points of the hoisted inner axes, evaluating the rest of the body and storing.
// crates/wgsl fills in the placeholders:
//   DECLS    params, bindings, helpers and one `kiln_part<k>` workgroup array per reduce node
//   EXTENTS  `kiln_rows` (points of the outer axes), `kiln_cols` (points of the hoisted
//            axes) and `kiln_rsize` (reduction points)
//   ROW      the outer coordinates decoded from `kiln_row`
//   STAGES   per stage, in order:
//            - the earlier stages' results its operands read (from `kiln_part<k>[0]`) and
//              the values computed from them that do not vary over the reduction
//            - `var kiln_acc<k>` accumulators set to the stage's init values
//            - a loop over `kiln_r` (this invocation's reduction points) that decodes
//              `r0, r1, ...`, evaluates the values the reduced operands need and folds
//              each accumulator
//            - the gather: the accumulators of the 64 invocations combined into
//              `kiln_part<k>[0]`, followed by a barrier. Without subgroups: each
//              accumulator is written to `kiln_part<k>[lid]` and a tree of six halving
//              steps folds the array. With subgroups: `subgroupAdd` (or Mul, Max, Min; a
//              NaN anywhere in the subgroup wins a float max or min) combines each
//              subgroup, its lane 0 writes `kiln_part<k>[subgroup_id]`, and invocation 0
//              folds the `num_subgroups` partials in order
//   BUILTINS the subgroup builtins (`sgid`, `nsg`, `sglane`) when subgroups are used
//   REDUCED  the reduced values read from `kiln_part<k>[0]`, and every value that varies
//            neither along the hoisted axes nor over the reduction domain (unless a stage
//            already evaluated it)
//   POINT    the hoisted coordinates decoded from `kiln_c`, the remaining values, stores
// The early return depends only on the workgroup id and the params uniform, so it is
// uniform across the workgroup and the barriers after it (at function scope, between the
// stages' loops) are reached by every invocation.
// A workgroup whose hoisted axes have no point returns before reading anything.
{{DECLS}}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,{{BUILTINS}}
) {
{{EXTENTS}}
    let kiln_row = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    if (kiln_row >= u32(kiln_rows) || kiln_cols <= 0) {
        return;
    }
{{ROW}}
{{STAGES}}
{{REDUCED}}
    for (var kiln_c = i32(lid); kiln_c < kiln_cols; kiln_c += 64) {
{{POINT}}
    }
}
