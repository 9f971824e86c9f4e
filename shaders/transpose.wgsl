// Batched transpose of the last two dims: for [B, R, C], out[b, c, r] = in[b, r, c]. It moves
// the class dim of PyTorch's [N, C, d1, …, dk] layout to the end ([N, C, S] → [N, S, C], with
// S = d1·…·dk) for the row kernels, and back ([N, S, C] → [N, C, S]). One invocation per
// output element, grid-stride; the reads are strided, the writes contiguous.
//! import grid

override WG: u32 = 256u;

struct Params {
    // B, R and C of the input [B, R, C].
    batch: u32,
    rows: u32,
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn transpose(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let plane = p.rows * p.cols;
    let total = p.batch * plane;
    let stride = grid_stride(nwg);
    for (var o = invocation_index(wid, nwg, lid); o < total; o += stride) {
        // o = b·C·R + c·R + r in the output [B, C, R].
        let b = o / plane;
        let rest = o - b * plane;
        let c = rest / p.rows;
        let r = rest - c * p.rows;
        dst[o] = src[b * plane + r * p.cols + c];
    }
}
