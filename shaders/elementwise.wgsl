// kiln template: elementwise loop kernel, one invocation per point of the iteration domain.
//
// crates/wgsl fills in the placeholders:
//   DECLS    params struct and uniform, storage buffers, error buffer, helper functions
//   EXTENTS  `let` bindings of the domain's extents and its point count `kiln_points`
//   BODY     the point's coordinates `i0, i1, ...` decoded from `kiln_point`, the body's
//            values and its stores (a serial reduction loop, if the kernel has a short one)
// Workgroups are numbered x + nx * (y + ny * z), so a host may spread a launch of more than
// 65535 workgroups over a 2-D or 3-D grid; invocations past the domain return at once.
{{DECLS}}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
{{EXTENTS}}
    let kiln_point = (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * 64u + lid;
    if (kiln_point >= u32(kiln_points)) {
        return;
    }
{{BODY}}
}
