// Grouped sums: out[i] = scale · Σ_{k < group} in[i·group + k] (the last group may be short).
// Applied level after level by the host with short groups (a tree of sums, so rounding grows
// with log N rather than N), it reduces per-row or per-invocation losses to one scalar on the
// device. Plain sums, not compensated ones: those would turn an infinite loss into NaN.
//! import grid

override WG: u32 = 64u;

struct Params {
    // Values in `src`.
    len: u32,
    // Values summed per output.
    group: u32,
    // Factor applied to each sum (1/N for a mean at the last level).
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn sum_groups(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = invocation_index(wid, nwg, lid);
    let start = i * p.group;
    if start >= p.len {
        return;
    }
    let end = min(start + p.group, p.len);
    var sum = 0.0;
    for (var k = start; k < end; k++) {
        sum += src[k];
    }
    dst[i] = p.scale * sum;
}
