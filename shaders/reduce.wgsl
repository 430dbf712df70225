// kiln template: row reduction, one workgroup of 64 invocations per point of the iteration
// domain.
//
// The reductions run in stages (a reduce node whose operand reads another's result runs
// after it). In each stage every invocation folds a strided share of the reduction domain
// into private accumulators (one per reduce node of the stage), then the workgroup combines
// the 64 partial results (a tree in workgroup memory, or subgroup operations where the
// adapter has them) into that node's own `kiln_part<k>[0]`, which nothing writes again.
// Invocation 0 evaluates the rest of the body and stores. crates/wgsl fills in the
// placeholders:
//   DECLS    params, bindings, helpers and one `kiln_part<k>` workgroup array per reduce node
//   EXTENTS  `kiln_rows` (points of the iteration domain) and `kiln_rsize` (reduction points)
//   ROW      the row's coordinates `i0, i1, ...` decoded from `kiln_row`
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
//   FINISH   the reduced values read from `kiln_part<k>[0]`, the remaining values, stores
// The early return depends only on the workgroup id and the params uniform, so it is
// uniform across the workgroup and the barriers after it (at function scope, between the
// stages' loops) are reached by every invocation.
{{DECLS}}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,{{BUILTINS}}
) {
{{EXTENTS}}
    let kiln_row = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    if (kiln_row >= u32(kiln_rows)) {
        return;
    }
{{ROW}}
{{STAGES}}
    if (lid == 0u) {
{{FINISH}}
    }
}
