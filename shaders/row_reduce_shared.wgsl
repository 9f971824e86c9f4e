// Workgroup reductions through workgroup memory: workgroup_max2(v) = the lane-wise max over the
// workgroup's invocations of v, workgroup_sum2(v) = Σ v, for a pair v (two statistics in one
// pass of barriers: a row's max and its NaN flag, or two sums), by a log₂(WG)-step tree (WG a
// power of two). Imported by a root whose kernel file declares `override WG`; the fallback for
// adapters without subgroups. Call from uniform control flow only (it has barriers). NaN is
// never reduced here: kernels carry it as a flag.

var<workgroup> reduce_scratch: array<vec2<f32>, WG>;

fn workgroup_max2(v: vec2<f32>, lid: u32) -> vec2<f32> {
    reduce_scratch[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            reduce_scratch[lid] = max(reduce_scratch[lid], reduce_scratch[lid + stride]);
        }
        workgroupBarrier();
    }
    let total = reduce_scratch[0];
    workgroupBarrier();
    return total;
}

fn workgroup_sum2(v: vec2<f32>, lid: u32) -> vec2<f32> {
    reduce_scratch[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            reduce_scratch[lid] += reduce_scratch[lid + stride];
        }
        workgroupBarrier();
    }
    let total = reduce_scratch[0];
    workgroupBarrier();
    return total;
}
