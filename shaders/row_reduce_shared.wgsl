// Workgroup reductions through workgroup memory: workgroup_max(v) = max over the workgroup's
// invocations of v, workgroup_sum(v) = Σ v, by a log₂(WG)-step tree (WG a power of two).
// Imported by a root whose kernel file declares `override WG`; the fallback for adapters
// without subgroups. Call from uniform control flow only (it has barriers).

var<workgroup> reduce_scratch: array<f32, WG>;

// A max that keeps NaN (WGSL's max may drop it).
fn max_keep_nan(a: f32, b: f32) -> f32 {
    let nan = (bitcast<u32>(a) & 0x7fffffffu) > 0x7f800000u;
    return select(max(a, b), a, nan);
}

fn workgroup_max(v: f32, lid: u32) -> f32 {
    reduce_scratch[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            reduce_scratch[lid] = max_keep_nan(reduce_scratch[lid], reduce_scratch[lid + stride]);
        }
        workgroupBarrier();
    }
    let total = reduce_scratch[0];
    workgroupBarrier();
    return total;
}

fn workgroup_sum(v: f32, lid: u32) -> f32 {
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
