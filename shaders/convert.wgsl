// Storage conversion between f32 and the codec's type (f16 or bf16, see storage_*.wgsl):
//   widen   dst_f32[i]  = load4(src_half[i])    exact
//   narrow  dst_half[i] = store4(src_f32[i])    rounded once to nearest, ties to even
// Ops that have no kernel for half storage run on f32 copies of their inputs through these,
// with the same grid-stride walk as the copy kernel.
//! import grid
//! storage f16, bf16

override WG: u32 = 256u;

struct Params {
    // Number of vec4 elements to convert.
    len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src_half: array<Stored4>;
@group(0) @binding(1) var<storage, read> src_f32: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst_f32: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst_half: array<Stored4>;

@compute @workgroup_size(WG)
fn widen(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let stride = grid_stride(nwg);
    for (var i = invocation_index(wid, nwg, lid); i < p.len; i += stride) {
        dst_f32[i] = load4(src_half[i]);
    }
}

@compute @workgroup_size(WG)
fn narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let stride = grid_stride(nwg);
    for (var i = invocation_index(wid, nwg, lid); i < p.len; i += stride) {
        dst_half[i] = store4(src_f32[i]);
    }
}
