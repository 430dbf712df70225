// kiln template: tiled matrix product C[batch] = A[batch] * B[batch] with a fused epilogue,
// used for matmul kernels and, as an implicit GEMM, for conv2d kernels.
//
// Each workgroup of WxW invocations computes a 4Wx4W tile of C for one batch entry; each
// invocation accumulates a 4x4 block of outputs in registers. 4Wx16 tiles of A and 16x4W
// tiles of B are staged through workgroup memory, zero-filled past the matrix edges. W is
// 8 (a 32x32 tile, every adapter) or 16 (64x64, for adapters that allow 256 invocations
// per workgroup; crates/wgsl picks it per kernel from the device's limits and the sizes).
// crates/wgsl fills in the placeholders:
//   DECLS  params, bindings, helpers and the generated functions
//            fn kiln_a(kiln_batch: i32, kiln_row: i32, kiln_col: i32) -> T   A[batch, m, k]
//            fn kiln_b(kiln_batch: i32, kiln_row: i32, kiln_col: i32) -> T   B[batch, k, n]
//            fn kiln_epilogue(kiln_batch: i32, kiln_row: i32, kiln_col: i32, acc: T)
//          (operands are only called inside the matrices; the epilogue only inside C)
//   T      the accumulator type;  ZERO  its zero
//   MAC    the accumulator update from kiln_acc[i][j], a[i] and b[j] (a helper call for i64)
//   SIZES  `let` bindings of kiln_batches, kiln_m, kiln_n and kiln_k
//   W      invocations along x and y;  TILE  4W, the tile's rows and columns
// An empty output has no tiles and no invocation passes the early return; `max(.., 1)`
// keeps a statically empty one from dividing by a literal zero (naga rejects that).
// The early return depends only on the workgroup id and the params uniform, so it is
// uniform across the workgroup and every invocation reaches the barriers.
{{DECLS}}

const KILN_W: i32 = {{W}};
const KILN_TM: i32 = {{TILE}};
const KILN_TN: i32 = {{TILE}};
const KILN_TK: i32 = 16;

var<workgroup> kiln_tile_a: array<array<{{T}}, 16>, {{TILE}}>;
var<workgroup> kiln_tile_b: array<array<{{T}}, {{TILE}}>, 16>;

@compute @workgroup_size({{W}}, {{W}})
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
{{SIZES}}
    let kiln_tiles_m = (kiln_m + KILN_TM - 1) / KILN_TM;
    let kiln_tiles_n = (kiln_n + KILN_TN - 1) / KILN_TN;
    let kiln_tiles = kiln_tiles_m * kiln_tiles_n;
    let kiln_group = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    if (kiln_group >= u32(kiln_batches * kiln_tiles)) {
        return;
    }
    let kiln_batch = i32(kiln_group) / max(kiln_tiles, 1);
    let kiln_tile = i32(kiln_group) % max(kiln_tiles, 1);
    let kiln_row0 = (kiln_tile / max(kiln_tiles_n, 1)) * KILN_TM;
    let kiln_col0 = (kiln_tile % max(kiln_tiles_n, 1)) * KILN_TN;
    let kiln_tx = i32(lid3.x) * 4;
    let kiln_ty = i32(lid3.y) * 4;
    var kiln_acc: array<array<{{T}}, 4>, 4>;
    for (var kiln_k0 = 0; kiln_k0 < kiln_k; kiln_k0 += KILN_TK) {
        for (var e = i32(lid); e < KILN_TM * KILN_TK; e += KILN_W * KILN_W) {
            let r = e / KILN_TK;
            let c = e % KILN_TK;
            var x: {{T}} = {{ZERO}};
            if (kiln_row0 + r < kiln_m && kiln_k0 + c < kiln_k) {
                x = kiln_a(kiln_batch, kiln_row0 + r, kiln_k0 + c);
            }
            kiln_tile_a[r][c] = x;
        }
        for (var e = i32(lid); e < KILN_TK * KILN_TN; e += KILN_W * KILN_W) {
            let r = e / KILN_TN;
            let c = e % KILN_TN;
            var x: {{T}} = {{ZERO}};
            if (kiln_k0 + r < kiln_k && kiln_col0 + c < kiln_n) {
                x = kiln_b(kiln_batch, kiln_k0 + r, kiln_col0 + c);
            }
            kiln_tile_b[r][c] = x;
        }
        workgroupBarrier();
        for (var kk = 0; kk < KILN_TK; kk++) {
            var a: array<{{T}}, 4>;
            var b: array<{{T}}, 4>;
            for (var i = 0; i < 4; i++) {
                a[i] = kiln_tile_a[kiln_ty + i][kk];
                b[i] = kiln_tile_b[kk][kiln_tx + i];
            }
            for (var i = 0; i < 4; i++) {
                for (var j = 0; j < 4; j++) {
                    kiln_acc[i][j] = {{MAC}};
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0; i < 4; i++) {
        for (var j = 0; j < 4; j++) {
            let row = kiln_row0 + kiln_ty + i;
            let col = kiln_col0 + kiln_tx + j;
            if (row < kiln_m && col < kiln_n) {
                kiln_epilogue(kiln_batch, row, col, kiln_acc[i][j]);
            }
        }
    }
}
