// Plain vec4 copy, dst[i] = src[i]: the bandwidth ceiling every benchmark is compared with.
// Written against the storage codec (`Stored4`): with a half codec it copies the packed words
// as they are (load4/store4 would round-trip them exactly, at the cost of arithmetic a copy
// does not have), so it is the ceiling of half storage too.
// It reads and writes each element once with the same grid-stride walk as the elementwise
// kernels, so an op's time over this one's is the cost of its arithmetic and its shape.
//! import grid
//! storage f32, f16, bf16

override WG: u32 = 256u;

struct Params {
    // Number of vec4 elements to copy.
    len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<Stored4>;
@group(0) @binding(2) var<storage, read_write> dst: array<Stored4>;

@compute @workgroup_size(WG)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let stride = grid_stride(nwg);
    for (var i = invocation_index(wid, nwg, lid); i < p.len; i += stride) {
        dst[i] = src[i];
    }
}
