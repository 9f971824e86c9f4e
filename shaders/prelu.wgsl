// PReLU with a learnable slope per channel (or one for all): channel c of element i is
// (i / inner) % channels, with inner the product of the dims after the channel dim (dim 1).
//   y_i  = x_i > 0 ? x_i : w_c·x_i
//   dx_i = x_i > 0 ? g_i : w_c·g_i
//   dw_c = Σ_{i in c} (x_i > 0 ? 0 : x_i·g_i)   (PyTorch's rule, so NaN in x makes dw_c NaN)
// dw is reduced in two steps: `weight_partials` (or `weight_partials4`) sums a chunk of one
// channel's elements per invocation, and the host sums each channel's chunks with reduce.wgsl's grouped sums.
// NaN is tested by its bits: a compiler may fold a comparison with NaN. `forward4` and
// `backward_input4` walk whole vec4s (p.len counting vec4s) where a vec4 never straddles two
// channels (inner a multiple of 4, or one slope).
//! import grid

override WG: u32 = 256u;

struct Params {
    // Elements of x.
    len: u32,
    // Channels C (1 for a single slope).
    channels: u32,
    // Elements per (batch, channel) block.
    inner: u32,
    // Elements of one channel that one weight_partials invocation sums.
    per_chunk: u32,
    // Chunks per channel.
    chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> g_in: array<f32>;
// y (forward) or dx (backward).
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// One partial sum of dw per (channel, chunk), channel-major.
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;

fn positive(v: f32) -> bool {
    // v > 0 and not NaN (NaN's exponent bits are all ones, as +∞'s, with a non-zero mantissa).
    let bits = bitcast<u32>(v);
    return v > 0.0 && (bits & 0x7fffffffu) <= 0x7f800000u;
}

fn slope(i: u32) -> f32 {
    return weight[(i / p.inner) % p.channels];
}

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return invocation_index(wid, nwg, lid);
}


@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    for (var i = index(wid, nwg, lid); i < p.len; i += grid_stride(nwg)) {
        let v = x[i];
        out[i] = select(slope(i) * v, v, positive(v));
    }
}

@compute @workgroup_size(WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    for (var i = index(wid, nwg, lid); i < p.len; i += grid_stride(nwg)) {
        let g = g_in[i];
        out[i] = select(slope(i) * g, g, positive(x[i]));
    }
}

@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> g4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out4: array<vec4<f32>>;

fn positive4(v: vec4<f32>) -> vec4<bool> {
    let bits = bitcast<vec4<u32>>(v);
    return (v > vec4(0.0)) & ((bits & vec4(0x7fffffffu)) <= vec4(0x7f800000u));
}

@compute @workgroup_size(WG)
fn forward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    for (var j = index(wid, nwg, lid); j < p.len; j += grid_stride(nwg)) {
        let v = x4[j];
        out4[j] = select(slope(4u * j) * v, v, positive4(v));
    }
}

@compute @workgroup_size(WG)
fn backward_input4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    for (var j = index(wid, nwg, lid); j < p.len; j += grid_stride(nwg)) {
        let g = g4[j];
        out4[j] = select(slope(4u * j) * g, g, positive4(x4[j]));
    }
}

@compute @workgroup_size(WG)
fn weight_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let t = index(wid, nwg, lid);
    if t >= p.channels * p.chunks {
        return;
    }
    let c = t / p.chunks;
    let k = t % p.chunks;
    // The channel's elements, numbered j = 0 … len/channels − 1 in memory order.
    let per_channel = p.len / p.channels;
    let start = k * p.per_chunk;
    let end = min(start + p.per_chunk, per_channel);
    var sum = 0.0;
    for (var j = start; j < end; j++) {
        let i = (j / p.inner) * p.channels * p.inner + c * p.inner + j % p.inner;
        let v = x[i];
        sum += select(v * g_in[i], 0.0, positive(v));
    }
    partial[t] = sum;
}

// weight_partials over whole vec4s, where inner is a multiple of 4 (so is p.per_chunk: a
// channel's elements come in vec4s that never leave their (batch, channel) block).
@compute @workgroup_size(WG)
fn weight_partials4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let t = index(wid, nwg, lid);
    if t >= p.channels * p.chunks {
        return;
    }
    let c = t / p.chunks;
    let k = t % p.chunks;
    let per_channel = p.len / p.channels;
    let start = k * p.per_chunk;
    let end = min(start + p.per_chunk, per_channel);
    var sum = vec4(0.0);
    for (var j = start; j < end; j += 4u) {
        let i = ((j / p.inner) * p.channels * p.inner + c * p.inner + j % p.inner) / 4u;
        let v = x4[i];
        sum += select(v * g4[i], vec4(0.0), positive4(v));
    }
    partial[t] = (sum.x + sum.y) + (sum.z + sum.w);
}
